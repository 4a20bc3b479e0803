//! The group committer against a WAL database file.

use std::collections::HashSet;

use ed25519_dalek::SigningKey;
use rusqlite::Connection;

use super::{CommitError, DEFAULT_MAX_BATCH, GroupCommitter};
use crate::{AuditLog, LedgerError, NoteSigner};

const ORIGIN: &str = "carrel.example/commit-test";

fn signer() -> NoteSigner {
    NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[31; 32])).unwrap()
}

/// Opens the database file in `dir` with the settings that group commit requires.
fn open_durable(dir: &tempfile::TempDir) -> Connection {
    let conn = Connection::open(dir.path().join("audit.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    AuditLog::create_schema(&conn).unwrap();
    conn
}

#[test]
fn start_rejects_non_durable_settings() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_durable(&dir);
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let err = GroupCommitter::start(conn, ORIGIN, signer(), DEFAULT_MAX_BATCH).unwrap_err();
    assert!(
        matches!(err, CommitError::NotDurable { synchronous: 1, .. }),
        "{err}"
    );

    let conn = Connection::open_in_memory().unwrap();
    let err = GroupCommitter::start(conn, ORIGIN, signer(), DEFAULT_MAX_BATCH).unwrap_err();
    assert!(matches!(err, CommitError::NotDurable { .. }), "{err}");
}

#[test]
fn concurrent_appends_get_distinct_committed_indexes() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let committer =
        GroupCommitter::start(open_durable(&dir), ORIGIN, signer(), DEFAULT_MAX_BATCH).unwrap();
    let reader = open_durable(&dir);

    let replies: Vec<(u64, Vec<u8>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let committer = &committer;
                scope.spawn(move || {
                    // Half the entries wait one by one, half are submitted in a window.
                    let mut replies = Vec::new();
                    let mut pending = Vec::new();
                    for i in 0..PER_THREAD {
                        let entry = format!("thread {thread} entry {i}").into_bytes();
                        if i % 2 == 0 {
                            replies.push((committer.append(entry.clone()).unwrap(), entry));
                        } else {
                            pending.push((committer.submit(entry.clone()), entry));
                        }
                    }
                    for (append, entry) in pending {
                        replies.push((append.wait().unwrap(), entry));
                    }
                    replies
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });

    let total = THREADS * PER_THREAD;
    let indexes: HashSet<u64> = replies.iter().map(|(index, _)| *index).collect();
    assert_eq!(indexes, (0..total).collect());
    // Another connection reads every returned entry, so each reply followed its commit.
    for (index, entry) in &replies {
        assert_eq!(&AuditLog::entry(&reader, *index).unwrap(), entry);
    }

    let stats = committer.stats();
    assert_eq!(stats.entries, total);
    assert!(stats.batches >= 1);
    assert!(stats.batches <= total);
    assert!(stats.max_batch >= 1);
    let conn = committer.shutdown().unwrap();
    let report = AuditLog::verify(&conn, ORIGIN, &signer().verifier()).unwrap();
    assert_eq!(report.tree_size, total);
    assert_eq!(report.unsigned_entries, 0);
    assert_eq!(report.checkpoints_checked, stats.batches);
}

#[test]
fn batch_limit_caps_each_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let committer = GroupCommitter::start(open_durable(&dir), ORIGIN, signer(), 3).unwrap();
    let pending: Vec<_> = (0..20u8).map(|i| committer.submit(vec![i])).collect();
    let indexes: Vec<u64> = pending
        .into_iter()
        .map(|append| append.wait().unwrap())
        .collect();
    assert_eq!(indexes, (0..20).collect::<Vec<u64>>());
    let stats = committer.stats();
    assert!(stats.max_batch <= 3, "{stats:?}");
    assert!(stats.batches >= 7, "{stats:?}");
}

#[test]
fn failed_batch_fails_every_caller() {
    let dir = tempfile::tempdir().unwrap();
    let committer =
        GroupCommitter::start(open_durable(&dir), ORIGIN, signer(), DEFAULT_MAX_BATCH).unwrap();
    assert_eq!(committer.append(b"first".to_vec()).unwrap(), 0);

    let other = open_durable(&dir);
    other
        .execute("UPDATE audit_frontier SET nodes = x''", [])
        .unwrap();
    let err = committer.append(b"second".to_vec()).unwrap_err();
    match err {
        CommitError::BatchFailed { entries, source } => {
            assert_eq!(entries, 1);
            assert!(matches!(*source, LedgerError::Tampered { index: 1, .. }));
        }
        other => panic!("expected a failed batch, got {other:?}"),
    }
    // The rolled-back entry is not in the log.
    assert_eq!(AuditLog::tree_size(&other).unwrap(), 1);
}

#[test]
fn shutdown_commits_queued_entries() {
    let dir = tempfile::tempdir().unwrap();
    let committer =
        GroupCommitter::start(open_durable(&dir), ORIGIN, signer(), DEFAULT_MAX_BATCH).unwrap();
    let pending: Vec<_> = (0..50u8).map(|i| committer.submit(vec![i])).collect();
    let conn = committer.shutdown().unwrap();
    assert_eq!(AuditLog::tree_size(&conn).unwrap(), 50);
    for (i, append) in pending.into_iter().enumerate() {
        assert_eq!(append.wait().unwrap(), i as u64);
    }
}
