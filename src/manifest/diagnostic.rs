//! Manifest errors and warnings that know their place: file, line, column, key path.
//!
//! The library keeps the span and the words; the CLI decides how to draw them
//! (miette's graphical handler, with or without colour).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

use super::span::{KeyPath, Position, ScalarPlace, SpanIndex};

/// A manifest's text with the name it is shown under.
#[derive(Debug, Clone)]
pub struct SourceText {
    /// The name shown in diagnostics (the path as given).
    pub name: String,
    /// The full text.
    pub text: Arc<str>,
}

impl SourceText {
    fn named(&self) -> NamedSource<Arc<str>> {
        NamedSource::new(&self.name, Arc::clone(&self.text)).with_language("yaml")
    }
}

/// Whether a diagnostic stops the manifest from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The manifest is rejected.
    Error,
    /// Worth fixing; the manifest still loads.
    Warning,
}

/// Stable identifiers of manifest problems, for tests and tooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The text is not YAML.
    Syntax,
    /// A value has the wrong type, or a required key is missing.
    Shape,
    /// A key the format does not know.
    UnknownKey,
    /// The format version is not 1.x.
    Version,
    /// An assertion does not parse.
    Assertion,
    /// A dotted field path is malformed.
    FieldPath,
    /// A name points at nothing (a contract, an enum value, an owner role, a list).
    Reference,
    /// Two entries that must be unique are not.
    Duplicate,
    /// A value is out of range or empty.
    Value,
}

impl Code {
    /// The code as shown, `stagegate::manifest::…`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "stagegate::manifest::syntax",
            Code::Shape => "stagegate::manifest::shape",
            Code::UnknownKey => "stagegate::manifest::unknown_key",
            Code::Version => "stagegate::manifest::version",
            Code::Assertion => "stagegate::manifest::assertion",
            Code::FieldPath => "stagegate::manifest::field_path",
            Code::Reference => "stagegate::manifest::reference",
            Code::Duplicate => "stagegate::manifest::duplicate",
            Code::Value => "stagegate::manifest::value",
        }
    }
}

/// One placed problem in a manifest.
#[derive(Debug, Clone)]
pub struct ManifestDiagnostic {
    /// Error or warning.
    pub level: Level,
    /// What kind of problem.
    pub code: Code,
    /// What is wrong, as a lowercase fragment.
    pub message: String,
    /// The short text under the caret.
    pub label: String,
    /// How to fix it.
    pub help: Option<String>,
    /// The key path of the node concerned.
    pub key_path: KeyPath,
    /// Where it is.
    pub at: Position,
    span: SourceSpan,
    file: String,
    /// The source to draw the span in; `None` when its line is too long to show.
    named: Option<NamedSource<Arc<str>>>,
}

/// Lines longer than this (in bytes) are not echoed under a diagnostic: a 200 KB line
/// of brackets would bury the message. The message then says where instead.
const LONGEST_SHOWN_LINE: usize = 400;

/// The source to draw a span at `offset` in, unless its line is too long to show.
fn shown_source(source: &SourceText, offset: usize) -> Option<NamedSource<Arc<str>>> {
    let text = &*source.text;
    let offset = offset.min(text.len());
    let start = memchr::memrchr(b'\n', &text.as_bytes()[..offset]).map_or(0, |i| i + 1);
    let end = memchr::memchr(b'\n', &text.as_bytes()[offset..]).map_or(text.len(), |i| offset + i);
    (end - start <= LONGEST_SHOWN_LINE).then(|| source.named())
}

impl ManifestDiagnostic {
    /// The file the problem is in.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// `file:line:column`, for one-line renderings.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file, self.at.line, self.at.column)
    }
}

impl fmt::Display for ManifestDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ManifestDiagnostic {}

impl Diagnostic for ManifestDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.level {
            Level::Error => miette::Severity::Error,
            Level::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        // The key path helps in long files; at the document root it says nothing.
        let key_path = (!self.key_path.0.is_empty()).then(|| format!("at `{}`", self.key_path));
        // Without the source drawn, the place must be said.
        let key_path = match (&self.named, key_path) {
            (Some(_), key_path) => key_path,
            (None, Some(at)) => Some(format!(
                "{at}, {} (the line is too long to show)",
                self.location()
            )),
            (None, None) => Some(format!(
                "at {} (the line is too long to show)",
                self.location()
            )),
        };
        match (&self.help, key_path) {
            (Some(help), Some(at)) => Some(Box::new(format!("{help}\n{at}"))),
            (Some(help), None) => Some(Box::new(help.clone())),
            (None, Some(at)) => Some(Box::new(at)),
            (None, None) => None,
        }
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.named
            .as_ref()
            .map(|named| named as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.named.as_ref()?;
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(Some(self.label.clone()), self.span),
        )))
    }
}

/// Builds placed diagnostics for one manifest text.
pub(crate) struct Reporter<'a> {
    pub(crate) source: &'a SourceText,
    pub(crate) spans: &'a SpanIndex,
    pub(crate) diagnostics: Vec<ManifestDiagnostic>,
}

/// Which part of a node a diagnostic points at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The key (`required_fields:`).
    Key,
    /// The value.
    Value,
    /// A byte range inside a string value's content.
    Inside(usize, usize),
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(source: &'a SourceText, spans: &'a SpanIndex) -> Self {
        Reporter {
            source,
            spans,
            diagnostics: Vec::new(),
        }
    }

    /// Adds a diagnostic at `path`; returns it for further detail.
    pub(crate) fn push(
        &mut self,
        level: Level,
        code: Code,
        path: &KeyPath,
        target: Target,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> &mut ManifestDiagnostic {
        let place = match target {
            Target::Key => self.spans.key_place(path),
            Target::Value | Target::Inside(..) => self.spans.value_place(path),
        };
        let (at, span) = match (place, target) {
            (Some(place), Target::Inside(start, len)) => self.inside(place, start, len),
            (Some(place), _) => (
                place.start,
                span_in(&self.source.text, place.start.offset, place.len),
            ),
            (None, _) => (
                Position {
                    line: 1,
                    column: 1,
                    offset: 0,
                },
                SourceSpan::new(0.into(), 0),
            ),
        };
        self.diagnostics.push(ManifestDiagnostic {
            level,
            code,
            message: message.into(),
            label: label.into(),
            help: None,
            key_path: path.clone(),
            at,
            span,
            file: self.source.name.clone(),
            named: shown_source(self.source, at.offset),
        });
        self.diagnostics.last_mut().expect("just pushed")
    }

    /// An error at `path`.
    pub(crate) fn error(
        &mut self,
        code: Code,
        path: &KeyPath,
        target: Target,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> &mut ManifestDiagnostic {
        self.push(Level::Error, code, path, target, message, label)
    }

    /// A diagnostic at an explicit position (serde and syntax errors).
    pub(crate) fn at_position(
        &mut self,
        code: Code,
        path: KeyPath,
        at: Position,
        message: String,
        label: &str,
    ) -> &mut ManifestDiagnostic {
        let at = self.resolve(at);
        self.diagnostics.push(ManifestDiagnostic {
            level: Level::Error,
            code,
            message,
            label: label.to_owned(),
            help: None,
            key_path: path,
            at,
            span: span_in(&self.source.text, at.offset, 1),
            file: self.source.name.clone(),
            named: shown_source(self.source, at.offset),
        });
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn resolve(&self, at: Position) -> Position {
        // Positions from serde_yaml and yaml-rust2 come without byte offsets.
        let text = &*self.source.text;
        let line_start: usize = text
            .split_inclusive('\n')
            .take(at.line.saturating_sub(1))
            .map(str::len)
            .sum();
        let line = &text[line_start.min(text.len())..];
        let offset = line_start
            + line
                .char_indices()
                .nth(at.column.saturating_sub(1))
                .map_or(line.len(), |(i, _)| i);
        Position {
            offset: offset.min(text.len()),
            ..at
        }
    }

    fn inside(&self, place: ScalarPlace, start: usize, len: usize) -> (Position, SourceSpan) {
        let content = place.start.offset + usize::from(place.quoted);
        let text = &*self.source.text;
        let mut offset = (content + start).min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let prefix = text.get(place.start.offset..offset).unwrap_or_default();
        let column = place.start.column + prefix.chars().count();
        let at = Position {
            line: place.start.line,
            column,
            offset,
        };
        (at, span_in(text, offset, len.max(1)))
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.level == Level::Error)
    }
}

impl ManifestDiagnostic {
    /// Adds a hint on how to fix the problem.
    pub(crate) fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }
}

/// A span of about `len` bytes at `offset`, moved onto character boundaries inside `text`.
fn span_in(text: &str, offset: usize, len: usize) -> SourceSpan {
    let mut start = offset.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + len).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    SourceSpan::new(start.into(), end - start)
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {}", path.display())]
    #[diagnostic(
        code(stagegate::manifest::read),
        help("check the path and its permissions")
    )]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("manifest {} is not UTF-8 text: invalid byte at line {line}, column {column}", path.display())]
    #[diagnostic(code(stagegate::manifest::encoding), help("save the file as UTF-8"))]
    NotUtf8 {
        /// The path given.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based column (in bytes) of the first invalid byte.
        column: usize,
    },
    /// The file is larger than a manifest may be.
    #[error("manifest {} is larger than {limit}", path.display())]
    #[diagnostic(
        code(stagegate::manifest::too_large),
        help("a manifest is a few kilobytes; keep large data in list files or a dataset")
    )]
    TooLarge {
        /// The path given.
        path: PathBuf,
        /// The limit exceeded.
        limit: crate::limits::Limit,
    },
    /// The file is UTF-16, not UTF-8.
    #[error("manifest {} is {encoding}: convert it to UTF-8", path.display())]
    #[diagnostic(
        code(stagegate::manifest::encoding),
        help(
            "for example `iconv -f UTF-16 -t UTF-8 FILE > FILE.utf8`, or save it as UTF-8 in the editor"
        )
    )]
    Utf16 {
        /// The path given.
        path: PathBuf,
        /// `UTF-16LE` or `UTF-16BE`.
        encoding: &'static str,
    },
    /// The file holds a NUL byte, which YAML text cannot.
    #[error("manifest {} holds a NUL byte (\\0) at line {line}, column {column}", path.display())]
    #[diagnostic(
        code(stagegate::manifest::encoding),
        help("remove it; a NUL byte usually means a binary or UTF-16 file, or a truncated copy")
    )]
    NulByte {
        /// The path given.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in bytes).
        column: usize,
    },
    /// The file holds no YAML document.
    #[error("manifest {} is empty", path.display())]
    #[diagnostic(
        code(stagegate::manifest::empty),
        help(
            "a release-gate manifest starts with `version: \"1.3\"` and `release_gate:`; manifests/release-gate.yaml is a complete example"
        )
    )]
    Empty {
        /// The path given.
        path: PathBuf,
    },
    /// The manifest has placed errors.
    #[error("{} has {} error{}", file, count, if *count == 1 { "" } else { "s" })]
    #[diagnostic(code(stagegate::manifest::invalid))]
    Invalid {
        /// The file name as shown.
        file: String,
        /// How many errors.
        count: usize,
        /// Every error, in file order.
        #[related]
        diagnostics: Vec<ManifestDiagnostic>,
    },
}

impl ManifestError {
    /// The placed diagnostics, if the error has any.
    pub fn diagnostics(&self) -> &[ManifestDiagnostic] {
        match self {
            ManifestError::Invalid { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
}

/// Builds the error for a failed load, errors first in file order, warnings after.
pub(crate) fn invalid(
    source: &SourceText,
    mut diagnostics: Vec<ManifestDiagnostic>,
) -> ManifestError {
    // Warnings next to errors are mostly echoes of the errors (a misspelt key empties a
    // list that assertions then miss); they come back once the errors are fixed.
    diagnostics.retain(|d| d.level == Level::Error);
    diagnostics.sort_by_key(|d| d.at.offset);
    let count = diagnostics
        .iter()
        .filter(|d| d.level == Level::Error)
        .count();
    ManifestError::Invalid {
        file: source.name.clone(),
        count,
        diagnostics,
    }
}

/// Renders a diagnostic as plain text, for logs and snapshots.
pub fn render_plain(diagnostic: &dyn Diagnostic) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false);
    let mut out = String::new();
    // Rendering into a String cannot fail.
    let _ = handler.render_report(&mut out, diagnostic);
    out
}
