//! Tile storage against the in-memory reference proofs of `merkle`.

use std::sync::{Mutex, OnceLock};

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use rusqlite::{Connection, params};

use super::TileReader;
use crate::merkle::{self, Hash};
use crate::{AuditLog, LedgerError, NoteSigner};

const ORIGIN: &str = "carrel.example/tiles-test";
/// Entries in the shared large log: one full level-1 tile (65,536 leaves) and 300 more.
const LARGE: u64 = 65_536 + 300;

fn signer() -> NoteSigner {
    NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[21; 32])).unwrap()
}

fn entry(i: u64) -> Vec<u8> {
    format!("entry {i}").into_bytes()
}

/// A log in memory and the leaf hashes of its entries.
struct Log {
    conn: Connection,
    leaves: Vec<Hash>,
}

impl Log {
    fn new() -> Self {
        let conn = Connection::open_in_memory().unwrap();
        AuditLog::create_schema(&conn).unwrap();
        Self {
            conn,
            leaves: Vec::new(),
        }
    }

    /// Appends `count` entries in one transaction and signs a checkpoint.
    fn append(&mut self, count: u64) {
        let first = self.leaves.len() as u64;
        let entries: Vec<Vec<u8>> = (first..first + count).map(entry).collect();
        let tx = self.conn.transaction().unwrap();
        let indexes = AuditLog::append_batch(&tx, &entries).unwrap();
        AuditLog::sign_checkpoint(&tx, ORIGIN, &signer()).unwrap();
        tx.commit().unwrap();
        assert_eq!(indexes, first..first + count);
        self.leaves
            .extend(entries.iter().map(|entry| merkle::leaf_hash(entry)));
    }

    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Asserts that both stored proofs equal the reference proofs.
    fn assert_proofs(&self, index: u64, old_size: u64, tree_size: u64) {
        let stored = AuditLog::inclusion_proof(&self.conn, index, tree_size).unwrap();
        let reference = merkle::inclusion_proof(&self.leaves, index, tree_size).unwrap();
        assert_eq!(stored, reference, "inclusion of {index} in {tree_size}");

        let stored = AuditLog::consistency_proof(&self.conn, old_size, tree_size).unwrap();
        let reference = merkle::consistency_proof(&self.leaves, old_size, tree_size).unwrap();
        assert_eq!(stored, reference, "consistency {old_size} to {tree_size}");

        // Each proof reads at most two tiles per tile level.
        let max_tiles = 2 * tile_levels(tree_size);
        let mut reader = TileReader::new(&self.conn, tree_size);
        reader.inclusion_proof(index).unwrap();
        assert!(
            reader.tiles.len() <= max_tiles,
            "inclusion of {index} in {tree_size}"
        );
        let mut reader = TileReader::new(&self.conn, tree_size);
        reader.consistency_proof(old_size).unwrap();
        assert!(
            reader.tiles.len() <= max_tiles,
            "consistency {old_size} to {tree_size}"
        );
    }

    fn verify(&self) -> crate::Result<crate::VerifyReport> {
        AuditLog::verify(&self.conn, ORIGIN, &signer().verifier())
    }

    fn tile_count(&self) -> i64 {
        self.conn
            .query_row("SELECT COUNT(*) FROM audit_tiles", [], |row| row.get(0))
            .unwrap()
    }

    fn tile(&self, level: u32, index: i64) -> Vec<u8> {
        self.conn
            .query_row(
                "SELECT hashes FROM audit_tiles WHERE level = ?1 AND idx = ?2",
                params![level, index],
                |row| row.get(0),
            )
            .unwrap()
    }
}

/// Returns ⌈log₂(`tree_size`) / 8⌉, the number of tile levels that a proof can touch.
fn tile_levels(tree_size: u64) -> usize {
    let height = if tree_size <= 1 {
        0
    } else {
        (tree_size - 1).ilog2() + 1
    };
    height.div_ceil(8) as usize
}

/// Returns the shared log of [`LARGE`] entries, appended in batches of assorted sizes.
fn large_log() -> &'static Mutex<Log> {
    static LOG: OnceLock<Mutex<Log>> = OnceLock::new();
    LOG.get_or_init(|| {
        let mut log = Log::new();
        for batch in [1, 254, 1, 1000, 30_000, 34_280, 300] {
            log.append(batch);
        }
        assert_eq!(log.size(), LARGE);
        Mutex::new(log)
    })
}

/// Tree sizes around tile boundaries, and anywhere up to [`LARGE`].
fn large_tree_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        1..=600u64,
        65_280..=65_800u64,
        65_530..=65_545u64,
        1..=LARGE,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Logs whose stored right edge has every width up to two full tiles, built from
    /// batches of random sizes.
    #[test]
    fn small_log_proofs_match_reference(
        batches in proptest::collection::vec(0..200u64, 1..6),
        picks in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 8),
    ) {
        let mut log = Log::new();
        for &batch in &batches {
            log.append(batch);
        }
        let size = log.size();
        prop_assume!(size > 0);
        for (a, b, c) in picks {
            let tree_size = 1 + a % size;
            log.assert_proofs(b % tree_size, c % (tree_size + 1), tree_size);
        }
        prop_assert_eq!(log.verify().unwrap().tree_size, size);
    }

    /// Proofs for tree sizes around 256 and 65,536 from the tiles of a larger log.
    #[test]
    fn large_log_proofs_match_reference(
        tree_size in large_tree_size(),
        index_seed in any::<u64>(),
        old_seed in any::<u64>(),
    ) {
        let log = large_log().lock().unwrap();
        let index = index_seed % tree_size;
        let old_size = old_seed % (tree_size + 1);
        log.assert_proofs(index, old_size, tree_size);
        log.assert_proofs(tree_size - 1, tree_size / 2, tree_size);
    }
}

#[test]
fn partial_tiles_at_level_boundaries() {
    let mut log = Log::new();
    log.append(65_535);
    // 255 full level-0 tiles and one of 255 leaves; one level-1 tile of 255 hashes.
    assert_eq!(log.tile_count(), 257);
    assert_eq!(log.tile(0, 255).len(), 255 * 32);
    assert_eq!(log.tile(1, 0).len(), 255 * 32);

    for (added, tiles) in [(1, 258), (1, 259)] {
        log.append(added);
        assert_eq!(log.tile_count(), tiles, "size {}", log.size());
        let size = log.size();
        for index in [0, 255, 256, 65_279, 65_280, size - 1] {
            log.assert_proofs(index, size - 1, size);
            log.assert_proofs(index, 65_535.min(size), size);
        }
        log.verify().unwrap();
    }
    // At 65,536 the level-1 tile filled, and level 2 contains the root of the whole tree.
    assert_eq!(log.tile(1, 0).len(), 256 * 32);
    assert_eq!(log.tile(2, 0), merkle::root(&log.leaves[..65_536]).to_vec());
    assert_eq!(log.tile(0, 256), log.leaves[65_536].to_vec());
}

#[test]
fn single_appends_match_batched_tiles() {
    let mut batched = Log::new();
    batched.append(600);
    let one_by_one = Connection::open_in_memory().unwrap();
    AuditLog::create_schema(&one_by_one).unwrap();
    let mut one_by_one = one_by_one;
    let tx = one_by_one.transaction().unwrap();
    for i in 0..600 {
        assert_eq!(AuditLog::append(&tx, &entry(i)).unwrap(), i);
    }
    tx.commit().unwrap();
    for (level, index) in [(0, 0), (0, 1), (0, 2), (1, 0)] {
        let stored: Vec<u8> = one_by_one
            .query_row(
                "SELECT hashes FROM audit_tiles WHERE level = ?1 AND idx = ?2",
                params![level, index],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(stored, batched.tile(level, index), "tile {level}/{index}");
    }
}

#[test]
fn empty_batch_changes_nothing() {
    let mut log = Log::new();
    log.append(3);
    let tx = log.conn.transaction().unwrap();
    let none: [&[u8]; 0] = [];
    assert_eq!(AuditLog::append_batch(&tx, none).unwrap(), 3..3);
    tx.commit().unwrap();
    assert_eq!(log.tile_count(), 1);
    log.verify().unwrap();
}

#[test]
fn schema_upgrade_fills_tiles() {
    let mut log = Log::new();
    log.append(70_000);
    let before: Vec<(i64, i64, Vec<u8>)> = all_tiles(&log.conn);
    log.conn.execute_batch("DROP TABLE audit_tiles").unwrap();

    AuditLog::create_schema(&log.conn).unwrap();
    assert_eq!(all_tiles(&log.conn), before);
    log.assert_proofs(69_999, 65_536, 70_000);
    log.verify().unwrap();

    // Appends after the upgrade extend the filled tiles.
    log.append(300);
    log.assert_proofs(70_100, 70_000, 70_300);
    log.verify().unwrap();
}

fn all_tiles(conn: &Connection) -> Vec<(i64, i64, Vec<u8>)> {
    let mut statement = conn
        .prepare("SELECT level, idx, hashes FROM audit_tiles ORDER BY level, idx")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Asserts that `result` is `Tampered` at `index`.
fn assert_tampered_at<T: std::fmt::Debug>(result: crate::Result<T>, index: u64) {
    match result {
        Err(LedgerError::Tampered { index: found, .. }) => assert_eq!(found, index),
        other => panic!("expected tampering at {index}, got {other:?}"),
    }
}

#[test]
fn changed_tile_hash_is_detected() {
    let mut log = Log::new();
    log.append(600);
    // Hash 3 of level-0 tile 1 is leaf 259.
    log.conn
        .execute(
            "UPDATE audit_tiles
             SET hashes = CAST(substr(hashes, 1, 96) || zeroblob(32) || substr(hashes, 129) AS BLOB)
             WHERE level = 0 AND idx = 1",
            [],
        )
        .unwrap();
    assert_tampered_at(log.verify(), 259);

    // A changed hash in the partial tile is found after the pass.
    let mut log = Log::new();
    log.append(600);
    log.conn
        .execute(
            "UPDATE audit_tiles SET hashes = CAST(zeroblob(32) || substr(hashes, 33) AS BLOB)
             WHERE level = 0 AND idx = 2",
            [],
        )
        .unwrap();
    assert_tampered_at(log.verify(), 512);
}

#[test]
fn missing_or_extra_tiles_are_detected() {
    let mut log = Log::new();
    log.append(600);
    log.conn
        .execute("DELETE FROM audit_tiles WHERE level = 0 AND idx = 0", [])
        .unwrap();
    assert_tampered_at(log.verify(), 0);
    assert_tampered_at(AuditLog::inclusion_proof(&log.conn, 3, 600), 0);

    let mut log = Log::new();
    log.append(600);
    log.conn
        .execute(
            "INSERT INTO audit_tiles (level, idx, hashes) VALUES (0, 9, zeroblob(32))",
            [],
        )
        .unwrap();
    assert_tampered_at(log.verify(), 600);
}

#[test]
fn truncated_partial_tile_stops_appends() {
    let mut log = Log::new();
    log.append(300);
    log.conn
        .execute(
            "UPDATE audit_tiles SET hashes = substr(hashes, 1, 32) WHERE level = 0 AND idx = 1",
            [],
        )
        .unwrap();
    let tx = log.conn.transaction().unwrap();
    assert_tampered_at(AuditLog::append(&tx, b"next"), 300);
    drop(tx);
    assert_tampered_at(log.verify(), 257);
}
