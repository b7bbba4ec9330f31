//! Splitting payload input into batches of (line, bytes) without parsing it twice.
//!
//! Three shapes are read: JSON Lines (one payload a line; a broken line is one
//! malformed payload and the next line is read as usual), a JSON array (streamed
//! element by element), and a single — possibly pretty-printed — JSON document. Each
//! batch owns a few megabytes of input, so memory stays flat however long the stream.

use std::io::{self, Read};
use std::ops::Range;

use serde_json::Value;

/// How much input one batch holds before it is judged.
const BATCH_BYTES: usize = 4 << 20;

use crate::limits::PAYLOAD_BYTES;

/// One payload's bytes inside a batch, with the line it starts on.
#[derive(Debug, Clone)]
pub struct Item {
    /// 1-based line of the payload's first byte.
    pub line: usize,
    /// Byte range inside the batch's data.
    pub range: Range<usize>,
    /// A structural problem found while splitting (the payload is then malformed).
    pub error: Option<String>,
}

/// A slab of input and the payloads in it.
#[derive(Debug, Default)]
pub struct Batch {
    /// The raw bytes.
    pub data: Vec<u8>,
    /// The payloads, in input order.
    pub items: Vec<Item>,
}

impl Batch {
    /// The bytes of one item.
    pub fn bytes(&self, item: &Item) -> &[u8] {
        &self.data[item.range.clone()]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Lines,
    Array,
    Document,
}

/// Reads batches from any reader.
pub struct Batcher<R> {
    reader: R,
    shape: Option<Shape>,
    carry: Vec<u8>,
    eof: bool,
    /// Line number of the first byte of `carry`.
    line: usize,
    array: ArrayState,
    /// The bound on one payload ([`PAYLOAD_BYTES`] but in tests).
    payload_limit: crate::limits::Limit,
}

#[derive(Debug, Default)]
struct ArrayState {
    opened: bool,
    closed: bool,
    depth: usize,
    in_string: bool,
    escape: bool,
}

impl<R: Read> Batcher<R> {
    /// Wraps a reader.
    pub fn new(reader: R) -> Self {
        Batcher {
            reader,
            shape: None,
            carry: Vec::new(),
            eof: false,
            line: 1,
            array: ArrayState::default(),
            payload_limit: PAYLOAD_BYTES,
        }
    }

    /// The next batch, or `None` at the end of the input.
    pub fn next_batch(&mut self) -> io::Result<Option<Batch>> {
        // What is carried over is one unfinished payload: bounded, or the input could
        // grow memory without end (a line of /dev/zero).
        if self.carry.len() > self.payload_limit.as_usize() {
            return Err(too_large(self.line, self.payload_limit));
        }
        let mut data = std::mem::take(&mut self.carry);
        if !self.eof {
            // At least one read per batch, so a payload longer than a batch still grows.
            self.fill_more(&mut data)?;
        }
        self.fill(&mut data)?;
        if self.shape.is_none() {
            if let Some(encoding) = utf16_encoding(&data) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the input is {encoding}: convert it to UTF-8 \
                         (`iconv -f UTF-16 -t UTF-8 FILE`)"
                    ),
                ));
            }
            strip_bom(&mut data);
            self.shape = Some(detect(&data));
            if self.shape == Some(Shape::Document) {
                while !self.eof {
                    if data.len() > self.payload_limit.as_usize() {
                        return Err(too_large(self.line, self.payload_limit));
                    }
                    self.fill_more(&mut data)?;
                }
            }
        }
        if data.iter().all(u8::is_ascii_whitespace) && self.eof {
            if self.shape == Some(Shape::Array) && self.array.opened && !self.array.closed {
                let item = Item {
                    line: self.line,
                    range: 0..0,
                    error: Some("the JSON array is not closed with `]`".into()),
                };
                self.array.closed = true;
                return Ok(Some(Batch {
                    data,
                    items: vec![item],
                }));
            }
            return Ok(None);
        }
        let batch = match self.shape {
            Some(Shape::Array) => self.split_array(data),
            Some(Shape::Document) => self.split_document(data),
            _ => self.split_lines(data),
        };
        Ok(Some(batch))
    }

    fn fill(&mut self, data: &mut Vec<u8>) -> io::Result<()> {
        while data.len() < BATCH_BYTES && !self.eof {
            self.fill_more(data)?;
        }
        Ok(())
    }

    fn fill_more(&mut self, data: &mut Vec<u8>) -> io::Result<()> {
        let start = data.len();
        data.resize(start + (1 << 20), 0);
        let n = loop {
            match self.reader.read(&mut data[start..]) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    data.truncate(start);
                    return Err(err);
                }
            }
        };
        data.truncate(start + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    fn split_lines(&mut self, mut data: Vec<u8>) -> Batch {
        if !self.eof {
            // Keep an incomplete last line for the next batch (a line longer than a
            // batch simply makes this batch larger).
            match memchr::memrchr(b'\n', &data) {
                Some(last) => self.carry = data.split_off(last + 1),
                None => {
                    self.carry = data;
                    return Batch::default();
                }
            }
        }
        let mut items = Vec::new();
        let mut start = 0;
        let mut line = self.line;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            let mut content = start..end;
            if data[content.clone()].last() == Some(&b'\r') {
                content.end -= 1;
            }
            if !data[content.clone()].iter().all(u8::is_ascii_whitespace) {
                items.push(Item {
                    line,
                    range: content,
                    error: None,
                });
            }
            line += 1;
            start = end + 1;
        }
        self.line = line;
        Batch { data, items }
    }

    fn split_document(&mut self, data: Vec<u8>) -> Batch {
        let mut items = Vec::new();
        let mut stream =
            serde_json::Deserializer::from_slice(&data).into_iter::<serde::de::IgnoredAny>();
        let mut start = skip_ws(&data, 0);
        while start < data.len() {
            match stream.next() {
                Some(Ok(_)) => {
                    let end = stream.byte_offset();
                    items.push(Item {
                        line: line_of(&data, start),
                        range: start..end,
                        error: None,
                    });
                    start = skip_ws(&data, end);
                }
                Some(Err(_)) | None => {
                    // Judged again by the payload parser, which reports the exact problem.
                    items.push(Item {
                        line: line_of(&data, start),
                        range: start..data.len(),
                        error: None,
                    });
                    break;
                }
            }
        }
        Batch { data, items }
    }

    fn split_array(&mut self, mut data: Vec<u8>) -> Batch {
        let mut items = Vec::new();
        let mut line = self.line;
        let mut i = 0;
        let mut element: Option<(usize, usize)> = None;
        let state = &mut self.array;
        let mut trailing_error: Option<(usize, String)> = None;
        while i < data.len() {
            let byte = data[i];
            if byte == b'\n' {
                line += 1;
            }
            if state.closed {
                if !byte.is_ascii_whitespace() && trailing_error.is_none() {
                    trailing_error = Some((
                        line,
                        "unexpected text after the closing `]` of the array".into(),
                    ));
                }
                i += 1;
                continue;
            }
            if !state.opened {
                if byte == b'[' {
                    state.opened = true;
                    state.depth = 1;
                }
                i += 1;
                continue;
            }
            if state.in_string {
                if state.escape {
                    state.escape = false;
                } else if byte == b'\\' {
                    state.escape = true;
                } else if byte == b'"' {
                    state.in_string = false;
                }
                i += 1;
                continue;
            }
            match byte {
                b'"' => {
                    state.in_string = true;
                    element.get_or_insert((i, line));
                }
                b'{' | b'[' => {
                    state.depth += 1;
                    element.get_or_insert((i, line));
                }
                b'}' | b']' if state.depth > 1 => state.depth -= 1,
                b',' | b']' if state.depth == 1 => {
                    if let Some((start, start_line)) = element.take() {
                        items.push(Item {
                            line: start_line,
                            range: start..trim_end(&data, start, i),
                            error: None,
                        });
                    } else if byte == b',' {
                        items.push(Item {
                            line,
                            range: i..i,
                            error: Some("empty element in the JSON array".into()),
                        });
                    }
                    if byte == b']' {
                        state.closed = true;
                    }
                }
                b if b.is_ascii_whitespace() => {}
                _ => {
                    element.get_or_insert((i, line));
                }
            }
            i += 1;
        }
        if let Some((line, message)) = trailing_error {
            items.push(Item {
                line,
                range: 0..0,
                error: Some(message),
            });
        }
        if let Some((start, start_line)) = element {
            if self.eof {
                items.push(Item {
                    line: start_line,
                    range: start..data.len(),
                    error: Some("the JSON array ends inside this element".into()),
                });
                state.closed = true;
            } else {
                // Re-scan the unfinished element with the next batch.
                self.carry = data.split_off(start);
                // Undo the depth and string state the partial element added.
                state.depth = 1;
                state.in_string = false;
                state.escape = false;
                line = start_line;
            }
        }
        self.line = line;
        Batch { data, items }
    }
}

fn detect(data: &[u8]) -> Shape {
    let start = skip_ws(data, 0);
    match data.get(start) {
        // An array on a line of its own, with more lines after it, is JSON Lines whose
        // first payload is (wrongly) an array: every line is judged, not one array.
        Some(b'[') if first_line_stands_alone(data, start) => Shape::Lines,
        Some(b'[') => Shape::Array,
        Some(b'{') => {
            let line_end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            if serde_json::from_slice::<serde::de::IgnoredAny>(&data[start..line_end]).is_ok() {
                return Shape::Lines;
            }
            // A first value that parses but spans lines is a pretty-printed document.
            let mut stream = serde_json::Deserializer::from_slice(&data[start..])
                .into_iter::<serde::de::IgnoredAny>();
            match stream.next() {
                Some(Ok(_)) if stream.byte_offset() > line_end - start => Shape::Document,
                _ => Shape::Lines,
            }
        }
        _ => Shape::Lines,
    }
}

fn too_large(line: usize, limit: crate::limits::Limit) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the payload at line {line} is larger than {limit}"),
    )
}

/// Whether the first line from `start` is a whole JSON value and more text follows it.
fn first_line_stands_alone(data: &[u8], start: usize) -> bool {
    let Some(line_end) = memchr::memchr(b'\n', &data[start..]).map(|i| start + i) else {
        return false;
    };
    skip_ws(data, line_end) < data.len()
        && serde_json::from_slice::<serde::de::IgnoredAny>(&data[start..line_end]).is_ok()
}

/// `UTF-16LE` or `UTF-16BE` when bytes look like UTF-16: a byte order mark, or the
/// zero bytes ASCII text takes on in UTF-16. Read as UTF-8 they would only say
/// "expected value at line 1, column 1".
pub(crate) fn utf16_encoding(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xFE, ..] => Some("UTF-16LE"),
        [0xFE, 0xFF, ..] => Some("UTF-16BE"),
        [a, 0, b, 0, ..] if *a != 0 && *b != 0 => Some("UTF-16LE"),
        [0, a, 0, b, ..] if *a != 0 && *b != 0 => Some("UTF-16BE"),
        _ => None,
    }
}

/// Parses one payload. Unlike `serde_json::from_slice::<Value>`, a key written twice
/// in one object is an error (the last would silently win: two `"type"` keys would
/// judge the payload under whichever came last), and messages say what a lone
/// surrogate escape is. The error reads `not valid JSON: … (line L, column C)`,
/// lines counted from `first_line`.
pub(crate) fn parse_payload(bytes: &[u8], first_line: usize) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|strict| strict.0)
        .map_err(|err| {
            let text = err.to_string();
            let what = text
                .rfind(" at line ")
                .map_or(text.as_str(), |i| &text[..i]);
            let what = match what {
                "unexpected end of hex escape" | "lone leading surrogate in hex escape" => {
                    "a lone UTF-16 surrogate escape (`\\ud800`–`\\udbff` must be followed by \
                     `\\udc00`–`\\udfff`): a JSON string must be valid Unicode"
                }
                other => other,
            };
            let line = first_line + err.line().saturating_sub(1);
            format!(
                "not valid JSON: {what} (line {line}, column {})",
                err.column()
            )
        })
}

/// A JSON value whose objects have unique keys.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            match object.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    return Err(serde::de::Error::custom(format_args!(
                        "the key {:?} is written twice in one object",
                        slot.key()
                    )));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

fn strip_bom(data: &mut Vec<u8>) {
    if data.starts_with(&[0xEF, 0xBB, 0xBF]) {
        data.drain(..3);
    }
}

fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while i < data.len() && data[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn trim_end(data: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && data[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

fn line_of(data: &[u8], offset: usize) -> usize {
    data[..offset].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(input: &str) -> Vec<(usize, String, Option<String>)> {
        let mut batcher = Batcher::new(input.as_bytes());
        let mut out = Vec::new();
        while let Some(batch) = batcher.next_batch().expect("reading from memory") {
            for item in &batch.items {
                out.push((
                    item.line,
                    String::from_utf8_lossy(batch.bytes(item)).into_owned(),
                    item.error.clone(),
                ));
            }
        }
        out
    }

    #[test]
    fn json_lines_keep_line_numbers_and_skip_blanks() {
        let items = split("{\"a\":1}\n\n{\"a\":2}\r\n{broken\n");
        let lines: Vec<(usize, &str)> = items.iter().map(|(l, t, _)| (*l, t.as_str())).collect();
        assert_eq!(lines, [(1, "{\"a\":1}"), (3, "{\"a\":2}"), (4, "{broken")]);
    }

    #[test]
    fn arrays_are_split_into_elements_with_their_lines() {
        let items = split("[\n  {\"a\": \"x,]\"},\n  {\"b\": [1, 2]}\n]\n");
        let lines: Vec<(usize, &str)> = items.iter().map(|(l, t, _)| (*l, t.as_str())).collect();
        assert_eq!(lines, [(2, "{\"a\": \"x,]\"}"), (3, "{\"b\": [1, 2]}")]);
    }

    #[test]
    fn unclosed_arrays_and_trailing_text_are_reported() {
        let items = split("[{\"a\": 1},\n{\"b\": 2");
        assert_eq!(
            items.last().and_then(|i| i.2.clone()).as_deref(),
            Some("the JSON array ends inside this element")
        );
        let items = split("[{\"a\": 1}] x");
        assert!(
            items
                .iter()
                .any(|i| i.2.as_deref()
                    == Some("unexpected text after the closing `]` of the array"))
        );
    }

    #[test]
    fn pretty_printed_documents_are_one_payload() {
        let items = split("{\n  \"type\": \"x\",\n  \"a\": {\"b\": 1}\n}\n");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].0, 1);
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let items = split("\u{feff}{\"a\":1}\n");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].1, "{\"a\":1}");
    }

    #[test]
    fn large_inputs_span_batches_without_losing_lines() {
        let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(1000));
        let count = (BATCH_BYTES / line.len()) * 2 + 7;
        let items = split(&line.repeat(count));
        assert_eq!(items.len(), count);
        assert!(
            items
                .iter()
                .enumerate()
                .all(|(i, item)| item.0 == i + 1 && item.1.len() == line.len() - 1)
        );
        let array = format!("[{}]", vec![line.trim_end(); count].join(",\n"));
        let items = split(&array);
        assert_eq!(items.len(), count);
        assert!(
            items
                .iter()
                .enumerate()
                .all(|(i, item)| item.0 == i + 1 && item.2.is_none())
        );
    }

    #[test]
    fn payloads_writing_a_key_twice_are_refused_at_any_depth() {
        // (payload, the duplicate named in the error, if any)
        let rows = [
            (r#"{"type": "a", "type": "b"}"#, Some("\"type\"")),
            (r#"{"a": {"b": 1, "b": 1}}"#, Some("\"b\"")),
            (r#"[{"c": 1}, {"c": 2, "c": 3}]"#, Some("\"c\"")),
            (r#"{"a": 1, "b": {"a": 2}}"#, None),
        ];
        for (payload, duplicate) in rows {
            match (parse_payload(payload.as_bytes(), 1), duplicate) {
                (Ok(value), None) => {
                    let plain: Value = serde_json::from_str(payload).expect("valid JSON");
                    assert_eq!(value, plain, "{payload}");
                }
                (Err(message), Some(key)) => {
                    assert!(
                        message.contains(&format!("the key {key} is written twice")),
                        "{message}"
                    );
                }
                (outcome, _) => panic!("{payload}: {outcome:?}"),
            }
        }
    }

    #[test]
    fn a_first_line_array_followed_by_lines_is_json_lines() {
        let items = split("[1]\n{\"a\":1}\n");
        let lines: Vec<(usize, &str)> = items.iter().map(|(l, t, _)| (*l, t.as_str())).collect();
        assert_eq!(lines, [(1, "[1]"), (2, "{\"a\":1}")]);
        // Alone on its line, or spread over lines, an array is still an array.
        assert_eq!(split("[{\"a\":1},{\"a\":2}]\n").len(), 2);
        assert_eq!(split("[\n{\"a\":1},\n{\"a\":2}\n]\n").len(), 2);
    }

    #[test]
    fn a_payload_over_the_limit_stops_the_read_naming_the_limit() {
        // The real limit is 64 MiB; the rule is the same at 1 MiB, faster to test.
        let limit = crate::limits::Limit {
            value: 1 << 20,
            ..PAYLOAD_BYTES
        };
        let mut input = b"{\"a\":1}\n".to_vec();
        input.resize(input.len() + BATCH_BYTES * 2, b' ');
        let mut batcher = Batcher::new(input.as_slice());
        batcher.payload_limit = limit;
        let mut judged = 0;
        let err = loop {
            match batcher.next_batch() {
                Ok(Some(batch)) => judged += batch.items.len(),
                Ok(None) => panic!("read to the end"),
                Err(err) => break err,
            }
        };
        assert_eq!(judged, 1, "the payload before it is judged");
        assert!(
            err.to_string().contains(
                "the payload at line 2 is larger than the payload size limit (1048576 bytes)"
            ),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn strict_parsing_agrees_with_serde_json_on_unique_keys(
            values in proptest::collection::btree_map("[a-z]{1,4}", 0i64..100, 0..8)
        ) {
            let text = serde_json::to_string(&values).expect("serialises");
            let strict = parse_payload(text.as_bytes(), 1).expect("unique keys parse");
            let plain: Value = serde_json::from_str(&text).expect("valid JSON");
            prop_assert_eq!(strict, plain);
        }

        #[test]
        fn every_json_line_comes_back_once(values in proptest::collection::vec(0u32..1000, 0..50)) {
            let text: String = values.iter().map(|v| format!("{{\"v\":{v}}}\n")).collect();
            let items = split(&text);
            prop_assert_eq!(items.len(), values.len());
            for (i, (line, body, _)) in items.iter().enumerate() {
                prop_assert_eq!(*line, i + 1);
                prop_assert_eq!(body, &format!("{{\"v\":{}}}", values[i]));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut batcher = Batcher::new(bytes.as_slice());
            loop {
                match batcher.next_batch() {
                    Ok(Some(batch)) => {
                        for item in &batch.items {
                            let _ = batch.bytes(item);
                        }
                    }
                    Ok(None) => break,
                    // Bytes that are not UTF-8 text (a UTF-16 byte-order mark, say) are
                    // refused with an error that says what to do, never a panic.
                    Err(err) => {
                        prop_assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
                        prop_assert!(!err.to_string().is_empty());
                        break;
                    }
                }
            }
        }
    }
}
