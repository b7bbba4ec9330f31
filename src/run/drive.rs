//! Driving a plan at the integration: each scenario's candidates concurrently, each
//! candidate's deliveries in plan order, then waiting — on the mock ATS's state, not
//! on a clock — until everything that should land has landed and the ATS is quiet,
//! or the drain deadline passes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::plan::{Plan, Scenario, marks};
use super::scenarios::{Batch, Groups, OutageKind, Stress};
use crate::delivery::Sender;
use crate::mock::ats::AtsState;
use crate::mock::faults::{FaultKind, FaultWindow};
use crate::mock::notify::{NotifyState, SwitchState};
use crate::observe::{Actor, Entry, ObservationLog};

/// Candidates whose deliveries are in flight at once.
const CONCURRENT_CANDIDATES: usize = 64;
/// How long the ATS must see no request before a scenario counts as settled.
const QUIET: Duration = Duration::from_millis(150);
/// How often the drain condition is looked at.
const POLL: Duration = Duration::from_millis(10);

/// What happened in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ScenarioReport {
    /// The scenario.
    pub scenario: Scenario,
    /// Deliveries planned.
    pub deliveries: usize,
    /// Deliveries the integration acknowledged.
    pub acked: usize,
    /// Events that should land.
    pub should_land: usize,
    /// Of those, how many landed before the deadline.
    pub landed: usize,
    /// Milliseconds spent sending.
    pub send_ms: u64,
    /// Milliseconds from the first send until everything landed and the ATS was quiet.
    pub total_ms: u64,
    /// Whether the drain deadline passed first.
    pub timed_out: bool,
    /// A policy scenario's verification sessions: its events land nowhere, so what
    /// it waits for is a session for every candidate moved into a gated stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Sessions>,
}

/// The verification sessions a policy scenario waited for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Sessions {
    /// Candidates moved into a gated stage by a delivery that was neither forged nor lost.
    pub should_open: usize,
    /// Of those, how many had a session at the vendor when the scenario ended.
    pub opened: usize,
}

impl ScenarioReport {
    /// What the scenario waited for, as the reports show it: `5/5 landed` or
    /// `3/3 sessions`.
    pub fn outcome(&self) -> String {
        match self.sessions {
            Some(s) => format!("{}/{} sessions", s.opened, s.should_open),
            None => format!("{}/{} landed", self.landed, self.should_land),
        }
    }
}

/// What drives a plan: the sender, where it sends, and the ATS it watches.
pub struct Driver {
    /// Signs and delivers webhooks.
    pub sender: Arc<Sender>,
    /// The integration's `/webhooks/vendor`.
    pub url: url::Url,
    /// The mock ATS, whose state says what landed.
    pub ats: Arc<AtsState>,
    /// The run's log.
    pub log: ObservationLog,
    /// How long a scenario may take to drain.
    pub drain: DrainLimit,
    /// The notification sink, whose messages say when the kill switch tripped.
    pub notify: Arc<NotifyState>,
    /// The channels every kill-switch notification must reach.
    pub channels: Vec<String>,
    /// Kills and restarts the integration (`restart`), when the harness started it.
    pub restarter: Option<Arc<dyn Restarter>>,
    /// Before a fault window that must trip, the ATS calls of earlier scenarios must
    /// have left the manifest's rate window (5 minutes, scaled).
    pub settle: Settle,
    /// Samples of the ATS's request counter over time, for [`Settle`].
    pub calls: CallHistory,
}

/// Samples of the mock ATS's request counter, taken while the driver waits, so the
/// calls inside any recent window can be bounded from above.
#[derive(Debug, Default)]
pub struct CallHistory(std::sync::Mutex<std::collections::VecDeque<(tokio::time::Instant, u64)>>);

impl Driver {
    /// Records the ATS's request count now; forgets samples older than two windows.
    fn sample_calls(&self) {
        let now = tokio::time::Instant::now();
        let mut samples = self
            .calls
            .0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        samples.push_back((now, self.ats.requests()));
        let keep = self.settle.window * 2;
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > keep)
        {
            samples.pop_front();
        }
    }

    /// The ATS's request count at `at` or later (an upper bound on the calls before
    /// it), from the first sample taken at or after it; `None` with no such sample.
    fn ats_calls_at(&self, at: tokio::time::Instant) -> Option<u64> {
        let samples = self
            .calls
            .0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // The last sample at or before `at` undercounts nothing after it.
        samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map(|(_, count)| *count)
    }
}

/// How a fault window that must trip waits for a clean rate window: a breaker that
/// judges the failure rate over the last 5 minutes would otherwise see the earlier
/// scenarios' successes dilute the fault's failures, and could rightly not trip within
/// the protocol's budget, which counts from a clean window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    /// The manifest's 5-minute window on the run's clock.
    pub window: Duration,
    /// Calls that may remain in the window before an outage: so few that outweighing
    /// them takes at most half the in-flight allowance of failures.
    pub outage_calls: u64,
    /// Calls that may remain before a brownout: half of S, which a full minimum
    /// sample of the brownout's rate outweighs.
    pub brownout_calls: u64,
}

impl Settle {
    /// The settling of a manifest's kill switch on a clock `time_scale` times faster.
    pub fn new(tolerances: &crate::protocol::KillSwitchTolerances, time_scale: f64) -> Self {
        let pct = tolerances.threshold_pct;
        let allowance = (crate::protocol::IN_FLIGHT_ALLOWANCE / 2) as f64;
        let outage_calls = if pct >= 100.0 {
            u64::MAX
        } else {
            (allowance * (100.0 - pct) / pct).floor() as u64
        };
        Settle {
            window: crate::protocol::scaled(crate::protocol::RATE_WINDOW, time_scale),
            outage_calls,
            brownout_calls: (tolerances.sample / 2) as u64,
        }
    }
}

/// Kills the integration under test and starts it again on the same state folder.
pub trait Restarter: Send + Sync {
    /// SIGKILLs it, starts it again and waits until it is ready.
    fn restart(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("url", &self.url)
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Sends every batch and waits for each to drain; `progress` hears deliveries done.
    pub async fn drive(
        &self,
        batches: Vec<Batch<'_>>,
        plan: &Plan,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<ScenarioReport> {
        drive(self, batches, plan, progress).await
    }
}

async fn drive(
    driver: &Driver,
    batches: Vec<Batch<'_>>,
    plan: &Plan,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<ScenarioReport> {
    let mut reports = Vec::new();
    let mut batches = batches.into_iter().peekable();
    while let Some(batch) = batches.next() {
        if batch.stress != Stress::None {
            reports.push(scenario(driver, batch, plan, progress).await);
            continue;
        }
        // Scenarios that leave the ATS alone cannot interfere: their candidates and
        // events are their own and every check judges per event or candidate. So a
        // run of them is driven side by side (a busy ATS, as in production), each
        // still marked and drained on its own; a fault scenario runs alone.
        let mut calm = vec![batch];
        while let Some(next) = batches.next_if(|b| b.stress == Stress::None) {
            calm.push(next);
        }
        let side_by_side = calm
            .into_iter()
            .map(|batch| scenario(driver, batch, plan, progress));
        reports.extend(futures_util::future::join_all(side_by_side).await);
    }
    reports
}

/// Drives one scenario between its `scenario.start` and `scenario.end` marks.
async fn scenario(
    driver: &Driver,
    batch: Batch<'_>,
    plan: &Plan,
    progress: &(dyn Fn(u64) + Sync),
) -> ScenarioReport {
    let scenario = batch.scenario;
    driver.log.append(
        Actor::Harness,
        "scenario.start",
        Entry::detail(json!({"scenario": scenario})),
    );
    let started = Instant::now();
    let deliveries = batch.groups.deliveries() + batch.later.deliveries();
    let expected: HashSet<&str> = plan
        .events_of(scenario)
        .filter(|e| e.should_land)
        .map(|e| e.event_id.as_str())
        .collect();
    let acked = stress(driver, batch, &expected, progress).await;
    let send_ms = started.elapsed().as_millis() as u64;
    let (landed, timed_out) = wait_drained(driver, &expected, driver.drain).await;
    let report = ScenarioReport {
        scenario,
        deliveries,
        acked,
        should_land: expected.len(),
        landed,
        send_ms,
        total_ms: started.elapsed().as_millis() as u64,
        timed_out,
        sessions: None,
    };
    driver
        .log
        .append(Actor::Harness, "scenario.end", Entry::detail(json!(report)));
    report
}

/// Sends a batch while doing to the world what its [`Stress`] says; returns how many
/// deliveries the integration acknowledged.
async fn stress(
    driver: &Driver,
    batch: Batch<'_>,
    expected: &HashSet<&str>,
    progress: &(dyn Fn(u64) + Sync),
) -> usize {
    let scenario = batch.scenario;
    match batch.stress {
        Stress::None => send(driver, batch.groups, progress).await,
        Stress::Outage {
            hold,
            kind,
            restart,
        } => {
            let windows = outage_windows(hold, kind);
            settle(driver, driver.settle.outage_calls).await;
            open_window(&driver.ats, &driver.log, scenario, "outage", true, windows);
            let down = Instant::now();
            // The ATS stays down for `hold` and until the switch has tripped (on a
            // loaded machine or with a slow integration that takes longer than the
            // scaled hold), so the trip, the probes and the queue are all exercised
            // while it fails; an integration that never trips is given up on after
            // the stall deadline. The faults last until the window's end is marked.
            let tripped = || {
                wait_notified(
                    &driver.notify,
                    &driver.channels,
                    SwitchState::Tripped,
                    driver.drain.stall,
                )
            };
            // Everything is sent before the restart: a kill must not cut a delivery off.
            let acked = send(driver, batch.groups, progress).await;
            let recovering = async {
                tokio::time::sleep_until((down + hold).into()).await;
                tripped().await;
                close_window(&driver.ats, &driver.log, scenario, "outage");
            };
            // The window closes on time even when a restart is slow: the checks judge
            // what happened between the marks.
            let restarting = async {
                if restart {
                    tokio::time::sleep_until((down + hold / 2).into()).await;
                    tripped().await;
                    restart_integration(driver, scenario).await;
                }
            };
            tokio::join!(recovering, restarting);
            acked
        }
        Stress::Brownout { above, below } => {
            let deadline = driver.drain.stall;
            let first_ids = batch.groups.event_ids();
            let first_wave: HashSet<&str> = first_ids
                .iter()
                .map(String::as_str)
                .filter(|id| expected.contains(id))
                .collect();
            let windows = vec![FaultWindow::always(FaultKind::EveryNth { n: above })];
            settle(driver, driver.settle.brownout_calls).await;
            open_window(
                &driver.ats,
                &driver.log,
                scenario,
                "brownout-above",
                true,
                windows,
            );
            let mut acked = send(driver, batch.groups, progress).await;
            wait_notified(
                &driver.notify,
                &driver.channels,
                SwitchState::Tripped,
                deadline,
            )
            .await;
            close_window(&driver.ats, &driver.log, scenario, "brownout-above");
            // The second phase starts from a closed switch and an empty window.
            wait_notified(
                &driver.notify,
                &driver.channels,
                SwitchState::Reset,
                deadline,
            )
            .await;
            wait_drained(driver, &first_wave, driver.drain).await;
            let windows = vec![FaultWindow::always(FaultKind::EveryNth { n: below })];
            open_window(
                &driver.ats,
                &driver.log,
                scenario,
                "brownout-below",
                false,
                windows,
            );
            acked += send(driver, batch.later, progress).await;
            wait_drained(driver, expected, driver.drain).await;
            close_window(&driver.ats, &driver.log, scenario, "brownout-below");
            acked
        }
        Stress::MappingErrors => {
            open_window(
                &driver.ats,
                &driver.log,
                scenario,
                "mapping-errors",
                true,
                Vec::new(),
            );
            let mut acked = send(driver, batch.groups, progress).await;
            wait_notified(
                &driver.notify,
                &driver.channels,
                SwitchState::Tripped,
                driver.drain.stall,
            )
            .await;
            close_window(&driver.ats, &driver.log, scenario, "mapping-errors");
            acked += send(driver, batch.later, progress).await;
            acked
        }
    }
}

/// Waits, at most one rate window, until the ATS calls in the last window are few
/// enough that they cannot dilute the fault about to start ([`Settle`]). The count is
/// an upper bound from samples of the ATS's request counter, so it may wait a little
/// longer than needed, never less.
async fn settle(driver: &Driver, calls: u64) {
    let window = driver.settle.window;
    let start = tokio::time::Instant::now();
    loop {
        driver.sample_calls();
        let now = tokio::time::Instant::now();
        let count = driver.ats.requests();
        let at_horizon = now
            .checked_sub(window)
            .and_then(|horizon| driver.ats_calls_at(horizon))
            .unwrap_or(0);
        if count.saturating_sub(at_horizon) <= calls || now.duration_since(start) >= window {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The outage's fault windows: 503s, then connection resets, then hangs at the end
/// (a hang holds a request until the outage is lifted, so it comes last and short).
/// The last window is open-ended: the ATS fails until the harness marks the end and
/// lifts it ([`close_window`]), never before, however late a loaded machine gets there.
fn outage_windows(hold: Duration, kind: OutageKind) -> Vec<FaultWindow> {
    let ms = hold.as_millis() as u64;
    let window = |fault, from_ms: u64, for_ms: u64| FaultWindow {
        fault,
        from_ms,
        for_ms: Some(for_ms),
    };
    let rest = |fault, from_ms: u64| FaultWindow {
        fault,
        from_ms,
        for_ms: None,
    };
    match kind {
        OutageKind::Mixed => vec![
            window(FaultKind::Outage, 0, ms * 5 / 10),
            window(FaultKind::Reset, ms * 5 / 10, ms * 4 / 10),
            rest(FaultKind::Timeout, ms * 9 / 10),
        ],
        OutageKind::Unavailable => vec![rest(FaultKind::Outage, 0)],
        OutageKind::Timeout => vec![rest(FaultKind::Timeout, 0)],
        OutageKind::Reset => vec![rest(FaultKind::Reset, 0)],
    }
}

/// Puts `faults` in force on the ATS, then marks the window open: nothing the checks
/// see after the mark was answered before the fault.
pub(crate) fn open_window(
    ats: &AtsState,
    log: &ObservationLog,
    scenario: Scenario,
    phase: &str,
    expect_trip: bool,
    faults: Vec<FaultWindow>,
) {
    let detail =
        json!({"scenario": scenario, "phase": phase, "expect_trip": expect_trip, "faults": faults});
    let _ = ats.faults.set(faults);
    log.append(Actor::Harness, marks::FAULT_START, Entry::detail(detail));
}

/// Marks the window closed, then lifts its faults (the same guarantee, at the end).
pub(crate) fn close_window(ats: &AtsState, log: &ObservationLog, scenario: Scenario, phase: &str) {
    log.append(
        Actor::Harness,
        marks::FAULT_END,
        Entry::detail(json!({"scenario": scenario, "phase": phase})),
    );
    ats.faults.clear();
}

/// Kills and restarts the integration (a failure to come back is logged: the checks
/// then see every event it had accepted go missing).
async fn restart_integration(driver: &Driver, scenario: Scenario) {
    let Some(restarter) = &driver.restarter else {
        return;
    };
    driver.log.append(
        Actor::Harness,
        marks::INTEGRATION_KILLED,
        Entry::detail(json!({"scenario": scenario})),
    );
    if let Err(problem) = restarter.restart().await {
        driver.log.append(
            Actor::Harness,
            "integration.restart_failed",
            Entry::detail(json!({"scenario": scenario, "problem": problem})),
        );
    }
}

/// Waits until every channel has heard `state` since the last call that saw it, or
/// the deadline passes.
pub(crate) async fn wait_notified(
    notify: &NotifyState,
    channels: &[String],
    state: SwitchState,
    deadline: Duration,
) {
    let give_up = tokio::time::Instant::now() + deadline;
    let heard = |messages: &[crate::mock::notify::Message]| {
        channels.iter().all(|channel| {
            // The latest message of the channel decides: a trip followed by a reset
            // no longer counts as tripped.
            messages
                .iter()
                .rev()
                .find(|m| &m.channel == channel)
                .is_some_and(|m| m.state == state)
        })
    };
    while tokio::time::Instant::now() < give_up {
        if heard(&notify.messages()) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends groups, candidates concurrently and each candidate's deliveries in order.
/// A group's deliveries are generated when a slot frees up for it and dropped once
/// sent, so at most [`CONCURRENT_CANDIDATES`] groups' payloads exist at once, however
/// many candidates the run has.
async fn send(driver: &Driver, groups: Groups<'_>, progress: &(dyn Fn(u64) + Sync)) -> usize {
    let permits = Arc::new(Semaphore::new(CONCURRENT_CANDIDATES));
    let mut tasks = JoinSet::new();
    let mut acked = 0;
    let mut done = |result: Result<(usize, u64), tokio::task::JoinError>| {
        if let Ok((ok, sent)) = result {
            acked += ok;
            progress(sent);
        }
    };
    for group in groups.iter() {
        // The semaphore is never closed; a permit always comes.
        let permit = Arc::clone(&permits).acquire_owned().await.ok();
        while let Some(result) = tasks.try_join_next() {
            done(result);
        }
        let deliveries = groups.deliveries_of(group);
        let (sender, url) = (Arc::clone(&driver.sender), driver.url.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let mut acked = 0;
            for (delivery, perturbation) in &deliveries {
                if sender.deliver(&url, delivery, perturbation).await.acked {
                    acked += 1;
                }
            }
            (acked, deliveries.len() as u64)
        });
    }
    while let Some(result) = tasks.join_next().await {
        done(result);
    }
    acked
}

/// How long a scenario may drain: until nothing has landed for `stall` (the
/// integration stopped making progress), and never past `cap` in all. A large run
/// that keeps landing events is never cut off by a fixed clock, and a stuck one is
/// still given up on quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainLimit {
    /// Give up when no expected event has landed for this long.
    pub stall: Duration,
    /// Give up after this long whatever happens.
    pub cap: Duration,
}

impl DrainLimit {
    /// The same window for stalls and as the cap: the old fixed deadline.
    pub fn fixed(deadline: Duration) -> Self {
        DrainLimit {
            stall: deadline,
            cap: deadline,
        }
    }
}

/// Waits until every expected event was applied and the ATS has been quiet for
/// [`QUIET`], or nothing has landed for the limit's stall window, or its cap passes.
/// Returns how many landed and whether it gave up.
async fn wait_drained(
    driver: &Driver,
    expected: &HashSet<&str>,
    limit: DrainLimit,
) -> (usize, bool) {
    let ats = &driver.ats;
    let start = tokio::time::Instant::now();
    let cap = start + limit.cap;
    let mut last_requests = ats.requests();
    let mut quiet_since = start;
    let mut progress_at = start;
    let mut waiting = Waiting::new(expected);
    let mut next_look = start;
    loop {
        driver.sample_calls();
        let now = tokio::time::Instant::now();
        if now >= next_look {
            if waiting.look(|chunk| ats.retain_unapplied(chunk)) {
                progress_at = now;
            }
            // A look at a long backlog takes milliseconds and the ATS's applying waits
            // for each chunk's lock: keep looking to a twentieth of the time, so the
            // drain does not slow down what it waits for.
            next_look = now + now.elapsed() * 19;
        }
        // Read after the look: a request counts before it applies its event, so the
        // last event seen applied restarts the quiet wait, and the records its request
        // still has to write are in the log before the scenario ends.
        let requests = ats.requests();
        if requests != last_requests {
            last_requests = requests;
            quiet_since = now;
        }
        let landed = expected.len() - waiting.len();
        if landed == expected.len() && now.duration_since(quiet_since) >= QUIET {
            return (landed, false);
        }
        if now >= cap || (landed < expected.len() && now.duration_since(progress_at) >= limit.stall)
        {
            return (landed, true);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Ids per look at the ATS: its lock is held for one chunk at a time.
const LOOK_CHUNK: usize = 4096;

/// The expected events not seen applied yet, in chunks.
struct Waiting<'a> {
    chunks: Vec<Vec<&'a str>>,
    len: usize,
}

impl<'a> Waiting<'a> {
    fn new(expected: &HashSet<&'a str>) -> Self {
        let all: Vec<&str> = expected.iter().copied().collect();
        Waiting {
            len: all.len(),
            chunks: all.chunks(LOOK_CHUNK).map(<[&str]>::to_vec).collect(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Drops what the ATS applied since, which `unapplied` keeps out of a chunk (one
    /// look at the ATS, [`AtsState::retain_unapplied`]); true when something was.
    fn look(&mut self, mut unapplied: impl FnMut(&mut Vec<&'a str>)) -> bool {
        for chunk in &mut self.chunks {
            unapplied(chunk);
        }
        self.chunks.retain(|chunk| !chunk.is_empty());
        let before = std::mem::replace(&mut self.len, self.chunks.iter().map(Vec::len).sum());
        self.len != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A look at an ATS that has applied `landed`.
    fn at_ats<'a>(landed: &HashSet<&str>) -> impl FnMut(&mut Vec<&'a str>) {
        move |chunk| chunk.retain(|id| !landed.contains(id))
    }

    #[test]
    fn waiting_looks_in_chunks_and_forgets_what_landed() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("evt_{i}")).collect();
        let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut waiting = Waiting::new(&expected);
        assert_eq!(waiting.len(), 10_000);
        let mut looks = Vec::new();
        let mut landed: HashSet<&str> = HashSet::new();
        // Nothing landed: every chunk is looked at, none bigger than a chunk, no change.
        assert!(!waiting.look(|chunk| {
            looks.push(chunk.len());
            chunk.retain(|id| !landed.contains(id));
        }));
        assert_eq!(looks.iter().sum::<usize>(), 10_000);
        assert!(looks.iter().all(|&n| n <= LOOK_CHUNK), "{looks:?}");
        // A third landed: they are forgotten, and the look says so.
        landed.extend(ids.iter().step_by(3).map(String::as_str));
        assert!(waiting.look(at_ats(&landed)));
        assert_eq!(waiting.len(), 10_000 - landed.len());
        // The same again changes nothing.
        assert!(!waiting.look(at_ats(&landed)));
        // All landed: the chunks are gone, and a look has nothing left to ask about.
        landed.extend(ids.iter().map(String::as_str));
        assert!(waiting.look(at_ats(&landed)));
        assert_eq!(waiting.len(), 0);
        assert!(!waiting.look(|_| panic!("no chunk is left to look at")));
    }
}
