//! Building a sandbox from a manifest: enrichment, controls, determinism.

use std::path::Path;

use super::*;

const SEED: &str = include_str!("../../manifests/release-gate.yaml");

/// The seed manifest, loaded from the copy the binary embeds.
pub(crate) fn seed_manifest() -> Manifest {
    Manifest::from_text(Path::new("manifests/release-gate.yaml"), SEED)
        .expect("the seed loads")
        .value
}

/// The seed manifest with its candidates replaced by `candidates` (YAML list items).
fn seed_with(candidates: &str, exclude_locations: &str) -> Result<Manifest, String> {
    let head = &SEED[..SEED
        .find("sandbox_dataset:")
        .expect("the seed has a dataset")];
    let head = head.replace(
        "exclude_locations: [\"DE\", \"FR\"]",
        &format!("exclude_locations: {exclude_locations}"),
    );
    let text = format!("{head}sandbox_dataset:\n  candidates:\n{candidates}");
    Manifest::from_text(Path::new("variant.yaml"), &text)
        .map(|loaded| loaded.value)
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn the_seed_builds_its_candidates_and_two_controls() {
    let manifest = seed_manifest();
    let sandbox = build(&manifest, 7).expect("builds");
    let scope = &manifest.raw.release_gate.canary_scope;
    let ids: Vec<&str> = sandbox.candidates.iter().map(|c| c.id.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "CAND_canary_001",
            "CAND_canary_002",
            "CAND_canary_003",
            "CAND_control_untagged",
            "CAND_control_excluded_location"
        ]
    );
    let tiers: Vec<RiskTier> = sandbox.candidates.iter().map(|c| c.risk_tier).collect();
    use RiskTier::*;
    assert_eq!(tiers, [Low, High, Medium, Low, Low]);
    for (candidate, written) in sandbox.candidates.iter().zip(&manifest.candidates) {
        assert_eq!(
            Some(&*candidate.expected_sequence),
            written.expected_sequence.as_deref()
        );
        assert_eq!(candidate.role, Role::Seeded);
        assert!(
            in_canary_scope(scope, &candidate.requisition),
            "{candidate:?}"
        );
    }
    let [untagged, excluded] = &sandbox.candidates[3..] else {
        panic!("two controls")
    };
    assert_eq!(untagged.role, Role::ControlUntagged);
    assert!(
        !untagged
            .requisition
            .tags
            .iter()
            .any(|t| scope.include_tags.contains(t))
    );
    assert!(
        !scope
            .exclude_locations
            .contains(&untagged.requisition.location)
    );
    assert_eq!(excluded.role, Role::ControlExcludedLocation);
    assert!(
        scope
            .exclude_locations
            .contains(&excluded.requisition.location)
    );
    assert!(
        excluded
            .requisition
            .tags
            .iter()
            .any(|t| scope.include_tags.contains(t))
    );
    let fast = profiles::LOW_RISK_FAST_PATH
        .expected_sequence(&manifest.contracts)
        .expect("resolves");
    for control in [untagged, excluded] {
        assert!(!in_canary_scope(scope, &control.requisition));
        assert_eq!(*control.expected_sequence, *fast);
        assert_eq!(control.profile, "low-risk-fast-path");
        assert_eq!(manifest.id_rules().violation(&control.id.0), None);
    }
    let emails: std::collections::HashSet<&str> = sandbox
        .candidates
        .iter()
        .map(|c| c.person.email.as_str())
        .collect();
    assert_eq!(emails.len(), sandbox.candidates.len(), "unique addresses");
}

#[test]
fn same_seed_same_sandbox_other_seed_other_people() {
    let manifest = seed_manifest();
    let show = |seed| format!("{:?}", build(&manifest, seed).expect("builds"));
    assert_eq!(show(3), show(3));
    let names = |seed| -> Vec<String> {
        build(&manifest, seed)
            .expect("builds")
            .candidates
            .into_iter()
            .map(|c| c.person.name.into())
            .collect()
    };
    assert_ne!(names(3), names(4));
}

#[test]
fn appending_a_candidate_changes_no_one_else() {
    let one = "    - ats_candidate_id: \"CAND_a_001\"\n      profile: \"fail\"\n";
    let two =
        format!("{one}    - ats_candidate_id: \"CAND_a_002\"\n      profile: \"retake-flow\"\n");
    let small = build(&seed_with(one, "[\"DE\"]").expect("loads"), 1).expect("builds");
    let large = build(&seed_with(&two, "[\"DE\"]").expect("loads"), 1).expect("builds");
    assert_eq!(small.candidates[0].person, large.candidates[0].person);
    assert_eq!(
        small.candidates[0].requisition,
        large.candidates[0].requisition
    );
    assert_eq!(
        large.candidates[1].expected_sequence.len(),
        2,
        "retake default sequence"
    );
    assert_eq!(large.candidates[1].risk_tier, RiskTier::Medium);
}

#[test]
fn pinned_requisitions_are_honoured_and_completed() {
    let candidates = "    - ats_candidate_id: \"CAND_p_001\"\n      profile: \"fail\"\n      requisition: {tags: [\"canary-il\", \"x\"]}\n    - ats_candidate_id: \"CAND_p_002\"\n      profile: \"fail\"\n      requisition: {id: \"REQ-7\", tags: [], location: \"FR\"}\n";
    let manifest = seed_with(candidates, "[\"DE\", \"FR\"]").expect("loads");
    let sandbox = build(&manifest, 2).expect("builds");
    let scope = &manifest.raw.release_gate.canary_scope;
    let first = &sandbox.candidates[0].requisition;
    assert_eq!(first.tags, ["canary-il", "x"]);
    assert!(first.id.starts_with("REQ-"), "missing id generated");
    assert!(
        in_canary_scope(scope, first),
        "missing location generated inside the scope"
    );
    let second = &sandbox.candidates[1].requisition;
    assert_eq!(
        (second.id.as_str(), second.location.as_str()),
        ("REQ-7", "FR")
    );
    assert!(second.tags.is_empty());
}

#[test]
fn no_excluded_locations_means_one_control() {
    let candidates = "    - ats_candidate_id: \"CAND_n_001\"\n      profile: \"fail\"\n";
    let manifest = seed_with(candidates, "[]").expect("loads");
    let sandbox = build(&manifest, 2).expect("builds");
    let roles: Vec<Role> = sandbox.candidates.iter().map(|c| c.role).collect();
    assert_eq!(roles, [Role::Seeded, Role::ControlUntagged]);
}

#[test]
fn unknown_profiles_need_a_sequence() {
    let candidates = "    - ats_candidate_id: \"CAND_u_001\"\n      profile: \"low-risk-fastpath\"\n    - ats_candidate_id: \"CAND_u_002\"\n      profile: \"bespoke\"\n      expected_sequence: [\"identity.verification.completed:failed\"]\n";
    let manifest = seed_with(candidates, "[\"DE\"]").expect("loads");
    let message = build(&manifest, 1)
        .expect_err("no sequence for u_001")
        .to_string();
    assert_eq!(
        message,
        "candidate `CAND_u_001`: unknown profile `low-risk-fastpath` (did you mean `low-risk-fast-path`?); \
         the known profiles are low-risk-fast-path, medium-risk-pass, step-up-manual-review, \
         high-risk-step-up-pass, retake-flow, fail, bespoke; or give the candidate an `expected_sequence`"
    );
    let candidates = "    - ats_candidate_id: \"CAND_u_002\"\n      profile: \"bespoke\"\n      expected_sequence: [\"identity.verification.completed:failed\"]\n";
    let manifest = seed_with(candidates, "[\"DE\"]").expect("loads");
    let sandbox = build(&manifest, 1).expect("a written sequence needs no known profile");
    assert_eq!(sandbox.candidates[0].risk_tier, RiskTier::Medium);
}

#[test]
fn control_ids_follow_a_strict_id_pattern() {
    let text = SEED.replace("^[A-Za-z0-9_-]{6,64}$", "^C[0-9]{5}$");
    let text = text.replace("CAND_canary_00", "C0000");
    let manifest = Manifest::from_text(Path::new("strict.yaml"), &text)
        .expect("loads")
        .value;
    let sandbox = build(&manifest, 4).expect("builds");
    let ids: Vec<&str> = sandbox.candidates.iter().map(|c| c.id.0.as_str()).collect();
    let pattern = regex::Regex::new("^C[0-9]{5}$").expect("valid");
    assert!(ids.iter().all(|id| pattern.is_match(id)), "{ids:?}");
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

/// A generated dataset of `count` candidates for `manifest`, seed 8, as written.
fn dataset_bytes(manifest: &Manifest, count: u64) -> Vec<u8> {
    let options = dataset::GenerateOptions {
        count,
        seed: 8,
        mix: dataset::RiskMix::default(),
    };
    let mut bytes = Vec::new();
    dataset::write(&mut bytes, manifest, options).expect("writes");
    bytes
}

#[test]
fn datasets_become_sandboxes_with_controls() {
    let manifest = seed_manifest();
    let bytes = dataset_bytes(&manifest, 40);
    let loaded = dataset::from_reader(Path::new("mem.yaml"), bytes.as_slice()).expect("loads");
    let sandbox = from_dataset(&manifest, &loaded).expect("builds");
    assert_eq!(sandbox.candidates.len(), 42);
    for (candidate, row) in sandbox.candidates.iter().zip(&loaded.candidates) {
        assert_eq!(candidate.person.email, row.email);
        let profile = profiles::find(&row.profile).expect("known");
        assert_eq!(candidate.expected_sequence.len(), profile.steps.len());
    }
    let emails: std::collections::HashSet<&str> = sandbox
        .candidates
        .iter()
        .map(|c| c.person.email.as_str())
        .collect();
    assert_eq!(emails.len(), 42, "controls do not reuse a dataset address");
}

#[test]
fn a_part_of_a_dataset_is_the_whole_sandbox_at_the_positions_kept() {
    let manifest = seed_manifest();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("d.yaml");
    std::fs::write(&path, dataset_bytes(&manifest, 12)).expect("saved");
    let whole = load_dataset(&manifest, &path).expect("loads");
    assert_eq!(whole.candidates.len(), 14, "twelve rows and two controls");
    assert!(whole.positions.is_empty(), "the whole needs no positions");
    let same = |a: &SandboxCandidate, b: &SandboxCandidate| {
        a.id == b.id
            && a.person == b.person
            && a.requisition == b.requisition
            && a.role == b.role
            && a.expected_sequence == b.expected_sequence
    };
    // Every third position, the last control among them: its controls are the whole's.
    let part = load_dataset_part(&manifest, &path, &|p| p % 3 == 1).expect("loads");
    assert_eq!(part.positions, [1, 4, 7, 10, 13]);
    let positioned: Vec<(u32, &SandboxCandidate)> = part.positioned().collect();
    assert_eq!(positioned.len(), 5);
    for (position, candidate) in positioned {
        assert!(
            same(candidate, &whole.candidates[position as usize]),
            "position {position}"
        );
    }
    // A first part keeps its indexes as positions.
    let first = load_dataset_part(&manifest, &path, &|p| p < 3).expect("loads");
    assert!(first.positions.is_empty());
    assert_eq!(first.candidates.len(), 3);
    assert!(same(&first.candidates[2], &whole.candidates[2]));
    // A problem anywhere in the file stops a part too, named by its row.
    let broken =
        std::fs::read_to_string(&path)
            .expect("read")
            .replacen("profile: ", "profile: nope-", 1);
    std::fs::write(&path, broken).expect("saved");
    let err = load_dataset_part(&manifest, &path, &|p| p > 5).expect_err("refused");
    assert!(err.to_string().contains("candidates[0]"), "{err}");
}
