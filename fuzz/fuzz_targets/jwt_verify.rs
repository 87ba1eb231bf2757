//! libFuzzer target: arbitrary bytes as a bearer token (see `trialport_fuzz::Harness::check_token`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use trialport_fuzz::Harness;

static HARNESS: OnceLock<Harness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    HARNESS.get_or_init(Harness::new).check_token(data);
});
