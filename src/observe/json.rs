//! JSON written by hand on the hot paths of a load test: the log writer's record
//! lines and the mock ATS's read answer.
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
