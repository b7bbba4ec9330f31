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
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::delivery::{Delivery, Order, Perturbation, RetryPolicy, Sender, WebhookSecret};
use crate::manifest::Manifest;
use crate::mock::faults::FaultWindow;
use crate::mock::{MockConfig, Mocks, RunningServer};
use crate::observe::ObservationLog;
use crate::sandbox::synth::{SynthConfig, Synthesizer};
use crate::sandbox::{Sandbox, in_canary_scope};

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
    /// The sandbox's candidates.
    pub sandbox: Sandbox,
    log: ObservationLog,
}

struct Admin {
    manifest: Arc<Manifest>,
    sandbox: Sandbox,
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
        let log = ObservationLog::create(&config.log_path, &format!("serve-{:016x}", config.seed))?;
        let sandbox = crate::sandbox::build(&config.manifest, config.seed)?;
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
            sandbox: sandbox.clone(),
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

async fn candidates(State(admin): State<Arc<Admin>>) -> Response {
    let scope = &admin.manifest.raw.release_gate.canary_scope;
    let list: Vec<Value> = admin
        .sandbox
        .candidates
        .iter()
        .map(|c| {
            json!({
                "ats_candidate_id": c.id,
                "profile": c.profile,
                "risk_tier": c.risk_tier.as_str(),
                "role": c.role,
                "requisition": c.requisition,
                "in_canary_scope": in_canary_scope(scope, &c.requisition),
                "expected_sequence": c.expected_sequence.iter().map(|e| match &e.outcome {
                    Some((_, v)) => format!("{}:{v}", e.contract),
                    None => e.contract.to_string(),
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(json!({"seed": admin.seed, "candidates": list})).into_response()
}

async fn state(State(admin): State<Arc<Admin>>) -> Response {
    axum::Json(json!({
        "ats": admin.mocks_ats.snapshot(),
        "vendor": admin.mocks_vendor.snapshot(),
        "notify": admin.mocks_notify.snapshot(),
    }))
    .into_response()
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
