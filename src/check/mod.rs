//! `stagegate check`: judge streams of payloads against a manifest's contracts.
//!
//! Input is read in batches (see [`input`]); each batch is judged on every core with
//! rayon, then merged in input order, where the cross-event stability rules are
//! tracked. Violations go to a [`ViolationSink`] as they are found, so neither the
//! input nor the report has to fit in memory; only the stability rules keep state, a
//! few bytes per distinct tuple.

pub mod input;
pub mod report;

use std::io::{self, Read};
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::contract::assertion::{EvalContext, StableTracker};
use crate::contract::{Rule, Violation};
use crate::manifest::Manifest;
use crate::manifest::model::Severity;
use input::{Batch, Batcher, Item};

/// Where payloads come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Source {
    /// Opens the input, before anything is written: a missing file, a folder or a
    /// closed standard input fails here, so a machine report is never begun for it.
    pub fn open(&self) -> Result<Box<dyn Read>, CheckError> {
        let name = self.name();
        let error = |source| CheckError::Read {
            name: name.clone(),
            source,
        };
        match self {
            Source::Stdin => {
                if stdin_is_dev_null() {
                    return Err(error(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "standard input is closed (or /dev/null): pipe the payloads in, or name the files",
                    )));
                }
                Ok(Box::new(io::stdin().lock()))
            }
            Source::File(path) => {
                // Each payload is bounded by the batcher; the file must end.
                let file = crate::limits::open_regular(path, crate::limits::PAYLOAD_BYTES)
                    .map_err(error)?;
                Ok(Box::new(file))
            }
        }
    }

    /// The name used in reports.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_owned(),
            Source::File(path) => path.display().to_string(),
        }
    }
}

/// One violation, placed in the input.
#[derive(Debug, Clone, Serialize)]
pub struct PayloadViolation {
    /// The input's name.
    pub file: String,
    /// 1-based line where the payload starts.
    pub line: usize,
    /// The payload's contract, when it names one.
    pub contract: Option<String>,
    /// Which rule broke.
    pub rule: Rule,
    /// JSON Pointer of the field.
    pub path: String,
    /// The contract's severity (`block-release` for payloads no contract can judge).
    pub severity: Severity,
    /// What was expected and what was seen.
    pub message: String,
    /// The assertion's source text, for `assertion` violations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion: Option<String>,
}

pub use crate::verdict::Verdict;

/// Receives violations in input order.
pub trait ViolationSink {
    /// Called once per violation.
    fn violation(&mut self, violation: PayloadViolation) -> io::Result<()>;
}

/// Counts of a finished check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Payloads read.
    pub payloads: u64,
    /// Violations found.
    pub violations: u64,
    /// Violations of `block-release` severity.
    pub blocking: u64,
}

impl Summary {
    /// The verdict the counts imply.
    pub fn verdict(&self) -> Verdict {
        if self.blocking > 0 {
            Verdict::Blocked
        } else if self.violations > 0 {
            Verdict::Warn
        } else {
            Verdict::Pass
        }
    }
}

/// Why a check could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// An input could not be opened or read.
    #[error("cannot read {name}")]
    Read {
        /// The input's name.
        name: String,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// The report could not be written.
    #[error("cannot write the report")]
    Write(#[source] io::Error),
}

/// What judging one payload produced.
struct Outcome {
    contract: Option<usize>,
    violations: Vec<Violation>,
    fingerprints: Vec<(usize, crate::contract::assertion::StableFingerprint)>,
}

/// Where a payload stood: (source index, line).
type Origin = (usize, usize);

/// One tracker per stability rule: (contract index, rule index within the contract).
type RuleTracker = (usize, usize, StableTracker<Origin>);

/// Judges payloads from `sources` against `manifest`, streaming violations to `sink`.
pub struct Checker<'m> {
    manifest: &'m Manifest,
    trackers: Vec<RuleTracker>,
    summary: Summary,
    source_names: Vec<String>,
}

impl<'m> Checker<'m> {
    /// A checker for one manifest.
    pub fn new(manifest: &'m Manifest) -> Self {
        let mut trackers = Vec::new();
        for (ci, contract) in manifest.contracts.iter().enumerate() {
            for (ri, _) in contract.stability_rules().enumerate() {
                trackers.push((ci, ri, StableTracker::default()));
            }
        }
        Checker {
            manifest,
            trackers,
            summary: Summary::default(),
            source_names: Vec::new(),
        }
    }

    /// Judges one source to its end.
    pub fn check_source(
        &mut self,
        source: &Source,
        sink: &mut dyn ViolationSink,
    ) -> Result<(), CheckError> {
        let reader = source.open()?;
        self.check_reader(&source.name(), reader, sink)
    }

    /// Judges every payload a reader yields.
    pub fn check_reader(
        &mut self,
        name: &str,
        reader: impl Read,
        sink: &mut dyn ViolationSink,
    ) -> Result<(), CheckError> {
        let source_index = self.source_names.len();
        self.source_names.push(name.to_owned());
        let mut batcher = Batcher::new(reader);
        loop {
            let batch = batcher.next_batch().map_err(|source| CheckError::Read {
                name: name.to_owned(),
                source,
            })?;
            let Some(batch) = batch else { break };
            // One clock reading per batch: `now()` moves with a long stream, cheaply.
            let ctx = EvalContext::at_now();
            let outcomes: Vec<Outcome> = batch
                .items
                .par_iter()
                .map(|item| self.judge(&batch, item, &ctx))
                .collect();
            for (item, outcome) in batch.items.iter().zip(outcomes) {
                self.merge(source_index, item, outcome, sink)?;
            }
        }
        Ok(())
    }

    fn judge(&self, batch: &Batch, item: &Item, ctx: &EvalContext) -> Outcome {
        let mut outcome = Outcome {
            contract: None,
            violations: Vec::new(),
            fingerprints: Vec::new(),
        };
        if let Some(error) = &item.error {
            outcome.violations.push(malformed(error.clone()));
            return outcome;
        }
        let payload: Value = match input::parse_payload(batch.bytes(item), item.line) {
            Ok(value) => value,
            Err(message) => {
                outcome.violations.push(malformed(message));
                return outcome;
            }
        };
        let contracts = &self.manifest.contracts;
        let index = match contracts.resolve(&payload) {
            Ok(index) => index,
            Err(violation) => {
                outcome.violations.push(violation);
                return outcome;
            }
        };
        outcome.contract = Some(index);
        let contract = contracts.at(index);
        contract.check(&payload, ctx, &mut outcome.violations);
        for (ri, (_, rule)) in contract.stability_rules().enumerate() {
            if let Some(fingerprint) = rule.fingerprint(&payload) {
                outcome.fingerprints.push((ri, fingerprint));
            }
        }
        outcome
    }

    fn merge(
        &mut self,
        source: usize,
        item: &Item,
        outcome: Outcome,
        sink: &mut dyn ViolationSink,
    ) -> Result<(), CheckError> {
        self.summary.payloads += 1;
        let contract = outcome.contract.map(|i| self.manifest.contracts.at(i));
        let mut violations = outcome.violations;
        if let Some(ci) = outcome.contract {
            for (ri, fingerprint) in outcome.fingerprints {
                let Some((_, _, tracker)) = self
                    .trackers
                    .iter_mut()
                    .find(|(c, r, _)| *c == ci && *r == ri)
                else {
                    continue;
                };
                if let Some(&(first_source, first_line)) =
                    tracker.observe(fingerprint, (source, item.line))
                {
                    let (assertion, rule) = self
                        .manifest
                        .contracts
                        .at(ci)
                        .stability_rules()
                        .nth(ri)
                        .expect("rule index from this contract");
                    let tuple: Vec<&str> = rule.tuple.iter().map(|p| p.as_str()).collect();
                    let first = if first_source == source {
                        format!("line {first_line}")
                    } else {
                        format!("{}:{first_line}", self.source_names[first_source])
                    };
                    violations.push(Violation {
                        rule: Rule::Assertion,
                        path: rule.key.json_pointer(),
                        message: format!(
                            "`{}` differs from the one first seen at {first} for the same ({})",
                            rule.key,
                            tuple.join(", ")
                        ),
                        assertion: Some(assertion.source().to_owned()),
                    });
                }
            }
        }
        let severity = contract.map_or(Severity::BlockRelease, |c| c.severity());
        for violation in violations {
            self.summary.violations += 1;
            if severity == Severity::BlockRelease {
                self.summary.blocking += 1;
            }
            sink.violation(PayloadViolation {
                file: self.source_names[source].clone(),
                line: item.line,
                contract: contract.map(|c| c.name().0.clone()),
                rule: violation.rule,
                path: violation.path,
                severity,
                message: violation.message,
                assertion: violation.assertion,
            })
            .map_err(CheckError::Write)?;
        }
        Ok(())
    }

    /// The counts so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

/// Whether standard input is /dev/null, which is also what a closed standard input
/// becomes (the Rust runtime reopens a closed fd 0 on /dev/null at start-up).
fn stdin_is_dev_null() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let stdin = io::stdin();
    let Ok(fd) = stdin.as_fd().try_clone_to_owned() else {
        return true;
    };
    match (
        std::fs::File::from(fd).metadata(),
        std::fs::metadata("/dev/null"),
    ) {
        (Ok(stdin), Ok(null)) => stdin.dev() == null.dev() && stdin.ino() == null.ino(),
        _ => false,
    }
}

fn malformed(message: String) -> Violation {
    Violation {
        rule: Rule::Malformed,
        path: String::new(),
        message,
        assertion: None,
    }
}
