//! `kill_switch.queue_replay`: in the `outage` and `restart` scenarios, everything
//! the integration accepted lands once the ATS is back, exactly once, in order, and
//! the channels hear that the switch reset.
//!
//! An event counts as accepted when a `webhook.attempt` of it got a 2xx: from then
//! on it is the integration's promise, whether the switch was open (queued) or the
//! integration was SIGKILLed before writing it (the restart scenario's point). Each
//! such planned event that should land must be applied at the ATS exactly once,
//! outside every fault window of its scenario (during one the ATS was refusing
//! everything), and before the scenario's `scenario.end` (its drain deadline).
//!
//! A write admitted just before the fault took effect may be logged just after
//! `fault.start`: the mock logs `ats.event_applied` from the handler and the call's
//! `ats.request` after answering, with its latency. An application inside a window
//! whose own `ats.request` arrived before the window opened is therefore not held
//! against the integration.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{
    SwitchState, Timeline, Window, channels, list, ms, nothing_to_judge, unheard, window_finding,
};
use crate::judge::run::{Outcome, Run, body_at, body_event_id, times};
use crate::observe::Record;
use crate::run::plan::{PlannedEvent, Scenario, marks};

/// The scenarios whose windows end in a replay.
const REPLAY_SCENARIOS: [Scenario; 2] = [Scenario::Outage, Scenario::Restart];

/// How far past an application the mock's `ats.request` of the same call is looked for.
const REQUEST_LOOKAHEAD: usize = 64;

/// `kill_switch.queue_replay`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    let timeline = Timeline::new(run.records);
    let mut outcome = Outcome::default();
    let mut any = false;
    for scenario in REPLAY_SCENARIOS {
        let windows: Vec<&Window<'_>> = timeline
            .windows
            .iter()
            .filter(|w| w.scenario == Some(scenario))
            .collect();
        if windows.is_empty() {
            continue;
        }
        any = true;
        outcome.judged(Some(scenario));
        Replay {
            run,
            timeline: &timeline,
            scenario,
            windows,
        }
        .judge(&mut outcome);
    }
    if !any {
        return Outcome::skip(if timeline.windows.is_empty() {
            nothing_to_judge(run)
        } else {
            "no outage or restart scenario in this run: nothing was queued to replay".to_owned()
        });
    }
    outcome
}

/// One replay scenario's windows and what it needs to judge them.
struct Replay<'r, 'a> {
    run: &'r Run<'a>,
    timeline: &'r Timeline<'a>,
    scenario: Scenario,
    windows: Vec<&'r Window<'a>>,
}

impl<'r, 'a> Replay<'r, 'a> {
    fn judge(&self, outcome: &mut Outcome) {
        for event in self.run.plan.events_of(self.scenario) {
            if event.should_land {
                self.lands_once(event, outcome);
            }
        }
        self.in_order(outcome);
        self.resets(outcome);
    }

    /// The first `integration.killed` of the scenario.
    fn kill(&self) -> Option<&'a Record> {
        self.windows
            .iter()
            .flat_map(|w| w.kills.first())
            .copied()
            .next()
    }

    /// The window an application falls in, unless its call arrived before the window.
    fn applied_during(&self, applied: &Record) -> Option<&'r Window<'a>> {
        let window = self.windows.iter().copied().find(|w| w.holds(applied))?;
        let arrival = self.request_of(applied).and_then(|request| {
            request
                .latency_ms
                .map(|latency| request.elapsed_ms - latency)
        });
        match arrival {
            Some(arrival) if arrival < window.start.elapsed_ms => None,
            _ => Some(window),
        }
    }

    /// The `ats.request` of the call that applied an event: the next one for the same
    /// candidate and idempotency key.
    fn request_of(&self, applied: &Record) -> Option<&'a Record> {
        let records = self.run.records;
        let at = records.partition_point(|r| r.seq <= applied.seq);
        records[at..].iter().take(REQUEST_LOOKAHEAD).find(|r| {
            r.kind == "ats.request"
                && r.candidate == applied.candidate
                && r.idempotency_key.is_some()
                && r.idempotency_key == applied.idempotency_key
        })
    }

    /// An accepted event is applied exactly once, outside the windows, in time.
    fn lands_once(&self, event: &PlannedEvent, outcome: &mut Outcome) {
        let run = self.run;
        let attempts = run.attempts_of(&event.event_id);
        let Some(accepted) = attempts
            .iter()
            .copied()
            .find(|a| a.status.is_some_and(|s| (200..300).contains(&s)))
        else {
            return;
        };
        let applied = run.applied_of(&event.event_id);
        let end = run.scenario_end(self.scenario);
        let kill = self.kill().filter(|k| accepted.seq < k.seq);
        let accepted_when = match kill {
            Some(_) => " before the integration was SIGKILLed",
            None => "",
        };
        let expected = format!(
            "{} ({}), accepted by the integration{accepted_when}, is applied at the ATS exactly once, \
             after the fault ends, before the {} scenario ends",
            event.event_id, event.contract, self.scenario
        );
        let add = |outcome: &mut Outcome, seen: String, extra: &[&'a Record]| {
            outcome.findings.add(|| {
                run.finding(
                    Some(&event.candidate),
                    Some(&event.correlation_id),
                    expected.clone(),
                    seen,
                    [accepted]
                        .into_iter()
                        .chain(kill)
                        .chain(extra.iter().copied())
                        .chain(
                            self.windows
                                .iter()
                                .flat_map(|w| [w.start].into_iter().chain(w.end)),
                        ),
                )
            });
        };
        match applied {
            [] => add(
                outcome,
                format!(
                    "{} was lost: accepted{accepted_when} (answered {}) and never applied at the ATS",
                    event.event_id,
                    accepted.status.unwrap_or(0)
                ),
                &end.into_iter().collect::<Vec<_>>(),
            ),
            [_] => {}
            several => add(
                outcome,
                format!(
                    "{} was applied {} at the ATS",
                    event.event_id,
                    times(several.len())
                ),
                several,
            ),
        }
        if let Some((record, window)) = applied
            .iter()
            .find_map(|a| self.applied_during(a).map(|w| (*a, w)))
        {
            add(
                outcome,
                format!(
                    "{} was applied during the {} window, {} after the fault started, while the ATS was failing",
                    event.event_id,
                    window.phase.as_str(),
                    ms(record.elapsed_ms - window.start.elapsed_ms)
                ),
                &[record],
            );
        }
        if let (Some(&first), Some(end)) = (applied.first(), end)
            && first.seq > end.seq
        {
            add(
                outcome,
                format!(
                    "{} landed late: first applied {} after the {} scenario ended",
                    event.event_id,
                    ms(first.elapsed_ms - end.elapsed_ms),
                    self.scenario
                ),
                &[end, first],
            );
        }
    }

    /// Per candidate and contract, applications keep `occurred_at` order.
    fn in_order(&self, outcome: &mut Outcome) {
        let run = self.run;
        let mut seen: HashSet<&str> = HashSet::new();
        let mut latest: HashMap<(&str, &str), (DateTime<Utc>, &Record)> = HashMap::new();
        for &record in &run.applied {
            let Some(id) = body_event_id(record) else {
                continue;
            };
            let Some(event) = run.event(id).filter(|e| e.scenario == self.scenario) else {
                continue;
            };
            if !seen.insert(id) {
                continue;
            }
            let Some(occurred) =
                body_at(record, &run.manifest.envelope.occurred_at).and_then(parse_time)
            else {
                continue;
            };
            let key = (event.candidate.as_str(), event.contract.as_str());
            match latest.get(&key) {
                Some(&(newer, before)) if occurred < newer => outcome.findings.add(|| {
                    run.finding(
                        Some(&event.candidate),
                        Some(&event.correlation_id),
                        format!(
                            "{}'s {} events are replayed in occurred_at order",
                            event.candidate, event.contract
                        ),
                        format!(
                            "{} (occurred_at {}) was applied after {} (occurred_at {})",
                            event.event_id,
                            body_at(record, &run.manifest.envelope.occurred_at).unwrap_or("?"),
                            body_event_id(before).unwrap_or("?"),
                            body_at(before, &run.manifest.envelope.occurred_at).unwrap_or("?")
                        ),
                        [before, record],
                    )
                }),
                _ => {
                    latest.insert(key, (occurred, record));
                }
            }
        }
    }

    /// Every channel hears `reset` after each window in which the switch tripped,
    /// before the next window or the scenario's end. (A switch that never tripped
    /// has nothing to reset: `kill_switch.trips` holds that against it.)
    fn resets(&self, outcome: &mut Outcome) {
        let run = self.run;
        let channels = channels(run);
        let scenario_end = run.scenario_end(self.scenario);
        for (i, window) in self.windows.iter().enumerate() {
            let Some(end) = window.end else {
                outcome.findings.add(|| {
                    window_finding(
                        run,
                        window,
                        format!(
                            "the harness marks the end of the {} window (`{}`) before the scenario ends",
                            window.phase.as_str(),
                            marks::FAULT_END
                        ),
                        "the window never closed (the log was cut short), so the replay cannot be judged"
                            .to_owned(),
                        [window.start],
                    )
                });
                continue;
            };
            let tripped = self
                .timeline
                .notices_between(window.start.seq, end.seq)
                .iter()
                .any(|n| n.state == SwitchState::Tripped);
            if !tripped {
                continue;
            }
            let bound = self
                .windows
                .get(i + 1)
                .map(|w| w.start.seq)
                .into_iter()
                .chain(scenario_end.map(|e| e.seq))
                .min()
                .unwrap_or(u64::MAX);
            let after = self.timeline.notices_between(end.seq, bound);
            let missing = unheard(channels, after, SwitchState::Reset);
            if missing.is_empty() {
                continue;
            }
            outcome.findings.add(|| {
                window_finding(
                    run,
                    window,
                    format!(
                        "every notify_channels channel hears `reset` once the ATS is back, before the {} scenario ends",
                        self.scenario
                    ),
                    format!(
                        "no `reset` notification reached {} after the {} window ended",
                        list(&missing),
                        window.phase.as_str()
                    ),
                    [end]
                        .into_iter()
                        .chain(after.iter().map(|n| n.record))
                        .chain(scenario_end),
                )
            });
        }
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::judge::kill_switch::fixture::{Defect, KsRun, brownout, kill_switch_run};
    use crate::judge::test_support::{clean, manifest};

    fn judge_run(run: &KsRun) -> Outcome {
        let manifest = manifest();
        check(&Run::new(&manifest, &run.plan, run.log.records()))
    }

    fn seen(outcome: &Outcome) -> Vec<&str> {
        outcome.findings.seen()
    }

    #[test]
    fn a_correct_replay_passes() {
        for scenario in [Scenario::Outage, Scenario::Restart] {
            let outcome = judge_run(&kill_switch_run(scenario, Defect::None));
            assert_eq!(
                outcome.findings.total(),
                0,
                "{scenario}: {:#?}",
                outcome.findings.kept()
            );
            assert_eq!(
                outcome.scenarios.iter().copied().collect::<Vec<_>>(),
                [scenario]
            );
        }
    }

    #[test]
    fn each_defect_fails_with_its_own_finding() {
        // (scenario, defect, what is seen, why)
        let rows = [
            (
                Scenario::Outage,
                Defect::DropsOne,
                vec![
                    "evt_CAND_002_ou_1 was lost: accepted (answered 200) and never applied at the ATS",
                ],
                "an event accepted during the outage is dropped",
            ),
            (
                Scenario::Outage,
                Defect::AppliesTwice,
                vec!["evt_CAND_002_ou_1 was applied 2 times at the ATS"],
                "a replay writes one event twice",
            ),
            (
                Scenario::Outage,
                Defect::AppliesDuring,
                vec![
                    "evt_CAND_001_ou_2 was applied during the outage window, 140 ms after the fault started, while the ATS was failing",
                ],
                "a write while the ATS is down",
            ),
            (
                Scenario::Outage,
                Defect::OutOfOrder,
                vec![
                    "evt_CAND_001_ou_1 (occurred_at 2026-05-18T09:01:00Z) was applied after evt_CAND_001_ou_2 (occurred_at 2026-05-18T09:02:00Z)",
                ],
                "the queue replays newest first",
            ),
            (
                Scenario::Restart,
                Defect::LosesQueue,
                vec![
                    "evt_CAND_001_rs_2 was lost: accepted before the integration was SIGKILLed (answered 200) and never applied at the ATS",
                    "evt_CAND_002_rs_1 was lost: accepted before the integration was SIGKILLed (answered 200) and never applied at the ATS",
                ],
                "the queue did not survive SIGKILL",
            ),
            (
                Scenario::Outage,
                Defect::NoReset,
                vec![
                    "no `reset` notification reached #recruiting-ops, #sec-ops, #eng-oncall after the outage window ended",
                ],
                "the switch never says it reset",
            ),
        ];
        for (scenario, defect, expected, why) in rows {
            let outcome = judge_run(&kill_switch_run(scenario, defect));
            assert_eq!(seen(&outcome), expected, "{why}");
        }
    }

    #[test]
    fn a_lost_event_names_its_candidate_and_its_story() {
        let outcome = judge_run(&kill_switch_run(Scenario::Restart, Defect::LosesQueue));
        let finding = &outcome.findings.kept()[0];
        assert_eq!(finding.candidate.as_deref(), Some("CAND_001_rs"));
        assert_eq!(finding.correlation_id.as_deref(), Some("cor_CAND_001_rs"));
        assert_eq!(finding.scenario, Some(Scenario::Restart));
        assert_eq!(
            finding.expected,
            "evt_CAND_001_rs_2 (identity.verification.completed), accepted by the integration before the integration \
             was SIGKILLed, is applied at the ATS exactly once, after the fault ends, before the restart scenario ends"
        );
        let kinds = crate::judge::test_support::kinds(&finding.exchanges);
        assert_eq!(
            kinds,
            [
                "fault.start",
                "webhook.attempt",
                "integration.killed",
                "fault.end",
                "scenario.end"
            ]
        );
    }

    #[test]
    fn a_write_admitted_before_the_fault_is_not_held_against_it() {
        let mut run = kill_switch_run(Scenario::Outage, Defect::None);
        let a2 = run.events[1].clone();
        let start = run
            .log
            .records()
            .iter()
            .find(|r| r.kind == marks::FAULT_START)
            .map(|r| r.seq)
            .expect("a window");
        // The two failing calls after `fault.start` become A2's write, which arrived
        // 5 ms before the fault and was logged (applied, then answered) just after it.
        let applied = run.log.record_mut(start + 1);
        applied.kind = "ats.event_applied".into();
        applied.event_id = Some(a2.event_id.to_string());
        applied.idempotency_key = Some(a2.idempotency_key.to_string());
        applied.detail = json!({"body": a2.payload});
        let request = run.log.record_mut(start + 2);
        request.idempotency_key = Some(a2.idempotency_key.to_string());
        request.status = Some(201);
        request.latency_ms = Some(25.0);
        // The replay's copy of A2 goes, so it is applied once.
        let replayed = run
            .log
            .records()
            .iter()
            .rposition(|r| {
                r.kind == "ats.event_applied" && r.event_id.as_deref() == Some(&a2.event_id)
            })
            .expect("replayed");
        run.log.record_mut(replayed as u64).kind = "test.dropped".into();
        assert_eq!(judge_run(&run).findings.total(), 0);

        // Had it arrived after the window opened, it would be a write during the outage.
        run.log.record_mut(start + 2).latency_ms = Some(5.0);
        assert_eq!(
            seen(&judge_run(&run)),
            [
                "evt_CAND_001_ou_2 was applied during the outage window, 10 ms after the fault started, while the ATS was failing"
            ]
        );
    }

    #[test]
    fn without_an_outage_it_skips_and_says_why() {
        let clean = clean();
        let manifest = manifest();
        let outcome = check(&Run::new(&manifest, &clean.plan, clean.log.records()));
        assert!(
            outcome
                .skipped
                .as_deref()
                .is_some_and(|r| r.starts_with("no kill-switch scenario"))
        );
        let outcome = judge_run(&brownout(false));
        assert_eq!(
            outcome.skipped.as_deref(),
            Some("no outage or restart scenario in this run: nothing was queued to replay")
        );
    }
}
