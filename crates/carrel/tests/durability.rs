//! Durability of decisions between real node processes. The provider is killed with
//! SIGKILL many times during a stream of queries. After each restart its audit log
//! verifies, and its latest checkpoint is consistent with every checkpoint it handed out
//! before the crash. Its database and its log agree on every charge and release.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrel_ledger::{AuditLog, Checkpoint, Hash, merkle};
use carrel_net::{NodeIdentity, Peer, PeerClient};
use common::{Cluster, audit_log_events, carrel, ok, regions_csv, regions_description};
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

/// Crashes of the provider in one run.
const CRASHES: u64 = 10;

/// Threads that send queries at the same time.
const QUERIERS: usize = 3;

/// The signed checkpoints the provider handed out, as (size, root).
type HandedOut = Arc<Mutex<Vec<(u64, Hash)>>>;

/// Reads the provider's latest checkpoint over HTTPS, as the provider's own operator
/// does, every few milliseconds until `stop` is set.
fn poll_checkpoints(
    cluster: &Cluster,
    stop: Arc<AtomicBool>,
    seen: HandedOut,
) -> std::thread::JoinHandle<()> {
    let dir = cluster.provider.dir.clone();
    let endpoint = cluster.provider.endpoint();
    std::thread::spawn(move || {
        let identity = Arc::new(NodeIdentity::load("provider", dir.join("identity.key")).unwrap());
        let peer = Peer::new("provider", &endpoint, identity.public_key()).unwrap();
        let client = PeerClient::new(identity).with_timeout(Duration::from_secs(2));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        while !stop.load(Ordering::SeqCst) {
            if let Ok(response) = runtime.block_on(client.get(&peer, "/admin/status")) {
                let note = response.body["checkpoint"].as_str().unwrap_or_default();
                let body = note.split_once("\n\n").map(|(text, _)| format!("{text}\n"));
                if let Some(checkpoint) = body.and_then(|b| Checkpoint::parse_body(&b).ok()) {
                    let entry = (checkpoint.tree_size(), *checkpoint.root_hash());
                    seen.lock().unwrap().push(entry);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// Sends queries through the consumer until `stop` is set, and counts the successful
/// responses.
fn send_queries(
    cluster: &Cluster,
    agreement: &str,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..QUERIERS)
        .map(|_| {
            let node = cluster.consumer.arg();
            let agreement = agreement.to_owned();
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let sql = "SELECT region, COUNT(*) FROM regions GROUP BY region";
                    let args = [
                        "query",
                        "--node",
                        &node,
                        "--agreement",
                        &agreement,
                        "--epsilon",
                        "0.1",
                        sql,
                    ];
                    if carrel(&args).0 {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect()
}

/// Checks the invariants of the provider's folder after a restart, and returns the number
/// of releases it recorded.
fn check_provider(cluster: &Cluster, agreement: &str, handed_out: &[(u64, Hash)]) -> usize {
    let dir = &cluster.provider.dir;
    let report = ok(&["audit", "verify", dir.to_str().unwrap()]);
    assert!(report["tree_size"].as_u64() > Some(0), "{report}");

    let conn =
        Connection::open_with_flags(dir.join("node.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let latest = AuditLog::latest_checkpoint(&conn).unwrap().unwrap();
    let (size, root) = (
        latest.checkpoint.tree_size(),
        *latest.checkpoint.root_hash(),
    );
    for (old_size, old_root) in handed_out {
        let proof = AuditLog::consistency_proof(&conn, *old_size, size).unwrap();
        merkle::verify_consistency(*old_size, size, old_root, &root, &proof).unwrap_or_else(|e| {
            panic!("checkpoint of size {old_size} is not consistent with size {size}: {e}")
        });
    }

    // The database and the log agree on every charge and every release.
    let (rows, release_epsilon): (i64, f64) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(epsilon), 0) FROM releases WHERE agreement_id = ?1",
            [agreement],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let (queries_used, epsilon_spent): (i64, f64) = conn
        .query_row(
            "SELECT queries_used, epsilon_spent FROM agreements WHERE id = ?1",
            [agreement],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let events = |kind: &str| -> Vec<serde_json::Value> {
        audit_log_events(dir, kind)
            .into_iter()
            .filter(|e| e["agreement"] == agreement)
            .collect()
    };
    let epsilon_of = |events: &[serde_json::Value]| -> f64 {
        events
            .iter()
            .map(|e| e["detail"]["epsilon"].as_f64().unwrap())
            .sum()
    };
    let released = events("query.released");
    let failed = events("query.failed");
    assert_eq!(
        released.len() as i64,
        rows,
        "releases in the log and the database"
    );
    assert!((epsilon_of(&released) - release_epsilon).abs() < 1e-9);
    assert_eq!((released.len() + failed.len()) as i64, queries_used);
    let charged = epsilon_of(&released) + epsilon_of(&failed);
    assert!(
        (charged - epsilon_spent).abs() < 1e-9,
        "the log charges {charged}, the database {epsilon_spent}"
    );
    rows as usize
}

#[test]
fn killed_provider_keeps_every_decision() {
    let mut cluster = Cluster::start();
    let mut policy = common::regions_policy(1_000.0, 3_600);
    policy["max_queries"] = json!(100_000);
    let agreement = cluster.agreement(&regions_csv(), &regions_description(), &policy, "research");
    let answered = Arc::new(AtomicUsize::new(0));
    let handed_out: HandedOut = Arc::default();

    for crash in 0..CRASHES {
        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_checkpoints(&cluster, stop.clone(), handed_out.clone());
        let queriers = send_queries(&cluster, &agreement, stop.clone(), answered.clone());
        // The kill lands at a different point of the stream in every round.
        std::thread::sleep(Duration::from_millis(300 + 130 * crash));
        cluster.provider.kill();
        stop.store(true, Ordering::SeqCst);
        poller.join().unwrap();
        for querier in queriers {
            querier.join().unwrap();
        }
        cluster.provider.start_again();

        let seen = handed_out.lock().unwrap().clone();
        let releases = check_provider(&cluster, &agreement, &seen);
        let answered = answered.load(Ordering::SeqCst);
        // Every query was recorded before its response left. A query whose response the
        // crash cut off may be recorded too.
        assert!(
            answered <= releases,
            "crash {crash}: {answered} answered, {releases} recorded"
        );
        assert!(
            releases <= answered + QUERIERS * (crash as usize + 1),
            "crash {crash}: {releases} recorded, only {answered} answered"
        );
        eprintln!(
            "crash {crash}: {answered} queries answered, {releases} releases recorded, {} \
             checkpoints consistent",
            seen.len()
        );
    }
    assert!(answered.load(Ordering::SeqCst) > 0);
}
