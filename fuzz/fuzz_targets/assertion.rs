//! The assertion parser, and evaluation of what parses: the first line is the
//! assertion, the rest a JSON payload to evaluate it on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagegate::contract::assertion::{Assertion, AssertionKind, EvalContext};
use stagegate::contract::lists::ListCatalog;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, payload) = text.split_once('\n').unwrap_or((text, "{}"));
    if let Ok(assertion) = Assertion::parse(source, &ListCatalog::built_in())
        && let Ok(payload) = serde_json::from_str(payload)
    {
        match assertion.kind() {
            AssertionKind::Each(clauses) => {
                for clause in clauses {
                    let _ = clause.evaluate(&payload, &EvalContext::at_now());
                }
            }
            AssertionKind::StableFor(rule) => {
                let _ = (rule.fingerprint(&payload), rule.describe_tuple(&payload));
            }
        }
    }
});
