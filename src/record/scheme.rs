//! The signature schemes `stagegate record` verifies, one function each.
//!
//! Three families cover the vendors an ATS integration meets:
//!
//! - **Standard Webhooks** (`webhook-id`, `webhook-timestamp`, `webhook-signature`):
//!   delegated to [`crate::delivery::signature`], the implementation the rest of
//!   stagegate signs and verifies with.
//! - **HMAC-SHA256 of the raw body, hex, in a named header**: `sha256=<hex>` (GitHub
//!   `X-Hub-Signature-256`, Ashby `Ashby-Signature`), `sha256 <hex>` (Greenhouse
//!   `Signature`) or bare `<hex>` (Checkr `X-Checkr-Signature`, Onfido
//!   `X-SHA2-Signature`). The secret's UTF-8 bytes are the key.
//! - **Timestamped HMAC** `t=<unix>,v1=<hex>[,v1=<hex>…]` over `"{t}.{body}"` (Stripe
//!   `Stripe-Signature`, Persona `Persona-Signature`; several space-separated groups
//!   during a key rotation). The whole secret string, prefix included, is the key.
//!
//! Every comparison goes through [`Mac::verify_slice`] (constant time), and no error
//! message carries the secret.

use std::time::Duration;

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::delivery::signature::{self, SignatureError, WebhookSecret};

type HmacSha256 = Hmac<Sha256>;

/// Which family a scheme belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemeKind {
    /// Standard Webhooks: `webhook-signature: v1,<base64>` over `id.timestamp.body`.
    Standard,
    /// HMAC-SHA256 of the raw body as hex (`sha256=<hex>`, `sha256 <hex>` or `<hex>`).
    HmacSha256,
    /// `t=<unix>,v1=<hex>` over `t.body` (Stripe, Persona).
    Timestamped,
}

impl SchemeKind {
    /// The header a scheme reads unless `--signature-header` names another.
    pub fn default_header(self) -> &'static str {
        match self {
            SchemeKind::Standard => signature::header::SIGNATURE,
            SchemeKind::HmacSha256 => "x-hub-signature-256",
            SchemeKind::Timestamped => "stripe-signature",
        }
    }

    /// The scheme's name in captures and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemeKind::Standard => "standard",
            SchemeKind::HmacSha256 => "hmac-sha256",
            SchemeKind::Timestamped => "timestamped",
        }
    }
}

/// A configured verifier: the scheme, its header and the secret.
#[derive(Clone)]
pub struct Verifier {
    kind: SchemeKind,
    header: String,
    key: Key,
    tolerance: Duration,
}

#[derive(Clone)]
enum Key {
    Standard(WebhookSecret),
    Raw(HmacSha256),
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: Debug output ends up in logs and panics.
        f.debug_struct("Verifier")
            .field("kind", &self.kind)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Why a secret cannot key a scheme. Messages never carry the secret.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The Standard Webhooks secret is malformed.
    #[error("the --secret is not a Standard Webhooks secret")]
    Standard(#[source] signature::SecretError),
    /// The secret is empty.
    #[error("the --secret is empty")]
    Empty,
    /// The header name is not a valid HTTP header name.
    #[error("`{0}` is not an HTTP header name")]
    Header(String),
}

/// Why one delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// The Standard Webhooks check failed.
    #[error(transparent)]
    Standard(#[from] SignatureError),
    /// The signature header is absent or blank.
    #[error("missing `{0}` header")]
    Missing(String),
    /// The header is not text or not in the scheme's shape.
    #[error("`{header}` is not in the {scheme} shape")]
    Shape {
        /// The header.
        header: String,
        /// The scheme's name.
        scheme: &'static str,
    },
    /// The timestamp is further from now than the tolerance allows.
    #[error("timestamp is {distance_secs} s from now, beyond the {tolerance_secs} s tolerance")]
    Stale {
        /// How far from now.
        distance_secs: u64,
        /// The tolerance.
        tolerance_secs: u64,
    },
    /// Well-formed signatures were sent but none matches.
    #[error("no signature in `{0}` matches the body")]
    Mismatch(String),
}

impl Verifier {
    /// A verifier for `kind`, reading `header` (or the scheme's default), keyed by `secret`.
    pub fn new(
        kind: SchemeKind,
        header: Option<&str>,
        secret: &str,
        tolerance: Duration,
    ) -> Result<Self, VerifierError> {
        let header = header.unwrap_or(kind.default_header()).to_ascii_lowercase();
        axum::http::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| VerifierError::Header(header.clone()))?;
        let key = match kind {
            SchemeKind::Standard => Key::Standard(secret.parse().map_err(VerifierError::Standard)?),
            SchemeKind::HmacSha256 | SchemeKind::Timestamped => {
                if secret.is_empty() {
                    return Err(VerifierError::Empty);
                }
                Key::Raw(
                    <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
                        .map_err(|_| VerifierError::Empty)?,
                )
            }
        };
        Ok(Verifier {
            kind,
            header,
            key,
            tolerance,
        })
    }

    /// The scheme.
    pub fn kind(&self) -> SchemeKind {
        self.kind
    }

    /// Checks one delivery at `now_secs`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), SchemeError> {
        match &self.key {
            Key::Standard(secret) => {
                signature::verify_headers(secret, headers, body, now_secs, self.tolerance)
                    .map_err(SchemeError::from)
            }
            Key::Raw(mac) => {
                let value = headers
                    .get(self.header.as_str())
                    .map(|v| {
                        v.to_str().map_err(|_| SchemeError::Shape {
                            header: self.header.clone(),
                            scheme: self.kind.as_str(),
                        })
                    })
                    .transpose()?
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| SchemeError::Missing(self.header.clone()))?;
                match self.kind {
                    SchemeKind::Timestamped => {
                        verify_timestamped(mac, &self.header, value, body, now_secs, self.tolerance)
                    }
                    _ => verify_hex(mac, &self.header, value, body),
                }
            }
        }
    }
}

/// `sha256=<hex>`, `sha256 <hex>` or `<hex>`: HMAC-SHA256 of the body.
fn verify_hex(mac: &HmacSha256, header: &str, value: &str, body: &[u8]) -> Result<(), SchemeError> {
    let hex_part = value
        .strip_prefix("sha256=")
        .or_else(|| value.strip_prefix("sha256 "))
        .unwrap_or(value)
        .trim();
    let tag = hex::decode(hex_part).map_err(|_| SchemeError::Shape {
        header: header.to_owned(),
        scheme: SchemeKind::HmacSha256.as_str(),
    })?;
    let mut mac = mac.clone();
    mac.update(body);
    mac.verify_slice(&tag)
        .map_err(|_| SchemeError::Mismatch(header.to_owned()))
}

/// `t=<unix>,v1=<hex>…`, possibly several space-separated groups, over `"{t}.{body}"`.
fn verify_timestamped(
    mac: &HmacSha256,
    header: &str,
    value: &str,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), SchemeError> {
    let shape = || SchemeError::Shape {
        header: header.to_owned(),
        scheme: SchemeKind::Timestamped.as_str(),
    };
    let mut stale = None;
    let mut any = false;
    for group in value.split_whitespace() {
        let mut timestamp = None;
        let mut tags = Vec::new();
        for part in group.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| shape())?),
                Some(("v1", tag)) => tags.push(tag),
                _ => {} // v0 and future versions are not ours to judge
            }
        }
        let (Some(timestamp), false) = (timestamp, tags.is_empty()) else {
            continue;
        };
        any = true;
        let distance = now_secs.abs_diff(timestamp);
        if distance > tolerance.as_secs() {
            stale = Some(SchemeError::Stale {
                distance_secs: distance,
                tolerance_secs: tolerance.as_secs(),
            });
            continue;
        }
        let mut keyed = mac.clone();
        keyed.update(timestamp.to_string().as_bytes());
        keyed.update(b".");
        keyed.update(body);
        for tag in tags {
            if let Ok(tag) = hex::decode(tag)
                && keyed.clone().verify_slice(&tag).is_ok()
            {
                return Ok(());
            }
        }
    }
    if !any {
        return Err(shape());
    }
    Err(stale.unwrap_or_else(|| SchemeError::Mismatch(header.to_owned())))
}

/// Signs `body` the way a vendor of `kind` would (tests and the mock vendor in them).
pub fn sign(kind: SchemeKind, secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    match kind {
        SchemeKind::Standard => match secret.parse::<WebhookSecret>() {
            Ok(secret) => signature::sign(&secret, msg_id, timestamp, body),
            Err(_) => String::new(),
        },
        SchemeKind::HmacSha256 | SchemeKind::Timestamped => {
            let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()) else {
                return String::new();
            };
            if kind == SchemeKind::Timestamped {
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
            }
            mac.update(body);
            let tag = hex::encode(mac.finalize().into_bytes());
            if kind == SchemeKind::Timestamped {
                format!("t={timestamp},v1={tag}")
            } else {
                format!("sha256={tag}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    const TOLERANCE: Duration = Duration::from_secs(300);

    // GitHub's published test vector, "Validating webhook deliveries", section "Testing
    // the webhook payload validation":
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &str = "Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_published_vector_verifies_in_each_header_style() {
        // (header, value, vendor whose documentation uses that style)
        let hex = GITHUB_SIGNATURE.trim_start_matches("sha256=");
        let rows = [
            ("x-hub-signature-256", GITHUB_SIGNATURE.to_owned(), "GitHub"),
            ("ashby-signature", GITHUB_SIGNATURE.to_owned(), "Ashby"),
            ("signature", format!("sha256 {hex}"), "Greenhouse"),
            ("x-checkr-signature", hex.to_owned(), "Checkr"),
            ("x-sha2-signature", hex.to_owned(), "Onfido"),
        ];
        for (header, value, vendor) in rows {
            let verifier = Verifier::new(
                SchemeKind::HmacSha256,
                Some(header),
                GITHUB_SECRET,
                TOLERANCE,
            )
            .expect("a secret");
            verifier
                .verify(&headers(&[(header, &value)]), GITHUB_BODY.as_bytes(), 0)
                .unwrap_or_else(|e| panic!("{vendor} style: {e}"));
            assert_eq!(
                verifier.verify(&headers(&[(header, &value)]), b"Hello, World?", 0),
                Err(SchemeError::Mismatch(header.to_owned())),
                "{vendor} style refuses another body"
            );
        }
        assert_eq!(
            sign(
                SchemeKind::HmacSha256,
                GITHUB_SECRET,
                "",
                0,
                GITHUB_BODY.as_bytes()
            ),
            GITHUB_SIGNATURE
        );
    }

    // Stripe's scheme ("Verify signatures manually",
    // https://docs.stripe.com/webhooks#verify-manually): HMAC-SHA256 keyed by the whole
    // endpoint secret over "{t}.{raw body}", hex in `v1=`. The payload, the secret and the
    // timestamp are the fixtures of Stripe's own library tests,
    // https://github.com/stripe/stripe-python/blob/master/tests/test_webhook.py
    // (DUMMY_WEBHOOK_PAYLOAD, DUMMY_WEBHOOK_SECRET, `timestamp=12345`); that file
    // computes its expected header at run time, so the digest below was computed once
    // with Python's `hmac` module, independently of this code.
    const STRIPE_SECRET: &str = "whsec_test_secret";
    const STRIPE_BODY: &str = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\",\n  \"data\": { \"object\": { \"id\": \"rdr_123\", \"object\": \"terminal.reader\" } }\n}";
    const STRIPE_HEADER: &str =
        "t=12345,v1=07b1ede164afb7b5de91267ffa656f568c65d6e0783ce0ac55ee094643578eda";

    #[test]
    fn stripes_library_fixture_verifies_and_rotations_and_staleness_are_handled() {
        let verifier =
            Verifier::new(SchemeKind::Timestamped, None, STRIPE_SECRET, TOLERANCE).expect("secret");
        let ok = headers(&[("stripe-signature", STRIPE_HEADER)]);
        verifier
            .verify(&ok, STRIPE_BODY.as_bytes(), 12_345 + 10)
            .expect("the fixture verifies");
        assert_eq!(
            sign(
                SchemeKind::Timestamped,
                STRIPE_SECRET,
                "",
                12_345,
                STRIPE_BODY.as_bytes()
            ),
            STRIPE_HEADER
        );
        // A bad v1 beside the good one (Stripe's test_header_contains_valid_signature).
        let both = headers(&[(
            "stripe-signature",
            &format!("{STRIPE_HEADER},v1=bad_signature"),
        )]);
        verifier
            .verify(&both, STRIPE_BODY.as_bytes(), 12_345)
            .expect("one good v1 is enough");
        // Persona's rotation: two space-separated groups, the second valid.
        let rotated = headers(&[(
            "persona-signature",
            &format!("t=12345,v1={} {STRIPE_HEADER}", "00".repeat(32)),
        )]);
        let persona = Verifier::new(
            SchemeKind::Timestamped,
            Some("Persona-Signature"),
            STRIPE_SECRET,
            TOLERANCE,
        )
        .expect("secret");
        persona
            .verify(&rotated, STRIPE_BODY.as_bytes(), 12_345)
            .expect("the rotated group verifies");
        assert!(matches!(
            verifier.verify(&ok, STRIPE_BODY.as_bytes(), 12_345 + 301),
            Err(SchemeError::Stale {
                distance_secs: 301,
                ..
            })
        ));
        assert_eq!(
            verifier.verify(&ok, b"{}", 12_345),
            Err(SchemeError::Mismatch("stripe-signature".into()))
        );
        assert!(matches!(
            verifier.verify(&headers(&[("stripe-signature", "v0=abc")]), b"{}", 0),
            Err(SchemeError::Shape { .. })
        ));
        assert_eq!(
            verifier.verify(&HeaderMap::new(), b"{}", 0),
            Err(SchemeError::Missing("stripe-signature".into()))
        );
    }

    #[test]
    fn standard_webhooks_reuse_the_delivery_implementation_and_its_vector() {
        // The Standard Webhooks specification's vector, as pinned in delivery::signature.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let verifier =
            Verifier::new(SchemeKind::Standard, None, secret, TOLERANCE).expect("secret");
        let map = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        verifier
            .verify(&map, br#"{"test": 2432232314}"#, 1_614_265_330)
            .expect("the specification's vector");
        assert!(verifier.verify(&map, b"{}", 1_614_265_330).is_err());
        assert!(matches!(
            Verifier::new(SchemeKind::Standard, None, "not-whsec", TOLERANCE),
            Err(VerifierError::Standard(_))
        ));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let verifier =
            Verifier::new(SchemeKind::HmacSha256, None, GITHUB_SECRET, TOLERANCE).expect("secret");
        assert!(!format!("{verifier:?}").contains("Secret to Everybody"));
    }
}
