//! The reference relay against the real mocks on loopback: deduplication, stale
//! events, the canary scope, signatures, and its log.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::util::Captured;
use serde_json::{Value, json};
use stagegate::delivery::{
    Delivery, DeliveryOutcome, Perturbation, RetryPolicy, Sender, WebhookSecret,
};
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
            email: format!("{}@example.test", id.to_lowercase()).into(),
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

/// The relay's configuration against `mocks` (started with `mock_config`): any free
/// port, [`SECRET`] for both webhook kinds, its state in `state_dir`, real time, no
/// faults, no policy. Tests change what they need with `..relay_config(…)`.
pub(crate) fn relay_config(
    manifest: &Arc<Manifest>,
    mocks: &Mocks,
    mock_config: &MockConfig,
    state_dir: std::path::PathBuf,
) -> RelayConfig {
    let secret: WebhookSecret = SECRET.parse().expect("valid secret");
    RelayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ats_url: mocks.ats_url().to_owned(),
        ats_token: mock_config.ats_token.clone(),
        vendor_url: mocks.vendor_url().to_owned(),
        vendor_token: mock_config.vendor_token.clone(),
        vendor_secret: secret.clone(),
        ats_secret: secret,
        notify_url: mocks.notify_url().to_owned(),
        manifest: Arc::clone(manifest),
        state_dir,
        time_scale: 1.0,
        faults: Default::default(),
        tuning: Default::default(),
        policy: None,
    }
}

/// The seed manifest's relay against the mocks seeded with `candidates`.
struct World {
    manifest: Arc<Manifest>,
    mocks: Mocks,
    relay: Relay,
    sender: Sender,
    url: url::Url,
    output: Captured,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start(candidates: &[SandboxCandidate]) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = Arc::new(
            Manifest::load(Path::new("manifests/release-gate.yaml"))
                .expect("seed")
                .value,
        );
        let mock_config = MockConfig::loopback(21);
        let log = ObservationLog::create(&dir.path().join("log.jsonl"), "relay-test").expect("log");
        let mocks = Mocks::start(Arc::clone(&manifest), candidates, &mock_config, &log)
            .await
            .expect("mocks");
        let config = relay_config(&manifest, &mocks, &mock_config, dir.path().join("state"));
        let secret = config.vendor_secret.clone();
        let output = Captured::default();
        let relay = Relay::start(
            config,
            RelayLog::new(Box::new(output.clone()), required(&manifest)),
        )
        .await
        .expect("relay starts");
        let url = format!("{}/webhooks/vendor", relay.url())
            .parse()
            .expect("url");
        let sender = Sender::new(secret, RetryPolicy::default(), 3, log.clone());
        World {
            manifest,
            mocks,
            relay,
            sender,
            url,
            output,
            _dir: dir,
        }
    }

    /// Delivers `body` as the vendor would, perturbed.
    async fn deliver(&self, body: &Value, perturbation: Perturbation) -> DeliveryOutcome {
        let delivery = Delivery::json(
            format!("msg_{}", body["event_id"].as_str().unwrap_or("x")),
            "identity.verification.completed",
            body,
        );
        self.sender
            .deliver(&self.url, &delivery, &perturbation)
            .await
    }

    /// Delivers `body` once and waits until the relay has written its queue out.
    async fn deliver_and_settle(&self, body: &Value) {
        assert!(self.deliver(body, Perturbation::None).await.acked, "acked");
        settle(&self.relay).await;
    }

    /// The ATS calls the relay made for `body`, delivered once, until it settled.
    async fn calls_to_settle(&self, body: Value) -> u64 {
        let before = self.mocks.ats.requests();
        self.deliver_and_settle(&body).await;
        self.mocks.ats.requests() - before
    }

    async fn shutdown(self) -> String {
        self.relay.shutdown().await;
        self.mocks.shutdown().await;
        String::from_utf8(self.output.0.lock().expect("not poisoned").clone()).expect("utf-8")
    }
}

/// The manifest's `log_fields_required`.
fn required(manifest: &Manifest) -> Vec<String> {
    manifest
        .raw
        .observability
        .as_ref()
        .map(|o| o.log_fields_required.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_relay_writes_each_event_once_in_order_and_only_in_scope() {
    let world = World::start(&[
        candidate("CAND_canary_001", "Zoë Ğürsoy", &["canary-il"], "US"),
        candidate("CAND_control_de", "Łukasz Żółć", &["canary-il"], "DE"),
    ])
    .await;
    let (mocks, required) = (&world.mocks, required(&world.manifest));
    let newer = event("CAND_canary_001", "s2", "passed", "2026-05-18T10:00:00Z");
    let older = event("CAND_canary_001", "s1", "failed", "2026-05-18T09:00:00Z");
    for perturbation in [
        Perturbation::ExactDuplicate { copies: 2 },
        Perturbation::ReEmit,
        Perturbation::ConcurrentDuplicates { copies: 3 },
    ] {
        let name = perturbation.name();
        assert!(world.deliver(&newer, perturbation).await.acked, "{name}");
    }
    settle(&world.relay).await;
    world.deliver_and_settle(&older).await;
    world
        .deliver_and_settle(&event(
            "CAND_control_de",
            "s9",
            "passed",
            "2026-05-18T09:30:00Z",
        ))
        .await;

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
        let name = forged.name();
        let body = event("CAND_canary_001", "s3", "passed", "2026-05-18T11:00:00Z");
        let outcome = world.deliver(&body, forged).await;
        assert_eq!(outcome.attempts[0].status(), Some(401), "{name}");
    }

    let text = world.shutdown().await;
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

/// A requisition of `tags` in `location`, as a recruiter moves a candidate to it.
fn requisition(tags: &[&str], location: &str) -> Requisition {
    Requisition {
        id: format!("REQ-{}-{location}", tags.join("-")),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        location: location.into(),
    }
}

/// The canary scope is decided on what the ATS says now, not on what the relay
/// remembers of its own last write: a candidate moved out of the scope is written no
/// more, and one moved into it is written.
#[tokio::test]
async fn a_candidate_moved_across_the_canary_scope_is_judged_on_a_fresh_read() {
    let world = World::start(&[
        candidate("CAND_canary_001", "Ana", &["canary-il"], "US"),
        candidate("CAND_other_001", "Ben", &["design"], "US"),
    ])
    .await;
    let ats = &world.mocks.ats;
    let calls = |body| world.calls_to_settle(body);

    let leaving = "CAND_canary_001";
    assert_eq!(
        calls(event(leaving, "l1", "passed", "2026-05-18T09:00:00Z")).await,
        2,
        "in scope: a read, then the write"
    );
    ats.set_requisition(leaving, requisition(&["canary-il"], "DE"))
        .expect("seeded");
    assert_eq!(
        calls(event(leaving, "l2", "failed", "2026-05-18T10:00:00Z")).await,
        2,
        "the write from memory is answered 409, and the fresh read finds it out of scope"
    );
    assert_eq!(
        landed(&world, leaving),
        (1, Some("evt_l1".into())),
        "l2 was not written"
    );

    let joining = "CAND_other_001";
    assert_eq!(
        calls(event(joining, "j1", "passed", "2026-05-18T09:00:00Z")).await,
        1,
        "out of scope: the read alone"
    );
    ats.set_requisition(joining, requisition(&["design", "canary-il"], "US"))
        .expect("seeded");
    assert_eq!(
        calls(event(joining, "j2", "passed", "2026-05-18T10:00:00Z")).await,
        2,
        "the skip remembered is read again, found in scope and written"
    );
    assert_eq!(landed(&world, joining), (1, Some("evt_j2".into())));
    let text = world.shutdown().await;
    let expected = [
        ("evt_l1", "applied"),
        ("evt_l2", "skipped_out_of_scope"),
        ("evt_j1", "skipped_out_of_scope"),
        ("evt_j2", "applied"),
    ];
    assert_eq!(
        outcomes(&text),
        expected.map(|(e, o)| (e.into(), o.into())),
        "{text}"
    );
}

/// How many events landed on the candidate, and the last verification's event id.
fn landed(world: &World, id: &str) -> (u64, Option<String>) {
    let record = world.mocks.ats.candidate(id).expect("seeded");
    let last = &record.applied["identity.verification.completed"];
    (
        record.activity_total,
        last.event_id.as_deref().map(str::to_owned),
    )
}

/// The event id and outcome of every event the relay's output says it processed.
fn outcomes(output: &str) -> Vec<(String, String)> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    output
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON lines"))
        .filter(|l| l["processed_at"].is_string())
        .map(|l| (text(&l["event_id"]), text(&l["outcome"])))
        .collect()
}

#[tokio::test]
async fn a_candidate_is_read_again_only_when_someone_else_wrote() {
    let world = World::start(&[candidate("CAND_canary_001", "Ana", &["canary-il"], "US")]).await;
    let id = "CAND_canary_001";
    let ats = &world.mocks.ats;

    let calls = |body| world.calls_to_settle(body);
    assert_eq!(
        calls(event(id, "s1", "passed", "2026-05-18T09:00:00Z")).await,
        2,
        "the first event: a read, then the write"
    );
    assert_eq!(
        calls(event(id, "s2", "failed", "2026-05-18T10:00:00Z")).await,
        1,
        "the next event: the write alone, from what the relay's own write left"
    );
    assert_eq!(
        calls(event(id, "s0", "passed", "2026-05-18T08:00:00Z")).await,
        1,
        "an event older than the relay's last write is dropped on a fresh read, not from memory"
    );
    // A recruiter moves the candidate: the ATS's revision moves on without the relay.
    ats.set_stage(id, "phone-screen").expect("seeded");
    assert_eq!(
        calls(event(id, "s3", "passed", "2026-05-18T11:00:00Z")).await,
        3,
        "the stale write is answered 409, then a fresh read and the write"
    );
    assert_eq!(
        landed(&world, id),
        (3, Some("evt_s3".into())),
        "s1, s2 and s3 landed once each"
    );
    let text = world.shutdown().await;
    let outcomes: Vec<String> = outcomes(&text).into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        outcomes,
        ["applied", "applied", "dropped_stale", "applied"],
        "{text}"
    );
}
