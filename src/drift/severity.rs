//! The catalogue of drift findings: stable ids, default severities, and the
//! repository file that lowers or raises them (oasdiff's severity-levels file).
//!
//! An id never changes meaning; a new kind of drift gets a new id. The file is YAML,
//! one `id: level` a line:
//!
//! ```yaml
//! drift.optional-field-added: breaking   # we parse strictly: any new field blocks
//! drift.event-type-gone: ignore          # this sandbox never sends report.disputed
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::suggest::did_you_mean;

/// What a finding means for the gate.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Consumers break: exit 1.
    Breaking,
    /// Consumers keep working; reported, does not block.
    Additive,
    /// Not reported.
    Ignore,
}

impl Level {
    /// The level's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Breaking => "breaking",
            Level::Additive => "additive",
            Level::Ignore => "ignore",
        }
    }
}

macro_rules! catalogue {
    ($( $variant:ident => $id:literal, $level:ident, $doc:literal; )*) => {
        /// A kind of drift, by its stable id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum FindingId {
            $(
                #[doc = $doc]
                #[serde(rename = $id)]
                $variant,
            )*
        }

        impl FindingId {
            /// Every id, in catalogue order.
            pub const ALL: &'static [FindingId] = &[$(FindingId::$variant),*];

            /// The stable id.
            pub fn as_str(self) -> &'static str {
                match self { $(FindingId::$variant => $id,)* }
            }

            /// The severity unless the severity file says otherwise.
            pub fn default_level(self) -> Level {
                match self { $(FindingId::$variant => Level::$level,)* }
            }

            /// What the id means, one sentence.
            pub fn description(self) -> &'static str {
                match self { $(FindingId::$variant => $doc,)* }
            }
        }
    };
}

catalogue! {
    RequiredFieldMissing => "drift.required-field-missing", Breaking,
        "A field the contract requires, or one the baseline always saw, is missing or null.";
    TypeChanged => "drift.type-changed", Breaking,
        "A field arrives with a JSON type the baseline never saw (null included).";
    EnumValueAdded => "drift.enum-value-added", Breaking,
        "A value outside the contract's enum.";
    FormatChanged => "drift.format-changed", Breaking,
        "A field's format changed (RFC 3339 to epoch seconds, URL to plain text, ...).";
    FieldRenamed => "drift.field-renamed", Breaking,
        "A field is gone and a similar one with the same type and values is new: renamed or moved.";
    EventTypeGone => "drift.event-type-gone", Breaking,
        "An event type of the contract or the baseline no longer arrives.";
    OptionalFieldAdded => "drift.optional-field-added", Additive,
        "A field the baseline never saw.";
    OptionalFieldRemoved => "drift.optional-field-removed", Additive,
        "A field the baseline saw only sometimes no longer arrives.";
    ValueAdded => "drift.value-added", Additive,
        "A new value in a low-cardinality field that is not a contract enum.";
    EventTypeAdded => "drift.event-type-added", Additive,
        "An event type neither the contract nor the baseline knows.";
}

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The severity of every id: defaults, then the file's overrides.
#[derive(Debug, Clone, Default)]
pub struct Severities {
    overrides: BTreeMap<FindingId, Level>,
}

/// Why a severity file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeverityError {
    /// The file cannot be read.
    #[error("cannot read the severity file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a YAML map of strings.
    #[error("{}: not a map of `drift.<id>: breaking|additive|ignore`", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_yaml::Error,
    },
    /// An id the catalogue does not have.
    #[error("{}: unknown finding id `{id}`{hint}", path.display())]
    UnknownId {
        /// The file.
        path: PathBuf,
        /// The id.
        id: String,
        /// A did-you-mean, or the list of ids.
        hint: String,
    },
    /// A level that is not breaking, additive or ignore.
    #[error("{}: `{id}: {level}`: the level is breaking, additive or ignore", path.display())]
    UnknownLevel {
        /// The file.
        path: PathBuf,
        /// The id.
        id: String,
        /// The level written.
        level: String,
    },
}

impl Severities {
    /// Reads a severity file.
    pub fn load(path: &Path) -> Result<Self, SeverityError> {
        let text = crate::limits::read_regular_text(path, crate::limits::DOCUMENT_BYTES).map_err(
            |source| SeverityError::Read {
                path: path.to_owned(),
                source,
            },
        )?;
        Self::parse(path, &text)
    }

    /// Parses a severity file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SeverityError> {
        let raw: Option<BTreeMap<String, String>> =
            serde_yaml::from_str(text).map_err(|source| SeverityError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let mut overrides = BTreeMap::new();
        for (id, level) in raw.unwrap_or_default() {
            let Some(found) = FindingId::ALL.iter().find(|f| f.as_str() == id) else {
                let hint = match did_you_mean(&id, FindingId::ALL.iter().map(|f| f.as_str())) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => format!(
                        "; the ids are {}",
                        FindingId::ALL
                            .iter()
                            .map(|f| f.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(SeverityError::UnknownId {
                    path: path.to_owned(),
                    id,
                    hint,
                });
            };
            let parsed = match level.as_str() {
                "breaking" => Level::Breaking,
                "additive" => Level::Additive,
                "ignore" => Level::Ignore,
                _ => {
                    return Err(SeverityError::UnknownLevel {
                        path: path.to_owned(),
                        id,
                        level,
                    });
                }
            };
            overrides.insert(*found, parsed);
        }
        Ok(Severities { overrides })
    }

    /// The level of `id`.
    pub fn level(&self, id: FindingId) -> Level {
        self.overrides
            .get(&id)
            .copied()
            .unwrap_or_else(|| id.default_level())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_lowers_and_raises_and_misspellings_are_named() {
        let path = Path::new("drift-severity.yaml");
        let s = Severities::parse(
            path,
            "drift.event-type-gone: ignore\ndrift.optional-field-added: breaking\n",
        )
        .expect("valid");
        assert_eq!(s.level(FindingId::EventTypeGone), Level::Ignore);
        assert_eq!(s.level(FindingId::OptionalFieldAdded), Level::Breaking);
        assert_eq!(s.level(FindingId::TypeChanged), Level::Breaking);
        let err = Severities::parse(path, "drift.type-change: additive\n").expect_err("unknown");
        assert!(
            err.to_string()
                .contains("did you mean `drift.type-changed`"),
            "{err}"
        );
        let err = Severities::parse(path, "drift.type-changed: low\n").expect_err("level");
        assert!(
            err.to_string().contains("breaking, additive or ignore"),
            "{err}"
        );
        assert!(
            Severities::parse(path, "").is_ok(),
            "an empty file changes nothing"
        );
    }

    #[test]
    fn ids_are_unique_and_namespaced() {
        let mut ids: Vec<&str> = FindingId::ALL.iter().map(|f| f.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), FindingId::ALL.len());
        assert!(ids.iter().all(|id| id.starts_with("drift.")));
    }
}
