//! Step 2: the library's validation rules (`AccountClaims.Validate` and what it calls) over
//! the decoded claims ([`super::claims`]). Only its errors are collected; its warnings never
//! block a token.
//!
//! Each rule keeps the library's name in its doc and its message wording, including the checks
//! that look redundant (two overlapping import-limit checks), since nats-server runs exactly
//! these.

use super::claims::{
    decode_activation_token, Account, Export, ExportType, Import, Info, Permission,
};
use super::go_fmt::{one_line, q};
use super::go_url;
use crate::jwt::is_account_key;
use std::collections::HashSet;

/// Blocking issues, each once: the library can report one twice (two import-limit checks that
/// overlap), which says nothing more to a user.
#[derive(Default)]
pub(super) struct Issues {
    pub(super) list: Vec<String>,
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
pub(super) fn has_wildcards(s: &str) -> bool {
    s.ends_with(".>")
        || s.contains(".*.")
        || s.ends_with(".*")
        || s.starts_with("*.")
        || s == "*"
        || s == ">"
}

/// `Subject.IsContainedIn`: every subject `s` matches is matched by `other` (a simple token
/// comparison, as the library does it).
pub(super) fn is_contained_in(s: &str, other: &str) -> bool {
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
pub(super) fn go_atoi(s: &str) -> Option<i64> {
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
pub(super) fn to_subject(s: &str) -> String {
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

impl Account {
    /// `Account.Validate` (and the account part of `AccountClaims.Validate`).
    pub(super) fn validate(&self, vr: &mut Issues) {
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
pub(super) const MAX_INFO_LENGTH: usize = 8 * 1024;

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
