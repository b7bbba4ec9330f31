//! Classification: the inferred shape against the contract and the baseline, as
//! findings with stable ids.
//!
//! Per event type, in this order:
//!
//! 1. the event type itself: gone (a contract's or the baseline's type that no
//!    longer arrives) or added (known to neither);
//! 2. the contract: required paths missing or null, values outside an enum;
//! 3. the baseline: fields gone and fields new are paired into renames first (same
//!    types and format, and the same values or a near-identical name), so a rename is
//!    one finding and never "missing" plus "added"; what stays unpaired is a missing
//!    required field, a removed optional field, or an added field. Fields present on
//!    both sides are compared by type, nullability, format and — for categorical
//!    fields only — value set; volatile fields never by value.
//!
//! Children of a field that is itself gone or new are folded into it: one finding
//! for a new object, not one per leaf.

use std::collections::BTreeSet;

use serde::Serialize;

use super::baseline::Baseline;
use super::format::Format;
use super::severity::{FindingId, Level, Severities};
use super::shape::{
    EventFold, EventShape, FieldFold, FieldShape, JsonType, Seen, ShapeFold, leaf_of, parent_of,
};
use crate::contract::ContractSet;

/// What a finding was judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Against {
    /// The manifest's contract of the event type.
    Contract,
    /// The committed baseline.
    Baseline,
}

/// Where a change first appeared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FirstSeen {
    /// The input's name.
    pub source: String,
    /// 1-based line in it.
    pub line: u64,
    /// The capture's arrival time (RFC 3339), for captures from `record`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// One classified change.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// The stable id (`drift.type-changed`, ...).
    pub id: FindingId,
    /// The severity after the severity file.
    pub severity: Level,
    /// The event type.
    pub event: String,
    /// The dotted path, for field findings (the old path of a rename).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The new path of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_to: Option<String>,
    /// The new value, for enum and value findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What it was judged against.
    pub against: Against,
    /// What changed, in a sentence.
    pub message: String,
    /// How many payloads (or parent objects) show it; 0 for something gone.
    pub occurrences: u64,
    /// Where it first appeared, when it is something seen rather than something gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<FirstSeen>,
}

/// Turns a [`Seen`] into a [`FirstSeen`] with the input's name.
pub struct Placer<'a> {
    /// The inputs' names, by index.
    pub sources: &'a [String],
}

impl Placer<'_> {
    fn place(&self, seen: Seen) -> FirstSeen {
        FirstSeen {
            source: self
                .sources
                .get(seen.source as usize)
                .cloned()
                .unwrap_or_default(),
            line: seen.line,
            at: seen.at_ms.and_then(|ms| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            }),
        }
    }
}

/// Everything classification reads.
pub struct Inputs<'a> {
    /// What the captures looked like.
    pub fold: &'a ShapeFold,
    /// The committed baseline.
    pub baseline: Option<&'a Baseline>,
    /// The manifest's contracts.
    pub contracts: Option<&'a ContractSet>,
    /// Severities after the severity file.
    pub severities: &'a Severities,
    /// Input names for first-seen places.
    pub placer: Placer<'a>,
}

struct Out<'a> {
    inputs: &'a Inputs<'a>,
    findings: Vec<Finding>,
}

/// Fields of a finding besides its id, event and message.
#[derive(Default)]
struct Extra {
    path: Option<String>,
    renamed_to: Option<String>,
    value: Option<String>,
    occurrences: u64,
    first: Option<Seen>,
}

impl Out<'_> {
    fn push(
        &mut self,
        id: FindingId,
        against: Against,
        event: &str,
        message: String,
        extra: Extra,
    ) {
        let severity = self.inputs.severities.level(id);
        if severity == Level::Ignore {
            return;
        }
        self.findings.push(Finding {
            id,
            severity,
            event: event.to_owned(),
            path: extra.path,
            renamed_to: extra.renamed_to,
            value: extra.value,
            against,
            message,
            occurrences: extra.occurrences,
            first_seen: extra.first.map(|s| self.inputs.placer.place(s)),
        });
    }

    fn has(&self, id: FindingId, event: &str, path: &str) -> bool {
        self.findings
            .iter()
            .any(|f| f.id == id && f.event == event && f.path.as_deref() == Some(path))
    }
}

/// Classifies every change, sorted by event type, then severity, id and path.
pub fn classify(inputs: &Inputs<'_>) -> Vec<Finding> {
    let mut out = Out {
        inputs,
        findings: Vec::new(),
    };
    let mut events: BTreeSet<&str> = inputs.fold.events.keys().map(String::as_str).collect();
    if let Some(baseline) = inputs.baseline {
        events.extend(baseline.events.keys().map(String::as_str));
    }
    if let Some(contracts) = inputs.contracts {
        events.extend(contracts.iter().map(|c| c.name().as_str()));
    }
    for event in events {
        let current = inputs.fold.events.get(event);
        let base = inputs.baseline.and_then(|b| b.events.get(event));
        let contract = inputs.contracts.and_then(|c| c.get(event));
        let Some(current) = current else {
            let against = if contract.is_some() {
                Against::Contract
            } else {
                Against::Baseline
            };
            let total = inputs.fold.counts.inferred;
            out.push(
                FindingId::EventTypeGone,
                against,
                event,
                format!("no `{event}` payload among the {total} inferred"),
                Extra::default(),
            );
            continue;
        };
        if base.is_none() && contract.is_none() {
            out.push(
                FindingId::EventTypeAdded,
                if inputs.baseline.is_none() && inputs.contracts.is_some() {
                    Against::Contract
                } else {
                    Against::Baseline
                },
                event,
                format!(
                    "new event type `{event}` ({} payloads); neither the contract nor the baseline knows it",
                    current.count
                ),
                Extra {
                    occurrences: current.count,
                    first: Some(current.first),
                    ..Extra::default()
                },
            );
            continue;
        }
        let renames = match base {
            Some(base) => baseline_fields(&mut out, event, current, base, contract),
            None => contract_renames(&mut out, event, current, contract),
        };
        if let Some(contract) = contract {
            for path in contract.required() {
                let path = path.as_str();
                if renames.iter().any(|r| r == path) {
                    continue;
                }
                let Some(field) = current.fields.get(path) else {
                    continue;
                };
                let missing = &field.missing_contract;
                if missing.count > 0 {
                    out.push(
                        FindingId::RequiredFieldMissing,
                        Against::Contract,
                        event,
                        format!(
                            "required `{path}` is missing or null in {} of {} payloads",
                            missing.count, current.count
                        ),
                        Extra {
                            path: Some(path.to_owned()),
                            occurrences: missing.count,
                            first: missing.first,
                            ..Extra::default()
                        },
                    );
                }
            }
            for (path, allowed) in contract.enums() {
                let Some(field) = current.fields.get(path.as_str()) else {
                    continue;
                };
                for (value, stat) in &field.outside {
                    out.push(
                        FindingId::EnumValueAdded,
                        Against::Contract,
                        event,
                        format!(
                            "`{path}` is {value:?} in {} payloads, outside the contract's enum ({})",
                            stat.count,
                            allowed.join(", ")
                        ),
                        Extra {
                            path: Some(path.as_str().to_owned()),
                            value: Some(value.clone()),
                            occurrences: stat.count,
                            first: Some(stat.first),
                            ..Extra::default()
                        },
                    );
                }
            }
        }
        if let Some(base) = base {
            baseline_present_fields(&mut out, event, current, base, contract);
        }
    }
    out.findings.sort_by(|a, b| {
        (&a.event, a.severity, a.id, &a.path, &a.value)
            .cmp(&(&b.event, b.severity, b.id, &b.path, &b.value))
    });
    out.findings
}

/// A field on one side of a possible rename.
struct Candidate<'a> {
    path: &'a str,
    types: Vec<JsonType>,
    format: Option<Format>,
    values: Option<Vec<String>>,
    /// For a new field: how often it was present.
    present: u64,
    /// For a field gone from only some payloads: how often it was missing; the new
    /// field must be present exactly that often (it took the old one's place).
    complement: Option<u64>,
}

impl<'a> Candidate<'a> {
    fn of_shape(path: &'a str, shape: &FieldShape) -> Self {
        Candidate {
            path,
            types: shape.types.clone(),
            format: shape.format,
            values: shape.values.clone(),
            present: 0,
            complement: None,
        }
    }

    fn of_fold(path: &'a str, field: &FieldFold) -> Self {
        Candidate {
            path,
            types: field.non_null_types(),
            format: field.format(),
            values: field.values.as_ref().map(|v| {
                let mut out: Vec<String> = v.iter().map(|(s, _)| s.clone()).collect();
                out.sort_unstable();
                out
            }),
            present: field.present,
            complement: None,
        }
    }
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// How alike a gone field and a new one are; `None` when they cannot be the same field.
fn rename_score(gone: &Candidate<'_>, new: &Candidate<'_>) -> Option<f64> {
    if !gone.types.is_empty() && !new.types.is_empty() && gone.types != new.types {
        return None;
    }
    if gone
        .complement
        .is_some_and(|missing| missing != new.present)
    {
        return None;
    }
    if let (Some(a), Some(b)) = (gone.format, new.format)
        && a != b
    {
        return None;
    }
    let (a, b) = (normalise(leaf_of(gone.path)), normalise(leaf_of(new.path)));
    let name = if a == b {
        1.0
    } else {
        strsim::jaro_winkler(&a, &b)
    };
    let values = match (&gone.values, &new.values) {
        (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => {
            let both = x.iter().filter(|v| y.contains(v)).count() as f64;
            let either = (x.len() + y.len()) as f64 - both;
            Some(both / either)
        }
        _ => None,
    };
    let same_parent = parent_of(gone.path) == parent_of(new.path);
    let typed = !gone.types.is_empty() && !new.types.is_empty();
    let accept = values.is_some_and(|v| v >= 0.5)
        || name >= 0.9
        || (name >= 0.8 && same_parent && typed && values.is_none());
    accept.then(|| values.unwrap_or(0.0) * 2.0 + name)
}

/// Pairs gone and new fields one to one, best score first.
fn pair(gone: &[Candidate<'_>], new: &[Candidate<'_>]) -> Vec<(usize, usize)> {
    let mut scored = Vec::new();
    for (g, gc) in gone.iter().enumerate() {
        for (n, nc) in new.iter().enumerate() {
            if let Some(score) = rename_score(gc, nc) {
                scored.push((score, g, n));
            }
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (_, g, n) in scored {
        if pairs.iter().all(|(pg, pn)| *pg != g && *pn != n) {
            pairs.push((g, n));
        }
    }
    pairs
}

fn rename_message(from: &str, to: &str) -> String {
    if leaf_of(from) == leaf_of(to) {
        format!("moved `{from}` → `{to}`")
    } else {
        format!("renamed `{from}` → `{to}`")
    }
}

/// Whether an ancestor of `path` is in `set`.
fn under_any(path: &str, set: &BTreeSet<&str>) -> bool {
    let mut p = parent_of(path);
    while !p.is_empty() {
        if set.contains(p) {
            return true;
        }
        p = parent_of(p);
    }
    false
}

/// With a baseline: gone, new and renamed fields. Returns the renamed (old) paths.
fn baseline_fields(
    out: &mut Out<'_>,
    event: &str,
    current: &EventFold,
    base: &EventShape,
    contract: Option<&crate::contract::Contract>,
) -> Vec<String> {
    let gone_all: BTreeSet<&str> = base
        .fields
        .keys()
        .map(String::as_str)
        .filter(|p| !current.has(p))
        .collect();
    let mut gone: Vec<&str> = gone_all
        .iter()
        .copied()
        .filter(|p| !under_any(p, &gone_all) && current.parent_objects(p) > 0)
        .collect();
    let whole = gone.len();
    // Required fields missing from some payloads only: a rename rolling out mid-capture.
    gone.extend(base.fields.iter().filter_map(|(p, shape)| {
        let field = current.fields.get(p)?;
        (shape.required && field.present > 0 && field.missing_baseline.count > 0)
            .then_some(p.as_str())
    }));
    let new_all: BTreeSet<&str> = current
        .fields
        .iter()
        .filter(|(p, f)| !p.is_empty() && f.present > 0 && !base.fields.contains_key(p.as_str()))
        .map(|(p, _)| p.as_str())
        .collect();
    let new: Vec<&str> = new_all
        .iter()
        .copied()
        .filter(|p| !under_any(p, &new_all))
        .collect();
    let gone_c: Vec<Candidate<'_>> = gone
        .iter()
        .enumerate()
        .map(|(i, p)| Candidate {
            complement: (i >= whole).then(|| current.fields[*p].missing_baseline.count),
            ..Candidate::of_shape(p, &base.fields[*p])
        })
        .collect();
    let new_c: Vec<Candidate<'_>> = new
        .iter()
        .map(|p| Candidate::of_fold(p, &current.fields[*p]))
        .collect();
    let pairs = pair(&gone_c, &new_c);
    let mut renamed = Vec::new();
    for &(g, n) in &pairs {
        let (from, to) = (gone[g], new[n]);
        let field = &current.fields[to];
        let message = if g >= whole {
            format!(
                "{} in {} of {} `{}` objects (the rest still carry `{from}`)",
                rename_message(from, to),
                field.present,
                current.parent_objects(to),
                display_parent(to)
            )
        } else {
            rename_message(from, to)
        };
        out.push(
            FindingId::FieldRenamed,
            Against::Baseline,
            event,
            message,
            Extra {
                path: Some(from.to_owned()),
                renamed_to: Some(to.to_owned()),
                occurrences: field.present,
                first: field.first,
                ..Extra::default()
            },
        );
        renamed.push(from.to_owned());
    }
    for (g, path) in gone.iter().enumerate().take(whole) {
        if pairs.iter().any(|(pg, _)| *pg == g) {
            continue;
        }
        let parents = current.parent_objects(path);
        if base.fields[*path].required {
            let contract_requires =
                contract.is_some_and(|c| c.required().iter().any(|r| r.as_str() == *path));
            if contract_requires {
                continue; // the contract's finding says it, with the contract's authority
            }
            let first = current
                .fields
                .get(*path)
                .and_then(|f| f.missing_baseline.first);
            out.push(
                FindingId::RequiredFieldMissing,
                Against::Baseline,
                event,
                format!(
                    "`{path}` was always present; now absent from all {parents} `{}` objects",
                    display_parent(path)
                ),
                Extra {
                    path: Some((*path).to_owned()),
                    occurrences: parents,
                    first,
                    ..Extra::default()
                },
            );
        } else {
            out.push(
                FindingId::OptionalFieldRemoved,
                Against::Baseline,
                event,
                format!(
                    "optional `{path}` no longer arrives (0 of {parents} `{}` objects)",
                    display_parent(path)
                ),
                Extra {
                    path: Some((*path).to_owned()),
                    ..Extra::default()
                },
            );
        }
    }
    for (n, path) in new.iter().enumerate() {
        if pairs.iter().any(|(_, pn)| *pn == n) {
            continue;
        }
        let field = &current.fields[*path];
        let parents = current.parent_objects(path);
        let kind = field
            .non_null_types()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        let kind = if kind.is_empty() {
            "null".to_owned()
        } else {
            kind
        };
        let within = if path.ends_with("[]") {
            format!("{} elements", field.present)
        } else {
            format!(
                "{} of {parents} `{}` objects",
                field.present,
                display_parent(path)
            )
        };
        out.push(
            FindingId::OptionalFieldAdded,
            Against::Baseline,
            event,
            format!("new field `{path}` ({kind}) in {within}"),
            Extra {
                path: Some((*path).to_owned()),
                occurrences: field.present,
                first: field.first,
                ..Extra::default()
            },
        );
    }
    renamed
}

fn display_parent(path: &str) -> &str {
    match parent_of(path) {
        "" => "payload",
        parent => parent,
    }
}

/// Without a baseline: a contract-required field absent from every payload and a
/// field the contract does not name, alike in name, are a rename.
fn contract_renames(
    out: &mut Out<'_>,
    event: &str,
    current: &EventFold,
    contract: Option<&crate::contract::Contract>,
) -> Vec<String> {
    let Some(contract) = contract else {
        return Vec::new();
    };
    let named: BTreeSet<&str> = contract
        .required()
        .iter()
        .map(|p| p.as_str())
        .chain(contract.enums().iter().map(|(p, _)| p.as_str()))
        .collect();
    let gone: Vec<Candidate<'_>> = contract
        .required()
        .iter()
        .filter(|p| !current.has(p.as_str()) && current.parent_objects(p.as_str()) > 0)
        .map(|p| Candidate {
            path: p.as_str(),
            types: Vec::new(),
            format: None,
            values: contract
                .enums()
                .iter()
                .find(|(e, _)| e == p)
                .map(|(_, v)| v.clone()),
            present: 0,
            complement: None,
        })
        .collect();
    if gone.is_empty() {
        return Vec::new();
    }
    let new: Vec<Candidate<'_>> = current
        .fields
        .iter()
        .filter(|(p, f)| {
            !p.is_empty()
                && f.present > 0
                && !named.contains(p.as_str())
                && !named.iter().any(|n| n.starts_with(&format!("{p}.")))
        })
        .map(|(p, f)| Candidate::of_fold(p, f))
        .collect();
    let mut renamed = Vec::new();
    for (g, n) in pair(&gone, &new) {
        let (from, to) = (gone[g].path, new[n].path);
        let field = &current.fields[to];
        out.push(
            FindingId::FieldRenamed,
            Against::Contract,
            event,
            format!(
                "{} (the contract requires `{from}`)",
                rename_message(from, to)
            ),
            Extra {
                path: Some(from.to_owned()),
                renamed_to: Some(to.to_owned()),
                occurrences: field.present,
                first: field.first,
                ..Extra::default()
            },
        );
        renamed.push(from.to_owned());
    }
    renamed
}

/// Fields on both sides: required-ness, types, formats, values.
fn baseline_present_fields(
    out: &mut Out<'_>,
    event: &str,
    current: &EventFold,
    base: &EventShape,
    contract: Option<&crate::contract::Contract>,
) {
    for (path, was) in &base.fields {
        let Some(field) = current.fields.get(path) else {
            continue;
        };
        if field.present == 0 {
            continue;
        }
        let path_s = path.as_str();
        let missing = &field.missing_baseline;
        if was.required
            && missing.count > 0
            && !out.has(FindingId::RequiredFieldMissing, event, path_s)
            && !out.has(FindingId::FieldRenamed, event, path_s)
        {
            out.push(
                FindingId::RequiredFieldMissing,
                Against::Baseline,
                event,
                format!(
                    "`{path}` was always present; now missing or null in {} of {} `{}` objects",
                    missing.count,
                    current.parent_objects(path),
                    display_parent(path)
                ),
                Extra {
                    path: Some(path.clone()),
                    occurrences: missing.count,
                    first: missing.first,
                    ..Extra::default()
                },
            );
        }
        let was_types = render_types(&was.types);
        for (kind, stat) in &field.types {
            let kind = *kind;
            let known = was.types.contains(&kind)
                || (kind == JsonType::Integer && was.types.contains(&JsonType::Number));
            if known {
                continue;
            }
            if kind == JsonType::Null {
                if was.nullable || was.required {
                    continue; // required: the missing-or-null finding above says it
                }
                out.push(
                    FindingId::TypeChanged,
                    Against::Baseline,
                    event,
                    format!(
                        "`{path}` was {was_types}, now null in {} payloads",
                        stat.count
                    ),
                    Extra {
                        path: Some(path.clone()),
                        value: Some("null".into()),
                        occurrences: stat.count,
                        first: Some(stat.first),
                        ..Extra::default()
                    },
                );
                continue;
            }
            let new_format = field
                .formats
                .iter()
                .find(|((t, _), _)| *t == kind)
                .map(|((_, f), _)| *f);
            let time_to_time =
                was.format.is_some_and(Format::is_time) && new_format.is_some_and(Format::is_time);
            let example = stat.example.as_deref().unwrap_or("…");
            if time_to_time {
                let (from, to) = (
                    was.format.map_or("", Format::as_str),
                    new_format.map_or("", Format::as_str),
                );
                out.push(
                    FindingId::FormatChanged,
                    Against::Baseline,
                    event,
                    format!(
                        "`{path}` was {from} ({was_types}), now {to} ({}) in {} payloads, e.g. {example}",
                        kind.as_str(),
                        stat.count
                    ),
                    Extra {
                        path: Some(path.clone()),
                        value: Some(to.to_owned()),
                        occurrences: stat.count,
                        first: Some(stat.first),
                        ..Extra::default()
                    },
                );
            } else {
                out.push(
                    FindingId::TypeChanged,
                    Against::Baseline,
                    event,
                    format!(
                        "`{path}` was {was_types}, now {} in {} payloads, e.g. {example}",
                        kind.as_str(),
                        stat.count
                    ),
                    Extra {
                        path: Some(path.clone()),
                        value: Some(kind.as_str().to_owned()),
                        occurrences: stat.count,
                        first: Some(stat.first),
                        ..Extra::default()
                    },
                );
            }
        }
        if let Some(was_format) = was.format {
            for ((kind, format), stat) in &field.formats {
                if *format == was_format || !was.types.contains(kind) {
                    continue;
                }
                out.push(
                    FindingId::FormatChanged,
                    Against::Baseline,
                    event,
                    format!(
                        "`{path}` was {}, now {} in {} payloads, e.g. {}",
                        was_format.as_str(),
                        format.as_str(),
                        stat.count,
                        stat.example.as_deref().unwrap_or("…")
                    ),
                    Extra {
                        path: Some(path.clone()),
                        value: Some(format.as_str().to_owned()),
                        occurrences: stat.count,
                        first: Some(stat.first),
                        ..Extra::default()
                    },
                );
            }
        }
        let is_enum = contract.is_some_and(|c| c.enums().iter().any(|(p, _)| p.as_str() == path_s));
        let Some(was_values) = &was.values else {
            continue;
        };
        if is_enum || field.is_volatile() {
            continue;
        }
        match &field.values {
            Some(values) => {
                for (value, stat) in values {
                    if was_values.contains(value) {
                        continue;
                    }
                    out.push(
                        FindingId::ValueAdded,
                        Against::Baseline,
                        event,
                        format!(
                            "`{path}` is {value:?} in {} payloads; the baseline saw {}",
                            stat.count,
                            was_values.join(", ")
                        ),
                        Extra {
                            path: Some(path.clone()),
                            value: Some(value.clone()),
                            occurrences: stat.count,
                            first: Some(stat.first),
                            ..Extra::default()
                        },
                    );
                }
            }
            None => out.push(
                FindingId::ValueAdded,
                Against::Baseline,
                event,
                format!(
                    "`{path}` now takes more than {} distinct values; the baseline saw {}",
                    super::shape::MAX_VALUES,
                    was_values.join(", ")
                ),
                Extra {
                    path: Some(path.clone()),
                    occurrences: field.strings,
                    first: field.first,
                    ..Extra::default()
                },
            ),
        }
    }
}

fn render_types(types: &[JsonType]) -> String {
    if types.is_empty() {
        return "null".into();
    }
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(path: &'a str, types: &[JsonType], values: Option<&[&str]>) -> Candidate<'a> {
        Candidate {
            path,
            types: types.to_vec(),
            format: None,
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
            present: 4,
            complement: None,
        }
    }

    #[test]
    fn renames_pair_by_values_or_name_and_never_across_types() {
        use JsonType::*;
        // (gone, new, paired?, why)
        let rows: Vec<(Candidate<'_>, Candidate<'_>, bool, &str)> = vec![
            (
                cand("package", &[String], Some(&["a", "b"])),
                cand("package_name", &[String], Some(&["a", "b"])),
                true,
                "same values",
            ),
            (
                cand("candidate_id", &[String], None),
                cand("candidateId", &[String], None),
                true,
                "same name, other case",
            ),
            (
                cand("a.stage", &[String], None),
                cand("b.stage", &[String], None),
                true,
                "moved",
            ),
            (
                cand("count", &[Integer], None),
                cand("count_str", &[String], None),
                false,
                "types differ",
            ),
            (
                cand("status", &[String], Some(&["x", "y"])),
                cand("zebra", &[String], Some(&["p", "q"])),
                false,
                "nothing alike",
            ),
        ];
        for (gone, new, paired, why) in rows {
            assert_eq!(
                rename_score(&gone, &new).is_some(),
                paired,
                "{} → {}: {why}",
                gone.path,
                new.path
            );
        }
    }

    #[test]
    fn pairing_is_one_to_one_best_first() {
        use JsonType::*;
        let gone = [cand("result", &[String], Some(&["clear", "consider"]))];
        let new = [
            cand("results", &[String], None),
            cand("outcome", &[String], Some(&["clear", "consider"])),
        ];
        assert_eq!(
            pair(&gone, &new),
            [(0, 1)],
            "same values beat a similar name"
        );
        // Gone from 3 payloads only: the new field must fill exactly those.
        let partial = Candidate {
            complement: Some(3),
            ..cand("result", &[String], Some(&["clear", "consider"]))
        };
        assert!(
            pair(&[partial], &new).is_empty(),
            "4 new against 3 missing is no rename"
        );
    }
}
