//! Strings that match a contract's `matches` regex, for synthesized payloads.
//!
//! `rand_regex` samples from a regex's HIR but refuses anchors, and with Unicode on it
//! draws `\d` or `\w` from every script. So the HIR is prepared first: line and text
//! anchors become empty (a sample matched whole satisfies `^…$` as it stands alone),
//! and every class is narrowed to printable ASCII when that leaves it non-empty,
//! because JSON Schema's ECMA-262 `pattern` reads `\d` as ASCII digits. Word
//! boundaries stay, so such a regex fails to compile here and the caller falls back.
//! Every sample is then checked against the real regex, so a preparation that
//! changed the meaning can only cost a retry, never a wrong value.

use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Look, Repetition};

/// Extra repetitions `*`, `+` and `{n,}` may add: enough for variety, short values.
const MAX_REPEAT: u32 = 8;

/// A sampler for one regex.
#[derive(Debug, Clone)]
pub(crate) struct RegexSampler {
    generator: rand_regex::Regex,
    check: regex::Regex,
}

impl RegexSampler {
    /// Prepares a sampler; `Err` carries why the regex cannot be sampled.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        let check = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        let hir = regex_syntax::Parser::new()
            .parse(pattern)
            .map_err(|e| e.to_string())?;
        let generator =
            rand_regex::Regex::with_hir(prepare(hir), MAX_REPEAT).map_err(|e| e.to_string())?;
        Ok(RegexSampler { generator, check })
    }

    /// One sample that the real regex accepts, or `None` after a few tries.
    pub(crate) fn sample(&self, rng: &mut ChaCha8Rng) -> Option<String> {
        for _ in 0..16 {
            let sampled: Result<String, _> = self.generator.sample(rng);
            if let Ok(text) = sampled
                && self.check.is_match(&text)
            {
                return Some(text);
            }
        }
        None
    }
}

/// Drops start/end anchors and narrows classes to printable ASCII where possible.
fn prepare(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Look(
            Look::Start | Look::End | Look::StartLF | Look::EndLF | Look::StartCRLF | Look::EndCRLF,
        ) => Hir::empty(),
        HirKind::Look(other) => Hir::look(other),
        HirKind::Class(Class::Unicode(class)) => {
            let mut narrowed = class.clone();
            narrowed.intersect(&ClassUnicode::new([ClassUnicodeRange::new(' ', '~')]));
            if narrowed.ranges().is_empty() {
                Hir::class(Class::Unicode(class))
            } else {
                Hir::class(Class::Unicode(narrowed))
            }
        }
        HirKind::Class(bytes @ Class::Bytes(_)) => Hir::class(bytes),
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            sub: Box::new(prepare(*rep.sub)),
            ..rep
        }),
        HirKind::Capture(mut capture) => {
            capture.sub = Box::new(prepare(*capture.sub));
            Hir::capture(capture)
        }
        HirKind::Concat(subs) => Hir::concat(subs.into_iter().map(prepare).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.into_iter().map(prepare).collect()),
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(literal) => Hir::literal(literal.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn samples_match_anchored_and_unanchored_regexes() {
        // (regex, why)
        let rows = [
            ("^[A-Za-z0-9_-]{6,64}$", "the seed's id rule, anchored"),
            (r"^REF-\d{4}-[A-Z]{2}$", r"\d narrowed to ASCII digits"),
            (r"\w+@\w+\.test", "unanchored"),
            ("^(evt|event)_[0-9a-f]{8}$", "alternation inside a group"),
            ("^a$|^b$", "anchors inside alternatives"),
            ("^é+$", "a class with no ASCII member keeps its own"),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (regex, why) in rows {
            let sampler = RegexSampler::new(regex).unwrap_or_else(|e| panic!("{why}: {e}"));
            let check = regex::Regex::new(regex).expect("valid");
            for _ in 0..50 {
                let text = sampler
                    .sample(&mut rng)
                    .unwrap_or_else(|| panic!("{why}: no sample"));
                assert!(check.is_match(&text), "{why}: {text:?}");
                if !regex.contains('é') {
                    assert!(text.is_ascii(), "{why}: {text:?}");
                }
            }
        }
    }

    #[test]
    fn word_boundaries_and_bad_regexes_are_refused_not_panicked_on() {
        assert!(RegexSampler::new(r"\bword\b").is_err());
        assert!(RegexSampler::new("(").is_err());
    }
}
