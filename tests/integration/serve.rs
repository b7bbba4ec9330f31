//! `stagegate serve`'s admin API, end to end: fire a candidate's sequence at the
//! reference relay, watch it land in the mock ATS, set faults, dump the log.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stagegate::manifest::Manifest;
use stagegate::mock::MockConfig;
use stagegate::relay::Relay;
use stagegate::relay::config::RelayConfig;
use stagegate::relay::log::RelayLog;
use stagegate::serve::{ServeConfig, Served};

use crate::util::Stagegate;

/// Sends a request and reads its JSON answer.
trait SendJson {
    async fn send_json(self) -> Value;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json(self) -> Value {
        self.send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON")
    }
}

/// The ids of an `/admin/candidates` page.
fn candidate_ids(page: &Value) -> Vec<&str> {
    page["candidates"]
        .as_array()
        .expect("a list of candidates")
        .iter()
        .filter_map(|c| c["ats_candidate_id"].as_str())
        .collect()
}

/// The repository's seed manifest.
fn seed_manifest() -> Arc<Manifest> {
    Arc::new(
        Manifest::load(Path::new("manifests/release-gate.yaml"))
            .expect("seed")
            .value,
    )
}

#[tokio::test]
async fn fire_delivers_a_sequence_that_lands_and_the_log_verifies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = seed_manifest();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let log_path = dir.path().join("serve.jsonl");
    let served = Served::start(ServeConfig {
        manifest: Arc::clone(&manifest),
        seed: 4,
        mocks: MockConfig::loopback(4),
        admin_addr: any,
        log_path: log_path.clone(),
        sandbox: None,
    })
    .await
    .expect("the sandbox starts");
    let relay = Relay::start(
        RelayConfig {
            listen: any,
            ats_url: served.mocks.ats_url().to_owned(),
            ats_token: MockConfig::loopback(4).ats_token,
            vendor_url: served.mocks.vendor_url().to_owned(),
            vendor_token: MockConfig::loopback(4).vendor_token,
            vendor_secret: served.vendor_secret.clone(),
            ats_secret: served.ats_secret.clone(),
            notify_url: served.mocks.notify_url().to_owned(),
            manifest: Arc::clone(&manifest),
            state_dir: dir.path().join("relay"),
            time_scale: 1.0,
            faults: Default::default(),
            tuning: Default::default(),
            policy: None,
        },
        RelayLog::new(Box::new(std::io::sink()), Vec::new()),
    )
    .await
    .expect("the relay starts");
    let admin = served.admin_url();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    let listed: Value = client
        .get(format!("{admin}/admin/candidates"))
        .send_json()
        .await;
    let ids = candidate_ids(&listed);
    assert!(
        ids.contains(&"CAND_canary_003") && ids.contains(&"CAND_control_untagged"),
        "{ids:?}"
    );

    let fired: Value = client
        .post(format!("{admin}/admin/fire"))
        .json(&json!({"candidate": "CAND_canary_003", "webhook_url": format!("{}/webhooks/vendor", relay.url()), "perturbations": ["none", "exact_duplicate"]}))
        .send_json()
        .await;
    let deliveries = fired["deliveries"].as_array().expect("deliveries");
    assert_eq!(
        deliveries.len(),
        2,
        "the retake flow has two events: {fired}"
    );
    assert!(deliveries.iter().all(|d| d["acked"] == true), "{fired}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state: Value = client.get(format!("{admin}/admin/state")).send_json().await;
        let retake = state["ats"]["candidates"]
            .as_array()
            .expect("candidates")
            .iter()
            .find(|c| c["ats_candidate_id"] == "CAND_canary_003")
            .cloned()
            .expect("seeded");
        if retake["activity_count"] == 2 {
            assert_eq!(
                retake["applied"]["identity.verification.completed"]["event_id"],
                deliveries[1]["event_id"],
                "the retake's pass is the final state"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both events land: {retake}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Firing again synthesizes the candidate's next flow, with fresh ids; naming a
    // flow replays it. Unsigned, so the relay refuses them and the ATS is untouched.
    let fire_unsigned = |flow: Option<u64>| {
        let mut body = json!({"candidate": "CAND_canary_003", "webhook_url": format!("{}/webhooks/vendor", relay.url()), "perturbations": ["unsigned"]});
        if let Some(flow) = flow {
            body["flow"] = json!(flow);
        }
        client
            .post(format!("{admin}/admin/fire"))
            .json(&body)
            .send()
    };
    let event_ids = |fired: &Value| -> Vec<String> {
        fired["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .filter_map(|d| d["event_id"].as_str().map(str::to_owned))
            .collect()
    };
    let next: Value = fire_unsigned(None)
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(next["flow"], 1, "{next}");
    let first_ids = event_ids(&fired);
    let next_ids = event_ids(&next);
    assert!(
        first_ids.iter().all(|id| !next_ids.contains(id)),
        "a new flow has new event ids: {first_ids:?} {next_ids:?}"
    );
    let replayed: Value = fire_unsigned(Some(0))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (&replayed["flow"], event_ids(&replayed)),
        (&json!(0), first_ids),
        "naming a flow replays it"
    );
    assert!(
        replayed["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .all(|d| d["acked"] == false && d["statuses"][0] == 401),
        "the relay refuses unsigned deliveries: {replayed}"
    );

    let bad = client
        .put(format!("{admin}/admin/faults"))
        .body(r#"[{"fault": {"kind": "error_rate", "rate": 2}}]"#)
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), 422);
    let ok = client
        .put(format!("{admin}/admin/faults"))
        .body(r#"[{"fault": {"kind": "outage"}, "for_ms": 60000}]"#)
        .send()
        .await
        .expect("answers");
    assert_eq!(ok.status(), 204);
    let unknown = client
        .post(format!("{admin}/admin/fire"))
        .json(&json!({"candidate": "CAND_canary_03", "webhook_url": "http://127.0.0.1:1/"}))
        .send()
        .await
        .expect("answers");
    let text = unknown.text().await.expect("body");
    assert!(text.contains("did you mean `CAND_canary_003`?"), "{text}");

    let dumped = client
        .get(format!("{admin}/admin/log"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("body");
    assert!(dumped.lines().count() > 5);
    relay.shutdown().await;
    served.shutdown().await.expect("log flushed");
    let out = Stagegate::new(["log", "verify", log_path.to_str().expect("utf-8")])
        .run()
        .expect_code(0);
    assert!(out.stdout.contains("chain intact"), "{}", out.stdout);
}

/// `stagegate serve` as a child process whose stdout lines arrive on a channel, so
/// every wait on it is bounded.
pub(crate) struct ServeProcess {
    /// `None` once `interrupt` has taken it.
    child: Option<std::process::Child>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ServeProcess {
    pub(crate) fn spawn(args: &[&str], dir: &Path) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .arg("serve")
            .args(args)
            .current_dir(crate::util::repo_root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.join("serve.stderr")).expect("stderr file"))
            .spawn()
            .expect("the stagegate binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        ServeProcess {
            child: Some(child),
            lines,
        }
    }

    /// `stagegate serve manifests/release-gate.yaml` logging into `dir`, with its
    /// listing read up to the last `export` line (the mocks are listening by then).
    pub(crate) fn seed_manifest(dir: &Path) -> (Self, Vec<String>) {
        let log = dir.join("serve.jsonl");
        let serve = Self::spawn(
            &[
                "manifests/release-gate.yaml",
                "--log",
                log.to_str().expect("utf-8"),
            ],
            dir,
        );
        let lines = serve.read_until(|l| l.starts_with("export STAGEGATE_NOTIFY_URL="));
        (serve, lines)
    }

    /// Every line up to and including the first that satisfies `last`.
    pub(crate) fn read_until(&self, last: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = last(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(err) => panic!("serve stopped printing ({err}) after:\n{}", seen.join("\n")),
            }
        }
    }

    /// Ctrl-C, then the exit code, within a bound.
    pub(crate) fn interrupt(mut self) -> i32 {
        let mut child = self.child.take().expect("interrupted once");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signalled");
        let (send, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(child.wait());
        });
        let status = exited
            .recv_timeout(Duration::from_secs(20))
            .expect("serve stops within 20 s of Ctrl-C")
            .expect("waited");
        status.code().expect("exited with a code")
    }
}

/// A test that fails before `interrupt` leaves no serve behind.
impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of `export NAME=VALUE` in serve's listing.
pub(crate) fn exported<'a>(lines: &'a [String], name: &str) -> &'a str {
    let prefix = format!("export {name}=");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in:\n{}", lines.join("\n")))
}

#[tokio::test]
async fn serve_with_a_dataset_lists_twenty_and_serves_every_candidate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dataset = dir.path().join("d.yaml");
    let dataset_arg = dataset.to_str().expect("utf-8 path");
    Stagegate::new([
        "sandbox",
        "generate",
        "--count",
        "60",
        "--seed",
        "5",
        "--out",
        dataset_arg,
    ])
    .run()
    .expect_code(0);
    let log = dir.path().join("serve.jsonl");
    let serve = ServeProcess::spawn(
        &[
            "manifests/release-gate.yaml",
            "--dataset",
            dataset_arg,
            "--log",
            log.to_str().expect("utf-8 path"),
        ],
        dir.path(),
    );
    let lines = serve.read_until(|l| l.starts_with("  … and "));
    let text = lines.join("\n");
    assert!(
        text.contains(&format!(
            "candidates (60 from {dataset_arg}, seed 5, and the controls):"
        )),
        "{text}"
    );
    let listed: Vec<&String> = lines
        .iter()
        .skip_while(|l| !l.starts_with("candidates ("))
        .skip(1)
        .collect();
    assert_eq!(listed.len(), 21, "twenty candidates and the rest: {text}");
    assert!(listed[0].starts_with("  CAND_000001  "), "{text}");
    assert!(listed[19].starts_with("  CAND_000020  "), "{text}");
    assert_eq!(
        listed[20].as_str(),
        "  … and 42 more (GET /admin/candidates lists them)",
        "60 candidates and 2 controls, 20 shown"
    );

    let loaded = stagegate::sandbox::dataset::load(&dataset).expect("loads");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ats = exported(&lines, "STAGEGATE_ATS_URL");
    let token = exported(&lines, "STAGEGATE_ATS_TOKEN");
    let last = &loaded.candidates[59];
    let record: Value = client
        .get(format!("{ats}/v1/candidates/{}", last.ats_candidate_id))
        .bearer_auth(token)
        .send_json()
        .await;
    assert_eq!(record["name"], last.name.as_str(), "the dataset's person");
    assert_eq!(record["requisition"]["id"], last.requisition.id.as_str());

    let admin = lines
        .iter()
        .find_map(|l| l.strip_prefix("  admin API     "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the admin URL");
    let page: Value = client
        .get(format!("{admin}/admin/candidates?offset=58&limit=10"))
        .send_json()
        .await;
    let ids = candidate_ids(&page);
    assert_eq!(page["total"], 62);
    assert_eq!(
        ids,
        [
            "CAND_000059",
            "CAND_000060",
            "CAND_control_untagged",
            "CAND_control_excluded_location"
        ]
    );
    let state: Value = client
        .get(format!("{admin}/admin/state?candidate=CAND_000007"))
        .send_json()
        .await;
    assert_eq!(state["ats"]["total"], 1, "{state}");
    assert_eq!(
        state["ats"]["candidates"][0]["name"],
        loaded.candidates[6].name.as_str()
    );
    let bad = client
        .get(format!("{admin}/admin/state?candiate=CAND_000007"))
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), 422);

    assert_eq!(serve.interrupt(), 0, "Ctrl-C is a clean stop");
    let out = Stagegate::new(["log", "verify", log.to_str().expect("utf-8")])
        .run()
        .expect_code(0);
    assert!(out.stdout.contains("chain intact"), "{}", out.stdout);
}

#[test]
fn a_bad_dataset_is_a_usage_error_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.yaml");
    Stagegate::new([
        "sandbox",
        "generate",
        "--count",
        "30",
        "--seed",
        "2",
        "--out",
        good.to_str().expect("utf-8 path"),
    ])
    .run()
    .expect_code(0);
    let text = std::fs::read_to_string(&good).expect("written");
    let lines: Vec<&str> = text.lines().collect();
    let cut = text.rfind("  - ").expect("items");
    // (file contents, what stderr must say, why)
    let rows: Vec<(String, &str, &str)> = vec![
        (
            text.replacen(
                "profile: \"low-risk-fast-path\"",
                "profile: \"low-risk-fastpath\"",
                1,
            ),
            "unknown profile `low-risk-fastpath` (did you mean `low-risk-fast-path`?)",
            "a misspelt profile",
        ),
        (
            text.replace("CAND_000002", "CAND_000001"),
            "candidates[1] (`CAND_000001`): the id repeats candidates[0]; candidate ids are unique",
            "a duplicate id",
        ),
        (
            text.replace("CAND_000003", "C3"),
            "candidates[2] (`C3`): the id breaks contract",
            "an id the contracts refuse",
        ),
        (
            text[..cut].to_owned(),
            "says 30 candidates but holds 29; it may be truncated",
            "a truncated file",
        ),
        (
            text.replacen("    name:", "    nme:", 1),
            "candidates[0] at line 10, column 5: unknown field `nme`",
            "a misspelt field",
        ),
        (
            lines[..9].join("\n") + "\n  - {oops\n",
            "is not a sandbox dataset: line 11, column 1:",
            "broken YAML",
        ),
        (
            std::fs::read_to_string("manifests/release-gate.yaml").expect("the seed"),
            "release_gate at line ",
            "a manifest given as a dataset",
        ),
    ];
    for (i, (contents, expected, why)) in rows.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, contents).expect("written");
        let log = dir.path().join(format!("bad{i}.jsonl"));
        let out = Stagegate::new([
            "serve",
            "manifests/release-gate.yaml",
            "--dataset",
            path.to_str().expect("utf-8 path"),
            "--log",
            log.to_str().expect("utf-8 path"),
        ])
        .run()
        .expect_code(2);
        assert!(
            out.stderr
                .starts_with(&format!("error: {}", path.display())),
            "{why}: names the file first: {}",
            out.stderr
        );
        assert!(out.stderr.contains(expected), "{why}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{why}: {}", out.stderr);
        assert!(
            out.stdout.is_empty(),
            "{why}: nothing starts: {}",
            out.stdout
        );
        assert!(!log.exists(), "{why}: no log is started");
    }
    let missing = dir.path().join("missing.yaml");
    let out = Stagegate::new([
        "serve",
        "manifests/release-gate.yaml",
        "--dataset",
        missing.to_str().expect("utf-8 path"),
    ])
    .run()
    .expect_code(2);
    assert!(
        out.stderr
            .starts_with(&format!("error: cannot read {}: ", missing.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn a_bad_dataset_reads_well() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.yaml");
    Stagegate::new([
        "sandbox",
        "generate",
        "--count",
        "12",
        "--seed",
        "2",
        "--out",
        good.to_str().expect("utf-8 path"),
    ])
    .run()
    .expect_code(0);
    let text = std::fs::read_to_string(&good).expect("written");
    let bad = text
        .replace("CAND_000002", "CAND_000001")
        .replace("profile: \"retake-flow\"", "profile: \"retake\"")
        .replacen("risk_tier: \"low\"", "risk_tier: \"high\"", 1);
    std::fs::write(dir.path().join("bad.yaml"), bad).expect("written");
    let manifest = crate::util::repo_root().join("manifests/release-gate.yaml");
    let out = Stagegate::new([
        "serve",
        manifest.to_str().expect("utf-8 path"),
        "--dataset",
        "bad.yaml",
        "--log",
        "serve.jsonl",
    ])
    .current_dir(dir.path())
    .run()
    .expect_code(2);
    crate::snapshot!("serve_bad_dataset", out.stderr);
}

#[tokio::test]
async fn a_reviewer_resolves_an_exception_item_through_the_admin_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = seed_manifest();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let served = Served::start(ServeConfig {
        manifest,
        seed: 5,
        mocks: MockConfig::loopback(5),
        admin_addr: any,
        log_path: dir.path().join("serve.jsonl"),
        sandbox: None,
    })
    .await
    .expect("the sandbox starts");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ats = served.mocks.ats_url().trim_end_matches('/').to_owned();
    let token = MockConfig::loopback(5).ats_token;
    // The integration files an item, as it does on a step-up signal.
    let filed: Value = client
        .post(format!("{ats}/v1/exceptions"))
        .bearer_auth(&token)
        .json(&json!({"ats_candidate_id": "CAND_canary_001", "reason": "name_mismatch", "owner": "security", "correlation_id": "c1"}))
        .send_json()
        .await;
    let id = filed["id"].as_str().expect("an item id").to_owned();
    let admin = served.admin_url();
    let resolve = |body: Option<Value>| {
        let request = client.post(format!("{admin}/admin/exceptions/{id}/resolve"));
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
    };

    let resolved = resolve(Some(json!({"resolution": "identity confirmed by a call"})))
        .send()
        .await
        .expect("answered");
    assert_eq!(resolved.status(), 200);
    let item: Value = resolved.json().await.expect("json");
    assert_eq!(item["status"], "resolved", "{item}");
    let seen: Value = client
        .get(format!("{ats}/v1/exceptions/{id}"))
        .bearer_auth(&token)
        .send_json()
        .await;
    assert_eq!(
        seen["status"], "resolved",
        "the integration sees it: {seen}"
    );

    // Twice is an error that says what is open; a bad body says what it expects.
    let again = resolve(None).send().await.expect("answered");
    assert_eq!(again.status(), 404);
    let error: Value = again.json().await.expect("json");
    assert_eq!(
        error["error"],
        format!("no open exception item `{id}`; open ones: none")
    );
    let bad = resolve(Some(json!({"resolution": 3})))
        .send()
        .await
        .expect("answered");
    assert_eq!(bad.status(), 422);
    served.shutdown().await.expect("shut down");
}
