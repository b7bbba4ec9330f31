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

use super::plan::{Plan, Scenario};
use super::scenarios::Batch;
use crate::delivery::Sender;
use crate::mock::ats::AtsState;
use crate::observe::{Actor, Entry, ObservationLog};

/// Candidates whose deliveries are in flight at once.
const CONCURRENT_CANDIDATES: usize = 16;
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
    pub drain_deadline: Duration,
}

impl Driver {
    /// Sends every batch and waits for each to drain; `progress` hears deliveries done.
    pub async fn drive(
        &self,
        batches: Vec<Batch>,
        plan: &Plan,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<ScenarioReport> {
        drive(self, batches, plan, progress).await
    }
}

async fn drive(
    driver: &Driver,
    batches: Vec<Batch>,
    plan: &Plan,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<ScenarioReport> {
    let Driver {
        sender,
        url,
        ats,
        log,
        drain_deadline,
    } = driver;
    let drain_deadline = *drain_deadline;
    let mut reports = Vec::new();
    for batch in batches {
        let scenario = batch.scenario;
        log.append(
            Actor::Harness,
            "scenario.start",
            Entry::detail(json!({"scenario": scenario})),
        );
        let started = Instant::now();
        let deliveries: usize = batch.groups.iter().map(|g| g.deliveries.len()).sum();
        let permits = Arc::new(Semaphore::new(CONCURRENT_CANDIDATES));
        let mut tasks = JoinSet::new();
        for group in batch.groups {
            let (sender, url, permits) = (Arc::clone(sender), url.clone(), Arc::clone(&permits));
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.ok();
                let mut acked = 0;
                for (delivery, perturbation) in &group.deliveries {
                    if sender.deliver(&url, delivery, perturbation).await.acked {
                        acked += 1;
                    }
                }
                (acked, group.deliveries.len() as u64)
            });
        }
        let mut acked = 0;
        while let Some(done) = tasks.join_next().await {
            if let Ok((ok, sent)) = done {
                acked += ok;
                progress(sent);
            }
        }
        let send_ms = started.elapsed().as_millis() as u64;
        let expected: HashSet<&str> = plan
            .events_of(scenario)
            .filter(|e| e.should_land)
            .map(|e| e.event_id.as_str())
            .collect();
        let (landed, timed_out) = wait_drained(&expected, ats, drain_deadline).await;
        let report = ScenarioReport {
            scenario,
            deliveries,
            acked,
            should_land: expected.len(),
            landed,
            send_ms,
            total_ms: started.elapsed().as_millis() as u64,
            timed_out,
        };
        log.append(Actor::Harness, "scenario.end", Entry::detail(json!(report)));
        reports.push(report);
    }
    reports
}

/// Waits until every expected event was applied and the ATS has been quiet for
/// [`QUIET`], or the deadline passes. Returns how many landed and whether it timed out.
async fn wait_drained(
    expected: &HashSet<&str>,
    ats: &AtsState,
    deadline: Duration,
) -> (usize, bool) {
    let give_up = tokio::time::Instant::now() + deadline;
    let mut last_requests = ats.requests();
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let landed = expected
            .iter()
            .filter(|id| ats.times_applied(id) > 0)
            .count();
        let now = tokio::time::Instant::now();
        let requests = ats.requests();
        if requests != last_requests {
            last_requests = requests;
            quiet_since = now;
        }
        if landed == expected.len() && now.duration_since(quiet_since) >= QUIET {
            return (landed, false);
        }
        if now >= give_up {
            return (landed, true);
        }
        tokio::time::sleep(POLL).await;
    }
}
