//! The mock vendor's evidence packs, kept compactly until asked for.
//!
//! A run registers one pack per event and holds them all while it drives: at
//! 100,000 candidates that is 200,000 packs. What packs have in common (the result,
//! the list of checks, which take a handful of values in a run) is one shared copy,
//! and a SHA-256 digest in lower-case hex is kept as its 32 bytes. A pack is rebuilt
//! when it is served, equal to the one registered.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::intern::shared;
use crate::sandbox::model::{EvidenceCheck, EvidencePack};

/// A pack's digest: 32 bytes when it is SHA-256 in lower-case hex (as synthesised
/// packs' are), else the text as registered.
#[derive(Debug)]
enum Digest {
    Sha256([u8; 32]),
    Text(Box<str>),
}

impl Digest {
    fn of(text: &str) -> Self {
        let mut bytes = [0u8; 32];
        let lower_hex = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) if lower_hex => Digest::Sha256(bytes),
            _ => Digest::Text(text.into()),
        }
    }

    fn text(&self) -> String {
        match self {
            Digest::Sha256(bytes) => hex::encode(bytes),
            Digest::Text(text) => text.to_string(),
        }
    }
}

/// A pack as it is kept: its id is the key it is found by.
#[derive(Debug)]
struct Kept {
    ats_candidate_id: Box<str>,
    session_id: Box<str>,
    result: Arc<str>,
    checks: Arc<[EvidenceCheck]>,
    digest: Digest,
}

/// Evidence packs by id.
#[derive(Debug, Default)]
pub(crate) struct Packs {
    by_id: HashMap<Box<str>, Box<Kept>>,
    results: HashSet<Arc<str>>,
    checks: HashSet<Arc<[EvidenceCheck]>>,
}

impl Packs {
    /// Keeps `pack`, replacing any pack with its id.
    pub(crate) fn insert(&mut self, pack: EvidencePack) {
        let kept = Kept {
            ats_candidate_id: pack.ats_candidate_id.into_boxed_str(),
            session_id: pack.session_id.into_boxed_str(),
            result: shared(&mut self.results, pack.result.as_str(), |r| Arc::from(r)),
            checks: shared(&mut self.checks, pack.checks.as_slice(), |c| Arc::from(c)),
            digest: Digest::of(&pack.digest),
        };
        self.by_id.insert(pack.id.into_boxed_str(), Box::new(kept));
    }

    /// The pack with this id, as it was registered.
    pub(crate) fn get(&self, id: &str) -> Option<EvidencePack> {
        let (id, kept) = self.by_id.get_key_value(id)?;
        Some(EvidencePack {
            id: id.to_string(),
            ats_candidate_id: kept.ats_candidate_id.to_string(),
            session_id: kept.session_id.to_string(),
            result: kept.result.to_string(),
            checks: kept.checks.to_vec(),
            digest: kept.digest.text(),
        })
    }

    /// Every pack's id.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(|id| &**id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(id: &str, digest: &str, outcome: &str) -> EvidencePack {
        EvidencePack {
            id: id.into(),
            ats_candidate_id: "CAND_1".into(),
            session_id: format!("ses_{id}"),
            result: "passed".into(),
            checks: vec![
                EvidenceCheck {
                    name: "document".into(),
                    outcome: outcome.into(),
                },
                EvidenceCheck {
                    name: "liveness".into(),
                    outcome: "passed".into(),
                },
            ],
            digest: digest.into(),
        }
    }

    #[test]
    fn a_pack_comes_back_as_registered_whatever_its_digest() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let upper = sha.to_uppercase();
        let mut packs = Packs::default();
        for (id, digest) in [
            ("ep_1", sha),
            ("ep_2", upper.as_str()),
            ("ep_3", "not hex"),
            ("ep_4", ""),
            ("ep_5", "abc"),
        ] {
            let registered = pack(id, digest, "passed");
            packs.insert(registered.clone());
            assert_eq!(packs.get(id), Some(registered), "{digest:?}");
        }
        assert!(matches!(packs.by_id["ep_1"].digest, Digest::Sha256(_)));
        assert!(
            matches!(packs.by_id["ep_2"].digest, Digest::Text(_)),
            "upper-case hex is kept as written"
        );
        assert_eq!(packs.get("ep_9"), None);
        let mut ids: Vec<&str> = packs.ids().collect();
        ids.sort_unstable();
        assert_eq!(ids, ["ep_1", "ep_2", "ep_3", "ep_4", "ep_5"]);
    }

    #[test]
    fn packs_share_their_results_and_checks() {
        let mut packs = Packs::default();
        packs.insert(pack("ep_1", "00", "passed"));
        packs.insert(pack("ep_2", "00", "passed"));
        packs.insert(pack("ep_3", "00", "failed"));
        let (one, two, three) = (
            &packs.by_id["ep_1"],
            &packs.by_id["ep_2"],
            &packs.by_id["ep_3"],
        );
        assert!(Arc::ptr_eq(&one.checks, &two.checks));
        assert!(!Arc::ptr_eq(&one.checks, &three.checks));
        assert!(Arc::ptr_eq(&one.result, &three.result));
        assert_eq!((packs.results.len(), packs.checks.len()), (1, 2));
    }
}
