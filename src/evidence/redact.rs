//! Redaction of personal data from what an evidence pack holds: the sandbox people's
//! names and e-mail addresses (from the run's plan), as written, lower-cased or
//! JSON-escaped, and any e-mail address at all.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use serde_json::Value;

use crate::run::plan::Plan;

/// What replaces a redacted span.
pub const MARKER: &str = "[redacted]";

/// Replaces personal data in strings.
#[derive(Debug, Clone)]
pub struct Redactor {
    people: Option<AhoCorasick>,
    email: Regex,
}

impl Redactor {
    /// A redactor for the plan's people (all of them: a line may name another
    /// candidate), and for e-mail addresses whatever the plan says.
    pub fn new(plan: Option<&Plan>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for text in plan
            .into_iter()
            .flat_map(|p| &p.candidates)
            .flat_map(|c| &c.pii)
            .map(|text| text.as_str())
        {
            if text.trim().is_empty() {
                continue;
            }
            needles.push(text.to_owned());
            // Inside a JSON string (an integration's output line), as escaped.
            let escaped = serde_json::to_string(text).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            if escaped != text {
                needles.push(escaped.to_owned());
            }
            let ascii_escaped = escape_non_ascii(text);
            if ascii_escaped != text {
                needles.push(ascii_escaped);
            }
        }
        let people = (!needles.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&needles)
                    .ok()
            })
            .flatten();
        Redactor {
            people,
            email: EMAIL.clone(),
        }
    }

    /// The text with every name and address replaced by [`MARKER`].
    pub fn text(&self, text: &str) -> Option<String> {
        let mut out = match &self.people {
            Some(people) if people.is_match(text) => {
                people.replace_all(text, &vec![MARKER; people.patterns_len()])
            }
            _ => text.to_owned(),
        };
        if self.email.is_match(&out) {
            out = self.email.replace_all(&out, MARKER).into_owned();
        }
        (out != text).then_some(out)
    }

    /// Redacts every string of a JSON value in place; whether anything changed.
    pub fn value(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) => match self.text(s) {
                Some(redacted) => {
                    *s = redacted;
                    true
                }
                None => false,
            },
            Value::Array(items) => items.iter_mut().fold(false, |any, v| self.value(v) | any),
            Value::Object(map) => map.values_mut().fold(false, |any, v| self.value(v) | any),
            _ => false,
        }
    }
}

/// Any e-mail address.
static EMAIL: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
        .expect("a constant pattern compiles")
});

/// `é` as `\u00e9`, as some JSON writers escape it.
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Whether `redacted` is `original` with some spans replaced by [`MARKER`]: each
/// string that differs must match with every marker standing for some text.
pub fn consistent(redacted: &Value, original: &Value) -> bool {
    match (redacted, original) {
        (Value::String(r), Value::String(o)) => r == o || matches_with_markers(r, o),
        (Value::Array(r), Value::Array(o)) => {
            r.len() == o.len() && r.iter().zip(o).all(|(r, o)| consistent(r, o))
        }
        (Value::Object(r), Value::Object(o)) => {
            r.len() == o.len()
                && r.iter()
                    .all(|(k, v)| o.get(k).is_some_and(|ov| consistent(v, ov)))
        }
        (r, o) => r == o,
    }
}

fn matches_with_markers(redacted: &str, original: &str) -> bool {
    let pieces: Vec<&str> = redacted.split(MARKER).collect();
    if pieces.len() < 2 {
        return false;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !original.starts_with(first) || !original[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &original[first.len()..original.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_addresses_go_in_every_spelling() {
        let plan = crate::trace::fixture::plan();
        let r = Redactor::new(Some(&plan));
        // (input, expected, why)
        let rows = [
            (
                "Esther Wiegand applied",
                Some("[redacted] applied"),
                "a name",
            ),
            ("esther wiegand", Some("[redacted]"), "lower-cased"),
            (
                "mail esther.wiegand@example.net",
                Some("mail [redacted]"),
                "an e-mail",
            ),
            (
                "x@corp.example.org wrote",
                Some("[redacted] wrote"),
                "any e-mail, planned or not",
            ),
            ("CAND_b_du evt_b1", None, "ids are not personal data"),
        ];
        for (input, expected, why) in rows {
            assert_eq!(r.text(input).as_deref(), expected, "{why}");
        }
        let mut value = json!({"line": "{\"name\":\"Esther Wiegand\"}", "n": 1});
        assert!(r.value(&mut value));
        assert_eq!(value["line"], "{\"name\":\"[redacted]\"}");
    }

    #[test]
    fn a_redacted_value_is_consistent_only_with_its_original() {
        let original = json!({"line": "name Esther Wiegand, id CAND_b_du", "status": 200});
        let redacted = json!({"line": "name [redacted], id CAND_b_du", "status": 200});
        assert!(consistent(&redacted, &original));
        let other = json!({"line": "name Esther Wiegand, id CAND_x_du", "status": 200});
        assert!(
            !consistent(&redacted, &other),
            "text outside the marker differs"
        );
        let status = json!({"line": "name Esther Wiegand, id CAND_b_du", "status": 500});
        assert!(
            !consistent(&redacted, &status),
            "numbers are never redacted"
        );
    }
}
