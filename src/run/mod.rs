//! A gate run: build the sandbox and the plan, start the mocks and the integration,
//! drive every scenario, and keep the artifacts (plan, observation log, the
//! integration's output) for the judge and for people.
//!
//! The run only produces a log; judging it is a separate, pure step, so a recorded
//! run can be judged again offline.

pub mod drive;
pub mod plan;
pub mod policy;
pub mod scenarios;
pub mod shard;
pub mod sut;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::delivery::{RetryPolicy, Sender, WebhookSecret};
use crate::manifest::Manifest;
use crate::mock::{MockConfig, Mocks};
use crate::observe::{Actor, Entry, ObservationLog};
use crate::sandbox::synth::SynthConfig;
use drive::{Driver, ScenarioReport};
use plan::{Plan, Scenario};
use sut::{SutEnv, SutProcess};

/// The names of a run's artifacts in its folder (`--out`, or a wave's `wave-K/`): one
/// place for what writes, finds beside a log, or clears them.
pub mod artifact {
    /// The hash-chained observation log.
    pub const LOG: &str = "observation.jsonl";
    /// The plan the run was driven and is judged by.
    pub const PLAN: &str = "plan.json";
    /// What the integration printed.
    pub const OUTPUT: &str = "integration.log";
    /// The integration's `STAGEGATE_STATE_DIR`.
    pub const STATE: &str = "integration-state";
    /// The JSON report.
    pub const REPORT: &str = "report.json";
    /// The JUnit report.
    pub const JUNIT: &str = "junit.xml";
    /// The Markdown summary.
    pub const SUMMARY: &str = "summary.md";
}

/// Which integration a run tests.
#[derive(Debug, Clone)]
pub enum Integration {
    /// Started by the harness through `sh -c`, with the protocol environment.
    Command(String),
    /// Already running at this base URL; the mocks listen where the config says.
    Url(url::Url),
}

/// A validated run configuration.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The manifest, loaded.
    pub manifest: Arc<Manifest>,
    /// Its absolute path, for the integration.
    pub manifest_path: PathBuf,
    /// What to test.
    pub integration: Integration,
    /// The seed of everything random.
    pub seed: u64,
    /// Scenarios, in run order.
    pub scenarios: Vec<Scenario>,
    /// Where artifacts go.
    pub out_dir: PathBuf,
    /// How much faster than real time policy windows pass.
    pub time_scale: f64,
    /// How long each scenario may take to drain: a stall window and a cap.
    pub drain: drive::DrainLimit,
    /// How long the integration may take to become ready.
    pub ready_timeout: Duration,
    /// Where the mocks listen (port 0: any) and their tokens.
    pub mocks: MockConfig,
    /// The webhook acknowledgement deadline.
    pub ack_sla: Duration,
    /// The shape of the `outage` and `restart` scenarios.
    pub outage: scenarios::OutageSettings,
    /// A generated dataset whose candidates replace the manifest's (`--dataset`).
    pub dataset: Option<PathBuf>,
    /// The vendor's webhook secret; generated from the seed when absent (an
    /// integration reached with `--sut-url` must be given the one it holds).
    pub vendor_secret: Option<WebhookSecret>,
    /// The mock ATS's webhook secret (stage changes), when the integration already has
    /// one (`--sut-url`); generated from the seed otherwise.
    pub ats_secret: Option<WebhookSecret>,
    /// Only this slice of the run (`--shard K/N`; see [`shard`]); `None` runs it all.
    pub shard: Option<shard::Shard>,
    /// Only this wave of the run, or of its shard (`--wave-size`; see [`shard::Part`]).
    pub wave: Option<shard::Wave>,
    /// The hiring policy whose flow the policy scenarios drive (`--policy`).
    pub policy: Option<policy::PolicySetup>,
}

impl RunConfig {
    /// What of the run this configuration drives: its shard and its wave.
    pub fn part(&self) -> shard::Part {
        shard::Part {
            shard: self.shard,
            wave: self.wave,
        }
    }
}

/// Why a run could not be carried out (as opposed to a run that found defects).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An artifact could not be written.
    #[error("cannot write the run's artifacts in {}", path.display())]
    Artifacts {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The observation log failed.
    #[error(transparent)]
    Log(#[from] crate::observe::LogError),
    /// The observation log could not be read back.
    #[error(transparent)]
    ReadLog(#[from] crate::observe::ReadError),
    /// The sandbox could not be built.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// The dataset could not be read.
    #[error(transparent)]
    Dataset(#[from] crate::sandbox::dataset::DatasetError),
    /// The plan could not be made.
    #[error(transparent)]
    Prepare(#[from] scenarios::PrepareError),
    /// The policy flow could not be planned.
    #[error("cannot plan the hiring-policy flow")]
    Policy(#[from] policy::PolicyPlanError),
    /// A mock could not bind its address.
    #[error("the sandbox could not start")]
    Mocks(#[source] crate::http::BindError),
    /// The integration did not start.
    #[error("the integration under test could not start")]
    Integration(#[source] sut::StartError),
}

impl RunError {
    /// Whether the failure is the sandbox's or the integration's failure to start.
    pub fn is_start_failure(&self) -> bool {
        matches!(self, RunError::Mocks(_) | RunError::Integration(_))
    }
}

/// What a run produced, before judging.
#[derive(Debug)]
pub struct RunOutput {
    /// The run's id.
    pub run_id: String,
    /// The plan.
    pub plan: Plan,
    /// Per scenario, what was sent and what landed.
    pub scenarios: Vec<ScenarioReport>,
    /// The observation log (`observation.jsonl`), complete and flushed: the judge
    /// streams it rather than holding it.
    pub log: PathBuf,
    /// The artifacts folder.
    pub out_dir: PathBuf,
    /// A description of the integration (command or URL).
    pub integration: String,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// From the start until the mocks and the integration were ready.
    pub start_time: Duration,
    /// Driving every scenario until it drained.
    pub drive_time: Duration,
}

/// Carries out a run; `progress` hears the number of deliveries done, and gets the
/// total first through `total`.
pub async fn execute(
    config: &RunConfig,
    total: &dyn Fn(u64),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RunOutput, RunError> {
    let started = Instant::now();
    let out = &config.out_dir;
    std::fs::create_dir_all(out).map_err(|source| RunError::Artifacts {
        path: out.clone(),
        source,
    })?;
    let run_id = format!(
        "run-{:016x}-{}",
        config.seed,
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    );
    let log = ObservationLog::create(&out.join(artifact::LOG), &run_id)?;
    log.append(
        Actor::Harness,
        "run.start",
        Entry::detail(json!({"seed": config.seed, "scenarios": config.scenarios, "manifest": config.manifest_path})),
    );

    let part = config.part();
    let sandbox = match &config.dataset {
        // A shard (or a wave) of a large dataset holds its own part of it.
        Some(path) if !part.whole() => {
            crate::sandbox::load_dataset_part(&config.manifest, path, &|position| {
                part.needs_candidate(&config.scenarios, position)
            })?
        }
        Some(path) => crate::sandbox::load_dataset(&config.manifest, path)?,
        None => crate::sandbox::build(&config.manifest, config.seed)?,
    };
    let mocks = Mocks::start(Arc::clone(&config.manifest), &[], &config.mocks, &log)
        .await
        .map_err(RunError::Mocks)?;
    let vendor_url = mocks.vendor_url().parse().map_err(|_| {
        RunError::Mocks(crate::http::BindError {
            addr: config.mocks.vendor_addr,
            source: std::io::Error::other("the vendor URL does not parse"),
        })
    })?;
    // An hour back leaves room for `<= now()` however long the run takes.
    let anchor = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let synth = SynthConfig {
        seed: config.seed,
        anchor,
        vendor_base_url: vendor_url,
        envelope: config.manifest.envelope.clone(),
    };
    // Every group's deliveries are generated when it is sent; their evidence packs
    // reach the mock vendor then, before the integration can ask for them.
    let vendor = Arc::clone(&mocks.vendor);
    let generator = scenarios::Generator::new(&config.manifest, &sandbox, synth.clone())
        .with_packs(move |pack| vendor.register_pack(pack));
    let mut prepared = shard::prepare(
        part,
        &generator,
        &config.scenarios,
        config.ack_sla.as_millis() as u64,
        &config.outage,
    )?;
    prepared.plan.time_scale = config.time_scale;
    let policy_scenarios: Vec<Scenario> = config
        .scenarios
        .iter()
        .copied()
        .filter(|s| s.is_policy() && part.owns_scenario(*s))
        .collect();
    if let Some(setup) = &config.policy
        && !policy_scenarios.is_empty()
    {
        let taken: Vec<String> = prepared
            .plan
            .candidates
            .iter()
            .map(|c| c.candidate.to_string())
            .collect();
        let planned = policy::prepare(&policy::PolicyInputs {
            manifest: &config.manifest,
            policy: &setup.policy,
            path: setup.path.display().to_string(),
            stages: &setup.stages,
            sandbox: &sandbox.candidates,
            taken: &taken,
            scenarios: &policy_scenarios,
            synth,
        })?;
        prepared.plan.candidates.extend(planned.planned);
        mocks.ats.add_candidates(&planned.candidates);
        prepared.plan.policy = Some(planned.plan);
    }
    // The plan is held until the run is judged: no room to spare.
    prepared.plan.candidates.shrink_to_fit();
    prepared.plan.events.shrink_to_fit();
    prepared.plan.stable_fields.shrink_to_fit();
    // The mocks keep their own state: the scenarios' copies are made for them a chunk
    // at a time and not held for the run.
    prepared.copies(|chunk| mocks.ats.add_candidates(chunk));
    let ids = prepared.plan.events.iter();
    mocks
        .ats
        .expect_texts(ids.flat_map(|e| [e.event_id.clone(), e.idempotency_key.clone()]));
    let plan_path = out.join(artifact::PLAN);
    write_plan(&plan_path, &prepared).map_err(|source| RunError::Artifacts {
        path: plan_path,
        source,
    })?;

    let mut rng = ChaCha8Rng::seed_from_u64(crate::mock::mix(config.seed, 7));
    let generated = WebhookSecret::generate(&mut rng);
    let vendor_secret = config.vendor_secret.clone().unwrap_or(generated);
    let generated = WebhookSecret::generate(&mut rng);
    let ats_secret = config.ats_secret.clone().unwrap_or(generated);
    let (process, url, integration) = match &config.integration {
        Integration::Command(command) => {
            let listen = free_port().map_err(|source| {
                RunError::Integration(sut::StartError::Spawn {
                    command: command.clone(),
                    source,
                })
            })?;
            // Each run starts the integration afresh: a state folder left by an earlier
            // run into the same `--out` (same seed, same event ids) would make every
            // event look like a duplicate. The `restart` scenario keeps it within a run.
            let state_dir = out.join(artifact::STATE);
            let fresh = match std::fs::remove_dir_all(&state_dir) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                _ => std::fs::create_dir_all(&state_dir),
            };
            fresh.map_err(|source| RunError::Artifacts {
                path: state_dir.clone(),
                source,
            })?;
            let env = SutEnv {
                listen,
                ats_url: mocks.ats_url().to_owned(),
                ats_token: config.mocks.ats_token.clone(),
                vendor_url: mocks.vendor_url().to_owned(),
                vendor_token: config.mocks.vendor_token.clone(),
                vendor_webhook_secret: vendor_secret.to_string(),
                ats_webhook_secret: ats_secret.to_string(),
                notify_url: mocks.notify_url().to_owned(),
                manifest: config.manifest_path.clone(),
                state_dir,
                time_scale: config.time_scale,
                policy: config.policy.as_ref().map(|p| {
                    (
                        std::path::absolute(&p.path).unwrap_or_else(|_| p.path.clone()),
                        p.stages.clone(),
                    )
                }),
            };
            let output = out.join(artifact::OUTPUT);
            let process = SutProcess::start(command, &env, &output, &log, config.ready_timeout)
                .await
                .map_err(RunError::Integration)?;
            let url = env.url();
            let started = Arc::new(Started {
                process: tokio::sync::Mutex::new(Some(process)),
                command: command.clone(),
                env,
                output,
                log: log.clone(),
                ready_timeout: config.ready_timeout,
            });
            (Some(started), url, command.clone())
        }
        Integration::Url(url) => {
            let base = url.as_str().trim_end_matches('/').to_owned();
            if let Err(err) = sut::wait_url_ready(&base, config.ready_timeout).await {
                mocks.shutdown().await;
                return Err(RunError::Integration(err));
            }
            (None, base, url.to_string())
        }
    };
    let webhook_url = format!("{url}/webhooks/vendor").parse().map_err(|_| {
        RunError::Integration(sut::StartError::NotReady {
            url: url.clone(),
            timeout: Duration::ZERO,
            last_lines: String::new(),
        })
    })?;

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_default();
    let retry = RetryPolicy {
        ack_timeout: config.ack_sla.max(Duration::from_millis(100)) * 2,
        ..RetryPolicy::default()
    };
    let sender = Arc::new(Sender::new(vendor_secret, retry, config.seed, log.clone()));
    let driver = Driver {
        sender,
        url: webhook_url,
        ats: Arc::clone(&mocks.ats),
        log: log.clone(),
        drain: config.drain,
        notify: Arc::clone(&mocks.notify),
        channels: config.manifest.notify_channels().to_vec(),
        restarter: process
            .as_ref()
            .map(|p| Arc::clone(p) as Arc<dyn drive::Restarter>),
        settle: drive::Settle::new(
            &crate::protocol::KillSwitchTolerances::new(
                &config
                    .manifest
                    .raw
                    .release_gate
                    .kill_switch
                    .trigger_conditions,
            ),
            config.time_scale,
        ),
        calls: drive::CallHistory::default(),
    };
    total(prepared.deliveries() as u64);
    let start_time = started.elapsed();
    let mut reports = driver
        .drive(prepared.batches, &prepared.plan, progress)
        .await;
    if let (Some(plan), Some(setup)) = (prepared.plan.policy.clone(), &config.policy) {
        let ats_retry = setup
            .policy
            .ats_events
            .first()
            .map_or(RetryPolicy::default(), |e| {
                RetryPolicy::from_policy(&e.delivery.retry)
            });
        let policy_driver = Arc::new(policy::drive::PolicyDriver {
            ats_sender: Sender::new(
                ats_secret.clone(),
                RetryPolicy {
                    ack_timeout: retry.ack_timeout,
                    // The ATS's backoff is 15 s doubling up to 8 minutes in real-world
                    // time, on the run's clock like every policy window.
                    base_delay: crate::protocol::scaled(
                        ats_retry.base_delay * 60,
                        config.time_scale,
                    ),
                    max_delay: crate::protocol::scaled(ats_retry.max_delay * 60, config.time_scale),
                    ..ats_retry
                },
                crate::mock::mix(config.seed, 11),
                log.clone(),
            ),
            vendor_sender: Arc::clone(&driver.sender),
            base_url: url.clone(),
            ats: Arc::clone(&mocks.ats),
            vendor: Arc::clone(&mocks.vendor),
            log: log.clone(),
            drain: config.drain,
            time_scale: config.time_scale,
            envelope: config.manifest.envelope.clone(),
            client: client.clone(),
            notify: Arc::clone(&mocks.notify),
            channels: config.manifest.notify_channels().to_vec(),
            pause_gates: config.manifest.pauses_candidate_gates(),
        });
        reports.extend(policy_driver.drive(plan, &policy_scenarios).await);
    }
    let drive_time = started.elapsed() - start_time;

    if let Some(started) = process
        && let Some(process) = started.process.lock().await.take()
    {
        process.stop().await;
    }
    mocks.shutdown().await;
    log.append(
        Actor::Harness,
        "run.end",
        Entry::detail(json!({"elapsed_ms": started.elapsed().as_millis() as u64})),
    );
    log.flush().map_err(|source| RunError::Artifacts {
        path: out.join(artifact::LOG),
        source,
    })?;
    Ok(RunOutput {
        run_id,
        plan: prepared.plan,
        scenarios: reports,
        log: out.join(artifact::LOG),
        out_dir: out.clone(),
        integration,
        elapsed: started.elapsed(),
        start_time,
        drive_time,
    })
}

/// Hands the memory a finished run (one wave of a larger one) freed back to the
/// operating system, so the next wave starts from the harness's baseline instead of
/// beside what the allocator kept of the last.
#[allow(unsafe_code)]
pub fn release_memory() {
    #[cfg(not(feature = "system-alloc"))]
    // SAFETY: `mi_collect` frees only memory mimalloc holds with no allocation in it,
    // and may be called from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}

/// Writes `plan.json` as it serialises, so a large plan is never a second time in
/// memory as text, nor its payloads at all ([`scenarios::Prepared::write_plan`]).
fn write_plan(path: &std::path::Path, prepared: &scenarios::Prepared<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(path)?);
    prepared.write_plan(&mut out)?;
    out.flush()
}

/// The integration the harness started, which the `restart` scenario kills and
/// starts again with the same environment and state folder.
struct Started {
    process: tokio::sync::Mutex<Option<SutProcess>>,
    command: String,
    env: SutEnv,
    output: PathBuf,
    log: ObservationLog,
    ready_timeout: Duration,
}

impl drive::Restarter for Started {
    fn restart(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let mut slot = self.process.lock().await;
            if let Some(process) = slot.take() {
                process.kill().await;
            }
            let process = SutProcess::start(
                &self.command,
                &self.env,
                &self.output,
                &self.log,
                self.ready_timeout,
            )
            .await
            .map_err(|err| err.to_string())?;
            *slot = Some(process);
            Ok(())
        })
    }
}

/// A free loopback port for the integration (bound and released: the integration
/// binds it a moment later, and nothing else on loopback races for it in practice).
fn free_port() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.local_addr()
}
