//! Webhook signature verification (Standard Webhooks): secret, id, timestamp and
//! signature headers, one a line, then the body.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stagegate::delivery::signature::{WebhookSecret, verify};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let mut field = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let (secret, id, timestamp, signature) = (field(), field(), field(), field());
    let body = parts.next().unwrap_or_default();
    let secret = secret
        .and_then(|s| s.parse::<WebhookSecret>().ok())
        .unwrap_or_else(|| WebhookSecret::from_key(vec![7; 24]).expect("a 24-byte key"));
    let _ = verify(
        &secret,
        id,
        timestamp,
        signature,
        body,
        1_790_000_000,
        Duration::from_secs(300),
    );
});
