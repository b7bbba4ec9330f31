//! schemas/mock-api.openapi.yaml describes the mocks as they are: every documented
//! operation is exercised against the real routers on loopback, and every answer is
//! validated against the schema documented for its status.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use stagegate::manifest::{CandidateId, Manifest};
use stagegate::mock::{MockConfig, Mocks};
use stagegate::observe::ObservationLog;
use stagegate::sandbox::model::{
    EvidencePack, Person, Requisition, RiskTier, Role, SandboxCandidate,
};

use crate::util::repo_root;

fn openapi() -> Value {
    let text = std::fs::read_to_string(repo_root().join("schemas/mock-api.openapi.yaml"))
        .expect("committed");
    serde_yaml::from_str(&text).expect("valid YAML")
}

/// Follows a local `$ref` inside the document.
fn deref<'d>(doc: &'d Value, node: &'d Value) -> &'d Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(pointer) => doc
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {pointer}")),
        None => node,
    }
}

/// Validates `body` against the schema documented for `status` of `method path`.
fn assert_documented(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is documented");
    let response = operation["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {path} documents {status}"));
    let response = deref(doc, response);
    let schema = &response["content"]["application/json"]["schema"];
    let wrapped = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "components": doc["components"], "allOf": [schema]});
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&wrapped)
        .expect("documented schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{body:#}"
    );
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let doc = openapi();
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = Manifest::load(Path::new("manifests/release-gate.yaml"))
        .expect("the seed loads")
        .value;
    let candidate = SandboxCandidate {
        id: CandidateId("CAND_canary_001".into()),
        profile: "low-risk-fast-path".into(),
        risk_tier: RiskTier::Low,
        person: Person {
            name: "Aoife Ní Bhriain".into(),
            email: "aoife@example.test".into(),
            phone: "+353 1 000 0000".into(),
        },
        requisition: Requisition {
            id: "REQ-1".into(),
            tags: vec!["canary-il".into()],
            location: "IE".into(),
        }
        .into(),
        expected_sequence: Vec::new().into(),
        role: Role::Seeded,
    };
    let config = MockConfig::loopback(5);
    let log = ObservationLog::create(&dir.path().join("log.jsonl"), "openapi").expect("log");
    let mocks = Mocks::start(Arc::new(manifest), &[candidate], &config, &log)
        .await
        .expect("bind");
    mocks.vendor.register_pack(EvidencePack {
        id: "ep_1".into(),
        ats_candidate_id: "CAND_canary_001".into(),
        session_id: "ses_1".into(),
        result: "passed".into(),
        checks: vec![],
        digest: "a".repeat(64),
    });
    let client = reqwest::Client::new();
    let event = json!({
        "type": "identity.verification.completed", "event_id": "evt_1", "idempotency_key": "idk_1",
        "occurred_at": "2026-05-18T09:00:00Z", "correlation_id": "cor_1", "ats_candidate_id": "CAND_canary_001",
        "verification": {"session_id": "ses_1", "result": "passed", "risk_tier": "low"},
        "evidence_pack": {"url": "https://vendor.example/v1/evidence-packs/ep_1"}
    });
    let (ats, vendor, notify) = (
        mocks.ats_url().to_owned(),
        mocks.vendor_url().to_owned(),
        mocks.notify_url().to_owned(),
    );
    let session_id = {
        let response = client
            .post(format!("{vendor}/v1/verifications"))
            .bearer_auth(&config.vendor_token)
            .json(&json!({"ats_candidate_id": "CAND_canary_001", "correlation_id": "cor_1"}))
            .send()
            .await
            .expect("answers");
        let body: Value = response.json().await.expect("JSON");
        body["session_id"].as_str().expect("session id").to_owned()
    };

    let too_large = format!(
        "{{\"type\": \"x\", \"pad\": \"{}\"}}",
        "x".repeat(stagegate::limits::REQUEST_BODY_BYTES.as_usize())
    );
    // (documented path, method, request, expected status)
    let calls: Vec<(&str, &str, reqwest::RequestBuilder, u16)> = vec![
        ("/v1/candidates/{ats_candidate_id}", "get", client.get(format!("{ats}/v1/candidates/CAND_canary_001")).bearer_auth(&config.ats_token), 200),
        ("/v1/candidates/{ats_candidate_id}", "get", client.get(format!("{ats}/v1/candidates/CAND_canary_001")), 401),
        ("/v1/candidates/{ats_candidate_id}", "get", client.get(format!("{ats}/v1/candidates/nobody")).bearer_auth(&config.ats_token), 404),
        ("/v1/candidates/{ats_candidate_id}/events", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/events")).bearer_auth(&config.ats_token).json(&event), 201),
        ("/v1/candidates/{ats_candidate_id}/events", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/events")).bearer_auth(&config.ats_token).header("If-Match", "1").json(&event), 409),
        ("/v1/candidates/{ats_candidate_id}/events", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/events")).bearer_auth(&config.ats_token).json(&json!({"type": "identity.verification.completed"})), 422),
        // Issue 14: a body that is not JSON is a mapping error of the documented shape,
        // an unknown candidate is 404 whatever the body, a bad If-Match is 400, and a
        // body over the limit is 413 in JSON.
        ("/v1/candidates/{ats_candidate_id}/events", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/events")).bearer_auth(&config.ats_token).body("{nope"), 422),
        ("/v1/candidates/{ats_candidate_id}/events", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/events")).bearer_auth(&config.ats_token), 422),
        ("/v1/candidates/{ats_candidate_id}/events", "post", client.post(format!("{ats}/v1/candidates/nobody/events")).bearer_auth(&config.ats_token).body("{nope"), 404),
        ("/v1/candidates/{ats_candidate_id}/events", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/events")).bearer_auth(&config.ats_token).header("If-Match", "soon").json(&event), 400),
        ("/v1/candidates/{ats_candidate_id}/events", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/events")).bearer_auth(&config.ats_token).header("content-type", "application/json").body(too_large.clone()), 413),
        ("/v1/verifications", "post", client.post(format!("{vendor}/v1/verifications")).bearer_auth(&config.vendor_token).header("content-type", "application/json").body(too_large.clone()), 413),
        ("/v1/channels/{channel}", "post", client.post(format!("{notify}/v1/channels/%23sec-ops")).header("content-type", "application/json").body(too_large), 413),
        ("/v1/candidates/{ats_candidate_id}/access-grants", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/access-grants")).bearer_auth(&config.ats_token).json(&json!({"resource": "assessment", "correlation_id": "cor_1"})), 201),
        ("/v1/candidates/{ats_candidate_id}/access-grants", "post", client.post(format!("{ats}/v1/candidates/CAND_canary_001/access-grants")).bearer_auth(&config.ats_token).json(&json!({"resource": "repo"})), 422),
        ("/v1/exceptions", "post", client.post(format!("{ats}/v1/exceptions")).bearer_auth(&config.ats_token).json(&json!({"ats_candidate_id": "CAND_canary_001", "reason": "name_mismatch", "owner": "security", "correlation_id": "cor_1"})), 201),
        // The hiring-policy calls: items with a due time, the item read back, the
        // stages listed, the sessions listed.
        ("/v1/exceptions", "post", client.post(format!("{ats}/v1/exceptions")).bearer_auth(&config.ats_token).json(&json!({"ats_candidate_id": "CAND_canary_001", "reason": "step-up: name_mismatch", "owner": "security", "correlation_id": "cor_1", "due_at": "2026-05-18T13:00:00Z", "session_id": "ses_1"})), 201),
        ("/v1/exceptions/{id}", "get", client.get(format!("{ats}/v1/exceptions/exc_000001")).bearer_auth(&config.ats_token), 200),
        ("/v1/exceptions/{id}", "get", client.get(format!("{ats}/v1/exceptions/exc_999999")).bearer_auth(&config.ats_token), 404),
        ("/v1/candidates", "get", client.get(format!("{ats}/v1/candidates?offset=0&limit=10")).bearer_auth(&config.ats_token), 200),
        ("/v1/candidates", "get", client.get(format!("{ats}/v1/candidates?limit=many")).bearer_auth(&config.ats_token), 422),
        ("/v1/verifications", "get", client.get(format!("{vendor}/v1/verifications?ats_candidate_id=CAND_canary_001")).bearer_auth(&config.vendor_token), 200),
        ("/v1/verifications", "get", client.get(format!("{vendor}/v1/verifications?who=me")).bearer_auth(&config.vendor_token), 422),
        ("/v1/verifications", "post", client.post(format!("{vendor}/v1/verifications")).bearer_auth(&config.vendor_token).json(&json!({"ats_candidate_id": "CAND_canary_001", "correlation_id": "cor_2"})), 201),
        ("/v1/verifications", "post", client.post(format!("{vendor}/v1/verifications")).bearer_auth(&config.vendor_token).json(&json!({})), 422),
        ("/v1/verifications/{session_id}", "get", client.get(format!("{vendor}/v1/verifications/{session_id}")).bearer_auth(&config.vendor_token), 200),
        ("/v1/verifications/{session_id}", "get", client.get(format!("{vendor}/v1/verifications/ses_none")).bearer_auth(&config.vendor_token), 404),
        ("/v1/evidence-packs/{id}", "get", client.get(format!("{vendor}/v1/evidence-packs/ep_1")).bearer_auth(&config.vendor_token), 200),
        ("/v1/evidence-packs/{id}", "get", client.get(format!("{vendor}/v1/evidence-packs/ep_1")), 401),
        ("/v1/channels/{channel}", "post", client.post(format!("{notify}/v1/channels/%23sec-ops")).json(&json!({"text": "t", "kill_switch": "k", "state": "reset"})), 202),
        ("/v1/channels/{channel}", "post", client.post(format!("{notify}/v1/channels/%23sec-ops")).json(&json!({"text": "t"})), 422),
    ];
    let mut exercised = BTreeSet::new();
    for (path, method, request, status) in calls {
        let response = request.send().await.expect("the mock answers");
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_documented(&doc, path, method, status, &body);
        if status == 413 {
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("the request body size limit")),
                "the limit is named: {body}"
            );
        }
        exercised.insert(format!("{method} {path}"));
    }
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .filter(|key| ["get", "put", "post", "delete", "patch"].contains(&key.as_str()))
                .map(move |m| format!("{m} {path}"))
        })
        .collect();
    assert_eq!(
        documented, exercised,
        "every documented operation is exercised, and only those"
    );
    // Answers outside any operation are JSON too: a path no operation has, a method a
    // path does not have (with `Allow`). Before issue 14 both had empty bodies.
    for (request, status) in [
        (
            client
                .get(format!("{ats}/v1/nothing"))
                .bearer_auth(&config.ats_token),
            404,
        ),
        (client.get(format!("{notify}/v1/nothing")), 404),
        (
            client
                .delete(format!("{ats}/v1/exceptions"))
                .bearer_auth(&config.ats_token),
            405,
        ),
        (
            client
                .delete(format!("{vendor}/v1/verifications"))
                .bearer_auth(&config.vendor_token),
            405,
        ),
    ] {
        let response = request.send().await.expect("the mock answers");
        assert_eq!(response.status().as_u16(), status);
        if status == 405 {
            assert!(
                response.headers().contains_key("allow"),
                "405 says what is allowed"
            );
        }
        let body: Value = response.json().await.expect("a JSON body");
        assert!(body["error"].is_string(), "{body}");
    }
    mocks.shutdown().await;
}

/// The pinned schemathesis the test installs into `target/schemathesis-venv` (and
/// .ci/run installs before `cargo test`).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The schemathesis executable, installed into its own virtual environment if
/// missing. `None` (the test is skipped, loudly) only outside CI: with `CI=true` a
/// schemathesis that cannot be installed fails the test.
fn schemathesis() -> Option<std::path::PathBuf> {
    let venv = repo_root().join("target/schemathesis-venv");
    let bin = venv.join("bin/schemathesis");
    if !bin.exists() {
        let installed = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", SCHEMATHESIS])
                .status()
                .is_ok_and(|s| s.success());
        if !installed {
            let message = format!("cannot install {SCHEMATHESIS} into {}", venv.display());
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("SKIPPED: {message} (it is required when CI=true)");
            return None;
        }
    }
    Some(bin)
}

/// schemathesis against each mock of a real `stagegate serve` (ports 0): examples,
/// coverage, fuzzing and the stateful phase over the document's links, every check,
/// a bounded number of examples, one seed (printed; `SCHEMATHESIS_SEED` changes it).
#[test]
fn schemathesis_finds_no_failure_in_any_mock() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".to_owned());
    eprintln!("schemathesis seed {seed}");
    let dir = tempfile::tempdir().expect("temp dir");
    let (serve, lines) = crate::serve::ServeProcess::seed_manifest(dir.path());
    let exported = |name| crate::serve::exported(&lines, name).to_owned();
    // (tag, base URL, bearer token, phases): the sink has no links to follow.
    let mocks = [
        (
            "ats",
            exported("STAGEGATE_ATS_URL"),
            Some(exported("STAGEGATE_ATS_TOKEN")),
            "examples,coverage,fuzzing,stateful",
        ),
        (
            "vendor",
            exported("STAGEGATE_VENDOR_URL"),
            Some(exported("STAGEGATE_VENDOR_TOKEN")),
            "examples,coverage,fuzzing,stateful",
        ),
        (
            "notify",
            exported("STAGEGATE_NOTIFY_URL"),
            None,
            "examples,coverage,fuzzing",
        ),
    ];
    let mut failures = Vec::new();
    for (tag, url, token, phases) in mocks {
        let mut command = std::process::Command::new(&schemathesis);
        // schemathesis keeps a cache (`.schemathesis/`) in its working folder: under
        // target/, not in the repository, so a test run leaves the tree clean.
        let work = repo_root().join("target/schemathesis-work");
        std::fs::create_dir_all(&work).expect("a working folder under target/");
        command.current_dir(&work);
        command
            .arg("--config-file")
            .arg(repo_root().join("tests/schemathesis/schemathesis.toml"))
            .arg("run")
            .arg(repo_root().join("schemas/mock-api.openapi.yaml"))
            .args(["--url", &url, "--include-tag", tag, "--phases", phases])
            .args(["--checks", "all", "--max-examples", "25", "--seed", &seed])
            .args(["--workers", "1", "--request-timeout", "20"])
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_HOOKS", "");
        if let Some(token) = token {
            command.args(["--header", &format!("Authorization: Bearer {token}")]);
        }
        let out = command.output().expect("schemathesis runs");
        if !out.status.success() {
            failures.push(format!(
                "--- {tag} ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert_eq!(serve.interrupt(), 0, "serve stops cleanly");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
