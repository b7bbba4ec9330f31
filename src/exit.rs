//! Exit codes: a documented API that CI release gates depend on.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | pass (warnings allowed) |
//! | 1 | release blocked: a `block-release` rule failed |
//! | 2 | usage or manifest error: nothing was judged |
//! | 3 | the sandbox or the integration under test could not start |
//! | 130 | `run` or `rehearse outage` was interrupted (Ctrl-C or SIGTERM): no verdict |

/// The process exit codes of `stagegate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything passed, possibly with warnings.
    Pass = 0,
    /// A `block-release` rule failed.
    Blocked = 1,
    /// The command line or a manifest is wrong; nothing was judged.
    Usage = 2,
    /// The sandbox or the integration under test could not start.
    StartFailure = 3,
    /// `run` or `rehearse outage` was interrupted (Ctrl-C or SIGTERM) and stopped the
    /// integration it had started; no verdict. 128 + SIGINT, as a shell reports it.
    Interrupted = 130,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<crate::verdict::Verdict> for ExitCode {
    fn from(verdict: crate::verdict::Verdict) -> Self {
        match verdict {
            crate::verdict::Verdict::Pass | crate::verdict::Verdict::Warn => ExitCode::Pass,
            crate::verdict::Verdict::Blocked => ExitCode::Blocked,
        }
    }
}
