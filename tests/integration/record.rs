//! `stagegate record` → `stagegate drift`: a mock vendor signs real-shaped payloads in
//! every scheme, some drifted, some forged; the recorders are killed (a crash) once
//! every delivery is acknowledged; every acknowledged delivery is on disk, and the
//! drift report names exactly the drifted changes, never the forged ones.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use stagegate::record::scheme::{SchemeKind, sign};

use crate::drift::{baseline_from, drift, drifted, event_of, expected_findings, finding_keys};

/// A `stagegate record` child process and the URL it printed.
struct Recording {
    child: std::process::Child,
    url: String,
    out: PathBuf,
}

impl Recording {
    fn spawn(
        dir: &Path,
        name: &str,
        scheme: &str,
        secret: &str,
        header: Option<&str>,
    ) -> Recording {
        let out = dir.join(format!("{name}.jsonl"));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"));
        command
            .args(["record", "--listen", "127.0.0.1:0", "--scheme", scheme])
            .arg("--out")
            .arg(&out)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("STAGEGATE_RECORD_SECRET", secret)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(
                std::fs::File::create(dir.join(format!("{name}.stderr"))).expect("stderr file"),
            );
        if let Some(header) = header {
            command.args(["--signature-header", header]);
        }
        let mut child = command.spawn().expect("the stagegate binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("record printed no address ({e}); see {name}.stderr"));
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_owned();
        Recording { child, url, out }
    }

    /// SIGKILL: no shutdown, no flush — what a crash leaves behind.
    fn crash(mut self) -> PathBuf {
        self.child.kill().expect("killed");
        let (send, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(self.child.wait());
        });
        done.recv_timeout(Duration::from_secs(20))
            .expect("the recorder dies within 20 s")
            .expect("waited");
        self.out
    }
}

/// How one vendor signs: the scheme, its secret, and the headers it sends.
struct Signer {
    kind: SchemeKind,
    secret: String,
    header: &'static str,
}

impl Signer {
    fn headers(&self, body: &[u8], n: usize, forged: bool) -> Vec<(String, String)> {
        let now = stagegate::delivery::signature::unix_now();
        let secret = if forged {
            // The forger does not have the secret: a key of the right shape, another value.
            match self.kind {
                SchemeKind::Standard => format!(
                    "whsec_{}",
                    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
                ),
                _ => "not-the-secret".to_owned(),
            }
        } else {
            self.secret.clone()
        };
        let id = format!("msg_{n}");
        let signature = sign(self.kind, &secret, &id, now, body);
        let mut headers = vec![(self.header.to_owned(), signature)];
        if self.kind == SchemeKind::Standard {
            headers.push(("webhook-id".into(), id));
            headers.push(("webhook-timestamp".into(), now.to_string()));
        }
        headers
    }
}

/// A forged delivery carrying a change of its own that must never be reported.
fn forged_copy(payload: &Value) -> Value {
    let mut forged = payload.clone();
    match event_of(payload).as_str() {
        "report.completed" => forged["data"]["object"]["result"] = json!("forged"),
        "check.completed" => forged["payload"]["object"]["forged"] = json!(true),
        _ => forged["payload"]["application"]["status"] = json!("forged"),
    }
    forged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_deliveries_in_every_scheme_survive_a_crash_and_drift_names_exactly_the_drifted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = baseline_from(dir.path(), 7);
    let standard_secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([42u8; 32])
    );
    // (vendor's event types, recorder name, scheme flag, signer)
    let routes = [
        (
            "report.completed",
            Signer {
                kind: SchemeKind::HmacSha256,
                secret: "checkr-api-key".into(),
                header: "X-Checkr-Signature",
            },
            "hmac-sha256",
        ),
        (
            "check.completed",
            Signer {
                kind: SchemeKind::Standard,
                secret: standard_secret,
                header: "webhook-signature",
            },
            "standard",
        ),
        (
            "candidate_stage_change",
            Signer {
                kind: SchemeKind::Timestamped,
                secret: "whsec_greenhouse".into(),
                header: "Stripe-Signature",
            },
            "timestamped",
        ),
    ];
    let recorders: Vec<Recording> = routes
        .iter()
        .map(|(event, signer, scheme)| {
            let header = (signer.kind == SchemeKind::HmacSha256).then_some(signer.header);
            Recording::spawn(dir.path(), event, scheme, &signer.secret, header)
        })
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let payloads = drifted(8);
    let mut acknowledged = vec![0usize; routes.len()];
    let mut forged_sent = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for (n, payload) in payloads.iter().enumerate() {
        assert!(Instant::now() < deadline, "the deliveries take too long");
        let event = event_of(payload);
        // candidate_hired is Greenhouse too: same endpoint as its stage changes.
        let route = routes
            .iter()
            .position(|(e, _, _)| {
                *e == event || (event == "candidate_hired" && *e == "candidate_stage_change")
            })
            .unwrap_or_else(|| panic!("no route for {event}"));
        let mut deliveries = vec![(payload.clone(), false)];
        if n % 5 == 0 {
            deliveries.push((forged_copy(payload), true));
        }
        for (body, forged) in deliveries {
            let body = serde_json::to_vec(&body).expect("JSON");
            let mut request = client
                .post(format!("{}/webhooks/{event}", recorders[route].url))
                .header("content-type", "application/json")
                .body(body.clone());
            for (name, value) in routes[route].1.headers(&body, n, forged) {
                request = request.header(name, value);
            }
            let response = request.send().await.expect("the recorder answers");
            assert_eq!(
                response.status(),
                200,
                "every delivery is acknowledged, forged ones too"
            );
            acknowledged[route] += 1;
            forged_sent += usize::from(forged);
        }
    }
    assert!(forged_sent >= 3, "a few forged deliveries were sent");
    let files: Vec<PathBuf> = recorders.into_iter().map(Recording::crash).collect();
    for ((file, acked), (_, signer, _)) in files.iter().zip(&acknowledged).zip(&routes) {
        let text = std::fs::read_to_string(file).expect("capture file");
        assert_eq!(
            text.lines().count(),
            *acked,
            "{}: every acknowledged delivery survived the crash",
            file.display()
        );
        assert!(
            !text.contains(&signer.secret),
            "{}: the secret is never written",
            file.display()
        );
        let valid = text
            .lines()
            .filter(|l| l.contains("\"signature\":\"valid\""))
            .count();
        let invalid = text
            .lines()
            .filter(|l| l.contains("\"signature\":\"invalid\""))
            .count();
        assert_eq!(
            valid + invalid,
            *acked,
            "{}: every line says whether it verified",
            file.display()
        );
    }
    let mut args = vec![
        "--baseline",
        baseline.to_str().expect("utf-8"),
        "--format",
        "json",
    ];
    args.extend(files.iter().map(|f| f.to_str().expect("utf-8")));
    let out = drift(&args).run().expect_code(1);
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(finding_keys(&report), expected_findings(), "{}", out.stdout);
    assert_eq!(report["counts"]["forged"], forged_sent as u64);
    assert_eq!(report["counts"]["inferred"], payloads.len() as u64);
    assert!(
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .all(|f| f["first_seen"].is_null() || f["first_seen"]["at"].is_string()),
        "captures carry their arrival time into first-seen: {}",
        out.stdout
    );
}

#[test]
fn a_listener_that_cannot_bind_exits_with_the_start_failure_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out_file = dir.path().join("c.jsonl");
    let out = crate::util::Stagegate::new([
        "record",
        "--listen",
        &addr,
        "--out",
        out_file.to_str().expect("utf-8"),
    ])
    .run()
    .expect_code(3);
    assert!(out.stderr.contains("cannot listen on"), "{}", out.stderr);
    let bad = crate::util::Stagegate::new([
        "record",
        "--listen",
        "127.0.0.1:0",
        "--secret",
        "no-prefix",
        "--out",
        out_file.to_str().expect("utf-8"),
    ])
    .run()
    .expect_code(2);
    assert!(
        bad.stderr.contains("not a Standard Webhooks secret"),
        "{}",
        bad.stderr
    );
}
