//! Driving the policy flow: each candidate's stage changes sent to the
//! integration's `POST /webhooks/ats` in plan order, the vendor answering every
//! session the integration opens as the candidate's risk profile says, a reviewer
//! resolving exception items, and, in `policy-reconcile`, the daily job.
//!
//! The harness waits on state (a grant at the ATS, the mocks going quiet), never on
//! a fixed clock, and bounds every wait by the drain stall window, so a defective
//! integration costs a few seconds, not a hang.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{PlannedResult, PolicyCandidate, PolicyPlan, ReconcileCase, RiskProfile, marks};
use crate::delivery::{Delivery, Perturbation, Sender};
use crate::manifest::Envelope;
use crate::mock::ats::AtsState;
use crate::mock::vendor::{Session, VendorState};
use crate::observe::{Actor, Entry, ObservationLog};
use crate::run::drive::{DrainLimit, ScenarioReport, Sessions};
use crate::run::plan::Scenario;

/// How long the mocks must see nothing before a policy scenario counts as settled.
const QUIET: Duration = Duration::from_millis(300);
/// How often state is looked at while waiting.
const POLL: Duration = Duration::from_millis(10);
/// How long the vendor takes over a session that is not slow.
const FAST_RESULT: Duration = Duration::from_millis(20);

/// What drives the policy flow.
pub struct PolicyDriver {
    /// Signs with the ATS's webhook secret, retries as the policy's `retry` says.
    pub ats_sender: Sender,
    /// Signs with the vendor's webhook secret (the run's sender).
    pub vendor_sender: Arc<Sender>,
    /// The integration's base URL.
    pub base_url: String,
    /// The mock ATS.
    pub ats: Arc<AtsState>,
    /// The mock vendor.
    pub vendor: Arc<VendorState>,
    /// The run's log.
    pub log: ObservationLog,
    /// Every wait's bound.
    pub drain: DrainLimit,
    /// How much faster than real time the policy's windows pass.
    pub time_scale: f64,
    /// The manifest's envelope (where results carry their ids).
    pub envelope: Envelope,
    /// For `POST /jobs/reconcile`.
    pub client: reqwest::Client,
    /// The notification sink, which says when the kill switch tripped and reset.
    pub notify: Arc<crate::mock::notify::NotifyState>,
    /// The channels every kill-switch notification must reach.
    pub channels: Vec<String>,
    /// The manifest's `pause_candidate_gates`: whether sessions must wait for the reset.
    pub pause_gates: bool,
}

/// How long the ATS stays down in `policy-outage` at the least (see [`PolicyDriver::outage`]).
const OUTAGE_HOLD: Duration = Duration::from_millis(3000);

impl std::fmt::Debug for PolicyDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyDriver")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The vendor's side of the flow, shared by the task answering sessions.
struct Responder {
    plan: Arc<PolicyPlan>,
    driver: Arc<PolicyDriver>,
    /// Gated moves delivered per candidate so far: which gate a session answers.
    gates_sent: Mutex<HashMap<String, usize>>,
    /// The planned results already given to a session, per candidate.
    answered: Mutex<HashSet<(String, usize)>>,
    /// Sessions being answered now.
    busy: AtomicUsize,
}

impl PolicyDriver {
    /// Drives the policy scenarios in order and reports each.
    pub async fn drive(
        self: Arc<Self>,
        plan: PolicyPlan,
        scenarios: &[Scenario],
    ) -> Vec<ScenarioReport> {
        let plan = Arc::new(plan);
        let responder = Arc::new(Responder {
            plan: Arc::clone(&plan),
            driver: Arc::clone(&self),
            gates_sent: Mutex::new(HashMap::new()),
            answered: Mutex::new(HashSet::new()),
            busy: AtomicUsize::new(0),
        });
        let mut sessions = self.vendor.subscribe();
        let answering = {
            let responder = Arc::clone(&responder);
            tokio::spawn(async move {
                let mut tasks = JoinSet::new();
                loop {
                    match sessions.recv().await {
                        Ok(session) => {
                            responder.busy.fetch_add(1, Ordering::SeqCst);
                            let responder = Arc::clone(&responder);
                            tasks.spawn(async move {
                                responder.answer(session).await;
                                responder.busy.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                    while tasks.try_join_next().is_some() {}
                }
            })
        };
        let mut reports = Vec::new();
        for &scenario in scenarios.iter().filter(|s| s.is_policy()) {
            reports.push(self.scenario(&plan, &responder, scenario).await);
        }
        answering.abort();
        let _ = answering.await;
        reports
    }

    async fn scenario(
        self: &Arc<Self>,
        plan: &Arc<PolicyPlan>,
        responder: &Arc<Responder>,
        scenario: Scenario,
    ) -> ScenarioReport {
        self.log.append(
            Actor::Harness,
            "scenario.start",
            Entry::detail(json!({"scenario": scenario})),
        );
        let started = Instant::now();
        let members: Vec<PolicyCandidate> = plan
            .candidates
            .iter()
            .filter(|c| c.scenario == scenario)
            .cloned()
            .collect();
        let deliveries = members
            .iter()
            .flat_map(|c| &c.moves)
            .filter(|m| !m.lost)
            .count();
        let acked = if scenario == Scenario::PolicyOutage {
            self.outage(plan, responder, &members).await
        } else {
            self.send_all(plan, responder, &members).await
        };
        for member in &members {
            if member.reconcile == Some(ReconcileCase::OrphanSession) {
                // The candidate follows an old invitation: a session the integration never asked for.
                self.vendor
                    .open_for_candidate(&member.candidate, &member.correlation_id);
            }
        }
        let send_ms = started.elapsed().as_millis() as u64;
        let sessions = self.sessions_opened(plan, &members).await;
        let mut timed_out = sessions.opened < sessions.should_open;
        timed_out |= !self.settle(responder).await;
        if scenario == Scenario::PolicyReconcile {
            self.reconcile().await;
            timed_out |= !self.settle(responder).await;
        }
        let report = ScenarioReport {
            scenario,
            deliveries,
            acked,
            should_land: 0,
            landed: 0,
            send_ms,
            total_ms: started.elapsed().as_millis() as u64,
            timed_out,
            sessions: Some(sessions),
        };
        self.log
            .append(Actor::Harness, "scenario.end", Entry::detail(json!(report)));
        report
    }

    /// Sends every member's moves, candidates concurrently; the deliveries acknowledged.
    async fn send_all(
        self: &Arc<Self>,
        plan: &Arc<PolicyPlan>,
        responder: &Arc<Responder>,
        members: &[PolicyCandidate],
    ) -> usize {
        let mut tasks = JoinSet::new();
        for member in members {
            let member = member.clone();
            let (driver, plan, responder) =
                (Arc::clone(self), Arc::clone(plan), Arc::clone(responder));
            tasks.spawn(async move { driver.send_moves(&plan, &responder, &member).await });
        }
        let mut acked = 0;
        while let Some(done) = tasks.join_next().await {
            acked += done.unwrap_or(0);
        }
        acked
    }

    /// `policy-outage`: the ATS fails every request for at least [`OUTAGE_HOLD`]; half the
    /// members move into the gated stage as it starts (their results' writes fail,
    /// which trips the switch), the other half once every channel heard `tripped`.
    /// Their sessions are what `kill_switch.gates_not_paused` judges. Then the ATS
    /// recovers (not before every gated member has its session, when gates must not
    /// pause) and the harness waits for the `reset`.
    async fn outage(
        self: &Arc<Self>,
        plan: &Arc<PolicyPlan>,
        responder: &Arc<Responder>,
        members: &[PolicyCandidate],
    ) -> usize {
        use crate::mock::faults::{FaultKind, FaultWindow};
        use crate::mock::notify::SwitchState;
        let scenario = Scenario::PolicyOutage;
        // Open-ended: the ATS fails until the end is marked, however late that is.
        let faults = vec![FaultWindow::always(FaultKind::Outage)];
        crate::run::drive::open_window(&self.ats, &self.log, scenario, "outage", true, faults);
        let down = Instant::now();
        let (early, late) = members.split_at(members.len() / 2);
        let mut acked = self.send_all(plan, responder, early).await;
        let left = OUTAGE_HOLD.saturating_sub(down.elapsed());
        crate::run::drive::wait_notified(&self.notify, &self.channels, SwitchState::Tripped, left)
            .await;
        acked += self.send_all(plan, responder, late).await;
        tokio::time::sleep_until((down + OUTAGE_HOLD).into()).await;
        if !self.pause_gates {
            // A session must open while the switch is still tripped; on a loaded
            // machine a fan-out can outlast the hold, and a recovery before it would
            // let the reset overtake a session the integration did not hold back.
            self.sessions_opened(plan, members).await;
        }
        crate::run::drive::close_window(&self.ats, &self.log, scenario, "outage");
        crate::run::drive::wait_notified(
            &self.notify,
            &self.channels,
            SwitchState::Reset,
            self.drain.stall,
        )
        .await;
        acked
    }

    /// Sends one candidate's moves in its send order, moving the ATS first (the ATS
    /// announces a move once it made it); after a move into a gated stage, waits for
    /// its grant before the candidate moves on. Returns the deliveries acknowledged.
    async fn send_moves(
        &self,
        plan: &PolicyPlan,
        responder: &Responder,
        member: &PolicyCandidate,
    ) -> usize {
        let url = match format!("{}/webhooks/ats", self.base_url).parse::<url::Url>() {
            Ok(url) => url,
            Err(_) => return 0,
        };
        let mut moved = 0usize;
        let mut acked = 0;
        let last = member.send_order.len().saturating_sub(1);
        for (position, &index) in member.send_order.iter().enumerate() {
            let Some(change) = member.moves.get(index) else {
                continue;
            };
            if !change.forged {
                // The ATS makes the moves in the order they happened, whatever the
                // order of their deliveries.
                while moved <= index {
                    if let Some(earlier) = member.moves.get(moved) {
                        self.ats.set_stage(&member.candidate, &earlier.to);
                    }
                    moved += 1;
                }
            }
            if change.lost {
                self.log.append(
                    Actor::Harness,
                    marks::LOST_STAGE_CHANGE,
                    Entry {
                        candidate: Some(member.candidate.clone()),
                        correlation_id: Some(member.correlation_id.clone()),
                        event_id: Some(change.event_id.clone()),
                        ..Entry::detail(json!({"event_id": change.event_id, "to": change.to}))
                    },
                );
                continue;
            }
            let event_name = plan
                .event()
                .map_or("candidate.stage_changed", |e| e.name.as_str());
            let mut delivery = Delivery::json(
                format!("msg_{}", change.event_id),
                event_name,
                &change.payload,
            );
            delivery.candidate = Some(member.candidate.clone());
            delivery.correlation_id = Some(member.correlation_id.clone());
            delivery.event_id = Some(change.event_id.clone());
            delivery.idempotency_key = Some(change.idempotency_key.clone());
            if !change.forged && plan.is_gated(&change.to) {
                *lock(&responder.gates_sent)
                    .entry(member.candidate.clone())
                    .or_default() += 1;
            }
            let outcome = self
                .ats_sender
                .deliver(&url, &delivery, &perturbation(&change.perturbation))
                .await;
            if outcome.acked {
                acked += 1;
            }
            if !change.forged && plan.is_gated(&change.to) && position < last {
                self.wait_for_grant(&member.candidate, super::resource_of(&change.to))
                    .await;
            }
        }
        acked
    }

    /// Waits until the ATS holds a grant of `resource` for the candidate, at most the
    /// drain stall window (an integration that never grants is the checks' to judge).
    async fn wait_for_grant(&self, candidate: &str, resource: &str) {
        let give_up = Instant::now() + self.drain.stall;
        while Instant::now() < give_up {
            let granted = self.ats.grants().iter().any(|g| {
                g.ats_candidate_id == candidate
                    && serde_json::to_value(g.resource)
                        .ok()
                        .as_ref()
                        .and_then(Value::as_str)
                        == Some(resource)
            });
            if granted {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until no session is being answered and the ATS and the vendor have been
    /// quiet for [`QUIET`]; `false` if the stall window passed first.
    async fn settle(&self, responder: &Responder) -> bool {
        let start = Instant::now();
        let mut last = (self.ats.requests(), self.vendor.sessions(None).len());
        let mut quiet_since = start;
        loop {
            tokio::time::sleep(POLL).await;
            let now_state = (self.ats.requests(), self.vendor.sessions(None).len());
            let now = Instant::now();
            if now_state != last || responder.busy.load(Ordering::SeqCst) > 0 {
                last = now_state;
                quiet_since = now;
            }
            if now.duration_since(quiet_since) >= QUIET {
                return true;
            }
            if now.duration_since(quiet_since) >= self.drain.stall
                || now.duration_since(start) >= self.drain.cap
            {
                return false;
            }
        }
    }

    /// Waits until every candidate whose move into a gated stage was delivered has
    /// a session at the vendor (a slow fan-out is still under way when the mocks
    /// go quiet), or the stall window passes; how many should have one and how
    /// many do.
    async fn sessions_opened(&self, plan: &PolicyPlan, members: &[PolicyCandidate]) -> Sessions {
        let waiting: Vec<&str> = members
            .iter()
            .filter(|c| {
                c.moves
                    .iter()
                    .any(|m| !m.forged && !m.lost && plan.is_gated(&m.to))
            })
            .map(|c| c.candidate.as_str())
            .collect();
        let opened = || {
            waiting
                .iter()
                .filter(|c| !self.vendor.sessions(Some(c)).is_empty())
                .count()
        };
        let give_up = Instant::now() + self.drain.stall;
        while Instant::now() < give_up && opened() < waiting.len() {
            tokio::time::sleep(POLL).await;
        }
        Sessions {
            should_open: waiting.len(),
            opened: opened(),
        }
    }

    /// `POST /jobs/reconcile` on the integration, logged with its answer.
    async fn reconcile(&self) {
        let url = format!("{}/jobs/reconcile", self.base_url);
        self.log.append(
            Actor::Harness,
            marks::RECONCILE,
            Entry::detail(json!({"url_path": "/jobs/reconcile"})),
        );
        let answer = self
            .client
            .post(&url)
            .timeout(self.drain.stall)
            .send()
            .await;
        let detail = match answer {
            Ok(response) => json!({"status": response.status().as_u16()}),
            Err(err) => json!({"error": err.to_string()}),
        };
        self.log
            .append(Actor::Harness, marks::RECONCILED, Entry::detail(detail));
    }
}

impl Responder {
    /// Answers one session: the candidate's next planned result after its profile's
    /// delay, then what follows it (a retake, a reviewer and a step-up session).
    async fn answer(&self, session: Session) {
        let Some(member) = self.plan.candidate(&session.ats_candidate_id) else {
            return;
        };
        // Which planned result the session gets: the candidate's own session (a
        // retake, a step-up) the second; the integration's the first for the first
        // gate and the last for a later one. A second session for the same one (a
        // duplicate the integration should not have opened) is abandoned, as a
        // candidate abandons a second link: it stays pending.
        let ordinal = if session.opened_by_candidate() {
            usize::from(member.results.len() >= 2)
        } else {
            let gates = lock(&self.gates_sent)
                .get(&member.candidate)
                .copied()
                .unwrap_or(0);
            if gates <= 1 {
                0
            } else {
                member.results.len().saturating_sub(1)
            }
        };
        if !lock(&self.answered).insert((member.candidate.clone(), ordinal)) {
            return;
        }
        let planned = self.result(member, ordinal);
        let driver = &self.driver;
        let delay = if member.profile == RiskProfile::Slow && ordinal == 0 {
            // Past the policy's verification target, on the run's clock.
            let target = self
                .plan
                .policy
                .slas
                .identity_verification_target_minutes
                .max(0.0);
            crate::protocol::scaled(
                Duration::from_secs_f64(target * 60.0 * 1.2),
                driver.time_scale,
            )
        } else {
            FAST_RESULT
        };
        tokio::time::sleep(delay).await;
        driver.vendor.complete_session(
            &session.session_id,
            &planned.result,
            Some(&member.risk_tier),
        );
        let mut payload = planned.payload.clone();
        if let Ok(path) = crate::contract::path::FieldPath::parse(&self.plan.session_field)
            && let Some((parent, leaf)) = path.parent_mut(&mut payload)
        {
            parent.insert(leaf.to_owned(), json!(session.session_id));
        }
        let key = driver
            .envelope
            .idempotency_key_of(&payload)
            .map(str::to_owned);
        driver.log.append(
            Actor::Harness,
            marks::RESULT,
            Entry {
                candidate: Some(member.candidate.clone()),
                correlation_id: Some(member.correlation_id.clone()),
                event_id: Some(planned.event_id.clone()),
                ..Entry::detail(json!({
                    "session_id": session.session_id,
                    "result": planned.result,
                    "risk_tier": member.risk_tier,
                    "signals": planned.signal.iter().collect::<Vec<_>>(),
                    "event_id": planned.event_id,
                    "delivered": !planned.lost,
                }))
            },
        );
        if !planned.lost
            && let Ok(url) = format!("{}/webhooks/vendor", driver.base_url).parse::<url::Url>()
        {
            let mut delivery = Delivery::json(
                format!("msg_{}", planned.event_id),
                self.plan.result_contract.as_str(),
                &payload,
            );
            delivery.candidate = Some(member.candidate.clone());
            delivery.correlation_id = Some(member.correlation_id.clone());
            delivery.event_id = Some(planned.event_id.clone());
            delivery.idempotency_key = key;
            driver
                .vendor_sender
                .deliver(&url, &delivery, &Perturbation::None)
                .await;
        }
        match planned.result.as_str() {
            "failed" if member.profile == RiskProfile::Retake && ordinal == 0 => {
                driver
                    .vendor
                    .open_for_candidate(&member.candidate, &member.correlation_id);
            }
            // The step-up verification the reviewer asks for, once they resolved the item.
            "review_required" if !planned.lost && self.resolve_exception(member).await => {
                driver
                    .vendor
                    .open_for_candidate(&member.candidate, &member.correlation_id);
            }
            _ => {}
        }
    }

    /// The candidate's result for its `ordinal`-th session: the planned one, or a
    /// fresh `passed` (new event id and key) past the plan.
    fn result(&self, member: &PolicyCandidate, ordinal: usize) -> PlannedResult {
        if let Some(planned) = member.results.get(ordinal) {
            return planned.clone();
        }
        let envelope = &self.driver.envelope;
        let template = member.results.last().cloned();
        let mut payload = template.map(|t| t.payload).unwrap_or_else(|| json!({}));
        let event_id = format!("evt_{}_s{ordinal}", member.candidate);
        for (path, value) in [
            (&envelope.event_id, json!(event_id)),
            (
                &envelope.idempotency_key,
                json!(format!("idk_{}_s{ordinal}", member.candidate)),
            ),
        ] {
            if let Some((parent, leaf)) = path.parent_mut(&mut payload) {
                parent.insert(leaf.to_owned(), value);
            }
        }
        if let Ok(path) = crate::contract::path::FieldPath::parse(&self.plan.result_field)
            && let Some((parent, leaf)) = path.parent_mut(&mut payload)
        {
            parent.insert(leaf.to_owned(), json!("passed"));
            parent.remove("signals");
        }
        PlannedResult {
            result: "passed".to_owned(),
            signal: None,
            lost: member.results.is_empty(),
            event_id,
            payload,
        }
    }

    /// Waits for the candidate's open exception item and resolves it as a reviewer
    /// would; `false` if none came within the stall window.
    async fn resolve_exception(&self, member: &PolicyCandidate) -> bool {
        let driver = &self.driver;
        let give_up = Instant::now() + driver.drain.stall;
        while Instant::now() < give_up {
            let open = driver.ats.exceptions().into_iter().find(|item| {
                item.ats_candidate_id == member.candidate
                    && item.status == crate::mock::ats::ExceptionStatus::Open
            });
            if let Some(item) = open {
                return driver
                    .ats
                    .resolve_exception(&item.id, "identity confirmed on a video call")
                    .is_some();
            }
            tokio::time::sleep(POLL).await;
        }
        false
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The delivery perturbation a plan names.
fn perturbation(name: &str) -> Perturbation {
    match name {
        "exact_duplicate" => Perturbation::ExactDuplicate { copies: 1 },
        "re_emit" => Perturbation::ReEmit,
        "concurrent_duplicates" => Perturbation::ConcurrentDuplicates { copies: 2 },
        "unsigned" => Perturbation::Unsigned,
        "wrong_signature" => Perturbation::WrongSignature,
        "stale_timestamp" => Perturbation::StaleTimestamp,
        _ => Perturbation::None,
    }
}
