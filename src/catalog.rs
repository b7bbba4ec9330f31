//! The catalogue of checks: every check's stable id and what it proves, in report
//! order.
//!
//! A leaf module: the manifest loader (which validates `checks:` settings against
//! these ids), the judge (which runs them) and the reports all read it, and it
//! depends on nothing, so none of them has to reach into another for the list. An id
//! never changes meaning; a new check gets a new id.

/// A check's stable id and what it proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckInfo {
    /// The stable id (`idempotency.exactly_once`, …).
    pub id: &'static str,
    /// When it passes, in one line (the protocol's wording).
    pub passes_when: &'static str,
}

/// Every check of the protocol, in report order.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: "contract.required_fields",
        passes_when: "every event that reached the ATS carries its contract's required fields",
    },
    CheckInfo {
        id: "contract.enums",
        passes_when: "every enum field of every event that reached the ATS holds an allowed value",
    },
    CheckInfo {
        id: "contract.assertions",
        passes_when: "every event that reached the ATS satisfies its contract's assertions",
    },
    CheckInfo {
        id: "contract.schema",
        passes_when: "every event that reached the ATS validates against its contract's JSON Schema",
    },
    CheckInfo {
        id: "delivery.ack_sla",
        passes_when: "every webhook was answered within the ack SLA",
    },
    CheckInfo {
        id: "idempotency.exactly_once",
        passes_when: "no idempotency_key reached the ATS twice, whatever was redelivered",
    },
    CheckInfo {
        id: "idempotency.key_stable",
        passes_when: "the contracts' \"stable for same (…)\" assertions hold across every copy of every event",
    },
    CheckInfo {
        id: "delivery.no_loss",
        passes_when: "every event that should land, landed, within the drain deadline",
    },
    CheckInfo {
        id: "ordering.no_regression",
        passes_when: "per candidate and contract, occurred_at never goes backwards at the ATS and the final state is the latest event's",
    },
    CheckInfo {
        id: "sequence.expected",
        passes_when: "in the clean scenario, each candidate's events reached the ATS as its expected_sequence says",
    },
    CheckInfo {
        id: "signature.enforced",
        passes_when: "unsigned, wrongly signed and stale deliveries got 4xx and changed nothing in the ATS",
    },
    CheckInfo {
        id: "canary.scope",
        passes_when: "candidates outside the canary scope got no ATS writes from the new contract path",
    },
    CheckInfo {
        id: "observability.log_fields",
        passes_when: "each processed event has a JSON log line carrying every log_fields_required field",
    },
    CheckInfo {
        id: "privacy.no_pii_in_logs",
        passes_when: "no seeded candidate name or e-mail appears in anything the integration printed",
    },
    CheckInfo {
        id: "kill_switch.trips",
        passes_when: "under an ATS outage the integration stops writing within a bounded number of attempts and notifies every notify_channels channel",
    },
    CheckInfo {
        id: "kill_switch.queue_replay",
        passes_when: "after recovery, every event accepted during the outage lands exactly once, in per-candidate order, within the drain deadline",
    },
    CheckInfo {
        id: "kill_switch.gates_not_paused",
        passes_when: "candidate-facing calls go on during an outage unless pause_candidate_gates is true",
    },
    CheckInfo {
        id: "policy.stage_event_idempotency",
        passes_when: "a stage change redelivered or re-emitted never opened a second verification session nor a second grant",
    },
    CheckInfo {
        id: "policy.fanout_sla",
        passes_when: "each gated stage change opened its verification session within triggerFanoutSeconds",
    },
    CheckInfo {
        id: "policy.identity_gate",
        passes_when: "no grant before a passed result for the candidate and gated stage, none after failed, none while an exception is open",
    },
    CheckInfo {
        id: "policy.step_up",
        passes_when: "every step-up signal and review_required produced exactly one exception item with the policy's owner and due time, and no grant until resolved",
    },
    CheckInfo {
        id: "policy.log_fields",
        passes_when: "every processed stage change and result has a JSON log line with every mustLogFields field and no personal data",
    },
    CheckInfo {
        id: "policy.signature",
        passes_when: "forged or stale ATS webhooks got a 4xx and changed nothing",
    },
    CheckInfo {
        id: "policy.reconciliation",
        passes_when: "after POST /jobs/reconcile every ATS/vendor mismatch is one exception item with the policy's owner, and nothing that matched became one",
    },
];

/// The check with this id, if there is one.
pub fn check_info(id: &str) -> Option<&'static CheckInfo> {
    CHECKS.iter().find(|c| c.id == id)
}
