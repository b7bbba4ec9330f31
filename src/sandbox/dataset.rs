//! Generated sandbox datasets: the YAML file `stagegate sandbox generate` writes for
//! large runs, and its loader.
//!
//! A manifest lists a handful of candidates by hand; a load run needs thousands, so a
//! dataset file carries them, each enriched exactly as [`super::build`] enriches a
//! manifest candidate (the same person and requisition streams), with a profile drawn
//! to match a risk mix. The format, version `"1"`:
//!
//! ```yaml
//! version: "1"
//! seed: 7
//! generated_by: "stagegate 0.1.0"
//! change_id: "rls-2026-05-18-il-contracts"   # whose canary scope placed the requisitions
//! risk_mix: {low: 70, medium: 20, high: 10}  # percentages asked for
//! count: 2                                   # the loader checks it, so truncation shows
//! candidates:
//!   - ats_candidate_id: "CAND_000001"
//!     profile: "low-risk-fast-path"
//!     risk_tier: "low"
//!     name: "Zoë Ğürsoy"
//!     email: "zoe.gursoy@example.com"
//!     phone: "(555) 010-0199"
//!     requisition: {id: "REQ-04211", tags: ["canary-il"], location: "IL"}
//! ```
//!
//! Ids are `CAND_` and the 1-based index, six digits at least. Each candidate's tier
//! is drawn on its own from the mix, so the counts follow the mix closely rather than
//! exactly. The writer streams: the header, then one candidate at a time through a
//! buffer, so memory holds only the set of e-mail addresses issued (for uniqueness).
//! It writes every string as a double-quoted scalar with its own escaping rather than
//! through a YAML serializer: names with quotes, colons or odd Unicode stay exact, and
//! 100,000 candidates take well under a second. The loader ([`read`]) streams too:
//! it hands over one candidate at a time, so `stagegate serve --dataset` never holds
//! the file, or a parse tree of it, in memory. [`check`] then holds each candidate to
//! the manifest it is served with, as the manifest loader holds `sandbox_dataset`.

mod read;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rand::RngExt;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};

use super::model::{Requisition, RiskTier};
use super::people::{PersonGenerator, Stream};
use super::profiles::{self, ProfileError};
use super::{SandboxError, derive_rng, scope};
use crate::contract::ids::{IdMint, IdRules, path_safe};
use crate::manifest::{ExpectedEvent, Manifest};
use crate::suggest::did_you_mean;
use profiles::{ProfileCatalog, UsableProfile};
pub use read::{ParseError, Place};

/// The format version this stagegate writes and reads.
pub const FORMAT_VERSION: &str = "1";

/// How a mix should be written, appended to every risk-mix error.
const MIX_HELP: &str = "write it like low=70,medium=20,high=10: whole percentages adding up to 100 (a tier left out gets 0)";

/// Percentages of low, medium and high risk candidates, adding up to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskMix {
    /// Percentage of low-risk candidates.
    pub low: u8,
    /// Percentage of medium-risk candidates.
    pub medium: u8,
    /// Percentage of high-risk candidates.
    pub high: u8,
}

impl Default for RiskMix {
    fn default() -> Self {
        RiskMix {
            low: 70,
            medium: 20,
            high: 10,
        }
    }
}

impl fmt::Display for RiskMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "low={},medium={},high={}",
            self.low, self.medium, self.high
        )
    }
}

/// Why a `--risk-mix` value is not a mix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskMixError {
    /// Nothing was given.
    #[error("the mix is empty; {MIX_HELP}")]
    Empty,
    /// An item is not `tier=percent`.
    #[error("`{item}` is not `tier=percent`; {MIX_HELP}")]
    NotAPair {
        /// The item as written.
        item: String,
    },
    /// The tier is not low, medium or high.
    #[error("`{tier}` is not a risk tier{hint}; the tiers are low, medium and high")]
    UnknownTier {
        /// The tier as written.
        tier: String,
        /// ` (did you mean `…`?)`, or nothing.
        hint: String,
    },
    /// The percentage is not a whole number from 0 to 100.
    #[error("`{value}` is not a whole percentage for `{tier}`; {MIX_HELP}")]
    BadPercent {
        /// The tier.
        tier: String,
        /// The percentage as written.
        value: String,
    },
    /// A tier appears twice.
    #[error("`{tier}` is given twice; {MIX_HELP}")]
    Duplicate {
        /// The tier.
        tier: String,
    },
    /// The percentages do not add up to 100.
    #[error("the percentages add up to {sum}, not 100; {MIX_HELP}")]
    Sum {
        /// What they add up to.
        sum: u32,
    },
}

impl FromStr for RiskMix {
    type Err = RiskMixError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err(RiskMixError::Empty);
        }
        let mut parts: [Option<u8>; 3] = [None; 3];
        for item in text.split(',').map(str::trim) {
            let Some((tier, value)) = item.split_once('=') else {
                return Err(RiskMixError::NotAPair {
                    item: item.to_owned(),
                });
            };
            let (tier, value) = (tier.trim(), value.trim());
            let slot = match tier.to_ascii_lowercase().as_str() {
                "low" => 0,
                "medium" => 1,
                "high" => 2,
                _ => {
                    let hint = did_you_mean(tier, ["low", "medium", "high"])
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(RiskMixError::UnknownTier {
                        tier: tier.to_owned(),
                        hint,
                    });
                }
            };
            let percent = value
                .strip_suffix('%')
                .unwrap_or(value)
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| RiskMixError::BadPercent {
                    tier: tier.to_owned(),
                    value: value.to_owned(),
                })?;
            if parts[slot].replace(percent).is_some() {
                return Err(RiskMixError::Duplicate {
                    tier: tier.to_owned(),
                });
            }
        }
        let [low, medium, high] = parts.map(|p| p.unwrap_or(0));
        let sum = u32::from(low) + u32::from(medium) + u32::from(high);
        if sum != 100 {
            return Err(RiskMixError::Sum { sum });
        }
        Ok(RiskMix { low, medium, high })
    }
}

impl RiskMix {
    /// The tier for a roll in `0..100`.
    pub fn tier(&self, roll: u8) -> RiskTier {
        if roll < self.low {
            RiskTier::Low
        } else if u16::from(roll) < u16::from(self.low) + u16::from(self.medium) {
            RiskTier::Medium
        } else {
            RiskTier::High
        }
    }
}

/// One candidate of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetCandidate {
    /// The ATS id.
    pub ats_candidate_id: String,
    /// The risk profile.
    pub profile: String,
    /// The profile's tier.
    pub risk_tier: RiskTier,
    /// Full name.
    pub name: String,
    /// Unique e-mail address.
    pub email: String,
    /// Phone number.
    pub phone: String,
    /// The requisition, inside the canary scope.
    pub requisition: Requisition,
}

/// A dataset file's header: everything but its candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetHeader {
    /// The format version, `"1"`.
    pub version: String,
    /// The seed it was generated from.
    pub seed: u64,
    /// The stagegate that wrote it.
    pub generated_by: String,
    /// The change whose canary scope placed the requisitions.
    pub change_id: String,
    /// The mix asked for.
    pub risk_mix: RiskMix,
    /// How many candidates follow.
    pub count: u64,
}

/// A dataset file, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// The format version, `"1"`.
    pub version: String,
    /// The seed it was generated from.
    pub seed: u64,
    /// The stagegate that wrote it.
    pub generated_by: String,
    /// The change whose canary scope placed the requisitions.
    pub change_id: String,
    /// The mix asked for.
    pub risk_mix: RiskMix,
    /// How many candidates follow.
    pub count: u64,
    /// The candidates.
    pub candidates: Vec<DatasetCandidate>,
}

/// Why a dataset could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Reading or writing failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// The file is not a dataset.
    #[error("{} is not a sandbox dataset", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        #[source]
        source: ParseError,
    },
    /// The file is of another format version.
    #[error("{} is dataset format \"{found}\"; this stagegate reads \"{FORMAT_VERSION}\"", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it says.
        found: String,
    },
    /// The header's count disagrees with the candidates (a truncated file, usually).
    #[error("{} says {expected} candidates but holds {found}; it may be truncated", path.display())]
    Count {
        /// The file.
        path: PathBuf,
        /// The header's count.
        expected: u64,
        /// The candidates found.
        found: usize,
    },
    /// No id the contracts' rules accept is left for a candidate.
    #[error("cannot make an id for candidate {index} of the dataset")]
    IdRule {
        /// The 0-based index of the candidate.
        index: u64,
        /// Which rules ran out.
        #[source]
        source: crate::contract::ids::MintError,
    },
    /// The mix asks for a tier no profile of the manifest has (never with the catalog's
    /// derived profiles, unless the manifest has no contract).
    #[error("no profile of this manifest has the `{tier}` tier the risk mix asks for")]
    NoProfile {
        /// The tier.
        tier: &'static str,
    },
    /// The canary scope leaves no room for a requisition.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Candidates of a loaded dataset cannot be served under the manifest.
    #[error("{} cannot be served with this manifest: {problems}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem, in file order.
        problems: DatasetProblems,
    },
}

/// Every problem [`check`] found in a dataset, in file order.
#[derive(Debug)]
pub struct DatasetProblems(pub Vec<DatasetProblem>);

impl fmt::Display for DatasetProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hand-edited dataset can break thousands of rows; the first few tell the story.
        const SHOWN: usize = 5;
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems:", many.len())?;
                for problem in many.iter().take(SHOWN) {
                    write!(f, "\n  {problem}")?;
                }
                if many.len() > SHOWN {
                    write!(f, "\n  and {} more", many.len() - SHOWN)?;
                }
                Ok(())
            }
        }
    }
}

/// One candidate's problem, placed by its key path.
#[derive(Debug, thiserror::Error)]
#[error("candidates[{index}] (`{id}`): {kind}")]
pub struct DatasetProblem {
    /// The candidate's 0-based position in `candidates`.
    pub index: usize,
    /// Its id as written.
    pub id: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What can be wrong with one dataset candidate.
#[derive(Debug, thiserror::Error)]
pub enum ProblemKind {
    /// The id is empty or blank.
    #[error("the id is empty")]
    EmptyId,
    /// The id cannot be a path segment of `/v1/candidates/{id}`.
    #[error("the id holds `{0}`, which cannot appear in `/v1/candidates/{{id}}`")]
    UnsafeId(char),
    /// Another candidate has the same id.
    #[error("the id repeats candidates[{first}]; candidate ids are unique")]
    DuplicateId {
        /// Where the id first appears.
        first: usize,
    },
    /// The id breaks a contract's rule on the candidate id.
    #[error("the id breaks {0}, so every event of this candidate would fail it")]
    IdRule(crate::contract::ids::IdViolation),
    /// No profile has this name.
    #[error("unknown profile `{profile}`{hint}; the known profiles are {known}")]
    UnknownProfile {
        /// The name as written.
        profile: String,
        /// ` (did you mean `…`?)`, or nothing.
        hint: String,
        /// Every profile name, comma-separated.
        known: String,
    },
    /// The profile's steps name contracts or values the manifest does not have.
    #[error(
        "profile `{profile}` cannot be expressed against this manifest's contracts ({problem}); generate the dataset with `--manifest` naming this manifest"
    )]
    Unexpressible {
        /// The profile.
        profile: &'static str,
        /// The step that does not resolve.
        problem: profiles::EntryError,
    },
    /// The risk tier is not the profile's.
    #[error("risk_tier is `{tier}` but profile `{profile}` is `{expected}`")]
    TierMismatch {
        /// The profile.
        profile: String,
        /// The tier as written.
        tier: &'static str,
        /// The profile's tier.
        expected: &'static str,
    },
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateOptions {
    /// How many candidates.
    pub count: u64,
    /// The seed.
    pub seed: u64,
    /// The risk mix.
    pub mix: RiskMix,
}

/// What was generated: the count of each tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Low-risk candidates.
    pub low: u64,
    /// Medium-risk candidates.
    pub medium: u64,
    /// High-risk candidates.
    pub high: u64,
}

impl GenerateSummary {
    /// Every candidate.
    pub fn total(&self) -> u64 {
        self.low + self.medium + self.high
    }
}

/// Generates dataset candidates one at a time, in id order.
#[derive(Debug)]
pub struct Generator<'m> {
    manifest: &'m Manifest,
    options: GenerateOptions,
    people: PersonGenerator,
    catalog: ProfileCatalog,
    rules: IdRules,
    /// Every id issued, so a sampled id never repeats (a few MB at 100,000).
    issued: std::collections::HashSet<String>,
    next: u64,
}

impl<'m> Generator<'m> {
    /// Checks that the options fit the manifest, then prepares generation.
    pub fn new(manifest: &'m Manifest, options: GenerateOptions) -> Result<Self, DatasetError> {
        // Fail before writing anything if the scope cannot hold a requisition.
        scope::inside(
            &manifest.raw.release_gate.canary_scope,
            &mut derive_rng(options.seed, "requisition/seeded", 0),
        )?;
        Ok(Generator {
            manifest,
            options,
            people: PersonGenerator::new(options.seed),
            catalog: ProfileCatalog::for_manifest(manifest),
            rules: manifest.id_rules(),
            issued: std::collections::HashSet::new(),
            next: 0,
        })
    }

    /// The id of the candidate at `index`: `CAND_000001`… when the contracts accept
    /// it, else one minted from their rules (a fixed-width number, a hex object id…).
    fn id(&mut self, index: u64) -> Result<String, DatasetError> {
        let conventional = candidate_id(index);
        let mut mint = IdMint::new(&self.rules, self.options.seed);
        let id = if mint.acceptable(&conventional) && !self.issued.contains(&conventional) {
            conventional
        } else {
            // The mint keys its samples by the index's conventional id, so the same
            // seed gives the same ids; a collision with an earlier id draws again.
            let mut found = None;
            for attempt in 0..8u32 {
                let id = mint
                    .mint(&conventional, &format!("g{attempt}"))
                    .map_err(|source| DatasetError::IdRule { index, source })?;
                if !self.issued.contains(&id) {
                    found = Some(id);
                    break;
                }
            }
            found.ok_or_else(|| DatasetError::IdRule {
                index,
                source: crate::contract::ids::MintError {
                    source_id: conventional.clone(),
                    tag: "dataset".to_owned(),
                    rules: self.rules.describe(),
                },
            })?
        };
        self.issued.insert(id.clone());
        Ok(id)
    }

    fn candidate(&mut self, index: u64) -> Result<DatasetCandidate, DatasetError> {
        let seed = self.options.seed;
        let mut rng = derive_rng(seed, "dataset/profile", index);
        let tier = self.options.mix.tier(rng.random_range(0..100u8));
        let choices: Vec<&UsableProfile> = self.catalog.of_tier(tier).collect();
        let Some(profile) = choices.choose(&mut rng).copied().cloned() else {
            return Err(DatasetError::NoProfile {
                tier: tier.as_str(),
            });
        };
        let requisition = scope::inside(
            &self.manifest.raw.release_gate.canary_scope,
            &mut derive_rng(seed, "requisition/seeded", index),
        )?;
        let person = self.people.person(Stream::Seeded, index);
        Ok(DatasetCandidate {
            ats_candidate_id: self.id(index)?,
            profile: profile.name,
            risk_tier: profile.risk_tier,
            name: person.name.into(),
            email: person.email.into(),
            phone: person.phone.into(),
            requisition,
        })
    }
}

impl Iterator for Generator<'_> {
    type Item = Result<DatasetCandidate, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.options.count {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(self.candidate(index))
    }
}

/// The conventional id of the candidate at a 0-based index.
pub fn candidate_id(index: u64) -> String {
    format!("CAND_{:06}", index + 1)
}

/// Streams a whole dataset to `out`.
pub fn write(
    out: &mut dyn Write,
    manifest: &Manifest,
    options: GenerateOptions,
) -> Result<GenerateSummary, WriteError> {
    let generator = Generator::new(manifest, options).map_err(WriteError::Dataset)?;
    write_header(out, manifest, options).map_err(WriteError::Io)?;
    let mut summary = GenerateSummary::default();
    for candidate in generator {
        let candidate = candidate.map_err(WriteError::Dataset)?;
        match candidate.risk_tier {
            RiskTier::Low => summary.low += 1,
            RiskTier::Medium => summary.medium += 1,
            RiskTier::High => summary.high += 1,
        }
        write_candidate(out, &candidate).map_err(WriteError::Io)?;
    }
    out.flush().map_err(WriteError::Io)?;
    Ok(summary)
}

/// Why [`write`] stopped: the dataset cannot be generated, or the output failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The options do not fit the manifest.
    #[error(transparent)]
    Dataset(DatasetError),
    /// Writing failed.
    #[error("cannot write the dataset")]
    Io(#[source] io::Error),
}

fn write_header(
    out: &mut dyn Write,
    manifest: &Manifest,
    options: GenerateOptions,
) -> io::Result<()> {
    writeln!(
        out,
        "# stagegate sandbox dataset: fake people, deterministic from the seed. Regenerate it with"
    )?;
    writeln!(
        out,
        "# stagegate sandbox generate --count {} --seed {} --risk-mix {}",
        options.count, options.seed, options.mix
    )?;
    writeln!(out, "version: {}", Quoted(FORMAT_VERSION))?;
    writeln!(out, "seed: {}", options.seed)?;
    writeln!(
        out,
        "generated_by: {}",
        Quoted(&format!("stagegate {}", env!("CARGO_PKG_VERSION")))
    )?;
    writeln!(
        out,
        "change_id: {}",
        Quoted(&manifest.raw.release_gate.change_id)
    )?;
    let mix = options.mix;
    writeln!(
        out,
        "risk_mix: {{low: {}, medium: {}, high: {}}}",
        mix.low, mix.medium, mix.high
    )?;
    writeln!(out, "count: {}", options.count)?;
    if options.count == 0 {
        writeln!(out, "candidates: []")
    } else {
        writeln!(out, "candidates:")
    }
}

/// Writes one candidate as an item of the `candidates:` sequence.
pub fn write_candidate(out: &mut dyn Write, c: &DatasetCandidate) -> io::Result<()> {
    writeln!(out, "  - ats_candidate_id: {}", Quoted(&c.ats_candidate_id))?;
    writeln!(out, "    profile: {}", Quoted(&c.profile))?;
    writeln!(out, "    risk_tier: {}", Quoted(c.risk_tier.as_str()))?;
    writeln!(out, "    name: {}", Quoted(&c.name))?;
    writeln!(out, "    email: {}", Quoted(&c.email))?;
    writeln!(out, "    phone: {}", Quoted(&c.phone))?;
    write!(
        out,
        "    requisition: {{id: {}, tags: [",
        Quoted(&c.requisition.id)
    )?;
    for (i, tag) in c.requisition.tags.iter().enumerate() {
        if i > 0 {
            out.write_all(b", ")?;
        }
        write!(out, "{}", Quoted(tag))?;
    }
    writeln!(out, "], location: {}}}", Quoted(&c.requisition.location))
}

/// A YAML double-quoted scalar: `"`, `\` and everything YAML may not carry raw escaped.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                c if u32::from(c) <= 0xFFFF => write!(f, "\\u{:04X}", u32::from(c))?,
                c => write!(f, "\\U{:08X}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)?;
        f.write_str("\"")
    }
}

/// Characters a YAML stream may not hold raw (outside its printable set), plus the
/// quote, the backslash, and the line and BOM characters parsers treat specially.
fn needs_escape(c: char) -> bool {
    matches!(c, '"' | '\\')
        || c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
        )
}

/// Loads a dataset file, checking its version and count.
pub fn load(path: &Path) -> Result<Dataset, DatasetError> {
    let file = open(path)?;
    from_reader(path, io::BufReader::new(file))
}

/// Reads a dataset from any reader; `path` names it in errors.
pub fn from_reader(path: &Path, reader: impl BufRead) -> Result<Dataset, DatasetError> {
    let mut candidates = Vec::new();
    let header = read::read(path, reader, &mut |_, _, candidate| {
        candidates.push(candidate)
    })?;
    Ok(Dataset {
        version: header.version,
        seed: header.seed,
        generated_by: header.generated_by,
        change_id: header.change_id,
        risk_mix: header.risk_mix,
        count: header.count,
        candidates,
    })
}

/// Streams a dataset file: `each` gets every candidate with its index and place as
/// soon as it is read, and the header comes back once the file is done (with its
/// version and count checked). Memory holds one candidate, whatever the file's size.
pub fn read_each(
    path: &Path,
    each: &mut dyn FnMut(usize, Place, DatasetCandidate),
) -> Result<DatasetHeader, DatasetError> {
    let file = open(path)?;
    read::read(path, io::BufReader::with_capacity(1 << 16, file), each)
}

/// How many candidates a dataset file says it holds, read from its header alone
/// (`count`, before `candidates`, as this tool writes it); `None` if it cannot tell,
/// and then only reading it all ([`read_each`]) can.
pub fn declared_count(path: &Path) -> Option<u64> {
    let file = open(path).ok()?;
    read::declared_count(io::BufReader::new(file))
}

fn open(path: &Path) -> Result<std::fs::File, DatasetError> {
    // Each line is bounded by the reader (see `read`); the file must end.
    crate::limits::open_regular(path, crate::limits::DATASET_LINE_BYTES).map_err(|source| {
        DatasetError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }
    })
}

/// Checks a loaded dataset against the manifest it will be served with; see [`Checker`].
pub fn check(manifest: &Manifest, dataset: &Dataset, path: &Path) -> Result<(), DatasetError> {
    let mut checker = Checker::new(manifest);
    for (index, row) in dataset.candidates.iter().enumerate() {
        checker.row(index, row);
    }
    checker.finish(path)
}

/// Holds dataset candidates, one at a time, to the manifest they are served with,
/// the way the manifest loader holds `sandbox_dataset`: ids non-empty, usable in a
/// URL path, unique and accepted by every rule on the candidate id; profiles usable
/// with the manifest ([`ProfileCatalog`]); each `risk_tier` its profile's. Every
/// problem is collected, and [`Checker::finish`] reports them with the file's name.
#[derive(Debug)]
pub struct Checker<'m> {
    seen: HashMap<String, usize>,
    catalog: ProfileCatalog,
    rules: IdRules,
    problems: Vec<DatasetProblem>,
    _manifest: std::marker::PhantomData<&'m Manifest>,
}

impl<'m> Checker<'m> {
    /// A checker for candidates served with `manifest`.
    pub fn new(manifest: &'m Manifest) -> Self {
        Checker {
            seen: HashMap::new(),
            catalog: ProfileCatalog::for_manifest(manifest),
            rules: manifest.id_rules(),
            problems: Vec::new(),
            _manifest: std::marker::PhantomData,
        }
    }

    /// Checks the candidate at `index`; returns its profile's expected sequence when
    /// the profile is usable.
    pub fn row(&mut self, index: usize, row: &DatasetCandidate) -> Option<Arc<[ExpectedEvent]>> {
        let id = row.ats_candidate_id.as_str();
        let mut problems = Vec::new();
        if id.trim().is_empty() {
            problems.push(ProblemKind::EmptyId);
        } else if let Some(c) = id.chars().find(|c| !path_safe(*c)) {
            problems.push(ProblemKind::UnsafeId(c));
        } else if let Some(first) = self.seen.get(id) {
            problems.push(ProblemKind::DuplicateId { first: *first });
        } else {
            self.seen.insert(id.to_owned(), index);
            if let Some(violation) = self.rules.violation(id) {
                problems.push(ProblemKind::IdRule(violation));
            }
        }
        let sequence = match self.catalog.get(&row.profile) {
            Err(err) => {
                problems.push(match err {
                    ProfileError::Unknown {
                        profile,
                        hint,
                        known,
                    } => ProblemKind::UnknownProfile {
                        profile,
                        hint,
                        known,
                    },
                    ProfileError::Unexpressible { profile, problem } => {
                        ProblemKind::Unexpressible { profile, problem }
                    }
                });
                None
            }
            Ok(profile) => {
                if profile.risk_tier != row.risk_tier {
                    problems.push(ProblemKind::TierMismatch {
                        profile: profile.name.clone(),
                        tier: row.risk_tier.as_str(),
                        expected: profile.risk_tier.as_str(),
                    });
                }
                Some(Arc::clone(&profile.sequence))
            }
        };
        self.problems
            .extend(problems.into_iter().map(|kind| DatasetProblem {
                index,
                id: id.to_owned(),
                kind,
            }));
        sequence
    }

    /// Whether every candidate so far passed.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Every problem found, as one error naming the file.
    pub fn finish(self, path: &Path) -> Result<(), DatasetError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(DatasetError::Invalid {
                path: path.to_owned(),
                problems: DatasetProblems(self.problems),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::tests::seed_manifest;

    #[test]
    fn risk_mix_table() {
        // (text, parsed or the start of the error, why)
        type Row<'a> = (&'a str, Result<(u8, u8, u8), &'a str>, &'a str);
        let rows: &[Row] = &[
            (
                "low=70,medium=20,high=10",
                Ok((70, 20, 10)),
                "the default, spelled out",
            ),
            (" high=100 ", Ok((0, 0, 100)), "tiers left out get 0"),
            (
                "LOW=50,Medium=50%",
                Ok((50, 50, 0)),
                "case and a percent sign are forgiven",
            ),
            (
                "low=70,medium=x",
                Err("`x` is not a whole percentage for `medium`"),
                "not a number",
            ),
            (
                "low=70,medium=20",
                Err("the percentages add up to 90, not 100"),
                "short of 100",
            ),
            (
                "low=170",
                Err("`170` is not a whole percentage for `low`"),
                "over 100",
            ),
            (
                "low=-1,high=101",
                Err("`-1` is not a whole percentage"),
                "negative",
            ),
            (
                "mediun=100",
                Err("`mediun` is not a risk tier (did you mean `medium`?)"),
                "misspelt tier",
            ),
            ("low=50,low=50", Err("`low` is given twice"), "duplicate"),
            (
                "low:100",
                Err("`low:100` is not `tier=percent`"),
                "wrong separator",
            ),
            ("", Err("the mix is empty"), "nothing"),
        ];
        for (text, expected, why) in rows {
            let got = text.parse::<RiskMix>();
            match expected {
                Ok((low, medium, high)) => assert_eq!(
                    got.unwrap_or_else(|e| panic!("{why}: {e}")),
                    RiskMix {
                        low: *low,
                        medium: *medium,
                        high: *high
                    },
                    "{why}"
                ),
                Err(start) => {
                    let message = got.expect_err(why).to_string();
                    assert!(message.starts_with(start), "{why}: {message}");
                }
            }
        }
        let message = "low=1".parse::<RiskMix>().expect_err("sum").to_string();
        assert!(
            message.contains("write it like low=70,medium=20,high=10"),
            "{message}"
        );
    }

    #[test]
    fn mix_rolls_cover_each_tier_in_proportion() {
        let mix = RiskMix {
            low: 70,
            medium: 20,
            high: 10,
        };
        let counts = (0..100u8).fold([0; 3], |mut acc, roll| {
            acc[mix.tier(roll) as usize] += 1;
            acc
        });
        assert_eq!(counts, [70, 20, 10]);
        let only_high = RiskMix {
            low: 0,
            medium: 0,
            high: 100,
        };
        assert!((0..100u8).all(|r| only_high.tier(r) == RiskTier::High));
    }

    #[test]
    fn written_datasets_load_back_identically() {
        let manifest = seed_manifest();
        let options = GenerateOptions {
            count: 300,
            seed: 11,
            mix: RiskMix::default(),
        };
        let mut bytes = Vec::new();
        let summary = write(&mut bytes, &manifest, options).expect("writes");
        assert_eq!(summary.total(), 300);
        let loaded = from_reader(Path::new("mem.yaml"), bytes.as_slice()).expect("loads");
        let generated: Vec<DatasetCandidate> = Generator::new(&manifest, options)
            .expect("fits")
            .collect::<Result<_, _>>()
            .expect("generates");
        assert_eq!(loaded.candidates, generated);
        assert_eq!(loaded.seed, 11);
        assert_eq!(loaded.risk_mix, RiskMix::default());
        assert_eq!(loaded.change_id, "rls-2026-05-18-il-contracts");
        let scope = &manifest.raw.release_gate.canary_scope;
        assert!(
            loaded
                .candidates
                .iter()
                .all(|c| scope::in_canary_scope(scope, &c.requisition))
        );
        assert!(loaded.candidates.iter().any(|c| !c.name.is_ascii()));
    }

    #[test]
    fn awkward_strings_survive_the_writer() {
        let awkward = [
            "plain",
            "Zoë \"Zo\" Ğürsoy",
            "back\\slash",
            "colon: and # hash",
            " leading and trailing ",
            "line\nbreak\ttab\r",
            "nel\u{85}ls\u{2028}ps\u{2029}bom\u{FEFF}",
            "bell\u{7}del\u{7F}",
            "- looks like a list",
            "null",
            "123",
            "佐藤 花子 😀",
            "",
        ];
        for text in awkward {
            let candidate = DatasetCandidate {
                ats_candidate_id: "CAND_000001".into(),
                profile: "fail".into(),
                risk_tier: RiskTier::High,
                name: text.into(),
                email: "a@example.com".into(),
                phone: text.into(),
                requisition: Requisition {
                    id: text.into(),
                    tags: vec![text.into(), "x".into()],
                    location: "IL".into(),
                },
            };
            let mut bytes = b"candidates:\n".to_vec();
            write_candidate(&mut bytes, &candidate).expect("writes to memory");
            #[derive(Deserialize)]
            struct Only {
                candidates: Vec<DatasetCandidate>,
            }
            let parsed: Only = serde_yaml::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{text:?}: {e}\n{}", String::from_utf8_lossy(&bytes)));
            assert_eq!(
                parsed.candidates,
                std::slice::from_ref(&candidate),
                "{text:?}"
            );
            // And the streaming loader, which stagegate itself reads datasets with.
            let mut file = HEADER_OF_ONE.as_bytes().to_vec();
            file.extend_from_slice(&bytes);
            let loaded = from_reader(Path::new("awkward.yaml"), file.as_slice())
                .unwrap_or_else(|e| panic!("{text:?}: {e}\n{}", String::from_utf8_lossy(&file)));
            assert_eq!(loaded.candidates, [candidate], "{text:?}");
        }
    }

    /// A dataset header announcing one candidate, for hand-made files.
    const HEADER_OF_ONE: &str = "version: \"1\"\nseed: 1\ngenerated_by: \"test\"\nchange_id: \"c\"\nrisk_mix: {low: 70, medium: 20, high: 10}\ncount: 1\n";

    #[test]
    fn the_loader_places_what_is_wrong() {
        let one = "candidates:\n  - ats_candidate_id: \"CAND_000001\"\n    profile: \"fail\"\n    risk_tier: \"high\"\n    name: \"A\"\n    email: \"a@example.com\"\n    phone: \"1\"\n    requisition: {id: \"R\", tags: [\"canary-il\"], location: \"IL\"}\n";
        let good = format!("{HEADER_OF_ONE}{one}");
        let loaded =
            from_reader(Path::new("d.yaml"), good.as_bytes()).expect("a hand-made file loads");
        assert_eq!(loaded.candidates[0].requisition.tags, ["canary-il"]);
        // (text, the error's end, why)
        let rows: [(String, &str, &str); 11] = [
            (
                good.replace("name:", "nme:"),
                "d.yaml is not a sandbox dataset: candidates[0] at line 8, column 5: unknown field `nme`, expected one of `ats_candidate_id`, `profile`, `risk_tier`, `name`, `email`, `phone`, `requisition`",
                "a misspelt field",
            ),
            (
                good.replace("\"high\"", "\"hihg\""),
                "candidates[0] at line 8, column 5: unknown variant `hihg`, expected one of `low`, `medium`, `high`",
                "an unknown tier",
            ),
            (
                good.replace("count: 1", "count: 2"),
                "d.yaml says 2 candidates but holds 1; it may be truncated",
                "a truncated file",
            ),
            (
                good.replace("version: \"1\"", "version: \"2\""),
                "d.yaml is dataset format \"2\"; this stagegate reads \"1\"",
                "another version",
            ),
            (
                good.replace("seed: 1\n", ""),
                "line 1, column 1: missing key `seed`; a dataset is a mapping of",
                "a missing header field",
            ),
            (
                good.replace("seed: 1", "seed: one"),
                "seed at line 2, column 1: invalid type: string \"one\", expected u64",
                "a seed that is not a number",
            ),
            (
                good.replace("change_id:", "change:"),
                "change at line 4, column 1: unknown key `change` (did you mean `change_id`?)",
                "a misspelt header key",
            ),
            (
                format!("{good}  - [oops\n"),
                "d.yaml is not a sandbox dataset: line 16, column 1: while parsing a flow sequence",
                "broken YAML",
            ),
            (
                HEADER_OF_ONE.to_owned(),
                "there is no `candidates` list",
                "no candidates",
            ),
            (String::new(), "the file is empty", "an empty file"),
            (
                format!("{good}---\nseed: 2\n"),
                "more than one YAML document",
                "two documents",
            ),
        ];
        for (text, expected, why) in rows {
            let err = from_reader(Path::new("d.yaml"), text.as_bytes()).expect_err(why);
            let mut message = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            assert!(message.contains(expected), "{why}: {message}");
        }
        // One endless line (a file of no newlines) stops at the limit, not at memory.
        let long = vec![b'a'; crate::limits::DATASET_LINE_BYTES.as_usize() + 1];
        let err = from_reader(Path::new("d.yaml"), &long[..]).expect_err("a long line");
        assert!(
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .is_some_and(|m| m.contains("line 1 is longer than the dataset line limit")),
            "{err:?}"
        );
        let err = from_reader(Path::new("d.yaml"), &[b'a', b':', 0xff, b'\n'][..])
            .expect_err("not UTF-8");
        assert_eq!(
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .as_deref(),
            Some("line 1, column 1: the line is not UTF-8 text")
        );
    }

    #[test]
    fn the_checker_collects_every_problem_by_candidate() {
        let manifest = seed_manifest();
        let options = GenerateOptions {
            count: 8,
            seed: 3,
            mix: RiskMix::default(),
        };
        let mut rows: Vec<DatasetCandidate> = Generator::new(&manifest, options)
            .expect("fits")
            .collect::<Result<_, _>>()
            .expect("generates");
        let path = Path::new("d.yaml");
        let dataset = |rows: &[DatasetCandidate]| Dataset {
            version: "1".into(),
            seed: 3,
            generated_by: "test".into(),
            change_id: "c".into(),
            risk_mix: RiskMix::default(),
            count: rows.len() as u64,
            candidates: rows.to_vec(),
        };
        check(&manifest, &dataset(&rows), path).expect("a generated dataset passes");
        rows[1].ats_candidate_id = rows[0].ats_candidate_id.clone();
        rows[2].ats_candidate_id = "CAND/3".into();
        rows[3].ats_candidate_id = "C3".into();
        rows[4].profile = "low-risk-fastpath".into();
        rows[5].profile = "fail".into();
        rows[5].risk_tier = RiskTier::Low;
        rows[6].ats_candidate_id = " ".into();
        let err = check(&manifest, &dataset(&rows), path).expect_err("six problems");
        let message = err.to_string();
        for expected in [
            "d.yaml cannot be served with this manifest: 6 problems",
            "candidates[1] (`CAND_000001`): the id repeats candidates[0]; candidate ids are unique",
            "candidates[2] (`CAND/3`): the id holds `/`, which cannot appear in `/v1/candidates/{id}`",
            "candidates[3] (`C3`): the id breaks contract `identity.verification.completed`",
            "candidates[4] (`CAND_000005`): unknown profile `low-risk-fastpath` (did you mean `low-risk-fast-path`?)",
            "candidates[5] (`CAND_000006`): risk_tier is `low` but profile `fail` is `high`",
            "and 1 more",
        ] {
            assert!(message.contains(expected), "{expected}\n{message}");
        }
    }

    #[test]
    fn loader_rejects_other_versions_and_truncation() {
        let manifest = seed_manifest();
        let options = GenerateOptions {
            count: 3,
            seed: 1,
            mix: RiskMix::default(),
        };
        let mut bytes = Vec::new();
        write(&mut bytes, &manifest, options).expect("writes");
        let text = String::from_utf8(bytes).expect("utf-8");
        let truncated = &text[..text.rfind("  - ").expect("items")];
        let err = from_reader(Path::new("t.yaml"), truncated.as_bytes()).expect_err("truncated");
        assert!(
            err.to_string().contains("says 3 candidates but holds 2"),
            "{err}"
        );
        let other = text.replace("version: \"1\"", "version: \"2\"");
        let err = from_reader(Path::new("v.yaml"), other.as_bytes()).expect_err("version 2");
        assert!(err.to_string().contains("dataset format \"2\""), "{err}");
        let empty = GenerateOptions {
            count: 0,
            ..options
        };
        let mut bytes = Vec::new();
        write(&mut bytes, &manifest, empty).expect("writes");
        let loaded =
            from_reader(Path::new("e.yaml"), bytes.as_slice()).expect("an empty dataset loads");
        assert!(loaded.candidates.is_empty());
    }
}
