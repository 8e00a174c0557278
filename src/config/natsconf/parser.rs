//! The parser of the nats-server configuration syntax: the grammar, one method
//! per construct, over the [`Lexer`]; plus what gives a bare value its type
//! (numbers with nats-server's size suffixes, booleans), variables and
//! `include`s.
//!
//! ```text
//! document := '{' entries '}' | entries
//! entries  := { entry (newline | ',' | ';') }
//! entry    := key [':' | '='] value | 'include' path
//! value    := '{' entries '}' | array | quoted | bare
//! array    := '[' { value (',' | newline) } ']'
//! ```

use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value};

use super::lexer::Lexer;
use super::ParseError;

/// How deep includes (and environment variables that refer to further
/// variables) may nest before we assume a cycle and give up.
const MAX_DEPTH: usize = 16;

/// How deep blocks and arrays may nest inside one another. The parser recurses per level, so
/// without a bound a hostile or corrupt file of `{{{{…` overflows the stack and aborts the
/// process; real files nest a handful of levels.
const MAX_NESTING: usize = 128;

/// Parses one text; `base_dir` anchors its includes and `depth` counts how
/// many includes (or variable expansions) led here.
pub(super) fn parse_nested(
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
