//! `stagegate run` end to end: the real binary, the real mocks on loopback, the
//! reference relay as a child process, every report, and every exit code.

use std::path::Path;

use serde_json::Value;

use crate::util::{Stagegate, fixture, repo_root};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_reference_relay_passes_and_every_report_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("artifacts");
    let json = dir.path().join("reports/gate.json");
    let junit = dir.path().join("reports/gate.xml");
    let markdown = dir.path().join("reports/gate.md");
    let arg = |format: &str, path: &Path| format!("{format}={}", path.display());
    let run = Stagegate::new([
        "run".to_owned(),
        "manifests/release-gate.yaml".to_owned(),
        "--seed".to_owned(),
        "7".to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
        "--report".to_owned(),
        arg("json", &json),
        "--report".to_owned(),
        arg("junit", &junit),
        "--report".to_owned(),
        arg("markdown", &markdown),
    ])
    .run()
    .expect_code(0);
    assert!(run.stdout.contains("verdict: PASS"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("replay: stagegate run manifests/release-gate.yaml --seed 7"),
        "{}",
        run.stdout
    );

    // The JSON report obeys its committed schema and tells the story of the run.
    let report: Value = serde_json::from_str(&read(&json)).expect("JSON report");
    let schema: Value =
        serde_json::from_str(&read(&repo_root().join("schemas/run-report.schema.json")))
            .expect("committed schema");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["seed"], 7);
    assert_eq!(report["integration"]["kind"], "reference-relay");
    let scenarios: Vec<&str> = report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| s["scenario"].as_str().expect("name"))
        .collect();
    assert_eq!(
        scenarios,
        [
            "clean",
            "duplicates",
            "out-of-order",
            "signatures",
            "canary",
            "outage",
            "brownout",
            "mapping-errors",
            "restart"
        ]
    );
    for scenario in report["scenarios"].as_array().expect("scenarios") {
        assert_eq!(scenario["landed"], scenario["should_land"], "{scenario}");
    }
    let checks = report["checks"].as_array().expect("checks");
    assert_eq!(
        checks.len(),
        stagegate::judge::CHECKS.len(),
        "every check is reported"
    );
    for check in checks {
        // Without --policy the hiring-policy flow's checks have nothing to judge.
        let id = check["id"].as_str().expect("id");
        let expected = if id == "kill_switch.gates_not_paused" || id.starts_with("policy.") {
            "skip"
        } else {
            "pass"
        };
        assert_eq!(check["status"], expected, "{check:#}");
    }
    assert!(report["timings"]["events_landed"].as_u64().expect("count") > 0);

    // JUnit parses; Markdown says pass.
    let xml = quick_junit::Report::deserialize_from_str(&read(&junit)).expect("JUnit XML");
    assert!(xml.tests > 0 && xml.failures == 0, "{xml:?}");
    assert!(read(&markdown).contains("## stagegate: ✅ pass"));

    // The artifacts: the log verifies, and --out also got the reports.
    for name in [
        "observation.jsonl",
        "plan.json",
        "integration.log",
        "report.json",
        "junit.xml",
        "summary.md",
    ] {
        assert!(out.join(name).is_file(), "{name} is kept");
    }
    Stagegate::new([
        "log".to_owned(),
        "verify".to_owned(),
        out.join("observation.jsonl").display().to_string(),
    ])
    .run()
    .expect_code(0);
}

#[test]
fn an_integration_that_exits_before_it_is_ready_is_a_start_failure() {
    let run = Stagegate::new([
        "run",
        "manifests/release-gate.yaml",
        "--sut-cmd",
        "echo booting; echo 'cannot bind: address in use' >&2; exit 4",
    ])
    .run()
    .expect_code(3);
    assert!(
        run.stderr.contains("exited") && run.stderr.contains("cannot bind: address in use"),
        "the error shows the integration's last lines: {}",
        run.stderr
    );
}

#[test]
fn an_integration_that_never_answers_healthz_is_a_start_failure() {
    let run = Stagegate::new([
        "run",
        "manifests/release-gate.yaml",
        "--sut-cmd",
        "echo waiting forever; exec sleep 60",
        "--ready-timeout",
        "1",
    ])
    .run()
    .expect_code(3);
    assert!(
        run.stderr.contains("/healthz") && run.stderr.contains("waiting forever"),
        "{}",
        run.stderr
    );
}

/// Whether process `pid` has ended (gone, or a zombie waiting for its new parent).
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// The integration's process, SIGKILLed when dropped if it is still there, so a failed
/// test leaves nothing running.
struct Reaper(i32);

impl Drop for Reaper {
    fn drop(&mut self) {
        if !ended(self.0) {
            let pid = nix::unistd::Pid::from_raw(self.0);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// How an interrupted `stagegate run` ended.
struct Interrupted {
    code: Option<i32>,
    stderr: String,
    /// The integration's process.
    integration: Reaper,
}

/// Runs the seed gate into `out` with the integration `command`, which writes the pid
/// of the process to watch to `pid_file`; sends `signal` to the harness once that pid
/// is written, and waits for the harness to end. Every wait is bounded.
fn interrupt(
    out: &Path,
    command: &str,
    pid_file: &Path,
    extra: &[&str],
    signal: nix::sys::signal::Signal,
) -> Interrupted {
    use std::time::{Duration, Instant};
    let mut harness = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["run", "manifests/release-gate.yaml"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg("--sut-cmd")
        .arg(command)
        .current_dir(repo_root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the stagegate binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let written = std::fs::read_to_string(pid_file).unwrap_or_default();
        if let (true, Ok(pid)) = (written.ends_with('\n'), written.trim().parse::<i32>()) {
            break pid;
        }
        if Instant::now() > deadline {
            let _ = harness.kill();
            panic!("the harness never started the integration");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let integration = Reaper(pid);
    let harness_pid = nix::unistd::Pid::from_raw(harness.id() as i32);
    nix::sys::signal::kill(harness_pid, signal).expect("signalled");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = harness.try_wait().expect("waits") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = harness.kill();
            panic!("the harness did not end after {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = harness.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    Interrupted {
        code: status.code(),
        stderr,
        integration,
    }
}

/// Waits (bounded) for process `pid`, `what` the harness started, to end after the
/// harness was interrupted.
fn assert_ends(pid: i32, what: &str) {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ended(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) outlived the interrupted harness"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Ctrl-C or SIGTERM to the harness mid-run stops the integration it started, whose
/// process group a terminal's Ctrl-C does not reach, and exits 130 without a verdict.
/// The relay is the command's grandchild, as behind a wrapper script: only a signal to
/// the whole group reaches it.
#[test]
fn an_interrupted_run_stops_the_integration_it_started() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("relay.pid");
    let relay = crate::util::relay_command("");
    let command = format!("{relay} & echo $! > '{}'; wait", pid_file.display());
    let run = interrupt(
        &dir.path().join("out"),
        &command,
        &pid_file,
        &[],
        nix::sys::signal::Signal::SIGTERM,
    );
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    assert_ends(run.integration.0, "the relay");
}

/// An interrupted run's observation log holds every record appended before the
/// signal, its chain intact: the records still buffered are written out, not lost.
#[test]
fn an_interrupted_run_writes_out_its_observation_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    // Never ready: the harness waits for it, with the run's first records buffered.
    let pid_file = dir.path().join("integration.pid");
    let command = format!("echo $$ > '{}'; exec sleep 60", pid_file.display());
    let run = interrupt(
        &out,
        &command,
        &pid_file,
        &["--ready-timeout", "60"],
        nix::sys::signal::Signal::SIGINT,
    );
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    let log = out.join("observation.jsonl");
    let verified = Stagegate::new([
        "log".to_owned(),
        "verify".to_owned(),
        log.display().to_string(),
    ])
    .run()
    .expect_code(0);
    assert!(
        verified.stdout.contains("chain intact"),
        "{}",
        verified.stdout
    );
    let text = read(&log);
    let first: Value = serde_json::from_str(text.lines().next().unwrap_or("{}")).expect("a record");
    assert_eq!(
        first["kind"], "run.start",
        "the run's first record is there"
    );
}

/// A Ctrl-C in a later wave of a run in waves stops that wave's integration and ends
/// the run as an interrupted run ends, with the waves before it kept.
#[test]
fn an_interrupted_wave_stops_its_integration_and_keeps_the_waves_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let data = dir.path().join("dataset.yaml");
    let generate = [
        "sandbox", "generate", "--count", "25", "--seed", "11", "--out",
    ];
    let mut args = generate.map(str::to_owned).to_vec();
    args.push(data.display().to_string());
    Stagegate::new(args).run().expect_code(0);
    // The relay in wave 1; in wave 2 an integration that never gets ready, whose pid
    // tells the test when to press Ctrl-C.
    let (mark, pid_file) = (dir.path().join("started"), dir.path().join("wave2.pid"));
    let command = format!(
        "if [ -e '{mark}' ]; then echo $$ > '{pid}'; exec sleep 60; fi; : > '{mark}'; exec {relay}",
        mark = mark.display(),
        pid = pid_file.display(),
        relay = crate::util::relay_command(""),
    );
    let data = data.display().to_string();
    let extra = [
        "--scenario",
        "clean",
        "--dataset",
        &data,
        "--wave-size",
        "10",
        "--ready-timeout",
        "60",
    ];
    let run = interrupt(
        &out,
        &command,
        &pid_file,
        &extra,
        nix::sys::signal::Signal::SIGINT,
    );
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    assert!(run.stderr.contains("wave 2/3"), "{}", run.stderr);
    assert!(out.join("wave-1/report.json").is_file(), "wave 1 is kept");
    assert!(!out.join("wave-3").exists(), "no wave after it ran");
    assert!(!out.join("report.json").exists(), "no merged report");
    assert_ends(run.integration.0, "wave 2's integration");
}

/// A loopback address that was free a moment ago.
/// `N` distinct free loopback addresses: every port is held until all are picked, so
/// two of them cannot be the same port freed and handed out again.
fn free_addrs<const N: usize>() -> [String; N] {
    let held: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"));
    held.map(|l| l.local_addr().expect("bound address").to_string())
}

/// The flags that fix what an integration reached with `--sut-url` was configured with.
fn fixed_world(ats: &str, vendor: &str, notify: &str) -> Vec<String> {
    [
        "--ats-addr",
        ats,
        "--vendor-addr",
        vendor,
        "--notify-addr",
        notify,
        "--ats-token",
        "ats-secret-token",
        "--vendor-token",
        "vendor-secret-token",
        "--webhook-secret",
        crate::relay::SECRET,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

#[test]
fn an_unreachable_sut_url_is_a_start_failure() {
    let [sut, ats, vendor, notify] = free_addrs();
    let mut args = vec![
        "run".to_owned(),
        "manifests/release-gate.yaml".to_owned(),
        "--sut-url".to_owned(),
        format!("http://{sut}"),
        "--ready-timeout".to_owned(),
        "1".to_owned(),
    ];
    args.extend(fixed_world(&ats, &vendor, &notify));
    let run = Stagegate::new(args).run().expect_code(3);
    assert!(run.stderr.contains("/healthz"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("export STAGEGATE_ATS_TOKEN=ats-secret-token"),
        "the harness says how the integration must be configured: {}",
        run.stderr
    );
}

#[test]
fn a_sut_url_needs_the_world_fixed_up_front() {
    let run = Stagegate::new([
        "run",
        "manifests/release-gate.yaml",
        "--sut-url",
        "http://127.0.0.1:9",
        "--ats-addr",
        "127.0.0.1:9001",
    ])
    .run()
    .expect_code(2);
    assert!(
        run.stderr.contains(
            "give --vendor-addr, --notify-addr, --ats-token, --vendor-token, --webhook-secret"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_sut_url_with_a_policy_needs_the_ats_webhook_secret_too() {
    let mut args: Vec<String> = [
        "run",
        "manifests/release-gate.yaml",
        "--policy",
        "manifests/hiring-policy.yaml",
        "--sut-url",
        "http://127.0.0.1:9",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let [ats, vendor, notify] = free_addrs();
    args.extend(fixed_world(&ats, &vendor, &notify));
    let run = Stagegate::new(args).run().expect_code(2);
    assert!(
        run.stderr.contains("give --ats-webhook-secret"),
        "stage changes are signed with a secret the running integration already has: {}",
        run.stderr
    );
}

#[test]
fn an_integration_already_running_is_judged_through_sut_url() {
    let [listen, ats, vendor, notify] = free_addrs();
    let state = tempfile::tempdir().expect("state dir");
    let manifest = repo_root().join("manifests/release-gate.yaml");
    let mut relay = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .arg("relay")
        .env("STAGEGATE_LISTEN", &listen)
        .env("STAGEGATE_ATS_URL", format!("http://{ats}"))
        .env("STAGEGATE_ATS_TOKEN", "ats-secret-token")
        .env("STAGEGATE_VENDOR_URL", format!("http://{vendor}"))
        .env("STAGEGATE_VENDOR_TOKEN", "vendor-secret-token")
        .env("STAGEGATE_VENDOR_WEBHOOK_SECRET", crate::relay::SECRET)
        .env("STAGEGATE_ATS_WEBHOOK_SECRET", crate::relay::SECRET)
        .env("STAGEGATE_NOTIFY_URL", format!("http://{notify}"))
        .env("STAGEGATE_MANIFEST", &manifest)
        .env("STAGEGATE_STATE_DIR", state.path())
        .env("STAGEGATE_TIME_SCALE", "60")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the relay starts");
    let mut args = vec![
        "run".to_owned(),
        "manifests/release-gate.yaml".to_owned(),
        "--sut-url".to_owned(),
        format!("http://{listen}"),
        "--scenario".to_owned(),
        "clean".to_owned(),
        "--scenario".to_owned(),
        "duplicates".to_owned(),
        "--scenario".to_owned(),
        "outage".to_owned(),
    ];
    args.extend(fixed_world(&ats, &vendor, &notify));
    let run = Stagegate::new(args).run();
    let _ = relay.kill();
    let _ = relay.wait();
    let run = run.expect_code(0);
    assert!(run.stdout.contains("verdict: PASS"), "{}", run.stdout);
    // Its output is not the harness's to see.
    assert!(
        run.stdout.contains("skip  privacy.no_pii_in_logs"),
        "{}",
        run.stdout
    );
}

#[test]
fn usage_and_manifest_errors_exit_2_before_anything_starts() {
    let bad = fixture("manifests/misspelt-key.yaml");
    let run = Stagegate::new(["run", bad.to_str().expect("utf-8")])
        .run()
        .expect_code(2);
    assert!(run.stderr.contains("did you mean"), "{}", run.stderr);

    let run = Stagegate::new([
        "run",
        "manifests/release-gate.yaml",
        "--report",
        "xml=gate.xml",
    ])
    .run()
    .expect_code(2);
    assert!(
        run.stderr
            .contains("unknown report format `xml`: expected one of json, junit, markdown, html"),
        "{}",
        run.stderr
    );

    let run = Stagegate::new(["run", "manifests/release-gate.yaml", "--time-scale", "0.5"])
        .run()
        .expect_code(2);
    assert!(
        run.stderr.contains("--time-scale must be at least 1"),
        "{}",
        run.stderr
    );

    let run = Stagegate::new([
        "run",
        "manifests/release-gate.yaml",
        "--sut-cmd",
        "true",
        "--sut-url",
        "http://127.0.0.1:1",
    ])
    .run()
    .expect_code(2);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}
