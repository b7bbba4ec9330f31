//! The relay's durable state in SQLite (WAL): an idempotency index and a work queue.
//!
//! A webhook is acknowledged only after its row is committed, so a crash after the
//! 2xx loses nothing; the `UNIQUE` idempotency key makes concurrent duplicates race
//! safely inside the database instead of in the relay's memory.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("relay store: {context}")]
pub struct StoreError {
    context: &'static str,
    #[source]
    source: rusqlite::Error,
}

impl StoreError {
    /// A failure of `context` (`opening the policy store`, …).
    pub(crate) fn new(context: &'static str, source: rusqlite::Error) -> Self {
        StoreError { context, source }
    }
}

trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError { context, source })
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

/// The store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).context("opening the database")?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context("enabling WAL")?;
        // NORMAL is durable across process crashes in WAL mode; only a power cut can
        // lose the last commits, which a sandbox run does not rehearse.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context("setting synchronous")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .context("setting busy timeout")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
            CREATE INDEX IF NOT EXISTS events_queued ON events(state, candidate, seq);
            -- The worker takes candidates' heads oldest first: this walks the queue in
            -- seq order and stops at the first few, where a sort would read it all.
            CREATE INDEX IF NOT EXISTS events_state_seq ON events(state, seq);",
        )
        .context("creating tables")?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records an event unless its idempotency key is known.
    #[expect(
        clippy::too_many_arguments,
        reason = "one column each; a struct would only rename them"
    )]
    pub fn accept(
        &self,
        idempotency_key: &str,
        webhook_id: &str,
        candidate: &str,
        contract: &str,
        occurred_at: &str,
        body: &str,
        received_at: &str,
    ) -> Result<Accepted, StoreError> {
        let conn = self.lock();
        let inserted = conn
            .execute(
                "INSERT INTO events (idempotency_key, webhook_id, candidate, contract, occurred_at, body, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(idempotency_key) DO NOTHING",
                params![idempotency_key, webhook_id, candidate, contract, occurred_at, body, received_at],
            )
            .context("queueing an event")?;
        Ok(if inserted == 1 {
            Accepted::Queued(conn.last_insert_rowid())
        } else {
            Accepted::Duplicate
        })
    }

    /// The oldest queued job of each candidate not in `busy`, oldest first, at most `limit`.
    pub fn next_jobs(&self, busy: &[String], limit: usize) -> Result<Vec<Job>, StoreError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare_cached(
                "SELECT seq, idempotency_key, candidate, contract, occurred_at, body, received_at, attempts, rejection
                 FROM events e WHERE state = 'queued'
                 AND seq = (SELECT MIN(seq) FROM events f WHERE f.state = 'queued' AND f.candidate = e.candidate)
                 ORDER BY seq",
            )
            .context("preparing the queue query")?;
        let rows = statement
            .query_map([], |row| {
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

    /// Counts an attempt on a job.
    pub fn attempted(&self, seq: i64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE events SET attempts = attempts + 1 WHERE seq = ?1",
                params![seq],
            )
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

    /// Closes a job with its outcome.
    pub fn finish(&self, seq: i64, outcome: Outcome, processed_at: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE events SET state = 'done', outcome = ?2, processed_at = ?3 WHERE seq = ?1",
                params![seq, outcome.as_str(), processed_at],
            )
            .context("closing a job")?;
        Ok(())
    }

    /// How many jobs wait.
    pub fn queued(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM events WHERE state = 'queued'",
                [],
                |row| row.get(0),
            )
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

    fn accept(store: &Store, key: &str, candidate: &str) -> Accepted {
        store
            .accept(
                key,
                &format!("wh_{key}"),
                candidate,
                "c",
                "2026-01-01T00:00:00Z",
                "{}",
                "now",
            )
            .expect("accepted")
    }

    #[test]
    fn duplicates_are_recognised_by_key_across_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.db");
        let store = Store::open(&path).expect("opens");
        assert_eq!(accept(&store, "k1", "A"), Accepted::Queued(1));
        assert_eq!(accept(&store, "k1", "A"), Accepted::Duplicate);
        drop(store);
        let store = Store::open(&path).expect("reopens");
        assert_eq!(
            accept(&store, "k1", "A"),
            Accepted::Duplicate,
            "the index is durable"
        );
        assert_eq!(store.queued().expect("count"), 1, "the queue is durable");
    }

    #[test]
    fn a_rejection_survives_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("relay.db");
        let store = Store::open(&path).expect("opens");
        accept(&store, "k1", "A");
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

    #[test]
    fn jobs_come_one_per_candidate_in_arrival_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("relay.db")).expect("opens");
        for (key, candidate) in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("c1", "C")] {
            accept(&store, key, candidate);
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
}
