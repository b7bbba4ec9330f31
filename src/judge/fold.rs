//! The streaming judge: every check is a fold over the observation log, which is read
//! once, in order, and never held whole.
//!
//! A check keeps compact state (counts, first and last sequence numbers, a few strings
//! per event) and cites the records behind a finding by `seq` ([`Cite`]). After the
//! pass, one more read of the log fetches only the cited records and turns them into
//! the findings' exchanges, so a finding still shows the exchanges that led to it while
//! the judge's memory follows the number of events, not the size of the log.
//!
//! Before a record reaches the checks, [`Seen`] notes what every check may want to
//! know about the log so far: its latest time, the scenarios' marks, whether the
//! integration's output is in the log, and a per-event [`Ledger`] of delivery
//! attempts, applications and refusals (each a sequence number and a status).

use std::collections::{BTreeSet, HashMap, HashSet};

use hashbrown::{DefaultHashBuilder, HashTable};
use indexmap::IndexSet;
use smallvec::SmallVec;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use super::contracts::ContractPass;
use super::kill_switch::KillSwitchRecords;
use super::run::{
    Outcome, body_event_id, finding_about, record_time, scenario_in, summarize_exchanges,
};
use super::{Exchange, Finding};
use crate::manifest::Manifest;
use crate::observe::Record;
use crate::observe::stream::{self, StreamError};
use crate::run::plan::{Plan, PlannedCandidate, PlannedEvent, Scenario};

/// The plan, indexed by candidate, event id and idempotency key.
pub(crate) struct PlanIndex<'a> {
    /// The plan itself.
    pub(crate) plan: &'a Plan,
    candidates: Places,
    events: Places,
    keys: Places,
}

/// The plan's texts of one kind (candidate ids, event ids, keys) by place: a table of
/// places, four bytes each, whose texts are read from the plan, where a map keyed by
/// the texts would hold a sixteen-byte reference beside each place.
struct Places {
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Places {
    /// The places `0..count`, whose texts `text` reads; of equal texts the last place
    /// is kept.
    fn new<'a>(count: usize, text: impl Fn(usize) -> &'a str) -> Self {
        let hasher = DefaultHashBuilder::default();
        let mut table = HashTable::with_capacity(count);
        for i in 0..count {
            let here = text(i);
            let hash = hasher.hash_one(here);
            match table.find_mut(hash, |&j: &u32| text(j as usize) == here) {
                Some(place) => *place = i as u32,
                None => {
                    table.insert_unique(hash, i as u32, |&j: &u32| {
                        hasher.hash_one(text(j as usize))
                    });
                }
            }
        }
        Places { table, hasher }
    }

    /// The place of `wanted`, whose texts `text` reads.
    fn get<'a>(&self, wanted: &str, text: impl Fn(usize) -> &'a str) -> Option<u32> {
        let hash = self.hasher.hash_one(wanted);
        self.table
            .find(hash, |&j| text(j as usize) == wanted)
            .copied()
    }
}

impl<'a> PlanIndex<'a> {
    /// Indexes a plan.
    pub(crate) fn new(plan: &'a Plan) -> Self {
        PlanIndex {
            plan,
            candidates: Places::new(plan.candidates.len(), |i| {
                plan.candidates[i].candidate.as_str()
            }),
            events: Places::new(plan.events.len(), |i| plan.events[i].event_id.as_str()),
            keys: Places::new(plan.events.len(), |i| {
                plan.events[i].idempotency_key.as_str()
            }),
        }
    }

    fn candidate_place(&self, id: &str) -> Option<u32> {
        let candidates = &self.plan.candidates;
        self.candidates
            .get(id, |i| candidates[i].candidate.as_str())
    }

    /// The planned candidate with this id.
    pub(crate) fn candidate(&self, id: &str) -> Option<&'a PlannedCandidate> {
        let plan = self.plan;
        self.candidate_place(id)
            .map(|i| &plan.candidates[i as usize])
    }

    /// The position of a planned candidate in the plan.
    pub(crate) fn candidate_index(&self, id: &str) -> Option<u32> {
        self.candidate_place(id)
    }

    /// The planned event with this id.
    pub(crate) fn event(&self, event_id: &str) -> Option<&'a PlannedEvent> {
        let plan = self.plan;
        self.event_index(event_id).map(|i| &plan.events[i as usize])
    }

    /// The position of a planned event in the plan.
    pub(crate) fn event_index(&self, event_id: &str) -> Option<u32> {
        let events = &self.plan.events;
        self.events.get(event_id, |i| events[i].event_id.as_str())
    }

    /// The position in the plan of the planned event with this idempotency key.
    pub(crate) fn key_index(&self, key: &str) -> Option<u32> {
        let events = &self.plan.events;
        self.keys.get(key, |i| events[i].idempotency_key.as_str())
    }

    /// The scenario a candidate belongs to.
    pub(crate) fn scenario_of(&self, candidate: Option<&str>) -> Option<Scenario> {
        candidate
            .and_then(|c| self.candidate(c))
            .map(|c| c.scenario)
    }
}

/// A field of a planned event that a fold may keep a record's value of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `event_id`.
    EventId,
    /// `idempotency_key`.
    IdempotencyKey,
    /// `candidate`.
    Candidate,
    /// `correlation_id`.
    CorrelationId,
    /// `contract`.
    Contract,
    /// `occurred_at`.
    OccurredAt,
}

impl Field {
    const ALL: [Field; 6] = [
        Field::EventId,
        Field::IdempotencyKey,
        Field::Candidate,
        Field::CorrelationId,
        Field::Contract,
        Field::OccurredAt,
    ];

    /// The planned event's value of this field.
    fn of(self, event: &PlannedEvent) -> &str {
        match self {
            Field::EventId => &event.event_id,
            Field::IdempotencyKey => &event.idempotency_key,
            Field::Candidate => &event.candidate,
            Field::CorrelationId => &event.correlation_id,
            Field::Contract => &event.contract,
            Field::OccurredAt => &event.occurred_at,
        }
    }
}

/// A text a fold keeps per event, in four bytes: which field of which planned event
/// holds the same text (nearly always), or which of the fold's own copies it is
/// ([`Keeper`]) when the plan has no such event or says otherwise. A 100,000-candidate
/// run keeps hundreds of thousands of them. Held inverted, so that no value is zero
/// and an `Option<Kept>` is four bytes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Kept(std::num::NonZeroU32);

impl Kept {
    /// The kept value `value` (never `u32::MAX`: own copies stop one short of it).
    fn new(value: u32) -> Self {
        Kept(std::num::NonZeroU32::new(!value).unwrap_or(std::num::NonZeroU32::MIN))
    }

    /// The value [`Kept::new`] was given.
    fn value(self) -> u32 {
        !self.0.get()
    }
}

/// Set on a [`Kept`] that is one of the fold's own copies.
const OWN: u32 = 1 << 31;
/// Where a [`Kept`] of the plan holds its [`Field`].
const FIELD_SHIFT: u32 = 28;
/// The bits of a [`Kept`] that hold a position (in the plan or in the own copies).
const PLACE: u32 = (1 << FIELD_SHIFT) - 1;

/// The texts a fold kept that the plan does not hold, and the way back from a
/// [`Kept`] to its text.
#[derive(Debug, Default)]
pub(crate) struct Keeper {
    own: Vec<Box<str>>,
}

impl Keeper {
    /// Keeps `text`, a record's value of `field` of the event `event` (if the record
    /// has one): as the plan's copy when the plan holds that event with that very value.
    pub(crate) fn keep(
        &mut self,
        plan: &PlanIndex<'_>,
        event: Option<&str>,
        text: Option<&str>,
        field: Field,
    ) -> Option<Kept> {
        text.map(|text| self.keep_one(plan, event, text, field))
    }

    /// Keeps whom `record` is about, its event being `event`: its candidate and its
    /// correlation id.
    pub(crate) fn whom(
        &mut self,
        plan: &PlanIndex<'_>,
        event: Option<&str>,
        record: &Record,
    ) -> (Option<Kept>, Option<Kept>) {
        (
            self.keep(plan, event, record.candidate.as_deref(), Field::Candidate),
            self.keep(
                plan,
                event,
                record.correlation_id.as_deref(),
                Field::CorrelationId,
            ),
        )
    }

    fn keep_one(
        &mut self,
        plan: &PlanIndex<'_>,
        event: Option<&str>,
        text: &str,
        field: Field,
    ) -> Kept {
        let planned = event
            .and_then(|id| plan.event_index(id))
            .filter(|&i| i <= PLACE && field.of(&plan.plan.events[i as usize]) == text);
        match planned {
            Some(i) => Kept::new(((field as u32) << FIELD_SHIFT) | i),
            None => {
                // Past 2^31 - 1 own copies (never, in memory that holds them) the
                // newest is shared rather than numbered into the plan's range.
                let n = (self.own.len() as u32).min(OWN - 2);
                self.own.push(text.into());
                Kept::new(OWN | n)
            }
        }
    }

    /// The text `kept` stands for, if anything was kept.
    pub(crate) fn text<'t>(&'t self, plan: &PlanIndex<'t>, kept: Option<Kept>) -> Option<&'t str> {
        kept.map(|kept| self.text_of(plan, kept))
    }

    fn text_of<'t>(&'t self, plan: &PlanIndex<'t>, kept: Kept) -> &'t str {
        let kept = kept.value();
        if kept & OWN != 0 {
            let n = (kept & !OWN) as usize;
            return self.own.get(n).or(self.own.last()).map_or("?", |t| t);
        }
        let field = Field::ALL[(kept >> FIELD_SHIFT) as usize];
        field.of(&plan.plan.events[(kept & PLACE) as usize])
    }
}

/// Ids (event ids and idempotency keys) as numbers a fold keys its state by, so that
/// it holds no copy of them: a planned event's id is `2i` and its key `2i + 1`
/// (`i` its place in the plan), and any other id is numbered on from there, in the
/// order the fold first meets it.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    others: IndexSet<Box<str>>,
}

impl Ids {
    /// The number of `id`, if it is planned or was numbered.
    pub(crate) fn number(&self, plan: &PlanIndex<'_>, id: &str) -> Option<u32> {
        plan.event_index(id)
            .map(|i| 2 * i)
            .or_else(|| plan.key_index(id).map(|i| 2 * i + 1))
            .or_else(|| {
                let base = 2 * plan.plan.events.len();
                self.others.get_index_of(id).map(|n| (base + n) as u32)
            })
    }

    /// [`Ids::number`], numbering `id` if it has none yet.
    pub(crate) fn number_or_new(&mut self, plan: &PlanIndex<'_>, id: &str) -> u32 {
        if let Some(n) = self.number(plan, id) {
            return n;
        }
        let base = 2 * plan.plan.events.len();
        let (n, _) = self.others.insert_full(id.into());
        (base + n) as u32
    }

    /// The id numbered `n`.
    pub(crate) fn text<'t>(&'t self, plan: &PlanIndex<'t>, n: u32) -> &'t str {
        let events = &plan.plan.events;
        match events.get(n as usize / 2) {
            Some(event) if n.is_multiple_of(2) => &event.event_id,
            Some(event) => &event.idempotency_key,
            None => self
                .others
                .get_index(n as usize - 2 * events.len())
                .map_or("?", |t| t),
        }
    }
}

/// A fold's state per numbered id ([`Ids`]): for the planned events' ids, in a vector
/// by number (no hashing, no spare room: nearly every planned id fills its place);
/// for any other id, in a map.
#[derive(Debug)]
pub(crate) struct ByNumber<T> {
    dense: Vec<Option<T>>,
    others: HashMap<u32, T>,
    /// How many numbers the vector covers (`2 × events`).
    planned: u32,
    /// Which numbers below `planned` have a place: all (1), or every second from
    /// `phase` (2).
    stride: u32,
    phase: u32,
}

impl<T> ByNumber<T> {
    /// State for the ids and the keys of the planned events (numbers `2i` and `2i + 1`).
    pub(crate) fn ids_and_keys(plan: &PlanIndex<'_>) -> Self {
        Self::with(plan, 1, 0)
    }

    /// State for the keys of the planned events (numbers `2i + 1`): other numbers are
    /// kept in the map.
    pub(crate) fn keys(plan: &PlanIndex<'_>) -> Self {
        Self::with(plan, 2, 1)
    }

    /// State for the ids of the planned events (numbers `2i`).
    pub(crate) fn ids(plan: &PlanIndex<'_>) -> Self {
        Self::with(plan, 2, 0)
    }

    fn with(plan: &PlanIndex<'_>, stride: u32, phase: u32) -> Self {
        ByNumber {
            dense: Vec::new(),
            others: HashMap::new(),
            planned: (2 * plan.plan.events.len()).min(u32::MAX as usize) as u32,
            stride,
            phase,
        }
    }

    /// The place of `n` in the vector, if it has one.
    fn place(&self, n: u32) -> Option<usize> {
        (n < self.planned && n % self.stride == self.phase).then_some((n / self.stride) as usize)
    }

    /// The state of `n`, if any.
    pub(crate) fn get(&self, n: u32) -> Option<&T> {
        match self.place(n) {
            Some(i) => self.dense.get(i).and_then(Option::as_ref),
            None => self.others.get(&n),
        }
    }

    /// Sets the state of `n`.
    pub(crate) fn insert(&mut self, n: u32, state: T) {
        match self.place(n) {
            Some(i) => {
                if self.dense.is_empty() {
                    let places = (self.planned / self.stride) as usize;
                    self.dense.resize_with(places, || None);
                }
                self.dense[i] = Some(state);
            }
            None => {
                self.others.insert(n, state);
            }
        }
    }
}

/// Where a record is in the log: its `seq` and `elapsed_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Mark {
    /// The record's `seq`.
    pub(crate) seq: u64,
    /// The record's `elapsed_ms`.
    pub(crate) elapsed_ms: f64,
}

impl Mark {
    /// Where `record` is.
    pub(crate) fn of(record: &Record) -> Self {
        Mark {
            seq: record.seq,
            elapsed_ms: record.elapsed_ms,
        }
    }
}

/// What happened to one event id: its deliveries, applications and refusals. Nearly
/// every event is delivered and applied once and refused never, so each list keeps
/// one entry in place and allocates only for a second.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventLedger {
    /// `webhook.attempt` records: seq and HTTP status (none: no answer).
    pub(crate) attempts: SmallVec<[(u64, Option<u16>); 1]>,
    /// `ats.event_applied` records, in application order.
    pub(crate) applied: SmallVec<[Mark; 1]>,
    /// `ats.event_rejected` records.
    pub(crate) rejected: SmallVec<[u64; 1]>,
}

impl EventLedger {
    /// The seqs of the attempts.
    pub(crate) fn attempt_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.attempts.iter().map(|(seq, _)| *seq)
    }

    /// The seqs of the applications.
    pub(crate) fn applied_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.applied.iter().map(|m| m.seq)
    }
}

/// Per event id, what happened to it; planned events by their place in the plan (no
/// key copied, no hashing: every planned event is sent, so nearly every place fills),
/// others by their id.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    planned: Vec<EventLedger>,
    other: HashMap<Box<str>, EventLedger>,
}

impl Ledger {
    fn entry(&mut self, plan: &PlanIndex<'_>, event_id: &str) -> &mut EventLedger {
        match plan.event_index(event_id) {
            Some(i) => {
                if self.planned.is_empty() {
                    self.planned
                        .resize_with(plan.plan.events.len(), EventLedger::default);
                }
                &mut self.planned[i as usize]
            }
            None => self.other.entry(event_id.into()).or_default(),
        }
    }

    /// What happened to `event_id` so far (an empty ledger when nothing did).
    pub(crate) fn of(&self, plan: &PlanIndex<'_>, event_id: &str) -> &EventLedger {
        static EMPTY: EventLedger = EventLedger {
            attempts: SmallVec::new_const(),
            applied: SmallVec::new_const(),
            rejected: SmallVec::new_const(),
        };
        match plan.event_index(event_id) {
            Some(i) => self.planned.get(i as usize),
            None => self.other.get(event_id),
        }
        .unwrap_or(&EMPTY)
    }
}

/// What the judge has seen of the log so far, updated before each record reaches the
/// checks; once the log has ended it describes the whole log.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// The time of the newest record so far: `now()` for the vendor's copies.
    pub(crate) last_at: Option<DateTime<Utc>>,
    /// Whether `integration.ready` was logged (the harness started the integration,
    /// so what it printed is in the log).
    pub(crate) output_visible: bool,
    /// How many lines the integration printed.
    pub(crate) output_lines: usize,
    /// How many `webhook.attempt` records there were.
    pub(crate) attempts: usize,
    /// How many `ats.event_applied` records there were.
    pub(crate) applied: usize,
    /// How many records there were.
    pub(crate) records: u64,
    /// Per event id, its deliveries, applications and refusals.
    pub(crate) ledger: Ledger,
    /// Every body's judgement against its contract, shared by the four contract checks.
    pub(crate) contracts: ContractPass,
    /// The kill-switch scenarios' records, shared by the three kill-switch checks.
    pub(crate) kill_switch: KillSwitchRecords,
    scenario_ends: HashMap<Scenario, Mark>,
}

impl Seen {
    /// Notes a record.
    fn observe(&mut self, manifest: &Manifest, plan: &PlanIndex<'_>, record: &Record) {
        self.records += 1;
        self.contracts.record(manifest, plan, record);
        self.kill_switch.observe(record);
        if let Some(at) = record_time(record) {
            self.last_at = Some(at);
        }
        match record.kind.as_str() {
            "webhook.attempt" => {
                self.attempts += 1;
                if let Some(id) = record.event_id.as_deref() {
                    let ledger = self.ledger.entry(plan, id);
                    ledger.attempts.push((record.seq, record.status));
                }
            }
            "ats.event_applied" => {
                self.applied += 1;
                if let Some(id) = body_event_id(record) {
                    self.ledger.entry(plan, id).applied.push(Mark::of(record));
                }
            }
            "ats.event_rejected" => {
                if let Some(id) = body_event_id(record) {
                    self.ledger.entry(plan, id).rejected.push(record.seq);
                }
            }
            "scenario.end" => {
                if let Some(scenario) = scenario_in(record) {
                    self.scenario_ends
                        .entry(scenario)
                        .or_insert(Mark::of(record));
                }
            }
            "integration.stdout" | "integration.stderr" => self.output_lines += 1,
            "integration.ready" => self.output_visible = true,
            _ => {}
        }
    }

    /// The `scenario.end` of a scenario, if the log got that far.
    pub(crate) fn scenario_end(&self, scenario: Scenario) -> Option<Mark> {
        self.scenario_ends.get(&scenario).copied()
    }
}

/// What every check sees while the log streams by.
pub(crate) struct Context<'a> {
    /// The manifest the run was made from.
    pub(crate) manifest: &'a Manifest,
    /// The run's plan, indexed.
    pub(crate) plan: &'a PlanIndex<'a>,
    /// What the judge has seen of the log so far.
    pub(crate) seen: &'a Seen,
    /// The log's folder, when the log is a file: where a check may set data aside
    /// (on the same disk as the log, not in a `$TMPDIR` that may be memory).
    pub(crate) folder: Option<&'a Path>,
}

impl Context<'_> {
    /// A finding about `candidate` (its scenario and correlation id looked up in the
    /// plan when the records do not say) that cites `cites`; its exchanges are filled in
    /// from the log once the pass is over.
    pub(crate) fn finding(
        &self,
        candidate: Option<&str>,
        correlation_id: Option<&str>,
        expected: impl Into<String>,
        seen: impl Into<String>,
        cites: impl IntoIterator<Item = Cite>,
    ) -> Cited {
        Cited {
            finding: finding_about(
                candidate.and_then(|c| self.plan.candidate(c)),
                candidate,
                correlation_id,
                expected,
                seen,
            ),
            cites: cites.into_iter().collect(),
        }
    }

    /// The delivery attempts, applications and refusals of an event so far.
    pub(crate) fn ledger(&self, event_id: &str) -> &EventLedger {
        self.seen.ledger.of(self.plan, event_id)
    }
}

/// A record a finding cites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cite {
    /// The record with this `seq`.
    Record(u64),
    /// Every delivery attempt of this event, as the whole log has them.
    Attempts(String),
}

/// A finding and the records it cites, before its exchanges are filled in.
#[derive(Debug)]
pub(crate) struct Cited {
    /// The finding (its exchanges empty unless the check wrote its own).
    pub(crate) finding: Finding,
    /// What it cites.
    pub(crate) cites: Vec<Cite>,
}

impl From<Finding> for Cited {
    fn from(finding: Finding) -> Self {
        Cited {
            finding,
            cites: Vec::new(),
        }
    }
}

/// Cites each of these records.
pub(crate) fn records(seqs: impl IntoIterator<Item = u64>) -> impl Iterator<Item = Cite> {
    seqs.into_iter().map(Cite::Record)
}

/// A check judged in one pass over the log.
pub(crate) trait Fold {
    /// Sees the next record of the log (`cx.seen` already counts it).
    fn record(&mut self, cx: &Context<'_>, record: &Record);
    /// The outcome once the log has ended (`cx.seen` then describes the whole log).
    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome;
}

/// Makes a check's fold for a run, before the first record (its `cx.seen` is empty).
/// The fold may borrow the manifest and the plan.
pub(crate) type MakeFold = for<'a> fn(&Context<'a>) -> Box<dyn Fold + 'a>;

/// What a fold is made with: nothing seen yet.
static NOTHING_SEEN: LazyLock<Seen> = LazyLock::new(Seen::default);

/// A check with nothing to fold: it skips for a reason known before the log is read.
pub(crate) struct Skipped(pub(crate) String);

impl Fold for Skipped {
    fn record(&mut self, _: &Context<'_>, _: &Record) {}

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        Outcome::skip(self.0)
    }
}

/// Skips the check for `reason`.
pub(crate) fn skipped<'a>(reason: impl Into<String>) -> Box<dyn Fold + 'a> {
    Box::new(Skipped(reason.into()))
}

/// Why the log could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The log file is unreadable, malformed or its chain is broken.
    #[error("the observation log cannot be judged: {0}")]
    Log(#[from] StreamError<std::convert::Infallible>),
}

/// An observation log, read in order as many times as the judge needs.
pub(crate) trait LogSource {
    /// The folder the log is in, when it is a file.
    fn folder(&self) -> Option<&Path> {
        None
    }

    /// Hands every record (or only those with a `seq` in `only`) to `visit`, in order.
    fn each(
        &self,
        only: Option<&HashSet<u64>>,
        visit: &mut dyn FnMut(&Record),
    ) -> Result<(), JudgeError>;
}

impl LogSource for [Record] {
    fn each(
        &self,
        only: Option<&HashSet<u64>>,
        visit: &mut dyn FnMut(&Record),
    ) -> Result<(), JudgeError> {
        self.iter()
            .filter(|r| only.is_none_or(|s| s.contains(&r.seq)))
            .for_each(visit);
        Ok(())
    }
}

impl LogSource for Path {
    fn folder(&self) -> Option<&Path> {
        match self.parent() {
            Some(folder) if folder.as_os_str().is_empty() => Some(Path::new(".")),
            other => other,
        }
    }

    fn each(
        &self,
        only: Option<&HashSet<u64>>,
        visit: &mut dyn FnMut(&Record),
    ) -> Result<(), JudgeError> {
        stream::stream(self, |line| {
            if only.is_some_and(|s| !s.contains(&line.head.seq)) {
                return Ok(());
            }
            // A line whose chain link was proved but whose detail does not parse as a
            // record is left out, as `observe::read` would have refused the whole log.
            if let Ok(record) = line.record() {
                visit(&record);
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// Runs `makes` over the log in one pass and returns each check's outcome, in order,
/// with every kept finding's exchanges read back from the log.
pub(crate) fn fold_all<L: LogSource + ?Sized>(
    manifest: &Manifest,
    plan: &Plan,
    log: &L,
    makes: &[Option<MakeFold>],
) -> Result<Vec<Option<Outcome>>, JudgeError> {
    let index = PlanIndex::new(plan);
    let mut seen = Seen::default();
    let folder = log.folder();
    let make_cx = Context {
        manifest,
        plan: &index,
        seen: &NOTHING_SEEN,
        folder,
    };
    let mut folds: Vec<Option<Box<dyn Fold + '_>>> =
        makes.iter().map(|make| make.map(|m| m(&make_cx))).collect();
    log.each(None, &mut |record| {
        seen.observe(manifest, &index, record);
        let cx = Context {
            manifest,
            plan: &index,
            seen: &seen,
            folder,
        };
        for fold in folds.iter_mut().flatten() {
            fold.record(&cx, record);
        }
    })?;
    let last_at = seen.last_at;
    seen.contracts.vendor_payloads(manifest, &index, last_at);
    let cx = Context {
        manifest,
        plan: &index,
        seen: &seen,
        folder,
    };
    let mut outcomes: Vec<Option<Outcome>> = folds
        .into_iter()
        .map(|fold| fold.map(|f| f.finish(&cx)))
        .collect();
    resolve(&cx, log, outcomes.iter_mut().flatten())?;
    Ok(outcomes)
}

/// Fills in the exchanges of every kept finding from the records it cites: the
/// attempts an event had by the end of the log, then one read of the cited records.
fn resolve<'o, L: LogSource + ?Sized>(
    cx: &Context<'_>,
    log: &L,
    outcomes: impl Iterator<Item = &'o mut Outcome>,
) -> Result<(), JudgeError> {
    // Each finding with the seqs it shows (the first and last of what it cites).
    let mut pending: Vec<(&mut Finding, Vec<u64>)> = Vec::new();
    for outcome in outcomes {
        for (finding, cites) in outcome.findings.cited_mut() {
            if cites.is_empty() {
                continue;
            }
            let mut seqs = BTreeSet::new();
            for cite in cites {
                match cite {
                    Cite::Record(seq) => {
                        seqs.insert(seq);
                    }
                    Cite::Attempts(event) => seqs.extend(cx.ledger(&event).attempt_seqs()),
                }
            }
            pending.push((finding, summarize_exchanges(seqs)));
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let wanted: HashSet<u64> = pending
        .iter()
        .flat_map(|(_, seqs)| seqs.iter().copied())
        .collect();
    let mut exchanges: HashMap<u64, Exchange> = HashMap::with_capacity(wanted.len());
    log.each(Some(&wanted), &mut |record| {
        exchanges.insert(record.seq, Exchange::from_record(record));
    })?;
    for (finding, seqs) in pending {
        let mut found: Vec<Exchange> = seqs
            .into_iter()
            .filter_map(|seq| exchanges.get(&seq).cloned())
            .collect();
        // A check that wrote its own exchanges (a redacted line) keeps them first.
        finding.exchanges.append(&mut found);
        finding.exchanges.sort_by_key(|e| e.seq);
        finding.exchanges.dedup_by_key(|e| e.seq);
    }
    Ok(())
}

/// One check's outcome over a small in-memory log: the unit tests' entry point.
#[cfg(test)]
pub(crate) fn run_one(
    make: MakeFold,
    manifest: &Manifest,
    plan: &Plan,
    records: &[Record],
) -> Outcome {
    let mut outcomes =
        fold_all(manifest, plan, records, &[Some(make)]).expect("an in-memory log reads");
    outcomes
        .pop()
        .flatten()
        .expect("one fold gives one outcome")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::test_support::{CANDIDATE, clean, manifest};
    use crate::judge::{Status, judge, judge_log};
    use crate::observe::{Entry, ObservationLog};

    #[test]
    fn a_kept_text_is_four_bytes_present_or_not_and_keeps_its_value() {
        assert_eq!(size_of::<Option<Kept>>(), 4);
        for value in [0, 1, PLACE, OWN, OWN | (OWN - 2), (3 << FIELD_SHIFT) | 7] {
            assert_eq!(Kept::new(value).value(), value);
        }
    }

    /// Writes hand-made records to a real, hash-chained log file.
    fn written(records: &[Record], path: &Path) {
        let log = ObservationLog::create(path, "run-test").expect("a log file");
        for r in records {
            log.append(
                r.actor,
                &r.kind,
                Entry {
                    candidate: r.candidate.clone(),
                    correlation_id: r.correlation_id.clone(),
                    event_id: r.event_id.clone(),
                    idempotency_key: r.idempotency_key.clone(),
                    status: r.status,
                    latency_ms: r.latency_ms,
                    detail: r.detail.clone(),
                },
            );
        }
        log.flush().expect("flushed");
    }

    #[test]
    fn a_streamed_log_file_is_judged_as_the_same_records_in_memory() {
        let manifest = manifest();
        let mut clean = clean();
        let event = clean.events[0].clone();
        // A late answer (ack_sla) and a redelivery applied again (exactly_once), each
        // citing records that only the second read of the file brings back.
        clean.log.attempt(&event, 1, Some(200), 1500.0);
        clean.log.applied(CANDIDATE, &event.payload);
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("observation.jsonl");
        written(clean.log.records(), &path);

        let streamed = judge_log(&manifest, &clean.plan, &path).expect("the log judges");
        let read = crate::observe::read(&path).expect("the log reads");
        let in_memory = judge(&manifest, &clean.plan, &read);
        assert_eq!(streamed, in_memory);
        for id in ["delivery.ack_sla", "idempotency.exactly_once"] {
            let check = streamed.check(id).expect("judged");
            assert_eq!(check.status, Status::Fail, "{id}");
            let exchanges = &check.findings[0].exchanges;
            assert!(
                !exchanges.is_empty(),
                "{id}: the cited records are read back"
            );
            assert!(
                exchanges.iter().all(|e| !e.summary.is_empty()),
                "{id}: {exchanges:?}"
            );
        }
        let twice = &streamed
            .check("idempotency.exactly_once")
            .expect("judged")
            .findings[0];
        let kinds = crate::judge::test_support::kinds(&twice.exchanges);
        assert_eq!(
            kinds,
            [
                "webhook.attempt",
                "ats.event_applied",
                "webhook.attempt",
                "ats.event_applied"
            ],
            "the event's deliveries and both applications, in log order"
        );
    }

    #[test]
    fn a_log_whose_chain_is_broken_is_not_judged() {
        let manifest = manifest();
        let clean = clean();
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("observation.jsonl");
        written(clean.log.records(), &path);
        let text = std::fs::read_to_string(&path).expect("readable");
        let edited = text.replacen("\"status\":200", "\"status\":201", 1);
        assert_ne!(text, edited, "the log has a status to edit");
        std::fs::write(&path, edited).expect("writable");
        let err = judge_log(&manifest, &clean.plan, &path).expect_err("a broken chain");
        assert!(err.to_string().contains("was altered"), "{err}");
    }

    #[test]
    fn the_plan_index_finds_ids_keys_and_candidates_by_place() {
        let clean = clean();
        let index = PlanIndex::new(&clean.plan);
        let [first, second] = &clean.events;
        assert_eq!(index.event_index(&first.event_id), Some(0));
        assert_eq!(index.event_index(&second.event_id), Some(1));
        assert_eq!(index.key_index(&second.idempotency_key), Some(1));
        assert_eq!(
            index.key_index(&second.event_id),
            None,
            "an id is not a key"
        );
        assert_eq!(index.candidate_index(CANDIDATE), Some(0));
        assert_eq!(index.event("evt_unknown").map(|e| &e.event_id), None);
        assert_eq!(
            index.candidate(CANDIDATE).map(|c| c.candidate.as_str()),
            Some(CANDIDATE)
        );
    }

    #[test]
    fn equal_texts_in_a_plan_index_keep_the_last_place_as_a_map_would() {
        let places = Places::new(3, |i| ["a", "b", "a"][i]);
        let text = |i: usize| ["a", "b", "a"][i];
        assert_eq!(places.get("a", text), Some(2));
        assert_eq!(places.get("b", text), Some(1));
        assert_eq!(places.get("c", text), None);
    }

    #[test]
    fn kept_texts_point_into_the_plan_unless_it_says_otherwise() {
        let clean = clean();
        let index = PlanIndex::new(&clean.plan);
        let event = &clean.events[1];
        let mut keeper = Keeper::default();
        let id = Some(event.event_id.as_str());
        let planned = keeper.keep(
            &index,
            id,
            Some(&event.correlation_id),
            Field::CorrelationId,
        );
        let other = keeper.keep(&index, id, Some("corr_rewritten"), Field::CorrelationId);
        let unplanned = keeper.keep(
            &index,
            Some("evt_unknown"),
            Some(CANDIDATE),
            Field::Candidate,
        );
        assert_eq!(keeper.own.len(), 2, "only what the plan lacks is copied");
        assert_eq!(
            keeper.text(&index, planned),
            Some(event.correlation_id.as_str())
        );
        assert_eq!(keeper.text(&index, other), Some("corr_rewritten"));
        assert_eq!(keeper.text(&index, unplanned), Some(CANDIDATE));
        assert_eq!(keeper.keep(&index, id, None, Field::Candidate), None);
        assert_eq!(keeper.text(&index, None), None);
        for field in Field::ALL {
            let text = field.of(event);
            let kept = keeper.keep(&index, id, Some(text), field);
            assert_eq!(keeper.text(&index, kept), Some(text), "{field:?}");
        }
        assert_eq!(
            keeper.own.len(),
            2,
            "every field of a planned event is the plan's"
        );
    }

    #[test]
    fn ids_are_numbered_by_place_then_in_the_order_met() {
        let clean = clean();
        let index = PlanIndex::new(&clean.plan);
        let [first, second] = &clean.events;
        let mut ids = Ids::default();
        assert_eq!(ids.number(&index, &first.event_id), Some(0));
        assert_eq!(ids.number(&index, &second.idempotency_key), Some(3));
        assert_eq!(ids.number(&index, "minted_1"), None);
        assert_eq!(ids.number_or_new(&index, "minted_1"), 4);
        assert_eq!(ids.number_or_new(&index, "minted_2"), 5);
        assert_eq!(ids.number_or_new(&index, "minted_1"), 4, "numbered once");
        for n in 0..6 {
            let text = ids.text(&index, n);
            assert_eq!(ids.number(&index, text), Some(n), "{text}");
        }
    }

    proptest::proptest! {
        /// A `ByNumber` answers as a map from number to state would, whichever
        /// numbers it is given, planned or not, in whichever order.
        #[test]
        fn by_number_is_a_map(
            events in 0usize..6,
            layout in 0u8..3,
            writes in proptest::collection::vec((0u32..20, 0u32..1000), 0..40),
        ) {
            let mut plan = Plan::default();
            let template = clean().events[0].clone();
            plan.events = vec![template; events];
            let index = PlanIndex::new(&plan);
            let mut state = match layout {
                0 => ByNumber::ids_and_keys(&index),
                1 => ByNumber::keys(&index),
                _ => ByNumber::ids(&index),
            };
            let mut model: std::collections::BTreeMap<u32, u32> = Default::default();
            for (n, value) in writes {
                if value % 3 == 0 {
                    if let Some(old) = state.get(n).copied() {
                        state.insert(n, old + 1);
                    }
                    if let Some(old) = model.get_mut(&n) {
                        *old += 1;
                    }
                } else {
                    state.insert(n, value);
                    model.insert(n, value);
                }
            }
            for n in 0..20 {
                proptest::prop_assert_eq!(state.get(n), model.get(&n));
            }
        }
    }

    #[test]
    fn the_ledger_keeps_each_events_story() {
        let manifest = manifest();
        let clean = clean();
        let index = PlanIndex::new(&clean.plan);
        let mut seen = Seen::default();
        for record in clean.log.records() {
            seen.observe(&manifest, &index, record);
        }
        let first = seen.ledger.of(&index, &clean.events[0].event_id);
        assert_eq!(first.attempts.len(), 1);
        assert_eq!(first.applied_seqs().collect::<Vec<_>>(), [clean.applied[0]]);
        assert!(first.rejected.is_empty());
        assert!(seen.ledger.of(&index, "evt_unknown").attempts.is_empty());
        assert_eq!(seen.applied, 2);
        assert!(seen.output_visible);
        assert!(seen.scenario_end(Scenario::Clean).is_some());
    }
}
