//! Trust beyond the seed manifest: three manifests of other domains, written from
//! public vendor documentation (`tests/fixtures/any-manifest/README.md` says which),
//! each with its own contracts, id formats, envelope and thresholds. On each of them
//! the reference relay passes every scenario for five seeds, and every planted relay
//! defect of `teeth.rs` is blocked by exactly the check that catches it on the seed.

use std::collections::BTreeSet;

use crate::teeth::{DEFECTS, failed, gate_on, passes_on, relay_with};
use crate::util::Stagegate;

/// The fixtures, each a different domain.
const FIXTURES: &[&str] = &[
    "tests/fixtures/any-manifest/background-check-checkr.yaml",
    "tests/fixtures/any-manifest/assessment-codesignal.yaml",
    "tests/fixtures/any-manifest/ats-numeric-ids-greenhouse.yaml",
];

/// Checks that may skip in a full run without --policy (the `policy.*` checks always
/// may): no stage change reaches an outage.
const MAY_SKIP: &[&str] = &["kill_switch.gates_not_paused"];

#[test]
fn every_fixture_validates() {
    for manifest in FIXTURES {
        let out = Stagegate::new(["validate", manifest]).run();
        assert_eq!(out.code, 0, "{manifest}\n{}\n{}", out.stdout, out.stderr);
    }
}

/// The correct relay passes every scenario of `manifest`, nothing it was meant to
/// judge skips, and every scenario is driven to the end.
fn passes_everything(manifest: &str, seeds: std::ops::RangeInclusive<u64>) {
    for seed in seeds {
        let report = passes_on(manifest, &[], seed, MAY_SKIP);
        for scenario in report["scenarios"].as_array().expect("scenarios") {
            assert_eq!(
                scenario["landed"], scenario["should_land"],
                "{manifest}: {scenario}"
            );
        }
        assert!(
            report.get("skipped_scenarios").is_none(),
            "{manifest}: every scenario is driven: {:#}",
            report["skipped_scenarios"]
        );
    }
}

/// Every planted defect is blocked on `manifest` by exactly the checks that block it
/// on the seed manifest, except where `otherwise` says why the manifest differs.
fn blocks_every_defect(manifest: &str, otherwise: &[(&str, &[&str])]) {
    let mut wrong = Vec::new();
    for defect in DEFECTS {
        let checks = otherwise
            .iter()
            .find(|(faults, _)| *faults == defect.faults)
            .map_or(defect.checks, |(_, checks)| *checks);
        let (code, report) = gate_on(
            manifest,
            &relay_with(defect.faults, ""),
            false,
            defect.scenarios,
            1,
        );
        let expected: BTreeSet<String> = checks.iter().map(|c| (*c).to_owned()).collect();
        let got = failed(&report);
        if got != expected || code != 1 {
            wrong.push(format!(
                "`{}`: expected {expected:?} (exit 1), got {got:?} (exit {code})",
                defect.faults
            ));
        }
    }
    assert!(wrong.is_empty(), "{manifest}:\n{}", wrong.join("\n"));
}

#[test]
fn a_background_check_manifest_passes_for_5_seeds() {
    passes_everything(FIXTURES[0], 1..=5);
}

#[test]
fn an_assessment_manifest_passes_for_5_seeds() {
    passes_everything(FIXTURES[1], 1..=5);
}

#[test]
fn a_numeric_id_ats_manifest_passes_for_5_seeds() {
    passes_everything(FIXTURES[2], 1..=5);
}

#[test]
fn defects_are_blocked_on_a_background_check_manifest() {
    // Checkr's event `id` is both the event id and the idempotency key (its
    // `envelope:` says so), so a relay that rewrites the key rewrites the event's
    // identity: the event the vendor sent never lands, and the one that does is
    // logged under no id the integration printed.
    blocks_every_defect(
        FIXTURES[0],
        &[(
            "rewrite_key",
            &[
                "idempotency.key_stable",
                "delivery.no_loss",
                "observability.log_fields",
            ],
        )],
    );
}

#[test]
fn defects_are_blocked_on_an_assessment_manifest() {
    blocks_every_defect(FIXTURES[1], &[]);
}

#[test]
fn defects_are_blocked_on_a_numeric_id_ats_manifest() {
    blocks_every_defect(FIXTURES[2], &[]);
}

/// `sandbox generate --manifest M` writes candidates of M's own profiles with ids
/// from M's rules; the dataset loads back for `run --dataset` at 10,000 candidates,
/// and a run over a smaller one passes.
#[test]
fn datasets_are_generated_from_each_manifest() {
    use stagegate::manifest::Manifest;
    use stagegate::sandbox::dataset::{GenerateOptions, RiskMix, write};
    for manifest_path in FIXTURES {
        let path = crate::util::repo_root().join(manifest_path);
        let manifest = Manifest::load(&path).expect("loads").value;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("dataset.yaml");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        let options = GenerateOptions {
            count: 10_000,
            seed: 7,
            mix: RiskMix::default(),
        };
        let summary = write(&mut out, &manifest, options).expect("generates");
        drop(out);
        assert_eq!(summary.total(), 10_000, "{manifest_path}");
        let sandbox = stagegate::sandbox::load_dataset(&manifest, &file)
            .unwrap_or_else(|e| panic!("{manifest_path}: the dataset loads: {e}"));
        let rules = manifest.id_rules();
        let seeded: Vec<_> = sandbox
            .candidates
            .iter()
            .filter(|c| c.role == stagegate::sandbox::Role::Seeded)
            .collect();
        assert_eq!(seeded.len(), 10_000);
        assert!(
            seeded.iter().all(|c| rules.violation(&c.id.0).is_none()),
            "{manifest_path}: every id within the rules"
        );
        let ids: BTreeSet<&str> = seeded.iter().map(|c| c.id.0.as_str()).collect();
        assert_eq!(ids.len(), 10_000, "{manifest_path}: unique ids");

        let small = dir.path().join("small.yaml");
        let out = Stagegate::new([
            "sandbox",
            "generate",
            "--manifest",
            manifest_path,
            "--count",
            "150",
            "--seed",
            "3",
            "--out",
            small.to_str().expect("utf-8"),
        ])
        .run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        let report = dir.path().join("report.json");
        let out = Stagegate::new([
            "run",
            manifest_path,
            "--scenario",
            "clean",
            "--dataset",
            small.to_str().expect("utf-8"),
            "--report",
            &format!("json={}", report.display()),
        ])
        .run();
        assert_eq!(
            out.code, 0,
            "{manifest_path}\n{}\n{}",
            out.stdout, out.stderr
        );
    }
}
