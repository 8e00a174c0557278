//! Everything that reads untrusted token text must return, never panic; and what verifies must
//! be exactly the (trimmed) input. The checks are the property tests' (tests/common/untrusted.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../common/untrusted.rs"]
mod untrusted;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    untrusted::decode_everything(text);
});
