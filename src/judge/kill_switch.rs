//! `kill_switch.trips`, `kill_switch.queue_replay` and `kill_switch.gates_not_paused`:
//! the integration's behaviour under an ATS outage.
//!
//! They need a run with an outage scenario (the mock ATS answering 503 for a while,
//! then recovering, with `notify.message` records for the channels), which the driver
//! does not have yet, so for now each reports `skip`. They are three functions with
//! the signature of every other check, so each can move into a module of its own
//! (`kill_switch/trips.rs`, …) when the scenario lands, without touching the judge.

use super::run::{Outcome, Run};

/// Why the kill-switch checks have nothing to judge yet.
const NO_OUTAGE: &str = "no outage scenario in this run";

/// `kill_switch.trips`: under an ATS outage the integration stops writing within a
/// bounded number of attempts and notifies every `notify_channels` channel.
pub(crate) fn trips(_run: &Run<'_>) -> Outcome {
    Outcome::skip(NO_OUTAGE)
}

/// `kill_switch.queue_replay`: after recovery, every event accepted during the
/// outage lands exactly once, in per-candidate order, within the drain deadline.
pub(crate) fn queue_replay(_run: &Run<'_>) -> Outcome {
    Outcome::skip(NO_OUTAGE)
}

/// `kill_switch.gates_not_paused`: candidate-facing calls go on during an outage
/// unless `pause_candidate_gates` is true.
pub(crate) fn gates_not_paused(_run: &Run<'_>) -> Outcome {
    Outcome::skip(NO_OUTAGE)
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
}
