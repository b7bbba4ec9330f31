//! Serving a router on loopback, with graceful shutdown and the ability to drop a
//! connection mid-request: the plumbing the mocks, `serve` and the reference relay
//! share (it belongs to none of them). Also the pooled HTTP/1 client
//! ([`pooled_client`]) for calls made once per event, where reqwest's per-request URL
//! parsing and redirect and retry layers cost more than the call.
//!
//! `axum::serve` cannot close one connection without answering, which is exactly the
//! "commit then drop" fault (the ATS applied the write, the integration never hears
//! so). So this module runs its own accept loop with hyper: each connection's task
//! holds a [`ConnectionKill`] handle (a task-local, [`ConnectionKill::current`], so the
//! router is shared as is instead of being layered per connection and every request
//! carrying an extension), and firing it has the connection's watchdog task abort that
//! task, dropping the connection future and closing the socket before any response
//! byte is written.
//!
//! The loop also bounds what a client can hold: [`crate::limits::CONNECTIONS`] open
//! connections (one more is closed at once), a request head within
//! [`crate::limits::REQUEST_HEAD_BYTES`] and [`crate::limits::REQUEST_HEADERS`] (else
//! 431), and [`crate::limits::HEADER_READ_SECS`] for a connection with no request in
//! flight to begin its next one (or its first). Silent connections would otherwise be
//! held for ever, each a file descriptor.
//!
//! That last bound is each connection's [`Watchdog`], which looks at the requests
//! begun and ended on it and the bytes of answers written to it a few times per
//! limit. It replaces hyper's `header_read_timeout`, which arms and disarms a timer
//! for every request head: about 6 % of the mock ATS's CPU per request under load
//! (see the README's benchmarks).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Closes the connection a request arrived on, without a response.
#[derive(Debug, Clone, Default)]
pub struct ConnectionKill(Arc<Notify>);

tokio::task_local! {
    /// The connection whose task polls the current request (set by the accept loop).
    static CONNECTION: ConnectionKill;
}

impl ConnectionKill {
    /// The connection the current request arrived on, when it came through
    /// [`RunningServer`] (not in a router driven without sockets).
    pub fn current() -> Option<ConnectionKill> {
        CONNECTION.try_with(ConnectionKill::clone).ok()
    }

    /// Drops the connection as soon as its watchdog task sees it.
    pub fn fire(&self) {
        self.0.notify_one();
    }
}

/// Why a mock could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The failure.
    #[source]
    pub source: std::io::Error,
}

/// A mock serving on a loopback port until shut down.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The request header count hyper allows when none is named (its `DEFAULT_MAX_HEADERS`,
/// which it does not export; `too_many_headers_are_refused` pins it).
const HYPER_MAX_HEADERS: usize = 100;

/// How long a graceful shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// What one listener lets its clients hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    /// Connections open at once.
    pub(crate) connections: usize,
    /// Time a connection with no request in flight has to begin its next one.
    pub(crate) header_read: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            connections: crate::limits::CONNECTIONS.as_usize(),
            header_read: crate::limits::HEADER_READ_SECS.as_duration(),
        }
    }
}

impl RunningServer {
    /// Binds `addr` (port 0 picks a free port) and serves `router`.
    pub async fn start(router: Router, addr: SocketAddr) -> Result<RunningServer, BindError> {
        Self::start_with(router, addr, ServerLimits::default()).await
    }

    /// [`RunningServer::start`] with other limits (tests shorten the timeouts).
    pub(crate) async fn start_with(
        router: Router,
        addr: SocketAddr,
        limits: ServerLimits,
    ) -> Result<RunningServer, BindError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| BindError { addr, source })?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, router, limits, stopped));
        Ok(RunningServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish (bounded), and waits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    mut stopped: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => break,
        };
        let Ok((stream, _peer)) = accepted else {
            // A failed accept (too many open files, a reset during the handshake) is
            // the client's problem; the mock keeps serving.
            continue;
        };
        // Over the connection limit: closed at once, which a client sees as a reset
        // rather than a hang.
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let kill = ConnectionKill::default();
        let activity = Arc::new(Activity::default());
        let service = TowerToHyperService::new(Counted {
            router: router.clone(),
            activity: Arc::clone(&activity),
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // No timer: with one, hyper arms `header_read_timeout` (30 s unless named) for
        // every request head; the watchdog below bounds idle connections instead.
        builder
            .header_read_timeout(None)
            .max_header_size(crate::limits::REQUEST_HEAD_BYTES.as_usize())
            .keep_alive(true);
        // hyper's own limit is 100 headers in arrays on the stack; naming any limit,
        // even that one, makes it fill two 100-entry arrays (6 KB) on every request.
        if crate::limits::REQUEST_HEADERS.as_usize() != HYPER_MAX_HEADERS {
            builder.max_headers(crate::limits::REQUEST_HEADERS.as_usize());
        }
        let socket = Socket {
            io: TokioIo::new(stream),
            activity: Arc::clone(&activity),
        };
        let connection = builder.serve_connection(socket, service);
        let watched = graceful.watch(connection);
        let fired = kill.clone();
        let (done, ended) = oneshot::channel::<()>();
        let serving = tokio::spawn(CONNECTION.scope(kill, async move {
            let _ = watched.await;
            // Also dropped, with `done`, when the watchdog aborts this task.
            drop((permit, done));
        }));
        // Watched from a task of its own, which aborts the connection's task (dropping
        // its future closes the socket unanswered): the connection's task then polls
        // nothing besides the connection, which it does many times per request.
        tokio::spawn(watch(serving, activity, fired, ended, limits.header_read));
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// What a connection's [`Watchdog`] reads: the requests begun and ended on it, the
/// bytes of answers written to it, and whether the watchdog is closing it.
#[derive(Debug, Default)]
struct Activity {
    /// Requests begun, shifted left by one; the low bit is set once the watchdog has
    /// decided to close the connection. One word, so that a request beginning and the
    /// watchdog closing cannot both go ahead: exactly one of them changes it first.
    begun: AtomicU64,
    ended: AtomicU64,
    written: AtomicU64,
}

/// The low bit of [`Activity::begun`]: the watchdog is closing the connection.
const CLOSING: u64 = 1;

impl Activity {
    /// Counts a request as begun; false if the watchdog is closing the connection, in
    /// which case the request must not be served (its connection is about to go).
    fn begin(&self) -> bool {
        self.begun.fetch_add(2, Ordering::SeqCst) & CLOSING == 0
    }

    /// The requests begun so far.
    fn begun(&self) -> u64 {
        self.begun.load(Ordering::SeqCst) >> 1
    }

    /// Marks the connection closing, unless a request began since `begun` were counted
    /// (or it is closing already); whether this closed it.
    fn close(&self, begun: u64) -> bool {
        let open = begun << 1;
        self.begun
            .compare_exchange(open, open | CLOSING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// A connection's socket, counting the bytes of answers written to it: a client
/// still reading a long answer is not idle.
struct Socket {
    io: TokioIo<tokio::net::TcpStream>,
    activity: Arc<Activity>,
}

impl Socket {
    /// Counts what a write wrote.
    fn wrote(&self, written: &Poll<std::io::Result<usize>>) {
        if let Poll::Ready(Ok(bytes)) = written {
            self.activity
                .written
                .fetch_add(*bytes as u64, Ordering::Relaxed);
        }
    }
}

impl hyper::rt::Read for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        hyper::rt::Write::is_write_vectored(&self.io)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The router as one connection's service: it counts that connection's requests.
#[derive(Clone)]
struct Counted {
    router: Router,
    activity: Arc<Activity>,
}

impl tower::Service<axum::http::Request<Incoming>> for Counted {
    type Response = axum::http::Response<Answer>;
    type Error = Infallible;
    type Future = Counting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Router` is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<Incoming>) -> Counting {
        let serve = self.activity.begin();
        Counting {
            inner: serve.then(|| tower::Service::call(&mut self.router, request)),
            ended: Some(Ended(Arc::clone(&self.activity))),
        }
    }
}

/// A request's answer on its way. The request ends when its answer's body is done
/// (hyper drops it once its last bytes are in its buffer, or on a dropped
/// connection), not when this future is: hyper drops that once the head is ready,
/// and a streamed body can take longer than the idle limit. The bytes hyper still
/// holds then count as they go out ([`Socket`]).
struct Counting {
    /// `None` for a request that came as the watchdog closed its connection.
    inner: Option<RouteFuture<Infallible>>,
    ended: Option<Ended>,
}

impl Future for Counting {
    type Output = Result<axum::http::Response<Answer>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match &mut self.inner {
            Some(inner) => match Pin::new(inner).poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            None => closing_answer(),
        };
        let ended = self.ended.take();
        Poll::Ready(Ok(response.map(|body| Answer {
            body,
            _ended: ended,
        })))
    }
}

/// The answer to a request that began after the watchdog decided to close its
/// connection: nothing was done, so a client may send it again on a new connection.
/// (The abort may also close the connection before this is written.)
fn closing_answer() -> Response {
    let mut response = Response::new(axum::body::Body::from(
        r#"{"error":"the connection was idle for the header read and idle timeout and is closing: nothing was done, retry on a new connection"}"#,
    ));
    *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// A response body that counts its request as ended when dropped.
struct Answer {
    body: axum::body::Body,
    _ended: Option<Ended>,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts a request as ended when dropped.
struct Ended(Arc<Activity>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// Decides when a connection has been idle too long: no request in flight, none begun
/// and no byte of an answer written for at least the limit (from its start, or from
/// the end of its last answer).
///
/// It looks every [`Watchdog::period`], so an idle connection is closed between the
/// limit and 1.25 times it after it went quiet.
#[derive(Debug)]
struct Watchdog {
    limit: Duration,
    /// Requests begun and bytes written when last looked.
    seen: (u64, u64),
    /// Since when, at the latest, no request has been in flight or begun, and no
    /// answer's byte written.
    quiet_since: Instant,
}

impl Watchdog {
    fn new(limit: Duration, now: Instant) -> Self {
        Watchdog {
            limit,
            seen: (0, 0),
            quiet_since: now,
        }
    }

    /// How often the watchdog looks: an eighth of the limit.
    fn period(limit: Duration) -> Duration {
        (limit / 8).max(Duration::from_millis(1))
    }

    /// Whether the connection should be closed, looked at `now`; once this says so,
    /// no request begun after it is served ([`Activity::begin`]).
    fn expired(&mut self, activity: &Activity, now: Instant) -> bool {
        // Counts caught mid-change differ, which reads as activity, never as quiet.
        let ended = activity.ended.load(Ordering::SeqCst);
        let begun = activity.begun();
        let written = activity.written.load(Ordering::Relaxed);
        if (begun, written) != self.seen || begun != ended {
            self.seen = (begun, written);
            self.quiet_since = now;
            return false;
        }
        // A request may have ended just after the look that saw it in flight, up to a
        // period before this quiet spell is first seen: a period more makes up for it.
        now.duration_since(self.quiet_since) >= self.limit + Self::period(self.limit)
            && activity.close(begun)
    }
}

/// Aborts the task `serving` a connection when its [`ConnectionKill`] fires or its
/// [`Watchdog`] finds it idle; ends when the connection does (`ended`).
async fn watch(
    serving: JoinHandle<()>,
    activity: Arc<Activity>,
    kill: ConnectionKill,
    mut ended: oneshot::Receiver<()>,
    limit: Duration,
) {
    let mut fired = pin!(kill.0.notified());
    let mut watchdog = Watchdog::new(limit, Instant::now());
    let period = Watchdog::period(limit);
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = &mut ended => return,
            _ = &mut fired => break,
            now = ticks.tick() => {
                if watchdog.expired(&activity, now) {
                    break;
                }
            }
        }
    }
    serving.abort();
}

/// hyper's pooled HTTP/1 client with whole bodies in memory.
pub(crate) type PooledClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled client set up as reqwest's default one was (no proxy, no TLS in this
/// build): small requests go out at once rather than after Nagle's delay, TCP
/// keep-alive probes after 15 s idle, and idle pooled connections are closed after
/// 90 s, without a limit on how many are kept per host.
pub(crate) fn pooled_client() -> PooledClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(15)));
    connector.set_keepalive_interval(Some(Duration::from_secs(15)));
    connector.set_keepalive_retries(Some(3));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(usize::MAX)
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A generous bound on a wait that should end in milliseconds.
    const BOUND: Duration = Duration::from_secs(30);

    async fn server(limits: ServerLimits) -> RunningServer {
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        RunningServer::start_with(router, SocketAddr::from(([127, 0, 0, 1], 0)), limits)
            .await
            .expect("binds")
    }

    /// Reads until the server closes the connection; the bytes it sent.
    async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .expect("a clean close");
        out
    }

    #[tokio::test]
    async fn silent_and_idle_connections_are_closed() {
        let running = server(ServerLimits {
            connections: 8,
            header_read: Duration::from_millis(200),
        })
        .await;
        // Silent from the start.
        let mut silent = TcpStream::connect(running.addr()).await.expect("connects");
        assert!(until_closed(&mut silent).await.is_empty());
        // Idle after one request on a keep-alive connection.
        let mut idle = TcpStream::connect(running.addr()).await.expect("connects");
        idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("sent");
        let answered = until_closed(&mut idle).await;
        assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
        // Half a head, then nothing.
        let mut slow = TcpStream::connect(running.addr()).await.expect("connects");
        slow.write_all(b"GET / HTTP/1.1\r\nhost:")
            .await
            .expect("sent");
        let answer = until_closed(&mut slow).await;
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
            "{answer:?}"
        );
        running.shutdown().await;
    }

    /// `router` served with an idle limit of `header_read` and 8 connections.
    async fn short_limits(router: Router, header_read: Duration) -> RunningServer {
        let limits = ServerLimits {
            connections: 8,
            header_read,
        };
        RunningServer::start_with(router, SocketAddr::from(([127, 0, 0, 1], 0)), limits)
            .await
            .expect("binds")
    }

    /// A watchdog over `limit` and its activity, looked at from `start` on.
    fn watchdog(limit: Duration) -> (Watchdog, Activity, Instant) {
        let start = Instant::now();
        (Watchdog::new(limit, start), Activity::default(), start)
    }

    /// The first look, every period from `start`, at which `watchdog` closes the
    /// connection (at most `looks` looks), after `each` has changed the activity.
    fn closed_at(
        watchdog: &mut Watchdog,
        activity: &Activity,
        start: Instant,
        looks: u32,
        mut each: impl FnMut(u32, &Activity),
    ) -> Option<Duration> {
        let period = Watchdog::period(watchdog.limit);
        (1..=looks).find_map(|look| {
            each(look, activity);
            let now = start + period * look;
            watchdog.expired(activity, now).then(|| now - start)
        })
    }

    #[test]
    fn a_silent_connection_is_closed_after_the_limit_and_before_a_quarter_more() {
        let limit = Duration::from_secs(8);
        let (mut watchdog, activity, start) = watchdog(limit);
        let at = closed_at(&mut watchdog, &activity, start, 100, |_, _| {}).expect("closed");
        assert!(at >= limit && at <= limit + limit / 4, "{at:?}");
    }

    #[test]
    fn a_request_in_flight_keeps_its_connection_open_however_long_it_takes() {
        let limit = Duration::from_secs(8);
        let (mut watchdog, activity, start) = watchdog(limit);
        assert!(activity.begin());
        assert_eq!(
            closed_at(&mut watchdog, &activity, start, 1000, |_, _| {}),
            None
        );
    }

    #[test]
    fn an_idle_spell_is_counted_from_the_end_of_the_last_request() {
        let limit = Duration::from_secs(8);
        let period = Watchdog::period(limit);
        // A request begins after look `b` and ends after look `e` (both between looks):
        // the connection closes between the limit and 1.25 times it after the end.
        for (b, e) in [(0, 0), (0, 1), (3, 3), (3, 40), (7, 8)] {
            let (mut watchdog, activity, start) = watchdog(limit);
            let at = closed_at(&mut watchdog, &activity, start, 1000, |look, activity| {
                if look == b + 1 {
                    assert!(activity.begin());
                }
                if look == e + 1 {
                    activity.ended.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("closed");
            // The request ended at the latest just before look e + 1.
            let ended = period * (e + 1);
            assert!(
                at >= ended + limit && at <= period * e + limit + limit / 4,
                "begun after look {b}, ended after look {e}: closed at {at:?}"
            );
        }
        // Requests one after another, each between two looks, keep it open.
        let (mut watchdog, activity, start) = watchdog(limit);
        let busy = closed_at(&mut watchdog, &activity, start, 200, |_, activity| {
            assert!(activity.begin());
            activity.ended.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(busy, None);
    }

    #[tokio::test]
    async fn slow_answers_are_not_cut_off_by_the_idle_limit() {
        let header_read = Duration::from_millis(200);
        let slow = move || async move {
            tokio::time::sleep(header_read * 4).await;
            "late"
        };
        // The head goes out at once; the body's second half after 4 limits.
        let slow_body = move || async move {
            let halves = futures_util::stream::unfold(0u8, move |half| async move {
                match half {
                    0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"first-")), 1)),
                    1 => {
                        tokio::time::sleep(header_read * 4).await;
                        Some((Ok(Bytes::from_static(b"second")), 2))
                    }
                    _ => None,
                }
            });
            axum::body::Body::from_stream(halves)
        };
        let router = Router::new()
            .route("/slow", axum::routing::get(slow))
            .route("/slow-body", axum::routing::get(slow_body));
        let running = short_limits(router, header_read).await;
        // (path, how the whole answer ends: the body, or a chunked body's last chunk)
        for (path, end) in [("/slow", "late"), ("/slow-body", "second\r\n0\r\n\r\n")] {
            let mut stream = TcpStream::connect(running.addr()).await.expect("connects");
            let head = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
            stream.write_all(head.as_bytes()).await.expect("sent");
            // Answered whole, then closed once idle for the limit.
            let out = String::from_utf8_lossy(&until_closed(&mut stream).await).into_owned();
            assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
            assert!(out.ends_with(end), "{path}: {out}");
        }
        running.shutdown().await;
    }

    #[tokio::test]
    async fn a_client_reading_a_long_answer_slowly_gets_all_of_it() {
        use tokio::io::AsyncWriteExt as _;
        const SIZE: usize = 32 << 20;
        let header_read = Duration::from_millis(200);
        let router =
            Router::new().route("/long", axum::routing::get(|| async { vec![b'x'; SIZE] }));
        let running = short_limits(router, header_read).await;
        let mut stream = TcpStream::connect(running.addr()).await.expect("connects");
        stream
            .write_all(b"GET /long HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("sent");
        // 2 MiB, then a pause shorter than the limit: longer than the limit in all, and
        // more than the sockets' buffers hold, so the server writes as the client reads.
        let (mut read, mut since_pause, mut chunk) = (0, 0, vec![0u8; 1 << 16]);
        loop {
            let n = tokio::time::timeout(BOUND, stream.read(&mut chunk))
                .await
                .expect("read in time")
                .expect("read");
            if n == 0 {
                break;
            }
            read += n;
            since_pause += n;
            if since_pause >= 2 << 20 {
                since_pause = 0;
                tokio::time::sleep(header_read * 3 / 4).await;
            }
        }
        assert!(read > SIZE, "{read} bytes, the answer is {SIZE} and a head");
        running.shutdown().await;
    }

    #[test]
    fn a_request_and_the_watchdog_closing_never_both_go_ahead() {
        let limit = Duration::from_secs(8);
        let late = Instant::now() + limit * 2;
        // The watchdog first: the request sees it closing and is not served.
        let (mut closing, activity, _) = watchdog(limit);
        assert!(closing.expired(&activity, late), "quiet for two limits");
        assert!(!activity.begin(), "a request as it closes is refused");
        // The request first: the watchdog sees it and keeps the connection.
        let (mut keeping, activity, _) = watchdog(limit);
        assert!(activity.begin());
        assert!(
            !activity.close(0),
            "a request begun since the look keeps it open"
        );
        assert!(activity.begin(), "and the next request is served");
        assert!(!keeping.expired(&activity, late), "requests in flight");
        // Answers still being written keep a connection open; a stalled one does not.
        let (mut writing, activity, start) = watchdog(limit);
        let period = Watchdog::period(limit);
        for look in 1..100 {
            activity.written.fetch_add(1, Ordering::Relaxed);
            assert!(!writing.expired(&activity, start + period * look));
        }
        assert!(writing.expired(&activity, start + period * 100 + limit * 2));
    }

    #[tokio::test]
    async fn a_refused_request_is_told_to_retry_on_a_new_connection() {
        let response = closing_answer();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[axum::http::header::CONNECTION], "close");
        let body = axum::body::to_bytes(response.into_body(), 1 << 10)
            .await
            .expect("a body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("retry")));
    }

    #[tokio::test]
    async fn too_many_headers_are_refused() {
        let running = server(ServerLimits::default()).await;
        let limit = crate::limits::REQUEST_HEADERS.as_usize();
        assert_eq!(limit, HYPER_MAX_HEADERS, "else the limit is named to hyper");
        // (headers in the request, host included; the answer's first bytes; why)
        let rows = [
            (limit, &b"HTTP/1.1 200"[..], "at the limit"),
            (limit + 1, &b"HTTP/1.1 431"[..], "one over"),
        ];
        for (count, answer, why) in rows {
            let mut stream = TcpStream::connect(running.addr()).await.expect("connects");
            let mut head = String::from("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
            for i in 2..count {
                head.push_str(&format!("x-h{i}: v\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await.expect("sent");
            let out = until_closed(&mut stream).await;
            assert!(
                out.starts_with(answer),
                "{why}: {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        running.shutdown().await;
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_at_once() {
        let running = server(ServerLimits {
            connections: 2,
            header_read: BOUND,
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(running.addr()).await.expect("connects");
            // A request answered proves the connection was accepted and is counted.
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .expect("sent");
            let mut buf = [0u8; 12];
            tokio::time::timeout(BOUND, stream.read_exact(&mut buf))
                .await
                .expect("answered in time")
                .expect("answered");
            held.push(stream);
        }
        let mut third = TcpStream::connect(running.addr()).await.expect("connects");
        let _ = third.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(BOUND, third.read_to_end(&mut out))
            .await
            .expect("closed, not left hanging");
        assert!(read.is_err() || out.is_empty(), "unanswered: {out:?}");
        // Freed when one closes.
        drop(held.pop());
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let mut again = TcpStream::connect(running.addr()).await.expect("connects");
            again
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .expect("sent");
            let mut out = Vec::new();
            let _ = tokio::time::timeout(BOUND, again.read_to_end(&mut out)).await;
            if out.starts_with(b"HTTP/1.1 200") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a slot is freed when a connection closes"
            );
            tokio::task::yield_now().await;
        }
        running.shutdown().await;
    }
}
