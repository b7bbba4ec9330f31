//! JSON written by hand on the hot paths of a load test: the log writer's record
//! lines, the sender's record details ([`Object`]) and the mock ATS's read answer.
//!
//! serde_json escapes every string byte by byte through a table, keys included; a
//! record line is mostly fixed keys, hex digests and plain ASCII, so that was most
//! of the writer's time after SHA-256. These helpers write the very bytes serde_json
//! writes (a property test checks): a string that needs no escape is copied whole,
//! anything else goes through serde_json.

use serde::Serialize;

/// Appends `text` as a JSON string, byte for byte as `serde_json::to_writer` would:
/// `"`, `\` and control characters escaped, everything else (non-ASCII, DEL) as is.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // No early exit, so the scan vectorises; the strings are short.
    let escape = bytes.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escape {
        write_serde(out, text);
    } else {
        write_plain(out, text);
    }
}

/// Appends `text`, which by construction needs no escape (hex digests, RFC 3339
/// times, HTTP method tokens), as a JSON string without scanning it.
pub(crate) fn write_plain(out: &mut Vec<u8>, text: &str) {
    debug_assert!(
        !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'),
        "{text:?} needs escaping"
    );
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Appends `text` as a JSON string, or `null`.
pub(crate) fn write_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => write_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends any value as serde_json writes it (numbers, enums, `Value`s).
pub(crate) fn write_serde<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing into memory cannot fail, and the callers' values (numbers, strings,
    // unit enums, `Value`s with string keys) always serialise.
    let _ = serde_json::to_writer(out, value);
}

/// A JSON object written field by field, for a record's `detail` on a hot path:
/// byte for byte what a `serde_json::Value` map of the same fields writes, given the
/// fields in sorted key order (a `Value` map keeps its keys sorted; debug builds
/// check the order). Keys are fixed names that need no escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    /// `{` and the fields so far; the closing brace is written with them.
    out: Vec<u8>,
    /// The last key written, for the order check.
    last: &'static str,
}

impl Object {
    /// An empty object with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        Object { out, last: "" }
    }

    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(
            self.out.len() == 1 || key > self.last,
            "{key:?} after {:?}: a Value map writes its keys sorted",
            self.last
        );
        self.last = key;
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        write_plain(&mut self.out, key);
        self.out.push(b':');
        &mut self.out
    }

    /// Adds a string field.
    pub(crate) fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        write_str(self.key(key), value);
        self
    }

    /// Adds an unsigned integer field.
    pub(crate) fn u64(&mut self, key: &'static str, value: u64) -> &mut Self {
        write_serde(self.key(key), &value);
        self
    }

    /// Adds a signed integer field.
    pub(crate) fn i64(&mut self, key: &'static str, value: i64) -> &mut Self {
        write_serde(self.key(key), &value);
        self
    }

    /// Adds a boolean field.
    pub(crate) fn bool(&mut self, key: &'static str, value: bool) -> &mut Self {
        self.key(key)
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// Adds an array of strings.
    pub(crate) fn strs<'a>(
        &mut self,
        key: &'static str,
        values: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        let out = self.key(key);
        out.push(b'[');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, value);
        }
        out.push(b']');
        self
    }

    /// Appends the object, closed, to `out`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.out);
        out.push(b'}');
    }

    /// The object as JSON text.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.out.len() + 1);
        self.write(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        // (text, why)
        let rows = [
            ("", "empty"),
            ("CAND_canary_001", "plain ASCII"),
            ("Zoë Ğürsoy", "non-ASCII is not escaped"),
            ("a\"b\\c", "quote and backslash"),
            ("tab\there\nnewline\u{1}\u{1f}", "control characters"),
            (
                "del \u{7f} and \u{2028}",
                "DEL and line separator are not escaped",
            ),
        ];
        for (text, why) in rows {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).expect("serialises"), "{why}");
        }
        let mut out = Vec::new();
        write_opt_str(&mut out, None);
        assert_eq!(out, b"null");
    }

    #[test]
    fn objects_are_written_as_value_maps_write_them() {
        // (object, the Value it stands for, why)
        let mut fields = Object::with_capacity(0);
        fields
            .bool("a", false)
            .i64("b", -7)
            .strs("c", ["x", "y \"z\""])
            .str("d", "ü\n")
            .u64("e", u64::MAX)
            .strs("f", []);
        let rows = [
            (Object::with_capacity(8), serde_json::json!({}), "empty"),
            (
                fields,
                serde_json::json!({
                    "a": false, "b": -7, "c": ["x", "y \"z\""], "d": "ü\n",
                    "e": u64::MAX, "f": [],
                }),
                "every kind of field, text that needs escaping",
            ),
        ];
        for (object, value, why) in rows {
            let expected = serde_json::to_vec(&value).expect("serialises");
            assert_eq!(object.to_json(), expected, "{why}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(text in any::<String>(), ascii in "[ -~\t\n]{0,40}") {
            for text in [text.as_str(), ascii.as_str()] {
                let mut out = b"x".to_vec();
                write_str(&mut out, text);
                let mut expected = b"x".to_vec();
                expected.extend(serde_json::to_vec(text).expect("serialises"));
                prop_assert_eq!(out, expected);
            }
        }
    }
}
