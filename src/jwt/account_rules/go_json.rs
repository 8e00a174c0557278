//! The decoding rules of Go's `encoding/json`, as far as they decide whether the library can
//! read a token: a JSON key fills a field when it matches ignoring ASCII case (and two Unicode
//! folds), the last matching key wins, `null` and absent keys leave Go's zero value, and a value
//! of the wrong JSON type fails the decode without stopping it, so every failure is reported.
//!
//! What the claims *are* (which fields, of which Go types) lives in [`super::claims`]; this
//! module only knows how Go reads one JSON value into one Go type.

use super::go_fmt::one_line;
use serde_json::{Map, Value};
use std::fmt::Display;

/// Collects decode failures; every reader returns Go's zero value after a failure so decoding
/// goes on and reports them all, as `encoding/json` goes on after a type mismatch.
#[derive(Default)]
pub(super) struct Decoder {
    pub(super) errors: Vec<String>,
}

/// `at.name`, or the one that is not empty.
pub(super) fn join(at: &str, name: &str) -> String {
    match (at.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => at.to_string(),
        _ => format!("{at}.{name}"),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether JSON key `key` fills the Go field whose JSON name is `name` (ASCII lower case):
/// equal ignoring ASCII case, plus the two non-ASCII letters Go folds onto ASCII ones (`ſ` is
/// `s`, the Kelvin sign is `k`), as `encoding/json`'s key matching does.
pub(super) fn key_matches(key: &str, name: &str) -> bool {
    if key == name {
        return true;
    }
    let mut k = key.chars();
    for n in name.chars() {
        let Some(c) = k.next() else { return false };
        let same = c.eq_ignore_ascii_case(&n)
            || (n == 's' && c == '\u{17F}')
            || (n == 'k' && c == '\u{212A}');
        if !same {
            return false;
        }
    }
    k.next().is_none()
}

/// The value Go decodes into field `name`: every matching key is decoded in turn, so the last
/// one wins.
pub(super) fn field<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.iter()
        .rfind(|(k, _)| key_matches(k, name))
        .map(|(_, v)| v)
}

impl Decoder {
    pub(super) fn fail(&mut self, path: String, what: impl Display) {
        self.errors.push(one_line(format!("{path}: {what}")));
    }

    pub(super) fn mismatch(&mut self, path: String, expected: &str, got: &Value) {
        self.fail(
            path,
            format_args!("expected {expected}, got {}", json_kind(got)),
        );
    }

    /// A struct-valued element or field: `null` is the zero value (`None` here).
    pub(super) fn as_struct<'v>(
        &mut self,
        v: &'v Value,
        path: String,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Null => None,
            Value::Object(o) => Some(o),
            other => {
                self.mismatch(path, "an object", other);
                None
            }
        }
    }

    pub(super) fn object<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<&'v Map<String, Value>> {
        let v = field(obj, name)?;
        self.as_struct(v, join(at, name))
    }

    pub(super) fn array<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> &'v [Value] {
        match field(obj, name) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.mismatch(join(at, name), "an array", other);
                &[]
            }
        }
    }

    pub(super) fn string(&mut self, obj: &Map<String, Value>, at: &str, name: &str) -> String {
        match field(obj, name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                self.mismatch(join(at, name), "a string", other);
                String::new()
            }
        }
    }

    pub(super) fn boolean(&mut self, obj: &Map<String, Value>, at: &str, name: &str) -> bool {
        match field(obj, name) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.mismatch(join(at, name), "a boolean", other);
                false
            }
        }
    }

    /// A Go `int`/`int64`/`time.Duration`: an integer literal in range (`1.0` and `1e3` fail).
    pub(super) fn int(&mut self, obj: &Map<String, Value>, at: &str, name: &str) -> i64 {
        match field(obj, name) {
            None | Some(Value::Null) => 0,
            Some(v) => self.int_value(v, join(at, name)),
        }
    }

    pub(super) fn int_value(&mut self, v: &Value, path: String) -> i64 {
        match v {
            Value::Null => 0,
            Value::Number(n) => n.as_i64().unwrap_or_else(|| {
                self.fail(path, format_args!("{n} is not a 64-bit integer"));
                0
            }),
            other => {
                self.mismatch(path, "an integer", other);
                0
            }
        }
    }

    /// A Go unsigned integer no larger than `max` (`uint8` mapping weights, `uint` positions).
    pub(super) fn uint(&mut self, obj: &Map<String, Value>, at: &str, name: &str, max: u64) -> u64 {
        match field(obj, name) {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(u) if u <= max => u,
                _ => {
                    self.fail(
                        join(at, name),
                        format_args!("{n} is not an integer from 0 to {max}"),
                    );
                    0
                }
            },
            Some(other) => {
                self.mismatch(join(at, name), "an integer", other);
                0
            }
        }
    }

    /// A Go `[]string`: `null` elements decode as "".
    pub(super) fn strings(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Vec<String> {
        let path = join(at, name);
        let mut out = Vec::new();
        for (i, v) in self.array(obj, at, name).iter().enumerate() {
            match v {
                Value::Null => out.push(String::new()),
                Value::String(s) => out.push(s.clone()),
                other => self.mismatch(format!("{path}[{i}]"), "a string", other),
            }
        }
        out
    }

    /// A Go `map[string]int64` (revocation lists).
    pub(super) fn int_map(&mut self, obj: &Map<String, Value>, at: &str, name: &str) {
        let path = join(at, name);
        if let Some(m) = self.object(obj, at, name) {
            for (k, v) in m {
                self.int_value(v, format!("{path}.{k}"));
            }
        }
    }

    /// The library's `CIDRList`: an array of strings or one comma-separated string.
    pub(super) fn cidr_list(&mut self, obj: &Map<String, Value>, at: &str, name: &str) {
        let ok = match field(obj, name) {
            None | Some(Value::Null) | Some(Value::String(_)) => true,
            Some(Value::Array(a)) => a
                .iter()
                .all(|v| matches!(v, Value::Null | Value::String(_))),
            Some(_) => false,
        };
        if !ok {
            self.fail(
                join(at, name),
                "expected an array of strings or a comma-separated string",
            );
        }
    }
}

/// What `json.Marshal` of a decoded `map[string]interface{}` gives back: object keys sorted
/// (so among keys matching one field, the last in byte order wins) and numbers as float64,
/// printed as integers when whole and below 1e21 (so `1e3` becomes `1000`, `1.5` stays).
pub(super) fn go_reencoded(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), go_reencoded(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(go_reencoded).collect()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // The casts are exact: `f` is whole and inside the target range.
            if f.fract() == 0.0 && f.abs() < 1e21 {
                if f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                    return Value::from(f as i64);
                }
                if (0.0..2f64.powi(64)).contains(&f) {
                    return Value::from(f as u64);
                }
            }
            Value::Number(n.clone())
        }
        other => other.clone(),
    }
}
