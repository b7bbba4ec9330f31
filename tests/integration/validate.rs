//! `stagegate validate`: the seeds load; every bad fixture is rejected with a placed,
//! helpful diagnostic.

use crate::snapshot;
use crate::util::Stagegate;

#[test]
fn repository_manifests_validate() {
    let out = Stagegate::new([
        "validate",
        "manifests/release-gate.yaml",
        "manifests/hiring-policy.yaml",
    ])
    .run()
    .expect_code(0);
    snapshot!("validate_repository_manifests", out.stdout);
    assert_eq!(out.stderr, "", "no warnings on the shipped manifests");
}

#[test]
fn bad_manifests_are_rejected_with_placed_diagnostics() {
    // (fixture, text the diagnostic must contain, why the fixture is wrong)
    let rows = [
        (
            "misspelt-key",
            "did you mean `required_fields`?",
            "a misspelt key gets a suggestion",
        ),
        (
            "bad-assertion",
            "did you mean `RFC3339`?",
            "an assertion that does not parse",
        ),
        (
            "bad-regex",
            "invalid regular expression",
            "a `matches` regex that does not compile",
        ),
        (
            "version-2",
            "unsupported format version \"2.0\"",
            "another major version",
        ),
        (
            "wrong-type",
            "invalid type: string \"sometimes\", expected a boolean",
            "a value of the wrong type",
        ),
        (
            "unknown-severity",
            "unknown variant `blocker`",
            "an enum value serde does not know",
        ),
        (
            "unknown-contract",
            "did you mean `assessment.score.posted`?",
            "a sequence entry naming no contract",
        ),
        (
            "unknown-enum-value",
            "`manual_review` is not a value of any enum",
            "a sequence suffix naming no enum value",
        ),
        (
            "duplicate-candidate",
            "candidate `CAND_canary_001` is listed twice",
            "candidate ids are unique",
        ),
        (
            "bad-field-path",
            "malformed field path",
            "a required field that is not a dotted path",
        ),
        (
            "unknown-list",
            "did you mean `supported_languages`?",
            "an `in` list that does not exist",
        ),
        (
            "no-channels",
            "`notify_channels` is empty",
            "a kill switch that notifies nobody",
        ),
        (
            "bad-threshold",
            "is not a percentage above 0",
            "a threshold that can never trip",
        ),
        (
            "invalid-candidate-id",
            "candidate id breaks contract",
            "an id that every event would fail",
        ),
        (
            "too-few-ids",
            "the contracts' candidate-id rules admit only 1 more id beyond",
            "an id rule no run can make copies within",
        ),
        (
            "bad-envelope",
            "`data..id` is not a field path",
            "an envelope path that does not parse",
        ),
        ("malformed", "invalid YAML", "YAML that does not parse"),
        ("empty", "is empty", "a file with no document"),
        (
            "not-a-mapping",
            "a manifest is a YAML mapping",
            "a top-level list",
        ),
        (
            "several-errors",
            "has 3 errors",
            "every error is reported in one run",
        ),
        (
            "policy-unknown-role",
            "did you mean `${occurredAt}`?",
            "a policy key template naming no field",
        ),
        (
            "unknown-check",
            "did you mean `idempotency.exactly_once`?",
            "a `checks:` entry naming no check",
        ),
        (
            "check-off-without-reason",
            "is turned off without a `reason`",
            "a check turned off must say why",
        ),
    ];
    for (fixture, needle, why) in rows {
        let path = format!("tests/fixtures/manifests/{fixture}.yaml");
        let out = Stagegate::new(["validate", path.as_str()]).run();
        assert_eq!(out.code, 2, "{fixture}: {why}\n{}", out.stderr);
        assert!(
            out.stderr.contains(needle),
            "{fixture}: {why}: expected {needle:?} in\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{fixture}: {why}");
    }
}

#[test]
fn diagnostics_render_with_file_line_column_and_hint() {
    for fixture in [
        "misspelt-key",
        "bad-assertion",
        "several-errors",
        "malformed",
        "unknown-enum-value",
        "policy-unknown-role",
        "unknown-check",
        "too-few-ids",
    ] {
        let path = format!("tests/fixtures/manifests/{fixture}.yaml");
        let out = Stagegate::new(["validate", path.as_str()])
            .run()
            .expect_code(2);
        snapshot!(format!("diagnostic_{fixture}"), out.stderr);
    }
}

#[test]
fn non_utf8_and_missing_files_are_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"version: \"1.3\"\nchange_id: caf\xe9\n").expect("write fixture");
    let out = Stagegate::new(["validate", "latin1.yaml"])
        .current_dir(dir.path())
        .run()
        .expect_code(2);
    assert!(
        out.stderr
            .contains("is not UTF-8 text: invalid byte at line 2, column 15"),
        "{}",
        out.stderr
    );
    let out = Stagegate::new(["validate", "nope.yaml"])
        .current_dir(dir.path())
        .run()
        .expect_code(2);
    assert!(
        out.stderr.contains("cannot read manifest nope.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn every_file_is_validated_even_after_a_failure() {
    let out = Stagegate::new([
        "validate",
        "tests/fixtures/manifests/empty.yaml",
        "manifests/release-gate.yaml",
    ])
    .run()
    .expect_code(2);
    assert!(
        out.stdout
            .contains("invalid  tests/fixtures/manifests/empty.yaml")
    );
    assert!(out.stdout.contains("ok  manifests/release-gate.yaml"));
}

#[test]
fn usage_errors_exit_2() {
    let out = Stagegate::new(["validate"]).run().expect_code(2);
    assert!(
        out.stderr.contains("required arguments were not provided"),
        "{}",
        out.stderr
    );
    let out = Stagegate::new([
        "check",
        "--manifest",
        "manifests/release-gate.yaml",
        "--format",
        "xml",
        "x",
    ])
    .run()
    .expect_code(2);
    assert!(out.stderr.contains("invalid value 'xml'"), "{}", out.stderr);
}

#[test]
fn help_texts_are_stable() {
    for args in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["validate", "--help"],
        vec!["schema", "--help"],
        vec!["run", "--help"],
        vec!["rehearse", "outage", "--help"],
        vec!["report", "merge", "--help"],
    ] {
        let out = Stagegate::new(&args).run().expect_code(0);
        snapshot!(
            format!(
                "help_{}",
                args.join("_").trim_start_matches("--").replace("_--", "_")
            ),
            out.stdout
        );
    }
}
