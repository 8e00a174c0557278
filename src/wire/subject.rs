//! NATS subjects of claims updates and of nats-server's resolver protocol (DESIGN §7): built and
//! recognized here only.
//!
//! - `$SYS.ACCOUNT.<pub>.CLAIMS.UPDATE`: an account update every nats-server 2.x applies
//!   (published by a primary; replicas listen).
//! - `$SYS.REQ.ACCOUNT.<pub>.CLAIMS.UPDATE`: the newer form (2.2 and later); with a reply
//!   subject it is an update *request* (`nsc push` to a `nats://` URL).
//! - `$SYS.ACCOUNT.<issuer>.CLAIMS.ACTIVATE.<hash>`: an activation update (only our replicas
//!   listen).
//! - `$SYS.REQ.ACCOUNT.<pub>.CLAIMS.LOOKUP`, `$SYS.REQ.CLAIMS.PACK`, `.LIST`, `.UPDATE`,
//!   `.DELETE`: resolver requests.

/// The generic update request (the account is the token's subject).
pub const UPDATE: &str = "$SYS.REQ.CLAIMS.UPDATE";
/// A full resolver's directory sync, answered with the pack ([`super::pack`]).
pub const PACK: &str = "$SYS.REQ.CLAIMS.PACK";
/// The public keys of every stored account.
pub const LIST: &str = "$SYS.REQ.CLAIMS.LIST";
/// An operator-signed deletion of accounts; also where a primary publishes its deletions.
pub const DELETE: &str = "$SYS.REQ.CLAIMS.DELETE";
/// Every account's lookup request.
pub const ANY_ACCOUNT_LOOKUP: &str = "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP";
/// Every account's update, old form.
pub const ANY_ACCOUNT_UPDATE: &str = "$SYS.ACCOUNT.*.CLAIMS.UPDATE";
/// Every account's update, request form.
pub const ANY_ACCOUNT_UPDATE_REQUEST: &str = "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE";
/// Every activation update.
pub const ANY_ACTIVATION_UPDATE: &str = "$SYS.ACCOUNT.*.CLAIMS.ACTIVATE.*";

/// Where an update of account `key` is published, old form.
pub fn account_update(key: &str) -> String {
    format!("$SYS.ACCOUNT.{key}.CLAIMS.UPDATE")
}

/// Where an update of account `key` is published, request form.
pub fn account_update_request(key: &str) -> String {
    format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE")
}

/// Where an activation with `hash`, signed by `issuer`, is published.
pub fn activation_update(issuer: &str, hash: &str) -> String {
    format!("$SYS.ACCOUNT.{issuer}.CLAIMS.ACTIVATE.{hash}")
}

/// What a subject names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`.
    AccountUpdate {
        /// The account.
        key: &'a str,
    },
    /// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE`.
    AccountUpdateRequest {
        /// The account.
        key: &'a str,
    },
    /// `$SYS.ACCOUNT.<issuer>.CLAIMS.ACTIVATE.<hash>`.
    ActivationUpdate {
        /// The token's signer (its `iss`).
        issuer: &'a str,
        /// The activation hash.
        hash: &'a str,
    },
    /// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`.
    AccountLookup {
        /// The account.
        key: &'a str,
    },
    /// [`UPDATE`].
    Update,
    /// [`PACK`].
    Pack,
    /// [`LIST`].
    List,
    /// [`DELETE`].
    Delete,
}

/// What `subject` names, when it is one of these subjects (a wildcard is no key).
pub fn parse(subject: &str) -> Option<Subject<'_>> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let named = match tokens.as_slice() {
        ["$SYS", "ACCOUNT", key, "CLAIMS", "UPDATE"] => Subject::AccountUpdate { key },
        ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "UPDATE"] => {
            Subject::AccountUpdateRequest { key }
        }
        ["$SYS", "ACCOUNT", issuer, "CLAIMS", "ACTIVATE", hash] => {
            Subject::ActivationUpdate { issuer, hash }
        }
        ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "LOOKUP"] => Subject::AccountLookup { key },
        ["$SYS", "REQ", "CLAIMS", "UPDATE"] => Subject::Update,
        ["$SYS", "REQ", "CLAIMS", "PACK"] => Subject::Pack,
        ["$SYS", "REQ", "CLAIMS", "LIST"] => Subject::List,
        ["$SYS", "REQ", "CLAIMS", "DELETE"] => Subject::Delete,
        _ => return None,
    };
    let wildcard = |t: &str| t.is_empty() || t == "*" || t == ">";
    match named {
        Subject::AccountUpdate { key }
        | Subject::AccountUpdateRequest { key }
        | Subject::AccountLookup { key }
            if wildcard(key) =>
        {
            None
        }
        Subject::ActivationUpdate { issuer, hash } if wildcard(issuer) || wildcard(hash) => None,
        named => Some(named),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_subjects_parse_back() {
        assert_eq!(
            parse(&account_update("AKEY")),
            Some(Subject::AccountUpdate { key: "AKEY" })
        );
        assert_eq!(
            parse(&account_update_request("AKEY")),
            Some(Subject::AccountUpdateRequest { key: "AKEY" })
        );
        assert_eq!(
            parse(&activation_update("AISS", "HASH")),
            Some(Subject::ActivationUpdate {
                issuer: "AISS",
                hash: "HASH"
            })
        );
        assert_eq!(
            parse("$SYS.REQ.ACCOUNT.AKEY.CLAIMS.LOOKUP"),
            Some(Subject::AccountLookup { key: "AKEY" })
        );
        for (s, named) in [
            (UPDATE, Subject::Update),
            (PACK, Subject::Pack),
            (LIST, Subject::List),
            (DELETE, Subject::Delete),
        ] {
            assert_eq!(parse(s), Some(named));
        }
    }

    #[test]
    fn other_subjects_and_wildcards_name_nothing() {
        assert_eq!(parse("$SYS.ACCOUNT.AKEY.CONNECT"), None);
        assert_eq!(parse("$SYS.ACCOUNT.AKEY.CLAIMS.UPDATE.X"), None);
        for pattern in [
            ANY_ACCOUNT_LOOKUP,
            ANY_ACCOUNT_UPDATE,
            ANY_ACCOUNT_UPDATE_REQUEST,
            ANY_ACTIVATION_UPDATE,
        ] {
            assert_eq!(parse(pattern), None, "{pattern}");
        }
        // The patterns match what the builders make.
        assert_eq!(
            ANY_ACCOUNT_UPDATE.replace('*', "AKEY"),
            account_update("AKEY")
        );
        assert_eq!(
            ANY_ACCOUNT_UPDATE_REQUEST.replace('*', "AKEY"),
            account_update_request("AKEY")
        );
        assert_eq!(
            ANY_ACCOUNT_LOOKUP.replace('*', "AKEY"),
            "$SYS.REQ.ACCOUNT.AKEY.CLAIMS.LOOKUP"
        );
        assert_eq!(
            ANY_ACTIVATION_UPDATE
                .replacen('*', "AISS", 1)
                .replacen('*', "HASH", 1),
            activation_update("AISS", "HASH")
        );
    }
}
