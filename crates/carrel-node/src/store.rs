//! The node's SQLite database: every state table and the audit log, so that each
//! decision and the state change it records commit in one transaction.
//!
//! A write runs inside [`Store::audited`]: the closure changes state and pushes audit
//! events, then the events are appended to the Merkle log, a checkpoint is signed,
//! and everything commits together. When the closure fails, its changes roll back
//! and one rejection event is committed alone, so a rejected request changes nothing
//! but the log line that records it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use carrel_ledger::AuditLog;
use carrel_model::AuditEvent;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{NodeError, NodeResult};
use crate::identity::LogSigner;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS participants (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    public_key TEXT NOT NULL,
    endpoint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    signer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (signer, nonce)
);
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    path TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY,
    offer_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    reasons TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS negotiations (
    id TEXT PRIMARY KEY,
    peer_pid TEXT,
    side TEXT NOT NULL,
    peer TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    terms TEXT NOT NULL,
    signed TEXT,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS agreements (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    queries_used INTEGER NOT NULL DEFAULT 0,
    epsilon_spent REAL NOT NULL DEFAULT 0,
    delta_spent REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY,
    agreement_id TEXT NOT NULL,
    time TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    sql_sha256 TEXT NOT NULL,
    result_sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_checkpoints (
    job_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    agreement_id TEXT,
    peers TEXT NOT NULL,
    state TEXT NOT NULL,
    phase TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    transcript_sha256 TEXT,
    result TEXT,
    error TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
";

/// The node's database with its audit log.
pub struct Store {
    conn: Mutex<Connection>,
    origin: String,
    signer: LogSigner,
    /// Set when the node stops serving: a job that fails from then on failed because the
    /// process stops, and is ended at the next start instead.
    stopping: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and signs the first
    /// checkpoint of an empty log.
    ///
    /// # Errors
    ///
    /// [`NodeError::Database`] or [`NodeError::Ledger`] when the file cannot be used.
    pub fn open(path: &Path, origin: String, signer: LogSigner) -> NodeResult<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::witnessing::SCHEMA)?;
        AuditLog::create_schema(&conn)?;
        conn.execute_batch(crate::audit::INDEXES)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if AuditLog::latest_checkpoint(&tx)?.is_none() {
            AuditLog::sign_checkpoint(&tx, &origin, signer.note_signer())?;
        }
        tx.commit()?;
        Ok(Self {
            conn: Mutex::new(conn),
            origin,
            signer,
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Records that the node stops serving, so that job failures are no longer recorded.
    pub fn mark_stopping(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Returns whether the node is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns the audit log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction
        // rolls back on drop), so a poisoned lock is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a read-only closure on the database.
    ///
    /// # Errors
    ///
    /// The closure's error.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> NodeResult<T>) -> NodeResult<T> {
        f(&self.lock())
    }

    /// Runs a closure that writes state that needs no audit entry, such as progress.
    ///
    /// # Errors
    ///
    /// The closure's error.
    pub fn write<T>(&self, f: impl FnOnce(&Connection) -> NodeResult<T>) -> NodeResult<T> {
        f(&self.lock())
    }

    /// Runs `f` in one write transaction, appends the events it pushes to the audit
    /// log, signs a checkpoint and commits. When `f` fails, its changes roll back and
    /// an event of kind `{kind}.rejected` naming the error is committed alone.
    ///
    /// # Errors
    ///
    /// The closure's error, after the rejection is recorded; or a storage error.
    pub fn audited<T>(
        &self,
        kind: &str,
        actor: &str,
        agreement: Option<&str>,
        f: impl FnOnce(&Transaction, &mut Vec<AuditEvent>) -> NodeResult<T>,
    ) -> NodeResult<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut events = Vec::new();
        match f(&tx, &mut events) {
            Ok(value) => {
                self.append(&tx, &events)?;
                tx.commit()?;
                Ok(value)
            }
            Err(error) => {
                drop(tx);
                drop(conn);
                Err(self.reject(kind, actor, agreement, error))
            }
        }
    }

    /// Records the rejection of a request, with the error's code and message, as an
    /// event of kind `{kind}.rejected`, and returns the error. When even that write
    /// fails, the storage error is logged and the original error returned.
    pub fn reject(
        &self,
        kind: &str,
        actor: &str,
        agreement: Option<&str>,
        error: NodeError,
    ) -> NodeError {
        let (_, code) = error.status_and_code();
        let detail = serde_json::json!({ "code": code, "reason": error.to_string() });
        let mut event = AuditEvent::now(&format!("{kind}.rejected"), actor, false, detail);
        event.agreement = agreement.map(str::to_owned);
        let mut conn = self.lock();
        let written = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(NodeError::from)
            .and_then(|tx| {
                self.append(&tx, &[event])?;
                tx.commit()?;
                Ok(())
            });
        if let Err(write_error) = written {
            tracing::error!(target: "carrel::audit", kind, %write_error, "rejection not recorded");
        }
        error
    }

    /// Appends one event in its own transaction.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn record(&self, event: AuditEvent) -> NodeResult<()> {
        let kind = event.kind.clone();
        self.audited(&kind, &event.actor.clone(), None, |_, events| {
            events.push(event);
            Ok(())
        })
    }

    fn append(&self, tx: &Transaction, events: &[AuditEvent]) -> NodeResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        for event in events {
            AuditLog::append(tx, &event.to_entry())?;
        }
        AuditLog::sign_checkpoint(tx, &self.origin, self.signer.note_signer())?;
        Ok(())
    }
}

/// Reads a JSON column into a value.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> NodeResult<T> {
    serde_json::from_str(text)
        .map_err(|e| NodeError::Internal(format!("stored JSON is invalid: {e}")))
}

/// Writes a value as JSON text for a column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Model types serialise without failure: plain fields, strings and numbers.
    serde_json::to_string(value).expect("model value serialises")
}

/// Maps "no row" to [`NodeError::NotFound`].
pub(crate) fn found<T>(result: rusqlite::Result<T>, what: &'static str, id: &str) -> NodeResult<T> {
    match result {
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(NodeError::NotFound {
            what,
            id: id.to_owned(),
        }),
        other => Ok(other?),
    }
}
