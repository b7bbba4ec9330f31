//! `stagegate run`: the release gate. Arguments are validated into a
//! [`RunConfig`] before anything starts; then the run, the judge and the reports.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{MockArgs, Ui, load_manifest, runtime};
use crate::exit::ExitCode;
use crate::manifest::Manifest;
use crate::report::{
    self, Artifacts, IntegrationInfo, IntegrationKind, REPORT_FORMAT, ReportFormat, ReportTarget,
    RunReport, Timings,
};
use crate::run::plan::Scenario;
use crate::run::scenarios::{OutageKind, OutageSettings};
use crate::run::shard::Shard;
use crate::run::{Integration, RunConfig, RunError, RunOutput, artifact};

mod interrupts;
mod waves;

use interrupts::Interrupts;
pub use waves::DEFAULT_WAVE_SIZE;

/// Arguments of `stagegate run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The release-gate manifest.
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// Run only these scenarios (repeatable) [default: all].
    #[arg(long = "scenario", value_enum, value_name = "NAME")]
    pub scenarios: Vec<Scenario>,
    /// Run only the K-th of N disjoint slices of the candidates (each kill-switch
    /// scenario runs whole in one shard); `stagegate report merge` combines the N
    /// reports into the unsharded verdict.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Drive a `--dataset` of more candidates than this in waves of about N, one after
    /// another, each judged and freed before the next, so the harness's memory stays
    /// near one wave's as the dataset grows; the verdict is the whole run's (0: one
    /// wave).
    #[arg(long, default_value_t = DEFAULT_WAVE_SIZE, value_name = "N")]
    pub wave_size: u64,
    /// What to test, how, and what to keep.
    #[command(flatten)]
    pub gate: GateArgs,
}

/// Arguments of `stagegate report merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' JSON reports (`--report json=PATH`, or `report.json` in `--out`), one per shard.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// Where the merged JSON report goes.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also write the merged JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the merged Markdown summary here.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Failed-check findings shown in the terminal summary.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_shown: usize,
}

/// Arguments of `stagegate rehearse outage`.
#[derive(Debug, clap::Args)]
pub struct RehearseArgs {
    /// The release-gate manifest.
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// How long the ATS stays down, in seconds of real time.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub duration: f64,
    /// How the ATS fails.
    #[arg(long, value_enum, default_value_t = OutageKind::Mixed)]
    pub fault: OutageKind,
    /// Copies of the sandbox candidates whose events flow into the outage.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub volume: u64,
    /// Also SIGKILL the integration halfway through the outage and start it again.
    #[arg(long)]
    pub restart: bool,
    /// What to test, how, and what to keep.
    #[command(flatten)]
    pub gate: GateArgs,
}

/// The options `run` and `rehearse` share.
#[derive(Debug, clap::Args)]
pub struct GateArgs {
    /// Start this integration (`sh -c`, with the STAGEGATE_* environment of the
    /// protocol) [default: the built-in reference relay].
    #[arg(long, value_name = "CMD", conflicts_with = "sut_url")]
    pub sut_cmd: Option<String>,
    /// Test an integration already running at this base URL.
    #[arg(long, value_name = "URL")]
    pub sut_url: Option<url::Url>,
    /// The seed of everything random; the report prints it for replays.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write a report: json=PATH, junit=PATH, markdown=PATH or html=PATH (repeatable).
    #[arg(long = "report", value_name = "FORMAT=PATH")]
    pub reports: Vec<ReportTarget>,
    /// Keep the artifacts here: reports, observation log, plan, the integration's output.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How much faster than real time the manifest's and the policy's windows pass
    /// (passed to the integration as STAGEGATE_TIME_SCALE) [default: 60; `run` of the
    /// built-in relay: 600; lowered so that no policy SLA judged on this clock is under
    /// a second: 60 with the seed policy's 60 s fan-out].
    #[arg(long, value_name = "FACTOR")]
    pub time_scale: Option<f64>,
    /// A scenario gives up waiting for events to land once none has landed for
    /// this long, in seconds (it waits as long as events keep landing).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub drain_deadline: f64,
    /// The most a scenario may take to drain in all, in seconds, however steadily
    /// events land.
    #[arg(long, default_value_t = 1800.0, value_name = "SECONDS")]
    pub drain_cap: f64,
    /// How long the integration may take to answer GET /healthz, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub ready_timeout: f64,
    /// Drive the candidates of this dataset (`stagegate sandbox generate`) instead of
    /// the manifest's.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// The hiring policy: adds the policy scenarios (stage changes, identity gate,
    /// step-up, reconciliation) and its `slas.webhookAckSeconds` is the ack SLA
    /// [default: the manifest's `policy:`, else none and 1 s].
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<PathBuf>,
    /// The hiring stages candidates move through in the policy flow, in order,
    /// comma-separated.
    #[arg(
        long,
        value_name = "STAGE,…",
        value_delimiter = ',',
        default_value = "application-review,screen,technical-interview,assessment,offer"
    )]
    pub policy_stages: Vec<String>,
    /// The vendor webhook secret (`whsec_…`) the integration verifies with; needed
    /// with `--sut-url` [default: generated from the seed and passed to started
    /// integrations as STAGEGATE_VENDOR_WEBHOOK_SECRET].
    #[arg(
        long,
        env = "STAGEGATE_VENDOR_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<crate::delivery::WebhookSecret>,
    /// The secret the mock ATS signs stage changes with (`whsec_…`); needed with
    /// `--sut-url` and a policy [default: generated from the seed and passed to started
    /// integrations as STAGEGATE_ATS_WEBHOOK_SECRET].
    #[arg(
        long,
        env = "STAGEGATE_ATS_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub ats_webhook_secret: Option<crate::delivery::WebhookSecret>,
    /// Failed-check findings shown in the terminal summary.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_shown: usize,
    /// Every check must be judged: a check that skips blocks the release (as
    /// `checks: {ID: {required: true}}` does for one check).
    #[arg(long)]
    pub require_all: bool,
    /// Where the mocks listen and their tokens (for `--sut-url` integrations).
    #[command(flatten)]
    pub mocks: MockArgs,
}

/// A validated `run`: the library's configuration plus what the CLI does around it.
struct GateRun {
    config: RunConfig,
    kind: IntegrationKind,
    reports: Vec<ReportTarget>,
    /// Holds the artifacts folder of a run without `--out` until the run ends.
    _scratch: Option<tempfile::TempDir>,
    keep: bool,
    replay: String,
    manifest_display: String,
    max_shown: usize,
    require_all: bool,
    /// Source candidates a wave of a dataset's run drives at most (0: one wave).
    wave_size: u64,
}

/// Why the arguments cannot make a run.
#[derive(Debug, thiserror::Error)]
enum ArgsError {
    #[error("--{name} must be a positive number of seconds, got {value}")]
    Seconds { name: &'static str, value: f64 },
    #[error("--time-scale must be at least 1 (1 is real time), got {0}")]
    TimeScale(f64),
    #[error("cannot make a scratch folder for the run's artifacts")]
    Scratch(#[source] io::Error),
    #[error("cannot find the stagegate executable to start the reference relay")]
    CurrentExe(#[source] io::Error),
    #[error("cannot resolve the manifest path {}", path.display())]
    ManifestPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the `restart` scenario kills and restarts the integration, so it needs --sut-cmd (or the built-in relay), not --sut-url"
    )]
    RestartNeedsCommand,
    #[error(
        "--sut-url tests an integration that is already running, so the harness cannot choose for it: give {0} (the tokens and secrets may also come from STAGEGATE_ATS_TOKEN, STAGEGATE_VENDOR_TOKEN, STAGEGATE_VENDOR_WEBHOOK_SECRET and, with a policy, STAGEGATE_ATS_WEBHOOK_SECRET) and configure the integration with the same values"
    )]
    SutUrlNeeds(String),
    #[error("two reports would be written to {}", .0.display())]
    SameReportPath(PathBuf),
    #[error(
        "the `{0}` scenario drives the hiring-policy flow: give the policy with --policy POLICY (or `policy:` in the manifest)"
    )]
    PolicyScenarioNeedsPolicy(Scenario),
}

fn seconds(name: &'static str, value: f64) -> Result<Duration, ArgsError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or(ArgsError::Seconds { name, value })
}

/// Quotes for `sh -c`; text with a NUL (which no shell can take) is left as is.
fn quote(text: &str) -> String {
    shlex::try_quote(text).map_or_else(|_| text.to_owned(), |q| q.into_owned())
}

/// What a gate run is asked to do, before validation.
struct Request {
    manifest: PathBuf,
    scenarios: Vec<Scenario>,
    /// The outage's shape; `None`: `run`'s, held for [`crate::run::scenarios::OUTAGE_HOLD`]
    /// on the run's clock.
    outage: Option<OutageSettings>,
    /// The words that select the run in a replay (`run … --scenario x`, `rehearse outage …`).
    replay: Vec<String>,
    /// Only this slice of the run.
    shard: Option<Shard>,
    /// Whether a policy adds its scenarios (`run`; a rehearsal keeps to its own).
    policy_scenarios: bool,
    /// `--wave-size` (`run`; a rehearsal is one wave).
    wave_size: u64,
}

impl GateRun {
    fn new(
        request: Request,
        args: GateArgs,
        manifest: Manifest,
        policy: Option<crate::run::policy::PolicySetup>,
    ) -> Result<Self, ArgsError> {
        let ack_sla = policy.as_ref().map_or(Duration::from_secs(1), |p| {
            Duration::try_from_secs_f64(p.policy.slas.webhook_ack_seconds)
                .unwrap_or(Duration::from_secs(1))
        });
        let drain = crate::run::drive::DrainLimit {
            stall: seconds("drain-deadline", args.drain_deadline)?,
            cap: seconds("drain-cap", args.drain_cap)?,
        };
        let ready_timeout = seconds("ready-timeout", args.ready_timeout)?;
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = args.reports.iter().find(|r| !seen.insert(r.path.clone())) {
            return Err(ArgsError::SameReportPath(dup.path.clone()));
        }
        let manifest_path =
            std::path::absolute(&request.manifest).map_err(|source| ArgsError::ManifestPath {
                path: request.manifest.clone(),
                source,
            })?;
        let (integration, kind) = match (&args.sut_cmd, &args.sut_url) {
            (Some(cmd), _) => (Integration::Command(cmd.clone()), IntegrationKind::Command),
            (None, Some(url)) => {
                // An integration that is already running was configured before the
                // harness started: everything it must reach has to be fixed up front.
                let missing: Vec<&str> = [
                    ("--ats-addr", args.mocks.ats_addr.is_none()),
                    ("--vendor-addr", args.mocks.vendor_addr.is_none()),
                    ("--notify-addr", args.mocks.notify_addr.is_none()),
                    ("--ats-token", args.mocks.ats_token.is_none()),
                    ("--vendor-token", args.mocks.vendor_token.is_none()),
                    ("--webhook-secret", args.webhook_secret.is_none()),
                    // Stage changes are signed only in the policy flow.
                    (
                        "--ats-webhook-secret",
                        policy.is_some() && args.ats_webhook_secret.is_none(),
                    ),
                ]
                .into_iter()
                .filter_map(|(flag, absent)| absent.then_some(flag))
                .collect();
                if !missing.is_empty() {
                    return Err(ArgsError::SutUrlNeeds(missing.join(", ")));
                }
                (Integration::Url(url.clone()), IntegrationKind::Url)
            }
            (None, None) => {
                let exe = std::env::current_exe().map_err(ArgsError::CurrentExe)?;
                let command = format!("{} relay", quote(&exe.to_string_lossy()));
                (
                    Integration::Command(command),
                    IntegrationKind::ReferenceRelay,
                )
            }
        };
        let time_scale = args.time_scale.unwrap_or_else(|| {
            // A rehearsal is watched by people: its timeline keeps the human clock.
            default_time_scale(
                kind == IntegrationKind::ReferenceRelay && request.outage.is_none(),
                policy.as_ref().map(|p| &p.policy.slas),
            )
        });
        if !(time_scale >= 1.0 && time_scale.is_finite()) {
            return Err(ArgsError::TimeScale(time_scale));
        }
        let mut scenarios: Vec<Scenario> = if request.scenarios.is_empty() {
            // An integration the harness did not start cannot be restarted by it.
            Scenario::ALL
                .into_iter()
                .filter(|s| args.sut_url.is_none() || *s != Scenario::Restart)
                .collect()
        } else if args.sut_url.is_some() && request.scenarios.contains(&Scenario::Restart) {
            return Err(ArgsError::RestartNeedsCommand);
        } else {
            let mut chosen = request.scenarios.clone();
            chosen.sort();
            chosen.dedup();
            chosen
        };
        match (&policy, scenarios.iter().find(|s| s.is_policy())) {
            (None, Some(&scenario)) => return Err(ArgsError::PolicyScenarioNeedsPolicy(scenario)),
            // A policy adds its scenarios, unless some were chosen by name.
            (Some(_), None) if request.policy_scenarios => scenarios.extend(Scenario::POLICY),
            _ => {}
        }
        let (out_dir, scratch) = match &args.out {
            Some(dir) => (dir.clone(), None),
            None => {
                let scratch = tempfile::Builder::new()
                    .prefix("stagegate-run-")
                    .tempdir()
                    .map_err(ArgsError::Scratch)?;
                (scratch.path().to_owned(), Some(scratch))
            }
        };
        let mut replay = replay_command(&request.replay, &args);
        if let Some(shard) = request.shard {
            // Last, so `report merge` can drop it to replay the whole run.
            replay.push_str(&format!(" --shard {shard}"));
        }
        Ok(GateRun {
            config: RunConfig {
                manifest: Arc::new(manifest),
                manifest_path,
                integration,
                seed: args.seed,
                scenarios,
                out_dir,
                time_scale,
                drain,
                ready_timeout,
                mocks: args.mocks.config(args.seed),
                ack_sla,
                policy,
                vendor_secret: args.webhook_secret.clone(),
                ats_secret: args.ats_webhook_secret.clone(),
                outage: request
                    .outage
                    .unwrap_or_else(|| OutageSettings::on_clock(time_scale)),
                dataset: args.dataset.clone(),
                shard: request.shard,
                wave: None,
            },
            kind,
            reports: args.reports,
            keep: scratch.is_none(),
            _scratch: scratch,
            replay,
            manifest_display: request.manifest.display().to_string(),
            max_shown: args.max_shown,
            require_all: args.require_all,
            wave_size: request.wave_size,
        })
    }
}

/// The time scale of a run of the built-in relay that names none: the manifest's
/// 5-minute window in 0.5 s, a 30 s probe interval in 50 ms. A compressed window asks
/// the integration to make a rate rule's sample of calls (2S + 16) within it; the
/// relay makes thousands a second, so this is as fast as its scenarios stay meaningful.
pub const FASTEST_TIME_SCALE: f64 = 600.0;

/// The time scale of a run of an integration of one's own that names none: 5 minutes
/// in 5 s, which asks for a few dozen ATS calls a second, whatever it is written in.
pub const INTEGRATION_TIME_SCALE: f64 = 60.0;

/// The shortest real time a policy SLA judged on the run's clock may last: below it,
/// a loaded machine's own latency, not the integration, would decide the check.
const SHORTEST_SCALED_SLA_SECONDS: f64 = 1.0;

/// The time scale of a run without `--time-scale`: [`FASTEST_TIME_SCALE`] for the
/// built-in relay, [`INTEGRATION_TIME_SCALE`] for any other integration, lowered so
/// that the policy's SLAs judged on the run's clock (the fan-out, the identity
/// verification target) each last at least [`SHORTEST_SCALED_SLA_SECONDS`].
pub fn default_time_scale(
    reference_relay: bool,
    slas: Option<&crate::manifest::policy::Slas>,
) -> f64 {
    let fastest = if reference_relay {
        FASTEST_TIME_SCALE
    } else {
        INTEGRATION_TIME_SCALE
    };
    let Some(slas) = slas else {
        return fastest;
    };
    let shortest = slas
        .trigger_fanout_seconds
        .min(slas.identity_verification_target_minutes * 60.0);
    (shortest / SHORTEST_SCALED_SLA_SECONDS).clamp(1.0, fastest)
}

/// The command line that replays a run: the same selection, seed and integration.
fn replay_command(selection: &[String], args: &GateArgs) -> String {
    let mut words = vec!["stagegate".to_owned()];
    words.extend(selection.iter().cloned());
    words.push(format!("--seed {}", args.seed));
    if let Some(cmd) = &args.sut_cmd {
        words.push(format!("--sut-cmd {}", quote(cmd)));
    }
    if let Some(url) = &args.sut_url {
        words.push(format!("--sut-url {url}"));
    }
    if let Some(dataset) = &args.dataset {
        words.push(format!("--dataset {}", quote(&dataset.to_string_lossy())));
    }
    if let Some(time_scale) = args.time_scale {
        words.push(format!("--time-scale {time_scale}"));
    }
    if let Some(policy) = &args.policy {
        words.push(format!("--policy {}", quote(&policy.to_string_lossy())));
    }
    if args.policy_stages != crate::run::policy::DEFAULT_STAGES {
        words.push(format!(
            "--policy-stages {}",
            quote(&args.policy_stages.join(","))
        ));
    }
    if args.require_all {
        words.push("--require-all".to_owned());
    }
    words.join(" ")
}

/// The run's hiring policy: `--policy`, else the manifest's `policy:` (relative to
/// the manifest); `Err` after reporting a policy that does not load.
fn load_policy(
    flag: Option<&Path>,
    manifest: &Manifest,
    manifest_path: &Path,
    stages: &[String],
    ui: &mut Ui,
) -> Result<Option<crate::run::policy::PolicySetup>, ()> {
    let path = match (flag, &manifest.raw.policy) {
        (Some(path), _) => path.to_owned(),
        (None, Some(relative)) => manifest_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(relative),
        (None, None) => return Ok(None),
    };
    match crate::manifest::load_policy(&path) {
        Ok(loaded) => {
            ui.warnings(&loaded.warnings);
            Ok(Some(crate::run::policy::PolicySetup {
                policy: loaded.value,
                path,
                stages: stages.iter().map(|s| s.trim().to_owned()).collect(),
            }))
        }
        Err(err) => {
            ui.diagnostic(&err);
            Err(())
        }
    }
}

/// `stagegate run`.
pub(super) fn run(args: RunArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let mut replay = vec!["run".to_owned(), quote(&args.manifest.to_string_lossy())];
    let mut scenarios = args.scenarios.clone();
    scenarios.sort();
    scenarios.dedup();
    if !scenarios.is_empty() && scenarios != Scenario::ALL {
        replay.extend(scenarios.iter().map(|s| format!("--scenario {s}")));
    }
    if args.wave_size != DEFAULT_WAVE_SIZE {
        replay.push(format!("--wave-size {}", args.wave_size));
    }
    let request = Request {
        manifest: args.manifest,
        scenarios,
        outage: None,
        replay,
        shard: args.shard,
        policy_scenarios: true,
        wave_size: args.wave_size,
    };
    gate(request, args.gate, out, ui, false)
}

/// `stagegate rehearse outage`.
pub(super) fn rehearse(args: RehearseArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let hold = match seconds("duration", args.duration) {
        Ok(hold) => hold,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    let mut replay = vec![
        "rehearse outage".to_owned(),
        quote(&args.manifest.to_string_lossy()),
        format!("--duration {}", args.duration),
        format!("--fault {}", args.fault.name()),
        format!("--volume {}", args.volume),
    ];
    if args.restart {
        replay.push("--restart".to_owned());
    }
    let scenario = if args.restart {
        Scenario::Restart
    } else {
        Scenario::Outage
    };
    let request = Request {
        manifest: args.manifest,
        scenarios: vec![scenario],
        outage: Some(OutageSettings {
            hold,
            kind: args.fault,
            sets: args.volume as usize,
        }),
        replay,
        shard: None,
        policy_scenarios: false,
        wave_size: 0,
    };
    gate(request, args.gate, out, ui, true)
}

/// Validates, runs, judges and reports; `timeline` adds the outage timeline.
fn gate(
    request: Request,
    args: GateArgs,
    out: &mut dyn Write,
    ui: &mut Ui,
    timeline: bool,
) -> ExitCode {
    let Some(manifest) = load_manifest(&request.manifest, ui) else {
        return ExitCode::Usage;
    };
    let Ok(policy) = load_policy(
        args.policy.as_deref(),
        &manifest,
        &request.manifest,
        &args.policy_stages,
        ui,
    ) else {
        return ExitCode::Usage;
    };
    let gate = match GateRun::new(request, args, manifest, policy) {
        Ok(gate) => gate,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    if let Integration::Url(url) = &gate.config.integration {
        announce(&gate.config, url, ui);
    }
    let waves = gate.waves(ui);
    if gate.keep
        && let Err(err) = waves::clear_stale(&gate.config.out_dir, waves)
    {
        ui.error(&err);
        return ExitCode::Usage;
    }
    let started = Instant::now();
    // A Ctrl-C or SIGTERM drops the run: the integration it started (a process group
    // of its own, which a terminal's Ctrl-C does not reach) is killed with it, rather
    // than left running on its port and state folder.
    let interrupts = Interrupts::watch();
    if waves > 1 {
        return waves::gate_in_waves(&gate, waves, interrupts.as_ref(), out, ui);
    }
    let output = match drive(&gate.config, &progress_bar(), interrupts.as_ref(), ui) {
        Ok(output) => output,
        Err(code) => return code,
    };
    let mut report = match judge(&gate, &gate.config, &output, started, gate.require_all) {
        Ok(report) => report,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    // The outage timeline and the HTML report's per-candidate pages read the whole
    // log; only those who ask for them pay for it.
    let records = std::cell::OnceCell::new();
    let records = || {
        records.get_or_init(|| match crate::observe::read(&output.log) {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!("the timeline and the HTML report miss the log: {err}");
                Vec::new()
            }
        })
    };
    if timeline {
        report.timeline = gate
            .config
            .scenarios
            .iter()
            .find_map(|s| report::timeline::outage(&output.plan, records(), *s));
    }
    // The HTML report also summarises every candidate from the plan and the log.
    let audit = gate
        .asks_for_html()
        .then(|| report::candidates::build(&output.plan, records()));
    deliver(&gate, &report, audit.as_ref(), false, out, ui)
}

/// Starts the mocks and the integration and drives one run (or one wave of it) on a
/// runtime of its own, its progress on `bar` (cleared when the drive ends); `Err` is
/// the exit code of a run that could not be carried out or was interrupted, reported.
fn drive(
    config: &RunConfig,
    bar: &indicatif::ProgressBar,
    interrupts: Option<&Interrupts>,
    ui: &mut Ui,
) -> Result<RunOutput, ExitCode> {
    let Some(runtime) = runtime(ui) else {
        return Err(ExitCode::StartFailure);
    };
    let total = |total| bar.inc_length(total);
    let progress = |done| bar.inc(done);
    let output = runtime.block_on(async {
        tokio::select! {
            biased;
            () = Interrupts::during_drive(interrupts) => None,
            output = crate::run::execute(config, &total, &progress) => Some(output),
        }
    });
    let Some(output) = output else {
        // Waits for the run's tasks to be dropped: the last of them holds the
        // observation log, whose writer then writes out the records it still buffers.
        runtime.shutdown_timeout(Duration::from_secs(5));
        bar.finish_and_clear();
        let integration = match &config.integration {
            Integration::Command(_) => "the integration it started was stopped with it",
            Integration::Url(_) => {
                "the integration at --sut-url was not started by stagegate and runs on"
            }
        };
        ui.error(&std::io::Error::other(format!(
            "interrupted: the run was stopped before it was judged, and {integration} \
             (what was logged so far is in {})",
            config.out_dir.display()
        )));
        return Err(ExitCode::Interrupted);
    };
    if let Some(interrupts) = interrupts {
        interrupts.judging();
    }
    // The run's servers and tasks are done. Their threads' memory goes back to the
    // allocator's shared pool when they exit, where the judge reuses it; idle, they
    // would keep it while the judge takes more (a large run's peak was there).
    runtime.shutdown_background();
    bar.finish_and_clear();
    output.map_err(|err| {
        ui.error(&err);
        start_failure_code(&err)
    })
}

/// Judges a run (or one wave of it) from its log and makes its report; with
/// `require_all`, a check that was not judged blocks it (`--require-all`).
fn judge(
    gate: &GateRun,
    config: &RunConfig,
    output: &RunOutput,
    started: Instant,
    require_all: bool,
) -> Result<RunReport, crate::judge::JudgeError> {
    let judged = Instant::now();
    let mut judgement = crate::judge::judge_log(&config.manifest, &output.plan, &output.log)?;
    if require_all {
        judgement.require_all();
    }
    let judge_ms = judged.elapsed().as_millis() as u64;
    Ok(build_report(gate, config, output, judge_ms, started.elapsed()).with_judgement(judgement))
}

/// The reports a run with `--out` keeps beside its artifacts.
const KEPT_REPORTS: [(&str, ReportFormat); 3] = [
    (artifact::REPORT, ReportFormat::Json),
    (artifact::JUNIT, ReportFormat::Junit),
    (artifact::SUMMARY, ReportFormat::Markdown),
];

/// Writes the run's reports where they were asked for (and, with `--out`, the usual
/// three beside its artifacts), then prints the summary; the exit code is the
/// verdict's, or a failure's when a report (this one, or an earlier one of the run's
/// if `failed_writes`) could not be written.
fn deliver(
    gate: &GateRun,
    report: &RunReport,
    audit: Option<&report::candidates::AuditData>,
    mut failed_writes: bool,
    out: &mut dyn Write,
    ui: &mut Ui,
) -> ExitCode {
    let mut targets = gate.reports.clone();
    if gate.keep {
        for (name, format) in KEPT_REPORTS {
            let path = gate.config.out_dir.join(name);
            if !targets.iter().any(|t| t.path == path) {
                targets.push(ReportTarget { format, path });
            }
        }
    }
    for target in &targets {
        let written = match (audit, target.format) {
            (Some(audit), ReportFormat::Html) => {
                report::write_text(report::html::render(report, audit), target)
            }
            _ => report::write(report, target),
        };
        if let Err(err) = written {
            ui.error(&err);
            failed_writes = true;
        }
    }
    if let Some(timeline) = &report.timeline {
        let _ = out.write_all(report::timeline::render(timeline).as_bytes());
        let _ = writeln!(out);
    }
    let _ = out.write_all(report::human::render(report, gate.max_shown).as_bytes());
    let _ = out.flush();
    if failed_writes {
        // A gate whose reports were lost must not look green to CI.
        return match report.verdict {
            crate::verdict::Verdict::Blocked => ExitCode::Blocked,
            _ => ExitCode::Usage,
        };
    }
    report.verdict.into()
}

/// `stagegate report merge`: the shards' reports folded into one, written in the
/// formats asked for, summarised on the terminal; the exit code is the verdict's.
pub(super) fn merge(args: MergeArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let mut reports = Vec::with_capacity(args.reports.len());
    for path in &args.reports {
        match report::merge::load(path) {
            Ok(report) => reports.push((path.display().to_string(), report)),
            Err(err) => {
                ui.error(&err);
                return ExitCode::Usage;
            }
        }
    }
    let merged = match report::merge::merge(&reports) {
        Ok(merged) => merged,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    let targets = [
        (ReportFormat::Json, Some(args.out)),
        (ReportFormat::Junit, args.junit),
        (ReportFormat::Markdown, args.markdown),
    ];
    let mut failed_writes = false;
    for (format, path) in targets {
        let Some(path) = path else { continue };
        if let Err(err) = report::write(&merged, &ReportTarget { format, path }) {
            ui.error(&err);
            failed_writes = true;
        }
    }
    let _ = out.write_all(report::human::render(&merged, args.max_shown).as_bytes());
    let _ = out.flush();
    if failed_writes && merged.verdict != crate::verdict::Verdict::Blocked {
        // A merge whose reports were lost must not look green to CI.
        return ExitCode::Usage;
    }
    merged.verdict.into()
}

/// Prints what an integration reached with `--sut-url` must be configured with
/// (docs/integration-protocol.md §1), so a mismatch is easy to see.
fn announce(config: &RunConfig, url: &url::Url, ui: &mut Ui) {
    let mocks = &config.mocks;
    let mut text = format!("testing the integration at {url}; it must run with:\n");
    for (name, value) in [
        (
            crate::protocol::env::ATS_URL,
            format!("http://{}", mocks.ats_addr),
        ),
        (crate::protocol::env::ATS_TOKEN, mocks.ats_token.clone()),
        (
            crate::protocol::env::VENDOR_URL,
            format!("http://{}", mocks.vendor_addr),
        ),
        (
            crate::protocol::env::VENDOR_TOKEN,
            mocks.vendor_token.clone(),
        ),
        (
            crate::protocol::env::VENDOR_WEBHOOK_SECRET,
            config
                .vendor_secret
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        (
            crate::protocol::env::ATS_WEBHOOK_SECRET,
            config
                .ats_secret
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        (
            crate::protocol::env::NOTIFY_URL,
            format!("http://{}", mocks.notify_addr),
        ),
        (
            crate::protocol::env::MANIFEST,
            config.manifest_path.display().to_string(),
        ),
        (
            crate::protocol::env::TIME_SCALE,
            config.time_scale.to_string(),
        ),
    ] {
        // The ATS's webhook secret only signs the policy flow's stage changes.
        if value.is_empty() {
            continue;
        }
        text.push_str(&format!("  export {name}={value}\n"));
    }
    let _ = ui.err.write_all(text.as_bytes());
}

fn start_failure_code(err: &RunError) -> ExitCode {
    if err.is_start_failure() {
        ExitCode::StartFailure
    } else {
        ExitCode::Usage
    }
}

fn progress_bar() -> indicatif::ProgressBar {
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} driving {bar:40} {pos}/{len} deliveries{msg}, {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn build_report(
    gate: &GateRun,
    config: &RunConfig,
    output: &RunOutput,
    judge_ms: u64,
    total: Duration,
) -> RunReport {
    let landed: u64 = output.scenarios.iter().map(|s| s.landed as u64).sum();
    let drive_secs = output.drive_time.as_secs_f64();
    let dir = &config.out_dir;
    let file = |name: &str| dir.join(name).display().to_string();
    RunReport {
        format: REPORT_FORMAT.to_owned(),
        verdict: crate::verdict::Verdict::Pass,
        seed: config.seed,
        run_id: output.run_id.clone(),
        change_id: config.manifest.raw.release_gate.change_id.clone(),
        manifest: gate.manifest_display.clone(),
        integration: IntegrationInfo {
            kind: gate.kind,
            target: match gate.kind {
                IntegrationKind::ReferenceRelay => "stagegate relay".to_owned(),
                _ => output.integration.clone(),
            },
        },
        scenarios: output.scenarios.clone(),
        skipped_scenarios: output.plan.skipped.clone(),
        checks: Vec::new(),
        timings: Timings {
            total_ms: total.as_millis() as u64,
            start_ms: output.start_time.as_millis() as u64,
            drive_ms: output.drive_time.as_millis() as u64,
            judge_ms,
            events_landed: landed,
            landed_per_second: if drive_secs > 0.0 {
                (landed as f64 / drive_secs * 10.0).round() / 10.0
            } else {
                0.0
            },
        },
        replay: gate.replay.clone(),
        timeline: None,
        shard: config.part().label(),
        merged_from: Vec::new(),
        artifacts: gate.keep.then(|| Artifacts {
            dir: dir.display().to_string(),
            observation_log: file(artifact::LOG),
            plan: file(artifact::PLAN),
            integration_output: matches!(config.integration, Integration::Command(_))
                .then(|| file(artifact::OUTPUT)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_slas() -> crate::manifest::policy::Slas {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/hiring-policy.yaml");
        crate::manifest::load_policy(&path)
            .expect("the seed policy loads")
            .value
            .slas
    }

    #[test]
    fn without_a_policy_the_relay_runs_fastest_and_other_integrations_at_60() {
        assert_eq!(default_time_scale(true, None), FASTEST_TIME_SCALE);
        assert_eq!(default_time_scale(false, None), INTEGRATION_TIME_SCALE);
    }

    #[test]
    fn the_seed_policy_keeps_its_fan_out_sla_a_second_long() {
        let slas = seed_slas();
        let scale = default_time_scale(true, Some(&slas));
        assert_eq!(scale, 60.0, "60 s fan-out at 60x lasts 1 s");
        assert!(slas.trigger_fanout_seconds / scale >= SHORTEST_SCALED_SLA_SECONDS);
    }

    #[test]
    fn the_shortest_policy_sla_decides_and_the_scale_stays_between_1_and_the_fastest() {
        let mut slas = seed_slas();
        slas.identity_verification_target_minutes = 0.5;
        slas.trigger_fanout_seconds = 3600.0;
        assert_eq!(
            default_time_scale(true, Some(&slas)),
            30.0,
            "the 30 s target decides"
        );
        slas.trigger_fanout_seconds = 0.2;
        assert_eq!(
            default_time_scale(true, Some(&slas)),
            1.0,
            "never slower than real time"
        );
        slas.trigger_fanout_seconds = 86_400.0;
        slas.identity_verification_target_minutes = 1440.0;
        assert_eq!(default_time_scale(true, Some(&slas)), FASTEST_TIME_SCALE);
        assert_eq!(
            default_time_scale(false, Some(&slas)),
            INTEGRATION_TIME_SCALE
        );
    }
}
