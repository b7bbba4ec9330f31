//! The plan of a run: per scenario, the events the harness sends, how each is
//! perturbed, and what should become of it. The checks judge the observation log
//! against this plan; the plan is written with the run's artifacts so a recorded
//! run can be judged again offline.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::ContractSet;
use crate::contract::path::FieldPath;
pub use crate::intern::Text;

/// A scenario of `stagegate run`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
#[clap(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every candidate's expected sequence, in order, once.
    Clean,
    /// Exact redeliveries, re-emits with a new webhook-id, concurrent duplicates.
    Duplicates,
    /// Later events delivered before earlier ones.
    OutOfOrder,
    /// Unsigned, wrongly signed and stale deliveries of forged events.
    Signatures,
    /// The out-of-scope control candidates.
    Canary,
    /// The ATS fails every request (503s, then connection resets, then hangs) for a window,
    /// then recovers: the kill switch must trip, queue, notify, reset and replay.
    Outage,
    /// The ATS fails a share just above the kill switch's 5xx threshold, then, after
    /// recovery, just below it: it must trip in the first phase and not in the second.
    Brownout,
    /// The vendor sends drifted payloads the ATS refuses (422) more often than the
    /// kill switch's mapping-error count allows.
    MappingErrors,
    /// An outage during which the integration is SIGKILLed and started again on the
    /// same state folder: nothing accepted before the kill may be lost.
    Restart,
    /// The hiring-policy flow (`--policy`): candidates move through the stages, the
    /// ATS announces each move, verification sessions follow each risk profile.
    Policy,
    /// The hiring policy's reconciliation: some stage changes and results are never
    /// delivered, then the harness calls `POST /jobs/reconcile`.
    PolicyReconcile,
    /// The ATS fails every request while stage changes arrive: the kill switch must
    /// trip, and candidates keep getting verification sessions unless
    /// `pause_candidate_gates` is true.
    PolicyOutage,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Scenario; 9] = [
        Scenario::Clean,
        Scenario::Duplicates,
        Scenario::OutOfOrder,
        Scenario::Signatures,
        Scenario::Canary,
        Scenario::Outage,
        Scenario::Brownout,
        Scenario::MappingErrors,
        Scenario::Restart,
    ];

    /// The scenarios that stress the kill switch (docs/integration-protocol.md §5).
    pub const KILL_SWITCH: [Scenario; 4] = [
        Scenario::Outage,
        Scenario::Brownout,
        Scenario::MappingErrors,
        Scenario::Restart,
    ];

    /// The scenarios of the hiring-policy flow, run only with `--policy`.
    pub const POLICY: [Scenario; 3] = [
        Scenario::Policy,
        Scenario::PolicyReconcile,
        Scenario::PolicyOutage,
    ];

    /// Whether this scenario belongs to the hiring-policy flow.
    pub fn is_policy(self) -> bool {
        Scenario::POLICY.contains(&self)
    }

    /// Whether this scenario stresses the kill switch.
    pub fn is_kill_switch(self) -> bool {
        Scenario::KILL_SWITCH.contains(&self)
    }

    /// The scenario's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::Duplicates => "duplicates",
            Scenario::OutOfOrder => "out-of-order",
            Scenario::Signatures => "signatures",
            Scenario::Canary => "canary",
            Scenario::Outage => "outage",
            Scenario::Brownout => "brownout",
            Scenario::MappingErrors => "mapping-errors",
            Scenario::Restart => "restart",
            Scenario::Policy => "policy",
            Scenario::PolicyReconcile => "policy-reconcile",
            Scenario::PolicyOutage => "policy-outage",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event the harness sends, and what should become of it.
///
/// A large run holds one per event until it is judged, so the texts events have in
/// common are one shared `Arc<str>` (the candidate's id and correlation id with its
/// [`PlannedCandidate`], the contract, outcome and perturbation names and the times
/// with every event that names them, see [`Strings`]): [`Text`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedEvent {
    /// The scenario it belongs to.
    pub scenario: Scenario,
    /// The candidate (the scenario copy's id).
    pub candidate: Text,
    /// The contract.
    pub contract: Text,
    /// The event's id.
    pub event_id: Text,
    /// The event's idempotency key as the vendor sends it.
    pub idempotency_key: Text,
    /// The flow's correlation id.
    pub correlation_id: Text,
    /// When it occurred (RFC 3339).
    pub occurred_at: Text,
    /// Its position in the candidate's expected sequence.
    pub sequence_index: u32,
    /// The enum value the sequence entry names (`passed`, …), if any.
    pub outcome: Option<Text>,
    /// The perturbation's name (`none`, `exact_duplicate`, `unsigned`, …).
    pub perturbation: Text,
    /// A forged delivery the integration must reject (bad, missing or stale signature).
    pub forged: bool,
    /// Whether the candidate is inside the canary scope.
    pub in_scope: bool,
    /// Whether the event must reach the ATS: in scope, not forged, and not superseded
    /// by a newer event of the same candidate and contract.
    pub should_land: bool,
    /// The payload as the vendor sends it. plan.json always holds it; a run's plan in
    /// memory holds only the payloads that failed the self-check when they were
    /// synthesized (`null` for the rest), as a large run's payloads are generated
    /// again when they are sent rather than held ([`super::scenarios::Generator`]).
    #[serde(default)]
    pub payload: Payload,
}

/// A planned event's payload: a JSON value, or nothing (`null`) for the payloads a
/// run's plan leaves out; read as a [`Value`]. One word wide rather than a `Value`'s
/// four, as a large plan's events mostly hold none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload(Option<Box<Value>>);

/// What an absent payload reads as.
static NULL: Value = Value::Null;

impl std::ops::Deref for Payload {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.0.as_deref().unwrap_or(&NULL)
    }
}

impl std::ops::DerefMut for Payload {
    fn deref_mut(&mut self) -> &mut Value {
        self.0.get_or_insert_with(|| Box::new(Value::Null))
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload((!value.is_null()).then(|| Box::new(value)))
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Payload::from)
    }
}

/// A sandbox candidate as the checks need it: ids, scope and what must not be logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCandidate {
    /// The scenario it belongs to.
    pub scenario: Scenario,
    /// The copy's id, made for this scenario from the contracts' id rules.
    pub candidate: Text,
    /// The sandbox candidate it copies (the manifest's or the dataset's id).
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    pub source: Text,
    /// Its correlation id.
    pub correlation_id: Text,
    /// Whether it is inside the canary scope.
    pub in_scope: bool,
    /// Its expected sequence, as written (`contract` or `contract:value`), shared by
    /// every candidate with the same sequence.
    pub expected_sequence: Arc<[Text]>,
    /// Personal data the integration must never print (name, e-mail), shared with the
    /// sandbox's and the mock ATS's copies.
    pub pii: Vec<Text>,
}

/// The whole plan of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The run's seed.
    pub seed: u64,
    /// The candidates, every scenario's copies.
    pub candidates: Vec<PlannedCandidate>,
    /// The events, in the order they are planned (not necessarily sent).
    pub events: Vec<PlannedEvent>,
    /// The webhook acknowledgement deadline in milliseconds (the policy's `webhookAckSeconds`).
    pub ack_sla_ms: u64,
    /// How much faster than real time the policy windows passed (`--time-scale`).
    #[serde(default = "real_time")]
    pub time_scale: f64,
    /// Scenarios asked for but not driven, with why (a manifest with nothing to drift
    /// has no `mapping-errors`); reports and the checks say so instead of passing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedScenario>,
    /// The hiring-policy flow, when the run has a policy (`--policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<super::policy::PolicyPlan>,
    /// Of the payloads this plan leaves out ([`PlannedEvent::payload`]), what the checks
    /// read: the fields of each one's contract's stability rules ([`Plan::payload_of`]).
    /// Not written: plan.json holds every payload.
    #[serde(skip)]
    pub stable_fields: StableFields,
}

/// Of each payload a run's plan leaves out, the values of the fields its contract's
/// stability rules read, in the order the rules name them (each rule's tuple, then its
/// key), packed into one buffer.
///
/// A large run holds one entry per event until it is judged, so an entry is a few
/// bytes: a value equal to a text its event already holds (the candidate, the event
/// id, the idempotency key, the correlation id) is a one-byte reference to it, and the
/// field names are not kept at all: they are the rules' paths, which
/// [`Plan::payload_of`] reads from the contract again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StableFields {
    /// Per event that has an entry, by ascending position: where its values start in
    /// `bytes`.
    at: Vec<(u32, u32)>,
    /// The values: per path a tag ([`held`]), then for a literal its length (four
    /// bytes, little-endian) and its bytes.
    bytes: Vec<u8>,
}

/// The tags of [`StableFields`]' values.
mod held {
    /// The payload has no value at the path.
    pub const ABSENT: u8 = 0;
    /// The event's candidate.
    pub const CANDIDATE: u8 = 1;
    /// The event's id.
    pub const EVENT_ID: u8 = 2;
    /// The event's idempotency key.
    pub const IDEMPOTENCY_KEY: u8 = 3;
    /// The event's correlation id.
    pub const CORRELATION_ID: u8 = 4;
    /// A string, as its UTF-8 bytes.
    pub const STRING: u8 = 5;
    /// Any other JSON value, as compact JSON text.
    pub const JSON: u8 = 6;
}

/// The paths the stability rules of `contract` read, in the order [`StableFields`]
/// keeps their values.
fn stable_paths(contract: &crate::contract::Contract) -> impl Iterator<Item = &FieldPath> {
    contract
        .stability_rules()
        .flat_map(|(_, rule)| rule.tuple.iter().chain([&rule.key]))
}

/// The texts of `event` a held value may refer to, by tag.
fn event_texts(event: &PlannedEvent) -> [(u8, &str); 4] {
    [
        (held::CANDIDATE, &event.candidate),
        (held::EVENT_ID, &event.event_id),
        (held::IDEMPOTENCY_KEY, &event.idempotency_key),
        (held::CORRELATION_ID, &event.correlation_id),
    ]
}

impl StableFields {
    /// Keeps, for the event at `place` (`event`, whose payload is `payload`), the
    /// values of the fields its contract's stability rules read; nothing when its
    /// contract has no such rule. Places are added in ascending order.
    pub(crate) fn insert(
        &mut self,
        place: u32,
        event: &PlannedEvent,
        payload: &Value,
        contracts: &ContractSet,
    ) {
        let Some(contract) = contracts.get(&event.contract) else {
            return;
        };
        let mut paths = stable_paths(contract).peekable();
        if paths.peek().is_none() {
            return;
        }
        // Positions past 4 GiB of values cannot be kept: the judge then sees no fields,
        // as for an event without rules (a plan that large does not fit in memory anyway).
        let Ok(start) = u32::try_from(self.bytes.len()) else {
            return;
        };
        self.at.push((place, start));
        for path in paths {
            let Some(value) = path.lookup(payload) else {
                self.bytes.push(held::ABSENT);
                continue;
            };
            let known = value.as_str().and_then(|text| {
                event_texts(event)
                    .into_iter()
                    .find(|(_, known)| *known == text)
            });
            match (known, value) {
                (Some((tag, _)), _) => self.bytes.push(tag),
                (None, Value::String(text)) => self.literal(held::STRING, text),
                (None, other) => self.literal(held::JSON, &other.to_string()),
            }
        }
    }

    fn literal(&mut self, tag: u8, text: &str) {
        self.bytes.push(tag);
        self.bytes
            .extend_from_slice(&(text.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(text.as_bytes());
    }

    /// Adds `other`'s entries, its places moved on by `offset` (a sharded plan is
    /// made in parts, each part's places after the previous part's).
    pub(crate) fn append(&mut self, other: StableFields, offset: u32) {
        let base = self.bytes.len() as u32;
        self.at.extend(
            other
                .at
                .into_iter()
                .map(|(place, start)| (place + offset, start + base)),
        );
        self.bytes.extend(other.bytes);
    }

    /// Frees the room grown for entries not made.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.at.shrink_to_fit();
        self.bytes.shrink_to_fit();
    }

    /// The fields kept for the event at `place` (`event`), as a payload holding only
    /// them; `None` when none are kept.
    fn payload(
        &self,
        place: usize,
        event: &PlannedEvent,
        contracts: &ContractSet,
    ) -> Option<Value> {
        let place = u32::try_from(place).ok()?;
        let at = self.at.binary_search_by_key(&place, |(p, _)| *p).ok()?;
        let mut bytes = self.bytes.get(self.at[at].1 as usize..)?;
        let contract = contracts.get(&event.contract)?;
        let mut payload = Value::Object(serde_json::Map::new());
        for path in stable_paths(contract) {
            let (&tag, rest) = bytes.split_first()?;
            bytes = rest;
            let value = match tag {
                held::ABSENT => continue,
                held::STRING | held::JSON => {
                    let (len, rest) = bytes.split_first_chunk::<4>()?;
                    let (text, rest) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
                    bytes = rest;
                    let text = std::str::from_utf8(text).ok()?;
                    if tag == held::STRING {
                        Value::String(text.to_owned())
                    } else {
                        serde_json::from_str(text).ok()?
                    }
                }
                tag => {
                    let (_, text) = event_texts(event).into_iter().find(|(t, _)| *t == tag)?;
                    Value::String(text.to_owned())
                }
            };
            put(&mut payload, path, value);
        }
        Some(payload)
    }
}

/// Puts `value` at `path` in `root`, making the objects on the way.
pub(crate) fn put(root: &mut Value, path: &FieldPath, value: Value) {
    let segments: Vec<&str> = path.segments().collect();
    let Some((leaf, parents)) = segments.split_last() else {
        return;
    };
    let mut node = root;
    for segment in parents {
        let Value::Object(map) = node else {
            return;
        };
        node = map
            .entry(*segment)
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    if let Value::Object(map) = node {
        map.insert((*leaf).to_owned(), value);
    }
}

/// plan.json: a [`Plan`] as it serialises, with its events written by `events`, which
/// supplies the payloads a run's plan in memory leaves out.
#[derive(Serialize)]
pub(crate) struct PlanFile<'p, E> {
    seed: u64,
    candidates: &'p [PlannedCandidate],
    events: E,
    ack_sla_ms: u64,
    time_scale: f64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    skipped: &'p [SkippedScenario],
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'p super::policy::PolicyPlan>,
}

impl<'p, E: Serialize> PlanFile<'p, E> {
    /// `plan` with the events `events`.
    pub(crate) fn new(plan: &'p Plan, events: E) -> Self {
        PlanFile {
            seed: plan.seed,
            candidates: &plan.candidates,
            events,
            ack_sla_ms: plan.ack_sla_ms,
            time_scale: plan.time_scale,
            skipped: &plan.skipped,
            policy: plan.policy.as_ref(),
        }
    }
}

/// One shared copy of each text many plan entries repeat (contract, outcome and
/// perturbation names, times, expected sequences): a 100,000-candidate plan names a
/// dozen contracts 200,000 times, and its events' whole-second times fall within a
/// few hours.
#[derive(Debug, Default)]
pub(crate) struct Strings {
    texts: HashSet<Text>,
    sequences: HashSet<Arc<[Text]>>,
}

impl Strings {
    /// The shared copy of `text`.
    pub(crate) fn get(&mut self, text: &str) -> Text {
        crate::intern::shared(&mut self.texts, text, |t| Text::from(t))
    }

    /// The shared copy of the sequence `entries`.
    pub(crate) fn sequence(&mut self, entries: impl IntoIterator<Item = String>) -> Arc<[Text]> {
        let entries: Vec<Text> = entries.into_iter().map(|e| self.get(&e)).collect();
        crate::intern::shared(&mut self.sequences, entries.as_slice(), |e| Arc::from(e))
    }
}

/// A scenario the run could not drive for this manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SkippedScenario {
    /// The scenario.
    pub scenario: Scenario,
    /// Why it was not driven.
    pub reason: String,
}

fn real_time() -> f64 {
    1.0
}

/// The `perturbation` of an event whose payload drifted from its contract on purpose
/// (the `mapping-errors` scenario): the ATS must refuse it, and the contract checks
/// do not hold it against the integration or the harness.
pub const DRIFTED: &str = "drifted";

/// Kinds of the harness records that mark what the kill-switch scenarios did, and
/// when, so the checks can judge the integration against the fault windows.
pub mod marks {
    /// A fault window opened. Detail: `{"scenario", "phase", "expect_trip": bool,
    /// "faults": [FaultWindow…]}`; `phase` is `outage`, `brownout-above`,
    /// `brownout-below` or `mapping-errors`.
    pub const FAULT_START: &str = "fault.start";
    /// The fault window closed (the ATS recovered). Detail: `{"scenario", "phase"}`.
    pub const FAULT_END: &str = "fault.end";
    /// The harness SIGKILLed the integration. Detail: `{"scenario"}`; a new
    /// `integration.ready` record follows once it is back.
    pub const INTEGRATION_KILLED: &str = "integration.killed";
}

impl Plan {
    /// The events of one scenario.
    pub fn events_of(&self, scenario: Scenario) -> impl Iterator<Item = &PlannedEvent> {
        self.events.iter().filter(move |e| e.scenario == scenario)
    }

    /// The payload of the event at `place` as far as the plan holds it: whole, or only
    /// the fields of its contract's stability rules (in `contracts`) when the plan
    /// leaves it out.
    pub fn payload_of(&self, place: usize, contracts: &ContractSet) -> Cow<'_, Value> {
        let Some(event) = self.events.get(place) else {
            return Cow::Owned(Value::Null);
        };
        if !event.payload.is_null() {
            return Cow::Borrowed(&*event.payload);
        }
        let held = self.stable_fields.payload(place, event, contracts);
        held.map_or(Cow::Borrowed(&*event.payload), Cow::Owned)
    }

    /// The candidate with this id.
    pub fn candidate(&self, id: &str) -> Option<&PlannedCandidate> {
        self.candidates.iter().find(|c| c.candidate == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a large plan's memory counts on: a text and a payload are a word each, an
    /// absent one too, so a planned event is a tenth of a kilobyte.
    #[test]
    fn a_planned_event_is_compact() {
        assert_eq!(size_of::<Text>(), size_of::<usize>());
        assert_eq!(size_of::<Option<Text>>(), size_of::<usize>());
        assert_eq!(size_of::<Payload>(), size_of::<usize>());
        assert!(
            size_of::<PlannedEvent>() <= 80,
            "{}",
            size_of::<PlannedEvent>()
        );
    }

    #[test]
    fn a_payload_reads_and_writes_as_its_value() {
        let absent = Payload::from(Value::Null);
        assert_eq!(absent, Payload::default());
        assert!(absent.is_null());
        assert_eq!(serde_json::to_string(&absent).expect("serialises"), "null");
        let held = Payload::from(serde_json::json!({"a": [1]}));
        assert_eq!(held["a"][0], 1);
        let text = serde_json::to_string(&held).expect("serialises");
        assert_eq!(text, r#"{"a":[1]}"#);
        assert_eq!(serde_json::from_str::<Payload>(&text).expect("reads"), held);
        assert_eq!(
            serde_json::from_str::<Payload>("null").expect("reads"),
            absent
        );
        let mut written = Payload::default();
        written["b"] = serde_json::json!(2);
        assert_eq!(*written, serde_json::json!({"b": 2}));
    }

    #[test]
    fn the_plan_file_serialises_as_the_plan_does() {
        let event = PlannedEvent {
            scenario: Scenario::Clean,
            candidate: "CAND_1".into(),
            contract: "identity.verification.completed".into(),
            event_id: "evt_1".into(),
            idempotency_key: "idk_1".into(),
            correlation_id: "cor_1".into(),
            occurred_at: "2026-05-18T09:00:00.000000Z".into(),
            sequence_index: 0,
            outcome: Some("passed".into()),
            perturbation: "none".into(),
            forged: false,
            in_scope: true,
            should_land: true,
            payload: serde_json::json!({"type": "identity.verification.completed"}).into(),
        };
        let mut plan = Plan {
            seed: 7,
            events: vec![event],
            ack_sla_ms: 5000,
            time_scale: 60.0,
            ..Plan::default()
        };
        let same = |plan: &Plan| {
            let file = serde_json::to_string_pretty(&PlanFile::new(plan, &plan.events))
                .expect("the plan file serialises");
            assert_eq!(
                file,
                serde_json::to_string_pretty(plan).expect("the plan serialises")
            );
            let back: Plan = serde_json::from_str(&file).expect("the plan file reads back");
            assert_eq!(&back, plan);
        };
        same(&plan);
        plan.skipped.push(SkippedScenario {
            scenario: Scenario::MappingErrors,
            reason: "nothing to drift".into(),
        });
        same(&plan);
    }
}
