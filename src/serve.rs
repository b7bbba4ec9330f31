//! `stagegate serve`: the sandbox for local pre-release work.
//!
//! The mocks run with the manifest's candidates until Ctrl-C; an admin API on its
//! own loopback port fires a candidate's sequence (with chosen perturbations) at any
//! webhook URL, sets the ATS's faults, and dumps the mocks' state and the
//! observation log. Nothing is judged here — that is `stagegate run`'s job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::delivery::{Delivery, Order, Perturbation, RetryPolicy, Sender, WebhookSecret};
use crate::manifest::Manifest;
use crate::manifest::model::CanaryScope;
use crate::mock::ats::Page;
use crate::mock::faults::FaultWindow;
use crate::mock::{MockConfig, Mocks, RunningServer};
use crate::observe::{Actor, Entry, ObservationLog};
use crate::sandbox::synth::{SynthConfig, Synthesizer};
use crate::sandbox::{Sandbox, SandboxCandidate, in_canary_scope};

/// How `serve` is set up.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    /// The seed of the sandbox.
    pub seed: u64,
    /// The mocks' addresses and tokens.
    pub mocks: MockConfig,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// Where the observation log is written.
    pub log_path: PathBuf,
    /// The candidates to serve, such as a dataset's ([`crate::sandbox::load_dataset`]);
    /// `None` builds the manifest's `sandbox_dataset` from `seed`.
    pub sandbox: Option<Sandbox>,
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The sandbox data could not be built.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// The log could not be created.
    #[error(transparent)]
    Log(#[from] crate::observe::LogError),
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] crate::http::BindError),
}

/// The running sandbox.
pub struct Served {
    /// The mocks.
    pub mocks: Mocks,
    admin: RunningServer,
    /// The vendor's webhook secret (`whsec_…`).
    pub vendor_secret: WebhookSecret,
    /// The ATS's webhook secret (`whsec_…`).
    pub ats_secret: WebhookSecret,
    /// The sandbox's candidates (shared with the admin API, never copied).
    pub sandbox: Arc<Sandbox>,
    log: ObservationLog,
}

struct Admin {
    manifest: Arc<Manifest>,
    sandbox: Arc<Sandbox>,
    mocks_ats: Arc<crate::mock::ats::AtsState>,
    mocks_vendor: Arc<crate::mock::vendor::VendorState>,
    mocks_notify: Arc<crate::mock::notify::NotifyState>,
    vendor_url: url::Url,
    sender: Sender,
    log: ObservationLog,
    log_path: PathBuf,
    seed: u64,
    /// Per candidate, the next flow `POST /admin/fire` synthesizes when none is named.
    flows: std::sync::Mutex<HashMap<String, u64>>,
}

impl Served {
    /// Starts the mocks and the admin API.
    pub async fn start(config: ServeConfig) -> Result<Served, ServeError> {
        // The candidates first: a sandbox that cannot be built leaves an older log intact.
        let sandbox = Arc::new(match config.sandbox {
            Some(sandbox) => sandbox,
            None => crate::sandbox::build(&config.manifest, config.seed)?,
        });
        let log = ObservationLog::create(&config.log_path, &format!("serve-{:016x}", config.seed))?;
        let mocks = Mocks::start(
            Arc::clone(&config.manifest),
            &sandbox.candidates,
            &config.mocks,
            &log,
        )
        .await?;
        let mut rng = ChaCha8Rng::seed_from_u64(crate::mock::mix(config.seed, 7));
        let vendor_secret = WebhookSecret::generate(&mut rng);
        let ats_secret = WebhookSecret::generate(&mut rng);
        let vendor_url = mocks
            .vendor_url()
            .parse()
            .map_err(|_| crate::http::BindError {
                addr: config.mocks.vendor_addr,
                source: std::io::Error::other("the vendor URL does not parse"),
            })?;
        let admin = Admin {
            manifest: Arc::clone(&config.manifest),
            sandbox: Arc::clone(&sandbox),
            mocks_ats: Arc::clone(&mocks.ats),
            mocks_vendor: Arc::clone(&mocks.vendor),
            mocks_notify: Arc::clone(&mocks.notify),
            vendor_url,
            sender: Sender::new(
                vendor_secret.clone(),
                RetryPolicy::default(),
                config.seed,
                log.clone(),
            ),
            log: log.clone(),
            log_path: config.log_path.clone(),
            seed: config.seed,
            flows: std::sync::Mutex::new(HashMap::new()),
        };
        let admin = RunningServer::start(router(Arc::new(admin)), config.admin_addr).await?;
        log.append(
            Actor::Harness,
            "serve.start",
            Entry::detail(json!({
                "seed": config.seed,
                "candidates": sandbox.candidates.len(),
                "ats_url": mocks.ats_url(),
                "vendor_url": mocks.vendor_url(),
                "notify_url": mocks.notify_url(),
                "admin_url": admin.url(),
            })),
        );
        Ok(Served {
            mocks,
            admin,
            vendor_secret,
            ats_secret,
            sandbox,
            log,
        })
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        self.admin.url()
    }

    /// Stops everything gracefully and flushes the log.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.admin.shutdown().await;
        self.mocks.shutdown().await;
        self.log
            .append(Actor::Harness, "serve.end", Entry::detail(json!({})));
        self.log.flush()
    }
}

/// The admin API's routes.
fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/admin/candidates", get(candidates))
        .route("/admin/state", get(state))
        .route(
            "/admin/faults",
            put(set_faults).delete(clear_faults).get(get_faults),
        )
        .route("/admin/log", get(dump_log))
        .route("/admin/fire", post(fire))
        .route("/admin/exceptions/{id}/resolve", post(resolve_exception))
        .with_state(admin)
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"error": message})),
    )
        .into_response()
}

/// A query string the admin API could not read, as a 422 naming what it accepts.
fn bad_query(rejection: QueryRejection, accepted: &str) -> Response {
    bad_request(format!(
        "{}; this route takes {accepted}",
        rejection.body_text()
    ))
}

/// `?offset=N&limit=M` on `GET /admin/candidates`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListPage {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

/// One sandbox candidate as `GET /admin/candidates` lists it.
#[derive(Serialize)]
struct Listed<'a> {
    ats_candidate_id: &'a str,
    profile: &'a str,
    risk_tier: &'static str,
    role: crate::sandbox::Role,
    requisition: &'a crate::sandbox::Requisition,
    in_canary_scope: bool,
    expected_sequence: Vec<String>,
}

/// Candidates serialized per chunk of `GET /admin/candidates`.
const LIST_CHUNK: usize = 512;

fn listed<'a>(scope: &'a CanaryScope, c: &'a SandboxCandidate) -> Listed<'a> {
    Listed {
        ats_candidate_id: &c.id.0,
        profile: &c.profile,
        risk_tier: c.risk_tier.as_str(),
        role: c.role,
        requisition: &c.requisition,
        in_canary_scope: in_canary_scope(scope, &c.requisition),
        expected_sequence: c
            .expected_sequence
            .iter()
            .map(|e| match &e.outcome {
                Some((_, v)) => format!("{}:{v}", e.contract),
                None => e.contract.to_string(),
            })
            .collect(),
    }
}

/// A response body pulled from an iterator of chunks, so a dump of 100,000
/// candidates is written as it is serialized and never sits in memory whole.
struct Chunked<I>(I);

impl<I> hyper::body::Body for Chunked<I>
where
    I: Iterator<Item = Vec<u8>> + Unpin,
{
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let next = self.get_mut().0.next();
        std::task::Poll::Ready(next.map(|chunk| Ok(hyper::body::Frame::data(Bytes::from(chunk)))))
    }
}

fn chunked_json<I>(chunks: I) -> Response
where
    I: Iterator<Item = Vec<u8>> + Unpin + Send + 'static,
{
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::new(Chunked(chunks)),
    )
        .into_response()
}

async fn candidates(
    State(admin): State<Arc<Admin>>,
    page: Result<Query<ListPage>, QueryRejection>,
) -> Response {
    let page = match page {
        Ok(Query(page)) => page,
        Err(rejection) => return bad_query(rejection, "`offset` and `limit`"),
    };
    let total = admin.sandbox.candidates.len();
    let start = page.offset.min(total);
    let end = page
        .limit
        .map_or(total, |limit| start.saturating_add(limit).min(total));
    let head = format!(
        "{{\"seed\":{},\"total\":{total},\"offset\":{},\"candidates\":[",
        admin.seed, page.offset
    );
    let mut at = start;
    let items = std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let scope = &admin.manifest.raw.release_gate.canary_scope;
        let chunk_end = (at + LIST_CHUNK).min(end);
        let mut out = Vec::new();
        for (i, c) in admin.sandbox.candidates[at..chunk_end].iter().enumerate() {
            if at + i > start {
                out.push(b',');
            }
            // Plain fields serialize into memory without failing.
            let _ = serde_json::to_writer(&mut out, &listed(scope, c));
        }
        at = chunk_end;
        Some(out)
    });
    let chunks = std::iter::once(head.into_bytes())
        .chain(items)
        .chain(std::iter::once(b"]}".to_vec()));
    chunked_json(chunks)
}

async fn state(
    State(admin): State<Arc<Admin>>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let page = match page {
        Ok(Query(page)) => page,
        Err(rejection) => return bad_query(rejection, "`candidate`, `offset` and `limit`"),
    };
    let mut tail = Vec::new();
    for (name, value) in [
        ("vendor", admin.mocks_vendor.snapshot()),
        ("notify", admin.mocks_notify.snapshot()),
    ] {
        tail.extend(format!(",\"{name}\":").as_bytes());
        tail.extend(serde_json::to_vec(&value).unwrap_or_default());
    }
    tail.push(b'}');
    let chunks = std::iter::once(b"{\"ats\":".to_vec())
        .chain(Arc::clone(&admin.mocks_ats).dump(page))
        .chain(std::iter::once(tail));
    chunked_json(chunks)
}

async fn get_faults(State(admin): State<Arc<Admin>>) -> Response {
    axum::Json(admin.mocks_ats.faults.windows()).into_response()
}

async fn set_faults(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    let windows: Vec<FaultWindow> = match serde_json::from_slice(&body) {
        Ok(windows) => windows,
        Err(err) => {
            return bad_request(format!(
                "expected a JSON array of fault windows such as [{{\"fault\": {{\"kind\": \"outage\"}}, \"from_ms\": 0, \"for_ms\": 5000}}]: {err}"
            ));
        }
    };
    let detail = json!({"windows": windows});
    match admin.mocks_ats.faults.set(windows) {
        Ok(()) => {
            // The schedule's clock starts now: the record marks time zero of its windows.
            admin
                .log
                .append(Actor::Harness, "faults.set", Entry::detail(detail));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => bad_request(err.to_string()),
    }
}

async fn clear_faults(State(admin): State<Arc<Admin>>) -> Response {
    admin.mocks_ats.faults.clear();
    admin
        .log
        .append(Actor::Harness, "faults.cleared", Entry::detail(json!({})));
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /admin/exceptions/{id}/resolve`: the reviewer closes an open exception item
/// (body optional: `{"resolution": TEXT}`); the integration sees it resolved at
/// `GET /v1/exceptions/{id}`.
async fn resolve_exception(
    State(admin): State<Arc<Admin>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let resolution = if body.iter().all(u8::is_ascii_whitespace) {
        "resolved by a reviewer".to_owned()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => match map.get("resolution") {
                None => "resolved by a reviewer".to_owned(),
                Some(Value::String(text)) => text.clone(),
                Some(_) => return bad_request("`resolution` must be a string".to_owned()),
            },
            Ok(_) | Err(_) => {
                return bad_request("expected no body or {\"resolution\": TEXT}".to_owned());
            }
        }
    };
    match admin.mocks_ats.resolve_exception(&id, &resolution) {
        Some(item) => axum::Json(item).into_response(),
        None => {
            let open: Vec<String> = admin
                .mocks_ats
                .exceptions()
                .into_iter()
                .filter(|item| item.status == crate::mock::ats::ExceptionStatus::Open)
                .map(|item| item.id)
                .collect();
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({
                    "error": format!(
                        "no open exception item `{id}`; open ones: {}",
                        if open.is_empty() { "none".to_owned() } else { open.join(", ") }
                    )
                })),
            )
                .into_response()
        }
    }
}

async fn dump_log(State(admin): State<Arc<Admin>>) -> Response {
    let internal = |err: std::io::Error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": err.to_string()})),
        )
            .into_response()
    };
    // Whole records only: the mocks go on appending while the file is read.
    let len = match admin.log.flush_len() {
        Ok(len) => len,
        Err(err) => return internal(err),
    };
    match tokio::fs::File::open(&admin.log_path).await {
        Ok(file) => {
            let body = FileBody {
                file,
                left: len,
                buf: vec![0; LOG_CHUNK],
            };
            (
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                axum::body::Body::new(body),
            )
                .into_response()
        }
        Err(err) => internal(err),
    }
}

/// Bytes of the log read per chunk of `GET /admin/log`.
const LOG_CHUNK: usize = 64 * 1024;

/// The first `left` bytes of a file as a response body, a chunk at a time: the log
/// of a long load test runs to gigabytes and must not be read into memory.
struct FileBody {
    file: tokio::fs::File,
    left: u64,
    buf: Vec<u8>,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want =
            usize::try_from(this.left).map_or(this.buf.len(), |left| left.min(this.buf.len()));
        let mut read = tokio::io::ReadBuf::new(&mut this.buf[..want]);
        match std::pin::Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Some(Err(err))),
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the log is shorter than written",
                ))))
            }
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(read.filled());
                this.left -= chunk.len() as u64;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
            }
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// Perturbations as the admin API names them.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum FirePerturbation {
    None,
    ExactDuplicate,
    ReEmit,
    ConcurrentDuplicates,
    Unsigned,
    WrongSignature,
    StaleTimestamp,
}

impl From<FirePerturbation> for Perturbation {
    fn from(p: FirePerturbation) -> Perturbation {
        match p {
            FirePerturbation::None => Perturbation::None,
            FirePerturbation::ExactDuplicate => Perturbation::ExactDuplicate { copies: 1 },
            FirePerturbation::ReEmit => Perturbation::ReEmit,
            FirePerturbation::ConcurrentDuplicates => {
                Perturbation::ConcurrentDuplicates { copies: 2 }
            }
            FirePerturbation::Unsigned => Perturbation::Unsigned,
            FirePerturbation::WrongSignature => Perturbation::WrongSignature,
            FirePerturbation::StaleTimestamp => Perturbation::StaleTimestamp,
        }
    }
}

/// Orders as the admin API names them.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum FireOrder {
    #[default]
    InOrder,
    Reversed,
    Shuffled,
    Concurrent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FireRequest {
    candidate: String,
    webhook_url: url::Url,
    /// One per event, cycled; `none` for all when absent.
    #[serde(default)]
    perturbations: Vec<FirePerturbation>,
    #[serde(default)]
    order: FireOrder,
    /// Which of the candidate's flows to synthesize: each has fresh event, session
    /// and webhook ids. The next unfired one when absent, so firing a candidate again
    /// sends new events; naming a fired one replays it exactly (same ids).
    #[serde(default)]
    flow: Option<u64>,
}

/// The synthesis seed of a candidate's `flow`: flow 0 draws from the sandbox's seed,
/// as `stagegate run` does, later flows from seeds derived from it.
fn flow_seed(seed: u64, flow: u64) -> u64 {
    match flow {
        0 => seed,
        n => crate::mock::mix(seed ^ 0xF10F_F10F_F10F_F10F, n),
    }
}

async fn fire(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    let request: FireRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return bad_request(format!(
                "expected {{\"candidate\": ID, \"webhook_url\": URL, \"perturbations\": [none|exact_duplicate|re_emit|concurrent_duplicates|unsigned|wrong_signature|stale_timestamp], \"order\": in_order|reversed|shuffled|concurrent, \"flow\": N}}: {err}"
            ));
        }
    };
    let Some(candidate) = admin.sandbox.candidate(&request.candidate) else {
        let known: Vec<&str> = admin
            .sandbox
            .candidates
            .iter()
            .map(|c| c.id.0.as_str())
            .collect();
        let hint = crate::suggest::did_you_mean(&request.candidate, known.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return bad_request(format!(
            "no sandbox candidate `{}`{hint}; GET /admin/candidates lists them",
            request.candidate
        ));
    };
    let flow = {
        let mut flows = admin
            .flows
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let next = flows.entry(candidate.id.0.clone()).or_insert(0);
        let flow = request.flow.unwrap_or(*next);
        *next = (*next).max(flow.saturating_add(1));
        flow
    };
    let synth = SynthConfig {
        seed: flow_seed(admin.seed, flow),
        anchor: chrono::Utc::now() - chrono::TimeDelta::hours(1),
        vendor_base_url: admin.vendor_url.clone(),
        envelope: admin.manifest.envelope.clone(),
    };
    let events = match Synthesizer::new(&admin.manifest.contracts, synth).synthesize_flow(candidate)
    {
        Ok(events) => events,
        Err(err) => return bad_request(format!("cannot synthesize the flow: {err}")),
    };
    let mut plan = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if let Some(pack) = &event.evidence_pack {
            admin.mocks_vendor.register_pack(pack.clone());
        }
        let event_id = event
            .event_id
            .clone()
            .unwrap_or_else(|| format!("event-{index}"));
        let mut delivery = Delivery::json(
            format!("msg_{event_id}"),
            event.contract.as_str(),
            &event.payload,
        );
        delivery.candidate = Some(candidate.id.0.clone());
        delivery.correlation_id = Some(event.correlation_id.clone());
        delivery.event_id = event.event_id.clone();
        delivery.idempotency_key = event.idempotency_key.clone();
        let perturbation = request
            .perturbations
            .get(index % request.perturbations.len().max(1))
            .copied()
            .unwrap_or(FirePerturbation::None);
        plan.push((delivery, perturbation.into()));
    }
    let order = match request.order {
        FireOrder::InOrder => Order::InOrder,
        FireOrder::Reversed => Order::Reversed,
        FireOrder::Shuffled => Order::Shuffled,
        FireOrder::Concurrent => Order::Concurrent { max_in_flight: 8 },
    };
    admin.log.append(
        Actor::Harness,
        "fire",
        Entry {
            candidate: Some(candidate.id.0.clone()),
            correlation_id: events.first().map(|e| e.correlation_id.clone()),
            ..Entry::detail(json!({
                "webhook_url": request.webhook_url.as_str(),
                "flow": flow,
                "events": events.len(),
                "perturbations": request.perturbations,
                "order": request.order,
            }))
        },
    );
    let outcomes = admin
        .sender
        .deliver_all(&request.webhook_url, plan, order)
        .await;
    let summary: Vec<Value> = outcomes
        .iter()
        .zip(&events)
        .map(|(outcome, event)| {
            json!({
                "event_id": event.event_id,
                "contract": event.contract,
                "webhook_id": outcome.webhook_id,
                "perturbation": outcome.perturbation.name(),
                "acked": outcome.acked,
                "statuses": outcome.attempts.iter().map(|a| a.status()).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(json!({"candidate": candidate.id, "flow": flow, "deliveries": summary}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// The admin router over mocks that are not listening: no sockets.
    fn admin(dir: &std::path::Path) -> (Arc<Admin>, Router) {
        let text = include_str!("../manifests/release-gate.yaml");
        let manifest = Arc::new(
            Manifest::from_text(std::path::Path::new("manifests/release-gate.yaml"), text)
                .expect("the seed loads")
                .value,
        );
        let sandbox = Arc::new(crate::sandbox::build(&manifest, 3).expect("builds"));
        let log_path = dir.join("serve.jsonl");
        let log = ObservationLog::create(&log_path, "serve-test").expect("log");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let admin = Arc::new(Admin {
            manifest: Arc::clone(&manifest),
            sandbox: Arc::clone(&sandbox),
            mocks_ats: Arc::new(crate::mock::ats::AtsState::new(
                manifest,
                &sandbox.candidates,
                "tok",
                3,
                log.clone(),
            )),
            mocks_vendor: Arc::new(crate::mock::vendor::VendorState::new("tok", 3, log.clone())),
            mocks_notify: Arc::new(crate::mock::notify::NotifyState::new(log.clone())),
            vendor_url: "http://127.0.0.1:9/".parse().expect("a URL"),
            sender: Sender::new(
                WebhookSecret::generate(&mut rng),
                RetryPolicy::default(),
                3,
                log.clone(),
            ),
            log,
            log_path,
            seed: 3,
            flows: std::sync::Mutex::new(HashMap::new()),
        });
        (Arc::clone(&admin), router(admin))
    }

    async fn call(router: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_owned()))
            .expect("a request");
        let response = router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("a body");
        (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[tokio::test]
    async fn faults_are_set_read_and_cleared_and_logged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, router) = admin(dir.path());
        let window = r#"[{"fault": {"kind": "rate_limit", "retry_after_secs": 2}, "from_ms": 0, "for_ms": 5000}]"#;
        assert_eq!(
            call(&router, "PUT", "/admin/faults", window).await.0,
            StatusCode::NO_CONTENT
        );
        let (status, body) = call(&router, "GET", "/admin/faults", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json(&body), json(window));
        // (body, what the 422 says, why)
        let rows = [
            ("{}", "expected a JSON array of fault windows", "not a list"),
            (
                r#"[{"fault": {"kind": "latency", "millis": 61000}}]"#,
                "fault window 0 (latency): latency 61000 ms is above the 60 s hang limit",
                "a latency past the hang limit",
            ),
            (
                r#"[{"fault": {"kind": "outage"}, "form_ms": 1}]"#,
                "unknown field `form_ms`",
                "a misspelt key",
            ),
        ];
        for (bad, expected, why) in rows {
            let (status, body) = call(&router, "PUT", "/admin/faults", bad).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}");
            assert!(body.contains(expected), "{why}: {body}");
        }
        assert_eq!(
            json(&call(&router, "GET", "/admin/faults", "").await.1),
            json(window),
            "a refused schedule leaves the old one"
        );
        assert_eq!(
            call(&router, "DELETE", "/admin/faults", "").await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(call(&router, "GET", "/admin/faults", "").await.1, "[]");
        let (status, log) = call(&router, "GET", "/admin/log", "").await;
        assert_eq!(status, StatusCode::OK);
        let kinds: Vec<String> = log
            .lines()
            .map(|l| json(l)["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(kinds, ["faults.set", "faults.cleared"]);
    }

    #[tokio::test]
    async fn candidates_and_state_page_and_refuse_unknown_parameters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (admin, router) = admin(dir.path());
        let total = admin.sandbox.candidates.len();
        let (status, body) = call(&router, "GET", "/admin/candidates", "").await;
        assert_eq!(status, StatusCode::OK);
        let all = json(&body);
        assert_eq!(all["total"], total);
        assert_eq!(all["candidates"].as_array().map(Vec::len), Some(total));
        assert_eq!(
            all["candidates"][0]["expected_sequence"][0],
            "identity.verification.completed:passed"
        );
        let page = json(
            &call(&router, "GET", "/admin/candidates?offset=1&limit=2", "")
                .await
                .1,
        );
        let ids: Vec<&str> = page["candidates"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|c| c["ats_candidate_id"].as_str())
            .collect();
        assert_eq!(ids, ["CAND_canary_002", "CAND_canary_003"]);
        let state = json(
            &call(&router, "GET", "/admin/state?candidate=CAND_canary_002", "")
                .await
                .1,
        );
        assert_eq!(
            state["ats"]["candidates"][0]["ats_candidate_id"],
            "CAND_canary_002"
        );
        assert!(state["vendor"]["sessions"].is_array() && state["notify"]["messages"].is_array());
        for uri in ["/admin/candidates?limt=2", "/admin/state?offset=-1"] {
            let (status, body) = call(&router, "GET", uri, "").await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
            assert!(body.contains("this route takes"), "{uri}: {body}");
        }
    }

    #[tokio::test]
    async fn fire_refuses_what_it_cannot_send() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, router) = admin(dir.path());
        // (body, what the 422 says, why)
        let rows = [
            (
                r#"{"candidate": "CAND_canary_01", "webhook_url": "http://127.0.0.1:9/"}"#,
                "no sandbox candidate `CAND_canary_01` (did you mean `CAND_canary_001`?)",
                "a misspelt candidate",
            ),
            (
                r#"{"candidate": "CAND_canary_001", "webhook_url": "not a url"}"#,
                "relative URL without a base",
                "a URL that does not parse",
            ),
            (
                r#"{"candidate": "CAND_canary_001", "webhook_url": "http://127.0.0.1:9/", "perturbations": ["twice"]}"#,
                "unknown variant `twice`",
                "an unknown perturbation",
            ),
        ];
        for (body, expected, why) in rows {
            let (status, text) = call(&router, "POST", "/admin/fire", body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}");
            assert!(text.contains(expected), "{why}: {text}");
        }
    }

    #[test]
    fn each_flow_has_its_own_seed_and_the_first_is_the_sandbox_seed() {
        assert_eq!(flow_seed(7, 0), 7);
        let seeds: std::collections::HashSet<u64> = (0..100).map(|n| flow_seed(7, n)).collect();
        assert_eq!(seeds.len(), 100);
    }
}
