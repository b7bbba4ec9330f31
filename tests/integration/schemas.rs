//! The committed JSON Schemas are current, and the repository's manifests obey them.

use std::path::Path;

use serde_json::Value;

use crate::util::{Stagegate, repo_root};

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Regenerates into a temp dir and compares file by file with `committed`.
fn assert_current(args: &[&str], committed: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().to_str().expect("utf-8 temp path");
    let mut all = vec!["schema"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out_dir]);
    Stagegate::new(all).run().expect_code(0);
    for entry in std::fs::read_dir(dir.path()).expect("generated files") {
        let generated = entry.expect("dir entry").path();
        let name = generated.file_name().expect("file name");
        let current = committed.join(name);
        assert!(
            current.exists(),
            "{} is not committed; run `cargo run -- schema {} --out {}`",
            current.display(),
            args.join(" "),
            committed.display()
        );
        assert_eq!(
            std::fs::read_to_string(&generated).expect("generated"),
            std::fs::read_to_string(&current).expect("committed"),
            "{} is stale; run `cargo run -- schema {} --out {}`",
            current.display(),
            args.join(" "),
            committed.display()
        );
    }
}

#[test]
fn committed_contract_schemas_are_current() {
    assert_current(
        &["--manifest", "manifests/release-gate.yaml"],
        &repo_root().join("schemas/contracts"),
    );
}

#[test]
fn committed_format_schemas_are_current() {
    assert_current(&["--formats"], &repo_root().join("schemas"));
}

fn yaml_as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("readable");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn format_validator(name: &str) -> jsonschema::Validator {
    let schema = read_json(&repo_root().join("schemas").join(name));
    jsonschema::validator_for(&schema).expect("the format schema compiles")
}

#[test]
fn every_repository_manifest_obeys_the_format_schema() {
    let gate = format_validator("release-gate.schema.json");
    let policy = format_validator("hiring-policy.schema.json");
    let mut seen = 0;
    for entry in std::fs::read_dir(repo_root().join("manifests")).expect("manifests/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let doc = yaml_as_json(&path);
        let validator = if doc.get("policyVersion").is_some() {
            &policy
        } else {
            &gate
        };
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let first_line = std::fs::read_to_string(&path)
            .expect("readable")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            first_line.starts_with("# yaml-language-server: $schema=../schemas/"),
            "{} points editors at its schema",
            path.display()
        );
        seen += 1;
    }
    assert!(
        seen >= 2,
        "manifests/ holds the release gate and the policy"
    );
}

#[test]
fn the_format_schema_rejects_bad_fixtures_too() {
    // (fixture, JSON Pointer the schema complains about, why)
    let rows = [
        ("misspelt-key", "/contracts/0", "unknown keys are forbidden"),
        (
            "wrong-type",
            "/release_gate/kill_switch/action/queue_events",
            "booleans are booleans",
        ),
        (
            "unknown-severity",
            "/contracts/1/on_failure/severity",
            "severity is an enum",
        ),
        ("unknown-check", "/checks", "check ids are an enum"),
        (
            "check-off-without-reason",
            "/checks/privacy.no_pii_in_logs",
            "a check turned off says why",
        ),
    ];
    let gate = format_validator("release-gate.schema.json");
    for (fixture, pointer, why) in rows {
        let doc =
            yaml_as_json(&repo_root().join(format!("tests/fixtures/manifests/{fixture}.yaml")));
        let errors: Vec<String> = gate
            .iter_errors(&doc)
            .map(|e| e.instance_path().to_string())
            .collect();
        assert!(
            errors.iter().any(|p| p == pointer),
            "{fixture}: {why}: {errors:?}"
        );
    }
}
