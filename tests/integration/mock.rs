//! The mocks on real loopback sockets: connection-level faults and graceful shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stagegate::manifest::{CandidateId, Manifest};
use stagegate::mock::faults::{FaultKind, FaultWindow};
use stagegate::mock::{MockConfig, Mocks};
use stagegate::observe::ObservationLog;
use stagegate::sandbox::model::{Person, Requisition, RiskTier, Role, SandboxCandidate};

fn candidate() -> SandboxCandidate {
    SandboxCandidate {
        id: CandidateId("CAND_canary_001".into()),
        profile: "low-risk-fast-path".into(),
        risk_tier: RiskTier::Low,
        person: Person {
            name: "José Núñez".into(),
            email: "jose.nunez@example.test".into(),
            phone: "+34 600 000 000".into(),
        },
        requisition: Requisition {
            id: "REQ-1".into(),
            tags: vec!["canary-il".into()],
            location: "ES".into(),
        }
        .into(),
        expected_sequence: Vec::new().into(),
        role: Role::Seeded,
    }
}

async fn start(dir: &Path) -> (Mocks, MockConfig, ObservationLog) {
    let manifest = Manifest::load(Path::new("manifests/release-gate.yaml"))
        .expect("the seed loads")
        .value;
    let config = MockConfig::loopback(11);
    let log = ObservationLog::create(&dir.join("log.jsonl"), "mock-test").expect("log file");
    let mocks = Mocks::start(Arc::new(manifest), &[candidate()], &config, &log)
        .await
        .expect("mocks bind");
    (mocks, config, log)
}

fn event() -> serde_json::Value {
    json!({
        "type": "identity.verification.completed", "event_id": "evt_1", "idempotency_key": "idk_1",
        "occurred_at": "2026-05-18T09:00:00Z", "correlation_id": "cor_1", "ats_candidate_id": "CAND_canary_001",
        "verification": {"session_id": "ses_1", "result": "passed", "risk_tier": "low"},
        "evidence_pack": {"url": "https://vendor.example/v1/evidence-packs/ep_1"}
    })
}

#[tokio::test]
async fn commit_then_drop_applies_the_write_and_closes_the_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mocks, config, log) = start(dir.path()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("{}/v1/candidates/CAND_canary_001/events", mocks.ats_url());

    mocks
        .ats
        .faults
        .set(vec![FaultWindow::always(FaultKind::CommitThenDrop {
            rate: 1.0,
        })])
        .expect("valid");
    let sent = client
        .post(&url)
        .bearer_auth(&config.ats_token)
        .json(&event())
        .send()
        .await;
    let err = sent.expect_err("the connection is closed without an answer");
    assert!(!err.is_timeout(), "closed at once, not timed out: {err}");
    assert_eq!(
        mocks
            .ats
            .candidate("CAND_canary_001")
            .expect("seeded")
            .revision,
        2,
        "the write was applied"
    );

    mocks.ats.faults.clear();
    let answer = client
        .post(&url)
        .bearer_auth(&config.ats_token)
        .json(&event())
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 201);
    assert_eq!(
        mocks
            .ats
            .candidate("CAND_canary_001")
            .expect("seeded")
            .revision,
        3,
        "a retry applies again: no deduplication"
    );

    mocks
        .ats
        .faults
        .set(vec![FaultWindow::always(FaultKind::Reset)])
        .expect("valid");
    let reset = client
        .get(format!("{}/v1/candidates/CAND_canary_001", mocks.ats_url()))
        .bearer_auth(&config.ats_token)
        .send()
        .await;
    assert!(reset.is_err(), "reset closes the connection");

    mocks.shutdown().await;
    log.flush().expect("log written");
    let records = stagegate::observe::read(&dir.path().join("log.jsonl")).expect("readable log");
    stagegate::observe::verify(&records).expect("intact chain");
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "ats.event_applied").count(),
        2
    );
    assert!(kinds.contains(&"ats.fault"), "{kinds:?}");
}

#[tokio::test]
async fn shutdown_is_graceful_and_frees_the_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mocks, config, log) = start(dir.path()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    mocks
        .ats
        .faults
        .set(vec![FaultWindow::always(FaultKind::Latency {
            millis: 300,
        })])
        .expect("valid");
    let ats_url = mocks.ats_url().to_owned();
    let slow = tokio::spawn({
        let client = client.clone();
        let token = config.ats_token.clone();
        async move {
            client
                .get(format!("{ats_url}/v1/candidates/CAND_canary_001"))
                .bearer_auth(token)
                .send()
                .await
        }
    });
    // Shut down only once the request is inside the server: its latency fault is logged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while log.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never reached the mock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = mocks.ats_url().trim_start_matches("http://").to_owned();
    mocks.shutdown().await;
    let answer = slow
        .await
        .expect("task")
        .expect("the request in flight is answered");
    assert_eq!(answer.status(), 200);
    tokio::net::TcpListener::bind(&addr)
        .await
        .expect("the port is free again");
}
