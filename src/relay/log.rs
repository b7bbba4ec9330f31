//! The relay's log: one JSON line per event it receives or processes.
//!
//! Lines carry identifiers and times only — the manifest's `log_fields_required` —
//! never a candidate's name or e-mail, which the relay sees when it reads the ATS.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::manifest::Envelope;

/// Where the relay's JSON lines go.
#[derive(Clone)]
pub struct RelayLog {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    required: Arc<Vec<String>>,
    envelope: Arc<Envelope>,
}

impl std::fmt::Debug for RelayLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLog")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl RelayLog {
    /// A log writing to `out`, carrying `required` fields on every event line.
    pub fn new(out: Box<dyn Write + Send>, required: Vec<String>) -> Self {
        RelayLog {
            out: Arc::new(Mutex::new(out)),
            required: Arc::new(required),
            envelope: Arc::new(Envelope::default()),
        }
    }

    /// The same log, reading event ids from where the manifest's `envelope:` says.
    pub fn with_envelope(mut self, envelope: Envelope) -> Self {
        self.envelope = Arc::new(envelope);
        self
    }

    /// Logs an event's progress: `outcome` is `queued`, `duplicate`, `applied`, ….
    pub fn event(
        &self,
        event: &Value,
        received_at: &str,
        processed_at: Option<&str>,
        outcome: &str,
    ) {
        let envelope = &self.envelope;
        // The protocol's log names, read from where this manifest's events carry them.
        let field = |key: &str| {
            let path = match key {
                "event_id" => Some(&envelope.event_id),
                "ats_candidate_id" => Some(&envelope.candidate_id),
                "idempotency_key" => Some(&envelope.idempotency_key),
                "occurred_at" => Some(&envelope.occurred_at),
                _ => None,
            };
            match path {
                Some(path) => path.lookup(event).cloned().unwrap_or(Value::Null),
                // A dotted `log_fields_required` name logs the value at that path.
                None => crate::contract::path::FieldPath::parse(key)
                    .ok()
                    .and_then(|path| path.lookup(event).cloned())
                    .unwrap_or(Value::Null),
            }
        };
        let mut line = Map::new();
        line.insert(
            "ts".into(),
            json!(crate::observe::format_time(chrono::Utc::now())),
        );
        line.insert("msg".into(), json!("event"));
        line.insert("event_id".into(), field("event_id"));
        line.insert("correlation_id".into(), field("correlation_id"));
        line.insert("ats_candidate_id".into(), field("ats_candidate_id"));
        line.insert("contract".into(), field("type"));
        line.insert("idempotency_key".into(), field("idempotency_key"));
        line.insert("received_at".into(), json!(received_at));
        line.insert("processed_at".into(), json!(processed_at));
        line.insert("outcome".into(), json!(outcome));
        for name in self.required.iter() {
            if !line.contains_key(name) {
                line.insert(name.clone(), field(name));
            }
        }
        self.write(Value::Object(line));
    }

    /// Logs a free-form line (`msg` plus details).
    pub fn note(&self, msg: &str, details: Value) {
        let mut line = json!({"ts": crate::observe::format_time(chrono::Utc::now()), "msg": msg});
        if let (Some(map), Value::Object(extra)) = (line.as_object_mut(), details) {
            map.extend(extra);
        }
        self.write(line);
    }

    fn write(&self, line: Value) {
        let mut out = self.out.lock().unwrap_or_else(|poison| poison.into_inner());
        // A log that cannot be written must not stop the relay from relaying.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
