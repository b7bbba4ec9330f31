//! Streaming a log file once, verifying its chain as it goes, for the readers that
//! only want a few of its records (`stagegate trace`, `stagegate evidence`).
//!
//! A reader sees every line with the few fields that identify it ([`Head`], borrowed
//! from the line, no `detail` parsed) and parses the whole [`Record`] only for the
//! lines it keeps, so a multi-gigabyte log is read at disk-and-hash speed. A record
//! written by [`ObservationLog`](super::ObservationLog) ends with its `hash`, and what
//! was hashed is the same line with that hash emptied: the chain is checked on the
//! line's bytes, and only a line in another layout (re-serialised by some tool) is
//! parsed whole and hashed the slow way, with the same verdict.

use std::borrow::Cow;
use std::io::BufReader;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Actor, ChainBreak, GENESIS, ReadError, Record, record_hash};

/// The fields of a record that identify it and chain it, borrowed from its line.
#[derive(Debug, Deserialize)]
pub struct Head<'a> {
    /// Position in the log.
    pub seq: u64,
    /// Who produced it.
    pub actor: Actor,
    /// What happened.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    /// The candidate concerned.
    #[serde(borrow, default)]
    pub candidate: Option<Cow<'a, str>>,
    /// The flow's correlation id.
    #[serde(borrow, default)]
    pub correlation_id: Option<Cow<'a, str>>,
    /// The event's id.
    #[serde(borrow, default)]
    pub event_id: Option<Cow<'a, str>>,
    /// The event's idempotency key.
    #[serde(borrow, default)]
    pub idempotency_key: Option<Cow<'a, str>>,
    /// The previous record's hash.
    #[serde(borrow)]
    pub prev_hash: Cow<'a, str>,
    /// This record's hash.
    #[serde(borrow)]
    pub hash: Cow<'a, str>,
}

/// One line of the log, handed to the reader once its chain link is proved.
#[derive(Debug)]
pub struct Line<'a> {
    /// 1-based line number in the file.
    pub number: usize,
    /// The line, without its newline.
    pub text: &'a str,
    /// Its identifying fields.
    pub head: Head<'a>,
}

impl Line<'_> {
    /// The whole record.
    pub fn record(&self) -> Result<Record, serde_json::Error> {
        serde_json::from_str(self.text)
    }
}

/// What a complete pass proved about the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// How many records the chain holds.
    pub records: u64,
    /// The last record's hash ([`GENESIS`] for an empty log): the log's head.
    pub head: String,
    /// The first record's run id.
    pub run_id: Option<String>,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E: std::error::Error + 'static> {
    /// The file cannot be read, or holds a line that is not a record.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The chain breaks at this record; nothing after it was handed on.
    #[error(transparent)]
    Broken(ChainBreak),
    /// The reader gave up.
    #[error(transparent)]
    Visitor(E),
}

/// Reads `path` once, checking every record's hash, link and sequence number, and
/// hands each line to `visit` in order. Stops at the first broken link.
pub fn stream<E, F>(path: &Path, mut visit: F) -> Result<Tail, StreamError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&Line<'_>) -> Result<(), E>,
{
    let mut reader = BufReader::with_capacity(1 << 20, super::open_log(path)?);
    let mut buf = Vec::new();
    let mut number = 0usize;
    let mut expected_prev = GENESIS.to_owned();
    let mut next_seq = 0u64;
    let mut run_id = None;
    while super::next_line(path, &mut reader, &mut buf, &mut number)? > 0 {
        let text = std::str::from_utf8(&buf).map_err(|_| ReadError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {number} is not UTF-8 text"),
            ),
        })?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let parse = |source| ReadError::Parse {
            path: path.to_owned(),
            line: number,
            source,
        };
        let head: Head<'_> = serde_json::from_str(text).map_err(parse)?;
        if head.seq != next_seq {
            return Err(StreamError::Broken(ChainBreak::Sequence {
                line: number,
                seq: head.seq,
                expected: next_seq,
            }));
        }
        if !line_hashes_to(text, &head.hash) {
            let record: Record = serde_json::from_str(text).map_err(parse)?;
            let actual = record_hash(&record);
            if actual != record.hash {
                return Err(StreamError::Broken(ChainBreak::Altered {
                    line: number,
                    seq: head.seq,
                    recorded: record.hash,
                    actual,
                }));
            }
        }
        if head.prev_hash != expected_prev {
            return Err(StreamError::Broken(ChainBreak::Unlinked {
                line: number,
                seq: head.seq,
                prev: head.prev_hash.into_owned(),
                expected: expected_prev,
            }));
        }
        if run_id.is_none() {
            run_id = serde_json::from_str::<RunId>(text)
                .ok()
                .map(|r| r.run_id.into_owned());
        }
        expected_prev.clear();
        expected_prev.push_str(&head.hash);
        next_seq += 1;
        let line = Line { number, text, head };
        visit(&line).map_err(StreamError::Visitor)?;
    }
    Ok(Tail {
        records: next_seq,
        head: expected_prev,
        run_id,
    })
}

#[derive(Deserialize)]
struct RunId<'a> {
    #[serde(borrow)]
    run_id: Cow<'a, str>,
}

/// The tail every line written by the log has: `,"hash":"<64 hex digits>"}`.
const HASH_TAIL: usize = r#","hash":""}"#.len() + 64;

/// Whether `text`, as [`ObservationLog`](super::ObservationLog) writes a record,
/// hashes to `hash`: SHA-256 of the line with its trailing hash emptied. False for a
/// line in any other layout, which the caller then checks the slow way.
fn line_hashes_to(text: &str, hash: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < HASH_TAIL || hash.len() != 64 {
        return false;
    }
    let (body, tail) = bytes.split_at(bytes.len() - HASH_TAIL);
    let Some(digits) = tail
        .strip_prefix(br#","hash":""#)
        .and_then(|t| t.strip_suffix(br#""}"#))
    else {
        return false;
    };
    if digits != hash.as_bytes() {
        return false;
    }
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(br#","hash":""}"#);
    hex::encode(hasher.finalize()) == hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Entry, ObservationLog};
    use serde_json::json;

    fn written(dir: &Path, n: usize) -> std::path::PathBuf {
        let path = dir.join("log.jsonl");
        let log = ObservationLog::create(&path, "run-s").expect("created");
        for i in 0..n {
            let entry = Entry {
                candidate: Some(format!("CAND_{}", i % 3)),
                ..Entry::detail(json!({"i": i, "name": "Zoë \"Q\" Ångström"}))
            };
            log.append(Actor::Ats, "ats.request", entry);
        }
        log.flush().expect("flushed");
        path
    }

    #[test]
    fn the_fast_path_agrees_with_the_record_hash() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = written(dir.path(), 5);
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines() {
            let record: Record = serde_json::from_str(line).expect("record");
            assert!(line_hashes_to(line, &record.hash), "{line}");
            assert_eq!(record_hash(&record), record.hash);
        }
        let mut seen = Vec::new();
        let tail = stream::<std::convert::Infallible, _>(&path, |line| {
            seen.push(line.head.candidate.as_deref().map(str::to_owned));
            Ok(())
        })
        .expect("intact");
        assert_eq!(tail.records, 5);
        assert_eq!(tail.run_id.as_deref(), Some("run-s"));
        assert_eq!(seen.len(), 5);
        let last: Record =
            serde_json::from_str(text.lines().last().expect("a line")).expect("record");
        assert_eq!(tail.head, last.hash);
    }

    #[test]
    fn breaks_are_found_on_the_fast_and_the_slow_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = written(dir.path(), 5);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        // (edited file, expected message, why)
        let reformatted: Vec<String> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                serde_json::to_string_pretty(&v)
                    .expect("pretty")
                    .replace('\n', "")
            })
            .collect();
        let rows: Vec<(String, Option<&str>, &str)> = vec![
            (
                lines.join("\n").replace("\"i\":2", "\"i\":9"),
                Some("record 2 (line 3) was altered"),
                "an edited field",
            ),
            (
                [lines[0], lines[2]].join("\n"),
                Some("line 2 has sequence 2, expected 1"),
                "a deleted record",
            ),
            (
                reformatted.join("\n"),
                None,
                "a reformatted but unchanged log still verifies (slow path)",
            ),
            (
                reformatted.join("\n").replace("\"i\": 3", "\"i\": 4"),
                Some("record 3 (line 4) was altered"),
                "an edit in a reformatted log",
            ),
        ];
        for (content, expected, why) in rows {
            std::fs::write(&path, content).expect("written");
            let result = stream::<std::convert::Infallible, _>(&path, |_| Ok(()));
            match expected {
                None => {
                    result.unwrap_or_else(|e| panic!("{why}: {e}"));
                }
                Some(expected) => {
                    let err = result.expect_err(why).to_string();
                    assert!(err.contains(expected), "{why}: {err}");
                }
            }
        }
    }
}
