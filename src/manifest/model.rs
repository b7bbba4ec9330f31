//! The serde model of the release-gate manifest (format 1.x, as in the v1.3 seed).
//!
//! These types are the raw input: what the YAML says, checked only for shape. Unknown
//! keys are collected by the loader rather than rejected by serde, so every one of them
//! can be reported with its place; the JSON Schema of the format is derived from these
//! types and still forbids them, so editors flag them too.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A manifest format version such as `"1.3"` (a bare YAML number is accepted too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(with = "String")]
pub struct FormatVersion(pub String);

impl FormatVersion {
    /// The major version, if the text starts with one.
    pub fn major(&self) -> Option<u64> {
        self.0.split('.').next()?.trim().parse().ok()
    }
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FormatVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FormatVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a version string such as \"1.3\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FormatVersion, E> {
                Ok(FormatVersion(v.to_owned()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<FormatVersion, E> {
                Ok(FormatVersion(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FormatVersion, E> {
                Ok(FormatVersion(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FormatVersion, E> {
                Ok(FormatVersion(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A release-gate manifest as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "stagegate release-gate manifest")]
pub struct RawManifest {
    /// Format version; stagegate reads 1.x.
    pub version: FormatVersion,
    /// The change being gated, its canary scope and its kill switch.
    pub release_gate: ReleaseGate,
    /// The event contracts the integration must honour.
    pub contracts: Vec<ContractDef>,
    /// The sandbox candidates a run drives through the integration.
    pub sandbox_dataset: SandboxDataset,
    /// What the integration must log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
    /// Per check id, how the judge treats that check: another severity, or turned
    /// off with a reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "check_settings_schema")]
    pub checks: BTreeMap<String, CheckSetting>,
    /// Files of named lists for `PATH in NAME`, relative to the manifest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lists: BTreeMap<String, String>,
    /// Where the fields the checks rely on stand in an event (defaults: `event_id`,
    /// `idempotency_key`, `occurred_at`, `ats_candidate_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<EnvelopeDef>,
    /// The hiring policy `stagegate run` drives when `--policy` is not given,
    /// relative to the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// The envelope as written: dotted paths of the fields every check relies on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EnvelopeDef {
    /// The event's unique id [default: `event_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// What "the same event" means to the ATS [default: `idempotency_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When the event happened, RFC 3339 [default: `occurred_at`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// The ATS candidate the event is about [default: `ats_candidate_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_id: Option<String>,
}

/// The gated change and its rollout guardrails.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReleaseGate {
    /// Identifier of the change, printed in every report.
    pub change_id: String,
    /// How the change is rolled out.
    pub mode: RolloutMode,
    /// Which candidates the new contract path may touch.
    pub canary_scope: CanaryScope,
    /// When the integration must stop writing to the ATS, and what it does then.
    pub kill_switch: KillSwitch,
}

/// How a change is rolled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutMode {
    /// Only candidates inside the canary scope take the new path.
    Canary,
    /// Every candidate takes the new path.
    Full,
}

/// The candidates a canary rollout may touch.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CanaryScope {
    /// How candidates are selected.
    pub strategy: CanaryStrategy,
    /// Requisition tags that put a candidate in scope.
    #[serde(default)]
    pub include_tags: Vec<String>,
    /// Requisition locations (ISO 3166-1 alpha-2) that keep a candidate out of scope.
    #[serde(default)]
    pub exclude_locations: Vec<String>,
}

/// How the canary scope selects candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CanaryStrategy {
    /// In scope when the requisition carries an included tag and is not in an excluded location.
    RequisitionTag,
}

/// The kill switch of the ATS write-back.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct KillSwitch {
    /// The switch's name, as operators know it.
    pub name: String,
    /// Thresholds that trip the switch.
    pub trigger_conditions: TriggerConditions,
    /// What the integration does once tripped.
    pub action: KillSwitchAction,
}

/// Thresholds that trip the kill switch.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TriggerConditions {
    /// Percentage of ATS calls answered 5xx over a 5-minute window.
    pub ats_http_5xx_rate_pct_over_5m: f64,
    /// Number of ATS 422 mapping errors over a 10-minute window.
    pub mapping_error_count_over_10m: f64,
}

/// What a tripped kill switch does.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct KillSwitchAction {
    /// Queue events for replay instead of dropping them.
    pub queue_events: bool,
    /// Stop candidate-facing gates (verification sessions) while tripped.
    pub pause_candidate_gates: bool,
    /// Chat channels told when the switch trips and resets.
    pub notify_channels: Vec<String>,
}

/// One event contract.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ContractDef {
    /// The event type, as payloads give it in `"type"`.
    pub name: String,
    /// Who emits the event.
    pub producer: String,
    /// Who consumes it (`ats` for events written to the ATS).
    pub consumer: String,
    /// Dotted paths that must be present and not null.
    #[serde(default)]
    pub required_fields: Vec<String>,
    /// Dotted paths whose value must be one of the listed strings.
    #[serde(default)]
    pub enums: BTreeMap<String, Vec<String>>,
    /// Assertions in the assertion language (see the README).
    #[serde(default)]
    pub assertions: Vec<String>,
    /// What a violation means for the release.
    pub on_failure: OnFailure,
}

/// The consequence of a contract violation.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OnFailure {
    /// Whether a violation blocks the release or only warns.
    pub severity: Severity,
    /// Who gets the ticket.
    pub ticket_owner: String,
}

/// How much a failure matters to the release (a contract's notion; re-exported where
/// manifests name it).
pub use crate::contract::Severity;

/// The sandbox candidates of a run.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SandboxDataset {
    /// Candidates, each with a risk profile and the events it should produce.
    pub candidates: Vec<SandboxCandidate>,
}

/// One sandbox candidate.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SandboxCandidate {
    /// The candidate's id in the ATS.
    pub ats_candidate_id: String,
    /// The risk profile that drives the candidate's flow.
    pub profile: String,
    /// Events expected to reach the ATS, in order: `contract` or `contract:enum-value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sequence: Option<Vec<String>>,
    /// The requisition the candidate applied to; without it the sandbox gives the
    /// candidate one inside the canary scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requisition: Option<RequisitionDef>,
}

/// A sandbox candidate's requisition, as a manifest may pin it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RequisitionDef {
    /// The requisition's id; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its location (ISO 3166-1 alpha-2); generated inside the scope when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// What the integration must log.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Observability {
    /// Fields every processed-event log line must carry.
    #[serde(default)]
    pub log_fields_required: Vec<String>,
    /// Questions the logs must be able to answer, for people.
    #[serde(default)]
    pub trace_query_examples: Vec<String>,
}

/// How a manifest adjusts one check of the judge.
///
/// `{severity: warn}` or `{severity: block-release}`: the check runs and a failure
/// has that severity. `{enabled: false, reason: "…"}`: the check is skipped, and
/// reports say why. A `reason` may accompany a severity too; reports print it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    extend(
        "if" = {"properties": {"enabled": {"const": false}}, "required": ["enabled"]},
        "then" = {"required": ["reason"]}
    )
)]
pub struct CheckSetting {
    /// The severity a failure of this check has instead of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// `false` turns the check off; a `reason` is then required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `true`: the check must be judged; a run in which it skips is blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Why the check is adjusted, for the people reading the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CheckSetting {
    /// Whether the manifest turns the check off.
    pub fn disabled(&self) -> bool {
        self.enabled == Some(false)
    }
}

/// The schema of `checks:`: only the judge's check ids as keys, so editors flag a
/// misspelt id as the validator does.
fn check_settings_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let ids: Vec<&str> = crate::catalog::CHECKS.iter().map(|c| c.id).collect();
    let setting = generator.subschema_for::<CheckSetting>();
    schemars::json_schema!({
        "type": "object",
        "propertyNames": {"enum": ids},
        "additionalProperties": setting,
    })
}
