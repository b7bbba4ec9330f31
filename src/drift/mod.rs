//! `stagegate drift`: infer the shape of real vendor payloads and classify every
//! change against the contracts and a committed baseline.
//!
//! The flow is a fold, like `check`: the input is read in batches by
//! [`crate::check::input::Batcher`] (JSON Lines, arrays or one document; captures from
//! `stagegate record` or plain payloads), each batch is folded on every core into a
//! [`shape::ShapeFold`], and the batch folds merge into one. Nothing holds a payload
//! after it is observed, so memory stays flat however long the capture. Then
//! [`compare::classify`] names each change with a stable id ([`severity`]) and the
//! [`report`] renders it.
//!
//! Captures whose signature did not verify are skipped (forged deliveries must not
//! teach the baseline), as are payloads outside `--since`/`--until`.

pub mod baseline;
pub mod compare;
pub mod format;
pub mod node;
pub mod report;
pub mod severity;
pub mod shape;

use std::io::{self, Read};
use std::path::PathBuf;

use base64::Engine as _;
use hashbrown::HashMap;
use rayon::prelude::*;

use crate::check::Source;
use crate::check::input::{Batch, Batcher, Item};
use crate::contract::path::FieldPath;
use crate::manifest::Manifest;
use crate::record::CAPTURE_MARKER;
use baseline::Baseline;
use compare::{Inputs, Placer};
use node::Node;
use report::DriftReport;
use severity::Severities;
use shape::{EventExpect, Expectations, Seen, ShapeFold};

/// A validated `drift` run.
#[derive(Debug)]
pub struct DriftConfig {
    /// The manifest whose contracts the shapes are compared with.
    pub manifest: Option<Manifest>,
    /// The baseline file, and its content when it exists.
    pub baseline_path: Option<PathBuf>,
    /// The baseline read from `baseline_path`.
    pub baseline: Option<Baseline>,
    /// Rewrite the baseline from this input.
    pub update_baseline: bool,
    /// The inputs.
    pub sources: Vec<Source>,
    /// Where the event type is read, first match wins.
    pub type_fields: Vec<FieldPath>,
    /// Only captures that arrived at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only captures that arrived before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Severities after the severity file.
    pub severities: Severities,
}

/// Why drift could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// An input could not be opened or read.
    #[error("cannot read {name}")]
    Read {
        /// The input's name.
        name: String,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// The baseline could not be written.
    #[error(transparent)]
    Baseline(#[from] baseline::BaselineError),
}

/// What one item of the input contributes, before folding.
struct Context<'a> {
    config: &'a DriftConfig,
    expectations: &'a Expectations,
    source: u32,
}

/// Runs the inference over every input, then classifies; writes the baseline when asked.
pub fn run(config: &DriftConfig) -> Result<DriftReport, DriftError> {
    let expectations = expectations(config);
    let mut fold = ShapeFold::default();
    let mut names = Vec::new();
    for (index, source) in config.sources.iter().enumerate() {
        let name = source.name();
        names.push(name.clone());
        let read_error = |source| DriftError::Read {
            name: name.clone(),
            source,
        };
        let ctx = Context {
            config,
            expectations: &expectations,
            source: u32::try_from(index).unwrap_or(u32::MAX),
        };
        match source {
            Source::Stdin => fold_reader(io::stdin(), &ctx, &mut fold).map_err(read_error)?,
            Source::File(path) => {
                // Each payload is bounded by the batcher; the file must end.
                let file = crate::limits::open_regular(path, crate::limits::PAYLOAD_BYTES)
                    .map_err(read_error)?;
                fold_reader(file, &ctx, &mut fold).map_err(read_error)?;
            }
        }
    }
    finish(config, fold, names)
}

/// [`run`] over one reader in place of `config.sources` (named `name` in the report):
/// the capture reader as the fuzz target drives it, without files.
pub fn run_reader(
    config: &DriftConfig,
    name: &str,
    reader: impl Read + Send,
) -> Result<DriftReport, DriftError> {
    let expectations = expectations(config);
    let mut fold = ShapeFold::default();
    let ctx = Context {
        config,
        expectations: &expectations,
        source: 0,
    };
    fold_reader(reader, &ctx, &mut fold).map_err(|source| DriftError::Read {
        name: name.to_owned(),
        source,
    })?;
    finish(config, fold, vec![name.to_owned()])
}

/// Classifies what the fold saw, writes the baseline when asked, and builds the report.
fn finish(
    config: &DriftConfig,
    fold: ShapeFold,
    names: Vec<String>,
) -> Result<DriftReport, DriftError> {
    let findings = compare::classify(&Inputs {
        fold: &fold,
        baseline: config.baseline.as_ref(),
        contracts: config.manifest.as_ref().map(|m| &m.contracts),
        severities: &config.severities,
        placer: Placer { sources: &names },
    });
    let type_fields: Vec<String> = config
        .type_fields
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    if config.update_baseline
        && let Some(path) = &config.baseline_path
    {
        Baseline::from_fold(&fold, &type_fields).write(path)?;
    }
    let rfc3339 = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let mut report = DriftReport {
        stagegate_drift_report: report::REPORT_VERSION,
        verdict: crate::check::Verdict::Pass,
        inputs: names,
        manifest: config
            .manifest
            .as_ref()
            .map(|m| m.path.display().to_string()),
        baseline: config
            .baseline_path
            .as_ref()
            .map(|p| p.display().to_string()),
        baseline_updated: config.update_baseline,
        type_fields,
        since: config.since_ms.and_then(rfc3339),
        until: config.until_ms.and_then(rfc3339),
        counts: fold.counts.clone(),
        breaking: 0,
        additive: 0,
        findings,
        shape: fold
            .events
            .iter()
            .map(|(name, event)| (name.clone(), event.shape(true)))
            .collect(),
    };
    report.settle();
    Ok(report)
}

/// What the fold must watch: contract requirements and enums, baseline requirements.
fn expectations(config: &DriftConfig) -> Expectations {
    let mut events: HashMap<String, EventExpect> = HashMap::new();
    if let Some(manifest) = &config.manifest {
        for contract in manifest.contracts.iter() {
            let expect = events
                .entry(contract.name().as_str().to_owned())
                .or_default();
            expect.contract_required = contract.required().to_vec();
            for (path, values) in contract.enums() {
                expect
                    .enums
                    .insert(path.as_str().to_owned(), values.clone());
            }
        }
    }
    if let Some(baseline) = &config.baseline {
        for (event, shape) in &baseline.events {
            let expect = events.entry(event.clone()).or_default();
            for (path, field) in &shape.fields {
                if field.required {
                    expect
                        .baseline_required
                        .entry(shape::parent_of(path).to_owned())
                        .or_default()
                        .push((shape::leaf_of(path).to_owned(), path.clone()));
                }
            }
        }
    }
    // The walk merges each list with an object's sorted entries.
    for expect in events.values_mut() {
        for required in expect.baseline_required.values_mut() {
            required.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }
    Expectations { events }
}

fn fold_reader(
    reader: impl Read + Send,
    ctx: &Context<'_>,
    fold: &mut ShapeFold,
) -> io::Result<()> {
    let mut batcher = Batcher::new(reader);
    let mut next = batcher.next_batch()?;
    while let Some(batch) = next {
        // The next batch is read while this one is folded: reading is serial, and
        // would otherwise leave the other core idle.
        let (read, batch_fold) = rayon::join(|| batcher.next_batch(), || fold_batch(&batch, ctx));
        fold.merge(batch_fold);
        next = read?;
    }
    Ok(())
}

/// Folds one batch on every core; the partial folds merge into one.
fn fold_batch(batch: &Batch, ctx: &Context<'_>) -> ShapeFold {
    batch
        .items
        .par_iter()
        .fold(ShapeFold::default, |mut acc, item| {
            observe_item(&mut acc, batch, item, ctx);
            acc
        })
        .reduce(ShapeFold::default, |mut a, b| {
            a.merge(b);
            a
        })
}

/// Reads one item: a capture line (its body, time and signature) or a plain payload.
fn observe_item(acc: &mut ShapeFold, batch: &Batch, item: &Item, ctx: &Context<'_>) {
    acc.counts.read += 1;
    if item.error.is_some() {
        acc.counts.malformed += 1;
        return;
    }
    let Ok(value) = Node::parse(batch.bytes(item)) else {
        acc.counts.malformed += 1;
        return;
    };
    if !matches!(&value, Node::Object(_)) || value.get(CAPTURE_MARKER).is_none() {
        observe_payload(acc, item, ctx, &value, None);
        return;
    }
    let capture = value;
    if capture.get("signature").and_then(Node::as_str) == Some("invalid") {
        acc.counts.forged += 1;
        return;
    }
    let at_ms = capture
        .get("received_at")
        .and_then(Node::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    // The body's tree borrows from its text, which lives here.
    let decoded;
    let text: Option<&[u8]> = match (capture.get("body"), capture.get("body_base64")) {
        (Some(Node::String(text)), _) => Some(text.as_bytes()),
        (_, Some(Node::String(encoded))) => {
            decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .ok();
            decoded.as_deref()
        }
        _ => None,
    };
    let Some(body) = text.and_then(|t| Node::parse(t).ok()) else {
        acc.counts.malformed += 1;
        return;
    };
    observe_payload(acc, item, ctx, &body, at_ms);
}

/// Folds one payload in, unless it is outside the window or has no event type.
fn observe_payload(
    acc: &mut ShapeFold,
    item: &Item,
    ctx: &Context<'_>,
    payload: &Node<'_>,
    at_ms: Option<i64>,
) {
    let config = ctx.config;
    if config.since_ms.is_some() || config.until_ms.is_some() {
        let inside = at_ms.is_some_and(|at| {
            config.since_ms.is_none_or(|s| at >= s) && config.until_ms.is_none_or(|u| at < u)
        });
        if !inside {
            acc.counts.outside_window += 1;
            return;
        }
    }
    let event = config
        .type_fields
        .iter()
        .find_map(|path| payload.lookup(path).and_then(Node::as_str));
    let Some(event) = event else {
        acc.counts.untyped += 1;
        return;
    };
    let seen = Seen {
        source: ctx.source,
        line: item.line as u64,
        at_ms,
    };
    acc.observe_node(event, payload, seen, ctx.expectations.events.get(event));
}
