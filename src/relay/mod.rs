//! The reference relay: a correct, production-shaped integration, and the default
//! integration of `stagegate run`.
//!
//! It is written only against docs/integration-protocol.md, like any team's integration:
//! configured by the `STAGEGATE_*` variables, it verifies Standard Webhooks
//! signatures, commits each event to a durable SQLite queue before acknowledging
//! (milliseconds), and a worker writes the queue to the ATS: reading the candidate
//! first (or recalling what its own last write left, the write guarded by
//! `If-Match`), dropping stale events, skipping candidates outside the canary scope,
//! retrying with exponential backoff, one event per candidate at a time so order
//! holds. Every processed event is one JSON log line with the manifest's
//! `log_fields_required` and no personal data.
//!
//! It carries the manifest's kill switch ([`breaker`] decides, `switch` runs it):
//! when the ATS fails too often, or refuses too many bodies, writes stop, webhooks
//! are still acknowledged and queued, every `notify_channels` channel hears it, and
//! once probes get through the queue replays in per-candidate order. The queue is
//! the SQLite store, so a relay killed mid-outage resumes it on the next start.

mod ats;
pub mod breaker;
pub mod config;
pub mod log;
mod notify;
mod policy;
pub mod store;
mod switch;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::delivery::signature::{self, WebhookSecret};
use crate::http::RunningServer;
use config::RelayConfig;
use log::RelayLog;
use store::{Accepted, Store};
use switch::KillSwitch;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration is incomplete or wrong.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The listener could not be bound.
    #[error(transparent)]
    Bind(#[from] crate::http::BindError),
    /// The worker's thread could not be started.
    #[error("starting the relay's worker thread: {0}")]
    Worker(#[source] std::io::Error),
}

struct Shared {
    config: RelayConfig,
    store: Store,
    log: RelayLog,
    wake: Notify,
    /// Webhooks' events as the handler parsed them, for the worker.
    parsed: worker::Parsed,
    /// Candidates' records as the worker's last writes left them.
    known: worker::Known,
    deliveries: std::sync::atomic::AtomicU64,
    switch: Arc<KillSwitch>,
    /// The hiring-policy side, when `STAGEGATE_POLICY` is set.
    policy: Option<Arc<policy::PolicySide>>,
}

/// A running relay: its HTTP server, its worker and its notifier.
pub struct Relay {
    server: RunningServer,
    worker: WorkerThread,
    notifier: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

/// The runtime `stagegate relay`'s server runs on, and the worker on a thread of its
/// own: one thread each. Every webhook and ATS call is a short burst between two
/// waits (a socket, the store's writer thread), so a multi-threaded runtime bought
/// hand-offs rather than throughput on a small machine: tasks woken on one thread and
/// stolen by the other, each a futex wake and a context switch. One thread: relay
/// CPU per event −17 % in a 10k-candidate run, and more events landed per second.
/// SQLite work stays off it: the store's writer thread commits, the worker reads the
/// queue on its own connection, the policy side's reads use the blocking pool.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The store's file in the state folder.
const STORE_FILE: &str = "relay.sqlite3";

/// Deletes the store and its WAL files: the `volatile_queue` fault's amnesia.
fn wipe_store(state_dir: &std::path::Path) -> Result<(), config::ConfigError> {
    for suffix in ["", "-wal", "-shm"] {
        let path = state_dir.join(format!("{STORE_FILE}{suffix}"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(config::ConfigError::state_dir(state_dir)(err)),
        }
    }
    Ok(())
}

impl Relay {
    /// Opens the store, binds the listener and starts the worker.
    pub async fn start(config: RelayConfig, log: RelayLog) -> Result<Relay, RelayError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(config::ConfigError::state_dir(&config.state_dir))?;
        if config.has_fault("volatile_queue") {
            // Deliberate defect: whatever was queued before a restart is forgotten.
            wipe_store(&config.state_dir)?;
        }
        let store = Store::open(&config.state_dir.join(STORE_FILE))?;
        let listen = config.listen;
        let (notices, notices_out) = mpsc::unbounded_channel();
        let switch = Arc::new(KillSwitch::new(&config, notices, log.clone()));
        let channels = notify::Channels {
            base_url: config.notify_url.clone(),
            channels: config.manifest.notify_channels().to_vec(),
            kill_switch: config.manifest.raw.release_gate.kill_switch.name.clone(),
        };
        let notifier = tokio::spawn(notify::run(notices_out, channels, log.clone()));
        let policy = match &config.policy {
            Some(setup) => Some(Arc::new(policy::PolicySide::open(
                &config,
                Arc::clone(setup),
                log.clone(),
                Arc::clone(&switch),
            )?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            config,
            store,
            log,
            wake: Notify::new(),
            parsed: worker::Parsed::default(),
            known: worker::Known::default(),
            deliveries: Default::default(),
            switch,
            policy,
        });
        let server = RunningServer::start(router(Arc::clone(&shared)), listen).await?;
        let worker = WorkerThread::start(Arc::clone(&shared))
            .await
            .map_err(RelayError::Worker)?;
        Ok(Relay {
            server,
            worker,
            notifier,
            shared,
        })
    }

    /// The relay's base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Events still waiting to be written.
    pub fn queued(&self) -> u64 {
        self.shared.store.queued().unwrap_or(0)
    }

    /// The kill switch's phase now.
    pub fn kill_switch(&self) -> breaker::Phase {
        self.shared.switch.phase()
    }

    /// How many times the kill switch tripped since the relay started.
    pub fn kill_switch_trips(&self) -> u64 {
        self.shared.switch.trips()
    }

    /// Stops accepting webhooks, then stops the worker and the notifier (queued
    /// events stay queued).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        self.worker.stop().await;
        self.notifier.abort();
        let _ = self.notifier.await;
    }
}

/// The worker on a thread and runtime of its own. On the server's one thread it took
/// a turn after every ready webhook handler: with 64 deliveries in flight, its eight
/// ATS calls waited behind them, and the queue grew while webhooks came in. On its
/// own thread the kernel shares the CPU between the two by time, not by task count.
struct WorkerThread {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl WorkerThread {
    /// Starts the worker's thread and its runtime. The runtime is built on that thread,
    /// so a failure is reported here, and nothing async drops a runtime.
    async fn start(shared: Arc<Shared>) -> std::io::Result<WorkerThread> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, built) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("relay-worker".into())
            .spawn(move || {
                let runtime = match runtime() {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = started.send(Err(err));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                runtime.block_on(async {
                    tokio::select! {
                        () = worker::run(shared) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        match built.await {
            Ok(Ok(())) => Ok(WorkerThread { stop, thread }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(std::io::Error::other(
                "the worker's thread ended at its start",
            )),
        }
    }

    /// Stops the worker between two steps (its attempts are dropped, their events
    /// stay queued) and waits for its thread.
    async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/webhooks/vendor", post(vendor_webhook))
        .route("/webhooks/ats", post(ats_webhook))
        .route("/jobs/reconcile", post(reconcile))
        .with_state(shared)
}

fn reject(status: StatusCode, reason: String) -> Response {
    (status, axum::Json(json!({"error": reason}))).into_response()
}

/// A webhook's body as a JSON object, or why it is not one (for a 400).
fn json_object(body: &[u8]) -> Result<Value, String> {
    // Checked as UTF-8 once: `from_str` then reads strings without checking again.
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    };
    match parsed {
        Ok(event @ Value::Object(_)) => Ok(event),
        Ok(_) => Err("the body is not a JSON object".into()),
        Err(err) => Err(format!("malformed JSON: {err}")),
    }
}

/// The 401 for a delivery whose signature does not verify, if it does not.
fn unverified(secret: &WebhookSecret, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    signature::verify_headers(
        secret,
        headers,
        body,
        signature::unix_now(),
        signature::TIMESTAMP_TOLERANCE,
    )
    .err()
    .map(|err| {
        reject(
            StatusCode::UNAUTHORIZED,
            format!("signature rejected: {err}"),
        )
    })
}

async fn vendor_webhook(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_at = crate::observe::format_time(chrono::Utc::now());
    let config = &shared.config;
    if !config.has_fault("no_signature_check")
        && let Some(response) = unverified(&config.vendor_secret, &headers, &body)
    {
        return response;
    }
    if config.has_fault("slow_ack") {
        // Deliberate defect: process before acknowledging, past the ack SLA.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let event = match json_object(&body) {
        Ok(event) => event,
        Err(why) => return reject(StatusCode::BAD_REQUEST, why),
    };
    let envelope = &config.manifest.envelope;
    let owned = |text: Option<&str>| text.map(str::to_owned);
    let (Some(contract), Some(key), Some(candidate), Some(occurred_at)) = (
        owned(event.get("type").and_then(Value::as_str)),
        owned(envelope.idempotency_key_of(&event)),
        owned(envelope.candidate_id_of(&event)),
        owned(envelope.occurred_at_of(&event)),
    ) else {
        return reject(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "an event needs \"type\", `{}`, `{}` and `{}` (the manifest's envelope)",
                envelope.idempotency_key, envelope.candidate_id, envelope.occurred_at
            ),
        );
    };
    let webhook_id = headers
        .get(signature::header::ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Deliberate defect `no_dedupe`: every delivery looks new to the store.
    let store_key = if shared.config.has_fault("no_dedupe") {
        format!(
            "{key}#{}",
            shared
                .deliveries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    } else {
        key.clone()
    };
    // Handed to the worker before the commit that lets it see the job; taken back
    // unless this delivery queued it.
    let event = Arc::new(event);
    let handed = shared.parsed.keep(&store_key, &event);
    let stored = shared
        .store
        .accept(store::NewEvent {
            idempotency_key: store_key.clone(),
            webhook_id,
            candidate,
            contract,
            occurred_at,
            // A JSON object was parsed from it, so it is UTF-8: copied, not re-decoded.
            body: String::from_utf8(body.to_vec())
                .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()),
            received_at: received_at.clone(),
        })
        .await;
    if handed && !matches!(stored, Ok(Accepted::Queued(_))) {
        shared.parsed.forget(&store_key);
    }
    let accepted = match stored {
        Ok(accepted) => accepted,
        Err(err) => return reject(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    };
    let outcome = match accepted {
        Accepted::Queued(_) => {
            shared.wake.notify_one();
            if let Some(policy) = &shared.policy {
                policy.result(&event, &received_at);
            }
            "queued"
        }
        Accepted::Duplicate => "duplicate",
    };
    shared.log.event(&event, &received_at, None, outcome);
    (StatusCode::OK, axum::Json(json!({"status": outcome}))).into_response()
}

async fn reconcile(State(shared): State<Arc<Shared>>) -> Response {
    match &shared.policy {
        Some(policy) => policy.reconcile().await,
        None => reject(
            StatusCode::NOT_FOUND,
            "no hiring policy: start the relay with STAGEGATE_POLICY to reconcile".into(),
        ),
    }
}

async fn ats_webhook(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(policy) = &shared.policy {
        return policy.stage_change(&headers, &body).await;
    }
    if let Some(response) = unverified(&shared.config.ats_secret, &headers, &body) {
        return response;
    }
    match serde_json::from_slice::<Value>(&body) {
        // Stage changes are acknowledged; the hiring-policy flow acts on them.
        Ok(Value::Object(_)) => {
            (StatusCode::OK, axum::Json(json!({"status": "accepted"}))).into_response()
        }
        Ok(_) => reject(
            StatusCode::BAD_REQUEST,
            "the body is not a JSON object".into(),
        ),
        Err(err) => reject(StatusCode::BAD_REQUEST, format!("malformed JSON: {err}")),
    }
}

/// How long the worker sleeps when the queue is empty and nothing wakes it; a
/// backstop, since every accepted webhook wakes it at once.
const IDLE_POLL: Duration = Duration::from_millis(500);
