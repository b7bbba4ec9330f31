//! `kill_switch.gates_not_paused`: candidate-facing calls (verification sessions at
//! the vendor, access grants at the ATS) go on while the switch is tripped, unless
//! the manifest's `pause_candidate_gates` is true.
//!
//! Those calls come from the hiring-policy flow: the `policy-outage` scenario
//! (`--policy`) sends gated stage changes into an ATS outage, half of them after the
//! switch tripped. Inside a window where the switch must trip, from the first
//! `tripped` notification (or the window's start, if none came) to the window's end:
//! with `pause_candidate_gates: false`, every gated stage change acknowledged there
//! must get its verification session before the switch resets (a missing one is a
//! gate paused when it must not be); with `true` each candidate-facing call there
//! is a finding. Without such stage changes or calls the check skips.

use super::{SwitchState, Timeline, Window, nothing_to_judge, window_finding};
use crate::judge::run::{Outcome, Run};
use crate::observe::Record;

/// Why there is nothing to judge in a run without the hiring-policy flow.
pub(crate) const NO_GATE_CALLS: &str = "no gated stage change or candidate-facing call came while the switch was tripped: the policy-outage scenario (`--policy POLICY`) drives them";

/// `kill_switch.gates_not_paused`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    let timeline = Timeline::new(run.records);
    if timeline.windows.is_empty() {
        return Outcome::skip(nothing_to_judge(run));
    }
    let pause = run.manifest.pauses_candidate_gates();
    let mut outcome = Outcome::default();
    let mut any = false;
    for window in timeline.windows.iter().filter(|w| w.expect_trip) {
        let from = timeline
            .notices_between(window.start.seq, window.until_seq)
            .iter()
            .find(|n| n.state == SwitchState::Tripped)
            .map_or(window.start, |n| n.record);
        let calls: Vec<&Record> = timeline
            .gate_calls
            .iter()
            .copied()
            .filter(|c| c.seq > from.seq && window.holds(c))
            .collect();
        let changes = gated_changes(run, window, from);
        let reset_seq = timeline
            .notices
            .iter()
            .find(|n| n.state == SwitchState::Reset && n.record.seq > from.seq)
            .map_or(u64::MAX, |n| n.record.seq);
        if calls.is_empty() && changes.is_empty() {
            continue;
        }
        any = true;
        outcome.judged(window.scenario);
        if !pause {
            for change in changes {
                let candidate = change.candidate.as_deref();
                // A session may be logged before the acknowledgement it follows: the
                // integration opens it while its answer travels back. It must come
                // while the switch is still open: before the first `reset` heard after
                // the trip (how fast is `policy.fanout_sla`'s to judge).
                let sent = change.elapsed_ms - change.latency_ms.unwrap_or(0.0);
                let opened = run.records.iter().any(|r| {
                    r.kind == "vendor.session_opened"
                        && r.candidate.as_deref() == candidate
                        && r.elapsed_ms >= sent
                        && r.seq < reset_seq
                        && r.detail
                            .get("opened_by")
                            .and_then(serde_json::Value::as_str)
                            != Some("candidate")
                });
                if !opened {
                    outcome.findings.add(|| {
                        let mut finding = run.finding(
                            candidate,
                            change.correlation_id.as_deref(),
                            "with pause_candidate_gates: false, a verification session for each gated stage change while the switch is tripped",
                            "no session opened while the switch was tripped: the gate was paused",
                            [from, change],
                        );
                        finding.scenario = finding.scenario.or(window.scenario);
                        finding
                    });
                }
            }
        }
        if pause {
            for &call in &calls {
                outcome
                    .findings
                    .add(|| paused_finding(run, window, from, call));
            }
        }
    }
    if !any {
        return Outcome::skip(NO_GATE_CALLS);
    }
    outcome
}

/// The gated stage changes acknowledged inside `window` after `from`.
fn gated_changes<'r>(run: &Run<'r>, window: &Window<'_>, from: &Record) -> Vec<&'r Record> {
    let Some(policy) = &run.plan.policy else {
        return Vec::new();
    };
    let gated: std::collections::HashSet<&str> = policy
        .candidates
        .iter()
        .flat_map(|c| &c.moves)
        .filter(|m| !m.forged && policy.is_gated(&m.to))
        .map(|m| m.event_id.as_str())
        .collect();
    let mut seen = std::collections::HashSet::new();
    run.records
        .iter()
        .filter(|r| {
            r.kind == "webhook.attempt"
                && r.elapsed_ms - r.latency_ms.unwrap_or(0.0) > from.elapsed_ms
                && window.holds(r)
                && r.status.is_some_and(|s| (200..300).contains(&s))
                && r.event_id.as_deref().is_some_and(|e| gated.contains(e))
        })
        // The first acknowledgement of each stage change.
        .filter(|r| seen.insert(r.event_id.clone()))
        .collect()
}

fn paused_finding(
    run: &Run<'_>,
    window: &Window<'_>,
    from: &Record,
    call: &Record,
) -> crate::judge::Finding {
    let expected = format!(
        "with pause_candidate_gates: true, no candidate-facing call while the switch is tripped in the {} window",
        window.phase.as_str()
    );
    let seen = format!(
        "a candidate-facing call ({}) {} after the switch tripped",
        call.kind,
        super::ms(call.elapsed_ms - from.elapsed_ms)
    );
    match call.candidate.as_deref() {
        Some(candidate) => {
            let mut finding = run.finding(
                Some(candidate),
                call.correlation_id.as_deref(),
                expected,
                seen,
                [from, call],
            );
            finding.scenario = finding.scenario.or(window.scenario);
            finding
        }
        None => window_finding(run, window, expected, seen, [from, call]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::judge::kill_switch::fixture::{Defect, KsRun, kill_switch_run};
    use crate::judge::test_support::{clean, manifest, manifest_edited};
    use crate::observe::Actor;
    use crate::run::plan::{Scenario, marks};

    /// The outage run with a vendor session and an access grant after the trip.
    fn with_gate_calls() -> KsRun {
        let mut run = kill_switch_run(Scenario::Outage, Defect::None);
        let end = run
            .log
            .records()
            .iter()
            .find(|r| r.kind == marks::FAULT_END)
            .map(|r| r.seq)
            .expect("a window");
        // The two probes before `fault.end` become candidate-facing calls.
        let session = run.log.record_mut(end - 2);
        session.actor = Actor::Vendor;
        session.kind = "vendor.request".into();
        session.candidate = None;
        session.status = Some(201);
        session.detail = json!({"method": "POST", "path": "/v1/verifications"});
        let grant = run.log.record_mut(end - 1);
        grant.kind = "ats.access_granted".into();
        grant.detail = json!({"grant": {"resource": "interview_link"}});
        run
    }

    #[test]
    fn no_candidate_facing_calls_is_a_skip_with_the_reason() {
        let manifest = manifest();
        let run = kill_switch_run(Scenario::Outage, Defect::None);
        let outcome = check(&Run::new(&manifest, &run.plan, run.log.records()));
        assert_eq!(outcome.skipped.as_deref(), Some(NO_GATE_CALLS));
        let clean = clean();
        let outcome = check(&Run::new(&manifest, &clean.plan, clean.log.records()));
        assert!(outcome.skipped.is_some());
    }

    #[test]
    fn calls_going_on_pass_when_gates_are_not_paused() {
        let manifest = manifest();
        let run = with_gate_calls();
        let outcome = check(&Run::new(&manifest, &run.plan, run.log.records()));
        assert!(outcome.skipped.is_none());
        assert_eq!(outcome.findings.total(), 0);
        assert_eq!(outcome.scenarios.len(), 1);
    }

    #[test]
    fn calls_while_tripped_fail_when_gates_are_paused() {
        let manifest = manifest_edited(
            "pause_candidate_gates: false",
            "pause_candidate_gates: true",
        );
        let run = with_gate_calls();
        let outcome = check(&Run::new(&manifest, &run.plan, run.log.records()));
        assert_eq!(outcome.findings.total(), 2);
        let finding = &outcome.findings.kept()[1];
        assert_eq!(finding.candidate.as_deref(), Some("CAND_001_ou"));
        assert_eq!(finding.scenario, Some(Scenario::Outage));
        assert!(
            finding
                .seen
                .starts_with("a candidate-facing call (ats.access_granted)"),
            "{}",
            finding.seen
        );
        assert_eq!(outcome.findings.kept()[0].scenario, Some(Scenario::Outage));
    }

    /// The `policy-outage` window of a policy run: a gated stage change acknowledged
    /// after the trip, and the session it got (or did not).
    fn policy_outage(session: bool) -> (crate::run::plan::Plan, crate::judge::test_support::Log) {
        use crate::judge::policy::fixture::{Defect, policy_run};
        use crate::judge::test_support::Log;
        let run = policy_run(Defect::None);
        let plan = run.plan;
        let policy = plan.policy.as_ref().expect("a policy");
        let candidate = policy
            .candidates
            .iter()
            .find(|c| c.scenario == Scenario::PolicyOutage)
            .expect("an outage candidate");
        let change = candidate
            .moves
            .iter()
            .find(|m| policy.is_gated(&m.to))
            .expect("a gated move");
        let mut log = Log::default();
        log.ready();
        log.scenario("scenario.start", Scenario::PolicyOutage);
        log.fault_start(Scenario::PolicyOutage, "outage", true);
        for channel in ["#recruiting-ops", "#sec-ops", "#eng-oncall"] {
            log.notify(channel, "tripped");
        }
        log.push(Actor::Sender, "webhook.attempt", |r| {
            r.candidate = Some(candidate.candidate.clone());
            r.event_id = Some(change.event_id.clone());
            r.status = Some(200);
            r.latency_ms = Some(1.0);
            r.detail = json!({"url_path": "/webhooks/ats", "perturbation": "none"});
        });
        if session {
            log.push(Actor::Vendor, "vendor.session_opened", |r| {
                r.candidate = Some(candidate.candidate.clone());
                r.detail = json!({"session_id": "ses_1", "opened_by": "integration"});
            });
            log.push(Actor::Vendor, "vendor.request", |r| {
                r.status = Some(201);
                r.detail = json!({"method": "POST", "path": "/v1/verifications"});
            });
        }
        log.fault_end(Scenario::PolicyOutage, "outage");
        log.scenario("scenario.end", Scenario::PolicyOutage);
        (plan, log)
    }

    #[test]
    fn a_gated_stage_change_while_tripped_must_get_its_session() {
        let manifest = manifest();
        let (plan, log) = policy_outage(true);
        let outcome = check(&Run::new(&manifest, &plan, log.records()));
        assert!(outcome.skipped.is_none(), "{:?}", outcome.skipped);
        assert_eq!(outcome.findings.total(), 0);
        let (plan, log) = policy_outage(false);
        let outcome = check(&Run::new(&manifest, &plan, log.records()));
        assert_eq!(outcome.findings.total(), 1);
        assert!(
            outcome.findings.seen()[0].contains("the gate was paused"),
            "{:?}",
            outcome.findings.seen()
        );
    }

    #[test]
    fn with_gates_paused_the_session_while_tripped_is_the_finding() {
        let manifest = manifest_edited(
            "pause_candidate_gates: false",
            "pause_candidate_gates: true",
        );
        let (plan, log) = policy_outage(false);
        let outcome = check(&Run::new(&manifest, &plan, log.records()));
        assert_eq!(outcome.findings.total(), 0, "holding the gate is right");
        let (plan, log) = policy_outage(true);
        let outcome = check(&Run::new(&manifest, &plan, log.records()));
        assert_eq!(outcome.findings.total(), 1, "{:?}", outcome.findings.seen());
    }
}
