//! The audit log kept in the node's SQLite database.
//!
//! Guarantee: entries are only appended, and each append costs O(log n) reads and writes.
//! [`AuditLog::verify`] detects any change made behind the ledger's back to an entry's
//! bytes, the order of entries, a stored hash or a stored checkpoint. Its error names the
//! entry index or checkpoint where the log stops matching itself or its signatures.
//!
//! # Threat model
//!
//! The node writes the log; anyone with write access to the database file can change it.
//! Such a change cannot be hidden from [`AuditLog::verify`] unless the log's signing key
//! signs the changed tree, and cannot be hidden from a peer that kept an earlier checkpoint
//! and requests a consistency proof. A node that has the key can still rewrite history
//! and sign it; only witnesses that cosign checkpoints and remember them (not built yet)
//! expose that. Entries appended after the latest checkpoint are checked against their
//! stored hashes but no signature covers them until the next [`AuditLog::sign_checkpoint`].
//!
//! # Transactions
//!
//! The writing functions take a [`Transaction`] from the caller, so that an audit entry
//! commits or rolls back together with the state change it records. Open it with
//! `TransactionBehavior::Immediate` when several connections write, so that two appends
//! do not read the same tree size. [`crate::GroupCommitter`] appends the entries of many
//! callers in one transaction, for logs that record more than a few entries per second.
//!
//! # Tiles
//!
//! Besides the entries, the log stores the Merkle tree's node hashes as tiles of 256
//! (`crate::tiles`), updated in the same transaction as the entries. A proof reads O(log n)
//! tiles instead of every leaf hash.

use std::ops::Range;

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use crate::checkpoint::{Checkpoint, open_checkpoint};
use crate::error::{LedgerError, Result};
use crate::merkle::{self, Frontier, Hash};
use crate::note::{Note, NoteSigner, NoteVerifier};
use crate::tiles::{self, TileEdge, TileReader};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_entries (
    idx INTEGER PRIMARY KEY CHECK (idx >= 0),
    entry BLOB NOT NULL,
    leaf_hash BLOB NOT NULL CHECK (length(leaf_hash) = 32)
) STRICT;
CREATE TABLE IF NOT EXISTS audit_frontier (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    nodes BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),
    note TEXT NOT NULL
) STRICT;
INSERT OR IGNORE INTO audit_frontier (id, nodes) VALUES (0, x'');
";

/// The append-only audit log in the tables `audit_entries` (entry bytes and leaf hash by
/// index), `audit_frontier` (the roots of the perfect subtrees on the right edge of the
/// tree, which make appends logarithmic), `audit_tiles` (the tree's node hashes in tiles
/// of 256, which make proofs logarithmic) and `audit_checkpoints` (signed notes by tree
/// size).
#[derive(Debug)]
pub struct AuditLog;

/// A checkpoint together with the signed note it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The full note text, signature lines included.
    pub note: String,
}

/// The summary of a successful [`AuditLog::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The number of entries in the log.
    pub tree_size: u64,
    /// The root over all entries.
    pub root_hash: Hash,
    /// The latest checkpoint, whose signature was verified.
    pub checkpoint: Checkpoint,
    /// How many stored checkpoints were verified, the latest included.
    pub checkpoints_checked: u64,
    /// Entries after the latest checkpoint, not yet covered by a signature.
    pub unsigned_entries: u64,
}

impl AuditLog {
    /// Creates the audit tables if they do not exist, all in one savepoint.
    ///
    /// A log stored before the tile table existed is upgraded: the tiles are filled from
    /// the stored leaf hashes in one pass, O(n) reads, before the savepoint is released.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Tampered`] if the upgrade finds a gap in the entry indexes, and
    /// [`LedgerError::Sqlite`] if the database fails. Nothing is created after an error.
    pub fn create_schema(conn: &Connection) -> Result<()> {
        conn.execute_batch("SAVEPOINT audit_create_schema")?;
        let created = create_tables(conn);
        if created.is_err() {
            conn.execute_batch("ROLLBACK TO audit_create_schema")?;
        }
        conn.execute_batch("RELEASE audit_create_schema")?;
        created
    }

    /// Appends an entry and returns its index.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Tampered`] if the stored frontier or right-edge tiles do not fit the
    /// tree size, and [`LedgerError::Sqlite`] if the database fails.
    pub fn append(tx: &Transaction<'_>, entry: &[u8]) -> Result<u64> {
        Ok(Self::append_batch(tx, [entry])?.start)
    }

    /// Appends entries in order and returns the range of their indexes.
    ///
    /// It reads and writes the frontier and the right-edge tiles once for the whole batch,
    /// so a batch costs O(k + log n) reads and writes for k entries. The entries are
    /// durable once the caller commits `tx`; [`crate::GroupCommitter`] batches the entries
    /// of concurrent callers this way.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Tampered`] if the stored frontier or right-edge tiles do not fit the
    /// tree size, and [`LedgerError::Sqlite`] if the database fails. The caller then rolls
    /// `tx` back, because some entries may have been written.
    pub fn append_batch<I>(tx: &Transaction<'_>, entries: I) -> Result<Range<u64>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut frontier = load_frontier(tx)?;
        let first = frontier.size();
        let mut edge = TileEdge::load(tx, first)?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_entries (idx, entry, leaf_hash) VALUES (?1, ?2, ?3)",
        )?;
        for entry in entries {
            let entry = entry.as_ref();
            let leaf_hash = merkle::leaf_hash(entry);
            insert.execute(params![to_sql(frontier.size()), entry, &leaf_hash[..]])?;
            frontier.push(leaf_hash);
            edge.push(leaf_hash, |tile| tiles::write_tile(tx, tile))?;
        }
        let end = frontier.size();
        if end > first {
            edge.write_partial_since(tx, first)?;
            tx.prepare_cached("UPDATE audit_frontier SET nodes = ?1 WHERE id = 0")?
                .execute([frontier.nodes().concat()])?;
        }
        Ok(first..end)
    }

    /// Signs a checkpoint of the log in its current state, stores it and returns it. Call it after
    /// a batch of appends; a new log's first checkpoint has size 0 and the empty root.
    ///
    /// Signing again at the same size replaces the stored note, for instance with one
    /// from a new key.
    ///
    /// # Errors
    ///
    /// [`LedgerError::OriginMismatch`] if the log already has checkpoints for another
    /// origin; [`LedgerError::Tampered`] if the log no longer agrees with its latest
    /// checkpoint at that size or is shorter than it; [`LedgerError::InvalidNote`] for an
    /// invalid origin; [`LedgerError::Sqlite`] if the database fails.
    pub fn sign_checkpoint(
        tx: &Transaction<'_>,
        origin: &str,
        signer: &NoteSigner,
    ) -> Result<SignedCheckpoint> {
        let frontier = load_frontier(tx)?;
        let checkpoint = Checkpoint::new(origin, frontier.size(), frontier.root())?;
        if let Some(latest) = Self::latest_checkpoint(tx)? {
            check_extends(&latest.checkpoint, &checkpoint)?;
        }

        let note = checkpoint.sign(signer);
        tx.prepare_cached(
            "INSERT INTO audit_checkpoints (tree_size, root_hash, note) VALUES (?1, ?2, ?3)
             ON CONFLICT (tree_size) DO UPDATE SET note = excluded.note",
        )?
        .execute(params![
            to_sql(checkpoint.tree_size()),
            &checkpoint.root_hash()[..],
            note
        ])?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// Counts the entries in the log.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Sqlite`] if the database fails.
    pub fn tree_size(conn: &Connection) -> Result<u64> {
        let size: i64 = conn
            .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries")?
            .query_row([], |row| row.get(0))?;
        from_sql(size)
    }

    /// Reads the bytes of the entry at `index`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::IndexOutOfRange`] if there is no such entry, and
    /// [`LedgerError::Sqlite`] if the database fails.
    pub fn entry(conn: &Connection, index: u64) -> Result<Vec<u8>> {
        let entry = conn
            .prepare_cached("SELECT entry FROM audit_entries WHERE idx = ?1")?
            .query_row([to_sql(index)], |row| row.get(0))
            .optional()?;
        match entry {
            Some(entry) => Ok(entry),
            None => Err(LedgerError::IndexOutOfRange {
                index,
                tree_size: Self::tree_size(conn)?,
            }),
        }
    }

    /// Reads the stored checkpoint with the largest tree size, if any was signed. Its note
    /// is parsed but not verified, because [`AuditLog::verify`] does that.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidNote`] or [`LedgerError::Tampered`] if the stored note is
    /// unreadable or disagrees with its row, and [`LedgerError::Sqlite`] if the database
    /// fails.
    pub fn latest_checkpoint(conn: &Connection) -> Result<Option<SignedCheckpoint>> {
        let row = conn
            .prepare_cached(
                "SELECT tree_size, root_hash, note FROM audit_checkpoints
                 ORDER BY tree_size DESC LIMIT 1",
            )?
            .query_row([], CheckpointRow::read)
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        let checkpoint = Checkpoint::parse_body(Note::parse(&row.note)?.text())?;
        row.check_matches(&checkpoint)?;
        Ok(Some(SignedCheckpoint {
            checkpoint,
            note: row.note,
        }))
    }

    /// Builds the inclusion proof for the entry at `index` in the tree of size `tree_size`.
    ///
    /// It reads at most two tiles per tile level and computes each proof hash from at most
    /// 128 hashes of one tile, so it costs O(log n) reads and hashes. The proof equals
    /// [`merkle::inclusion_proof`] over the first `tree_size` leaf hashes.
    ///
    /// # Errors
    ///
    /// [`LedgerError::TreeSizeOutOfRange`] if `tree_size` exceeds the log,
    /// [`LedgerError::IndexOutOfRange`] if `index >= tree_size`, and
    /// [`LedgerError::Sqlite`] if the database fails.
    pub fn inclusion_proof(conn: &Connection, index: u64, tree_size: u64) -> Result<Vec<Hash>> {
        if index >= tree_size {
            return Err(LedgerError::IndexOutOfRange { index, tree_size });
        }
        check_tree_size(conn, tree_size)?;
        TileReader::new(conn, tree_size).inclusion_proof(index)
    }

    /// Builds the consistency proof from the tree of size `old_size` to that of size
    /// `new_size`.
    ///
    /// Like [`AuditLog::inclusion_proof`] it reads O(log n) tiles, and the proof equals
    /// [`merkle::consistency_proof`] over the first `new_size` leaf hashes.
    ///
    /// # Errors
    ///
    /// [`LedgerError::TreeSizeOutOfRange`] if `new_size` exceeds the log,
    /// [`LedgerError::OldSizeExceedsNew`] if `old_size > new_size`, and
    /// [`LedgerError::Sqlite`] if the database fails.
    pub fn consistency_proof(conn: &Connection, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        if old_size > new_size {
            return Err(LedgerError::OldSizeExceedsNew { old_size, new_size });
        }
        check_tree_size(conn, new_size)?;
        TileReader::new(conn, new_size).consistency_proof(old_size)
    }

    /// Audits the whole stored log against itself and the log's key.
    ///
    /// It reads the entries once, in index order. It checks that the indexes run from 0
    /// without gaps, recomputes every leaf hash from the entry bytes and compares it with
    /// the stored one. It rebuilds the root at every stored checkpoint's size. Every
    /// checkpoint note must open with `verifier` for `origin` and agree with its row and
    /// with the rebuilt root; the latest must exist. It rebuilds the tiles in the same pass
    /// and compares each full tile with the stored one as soon as it is complete. Finally
    /// the stored frontier and the stored partial tiles must equal the rebuilt ones, and
    /// no tile may be stored beyond them. Memory stays O(log n).
    ///
    /// Call it inside a transaction when other connections may append meanwhile, so that
    /// every query reads the same snapshot.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Tampered`] naming the entry index or checkpoint tree size where the
    /// log stops matching; [`LedgerError::CheckpointRejected`] if a stored note does not
    /// open; [`LedgerError::MissingCheckpoint`] if none was signed;
    /// [`LedgerError::Sqlite`] if the database fails.
    pub fn verify(
        conn: &Connection,
        origin: &str,
        verifier: &NoteVerifier,
    ) -> Result<VerifyReport> {
        let mut checkpoint_rows = conn.prepare(
            "SELECT tree_size, root_hash, note FROM audit_checkpoints ORDER BY tree_size",
        )?;
        let mut checkpoints = checkpoint_rows
            .query_map([], CheckpointRow::read)?
            .peekable();
        let mut audit = Audit {
            conn,
            origin,
            verifier,
            frontier: Frontier::new(),
            tiles: TileEdge::new(),
            latest: None,
            checked: 0,
        };

        // Checkpoints are checked as soon as the rebuilt tree reaches their size.
        let mut entry_rows =
            conn.prepare("SELECT idx, entry, leaf_hash FROM audit_entries ORDER BY idx")?;
        let mut entries = entry_rows.query([])?;
        loop {
            while let Some(row) = checkpoints.next_if(|row| {
                row.as_ref()
                    .map_or(true, |row| row.tree_size <= audit.frontier.size())
            }) {
                audit.check_checkpoint(row?)?;
            }
            let Some(entry) = entries.next()? else {
                break;
            };
            audit.check_entry(entry)?;
        }

        if let Some(row) = checkpoints.next() {
            let what = "checkpoint is beyond the end of the log";
            return Err(LedgerError::Tampered {
                what,
                index: row?.tree_size,
            });
        }
        let stored = load_frontier(conn)?;
        if stored != audit.frontier {
            let what = "stored frontier differs from the one rebuilt from the entries";
            return Err(LedgerError::Tampered {
                what,
                index: audit.frontier.size(),
            });
        }
        for tile in audit.tiles.partial_tiles() {
            tiles::check_tile(conn, tile)?;
        }
        tiles::check_tile_count(conn, audit.frontier.size())?;
        let checkpoint = audit.latest.ok_or(LedgerError::MissingCheckpoint)?;
        Ok(VerifyReport {
            tree_size: audit.frontier.size(),
            root_hash: audit.frontier.root(),
            unsigned_entries: audit.frontier.size() - checkpoint.tree_size(),
            checkpoint,
            checkpoints_checked: audit.checked,
        })
    }
}

/// The state of one [`AuditLog::verify`] pass.
struct Audit<'a> {
    conn: &'a Connection,
    origin: &'a str,
    verifier: &'a NoteVerifier,
    /// The tree rebuilt from the entries read so far.
    frontier: Frontier,
    /// The right edge of the tiles rebuilt from the entries read so far.
    tiles: TileEdge,
    latest: Option<Checkpoint>,
    checked: u64,
}

impl Audit<'_> {
    fn check_entry(&mut self, row: &rusqlite::Row<'_>) -> Result<()> {
        let index = self.frontier.size();
        let stored_index = from_sql(row.get(0)?)?;
        if stored_index != index {
            let what = "entry index missing from the sequence";
            return Err(LedgerError::Tampered { what, index });
        }
        let entry = blob(row, 1)?;
        let stored_hash = blob(row, 2)?;
        let leaf_hash = merkle::leaf_hash(entry);
        if stored_hash != leaf_hash {
            let what = "stored leaf hash differs from the hash of the entry bytes";
            return Err(LedgerError::Tampered { what, index });
        }
        self.frontier.push(leaf_hash);
        let conn = self.conn;
        self.tiles
            .push(leaf_hash, |tile| tiles::check_tile(conn, tile))
    }

    fn check_checkpoint(&mut self, row: CheckpointRow) -> Result<()> {
        let tree_size = row.tree_size;
        let checkpoint =
            open_checkpoint(&row.note, self.origin, self.verifier).map_err(|source| {
                LedgerError::CheckpointRejected {
                    tree_size,
                    source: source.into(),
                }
            })?;
        row.check_matches(&checkpoint)?;
        if *checkpoint.root_hash() != self.frontier.root() {
            let what = "checkpoint root differs from the root rebuilt from the entries";
            return Err(LedgerError::Tampered {
                what,
                index: tree_size,
            });
        }
        self.latest = Some(checkpoint);
        self.checked += 1;
        Ok(())
    }
}

/// One row of `audit_checkpoints`.
struct CheckpointRow {
    tree_size: u64,
    root_hash: Vec<u8>,
    note: String,
}

impl CheckpointRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let tree_size: i64 = row.get(0)?;
        Ok(Self {
            // The table's CHECK constraint keeps sizes non-negative.
            tree_size: tree_size.max(0).unsigned_abs(),
            root_hash: row.get(1)?,
            note: row.get(2)?,
        })
    }

    /// Checks that the row's size and root are those of the note it stores.
    fn check_matches(&self, checkpoint: &Checkpoint) -> Result<()> {
        if checkpoint.tree_size() != self.tree_size || checkpoint.root_hash()[..] != self.root_hash
        {
            let what = "checkpoint row differs from its signed note";
            return Err(LedgerError::Tampered {
                what,
                index: self.tree_size,
            });
        }
        Ok(())
    }
}

/// Checks that `next` may follow the stored `latest` checkpoint of the same log.
fn check_extends(latest: &Checkpoint, next: &Checkpoint) -> Result<()> {
    if latest.origin() != next.origin() {
        return Err(LedgerError::OriginMismatch {
            expected: latest.origin().to_owned(),
            found: next.origin().to_owned(),
        });
    }
    let index = latest.tree_size();
    if next.tree_size() < index {
        let what = "log is shorter than its latest checkpoint";
        return Err(LedgerError::Tampered { what, index });
    }
    if next.tree_size() == index && next.root_hash() != latest.root_hash() {
        let what = "log root differs from its latest checkpoint at the same size";
        return Err(LedgerError::Tampered { what, index });
    }
    // NOTE: a root that changed under a smaller checkpoint is only caught by `verify`, which
    // reads every entry. Checking it here would make each signature cost O(n).
    Ok(())
}

/// Reads the stored frontier and checks that it fits the tree size.
fn load_frontier(conn: &Connection) -> Result<Frontier> {
    let size = AuditLog::tree_size(conn)?;
    let nodes: Vec<u8> = conn
        .prepare_cached("SELECT nodes FROM audit_frontier WHERE id = 0")?
        .query_row([], |row| row.get(0))?;
    let (chunks, rest) = nodes.as_chunks::<32>();
    rest.is_empty()
        .then(|| Frontier::from_parts(size, chunks.to_vec()))
        .flatten()
        .ok_or(LedgerError::Tampered {
            what: "stored frontier does not fit the tree size",
            index: size,
        })
}

/// Creates the tables, and fills the tiles if the tile table is new.
fn create_tables(conn: &Connection) -> Result<()> {
    let has_tiles: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'audit_tiles')",
        )?
        .query_row([], |row| row.get(0))?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(tiles::SCHEMA)?;
    if !has_tiles {
        tiles::fill_from_leaf_hashes(conn)?;
    }
    Ok(())
}

/// Checks that the log contains at least `tree_size` entries.
fn check_tree_size(conn: &Connection, tree_size: u64) -> Result<()> {
    let available = AuditLog::tree_size(conn)?;
    if tree_size > available {
        return Err(LedgerError::TreeSizeOutOfRange {
            requested: tree_size,
            available,
        });
    }
    Ok(())
}

/// Borrows a BLOB column of a row.
fn blob<'r>(row: &'r rusqlite::Row<'_>, column: usize) -> Result<&'r [u8]> {
    Ok(row
        .get_ref(column)?
        .as_blob()
        .map_err(rusqlite::Error::from)?)
}

/// Converts a size or index to SQLite's integer; values past `i64::MAX` saturate, which
/// no stored index reaches.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Converts an index or size read from SQLite; the tables' CHECK constraints keep them
/// non-negative unless the schema itself was changed.
fn from_sql(value: i64) -> Result<u64> {
    let what = "negative index or size stored";
    u64::try_from(value).map_err(|_| LedgerError::Tampered { what, index: 0 })
}
