//! Step 1: the account and activation claims as the Go library holds them after decoding, and
//! the decoding itself, field by field, with Go's rules ([`super::go_json`]).
//!
//! The structs keep only what validation reads; every other field the library's types have is
//! still decoded, because a value of the wrong JSON type there fails the whole decode in Go
//! too. Version differences (v1 tokens keep some fields elsewhere and lack others) are decided
//! here, so validation sees one shape.

use super::go_fmt::q;
use super::go_json::{field, go_reencoded, join, Decoder};
use super::payload_json;
use crate::jwt::{decode, key_kind, KeyKind};
use serde_json::{Map, Value};

/// Import and export kinds. Unknown is what an absent `type` decodes to; any *present* value
/// other than the two names fails the decode (the Go type's `UnmarshalJSON`, which json calls
/// even for `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExportType {
    Unknown,
    Stream,
    Service,
}

impl ExportType {
    /// The Go `String()`, which `%q`/`%s` print.
    pub(super) fn name(self) -> &'static str {
        match self {
            ExportType::Unknown => "unknown",
            ExportType::Stream => "stream",
            ExportType::Service => "service",
        }
    }
}

#[derive(Debug)]
pub(super) struct Import {
    pub(super) subject: String,
    pub(super) account: String,
    pub(super) token: String,
    pub(super) to: String,
    pub(super) local_subject: String,
    pub(super) kind: ExportType,
    pub(super) share: bool,
}

#[derive(Debug, Default)]
pub(super) struct Info {
    pub(super) description: String,
    pub(super) info_url: String,
}

#[derive(Debug)]
pub(super) struct Latency {
    pub(super) sampling: i64,
    pub(super) results: String,
}

#[derive(Debug)]
pub(super) struct Export {
    pub(super) subject: String,
    pub(super) kind: ExportType,
    pub(super) response_type: String,
    pub(super) response_threshold: i64,
    pub(super) latency: Option<Latency>,
    pub(super) account_token_position: u64,
    pub(super) info: Info,
}

#[derive(Debug, Default)]
pub(super) struct Limits {
    pub(super) imports: i64,
    pub(super) exports: i64,
    pub(super) wildcards: bool,
    /// Go's `OperatorLimits.IsEmpty`: every limit zero/false and no tiers.
    pub(super) empty: bool,
    /// Names of the tiered JetStream limits.
    pub(super) tiers: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct Permission {
    pub(super) allow: Vec<String>,
    pub(super) deny: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct Permissions {
    pub(super) publish: Permission,
    pub(super) subscribe: Permission,
}

#[derive(Debug)]
pub(super) struct WeightedMapping {
    pub(super) subject: String,
    pub(super) weight: u8,
}

/// An account as the Go library holds it after decoding (the fields validation reads).
#[derive(Debug, Default)]
pub(super) struct Account {
    /// `sub`: imports' activation tokens must be issued to it.
    pub(super) subject: String,
    /// `None` entries are JSON `null`s, which Go keeps as nil pointers.
    pub(super) imports: Vec<Option<Import>>,
    pub(super) exports: Vec<Option<Export>>,
    pub(super) limits: Limits,
    /// Key and whether it is a scoped (`user_scope`) key. A Go map: a later entry for the same
    /// key replaces the earlier one.
    pub(super) signing_keys: Vec<(String, bool)>,
    pub(super) default_permissions: Permissions,
    pub(super) mappings: Vec<(String, Vec<WeightedMapping>)>,
    pub(super) info: Info,
}

// The reader of the library's own `ExportType` sits with that type; `go_json` has the readers
// of Go's built-in types only.
impl Decoder {
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

pub(super) fn decode_account(d: &mut Decoder, payload: &Value) -> Option<Account> {
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

/// What the library reads from an import's activation token.
pub(super) struct Activation {
    pub(super) issuer: String,
    pub(super) subject: String,
    pub(super) issuer_account: String,
    pub(super) import_subject: String,
    pub(super) import_type: ExportType,
}

/// The library's `DecodeActivationClaims`: a well-formed, correctly signed activation JWT
/// issued by an account or operator key. Its expiry is not checked (an import with an expired
/// token is still a valid account).
pub(super) fn decode_activation_token(token: &str) -> Result<Activation, String> {
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
