//! Delivery: how webhooks reach the integration under test.
//!
//! Two halves that belong together because both sides of every exchange must agree
//! on them byte for byte: [`signature`] is the Standard Webhooks scheme (the `whsec_`
//! secret, `sign`, `verify`), used by the sender to sign and by the mocks and the
//! reference relay to verify; [`sender`] delivers a plan of events with retries,
//! seeded backoff, duplicates, re-emits, races, forgeries and reordering, and records
//! every attempt in the observation log for the judge.

pub mod sender;
pub mod signature;

pub use sender::{
    Attempt, AttemptError, Delivery, DeliveryOutcome, Order, Perturbation, RetryPolicy, Sender,
    backoff_schedule,
};
pub use signature::{
    SecretError, SignatureError, TIMESTAMP_TOLERANCE, WebhookSecret, sign, verify, verify_headers,
};
