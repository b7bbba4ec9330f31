//! A borrowed JSON tree: what `drift` walks each payload as.
//!
//! `serde_json::Value` allocates a `String` for every key and string and a B-tree for
//! every object; `drift` only reads a payload once and forgets it. [`Node`] borrows
//! keys and strings from the input (a string is copied only when it has escapes) and
//! keeps an object as a vector, sorted by key with the last of duplicate keys kept:
//! the same entries in the same order as `Value`'s map, so a walk sees exactly what it
//! saw over `Value` (the parser, its recursion limit and its errors are serde_json's).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// One JSON value, borrowing from the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(Number),
    /// A string.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Node<'a>>),
    /// An object: entries sorted by key, each key once (the last one written wins).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Parses one JSON document (trailing whitespace allowed, nothing else).
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<Node<'a>> {
        // One UTF-8 check of the whole text is cheaper than one per string, which is
        // what parsing bytes costs; text that is not UTF-8 fails as bytes do.
        match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    /// Borrows a `Value` as a tree (its maps are already sorted and unique).
    pub fn from_value(value: &'a Value) -> Node<'a> {
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::String(Cow::Borrowed(s)),
            Value::Array(items) => Node::Array(items.iter().map(Node::from_value).collect()),
            Value::Object(map) => Node::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The same value as a `serde_json::Value` (for rendering rare cases as JSON).
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.to_string()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// The value of `key`, when this is an object holding it.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(entries) => entries
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
                .map(|i| &entries[i].1),
            _ => None,
        }
    }

    /// The value at a dotted path when every segment is present and it is not `null`
    /// (`FieldPath::lookup`'s rule).
    pub fn lookup(&self, path: &crate::contract::path::FieldPath) -> Option<&Node<'a>> {
        let mut current = self;
        for segment in path.segments() {
            current = current.get(segment)?;
        }
        (!current.is_null()).then_some(current)
    }

    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        // As `Value` does: a float JSON cannot hold becomes null.
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        // `Value`'s map order: by key; of a key written twice, the last write.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            entries.reverse();
            // Stable sort then reverse: within a key, the last write comes first.
            entries.dedup_by(|later, kept| later.0 == kept.0);
            entries.reverse();
        }
        Ok(Node::Object(entries))
    }
}

/// A key, borrowed from the input unless it has escapes (serde's own `Cow<str>`
/// always copies).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_holds_what_a_value_holds() {
        // Duplicate keys (last wins), escapes, every number kind, nesting, unsorted keys.
        let texts = [
            r#"{"b":1,"a":[true,null,{"z":"x\"y","y":-2}],"b":2.5,"c":"\u00e9","b":18446744073709551615}"#,
            r#"[1e300, 0.1, -0, "", {}]"#,
            r#"{"k":1,"k":2,"k":3}"#,
            r#""plain""#,
        ];
        for text in texts {
            let value: Value = serde_json::from_str(text).expect("JSON");
            let node = Node::parse(text.as_bytes()).expect("JSON");
            assert_eq!(node.to_value(), value, "{text}");
            assert_eq!(Node::from_value(&value), node, "{text}");
        }
    }

    #[test]
    fn malformed_text_fails_as_it_does_for_value() {
        for text in ["{\"a\":1} x", "{\"a\":", "[", "nul", &"[".repeat(200)] {
            let value = serde_json::from_str::<Value>(text)
                .map(|_| ())
                .map_err(|e| e.to_string());
            let node = Node::parse(text.as_bytes())
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(node, value, "{text}");
        }
    }

    #[test]
    fn lookup_follows_field_path_rules() {
        let node = Node::parse(br#"{"a":{"b":null,"c":"x"}}"#).expect("JSON");
        let path = |p| crate::contract::path::FieldPath::parse(p).expect("path");
        assert_eq!(node.lookup(&path("a.c")).and_then(Node::as_str), Some("x"));
        assert!(node.lookup(&path("a.b")).is_none(), "null counts as absent");
        assert!(node.lookup(&path("a.d")).is_none());
    }
}
