//! The observation log: every exchange of a run, appended to JSON Lines, hash-chained.
//!
//! Drive and judge are separate: running a scenario only appends [`Record`]s here,
//! and every check is a pure function over the records. Each record carries the
//! SHA-256 of its predecessor, so a log can be handed to someone else — or judged
//! again offline — and any edit, insertion or deletion is detected by
//! [`verify`]. Records go straight to a buffered file, not to memory, so a long run
//! or a load test keeps a flat footprint.
//!
//! Appending is cheap on purpose: the mocks append one record per request, so the
//! caller only takes a sequence number and a timestamp and queues the record; one
//! writer thread per log serialises, hashes, chains and writes, in sequence order
//! (see [`ObservationLog`]). Nothing is lost: the queue is bounded (an append waits
//! for room rather than dropping), [`ObservationLog::flush`] waits for the writer,
//! and dropping the last handle lets the writer finish and flush.

pub(crate) mod json;
pub mod stream;

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash a log's first record chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who produced an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The harness itself (run lifecycle, scenario markers, fault changes).
    Harness,
    /// The webhook sender, delivering events to the integration.
    Sender,
    /// The mock ATS, answering the integration.
    Ats,
    /// The mock verification vendor, answering the integration.
    Vendor,
    /// The notification sink (chat channels).
    Notify,
    /// The integration under test (its output lines).
    Integration,
}

/// One observed exchange or event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The run this record belongs to.
    pub run_id: String,
    /// Position in the log, from 0.
    pub seq: u64,
    /// Wall-clock time (RFC 3339, microseconds).
    pub at: String,
    /// Milliseconds since the log was opened (monotonic).
    pub elapsed_ms: f64,
    /// Who produced it.
    pub actor: Actor,
    /// What happened, dotted (`ats.request`, `webhook.attempt`, …).
    pub kind: String,
    /// The sandbox candidate concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The flow's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The event's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The HTTP status answered, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the exchange took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Kind-specific detail (method, path, body, webhook id, …).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    /// SHA-256 (hex) of the previous record's line, [`GENESIS`] for the first.
    pub prev_hash: String,
    /// SHA-256 (hex) of this record serialised with `hash` empty.
    pub hash: String,
}

/// What a caller fills in; the log adds run id, sequence, times and hashes.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The candidate concerned.
    pub candidate: Option<String>,
    /// The correlation id.
    pub correlation_id: Option<String>,
    /// The event id.
    pub event_id: Option<String>,
    /// The idempotency key.
    pub idempotency_key: Option<String>,
    /// The HTTP status.
    pub status: Option<u16>,
    /// The latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// Kind-specific detail.
    pub detail: Value,
}

impl Entry {
    /// An entry with only detail.
    pub fn detail(detail: Value) -> Self {
        Entry {
            detail,
            ..Entry::default()
        }
    }
}

/// One HTTP exchange a mock answered, for its `*.request` record: what
/// [`ObservationLog::append_exchange`] takes instead of an [`Entry`], so that the
/// request path of a mock under load builds no `serde_json::Value` tree. The record
/// written is byte for byte the one [`Exchange::entry`] would give.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// Where the candidate named in the path is in [`Exchange::path`] (the record's
    /// `candidate`; a span rather than a copy, one allocation less a request).
    pub candidate: Option<std::ops::Range<usize>>,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The status answered.
    pub status: u16,
    /// How long the exchange took, in milliseconds.
    pub latency_ms: f64,
    /// The request method.
    pub method: axum::http::Method,
    /// The request path (no query).
    pub path: String,
    /// The request's `If-Match`.
    pub if_match: Option<String>,
    /// Whether the request carried an `Authorization` header.
    pub authorized: bool,
}

impl Exchange {
    /// The candidate named in the path, if any.
    pub fn candidate(&self) -> Option<&str> {
        self.candidate.clone().and_then(|span| self.path.get(span))
    }

    /// The same record as an [`Entry`] (`detail`: method, path, if_match, authorized).
    pub fn entry(&self) -> Entry {
        Entry {
            candidate: self.candidate().map(str::to_owned),
            idempotency_key: self.idempotency_key.clone(),
            status: Some(self.status),
            latency_ms: Some(self.latency_ms),
            detail: serde_json::json!({
                "method": self.method.as_str(),
                "path": self.path,
                "if_match": self.if_match,
                "authorized": self.authorized,
            }),
            ..Entry::default()
        }
    }
}

/// [`Exchange`]'s detail as [`Exchange::entry`] serialises it: a `Value` map keeps
/// its keys sorted, so the fields are in sorted order.
#[derive(Serialize)]
struct ExchangeDetail<'a> {
    authorized: bool,
    if_match: Option<&'a str>,
    method: &'a str,
    path: &'a str,
}

/// A record's `detail`, borrowed from what the caller gave.
enum DetailRef<'a> {
    Value(&'a Value),
    Exchange(ExchangeDetail<'a>),
    Object(&'a json::Object),
}

impl Serialize for DetailRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            DetailRef::Value(value) => value.serialize(serializer),
            DetailRef::Exchange(detail) => detail.serialize(serializer),
            // Only the tests serialise a `RecordRef` this way: the writer copies the
            // object's bytes (`write_json`).
            DetailRef::Object(object) => serde_json::from_slice::<Value>(&object.to_json())
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer),
        }
    }
}

/// A [`Record`] borrowed from its parts, for the writer: the same fields in the same
/// order with the same omissions, so it serialises to the very bytes the finished
/// `Record` would (a test checks), without copying any of them into a `Record`.
#[derive(Serialize)]
struct RecordRef<'a> {
    run_id: &'a str,
    seq: u64,
    at: &'a str,
    elapsed_ms: f64,
    actor: Actor,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<DetailRef<'a>>,
    prev_hash: &'a str,
    hash: &'a str,
}

impl DetailRef<'_> {
    /// Appends the detail as its `Serialize` impl would write it.
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            DetailRef::Value(value) => json::write_serde(out, *value),
            DetailRef::Object(object) => object.write(out),
            DetailRef::Exchange(detail) => {
                out.extend_from_slice(if detail.authorized {
                    br#"{"authorized":true,"if_match":"#
                } else {
                    br#"{"authorized":false,"if_match":"#
                });
                json::write_opt_str(out, detail.if_match);
                out.extend_from_slice(br#","method":"#);
                // A method is an RFC 9110 token: no quote, backslash or control.
                json::write_plain(out, detail.method);
                out.extend_from_slice(br#","path":"#);
                json::write_str(out, detail.path);
                out.push(b'}');
            }
        }
    }
}

impl RecordRef<'_> {
    /// Appends the record as JSON: byte for byte what its `Serialize` impl (and so
    /// the finished [`Record`]'s) writes, without escaping the fixed keys on every
    /// record (see [`json`]).
    fn write_json(&self, out: &mut Vec<u8>) {
        /// `,"key":` for an optional field.
        fn key(out: &mut Vec<u8>, key: &[u8]) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
        }
        out.extend_from_slice(br#"{"run_id":"#);
        json::write_str(out, self.run_id);
        out.extend_from_slice(br#","seq":"#);
        json::write_serde(out, &self.seq);
        out.extend_from_slice(br#","at":"#);
        json::write_plain(out, self.at);
        out.extend_from_slice(br#","elapsed_ms":"#);
        json::write_serde(out, &self.elapsed_ms);
        out.extend_from_slice(br#","actor":"#);
        json::write_serde(out, &self.actor);
        out.extend_from_slice(br#","kind":"#);
        json::write_str(out, self.kind);
        let texts = [
            (&b"candidate"[..], self.candidate),
            (b"correlation_id", self.correlation_id),
            (b"event_id", self.event_id),
            (b"idempotency_key", self.idempotency_key),
        ];
        for (name, text) in texts {
            if let Some(text) = text {
                key(out, name);
                json::write_str(out, text);
            }
        }
        if let Some(status) = self.status {
            key(out, b"status");
            json::write_serde(out, &status);
        }
        if let Some(latency_ms) = self.latency_ms {
            key(out, b"latency_ms");
            json::write_serde(out, &latency_ms);
        }
        if let Some(detail) = &self.detail {
            key(out, b"detail");
            detail.write_json(out);
        }
        out.extend_from_slice(br#","prev_hash":"#);
        json::write_plain(out, self.prev_hash);
        out.extend_from_slice(br#","hash":"#);
        json::write_plain(out, self.hash);
        out.push(b'}');
    }
}

/// Computes a record's hash: SHA-256 over its JSON with `hash` set to "".
pub fn record_hash(record: &Record) -> String {
    let mut unhashed = record.clone();
    unhashed.hash.clear();
    // Serialising a struct of plain fields and a BTreeMap-backed Value cannot fail.
    let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Replaces `out` with `digest` as lowercase hex digits, without a per-digit push.
fn hex_into(digest: &[u8; 32], out: &mut String) {
    let mut digits = [0u8; 64];
    // 32 bytes always fill exactly 64 digits, and hex digits are ASCII.
    let _ = hex::encode_to_slice(digest, &mut digits);
    out.clear();
    out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
}

/// A record on its way to the writer: what the caller gave, stamped with its place
/// and time on the request path; the writer does the rest.
struct Pending {
    seq: u64,
    at: DateTime<Utc>,
    elapsed_ms: f64,
    actor: Actor,
    kind: Cow<'static, str>,
    body: Body,
}

/// What the caller gave for a record's fields.
enum Body {
    Entry(Entry),
    Exchange(Exchange),
    /// An entry whose `detail` (left null) the caller wrote as JSON.
    Object(Entry, json::Object),
}

/// What the appenders send to the writer thread.
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every message is a record; boxing it would cost an allocation per record for the rare flush's sake"
)]
enum Message {
    /// The next record, in sequence order.
    Record(Pending),
    /// Write everything sent before, flush the output, and answer with the bytes of
    /// whole records written so far (or the first failure).
    Flush(mpsc::SyncSender<io::Result<u64>>),
}

/// How many records may wait for the writer before an append waits for room: enough
/// to ride out a burst (14 ms at 150,000 records a second), small enough that a
/// flush never waits long. The queue is a ring of 256-byte slots that the appenders
/// and the writer walk round: at 2,048 it is 512 KB and stays in a core's cache; at
/// 8,192 (2 MB) every slot had gone cold before it came round again, which cost the
/// mock ATS about 0.3 µs of CPU a request under load (see the README's benchmarks).
const QUEUE: usize = 2048;

/// How long the writer lets records gather after writing what it found: it bounds
/// the writer's wake-ups under load (about 500 a second, whatever the request rate;
/// on two busy cores each wake-up preempts a worker) and what a flush waits for
/// beyond the records themselves. At 150,000 records a second, 300 gather: a
/// seventh of [`QUEUE`].
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// The appenders' side: the next sequence number and the queue, under one lock so
/// that the queue carries records in sequence order.
struct Appender {
    next_seq: u64,
    queue: Option<mpsc::SyncSender<Message>>,
}

/// What every clone of a log shares; dropping the last clone ends the writer thread
/// after it has written and flushed every record.
struct Shared {
    appender: Mutex<Appender>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        lock(&self.appender).queue = None;
        if let Some(writer) = lock(&self.writer).take() {
            // The writer never panics; if it did, its records are lost either way.
            let _ = writer.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The writer thread's state: the output and the end of the chain.
struct Writer {
    run_id: Arc<str>,
    out: Box<dyn Write + Send>,
    last_hash: String,
    failed: Option<io::ErrorKind>,
    /// Bytes of whole records handed to `out`, so a reader knows where they end.
    bytes: u64,
    /// The line being built, reused.
    line: Vec<u8>,
    /// The records' times, formatted.
    clock: Clock,
}

impl Writer {
    /// Writes records as they come until every handle is gone. After each drain the
    /// writer pauses for [`BATCH_WINDOW`]: under load the queue fills meanwhile and
    /// the appenders never have to wake it (a wake is a syscall and a context switch
    /// per record); when the log is quiet it blocks, and the next append wakes it.
    fn run(mut self, queue: mpsc::Receiver<Message>) {
        while let Ok(first) = queue.recv() {
            self.handle(first);
            while let Ok(next) = queue.try_recv() {
                self.handle(next);
            }
            std::thread::sleep(BATCH_WINDOW);
        }
        // Every handle is gone: whatever was buffered goes out now.
        let _ = self.out.flush();
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Record(pending) => self.write(pending),
            Message::Flush(reply) => {
                let flushed = match self.failed {
                    Some(kind) => Err(io::Error::new(
                        kind,
                        "an earlier append to the observation log failed",
                    )),
                    None => self.out.flush().map(|()| self.bytes),
                };
                let _ = reply.send(flushed);
            }
        }
    }

    /// Chains, hashes and writes one record. The record is serialised once, from
    /// borrowed parts: with `hash` empty (what the hash covers), then the hash is put
    /// between the quotes that end the line — `hash` is the last field — which gives
    /// exactly the bytes that serialising the finished [`Record`] would.
    fn write(&mut self, pending: Pending) {
        let Pending {
            seq,
            at,
            elapsed_ms,
            actor,
            kind,
            body,
        } = pending;
        let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
        let mut record = RecordRef {
            run_id: &self.run_id,
            seq,
            at: self.clock.format(at),
            elapsed_ms: round(elapsed_ms),
            actor,
            kind: &kind,
            candidate: None,
            correlation_id: None,
            event_id: None,
            idempotency_key: None,
            status: None,
            latency_ms: None,
            detail: None,
            prev_hash: &self.last_hash,
            hash: "",
        };
        match &body {
            Body::Entry(entry) | Body::Object(entry, _) => {
                record.candidate = entry.candidate.as_deref();
                record.correlation_id = entry.correlation_id.as_deref();
                record.event_id = entry.event_id.as_deref();
                record.idempotency_key = entry.idempotency_key.as_deref();
                record.status = entry.status;
                record.latency_ms = entry.latency_ms.map(round);
                record.detail = match &body {
                    Body::Object(_, object) => Some(DetailRef::Object(object)),
                    _ => (!entry.detail.is_null()).then_some(DetailRef::Value(&entry.detail)),
                };
            }
            Body::Exchange(exchange) => {
                record.candidate = exchange.candidate();
                record.idempotency_key = exchange.idempotency_key.as_deref();
                record.status = Some(exchange.status);
                record.latency_ms = Some(round(exchange.latency_ms));
                record.detail = Some(DetailRef::Exchange(ExchangeDetail {
                    authorized: exchange.authorized,
                    if_match: exchange.if_match.as_deref(),
                    method: exchange.method.as_str(),
                    path: &exchange.path,
                }));
            }
        }
        let line = &mut self.line;
        line.clear();
        record.write_json(line);
        let digest = Sha256::digest(&line[..]);
        hex_into(&digest.into(), &mut self.last_hash);
        debug_assert!(line.ends_with(br#""hash":""}"#), "hash is the last field");
        line.truncate(line.len().saturating_sub(2));
        line.extend_from_slice(self.last_hash.as_bytes());
        line.extend_from_slice(b"\"}\n");
        if self.failed.is_none() {
            match self.out.write_all(line) {
                Ok(()) => self.bytes += line.len() as u64,
                Err(err) => self.failed = Some(err.kind()),
            }
        }
    }
}

/// Formats the writer's record times as [`format_time`] does, keeping the date and
/// time of day while the second is unchanged: under load the writer stamps
/// thousands of records a second, and chrono's formatter costs more than the rest.
#[derive(Debug, Default)]
struct Clock {
    /// The second `text` starts with, when its first 19 bytes can be reused.
    second: Option<i64>,
    /// The last time formatted.
    text: String,
}

/// `YYYY-MM-DDTHH:MM:SS`, the part of a time [`Clock`] reuses within a second.
const SECOND_TEXT: usize = "2026-01-01T00:00:00".len();

impl Clock {
    fn format(&mut self, at: DateTime<Utc>) -> &str {
        let second = at.timestamp();
        let nanos = at.timestamp_subsec_nanos();
        // A leap second's nanoseconds run past 1e9; chrono writes it as second 60.
        if nanos >= 1_000_000_000 {
            self.second = None;
            self.text = format_time(at);
            return &self.text;
        }
        if self.second != Some(second) {
            self.text = format_time(at);
            // Only the common layout (a four-digit year) is reused.
            let reusable = self.text.len() == SECOND_TEXT + ".000000Z".len()
                && self.text.as_bytes()[SECOND_TEXT] == b'.';
            self.second = reusable.then_some(second);
            return &self.text;
        }
        self.text.truncate(SECOND_TEXT);
        let micros = nanos / 1000;
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.text.push('.');
        // Six ASCII digits.
        self.text
            .push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
        self.text.push('Z');
        &self.text
    }
}

/// An append-only, hash-chained log shared by every actor of a run.
///
/// An append only stamps the record with its sequence number and times and queues
/// it; one writer thread per log chains, hashes and writes the records in sequence
/// order, so the request paths of the mocks never wait on SHA-256 or the disk.
/// [`ObservationLog::flush`] is the barrier: once it returns, every record appended
/// before it is in the output.
#[derive(Clone)]
pub struct ObservationLog {
    run_id: Arc<str>,
    started: Instant,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ObservationLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservationLog")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be created or written.
    #[error("cannot write the observation log {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The log file could not be read.
    #[error("cannot read the observation log {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl ObservationLog {
    /// A log written to `path` (created or truncated).
    pub fn create(path: &Path, run_id: &str) -> Result<Self, LogError> {
        let file = File::create(path).map_err(|source| LogError::Write {
            path: path.to_owned(),
            source,
        })?;
        Self::start(Box::new(BufWriter::with_capacity(1 << 16, file)), run_id).map_err(|source| {
            LogError::Write {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// A log written to any writer (tests use `io::sink()` or a shared buffer).
    ///
    /// The bytes reach `out` from the writer thread: read them after
    /// [`ObservationLog::flush`].
    ///
    /// # Panics
    ///
    /// If the operating system cannot start the writer thread (as `std::thread::spawn`).
    pub fn to_writer(out: Box<dyn Write + Send>, run_id: &str) -> Self {
        match Self::start(out, run_id) {
            Ok(log) => log,
            Err(err) => panic!("cannot start the observation log's writer thread: {err}"),
        }
    }

    fn start(out: Box<dyn Write + Send>, run_id: &str) -> io::Result<Self> {
        let run_id: Arc<str> = Arc::from(run_id);
        let (queue, received) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            run_id: Arc::clone(&run_id),
            out,
            last_hash: GENESIS.to_owned(),
            failed: None,
            bytes: 0,
            line: Vec::with_capacity(1024),
            clock: Clock::default(),
        };
        let handle = std::thread::Builder::new()
            .name("observation-log".to_owned())
            .spawn(move || writer.run(received))?;
        Ok(ObservationLog {
            run_id,
            started: Instant::now(),
            shared: Arc::new(Shared {
                appender: Mutex::new(Appender {
                    next_seq: 0,
                    queue: Some(queue),
                }),
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Appends one record and returns its sequence number.
    ///
    /// The record is written by the log's writer thread, in sequence order. A write
    /// failure is remembered and reported by [`ObservationLog::flush`]; the actors
    /// keep serving, since a half-written log is judged as broken anyway.
    pub fn append(&self, actor: Actor, kind: &str, entry: Entry) -> u64 {
        self.enqueue(actor, Cow::Owned(kind.to_owned()), Body::Entry(entry))
    }

    /// Appends one mock exchange's record ([`Exchange::entry`]'s, byte for byte) and
    /// returns its sequence number: the mocks' request path, which this keeps free of
    /// a `detail` tree and of copying the kind.
    pub fn append_exchange(&self, actor: Actor, kind: &'static str, exchange: Exchange) -> u64 {
        self.enqueue(actor, Cow::Borrowed(kind), Body::Exchange(exchange))
    }

    /// Appends one record whose `detail` the caller wrote field by field (the
    /// record [`ObservationLog::append`] writes for the same fields as a `Value`,
    /// byte for byte) and returns its sequence number: the sender's per-event path,
    /// which this keeps free of a `detail` tree and of copying the kind.
    /// `entry.detail` is not written.
    pub(crate) fn append_object(
        &self,
        actor: Actor,
        kind: &'static str,
        entry: Entry,
        detail: json::Object,
    ) -> u64 {
        self.enqueue(actor, Cow::Borrowed(kind), Body::Object(entry, detail))
    }

    fn enqueue(&self, actor: Actor, kind: Cow<'static, str>, body: Body) -> u64 {
        let at = Utc::now();
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut appender = lock(&self.shared.appender);
        let seq = appender.next_seq;
        appender.next_seq += 1;
        let pending = Pending {
            seq,
            at,
            elapsed_ms,
            actor,
            kind,
            body,
        };
        // Sent under the lock, so the queue holds records in sequence order. The
        // writer outlives every handle, so the queue is open while `self` exists.
        if let Some(queue) = &appender.queue {
            let _ = queue.send(Message::Record(pending));
        }
        seq
    }

    /// How many records were appended.
    pub fn len(&self) -> u64 {
        lock(&self.shared.appender).next_seq
    }

    /// Whether nothing was appended yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every record appended before the call is written, flushes the
    /// output and returns how many bytes of whole records it holds: a reader of a log
    /// that is still being appended to reads that many and never a half-written line.
    pub fn flush_len(&self) -> io::Result<u64> {
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let appender = lock(&self.shared.appender);
            let queue = appender
                .queue
                .as_ref()
                .ok_or_else(|| io::Error::other("the observation log is closed"))?;
            queue
                .send(Message::Flush(reply))
                .map_err(|_| io::Error::other("the observation log's writer stopped"))?;
        }
        answer
            .recv()
            .map_err(|_| io::Error::other("the observation log's writer stopped"))?
    }

    /// Waits until every record appended before the call is written and flushed;
    /// reports any earlier write failure.
    pub fn flush(&self) -> io::Result<()> {
        self.flush_len().map(|_| ())
    }
}

/// RFC 3339 with microseconds and `Z`, as every record writes times.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads every record of a log file, in order.
pub fn read(path: &Path) -> Result<Vec<Record>, ReadError> {
    let mut reader = BufReader::new(open_log(path)?);
    let mut records = Vec::new();
    let mut line = Vec::new();
    let mut number = 0;
    while next_line(path, &mut reader, &mut line, &mut number)? > 0 {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let record = serde_json::from_slice(&line).map_err(|source| ReadError::Parse {
            path: path.to_owned(),
            line: number,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Opens a log for reading: a regular file (a FIFO or a device would never end).
pub(crate) fn open_log(path: &Path) -> Result<File, ReadError> {
    crate::limits::open_regular(path, crate::limits::LOG_LINE_BYTES).map_err(|source| {
        ReadError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

/// Reads the next line of a log into `line`, at most [`crate::limits::LOG_LINE_BYTES`]
/// (one line of /dev/zero would otherwise grow without end), counting it in
/// `number`; returns its length, 0 at the end.
pub(crate) fn next_line(
    path: &Path,
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    number: &mut usize,
) -> Result<usize, ReadError> {
    let limit = crate::limits::LOG_LINE_BYTES;
    let len = crate::limits::read_line_bounded(reader, line, limit).map_err(|source| {
        if source.kind() == io::ErrorKind::FileTooLarge {
            ReadError::LineTooLong {
                path: path.to_owned(),
                line: *number + 1,
                limit,
            }
        } else {
            ReadError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    if len > 0 {
        *number += 1;
    }
    Ok(len)
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A line is longer than any record.
    #[error("{}:{line} is longer than {limit}", path.display())]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The limit.
        limit: crate::limits::Limit,
    },
    /// A line is not a record.
    #[error("{}:{line} is not an observation record", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

/// The first place a log's chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// A record's content does not hash to its `hash` (it was edited).
    #[error(
        "record {seq} (line {line}) was altered: its content hashes to {actual}, not to the {recorded} it carries"
    )]
    Altered {
        /// 1-based line.
        line: usize,
        /// The record's sequence number.
        seq: u64,
        /// The hash it carries.
        recorded: String,
        /// The hash of its content.
        actual: String,
    },
    /// A record does not point at its predecessor (one was removed, inserted or reordered).
    #[error(
        "record {seq} (line {line}) does not follow the record before it: it chains to {prev}, but the previous hash is {expected}"
    )]
    Unlinked {
        /// 1-based line.
        line: usize,
        /// The record's sequence number.
        seq: u64,
        /// What it chains to.
        prev: String,
        /// The previous record's hash.
        expected: String,
    },
    /// Sequence numbers skip or repeat.
    #[error("record at line {line} has sequence {seq}, expected {expected}")]
    Sequence {
        /// 1-based line.
        line: usize,
        /// Its sequence number.
        seq: u64,
        /// The expected number.
        expected: u64,
    },
}

/// Checks a log's chain: every hash, every link, every sequence number.
pub fn verify(records: &[Record]) -> Result<(), ChainBreak> {
    let mut chain = Chain::default();
    for (i, record) in records.iter().enumerate() {
        chain.push(i + 1, record)?;
    }
    Ok(())
}

/// A chain checked one record at a time: it holds only the last hash, so a log of
/// millions of records is verified in constant memory.
#[derive(Debug, Clone)]
pub struct Chain {
    expected_prev: String,
    next_seq: u64,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            expected_prev: GENESIS.to_owned(),
            next_seq: 0,
        }
    }
}

impl Chain {
    /// Checks the next record, found at 1-based `line`.
    pub fn push(&mut self, line: usize, record: &Record) -> Result<(), ChainBreak> {
        if record.seq != self.next_seq {
            return Err(ChainBreak::Sequence {
                line,
                seq: record.seq,
                expected: self.next_seq,
            });
        }
        let actual = record_hash(record);
        if actual != record.hash {
            return Err(ChainBreak::Altered {
                line,
                seq: record.seq,
                recorded: record.hash.clone(),
                actual,
            });
        }
        if record.prev_hash != self.expected_prev {
            return Err(ChainBreak::Unlinked {
                line,
                seq: record.seq,
                prev: record.prev_hash.clone(),
                expected: self.expected_prev.clone(),
            });
        }
        self.expected_prev.clone_from(&record.hash);
        self.next_seq += 1;
        Ok(())
    }

    /// How many records were checked.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// Whether no record was checked.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }
}

/// What [`verify_file`] proved: the records' count and the run they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// How many records the chain holds.
    pub records: u64,
    /// The first record's run id, if there is a record.
    pub run_id: Option<String>,
}

/// Why [`verify_file`] failed: the file is unreadable, or the chain is broken.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file cannot be read or holds a line that is not a record.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The chain breaks.
    #[error(transparent)]
    Broken(#[from] ChainBreak),
}

/// Verifies a log file's chain reading one line at a time (file line numbers, blank
/// lines skipped), so a load test's gigabytes of log need no more memory than a line.
pub fn verify_file(path: &Path) -> Result<Verified, VerifyError> {
    verify_reader(path, BufReader::new(open_log(path)?))
}

/// [`verify_file`] over any reader; `path` names the log in errors.
pub fn verify_reader(path: &Path, reader: impl BufRead) -> Result<Verified, VerifyError> {
    let mut chain = Chain::default();
    let mut run_id = None;
    let mut reader = reader;
    let mut line = Vec::new();
    let mut number = 0;
    while next_line(path, &mut reader, &mut line, &mut number)? > 0 {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_slice(&line).map_err(|source| ReadError::Parse {
            path: path.to_owned(),
            line: number,
            source,
        })?;
        chain.push(number, &record)?;
        if run_id.is_none() {
            run_id = Some(record.run_id);
        }
    }
    Ok(Verified {
        records: chain.len(),
        run_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sample(n: usize) -> Vec<Record> {
        let buffer = Shared::default();
        let log = ObservationLog::to_writer(Box::new(buffer.clone()), "run-1");
        for i in 0..n {
            let entry = Entry {
                candidate: Some(format!("CAND_{i}")),
                status: Some(201),
                ..Entry::detail(json!({"i": i}))
            };
            log.append(Actor::Ats, "ats.request", entry);
        }
        log.flush().expect("in-memory flush");
        let bytes = buffer.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a record per line"))
            .collect()
    }

    #[test]
    fn an_untouched_log_verifies() {
        let records = sample(5);
        assert_eq!(records.len(), 5);
        assert_eq!(records[0].prev_hash, GENESIS);
        verify(&records).expect("intact chain");
    }

    #[test]
    fn each_line_is_the_record_serialised_whole() {
        // The writer splices the hash into a line serialised once; that must be the
        // very bytes a plain serialisation of the finished record gives.
        let buffer = Shared::default();
        let log = ObservationLog::to_writer(Box::new(buffer.clone()), "run-s");
        log.append(
            Actor::Harness,
            "run.start",
            Entry::detail(json!({"a": [1, "\"x\""]})),
        );
        log.append(Actor::Ats, "ats.request", Entry::default());
        log.flush().expect("in-memory flush");
        let text =
            String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("utf-8");
        for line in text.lines() {
            let record: Record = serde_json::from_str(line).expect("a record");
            assert_eq!(serde_json::to_string(&record).expect("serialises"), line);
            assert_eq!(record_hash(&record), record.hash);
        }
    }

    #[test]
    fn an_exchange_is_written_as_its_entry_would_be() {
        // (exchange, why)
        let base = Exchange {
            candidate: Some(15..21),
            idempotency_key: None,
            status: 200,
            latency_ms: 0.123_456_7,
            method: axum::http::Method::GET,
            path: "/v1/candidates/CAND_1".into(),
            if_match: None,
            authorized: true,
        };
        let rows = [
            (base.clone(), "a plain read"),
            (
                Exchange {
                    idempotency_key: Some("key \"1\" ü".into()),
                    status: 422,
                    method: axum::http::Method::POST,
                    path: "/v1/exceptions".into(),
                    candidate: Some(4..99),
                    if_match: Some("W/\"3\"".into()),
                    authorized: false,
                    ..base.clone()
                },
                "every optional field, text that needs escaping, a span outside the path",
            ),
            (
                Exchange {
                    method: axum::http::Method::from_bytes(b"PURGE").expect("a method"),
                    latency_ms: 61_234.567_89,
                    ..base.clone()
                },
                "an extension method, a long latency",
            ),
        ];
        let buffer = Shared::default();
        let log = ObservationLog::to_writer(Box::new(buffer.clone()), "run-x");
        for (exchange, _) in &rows {
            log.append_exchange(Actor::Ats, "ats.request", exchange.clone());
            log.append(Actor::Ats, "ats.request", exchange.entry());
        }
        log.flush().expect("in-memory flush");
        let text =
            String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("utf-8");
        let records: Vec<Record> = text
            .lines()
            .map(|line| {
                let record: Record = serde_json::from_str(line).expect("a record");
                assert_eq!(serde_json::to_string(&record).expect("serialises"), line);
                record
            })
            .collect();
        verify(&records).expect("one chain");
        // Apart from what the log stamps, each pair is the same record; with the
        // line check above, the same bytes.
        let unstamped = |r: &Record| Record {
            seq: 0,
            at: String::new(),
            elapsed_ms: 0.0,
            prev_hash: String::new(),
            hash: String::new(),
            ..r.clone()
        };
        for (pair, (_, why)) in records.chunks(2).zip(&rows) {
            assert_eq!(unstamped(&pair[0]), unstamped(&pair[1]), "{why}");
        }
    }

    #[test]
    fn an_object_detail_is_written_as_the_same_value_would_be() {
        let buffer = Shared::default();
        let log = ObservationLog::to_writer(Box::new(buffer.clone()), "run-o");
        let entry = Entry {
            candidate: Some("CAND_1".into()),
            status: Some(200),
            latency_ms: Some(1.234_567),
            ..Entry::default()
        };
        let mut object = json::Object::with_capacity(64);
        object.bool("acked", true).strs("ids", ["a", "\"b\""]);
        log.append_object(Actor::Sender, "webhook.delivery", entry.clone(), object);
        let detail = json!({"ids": ["a", "\"b\""], "acked": true});
        log.append(Actor::Sender, "webhook.delivery", Entry { detail, ..entry });
        log.flush().expect("in-memory flush");
        let text =
            String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("utf-8");
        let records: Vec<Record> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a record"))
            .collect();
        verify(&records).expect("one chain");
        let lines: Vec<&str> = text.lines().collect();
        // Up to what the log stamps (seq, times, hashes), the same bytes.
        let tail = |line: &str, record: &Record| {
            line.split_once(r#","kind":"#)
                .map(|(_, rest)| {
                    rest.replace(&record.prev_hash, "")
                        .replace(&record.hash, "")
                })
                .expect("a kind")
        };
        assert_eq!(tail(lines[0], &records[0]), tail(lines[1], &records[1]));
    }

    proptest::proptest! {
        #[test]
        fn a_record_is_written_as_serde_json_writes_it(
            texts in proptest::collection::vec(proptest::option::of(".{0,12}"), 6),
            numbers in (0u64..u64::MAX, -1e9f64..1e9, proptest::option::of(0u16..1000), proptest::option::of(0f64..1e6)),
            detail in 0usize..5,
            authorized in proptest::bool::ANY,
        ) {
            let text = |i: usize| texts[i].as_deref();
            let value = json!({"z": [1, "\"q\"", null], "a": {"b": 1.5}});
            let mut object = json::Object::with_capacity(64);
            object.str("a", text(1).unwrap_or("x")).u64("n", numbers.0);
            let detail = match detail {
                0 => None,
                1 => Some(DetailRef::Value(&value)),
                2 => Some(DetailRef::Object(&object)),
                _ => Some(DetailRef::Exchange(ExchangeDetail {
                    authorized,
                    if_match: text(4),
                    method: "GET",
                    path: text(5).unwrap_or("/v1/x"),
                })),
            };
            let record = RecordRef {
                run_id: text(0).unwrap_or("run \"1\""),
                seq: numbers.0,
                at: "2026-12-05T13:02:20.123456Z",
                elapsed_ms: numbers.1,
                actor: Actor::Vendor,
                kind: "vendor.request",
                candidate: text(0),
                correlation_id: text(1),
                event_id: text(2),
                idempotency_key: text(3),
                status: numbers.2,
                latency_ms: numbers.3,
                detail,
                prev_hash: GENESIS,
                hash: "",
            };
            let mut out = Vec::new();
            record.write_json(&mut out);
            proptest::prop_assert_eq!(
                String::from_utf8(out).expect("utf-8"),
                serde_json::to_string(&record).expect("serialises")
            );
        }
    }

    #[test]
    fn the_clock_writes_times_as_format_time_does() {
        use chrono::{NaiveDate, TimeZone};
        let at = |y, mo, d, h, mi, s, nanos| {
            Utc.from_utc_datetime(
                &NaiveDate::from_ymd_opt(y, mo, d)
                    .and_then(|date| date.and_hms_nano_opt(h, mi, s, nanos))
                    .expect("a valid time"),
            )
        };
        // (time, why), formatted in this order through one clock.
        let rows = [
            (at(2026, 12, 5, 13, 2, 20, 123_456_789), "the first time"),
            (at(2026, 12, 5, 13, 2, 20, 123_457_000), "the same second"),
            (at(2026, 12, 5, 13, 2, 20, 999), "below a microsecond"),
            (at(2026, 12, 5, 13, 2, 20, 999_999_999), "the second's end"),
            (at(2026, 12, 5, 13, 2, 21, 0), "the next second"),
            (at(2026, 12, 5, 13, 2, 20, 5_000), "back a second"),
            (at(2026, 12, 31, 23, 59, 59, 1_500_000_000), "a leap second"),
            (at(2026, 12, 31, 23, 59, 59, 7_000), "after a leap second"),
            (at(12026, 1, 1, 0, 0, 0, 1_000), "a five-digit year"),
            (at(12026, 1, 1, 0, 0, 0, 2_000), "the same second of it"),
            (
                at(1969, 12, 31, 23, 59, 59, 999_999_000),
                "before the epoch",
            ),
            (at(1969, 12, 31, 23, 59, 59, 1_000), "the same second"),
        ];
        let mut clock = Clock::default();
        for (time, why) in rows {
            assert_eq!(clock.format(time), format_time(time), "{why}");
        }
    }

    #[test]
    fn concurrent_appends_are_all_written_in_sequence_order() {
        const THREADS: usize = 4;
        const EACH: usize = 500;
        let buffer = Shared::default();
        let log = ObservationLog::to_writer(Box::new(buffer.clone()), "run-c");
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let log = log.clone();
                scope.spawn(move || {
                    for i in 0..EACH {
                        log.append(
                            Actor::Ats,
                            "ats.request",
                            Entry::detail(json!({"t": t, "i": i})),
                        );
                    }
                });
            }
        });
        let len = log.flush_len().expect("flushed");
        let bytes = buffer.0.lock().expect("not poisoned").clone();
        assert_eq!(len, bytes.len() as u64);
        let records: Vec<Record> = String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a record per line"))
            .collect();
        assert_eq!(records.len(), THREADS * EACH);
        assert_eq!(log.len(), (THREADS * EACH) as u64);
        verify(&records).expect("one unbroken chain, seq 0.. in file order");
        // Each thread's own records keep their order.
        for t in 0..THREADS {
            let mine: Vec<u64> = records
                .iter()
                .filter(|r| r.detail["t"] == t)
                .map(|r| r.detail["i"].as_u64().expect("i"))
                .collect();
            assert_eq!(mine, (0..EACH as u64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn dropping_the_last_handle_writes_every_record() {
        let buffer = Shared::default();
        let log = ObservationLog::to_writer(Box::new(buffer.clone()), "run-d");
        let other = log.clone();
        for i in 0..100 {
            other.append(Actor::Ats, "ats.request", Entry::detail(json!({"i": i})));
        }
        drop(other);
        drop(log);
        let text =
            String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 100);
    }

    #[test]
    fn a_failed_write_is_reported_by_flush() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = ObservationLog::to_writer(Box::new(Broken), "run-b");
        assert_eq!(log.append(Actor::Ats, "ats.request", Entry::default()), 0);
        assert_eq!(log.append(Actor::Ats, "ats.request", Entry::default()), 1);
        let err = log.flush().expect_err("the write failed");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn edits_deletions_and_reorderings_are_named() {
        // (tamper, expected break, why)
        type Tamper = fn(&mut Vec<Record>);
        let rows: [(Tamper, &str, &str); 4] = [
            (
                |r| r[2].status = Some(500),
                "record 2 (line 3) was altered",
                "a field edited in place",
            ),
            (
                |r| {
                    r.remove(2);
                },
                "line 3 has sequence 3, expected 2",
                "a record deleted",
            ),
            (
                |r| r.swap(1, 2),
                "line 2 has sequence 2, expected 1",
                "two records swapped",
            ),
            (
                |r| {
                    r.remove(2);
                    for (i, rec) in r.iter_mut().enumerate() {
                        rec.seq = i as u64;
                        rec.hash = record_hash(rec);
                    }
                },
                "record 2 (line 3) does not follow",
                "a deletion with renumbered, rehashed records",
            ),
        ];
        for (tamper, expected, why) in rows {
            let mut records = sample(5);
            tamper(&mut records);
            let err = verify(&records).expect_err(why).to_string();
            assert!(err.contains(expected), "{why}: {err}");
        }
    }

    #[test]
    fn files_are_verified_line_by_line_with_their_line_numbers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.jsonl");
        let log = ObservationLog::create(&path, "run-f").expect("created");
        for i in 0..4 {
            log.append(Actor::Ats, "ats.request", Entry::detail(json!({"i": i})));
        }
        let len = log.flush_len().expect("flushed");
        let text = std::fs::read_to_string(&path).expect("written");
        assert_eq!(
            len,
            text.len() as u64,
            "every byte written is a whole record"
        );
        let verified = verify_file(&path).expect("intact");
        assert_eq!(
            verified,
            Verified {
                records: 4,
                run_id: Some("run-f".into())
            }
        );
        // A blank line does not shift the numbers a break is reported at.
        let lines: Vec<&str> = text.lines().collect();
        let edited = format!(
            "{}\n\n{}\n{}\n",
            lines[0],
            lines[1],
            lines[2].replace("\"i\":2", "\"i\":7")
        );
        std::fs::write(&path, edited).expect("rewritten");
        let err = verify_file(&path).expect_err("edited").to_string();
        assert!(err.contains("record 2 (line 4) was altered"), "{err}");
        std::fs::write(&path, "not json\n").expect("rewritten");
        let err = verify_file(&path).expect_err("not a record");
        assert!(
            matches!(err, VerifyError::Read(ReadError::Parse { line: 1, .. })),
            "{err}"
        );
    }
}
