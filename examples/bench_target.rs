//! One HTTP target for the mock-ATS load benchmark (`benches/mock_ats/run.sh`).
//!
//! ```text
//! cargo run --release --example bench_target -- --target stagegate|wiremock|axum [--token T]
//! ```
//!
//! Listens on `127.0.0.1:0`, prints exactly one line `listening http://127.0.0.1:PORT`
//! to stdout, then serves `GET /v1/candidates/CAND_canary_001` until SIGTERM or
//! SIGINT. Every target answers the same JSON candidate record (the one the mock ATS
//! builds) with the same `ETag`, on a multi-thread tokio runtime with 2 workers and
//! the allocator the `stagegate` binary ships with (mimalloc):
//!
//! - `stagegate`: the real mock ATS (`ats::router` on `RunningServer`), seeded from
//!   `manifests/release-gate.yaml`, bearer auth on, fault middleware on (no faults
//!   set), every exchange appended to a hash-chained observation log in a real file.
//! - `wiremock`: a wiremock-rs `MockServer` matching method, path and the bearer
//!   header. (wiremock-rs serves from its own thread on a current-thread runtime,
//!   whatever the caller's runtime is, and records every request by default.)
//! - `axum`: a bare axum route (`axum::serve`), the reference ceiling.
//!
//! Diagnostic variants (not part of the standard run): `stagegate-sink` (the same
//! mock ATS, its log written to `io::sink()`), `axum-server` (the bare route on the
//! mock's own accept loop, `RunningServer`).

#![allow(missing_docs)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{Parser, ValueEnum};
use serde_json::Value;
use stagegate::manifest::{CandidateId, Manifest};
use stagegate::mock::ats::{self, AtsState};
use stagegate::mock::{BindError, RunningServer};
use stagegate::observe::ObservationLog;
use stagegate::sandbox::model::{Person, Requisition, RiskTier, Role, SandboxCandidate};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The candidate the load generator reads.
const CANDIDATE: &str = "CAND_canary_001";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Stagegate,
    Wiremock,
    Axum,
    StagegateSink,
    AxumServer,
}

#[derive(Debug, Parser)]
#[command(about = "A load-test target: the mock ATS, wiremock-rs or bare axum")]
struct Args {
    /// Which server to run.
    #[arg(long, value_enum)]
    target: Target,
    /// The bearer token clients must send.
    #[arg(long, default_value = "bench_0123456789abcdef")]
    token: String,
    /// The release-gate manifest that seeds the mock ATS.
    #[arg(long, default_value = "manifests/release-gate.yaml")]
    manifest: PathBuf,
    /// Where the observation log goes (default: a temp dir removed on exit).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// A hand-built sandbox candidate (as the mocks' own test fixtures build them).
fn candidate(id: &str, name: &str) -> SandboxCandidate {
    SandboxCandidate {
        id: CandidateId(id.to_owned()),
        profile: "low-risk-fast-path".into(),
        risk_tier: RiskTier::Low,
        person: Person {
            name: name.into(),
            email: format!("{}@example.test", id.to_lowercase()).into(),
            phone: "+1 555 0100".into(),
        },
        requisition: Requisition {
            id: "REQ-1".into(),
            tags: vec!["canary-il".into()],
            location: "US".into(),
        }
        .into(),
        expected_sequence: Vec::new().into(),
        role: Role::Seeded,
    }
}

fn candidates() -> Vec<SandboxCandidate> {
    vec![
        candidate(CANDIDATE, "Zoë Ğürsoy"),
        candidate("CAND_canary_002", "Zoe Gursoy"),
        candidate("CAND_canary_003", "Amadou Diallo"),
        candidate("CAND_canary_004", "Sofía Hernández"),
    ]
}

fn ats_state(manifest: &Path, token: &str, log: ObservationLog) -> Result<AtsState, String> {
    let manifest = Manifest::load(manifest)
        .map_err(|err| format!("cannot load {}: {err}", manifest.display()))?
        .value;
    Ok(AtsState::new(
        Arc::new(manifest),
        &candidates(),
        token,
        1,
        log,
    ))
}

/// The record every target answers: the mock ATS's own rendering of the candidate.
fn record_body(manifest: &Path) -> Result<Value, String> {
    let state = ats_state(
        manifest,
        "unused",
        ObservationLog::to_writer(Box::new(std::io::sink()), "body"),
    )?;
    let candidate = state
        .candidate(CANDIDATE)
        .ok_or_else(|| format!("{CANDIDATE} is not seeded"))?;
    Ok(candidate.record())
}

/// What keeps a target alive; dropped after the stop signal.
enum Running {
    Server(RunningServer),
    Wiremock(wiremock::MockServer),
    Task(tokio::task::JoinHandle<()>),
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut log_to_flush = None;
    let mut _temp_dir = None;
    let (url, running) = match args.target {
        Target::Stagegate | Target::StagegateSink => {
            let log = if args.target == Target::Stagegate {
                let dir = match &args.log_dir {
                    Some(dir) => dir.clone(),
                    None => {
                        let temp = tempfile::tempdir()?;
                        let path = temp.path().to_owned();
                        _temp_dir = Some(temp);
                        path
                    }
                };
                let path = dir.join("observations.jsonl");
                eprintln!("observation log: {}", path.display());
                ObservationLog::create(&path, "bench")?
            } else {
                ObservationLog::to_writer(Box::new(std::io::sink()), "bench")
            };
            log_to_flush = Some(log.clone());
            let state = Arc::new(ats_state(&args.manifest, &args.token, log)?);
            let server = RunningServer::start(ats::router(state), any).await?;
            (server.url(), Running::Server(server))
        }
        Target::Wiremock => {
            use wiremock::matchers::{header as header_is, method, path};
            use wiremock::{Mock, MockServer, ResponseTemplate};
            let body = record_body(&args.manifest)?;
            let server = MockServer::builder()
                .listener(std::net::TcpListener::bind(any)?)
                .start()
                .await;
            Mock::given(method("GET"))
                .and(path(format!("/v1/candidates/{CANDIDATE}")))
                .and(header_is(
                    "authorization",
                    format!("Bearer {}", args.token).as_str(),
                ))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(body)
                        .insert_header("etag", "\"1\""),
                )
                .mount(&server)
                .await;
            (server.uri(), Running::Wiremock(server))
        }
        Target::Axum | Target::AxumServer => {
            let body = Arc::new(record_body(&args.manifest)?);
            let router = Router::new()
                .route(&format!("/v1/candidates/{CANDIDATE}"), get(bare_record))
                .with_state(body);
            if args.target == Target::AxumServer {
                let server = RunningServer::start(router, any).await?;
                (server.url(), Running::Server(server))
            } else {
                let listener = tokio::net::TcpListener::bind(any)
                    .await
                    .map_err(|source| BindError { addr: any, source })?;
                let url = format!("http://{}", listener.local_addr()?);
                let task = tokio::spawn(async move {
                    if let Err(err) = axum::serve(listener, router).await {
                        eprintln!("axum::serve: {err}");
                    }
                });
                (url, Running::Task(task))
            }
        }
    };
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {url}")?;
        stdout.flush()?;
    }
    stop_signal().await?;
    match running {
        Running::Server(server) => server.shutdown().await,
        Running::Wiremock(server) => drop(server),
        Running::Task(task) => task.abort(),
    }
    if let Some(log) = log_to_flush {
        eprintln!("observation log: {} records", log.len());
        log.flush()?;
    }
    Ok(())
}

async fn bare_record(State(body): State<Arc<Value>>) -> Response {
    let mut response = axum::Json(&*body).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, HeaderValue::from_static("\"1\""));
    response
}

/// SIGTERM or SIGINT.
async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
