//! Serving a mock's router on loopback, with graceful shutdown and the ability to
//! drop a connection mid-request.
//!
//! `axum::serve` cannot close one connection without answering, which is exactly the
//! "commit then drop" fault (the ATS applied the write, the integration never hears
//! so). So this module runs its own accept loop with hyper: each connection's task
//! holds a [`ConnectionKill`] handle (a task-local, [`ConnectionKill::current`], so the
//! router is shared as is instead of being layered per connection and every request
//! carrying an extension), and firing it drops the connection future, closing the
//! socket before any response byte is written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

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

    /// Drops the connection as soon as the accept loop sees it.
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

/// How long a graceful shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

impl RunningServer {
    /// Binds `addr` (port 0 picks a free port) and serves `router`.
    pub async fn start(router: Router, addr: SocketAddr) -> Result<RunningServer, BindError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| BindError { addr, source })?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, router, stopped));
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

async fn accept_loop(listener: TcpListener, router: Router, mut stopped: oneshot::Receiver<()>) {
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let kill = ConnectionKill::default();
        let service = TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        let fired = kill.clone();
        tokio::spawn(CONNECTION.scope(kill, async move {
            tokio::select! {
                _ = watched => {}
                // Dropping the connection future closes the socket unanswered.
                _ = fired.0.notified() => {}
            }
        }));
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}
