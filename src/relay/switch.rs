//! The kill switch at run time: the [`Breaker`] behind a lock, the worker's tasks
//! waiting to be admitted, and the announcements of every change — a JSON log line,
//! and a notice for every channel.
//!
//! The breaker is pure; this module owns the clock (`Instant::now`) and the waiting.
//! While the switch is open, tasks wait here, holding their candidate's place in the
//! queue, so an event that failed keeps its place and nothing behind it overtakes it.
//! The switch lives in memory: a restarted relay starts closed, and trips again at
//! once if the ATS is still down. What the channels were last told does not: a
//! marker file in the state folder says a `tripped` went out with no `reset` after
//! it, so a relay killed while tripped tells the channels `reset` at its first good
//! ATS call, and nobody is left believing writes are paused.
//!
//! Of the manifest's `action`, the relay always queues: an acknowledged webhook is a
//! promise, so `queue_events: false` is logged but not obeyed; and it opens no
//! candidate-facing gates, so `pause_candidate_gates` has nothing to pause.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde_json::json;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

use super::breaker::{Admit, Breaker, BreakerPolicy, Call, Phase, Transition, Trip};
use super::config::RelayConfig;
use super::log::RelayLog;
use super::notify::{Notice, SwitchState};

/// Replay progress is logged after every this many events written.
const REPLAY_PROGRESS_EVERY: u64 = 10;

/// What an admitted task may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The switch is closed: write.
    Write,
    /// The switch is open and this task makes the probe.
    Probe,
}

/// A replay in progress: since when, and how much is done.
struct Replay {
    started: Instant,
    written: u64,
}

/// The kill switch.
pub(crate) struct KillSwitch {
    name: String,
    /// `false` under the `never_trip` fault: everything is admitted, nothing recorded.
    enabled: bool,
    breaker: Mutex<Breaker>,
    changed: Notify,
    notices: UnboundedSender<Notice>,
    log: RelayLog,
    /// The manifest's thresholds as written, for people.
    rate_pct: f64,
    mapping_max: f64,
    replay: Mutex<Option<Replay>>,
    trips: AtomicU64,
    /// The channels were told `tripped` before a restart and not `reset` since.
    pending_reset: std::sync::atomic::AtomicBool,
    /// The file that remembers an unanswered `tripped` across restarts.
    marker: std::path::PathBuf,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The marker file, in the state folder, of a `tripped` not yet followed by `reset`.
const TRIPPED_MARKER: &str = "kill-switch-tripped";

impl KillSwitch {
    /// The manifest's switch on the run's clock, announcing through `notices` and `log`.
    pub(crate) fn new(
        config: &RelayConfig,
        notices: UnboundedSender<Notice>,
        log: RelayLog,
    ) -> Self {
        let switch = &config.manifest.raw.release_gate.kill_switch;
        let mut policy = BreakerPolicy::from_kill_switch(switch, config.time_scale)
            .tuned(&config.tuning, config.time_scale);
        if config.has_fault("trip_low") {
            // Deliberate defect: trips at a tenth of the thresholds, on the first failures.
            policy = policy.trip_low();
        }
        let enabled = !config.has_fault("never_trip");
        let marker = config.state_dir.join(TRIPPED_MARKER);
        log.note(
            "kill_switch_armed",
            json!({
                "kill_switch": switch.name,
                "enabled": enabled,
                "time_scale": config.time_scale,
                "failure_window_ms": policy.failure_window.as_millis() as u64,
                "failure_rate_pct": policy.failure_rate_pct,
                "min_attempts": policy.min_attempts,
                "failure_run": policy.failure_run,
                "mapping_window_ms": policy.mapping_window.as_millis() as u64,
                "mapping_errors_max": policy.mapping_errors_max,
                "cool_down_ms": policy.cool_down.as_millis() as u64,
                "probe_interval_ms": policy.probe_interval.as_millis() as u64,
                "probes_to_close": policy.probes_to_close,
                "queue_events": switch.action.queue_events,
                "queues_anyway": true,
            }),
        );
        KillSwitch {
            name: switch.name.clone(),
            enabled,
            breaker: Mutex::new(Breaker::new(policy)),
            changed: Notify::new(),
            notices,
            log,
            rate_pct: switch.trigger_conditions.ats_http_5xx_rate_pct_over_5m,
            mapping_max: switch.trigger_conditions.mapping_error_count_over_10m,
            replay: Mutex::new(None),
            trips: AtomicU64::new(0),
            pending_reset: std::sync::atomic::AtomicBool::new(marker.exists()),
            marker,
        }
    }

    /// The breaker's phase now.
    pub(crate) fn phase(&self) -> Phase {
        lock(&self.breaker).phase()
    }

    /// How many times the switch tripped since the relay started.
    pub(crate) fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Records one ATS call; announces the trip if it tripped the switch.
    pub(crate) fn record(&self, call: Call) {
        if !self.enabled {
            return;
        }
        if call == Call::Answered && self.pending_reset.swap(false, Ordering::Relaxed) {
            // Killed while tripped: the ATS answers again, so the channels hear it.
            self.announce_reset(format!(
                "{}: reset — the relay restarted after a trip and the ATS answers again. ATS writes resume; queued events replay in per-candidate order.",
                self.name
            ));
        }
        let transition = lock(&self.breaker).record(call, Instant::now());
        if let Some(Transition::Tripped(trip)) = transition {
            self.tripped(&trip);
        }
    }

    /// Waits until a call to the ATS is allowed: at once while closed, for a probe
    /// slot while open.
    pub(crate) async fn admit(&self) -> Admission {
        if !self.enabled {
            return Admission::Write;
        }
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change in between still wakes us.
            changed.as_mut().enable();
            let decision = lock(&self.breaker).admit(Instant::now());
            match decision {
                Admit::Write => return Admission::Write,
                Admit::Probe => return Admission::Probe,
                Admit::Wait(until) => {
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
                    }
                }
            }
        }
    }

    /// Whether a task admitted as `admission` may still write (the switch may have
    /// tripped between its read and its write).
    pub(crate) fn may_write(&self, admission: Admission) -> bool {
        !self.enabled || admission == Admission::Probe || self.phase() == Phase::Closed
    }

    /// Reports a probe; resets the switch and starts the replay after enough good ones.
    pub(crate) fn probe_finished(
        &self,
        ok: bool,
        probe: serde_json::Value,
        queued: impl FnOnce() -> u64,
    ) {
        let (transition, phase) = {
            let mut breaker = lock(&self.breaker);
            let transition = breaker.probe_finished(ok, Instant::now());
            (transition, breaker.phase())
        };
        let mut line =
            json!({"kill_switch": self.name, "ok": ok, "phase_after": phase_name(phase)});
        if let (Some(map), serde_json::Value::Object(extra)) = (line.as_object_mut(), probe) {
            map.extend(extra);
        }
        self.log.note("kill_switch_probe", line);
        if let Some(Transition::Reset { open_for, probes }) = transition {
            let queued = queued();
            self.log.note(
                "kill_switch_reset",
                json!({"kill_switch": self.name, "open_ms": open_for.as_millis() as u64, "probes": probes, "queued": queued}),
            );
            let text = format!(
                "{}: reset after {:.1} s open and {probes} probes, the last {} of them answered by the ATS. ATS writes resume; the {queued} queued events replay in per-candidate order.",
                self.name,
                open_for.as_secs_f64(),
                lock(&self.breaker).policy().probes_to_close,
            );
            self.announce_reset(text);
            self.log.note(
                "replay_started",
                json!({"kill_switch": self.name, "queued": queued}),
            );
            *lock(&self.replay) = Some(Replay {
                started: Instant::now(),
                written: 0,
            });
        }
        // Waiting tasks: closed now, or the next probe slot moved.
        self.changed.notify_waiters();
    }

    /// Counts a finished event towards the replay in progress, if any; `queued` is
    /// how many events still wait.
    pub(crate) fn job_finished(&self, queued: impl FnOnce() -> u64) {
        let mut replay = lock(&self.replay);
        let Some(progress) = replay.as_mut() else {
            return;
        };
        progress.written += 1;
        let remaining = queued();
        if remaining == 0 {
            self.log.note(
                "replay_finished",
                json!({"kill_switch": self.name, "written": progress.written, "ms": progress.started.elapsed().as_millis() as u64}),
            );
            *replay = None;
        } else if progress.written % REPLAY_PROGRESS_EVERY == 0 {
            self.log.note(
                "replay_progress",
                json!({"kill_switch": self.name, "written": progress.written, "remaining": remaining}),
            );
        }
    }

    /// Tells every channel `reset`, and forgets that they were told `tripped`.
    fn announce_reset(&self, text: String) {
        self.pending_reset.store(false, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.marker);
        let _ = self.notices.send(Notice {
            state: SwitchState::Reset,
            text,
        });
    }

    fn tripped(&self, trip: &Trip) {
        self.trips.fetch_add(1, Ordering::Relaxed);
        // Written before the notice goes out: a kill after it still owes a reset.
        let _ = std::fs::write(&self.marker, b"tripped\n");
        if let Some(progress) = lock(&self.replay).take() {
            self.log.note(
                "replay_paused",
                json!({"kill_switch": self.name, "written": progress.written}),
            );
        }
        let why = trip.describe(self.rate_pct, self.mapping_max);
        self.log.note(
            "kill_switch_tripped",
            json!({
                "kill_switch": self.name,
                "reason": trip.reason.as_str(),
                "failures": trip.failures,
                "attempts": trip.attempts,
                "rate_pct": trip.rate_pct(),
                "run": trip.run,
                "mapping_errors": trip.mapping_errors,
                "threshold_pct": self.rate_pct,
                "mapping_limit": self.mapping_max,
                "text": why,
            }),
        );
        let text = format!(
            "{}: tripped — {why}. ATS writes are paused; webhooks are still acknowledged and queued, and will replay in order once the ATS recovers.",
            self.name
        );
        let _ = self.notices.send(Notice {
            state: SwitchState::Tripped,
            text,
        });
        self.changed.notify_waiters();
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Closed => "closed",
        Phase::Open => "open",
        Phase::HalfOpen => "half_open",
    }
}
