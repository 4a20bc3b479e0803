//! The SQLite audit log: appends, checkpoints, proofs, and detection of tampering.

use carrel_ledger::merkle::{self, EMPTY_ROOT};
use carrel_ledger::{AuditLog, LedgerError, NoteSigner, NoteVerifier};
use ed25519_dalek::SigningKey;
use rusqlite::{Connection, params};

const ORIGIN: &str = "carrel.example/node-a/audit";

fn signer() -> NoteSigner {
    NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[11; 32])).unwrap()
}

fn verifier() -> NoteVerifier {
    signer().verifier()
}

fn entry(i: u64) -> Vec<u8> {
    format!("{{\"event\":\"query\",\"n\":{i}}}").into_bytes()
}

/// Creates a log in a file with entries 0..n signed in one checkpoint.
fn log_with(n: u64) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("node.db")).unwrap();
    AuditLog::create_schema(&conn).unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..n {
        assert_eq!(AuditLog::append(&tx, &entry(i)).unwrap(), i);
    }
    AuditLog::sign_checkpoint(&tx, ORIGIN, &signer()).unwrap();
    tx.commit().unwrap();
    (dir, conn)
}

fn verify(conn: &Connection) -> Result<carrel_ledger::VerifyReport, LedgerError> {
    AuditLog::verify(conn, ORIGIN, &verifier())
}

/// Asserts that `verify` fails with `Tampered` at `index`.
fn assert_tampered_at(conn: &Connection, index: u64) {
    match verify(conn) {
        Err(LedgerError::Tampered { index: found, .. }) => assert_eq!(found, index),
        other => panic!("expected tampering at {index}, got {other:?}"),
    }
}

#[test]
fn new_log_has_signed_empty_checkpoint() {
    let (_dir, conn) = log_with(0);
    let latest = AuditLog::latest_checkpoint(&conn).unwrap().unwrap();
    assert_eq!(latest.checkpoint.tree_size(), 0);
    assert_eq!(*latest.checkpoint.root_hash(), EMPTY_ROOT);
    let report = verify(&conn).unwrap();
    assert_eq!((report.tree_size, report.checkpoints_checked), (0, 1));
}

#[test]
fn log_without_checkpoint_fails_verification() {
    let conn = Connection::open_in_memory().unwrap();
    AuditLog::create_schema(&conn).unwrap();
    assert!(AuditLog::latest_checkpoint(&conn).unwrap().is_none());
    assert!(matches!(verify(&conn), Err(LedgerError::MissingCheckpoint)));
}

#[test]
fn appended_entries_verify_and_prove_inclusion() {
    let (dir, conn) = log_with(37);
    let report = verify(&conn).unwrap();
    assert_eq!(report.tree_size, 37);
    assert_eq!(report.unsigned_entries, 0);
    let leaves: Vec<_> = (0..37).map(|i| merkle::leaf_hash(&entry(i))).collect();
    assert_eq!(report.root_hash, merkle::root(&leaves));

    let latest = AuditLog::latest_checkpoint(&conn).unwrap().unwrap();
    let root = latest.checkpoint.root_hash();
    for i in 0..37 {
        assert_eq!(AuditLog::entry(&conn, i).unwrap(), entry(i));
        let proof = AuditLog::inclusion_proof(&conn, i, 37).unwrap();
        merkle::verify_inclusion(&leaves[i as usize], i, 37, &proof, root).unwrap();
    }

    // The log survives a reopen of the database file.
    drop(conn);
    let conn = Connection::open(dir.path().join("node.db")).unwrap();
    assert_eq!(verify(&conn).unwrap().root_hash, report.root_hash);
}

#[test]
fn one_entry_log_proofs() {
    let (_dir, conn) = log_with(1);
    assert!(AuditLog::inclusion_proof(&conn, 0, 1).unwrap().is_empty());
    let err = AuditLog::inclusion_proof(&conn, 1, 1).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::IndexOutOfRange {
            index: 1,
            tree_size: 1
        }
    ));
    let err = AuditLog::inclusion_proof(&conn, 0, 2).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::TreeSizeOutOfRange {
            requested: 2,
            available: 1
        }
    ));
    assert!(matches!(
        AuditLog::entry(&conn, 1),
        Err(LedgerError::IndexOutOfRange { .. })
    ));
}

#[test]
fn successive_checkpoints_are_consistent() {
    let (_dir, mut conn) = log_with(10);
    let first = AuditLog::latest_checkpoint(&conn)
        .unwrap()
        .unwrap()
        .checkpoint;
    let tx = conn.transaction().unwrap();
    for i in 10..27 {
        AuditLog::append(&tx, &entry(i)).unwrap();
    }
    let second = AuditLog::sign_checkpoint(&tx, ORIGIN, &signer())
        .unwrap()
        .checkpoint;
    tx.commit().unwrap();

    let proof = AuditLog::consistency_proof(&conn, 10, 27).unwrap();
    merkle::verify_consistency(10, 27, first.root_hash(), second.root_hash(), &proof).unwrap();
    let report = verify(&conn).unwrap();
    assert_eq!((report.checkpoints_checked, report.checkpoint), (2, second));
}

#[test]
fn resigning_same_size_keeps_one_checkpoint() {
    let (_dir, mut conn) = log_with(4);
    let first = AuditLog::latest_checkpoint(&conn).unwrap().unwrap();
    let tx = conn.transaction().unwrap();
    let again = AuditLog::sign_checkpoint(&tx, ORIGIN, &signer()).unwrap();
    tx.commit().unwrap();
    // Ed25519 signatures are deterministic, so the same key gives the same note.
    assert_eq!(again, first);
    assert_eq!(verify(&conn).unwrap().checkpoints_checked, 1);
}

#[test]
fn rolled_back_append_leaves_no_trace() {
    let (_dir, mut conn) = log_with(3);
    let tx = conn.transaction().unwrap();
    AuditLog::append(&tx, b"state change that failed").unwrap();
    drop(tx); // rolls back
    assert_eq!(AuditLog::tree_size(&conn).unwrap(), 3);
    verify(&conn).unwrap();
}

#[test]
fn entries_after_the_latest_checkpoint_are_reported_unsigned() {
    let (_dir, mut conn) = log_with(4);
    let tx = conn.transaction().unwrap();
    AuditLog::append(&tx, &entry(4)).unwrap();
    tx.commit().unwrap();
    let report = verify(&conn).unwrap();
    assert_eq!((report.tree_size, report.checkpoint.tree_size()), (5, 4));
    assert_eq!(report.unsigned_entries, 1);
}

#[test]
fn signing_for_another_origin_is_refused() {
    let (_dir, mut conn) = log_with(2);
    let tx = conn.transaction().unwrap();
    let other = NoteSigner::ed25519("other.example", SigningKey::from_bytes(&[12; 32])).unwrap();
    let err = AuditLog::sign_checkpoint(&tx, "other.example", &other).unwrap_err();
    assert!(matches!(err, LedgerError::OriginMismatch { .. }));
}

#[test]
fn changed_entry_bytes_are_detected() {
    let (_dir, conn) = log_with(8);
    conn.execute("UPDATE audit_entries SET entry = x'00' WHERE idx = 5", [])
        .unwrap();
    assert_tampered_at(&conn, 5);
}

#[test]
fn rehashed_entry_is_detected() {
    let (_dir, conn) = log_with(8);
    let forged = b"forged";
    conn.execute(
        "UPDATE audit_entries SET entry = ?1, leaf_hash = ?2 WHERE idx = 5",
        params![&forged[..], &merkle::leaf_hash(forged)[..]],
    )
    .unwrap();
    assert_tampered_at(&conn, 8);
}

#[test]
fn swapped_entries_are_detected() {
    let (_dir, conn) = log_with(8);
    // Swap rows 2 and 6 whole, bytes and hashes together, through a free index.
    for sql in [
        "UPDATE audit_entries SET idx = 100 WHERE idx = 2",
        "UPDATE audit_entries SET idx = 2 WHERE idx = 6",
        "UPDATE audit_entries SET idx = 6 WHERE idx = 100",
    ] {
        conn.execute(sql, []).unwrap();
    }
    assert_tampered_at(&conn, 8);
}

#[test]
fn swapped_entry_bytes_are_detected_at_the_entry() {
    let (_dir, conn) = log_with(8);
    conn.execute(
        "UPDATE audit_entries SET entry = CASE idx WHEN 2 THEN ?2 ELSE ?1 END
         WHERE idx IN (2, 6)",
        params![entry(2), entry(6)],
    )
    .unwrap();
    assert_tampered_at(&conn, 2);
}

#[test]
fn changed_leaf_hash_is_detected() {
    let (_dir, conn) = log_with(8);
    conn.execute(
        "UPDATE audit_entries SET leaf_hash = zeroblob(32) WHERE idx = 3",
        [],
    )
    .unwrap();
    assert_tampered_at(&conn, 3);
}

#[test]
fn deleted_entries_are_detected() {
    let (_dir, conn) = log_with(8);
    conn.execute("DELETE FROM audit_entries WHERE idx = 4", [])
        .unwrap();
    assert_tampered_at(&conn, 4);

    let (_dir, conn) = log_with(8);
    conn.execute("DELETE FROM audit_entries WHERE idx = 7", [])
        .unwrap();
    assert_tampered_at(&conn, 8);
}

#[test]
fn changed_checkpoint_root_column_is_detected() {
    let (_dir, conn) = log_with(8);
    conn.execute(
        "UPDATE audit_checkpoints SET root_hash = zeroblob(32) WHERE tree_size = 8",
        [],
    )
    .unwrap();
    assert_tampered_at(&conn, 8);
}

#[test]
fn edited_checkpoint_note_is_detected() {
    let (_dir, conn) = log_with(8);
    let note: String = conn
        .query_row(
            "SELECT note FROM audit_checkpoints WHERE tree_size = 8",
            [],
            |r| r.get(0),
        )
        .unwrap();

    // The size line changed, so the signature no longer covers the text.
    let edited = note.replacen("\n8\n", "\n9\n", 1);
    conn.execute(
        "UPDATE audit_checkpoints SET note = ?1 WHERE tree_size = 8",
        [&edited],
    )
    .unwrap();
    let err = verify(&conn).unwrap_err();
    assert!(
        matches!(err, LedgerError::CheckpointRejected { tree_size: 8, .. }),
        "{err}"
    );

    // A note signed by another key is not the log's.
    let other = NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[13; 32])).unwrap();
    let body = note.split("\n\n").next().unwrap().to_owned() + "\n";
    let forged = other.sign(&body).unwrap();
    conn.execute(
        "UPDATE audit_checkpoints SET note = ?1 WHERE tree_size = 8",
        [&forged],
    )
    .unwrap();
    let err = verify(&conn).unwrap_err();
    assert!(
        matches!(err, LedgerError::CheckpointRejected { tree_size: 8, .. }),
        "{err}"
    );
}

#[test]
fn tampered_older_checkpoint_is_detected() {
    let (_dir, mut conn) = log_with(5);
    let tx = conn.transaction().unwrap();
    AuditLog::append(&tx, &entry(5)).unwrap();
    AuditLog::sign_checkpoint(&tx, ORIGIN, &signer()).unwrap();
    tx.commit().unwrap();
    verify(&conn).unwrap();

    conn.execute(
        "UPDATE audit_checkpoints SET tree_size = 4 WHERE tree_size = 5",
        [],
    )
    .unwrap();
    assert_tampered_at(&conn, 4);
}

#[test]
fn checkpoint_beyond_the_log_is_detected() {
    let (_dir, conn) = log_with(3);
    conn.execute(
        "UPDATE audit_checkpoints SET tree_size = 30 WHERE tree_size = 3",
        [],
    )
    .unwrap();
    assert_tampered_at(&conn, 30);
}

#[test]
fn changed_frontier_is_detected() {
    let (_dir, conn) = log_with(6);
    conn.execute("UPDATE audit_frontier SET nodes = zeroblob(64)", [])
        .unwrap();
    assert_tampered_at(&conn, 6);
    conn.execute("UPDATE audit_frontier SET nodes = zeroblob(32)", [])
        .unwrap();
    assert_tampered_at(&conn, 6);
}
