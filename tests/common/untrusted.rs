//! Every reader of untrusted token text, run on one input: none of it may panic, and what
//! verifies is exactly the (trimmed) input. Shared by the property tests (tests/properties.rs)
//! and the fuzz target `jwt_decode` (tests/fuzz, which includes this file by its path: keep it
//! to the library's public API).

use nats_account_server::jwt::{self, view};

/// Feeds `text` to everything that takes untrusted token text.
pub fn decode_everything(text: &str) {
    let now = jwt::now_unix();
    if let Ok(decoded) = jwt::decode(text) {
        assert_eq!(decoded.raw, text.trim());
    }
    let _ = jwt::parse_unverified(text);
    let _ = jwt::decode_account(text, now);
    let _ = jwt::decode_activation(text, now);
    let _ = view::render(text);
    let _ = jwt::key_kind(text);
    let _ = jwt::is_activation_hash(text);
    if let Ok(claims) = jwt::parse_unverified(text) {
        let _ = jwt::activation_hash(&claims);
        let _ = claims.check_time(now);
        let _ = claims.claim_type();
    }
}
