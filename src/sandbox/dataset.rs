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
//! 100,000 candidates take well under a second. The loader is plain `serde_yaml`.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::RngExt;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};

use super::model::{Requisition, RiskTier};
use super::people::{PersonGenerator, Stream};
use super::profiles::{self, ProfileError};
use super::{SandboxError, derive_rng, id_rule_violation, scope};
use crate::manifest::Manifest;
use crate::suggest::did_you_mean;

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
        /// What serde_yaml found.
        #[source]
        source: serde_yaml::Error,
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
    /// Generated ids would break the manifest's `ats_candidate_id` rules.
    #[error("generated ids such as `{id}` break the manifest: {message}")]
    IdRule {
        /// An offending id.
        id: String,
        /// The failed rule.
        message: String,
    },
    /// A profile the mix may draw cannot be expressed against the manifest.
    #[error("the dataset cannot follow this manifest: {0}")]
    Profile(ProfileError),
    /// The canary scope leaves no room for a requisition.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
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
    next: u64,
}

impl<'m> Generator<'m> {
    /// Checks that the options fit the manifest, then prepares generation.
    pub fn new(manifest: &'m Manifest, options: GenerateOptions) -> Result<Self, DatasetError> {
        for id in [
            candidate_id(0),
            candidate_id(options.count.saturating_sub(1)),
        ] {
            if let Some(message) = id_rule_violation(&manifest.contracts, &id) {
                return Err(DatasetError::IdRule { id, message });
            }
        }
        let mix = options.mix;
        for (tier, share) in [
            (RiskTier::Low, mix.low),
            (RiskTier::Medium, mix.medium),
            (RiskTier::High, mix.high),
        ] {
            if share == 0 {
                continue;
            }
            for profile in profiles::of_tier(tier) {
                profile
                    .expected_sequence(&manifest.contracts)
                    .map_err(DatasetError::Profile)?;
            }
        }
        // Fail before writing anything if the scope cannot hold a requisition.
        scope::inside(
            &manifest.raw.release_gate.canary_scope,
            &mut derive_rng(options.seed, "requisition/seeded", 0),
        )?;
        Ok(Generator {
            manifest,
            options,
            people: PersonGenerator::new(options.seed),
            next: 0,
        })
    }

    fn candidate(&mut self, index: u64) -> Result<DatasetCandidate, SandboxError> {
        let seed = self.options.seed;
        let mut rng = derive_rng(seed, "dataset/profile", index);
        let tier = self.options.mix.tier(rng.random_range(0..100u8));
        let choices: Vec<&profiles::Profile> = profiles::of_tier(tier).collect();
        let profile = choices
            .choose(&mut rng)
            .copied()
            .unwrap_or(&profiles::LOW_RISK_FAST_PATH);
        let requisition = scope::inside(
            &self.manifest.raw.release_gate.canary_scope,
            &mut derive_rng(seed, "requisition/seeded", index),
        )?;
        let person = self.people.person(Stream::Seeded, index);
        Ok(DatasetCandidate {
            ats_candidate_id: candidate_id(index),
            profile: profile.name.to_owned(),
            risk_tier: profile.risk_tier,
            name: person.name,
            email: person.email,
            phone: person.phone,
            requisition,
        })
    }
}

impl Iterator for Generator<'_> {
    type Item = Result<DatasetCandidate, SandboxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.options.count {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(self.candidate(index))
    }
}

/// The id of the candidate at a 0-based index.
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
        let candidate = candidate.map_err(|e| WriteError::Dataset(e.into()))?;
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
    let file = std::fs::File::open(path).map_err(|source| DatasetError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    from_reader(path, io::BufReader::new(file))
}

/// Reads a dataset from any reader; `path` names it in errors.
pub fn from_reader(path: &Path, reader: impl BufRead) -> Result<Dataset, DatasetError> {
    let dataset: Dataset =
        serde_yaml::from_reader(reader).map_err(|source| DatasetError::Parse {
            path: path.to_owned(),
            source,
        })?;
    if dataset.version.split('.').next() != Some(FORMAT_VERSION) {
        return Err(DatasetError::Version {
            path: path.to_owned(),
            found: dataset.version,
        });
    }
    if dataset.count != dataset.candidates.len() as u64 {
        return Err(DatasetError::Count {
            path: path.to_owned(),
            expected: dataset.count,
            found: dataset.candidates.len(),
        });
    }
    Ok(dataset)
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
            assert_eq!(parsed.candidates, [candidate], "{text:?}");
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
