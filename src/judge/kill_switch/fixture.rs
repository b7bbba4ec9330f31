//! Hand-made kill-switch runs for the checks' tests: a correct integration, or one
//! with a single defect.

use crate::judge::test_support::{Log, PlanBuilder};
use crate::run::plan::{Plan, PlannedEvent, Scenario};

/// The seed manifest's `notify_channels`.
pub(super) const CHANNELS: [&str; 3] = ["#recruiting-ops", "#sec-ops", "#eng-oncall"];

/// One thing a broken integration does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Defect {
    /// Nothing: the integration trips, probes, notifies, resets and replays.
    None,
    /// Keeps calling the failing ATS and never notifies.
    NeverTrips,
    /// Notifies only the first channel.
    SomeChannels,
    /// Notifies `tripped` only once the fault is over.
    TripsLate,
    /// Notifies, then keeps calling the ATS at full speed.
    KeepsCalling,
    /// (restart) The restarted integration calls the failing ATS and never trips.
    NeverTripsAfterRestart,
    /// Never replays the second candidate's event.
    DropsOne,
    /// Replays the second candidate's event twice.
    AppliesTwice,
    /// Writes an event while the ATS is still failing.
    AppliesDuring,
    /// Replays the first candidate's events newest first.
    OutOfOrder,
    /// Loses everything accepted during the window (across the restart).
    LosesQueue,
    /// Never posts `reset`.
    NoReset,
}

/// A hand-made run and the events it plans.
pub(super) struct KsRun {
    /// The plan.
    pub(super) plan: Plan,
    /// The log.
    pub(super) log: Log,
    /// The planned events: A1, A2 (candidate A), B1 (candidate B).
    pub(super) events: Vec<PlannedEvent>,
}

fn notify_all(log: &mut Log, state: &str) {
    for channel in CHANNELS {
        log.notify(channel, state);
    }
}

fn failing_calls(log: &mut Log, candidate: &str, n: usize) {
    for _ in 0..n {
        log.request("GET", &format!("/v1/candidates/{candidate}"), 503);
    }
}

/// An `outage` or `restart` scenario: candidate A's first event is written before
/// the fault; A's second and B's only event are accepted during it and replayed
/// after it.
pub(super) fn kill_switch_run(scenario: Scenario, defect: Defect) -> KsRun {
    let tag = if scenario == Scenario::Restart {
        "rs"
    } else {
        "ou"
    };
    let a = format!("CAND_001_{tag}");
    let b = format!("CAND_002_{tag}");
    let mut plan = PlanBuilder::default();
    plan.candidate(scenario, &a, true, &[]);
    plan.candidate(scenario, &b, true, &[]);
    let a1 = plan.event(&a, 1, "failed");
    let a2 = plan.event(&a, 2, "passed");
    let b1 = plan.event(&b, 1, "passed");

    let mut log = Log::default();
    log.ready();
    log.scenario("scenario.start", scenario);
    log.attempt(&a1, 0, Some(200), 5.0);
    if defect != Defect::OutOfOrder {
        log.applied(&a, &a1.payload);
    }
    log.fault_start(scenario, "outage", true);
    failing_calls(&mut log, &a, 4);
    log.ats_fault("reset", &format!("/v1/candidates/{a}"));
    if defect == Defect::NeverTrips {
        // Past the seed's outage budget, 2 × 50 + 16 calls.
        failing_calls(&mut log, &a, 140);
    }
    match defect {
        Defect::NeverTrips | Defect::TripsLate => {}
        Defect::SomeChannels => {
            log.notify(CHANNELS[0], "tripped");
        }
        _ => notify_all(&mut log, "tripped"),
    }
    log.attempt(&a2, 0, Some(200), 5.0);
    log.attempt(&b1, 0, Some(200), 5.0);
    if scenario == Scenario::Restart {
        log.killed(scenario);
        log.ready();
        failing_calls(&mut log, &b, 3);
        if defect == Defect::NeverTripsAfterRestart {
            failing_calls(&mut log, &b, 137);
        } else {
            notify_all(&mut log, "tripped");
        }
    }
    failing_calls(&mut log, &a, 2);
    if defect == Defect::KeepsCalling {
        failing_calls(&mut log, &a, 38);
    }
    if defect == Defect::AppliesDuring {
        log.applied(&a, &a2.payload);
    }
    log.fault_end(scenario, "outage");
    if defect == Defect::TripsLate {
        notify_all(&mut log, "tripped");
    }
    if defect != Defect::NoReset {
        notify_all(&mut log, "reset");
    }
    if defect == Defect::OutOfOrder {
        log.applied(&a, &a2.payload);
        log.applied(&a, &a1.payload);
    } else if !matches!(defect, Defect::AppliesDuring | Defect::LosesQueue) {
        log.applied(&a, &a2.payload);
    }
    match defect {
        Defect::DropsOne | Defect::LosesQueue => {}
        Defect::AppliesTwice => {
            log.applied(&b, &b1.payload);
            log.applied(&b, &b1.payload);
        }
        _ => {
            log.applied(&b, &b1.payload);
        }
    }
    log.scenario("scenario.end", scenario);
    KsRun {
        plan: plan.plan,
        log,
        events: vec![a1, a2, b1],
    }
}

/// A `brownout` scenario: above the threshold the switch trips, probes, resets;
/// below it, it must not trip (`trips_below` makes it).
pub(super) fn brownout(trips_below: bool) -> KsRun {
    let scenario = Scenario::Brownout;
    let mut plan = PlanBuilder::default();
    plan.candidate(scenario, "CAND_001_boa00", true, &[]);
    let mut log = Log::default();
    log.ready();
    log.scenario("scenario.start", scenario);
    log.fault_start(scenario, "brownout-above", true);
    // One call in 33 fails; the switch trips at the 66th call, as the reference does.
    for i in 1..=66 {
        let status = if i % 33 == 0 { 503 } else { 201 };
        log.request("POST", "/v1/candidates/CAND_001_boa00/events", status);
    }
    notify_all(&mut log, "tripped");
    failing_calls(&mut log, "CAND_001_boa00", 2);
    log.fault_end(scenario, "brownout-above");
    log.request("GET", "/v1/candidates/CAND_001_boa00", 200);
    notify_all(&mut log, "reset");
    log.fault_start(scenario, "brownout-below", false);
    for i in 1..=80 {
        let status = if i % 67 == 0 { 503 } else { 201 };
        log.request("POST", "/v1/candidates/CAND_001_bob00/events", status);
        if trips_below && i == 67 {
            notify_all(&mut log, "tripped");
        }
    }
    log.fault_end(scenario, "brownout-below");
    log.scenario("scenario.end", scenario);
    KsRun {
        plan: plan.plan,
        log,
        events: Vec::new(),
    }
}

/// A `mapping-errors` scenario: more refused payloads than the manifest allows; the
/// integration notifies the trip unless `trips` is false.
pub(super) fn mapping_errors(trips: bool) -> KsRun {
    let scenario = Scenario::MappingErrors;
    let mut plan = PlanBuilder::default();
    plan.candidate(scenario, "CAND_001_mpd00", true, &[]);
    let mut log = Log::default();
    log.ready();
    log.scenario("scenario.start", scenario);
    log.fault_start(scenario, "mapping-errors", true);
    for _ in 0..11 {
        log.request("POST", "/v1/candidates/CAND_001_mpd00/events", 422);
    }
    if trips {
        notify_all(&mut log, "tripped");
    }
    log.fault_end(scenario, "mapping-errors");
    notify_all(&mut log, "reset");
    log.scenario("scenario.end", scenario);
    KsRun {
        plan: plan.plan,
        log,
        events: Vec::new(),
    }
}
