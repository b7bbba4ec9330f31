//! `privacy.no_pii_in_logs`: no candidate's name or e-mail address appears in
//! anything the integration printed.
//!
//! Each personal string is searched as written, lower-cased, JSON-escaped (`\"`,
//! `\\`) and with every non-ASCII character as a `\u00e9` escape (what a JSON logger
//! that escapes non-ASCII writes), ASCII case ignored. All the variants of all the
//! candidates go into Aho-Corasick automata, one per 65,536 personal strings (a name
//! and an e-mail address per candidate: one automaton up to 32,768 candidates, four
//! at 100,000), so each line is scanned once per automaton.
//! Findings quote the line with the personal data masked: a report must not spread
//! what the check protects.

use std::collections::{BTreeSet, HashMap};

use aho_corasick::{AhoCorasick, MatchKind};

use super::exchange::quote;
use super::fold::{Context, Fold, skipped};
use super::run::{Outcome, detail_text};
use super::{Exchange, Finding};
use crate::observe::Record;

/// Personal strings shorter than this (in characters) are not searched: they would
/// match everywhere.
const MIN_CHARS: usize = 3;

/// How a personal string was written in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    AsWritten,
    LowerCased,
    JsonEscaped,
    UnicodeEscaped,
}

impl Form {
    fn describe(self) -> &'static str {
        match self {
            Form::AsWritten => "as written",
            Form::LowerCased => "lower-cased",
            Form::JsonEscaped => "JSON-escaped",
            Form::UnicodeEscaped => "with \\u escapes",
        }
    }
}

/// JSON string content: `"` and `\` and control characters escaped.
fn json_escaped(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// JSON string content with every non-ASCII character as `\uXXXX` (UTF-16).
fn unicode_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in json_escaped(text).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// `Z…y (10 characters)`: enough to recognise, not enough to leak.
fn masked(text: &str) -> String {
    let count = text.chars().count();
    let first = text.chars().next().unwrap_or('?');
    let last = text.chars().last().unwrap_or('?');
    format!("{first}…{last} ({count} characters)")
}

/// One personal string, the first candidate it belongs to and how many it does.
struct Personal<'a> {
    text: &'a str,
    owner: &'a str,
    owners: u32,
}

/// `privacy.no_pii_in_logs`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    let mut personal: Vec<Personal<'a>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for candidate in &cx.plan.plan.candidates {
        for text in &candidate.pii {
            let text = text.trim();
            if text.chars().count() < MIN_CHARS {
                continue;
            }
            let i = *index.entry(text).or_insert_with(|| {
                personal.push(Personal {
                    text,
                    owner: &candidate.candidate,
                    owners: 0,
                });
                personal.len() - 1
            });
            personal[i].owners = personal[i].owners.saturating_add(1);
        }
    }
    // Gone before the automata are built, whose building is the judge's peak.
    drop(index);
    if personal.is_empty() {
        return skipped("no planned candidate has personal data to look for");
    }
    match Pii::new(personal, STRINGS_PER_AUTOMATON) {
        Ok(pii) => Box::new(pii),
        Err(err) => skipped(format!(
            "the personal data could not be compiled into a search: {err}"
        )),
    }
}

impl<'a> Pii<'a> {
    /// The search for `personal`, `per_automaton` personal strings to an automaton.
    fn new(
        mut personal: Vec<Personal<'a>>,
        per_automaton: usize,
    ) -> Result<Self, aho_corasick::BuildError> {
        // The person and form of each pattern, in four bytes and one: a run has
        // hundreds of thousands of patterns.
        let mut meaning: Vec<(u32, Form)> = Vec::new();
        let mut automata = Vec::new();
        let per_automaton = per_automaton.max(1);
        for (chunk, people) in personal.chunks(per_automaton).enumerate() {
            let first = meaning.len();
            let mut patterns: Vec<String> = Vec::new();
            for (i, p) in people.iter().enumerate() {
                let person = (chunk * per_automaton + i) as u32;
                for (pattern, form) in forms(p.text) {
                    patterns.push(pattern);
                    meaning.push((person, form));
                }
            }
            // One automaton finds the leftmost-longest matches itself; split ones
            // search overlapping, and those of the whole set are chosen from all of
            // their matches ([`Pii::hits`]).
            let kind = if personal.len() > per_automaton {
                MatchKind::Standard
            } else {
                MatchKind::LeftmostLongest
            };
            let automaton = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(kind)
                .build(&patterns)?;
            automata.push((first, automaton));
        }
        personal.shrink_to_fit();
        meaning.shrink_to_fit();
        Ok(Pii {
            personal,
            meaning,
            automata,
            outcome: Outcome::default(),
        })
    }
}

/// How many personal strings go into one automaton. Building one holds about four
/// times its final size for a while (some 0.9 KB a string), so a large run's strings
/// are split among a few: the peak of building stays that of one, and a line is
/// searched once per automaton. The judge builds them first, while the run's memory
/// is still being handed back, so a large run's peak was there: 32,768 names and
/// e-mail addresses take about 28 MB to build, 8 MB built (65,536: 48 and 14 MB).
/// At 100,000 candidates that took 15-20 MB off the peak and added 2 s to the
/// judge's 9 s (six automata, not four).
const STRINGS_PER_AUTOMATON: usize = 32_768;

/// The distinct spellings a personal string may be printed in, each with the plainest
/// form that gives it.
fn forms(text: &str) -> Vec<(String, Form)> {
    let mut forms: Vec<(String, Form)> = vec![
        (text.to_owned(), Form::AsWritten),
        (text.to_lowercase(), Form::LowerCased),
        (json_escaped(text), Form::JsonEscaped),
        (json_escaped(&text.to_lowercase()), Form::JsonEscaped),
        (unicode_escaped(text), Form::UnicodeEscaped),
        (unicode_escaped(&text.to_lowercase()), Form::UnicodeEscaped),
    ];
    // The plainest form of each distinct spelling names it. The search ignores ASCII
    // case, so forms that differ only in it are one pattern (the lower-cased copy of
    // an ASCII name would only double the automaton).
    forms.sort_by_cached_key(|(pattern, form)| (pattern.to_ascii_lowercase(), *form));
    forms.dedup_by(|a, b| a.0.eq_ignore_ascii_case(&b.0));
    forms
}

struct Pii<'a> {
    personal: Vec<Personal<'a>>,
    meaning: Vec<(u32, Form)>,
    /// Automata over consecutive runs of `meaning`, each with its first pattern's place.
    automata: Vec<(usize, AhoCorasick)>,
    outcome: Outcome,
}

impl Pii<'_> {
    /// The personal strings in `text`, leftmost-longest and not overlapping, as one
    /// automaton of every pattern would find them: every automaton's matches,
    /// overlapping, then from the leftmost the longest, and on after its end.
    fn hits(&self, text: &str) -> Vec<(usize, usize, usize, Form)> {
        let hit = |start, end, pattern: usize| {
            let (person, form) = self.meaning[pattern];
            (start, end, person as usize, form)
        };
        if let [(_, automaton)] = self.automata.as_slice() {
            let found = automaton.find_iter(text);
            return found
                .map(|m| hit(m.start(), m.end(), m.pattern().as_usize()))
                .collect();
        }
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for (first, automaton) in &self.automata {
            for m in automaton.find_overlapping_iter(text) {
                found.push((m.start(), m.end(), first + m.pattern().as_usize()));
            }
        }
        found.sort_by_key(|&(start, end, pattern)| (start, std::cmp::Reverse(end), pattern));
        let mut hits = Vec::new();
        let mut from = 0;
        for (start, end, pattern) in found {
            if start < from {
                continue;
            }
            hits.push(hit(start, end, pattern));
            from = end;
        }
        hits
    }
}

impl Fold for Pii<'_> {
    fn record(&mut self, cx: &Context<'_>, line: &Record) {
        if line.kind != "integration.stdout" && line.kind != "integration.stderr" {
            return;
        }
        let text = detail_text(line, "line").unwrap_or_default();
        let hits = self.hits(text);
        if hits.is_empty() {
            return;
        }
        let personal = &self.personal;
        self.outcome
            .findings
            .add(|| finding(cx, line, text, &hits, personal));
    }

    fn finish(mut self: Box<Self>, cx: &Context<'_>) -> Outcome {
        if !cx.seen.output_visible {
            return Outcome::skip(
                "the harness did not start the integration, so what it printed is not in the log",
            );
        }
        for candidate in &cx.plan.plan.candidates {
            self.outcome.judged(Some(candidate.scenario));
        }
        self.outcome
    }
}

fn finding(
    cx: &Context<'_>,
    line: &Record,
    text: &str,
    hits: &[(usize, usize, usize, Form)],
    personal: &[Personal<'_>],
) -> Finding {
    let stream = line.kind.trim_start_matches("integration.");
    let mut described: BTreeSet<String> = BTreeSet::new();
    for &(_, _, person, form) in hits {
        let p = &personal[person];
        let kind = if p.text.contains('@') {
            "e-mail address"
        } else {
            "name"
        };
        let owner = p.owner;
        let copies = match p.owners {
            0 | 1 => String::new(),
            n => format!(" (and {} other scenario copies)", n - 1),
        };
        described.insert(format!(
            "{owner}'s {kind} {}{copies}, {}",
            masked(p.text),
            form.describe()
        ));
    }
    let owner = hits
        .first()
        .map(|&(_, _, person, _)| personal[person].owner);
    let mut finding = cx.finding(
        owner,
        None,
        "nothing the integration prints holds a candidate's name or e-mail address (log ids instead)",
        format!(
            "a line on {stream} holds {}",
            described.into_iter().collect::<Vec<_>>().join("; ")
        ),
        [],
    )
    .finding;
    let mut redacted = String::with_capacity(text.len());
    let mut from = 0;
    for &(start, end, _, _) in hits {
        redacted.push_str(&text[from..start]);
        redacted.push_str("[redacted]");
        from = end;
    }
    redacted.push_str(&text[from..]);
    finding.exchanges = vec![Exchange {
        summary: format!("{stream}: {}", quote(&redacted)),
        ..Exchange::from_record(line)
    }];
    finding
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fold::run_one;
    use crate::judge::test_support::{CANDIDATE, clean, manifest, passes_on_clean};

    #[test]
    fn escapes_cover_json_and_unicode_forms() {
        assert_eq!(json_escaped("Zoë \"Z\" Ğürsoy"), "Zoë \\\"Z\\\" Ğürsoy");
        assert_eq!(unicode_escaped("Zoë"), "Zo\\u00eb");
        assert_eq!(
            unicode_escaped("a😀"),
            "a\\ud83d\\ude00",
            "astral: a surrogate pair"
        );
    }

    #[test]
    fn split_automata_find_what_one_would() {
        let people = ["abc", "bcd", "def", "Zoë Ğürsoy", "zoe@example.test", "cd"];
        let personal = || {
            people
                .iter()
                .map(|text| Personal {
                    text,
                    owner: "CAND",
                    owners: 1,
                })
                .collect::<Vec<_>>()
        };
        let one = Pii::new(personal(), 100).expect("builds");
        assert_eq!(one.automata.len(), 1);
        for per in 1..people.len() {
            let split = Pii::new(personal(), per).expect("builds");
            assert_eq!(split.automata.len(), people.len().div_ceil(per));
            for line in [
                "abcdef",
                "xxabcd bcdef",
                "ZOË ĞÜRSOY and zoë ğürsoy, ZOE@EXAMPLE.TEST",
                r#"{"n":"Zo\u00eb \u011e\u00fcrsoy"}"#,
                "nothing here",
            ] {
                assert_eq!(
                    split.hits(line),
                    one.hits(line),
                    "{per} per automaton: {line}"
                );
            }
        }
        let hits = one.hits("abcdef");
        let spans: Vec<(usize, usize)> = hits.iter().map(|h| (h.0, h.1)).collect();
        assert_eq!(
            spans,
            [(0, 3), (3, 6)],
            "leftmost, longest, then on after it"
        );
    }

    #[test]
    fn ids_only_output_passes() {
        passes_on_clean(check);
    }

    #[test]
    fn names_and_emails_are_found_in_every_form_and_masked() {
        let manifest = manifest();
        // (printed line, text the finding must contain, why)
        let rows = [
            (
                "processing Zoë Ğürsoy",
                "name Z…y (10 characters), as written",
                "plain text",
            ),
            ("name=zoë ğürsoy", "lower-cased", "lower-cased non-ASCII"),
            (
                r#"{"name":"Zo\u00eb \u011e\u00fcrsoy"}"#,
                "with \\u escapes",
                "a JSON logger escaping non-ASCII",
            ),
            (
                "{\"to\":\"ZOE.GURSOY@EXAMPLE.TEST\"}",
                "e-mail address z…t (23 characters), as written",
                "ASCII case ignored",
            ),
        ];
        for (printed, needle, why) in rows {
            let mut clean = clean();
            let seq = clean.log.line("stderr", printed);
            let run = (&manifest, &clean.plan, clean.log.records());
            let outcome = run_one(check, run.0, run.1, run.2);
            assert_eq!(outcome.findings.total(), 1, "{why}");
            let finding = &outcome.findings.kept()[0];
            assert!(
                finding
                    .seen
                    .starts_with("a line on stderr holds CAND_003_cl's"),
                "{why}: {}",
                finding.seen
            );
            assert!(finding.seen.contains(needle), "{why}: {}", finding.seen);
            assert_eq!(finding.candidate.as_deref(), Some(CANDIDATE), "{why}");
            assert_eq!(finding.exchanges.len(), 1);
            assert_eq!(finding.exchanges[0].seq, seq);
            let summary = &finding.exchanges[0].summary;
            assert!(summary.contains("[redacted]"), "{why}: {summary}");
            for leak in ["rsoy", "RSOY", "u00fcrsoy"] {
                assert!(!summary.contains(leak), "{why}: {summary}");
            }
        }
    }

    #[test]
    fn output_the_harness_cannot_see_is_a_skip() {
        let manifest = manifest();
        let clean = clean();
        let records: Vec<_> = clean
            .log
            .records()
            .iter()
            .filter(|r| r.kind != "integration.ready")
            .cloned()
            .collect();
        let run = (&manifest, &clean.plan, &records);
        assert!(run_one(check, run.0, run.1, run.2).skipped.is_some());
    }
}
