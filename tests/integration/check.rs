//! `stagegate check`: verdicts, exit codes, both report formats, every input shape.

use serde_json::Value;

use crate::snapshot;
use crate::util::{Stagegate, fixture};

const MANIFEST: &str = "manifests/release-gate.yaml";

fn check(args: &[&str]) -> Stagegate {
    let mut all = vec!["check", "--manifest", MANIFEST];
    all.extend_from_slice(args);
    Stagegate::new(all)
}

fn good_payload() -> Value {
    serde_json::json!({
        "type": "identity.verification.completed",
        "event_id": "evt_1",
        "idempotency_key": "idk_1",
        "occurred_at": "2026-05-18T09:00:00Z",
        "correlation_id": "cor_1",
        "ats_candidate_id": "CAND_canary_001",
        "verification": {"session_id": "ses_1", "result": "passed", "risk_tier": "low"},
        "evidence_pack": {"url": "https://vendor.example/evidence-packs/ep_1"}
    })
}

#[test]
fn mixed_payloads_are_blocked_with_every_violation_reported() {
    let path = "tests/fixtures/payloads/mixed.jsonl";
    let human = check(&[path]).run().expect_code(1);
    snapshot!("check_mixed_human", human.stdout);
    let json = check(&["--format", "json", path]).run().expect_code(1);
    snapshot!("check_mixed_json", json.stdout);
    let report: Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    assert_eq!(report["verdict"], "blocked");
    assert_eq!(report["payloads"], 7);
    let rules: Vec<&str> = report["violations"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["rule"].as_str().expect("rule"))
        .collect();
    for rule in [
        "required_field",
        "enum",
        "assertion",
        "unknown_type",
        "malformed",
    ] {
        assert!(rules.contains(&rule), "{rule} in {rules:?}");
    }
}

#[test]
fn valid_payloads_pass_from_stdin() {
    let line = good_payload().to_string();
    let out = check(&["--format", "json", "-"])
        .stdin(format!("{line}\n"))
        .run()
        .expect_code(0);
    let report: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(
        report,
        serde_json::json!({"violations": [], "payloads": 1, "verdict": "pass"})
    );
}

#[test]
fn warn_contracts_do_not_block() {
    let payload = serde_json::json!({
        "type": "assessment.score.posted", "event_id": "e", "idempotency_key": "k", "occurred_at": "2026-01-01T00:00:00Z",
        "correlation_id": "c", "ats_candidate_id": "CAND_canary_001",
        "assessment": {"attempt_id": "a", "language": "klingon", "score": 50, "proctoring_flags": []},
        "evidence_pack": {"url": "https://vendor.example/p"}
    });
    let out = check(&["--format", "json", "-"])
        .stdin(payload.to_string())
        .run()
        .expect_code(0);
    let report: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(report["verdict"], "warn");
    assert_eq!(report["violations"][0]["severity"], "warn");
}

#[test]
fn arrays_and_pretty_documents_are_read_with_line_numbers() {
    let mut bad = good_payload();
    bad["verification"]["risk_tier"] = "extreme".into();
    let array = format!(
        "[\n{},\n{}\n]\n",
        serde_json::to_string(&good_payload()).expect("json"),
        serde_json::to_string(&bad).expect("json")
    );
    let out = check(&["--format", "json", "-"])
        .stdin(array)
        .run()
        .expect_code(1);
    let report: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(report["payloads"], 2);
    assert_eq!(report["violations"][0]["line"], 3);
    assert_eq!(report["violations"][0]["path"], "/verification/risk_tier");

    let pretty = serde_json::to_string_pretty(&bad).expect("json");
    let out = check(&["--format", "json", "-"])
        .stdin(pretty)
        .run()
        .expect_code(1);
    let report: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(report["payloads"], 1);
}

#[test]
fn several_files_share_the_stability_rules() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("a.jsonl");
    let second = dir.path().join("b.jsonl");
    let mut rekeyed = good_payload();
    rekeyed["idempotency_key"] = "idk_changed".into();
    std::fs::write(&first, format!("{}\n", good_payload())).expect("write");
    std::fs::write(&second, format!("{rekeyed}\n")).expect("write");
    let out = check(&[
        "--format",
        "json",
        first.to_str().expect("utf-8"),
        second.to_str().expect("utf-8"),
    ])
    .run()
    .expect_code(1);
    let report: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let message = report["violations"][0]["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("a.jsonl:1"), "{message}");
}

#[test]
fn unreadable_inputs_and_bad_manifests_exit_2() {
    let out = check(&["no-such-file.jsonl"]).run().expect_code(2);
    assert!(
        out.stderr.contains("cannot read no-such-file.jsonl"),
        "{}",
        out.stderr
    );
    let bad = fixture("manifests/bad-assertion.yaml");
    let out = Stagegate::new(["check", "--manifest", bad.to_str().expect("utf-8"), "-"])
        .stdin("")
        .run()
        .expect_code(2);
    assert!(
        out.stderr.contains("assertion does not parse"),
        "{}",
        out.stderr
    );
}

#[test]
fn empty_input_passes_and_says_so() {
    let out = check(&["-"]).stdin("\n\n").run().expect_code(0);
    assert!(out.stdout.contains("checked 0 payloads"), "{}", out.stdout);
    assert!(
        out.stdout.contains("note: the input held no payloads"),
        "{}",
        out.stdout
    );
}
