//! A hand-made policy run for the checks' unit tests: the plan `run::policy`
//! makes from the seed manifest and policy, and the log a correct integration
//! would leave, written record by record, with one defect planted on demand.

use serde_json::{Value, json};

use crate::judge::test_support::{Log, PlanBuilder, manifest};
use crate::manifest::Manifest;
use crate::observe::Actor;
use crate::run::plan::{Plan, Scenario};
use crate::run::policy::{
    self, DEFAULT_STAGES, PolicyCandidate, PolicyInputs, PolicyPlan, RiskProfile, marks,
    resource_of, review_due,
};

/// One planted defect of the simulated integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Defect {
    None,
    /// Grants as soon as the session opens.
    GrantBeforeResult,
    /// Grants on a `failed` result.
    GrantOnFailed,
    /// Opens a second session for a redelivered stage change.
    SecondSession,
    /// Gives step-up items the other owner.
    WrongOwner,
    /// Files no item on a step-up.
    NoStepUpException,
    /// Opens sessions five seconds after the stage change.
    SlowFanout,
    /// Acknowledges forged stage changes and acts on them.
    ForgedAccepted,
    /// The reconciliation misses the lost stage change.
    ReconcileMisses,
    /// Logs stage changes without `actorId`.
    LogFieldMissing,
}

/// The plan and log of a simulated policy run.
pub(crate) struct PolicyRun {
    pub(crate) manifest: Manifest,
    pub(crate) plan: Plan,
    pub(crate) log: Log,
}

/// The repository's hiring policy.
pub(crate) fn hiring_policy() -> crate::manifest::policy::HiringPolicy {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/hiring-policy.yaml");
    crate::manifest::load_policy(&path)
        .expect("the repository's policy loads")
        .value
}

/// A policy run of both policy scenarios with `defect` planted.
pub(crate) fn policy_run(defect: Defect) -> PolicyRun {
    let manifest = manifest();
    let policy = hiring_policy();
    let sandbox = crate::sandbox::build(&manifest, 7).expect("the sandbox builds");
    let stages: Vec<String> = DEFAULT_STAGES.iter().map(|s| (*s).to_owned()).collect();
    let synth = crate::sandbox::synth::SynthConfig {
        seed: 7,
        anchor: chrono::DateTime::parse_from_rfc3339("2026-05-18T09:00:00Z")
            .expect("valid")
            .to_utc(),
        vendor_base_url: "http://127.0.0.1:9".parse().expect("a URL"),
        envelope: manifest.envelope.clone(),
    };
    let prepared = policy::prepare(&PolicyInputs {
        manifest: &manifest,
        policy: &policy,
        path: "manifests/hiring-policy.yaml".into(),
        stages: &stages,
        sandbox: &sandbox.candidates,
        taken: &[],
        scenarios: &Scenario::POLICY,
        synth,
    })
    .expect("the policy flow plans");
    let mut plan = PlanBuilder::default().plan;
    plan.candidates = prepared.planned;
    let mut sim = Sim {
        log: Log::default(),
        plan: &prepared.plan,
        defect,
        sessions: 0,
        items: 0,
    };
    sim.log.ready();
    for scenario in Scenario::POLICY {
        sim.log.scenario("scenario.start", scenario);
        for candidate in prepared
            .plan
            .candidates
            .iter()
            .filter(|c| c.scenario == scenario)
        {
            sim.candidate(candidate);
        }
        if scenario == Scenario::PolicyReconcile {
            sim.reconcile();
        }
        sim.log.scenario("scenario.end", scenario);
    }
    let log = sim.log;
    plan.policy = Some(prepared.plan);
    PolicyRun {
        manifest,
        plan,
        log,
    }
}

/// What a correct integration does, written as the log would have it.
struct Sim<'p> {
    log: Log,
    plan: &'p PolicyPlan,
    defect: Defect,
    sessions: usize,
    items: usize,
}

impl Sim<'_> {
    fn candidate(&mut self, c: &PolicyCandidate) {
        let mut moved = 0;
        for &index in &c.send_order {
            let change = &c.moves[index];
            if change.forged {
                let accepted = self.defect == Defect::ForgedAccepted;
                self.attempt(c, change, if accepted { 200 } else { 401 }, 0);
                if accepted {
                    self.session(c, "integration");
                }
                continue;
            }
            while moved <= index {
                let to = c.moves[moved].to.clone();
                self.log.push(Actor::Ats, "ats.stage_changed", |r| {
                    r.candidate = Some(c.candidate.clone());
                    r.detail = json!({"to": to});
                });
                moved += 1;
            }
            if change.lost {
                self.log
                    .push(Actor::Harness, marks::LOST_STAGE_CHANGE, |r| {
                        r.candidate = Some(c.candidate.clone());
                    });
                continue;
            }
            self.attempt(c, change, 200, 0);
            if change.perturbation != "none" {
                self.attempt(c, change, 200, 1);
            }
            let mut fields = self.must_log(&change.event_id, &c.candidate);
            if self.defect == Defect::LogFieldMissing {
                fields.as_object_mut().map(|f| f.remove("actorId"));
            }
            self.log.line("stdout", &fields.to_string());
            if self.plan.is_gated(&change.to) {
                let first_gate = c.moves[..index].iter().all(|m| !self.plan.is_gated(&m.to));
                self.gate(c, &change.to, first_gate, change.perturbation != "none");
            }
        }
        if c.reconcile == Some(policy::ReconcileCase::OrphanSession) {
            let session = self.session(c, "candidate");
            self.result(c, &session, 0);
        }
    }

    /// A gated move: a session, its result, and what follows it.
    fn gate(&mut self, c: &PolicyCandidate, stage: &str, first: bool, repeated: bool) {
        let session = self.session(c, "integration");
        if self.defect == Defect::SlowFanout {
            let seq = self.log.records().len() as u64 - 1;
            self.log.record_mut(seq).elapsed_ms += 5_000.0;
        }
        if self.defect == Defect::SecondSession && repeated {
            self.session(c, "integration");
        }
        let resource = resource_of(stage);
        // A defective integration that granted early grants nothing later.
        let early = self.defect == Defect::GrantBeforeResult;
        if early {
            self.grant(c, resource);
        }
        let index = if first {
            0
        } else {
            c.results.len().saturating_sub(1)
        };
        let Some(planned) = c.results.get(index).cloned() else {
            return;
        };
        self.result(c, &session, index);
        if planned.lost {
            return;
        }
        match planned.result.as_str() {
            "passed" if !early => self.grant(c, resource),
            "failed" => {
                if self.defect == Defect::GrantOnFailed {
                    self.grant(c, resource);
                }
                if c.profile == RiskProfile::Retake {
                    let retake = self.session(c, "candidate");
                    self.result(c, &retake, 1);
                    if self.defect != Defect::GrantOnFailed && !early {
                        self.grant(c, resource);
                    }
                }
            }
            "review_required" => {
                if self.defect == Defect::NoStepUpException {
                    return;
                }
                let high = c.is_high_risk() != (self.defect == Defect::WrongOwner);
                let item = self.exception(
                    c,
                    self.plan.owner(high).to_owned(),
                    Some(&session),
                    c.is_high_risk(),
                );
                self.log.push(Actor::Ats, "ats.exception_resolved", |r| {
                    r.candidate = Some(c.candidate.clone());
                    r.detail = json!({"item": {"id": item}});
                });
                let step_up = self.session(c, "candidate");
                self.result(c, &step_up, 1);
                if !early {
                    self.grant(c, resource);
                }
            }
            _ => {}
        }
    }

    fn reconcile(&mut self) {
        self.log.push(Actor::Harness, marks::RECONCILE, |_| {});
        let plan = self.plan;
        for c in plan
            .candidates
            .iter()
            .filter(|c| c.reconcile.is_some_and(|r| r.is_mismatch()))
        {
            if self.defect == Defect::ReconcileMisses
                && c.reconcile == Some(policy::ReconcileCase::LostStageChange)
            {
                continue;
            }
            let high =
                c.is_high_risk() && c.reconcile != Some(policy::ReconcileCase::LostStageChange);
            self.exception(c, plan.owner(high).to_owned(), None, high);
        }
        // Forged moves that were acted on left a session with no gated stage: a
        // mismatch the job rightly files.
        if self.defect == Defect::ForgedAccepted {
            for c in plan
                .candidates
                .iter()
                .filter(|c| c.profile == RiskProfile::Forged)
            {
                self.exception(c, plan.owner(false).to_owned(), None, false);
            }
        }
        self.log.push(Actor::Harness, marks::RECONCILED, |r| {
            r.detail = json!({"status": 200});
        });
    }

    fn attempt(&mut self, c: &PolicyCandidate, change: &policy::StageMove, status: u16, copy: u32) {
        self.log.push(Actor::Sender, "webhook.attempt", |r| {
            r.candidate = Some(c.candidate.clone());
            r.event_id = Some(change.event_id.clone());
            r.idempotency_key = Some(change.idempotency_key.clone());
            r.status = Some(status);
            r.latency_ms = Some(1.0);
            r.detail = json!({"url_path": "/webhooks/ats", "perturbation": change.perturbation, "copy": copy});
        });
    }

    fn session(&mut self, c: &PolicyCandidate, by: &str) -> String {
        self.sessions += 1;
        let id = format!("ses_{:04}", self.sessions);
        self.log.push(Actor::Vendor, "vendor.session_opened", |r| {
            r.candidate = Some(c.candidate.clone());
            r.detail = json!({"session_id": id, "opened_by": by});
        });
        id
    }

    fn result(&mut self, c: &PolicyCandidate, session: &str, index: usize) {
        let Some(planned) = c.results.get(index) else {
            return;
        };
        self.log.push(Actor::Harness, marks::RESULT, |r| {
            r.candidate = Some(c.candidate.clone());
            r.event_id = Some(planned.event_id.clone());
            r.detail = json!({
                "session_id": session,
                "result": planned.result,
                "risk_tier": c.risk_tier,
                "signals": planned.signal.iter().collect::<Vec<_>>(),
                "event_id": planned.event_id,
                "delivered": !planned.lost,
            });
        });
        if !planned.lost {
            let line = self.must_log(&planned.event_id, &c.candidate);
            self.log.line("stdout", &line.to_string());
        }
    }

    fn grant(&mut self, c: &PolicyCandidate, resource: &str) {
        self.log.push(Actor::Ats, "ats.access_granted", |r| {
            r.candidate = Some(c.candidate.clone());
            r.detail = json!({"grant": {"resource": resource}});
        });
    }

    fn exception(
        &mut self,
        c: &PolicyCandidate,
        owner: String,
        session: Option<&str>,
        high: bool,
    ) -> String {
        self.items += 1;
        let id = format!("exc_{:06}", self.items);
        let seq = self.log.push(Actor::Ats, "ats.exception_created", |r| {
            r.candidate = Some(c.candidate.clone());
        });
        let record = self.log.record_mut(seq);
        let created = crate::judge::run::record_time(record).expect("a time");
        let due = review_due(&self.plan.policy, created, high);
        let mut item =
            json!({"id": id, "owner": owner, "due_at": crate::observe::format_time(due)});
        if let Some(session) = session {
            item["session_id"] = json!(session);
        }
        record.detail = json!({ "item": item });
        id
    }

    /// A log line with every `mustLogFields` field.
    fn must_log(&self, event_id: &str, candidate: &str) -> Value {
        let mut line = serde_json::Map::new();
        for field in &self.plan.policy.logging.must_log_fields {
            line.insert(field.clone(), json!(format!("{field}-value")));
        }
        line.insert("eventId".into(), json!(event_id));
        line.insert("candidateId".into(), json!(candidate));
        Value::Object(line)
    }
}
