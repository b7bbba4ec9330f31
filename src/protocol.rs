//! The integration protocol's numbers (docs/integration-protocol.md): the kill-switch
//! tolerances every integration is held to, derived from the manifest's thresholds.
//!
//! One leaf module, so the judge (which checks an integration against them), the
//! scenarios (which size their traffic so any conforming breaker can trip) and the
//! documentation state the same figures. They are sized to the manifest, not to the
//! reference relay's breaker: a breaker of another design that stays within them
//! passes.

use crate::manifest::model::TriggerConditions;

/// The environment an integration under test is started with (the protocol's §1):
/// one list of names for the harness that sets them, the relay that reads them and
/// the CLI that prints them.
pub mod env {
    /// `STAGEGATE_LISTEN`.
    pub const LISTEN: &str = "STAGEGATE_LISTEN";
    /// `STAGEGATE_ATS_URL`.
    pub const ATS_URL: &str = "STAGEGATE_ATS_URL";
    /// `STAGEGATE_ATS_TOKEN`.
    pub const ATS_TOKEN: &str = "STAGEGATE_ATS_TOKEN";
    /// `STAGEGATE_VENDOR_URL`.
    pub const VENDOR_URL: &str = "STAGEGATE_VENDOR_URL";
    /// `STAGEGATE_VENDOR_TOKEN`.
    pub const VENDOR_TOKEN: &str = "STAGEGATE_VENDOR_TOKEN";
    /// `STAGEGATE_VENDOR_WEBHOOK_SECRET`.
    pub const VENDOR_WEBHOOK_SECRET: &str = "STAGEGATE_VENDOR_WEBHOOK_SECRET";
    /// `STAGEGATE_ATS_WEBHOOK_SECRET`.
    pub const ATS_WEBHOOK_SECRET: &str = "STAGEGATE_ATS_WEBHOOK_SECRET";
    /// `STAGEGATE_NOTIFY_URL`.
    pub const NOTIFY_URL: &str = "STAGEGATE_NOTIFY_URL";
    /// `STAGEGATE_MANIFEST`.
    pub const MANIFEST: &str = "STAGEGATE_MANIFEST";
    /// `STAGEGATE_STATE_DIR`.
    pub const STATE_DIR: &str = "STAGEGATE_STATE_DIR";
    /// `STAGEGATE_TIME_SCALE`.
    pub const TIME_SCALE: &str = "STAGEGATE_TIME_SCALE";
    /// `STAGEGATE_POLICY`: the hiring policy's absolute path, set when the run has one.
    pub const POLICY: &str = "STAGEGATE_POLICY";
    /// `STAGEGATE_POLICY_STAGES`: the hiring stages in order, comma-separated.
    pub const POLICY_STAGES: &str = "STAGEGATE_POLICY_STAGES";
}

/// What a kill-switch notification says (`{"state": "tripped"}` or `"reset"`): one
/// type for the notify sink that receives it, the relay that sends it and the checks
/// that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchState {
    /// The switch tripped: writes stopped, events queue.
    Tripped,
    /// The switch reset: writes resume, the queue replays.
    Reset,
}

impl SwitchState {
    /// The protocol's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchState::Tripped => "tripped",
            SwitchState::Reset => "reset",
        }
    }

    /// The state a notification names, if it names one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "tripped" => Some(SwitchState::Tripped),
            "reset" => Some(SwitchState::Reset),
            _ => None,
        }
    }
}

/// The manifest's `…_over_5m` rate window, in real-world time.
pub const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The manifest's `…_over_10m` mapping-error window, in real-world time.
pub const MAPPING_WINDOW: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// `real` on a clock `time_scale` times faster, never shorter than a millisecond.
pub fn scaled(real: std::time::Duration, time_scale: f64) -> std::time::Duration {
    if !(time_scale.is_finite() && time_scale > 0.0) {
        return real;
    }
    std::time::Duration::try_from_secs_f64(real.as_secs_f64() / time_scale)
        .unwrap_or(real)
        .max(std::time::Duration::from_millis(1))
}

/// Calls in flight when a breaker decides, allowed on top of every budget.
pub const IN_FLIGHT_ALLOWANCE: usize = 16;

/// ATS calls per real-world minute allowed while tripped (a probe every 15 s).
pub const PROBE_CALLS_PER_REAL_MINUTE: f64 = 4.0;

/// Calls allowed after the trip on top of the probe rate: the ones in flight when it
/// tripped (logged when answered, after the notification), a probe's read and write.
pub const PROBE_ALLOWANCE: usize = 10;

/// The largest budget, however small the threshold.
const BUDGET_CEILING: usize = 100_000;

/// The kill-switch tolerances of one manifest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KillSwitchTolerances {
    /// The manifest's 5xx threshold, in percent.
    pub threshold_pct: f64,
    /// `S = ceil(100 / pct)`: the smallest sample in which one failure reaches the
    /// threshold. A rate rule must judge at least `S` and at most `2S` calls.
    pub sample: usize,
}

impl KillSwitchTolerances {
    /// The tolerances of a manifest's trigger conditions.
    pub fn new(conditions: &TriggerConditions) -> Self {
        let pct = conditions.ats_http_5xx_rate_pct_over_5m;
        let pct = if pct.is_finite() && pct > 0.0 {
            pct.min(100.0)
        } else {
            100.0
        };
        let sample = ((100.0 / pct).ceil() as usize).clamp(1, BUDGET_CEILING);
        KillSwitchTolerances {
            threshold_pct: pct,
            sample,
        }
    }

    /// The largest minimum sample a rate rule may wait for: `2S`.
    pub fn max_min_sample(&self) -> usize {
        self.sample.saturating_mul(2)
    }

    /// ATS calls from the start of an outage until `tripped`: `2S + 16`.
    pub fn outage_budget(&self) -> usize {
        (self.max_min_sample() + IN_FLIGHT_ALLOWANCE).min(BUDGET_CEILING)
    }

    /// ATS calls from the start of a brownout above the threshold until `tripped`:
    /// `4S + 16` (a rate rule needs a full sample with enough failures in it).
    pub fn brownout_budget(&self) -> usize {
        (self.sample.saturating_mul(4) + IN_FLIGHT_ALLOWANCE).min(BUDGET_CEILING)
    }

    /// Events the harness sends into a fault window: `2S + 16`, so that an
    /// integration making one ATS call per event gives the largest allowed minimum
    /// sample its calls.
    pub fn events_per_window(&self) -> usize {
        self.outage_budget()
    }

    /// One failure every this many ATS calls above the threshold (1.5 × pct: 33 at
    /// 2 %) and below it (every `2S`-th call: 100 at 2 %). Deterministic, since a
    /// random rate near the threshold trips or not by luck. Below is half the
    /// threshold so that no stretch of at least `S` calls — what a rate rule judges,
    /// whatever its window holds on a fast clock or a slow machine — is above it.
    pub fn brownout_periods(&self) -> (u32, u32) {
        let threshold = self.threshold_pct.clamp(0.01, 66.0);
        // Floor above, so the rate is strictly above the threshold.
        let above = (100.0 / (threshold * 1.5)).floor().clamp(2.0, 10_000.0) as u32;
        let below = self.sample.saturating_mul(2).clamp(2, 10_000) as u32;
        (above, below)
    }
}

/// The ATS calls allowed over `span_ms` of a tripped window on a clock `time_scale`
/// times faster than real time: [`PROBE_CALLS_PER_REAL_MINUTE`] plus the allowance.
pub fn probe_limit(time_scale: f64, span_ms: f64) -> usize {
    let scale = if time_scale.is_finite() && time_scale > 0.0 {
        time_scale
    } else {
        1.0
    };
    let span = if span_ms.is_finite() {
        span_ms.max(0.0)
    } else {
        0.0
    };
    let rate = (PROBE_CALLS_PER_REAL_MINUTE * scale / 60_000.0 * span).floor() as usize;
    rate.saturating_add(PROBE_ALLOWANCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pct: f64) -> KillSwitchTolerances {
        KillSwitchTolerances::new(&TriggerConditions {
            ats_http_5xx_rate_pct_over_5m: pct,
            mapping_error_count_over_10m: 10.0,
        })
    }

    #[test]
    fn budgets_follow_the_threshold() {
        // (threshold %, S, outage budget, brownout budget, why)
        let rows = [
            (2.0, 50, 116, 216, "the seed"),
            (5.0, 20, 56, 96, "a looser threshold needs fewer calls"),
            (1.0, 100, 216, 416, "a tighter one more"),
            (0.0, 1, 18, 20, "a nonsensical threshold judges as 100 %"),
            (f64::NAN, 1, 18, 20, "so does NaN"),
            (0.0001, 100_000, 100_000, 100_000, "capped"),
        ];
        for (pct, sample, outage, brownout, why) in rows {
            let t = at(pct);
            assert_eq!(
                (t.sample, t.outage_budget(), t.brownout_budget()),
                (sample, outage, brownout),
                "{why}"
            );
        }
    }

    #[test]
    fn brownouts_straddle_the_threshold() {
        assert_eq!(at(2.0).brownout_periods(), (33, 100));
        for pct in [0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 33.0] {
            let tolerances = at(pct);
            let (above, below) = tolerances.brownout_periods();
            assert!(100.0 / f64::from(above) > pct, "{pct}: above");
            // Every stretch of S calls or more, wherever it starts, stays at or below
            // the threshold: a rate rule (failures × 100 > pct × calls) never trips.
            let sample = tolerances.sample as u64;
            let below = u64::from(below);
            for calls in sample..=sample * 6 {
                for start in 0..below {
                    let failures = (start + 1..=start + calls)
                        .filter(|i| i % below == 0)
                        .count() as f64;
                    assert!(
                        failures * 100.0 <= pct * calls as f64,
                        "{pct}: {failures} failures in {calls} calls from call {start}"
                    );
                }
            }
        }
    }

    #[test]
    fn probe_limits_scale_with_time() {
        assert_eq!(probe_limit(60.0, 1000.0), 4 + PROBE_ALLOWANCE);
        assert_eq!(probe_limit(60.0, 10_000.0), 40 + PROBE_ALLOWANCE);
        assert_eq!(probe_limit(1.0, 1000.0), PROBE_ALLOWANCE);
        assert_eq!(probe_limit(f64::NAN, f64::INFINITY), PROBE_ALLOWANCE);
    }
}
