//! Synthesized payloads pass their contracts, keep their stability rules, and are
//! reproducible from the seed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;
use crate::contract::assertion::StableTracker;
use crate::manifest::Manifest;
use crate::sandbox::tests::seed_manifest;
use crate::sandbox::{Sandbox, build};

/// A manifest exercising the assertion kinds the seed does not: UUIDs, time windows,
/// literal lists, regexes on non-id fields, integers, booleans, exclusions, nesting.
pub(crate) const VARIETY: &str = r##"
version: "1.3"
release_gate:
  change_id: "variety"
  mode: "canary"
  canary_scope:
    strategy: "requisition_tag"
    include_tags: ["canary-a", "canary-b"]
    exclude_locations: ["GB"]
  kill_switch:
    name: "ks"
    trigger_conditions: {ats_http_5xx_rate_pct_over_5m: 5, mapping_error_count_over_10m: 3}
    action: {queue_events: true, pause_candidate_gates: true, notify_channels: ["#ops"]}
contracts:
  - name: "identity.verification.completed"
    producer: "vendor"
    consumer: "ats"
    required_fields: [event_id, idempotency_key, occurred_at, correlation_id, ats_candidate_id,
      verification.session_id, verification.result, verification.risk_tier,
      verification.reference, verification.method, evidence_pack.url, evidence_pack.digest]
    enums:
      verification.result: ["passed", "failed", "review_required"]
      verification.risk_tier: ["low", "medium", "high"]
    assertions:
      - "ats_candidate_id matches ^CAND_[A-Za-z0-9_]{3,40}$"
      - "event_id is UUID"
      - "occurred_at is RFC3339 and >= now() - 30d and <= now()"
      - "verification.reference matches '^REF-[0-9]{4}-[A-Z]{2}$'"
      - "verification.method in [document, nfc, video]"
      - "idempotency_key is stable for same (ats_candidate_id, verification.session_id)"
      - "idempotency_key matches ^idk_[0-9a-f]{24}$"
      - "evidence_pack.url is URL"
      - "evidence_pack.digest matches ^[0-9a-f]{64}$"
    on_failure: {severity: "block-release", ticket_owner: "ops"}
  - name: "assessment.score.posted"
    producer: "vendor"
    consumer: "ats"
    required_fields: [event_id, idempotency_key, occurred_at, correlation_id, ats_candidate_id,
      assessment.attempt_id, assessment.language, assessment.score, assessment.proctoring_flags,
      assessment.duration_seconds, evidence_pack.url]
    assertions:
      - "assessment.score is integer and >= 0 and <= 10 and != 5"
      - "assessment.language in supported_languages"
      - "assessment.duration_seconds > 600 and < 700"
      - "assessment.proctoring_flags is non-empty"
      - "occurred_at <= now() - 2h"
    on_failure: {severity: "warn", ticket_owner: "eng"}
  - name: "background.check.completed"
    producer: "checker"
    consumer: "ats"
    required_fields: [event_id, idempotency_key, occurred_at, ats_candidate_id, check.status,
      check.package, check.completed_at, check.attempts, notes, check.is_manual]
    enums:
      check.status: ["clear", "consider", "suspended"]
    assertions:
      - "check.package in ['basic', 'standard plus']"
      - "check.completed_at is RFC3339 and <= now() - 1d"
      - "check.attempts between 1 and 3 and is integer"
      - "notes is non-empty and is string"
      - "check.is_manual is boolean"
      - "idempotency_key is stable for same (ats_candidate_id, check.package)"
    on_failure: {severity: "warn", ticket_owner: "eng"}
sandbox_dataset:
  candidates:
    - ats_candidate_id: "CAND_v_001"
      profile: "low-risk-fast-path"
    - ats_candidate_id: "CAND_v_002"
      profile: "custom-background"
      expected_sequence:
        - "background.check.completed:consider"
        - "identity.verification.completed:review_required"
        - "identity.verification.completed:passed"
        - "background.check.completed:clear"
      requisition:
        tags: ["canary-b", "engineering"]
    - ats_candidate_id: "CAND_v_003"
      profile: "retake-flow"
      requisition: {id: "REQ-PINNED", tags: ["other"], location: "GB"}
    - ats_candidate_id: "CAND_v_004"
      profile: "fail"
"##;

fn load(text: &str) -> Manifest {
    Manifest::from_text(Path::new("variety.yaml"), text)
        .unwrap_or_else(|e| panic!("the manifest loads: {e:?}"))
        .value
}

fn manifests() -> &'static [Manifest; 2] {
    static MANIFESTS: OnceLock<[Manifest; 2]> = OnceLock::new();
    MANIFESTS.get_or_init(|| [seed_manifest(), load(VARIETY)])
}

fn config(seed: u64, anchor: DateTime<Utc>) -> SynthConfig {
    SynthConfig {
        seed,
        anchor,
        vendor_base_url: Url::parse("https://vendor.sandbox.test/").expect("valid URL"),
        envelope: crate::manifest::Envelope::default(),
    }
}

fn fixed_anchor() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-18T09:00:00.250Z")
        .expect("valid")
        .with_timezone(&Utc)
}

/// Every event of every candidate of a sandbox.
fn run(manifest: &Manifest, sandbox: &Sandbox, config: SynthConfig) -> Vec<SynthesizedEvent> {
    let synth = Synthesizer::new(&manifest.contracts, config);
    sandbox
        .candidates
        .iter()
        .flat_map(|c| {
            synth
                .synthesize_flow(c)
                .unwrap_or_else(|e| panic!("{}: {e}", c.id))
        })
        .collect()
}

/// Checks everything a run's events promise; `now` is when they are judged.
fn assert_run_holds(
    manifest: &Manifest,
    sandbox: &Sandbox,
    events: &[SynthesizedEvent],
    anchor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    let ctx = EvalContext { now };
    let mut trackers: HashMap<(String, String), StableTracker<usize>> = HashMap::new();
    let mut event_ids = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        let contract = manifest
            .contracts
            .get(event.contract.as_str())
            .expect("known contract");
        let mut violations = Vec::new();
        contract.check(&event.payload, &ctx, &mut violations);
        prop_assert!(violations.is_empty(), "{}: {violations:?}", event.payload);
        prop_assert_eq!(
            event.payload["type"].as_str(),
            Some(event.contract.as_str())
        );
        prop_assert!(event.occurred_at <= anchor, "never after the anchor");
        if let Some(id) = &event.event_id {
            prop_assert!(event_ids.insert(id.clone()), "event ids are fresh: {}", id);
        }
        for (assertion, rule) in contract.stability_rules() {
            let fingerprint = rule.fingerprint(&event.payload).expect("tuple present");
            let tracker = trackers
                .entry((contract.name().0.clone(), assertion.source().to_owned()))
                .or_default();
            prop_assert!(
                tracker.observe(fingerprint, i).is_none(),
                "`{}` broken by {}",
                assertion.source(),
                event.payload
            );
        }
        if let Some(pack) = &event.evidence_pack {
            let url = FieldPath::parse("evidence_pack.url").expect("valid");
            let expected = format!("https://vendor.sandbox.test/v1/evidence-packs/{}", pack.id);
            prop_assert_eq!(
                url.lookup(&event.payload).and_then(Value::as_str),
                Some(expected.as_str())
            );
            prop_assert_eq!(&pack.digest, &pack.compute_digest());
            prop_assert_eq!(pack.digest.len(), 64);
            prop_assert_eq!(&pack.ats_candidate_id, &event.candidate.0);
        }
    }
    for candidate in &sandbox.candidates {
        let mine: Vec<&SynthesizedEvent> = events
            .iter()
            .filter(|e| e.candidate == candidate.id)
            .collect();
        prop_assert_eq!(mine.len(), candidate.expected_sequence.len());
        for pair in mine.windows(2) {
            prop_assert!(
                pair[0].occurred_at < pair[1].occurred_at,
                "strictly increasing"
            );
            prop_assert_eq!(&pair[0].correlation_id, &pair[1].correlation_id);
        }
        for (event, entry) in mine.iter().zip(candidate.expected_sequence.iter()) {
            prop_assert_eq!(&event.contract, &entry.contract);
            if let Some((path, value)) = &entry.outcome {
                prop_assert_eq!(
                    path.lookup(&event.payload).and_then(Value::as_str),
                    Some(value.as_str())
                );
            }
            let tier = FieldPath::parse("verification.risk_tier").expect("valid");
            if let Some(found) = tier.lookup(&event.payload) {
                prop_assert_eq!(found.as_str(), Some(candidate.risk_tier.as_str()));
            }
        }
    }
    let correlations: HashSet<&str> = events.iter().map(|e| e.correlation_id.as_str()).collect();
    prop_assert_eq!(correlations.len(), sandbox.candidates.len(), "one per flow");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_payload_passes_its_contract_and_keeps_its_stability_rules(
        seed in any::<u64>(),
        which in 0..2usize,
    ) {
        let manifest = &manifests()[which];
        let sandbox = build(manifest, seed).expect("builds");
        let now = Utc::now();
        let anchor = now - TimeDelta::hours(1);
        let events = run(manifest, &sandbox, config(seed, anchor));
        assert_run_holds(manifest, &sandbox, &events, anchor, now)?;
    }
}

#[test]
fn the_seed_run_reads_like_the_example_payloads() {
    let manifest = seed_manifest();
    let sandbox = build(&manifest, 7).expect("builds");
    let events = run(&manifest, &sandbox, config(7, fixed_anchor()));
    let retake: Vec<&SynthesizedEvent> = events
        .iter()
        .filter(|e| e.candidate.0 == "CAND_canary_003")
        .collect();
    let session = |e: &SynthesizedEvent| e.payload["verification"]["session_id"].clone();
    assert_ne!(
        session(retake[0]),
        session(retake[1]),
        "a retake is a new session"
    );
    assert_ne!(
        retake[0].idempotency_key, retake[1].idempotency_key,
        "and so a new idempotency key"
    );
    let fast = events
        .iter()
        .find(|e| {
            e.candidate.0 == "CAND_canary_001" && e.contract.as_str() == "assessment.score.posted"
        })
        .expect("the fast path posts a score");
    let pack = fast
        .evidence_pack
        .as_ref()
        .expect("assessments carry evidence");
    let names: Vec<&str> = pack.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["plagiarism", "proctoring"]);
    assert_eq!(pack.result, "scored");
    let flagged = !fast.payload["assessment"]["proctoring_flags"]
        .as_array()
        .expect("an array")
        .is_empty();
    assert_eq!(pack.checks[1].outcome == "flagged", flagged);
    let review = events
        .iter()
        .find(|e| e.candidate.0 == "CAND_canary_002")
        .expect("the step-up candidate");
    let pack = review
        .evidence_pack
        .as_ref()
        .expect("identity carries evidence");
    assert_eq!(pack.result, "review_required");
    assert_eq!(
        pack.checks
            .iter()
            .filter(|c| c.outcome == "inconclusive")
            .count(),
        1
    );
    let key = review.idempotency_key.as_deref().expect("a key");
    assert!(key.starts_with("idk_") && key.len() == 28, "{key}");
}

#[test]
fn same_seed_same_bytes_and_another_seed_other_data() {
    let manifest = &manifests()[1];
    let render = |seed: u64| {
        let sandbox = build(manifest, seed).expect("builds");
        let events = run(manifest, &sandbox, config(seed, fixed_anchor()));
        let payloads: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
        let packs: Vec<String> = events
            .iter()
            .filter_map(|e| e.evidence_pack.as_ref().map(EvidencePack::canonical_json))
            .collect();
        let names: Vec<String> = sandbox
            .candidates
            .iter()
            .map(|c| c.person.name.to_string())
            .collect();
        (payloads.join("\n"), packs.join("\n"), names)
    };
    let (first, first_packs, first_names) = render(42);
    let (again, again_packs, again_names) = render(42);
    assert_eq!(first, again, "byte-identical payloads");
    assert_eq!(first_packs, again_packs);
    assert_eq!(first_names, again_names);
    let (other, _, other_names) = render(43);
    assert_ne!(first, other);
    assert_ne!(first_names, other_names, "another seed, other people");
}

#[test]
fn equal_tuples_give_equal_keys() {
    // Only one package, so both background events share the tuple (candidate, package).
    let text = VARIETY.replace("in ['basic', 'standard plus']", "in [basic]");
    let manifest = load(&text);
    let sandbox = build(&manifest, 5).expect("builds");
    let events = run(&manifest, &sandbox, config(5, fixed_anchor()));
    let keys: Vec<&str> = events
        .iter()
        .filter(|e| {
            e.candidate.0 == "CAND_v_002" && e.contract.as_str() == "background.check.completed"
        })
        .filter_map(|e| e.idempotency_key.as_deref())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "stable for the same tuple");
    let identity: HashSet<&str> = events
        .iter()
        .filter(|e| {
            e.candidate.0 == "CAND_v_002"
                && e.contract.as_str() == "identity.verification.completed"
        })
        .filter_map(|e| e.idempotency_key.as_deref())
        .collect();
    assert_eq!(identity.len(), 2, "two sessions, two tuples, two keys");
}

#[test]
fn constraints_are_honoured_where_the_seed_has_none() {
    let manifest = &manifests()[1];
    let sandbox = build(manifest, 9).expect("builds");
    let anchor = fixed_anchor();
    let events = run(manifest, &sandbox, config(9, anchor));
    for event in &events {
        let p = &event.payload;
        match event.contract.as_str() {
            "assessment.score.posted" => {
                let score = p["assessment"]["score"].as_i64().expect("an integer");
                assert!((0..=10).contains(&score) && score != 5, "{score}");
                assert!(
                    event.occurred_at <= anchor - TimeDelta::hours(2),
                    "`<= now() - 2h` holds for every event"
                );
            }
            "background.check.completed" => {
                assert!(p["check"]["is_manual"].is_boolean());
                assert!(p["notes"].as_str().is_some_and(|s| !s.trim().is_empty()));
            }
            _ => {}
        }
    }
}

#[test]
fn impossible_constraints_are_errors_naming_the_field() {
    let text = VARIETY.replace(
        "\"assessment.score is integer and >= 0 and <= 10 and != 5\"",
        "\"assessment.score between 0 and 10 and > 20\"",
    );
    let manifest = load(&text);
    let sandbox = build(&manifest, 1).expect("builds");
    let synth = Synthesizer::new(&manifest.contracts, config(1, fixed_anchor()));
    let fast = sandbox.candidate("CAND_v_001").expect("seeded");
    let err = synth.synthesize_flow(fast).expect_err("no score is both");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot synthesize `assessment.score` of `assessment.score.posted`"),
        "{message}"
    );
    assert!(message.contains("between 0 and 10 and > 20"), "{message}");
}

#[test]
fn a_flow_refuses_events_beyond_its_plan() {
    let manifest = seed_manifest();
    let sandbox = build(&manifest, 1).expect("builds");
    let synth = Synthesizer::new(&manifest.contracts, config(1, fixed_anchor()));
    let candidate = sandbox.candidate("CAND_canary_002").expect("seeded");
    let mut flow = synth.flow(candidate);
    let entry = &candidate.expected_sequence[0];
    flow.event(entry).expect("the planned event");
    let err = flow.event(entry).expect_err("one event planned");
    assert!(
        matches!(err, SynthError::BeyondPlan { planned: 1, .. }),
        "{err}"
    );
}

#[test]
fn field_names_pick_their_heuristics() {
    // (path, hint, why)
    let rows = [
        (
            "verification.session_id",
            Hint::Id("ses".into()),
            "session ids are prefixed",
        ),
        (
            "assessment.attempt_id",
            Hint::Id("att".into()),
            "attempt ids too",
        ),
        ("evidence_pack.url", Hint::EvidenceUrl, "the pack's URL"),
        ("evidence_pack.id", Hint::EvidenceId, "the pack's id"),
        (
            "requisition.id",
            Hint::RequisitionId,
            "the candidate's requisition",
        ),
        ("assessment.proctoring_flags", Hint::Flags, "flag arrays"),
        ("tags", Hint::List, "plurals are arrays"),
        ("status", Hint::Text, "status is not a plural"),
        ("started_at", Hint::Timestamp, "timestamps"),
        ("profile_link", Hint::Url, "links"),
        ("is_manual", Hint::Bool, "predicates"),
        (
            "attempts",
            Hint::Count { low: 1, high: 5 },
            "counts before plurals",
        ),
        ("idempotency_key", Hint::IdempotencyFromEvent, "keys"),
    ];
    for (path, expected, why) in rows {
        assert_eq!(
            hint(&FieldPath::parse(path).expect("valid")),
            expected,
            "{why}"
        );
    }
}
