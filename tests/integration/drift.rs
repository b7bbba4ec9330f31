//! `stagegate drift` on drifted copies of real vendor payloads (tests/fixtures/drift/).
//!
//! Copies of each fixture are generated from one seed: volatile values (ids, times,
//! URLs, tokens) are redrawn for every copy, categorical ones cycle through a few
//! realistic values. The clean copies make the baseline; drifted copies apply one
//! change of each class, and the report must name exactly those.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::snapshot;
use crate::util::{Stagegate, fixture, repo_root};

/// Where each vendor names its event type.
pub const TYPE_FIELDS: [&str; 8] = [
    "--type-field",
    "type",
    "--type-field",
    "action",
    "--type-field",
    "payload.action",
    "--type-field",
    "event",
];

pub const MANIFEST: &str = "tests/fixtures/drift/vendors.yaml";

/// A vendor fixture and the categorical values its copies cycle through.
pub struct Vendor {
    pub file: &'static str,
    pub cycles: &'static [(&'static str, &'static [&'static str])],
}

pub const VENDORS: [Vendor; 4] = [
    Vendor {
        file: "checkr-report-completed.json",
        cycles: &[
            ("/data/object/result", &["clear", "consider"]),
            ("/data/object/package", &["driver_pro", "tasker_standard"]),
            (
                "/data/object/assessment",
                &["eligible", "review", "escalated"],
            ),
        ],
    },
    Vendor {
        file: "onfido-check-completed.json",
        cycles: &[("/payload/object/status", &["complete", "withdrawn"])],
    },
    Vendor {
        file: "greenhouse-candidate-stage-change.json",
        cycles: &[
            (
                "/payload/application/status",
                &["active", "rejected", "hired"],
            ),
            (
                "/payload/application/current_stage/name",
                &["Application Review", "Phone Screen", "Onsite"],
            ),
            ("/payload/application/source/name", &["Indeed", "Referral"]),
        ],
    },
    Vendor {
        file: "lever-candidate-stage-change.json",
        cycles: &[("/data/fromStageId", &["lead-new", "applicant-new"])],
    },
];

/// Copies of each vendor's payload per generated file.
pub const COPIES: usize = 12;

pub fn load(vendor: &Vendor) -> Value {
    let path = fixture(&format!("drift/{}", vendor.file));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether a key names a value that changes every delivery.
fn volatile_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    lower == "id"
        || lower.ends_with("_id")
        || lower.ends_with("_ids")
        || (key.ends_with("Id") && key.len() > 2)
        || lower.ends_with("_at")
        || key.ends_with("At")
        || lower.ends_with("_iso8601")
        || ["href", "url", "uri", "webhook_url", "token", "signature"].contains(&lower.as_str())
}

fn hex(rng: &mut ChaCha8Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// The same kind of value, redrawn: same format, same length, other content.
fn redraw(value: &Value, rng: &mut ChaCha8Rng) -> Value {
    match value {
        Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
            let t = chrono::DateTime::from_timestamp(
                1_700_000_000 + rng.random_range(0..50_000_000),
                0,
            )
            .expect("in range");
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        Value::String(s) if s.starts_with("http") || s.starts_with('/') => {
            let cut = s.rfind('/').map_or(0, |i| i + 1);
            json!(format!("{}{}", &s[..cut], hex(rng, 12)))
        }
        Value::String(s) if s.len() == 36 && s.as_bytes()[8] == b'-' => {
            let h = hex(rng, 32);
            json!(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        Value::String(s) => json!(hex(rng, s.len())),
        Value::Number(n) => {
            let n = n.as_i64().expect("integer ids and times");
            let digits = n.to_string().len() as u32;
            json!(
                rng.random_range(10_i64.pow(digits - 1)..10_i64.pow(digits))
                    .max(n / 2)
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| redraw(v, rng)).collect()),
        other => other.clone(),
    }
}

fn vary(value: &mut Value, rng: &mut ChaCha8Rng) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if volatile_key(key) && !child.is_object() {
                    *child = redraw(child, rng);
                } else {
                    vary(child, rng);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| vary(v, rng)),
        _ => {}
    }
}

/// Copy `i` of a vendor's payload, volatile values drawn from `rng`.
pub fn copy(vendor: &Vendor, template: &Value, i: usize, rng: &mut ChaCha8Rng) -> Value {
    let mut payload = template.clone();
    vary(&mut payload, rng);
    for (pointer, values) in vendor.cycles {
        *payload.pointer_mut(pointer).expect("fixture has the path") =
            json!(values[i % values.len()]);
    }
    payload
}

/// Every copy of every vendor, interleaved as they would arrive.
pub fn clean(seed: u64) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let templates: Vec<Value> = VENDORS.iter().map(load).collect();
    let mut out = Vec::new();
    for i in 0..COPIES {
        for (vendor, template) in VENDORS.iter().zip(&templates) {
            out.push(copy(vendor, template, i, &mut rng));
        }
    }
    out
}

/// The drift of each class, applied to clean copies; Lever stops sending.
pub fn drifted(seed: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut checkr_seen = 0;
    for mut p in clean(seed) {
        match event_of(&p).as_str() {
            "report.completed" => {
                let object = p.pointer_mut("/data/object").expect("checkr object");
                let map = object.as_object_mut().expect("object");
                // renamed: package → package_name, same values
                let package = map.remove("package").expect("package");
                map.insert("package_name".into(), package);
                // format: RFC 3339 → epoch seconds
                map.insert("completed_at".into(), json!(1_747_558_800 + checkr_seen));
                // type: integer → string, from the fifth report on
                if checkr_seen >= 4 {
                    map.insert("turnaround_time".into(), json!("5486"));
                }
                // enum: a result outside the contract's enum, in every fourth report
                if checkr_seen % 4 == 3 {
                    map.insert("result".into(), json!("suspended"));
                }
                checkr_seen += 1;
                out.push(p);
            }
            "check.completed" => {
                let object = p
                    .pointer_mut("/payload/object")
                    .and_then(Value::as_object_mut)
                    .expect("onfido object");
                // added: a new optional array
                object.insert("tags".into(), json!(["watchlist"]));
                // required missing: every third check loses its completion time
                if out.len() % 3 == 1 {
                    object.remove("completed_at_iso8601");
                }
                out.push(p);
            }
            "candidate_stage_change" => {
                let status = p
                    .pointer_mut("/payload/application/status")
                    .expect("status");
                if *status == json!("hired") {
                    // a new value of a non-enum categorical field
                    *status = json!("converted");
                    // and a new event type, in a copy
                    let mut hired = p.clone();
                    hired["action"] = json!("candidate_hired");
                    out.push(hired);
                }
                out.push(p);
            }
            // gone: Lever's stage changes no longer arrive
            _ => {}
        }
    }
    out
}

pub fn event_of(payload: &Value) -> String {
    ["/type", "/action", "/payload/action", "/event"]
        .iter()
        .find_map(|p| payload.pointer(p).and_then(Value::as_str))
        .expect("every fixture names its event")
        .to_owned()
}

pub fn jsonl(payloads: &[Value]) -> String {
    payloads.iter().map(|p| format!("{p}\n")).collect()
}

/// (id, event, path, value) of every finding of a JSON report.
pub fn finding_keys(report: &Value) -> BTreeSet<(String, String, String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or("").to_owned();
            (text("id"), text("event"), text("path"), text("value"))
        })
        .collect()
}

pub fn key(id: &str, event: &str, path: &str, value: &str) -> (String, String, String, String) {
    (id.into(), event.into(), path.into(), value.into())
}

/// What the drifted copies must be reported as, no more, no less.
pub fn expected_findings() -> BTreeSet<(String, String, String, String)> {
    [
        key(
            "drift.field-renamed",
            "report.completed",
            "data.object.package",
            "",
        ),
        key(
            "drift.format-changed",
            "report.completed",
            "data.object.completed_at",
            "epoch-seconds",
        ),
        key(
            "drift.type-changed",
            "report.completed",
            "data.object.turnaround_time",
            "string",
        ),
        key(
            "drift.enum-value-added",
            "report.completed",
            "data.object.result",
            "suspended",
        ),
        key(
            "drift.required-field-missing",
            "check.completed",
            "payload.object.completed_at_iso8601",
            "",
        ),
        key(
            "drift.optional-field-added",
            "check.completed",
            "payload.object.tags",
            "",
        ),
        key(
            "drift.value-added",
            "candidate_stage_change",
            "payload.application.status",
            "converted",
        ),
        key("drift.event-type-added", "candidate_hired", "", ""),
        key("drift.event-type-gone", "candidateStageChange", "", ""),
    ]
    .into_iter()
    .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `stagegate drift` with the vendors' manifest and type fields.
pub fn drift(args: &[&str]) -> Stagegate {
    let mut all = vec!["drift", "--manifest", MANIFEST];
    all.extend_from_slice(&TYPE_FIELDS);
    all.extend_from_slice(args);
    Stagegate::new(all)
}

/// Writes the baseline of `clean(seed)` and returns its path.
pub fn baseline_from(dir: &Path, seed: u64) -> PathBuf {
    let captures = write(dir, "baseline-captures.jsonl", &jsonl(&clean(seed)));
    let baseline = dir.join("baseline.json");
    drift(&[
        "--baseline",
        s(&baseline),
        "--update-baseline",
        s(&captures),
    ])
    .run()
    .expect_code(0);
    baseline
}

const SEED: u64 = 7;

#[test]
fn committed_fixture_captures_and_baseline_are_current() {
    // The README's worked example runs on these; they must be what the generator makes.
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = baseline_from(dir.path(), SEED);
    let rows = [
        ("drift/clean.jsonl", jsonl(&clean(SEED + 1))),
        ("drift/drifted.jsonl", jsonl(&drifted(SEED + 1))),
        (
            "drift/baseline.json",
            std::fs::read_to_string(&baseline).expect("baseline"),
        ),
    ];
    for (name, generated) in rows {
        let path = fixture(name);
        if std::env::var_os("STAGEGATE_REGENERATE_FIXTURES").is_some() {
            std::fs::write(&path, &generated).expect("regenerate");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale; run `STAGEGATE_REGENERATE_FIXTURES=1 cargo test --test integration drift::committed`",
            path.display()
        );
    }
}

#[test]
fn the_same_shapes_with_other_volatile_values_report_no_drift() {
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = baseline_from(dir.path(), SEED);
    for seed in [SEED + 1, SEED + 100] {
        let captures = write(dir.path(), "clean.jsonl", &jsonl(&clean(seed)));
        let out = drift(&["--baseline", s(&baseline), "--format", "json", s(&captures)])
            .run()
            .expect_code(0);
        let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
        assert_eq!(report["findings"], json!([]), "seed {seed}: {}", out.stdout);
        assert_eq!(report["verdict"], "pass");
        assert_eq!(
            report["counts"]["inferred"],
            (COPIES * VENDORS.len()) as u64
        );
    }
}

#[test]
fn each_class_of_drift_is_named_and_a_rename_is_one_finding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = baseline_from(dir.path(), SEED);
    let captures = write(dir.path(), "drifted.jsonl", &jsonl(&drifted(SEED + 1)));
    let out = drift(&["--baseline", s(&baseline), "--format", "json", s(&captures)])
        .run()
        .expect_code(1);
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(
        finding_keys(&report),
        expected_findings(),
        "seed {}: {}",
        SEED + 1,
        out.stdout
    );
    let rename = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "drift.field-renamed")
        .expect("the rename");
    assert_eq!(rename["renamed_to"], "data.object.package_name");
    assert_eq!(
        rename["message"],
        "renamed `data.object.package` → `data.object.package_name`"
    );
    assert_eq!(rename["severity"], "breaking");
    // The type change starts at the fifth report: first seen on its line.
    let text = std::fs::read_to_string(&captures).expect("captures");
    let lines: Vec<&str> = text.lines().collect();
    let fifth_report = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"report.completed\""))
        .nth(4)
        .map(|(i, _)| i as u64 + 1)
        .expect("five reports");
    let type_change = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "drift.type-changed")
        .expect("the type change");
    assert_eq!(type_change["first_seen"]["line"], fifth_report);
    assert_eq!(type_change["occurrences"], (COPIES - 4) as u64);
}

#[test]
fn without_a_baseline_the_contract_alone_names_what_it_can() {
    let dir = tempfile::tempdir().expect("temp dir");
    let captures = write(dir.path(), "drifted.jsonl", &jsonl(&drifted(SEED + 1)));
    let out = drift(&["--format", "json", s(&captures)])
        .run()
        .expect_code(1);
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    let keys = finding_keys(&report);
    for expected in [
        key(
            "drift.enum-value-added",
            "report.completed",
            "data.object.result",
            "suspended",
        ),
        key(
            "drift.required-field-missing",
            "check.completed",
            "payload.object.completed_at_iso8601",
            "",
        ),
        key("drift.event-type-added", "candidate_hired", "", ""),
        key("drift.event-type-gone", "candidateStageChange", "", ""),
    ] {
        assert!(keys.contains(&expected), "{expected:?} in {keys:?}");
    }
    let rename = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "drift.field-renamed")
        .expect("a contract-required field renamed is still a rename");
    assert_eq!(rename["path"], "data.object.package");
    assert_eq!(rename["renamed_to"], "data.object.package_name");
    assert!(
        !keys
            .iter()
            .any(|k| k.0 == "drift.required-field-missing" && k.2 == "data.object.package"),
        "not also reported missing: {keys:?}"
    );
}

#[test]
fn without_a_manifest_a_vendor_is_watched_against_the_baseline_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clean_path = write(dir.path(), "clean.jsonl", &jsonl(&clean(SEED)));
    let baseline = dir.path().join("watch.json");
    let mut args = vec!["drift"];
    args.extend_from_slice(&TYPE_FIELDS);
    let first = {
        let mut a = args.clone();
        a.extend_from_slice(&[
            "--baseline",
            s(&baseline),
            "--update-baseline",
            s(&clean_path),
        ]);
        Stagegate::new(a).run().expect_code(0)
    };
    assert!(
        first.stdout.contains("drift.event-type-added"),
        "{}",
        first.stdout
    );
    let text = std::fs::read_to_string(&baseline).expect("baseline written");
    assert!(text.contains("\"report.completed\""), "{text}");
    // Rewriting from the same shapes is byte-identical: reviewers see no noise.
    let again = write(dir.path(), "again.jsonl", &jsonl(&clean(SEED + 5)));
    let mut a = args.clone();
    a.extend_from_slice(&["--baseline", s(&baseline), "--update-baseline", s(&again)]);
    Stagegate::new(a).run().expect_code(0);
    assert_eq!(std::fs::read_to_string(&baseline).expect("baseline"), text);
    // And the drift shows against the baseline alone.
    let drifted_path = write(dir.path(), "drifted.jsonl", &jsonl(&drifted(SEED + 1)));
    let mut a = args.clone();
    a.extend_from_slice(&[
        "--baseline",
        s(&baseline),
        "--format",
        "json",
        s(&drifted_path),
    ]);
    let out = Stagegate::new(a).run().expect_code(1);
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    let keys = finding_keys(&report);
    for expected in [
        key(
            "drift.field-renamed",
            "report.completed",
            "data.object.package",
            "",
        ),
        key(
            "drift.value-added",
            "report.completed",
            "data.object.result",
            "suspended",
        ),
        key("drift.event-type-gone", "candidateStageChange", "", ""),
    ] {
        assert!(keys.contains(&expected), "{expected:?} in {keys:?}");
    }
    assert!(report.get("manifest").is_none());
}

#[test]
fn a_severity_file_lowers_and_raises_findings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = baseline_from(dir.path(), SEED);
    let captures = write(dir.path(), "drifted.jsonl", &jsonl(&drifted(SEED + 1)));
    // Lower every breaking id the drift carries: the gate passes with additive drift.
    let lowered = write(
        dir.path(),
        "lower.yaml",
        "drift.field-renamed: additive\ndrift.format-changed: additive\ndrift.type-changed: additive\n\
         drift.enum-value-added: additive\ndrift.required-field-missing: additive\ndrift.event-type-gone: ignore\n",
    );
    let out = drift(&[
        "--baseline",
        s(&baseline),
        "--severity",
        s(&lowered),
        "--format",
        "json",
        s(&captures),
    ])
    .run()
    .expect_code(0);
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(report["verdict"], "warn");
    assert_eq!(report["breaking"], 0);
    assert!(
        !out.stdout.contains("drift.event-type-gone"),
        "ignored ids are not reported"
    );
    // Raise an additive id: a new optional field now blocks on its own.
    let raised = write(
        dir.path(),
        "raise.yaml",
        "drift.optional-field-added: breaking\n",
    );
    let only_added: Vec<Value> = clean(SEED + 1)
        .into_iter()
        .map(|mut p| {
            if let Some(object) = p
                .pointer_mut("/payload/object")
                .and_then(Value::as_object_mut)
            {
                object.insert("tags".into(), json!(["watchlist"]));
            }
            p
        })
        .collect();
    let added = write(dir.path(), "added.jsonl", &jsonl(&only_added));
    drift(&["--baseline", s(&baseline), s(&added)])
        .run()
        .expect_code(0);
    drift(&[
        "--baseline",
        s(&baseline),
        "--severity",
        s(&raised),
        s(&added),
    ])
    .run()
    .expect_code(1);
    // A misspelt id is a usage error that names the right one.
    let bad = write(dir.path(), "bad.yaml", "drift.type-change: additive\n");
    let out = drift(&["--baseline", s(&baseline), "--severity", s(&bad), s(&added)])
        .run()
        .expect_code(2);
    assert!(
        out.stderr.contains("did you mean `drift.type-changed`"),
        "{}",
        out.stderr
    );
}

/// Capture lines as `stagegate record` writes them, one minute apart from `start`.
fn as_captures(payloads: &[Value], start: i64) -> String {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = chrono::DateTime::from_timestamp(start + 60 * i as i64, 0).expect("time");
            let line = json!({
                "stagegate_capture": 1,
                "received_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "method": "POST",
                "path": "/hooks",
                "headers": {"content-type": "application/json"},
                "signature": "valid",
                "scheme": "hmac-sha256",
                "body": p.to_string(),
            });
            format!("{line}\n")
        })
        .collect()
}

#[test]
fn since_and_until_window_the_captures_and_findings_say_when_they_began() {
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = baseline_from(dir.path(), SEED);
    // Clean deliveries for the first hour-ish, then the drifted ones.
    let clean_part = clean(SEED + 1);
    let mut all = clean_part.clone();
    all.extend(drifted(SEED + 2));
    let start = 1_780_000_000;
    let captures = write(dir.path(), "captures.jsonl", &as_captures(&all, start));
    let boundary = chrono::DateTime::from_timestamp(start + 60 * clean_part.len() as i64, 0)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let before = drift(&[
        "--baseline",
        s(&baseline),
        "--until",
        &boundary,
        "--format",
        "json",
        s(&captures),
    ])
    .run()
    .expect_code(0);
    let report: Value = serde_json::from_str(&before.stdout).expect("JSON report");
    assert_eq!(report["findings"], json!([]), "{}", before.stdout);
    assert_eq!(
        report["counts"]["outside_window"],
        (all.len() - clean_part.len()) as u64
    );
    let after = drift(&[
        "--baseline",
        s(&baseline),
        "--since",
        &boundary,
        "--format",
        "json",
        s(&captures),
    ])
    .run()
    .expect_code(1);
    let report: Value = serde_json::from_str(&after.stdout).expect("JSON report");
    assert_eq!(finding_keys(&report), expected_findings());
    // The first drifted delivery is a Checkr report: the rename began right at the boundary.
    let rename = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "drift.field-renamed")
        .expect("rename");
    assert_eq!(
        rename["first_seen"]["at"],
        boundary.replace('Z', ".000Z"),
        "{}",
        after.stdout
    );
    // Everything at once: the same findings, first seen where the drift began.
    let whole = drift(&["--baseline", s(&baseline), "--format", "json", s(&captures)])
        .run()
        .expect_code(1);
    let report: Value = serde_json::from_str(&whole.stdout).expect("JSON report");
    let mut expected = expected_findings();
    expected.remove(&key(
        "drift.event-type-gone",
        "candidateStageChange",
        "",
        "",
    ));
    assert_eq!(
        finding_keys(&report),
        expected,
        "Lever still arrived early on: {}",
        whole.stdout
    );
    let rename = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "drift.field-renamed")
        .expect("rename");
    assert!(
        rename["message"]
            .as_str()
            .expect("text")
            .contains(&format!("in {COPIES} of {}", 2 * COPIES)),
        "a rename rolling out mid-capture is still one rename: {rename}"
    );
}

#[test]
fn every_report_format_renders_the_drift() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rel = |p: &str| repo_root().join("tests/fixtures").join(p);
    let baseline = rel("drift/baseline.json");
    let captures = rel("drift/drifted.jsonl");
    let junit = dir.path().join("drift.xml");
    let markdown = dir.path().join("drift.md");
    let json_path = dir.path().join("drift.json");
    let human = drift(&[
        "--baseline",
        "tests/fixtures/drift/baseline.json",
        "--report",
        &format!("junit={}", s(&junit)),
        "--report",
        &format!("markdown={}", s(&markdown)),
        "--report",
        &format!("json={}", s(&json_path)),
        "tests/fixtures/drift/drifted.jsonl",
    ])
    .run()
    .expect_code(1);
    assert!(baseline.exists() && captures.exists());
    snapshot!("drift_human", human.stdout);
    let markdown = std::fs::read_to_string(&markdown).expect("markdown");
    snapshot!("drift_markdown", markdown);
    let junit = std::fs::read_to_string(&junit).expect("junit");
    assert_eq!(
        junit.matches("<failure").count(),
        6,
        "one failure per breaking finding: {junit}"
    );
    assert!(
        junit.contains("drift.field-renamed data.object.package"),
        "{junit}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json"))
        .expect("JSON report");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schemas/drift-report.schema.json"))
            .expect("schema"),
    )
    .expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let baseline_schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schemas/drift-baseline.schema.json"))
            .expect("schema"),
    )
    .expect("schema JSON");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(&baseline).expect("baseline"))
            .expect("baseline JSON");
    assert!(
        jsonschema::validator_for(&baseline_schema)
            .expect("compiles")
            .is_valid(&committed)
    );
}

#[test]
fn bad_input_is_a_usage_error_that_says_how_to_fix_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let captures = write(dir.path(), "c.jsonl", &jsonl(&clean(SEED)));
    let not_baseline = write(dir.path(), "nb.json", "{\"events\": {}}");
    // (args, what stderr must say, why)
    let rows: [(Vec<&str>, &str, &str); 4] = [
        (
            vec!["--baseline", s(&not_baseline), s(&captures)],
            "is not a drift baseline",
            "wrong file",
        ),
        (
            vec!["--baseline", "nowhere.json", s(&captures)],
            "cannot read the baseline",
            "missing file",
        ),
        (
            vec!["--since", "yesterday", s(&captures)],
            "is not an RFC 3339 time",
            "bad time",
        ),
        (
            vec!["nowhere.jsonl"],
            "cannot read nowhere.jsonl",
            "missing capture",
        ),
    ];
    for (args, says, why) in rows {
        let out = drift(&args).run().expect_code(2);
        assert!(out.stderr.contains(says), "{why}: {}", out.stderr);
    }
    // Torn and malformed lines are counted, never fatal.
    let torn = write(
        dir.path(),
        "torn.jsonl",
        &format!("{}{{\"stagegate_capture\":1,\"bo", jsonl(&clean(SEED))),
    );
    let out = drift(&["--format", "json", s(&torn)]).run();
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(report["counts"]["malformed"], 1);
}

#[test]
fn help_texts_are_stable() {
    for command in ["drift", "record"] {
        let out = Stagegate::new([command, "--help"]).run().expect_code(0);
        snapshot!(format!("help_{command}_help"), out.stdout);
    }
}
