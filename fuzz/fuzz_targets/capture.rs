//! Fuzz target `capture`: see `targets::capture` (fuzz/targets.rs).
#![no_main]

#[expect(dead_code, reason = "each fuzz binary calls one of the shared targets")]
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::capture(data));
