//! The nats-server config parser returns on any text, never panics or overflows its stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nats_account_server::config::natsconf;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `include` reads files (`include /dev/zero` would never end): not what this target tests.
    if text.to_ascii_lowercase().contains("include") {
        return;
    }
    let _ = natsconf::parse(text);
});
