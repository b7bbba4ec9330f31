//! The plan of a run: per scenario, the events the harness sends, how each is
//! perturbed, and what should become of it. The checks judge the observation log
//! against this plan; the plan is written with the run's artifacts so a recorded
//! run can be judged again offline.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A scenario of `stagegate run`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
#[clap(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every candidate's expected sequence, in order, once.
    Clean,
    /// Exact redeliveries, re-emits with a new webhook-id, concurrent duplicates.
    Duplicates,
    /// Later events delivered before earlier ones.
    OutOfOrder,
    /// Unsigned, wrongly signed and stale deliveries of forged events.
    Signatures,
    /// The out-of-scope control candidates.
    Canary,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Clean,
        Scenario::Duplicates,
        Scenario::OutOfOrder,
        Scenario::Signatures,
        Scenario::Canary,
    ];

    /// The scenario's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::Duplicates => "duplicates",
            Scenario::OutOfOrder => "out-of-order",
            Scenario::Signatures => "signatures",
            Scenario::Canary => "canary",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event the harness sends, and what should become of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedEvent {
    /// The scenario it belongs to.
    pub scenario: Scenario,
    /// The candidate (scenario-suffixed id).
    pub candidate: String,
    /// The contract.
    pub contract: String,
    /// The event's id.
    pub event_id: String,
    /// The event's idempotency key as the vendor sends it.
    pub idempotency_key: String,
    /// The flow's correlation id.
    pub correlation_id: String,
    /// When it occurred (RFC 3339).
    pub occurred_at: String,
    /// Its position in the candidate's expected sequence.
    pub sequence_index: usize,
    /// The enum value the sequence entry names (`passed`, …), if any.
    pub outcome: Option<String>,
    /// The perturbation's name (`none`, `exact_duplicate`, `unsigned`, …).
    pub perturbation: String,
    /// A forged delivery the integration must reject (bad, missing or stale signature).
    pub forged: bool,
    /// Whether the candidate is inside the canary scope.
    pub in_scope: bool,
    /// Whether the event must reach the ATS: in scope, not forged, and not superseded
    /// by a newer event of the same candidate and contract.
    pub should_land: bool,
    /// The payload as the vendor sends it.
    pub payload: Value,
}

/// A sandbox candidate as the checks need it: ids, scope and what must not be logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCandidate {
    /// The scenario it belongs to.
    pub scenario: Scenario,
    /// The candidate's (scenario-suffixed) id.
    pub candidate: String,
    /// Its correlation id.
    pub correlation_id: String,
    /// Whether it is inside the canary scope.
    pub in_scope: bool,
    /// Its expected sequence, as written (`contract` or `contract:value`).
    pub expected_sequence: Vec<String>,
    /// Personal data the integration must never print (name, e-mail).
    pub pii: Vec<String>,
}

/// The whole plan of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The run's seed.
    pub seed: u64,
    /// The candidates, every scenario's copies.
    pub candidates: Vec<PlannedCandidate>,
    /// The events, in the order they are planned (not necessarily sent).
    pub events: Vec<PlannedEvent>,
    /// The webhook acknowledgement deadline in milliseconds (the policy's `webhookAckSeconds`).
    pub ack_sla_ms: u64,
}

impl Plan {
    /// The events of one scenario.
    pub fn events_of(&self, scenario: Scenario) -> impl Iterator<Item = &PlannedEvent> {
        self.events.iter().filter(move |e| e.scenario == scenario)
    }

    /// The candidate with this id.
    pub fn candidate(&self, id: &str) -> Option<&PlannedCandidate> {
        self.candidates.iter().find(|c| c.candidate == id)
    }
}
