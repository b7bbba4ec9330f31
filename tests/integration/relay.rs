//! The reference relay against the real mocks on loopback: deduplication, stale
//! events, the canary scope, signatures, and its log.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::util::Captured;
use serde_json::{Value, json};
use stagegate::delivery::{Delivery, Perturbation, RetryPolicy, Sender, WebhookSecret};
use stagegate::manifest::{CandidateId, Manifest};
use stagegate::mock::{MockConfig, Mocks};
use stagegate::observe::ObservationLog;
use stagegate::relay::Relay;
use stagegate::relay::config::RelayConfig;
use stagegate::relay::log::RelayLog;
use stagegate::sandbox::model::{Person, Requisition, RiskTier, Role, SandboxCandidate};

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) fn candidate(id: &str, name: &str, tags: &[&str], location: &str) -> SandboxCandidate {
    SandboxCandidate {
        id: CandidateId(id.into()),
        profile: "low-risk-fast-path".into(),
        risk_tier: RiskTier::Low,
        person: Person {
            name: name.into(),
            email: format!("{}@example.test", id.to_lowercase()),
            phone: "+1 555 0100".into(),
        },
        requisition: Requisition {
            id: format!("REQ-{id}"),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            location: location.into(),
        }
        .into(),
        expected_sequence: Vec::new().into(),
        role: Role::Seeded,
    }
}

pub(crate) fn event(candidate: &str, session: &str, result: &str, at: &str) -> Value {
    json!({
        "type": "identity.verification.completed", "event_id": format!("evt_{session}"),
        "idempotency_key": format!("idk_{candidate}_{session}"), "occurred_at": at,
        "correlation_id": format!("cor_{candidate}"), "ats_candidate_id": candidate,
        "verification": {"session_id": session, "result": result, "risk_tier": "low"},
        "evidence_pack": {"url": "https://vendor.example/v1/evidence-packs/ep_1"}
    })
}

async fn settle(relay: &Relay) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while relay.queued() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay drains its queue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_relay_writes_each_event_once_in_order_and_only_in_scope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = Arc::new(
        Manifest::load(Path::new("manifests/release-gate.yaml"))
            .expect("seed")
            .value,
    );
    let candidates = [
        candidate("CAND_canary_001", "Zoë Ğürsoy", &["canary-il"], "US"),
        candidate("CAND_control_de", "Łukasz Żółć", &["canary-il"], "DE"),
    ];
    let mock_config = MockConfig::loopback(21);
    let log = ObservationLog::create(&dir.path().join("log.jsonl"), "relay-test").expect("log");
    let mocks = Mocks::start(Arc::clone(&manifest), &candidates, &mock_config, &log)
        .await
        .expect("mocks");
    let secret: WebhookSecret = SECRET.parse().expect("valid secret");
    let config = RelayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ats_url: mocks.ats_url().to_owned(),
        ats_token: mock_config.ats_token.clone(),
        vendor_url: mocks.vendor_url().to_owned(),
        vendor_token: mock_config.vendor_token.clone(),
        vendor_secret: secret.clone(),
        ats_secret: secret.clone(),
        notify_url: mocks.notify_url().to_owned(),
        manifest: Arc::clone(&manifest),
        state_dir: dir.path().join("state"),
        time_scale: 1.0,
        faults: Default::default(),
        tuning: Default::default(),
        policy: None,
    };
    let output = Captured::default();
    let required = manifest
        .raw
        .observability
        .as_ref()
        .map(|o| o.log_fields_required.clone())
        .unwrap_or_default();
    let relay = Relay::start(
        config,
        RelayLog::new(Box::new(output.clone()), required.clone()),
    )
    .await
    .expect("relay starts");
    let url: url::Url = format!("{}/webhooks/vendor", relay.url())
        .parse()
        .expect("url");
    let sender = Sender::new(secret, RetryPolicy::default(), 3, log.clone());
    let send = |body: Value, perturbation: Perturbation| {
        let delivery = Delivery::json(
            format!("msg_{}", body["event_id"].as_str().unwrap_or("x")),
            "identity.verification.completed",
            &body,
        );
        (delivery, perturbation)
    };

    let newer = event("CAND_canary_001", "s2", "passed", "2026-05-18T10:00:00Z");
    let older = event("CAND_canary_001", "s1", "failed", "2026-05-18T09:00:00Z");
    for (delivery, perturbation) in [
        send(newer.clone(), Perturbation::ExactDuplicate { copies: 2 }),
        send(newer.clone(), Perturbation::ReEmit),
        send(
            newer.clone(),
            Perturbation::ConcurrentDuplicates { copies: 3 },
        ),
    ] {
        assert!(
            sender.deliver(&url, &delivery, &perturbation).await.acked,
            "{}",
            perturbation.name()
        );
    }
    settle(&relay).await;
    let (delivery, perturbation) = send(older, Perturbation::None);
    assert!(sender.deliver(&url, &delivery, &perturbation).await.acked);
    let (delivery, perturbation) = send(
        event("CAND_control_de", "s9", "passed", "2026-05-18T09:30:00Z"),
        Perturbation::None,
    );
    assert!(sender.deliver(&url, &delivery, &perturbation).await.acked);
    settle(&relay).await;

    let canary = mocks.ats.candidate("CAND_canary_001").expect("seeded");
    assert_eq!(
        canary.activity_total, 1,
        "duplicates, re-emits and concurrent copies land once; the stale event not at all"
    );
    assert_eq!(
        canary.applied["identity.verification.completed"]
            .event_id
            .as_deref(),
        Some("evt_s2")
    );
    assert_eq!(
        mocks
            .ats
            .candidate("CAND_control_de")
            .expect("seeded")
            .activity_total,
        0,
        "DE is outside the canary scope"
    );

    for forged in [
        Perturbation::Unsigned,
        Perturbation::WrongSignature,
        Perturbation::StaleTimestamp,
    ] {
        let (delivery, perturbation) = send(
            event("CAND_canary_001", "s3", "passed", "2026-05-18T11:00:00Z"),
            forged,
        );
        let outcome = sender.deliver(&url, &delivery, &perturbation).await;
        assert_eq!(
            outcome.attempts[0].status(),
            Some(401),
            "{}",
            perturbation.name()
        );
    }

    relay.shutdown().await;
    mocks.shutdown().await;
    let text = String::from_utf8(output.0.lock().expect("not poisoned").clone()).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let outcomes: Vec<&str> = lines.iter().filter_map(|l| l["outcome"].as_str()).collect();
    for expected in [
        "queued",
        "duplicate",
        "applied",
        "dropped_stale",
        "skipped_out_of_scope",
    ] {
        assert!(outcomes.contains(&expected), "{expected} in {outcomes:?}");
    }
    for line in lines.iter().filter(|l| l["outcome"] == "applied") {
        for field in &required {
            assert!(!line[field].is_null(), "{field} in {line}");
        }
    }
    for pii in ["Zoë", "Ğürsoy", "Łukasz", "cand_canary_001@example.test"] {
        assert!(!text.contains(pii), "no PII in the relay's log: {pii}");
    }
}
