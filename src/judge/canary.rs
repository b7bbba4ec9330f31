//! `canary.scope`: candidates outside the canary scope got no ATS writes.
//!
//! A write is any request other than a GET on the candidate's ATS paths, whatever
//! the ATS answered (trying is already the bug), and any event applied or access
//! granted for the candidate. One finding per candidate, with every write counted.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::run::{Outcome, Run, detail_text};
use crate::observe::Record;

fn is_write(record: &Record) -> bool {
    match record.kind.as_str() {
        "ats.request" => detail_text(record, "method").is_some_and(|m| m != "GET" && m != "HEAD"),
        "ats.event_applied" | "ats.access_granted" => true,
        _ => false,
    }
}

fn label(record: &Record) -> String {
    match record.kind.as_str() {
        "ats.request" => format!("{} request", detail_text(record, "method").unwrap_or("?")),
        "ats.event_applied" => "applied event".to_owned(),
        _ => "access grant".to_owned(),
    }
}

/// `canary.scope`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    let outside: HashSet<&str> = run
        .plan
        .candidates
        .iter()
        .filter(|c| !c.in_scope)
        .map(|c| c.candidate.as_str())
        .collect();
    if outside.is_empty() {
        return Outcome::skip("no candidate of this run is outside the canary scope");
    }
    let mut outcome = Outcome::default();
    for candidate in &run.plan.candidates {
        if !candidate.in_scope {
            outcome.judged(Some(candidate.scenario));
        }
    }
    let mut order: Vec<&str> = Vec::new();
    let mut writes: HashMap<&str, Vec<&Record>> = HashMap::new();
    for record in run.records {
        let Some(candidate) = record.candidate.as_deref() else {
            continue;
        };
        if !outside.contains(candidate) || !is_write(record) {
            continue;
        }
        let list = writes.entry(candidate).or_default();
        if list.is_empty() {
            order.push(candidate);
        }
        list.push(record);
    }
    for candidate in order {
        let Some(records) = writes.get(candidate) else {
            continue;
        };
        outcome.findings.add(|| {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for record in records {
                *counts.entry(label(record)).or_default() += 1;
            }
            let counted: Vec<String> = counts
                .into_iter()
                .map(|(what, n)| format!("{n} {what}{}", if n == 1 { "" } else { "s" }))
                .collect();
            run.finding(
                Some(candidate),
                records.iter().find_map(|r| r.correlation_id.as_deref()),
                format!("{candidate} is outside the canary scope, so the new contract path writes nothing to the ATS for it"),
                format!("the ATS saw {} for {candidate}", counted.join(", ")),
                records.iter().copied(),
            )
        });
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::test_support::{Log, PlanBuilder, manifest};
    use crate::run::plan::{Plan, PlannedEvent, Scenario};

    const CONTROL: &str = "CAND_900_cn";

    fn control_plan() -> (Plan, PlannedEvent) {
        let mut plan = PlanBuilder::default();
        plan.candidate(Scenario::Canary, CONTROL, false, &[]);
        let event = plan.event(CONTROL, 1, "passed");
        (plan.plan, event)
    }

    #[test]
    fn reads_only_for_a_control_candidate_pass() {
        let manifest = manifest();
        let (plan, event) = control_plan();
        let mut log = Log::default();
        log.attempt(&event, 0, Some(200), 3.0);
        log.request("GET", &format!("/v1/candidates/{CONTROL}"), 200);
        let run = Run::new(&manifest, &plan, log.records());
        let outcome = check(&run);
        assert!(outcome.skipped.is_none());
        assert_eq!(outcome.findings.total(), 0);
    }

    #[test]
    fn writes_for_a_control_candidate_are_one_finding() {
        let manifest = manifest();
        let (plan, event) = control_plan();
        let mut log = Log::default();
        log.attempt(&event, 0, Some(200), 3.0);
        log.applied(CONTROL, &event.payload);
        log.request(
            "POST",
            &format!("/v1/candidates/{CONTROL}/access-grants"),
            404,
        );
        let run = Run::new(&manifest, &plan, log.records());
        let outcome = check(&run);
        assert_eq!(outcome.findings.total(), 1);
        let finding = &outcome.findings.kept()[0];
        assert_eq!(
            finding.seen,
            "the ATS saw 2 POST requests, 1 applied event for CAND_900_cn"
        );
        assert_eq!(finding.scenario, Some(Scenario::Canary));
        assert_eq!(finding.correlation_id.as_deref(), Some("cor_CAND_900_cn"));
        let summaries: Vec<&str> = finding
            .exchanges
            .iter()
            .map(|e| e.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            [
                "POST /v1/candidates/CAND_900_cn/events → 201 in 1 ms",
                "ATS applied identity.verification.completed evt_CAND_900_cn_1 to CAND_900_cn (revision 2)",
                "POST /v1/candidates/CAND_900_cn/access-grants → 404 in 1 ms",
            ]
        );
    }

    #[test]
    fn everyone_in_scope_is_a_skip() {
        let manifest = manifest();
        let clean = crate::judge::test_support::clean();
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        assert!(check(&run).skipped.is_some());
    }
}
