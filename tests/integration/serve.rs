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

#[tokio::test]
async fn fire_delivers_a_sequence_that_lands_and_the_log_verifies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = Arc::new(
        Manifest::load(Path::new("manifests/release-gate.yaml"))
            .expect("seed")
            .value,
    );
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let log_path = dir.path().join("serve.jsonl");
    let served = Served::start(ServeConfig {
        manifest: Arc::clone(&manifest),
        seed: 4,
        mocks: MockConfig::loopback(4),
        admin_addr: any,
        log_path: log_path.clone(),
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
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let ids: Vec<&str> = listed["candidates"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["ats_candidate_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"CAND_canary_003") && ids.contains(&"CAND_control_untagged"),
        "{ids:?}"
    );

    let fired: Value = client
        .post(format!("{admin}/admin/fire"))
        .json(&json!({"candidate": "CAND_canary_003", "webhook_url": format!("{}/webhooks/vendor", relay.url()), "perturbations": ["none", "exact_duplicate"]}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let deliveries = fired["deliveries"].as_array().expect("deliveries");
    assert_eq!(
        deliveries.len(),
        2,
        "the retake flow has two events: {fired}"
    );
    assert!(deliveries.iter().all(|d| d["acked"] == true), "{fired}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state: Value = client
            .get(format!("{admin}/admin/state"))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
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
