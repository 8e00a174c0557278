//! Go's formatting of the values the library's messages quote: `%q` quoting, and escaping so
//! that a message built from a token's contents stays one line.
//!
//! Why: messages keep the Go library's wording, quotes included, so that they read as `nsc` and
//! nats-server print them; and they end up in one line of an HTTP answer or a log.

/// Escapes control characters: messages quote subjects, keys and paths from the token (some
/// unquoted, as Go prints them with `%s`), and an error must stay one line.
pub(super) fn one_line(s: String) -> String {
    if !s.contains(char::is_control) {
        return s;
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Go's `%q` of a string: double-quoted with Go escapes (close enough for messages).
pub(super) fn q(s: &str) -> String {
    go_quote(s.as_bytes())
}

pub(super) fn go_quote(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if c.is_ascii() && (c < ' ' || c == '\u{7f}') => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if !c.is_ascii() && (c.is_control() || c.is_whitespace()) => {
                    if (c as u32) < 0x10000 {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    } else {
                        let _ = write!(out, "\\U{:08x}", c as u32);
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}
