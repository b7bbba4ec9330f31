//! The mock verification vendor (docs/integration-protocol.md §4): verification sessions
//! and the evidence packs that events' `evidence_pack.url` point to.
//!
//! Sessions the integration opens are recorded and announced on a channel, so the
//! harness can answer each one with the webhook its candidate's profile calls for.
//! Evidence packs are registered by the harness when it synthesises events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::packs::Packs;
use super::{error, log_exchange, require_bearer};
use crate::observe::{Actor, Entry, ObservationLog, format_time};
use crate::sandbox::model::EvidencePack;

/// Where a verification session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Opened; the outcome webhook has not been sent.
    Pending,
    /// The outcome is known.
    Completed,
}

/// One verification session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id.
    pub session_id: String,
    /// The candidate.
    pub ats_candidate_id: String,
    /// The flow's correlation id.
    pub correlation_id: String,
    /// Where it stands.
    pub status: SessionStatus,
    /// The outcome, once completed (`passed`, `failed`, `review_required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The candidate's risk tier as the vendor assessed it, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_tier: Option<String>,
    /// When it was opened.
    pub created_at: String,
    /// Who opened it: `integration`, or `candidate` (a retake, a step-up, an old
    /// invitation). Not part of the API's answers.
    #[serde(skip)]
    pub opened_by: &'static str,
}

impl Session {
    /// Whether the candidate opened it, not the integration.
    pub fn opened_by_candidate(&self) -> bool {
        self.opened_by == "candidate"
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenSession {
    ats_candidate_id: String,
    correlation_id: String,
}

/// The mock vendor's state.
#[derive(Debug)]
pub struct VendorState {
    token: Arc<str>,
    log: ObservationLog,
    id_prefix: u64,
    next_session: AtomicU64,
    sessions: Mutex<HashMap<String, Session>>,
    /// A run registers one pack per event and holds them all while it drives.
    packs: Mutex<Packs>,
    opened: broadcast::Sender<Session>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl VendorState {
    /// A vendor with no sessions; session ids derive from `seed`.
    pub fn new(token: &str, seed: u64, log: ObservationLog) -> Self {
        let (opened, _) = broadcast::channel(1024);
        VendorState {
            token: Arc::from(token),
            log,
            id_prefix: super::mix(seed, 4) & 0xffff_ffff,
            next_session: AtomicU64::new(1),
            sessions: Mutex::new(HashMap::new()),
            packs: Mutex::new(Packs::default()),
            opened,
        }
    }

    /// Makes a pack resolvable at `GET /v1/evidence-packs/{id}`.
    pub fn register_pack(&self, pack: EvidencePack) {
        lock(&self.packs).insert(pack);
    }

    /// Records a session the harness opened itself (sandbox flows start with one).
    pub fn register_session(&self, session: Session) {
        lock(&self.sessions).insert(session.session_id.clone(), session);
    }

    /// Marks a session completed with its outcome (and the risk tier the vendor
    /// assessed); `false` if it does not exist.
    pub fn complete_session(
        &self,
        session_id: &str,
        result: &str,
        risk_tier: Option<&str>,
    ) -> bool {
        match lock(&self.sessions).get_mut(session_id) {
            Some(session) => {
                session.status = SessionStatus::Completed;
                session.result = Some(result.to_owned());
                session.risk_tier = risk_tier.map(str::to_owned);
                true
            }
            None => false,
        }
    }

    /// Opens a session on the candidate's own initiative (a retake through the
    /// vendor's hosted link, an old invitation): the integration did not ask for it.
    pub fn open_for_candidate(&self, ats_candidate_id: &str, correlation_id: &str) -> Session {
        self.open(
            ats_candidate_id.to_owned(),
            correlation_id.to_owned(),
            "candidate",
        )
    }

    /// Creates, records, logs and announces a session; `by` says who opened it.
    fn open(&self, ats_candidate_id: String, correlation_id: String, by: &'static str) -> Session {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            session_id: format!("ses_{:08x}{n:06}", self.id_prefix),
            ats_candidate_id,
            correlation_id,
            status: SessionStatus::Pending,
            result: None,
            risk_tier: None,
            created_at: format_time(chrono::Utc::now()),
            opened_by: by,
        };
        self.register_session(session.clone());
        self.log.append(
            Actor::Vendor,
            "vendor.session_opened",
            Entry {
                candidate: Some(session.ats_candidate_id.clone()),
                correlation_id: Some(session.correlation_id.clone()),
                ..Entry::detail(json!({"session_id": session.session_id, "opened_by": by}))
            },
        );
        // Nobody listening is fine: outside a run, sessions simply stay pending.
        let _ = self.opened.send(session.clone());
        session
    }

    /// Every session of one candidate (or of all), in id order.
    pub fn sessions(&self, ats_candidate_id: Option<&str>) -> Vec<Session> {
        let mut sessions: Vec<Session> = lock(&self.sessions)
            .values()
            .filter(|s| ats_candidate_id.is_none_or(|id| s.ats_candidate_id == id))
            .cloned()
            .collect();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        sessions
    }

    /// A session by id.
    pub fn session(&self, session_id: &str) -> Option<Session> {
        lock(&self.sessions).get(session_id).cloned()
    }

    /// Sessions the integration opens from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Session> {
        self.opened.subscribe()
    }

    /// The whole state as JSON, for dumps.
    pub fn snapshot(&self) -> Value {
        let mut sessions: Vec<Session> = lock(&self.sessions).values().cloned().collect();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        let mut packs: Vec<String> = lock(&self.packs).ids().map(str::to_owned).collect();
        packs.sort();
        json!({"sessions": sessions, "evidence_packs": packs})
    }
}

/// The mock vendor's routes, layered with logging and authentication.
pub fn router(state: Arc<VendorState>) -> Router {
    Router::new()
        .route("/v1/verifications", post(open_session).get(list_sessions))
        .route("/v1/verifications/{session_id}", get(get_session))
        .route("/v1/evidence-packs/{id}", get(get_pack))
        .fallback(super::no_such_route)
        .layer(from_fn_with_state(Arc::clone(&state.token), require_bearer))
        .layer(from_fn_with_state(
            (state.log.clone(), Actor::Vendor),
            log_exchange,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::limits::REQUEST_BODY_BYTES.as_usize(),
        ))
        .layer(axum::middleware::from_fn(super::json_errors))
        .with_state(state)
}

async fn open_session(State(state): State<Arc<VendorState>>, body: Bytes) -> Response {
    let request: OpenSession = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid verification request",
                json!({"detail": err.to_string(), "expected": {"ats_candidate_id": "string", "correlation_id": "string"}}),
            );
        }
    };
    let session = state.open(
        request.ats_candidate_id,
        request.correlation_id,
        "integration",
    );
    (StatusCode::CREATED, axum::Json(session)).into_response()
}

/// `GET /v1/verifications?ats_candidate_id=`: the query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    ats_candidate_id: Option<String>,
}

async fn list_sessions(
    State(state): State<Arc<VendorState>>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(axum::extract::Query(query)) => {
            axum::Json(json!({"sessions": state.sessions(query.ats_candidate_id.as_deref())}))
                .into_response()
        }
        Err(err) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid query",
            json!({"detail": err.body_text(), "expected": {"ats_candidate_id": "string (optional)"}}),
        ),
    }
}

async fn get_session(
    State(state): State<Arc<VendorState>>,
    Path(session_id): Path<String>,
) -> Response {
    match state.session(&session_id) {
        Some(session) => axum::Json(session).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown verification session",
            json!({"session_id": session_id}),
        ),
    }
}

async fn get_pack(State(state): State<Arc<VendorState>>, Path(id): Path<String>) -> Response {
    let pack = lock(&state.packs).get(&id);
    match pack {
        Some(pack) => axum::Json(pack).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown evidence pack",
            json!({"id": id}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;

    fn vendor() -> (Arc<VendorState>, Router) {
        let log = ObservationLog::to_writer(Box::new(std::io::sink()), "test");
        let state = Arc::new(VendorState::new("vtok", 9, log));
        (Arc::clone(&state), router(state))
    }

    async fn call(
        router: &Router,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, "Bearer vtok")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        let response = router.clone().oneshot(req).await.expect("answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn sessions_open_are_announced_and_readable() {
        let (state, router) = vendor();
        let mut opened = state.subscribe();
        let (status, body) = call(
            &router,
            "POST",
            "/v1/verifications",
            Some(json!({"ats_candidate_id": "CAND_1", "correlation_id": "c1"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = body["session_id"]
            .as_str()
            .expect("a session id")
            .to_owned();
        assert_eq!(opened.try_recv().expect("announced").session_id, id);
        assert!(state.complete_session(&id, "passed", Some("low")));
        let (status, body) = call(&router, "GET", &format!("/v1/verifications/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (body["status"].as_str(), body["result"].as_str()),
            (Some("completed"), Some("passed"))
        );
        let (status, _) = call(
            &router,
            "POST",
            "/v1/verifications",
            Some(json!({"ats_candidate_id": "CAND_1"})),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "correlation_id is required"
        );
    }

    #[tokio::test]
    async fn evidence_packs_resolve_once_registered() {
        let (state, router) = vendor();
        let (status, _) = call(&router, "GET", "/v1/evidence-packs/ep_1", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let pack = EvidencePack {
            id: "ep_1".into(),
            ats_candidate_id: "CAND_1".into(),
            session_id: "ses_1".into(),
            result: "passed".into(),
            checks: vec![crate::sandbox::model::EvidenceCheck {
                name: "document".into(),
                outcome: "passed".into(),
            }],
            digest: "00".into(),
        };
        state.register_pack(pack.clone());
        // The answer is byte for byte what serving the pack itself as JSON gives.
        let expected = axum::Json(pack).into_response();
        let req = Request::builder()
            .uri("/v1/evidence-packs/ep_1")
            .header(header::AUTHORIZATION, "Bearer vtok")
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(req).await.expect("answers");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            expected.headers().get(header::CONTENT_TYPE)
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let expected = axum::body::to_bytes(expected.into_body(), 1 << 20)
            .await
            .expect("body");
        assert_eq!(body, expected);
        assert!(body.starts_with(br#"{"id":"ep_1""#), "{body:?}");
    }

    #[tokio::test]
    async fn the_vendor_token_is_required() {
        let (_, router) = vendor();
        let req = Request::builder()
            .uri("/v1/evidence-packs/ep_1")
            .body(Body::empty())
            .expect("request");
        let response = router.oneshot(req).await.expect("answers");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
