//! `privacy.no_pii_in_logs`: no candidate's name or e-mail address appears in
//! anything the integration printed.
//!
//! Each personal string is searched as written, lower-cased, JSON-escaped (`\"`,
//! `\\`) and with every non-ASCII character as a `\u00e9` escape (what a JSON logger
//! that escapes non-ASCII writes), ASCII case ignored. All the variants of all the
//! candidates go into Aho-Corasick automata, one per 32,768 personal strings (a name
//! and an e-mail address per candidate: one automaton up to 16,384 candidates, seven
//! at 100,000), so each line is scanned once per automaton. The automata are
//! searched on a thread of their own while the judge's pass reads on.
//! Findings quote the line with the personal data masked: a report must not spread
//! what the check protects.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc;

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
    match Pii::start(personal, STRINGS_PER_AUTOMATON) {
        Ok(pii) => Box::new(pii),
        Err(reason) => skipped(reason),
    }
}

impl Search {
    /// The search for `texts`, `per_automaton` personal strings to an automaton.
    fn new(texts: &[&str], per_automaton: usize) -> Result<Self, aho_corasick::BuildError> {
        // The person and form of each pattern, in four bytes and one: a run has
        // hundreds of thousands of patterns.
        let mut meaning: Vec<(u32, Form)> = Vec::new();
        let mut automata = Vec::new();
        let per_automaton = per_automaton.max(1);
        for (chunk, people) in texts.chunks(per_automaton).enumerate() {
            let first = meaning.len();
            let mut patterns: Vec<String> = Vec::new();
            for (i, text) in people.iter().enumerate() {
                let person = (chunk * per_automaton + i) as u32;
                for (pattern, form) in forms(text) {
                    patterns.push(pattern);
                    meaning.push((person, form));
                }
            }
            // One automaton finds the leftmost-longest matches itself; split ones
            // search overlapping, and those of the whole set are chosen from all of
            // their matches ([`Search::hits`]).
            let kind = if texts.len() > per_automaton {
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
        meaning.shrink_to_fit();
        Ok(Search { meaning, automata })
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

/// Every personal string's spellings, in automata, and what each pattern means.
struct Search {
    meaning: Vec<(u32, Form)>,
    /// Automata over consecutive runs of `meaning`, each with its first pattern's place.
    automata: Vec<(usize, AhoCorasick)>,
}

/// A personal string found in a line: where it starts and ends, whose it is (an
/// index into the fold's personal strings) and how it was written.
type Hit = (usize, usize, usize, Form);

impl Search {
    /// The personal strings in `text`, leftmost-longest and not overlapping, as one
    /// automaton of every pattern would find them: every automaton's matches,
    /// overlapping, then from the leftmost the longest, and on after its end.
    fn hits(&self, text: &str) -> Vec<Hit> {
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

/// A line the integration printed, with what a finding shows of its record.
struct Line {
    seq: u64,
    elapsed_ms: f64,
    actor: crate::observe::Actor,
    status: Option<u16>,
    stream: &'static str,
    /// Where its text is in its batch's.
    span: std::ops::Range<usize>,
}

/// Lines handed to the search thread at once, their texts in one buffer: two
/// allocations a batch, not one a line (a large run prints 400,000 lines).
#[derive(Default)]
struct Batch {
    text: String,
    lines: Vec<Line>,
}

/// A line that holds personal data: the line, its text and what it holds.
type Found = (Line, String, Vec<Hit>);

/// Lines sent to the search thread at a time, and batches that may wait for it: a
/// few hundred kilobytes held, however long the log.
const BATCH_LINES: usize = 256;
const BATCHES_WAITING: usize = 4;

/// The fold: the log's pass hands the integration's lines to a thread of their own,
/// which searches them while the pass goes on. At 100,000 candidates the search was
/// 40 % of the judge's work (400,000 lines, each searched by seven automata), and the
/// judge otherwise runs on one core.
struct Pii<'a> {
    personal: Vec<Personal<'a>>,
    batch: Batch,
    /// Closed once the thread is gone or the pass ended.
    to_search: Option<mpsc::SyncSender<Batch>>,
    /// The lines that hold personal data, in log order.
    found: mpsc::Receiver<Vec<Found>>,
    /// Batches the thread has searched, emptied, to be filled again.
    spent: mpsc::Receiver<Batch>,
    searcher: Option<std::thread::JoinHandle<()>>,
    outcome: Outcome,
}

impl<'a> Pii<'a> {
    /// Builds the search over `personal`'s strings and starts its thread. The
    /// automata are built here, before the pass: building them is the judge's peak,
    /// which the pass's first tables would only add to, and the memory building
    /// them takes is then handed back to the thread that makes those tables.
    fn start(mut personal: Vec<Personal<'a>>, per_automaton: usize) -> Result<Self, String> {
        personal.shrink_to_fit();
        let texts: Vec<&str> = personal.iter().map(|p| p.text).collect();
        let search = Search::new(&texts, per_automaton).map_err(|err| {
            format!("the personal data could not be compiled into a search: {err}")
        })?;
        drop(texts);
        let (to_search, batches) = mpsc::sync_channel::<Batch>(BATCHES_WAITING);
        let (send_found, found) = mpsc::channel();
        let (send_spent, spent) = mpsc::channel();
        let searcher = std::thread::Builder::new()
            .name("judge-pii".into())
            .spawn(move || {
                for mut batch in batches {
                    let text = &batch.text;
                    let found: Vec<Found> = batch
                        .lines
                        .drain(..)
                        .filter_map(|line| {
                            let text = &text[line.span.clone()];
                            let hits = search.hits(text);
                            (!hits.is_empty()).then(|| (line, text.to_owned(), hits))
                        })
                        .collect();
                    if !found.is_empty() && send_found.send(found).is_err() {
                        break;
                    }
                    // Back to the pass to fill again: its buffers are the pass's to free.
                    batch.text.clear();
                    let _ = send_spent.send(batch);
                }
            })
            .map_err(|err| format!("the personal-data search could not start a thread: {err}"))?;
        Ok(Pii {
            personal,
            batch: Batch::default(),
            to_search: Some(to_search),
            found,
            spent,
            searcher: Some(searcher),
            outcome: Outcome::default(),
        })
    }

    /// Hands the lines gathered so far to the search thread.
    fn send(&mut self) {
        if self.batch.lines.is_empty() {
            return;
        }
        let next = self.spent.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batch, next);
        if let Some(to_search) = &self.to_search
            && to_search.send(batch).is_err()
        {
            // The thread is gone (it panicked): `finish` says so.
            self.to_search = None;
        }
    }

    /// Turns what the search thread found into findings; `wait` for all of it.
    fn take_found(&mut self, cx: &Context<'_>, wait: bool) {
        loop {
            let found = if wait {
                self.found.recv().ok()
            } else {
                self.found.try_recv().ok()
            };
            let Some(found) = found else { return };
            let personal = &self.personal;
            for (line, text, hits) in found {
                self.outcome
                    .findings
                    .add(|| finding(cx, &line, &text, &hits, personal));
            }
        }
    }
}

impl Fold for Pii<'_> {
    fn record(&mut self, cx: &Context<'_>, line: &Record) {
        let stream = match line.kind.as_str() {
            "integration.stdout" => "stdout",
            "integration.stderr" => "stderr",
            _ => return,
        };
        let batch = &mut self.batch;
        let start = batch.text.len();
        batch
            .text
            .push_str(detail_text(line, "line").unwrap_or_default());
        batch.lines.push(Line {
            seq: line.seq,
            elapsed_ms: line.elapsed_ms,
            actor: line.actor,
            status: line.status,
            stream,
            span: start..batch.text.len(),
        });
        if batch.lines.len() == BATCH_LINES {
            self.send();
            self.take_found(cx, false);
        }
    }

    fn finish(mut self: Box<Self>, cx: &Context<'_>) -> Outcome {
        self.send();
        // No more lines: the thread searches what it has, then ends.
        self.to_search = None;
        self.take_found(cx, true);
        let ended = self.searcher.take().map(std::thread::JoinHandle::join);
        if let Some(Err(_)) = ended {
            return Outcome::skip("the personal-data search thread panicked");
        }
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
    line: &Line,
    text: &str,
    hits: &[Hit],
    personal: &[Personal<'_>],
) -> Finding {
    let stream = line.stream;
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
        seq: line.seq,
        elapsed_ms: line.elapsed_ms,
        actor: line.actor,
        kind: format!("integration.{stream}"),
        status: line.status,
        summary: format!("{stream}: {}", quote(&redacted)),
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
        let one = Search::new(&people, 100).expect("builds");
        assert_eq!(one.automata.len(), 1);
        for per in 1..people.len() {
            let split = Search::new(&people, per).expect("builds");
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
    fn lines_past_many_batches_are_all_searched_in_log_order() {
        let manifest = manifest();
        let mut clean = clean();
        let mut leaks = Vec::new();
        for i in 0..BATCH_LINES * (BATCHES_WAITING + 3) + 7 {
            if i % 300 == 299 {
                leaks.push(
                    clean
                        .log
                        .line("stdout", &format!("{i}: mailing Zoë Ğürsoy")),
                );
            } else {
                clean
                    .log
                    .line("stdout", &format!("{i}: evt_{i:06} applied"));
            }
        }
        let seq = clean
            .log
            .line("stderr", "last line, alone in its batch: zoë ğürsoy");
        leaks.push(seq);
        let outcome = run_one(check, &manifest, &clean.plan, clean.log.records());
        assert_eq!(outcome.findings.total(), leaks.len());
        let cited: Vec<u64> = outcome
            .findings
            .kept()
            .iter()
            .map(|f| f.exchanges[0].seq)
            .collect();
        assert_eq!(cited, leaks[..cited.len()], "kept in log order");
        assert!(!cited.is_empty());
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
