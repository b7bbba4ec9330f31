//! Starting, watching and stopping the integration under test (docs/integration-protocol.md §1).
//!
//! `--sut-cmd` runs through `sh -c` in its own process group, so stopping it stops
//! whatever it spawned too. Everything it prints is kept three ways: a file among the
//! run's artifacts, the observation log (the privacy and log-field checks read it
//! there), and a short ring of recent lines for the error shown when it never becomes
//! ready.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::observe::{Actor, Entry, ObservationLog};

/// Lines of output kept for the "never became ready" error.
const RECENT_LINES: usize = 20;

/// How long a stopped integration gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The environment an integration is started with (§1).
#[derive(Debug, Clone)]
pub struct SutEnv {
    /// Where it must listen.
    pub listen: SocketAddr,
    /// The mock ATS's base URL.
    pub ats_url: String,
    /// The bearer token for the ATS.
    pub ats_token: String,
    /// The mock vendor's base URL.
    pub vendor_url: String,
    /// The bearer token for the vendor.
    pub vendor_token: String,
    /// The vendor's webhook secret (`whsec_…`).
    pub vendor_webhook_secret: String,
    /// The ATS's webhook secret (`whsec_…`).
    pub ats_webhook_secret: String,
    /// The notification sink's base URL.
    pub notify_url: String,
    /// The manifest's absolute path.
    pub manifest: PathBuf,
    /// An empty folder for durable state, kept across restarts within the run.
    pub state_dir: PathBuf,
    /// How much faster than real time policy windows pass.
    pub time_scale: f64,
    /// The hiring policy's absolute path and its stages, when the run drives its flow.
    pub policy: Option<(PathBuf, Vec<String>)>,
}

impl SutEnv {
    /// The variables, as `(name, value)` pairs.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            (crate::protocol::env::LISTEN, self.listen.to_string()),
            ("PORT", self.listen.port().to_string()),
            (crate::protocol::env::ATS_URL, self.ats_url.clone()),
            (crate::protocol::env::ATS_TOKEN, self.ats_token.clone()),
            (crate::protocol::env::VENDOR_URL, self.vendor_url.clone()),
            (
                crate::protocol::env::VENDOR_TOKEN,
                self.vendor_token.clone(),
            ),
            (
                crate::protocol::env::VENDOR_WEBHOOK_SECRET,
                self.vendor_webhook_secret.clone(),
            ),
            (
                crate::protocol::env::ATS_WEBHOOK_SECRET,
                self.ats_webhook_secret.clone(),
            ),
            (crate::protocol::env::NOTIFY_URL, self.notify_url.clone()),
            (
                crate::protocol::env::MANIFEST,
                self.manifest.display().to_string(),
            ),
            (
                crate::protocol::env::STATE_DIR,
                self.state_dir.display().to_string(),
            ),
            (
                crate::protocol::env::TIME_SCALE,
                self.time_scale.to_string(),
            ),
        ];
        if let Some((path, stages)) = &self.policy {
            vars.push((crate::protocol::env::POLICY, path.display().to_string()));
            vars.push((crate::protocol::env::POLICY_STAGES, stages.join(",")));
        }
        vars
    }

    /// The integration's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }
}

fn health_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_default()
}

/// Waits until an integration the harness did not start (`--sut-url`) answers
/// `GET /healthz` with 200.
pub async fn wait_url_ready(url: &str, timeout: Duration) -> Result<(), StartError> {
    let client = health_client();
    let health = format!("{url}/healthz");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(&health).send().await
            && response.status().as_u16() == 200
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StartError::NotReady {
                url: url.to_owned(),
                timeout,
                last_lines: "  (not started by the harness: its output is wherever it runs)"
                    .to_owned(),
            });
        }
        // Polling is the protocol here: the integration has no other way to say it is ready.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Why the integration could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `sh` could not be spawned.
    #[error("cannot start the integration `{command}`")]
    Spawn {
        /// The command.
        command: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The output file could not be created.
    #[error("cannot create {}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// It exited before answering `GET /healthz`.
    #[error(
        "the integration exited ({status}) before `GET {url}/healthz` answered 200; its last lines:\n{last_lines}"
    )]
    Exited {
        /// Its base URL.
        url: String,
        /// How it exited.
        status: ExitStatus,
        /// What it printed last.
        last_lines: String,
    },
    /// It never answered `GET /healthz` with 200.
    #[error("the integration did not answer `GET {url}/healthz` with 200 within {} s; its last lines:\n{last_lines}", timeout.as_secs())]
    NotReady {
        /// Its base URL.
        url: String,
        /// How long the harness waited.
        timeout: Duration,
        /// What it printed last.
        last_lines: String,
    },
}

/// A running integration.
#[derive(Debug)]
pub struct SutProcess {
    command: String,
    child: Child,
    recent: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
    url: String,
}

impl SutProcess {
    /// Starts `command` with `env`, appending its output to `output` and the log, and
    /// waits until `GET /healthz` answers 200 (at most `ready_timeout`).
    pub async fn start(
        command: &str,
        env: &SutEnv,
        output: &Path,
        log: &ObservationLog,
        ready_timeout: Duration,
    ) -> Result<SutProcess, StartError> {
        // A plain file, written from the pumps: a line to the page cache is a short
        // `write`, where tokio's file hands every write to its blocking pool (a thread
        // wake-up per line of a relay that logs twice per event).
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(output)
            .map_err(|source| StartError::Output {
                path: output.to_owned(),
                source,
            })?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .envs(env.vars())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| StartError::Spawn {
                command: command.to_owned(),
                source,
            })?;
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_LINES)));
        let file = Arc::new(Mutex::new(file));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(pump(
                stdout,
                "stdout",
                Arc::clone(&file),
                Arc::clone(&recent),
                log.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(pump(
                stderr,
                "stderr",
                Arc::clone(&file),
                Arc::clone(&recent),
                log.clone(),
            )));
        }
        let mut process = SutProcess {
            command: command.to_owned(),
            child,
            recent,
            readers,
            url: env.url(),
        };
        process.wait_ready(ready_timeout).await?;
        log.append(
            Actor::Harness,
            "integration.ready",
            Entry::detail(json!({"url": process.url, "command": process.command})),
        );
        Ok(process)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), StartError> {
        let client = health_client();
        let health = format!("{}/healthz", self.url);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain_readers().await;
                return Err(StartError::Exited {
                    url: self.url.clone(),
                    status,
                    last_lines: self.last_lines(),
                });
            }
            if let Ok(response) = client.get(&health).send().await
                && response.status().as_u16() == 200
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StartError::NotReady {
                    url: self.url.clone(),
                    timeout,
                    last_lines: self.last_lines(),
                });
            }
            // Polling is the protocol here: the integration has no other way to say it is ready.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The integration's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The last lines it printed, oldest first.
    pub fn last_lines(&self) -> String {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if recent.is_empty() {
            return "  (it printed nothing)".to_owned();
        }
        recent
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills the process group at once (SIGKILL), as a crash would.
    pub async fn kill(mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait().await;
        self.drain_readers().await;
    }

    /// Stops it: SIGTERM to the group, SIGKILL after a grace period.
    pub async fn stop(mut self) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let status = match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                self.signal(Signal::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        self.drain_readers().await;
        status
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            // The group may be gone already; that is what we wanted.
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    async fn drain_readers(&mut self) {
        for reader in self.readers.drain(..) {
            // Output pipes close when the group exits; bound the wait in case a
            // grandchild kept them open.
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
    }
}

impl Drop for SutProcess {
    fn drop(&mut self) {
        // `kill_on_drop` reaches only `sh`; whatever it started lives in the group.
        self.signal(Signal::SIGKILL);
    }
}

async fn pump(
    stream: impl AsyncRead + Unpin,
    name: &'static str,
    file: Arc<Mutex<std::fs::File>>,
    recent: Arc<Mutex<VecDeque<String>>>,
    log: ObservationLog,
) {
    let mut lines = BufReader::new(stream).lines();
    let kind = format!("integration.{name}");
    let mut buffer = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        {
            // One write per line, so the two pumps' lines never interleave.
            buffer.clear();
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
            let mut file = file.lock().unwrap_or_else(|poison| poison.into_inner());
            let _ = std::io::Write::write_all(&mut *file, &buffer);
        }
        {
            let mut recent = recent.lock().unwrap_or_else(|poison| poison.into_inner());
            if recent.len() == RECENT_LINES {
                recent.pop_front();
            }
            recent.push_back(line.clone());
        }
        log.append(
            Actor::Integration,
            &kind,
            Entry::detail(json!({"line": line})),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> SutEnv {
        SutEnv {
            listen: SocketAddr::from(([127, 0, 0, 1], 1)),
            ats_url: "http://127.0.0.1:2".into(),
            ats_token: "t".into(),
            vendor_url: "http://127.0.0.1:3".into(),
            vendor_token: "v".into(),
            vendor_webhook_secret: "whsec_AAAA".into(),
            ats_webhook_secret: "whsec_BBBB".into(),
            notify_url: "http://127.0.0.1:4".into(),
            manifest: dir.join("m.yaml"),
            state_dir: dir.to_owned(),
            time_scale: 60.0,
            policy: None,
        }
    }

    #[test]
    fn every_protocol_variable_is_set() {
        let dir = tempfile::tempdir().expect("temp dir");
        let names: Vec<&str> = env(dir.path())
            .vars()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        for expected in [
            crate::protocol::env::LISTEN,
            "PORT",
            crate::protocol::env::ATS_URL,
            crate::protocol::env::ATS_TOKEN,
            crate::protocol::env::VENDOR_URL,
            crate::protocol::env::VENDOR_TOKEN,
            crate::protocol::env::VENDOR_WEBHOOK_SECRET,
            crate::protocol::env::ATS_WEBHOOK_SECRET,
            crate::protocol::env::NOTIFY_URL,
            crate::protocol::env::MANIFEST,
            crate::protocol::env::STATE_DIR,
            crate::protocol::env::TIME_SCALE,
        ] {
            assert!(names.contains(&expected), "{expected}");
        }
    }

    #[tokio::test]
    async fn an_integration_that_exits_is_reported_with_its_last_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = ObservationLog::to_writer(Box::new(std::io::sink()), "t");
        let err = SutProcess::start(
            "echo starting on $STAGEGATE_LISTEN; echo 'bind: address in use' >&2; exit 3",
            &env(dir.path()),
            &dir.path().join("out.log"),
            &log,
            Duration::from_secs(10),
        )
        .await
        .expect_err("it exits");
        let text = err.to_string();
        assert!(text.contains("exited (exit status: 3)"), "{text}");
        assert!(
            text.contains("starting on 127.0.0.1:1") && text.contains("bind: address in use"),
            "{text}"
        );
        let kept = std::fs::read_to_string(dir.path().join("out.log")).expect("output kept");
        assert!(kept.contains("bind: address in use"));
    }

    #[tokio::test]
    async fn an_integration_that_never_listens_times_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = ObservationLog::to_writer(Box::new(std::io::sink()), "t");
        let err = SutProcess::start(
            "echo waiting; exec sleep 30",
            &env(dir.path()),
            &dir.path().join("out.log"),
            &log,
            Duration::from_millis(300),
        )
        .await
        .expect_err("never ready");
        let text = err.to_string();
        assert!(
            text.contains("did not answer") && text.contains("waiting"),
            "{text}"
        );
    }
}
