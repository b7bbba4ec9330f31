//! The mock ATS (docs/integration-protocol.md §3): candidate records with revisions,
//! contract-checked event writes, access grants and the exception queue.
//!
//! It is deliberately naive, like most real ATS APIs: it does not deduplicate. Every
//! accepted event is one more state change (last write wins, in arrival order) and
//! one more activity entry; idempotency and freshness are the integration's job, and
//! the observation log keeps the evidence of whether it did it. A body that breaks its
//! contract is a *mapping error* (422, with the violations).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

use super::faults::{self, FaultState};
use super::{authorized, error, logged};
use crate::contract::assertion::EvalContext;
use crate::contract::{Rule, Violation};
use crate::intern::Text;
use crate::manifest::Manifest;
use crate::observe::{Actor, Entry, ObservationLog, format_time};
use crate::sandbox::model::{Requisition, SandboxCandidate};

/// Activity entries kept per candidate; older ones stay in the observation log only,
/// so a long load test does not grow the mock's memory.
pub const ACTIVITY_KEPT: usize = 256;

/// The stage every sandbox candidate starts in.
pub const INITIAL_STAGE: &str = "application-review";

/// The last event applied for one contract.
///
/// The state of a load test holds one per event twice (the record's and the activity
/// entry's), so the texts are shared: the event id also keys `applied_ids`, the
/// `Idempotency-Key` header usually is the idempotency key, each time is one copy
/// shared by every event that occurred then, and the ids the harness told the ATS
/// to expect ([`AtsState::expect_texts`]) are the harness's own copies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedEvent {
    /// The event's id.
    pub event_id: Option<Text>,
    /// The event's idempotency key.
    pub idempotency_key: Option<Text>,
    /// When the event occurred.
    pub occurred_at: Option<Arc<str>>,
}

/// One state change in a candidate's activity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    /// The revision the change produced.
    pub revision: u64,
    /// The contract of the event (one copy per contract, shared by every entry).
    pub contract: Arc<str>,
    /// What was applied (the same allocation as the record's `applied` entry).
    pub event: Arc<AppliedEvent>,
    /// The `Idempotency-Key` header sent with the write, if any.
    pub idempotency_header: Option<Text>,
    /// When the ATS received it: the time, written as RFC 3339 text ([`format_time`])
    /// only when shown, which is the text that was once kept (12 bytes, not 51).
    #[serde(serialize_with = "serialize_time")]
    pub received_at: chrono::DateTime<chrono::Utc>,
}

fn serialize_time<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_time(*at))
}

/// A candidate's last applied event per contract, in contract order: what a
/// `BTreeMap<String, AppliedEvent>` held, as a vector sized for the few contracts
/// a candidate sees (a B-tree's first node takes eleven entries' room, about 1 KB).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied(Vec<(Arc<str>, Arc<AppliedEvent>)>);

impl Applied {
    /// The last event applied for `contract`.
    pub fn get(&self, contract: &str) -> Option<&AppliedEvent> {
        let at = self.0.binary_search_by(|(c, _)| (**c).cmp(contract)).ok()?;
        self.0.get(at).map(|(_, event)| &**event)
    }

    /// Records `event` as the last one applied for `contract`.
    pub fn insert(&mut self, contract: Arc<str>, event: Arc<AppliedEvent>) {
        match self.0.binary_search_by(|(c, _)| (**c).cmp(&*contract)) {
            Ok(at) => self.0[at].1 = event,
            Err(at) => {
                // One more slot at a time: most candidates see one or two contracts.
                self.0.reserve_exact(1);
                self.0.insert(at, (contract, event));
            }
        }
    }

    /// Each contract with its last applied event, in contract order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AppliedEvent)> {
        self.0.iter().map(|(c, e)| (&**c, &**e))
    }
}

impl std::ops::Index<&str> for Applied {
    type Output = AppliedEvent;

    fn index(&self, contract: &str) -> &AppliedEvent {
        match self.get(contract) {
            Some(event) => event,
            None => panic!("no event applied for contract `{contract}`"),
        }
    }
}

impl Serialize for Applied {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// One candidate's record and history.
///
/// Sized for a load test's 100,000 candidates: the requisition is the sandbox
/// candidate's own (shared, not copied), the stage is shared with every candidate
/// that has the same, and only the personal data the
/// record shows (name, e-mail) is kept.
#[derive(Debug, Clone)]
pub struct CandidateState {
    /// The ATS id (the same allocation as the key it is found by).
    pub id: Arc<str>,
    /// The candidate's name (the sandbox's copy, shared).
    pub name: Text,
    /// The candidate's e-mail address (the sandbox's copy, shared).
    pub email: Text,
    /// The requisition.
    pub requisition: Arc<Requisition>,
    /// The current stage.
    pub stage: Arc<str>,
    /// Bumped by every accepted write.
    pub revision: u64,
    /// Per contract, the last event applied.
    pub applied: Applied,
    /// The most recent changes, newest last.
    pub activity: VecDeque<Activity>,
    /// Every change ever applied, including those no longer kept.
    pub activity_total: u64,
}

impl CandidateState {
    fn new(candidate: &SandboxCandidate, shared: &mut Shared) -> Self {
        CandidateState {
            id: Arc::from(candidate.id.0.as_str()),
            name: candidate.person.name.clone(),
            email: candidate.person.email.clone(),
            requisition: Arc::clone(&candidate.requisition),
            stage: shared.stage(INITIAL_STAGE),
            revision: 1,
            applied: Applied::default(),
            activity: VecDeque::new(),
            activity_total: 0,
        }
    }

    /// Appends an activity entry, keeping the last [`ACTIVITY_KEPT`]. The deque grows
    /// by half its length rather than doubling from four: most candidates of a load
    /// test get one or two entries.
    fn push_activity(&mut self, entry: Activity) {
        if self.activity.len() == self.activity.capacity() {
            self.activity
                .reserve_exact((self.activity.len() / 2).clamp(1, ACTIVITY_KEPT + 1));
        }
        self.activity.push_back(entry);
        if self.activity.len() > ACTIVITY_KEPT {
            self.activity.pop_front();
        }
        self.activity_total += 1;
    }

    /// The record as `GET /v1/candidates/{id}` returns it, written by hand (the
    /// busiest route of a load test) rather than through a [`Value`]: the very bytes
    /// of serialising [`CandidateState::record`] (a test checks), keys in sorted
    /// order as a `Value` map keeps them.
    fn record_json(&self) -> Vec<u8> {
        use crate::observe::json::{write_opt_str, write_serde, write_str};
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(br#"{"activity_count":"#);
        write_serde(&mut out, &self.activity_total);
        out.extend_from_slice(br#","applied":{"#);
        for (i, (contract, event)) in self.applied.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, contract);
            out.extend_from_slice(br#":{"event_id":"#);
            write_opt_str(&mut out, event.event_id.as_deref());
            out.extend_from_slice(br#","idempotency_key":"#);
            write_opt_str(&mut out, event.idempotency_key.as_deref());
            out.extend_from_slice(br#","occurred_at":"#);
            write_opt_str(&mut out, event.occurred_at.as_deref());
            out.push(b'}');
        }
        out.extend_from_slice(br#"},"ats_candidate_id":"#);
        write_str(&mut out, &self.id);
        out.extend_from_slice(br#","email":"#);
        write_str(&mut out, &self.email);
        out.extend_from_slice(br#","name":"#);
        write_str(&mut out, &self.name);
        out.extend_from_slice(br#","requisition":{"id":"#);
        write_str(&mut out, &self.requisition.id);
        out.extend_from_slice(br#","location":"#);
        write_str(&mut out, &self.requisition.location);
        out.extend_from_slice(br#","tags":["#);
        for (i, tag) in self.requisition.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, tag);
        }
        out.extend_from_slice(br#"]},"revision":"#);
        write_serde(&mut out, &self.revision);
        out.extend_from_slice(br#","stage":"#);
        write_str(&mut out, &self.stage);
        out.push(b'}');
        out
    }

    /// The record as `GET /v1/candidates/{id}` returns it.
    pub fn record(&self) -> Value {
        json!({
            "ats_candidate_id": self.id,
            "name": self.name,
            "email": self.email,
            "revision": self.revision,
            "stage": self.stage,
            "requisition": self.requisition,
            "applied": self.applied,
            "activity_count": self.activity_total,
        })
    }
}

/// A privileged step granted to a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessGrant {
    /// The grant's id.
    #[serde(default)]
    pub grant_id: String,
    /// The candidate.
    #[serde(default)]
    pub ats_candidate_id: String,
    /// `interview_link` or `assessment`.
    pub resource: Resource,
    /// The flow's correlation id.
    pub correlation_id: String,
    /// The candidate's revision when granted.
    #[serde(default)]
    pub revision: u64,
}

/// Privileged steps the ATS can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// A link to the interview.
    InterviewLink,
    /// The start of an assessment.
    Assessment,
}

/// An item in the exception queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionItem {
    /// The item's id.
    #[serde(default)]
    pub id: String,
    /// The candidate concerned.
    pub ats_candidate_id: String,
    /// Why it needs a person.
    pub reason: String,
    /// The owner role.
    pub owner: String,
    /// The flow's correlation id.
    pub correlation_id: String,
    /// When a person must have reviewed it (RFC 3339; hiring-policy items carry one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    /// The verification session it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Open until a reviewer resolves it (set by the ATS, not the caller).
    #[serde(default)]
    pub status: ExceptionStatus,
}

impl ExceptionItem {
    /// The log entry of something that happened to the item: its candidate and
    /// correlation id, the item itself and `more` in the detail.
    fn entry(&self, more: serde_json::Value) -> Entry {
        let mut detail = json!({"item": self});
        if let (Some(detail), serde_json::Value::Object(more)) = (detail.as_object_mut(), more) {
            detail.extend(more);
        }
        Entry {
            candidate: Some(self.ats_candidate_id.clone()),
            correlation_id: Some(self.correlation_id.clone()),
            ..Entry::detail(detail)
        }
    }
}

/// Where an exception item stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionStatus {
    /// Waiting for a person.
    #[default]
    Open,
    /// A reviewer decided.
    Resolved,
}

/// One candidate as `GET /v1/candidates` lists it: no personal data, just the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageView {
    /// The candidate.
    pub ats_candidate_id: String,
    /// The current stage.
    pub stage: String,
    /// The revision.
    pub revision: u64,
}

/// The most candidates one `GET /v1/candidates` page lists.
pub const LIST_LIMIT: usize = 500;

/// What many candidates' records share, one copy each: stage names, the
/// `occurred_at` texts of applied events, and the ids and keys the harness expects.
#[derive(Debug, Default)]
struct Shared {
    stages: HashSet<Arc<str>>,
    /// A load test's events occur within a few hours, whole seconds apart: 200,000
    /// applied events carry a few thousand distinct times.
    times: HashSet<Arc<str>>,
    /// How many times were kept after the last sweep of the unused ones.
    times_swept: usize,
    /// The ids and keys the harness is about to send ([`AtsState::expect_texts`]).
    expected: HashSet<Text>,
}

impl Shared {
    /// The shared copy of the stage name `stage`.
    fn stage(&mut self, stage: &str) -> Arc<str> {
        crate::intern::shared(&mut self.stages, stage, |s| Arc::from(s))
    }

    /// The shared copy of the time `at`. Times no record holds any more (a candidate's
    /// later event replaced them) are swept once the set has doubled since the last
    /// sweep, so an integration that sends ever new times does not grow it for nothing.
    fn time(&mut self, at: &str) -> Arc<str> {
        const FLOOR: usize = 1024;
        if self.times.len() >= 2 * self.times_swept.max(FLOOR) {
            self.times.retain(|t| Arc::strong_count(t) > 1);
            self.times_swept = self.times.len();
        }
        crate::intern::shared(&mut self.times, at, |t| Arc::from(t))
    }

    /// The expected copy of `text`, or a new one.
    fn text(&self, text: &str) -> Text {
        self.expected
            .get(text)
            .cloned()
            .unwrap_or_else(|| Text::from(text))
    }
}

/// The mock ATS's state.
#[derive(Debug)]
pub struct AtsState {
    manifest: Arc<Manifest>,
    pub(crate) token: Arc<str>,
    /// The ATS's fault schedule.
    pub faults: FaultState,
    log: ObservationLog,
    /// The records, boxed: a map's slots run up to twice its length, and a slot of a
    /// box is a tenth of one of a record.
    candidates: Mutex<HashMap<Arc<str>, Box<CandidateState>>>,
    /// The requisitions and stages the records share (locked inside `candidates`).
    shared: Mutex<Shared>,
    /// The contracts' names by index, shared by every record that names one.
    contract_names: Vec<Arc<str>>,
    grants: Mutex<Vec<AccessGrant>>,
    exceptions: Mutex<Vec<ExceptionItem>>,
    /// How many times each event id was applied (the harness waits on it).
    applied_ids: Mutex<HashMap<Text, u32>>,
    requests: std::sync::atomic::AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl AtsState {
    /// An ATS holding `candidates`, judging writes with the manifest's contracts.
    pub fn new(
        manifest: Arc<Manifest>,
        candidates: &[SandboxCandidate],
        token: &str,
        seed: u64,
        log: ObservationLog,
    ) -> Self {
        let mut shared = Shared::default();
        let records = candidates
            .iter()
            .map(|c| {
                let record = CandidateState::new(c, &mut shared);
                (Arc::clone(&record.id), Box::new(record))
            })
            .collect();
        let contract_names = manifest
            .contracts
            .iter()
            .map(|c| Arc::from(c.name().as_str()))
            .collect();
        AtsState {
            manifest,
            shared: Mutex::new(shared),
            contract_names,
            token: Arc::from(token),
            faults: FaultState::new(super::mix(seed, 3)),
            log,
            candidates: Mutex::new(records),
            grants: Mutex::new(Vec::new()),
            exceptions: Mutex::new(Vec::new()),
            applied_ids: Mutex::new(HashMap::new()),
            requests: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Adds candidates (a run seeds the ATS once the plan, which needs the mocks' URLs, exists).
    pub fn add_candidates(&self, candidates: &[SandboxCandidate]) {
        let mut records = lock(&self.candidates);
        let mut shared = lock(&self.shared);
        for candidate in candidates {
            let record = CandidateState::new(candidate, &mut shared);
            records.insert(Arc::clone(&record.id), Box::new(record));
        }
    }

    /// The event ids and idempotency keys the harness is about to send: an applied
    /// event holds the harness's copy of its texts rather than one of its own (a
    /// 100,000-candidate run applies 200,000 events, each with an id and a key).
    pub fn expect_texts(&self, texts: impl IntoIterator<Item = Text>) {
        let mut shared = lock(&self.shared);
        shared.expected.extend(texts);
        shared.expected.shrink_to_fit();
    }

    /// How many times the event with this id was applied.
    pub fn times_applied(&self, event_id: &str) -> u32 {
        lock(&self.applied_ids).get(event_id).copied().unwrap_or(0)
    }

    /// Keeps only the ids of events not applied yet, under one lock: the driver asks
    /// for thousands every few milliseconds while the ATS is applying them.
    pub fn retain_unapplied(&self, event_ids: &mut Vec<&str>) {
        let applied = lock(&self.applied_ids);
        event_ids.retain(|id| !applied.contains_key(*id));
    }

    /// Requests received so far, answered or not (the harness waits for quiet).
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A copy of one candidate's state.
    pub fn candidate(&self, id: &str) -> Option<CandidateState> {
        lock(&self.candidates).get(id).map(|c| (**c).clone())
    }

    /// Every access grant, in order.
    pub fn grants(&self) -> Vec<AccessGrant> {
        lock(&self.grants).clone()
    }

    /// Every exception item, in order.
    pub fn exceptions(&self) -> Vec<ExceptionItem> {
        lock(&self.exceptions).clone()
    }

    /// Moves a candidate to `stage` (a recruiter's move, which the ATS then announces
    /// as `candidate.stage_changed`); returns the stage it left, `None` for an
    /// unknown candidate.
    pub fn set_stage(&self, id: &str, stage: &str) -> Option<String> {
        let mut candidates = lock(&self.candidates);
        let candidate = candidates.get_mut(id)?;
        let to = lock(&self.shared).stage(stage);
        let from = std::mem::replace(&mut candidate.stage, to).to_string();
        self.moved(candidate, "ats.stage_changed", &from, stage);
        Some(from)
    }

    /// Moves a candidate to another requisition (a recruiter's move, which takes it
    /// into or out of a canary scope); returns the requisition id it left, `None`
    /// for an unknown candidate. The record's revision moves on, as with a stage.
    pub fn set_requisition(&self, id: &str, requisition: Requisition) -> Option<String> {
        let mut candidates = lock(&self.candidates);
        let candidate = candidates.get_mut(id)?;
        let to = requisition.id.clone();
        let from = std::mem::replace(&mut candidate.requisition, Arc::new(requisition));
        self.moved(candidate, "ats.requisition_changed", &from.id, &to);
        Some(from.id.clone())
    }

    /// A recruiter's move of `candidate` from `from` to `to`: its revision moves on,
    /// and the log records the move as `kind`.
    fn moved(&self, candidate: &mut CandidateState, kind: &str, from: &str, to: &str) {
        candidate.revision += 1;
        self.log.append(
            Actor::Ats,
            kind,
            Entry {
                candidate: Some(candidate.id.to_string()),
                ..Entry::detail(json!({"from": from, "to": to, "revision": candidate.revision}))
            },
        );
    }

    /// A reviewer resolves an open exception item (the admin API's and the
    /// harness's call); returns it, or `None` if no open item has this id.
    pub fn resolve_exception(&self, id: &str, resolution: &str) -> Option<ExceptionItem> {
        let mut exceptions = lock(&self.exceptions);
        let item = exceptions
            .iter_mut()
            .find(|item| item.id == id && item.status == ExceptionStatus::Open)?;
        item.status = ExceptionStatus::Resolved;
        self.log.append(
            Actor::Ats,
            "ats.exception_resolved",
            item.entry(json!({"resolution": resolution})),
        );
        Some(item.clone())
    }

    /// A page of candidates in id order, with their stages.
    pub fn stages(&self, offset: usize, limit: usize) -> (usize, Vec<StageView>) {
        let candidates = lock(&self.candidates);
        let mut ids: Vec<&Arc<str>> = candidates.keys().collect();
        ids.sort();
        let page = ids
            .iter()
            .skip(offset)
            .take(limit.min(LIST_LIMIT))
            .filter_map(|id| candidates.get(*id))
            .map(|c| StageView {
                ats_candidate_id: c.id.to_string(),
                stage: c.stage.to_string(),
                revision: c.revision,
            })
            .collect();
        (ids.len(), page)
    }

    /// The whole state as JSON, for dumps (every candidate; see [`AtsState::dump`]).
    pub fn snapshot(self: &Arc<Self>) -> Value {
        let text: Vec<u8> = Arc::clone(self).dump(Page::default()).flatten().collect();
        serde_json::from_slice(&text).unwrap_or(Value::Null)
    }

    /// The state as JSON text, in chunks: `{"total", "offset", "candidates": […],
    /// "access_grants", "exceptions", "faults"}`, the candidates (with their kept
    /// activity) a page in id order.
    ///
    /// A dump of 100,000 candidates is 26 MB of text, and ten times that as a
    /// `serde_json::Value` tree, most of which the allocator then keeps. So the ids are
    /// sorted up front and the records serialized [`DUMP_CHUNK`] at a time, each chunk
    /// under a short hold of the lock: memory holds one chunk, and the mock keeps
    /// serving while a dump is read. Each record is consistent; a dump taken under
    /// load is not one instant.
    pub fn dump(self: Arc<Self>, page: Page) -> Dump {
        let mut ids: Vec<Arc<str>> = {
            let candidates = lock(&self.candidates);
            match &page.candidate {
                Some(id) => candidates
                    .get_key_value(id.as_str())
                    .map(|(k, _)| Arc::clone(k))
                    .into_iter()
                    .collect(),
                None => candidates.keys().cloned().collect(),
            }
        };
        ids.sort_unstable();
        let total = ids.len();
        let start = page.offset.min(total);
        let end = page
            .limit
            .map_or(total, |limit| start.saturating_add(limit).min(total));
        ids.truncate(end);
        ids.drain(..start);
        let head = format!(
            "{{\"total\":{total},\"offset\":{},\"candidates\":[",
            page.offset
        );
        Dump {
            state: self,
            ids: ids.into_iter(),
            head: Some(head.into_bytes()),
            first: true,
            done: false,
        }
    }
}

/// Candidate records serialized per chunk of a dump.
pub const DUMP_CHUNK: usize = 512;

/// A dump of the mock ATS's state, chunk by chunk ([`AtsState::dump`]).
#[derive(Debug)]
pub struct Dump {
    state: Arc<AtsState>,
    ids: std::vec::IntoIter<Arc<str>>,
    head: Option<Vec<u8>>,
    first: bool,
    done: bool,
}

impl Iterator for Dump {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(head) = self.head.take() {
            return Some(head);
        }
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        let chunk: Vec<Arc<str>> = self.ids.by_ref().take(DUMP_CHUNK).collect();
        if !chunk.is_empty() {
            let candidates = lock(&self.state.candidates);
            // A candidate cannot leave the ATS, but a missing one is skipped, not a panic.
            for record in chunk.iter().filter_map(|id| candidates.get(&**id)) {
                if !std::mem::take(&mut self.first) {
                    out.push(b',');
                }
                // Plain fields and string-keyed maps serialize into memory without failing.
                let _ = serde_json::to_writer(&mut out, &RecordView::of(record));
            }
            return Some(out);
        }
        self.done = true;
        #[derive(Serialize)]
        struct Tail<'a> {
            access_grants: &'a [AccessGrant],
            exceptions: &'a [ExceptionItem],
            faults: Vec<super::faults::FaultWindow>,
        }
        let grants = lock(&self.state.grants);
        let exceptions = lock(&self.state.exceptions);
        let tail = serde_json::to_vec(&Tail {
            access_grants: &grants,
            exceptions: &exceptions,
            faults: self.state.faults.windows(),
        })
        .unwrap_or_else(|_| b"{}".to_vec());
        // `],` then the tail object's fields, without its opening brace.
        out.extend_from_slice(b"],");
        out.extend_from_slice(tail.get(1..).unwrap_or(b"}"));
        Some(out)
    }
}

/// A candidate's record as dumps show it: [`CandidateState::record`] and the activity.
#[derive(Serialize)]
struct RecordView<'a> {
    activity_count: u64,
    applied: &'a Applied,
    ats_candidate_id: &'a str,
    email: &'a str,
    name: &'a str,
    requisition: &'a Requisition,
    revision: u64,
    stage: &'a str,
    activity: &'a VecDeque<Activity>,
}

impl<'a> RecordView<'a> {
    fn of(c: &'a CandidateState) -> Self {
        RecordView {
            activity_count: c.activity_total,
            applied: &c.applied,
            ats_candidate_id: &c.id,
            email: &c.email,
            name: &c.name,
            requisition: &c.requisition,
            revision: c.revision,
            stage: &c.stage,
            activity: &c.activity,
        }
    }
}

/// Which candidates a dump shows: one by id, or a page in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Only this candidate.
    #[serde(default)]
    pub candidate: Option<String>,
    /// How many candidates, in id order, to skip.
    #[serde(default)]
    pub offset: usize,
    /// How many to show at most; all when absent.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The mock ATS: its routes behind its layers ([`AtsLayers`]).
///
/// The layers go round the whole router once, where `Router::layer` would wrap each
/// route after routing: so the busiest read is answered before any routing
/// ([`read_of`]). Every request, routed or not (404, 405), still passes the layers.
pub fn router(state: Arc<AtsState>) -> Router {
    let routes = routes(Arc::clone(&state));
    Router::new().fallback_service(AtsLayers { state, routes })
}

/// The mock ATS's routes, without its layers.
fn routes(state: Arc<AtsState>) -> Router {
    Router::new()
        .route("/v1/candidates", get(list_candidates))
        .route("/v1/candidates/{id}", get(get_candidate))
        .route("/v1/candidates/{id}/events", posting(post_event))
        .route("/v1/candidates/{id}/access-grants", posting(post_grant))
        .route("/v1/exceptions", posting(post_exception))
        .route("/v1/exceptions/{id}", get(get_exception))
        .fallback(super::no_such_route)
        .with_state(state)
}

/// A `POST` route whose body is limited to [`crate::limits::REQUEST_BODY_BYTES`].
/// Only the routes that read a body carry the limit: it is an extension inserted
/// into every request it sees, two allocations a request on the read path.
fn posting<H, T>(handler: H) -> MethodRouter<Arc<AtsState>>
where
    H: Handler<T, Arc<AtsState>>,
    T: 'static,
{
    post(handler).layer(DefaultBodyLimit::max(
        crate::limits::REQUEST_BODY_BYTES.as_usize(),
    ))
}

/// The ATS's layers, outermost first: every error answered as JSON; count every
/// request, faulted or not (the harness waits for the ATS to go quiet); log the
/// exchange; apply the faults; require the bearer token.
///
/// One hand-written service, rather than a `Router::layer` per concern: each of
/// those wraps every route in one more boxed service cloned on every request, and
/// each `from_fn` also clones and boxes the rest of the stack; on the read path of a
/// load test that was a sixth of the mock's CPU (see the README's benchmarks). It
/// serves `S`, the routes.
#[derive(Clone)]
struct AtsLayers<S> {
    state: Arc<AtsState>,
    routes: S,
}

impl<S> Service<Request> for AtsLayers<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> <Self as Service<Request>>::Future {
        let state = Arc::clone(&self.state);
        let routes = self.routes.clone();
        Box::pin(async move {
            let response = layered(&state, routes, request).await;
            Ok(super::as_json_error(response).await)
        })
    }
}

/// [`AtsLayers`] on one request, inside the JSON errors.
async fn layered<S>(state: &AtsState, routes: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    state
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = &state.log;
    logged(log, Actor::Ats, request, |request| {
        faults::faulted(&state.faults, log, Actor::Ats, request, |request| {
            authorized(&state.token, request, |mut request| async move {
                // Asked as a GET, a HEAD gets the GET's answer, its errors wrapped as
                // JSON and its length; hyper sends no body for a HEAD. The routes would
                // take the body away before `as_json_error` could wrap it.
                if request.method() == axum::http::Method::HEAD {
                    *request.method_mut() = axum::http::Method::GET;
                }
                if let Some(id) = read_of(&request) {
                    return candidate_response(state, id);
                }
                match routes.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            })
        })
    })
    .await
}

fn unknown_candidate(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "unknown candidate",
        json!({"ats_candidate_id": id}),
    )
}

/// `GET /v1/candidates?offset=&limit=`: the query of a page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default = "list_limit")]
    limit: usize,
}

fn list_limit() -> usize {
    LIST_LIMIT
}

async fn list_candidates(
    State(state): State<Arc<AtsState>>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let expected = json!({"offset": "integer >= 0", "limit": "integer 1..=500"});
    let query = match query {
        Ok(axum::extract::Query(query)) if (1..=LIST_LIMIT).contains(&query.limit) => query,
        Ok(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid query",
                json!({"detail": "limit is out of range", "expected": expected}),
            );
        }
        Err(err) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid query",
                json!({"detail": err.body_text(), "expected": expected}),
            );
        }
    };
    let (total, candidates) = state.stages(query.offset, query.limit);
    axum::Json(json!({"total": total, "offset": query.offset, "candidates": candidates}))
        .into_response()
}

/// The candidate id of a `GET /v1/candidates/{id}` that [`candidate_response`] can
/// answer without the router, or `None` for the router to route.
///
/// This is the load test's one route (the integration reads a candidate per event).
/// Through the router it costs the route's lookup, a parameter map, two request
/// extensions, a boxed service and the `Path` extractor's copy: a few per cent of the
/// mock ATS's CPU per request (see the README's benchmarks). Only a plain id is taken,
/// so the answer is the router's: an id with `%` (the router decodes it), an empty
/// one, a longer path and every method but `GET` (a `HEAD` is a `GET` by then) go
/// through the router.
fn read_of(request: &Request) -> Option<&str> {
    if request.method() != axum::http::Method::GET {
        return None;
    }
    let id = request.uri().path().strip_prefix("/v1/candidates/")?;
    (!id.is_empty() && !id.contains(['/', '%'])).then_some(id)
}

async fn get_candidate(State(state): State<Arc<AtsState>>, Path(id): Path<String>) -> Response {
    candidate_response(&state, &id)
}

/// `GET /v1/candidates/{id}`'s answer: the record with its revision as `ETag`.
fn candidate_response(state: &AtsState, id: &str) -> Response {
    let candidates = lock(&state.candidates);
    let Some(candidate) = candidates.get(id) else {
        return unknown_candidate(id);
    };
    let body = candidate.record_json();
    let etag = etag(candidate.revision);
    drop(candidates);
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Ok(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// A revision as its `ETag`, `"3"`, formatted on the stack (the read path's).
fn etag(revision: u64) -> Result<HeaderValue, axum::http::header::InvalidHeaderValue> {
    use std::io::Write;
    // A quote, at most 20 digits, a quote.
    let mut text = [0u8; 22];
    let mut rest = &mut text[..];
    let _ = write!(rest, "\"{revision}\"");
    let len = 22 - rest.len();
    HeaderValue::from_bytes(&text[..len])
}

/// `If-Match` as a revision: `3`, `"3"` and `W/"3"` all mean revision 3.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| "If-Match is not text".to_owned())?;
    let bare = text.trim().trim_start_matches("W/").trim_matches('"');
    bare.parse()
        .map(Some)
        .map_err(|_| format!("If-Match {text:?} is not a revision number"))
}

fn text_at<'v>(payload: &'v Value, key: &str) -> Option<&'v str> {
    payload.get(key).and_then(Value::as_str)
}

async fn post_event(
    State(state): State<Arc<AtsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The candidate first: an unknown one is 404 whatever the body.
    if !lock(&state.candidates).contains_key(id.as_str()) {
        return unknown_candidate(&id);
    }
    // A body that is not JSON (or writes a key twice) breaks its contract like any
    // other: a mapping error with a `malformed` violation, the documented shape.
    let payload: Value = match crate::check::input::parse_payload(&body, 1) {
        Ok(payload) => payload,
        Err(message) => {
            let violation = Violation {
                rule: Rule::Malformed,
                path: String::new(),
                message,
                assertion: None,
            };
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "mapping error",
                json!({"violations": [violation]}),
            );
        }
    };
    let contracts = &state.manifest.contracts;
    let mut violations = Vec::new();
    let mut contract_index = None;
    let contract = match contracts.resolve(&payload) {
        Ok(index) => {
            contract_index = Some(index);
            Some(contracts.at(index))
        }
        Err(violation) => {
            violations.push(violation);
            None
        }
    };
    if let Some(contract) = contract {
        if contract.consumer() != "ats" {
            violations.push(Violation {
                rule: Rule::UnknownType,
                path: "/type".into(),
                message: format!(
                    "contract `{}` is consumed by {}, not by the ATS",
                    contract.name(),
                    contract.consumer()
                ),
                assertion: None,
            });
        }
        contract.check(&payload, &EvalContext::at_now(), &mut violations);
    }
    let envelope = &state.manifest.envelope;
    if let Some(other) = envelope
        .candidate_id_of(&payload)
        .filter(|other| *other != id)
    {
        violations.push(Violation {
            rule: Rule::Assertion,
            path: envelope.candidate_id.json_pointer(),
            message: format!("the event is for `{other}` but was written to candidate `{id}`"),
            assertion: None,
        });
    }
    let idempotency_header = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let entry = |detail: Value| Entry {
        candidate: Some(id.clone()),
        correlation_id: text_at(&payload, "correlation_id").map(str::to_owned),
        event_id: envelope.event_id_of(&payload).map(str::to_owned),
        idempotency_key: envelope.idempotency_key_of(&payload).map(str::to_owned),
        ..Entry::detail(detail)
    };
    let contract_name = contract_index.and_then(|index| state.contract_names.get(index).cloned());
    if !violations.is_empty() {
        state.log.append(
            Actor::Ats,
            "ats.event_rejected",
            entry(json!({"contract": contract_name, "violations": violations, "body": payload})),
        );
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "mapping error",
            json!({"violations": violations}),
        );
    }
    let expected_revision = match if_match(&headers) {
        Ok(revision) => revision,
        Err(problem) => return error(StatusCode::BAD_REQUEST, &problem, json!({})),
    };
    let contract_name = contract_name.unwrap_or_else(|| Arc::from(""));
    let mut candidates = lock(&state.candidates);
    let Some(candidate) = candidates.get_mut(id.as_str()) else {
        return unknown_candidate(&id);
    };
    if let Some(expected) = expected_revision.filter(|r| *r != candidate.revision) {
        state.log.append(
            Actor::Ats,
            "ats.event_conflict",
            entry(json!({"contract": contract_name, "if_match": expected, "revision": candidate.revision})),
        );
        return error(
            StatusCode::CONFLICT,
            "stale revision",
            json!({"revision": candidate.revision, "if_match": expected}),
        );
    }
    candidate.revision += 1;
    let occurred_at = envelope.occurred_at_of(&payload);
    let applied = {
        let mut shared = lock(&state.shared);
        Arc::new(AppliedEvent {
            event_id: envelope.event_id_of(&payload).map(|id| shared.text(id)),
            idempotency_key: envelope
                .idempotency_key_of(&payload)
                .map(|key| shared.text(key)),
            occurred_at: occurred_at.map(|at| shared.time(at)),
        })
    };
    // The header is kept as the key's allocation when it is the key, as it mostly is.
    let header = match (&idempotency_header, &applied.idempotency_key) {
        (Some(header), Some(key)) if header.as_str() == key.as_str() => Some(key.clone()),
        (header, _) => header.as_deref().map(Text::from),
    };
    candidate
        .applied
        .insert(Arc::clone(&contract_name), Arc::clone(&applied));
    candidate.push_activity(Activity {
        revision: candidate.revision,
        contract: Arc::clone(&contract_name),
        event: Arc::clone(&applied),
        idempotency_header: header,
        received_at: chrono::Utc::now(),
    });
    let revision = candidate.revision;
    if let Some(event_id) = &applied.event_id {
        *lock(&state.applied_ids)
            .entry(event_id.clone())
            .or_default() += 1;
    }
    // Logged under the candidates lock so the log's order is the order of application.
    state.log.append(
        Actor::Ats,
        "ats.event_applied",
        entry(json!({"contract": contract_name, "revision": revision, "idempotency_header": idempotency_header, "body": payload})),
    );
    drop(candidates);
    (
        StatusCode::CREATED,
        axum::Json(json!({"revision": revision})),
    )
        .into_response()
}

async fn post_grant(
    State(state): State<Arc<AtsState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !lock(&state.candidates).contains_key(id.as_str()) {
        return unknown_candidate(&id);
    }
    let mut grant: AccessGrant = match serde_json::from_slice(&body) {
        Ok(grant) => grant,
        Err(err) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid access grant",
                json!({"detail": err.to_string(), "expected": {"resource": "interview_link | assessment", "correlation_id": "string"}}),
            );
        }
    };
    let candidates = lock(&state.candidates);
    let Some(candidate) = candidates.get(id.as_str()) else {
        return unknown_candidate(&id);
    };
    let mut grants = lock(&state.grants);
    grant.grant_id = format!("grt_{:06}", grants.len() + 1);
    grant.ats_candidate_id = id.clone();
    grant.revision = candidate.revision;
    state.log.append(
        Actor::Ats,
        "ats.access_granted",
        Entry {
            candidate: Some(id),
            correlation_id: Some(grant.correlation_id.clone()),
            ..Entry::detail(json!({"grant": grant, "applied": candidate.applied}))
        },
    );
    grants.push(grant.clone());
    (StatusCode::CREATED, axum::Json(grant)).into_response()
}

async fn get_exception(State(state): State<Arc<AtsState>>, Path(id): Path<String>) -> Response {
    match lock(&state.exceptions).iter().find(|item| item.id == id) {
        Some(item) => axum::Json(item).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown exception item",
            json!({"id": id}),
        ),
    }
}

async fn post_exception(State(state): State<Arc<AtsState>>, body: Bytes) -> Response {
    let mut item: ExceptionItem = match serde_json::from_slice(&body) {
        Ok(item) => item,
        Err(err) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid exception item",
                json!({"detail": err.to_string(), "expected": {"ats_candidate_id": "string", "reason": "string", "owner": "string", "correlation_id": "string"}}),
            );
        }
    };
    if !lock(&state.candidates).contains_key(item.ats_candidate_id.as_str()) {
        return unknown_candidate(&item.ats_candidate_id);
    }
    let mut exceptions = lock(&state.exceptions);
    item.id = format!("exc_{:06}", exceptions.len() + 1);
    item.status = ExceptionStatus::Open;
    state
        .log
        .append(Actor::Ats, "ats.exception_created", item.entry(json!({})));
    exceptions.push(item.clone());
    (StatusCode::CREATED, axum::Json(item)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use crate::mock::test_support::{candidate, good_event, manifest};

    const TOKEN: &str = "tok";

    #[test]
    fn times_are_shared_and_the_unused_ones_swept() {
        let mut shared = Shared::default();
        let held = shared.time("2026-05-18T09:00:00Z");
        assert!(Arc::ptr_eq(&held, &shared.time("2026-05-18T09:00:00Z")));
        // 2,047 times nothing holds: the set reaches twice the floor, and the next
        // time sweeps them, keeping the one still held.
        for n in 0..2048 {
            shared.time(&format!("2026-05-18T10:{n:04}Z"));
        }
        shared.time("2026-05-18T11:00:00Z");
        assert_eq!(
            shared.times.len(),
            3,
            "the held time and the two since the sweep"
        );
        assert!(Arc::ptr_eq(&held, &shared.time("2026-05-18T09:00:00Z")));
    }

    fn ats() -> (Arc<AtsState>, Router) {
        let log = ObservationLog::to_writer(Box::new(std::io::sink()), "test");
        let state = Arc::new(AtsState::new(
            manifest(),
            &[candidate("CAND_canary_001")],
            TOKEN,
            1,
            log,
        ));
        (Arc::clone(&state), router(state))
    }

    fn request(method: &str, path: &str, body: Option<Value>) -> axum::http::request::Builder {
        let builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        if body.is_some() {
            builder.header(header::CONTENT_TYPE, "application/json")
        } else {
            builder
        }
    }

    async fn send(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (status, headers, body)
    }

    #[test]
    fn etags_are_the_quoted_revision() {
        for revision in [0, 1, 42, u64::MAX] {
            let etag = etag(revision).expect("a valid header");
            assert_eq!(etag.to_str().expect("text"), format!("\"{revision}\""));
            assert_eq!(
                if_match_revision(&etag),
                Some(revision),
                "If-Match reads it back"
            );
        }
    }

    fn if_match_revision(value: &HeaderValue) -> Option<u64> {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, value.clone());
        if_match(&headers).expect("a revision")
    }

    #[test]
    fn the_read_path_serialises_the_very_bytes_of_the_record() {
        let shared = &mut Shared::default();
        let fresh = CandidateState::new(&candidate("CAND_canary_002"), shared);
        let through_value = serde_json::to_vec(&fresh.record()).expect("serialises");
        assert_eq!(
            String::from_utf8(fresh.record_json()).expect("utf-8"),
            String::from_utf8(through_value).expect("utf-8"),
            "nothing applied yet"
        );
        let mut state = CandidateState::new(&candidate("CAND_canary_001"), shared);
        Arc::make_mut(&mut state.requisition).tags = vec!["canary-il".into(), "b\"q".into()];
        state.name = "Zoë \"Ğ\" Gürsoy".into();
        state.revision = 4;
        state.activity_total = 3;
        // `b` twice: the second replaces the first, and the map stays in contract order.
        for (contract, event) in [
            ("b.contract", Some("evt_1")),
            ("b.contract", Some("evt_2")),
            ("a.contract", None),
        ] {
            state.applied.insert(
                contract.into(),
                Arc::new(AppliedEvent {
                    event_id: event.map(Text::from),
                    idempotency_key: Some("key".into()),
                    occurred_at: None,
                }),
            );
        }
        assert_eq!(
            state.applied.iter().map(|(c, _)| c).collect::<Vec<_>>(),
            ["a.contract", "b.contract"]
        );
        assert_eq!(
            state.applied["b.contract"].event_id.as_deref(),
            Some("evt_2")
        );
        let through_value = serde_json::to_vec(&state.record()).expect("serialises");
        assert_eq!(
            String::from_utf8(state.record_json()).expect("utf-8"),
            String::from_utf8(through_value).expect("utf-8")
        );
        Arc::make_mut(&mut state.requisition).tags.clear();
        let through_value = serde_json::to_vec(&state.record()).expect("serialises");
        assert_eq!(
            String::from_utf8(state.record_json()).expect("utf-8"),
            String::from_utf8(through_value).expect("utf-8"),
            "no tags"
        );
    }

    fn post(path: &str, body: &Value) -> Request<Body> {
        request("POST", path, Some(body.clone()))
            .body(Body::from(body.to_string()))
            .expect("valid request")
    }

    #[tokio::test]
    async fn reads_candidates_with_revision_etag() {
        let (_, router) = ats();
        let (status, headers, body) = send(
            &router,
            request("GET", "/v1/candidates/CAND_canary_001", None)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::ETAG], "\"1\"");
        assert_eq!(body["revision"], 1);
        assert_eq!(body["stage"], INITIAL_STAGE);
        assert_eq!(body["requisition"]["tags"][0], "canary-il");
        let (status, _, _) = send(
            &router,
            request("GET", "/v1/candidates/nobody", None)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn only_a_plain_get_of_one_candidate_skips_the_router() {
        let rows = [
            (
                "GET",
                "/v1/candidates/CAND_canary_001",
                Some("CAND_canary_001"),
            ),
            (
                "GET",
                "/v1/candidates/CAND_canary_001?x=1",
                Some("CAND_canary_001"),
            ),
            ("GET", "/v1/candidates/nobody", Some("nobody")),
            ("HEAD", "/v1/candidates/CAND_canary_001", None),
            ("POST", "/v1/candidates/CAND_canary_001", None),
            ("GET", "/v1/candidates/CAND%5Fcanary_001", None),
            ("GET", "/v1/candidates/", None),
            ("GET", "/v1/candidates", None),
            ("GET", "/v1/candidates/CAND_canary_001/", None),
            ("GET", "/v1/candidates/CAND_canary_001/events", None),
            ("GET", "/v2/candidates/CAND_canary_001", None),
        ];
        for (method, path, id) in rows {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .expect("request");
            assert_eq!(read_of(&request), id, "{method} {path}");
        }
    }

    /// `METHOD path` with the bearer token on a new connection to `addr`: the answer as
    /// it came over the wire, less its `date` header, its lines sorted (header order
    /// is not part of an answer).
    async fn wire(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("sent");
        let mut out = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.read_to_end(&mut out),
        )
        .await
        .expect("answered in time")
        .expect("read");
        let text = String::from_utf8(out).expect("utf-8");
        let mut lines = text
            .split("\r\n")
            .filter(|line| !line.starts_with("date:"))
            .collect::<Vec<_>>();
        lines.sort_unstable();
        lines.join("\r\n")
    }

    #[tokio::test]
    async fn the_read_without_the_router_answers_as_the_router_does() {
        let (state, layered) = ats();
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let fast = crate::http::RunningServer::start(layered, any)
            .await
            .expect("binds");
        let routed = crate::http::RunningServer::start(routes(state), any)
            .await
            .expect("binds");
        for (path, status) in [
            ("/v1/candidates/CAND_canary_001", "HTTP/1.1 200 OK"),
            ("/v1/candidates/CAND%5Fcanary_001", "HTTP/1.1 200 OK"),
            ("/v1/candidates/nobody", "HTTP/1.1 404 Not Found"),
        ] {
            for method in ["GET", "HEAD"] {
                let answer = wire(fast.addr(), method, path).await;
                assert!(answer.contains(status), "{method} {path}: {answer}");
                assert!(
                    answer.contains("content-length: "),
                    "{method} {path}: {answer}"
                );
                let routed = wire(routed.addr(), method, path).await;
                assert_eq!(answer, routed, "{method} {path}");
            }
        }
        fast.shutdown().await;
        routed.shutdown().await;
    }

    #[tokio::test]
    async fn every_call_needs_the_bearer_token() {
        let (state, router) = ats();
        for token in [None, Some("Bearer wrong"), Some("tok")] {
            let mut req = Request::builder().uri("/v1/candidates/CAND_canary_001");
            if let Some(token) = token {
                req = req.header(header::AUTHORIZATION, token);
            }
            let (status, _, _) = send(&router, req.body(Body::empty()).expect("request")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        }
        assert_eq!(
            state.requests(),
            3,
            "refused requests count too: the ATS was not quiet"
        );
    }

    #[tokio::test]
    async fn accepted_events_bump_the_revision_without_deduplication() {
        let (state, router) = ats();
        let event = good_event("CAND_canary_001");
        for expected in [2, 3] {
            let (status, _, body) = send(
                &router,
                post("/v1/candidates/CAND_canary_001/events", &event),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(
                body["revision"], expected,
                "the same event applies twice: the ATS does not deduplicate"
            );
        }
        let candidate = state.candidate("CAND_canary_001").expect("seeded");
        assert_eq!(candidate.activity_total, 2);
        assert_eq!(
            state.times_applied("evt_1"),
            2,
            "the harness can see the duplicate"
        );
        assert_eq!(
            candidate.applied["identity.verification.completed"]
                .event_id
                .as_deref(),
            Some("evt_1")
        );
    }

    #[tokio::test]
    async fn contract_breaking_bodies_are_mapping_errors() {
        let (state, router) = ats();
        // (mutation, rule expected in the violations, why)
        type Mutation = fn(&mut Value);
        let rows: [(Mutation, &str, &str); 4] = [
            (
                |e| {
                    e["verification"]
                        .as_object_mut()
                        .map(|v| v.remove("session_id"));
                },
                "required_field",
                "a required field missing",
            ),
            (
                |e| e["verification"]["result"] = json!("pased"),
                "enum",
                "an enum value misspelt",
            ),
            (
                |e| e["type"] = json!("identity.verified"),
                "unknown_type",
                "no such contract",
            ),
            (
                |e| e["ats_candidate_id"] = json!("CAND_canary_999"),
                "assertion",
                "written to another candidate",
            ),
        ];
        for (mutate, rule, why) in rows {
            let mut event = good_event("CAND_canary_001");
            mutate(&mut event);
            let (status, _, body) = send(
                &router,
                post("/v1/candidates/CAND_canary_001/events", &event),
            )
            .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}");
            assert_eq!(body["error"], "mapping error", "{why}");
            let rules: Vec<&str> = body["violations"]
                .as_array()
                .expect("violations")
                .iter()
                .filter_map(|v| v["rule"].as_str())
                .collect();
            assert!(rules.contains(&rule), "{why}: {rules:?}");
        }
        assert_eq!(
            state.candidate("CAND_canary_001").expect("seeded").revision,
            1,
            "nothing was applied"
        );
        let (status, _, _) = send(
            &router,
            request("POST", "/v1/candidates/CAND_canary_001/events", None)
                .body(Body::from("{nope"))
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "malformed JSON");
    }

    #[tokio::test]
    async fn stale_if_match_is_a_conflict() {
        let (_, router) = ats();
        let event = good_event("CAND_canary_001");
        let with_if_match = |value: &str| {
            request(
                "POST",
                "/v1/candidates/CAND_canary_001/events",
                Some(event.clone()),
            )
            .header(header::IF_MATCH, value)
            .body(Body::from(event.to_string()))
            .expect("request")
        };
        let (status, _, _) = send(&router, with_if_match("\"1\"")).await;
        assert_eq!(status, StatusCode::CREATED, "current revision");
        let (status, _, body) = send(&router, with_if_match("1")).await;
        assert_eq!(status, StatusCode::CONFLICT, "revision 1 is stale now");
        assert_eq!(body["revision"], 2);
        let (status, _, _) = send(&router, with_if_match("W/\"2\"")).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "weak validators name the revision too"
        );
    }

    #[tokio::test]
    async fn grants_and_exceptions_are_recorded() {
        let (state, router) = ats();
        let (status, _, body) = send(
            &router,
            post(
                "/v1/candidates/CAND_canary_001/access-grants",
                &json!({"resource": "interview_link", "correlation_id": "c1"}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["grant_id"], "grt_000001");
        let (status, _, _) = send(
            &router,
            post(
                "/v1/candidates/CAND_canary_001/access-grants",
                &json!({"resource": "repository", "correlation_id": "c1"}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unknown resource");
        let item = json!({"ats_candidate_id": "CAND_canary_001", "reason": "name_mismatch", "owner": "security", "correlation_id": "c1"});
        let (status, _, body) = send(&router, post("/v1/exceptions", &item)).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["id"], "exc_000001");
        assert_eq!(state.grants().len(), 1);
        assert_eq!(state.exceptions()[0].reason, "name_mismatch");
    }

    #[tokio::test]
    async fn an_applied_event_holds_the_expected_ids_not_copies() {
        let (state, router) = ats();
        let (id, key) = (Text::from("evt_1"), Text::from("idk_1"));
        state.expect_texts([id.clone(), key.clone()]);
        let event = good_event("CAND_canary_001");
        let with_key = request(
            "POST",
            "/v1/candidates/CAND_canary_001/events",
            Some(Value::Null),
        )
        .header("idempotency-key", "idk_1")
        .body(Body::from(event.to_string()))
        .expect("valid request");
        let (status, _, _) = send(&router, with_key).await;
        assert!(status.is_success(), "{status}");
        let record = state.candidate("CAND_canary_001").expect("seeded");
        let applied = &record.applied["identity.verification.completed"];
        let held = |t: &Option<Text>| t.clone().expect("kept");
        assert!(
            held(&applied.event_id).is_same(&id),
            "the expected id itself"
        );
        assert!(held(&applied.idempotency_key).is_same(&key));
        assert!(held(&record.activity[0].idempotency_header).is_same(&key));
        // An id nobody announced is kept as a copy of its own, equal to what was sent.
        let mut other = good_event("CAND_canary_001");
        other["event_id"] = json!("evt_2");
        other["idempotency_key"] = json!("idk_2");
        let (status, _, _) = send(
            &router,
            post("/v1/candidates/CAND_canary_001/events", &other),
        )
        .await;
        assert!(status.is_success(), "{status}");
        let record = state.candidate("CAND_canary_001").expect("seeded");
        let applied = &record.applied["identity.verification.completed"];
        assert_eq!(held(&applied.event_id), "evt_2");
        assert!(!held(&applied.event_id).is_same(&id));
        assert_eq!(state.times_applied("evt_1"), 1);
        assert_eq!(state.times_applied("evt_2"), 1);
    }

    #[tokio::test]
    async fn faults_answer_before_the_handler() {
        use super::super::faults::{FaultKind, FaultWindow};
        let (state, router) = ats();
        let event = good_event("CAND_canary_001");
        state
            .faults
            .set(vec![FaultWindow::always(FaultKind::Outage)])
            .expect("valid");
        let (status, _, _) = send(
            &router,
            post("/v1/candidates/CAND_canary_001/events", &event),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        state
            .faults
            .set(vec![FaultWindow::always(FaultKind::RateLimit {
                retry_after_secs: 3,
            })])
            .expect("valid");
        let (status, headers, _) = send(
            &router,
            post("/v1/candidates/CAND_canary_001/events", &event),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "3");
        assert_eq!(
            state.candidate("CAND_canary_001").expect("seeded").revision,
            1,
            "faulted writes are not applied"
        );

        state
            .faults
            .set(vec![FaultWindow::always(FaultKind::CommitThenDrop {
                rate: 1.0,
            })])
            .expect("valid");
        let answer = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            router
                .clone()
                .oneshot(post("/v1/candidates/CAND_canary_001/events", &event)),
        )
        .await;
        assert!(answer.is_err(), "commit-then-drop never answers");
        assert_eq!(
            state.candidate("CAND_canary_001").expect("seeded").revision,
            2,
            "but the write was applied"
        );
    }

    #[tokio::test]
    async fn every_other_fault_acts_through_the_router_too() {
        use super::super::faults::{FaultKind, FaultWindow};
        use std::time::{Duration, Instant};
        let (state, router) = ats();
        let read = || {
            request("GET", "/v1/candidates/CAND_canary_001", None)
                .body(Body::empty())
                .expect("request")
        };
        let set = |fault: FaultKind| {
            state
                .faults
                .set(vec![FaultWindow::always(fault)])
                .expect("valid")
        };

        set(FaultKind::ErrorRate { rate: 1.0 });
        let (status, _, body) = send(&router, read()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "rate 1 fails all");
        assert_eq!(body["injected"], "error_rate");
        set(FaultKind::ErrorRate { rate: 0.0 });
        let (status, _, _) = send(&router, read()).await;
        assert_eq!(status, StatusCode::OK, "rate 0 fails none");

        set(FaultKind::Latency { millis: 120 });
        let started = Instant::now();
        let (status, _, _) = send(&router, read()).await;
        assert_eq!(status, StatusCode::OK, "slow, but answered");
        assert!(started.elapsed() >= Duration::from_millis(120), "held back");

        state
            .faults
            .set(vec![FaultWindow {
                fault: FaultKind::Outage,
                from_ms: 60_000,
                for_ms: Some(1_000),
            }])
            .expect("valid");
        let (status, _, _) = send(&router, read()).await;
        assert_eq!(status, StatusCode::OK, "a window not yet open does nothing");

        for fault in [FaultKind::Timeout, FaultKind::Reset] {
            let why = fault.name();
            set(fault);
            let answer = tokio::time::timeout(
                Duration::from_millis(200),
                router.clone().oneshot(post(
                    "/v1/candidates/CAND_canary_001/events",
                    &good_event("CAND_canary_001"),
                )),
            )
            .await;
            assert!(answer.is_err(), "{why}: never answers");
        }
        state.faults.clear();
        assert_eq!(
            state.candidate("CAND_canary_001").expect("seeded").revision,
            1,
            "neither a hung nor a reset write is applied"
        );
        let (status, _, _) = send(&router, read()).await;
        assert_eq!(status, StatusCode::OK, "cleared");
    }

    #[tokio::test]
    async fn dumps_page_through_candidates_in_id_order() {
        let log = ObservationLog::to_writer(Box::new(std::io::sink()), "test");
        let ids = ["CAND_c", "CAND_a", "CAND_b"];
        let candidates: Vec<SandboxCandidate> = ids.iter().map(|id| candidate(id)).collect();
        let state = Arc::new(AtsState::new(manifest(), &candidates, TOKEN, 1, log));
        let dump = |page: Page| -> Value {
            let text: Vec<u8> = Arc::clone(&state).dump(page).flatten().collect();
            serde_json::from_slice(&text).expect("a dump is JSON")
        };
        let listed = |value: &Value| -> Vec<String> {
            value["candidates"]
                .as_array()
                .expect("a list")
                .iter()
                .filter_map(|c| c["ats_candidate_id"].as_str().map(str::to_owned))
                .collect()
        };
        let all = dump(Page::default());
        assert_eq!(listed(&all), ["CAND_a", "CAND_b", "CAND_c"]);
        assert_eq!(all["total"], 3);
        assert_eq!(all["candidates"][0]["activity"], json!([]));
        assert!(all["access_grants"].is_array() && all["faults"].is_array());
        let page = dump(Page {
            offset: 1,
            limit: Some(1),
            candidate: None,
        });
        assert_eq!(listed(&page), ["CAND_b"]);
        let past = dump(Page {
            offset: 9,
            limit: None,
            candidate: None,
        });
        assert_eq!(listed(&past), Vec::<String>::new());
        let one = dump(Page {
            candidate: Some("CAND_c".into()),
            ..Page::default()
        });
        assert_eq!(
            (listed(&one), &one["total"]),
            (vec!["CAND_c".to_owned()], &json!(1))
        );
        assert_eq!(
            state.snapshot()["candidates"][2]["ats_candidate_id"],
            "CAND_c"
        );
    }
}
