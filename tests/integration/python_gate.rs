//! The Python example judged by the gate: `stagegate run` with
//! `--sut-cmd 'python3 examples/python-integration/integration.py'` over every
//! scenario, the kill-switch ones included, for three seeds. It must PASS.
//!
//! The example's kill switch is of another design than the reference relay's (a
//! rate over a sliding window with a minimum sample of 1.5 × ceil(100 / pct), a run
//! of 5, one read probe per 20 s scaled, one good probe closes it; see its README),
//! so this is the proof that the kill-switch checks judge the protocol's
//! tolerances, not the reference relay's tuning. The integration's own log lines
//! say which of its rules tripped it, and the test holds it to them: the brownout
//! must have been caught by the rate rule, the outages by the run, the drifted
//! payloads by the mapping-error count.

use std::path::Path;

use serde_json::Value;
use stagegate::run::plan::Scenario;

use crate::python_example::python3_available;
use crate::util::Stagegate;

const SUT: &str = "python3 examples/python-integration/integration.py";
const SEEDS: [u64; 3] = [1, 2, 3];

/// What the integration said about its kill switch: the reasons it gave for tripping.
fn trip_reasons(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["msg"] == "kill_switch" && line["state"] == "tripped")
        .filter_map(|line| line["reason"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_python_example_passes_every_scenario_for_three_seeds() {
    if !python3_available("the_python_example_passes_every_scenario_for_three_seeds") {
        return;
    }
    for seed in SEEDS {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("artifacts");
        let run = Stagegate::new([
            "run".to_owned(),
            "manifests/release-gate.yaml".to_owned(),
            "--sut-cmd".to_owned(),
            SUT.to_owned(),
            "--seed".to_owned(),
            seed.to_string(),
            "--out".to_owned(),
            out.display().to_string(),
        ])
        .run();
        let integration_log = std::fs::read_to_string(out.join("integration.log"))
            .unwrap_or_else(|e| format!("(no integration.log: {e})"));
        assert_eq!(
            (run.code, run.stdout.contains("verdict: PASS")),
            (0, true),
            "seed {seed}: the Python example must pass the gate\n--- summary\n{}\n--- stderr\n{}\n--- the integration's kill-switch lines\n{}",
            run.stdout,
            run.stderr,
            integration_log
                .lines()
                .filter(|l| l.contains("\"msg\":\"kill_switch") || l.contains("\"msg\":\"notify\""))
                .collect::<Vec<_>>()
                .join("\n")
        );

        let report: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("report.json")).expect("report.json"),
        )
        .expect("JSON report");
        assert_eq!(report["integration"]["kind"], "command", "{report:#}");
        let ran: Vec<&Value> = report["scenarios"]
            .as_array()
            .expect("scenarios")
            .iter()
            .map(|s| &s["scenario"])
            .collect();
        let every: Vec<Value> = Scenario::ALL
            .iter()
            .map(|s| serde_json::to_value(s).expect("a scenario serialises"))
            .collect();
        assert_eq!(
            ran,
            every.iter().collect::<Vec<_>>(),
            "seed {seed}: every scenario ran"
        );
        for check in report["checks"].as_array().expect("checks") {
            // Without --policy the hiring-policy flow's checks have nothing to judge.
            // Every other check was judged.
            let id = check["id"].as_str().expect("id");
            let expected = if id == "kill_switch.gates_not_paused" || id.starts_with("policy.") {
                "skip"
            } else {
                "pass"
            };
            assert_eq!(check["status"], expected, "seed {seed}: {check:#}");
        }

        // Its own breaker did the work, by its own rules.
        let reasons = trip_reasons(&out.join("integration.log"));
        let by = |rule: &str| reasons.iter().filter(|r| r.contains(rule)).count();
        assert!(
            by("ATS calls all failed") >= 2,
            "seed {seed}: the run of 5 trips the outage and the restart's (the restarted process trips again if it meets enough failures before the ATS recovers): {reasons:#?}"
        );
        assert_eq!(
            by("over the 5-minute window, above the 2% threshold"),
            1,
            "seed {seed}: the rate rule trips the brownout above the threshold, and only it: {reasons:#?}"
        );
        assert_eq!(
            by("mapping errors (422)"),
            1,
            "seed {seed}: the mapping-error count trips once: {reasons:#?}"
        );
    }
}
