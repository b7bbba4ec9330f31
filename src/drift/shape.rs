//! Shape inference: a fold over payloads into small per-field statistics.
//!
//! [`ShapeFold`] observes one payload at a time and never keeps one: per event type
//! and per field path it counts presence, JSON types, formats, nulls and — for short
//! strings of fields that are not volatile — up to [`MAX_VALUES`] distinct values,
//! each with where it was first seen. Folds of disjoint slices of the input
//! [`merge`](ShapeFold::merge), which is how `drift` runs on every core. Memory is
//! bounded by the number of distinct paths (capped per event type), never by the
//! number of payloads.
//!
//! Paths are dotted; array elements add `[]` (`data.object.screenings[].status`).
//! A field's presence is counted against its parent: `a.b` is present in so many of
//! the objects found at `a`, so a field of an optional object can still be required.
//!
//! [`Expectations`] tell the fold what to watch while it walks: the paths a contract
//! requires (looked up from the payload's root, the same semantics as `check`), the
//! children the baseline always saw (checked in every parent object), and the enum
//! fields whose out-of-enum values are kept exactly rather than capped away.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format::{self, Format};
use super::node::Node;
use crate::contract::path::FieldPath;

/// Distinct string values kept per field before its value set counts as open.
pub const MAX_VALUES: usize = 16;
/// Strings longer than this are never kept as values (free text, tokens).
const MAX_VALUE_LEN: usize = 64;
/// Distinct paths kept per event type; more are counted, not stored.
const MAX_FIELDS: usize = 2048;
/// Distinct event types kept; more are counted, not stored.
const MAX_EVENTS: usize = 1024;
/// Out-of-enum values kept per field.
const MAX_OUTSIDE: usize = 16;

/// Where something was first seen: input, line, and capture time when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Index of the input among the command's inputs.
    pub source: u32,
    /// 1-based line.
    pub line: u64,
    /// The capture's arrival time, Unix milliseconds (captures from `record` only).
    pub at_ms: Option<i64>,
}

impl Seen {
    /// The earlier of two sightings, in input order.
    fn min(self, other: Seen) -> Seen {
        if (other.source, other.line) < (self.source, self.line) {
            other
        } else {
            self
        }
    }
}

/// A JSON type; integers and fractional numbers are told apart.
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
)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number without a fraction.
    Integer,
    /// A number with a fraction.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl JsonType {
    /// The type of a value.
    pub fn of(value: &Value) -> JsonType {
        match value {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => JsonType::Integer,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    /// The type of a borrowed value (as [`JsonType::of`] its `Value`).
    pub fn of_node(node: &Node<'_>) -> JsonType {
        match node {
            Node::Null => JsonType::Null,
            Node::Bool(_) => JsonType::Boolean,
            Node::Number(n) if n.is_i64() || n.is_u64() => JsonType::Integer,
            Node::Number(_) => JsonType::Number,
            Node::String(_) => JsonType::String,
            Node::Array(_) => JsonType::Array,
            Node::Object(_) => JsonType::Object,
        }
    }

    /// The type's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

/// A count, where it started, and one example value (scalars only, cut short).
#[derive(Debug, Clone)]
pub struct Stat {
    /// How many times.
    pub count: u64,
    /// The first sighting.
    pub first: Seen,
    /// The first value, rendered (scalars only).
    pub example: Option<String>,
}

impl Stat {
    fn new(first: Seen, example: Option<String>) -> Stat {
        Stat {
            count: 1,
            first,
            example,
        }
    }

    fn absorb(&mut self, other: Stat) {
        self.count += other.count;
        if other.first.min(self.first) == other.first && other.first != self.first {
            self.first = other.first;
            self.example = other.example;
        }
    }
}

/// Adds `key` to a small keyed list of stats.
fn bump<K: PartialEq>(
    list: &mut Vec<(K, Stat)>,
    key: K,
    seen: Seen,
    example: impl FnOnce() -> Option<String>,
) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, stat)) => stat.count += 1,
        None => list.push((key, Stat::new(seen, example()))),
    }
}

fn absorb_list<K: PartialEq>(into: &mut Vec<(K, Stat)>, from: Vec<(K, Stat)>) {
    for (key, stat) in from {
        match into.iter_mut().find(|(k, _)| *k == key) {
            Some((_, mine)) => mine.absorb(stat),
            None => into.push((key, stat)),
        }
    }
}

/// Missing-or-null sightings of an expected field.
#[derive(Debug, Clone, Default)]
pub struct Missing {
    /// How many payloads (contract) or parent objects (baseline) lacked it.
    pub count: u64,
    /// The first of them.
    pub first: Option<Seen>,
}

impl Missing {
    fn record(&mut self, seen: Seen) {
        self.count += 1;
        self.first = Some(self.first.map_or(seen, |f| f.min(seen)));
    }

    fn absorb(&mut self, other: Missing) {
        self.count += other.count;
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What one field path looked like across the payloads of one event type.
#[derive(Debug, Clone)]
pub struct FieldFold {
    /// Times the key was there (null included); for `[]` paths, elements seen.
    pub present: u64,
    /// Times the value was an object (the denominator of its children's presence).
    pub objects: u64,
    /// JSON types seen.
    pub types: Vec<(JsonType, Stat)>,
    /// Formats seen, per scalar type.
    pub formats: Vec<((JsonType, Format), Stat)>,
    /// Distinct short strings, `None` once more than [`MAX_VALUES`] or the field is volatile.
    pub values: Option<Vec<(String, Stat)>>,
    /// Strings seen (the denominator of the value set).
    pub strings: u64,
    /// Whether the name says the value changes every time (ids, timestamps, URLs, ...).
    pub volatile_name: bool,
    /// Missing or null where the contract requires it.
    pub missing_contract: Missing,
    /// Missing or null in a parent object where the baseline always saw it.
    pub missing_baseline: Missing,
    /// Values outside the contract's enum.
    pub outside: Vec<(String, Stat)>,
    /// The first sighting.
    pub first: Option<Seen>,
}

impl FieldFold {
    fn new(path: &str) -> FieldFold {
        let volatile_name = is_volatile_name(path);
        FieldFold {
            present: 0,
            objects: 0,
            types: Vec::new(),
            formats: Vec::new(),
            values: (!volatile_name).then(Vec::new),
            strings: 0,
            volatile_name,
            missing_contract: Missing::default(),
            missing_baseline: Missing::default(),
            outside: Vec::new(),
            first: None,
        }
    }

    fn absorb(&mut self, other: FieldFold) {
        self.present += other.present;
        self.objects += other.objects;
        self.strings += other.strings;
        absorb_list(&mut self.types, other.types);
        absorb_list(&mut self.formats, other.formats);
        self.values = match (self.values.take(), other.values) {
            (Some(mut mine), Some(theirs)) => {
                absorb_list(&mut mine, theirs);
                (mine.len() <= MAX_VALUES).then_some(mine)
            }
            _ => None,
        };
        self.missing_contract.absorb(other.missing_contract);
        self.missing_baseline.absorb(other.missing_baseline);
        absorb_list(&mut self.outside, other.outside);
        self.outside.truncate(MAX_OUTSIDE);
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The non-null types, sorted.
    pub fn non_null_types(&self) -> Vec<JsonType> {
        let mut types: Vec<JsonType> = self
            .types
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t != JsonType::Null)
            .collect();
        types.sort_unstable();
        types
    }

    /// Nulls seen.
    pub fn nulls(&self) -> u64 {
        self.types
            .iter()
            .find(|(t, _)| *t == JsonType::Null)
            .map_or(0, |(_, s)| s.count)
    }

    /// The one format every scalar value had, unless that is `plain` or there were several.
    pub fn format(&self) -> Option<Format> {
        let mut formats = self.formats.iter().map(|((_, f), _)| *f);
        let first = formats.next()?;
        (first != Format::Plain && formats.all(|f| f == first)).then_some(first)
    }

    /// Whether values of this field differ payload to payload by nature.
    pub fn is_volatile(&self) -> bool {
        self.volatile_name || self.format().is_some_and(Format::is_volatile)
    }

    /// The value set, when the field looks categorical: closed, not volatile, and
    /// each value seen twice on average.
    pub fn categorical_values(&self) -> Option<Vec<String>> {
        if self.is_volatile() {
            return None;
        }
        let values = self.values.as_ref()?;
        if values.is_empty() || self.strings < 2 * values.len() as u64 {
            return None;
        }
        let mut out: Vec<String> = values.iter().map(|(v, _)| v.clone()).collect();
        out.sort_unstable();
        Some(out)
    }
}

/// What the payloads of one event type looked like.
#[derive(Debug, Clone)]
pub struct EventFold {
    /// Payloads of this type.
    pub count: u64,
    /// The first of them.
    pub first: Seen,
    /// Per path (the root object is `""`).
    pub fields: HashMap<String, FieldFold>,
    /// Paths not stored because of the cap.
    pub dropped_paths: u64,
}

impl EventFold {
    fn absorb(&mut self, other: EventFold) {
        self.count += other.count;
        self.first = self.first.min(other.first);
        self.dropped_paths += other.dropped_paths;
        for (path, field) in other.fields {
            if let Some(mine) = self.fields.get_mut(&path) {
                mine.absorb(field);
            } else if self.fields.len() < MAX_FIELDS {
                self.fields.insert(path, field);
            } else {
                self.dropped_paths += 1;
            }
        }
    }

    /// The number of objects at `path`'s parent: the denominator of its presence.
    pub fn parent_objects(&self, path: &str) -> u64 {
        self.fields.get(parent_of(path)).map_or(0, |f| f.objects)
    }

    /// Whether `path` has been seen with a value.
    pub fn has(&self, path: &str) -> bool {
        self.fields.get(path).is_some_and(|f| f.present > 0)
    }
}

/// The parent path: `a.b` for `a.b.c`, `a` for `a[]`, `""` for a top-level key.
pub fn parent_of(path: &str) -> &str {
    if let Some(stripped) = path.strip_suffix("[]") {
        return stripped;
    }
    path.rfind('.').map_or("", |i| &path[..i])
}

/// The last segment of a path, without `[]`.
pub fn leaf_of(path: &str) -> &str {
    let path = path.trim_end_matches("[]");
    path.rfind('.').map_or(path, |i| &path[i + 1..])
}

/// Whether a field's name says its value is an id, a time, a URL, a digest or a token.
pub fn is_volatile_name(path: &str) -> bool {
    let leaf = leaf_of(path);
    let lower = leaf.to_ascii_lowercase();
    let words: Vec<&str> = split_words(leaf);
    const WORDS: [&str; 22] = [
        "id",
        "ids",
        "uuid",
        "guid",
        "token",
        "signature",
        "digest",
        "hash",
        "sha",
        "checksum",
        "url",
        "uri",
        "href",
        "link",
        "at",
        "timestamp",
        "time",
        "date",
        "nonce",
        "secret",
        "key",
        "etag",
    ];
    const WHOLE: [&str; 5] = ["created", "updated", "modified", "expires", "iso8601"];
    words
        .last()
        .is_some_and(|w| WORDS.contains(&w.to_ascii_lowercase().as_str()))
        || WHOLE.iter().any(|w| lower.contains(w))
}

/// Splits `candidate_id`, `candidateId`, `created-at` into words.
fn split_words(name: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let bytes = name.as_bytes();
    for i in 0..bytes.len() {
        let c = bytes[i];
        if c == b'_' || c == b'-' {
            if i > start {
                words.push(&name[start..i]);
            }
            start = i + 1;
        } else if c.is_ascii_uppercase() && i > start && bytes[i - 1].is_ascii_lowercase() {
            words.push(&name[start..i]);
            start = i;
        }
    }
    if start < name.len() {
        words.push(&name[start..]);
    }
    words
}

/// What to watch for one event type while folding.
#[derive(Debug, Default)]
pub struct EventExpect {
    /// Paths the contract requires, looked up from the root.
    pub contract_required: Vec<FieldPath>,
    /// Per parent path, the children the baseline always saw: (key, full path), sorted
    /// by key.
    pub baseline_required: HashMap<String, Vec<(String, String)>>,
    /// Enum fields and their values.
    pub enums: HashMap<String, Vec<String>>,
}

/// What to watch, per event type.
#[derive(Debug, Default)]
pub struct Expectations {
    /// Per event type.
    pub events: HashMap<String, EventExpect>,
}

/// Input counts of a fold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Counts {
    /// Lines (or array elements) read.
    pub read: u64,
    /// Payloads whose shape was inferred.
    pub inferred: u64,
    /// Lines that are not JSON, or captures whose body is not a JSON object.
    pub malformed: u64,
    /// Captures whose signature did not verify (skipped).
    pub forged: u64,
    /// Payloads with no event type at any `--type-field` (skipped).
    pub untyped: u64,
    /// Payloads outside `--since`/`--until`, or without a capture time when a window is set (skipped).
    pub outside_window: u64,
    /// Event types or paths beyond the caps, counted but not stored.
    pub dropped: u64,
}

impl Counts {
    fn absorb(&mut self, other: &Counts) {
        self.read += other.read;
        self.inferred += other.inferred;
        self.malformed += other.malformed;
        self.forged += other.forged;
        self.untyped += other.untyped;
        self.outside_window += other.outside_window;
        self.dropped += other.dropped;
    }
}

/// The fold over every payload of the input.
#[derive(Debug, Default)]
pub struct ShapeFold {
    /// Per event type.
    pub events: HashMap<String, EventFold>,
    /// What was read and skipped.
    pub counts: Counts,
}

impl ShapeFold {
    /// Merges the fold of a later (or disjoint) slice of the input.
    pub fn merge(&mut self, other: ShapeFold) {
        self.counts.absorb(&other.counts);
        for (event, fold) in other.events {
            if let Some(mine) = self.events.get_mut(&event) {
                mine.absorb(fold);
            } else if self.events.len() < MAX_EVENTS {
                self.events.insert(event, fold);
            } else {
                self.counts.dropped += 1;
            }
        }
    }

    /// Observes one payload of event type `event`.
    pub fn observe(
        &mut self,
        event: &str,
        payload: &Value,
        seen: Seen,
        expect: Option<&EventExpect>,
    ) {
        self.observe_node(event, &Node::from_value(payload), seen, expect);
    }

    /// [`ShapeFold::observe`] over a borrowed tree (what `drift` parses payloads into).
    pub fn observe_node(
        &mut self,
        event: &str,
        payload: &Node<'_>,
        seen: Seen,
        expect: Option<&EventExpect>,
    ) {
        self.counts.inferred += 1;
        let full = self.events.len() >= MAX_EVENTS;
        let fold = match self.events.entry_ref(event) {
            EntryRef::Occupied(entry) => entry.into_mut(),
            EntryRef::Vacant(_) if full => {
                self.counts.dropped += 1;
                return;
            }
            EntryRef::Vacant(entry) => entry.insert(EventFold {
                count: 0,
                first: seen,
                fields: HashMap::new(),
                dropped_paths: 0,
            }),
        };
        fold.count += 1;
        fold.first = fold.first.min(seen);
        if let Some(expect) = expect {
            for path in &expect.contract_required {
                if payload.lookup(path).is_none()
                    && let Some(field) = field_mut(fold, path.as_str())
                {
                    field.missing_contract.record(seen);
                }
            }
        }
        let mut path = String::with_capacity(128);
        walk(fold, &mut path, payload, seen, expect);
    }
}

fn field_mut<'f>(fold: &'f mut EventFold, path: &str) -> Option<&'f mut FieldFold> {
    let full = fold.fields.len() >= MAX_FIELDS;
    match fold.fields.entry_ref(path) {
        EntryRef::Occupied(entry) => Some(entry.into_mut()),
        EntryRef::Vacant(_) if full => {
            fold.dropped_paths += 1;
            None
        }
        EntryRef::Vacant(entry) => Some(entry.insert(FieldFold::new(path))),
    }
}

/// Records `value`, found at `path`, then its children.
fn walk(
    fold: &mut EventFold,
    path: &mut String,
    value: &Node<'_>,
    seen: Seen,
    expect: Option<&EventExpect>,
) {
    let Some(field) = field_mut(fold, path) else {
        return;
    };
    field.present += 1;
    field.first = Some(field.first.map_or(seen, |f| f.min(seen)));
    let kind = JsonType::of_node(value);
    bump(&mut field.types, kind, seen, || example(value));
    let enum_values = expect
        .filter(|e| !e.enums.is_empty())
        .and_then(|e| e.enums.get(path.as_str()));
    if let Some(allowed) = enum_values
        && !value
            .as_str()
            .is_some_and(|s| allowed.iter().any(|a| a == s))
        && !value.is_null()
    {
        let shown = value
            .as_str()
            .map_or_else(|| value.to_value().to_string(), str::to_owned);
        if field.outside.len() < MAX_OUTSIDE || field.outside.iter().any(|(v, _)| *v == shown) {
            bump(&mut field.outside, shown, seen, || None);
        }
    }
    match value {
        Node::String(s) => {
            let s: &str = s;
            field.strings += 1;
            let fmt = format::of_str(s);
            bump(&mut field.formats, (JsonType::String, fmt), seen, || {
                example(value)
            });
            if fmt.is_volatile() || s.len() > MAX_VALUE_LEN {
                field.values = None;
            } else if let Some(values) = &mut field.values {
                if let Some((_, stat)) = values.iter_mut().find(|(v, _)| v == s) {
                    stat.count += 1;
                } else if values.len() < MAX_VALUES {
                    values.push((s.to_owned(), Stat::new(seen, None)));
                } else {
                    field.values = None;
                }
            }
        }
        Node::Number(n) => {
            let fmt = n.as_i64().map_or(Format::Plain, format::of_int);
            bump(&mut field.formats, (kind, fmt), seen, || example(value));
        }
        Node::Object(entries) => {
            field.objects += 1;
            if let Some(required) = expect
                .filter(|e| !e.baseline_required.is_empty())
                .and_then(|e| e.baseline_required.get(path.as_str()))
            {
                // Both sorted by key: one pass over the entries instead of a search
                // per required key.
                let mut at = 0;
                for (key, full) in required {
                    while entries
                        .get(at)
                        .is_some_and(|(k, _)| k.as_ref() < key.as_str())
                    {
                        at += 1;
                    }
                    let there = entries
                        .get(at)
                        .is_some_and(|(k, v)| k.as_ref() == key.as_str() && !v.is_null());
                    if !there && let Some(child) = field_mut(fold, full) {
                        child.missing_baseline.record(seen);
                    }
                }
            }
            for (key, child) in entries {
                let len = path.len();
                if len > 0 {
                    path.push('.');
                }
                path.push_str(key);
                walk(fold, path, child, seen, expect);
                path.truncate(len);
            }
        }
        Node::Array(items) => {
            for item in items {
                let len = path.len();
                path.push_str("[]");
                walk(fold, path, item, seen, expect);
                path.truncate(len);
            }
        }
        Node::Bool(_) | Node::Null => {}
    }
}

/// A scalar rendered for a message, cut to 40 characters.
fn example(value: &Node<'_>) -> Option<String> {
    let text = match value {
        Node::Object(_) | Node::Array(_) => return None,
        Node::String(s) => format!("{:?}", &**s),
        Node::Number(n) => n.to_string(),
        Node::Bool(b) => b.to_string(),
        Node::Null => "null".to_owned(),
    };
    Some(if text.chars().count() > 40 {
        let cut: String = text.chars().take(39).collect();
        format!("{cut}…")
    } else {
        text
    })
}

/// The summary of one field: what a baseline keeps and a report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldShape {
    /// JSON types seen, null excluded, sorted.
    pub types: Vec<JsonType>,
    /// Present and non-null in every parent object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Seen as `null`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nullable: bool,
    /// The one format of every value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The values of a low-cardinality string field, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Values differ payload to payload by nature; never compared by value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile: bool,
    /// Share of the parent objects carrying the field (reports only, never in a baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<f64>,
}

/// The summary of one event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventShape {
    /// Payloads of this type (reports only, never in a baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads: Option<u64>,
    /// Per dotted path (`[]` marks array elements), sorted.
    pub fields: BTreeMap<String, FieldShape>,
}

impl EventFold {
    /// The summary; `with_counts` adds payloads and presence (reports, not baselines).
    pub fn shape(&self, with_counts: bool) -> EventShape {
        let mut fields = BTreeMap::new();
        for (path, field) in &self.fields {
            if path.is_empty() || field.present == 0 {
                continue;
            }
            let parent = self.parent_objects(path);
            let array_element = path.ends_with("[]");
            let nulls = field.nulls();
            let presence = if parent > 0 && !array_element {
                (field.present as f64 / parent as f64 * 1000.0).round() / 1000.0
            } else {
                1.0
            };
            fields.insert(
                path.clone(),
                FieldShape {
                    types: field.non_null_types(),
                    required: !array_element && parent > 0 && field.present == parent && nulls == 0,
                    nullable: nulls > 0,
                    format: field.format(),
                    values: field.categorical_values(),
                    volatile: field.is_volatile(),
                    presence: with_counts.then_some(presence),
                },
            );
        }
        EventShape {
            payloads: with_counts.then_some(self.count),
            fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen(line: u64) -> Seen {
        Seen {
            source: 0,
            line,
            at_ms: None,
        }
    }

    fn fold_of(payloads: &[Value]) -> ShapeFold {
        let mut fold = ShapeFold::default();
        for (i, p) in payloads.iter().enumerate() {
            fold.observe("e", p, seen(i as u64 + 1), None);
        }
        fold
    }

    #[test]
    fn presence_is_counted_against_the_parent_and_arrays_get_element_paths() {
        let fold = fold_of(&[
            json!({"a": {"b": 1}, "tags": [{"k": "x"}, {"k": "y"}]}),
            json!({"a": {"b": 2}, "tags": []}),
            json!({"tags": [{"k": "x", "extra": null}]}),
        ]);
        let shape = fold.events["e"].shape(true);
        assert!(shape.fields["a.b"].required, "always there when `a` is");
        assert!(!shape.fields["a"].required);
        assert_eq!(shape.fields["a"].presence, Some(0.667));
        assert_eq!(shape.fields["tags[]"].types, [JsonType::Object]);
        assert!(shape.fields["tags[].k"].required);
        assert!(shape.fields["tags[].extra"].nullable);
        assert_eq!(shape.payloads, Some(3));
    }

    #[test]
    fn formats_values_and_volatility_are_inferred() {
        let payloads: Vec<Value> = (0..6)
            .map(|i| {
                let status = ["clear", "consider"][i % 2];
                json!({
                    "id": format!("rep_{i}"),
                    "status": status,
                    "created_at": format!("2026-05-1{i}T09:00:00Z"),
                    "completed": 1_747_558_800 + i,
                    "country": "DE",
                    "note": format!("free text {i}"),
                })
            })
            .collect();
        let shape = fold_of(&payloads).events["e"].shape(false);
        let f = &shape.fields;
        assert_eq!(
            f["status"].values.as_deref(),
            Some(&["clear".to_owned(), "consider".to_owned()][..])
        );
        assert!(
            f["id"].volatile && f["id"].values.is_none(),
            "ids are volatile by name"
        );
        assert_eq!(f["created_at"].format, Some(Format::Rfc3339));
        assert_eq!(f["completed"].format, Some(Format::EpochSeconds));
        assert_eq!(f["country"].format, Some(Format::IsoCountry));
        assert!(
            f["country"].values.is_some(),
            "a country is categorical, not volatile"
        );
        assert!(
            f["note"].values.is_none(),
            "six distinct values in six payloads is not a category"
        );
        assert!(f["status"].presence.is_none(), "baselines carry no counts");
    }

    #[test]
    fn merged_folds_equal_one_fold_over_everything() {
        let payloads: Vec<Value> = (0..40)
            .map(|i| json!({"s": format!("v{}", i % 5), "n": i, "o": {"x": i % 2 == 0}}))
            .collect();
        let whole = fold_of(&payloads).events["e"].shape(true);
        let mut left = ShapeFold::default();
        let mut right = ShapeFold::default();
        for (i, p) in payloads.iter().enumerate() {
            let target = if i % 3 == 0 { &mut left } else { &mut right };
            target.observe("e", p, seen(i as u64 + 1), None);
        }
        right.merge(left);
        assert_eq!(right.events["e"].shape(true), whole);
        assert_eq!(right.events["e"].first.line, 1);
    }

    #[test]
    fn volatile_names_are_recognised() {
        for name in [
            "id",
            "candidateId",
            "data.object.report_id",
            "created_at",
            "triggeredAt",
            "href",
            "completed_at_iso8601",
            "token",
            "signature",
        ] {
            assert!(is_volatile_name(name), "{name}");
        }
        for name in [
            "status",
            "result",
            "action",
            "package",
            "adjudication",
            "paid",
        ] {
            assert!(!is_volatile_name(name), "{name}");
        }
    }
}
