//! Everything that reads untrusted token text must return, never panic; and what verifies must
//! be exactly the (trimmed) input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nats_account_server::jwt::{self, view};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = jwt::now_unix();
    if let Ok(decoded) = jwt::decode(text) {
        assert_eq!(decoded.raw, text.trim());
    }
    let _ = jwt::decode_account(text, now);
    let _ = jwt::decode_activation(text, now);
    let _ = view::render(text);
    let _ = jwt::key_kind(text);
    let _ = jwt::is_activation_hash(text);
    if let Ok(claims) = jwt::parse_unverified(text) {
        let _ = jwt::activation_hash(&claims);
        let _ = claims.check_time(now);
    }
});
