//! The observation-log verifier: JSON Lines records, hashes, links, sequence numbers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stagegate::observe::verify_reader(std::path::Path::new("fuzz.jsonl"), data);
});
