//! The assertion language of contracts: parsed once into a typed AST, evaluated per event.
//!
//! ```text
//! assertion := clause ("and" clause)*
//!            | PATH "is" "stable" "for" "same" "(" PATH ("," PATH)* ")"
//! clause    := [PATH] predicate            (the first clause names its PATH; later
//!                                           clauses without one reuse the previous PATH)
//! predicate := "matches" REGEX             (bare up to whitespace, or '…', "…", /…/)
//!            | "is" FORMAT                 (RFC3339 URL UUID integer number string boolean non-empty)
//!            | CMP ( NUMBER | "now()" [("+"|"-") DURATION] )
//!            | "between" NUMBER "and" NUMBER          (inclusive)
//!            | "in" ( LIST_NAME | "[" ITEM ("," ITEM)* "]" )
//! CMP       := "<=" | "<" | ">=" | ">" | "==" | "!="
//! DURATION  := INTEGER ("ms" | "s" | "m" | "h" | "d" | "w")
//! ```
//!
//! A clause whose field is absent is not judged: presence is the job of
//! `required_fields`. Parsing happens at manifest load so a typo is a manifest error
//! with a column, never a surprise in the middle of a run.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use regex::Regex;
use serde_json::Value;

use super::lists::{ListCatalog, NamedList};
use super::path::{FieldPath, is_segment_char};
use crate::suggest::did_you_mean;

/// One parsed assertion, with the text it came from.
#[derive(Debug, Clone)]
pub struct Assertion {
    source: String,
    kind: AssertionKind,
}

/// What an assertion says: a conjunction of per-event clauses, or a cross-event rule.
#[derive(Debug, Clone)]
pub enum AssertionKind {
    /// Every clause must hold on each event.
    Each(Vec<Clause>),
    /// Events that agree on the tuple agree on the key.
    StableFor(StableFor),
}

/// One `PATH predicate` clause.
#[derive(Debug, Clone)]
pub struct Clause {
    /// The field the predicate is about.
    pub subject: FieldPath,
    /// What must hold of it.
    pub predicate: Predicate,
    /// Where the clause stands in the assertion's text.
    pub span: Range<usize>,
}

/// A single test on one field's value.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// A string matching a regular expression (unanchored, like JSON Schema `pattern`).
    Matches(Pattern),
    /// A value of a given format or type.
    Is(Format),
    /// A comparison with a number or with the evaluation time.
    Compare(CmpOp, Operand),
    /// A number inside an inclusive range.
    Between(f64, f64),
    /// A value that is a member of a list.
    In(ListRef),
}

/// A compiled regular expression with its source.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The regex as written.
    pub source: String,
    /// The compiled regex.
    pub regex: Regex,
}

/// The formats and types `is` can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An RFC 3339 date-time string.
    Rfc3339,
    /// An absolute `http` or `https` URL.
    Url,
    /// A hyphenated UUID string.
    Uuid,
    /// A JSON number with no fractional part.
    Integer,
    /// Any JSON number.
    Number,
    /// Any JSON string.
    String,
    /// `true` or `false`.
    Boolean,
    /// A non-empty string, array or object.
    NonEmpty,
}

const FORMAT_NAMES: &[(&str, Format)] = &[
    ("rfc3339", Format::Rfc3339),
    ("url", Format::Url),
    ("uuid", Format::Uuid),
    ("integer", Format::Integer),
    ("number", Format::Number),
    ("string", Format::String),
    ("boolean", Format::Boolean),
    ("non-empty", Format::NonEmpty),
];

impl Format {
    /// The keyword that names this format in the language.
    pub fn keyword(self) -> &'static str {
        match self {
            Format::Rfc3339 => "RFC3339",
            Format::Url => "URL",
            Format::Uuid => "UUID",
            Format::Integer => "integer",
            Format::Number => "number",
            Format::String => "string",
            Format::Boolean => "boolean",
            Format::NonEmpty => "non-empty",
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Lt => ordering == Less,
            CmpOp::Le => ordering != Greater,
            CmpOp::Gt => ordering == Greater,
            CmpOp::Ge => ordering != Less,
            CmpOp::Eq => ordering == Equal,
            CmpOp::Ne => ordering != Equal,
        }
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    /// A plain number.
    Number(f64),
    /// `now()` shifted by an offset (`now() - 30d`).
    Now(TimeDelta),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Number(n) => write!(f, "{}", format_number(*n)),
            Operand::Now(offset) if offset.is_zero() => f.write_str("now()"),
            Operand::Now(offset) => {
                let sign = if *offset < TimeDelta::zero() {
                    '-'
                } else {
                    '+'
                };
                write!(f, "now() {sign} {}", format_duration(offset.abs()))
            }
        }
    }
}

/// The list an `in` predicate tests against.
#[derive(Debug, Clone)]
pub enum ListRef {
    /// A list kept in the repository, by name.
    Named(Arc<NamedList>),
    /// A list written in the assertion.
    Literal(Vec<String>),
}

impl ListRef {
    /// Every allowed value.
    pub fn values(&self) -> &[String] {
        match self {
            ListRef::Named(list) => list.values(),
            ListRef::Literal(values) => values,
        }
    }

    fn contains(&self, value: &str) -> bool {
        match self {
            ListRef::Named(list) => list.contains(value),
            ListRef::Literal(values) => values.iter().any(|v| v == value),
        }
    }

    fn describe(&self) -> String {
        match self {
            ListRef::Named(list) => list.name().to_owned(),
            ListRef::Literal(values) => format!("[{}]", values.join(", ")),
        }
    }
}

/// `KEY is stable for same (A, B, …)`.
#[derive(Debug, Clone)]
pub struct StableFor {
    /// The field that must not change.
    pub key: FieldPath,
    /// The fields that identify "the same" event.
    pub tuple: Vec<FieldPath>,
}

/// What an event contributes to a stability rule: hashes of its tuple and of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StableFingerprint {
    /// Hash of the tuple's values.
    pub tuple: u64,
    /// Hash of the key's value.
    pub key: u64,
}

impl StableFor {
    /// The event's fingerprint, or `None` if the key or a tuple member is absent.
    pub fn fingerprint(&self, payload: &Value) -> Option<StableFingerprint> {
        let mut tuple = std::collections::hash_map::DefaultHasher::new();
        for path in &self.tuple {
            hash_value(path.lookup(payload)?, &mut tuple);
        }
        let mut key = std::collections::hash_map::DefaultHasher::new();
        hash_value(self.key.lookup(payload)?, &mut key);
        Some(StableFingerprint {
            tuple: tuple.finish(),
            key: key.finish(),
        })
    }

    /// The tuple's values in an event, rendered for a message.
    pub fn describe_tuple(&self, payload: &Value) -> String {
        let names: Vec<&str> = self.tuple.iter().map(FieldPath::as_str).collect();
        let values: Vec<String> = self
            .tuple
            .iter()
            .map(|p| {
                p.lookup(payload)
                    .map_or_else(|| "absent".to_owned(), render_value)
            })
            .collect();
        format!("({}) = ({})", names.join(", "), values.join(", "))
    }
}

// `DefaultHasher::new()` uses fixed keys, so fingerprints are the same in every run and
// on every machine; strings hash by content without serialising them.
fn hash_value(value: &Value, state: &mut impl Hasher) {
    match value {
        Value::String(s) => {
            0u8.hash(state);
            s.hash(state);
        }
        other => {
            1u8.hash(state);
            other.to_string().hash(state);
        }
    }
}

/// Remembers the first key seen for each tuple and reports the events that disagree.
#[derive(Debug)]
pub struct StableTracker<O> {
    first: std::collections::HashMap<u64, (u64, O)>,
}

impl<O> Default for StableTracker<O> {
    fn default() -> Self {
        StableTracker {
            first: Default::default(),
        }
    }
}

impl<O> StableTracker<O> {
    /// Records an event; returns the origin of the first event with the same tuple when
    /// this one's key differs from it.
    pub fn observe(&mut self, fingerprint: StableFingerprint, origin: O) -> Option<&O> {
        match self.first.entry(fingerprint.tuple) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((fingerprint.key, origin));
                None
            }
            std::collections::hash_map::Entry::Occupied(slot) => {
                let (key, first_origin) = slot.into_mut();
                (*key != fingerprint.key).then_some(&*first_origin)
            }
        }
    }

    /// How many distinct tuples have been seen.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// Whether nothing has been observed yet.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }
}

/// The time an evaluation treats as `now()`.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext {
    /// The evaluation time.
    pub now: DateTime<Utc>,
}

impl EvalContext {
    /// A context evaluating at the current wall-clock time.
    pub fn at_now() -> Self {
        EvalContext { now: Utc::now() }
    }
}

/// A parse error inside an assertion, located by byte range within its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AssertionError {
    /// Byte range of the offending text.
    pub span: Range<usize>,
    /// What is wrong, as a lowercase fragment.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl AssertionError {
    fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        AssertionError {
            span,
            message: message.into(),
            help: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

const PREDICATE_WORDS: &[&str] = &["matches", "is", "between", "in"];
const PREDICATE_HELP: &str = "a predicate is one of: matches REGEX, is FORMAT, <= / < / >= / > / == / != VALUE, between A and B, in LIST";

impl Assertion {
    /// Parses an assertion; `lists` resolves `in NAME`.
    pub fn parse(source: &str, lists: &ListCatalog) -> Result<Assertion, AssertionError> {
        let mut parser = Parser {
            src: source,
            pos: 0,
            lists,
        };
        let kind = parser.assertion()?;
        Ok(Assertion {
            source: source.to_owned(),
            kind,
        })
    }

    /// The assertion's text as written in the manifest.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed form.
    pub fn kind(&self) -> &AssertionKind {
        &self.kind
    }

    /// Every field path the assertion reads, in order of appearance.
    pub fn paths(&self) -> Vec<&FieldPath> {
        match &self.kind {
            AssertionKind::Each(clauses) => {
                let mut paths: Vec<&FieldPath> = Vec::new();
                for clause in clauses {
                    if !paths.contains(&&clause.subject) {
                        paths.push(&clause.subject);
                    }
                }
                paths
            }
            AssertionKind::StableFor(rule) => std::iter::once(&rule.key)
                .chain(rule.tuple.iter())
                .collect(),
        }
    }
}

impl Clause {
    /// Judges the clause on one event: `Some(message)` when it fails.
    pub fn evaluate(&self, payload: &Value, ctx: &EvalContext) -> Option<String> {
        let value = self.subject.lookup(payload)?;
        self.predicate.evaluate(self.subject.as_str(), value, ctx)
    }
}

impl Predicate {
    /// Judges one present value: `Some(message)` when it fails.
    pub fn evaluate(&self, name: &str, value: &Value, ctx: &EvalContext) -> Option<String> {
        let shown = render_value(value);
        match self {
            Predicate::Matches(pattern) => match value.as_str() {
                Some(s) if pattern.regex.is_match(s) => None,
                Some(_) => Some(format!(
                    "`{name}` is {shown}, which does not match `{}`",
                    pattern.source
                )),
                None => Some(format!(
                    "`{name}` is {shown} ({}), but `matches` needs a string",
                    type_name(value)
                )),
            },
            Predicate::Is(format) => (!format_holds(*format, value)).then(|| {
                format!(
                    "`{name}` is {shown}, which is not {}",
                    format_phrase(*format)
                )
            }),
            Predicate::Compare(op, Operand::Number(bound)) => match value.as_f64() {
                Some(n) if op.holds(n.total_cmp(bound)) => None,
                Some(_) => Some(format!(
                    "`{name}` is {shown}, which is not {} {}",
                    op.symbol(),
                    format_number(*bound)
                )),
                None => Some(format!(
                    "`{name}` is {shown} ({}), but `{}` compares numbers",
                    type_name(value),
                    op.symbol()
                )),
            },
            Predicate::Compare(op, operand @ Operand::Now(offset)) => {
                match value.as_str().and_then(parse_rfc3339) {
                    Some(t) if op.holds(t.cmp(&(ctx.now + *offset))) => None,
                    Some(_) => Some(format!(
                        "`{name}` is {shown}, which is not {} {operand}",
                        op.symbol()
                    )),
                    None => Some(format!(
                        "`{name}` is {shown}, which is not an RFC3339 timestamp to compare with {operand}"
                    )),
                }
            }
            Predicate::Between(low, high) => match value.as_f64() {
                Some(n) if n >= *low && n <= *high => None,
                Some(_) => Some(format!(
                    "`{name}` is {shown}, which is not between {} and {}",
                    format_number(*low),
                    format_number(*high)
                )),
                None => Some(format!(
                    "`{name}` is {shown} ({}), but `between` needs a number",
                    type_name(value)
                )),
            },
            Predicate::In(list) => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => value.to_string(),
                    _ => {
                        return Some(format!(
                            "`{name}` is {shown} ({}), but `in` needs a string",
                            type_name(value)
                        ));
                    }
                };
                if list.contains(&text) {
                    return None;
                }
                let hint = did_you_mean(&text, list.values().iter().map(String::as_str))
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                Some(format!(
                    "`{name}` is {shown}, which is not in {}{hint}",
                    list.describe()
                ))
            }
        }
    }
}

/// Parses an RFC 3339 timestamp to UTC.
pub fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn format_holds(format: Format, value: &Value) -> bool {
    match format {
        Format::Rfc3339 => value.as_str().and_then(parse_rfc3339).is_some(),
        Format::Url => value
            .as_str()
            .and_then(|s| url::Url::parse(s).ok())
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()),
        Format::Uuid => value.as_str().is_some_and(is_uuid),
        Format::Integer => value.as_f64().is_some_and(|f| f.fract() == 0.0),
        Format::Number => value.is_number(),
        Format::String => value.is_string(),
        Format::Boolean => value.is_boolean(),
        Format::NonEmpty => match value {
            Value::String(s) => !s.trim().is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        },
    }
}

fn is_uuid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn format_phrase(format: Format) -> &'static str {
    match format {
        Format::Rfc3339 => "an RFC3339 timestamp",
        Format::Url => "an http(s) URL",
        Format::Uuid => "a UUID",
        Format::Integer => "an integer",
        Format::Number => "a number",
        Format::String => "a string",
        Format::Boolean => "a boolean",
        Format::NonEmpty => "non-empty",
    }
}

/// The JSON type of a value, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as compact JSON, cut to a readable length.
pub fn render_value(value: &Value) -> String {
    const LIMIT: usize = 80;
    let text = value.to_string();
    if text.chars().count() <= LIMIT {
        return text;
    }
    let cut: String = text.chars().take(LIMIT).collect();
    format!("{cut}…")
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn format_duration(d: TimeDelta) -> String {
    let ms = d.num_milliseconds();
    const UNITS: &[(i64, &str)] = &[
        (604_800_000, "w"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    for (size, unit) in UNITS {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

struct Parser<'s, 'l> {
    src: &'s str,
    pos: usize,
    lists: &'l ListCatalog,
}

impl<'s> Parser<'s, '_> {
    fn assertion(&mut self) -> Result<AssertionKind, AssertionError> {
        self.skip_ws();
        if self.at_end() {
            return Err(AssertionError::new(0..0, "empty assertion").with_help(
                "write a field path and a predicate, for example `occurred_at is RFC3339`",
            ));
        }
        let start = self.pos;
        let subject = self.path("a field path")?;
        if let Some(rule) = self.try_stable_for(&subject)? {
            return Ok(AssertionKind::StableFor(rule));
        }
        let mut clauses = vec![self.clause_after_subject(subject, start)?];
        loop {
            self.skip_ws();
            if self.at_end() {
                return Ok(AssertionKind::Each(clauses));
            }
            let (word_span, word) = self.peek_word();
            if word != "and" {
                let found = if word.is_empty() {
                    self.rest_preview()
                } else {
                    word.to_owned()
                };
                return Err(AssertionError::new(
                    word_span.start..word_span.start + found.len().max(1),
                    format!("expected `and` or the end of the assertion, found `{found}`"),
                )
                .with_help(
                    "join clauses with `and`; a regex with spaces must be quoted: matches '…'",
                ));
            }
            self.pos = word_span.end;
            self.skip_ws();
            let clause_start = self.pos;
            let subject = if self.at_predicate() {
                clauses
                    .last()
                    .map(|c: &Clause| c.subject.clone())
                    .expect("at least one clause")
            } else {
                self.path("a field path or a predicate after `and`")?
            };
            clauses.push(self.clause_after_subject(subject, clause_start)?);
        }
    }

    fn clause_after_subject(
        &mut self,
        subject: FieldPath,
        start: usize,
    ) -> Result<Clause, AssertionError> {
        let predicate = self.predicate(&subject)?;
        Ok(Clause {
            subject,
            predicate,
            span: start..self.pos,
        })
    }

    fn try_stable_for(&mut self, subject: &FieldPath) -> Result<Option<StableFor>, AssertionError> {
        let saved = self.pos;
        self.skip_ws();
        let (_, first) = self.peek_word();
        if first != "is" {
            self.pos = saved;
            return Ok(None);
        }
        self.take_word();
        self.skip_ws();
        let (_, second) = self.peek_word();
        if second != "stable" {
            self.pos = saved;
            return Ok(None);
        }
        self.take_word();
        for keyword in ["for", "same"] {
            self.expect_word(keyword, "`is stable for same (A, B, …)`")?;
        }
        self.expect_char('(', "`(` to open the tuple")?;
        let mut tuple = Vec::new();
        loop {
            let path_start = self.after_ws();
            let path = self.path("a field path in the tuple")?;
            if &path == subject {
                return Err(AssertionError::new(
                    path_start..self.pos,
                    format!("`{path}` cannot be part of its own tuple"),
                )
                .with_help("the tuple names the fields that identify the same event; the key is what must stay stable"));
            }
            tuple.push(path);
            self.skip_ws();
            match self.peek_char() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    break;
                }
                _ => {
                    return Err(AssertionError::new(
                        self.pos..self.pos + 1,
                        "expected `,` or `)` in the tuple",
                    ));
                }
            }
        }
        self.skip_ws();
        if !self.at_end() {
            return Err(AssertionError::new(
                self.pos..self.src.len(),
                "a stability rule stands alone: nothing may follow its tuple",
            )
            .with_help("write other clauses as a separate assertion"));
        }
        Ok(Some(StableFor {
            key: subject.clone(),
            tuple,
        }))
    }

    fn predicate(&mut self, subject: &FieldPath) -> Result<Predicate, AssertionError> {
        self.skip_ws();
        let start = self.pos;
        if let Some(op) = self.comparison_operator() {
            return Ok(Predicate::Compare(op, self.operand()?));
        }
        let (span, word) = self.peek_word();
        match word {
            "matches" => {
                self.pos = span.end;
                Ok(Predicate::Matches(self.regex()?))
            }
            "is" => {
                self.pos = span.end;
                self.format().map(Predicate::Is)
            }
            "between" => {
                self.pos = span.end;
                let low = self.number()?;
                self.expect_word("and", "`between A and B`")?;
                let high_start = self.after_ws();
                let high = self.number()?;
                if low > high {
                    return Err(AssertionError::new(
                        high_start..self.pos,
                        format!(
                            "empty range: {} is below {}",
                            format_number(high),
                            format_number(low)
                        ),
                    )
                    .with_help("write the smaller bound first"));
                }
                Ok(Predicate::Between(low, high))
            }
            "in" => {
                self.pos = span.end;
                self.list().map(Predicate::In)
            }
            "" if self.at_end() => Err(AssertionError::new(
                start..start,
                format!("`{subject}` needs a predicate"),
            )
            .with_help(PREDICATE_HELP)),
            other => {
                let shown = if other.is_empty() {
                    self.rest_preview()
                } else {
                    other.to_owned()
                };
                let mut err = AssertionError::new(
                    start..start + shown.len().max(1),
                    format!("expected a predicate after `{subject}`, found `{shown}`"),
                );
                err = match did_you_mean(other, PREDICATE_WORDS.iter().copied()) {
                    Some(word) => err.with_help(format!("did you mean `{word}`?")),
                    None => err.with_help(PREDICATE_HELP),
                };
                Err(err)
            }
        }
    }

    fn comparison_operator(&mut self) -> Option<CmpOp> {
        const OPERATORS: &[(&str, CmpOp)] = &[
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ];
        let rest = &self.src[self.pos..];
        let (text, op) = OPERATORS.iter().find(|(text, _)| rest.starts_with(text))?;
        self.pos += text.len();
        Some(*op)
    }

    fn operand(&mut self) -> Result<Operand, AssertionError> {
        let start = self.after_ws();
        if self.src[self.pos..].starts_with("now()") {
            self.pos += "now()".len();
            let saved = self.pos;
            self.skip_ws();
            let sign = match self.peek_char() {
                Some('+') => 1,
                Some('-') => -1,
                _ => {
                    self.pos = saved;
                    return Ok(Operand::Now(TimeDelta::zero()));
                }
            };
            self.pos += 1;
            let offset = self.duration()?;
            return Ok(Operand::Now(if sign < 0 { -offset } else { offset }));
        }
        if self.src[self.pos..].starts_with("now") {
            return Err(AssertionError::new(
                start..start + 3,
                "`now` needs parentheses: `now()`",
            ));
        }
        self.number().map(Operand::Number)
    }

    fn duration(&mut self) -> Result<TimeDelta, AssertionError> {
        let start = self.after_ws();
        let digits = self.take_while(|c| c.is_ascii_digit());
        let unit = self.take_while(|c| c.is_ascii_alphabetic());
        let span = start..self.pos;
        let amount: i64 = digits.parse().map_err(|_| {
            AssertionError::new(
                span.clone(),
                "expected a duration such as `30d`, `12h` or `5m`",
            )
        })?;
        let delta = match unit {
            "ms" => TimeDelta::try_milliseconds(amount),
            "s" => TimeDelta::try_seconds(amount),
            "m" => TimeDelta::try_minutes(amount),
            "h" => TimeDelta::try_hours(amount),
            "d" => TimeDelta::try_days(amount),
            "w" => TimeDelta::try_weeks(amount),
            _ => {
                return Err(
                    AssertionError::new(span, format!("unknown duration unit `{unit}`"))
                        .with_help("units are ms, s, m, h, d and w, as in `now() - 30d`"),
                );
            }
        };
        delta.ok_or_else(|| AssertionError::new(span, "duration is too large"))
    }

    fn number(&mut self) -> Result<f64, AssertionError> {
        let start = self.after_ws();
        let text =
            self.take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => {
                let shown = if text.is_empty() {
                    self.rest_preview()
                } else {
                    text.to_owned()
                };
                Err(AssertionError::new(
                    start..start + shown.len().max(1),
                    format!("expected a number, found `{shown}`"),
                ))
            }
        }
    }

    fn regex(&mut self) -> Result<Pattern, AssertionError> {
        let start = self.after_ws();
        let (source, span) = match self.peek_char() {
            Some(quote @ ('\'' | '"' | '/')) => self.quoted(quote)?,
            Some(_) => {
                let text = self.take_while(|c| !c.is_whitespace());
                (text.to_owned(), start..self.pos)
            }
            None => {
                return Err(AssertionError::new(
                    start..start,
                    "`matches` needs a regular expression",
                )
                .with_help("for example: ats_candidate_id matches ^[A-Za-z0-9_-]{6,64}$"));
            }
        };
        let regex = Regex::new(&source).map_err(|err| {
            let detail = err.to_string();
            let last = detail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid regex");
            AssertionError::new(
                span.clone(),
                format!(
                    "invalid regular expression: {}",
                    last.trim_start_matches("error: ")
                ),
            )
            .with_help(
                "the syntax is that of the Rust regex crate; quote a regex that contains spaces",
            )
        })?;
        Ok(Pattern { source, regex })
    }

    fn quoted(&mut self, quote: char) -> Result<(String, Range<usize>), AssertionError> {
        let start = self.pos;
        self.pos += quote.len_utf8();
        let mut out = String::new();
        let mut chars = self.src[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '\\'
                && let Some((_, next)) = chars.next()
            {
                if next != quote {
                    out.push('\\');
                }
                out.push(next);
                continue;
            }
            if c == quote {
                self.pos += i + c.len_utf8();
                return Ok((out, start..self.pos));
            }
            out.push(c);
        }
        Err(AssertionError::new(
            start..self.src.len(),
            format!("unterminated {quote}…{quote}"),
        )
        .with_help(format!("close it with {quote}")))
    }

    fn format(&mut self) -> Result<Format, AssertionError> {
        let start = self.after_ws();
        let word = self.take_while(|c| c.is_ascii_alphanumeric() || c == '-');
        let lower = word.to_ascii_lowercase();
        if let Some((_, format)) = FORMAT_NAMES.iter().find(|(name, _)| *name == lower) {
            return Ok(*format);
        }
        let keywords: Vec<&str> = FORMAT_NAMES.iter().map(|(_, f)| f.keyword()).collect();
        let shown = if word.is_empty() {
            self.rest_preview()
        } else {
            word.to_owned()
        };
        let err = AssertionError::new(
            start..start + shown.len().max(1),
            format!("unknown format `{shown}`"),
        );
        Err(match did_you_mean(&shown, keywords.iter().copied()) {
            Some(k) => err.with_help(format!("did you mean `{k}`?")),
            None => err.with_help(format!("`is` takes one of: {}", keywords.join(", "))),
        })
    }

    fn list(&mut self) -> Result<ListRef, AssertionError> {
        let start = self.after_ws();
        if self.peek_char() == Some('[') {
            self.pos += 1;
            let mut values = Vec::new();
            loop {
                let item_start = self.after_ws();
                let item = match self.peek_char() {
                    Some(quote @ ('\'' | '"')) => self.quoted(quote)?.0,
                    _ => self
                        .take_while(|c| !c.is_whitespace() && c != ',' && c != ']')
                        .to_owned(),
                };
                if item.is_empty() {
                    return Err(AssertionError::new(
                        item_start..item_start + 1,
                        "expected a list item",
                    ));
                }
                values.push(item);
                self.skip_ws();
                match self.peek_char() {
                    Some(',') => self.pos += 1,
                    Some(']') => {
                        self.pos += 1;
                        return Ok(ListRef::Literal(values));
                    }
                    _ => {
                        return Err(AssertionError::new(
                            self.pos..self.pos + 1,
                            "expected `,` or `]` in the list",
                        )
                        .with_help("write literal lists as [a, b, c]"));
                    }
                }
            }
        }
        let name = self.take_while(is_segment_char);
        if name.is_empty() {
            return Err(AssertionError::new(
                start..start + 1,
                "`in` needs a list name or [a, b, c]",
            ));
        }
        match self.lists.get(name) {
            Ok(Some(list)) => Ok(ListRef::Named(list)),
            Ok(None) => {
                let known = self.lists.known_names();
                let err = AssertionError::new(start..self.pos, format!("unknown list `{name}`"));
                Err(match did_you_mean(name, known.iter().map(String::as_str)) {
                    Some(k) => err.with_help(format!("did you mean `{k}`?")),
                    None => err.with_help(format!(
                        "keep the list in sandbox/{name}.txt beside the manifest or above it, or name its file under `lists:` in the manifest"
                    )),
                })
            }
            Err(load) => Err(AssertionError::new(
                start..self.pos,
                format!("{load}: {}", load.source),
            )),
        }
    }

    fn path(&mut self, expected: &str) -> Result<FieldPath, AssertionError> {
        let start = self.after_ws();
        let text = self.take_while(|c| is_segment_char(c) || c == '.');
        if text.is_empty() {
            let shown = self.rest_preview();
            return Err(AssertionError::new(
                start..start + shown.len().max(1),
                format!("expected {expected}, found `{shown}`"),
            ));
        }
        FieldPath::parse(text).map_err(|err| {
            AssertionError::new(start + err.offset..start + err.offset + 1, err.reason)
        })
    }

    fn expect_word(&mut self, word: &str, context: &str) -> Result<(), AssertionError> {
        self.skip_ws();
        let (span, found) = self.peek_word();
        if found == word {
            self.pos = span.end;
            return Ok(());
        }
        let shown = if found.is_empty() {
            self.rest_preview()
        } else {
            found.to_owned()
        };
        Err(AssertionError::new(
            span.start..span.start + shown.len().max(1),
            format!("expected `{word}` in {context}, found `{shown}`"),
        ))
    }

    fn expect_char(&mut self, c: char, what: &str) -> Result<(), AssertionError> {
        self.skip_ws();
        if self.peek_char() == Some(c) {
            self.pos += c.len_utf8();
            return Ok(());
        }
        Err(AssertionError::new(
            self.pos..self.pos + 1,
            format!("expected {what}"),
        ))
    }

    fn at_predicate(&self) -> bool {
        let rest = &self.src[self.pos..];
        if rest.starts_with(['<', '>', '=', '!']) {
            return true;
        }
        let word: &str = rest
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .next()
            .unwrap_or("");
        PREDICATE_WORDS.contains(&word)
    }

    fn peek_word(&self) -> (Range<usize>, &'s str) {
        let rest = &self.src[self.pos..];
        let len = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        (self.pos..self.pos + len, &rest[..len])
    }

    fn take_word(&mut self) -> &'s str {
        let (span, word) = self.peek_word();
        self.pos = span.end;
        word
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'s str {
        let rest = &self.src[self.pos..];
        let len = rest.find(|c: char| !pred(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn after_ws(&mut self) -> usize {
        self.skip_ws();
        self.pos
    }

    fn at_end(&self) -> bool {
        self.src[self.pos..].trim().is_empty()
    }

    fn rest_preview(&self) -> String {
        let rest = self.src[self.pos..].trim();
        let token: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(24)
            .collect();
        if token.is_empty() {
            "end of assertion".to_owned()
        } else {
            token
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Assertion, AssertionError> {
        Assertion::parse(text, &ListCatalog::built_in())
    }

    fn ctx() -> EvalContext {
        EvalContext {
            now: parse_rfc3339("2026-06-01T12:00:00Z").expect("valid timestamp"),
        }
    }

    /// Evaluates every clause of a per-event assertion; the first failure message, if any.
    fn judge(assertion: &str, payload: Value) -> Option<String> {
        let parsed = parse(assertion).unwrap_or_else(|e| panic!("{assertion:?} parses: {e}"));
        match parsed.kind() {
            AssertionKind::Each(clauses) => {
                clauses.iter().find_map(|c| c.evaluate(&payload, &ctx()))
            }
            AssertionKind::StableFor(_) => panic!("{assertion:?} is not a per-event assertion"),
        }
    }

    #[test]
    fn seed_assertions_parse() {
        for text in [
            "ats_candidate_id matches ^[A-Za-z0-9_-]{6,64}$",
            "occurred_at is RFC3339 and <= now()",
            "idempotency_key is stable for same (ats_candidate_id, verification.session_id)",
            "assessment.score between 0 and 100",
            "assessment.language in supported_languages",
        ] {
            parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
    }

    #[test]
    fn evaluation_table() {
        // (assertion, payload, passes?, why)
        let rows: &[(&str, Value, bool, &str)] = &[
            (
                "id matches ^[A-Z]{3}$",
                json!({"id": "ABC"}),
                true,
                "regex matches",
            ),
            (
                "id matches ^[A-Z]{3}$",
                json!({"id": "ABCD"}),
                false,
                "anchored regex rejects a longer id",
            ),
            (
                "id matches ^[A-Z]{3}$",
                json!({"id": 123}),
                false,
                "numbers are not strings",
            ),
            (
                "id matches '^a b$'",
                json!({"id": "a b"}),
                true,
                "quoted regex may hold spaces",
            ),
            (
                "id matches ^x$",
                json!({}),
                true,
                "absent fields are left to required_fields",
            ),
            (
                "t is RFC3339",
                json!({"t": "2026-01-01T00:00:00Z"}),
                true,
                "Zulu timestamp",
            ),
            (
                "t is RFC3339",
                json!({"t": "2026-01-01T00:00:00+02:00"}),
                true,
                "offset timestamp",
            ),
            (
                "t is RFC3339",
                json!({"t": "2026-01-01"}),
                false,
                "a date alone is not a date-time",
            ),
            (
                "t is RFC3339 and <= now()",
                json!({"t": "2026-06-01T12:00:00Z"}),
                true,
                "now itself is not in the future",
            ),
            (
                "t is RFC3339 and <= now()",
                json!({"t": "2026-06-01T12:00:01Z"}),
                false,
                "one second ahead is the future",
            ),
            (
                "t >= now() - 30d",
                json!({"t": "2026-05-02T12:00:00Z"}),
                true,
                "exactly 30 days ago",
            ),
            (
                "t >= now() - 30d",
                json!({"t": "2026-05-02T11:59:59Z"}),
                false,
                "older than 30 days",
            ),
            (
                "t < now() + 1h",
                json!({"t": "2026-06-01T12:59:00Z"}),
                true,
                "positive offsets",
            ),
            (
                "t <= now()",
                json!({"t": "soon"}),
                false,
                "time comparisons need a timestamp",
            ),
            (
                "s between 0 and 100",
                json!({"s": 0}),
                true,
                "lower bound is inclusive",
            ),
            (
                "s between 0 and 100",
                json!({"s": 100.0}),
                true,
                "upper bound is inclusive",
            ),
            (
                "s between 0 and 100",
                json!({"s": 100.5}),
                false,
                "above the range",
            ),
            (
                "s between 0 and 100",
                json!({"s": "50"}),
                false,
                "a numeric string is not a number",
            ),
            (
                "s > 3 and < 5",
                json!({"s": 4}),
                true,
                "second clause reuses the path",
            ),
            (
                "s > 3 and < 5",
                json!({"s": 5}),
                false,
                "second clause fails",
            ),
            ("s == 2", json!({"s": 2}), true, "equality on numbers"),
            (
                "lang in supported_languages",
                json!({"lang": "rust"}),
                true,
                "named list member",
            ),
            (
                "lang in supported_languages",
                json!({"lang": "Rust"}),
                false,
                "named lists match exactly",
            ),
            (
                "r in [passed, 'needs review']",
                json!({"r": "needs review"}),
                true,
                "quoted literal item",
            ),
            (
                "r in [passed, failed]",
                json!({"r": "pending"}),
                false,
                "not a literal member",
            ),
            (
                "u is URL",
                json!({"u": "https://vendor.test/packs/1"}),
                true,
                "https URL",
            ),
            (
                "u is URL",
                json!({"u": "file:///etc/passwd"}),
                false,
                "only http(s) URLs",
            ),
            (
                "u is UUID",
                json!({"u": "67e55044-10b1-426f-9247-bb680e5fe0c8"}),
                true,
                "hyphenated UUID",
            ),
            (
                "n is integer",
                json!({"n": 3.5}),
                false,
                "fractions are not integers",
            ),
            (
                "x is non-empty",
                json!({"x": "  "}),
                false,
                "blank strings are empty",
            ),
            (
                "a is string and b is number",
                json!({"a": "x", "b": 1}),
                true,
                "clauses may name new paths",
            ),
            (
                "a is string and b is number",
                json!({"a": "x", "b": "1"}),
                false,
                "second path fails",
            ),
        ];
        for (assertion, payload, passes, why) in rows {
            let failure = judge(assertion, payload.clone());
            assert_eq!(
                failure.is_none(),
                *passes,
                "{assertion:?} on {payload}: {why} ({failure:?})"
            );
        }
    }

    #[test]
    fn parse_error_table() {
        // (assertion, text the error points at, why)
        let rows = [
            ("", "", "nothing to parse"),
            ("occurred_at", "", "no predicate"),
            ("occurred_at is RFC-3339", "RFC-3339", "unknown format"),
            ("x matchs ^a$", "matchs", "misspelt keyword"),
            ("x matches ^(a$", "^(a$", "regex does not compile"),
            ("x between 10 and 1", "1", "empty range"),
            ("x between a and 1", "a", "bounds must be numbers"),
            ("x in no_such_list", "no_such_list", "unknown list"),
            ("x in [a, b", "", "unterminated literal list"),
            ("t <= now() - 30y", "30y", "unknown duration unit"),
            ("t <= now", "now", "now needs parentheses"),
            ("x is RFC3339 or <= now()", "or", "only `and` joins clauses"),
            ("k is stable for same ()", ")", "empty tuple"),
            ("k is stable for same (k)", "k", "key inside its own tuple"),
            (
                "k is stable for same (a) and x is string",
                "and x is string",
                "stability rules stand alone",
            ),
            ("a..b is string", ".", "malformed path"),
            ("x matches 'abc", "'abc", "unterminated quote"),
        ];
        for (text, points_at, why) in rows {
            let err = parse(text).expect_err(why);
            let shown = text.get(err.span.clone()).unwrap_or("");
            assert_eq!(shown, points_at, "{text:?} ({why}): {}", err.message);
        }
    }

    #[test]
    fn misspelt_keywords_and_formats_get_suggestions() {
        let err = parse("x matchs ^a$").expect_err("misspelt");
        assert_eq!(err.help.as_deref(), Some("did you mean `matches`?"));
        let err = parse("t is RFC339").expect_err("misspelt");
        assert_eq!(err.help.as_deref(), Some("did you mean `RFC3339`?"));
        let err = parse("l in suported_languages").expect_err("misspelt");
        assert_eq!(
            err.help.as_deref(),
            Some("did you mean `supported_languages`?")
        );
    }

    #[test]
    fn failure_messages_name_the_value_and_the_rule() {
        let message = judge(
            "assessment.language in supported_languages",
            json!({"assessment": {"language": "pyhton"}}),
        )
        .expect("not a supported language");
        assert_eq!(
            message,
            "`assessment.language` is \"pyhton\", which is not in supported_languages (did you mean \"python\"?)"
        );
        let message = judge(
            "occurred_at <= now() - 1d",
            json!({"occurred_at": "2026-06-01T00:00:00Z"}),
        )
        .expect("within the last day");
        assert_eq!(
            message,
            "`occurred_at` is \"2026-06-01T00:00:00Z\", which is not <= now() - 1d"
        );
    }

    #[test]
    fn stability_tracks_first_key_per_tuple() {
        let parsed = parse("k is stable for same (a, b.c)").expect("parses");
        let AssertionKind::StableFor(rule) = parsed.kind() else {
            panic!("a stability rule")
        };
        let mut tracker = StableTracker::default();
        let first = rule
            .fingerprint(&json!({"k": "1", "a": "x", "b": {"c": 1}}))
            .expect("complete");
        let same = rule
            .fingerprint(&json!({"k": "1", "a": "x", "b": {"c": 1}}))
            .expect("complete");
        let changed = rule
            .fingerprint(&json!({"k": "2", "a": "x", "b": {"c": 1}}))
            .expect("complete");
        let other = rule
            .fingerprint(&json!({"k": "2", "a": "y", "b": {"c": 1}}))
            .expect("complete");
        assert_eq!(tracker.observe(first, 1), None);
        assert_eq!(tracker.observe(same, 2), None, "same key, same tuple");
        assert_eq!(
            tracker.observe(changed, 3),
            Some(&1),
            "key changed for the tuple first seen at 1"
        );
        assert_eq!(
            tracker.observe(other, 4),
            None,
            "a different tuple may have its own key"
        );
        assert_eq!(
            rule.fingerprint(&json!({"k": "1", "a": "x"})),
            None,
            "incomplete tuples are skipped"
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(text in "\\PC{0,60}") {
            let _ = parse(&text);
        }

        #[test]
        fn error_spans_lie_inside_the_text(text in "[a-z_. <>=!()\\[\\],0-9'-]{0,40}") {
            if let Err(err) = parse(&text) {
                prop_assert!(err.span.start <= text.len(), "{:?} for {:?}", err.span, text);
            }
        }

        #[test]
        fn between_agrees_with_arithmetic(low in -1000i32..1000, width in 0i32..1000, x in -3000i32..3000) {
            let high = low + width;
            let text = format!("v between {low} and {high}");
            let passes = judge(&text, json!({"v": x})).is_none();
            prop_assert_eq!(passes, low <= x && x <= high);
        }

        #[test]
        fn durations_round_trip_through_display(amount in 1i64..10_000, unit in proptest::sample::select(vec!["s", "m", "h", "d", "w"])) {
            let text = format!("t <= now() - {amount}{unit}");
            let parsed = parse(&text).expect("well-formed duration");
            let AssertionKind::Each(clauses) = parsed.kind() else { panic!("per-event") };
            let Predicate::Compare(_, operand) = &clauses[0].predicate else { panic!("comparison") };
            let reparsed = parse(&format!("t <= {operand}")).expect("display re-parses");
            let AssertionKind::Each(again) = reparsed.kind() else { panic!("per-event") };
            let Predicate::Compare(_, operand_again) = &again[0].predicate else { panic!("comparison") };
            prop_assert_eq!(operand, operand_again);
        }
    }
}
