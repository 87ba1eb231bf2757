//! libFuzzer target: arbitrary bytes as a JWT key file (PEM, JWK, JWK Set or secret).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trialport_fuzz::Harness;

fuzz_target!(|data: &[u8]| {
    Harness::check_key_file(data);
});
