//! Reader for the nats-server configuration syntax (`.conf` files).
//!
//! The Go nats-account-server read its configuration with nats-server's own
//! `conf` package, so existing deployments have config files written in that
//! syntax. This module owns that syntax: a small hand-written lexer and
//! recursive-descent parser that turn the text into a `serde_json` map with
//! lowercased keys ([`parse`], [`parse_with_base`]), which the config loader
//! merges like a TOML or JSON file.
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
//!
//! Layout: this file is the public surface (the entry points and [`ParseError`]);
//! `lexer` reads characters and tokens, `parser` holds the grammar, the
//! typing of bare values and `include`s; the unit tests are in `tests.rs`.

mod lexer;
mod parser;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde_json::{Map, Value};

/// Parse nats-server configuration text into a JSON-like map (keys lowercased).
///
/// `include` paths are taken relative to the current directory, since text
/// alone has no location; the config loader uses [`parse_with_base`].
///
/// # Errors
/// [`ParseError`] with the line (and column) of the problem.
pub fn parse(text: &str) -> Result<Map<String, Value>, ParseError> {
    parser::parse_nested(text, None, 0)
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
    parser::parse_nested(text, base_dir.map(Path::to_path_buf), 0)
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
