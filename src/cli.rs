//! The command line: clap structs as raw input, converted once into validated
//! configurations of domain types, then run. Terminal concerns (colour, diagnostics
//! drawing) live here and nowhere else.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

pub mod audit;
pub mod drift;
pub mod gate;

use crate::check::report::{HumanReport, HumanSink, JsonReport};
use crate::check::{CheckError, Checker, Source};
use crate::exit::ExitCode;
use crate::manifest::{self, Document, Manifest, ManifestDiagnostic};
use crate::sandbox::dataset::{
    self, DatasetError, GenerateOptions, RiskMix, RiskMixError, WriteError,
};

/// Contract tests and a sandbox for ATS ⇄ identity-verification integrations.
#[derive(Debug, Parser)]
#[command(name = "stagegate", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate release-gate manifests and hiring policies (the format is detected).
    Validate {
        /// Manifest files to validate.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Check JSON payloads (JSON Lines, a JSON array, or one object) against the contracts.
    Check {
        /// The release-gate manifest whose contracts judge the payloads.
        #[arg(long, value_name = "MANIFEST")]
        manifest: PathBuf,
        /// Report format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
        /// Violations shown per contract in the human report.
        #[arg(long, default_value_t = 20, value_name = "N")]
        max_shown: usize,
        /// Payload files; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write JSON Schemas: one per contract of a manifest, or those of stagegate's formats.
    Schema {
        /// Write `<contract>.schema.json` for every contract of this manifest.
        #[arg(
            long,
            value_name = "MANIFEST",
            required_unless_present = "formats",
            conflicts_with = "formats"
        )]
        manifest: Option<PathBuf>,
        /// Write the schemas of stagegate's own formats (manifests, run report).
        #[arg(long)]
        formats: bool,
        /// The folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run a release gate: drive every scenario at the integration, judge, report.
    Run(Box<gate::RunArgs>),
    /// Rehearse an incident against the integration and print its timeline.
    Rehearse {
        /// Which incident.
        #[command(subcommand)]
        command: RehearseCommand,
    },
    /// Run the reference relay, configured by the STAGEGATE_* variables (docs/integration-protocol.md §1).
    Relay,
    /// Serve the sandbox (mock ATS, mock vendor, notify sink) and an admin API until Ctrl-C.
    Serve(ServeArgs),
    /// Work with observation logs.
    Log {
        /// What to do with the log.
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Work with run reports.
    Report {
        /// What to do.
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Every exchange of one candidate, flow or event in an observation log, in order,
    /// the chain verified as it is read.
    Trace(audit::TraceArgs),
    /// The hiring policy's reconciliation report of a run's observation log: per
    /// candidate, ATS stage, verification, grants, mismatch, exception item and owner.
    Reconcile(audit::ReconcileArgs),
    /// Write a candidate's evidence pack from a run's log, or verify one.
    Evidence(Box<audit::EvidenceArgs>),
    /// Work with sandbox data: fake, risk-tiered candidates.
    Sandbox {
        /// What to do.
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Capture a vendor's webhooks: verify the signature, fsync, then acknowledge.
    Record(drift::RecordArgs),
    /// Classify changes in captured vendor payloads against the contracts and a baseline.
    Drift(Box<drift::DriftArgs>),
}

/// Subcommands of `stagegate rehearse`.
#[derive(Debug, Subcommand)]
pub enum RehearseCommand {
    /// An ATS outage: the kill switch must trip, queue, notify, reset and replay with
    /// nothing lost; prints the timeline and the same reports as `run`.
    Outage(Box<gate::RehearseArgs>),
}

/// Subcommands of `stagegate sandbox`.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Write a dataset of candidates for large runs, deterministic from the seed.
    Generate {
        /// How many candidates.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// The seed every name, address and requisition is drawn from.
        #[arg(long, value_name = "S")]
        seed: u64,
        /// Percentages of low, medium and high risk candidates, adding up to 100.
        #[arg(long, value_name = "MIX", default_value = "low=70,medium=20,high=10")]
        risk_mix: String,
        /// The manifest whose canary scope and contracts the candidates follow
        /// [default: the release-gate manifest shipped with stagegate].
        #[arg(long, value_name = "MANIFEST")]
        manifest: Option<PathBuf>,
        /// The dataset file to write (replaced only once complete).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Where the mocks listen and how they authenticate (`serve`, and `run --sut-url`).
#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// Address of the mock ATS [default: 127.0.0.1 on a free port].
    #[arg(long, value_name = "ADDR")]
    pub ats_addr: Option<std::net::SocketAddr>,
    /// Address of the mock vendor [default: 127.0.0.1 on a free port].
    #[arg(long, value_name = "ADDR")]
    pub vendor_addr: Option<std::net::SocketAddr>,
    /// Address of the notification sink [default: 127.0.0.1 on a free port].
    #[arg(long, value_name = "ADDR")]
    pub notify_addr: Option<std::net::SocketAddr>,
    /// Bearer token of the mock ATS [default: derived from the seed].
    #[arg(
        long,
        env = "STAGEGATE_ATS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub ats_token: Option<String>,
    /// Bearer token of the mock vendor [default: derived from the seed].
    #[arg(
        long,
        env = "STAGEGATE_VENDOR_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub vendor_token: Option<String>,
}

impl MockArgs {
    fn config(&self, seed: u64) -> crate::mock::MockConfig {
        let mut config = crate::mock::MockConfig::loopback(seed);
        if let Some(addr) = self.ats_addr {
            config.ats_addr = addr;
        }
        if let Some(addr) = self.vendor_addr {
            config.vendor_addr = addr;
        }
        if let Some(addr) = self.notify_addr {
            config.notify_addr = addr;
        }
        if let Some(token) = &self.ats_token {
            config.ats_token = token.clone();
        }
        if let Some(token) = &self.vendor_token {
            config.vendor_token = token.clone();
        }
        config
    }
}

/// Arguments of `stagegate serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The release-gate manifest whose candidates and contracts the sandbox holds.
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// The seed of every generated value.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the mocks listen.
    #[command(flatten)]
    pub mocks: MockArgs,
    /// Address of the admin API [default: 127.0.0.1 on a free port].
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Where the observation log goes.
    #[arg(long, value_name = "FILE", default_value = "stagegate-serve.jsonl")]
    pub log: PathBuf,
    /// Serve the candidates of a dataset written by `stagegate sandbox generate`
    /// instead of the manifest's `sandbox_dataset`.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
}

/// Subcommands of `stagegate log`.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Prove a log's hash chain intact, or name the first broken record (exit 1).
    Verify {
        /// The observation log (JSON Lines).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Subcommands of `stagegate report`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the JSON reports of every shard of a run (`run --shard K/N`) into the
    /// unsharded run's report and verdict; exits like `run` (0 pass, 1 blocked, 2 the
    /// reports do not make one whole run).
    Merge(gate::MergeArgs),
}

/// Report formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// A grouped summary for people.
    Human,
    /// One JSON document for machines.
    Json,
}

/// A `check` run, validated.
struct CheckRun {
    manifest: Manifest,
    sources: Vec<Source>,
    format: CheckFormat,
    max_shown: usize,
}

/// A `sandbox generate` run, validated.
struct GenerateRun {
    manifest: Manifest,
    options: GenerateOptions,
    out: PathBuf,
}

/// The manifest `sandbox generate` follows when none is named.
const SHIPPED_MANIFEST: &str = include_str!("../manifests/release-gate.yaml");

/// What `schema` writes.
enum SchemaRun {
    Contracts {
        manifest: Box<Manifest>,
        out: PathBuf,
    },
    Formats {
        out: PathBuf,
    },
}

/// Runs a parsed command line and returns its exit code.
pub fn run(cli: Cli) -> ExitCode {
    // Not locked for the whole command: the relay and the run write from other threads.
    let mut stdout = io::stdout();
    let mut ui = Ui::stderr();
    let code = match cli.command {
        Command::Validate { files } => validate(&files, &mut stdout, &mut ui),
        Command::Check {
            manifest,
            format,
            max_shown,
            files,
        } => match load_manifest(&manifest, &mut ui) {
            Some(manifest) => {
                let sources = files
                    .into_iter()
                    .map(|f| {
                        if f.as_os_str() == "-" {
                            Source::Stdin
                        } else {
                            Source::File(f)
                        }
                    })
                    .collect();
                check(
                    CheckRun {
                        manifest,
                        sources,
                        format,
                        max_shown,
                    },
                    &mut stdout,
                    &mut ui,
                )
            }
            None => ExitCode::Usage,
        },
        Command::Schema {
            manifest,
            formats,
            out,
        } => {
            let run = match (manifest, formats) {
                (Some(path), _) => match load_manifest(&path, &mut ui) {
                    Some(manifest) => SchemaRun::Contracts {
                        manifest: Box::new(manifest),
                        out,
                    },
                    None => return ExitCode::Usage,
                },
                (None, _) => SchemaRun::Formats { out },
            };
            schema(run, &mut stdout, &mut ui)
        }
        Command::Log {
            command: LogCommand::Verify { file },
        } => log_verify(&file, &mut stdout, &mut ui),
        Command::Report {
            command: ReportCommand::Merge(args),
        } => gate::merge(args, &mut stdout, &mut ui),
        Command::Relay => relay(&mut ui),
        Command::Trace(args) => audit::trace(args, &mut stdout, &mut ui),
        Command::Reconcile(args) => audit::reconcile(args, &mut stdout, &mut ui),
        Command::Evidence(args) => audit::evidence(*args, &mut stdout, &mut ui),
        Command::Sandbox {
            command:
                SandboxCommand::Generate {
                    count,
                    seed,
                    risk_mix,
                    manifest,
                    out,
                },
        } => {
            let mix = match risk_mix.parse::<RiskMix>() {
                Ok(mix) => mix,
                Err(source) => {
                    ui.error(&RiskMixArgError {
                        text: risk_mix,
                        source,
                    });
                    return ExitCode::Usage;
                }
            };
            let manifest = match manifest {
                Some(path) => load_manifest(&path, &mut ui),
                None => match Manifest::from_text(
                    Path::new("manifests/release-gate.yaml"),
                    SHIPPED_MANIFEST,
                ) {
                    Ok(loaded) => Some(loaded.value),
                    Err(err) => {
                        ui.diagnostic(&err);
                        None
                    }
                },
            };
            match manifest {
                Some(manifest) => sandbox_generate(
                    GenerateRun {
                        manifest,
                        options: GenerateOptions { count, seed, mix },
                        out,
                    },
                    &mut stdout,
                    &mut ui,
                ),
                None => ExitCode::Usage,
            }
        }
        Command::Serve(args) => serve(args, &mut stdout, &mut ui),
        Command::Run(args) => gate::run(*args, &mut stdout, &mut ui),
        Command::Rehearse {
            command: RehearseCommand::Outage(args),
        } => gate::rehearse(*args, &mut stdout, &mut ui),
        Command::Record(args) => drift::record(args, &mut stdout, &mut ui),
        Command::Drift(args) => drift::drift(*args, &mut stdout, &mut ui),
    };
    let _ = stdout.flush();
    code
}

/// Where diagnostics and errors go, drawn for a terminal or for a log.
struct Ui {
    err: Box<dyn Write>,
    handler: miette::GraphicalReportHandler,
}

impl Ui {
    fn stderr() -> Self {
        let colour = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let theme = if colour {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        let handler = miette::GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false);
        Ui {
            err: Box::new(io::stderr()),
            handler,
        }
    }

    fn diagnostic(&mut self, diagnostic: &dyn miette::Diagnostic) {
        let mut text = String::new();
        // Rendering into a String cannot fail.
        let _ = self.handler.render_report(&mut text, diagnostic);
        let _ = writeln!(self.err, "{text}");
    }

    fn error(&mut self, error: &dyn std::error::Error) {
        let mut text = format!("error: {error}");
        let mut cause = error.source();
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        let _ = writeln!(self.err, "{text}");
    }

    fn warnings(&mut self, warnings: &[ManifestDiagnostic]) {
        for warning in warnings {
            self.diagnostic(warning);
        }
    }
}

fn load_manifest(path: &Path, ui: &mut Ui) -> Option<Manifest> {
    match Manifest::load(path) {
        Ok(loaded) => {
            ui.warnings(&loaded.warnings);
            Some(loaded.value)
        }
        Err(err) => {
            ui.diagnostic(&err);
            None
        }
    }
}

fn validate(files: &[PathBuf], out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let mut code = ExitCode::Pass;
    for file in files {
        match manifest::load_document(file) {
            Ok(loaded) => {
                ui.warnings(&loaded.warnings);
                let warnings = match loaded.warnings.len() {
                    0 => String::new(),
                    1 => ", 1 warning".to_owned(),
                    n => format!(", {n} warnings"),
                };
                let what = match &loaded.value {
                    Document::ReleaseGate(m) => format!(
                        "release-gate manifest {}: {} contracts, {} candidates",
                        m.raw.version,
                        m.contracts.len(),
                        m.candidates.len()
                    ),
                    Document::HiringPolicy(p) => {
                        format!(
                            "hiring policy {}: {} ATS events",
                            p.policy_version,
                            p.ats_events.len()
                        )
                    }
                };
                let _ = writeln!(out, "ok  {}  ({what}{warnings})", file.display());
            }
            Err(err) => {
                ui.diagnostic(&err);
                let _ = writeln!(out, "invalid  {}", file.display());
                code = ExitCode::Usage;
            }
        }
    }
    code
}

fn check(run: CheckRun, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let mut checker = Checker::new(&run.manifest);
    // Every input opens before a byte is written: a report is whole or not begun.
    let opened = run
        .sources
        .iter()
        .map(|source| Ok((source.name(), source.open()?)))
        .collect::<Result<Vec<_>, CheckError>>();
    let opened = match opened {
        Ok(opened) => opened,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    let result = match run.format {
        CheckFormat::Json => JsonReport::start(&mut *out)
            .map_err(CheckError::Write)
            .and_then(|mut report| {
                let read = opened.into_iter().try_for_each(|(name, reader)| {
                    checker.check_reader(&name, reader, &mut report)
                });
                match read {
                    Ok(()) => report
                        .finish(checker.summary())
                        .map(drop)
                        .map_err(CheckError::Write),
                    // A read that fails mid-way still closes the document.
                    Err(err) => {
                        let mut text = err.to_string();
                        let mut cause = std::error::Error::source(&err);
                        while let Some(c) = cause {
                            text.push_str(&format!(": {c}"));
                            cause = c.source();
                        }
                        report
                            .fail(checker.summary(), &text)
                            .map_err(CheckError::Write)?;
                        Err(err)
                    }
                }
            }),
        CheckFormat::Human => {
            let mut sink = HumanSink {
                report: HumanReport::new(run.max_shown),
                manifest: &run.manifest,
            };
            let outcome = opened
                .into_iter()
                .try_for_each(|(name, reader)| checker.check_reader(&name, reader, &mut sink));
            if outcome.is_ok() {
                let names: Vec<String> = run.sources.iter().map(Source::name).collect();
                let text = sink.report.render(&run.manifest, &names, checker.summary());
                if let Err(err) = out.write_all(text.as_bytes()) {
                    ui.error(&CheckError::Write(err));
                    return ExitCode::Usage;
                }
            }
            outcome
        }
    };
    match result {
        Ok(()) => checker.summary().verdict().into(),
        Err(err) => {
            ui.error(&err);
            ExitCode::Usage
        }
    }
}

fn schema(run: SchemaRun, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let (dir, files) = match &run {
        SchemaRun::Contracts { manifest, out } => (
            out,
            manifest
                .contracts
                .iter()
                .map(|c| (format!("{}.schema.json", c.name()), c.schema().clone()))
                .collect::<Vec<_>>(),
        ),
        SchemaRun::Formats { out } => (
            out,
            vec![
                (
                    "release-gate.schema.json".to_owned(),
                    manifest::release_gate_format_schema(),
                ),
                (
                    "hiring-policy.schema.json".to_owned(),
                    manifest::hiring_policy_format_schema(),
                ),
                (
                    "run-report.schema.json".to_owned(),
                    crate::report::run_report_schema(),
                ),
                (
                    "drift-report.schema.json".to_owned(),
                    crate::drift::report::drift_report_schema(),
                ),
                (
                    "drift-baseline.schema.json".to_owned(),
                    crate::drift::baseline::baseline_schema(),
                ),
            ],
        ),
    };
    if let Err(err) = std::fs::create_dir_all(dir) {
        ui.error(&SchemaWriteError {
            path: dir.clone(),
            source: err,
        });
        return ExitCode::Usage;
    }
    for (name, schema) in files {
        let path = dir.join(name);
        let text = match serde_json::to_string_pretty(&schema) {
            Ok(text) => text + "\n",
            Err(err) => {
                ui.error(&err);
                return ExitCode::Usage;
            }
        };
        if let Err(err) = std::fs::write(&path, text) {
            ui.error(&SchemaWriteError { path, source: err });
            return ExitCode::Usage;
        }
        let _ = writeln!(out, "wrote {}", path.display());
    }
    ExitCode::Pass
}

fn runtime(ui: &mut Ui) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            ui.error(&err);
            None
        }
    }
}

fn relay(ui: &mut Ui) -> ExitCode {
    use crate::relay::{Relay, config::RelayConfig, log::RelayLog};
    let config = match RelayConfig::from_env(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    let runtime = match crate::relay::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            ui.error(&err);
            return ExitCode::StartFailure;
        }
    };
    let required = config
        .manifest
        .raw
        .observability
        .as_ref()
        .map(|o| o.log_fields_required.clone())
        .unwrap_or_default();
    let log = RelayLog::new(Box::new(io::stdout()), required)
        .with_envelope(config.manifest.envelope.clone());
    runtime.block_on(async {
        let relay = match Relay::start(config, log.clone()).await {
            Ok(relay) => relay,
            Err(err) => {
                ui.error(&err);
                return ExitCode::StartFailure;
            }
        };
        log.note("listening", serde_json::json!({"url": relay.url()}));
        shutdown_signal().await;
        log.note("stopping", serde_json::json!({"queued": relay.queued()}));
        relay.shutdown().await;
        ExitCode::Pass
    })
}

/// Candidates listed when `serve` starts; the admin API lists them all.
const SERVE_LISTED: usize = 20;

fn serve(args: ServeArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let Some(manifest) = load_manifest(&args.manifest, ui) else {
        return ExitCode::Usage;
    };
    let sandbox = match &args.dataset {
        Some(path) => match crate::sandbox::load_dataset(&manifest, path) {
            Ok(sandbox) => Some(sandbox),
            Err(err) => {
                ui.error(&err);
                return ExitCode::Usage;
            }
        },
        None => None,
    };
    if let (Some(path), Some(sandbox)) = (&args.dataset, &sandbox) {
        let scope = &manifest.raw.release_gate.canary_scope;
        let seeded = sandbox
            .candidates
            .iter()
            .filter(|c| c.role == crate::sandbox::Role::Seeded);
        let total = seeded.clone().count();
        let outside = seeded
            .filter(|c| !crate::sandbox::in_canary_scope(scope, &c.requisition))
            .count();
        if outside > 0 {
            let _ = writeln!(
                ui.err,
                "warning: {outside} of the {total} candidates of {} are outside the canary scope of {}; \
                 regenerate it with `stagegate sandbox generate --manifest {}`",
                path.display(),
                args.manifest.display(),
                args.manifest.display()
            );
        }
    }
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let seed = args.seed;
    let mocks = args.mocks.config(seed);
    let (ats_token, vendor_token) = (mocks.ats_token.clone(), mocks.vendor_token.clone());
    let config = crate::serve::ServeConfig {
        manifest: std::sync::Arc::new(manifest),
        seed,
        mocks,
        admin_addr: args.admin_addr.unwrap_or(any),
        log_path: args.log.clone(),
        sandbox,
    };
    let Some(runtime) = runtime(ui) else {
        return ExitCode::StartFailure;
    };
    runtime.block_on(async {
        let served = match crate::serve::Served::start(config).await {
            Ok(served) => served,
            Err(err) => {
                ui.error(&err);
                return ExitCode::StartFailure;
            }
        };
        let m = &served.mocks;
        let _ = writeln!(out, "stagegate sandbox, seed {seed} — Ctrl-C stops it\n");
        let _ = writeln!(out, "  mock ATS      {}  (Bearer {ats_token})", m.ats_url());
        let _ = writeln!(out, "  mock vendor   {}  (Bearer {vendor_token})", m.vendor_url());
        let _ = writeln!(out, "  notify sink   {}", m.notify_url());
        let _ = writeln!(
            out,
            "  admin API     {}  (GET /admin/candidates, /admin/state, /admin/log; GET, PUT, DELETE /admin/faults; POST /admin/fire, /admin/exceptions/ID/resolve)",
            served.admin_url()
        );
        let _ = writeln!(out, "  log           {}\n", args.log.display());
        let _ = writeln!(out, "# for the integration under test (docs/integration-protocol.md §1):");
        let manifest_path = std::path::absolute(&args.manifest).unwrap_or(args.manifest.clone());
        for (name, value) in [
            (crate::protocol::env::ATS_URL, m.ats_url().to_owned()),
            (crate::protocol::env::ATS_TOKEN, ats_token.clone()),
            (crate::protocol::env::VENDOR_URL, m.vendor_url().to_owned()),
            (crate::protocol::env::VENDOR_TOKEN, vendor_token.clone()),
            (crate::protocol::env::VENDOR_WEBHOOK_SECRET, served.vendor_secret.to_string()),
            (crate::protocol::env::ATS_WEBHOOK_SECRET, served.ats_secret.to_string()),
            (crate::protocol::env::NOTIFY_URL, m.notify_url().to_owned()),
            (crate::protocol::env::MANIFEST, manifest_path.display().to_string()),
        ] {
            let _ = writeln!(out, "export {name}={value}");
        }
        let candidates = &served.sandbox.candidates;
        match &args.dataset {
            Some(path) => {
                let _ = writeln!(
                    out,
                    "\ncandidates ({} from {}, seed {}, and the controls):",
                    candidates.len() - controls(candidates),
                    path.display(),
                    served.sandbox.seed
                );
            }
            None => {
                let _ = writeln!(out, "\ncandidates:");
            }
        }
        for c in candidates.iter().take(SERVE_LISTED) {
            let _ = writeln!(out, "  {}  {}  {:?}  {} in {}", c.id, c.profile, c.role, c.requisition.id, c.requisition.location);
        }
        if candidates.len() > SERVE_LISTED {
            let _ = writeln!(
                out,
                "  … and {} more (GET /admin/candidates lists them)",
                candidates.len() - SERVE_LISTED
            );
        }
        let _ = out.flush();
        shutdown_signal().await;
        match served.shutdown().await {
            Ok(()) => ExitCode::Pass,
            Err(err) => {
                ui.error(&err);
                ExitCode::Usage
            }
        }
    })
}

/// How many of the sandbox's candidates are the harness's out-of-scope controls.
fn controls(candidates: &[crate::sandbox::SandboxCandidate]) -> usize {
    candidates
        .iter()
        .filter(|c| c.role != crate::sandbox::Role::Seeded)
        .count()
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn log_verify(file: &Path, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    // Streamed: a load test's log runs to gigabytes.
    match crate::observe::verify_file(file) {
        Ok(verified) => {
            let run = verified.run_id.as_deref().unwrap_or("no run");
            let _ = writeln!(
                out,
                "ok  {}: {} records, chain intact (run {run})",
                file.display(),
                verified.records
            );
            ExitCode::Pass
        }
        Err(crate::observe::VerifyError::Read(err)) => {
            ui.error(&err);
            ExitCode::Usage
        }
        Err(crate::observe::VerifyError::Broken(broken)) => {
            ui.error(&broken);
            let _ = writeln!(out, "broken  {}", file.display());
            ExitCode::Blocked
        }
    }
}

fn sandbox_generate(run: GenerateRun, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    // Written beside the target and renamed at the end, so a failed or interrupted
    // run never leaves a truncated dataset under the real name.
    let mut partial = run.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = std::fs::File::create(&partial)
        .map_err(|source| GenerateError::Write {
            path: partial.clone(),
            source,
        })
        .and_then(|file| {
            let mut writer = io::BufWriter::with_capacity(1 << 20, file);
            dataset::write(&mut writer, &run.manifest, run.options).map_err(|err| match err {
                WriteError::Dataset(err) => GenerateError::Dataset(err),
                WriteError::Io(source) => GenerateError::Write {
                    path: partial.clone(),
                    source,
                },
            })
        })
        .and_then(|summary| {
            std::fs::rename(&partial, &run.out)
                .map(|()| summary)
                .map_err(|source| GenerateError::Write {
                    path: run.out.clone(),
                    source,
                })
        });
    match written {
        Ok(summary) => {
            let _ = writeln!(
                out,
                "wrote {} candidates to {} (seed {}; low {}, medium {}, high {})",
                summary.total(),
                run.out.display(),
                run.options.seed,
                summary.low,
                summary.medium,
                summary.high
            );
            ExitCode::Pass
        }
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            ui.error(&err);
            ExitCode::Usage
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid --risk-mix `{text}`")]
struct RiskMixArgError {
    text: String,
    #[source]
    source: RiskMixError,
}

#[derive(Debug, thiserror::Error)]
enum GenerateError {
    #[error("cannot generate the dataset")]
    Dataset(#[source] DatasetError),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", path.display())]
struct SchemaWriteError {
    path: PathBuf,
    #[source]
    source: io::Error,
}
