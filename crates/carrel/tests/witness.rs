//! Witnessed audit logs between real node processes: every node's checkpoints are
//! cosigned by the parties it works with, a checkpoint is final at the quorum, and a log
//! that rewrites its end is caught by its witnesses.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use carrel_ledger::{AuditLog, CosignatureVerifier, NoteSigner, NoteVerifier, open_cosigned};
use carrel_net::{NodeIdentity, Peer, PeerClient};
use common::{Cluster, NodeProcess};
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use serde_json::Value;

/// How long a checkpoint may take to be cosigned.
const COSIGN_DEADLINE: Duration = Duration::from_secs(30);

/// Returns a node's Ed25519 public key.
fn key_of(node: &NodeProcess) -> VerifyingKey {
    let identity = NodeIdentity::load(&node.name, node.dir.join("identity.key")).unwrap();
    VerifyingKey::from_bytes(&identity.public_key().to_bytes()).unwrap()
}

/// Reads `path` on `node` as the consumer.
fn get(cluster: &Cluster, node: &NodeProcess, path: &str) -> Value {
    try_get(cluster, node, path).unwrap()
}

/// Reads `path` on `node` as the consumer, and returns the status and message of a
/// rejection.
fn try_get(cluster: &Cluster, node: &NodeProcess, path: &str) -> Result<Value, (u16, String)> {
    let identity = Arc::new(
        NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap(),
    );
    let peer = Peer::new(
        &node.name,
        &node.endpoint(),
        NodeIdentity::load(&node.name, node.dir.join("identity.key"))
            .unwrap()
            .public_key(),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match runtime.block_on(PeerClient::new(identity).get(&peer, path)) {
        Ok(response) => Ok(response.body),
        Err(carrel_net::PeerError::Rejected {
            status, message, ..
        }) => Err((status.as_u16(), message)),
        Err(other) => panic!("{path} on {}: {other}", node.name),
    }
}

/// Waits until `node`'s latest checkpoint is final and at least `size` entries long, and
/// returns it.
fn wait_for_final(cluster: &Cluster, node: &NodeProcess, size: u64) -> Value {
    let deadline = Instant::now() + COSIGN_DEADLINE;
    loop {
        let checkpoint = get(cluster, node, "/audit/checkpoint");
        let last_final = &checkpoint["last_final"];
        if last_final["tree_size"].as_u64() >= Some(size) {
            return checkpoint;
        }
        assert!(
            Instant::now() < deadline,
            "{} has no final checkpoint of size {size}: {checkpoint}",
            node.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn checkpoints_are_cosigned_by_the_parties() {
    let cluster = Cluster::start();
    let agreement = cluster.regions_agreement();
    let (success, response) = cluster.query(
        &agreement,
        "SELECT region, COUNT(*) FROM regions GROUP BY region",
        Some(0.2),
    );
    assert!(success, "{response}");

    let size = get(&cluster, &cluster.provider, "/audit/checkpoint")["tree_size"]
        .as_u64()
        .unwrap();
    let checkpoint = wait_for_final(&cluster, &cluster.provider, size);
    let last_final = &checkpoint["last_final"];
    let note = last_final["note"].as_str().unwrap();

    // The note opens with the provider's key and both witnesses' keys.
    let log = NoteVerifier::ed25519("carrel.local/provider", key_of(&cluster.provider)).unwrap();
    let witnesses: Vec<CosignatureVerifier> = [&cluster.exchange, &cluster.consumer]
        .iter()
        .map(|node| {
            let name = format!("carrel.local/{}/witness", node.name);
            CosignatureVerifier::ed25519(&name, key_of(node)).unwrap()
        })
        .collect();
    let opened = open_cosigned(note, "carrel.local/provider", &log, &witnesses).unwrap();
    assert!(opened.checkpoint.tree_size() >= size);
    assert!(!opened.cosignatures.is_empty(), "{checkpoint}");

    // Within a few rounds both parties cosign.
    let deadline = Instant::now() + COSIGN_DEADLINE;
    loop {
        let checkpoint = get(&cluster, &cluster.provider, "/audit/checkpoint");
        let names = checkpoint["last_final"]["cosigned_by"].clone();
        if names.as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "{checkpoint}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Proofs: from size 0 the consistency proof is empty; an entry of an empty tree and a
    // size beyond the log are client errors.
    let proof = get(
        &cluster,
        &cluster.provider,
        &format!("/audit/consistency?old=0&new={size}"),
    );
    assert_eq!(proof["proof"], serde_json::json!([]));
    let (status, message) = try_get(
        &cluster,
        &cluster.provider,
        "/audit/inclusion?index=0&size=0",
    )
    .unwrap_err();
    assert_eq!(status, 400, "{message}");
    let beyond = format!("/audit/consistency?old=1&new={}", size + 1_000);
    let (status, message) = try_get(&cluster, &cluster.provider, &beyond).unwrap_err();
    assert_eq!(status, 400, "{message}");
    // An entry is shown to the parties of its agreement only.
    let entries = get(
        &cluster,
        &cluster.provider,
        &format!("/audit/entries?agreement={agreement}"),
    );
    let released = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "query.released")
        .unwrap_or_else(|| panic!("{entries}"))
        .clone();
    let index = released["index"].as_u64().unwrap();
    let included = get(
        &cluster,
        &cluster.provider,
        &format!("/audit/inclusion?index={index}&size={size}"),
    );
    assert!(included["entry"].is_string());

    // The exchange's log is witnessed too.
    let exchange_size = get(&cluster, &cluster.exchange, "/audit/checkpoint")["tree_size"]
        .as_u64()
        .unwrap();
    wait_for_final(&cluster, &cluster.exchange, exchange_size);
}

/// Rewrites the end of a stopped node's log as its operator could: keeps the first
/// `keep` entries, appends `forged` new ones, and signs a checkpoint with the node's key,
/// so that the log verifies on its own.
fn rewrite_log(node: &NodeProcess, keep: u64, forged: u64) {
    let pem = std::fs::read_to_string(node.dir.join("identity.key")).unwrap();
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap();
    let origin = format!("carrel.local/{}", node.name);
    let signer = NoteSigner::ed25519(&origin, key).unwrap();

    let mut conn = rusqlite::Connection::open(node.dir.join("node.db")).unwrap();
    let tx = conn.transaction().unwrap();
    let kept_entries: Vec<Vec<u8>> = (0..keep)
        .map(|index| AuditLog::entry(&tx, index).unwrap())
        .collect();
    let tables: Vec<String> = {
        let mut statement = tx
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'audit_%'")
            .unwrap();
        let names = statement.query_map([], |r| r.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    };
    for table in tables.iter().filter(|t| *t != "audit_frontier") {
        tx.execute(&format!("DELETE FROM {table}"), []).unwrap();
    }
    tx.execute("UPDATE audit_frontier SET nodes = x''", [])
        .unwrap();
    for entry in &kept_entries {
        AuditLog::append(&tx, entry).unwrap();
    }
    for index in 0..forged {
        let entry = format!("{{\"kind\":\"forged\",\"index\":{index}}}");
        AuditLog::append(&tx, entry.as_bytes()).unwrap();
    }
    AuditLog::sign_checkpoint(&tx, &origin, &signer).unwrap();
    tx.commit().unwrap();
}

/// Returns the alarms in a node's audit log about `log`.
fn alarms(node: &NodeProcess, log: &str) -> Vec<Value> {
    common::audit_log_events(&node.dir, "witness.alarm")
        .into_iter()
        .filter(|e| e["detail"]["log"] == log)
        .collect()
}

#[test]
fn rewritten_log_is_caught_by_its_witnesses() {
    let mut cluster = Cluster::start();
    let agreement = cluster.regions_agreement();
    let sql = "SELECT region, COUNT(*) FROM regions GROUP BY region";
    for _ in 0..3 {
        assert!(cluster.query(&agreement, sql, Some(0.2)).0);
    }

    // Both witnesses cosign the provider's latest checkpoint.
    let size = get(&cluster, &cluster.provider, "/audit/checkpoint")["tree_size"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + COSIGN_DEADLINE;
    loop {
        let checkpoint = get(&cluster, &cluster.provider, "/audit/checkpoint");
        let both = checkpoint["cosigned_by"].as_array().map(Vec::len) == Some(2);
        if checkpoint["tree_size"].as_u64() == Some(size) && both {
            break;
        }
        assert!(Instant::now() < deadline, "{checkpoint}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A regulator watches the provider's log through the consumer's node, and reads the
    // checkpoint both witnesses cosigned.
    let mut watch = Command::new(common::carrel_exe())
        .args(["--json", "audit", "watch", "--node"])
        .arg(&cluster.consumer.dir)
        .args([
            "--log",
            "provider",
            "--interval-ms",
            "100",
            "--rounds",
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, events) = mpsc::channel::<Value>();
    let stdout = BufReader::new(watch.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line)
                && lines.send(event).is_err()
            {
                break;
            }
        }
    });
    let next_event = |what: &str, matches: &dyn Fn(&Value) -> bool| loop {
        match events.recv_timeout(COSIGN_DEADLINE) {
            Ok(event) if matches(&event) => return event,
            Ok(_) => {}
            Err(_) => panic!("the watch printed no {what}"),
        }
    };
    next_event("checkpoint of the cosigned size", &|e| {
        e["event"] == "checkpoint" && e["tree_size"].as_u64() == Some(size)
    });

    // The provider's operator drops the last two entries and writes two others in their
    // place: the log has the same size, another root, and verifies on its own.
    cluster.provider.kill();
    rewrite_log(&cluster.provider, size - 2, 2);
    let verified = common::ok(&["audit", "verify", cluster.provider.dir.to_str().unwrap()]);
    assert_eq!(verified["tree_size"].as_u64(), Some(size));
    cluster.provider.start_again();

    // The next checkpoint goes to the witnesses with a proof from the forged tree, which
    // does not lead from the root they cosigned.
    assert!(cluster.query(&agreement, sql, Some(0.2)).0);
    let deadline = Instant::now() + COSIGN_DEADLINE;
    for witness in [&cluster.exchange, &cluster.consumer] {
        loop {
            let found = alarms(witness, "provider");
            if let Some(alarm) = found.first() {
                assert_eq!(alarm["detail"]["kind"], "fork", "{alarm}");
                assert_eq!(alarm["detail"]["cosigned_size"].as_u64(), Some(size));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} raised no alarm about the rewritten log",
                witness.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The watch raises the alarm too, from the consistency proof the provider serves.
    let alarm = next_event("alarm", &|e| e["event"] == "alarm");
    assert_eq!(alarm["kind"], "fork", "{alarm}");
    let _ = watch.kill();
    let _ = watch.wait();

    // The forged checkpoints stay without a cosignature.
    let checkpoint = get(&cluster, &cluster.provider, "/audit/checkpoint");
    assert!(checkpoint["tree_size"].as_u64() > Some(size));
    assert_eq!(
        checkpoint["cosigned_by"],
        serde_json::json!([]),
        "{checkpoint}"
    );
}

#[test]
fn rolled_back_log_raises_an_alarm() {
    let mut cluster = Cluster::start();
    let agreement = cluster.regions_agreement();
    let sql = "SELECT region, COUNT(*) FROM regions GROUP BY region";
    assert!(cluster.query(&agreement, sql, Some(0.2)).0);
    let size = get(&cluster, &cluster.provider, "/audit/checkpoint")["tree_size"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + COSIGN_DEADLINE;
    while get(&cluster, &cluster.provider, "/audit/checkpoint")["cosigned_by"]
        .as_array()
        .map(Vec::len)
        != Some(2)
    {
        assert!(Instant::now() < deadline, "the witnesses did not cosign");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The provider's operator drops the last two entries and nothing else.
    cluster.provider.kill();
    rewrite_log(&cluster.provider, size - 2, 0);
    cluster.provider.start_again();

    // Its next submission is smaller than what its witnesses cosigned.
    for witness in [&cluster.exchange, &cluster.consumer] {
        loop {
            if let Some(alarm) = alarms(witness, "provider").first() {
                assert_eq!(alarm["detail"]["kind"], "rollback", "{alarm}");
                assert_eq!(alarm["detail"]["cosigned_size"].as_u64(), Some(size));
                break;
            }
            assert!(
                Instant::now() < deadline + COSIGN_DEADLINE,
                "{}",
                witness.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The consumer's operator sees the alarm in its node's status.
    let status = get(&cluster, &cluster.consumer, "/admin/status");
    assert_eq!(status["witness_alarms"].as_u64(), Some(1), "{status}");
}

/// Sends an `add-checkpoint` request to the exchange as `from`, and returns the status of
/// a rejection.
fn submit_as(cluster: &Cluster, from: &NodeProcess, request: &str) -> Result<Value, u16> {
    let identity = Arc::new(NodeIdentity::load(&from.name, from.dir.join("identity.key")).unwrap());
    let exchange = &cluster.exchange;
    let peer = Peer::new("exchange", &exchange.endpoint(), key_of_net(exchange)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let body = serde_json::json!({ "request": request });
    match runtime.block_on(PeerClient::new(identity).post_json(
        &peer,
        "/witness/add-checkpoint",
        &body,
    )) {
        Ok(response) => Ok(response.body),
        Err(carrel_net::PeerError::Rejected { status, .. }) => Err(status.as_u16()),
        Err(other) => panic!("{other}"),
    }
}

fn key_of_net(node: &NodeProcess) -> carrel_net::PublicKey {
    NodeIdentity::load(&node.name, node.dir.join("identity.key"))
        .unwrap()
        .public_key()
}

#[test]
fn stale_or_foreign_checkpoints_raise_no_alarm() {
    let cluster = Cluster::start();
    let agreement = cluster.regions_agreement();
    let sql = "SELECT region, COUNT(*) FROM regions GROUP BY region";
    assert!(cluster.query(&agreement, sql, Some(0.2)).0);
    let size = get(&cluster, &cluster.provider, "/audit/checkpoint")["tree_size"]
        .as_u64()
        .unwrap();
    wait_for_final(&cluster, &cluster.provider, size);
    let stored = get(&cluster, &cluster.provider, "/audit/checkpoint");
    let stored_size = stored["tree_size"].as_u64().unwrap();

    // An older checkpoint of the honest provider, as a late request would bring it: the
    // exchange refuses it with 409 and raises no alarm, because the provider proves it
    // consistent with the one the exchange cosigned.
    let conn = rusqlite::Connection::open(cluster.provider.dir.join("node.db")).unwrap();
    let old_note: String = conn
        .query_row(
            "SELECT note FROM audit_checkpoints WHERE tree_size = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let stale = format!("old {stored_size}\n\n{old_note}");
    assert_eq!(
        submit_as(&cluster, &cluster.provider, &stale).unwrap_err(),
        400
    );
    let stale = format!("old 1\n\n{old_note}");
    assert_eq!(
        submit_as(&cluster, &cluster.provider, &stale).unwrap_err(),
        409
    );
    assert!(alarms(&cluster.exchange, "provider").is_empty());

    // The consumer cannot submit the provider's log, even signed with its own key.
    let pem = std::fs::read_to_string(cluster.consumer.dir.join("identity.key")).unwrap();
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap();
    let forged = NoteSigner::ed25519("carrel.local/provider", key).unwrap();
    let checkpoint = carrel_ledger::Checkpoint::new(
        "carrel.local/provider",
        0,
        carrel_ledger::merkle::EMPTY_ROOT,
    )
    .unwrap();
    let request = format!("old 0\n\n{}", checkpoint.sign(&forged));
    assert_eq!(
        submit_as(&cluster, &cluster.consumer, &request).unwrap_err(),
        403
    );
}
