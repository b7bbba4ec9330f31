//! `kill_switch.trips`, `kill_switch.queue_replay` and `kill_switch.gates_not_paused`:
//! the integration's behaviour while the ATS fails, judged against the fault windows
//! the harness marks in the log.
//!
//! The kill-switch scenarios (`outage`, `brownout`, `mapping-errors`, `restart`) open
//! and close fault windows with `fault.start` / `fault.end` harness records
//! ([`crate::run::plan::marks`]); the restart scenario adds `integration.killed`.
//! [`Timeline::new`] reads those marks, the `notify.message` records of the
//! notification sink and every ATS call in one pass, and each check is then a sweep
//! over the windows with slices of those lists found by binary search on `seq`.
//!
//! What the checks rely on from the driver: records are in time order, windows do
//! not overlap, `fault.start` is logged once the fault is in force and `fault.end`
//! before it is lifted, so everything logged between the two happened while the ATS
//! was failing.
//!
//! An ATS call is counted once, when it arrived: an `ats.request` record (logged when
//! the mock answered), or, for the calls the mock never answers — `reset`, `timeout`
//! and `commit_then_drop` faults, whose `ats.request` record is never written because
//! the connection dies first — the `ats.fault` note the mock writes on arrival. The
//! 504 a hung call gets at the mock's hang limit is not counted again.
//!
//! A malformed mark or notification is ignored (a `fault.start` without a readable
//! phase still opens a window; a notification without a channel or state is not a
//! notification), so no record can make a check panic.

mod gates;
mod queue_replay;
mod trips;

#[cfg(test)]
mod fixture;

use serde_json::Value;

use super::Finding;
use super::fold::{Context, Fold};
use super::run::{Outcome, Run, detail_text, scenario_in};
use crate::observe::{Actor, Record};
use crate::run::plan::{Scenario, marks};

/// `kill_switch.trips`.
pub(crate) fn trips<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(Buffered::new(trips::check))
}

/// `kill_switch.queue_replay`.
pub(crate) fn queue_replay<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(Buffered::new(queue_replay::check))
}

/// `kill_switch.gates_not_paused`.
pub(crate) fn gates_not_paused<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(Buffered::new(gates::check))
}

/// A kill-switch check over the records of the kill-switch scenarios, which the
/// judge keeps once for the three of them ([`super::fold::Seen::kill_switch`]).
struct Buffered {
    judge: fn(&Run<'_>) -> Outcome,
}

impl Buffered {
    fn new(judge: fn(&Run<'_>) -> Outcome) -> Self {
        Buffered { judge }
    }
}

impl Fold for Buffered {
    fn record(&mut self, _: &Context<'_>, _: &Record) {}

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        (self.judge)(&Run::new(
            cx.manifest,
            cx.plan.plan,
            cx.seen.kill_switch.records(),
        ))
    }
}

/// The records of the kill-switch scenarios (and the policy's outage), kept as the log
/// streams by: their traffic is sized by the protocol's tolerances (a few hundred
/// events per fault window), not by the number of candidates, so holding it is cheap
/// and lets each check look back and ahead within a window.
#[derive(Debug, Default)]
pub(crate) struct KillSwitchRecords {
    records: Vec<Record>,
    inside: bool,
}

impl KillSwitchRecords {
    /// Keeps `record` if it belongs to a kill-switch scenario.
    pub(crate) fn observe(&mut self, record: &Record) {
        let kill_switch = || {
            scenario_in(record)
                .is_some_and(|s| Scenario::KILL_SWITCH.contains(&s) || s == Scenario::PolicyOutage)
        };
        match record.kind.as_str() {
            "scenario.start" if kill_switch() => self.inside = true,
            "scenario.end" if kill_switch() => {
                self.records.push(record.clone());
                self.inside = false;
                return;
            }
            // Whether the integration's output is in the log at all.
            "integration.ready" => {}
            _ if !self.inside => return,
            _ => {}
        }
        self.records.push(record.clone());
    }

    /// The records kept, in log order.
    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }
}

/// What a fault window does to the ATS (the `phase` of its `fault.start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Every ATS request fails (`outage` and `restart` scenarios).
    Outage,
    /// A share of ATS requests just above the 5xx threshold fails.
    BrownoutAbove,
    /// A share just below the threshold fails: the switch must stay closed.
    BrownoutBelow,
    /// The ATS is healthy but refuses drifted payloads (422).
    MappingErrors,
    /// A phase this build does not know: only its notifications are judged.
    Other,
}

impl Phase {
    fn parse(name: Option<&str>) -> Phase {
        match name {
            Some("outage") => Phase::Outage,
            Some("brownout-above") => Phase::BrownoutAbove,
            Some("brownout-below") => Phase::BrownoutBelow,
            Some("mapping-errors") => Phase::MappingErrors,
            _ => Phase::Other,
        }
    }

    /// The phase's name in findings.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Phase::Outage => "outage",
            Phase::BrownoutAbove => "brownout-above",
            Phase::BrownoutBelow => "brownout-below",
            Phase::MappingErrors => "mapping-errors",
            Phase::Other => "fault",
        }
    }
}

/// One fault window: from its `fault.start` to its `fault.end`, or, when the log
/// holds no end, to whatever came next (the scenario's end, the next window, the log's
/// last record).
#[derive(Debug)]
pub(super) struct Window<'a> {
    /// The scenario it belongs to.
    pub(super) scenario: Option<Scenario>,
    /// What it does to the ATS.
    pub(super) phase: Phase,
    /// Whether the kill switch must trip in it.
    pub(super) expect_trip: bool,
    /// The `fault.start` record.
    pub(super) start: &'a Record,
    /// The `fault.end` record, if the log has it.
    pub(super) end: Option<&'a Record>,
    /// The `seq` the window runs until (its end, or what cut it short).
    pub(super) until_seq: u64,
    /// The `elapsed_ms` the window runs until.
    pub(super) until_ms: f64,
    /// The `integration.killed` records inside it.
    pub(super) kills: Vec<&'a Record>,
}

impl Window<'_> {
    /// Whether a record falls strictly inside the window.
    pub(super) fn holds(&self, record: &Record) -> bool {
        record.seq > self.start.seq && record.seq < self.until_seq
    }

    /// The window cut at every `integration.killed`: `(from, until_seq, until_ms)`,
    /// each part judged as a fresh start of the integration.
    pub(super) fn segments(&self) -> Vec<(&Record, u64, f64)> {
        let mut starts = vec![self.start];
        starts.extend(self.kills.iter().copied());
        let ends = self
            .kills
            .iter()
            .map(|k| (k.seq, k.elapsed_ms))
            .chain([(self.until_seq, self.until_ms)]);
        starts
            .into_iter()
            .zip(ends)
            .map(|(from, (seq, ms))| (from, seq, ms))
            .collect()
    }
}

use crate::protocol::SwitchState;

/// One `notify.message` the sink accepted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Notice<'a> {
    /// The record.
    pub(super) record: &'a Record,
    /// The channel, decoded (`#recruiting-ops`).
    pub(super) channel: &'a str,
    /// Tripped or reset.
    pub(super) state: SwitchState,
}

impl<'a> Notice<'a> {
    fn parse(record: &'a Record) -> Option<Self> {
        if record.actor != Actor::Notify {
            return None;
        }
        let state = SwitchState::parse(detail_text(record, "state")?)?;
        Some(Notice {
            record,
            channel: detail_text(record, "channel")?,
            state,
        })
    }
}

/// The fault windows, the notifications and the ATS and candidate-facing calls of a
/// run, each in log order.
#[derive(Debug, Default)]
pub(super) struct Timeline<'a> {
    /// The fault windows.
    pub(super) windows: Vec<Window<'a>>,
    /// Every kill-switch notification.
    pub(super) notices: Vec<Notice<'a>>,
    /// Every ATS call, once, where it arrived (see the module docs).
    pub(super) ats_calls: Vec<&'a Record>,
    /// Every candidate-facing call: vendor requests and access grants, granted or refused.
    pub(super) gate_calls: Vec<&'a Record>,
}

/// The `ats.fault` notes of calls that never get an `ats.request` record.
const UNANSWERED_FAULTS: [&str; 3] = ["timeout", "reset", "commit_then_drop"];

/// What the mock ATS answers a call hung until its hang limit.
const HANG_LIMIT_STATUS: u16 = 504;

impl<'a> Timeline<'a> {
    /// Reads the log once.
    pub(super) fn new(records: &'a [Record]) -> Self {
        let mut timeline = Timeline::default();
        let mut scenario: Option<Scenario> = None;
        let mut open: Option<usize> = None;
        for record in records {
            match record.kind.as_str() {
                "scenario.start" if record.actor == Actor::Harness => {
                    scenario = scenario_in(record);
                }
                "scenario.end" if record.actor == Actor::Harness => {
                    timeline.cut(open.take(), record);
                }
                marks::FAULT_START if record.actor == Actor::Harness => {
                    timeline.cut(open.take(), record);
                    let phase = Phase::parse(detail_text(record, "phase"));
                    open = Some(timeline.windows.len());
                    timeline.windows.push(Window {
                        scenario: scenario_in(record).or(scenario),
                        phase,
                        expect_trip: record
                            .detail
                            .get("expect_trip")
                            .and_then(Value::as_bool)
                            .unwrap_or(phase != Phase::BrownoutBelow),
                        start: record,
                        end: None,
                        until_seq: u64::MAX,
                        until_ms: f64::INFINITY,
                        kills: Vec::new(),
                    });
                }
                marks::FAULT_END if record.actor == Actor::Harness => {
                    if let Some(window) = open.take().and_then(|i| timeline.windows.get_mut(i)) {
                        window.end = Some(record);
                        window.until_seq = record.seq;
                        window.until_ms = record.elapsed_ms;
                    }
                }
                marks::INTEGRATION_KILLED if record.actor == Actor::Harness => {
                    if let Some(window) = open.and_then(|i| timeline.windows.get_mut(i)) {
                        window.kills.push(record);
                    }
                }
                "notify.message" => timeline.notices.extend(Notice::parse(record)),
                "ats.request" => {
                    if record.status != Some(HANG_LIMIT_STATUS) {
                        timeline.ats_calls.push(record);
                    }
                    let grant = detail_text(record, "path")
                        .is_some_and(|p| p.trim_end_matches('/').ends_with("/access-grants"));
                    let granted = record.status.is_some_and(|s| (200..300).contains(&s));
                    if grant && !granted {
                        timeline.gate_calls.push(record);
                    }
                }
                "ats.fault"
                    if detail_text(record, "fault")
                        .is_some_and(|f| UNANSWERED_FAULTS.contains(&f)) =>
                {
                    timeline.ats_calls.push(record);
                }
                "vendor.request" | "ats.access_granted" => timeline.gate_calls.push(record),
                _ => {}
            }
        }
        if let (Some(i), Some(last)) = (open, records.last())
            && let Some(window) = timeline.windows.get_mut(i)
        {
            window.until_seq = last.seq.saturating_add(1);
            window.until_ms = last.elapsed_ms;
        }
        timeline
    }

    /// Ends a window the log never closed at `record`.
    fn cut(&mut self, open: Option<usize>, record: &Record) {
        if let Some(window) = open.and_then(|i| self.windows.get_mut(i)) {
            window.until_seq = record.seq;
            window.until_ms = record.elapsed_ms;
        }
    }

    /// The ATS calls logged strictly between two `seq`s.
    pub(super) fn ats_calls_between(&self, after: u64, before: u64) -> &[&'a Record] {
        between(&self.ats_calls, after, before, |r| r.seq)
    }

    /// The notifications logged strictly between two `seq`s.
    pub(super) fn notices_between(&self, after: u64, before: u64) -> &[Notice<'a>] {
        between(&self.notices, after, before, |n| n.record.seq)
    }
}

/// The items of a list sorted by `seq` that lie strictly between `after` and `before`.
fn between<T>(items: &[T], after: u64, before: u64, seq: impl Fn(&T) -> u64) -> &[T] {
    let from = items.partition_point(|i| seq(i) <= after);
    let to = items.partition_point(|i| seq(i) < before).max(from);
    &items[from..to]
}

/// The manifest's `notify_channels`.
pub(super) fn channels<'r>(run: &'r Run<'_>) -> &'r [String] {
    run.manifest.notify_channels()
}

/// The channels of `channels` that no notice of `state` in `notices` reached.
pub(super) fn unheard<'c>(
    channels: &'c [String],
    notices: &[Notice<'_>],
    state: SwitchState,
) -> Vec<&'c str> {
    channels
        .iter()
        .map(String::as_str)
        .filter(|c| !notices.iter().any(|n| n.state == state && n.channel == *c))
        .collect()
}

/// Why a kill-switch check has nothing to judge: the plan has no kill-switch
/// scenario, or the log marks no fault window.
pub(super) fn nothing_to_judge(run: &Run<'_>) -> String {
    let not_driven: Vec<String> = run
        .plan
        .skipped
        .iter()
        .filter(|s| s.scenario.is_kill_switch())
        .map(|s| format!("{} was not driven: {}", s.scenario, s.reason))
        .collect();
    if !not_driven.is_empty() {
        not_driven.join("; ")
    } else if run
        .plan
        .candidates
        .iter()
        .any(|c| c.scenario.is_kill_switch())
    {
        "the log marks no fault window (`fault.start`): the kill-switch scenarios did not run"
            .to_owned()
    } else {
        "no kill-switch scenario (outage, brownout, mapping-errors, restart) in this run".to_owned()
    }
}

/// A finding about a whole window (no one candidate), in the window's scenario.
pub(super) fn window_finding<'r>(
    run: &Run<'_>,
    window: &Window<'_>,
    expected: String,
    seen: String,
    exchanges: impl IntoIterator<Item = &'r Record>,
) -> Finding {
    let mut finding = run.finding(None, None, expected, seen, exchanges);
    finding.scenario = window.scenario;
    finding
}

/// `#a, #b`.
pub(super) fn list(channels: &[&str]) -> String {
    channels.join(", ")
}

/// Milliseconds, rounded, for people.
pub(super) fn ms(value: f64) -> String {
    if value.is_finite() {
        format!("{} ms", value.round())
    } else {
        "? ms".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use crate::judge::fold::run_one;
    use serde_json::json;

    use super::fixture::{Defect, kill_switch_run};
    use super::*;
    use crate::judge::test_support::{Log, manifest};
    use crate::judge::{Status, judge};
    use crate::manifest::model::Severity;

    #[test]
    fn the_judge_blocks_a_switch_that_never_trips_and_passes_a_good_one() {
        let manifest = manifest();
        let good = kill_switch_run(Scenario::Outage, Defect::None);
        let judgement = judge(&manifest, &good.plan, good.log.records());
        let status = |id: &str| judgement.check(id).map(|c| (c.status, c.severity));
        assert_eq!(
            status("kill_switch.trips"),
            Some((Status::Pass, Severity::BlockRelease))
        );
        assert_eq!(
            status("kill_switch.queue_replay"),
            Some((Status::Pass, Severity::BlockRelease))
        );
        assert_eq!(
            status("kill_switch.gates_not_paused").map(|s| s.0),
            Some(Status::Skip)
        );

        let bad = kill_switch_run(Scenario::Outage, Defect::NeverTrips);
        let judgement = judge(&manifest, &bad.plan, bad.log.records());
        let trips = judgement.check("kill_switch.trips").expect("judged");
        assert_eq!(
            (trips.status, trips.severity),
            (Status::Fail, Severity::BlockRelease)
        );
        assert_eq!(judgement.verdict, crate::verdict::Verdict::Blocked);
    }

    #[test]
    fn malformed_marks_and_notifications_never_panic() {
        let manifest = manifest();
        let run = kill_switch_run(Scenario::Restart, Defect::None);
        let mut log = Log::default();
        log.push(Actor::Harness, marks::FAULT_END, |_| {});
        log.push(Actor::Harness, marks::INTEGRATION_KILLED, |_| {});
        log.push(Actor::Harness, marks::FAULT_START, |r| r.detail = json!(7));
        log.push(Actor::Notify, "notify.message", |r| {
            r.detail = json!({"state": 5})
        });
        log.push(Actor::Notify, "notify.message", |r| {
            r.detail = json!({"state": "tripped"})
        });
        log.push(Actor::Ats, "ats.fault", |_| {});
        log.push(Actor::Ats, "ats.request", |_| {});
        log.push(Actor::Vendor, "vendor.request", |_| {});
        log.push(Actor::Ats, "ats.event_applied", |r| {
            r.detail = json!({"body": {"event_id": 3}})
        });
        log.push(Actor::Harness, marks::FAULT_START, |r| {
            r.detail = json!({"scenario": "nonsense", "phase": [], "expect_trip": "yes"});
        });
        let checks: [crate::judge::fold::MakeFold; 3] = [trips, queue_replay, gates_not_paused];
        for check in checks {
            let _ = run_one(check, &manifest, &run.plan, log.records());
            let _ = run_one(check, &manifest, &run.plan, &[]);
        }
        for check in [trips::check, queue_replay::check, gates::check] {
            let _ = check(&Run::new(&manifest, &run.plan, log.records()));
        }
        let timeline = Timeline::new(log.records());
        assert_eq!(
            timeline.windows.len(),
            2,
            "a start opens a window, however odd"
        );
        assert!(
            timeline.notices.is_empty(),
            "a notice without channel or state is none"
        );
        assert_eq!(timeline.windows[0].until_seq, timeline.windows[1].start.seq);
    }

    #[test]
    fn a_window_the_log_never_closed_cannot_be_replayed() {
        let manifest = manifest();
        let mut run = kill_switch_run(Scenario::Outage, Defect::None);
        let end = run
            .log
            .records()
            .iter()
            .position(|r| r.kind == marks::FAULT_END)
            .expect("a window");
        run.log.record_mut(end as u64).kind = "test.dropped".into();
        let outcome = run_one(queue_replay, &manifest, &run.plan, run.log.records());
        let seen = outcome.findings.seen();
        assert!(
            seen.contains(
                &"the window never closed (the log was cut short), so the replay cannot be judged"
            ),
            "{seen:?}"
        );
    }
}
