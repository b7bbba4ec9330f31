//! Release-gate manifests and hiring policies: loading, placed diagnostics, validation.
//!
//! Loading runs in passes — bytes to UTF-8 text, text to placed YAML, YAML to the typed
//! model (unknown keys collected, not dropped), semantic checks, then resolution into a
//! [`Manifest`] whose contracts are compiled. Each pass reports every problem it finds
//! with file, line, column, key path and a hint, and nothing in it panics on bad input.

pub mod diagnostic;
mod load;
pub mod model;
pub mod policy;
pub mod span;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use diagnostic::{Level, ManifestDiagnostic, ManifestError, SourceText};
pub use load::{DocumentKind, Loaded};

use crate::contract::lists::ListCatalog;
use crate::contract::path::FieldPath;
use crate::contract::{ContractName, ContractSet};
use diagnostic::{Code, Reporter, Target, invalid};
use model::RawManifest;
use policy::HiringPolicy;
use span::KeyPath;

/// A sandbox candidate's ATS id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct CandidateId(pub String);

impl fmt::Display for CandidateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `expected_sequence` entry: a contract and, optionally, the enum value it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedEvent {
    /// The contract of the event.
    pub contract: ContractName,
    /// The enum field the entry's `:value` sets, and that value.
    pub outcome: Option<(FieldPath, String)>,
}

/// A sandbox candidate with its sequence resolved.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The candidate's ATS id.
    pub id: CandidateId,
    /// Its risk profile.
    pub profile: String,
    /// The events expected to reach the ATS, if the manifest lists them.
    pub expected_sequence: Option<Vec<ExpectedEvent>>,
    /// The requisition, if the manifest pins it.
    pub requisition: Option<model::RequisitionDef>,
}

/// Where the fields every check relies on stand in an event (the manifest's
/// `envelope:`, defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The event's unique id.
    pub event_id: FieldPath,
    /// The key that says what "the same event" means.
    pub idempotency_key: FieldPath,
    /// When the event happened (RFC 3339); orders a candidate's events.
    pub occurred_at: FieldPath,
    /// The ATS candidate the event is about.
    pub candidate_id: FieldPath,
}

impl Envelope {
    /// Each envelope key, its path, and the checks that rely on it.
    pub fn fields(&self) -> [(&'static str, &FieldPath, &'static [&'static str]); 4] {
        [
            (
                "event_id",
                &self.event_id,
                &[
                    "delivery.no_loss",
                    "sequence.expected",
                    "observability.log_fields",
                    "kill_switch.queue_replay",
                ],
            ),
            (
                "idempotency_key",
                &self.idempotency_key,
                &["idempotency.exactly_once", "idempotency.key_stable"],
            ),
            (
                "occurred_at",
                &self.occurred_at,
                &["ordering.no_regression", "kill_switch.queue_replay"],
            ),
            (
                "candidate_id",
                &self.candidate_id,
                &[
                    "canary.scope",
                    "ordering.no_regression",
                    "sequence.expected",
                ],
            ),
        ]
    }

    /// The value at the event-id path, when it is a string.
    pub fn event_id_of<'v>(&self, payload: &'v serde_json::Value) -> Option<&'v str> {
        self.event_id.lookup(payload)?.as_str()
    }

    /// The value at the idempotency-key path, when it is a string.
    pub fn idempotency_key_of<'v>(&self, payload: &'v serde_json::Value) -> Option<&'v str> {
        self.idempotency_key.lookup(payload)?.as_str()
    }

    /// The value at the occurred-at path, when it is a string.
    pub fn occurred_at_of<'v>(&self, payload: &'v serde_json::Value) -> Option<&'v str> {
        self.occurred_at.lookup(payload)?.as_str()
    }

    /// The value at the candidate-id path, when it is a string.
    pub fn candidate_id_of<'v>(&self, payload: &'v serde_json::Value) -> Option<&'v str> {
        self.candidate_id.lookup(payload)?.as_str()
    }
}

impl Default for Envelope {
    fn default() -> Self {
        Envelope {
            event_id: FieldPath::known("event_id"),
            idempotency_key: FieldPath::known("idempotency_key"),
            occurred_at: FieldPath::known("occurred_at"),
            candidate_id: FieldPath::known("ats_candidate_id"),
        }
    }
}

/// A validated release-gate manifest with compiled contracts.
#[derive(Debug)]
pub struct Manifest {
    /// Where it was read from.
    pub path: PathBuf,
    /// The model as written (gate settings, observability, …).
    pub raw: RawManifest,
    /// The compiled contracts.
    pub contracts: ContractSet,
    /// The sandbox candidates, sequences resolved.
    pub candidates: Vec<Candidate>,
    /// Where the fields the checks rely on stand in an event.
    pub envelope: Envelope,
}

/// A document of either format, as `stagegate validate` loads it.
#[derive(Debug)]
pub enum Document {
    /// A release-gate manifest.
    ReleaseGate(Box<Manifest>),
    /// A hiring policy.
    HiringPolicy(Box<HiringPolicy>),
}

impl Manifest {
    /// Loads and validates a release-gate manifest from a file.
    pub fn load(path: &Path) -> Result<Loaded<Manifest>, ManifestError> {
        let source = load::read_text(path)?;
        Manifest::from_source(path, source)
    }

    /// Loads a release-gate manifest from text; relative list paths start at `path`'s folder.
    pub fn from_text(path: &Path, text: &str) -> Result<Loaded<Manifest>, ManifestError> {
        let source = load::text_from_bytes(path, text.as_bytes().to_vec())?;
        Manifest::from_source(path, source)
    }

    fn from_source(path: &Path, source: SourceText) -> Result<Loaded<Manifest>, ManifestError> {
        let parsed = load::parse_yaml(path, source)?;
        expect_kind(&parsed, DocumentKind::ReleaseGate)?;
        let mut reporter = Reporter::new(&parsed.source, &parsed.spans);
        let raw: Option<RawManifest> = load::deserialize(&parsed, &mut reporter);
        let resolved = raw.as_ref().and_then(|raw| {
            let lists = ListCatalog::for_manifest(&parsed.path, &raw.lists);
            validate::release_gate(raw, &lists, &mut reporter)
        });
        finish(
            &parsed.source,
            reporter.diagnostics,
            raw.zip(resolved).map(|(raw, resolved)| Manifest {
                path: parsed.path.clone(),
                raw,
                contracts: resolved.contracts,
                candidates: resolved.candidates,
                envelope: resolved.envelope,
            }),
        )
    }

    /// The candidate with this id.
    pub fn candidate(&self, id: &str) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.id.0 == id)
    }

    /// The contracts' rules on the envelope's candidate id.
    pub fn id_rules(&self) -> crate::contract::ids::IdRules {
        crate::contract::ids::IdRules::new(&self.contracts, &self.envelope.candidate_id)
    }

    /// The channels the kill switch must notify.
    pub fn notify_channels(&self) -> &[String] {
        &self.raw.release_gate.kill_switch.action.notify_channels
    }

    /// Whether a tripped kill switch also pauses candidate-facing calls (identity gates).
    pub fn pauses_candidate_gates(&self) -> bool {
        self.raw
            .release_gate
            .kill_switch
            .action
            .pause_candidate_gates
    }
}

/// Loads and validates a hiring policy from a file.
pub fn load_policy(path: &Path) -> Result<Loaded<HiringPolicy>, ManifestError> {
    let parsed = load::parse_yaml(path, load::read_text(path)?)?;
    expect_kind(&parsed, DocumentKind::HiringPolicy)?;
    policy_from(&parsed)
}

fn policy_from(parsed: &load::Parsed) -> Result<Loaded<HiringPolicy>, ManifestError> {
    let mut reporter = Reporter::new(&parsed.source, &parsed.spans);
    let policy: Option<HiringPolicy> = load::deserialize(parsed, &mut reporter);
    if let Some(policy) = &policy {
        validate::hiring_policy(policy, &mut reporter);
    }
    finish(&parsed.source, reporter.diagnostics, policy)
}

/// Loads a file of either format, telling them apart by their top-level keys.
pub fn load_document(path: &Path) -> Result<Loaded<Document>, ManifestError> {
    document_from_source(path, load::read_text(path)?)
}

/// Loads a document of either format from bytes already read; `path` names it in
/// diagnostics and relative list paths start at its folder.
pub fn load_document_bytes(path: &Path, bytes: Vec<u8>) -> Result<Loaded<Document>, ManifestError> {
    document_from_source(path, load::text_from_bytes(path, bytes)?)
}

fn document_from_source(
    path: &Path,
    source: SourceText,
) -> Result<Loaded<Document>, ManifestError> {
    let parsed = load::parse_yaml(path, source.clone())?;
    match load::detect_kind(&parsed.spans) {
        Some(DocumentKind::HiringPolicy) => {
            let loaded = policy_from(&parsed)?;
            Ok(Loaded {
                value: Document::HiringPolicy(Box::new(loaded.value)),
                warnings: loaded.warnings,
            })
        }
        _ => {
            let loaded = Manifest::from_source(path, source)?;
            Ok(Loaded {
                value: Document::ReleaseGate(Box::new(loaded.value)),
                warnings: loaded.warnings,
            })
        }
    }
}

fn expect_kind(parsed: &load::Parsed, expected: DocumentKind) -> Result<(), ManifestError> {
    match load::detect_kind(&parsed.spans) {
        Some(found) if found != expected => {
            let mut reporter = Reporter::new(&parsed.source, &parsed.spans);
            reporter
                .error(
                    Code::Shape,
                    &KeyPath::root(),
                    Target::Value,
                    format!(
                        "this is a {}, but a {} is needed here",
                        found.describe(),
                        expected.describe()
                    ),
                    "this document",
                )
                .help(match expected {
                    DocumentKind::ReleaseGate => {
                        "pass the release-gate manifest (manifests/release-gate.yaml is one)"
                    }
                    DocumentKind::HiringPolicy => {
                        "pass the hiring policy (manifests/hiring-policy.yaml is one)"
                    }
                });
            Err(invalid(&parsed.source, reporter.diagnostics))
        }
        _ => Ok(()),
    }
}

fn finish<T>(
    source: &SourceText,
    diagnostics: Vec<ManifestDiagnostic>,
    value: Option<T>,
) -> Result<Loaded<T>, ManifestError> {
    let has_errors = diagnostics.iter().any(|d| d.level == Level::Error);
    match value {
        Some(value) if !has_errors => Ok(Loaded {
            value,
            warnings: diagnostics,
        }),
        _ => Err(invalid(source, diagnostics)),
    }
}

/// The JSON Schema of the release-gate manifest format, derived from the types.
pub fn release_gate_format_schema() -> serde_json::Value {
    schemars::schema_for!(RawManifest).to_value()
}

/// The JSON Schema of the hiring-policy format, derived from the types.
pub fn hiring_policy_format_schema() -> serde_json::Value {
    schemars::schema_for!(HiringPolicy).to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED: &str = include_str!("../../manifests/release-gate.yaml");

    #[test]
    fn the_seed_resolves_sequences_to_enum_fields() {
        let manifest = Manifest::from_text(Path::new("manifests/release-gate.yaml"), SEED)
            .expect("the seed loads")
            .value;
        let retake = manifest
            .candidate("CAND_canary_003")
            .expect("seeded candidate");
        let sequence = retake
            .expected_sequence
            .as_ref()
            .expect("the seed lists a sequence");
        let outcomes: Vec<String> = sequence
            .iter()
            .map(|e| {
                e.outcome
                    .as_ref()
                    .map_or_else(String::new, |(path, value)| format!("{path}={value}"))
            })
            .collect();
        assert_eq!(
            outcomes,
            ["verification.result=failed", "verification.result=passed"]
        );
    }

    #[test]
    fn check_settings_load_and_no_op_entries_warn() {
        let text = format!(
            "{SEED}checks:\n  delivery.ack_sla: {{severity: warn, reason: \"slow runners\"}}\n  \
             privacy.no_pii_in_logs: {{enabled: false, reason: \"names on purpose\"}}\n  \
             canary.scope: {{}}\n"
        );
        let loaded = Manifest::from_text(Path::new("manifests/release-gate.yaml"), &text)
            .expect("valid settings load");
        let checks = &loaded.value.raw.checks;
        assert_eq!(
            checks["delivery.ack_sla"].severity,
            Some(model::Severity::Warn)
        );
        assert!(checks["privacy.no_pii_in_logs"].disabled());
        let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.message.clone()).collect();
        assert_eq!(warnings, ["`checks.canary.scope` changes nothing"]);
        let seed = Manifest::from_text(Path::new("manifests/release-gate.yaml"), SEED)
            .expect("the seed loads");
        assert!(
            seed.value.raw.checks.is_empty(),
            "the seed has no `checks:`"
        );
    }

    #[test]
    fn check_settings_need_real_ids_and_reasons() {
        // (entry, message expected, why)
        let rows = [
            (
                "contract.enum: {severity: warn}",
                "no check is called `contract.enum`",
                "a misspelt id",
            ),
            (
                "contract.enums: {enabled: false}",
                "check `contract.enums` is turned off without a `reason`",
                "off without a reason",
            ),
            (
                "contract.enums: {enabled: false, reason: \" \"}",
                "the reason for adjusting `contract.enums` is empty",
                "a blank reason",
            ),
        ];
        for (entry, message, why) in rows {
            let text = format!("{SEED}checks:\n  {entry}\n");
            let err = Manifest::from_text(Path::new("manifests/release-gate.yaml"), &text)
                .expect_err(why);
            let messages: Vec<&str> = err
                .diagnostics()
                .iter()
                .map(|d| d.message.as_str())
                .collect();
            assert_eq!(messages, [message], "{why}");
        }
    }

    fn check_no_panic_and_spans_inside(text: &str) -> Result<(), TestCaseError> {
        match Manifest::from_text(Path::new("mutated.yaml"), text) {
            Ok(_) => {}
            Err(err) => {
                for d in err.diagnostics() {
                    prop_assert!(
                        d.at.offset <= text.len(),
                        "{} beyond {}",
                        d.at.offset,
                        text.len()
                    );
                    prop_assert!(d.at.line >= 1 && d.at.column >= 1);
                    // Rendering must not panic either.
                    let _ = diagnostic::render_plain(d);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn mutated_manifests_never_panic(cut in 0usize..3000, len in 0usize..40, insert in "\\PC{0,12}") {
            let start = SEED.char_indices().map(|(i, _)| i).find(|i| *i >= cut.min(SEED.len())).unwrap_or(SEED.len());
            let end = SEED.char_indices().map(|(i, _)| i).find(|i| *i >= start + len).unwrap_or(SEED.len());
            let text = format!("{}{}{}", &SEED[..start], insert, &SEED[end..]);
            check_no_panic_and_spans_inside(&text)?;
        }

        #[test]
        fn dropped_lines_never_panic(drop in proptest::collection::vec(any::<bool>(), 80)) {
            let text: String = SEED.lines().zip(drop.iter().chain(std::iter::repeat(&false)))
                .filter(|(_, d)| !**d)
                .map(|(l, _)| format!("{l}\n"))
                .collect();
            check_no_panic_and_spans_inside(&text)?;
        }
    }
}
