//! The judge on a real run, through the library: the reference relay, started by the
//! harness as any integration is, goes through every scenario but the kill-switch
//! ones, and every check is judged and passes — none is skipped for want of records —
//! except the kill-switch checks, which have no outage to judge. (`teeth.rs` proves the
//! other direction through the CLI: each deliberate defect fails its check.)

use std::sync::Arc;
use std::time::Duration;

use stagegate::judge::{Status, judge, judge_log};
use stagegate::manifest::Manifest;
use stagegate::mock::MockConfig;
use stagegate::run::drive::DrainLimit;
use stagegate::run::plan::Scenario;
use stagegate::run::scenarios::OutageSettings;
use stagegate::run::{Integration, RunConfig, execute};

use crate::util::repo_root;

/// A run of the reference relay through `scenarios`, into `out`.
fn config(manifest: &Arc<Manifest>, scenarios: Vec<Scenario>, out: &std::path::Path) -> RunConfig {
    RunConfig {
        manifest: Arc::clone(manifest),
        manifest_path: repo_root().join("manifests/release-gate.yaml"),
        integration: Integration::Command(format!(
            "exec '{}' relay",
            env!("CARGO_BIN_EXE_stagegate")
        )),
        seed: 42,
        scenarios,
        out_dir: out.to_owned(),
        time_scale: 60.0,
        drain: DrainLimit {
            stall: Duration::from_secs(20),
            cap: Duration::from_secs(300),
        },
        ready_timeout: Duration::from_secs(30),
        mocks: MockConfig::loopback(42),
        ack_sla: Duration::from_secs(1),
        vendor_secret: None,
        ats_secret: None,
        outage: OutageSettings::default(),
        dataset: None,
        shard: None,
        wave: None,
        policy: None,
    }
}

fn seed_manifest() -> Arc<Manifest> {
    let path = repo_root().join("manifests/release-gate.yaml");
    Arc::new(Manifest::load(&path).expect("the seed loads").value)
}

#[test]
fn the_reference_relay_passes_every_check_it_is_judged_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = seed_manifest();
    let scenarios = Scenario::ALL
        .into_iter()
        .filter(|s| !s.is_kill_switch())
        .collect();
    let config = config(&manifest, scenarios, dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let output = runtime
        .block_on(execute(&config, &|_| {}, &|_| {}))
        .expect("the run completes");
    // Streamed from the file as `run` does it, and the same as the log read whole.
    let judgement = judge_log(&manifest, &output.plan, &output.log).expect("the log judges");
    let records = stagegate::observe::read(&output.log).expect("the log reads");
    assert_eq!(judgement, judge(&manifest, &output.plan, &records));
    let failed: Vec<_> = judgement.failed().collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for check in &judgement.checks {
        // No kill-switch scenario and no policy: those checks skip.
        let expected = if check.id.starts_with("kill_switch.") || check.id.starts_with("policy.") {
            Status::Skip
        } else {
            Status::Pass
        };
        assert_eq!(check.status, expected, "{}: {:?}", check.id, check.reason);
    }
}

#[test]
fn a_second_run_into_the_same_folder_starts_the_integration_afresh() {
    // The same seed gives the same event ids: a relay that kept its dedupe store from
    // the first run would call every event of the second a duplicate and land none.
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = seed_manifest();
    let config = config(&manifest, vec![Scenario::Clean], dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for round in 1..=2 {
        let output = runtime
            .block_on(execute(&config, &|_| {}, &|_| {}))
            .expect("the run completes");
        let judgement = judge_log(&manifest, &output.plan, &output.log).expect("judged");
        let failed: Vec<&str> = judgement.failed().map(|c| c.id.as_str()).collect();
        assert!(failed.is_empty(), "round {round}: {failed:?}");
    }
}
