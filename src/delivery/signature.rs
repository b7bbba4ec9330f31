//! Standard Webhooks signatures: the `whsec_` secret, signing, and verifying.
//!
//! The scheme (docs/integration-protocol.md §2) signs `"{webhook-id}.{webhook-timestamp}.{body}"`
//! with HMAC-SHA256 keyed by the base64-decoded secret, and sends `v1,<base64>`; a
//! header may carry several space-separated signatures (key rotation) and versions
//! other than `v1` are ignored. The sender signs with it and the mocks and the
//! reference relay verify with it, so both sides of every test share one
//! implementation that is pinned to the specification's published vector.
//!
//! The secret keeps a keyed HMAC ready, so signing cannot fail once a secret exists,
//! and comparisons go through [`Mac::verify_slice`], which is constant time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How far a `webhook-timestamp` may be from now, either way, before it is refused.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The header names of the scheme.
pub mod header {
    /// The message id, the same for every retry of one message.
    pub const ID: &str = "webhook-id";
    /// Unix seconds at signing.
    pub const TIMESTAMP: &str = "webhook-timestamp";
    /// Space-separated `v1,<base64>` signatures.
    pub const SIGNATURE: &str = "webhook-signature";
}

/// A Standard Webhooks signing secret (`whsec_` + base64 of the key).
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
    mac: HmacSha256,
}

/// Why a string is not a webhook secret. Messages never include the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The `whsec_` prefix is absent.
    #[error("webhook secret does not start with `whsec_`")]
    MissingPrefix,
    /// What follows the prefix is not base64.
    #[error("webhook secret is not valid base64 after `whsec_`")]
    Base64(#[source] base64::DecodeError),
    /// The key decodes to no bytes.
    #[error("webhook secret has an empty key")]
    Empty,
}

impl WebhookSecret {
    /// A secret with this raw key.
    pub fn from_key(key: Vec<u8>) -> Result<Self, SecretError> {
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        // HMAC takes keys of any length, so this only fails on the empty key above;
        // mapping it keeps the constructor total rather than trusting that.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(&key).map_err(|_| SecretError::Empty)?;
        Ok(WebhookSecret { key, mac })
    }

    /// A fresh secret of one SHA-256 block (64 bytes) drawn from `rng`; seed the
    /// rng for reproducible runs.
    pub fn generate<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        // A block-sized key takes HMAC's infallible constructor, so there is no
        // error path to invent for a secret we made ourselves.
        let mut key = hmac::digest::Key::<HmacSha256>::default();
        rng.fill_bytes(&mut key);
        WebhookSecret {
            mac: <HmacSha256 as KeyInit>::new(&key),
            key: key.to_vec(),
        }
    }

    /// The HMAC keyed with this secret, ready for a message.
    fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoded = s
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        // Padding is optional in the wild (some providers strip it); accept both.
        let key = STANDARD_PAD_INDIFFERENT
            .decode(encoded)
            .map_err(SecretError::Base64)?;
        Self::from_key(key)
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs and panic messages: never the key.
        write!(f, "WebhookSecret(<{} bytes redacted>)", self.key.len())
    }
}

/// The MAC over `"{id}.{timestamp}.{body}"`, before finalising.
fn keyed_message(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for one message: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let tag = keyed_message(secret, msg_id, timestamp_secs, body)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `webhook-id` header (or an empty one).
    #[error("missing `webhook-id` header")]
    MissingId,
    /// No `webhook-timestamp` header (or an empty one).
    #[error("missing `webhook-timestamp` header")]
    MissingTimestamp,
    /// No `webhook-signature` header (or an empty one).
    #[error("missing `webhook-signature` header")]
    MissingSignature,
    /// A header is not visible ASCII.
    #[error("`{name}` header is not text")]
    NotText {
        /// The header.
        name: &'static str,
    },
    /// The timestamp is not integer Unix seconds.
    #[error("`webhook-timestamp` is not unix seconds: {value:?}")]
    BadTimestamp {
        /// The value received, cut to 40 characters.
        value: String,
    },
    /// The timestamp is older than the tolerance allows.
    #[error("timestamp is {age_secs} s old, beyond the {tolerance_secs} s tolerance")]
    TooOld {
        /// How far behind now it is.
        age_secs: u64,
        /// The tolerance.
        tolerance_secs: u64,
    },
    /// The timestamp is further in the future than the tolerance allows.
    #[error("timestamp is {ahead_secs} s in the future, beyond the {tolerance_secs} s tolerance")]
    TooNew {
        /// How far ahead of now it is.
        ahead_secs: u64,
        /// The tolerance.
        tolerance_secs: u64,
    },
    /// No entry of the header is a well-formed `v1,<base64>` signature.
    #[error("`webhook-signature` carries no usable `v1` signature")]
    NoV1Signature,
    /// Well-formed `v1` signatures were sent but none matches.
    #[error("no `v1` signature matches the message")]
    Mismatch,
}

/// A header's value, unless absent or blank.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Checks one webhook: headers present, timestamp within `tolerance` of `now_secs`,
/// and at least one `v1` signature made with `secret` over this id, timestamp and body.
pub fn verify(
    secret: &WebhookSecret,
    id: Option<&str>,
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let id = present(id).ok_or(SignatureError::MissingId)?;
    let timestamp = present(timestamp_header).ok_or(SignatureError::MissingTimestamp)?;
    let signatures = present(signature_header).ok_or(SignatureError::MissingSignature)?;

    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp {
            value: timestamp.chars().take(40).collect(),
        })?;
    let tolerance_secs = tolerance.as_secs();
    let distance = now_secs.abs_diff(timestamp);
    if distance > tolerance_secs {
        return Err(if timestamp < now_secs {
            SignatureError::TooOld {
                age_secs: distance,
                tolerance_secs,
            }
        } else {
            SignatureError::TooNew {
                ahead_secs: distance,
                tolerance_secs,
            }
        });
    }

    let expected = keyed_message(secret, id, timestamp, body);
    let mut well_formed = false;
    for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue; // another version (`v1a,…`): not ours to judge
        };
        let Ok(tag) = STANDARD_PAD_INDIFFERENT.decode(encoded) else {
            continue;
        };
        if tag.is_empty() {
            continue;
        }
        well_formed = true;
        if expected.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(if well_formed {
        SignatureError::Mismatch
    } else {
        SignatureError::NoV1Signature
    })
}

/// [`verify`] over an HTTP request's headers, as a receiving server holds them.
pub fn verify_headers(
    secret: &WebhookSecret,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let text = |name: &'static str| -> Result<Option<&str>, SignatureError> {
        headers
            .get(name)
            .map(|v| v.to_str().map_err(|_| SignatureError::NotText { name }))
            .transpose()
    };
    verify(
        secret,
        text(header::ID)?,
        text(header::TIMESTAMP)?,
        text(header::SIGNATURE)?,
        body,
        now_secs,
        tolerance,
    )
}

/// The current Unix time in seconds (0 should the clock stand before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_secret() -> WebhookSecret {
        SPEC_SECRET.parse().expect("the spec's secret parses")
    }

    #[test]
    fn the_published_vector_signs_and_verifies() {
        let secret = spec_secret();
        assert_eq!(
            sign(&secret, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
        verify(
            &secret,
            Some(SPEC_ID),
            Some(&SPEC_TS.to_string()),
            Some(SPEC_SIGNATURE),
            SPEC_BODY.as_bytes(),
            SPEC_TS,
            TIMESTAMP_TOLERANCE,
        )
        .expect("the published vector verifies");
    }

    #[test]
    fn secrets_parse_print_and_keep_their_key_out_of_debug() {
        let secret = spec_secret();
        assert_eq!(secret.to_string(), SPEC_SECRET);
        let debug = format!("{secret:?}");
        assert!(!debug.contains("MfKQ9r8G"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");

        // (input, expected error, why)
        let rows: [(&str, SecretError, &str); 4] = [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SecretError::MissingPrefix,
                "no whsec_ prefix",
            ),
            (
                "whsec_not base64!",
                SecretError::Base64(base64::DecodeError::InvalidByte(3, b' ')),
                "a space is not base64",
            ),
            ("whsec_", SecretError::Empty, "nothing after the prefix"),
            (
                "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SecretError::MissingPrefix,
                "the prefix is case-sensitive",
            ),
        ];
        for (input, expected, why) in rows {
            let err = input.parse::<WebhookSecret>().expect_err(why);
            assert_eq!(err, expected, "{why}");
            assert!(
                !err.to_string().contains(input),
                "{why}: the message leaks input"
            );
        }
    }

    #[test]
    fn unpadded_secrets_parse_like_padded_ones() {
        let padded: WebhookSecret = "whsec_AAECAw==".parse().expect("padded");
        let unpadded: WebhookSecret = "whsec_AAECAw".parse().expect("unpadded");
        assert_eq!(padded.to_string(), unpadded.to_string());
    }

    #[test]
    fn generated_secrets_are_reproducible_from_a_seed_and_round_trip() {
        let a = WebhookSecret::generate(&mut ChaCha8Rng::seed_from_u64(7));
        let b = WebhookSecret::generate(&mut ChaCha8Rng::seed_from_u64(7));
        let c = WebhookSecret::generate(&mut ChaCha8Rng::seed_from_u64(8));
        assert_eq!(a.to_string(), b.to_string());
        assert_ne!(a.to_string(), c.to_string());
        assert!(a.key.len() >= 24);
        let reparsed: WebhookSecret = a.to_string().parse().expect("round trip");
        assert_eq!(reparsed.to_string(), a.to_string());
    }

    #[test]
    fn verify_table() {
        let secret = spec_secret();
        let other: WebhookSecret = "whsec_c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ=="
            .parse()
            .expect("valid");
        let ts = SPEC_TS.to_string();
        let good = SPEC_SIGNATURE;
        let by_other = sign(&other, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes());
        let two_good = format!("{by_other} {good}");
        let v1a_only = format!("v1a,{}", &good[3..]);
        let v1a_then_good = format!("v1a,abcd {good}");
        // 20 base64 characters: valid base64, but 15 bytes rather than 32.
        let truncated = &good[..23];
        let stale_ts = (SPEC_TS - 301).to_string();
        let future_ts = (SPEC_TS + 301).to_string();
        let edge_ts = (SPEC_TS - 300).to_string();
        let sig_at = |t: i64| sign(&secret, SPEC_ID, t, SPEC_BODY.as_bytes());
        let stale_sig = sig_at(SPEC_TS - 301);
        let future_sig = sig_at(SPEC_TS + 301);
        let edge_sig = sig_at(SPEC_TS - 300);

        type Row<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            Result<(), SignatureError>,
            &'a str,
        );
        let body = SPEC_BODY;
        let rows: Vec<Row> = vec![
            (
                Some(SPEC_ID),
                Some(&ts),
                Some(good),
                body,
                Ok(()),
                "the published vector",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some(&two_good),
                body,
                Ok(()),
                "one match among several signatures is enough",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some(&v1a_then_good),
                body,
                Ok(()),
                "other versions are skipped, not fatal",
            ),
            (
                Some(SPEC_ID),
                Some(&edge_ts),
                Some(&edge_sig),
                body,
                Ok(()),
                "exactly five minutes old is still within tolerance",
            ),
            (
                None,
                Some(&ts),
                Some(good),
                body,
                Err(SignatureError::MissingId),
                "no webhook-id",
            ),
            (
                Some(""),
                Some(&ts),
                Some(good),
                body,
                Err(SignatureError::MissingId),
                "an empty webhook-id is as good as none",
            ),
            (
                Some(SPEC_ID),
                None,
                Some(good),
                body,
                Err(SignatureError::MissingTimestamp),
                "no webhook-timestamp",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                None,
                body,
                Err(SignatureError::MissingSignature),
                "no webhook-signature",
            ),
            (
                Some(SPEC_ID),
                Some("yesterday"),
                Some(good),
                body,
                Err(SignatureError::BadTimestamp {
                    value: "yesterday".into(),
                }),
                "a timestamp that is not a number",
            ),
            (
                Some(SPEC_ID),
                Some("1614265330.5"),
                Some(good),
                body,
                Err(SignatureError::BadTimestamp {
                    value: "1614265330.5".into(),
                }),
                "fractional seconds are not the scheme",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some("v1,"),
                body,
                Err(SignatureError::NoV1Signature),
                "a bare v1, carries no signature",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some(&v1a_only),
                body,
                Err(SignatureError::NoV1Signature),
                "only another version (v1a) is present",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some("v1,!!!not-base64!!!"),
                body,
                Err(SignatureError::NoV1Signature),
                "a v1 signature that is not base64",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some(&good[3..]),
                body,
                Err(SignatureError::NoV1Signature),
                "the signature without its version prefix",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some(truncated),
                body,
                Err(SignatureError::Mismatch),
                "a truncated signature",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some(&by_other),
                body,
                Err(SignatureError::Mismatch),
                "signed with another key",
            ),
            (
                Some("msg_other"),
                Some(&ts),
                Some(good),
                body,
                Err(SignatureError::Mismatch),
                "the id is part of what is signed",
            ),
            (
                Some(SPEC_ID),
                Some(&ts),
                Some(good),
                r#"{"test": 2432232315}"#,
                Err(SignatureError::Mismatch),
                "the body is part of what is signed",
            ),
            (
                Some(SPEC_ID),
                Some(&stale_ts),
                Some(&stale_sig),
                body,
                Err(SignatureError::TooOld {
                    age_secs: 301,
                    tolerance_secs: 300,
                }),
                "correctly signed but more than five minutes old",
            ),
            (
                Some(SPEC_ID),
                Some(&future_ts),
                Some(&future_sig),
                body,
                Err(SignatureError::TooNew {
                    ahead_secs: 301,
                    tolerance_secs: 300,
                }),
                "correctly signed but more than five minutes ahead",
            ),
        ];
        for (id, ts, sig, body, expected, why) in rows {
            let got = verify(
                &secret,
                id,
                ts,
                sig,
                body.as_bytes(),
                SPEC_TS,
                TIMESTAMP_TOLERANCE,
            );
            assert_eq!(got, expected, "{why}");
        }
    }

    #[test]
    fn header_maps_are_verified_like_loose_values() {
        use axum::http::{HeaderMap, HeaderValue};
        let secret = spec_secret();
        let mut headers = HeaderMap::new();
        headers.insert(header::ID, HeaderValue::from_static(SPEC_ID));
        headers.insert(header::TIMESTAMP, HeaderValue::from_static("1614265330"));
        headers.insert(header::SIGNATURE, HeaderValue::from_static(SPEC_SIGNATURE));
        verify_headers(
            &secret,
            &headers,
            SPEC_BODY.as_bytes(),
            SPEC_TS,
            TIMESTAMP_TOLERANCE,
        )
        .expect("valid headers");
        headers.insert(
            header::SIGNATURE,
            HeaderValue::from_bytes(b"v1,\xff").expect("opaque bytes are a header value"),
        );
        assert_eq!(
            verify_headers(
                &secret,
                &headers,
                SPEC_BODY.as_bytes(),
                SPEC_TS,
                TIMESTAMP_TOLERANCE
            ),
            Err(SignatureError::NotText {
                name: header::SIGNATURE
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn sign_then_verify_round_trips(
            id in "[!-~]{1,40}",
            body in proptest::collection::vec(any::<u8>(), 0..512),
            ts in 0i64..4_000_000_000,
        ) {
            let secret = spec_secret();
            let signature = sign(&secret, &id, ts, &body);
            prop_assert_eq!(
                verify(&secret, Some(&id), Some(&ts.to_string()), Some(&signature), &body, ts, TIMESTAMP_TOLERANCE),
                Ok(())
            );
        }

        #[test]
        fn any_flipped_body_byte_fails(
            body in proptest::collection::vec(any::<u8>(), 1..512),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let secret = spec_secret();
            let signature = sign(&secret, SPEC_ID, SPEC_TS, &body);
            let mut tampered = body.clone();
            let at = index.index(tampered.len());
            tampered[at] ^= flip;
            prop_assert_eq!(
                verify(&secret, Some(SPEC_ID), Some(&SPEC_TS.to_string()), Some(&signature), &tampered, SPEC_TS, TIMESTAMP_TOLERANCE),
                Err(SignatureError::Mismatch)
            );
        }
    }
}
