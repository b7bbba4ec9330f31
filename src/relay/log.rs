//! The relay's log: one JSON line per event it receives or processes.
//!
//! Lines carry identifiers and times only — the manifest's `log_fields_required` —
//! never a candidate's name or e-mail, which the relay sees when it reads the ATS.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::contract::path::FieldPath;
use crate::manifest::Envelope;

/// Where the relay's JSON lines go.
#[derive(Clone)]
pub struct RelayLog {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    required: Arc<Vec<String>>,
    /// An event line's fields in the order they are written (by name, as a JSON
    /// object's keys sort), resolved once instead of on every line.
    fields: Arc<Vec<(String, Field)>>,
}

/// Where an event line's field comes from.
#[derive(Debug, Clone)]
enum Field {
    /// The time the line is written.
    Ts,
    /// The line's kind: `event`.
    Msg,
    /// When the relay received the event.
    ReceivedAt,
    /// When the relay finished it (`null` until then).
    ProcessedAt,
    /// What the relay did with it.
    Outcome,
    /// The value at this path in the event (`null` when absent or not a path).
    At(Option<FieldPath>),
}

impl std::fmt::Debug for RelayLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLog")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// An event line's fields: the protocol's names (read from where this manifest's
/// events carry them), then every `log_fields_required` name not among them (a
/// dotted name logs the value at that path), sorted by name.
fn event_fields(required: &[String], envelope: &Envelope) -> Vec<(String, Field)> {
    let at = |path: &FieldPath| Field::At(Some(path.clone()));
    let parsed = |text: &str| Field::At(FieldPath::parse(text).ok());
    let mut fields = vec![
        ("ts".to_owned(), Field::Ts),
        ("msg".to_owned(), Field::Msg),
        ("event_id".to_owned(), at(&envelope.event_id)),
        ("correlation_id".to_owned(), parsed("correlation_id")),
        ("ats_candidate_id".to_owned(), at(&envelope.candidate_id)),
        ("contract".to_owned(), parsed("type")),
        ("idempotency_key".to_owned(), at(&envelope.idempotency_key)),
        ("received_at".to_owned(), Field::ReceivedAt),
        ("processed_at".to_owned(), Field::ProcessedAt),
        ("outcome".to_owned(), Field::Outcome),
    ];
    for name in required {
        if fields.iter().any(|(known, _)| known == name) {
            continue;
        }
        // The protocol's names are all above but `occurred_at`, read where the
        // envelope says.
        let field = match name.as_str() {
            "occurred_at" => at(&envelope.occurred_at),
            other => parsed(other),
        };
        fields.push((name.clone(), field));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}

/// One event line, serialised straight from the event's values.
struct EventLine<'a> {
    fields: &'a [(String, Field)],
    event: &'a Value,
    ts: &'a str,
    received_at: &'a str,
    processed_at: Option<&'a str>,
    outcome: &'a str,
}

impl serde::Serialize for EventLine<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (name, field) in self.fields {
            match field {
                Field::Ts => map.serialize_entry(name, self.ts)?,
                Field::Msg => map.serialize_entry(name, "event")?,
                Field::ReceivedAt => map.serialize_entry(name, self.received_at)?,
                Field::ProcessedAt => map.serialize_entry(name, &self.processed_at)?,
                Field::Outcome => map.serialize_entry(name, self.outcome)?,
                Field::At(path) => map.serialize_entry(
                    name,
                    path.as_ref()
                        .and_then(|path| path.lookup(self.event))
                        .unwrap_or(&Value::Null),
                )?,
            }
        }
        map.end()
    }
}

impl RelayLog {
    /// A log writing to `out`, carrying `required` fields on every event line.
    pub fn new(out: Box<dyn Write + Send>, required: Vec<String>) -> Self {
        let fields = event_fields(&required, &Envelope::default());
        RelayLog {
            out: Arc::new(Mutex::new(out)),
            required: Arc::new(required),
            fields: Arc::new(fields),
        }
    }

    /// The same log, reading event ids from where the manifest's `envelope:` says.
    pub fn with_envelope(mut self, envelope: Envelope) -> Self {
        self.fields = Arc::new(event_fields(&self.required, &envelope));
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
        let line = EventLine {
            fields: &self.fields,
            event,
            ts: &crate::observe::format_time(chrono::Utc::now()),
            received_at,
            processed_at,
            outcome,
        };
        let mut bytes = Vec::with_capacity(512);
        if serde_json::to_writer(&mut bytes, &line).is_ok() {
            bytes.push(b'\n');
            self.write_bytes(&bytes);
        }
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
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        self.write_bytes(&bytes);
    }

    /// Writes whole lines in one call, so they reach the reader whole.
    fn write_bytes(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|poison| poison.into_inner());
        // A log that cannot be written must not stop the relay from relaying.
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_line_carries_every_field_sorted_by_name() {
        let captured = Captured::default();
        let required = [
            "occurred_at",
            "event_id",
            "payload.stage",
            "missing.path",
            "a..b",
        ]
        .map(String::from)
        .to_vec();
        let log = RelayLog::new(Box::new(captured.clone()), required);
        let event = json!({
            "type": "stage.changed",
            "event_id": "evt_1",
            "idempotency_key": "idk_1",
            "ats_candidate_id": "CAND_1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "payload": {"stage": "onsite", "name": "not logged"},
        });
        log.event(&event, "2026-01-01T00:00:01Z", None, "queued");
        log.event(
            &event,
            "2026-01-01T00:00:01Z",
            Some("2026-01-01T00:00:02Z"),
            "applied",
        );
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2, "one line per call: {text}");
        let mut first = lines[0].clone();
        assert!(first["ts"].is_string(), "stamped");
        first["ts"] = Value::Null;
        assert_eq!(
            first,
            json!({
                "a..b": null,
                "ats_candidate_id": "CAND_1",
                "contract": "stage.changed",
                "correlation_id": null,
                "event_id": "evt_1",
                "idempotency_key": "idk_1",
                "missing.path": null,
                "msg": "event",
                "occurred_at": "2026-01-01T00:00:00Z",
                "outcome": "queued",
                "payload.stage": "onsite",
                "processed_at": null,
                "received_at": "2026-01-01T00:00:01Z",
                "ts": null,
            })
        );
        assert_eq!(lines[1]["processed_at"], "2026-01-01T00:00:02Z");
        // Byte for byte what serialising a JSON object (keys sorted) writes, as the
        // relay's lines always were.
        for (raw, parsed) in text.lines().zip(&lines) {
            assert_eq!(raw, parsed.to_string());
        }
    }
}
