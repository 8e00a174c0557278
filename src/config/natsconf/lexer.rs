//! The lexer of the nats-server configuration syntax: character-level reading.
//!
//! The syntax is context-sensitive (a bare value may contain `:` and `//`, a
//! bare key may not), so instead of a token stream the parser asks for the kind
//! of token it expects next, and the lexer tracks the line and column every
//! error message starts with.

use super::ParseError;

pub(super) struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    /// 1-based line and column (in characters) of the next character.
    pub(super) line: usize,
    column: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
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

    pub(super) fn position(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    pub(super) fn peek_second(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    pub(super) fn bump(&mut self) -> Option<char> {
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

    pub(super) fn at_comment(&self) -> bool {
        match self.peek() {
            Some('#') => true,
            Some('/') => self.peek_second() == Some('/'),
            _ => false,
        }
    }

    /// Skips to the end of the line, leaving the newline for the caller.
    pub(super) fn skip_comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.bump();
        }
    }

    /// Skips spaces and tabs, but not newlines, which end entries.
    pub(super) fn skip_inline_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// Skips whitespace, newlines and comments; with `separators`, also the
    /// `,` and `;` that may separate map entries.
    pub(super) fn skip_blank(&mut self, separators: bool) {
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
    pub(super) fn at_value_end(&self) -> bool {
        matches!(
            self.peek(),
            None | Some('\n' | '\r' | ',' | ';' | '}' | ']')
        ) || self.at_comment()
    }

    /// Describes the next character for error messages.
    pub(super) fn describe_next(&self) -> String {
        match self.peek() {
            None => "the end of the file".to_owned(),
            Some('\n' | '\r') => "the end of the line".to_owned(),
            Some(c) => format!("'{c}'"),
        }
    }

    pub(super) fn syntax(&self, message: String) -> ParseError {
        ParseError::Syntax {
            line: self.line,
            column: self.column,
            message,
        }
    }

    /// A bare key: everything up to whitespace, a separator, a bracket, a
    /// quote or a comment. May be empty, which the caller reports.
    pub(super) fn bare_key(&mut self) -> &'a str {
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
    pub(super) fn bare_value(&mut self) -> &'a str {
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
    pub(super) fn quoted(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('\'') {
            self.single_quoted()
        } else {
            self.double_quoted()
        }
    }

    /// `'...'`: taken literally, no escapes (handy for Windows paths).
    pub(super) fn single_quoted(&mut self) -> Result<String, ParseError> {
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
    pub(super) fn double_quoted(&mut self) -> Result<String, ParseError> {
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
    pub(super) fn escape(&mut self) -> Result<char, ParseError> {
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
    pub(super) fn hex_digits(
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
