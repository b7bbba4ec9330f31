//! The relay's hiring-policy side (`STAGEGATE_POLICY`): stage changes from the ATS,
//! the identity gate, step-up exceptions and the reconciliation job, as
//! docs/integration-protocol.md §10 asks.
//!
//! Stage changes are deduplicated by the policy's `keyTemplate` in a SQLite table
//! whose keys expire after `ttlHours` (on the run's clock), committed before the
//! acknowledgement, so a redelivery after a restart is still recognised. A move into
//! a gated stage opens a verification session at once; the stage's resource is
//! granted only once a `passed` result for the candidate arrives and no exception
//! item of theirs is open. Grants and exception items are ATS calls retried briefly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::breaker::{Call, Phase};
use super::config::{RelayConfig, RelayPolicy};
use super::log::RelayLog;
use super::switch::KillSwitch;
use crate::run::policy::{ResultFields, render_key, resource_of, review_due};

/// Attempts of one ATS or vendor call before the relay gives up on it.
const CALL_ATTEMPTS: u32 = 6;

/// A candidate's gate as the relay tracks it.
#[derive(Debug, Default, Clone)]
struct Gate {
    /// The stage the latest stage change announced.
    stage: String,
    /// Gated stages entered and not granted yet.
    pending: Vec<String>,
    /// The flow's correlation id.
    correlation_id: String,
    /// The candidate's open exception item, if any.
    exception: Option<String>,
}

/// The policy side of a running relay.
pub(super) struct PolicySide {
    setup: Arc<RelayPolicy>,
    fields: Option<ResultFields>,
    db: Mutex<Connection>,
    http: reqwest::Client,
    config: RelayConfig,
    log: RelayLog,
    gates: Mutex<HashMap<String, Gate>>,
    deliveries: AtomicU64,
    /// The kill switch: ATS calls are its samples, and none is made while it is open.
    switch: Arc<KillSwitch>,
}

/// The longest the policy side waits for a tripped switch to close before calling anyway.
const SWITCH_PATIENCE: Duration = Duration::from_secs(120);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn now() -> String {
    crate::observe::format_time(chrono::Utc::now())
}

fn reject(status: StatusCode, reason: String) -> Response {
    (status, axum::Json(json!({"error": reason}))).into_response()
}

impl PolicySide {
    /// Opens the policy's store in the state folder.
    pub(super) fn open(
        config: &RelayConfig,
        setup: Arc<RelayPolicy>,
        log: RelayLog,
        switch: Arc<KillSwitch>,
    ) -> Result<PolicySide, super::store::StoreError> {
        let path = config.state_dir.join("relay-policy.sqlite3");
        let conn = Connection::open(&path)
            .and_then(|conn| {
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL;
                     CREATE TABLE IF NOT EXISTS stage_keys (
                         key TEXT PRIMARY KEY,
                         expires_at INTEGER NOT NULL
                     );
                     CREATE TABLE IF NOT EXISTS sessions (
                         session_id TEXT PRIMARY KEY,
                         candidate TEXT NOT NULL,
                         stage TEXT NOT NULL
                     );
                     CREATE TABLE IF NOT EXISTS reconciled (
                         candidate TEXT PRIMARY KEY,
                         item_id TEXT NOT NULL
                     );",
                )?;
                Ok(conn)
            })
            .map_err(|source| super::store::StoreError::new("opening the policy store", source))?;
        Ok(PolicySide {
            fields: crate::run::policy::result_fields(&config.manifest),
            setup,
            db: Mutex::new(conn),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            config: config.clone(),
            log,
            gates: Mutex::new(HashMap::new()),
            deliveries: AtomicU64::new(0),
            switch,
        })
    }

    fn has_fault(&self, name: &str) -> bool {
        self.config.has_fault(name)
    }

    /// `POST /webhooks/ats`: verify, dedupe durably, acknowledge; a move into a
    /// gated stage opens a verification session in the background.
    pub(super) async fn stage_change(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let received_at = now();
        let verify = self
            .setup
            .policy
            .ats_events
            .first()
            .is_none_or(|e| e.delivery.verify_signature);
        if verify
            && !self.has_fault("no_ats_signature_check")
            && let Some(response) = super::unverified(&self.config.ats_secret, headers, body)
        {
            return response;
        }
        let event = match super::json_object(body) {
            Ok(event) => event,
            Err(why) => return reject(StatusCode::BAD_REQUEST, why),
        };
        let name = event
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(spec) = self.setup.policy.ats_events.iter().find(|e| e.name == name) else {
            return reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("`name` {name:?} is no event of the hiring policy"),
            );
        };
        let missing: Vec<&str> = spec
            .required_fields
            .iter()
            .filter(|f| event.get(f.as_str()).is_none_or(Value::is_null))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("missing required fields: {}", missing.join(", ")),
            );
        }
        let text = |field: &str| {
            event
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let key = render_key(&spec.idempotency.key_template, &spec.name, &event);
        let stored_key = if self.has_fault("no_stage_dedupe") {
            // Deliberate defect: every delivery looks new.
            format!("{key}#{}", self.deliveries.fetch_add(1, Ordering::Relaxed))
        } else {
            key.clone()
        };
        let ttl = crate::protocol::scaled(
            Duration::from_secs(u64::from(spec.idempotency.ttl_hours) * 3600),
            self.config.time_scale,
        );
        let fresh = {
            let side = Arc::clone(self);
            tokio::task::spawn_blocking(move || side.remember(&stored_key, ttl)).await
        };
        let fresh = match fresh {
            Ok(Ok(fresh)) => fresh,
            Ok(Err(err)) => return reject(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
            Err(_) => {
                return reject(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store task failed".into(),
                );
            }
        };
        let candidate = text("candidateId");
        let to = text("toStage");
        let gated = crate::run::policy::is_gated(&self.setup.policy, &to);
        let outcome = match (fresh, gated) {
            (false, _) => "duplicate",
            (true, true) => "verification_requested",
            (true, false) => "recorded",
        };
        let correlation_id = event
            .get("correlationId")
            .and_then(Value::as_str)
            .map_or_else(|| format!("cor_{candidate}"), str::to_owned);
        if fresh {
            // Every candidate a stage change announced is in the hiring flow.
            let mut gates = lock(&self.gates);
            let gate = gates.entry(candidate.clone()).or_default();
            gate.correlation_id = correlation_id.clone();
            gate.stage = to.clone();
            if gated && !gate.pending.contains(&to) {
                gate.pending.push(to.clone());
            }
        }
        if fresh && gated {
            let side = Arc::clone(self);
            tokio::spawn(async move { side.fan_out(candidate, to, correlation_id).await });
        }
        self.log_processed(
            &text("eventId"),
            &text("candidateId"),
            name,
            &text("occurredAt"),
            &received_at,
            &text("actorId"),
            &key,
            outcome,
            None,
        );
        (StatusCode::OK, axum::Json(json!({"status": outcome}))).into_response()
    }

    /// Records a stage-change key; `true` if it was not seen within its TTL.
    fn remember(&self, key: &str, ttl: Duration) -> Result<bool, super::store::StoreError> {
        let conn = lock(&self.db);
        let now = chrono::Utc::now().timestamp_millis();
        let expires = now + ttl.as_millis() as i64;
        let context =
            |source| super::store::StoreError::new("recording a stage-change key", source);
        conn.execute("DELETE FROM stage_keys WHERE expires_at < ?1", params![now])
            .map_err(context)?;
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO stage_keys (key, expires_at) VALUES (?1, ?2)",
                params![key, expires],
            )
            .map_err(context)?;
        Ok(inserted == 1)
    }

    /// Waits until the kill switch is closed (at most [`SWITCH_PATIENCE`]).
    async fn until_closed(&self) {
        let give_up = tokio::time::Instant::now() + SWITCH_PATIENCE;
        while self.switch.phase() != Phase::Closed && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens the verification session a gated move calls for.
    async fn fan_out(self: Arc<Self>, candidate: String, stage: String, correlation_id: String) {
        let pause = self.config.manifest.pauses_candidate_gates();
        if pause || self.has_fault("pause_gates") {
            // `pause_candidate_gates: true` (or the deliberate defect `pause_gates`):
            // no candidate-facing call while the switch is open.
            self.until_closed().await;
        }
        if self.has_fault("slow_fanout") {
            // Deliberate defect: the session opens after the policy's fan-out SLA.
            let sla =
                Duration::from_secs_f64(self.setup.policy.slas.trigger_fanout_seconds.max(0.0));
            tokio::time::sleep(
                crate::protocol::scaled(sla, self.config.time_scale) + Duration::from_millis(500),
            )
            .await;
        }
        let url = format!("{}/v1/verifications", self.config.vendor_url);
        let body = json!({"ats_candidate_id": candidate, "correlation_id": correlation_id});
        let Some(session) = self.call(&url, &self.config.vendor_token, &body).await else {
            self.log.note(
                "verification session not opened",
                json!({"candidateId": candidate, "stage": stage}),
            );
            return;
        };
        let session_id = session
            .get("session_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        {
            let conn = lock(&self.db);
            let _ = conn.execute(
                "INSERT OR IGNORE INTO sessions (session_id, candidate, stage) VALUES (?1, ?2, ?3)",
                params![session_id, candidate, stage],
            );
        }
        self.log.note(
            "verification session opened",
            json!({"candidateId": candidate, "stage": stage, "sessionId": session_id}),
        );
        if self.has_fault("grant_before_result") {
            // Deliberate defect: access before identity.
            self.grant_pending(&candidate).await;
        }
    }

    /// A verification result the relay accepted from the vendor (new, not a
    /// duplicate): grant, file an exception, or hold.
    pub(super) fn result(self: &Arc<Self>, event: &Value, received_at: &str) {
        let Some(fields) = &self.fields else {
            return;
        };
        if event.get("type").and_then(Value::as_str) != Some(fields.contract.as_str()) {
            return;
        }
        let envelope = &self.config.manifest.envelope;
        let text = |path: &crate::contract::path::FieldPath| {
            path.lookup(event)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let candidate = text(&envelope.candidate_id);
        // Only candidates in the hiring flow (a stage change reached the relay) are
        // gated; the release gate's own results are the worker's alone.
        if !lock(&self.gates).contains_key(&candidate) {
            return;
        }
        let result = text(&fields.result);
        let risk = fields.risk_tier.as_ref().map(text).unwrap_or_default();
        let signals: Vec<String> = crate::contract::path::FieldPath::parse(&format!(
            "{}signals",
            fields
                .result
                .as_str()
                .rsplit_once('.')
                .map_or(String::new(), |(parent, _)| format!("{parent}."))
        ))
        .ok()
        .and_then(|path| path.lookup(event).cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
        let line = ResultLine {
            event_id: text(&envelope.event_id),
            candidate: candidate.clone(),
            event_name: fields.contract.as_str().to_owned(),
            occurred_at: text(&envelope.occurred_at),
            received_at: received_at.to_owned(),
            key: text(&envelope.idempotency_key),
            evidence: event
                .pointer("/evidence_pack/url")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| Some(text(&fields.session))),
            session_id: text(&fields.session),
        };
        let side = Arc::clone(self);
        tokio::spawn(async move { side.decide(line, result, risk, signals).await });
    }

    async fn decide(
        self: Arc<Self>,
        line: ResultLine,
        result: String,
        risk: String,
        signals: Vec<String>,
    ) {
        let policy = &self.setup.policy;
        let step_up = policy.controls.step_up_verification.enabled
            && signals
                .iter()
                .any(|s| policy.controls.step_up_verification.triggers.contains(s));
        let candidate = line.candidate.clone();
        let high_risk = risk == "high";
        let outcome = if result == "review_required" || step_up {
            if self.has_fault("no_step_up_exception") {
                "review_ignored"
            } else {
                let reason = signals
                    .first()
                    .map_or_else(|| format!("step-up: {result}"), |s| format!("step-up: {s}"));
                // Deliberate defect `wrong_exception_owner`: the roles swapped.
                let swap = self.has_fault("wrong_exception_owner");
                let item = self
                    .file_exception(&candidate, &reason, high_risk, Some(&line.session_id), swap)
                    .await;
                let mut gates = lock(&self.gates);
                gates.entry(candidate.clone()).or_default().exception = item;
                "exception_filed"
            }
        } else if result == "passed" {
            if self.exception_open(&candidate).await {
                "held_for_review"
            } else if self.grant_pending(&candidate).await {
                "granted"
            } else {
                "verified"
            }
        } else if result == "failed" && self.has_fault("grant_on_failed") {
            // Deliberate defect: a failed verification opens the gate anyway.
            self.grant_pending(&candidate).await;
            "granted"
        } else {
            "denied"
        };
        self.log_processed(
            &line.event_id,
            &candidate,
            &line.event_name,
            &line.occurred_at,
            &line.received_at,
            "vendor",
            &line.key,
            outcome,
            line.evidence.as_deref(),
        );
    }

    /// Whether the candidate's exception item is still open at the ATS.
    async fn exception_open(&self, candidate: &str) -> bool {
        let item = lock(&self.gates)
            .get(candidate)
            .and_then(|g| g.exception.clone());
        let Some(item) = item else {
            return false;
        };
        let url = format!("{}/v1/exceptions/{item}", self.config.ats_url);
        let answer = self.ats_get(&url).await;
        let open = match answer {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| {
                    v.get("status")
                        .and_then(Value::as_str)
                        .map(|s| s != "resolved")
                })
                .unwrap_or(true),
            // Unknown state: keep the gate shut.
            _ => true,
        };
        if !open && let Some(gate) = lock(&self.gates).get_mut(candidate) {
            gate.exception = None;
        }
        open
    }

    /// Grants every gated stage the candidate entered and was not granted yet;
    /// `true` if it granted something.
    async fn grant_pending(&self, candidate: &str) -> bool {
        let (pending, correlation_id) = match lock(&self.gates).get_mut(candidate) {
            Some(gate) => (
                std::mem::take(&mut gate.pending),
                gate.correlation_id.clone(),
            ),
            None => return false,
        };
        let mut granted = false;
        for stage in pending {
            let url = format!(
                "{}/v1/candidates/{candidate}/access-grants",
                self.config.ats_url
            );
            let body = json!({"resource": resource_of(&stage), "correlation_id": correlation_id});
            if self
                .call(&url, &self.config.ats_token, &body)
                .await
                .is_some()
            {
                granted = true;
                self.log.note(
                    "access granted",
                    json!({"candidateId": candidate, "stage": stage, "resource": resource_of(&stage)}),
                );
            }
        }
        granted
    }

    /// Files an exception item with the policy's owner and due time; its id.
    /// `swap_owner` gives it the other role (the `wrong_exception_owner` defect).
    async fn file_exception(
        &self,
        candidate: &str,
        reason: &str,
        high_risk: bool,
        session_id: Option<&str>,
        swap_owner: bool,
    ) -> Option<String> {
        let owners = &self.setup.policy.reconciliation.on_mismatch.assign_owner;
        let owner = if high_risk != swap_owner {
            &owners.high_risk
        } else {
            &owners.default
        };
        let due = review_due(&self.setup.policy, chrono::Utc::now(), high_risk);
        let correlation_id = lock(&self.gates)
            .get(candidate)
            .map(|g| g.correlation_id.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("cor_{candidate}"));
        let mut body = json!({
            "ats_candidate_id": candidate,
            "reason": reason,
            "owner": owner,
            "correlation_id": correlation_id,
            "due_at": crate::observe::format_time(due),
        });
        if let (Some(session), Some(map)) = (session_id, body.as_object_mut()) {
            map.insert("session_id".into(), json!(session));
        }
        let url = format!("{}/v1/exceptions", self.config.ats_url);
        let item = self.call(&url, &self.config.ats_token, &body).await?;
        item.get("id").and_then(Value::as_str).map(str::to_owned)
    }

    /// `POST /jobs/reconcile`: the ATS's stages against the vendor's sessions; every
    /// mismatch becomes one exception item.
    pub(super) async fn reconcile(self: &Arc<Self>) -> Response {
        let Some(stages) = self.ats_stages().await else {
            return reject(
                StatusCode::BAD_GATEWAY,
                "cannot list the ATS's candidates".into(),
            );
        };
        let url = format!("{}/v1/verifications", self.config.vendor_url);
        let sessions = match self
            .http
            .get(&url)
            .bearer_auth(&self.config.vendor_token)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("sessions").and_then(Value::as_array).cloned())
                .unwrap_or_default(),
            _ => {
                return reject(
                    StatusCode::BAD_GATEWAY,
                    "cannot list the vendor's sessions".into(),
                );
            }
        };
        let mut by_candidate: HashMap<&str, Vec<&Value>> = HashMap::new();
        for session in &sessions {
            if let Some(candidate) = session.get("ats_candidate_id").and_then(Value::as_str) {
                by_candidate.entry(candidate).or_default().push(session);
            }
        }
        let from_webhooks = self.has_fault("reconcile_from_webhooks");
        let mut mismatches = 0;
        for (candidate, ats_stage) in &stages {
            let stage = if from_webhooks {
                // Deliberate defect: the stage the webhooks told, not the ATS's, so a
                // lost stage change is never noticed.
                match lock(&self.gates).get(candidate) {
                    Some(gate) => gate.stage.clone(),
                    None => continue,
                }
            } else {
                ats_stage.clone()
            };
            let theirs = by_candidate
                .get(candidate.as_str())
                .map_or(&[][..], Vec::as_slice);
            let passed = theirs
                .iter()
                .any(|s| s.get("result").and_then(Value::as_str) == Some("passed"));
            let past_gate = self.at_or_past_gate(&stage);
            let reason = if past_gate && !passed {
                "reconciliation: gated stage without a passed verification"
            } else if !past_gate && !theirs.is_empty() {
                "reconciliation: verification without a gated stage"
            } else {
                continue;
            };
            mismatches += 1;
            let filed = lock(&self.db)
                .query_row(
                    "SELECT item_id FROM reconciled WHERE candidate = ?1",
                    params![candidate],
                    |row| row.get::<_, String>(0),
                )
                .optional()
                .ok()
                .flatten();
            if filed.is_some() {
                continue;
            }
            let high_risk = theirs
                .iter()
                .any(|s| s.get("risk_tier").and_then(Value::as_str) == Some("high"));
            if let Some(item) = self
                .file_exception(candidate, reason, high_risk, None, false)
                .await
            {
                let _ = lock(&self.db).execute(
                    "INSERT OR IGNORE INTO reconciled (candidate, item_id) VALUES (?1, ?2)",
                    params![candidate, item],
                );
            }
            self.log.note(
                "reconciliation mismatch",
                json!({"candidateId": candidate, "stage": stage, "reason": reason}),
            );
        }
        (
            StatusCode::OK,
            axum::Json(json!({"checked": stages.len(), "mismatches": mismatches})),
        )
            .into_response()
    }

    fn at_or_past_gate(&self, stage: &str) -> bool {
        let stages = &self.setup.stages;
        let policy = &self.setup.policy;
        let first = stages
            .iter()
            .position(|s| crate::run::policy::is_gated(policy, s));
        match (first, stages.iter().position(|s| s == stage)) {
            (Some(first), Some(at)) => at >= first,
            _ => crate::run::policy::is_gated(policy, stage),
        }
    }

    /// Every ATS candidate and its stage, page by page.
    async fn ats_stages(&self) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        loop {
            let url = format!(
                "{}/v1/candidates?offset={}&limit={}",
                self.config.ats_url,
                out.len(),
                crate::mock::ats::LIST_LIMIT
            );
            let page: Value = self.ats_get(&url).await.ok()?.json().await.ok()?;
            let candidates = page.get("candidates")?.as_array()?;
            for c in candidates {
                let id = c.get("ats_candidate_id")?.as_str()?.to_owned();
                let stage = c.get("stage")?.as_str()?.to_owned();
                out.push((id, stage));
            }
            let total = page.get("total").and_then(Value::as_u64).unwrap_or(0) as usize;
            if candidates.is_empty() || out.len() >= total {
                return Some(out);
            }
        }
    }

    /// A GET at the ATS, once the switch is closed, counted towards it.
    async fn ats_get(&self, url: &str) -> reqwest::Result<reqwest::Response> {
        self.until_closed().await;
        let answer = self
            .http
            .get(url)
            .bearer_auth(&self.config.ats_token)
            .send()
            .await;
        self.sample(url, answer.as_ref().map(|r| r.status()).ok());
        answer
    }

    /// Counts an ATS call towards the kill switch (vendor calls are not its business).
    fn sample(&self, url: &str, status: Option<StatusCode>) {
        if !url.starts_with(&self.config.ats_url) {
            return;
        }
        self.switch.record(match status {
            Some(status) if !status.is_server_error() => Call::Answered,
            _ => Call::Failed,
        });
    }

    /// A POST retried on 5xx and network errors; the answer's body on 2xx. ATS
    /// calls wait for a tripped switch to close and count towards it.
    async fn call(&self, url: &str, token: &str, body: &Value) -> Option<Value> {
        let mut wait = Duration::from_millis(100);
        let ats = url.starts_with(&self.config.ats_url);
        for _ in 0..CALL_ATTEMPTS {
            if ats {
                self.until_closed().await;
            }
            let answer = self
                .http
                .post(url)
                .bearer_auth(token)
                .json(body)
                .send()
                .await;
            self.sample(url, answer.as_ref().map(|r| r.status()).ok());
            match answer {
                Ok(response) if response.status().is_success() => {
                    return Some(response.json().await.unwrap_or(Value::Null));
                }
                Ok(response)
                    if response.status().is_client_error()
                        && response.status() != StatusCode::TOO_MANY_REQUESTS =>
                {
                    self.log.note(
                        "call refused",
                        json!({"url": url, "status": response.status().as_u16()}),
                    );
                    return None;
                }
                _ => {}
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        None
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the policy's mustLogFields, one each"
    )]
    fn log_processed(
        &self,
        event_id: &str,
        candidate: &str,
        event_name: &str,
        occurred_at: &str,
        received_at: &str,
        actor_id: &str,
        key: &str,
        outcome: &str,
        evidence: Option<&str>,
    ) {
        self.log.note(
            "policy event processed",
            json!({
                "eventId": event_id,
                "candidateId": candidate,
                "eventName": event_name,
                "occurredAt": occurred_at,
                "receivedAt": received_at,
                "processedAt": now(),
                "actorId": actor_id,
                "idempotencyKey": key,
                "signatureValid": true,
                "outcome": outcome,
                "evidencePackRef": evidence.unwrap_or("none"),
            }),
        );
    }
}

/// What a result's log line needs, taken from the event before it is decided.
struct ResultLine {
    event_id: String,
    candidate: String,
    event_name: String,
    occurred_at: String,
    received_at: String,
    key: String,
    evidence: Option<String>,
    session_id: String,
}
