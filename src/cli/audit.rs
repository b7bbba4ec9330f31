//! `stagegate trace` and `stagegate evidence`: the readers of a run's observation log
//! for security and recruiting-ops people.

use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Ui;
use crate::evidence::{self, PackRequest};
use crate::exit::ExitCode;
use crate::trace::{self, Selector};

/// Arguments of `stagegate trace`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("selector").required(true).args(["candidate", "correlation_id", "event_id"])))]
pub struct TraceArgs {
    /// The observation log (a run's `observation.jsonl`).
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
    /// Trace this candidate (`ats_candidate_id`; runs suffix it by scenario, e.g. `_cl`).
    #[arg(long, value_name = "ID")]
    pub candidate: Option<String>,
    /// Trace this flow.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Trace this event.
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,
    /// The run's plan, which says how each delivery was perturbed [default: plan.json
    /// beside the log; without one, the log's sender records say].
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TraceFormat::Human)]
    pub format: TraceFormat,
}

/// Output formats of `trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// The records in order, then the events, for people.
    Human,
    /// One JSON document (`stagegate.trace/1.0`).
    Json,
}

/// Arguments of `stagegate reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The observation log (a run's `observation.jsonl`).
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
    /// The run's plan, whose hiring policy decides what a mismatch is [default:
    /// plan.json beside the log].
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReconcileFormat::Terminal)]
    pub format: ReconcileFormat,
}

/// Output formats of `reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReconcileFormat {
    /// An aligned table.
    Terminal,
    /// One JSON document.
    Json,
    /// A Markdown table, for a ticket or a job summary.
    Markdown,
}

/// `stagegate reconcile`.
pub(super) fn reconcile(args: ReconcileArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let plan = match trace::plan_for(&args.log, args.plan.as_deref()) {
        Ok(plan) => plan,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    let policy = plan.as_ref().and_then(|(_, plan)| plan.policy.as_ref());
    let report = match crate::reconcile::from_log(&args.log, policy) {
        Ok(report) => report,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    let text = match args.format {
        ReconcileFormat::Terminal => crate::reconcile::render_terminal(&report),
        ReconcileFormat::Markdown => crate::reconcile::render_markdown(&report),
        // Plain fields serialise.
        ReconcileFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    };
    let _ = out.write_all(text.as_bytes());
    ExitCode::Pass
}

/// Arguments of `stagegate evidence`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvidenceArgs {
    /// Check a pack instead of writing one.
    #[command(subcommand)]
    pub command: Option<EvidenceCommand>,
    /// The observation log (a run's `observation.jsonl`).
    #[arg(value_name = "LOG", required = true)]
    pub log: Option<PathBuf>,
    /// The candidate whose evidence to pack.
    #[arg(long, value_name = "ID", required = true)]
    pub candidate: Option<String>,
    /// The pack to write (a tar archive).
    #[arg(long, value_name = "PACK", required = true)]
    pub out: Option<PathBuf>,
    /// The run's plan [default: plan.json beside the log].
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// The run's JSON report, for the checks and findings [default: report.json beside the log].
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The release-gate manifest [default: the one the log's run.start record names].
    #[arg(long, value_name = "MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// The hiring policy the run used, for its version.
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<PathBuf>,
    /// Keep the sandbox people's names and e-mail addresses (redacted by default).
    #[arg(long)]
    pub include_pii: bool,
}

/// Subcommands of `stagegate evidence`.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Check a pack: its digests and chain fragments; with --log, that its records and
    /// the log's head are in that log (exit 1 when anything does not hold).
    Verify {
        /// The evidence pack.
        #[arg(value_name = "PACK")]
        pack: PathBuf,
        /// The observation log the pack claims to come from.
        #[arg(long, value_name = "LOG")]
        log: Option<PathBuf>,
    },
}

/// `stagegate trace`.
pub(super) fn trace(args: TraceArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    let selector = match (args.candidate, args.correlation_id, args.event_id) {
        (Some(id), _, _) => Selector::Candidate(id),
        (None, Some(id), _) => Selector::CorrelationId(id),
        (None, None, Some(id)) => Selector::EventId(id),
        // clap's group requires one of them.
        (None, None, None) => return ExitCode::Usage,
    };
    let plan = match trace::plan_for(&args.log, args.plan.as_deref()) {
        Ok(plan) => plan,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    let plan_ref = plan.as_ref().map(|(p, plan)| (p.as_path(), plan));
    let traced = match trace::trace_file(&args.log, selector, plan_ref) {
        Ok(traced) => traced,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    let text = match args.format {
        TraceFormat::Human => trace::render(&traced.trace),
        // A tree of plain fields serialises.
        TraceFormat::Json => serde_json::to_string_pretty(&traced.trace).unwrap_or_default() + "\n",
    };
    let _ = out.write_all(text.as_bytes());
    if let Some(broken) = &traced.break_ {
        ui.error(&TraceBroken {
            log: args.log.clone(),
            source: broken.clone(),
        });
        return ExitCode::Blocked;
    }
    if traced.trace.records.is_empty() {
        let _ = writeln!(
            ui.err,
            "warning: no record of {} in {}",
            traced.trace.selector.describe(),
            args.log.display()
        );
    }
    ExitCode::Pass
}

#[derive(Debug, thiserror::Error)]
#[error("the chain of {} is broken; the trace stops before the broken record", log.display())]
struct TraceBroken {
    log: PathBuf,
    #[source]
    source: crate::observe::ChainBreak,
}

/// `stagegate evidence` and `stagegate evidence verify`.
pub(super) fn evidence(args: EvidenceArgs, out: &mut dyn Write, ui: &mut Ui) -> ExitCode {
    if let Some(EvidenceCommand::Verify { pack, log }) = args.command {
        return verify(&pack, log.as_deref(), out, ui);
    }
    let (Some(log), Some(candidate), Some(pack)) = (args.log, args.candidate, args.out) else {
        // clap requires them when there is no subcommand.
        return ExitCode::Usage;
    };
    let request = PackRequest {
        log,
        candidate,
        out: pack,
        plan: args.plan,
        report: args.report,
        manifest: args.manifest,
        policy: args.policy,
        include_pii: args.include_pii,
    };
    match evidence::write_pack(&request) {
        Ok(packed) => {
            let m = &packed.manifest;
            let _ = writeln!(
                out,
                "wrote {}: evidence of {} from {} (run {}), {} records ({} redacted), {} finding(s) about the candidate",
                request.out.display(),
                m.candidate,
                request.log.display(),
                m.run_id.as_deref().unwrap_or("?"),
                packed.records,
                packed.redacted,
                packed.findings
            );
            let _ = writeln!(
                out,
                "log head: record {} with hash {}",
                m.log.records.saturating_sub(1),
                m.log.head
            );
            for f in &m.files {
                let _ = writeln!(
                    out,
                    "  {:<38} {:>7} bytes  sha256 {}",
                    f.path, f.bytes, f.sha256
                );
            }
            ExitCode::Pass
        }
        Err(err @ evidence::EvidenceError::Broken { .. }) => {
            ui.error(&err);
            ExitCode::Blocked
        }
        Err(err) => {
            ui.error(&err);
            ExitCode::Usage
        }
    }
}

fn verify(
    pack: &std::path::Path,
    log: Option<&std::path::Path>,
    out: &mut dyn Write,
    ui: &mut Ui,
) -> ExitCode {
    match evidence::verify_pack(pack, log) {
        Ok(v) => {
            if let Some(m) = &v.manifest {
                let _ = writeln!(
                    out,
                    "evidence pack {}: {} in run {}",
                    pack.display(),
                    m.candidate,
                    m.run_id.as_deref().unwrap_or("?")
                );
            }
            for line in &v.proved {
                let _ = writeln!(out, "  ok    {line}");
            }
            for line in &v.problems {
                let _ = writeln!(out, "  FAIL  {line}");
            }
            if v.problems.is_empty() {
                if log.is_none() {
                    let _ = writeln!(
                        out,
                        "verified (internally consistent; add --log LOG to prove the records are that log's)"
                    );
                } else {
                    let _ = writeln!(out, "verified against the log");
                }
                ExitCode::Pass
            } else {
                let _ = writeln!(out, "NOT verified: {} problems", v.problems.len());
                ExitCode::Blocked
            }
        }
        Err(err) => {
            ui.error(&err);
            ExitCode::Usage
        }
    }
}
