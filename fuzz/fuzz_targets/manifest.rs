//! The manifest and policy loader: bytes → text → placed YAML → typed model → checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A folder that does not exist: `lists:` entries resolve to nothing readable
    // unless the input names an absolute path, which the loader must bound.
    let path = std::path::Path::new("/nonexistent/stagegate-fuzz/manifest.yaml");
    let _ = stagegate::manifest::load_document_bytes(path, data.to_vec());
});
