//! `stagegate report merge`: the JSON reports of the N shards of a run
//! (`run --shard K/N`) folded into the one report the unsharded run gives — the same
//! checks, statuses, finding counts and verdict; timings are the shards' own.
//!
//! Merging is a fold over whole check results, which works because every check is
//! judged per candidate or per kill-switch scenario, and a shard holds all of either:
//! a check failed if it failed in any shard, passed if it passed in one and failed in
//! none, and was skipped only if every shard skipped it. Finding counts add up;
//! the kept findings are the shards' in shard order, up to [`FINDINGS_KEPT`] (their
//! exchanges cite the `seq` of their own shard's observation log, named in
//! [`RunReport::merged_from`]).
//!
//! Merging refuses anything that would make the verdict a lie: a missing or repeated
//! shard, shards of different runs (seed, manifest, change, integration, N), an
//! unsharded report, or a report format it does not know.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Artifacts, REPORT_FORMAT, RunReport, Timings};
use crate::judge::{CheckResult, FINDINGS_KEPT, Judgement, Status};
use crate::run::drive::{ScenarioReport, Sessions};
use crate::run::shard::Shard;
use crate::verdict::Verdict;

/// One shard of a merged report: where its evidence is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShardRun {
    /// The slice.
    pub shard: Shard,
    /// The shard's run id (in every record of its observation log).
    pub run_id: String,
    /// The shard's own verdict.
    pub verdict: Verdict,
    /// The shard's report file, as given to `report merge`.
    pub report: String,
    /// Where the shard kept its artifacts, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Artifacts>,
}

/// Why shard reports cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A report file could not be read.
    #[error("cannot read the report {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A report file is not a run report.
    #[error("{} is not a stagegate run report", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// No report was given.
    #[error("no report to merge")]
    Empty,
    /// A report's format is not one this build reads.
    #[error("{report} is in format `{format}`; this stagegate merges `{REPORT_FORMAT}`")]
    Format {
        /// The report.
        report: String,
        /// Its format.
        format: String,
    },
    /// A report is not a shard.
    #[error(
        "{report} is not the report of a shard (it has no `shard`): run each part with `stagegate run … --shard K/N`"
    )]
    NotSharded {
        /// The report.
        report: String,
    },
    /// Two reports disagree on something every shard of one run shares.
    #[error(
        "{report} is not a shard of the same run as {first}: its {what} is {theirs}, not {ours}"
    )]
    Mismatch {
        /// The first report.
        first: String,
        /// The report that differs.
        report: String,
        /// What differs.
        what: &'static str,
        /// The first report's value.
        ours: String,
        /// The other report's value.
        theirs: String,
    },
    /// Two reports are the same shard.
    #[error("{first} and {second} are both shard {shard}")]
    Repeated {
        /// The shard.
        shard: Shard,
        /// One report.
        first: String,
        /// The other.
        second: String,
    },
    /// Shards are missing.
    #[error(
        "shards {} of {count} are missing: a merged verdict needs every shard",
        list(missing)
    )]
    Missing {
        /// The missing shard numbers.
        missing: Vec<u32>,
        /// N.
        count: u32,
    },
}

fn list(numbers: &[u32]) -> String {
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads one report file.
pub fn load(path: &Path) -> Result<RunReport, MergeError> {
    let text = crate::limits::read_regular_text(path, crate::limits::DOCUMENT_BYTES).map_err(
        |source| MergeError::Read {
            path: path.to_owned(),
            source,
        },
    )?;
    serde_json::from_str(&text).map_err(|source| MergeError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// The major version of a report format (`stagegate.run-report/1.0` → `1`).
fn major(format: &str) -> Option<&str> {
    let version = format.strip_prefix("stagegate.run-report/")?;
    version.split('.').next()
}

/// How the merged parts ran: side by side (shards) or one after another (waves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// Wall times are the slowest part's.
    SideBySide,
    /// Wall times add up.
    InTurn,
}

impl Ran {
    fn combine(self, a: u64, b: u64) -> u64 {
        match self {
            Ran::SideBySide => a.max(b),
            Ran::InTurn => a + b,
        }
    }
}

/// Merges the reports of every shard of one run, each named by where it came from.
pub fn merge(reports: &[(String, RunReport)]) -> Result<RunReport, MergeError> {
    merge_parts(reports, Ran::SideBySide)
}

/// Merges the waves of one run, or of one shard of it (`shard`), driven one after
/// another (`run --wave-size`), in wave order: checks, findings and the verdict as
/// [`merge`] folds shards (wave `w` of `W` is such a part, and is named so in
/// [`RunReport::merged_from`]), times added up, and the report the run's or the
/// shard's own.
pub fn merge_waves(
    waves: Vec<(String, RunReport)>,
    shard: Option<Shard>,
) -> Result<RunReport, MergeError> {
    let count = waves.len() as u32;
    let waves: Vec<(String, RunReport)> = waves
        .into_iter()
        .zip(1..)
        .map(|((name, mut report), index)| {
            report.shard = Some(Shard { index, count });
            (name, report)
        })
        .collect();
    let mut merged = merge_parts(&waves, Ran::InTurn)?;
    merged.shard = shard;
    if let Some(first) = merged.merged_from.first() {
        merged.run_id = format!("{}-waves", first.run_id);
    }
    Ok(merged)
}

fn merge_parts(reports: &[(String, RunReport)], ran: Ran) -> Result<RunReport, MergeError> {
    let Some((first_name, first)) = reports.first() else {
        return Err(MergeError::Empty);
    };
    let mut by_shard: BTreeMap<u32, (&String, &RunReport)> = BTreeMap::new();
    for (name, report) in reports {
        if major(&report.format) != major(REPORT_FORMAT) {
            return Err(MergeError::Format {
                report: name.clone(),
                format: report.format.clone(),
            });
        }
        let Some(shard) = report.shard else {
            return Err(MergeError::NotSharded {
                report: name.clone(),
            });
        };
        let same = |what: &'static str, ours: String, theirs: String| {
            if ours == theirs {
                Ok(())
            } else {
                Err(MergeError::Mismatch {
                    first: first_name.clone(),
                    report: name.clone(),
                    what,
                    ours,
                    theirs,
                })
            }
        };
        let first_shard = first.shard.unwrap_or(shard);
        same(
            "number of shards",
            first_shard.count.to_string(),
            shard.count.to_string(),
        )?;
        same("seed", first.seed.to_string(), report.seed.to_string())?;
        same(
            "change id",
            first.change_id.clone(),
            report.change_id.clone(),
        )?;
        same("manifest", first.manifest.clone(), report.manifest.clone())?;
        same(
            "integration",
            format!("{:?} {}", first.integration.kind, first.integration.target),
            format!(
                "{:?} {}",
                report.integration.kind, report.integration.target
            ),
        )?;
        let checks = |r: &RunReport| {
            r.checks
                .iter()
                .map(|c| format!("{} ({})", c.id, c.severity))
                .collect::<Vec<_>>()
                .join(", ")
        };
        same("list of checks", checks(first), checks(report))?;
        if let Some((other, _)) = by_shard.insert(shard.index, (name, report)) {
            return Err(MergeError::Repeated {
                shard,
                first: other.clone(),
                second: name.clone(),
            });
        }
    }
    let count = first.shard.map_or(1, |s| s.count);
    let missing: Vec<u32> = (1..=count).filter(|k| !by_shard.contains_key(k)).collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing { missing, count });
    }
    let shards: Vec<&RunReport> = by_shard.values().map(|(_, r)| *r).collect();
    let Some(lead) = shards.first() else {
        return Err(MergeError::Empty);
    };
    // Every shard lists the same checks in the same order (checked above).
    let checks = (0..first.checks.len())
        .filter_map(|i| {
            let results: Vec<&CheckResult> =
                shards.iter().filter_map(|r| r.checks.get(i)).collect();
            merge_check(&results)
        })
        .collect();
    let judgement = Judgement::from_checks(checks);
    let mut report = RunReport {
        format: REPORT_FORMAT.to_owned(),
        verdict: judgement.verdict,
        seed: first.seed,
        run_id: format!("{}-merged", lead.run_id),
        change_id: first.change_id.clone(),
        manifest: first.manifest.clone(),
        integration: first.integration.clone(),
        scenarios: merge_scenarios(&shards, ran),
        skipped_scenarios: {
            let mut skipped: Vec<_> = shards
                .iter()
                .flat_map(|r| r.skipped_scenarios.iter().cloned())
                .collect();
            skipped.sort_by_key(|s| s.scenario);
            skipped.dedup_by_key(|s| s.scenario);
            skipped
        },
        checks: Vec::new(),
        timings: merge_timings(&shards, ran),
        replay: unsharded_replay(&lead.replay),
        artifacts: None,
        timeline: None,
        shard: None,
        merged_from: by_shard
            .values()
            .map(|(name, r)| ShardRun {
                shard: r.shard.unwrap_or(Shard { index: 1, count }),
                run_id: r.run_id.clone(),
                verdict: r.verdict,
                report: (*name).clone(),
                artifacts: r.artifacts.clone(),
            })
            .collect(),
    };
    report = report.with_judgement(judgement);
    Ok(report)
}

/// One check over every shard (`None` for no shard).
fn merge_check(all: &[&CheckResult]) -> Option<CheckResult> {
    let first = all.first()?;
    let status = if all.iter().any(|c| c.status == Status::Fail) {
        Status::Fail
    } else if all.iter().any(|c| c.status == Status::Pass) {
        Status::Pass
    } else {
        Status::Skip
    };
    let mut scenarios: Vec<_> = all
        .iter()
        .flat_map(|c| c.scenarios.iter().copied())
        .collect();
    scenarios.sort();
    scenarios.dedup();
    Some(CheckResult {
        id: first.id.clone(),
        passes_when: first.passes_when.clone(),
        status,
        severity: first.severity,
        overridden: first.overridden,
        required: all.iter().any(|c| c.required),
        // A manifest's reason is the same in every shard; a skip's is that of a shard
        // that skipped, when all did.
        reason: all
            .iter()
            .find(|c| c.status == status)
            .and_then(|c| c.reason.clone()),
        scenarios,
        findings_total: all.iter().map(|c| c.findings_total).sum(),
        findings: all
            .iter()
            .flat_map(|c| c.findings.iter().cloned())
            .take(FINDINGS_KEPT)
            .collect(),
    })
}

/// Per scenario, in run order: counts add up, times as the parts `ran`.
fn merge_scenarios(shards: &[&RunReport], ran: Ran) -> Vec<ScenarioReport> {
    let mut merged: BTreeMap<_, ScenarioReport> = BTreeMap::new();
    for report in shards.iter().flat_map(|r| &r.scenarios) {
        merged
            .entry(report.scenario)
            .and_modify(|m| {
                m.deliveries += report.deliveries;
                m.acked += report.acked;
                m.should_land += report.should_land;
                m.landed += report.landed;
                m.send_ms = ran.combine(m.send_ms, report.send_ms);
                m.total_ms = ran.combine(m.total_ms, report.total_ms);
                m.timed_out |= report.timed_out;
                m.sessions = match (m.sessions, report.sessions) {
                    (Some(a), Some(b)) => Some(Sessions {
                        should_open: a.should_open + b.should_open,
                        opened: a.opened + b.opened,
                    }),
                    (a, b) => a.or(b),
                };
            })
            .or_insert_with(|| report.clone());
    }
    merged.into_values().collect()
}

/// Wall times as the parts `ran`; events add up.
fn merge_timings(shards: &[&RunReport], ran: Ran) -> Timings {
    let fold = |f: fn(&Timings) -> u64| {
        shards
            .iter()
            .map(|r| f(&r.timings))
            .reduce(|a, b| ran.combine(a, b))
            .unwrap_or(0)
    };
    let events_landed = shards.iter().map(|r| r.timings.events_landed).sum();
    let drive_ms = fold(|t| t.drive_ms);
    Timings {
        total_ms: fold(|t| t.total_ms),
        start_ms: fold(|t| t.start_ms),
        drive_ms,
        judge_ms: fold(|t| t.judge_ms),
        events_landed,
        landed_per_second: if drive_ms > 0 {
            (events_landed as f64 / (drive_ms as f64 / 1000.0) * 10.0).round() / 10.0
        } else {
            0.0
        },
    }
}

/// A shard's replay command without its `--shard K/N`: the unsharded run.
fn unsharded_replay(replay: &str) -> String {
    let words: Vec<&str> = replay.split(' ').collect();
    let mut kept = Vec::with_capacity(words.len());
    let mut skip_next = false;
    for word in words {
        if skip_next {
            skip_next = false;
        } else if word == "--shard" {
            skip_next = true;
        } else {
            kept.push(word);
        }
    }
    kept.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Finding;
    use crate::report::fixture;
    use crate::run::plan::Scenario;

    fn shard(index: u32, count: u32, edit: impl FnOnce(&mut RunReport)) -> (String, RunReport) {
        let mut report = fixture::passed();
        report.shard = Some(Shard { index, count });
        report.run_id = format!("run-{index}");
        report.replay = format!("stagegate run m.yaml --seed 42 --shard {index}/{count}");
        edit(&mut report);
        (format!("shard-{index}/report.json"), report)
    }

    fn finding(candidate: &str) -> Finding {
        Finding {
            scenario: Some(Scenario::Duplicates),
            candidate: Some(candidate.into()),
            source_candidate: None,
            correlation_id: None,
            expected: "once".into(),
            seen: "twice".into(),
            exchanges: Vec::new(),
        }
    }

    fn fail(report: &mut RunReport, id: &str, findings: usize) {
        let check = report
            .checks
            .iter_mut()
            .find(|c| c.id == id)
            .expect("a check of the fixture");
        check.status = Status::Fail;
        check.findings_total = findings;
        check.findings = (0..findings.min(FINDINGS_KEPT))
            .map(|i| finding(&format!("CAND_{i}")))
            .collect();
    }

    #[test]
    fn waves_merge_like_shards_with_times_that_add_up() {
        let wave = |index: u64, drive_ms, edit: fn(&mut RunReport)| {
            shard(9, 9, |r| {
                r.shard = Some(Shard { index: 9, count: 9 });
                r.timings.drive_ms = drive_ms;
                r.timings.judge_ms = 10 * index;
                r.timings.events_landed = 100;
                edit(r);
            })
        };
        let outer = Some(Shard { index: 2, count: 3 });
        let merged = merge_waves(
            vec![
                wave(1, 1_000, |_| {}),
                wave(2, 3_000, |r| fail(r, "idempotency.exactly_once", 2)),
            ],
            outer,
        )
        .expect("merges");
        assert_eq!(
            merged.shard, outer,
            "the run's own shard, for `report merge`"
        );
        assert_eq!(merged.verdict, Verdict::Blocked);
        let shards: Vec<Shard> = merged.merged_from.iter().map(|p| p.shard).collect();
        assert_eq!(
            shards,
            [Shard { index: 1, count: 2 }, Shard { index: 2, count: 2 }],
            "named by wave, in order"
        );
        assert_eq!(merged.timings.drive_ms, 4_000, "one after another");
        assert_eq!(merged.timings.judge_ms, 30);
        assert_eq!(merged.timings.events_landed, 200);
        assert_eq!(merged.timings.landed_per_second, 50.0);
        let by_shard = merge(&[
            shard(1, 2, |r| r.timings.drive_ms = 1_000),
            shard(2, 2, |r| r.timings.drive_ms = 3_000),
        ])
        .expect("merges");
        assert_eq!(
            by_shard.timings.drive_ms, 3_000,
            "side by side: the slowest"
        );
    }

    #[test]
    fn statuses_fold_counts_add_and_the_verdict_follows() {
        let id = "idempotency.exactly_once";
        let reports = [
            shard(1, 3, |r| fail(r, id, 20)),
            shard(2, 3, |_| {}),
            shard(3, 3, |r| fail(r, id, 10)),
        ];
        let merged = merge(&reports).expect("merges");
        assert_eq!(merged.verdict, Verdict::Blocked);
        let check = merged.checks.iter().find(|c| c.id == id).expect("kept");
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.findings_total, 30);
        assert_eq!(
            check.findings.len(),
            FINDINGS_KEPT,
            "kept findings are capped"
        );
        assert_eq!(merged.shard, None);
        assert_eq!(merged.replay, "stagegate run m.yaml --seed 42");
        let runs: Vec<&str> = merged
            .merged_from
            .iter()
            .map(|s| s.run_id.as_str())
            .collect();
        assert_eq!(runs, ["run-1", "run-2", "run-3"]);
        for (merged, original) in merged.checks.iter().zip(&reports[1].1.checks) {
            if merged.id != id {
                assert_eq!(merged.status, original.status, "{}", merged.id);
            }
        }
    }

    #[test]
    fn a_check_passes_if_any_shard_judged_it_and_skips_only_if_all_skipped() {
        let id = "contract.required_fields";
        let skip = |r: &mut RunReport| {
            let check = r.checks.iter_mut().find(|c| c.id == id).expect("check");
            check.status = Status::Skip;
            check.reason = Some("nothing to judge".into());
            check.scenarios.clear();
        };
        let merged = merge(&[shard(1, 2, skip), shard(2, 2, |_| {})]).expect("merges");
        let check = merged.checks.iter().find(|c| c.id == id).expect("check");
        assert_eq!(check.status, Status::Pass);
        assert_eq!(check.reason, None);
        let merged = merge(&[shard(1, 2, skip), shard(2, 2, skip)]).expect("merges");
        let check = merged.checks.iter().find(|c| c.id == id).expect("check");
        assert_eq!(check.status, Status::Skip);
        assert_eq!(check.reason.as_deref(), Some("nothing to judge"));
        assert_eq!(merged.verdict, Verdict::Pass);
    }

    #[test]
    fn scenarios_add_up_in_run_order() {
        let reports = [shard(1, 2, |_| {}), shard(2, 2, |_| {})];
        let merged = merge(&reports).expect("merges");
        assert_eq!(merged.scenarios.len(), reports[0].1.scenarios.len());
        for (merged, one) in merged.scenarios.iter().zip(&reports[0].1.scenarios) {
            assert_eq!(merged.scenario, one.scenario);
            assert_eq!(merged.deliveries, one.deliveries * 2);
            assert_eq!(merged.landed, one.landed * 2);
            let doubled = one.sessions.map(|s| (s.should_open * 2, s.opened * 2));
            assert_eq!(merged.sessions.map(|s| (s.should_open, s.opened)), doubled);
        }
        assert!(
            merged.scenarios.iter().any(|s| s.sessions.is_some()),
            "the fixture has a policy scenario, whose sessions add up too"
        );
        assert_eq!(
            merged.timings.events_landed,
            reports[0].1.timings.events_landed * 2
        );
    }

    #[test]
    fn mismatched_missing_and_repeated_shards_are_refused() {
        // (reports, expected message, why)
        type Case = (Vec<(String, RunReport)>, &'static str, &'static str);
        let cases: Vec<Case> = vec![
            (Vec::new(), "no report to merge", "nothing given"),
            (
                vec![shard(1, 3, |_| {}), shard(3, 3, |_| {})],
                "shards 2 of 3 are missing",
                "a shard left out",
            ),
            (
                vec![
                    shard(1, 2, |_| {}),
                    shard(1, 2, |_| {}),
                    shard(2, 2, |_| {}),
                ],
                "are both shard 1/2",
                "a shard given twice",
            ),
            (
                vec![shard(1, 2, |_| {}), shard(2, 2, |r| r.seed = 7)],
                "its seed is 7, not 42",
                "another run's shard",
            ),
            (
                vec![shard(1, 2, |_| {}), shard(2, 3, |_| {})],
                "its number of shards is 3, not 2",
                "another split",
            ),
            (
                vec![shard(1, 2, |_| {}), shard(2, 2, |r| r.shard = None)],
                "is not the report of a shard",
                "an unsharded report",
            ),
            (
                vec![shard(1, 1, |r| {
                    r.format = "stagegate.run-report/2.0".into()
                })],
                "in format `stagegate.run-report/2.0`",
                "a format from the future",
            ),
        ];
        for (reports, expected, why) in cases {
            let err = merge(&reports).expect_err(why).to_string();
            assert!(err.contains(expected), "{why}: {err}");
        }
    }
}
