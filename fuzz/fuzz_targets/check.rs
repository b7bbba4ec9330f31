//! The payload checker: any bytes as `stagegate check` input against the seed
//! manifest, with the streamed JSON report, which must stay one JSON document.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use stagegate::check::Checker;
use stagegate::check::report::JsonReport;
use stagegate::manifest::Manifest;

static MANIFEST: LazyLock<Manifest> = LazyLock::new(|| {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/release-gate.yaml");
    Manifest::load(&path)
        .expect("the seed manifest loads")
        .value
});

fuzz_target!(|data: &[u8]| {
    let mut checker = Checker::new(&MANIFEST);
    let Ok(mut report) = JsonReport::start(Vec::new()) else {
        return;
    };
    if checker.check_reader("fuzz", data, &mut report).is_ok() {
        let out = report.finish(checker.summary()).expect("writing to memory");
        serde_json::from_slice::<serde_json::Value>(&out).expect("the report is one JSON document");
    }
});
