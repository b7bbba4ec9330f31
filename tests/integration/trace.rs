//! `stagegate trace` on real runs: a passing run of the reference relay, and one with
//! planted defects (`STAGEGATE_RELAY_FAULTS=no_dedupe,log_pii`). The runs are made
//! once per test binary and shared with the evidence and HTML report tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::Stagegate;

/// A run kept for the audit tests: its artifacts folder and JSON report.
pub struct Kept {
    pub dir: PathBuf,
    pub report: Value,
}

impl Kept {
    pub fn log(&self) -> PathBuf {
        self.dir.join("observation.jsonl")
    }

    pub fn html(&self) -> PathBuf {
        self.dir.join("report.html")
    }

    pub fn plan(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("plan.json")).expect("plan"))
            .expect("plan JSON")
    }

    /// The candidates of the first finding of a failed check.
    pub fn finding_candidates(&self, check: &str) -> Vec<String> {
        self.report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["id"] == check)
            .unwrap_or_else(|| panic!("no check {check}"))["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["candidate"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Where the shared runs and the test artifacts (screenshots) go.
pub fn artifacts(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("audit")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("artifacts folder");
    dir
}

/// Runs the gate into `target/tmp/audit/NAME`, expecting one of `codes`.
fn keep(name: &str, args: &[&str], codes: &[i32]) -> Kept {
    let dir = artifacts(name);
    let html = format!("html={}", dir.join("report.html").display());
    let mut all: Vec<String> = vec![
        "--seed".into(),
        "5".into(),
        "--out".into(),
        dir.display().to_string(),
        "--report".into(),
        html,
    ];
    all.splice(0..0, args.iter().map(|s| (*s).to_owned()));
    let out = Stagegate::new(all).run();
    assert!(
        codes.contains(&out.code),
        "exit code {} (expected {codes:?})\n{}\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("verdict:"), "{}", out.stdout);
    let report = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.json")).expect("report.json kept"),
    )
    .expect("JSON report");
    Kept { dir, report }
}

/// The reference relay over the delivery scenarios: it passes.
pub fn passing() -> &'static Kept {
    static RUN: OnceLock<Kept> = OnceLock::new();
    RUN.get_or_init(|| {
        keep(
            "passing",
            &[
                "run",
                "manifests/release-gate.yaml",
                "--scenario",
                "clean",
                "--scenario",
                "duplicates",
                "--scenario",
                "signatures",
            ],
            &[0],
        )
    })
}

/// The relay applying duplicates and printing candidates' names: blocked.
pub fn defective() -> &'static Kept {
    static RUN: OnceLock<Kept> = OnceLock::new();
    RUN.get_or_init(|| {
        let relay = format!(
            "STAGEGATE_RELAY_FAULTS=no_dedupe,log_pii {} relay",
            env!("CARGO_BIN_EXE_stagegate")
        );
        keep(
            "defective",
            &[
                "run",
                "manifests/release-gate.yaml",
                "--scenario",
                "duplicates",
                "--sut-cmd",
                &relay,
                "--drain-deadline",
                "4",
            ],
            &[1],
        )
    })
}

/// An outage rehearsal: the kill switch's timeline and queue depth (its verdict is
/// not what these tests judge).
pub fn outage() -> &'static Kept {
    static RUN: OnceLock<Kept> = OnceLock::new();
    RUN.get_or_init(|| {
        keep(
            "outage",
            &[
                "rehearse",
                "outage",
                "manifests/release-gate.yaml",
                "--duration",
                "1",
                "--volume",
                "2",
            ],
            // Only the chart is wanted: a kill-switch check that a loaded machine
            // upsets must not fail the HTML test.
            &[0, 1],
        )
    })
}

fn trace(args: &[&str]) -> crate::util::Output {
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    Stagegate::new(all).run()
}

fn trace_json(log: &Path, flag: &str, id: &str) -> Value {
    let out = trace(&[log.to_str().expect("utf-8"), flag, id, "--format", "json"]).expect_code(0);
    serde_json::from_str(&out.stdout).expect("trace JSON")
}

#[test]
fn a_duplicate_applied_twice_is_visible_in_its_candidates_trace() {
    let run = defective();
    let candidate = run.finding_candidates("idempotency.exactly_once")[0].clone();
    let out = trace(&[
        run.log().to_str().expect("utf-8"),
        "--candidate",
        &candidate,
    ])
    .expect_code(0);
    assert!(out.stdout.contains("chain intact"), "{}", out.stdout);
    assert!(out.stdout.contains("[duplicate ("), "{}", out.stdout);
    assert!(out.stdout.contains("applied 2×"), "{}", out.stdout);

    let json = trace_json(&run.log(), "--candidate", &candidate);
    assert_eq!(json["format"], "stagegate.trace/1.0");
    assert!(
        json["perturbations_from"]
            .as_str()
            .expect("source")
            .ends_with("plan.json")
    );
    let records = json["records"].as_array().expect("records");
    let seqs: Vec<u64> = records
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in log order: {seqs:?}"
    );
    for r in records {
        assert_eq!(r["candidate"], candidate.as_str(), "{r}");
    }
    let twice: Vec<&Value> = json["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["applied"] == 2)
        .collect();
    assert!(!twice.is_empty(), "the defect shows: {:#}", json["events"]);
    assert!(twice.iter().all(|e| e["perturbation"]["duplicate"] == true));
    // log_pii's echo names only the event; it still belongs to the candidate.
    assert!(
        records.iter().any(|r| r["summary"]
            .as_str()
            .expect("summary")
            .contains("candidate_record")),
        "the leaking output line is part of the candidate's story"
    );
}

#[test]
fn flows_and_events_are_traced_and_forgeries_marked() {
    let run = passing();
    let plan = run.plan();
    let events = plan["events"].as_array().expect("events");
    let forged = events
        .iter()
        .find(|e| e["forged"] == true)
        .expect("the signatures scenario plans forgeries");
    let json = trace_json(
        &run.log(),
        "--event-id",
        forged["event_id"].as_str().expect("id"),
    );
    let event = &json["events"][0];
    assert_eq!(event["applied"], 0, "{event:#}");
    assert!(event["rejected"].as_u64().expect("count") >= 1, "{event:#}");
    assert_eq!(event["perturbation"]["forged"], true);
    assert!(
        json["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["mark"]
                .as_str()
                .is_some_and(|m| m.starts_with("forged ("))),
        "{json:#}"
    );

    let clean = events
        .iter()
        .find(|e| e["scenario"] == "clean")
        .expect("clean events");
    let json = trace_json(
        &run.log(),
        "--correlation-id",
        clean["correlation_id"].as_str().expect("id"),
    );
    let stages: Vec<&str> = json["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["stage"].as_str().expect("stage"))
        .collect();
    for stage in ["acknowledged", "processed", "ats_call", "written"] {
        assert!(stages.contains(&stage), "{stage} in {stages:?}");
    }
    for event in json["events"].as_array().expect("events") {
        assert_eq!(event["applied"], 1, "exactly once: {event:#}");
        assert!(event["sent_ms"].as_f64() <= event["applied_ms"].as_f64());
    }
}

#[test]
fn a_broken_chain_is_named_by_seq_and_fails() {
    let run = passing();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("observation.jsonl");
    let text = std::fs::read_to_string(run.log()).expect("log");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let victim = lines
        .iter()
        .position(|l| l.contains("\"kind\":\"ats.event_applied\""))
        .expect("an applied event");
    lines[victim] = lines[victim].replacen("\"revision\":", "\"revision\":9", 1);
    std::fs::write(&log, lines.join("\n") + "\n").expect("tampered copy");
    let record: Value = serde_json::from_str(&lines[victim]).expect("still JSON");
    let candidate = record["candidate"].as_str().expect("candidate");
    let out = trace(&[log.to_str().expect("utf-8"), "--candidate", candidate]).expect_code(1);
    let seq = record["seq"].as_u64().expect("seq");
    assert!(
        out.stderr
            .contains(&format!("record {seq} (line {}) was altered", victim + 1)),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("chain BROKEN"), "{}", out.stdout);
    // No plan beside this copy: the perturbations come from the log.
    assert!(
        out.stdout.contains("the log's sender records"),
        "{}",
        out.stdout
    );

    let out = trace(&[
        log.to_str().expect("utf-8"),
        "--candidate",
        candidate,
        "--plan",
        "no/such/plan.json",
    ])
    .expect_code(2);
    assert!(
        out.stderr
            .contains("cannot read the plan no/such/plan.json"),
        "{}",
        out.stderr
    );
    let out = trace(&[log.to_str().expect("utf-8")]).expect_code(2);
    assert!(out.stderr.contains("--candidate"), "{}", out.stderr);
}

#[test]
fn audit_help_texts_are_stable() {
    for command in ["trace", "evidence"] {
        let out = Stagegate::new([command, "--help"]).run().expect_code(0);
        crate::snapshot!(format!("help_{command}_help"), out.stdout);
    }
}
