//! The hiring-policy flow end to end (`stagegate run --policy`): the reference relay
//! and the Python example pass every policy scenario for 10 seeds (the policy checks
//! and `kill_switch.gates_not_paused` judged and passed), each planted policy defect
//! of the relay is blocked by exactly the check that should catch it, and a
//! manifest's `policy:` reference works like `--policy`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::teeth::{failed, gate_with, relay_with};
use crate::util::Stagegate;

/// The policy scenarios of the seed manifest with the repository's policy, against
/// the relay with `faults`: the exit code and the JSON report.
fn policy_gate(faults: &str, seed: u64) -> (i32, Value) {
    policy_gate_on(&relay_with(faults, ""), faults.is_empty(), seed)
}

/// The same against the integration `command`; a `correct` one gets the default
/// drain deadline, a defective one a shorter one to wait out.
fn policy_gate_on(command: &str, correct: bool, seed: u64) -> (i32, Value) {
    gate_with(
        "manifests/release-gate.yaml",
        command,
        correct,
        &["policy", "policy-reconcile", "policy-outage"],
        seed,
        &["--policy", "manifests/hiring-policy.yaml"],
    )
}

/// The ids of the policy checks.
fn policy_checks() -> Vec<&'static str> {
    stagegate::judge::CHECKS
        .iter()
        .map(|c| c.id)
        .filter(|id| id.starts_with("policy."))
        .collect()
}

#[test]
fn the_reference_relay_passes_every_policy_scenario_for_10_seeds() {
    passes_every_policy_check(&relay_with("", ""));
}

#[test]
fn the_python_example_passes_every_policy_scenario_for_10_seeds() {
    if !crate::python_example::python3_available(
        "the_python_example_passes_every_policy_scenario_for_10_seeds",
    ) {
        return;
    }
    passes_every_policy_check("python3 examples/python-integration/integration.py");
}

/// `command` fails nothing and passes every policy check, for seeds 1 to 10.
fn passes_every_policy_check(command: &str) {
    for seed in 1..=10 {
        let (code, report) = policy_gate_on(command, true, seed);
        assert_eq!(
            failed(&report),
            BTreeSet::new(),
            "seed {seed}: {:#}",
            report["checks"]
        );
        assert_eq!(code, 0, "seed {seed}");
        // A policy scenario waits for sessions, not landings, and says how many opened.
        for scenario in report["scenarios"].as_array().expect("scenarios") {
            let sessions = &scenario["sessions"];
            let (should, opened) = (&sessions["should_open"], &sessions["opened"]);
            assert!(
                should.as_u64().is_some_and(|n| n > 0) && opened == should,
                "seed {seed}: {scenario:#}"
            );
        }
        let checks = report["checks"].as_array().expect("checks");
        for id in policy_checks()
            .into_iter()
            .chain(["kill_switch.gates_not_paused"])
        {
            let check = checks.iter().find(|c| c["id"] == id).expect("reported");
            assert_eq!(check["status"], "pass", "seed {seed}: {check:#}");
        }
    }
}

macro_rules! policy_teeth {
    ($($name:ident: $fault:literal => $check:literal because $why:literal;)+) => {
        $(
            #[test]
            #[doc = $why]
            fn $name() {
                let (code, report) = policy_gate($fault, 1);
                let expected: BTreeSet<String> = [$check.to_owned()].into();
                assert_eq!(failed(&report), expected, "fault `{}`: {:#}", $fault, report["checks"]);
                assert_eq!(code, 1, "fault `{}` blocks the release", $fault);
            }
        )+
    };
}

policy_teeth! {
    access_after_failure: "grant_on_failed" => "policy.identity_gate"
        because "a failed verification opens the gate anyway";
    second_session_on_redelivery: "no_stage_dedupe" => "policy.stage_event_idempotency"
        because "every delivery of a stage change looks new, so redeliveries open sessions";
    exception_for_the_wrong_owner: "wrong_exception_owner" => "policy.step_up"
        because "step-up items go to the other role than the policy assigns";
    step_up_ignored: "no_step_up_exception" => "policy.step_up"
        because "a review_required result files no exception item";
    slow_fan_out: "slow_fanout" => "policy.fanout_sla"
        because "the relay opens the session after triggerFanoutSeconds";
    unverified_ats_webhooks: "no_ats_signature_check" => "policy.signature"
        because "forged stage changes are acknowledged and acted on";
    reconciliation_blind_to_lost_events: "reconcile_from_webhooks" => "policy.reconciliation"
        because "the job compares the stages the webhooks told, so a lost stage change is never found";
    gates_paused_during_an_outage: "pause_gates" => "kill_switch.gates_not_paused"
        because "no verification session opens while the switch is tripped, though pause_candidate_gates is false";
}

/// The relay grants the stage's resource as soon as the session opens. When a loaded
/// machine delays the grant past a `review_required` result, that grant also comes
/// before the step-up review: `policy.step_up` may rightly join, nothing else may.
#[test]
fn access_before_identity() {
    let (code, report) = policy_gate("grant_before_result", 1);
    let failed = failed(&report);
    assert!(
        failed.contains("policy.identity_gate"),
        "fault `grant_before_result`: {:#}",
        report["checks"]
    );
    let allowed: BTreeSet<String> = ["policy.identity_gate", "policy.step_up"]
        .map(String::from)
        .into();
    assert!(
        failed.is_subset(&allowed),
        "fault `grant_before_result` failed {failed:?}: {:#}",
        report["checks"]
    );
    assert_eq!(code, 1, "fault `grant_before_result` blocks the release");
}

#[test]
fn a_manifest_policy_reference_is_read_relative_to_the_manifest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = crate::util::repo_root();
    let manifest = std::fs::read_to_string(root.join("manifests/release-gate.yaml")).expect("seed");
    std::fs::write(
        dir.path().join("gate.yaml"),
        format!("{manifest}\npolicy: policies/hiring.yaml\n"),
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    std::fs::copy(
        root.join("manifests/hiring-policy.yaml"),
        dir.path().join("policies/hiring.yaml"),
    )
    .expect("copy");
    let report = dir.path().join("report.json");
    let gate = dir.path().join("gate.yaml");
    let out = Stagegate::new([
        "run",
        gate.to_str().expect("utf-8"),
        "--scenario",
        "policy-reconcile",
        "--report",
        &format!("json={}", report.display()),
    ])
    .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    let reconciliation = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == "policy.reconciliation")
        .expect("reported");
    assert_eq!(reconciliation["status"], "pass", "{reconciliation:#}");
}

#[test]
fn a_policy_scenario_without_a_policy_is_a_usage_error() {
    let out = Stagegate::new(["run", "manifests/release-gate.yaml", "--scenario", "policy"]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--policy POLICY"), "{}", out.stderr);
}
