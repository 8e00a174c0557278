//! The pack: `key|jwt` lines, as the Go nats-account-server wrote them and nats-server's full
//! resolvers exchange them.
//!
//! Over HTTP (`GET /jwt/v1/pack`) the lines are joined by `\n` with no trailing newline; over
//! NATS (`$SYS.REQ.CLAIMS.PACK`) each line is one message, and an empty message ends the pack.
//!
//! Parsing is strict: a line is exactly two non-empty fields separated by one `|` (a JWT never
//! contains `|`); surrounding whitespace and blank lines are ignored; any other line is
//! [`Malformed`], reported with its line number and never guessed at. (`import --from-url` used
//! this rule before; the replica's pack sync dropped such lines silently and now reports them.)

use bytes::{Bytes, BytesMut};
use std::fmt;

/// Writes one HTTP pack line for `key` and `jwt` to `out`, after the `\n` that separates it
/// from the previous line unless it is the `first`.
pub fn write_line(key: &str, jwt: &[u8], first: bool, out: &mut BytesMut) {
    if !first {
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"|");
    out.extend_from_slice(jwt);
}

/// One pack line as a NATS message (no separator: a message is a line).
pub fn message(key: &str, jwt: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(key.len() + 1 + jwt.len());
    write_line(key, jwt, true, &mut out);
    out.freeze()
}

/// A pack line that is not `key|jwt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Its line number, from 1.
    pub line: usize,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: not a `key|jwt` line", self.line)
    }
}

/// One parsed line: `(key, jwt)`, or why it is not one.
pub type Line = Result<(String, String), Malformed>;

/// Parses a pack body into its lines, in order; blank lines are skipped.
pub fn parse(body: &str) -> Vec<Line> {
    body.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| parse_line(line).ok_or(Malformed { line: i + 1 }))
        .collect()
}

/// `key|jwt`, each field trimmed and not empty, with exactly one `|`.
fn parse_line(line: &str) -> Option<(String, String)> {
    let (key, jwt) = line.split_once('|')?;
    let (key, jwt) = (key.trim(), jwt.trim());
    if key.is_empty() || jwt.is_empty() || jwt.contains('|') {
        return None;
    }
    Some((key.to_string(), jwt.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_lines_parse_back() {
        let mut body = BytesMut::new();
        write_line("AKEY", b"a.b.c", true, &mut body);
        write_line("BKEY", b"d.e.f", false, &mut body);
        assert_eq!(&body[..], b"AKEY|a.b.c\nBKEY|d.e.f");
        let parsed = parse(std::str::from_utf8(&body).unwrap());
        assert_eq!(
            parsed,
            vec![
                Ok(("AKEY".into(), "a.b.c".into())),
                Ok(("BKEY".into(), "d.e.f".into()))
            ]
        );
        assert_eq!(&message("AKEY", b"a.b.c")[..], b"AKEY|a.b.c");
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let parsed = parse("A|x\n\n  \nB|y|z\nnopipe\n|w\nC|\n D | v \r\n");
        assert_eq!(
            parsed,
            vec![
                Ok(("A".into(), "x".into())),
                Err(Malformed { line: 4 }),
                Err(Malformed { line: 5 }),
                Err(Malformed { line: 6 }),
                Err(Malformed { line: 7 }),
                Ok(("D".into(), "v".into())),
            ]
        );
        assert_eq!(
            Malformed { line: 4 }.to_string(),
            "line 4: not a `key|jwt` line"
        );
    }
}
