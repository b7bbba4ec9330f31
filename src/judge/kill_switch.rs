//! `kill_switch.trips`, `kill_switch.queue_replay` and `kill_switch.gates_not_paused`:
//! the integration's behaviour under an ATS outage.
//!
//! They judge the kill-switch scenarios (`outage`, `brownout`, `mapping-errors`,
//! `restart`) against their `fault.start` / `fault.end` marks and the notify sink's
//! records. Until they are written, each reports `skip`: "no outage scenario in this
//! run" when the plan has none, and says that it is not judged yet when it has one.
//! They are three functions with the signature of every other check, so each can move
//! into a module of its own (`kill_switch/trips.rs`, …) without touching the judge.

use super::run::{Outcome, Run};

/// Why a kill-switch check has nothing to judge.
fn not_judged(run: &Run<'_>) -> Outcome {
    if run.plan.events.iter().any(|e| e.scenario.is_kill_switch()) {
        Outcome::skip("the kill-switch scenarios ran, but this check does not judge them yet")
    } else {
        Outcome::skip(NO_OUTAGE)
    }
}

/// Why the kill-switch checks have nothing to judge in a run without such a scenario.
const NO_OUTAGE: &str = "no outage scenario in this run";

/// `kill_switch.trips`: under an ATS outage the integration stops writing within a
/// bounded number of attempts and notifies every `notify_channels` channel.
pub(crate) fn trips(run: &Run<'_>) -> Outcome {
    not_judged(run)
}

/// `kill_switch.queue_replay`: after recovery, every event accepted during the
/// outage lands exactly once, in per-candidate order, within the drain deadline.
pub(crate) fn queue_replay(run: &Run<'_>) -> Outcome {
    not_judged(run)
}

/// `kill_switch.gates_not_paused`: candidate-facing calls go on during an outage
/// unless `pause_candidate_gates` is true.
pub(crate) fn gates_not_paused(run: &Run<'_>) -> Outcome {
    not_judged(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::test_support::{clean, manifest};

    #[test]
    fn without_an_outage_scenario_every_kill_switch_check_skips() {
        let manifest = manifest();
        let clean = clean();
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        for check in [trips, queue_replay, gates_not_paused] {
            assert_eq!(check(&run).skipped.as_deref(), Some(NO_OUTAGE));
        }
    }

    #[test]
    fn with_an_outage_scenario_they_say_they_do_not_judge_it_yet() {
        let manifest = manifest();
        let mut clean = clean();
        clean.plan.events[0].scenario = crate::run::plan::Scenario::Outage;
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        for check in [trips, queue_replay, gates_not_paused] {
            assert!(
                check(&run)
                    .skipped
                    .is_some_and(|r| r.contains("does not judge them yet"))
            );
        }
    }
}
