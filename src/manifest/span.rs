//! Where every key and value of a YAML document stands, by key path.
//!
//! serde_yaml locates only the first deserialisation error; the semantic passes need
//! the place of any node (`contracts[0].assertions[2]`), including a column inside a
//! quoted string. This index is built once from yaml-rust2's marked event stream.
//!
//! The events are pulled one at a time (yaml-rust2's own `load` recurses once per
//! nesting level, which a deep enough file turns into a stack overflow), nesting stops
//! at [`crate::limits::MANIFEST_DEPTH`], and on the way the index notes what serde
//! would silently accept: a key written twice in one mapping (the last would win) and
//! a `null` sequence item (it would become the string "null").

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path from the document root to a node, shown as `contracts[0].on_failure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    /// The empty path (the document root).
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path with a key appended.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        KeyPath(segments)
    }

    /// This path with an index appended.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        KeyPath(segments)
    }

    /// The enclosing path, if any.
    pub fn parent(&self) -> Option<KeyPath> {
        let (_, rest) = self.0.split_last()?;
        Some(KeyPath(rest.to_vec()))
    }

    /// The last key of the path, if it ends in a key.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A place in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte offset from the start of the text.
    pub offset: usize,
}

/// Where a scalar's text starts and how it is quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalarPlace {
    /// Where the node starts (at the opening quote for a quoted scalar).
    pub start: Position,
    /// Length in bytes of the node as written, when it is on one line.
    pub len: usize,
    /// Whether the scalar is quoted (its content starts one character later).
    pub quoted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Option<Position>,
    value: ScalarPlace,
}

/// The index of node places of one YAML document.
#[derive(Debug, Default)]
pub struct SpanIndex {
    entries: HashMap<KeyPath, Entry>,
    documents: usize,
    root_is_mapping: bool,
    root_keys: Vec<String>,
    duplicates: Vec<Duplicate>,
    null_items: Vec<(KeyPath, Position)>,
}

/// A key written a second time in the same mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The key's path.
    pub path: KeyPath,
    /// Where the key is written again.
    pub at: Position,
    /// Where it was first written.
    pub first: Position,
}

/// Why a text could not be indexed, placed.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub at: Position,
    /// What is wrong.
    pub message: String,
    /// Whether a limit stopped the parse (the text may be valid YAML).
    pub limit: bool,
}

impl SpanIndex {
    /// Parses `text` and indexes every node.
    pub fn build(text: &str) -> Result<SpanIndex, SyntaxError> {
        let lines = LineTable::new(text);
        let mut builder = Builder {
            lines: &lines,
            text,
            index: SpanIndex::default(),
            stack: Vec::new(),
        };
        let mut parser = Parser::new_from_str(text);
        let depth = crate::limits::MANIFEST_DEPTH;
        loop {
            let (event, marker) = parser.next_token().map_err(|err| {
                // yaml-rust2's scanner has its own bound on flow nesting, met first
                // when the brackets come faster than the events.
                let limit = err.info() == "recursion limit exceeded";
                SyntaxError {
                    at: lines.position(err.marker()),
                    message: if limit {
                        format!("nested deeper than {depth}")
                    } else {
                        format!("invalid YAML: {}", err.info())
                    },
                    limit,
                }
            })?;
            match event {
                Event::StreamEnd => break,
                Event::MappingStart(..) | Event::SequenceStart(..)
                    if builder.stack.len() >= depth.as_usize() =>
                {
                    return Err(SyntaxError {
                        at: lines.position(&marker),
                        message: format!("nested deeper than {depth}"),
                        limit: true,
                    });
                }
                event => builder.on_event(event, marker),
            }
        }
        Ok(builder.index)
    }

    /// Keys written twice in one mapping, in file order of the second writing.
    pub fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    /// Sequence items that are YAML `null` (`null`, `~` or nothing), with their places.
    pub fn null_items(&self) -> &[(KeyPath, Position)] {
        &self.null_items
    }

    /// How many YAML documents the text holds.
    pub fn documents(&self) -> usize {
        self.documents
    }

    /// Whether the (first) document's root is a mapping.
    pub fn root_is_mapping(&self) -> bool {
        self.root_is_mapping
    }

    /// The top-level keys, in order.
    pub fn root_keys(&self) -> &[String] {
        &self.root_keys
    }

    /// Where the key of `path` stands (falling back to its value, then its parents).
    pub fn key_place(&self, path: &KeyPath) -> Option<ScalarPlace> {
        self.nearest(path)
            .map(|(found, entry)| Self::key_of(&found, entry))
    }

    /// Where the value of `path` stands (falling back to the key of its nearest parent).
    pub fn value_place(&self, path: &KeyPath) -> Option<ScalarPlace> {
        self.nearest(path).map(|(found, entry)| {
            if &found == path {
                entry.value
            } else {
                Self::key_of(&found, entry)
            }
        })
    }

    fn key_of(found: &KeyPath, entry: &Entry) -> ScalarPlace {
        match entry.key {
            Some(key) => ScalarPlace {
                start: key,
                len: found.last_key().map_or(1, str::len),
                quoted: false,
            },
            None => entry.value,
        }
    }

    fn nearest(&self, path: &KeyPath) -> Option<(KeyPath, &Entry)> {
        let mut current = Some(path.clone());
        while let Some(p) = current {
            if let Some(entry) = self.entries.get(&p) {
                return Some((p, entry));
            }
            current = p.parent();
        }
        None
    }
}

/// Converts yaml-rust2 markers (character based) to byte offsets.
struct LineTable {
    starts: Vec<usize>,
}

impl LineTable {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineTable { starts }
    }

    fn position_at(&self, text: &str, line: usize, column: usize) -> Position {
        let line = line.clamp(1, self.starts.len());
        let start = self.starts[line - 1];
        let end = self.starts.get(line).copied().unwrap_or(text.len());
        let offset = text[start..end]
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(end, |(i, _)| start + i);
        Position {
            line,
            column: column.max(1),
            offset,
        }
    }

    fn position(&self, marker: &Marker) -> Position {
        // Markers carry a 1-based line and a 0-based character column.
        Position {
            line: marker.line(),
            column: marker.col() + 1,
            offset: 0,
        }
    }
}

enum Frame {
    Mapping {
        path: KeyPath,
        pending_key: Option<(String, Position)>,
        /// The keys written so far, with where.
        seen: HashMap<String, Position>,
    },
    Sequence {
        path: KeyPath,
        next: usize,
    },
}

struct Builder<'a> {
    lines: &'a LineTable,
    text: &'a str,
    index: SpanIndex,
    stack: Vec<Frame>,
}

impl Builder<'_> {
    fn place(&self, marker: Marker) -> Position {
        let rough = self.lines.position(&marker);
        self.lines.position_at(self.text, rough.line, rough.column)
    }

    /// The path a new node takes, or `None` when the node is a mapping key.
    fn next_node_path(
        &mut self,
        at: Position,
        scalar_key: Option<&str>,
    ) -> Option<(KeyPath, Option<Position>)> {
        match self.stack.last_mut() {
            None => Some((KeyPath::root(), None)),
            Some(Frame::Sequence { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                Some((p, None))
            }
            Some(Frame::Mapping {
                path,
                pending_key,
                seen,
            }) => match pending_key.take() {
                Some((key, key_at)) => Some((path.key(&key), Some(key_at))),
                None => {
                    if let Some(key) = scalar_key {
                        if let Some(first) = seen.get(key) {
                            self.index.duplicates.push(Duplicate {
                                path: path.key(key),
                                at,
                                first: *first,
                            });
                        } else {
                            seen.insert(key.to_owned(), at);
                        }
                    }
                    *pending_key = Some((scalar_key.unwrap_or("").to_owned(), at));
                    if path.0.is_empty() && self.index.documents == 1 {
                        self.index
                            .root_keys
                            .push(scalar_key.unwrap_or("").to_owned());
                    }
                    None
                }
            },
        }
    }

    fn record(&mut self, path: KeyPath, key: Option<Position>, value: ScalarPlace) {
        // A later document never overwrites the first one's places.
        self.index
            .entries
            .entry(path)
            .or_insert(Entry { key, value });
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, event: Event, marker: Marker) {
        match event {
            Event::DocumentStart => {
                self.index.documents += 1;
                self.stack.clear();
            }
            Event::Scalar(value, style, ..) => {
                let at = self.place(marker);
                let in_sequence = matches!(self.stack.last(), Some(Frame::Sequence { .. }));
                if let Some((path, key)) = self.next_node_path(at, Some(&value)) {
                    if in_sequence
                        && style == TScalarStyle::Plain
                        && matches!(value.as_str(), "null" | "Null" | "NULL" | "~" | "")
                    {
                        self.index.null_items.push((path.clone(), at));
                    }
                    let quoted = matches!(
                        style,
                        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                    );
                    let line_end = self.text[at.offset..]
                        .find('\n')
                        .map_or(self.text.len(), |i| at.offset + i);
                    let written = if quoted { value.len() + 2 } else { value.len() };
                    let len = written.min(line_end - at.offset).max(1);
                    self.record(
                        path,
                        key,
                        ScalarPlace {
                            start: at,
                            len,
                            quoted,
                        },
                    );
                }
            }
            Event::Alias(_) => {
                let at = self.place(marker);
                if let Some((path, key)) = self.next_node_path(at, None) {
                    self.record(
                        path,
                        key,
                        ScalarPlace {
                            start: at,
                            len: 1,
                            quoted: false,
                        },
                    );
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let at = self.place(marker);
                let is_mapping = matches!(event, Event::MappingStart(..));
                let (path, key) = self.next_node_path(at, None).unwrap_or_else(|| {
                    // A complex (mapping or sequence) key: give it a path that nothing uses.
                    (KeyPath::root().key("\u{0}complex-key"), None)
                });
                if path.0.is_empty() && self.index.documents == 1 {
                    self.index.root_is_mapping = is_mapping;
                }
                self.record(
                    path.clone(),
                    key,
                    ScalarPlace {
                        start: at,
                        len: 1,
                        quoted: false,
                    },
                );
                self.stack.push(if is_mapping {
                    Frame::Mapping {
                        path,
                        pending_key: None,
                        seen: HashMap::new(),
                    }
                } else {
                    Frame::Sequence { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> KeyPath {
        let mut out = KeyPath::root();
        for part in text.split('.') {
            match part.split_once('[') {
                Some((key, index)) => {
                    out = out
                        .key(key)
                        .index(index.trim_end_matches(']').parse().expect("index"));
                }
                None => out = out.key(part),
            }
        }
        out
    }

    #[test]
    fn places_keys_values_and_sequence_items() {
        let text =
            "version: \"1.3\"\ncontracts:\n  - name: a\n    assertions:\n      - 'x is string'\n";
        let index = SpanIndex::build(text).expect("valid yaml");
        let key = index
            .key_place(&path("contracts[0].name"))
            .expect("indexed");
        assert_eq!((key.start.line, key.start.column), (3, 5));
        let item = index
            .value_place(&path("contracts[0].assertions[0]"))
            .expect("indexed");
        assert_eq!(
            (item.start.line, item.start.column, item.quoted),
            (5, 9, true)
        );
        assert_eq!(
            &text[item.start.offset..item.start.offset + item.len],
            "'x is string'"
        );
        assert_eq!(index.root_keys(), ["version", "contracts"]);
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_parent() {
        let index = SpanIndex::build("a:\n  b: 1\n").expect("valid yaml");
        let place = index.key_place(&path("a.c")).expect("falls back to a");
        assert_eq!(place.start.line, 1);
    }

    #[test]
    fn offsets_count_bytes_after_non_ascii_text() {
        let text = "name: \"Zoë\"\nnext: value\n";
        let index = SpanIndex::build(text).expect("valid yaml");
        let place = index.value_place(&path("next")).expect("indexed");
        assert_eq!(
            &text[place.start.offset..place.start.offset + place.len],
            "value"
        );
    }

    #[test]
    fn keys_written_twice_are_found_at_any_depth_where_written_again() {
        let text = "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 4\ne: [x, {f: 1, f: 2}]\n";
        let index = SpanIndex::build(text).expect("valid yaml");
        let found: Vec<(String, usize, usize)> = index
            .duplicates()
            .iter()
            .map(|d| (d.path.to_string(), d.at.line, d.first.line))
            .collect();
        assert_eq!(
            found,
            [
                ("b.c".to_owned(), 5, 3),
                ("a".to_owned(), 6, 1),
                ("e[1].f".to_owned(), 7, 7)
            ]
        );
    }

    #[test]
    fn null_sequence_items_are_noted_but_quoted_nulls_are_text() {
        let text = "a: [null, ~, \"null\", x]\nb:\n  -\n  - NULL\nc: null\n";
        let index = SpanIndex::build(text).expect("valid yaml");
        let found: Vec<String> = index
            .null_items()
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        assert_eq!(found, ["a[0]", "a[1]", "b[0]", "b[1]"]);
    }

    proptest::proptest! {
        #[test]
        fn nesting_is_refused_exactly_past_the_limit(depth in 1usize..200, flow in proptest::bool::ANY) {
            // A root mapping, then `depth` nested sequences.
            let text = if flow {
                format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("a:\n{}x\n", (0..depth).map(|i| format!("{}-\n", "  ".repeat(i + 1))).collect::<String>()
                    .trim_end_matches('\n').to_owned() + " ")
            };
            let limit = crate::limits::MANIFEST_DEPTH.as_usize();
            let result = SpanIndex::build(&text);
            proptest::prop_assert_eq!(result.is_err(), depth >= limit, "{:?}", result.err());
            if let Err(err) = result {
                proptest::prop_assert!(err.limit && err.message.contains("manifest nesting depth limit"));
            }
        }
    }

    #[test]
    fn syntax_errors_are_placed() {
        let err = SpanIndex::build("a: [1, 2\nb: 3\n").expect_err("unclosed flow sequence");
        assert!(err.at.line >= 1, "{err:?}");
    }
}
