//! The sandbox dataset reader (`sandbox generate`'s YAML, streamed event by event).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stagegate::sandbox::dataset::from_reader(std::path::Path::new("fuzz.yaml"), data);
});
