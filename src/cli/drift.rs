//! `stagegate record` and `stagegate drift`: raw arguments, validated once into a
//! [`RecordConfig`] or a [`DriftConfig`], then run.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use super::Ui;
use crate::check::Source;
use crate::contract::path::FieldPath;
use crate::drift::baseline::Baseline;
use crate::drift::report::{self, DriftReport};
use crate::drift::severity::Severities;
use crate::drift::{self, DriftConfig};
use crate::exit::ExitCode;
use crate::record::scheme::{SchemeKind, Verifier};
use crate::record::{RecordConfig, Recorder};
use crate::report::{ReportFormat, ReportTarget};

/// Arguments of `stagegate record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Where to listen, e.g. 0.0.0.0:8080 (port 0 picks a free port, printed at start).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The capture file (JSON Lines), appended to.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The webhook signing secret; without it signatures are recorded unchecked.
    #[arg(
        long,
        env = "STAGEGATE_RECORD_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// The signature scheme.
    #[arg(long, value_enum, default_value_t = SchemeKind::Standard)]
    pub scheme: SchemeKind,
    /// The header carrying the signature [default: x-hub-signature-256 for hmac-sha256,
    /// stripe-signature for timestamped].
    #[arg(long, value_name = "NAME")]
    pub signature_header: Option<String>,
    /// How far a signed timestamp may be from the arrival time.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub tolerance_secs: u64,
}

/// Report formats `drift` prints on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriftFormat {
    /// Findings grouped by event type, for people.
    Human,
    /// The JSON report (schemas/drift-report.schema.json).
    Json,
    /// JUnit XML.
    Junit,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// Arguments of `stagegate drift`.
#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// The release-gate manifest whose contracts the shapes are compared with.
    #[arg(long, value_name = "MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// The committed baseline shape to compare with.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Rewrite --baseline from these captures (its findings then do not block).
    #[arg(long, requires = "baseline")]
    pub update_baseline: bool,
    /// Dotted path of the event type in a payload; repeat for vendors that differ
    /// (first match wins), e.g. `type`, `action`, `payload.action`, `event`.
    #[arg(long = "type-field", value_name = "PATH", default_value = "type")]
    pub type_fields: Vec<String>,
    /// A YAML file of `finding-id: breaking|additive|ignore` overrides.
    #[arg(long, value_name = "FILE")]
    pub severity: Option<PathBuf>,
    /// Only captures that arrived at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only captures that arrived before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The report printed on standard output.
    #[arg(long, value_enum, default_value_t = DriftFormat::Human)]
    pub format: DriftFormat,
    /// Also write a report: json=PATH, junit=PATH or markdown=PATH (repeatable).
    #[arg(long = "report", value_name = "FORMAT=PATH")]
    pub reports: Vec<ReportTarget>,
    /// Captures from `stagegate record`, or plain JSON Lines; `-` reads standard input.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,
}

/// A command-line value `drift` cannot use.
#[derive(Debug, thiserror::Error)]
enum DriftArgError {
    #[error("--type-field `{text}` is not a dotted path")]
    TypeField {
        text: String,
        #[source]
        source: crate::contract::path::PathError,
    },
    #[error("--{flag} `{text}` is not an RFC 3339 time (e.g. 2026-05-18T09:00:00Z)")]
    Time {
        flag: &'static str,
        text: String,
        #[source]
        source: chrono::ParseError,
    },
    #[error("--since is not before --until")]
    EmptyWindow,
}

/// Runs `stagegate record` until Ctrl-C or SIGTERM.
pub(super) fn record(args: RecordArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let verifier = match &args.secret {
        None => None,
        Some(secret) => match Verifier::new(
            args.scheme,
            args.signature_header.as_deref(),
            secret,
            Duration::from_secs(args.tolerance_secs),
        ) {
            Ok(verifier) => Some(verifier),
            Err(err) => {
                ui.error(&err);
                return ExitCode::Usage;
            }
        },
    };
    let checked = verifier.as_ref().map_or_else(
        || "signatures not checked (no --secret)".to_owned(),
        |v| format!("{} signatures checked", v.kind().as_str()),
    );
    let config = RecordConfig {
        listen: args.listen,
        out: args.out.clone(),
        verifier,
    };
    let Some(runtime) = super::runtime(ui) else {
        return ExitCode::StartFailure;
    };
    runtime.block_on(async {
        let recorder = match Recorder::start(config).await {
            Ok(recorder) => recorder,
            Err(err) => {
                ui.error(&err);
                return ExitCode::StartFailure;
            }
        };
        let _ = writeln!(
            out,
            "recording on http://{} into {} ({checked}); Ctrl-C stops",
            recorder.addr(),
            args.out.display()
        );
        let _ = out.flush();
        super::shutdown_signal().await;
        recorder.shutdown().await;
        ExitCode::Pass
    })
}

/// Validates the arguments into a [`DriftConfig`]; `None` once the error is shown.
fn config(args: &DriftArgs, ui: &mut Ui) -> Option<DriftConfig> {
    let manifest = match &args.manifest {
        Some(path) => Some(super::load_manifest(path, ui)?),
        None => None,
    };
    let mut type_fields = Vec::new();
    for text in &args.type_fields {
        match FieldPath::parse(text) {
            Ok(path) => type_fields.push(path),
            Err(source) => {
                ui.error(&DriftArgError::TypeField {
                    text: text.clone(),
                    source,
                });
                return None;
            }
        }
    }
    let time =
        |flag: &'static str, text: &Option<String>, ui: &mut Ui| -> Result<Option<i64>, ()> {
            match text {
                None => Ok(None),
                Some(text) => chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| Some(t.timestamp_millis()))
                    .map_err(|source| {
                        ui.error(&DriftArgError::Time {
                            flag,
                            text: text.clone(),
                            source,
                        });
                    }),
            }
        };
    let since_ms = time("since", &args.since, ui).ok()?;
    let until_ms = time("until", &args.until, ui).ok()?;
    if let (Some(s), Some(u)) = (since_ms, until_ms)
        && s >= u
    {
        ui.error(&DriftArgError::EmptyWindow);
        return None;
    }
    let baseline = match &args.baseline {
        // A first --update-baseline creates the file.
        Some(path) if args.update_baseline && !path.exists() => None,
        Some(path) => match Baseline::load(path) {
            Ok(baseline) => Some(baseline),
            Err(err) => {
                ui.error(&err);
                return None;
            }
        },
        None => None,
    };
    let severities = match &args.severity {
        Some(path) => match Severities::load(path) {
            Ok(s) => s,
            Err(err) => {
                ui.error(&err);
                return None;
            }
        },
        None => Severities::default(),
    };
    let sources = args
        .captures
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                Source::Stdin
            } else {
                Source::File(f.clone())
            }
        })
        .collect();
    Some(DriftConfig {
        manifest,
        baseline_path: args.baseline.clone(),
        baseline,
        update_baseline: args.update_baseline,
        sources,
        type_fields,
        since_ms,
        until_ms,
        severities,
    })
}

/// Runs `stagegate drift`.
pub(super) fn drift(args: DriftArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let Some(config) = config(&args, ui) else {
        return ExitCode::Usage;
    };
    let report = match drift::run(&config) {
        Ok(report) => report,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    for target in &args.reports {
        let text = render(&report, target.format);
        if let Err(err) =
            text.and_then(|text| std::fs::write(&target.path, text).map_err(|e| e.to_string()))
        {
            let _ = writeln!(
                ui.err,
                "error: cannot write {}: {err}",
                target.path.display()
            );
            return ExitCode::Usage;
        }
    }
    let stdout = match args.format {
        DriftFormat::Human => Ok(report::human::render(&report)),
        DriftFormat::Json => render(&report, ReportFormat::Json),
        DriftFormat::Junit => render(&report, ReportFormat::Junit),
        DriftFormat::Markdown => render(&report, ReportFormat::Markdown),
    };
    match stdout {
        Ok(text) => {
            if out.write_all(text.as_bytes()).is_err() {
                return ExitCode::Usage;
            }
        }
        Err(err) => {
            let _ = writeln!(ui.err, "error: cannot render the report: {err}");
            return ExitCode::Usage;
        }
    }
    report.verdict.into()
}

fn render(report: &DriftReport, format: ReportFormat) -> Result<String, String> {
    match format {
        ReportFormat::Json => serde_json::to_string_pretty(report)
            .map(|t| t + "\n")
            .map_err(|e| e.to_string()),
        ReportFormat::Junit => report::junit::render(report).map_err(|e| e.to_string()),
        ReportFormat::Markdown => Ok(report::markdown::render(report)),
        ReportFormat::Html => Err(
            "drift writes json, junit or markdown reports; html is for `run` and `rehearse`"
                .to_owned(),
        ),
    }
}
