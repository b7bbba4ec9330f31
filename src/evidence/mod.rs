//! Evidence packs: one candidate's story out of a run, in a tar archive a security
//! reviewer can keep, with the proof that it came from that run's log.
//!
//! `stagegate evidence LOG --candidate ID --out PACK` traces the candidate through the
//! log (one streamed pass, the chain verified; a broken log gives no pack) and writes:
//!
//! | file | holds |
//! | --- | --- |
//! | `MANIFEST.json` | the pack's format, candidate, run, the log's head, and every other file with its SHA-256 |
//! | `records.jsonl` | the candidate's observation records, personal data redacted |
//! | `chain.json` | each record's hashes (the one before, its own, the one after) and the log's head |
//! | `trace.json` | the exchanges in order, with latencies, outcomes, perturbations |
//! | `verification.json` | per event: verification outcome, risk tier, signature validity, what the ATS did |
//! | `findings.json` | the run's verdict, every check's status, and the findings that concern the candidate |
//! | `versions.json` | stagegate's version, the manifest's and the hiring policy's versions and digests |
//!
//! A record whose personal data was redacted no longer hashes to its `hash`: the pack
//! lists it in `chain.json`, and `stagegate evidence verify PACK --log LOG` proves it
//! against the log (same hash at the same place in an intact chain, and the redacted
//! copy equal to the original but for the redacted spans). Without the log, verify
//! checks what the pack can prove alone: the files' digests, every unredacted
//! record's hash, and that the hashes link.

pub mod redact;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::observe::stream::{self, StreamError};
use crate::observe::{ChainBreak, Record, record_hash};
use crate::report::RunReport;
use crate::run::plan::Plan;
use crate::trace::{self, Link, Selector, TraceError};
use redact::Redactor;

/// The pack format, in `MANIFEST.json`.
pub const PACK_FORMAT: &str = "stagegate.evidence-pack/1.0";
/// The folder every file of a pack sits in.
const ROOT: &str = "stagegate-evidence";
/// The largest file a pack may hold (a candidate's records are far smaller).
const MAX_FILE: u64 = 256 << 20;

/// What `stagegate evidence` packs.
#[derive(Debug, Clone)]
pub struct PackRequest {
    /// The observation log.
    pub log: PathBuf,
    /// The candidate.
    pub candidate: String,
    /// The pack to write.
    pub out: PathBuf,
    /// The run's plan [default: plan.json beside the log].
    pub plan: Option<PathBuf>,
    /// The run's JSON report [default: report.json beside the log].
    pub report: Option<PathBuf>,
    /// The manifest [default: the one the log's `run.start` names].
    pub manifest: Option<PathBuf>,
    /// The hiring policy the run used, if any.
    pub policy: Option<PathBuf>,
    /// Keep personal data.
    pub include_pii: bool,
}

/// One file of a pack, as `MANIFEST.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedFile {
    /// Its path inside the archive.
    pub path: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// The log's head as the pack saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    /// The log's file name when packed.
    pub name: String,
    /// How many records the log held.
    pub records: u64,
    /// The last record's hash.
    pub head: String,
}

/// `MANIFEST.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackManifest {
    /// [`PACK_FORMAT`].
    pub format: String,
    /// The candidate.
    pub candidate: String,
    /// The run.
    pub run_id: Option<String>,
    /// The log the records come from.
    pub log: LogHead,
    /// Whether personal data was kept.
    pub include_pii: bool,
    /// Where the names to redact came from.
    pub redaction: String,
    /// Every other file, with its digest.
    pub files: Vec<PackedFile>,
}

/// `chain.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainProof {
    /// The log's head.
    pub log: LogHead,
    /// Each packed record's hashes.
    pub links: Vec<Link>,
    /// The records whose personal data was redacted (they no longer hash to `hash`).
    pub redacted: Vec<u64>,
}

/// What a written pack holds.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The pack's manifest.
    pub manifest: PackManifest,
    /// Records packed.
    pub records: usize,
    /// Records redacted.
    pub redacted: usize,
    /// Findings of the run that concern the candidate.
    pub findings: usize,
}

/// Why a pack could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The log, the plan or the report could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The log's chain is broken: nothing from it can be vouched for.
    #[error("{} is not intact, so no evidence pack is written from it", log.display())]
    Broken {
        /// The log.
        log: PathBuf,
        /// Where it breaks.
        #[source]
        source: ChainBreak,
    },
    /// The candidate has no record in the log.
    #[error("{candidate} has no record in {}: check the id (runs suffix candidates by scenario, e.g. CAND_canary_001_cl)", log.display())]
    NoRecords {
        /// The candidate.
        candidate: String,
        /// The log.
        log: PathBuf,
    },
    /// A file could not be read or written.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The run report is not one.
    #[error("{} is not a stagegate run report (give --report the report.json of the run)", path.display())]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A pack is not a stagegate evidence pack.
    #[error("{} is not a stagegate evidence pack: {why}", path.display())]
    NotAPack {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError {
    let path = path.to_owned();
    move |source| EvidenceError::Io { what, path, source }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pretty(value: &impl Serialize) -> Vec<u8> {
    // Plain structs and JSON values serialise.
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes the evidence pack of one candidate.
pub fn write_pack(request: &PackRequest) -> Result<Packed, EvidenceError> {
    let plan = trace::plan_for(&request.log, request.plan.as_deref())?;
    let plan_ref = plan.as_ref().map(|(p, plan)| (p.as_path(), plan));
    let traced = trace::trace_file(
        &request.log,
        Selector::Candidate(request.candidate.clone()),
        plan_ref,
    )?;
    if let Some(source) = traced.break_ {
        return Err(EvidenceError::Broken {
            log: request.log.clone(),
            source,
        });
    }
    if traced.records.is_empty() {
        return Err(EvidenceError::NoRecords {
            candidate: request.candidate.clone(),
            log: request.log.clone(),
        });
    }
    let redactor = (!request.include_pii).then(|| Redactor::new(plan.as_ref().map(|(_, p)| p)));
    let redaction = match (&redactor, &plan) {
        (None, _) => "none: --include-pii".to_owned(),
        (Some(_), Some((path, _))) => format!(
            "the sandbox people of {} and every e-mail address",
            file_name(path)
        ),
        (Some(_), None) => {
            "every e-mail address (no plan.json beside the log names the people)".to_owned()
        }
    };
    let redact = |value: &mut Value| redactor.as_ref().is_some_and(|r| r.value(value));

    let mut redacted = Vec::new();
    let mut records_text = Vec::new();
    for record in &traced.records {
        let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
        if redact(&mut value) {
            redacted.push(record.seq);
        }
        records_text.extend(serde_json::to_vec(&value).unwrap_or_default());
        records_text.push(b'\n');
    }
    let log_head = LogHead {
        name: file_name(&request.log),
        records: traced.trace.chain.records,
        head: traced.trace.chain.head.clone().unwrap_or_default(),
    };
    let chain = ChainProof {
        log: log_head.clone(),
        links: traced.links.clone(),
        redacted: redacted.clone(),
    };
    let mut trace_value = serde_json::to_value(&traced.trace).unwrap_or(Value::Null);
    trace_value["log"] = Value::String(log_head.name.clone());
    redact(&mut trace_value);
    let mut verification = verification(&traced.trace);
    redact(&mut verification);
    let (mut findings, found) = findings(request, &traced)?;
    redact(&mut findings);
    let mut versions = versions(request, traced.trace.run_id.as_deref(), plan.as_ref());
    redact(&mut versions);

    let files: Vec<(&str, Vec<u8>)> = vec![
        ("records.jsonl", records_text),
        ("chain.json", pretty(&chain)),
        ("trace.json", pretty(&trace_value)),
        ("verification.json", pretty(&verification)),
        ("findings.json", pretty(&findings)),
        ("versions.json", pretty(&versions)),
    ];
    let manifest = PackManifest {
        format: PACK_FORMAT.to_owned(),
        candidate: request.candidate.clone(),
        run_id: traced.trace.run_id.clone(),
        log: log_head,
        include_pii: request.include_pii,
        redaction,
        files: files
            .iter()
            .map(|(name, bytes)| PackedFile {
                path: format!("{ROOT}/{name}"),
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
            })
            .collect(),
    };
    let mut archive = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut archive);
        let manifest_bytes = pretty(&manifest);
        let all = std::iter::once(("MANIFEST.json", &manifest_bytes))
            .chain(files.iter().map(|(n, b)| (*n, b)));
        for (name, bytes) in all {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, format!("{ROOT}/{name}"), bytes.as_slice())
                .map_err(io("write", &request.out))?;
        }
        builder.finish().map_err(io("write", &request.out))?;
    }
    if let Some(dir) = request.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    std::fs::write(&request.out, archive).map_err(io("write", &request.out))?;
    Ok(Packed {
        manifest,
        records: traced.records.len(),
        redacted: redacted.len(),
        findings: found,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Per event: verification outcome, risk tier, signature validity, ATS outcome.
fn verification(trace: &trace::Trace) -> Value {
    let events: Vec<Value> = trace
        .events
        .iter()
        .map(|e| {
            let forged = e.perturbation.as_ref().is_some_and(|p| p.forged);
            json!({
                "event_id": e.event_id,
                "contract": e.contract,
                "verification_result": e.outcome,
                "risk_tier": e.risk_tier,
                "perturbation": e.perturbation,
                "signature": {
                    "valid": !forged && e.signed > 0,
                    "attempts": e.attempts,
                    "validly_signed_attempts": e.signed,
                    "acknowledged": e.acknowledged,
                    "refused_by_the_integration": e.rejected,
                },
                "integration_outcome": e.processed,
                "ats": {"applied": e.applied, "refused": e.refused},
                "latency_ms": {"sent_to_acknowledged": e.ack_latency_ms(), "sent_to_applied": e.apply_latency_ms()},
            })
        })
        .collect();
    json!({"candidate": trace.selector.id(), "events": events})
}

/// The run's verdict, every check's status, and the findings about the candidate.
fn findings(
    request: &PackRequest,
    traced: &trace::Traced,
) -> Result<(Value, usize), EvidenceError> {
    let path = match &request.report {
        Some(path) => path.clone(),
        None => {
            let beside = request.log.with_file_name(crate::run::artifact::REPORT);
            if !beside.is_file() {
                return Ok((
                    json!({"report": null, "note": "no report.json beside the log; --report names the run's JSON report"}),
                    0,
                ));
            }
            beside
        }
    };
    let text = crate::limits::read_regular(&path, crate::limits::DOCUMENT_BYTES)
        .map_err(io("read", &path))?;
    let report: RunReport =
        serde_json::from_slice(&text).map_err(|source| EvidenceError::Report {
            path: path.clone(),
            source,
        })?;
    let seqs: HashSet<u64> = traced.records.iter().map(|r| r.seq).collect();
    let correlations: HashSet<&str> = traced
        .records
        .iter()
        .filter_map(|r| r.correlation_id.as_deref())
        .collect();
    let id = &request.candidate;
    let mut found = 0;
    let checks: Vec<Value> = report
        .checks
        .iter()
        .map(|check| {
            let concerning: Vec<&crate::judge::Finding> = check
                .findings
                .iter()
                .filter(|f| {
                    f.candidate.as_deref() == Some(id)
                        || f.correlation_id
                            .as_deref()
                            .is_some_and(|c| correlations.contains(c))
                        || f.exchanges.iter().any(|e| seqs.contains(&e.seq))
                })
                .collect();
            found += concerning.len();
            json!({
                "id": check.id,
                "status": check.status,
                "severity": check.severity,
                "passes_when": check.passes_when,
                "findings_total": check.findings_total,
                "findings_about_the_candidate": concerning,
            })
        })
        .collect();
    Ok((
        json!({
            "report": file_name(&path),
            "run_id": report.run_id,
            "verdict": report.verdict,
            "seed": report.seed,
            "replay": report.replay,
            "checks": checks,
        }),
        found,
    ))
}

/// Digest and version of a file loaded through `load`.
fn versioned(path: &Path, version: Option<String>, extra: Value) -> Value {
    let digest = crate::limits::read_regular(path, crate::limits::MANIFEST_BYTES)
        .ok()
        .map(|b| sha256_hex(&b));
    let mut value =
        json!({"file": path.display().to_string(), "sha256": digest, "version": version});
    if let (Value::Object(map), Value::Object(more)) = (&mut value, extra) {
        map.extend(more);
    }
    value
}

fn versions(request: &PackRequest, run_id: Option<&str>, plan: Option<&(PathBuf, Plan)>) -> Value {
    let manifest_path = request
        .manifest
        .clone()
        .or_else(|| run_manifest(&request.log));
    let manifest = manifest_path.map(|path| match crate::manifest::Manifest::load(&path) {
        Ok(loaded) => {
            let raw = &loaded.value.raw;
            versioned(
                &path,
                Some(raw.version.to_string()),
                json!({"change_id": raw.release_gate.change_id}),
            )
        }
        Err(err) => json!({"file": path.display().to_string(), "error": err.to_string()}),
    });
    let policy = request
        .policy
        .as_ref()
        .map(|path| match crate::manifest::load_policy(path) {
            Ok(loaded) => versioned(
                path,
                Some(loaded.value.policy_version.to_string()),
                json!({}),
            ),
            Err(err) => json!({"file": path.display().to_string(), "error": err.to_string()}),
        });
    json!({
        "stagegate": env!("CARGO_PKG_VERSION"),
        "pack_format": PACK_FORMAT,
        "run_id": run_id,
        "seed": plan.map(|(_, p)| p.seed),
        "manifest": manifest,
        "hiring_policy": policy.unwrap_or_else(|| json!({"note": "none given (--policy names the hiring policy the run used)"})),
    })
}

/// The manifest path the log's `run.start` record names.
fn run_manifest(log: &Path) -> Option<PathBuf> {
    let file = crate::limits::open_regular(log, crate::limits::LOG_LINE_BYTES).ok()?;
    let mut first = Vec::new();
    let limit = crate::limits::LOG_LINE_BYTES;
    crate::limits::read_line_bounded(&mut std::io::BufReader::new(file), &mut first, limit).ok()?;
    let record: Record = serde_json::from_slice(&first).ok()?;
    (record.kind == "run.start")
        .then(|| record.detail.get("manifest")?.as_str().map(PathBuf::from))
        .flatten()
        .filter(|p| p.is_file())
}

/// What `stagegate evidence verify` found.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// The pack's manifest.
    pub manifest: Option<PackManifest>,
    /// What holds, one line each.
    pub proved: Vec<String>,
    /// What does not hold, one line each.
    pub problems: Vec<String>,
}

/// Reads every file of a pack into memory (packs are small; each file is bounded).
fn read_archive(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, EvidenceError> {
    // Each entry is bounded below (MAX_FILE); the archive file must end.
    let limit = crate::limits::DOCUMENT_BYTES;
    let file = crate::limits::open_regular(path, limit).map_err(io("read", path))?;
    if file.metadata().map_err(io("read", path))?.len() > limit.value {
        return Err(EvidenceError::NotAPack {
            path: path.to_owned(),
            why: format!("larger than {limit}"),
        });
    }
    let not_a_pack = |why: String| EvidenceError::NotAPack {
        path: path.to_owned(),
        why,
    };
    let mut archive = tar::Archive::new(file);
    let mut files = BTreeMap::new();
    let entries = archive
        .entries()
        .map_err(|e| not_a_pack(format!("not a tar archive ({e})")))?;
    for entry in entries {
        let entry = entry.map_err(|e| not_a_pack(format!("a damaged tar entry ({e})")))?;
        let name = entry
            .path()
            .map_err(|e| not_a_pack(format!("an entry with a bad name ({e})")))?
            .to_string_lossy()
            .into_owned();
        if entry.size() > MAX_FILE {
            return Err(not_a_pack(format!(
                "{name} is larger than {MAX_FILE} bytes"
            )));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .take(MAX_FILE)
            .read_to_end(&mut bytes)
            .map_err(|e| not_a_pack(format!("{name} cannot be read ({e})")))?;
        files.insert(name, bytes);
    }
    Ok(files)
}

/// Verifies a pack: alone, its digests and chain fragments; with `log`, that its
/// records and head are that log's.
pub fn verify_pack(pack: &Path, log: Option<&Path>) -> Result<Verification, EvidenceError> {
    let files = read_archive(pack)?;
    let not_a_pack = |why: &str| EvidenceError::NotAPack {
        path: pack.to_owned(),
        why: why.to_owned(),
    };
    let manifest_bytes = files
        .get(&format!("{ROOT}/MANIFEST.json"))
        .ok_or_else(|| not_a_pack("it has no MANIFEST.json"))?;
    let manifest: PackManifest = serde_json::from_slice(manifest_bytes)
        .map_err(|_| not_a_pack("its MANIFEST.json is not a pack manifest"))?;
    let mut v = Verification::default();
    if manifest.format.split('/').next() != PACK_FORMAT.split('/').next() {
        v.problems
            .push(format!("unknown pack format {}", manifest.format));
    }

    // The digests, and nothing unlisted.
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for f in &manifest.files {
        match files.get(&f.path) {
            None => v.problems.push(format!("{} is listed but missing", f.path)),
            Some(bytes) if sha256_hex(bytes) != f.sha256 => v.problems.push(format!(
                "{} does not match its digest: SHA-256 {} but the manifest says {}",
                f.path,
                sha256_hex(bytes),
                f.sha256
            )),
            Some(_) => {}
        }
    }
    for name in files.keys() {
        if !listed.contains(name.as_str()) && !name.ends_with("/MANIFEST.json") {
            v.problems
                .push(format!("{name} is in the archive but not in its manifest"));
        }
    }
    if v.problems.is_empty() {
        v.proved.push(format!(
            "{} files match their SHA-256 digests",
            manifest.files.len()
        ));
    }

    // The chain fragments.
    let chain: ChainProof = files
        .get(&format!("{ROOT}/chain.json"))
        .and_then(|b| serde_json::from_slice(b).ok())
        .ok_or_else(|| not_a_pack("its chain.json is missing or unreadable"))?;
    let mut records: BTreeMap<u64, Value> = BTreeMap::new();
    let text = files
        .get(&format!("{ROOT}/records.jsonl"))
        .ok_or_else(|| not_a_pack("it has no records.jsonl"))?;
    for (i, line) in String::from_utf8_lossy(text).lines().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(value) => {
                let seq = value.get("seq").and_then(Value::as_u64).unwrap_or(u64::MAX);
                records.insert(seq, value);
            }
            Err(_) => v
                .problems
                .push(format!("records.jsonl line {} is not JSON", i + 1)),
        }
    }
    let before = v.problems.len();
    let redacted: HashSet<u64> = chain.redacted.iter().copied().collect();
    if chain.log != manifest.log {
        v.problems
            .push("chain.json and MANIFEST.json name different log heads".into());
    }
    if records.len() != chain.links.len() {
        v.problems.push(format!(
            "records.jsonl holds {} records but chain.json links {}",
            records.len(),
            chain.links.len()
        ));
    }
    let mut hashed = 0;
    for (i, link) in chain.links.iter().enumerate() {
        let Some(value) = records.get(&link.seq) else {
            v.problems
                .push(format!("record {} is linked but not packed", link.seq));
            continue;
        };
        let text_of = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
        if text_of("hash") != link.hash || text_of("prev_hash") != link.prev_hash {
            v.problems
                .push(format!("record {}'s hashes differ from its link", link.seq));
        }
        if !redacted.contains(&link.seq) {
            match serde_json::from_value::<Record>(value.clone()) {
                Ok(record) if record_hash(&record) == link.hash => hashed += 1,
                Ok(_) => v.problems.push(format!(
                    "record {} does not hash to {}: it was altered",
                    link.seq, link.hash
                )),
                Err(_) => v
                    .problems
                    .push(format!("record {} is not a record", link.seq)),
            }
        }
        if let Some(next) = chain.links.get(i + 1).filter(|n| n.seq == link.seq + 1)
            && (next.prev_hash != link.hash
                || link.next_hash.as_deref() != Some(next.hash.as_str()))
        {
            v.problems.push(format!(
                "records {} and {} do not chain",
                link.seq, next.seq
            ));
        }
        if link.seq + 1 == chain.log.records {
            if link.hash != chain.log.head || link.next_hash.is_some() {
                v.problems.push(format!(
                    "the last record {} is not the log's head",
                    link.seq
                ));
            }
        } else if link.seq + 1 > chain.log.records {
            v.problems.push(format!(
                "record {} lies beyond the log's {} records",
                link.seq, chain.log.records
            ));
        } else if link.next_hash.is_none() {
            v.problems
                .push(format!("record {} has no successor's hash", link.seq));
        }
    }
    if v.problems.len() == before {
        v.proved.push(format!(
            "{} records link into the chain ({} rehashed here; {} redacted, which only --log can prove)",
            chain.links.len(),
            hashed,
            redacted.len()
        ));
    }

    if let Some(log) = log {
        against_log(log, &chain, &records, &mut v)?;
    }
    v.manifest = Some(manifest);
    Ok(v)
}

/// Checks the pack's records and head against the log, streaming it once.
fn against_log(
    log: &Path,
    chain: &ChainProof,
    records: &BTreeMap<u64, Value>,
    v: &mut Verification,
) -> Result<(), EvidenceError> {
    let wanted: BTreeMap<u64, &Link> = chain.links.iter().map(|l| (l.seq, l)).collect();
    let mut matched = 0usize;
    let mut problems = Vec::new();
    let result = stream::stream(log, |line| {
        let Some(link) = wanted.get(&line.head.seq) else {
            return Ok(());
        };
        if line.head.hash != link.hash {
            problems.push(format!(
                "record {} in the log hashes to {}, the pack says {}",
                link.seq, line.head.hash, link.hash
            ));
            return Ok(());
        }
        let original: Value =
            serde_json::from_str(line.text).map_err(|source| crate::observe::ReadError::Parse {
                path: log.to_owned(),
                line: line.number,
                source,
            })?;
        match records.get(&link.seq) {
            Some(packed) if redact::consistent(packed, &original) => matched += 1,
            _ => problems.push(format!(
                "record {} of the pack is not the log's record {} (beyond the redacted spans)",
                link.seq, link.seq
            )),
        }
        Ok::<(), crate::observe::ReadError>(())
    });
    v.problems.extend(problems);
    match result {
        Ok(tail) => {
            if tail.records != chain.log.records || tail.head != chain.log.head {
                v.problems.push(format!(
                    "the log's head is record {} with hash {}, the pack's is record {} with hash {}",
                    tail.records.saturating_sub(1),
                    tail.head,
                    chain.log.records.saturating_sub(1),
                    chain.log.head
                ));
            } else {
                v.proved.push(format!(
                    "{} is intact ({} records) and its head is the pack's",
                    log.display(),
                    tail.records
                ));
            }
            if matched == wanted.len() {
                v.proved.push(format!(
                    "all {matched} packed records are the log's, at the same places"
                ));
            }
        }
        Err(StreamError::Broken(broken)) => v
            .problems
            .push(format!("{} is not intact: {broken}", log.display())),
        Err(StreamError::Read(err) | StreamError::Visitor(err)) => {
            return Err(EvidenceError::Trace(TraceError::Read(err)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
