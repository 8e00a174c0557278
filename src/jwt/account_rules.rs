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

use super::{decode, is_account_key, key_kind, Jwt, JwtError, KeyKind};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt::Display;

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
    let account = decode_account(&mut d, payload);
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

// ---------------------------------------------------------------------------------------------
// Step 1: decoding as Go's encoding/json does.
// ---------------------------------------------------------------------------------------------

/// Import and export kinds. Unknown is what an absent `type` decodes to; any *present* value
/// other than the two names fails the decode (the Go type's `UnmarshalJSON`, which json calls
/// even for `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExportType {
    Unknown,
    Stream,
    Service,
}

impl ExportType {
    /// The Go `String()`, which `%q`/`%s` print.
    fn name(self) -> &'static str {
        match self {
            ExportType::Unknown => "unknown",
            ExportType::Stream => "stream",
            ExportType::Service => "service",
        }
    }
}

#[derive(Debug)]
struct Import {
    subject: String,
    account: String,
    token: String,
    to: String,
    local_subject: String,
    kind: ExportType,
    share: bool,
}

#[derive(Debug, Default)]
struct Info {
    description: String,
    info_url: String,
}

#[derive(Debug)]
struct Latency {
    sampling: i64,
    results: String,
}

#[derive(Debug)]
struct Export {
    subject: String,
    kind: ExportType,
    response_type: String,
    response_threshold: i64,
    latency: Option<Latency>,
    account_token_position: u64,
    info: Info,
}

#[derive(Debug, Default)]
struct Limits {
    imports: i64,
    exports: i64,
    wildcards: bool,
    /// Go's `OperatorLimits.IsEmpty`: every limit zero/false and no tiers.
    empty: bool,
    /// Names of the tiered JetStream limits.
    tiers: Vec<String>,
}

#[derive(Debug, Default)]
struct Permission {
    allow: Vec<String>,
    deny: Vec<String>,
}

#[derive(Debug, Default)]
struct Permissions {
    publish: Permission,
    subscribe: Permission,
}

#[derive(Debug)]
struct WeightedMapping {
    subject: String,
    weight: u8,
}

/// An account as the Go library holds it after decoding (the fields validation reads).
#[derive(Debug, Default)]
struct Account {
    /// `sub`: imports' activation tokens must be issued to it.
    subject: String,
    /// `None` entries are JSON `null`s, which Go keeps as nil pointers.
    imports: Vec<Option<Import>>,
    exports: Vec<Option<Export>>,
    limits: Limits,
    /// Key and whether it is a scoped (`user_scope`) key. A Go map: a later entry for the same
    /// key replaces the earlier one.
    signing_keys: Vec<(String, bool)>,
    default_permissions: Permissions,
    mappings: Vec<(String, Vec<WeightedMapping>)>,
    info: Info,
}

/// Collects decode failures; every reader returns Go's zero value after a failure so decoding
/// goes on and reports them all, as `encoding/json` goes on after a type mismatch.
#[derive(Default)]
struct Decoder {
    errors: Vec<String>,
}

/// `at.name`, or the one that is not empty.
fn join(at: &str, name: &str) -> String {
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
fn key_matches(key: &str, name: &str) -> bool {
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
fn field<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.iter()
        .rfind(|(k, _)| key_matches(k, name))
        .map(|(_, v)| v)
}

impl Decoder {
    fn fail(&mut self, path: String, what: impl Display) {
        self.errors.push(one_line(format!("{path}: {what}")));
    }

    fn mismatch(&mut self, path: String, expected: &str, got: &Value) {
        self.fail(
            path,
            format_args!("expected {expected}, got {}", json_kind(got)),
        );
    }

    /// A struct-valued element or field: `null` is the zero value (`None` here).
    fn as_struct<'v>(&mut self, v: &'v Value, path: String) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Null => None,
            Value::Object(o) => Some(o),
            other => {
                self.mismatch(path, "an object", other);
                None
            }
        }
    }

    fn object<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<&'v Map<String, Value>> {
        let v = field(obj, name)?;
        self.as_struct(v, join(at, name))
    }

    fn array<'v>(&mut self, obj: &'v Map<String, Value>, at: &str, name: &str) -> &'v [Value] {
        match field(obj, name) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.mismatch(join(at, name), "an array", other);
                &[]
            }
        }
    }

    fn string(&mut self, obj: &Map<String, Value>, at: &str, name: &str) -> String {
        match field(obj, name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                self.mismatch(join(at, name), "a string", other);
                String::new()
            }
        }
    }

    fn boolean(&mut self, obj: &Map<String, Value>, at: &str, name: &str) -> bool {
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
    fn int(&mut self, obj: &Map<String, Value>, at: &str, name: &str) -> i64 {
        match field(obj, name) {
            None | Some(Value::Null) => 0,
            Some(v) => self.int_value(v, join(at, name)),
        }
    }

    fn int_value(&mut self, v: &Value, path: String) -> i64 {
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
    fn uint(&mut self, obj: &Map<String, Value>, at: &str, name: &str, max: u64) -> u64 {
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
    fn strings(&mut self, obj: &Map<String, Value>, at: &str, name: &str) -> Vec<String> {
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
    fn int_map(&mut self, obj: &Map<String, Value>, at: &str, name: &str) {
        let path = join(at, name);
        if let Some(m) = self.object(obj, at, name) {
            for (k, v) in m {
                self.int_value(v, format!("{path}.{k}"));
            }
        }
    }

    /// The library's `CIDRList`: an array of strings or one comma-separated string.
    fn cidr_list(&mut self, obj: &Map<String, Value>, at: &str, name: &str) {
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

    /// `None` when absent (Go's zero value, `Unknown`); a present value must be one of the two
    /// names, as the Go type's `UnmarshalJSON` requires (it is called even for `null`).
    fn export_type(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<ExportType> {
        match field(obj, name)? {
            Value::String(s) if s == "stream" => Some(ExportType::Stream),
            Value::String(s) if s == "service" => Some(ExportType::Service),
            Value::String(s) => {
                self.fail(join(at, name), format_args!("unknown export type {}", q(s)));
                None
            }
            Value::Null => {
                self.fail(join(at, name), "unknown export type \"\"");
                None
            }
            other => {
                self.mismatch(join(at, name), "\"stream\" or \"service\"", other);
                None
            }
        }
    }
}

/// The registered claims every token has (`ClaimsData`), checked only for their JSON types:
/// `sub` is returned, the rest is read elsewhere.
fn decode_claims_data(d: &mut Decoder, root: &Map<String, Value>) -> String {
    for name in ["aud", "jti", "iss", "name"] {
        d.string(root, "", name);
    }
    for name in ["exp", "iat", "nbf"] {
        d.int(root, "", name);
    }
    d.string(root, "", "sub")
}

/// The library reads claims in two passes: first `type` and the `nats` generic fields to pick
/// the claim kind and version, then the whole claim set. Returns (kind, version, `nats`).
fn decode_identifier<'v>(
    d: &mut Decoder,
    root: &'v Map<String, Value>,
) -> (String, i64, Option<&'v Map<String, Value>>) {
    let top_type = d.string(root, "", "type");
    let nats = d.object(root, "", "nats");
    let (nats_type, nats_version) = match nats {
        Some(n) => {
            d.strings(n, "nats", "tags");
            (d.string(n, "nats", "type"), d.int(n, "nats", "version"))
        }
        None => (String::new(), 0),
    };
    // A top-level `type` marks a v1 token, whose `nats.type` means something else.
    if top_type.is_empty() {
        (nats_type, nats_version, nats)
    } else {
        (top_type, 1, nats)
    }
}

/// The version check of the library's loaders: v1 and v2 only (an account without
/// `nats.version` and without a top-level `type` is version 0 and cannot be loaded).
fn check_version(d: &mut Decoder, version: i64) -> bool {
    if version == 1 || version == 2 {
        return true;
    }
    d.errors.push(if version > 2 {
        format!("claims version {version} is newer than JWT v2.3.0 understands")
    } else {
        format!(
            "claims version {version} is not supported (a v2 token needs nats.version 2, a v1 token a top-level type)"
        )
    });
    false
}

fn decode_account(d: &mut Decoder, payload: &Value) -> Option<Account> {
    let Some(root) = payload.as_object() else {
        d.mismatch("claims".into(), "an object", payload);
        return None;
    };
    let subject = decode_claims_data(d, root);
    let (_, version, nats) = decode_identifier(d, root);
    if !check_version(d, version) {
        return None;
    }
    let v2 = version == 2;
    if !v2 {
        // v1 kept these next to the registered claims.
        d.strings(root, "", "tags");
        d.string(root, "", "issuer_account");
    }
    let mut account = Account {
        subject,
        limits: Limits {
            empty: true,
            ..Limits::default()
        },
        ..Account::default()
    };
    let Some(nats) = nats else {
        return Some(account);
    };
    let at = "nats";
    for (i, v) in d.array(nats, at, "imports").iter().enumerate() {
        let import = decode_import(d, v, format!("{at}.imports[{i}]"));
        account.imports.push(import);
    }
    for (i, v) in d.array(nats, at, "exports").iter().enumerate() {
        let export = decode_export(d, v, format!("{at}.exports[{i}]"));
        account.exports.push(export);
    }
    if let Some(limits) = d.object(nats, at, "limits") {
        account.limits = decode_limits(d, limits, "nats.limits", v2);
    }
    d.int_map(nats, at, "revocations");
    if v2 {
        account.signing_keys = decode_signing_keys(d, nats);
        if let Some(p) = d.object(nats, at, "default_permissions") {
            account.default_permissions = decode_permissions(d, p, "nats.default_permissions");
        }
        account.mappings = decode_mappings(d, nats);
        account.info = decode_info(d, nats, at);
    } else {
        // v1 signing keys are plain strings; v1 accounts had no permissions, mappings or info
        // (the v1 loader ignores those keys).
        account.signing_keys = d
            .strings(nats, at, "signing_keys")
            .into_iter()
            .map(|k| (k, false))
            .collect();
    }
    Some(account)
}

fn decode_import(d: &mut Decoder, v: &Value, path: String) -> Option<Import> {
    let o = d.as_struct(v, path.clone())?;
    let at = path.as_str();
    d.string(o, at, "name");
    Some(Import {
        subject: d.string(o, at, "subject"),
        account: d.string(o, at, "account"),
        token: d.string(o, at, "token"),
        to: d.string(o, at, "to"),
        local_subject: d.string(o, at, "local_subject"),
        kind: d.export_type(o, at, "type").unwrap_or(ExportType::Unknown),
        share: d.boolean(o, at, "share"),
    })
}

fn decode_info(d: &mut Decoder, o: &Map<String, Value>, at: &str) -> Info {
    Info {
        description: d.string(o, at, "description"),
        info_url: d.string(o, at, "info_url"),
    }
}

fn decode_export(d: &mut Decoder, v: &Value, path: String) -> Option<Export> {
    let o = d.as_struct(v, path.clone())?;
    let at = path.as_str();
    d.string(o, at, "name");
    d.boolean(o, at, "token_req");
    d.int_map(o, at, "revocations");
    d.boolean(o, at, "advertise");
    let latency = d.object(o, at, "service_latency").map(|l| {
        let lat = format!("{at}.service_latency");
        Latency {
            sampling: decode_sampling(d, l, &lat),
            results: d.string(l, &lat, "results"),
        }
    });
    Some(Export {
        subject: d.string(o, at, "subject"),
        kind: d.export_type(o, at, "type").unwrap_or(ExportType::Unknown),
        response_type: d.string(o, at, "response_type"),
        response_threshold: d.int(o, at, "response_threshold"),
        latency,
        account_token_position: d.uint(o, at, "account_token_position", u64::MAX),
        info: decode_info(d, o, at),
    })
}

/// The library's `SamplingRate`: `"headers"` (any case) is 0, otherwise an integer.
fn decode_sampling(d: &mut Decoder, o: &Map<String, Value>, at: &str) -> i64 {
    match field(o, "sampling") {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) if s.to_lowercase() == "headers" => 0,
        Some(v) => d.int_value(v, join(at, "sampling")),
    }
}

fn decode_limits(d: &mut Decoder, o: &Map<String, Value>, at: &str, v2: bool) -> Limits {
    let mut nonzero = false;
    for name in ["subs", "data", "payload", "conn", "leaf"] {
        nonzero |= d.int(o, at, name) != 0;
    }
    nonzero |= d.boolean(o, at, "disallow_bearer");
    let imports = d.int(o, at, "imports");
    let exports = d.int(o, at, "exports");
    let wildcards = d.boolean(o, at, "wildcards");
    nonzero |= imports != 0 || exports != 0 || wildcards;
    let mut tiers = Vec::new();
    // JetStream limits are v2 only; the v1 loader drops them.
    if v2 {
        nonzero |= decode_jetstream_limits(d, o, at);
        let path = join(at, "tiered_limits");
        if let Some(t) = d.object(o, at, "tiered_limits") {
            for (name, v) in t {
                let tier = format!("{path}.{name}");
                if let Some(l) = d.as_struct(v, tier.clone()) {
                    decode_jetstream_limits(d, l, &tier);
                }
                tiers.push(name.clone());
            }
        }
    }
    Limits {
        imports,
        exports,
        wildcards,
        empty: !nonzero && tiers.is_empty(),
        tiers,
    }
}

/// Reads one set of JetStream limits; true when any is set.
fn decode_jetstream_limits(d: &mut Decoder, o: &Map<String, Value>, at: &str) -> bool {
    let mut nonzero = false;
    for name in [
        "mem_storage",
        "disk_storage",
        "streams",
        "consumer",
        "max_ack_pending",
        "mem_max_stream_bytes",
        "disk_max_stream_bytes",
    ] {
        nonzero |= d.int(o, at, name) != 0;
    }
    nonzero | d.boolean(o, at, "max_bytes_required")
}

/// The `pub`, `sub` and `resp` fields of `o` (a permissions object, or a user template, which
/// embeds them).
fn decode_permissions(d: &mut Decoder, o: &Map<String, Value>, at: &str) -> Permissions {
    let mut one = |name: &str| {
        let path = join(at, name);
        match d.object(o, at, name) {
            Some(p) => Permission {
                allow: d.strings(p, &path, "allow"),
                deny: d.strings(p, &path, "deny"),
            },
            None => Permission::default(),
        }
    };
    let publish = one("pub");
    let subscribe = one("sub");
    if let Some(r) = d.object(o, at, "resp") {
        let path = join(at, "resp");
        d.int(r, &path, "max");
        d.int(r, &path, "ttl");
    }
    Permissions { publish, subscribe }
}

/// v2 signing keys: an array of key strings and scope objects. Elements of other JSON types
/// are skipped, as the library's reader skips them.
fn decode_signing_keys(d: &mut Decoder, nats: &Map<String, Value>) -> Vec<(String, bool)> {
    let mut keys: Vec<(String, bool)> = Vec::new();
    let mut put = |key: String, scoped: bool| match keys.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = scoped,
        None => keys.push((key, scoped)),
    };
    for (i, v) in d.array(nats, "nats", "signing_keys").iter().enumerate() {
        let path = format!("nats.signing_keys[{i}]");
        match v {
            Value::String(k) => put(k.clone(), false),
            // The library dispatches on the exact key `kind`, then re-encodes the object (keys
            // sorted, numbers through float64) and decodes that as a user scope.
            Value::Object(o) if o.get("kind").and_then(Value::as_str) == Some("user_scope") => {
                let Value::Object(o) = go_reencoded(v) else {
                    unreachable!("an object re-encodes as an object")
                };
                if field(&o, "kind").and_then(Value::as_str) != Some("user_scope") {
                    d.fail(join(&path, "kind"), "unknown scope type");
                }
                let key = d.string(&o, &path, "key");
                d.string(&o, &path, "role");
                if let Some(t) = d.object(&o, &path, "template") {
                    decode_user_template(d, t, &join(&path, "template"));
                }
                put(key, true);
            }
            Value::Object(o) => d.fail(
                path,
                format_args!(
                    "unknown signing key scope (kind {})",
                    o.get("kind")
                        .map_or("missing".to_string(), Value::to_string)
                ),
            ),
            _ => {}
        }
    }
    keys
}

/// The user template of a scoped signing key (`UserPermissionLimits`). v2.3.0 does not
/// validate it, but a field of the wrong type still fails the decode.
fn decode_user_template(d: &mut Decoder, t: &Map<String, Value>, at: &str) {
    decode_permissions(d, t, at);
    d.cidr_list(t, at, "src");
    let times = join(at, "times");
    for (i, v) in d.array(t, at, "times").iter().enumerate() {
        let path = format!("{times}[{i}]");
        if let Some(r) = d.as_struct(v, path.clone()) {
            d.string(r, &path, "start");
            d.string(r, &path, "end");
        }
    }
    d.string(t, at, "times_location");
    for name in ["subs", "data", "payload"] {
        d.int(t, at, name);
    }
    d.boolean(t, at, "bearer_token");
    d.strings(t, at, "allowed_connection_types");
}

/// What `json.Marshal` of a decoded `map[string]interface{}` gives back: object keys sorted
/// (so among keys matching one field, the last in byte order wins) and numbers as float64,
/// printed as integers when whole and below 1e21 (so `1e3` becomes `1000`, `1.5` stays).
fn go_reencoded(v: &Value) -> Value {
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

fn decode_mappings(
    d: &mut Decoder,
    nats: &Map<String, Value>,
) -> Vec<(String, Vec<WeightedMapping>)> {
    let mut out = Vec::new();
    let Some(m) = d.object(nats, "nats", "mappings") else {
        return out;
    };
    for (from, list) in m {
        let path = format!("nats.mappings.{from}");
        let items: &[Value] = match list {
            Value::Null => &[],
            Value::Array(a) => a,
            other => {
                d.mismatch(path, "an array", other);
                continue;
            }
        };
        let mut targets = Vec::new();
        for (i, v) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            // A null element is a zero mapping: empty subject, weight 0 (read as 100).
            let wm = match d.as_struct(v, at.clone()) {
                Some(o) => {
                    d.string(o, &at, "cluster");
                    WeightedMapping {
                        subject: d.string(o, &at, "subject"),
                        weight: u8::try_from(d.uint(o, &at, "weight", u64::from(u8::MAX)))
                            .unwrap_or(0),
                    }
                }
                None => WeightedMapping {
                    subject: String::new(),
                    weight: 0,
                },
            };
            targets.push(wm);
        }
        out.push((from.clone(), targets));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Step 2: the library's validation rules.
// ---------------------------------------------------------------------------------------------

/// Blocking issues, each once: the library can report one twice (two import-limit checks that
/// overlap), which says nothing more to a user.
#[derive(Default)]
struct Issues {
    list: Vec<String>,
    seen: HashSet<String>,
}

impl Issues {
    fn add(&mut self, issue: String) {
        let issue = one_line(issue);
        if self.seen.insert(issue.clone()) {
            self.list.push(issue);
        }
    }
}

/// Escapes control characters: messages quote subjects, keys and paths from the token (some
/// unquoted, as Go prints them with `%s`), and an error must stay one line.
fn one_line(s: String) -> String {
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
fn q(s: &str) -> String {
    go_quote(s.as_bytes())
}

fn go_quote(bytes: &[u8]) -> String {
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

/// `Subject.Validate`: not empty, no spaces.
fn validate_subject(vr: &mut Issues, s: &str) {
    if s.is_empty() {
        vr.add("subject cannot be empty".into());
    }
    if s.contains(' ') {
        vr.add(format!("subject {} cannot have spaces", q(s)));
    }
}

/// `Subject.HasWildCards`.
fn has_wildcards(s: &str) -> bool {
    s.ends_with(".>")
        || s.contains(".*.")
        || s.ends_with(".*")
        || s.starts_with("*.")
        || s == "*"
        || s == ">"
}

/// `Subject.IsContainedIn`: every subject `s` matches is matched by `other` (a simple token
/// comparison, as the library does it).
fn is_contained_in(s: &str, other: &str) -> bool {
    let mine: Vec<&str> = s.split('.').collect();
    let other: Vec<&str> = other.split('.').collect();
    tokens_contained_in(&mine, &other)
}

fn tokens_contained_in(mine: &[&str], other: &[&str]) -> bool {
    let last = other.len() - 1; // `split` yields at least one token
    if mine.len() > other.len() && other[last] != ">" {
        return false;
    }
    if mine.len() < other.len() {
        return false;
    }
    for (i, tok) in other.iter().enumerate() {
        if i == last && *tok == ">" {
            return true;
        }
        if *tok != mine[i] && *tok != "*" {
            return false;
        }
    }
    true
}

/// `strconv.Atoi`: optional sign, at least one ASCII digit, no overflow.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A `$<n>` token of a renaming subject.
fn reference(tk: &str) -> Option<i64> {
    tk.strip_prefix('$')
        .filter(|rest| !rest.is_empty())
        .and_then(go_atoi)
}

/// `RenamingSubject.ToSubject`: references become `*`.
fn to_subject(s: &str) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    s.split('.')
        .map(|tk| if reference(tk).is_some() { "*" } else { tk })
        .collect::<Vec<_>>()
        .join(".")
}

/// `RenamingSubject.Validate` (an import's `local_subject` against its `subject`).
fn validate_renaming(vr: &mut Issues, local: &str, from: &str) {
    validate_subject(vr, local);
    if from.is_empty() {
        vr.add("subject cannot be empty".into());
    }
    let ends_in_gt = |s: &str| s == ">" || s.ends_with(".>");
    if ends_in_gt(local) != ends_in_gt(from) {
        vr.add("both, renaming subject and subject, need to end or not end in >".into());
    }
    let from_count = if from == "*" {
        1
    } else {
        from.split('.').filter(|t| *t == "*").count()
    };
    let from_count = i64::try_from(from_count).unwrap_or(i64::MAX);
    let mut refs = 0i64;
    for tk in local.split('.') {
        if tk == "*" {
            refs += 1;
        }
        if let Some(idx) = reference(tk) {
            if idx > from_count {
                vr.add(format!(
                    "Reference ${idx} in {} reference * in {} that do not exist",
                    q(local),
                    q(from)
                ));
            } else {
                refs += 1;
            }
        }
    }
    if refs != from_count {
        vr.add("subject does not contain enough * or reference wildcards $[0-9]".into());
    }
}

/// What the library reads from an import's activation token.
struct Activation {
    issuer: String,
    subject: String,
    issuer_account: String,
    import_subject: String,
    import_type: ExportType,
}

/// The library's `DecodeActivationClaims`: a well-formed, correctly signed activation JWT
/// issued by an account or operator key. Its expiry is not checked (an import with an expired
/// token is still a valid account).
fn decode_activation_token(token: &str) -> Result<Activation, String> {
    if token.starts_with("http://") || token.starts_with("https://") {
        return Err("activation tokens given as URLs are not supported by JWT v2".into());
    }
    // Go's base64 skips CR and LF, so a token ending in a newline still decodes there; any
    // other whitespace fails it.
    let token = token.trim_end_matches(['\r', '\n']);
    if token.contains(char::is_whitespace) {
        return Err("the token contains whitespace".into());
    }
    let jwt = decode(token).map_err(|e| e.to_string())?;
    let payload = payload_json(&jwt.raw)?;
    let mut d = Decoder::default();
    let act = decode_activation_claims(&mut d, &payload);
    if let Some(e) = d.errors.into_iter().next() {
        return Err(format!("claims cannot be decoded: {e}"));
    }
    let act = act.ok_or("not an activation JWT")?;
    if !matches!(
        key_kind(&act.issuer),
        Some(KeyKind::Account | KeyKind::Operator)
    ) {
        return Err(format!(
            "issuer {} is not an account or operator key",
            act.issuer
        ));
    }
    Ok(act)
}

/// `None` (with no decode error) when the token is of another kind.
fn decode_activation_claims(d: &mut Decoder, payload: &Value) -> Option<Activation> {
    let Some(root) = payload.as_object() else {
        d.mismatch("claims".into(), "an object", payload);
        return None;
    };
    let subject = decode_claims_data(d, root);
    let (kind, version, nats) = decode_identifier(d, root);
    if kind != "activation" || !check_version(d, version) {
        return None;
    }
    let empty = Map::new();
    let nats = nats.unwrap_or(&empty);
    let (issuer_account, import_type) = if version == 1 {
        // v1: the import kind is `nats.type` and `issuer_account` sits at the top level, next
        // to fields v2 dropped.
        d.strings(root, "", "tags");
        for name in ["max", "payload"] {
            d.int(nats, "nats", name);
        }
        d.string(nats, "nats", "src");
        for (i, v) in d.array(nats, "nats", "times").iter().enumerate() {
            let path = format!("nats.times[{i}]");
            if let Some(r) = d.as_struct(v, path.clone()) {
                d.string(r, &path, "start");
                d.string(r, &path, "end");
            }
        }
        (
            d.string(root, "", "issuer_account"),
            d.export_type(nats, "nats", "type"),
        )
    } else {
        (
            d.string(nats, "nats", "issuer_account"),
            d.export_type(nats, "nats", "kind"),
        )
    };
    Some(Activation {
        issuer: d.string(root, "", "iss"),
        subject,
        issuer_account,
        import_subject: d.string(nats, "nats", "subject"),
        import_type: import_type.unwrap_or(ExportType::Unknown),
    })
}

impl Account {
    /// `Account.Validate` (and the account part of `AccountClaims.Validate`).
    fn validate(&self, vr: &mut Issues) {
        self.validate_imports(vr);
        self.validate_exports(vr);
        if self.limits.tiers.iter().any(String::is_empty) {
            vr.add(r#"Tiered JetStream Limits can not contain a blank "" tier name"#.into());
        }
        // The library's other limits rule (plain and tiered JetStream limits together) cannot
        // fire after decoding: its loader clears the plain ones when tiers are present.
        let p = &self.default_permissions;
        validate_permission(vr, &p.subscribe, true);
        validate_permission(vr, &p.publish, false);
        self.validate_mappings(vr);

        // Absent limits are 0 in Go, so an account without `limits.imports` may not import.
        let limits = &self.limits;
        let imports = i64::try_from(self.imports.len()).unwrap_or(i64::MAX);
        let exports = i64::try_from(self.exports.len()).unwrap_or(i64::MAX);
        let too_many_imports = "the account contains more imports than allowed by the operator";
        if !limits.empty && limits.imports >= 0 && imports > limits.imports {
            vr.add(too_many_imports.into());
        }
        if limits.imports != -1 && imports > limits.imports {
            vr.add(too_many_imports.into());
        }
        if limits.exports != -1 {
            if exports > limits.exports {
                vr.add("the account contains more exports than allowed by the operator".into());
            }
            if !limits.wildcards
                && self
                    .exports
                    .iter()
                    .flatten()
                    .any(|e| has_wildcards(&e.subject))
            {
                vr.add(
                    "the account contains wildcard exports that are not allowed by the operator"
                        .into(),
                );
            }
        }
        for (key, scoped) in &self.signing_keys {
            if is_account_key(key) {
                continue;
            }
            vr.add(if *scoped {
                format!("{key} is not an account public key")
            } else {
                format!("{} is not a valid account signing key", q(key))
            });
        }
        validate_info(vr, &self.info);
    }

    /// `Imports.Validate`: service imports may not overlap in the subjects they answer on, and
    /// each import is valid.
    fn validate_imports(&self, vr: &mut Issues) {
        let mut answered: Vec<String> = Vec::new();
        for import in &self.imports {
            let Some(import) = import else {
                vr.add("null import is not allowed".into());
                continue;
            };
            if import.kind == ExportType::Service {
                let sub = if !import.to.is_empty() {
                    import.to.clone()
                } else if !import.local_subject.is_empty() {
                    to_subject(&import.local_subject)
                } else {
                    import.subject.clone()
                };
                for k in &answered {
                    if is_contained_in(&sub, k) || is_contained_in(k, &sub) {
                        vr.add(format!(
                            "overlapping subject namespace for {} and {}",
                            q(&sub),
                            q(k)
                        ));
                    }
                }
                if answered.contains(&sub) {
                    vr.add(format!(
                        "overlapping subject namespace for {}",
                        q(&import.to)
                    ));
                } else {
                    answered.push(sub);
                }
            }
            validate_import(vr, import, &self.subject);
        }
    }

    /// `Exports.Validate`: each export is valid, and no export of a kind covers another of the
    /// same kind (an export of unknown type counts as a stream, as in the library).
    fn validate_exports(&self, vr: &mut Issues) {
        let mut services = Vec::new();
        let mut streams = Vec::new();
        for export in &self.exports {
            let Some(export) = export else {
                vr.add("null export is not allowed".into());
                continue;
            };
            if export.kind == ExportType::Service {
                services.push(export.subject.as_str());
            } else {
                streams.push(export.subject.as_str());
            }
            validate_export(vr, export);
        }
        report_contained(vr, ExportType::Service, &services);
        report_contained(vr, ExportType::Stream, &streams);
    }

    /// `Mapping.Validate`.
    fn validate_mappings(&self, vr: &mut Issues) {
        for (from, targets) in &self.mappings {
            validate_subject(vr, from);
            // The library sums in a uint8, so the total wraps (three weights of 100 total 44).
            let mut total = 0u8;
            for wm in targets {
                validate_subject(vr, &wm.subject);
                if has_wildcards(&wm.subject) {
                    vr.add(format!(
                        "Subject {} in weighted mapping {} is not allowed to contains wildcard",
                        q(&wm.subject),
                        q(from)
                    ));
                }
                total = total.wrapping_add(if wm.weight == 0 { 100 } else { wm.weight });
            }
            if total > 100 {
                vr.add(format!(
                    "Mapping {} exceeds 100% among all of it's weighted to mappings",
                    q(from)
                ));
            }
        }
    }
}

/// `Import.Validate` for an import of `account`.
fn validate_import(vr: &mut Issues, import: &Import, account: &str) {
    let kind = import.kind;
    if kind == ExportType::Unknown {
        vr.add(format!("invalid import type: {}", q(kind.name())));
    }
    if import.account.is_empty() {
        vr.add("account to import from is not specified".into());
    }
    validate_subject(vr, &import.subject);
    if !import.local_subject.is_empty() {
        validate_renaming(vr, &import.local_subject, &import.subject);
        if !import.to.is_empty() {
            vr.add("Local Subject replaces To".into());
        }
    }
    if import.share && kind != ExportType::Service {
        vr.add(format!(
            "sharing information (for latency tracking) is only valid for services: {}",
            q(&import.subject)
        ));
    }
    if import.token.is_empty() {
        return;
    }
    let act = match decode_activation_token(&import.token) {
        Ok(act) => act,
        Err(why) => {
            vr.add(format!(
                "import {} contains an invalid activation token: {why}",
                q(&import.subject)
            ));
            return;
        }
    };
    if !(act.issuer == import.account || act.issuer_account == import.account) {
        vr.add(format!(
            "activation token doesn't match account for import {}",
            q(&import.subject)
        ));
    }
    if act.subject != account {
        vr.add(format!(
            "activation token doesn't match account it is being included in, {}",
            q(&import.subject)
        ));
    }
    if act.import_type != kind {
        vr.add(format!(
            "mismatch between token import type {} and type of import {}",
            act.import_type.name(),
            kind.name()
        ));
    }
    // The token's own claims (`Activation.Validate`).
    if act.import_type == ExportType::Unknown {
        vr.add(format!(
            "invalid import type: {}",
            q(act.import_type.name())
        ));
    }
    validate_subject(vr, &act.import_subject);
    if !act.issuer_account.is_empty() && !is_account_key(&act.issuer_account) {
        vr.add("account_id is not an account public key".into());
    }
    let subject = if kind == ExportType::Service && !import.to.is_empty() {
        &import.to
    } else {
        &import.subject
    };
    if !is_contained_in(subject, &act.import_subject) {
        vr.add(format!(
            "activation token import subject {} doesn't match import {}",
            q(&act.import_subject),
            q(&import.subject)
        ));
    }
}

/// `Export.Validate`.
fn validate_export(vr: &mut Issues, e: &Export) {
    let service = e.kind == ExportType::Service;
    if e.kind == ExportType::Unknown {
        vr.add(format!("invalid export type: {}", q(e.kind.name())));
    }
    if service
        && !matches!(
            e.response_type.as_str(),
            "" | "Singleton" | "Stream" | "Chunked"
        )
    {
        vr.add(format!(
            "invalid response type for service: {}",
            q(&e.response_type)
        ));
    }
    if e.kind == ExportType::Stream && !e.response_type.is_empty() {
        vr.add(format!(
            "invalid response type for stream: {}",
            q(&e.response_type)
        ));
    }
    if let Some(latency) = &e.latency {
        if !service {
            vr.add("latency tracking only permitted for services".into());
        }
        if latency.sampling != 0 && !(1..=100).contains(&latency.sampling) {
            vr.add("sampling percentage needs to be between 1-100".into());
        }
        validate_subject(vr, &latency.results);
        if has_wildcards(&latency.results) {
            vr.add("results subject can not contain wildcards".into());
        }
    }
    if e.response_threshold < 0 {
        vr.add("negative response threshold is invalid".into());
    }
    if e.response_threshold > 0 && !service {
        vr.add("response threshold only valid for services".into());
    }
    validate_subject(vr, &e.subject);
    let pos = e.account_token_position;
    if pos > 0 {
        if !has_wildcards(&e.subject) {
            vr.add(format!(
                "Account Token Position can only be used with wildcard subjects: {}",
                e.subject
            ));
        } else {
            let tokens: Vec<&str> = e.subject.split('.').collect();
            match usize::try_from(pos - 1).ok().and_then(|i| tokens.get(i)) {
                None => vr.add(format!(
                    "Account Token Position {pos} exceeds length of subject '{}'",
                    e.subject
                )),
                Some(tk) if *tk != "*" => vr.add(format!(
                    "Account Token Position {pos} matches '{tk}' but must match a * in: {}",
                    e.subject
                )),
                Some(_) => {}
            }
        }
    }
    validate_info(vr, &e.info);
}

/// The library's `isContainedIn` over the subjects of one export kind: for each subject that
/// covers another one, the first covered subject is reported.
fn report_contained(vr: &mut Issues, kind: ExportType, subjects: &[&str]) {
    // Split once: the check is quadratic in the number of exports.
    let split: Vec<Vec<&str>> = subjects.iter().map(|s| s.split('.').collect()).collect();
    let mut covering: Vec<(usize, usize)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, ns) in split.iter().enumerate() {
        for (j, s) in split.iter().enumerate() {
            if i != j && tokens_contained_in(ns, s) && seen.insert(subjects[j]) {
                covering.push((j, i));
            }
        }
    }
    for (j, i) in covering {
        vr.add(format!(
            "{} export subject {} already exports {}",
            kind.name(),
            q(subjects[j]),
            q(subjects[i])
        ));
    }
}

/// `Permission.Validate`: each subject, optionally with a queue group (subscribe only).
fn validate_permission(vr: &mut Issues, p: &Permission, permit_queue: bool) {
    for subject in p.allow.iter().chain(&p.deny) {
        let tokens: Vec<&str> = subject.split(' ').collect();
        match tokens.as_slice() {
            [one] => validate_subject(vr, one),
            [subj, queue] => {
                validate_subject(vr, subj);
                validate_subject(vr, queue);
                if !permit_queue {
                    vr.add(format!(
                        "Permission Subject \"{subject}\" is not allowed to contain queue"
                    ));
                }
            }
            _ => vr.add(format!(
                "Permission Subject \"{subject}\" contains too many spaces"
            )),
        }
    }
}

/// The library's `MaxInfoLength`, in bytes.
const MAX_INFO_LENGTH: usize = 8 * 1024;

/// `Info.Validate`: bounded description; an info URL that Go's `url.Parse` reads with a scheme
/// and a host name.
fn validate_info(vr: &mut Issues, info: &Info) {
    if info.description.len() > MAX_INFO_LENGTH {
        vr.add("Description is too long".into());
    }
    if info.info_url.is_empty() {
        return;
    }
    if info.info_url.len() > MAX_INFO_LENGTH {
        vr.add("Info URL is too long".into());
    }
    let problem = match go_url::parse(&info.info_url) {
        Err(e) => Some(e),
        Ok(u) if u.scheme.is_empty() || u.hostname().is_empty() => {
            Some("no hostname or scheme".to_string())
        }
        Ok(_) => None,
    };
    if let Some(e) = problem {
        vr.add(format!("error parsing info url: {e}"));
    }
}

mod go_url;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{decode_account, encode, now_unix};
    use data_encoding::BASE64URL_NOPAD;
    use nkeys::KeyPair;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    /// The issues of an account JWT for `account`, signed by a fresh operator, whose `nats`
    /// section is `nats` merged over `encode::account`'s defaults (everything unlimited).
    fn issues_for(account: &str, nats: Value) -> Vec<String> {
        let token = encode::account(&KeyPair::new_operator(), account, "test", nats);
        let jwt = decode(&token).expect("the test token decodes");
        validate_account(&payload_json(&jwt.raw).expect("payload"))
    }

    fn issues(nats: Value) -> Vec<String> {
        issues_for(&KeyPair::new_account().public_key(), nats)
    }

    /// The issues of a raw payload: for shapes `encode::account` does not produce.
    fn payload_issues(nats: Value) -> Vec<String> {
        validate_account(&json!({
            "iss": KeyPair::new_operator().public_key(),
            "sub": KeyPair::new_account().public_key(),
            "nats": nats,
        }))
    }

    #[track_caller]
    fn assert_issue(issues: &[String], expected: &str) {
        assert!(
            issues.iter().any(|i| i == expected),
            "expected {expected:?} among {issues:#?}"
        );
    }

    #[track_caller]
    fn assert_issue_starting(issues: &[String], prefix: &str) {
        assert!(
            issues.iter().any(|i| i.starts_with(prefix)),
            "expected an issue starting {prefix:?} among {issues:#?}"
        );
    }

    #[track_caller]
    fn assert_clean(issues: &[String]) {
        assert!(issues.is_empty(), "unexpected issues: {issues:#?}");
    }

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors")
    }

    fn vector(name: &str) -> String {
        let path = vectors().join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// A v1 token (`alg: ed25519`, signature over the payload segment alone).
    fn v1_token(mut claims: Value, signer: &KeyPair) -> String {
        claims["iss"] = json!(signer.public_key());
        let h = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519"}"#);
        let p = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        let sig = signer.sign(p.as_bytes()).expect("seed");
        format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&sig))
    }

    /// An activation from `issuer` for `importer` with arbitrary `nats` fields.
    fn activation_with(issuer: &KeyPair, importer: &str, nats: Value) -> String {
        let mut section = json!({ "type": "activation", "version": 2 });
        for (k, v) in nats.as_object().expect("object") {
            section[k] = v.clone();
        }
        encode::sign(json!({ "sub": importer, "nats": section }), issuer)
    }

    #[test]
    fn a_rich_valid_account_has_no_issues() {
        let (a, b) = (KeyPair::new_account(), KeyPair::new_account());
        let (a_pub, b_pub) = (a.public_key(), b.public_key());
        let a_signing = KeyPair::new_account();
        let scoped = KeyPair::new_account();
        let stream_token = encode::activation(&a, &b_pub, "feed.*", "stream");
        // Issued by one of A's signing keys on A's behalf, and long expired: expiry of an
        // import's token is not the account's problem.
        let service_token = encode::sign(
            json!({ "sub": b_pub, "exp": now_unix() - 3600, "nats": {
                "subject": "svc.>", "kind": "service", "issuer_account": a_pub,
                "type": "activation", "version": 2 } }),
            &a_signing,
        );
        let nats = json!({
            "imports": [
                { "name": "feed", "subject": "feed.one", "account": a_pub, "token": stream_token,
                  "local_subject": "mine.one", "type": "stream" },
                { "name": "svc", "subject": "svc.>", "account": a_pub, "token": service_token,
                  "local_subject": "remote.svc.>", "type": "service", "share": true },
                { "name": "time", "subject": "time.*.now", "account": a_pub,
                  "local_subject": "clock.$1", "type": "service" },
                { "name": "old style", "subject": "legacy", "account": a_pub, "to": "old.legacy",
                  "type": "service" },
            ],
            "exports": [
                { "name": "events", "subject": "events.>", "type": "stream", "revocations": { b_pub.clone(): 1 } },
                { "name": "metrics", "subject": "metrics", "type": "stream", "advertise": true },
                { "name": "api", "subject": "api.*.get", "type": "service", "token_req": true,
                  "response_type": "Stream", "response_threshold": 1_000_000_000u64,
                  "service_latency": { "sampling": "headers", "results": "latency.api" },
                  "account_token_position": 2, "description": "the API",
                  "info_url": "https://example.com/docs?x=1#top" },
                { "name": "health", "subject": "api.health", "type": "service",
                  "response_type": "Chunked", "service_latency": { "sampling": 50, "results": "latency.health" } },
                { "subject": "events.>", "type": "service", "response_type": "Singleton" },
            ],
            "limits": { "subs": 100, "data": -1, "payload": 1024, "imports": 4, "exports": 5,
                        "wildcards": true, "conn": 10, "leaf": 0, "disallow_bearer": true,
                        "mem_storage": 1024, "tiered_limits": {
                            "R1": { "mem_storage": 1024, "disk_storage": 4096, "streams": 3, "consumer": -1 },
                            "R3": { "disk_storage": -1, "max_bytes_required": true } } },
            "signing_keys": [
                a_signing.public_key(),
                { "kind": "user_scope", "key": scoped.public_key(), "role": "service",
                  "template": { "pub": { "allow": ["a.>"] }, "sub": { "allow": ["b.> workers"] },
                                "subs": -1, "data": -1, "payload": -1, "src": "10.0.0.0/8,192.168.0.1/32",
                                "times": [{ "start": "08:00:00", "end": "17:00:00" }],
                                "times_location": "UTC", "bearer_token": true,
                                "allowed_connection_types": ["STANDARD", "WEBSOCKET"] } },
            ],
            "revocations": { "*": 1_600_000_000 },
            "default_permissions": { "pub": { "allow": ["x.>"], "deny": ["y"] },
                                     "sub": { "allow": ["z.* workers"] },
                                     "resp": { "max": 1, "ttl": 1_000_000 } },
            "mappings": {
                "orders": [{ "subject": "orders.v1", "weight": 50 },
                           { "subject": "orders.v2", "weight": 50, "cluster": "east" }],
                "ping": [{ "subject": "pong" }],
            },
            "description": "a rich account",
            "info_url": "https://[::1]:8443/about",
            "tags": ["prod", "eu"],
        });
        assert_clean(&issues_for(&b_pub, nats));
    }

    /// Activation tokens made by the Go library, imported as nsc would import them.
    #[test]
    fn imports_with_the_official_activation_vectors_are_valid() {
        let a = vector("account_a.pub");
        let b = vector("account_b.pub");
        let nats = json!({ "imports": [
            { "subject": "svc.aak2sy.>", "account": a, "token": vector("activations/token.jwt"),
              "type": "service" },
            { "subject": "*.x", "account": a, "token": vector("activations/wildcard_first.jwt"),
              "type": "service" },
        ] });
        assert_clean(&issues_for(&b, nats.clone()));
        // The same imports in another account: the tokens were issued to B.
        let elsewhere = issues(nats);
        assert_issue(
            &elsewhere,
            r#"activation token doesn't match account it is being included in, "svc.aak2sy.>""#,
        );
    }

    /// Every official vector the README says a POST accepts passes the rules, and so do the
    /// refused ones: their defects (time, trust, signer) are other checks' business.
    #[test]
    fn the_official_vectors_pass_the_rules() {
        let mut checked = 0;
        for sub in ["accounts", "post"] {
            for entry in std::fs::read_dir(vectors().join(sub)).expect("vector dir") {
                let path = entry.expect("entry").path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if !name.ends_with(".jwt") || name == "bad_signature.jwt" {
                    continue;
                }
                let token = std::fs::read_to_string(&path).expect("vector");
                let jwt = decode(&token).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(check_account_rules(&jwt), Ok(()), "{name}");
                if sub == "accounts" || name.starts_with("ok_") || name.starts_with("seq_") {
                    decode_account(&token, now_unix()).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                checked += 1;
            }
        }
        let sys = decode(&vector("sys.jwt")).expect("sys.jwt");
        assert_eq!(check_account_rules(&sys), Ok(()));
        assert!(checked >= 12, "only {checked} vectors");
    }

    #[test]
    fn import_rules() {
        let a = KeyPair::new_account().public_key();
        let one = |import: Value| issues(json!({ "imports": [import] }));

        let i = one(json!({ "subject": "foo", "type": "stream" }));
        assert_eq!(i, ["account to import from is not specified"]);
        let i = one(json!({ "subject": "foo", "account": a }));
        assert_eq!(i, [r#"invalid import type: "unknown""#]);
        let i = one(
            json!({ "subject": "foo", "account": a, "type": "stream", "to": "bar",
                            "local_subject": "baz" }),
        );
        assert_eq!(i, ["Local Subject replaces To"]);
        let i = one(json!({ "subject": "foo", "account": a, "type": "stream", "share": true }));
        assert_eq!(
            i,
            [r#"sharing information (for latency tracking) is only valid for services: "foo""#]
        );
        assert_clean(&one(
            json!({ "subject": "foo", "account": a, "type": "service", "share": true }),
        ));
        let i = one(json!({ "subject": "foo bar", "account": a, "type": "stream" }));
        assert_eq!(i, [r#"subject "foo bar" cannot have spaces"#]);
        let i = one(json!({ "subject": "", "account": a, "type": "stream" }));
        assert_eq!(i, ["subject cannot be empty"]);

        // local_subject renaming rules.
        let i = one(json!({ "subject": "foo.>", "account": a, "type": "stream",
                            "local_subject": "bar" }));
        assert_eq!(
            i,
            ["both, renaming subject and subject, need to end or not end in >"]
        );
        let i = one(json!({ "subject": "foo.*", "account": a, "type": "stream",
                            "local_subject": "bar.$2" }));
        assert_eq!(
            i,
            [
                r#"Reference $2 in "bar.$2" reference * in "foo.*" that do not exist"#,
                "subject does not contain enough * or reference wildcards $[0-9]"
            ]
        );
        let i = one(
            json!({ "subject": "foo.*.*", "account": a, "type": "stream",
                            "local_subject": "bar.*" }),
        );
        assert_eq!(
            i,
            ["subject does not contain enough * or reference wildcards $[0-9]"]
        );
        // The library's own variants, all valid.
        assert_clean(&issues(json!({ "imports": [
            { "subject": "foo.*.bar.*.>", "account": a, "local_subject": "my.$2.$1.>", "type": "stream" },
            { "subject": "baz.*.bar.*.>", "account": a, "local_subject": "bar.*.*.>", "type": "service" },
            { "subject": "baz.*", "account": a, "local_subject": "my.$1", "type": "stream" },
            { "subject": "bar.*", "account": a, "local_subject": "baz.*", "type": "service" },
            { "subject": "biz.*.*.*", "account": a, "local_subject": "buz.*.*.*", "type": "service" },
        ] })));
    }

    #[test]
    fn service_imports_may_not_overlap() {
        let a = KeyPair::new_account().public_key();
        let i = issues(json!({ "imports": [
            { "subject": "x", "local_subject": "foo", "type": "service", "account": a },
            { "subject": "z.*", "local_subject": "*", "type": "service", "account": a },
            { "subject": "y.>", "local_subject": ">", "type": "service", "account": a },
        ] }));
        assert_eq!(
            i,
            [
                r#"overlapping subject namespace for "*" and "foo""#,
                r#"overlapping subject namespace for ">" and "foo""#,
                r#"overlapping subject namespace for ">" and "*""#,
            ]
        );
        let i = issues(json!({ "imports": [
            { "subject": "one.two", "to": "foo.bar", "type": "service", "account": a },
            { "subject": "two.three", "to": "foo.bar", "type": "service", "account": a },
        ] }));
        assert_eq!(
            i,
            [
                r#"overlapping subject namespace for "foo.bar" and "foo.bar""#,
                r#"overlapping subject namespace for "foo.bar""#,
            ]
        );
        // Streams and services never collide; neither do streams among themselves.
        assert_clean(&issues(json!({ "imports": [
            { "subject": "foo", "local_subject": "bar", "type": "stream", "account": a },
            { "subject": "foo", "local_subject": "bar", "type": "service", "account": a },
            { "subject": "foo", "local_subject": "bar", "type": "stream", "account": a },
        ] })));
    }

    #[test]
    fn import_token_rules() {
        let (a, b, c) = (
            KeyPair::new_account(),
            KeyPair::new_account(),
            KeyPair::new_account(),
        );
        let (a_pub, b_pub) = (a.public_key(), b.public_key());
        let with_token = |subject: &str, kind: &str, token: String| {
            issues_for(
                &b_pub,
                json!({ "imports": [{ "subject": subject, "account": a_pub, "type": kind,
                                      "token": token }] }),
            )
        };
        let invalid = r#"import "foo" contains an invalid activation token"#;

        assert_clean(&with_token(
            "foo",
            "stream",
            encode::activation(&a, &b_pub, "foo", "stream"),
        ));
        // A token ending in a newline (as a file read whole gives it) is still a token to Go.
        let mut newline = encode::activation(&a, &b_pub, "foo", "stream");
        newline.push('\n');
        assert_clean(&with_token("foo", "stream", newline));

        let i = with_token("foo", "stream", "bad token".into());
        assert_issue_starting(&i, invalid);
        let i = with_token("foo", "stream", "https://example.com/activation".into());
        assert_eq!(
            i,
            [format!(
                "{invalid}: activation tokens given as URLs are not supported by JWT v2"
            )]
        );
        let i = with_token(
            "foo",
            "stream",
            format!(" {}", encode::activation(&a, &b_pub, "foo", "stream")),
        );
        assert_issue_starting(&i, invalid);
        let mut bad_sig = encode::activation(&a, &b_pub, "foo", "stream");
        bad_sig.replace_range(bad_sig.len() - 3.., "AAA");
        assert_issue_starting(&with_token("foo", "stream", bad_sig), invalid);
        // Not an activation: an account JWT, and a token signed by a user key.
        let account_jwt = encode::account(&KeyPair::new_operator(), &a_pub, "x", json!({}));
        let i = with_token("foo", "stream", account_jwt);
        assert_eq!(i, [format!("{invalid}: not an activation JWT")]);
        let user = KeyPair::new_user();
        let i = with_token(
            "foo",
            "stream",
            encode::activation(&user, &b_pub, "foo", "stream"),
        );
        assert_eq!(
            i,
            [format!(
                "{invalid}: issuer {} is not an account or operator key",
                user.public_key()
            )]
        );
        // Kinds the library cannot decode.
        let i = with_token(
            "foo",
            "stream",
            activation_with(&a, &b_pub, json!({ "subject": "foo", "kind": "feed" })),
        );
        assert_eq!(
            i,
            [format!(
                r#"{invalid}: claims cannot be decoded: nats.kind: unknown export type "feed""#
            )]
        );

        let i = with_token(
            "foo",
            "stream",
            encode::activation(&c, &b_pub, "foo", "stream"),
        );
        assert_eq!(
            i,
            [r#"activation token doesn't match account for import "foo""#]
        );
        let other = KeyPair::new_account().public_key();
        let i = with_token(
            "foo",
            "stream",
            encode::activation(&a, &other, "foo", "stream"),
        );
        assert_eq!(
            i,
            [r#"activation token doesn't match account it is being included in, "foo""#]
        );
        let i = with_token(
            "foo",
            "stream",
            encode::activation(&a, &b_pub, "foo", "service"),
        );
        assert_eq!(
            i,
            ["mismatch between token import type service and type of import stream"]
        );
        let i = with_token(
            "one.two",
            "stream",
            encode::activation(&a, &b_pub, "two", "stream"),
        );
        assert_eq!(
            i,
            [r#"activation token import subject "two" doesn't match import "one.two""#]
        );
        assert_clean(&with_token(
            "one.two",
            "stream",
            encode::activation(&a, &b_pub, "one.*", "stream"),
        ));
        assert_clean(&with_token(
            "one.two",
            "stream",
            encode::activation(&a, &b_pub, ">", "stream"),
        ));
        // The token's own claims.
        let i = with_token(
            "foo",
            "stream",
            activation_with(&a, &b_pub, json!({ "subject": "foo" })),
        );
        assert_eq!(
            i,
            [
                "mismatch between token import type unknown and type of import stream",
                r#"invalid import type: "unknown""#
            ]
        );
        let i = with_token(
            "foo",
            "stream",
            activation_with(
                &a,
                &b_pub,
                json!({ "subject": "foo", "kind": "stream", "issuer_account": "ANOTAKEY" }),
            ),
        );
        assert_eq!(i, ["account_id is not an account public key"]);

        // A service import checks the token against `to` when it has one.
        let i = issues_for(
            &b_pub,
            json!({ "imports": [{ "subject": "svc.x", "to": "local.x", "account": a_pub,
                                  "type": "service",
                                  "token": encode::activation(&a, &b_pub, "svc.x", "service") }] }),
        );
        assert_eq!(
            i,
            [r#"activation token import subject "svc.x" doesn't match import "svc.x""#]
        );
    }

    /// A v1 activation keeps the import kind in `nats.type` and the claim type at the top
    /// level; the library reads it as an activation.
    #[test]
    fn v1_activation_tokens_are_read_as_v1() {
        let (a, b) = (KeyPair::new_account(), KeyPair::new_account());
        let (a_pub, b_pub) = (a.public_key(), b.public_key());
        let token = v1_token(
            json!({ "jti": "J", "iat": now_unix(), "sub": b_pub, "type": "activation",
                    "nats": { "subject": "feed.>", "type": "stream", "max": -1 } }),
            &a,
        );
        let nats = json!({ "imports": [{ "subject": "feed.a", "account": a_pub, "type": "stream",
                                         "token": token }] });
        assert_clean(&issues_for(&b_pub, nats));
    }

    #[test]
    fn export_rules() {
        let one = |export: Value| issues(json!({ "exports": [export] }));
        assert_eq!(
            one(json!({ "subject": "foo" })),
            [r#"invalid export type: "unknown""#]
        );
        assert_eq!(
            one(json!({ "subject": "foo", "type": "service", "response_type": "bad" })),
            [r#"invalid response type for service: "bad""#]
        );
        assert_eq!(
            one(json!({ "subject": "foo", "type": "stream", "response_type": "Singleton" })),
            [r#"invalid response type for stream: "Singleton""#]
        );
        let latency = |kind: &str, sampling: Value, results: &str| {
            one(json!({ "subject": "foo", "type": kind,
                        "service_latency": { "sampling": sampling, "results": results } }))
        };
        assert_clean(&latency("service", json!(100), "results"));
        assert_clean(&latency("service", json!("HEADERS"), "results"));
        assert_clean(&latency("service", Value::Null, "results"));
        assert_eq!(
            latency("stream", json!(100), "results"),
            ["latency tracking only permitted for services"]
        );
        for bad in [json!(-1), json!(122)] {
            assert_eq!(
                latency("service", bad, "results"),
                ["sampling percentage needs to be between 1-100"]
            );
        }
        assert_eq!(
            latency("service", json!(22), "results.*"),
            ["results subject can not contain wildcards"]
        );
        assert_eq!(
            latency("service", json!(22), ""),
            ["subject cannot be empty"]
        );
        assert_eq!(
            one(
                json!({ "subject": "x", "type": "service", "response_threshold": -1_000_000_000i64 })
            ),
            ["negative response threshold is invalid"]
        );
        assert_eq!(
            one(json!({ "subject": "x", "type": "stream", "response_threshold": 1_000_000_000 })),
            ["response threshold only valid for services"]
        );
        assert_eq!(
            one(json!({ "subject": "foo", "type": "stream", "info_url": "/bad" })),
            ["error parsing info url: no hostname or scheme"]
        );
    }

    #[test]
    fn exports_of_one_kind_may_not_cover_each_other() {
        let i = issues(json!({ "exports": [
            { "subject": "bar.foo", "type": "stream" }, { "subject": "bar.*", "type": "stream" } ] }));
        assert_eq!(
            i,
            [r#"stream export subject "bar.*" already exports "bar.foo""#]
        );
        let i = issues(json!({ "exports": [
            { "subject": "bar", "type": "service" }, { "subject": "bar", "type": "service" } ] }));
        assert_eq!(i, [r#"service export subject "bar" already exports "bar""#]);
        // An export of unknown type is counted with the streams, as the library does.
        let i = issues(json!({ "exports": [
            { "subject": "a.>" }, { "subject": "a.b", "type": "stream" } ] }));
        assert_eq!(
            i,
            [
                r#"invalid export type: "unknown""#,
                r#"stream export subject "a.>" already exports "a.b""#
            ]
        );
        assert_clean(&issues(json!({ "exports": [
            { "subject": "bar.foo", "type": "service" }, { "subject": "bar.*", "type": "stream" },
            { "subject": "bar", "type": "service" }, { "subject": "bar", "type": "stream" } ] })));
    }

    /// The library's tables for `account_token_position`.
    #[test]
    fn account_token_position_rules() {
        let with_position = |subject: &str, position: u64| {
            issues(json!({ "exports": [{ "subject": subject, "type": "stream",
                                         "account_token_position": position }] }))
        };
        for (subject, position) in [
            ("*", 1),
            ("foo.*", 2),
            ("foo.*.bar.*", 2),
            ("foo.*.bar.>", 2),
            ("*.*.*.>", 2),
            ("*.*.>", 1),
        ] {
            assert_clean(&with_position(subject, position));
        }
        for (subject, position) in [
            (">", 5),
            ("foo.>", 2),
            ("bar.>", 1),
            ("*", 5),
            ("*.*", 5),
            ("bar", 1),
            ("foo.bar", 2),
            ("foo.*.bar", 3),
            ("*.>", 3),
            ("*.*.>", 3),
            ("foo.*x.bar", 2),
            ("foo.x*.bar", 2),
        ] {
            assert_eq!(
                with_position(subject, position).len(),
                1,
                "{subject} {position}"
            );
        }
        assert_eq!(
            with_position("bar", 1),
            ["Account Token Position can only be used with wildcard subjects: bar"]
        );
        assert_eq!(
            with_position("*.*", 5),
            ["Account Token Position 5 exceeds length of subject '*.*'"]
        );
        assert_eq!(
            with_position("foo.*.bar", 3),
            ["Account Token Position 3 matches 'bar' but must match a * in: foo.*.bar"]
        );
        assert_eq!(
            with_position("*", u64::MAX),
            [format!(
                "Account Token Position {} exceeds length of subject '*'",
                u64::MAX
            )]
        );
    }

    #[test]
    fn limit_rules() {
        let a = KeyPair::new_account().public_key();
        let import = |subject: &str| json!({ "subject": subject, "account": a, "type": "stream" });
        let too_many_imports = "the account contains more imports than allowed by the operator";
        let i =
            issues(json!({ "limits": { "imports": 1 }, "imports": [import("a"), import("b")] }));
        assert_eq!(i, [too_many_imports]);
        let i = issues(json!({ "limits": { "exports": 1 }, "exports": [
            { "subject": "a", "type": "stream" }, { "subject": "b", "type": "stream" } ] }));
        assert_eq!(
            i,
            ["the account contains more exports than allowed by the operator"]
        );
        let wildcard_export = json!([{ "subject": "foo", "type": "stream" },
                                     { "subject": "bar.*", "type": "stream" }]);
        let i = issues(json!({ "limits": { "exports": 10, "wildcards": false },
                               "exports": wildcard_export }));
        assert_eq!(
            i,
            ["the account contains wildcard exports that are not allowed by the operator"]
        );
        // The library checks wildcards only when the number of exports is limited.
        assert_clean(&issues(
            json!({ "limits": { "exports": -1, "wildcards": false }, "exports": wildcard_export }),
        ));
        // Absent limits are 0 in Go, not unlimited: such an account may neither import nor
        // export.
        let i = issues(json!({ "limits": null, "imports": [import("a")],
                               "exports": [{ "subject": "x", "type": "stream" }] }));
        assert_eq!(
            i,
            [
                too_many_imports,
                "the account contains more exports than allowed by the operator"
            ]
        );
        assert_clean(&issues(json!({ "limits": null })));
        let i = issues(json!({ "limits": { "tiered_limits": { "": { "mem_storage": 1 } } } }));
        assert_eq!(
            i,
            [r#"Tiered JetStream Limits can not contain a blank "" tier name"#]
        );
        // Plain and tiered JetStream limits together: the library's loader drops the plain
        // ones, so its "mutually exclusive" rule never fires on a decoded token.
        assert_clean(&issues(json!({ "limits": { "disk_storage": 5,
            "tiered_limits": { "R1": { "disk_storage": 5 } } } })));
    }

    #[test]
    fn default_permission_rules() {
        let perms = |pub_allow: Value, sub_allow: Value| {
            issues(
                json!({ "default_permissions": { "pub": { "allow": pub_allow },
                                                    "sub": { "deny": sub_allow } } }),
            )
        };
        assert_clean(&perms(json!(["foo.>"]), json!(["foo.* workers"])));
        assert_eq!(
            perms(json!(["foo q"]), json!([])),
            [r#"Permission Subject "foo q" is not allowed to contain queue"#]
        );
        assert_eq!(
            perms(json!([]), json!(["a b c"])),
            [r#"Permission Subject "a b c" contains too many spaces"#]
        );
        assert_eq!(
            perms(json!([""]), json!(["a "])),
            ["subject cannot be empty"]
        );
        assert_eq!(perms(json!([null]), json!([])), ["subject cannot be empty"]);
    }

    #[test]
    fn mapping_rules() {
        let mapping = |targets: Value| issues(json!({ "mappings": { "foo": targets } }));
        assert_clean(&mapping(json!([{ "subject": "to" }])));
        assert_clean(&mapping(
            json!([{ "subject": "to1", "weight": 50 }, { "subject": "to2", "weight": 50 }]),
        ));
        let exceeds = r#"Mapping "foo" exceeds 100% among all of it's weighted to mappings"#;
        assert_eq!(
            mapping(
                json!([{ "subject": "to1", "weight": 50 }, { "subject": "to2", "weight": 51 }])
            ),
            [exceeds]
        );
        // No weight means 100.
        assert_eq!(
            mapping(json!([{ "subject": "to1" }, { "subject": "to2", "weight": 1 }])),
            [exceeds]
        );
        assert_eq!(
            mapping(json!([{ "subject": "to.*" }])),
            [r#"Subject "to.*" in weighted mapping "foo" is not allowed to contains wildcard"#]
        );
        assert_eq!(
            mapping(json!([{ "subject": "" }, null])),
            ["subject cannot be empty", exceeds]
        );
        // The library sums weights in a uint8, which wraps: 300 % 256 = 44 passes there.
        assert_clean(&mapping(
            json!([{ "subject": "a" }, { "subject": "b" }, { "subject": "c" }]),
        ));
        let i = issues(json!({ "mappings": { "a b": [{ "subject": "c" }] } }));
        assert_eq!(i, [r#"subject "a b" cannot have spaces"#]);
    }

    #[test]
    fn signing_key_rules() {
        let user = KeyPair::new_user().public_key();
        let i = payload_issues(json!({ "type": "account", "version": 2, "limits": null,
                                       "signing_keys": [user] }));
        assert_eq!(
            i,
            [format!("{} is not a valid account signing key", q(&user))]
        );
        let i = payload_issues(json!({ "type": "account", "version": 2, "limits": null,
            "signing_keys": [{ "kind": "user_scope", "key": user, "role": "r" }] }));
        assert_eq!(i, [format!("{user} is not an account public key")]);
        let i = payload_issues(json!({ "type": "account", "version": 2, "limits": null,
            "signing_keys": [{ "kind": "user_scope" }] }));
        assert_eq!(i, [" is not an account public key"]);
        // Elements that are neither strings nor objects are skipped by the library's reader.
        assert_clean(&payload_issues(
            json!({ "type": "account", "version": 2, "limits": null,
            "signing_keys": [5, null, true] }),
        ));
        let i = payload_issues(json!({ "type": "account", "version": 2, "limits": null,
            "signing_keys": [{ "kind": "operator_scope", "key": user }] }));
        assert_eq!(
            i,
            [
                r#"claims cannot be decoded: nats.signing_keys[0]: unknown signing key scope (kind "operator_scope")"#
            ]
        );
        // A scope object goes through interface{} and back in the library: a whole float is an
        // integer there, a fraction is not.
        let scoped = |template: Value| {
            payload_issues(json!({ "type": "account", "version": 2, "limits": null,
                "signing_keys": [{ "kind": "user_scope", "key": KeyPair::new_account().public_key(),
                                   "template": template }] }))
        };
        assert_clean(&scoped(json!({ "subs": 1e3, "src": ["10.0.0.0/8"] })));
        assert_eq!(
            scoped(json!({ "subs": 1.5 })),
            ["claims cannot be decoded: nats.signing_keys[0].template.subs: 1.5 is not a 64-bit integer"]
        );
        assert_eq!(
            scoped(json!({ "src": [1] })),
            ["claims cannot be decoded: nats.signing_keys[0].template.src: expected an array of strings or a comma-separated string"]
        );
    }

    #[test]
    fn info_rules() {
        let url = |u: &str| issues(json!({ "info_url": u }));
        for ok in [
            "https://nats.io/docs",
            "HTTP://example.com",
            "https://user:pass@example.com:8080/a b?q=%zz#frag",
            "https://[fe80::1%25en0]:4222/",
            "http://localhost/foo/bar",
        ] {
            assert_clean(&url(ok));
        }
        let no_host = "error parsing info url: no hostname or scheme";
        for bad in [
            "/bad",
            "example.com",
            "mailto:me@example.com",
            "http://:80/",
            "*",
            "http:",
        ] {
            assert_eq!(url(bad), [no_host], "{bad}");
        }
        assert_eq!(
            url("http://host:port/"),
            [
                r#"error parsing info url: parse "http://host:port/": invalid port ":port" after host"#
            ]
        );
        assert_eq!(
            url("http://ex ample.com/"),
            [
                r#"error parsing info url: parse "http://ex ample.com/": invalid character " " in host name"#
            ]
        );
        assert_eq!(
            url("https://example.com/a%zz"),
            [
                r#"error parsing info url: parse "https://example.com/a%zz": invalid URL escape "%zz""#
            ]
        );
        assert_eq!(
            url("https://example.com/#%"),
            [r#"error parsing info url: parse "https://example.com/#%": invalid URL escape "%""#]
        );
        assert_eq!(
            url("http://exa\tmple.com"),
            [
                r#"error parsing info url: parse "http://exa\tmple.com": net/url: invalid control character in URL"#
            ]
        );
        assert_eq!(
            url(":foo"),
            [r#"error parsing info url: parse ":foo": missing protocol scheme"#]
        );
        assert_eq!(url("a:b/c"), [no_host]);
        assert_eq!(
            url("1a:b/c"),
            [
                r#"error parsing info url: parse "1a:b/c": first path segment in URL cannot contain colon"#
            ]
        );
        assert_eq!(
            url("http://a b@example.com"),
            [
                r#"error parsing info url: parse "http://a b@example.com": net/url: invalid userinfo"#
            ]
        );
        assert_eq!(
            url("http://[::1/"),
            [r#"error parsing info url: parse "http://[::1/": missing ']' in host"#]
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_INFO_LENGTH));
        assert_eq!(url(&long), ["Info URL is too long"]);

        assert_clean(&issues(
            json!({ "description": "d".repeat(MAX_INFO_LENGTH) }),
        ));
        assert_eq!(
            issues(json!({ "description": "d".repeat(MAX_INFO_LENGTH + 1) })),
            ["Description is too long"]
        );
    }

    /// What Go's `encoding/json` refuses fails the whole token; what it ignores is ignored.
    #[test]
    fn decoding_follows_go() {
        let decode_issue = |nats: Value| issues(nats).join("; ");
        assert_eq!(
            decode_issue(json!({ "exports": [{ "subject": "foo", "type": "foo" }] })),
            r#"claims cannot be decoded: nats.exports[0].type: unknown export type "foo""#
        );
        assert_eq!(
            decode_issue(json!({ "imports": [{ "subject": "foo", "type": null }] })),
            r#"claims cannot be decoded: nats.imports[0].type: unknown export type """#
        );
        assert_eq!(
            decode_issue(json!({ "limits": { "conn": "ten" } })),
            "claims cannot be decoded: nats.limits.conn: expected an integer, got a string"
        );
        assert_eq!(
            decode_issue(json!({ "limits": { "conn": 1.0 } })),
            "claims cannot be decoded: nats.limits.conn: 1.0 is not a 64-bit integer"
        );
        assert_eq!(
            decode_issue(json!({ "imports": {} })),
            "claims cannot be decoded: nats.imports: expected an array, got an object"
        );
        assert_eq!(
            decode_issue(json!({ "mappings": { "a": [{ "subject": "b", "weight": 256 }] } })),
            "claims cannot be decoded: nats.mappings.a[0].weight: 256 is not an integer from 0 to 255"
        );
        assert_eq!(
            decode_issue(json!({ "exports": [{ "subject": "a.*", "type": "stream",
                                               "account_token_position": -1 }] })),
            "claims cannot be decoded: nats.exports[0].account_token_position: -1 is not an integer from 0 to 18446744073709551615"
        );
        assert_eq!(
            decode_issue(json!({ "exports": [{ "subject": "a", "type": "service",
                "service_latency": { "sampling": "some", "results": "r" } }] })),
            "claims cannot be decoded: nats.exports[0].service_latency.sampling: expected an integer, got a string"
        );
        // Keys match fields ignoring case, so this import is seen and checked.
        assert_eq!(
            issues(json!({ "IMPORTS": [{ "Subject": "foo", "TYPE": "stream" }] })),
            ["account to import from is not specified"]
        );
        // Fields v2.3.0 does not know (later versions' `authorization`) are ignored.
        assert_clean(&issues(
            json!({ "authorization": { "auth_users": ["nope"] },
                                     "exports": [{ "subject": "x", "type": "stream", "future": 1 }] }),
        ));
        // Without nats.version (and without a v1 top-level type) the library cannot load it.
        let i = payload_issues(json!({ "type": "account" }));
        assert_eq!(
            i,
            ["claims cannot be decoded: claims version 0 is not supported (a v2 token needs nats.version 2, a v1 token a top-level type)"]
        );
    }

    #[test]
    fn v1_accounts_are_read_with_the_v1_loader() {
        let v1 = |nats: Value| {
            validate_account(&json!({ "iss": KeyPair::new_operator().public_key(),
                "sub": KeyPair::new_account().public_key(), "type": "account", "nats": nats }))
        };
        let limits = json!({ "subs": -1, "conn": -1, "imports": -1, "exports": -1,
                             "wildcards": true, "data": -1, "payload": -1, "leaf": -1 });
        // v1 had no permissions, mappings or info; the v1 loader ignores those keys.
        assert_clean(&v1(json!({ "limits": limits,
            "default_permissions": { "pub": { "allow": ["a q"] } },
            "mappings": { "a": [{ "subject": "b.*" }] }, "info_url": "/bad",
            "exports": [{ "subject": "svc.>", "type": "service" }] })));
        assert_eq!(
            v1(json!({ "limits": limits, "imports": [{ "subject": "a", "type": "stream" }] })),
            ["account to import from is not specified"]
        );
        assert_eq!(
            v1(json!({ "limits": limits, "signing_keys": [{ "kind": "user_scope" }] })).join(";"),
            "claims cannot be decoded: nats.signing_keys[0]: expected a string, got an object"
        );
    }

    /// The integration point: one `InvalidClaims` line listing every issue.
    #[test]
    fn decode_account_refuses_with_every_issue_in_one_line() {
        let account = KeyPair::new_account().public_key();
        let token = encode::account(
            &KeyPair::new_operator(),
            &account,
            "broken",
            json!({ "exports": [{ "subject": "a b", "type": "stream" },
                                { "subject": "x", "type": "stream", "response_type": "Stream" }] }),
        );
        let err = decode_account(&token, now_unix()).expect_err("refused");
        assert_eq!(
            err,
            JwtError::InvalidClaims(
                r#"account JWT has validation issues: subject "a b" cannot have spaces; invalid response type for stream: "Stream""#
                    .into()
            )
        );
        assert_eq!(
            err.to_string(),
            r#"invalid claims: account JWT has validation issues: subject "a b" cannot have spaces; invalid response type for stream: "Stream""#
        );
        let fine = encode::account(&KeyPair::new_operator(), &account, "fine", json!({}));
        decode_account(&fine, now_unix()).expect("accepted");
    }

    #[test]
    fn the_error_stays_one_bounded_line() {
        let exports: Vec<Value> = (0..30)
            .map(|i| json!({ "subject": format!("s{i}"), "type": "stream", "response_type": format!("R\n{i}") }))
            .collect();
        let token = encode::account(
            &KeyPair::new_operator(),
            &KeyPair::new_account().public_key(),
            "many",
            json!({ "exports": exports, "default_permissions": { "pub": { "allow": ["a\tb c"] } } }),
        );
        let message = check_account_rules(&decode(&token).expect("decodes"))
            .expect_err("refused")
            .to_string();
        assert!(!message.contains(char::is_control), "{message}");
        assert!(
            message.ends_with(&format!("; and {} more", 31 - MAX_LISTED_ISSUES)),
            "{message}"
        );
        assert!(message.contains(r#"invalid response type for stream: "R\n0""#));
        let i = issues(json!({ "default_permissions": { "pub": { "allow": ["a\tb c"] } } }));
        assert_eq!(
            i,
            [r#"Permission Subject "a\tb c" is not allowed to contain queue"#]
        );
    }

    #[test]
    fn subject_helpers_match_the_library() {
        assert!(is_contained_in("foo.bar", "foo.*"));
        assert!(is_contained_in("foo.bar.baz", "foo.>"));
        assert!(is_contained_in("foo", ">"));
        assert!(!is_contained_in("foo", "foo.>"));
        assert!(!is_contained_in("foo.*", "foo.bar"));
        assert!(is_contained_in("*", "*"));
        assert!(has_wildcards("a.*.b") && has_wildcards("*") && has_wildcards("a.>"));
        assert!(!has_wildcards("a*.b") && !has_wildcards("a.b>"));
        assert_eq!(to_subject("my.$2.$1.>"), "my.*.*.>");
        assert_eq!(to_subject("my.$x.$"), "my.$x.$");
        assert_eq!(go_atoi("+1"), Some(1));
        assert_eq!(go_atoi("-0"), Some(0));
        assert_eq!(go_atoi("1a"), None);
        assert_eq!(go_atoi("99999999999999999999"), None);
        assert!(key_matches("Imports", "imports"));
        assert!(key_matches("\u{17F}ubs", "subs"));
        assert!(key_matches("\u{212A}ey", "key"));
        assert!(!key_matches("import", "imports"));
        assert!(!key_matches("imports_", "imports"));
        assert_eq!(q("a\"b\\\n\u{0}é\u{a0}"), r#""a\"b\\\n\x00é\u00a0""#);
        assert_eq!(go_quote(b"%\xff"), r#""%\xff""#);
    }
}
