//! A small builder that runs the real `stagegate` binary in an isolated environment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root, where the tests run the binary from.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture path relative to the repository root.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// The `--sut-cmd` that starts the reference relay with `faults`
/// (`STAGEGATE_RELAY_FAULTS`, comma-separated; empty: the correct relay).
pub fn relay_command(faults: &str) -> String {
    let relay = format!("{} relay", env!("CARGO_BIN_EXE_stagegate"));
    if faults.is_empty() {
        relay
    } else {
        format!("STAGEGATE_RELAY_FAULTS={faults} {relay}")
    }
}

/// The arguments of `stagegate run` on the seed manifest against the reference relay
/// with `faults`, with `seed`.
pub fn run_args(faults: &str, seed: u64) -> Vec<String> {
    vec![
        "run".to_owned(),
        "manifests/release-gate.yaml".to_owned(),
        "--seed".to_owned(),
        seed.to_string(),
        "--sut-cmd".to_owned(),
        relay_command(faults),
    ]
}

/// One invocation of the binary.
pub struct Stagegate {
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    dir: PathBuf,
}

/// What a run printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Stagegate {
    /// `stagegate ARGS…`, run from the repository root.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Stagegate {
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            stdin: None,
            dir: repo_root(),
        }
    }

    /// Feeds standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Runs from another folder.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.dir = dir.to_owned();
        self
    }

    /// Runs to the end; the environment holds only PATH and NO_COLOR.
    pub fn run(self) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stagegate"));
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the stagegate binary starts");
        if let Some(bytes) = self.stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(&bytes).expect("stdin accepts the input");
        }
        let out = child
            .wait_with_output()
            .expect("the stagegate binary finishes");
        Output {
            code: out.status.code().expect("exited with a code, not a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Output {
    /// Asserts the exit code, showing everything printed when it differs.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Snapshots go to `snapshots/` at the repository root.
#[macro_export]
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

/// A shared buffer a log writes into (the relay's JSON lines, in-process).
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
