//! The relay's worker: writes queued events to the ATS, one event per candidate at a
//! time (so per-candidate order holds), several candidates at once.
//!
//! Every ATS call is admitted by the kill switch and its answer reported to it
//! ([`super::switch`]). While the switch is open a task keeps its event — failed or
//! not yet tried — and waits for a probe slot, so nothing is dropped and nothing
//! behind it overtakes it; only the task holding the probe slot calls the ATS. A
//! mapping error (422) is not retried: it becomes an item in the ATS's exception
//! queue, and the event is done.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use std::borrow::Cow;

use axum::body::Bytes;
use axum::http::header::{HeaderName, IF_MATCH, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use tokio::task::JoinSet;

use super::ats::{Answer, Ats, CallFailed};
use super::breaker::Call;
use super::store::{Job, Outcome};
use super::switch::Admission;
use super::{IDLE_POLL, Shared};
use crate::contract::assertion::parse_rfc3339;
use crate::manifest::Envelope;
use crate::manifest::model::RolloutMode;

/// Jobs attempted at once (each with one ATS call in flight at most). The protocol's
/// kill-switch budgets count on it: at most 8 calls are in flight when an outage
/// starts or the switch trips (docs/integration-protocol.md §6). A job done at the
/// ATS leaves this count before its outcome is committed.
const IN_FLIGHT: usize = 8;
/// Candidates' heads read from the queue at once. The worker reads again only when
/// it has started every head it read, so one queue walk serves several events
/// instead of one: a head waiting here cannot be overtaken, since its candidate's
/// later events are only read after it is started and then finished.
const READ_AHEAD: usize = 4 * IN_FLIGHT;
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between two attempts of one event.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Failed attempts after which the `drop_undeliverable` fault forgets an event: the
/// first, so every event an outage touches before the trip is lost, whatever the timing.
const GIVE_UP_AFTER: u32 = 1;
/// Characters of the ATS's refusal kept in an exception item's reason.
const REASON_CHARS: usize = 400;

/// Events parsed by the webhook handler, by store key, until the worker takes them:
/// the worker then need not parse the queued JSON again. Bounded: past
/// [`PARSED_HELD`] (a queue building up in an outage) the worker parses as it does
/// for a queue left by an earlier run.
#[derive(Debug, Default)]
pub(super) struct Parsed(std::sync::Mutex<std::collections::HashMap<String, Arc<Value>>>);

/// A lock on what the worker holds beside the store; a panic elsewhere leaves the maps
/// whole (every change to them is one insert or remove), so a poisoned lock is used.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Parsed events held at most for the worker.
const PARSED_HELD: usize = 512;

impl Parsed {
    /// Holds `event` for the job `key` will queue; false when full or when another
    /// delivery of the key holds its own (which then stays the one the job uses).
    pub(super) fn keep(&self, key: &str, event: &Arc<Value>) -> bool {
        let mut held = lock(&self.0);
        if held.len() >= PARSED_HELD || held.contains_key(key) {
            return false;
        }
        held.insert(key.to_owned(), Arc::clone(event));
        true
    }

    /// Drops what [`Parsed::keep`] held for `key` (the delivery queued nothing).
    pub(super) fn forget(&self, key: &str) {
        lock(&self.0).remove(key);
    }

    /// The job's event: as the handler parsed it, or parsed from the queue.
    fn take(&self, job: &Job) -> Arc<Value> {
        lock(&self.0)
            .remove(&job.idempotency_key)
            .unwrap_or_else(|| Arc::new(serde_json::from_str(&job.body).unwrap_or(Value::Null)))
    }
}

/// Why an attempt did not finish the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The ATS failed (5xx, timeout, connection): back off.
    Failed,
    /// 429: wait as asked, or the usual backoff.
    Throttled(Option<Duration>),
    /// 409: someone wrote in between; read again and decide again, at once.
    Conflict,
    /// The switch tripped between the read and the write: wait to be admitted again.
    Paused,
}

impl Retry {
    fn as_str(self) -> &'static str {
        match self {
            Retry::Failed => "ats_failed",
            Retry::Throttled(_) => "ats_throttled",
            Retry::Conflict => "conflict",
            Retry::Paused => "paused",
        }
    }
}

/// An attempt that finished the job.
struct Done {
    outcome: Outcome,
    /// What the `log_pii` fault echoes.
    pii: Option<Value>,
    /// The ATS refused the event itself with 422 on this attempt.
    mapping_error: bool,
}

impl Done {
    fn with(outcome: Outcome, pii: Option<Value>) -> Self {
        Done {
            outcome,
            pii,
            mapping_error: false,
        }
    }
}

/// What an ATS call is, for the kill switch's accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    /// Reading the candidate.
    Read,
    /// Writing the event: its 422 is a mapping error.
    Write,
    /// Filing an exception item.
    Exception,
}

pub(super) async fn run(shared: Arc<Shared>) {
    let client = Ats::new(&shared.config.ats_url, &shared.config.ats_token);
    let mut busy: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<Processed> = JoinSet::new();
    // Jobs whose outcome is being committed: their candidates stay busy (the queue
    // still shows the job until the commit) but hold no place among the attempts, so
    // the ATS calls go on while the store commits.
    let mut closing: JoinSet<String> = JoinSet::new();
    let mut ready: VecDeque<Job> = VecDeque::new();
    loop {
        if tasks.len() < IN_FLIGHT && ready.is_empty() {
            // Every head read before is started, so `busy` names their candidates.
            let excluded: Vec<String> = busy.iter().cloned().collect();
            // Read in place: a walk of the queue's first heads on the store's reading
            // connection costs less than handing it to the blocking pool and back (two
            // thread wake-ups), and no commit holds that connection.
            ready = shared
                .store
                .next_jobs(&excluded, READ_AHEAD)
                .unwrap_or_default()
                .into();
        }
        while tasks.len() < IN_FLIGHT
            && let Some(job) = ready.pop_front()
        {
            busy.insert(job.candidate.clone());
            tasks.spawn(process(Arc::clone(&shared), client.clone(), job));
        }
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let finished = std::iter::once(done).chain(std::iter::from_fn(|| tasks.try_join_next()));
                for processed in finished.flatten() {
                    match processed {
                        Processed::Free(candidate) => {
                            busy.remove(&candidate);
                        }
                        Processed::Closing(job) => {
                            closing.spawn(close(Arc::clone(&shared), job));
                        }
                    }
                }
            }
            Some(closed) = closing.join_next(), if !closing.is_empty() => {
                // Every outcome committed by now frees its candidate before the next
                // queue read.
                let closed = std::iter::once(closed).chain(std::iter::from_fn(|| closing.try_join_next()));
                for candidate in closed.flatten() {
                    busy.remove(&candidate);
                }
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// How a job's task ended.
enum Processed {
    /// Done with the job; its candidate is free.
    Free(String),
    /// The job is done at the ATS; its outcome is still to be committed.
    Closing(Box<Closing>),
}

/// A job done at the ATS, to be committed and logged.
struct Closing {
    job: Job,
    event: Arc<Value>,
    done: Done,
}

/// Commits a done job's outcome, then logs it; returns its candidate.
async fn close(shared: Arc<Shared>, closing: Box<Closing>) -> String {
    let Closing { job, event, done } = *closing;
    let processed_at = crate::observe::format_time(chrono::Utc::now());
    let _ = shared
        .store
        .finish(job.seq, done.outcome, &processed_at)
        .await;
    log_outcome(&shared, &event, &job, &processed_at, done.outcome, done.pii);
    shared
        .switch
        .job_finished(|| shared.store.queued().unwrap_or(0));
    job.candidate
}

async fn process(shared: Arc<Shared>, client: Ats, job: Job) -> Processed {
    let mut delay = BASE_BACKOFF;
    let mut failed = 0u32;
    let mut rejection = job.rejection.clone();
    let event = shared.parsed.take(&job);
    loop {
        let admission = shared.switch.admit().await;
        let result = attempt(&shared, &client, &job, &event, admission, &mut rejection).await;
        if admission == Admission::Probe {
            // A probe is good when the ATS took it: not a failure, not throttled, not
            // another mapping error.
            let ok = match &result {
                Ok(done) => !done.mapping_error,
                Err(retry) => *retry == Retry::Conflict,
            };
            let result_name = match &result {
                Ok(done) => done.outcome.as_str(),
                Err(retry) => retry.as_str(),
            };
            let probe = serde_json::json!({
                "ats_candidate_id": job.candidate,
                "event_id": shared.config.manifest.envelope.event_id_of(&event),
                "idempotency_key": job.idempotency_key,
                "result": result_name,
            });
            shared
                .switch
                .probe_finished(ok, probe, || shared.store.queued().unwrap_or(0));
        }
        let retry = match result {
            Ok(done) => return Processed::Closing(Box::new(Closing { job, event, done })),
            Err(retry) => retry,
        };
        if retry == Retry::Failed {
            failed += 1;
            if shared.config.has_fault("drop_undeliverable") && failed >= GIVE_UP_AFTER {
                // Deliberate defect: the event is forgotten, never replayed.
                let processed_at = crate::observe::format_time(chrono::Utc::now());
                let _ = shared
                    .store
                    .finish(job.seq, Outcome::GaveUp, &processed_at)
                    .await;
                log_outcome(&shared, &event, &job, &processed_at, Outcome::GaveUp, None);
                return Processed::Free(job.candidate);
            }
        }
        // An attempt that did not finish the job is counted now; the one that does is
        // counted by `finish`, in the same commit as the outcome.
        let _ = shared.store.attempted(job.seq);
        match retry {
            Retry::Conflict | Retry::Paused => {}
            Retry::Throttled(wait) => {
                tokio::time::sleep(wait.unwrap_or(delay).min(MAX_BACKOFF)).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            Retry::Failed => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sends one ATS call and reports its answer to the kill switch.
async fn call(
    shared: &Shared,
    kind: CallKind,
    sent: impl Future<Output = Result<Answer, CallFailed>>,
) -> Result<Answer, Retry> {
    match sent.await {
        Ok(answer) => {
            shared.switch.record(classify(kind, answer.status));
            Ok(answer)
        }
        Err(CallFailed) => {
            // A timeout, a refused or reset connection: the ATS failed.
            shared.switch.record(Call::Failed);
            Err(Retry::Failed)
        }
    }
}

/// How the kill switch counts an answer: 5xx fail, an event's 422 is a mapping
/// error, anything else is the ATS working.
fn classify(kind: CallKind, status: StatusCode) -> Call {
    if status.is_server_error() {
        Call::Failed
    } else if kind == CallKind::Write && status == StatusCode::UNPROCESSABLE_ENTITY {
        Call::MappingError
    } else {
        Call::Answered
    }
}

fn log_outcome(
    shared: &Shared,
    event: &Value,
    job: &Job,
    processed_at: &str,
    outcome: Outcome,
    pii: Option<Value>,
) {
    if shared.config.has_fault("no_log_fields") {
        shared.log.note(
            "processed",
            serde_json::json!({"outcome": outcome.as_str()}),
        );
        return;
    }
    if let Some(pii) = pii {
        // Deliberate defect `log_pii`: the relay echoes what it read from the ATS.
        shared.log.note(
            "candidate_record",
            serde_json::json!({"event_id": event.get("event_id"), "candidate_record": pii}),
        );
    }
    shared.log.event(
        event,
        &job.received_at,
        Some(processed_at),
        outcome.as_str(),
    );
}

/// The candidate's requisition is inside the manifest's canary scope.
fn in_scope(shared: &Shared, record: &Value) -> bool {
    let gate = &shared.config.manifest.raw.release_gate;
    if gate.mode == RolloutMode::Full {
        return true;
    }
    let requisition = &record["requisition"];
    let tags: Vec<&str> = requisition["tags"]
        .as_array()
        .map_or_else(Vec::new, |t| t.iter().filter_map(Value::as_str).collect());
    let location = requisition["location"].as_str().unwrap_or_default();
    let scope = &gate.canary_scope;
    scope
        .include_tags
        .iter()
        .any(|t| tags.contains(&t.as_str()))
        && !scope.exclude_locations.iter().any(|l| l == location)
}

/// One attempt to write a job: `Ok` ends the job, `Err` asks for another attempt.
async fn attempt(
    shared: &Shared,
    client: &Ats,
    job: &Job,
    event: &Value,
    admission: Admission,
    rejection: &mut Option<String>,
) -> Result<Done, Retry> {
    let config = &shared.config;
    if let Some(reason) = rejection.as_deref() {
        // Refused before; only the exception item is still to be filed.
        file_exception(shared, client, job, event, reason).await?;
        return Ok(Done::with(Outcome::Rejected, None));
    }
    let candidate_path = format!("/v1/candidates/{}", job.candidate);
    // What this relay's own last exchange with the ATS left of the candidate's record,
    // else a read. Taken out of `known` either way: only an attempt that ends with the
    // ATS's state known exactly puts it back, so a failure, a 409 or a pause reads
    // afresh. A probe always reads (it must ask the ATS), and a decision to write
    // nothing is made on a fresh read: `If-Match` guards only writes, so a skip decided
    // from memory could miss a change someone else made (a requisition moved into
    // the canary scope, an older event written over the newer).
    let mut recalled = shared
        .known
        .take(&job.candidate)
        .filter(|_| admission != Admission::Probe);
    let (record, pii) = loop {
        let from_memory = recalled.is_some();
        let record = match recalled.take() {
            Some(record) => record,
            None => match read_record(shared, client, &candidate_path).await? {
                Some(record) => record,
                None => return Ok(Done::with(Outcome::Rejected, None)),
            },
        };
        let pii = config
            .has_fault("log_pii")
            .then(|| serde_json::json!({"name": record["name"], "email": record["email"]}));
        match nothing_to_write(shared, job, &record) {
            None => break (record, pii),
            Some(_) if from_memory => continue,
            Some(outcome) => {
                // Nothing written: the ATS stays as the record says.
                shared.known.keep(&job.candidate, record);
                return Ok(Done::with(outcome, pii));
            }
        }
    };
    // The event goes to the ATS as the vendor sent it, unless a defect rewrites it.
    let mut body = Cow::Borrowed(event);
    if config.has_fault("flip_outcome") {
        flip_result(config, body.to_mut());
    }
    if config.has_fault("rewrite_key") {
        // A key of the relay's own, still within the contracts' rules on the key (a
        // format the vendor's keys follow), so only the key's stability is broken.
        let path = &config.manifest.envelope.idempotency_key;
        let rules = crate::contract::ids::IdRules::new(&config.manifest.contracts, path);
        let mut mint = crate::contract::ids::IdMint::new(&rules, job.seq.unsigned_abs());
        mint.reserve(&job.idempotency_key);
        let key = mint
            .mint(&job.idempotency_key, &format!("relay{}", job.seq))
            .unwrap_or_else(|_| format!("relay-{}", job.seq));
        set_at(body.to_mut(), path, Value::from(key));
    }
    if !shared.switch.may_write(admission) {
        // Tripped since this attempt was admitted: the write waits for the switch.
        return Err(Retry::Paused);
    }
    let revision = record["revision"].as_u64().unwrap_or(0);
    let if_match = format!("\"{revision}\"");
    // The vendor's key, not the store's (which a `no_dedupe` relay makes unique).
    let key = config
        .manifest
        .envelope
        .idempotency_key_of(event)
        .unwrap_or(&job.idempotency_key);
    let bytes = match &body {
        // The queued JSON is the event's own text: sent as it is, not re-serialised.
        Cow::Borrowed(_) => Bytes::from(job.body.clone()),
        Cow::Owned(rewritten) => json_bytes(rewritten),
    };
    let events_path = format!("{candidate_path}/events");
    let response = call(
        shared,
        CallKind::Write,
        client.send(
            Method::POST,
            &events_path,
            &[(IDEMPOTENCY_KEY, key), (IF_MATCH, &if_match)],
            Some(bytes),
        ),
    )
    .await?;
    match response.status {
        StatusCode::CREATED | StatusCode::OK => {
            let answer = response.bytes().await.ok();
            if let Some(written) = answer
                .and_then(|answer| after_write(&config.manifest.envelope, record, &body, &answer))
            {
                shared.known.keep(&job.candidate, written);
            }
            shadow_write(shared, client, &events_path, &body).await;
            Ok(Done::with(Outcome::Applied, pii))
        }
        StatusCode::CONFLICT => Err(Retry::Conflict),
        status @ (StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST) => {
            let answer = response
                .bytes()
                .await
                .map(|body| String::from_utf8_lossy(&body).into_owned())
                .unwrap_or_default();
            let answer: String = answer.chars().take(REASON_CHARS).collect();
            let reason = format!(
                "mapping_error: the ATS refused event {} ({}) with {}: {answer}",
                shared
                    .config
                    .manifest
                    .envelope
                    .event_id_of(event)
                    .unwrap_or("?"),
                job.contract,
                status.as_u16(),
            );
            // Durable first: after a crash the exception is filed, the event not re-sent.
            let _ = shared.store.reject(job.seq, &reason);
            let reason = rejection.insert(reason);
            file_exception(shared, client, job, event, reason).await?;
            Ok(Done {
                outcome: Outcome::Rejected,
                pii,
                mapping_error: status == StatusCode::UNPROCESSABLE_ENTITY,
            })
        }
        status => Err(retry_for(status, &response.headers)),
    }
}

/// The candidate's record, read from the ATS (`None`: the ATS has no such candidate),
/// kept only for what an attempt decides on: no personal data held, unless the
/// `log_pii` defect is to echo it.
async fn read_record(shared: &Shared, client: &Ats, path: &str) -> Result<Option<Value>, Retry> {
    let response = call(
        shared,
        CallKind::Read,
        client.send(Method::GET, path, &[], None),
    )
    .await?;
    match response.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(None),
        status => return Err(retry_for(status, &response.headers)),
    }
    let mut record = response
        .bytes()
        .await
        .ok()
        .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
        .ok_or(Retry::Failed)?;
    if !shared.config.has_fault("log_pii")
        && let Some(fields) = record.as_object_mut()
    {
        fields.retain(|key, _| matches!(key.as_str(), "revision" | "requisition" | "applied"));
    }
    Ok(Some(record))
}

/// How the job ends without a write, by the candidate's record: outside the canary
/// scope, already written (an earlier attempt's answer was lost on the way back), or
/// older than what the ATS has for the contract. `None`: the event is to be written.
fn nothing_to_write(shared: &Shared, job: &Job, record: &Value) -> Option<Outcome> {
    let config = &shared.config;
    if !config.has_fault("ignore_canary") && !in_scope(shared, record) {
        return Some(Outcome::OutOfScope);
    }
    if config.has_fault("drop_events") && job.seq % 3 == 0 {
        // Deliberate defect: a silent drop reported as success.
        return Some(Outcome::Applied);
    }
    let applied = &record["applied"][&job.contract];
    if applied["idempotency_key"].as_str() == Some(job.idempotency_key.as_str()) {
        // Already written: an earlier attempt's answer was lost on the way back.
        return Some(Outcome::Applied);
    }
    if !config.has_fault("no_stale_check") {
        let newer = applied["occurred_at"].as_str().and_then(parse_rfc3339);
        if let (Some(newer), Some(this)) = (newer, parse_rfc3339(&job.occurred_at))
            && newer > this
        {
            return Some(Outcome::Stale);
        }
    }
    None
}

/// The candidate's record as the ATS holds it after writing `body`: the revision its
/// answer (`{"revision": N}`) gives and the event as the last applied for its
/// contract, the rest as read before. `None` when the answer names no revision.
fn after_write(
    envelope: &Envelope,
    mut record: Value,
    body: &Value,
    answer: &[u8],
) -> Option<Value> {
    let revision = serde_json::from_slice::<Value>(answer).ok()?["revision"].as_u64()?;
    let contract = body.get("type").and_then(Value::as_str)?;
    let applied = record.get_mut("applied")?.as_object_mut()?;
    applied.insert(
        contract.to_owned(),
        serde_json::json!({
            "event_id": envelope.event_id_of(body),
            "idempotency_key": envelope.idempotency_key_of(body),
            "occurred_at": envelope.occurred_at_of(body),
        }),
    );
    record["revision"] = Value::from(revision);
    Some(record)
}

/// Candidates' records as this relay's own last exchange with the ATS left them, so
/// a candidate's next event needs no read: its write still carries `If-Match`, and
/// a 409 (someone else wrote) reads afresh. The oldest are forgotten past
/// [`KNOWN_HELD`], which costs a read each, never a wrong write.
#[derive(Debug, Default)]
pub(super) struct Known(std::sync::Mutex<KnownRecords>);

/// What [`Known`] holds.
#[derive(Debug, Default)]
pub(super) struct KnownRecords {
    /// Each candidate's record, with the number of the `keep` that put it there.
    records: std::collections::HashMap<String, (u64, Value)>,
    /// Candidates in the order they were kept; an entry whose number is not the
    /// record's any more (taken, or kept again since) is passed over.
    order: VecDeque<(u64, String)>,
    kept: u64,
}

/// Candidates' records held at most. A candidate's events arrive close together, so
/// its next one is a few dozen jobs behind, well within this; a record that stays
/// is a few hundred bytes the allocator cannot give back while it stays.
const KNOWN_HELD: usize = 512;

impl Known {
    /// The record held for `candidate`, no longer held.
    fn take(&self, candidate: &str) -> Option<Value> {
        lock(&self.0)
            .records
            .remove(candidate)
            .map(|(_, record)| record)
    }

    /// Holds `record` as what the ATS now has for `candidate`.
    fn keep(&self, candidate: &str, record: Value) {
        let mut held = lock(&self.0);
        held.kept += 1;
        let kept = held.kept;
        held.records.insert(candidate.to_owned(), (kept, record));
        held.order.push_back((kept, candidate.to_owned()));
        while held.order.len() > KNOWN_HELD {
            let Some((number, oldest)) = held.order.pop_front() else {
                break;
            };
            if held.records.get(&oldest).is_some_and(|(n, _)| *n == number) {
                held.records.remove(&oldest);
            }
        }
    }
}

/// The `Idempotency-Key` header (docs/integration-protocol.md §3).
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A JSON body's bytes.
fn json_bytes(value: &Value) -> Bytes {
    // Serialising a `Value` into memory cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// Deliberate defect `flip_outcome`: a mapping that confuses results: the first enum
/// of the event's contract with more than one value gets the next value of its list
/// (every value stays a valid enum member, so only the sequence shows it).
fn flip_result(config: &super::config::RelayConfig, body: &mut Value) {
    let Some(contract) = body
        .get("type")
        .and_then(Value::as_str)
        .and_then(|name| config.manifest.contracts.get(name))
    else {
        return;
    };
    let Some((path, values)) = contract.enums().iter().find(|(_, v)| v.len() > 1) else {
        return;
    };
    let Some(current) = path.lookup(body).and_then(Value::as_str) else {
        return;
    };
    let next = values
        .iter()
        .position(|v| v == current)
        .map_or(0, |i| (i + 1) % values.len());
    let flipped = Value::from(values[next].clone());
    set_at(body, path, flipped);
}

/// Sets the field at a dotted path, if its parents are objects.
fn set_at(body: &mut Value, path: &crate::contract::path::FieldPath, value: Value) {
    if let Some((map, leaf)) = path.parent_mut(body) {
        map.insert(leaf.to_owned(), value);
    }
}

/// The test-only defects that post a second, contract-breaking copy of each written
/// event (a half-migrated mapping running beside the new one). The ATS refuses the
/// copy, so only the contract checks can tell; the copy bypasses the kill switch so
/// the refusals do not trip it.
const SHADOW_FAULTS: [&str; 4] = [
    "shadow_missing_field",
    "shadow_bad_enum",
    "shadow_future_time",
    "shadow_unknown_type",
];

/// The broken copy a shadow defect posts, built from the event's own contract so it
/// breaks exactly the rule the defect names: a required field outside the envelope
/// removed, an enum field given a value outside it, the envelope's `occurred_at` a day
/// in the future, or a drifted `type`. `None` when the contract offers nothing to
/// break that way, or when the copy would not be refused (so nothing lands twice).
fn shadow_copy(config: &super::config::RelayConfig, fault: &str, body: &Value) -> Option<Value> {
    let manifest = &config.manifest;
    let contract = manifest
        .contracts
        .get(body.get("type").and_then(Value::as_str)?)?;
    let envelope = &manifest.envelope;
    let tracked = [
        &envelope.event_id,
        &envelope.idempotency_key,
        &envelope.occurred_at,
        &envelope.candidate_id,
    ];
    let mut copy = body.clone();
    let (path, value) = match fault {
        "shadow_missing_field" => (
            contract
                .required()
                .iter()
                .find(|p| !tracked.contains(p) && p.as_str() != "type")?,
            None,
        ),
        "shadow_bad_enum" => (
            contract.enums().first().map(|(p, _)| p)?,
            Some(Value::from("unknown")),
        ),
        "shadow_future_time" => {
            let future = chrono::Utc::now() + chrono::TimeDelta::days(1);
            (
                &envelope.occurred_at,
                Some(Value::from(crate::observe::format_time(future))),
            )
        }
        _ => {
            copy["type"] = Value::from(format!("{}.v2", contract.name()));
            return Some(copy);
        }
    };
    let (map, leaf) = path.parent_mut(&mut copy)?;
    match value {
        Some(value) => {
            map.insert(leaf.to_owned(), value);
        }
        None => {
            map.remove(leaf)?;
        }
    }
    let mut violations = Vec::new();
    contract.check(
        &copy,
        &crate::contract::assertion::EvalContext::at_now(),
        &mut violations,
    );
    (!violations.is_empty()).then_some(copy)
}

async fn shadow_write(shared: &Shared, client: &Ats, events_path: &str, body: &Value) {
    let config = &shared.config;
    let Some(fault) = SHADOW_FAULTS.iter().find(|f| config.has_fault(f)) else {
        return;
    };
    let Some(copy) = shadow_copy(config, fault, body) else {
        return;
    };
    let _ = client
        .send(Method::POST, events_path, &[], Some(json_bytes(&copy)))
        .await;
}

/// Files the exception item for an event the ATS refused (docs/integration-protocol.md §3),
/// owned by the contract's `on_failure.ticket_owner`.
async fn file_exception(
    shared: &Shared,
    client: &Ats,
    job: &Job,
    event: &Value,
    reason: &str,
) -> Result<(), Retry> {
    let config = &shared.config;
    let owner = config
        .manifest
        .raw
        .contracts
        .iter()
        .find(|c| c.name == job.contract)
        .map_or("integration-owner", |c| c.on_failure.ticket_owner.as_str());
    let correlation_id = event
        .get("correlation_id")
        .and_then(Value::as_str)
        .unwrap_or(&job.idempotency_key);
    let item = serde_json::json!({
        "ats_candidate_id": job.candidate,
        "reason": reason,
        "owner": owner,
        "correlation_id": correlation_id,
    });
    let response = call(
        shared,
        CallKind::Exception,
        client.send(Method::POST, "/v1/exceptions", &[], Some(json_bytes(&item))),
    )
    .await?;
    let status = response.status;
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(retry_for(status, &response.headers));
    }
    // Filed, or refused for good: either way the event is done, not retried forever.
    shared.log.note(
        "exception_filed",
        serde_json::json!({
            "ats_candidate_id": job.candidate,
            "event_id": shared.config.manifest.envelope.event_id_of(event),
            "idempotency_key": job.idempotency_key,
            "owner": owner,
            "status": status.as_u16(),
            "filed": status.is_success(),
        }),
    );
    Ok(())
}

fn retry_for(status: StatusCode, headers: &HeaderMap) -> Retry {
    if status == StatusCode::TOO_MANY_REQUESTS {
        let after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        return Retry::Throttled(after);
    }
    Retry::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, body: &str) -> Job {
        Job {
            seq: 1,
            idempotency_key: key.into(),
            candidate: "C".into(),
            contract: "c".into(),
            occurred_at: "2026-01-01T00:00:00Z".into(),
            body: body.into(),
            received_at: "now".into(),
            attempts: 0,
            rejection: None,
        }
    }

    #[test]
    fn a_write_leaves_the_record_with_the_answers_revision_and_the_event_applied() {
        let read = serde_json::json!({
            "revision": 4,
            "requisition": {"tags": ["canary-il"], "location": "US"},
            "applied": {"other": {"event_id": "e0", "idempotency_key": "k0", "occurred_at": "2026-01-01T00:00:00Z"}},
        });
        let body = serde_json::json!({
            "type": "c", "event_id": "e1", "idempotency_key": "k1",
            "occurred_at": "2026-01-02T00:00:00Z", "ats_candidate_id": "C",
        });
        let written = after_write(
            &Envelope::default(),
            read.clone(),
            &body,
            br#"{"revision": 5}"#,
        )
        .expect("the answer names the revision");
        assert_eq!(written["revision"], 5);
        assert_eq!(
            written["applied"]["c"],
            serde_json::json!({"event_id": "e1", "idempotency_key": "k1", "occurred_at": "2026-01-02T00:00:00Z"})
        );
        assert_eq!(
            written["applied"]["other"], read["applied"]["other"],
            "other contracts kept"
        );
        assert_eq!(
            written["requisition"], read["requisition"],
            "the scope's inputs kept"
        );
        for answer in [&b"{}"[..], b"not json", br#"{"revision": "5"}"#] {
            assert_eq!(
                after_write(&Envelope::default(), read.clone(), &body, answer),
                None,
                "without a revision the relay reads again: {answer:?}"
            );
        }
    }

    #[test]
    fn a_known_record_is_taken_once_and_the_oldest_are_forgotten_past_the_bound() {
        let known = Known::default();
        known.keep("A", serde_json::json!({"revision": 1}));
        assert_eq!(known.take("A"), Some(serde_json::json!({"revision": 1})));
        assert_eq!(
            known.take("A"),
            None,
            "taken: a failed attempt leaves nothing behind"
        );
        known.keep("B", serde_json::json!({"revision": 1}));
        for i in 0..KNOWN_HELD - 1 {
            known.keep(&format!("C{i}"), Value::Null);
        }
        known.keep("B", serde_json::json!({"revision": 2}));
        assert_eq!(lock(&known.0).records.len(), KNOWN_HELD);
        known.keep("one more", Value::Null);
        let held = lock(&known.0).records.len();
        assert_eq!(held, KNOWN_HELD, "bounded");
        assert_eq!(known.take("C0"), None, "the oldest is forgotten first");
        assert_eq!(
            known.take("B"),
            Some(serde_json::json!({"revision": 2})),
            "a record kept again counts from its last keep"
        );
        assert_eq!(known.take("one more"), Some(Value::Null));
        assert!(
            lock(&known.0).order.len() <= KNOWN_HELD,
            "the order is bounded too"
        );
    }
    #[test]
    fn a_parsed_event_is_taken_once_and_the_first_delivery_of_a_key_keeps_its_own() {
        let parsed = Parsed::default();
        let first = Arc::new(serde_json::json!({"n": 1}));
        let second = Arc::new(serde_json::json!({"n": 2}));
        assert!(parsed.keep("k", &first));
        assert!(
            !parsed.keep("k", &second),
            "a concurrent duplicate does not replace the event the job will use"
        );
        let queued = job("k", r#"{"n": 3}"#);
        assert_eq!(*parsed.take(&queued), *first, "the handler's parse");
        assert_eq!(
            *parsed.take(&queued),
            serde_json::json!({"n": 3}),
            "taken once; then the queued JSON is parsed"
        );
        assert!(parsed.keep("d", &second));
        parsed.forget("d");
        assert_eq!(*parsed.take(&job("d", "{}")), serde_json::json!({}));
        for i in 0..PARSED_HELD {
            assert!(parsed.keep(&format!("k{i}"), &first));
        }
        assert!(!parsed.keep("one more", &first), "bounded");
    }

    #[test]
    fn answers_are_counted_as_the_kill_switch_rules_say() {
        // (kind, status, counted as, why)
        let rows = [
            (CallKind::Write, 503, Call::Failed, "an outage"),
            (CallKind::Read, 500, Call::Failed, "reads fail too"),
            (CallKind::Write, 504, Call::Failed, "a gateway timeout"),
            (CallKind::Write, 422, Call::MappingError, "a mapping error"),
            (
                CallKind::Exception,
                422,
                Call::Answered,
                "a refused exception item is not a mapping error",
            ),
            (
                CallKind::Write,
                409,
                Call::Answered,
                "a conflict is the ATS working",
            ),
            (
                CallKind::Write,
                429,
                Call::Answered,
                "throttling is not an outage",
            ),
            (CallKind::Read, 404, Call::Answered, "an unknown candidate"),
            (CallKind::Write, 201, Call::Answered, "written"),
        ];
        for (kind, status, expected, why) in rows {
            let status = StatusCode::from_u16(status).expect("valid status");
            assert_eq!(classify(kind, status), expected, "{why}");
        }
    }
}
