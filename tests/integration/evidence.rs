//! `stagegate evidence` on real runs: a candidate's pack from the defective run holds
//! its findings and no personal data, verifies alone and against its log, and fails
//! against a tampered log.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::trace::{defective, passing};
use crate::util::Stagegate;

fn unpack(pack: &Path) -> BTreeMap<String, String> {
    let mut archive = tar::Archive::new(std::fs::File::open(pack).expect("pack written"));
    archive
        .entries()
        .expect("a tar archive")
        .map(|entry| {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("name").display().to_string();
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("UTF-8 entry");
            (name, text)
        })
        .collect()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[test]
fn a_pack_holds_the_candidates_story_without_personal_data_and_verifies() {
    let run = defective();
    let candidate = run.finding_candidates("idempotency.exactly_once")[0].clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let pack = dir.path().join("evidence.tar");
    let out = Stagegate::new([
        "evidence",
        path(&run.log()),
        "--candidate",
        &candidate,
        "--out",
        path(&pack),
    ])
    .run()
    .expect_code(0);
    assert!(
        out.stdout.contains(&format!("evidence of {candidate}")),
        "{}",
        out.stdout
    );

    let files = unpack(&pack);
    let manifest: Value =
        serde_json::from_str(&files["stagegate-evidence/MANIFEST.json"]).expect("manifest");
    assert_eq!(manifest["format"], "stagegate.evidence-pack/1.0");
    assert_eq!(manifest["candidate"], candidate.as_str());
    let listed: Vec<&str> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(listed.len() + 1, files.len(), "every other file is listed");

    // The check that caught the defect, with this candidate's finding.
    let findings: Value =
        serde_json::from_str(&files["stagegate-evidence/findings.json"]).expect("findings");
    assert_eq!(findings["verdict"], "blocked");
    let exactly_once = findings["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == "idempotency.exactly_once")
        .expect("the check");
    assert_eq!(exactly_once["status"], "fail");
    assert!(
        exactly_once["findings_about_the_candidate"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["candidate"] == candidate.as_str())
    );
    let verification: Value =
        serde_json::from_str(&files["stagegate-evidence/verification.json"]).expect("JSON");
    assert!(
        verification["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["signature"]["valid"] == true),
        "the duplicates scenario sends only genuine signatures"
    );
    let versions: Value =
        serde_json::from_str(&files["stagegate-evidence/versions.json"]).expect("JSON");
    assert_eq!(versions["manifest"]["version"], "1.3");
    assert_eq!(
        versions["manifest"]["change_id"],
        "rls-2026-05-18-il-contracts"
    );

    // log_pii printed the candidates' names and addresses: none is in the pack.
    let plan = run.plan();
    let everything: String = files.values().cloned().collect();
    assert!(
        everything.contains("[redacted]"),
        "the leaked line is kept, redacted"
    );
    for person in plan["candidates"].as_array().expect("candidates") {
        for pii in person["pii"].as_array().expect("pii") {
            let pii = pii.as_str().expect("text");
            assert!(!everything.contains(pii), "{pii} is in the pack");
        }
    }

    for log in [None, Some(run.log())] {
        let mut args = vec![
            "evidence".to_owned(),
            "verify".to_owned(),
            path(&pack).to_owned(),
        ];
        if let Some(log) = &log {
            args.extend(["--log".to_owned(), path(log).to_owned()]);
        }
        let out = Stagegate::new(args).run().expect_code(0);
        assert!(out.stdout.contains("verified"), "{}", out.stdout);
        assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
    }
}

#[test]
fn the_pack_of_a_tampered_log_fails_to_verify() {
    let run = passing();
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(run.log()).expect("log");
    let record: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("record"))
        .find(|r| r["kind"] == "ats.event_applied")
        .expect("an applied event");
    let candidate = record["candidate"].as_str().expect("candidate");
    let pack = dir.path().join("pack.tar");
    Stagegate::new([
        "evidence",
        path(&run.log()),
        "--candidate",
        candidate,
        "--out",
        path(&pack),
    ])
    .run()
    .expect_code(0);

    // The record that says the event landed, edited to say revision 7.
    let tampered = dir.path().join("observation.jsonl");
    let seq = record["seq"].as_u64().expect("seq");
    let edited: String = text
        .lines()
        .map(|l| {
            if l.contains(&format!("\"seq\":{seq},")) {
                l.replacen("\"revision\":", "\"revision\":7", 1)
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&tampered, edited).expect("tampered copy");
    let out = Stagegate::new(["evidence", "verify", path(&pack), "--log", path(&tampered)])
        .run()
        .expect_code(1);
    assert!(
        out.stdout.contains(&format!("is not intact: record {seq}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("NOT verified"), "{}", out.stdout);
    // And no pack is made from it.
    let out = Stagegate::new([
        "evidence",
        path(&tampered),
        "--candidate",
        candidate,
        "--out",
        path(&dir.path().join("again.tar")),
    ])
    .run()
    .expect_code(1);
    assert!(out.stderr.contains("is not intact"), "{}", out.stderr);

    // A pack is checked on its own too: an edited file breaks its digest.
    let mut bytes = std::fs::read(&pack).expect("pack");
    let at = bytes
        .windows(8)
        .position(|w| w == b"\"valid\":")
        .expect("verification.json is stored uncompressed");
    bytes[at + 9] = if bytes[at + 9] == b't' { b'f' } else { b't' };
    std::fs::write(&pack, &bytes).expect("edited pack");
    let out = Stagegate::new(["evidence", "verify", path(&pack)])
        .run()
        .expect_code(1);
    assert!(
        out.stdout.contains("does not match its digest"),
        "{}",
        out.stdout
    );

    let out = Stagegate::new([
        "evidence",
        path(&run.log()),
        "--candidate",
        "CAND_nobody",
        "--out",
        path(&dir.path().join("none.tar")),
    ])
    .run()
    .expect_code(2);
    assert!(
        out.stderr.contains("CAND_nobody has no record"),
        "{}",
        out.stderr
    );
}
