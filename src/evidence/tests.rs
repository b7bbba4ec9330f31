use super::*;
use crate::trace::fixture::{self, B, B_NAME};

struct Setup {
    dir: tempfile::TempDir,
    log: PathBuf,
    pack: PathBuf,
}

fn pack_fixture(include_pii: bool) -> (Setup, Packed) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = fixture::write_log(dir.path());
    fixture::write_plan(dir.path());
    let pack = dir.path().join("out/pack.tar");
    let request = PackRequest {
        log: log.clone(),
        candidate: B.to_owned(),
        out: pack.clone(),
        plan: None,
        report: None,
        manifest: None,
        policy: None,
        include_pii,
    };
    let packed = write_pack(&request).expect("a pack");
    (Setup { dir, log, pack }, packed)
}

fn all_text(pack: &Path) -> String {
    read_archive(pack)
        .expect("readable")
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

#[test]
fn a_pack_holds_the_candidate_redacted_and_verifies() {
    let (s, packed) = pack_fixture(false);
    assert_eq!(packed.records, 2);
    assert_eq!(packed.redacted, 1, "the output line naming the candidate");
    let names: Vec<String> = read_archive(&s.pack).expect("tar").into_keys().collect();
    assert_eq!(
        names,
        [
            "stagegate-evidence/MANIFEST.json",
            "stagegate-evidence/chain.json",
            "stagegate-evidence/findings.json",
            "stagegate-evidence/records.jsonl",
            "stagegate-evidence/trace.json",
            "stagegate-evidence/verification.json",
            "stagegate-evidence/versions.json",
        ]
    );
    let text = all_text(&s.pack);
    assert!(
        !text.contains(B_NAME),
        "no personal data without --include-pii"
    );
    assert!(text.contains("[redacted]"));
    assert!(
        text.contains("\"valid\": false"),
        "the forged delivery's signature"
    );

    let alone = verify_pack(&s.pack, None).expect("a pack");
    assert!(alone.problems.is_empty(), "{:?}", alone.problems);
    let with_log = verify_pack(&s.pack, Some(&s.log)).expect("a pack");
    assert!(with_log.problems.is_empty(), "{:?}", with_log.problems);
    assert!(
        with_log
            .proved
            .iter()
            .any(|p| p.contains("all 2 packed records are the log's")),
        "{:?}",
        with_log.proved
    );

    let (s, _) = pack_fixture(true);
    assert!(all_text(&s.pack).contains(B_NAME), "--include-pii keeps it");
    assert!(
        verify_pack(&s.pack, Some(&s.log))
            .expect("a pack")
            .problems
            .is_empty()
    );
}

#[test]
fn a_tampered_log_or_pack_fails_to_verify() {
    let (s, _) = pack_fixture(false);
    let original = std::fs::read_to_string(&s.log).expect("log");

    // (edited log, expected problem, why)
    let rehashed = {
        let mut records = fixture::records();
        records[8].status = Some(200);
        let mut prev = crate::observe::GENESIS.to_owned();
        for r in &mut records {
            r.prev_hash = prev.clone();
            r.hash = record_hash(r);
            prev = r.hash.clone();
        }
        records
            .iter()
            .map(|r| serde_json::to_string(r).expect("json") + "\n")
            .collect::<String>()
    };
    let rows = [
        (
            original.replace("\"status\":401", "\"status\":202"),
            "is not intact: record 8 (line 9) was altered",
            "the forged delivery's refusal edited in place",
        ),
        (
            rehashed,
            "record 8 in the log hashes to",
            "the same edit with the whole chain rehashed: the pack's hashes no longer match",
        ),
        (
            original
                .lines()
                .take(12)
                .map(|l| format!("{l}\n"))
                .collect(),
            "the log's head is record 11",
            "a truncated log",
        ),
    ];
    for (content, expected, why) in rows {
        std::fs::write(&s.log, content).expect("edit");
        let v = verify_pack(&s.pack, Some(&s.log)).expect("a pack");
        assert!(
            v.problems.iter().any(|p| p.contains(expected)),
            "{why}: {:?}",
            v.problems
        );
    }
    // A pack is not written from a broken log.
    std::fs::write(&s.log, original.replace("\"status\":401", "\"status\":202")).expect("edit");
    let err = write_pack(&PackRequest {
        log: s.log.clone(),
        candidate: B.to_owned(),
        out: s.dir.path().join("again.tar"),
        plan: None,
        report: None,
        manifest: None,
        policy: None,
        include_pii: false,
    })
    .expect_err("broken log");
    assert!(err.to_string().contains("is not intact"), "{err}");

    // An edited file inside the pack.
    let mut files = read_archive(&s.pack).expect("tar");
    let key = "stagegate-evidence/verification.json".to_owned();
    let edited =
        String::from_utf8_lossy(&files[&key]).replace("\"valid\": false", "\"valid\": true");
    files.insert(key, edited.into_bytes());
    let mut bytes = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut bytes);
        for (name, data) in &files {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, name, data.as_slice())
                .expect("tar");
        }
        builder.finish().expect("tar");
    }
    std::fs::write(&s.pack, bytes).expect("rewritten");
    let v = verify_pack(&s.pack, None).expect("a pack");
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("verification.json does not match its digest")),
        "{:?}",
        v.problems
    );
}
