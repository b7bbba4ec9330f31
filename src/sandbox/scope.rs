//! Requisitions and the canary scope: which candidates the new contract path may touch.
//!
//! [`in_canary_scope`] is the one definition of "in scope" the sandbox, the mocks and
//! the `canary.scope` check share. The generators here place requisitions on purpose:
//! inside the scope for seeded candidates without one, completed from what a manifest
//! pins, and just outside it (untagged, or in an excluded location) for the controls.

use rand::RngExt;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::SandboxError;
use super::model::Requisition;
use crate::manifest::model::{CanaryScope, CanaryStrategy, RequisitionDef};

/// ISO 3166-1 alpha-2 codes requisitions are placed in.
pub const LOCATIONS: &[&str] = &[
    "US", "GB", "IE", "IL", "DE", "FR", "ES", "PT", "IT", "NL", "BE", "PL", "CZ", "SE", "NO", "DK",
    "FI", "TR", "GR", "RO", "IN", "SG", "JP", "KR", "VN", "PH", "AU", "NZ", "CA", "MX", "BR", "AR",
    "CL", "CO", "ZA", "NG", "KE", "EG", "AE", "SA",
];

/// Tags that mark no canary: the other labels a requisition carries.
const OTHER_TAGS: &[&str] = &[
    "engineering",
    "backend",
    "frontend",
    "data",
    "design",
    "sales",
    "support",
    "people-ops",
    "remote",
    "graduate",
];

/// Whether a requisition is inside the canary scope: under `requisition_tag`, it
/// carries at least one included tag and its location is not excluded (both exact).
pub fn in_canary_scope(scope: &CanaryScope, requisition: &Requisition) -> bool {
    match scope.strategy {
        CanaryStrategy::RequisitionTag => {
            requisition
                .tags
                .iter()
                .any(|tag| scope.include_tags.contains(tag))
                && !scope.exclude_locations.contains(&requisition.location)
        }
    }
}

/// A requisition inside the scope: an included tag, maybe another, an allowed location.
pub(crate) fn inside(
    scope: &CanaryScope,
    rng: &mut ChaCha8Rng,
) -> Result<Requisition, SandboxError> {
    let tag = scope
        .include_tags
        .choose(rng)
        .ok_or(SandboxError::NoIncludedTag)?
        .clone();
    let mut tags = vec![tag];
    if rng.random_bool(0.5) {
        tags.extend(other_tag(scope, rng));
    }
    Ok(Requisition {
        id: requisition_id(rng),
        tags,
        location: allowed_location(scope, rng)?,
    })
}

/// The manifest's requisition with its missing id or location generated.
pub(crate) fn complete(
    def: &RequisitionDef,
    scope: &CanaryScope,
    rng: &mut ChaCha8Rng,
) -> Result<Requisition, SandboxError> {
    // Draw both values whatever is pinned, so pinning one never shifts the other.
    let id = requisition_id(rng);
    let location = allowed_location(scope, rng)?;
    Ok(Requisition {
        id: def.id.clone().unwrap_or(id),
        tags: def.tags.clone(),
        location: def.location.clone().unwrap_or(location),
    })
}

/// A requisition in an allowed location that lacks every included tag.
pub(crate) fn untagged(
    scope: &CanaryScope,
    rng: &mut ChaCha8Rng,
) -> Result<Requisition, SandboxError> {
    let tags = other_tag(scope, rng)
        .map(|t| vec![t])
        .unwrap_or_else(|| vec![unused_tag(scope)]);
    Ok(Requisition {
        id: requisition_id(rng),
        tags,
        location: allowed_location(scope, rng)?,
    })
}

/// A requisition with an included tag in an excluded location.
pub(crate) fn excluded_location(
    scope: &CanaryScope,
    rng: &mut ChaCha8Rng,
) -> Result<Requisition, SandboxError> {
    let tag = scope
        .include_tags
        .choose(rng)
        .ok_or(SandboxError::NoIncludedTag)?
        .clone();
    let location = scope
        .exclude_locations
        .choose(rng)
        .ok_or(SandboxError::NoLocation)?
        .clone();
    Ok(Requisition {
        id: requisition_id(rng),
        tags: vec![tag],
        location,
    })
}

fn requisition_id(rng: &mut ChaCha8Rng) -> String {
    format!("REQ-{:05}", rng.random_range(1..100_000u32))
}

fn allowed_location(scope: &CanaryScope, rng: &mut ChaCha8Rng) -> Result<String, SandboxError> {
    let allowed: Vec<&str> = LOCATIONS
        .iter()
        .copied()
        .filter(|l| !scope.exclude_locations.iter().any(|x| x == l))
        .collect();
    allowed
        .choose(rng)
        .map(|l| (*l).to_owned())
        .ok_or(SandboxError::NoLocation)
}

fn other_tag(scope: &CanaryScope, rng: &mut ChaCha8Rng) -> Option<String> {
    let others: Vec<&str> = OTHER_TAGS
        .iter()
        .copied()
        .filter(|t| !scope.include_tags.iter().any(|x| x == t))
        .collect();
    others.choose(rng).map(|t| (*t).to_owned())
}

/// A tag no scope includes, for the unlikely scope that includes every ordinary one.
fn unused_tag(scope: &CanaryScope) -> String {
    let mut tag = "not-in-canary".to_owned();
    while scope.include_tags.contains(&tag) {
        tag.push('-');
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn scope(include: &[&str], exclude: &[&str]) -> CanaryScope {
        CanaryScope {
            strategy: CanaryStrategy::RequisitionTag,
            include_tags: include.iter().map(|s| (*s).to_owned()).collect(),
            exclude_locations: exclude.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn req(tags: &[&str], location: &str) -> Requisition {
        Requisition {
            id: "REQ-1".into(),
            tags: tags.iter().map(|s| (*s).to_owned()).collect(),
            location: location.into(),
        }
    }

    #[test]
    fn canary_scope_table() {
        let seed = scope(&["canary-il"], &["DE", "FR"]);
        // (requisition, in scope?, why)
        let rows = [
            (req(&["canary-il"], "IL"), true, "tagged, allowed location"),
            (
                req(&["backend", "canary-il"], "US"),
                true,
                "one included tag among others is enough",
            ),
            (req(&["backend"], "IL"), false, "no included tag"),
            (req(&[], "IL"), false, "no tags at all"),
            (
                req(&["canary-il"], "DE"),
                false,
                "excluded location wins over the tag",
            ),
            (req(&["Canary-IL"], "IL"), false, "tags compare exactly"),
            (req(&["canary-il"], "de"), true, "locations compare exactly"),
        ];
        for (requisition, expected, why) in rows {
            assert_eq!(in_canary_scope(&seed, &requisition), expected, "{why}");
        }
        let several = scope(&["a", "b"], &[]);
        assert!(
            in_canary_scope(&several, &req(&["b"], "DE")),
            "any included tag, no exclusions"
        );
    }

    #[test]
    fn generated_requisitions_land_where_intended() {
        let scope = scope(&["canary-il", "canary-us"], &["DE", "FR"]);
        for seed in 0..200 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let inside = inside(&scope, &mut rng).expect("possible");
            assert!(in_canary_scope(&scope, &inside), "{inside:?}");
            let untagged = untagged(&scope, &mut rng).expect("possible");
            assert!(!in_canary_scope(&scope, &untagged), "{untagged:?}");
            assert!(
                !scope.exclude_locations.contains(&untagged.location),
                "only the tag is missing"
            );
            let excluded = excluded_location(&scope, &mut rng).expect("possible");
            assert!(!in_canary_scope(&scope, &excluded), "{excluded:?}");
            assert!(
                excluded.tags.iter().any(|t| scope.include_tags.contains(t)),
                "only the location is wrong"
            );
        }
    }

    #[test]
    fn pinned_fields_are_honoured_and_missing_ones_generated() {
        let scope = scope(&["canary-il"], &["DE"]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let def = RequisitionDef {
            id: None,
            tags: vec!["canary-il".into()],
            location: Some("DE".into()),
        };
        let r = complete(&def, &scope, &mut rng).expect("possible");
        assert_eq!(
            r.location, "DE",
            "a pinned location is kept even when excluded"
        );
        assert!(r.id.starts_with("REQ-"));
        assert!(!in_canary_scope(&scope, &r));
    }
}
