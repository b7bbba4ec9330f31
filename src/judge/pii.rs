//! `privacy.no_pii_in_logs`: no candidate's name or e-mail address appears in
//! anything the integration printed.
//!
//! Each personal string is searched as written, lower-cased, JSON-escaped (`\"`,
//! `\\`) and with every non-ASCII character as a `\u00e9` escape (what a JSON logger
//! that escapes non-ASCII writes), ASCII case ignored. All the variants of all the
//! candidates go into Aho-Corasick automata, one per 32,768 personal strings (a name
//! and an e-mail address per candidate: one automaton up to 16,384 candidates, seven
//! at 100,000), so each line is scanned once per automaton. During the judge's pass
//! the lines are only set aside, in a temporary file; the automata are built and
//! searched when the pass is over and the checks before this one have let their
//! tables go, on up to four cores (the search is 40 % of the judge's work at 100,000).
//! Findings quote the line with the personal data masked: a report must not spread
//! what the check protects.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use aho_corasick::{AhoCorasick, MatchKind};

use super::exchange::quote;
use super::fold::{Context, Fold, skipped};
use super::run::{Outcome, detail_text};
use super::{Exchange, FINDINGS_KEPT, Finding};
use crate::observe::{Actor, Record};

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
    if !cx
        .plan
        .plan
        .candidates
        .iter()
        .any(|c| c.pii.iter().any(|text| searched(text)))
    {
        return skipped("no planned candidate has personal data to look for");
    }
    Box::new(Pii {
        spill: Spill::new(cx.folder),
        failed: None,
    })
}

/// Whether a personal string is long enough to be searched for.
fn searched(text: &str) -> bool {
    text.trim().chars().count() >= MIN_CHARS
}

/// Every personal string of the plan once, with its first owner and how many
/// candidates (scenario copies) have it.
fn personal_strings<'a>(cx: &Context<'a>) -> Vec<Personal<'a>> {
    let mut personal: Vec<Personal<'a>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for candidate in &cx.plan.plan.candidates {
        for text in &candidate.pii {
            if !searched(text) {
                continue;
            }
            let text = text.trim();
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
    personal.shrink_to_fit();
    personal
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
/// searched once per automaton: 32,768 names and e-mail addresses take about 28 MB
/// to build, 8 MB built (65,536: 48 and 14 MB). At 100,000 candidates, when the
/// automata were built before the judge's pass, that took 15-20 MB off the peak and
/// added 2 s to the judge's 9 s (six automata, not four).
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
    actor: Actor,
    status: Option<u16>,
    stream: &'static str,
    /// Where its text is in its batch's.
    span: std::ops::Range<usize>,
}

/// Lines searched at once, their texts in one buffer: two allocations a batch, not
/// one a line (a large run prints 400,000 lines).
#[derive(Default)]
struct Batch {
    text: String,
    lines: Vec<Line>,
}

/// A line that holds personal data: the line, its text and what it holds.
type Found = (Line, String, Vec<Hit>);

/// Lines a search thread takes from the spill at a time.
const BATCH_LINES: usize = 256;

/// The actors in the order [`Spill`] numbers them.
const ACTORS: [Actor; 6] = [
    Actor::Harness,
    Actor::Sender,
    Actor::Ats,
    Actor::Vendor,
    Actor::Notify,
    Actor::Integration,
];

/// The integration's lines, set aside in an unnamed temporary file while the pass
/// reads on, for the search after it. The search's automata take about as much
/// memory as every other check's tables together (some 50 MB at 100,000 candidates),
/// so the search waits until the checks before it have finished and let theirs go.
///
/// The file is made in the log's folder (on the same disk as the log, which is some
/// six times larger), else in `$TMPDIR`; where neither can hold one, the lines are
/// kept in memory. A line is a fixed head (sequence number, elapsed milliseconds,
/// actor, status, stream, text length; little-endian) and then its text.
struct Spill {
    store: Store,
}

/// Where a [`Spill`] keeps its lines.
enum Store {
    File(BufWriter<File>),
    Memory(Vec<u8>),
}

/// The size of a spilled line's head.
const HEAD: usize = 8 + 8 + 1 + 1 + 2 + 1 + 4;

impl Spill {
    fn new(folder: Option<&Path>) -> Self {
        let file = folder
            .and_then(|folder| tempfile::tempfile_in(folder).ok())
            .or_else(|| tempfile::tempfile().ok());
        Spill {
            store: match file {
                Some(file) => Store::File(BufWriter::with_capacity(1 << 16, file)),
                None => Store::Memory(Vec::new()),
            },
        }
    }

    fn push(&mut self, record: &Record, stream: &'static str, text: &str) -> io::Result<()> {
        let mut head = [0u8; HEAD];
        head[0..8].copy_from_slice(&record.seq.to_le_bytes());
        head[8..16].copy_from_slice(&record.elapsed_ms.to_le_bytes());
        head[16] = ACTORS.iter().position(|a| *a == record.actor).unwrap_or(0) as u8;
        head[17] = u8::from(record.status.is_some());
        head[18..20].copy_from_slice(&record.status.unwrap_or(0).to_le_bytes());
        head[20] = u8::from(stream == "stderr");
        let len = u32::try_from(text.len()).map_err(io::Error::other)?;
        head[21..25].copy_from_slice(&len.to_le_bytes());
        let out: &mut dyn Write = match &mut self.store {
            Store::File(file) => file,
            Store::Memory(bytes) => bytes,
        };
        out.write_all(&head)?;
        out.write_all(text.as_bytes())
    }

    /// Builds the search over `personal`'s strings and runs it over the lines written.
    fn search(self, personal: &[Personal<'_>]) -> Result<Spotted, String> {
        let spilled = self.into_reader().map_err(|err| unreadable(&err))?;
        let texts: Vec<&str> = personal.iter().map(|p| p.text).collect();
        let search = Search::new(&texts, STRINGS_PER_AUTOMATON).map_err(|err| {
            format!("the personal data could not be compiled into a search: {err}")
        })?;
        drop(texts);
        search_spilled(spilled, &search, searchers())
    }

    /// The lines written, to be read back from the first.
    fn into_reader(self) -> io::Result<Unspill> {
        let input: Box<dyn BufRead + Send> = match self.store {
            Store::File(out) => {
                let mut file = out.into_inner().map_err(|err| err.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                Box::new(BufReader::with_capacity(1 << 16, file))
            }
            Store::Memory(bytes) => Box::new(io::Cursor::new(bytes)),
        };
        Ok(Unspill { input })
    }
}

/// A [`Spill`] read back.
struct Unspill {
    input: Box<dyn BufRead + Send>,
}

impl Unspill {
    /// Fills `batch` with up to [`BATCH_LINES`] lines; false once none are left.
    fn fill(&mut self, batch: &mut Batch) -> io::Result<bool> {
        batch.text.clear();
        batch.lines.clear();
        let mut head = [0u8; HEAD];
        let mut bytes = Vec::new();
        while batch.lines.len() < BATCH_LINES {
            match self.input.read_exact(&mut head) {
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => break,
                other => other?,
            }
            let word =
                |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(head[21..25].try_into().unwrap_or_default()) as usize;
            bytes.resize(len, 0);
            self.input.read_exact(&mut bytes)?;
            let start = batch.text.len();
            // Written from a `&str`, read back whole: it is UTF-8.
            batch.text.push_str(&String::from_utf8_lossy(&bytes));
            batch.lines.push(Line {
                seq: word(0),
                elapsed_ms: f64::from_bits(word(8)),
                actor: ACTORS[usize::from(head[16]).min(ACTORS.len() - 1)],
                status: (head[17] == 1).then(|| u16::from_le_bytes([head[18], head[19]])),
                stream: if head[20] == 1 { "stderr" } else { "stdout" },
                span: start..batch.text.len(),
            });
        }
        Ok(!batch.lines.is_empty())
    }
}

/// How many threads search the spilled lines: the machine's cores, up to four. The
/// search comes after the pass, when nothing else runs.
fn searchers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// What the search found: the first lines that hold personal data, in log order (up
/// to [`FINDINGS_KEPT`], the findings a report keeps), and how many more there are.
struct Spotted {
    first: Vec<Found>,
    more: usize,
}

/// Searches every spilled line with `search`, on `threads` threads that each take the
/// next batch.
///
/// Each thread keeps its first [`FINDINGS_KEPT`] lines with personal data and only
/// counts the rest: an integration that prints a name on every line must not cost the
/// judge a copy of its output. The log's first lines with personal data are among
/// those kept, as a thread takes batches in log order.
fn search_spilled(spilled: Unspill, search: &Search, threads: usize) -> Result<Spotted, String> {
    // The reader, taken away at the first read error so no thread reads on from the
    // middle of a line, and the number of the next batch it gives.
    let source = Mutex::new((Some(spilled), 0usize));
    let work = || -> io::Result<Part> {
        let mut batch = Batch::default();
        let mut kept = Vec::new();
        let mut more = 0;
        loop {
            let number = {
                let mut source = source.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(reader) = source.0.as_mut() else {
                    return Err(io::Error::other("another search thread failed to read"));
                };
                match reader.fill(&mut batch) {
                    Ok(true) => {}
                    Ok(false) => return Ok((kept, more)),
                    Err(err) => {
                        source.0 = None;
                        return Err(err);
                    }
                }
                source.1 += 1;
                source.1
            };
            let text = &batch.text;
            for line in batch.lines.drain(..) {
                let text = &text[line.span.clone()];
                let hits = search.hits(text);
                if hits.is_empty() {
                    continue;
                }
                if kept.len() < FINDINGS_KEPT {
                    kept.push((number, (line, text.to_owned(), hits)));
                } else {
                    more += 1;
                }
            }
        }
    };
    let parts = std::thread::scope(|scope| {
        let spawned: Vec<_> = (0..threads.max(1))
            .map(|_| {
                std::thread::Builder::new()
                    .name("judge-pii".into())
                    .spawn_scoped(scope, work)
            })
            .collect();
        // Every thread is joined before any failure is reported.
        let joined: Vec<Result<Part, String>> = spawned
            .into_iter()
            .map(|thread| match thread {
                Err(err) => Err(format!(
                    "the personal-data search could not start a thread: {err}"
                )),
                Ok(thread) => match thread.join() {
                    Err(_) => Err("the personal-data search thread panicked".to_owned()),
                    Ok(Err(err)) => Err(unreadable(&err)),
                    Ok(Ok(part)) => Ok(part),
                },
            })
            .collect();
        joined.into_iter().collect::<Result<Vec<Part>, String>>()
    })?;
    Ok(merge(parts))
}

/// Why the lines set aside could not be searched.
fn unreadable(err: &io::Error) -> String {
    format!(
        "the integration's lines set aside for the personal-data search could not be read \
         back: {err}"
    )
}

/// One search thread's part: the lines with personal data it kept, each with the
/// number of its batch, and how many more it only counted.
type Part = (Vec<(usize, Found)>, usize);

/// The threads' parts as one: the kept lines in log order (by batch, then in their
/// batch's order), the first [`FINDINGS_KEPT`] of them, and the rest counted.
fn merge(parts: Vec<Part>) -> Spotted {
    let mut more = 0;
    let mut numbered = Vec::new();
    for (kept, uncounted) in parts {
        numbered.extend(kept);
        more += uncounted;
    }
    // Stable: a batch's lines keep their order.
    numbered.sort_by_key(|(number, _)| *number);
    let mut first: Vec<Found> = numbered.into_iter().map(|(_, found)| found).collect();
    if first.len() > FINDINGS_KEPT {
        more += first.len() - FINDINGS_KEPT;
        first.truncate(FINDINGS_KEPT);
    }
    Spotted { first, more }
}

/// The fold: the pass sets the integration's lines aside ([`Spill`]); `finish`
/// builds the search and runs it over them.
struct Pii {
    spill: Spill,
    /// The first failure to set a line aside.
    failed: Option<io::Error>,
}

impl Fold for Pii {
    fn record(&mut self, _: &Context<'_>, line: &Record) {
        let stream = match line.kind.as_str() {
            "integration.stdout" => "stdout",
            "integration.stderr" => "stderr",
            _ => return,
        };
        if self.failed.is_some() {
            return;
        }
        let text = detail_text(line, "line").unwrap_or_default();
        if let Err(err) = self.spill.push(line, stream, text) {
            self.failed = Some(err);
        }
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        if let Some(err) = self.failed {
            // Fails closed: a privacy check that could not look must not pass.
            let mut outcome = Outcome::default();
            outcome.findings.add(|| {
                cx.finding(
                    None,
                    None,
                    "every line the integration printed is searched for personal data",
                    format!(
                        "the lines could not be set aside for the search (a temporary file \
                         in the log's folder or in $TMPDIR): {err}; free some room there and \
                         run the gate again"
                    ),
                    [],
                )
            });
            return outcome;
        }
        if !cx.seen.output_visible {
            return Outcome::skip(
                "the harness did not start the integration, so what it printed is not in the log",
            );
        }
        let personal = personal_strings(cx);
        let spotted = match self.spill.search(&personal) {
            Ok(spotted) => spotted,
            Err(reason) => return Outcome::skip(reason),
        };
        let mut outcome = Outcome::default();
        for (line, text, hits) in spotted.first {
            outcome
                .findings
                .add(|| finding(cx, &line, &text, &hits, &personal));
        }
        for _ in 0..spotted.more {
            outcome.findings.count();
        }
        for candidate in &cx.plan.plan.candidates {
            outcome.judged(Some(candidate.scenario));
        }
        outcome
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
        for i in 0..BATCH_LINES * 7 + 7 {
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

    /// A record of the integration's output, as the harness logs it.
    fn printed(seq: u64, kind: &str, text: &str, status: Option<u16>) -> Record {
        Record {
            run_id: "run".into(),
            seq,
            at: "2026-01-01T00:00:00.000000Z".into(),
            elapsed_ms: seq as f64 / 8.0,
            actor: ACTORS[seq as usize % ACTORS.len()],
            kind: kind.into(),
            candidate: None,
            correlation_id: None,
            event_id: None,
            idempotency_key: None,
            status,
            latency_ms: None,
            detail: serde_json::json!({ "line": text }),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn spilled_lines_read_back_as_written_a_batch_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let on_disk = Spill::new(Some(dir.path()));
        assert!(
            matches!(on_disk.store, Store::File(_)),
            "a file in the folder"
        );
        spilled_lines_round_trip(on_disk);
        spilled_lines_round_trip(Spill {
            store: Store::Memory(Vec::new()),
        });
    }

    fn spilled_lines_round_trip(mut spill: Spill) {
        let texts = ["", "plain", "Zoë Ğürsoy 😀", "tab\there"];
        let count = BATCH_LINES + 3;
        for seq in 0..count as u64 {
            let (kind, stream) = if seq.is_multiple_of(3) {
                ("integration.stderr", "stderr")
            } else {
                ("integration.stdout", "stdout")
            };
            let status = seq.is_multiple_of(2).then_some(200 + seq as u16);
            let text = texts[seq as usize % texts.len()];
            spill
                .push(&printed(seq, kind, text, status), stream, text)
                .expect("written");
        }
        let mut spilled = spill.into_reader().expect("read back");
        let mut batch = Batch::default();
        let mut seen = 0u64;
        let mut sizes = Vec::new();
        while spilled.fill(&mut batch).expect("reads") {
            sizes.push(batch.lines.len());
            for line in &batch.lines {
                let seq = seen;
                assert_eq!(line.seq, seq);
                assert_eq!(line.elapsed_ms, seq as f64 / 8.0);
                assert_eq!(line.actor, ACTORS[seq as usize % ACTORS.len()]);
                assert_eq!(
                    line.status,
                    seq.is_multiple_of(2).then_some(200 + seq as u16)
                );
                let stream = if seq.is_multiple_of(3) {
                    "stderr"
                } else {
                    "stdout"
                };
                assert_eq!(line.stream, stream);
                assert_eq!(
                    &batch.text[line.span.clone()],
                    texts[seq as usize % texts.len()]
                );
                seen += 1;
            }
        }
        assert_eq!(sizes, [BATCH_LINES, 3], "full batches, then the rest");
        assert!(
            !spilled.fill(&mut batch).expect("reads"),
            "and then nothing"
        );
    }

    #[test]
    fn any_number_of_search_threads_keeps_the_same_first_lines_and_counts_the_rest() {
        let search = Search::new(&["Zoë Ğürsoy", "zoe@example.test"], 8).expect("builds");
        let spilled = |lines: usize| {
            let mut spill = Spill::new(None);
            for seq in 0..lines as u64 {
                let text = match seq % 97 {
                    5 => format!("{seq}: to ZOE@example.test"),
                    60 => format!("{seq}: zoë ğürsoy"),
                    _ => format!("{seq}: evt_{seq:06} applied"),
                };
                let record = printed(seq, "integration.stdout", &text, None);
                spill.push(&record, "stdout", &text).expect("written");
            }
            spill.into_reader().expect("read back")
        };
        let seqs = |spotted: Spotted| -> (Vec<u64>, usize) {
            let seqs = spotted.first.iter().map(|f| f.0.seq).collect();
            (seqs, spotted.more)
        };
        let lines = BATCH_LINES * 9 + 11;
        let one = seqs(search_spilled(spilled(lines), &search, 1).expect("searched"));
        let leaks: Vec<u64> = (0..lines as u64)
            .filter(|seq| [5, 60].contains(&(seq % 97)))
            .collect();
        assert!(
            leaks.len() > FINDINGS_KEPT,
            "more leaks than a report keeps"
        );
        let expected = (leaks[..FINDINGS_KEPT].to_vec(), leaks.len() - FINDINGS_KEPT);
        assert_eq!(one, expected, "the first ones held, the rest counted");
        for threads in [2, 3, 8] {
            let many = search_spilled(spilled(lines), &search, threads).expect("searched");
            assert_eq!(seqs(many), expected, "{threads} threads");
        }
    }

    #[test]
    fn threads_parts_merge_into_log_order_keeping_the_first_and_counting_the_rest() {
        let found = |seq: u64| -> Found {
            let line = Line {
                seq,
                elapsed_ms: 0.0,
                actor: Actor::Integration,
                status: None,
                stream: "stdout",
                span: 0..0,
            };
            (line, String::new(), Vec::new())
        };
        // Batch b holds lines 100 b + i. Thread A took the even batches, thread B the
        // odd ones, each in order, and they finished in any order.
        let part = |batches: &[usize], more: usize| -> Part {
            let kept = batches
                .iter()
                .flat_map(|&b| (0..4).map(move |i| (b, found(100 * b as u64 + i))))
                .collect();
            (kept, more)
        };
        let a = part(&[2, 4, 6, 8], 5);
        let b = part(&[1, 3, 5, 7], 2);
        let spotted = merge(vec![a, b]);
        let seqs: Vec<u64> = spotted.first.iter().map(|f| f.0.seq).collect();
        let expected: Vec<u64> = (1..=8u64)
            .flat_map(|b| (0..4).map(move |i| 100 * b + i))
            .take(FINDINGS_KEPT)
            .collect();
        assert_eq!(seqs, expected, "by batch, then within the batch");
        assert_eq!(
            spotted.more,
            32 - FINDINGS_KEPT + 5 + 2,
            "kept past the first ones, and what each thread only counted"
        );
    }

    /// The check with a spill that cannot be written: a file opened read-only.
    fn unwritable<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
        let path = tempfile::NamedTempFile::new().expect("a temporary file");
        let file = File::open(path.path()).expect("opens read-only");
        Box::new(Pii {
            spill: Spill {
                store: Store::File(BufWriter::with_capacity(16, file)),
            },
            failed: None,
        })
    }

    #[test]
    fn lines_that_cannot_be_set_aside_fail_the_check_rather_than_skip_it() {
        let manifest = manifest();
        let mut clean = clean();
        clean
            .log
            .line("stdout", "a line longer than the spill's buffer");
        let outcome = run_one(unwritable, &manifest, &clean.plan, clean.log.records());
        assert!(outcome.skipped.is_none(), "{:?}", outcome.skipped);
        assert_eq!(outcome.findings.total(), 1);
        let seen = &outcome.findings.kept()[0].seen;
        assert!(seen.contains("could not be set aside"), "{seen}");
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
