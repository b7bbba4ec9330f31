//! The kill switch's circuit breaker: pure decisions over an injected clock.
//!
//! The manifest's `kill_switch.trigger_conditions` name two real-world rules — more
//! than `ats_http_5xx_rate_pct_over_5m` percent of ATS calls failing over 5 minutes,
//! more than `mapping_error_count_over_10m` mapping errors (422) over 10 minutes — and
//! a run compresses time by `STAGEGATE_TIME_SCALE`, so every window and wait here is
//! a real-world duration divided by the scale ([`BreakerPolicy::from_kill_switch`]).
//! The breaker never reads a clock: every call takes `now`, so tests and proptests
//! drive it through any history without sleeping.
//!
//! What counts. Every ATS call is one sample — reads and writes alike, because the
//! manifest's rate is of calls and a brownout fails calls, not whole attempts. A
//! *failure* is a 5xx, a timeout or a connection error; 409, 422, 429 and the other
//! answers are the ATS working, so they count as attempts but not as failures. A 422
//! also counts towards the mapping-error window.
//!
//! When it trips (only while closed), on the sample that makes one of these true:
//!
//! - **rate**: at least [`BreakerPolicy::min_attempts`] calls in the failure window
//!   and `failures × 100 > threshold × calls`. The minimum is `ceil(100 / threshold)`
//!   clamped to [[`MIN_ATTEMPTS_FLOOR`], [`MIN_ATTEMPTS_CEILING`]] (50 for the seed's
//!   2 %), so a single failure can never exceed the threshold on its own;
//! - **run**: the last [`BreakerPolicy::failure_run`] calls in the failure window all
//!   failed. An outage is unambiguous long before the minimum sample fills up: the
//!   run length is the shortest one whose odds at a failure rate equal to the
//!   threshold are below [`RUN_FALSE_ALARM`] (4 calls at 2 %), and at least 3;
//! - **mapping errors**: more than `mapping_error_count_over_10m` 422s in the mapping
//!   window.
//!
//! Once open, nothing is written except probes: after [`OPEN_COOL_DOWN`] one probe,
//! then at most one probe in flight and one per [`PROBE_INTERVAL`] (both scaled).
//! [`PROBES_TO_CLOSE`] good probes in a row close it (a failed one starts the count
//! again), and closing clears both windows so history from before the trip cannot
//! trip it again at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::manifest::model::KillSwitch;

pub use crate::protocol::{MAPPING_WINDOW, RATE_WINDOW as FAILURE_WINDOW, scaled};
/// Real-world wait between tripping and the first probe.
pub const OPEN_COOL_DOWN: Duration = Duration::from_secs(30);
/// Real-world wait between the end of one probe and the next (a modest rate: two a minute).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// Good probes in a row that close the breaker.
pub const PROBES_TO_CLOSE: u32 = 2;
/// The smallest minimum sample for the rate rule.
pub const MIN_ATTEMPTS_FLOOR: u32 = 20;
/// The largest minimum sample for the rate rule (thresholds below 0.1 %).
pub const MIN_ATTEMPTS_CEILING: u32 = 1000;
/// The accepted odds that a run of failures is chance at the threshold rate.
pub const RUN_FALSE_ALARM: f64 = 1e-6;
/// Samples kept per window at most; beyond that the oldest go first, so a flood of
/// calls costs bounded memory (the window then spans the latest samples only).
pub const MAX_SAMPLES: usize = 100_000;

/// How one ATS call ended, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// The ATS answered (2xx, 404, 409, 429, …): it is up.
    Answered,
    /// A 5xx, a timeout or a connection error.
    Failed,
    /// A 422: the ATS is up but refused the body as breaking its contract.
    MappingError,
}

/// The breaker's thresholds and waits, already scaled to the run's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// How far back the failure rate looks.
    pub failure_window: Duration,
    /// The failure share, in percent, that must be exceeded to trip.
    pub failure_rate_pct: f64,
    /// Calls the failure window must hold before the rate rule applies.
    pub min_attempts: u32,
    /// Consecutive failures that trip on their own (`None`: never).
    pub failure_run: Option<u32>,
    /// How far back mapping errors are counted.
    pub mapping_window: Duration,
    /// Mapping errors allowed in the window; one more trips.
    pub mapping_errors_max: u32,
    /// Wait between tripping and the first probe.
    pub cool_down: Duration,
    /// Wait between one probe's end and the next probe.
    pub probe_interval: Duration,
    /// Good probes in a row that close the breaker.
    pub probes_to_close: u32,
}

impl BreakerPolicy {
    /// The policy for the manifest's kill switch on a clock `time_scale` times faster.
    pub fn from_kill_switch(switch: &KillSwitch, time_scale: f64) -> Self {
        let conditions = &switch.trigger_conditions;
        let pct = conditions.ats_http_5xx_rate_pct_over_5m;
        BreakerPolicy {
            failure_window: scaled(FAILURE_WINDOW, time_scale),
            failure_rate_pct: pct,
            min_attempts: min_attempts_for(pct),
            failure_run: failure_run_for(pct),
            mapping_window: scaled(MAPPING_WINDOW, time_scale),
            mapping_errors_max: whole(conditions.mapping_error_count_over_10m),
            cool_down: scaled(OPEN_COOL_DOWN, time_scale),
            probe_interval: scaled(PROBE_INTERVAL, time_scale),
            probes_to_close: PROBES_TO_CLOSE,
        }
    }

    /// The deliberately broken policy of the `trip_low` fault: a tenth of each
    /// threshold and no minimum sample, so the first failures trip it.
    pub fn trip_low(self) -> Self {
        BreakerPolicy {
            failure_rate_pct: self.failure_rate_pct / 10.0,
            min_attempts: 1,
            failure_run: Some(1),
            mapping_errors_max: self.mapping_errors_max / 10,
            ..self
        }
    }
}

/// Test-only tuning of the breaker (`STAGEGATE_RELAY_TUNING`), so the gate's own
/// tests can move the reference relay across the protocol's tolerances and show that
/// the checks judge a breaker by them, not by this relay's defaults. Written as
/// comma-separated `key=value`: `min_sample=F` (the rate rule waits for F × S calls,
/// S = ceil(100 / pct); the protocol allows 1 to 2), `run=N` or `run=off` (the
/// consecutive-failure rule), `probe_secs=N` (real-world seconds between probes),
/// `probes_to_close=N`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BreakerTuning {
    /// The rate rule's minimum sample as a multiple of S.
    pub min_sample_factor: Option<f64>,
    /// The consecutive-failure rule: `Some(None)` turns it off.
    pub failure_run: Option<Option<u32>>,
    /// Real-world time between probes.
    pub probe_interval: Option<Duration>,
    /// Good probes in a row that close the breaker.
    pub probes_to_close: Option<u32>,
}

impl std::str::FromStr for BreakerTuning {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut tuning = BreakerTuning::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not key=value"))?;
            let number = |what: &str| -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| format!("`{key}` needs {what}, got `{value}`"))
            };
            match key {
                "min_sample" => tuning.min_sample_factor = Some(number("a positive factor")?),
                "run" if value == "off" => tuning.failure_run = Some(None),
                "run" => tuning.failure_run = Some(Some(number("a whole number or `off`")? as u32)),
                "probe_secs" => {
                    tuning.probe_interval =
                        Some(Duration::from_secs_f64(number("a number of seconds")?));
                }
                "probes_to_close" => {
                    tuning.probes_to_close = Some(number("a whole number")? as u32);
                }
                other => {
                    return Err(format!(
                        "unknown key `{other}`; the keys are min_sample, run, probe_secs, probes_to_close"
                    ));
                }
            }
        }
        Ok(tuning)
    }
}

impl BreakerPolicy {
    /// This policy with `tuning` applied, on a clock `time_scale` times faster.
    pub fn tuned(self, tuning: &BreakerTuning, time_scale: f64) -> Self {
        let sample = if self.failure_rate_pct.is_finite() && self.failure_rate_pct > 0.0 {
            (100.0 / self.failure_rate_pct).ceil()
        } else {
            1.0
        };
        BreakerPolicy {
            min_attempts: tuning.min_sample_factor.map_or(self.min_attempts, |f| {
                (sample * f)
                    .ceil()
                    .clamp(1.0, f64::from(MIN_ATTEMPTS_CEILING)) as u32
            }),
            failure_run: tuning.failure_run.unwrap_or(self.failure_run),
            probe_interval: tuning
                .probe_interval
                .map_or(self.probe_interval, |real| scaled(real, time_scale)),
            cool_down: tuning
                .probe_interval
                .map_or(self.cool_down, |real| scaled(real, time_scale)),
            probes_to_close: tuning
                .probes_to_close
                .unwrap_or(self.probes_to_close)
                .max(1),
            ..self
        }
    }
}

/// The rate rule's minimum sample: enough calls that one failure alone stays at or
/// under the threshold.
fn min_attempts_for(pct: f64) -> u32 {
    if !(pct.is_finite() && pct > 0.0) {
        return 1;
    }
    let needed = (100.0 / pct).ceil();
    if needed >= f64::from(MIN_ATTEMPTS_CEILING) {
        MIN_ATTEMPTS_CEILING
    } else {
        // In range: 1 ≤ needed < the ceiling, so the cast is exact.
        (needed as u32).max(MIN_ATTEMPTS_FLOOR)
    }
}

/// The run rule's length: the shortest run whose odds at the threshold rate are
/// below [`RUN_FALSE_ALARM`], at least 3; none when the threshold is 100 % or more.
fn failure_run_for(pct: f64) -> Option<u32> {
    if !pct.is_finite() || pct >= 100.0 {
        return None;
    }
    if pct <= 0.0 {
        return Some(3);
    }
    let p = pct / 100.0;
    let run = (RUN_FALSE_ALARM.ln() / p.ln()).ceil();
    // ln(1e-6) / ln(p) for p in (0, 1) is positive and finite; cap it anyway.
    Some((run.min(1000.0) as u32).max(3))
}

/// A count threshold as a whole number (negative and NaN as 0).
fn whole(count: f64) -> u32 {
    if count.is_nan() || count <= 0.0 {
        0
    } else if count >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        count.floor() as u32
    }
}

/// Why the breaker tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripReason {
    /// The failure share exceeded the threshold over enough calls.
    FailureRate,
    /// A run of consecutive failures.
    FailureRun,
    /// Too many mapping errors.
    MappingErrors,
}

impl TripReason {
    /// The reason's name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TripReason::FailureRate => "ats_failure_rate",
            TripReason::FailureRun => "ats_failure_run",
            TripReason::MappingErrors => "mapping_errors",
        }
    }
}

/// What the windows held when the breaker tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trip {
    /// Which rule tripped it.
    pub reason: TripReason,
    /// Calls in the failure window.
    pub attempts: u32,
    /// Failed calls in the failure window.
    pub failures: u32,
    /// Consecutive failures ending the window.
    pub run: u32,
    /// Mapping errors in the mapping window.
    pub mapping_errors: u32,
}

impl Trip {
    /// The failure share seen, in percent.
    pub fn rate_pct(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            f64::from(self.failures) * 100.0 / f64::from(self.attempts)
        }
    }

    /// Why, for people: the rate or count seen against the manifest's threshold.
    pub fn describe(&self, manifest_rate_pct: f64, manifest_mapping_max: f64) -> String {
        match self.reason {
            TripReason::FailureRate => format!(
                "{} of {} ATS calls failed ({:.1}%) over the 5-minute window, above the {manifest_rate_pct}% threshold",
                self.failures,
                self.attempts,
                self.rate_pct()
            ),
            TripReason::FailureRun => format!(
                "the last {} ATS calls all failed ({} of {} in the 5-minute window, {:.1}%; threshold {manifest_rate_pct}%)",
                self.run,
                self.failures,
                self.attempts,
                self.rate_pct()
            ),
            TripReason::MappingErrors => format!(
                "{} mapping errors (422) over the 10-minute window, above the limit of {manifest_mapping_max}",
                self.mapping_errors
            ),
        }
    }
}

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: write.
    Write,
    /// Open: this caller makes the probe, and must report it with [`Breaker::probe_finished`].
    Probe,
    /// Open: nothing until this instant (or until the breaker changes).
    Wait(Instant),
}

/// The breaker's phase, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing.
    Closed,
    /// Tripped, cooling down: no probe yet.
    Open,
    /// Tripped, probing.
    HalfOpen,
}

/// A change of phase that the relay announces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// Closed → open.
    Tripped(Trip),
    /// Half-open → closed.
    Reset {
        /// How long it was open.
        open_for: Duration,
        /// Probes made while open, good or not.
        probes: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Closed,
    Open {
        since: Instant,
        next_probe: Instant,
        probing: bool,
        passed: u32,
        probes: u32,
    },
}

/// The breaker: two sliding windows and the closed → open → half-open → closed machine.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: State,
    /// Calls in the failure window: when, and whether it failed.
    calls: VecDeque<(Instant, bool)>,
    /// How many of `calls` failed, kept as calls come and go: at thousands of calls a
    /// second the window holds up to [`MAX_SAMPLES`], too many to count per call.
    failed: usize,
    /// Mapping errors in the mapping window.
    mapping: VecDeque<Instant>,
}

/// Drops samples at or before `now - window`, handing each one dropped on.
fn expire<T>(
    samples: &mut VecDeque<T>,
    now: Instant,
    window: Duration,
    at: impl Fn(&T) -> Instant,
) -> impl Iterator<Item = T> {
    let horizon = now.checked_sub(window);
    std::iter::from_fn(move || {
        let horizon = horizon?;
        samples
            .front()
            .is_some_and(|s| at(s) <= horizon)
            .then(|| samples.pop_front())
            .flatten()
    })
}

impl Breaker {
    /// A closed breaker with empty windows.
    pub fn new(policy: BreakerPolicy) -> Self {
        Breaker {
            policy,
            state: State::Closed,
            calls: VecDeque::new(),
            failed: 0,
            mapping: VecDeque::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Closed => Phase::Closed,
            State::Open {
                probing, probes, ..
            } if probing || probes > 0 => Phase::HalfOpen,
            State::Open { .. } => Phase::Open,
        }
    }

    /// Records one ATS call; trips (only from closed) when a rule says so.
    pub fn record(&mut self, call: Call, now: Instant) -> Option<Transition> {
        self.calls.push_back((now, call == Call::Failed));
        self.failed += usize::from(call == Call::Failed);
        if self.calls.len() > MAX_SAMPLES
            && let Some((_, failed)) = self.calls.pop_front()
        {
            self.failed -= usize::from(failed);
        }
        if call == Call::MappingError {
            self.mapping.push_back(now);
            if self.mapping.len() > MAX_SAMPLES {
                self.mapping.pop_front();
            }
        }
        if self.state != State::Closed {
            // Calls in flight when it tripped, and probes: probes decide by their
            // own result (`probe_finished`).
            return None;
        }
        let trip = self.evaluate(now)?;
        self.state = State::Open {
            since: now,
            next_probe: now + self.policy.cool_down,
            probing: false,
            passed: 0,
            probes: 0,
        };
        Some(Transition::Tripped(trip))
    }

    /// The rules against the windows as of `now`: the trip, if one holds.
    fn evaluate(&mut self, now: Instant) -> Option<Trip> {
        for (_, failed) in expire(&mut self.calls, now, self.policy.failure_window, |s| s.0) {
            self.failed -= usize::from(failed);
        }
        expire(&mut self.mapping, now, self.policy.mapping_window, |t| *t).for_each(drop);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let attempts = count(self.calls.len());
        let failures = count(self.failed);
        let limit = self.policy.failure_run.map_or(0, |r| r as usize);
        let run = count(
            self.calls
                .iter()
                .rev()
                .take(limit)
                .take_while(|s| s.1)
                .count(),
        );
        let mapping_errors = count(self.mapping.len());
        let reason = if mapping_errors > self.policy.mapping_errors_max {
            TripReason::MappingErrors
        } else if self.policy.failure_run.is_some_and(|r| run >= r) {
            TripReason::FailureRun
        } else if attempts >= self.policy.min_attempts
            && f64::from(failures) * 100.0 > self.policy.failure_rate_pct * f64::from(attempts)
        {
            TripReason::FailureRate
        } else {
            return None;
        };
        Some(Trip {
            reason,
            attempts,
            failures,
            run,
            mapping_errors,
        })
    }

    /// Whether a call may go to the ATS now; while open, grants the probes.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let interval = self.policy.probe_interval;
        match &mut self.state {
            State::Closed => Admit::Write,
            State::Open { probing: true, .. } => Admit::Wait(now + interval),
            State::Open { next_probe, .. } if *next_probe > now => Admit::Wait(*next_probe),
            State::Open {
                probing, probes, ..
            } => {
                *probing = true;
                *probes += 1;
                Admit::Probe
            }
        }
    }

    /// Reports the probe granted by [`Breaker::admit`]: `ok` when the ATS took it.
    pub fn probe_finished(&mut self, ok: bool, now: Instant) -> Option<Transition> {
        let State::Open {
            since,
            next_probe,
            probing,
            passed,
            probes,
        } = &mut self.state
        else {
            return None;
        };
        *probing = false;
        *next_probe = now + self.policy.probe_interval;
        if !ok {
            *passed = 0;
            return None;
        }
        *passed += 1;
        if *passed < self.policy.probes_to_close {
            return None;
        }
        let transition = Transition::Reset {
            open_for: now.saturating_duration_since(*since),
            probes: *probes,
        };
        self.state = State::Closed;
        self.calls.clear();
        self.failed = 0;
        self.mapping.clear();
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_parses_and_moves_the_policy_within_reason() {
        let tuning: BreakerTuning = "min_sample=2, run=off, probe_secs=20, probes_to_close=1"
            .parse()
            .expect("parses");
        let policy = BreakerPolicy::from_kill_switch(&seed_switch(), 60.0).tuned(&tuning, 60.0);
        assert_eq!(policy.min_attempts, 100, "2 × ceil(100 / 2 %)");
        assert_eq!(policy.failure_run, None);
        assert_eq!(policy.probe_interval, Duration::from_secs_f64(20.0 / 60.0));
        assert_eq!(policy.probes_to_close, 1);
        let untouched = BreakerPolicy::from_kill_switch(&seed_switch(), 60.0);
        assert_eq!(
            untouched.clone().tuned(&BreakerTuning::default(), 60.0),
            untouched
        );
        // (text, what the error says, why)
        let rows = [
            ("min_sample", "is not key=value", "no value"),
            ("min_sample=-1", "needs a positive factor", "negative"),
            ("run=maybe", "a whole number or `off`", "not a number"),
            ("speed=2", "unknown key `speed`", "unknown key"),
        ];
        for (text, says, why) in rows {
            let err = text.parse::<BreakerTuning>().expect_err(why);
            assert!(err.contains(says), "{why}: {err}");
        }
    }
    use proptest::prelude::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_window: Duration::from_secs(5),
            failure_rate_pct: 2.0,
            min_attempts: 50,
            failure_run: Some(4),
            mapping_window: Duration::from_secs(10),
            mapping_errors_max: 10,
            cool_down: Duration::from_millis(500),
            probe_interval: Duration::from_millis(500),
            probes_to_close: 2,
        }
    }

    fn seed_switch() -> KillSwitch {
        let manifest = crate::mock::test_support::manifest();
        manifest.raw.release_gate.kill_switch.clone()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_seed_manifest_scales_to_the_run_clock() {
        let policy = BreakerPolicy::from_kill_switch(&seed_switch(), 60.0);
        assert_eq!(policy.failure_window, Duration::from_secs(5), "5 min / 60");
        assert_eq!(
            policy.mapping_window,
            Duration::from_secs(10),
            "10 min / 60"
        );
        assert_eq!(policy.cool_down, ms(500));
        assert_eq!(policy.probe_interval, ms(500));
        assert_eq!(
            policy.min_attempts, 50,
            "one failure in 50 is 2%, not above"
        );
        assert_eq!(policy.failure_run, Some(4), "0.02^4 < 1e-6 < 0.02^3");
        assert_eq!(policy.mapping_errors_max, 10);
        let real = BreakerPolicy::from_kill_switch(&seed_switch(), 1.0);
        assert_eq!(
            real.failure_window, FAILURE_WINDOW,
            "real time when unscaled"
        );
        assert_eq!(
            scaled(FAILURE_WINDOW, 1e12),
            ms(1),
            "never below a millisecond"
        );
    }

    #[test]
    fn derived_thresholds_follow_the_percentage() {
        // (threshold %, min attempts, run, why)
        let rows: [(f64, u32, Option<u32>, &str); 5] = [
            (2.0, 50, Some(4), "the seed"),
            (5.0, 20, Some(5), "the floor; 0.05^5 < 1e-6 < 0.05^4"),
            (50.0, 20, Some(20), "a lax threshold needs a long run"),
            (
                0.01,
                MIN_ATTEMPTS_CEILING,
                Some(3),
                "the ceiling; runs at least 3",
            ),
            (100.0, 20, None, "100% can never be exceeded"),
        ];
        for (pct, min, run, why) in rows {
            assert_eq!(min_attempts_for(pct), min, "{why}");
            assert_eq!(failure_run_for(pct), run, "{why}");
        }
        let low = BreakerPolicy::from_kill_switch(&seed_switch(), 1.0).trip_low();
        assert_eq!(
            (low.min_attempts, low.failure_run, low.mapping_errors_max),
            (1, Some(1), 1)
        );
    }

    #[test]
    fn a_single_early_failure_does_not_trip() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(policy());
        assert_eq!(breaker.record(Call::Failed, t0), None, "1 of 1 failed");
        for i in 1..200 {
            assert_eq!(breaker.record(Call::Answered, t0 + ms(i)), None);
        }
        assert_eq!(breaker.phase(), Phase::Closed);
    }

    #[test]
    fn an_outage_trips_on_a_short_run_even_in_an_empty_window() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(policy());
        for i in 0..3 {
            assert_eq!(breaker.record(Call::Failed, t0 + ms(i)), None);
        }
        let Some(Transition::Tripped(trip)) = breaker.record(Call::Failed, t0 + ms(3)) else {
            panic!("the fourth failure in a row trips");
        };
        assert_eq!(trip.reason, TripReason::FailureRun);
        assert_eq!((trip.failures, trip.attempts, trip.run), (4, 4, 4));
        assert!(
            trip.describe(2.0, 10.0)
                .contains("the last 4 ATS calls all failed")
        );
    }

    #[test]
    fn conflicts_and_mapping_errors_are_not_failures() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(policy());
        for i in 0..10 {
            assert_eq!(breaker.record(Call::MappingError, t0 + ms(i)), None);
        }
        let Some(Transition::Tripped(trip)) = breaker.record(Call::MappingError, t0 + ms(10))
        else {
            panic!("the eleventh mapping error exceeds 10");
        };
        assert_eq!(trip.reason, TripReason::MappingErrors);
        assert_eq!(trip.failures, 0, "a 422 is not a 5xx");
        assert!(trip.describe(2.0, 10.0).contains("11 mapping errors"));
    }

    #[test]
    fn a_brownout_trips_on_the_rate_once_the_sample_is_full() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(policy());
        // One failure every 25 calls: 4%.
        let mut tripped = None;
        for i in 0..200u64 {
            let call = if i % 25 == 24 {
                Call::Failed
            } else {
                Call::Answered
            };
            if let Some(Transition::Tripped(trip)) = breaker.record(call, t0 + ms(i)) {
                tripped = Some((i, trip));
                break;
            }
        }
        let (at, trip) = tripped.expect("4% is above 2%");
        assert_eq!(at, 49, "two failures in 50 calls, once 50 are in");
        assert_eq!(trip.reason, TripReason::FailureRate);
        assert!((trip.rate_pct() - 4.0).abs() < 1e-9);
        // One every 100 calls (1%) never does.
        let mut breaker = Breaker::new(policy());
        for i in 0..2000u64 {
            let call = if i % 100 == 99 {
                Call::Failed
            } else {
                Call::Answered
            };
            assert_eq!(breaker.record(call, t0 + ms(i)), None, "call {i}");
        }
    }

    #[test]
    fn old_samples_leave_the_window() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(policy());
        for i in 0..3 {
            breaker.record(Call::Failed, t0 + ms(i));
        }
        // Five seconds later the three failures have left: a new run starts at one.
        assert_eq!(
            breaker.record(Call::Failed, t0 + Duration::from_secs(6)),
            None
        );
        assert_eq!(breaker.phase(), Phase::Closed);
    }

    #[test]
    fn open_admits_only_paced_probes_then_closes_after_good_ones() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(policy());
        for i in 0..4 {
            breaker.record(Call::Failed, t0 + ms(i));
        }
        assert_eq!(breaker.phase(), Phase::Open);
        let tripped = t0 + ms(3);
        assert_eq!(
            breaker.admit(tripped),
            Admit::Wait(tripped + ms(500)),
            "cooling down"
        );
        assert_eq!(breaker.admit(tripped + ms(500)), Admit::Probe);
        assert_eq!(breaker.phase(), Phase::HalfOpen);
        assert!(
            matches!(breaker.admit(tripped + ms(501)), Admit::Wait(_)),
            "one probe in flight at a time"
        );
        assert_eq!(breaker.probe_finished(false, tripped + ms(600)), None);
        assert_eq!(
            breaker.admit(tripped + ms(700)),
            Admit::Wait(tripped + ms(1100)),
            "paced from the end of the last probe"
        );
        assert_eq!(breaker.admit(tripped + ms(1100)), Admit::Probe);
        assert_eq!(
            breaker.probe_finished(true, tripped + ms(1150)),
            None,
            "one good probe"
        );
        assert_eq!(breaker.admit(tripped + ms(1650)), Admit::Probe);
        let reset = breaker.probe_finished(true, tripped + ms(1700));
        assert_eq!(
            reset,
            Some(Transition::Reset {
                open_for: ms(1700),
                probes: 3
            })
        );
        assert_eq!(breaker.admit(tripped + ms(1701)), Admit::Write);
        // The windows were cleared: three failures do not re-trip on the old ones.
        for i in 0..3 {
            assert_eq!(breaker.record(Call::Failed, tripped + ms(1702 + i)), None);
        }
    }

    #[test]
    fn stragglers_after_the_trip_change_nothing() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(policy());
        for i in 0..4 {
            breaker.record(Call::Failed, t0 + ms(i));
        }
        for i in 0..20 {
            assert_eq!(breaker.record(Call::Answered, t0 + ms(10 + i)), None);
            assert_eq!(breaker.record(Call::MappingError, t0 + ms(10 + i)), None);
        }
        assert_eq!(breaker.phase(), Phase::Open);
        assert_eq!(
            breaker.probe_finished(true, t0 + ms(40)),
            None,
            "no probe was granted"
        );
    }

    /// The rule, computed from scratch over the whole history up to step `i`.
    fn rule(policy: &BreakerPolicy, history: &[(Instant, Call)], i: usize) -> bool {
        let now = history[i].0;
        let within = |window: Duration| {
            history[..=i]
                .iter()
                .filter(move |(t, _)| now.checked_sub(window).is_none_or(|h| *t > h))
        };
        let calls: Vec<Call> = within(policy.failure_window).map(|s| s.1).collect();
        let failures = calls.iter().filter(|c| **c == Call::Failed).count();
        let run = calls
            .iter()
            .rev()
            .take_while(|c| **c == Call::Failed)
            .count();
        let mapping = within(policy.mapping_window)
            .filter(|s| s.1 == Call::MappingError)
            .count();
        mapping > policy.mapping_errors_max as usize
            || policy.failure_run.is_some_and(|r| run >= r as usize)
            || (calls.len() >= policy.min_attempts as usize
                && failures as f64 * 100.0 > policy.failure_rate_pct * calls.len() as f64)
    }

    fn call() -> impl Strategy<Value = Call> {
        prop_oneof![
            8 => Just(Call::Answered),
            2 => Just(Call::Failed),
            1 => Just(Call::MappingError),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn trips_exactly_when_the_rule_first_holds(
            pct in 1.0f64..40.0,
            min_attempts in 1u32..60,
            run in proptest::option::of(2u32..8),
            mapping_max in 0u32..12,
            steps in proptest::collection::vec((0u64..400, call()), 1..300),
        ) {
            let policy = BreakerPolicy {
                failure_window: ms(2000),
                failure_rate_pct: pct,
                min_attempts,
                failure_run: run,
                mapping_window: ms(4000),
                mapping_errors_max: mapping_max,
                ..policy()
            };
            let t0 = Instant::now();
            let mut at = t0;
            let history: Vec<(Instant, Call)> = steps
                .iter()
                .map(|(gap, call)| {
                    at += ms(*gap);
                    (at, *call)
                })
                .collect();
            let expected = (0..history.len()).find(|i| rule(&policy, &history, *i));
            let mut breaker = Breaker::new(policy);
            let mut tripped = None;
            for (i, (now, call)) in history.iter().enumerate() {
                if let Some(Transition::Tripped(_)) = breaker.record(*call, *now) {
                    tripped = Some(i);
                    break;
                }
            }
            prop_assert_eq!(tripped, expected);
        }

        #[test]
        fn open_never_admits_writes_and_paces_probes(
            events in proptest::collection::vec((0u64..300, any::<bool>(), any::<bool>()), 1..200),
        ) {
            let policy = policy();
            let t0 = Instant::now();
            let mut breaker = Breaker::new(policy.clone());
            for i in 0..4 {
                breaker.record(Call::Failed, t0 + ms(i));
            }
            let mut now = t0 + ms(3);
            let mut in_flight = false;
            let mut next_allowed = now + policy.cool_down;
            let mut good_in_a_row = 0;
            for (gap, try_admit, ok) in events {
                now += ms(gap);
                if breaker.phase() == Phase::Closed {
                    prop_assert_eq!(good_in_a_row, policy.probes_to_close);
                    break;
                }
                if in_flight && !try_admit {
                    in_flight = false;
                    let reset = breaker.probe_finished(ok, now);
                    good_in_a_row = if ok { good_in_a_row + 1 } else { 0 };
                    prop_assert_eq!(reset.is_some(), good_in_a_row == policy.probes_to_close);
                    next_allowed = now + policy.probe_interval;
                    continue;
                }
                match breaker.admit(now) {
                    Admit::Write => prop_assert!(false, "no write while open"),
                    Admit::Probe => {
                        prop_assert!(!in_flight, "one probe at a time");
                        prop_assert!(now >= next_allowed, "probes are paced");
                        in_flight = true;
                    }
                    Admit::Wait(until) => prop_assert!(until > now),
                }
            }
        }
    }
}
