//! The relay's durable state in SQLite (WAL): an idempotency index and a work queue.
//!
//! A webhook is acknowledged only after its row is committed, so a crash after the
//! 2xx loses nothing; the `UNIQUE` idempotency key makes concurrent duplicates race
//! safely inside the database instead of in the relay's memory.
//!
//! The two writes of every event (queueing it, closing it) go through one writer
//! thread that commits whatever has gathered since its last commit in one
//! transaction (a group commit) and only then answers each caller: under load one
//! commit carries dozens of events, where a commit per write cost a WAL append and
//! a lock round of its own, and a blocking-pool hand-off per webhook. Durability is
//! the same: nothing is acknowledged before its commit. The commit is durable
//! against a crash of the process (SIGKILL), not a power cut: WAL with
//! `synchronous = NORMAL`. The worker reads the queue on a second, read-only
//! connection, which WAL lets read the last commit while the writer builds the next.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("relay store: {context}")]
pub struct StoreError {
    context: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// A failure of `context` (`opening the policy store`, …).
    pub(crate) fn new(context: &'static str, source: rusqlite::Error) -> Self {
        StoreError {
            context,
            source: Box::new(source),
        }
    }

    /// The writer thread is gone (the store is closing).
    fn stopped() -> Self {
        StoreError {
            context: "writing",
            source: "the store's writer thread stopped".into(),
        }
    }

    /// The same failure, for another caller of the group it failed (the source
    /// itself cannot be cloned; its message is kept).
    fn again(&self) -> Self {
        StoreError {
            context: self.context,
            source: self.source.to_string().into(),
        }
    }
}

trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::new(context, source))
    }
}

/// What accepting a webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A new event, queued at this position.
    Queued(i64),
    /// The idempotency key was seen before; nothing queued.
    Duplicate,
}

/// An event waiting to be written to the ATS.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Queue position (arrival order).
    pub seq: i64,
    /// The event's idempotency key.
    pub idempotency_key: String,
    /// The candidate.
    pub candidate: String,
    /// The contract.
    pub contract: String,
    /// When the event occurred (RFC 3339).
    pub occurred_at: String,
    /// The event's JSON.
    pub body: String,
    /// When the relay received it.
    pub received_at: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the ATS refused it as a mapping error, when the exception item for that
    /// is still to be filed.
    pub rejection: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the ATS.
    Applied,
    /// Older than what the ATS already has for the contract; not written.
    Stale,
    /// The candidate is outside the canary scope; not written.
    OutOfScope,
    /// The ATS refused it as a mapping error (422).
    Rejected,
    /// Given up after failed attempts and forgotten (the `drop_undeliverable` fault only).
    GaveUp,
}

impl Outcome {
    /// The outcome's name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Stale => "dropped_stale",
            Outcome::OutOfScope => "skipped_out_of_scope",
            Outcome::Rejected => "rejected",
            Outcome::GaveUp => "dropped_undeliverable",
        }
    }
}

/// A webhook's event, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The key the store deduplicates on.
    pub idempotency_key: String,
    /// The delivery's `webhook-id`.
    pub webhook_id: String,
    /// The candidate.
    pub candidate: String,
    /// The contract.
    pub contract: String,
    /// When the event occurred (RFC 3339).
    pub occurred_at: String,
    /// The event's JSON.
    pub body: String,
    /// When the relay received it.
    pub received_at: String,
}

/// A write waiting for the writer thread's next commit, with where its answer goes.
enum Write {
    Accept(NewEvent, oneshot::Sender<Result<Accepted, StoreError>>),
    Finish(Finish, oneshot::Sender<Result<(), StoreError>>),
}

struct Finish {
    seq: i64,
    outcome: Outcome,
    processed_at: String,
}

/// Writes one group commit holds at most, so callers are answered steadily.
const MAX_GROUP: usize = 256;

/// The store.
#[derive(Debug)]
pub struct Store {
    /// A second connection for the worker's reads of the queue: WAL lets it read the
    /// last commit while the writer thread holds `conn` for the next group, so a
    /// queue read never waits for a commit (on the relay's one runtime thread, that
    /// wait stalled every webhook and ATS call too). Declared first so it closes
    /// first: the last connection to close checkpoints the WAL and deletes it.
    reader: Mutex<Connection>,
    conn: Arc<Mutex<Connection>>,
    /// The state folder's lock, held while the store is open: one relay per folder.
    _lock: Flock<std::fs::File>,
    /// No row before this seq is queued: rows are closed, never reopened, and new
    /// ones come after, so the queue's walk starts here and the mark only moves on.
    oldest: AtomicI64,
    /// The writer thread's queue; `None` only while dropping.
    writes: Option<mpsc::Sender<Write>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what it holds.
        self.writes = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: waits for a write, takes every write already waiting behind
/// it, commits them in one transaction, then answers them all.
fn write_loop(conn: &Mutex<Connection>, writes: &mpsc::Receiver<Write>) {
    while let Ok(first) = writes.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match writes.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let conn = lock(conn);
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .context("beginning a group commit");
        let mut answers = Vec::with_capacity(group.len());
        for write in group {
            match write {
                Write::Accept(event, reply) => {
                    let result = match &begun {
                        Ok(()) => insert(&conn, &event),
                        Err(err) => Err(err.again()),
                    };
                    answers.push(Answer::Accept(result, reply));
                }
                Write::Finish(finish, reply) => {
                    let result = match &begun {
                        Ok(()) => close(&conn, &finish),
                        Err(err) => Err(err.again()),
                    };
                    answers.push(Answer::Finish(result, reply));
                }
            }
        }
        let committed = match begun {
            Ok(()) => conn.execute_batch("COMMIT").context("committing a group"),
            Err(err) => Err(err),
        };
        if committed.is_err() {
            // Whatever the group did is gone: every caller hears the failure.
            let _ = conn.execute_batch("ROLLBACK");
        }
        drop(conn);
        for answer in answers {
            answer.send(match &committed {
                Ok(()) => Ok(()),
                Err(err) => Err(err.again()),
            });
        }
    }
}

/// A write's result, held until its group is committed.
enum Answer {
    Accept(
        Result<Accepted, StoreError>,
        oneshot::Sender<Result<Accepted, StoreError>>,
    ),
    Finish(
        Result<(), StoreError>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
}

impl Answer {
    /// Sends the write's own result, or the commit's failure.
    fn send(self, committed: Result<(), StoreError>) {
        match self {
            Answer::Accept(result, reply) => {
                let _ = reply.send(committed.and(result));
            }
            Answer::Finish(result, reply) => {
                let _ = reply.send(committed.and(result));
            }
        }
    }
}

fn insert(conn: &Connection, event: &NewEvent) -> Result<Accepted, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (idempotency_key, webhook_id, candidate, contract, occurred_at, body, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(idempotency_key) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                event.idempotency_key,
                event.webhook_id,
                event.candidate,
                event.contract,
                event.occurred_at,
                event.body,
                event.received_at
            ])
        })
        .context("queueing an event")?;
    Ok(if inserted == 1 {
        Accepted::Queued(conn.last_insert_rowid())
    } else {
        Accepted::Duplicate
    })
}

fn close(conn: &Connection, finish: &Finish) -> Result<(), StoreError> {
    // The attempt that finished the job is counted here, with it.
    conn.prepare_cached(
        "UPDATE events SET state = 'done', outcome = ?2, processed_at = ?3, attempts = attempts + 1
         WHERE seq = ?1",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            finish.seq,
            finish.outcome.as_str(),
            finish.processed_at
        ])
    })
    .context("closing a job")?;
    Ok(())
}

/// How long a relay waits for the state folder's lock, as SQLite's busy timeout waited
/// for the database's before: a relay restarted right after a SIGKILL may start while
/// the killed process is still dying (a supervisor, or the harness, reaps the `sh -c`
/// that started it, not the relay itself).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes the lock file beside the database (`relay.lock`) for as long as the store
/// is open, waiting up to `wait` for it, so a second relay on the same state folder
/// fails at its start instead of working the same queue. The lock goes with the
/// process, however it ends.
fn lock_folder(
    database: &Path,
    wait: std::time::Duration,
) -> Result<Flock<std::fs::File>, StoreError> {
    let path = database.with_extension("lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| StoreError {
            context: "opening the state folder's lock file",
            source: format!("{}: {err}", path.display()).into(),
        })?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((again, Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = again;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(StoreError {
                    context: "another relay is using this state folder (stop it, or give this relay a STAGEGATE_STATE_DIR of its own)",
                    source: format!(
                        "{} is locked (waited {} s)",
                        path.display(),
                        wait.as_secs_f64()
                    )
                    .into(),
                });
            }
            Err((_, err)) => {
                return Err(StoreError {
                    context: "locking the state folder",
                    source: format!("{}: {err}", path.display()).into(),
                });
            }
        }
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_waiting(path, LOCK_WAIT)
    }

    /// [`Store::open`], waiting up to `wait` for the state folder's lock.
    fn open_waiting(path: &Path, wait: std::time::Duration) -> Result<Store, StoreError> {
        let lock = lock_folder(path, wait)?;
        let conn = Connection::open(path).context("opening the database")?;
        // 2 KiB pages (for a new store; an existing one keeps its own): an event's
        // random idempotency-index leaf, the queue indexes and the rows it touches are
        // each a WAL frame per commit, so smaller pages halve the bytes written,
        // checksummed and synced at checkpoints; a row (an event's JSON) still fits.
        conn.pragma_update(None, "page_size", 2048)
            .context("setting the page size")?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context("enabling WAL")?;
        // NORMAL is durable across process crashes in WAL mode; only a power cut can
        // lose the last commits, which a sandbox run does not rehearse.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context("setting synchronous")?;
        // A checkpoint every 8,000 WAL pages (16 MiB) rather than 1,000: pages that
        // several group commits touch are copied into the database once.
        conn.pragma_update(None, "wal_autocheckpoint", 8000)
            .context("setting the checkpoint interval")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .context("setting busy timeout")?;
        // `seq` is the rowid without AUTOINCREMENT: rows are never deleted, so the
        // next rowid is always the largest plus one (arrival order) without the
        // `sqlite_sequence` row AUTOINCREMENT rewrites, a WAL frame, on every commit.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY,
                idempotency_key TEXT NOT NULL UNIQUE,
                webhook_id TEXT NOT NULL,
                candidate TEXT NOT NULL,
                contract TEXT NOT NULL,
                occurred_at TEXT NOT NULL,
                body TEXT NOT NULL,
                received_at TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'queued',
                outcome TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                processed_at TEXT,
                rejection TEXT
            );
            -- A candidate's head: the oldest queued event of the candidate. Partial (queued
            -- rows only): closing a job deletes its entry instead of moving it, and the
            -- index stays as small as the queue.
            CREATE INDEX IF NOT EXISTS events_queued_by_candidate ON events(candidate, seq)
                WHERE state = 'queued';
            -- The queue in seq order is the table itself from the oldest queued row on
            -- (see `Store::next_jobs`): an index of it, which stores before this one
            -- kept, was one more page written by every commit.
            DROP INDEX IF EXISTS events_queue;",
        )
        .context("creating tables")?;
        // The oldest queued row, read from the (small) queue index once.
        let oldest: i64 = conn
            .query_row(
                "SELECT COALESCE(MIN(seq), (SELECT COALESCE(MAX(seq), 0) + 1 FROM events))
                 FROM events WHERE state = 'queued'",
                [],
                |row| row.get(0),
            )
            .context("finding the queue's oldest event")?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .context("opening the database for reading")?;
        reader
            .busy_timeout(std::time::Duration::from_secs(5))
            .context("setting busy timeout")?;
        let conn = Arc::new(Mutex::new(conn));
        let (writes, queue) = mpsc::channel();
        let writer = {
            let conn = Arc::clone(&conn);
            std::thread::Builder::new()
                .name("relay-store".into())
                .spawn(move || write_loop(&conn, &queue))
                .map_err(|err| StoreError {
                    context: "starting the writer thread",
                    source: Box::new(err),
                })?
        };
        Ok(Store {
            conn,
            _lock: lock,
            reader: Mutex::new(reader),
            oldest: AtomicI64::new(oldest),
            writes: Some(writes),
            writer: Some(writer),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// Hands `write` to the writer thread and waits for its group's commit.
    async fn write<T>(
        &self,
        write: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .writes
            .as_ref()
            .is_some_and(|writes| writes.send(write(reply)).is_ok());
        if !sent {
            return Err(StoreError::stopped());
        }
        answer.await.unwrap_or_else(|_| Err(StoreError::stopped()))
    }

    /// Records an event unless its idempotency key is known; returns once committed.
    pub async fn accept(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        self.write(|reply| Write::Accept(event, reply)).await
    }

    /// The oldest queued job of each candidate not in `busy`, oldest first, at most `limit`.
    pub fn next_jobs(&self, busy: &[String], limit: usize) -> Result<Vec<Job>, StoreError> {
        let conn = lock(&self.reader);
        // The table from the oldest queued row on, in seq (rowid) order: the closed rows
        // between the old mark and the first queued one are passed over once, ever.
        let oldest: Option<i64> = conn
            .prepare_cached(
                "SELECT seq FROM events WHERE seq >= ?1 AND state = 'queued' ORDER BY seq LIMIT 1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![self.oldest.load(Ordering::Relaxed)], |row| {
                        row.get(0)
                    })
                    .optional()
            })
            .context("finding the queue's oldest event")?;
        let Some(oldest) = oldest else {
            return Ok(Vec::new());
        };
        self.oldest.store(oldest, Ordering::Relaxed);
        // From there, the walk stops at the first `limit` heads, where a sort would read
        // the whole queue.
        let mut statement = conn
            .prepare_cached(
                "SELECT seq, idempotency_key, candidate, contract, occurred_at, body, received_at, attempts, rejection
                 FROM events e WHERE seq >= ?1 AND state = 'queued'
                 AND seq = (SELECT MIN(seq) FROM events f WHERE f.state = 'queued' AND f.candidate = e.candidate)
                 ORDER BY seq",
            )
            .context("preparing the queue query")?;
        let rows = statement
            .query_map(params![oldest], |row| {
                Ok(Job {
                    seq: row.get(0)?,
                    idempotency_key: row.get(1)?,
                    candidate: row.get(2)?,
                    contract: row.get(3)?,
                    occurred_at: row.get(4)?,
                    body: row.get(5)?,
                    received_at: row.get(6)?,
                    attempts: row.get(7)?,
                    rejection: row.get(8)?,
                })
            })
            .context("reading the queue")?;
        let mut jobs = Vec::new();
        for job in rows {
            let job = job.context("reading a queued job")?;
            if !busy.contains(&job.candidate) {
                jobs.push(job);
                if jobs.len() == limit {
                    break;
                }
            }
        }
        Ok(jobs)
    }

    /// Counts an attempt that did not finish its job ([`Store::finish`] counts the
    /// one that did; an attempt a crash interrupts is not counted).
    pub fn attempted(&self, seq: i64) -> Result<(), StoreError> {
        self.lock()
            .prepare_cached("UPDATE events SET attempts = attempts + 1 WHERE seq = ?1")
            .and_then(|mut statement| statement.execute(params![seq]))
            .context("counting an attempt")?;
        Ok(())
    }

    /// Remembers that the ATS refused a job as a mapping error, so that a restart
    /// files the exception item instead of writing the event again.
    pub fn reject(&self, seq: i64, reason: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE events SET rejection = ?2 WHERE seq = ?1",
                params![seq, reason],
            )
            .context("recording a rejection")?;
        Ok(())
    }

    /// Closes a job with its outcome, counting the attempt that finished it;
    /// returns once committed.
    pub async fn finish(
        &self,
        seq: i64,
        outcome: Outcome,
        processed_at: &str,
    ) -> Result<(), StoreError> {
        let finish = Finish {
            seq,
            outcome,
            processed_at: processed_at.to_owned(),
        };
        self.write(|reply| Write::Finish(finish, reply)).await
    }

    /// How many jobs wait.
    pub fn queued(&self) -> Result<u64, StoreError> {
        let count: i64 = lock(&self.reader)
            .prepare_cached("SELECT COUNT(*) FROM events WHERE state = 'queued'")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .context("counting the queue")?;
        Ok(count.unsigned_abs())
    }

    /// The outcome of the event with this idempotency key, if it finished.
    pub fn outcome_of(&self, idempotency_key: &str) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row(
                "SELECT outcome FROM events WHERE idempotency_key = ?1",
                params![idempotency_key],
                |row| row.get(0),
            )
            .optional()
            .map(Option::flatten)
            .context("reading an outcome")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accept(store: &Store, key: &str, candidate: &str) -> Accepted {
        store
            .accept(NewEvent {
                idempotency_key: key.into(),
                webhook_id: format!("wh_{key}"),
                candidate: candidate.into(),
                contract: "c".into(),
                occurred_at: "2026-01-01T00:00:00Z".into(),
                body: "{}".into(),
                received_at: "now".into(),
            })
            .await
            .expect("accepted")
    }

    #[tokio::test]
    async fn duplicates_are_recognised_by_key_across_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.db");
        let store = Store::open(&path).expect("opens");
        assert_eq!(accept(&store, "k1", "A").await, Accepted::Queued(1));
        assert_eq!(accept(&store, "k1", "A").await, Accepted::Duplicate);
        drop(store);
        let store = Store::open(&path).expect("reopens");
        assert_eq!(
            accept(&store, "k1", "A").await,
            Accepted::Duplicate,
            "the index is durable"
        );
        assert_eq!(store.queued().expect("count"), 1, "the queue is durable");
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_folder_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.db");
        let short = std::time::Duration::from_millis(100);
        let first = Store::open(&path).expect("opens");
        let err = Store::open_waiting(&path, short).expect_err("the folder is taken");
        let text = format!(
            "{err}: {}",
            std::error::Error::source(&err).expect("a source")
        );
        assert!(
            text.contains("another relay is using this state folder"),
            "{text}"
        );
        assert!(text.contains("relay.lock is locked"), "{text}");
        // A relay restarted while the old one is still dying waits for its lock.
        let dying = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(first);
        });
        Store::open_waiting(&path, std::time::Duration::from_secs(30))
            .expect("the lock is taken once the first store has closed");
        dying.join().expect("closed");
    }

    #[tokio::test]
    async fn a_rejection_survives_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.db");
        let store = Store::open(&path).expect("opens");
        accept(&store, "k1", "A").await;
        let job = &store.next_jobs(&[], 1).expect("jobs")[0];
        assert_eq!(job.rejection, None, "a new job was never refused");
        store
            .reject(job.seq, "mapping_error: 422")
            .expect("recorded");
        drop(store);
        let store = Store::open(&path).expect("reopens");
        let job = &store.next_jobs(&[], 1).expect("jobs")[0];
        assert_eq!(
            job.rejection.as_deref(),
            Some("mapping_error: 422"),
            "a restart files the exception instead of writing the event again"
        );
    }

    #[tokio::test]
    async fn jobs_come_one_per_candidate_in_arrival_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("relay.db")).expect("opens");
        for (key, candidate) in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("c1", "C")] {
            accept(&store, key, candidate).await;
        }
        let keys = |jobs: Vec<Job>| {
            jobs.into_iter()
                .map(|j| j.idempotency_key)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(store.next_jobs(&[], 10).expect("jobs")),
            ["a1", "b1", "c1"],
            "a2 waits for a1"
        );
        assert_eq!(
            keys(store.next_jobs(&["B".into()], 10).expect("jobs")),
            ["a1", "c1"],
            "busy candidates wait"
        );
        store
            .finish(1, Outcome::Applied, "later")
            .await
            .expect("finished");
        assert_eq!(
            keys(store.next_jobs(&[], 1).expect("jobs")),
            ["b1"],
            "limit respected, oldest first"
        );
        assert_eq!(
            keys(store.next_jobs(&["B".into()], 10).expect("jobs")),
            ["a2", "c1"]
        );
        assert_eq!(
            store.outcome_of("a1").expect("read").as_deref(),
            Some("applied")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_stay_exact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.db");
        let store = Arc::new(Store::open(&path).expect("opens"));
        // 40 keys, the first 10 twice, all at once: the group commits must still
        // queue each key once and answer every caller.
        let mut tasks = tokio::task::JoinSet::new();
        for i in (0..40).chain(0..10) {
            let store = Arc::clone(&store);
            tasks.spawn(async move { accept(&store, &format!("k{i}"), &format!("C{i}")).await });
        }
        let mut queued = 0;
        let mut duplicates = 0;
        while let Some(answer) = tasks.join_next().await {
            match answer.expect("task") {
                Accepted::Queued(_) => queued += 1,
                Accepted::Duplicate => duplicates += 1,
            }
        }
        assert_eq!((queued, duplicates), (40, 10));
        let store = Arc::into_inner(store).expect("the only owner");
        drop(store);
        let store = Store::open(&path).expect("reopens");
        assert_eq!(
            store.queued().expect("count"),
            40,
            "every acknowledged event was committed"
        );
    }
}
