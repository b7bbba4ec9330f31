//! The webhook sender: delivers planned events to the integration, signed, retried
//! with backoff, and perturbed the ways real providers misbehave.
//!
//! A [`Delivery`] is one planned event; a [`Perturbation`] says how to mistreat it
//! (duplicate it, re-emit it under a new id, race copies, forge it, hold it back);
//! an [`Order`] says how a plan of deliveries is sequenced. Every attempt and every
//! delivery's summary go to the [`ObservationLog`], so the judge sees exactly what the
//! integration was sent and what it answered.
//!
//! Everything random comes from the run's seed through ChaCha8, derived per message
//! (not drawn from one shared generator), so a schedule does not depend on which
//! concurrent delivery happened to ask first and a failing run replays exactly.
//! Everything is bounded: attempts by [`RetryPolicy::max_attempts`] (at most
//! [`MAX_ATTEMPTS_LIMIT`]), copies by [`MAX_COPIES`], each attempt by the ack timeout
//! and each wait by [`RetryPolicy::max_delay`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header::{ACCEPT, CONTENT_TYPE, HeaderName, RETRY_AFTER};
use axum::http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use url::Url;

use super::signature::{WebhookSecret, header, sign, unix_now};
use crate::http::{PooledClient, pooled_client};
use crate::manifest::policy::{Retry, RetryStrategy};
use crate::observe::{Actor, Entry, ObservationLog, json};

/// The most attempts one message gets, whatever the policy asks.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// The most extra copies a duplicating perturbation sends.
pub const MAX_COPIES: u32 = 32;

/// How old a [`Perturbation::StaleTimestamp`] delivery's timestamp is.
pub const STALE_BY: Duration = Duration::from_secs(10 * 60);

/// When and how often a message is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (the hiring policy's `maxAttempts`).
    pub max_attempts: u32,
    /// The wait before the first retry; later waits double.
    pub base_delay: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_delay: Duration,
    /// How long an attempt waits for a 2xx before it counts as failed (the ack SLA).
    pub ack_timeout: Duration,
    /// The share of each wait drawn at random, from 0.0 (none) to 1.0 (full jitter).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            ack_timeout: Duration::from_secs(1),
            jitter: 0.25,
        }
    }
}

impl RetryPolicy {
    /// The defaults, with the attempts and strategy of a hiring policy's `retry`.
    pub fn from_policy(retry: &Retry) -> Self {
        let default = RetryPolicy::default();
        RetryPolicy {
            max_attempts: retry.max_attempts,
            // A fixed delay is exponential backoff capped at its first step.
            max_delay: match retry.strategy {
                RetryStrategy::ExponentialBackoff => default.max_delay,
                RetryStrategy::Fixed => default.base_delay,
            },
            ..default
        }
    }

    /// Attempts per message, kept between 1 and [`MAX_ATTEMPTS_LIMIT`].
    fn attempts(&self) -> u32 {
        self.max_attempts.clamp(1, MAX_ATTEMPTS_LIMIT)
    }

    /// The jitter as a usable fraction (NaN counts as none).
    fn jitter_fraction(&self) -> f64 {
        if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        }
    }
}

/// The waits between one message's attempts: `max_attempts - 1` of them.
///
/// Wait `k` is `min(base_delay * 2^k, max_delay)` shortened by a random share of at
/// most `jitter`, so it never exceeds `max_delay`, never falls below
/// `(1 - jitter)` of its nominal value, and the same seed gives the same waits.
pub fn backoff_schedule(policy: &RetryPolicy, seed: u64) -> Vec<Duration> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let jitter = policy.jitter_fraction();
    (0..policy.attempts() - 1)
        .map(|k| {
            let nominal = nominal_delay(policy, k);
            let share: f64 = rng.random_range(0.0..1.0);
            let scaled = nominal.as_secs_f64() * (1.0 - jitter * share);
            // `try_from` rather than `mul_f64`, which panics where f64 rounding
            // pushes a huge `max_delay` past `Duration::MAX`.
            Duration::try_from_secs_f64(scaled)
                .unwrap_or(nominal)
                .min(nominal)
        })
        .collect()
}

/// `min(base_delay * 2^k, max_delay)`, saturating.
fn nominal_delay(policy: &RetryPolicy, k: u32) -> Duration {
    let factor = 1u32.checked_shl(k).unwrap_or(u32::MAX);
    policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay)
}

/// One planned webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `webhook-id` of the message (kept by retries and exact duplicates).
    pub webhook_id: String,
    /// The body, sent byte for byte.
    pub body: Vec<u8>,
    /// The manifest contract the event belongs to.
    pub contract: String,
    /// The sandbox candidate concerned.
    pub candidate: Option<String>,
    /// The flow's correlation id.
    pub correlation_id: Option<String>,
    /// The event's id.
    pub event_id: Option<String>,
    /// The event's idempotency key.
    pub idempotency_key: Option<String>,
}

impl Delivery {
    /// A delivery of a JSON body with no candidate or event metadata yet.
    pub fn json(webhook_id: impl Into<String>, contract: impl Into<String>, body: &Value) -> Self {
        Delivery {
            webhook_id: webhook_id.into(),
            body: body.to_string().into_bytes(),
            contract: contract.into(),
            candidate: None,
            correlation_id: None,
            event_id: None,
            idempotency_key: None,
        }
    }
}

/// How a delivery is mistreated on its way to the integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Perturbation {
    /// Delivered as planned.
    #[default]
    None,
    /// Once acknowledged, the same request (id, timestamp, signature, bytes) is sent
    /// `copies` more times, one after another.
    ExactDuplicate {
        /// Extra copies, at most [`MAX_COPIES`].
        copies: u32,
    },
    /// Once acknowledged, the same body is sent again under a new `webhook-id`.
    ReEmit,
    /// The message and `copies` more with the same `webhook-id` are sent at once.
    ConcurrentDuplicates {
        /// Extra copies, at most [`MAX_COPIES`].
        copies: u32,
    },
    /// No `webhook-signature` header; sent once.
    Unsigned,
    /// Signed with a secret the integration does not hold; sent once.
    WrongSignature,
    /// Correctly signed with a timestamp [`STALE_BY`] in the past; sent once.
    StaleTimestamp,
    /// Held back this long before the first attempt.
    Delay(Duration),
}

impl Perturbation {
    /// The name the observation log records.
    pub fn name(&self) -> &'static str {
        match self {
            Perturbation::None => "none",
            Perturbation::ExactDuplicate { .. } => "exact_duplicate",
            Perturbation::ReEmit => "re_emit",
            Perturbation::ConcurrentDuplicates { .. } => "concurrent_duplicates",
            Perturbation::Unsigned => "unsigned",
            Perturbation::WrongSignature => "wrong_signature",
            Perturbation::StaleTimestamp => "stale_timestamp",
            Perturbation::Delay(_) => "delay",
        }
    }

    /// Whether the integration is expected to refuse it (so it is sent once, not retried).
    pub fn is_forged(&self) -> bool {
        matches!(
            self,
            Perturbation::Unsigned | Perturbation::WrongSignature | Perturbation::StaleTimestamp
        )
    }
}

/// How a plan of deliveries is sequenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// One after another, as planned.
    InOrder,
    /// One after another, the last planned first.
    Reversed,
    /// One after another, in an order drawn from the seed.
    Shuffled,
    /// Up to `max_in_flight` deliveries at once, started in plan order.
    Concurrent {
        /// The most deliveries in flight (0 counts as 1).
        max_in_flight: usize,
    },
}

/// Why an attempt got no HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// Nothing came back within the ack timeout.
    #[error("no answer within the {} ms ack timeout", after.as_millis())]
    Timeout {
        /// The ack timeout.
        after: Duration,
    },
    /// The connection could not be made.
    #[error("cannot connect: {message}")]
    Connect {
        /// The transport's explanation.
        message: String,
    },
    /// The request could not be built (an id that is not a header value, say).
    #[error("cannot build the request: {message}")]
    Request {
        /// The client's explanation.
        message: String,
    },
    /// The exchange failed after connecting.
    #[error("request failed: {message}")]
    Transport {
        /// The transport's explanation.
        message: String,
    },
}

/// One HTTP request sent to the integration.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The `webhook-id` sent.
    pub webhook_id: String,
    /// 0 for the planned message, 1.. for its duplicates or re-emit.
    pub copy: u32,
    /// 1-based attempt of this message.
    pub attempt: u32,
    /// The `webhook-timestamp` sent.
    pub timestamp: i64,
    /// Whether a `webhook-signature` header was sent.
    pub signed: bool,
    /// The status answered, or why there was none.
    pub result: Result<u16, AttemptError>,
    /// From sending to the answer (or to giving up).
    pub latency: Duration,
}

impl Attempt {
    /// The status answered, if any.
    pub fn status(&self) -> Option<u16> {
        self.result.as_ref().ok().copied()
    }

    /// Whether it was answered with a 2xx.
    pub fn acked(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOutcome {
    /// The planned `webhook-id`.
    pub webhook_id: String,
    /// How it was perturbed.
    pub perturbation: Perturbation,
    /// Every request sent, in the order they were sent (concurrent copies grouped by copy).
    pub attempts: Vec<Attempt>,
    /// Whether every message sent for it ended with a 2xx.
    pub acked: bool,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Acknowledged: done.
    Acked,
    /// No acknowledgement yet: try again if attempts remain.
    Retry,
    /// Refused for good: retrying cannot help.
    Final,
}

/// The sender's reading of an attempt's result.
fn next_step(result: &Result<u16, AttemptError>) -> Next {
    match result {
        Ok(200..=299) => Next::Acked,
        Ok(408 | 429) => Next::Retry,
        Ok(400..=499) => Next::Final,
        Ok(_) => Next::Retry,
        Err(AttemptError::Request { .. }) => Next::Final,
        Err(_) => Next::Retry,
    }
}

/// A `Retry-After` in seconds; HTTP dates are not honoured (the backoff applies).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The wait before a retry: the backoff, or longer if the server asked, never past `max_delay`.
fn retry_wait(backoff: Duration, retry_after: Option<Duration>, max_delay: Duration) -> Duration {
    match retry_after {
        Some(asked) => backoff.max(asked.min(max_delay)),
        None => backoff,
    }
}

/// A u64 seed for one purpose and message, derived from the run's seed.
fn derive_seed(seed: u64, purpose: &str, webhook_id: &str, copy: u32) -> u64 {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(purpose.as_bytes())
        .chain_update([0])
        .chain_update(webhook_id.as_bytes())
        .chain_update([0])
        .chain_update(copy.to_le_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The new `webhook-id` a re-emit of `webhook_id` gets: random-looking, reproducible.
fn re_emit_id(seed: u64, webhook_id: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "re-emit", webhook_id, 0));
    let tail: String = (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("msg_{tail}")
}

/// The sequence in which a one-after-another order sends a plan of `len`.
fn sequence(order: Order, len: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..len).collect();
    match order {
        Order::InOrder | Order::Concurrent { .. } => {}
        Order::Reversed => indices.reverse(),
        Order::Shuffled => {
            indices.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
                seed, "order", "", 0,
            )));
        }
    }
    indices
}

/// `head` and the causes of `err`, `err` first, on one line, as transports nest the
/// useful part.
fn error_chain(head: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = head.to_owned();
    let mut source = Some(err);
    for _ in 0..8 {
        let Some(cause) = source else { break };
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// `webhook-id`, `webhook-timestamp` and `webhook-signature` as header names.
const ID: HeaderName = HeaderName::from_static(header::ID);
const TIMESTAMP: HeaderName = HeaderName::from_static(header::TIMESTAMP);
const SIGNATURE: HeaderName = HeaderName::from_static(header::SIGNATURE);

/// Where a delivery goes: the URL as given (the log records its path), and the URI
/// the client sends to, made from it once.
#[derive(Clone)]
struct Target {
    url: Url,
    /// Why the URL cannot be a URI, when it cannot (every attempt then fails).
    uri: Result<Uri, String>,
}

impl Target {
    fn new(url: &Url) -> Self {
        Target {
            url: url.clone(),
            uri: Uri::try_from(url.as_str()).map_err(|err| error_chain("builder error", &err)),
        }
    }
}

/// The POST of one message, with the headers reqwest's default client sent: the
/// content type, the three webhook headers, and `accept: */*` after them.
fn request(
    target: &Target,
    delivery: &Delivery,
    id: &str,
    timestamp: i64,
    signature: Option<&str>,
) -> Result<Request<Full<Bytes>>, AttemptError> {
    let built = |message: String| AttemptError::Request { message };
    let uri = target.uri.clone().map_err(built)?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(ID, id)
        .header(TIMESTAMP, timestamp);
    if let Some(signature) = signature {
        request = request.header(SIGNATURE, signature);
    }
    request
        .header(ACCEPT, HeaderValue::from_static("*/*"))
        .body(Full::new(Bytes::copy_from_slice(&delivery.body)))
        .map_err(|err| built(error_chain("builder error", &err)))
}

/// How a request that got no answer failed, in the words reqwest used: the
/// `error sending request for url (..)` line and its causes, a timeout wherever in
/// the chain it shows, a connection that could not be made, or any other failure.
fn transport_error(
    err: &hyper_util::client::legacy::Error,
    url: &Url,
    ack_timeout: Duration,
) -> AttemptError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        let hyper_timeout = current
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        let io_timeout = current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if hyper_timeout || io_timeout {
            return AttemptError::Timeout { after: ack_timeout };
        }
        cause = current.source();
    }
    let message = error_chain(&format!("error sending request for url ({url})"), err);
    if err.is_connect() {
        AttemptError::Connect { message }
    } else {
        AttemptError::Transport { message }
    }
}

/// How one message is signed.
#[derive(Clone)]
enum Signing {
    /// With the integration's secret.
    Proper,
    /// Not at all.
    Unsigned,
    /// With a secret the integration does not hold.
    Foreign(WebhookSecret),
    /// Properly, over a timestamp this far in the past.
    Stale(Duration),
}

/// One message of a delivery: an id, a copy number, and how its first attempt is made.
#[derive(Clone)]
struct Message {
    id: String,
    copy: u32,
    /// A timestamp the first attempt reuses, so an exact duplicate is byte-identical.
    replay_timestamp: Option<i64>,
    signing: Signing,
    /// Forged messages are sent once, whatever the answer.
    retry: bool,
}

/// What a message's attempts came to.
struct Sent {
    attempts: Vec<Attempt>,
    acked: bool,
}

struct Inner {
    client: PooledClient,
    secret: WebhookSecret,
    policy: RetryPolicy,
    seed: u64,
    log: ObservationLog,
}

/// Delivers webhook events to one integration; cheap to clone (shared inside).
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("policy", &self.inner.policy)
            .field("seed", &self.inner.seed)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender signing with `secret`, retrying per `policy`, randomising from `seed`,
    /// over its own pooled keep-alive connections (hyper's client: reqwest's layers
    /// parsed each request's URL several times over and ran redirect and retry
    /// policies a webhook never uses).
    pub fn new(secret: WebhookSecret, policy: RetryPolicy, seed: u64, log: ObservationLog) -> Self {
        Sender {
            inner: Arc::new(Inner {
                client: pooled_client(),
                secret,
                policy,
                seed,
                log,
            }),
        }
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// Delivers one event to `url`, perturbed, and logs every attempt and a summary.
    pub async fn deliver(
        &self,
        url: &Url,
        delivery: &Delivery,
        perturbation: &Perturbation,
    ) -> DeliveryOutcome {
        let started = Instant::now();
        // The URI the client needs, made once for every attempt of every copy.
        let target = &Target::new(url);
        if let Perturbation::Delay(hold) = perturbation {
            // The perturbation itself: the event reaches the integration late.
            tokio::time::sleep(*hold).await;
        }
        let original = Message {
            id: delivery.webhook_id.clone(),
            copy: 0,
            replay_timestamp: None,
            signing: Signing::Proper,
            retry: true,
        };
        let mut attempts = Vec::new();
        let acked = match *perturbation {
            Perturbation::None | Perturbation::Delay(_) => {
                self.collect(target, delivery, perturbation, original, &mut attempts)
                    .await
            }
            Perturbation::Unsigned
            | Perturbation::WrongSignature
            | Perturbation::StaleTimestamp => {
                let signing = match perturbation {
                    Perturbation::Unsigned => Signing::Unsigned,
                    Perturbation::WrongSignature => {
                        let seed = derive_seed(self.inner.seed, "wrong-secret", &original.id, 0);
                        Signing::Foreign(WebhookSecret::generate(&mut ChaCha8Rng::seed_from_u64(
                            seed,
                        )))
                    }
                    _ => Signing::Stale(STALE_BY),
                };
                let forged = Message {
                    signing,
                    retry: false,
                    ..original
                };
                self.collect(target, delivery, perturbation, forged, &mut attempts)
                    .await
            }
            Perturbation::ExactDuplicate { copies } => {
                let mut acked = self
                    .collect(
                        target,
                        delivery,
                        perturbation,
                        original.clone(),
                        &mut attempts,
                    )
                    .await;
                // Before the original is acknowledged a duplicate is just a retry.
                if acked {
                    let replay_timestamp = attempts.last().map(|a| a.timestamp);
                    for copy in 1..=copies.min(MAX_COPIES) {
                        let duplicate = Message {
                            copy,
                            replay_timestamp,
                            ..original.clone()
                        };
                        acked &= self
                            .collect(target, delivery, perturbation, duplicate, &mut attempts)
                            .await;
                    }
                }
                acked
            }
            Perturbation::ReEmit => {
                let mut acked = self
                    .collect(
                        target,
                        delivery,
                        perturbation,
                        original.clone(),
                        &mut attempts,
                    )
                    .await;
                if acked {
                    let re_emitted = Message {
                        id: re_emit_id(self.inner.seed, &original.id),
                        copy: 1,
                        ..original
                    };
                    acked &= self
                        .collect(target, delivery, perturbation, re_emitted, &mut attempts)
                        .await;
                }
                acked
            }
            Perturbation::ConcurrentDuplicates { copies } => {
                let messages = (0..=copies.min(MAX_COPIES)).map(|copy| Message {
                    copy,
                    ..original.clone()
                });
                self.race(target, delivery, perturbation, messages, &mut attempts)
                    .await
            }
        };
        self.log_summary(
            target,
            delivery,
            perturbation,
            &attempts,
            acked,
            started.elapsed(),
        );
        DeliveryOutcome {
            webhook_id: delivery.webhook_id.clone(),
            perturbation: *perturbation,
            attempts,
            acked,
        }
    }

    /// Delivers a plan in `order` and returns the outcomes in plan order.
    pub async fn deliver_all(
        &self,
        url: &Url,
        plan: Vec<(Delivery, Perturbation)>,
        order: Order,
    ) -> Vec<DeliveryOutcome> {
        let Order::Concurrent { max_in_flight } = order else {
            let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; plan.len()];
            for index in sequence(order, plan.len(), self.inner.seed) {
                let (delivery, perturbation) = &plan[index];
                outcomes[index] = Some(self.deliver(url, delivery, perturbation).await);
            }
            return fill_unsent(outcomes, &plan);
        };
        let max_in_flight = max_in_flight.max(1);
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; plan.len()];
        let mut in_flight = JoinSet::new();
        for (index, (delivery, perturbation)) in plan.iter().enumerate() {
            if in_flight.len() >= max_in_flight {
                store(&mut outcomes, in_flight.join_next().await);
            }
            let (sender, url, delivery, perturbation) =
                (self.clone(), url.clone(), delivery.clone(), *perturbation);
            in_flight.spawn(async move {
                (index, sender.deliver(&url, &delivery, &perturbation).await)
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            store(&mut outcomes, Some(joined));
        }
        fill_unsent(outcomes, &plan)
    }

    /// Sends one message with its retries, appending its attempts; true if acknowledged.
    async fn collect(
        &self,
        target: &Target,
        delivery: &Delivery,
        perturbation: &Perturbation,
        message: Message,
        attempts: &mut Vec<Attempt>,
    ) -> bool {
        let sent = self
            .send_message(target, delivery, perturbation, message)
            .await;
        attempts.extend(sent.attempts);
        sent.acked
    }

    /// Sends several messages at once; true if every one was acknowledged.
    async fn race(
        &self,
        target: &Target,
        delivery: &Delivery,
        perturbation: &Perturbation,
        messages: impl Iterator<Item = Message>,
        attempts: &mut Vec<Attempt>,
    ) -> bool {
        let mut racing = JoinSet::new();
        for message in messages {
            let (sender, target, delivery, perturbation) = (
                self.clone(),
                target.clone(),
                delivery.clone(),
                *perturbation,
            );
            racing.spawn(async move {
                sender
                    .send_message(&target, &delivery, &perturbation, message)
                    .await
            });
        }
        let mut all_acked = true;
        let mut finished = Vec::new();
        while let Some(joined) = racing.join_next().await {
            match joined {
                Ok(sent) => {
                    all_acked &= sent.acked;
                    finished.extend(sent.attempts);
                }
                Err(err) => {
                    all_acked = false;
                    resume_if_panicked(err);
                }
            }
        }
        finished.sort_by_key(|a| (a.copy, a.attempt));
        attempts.extend(finished);
        all_acked
    }

    /// One message: attempts until acknowledged, refused for good, or out of attempts.
    async fn send_message(
        &self,
        target: &Target,
        delivery: &Delivery,
        perturbation: &Perturbation,
        message: Message,
    ) -> Sent {
        let policy = &self.inner.policy;
        let max_attempts = if message.retry { policy.attempts() } else { 1 };
        // Drawn at the first retry: most messages are acknowledged at once.
        let mut schedule = None;
        let mut attempts = Vec::new();
        for number in 1..=max_attempts {
            let timestamp = match (number, message.replay_timestamp) {
                (1, Some(replayed)) => replayed,
                _ => unix_now(),
            };
            let (attempt, retry_after) = self
                .attempt(target, delivery, &message, number, timestamp)
                .await;
            self.log_attempt(target, delivery, perturbation, &attempt);
            let next = next_step(&attempt.result);
            attempts.push(attempt);
            match next {
                Next::Acked => {
                    return Sent {
                        attempts,
                        acked: true,
                    };
                }
                Next::Final => break,
                Next::Retry => {}
            }
            if number == max_attempts {
                break;
            }
            let backoff = schedule
                .get_or_insert_with(|| {
                    backoff_schedule(
                        policy,
                        derive_seed(self.inner.seed, "backoff", &message.id, message.copy),
                    )
                })
                .get(number as usize - 1)
                .copied()
                .unwrap_or(policy.max_delay);
            // The retry's wait is the point of backoff, not a synchronisation.
            tokio::time::sleep(retry_wait(backoff, retry_after, policy.max_delay)).await;
        }
        Sent {
            attempts,
            acked: false,
        }
    }

    /// One HTTP request; also returns the `Retry-After` the answer asked for.
    async fn attempt(
        &self,
        target: &Target,
        delivery: &Delivery,
        message: &Message,
        number: u32,
        timestamp: i64,
    ) -> (Attempt, Option<Duration>) {
        let (timestamp, signature) = match &message.signing {
            Signing::Proper => (
                timestamp,
                Some(sign(
                    &self.inner.secret,
                    &message.id,
                    timestamp,
                    &delivery.body,
                )),
            ),
            Signing::Unsigned => (timestamp, None),
            Signing::Foreign(secret) => (
                timestamp,
                Some(sign(secret, &message.id, timestamp, &delivery.body)),
            ),
            Signing::Stale(by) => {
                let stale = timestamp.saturating_sub(i64::try_from(by.as_secs()).unwrap_or(0));
                (
                    stale,
                    Some(sign(&self.inner.secret, &message.id, stale, &delivery.body)),
                )
            }
        };
        let ack_timeout = self.inner.policy.ack_timeout;
        let started = Instant::now();
        let (result, retry_after) = match request(
            target,
            delivery,
            &message.id,
            timestamp,
            signature.as_deref(),
        ) {
            Err(error) => (Err(error), None),
            Ok(request) => {
                let answer =
                    tokio::time::timeout(ack_timeout, self.inner.client.request(request)).await;
                match answer {
                    Err(_elapsed) => (Err(AttemptError::Timeout { after: ack_timeout }), None),
                    Ok(Ok(response)) => {
                        let retry_after = response
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_retry_after);
                        // The body is not read, as before: dropping it drains what
                        // already arrived, and the connection goes back to the pool.
                        (Ok(response.status().as_u16()), retry_after)
                    }
                    Ok(Err(err)) => (Err(transport_error(&err, &target.url, ack_timeout)), None),
                }
            }
        };
        let latency = started.elapsed();
        let attempt = Attempt {
            webhook_id: message.id.clone(),
            copy: message.copy,
            attempt: number,
            timestamp,
            signed: signature.is_some(),
            result,
            latency,
        };
        (attempt, retry_after)
    }

    /// The `webhook.attempt` record of one request.
    fn log_attempt(
        &self,
        target: &Target,
        delivery: &Delivery,
        perturbation: &Perturbation,
        attempt: &Attempt,
    ) {
        tracing::debug!(
            webhook_id = %attempt.webhook_id,
            copy = attempt.copy,
            attempt = attempt.attempt,
            status = ?attempt.status(),
            "webhook attempt"
        );
        let entry = Entry {
            status: attempt.status(),
            latency_ms: Some(attempt.latency.as_secs_f64() * 1000.0),
            ..entry(delivery)
        };
        let detail = attempt_detail(target, delivery, perturbation, attempt);
        self.inner
            .log
            .append_object(Actor::Sender, "webhook.attempt", entry, detail);
    }

    /// The `webhook.delivery` record summing up one delivery.
    fn log_summary(
        &self,
        target: &Target,
        delivery: &Delivery,
        perturbation: &Perturbation,
        attempts: &[Attempt],
        acked: bool,
        took: Duration,
    ) {
        let entry = Entry {
            status: attempts.last().and_then(Attempt::status),
            latency_ms: Some(took.as_secs_f64() * 1000.0),
            ..entry(delivery)
        };
        let detail = summary_detail(target, delivery, perturbation, attempts, acked);
        self.inner
            .log
            .append_object(Actor::Sender, "webhook.delivery", entry, detail);
    }
}

/// A log entry carrying the delivery's candidate, correlation, event and key.
fn entry(delivery: &Delivery) -> Entry {
    Entry {
        candidate: delivery.candidate.clone(),
        correlation_id: delivery.correlation_id.clone(),
        event_id: delivery.event_id.clone(),
        idempotency_key: delivery.idempotency_key.clone(),
        ..Entry::default()
    }
}

/// A `webhook.attempt` record's detail, its fields in the sorted order a `Value` map
/// writes them (the record is the same as before the sender wrote it by hand).
fn attempt_detail(
    target: &Target,
    delivery: &Delivery,
    perturbation: &Perturbation,
    attempt: &Attempt,
) -> json::Object {
    let mut detail = json::Object::with_capacity(256);
    detail
        .u64("attempt", attempt.attempt.into())
        .str("contract", &delivery.contract)
        .u64("copy", attempt.copy.into());
    if let Err(err) = &attempt.result {
        detail.str("error", &err.to_string());
    }
    detail
        .str("perturbation", perturbation.name())
        .bool("signed", attempt.signed)
        .i64("timestamp", attempt.timestamp)
        .str("url_path", target.url.path())
        .str("webhook_id", &attempt.webhook_id);
    detail
}

/// A `webhook.delivery` record's detail: every `webhook-id` sent, first use first.
fn summary_detail(
    target: &Target,
    delivery: &Delivery,
    perturbation: &Perturbation,
    attempts: &[Attempt],
    acked: bool,
) -> json::Object {
    let mut webhook_ids: Vec<&str> = Vec::new();
    for attempt in attempts {
        if !webhook_ids.contains(&attempt.webhook_id.as_str()) {
            webhook_ids.push(&attempt.webhook_id);
        }
    }
    let mut detail = json::Object::with_capacity(256);
    detail
        .bool("acked", acked)
        .u64(
            "attempts",
            u64::try_from(attempts.len()).unwrap_or(u64::MAX),
        )
        .str("contract", &delivery.contract)
        .str("perturbation", perturbation.name())
        .str("url_path", target.url.path())
        .str("webhook_id", &delivery.webhook_id)
        .strs("webhook_ids", webhook_ids);
    detail
}

/// Files a finished concurrent delivery under its plan index.
fn store(
    outcomes: &mut [Option<DeliveryOutcome>],
    joined: Option<Result<(usize, DeliveryOutcome), tokio::task::JoinError>>,
) {
    match joined {
        Some(Ok((index, outcome))) => {
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = Some(outcome);
            }
        }
        Some(Err(err)) => resume_if_panicked(err),
        None => {}
    }
}

/// A task that panicked is a bug in the sender: let it surface where it is awaited.
fn resume_if_panicked(err: tokio::task::JoinError) {
    if err.is_panic() {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Outcomes in plan order; a delivery whose task was cancelled shows no attempts.
fn fill_unsent(
    outcomes: Vec<Option<DeliveryOutcome>>,
    plan: &[(Delivery, Perturbation)],
) -> Vec<DeliveryOutcome> {
    outcomes
        .into_iter()
        .zip(plan)
        .map(|(outcome, (delivery, perturbation))| {
            outcome.unwrap_or_else(|| DeliveryOutcome {
                webhook_id: delivery.webhook_id.clone(),
                perturbation: *perturbation,
                attempts: Vec::new(),
                acked: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, json};

    fn policy(max_attempts: u32, base_ms: u64, max_ms: u64, jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms),
            ack_timeout: Duration::from_secs(1),
            jitter,
        }
    }

    /// A reqwest error and its causes, as the sender wrote them when it used reqwest.
    fn reqwest_words(err: &reqwest::Error) -> String {
        use std::error::Error as _;
        match err.source() {
            Some(cause) => error_chain(&err.to_string(), cause),
            None => err.to_string(),
        }
    }

    #[tokio::test]
    async fn failures_read_as_they_did_with_reqwest() {
        // A port that was free a moment ago: nothing listens there now.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback binds");
        let addr = listener.local_addr().expect("bound address");
        drop(listener);
        let url = Url::parse(&format!("http://{addr}/webhooks/vendor")).expect("a url");
        let target = Target::new(&url);
        let delivery = Delivery::json("msg_1", "contract", &json!({"a": 1}));
        let reqwest = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain http client");
        let ack_timeout = Duration::from_secs(5);

        let sent = request(&target, &delivery, "msg_1", 1, Some("v1,x")).expect("builds");
        let refused = pooled_client()
            .request(sent)
            .await
            .expect_err("nothing listens");
        let before = reqwest
            .post(url.clone())
            .send()
            .await
            .expect_err("nothing listens");
        assert!(before.is_connect(), "{before:?}");
        assert_eq!(
            transport_error(&refused, &url, ack_timeout),
            AttemptError::Connect {
                message: reqwest_words(&before)
            }
        );

        let unsendable =
            request(&target, &delivery, "msg\n1", 1, None).expect_err("an id with a newline");
        let before = reqwest
            .post(url.clone())
            .header(header::ID, "msg\n1")
            .send()
            .await
            .expect_err("an id with a newline");
        assert!(before.is_builder(), "{before:?}");
        assert_eq!(
            unsendable,
            AttemptError::Request {
                message: reqwest_words(&before)
            }
        );
    }

    #[test]
    fn details_are_the_value_maps_the_log_wrote_before() {
        let url = Url::parse("http://127.0.0.1:9/webhooks/vendor?x=1").expect("a url");
        let target = Target::new(&url);
        let delivery = Delivery::json("msg_1", "identity.\"verified\"", &json!({}));
        let attempt = |webhook_id: &str, copy, result| Attempt {
            webhook_id: webhook_id.into(),
            copy,
            attempt: 2,
            timestamp: -3,
            signed: copy == 0,
            result,
            latency: Duration::from_millis(7),
        };
        let refused = Err(AttemptError::Connect {
            message: "tcp connect error: \"refused\"\n".into(),
        });
        let attempts = [
            attempt("msg_1", 0, Ok(503)),
            attempt("msg_1", 0, refused),
            attempt("msg_ü", 1, Ok(200)),
        ];
        // The details as the sender built them as `Value`s before.
        let attempt_value = |a: &Attempt| {
            let mut detail = Map::new();
            detail.insert("webhook_id".into(), json!(a.webhook_id));
            detail.insert("copy".into(), json!(a.copy));
            detail.insert("attempt".into(), json!(a.attempt));
            detail.insert("url_path".into(), json!(url.path()));
            detail.insert("perturbation".into(), json!("re_emit"));
            detail.insert("signed".into(), json!(a.signed));
            detail.insert("timestamp".into(), json!(a.timestamp));
            detail.insert("contract".into(), json!(delivery.contract));
            if let Err(err) = &a.result {
                detail.insert("error".into(), json!(err.to_string()));
            }
            Value::Object(detail)
        };
        for a in &attempts {
            let written = attempt_detail(&target, &delivery, &Perturbation::ReEmit, a);
            let before = serde_json::to_vec(&attempt_value(a)).expect("serialises");
            assert_eq!(written.to_json(), before, "{a:?}");
        }
        for (sent, acked) in [(&attempts[..], true), (&attempts[..0], false)] {
            let written = summary_detail(&target, &delivery, &Perturbation::ReEmit, sent, acked);
            let mut ids: Vec<&str> = sent.iter().map(|a| a.webhook_id.as_str()).collect();
            ids.dedup();
            let before = json!({
                "webhook_id": delivery.webhook_id,
                "webhook_ids": ids,
                "url_path": url.path(),
                "perturbation": "re_emit",
                "contract": delivery.contract,
                "acked": acked,
                "attempts": sent.len(),
            });
            let before = serde_json::to_vec(&before).expect("serialises");
            assert_eq!(written.to_json(), before, "{} attempts", sent.len());
        }
    }

    #[test]
    fn without_jitter_the_schedule_doubles_up_to_the_cap() {
        let schedule = backoff_schedule(&policy(8, 100, 1000, 0.0), 1);
        let ms: Vec<u128> = schedule.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn odd_policies_stay_bounded_and_do_not_panic() {
        // (policy, expected count, why)
        let rows = [
            (
                policy(0, 100, 1000, 0.5),
                0,
                "zero attempts still means one send",
            ),
            (policy(1, 100, 1000, 0.5), 0, "one attempt has no waits"),
            (
                policy(u32::MAX, 100, 1000, 0.5),
                (MAX_ATTEMPTS_LIMIT - 1) as usize,
                "attempts are capped",
            ),
            (
                policy(3, 100, 1000, f64::NAN),
                2,
                "NaN jitter counts as none",
            ),
            (policy(3, 100, 1000, 7.0), 2, "jitter above 1 is clamped"),
            (
                RetryPolicy {
                    base_delay: Duration::MAX,
                    max_delay: Duration::MAX,
                    ..policy(40, 0, 0, 1.0)
                },
                39,
                "huge delays saturate instead of overflowing",
            ),
        ];
        for (policy, count, why) in rows {
            let schedule = backoff_schedule(&policy, 9);
            assert_eq!(schedule.len(), count, "{why}");
            assert!(schedule.iter().all(|d| *d <= policy.max_delay), "{why}");
        }
    }

    #[test]
    fn a_fixed_strategy_never_grows() {
        let retry = Retry {
            strategy: RetryStrategy::Fixed,
            max_attempts: 5,
        };
        let fixed = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::from_policy(&retry)
        };
        let schedule = backoff_schedule(&fixed, 3);
        assert_eq!(schedule.len(), 4);
        assert!(schedule.iter().all(|d| *d == fixed.base_delay));
    }

    #[test]
    fn answers_are_read_as_the_protocol_says() {
        // (result, next step, why)
        let timeout = AttemptError::Timeout {
            after: Duration::from_secs(1),
        };
        let rows: [(Result<u16, AttemptError>, Next, &str); 10] = [
            (Ok(200), Next::Acked, "200 acknowledges"),
            (Ok(204), Next::Acked, "any 2xx acknowledges"),
            (Ok(503), Next::Retry, "a server error is retried"),
            (Ok(500), Next::Retry, "a server error is retried"),
            (Ok(429), Next::Retry, "too many requests is retried"),
            (Ok(408), Next::Retry, "a request timeout is retried"),
            (Ok(401), Next::Final, "a refused signature is final"),
            (Ok(400), Next::Final, "malformed is final"),
            (Err(timeout), Next::Retry, "no answer in time is retried"),
            (
                Err(AttemptError::Request {
                    message: "bad header".into(),
                }),
                Next::Final,
                "a request that cannot be built never will be",
            ),
        ];
        for (result, next, why) in rows {
            assert_eq!(next_step(&result), next, "{why}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let max = Duration::from_secs(5);
        let backoff = Duration::from_millis(300);
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(retry_wait(backoff, None, max), backoff);
        assert_eq!(
            retry_wait(backoff, Some(Duration::from_secs(2)), max),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_wait(backoff, Some(Duration::from_secs(3600)), max),
            max
        );
        assert_eq!(retry_wait(backoff, Some(Duration::ZERO), max), backoff);
    }

    #[test]
    fn orders_are_permutations_and_reproducible() {
        assert_eq!(sequence(Order::InOrder, 4, 1), [0, 1, 2, 3]);
        assert_eq!(sequence(Order::Reversed, 4, 1), [3, 2, 1, 0]);
        let shuffled = sequence(Order::Shuffled, 50, 1);
        assert_eq!(shuffled, sequence(Order::Shuffled, 50, 1));
        assert_ne!(shuffled, sequence(Order::Shuffled, 50, 2));
        let mut sorted = shuffled.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn re_emitted_ids_are_new_but_reproducible() {
        let a = re_emit_id(1, "msg_1");
        assert_eq!(a, re_emit_id(1, "msg_1"));
        assert_ne!(a, re_emit_id(2, "msg_1"));
        assert_ne!(a, re_emit_id(1, "msg_2"));
        assert!(a.starts_with("msg_") && a.len() == 28, "{a}");
    }

    #[test]
    fn perturbation_names_are_distinct() {
        let all = [
            Perturbation::None,
            Perturbation::ExactDuplicate { copies: 1 },
            Perturbation::ReEmit,
            Perturbation::ConcurrentDuplicates { copies: 1 },
            Perturbation::Unsigned,
            Perturbation::WrongSignature,
            Perturbation::StaleTimestamp,
            Perturbation::Delay(Duration::ZERO),
        ];
        let mut names: Vec<&str> = all.iter().map(Perturbation::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(all.iter().filter(|p| p.is_forged()).count(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn schedules_are_bounded_counted_and_reproducible(
            max_attempts in 1u32..=MAX_ATTEMPTS_LIMIT,
            base_ms in 0u64..10_000,
            max_ms in 0u64..60_000,
            jitter in 0.0f64..=1.0,
            seed in any::<u64>(),
        ) {
            let policy = policy(max_attempts, base_ms, max_ms, jitter);
            let schedule = backoff_schedule(&policy, seed);
            prop_assert_eq!(schedule.len(), max_attempts as usize - 1);
            prop_assert_eq!(&schedule, &backoff_schedule(&policy, seed));
            for (k, delay) in schedule.iter().enumerate() {
                let nominal = nominal_delay(&policy, k as u32);
                prop_assert!(*delay <= policy.max_delay);
                prop_assert!(*delay <= nominal);
                // Jitter only takes away up to its share of the nominal wait.
                let floor = nominal.as_secs_f64() * (1.0 - jitter);
                prop_assert!(delay.as_secs_f64() >= floor - 1e-9);
            }
            // The nominal waits the jitter is drawn under never shrink.
            for k in 1..schedule.len() as u32 {
                prop_assert!(nominal_delay(&policy, k) >= nominal_delay(&policy, k - 1));
            }
        }
    }
}
