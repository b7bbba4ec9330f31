//! Every bound stagegate puts on what it reads, in one place.
//!
//! Input comes from people and from integrations under test, careless or hostile; each
//! reader stops at a limit named here rather than at the machine's. Every error a limit
//! raises names the limit (`the manifest nesting depth limit (64)`), and the README's
//! "Limits" section lists them all, so a rejected input says what to change.

use std::time::Duration;

/// A limit as errors name it: what is bounded, and the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The limit's name, as the README lists it.
    pub name: &'static str,
    /// The bound, in the unit `unit` says.
    pub value: u64,
    /// The unit (`levels`, `bytes`, `connections`, `seconds`).
    pub unit: &'static str,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} limit ({} {})", self.name, self.value, self.unit)
    }
}

/// Nesting of a manifest or policy (block and flow mappings and sequences together).
pub const MANIFEST_DEPTH: Limit = Limit {
    name: "manifest nesting depth",
    value: 64,
    unit: "levels",
};

/// Size of a manifest or policy file.
pub const MANIFEST_BYTES: Limit = Limit {
    name: "manifest size",
    value: 16 << 20,
    unit: "bytes",
};

/// Size of a `lists:` file (which must be a regular file).
pub const LIST_FILE_BYTES: Limit = Limit {
    name: "list file size",
    value: 16 << 20,
    unit: "bytes",
};

/// Size of one payload `stagegate check` reads (a line, an array element, a document).
pub const PAYLOAD_BYTES: Limit = Limit {
    name: "payload size",
    value: 64 << 20,
    unit: "bytes",
};

/// Length of one line of an observation log (`stagegate log verify`).
pub const LOG_LINE_BYTES: Limit = Limit {
    name: "observation log line",
    value: 16 << 20,
    unit: "bytes",
};

/// Size of one request body a mock or the admin API accepts.
pub const REQUEST_BODY_BYTES: Limit = Limit {
    name: "request body size",
    value: 2 << 20,
    unit: "bytes",
};

/// Size of a request's head (request line and headers) a server reads.
pub const REQUEST_HEAD_BYTES: Limit = Limit {
    name: "request head size",
    value: 64 << 10,
    unit: "bytes",
};

/// Number of headers in one request.
pub const REQUEST_HEADERS: Limit = Limit {
    name: "request header count",
    value: 100,
    unit: "headers",
};

/// Connections one listener (each mock, the admin API) holds open at once.
pub const CONNECTIONS: Limit = Limit {
    name: "open connections per listener",
    value: 1024,
    unit: "connections",
};

/// How long a connection may take to send a request's head, or stay idle between
/// requests, before the server closes it.
pub const HEADER_READ_SECS: Limit = Limit {
    name: "header read and idle timeout",
    value: 10,
    unit: "seconds",
};

impl Limit {
    /// The bound as a `usize` (sizes, counts, depths).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.value).unwrap_or(usize::MAX)
    }

    /// The bound as a duration (for limits in seconds).
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.value)
    }
}
