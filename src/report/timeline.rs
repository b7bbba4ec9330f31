//! The timeline of an outage, cut from the observation log: when the ATS went down,
//! the first failed call, the trip and each notification, the queue depth over time,
//! recovery, reset, the drain, and what was lost or duplicated.
//!
//! It is a reading of the same log the checks judge, so `stagegate rehearse outage`
//! shows people what the `kill_switch.*` checks decided on.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::observe::Record;
use crate::run::plan::{Plan, Scenario, marks};

/// Queue-depth samples kept for a timeline (evenly thinned when there are more).
const DEPTH_SAMPLES: usize = 24;

/// One moment of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Moment {
    /// Milliseconds after the outage started.
    pub at_ms: f64,
    /// What happened.
    pub what: String,
    /// The observation-log record it was read from.
    pub seq: u64,
}

/// Events accepted by the integration but not yet applied at the ATS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Depth {
    /// Milliseconds after the outage started.
    pub at_ms: f64,
    /// Events waiting.
    pub depth: usize,
}

/// An outage, as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Timeline {
    /// The scenario (`outage` or `restart`).
    pub scenario: Scenario,
    /// How long the ATS was down, in milliseconds.
    pub outage_ms: f64,
    /// What happened, in order.
    pub moments: Vec<Moment>,
    /// The queue depth over time.
    pub queue_depth: Vec<Depth>,
    /// The deepest the queue got.
    pub max_depth: usize,
    /// Events the integration acknowledged.
    pub accepted: usize,
    /// Events that should have landed and did not.
    pub lost: usize,
    /// Events applied at the ATS more than once.
    pub duplicated: usize,
    /// ATS calls between the trip and the reset (probes).
    pub calls_while_tripped: usize,
    /// From recovery until the last event landed, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_ms: Option<f64>,
    /// Events applied after recovery.
    pub replayed: usize,
    /// `replayed` per second from the reset (when writes resumed) to the last landing:
    /// the integration's replay rate, without the probe delay before the reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_rate_per_s: Option<f64>,
}

fn detail_str<'a>(record: &'a Record, key: &str) -> Option<&'a str> {
    record.detail.get(key).and_then(|v| v.as_str())
}

fn of_scenario(record: &Record, scenario: Scenario) -> bool {
    detail_str(record, "scenario") == Some(scenario.as_str())
}

/// The timeline of the first outage window of `scenario`, if the log has one.
pub fn outage(plan: &Plan, records: &[Record], scenario: Scenario) -> Option<Timeline> {
    let start = records.iter().position(|r| {
        r.kind == marks::FAULT_START
            && of_scenario(r, scenario)
            && detail_str(r, "phase") == Some("outage")
    })?;
    let t0 = records[start].elapsed_ms;
    let end = records[start..]
        .iter()
        .position(|r| r.kind == "scenario.end" && of_scenario(r, scenario))
        .map_or(records.len(), |i| start + i);
    let window = &records[start..end];
    let rel = |r: &Record| ((r.elapsed_ms - t0) * 10.0).round() / 10.0;
    let events: HashMap<&str, bool> = plan
        .events_of(scenario)
        .map(|e| (e.event_id.as_str(), e.should_land))
        .collect();

    let mut moments = vec![Moment {
        at_ms: 0.0,
        what: "the ATS goes down".into(),
        seq: records[start].seq,
    }];
    let mut depth = Vec::new();
    let (mut accepted, mut applied) = (HashSet::new(), HashMap::<&str, usize>::new());
    let (mut first_failure, mut tripped_at, mut recovered_at, mut reset_at) =
        (false, None, None, None);
    let mut calls_while_tripped = 0;
    let mut last_applied = None;
    let mut replayed = 0;
    // Accepted before the window opened count too: they may still be queued.
    for r in &records[..start] {
        if let Some(id) = accepted_event(r).filter(|id| events.contains_key(id)) {
            accepted.insert(id);
        }
    }
    for r in window {
        let mut changed = false;
        match r.kind.as_str() {
            "ats.fault" if !first_failure && recovered_at.is_none() => {
                first_failure = true;
                let fault = detail_str(r, "fault").unwrap_or("fault");
                let path = detail_str(r, "path").unwrap_or("");
                moments.push(Moment {
                    at_ms: rel(r),
                    what: format!("first failed ATS call: {path} ({fault})"),
                    seq: r.seq,
                });
            }
            "ats.request" if tripped_at.is_some() && reset_at.is_none() => {
                calls_while_tripped += 1;
            }
            "notify.message" => {
                let state = detail_str(r, "state").unwrap_or("?");
                let channel = detail_str(r, "channel").unwrap_or("?");
                if state == "tripped" && tripped_at.is_none() {
                    tripped_at = Some(rel(r));
                    moments.push(Moment {
                        at_ms: rel(r),
                        what: format!(
                            "kill switch tripped: {}",
                            detail_str(r, "text").unwrap_or("")
                        ),
                        seq: r.seq,
                    });
                }
                if state == "reset" && recovered_at.is_some() && reset_at.is_none() {
                    reset_at = Some(rel(r));
                    moments.push(Moment {
                        at_ms: rel(r),
                        what: "kill switch reset: writes resume, the queue replays".into(),
                        seq: r.seq,
                    });
                }
                moments.push(Moment {
                    at_ms: rel(r),
                    what: format!("  notified {channel}: {state}"),
                    seq: r.seq,
                });
            }
            k if k == marks::FAULT_END && of_scenario(r, scenario) => {
                recovered_at = Some(rel(r));
                moments.push(Moment {
                    at_ms: rel(r),
                    what: "the ATS recovers".into(),
                    seq: r.seq,
                });
            }
            k if k == marks::INTEGRATION_KILLED => moments.push(Moment {
                at_ms: rel(r),
                what: "the integration is killed (SIGKILL)".into(),
                seq: r.seq,
            }),
            "integration.ready" => moments.push(Moment {
                at_ms: rel(r),
                what: "the integration is back (GET /healthz → 200)".into(),
                seq: r.seq,
            }),
            "ats.event_applied" => {
                if let Some(id) = r.event_id.as_deref().filter(|id| events.contains_key(id)) {
                    *applied.entry(id).or_default() += 1;
                    changed = true;
                    last_applied = Some(rel(r));
                    if recovered_at.is_some() {
                        replayed += 1;
                    }
                }
            }
            _ => {}
        }
        if let Some(id) = accepted_event(r).filter(|id| events.contains_key(id)) {
            changed |= accepted.insert(id);
        }
        if changed {
            let waiting = accepted
                .iter()
                .filter(|id| !applied.contains_key(*id))
                .count();
            depth.push(Depth {
                at_ms: rel(r),
                depth: waiting,
            });
        }
    }
    let drain_ms = match (recovered_at, last_applied) {
        (Some(up), Some(last)) if last >= up && replayed > 0 => Some(last - up),
        _ => None,
    };
    if let (Some(drain), Some(up)) = (drain_ms, recovered_at) {
        moments.push(Moment {
            at_ms: up + drain,
            what: format!("the queue is drained: {replayed} events replayed after recovery"),
            seq: window.last().map_or(0, |r| r.seq),
        });
    }
    moments.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let lost = events
        .iter()
        .filter(|(id, should_land)| **should_land && !applied.contains_key(*id))
        .count();
    let max_depth = depth.iter().map(|d| d.depth).max().unwrap_or(0);
    Some(Timeline {
        scenario,
        outage_ms: recovered_at.unwrap_or(0.0),
        moments,
        queue_depth: thin(depth),
        max_depth,
        accepted: accepted.len(),
        lost,
        duplicated: applied.values().filter(|n| **n > 1).count(),
        calls_while_tripped,
        drain_ms,
        replayed,
        drain_rate_per_s: match (reset_at.or(recovered_at), last_applied) {
            (Some(from), Some(last)) if last > from && replayed > 0 => {
                Some((replayed as f64 / ((last - from) / 1000.0)).round())
            }
            _ => None,
        },
    })
}

/// The event a successful `webhook.attempt` delivered (the integration accepted it).
fn accepted_event(record: &Record) -> Option<&str> {
    (record.kind == "webhook.attempt" && record.status.is_some_and(|s| (200..300).contains(&s)))
        .then_some(record.event_id.as_deref())
        .flatten()
}

/// Keeps at most [`DEPTH_SAMPLES`] samples, evenly spread, always the deepest and last.
fn thin(samples: Vec<Depth>) -> Vec<Depth> {
    if samples.len() <= DEPTH_SAMPLES {
        return samples;
    }
    let deepest = samples
        .iter()
        .enumerate()
        .max_by_key(|(_, d)| d.depth)
        .map_or(0, |(i, _)| i);
    let step = samples.len() as f64 / (DEPTH_SAMPLES - 1) as f64;
    let mut keep: Vec<usize> = (0..DEPTH_SAMPLES - 1)
        .map(|i| (i as f64 * step) as usize)
        .chain([deepest, samples.len() - 1])
        .collect();
    keep.sort_unstable();
    keep.dedup();
    keep.into_iter().map(|i| samples[i]).collect()
}

/// Renders the timeline for people.
pub fn render(timeline: &Timeline) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_timeline(&mut out, timeline);
    out
}

fn write_timeline(out: &mut String, t: &Timeline) -> std::fmt::Result {
    writeln!(
        out,
        "outage timeline ({}): the ATS was down {:.2} s",
        t.scenario,
        t.outage_ms / 1000.0
    )?;
    for m in &t.moments {
        writeln!(out, "  +{:>8.3} s  {}", m.at_ms / 1000.0, m.what)?;
    }
    writeln!(out, "queue depth (events accepted, not yet at the ATS):")?;
    let bar_max = t.max_depth.max(1);
    for d in &t.queue_depth {
        let bar = "█".repeat((d.depth * 30).div_ceil(bar_max));
        writeln!(out, "  +{:>8.3} s  {:>5}  {bar}", d.at_ms / 1000.0, d.depth)?;
    }
    match (t.drain_ms, t.drain_rate_per_s) {
        (Some(ms), Some(rate)) => writeln!(
            out,
            "drain: {} events replayed, the last {:.2} s after recovery ({rate} events/s once writes resumed)",
            t.replayed,
            ms / 1000.0
        )?,
        _ => writeln!(out, "drain: nothing was replayed after recovery")?,
    }
    writeln!(
        out,
        "accepted {}, lost {}, duplicated {}; {} ATS calls while tripped (probes)",
        t.accepted, t.lost, t.duplicated, t.calls_while_tripped
    )?;
    if t.lost == 0 && t.duplicated == 0 {
        writeln!(out, "nothing lost, nothing duplicated")
    } else {
        writeln!(
            out,
            "EVENTS WERE LOST OR DUPLICATED: see the kill_switch.* checks below"
        )
    }
}
