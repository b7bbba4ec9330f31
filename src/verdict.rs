//! The verdict a release gate acts on, shared by `check` (payloads against contracts)
//! and `run` (an integration against the whole protocol): one type, so the exit code
//! follows the same rule everywhere.

use serde::{Deserialize, Serialize};

/// What a release gate does with the result.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing broke.
    Pass,
    /// Only `warn` contracts broke.
    Warn,
    /// A `block-release` rule broke.
    Blocked,
}

impl Verdict {
    /// The verdict's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Blocked => "blocked",
        }
    }
}

