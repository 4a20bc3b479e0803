//! Group commit: the entries of many concurrent callers appended in one transaction, under
//! one signed checkpoint, with one sync of the database file.
//!
//! # Durability
//!
//! A caller receives its entry's index only after SQLite's `COMMIT` of the batch returned. In
//! WAL mode with `synchronous = FULL` (or `EXTRA`), SQLite syncs the write-ahead log to
//! disk before `COMMIT` returns, so every index handed out survives a crash or a power
//! loss. With `synchronous = NORMAL`, a WAL commit is synced only at the next WAL
//! checkpoint and the last commits may be lost, so [`GroupCommitter::start`] rejects any
//! other setting.
//!
//! # Batching
//!
//! The committer thread waits for a first entry, then takes every entry already queued,
//! up to the batch limit, without waiting for more. While one batch syncs, the next one
//! queues, so the batch size follows the load: one entry when callers are few, hundreds
//! when many callers wait on a slow disk.

use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{LedgerError, Result};
use crate::note::NoteSigner;
use crate::store::AuditLog;

/// The default maximum number of entries in one transaction.
pub const DEFAULT_MAX_BATCH: usize = 4096;

/// A failure of the group committer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The connection is not set up to make a commit durable.
    #[error(
        "group commit requires journal_mode = wal and synchronous = FULL (2) or EXTRA (3), \
         but the connection has journal_mode = {journal_mode} and synchronous = {synchronous}; \
         set both pragmas on the connection before starting the committer"
    )]
    NotDurable {
        /// The connection's `journal_mode`.
        journal_mode: String,
        /// The connection's `synchronous` level.
        synchronous: i64,
    },

    /// The batch that contained the entry was rolled back, so the entry is not in the log.
    #[error("audit log batch of {entries} entries was rolled back: {source}")]
    BatchFailed {
        /// The number of entries in the failed batch.
        entries: usize,
        /// The error that stopped the batch, shared by all its callers.
        source: Arc<LedgerError>,
    },

    /// The committer thread has stopped, so the entry was not appended.
    #[error("the audit log committer has stopped")]
    Stopped,

    /// Reading the connection's settings failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Counters of the batches a [`GroupCommitter`] committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Committed transactions.
    pub batches: u64,
    /// Entries in the committed transactions.
    pub entries: u64,
    /// Entries in the largest committed transaction.
    pub max_batch: u64,
}

/// One entry waiting for the committer, with the channel for its reply.
struct Request {
    entry: Vec<u8>,
    reply: SyncSender<Result<u64, CommitError>>,
}

/// An entry handed to [`GroupCommitter::submit`] whose batch may not be committed yet.
#[derive(Debug)]
#[must_use = "the entry may not be committed yet; call `wait` for its index"]
pub struct PendingAppend {
    reply: Receiver<Result<u64, CommitError>>,
}

impl PendingAppend {
    /// Blocks until the entry's batch is committed or rolled back, and returns the entry's
    /// index.
    ///
    /// # Errors
    ///
    /// [`CommitError::BatchFailed`] if the batch was rolled back, and
    /// [`CommitError::Stopped`] if the committer stopped first.
    pub fn wait(self) -> Result<u64, CommitError> {
        self.reply.recv().unwrap_or(Err(CommitError::Stopped))
    }
}

/// A thread that owns a connection and appends the entries submitted from any number of
/// threads in shared transactions: one transaction, one signed checkpoint and one sync
/// per batch.
///
/// Share it by reference (it is `Sync`) or in an `Arc`. Dropping it or calling
/// [`GroupCommitter::shutdown`] commits the entries already submitted, then stops the
/// thread.
#[derive(Debug)]
pub struct GroupCommitter {
    requests: Option<Sender<Request>>,
    worker: Option<JoinHandle<Connection>>,
    stats: Arc<Mutex<CommitStats>>,
}

impl GroupCommitter {
    /// Starts the committer thread on `conn`, which signs a checkpoint of `origin` with
    /// `signer` after each batch of at most `max_batch` entries (at least 1).
    ///
    /// The connection's audit tables must exist ([`AuditLog::create_schema`]). Other
    /// connections may append to the same log if they open their transactions with
    /// `TransactionBehavior::Immediate`, as the committer does.
    ///
    /// # Errors
    ///
    /// [`CommitError::NotDurable`] unless the connection is in WAL mode with
    /// `synchronous = FULL` or `EXTRA`, and [`CommitError::Ledger`] if reading those
    /// settings fails.
    pub fn start(
        conn: Connection,
        origin: &str,
        signer: NoteSigner,
        max_batch: usize,
    ) -> Result<Self, CommitError> {
        check_durable(&conn)?;
        let (requests, queue) = mpsc::channel();
        let stats = Arc::new(Mutex::new(CommitStats::default()));
        let committer = Committer {
            conn,
            origin: origin.to_owned(),
            signer,
            max_batch: max_batch.max(1),
            stats: Arc::clone(&stats),
        };
        let worker = std::thread::Builder::new()
            .name("audit-commit".into())
            .spawn(move || committer.run(&queue))
            .map_err(|_| CommitError::Stopped)?;
        Ok(Self {
            requests: Some(requests),
            worker: Some(worker),
            stats,
        })
    }

    /// Queues an entry and returns at once. [`PendingAppend::wait`] returns its index once
    /// its batch is committed.
    ///
    /// Entries submitted from one thread get increasing indexes in submission order.
    pub fn submit(&self, entry: Vec<u8>) -> PendingAppend {
        let (reply, receiver) = mpsc::sync_channel(1);
        if let Some(requests) = &self.requests {
            // If the thread has stopped, the request and its reply sender are dropped here,
            // and `wait` returns `Stopped`.
            let _ = requests.send(Request { entry, reply });
        }
        PendingAppend { reply: receiver }
    }

    /// Appends an entry, blocks until its batch is committed and returns the entry's index.
    ///
    /// # Errors
    ///
    /// As [`PendingAppend::wait`].
    pub fn append(&self, entry: Vec<u8>) -> Result<u64, CommitError> {
        self.submit(entry).wait()
    }

    /// Returns the counters of the batches committed so far.
    pub fn stats(&self) -> CommitStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits the entries already submitted, stops the thread and returns its connection.
    ///
    /// # Errors
    ///
    /// [`CommitError::Stopped`] if the thread panicked.
    pub fn shutdown(mut self) -> Result<Connection, CommitError> {
        self.requests = None;
        let worker = self.worker.take().ok_or(CommitError::Stopped)?;
        worker.join().map_err(|_| CommitError::Stopped)
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop once the queued entries are committed.
        self.requests = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The state of the committer thread.
struct Committer {
    conn: Connection,
    origin: String,
    signer: NoteSigner,
    max_batch: usize,
    stats: Arc<Mutex<CommitStats>>,
}

impl Committer {
    /// Commits batches until every sender is dropped and the queue is empty.
    fn run(mut self, queue: &Receiver<Request>) -> Connection {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Ok(first) = queue.recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            match self.commit(&batch) {
                Ok(indexes) => {
                    self.count(batch.len());
                    // Replies go out only now that COMMIT has returned.
                    for (request, index) in batch.drain(..).zip(indexes) {
                        let _ = request.reply.send(Ok(index));
                    }
                }
                Err(error) => {
                    let entries = batch.len();
                    let source = Arc::new(error);
                    for request in batch.drain(..) {
                        let _ = request.reply.send(Err(CommitError::BatchFailed {
                            entries,
                            source: Arc::clone(&source),
                        }));
                    }
                }
            }
        }
        self.conn
    }

    /// Appends the batch and signs a checkpoint in one transaction, and commits it.
    fn commit(&mut self, batch: &[Request]) -> Result<Range<u64>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let indexes = AuditLog::append_batch(&tx, batch.iter().map(|request| &request.entry))?;
        AuditLog::sign_checkpoint(&tx, &self.origin, &self.signer)?;
        tx.commit()?;
        Ok(indexes)
    }

    fn count(&self, entries: usize) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.batches += 1;
        stats.entries += entries as u64;
        stats.max_batch = stats.max_batch.max(entries as u64);
    }
}

/// Checks that a commit on `conn` is durable: WAL mode and `synchronous` FULL or EXTRA.
fn check_durable(conn: &Connection) -> Result<(), CommitError> {
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .map_err(LedgerError::from)?;
    let synchronous: i64 = conn
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .map_err(LedgerError::from)?;
    if !journal_mode.eq_ignore_ascii_case("wal") || synchronous < 2 {
        return Err(CommitError::NotDurable {
            journal_mode,
            synchronous,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
