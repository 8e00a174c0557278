//! Reader for the nats-server configuration syntax (`.conf` files).
//!
//! The Go nats-account-server read its configuration with nats-server's own
//! `conf` package, so existing deployments have config files written in that
//! syntax. This module owns that syntax: a small hand-written lexer and
//! recursive-descent parser that turn the text into a `serde_json` map with
//! lowercased keys ([`parse`]), and [`NatsConf`], a [`config::Format`] so such
//! a file can be fed to `config::File` like TOML or JSON.
//!
//! What is understood (following nats-server's `conf/lex.go` and `parse.go`):
//!
//! * `key: value`, `key = value` and `key value`; the top level is an implicit
//!   map (braces around the whole file are tolerated, so JSON reads too);
//! * `#` and `//` comments to the end of the line;
//! * blocks `name { ... }` (with or without a separator), nested, whose
//!   entries are separated by newlines, commas or semicolons;
//! * arrays `[a, b]`, also spread over lines with or without commas;
//! * double-quoted strings with escapes, single-quoted strings taken
//!   literally, and bare strings (`nats://127.0.0.1:4222`, `URL(http://x/)`)
//!   running to the end of the line, `,`, `;`, `}`, `]` or a comment;
//! * integers, with nats-server's size suffixes (`1k` = 1000, `1kb` = 1024,
//!   `1mb`, `1gb`, ...), floats, and `true/false/yes/no/on/off`;
//! * `$name` variables, resolved from earlier keys in this or an enclosing
//!   block, then from the environment;
//! * `include path`, relative to the including file.
//!
//! Keys are lowercased because the Go server's config keys were matched
//! case-insensitively (`ReadTimeout` and `readtimeout` are the same setting).
//! A repeated key replaces the earlier one, as in nats-server.
//!
//! Deliberate differences from nats-server: a bare value may contain spaces
//! (a comment must then be preceded by whitespace, which is also what keeps
//! the `//` in `nats://host` from starting a comment); a bare value that is
//! not a number, such as `5s`, is a string rather than an error; the
//! multi-line `( ... )` block strings and ISO 8601 datetimes are not
//! supported (datetimes read as strings).

use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value};

/// How deep includes (and environment variables that refer to further
/// variables) may nest before we assume a cycle and give up.
const MAX_DEPTH: usize = 16;

/// How deep blocks and arrays may nest inside one another. The parser recurses per level, so
/// without a bound a hostile or corrupt file of `{{{{…` overflows the stack and aborts the
/// process; real files nest a handful of levels.
const MAX_NESTING: usize = 128;

/// Format for `config::File` that reads the nats-server configuration syntax.
///
/// `config::File::from_str(text, NatsConf)` parses text directly; with a file
/// read from disk, `include` directives resolve relative to that file.
#[derive(Debug, Clone, Copy, Default)]
pub struct NatsConf;

impl config::Format for NatsConf {
    fn parse(
        &self,
        uri: Option<&String>,
        text: &str,
    ) -> Result<config::Map<String, config::Value>, Box<dyn std::error::Error + Send + Sync>> {
        // `config::File` passes the file's path as the uri when it read one
        // from disk; includes are relative to it, as nats-server does.
        let base_dir = uri
            .and_then(|uri| Path::new(uri).parent())
            .map(Path::to_path_buf);
        let map = parse_nested(text, base_dir, 0)?;
        Ok(map
            .into_iter()
            .map(|(key, value)| (key, to_config_value(value, uri)))
            .collect())
    }
}

impl config::FileStoredFormat for NatsConf {
    fn file_extensions(&self) -> &'static [&'static str] {
        &["conf"]
    }
}

/// Parse nats-server configuration text into a JSON-like map (keys lowercased).
///
/// Used by the [`NatsConf`] format and by tests. `include` paths are taken
/// relative to the current directory, since text alone has no location.
pub fn parse(text: &str) -> Result<Map<String, Value>, ParseError> {
    parse_nested(text, None, 0)
}

/// Like [`parse`], with `include` paths resolved relative to `base_dir` (the including
/// file's directory), as nats-server does.
///
/// # Errors
/// [`ParseError`] with the line (and column) of the problem.
pub fn parse_with_base(
    text: &str,
    base_dir: Option<&Path>,
) -> Result<Map<String, Value>, ParseError> {
    parse_nested(text, base_dir.map(Path::to_path_buf), 0)
}

/// Why configuration text could not be parsed. Every message starts with the
/// line (and, where it points at a character, the column) it concerns, and carries its
/// cause itself (no variant exposes a `source` as well, so no printer repeats it).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A quoted string whose closing quote never came; the position is that
    /// of the opening quote.
    #[error("line {line}, column {column}: unterminated string: no closing {quote} before the end of the file")]
    UnterminatedString {
        line: usize,
        column: usize,
        quote: char,
    },
    /// A block or array still open at the end of the file.
    #[error("line {line}: expected '{close}' to close {what} opened on line {opened_line}")]
    Unclosed {
        line: usize,
        close: char,
        what: &'static str,
        opened_line: usize,
    },
    /// A key with nothing after it on its line.
    #[error("line {line}, column {column}: missing value for key '{key}'")]
    MissingValue {
        line: usize,
        column: usize,
        key: String,
    },
    /// A backslash escape that double-quoted strings do not support.
    #[error("line {line}, column {column}: invalid escape sequence '{sequence}' in string (supported: \\\" \\\\ \\/ \\n \\t \\r \\xXX \\uXXXX)")]
    InvalidEscape {
        line: usize,
        column: usize,
        sequence: String,
    },
    /// A number that does not fit in a 64-bit integer or float.
    #[error("line {line}, column {column}: number '{text}' is out of range")]
    NumberOutOfRange {
        line: usize,
        column: usize,
        text: String,
    },
    /// A `$name` that is neither an earlier key nor an environment variable.
    #[error("line {line}, column {column}: variable '${name}' is not defined: no earlier key '{name}' in this or an enclosing block, and no environment variable '{name}'")]
    UndefinedVariable {
        line: usize,
        column: usize,
        name: String,
    },
    /// An `include` whose file could not be read.
    #[error("line {line}: cannot read included file '{path}': {cause}")]
    IncludeRead {
        line: usize,
        path: String,
        cause: std::io::Error,
    },
    /// An `include` whose file does not parse.
    #[error("line {line}: in included file '{path}': {cause}")]
    Include {
        line: usize,
        path: String,
        cause: Box<ParseError>,
    },
    /// Includes nested deeper than we accept, most likely a file including itself.
    #[error("line {line}: includes nested more than {max} deep at '{path}' (does a file include itself?)")]
    IncludeTooDeep {
        line: usize,
        path: String,
        max: usize,
    },
    /// Any other unexpected character.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
}

impl ParseError {
    /// The line (1-based) of the text the error was found on.
    pub fn line(&self) -> usize {
        match self {
            ParseError::UnterminatedString { line, .. }
            | ParseError::Unclosed { line, .. }
            | ParseError::MissingValue { line, .. }
            | ParseError::InvalidEscape { line, .. }
            | ParseError::NumberOutOfRange { line, .. }
            | ParseError::UndefinedVariable { line, .. }
            | ParseError::IncludeRead { line, .. }
            | ParseError::Include { line, .. }
            | ParseError::IncludeTooDeep { line, .. }
            | ParseError::Syntax { line, .. } => *line,
        }
    }
}

/// Parses one text; `base_dir` anchors its includes and `depth` counts how
/// many includes (or variable expansions) led here.
fn parse_nested(
    text: &str,
    base_dir: Option<PathBuf>,
    depth: usize,
) -> Result<Map<String, Value>, ParseError> {
    Parser {
        lx: Lexer::new(text),
        base_dir,
        depth,
        scopes: Vec::new(),
        nesting: 0,
    }
    .document()
}

/// Converts a parsed value to the `config` crate's value tree, tagging every
/// node with where it came from so `config` errors can name the file.
fn to_config_value(value: Value, origin: Option<&String>) -> config::Value {
    let kind = match value {
        Value::Null => config::ValueKind::Nil,
        Value::Bool(b) => config::ValueKind::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => config::ValueKind::I64(i),
            None => config::ValueKind::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => config::ValueKind::String(s),
        Value::Array(items) => config::ValueKind::Array(
            items
                .into_iter()
                .map(|item| to_config_value(item, origin))
                .collect(),
        ),
        Value::Object(map) => config::ValueKind::Table(
            map.into_iter()
                .map(|(key, value)| (key, to_config_value(value, origin)))
                .collect(),
        ),
    };
    config::Value::new(origin, kind)
}

// ---------------------------------------------------------------------------
// Lexer: character-level reading. The syntax is context-sensitive (a bare
// value may contain `:` and `//`, a bare key may not), so instead of a token
// stream the parser asks for the kind of token it expects next.
// ---------------------------------------------------------------------------

struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    /// 1-based line and column (in characters) of the next character.
    line: usize,
    column: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        // Editors on Windows may start the file with a byte-order mark; it
        // belongs to no key.
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        Lexer {
            src,
            pos: 0,
            line: 1,
            column: 1,
        }
    }

    fn position(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn at_comment(&self) -> bool {
        match self.peek() {
            Some('#') => true,
            Some('/') => self.peek_second() == Some('/'),
            _ => false,
        }
    }

    /// Skips to the end of the line, leaving the newline for the caller.
    fn skip_comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.bump();
        }
    }

    /// Skips spaces and tabs, but not newlines, which end entries.
    fn skip_inline_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// Skips whitespace, newlines and comments; with `separators`, also the
    /// `,` and `;` that may separate map entries.
    fn skip_blank(&mut self, separators: bool) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some(',' | ';') if separators => {
                    self.bump();
                }
                _ if self.at_comment() => self.skip_comment(),
                _ => return,
            }
        }
    }

    /// Whether the next character ends a value (or shows one is missing).
    fn at_value_end(&self) -> bool {
        matches!(
            self.peek(),
            None | Some('\n' | '\r' | ',' | ';' | '}' | ']')
        ) || self.at_comment()
    }

    /// Describes the next character for error messages.
    fn describe_next(&self) -> String {
        match self.peek() {
            None => "the end of the file".to_owned(),
            Some('\n' | '\r') => "the end of the line".to_owned(),
            Some(c) => format!("'{c}'"),
        }
    }

    fn syntax(&self, message: String) -> ParseError {
        ParseError::Syntax {
            line: self.line,
            column: self.column,
            message,
        }
    }

    /// A bare key: everything up to whitespace, a separator, a bracket, a
    /// quote or a comment. May be empty, which the caller reports.
    fn bare_key(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ends_key = c.is_whitespace()
                || matches!(
                    c,
                    ':' | '=' | '{' | '}' | '[' | ']' | ',' | ';' | '"' | '\''
                )
                || self.at_comment();
            if ends_key {
                break;
            }
            self.bump();
        }
        &self.src[start..self.pos]
    }

    /// A bare value: up to the end of the line, `,`, `;`, `}`, `]` or a
    /// comment, with trailing whitespace trimmed. A comment counts only after
    /// whitespace, so `nats://host` and `URL(http://x/)` stay whole.
    fn bare_value(&mut self) -> &'a str {
        let start = self.pos;
        let mut after_space = false;
        while let Some(c) = self.peek() {
            if matches!(c, '\n' | '\r' | ',' | ';' | '}' | ']')
                || (after_space && self.at_comment())
            {
                break;
            }
            after_space = matches!(c, ' ' | '\t');
            self.bump();
        }
        self.src[start..self.pos].trim_end()
    }

    /// A single- or double-quoted string, whichever quote is next.
    fn quoted(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('\'') {
            self.single_quoted()
        } else {
            self.double_quoted()
        }
    }

    /// `'...'`: taken literally, no escapes (handy for Windows paths).
    fn single_quoted(&mut self) -> Result<String, ParseError> {
        let (line, column) = self.position();
        self.bump();
        let start = self.pos;
        loop {
            match self.peek() {
                None => {
                    return Err(ParseError::UnterminatedString {
                        line,
                        column,
                        quote: '\'',
                    })
                }
                Some('\'') => {
                    let text = self.src[start..self.pos].to_owned();
                    self.bump();
                    return Ok(text);
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
    }

    /// `"..."` with backslash escapes. Like nats-server, it may span lines.
    fn double_quoted(&mut self) -> Result<String, ParseError> {
        let (line, column) = self.position();
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ParseError::UnterminatedString {
                        line,
                        column,
                        quote: '"',
                    })
                }
                Some('"') => return Ok(text),
                Some('\\') => text.push(self.escape()?),
                Some(c) => text.push(c),
            }
        }
    }

    /// The character an escape stands for; the backslash is already read.
    fn escape(&mut self) -> Result<char, ParseError> {
        let (line, column) = (self.line, self.column - 1);
        let invalid = |sequence: String| ParseError::InvalidEscape {
            line,
            column,
            sequence,
        };
        match self.bump() {
            Some('"') => Ok('"'),
            Some('\\') => Ok('\\'),
            // Not in nats-server, but JSON writes it and it is unambiguous.
            Some('/') => Ok('/'),
            Some('n') => Ok('\n'),
            Some('t') => Ok('\t'),
            Some('r') => Ok('\r'),
            Some('x') => {
                // nats-server's \xXX inserts a raw byte; only ASCII bytes keep
                // a Rust string valid UTF-8.
                let code = self.hex_digits('x', 2, line, column)?;
                char::from_u32(code)
                    .filter(char::is_ascii)
                    .ok_or_else(|| invalid(format!("\\x{code:02X}")))
            }
            Some('u') => {
                let code = self.hex_digits('u', 4, line, column)?;
                if !(0xD800..0xDC00).contains(&code) {
                    return char::from_u32(code).ok_or_else(|| invalid(format!("\\u{code:04X}")));
                }
                // A UTF-16 surrogate pair, as JSON writes characters outside
                // the Basic Multilingual Plane: `\uD83D\uDE00`.
                let unpaired = || invalid(format!("\\u{code:04X} (unpaired surrogate)"));
                if self.peek() != Some('\\') || self.peek_second() != Some('u') {
                    return Err(unpaired());
                }
                self.bump();
                self.bump();
                let low = self.hex_digits('u', 4, line, column)?;
                if !(0xDC00..0xE000).contains(&low) {
                    return Err(unpaired());
                }
                char::from_u32(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
                    .ok_or_else(unpaired)
            }
            Some(c) => Err(invalid(format!("\\{c}"))),
            None => Err(invalid("\\".to_owned())),
        }
    }

    /// Reads exactly `count` hex digits of a `\x` or `\u` escape.
    fn hex_digits(
        &mut self,
        kind: char,
        count: usize,
        line: usize,
        column: usize,
    ) -> Result<u32, ParseError> {
        let mut digits = String::new();
        let mut value = 0;
        for _ in 0..count {
            match self.peek().and_then(|c| c.to_digit(16).map(|d| (c, d))) {
                Some((c, digit)) => {
                    digits.push(c);
                    value = value * 16 + digit;
                    self.bump();
                }
                None => {
                    return Err(ParseError::InvalidEscape {
                        line,
                        column,
                        sequence: format!("\\{kind}{digits}"),
                    })
                }
            }
        }
        Ok(value)
    }
}

// ---------------------------------------------------------------------------
// Parser: the grammar, one method per construct.
//
//   document := '{' entries '}' | entries
//   entries  := { entry (newline | ',' | ';') }
//   entry    := key [':' | '='] value | 'include' path
//   value    := '{' entries '}' | array | quoted | bare
//   array    := '[' { value (',' | newline) } ']'
// ---------------------------------------------------------------------------

struct Parser<'a> {
    lx: Lexer<'a>,
    /// Directory that `include` paths are relative to (`None`: current dir).
    base_dir: Option<PathBuf>,
    depth: usize,
    /// The maps being built, outermost first: variables look in them from
    /// the innermost outwards.
    scopes: Vec<Map<String, Value>>,
    /// Blocks and arrays open around the value being parsed.
    nesting: usize,
}

impl<'a> Parser<'a> {
    fn document(mut self) -> Result<Map<String, Value>, ParseError> {
        self.lx.skip_blank(false);
        // nats-server tolerates braces around the whole file, which also
        // lets plain JSON through; keep that.
        if self.lx.peek() != Some('{') {
            return self.block(None);
        }
        let opened_line = self.lx.line;
        self.lx.bump();
        let map = self.block(Some(opened_line))?;
        self.lx.skip_blank(true);
        if self.lx.peek().is_some() {
            return Err(self.lx.syntax(format!(
                "unexpected {} after the '}}' that closes the braces opened on line {opened_line}",
                self.lx.describe_next()
            )));
        }
        Ok(map)
    }

    /// Entries up to the `}` closing a block opened on `opened_line`, or up
    /// to the end of the file for the top level (`None`).
    fn block(&mut self, opened_line: Option<usize>) -> Result<Map<String, Value>, ParseError> {
        self.scopes.push(Map::new());
        let result = self.entries(opened_line);
        let map = self.scopes.pop().unwrap_or_default();
        result.map(|()| map)
    }

    fn entries(&mut self, opened_line: Option<usize>) -> Result<(), ParseError> {
        loop {
            self.lx.skip_blank(true);
            match (self.lx.peek(), opened_line) {
                (None, None) => return Ok(()),
                (None, Some(opened_line)) => {
                    return Err(ParseError::Unclosed {
                        line: self.lx.line,
                        close: '}',
                        what: "block",
                        opened_line,
                    })
                }
                (Some('}'), Some(_)) => {
                    self.lx.bump();
                    return Ok(());
                }
                (Some(c @ ('}' | ']')), None) => {
                    return Err(self
                        .lx
                        .syntax(format!("unexpected '{c}' with nothing open")))
                }
                (Some(']'), Some(opened_line)) => {
                    return Err(self.lx.syntax(format!(
                        "unexpected ']': expected '}}' to close block opened on line {opened_line}"
                    )))
                }
                _ => self.entry()?,
            }
        }
    }

    fn entry(&mut self) -> Result<(), ParseError> {
        let line = self.lx.line;
        let (key, quoted) = match self.lx.peek() {
            Some('"' | '\'') => (self.lx.quoted()?, true),
            _ => (self.lx.bare_key().to_owned(), false),
        };
        if key.is_empty() && !quoted {
            return Err(self
                .lx
                .syntax(format!("expected a key, found {}", self.lx.describe_next())));
        }
        self.lx.skip_inline_space();

        // `include path` is a directive, not a key. As in nats-server only the
        // whitespace-separated form is one: `include: x` is an ordinary key.
        if !quoted
            && key.eq_ignore_ascii_case("include")
            && !matches!(self.lx.peek(), Some(':' | '='))
            && !self.lx.at_value_end()
        {
            return self.include(line);
        }

        if matches!(self.lx.peek(), Some(':' | '=')) {
            self.lx.bump();
            self.lx.skip_inline_space();
        }
        // The value must start on the key's line; otherwise `port:` followed
        // by `host: x` would silently take `host: x` as the port.
        if self.lx.at_value_end() {
            let (line, column) = self.lx.position();
            return Err(ParseError::MissingValue { line, column, key });
        }
        let value = self.value()?;
        self.end_of_entry(&key)?;
        // Last one wins for repeated keys, as in nats-server.
        self.current_scope().insert(key.to_lowercase(), value);
        Ok(())
    }

    /// After a value only a separator, a comment or a closing bracket may
    /// follow on the same line; the caller consumes it.
    fn end_of_entry(&mut self, key: &str) -> Result<(), ParseError> {
        self.lx.skip_inline_space();
        if self.lx.at_value_end() {
            return Ok(());
        }
        Err(self.lx.syntax(format!(
            "expected a newline, ',' or ';' after the value of '{key}', found {}",
            self.lx.describe_next()
        )))
    }

    fn current_scope(&mut self) -> &mut Map<String, Value> {
        self.scopes
            .last_mut()
            .expect("entries are only parsed inside a block, which has a scope")
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        if matches!(self.lx.peek(), Some('{' | '[')) {
            if self.nesting >= MAX_NESTING {
                return Err(self.lx.syntax(format!(
                    "blocks and arrays are nested more than {MAX_NESTING} deep"
                )));
            }
            self.nesting += 1;
            let value = self.nested_value();
            self.nesting -= 1;
            return value;
        }
        self.nested_value()
    }

    fn nested_value(&mut self) -> Result<Value, ParseError> {
        match self.lx.peek() {
            Some('{') => {
                let opened_line = self.lx.line;
                self.lx.bump();
                Ok(Value::Object(self.block(Some(opened_line))?))
            }
            Some('[') => self.array(),
            Some('"' | '\'') => Ok(Value::String(self.lx.quoted()?)),
            _ => {
                let (line, column) = self.lx.position();
                let text = self.lx.bare_value();
                if text.is_empty() {
                    return Err(self.lx.syntax(format!(
                        "expected a value, found {}",
                        self.lx.describe_next()
                    )));
                }
                self.bare(text, line, column)
            }
        }
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        let opened_line = self.lx.line;
        self.lx.bump();
        let mut items = Vec::new();
        loop {
            self.lx.skip_blank(false);
            match self.lx.peek() {
                None => {
                    return Err(ParseError::Unclosed {
                        line: self.lx.line,
                        close: ']',
                        what: "array",
                        opened_line,
                    })
                }
                Some(']') => {
                    self.lx.bump();
                    return Ok(Value::Array(items));
                }
                Some(c @ (',' | ';' | '}')) => {
                    return Err(self.lx.syntax(format!(
                        "expected an array element or ']' (array opened on line {opened_line}), found '{c}'"
                    )))
                }
                _ => items.push(self.value()?),
            }
            // Elements are separated by a comma, a newline, or both.
            self.lx.skip_inline_space();
            match self.lx.peek() {
                Some(',') => {
                    self.lx.bump();
                }
                None | Some(']' | '\n' | '\r') => {}
                _ if self.lx.at_comment() => {}
                _ => {
                    return Err(self.lx.syntax(format!(
                        "expected ',' or ']' after an array element, found {}",
                        self.lx.describe_next()
                    )))
                }
            }
        }
    }

    /// Gives an unquoted value its type: variable, boolean, number, or else
    /// string (so `5s`, `127.0.0.1:4222` and paths stay strings).
    fn bare(&self, text: &str, line: usize, column: usize) -> Result<Value, ParseError> {
        // Only a whole `$name` is a variable; anything else with a `$`, such
        // as a bcrypt hash `$2a$11$...`, is a string (nats-server special-cases
        // bcrypt the same way).
        if let Some(name) = text.strip_prefix('$') {
            if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return self.variable(name, line, column);
            }
        }
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => return Ok(Value::Bool(true)),
            "false" | "no" | "off" => return Ok(Value::Bool(false)),
            _ => {}
        }
        match numeric(text) {
            Numeric::Value(value) => Ok(value),
            Numeric::OutOfRange => Err(ParseError::NumberOutOfRange {
                line,
                column,
                text: text.to_owned(),
            }),
            Numeric::Text => Ok(Value::String(text.to_owned())),
        }
    }

    fn variable(&self, name: &str, line: usize, column: usize) -> Result<Value, ParseError> {
        // Innermost block first, as nats-server does. Keys are stored
        // lowercased, so the lookup is case-insensitive too.
        let key = name.to_lowercase();
        if let Some(value) = self.scopes.iter().rev().find_map(|scope| scope.get(&key)) {
            return Ok(value.clone());
        }
        match std::env::var(name) {
            Ok(raw) => Ok(self.env_value(&raw)),
            Err(_) => Err(ParseError::UndefinedVariable {
                line,
                column,
                name: name.to_owned(),
            }),
        }
    }

    /// nats-server reads an environment value as if it were written in the
    /// file, so `PORT=4222` gives an integer and `HOSTS=[a, b]` an array.
    /// Anything that does not read as exactly one value stays a plain string.
    fn env_value(&self, raw: &str) -> Value {
        if self.depth < MAX_DEPTH {
            let parsed = parse_nested(&format!("v = {raw}"), self.base_dir.clone(), self.depth + 1);
            if let Ok(mut map) = parsed {
                if map.len() == 1 {
                    if let Some(value) = map.remove("v") {
                        return value;
                    }
                }
            }
        }
        Value::String(raw.to_owned())
    }

    /// `include path`: parses the file and merges its keys into the current
    /// block. The `include` keyword has been read.
    fn include(&mut self, line: usize) -> Result<(), ParseError> {
        let target = match self.lx.peek() {
            Some('"' | '\'') => self.lx.quoted()?,
            _ => self.lx.bare_value().to_owned(),
        };
        self.end_of_entry("include")?;

        let path = match &self.base_dir {
            Some(dir) => dir.join(&target),
            None => PathBuf::from(&target),
        };
        let shown = path.display().to_string();
        if self.depth >= MAX_DEPTH {
            return Err(ParseError::IncludeTooDeep {
                line,
                path: shown,
                max: MAX_DEPTH,
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|cause| ParseError::IncludeRead {
            line,
            path: shown.clone(),
            cause,
        })?;
        // Includes inside the included file are relative to that file.
        let base_dir = path.parent().map(Path::to_path_buf);
        let included =
            parse_nested(&text, base_dir, self.depth + 1).map_err(|cause| ParseError::Include {
                line,
                path: shown,
                cause: Box::new(cause),
            })?;
        // Key by key, as nats-server merges: the include overrides keys
        // before it, and keys after it override the include.
        self.current_scope().extend(included);
        Ok(())
    }
}

/// How a bare value reads as a number.
enum Numeric {
    /// Not a number at all: the value is a string.
    Text,
    /// Number-shaped but too large for an `i64` (or `f64`).
    OutOfRange,
    /// An integer or float.
    Value(Value),
}

/// Reads `text` as nats-server does: an integer (optionally negative) with an
/// optional size suffix, or a decimal float `-?digits.digits`.
fn numeric(text: &str) -> Numeric {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let digit_count = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    if digit_count == 0 {
        return Numeric::Text;
    }
    let integer_end = text.len() - unsigned.len() + digit_count;
    let (integer, rest) = text.split_at(integer_end);

    if let Some(fraction) = rest.strip_prefix('.') {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            // `1.2.3`, `127.0.0.1:4222`, ...
            return Numeric::Text;
        }
        return match text.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Numeric::Value(Value::Number(n)),
            None => Numeric::OutOfRange,
        };
    }

    let Some(multiplier) = size_multiplier(rest) else {
        return Numeric::Text;
    };
    match integer
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
    {
        Some(n) => Numeric::Value(Value::from(n)),
        None => Numeric::OutOfRange,
    }
}

/// nats-server's size suffixes, case-insensitive: a bare letter is a power of
/// 1000 and `b`, `i` or `ib` after it a power of 1024 (`1k` = 1000,
/// `1kb` = 1024). So `1m` is a million, not a minute: durations are written
/// as strings (`"1m"`).
fn size_multiplier(suffix: &str) -> Option<i64> {
    const KI: i64 = 1024;
    const K: i64 = 1000;
    Some(match suffix.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => K,
        "kb" | "ki" | "kib" => KI,
        "m" => K.pow(2),
        "mb" | "mi" | "mib" => KI.pow(2),
        "g" => K.pow(3),
        "gb" | "gi" | "gib" => KI.pow(3),
        "t" => K.pow(4),
        "tb" | "ti" | "tib" => KI.pow(4),
        "p" => K.pow(5),
        "pb" | "pi" | "pib" => KI.pow(5),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(text: &str) -> Value {
        match parse(text) {
            Ok(map) => Value::Object(map),
            Err(e) => panic!("parse failed: {e}\n--- text ---\n{text}"),
        }
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(map) => panic!("expected an error, got {map:?}\n--- text ---\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// A fresh directory under the system temp dir for include tests.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("natsconf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const GO_ERA: &str = r#"# Go-era config
operatorjwtpath: "deploy/demo/operator.jwt"
http { host: "127.0.0.1", port: 9090, ReadTimeout: 5000 }
nats: { Servers: ["nats://127.0.0.1:4222"], ConnectTimeout: 5000, UserCredentials: "sys.creds" }
store = { dir: "/var/lib/jwts", shard: true }
logging: { time: true, debug: false, colors: true, pid: false }
"#;

    #[test]
    fn go_era_config_parses_exactly() {
        assert_eq!(
            parsed(GO_ERA),
            json!({
                "operatorjwtpath": "deploy/demo/operator.jwt",
                "http": { "host": "127.0.0.1", "port": 9090, "readtimeout": 5000 },
                "nats": {
                    "servers": ["nats://127.0.0.1:4222"],
                    "connecttimeout": 5000,
                    "usercredentials": "sys.creds"
                },
                "store": { "dir": "/var/lib/jwts", "shard": true },
                "logging": { "time": true, "debug": false, "colors": true, "pid": false }
            })
        );
    }

    #[test]
    fn nats_server_config_sample() {
        let text = r#"
# nats-server in operator mode, pointed at the account server
listen: 127.0.0.1:4222
http_port = 8222
operator: /path/op.jwt
system_account: ACI2BQJAF7GTHK4LMZ3ZOMBCSQNKOGMXNJH4VYOFRDUIB5J6QKXIHMDU
resolver: URL(http://127.0.0.1:9090/jwt/v1/accounts/)
max_payload: 1MB

authorization {
  users = [
    {user: a, password: "b"}
    {user: "c", password: 'd$e'}
  ]
  timeout: 0.5
}

cluster {
  name: demo
  routes = [
    nats-route://127.0.0.1:6222   # the seed
    nats-route://127.0.0.1:6223
  ]
}
"#;
        assert_eq!(
            parsed(text),
            json!({
                "listen": "127.0.0.1:4222",
                "http_port": 8222,
                "operator": "/path/op.jwt",
                "system_account": "ACI2BQJAF7GTHK4LMZ3ZOMBCSQNKOGMXNJH4VYOFRDUIB5J6QKXIHMDU",
                "resolver": "URL(http://127.0.0.1:9090/jwt/v1/accounts/)",
                "max_payload": 1_048_576,
                "authorization": {
                    "users": [
                        { "user": "a", "password": "b" },
                        { "user": "c", "password": "d$e" }
                    ],
                    "timeout": 0.5
                },
                "cluster": {
                    "name": "demo",
                    "routes": ["nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223"]
                }
            })
        );
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_maps() {
        assert_eq!(parsed(""), json!({}));
        assert_eq!(parsed("\n  \n"), json!({}));
        assert_eq!(parsed("# just a comment\n// and another\n"), json!({}));
    }

    #[test]
    fn comments_of_both_kinds() {
        let text = r#"
# hash comment
// slash comment
a: 1 # trailing hash
b: "x # not a comment" // trailing slashes
c: nats://host:4222 // the // in the URL is not a comment
d: pass#word
block { # after brace
  f: 2 // inside
} # after close
"#;
        assert_eq!(
            parsed(text),
            json!({
                "a": 1,
                "b": "x # not a comment",
                "c": "nats://host:4222",
                "d": "pass#word",
                "block": { "f": 2 }
            })
        );
    }

    #[test]
    fn separators_and_key_forms() {
        let text = r#"
colon: 1
equals = 2
space 3
nospace:4
"Quoted Key": 5
'single key' = 6
semi: 7; comma: 8, last: 9
"#;
        assert_eq!(
            parsed(text),
            json!({
                "colon": 1, "equals": 2, "space": 3, "nospace": 4,
                "quoted key": 5, "single key": 6,
                "semi": 7, "comma": 8, "last": 9
            })
        );
    }

    #[test]
    fn crlf_line_endings() {
        let text = "a: 1\r\nb: x # c\r\nlist: [\r\n  p\r\n  q\r\n]\r\nm {\r\n  k: v\r\n}\r\n";
        assert_eq!(
            parsed(text),
            json!({ "a": 1, "b": "x", "list": ["p", "q"], "m": { "k": "v" } })
        );
    }

    #[test]
    fn nested_blocks_in_every_form() {
        let text = r#"
outer {
  plain { a: 1 }
  colon: { b: 2; c: 3 }
  equals = {
    deeper {
      deepest { d: "x" }
    }
  }
  empty {}
}
"#;
        assert_eq!(
            parsed(text),
            json!({
                "outer": {
                    "plain": { "a": 1 },
                    "colon": { "b": 2, "c": 3 },
                    "equals": { "deeper": { "deepest": { "d": "x" } } },
                    "empty": {}
                }
            })
        );
    }

    #[test]
    fn arrays_multi_line_without_commas() {
        let text = r#"
inline: [a, b, c]
multi: [
  "x"
  'y'   # comment
  z     // comment
]
mixed: [1, 2
  3,
  4,
]
nested: [[1, 2], [], ["three"]]
maps: [
  { name: one }
  { name: two, tags: [t1 t2] }
]
empty: []
"#;
        assert_eq!(
            parsed(text)["multi"],
            json!(["x", "y", "z"]),
            "newline-separated elements"
        );
        // `[t1 t2]`: a space does not separate elements, so it is one bare string.
        assert_eq!(
            parsed(text),
            json!({
                "inline": ["a", "b", "c"],
                "multi": ["x", "y", "z"],
                "mixed": [1, 2, 3, 4],
                "nested": [[1, 2], [], ["three"]],
                "maps": [{ "name": "one" }, { "name": "two", "tags": ["t1 t2"] }],
                "empty": []
            })
        );
    }

    #[test]
    fn string_escapes() {
        let text = r#"
dq: "quote \" backslash \\ slash \/ nl \n tab \t cr \r"
unicode: "caf\u00e9 \uD83D\uDE00 \x41"
sq: 'C:\path\no escapes "here"'
multiline: "one
two"
"#;
        assert_eq!(
            parsed(text),
            json!({
                "dq": "quote \" backslash \\ slash / nl \n tab \t cr \r",
                "unicode": "café 😀 A",
                "sq": "C:\\path\\no escapes \"here\"",
                "multiline": "one\ntwo"
            })
        );
    }

    #[test]
    fn scalar_types() {
        let text = r#"
int: 42
negative: -17
float: 3.25
negfloat: -0.5
t1: true
t2: YES
t3: On
f1: False
f2: no
f3: OFF
quoted_bool: "true"
quoted_num: "42"
duration: "5s"
bare_duration: 5s
ip: 127.0.0.1
hostport: 127.0.0.1:4222
version: 1.2.3
path: /var/lib/jwts
greeting: hello   world   
bcrypt: $2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG
"#;
        assert_eq!(
            parsed(text),
            json!({
                "int": 42, "negative": -17, "float": 3.25, "negfloat": -0.5,
                "t1": true, "t2": true, "t3": true,
                "f1": false, "f2": false, "f3": false,
                "quoted_bool": "true", "quoted_num": "42",
                "duration": "5s", "bare_duration": "5s",
                "ip": "127.0.0.1", "hostport": "127.0.0.1:4222", "version": "1.2.3",
                "path": "/var/lib/jwts",
                "greeting": "hello   world",
                "bcrypt": "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG"
            })
        );
    }

    #[test]
    fn size_suffixes_follow_nats_server() {
        let text =
            "a: 1k\nb: 1kb\nc: 2KB\nd: 1mb\ne: 1gb\nf: 1M\ng: 3Gi\nh: 1MiB\ni: -2k\nj: 1tb\n";
        assert_eq!(
            parsed(text),
            json!({
                "a": 1000, "b": 1024, "c": 2048, "d": 1_048_576, "e": 1_073_741_824_i64,
                "f": 1_000_000, "g": 3_i64 * 1_073_741_824, "h": 1_048_576, "i": -2000,
                "j": 1_099_511_627_776_i64
            })
        );
        assert_eq!(
            parsed("x: 1kbx")["x"],
            json!("1kbx"),
            "unknown suffix is a string"
        );
        let err = error("big: 9999999999pb");
        assert!(
            err.contains("line 1") && err.contains("out of range"),
            "{err}"
        );
    }

    #[test]
    fn keys_are_lowercased_and_last_duplicate_wins() {
        let text = "Port: 1\nport: 2\nBLOCK { Inner: a }\nblock { other: b }\n";
        // A repeated block replaces the earlier one whole, as in nats-server.
        assert_eq!(
            parsed(text),
            json!({ "port": 2, "block": { "other": "b" } })
        );
    }

    #[test]
    fn variables_resolve_from_keys_then_environment() {
        std::env::set_var("NATSCONF_TEST_PORT", "4222");
        std::env::set_var("NATSCONF_TEST_HOST", "nats://example.com:4222");
        let text = r#"
base_dir: /data
PORT_BASE = 8000
http {
  dir: $base_dir
  port: $port_base
  inner { dir_again: $BASE_DIR }
}
local { x: 1, y: $x }
servers: [$NATSCONF_TEST_HOST]
port: $NATSCONF_TEST_PORT
bcrypt: "$2a$11$not.a.variable"
"#;
        assert_eq!(
            parsed(text),
            json!({
                "base_dir": "/data",
                "port_base": 8000,
                "http": { "dir": "/data", "port": 8000, "inner": { "dir_again": "/data" } },
                "local": { "x": 1, "y": 1 },
                "servers": ["nats://example.com:4222"],
                "port": 4222,
                "bcrypt": "$2a$11$not.a.variable"
            })
        );
    }

    #[test]
    fn undefined_variable_is_an_error_naming_it() {
        let err = error("a: 1\nb: $NATSCONF_TEST_SURELY_UNDEFINED_VAR\n");
        assert!(err.starts_with("line 2, column 4:"), "{err}");
        assert!(err.contains("NATSCONF_TEST_SURELY_UNDEFINED_VAR"), "{err}");
        // A key inside a sibling block is not in scope.
        let err = error("a { x: 1 }\nb { y: $x }\n");
        assert!(err.starts_with("line 2") && err.contains("'$x'"), "{err}");
    }

    #[test]
    fn include_merges_relative_to_the_including_file() {
        let dir = scratch_dir("include");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("sub/accounts.conf"),
            "accounts { A: { users: [ {user: a} ] } }\ninclude deeper.conf\n",
        )
        .unwrap();
        std::fs::write(dir.join("sub/deeper.conf"), "deep: yes\nport: 1\n").unwrap();
        let main = "port: 4222\ninclude sub/accounts.conf\nafter: done\nnested {\n  include \"sub/deeper.conf\"\n}\n";

        // Through the config Format, with the including file's path as uri.
        let uri = dir.join("main.conf").display().to_string();
        let map = config::Format::parse(&NatsConf, Some(&uri), main).unwrap();
        assert_eq!(
            map["port"].clone().into_int().unwrap(),
            1,
            "include overrides keys before it"
        );
        assert_eq!(map["after"].clone().into_string().unwrap(), "done");
        assert!(map["deep"].clone().into_bool().unwrap());
        let nested = map["nested"].clone().into_table().unwrap();
        assert_eq!(nested["port"].clone().into_int().unwrap(), 1);
        let accounts = map["accounts"].clone().into_table().unwrap();
        assert!(accounts.contains_key("a"));
        assert_eq!(map["port"].origin(), Some(uri.as_str()));

        // Missing file: the error names the path and the include's line.
        let err = config::Format::parse(&NatsConf, Some(&uri), "a: 1\ninclude nope.conf\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("line 2: cannot read included file"),
            "{err}"
        );
        assert!(err.contains("nope.conf"), "{err}");

        // An error inside the included file reports both locations.
        std::fs::write(dir.join("bad.conf"), "ok: 1\nbroken {\n").unwrap();
        let err = config::Format::parse(&NatsConf, Some(&uri), "\n\ninclude bad.conf\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 3: in included file"), "{err}");
        assert!(
            err.contains("line 3: expected '}' to close block opened on line 2"),
            "{err}"
        );

        // A file including itself stops instead of recursing forever.
        std::fs::write(dir.join("loop.conf"), "include loop.conf\n").unwrap();
        let err = config::Format::parse(&NatsConf, Some(&uri), "include loop.conf\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nested more than"), "{err}");

        // `include: x` (with a separator) is an ordinary key, as in nats-server.
        assert_eq!(parsed("include: x"), json!({ "include": "x" }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn braces_around_the_whole_file_and_json() {
        // The syntax has no null: JSON's `null` reads as the bare string "null".
        let text = r#"{ "Name": "x", "list": [1, 2.5, true], "obj": { "k": null } }"#;
        assert_eq!(
            parsed(text),
            json!({ "name": "x", "list": [1, 2.5, true], "obj": { "k": "null" } })
        );
    }

    #[test]
    fn error_unterminated_string() {
        let err = error("a: 1\nb: \"never closed\nc: 3\n");
        assert_eq!(
            err,
            "line 2, column 4: unterminated string: no closing \" before the end of the file"
        );
        let err = error("a: 'open");
        assert!(
            err.starts_with("line 1, column 4: unterminated string"),
            "{err}"
        );
    }

    #[test]
    fn error_unclosed_block_and_array() {
        assert_eq!(
            error("http {\n  port: 1\n"),
            "line 3: expected '}' to close block opened on line 1"
        );
        assert_eq!(
            error("outer {\n  inner {\n  }\n  x: 1"),
            "line 4: expected '}' to close block opened on line 1"
        );
        assert_eq!(
            error("a: [1,\n2\n"),
            "line 3: expected ']' to close array opened on line 1"
        );
        let err = error("a { b: 1 ]");
        assert!(
            err.starts_with("line 1, column 10: unexpected ']'"),
            "{err}"
        );
        let err = error("a: 1\n}\n");
        assert!(err.starts_with("line 2, column 1: unexpected '}'"), "{err}");
    }

    #[test]
    fn error_missing_value() {
        assert_eq!(
            error("host: x\nport:\nother: y\n"),
            "line 2, column 6: missing value for key 'port'"
        );
        assert_eq!(
            error("a {\n  b = # nothing\n}"),
            "line 2, column 7: missing value for key 'b'"
        );
        assert_eq!(
            error("last"),
            "line 1, column 5: missing value for key 'last'"
        );
    }

    #[test]
    fn error_other_syntax() {
        let err = error("a: \"x\" y\n");
        assert!(
            err.starts_with(
                "line 1, column 8: expected a newline, ',' or ';' after the value of 'a'"
            ),
            "{err}"
        );
        let err = error("a: \"bad \\q escape\"");
        assert!(
            err.starts_with("line 1, column 9: invalid escape sequence '\\q'"),
            "{err}"
        );
        let err = error("a: [1,, 2]");
        assert!(
            err.starts_with("line 1, column 7: expected an array element"),
            "{err}"
        );
        let err = error(": 1");
        assert!(
            err.starts_with("line 1, column 1: expected a key, found ':'"),
            "{err}"
        );
    }

    #[test]
    fn config_builder_reads_the_format() {
        #[derive(serde::Deserialize)]
        struct Http {
            host: String,
            port: u16,
            readtimeout: u64,
        }

        let cfg = config::Config::builder()
            .add_source(config::File::from_str(GO_ERA, NatsConf))
            .build()
            .unwrap();
        assert_eq!(cfg.get_int("http.port").unwrap(), 9090);
        assert_eq!(cfg.get_string("store.dir").unwrap(), "/var/lib/jwts");
        assert!(cfg.get_bool("store.shard").unwrap());
        assert_eq!(cfg.get_int("nats.connecttimeout").unwrap(), 5000);
        let servers = cfg.get_array("nats.servers").unwrap();
        assert_eq!(
            servers[0].clone().into_string().unwrap(),
            "nats://127.0.0.1:4222"
        );
        let http: Http = cfg.get("http").unwrap();
        assert_eq!(
            (http.host.as_str(), http.port, http.readtimeout),
            ("127.0.0.1", 9090, 5000)
        );

        let err = config::Config::builder()
            .add_source(config::File::from_str("a {\n", NatsConf))
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: expected '}'"), "{err}");
    }
}
