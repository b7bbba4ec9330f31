//! `kill_switch.trips`: in every fault window where the switch must trip, every
//! `notify_channels` channel hears `tripped` before the fault ends; where the ATS
//! fails, the integration stops calling it within a bounded number of requests and
//! afterwards only probes it at a modest rate; in the brownout below the threshold
//! the switch stays closed.
//!
//! The trip is the first `tripped` notification of the window (any channel): it is
//! what the integration says about itself, and the ATS calls on either side of it are
//! what it did. In the restart scenario the window is judged in parts cut at each
//! `integration.killed`, as a restarted integration may start closed and has to trip
//! again within the same budget (or stay quiet).
//!
//! The budgets come from the manifest's threshold through [`crate::protocol`], the
//! tolerances the protocol document states, not from the reference relay's breaker:
//! they separate "stopped" from "kept hammering", not one good breaker design from
//! another.

use super::{
    Phase, SwitchState, Timeline, Window, channels, list, ms, nothing_to_judge, unheard,
    window_finding,
};
use crate::judge::run::{Outcome, Run};
use crate::observe::Record;
use crate::protocol::{
    KillSwitchTolerances, PROBE_ALLOWANCE, PROBE_CALLS_PER_REAL_MINUTE, probe_limit,
};

/// `kill_switch.trips`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    let timeline = Timeline::new(run.records);
    if timeline.windows.is_empty() {
        return Outcome::skip(nothing_to_judge(run));
    }
    let mut outcome = Outcome::default();
    for window in &timeline.windows {
        outcome.judged(window.scenario);
        if !window.expect_trip {
            stays_closed(run, &timeline, window, &mut outcome);
            continue;
        }
        every_channel_heard(run, &timeline, window, &mut outcome);
        let tolerances = tolerances(run);
        let budget = match window.phase {
            Phase::Outage => tolerances.outage_budget(),
            Phase::BrownoutAbove => tolerances.brownout_budget(),
            Phase::BrownoutBelow | Phase::MappingErrors | Phase::Other => continue,
        };
        for (from, until_seq, until_ms) in window.segments() {
            stops_calling(
                run,
                &timeline,
                window,
                Segment {
                    from,
                    until_seq,
                    until_ms,
                },
                budget,
                &mut outcome,
            );
        }
    }
    outcome
}

/// The manifest's kill-switch tolerances.
fn tolerances(run: &Run<'_>) -> KillSwitchTolerances {
    KillSwitchTolerances::new(&run.manifest.raw.release_gate.kill_switch.trigger_conditions)
}

/// Every channel hears `tripped` inside the window.
fn every_channel_heard(
    run: &Run<'_>,
    timeline: &Timeline<'_>,
    window: &Window<'_>,
    outcome: &mut Outcome,
) {
    let channels = channels(run);
    let inside = timeline.notices_between(window.start.seq, window.until_seq);
    let missing = unheard(channels, inside, SwitchState::Tripped);
    if missing.is_empty() {
        return;
    }
    let heard: Vec<&str> = channels
        .iter()
        .map(String::as_str)
        .filter(|c| !missing.contains(c))
        .collect();
    let late: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|c| {
            timeline
                .notices_between(window.until_seq, u64::MAX)
                .iter()
                .any(|n| n.state == SwitchState::Tripped && n.channel == *c)
        })
        .collect();
    outcome.findings.add(|| {
        let mut seen = format!(
            "no `tripped` notification reached {} while the fault lasted",
            list(&missing)
        );
        if !heard.is_empty() {
            seen.push_str(&format!(" ({} heard it)", list(&heard)));
        }
        if !late.is_empty() {
            seen.push_str(&format!("; {} heard it only after the fault ended", list(&late)));
        }
        window_finding(
            run,
            window,
            format!(
                "every notify_channels channel ({}) hears `tripped` from the `{}` switch during the {} window",
                list(&channels.iter().map(String::as_str).collect::<Vec<_>>()),
                run.manifest.raw.release_gate.kill_switch.name,
                window.phase.as_str()
            ),
            seen,
            [window.start]
                .into_iter()
                .chain(inside.iter().map(|n| n.record))
                .chain(window.end),
        )
    });
}

/// In the brownout below the threshold, nothing trips.
fn stays_closed(
    run: &Run<'_>,
    timeline: &Timeline<'_>,
    window: &Window<'_>,
    outcome: &mut Outcome,
) {
    let tripped: Vec<_> = timeline
        .notices_between(window.start.seq, window.until_seq)
        .iter()
        .filter(|n| n.state == SwitchState::Tripped)
        .collect();
    let Some(first) = tripped.first() else {
        return;
    };
    outcome.findings.add(|| {
        let mut channels: Vec<&str> = tripped.iter().map(|n| n.channel).collect();
        channels.sort_unstable();
        channels.dedup();
        window_finding(
            run,
            window,
            format!(
                "the switch stays closed in the {} window: its failures are below the {} % threshold",
                window.phase.as_str(),
                tolerances(run).threshold_pct
            ),
            format!(
                "tripped below the threshold: `tripped` posted to {} {} into the window",
                list(&channels),
                ms(first.record.elapsed_ms - window.start.elapsed_ms)
            ),
            [window.start]
                .into_iter()
                .chain(tripped.iter().map(|n| n.record))
                .chain(window.end),
        )
    });
}

/// A part of a window: from its start (or a kill) until the next kill or its end.
struct Segment<'a> {
    from: &'a Record,
    until_seq: u64,
    until_ms: f64,
}

/// The integration stops calling the failing ATS within `budget` calls, then probes.
fn stops_calling(
    run: &Run<'_>,
    timeline: &Timeline<'_>,
    window: &Window<'_>,
    segment: Segment<'_>,
    budget: usize,
    outcome: &mut Outcome,
) {
    let Segment {
        from,
        until_seq,
        until_ms,
    } = segment;
    let trip = timeline
        .notices_between(from.seq, until_seq)
        .iter()
        .find(|n| n.state == SwitchState::Tripped);
    let restarted = from.seq != window.start.seq;
    let since = if restarted {
        "the integration was killed and restarted"
    } else {
        "the fault started"
    };
    let before = timeline.ats_calls_between(from.seq, trip.map_or(until_seq, |t| t.record.seq));
    if before.len() > budget {
        outcome.findings.add(|| {
            let seen = match trip {
                Some(trip) => format!(
                    "the ATS saw {} requests from when {since} until the first `tripped` notification ({} later)",
                    before.len(),
                    ms(trip.record.elapsed_ms - from.elapsed_ms)
                ),
                None => format!(
                    "the ATS saw {} requests from when {since} until the window ended ({} later), and no `tripped` notification came",
                    before.len(),
                    ms(until_ms - from.elapsed_ms)
                ),
            };
            window_finding(
                run,
                window,
                format!(
                    "in the {} window the integration trips within {budget} ATS requests of when {since}",
                    window.phase.as_str()
                ),
                seen,
                [from]
                    .into_iter()
                    .chain(before.iter().take(3).copied())
                    .chain(before.get(budget).copied())
                    .chain(before.last().copied())
                    .chain(trip.map(|t| t.record)),
            )
        });
    }
    let Some(trip) = trip else {
        return;
    };
    let after = timeline.ats_calls_between(trip.record.seq, until_seq);
    let span = (until_ms - trip.record.elapsed_ms).max(0.0);
    let limit = probe_limit(run.plan.time_scale, span);
    if after.len() > limit {
        outcome.findings.add(|| {
            window_finding(
                run,
                window,
                format!(
                    "once tripped the integration only probes the ATS: at most {limit} requests in the {} until the {} window ended \
                     ({PROBE_CALLS_PER_REAL_MINUTE} per real-world minute at time scale {}, plus {PROBE_ALLOWANCE})",
                    ms(span),
                    window.phase.as_str(),
                    run.plan.time_scale
                ),
                format!(
                    "the ATS saw {} requests after the first `tripped` notification",
                    after.len()
                ),
                [trip.record]
                    .into_iter()
                    .chain(after.iter().take(3).copied())
                    .chain(after.last().copied())
                    .chain(window.end),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::kill_switch::fixture::{Defect, brownout, kill_switch_run, mapping_errors};
    use crate::judge::test_support::{clean, manifest};
    use crate::run::plan::Scenario;

    fn judge(scenario: Scenario, defect: Defect) -> Outcome {
        let manifest = manifest();
        let run = kill_switch_run(scenario, defect);
        check(&Run::new(&manifest, &run.plan, run.log.records()))
    }

    #[test]
    fn a_correct_integration_passes_every_window() {
        for scenario in [Scenario::Outage, Scenario::Restart] {
            let outcome = judge(scenario, Defect::None);
            assert_eq!(
                outcome.findings.total(),
                0,
                "{scenario}: {:#?}",
                outcome.findings.kept()
            );
            assert!(outcome.skipped.is_none());
            assert_eq!(
                outcome.scenarios.iter().copied().collect::<Vec<_>>(),
                [scenario]
            );
        }
        let manifest = manifest();
        for run in [brownout(false), mapping_errors(true)] {
            let outcome = check(&Run::new(&manifest, &run.plan, run.log.records()));
            assert_eq!(
                outcome.findings.total(),
                0,
                "{:#?}",
                outcome.findings.kept()
            );
        }
    }

    #[test]
    fn never_tripping_is_no_notification_and_too_many_requests() {
        let outcome = judge(Scenario::Outage, Defect::NeverTrips);
        let seen = outcome.findings.seen();
        assert_eq!(
            seen,
            [
                "no `tripped` notification reached #recruiting-ops, #sec-ops, #eng-oncall while the fault lasted",
                "the ATS saw 147 requests from when the fault started until the window ended (1500 ms later), \
                 and no `tripped` notification came",
            ]
        );
        let finding = &outcome.findings.kept()[1];
        assert_eq!(finding.scenario, Some(Scenario::Outage));
        assert_eq!(
            finding.expected,
            "in the outage window the integration trips within 116 ATS requests of when the fault started"
        );
        let kinds = crate::judge::test_support::kinds(&finding.exchanges);
        assert_eq!(kinds.first(), Some(&"fault.start"));
        assert!(
            kinds[1..]
                .iter()
                .all(|k| *k == "ats.request" || *k == "ats.fault"),
            "{kinds:?}"
        );
    }

    #[test]
    fn notifying_only_some_channels_names_the_silent_ones() {
        let outcome = judge(Scenario::Outage, Defect::SomeChannels);
        assert_eq!(outcome.findings.total(), 1);
        let finding = &outcome.findings.kept()[0];
        assert_eq!(
            finding.seen,
            "no `tripped` notification reached #sec-ops, #eng-oncall while the fault lasted (#recruiting-ops heard it)"
        );
        assert_eq!(
            finding.expected,
            "every notify_channels channel (#recruiting-ops, #sec-ops, #eng-oncall) hears `tripped` from the \
             `disable-ats-writeback` switch during the outage window"
        );
        let kinds = crate::judge::test_support::kinds(&finding.exchanges);
        assert_eq!(kinds, ["fault.start", "notify.message", "fault.end"]);
    }

    #[test]
    fn notifying_after_the_fault_ended_is_too_late() {
        let outcome = judge(Scenario::Outage, Defect::TripsLate);
        let seen = outcome.findings.seen();
        assert_eq!(
            seen,
            [
                "no `tripped` notification reached #recruiting-ops, #sec-ops, #eng-oncall while the fault lasted; \
              #recruiting-ops, #sec-ops, #eng-oncall heard it only after the fault ended"
            ]
        );
    }

    #[test]
    fn hammering_after_the_trip_is_not_probing() {
        let outcome = judge(Scenario::Outage, Defect::KeepsCalling);
        assert_eq!(
            outcome.findings.total(),
            1,
            "{:#?}",
            outcome.findings.kept()
        );
        let finding = &outcome.findings.kept()[0];
        assert_eq!(
            finding.seen,
            "the ATS saw 40 requests after the first `tripped` notification"
        );
        assert!(
            finding.expected.starts_with("once tripped the integration only probes the ATS: at most 11 requests in the 450 ms"),
            "{}",
            finding.expected
        );
    }

    #[test]
    fn a_restarted_integration_that_never_trips_again_is_caught() {
        let outcome = judge(Scenario::Restart, Defect::NeverTripsAfterRestart);
        assert_eq!(
            outcome.findings.total(),
            1,
            "{:#?}",
            outcome.findings.kept()
        );
        assert!(
            outcome.findings.kept()[0]
                .seen
                .starts_with("the ATS saw 142 requests from when the integration was killed and restarted until the window ended"),
            "{}",
            outcome.findings.kept()[0].seen
        );
    }

    #[test]
    fn tripping_below_the_threshold_is_a_finding() {
        let manifest = manifest();
        let run = brownout(true);
        let outcome = check(&Run::new(&manifest, &run.plan, run.log.records()));
        assert_eq!(outcome.findings.total(), 1);
        let finding = &outcome.findings.kept()[0];
        assert_eq!(finding.scenario, Some(Scenario::Brownout));
        assert!(
            finding.seen.starts_with(
                "tripped below the threshold: `tripped` posted to #eng-oncall, #recruiting-ops, #sec-ops"
            ),
            "{}",
            finding.seen
        );
        assert_eq!(
            finding.expected,
            "the switch stays closed in the brownout-below window: its failures are below the 2 % threshold"
        );
    }

    #[test]
    fn mapping_errors_must_trip_too() {
        let manifest = manifest();
        let run = mapping_errors(false);
        let outcome = check(&Run::new(&manifest, &run.plan, run.log.records()));
        assert_eq!(outcome.findings.total(), 1);
        assert!(
            outcome.findings.kept()[0]
                .seen
                .starts_with("no `tripped` notification reached #recruiting-ops")
        );
    }

    #[test]
    fn without_fault_windows_it_skips_and_says_why() {
        let manifest = manifest();
        let clean = clean();
        let outcome = check(&Run::new(&manifest, &clean.plan, clean.log.records()));
        assert_eq!(
            outcome.skipped.as_deref(),
            Some("no kill-switch scenario (outage, brownout, mapping-errors, restart) in this run")
        );
        let run = kill_switch_run(Scenario::Outage, Defect::None);
        let outcome = check(&Run::new(&manifest, &run.plan, &[]));
        assert!(
            outcome
                .skipped
                .as_deref()
                .is_some_and(|r| r.starts_with("the log marks no fault window")),
            "{:?}",
            outcome.skipped
        );
    }
}
