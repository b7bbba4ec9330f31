//! `delivery.ack_sla`: every webhook attempt got an HTTP answer within the ack SLA.
//!
//! The sender waits twice the SLA before giving up, so an attempt answered late
//! still carries its status and latency; a timeout or a connection error has neither
//! status nor answer, and is a finding too. Forged deliveries count: a 401 must be
//! quick as well.

use super::fold::{Context, Fold, records, skipped};
use super::run::{Outcome, detail_text};
use crate::observe::Record;

/// `delivery.ack_sla`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    match cx.plan.plan.ack_sla_ms {
        0 => skipped("the plan sets no ack SLA (ack_sla_ms is 0)"),
        sla => Box::new(AckSla {
            sla,
            outcome: Outcome::default(),
        }),
    }
}

struct AckSla {
    sla: u64,
    outcome: Outcome,
}

impl Fold for AckSla {
    fn record(&mut self, cx: &Context<'_>, attempt: &Record) {
        if attempt.kind != "webhook.attempt" {
            return;
        }
        let sla = self.sla;
        let candidate = attempt.candidate.as_deref();
        self.outcome.judged(cx.plan.scenario_of(candidate));
        let late = attempt.latency_ms.is_some_and(|ms| ms > sla as f64);
        if attempt.status.is_some() && !late {
            return;
        }
        let latency = attempt.latency_ms.unwrap_or_default();
        self.outcome.findings.add(|| {
            let event = attempt.event_id.as_deref().unwrap_or("an event");
            let seen = match (attempt.status, detail_text(attempt, "error")) {
                (Some(status), _) => format!(
                    "a webhook of {event} was answered {status} after {} ms, {} ms past the SLA",
                    latency.round(),
                    (latency - sla as f64).round()
                ),
                (None, error) => format!(
                    "a webhook of {event} got no HTTP answer ({}){}",
                    error.unwrap_or("no status recorded"),
                    attempt
                        .latency_ms
                        .map(|ms| format!(" after {} ms", ms.round()))
                        .unwrap_or_default()
                ),
            };
            cx.finding(
                candidate,
                attempt.correlation_id.as_deref(),
                format!("every webhook is answered within the ack SLA of {sla} ms (acknowledge first, process after)"),
                seen,
                records([attempt.seq]),
            )
        });
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        if cx.seen.attempts == 0 {
            return Outcome::skip("no webhook was sent to the integration");
        }
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fold::run_one;
    use crate::judge::test_support::{CANDIDATE, clean, manifest};

    #[test]
    fn answers_within_the_sla_pass() {
        let manifest = manifest();
        let clean = clean();
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 0);
        assert!(outcome.skipped.is_none());
    }

    #[test]
    fn slow_answers_and_timeouts_are_findings() {
        let manifest = manifest();
        let mut clean = clean();
        let slow = clean.log.attempt(&clean.events[0], 1, Some(200), 1450.0);
        clean.log.attempt(&clean.events[1], 0, None, 2000.0);
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 2);
        let [late, lost] = outcome.findings.kept() else {
            panic!("two findings")
        };
        assert_eq!(
            late.seen,
            "a webhook of evt_CAND_003_cl_1 was answered 200 after 1450 ms, 450 ms past the SLA"
        );
        assert!(late.expected.contains("1000 ms"), "{}", late.expected);
        assert_eq!(late.candidate.as_deref(), Some(CANDIDATE));
        assert_eq!(late.exchanges[0].seq, slow);
        assert_eq!(
            late.exchanges[0].summary,
            "webhook evt_CAND_003_cl_1 copy 1 attempt 1 → 200 in 1450 ms"
        );
        assert!(
            lost.seen
                .contains("got no HTTP answer (no answer within the 2000 ms ack timeout)"),
            "{}",
            lost.seen
        );
    }

    #[test]
    fn a_run_without_webhooks_is_skipped() {
        let manifest = manifest();
        let clean = clean();
        let run = (&manifest, &clean.plan, &[]);
        assert_eq!(
            run_one(check, run.0, run.1, run.2).skipped.as_deref(),
            Some("no webhook was sent to the integration")
        );
    }
}
