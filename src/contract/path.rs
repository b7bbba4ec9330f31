//! Dotted field paths: `verification.result` names `{"verification": {"result": …}}`.
//!
//! A path is parsed once and then used for lookups, JSON Pointers in reports and
//! nesting in generated schemas, so every consumer agrees on what a path means.

use std::fmt;

use serde_json::Value;

/// A validated dotted path into a JSON object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath {
    text: String,
}

/// Why a dotted path is malformed, with the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct PathError {
    /// Byte offset inside the path text where the problem starts.
    pub offset: usize,
    /// A lowercase description of the problem.
    pub reason: String,
}

/// Whether `c` may appear inside one segment of a field path.
pub(crate) fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl FieldPath {
    /// Parses `a.b.c`: non-empty segments of letters, digits, `_` and `-`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError {
                offset: 0,
                reason: "empty field path".into(),
            });
        }
        let mut segment_start = 0;
        for (i, c) in text.char_indices() {
            if c == '.' {
                if i == segment_start {
                    return Err(PathError {
                        offset: i,
                        reason: "empty segment in field path (two dots, or a leading dot)".into(),
                    });
                }
                segment_start = i + 1;
            } else if !is_segment_char(c) {
                return Err(PathError {
                    offset: i,
                    reason: format!(
                        "`{c}` cannot appear in a field path (segments use letters, digits, `_` and `-`, joined by `.`)"
                    ),
                });
            }
        }
        if segment_start == text.len() {
            return Err(PathError {
                offset: text.len() - 1,
                reason: "field path ends with a dot".into(),
            });
        }
        Ok(FieldPath {
            text: text.to_owned(),
        })
    }

    /// A single-segment path from a name known to be valid (a built-in default).
    pub(crate) fn known(text: &'static str) -> Self {
        debug_assert!(FieldPath::parse(text).is_ok(), "{text}");
        FieldPath {
            text: text.to_owned(),
        }
    }

    /// The path as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path's segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.text.split('.')
    }

    /// The value at this path, if every segment is present and the value is not `null`.
    pub fn lookup<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        let mut current = value;
        for segment in self.segments() {
            current = current.as_object()?.get(segment)?;
        }
        (!current.is_null()).then_some(current)
    }

    /// The object holding this path's last segment, and that segment's name, when
    /// every parent is present and an object (the field itself may be absent).
    pub fn parent_mut<'v>(
        &self,
        value: &'v mut Value,
    ) -> Option<(&'v mut serde_json::Map<String, Value>, &str)> {
        let (parents, leaf) = match self.text.rsplit_once('.') {
            Some((parents, leaf)) => (Some(parents), leaf),
            None => (None, self.text.as_str()),
        };
        let mut node = value;
        for segment in parents.into_iter().flat_map(|p| p.split('.')) {
            node = node.get_mut(segment)?;
        }
        Some((node.as_object_mut()?, leaf))
    }

    /// The RFC 6901 JSON Pointer of this path (`/verification/result`).
    pub fn json_pointer(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1);
        for segment in self.segments() {
            out.push('/');
            // Segment characters never include `~` or `/`, so no escaping is needed.
            out.push_str(segment);
        }
        out
    }

    /// Whether `other` lies strictly inside this path (`a` is a parent of `a.b`).
    pub fn is_parent_of(&self, other: &FieldPath) -> bool {
        other.text.len() > self.text.len()
            && other.text.starts_with(&self.text)
            && other.text.as_bytes()[self.text.len()] == b'.'
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn parent_mut_reaches_the_holding_object() {
        let path = |p: &str| FieldPath::parse(p).expect("path");
        let mut value = json!({"a": {"b": 1}, "c": 2, "s": "x"});
        let (nested, flat) = (path("a.b"), path("c"));
        let (map, leaf) = nested.parent_mut(&mut value).expect("found");
        assert_eq!((leaf, map.get(leaf)), ("b", Some(&json!(1))));
        let (map, leaf) = flat.parent_mut(&mut value).expect("found");
        assert_eq!((leaf, map.get(leaf)), ("c", Some(&json!(2))));
        assert!(
            path("a.z").parent_mut(&mut value).is_some(),
            "an absent leaf"
        );
        assert!(
            path("z.b").parent_mut(&mut value).is_none(),
            "an absent parent"
        );
        assert!(
            path("s.b").parent_mut(&mut value).is_none(),
            "a parent that is no object"
        );
    }

    #[test]
    fn parses_and_looks_up_nested_fields() {
        let path = FieldPath::parse("verification.session_id").expect("valid path");
        let payload = json!({"verification": {"session_id": "s1"}});
        assert_eq!(path.lookup(&payload), Some(&json!("s1")));
        assert_eq!(path.json_pointer(), "/verification/session_id");
    }

    #[test]
    fn null_and_non_object_parents_count_as_missing() {
        let path = FieldPath::parse("a.b").expect("valid path");
        assert_eq!(path.lookup(&json!({"a": {"b": null}})), None);
        assert_eq!(path.lookup(&json!({"a": "text"})), None);
        assert_eq!(path.lookup(&json!({})), None);
    }

    #[test]
    fn rejects_malformed_paths_with_an_offset() {
        // (input, offset of the problem, why it is wrong)
        let rows = [
            ("", 0, "nothing to name"),
            (".a", 0, "leading dot"),
            ("a..b", 2, "two dots"),
            ("a.", 1, "trailing dot"),
            ("a b", 1, "space inside"),
            ("a/b", 1, "slash is JSON Pointer syntax, not a path"),
        ];
        for (input, offset, why) in rows {
            let err = FieldPath::parse(input).expect_err(why);
            assert_eq!(err.offset, offset, "{input:?}: {why}");
        }
    }

    #[test]
    fn parent_relation_respects_segment_boundaries() {
        let a = FieldPath::parse("a").expect("valid");
        let ab = FieldPath::parse("a.b").expect("valid");
        let abc = FieldPath::parse("abc").expect("valid");
        assert!(a.is_parent_of(&ab));
        assert!(!a.is_parent_of(&abc));
        assert!(!ab.is_parent_of(&a));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(text in "\\PC{0,24}") {
            if let Ok(path) = FieldPath::parse(&text) {
                prop_assert_eq!(path.as_str(), text.as_str());
                prop_assert!(path.segments().all(|s| !s.is_empty()));
            }
        }

        #[test]
        fn well_formed_paths_always_parse(segments in proptest::collection::vec("[a-z0-9_-]{1,8}", 1..5)) {
            let text = segments.join(".");
            let path = FieldPath::parse(&text).expect("generated paths are well formed");
            prop_assert_eq!(path.segments().count(), segments.len());
        }
    }
}
