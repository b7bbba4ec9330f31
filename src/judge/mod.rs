//! The judge: every check of INTEGRATION-PROTOCOL.md §5 as a pure function over the
//! manifest, the run's plan and its observation log.
//!
//! Judging is separate from driving so a recorded run (its `plan.json` and
//! `observation.jsonl`) can be judged again offline, and so each check can be
//! unit-tested on a handful of hand-made records.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::check::Verdict;
use crate::manifest::Manifest;
use crate::manifest::model::Severity;
use crate::observe::{Actor, Record};
use crate::run::plan::{Plan, Scenario};

/// A check's stable id and what it proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckInfo {
    /// The stable id (`idempotency.exactly_once`, …).
    pub id: &'static str,
    /// When it passes, in one line (the protocol's wording).
    pub passes_when: &'static str,
}

/// Every check of the protocol, in report order.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: "contract.required_fields",
        passes_when: "every event that reached the ATS carries its contract's required fields",
    },
    CheckInfo {
        id: "contract.enums",
        passes_when: "every enum field of every event that reached the ATS holds an allowed value",
    },
    CheckInfo {
        id: "contract.assertions",
        passes_when: "every event that reached the ATS satisfies its contract's assertions",
    },
    CheckInfo {
        id: "contract.schema",
        passes_when: "every event that reached the ATS validates against its contract's JSON Schema",
    },
    CheckInfo {
        id: "delivery.ack_sla",
        passes_when: "every webhook was answered within the ack SLA",
    },
    CheckInfo {
        id: "idempotency.exactly_once",
        passes_when: "no idempotency_key reached the ATS twice, whatever was redelivered",
    },
    CheckInfo {
        id: "idempotency.key_stable",
        passes_when: "the contracts' \"stable for same (…)\" assertions hold across every copy of every event",
    },
    CheckInfo {
        id: "delivery.no_loss",
        passes_when: "every event that should land, landed, within the drain deadline",
    },
    CheckInfo {
        id: "ordering.no_regression",
        passes_when: "per candidate and contract, occurred_at never goes backwards at the ATS and the final state is the latest event's",
    },
    CheckInfo {
        id: "sequence.expected",
        passes_when: "in the clean scenario, each candidate's events reached the ATS as its expected_sequence says",
    },
    CheckInfo {
        id: "signature.enforced",
        passes_when: "unsigned, wrongly signed and stale deliveries got 4xx and changed nothing in the ATS",
    },
    CheckInfo {
        id: "canary.scope",
        passes_when: "candidates outside the canary scope got no ATS writes from the new contract path",
    },
    CheckInfo {
        id: "observability.log_fields",
        passes_when: "each processed event has a JSON log line carrying every log_fields_required field",
    },
    CheckInfo {
        id: "privacy.no_pii_in_logs",
        passes_when: "no seeded candidate name or e-mail appears in anything the integration printed",
    },
];

/// The check with this id, if there is one.
pub fn check_info(id: &str) -> Option<&'static CheckInfo> {
    CHECKS.iter().find(|c| c.id == id)
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing wrong was seen.
    Pass,
    /// At least one finding.
    Fail,
    /// Not judged: turned off by the manifest, or nothing in the run to judge.
    Skip,
}

impl Status {
    /// The status's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of the observation log that led to a finding, summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Exchange {
    /// The record's `seq` in `observation.jsonl`.
    pub seq: u64,
    /// Milliseconds since the run started.
    pub elapsed_ms: f64,
    /// Who produced it.
    pub actor: Actor,
    /// The record's kind (`webhook.attempt`, `ats.event_applied`, …).
    pub kind: String,
    /// The HTTP status, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// One line for people (`POST /v1/candidates/…/events → 201`, `copy 2 of evt_…`).
    pub summary: String,
}

/// One thing a check found wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// The scenario it was seen in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
    /// The candidate concerned (scenario-suffixed id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The flow's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// What a correct integration does.
    pub expected: String,
    /// What was seen instead.
    pub seen: String,
    /// The records that led there, oldest first.
    pub exchanges: Vec<Exchange>,
}

/// How many findings a check keeps in full; the rest are only counted, so a badly
/// broken integration still gives a readable report.
pub const FINDINGS_KEPT: usize = 25;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// The stable id.
    pub id: String,
    /// When it passes, in one line.
    pub passes_when: String,
    /// The outcome.
    pub status: Status,
    /// What a failure does to the verdict.
    pub severity: Severity,
    /// Whether the manifest set the severity or turned the check off.
    pub overridden: bool,
    /// Why the check was skipped, or the manifest's reason for an override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The scenarios whose records it judged.
    pub scenarios: Vec<Scenario>,
    /// How many findings there were in all.
    pub findings_total: usize,
    /// The first [`FINDINGS_KEPT`] findings.
    pub findings: Vec<Finding>,
}

/// The judgement of a whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    /// Pass, warn (only `warn` checks failed) or blocked.
    pub verdict: Verdict,
    /// Every check of [`CHECKS`], in that order.
    pub checks: Vec<CheckResult>,
}

impl Judgement {
    /// The verdict that follows from a list of check results.
    pub fn from_checks(checks: Vec<CheckResult>) -> Self {
        let verdict = checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| match c.severity {
                Severity::Warn => Verdict::Warn,
                Severity::BlockRelease => Verdict::Blocked,
            })
            .max()
            .unwrap_or(Verdict::Pass);
        Judgement { verdict, checks }
    }

    /// The result of the check with this id.
    pub fn check(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

/// Judges a run: every check of [`CHECKS`] over the plan and the observation log,
/// with the severities and switches of the manifest's `checks:` section.
pub fn judge(manifest: &Manifest, plan: &Plan, records: &[Record]) -> Judgement {
    let _ = (manifest, plan, records);
    todo!("the checks")
}
