//! The mock vendor's evidence packs, kept compactly until asked for.
//!
//! A run registers one pack per event and holds them all while it drives: at
//! 100,000 candidates that is 200,000 packs. So a pack is one allocation of bytes,
//! its id first (it is the key the pack is found by), and what packs have in common
//! (the result, the list of checks, which take a handful of values in a run) is one
//! shared copy, named by its position. A SHA-256 digest in lower-case hex is kept as
//! its 32 bytes. A pack is rebuilt when it is served, equal to the one registered.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::sandbox::model::{EvidenceCheck, EvidencePack};

/// How a pack's digest is kept: 32 bytes when it is SHA-256 in lower-case hex (as
/// synthesised packs' are), else the text as registered.
const DIGEST_SHA256: u8 = 0;
/// The digest's text follows as registered.
const DIGEST_TEXT: u8 = 1;

/// Appends `n` as LEB128: one byte for the short lengths and positions of a pack.
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 number [`put_len`] wrote at the front of `bytes`, and moves past it.
fn take_len(bytes: &mut &[u8]) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..usize::BITS).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Reads a text of `len` bytes at the front of `bytes`, and moves past it.
fn take_text<'b>(bytes: &mut &'b [u8], len: usize) -> Option<&'b str> {
    let (text, rest) = bytes.split_at_checked(len)?;
    *bytes = rest;
    std::str::from_utf8(text).ok()
}

/// A pack as it is kept: the lengths of its id, candidate and session id, its
/// result's and checks' positions among the shared ones and its digest's kind (each
/// [`put_len`]), then those texts and the digest.
#[derive(Debug)]
struct Kept(Box<[u8]>);

/// A kept pack's parts.
struct Parts<'k> {
    id: &'k str,
    ats_candidate_id: &'k str,
    session_id: &'k str,
    result: usize,
    checks: usize,
    digest: String,
}

impl Kept {
    /// Reads the parts back; `None` only if the bytes were not written by [`Packs::insert`].
    fn parts(&self) -> Option<Parts<'_>> {
        let mut bytes = &self.0[..];
        let lens = [(); 6].map(|()| take_len(&mut bytes));
        let [
            Some(id),
            Some(candidate),
            Some(session),
            Some(result),
            Some(checks),
            Some(kind),
        ] = lens
        else {
            return None;
        };
        let id = take_text(&mut bytes, id)?;
        let ats_candidate_id = take_text(&mut bytes, candidate)?;
        let session_id = take_text(&mut bytes, session)?;
        let digest = match kind as u8 {
            DIGEST_SHA256 => hex::encode(bytes),
            _ => std::str::from_utf8(bytes).ok()?.to_owned(),
        };
        Some(Parts {
            id,
            ats_candidate_id,
            session_id,
            result,
            checks,
            digest,
        })
    }

    /// The pack's id.
    fn id(&self) -> &str {
        let mut bytes = &self.0[..];
        let id = take_len(&mut bytes);
        // The lengths that follow the id's are one to a few bytes each.
        for _ in 1..6 {
            take_len(&mut bytes);
        }
        id.and_then(|len| take_text(&mut bytes, len))
            .unwrap_or_default()
    }
}

// A kept pack is found by its id: it hashes and compares as the id does.
impl Borrow<str> for Kept {
    fn borrow(&self) -> &str {
        self.id()
    }
}

impl Hash for Kept {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Kept {}

/// One copy of each value many packs share, found by its position.
#[derive(Debug)]
struct Table<T: ?Sized> {
    values: Vec<Arc<T>>,
    positions: HashMap<Arc<T>, usize>,
}

impl<T: ?Sized> Default for Table<T> {
    fn default() -> Self {
        Table {
            values: Vec::new(),
            positions: HashMap::new(),
        }
    }
}

impl<T: ?Sized + Hash + Eq> Table<T> {
    /// The position of `value`, added if new.
    fn position(&mut self, value: &T, make: impl FnOnce(&T) -> Arc<T>) -> usize {
        if let Some(at) = self.positions.get(value) {
            return *at;
        }
        let shared = make(value);
        self.values.push(Arc::clone(&shared));
        self.positions.insert(shared, self.values.len() - 1);
        self.values.len() - 1
    }
}

/// Evidence packs by id.
#[derive(Debug, Default)]
pub(crate) struct Packs {
    by_id: HashSet<Kept>,
    results: Table<str>,
    checks: Table<[EvidenceCheck]>,
}

impl Packs {
    /// Keeps `pack`, replacing any pack with its id.
    pub(crate) fn insert(&mut self, pack: EvidencePack) {
        let result = self
            .results
            .position(pack.result.as_str(), |r| Arc::from(r));
        let checks = self
            .checks
            .position(pack.checks.as_slice(), |c| Arc::from(c));
        let mut sha256 = [0u8; 32];
        let lower_hex = pack
            .digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let binary = lower_hex && hex::decode_to_slice(&pack.digest, &mut sha256).is_ok();
        let (kind, digest) = if binary {
            (DIGEST_SHA256, &sha256[..])
        } else {
            (DIGEST_TEXT, pack.digest.as_bytes())
        };
        let texts = [pack.id.as_str(), &pack.ats_candidate_id, &pack.session_id];
        let mut bytes =
            Vec::with_capacity(16 + texts.iter().map(|t| t.len()).sum::<usize>() + digest.len());
        for len in texts
            .iter()
            .map(|t| t.len())
            .chain([result, checks, usize::from(kind)])
        {
            put_len(&mut bytes, len);
        }
        for text in texts {
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes.extend_from_slice(digest);
        self.by_id.replace(Kept(bytes.into_boxed_slice()));
    }

    /// The pack with this id, as it was registered.
    pub(crate) fn get(&self, id: &str) -> Option<EvidencePack> {
        let parts = self.by_id.get(id)?.parts()?;
        Some(EvidencePack {
            id: parts.id.to_owned(),
            ats_candidate_id: parts.ats_candidate_id.to_owned(),
            session_id: parts.session_id.to_owned(),
            result: self.results.values.get(parts.result)?.to_string(),
            checks: self.checks.values.get(parts.checks)?.to_vec(),
            digest: parts.digest,
        })
    }

    /// Every pack's id.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.iter().map(Kept::id)
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
        let kind = |id: &str| packs.by_id.get(id).map(|kept| kept.0.len());
        // The id, the candidate, the session id, six lengths and 32 bytes of digest.
        assert_eq!(kind("ep_1"), Some(4 + 6 + 8 + 6 + 32));
        assert_eq!(
            kind("ep_2"),
            Some(4 + 6 + 8 + 6 + 64),
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
        let parts = |id: &str| {
            let parts = packs.by_id.get(id).and_then(Kept::parts).expect("kept");
            (parts.result, parts.checks)
        };
        assert_eq!(parts("ep_1"), (0, 0));
        assert_eq!(parts("ep_2"), (0, 0));
        assert_eq!(parts("ep_3"), (0, 1), "the same result, other checks");
        assert_eq!(
            (packs.results.values.len(), packs.checks.values.len()),
            (1, 2)
        );
    }

    #[test]
    fn long_texts_and_replaced_packs_come_back_as_registered() {
        let mut packs = Packs::default();
        let mut long = pack(&"x".repeat(70_000), "0", "passed");
        long.session_id = "é".repeat(200);
        packs.insert(long.clone());
        assert_eq!(packs.get(&long.id), Some(long.clone()));
        long.result = "failed".into();
        packs.insert(long.clone());
        assert_eq!(
            packs.get(&long.id),
            Some(long),
            "the second replaces the first"
        );
        assert_eq!(packs.ids().count(), 1);
    }
}
