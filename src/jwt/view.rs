//! The `?decode=true` view: a human-readable rendering of a token, built from parsed JSON.
//!
//! Layout follows the Go server (header JSON, `\r\n`, claims JSON, `\r\n`, signature, `\n`)
//! so scripts that split on `\r\n` keep working. Unlike the Go server it never rewrites JSON
//! text: dates are *added* as `<field>_rfc3339` siblings and nested activation tokens are
//! expanded as a `token_claims` sibling, so the output is always valid JSON.

use super::{decode, unix_to_rfc3339, JwtError};
use data_encoding::BASE64URL_NOPAD;
use serde::Serialize;
use serde_json::{Map, Value};

/// Renders `token` for people. Works on any well-formed token; signature problems of nested
/// activation tokens are shown inline rather than failing the whole view.
///
/// # Errors
/// [`JwtError::Malformed`] when the token's segments are not base64url JSON.
pub fn render(token: &str) -> Result<String, JwtError> {
    let token = token.trim();
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed(
            "expected three '.'-separated segments".into(),
        ));
    };
    let header = segment_json(h)?;
    let mut claims = segment_json(p)?;
    annotate(&mut claims);
    Ok(format!(
        "{}\r\n{}\r\n{}\n",
        pretty(&header),
        pretty(&claims),
        sig
    ))
}

fn segment_json(seg: &str) -> Result<Value, JwtError> {
    let bytes = BASE64URL_NOPAD
        .decode(seg.trim_end_matches('=').as_bytes())
        .map_err(|_| JwtError::Malformed("segment is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| JwtError::Malformed(format!("segment is not JSON: {e}")))
}

/// Adds date annotations to a claims object and expands activation tokens in its imports.
fn annotate(claims: &mut Value) {
    let Some(obj) = claims.as_object_mut() else {
        return;
    };
    add_dates(obj);
    let imports = obj
        .get_mut("nats")
        .and_then(|n| n.get_mut("imports"))
        .and_then(Value::as_array_mut);
    for import in imports.into_iter().flatten() {
        let Some(imp) = import.as_object_mut() else {
            continue;
        };
        let Some(token) = imp.get("token").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        // v1 imports could hold a URL instead of a token; leave those as they are.
        if token.contains("://") || token.is_empty() {
            continue;
        }
        match decode(&token).and_then(|_| render_claims(&token)) {
            Ok(nested) => imp.insert("token_claims".into(), nested),
            Err(e) => imp.insert("token_error".into(), Value::String(e.to_string())),
        };
    }
}

fn render_claims(token: &str) -> Result<Value, JwtError> {
    let p = token.split('.').nth(1).unwrap_or("");
    let mut v = segment_json(p)?;
    if let Some(obj) = v.as_object_mut() {
        add_dates(obj);
    }
    Ok(v)
}

fn add_dates(obj: &mut Map<String, Value>) {
    for field in ["iat", "exp", "nbf"] {
        if let Some(t) = obj.get(field).and_then(Value::as_i64).filter(|t| *t > 0) {
            obj.insert(
                format!("{field}_rfc3339"),
                Value::String(unix_to_rfc3339(t)),
            );
        }
    }
}

fn pretty(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).expect("Value always serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}
