//! The webhook sender against tiny loopback integrations: retries, timeouts, races,
//! duplicates, reordering and forged deliveries, as the integration sees them.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use stagegate::delivery::signature::{SignatureError, header, unix_now};
use stagegate::delivery::{
    AttemptError, Delivery, DeliveryOutcome, Order, Perturbation, RetryPolicy, Sender,
    TIMESTAMP_TOLERANCE, WebhookSecret, verify, verify_headers,
};
use stagegate::observe::{self, ObservationLog, Record};
use tokio::sync::{Barrier, Notify, mpsc, oneshot};
use tokio::time::timeout;
use url::Url;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The longest a test waits for something it expects.
const WAIT: Duration = Duration::from_secs(10);

fn secret() -> WebhookSecret {
    SECRET.parse().expect("the test secret parses")
}

/// A fast policy: short waits so retries do not slow the suite.
fn fast(max_attempts: u32, ack_timeout: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        ack_timeout,
        jitter: 0.5,
    }
}

/// A log writer the test reads back.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

/// The sender's observation log and the bytes it wrote.
struct SharedLog {
    log: ObservationLog,
    buffer: Buffer,
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SharedLog {
    fn records(&self) -> Vec<Record> {
        // The log's writer thread writes behind the appends: read after a flush.
        self.log.flush().expect("the observation log flushes");
        let bytes = self.buffer.0.lock().expect("not poisoned").clone();
        let records: Vec<Record> = String::from_utf8(bytes)
            .expect("utf-8 log")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a record per line"))
            .collect();
        observe::verify(&records).expect("the chain holds");
        records
    }

    fn of_kind(&self, kind: &str) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.kind == kind)
            .collect()
    }
}

fn sender(policy: RetryPolicy) -> (Sender, SharedLog) {
    let buffer = Buffer::default();
    let log = ObservationLog::to_writer(Box::new(buffer.clone()), "run-delivery");
    let sender = Sender::new(secret(), policy, 42, log.clone());
    (sender, SharedLog { log, buffer })
}

fn event(id: &str) -> Delivery {
    Delivery {
        candidate: Some("CAND_001".into()),
        correlation_id: Some(format!("corr-{id}")),
        event_id: Some(format!("evt-{id}")),
        idempotency_key: Some(format!("key-{id}")),
        ..Delivery::json(
            id,
            "identity.verification.completed",
            &json!({"type": "identity.verification.completed", "event_id": id}),
        )
    }
}

/// What reached the integration.
#[derive(Debug, Clone)]
struct Arrival {
    id: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
    body: Bytes,
}

impl Arrival {
    fn new(headers: &HeaderMap, body: &Bytes) -> Self {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Arrival {
            id: text(header::ID),
            timestamp: text(header::TIMESTAMP),
            signature: text(header::SIGNATURE),
            body: body.clone(),
        }
    }

    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("<no id>")
    }
}

/// Waits for exactly `n` arrivals, then checks no more came.
async fn arrivals(rx: &mut mpsc::UnboundedReceiver<Arrival>, n: usize) -> Vec<Arrival> {
    let mut got = Vec::with_capacity(n);
    for i in 0..n {
        match timeout(WAIT, rx.recv()).await {
            Ok(Some(arrival)) => got.push(arrival),
            _ => panic!("arrival {} of {n} never came; got {got:?}", i + 1),
        }
    }
    assert!(rx.try_recv().is_err(), "more than {n} arrivals");
    got
}

/// A loopback integration; shuts down gracefully when dropped.
struct Loopback {
    url: Url,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Loopback {
    async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback binds");
        let addr = listener.local_addr().expect("bound address");
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
        });
        let url = Url::parse(&format!("http://{addr}/webhooks/vendor")).expect("a url");
        Loopback {
            url,
            shutdown: Some(shutdown),
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// How the scripted integration answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    RetryAfter(u16, &'static str),
    /// Holds the request until released (bounded by [`WAIT`]).
    Hang,
}

#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    then: Answer,
    arrivals: mpsc::UnboundedSender<Arrival>,
    release: Arc<Notify>,
}

async fn scripted(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> Response {
    let _ = script.arrivals.send(Arrival::new(&headers, &body));
    let answer = script
        .answers
        .lock()
        .expect("not poisoned")
        .pop_front()
        .unwrap_or(script.then);
    let status = |code| StatusCode::from_u16(code).expect("a valid status");
    match answer {
        Answer::Status(code) => status(code).into_response(),
        Answer::RetryAfter(code, after) => (status(code), [(RETRY_AFTER, after)]).into_response(),
        Answer::Hang => {
            let _ = timeout(WAIT, script.release.notified()).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// An integration answering `answers` in turn, then `then` forever.
async fn scripted_integration(
    answers: &[Answer],
    then: Answer,
) -> (Loopback, mpsc::UnboundedReceiver<Arrival>, Arc<Notify>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let script = Script {
        answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
        then,
        arrivals: tx,
        release: release.clone(),
    };
    let router = Router::new()
        .route("/webhooks/vendor", post(scripted))
        .with_state(script);
    (Loopback::start(router).await, rx, release)
}

fn statuses(outcome: &DeliveryOutcome) -> Vec<Option<u16>> {
    outcome.attempts.iter().map(|a| a.status()).collect()
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_id_until_acked() {
    let (server, mut rx, _) = scripted_integration(
        &[Answer::Status(503), Answer::Status(503)],
        Answer::Status(200),
    )
    .await;
    let (sender, log) = sender(fast(8, Duration::from_secs(2)));
    let delivery = event("msg_retry");

    let outcome = sender
        .deliver(&server.url, &delivery, &Perturbation::None)
        .await;

    assert!(outcome.acked, "{outcome:#?}");
    assert_eq!(statuses(&outcome), [Some(503), Some(503), Some(200)]);
    assert_eq!(
        outcome
            .attempts
            .iter()
            .map(|a| a.attempt)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let seen = arrivals(&mut rx, 3).await;
    for arrival in &seen {
        assert_eq!(arrival.id(), "msg_retry");
        // Every retry is signed afresh over its own timestamp.
        verify(
            &secret(),
            arrival.id.as_deref(),
            arrival.timestamp.as_deref(),
            arrival.signature.as_deref(),
            &arrival.body,
            unix_now(),
            TIMESTAMP_TOLERANCE,
        )
        .expect("each attempt verifies");
        assert_eq!(arrival.body.as_ref(), delivery.body.as_slice());
    }

    let attempts = log.of_kind("webhook.attempt");
    assert_eq!(attempts.len(), 3);
    for (i, record) in attempts.iter().enumerate() {
        assert_eq!(record.detail["webhook_id"], "msg_retry");
        assert_eq!(record.detail["attempt"], i as u64 + 1);
        assert_eq!(record.detail["url_path"], "/webhooks/vendor");
        assert_eq!(record.detail["perturbation"], "none");
        assert_eq!(record.detail["signed"], true);
        assert_eq!(record.detail["contract"], "identity.verification.completed");
        assert_eq!(record.candidate.as_deref(), Some("CAND_001"));
        assert_eq!(record.idempotency_key.as_deref(), Some("key-msg_retry"));
        assert!(record.latency_ms.is_some());
    }
    assert_eq!(
        attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Some(503), Some(503), Some(200)]
    );
    let summary = log.of_kind("webhook.delivery");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].detail["acked"], true);
    assert_eq!(summary[0].detail["attempts"], 3);
    assert_eq!(summary[0].event_id.as_deref(), Some("evt-msg_retry"));
}

#[tokio::test]
async fn an_integration_that_never_answers_in_time_is_not_acked() {
    let (server, mut rx, release) = scripted_integration(&[], Answer::Hang).await;
    let ack_timeout = Duration::from_millis(200);
    let (sender, log) = sender(fast(3, ack_timeout));

    let outcome = sender
        .deliver(&server.url, &event("msg_slow"), &Perturbation::None)
        .await;
    release.notify_waiters();

    assert!(!outcome.acked);
    assert_eq!(outcome.attempts.len(), 3);
    for attempt in &outcome.attempts {
        assert_eq!(
            attempt.result,
            Err(AttemptError::Timeout { after: ack_timeout })
        );
        assert!(attempt.latency >= ack_timeout, "{attempt:?}");
    }
    assert!(
        arrivals(&mut rx, 3)
            .await
            .iter()
            .all(|a| a.id() == "msg_slow")
    );
    let records = log.of_kind("webhook.attempt");
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| {
        r.status.is_none()
            && r.detail["error"]
                .as_str()
                .is_some_and(|e| e.contains("ack timeout"))
    }));
    assert_eq!(log.of_kind("webhook.delivery")[0].detail["acked"], false);
}

#[tokio::test]
async fn answers_decide_whether_to_retry() {
    use Answer::{RetryAfter, Status};
    /// (script, perturbation, statuses seen, acked, why)
    type Row = (
        &'static [Answer],
        Perturbation,
        &'static [u16],
        bool,
        &'static str,
    );
    let rows: [Row; 7] = [
        (
            &[RetryAfter(429, "0")],
            Perturbation::None,
            &[429, 200],
            true,
            "429 is retried",
        ),
        (
            &[Status(408)],
            Perturbation::None,
            &[408, 200],
            true,
            "408 is retried",
        ),
        (
            &[Status(400)],
            Perturbation::None,
            &[400],
            false,
            "400 is final",
        ),
        (
            &[Status(401)],
            Perturbation::None,
            &[401],
            false,
            "401 is final",
        ),
        (
            &[Status(500), Status(500), Status(500)],
            Perturbation::None,
            &[500, 500, 500],
            false,
            "attempts run out",
        ),
        (
            &[Status(503)],
            Perturbation::Unsigned,
            &[503],
            false,
            "forged deliveries are sent once, whatever the answer",
        ),
        (
            &[],
            Perturbation::Delay(Duration::from_millis(1)),
            &[200],
            true,
            "a delayed delivery is otherwise plain",
        ),
    ];
    for (script, perturbation, expected, acked, why) in rows {
        let (server, mut rx, _) = scripted_integration(script, Status(200)).await;
        let (sender, _) = sender(fast(3, Duration::from_secs(2)));
        let outcome = sender
            .deliver(&server.url, &event("msg_table"), &perturbation)
            .await;
        let expected: Vec<Option<u16>> = expected.iter().copied().map(Some).collect();
        assert_eq!(statuses(&outcome), expected, "{why}");
        assert_eq!(outcome.acked, acked, "{why}");
        arrivals(&mut rx, expected.len()).await;
    }
}

#[derive(Clone)]
struct Racing {
    barrier: Arc<Barrier>,
    arrivals: mpsc::UnboundedSender<Arrival>,
}

/// Answers only once two requests are inside at the same time.
async fn racing(State(state): State<Racing>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let _ = state.arrivals.send(Arrival::new(&headers, &body));
    match timeout(WAIT, state.barrier.wait()).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::CONFLICT,
    }
}

#[tokio::test]
async fn concurrent_duplicates_race_with_one_id() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let state = Racing {
        barrier: Arc::new(Barrier::new(2)),
        arrivals: tx,
    };
    let server = Loopback::start(
        Router::new()
            .route("/webhooks/vendor", post(racing))
            .with_state(state),
    )
    .await;
    // The barrier answers only if both copies are in flight together, so an ack
    // proves the race; the ack timeout outlasts the barrier's wait.
    let (sender, log) = sender(fast(1, WAIT + Duration::from_secs(1)));

    let outcome = sender
        .deliver(
            &server.url,
            &event("msg_race"),
            &Perturbation::ConcurrentDuplicates { copies: 1 },
        )
        .await;

    assert!(outcome.acked, "{outcome:#?}");
    assert_eq!(
        outcome.attempts.iter().map(|a| a.copy).collect::<Vec<_>>(),
        [0, 1]
    );
    let seen = arrivals(&mut rx, 2).await;
    assert!(seen.iter().all(|a| a.id() == "msg_race"), "{seen:?}");
    let records = log.of_kind("webhook.attempt");
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r.detail["perturbation"] == "concurrent_duplicates")
    );
}

#[tokio::test]
async fn exact_duplicates_repeat_the_request_and_re_emits_change_the_id() {
    let (server, mut rx, _) = scripted_integration(&[], Answer::Status(200)).await;
    let (sender, log) = sender(fast(3, Duration::from_secs(2)));

    let duplicated = sender
        .deliver(
            &server.url,
            &event("msg_dup"),
            &Perturbation::ExactDuplicate { copies: 2 },
        )
        .await;
    assert!(duplicated.acked);
    let seen = arrivals(&mut rx, 3).await;
    for copy in &seen[1..] {
        assert_eq!(copy.id, seen[0].id);
        assert_eq!(copy.timestamp, seen[0].timestamp);
        assert_eq!(copy.signature, seen[0].signature);
        assert_eq!(copy.body, seen[0].body);
    }

    let re_emitted = sender
        .deliver(&server.url, &event("msg_orig"), &Perturbation::ReEmit)
        .await;
    assert!(re_emitted.acked);
    let seen = arrivals(&mut rx, 2).await;
    assert_eq!(seen[0].id(), "msg_orig");
    assert_ne!(seen[1].id(), "msg_orig");
    assert_eq!(seen[0].body, seen[1].body);
    for arrival in &seen {
        verify(
            &secret(),
            arrival.id.as_deref(),
            arrival.timestamp.as_deref(),
            arrival.signature.as_deref(),
            &arrival.body,
            unix_now(),
            TIMESTAMP_TOLERANCE,
        )
        .expect("a re-emit is properly signed under its new id");
    }
    let summaries = log.of_kind("webhook.delivery");
    assert_eq!(summaries[1].detail["webhook_ids"][1], seen[1].id());
}

#[tokio::test]
async fn reversed_order_delivers_the_last_planned_event_first() {
    let (server, mut rx, _) = scripted_integration(&[], Answer::Status(200)).await;
    let (sender, _) = sender(fast(3, Duration::from_secs(2)));
    let plan = || {
        ["msg_1", "msg_2", "msg_3"]
            .map(|id| (event(id), Perturbation::None))
            .to_vec()
    };

    let outcomes = sender
        .deliver_all(&server.url, plan(), Order::Reversed)
        .await;
    let seen = arrivals(&mut rx, 3).await;
    assert_eq!(
        seen.iter().map(Arrival::id).collect::<Vec<_>>(),
        ["msg_3", "msg_2", "msg_1"]
    );
    assert_eq!(
        outcomes
            .iter()
            .map(|o| o.webhook_id.as_str())
            .collect::<Vec<_>>(),
        ["msg_1", "msg_2", "msg_3"],
        "outcomes come back in plan order"
    );

    let outcomes = sender
        .deliver_all(&server.url, plan(), Order::Concurrent { max_in_flight: 2 })
        .await;
    arrivals(&mut rx, 3).await;
    assert!(outcomes.iter().all(|o| o.acked));
    assert_eq!(
        outcomes
            .iter()
            .map(|o| o.webhook_id.as_str())
            .collect::<Vec<_>>(),
        ["msg_1", "msg_2", "msg_3"]
    );
}

#[derive(Clone)]
struct Verifying {
    secret: Arc<WebhookSecret>,
    verdicts: mpsc::UnboundedSender<(String, Result<(), SignatureError>)>,
}

/// A correct integration's front door: 401 unless the signature verifies.
async fn verifying(State(state): State<Verifying>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verdict = verify_headers(
        &state.secret,
        &headers,
        &body,
        unix_now(),
        TIMESTAMP_TOLERANCE,
    );
    let status = if verdict.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    let id = Arrival::new(&headers, &body).id().to_owned();
    let _ = state.verdicts.send((id, verdict));
    status
}

#[tokio::test]
async fn a_verifying_integration_refuses_forged_deliveries() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let state = Verifying {
        secret: Arc::new(secret()),
        verdicts: tx,
    };
    let server = Loopback::start(
        Router::new()
            .route("/webhooks/vendor", post(verifying))
            .with_state(state),
    )
    .await;
    let (sender, log) = sender(fast(3, Duration::from_secs(2)));
    let plan = vec![
        (event("msg_good"), Perturbation::None),
        (event("msg_unsigned"), Perturbation::Unsigned),
        (event("msg_wrong"), Perturbation::WrongSignature),
        (event("msg_stale"), Perturbation::StaleTimestamp),
    ];

    let outcomes = sender.deliver_all(&server.url, plan, Order::InOrder).await;

    // (acked, status, signed, why)
    let expected = [
        (true, 200, true, "properly signed"),
        (false, 401, false, "no signature header"),
        (false, 401, true, "signed with another secret"),
        (false, 401, true, "signed, but ten minutes old"),
    ];
    for (outcome, (acked, status, signed, why)) in outcomes.iter().zip(expected) {
        assert_eq!(outcome.acked, acked, "{why}");
        assert_eq!(statuses(outcome), [Some(status)], "{why}: sent once");
        assert_eq!(outcome.attempts[0].signed, signed, "{why}");
    }
    let mut verdicts = Vec::new();
    for _ in 0..4 {
        let verdict = timeout(WAIT, rx.recv())
            .await
            .expect("a verdict in time")
            .expect("the server is alive");
        verdicts.push(verdict);
    }
    assert_eq!(verdicts[0], ("msg_good".to_owned(), Ok(())));
    assert_eq!(
        verdicts[1],
        (
            "msg_unsigned".to_owned(),
            Err(SignatureError::MissingSignature)
        )
    );
    assert_eq!(
        verdicts[2],
        ("msg_wrong".to_owned(), Err(SignatureError::Mismatch))
    );
    assert!(
        matches!(&verdicts[3], (id, Err(SignatureError::TooOld { age_secs, .. }))
            if id == "msg_stale" && *age_secs >= 600),
        "{:?}",
        verdicts[3]
    );
    let signed: Vec<bool> = log
        .of_kind("webhook.attempt")
        .iter()
        .map(|r| r.detail["signed"] == true)
        .collect();
    assert_eq!(signed, [true, false, true, true]);
}

#[tokio::test]
async fn refused_connections_are_retried_then_given_up() {
    // A port that was free a moment ago: nothing listens there now.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback binds");
    let addr = listener.local_addr().expect("bound address");
    drop(listener);
    let url = Url::parse(&format!("http://{addr}/webhooks/vendor")).expect("a url");
    let (sender, log) = sender(fast(2, Duration::from_secs(2)));

    let outcome = sender
        .deliver(&url, &event("msg_nobody"), &Perturbation::None)
        .await;

    assert!(!outcome.acked);
    assert_eq!(outcome.attempts.len(), 2);
    assert!(
        outcome
            .attempts
            .iter()
            .all(|a| matches!(a.result, Err(AttemptError::Connect { .. }))),
        "{outcome:#?}"
    );
    assert_eq!(log.of_kind("webhook.attempt").len(), 2);
}
