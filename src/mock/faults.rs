//! Programmable faults of the mock ATS: outage windows, error rates, rate limiting,
//! latency, commit-then-drop, hangs and resets.
//!
//! Faults are windows on the mock's own clock, so a scenario can say "503 for every
//! request from 2 s to 7 s" before the traffic starts. Rates are drawn from a seeded
//! RNG in request order, so a replay with the same seed and the same order injects
//! the same faults.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::ConnectionKill;
use crate::observe::{Actor, Entry, ObservationLog};

/// One kind of injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// Every request is answered 503.
    Outage,
    /// A share of requests (0.0–1.0) is answered 503.
    ErrorRate {
        /// The share of requests that fail.
        rate: f64,
    },
    /// Exactly one request in `n` is answered 503 (the `n`-th, `2n`-th, …): a
    /// failure share that does not depend on luck, for brownouts near a threshold.
    EveryNth {
        /// The period; at least 2.
        n: u32,
    },
    /// Every request is answered 429 with `Retry-After`.
    RateLimit {
        /// Seconds the client is asked to wait.
        retry_after_secs: u64,
    },
    /// Every request is delayed before it is handled.
    Latency {
        /// The delay in milliseconds.
        millis: u64,
    },
    /// A share of successful writes is applied, then the connection is closed unanswered.
    CommitThenDrop {
        /// The share of successful requests dropped after committing.
        rate: f64,
    },
    /// Requests are never answered (until the hang limit, then 504).
    Timeout,
    /// Connections are closed at once, nothing applied.
    Reset,
}

impl FaultKind {
    /// The fault's name in logs.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Outage => "outage",
            FaultKind::ErrorRate { .. } => "error_rate",
            FaultKind::EveryNth { .. } => "every_nth",
            FaultKind::RateLimit { .. } => "rate_limit",
            FaultKind::Latency { .. } => "latency",
            FaultKind::CommitThenDrop { .. } => "commit_then_drop",
            FaultKind::Timeout => "timeout",
            FaultKind::Reset => "reset",
        }
    }
}

/// A fault active over a window of the schedule's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultWindow {
    /// What is injected.
    pub fault: FaultKind,
    /// Milliseconds after the schedule is set when the window opens.
    #[serde(default)]
    pub from_ms: u64,
    /// How long the window stays open, in milliseconds; open-ended when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
}

impl FaultWindow {
    /// A window open from now on.
    pub fn always(fault: FaultKind) -> Self {
        FaultWindow {
            fault,
            from_ms: 0,
            for_ms: None,
        }
    }

    /// How much of the window is left at `elapsed` (open-ended: forever).
    fn remaining(&self, elapsed: Duration) -> Duration {
        match self.for_ms {
            Some(len) => (Duration::from_millis(self.from_ms + len)).saturating_sub(elapsed),
            None => Duration::MAX,
        }
    }

    fn covers(&self, elapsed: Duration) -> bool {
        let from = Duration::from_millis(self.from_ms);
        elapsed >= from
            && self
                .for_ms
                .is_none_or(|len| elapsed < from + Duration::from_millis(len))
    }
}

/// Why a fault schedule was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("fault window {index} ({kind}): {problem}")]
pub struct FaultError {
    /// The window's position in the schedule.
    pub index: usize,
    /// The fault's name.
    pub kind: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// What the mock does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Handle it normally.
    Pass,
    /// Answer 503.
    Unavailable(&'static str),
    /// Answer 429 with `Retry-After`.
    RateLimited(u64),
    /// Handle it, then drop the connection if it succeeded.
    CommitThenDrop,
    /// Answer nothing for this long (the client should give up first), then 504;
    /// earlier if the schedule of this generation is replaced or cleared.
    Hang(Duration, u64),
    /// Close the connection at once.
    Reset,
}

struct Schedule {
    set_at: Instant,
    windows: Vec<FaultWindow>,
    rng: ChaCha8Rng,
    /// Requests decided since the schedule was set (for `every_nth`).
    seen: u64,
    /// Bumped whenever the schedule is set or cleared (see [`FaultState::changes`]).
    generation: u64,
}

/// The fault schedule of one mock, shared by its handlers.
#[derive(Clone)]
pub struct FaultState {
    inner: Arc<Mutex<Schedule>>,
    /// The schedule's generation, so a held request ends the moment its outage is
    /// lifted, not when its window would have: whoever lifts it marks the end first.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Whether the schedule has a window: without one every request passes, and
    /// the request path need not take the lock or read the clock. (A request
    /// decided while the schedule is being set may see either schedule, as before.)
    armed: Arc<AtomicBool>,
}

impl std::fmt::Debug for FaultState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultState")
            .field("windows", &self.windows())
            .finish()
    }
}

/// How long a `timeout` fault holds a request before giving up with 504, so that a
/// forgotten fault never pins a client forever.
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

impl FaultState {
    /// No faults; rates drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        FaultState {
            inner: Arc::new(Mutex::new(Schedule {
                set_at: Instant::now(),
                windows: Vec::new(),
                rng: ChaCha8Rng::seed_from_u64(seed),
                seen: 0,
                generation: 0,
            })),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            armed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Replaces the schedule; its clock starts now.
    pub fn set(&self, windows: Vec<FaultWindow>) -> Result<(), FaultError> {
        for (index, window) in windows.iter().enumerate() {
            let bad_rate = |rate: f64| !(0.0..=1.0).contains(&rate);
            let problem = match &window.fault {
                FaultKind::ErrorRate { rate } | FaultKind::CommitThenDrop { rate }
                    if bad_rate(*rate) =>
                {
                    Some(format!("rate {rate} is not between 0 and 1"))
                }
                FaultKind::EveryNth { n } if *n < 2 => Some(format!(
                    "every_nth needs n of at least 2, got {n}; use `outage`"
                )),
                FaultKind::Latency { millis } if Duration::from_millis(*millis) > HANG_LIMIT => {
                    Some(format!(
                        "latency {millis} ms is above the {} s hang limit; use `timeout`",
                        HANG_LIMIT.as_secs()
                    ))
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(FaultError {
                    index,
                    kind: window.fault.name(),
                    problem,
                });
            }
        }
        let mut schedule = self.lock();
        schedule.set_at = Instant::now();
        schedule.seen = 0;
        self.armed.store(!windows.is_empty(), Ordering::Release);
        schedule.windows = windows;
        self.changed(&mut schedule);
        Ok(())
    }

    /// Removes every fault.
    pub fn clear(&self) {
        let mut schedule = self.lock();
        schedule.windows.clear();
        self.armed.store(false, Ordering::Release);
        self.changed(&mut schedule);
    }

    /// A new generation: requests held by the old schedule are let go.
    fn changed(&self, schedule: &mut Schedule) {
        schedule.generation += 1;
        self.changes.send_replace(schedule.generation);
    }

    /// Waits until the schedule of `generation` is set anew or cleared.
    async fn replaced(&self, generation: u64) {
        let mut changes = self.changes.subscribe();
        // The sender lives as long as `self`, so this only returns on a change.
        let _ = changes.wait_for(|now| *now != generation).await;
    }

    /// The schedule as set.
    pub fn windows(&self) -> Vec<FaultWindow> {
        self.lock().windows.clone()
    }

    /// Decides one request's fate and its added latency.
    pub fn decide(&self) -> (Decision, Duration) {
        // No window: nothing to decide, and `seen` only counts within a schedule
        // (setting one restarts it), so skipping it here changes no later decision.
        if !self.armed.load(Ordering::Acquire) {
            return (Decision::Pass, Duration::ZERO);
        }
        let mut schedule = self.lock();
        let elapsed = schedule.set_at.elapsed();
        schedule.seen += 1;
        let seen = schedule.seen;
        let mut latency = Duration::ZERO;
        let mut decision = Decision::Pass;
        let active: Vec<(FaultKind, Duration)> = schedule
            .windows
            .iter()
            .filter(|w| w.covers(elapsed))
            .map(|w| (w.fault.clone(), w.remaining(elapsed)))
            .collect();
        for (fault, remaining) in active {
            let next = match fault {
                FaultKind::Outage => Decision::Unavailable("outage"),
                FaultKind::ErrorRate { rate } if schedule.rng.random_bool(rate) => {
                    Decision::Unavailable("error_rate")
                }
                FaultKind::EveryNth { n } if seen.is_multiple_of(u64::from(n.max(2))) => {
                    Decision::Unavailable("every_nth")
                }
                FaultKind::RateLimit { retry_after_secs } => {
                    Decision::RateLimited(retry_after_secs)
                }
                FaultKind::Latency { millis } => {
                    latency += Duration::from_millis(millis);
                    continue;
                }
                FaultKind::CommitThenDrop { rate } if schedule.rng.random_bool(rate) => {
                    Decision::CommitThenDrop
                }
                // A hang ends with its window: the outage is over for held requests too.
                FaultKind::Timeout => {
                    Decision::Hang(remaining.min(HANG_LIMIT), schedule.generation)
                }
                FaultKind::Reset => Decision::Reset,
                _ => continue,
            };
            // The first fault that acts wins; later windows only add latency.
            if decision == Decision::Pass {
                decision = next;
            }
        }
        (decision, latency)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The middleware that applies a mock's faults before its handlers run.
pub async fn apply(
    State((faults, log, actor)): State<(FaultState, ObservationLog, Actor)>,
    request: Request,
    next: Next,
) -> Response {
    faulted(&faults, &log, actor, request, |request| next.run(request)).await
}

/// Applies `faults` to one request, then hands it to `inner` unless a fault answers
/// instead ([`apply`] as a function, for a mock that runs its layers as one).
pub(crate) async fn faulted<F, Fut>(
    faults: &FaultState,
    log: &ObservationLog,
    actor: Actor,
    request: Request,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let (decision, latency) = faults.decide();
    if decision == Decision::Pass && latency.is_zero() {
        // The common case under load: nothing to note.
        return inner(request).await;
    }
    let next = inner;
    let kill = request
        .extensions()
        .get::<ConnectionKill>()
        .cloned()
        .or_else(ConnectionKill::current);
    let path = request.uri().path().to_owned();
    let note = |fault: &str, detail: serde_json::Value| {
        let kind = format!("{}.fault", actor_prefix(actor));
        log.append(
            actor,
            &kind,
            Entry::detail(json!({"fault": fault, "path": path, "detail": detail})),
        );
    };
    if !latency.is_zero() {
        note("latency", json!({"millis": latency.as_millis() as u64}));
        tokio::time::sleep(latency).await;
    }
    match decision {
        Decision::Pass => next(request).await,
        Decision::Unavailable(why) => {
            note(why, json!({"status": 503}));
            let body = json!({"error": "service unavailable", "injected": why});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
        Decision::RateLimited(secs) => {
            note(
                "rate_limit",
                json!({"status": 429, "retry_after_secs": secs}),
            );
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"error": "rate limited"})),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Decision::CommitThenDrop => {
            let response = next(request).await;
            if !response.status().is_success() {
                return response;
            }
            note(
                "commit_then_drop",
                json!({"applied_status": response.status().as_u16()}),
            );
            drop_connection(kill).await
        }
        Decision::Hang(hold, generation) => {
            note("timeout", json!({"hold_ms": hold.as_millis() as u64}));
            tokio::select! {
                () = tokio::time::sleep(hold) => {}
                () = faults.replaced(generation) => {}
            }
            (StatusCode::GATEWAY_TIMEOUT, Body::empty()).into_response()
        }
        Decision::Reset => {
            note("reset", json!({}));
            drop_connection(kill).await
        }
    }
}

/// Closes the connection and never answers (outside a real connection — in router
/// tests — the request simply never completes).
async fn drop_connection(kill: Option<ConnectionKill>) -> Response {
    if let Some(kill) = kill {
        kill.fire();
    }
    std::future::pending().await
}

/// The log-kind prefix of an actor (`ats`, `vendor`, `notify`).
pub(crate) fn actor_prefix(actor: Actor) -> &'static str {
    match actor {
        Actor::Ats => "ats",
        Actor::Vendor => "vendor",
        Actor::Notify => "notify",
        Actor::Sender => "sender",
        Actor::Harness => "harness",
        Actor::Integration => "integration",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_open_and_close_on_the_schedule_clock() {
        let window = FaultWindow {
            fault: FaultKind::Outage,
            from_ms: 100,
            for_ms: Some(50),
        };
        assert!(!window.covers(Duration::from_millis(99)), "not yet open");
        assert!(window.covers(Duration::from_millis(100)), "opens on time");
        assert!(window.covers(Duration::from_millis(149)), "still open");
        assert!(
            !window.covers(Duration::from_millis(150)),
            "closed after 50 ms"
        );
    }

    #[test]
    fn error_rates_are_reproducible_from_the_seed() {
        let draws = |seed| {
            let faults = FaultState::new(seed);
            faults
                .set(vec![FaultWindow::always(FaultKind::ErrorRate {
                    rate: 0.3,
                })])
                .expect("valid rate");
            (0..200)
                .map(|_| faults.decide().0 != Decision::Pass)
                .collect::<Vec<bool>>()
        };
        assert_eq!(draws(7), draws(7), "same seed, same faults");
        assert_ne!(draws(7), draws(8), "another seed, other faults");
        let failures = draws(7).iter().filter(|f| **f).count();
        assert!(
            (30..=90).contains(&failures),
            "about 30% of 200 requests fail, got {failures}"
        );
    }

    #[test]
    fn without_a_window_every_request_passes_and_counts_for_nothing() {
        let faults = FaultState::new(1);
        let every_third = || vec![FaultWindow::always(FaultKind::EveryNth { n: 3 })];
        let fates = |n: usize| -> Vec<bool> {
            (0..n)
                .map(|_| faults.decide() != (Decision::Pass, Duration::ZERO))
                .collect()
        };
        assert_eq!(fates(5), [false; 5], "nothing set");
        faults.set(every_third()).expect("valid period");
        assert_eq!(fates(3), [false, false, true], "counted from the set");
        faults.clear();
        assert_eq!(fates(4), [false; 4], "cleared");
        faults.set(Vec::new()).expect("an empty schedule");
        assert_eq!(fates(4), [false; 4], "set empty");
        faults.set(every_third()).expect("valid period");
        assert_eq!(
            fates(3),
            [false, false, true],
            "the requests while disarmed did not count"
        );
    }

    #[test]
    fn every_nth_fails_exactly_one_request_in_n_from_each_set() {
        let faults = FaultState::new(1);
        faults
            .set(vec![FaultWindow::always(FaultKind::EveryNth { n: 4 })])
            .expect("valid period");
        let failed: Vec<usize> = (1..=12)
            .filter(|_| faults.decide().0 != Decision::Pass)
            .collect();
        assert_eq!(failed.len(), 3, "3 of 12");
        faults
            .set(vec![FaultWindow::always(FaultKind::EveryNth { n: 4 })])
            .expect("valid period");
        let first: Vec<bool> = (0..4)
            .map(|_| faults.decide().0 != Decision::Pass)
            .collect();
        assert_eq!(
            first,
            [false, false, false, true],
            "the count restarts with the schedule"
        );
        let err = faults
            .set(vec![FaultWindow::always(FaultKind::EveryNth { n: 1 })])
            .expect_err("n below 2");
        assert!(err.to_string().contains("use `outage`"), "{err}");
    }

    #[tokio::test]
    async fn a_held_request_is_let_go_when_its_outage_is_lifted() {
        let faults = FaultState::new(1);
        faults
            .set(vec![FaultWindow::always(FaultKind::Timeout)])
            .expect("valid window");
        let log = ObservationLog::to_writer(Box::new(std::io::sink()), "test");
        let request = Request::new(Body::empty());
        let held = tokio::spawn({
            let faults = faults.clone();
            async move {
                faulted(&faults, &log, Actor::Ats, request, |_| async {
                    StatusCode::OK.into_response()
                })
                .await
                .status()
            }
        });
        // The open-ended hang would last the 60 s limit; lifting the fault ends it.
        tokio::task::yield_now().await;
        faults.clear();
        let status = tokio::time::timeout(Duration::from_secs(30), held)
            .await
            .expect("let go long before the hang limit")
            .expect("the request task ends");
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(faults.decide().0, Decision::Pass, "the ATS answers again");
    }

    #[test]
    fn bad_schedules_are_refused_with_the_window_named() {
        let faults = FaultState::new(1);
        let err = faults
            .set(vec![
                FaultWindow::always(FaultKind::Outage),
                FaultWindow::always(FaultKind::ErrorRate { rate: 1.5 }),
            ])
            .expect_err("rate above 1");
        assert_eq!(
            err.to_string(),
            "fault window 1 (error_rate): rate 1.5 is not between 0 and 1"
        );
    }

    #[test]
    fn windows_parse_from_json() {
        let window: FaultWindow =
            serde_json::from_str(r#"{"fault": {"kind": "rate_limit", "retry_after_secs": 2}, "from_ms": 10, "for_ms": 500}"#)
                .expect("valid window");
        assert_eq!(
            window.fault,
            FaultKind::RateLimit {
                retry_after_secs: 2
            }
        );
        assert!(
            serde_json::from_str::<FaultWindow>(r#"{"fault": {"kind": "outage"}, "form_ms": 1}"#)
                .is_err(),
            "typos are refused"
        );
    }
}
