//! The world the integration under test lives in: a mock ATS, a mock verification
//! vendor and a notification sink, each an axum router on its own loopback listener.
//!
//! Every mock is built by a router factory over shared state, so tests can drive it
//! with `tower::ServiceExt::oneshot` and no sockets; [`Mocks::start`] binds all three
//! (port 0 unless fixed). Every request and its answer is appended to the run's
//! [`ObservationLog`]; the mocks never judge anything themselves — the checks read
//! the log afterwards.
//!
//! Layers, outermost first: JSON errors → exchange logging → fault injection (ATS
//! only) → bearer authentication → the handler. The ATS, the one mock under load,
//! runs them as one hand-written service (`ats::AtsLayers`); the others as
//! `from_fn` layers.

pub mod ats;
pub mod faults;
pub mod notify;
mod packs;
pub mod vendor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use crate::http::{BindError, RunningServer};
use crate::manifest::Manifest;
use crate::observe::{Actor, Exchange, ObservationLog};
use crate::sandbox::model::SandboxCandidate;

/// Logs every exchange a mock answers: method, path, status, latency.
///
/// This runs on every request of a load test, so it copies only the three headers
/// it records, not the whole header map, builds no `detail` tree (an [`Exchange`]),
/// and the record itself is serialised, hashed and written off the request path
/// (see [`ObservationLog`]).
async fn log_exchange(
    State((log, actor)): State<(ObservationLog, Actor)>,
    request: Request,
    next: Next,
) -> Response {
    logged(&log, actor, request, |request| next.run(request)).await
}

/// [`log_exchange`] as a function around `inner`, for a mock that runs its layers as one.
async fn logged<F, Fut>(log: &ObservationLog, actor: Actor, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers();
    // Named by `HeaderName`s, not strings, which `get` would parse on every request.
    let header_text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let idempotency_key = header_text(&IDEMPOTENCY_KEY);
    let if_match = header_text(&header::IF_MATCH);
    let authorized = headers.contains_key(header::AUTHORIZATION);
    let response = inner(request).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let exchange = Exchange {
        candidate: candidate_span(&path),
        idempotency_key,
        status: response.status().as_u16(),
        latency_ms,
        method,
        path,
        if_match,
        authorized,
    };
    log.append_exchange(actor, request_kind(actor), exchange);
    response
}

/// The `Idempotency-Key` request header.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The kind of a mock's exchange record (`ats.request`, …).
fn request_kind(actor: Actor) -> &'static str {
    match actor {
        Actor::Ats => "ats.request",
        Actor::Vendor => "vendor.request",
        Actor::Notify => "notify.request",
        Actor::Sender => "sender.request",
        Actor::Harness => "harness.request",
        Actor::Integration => "integration.request",
    }
}

/// Where the candidate id in `/v1/candidates/{id}/…` is, if the path has one.
fn candidate_span(path: &str) -> Option<std::ops::Range<usize>> {
    const PREFIX: &str = "/v1/candidates/";
    let rest = path.strip_prefix(PREFIX)?;
    let len = rest.find('/').unwrap_or(rest.len());
    (len > 0).then_some(PREFIX.len()..PREFIX.len() + len)
}

/// Refuses requests without `Authorization: Bearer TOKEN`.
async fn require_bearer(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    authorized(&token, request, |request| next.run(request)).await
}

/// [`require_bearer`] as a function around `inner`, for a mock that runs its layers as one.
async fn authorized<F, Fut>(token: &str, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if bearer_matches(request.headers(), token) {
        inner(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
            json!({"expected": "Authorization: Bearer <token>"}),
        )
    }
}

/// Whether the request carries exactly one `Authorization: Bearer TOKEN` with this
/// token. The scheme is case-insensitive (RFC 9110 §11.1); two `Authorization`
/// headers are refused rather than letting the first decide.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let presented = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            rest.trim_start_matches(' ')
        }
        _ => "",
    };
    // Tokens are sandbox secrets; compare without early exit anyway, as a real API would.
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Makes every error answer JSON, as the OpenAPI document says: axum's own answers
/// (413 for a body over [`crate::limits::REQUEST_BODY_BYTES`], 405, 400) come as text
/// or empty. Headers such as `Allow` are kept.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    as_json_error(next.run(request).await).await
}

/// [`json_errors`] on one response: an error that is not JSON becomes
/// `{"error": message}`; anything else is returned as is.
pub(crate) async fn as_json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "the body is larger than {}",
            crate::limits::REQUEST_BODY_BYTES
        )
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(
        parts,
        axum::body::Body::from(json!({"error": message}).to_string()),
    )
}

/// The answer for a path no operation has.
pub(crate) async fn no_such_route(request: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route",
        json!({"method": request.method().as_str(), "path": request.uri().path()}),
    )
}

/// A JSON error body: `{"error": message, …detail}`.
fn error(status: StatusCode, message: &str, detail: serde_json::Value) -> Response {
    let mut body = json!({"error": message});
    if let (Some(map), serde_json::Value::Object(extra)) = (body.as_object_mut(), detail) {
        map.extend(extra);
    }
    (status, axum::Json(body)).into_response()
}

/// Addresses and credentials of the three mocks.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Where the mock ATS listens (port 0: any free port).
    pub ats_addr: SocketAddr,
    /// Where the mock vendor listens.
    pub vendor_addr: SocketAddr,
    /// Where the notification sink listens.
    pub notify_addr: SocketAddr,
    /// The bearer token the integration must send to the ATS.
    pub ats_token: String,
    /// The bearer token the integration must send to the vendor.
    pub vendor_token: String,
    /// The seed for fault rates and vendor ids.
    pub seed: u64,
}

impl MockConfig {
    /// Loopback on free ports, with tokens derived from the seed.
    pub fn loopback(seed: u64) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        MockConfig {
            ats_addr: any,
            vendor_addr: any,
            notify_addr: any,
            ats_token: format!("ats_{:016x}", mix(seed, 1)),
            vendor_token: format!("vnd_{:016x}", mix(seed, 2)),
            seed,
        }
    }
}

/// A deterministic 64-bit mix of a seed and a stream number (SplitMix64).
pub(crate) fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed.wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The three mocks, running.
#[derive(Debug)]
pub struct Mocks {
    /// The mock ATS's state.
    pub ats: Arc<ats::AtsState>,
    /// The mock vendor's state.
    pub vendor: Arc<vendor::VendorState>,
    /// The notification sink's state.
    pub notify: Arc<notify::NotifyState>,
    servers: Vec<RunningServer>,
    urls: [String; 3],
}

impl Mocks {
    /// Seeds the mocks with the sandbox's candidates and binds them.
    pub async fn start(
        manifest: Arc<Manifest>,
        candidates: &[SandboxCandidate],
        config: &MockConfig,
        log: &ObservationLog,
    ) -> Result<Mocks, BindError> {
        let ats = Arc::new(ats::AtsState::new(
            manifest,
            candidates,
            &config.ats_token,
            config.seed,
            log.clone(),
        ));
        let vendor = Arc::new(vendor::VendorState::new(
            &config.vendor_token,
            config.seed,
            log.clone(),
        ));
        let notify = Arc::new(notify::NotifyState::new(log.clone()));
        let ats_server =
            RunningServer::start(ats::router(Arc::clone(&ats)), config.ats_addr).await?;
        let vendor_server =
            RunningServer::start(vendor::router(Arc::clone(&vendor)), config.vendor_addr).await?;
        let notify_server =
            RunningServer::start(notify::router(Arc::clone(&notify)), config.notify_addr).await?;
        let urls = [ats_server.url(), vendor_server.url(), notify_server.url()];
        Ok(Mocks {
            ats,
            vendor,
            notify,
            servers: vec![ats_server, vendor_server, notify_server],
            urls,
        })
    }

    /// The mock ATS's base URL.
    pub fn ats_url(&self) -> &str {
        &self.urls[0]
    }

    /// The mock vendor's base URL.
    pub fn vendor_url(&self) -> &str {
        &self.urls[1]
    }

    /// The notification sink's base URL.
    pub fn notify_url(&self) -> &str {
        &self.urls[2]
    }

    /// Stops all three, letting requests in flight finish.
    pub async fn shutdown(self) {
        for server in self.servers {
            server.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_kinds_are_the_actor_prefix_dot_request() {
        let actors = [
            Actor::Ats,
            Actor::Vendor,
            Actor::Notify,
            Actor::Sender,
            Actor::Harness,
            Actor::Integration,
        ];
        for actor in actors {
            let prefix = faults::actor_prefix(actor);
            assert_eq!(request_kind(actor), format!("{prefix}.request"));
        }
    }

    #[test]
    fn candidate_ids_are_read_from_candidate_paths_only() {
        let candidate_in_path = |path: &'static str| candidate_span(path).map(|span| &path[span]);
        // (path, candidate, why)
        let rows = [
            (
                "/v1/candidates/CAND_1/events",
                Some("CAND_1"),
                "a sub-resource",
            ),
            ("/v1/candidates/CAND_1", Some("CAND_1"), "the record"),
            ("/v1/candidates/Zoë/x", Some("Zoë"), "non-ASCII"),
            ("/v1/candidates/", None, "no id"),
            ("/v1/candidates//events", None, "an empty id"),
            ("/v1/candidates", None, "the list"),
            ("/v1/exceptions", None, "another resource"),
        ];
        for (path, candidate, why) in rows {
            assert_eq!(candidate_in_path(path), candidate, "{why}");
        }
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "t0k"), "no header");
        headers.insert(
            header::AUTHORIZATION,
            "Bearer t0k".parse().expect("valid header"),
        );
        assert!(bearer_matches(&headers, "t0k"));
        assert!(!bearer_matches(&headers, "t0k2"), "prefix of the token");
        headers.insert(
            header::AUTHORIZATION,
            "Basic t0k".parse().expect("valid header"),
        );
        assert!(!bearer_matches(&headers, "t0k"), "other scheme");
        // (header values, accepted, why)
        let rows: [(&[&str], bool, &str); 5] = [
            (&["bearer t0k"], true, "the scheme is case-insensitive"),
            (&["BEARER t0k"], true, "in any case"),
            (&["Bearer  t0k"], true, "more than one space"),
            (&["Bearer t0k", "Bearer t0k"], false, "two headers: refused"),
            (
                &["Bearer wrong", "Bearer t0k"],
                false,
                "the first does not decide",
            ),
        ];
        for (values, accepted, why) in rows {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::AUTHORIZATION, value.parse().expect("valid header"));
            }
            assert_eq!(bearer_matches(&headers, "t0k"), accepted, "{why}");
        }
    }

    #[test]
    fn tokens_are_reproducible_from_the_seed() {
        assert_eq!(
            MockConfig::loopback(3).ats_token,
            MockConfig::loopback(3).ats_token
        );
        assert_ne!(
            MockConfig::loopback(3).ats_token,
            MockConfig::loopback(4).ats_token
        );
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Fixtures shared by the mocks' router tests.

    use std::path::Path;
    use std::sync::Arc;

    use serde_json::{Value, json};

    use crate::manifest::{CandidateId, Manifest};
    use crate::sandbox::model::{Person, Requisition, RiskTier, Role, SandboxCandidate};

    /// The repository's release-gate manifest.
    pub(crate) fn manifest() -> Arc<Manifest> {
        let text = include_str!("../../manifests/release-gate.yaml");
        Arc::new(
            Manifest::from_text(Path::new("manifests/release-gate.yaml"), text)
                .expect("the seed loads")
                .value,
        )
    }

    /// A canary candidate with fixed personal data.
    pub(crate) fn candidate(id: &str) -> SandboxCandidate {
        SandboxCandidate {
            id: CandidateId(id.to_owned()),
            profile: "low-risk-fast-path".into(),
            risk_tier: RiskTier::Low,
            person: Person {
                name: "Zoë Ğürsoy".into(),
                email: "zoe.gursoy@example.test".into(),
                phone: "+1 555 0100".into(),
            },
            requisition: std::sync::Arc::new(Requisition {
                id: "REQ-1".into(),
                tags: vec!["canary-il".into()],
                location: "US".into(),
            }),
            expected_sequence: Vec::new().into(),
            role: Role::Seeded,
        }
    }

    /// An `identity.verification.completed` event that satisfies its contract.
    pub(crate) fn good_event(candidate: &str) -> Value {
        json!({
            "type": "identity.verification.completed",
            "event_id": "evt_1",
            "idempotency_key": "idk_1",
            "occurred_at": "2026-05-18T09:00:00Z",
            "correlation_id": "cor_1",
            "ats_candidate_id": candidate,
            "verification": {"session_id": "ses_1", "result": "passed", "risk_tier": "low"},
            "evidence_pack": {"url": "https://vendor.example/v1/evidence-packs/ep_1"}
        })
    }
}
