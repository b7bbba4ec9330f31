//! `canary.scope`: candidates outside the canary scope got no ATS writes.
//!
//! A write is any request other than a GET on the candidate's ATS paths, whatever
//! the ATS answered (trying is already the bug), and any event applied or access
//! granted for the candidate. One finding per candidate, with every write counted.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::fold::{Context, Fold, records, skipped};
use super::run::{Outcome, detail_text};
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
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    let outside: HashSet<&'a str> = cx
        .plan
        .plan
        .candidates
        .iter()
        .filter(|c| !c.in_scope)
        .map(|c| c.candidate.as_str())
        .collect();
    if outside.is_empty() {
        return skipped("no candidate of this run is outside the canary scope");
    }
    Box::new(Canary {
        outside,
        writes: HashMap::new(),
    })
}

/// The writes the ATS saw for one candidate outside the scope.
#[derive(Default)]
struct Writes {
    counts: BTreeMap<String, usize>,
    seqs: Vec<u64>,
    correlation_id: Option<String>,
}

struct Canary<'a> {
    outside: HashSet<&'a str>,
    writes: HashMap<&'a str, Writes>,
}

impl Fold for Canary<'_> {
    fn record(&mut self, _: &Context<'_>, record: &Record) {
        let Some(candidate) = record
            .candidate
            .as_deref()
            .and_then(|c| self.outside.get(c))
        else {
            return;
        };
        if !is_write(record) {
            return;
        }
        let writes = self.writes.entry(candidate).or_default();
        *writes.counts.entry(label(record)).or_default() += 1;
        writes.seqs.push(record.seq);
        if writes.correlation_id.is_none() {
            writes.correlation_id = record.correlation_id.clone();
        }
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let mut outcome = Outcome::default();
        for candidate in &cx.plan.plan.candidates {
            if !candidate.in_scope {
                outcome.judged(Some(candidate.scenario));
            }
        }
        let mut writes: Vec<(&&str, &Writes)> = self.writes.iter().collect();
        writes.sort_by_key(|(_, w)| w.seqs.first().copied());
        for (candidate, writes) in writes {
            outcome.findings.add(|| {
                let counted: Vec<String> = writes
                    .counts
                    .iter()
                    .map(|(what, n)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
                    .collect();
                cx.finding(
                    Some(candidate),
                    writes.correlation_id.as_deref(),
                    format!("{candidate} is outside the canary scope, so the new contract path writes nothing to the ATS for it"),
                    format!("the ATS saw {} for {candidate}", counted.join(", ")),
                    records(writes.seqs.iter().copied()),
                )
            });
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fold::run_one;
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
        let run = (&manifest, &plan, log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
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
        let run = (&manifest, &plan, log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
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
        let run = (&manifest, &clean.plan, clean.log.records());
        assert!(run_one(check, run.0, run.1, run.2).skipped.is_some());
    }
}
