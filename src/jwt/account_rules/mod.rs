//! What an account JWT may contain: the blocking checks of the official Go library's
//! `AccountClaims.Validate`, as in nats-io/jwt **v2.3.0** (the version nats-server 2.9.10
//! vendors), without the time checks, which [`super::Claims::check_time`] already makes.
//!
//! Why this exists: nats-server runs the same checks whenever it loads an account and refuses an
//! account that fails one, so every user of that account then fails to connect. The Go account
//! server therefore refused such a token on POST (400) and kept serving the previous good
//! version; checking only types, keys and times, we would store and serve the broken one.
//!
//! How it reads the claims: in two steps, as the Go library does.
//! 1. *Decode* the JSON payload with the rules of Go's `encoding/json`: keys match a field
//!    ignoring ASCII case, unknown keys are ignored, `null` leaves the zero value, an absent
//!    number is 0 (so an absent limit is 0, not "unlimited"), a value of the wrong JSON type and
//!    an unknown enum string (an export `type` of `"foo"`) fail the whole decode. A token that
//!    fails here could not be read by nats-server at all, so only the decode failures are
//!    reported, the way the library stops at them.
//! 2. *Validate* the decoded values with the library's rules. Only its errors (`AddError`) count;
//!    its warnings (`AddWarning`, e.g. the deprecated import `to`) never block a token.
//!
//! Small hand-filled structs sit between the two steps instead of serde derives, because serde
//! matches keys case-sensitively, stops at the first error and has no notion of Go's zero values;
//! spelled out, each Go quirk that decides whether a token is refused is visible and tested.
//!
//! Messages keep the Go library's wording (including its `%q` quoting) so that a user who knows
//! `nsc` or nats-server recognises them.
//!
//! Layout, one module per step or per piece of Go behaviour reproduced:
//! - [`go_json`]: the decoding rules of Go's `encoding/json` (key matching, zero values,
//!   type mismatches that do not stop the decode, re-encoding a decoded map);
//! - [`claims`]: the account and activation claims as the library holds them after decoding,
//!   read with those rules (step 1);
//! - [`validate`]: the library's validation rules over the decoded claims (step 2);
//! - [`go_fmt`]: Go's `%q` quoting and one-line messages, for the library's wording;
//! - [`go_url`]: the parts of Go's `net/url` that decide whether an info URL is refused.

mod claims;
mod go_fmt;
mod go_json;
mod go_url;
mod validate;

#[cfg(test)]
mod tests;

use super::{Jwt, JwtError};
use go_json::Decoder;
use serde_json::Value;
use validate::Issues;

/// How many issues the error spells out: a generated token can have thousands (one per export),
/// and the message is one line of an HTTP answer.
const MAX_LISTED_ISSUES: usize = 20;

/// Fails with the blocking issues of the account in `jwt` (already decoded and verified), in
/// one line: `account JWT has validation issues: <issue>; <issue>` (the first
/// `MAX_LISTED_ISSUES`, then how many more).
///
/// # Errors
/// [`JwtError::InvalidClaims`].
pub fn check_account_rules(jwt: &Jwt) -> Result<(), JwtError> {
    let issues = match payload_json(&jwt.raw) {
        Ok(payload) => validate_account(&payload),
        Err(why) => vec![why],
    };
    if issues.is_empty() {
        return Ok(());
    }
    let listed = issues.len().min(MAX_LISTED_ISSUES);
    let mut message = format!(
        "account JWT has validation issues: {}",
        issues[..listed].join("; ")
    );
    if issues.len() > listed {
        message.push_str(&format!("; and {} more", issues.len() - listed));
    }
    Err(JwtError::InvalidClaims(message))
}

/// The blocking issues of an account's claims (the whole JSON payload: the registered claims
/// and `nats`), each once, in the library's order (JSON order where Go walks a map, whose order
/// is random). Empty means nats-server v2.9 would load the account.
pub fn validate_account(payload: &Value) -> Vec<String> {
    let mut d = Decoder::default();
    let account = claims::decode_account(&mut d, payload);
    if !d.errors.is_empty() {
        return d
            .errors
            .into_iter()
            .map(|e| format!("claims cannot be decoded: {e}"))
            .collect();
    }
    let mut vr = Issues::default();
    if let Some(account) = account {
        account.validate(&mut vr);
    }
    vr.list
}

/// The JSON payload of a token whose segments have been checked before.
fn payload_json(token: &str) -> Result<Value, String> {
    let seg = token
        .split('.')
        .nth(1)
        .ok_or("the token has no payload segment")?;
    let bytes = super::b64(seg, "payload").map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("claims are not valid JSON: {e}"))
}
