//! `stagegate trace`: every exchange of one candidate, flow or event, in order, read
//! from a run's observation log — the triage question "find all events by
//! ats_candidate_id" answered with latencies, outcomes and which deliveries were
//! duplicates, forged or superseded.
//!
//! It is a fold over the log ([`crate::observe::stream`]): one pass, the chain
//! verified as it goes, each line's identifying fields read without parsing its
//! detail, and only the matching records parsed and kept. Memory is the trace, not
//! the log. The same fold ([`Fold`]) sums up every candidate of a run for the HTML
//! report and one candidate for an evidence pack.

pub mod classify;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::judge::Exchange;
use crate::observe::stream::{self, Line, StreamError};
use crate::observe::{Actor, ChainBreak, ReadError, Record};
use crate::run::plan::Plan;
use classify::{Perturbation, Perturbations, Stage};

/// The format of a trace's JSON document.
pub const TRACE_FORMAT: &str = "stagegate.trace/1.0";

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "by", content = "id")]
pub enum Selector {
    /// Every record of a candidate (`ats_candidate_id`, scenario-suffixed in runs).
    Candidate(String),
    /// Every record of a flow: its correlation id, and the ATS calls for its candidate.
    CorrelationId(String),
    /// Every record of one event: its id, and the ATS writes under its idempotency key.
    EventId(String),
}

impl Selector {
    /// The id searched for.
    pub fn id(&self) -> &str {
        match self {
            Selector::Candidate(id) | Selector::CorrelationId(id) | Selector::EventId(id) => id,
        }
    }

    /// `candidate CAND_1`, `correlation id cor_…`, `event evt_…`.
    pub fn describe(&self) -> String {
        match self {
            Selector::Candidate(id) => format!("candidate {id}"),
            Selector::CorrelationId(id) => format!("correlation id {id}"),
            Selector::EventId(id) => format!("event {id}"),
        }
    }
}

/// Which records belong to a traced flow.
///
/// A record belongs when one of its own id fields (`candidate`, `correlation_id`,
/// `event_id`, or for the integration's output lines the `ats_candidate_id`,
/// `correlation_id` and `event_id` they name) equals the traced id. Two links are
/// learned while reading, for records that carry fewer ids: a flow's candidate (the
/// ATS reads and writes name only the candidate) and an event's idempotency key (the
/// ATS request of a write names only the key). Any new record kind that carries these
/// fields — stage changes, sessions, grants, exceptions — matches with no change here.
#[derive(Debug)]
struct Matcher {
    selector: Selector,
    /// Candidates learned from a traced flow's records (correlation id traces).
    candidates: HashSet<String>,
    /// Idempotency keys learned from a traced event's records (event traces).
    keys: HashSet<String>,
    /// Events learned from a traced candidate's or flow's records: an output line
    /// that names only the event (`{"event_id": …, "candidate_record": …}`) belongs too.
    events: HashSet<String>,
    finder: memchr::memmem::Finder<'static>,
    event_finders: Vec<memchr::memmem::Finder<'static>>,
}

impl Matcher {
    fn new(selector: Selector) -> Self {
        let finder = memchr::memmem::Finder::new(selector.id().as_bytes()).into_owned();
        Matcher {
            selector,
            candidates: HashSet::new(),
            keys: HashSet::new(),
            events: HashSet::new(),
            finder,
            event_finders: Vec::new(),
        }
    }

    /// The record, parsed, when it belongs to the flow.
    fn matches(&mut self, line: &Line<'_>) -> Result<Option<Record>, serde_json::Error> {
        let head = &line.head;
        let is = |field: &Option<std::borrow::Cow<'_, str>>, id: &str| field.as_deref() == Some(id);
        let direct = match &self.selector {
            Selector::Candidate(id) => is(&head.candidate, id),
            Selector::CorrelationId(id) => {
                is(&head.correlation_id, id)
                    || (head.correlation_id.is_none()
                        && head
                            .candidate
                            .as_deref()
                            .is_some_and(|c| self.candidates.contains(c)))
            }
            Selector::EventId(id) => {
                is(&head.event_id, id)
                    || (head.event_id.is_none()
                        && head
                            .idempotency_key
                            .as_deref()
                            .is_some_and(|k| self.keys.contains(k)))
            }
        };
        let record = if direct {
            line.record()?
        } else if head.kind.starts_with("integration.")
            && (self.finder.find(line.text.as_bytes()).is_some()
                || self
                    .event_finders
                    .iter()
                    .any(|f| f.find(line.text.as_bytes()).is_some()))
        {
            let record = line.record()?;
            let Some(ids) = classify::line_ids(&record) else {
                return Ok(None);
            };
            let named = match &self.selector {
                Selector::Candidate(id) => ids.candidate.as_deref() == Some(id),
                Selector::CorrelationId(id) => ids.correlation_id.as_deref() == Some(id),
                Selector::EventId(id) => ids.event_id.as_deref() == Some(id),
            } || ids
                .event_id
                .as_deref()
                .is_some_and(|e| self.events.contains(e));
            if !named {
                return Ok(None);
            }
            record
        } else {
            return Ok(None);
        };
        match &self.selector {
            Selector::CorrelationId(id) if record.correlation_id.as_deref() == Some(id) => {
                if let Some(c) = &record.candidate {
                    self.candidates.insert(c.clone());
                }
            }
            Selector::EventId(id) if record.event_id.as_deref() == Some(id) => {
                if let Some(k) = &record.idempotency_key {
                    self.keys.insert(k.clone());
                }
            }
            _ => {}
        }
        if !matches!(self.selector, Selector::EventId(_))
            && let Some(event) = &record.event_id
            && self.events.insert(event.clone())
        {
            self.event_finders
                .push(memchr::memmem::Finder::new(event.as_bytes()).into_owned());
        }
        Ok(Some(record))
    }
}

/// One record of a trace, for people and machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Row {
    /// The record's `seq` in the log.
    pub seq: u64,
    /// Wall-clock time (RFC 3339).
    pub at: String,
    /// Milliseconds since the log was opened.
    pub elapsed_ms: f64,
    /// Who produced it.
    pub actor: Actor,
    /// The record's kind.
    pub kind: String,
    /// Where it sits in the flow.
    pub stage: Stage,
    /// The candidate it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The event it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The HTTP status, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the exchange took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// One line for people.
    pub summary: String,
    /// `duplicate (exact_duplicate)`, `forged (unsigned)`, `superseded`, `copy 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<String>,
    /// What the integration said it did with the event (`queued`, `applied`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// One event of a traced flow, summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventSummary {
    /// The event's id.
    pub event_id: String,
    /// Its contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// The candidate it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// How it was delivered (from the plan or the log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturbation: Option<Perturbation>,
    /// The verification outcome it carries (`verification.result`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The risk tier it carries (`verification.risk_tier`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_tier: Option<String>,
    /// Webhook attempts sent.
    pub attempts: u32,
    /// Attempts the integration answered 2xx.
    pub acknowledged: u32,
    /// Attempts it refused with a 4xx (a forged delivery's expected answer).
    pub rejected: u32,
    /// Attempts signed with the right secret and a fresh timestamp, as sent.
    pub signed: u32,
    /// The integration's last stated outcome for it (`queued`, `applied`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed: Option<String>,
    /// Times the ATS applied it.
    pub applied: u32,
    /// Times the ATS refused it (422, 409).
    pub refused: u32,
    /// When the first attempt was sent (ms since the log opened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<f64>,
    /// When the first 2xx answer came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_ms: Option<f64>,
    /// When the integration first said it processed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_ms: Option<f64>,
    /// When the ATS first applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_ms: Option<f64>,
}

impl EventSummary {
    fn new(event_id: &str) -> Self {
        EventSummary {
            event_id: event_id.to_owned(),
            contract: None,
            candidate: None,
            perturbation: None,
            outcome: None,
            risk_tier: None,
            attempts: 0,
            acknowledged: 0,
            rejected: 0,
            signed: 0,
            processed: None,
            applied: 0,
            refused: 0,
            sent_ms: None,
            acknowledged_ms: None,
            processed_ms: None,
            applied_ms: None,
        }
    }

    /// Sent → acknowledged, in milliseconds.
    pub fn ack_latency_ms(&self) -> Option<f64> {
        Some(round(self.acknowledged_ms? - self.sent_ms?))
    }

    /// Sent → applied at the ATS, in milliseconds.
    pub fn apply_latency_ms(&self) -> Option<f64> {
        Some(round(self.applied_ms? - self.sent_ms?))
    }
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// A flow's records folded into rows and per-event summaries, one record at a time.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    /// Every record, in log order.
    pub rows: Vec<Row>,
    /// Every event seen or planned, by id.
    pub events: BTreeMap<String, EventSummary>,
}

/// A text field of a record's detail.
fn detail_text<'r>(record: &'r Record, key: &str) -> Option<&'r str> {
    record.detail.get(key).and_then(Value::as_str)
}

impl Fold {
    /// Starts the summary of a planned event, so one that never showed up is listed.
    pub fn plan_event(&mut self, event: &crate::run::plan::PlannedEvent, marks: &Perturbations) {
        let summary = self
            .events
            .entry(event.event_id.to_string())
            .or_insert_with(|| EventSummary::new(&event.event_id));
        summary.contract = Some(event.contract.to_string());
        summary.candidate = Some(event.candidate.to_string());
        summary.perturbation = marks.of(&event.event_id).cloned();
        summary.outcome =
            event.outcome.as_ref().map(|o| o.to_string()).or_else(|| {
                pointer_text(&event.payload, "/verification/result").map(str::to_owned)
            });
        summary.risk_tier = pointer_text(&event.payload, "/verification/risk_tier")
            .or_else(|| pointer_text(&event.payload, "/risk_tier"))
            .map(str::to_owned);
    }

    /// Folds one record of the flow in.
    pub fn observe(&mut self, record: &Record, marks: &Perturbations) {
        let line = classify::line_ids(record);
        let event_id = record
            .event_id
            .clone()
            .or_else(|| pointer_text(&record.detail, "/body/event_id").map(str::to_owned))
            .or_else(|| line.as_ref().and_then(|l| l.event_id.clone()));
        let stage = classify::stage(&record.kind, record.status);
        let perturbation = event_id.as_deref().and_then(|e| marks.of(e));
        let copy = record.detail.get("copy").and_then(Value::as_u64);
        let mark = match (stage, perturbation) {
            (Stage::Processed | Stage::AtsCall | Stage::Harness, _) => None,
            (_, Some(p)) => match (p.mark(), copy.filter(|c| *c > 0)) {
                (Some(m), Some(c)) => Some(format!("{m}, copy {}", c + 1)),
                (m, _) => m,
            },
            (_, None) => copy.filter(|c| *c > 0).map(|c| format!("copy {}", c + 1)),
        };
        self.rows.push(Row {
            seq: record.seq,
            at: record.at.clone(),
            elapsed_ms: record.elapsed_ms,
            actor: record.actor,
            kind: record.kind.clone(),
            stage,
            candidate: record
                .candidate
                .clone()
                .or_else(|| line.as_ref().and_then(|l| l.candidate.clone()))
                .or_else(|| {
                    let event = self.events.get(event_id.as_deref()?)?;
                    event.candidate.clone()
                }),
            event_id: event_id.clone(),
            status: record.status,
            latency_ms: record.latency_ms,
            summary: match line.as_ref().and_then(|l| l.outcome.as_deref()) {
                Some(outcome) => format!(
                    "the integration logged {}: {outcome}",
                    event_id.as_deref().unwrap_or("an event")
                ),
                None => Exchange::from_record(record).summary,
            },
            mark,
            outcome: line.as_ref().and_then(|l| l.outcome.clone()),
        });
        let Some(event_id) = event_id else {
            return;
        };
        let summary = self
            .events
            .entry(event_id.clone())
            .or_insert_with(|| EventSummary::new(&event_id));
        if summary.perturbation.is_none() {
            summary.perturbation = perturbation.cloned();
        }
        if summary.candidate.is_none() {
            summary.candidate = record.candidate.clone();
        }
        if summary.contract.is_none() {
            summary.contract = detail_text(record, "contract").map(str::to_owned);
        }
        let at = record.elapsed_ms;
        match stage {
            Stage::Acknowledged | Stage::Rejected | Stage::Unanswered => {
                summary.attempts += 1;
                let started = at - record.latency_ms.unwrap_or(0.0);
                summary.sent_ms = Some(summary.sent_ms.map_or(started, |s| s.min(started)));
                if record.detail.get("signed").and_then(Value::as_bool) == Some(true)
                    && !perturbation.is_some_and(|p| p.forged)
                {
                    summary.signed += 1;
                }
                match stage {
                    Stage::Acknowledged => {
                        summary.acknowledged += 1;
                        summary.acknowledged_ms.get_or_insert(at);
                    }
                    Stage::Rejected => summary.rejected += 1,
                    _ => {}
                }
            }
            Stage::Processed => {
                // An integration may log the outcome before the line that says it queued
                // the event (its worker and its webhook handler on separate threads): a
                // later `queued` does not take an outcome's place.
                if let Some(outcome) = line
                    .and_then(|l| l.outcome)
                    .filter(|o| o != "queued" || summary.processed.is_none())
                {
                    summary.processed = Some(outcome);
                    summary.processed_ms.get_or_insert(at);
                }
            }
            Stage::Written => {
                summary.applied += 1;
                summary.applied_ms.get_or_insert(at);
                if summary.outcome.is_none() {
                    summary.outcome = record
                        .detail
                        .pointer("/body/verification/result")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                if summary.risk_tier.is_none() {
                    summary.risk_tier = record
                        .detail
                        .pointer("/body/verification/risk_tier")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
            }
            Stage::Refused => summary.refused += 1,
            _ => {}
        }
    }
}

fn pointer_text<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// What the chain check over the records read found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChainStatus {
    /// Whether every record read chained to the one before.
    pub intact: bool,
    /// Records read (the whole log when intact).
    pub records: u64,
    /// The last record's hash: the log's head (when intact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Where and how the chain broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// The `seq` of the first record that breaks the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_at_seq: Option<u64>,
}

/// The trace of one flow through a log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Trace {
    /// The document format, [`TRACE_FORMAT`].
    pub format: String,
    /// The log read.
    pub log: String,
    /// The run the log belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// What was traced.
    pub selector: Selector,
    /// Where the perturbations came from: a plan file, or the log's sender records.
    pub perturbations_from: String,
    /// The chain check.
    pub chain: ChainStatus,
    /// The flow's records, in log order.
    pub records: Vec<Row>,
    /// The flow's events.
    pub events: Vec<EventSummary>,
}

/// Why a trace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The log cannot be read, or a line is not a record.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The plan cannot be read.
    #[error("cannot read the plan {}", path.display())]
    Plan {
        /// The plan file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The plan is not a run's plan.json.
    #[error("{} is not a run's plan.json (give --plan the plan.json of the run that wrote the log)", path.display())]
    PlanFormat {
        /// The plan file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a run's plan.
pub fn read_plan(path: &Path) -> Result<Plan, TraceError> {
    let bytes =
        crate::limits::read_regular(path, crate::limits::DOCUMENT_BYTES).map_err(|source| {
            TraceError::Plan {
                path: path.to_owned(),
                source,
            }
        })?;
    serde_json::from_slice(&bytes).map_err(|source| TraceError::PlanFormat {
        path: path.to_owned(),
        source,
    })
}

/// The plan to use for a log: `explicit`, else `plan.json` beside the log if present.
pub fn plan_for(
    log: &Path,
    explicit: Option<&Path>,
) -> Result<Option<(PathBuf, Plan)>, TraceError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => {
            let beside = log.with_file_name(crate::run::artifact::PLAN);
            if !beside.is_file() {
                return Ok(None);
            }
            beside
        }
    };
    let plan = read_plan(&path)?;
    Ok(Some((path, plan)))
}

/// A selected flow read from a log: the trace, and the records themselves.
#[derive(Debug)]
pub struct Traced {
    /// The trace.
    pub trace: Trace,
    /// The matching records, unmodified, in log order.
    pub records: Vec<Record>,
    /// Each matching record's place in the chain, in log order.
    pub links: Vec<Link>,
    /// The chain break that stopped the read, if any.
    pub break_: Option<ChainBreak>,
}

/// A record's place in the chain: the hashes around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Link {
    /// The record's `seq`.
    pub seq: u64,
    /// The hash of the record before it (its `prev_hash`).
    pub prev_hash: String,
    /// Its own hash.
    pub hash: String,
    /// The hash of the record after it, which chains to this one; none for the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hash: Option<String>,
}

/// Traces `selector` through the log at `path` in one streamed pass.
pub fn trace_file(
    path: &Path,
    selector: Selector,
    plan: Option<(&Path, &Plan)>,
) -> Result<Traced, TraceError> {
    let mut marks = plan.map_or_else(Perturbations::default, |(_, p)| Perturbations::from_plan(p));
    let mut fold = Fold::default();
    if let (Some((_, plan)), Selector::Candidate(id)) = (plan, &selector) {
        for event in plan.events.iter().filter(|e| &e.candidate == id) {
            fold.plan_event(event, &marks);
        }
    }
    let mut matcher = Matcher::new(selector.clone());
    let mut records = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    let mut read = 0u64;
    let result = stream::stream(path, |line| {
        read += 1;
        if let Some(last) = links.last_mut().filter(|l| l.seq + 1 == line.head.seq) {
            last.next_hash = Some(line.head.hash.to_string());
        }
        let parse = |source| ReadError::Parse {
            path: path.to_owned(),
            line: line.number,
            source,
        };
        if let Some(record) = matcher.matches(line).map_err(parse)? {
            if let (Selector::EventId(id), Some(plan)) = (&matcher.selector, plan)
                && fold.events.is_empty()
                && let Some(event) = plan.1.events.iter().find(|e| &e.event_id == id)
            {
                fold.plan_event(event, &marks);
            }
            // Without a plan, the flow's own sender records say how it was perturbed:
            // only they are learned, so memory stays the trace's.
            marks.learn(&record);
            fold.observe(&record, &marks);
            links.push(Link {
                seq: record.seq,
                prev_hash: record.prev_hash.clone(),
                hash: record.hash.clone(),
                next_hash: None,
            });
            records.push(record);
        }
        Ok::<(), ReadError>(())
    });
    let (chain, run_id, break_) = match result {
        Ok(tail) => (
            ChainStatus {
                intact: true,
                records: tail.records,
                head: Some(tail.head),
                broken: None,
                broken_at_seq: None,
            },
            tail.run_id,
            None,
        ),
        Err(StreamError::Read(err) | StreamError::Visitor(err)) => return Err(err.into()),
        Err(StreamError::Broken(broken)) => (
            ChainStatus {
                intact: false,
                records: read,
                head: None,
                broken: Some(broken.to_string()),
                broken_at_seq: Some(match &broken {
                    ChainBreak::Altered { seq, .. }
                    | ChainBreak::Unlinked { seq, .. }
                    | ChainBreak::Sequence { seq, .. } => *seq,
                }),
            },
            records.first().map(|r| r.run_id.clone()),
            Some(broken),
        ),
    };
    let trace = Trace {
        format: TRACE_FORMAT.to_owned(),
        log: path.display().to_string(),
        run_id,
        selector,
        perturbations_from: match plan {
            Some((path, _)) => path.display().to_string(),
            None => "log".to_owned(),
        },
        chain,
        records: fold.rows,
        events: fold.events.into_values().collect(),
    };
    Ok(Traced {
        trace,
        records,
        links,
        break_,
    })
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.1} ms"))
}

/// The trace for people: a header, the records in order, then the events.
pub fn render(trace: &Trace) -> String {
    let mut out = String::new();
    let run = trace.run_id.as_deref().unwrap_or("unknown run");
    let _ = writeln!(
        out,
        "trace of {} in {} ({run}): {} records",
        trace.selector.describe(),
        trace.log,
        trace.records.len()
    );
    let _ = writeln!(
        out,
        "perturbations from {}",
        if trace.perturbations_from == "log" {
            "the log's sender records (no plan.json beside the log; --plan names one)"
        } else {
            &trace.perturbations_from
        }
    );
    let _ = writeln!(out);
    for row in &trace.records {
        let status = row.status.map_or_else(String::new, |s| s.to_string());
        let latency = row
            .latency_ms
            .map_or_else(String::new, |l| format!("{l:.1} ms"));
        let _ = write!(
            out,
            "  #{:<6} +{:>9.3} s  {:<11} {:<12} {:>4} {:>9}  {}",
            row.seq,
            row.elapsed_ms / 1000.0,
            actor_name(row.actor),
            row.stage.as_str(),
            status,
            latency,
            row.summary
        );
        if let Some(mark) = &row.mark {
            let _ = write!(out, "  [{mark}]");
        }
        let _ = writeln!(out);
    }
    if !trace.events.is_empty() {
        let _ = writeln!(out, "\nevents");
        for e in &trace.events {
            let mark = e
                .perturbation
                .as_ref()
                .and_then(Perturbation::mark)
                .unwrap_or_else(|| "as planned".to_owned());
            let _ = writeln!(
                out,
                "  {}  {}  {}",
                e.event_id,
                e.contract.as_deref().unwrap_or("?"),
                mark
            );
            let _ = writeln!(
                out,
                "      {} attempts ({} acknowledged, {} rejected), processed: {}, applied {}×, refused {}×; sent→ack {}, sent→applied {}",
                e.attempts,
                e.acknowledged,
                e.rejected,
                e.processed.as_deref().unwrap_or("—"),
                e.applied,
                e.refused,
                ms(e.ack_latency_ms()),
                ms(e.apply_latency_ms()),
            );
        }
    }
    let _ = writeln!(out);
    match (&trace.chain.broken, &trace.chain.head) {
        (Some(broken), _) => {
            let _ = writeln!(
                out,
                "chain BROKEN: {broken}; the {} records before it chain intact, nothing after it was read",
                trace.chain.records
            );
        }
        (None, Some(head)) => {
            let _ = writeln!(
                out,
                "chain intact: {} records, head {}",
                trace.chain.records, head
            );
        }
        (None, None) => {}
    }
    out
}

fn actor_name(actor: Actor) -> &'static str {
    match actor {
        Actor::Harness => "harness",
        Actor::Sender => "sender",
        Actor::Ats => "ats",
        Actor::Vendor => "vendor",
        Actor::Notify => "notify",
        Actor::Integration => "integration",
    }
}

/// A small hand-made run for the audit readers' tests.
#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
