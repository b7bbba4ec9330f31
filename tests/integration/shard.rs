//! Sharded runs: `run --shard K/N` as N separate processes, then `report merge`,
//! compared with the unsharded run of the same seed — the same planned events, the
//! same checks, statuses and finding counts, the same verdict. And a dataset's run in
//! waves (`--wave-size`), alone or in a shard, compared the same way with one wave.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{Stagegate, run_args};

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One gate run kept in `out`, with more arguments after the scenarios; it must reach
/// a verdict.
fn gate_with(
    out: &Path,
    seed: u64,
    faults: &str,
    scenarios: &[&str],
    more: Vec<String>,
) -> crate::util::Output {
    let mut args = run_args(faults, seed);
    args.extend(["--out".to_owned(), out.display().to_string()]);
    for scenario in scenarios {
        args.extend(["--scenario".to_owned(), (*scenario).to_owned()]);
    }
    args.extend(more);
    let run = Stagegate::new(args).run();
    assert!(
        run.code == 0 || run.code == 1,
        "the gate ran to a verdict\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// `--shard K/N`, when there is one.
fn shard_args(shard: Option<&str>) -> Vec<String> {
    shard
        .map(|shard| vec!["--shard".to_owned(), shard.to_owned()])
        .unwrap_or_default()
}

/// One gate run (a shard when `shard` is given) kept in `out`; returns the exit code.
fn gate(out: &Path, seed: u64, faults: &str, scenarios: &[&str], shard: Option<&str>) -> i32 {
    gate_with(out, seed, faults, scenarios, shard_args(shard)).code
}

/// What must not depend on sharding: per check its status and finding count.
fn checks(report: &Value) -> Vec<(String, String, u64)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().expect("id").to_owned(),
                c["status"].as_str().expect("status").to_owned(),
                c["findings_total"].as_u64().expect("count"),
            )
        })
        .collect()
}

/// Per scenario: deliveries planned and events that should land (the plan's counts).
fn planned(report: &Value) -> Vec<(String, u64, u64)> {
    report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| {
            (
                s["scenario"].as_str().expect("name").to_owned(),
                s["deliveries"].as_u64().expect("deliveries"),
                s["should_land"].as_u64().expect("should_land"),
            )
        })
        .collect()
}

/// Every planned event of a run's `plan.json`, by what identifies it.
fn plan_events(out: &Path) -> BTreeSet<String> {
    read_json(&out.join("plan.json"))["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {} {}",
                e["scenario"],
                e["candidate"],
                e["contract"],
                e["event_id"],
                e["idempotency_key"],
                e["should_land"]
            )
        })
        .collect()
}

/// Runs `count` shards one after another (separate processes) and merges them.
fn sharded(
    dir: &Path,
    count: u32,
    seed: u64,
    faults: &str,
    scenarios: &[&str],
) -> (Vec<PathBuf>, i32, Value) {
    let outs: Vec<PathBuf> = (1..=count)
        .map(|k| dir.join(format!("shard-{k}")))
        .collect();
    for (k, out) in (1..=count).zip(&outs) {
        gate(out, seed, faults, scenarios, Some(&format!("{k}/{count}")));
        let report = read_json(&out.join("report.json"));
        assert_eq!(report["shard"]["index"], k);
        assert_eq!(report["shard"]["count"], count);
    }
    let merged = dir.join("merged.json");
    let junit = dir.join("merged.xml");
    let mut args = vec!["report".to_owned(), "merge".to_owned()];
    // Given out of order: the merge orders shards itself.
    args.extend(
        outs.iter()
            .rev()
            .map(|o| o.join("report.json").display().to_string()),
    );
    args.extend([
        "--out".to_owned(),
        merged.display().to_string(),
        "--junit".to_owned(),
        junit.display().to_string(),
    ]);
    let run = Stagegate::new(args).run();
    let junit = std::fs::read_to_string(&junit).expect("merged JUnit");
    assert!(junit.contains("<testsuites"), "{junit}");
    (outs, run.code, read_json(&merged))
}

/// Every scenario but `restart`: on a machine loaded far beyond its cores, the
/// restarted relay can come up after the outage window and never trip, so `restart`'s
/// reset notification is itself timing-dependent, sharded or not; the other three
/// kill-switch scenarios still each run whole in one shard.
const SCENARIOS: &[&str] = &[
    "clean",
    "duplicates",
    "out-of-order",
    "signatures",
    "canary",
    "outage",
    "brownout",
    "mapping-errors",
];

#[test]
fn four_shards_merge_into_the_unsharded_verdict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = dir.path().join("whole");
    let code = gate(&whole, 7, "", SCENARIOS, None);
    let unsharded = read_json(&whole.join("report.json"));
    let (outs, merged_code, merged) = sharded(dir.path(), 4, 7, "", SCENARIOS);

    assert_eq!(merged_code, code, "the merge exits like the unsharded run");
    assert_eq!(merged["verdict"], unsharded["verdict"]);
    assert_eq!(checks(&merged), checks(&unsharded));
    assert_eq!(planned(&merged), planned(&unsharded));
    assert_eq!(merged["seed"], 7);
    assert_eq!(
        merged["replay"], unsharded["replay"],
        "the merged report replays the whole run"
    );
    assert_eq!(merged["merged_from"].as_array().expect("shards").len(), 4);

    // The shards planned exactly the unsharded run's events, each in one shard.
    let whole_events = plan_events(&whole);
    let mut union = BTreeSet::new();
    let mut total = 0;
    for out in &outs {
        let events = plan_events(out);
        total += events.len();
        union.extend(events);
    }
    assert_eq!(total, union.len(), "no event is planned in two shards");
    assert_eq!(union, whole_events);
    // Each kill-switch scenario ran in exactly one shard.
    for scenario in ["outage", "brownout", "mapping-errors"] {
        let runs = outs
            .iter()
            .filter(|out| {
                read_json(&out.join("report.json"))["scenarios"]
                    .as_array()
                    .expect("scenarios")
                    .iter()
                    .any(|s| s["scenario"] == scenario)
            })
            .count();
        assert_eq!(runs, 1, "{scenario}");
    }
}

#[test]
fn a_defective_relay_gets_the_same_findings_sharded() {
    // Duplicates written twice and candidate names in the logs: findings in every
    // shard, whose counts must add up to the unsharded run's.
    let faults = "no_dedupe,log_pii";
    let scenarios = ["clean", "duplicates", "canary"];
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = dir.path().join("whole");
    assert_eq!(gate(&whole, 3, faults, &scenarios, None), 1, "blocked");
    let unsharded = read_json(&whole.join("report.json"));
    let (_, code, merged) = sharded(dir.path(), 3, 3, faults, &scenarios);
    assert_eq!(code, 1);
    assert_eq!(merged["verdict"], "blocked");
    assert_eq!(checks(&merged), checks(&unsharded));
    let failed: Vec<(String, String, u64)> = checks(&merged)
        .into_iter()
        .filter(|(_, status, _)| status == "fail")
        .collect();
    assert!(
        failed
            .iter()
            .any(|(id, _, n)| id == "idempotency.exactly_once" && *n > 1),
        "{failed:?}"
    );
}

#[test]
fn merging_refuses_an_incomplete_set_of_shards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("shard-1");
    gate(&out, 5, "", &["clean"], Some("1/2"));
    let run = Stagegate::new([
        "report".to_owned(),
        "merge".to_owned(),
        out.join("report.json").display().to_string(),
        "--out".to_owned(),
        dir.path().join("merged.json").display().to_string(),
    ])
    .run()
    .expect_code(2);
    assert!(
        run.stderr.contains("shards 2 of 2 are missing"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("merged.json").exists(), "no merged report");
    let bad = Stagegate::new(["run", "manifests/release-gate.yaml", "--shard", "0/4"])
        .run()
        .expect_code(2);
    assert!(
        bad.stderr.contains("K counts from 1 to N"),
        "{}",
        bad.stderr
    );
}

/// A generated dataset of `count` candidates in `dir`.
fn dataset(dir: &Path, count: u32) -> PathBuf {
    let path = dir.join(format!("dataset-{count}.yaml"));
    Stagegate::new([
        "sandbox".to_owned(),
        "generate".to_owned(),
        "--count".to_owned(),
        count.to_string(),
        "--seed".to_owned(),
        "11".to_owned(),
        "--out".to_owned(),
        path.display().to_string(),
    ])
    .run()
    .expect_code(0);
    path
}

/// A run of a dataset kept in `out`, with `--wave-size` and perhaps `--shard`.
fn waved(
    out: &Path,
    data: &Path,
    faults: &str,
    scenarios: &[&str],
    wave_size: u32,
    shard: Option<&str>,
) -> crate::util::Output {
    let mut more = vec![
        "--dataset".to_owned(),
        data.display().to_string(),
        "--wave-size".to_owned(),
        wave_size.to_string(),
    ];
    more.extend(shard_args(shard));
    gate_with(out, 3, faults, scenarios, more)
}

#[test]
fn a_dataset_driven_in_waves_gets_the_one_wave_verdict_and_findings() {
    // A defective relay, so that every wave has findings to add up, and a kill-switch
    // scenario, which runs whole in one wave.
    let faults = "no_dedupe,log_pii";
    let scenarios = ["clean", "duplicates", "canary", "brownout"];
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path(), 25);
    let whole = dir.path().join("whole");
    let one = waved(&whole, &data, faults, &scenarios, 0, None);
    assert!(!one.stderr.contains("waves"), "{}", one.stderr);
    let unwaved = read_json(&whole.join("report.json"));

    let out = dir.path().join("waves");
    let run = waved(&out, &data, faults, &scenarios, 10, None);
    assert!(
        run.stderr
            .contains("the 25 candidates run in 3 waves of at most 9"),
        "{}",
        run.stderr
    );
    let merged = read_json(&out.join("report.json"));
    assert_eq!(run.code, one.code, "the waves exit like the one-wave run");
    assert_eq!(merged["verdict"], "blocked");
    assert_eq!(merged["verdict"], unwaved["verdict"]);
    assert_eq!(checks(&merged), checks(&unwaved));
    assert_eq!(planned(&merged), planned(&unwaved));
    assert!(merged["shard"].is_null(), "the whole run, not a slice");
    assert!(
        merged["replay"]
            .as_str()
            .is_some_and(|r| r.contains(" --wave-size 10 ")),
        "{}",
        merged["replay"]
    );
    let parts = merged["merged_from"].as_array().expect("waves");
    assert_eq!(parts.len(), 3);
    // Each wave kept its own artifacts; together they planned the one-wave events.
    let mut union = BTreeSet::new();
    let mut total = 0;
    for (k, part) in (1..=3).zip(parts) {
        let wave = out.join(format!("wave-{k}"));
        assert_eq!(part["shard"]["index"], k);
        assert_eq!(
            part["report"],
            wave.join("report.json").display().to_string()
        );
        assert!(wave.join("observation.jsonl").is_file());
        let events = plan_events(&wave);
        total += events.len();
        union.extend(events);
    }
    assert_eq!(total, union.len(), "no event is planned in two waves");
    assert_eq!(union, plan_events(&whole));
    // The waves' times add up: the whole run's drive is theirs together.
    let drive = |r: &Value| r["timings"]["drive_ms"].as_u64().expect("drive");
    let waves_drive: u64 = (1..=3)
        .map(|k| drive(&read_json(&out.join(format!("wave-{k}/report.json")))))
        .sum();
    assert_eq!(drive(&merged), waves_drive);
    // The kill-switch scenario ran in the last wave, after its candidates, as it runs
    // after every candidate in one wave.
    let ran_brownout: Vec<bool> = (1..=3)
        .map(|k| {
            read_json(&out.join(format!("wave-{k}/report.json")))["scenarios"]
                .as_array()
                .expect("scenarios")
                .iter()
                .any(|s| s["scenario"] == "brownout")
        })
        .collect();
    assert_eq!(ran_brownout, [false, false, true]);

    // A one-wave run into the same folder leaves no wave of the earlier run behind.
    waved(&out, &data, "", &["clean"], 0, None);
    assert!(out.join("observation.jsonl").is_file());
    assert!(!out.join("wave-1").exists(), "the waves' folders are gone");
}

#[test]
fn a_shard_in_waves_merges_with_the_other_shards_into_the_whole_verdict() {
    let scenarios = ["clean", "duplicates", "mapping-errors"];
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path(), 14);
    let whole = dir.path().join("whole");
    waved(&whole, &data, "", &scenarios, 0, None);
    let unsharded = read_json(&whole.join("report.json"));
    let mut reports = Vec::new();
    for k in 1..=2 {
        let out = dir.path().join(format!("shard-{k}"));
        let run = waved(&out, &data, "", &scenarios, 3, Some(&format!("{k}/2")));
        assert!(
            run.stderr.contains(&format!(
                "shard {k}/2's part of the 14 candidates run in 3 waves"
            )),
            "{}",
            run.stderr
        );
        let report = read_json(&out.join("report.json"));
        assert_eq!(
            report["shard"]["index"], k,
            "a shard's report, for `report merge`"
        );
        reports.push(out.join("report.json").display().to_string());
    }
    let merged_path = dir.path().join("merged.json");
    let mut args = vec!["report".to_owned(), "merge".to_owned()];
    args.extend(reports);
    args.extend(["--out".to_owned(), merged_path.display().to_string()]);
    let run = Stagegate::new(args).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let merged = read_json(&merged_path);
    assert_eq!(merged["verdict"], unsharded["verdict"]);
    assert_eq!(checks(&merged), checks(&unsharded));
    assert_eq!(planned(&merged), planned(&unsharded));
}

/// A temporary folder with a dataset of 25 candidates in it, and where a run's `out`
/// goes.
fn twenty_five() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path(), 25);
    let out = dir.path().join("out");
    (dir, data, out)
}

/// `run` over `data` in waves of 10 into `out`, `clean` alone, against `sut_cmd`:
/// however it ends.
fn waves_of_ten(out: &Path, data: &Path, sut_cmd: &str) -> crate::util::Output {
    let mut args = run_args("", 3);
    let cmd = args
        .iter()
        .position(|a| a == "--sut-cmd")
        .expect("--sut-cmd")
        + 1;
    args[cmd] = sut_cmd.to_owned();
    args.extend(
        [
            "--out",
            &out.display().to_string(),
            "--scenario",
            "clean",
            "--dataset",
            &data.display().to_string(),
            "--wave-size",
            "10",
        ]
        .map(str::to_owned),
    );
    Stagegate::new(args).run()
}

#[test]
fn a_wave_whose_integration_does_not_start_ends_the_run_without_a_verdict() {
    let (dir, data, out) = twenty_five();
    // The relay starts once; the second wave's start finds the mark and refuses.
    let mark = dir.path().join("started-once");
    let sut_cmd = format!(
        "if [ -e '{mark}' ]; then echo 'refusing a second start' >&2; exit 7; fi; : > '{mark}'; exec {relay}",
        mark = mark.display(),
        relay = crate::util::relay_command(""),
    );
    let run = waves_of_ten(&out, &data, &sut_cmd);
    assert_eq!(run.code, 3, "a start failure\n{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "wave 2/3 did not finish, so the run has no verdict (the waves before it are in {})",
            out.display()
        )),
        "{}",
        run.stderr
    );
    assert!(out.join("wave-1/report.json").is_file(), "wave 1 is kept");
    assert!(!out.join("wave-2/report.json").exists());
    assert!(
        !out.join("wave-3").exists(),
        "no wave after the failed one ran"
    );
    assert!(!out.join("report.json").exists(), "no merged report");
}

#[test]
fn a_wave_report_that_cannot_be_written_fails_the_run_as_its_own_reports_would() {
    let (_dir, data, out) = twenty_five();
    // A folder where wave 2's report goes.
    std::fs::create_dir_all(out.join("wave-2/report.json")).expect("folder");
    let run = waves_of_ten(&out, &data, &crate::util::relay_command(""));
    assert_eq!(
        run.code, 2,
        "a lost report fails a passing run\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("wave-2"), "{}", run.stderr);
    // Every wave ran, and the merged report holds all three.
    let merged = read_json(&out.join("report.json"));
    assert_eq!(merged["verdict"], "pass", "{}", run.stderr);
    assert_eq!(merged["merged_from"].as_array().map(Vec::len), Some(3));
    assert!(out.join("wave-3/report.json").is_file());
}

#[test]
fn a_run_that_cannot_go_in_waves_says_why_and_runs_in_one() {
    let (dir, data, out) = twenty_five();
    let html = dir.path().join("report.html");
    let more = vec![
        "--dataset".to_owned(),
        data.display().to_string(),
        "--wave-size".to_owned(),
        "10".to_owned(),
        "--report".to_owned(),
        format!("html={}", html.display()),
    ];
    let run = gate_with(&out, 3, "", &["clean"], more);
    assert!(
        run.stderr.contains(
            "note: the 25 candidates run in one wave, above --wave-size 10, because the HTML \
             report's per-candidate pages read one whole log"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !out.join("wave-1").exists(),
        "one wave keeps no wave folder"
    );
    assert!(out.join("observation.jsonl").is_file());
    assert!(html.is_file());
}
