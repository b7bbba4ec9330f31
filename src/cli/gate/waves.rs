//! A dataset's run in waves (`run --wave-size N`): one part of the run after another
//! in one process ([`crate::run::shard::Part`]), each freed before the next, merged
//! into the whole run's report.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use super::interrupts::Interrupts;
use super::{GateRun, KEPT_REPORTS, deliver, drive, judge, progress_bar};
use crate::cli::Ui;
use crate::exit::ExitCode;
use crate::judge::{Judgement, Status};
use crate::report::{self, ReportFormat, ReportTarget};
use crate::run::shard::{self, Wave};
use crate::run::{Integration, RunConfig, artifact};

/// The candidates a wave drives at most unless `--wave-size` says otherwise: a run of
/// 10,000 is one wave, and the harness's peak stays near that run's however many follow.
pub const DEFAULT_WAVE_SIZE: u64 = 10_000;

/// How a run is driven.
enum Plan {
    /// In one go.
    One,
    /// In one go although the dataset is larger than a wave, for this reason.
    OneBecause(&'static str),
    /// In this many waves of at most this many source candidates.
    Waves(u32, u64),
}

impl GateRun {
    /// Whether an HTML report is asked for.
    pub(super) fn asks_for_html(&self) -> bool {
        self.reports.iter().any(|t| t.format == ReportFormat::Html)
    }

    /// How many waves the run takes, said on stderr when the dataset is larger than a
    /// wave. Only a dataset's per-candidate scenarios go in waves, and only for an
    /// integration the harness starts ([`Self::plan`]).
    pub(super) fn waves(&self, ui: &mut Ui) -> u32 {
        let config = &self.config;
        let (plan, count) = self.plan();
        let candidates = match config.shard {
            Some(shard) => format!("shard {shard}'s part of the {count} candidates"),
            None => format!("the {count} candidates"),
        };
        let _ = match plan {
            Plan::One => Ok(()),
            Plan::OneBecause(why) => writeln!(
                ui.err,
                "note: {candidates} run in one wave, above --wave-size {}, because {why}: the \
                 harness's memory grows with them",
                self.wave_size
            ),
            Plan::Waves(waves, per_wave) => writeln!(
                ui.err,
                "note: {candidates} run in {waves} waves of at most {per_wave} \
                 (--wave-size), one after another: each starts the integration afresh and \
                 keeps its artifacts in {}/wave-K; the verdict is the whole run's \
                 (--wave-size 0: one wave)",
                config.out_dir.display()
            ),
        };
        match plan {
            Plan::Waves(waves, _) => waves,
            _ => 1,
        }
    }

    /// The run's plan of waves and the dataset's size (0 without a dataset). A policy
    /// flow plans from the whole sandbox, an HTML report's per-candidate pages read one
    /// whole log, and an integration at `--sut-url` would carry its state (a tripped
    /// breaker, a queue) from one wave into the next: a run with any of them is one.
    fn plan(&self) -> (Plan, u64) {
        let config = &self.config;
        let Some(path) = &config.dataset else {
            return (Plan::One, 0);
        };
        let per_candidate = config
            .scenarios
            .iter()
            .any(|s| !s.is_kill_switch() && !s.is_policy());
        if self.wave_size == 0 || !per_candidate {
            return (Plan::One, 0);
        }
        // The header's count, or else a count of the rows (a file that does not load
        // is reported by the run). A wrong count fails the first wave's load.
        let counted = || {
            crate::sandbox::dataset::read_each(path, &mut |_, _, _| {})
                .ok()
                .map(|header| header.count)
        };
        let Some(count) = crate::sandbox::dataset::declared_count(path).or_else(counted) else {
            return (Plan::One, 0);
        };
        let waves = shard::waves(count, config.shard, self.wave_size);
        if waves == 1 {
            return (Plan::One, count);
        }
        let why = if config.scenarios.iter().any(|s| s.is_policy()) {
            "the hiring-policy flow plans from the whole sandbox"
        } else if self.asks_for_html() {
            "the HTML report's per-candidate pages read one whole log"
        } else if matches!(config.integration, Integration::Url(_)) {
            "an integration at --sut-url would carry its state from one wave into the next"
        } else {
            let in_part = count.div_ceil(u64::from(config.shard.map_or(1, |s| s.count)));
            return (
                Plan::Waves(waves, in_part.div_ceil(u64::from(waves))),
                count,
            );
        };
        (Plan::OneBecause(why), count)
    }
}

/// A run in `waves` turns ([`GateRun::waves`]): each wave is the next part of the run
/// (of its shard), started, driven, judged and reported in `wave-K/` of the artifacts
/// folder and then freed; the waves' reports merge into the run's.
pub(super) fn gate_in_waves(
    gate: &GateRun,
    waves: u32,
    interrupts: Option<&Interrupts>,
    out: &mut dyn Write,
    ui: &mut Ui,
) -> ExitCode {
    let started = Instant::now();
    let mut parts = Vec::with_capacity(waves as usize);
    let mut failed_writes = false;
    for index in 1..=waves {
        let wave = Wave {
            index,
            count: waves,
        };
        let config = RunConfig {
            wave: Some(wave),
            out_dir: wave_dir(&gate.config.out_dir, index),
            ..gate.config.clone()
        };
        if let Some(interrupts) = interrupts {
            interrupts.driving();
        }
        let bar = progress_bar();
        bar.set_message(format!(" (wave {index}/{waves})"));
        let wave_started = Instant::now();
        let output = drive(&config, &bar, interrupts, ui);
        // Required checks are required of the whole run: a wave that did not judge one
        // (a kill-switch check, in every wave but the last) has not failed it.
        let judged = output.and_then(|output| {
            judge(gate, &config, &output, wave_started, false).map_err(|err| {
                ui.error(&err);
                ExitCode::Usage
            })
        });
        let report = match judged {
            Ok(report) => report,
            Err(code) => {
                let before = match (index, gate.keep) {
                    (1, _) => String::new(),
                    (_, true) => format!(
                        " (the waves before it are in {})",
                        gate.config.out_dir.display()
                    ),
                    (_, false) => " (the waves before it were not kept: add --out DIR)".to_owned(),
                };
                let _ = writeln!(
                    ui.err,
                    "error: wave {index}/{waves} did not finish, so the run has no verdict{before}"
                );
                return code;
            }
        };
        crate::run::release_memory();
        let name = if gate.keep {
            let path = config.out_dir.join(artifact::REPORT);
            let target = ReportTarget {
                format: ReportFormat::Json,
                path: path.clone(),
            };
            if let Err(err) = report::write(&report, &target) {
                ui.error(&err);
                failed_writes = true;
            }
            path.display().to_string()
        } else {
            format!("wave {index}/{waves}")
        };
        let failed = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        let t = &report.timings;
        let _ = writeln!(
            ui.err,
            "wave {index}/{waves}: {} events landed in {:.2} s of driving; {failed} checks \
             failed",
            t.events_landed,
            t.drive_ms as f64 / 1000.0
        );
        parts.push((name, report));
    }
    let mut report = match report::merge::merge_waves(parts, gate.config.shard) {
        Ok(report) => report,
        Err(err) => {
            ui.error(&err);
            return ExitCode::Usage;
        }
    };
    if gate.require_all {
        let mut judgement = Judgement::from_checks(std::mem::take(&mut report.checks));
        judgement.require_all();
        report = report.with_judgement(judgement);
    }
    report.replay = gate.replay.clone();
    report.timings.total_ms = started.elapsed().as_millis() as u64;
    deliver(gate, &report, None, failed_writes, out, ui)
}

/// Where wave `index` keeps its artifacts.
fn wave_dir(out: &Path, index: u32) -> std::path::PathBuf {
    out.join(format!("wave-{index}"))
}

/// Takes away what an earlier run into the same `--out` left that this one would not
/// overwrite, so no artifact of it sits beside this run's: for a run in waves, a
/// one-wave run's log, plan, integration files and reports; for any run, the folders
/// of waves beyond its last (all of them for a run of one), each only if it holds a
/// wave's `plan.json` (a folder of the user's by that name stays). Nothing else.
pub(super) fn clear_stale(out: &Path, waves: u32) -> std::io::Result<()> {
    let gone = |result: std::io::Result<()>| match result {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    };
    if waves > 1 {
        let reports = KEPT_REPORTS.map(|(name, _)| name);
        for name in [artifact::LOG, artifact::PLAN, artifact::OUTPUT]
            .iter()
            .chain(&reports)
        {
            gone(std::fs::remove_file(out.join(name)))?;
        }
        gone(std::fs::remove_dir_all(out.join(artifact::STATE)))?;
    }
    let mut index = if waves > 1 { waves + 1 } else { 1 };
    while wave_dir(out, index).join(artifact::PLAN).is_file() {
        std::fs::remove_dir_all(wave_dir(out, index))?;
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with a file in it.
    fn folder(path: &Path, file: &str) {
        std::fs::create_dir_all(path).expect("folder");
        std::fs::write(path.join(file), "{}").expect("file");
    }

    #[test]
    fn only_an_earlier_runs_artifacts_are_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path();
        for name in ["observation.jsonl", "plan.json", "report.json", "notes.txt"] {
            std::fs::write(out.join(name), "{}").expect("file");
        }
        folder(&out.join("integration-state"), "db");
        for k in 1..=4 {
            folder(&wave_dir(out, k), "plan.json");
        }
        // A folder of the user's that only shares the name.
        folder(&wave_dir(out, 5), "mine.txt");
        folder(&out.join("wave-x"), "plan.json");

        clear_stale(out, 2).expect("cleared");
        let left = |name: &str| out.join(name).exists();
        assert!(!left("observation.jsonl") && !left("plan.json") && !left("report.json"));
        assert!(!left("integration-state"));
        assert!(
            left("wave-1") && left("wave-2"),
            "this run's waves are rewritten, not removed"
        );
        assert!(
            !left("wave-3") && !left("wave-4"),
            "the earlier run's last waves"
        );
        assert!(
            left("wave-5") && left("wave-x") && left("notes.txt"),
            "not stagegate's"
        );

        // A run of one wave keeps the top level and takes the waves' folders away.
        std::fs::write(out.join("plan.json"), "{}").expect("file");
        clear_stale(out, 1).expect("cleared");
        assert!(left("plan.json"));
        assert!(!left("wave-1") && !left("wave-2"));
        assert!(left("wave-5"));
    }
}
