//! The committed baseline: the shape a team has accepted, reviewed in pull requests.
//!
//! It is pretty JSON with every map sorted and no counts or example values, so that
//! updating it after an unchanged capture produces no diff at all, and a real change
//! shows as a few readable lines (`"values": ["clear", "consider", "suspended"]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::shape::{EventShape, ShapeFold};

/// The version this build writes and reads.
pub const BASELINE_VERSION: u32 = 1;

/// A drift baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// The format's version (1).
    pub stagegate_drift_baseline: u32,
    /// Where the event type was read (`--type-field`), for the reader's benefit.
    pub type_fields: Vec<String>,
    /// Per event type, sorted.
    pub events: BTreeMap<String, EventShape>,
}

/// Why a baseline cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file cannot be read.
    #[error("cannot read the baseline {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a baseline.
    #[error("{} is not a drift baseline (regenerate it with `stagegate drift --update-baseline`)", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A version this build does not read.
    #[error("{} is baseline version {found}; this stagegate reads version {BASELINE_VERSION}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version written.
        found: u32,
    },
    /// The file cannot be written.
    #[error("cannot write the baseline {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl Baseline {
    /// The baseline of what a fold saw.
    pub fn from_fold(fold: &ShapeFold, type_fields: &[String]) -> Baseline {
        Baseline {
            stagegate_drift_baseline: BASELINE_VERSION,
            type_fields: type_fields.to_vec(),
            events: fold
                .events
                .iter()
                .map(|(name, event)| (name.clone(), event.shape(false)))
                .collect(),
        }
    }

    /// Reads a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = crate::limits::read_regular_text(path, crate::limits::DOCUMENT_BYTES).map_err(
            |source| BaselineError::Read {
                path: path.to_owned(),
                source,
            },
        )?;
        let baseline: Baseline =
            serde_json::from_str(&text).map_err(|source| BaselineError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if baseline.stagegate_drift_baseline != BASELINE_VERSION {
            return Err(BaselineError::Version {
                path: path.to_owned(),
                found: baseline.stagegate_drift_baseline,
            });
        }
        Ok(baseline)
    }

    /// The file's text: pretty, sorted, newline-terminated.
    pub fn to_text(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Writes the file, replacing it only once complete.
    pub fn write(&self, path: &Path) -> Result<(), BaselineError> {
        let error = |source| BaselineError::Write {
            path: path.to_owned(),
            source,
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        std::fs::write(&partial, self.to_text()).map_err(error)?;
        std::fs::rename(&partial, path).map_err(error)
    }
}

/// The JSON Schema of [`Baseline`], committed as `schemas/drift-baseline.schema.json`.
pub fn baseline_schema() -> serde_json::Value {
    schemars::schema_for!(Baseline).to_value()
}
