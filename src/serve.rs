//! `stagegate serve`: the sandbox for local pre-release work.
//!
//! The mocks run with the manifest's candidates until Ctrl-C; an admin API on its
//! own loopback port fires a candidate's sequence (with chosen perturbations) at any
//! webhook URL, sets the ATS's faults, and dumps the mocks' state and the
//! observation log. Nothing is judged here — that is `stagegate run`'s job.

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
use crate::observe::ObservationLog;
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
    Bind(#[from] crate::mock::BindError),
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
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default();
        let vendor_url = mocks
            .vendor_url()
            .parse()
            .map_err(|_| crate::mock::BindError {
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
                client,
                vendor_secret.clone(),
                RetryPolicy::default(),
                config.seed,
                log.clone(),
            ),
            log: log.clone(),
            log_path: config.log_path.clone(),
            seed: config.seed,
        };
        let admin = RunningServer::start(router(Arc::new(admin)), config.admin_addr).await?;
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
    match admin.mocks_ats.faults.set(windows) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => bad_request(err.to_string()),
    }
}

async fn clear_faults(State(admin): State<Arc<Admin>>) -> Response {
    admin.mocks_ats.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn dump_log(State(admin): State<Arc<Admin>>) -> Response {
    if let Err(err) = admin.log.flush() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": err.to_string()})),
        )
            .into_response();
    }
    match tokio::fs::read(&admin.log_path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/x-ndjson")], bytes).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": err.to_string()})),
        )
            .into_response(),
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
#[derive(Debug, Clone, Copy, Default, Deserialize)]
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
}

async fn fire(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    let request: FireRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return bad_request(format!(
                "expected {{\"candidate\": ID, \"webhook_url\": URL, \"perturbations\": [none|exact_duplicate|re_emit|concurrent_duplicates|unsigned|wrong_signature|stale_timestamp], \"order\": in_order|reversed|shuffled|concurrent}}: {err}"
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
    let synth = SynthConfig {
        seed: admin.seed,
        anchor: chrono::Utc::now() - chrono::TimeDelta::hours(1),
        vendor_base_url: admin.vendor_url.clone(),
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
    axum::Json(json!({"candidate": candidate.id, "deliveries": summary})).into_response()
}
