//! Reports of a judged run: one versioned document ([`RunReport`]) and its renderings
//! — JSON (with a committed JSON Schema), JUnit XML, Markdown, the terminal summary,
//! and the HTML report, which also embeds per-candidate summaries ([`candidates`]).
//!
//! Every rendering is a pure function of the [`RunReport`], so what a CI job uploads,
//! what a PR comment shows and what the terminal prints can never disagree, and each is
//! snapshot-tested on a hand-made report.

pub mod candidates;
pub mod html;
pub mod human;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod timeline;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::judge::{CheckResult, Judgement, Status};
use crate::run::drive::ScenarioReport;
use crate::run::plan::Scenario;
use crate::run::shard::Shard;
use crate::verdict::Verdict;

/// The format of [`RunReport`]; a reader rejects a major version it does not know.
pub const REPORT_FORMAT: &str = "stagegate.run-report/1.0";

/// The whole story of a gate run, as written by `--report json=PATH`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "stagegate run report")]
pub struct RunReport {
    /// The document format, `stagegate.run-report/<major>.<minor>`.
    pub format: String,
    /// Pass, warn (only `warn` checks failed) or blocked.
    pub verdict: Verdict,
    /// The seed everything random came from: `--seed` replays the run.
    pub seed: u64,
    /// The run's id (also in every observation-log record).
    pub run_id: String,
    /// The manifest's `release_gate.change_id`.
    pub change_id: String,
    /// The manifest file.
    pub manifest: String,
    /// What was tested.
    pub integration: IntegrationInfo,
    /// What happened in each scenario.
    pub scenarios: Vec<ScenarioReport>,
    /// Scenarios asked for but not driven for this manifest, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_scenarios: Vec<crate::run::plan::SkippedScenario>,
    /// Every check, in the protocol's order.
    pub checks: Vec<CheckResult>,
    /// Where the time went.
    pub timings: Timings,
    /// The command that replays this run.
    pub replay: String,
    /// Where the run's artifacts were kept, if they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Artifacts>,
    /// The outage as it happened (`stagegate rehearse outage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<timeline::Timeline>,
    /// The slice of a sharded run this report covers (`run --shard K/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The shards a merged report was made of (`stagegate report merge`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<merge::ShardRun>,
}

/// The integration under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IntegrationInfo {
    /// How the harness reached it.
    pub kind: IntegrationKind,
    /// The command it started, or the URL it reached.
    pub target: String,
}

/// How the harness reached the integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IntegrationKind {
    /// stagegate's own reference relay, started by the harness.
    ReferenceRelay,
    /// A command the harness started (`--sut-cmd`).
    Command,
    /// An integration already running (`--sut-url`).
    Url,
}

/// Where a run's time went, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Timings {
    /// The whole run, from start to verdict.
    pub total_ms: u64,
    /// Starting the mocks and the integration, until it was ready.
    pub start_ms: u64,
    /// Driving every scenario until it drained.
    pub drive_ms: u64,
    /// Judging the observation log.
    pub judge_ms: u64,
    /// Events that landed at the ATS.
    pub events_landed: u64,
    /// Events landed per second of driving.
    pub landed_per_second: f64,
}

/// The files a run kept (`--out DIR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Artifacts {
    /// The folder.
    pub dir: String,
    /// The hash-chained observation log (`stagegate log verify` checks it).
    pub observation_log: String,
    /// The plan the checks judged against.
    pub plan: String,
    /// Everything the integration printed, if the harness started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_output: Option<String>,
}

impl RunReport {
    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    /// How many checks have this status.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The report's checks and verdict taken from a judgement.
    pub fn with_judgement(mut self, judgement: Judgement) -> Self {
        self.verdict = judgement.verdict;
        self.checks = judgement.checks;
        self
    }
}

/// The JSON Schema of [`RunReport`], committed as `schemas/run-report.schema.json`.
pub fn run_report_schema() -> serde_json::Value {
    schemars::schema_for!(RunReport).to_value()
}

/// A report format of `stagegate run --report FORMAT=PATH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// The versioned JSON document.
    Json,
    /// JUnit XML: one test case per check and scenario.
    Junit,
    /// A Markdown summary for a GitHub step summary or a PR comment.
    Markdown,
    /// One self-contained HTML page with per-candidate timelines.
    Html,
}

impl ReportFormat {
    /// Every format, by name.
    pub const ALL: [(&'static str, ReportFormat); 4] = [
        ("json", ReportFormat::Json),
        ("junit", ReportFormat::Junit),
        ("markdown", ReportFormat::Markdown),
        ("html", ReportFormat::Html),
    ];
}

/// One `--report FORMAT=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTarget {
    /// The format.
    pub format: ReportFormat,
    /// Where it goes.
    pub path: PathBuf,
}

/// Why a `--report` argument is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportTargetError {
    /// No `=`.
    #[error("expected FORMAT=PATH (for example `junit=out/gate.xml`), got `{0}`")]
    Shape(String),
    /// An unknown format.
    #[error("unknown report format `{0}`: expected one of json, junit, markdown, html")]
    Format(String),
    /// An empty path.
    #[error("the report path after `{0}=` is empty")]
    EmptyPath(String),
}

impl FromStr for ReportTarget {
    type Err = ReportTargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (format, path) = text
            .split_once('=')
            .ok_or_else(|| ReportTargetError::Shape(text.to_owned()))?;
        let format = ReportFormat::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(format.trim()))
            .map(|(_, f)| *f)
            .ok_or_else(|| ReportTargetError::Format(format.to_owned()))?;
        if path.is_empty() {
            return Err(ReportTargetError::EmptyPath(
                text[..text.len() - 1].to_owned(),
            ));
        }
        Ok(ReportTarget {
            format,
            path: PathBuf::from(path),
        })
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = ReportFormat::ALL
            .iter()
            .find(|(_, format)| format == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file could not be written.
    #[error("cannot write the {format} report {}", path.display())]
    Io {
        /// The format.
        format: ReportFormat,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The JUnit document could not be serialised.
    #[error("cannot serialise the JUnit report")]
    Junit(#[source] quick_junit::SerializeError),
}

/// Renders `report` in `format`.
pub fn render(report: &RunReport, format: ReportFormat) -> Result<String, WriteError> {
    Ok(match format {
        // Serialising plain structs of strings and numbers cannot fail.
        ReportFormat::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        ReportFormat::Junit => junit::render(report).map_err(WriteError::Junit)?,
        ReportFormat::Markdown => markdown::render(report),
        // Without the run's records: the verdict, checks, findings and any timeline.
        ReportFormat::Html => html::render(report, &candidates::AuditData::default()),
    })
}

/// Writes `report` to `target`, creating its folder.
pub fn write(report: &RunReport, target: &ReportTarget) -> Result<(), WriteError> {
    write_text(render(report, target.format)?, target)
}

/// Writes rendered `text` to `target`, creating its folder.
pub fn write_text(text: String, target: &ReportTarget) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        format: target.format,
        path: target.path.clone(),
        source,
    };
    if let Some(dir) = target.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(&target.path, text).map_err(io)
}

/// The scenarios a check's finding belongs to, for grouping: its own, or every
/// scenario the check judged when the finding names none.
pub(crate) fn finding_in(finding: &crate::judge::Finding, scenario: Scenario) -> bool {
    finding.scenario.is_none_or(|s| s == scenario)
}

/// A fixed report for the renderers' snapshot tests and examples.
#[cfg(test)]
pub(crate) mod fixture;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_targets_parse_and_explain_mistakes() {
        let target: ReportTarget = "junit=out/gate.xml".parse().expect("valid");
        assert_eq!(target.format, ReportFormat::Junit);
        assert_eq!(target.path, PathBuf::from("out/gate.xml"));
        let target: ReportTarget = "Markdown=a=b.md".parse().expect("valid");
        assert_eq!(target.format, ReportFormat::Markdown);
        assert_eq!(
            target.path,
            PathBuf::from("a=b.md"),
            "only the first = splits"
        );
        assert_eq!(
            "gate.xml".parse::<ReportTarget>(),
            Err(ReportTargetError::Shape("gate.xml".into()))
        );
        assert_eq!(
            "xml=gate.xml".parse::<ReportTarget>(),
            Err(ReportTargetError::Format("xml".into()))
        );
        assert_eq!(
            "json=".parse::<ReportTarget>(),
            Err(ReportTargetError::EmptyPath("json".into()))
        );
    }

    #[test]
    fn the_json_report_round_trips_and_obeys_its_schema() {
        let report = fixture::blocked();
        let text = render(&report, ReportFormat::Json).expect("renders");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        let validator = jsonschema::validator_for(&run_report_schema()).expect("schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        let back: RunReport = serde_json::from_value(value).expect("reads back");
        assert_eq!(back, report);
    }
}
