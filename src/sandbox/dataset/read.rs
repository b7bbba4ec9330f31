//! The dataset loader: a streaming reader over yaml-rust2's event parser.
//!
//! serde_yaml turns a whole document into a list of events before it deserializes a
//! single field: for 100,000 candidates that is about three million events and half
//! a gigabyte at peak, most of which the allocator then keeps for the life of
//! `stagegate serve`. This reader instead pulls events from characters decoded
//! straight off the file, one line at a time, and hands each candidate to its caller
//! as soon as its list item ends, so the loader holds one candidate whatever the
//! file's size. Each item is built into a small `serde_json::Value` (plain scalars
//! typed by the YAML 1.2 core schema) and deserialized with serde, so the types, and
//! their `deny_unknown_fields`, are the ones the writer is tested against.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead};
use std::path::Path;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{DatasetCandidate, DatasetError, DatasetHeader, FORMAT_VERSION};

/// How deep YAML may nest; a dataset needs four levels, the limit keeps a hostile
/// file from exhausting the stack.
const MAX_DEPTH: usize = 32;

/// Why a dataset file does not parse, placed by key path, line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// Where in the document (`candidates[41]`); empty for the document itself.
    pub key_path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key_path.is_empty() {
            write!(f, "{} at ", self.key_path)?;
        }
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// A place in the file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

impl From<Marker> for Place {
    fn from(mark: Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Place {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

/// Why the characters stopped before the end of the file.
#[derive(Debug)]
enum ReadFailure {
    Io(io::Error),
    NotUtf8 { line: usize },
}

/// The characters of a reader, decoded one line at a time. A read or decoding
/// failure ends the stream early and is kept for the caller, which reports it in
/// preference to whatever the parser makes of the truncated text.
struct Chars<R> {
    reader: R,
    bytes: Vec<u8>,
    line: String,
    at: usize,
    line_number: usize,
    failure: Rc<RefCell<Option<ReadFailure>>>,
}

impl<R: BufRead> Iterator for Chars<R> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        loop {
            if let Some(c) = self.line[self.at..].chars().next() {
                self.at += c.len_utf8();
                return Some(c);
            }
            let limit = crate::limits::DATASET_LINE_BYTES;
            match crate::limits::read_line_bounded(&mut self.reader, &mut self.bytes, limit) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line_number += 1;
                    self.line.clear();
                    self.at = 0;
                    match std::str::from_utf8(&self.bytes) {
                        Ok(text) => self.line.push_str(text),
                        Err(_) => {
                            *self.failure.borrow_mut() = Some(ReadFailure::NotUtf8 {
                                line: self.line_number,
                            });
                            return None;
                        }
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::FileTooLarge => {
                    let line = self.line_number + 1;
                    *self.failure.borrow_mut() = Some(ReadFailure::Io(io::Error::new(
                        err.kind(),
                        format!("line {line} is longer than {limit}"),
                    )));
                    return None;
                }
                Err(err) => {
                    *self.failure.borrow_mut() = Some(ReadFailure::Io(err));
                    return None;
                }
            }
        }
    }
}

/// Pulls events and builds values, with the anchors seen so far.
struct Reader<R: BufRead> {
    parser: Parser<Chars<R>>,
    anchors: HashMap<usize, Value>,
}

/// Reads a dataset from `reader`, handing each candidate to `each` with its index
/// and place as soon as it is read; returns the header once the file is done.
pub(super) fn read(
    path: &Path,
    reader: impl BufRead,
    each: &mut dyn FnMut(usize, Place, DatasetCandidate),
) -> Result<DatasetHeader, DatasetError> {
    let (mut reader, failure) = Reader::new(reader);
    let outcome = reader.document(path, each);
    // A failed read or a non-UTF-8 line explains any parse error that followed it.
    match failure.borrow_mut().take() {
        Some(ReadFailure::Io(source)) => Err(DatasetError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
        Some(ReadFailure::NotUtf8 { line }) => Err(parse_error(
            path,
            ParseError {
                key_path: String::new(),
                line,
                column: 1,
                message: "the line is not UTF-8 text".to_owned(),
            },
        )),
        None => outcome,
    }
}

/// The `count` a dataset declares before its `candidates` (where `stagegate sandbox
/// generate` writes it), read without reading a candidate; `None` if the file does not
/// begin as a dataset or declares it after them. The loader checks it against the
/// candidates it finds.
pub(super) fn declared_count(reader: impl BufRead) -> Option<u64> {
    let (mut reader, _) = Reader::new(reader);
    let mut next = || reader.next().ok().map(|(event, _)| event);
    let begins = (next()?, next()?, next()?);
    if !matches!(
        begins,
        (
            Event::StreamStart,
            Event::DocumentStart,
            Event::MappingStart(..)
        )
    ) {
        return None;
    }
    loop {
        let (Event::Scalar(key, ..), _) = reader.next().ok()? else {
            return None;
        };
        if key == "candidates" {
            return None;
        }
        let (event, place) = reader.next().ok()?;
        let (value, _) = reader.value(event, place, &key, 1).ok()?;
        if key == "count" {
            return value.as_u64();
        }
    }
}

fn parse_error(path: &Path, source: ParseError) -> DatasetError {
    DatasetError::Parse {
        path: path.to_owned(),
        source,
    }
}

fn problem(key_path: &str, place: Place, message: impl Into<String>) -> ParseError {
    ParseError {
        key_path: key_path.to_owned(),
        line: place.line,
        column: place.column,
        message: message.into(),
    }
}

/// What the top-level mapping must hold, for messages.
const KEYS: &str =
    "`version`, `seed`, `generated_by`, `change_id`, `risk_mix`, `count` and `candidates`";

impl<R: BufRead> Reader<R> {
    /// A reader of `reader`'s YAML, and where a failure to read it is kept.
    fn new(reader: R) -> (Self, Rc<RefCell<Option<ReadFailure>>>) {
        let failure = Rc::new(RefCell::new(None));
        let chars = Chars {
            reader,
            bytes: Vec::new(),
            line: String::new(),
            at: 0,
            line_number: 0,
            failure: Rc::clone(&failure),
        };
        let reader = Reader {
            parser: Parser::new(chars),
            anchors: HashMap::new(),
        };
        (reader, failure)
    }

    fn next(&mut self) -> Result<(Event, Place), ParseError> {
        match self.parser.next_token() {
            Ok((event, mark)) => Ok((event, mark.into())),
            Err(err) => Err(ParseError {
                key_path: String::new(),
                line: err.marker().line(),
                column: err.marker().col() + 1,
                message: err.info().to_owned(),
            }),
        }
    }

    fn document(
        &mut self,
        path: &Path,
        each: &mut dyn FnMut(usize, Place, DatasetCandidate),
    ) -> Result<DatasetHeader, DatasetError> {
        let fail = |source| parse_error(path, source);
        let (event, place) = self.next().map_err(fail)?;
        if event != Event::StreamStart {
            return Err(fail(problem("", place, "expected the start of the file")));
        }
        let (event, place) = self.next().map_err(fail)?;
        match event {
            Event::DocumentStart => {}
            Event::StreamEnd => {
                return Err(fail(problem(
                    "",
                    place,
                    format!("the file is empty; a dataset is a mapping of {KEYS}"),
                )));
            }
            _ => return Err(fail(problem("", place, "expected a YAML document"))),
        }
        let (event, start) = self.next().map_err(fail)?;
        if !matches!(event, Event::MappingStart(..)) {
            return Err(fail(problem(
                "",
                start,
                format!("the document is not a mapping; a dataset is a mapping of {KEYS}"),
            )));
        }
        let mut header = Map::new();
        let mut places: HashMap<String, Place> = HashMap::new();
        let mut listed: Option<usize> = None;
        let mut start = start;
        loop {
            let (event, place) = self.next().map_err(fail)?;
            if places.is_empty() && listed.is_none() {
                // The parser marks a block mapping past its first key; point at the key.
                start = place;
            }
            let key = match event {
                Event::MappingEnd => break,
                Event::Scalar(key, ..) => key,
                _ => {
                    return Err(fail(problem(
                        "",
                        place,
                        "top-level keys must be plain text",
                    )));
                }
            };
            if key == "candidates" {
                if listed.is_some() {
                    return Err(fail(problem(&key, place, "`candidates` is given twice")));
                }
                listed = Some(self.candidates(each).map_err(fail)?);
                continue;
            }
            let (event, value_place) = self.next().map_err(fail)?;
            let (value, _) = self.value(event, value_place, &key, 1).map_err(fail)?;
            // Refuse another format version before reading a hundred thousand items.
            if key == "version" {
                check_version(path, &value)?;
            }
            if header.insert(key.clone(), value).is_some() {
                return Err(fail(problem(
                    &key,
                    place,
                    format!("`{key}` is given twice"),
                )));
            }
            places.insert(key, place);
        }
        let (event, place) = self.next().map_err(fail)?;
        if event != Event::DocumentEnd {
            return Err(fail(problem("", place, "expected the end of the document")));
        }
        let (event, place) = self.next().map_err(fail)?;
        if event != Event::StreamEnd {
            return Err(fail(problem(
                "",
                place,
                "the file holds more than one YAML document; a dataset is one",
            )));
        }
        let header = header_fields(header, &places, start).map_err(fail)?;
        let Some(found) = listed else {
            return Err(fail(problem(
                "",
                start,
                "there is no `candidates` list; write the dataset with `stagegate sandbox generate`",
            )));
        };
        if header.count != found as u64 {
            return Err(DatasetError::Count {
                path: path.to_owned(),
                expected: header.count,
                found,
            });
        }
        Ok(header)
    }

    /// The `candidates` sequence, item by item; returns how many there were.
    fn candidates(
        &mut self,
        each: &mut dyn FnMut(usize, Place, DatasetCandidate),
    ) -> Result<usize, ParseError> {
        let (event, place) = self.next()?;
        match event {
            Event::SequenceStart(..) => {}
            // `candidates:` with nothing after it.
            Event::Scalar(text, TScalarStyle::Plain, ..) if is_null(&text) => return Ok(0),
            _ => return Err(problem("candidates", place, "`candidates` is not a list")),
        }
        let mut index = 0;
        loop {
            let (event, place) = self.next()?;
            if event == Event::SequenceEnd {
                return Ok(index);
            }
            let key_path = format!("candidates[{index}]");
            let (value, place) = self.value(event, place, &key_path, 2)?;
            let candidate = deserialize(value, &key_path, place)?;
            each(index, place, candidate);
            index += 1;
        }
    }

    /// The node that starts with `event`, as a JSON value, and where it starts (for a
    /// block mapping, its first key rather than the parser's mark past it).
    fn value(
        &mut self,
        event: Event,
        place: Place,
        key_path: &str,
        depth: usize,
    ) -> Result<(Value, Place), ParseError> {
        if depth > MAX_DEPTH {
            return Err(problem(
                key_path,
                place,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let mut start = place;
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let as_text = style != TScalarStyle::Plain
                    || tag.is_some_and(|t| t.handle == "!!" && t.suffix == "str");
                (scalar(text, as_text), anchor)
            }
            Event::Alias(id) => {
                return match self.anchors.get(&id) {
                    Some(value) => Ok((value.clone(), place)),
                    None => Err(problem(key_path, place, "an alias to an unknown anchor")),
                };
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, item_place) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    let item_path = format!("{key_path}[{}]", items.len());
                    items.push(self.value(event, item_place, &item_path, depth + 1)?.0);
                }
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Map::new();
                loop {
                    let (event, key_place) = self.next()?;
                    if map.is_empty() {
                        start = key_place;
                    }
                    let key = match event {
                        Event::MappingEnd => break,
                        Event::Scalar(key, ..) => key,
                        _ => return Err(problem(key_path, key_place, "keys must be plain text")),
                    };
                    let field_path = if key_path.is_empty() {
                        key.clone()
                    } else {
                        format!("{key_path}.{key}")
                    };
                    let (event, value_place) = self.next()?;
                    let (value, _) = self.value(event, value_place, &field_path, depth + 1)?;
                    if map.insert(key.clone(), value).is_some() {
                        return Err(problem(
                            &field_path,
                            key_place,
                            format!("`{key}` is given twice"),
                        ));
                    }
                }
                (Value::Object(map), anchor)
            }
            _ => return Err(problem(key_path, place, "expected a value")),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        Ok((value, start))
    }
}

/// The header's fields, each deserialized on its own so that an error points at
/// its key; a key the format does not have is refused with a suggestion.
fn header_fields(
    mut map: Map<String, Value>,
    places: &HashMap<String, Place>,
    start: Place,
) -> Result<DatasetHeader, ParseError> {
    const FIELDS: [&str; 6] = [
        "version",
        "seed",
        "generated_by",
        "change_id",
        "risk_mix",
        "count",
    ];
    // The first unknown key in file order, not in the map's sorted order.
    let unknown = map
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .min_by_key(|k| places.get(*k).map(|p| (p.line, p.column)));
    if let Some(key) = unknown {
        let hint = crate::suggest::did_you_mean(key, FIELDS.iter().copied().chain(["candidates"]))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let place = places.get(key).copied().unwrap_or(start);
        return Err(problem(
            key,
            place,
            format!("unknown key `{key}`{hint}; a dataset is a mapping of {KEYS}"),
        ));
    }
    let mut field = |key: &str| {
        let place = places.get(key).copied().unwrap_or(start);
        match map.remove(key) {
            Some(value) => Ok((value, place)),
            None => Err(problem(
                "",
                start,
                format!("missing key `{key}`; a dataset is a mapping of {KEYS}"),
            )),
        }
    };
    let (version, version_at) = field("version")?;
    let (seed, seed_at) = field("seed")?;
    let (generated_by, generated_by_at) = field("generated_by")?;
    let (change_id, change_id_at) = field("change_id")?;
    let (risk_mix, risk_mix_at) = field("risk_mix")?;
    let (count, count_at) = field("count")?;
    Ok(DatasetHeader {
        version: deserialize(version, "version", version_at)?,
        seed: deserialize(seed, "seed", seed_at)?,
        generated_by: deserialize(generated_by, "generated_by", generated_by_at)?,
        change_id: deserialize(change_id, "change_id", change_id_at)?,
        risk_mix: deserialize(risk_mix, "risk_mix", risk_mix_at)?,
        count: deserialize(count, "count", count_at)?,
    })
}

fn check_version(path: &Path, value: &Value) -> Result<(), DatasetError> {
    let found = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if found.split('.').next() == Some(FORMAT_VERSION) {
        Ok(())
    } else {
        Err(DatasetError::Version {
            path: path.to_owned(),
            found,
        })
    }
}

fn deserialize<T: DeserializeOwned>(
    value: Value,
    key_path: &str,
    place: Place,
) -> Result<T, ParseError> {
    serde_json::from_value(value).map_err(|err| problem(key_path, place, err.to_string()))
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A scalar typed by the YAML 1.2 core schema; quoted scalars are always text.
fn scalar(text: String, as_text: bool) -> Value {
    if as_text {
        return text_value(text);
    }
    if is_null(&text) {
        return Value::Null;
    }
    match text.as_str() {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(number) = integer(&text) {
        return Value::Number(number);
    }
    let looks_float = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_float && let Some(number) = text.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(number);
    }
    text_value(text)
}

/// A text scalar as a value, without the room the scanner grew it by: a candidate's
/// texts are held for the whole run, and at 100,000 candidates that room was 5.8 MB
/// of their 20.3.
fn text_value(mut text: String) -> Value {
    text.shrink_to_fit();
    Value::String(text)
}

fn integer(text: &str) -> Option<Number> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = digits.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = digits.strip_prefix("0o") {
        (8, octal)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        i64::try_from(magnitude).ok().map(|m| Number::from(-m))
    } else {
        Some(Number::from(magnitude))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        // (text, quoted, expected, why)
        let rows: [(&str, bool, Value, &str); 10] = [
            ("7", false, Value::from(7u64), "a decimal integer"),
            ("-3", false, Value::from(-3i64), "a negative integer"),
            ("0x1F", false, Value::from(31u64), "hexadecimal"),
            ("7", true, Value::from("7"), "quoted digits stay text"),
            ("1.5", false, Value::from(1.5), "a float"),
            ("~", false, Value::Null, "null"),
            ("true", false, Value::Bool(true), "a boolean"),
            ("CAND_000001", false, Value::from("CAND_000001"), "text"),
            ("1.2.3", false, Value::from("1.2.3"), "not a number"),
            (
                "18446744073709551615",
                false,
                Value::from(u64::MAX),
                "the largest seed",
            ),
        ];
        for (text, quoted, expected, why) in rows {
            assert_eq!(scalar(text.to_owned(), quoted), expected, "{why}");
        }
    }

    #[test]
    fn the_declared_count_is_read_from_the_header_alone() {
        let header = "version: \"1\"\nseed: 7\ncount: 2\ncandidates:\n  - [broken\n";
        assert_eq!(
            declared_count(header.as_bytes()),
            Some(2),
            "the candidates are not read"
        );
        let after = "version: \"1\"\ncandidates: []\ncount: 0\n";
        assert_eq!(
            declared_count(after.as_bytes()),
            None,
            "declared after them"
        );
        for bad in ["", "- a list\n", "count: two\n", "count: -1\n", "{{{"] {
            assert_eq!(declared_count(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
