//! The serde model of the hiring policy (format 1.x, as in the v1.0 seed).
//!
//! The policy says how ATS stage-change events are delivered and deduplicated, what
//! must be logged and which service levels hold. Keys are camelCase, as the seed
//! writes them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::FormatVersion;

/// A hiring policy as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields, title = "stagegate hiring policy")]
pub struct HiringPolicy {
    /// Format version; stagegate reads 1.x.
    pub policy_version: FormatVersion,
    /// Owner roles and what each owns.
    pub owner: BTreeMap<String, String>,
    /// Events the ATS emits.
    pub ats_events: Vec<AtsEvent>,
    /// Controls on access-granting stages.
    pub controls: Controls,
    /// Audit logging requirements.
    pub logging: Logging,
    /// Retention of the audit trail.
    pub retention: Retention,
    /// Service levels.
    pub slas: Slas,
    /// The reconciliation job between the ATS and the vendors.
    pub reconciliation: Reconciliation,
}

/// One ATS event type.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AtsEvent {
    /// The event name (`candidate.stage_changed`).
    pub name: String,
    /// Fields every event must carry.
    pub required_fields: Vec<String>,
    /// How the event is delivered.
    pub delivery: Delivery,
    /// How duplicates are recognised.
    pub idempotency: Idempotency,
}

/// Delivery settings of an ATS event.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Delivery {
    /// The transport.
    pub transport: Transport,
    /// Whether receivers must verify the signature.
    pub verify_signature: bool,
    /// How failed deliveries are retried.
    pub retry: Retry,
}

/// How events travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Signed HTTP webhooks.
    Webhook,
}

/// Retry policy of a delivery.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Retry {
    /// The backoff strategy.
    pub strategy: RetryStrategy,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

/// Backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RetryStrategy {
    /// Doubling delays with jitter.
    ExponentialBackoff,
    /// The same delay every time.
    Fixed,
}

/// Idempotency of an ATS event.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Idempotency {
    /// Template of the key, with `${field}` placeholders (`${name}` is the event name).
    pub key_template: String,
    /// How long a key is remembered.
    pub ttl_hours: u32,
}

/// Controls on privileged steps.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Controls {
    /// The identity gate.
    pub identity_gate: IdentityGate,
    /// Step-up verification.
    pub step_up_verification: StepUpVerification,
}

/// Stages that need a verified identity first.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct IdentityGate {
    /// Stages whose access is gated.
    pub applies_to_stages: Vec<String>,
    /// The rule, as security wrote it.
    pub rule: String,
}

/// When a candidate is sent to a stronger verification.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct StepUpVerification {
    /// Whether step-up is on.
    pub enabled: bool,
    /// Signals that trigger it.
    pub triggers: Vec<String>,
}

/// Audit logging requirements.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Logging {
    /// Whether the event log must be append-only.
    pub immutable_event_log: bool,
    /// Fields every log entry must carry.
    pub must_log_fields: Vec<String>,
}

/// Retention of audit data.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Retention {
    /// Months the audit trail is kept.
    pub audit_trail_months: u32,
}

/// Service levels.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Slas {
    /// Seconds within which a webhook must be acknowledged.
    pub webhook_ack_seconds: f64,
    /// Seconds within which downstream triggers fan out.
    pub trigger_fanout_seconds: f64,
    /// Target minutes for an identity verification.
    pub identity_verification_target_minutes: f64,
    /// Review deadlines of exceptions.
    pub exception_review: ExceptionReview,
    /// Hours within which a rubric is submitted.
    pub rubric_submission_hours: f64,
}

/// Review deadlines of exception-queue items.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ExceptionReview {
    /// Hours for a high-risk item.
    pub high_risk_hours: f64,
    /// Business days for a standard item.
    pub standard_business_days: f64,
}

/// The reconciliation job.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Reconciliation {
    /// How often it runs.
    pub schedule: Schedule,
    /// The states it compares (`ATS.stage`, …).
    pub compares: Vec<String>,
    /// What a mismatch causes.
    pub on_mismatch: OnMismatch,
}

/// How often reconciliation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
}

/// What a reconciliation mismatch causes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct OnMismatch {
    /// Whether an exception-queue item is created.
    pub create_exception_queue_item: bool,
    /// Which owner role gets it.
    pub assign_owner: AssignOwner,
}

/// Owner roles of exception-queue items, by risk.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AssignOwner {
    /// The role for standard items.
    pub default: String,
    /// The role for high-risk items.
    pub high_risk: String,
}
