//! `stagegate record`: a capture endpoint a team points its vendor's sandbox at.
//!
//! Every delivery, whatever its method or path, is verified against the configured
//! [`scheme`] (when a secret is given), written to the capture file as one JSON line
//! ([`Capture`]: raw body, headers, arrival time, signature validity — never the
//! secret) and only then acknowledged with `200`. The file is owned by one writer
//! thread that appends a group of lines, calls `fdatasync` once for the group and
//! then releases every waiting request: an acknowledged delivery is on disk, so a
//! crash loses at most deliveries the vendor was never told were received (and will
//! retry). A torn last line from a crash is tolerated by `drift` and by a restarted
//! `record`, which starts on a fresh line.
//!
//! Forged or stale deliveries are recorded too (marked `invalid` with the reason) and
//! acknowledged like the others: the capture is evidence, and `drift` skips them.

pub mod scheme;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::mock::{BindError, RunningServer};
use scheme::Verifier;

/// The marker key of a capture line; plain JSON Lines payloads never carry it.
pub const CAPTURE_MARKER: &str = "stagegate_capture";

/// The largest body recorded; larger deliveries are refused with 413.
const BODY_LIMIT: usize = 16 << 20;

/// Lines written between two `fdatasync` calls at most.
const GROUP: usize = 1024;

/// Headers whose values are credentials of the receiving side, never written.
const REDACTED_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// What a signature check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureStatus {
    /// The signature verified.
    Valid,
    /// The signature is absent, malformed, stale or wrong.
    Invalid,
    /// No secret was given, nothing was checked.
    Unchecked,
}

/// One recorded delivery: a line of the capture file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    /// Always 1: marks the line as a capture and versions its shape.
    pub stagegate_capture: u32,
    /// Arrival time, RFC 3339 UTC with milliseconds.
    pub received_at: String,
    /// The HTTP method.
    pub method: String,
    /// The request path and query.
    pub path: String,
    /// Request headers, lowercase names; credentials of the receiver are redacted.
    pub headers: BTreeMap<String, String>,
    /// The signature check's result.
    pub signature: SignatureStatus,
    /// The scheme checked, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Why the signature was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_error: Option<String>,
    /// The raw body, when it is UTF-8 (byte for byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The raw body in base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// A validated `record` configuration.
#[derive(Debug)]
pub struct RecordConfig {
    /// Where to listen (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The capture file, appended to.
    pub out: PathBuf,
    /// The signature check, when a secret is given.
    pub verifier: Option<Verifier>,
}

/// Why recording could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The capture file cannot be opened or prepared.
    #[error("cannot open the capture file {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The listener cannot bind.
    #[error(transparent)]
    Bind(#[from] BindError),
}

struct Job {
    line: Vec<u8>,
    done: oneshot::Sender<io::Result<()>>,
}

#[derive(Clone)]
struct AppState {
    journal: mpsc::Sender<Job>,
    verifier: Option<Arc<Verifier>>,
}

/// A running capture endpoint.
pub struct Recorder {
    server: RunningServer,
    writer: std::thread::JoinHandle<()>,
}

impl Recorder {
    /// Opens the capture file, starts its writer and binds the listener.
    pub async fn start(config: RecordConfig) -> Result<Recorder, RecordError> {
        let file = open_capture(&config.out).map_err(|source| RecordError::Open {
            path: config.out.clone(),
            source,
        })?;
        let (journal, jobs) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("record-writer".into())
            .spawn(move || write_loop(file, jobs))
            .map_err(|source| RecordError::Open {
                path: config.out.clone(),
                source,
            })?;
        let state = AppState {
            journal,
            verifier: config.verifier.map(Arc::new),
        };
        let server = RunningServer::start(router(state), config.listen).await?;
        Ok(Recorder { server, writer })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Stops accepting, lets requests in flight finish, and closes the file.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        // The router (and with it the last journal sender) is gone: the writer ends.
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// The capture endpoint's router, usable without a socket.
fn router(state: AppState) -> Router {
    Router::new()
        .fallback(receive)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Opens `path` for appending; a torn last line (a crash mid-write) is closed first.
fn open_capture(path: &Path) -> io::Result<File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let meta = file.metadata()?;
    // Read-write opens of a FIFO do not block, but a FIFO or a device cannot hold
    // captures that survive a crash, nor be checked for a torn last line.
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file: captures are appended to a regular file; name one (it is created if missing)",
                path.display()
            ),
        ));
    }
    let len = meta.len();
    if len > 0 {
        file.seek(SeekFrom::Start(len - 1))?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
    }
    Ok(file)
}

/// Group commit: write every queued line, one `fdatasync`, then acknowledge them all.
fn write_loop(mut file: File, jobs: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(GROUP);
    let mut buffer = Vec::new();
    while let Ok(first) = jobs.recv() {
        group.push(first);
        while group.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        buffer.clear();
        for job in &group {
            buffer.extend_from_slice(&job.line);
        }
        let result = file.write_all(&buffer).and_then(|()| file.sync_data());
        for job in group.drain(..) {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
            };
            let _ = job.done.send(outcome);
        }
    }
}

async fn receive(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let received_at = chrono::Utc::now();
    let (signature, signature_error) = match &state.verifier {
        None => (SignatureStatus::Unchecked, None),
        Some(verifier) => match verifier.verify(&headers, &body, received_at.timestamp()) {
            Ok(()) => (SignatureStatus::Valid, None),
            Err(err) => (SignatureStatus::Invalid, Some(err.to_string())),
        },
    };
    let (text, base64) = match std::str::from_utf8(&body) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&body)),
        ),
    };
    let capture = Capture {
        stagegate_capture: 1,
        received_at: received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers: header_map(&headers),
        signature,
        scheme: state
            .verifier
            .as_ref()
            .map(|v| v.kind().as_str().to_owned()),
        signature_error,
        body: text,
        body_base64: base64,
    };
    let Ok(mut line) = serde_json::to_vec(&capture) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the capture\n",
        );
    };
    line.push(b'\n');
    let (done, written) = oneshot::channel();
    if state.journal.send(Job { line, done }).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the capture file is closed\n",
        );
    }
    match written.await {
        Ok(Ok(())) => (StatusCode::OK, "recorded\n"),
        // Not acknowledged: the vendor retries, nothing acknowledged is lost.
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot write the capture\n",
        ),
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        let value = if REDACTED_HEADERS.contains(&name.as_str()) {
            "<redacted>".to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.entry(name)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn state_with(
        file: File,
        verifier: Option<Verifier>,
    ) -> (AppState, std::thread::JoinHandle<()>) {
        let (journal, jobs) = mpsc::channel();
        let writer = std::thread::spawn(move || write_loop(file, jobs));
        (
            AppState {
                journal,
                verifier: verifier.map(Arc::new),
            },
            writer,
        )
    }

    #[tokio::test]
    async fn a_delivery_is_on_disk_before_it_is_acknowledged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("captures.jsonl");
        let verifier = Verifier::new(
            scheme::SchemeKind::HmacSha256,
            None,
            "s3cret",
            std::time::Duration::from_secs(300),
        )
        .expect("secret");
        let (state, writer) = state_with(open_capture(&path).expect("open"), Some(verifier));
        let body = br#"{"type":"report.completed"}"#;
        let signature = scheme::sign(scheme::SchemeKind::HmacSha256, "s3cret", "", 0, body);
        let request = axum::http::Request::post("/hooks/checkr?x=1")
            .header("x-hub-signature-256", signature)
            .header("authorization", "Basic dXNlcjpwYXNz")
            .body(axum::body::Body::from(body.to_vec()))
            .expect("request");
        let response = router(state.clone())
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        // Acknowledged, so already in the file, before anything else happens.
        let text = std::fs::read_to_string(&path).expect("capture file");
        let capture: Capture = serde_json::from_str(text.trim_end()).expect("one capture line");
        assert_eq!(capture.signature, SignatureStatus::Valid);
        assert_eq!(
            capture.body.as_deref(),
            Some(std::str::from_utf8(body).expect("utf-8"))
        );
        assert_eq!(capture.path, "/hooks/checkr?x=1");
        assert_eq!(capture.headers["authorization"], "<redacted>");
        assert!(!text.contains("s3cret"), "the secret is never written");
        drop(state);
        writer.join().expect("writer ends with its senders");
    }

    #[test]
    fn a_torn_last_line_is_closed_before_appending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("captures.jsonl");
        std::fs::write(&path, "{\"stagegate_capture\":1}\n{\"stagegate_cap").expect("write");
        let mut file = open_capture(&path).expect("open");
        file.write_all(b"{}\n").expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().last(), Some("{}"));
        assert_eq!(text.lines().count(), 3);
    }
}
