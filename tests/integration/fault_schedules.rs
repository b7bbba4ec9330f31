//! The reference relay loses and duplicates nothing under any fault schedule.
//!
//! A property test over random schedules against the real mocks on loopback: up to
//! three ATS fault windows (outage, reset, timeout, error rate, every n-th) in the
//! first ~2.5 s, up to two relay restarts between deliveries (the worker aborted
//! wherever it is, mid-call to the ATS included: as abrupt as a crash for the durable
//! store; the new relay on the same state folder, on the same address or a new one),
//! and 5–30 events for four candidates, each candidate's events later than the one
//! before, delivered one at a time at a steady pace. Once the schedule is over and
//! the faults cleared, every acknowledged event must reach the ATS exactly once, and
//! each candidate's history must be its events in order, so its final state is its
//! latest event.
//!
//! A failing schedule shrinks (fewer windows, restarts and events, earlier and
//! shorter windows) and proptest prints the minimal one, as `Schedule`'s `Debug`
//! renders it, with the story of what the ATS saw. Nothing is timed: waits poll
//! state under a generous deadline; the only sleeps pace the schedule itself.
//! `PROPTEST_CASES=100` runs a longer soak than the default 8 cases.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use stagegate::delivery::{Delivery, Perturbation, RetryPolicy, Sender, WebhookSecret};
use stagegate::manifest::Manifest;
use stagegate::mock::faults::{FaultKind, FaultWindow};
use stagegate::mock::{MockConfig, Mocks};
use stagegate::observe::ObservationLog;
use stagegate::relay::Relay;
use stagegate::relay::config::RelayConfig;
use stagegate::relay::log::RelayLog;

use crate::relay::{SECRET, candidate, event, relay_config};
use crate::util::Captured;

const CONTRACT: &str = "identity.verification.completed";
/// The breaker's 30 s cool-down and probe interval become 0.5 s.
const SCALE: f64 = 60.0;
/// Candidates seeded in the ATS; events pick among them.
const CANDIDATES: usize = 4;
/// The most events a schedule delivers.
const MAX_EVENTS: usize = 30;
/// How long the relay may take to drain once the schedule is over: generous, for a
/// busy 2-core machine (a healthy drain takes a few seconds at most).
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// Relay log lines quoted when a case fails.
const LOG_TAIL: usize = 25;

/// Where the relay after a restart listens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rebind {
    /// The address the relay had before.
    SameAddress,
    /// A fresh port; the sender follows it.
    NewAddress,
}

/// A relay restart at a point of the schedule.
#[derive(Clone, Copy)]
struct Restart {
    at_ms: u64,
    rebind: Rebind,
}

impl fmt::Debug for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whereto = match self.rebind {
            Rebind::SameAddress => "the same address",
            Rebind::NewAddress => "a new address",
        };
        write!(f, "restart at {} ms on {whereto}", self.at_ms)
    }
}

/// A fault window as a sentence: `outage from 200 ms for 800 ms`.
#[derive(Clone)]
struct Window(FaultWindow);

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = &self.0;
        match window.fault {
            FaultKind::ErrorRate { rate } => write!(f, "error_rate {rate:.2}")?,
            FaultKind::EveryNth { n } => write!(f, "every_nth {n}")?,
            ref other => f.write_str(other.name())?,
        }
        write!(f, " from {} ms", window.from_ms)?;
        match window.for_ms {
            Some(len) => write!(f, " for {len} ms"),
            None => f.write_str(" on"),
        }
    }
}

/// The events in sending order, each naming its candidate.
#[derive(Clone)]
struct Events {
    to: Vec<usize>,
    gap_ms: u64,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events, one every {} ms, to candidates {:?}",
            self.to.len(),
            self.gap_ms,
            self.to
        )
    }
}

/// One case: the ATS's faults, the relay's restarts, the traffic, and the seed of
/// the ATS's error-rate draws. Times are milliseconds from the start of the case.
#[derive(Clone, Debug)]
struct Schedule {
    faults: Vec<Window>,
    restarts: Vec<Restart>,
    events: Events,
    seed: u64,
}

impl Schedule {
    /// When the last window closes or the last restart happens.
    fn horizon_ms(&self) -> u64 {
        let windows = self
            .faults
            .iter()
            .map(|w| w.0.from_ms + w.0.for_ms.unwrap_or(0));
        let restarts = self.restarts.iter().map(|r| r.at_ms);
        windows.chain(restarts).max().unwrap_or(0)
    }

    /// Event `n` of the schedule: the candidate's `k`-th, `occurred_at` minute `k`.
    fn event(&self, n: usize) -> Value {
        let who = self.events.to[n];
        let k = self.events.to[..n].iter().filter(|c| **c == who).count();
        event(
            &candidate_id(who),
            &format!("fs{who}n{k:02}"),
            "passed",
            &format!("2026-05-18T10:{k:02}:00Z"),
        )
    }
}

fn candidate_id(i: usize) -> String {
    format!("CAND_fs_{i:02}")
}

fn fault_kind() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        Just(FaultKind::Outage),
        Just(FaultKind::Reset),
        Just(FaultKind::Timeout),
        (5u32..=50).prop_map(|pct| FaultKind::ErrorRate {
            rate: f64::from(pct) / 100.0
        }),
        (2u32..=10).prop_map(|n| FaultKind::EveryNth { n }),
    ]
}

fn window() -> impl Strategy<Value = Window> {
    (fault_kind(), 0u64..=1500, 50u64..=1000).prop_map(|(fault, from_ms, for_ms)| {
        Window(FaultWindow {
            fault,
            from_ms,
            for_ms: Some(for_ms),
        })
    })
}

fn restart() -> impl Strategy<Value = Restart> {
    (0u64..=2500, any::<bool>()).prop_map(|(at_ms, same)| Restart {
        at_ms,
        rebind: if same {
            Rebind::SameAddress
        } else {
            Rebind::NewAddress
        },
    })
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        prop::collection::vec(window(), 0..=3),
        prop::collection::vec(restart(), 0..=2),
        // A count and the picks apart: the count shrinks by bisection, where a
        // vector shrinks one element at a time.
        5usize..=MAX_EVENTS,
        prop::collection::vec(0..CANDIDATES, MAX_EVENTS),
        0u64..=80,
        0u64..1000,
    )
        .prop_map(|(faults, restarts, count, mut to, gap_ms, seed)| {
            to.truncate(count);
            Schedule {
                faults,
                restarts,
                events: Events { to, gap_ms },
                seed,
            }
        })
}

impl Captured {
    /// The last `lines` lines that say more than "queued" or "applied", or name one
    /// of the `suspects`' event ids.
    fn tail(&self, lines: usize, suspects: &[String]) -> String {
        let bytes = self.0.lock().expect("not poisoned").clone();
        let text = String::from_utf8_lossy(&bytes);
        let telling: Vec<&str> = text
            .lines()
            .filter(|line| {
                let parsed: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                let routine = matches!(parsed["outcome"].as_str(), Some("queued" | "applied"));
                let suspect = parsed["event_id"]
                    .as_str()
                    .is_some_and(|id| suspects.iter().any(|s| s == id));
                !routine || suspect
            })
            .collect();
        telling[telling.len().saturating_sub(lines)..].join("\n")
    }
}

/// What happens at a point of the schedule.
enum Step {
    /// Deliver the schedule's `n`-th event.
    Send(usize),
    Restart(Rebind),
}

/// The relay and what a restart needs to start it again.
struct Harness {
    mocks: Mocks,
    mock_config: MockConfig,
    manifest: Arc<Manifest>,
    state: tempfile::TempDir,
    log: Captured,
    /// Restarts that asked for the same address and got a new one.
    rebind_fallbacks: usize,
}

impl Harness {
    fn config(&self, listen: SocketAddr) -> RelayConfig {
        RelayConfig {
            listen,
            time_scale: SCALE,
            ..relay_config(
                &self.manifest,
                &self.mocks,
                &self.mock_config,
                self.state.path().join("state"),
            )
        }
    }

    async fn start(&self, listen: SocketAddr) -> Result<Relay, stagegate::relay::RelayError> {
        Relay::start(
            self.config(listen),
            RelayLog::new(Box::new(self.log.clone()), Vec::new()),
        )
        .await
    }

    /// Stops `relay` abruptly and starts another on the same state.
    async fn restart(&mut self, relay: Relay, rebind: Rebind) -> Relay {
        let before: SocketAddr = relay
            .url()
            .trim_start_matches("http://")
            .parse()
            .expect("the relay's URL is http://IP:PORT");
        relay.shutdown().await;
        let fresh = SocketAddr::from(([127, 0, 0, 1], 0));
        if rebind == Rebind::SameAddress {
            match self.start(before).await {
                Ok(relay) => return relay,
                // Someone took the port in between: a new one tests the same thing.
                Err(_) => self.rebind_fallbacks += 1,
            }
        }
        self.start(fresh).await.expect("the relay restarts")
    }
}

/// Runs one schedule; `Err` tells the story of what went wrong.
async fn run_case(schedule: &Schedule) -> Result<(), String> {
    let manifest = Arc::new(
        Manifest::load(&crate::util::repo_root().join("manifests/release-gate.yaml"))
            .expect("seed manifest")
            .value,
    );
    let candidates: Vec<_> = (0..CANDIDATES)
        .map(|i| candidate(&candidate_id(i), "Zoë Ğürsoy", &["canary-il"], "US"))
        .collect();
    let mock_config = MockConfig::loopback(schedule.seed);
    let observed = ObservationLog::to_writer(Box::new(std::io::sink()), "fault-schedules");
    let mocks = Mocks::start(Arc::clone(&manifest), &candidates, &mock_config, &observed)
        .await
        .expect("mocks start");
    let mut harness = Harness {
        mocks,
        mock_config,
        manifest,
        state: tempfile::tempdir().expect("temp dir"),
        log: Captured::default(),
        rebind_fallbacks: 0,
    };
    let secret: WebhookSecret = SECRET.parse().expect("valid secret");
    let sender = Sender::new(secret, RetryPolicy::default(), schedule.seed, observed);
    let mut relay = harness
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the relay starts");

    let events: Vec<Value> = (0..schedule.events.to.len())
        .map(|n| schedule.event(n))
        .collect();
    let mut steps: Vec<(u64, Step)> = (0..events.len())
        .map(|n| (n as u64 * schedule.events.gap_ms, Step::Send(n)))
        .chain(
            schedule
                .restarts
                .iter()
                .map(|r| (r.at_ms, Step::Restart(r.rebind))),
        )
        .collect();
    // Stable: at the same time, an event goes before a restart.
    steps.sort_by_key(|(at, _)| *at);

    let windows: Vec<FaultWindow> = schedule.faults.iter().map(|w| w.0.clone()).collect();
    harness
        .mocks
        .ats
        .faults
        .set(windows)
        .expect("generated windows are valid");
    let start = tokio::time::Instant::now();
    let mut acked = vec![false; events.len()];
    for (at, step) in steps {
        // Pacing the schedule, not waiting for anything: a late step just goes late.
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        match step {
            Step::Send(n) => {
                let body = &events[n];
                let url: url::Url = format!("{}/webhooks/vendor", relay.url())
                    .parse()
                    .expect("url");
                let delivery = Delivery::json(
                    format!("msg_{}", body["event_id"].as_str().unwrap_or("x")),
                    CONTRACT,
                    body,
                );
                acked[n] = sender
                    .deliver(&url, &delivery, &Perturbation::None)
                    .await
                    .acked;
            }
            Step::Restart(rebind) => relay = harness.restart(relay, rebind).await,
        }
    }
    tokio::time::sleep_until(start + Duration::from_millis(schedule.horizon_ms())).await;
    harness.mocks.ats.faults.clear();

    let ats = &harness.mocks.ats;
    let id = |body: &Value| body["event_id"].as_str().unwrap_or_default().to_owned();
    // Every delivery has been answered, so the queue only shrinks from here; once it
    // is empty the relay has nothing left to write.
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    let mut drained = relay.queued() == 0;
    while !drained && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        drained = relay.queued() == 0;
    }

    let mut problems = Vec::new();
    let mut suspects = Vec::new();
    if !drained {
        problems.push(format!(
            "not drained {} s after the schedule ended: {} still queued",
            DRAIN_DEADLINE.as_secs(),
            relay.queued()
        ));
    }
    for (n, (body, acked)) in events.iter().zip(&acked).enumerate() {
        let times = ats.times_applied(&id(body));
        match (acked, times) {
            (true, 1) | (false, 0 | 1) => {}
            (true, 0) => {
                problems.push(format!("event {n} ({}) lost", id(body)));
                suspects.push(id(body));
            }
            (_, times) => {
                problems.push(format!(
                    "event {n} ({}) applied {times} times (acknowledged: {acked})",
                    id(body)
                ));
                suspects.push(id(body));
            }
        }
    }
    for who in 0..CANDIDATES {
        // What the ATS must have seen: the candidate's events that were acknowledged
        // or landed anyway (an unacknowledged one may still have been committed).
        let expected: Vec<String> = events
            .iter()
            .zip(&acked)
            .enumerate()
            .filter(|(n, (e, acked))| {
                schedule.events.to[*n] == who && (**acked || ats.times_applied(&id(e)) > 0)
            })
            .map(|(_, (e, _))| id(e))
            .collect();
        let state = ats.candidate(&candidate_id(who)).expect("seeded candidate");
        let history: Vec<String> = state
            .activity
            .iter()
            .filter_map(|a| a.event.event_id.as_deref().map(String::from))
            .collect();
        if history != expected {
            problems.push(format!(
                "{}: history {history:?}, expected each event once, in order: {expected:?}",
                candidate_id(who)
            ));
        }
        let last = state
            .applied
            .get(CONTRACT)
            .and_then(|a| a.event_id.as_deref().map(String::from));
        if last != expected.last().cloned() {
            problems.push(format!(
                "{}: final state {last:?}, expected its latest event {:?}",
                candidate_id(who),
                expected.last()
            ));
        }
    }

    let story = format!(
        "{}\nunacknowledged deliveries: {}; same-address restarts that fell back to a new port: {}\nrelay log, last {LOG_TAIL} lines that are not routine or name a lost or duplicated event:\n{}",
        problems.join("\n"),
        acked.iter().filter(|a| !**a).count(),
        harness.rebind_fallbacks,
        harness.log.tail(LOG_TAIL, &suspects)
    );
    relay.shutdown().await;
    harness.mocks.shutdown().await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(story)
    }
}

/// 8 cases unless `PROPTEST_CASES` asks for more; shrinking bounded in count and
/// time, since every case runs real servers for a few seconds. No regression file:
/// a case's outcome depends on timing, so a saved seed would not replay it; the
/// printed minimal schedule is the reproduction.
fn config() -> ProptestConfig {
    let base = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            base.cases
        } else {
            8
        },
        max_shrink_iters: 64,
        max_shrink_time: 240_000,
        failure_persistence: None,
        ..base
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_event_is_lost_or_duplicated_under_any_fault_schedule(schedule in schedule()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime per case");
        let outcome = runtime.block_on(run_case(&schedule));
        runtime.shutdown_timeout(Duration::from_secs(5));
        outcome.map_err(TestCaseError::fail)?;
    }
}
