//! The fuzz targets' bodies, one function per parser. The fuzz binaries in
//! fuzz_targets/ call them, and `cargo test` replays fuzz/regressions/TARGET/* through
//! the same functions (tests/integration/hardening.rs includes this file), so a kept
//! finding is replayed exactly as it was found. A panic is a finding.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use stagegate::check::Checker;
use stagegate::check::report::JsonReport;
use stagegate::contract::assertion::{Assertion, AssertionKind, EvalContext};
use stagegate::contract::lists::ListCatalog;
use stagegate::contract::path::FieldPath;
use stagegate::delivery::signature::{WebhookSecret, verify};
use stagegate::drift::DriftConfig;
use stagegate::drift::baseline::Baseline;
use stagegate::manifest::Manifest;

/// The target called `name`.
pub fn by_name(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "manifest" => manifest,
        "assertion" => assertion,
        "check" => check,
        "signature" => signature,
        "dataset" => dataset,
        "observe" => observe,
        "capture" => capture,
        _ => return None,
    })
}

/// The manifest and policy loader: bytes → text → placed YAML → typed model → checks.
pub fn manifest(data: &[u8]) {
    // A folder that does not exist: `lists:` entries resolve to nothing readable
    // unless the input names an absolute path, which the loader must bound.
    let path = Path::new("/nonexistent/stagegate-fuzz/manifest.yaml");
    let _ = stagegate::manifest::load_document_bytes(path, data.to_vec());
}

/// The assertion parser, then evaluation of what parses: the first line is the
/// assertion, the rest a JSON payload to evaluate it on.
pub fn assertion(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, payload) = text.split_once('\n').unwrap_or((text, "{}"));
    if let Ok(assertion) = Assertion::parse(source, &ListCatalog::built_in())
        && let Ok(payload) = serde_json::from_str(payload)
    {
        match assertion.kind() {
            AssertionKind::Each(clauses) => {
                for clause in clauses {
                    let _ = clause.evaluate(&payload, &EvalContext::at_now());
                }
            }
            AssertionKind::StableFor(rule) => {
                let _ = (rule.fingerprint(&payload), rule.describe_tuple(&payload));
            }
        }
    }
}

/// A file of the repository, found from the fuzz crate (in fuzz/) or the root's tests,
/// which both compile this file.
fn repo_file(rel: &str) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [here.join(rel), here.join("..").join(rel)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{rel} is found"))
}

/// The repository's release-gate manifest, loaded once.
static SEED_MANIFEST: LazyLock<Manifest> = LazyLock::new(|| {
    Manifest::load(&repo_file("manifests/release-gate.yaml"))
        .expect("the seed manifest loads")
        .value
});

/// `drift` as the benchmark runs it: the drift fixtures' manifest and baseline, the
/// four vendors' type fields.
static DRIFT_CONFIG: LazyLock<DriftConfig> = LazyLock::new(|| {
    let baseline_path = repo_file("tests/fixtures/drift/baseline.json");
    DriftConfig {
        manifest: Some(
            Manifest::load(&repo_file("tests/fixtures/drift/vendors.yaml"))
                .expect("the drift fixtures' manifest loads")
                .value,
        ),
        baseline: Some(Baseline::load(&baseline_path).expect("the baseline loads")),
        baseline_path: Some(baseline_path),
        update_baseline: false,
        sources: Vec::new(),
        type_fields: ["type", "action", "payload.action", "event"]
            .iter()
            .map(|p| FieldPath::parse(p).expect("a field path"))
            .collect(),
        since_ms: None,
        until_ms: None,
        severities: Default::default(),
    }
});

/// The payload checker: any bytes as `stagegate check` input against the seed
/// manifest, with the streamed JSON report, which must stay one JSON document.
pub fn check(data: &[u8]) {
    let mut checker = Checker::new(&SEED_MANIFEST);
    let Ok(mut report) = JsonReport::start(Vec::new()) else {
        return;
    };
    if checker.check_reader("fuzz", data, &mut report).is_ok() {
        let out = report.finish(checker.summary()).expect("writing to memory");
        serde_json::from_slice::<serde_json::Value>(&out).expect("the report is one JSON document");
    }
}

/// Webhook signature verification (Standard Webhooks): secret, id, timestamp and
/// signature headers, one a line, then the body.
pub fn signature(data: &[u8]) {
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let mut field = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let (secret, id, timestamp, signature) = (field(), field(), field(), field());
    let body = parts.next().unwrap_or_default();
    let secret = secret
        .and_then(|s| s.parse::<WebhookSecret>().ok())
        .unwrap_or_else(|| WebhookSecret::from_key(vec![7; 24]).expect("a 24-byte key"));
    let _ = verify(
        &secret,
        id,
        timestamp,
        signature,
        body,
        1_790_000_000,
        Duration::from_secs(300),
    );
}

/// The sandbox dataset reader (`sandbox generate`'s YAML, streamed event by event).
pub fn dataset(data: &[u8]) {
    let _ = stagegate::sandbox::dataset::from_reader(Path::new("fuzz.yaml"), data);
}

/// The observation-log verifier: JSON Lines records, hashes, links, sequence numbers.
pub fn observe(data: &[u8]) {
    let _ = stagegate::observe::verify_reader(Path::new("fuzz.jsonl"), data);
}

/// The capture reader of `drift`: `record`'s capture lines (signature status, arrival
/// time, the body as text or base64) or plain payloads, inferred and classified against
/// the drift fixtures; every report format must render, and the JSON one must parse.
pub fn capture(data: &[u8]) {
    let Ok(report) = stagegate::drift::run_reader(&DRIFT_CONFIG, "fuzz.jsonl", data) else {
        return;
    };
    let json = serde_json::to_string(&report).expect("the report serializes");
    serde_json::from_str::<serde_json::Value>(&json).expect("the report is one JSON document");
    let _ = stagegate::drift::report::human::render(&report);
    let _ = stagegate::drift::report::markdown::render(&report);
    let _ = stagegate::drift::report::junit::render(&report);
}
