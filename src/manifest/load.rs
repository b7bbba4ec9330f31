//! Reading a manifest in passes: bytes → text → YAML (placed) → typed model.
//!
//! Each pass fails with placed diagnostics and never panics; the semantic pass and
//! the resolve pass live in `validate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::diagnostic::{
    Code, ManifestDiagnostic, ManifestError, Reporter, SourceText, Target, invalid,
};
use super::span::{KeyPath, Position, SpanIndex};
use crate::limits::MANIFEST_BYTES;
use crate::suggest::did_you_mean;

/// Which format a YAML document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A release-gate manifest (`version`, `release_gate`, `contracts`, …).
    ReleaseGate,
    /// A hiring policy (`policyVersion`, `atsEvents`, …).
    HiringPolicy,
}

impl DocumentKind {
    /// The format's name for messages.
    pub fn describe(self) -> &'static str {
        match self {
            DocumentKind::ReleaseGate => "release-gate manifest",
            DocumentKind::HiringPolicy => "hiring policy",
        }
    }
}

/// A manifest's text, its node places, and the folder relative paths start from.
pub(crate) struct Parsed {
    pub(crate) path: PathBuf,
    pub(crate) source: SourceText,
    pub(crate) spans: SpanIndex,
}

/// Reads a file as UTF-8 text, refusing files over [`MANIFEST_BYTES`] and anything
/// that is not a regular file (a FIFO or a device would never end).
pub(crate) fn read_text(path: &Path) -> Result<SourceText, ManifestError> {
    let read_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::FileTooLarge => ManifestError::TooLarge {
            path: path.to_owned(),
            limit: MANIFEST_BYTES,
        },
        _ => ManifestError::Read {
            path: path.to_owned(),
            source,
        },
    };
    let bytes = crate::limits::read_regular(path, MANIFEST_BYTES).map_err(read_error)?;
    text_from_bytes(path, bytes)
}

/// Checks that bytes are UTF-8 text YAML can hold: within [`MANIFEST_BYTES`], not
/// UTF-16, no NUL byte (yaml-rust2 would take it for the end of the stream).
pub(crate) fn text_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<SourceText, ManifestError> {
    if bytes.len() > MANIFEST_BYTES.as_usize() {
        return Err(ManifestError::TooLarge {
            path: path.to_owned(),
            limit: MANIFEST_BYTES,
        });
    }
    if let Some(encoding) = crate::check::input::utf16_encoding(&bytes) {
        return Err(ManifestError::Utf16 {
            path: path.to_owned(),
            encoding,
        });
    }
    let place = |valid: &[u8]| {
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let column = valid.len() - valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    };
    if let Some(nul) = memchr::memchr(0, &bytes) {
        let (line, column) = place(&bytes[..nul]);
        return Err(ManifestError::NulByte {
            path: path.to_owned(),
            line,
            column,
        });
    }
    let text = String::from_utf8(bytes).map_err(|err| {
        let (line, column) = place(&err.as_bytes()[..err.utf8_error().valid_up_to()]);
        ManifestError::NotUtf8 {
            path: path.to_owned(),
            line,
            column,
        }
    })?;
    Ok(SourceText {
        name: path.display().to_string(),
        text: Arc::from(text),
    })
}

/// Parses the YAML and indexes its places; rejects empty and multi-document files.
pub(crate) fn parse_yaml(path: &Path, source: SourceText) -> Result<Parsed, ManifestError> {
    let spans = match SpanIndex::build(&source.text) {
        Ok(spans) => spans,
        Err(err) => {
            let empty = SpanIndex::default();
            let mut reporter = Reporter::new(&source, &empty);
            let (label, help) = if err.limit {
                (
                    "too deep",
                    "manifests need a few levels; flatten this structure",
                )
            } else {
                (
                    "here",
                    "check the indentation and the quoting around this line",
                )
            };
            reporter
                .at_position(Code::Syntax, KeyPath::root(), err.at, err.message, label)
                .help(help);
            let diagnostics = reporter.diagnostics;
            return Err(invalid(&source, diagnostics));
        }
    };
    if spans.documents() == 0 {
        return Err(ManifestError::Empty {
            path: path.to_owned(),
        });
    }
    let parsed = Parsed {
        path: path.to_owned(),
        source,
        spans,
    };
    let mut reporter = Reporter::new(&parsed.source, &parsed.spans);
    for duplicate in parsed.spans.duplicates() {
        let key = duplicate.path.last_key().unwrap_or_default();
        reporter
            .at_position(
                Code::Duplicate,
                duplicate.path.clone(),
                duplicate.at,
                format!("`{}` is written twice", duplicate.path),
                "written again here",
            )
            .help(format!(
                "keep one `{key}` (the first is at line {}, column {}); YAML keeps only the last",
                duplicate.first.line, duplicate.first.column
            ));
    }
    for (path, at) in parsed.spans.null_items() {
        reporter
            .at_position(
                Code::Value,
                path.clone(),
                *at,
                format!("`{path}` is null"),
                "null",
            )
            .help("write the value (quote it, `\"null\"`, if that is the text meant), or remove the item");
    }
    if parsed.spans.documents() > 1 {
        reporter
            .error(
                Code::Syntax,
                &KeyPath::root(),
                Target::Value,
                "a manifest is one YAML document, found several",
                "here",
            )
            .help("remove the `---` separators, or split the documents into files");
    } else if !parsed.spans.root_is_mapping() {
        reporter
            .error(
                Code::Shape,
                &KeyPath::root(),
                Target::Value,
                "a manifest is a YAML mapping of keys to values",
                "not a mapping",
            )
            .help("start with `version: \"1.3\"`");
    }
    if reporter.has_errors() {
        let diagnostics = reporter.diagnostics;
        return Err(invalid(&parsed.source, diagnostics));
    }
    Ok(parsed)
}

/// Guesses a document's format from its top-level keys.
pub(crate) fn detect_kind(spans: &SpanIndex) -> Option<DocumentKind> {
    let keys = spans.root_keys();
    if keys
        .iter()
        .any(|k| k == "policyVersion" || k == "atsEvents")
    {
        Some(DocumentKind::HiringPolicy)
    } else if keys
        .iter()
        .any(|k| k == "release_gate" || k == "contracts" || k == "version")
    {
        Some(DocumentKind::ReleaseGate)
    } else {
        None
    }
}

/// Deserialises the typed model, collecting every unknown key with a suggestion.
pub(crate) fn deserialize<T: DeserializeOwned + JsonSchema>(
    parsed: &Parsed,
    reporter: &mut Reporter<'_>,
) -> Option<T> {
    let mut unknown: Vec<KeyPath> = Vec::new();
    let deserializer = serde_yaml::Deserializer::from_str(&parsed.source.text);
    let result: Result<T, _> =
        serde_ignored::deserialize(deserializer, |path| unknown.push(key_path(&path)));
    let schema = schemars::schema_for!(T);
    for path in &unknown {
        let key = path.last_key().unwrap_or_default().to_owned();
        let parent = path.parent().unwrap_or_default();
        let known = known_keys(schema.as_value(), &parent);
        let where_ = if parent.0.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in `{parent}`")
        };
        let suggestion = did_you_mean(&key, known.iter().map(String::as_str));
        let label = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => "unknown key".to_owned(),
        };
        let diagnostic = reporter.error(
            Code::UnknownKey,
            path,
            Target::Key,
            format!("unknown key `{key}` {where_}"),
            label,
        );
        let keys = known
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        match suggestion {
            Some(s) => diagnostic.help(format!(
                "rename it to `{s}`; the keys allowed here are {keys}"
            )),
            None if known.is_empty() => diagnostic.help("remove it"),
            None => diagnostic.help(format!("remove it; the keys allowed here are {keys}")),
        };
    }
    match result {
        Ok(value) => Some(value),
        Err(err) => {
            let (path, message) = split_serde_message(&err.to_string());
            let at = err
                .location()
                .map(|l| Position {
                    line: l.line(),
                    column: l.column(),
                    offset: 0,
                })
                .unwrap_or(Position {
                    line: 1,
                    column: 1,
                    offset: 0,
                });
            let hint = shape_hint(&message);
            let diagnostic = reporter.at_position(Code::Shape, path, at, message, "here");
            if let Some(hint) = hint {
                diagnostic.help(hint);
            }
            None
        }
    }
}

fn key_path(path: &serde_ignored::Path<'_>) -> KeyPath {
    use serde_ignored::Path as P;
    match path {
        P::Root => KeyPath::root(),
        P::Seq { parent, index } => key_path(parent).index(*index),
        P::Map { parent, key } => key_path(parent).key(key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

/// Splits serde_yaml's `path: message at line L column C` into a key path and a message.
fn split_serde_message(text: &str) -> (KeyPath, String) {
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    };
    if let Some((prefix, message)) = text.split_once(": ")
        && !prefix.contains(' ')
        && !prefix.is_empty()
    {
        return (parse_display_path(prefix), message.to_owned());
    }
    (KeyPath::root(), text.to_owned())
}

fn parse_display_path(text: &str) -> KeyPath {
    let mut path = KeyPath::root();
    for part in text.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            path = path.key(key);
        }
        for index in pieces {
            if let Ok(n) = index.trim_end_matches(']').parse() {
                path = path.index(n);
            }
        }
    }
    path
}

fn shape_hint(message: &str) -> Option<String> {
    if message.starts_with("missing field") {
        Some("add the key; manifests/release-gate.yaml shows every key in place".into())
    } else if message.starts_with("unknown variant") {
        Some("use one of the values listed".into())
    } else if message.starts_with("invalid type") {
        Some("change the value to the type expected".into())
    } else {
        None
    }
}

/// The keys a JSON Schema allows in the object at `path` (for suggestions).
fn known_keys(schema: &Value, path: &KeyPath) -> Vec<String> {
    use super::span::Segment;
    let mut node = resolve(schema, schema);
    for segment in &path.0 {
        let next = match segment {
            // A map's keys are free (`checks:`), its values share one schema.
            Segment::Key(k) => node
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object())),
            Segment::Index(_) => node.get("items"),
        };
        match next {
            Some(n) => node = resolve(schema, n),
            None => return Vec::new(),
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

/// Follows `$ref` and `anyOf`/`oneOf` (as schemars writes `Option<T>`) to an object schema.
fn resolve<'s>(root: &'s Value, mut node: &'s Value) -> &'s Value {
    for _ in 0..16 {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let target = reference
                .strip_prefix('#')
                .and_then(|pointer| root.pointer(pointer));
            match target {
                Some(t) => node = t,
                None => return node,
            }
            continue;
        }
        let alternatives = node
            .get("anyOf")
            .or_else(|| node.get("oneOf"))
            .and_then(Value::as_array);
        if let Some(alternative) = alternatives.and_then(|alts| {
            alts.iter()
                .find(|a| a.get("type") != Some(&Value::from("null")))
        }) {
            node = alternative;
            continue;
        }
        return node;
    }
    node
}

/// Errors plus warnings of a manifest that loaded.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The loaded value.
    pub value: T,
    /// Problems worth fixing that did not stop the load.
    pub warnings: Vec<ManifestDiagnostic>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_split_into_path_and_text() {
        let (path, message) = split_serde_message(
            "contracts[0].on_failure.severity: unknown variant `x`, expected `warn` at line 4 column 7",
        );
        assert_eq!(path.to_string(), "contracts[0].on_failure.severity");
        assert_eq!(message, "unknown variant `x`, expected `warn`");
        let (path, message) = split_serde_message("missing field `name` at line 2 column 3");
        assert!(path.0.is_empty());
        assert_eq!(message, "missing field `name`");
    }
}
