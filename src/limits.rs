//! Every bound stagegate puts on what it reads, in one place.
//!
//! Input comes from people and from integrations under test, careless or hostile; each
//! reader stops at a limit named here rather than at the machine's. Every error a limit
//! raises names the limit (`the manifest nesting depth limit (64)`), and the README's
//! "Limits" section lists them all, so a rejected input says what to change.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::Path;
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

/// How long a connection with no request in flight may take to begin its next one
/// (sitting idle, or sending a head slowly) before the server closes it.
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

/// Length of one line of a sandbox dataset (`--dataset`, `sandbox check`).
pub const DATASET_LINE_BYTES: Limit = Limit {
    name: "dataset line",
    value: 16 << 20,
    unit: "bytes",
};

/// Size of a file read whole: a drift baseline or severity file, a run report, a
/// run's plan, an evidence pack.
pub const DOCUMENT_BYTES: Limit = Limit {
    name: "document size",
    value: 256 << 20,
    unit: "bytes",
};

/// Opens `path` for reading, refusing at once anything but a regular file: a FIFO
/// would block until a writer comes, a device (`/dev/zero`) would never end, a folder
/// is not a file. `limit` is the bound the caller's reader applies (to the whole file
/// or to each record of a stream); the error names it with the path and the fix.
pub fn open_regular(path: &Path, limit: Limit) -> io::Result<File> {
    // Checked before opening: opening a FIFO blocks until a writer comes.
    refuse_irregular(path, std::fs::metadata(path)?.file_type(), limit)?;
    let file = File::open(path)?;
    // And on what was opened, in case the path was replaced in between.
    refuse_irregular(path, file.metadata()?.file_type(), limit)?;
    Ok(file)
}

/// Reads a regular file whole, at most `limit` bytes (see [`open_regular`]); a larger
/// file fails with [`io::ErrorKind::FileTooLarge`] naming the limit.
pub fn read_regular(path: &Path, limit: Limit) -> io::Result<Vec<u8>> {
    let file = open_regular(path, limit)?;
    let mut bytes = Vec::new();
    file.take(limit.value.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() > limit.as_usize() {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "{} is larger than {limit}: name a smaller file",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path, limit: Limit) -> io::Result<String> {
    String::from_utf8(read_regular(path, limit)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })
}

/// Reads one line (through its `\n`) into `line`, which it clears first, and returns
/// its length (0 at the end). A line longer than `limit` fails with
/// [`io::ErrorKind::FileTooLarge`] instead of growing memory without end.
pub fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    limit: Limit,
) -> io::Result<usize> {
    line.clear();
    reader
        .take(limit.value.saturating_add(1))
        .read_until(b'\n', line)?;
    if line.len() > limit.as_usize() {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("a line longer than {limit}"),
        ));
    }
    Ok(line.len())
}

/// Fails unless `kind` is a regular file, saying what `path` is instead.
fn refuse_irregular(path: &Path, kind: std::fs::FileType, limit: Limit) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        return Ok(());
    }
    let (what, why) = if kind.is_dir() {
        ("a folder", "name a file inside it")
    } else if kind.is_fifo() {
        (
            "a FIFO (a named pipe: reading it blocks until written)",
            "save what the pipe carries to a regular file and name that",
        )
    } else if kind.is_char_device() || kind.is_block_device() {
        (
            "a device (it may never end)",
            "copy the data you mean to a regular file and name that",
        )
    } else if kind.is_socket() {
        (
            "a socket",
            "save what it carries to a regular file and name that",
        )
    } else {
        ("neither a file nor a folder", "name a regular file")
    };
    Err(io::Error::new(
        if kind.is_dir() {
            io::ErrorKind::IsADirectory
        } else {
            io::ErrorKind::InvalidInput
        },
        format!(
            "{} is {what}, not a regular file; only regular files are read here, within {limit}: {why}",
            path.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: Limit = Limit {
        name: "test size",
        value: 4,
        unit: "bytes",
    };

    #[test]
    fn a_file_within_the_limit_is_read_whole_and_one_over_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, "abcd").expect("written");
        assert_eq!(read_regular(&path, TINY).expect("at the limit"), b"abcd");
        std::fs::write(&path, "abcde").expect("written");
        let err = read_regular(&path, TINY).expect_err("over the limit");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(
            err.to_string().contains("the test size limit (4 bytes)"),
            "{err}"
        );
    }

    #[test]
    fn fifos_and_folders_are_refused_naming_path_limit_and_fix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("p");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Returns at once: the FIFO is never opened (nothing writes it).
        let err = open_regular(&fifo, TINY).expect_err("a FIFO");
        let text = err.to_string();
        for part in [
            fifo.to_str().expect("UTF-8"),
            "a FIFO",
            "test size limit",
            "save",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        let err = read_regular(dir.path(), TINY).expect_err("a folder");
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
        assert!(err.to_string().contains("name a file inside it"), "{err}");
    }

    #[test]
    fn lines_are_bounded_not_truncated() {
        let mut reader = io::Cursor::new(b"abc\nabcdefg\n".to_vec());
        let mut line = Vec::new();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, TINY).expect("short"),
            4
        );
        assert_eq!(line, b"abc\n");
        let err = read_line_bounded(&mut reader, &mut line, TINY).expect_err("long");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
    }
}
