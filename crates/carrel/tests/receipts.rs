//! Receipts of a witnessed audit log between real node processes. The consumer fetches a
//! receipt for each of the provider's entries about its agreement, verifies them offline
//! and rejects tampered ones. A monitor watches the honest logs without an alarm.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carrel_ledger::{CosignatureVerifier, NoteVerifier, Policy, Receipt};
use common::{Cluster, carrel_exe, fails, ok};
use ed25519_dalek::SigningKey;
use serde_json::Value;

/// How long the provider's release may take to be in a final checkpoint.
const FINAL_DEADLINE: Duration = Duration::from_secs(30);

/// Runs `carrel audit receipts` as the consumer until every listed entry of the provider
/// is in its last final checkpoint, and returns the last output.
fn receipts_when_final(cluster: &Cluster, agreement: &str, folder: &str) -> Value {
    let consumer = cluster.consumer.arg();
    let args = [
        "audit",
        "receipts",
        "--node",
        &consumer,
        "--from",
        "provider",
        "--agreement",
        agreement,
        "--out",
        folder,
    ];
    let deadline = Instant::now() + FINAL_DEADLINE;
    loop {
        let (success, output) = common::carrel(&args);
        let released = output["receipts"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["kind"] == "query.released"));
        if success && released && output["pending"].as_array().is_some_and(Vec::is_empty) {
            return output;
        }
        assert!(
            Instant::now() < deadline,
            "the release is not in a final checkpoint of the provider: {output}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Returns the policy text with `edit` applied to each line.
fn edit_policy(path: &str, edit: impl Fn(&str) -> Vec<String>) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut edited = String::new();
    for line in text.lines() {
        for new_line in edit(line) {
            edited.push_str(&new_line);
            edited.push('\n');
        }
    }
    edited.parse::<Policy>().expect("the edited policy parses");
    edited
}

fn write(folder: &Path, name: &str, contents: &str) -> String {
    let path = folder.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn receipts_verify_offline_and_reject_tampering() {
    let cluster = Cluster::start();
    let agreement = cluster.regions_agreement();
    let (success, response) = cluster.query(
        &agreement,
        "SELECT region, COUNT(*) FROM regions GROUP BY region",
        Some(0.2),
    );
    assert!(success, "{response}");

    let folder = cluster.root.path().join("receipts");
    let folder_arg = folder.to_string_lossy().into_owned();
    let output = receipts_when_final(&cluster, &agreement, &folder_arg);
    let policy = output["policy"].as_str().unwrap().to_owned();
    assert!(policy.ends_with("provider.policy"), "{output}");
    let receipts = output["receipts"].as_array().unwrap();
    assert!(!receipts.is_empty(), "{output}");

    // Every receipt verifies with nothing but the two files.
    for receipt in receipts {
        let file = receipt["file"].as_str().unwrap();
        let index = receipt["index"].as_u64().unwrap();
        assert!(file.ends_with(&format!("provider-{index}.tlog-proof")));
        let verified = ok(&["audit", "verify-receipt", file, "--policy", &policy]);
        assert_eq!(verified["index"], index);
        assert_eq!(verified["origin"], "carrel.local/provider");
        assert_eq!(verified["entry"]["kind"], receipt["kind"]);
        assert_eq!(verified["entry"]["agreement"], agreement.as_str());
        assert!(verified["tree_size"].as_u64().unwrap() > index);
        assert!(
            !verified["cosigned_by"].as_array().unwrap().is_empty(),
            "{verified}"
        );
    }

    // The policy that `audit policy` prints is the one written beside the receipts.
    let printed = ok(&[
        "audit",
        "policy",
        "--node",
        &cluster.consumer.arg(),
        "--log",
        "provider",
        "--witness",
        "exchange",
        "--witness",
        "consumer",
        "--quorum",
        "2",
    ]);
    let printed_policy: Policy = printed["policy"].as_str().unwrap().parse().unwrap();
    assert_eq!(printed_policy.witnesses().len(), 2);
    assert!(
        printed["policy"]
            .as_str()
            .unwrap()
            .contains("group witnesses 2 exchange consumer")
    );

    let file = receipts[0]["file"].as_str().unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    let receipt = Receipt::parse(&text).unwrap();

    // One changed byte in the entry.
    let mut entry = receipt.extra().unwrap().to_vec();
    let last = entry.len() - 2;
    entry[last] ^= 0x01;
    let changed = Receipt::new(
        receipt.index(),
        receipt.proof().to_vec(),
        receipt.checkpoint_note().to_owned(),
    )
    .unwrap()
    .with_extra(entry)
    .unwrap();
    let changed_file = write(&folder, "changed.tlog-proof", &changed.to_string());
    let message = fails(&[
        "audit",
        "verify-receipt",
        &changed_file,
        "--policy",
        &policy,
    ]);
    assert!(message.contains("changed.tlog-proof"), "{message}");
    assert!(message.contains("is not in the tree"), "{message}");

    // A receipt without the entry.
    let bare = Receipt::new(
        receipt.index(),
        receipt.proof().to_vec(),
        receipt.checkpoint_note().to_owned(),
    )
    .unwrap();
    let bare_file = write(&folder, "bare.tlog-proof", &bare.to_string());
    let message = fails(&["audit", "verify-receipt", &bare_file, "--policy", &policy]);
    assert!(message.contains("bare.tlog-proof"), "{message}");
    assert!(message.contains("no extra line"), "{message}");

    // A quorum that requires a witness that did not cosign.
    let auditor_key = SigningKey::from_bytes(&[9; 32]).verifying_key();
    let auditor =
        CosignatureVerifier::ed25519("carrel.local/auditor/witness", auditor_key).unwrap();
    let strict = edit_policy(&policy, |line| {
        if line.starts_with("quorum ") {
            vec![
                format!("witness auditor {auditor}"),
                "quorum auditor".into(),
            ]
        } else {
            vec![line.to_owned()]
        }
    });
    let strict_file = write(&folder, "strict.policy", &strict);
    let message = fails(&["audit", "verify-receipt", file, "--policy", &strict_file]);
    assert!(message.contains(file), "{message}");
    assert!(message.contains("quorum not met"), "{message}");
    assert!(message.contains("\"auditor\""), "{message}");

    // A policy with another key for the provider's log.
    let other_log = NoteVerifier::ed25519("carrel.local/provider", auditor_key).unwrap();
    let impostor = edit_policy(&policy, |line| {
        if line.starts_with("log ") {
            vec![format!("log {other_log}")]
        } else {
            vec![line.to_owned()]
        }
    });
    let impostor_file = write(&folder, "impostor.policy", &impostor);
    let message = fails(&["audit", "verify-receipt", file, "--policy", &impostor_file]);
    assert!(message.contains(file), "{message}");
    assert!(message.contains("bad log signature"), "{message}");

    // A monitor of the honest cluster raises no alarm.
    let started = Instant::now();
    let watched = Command::new(carrel_exe())
        .args(["audit", "watch", "--node", &cluster.consumer.arg()])
        .args(["--log", "provider", "--log", "exchange"])
        .args(["--rounds", "3", "--interval-ms", "200"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&watched.stdout);
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert!(watched.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("ALARM"), "{stdout}");
    assert!(
        stdout.contains("  provider  carrel.local/provider  size "),
        "{stdout}"
    );
    assert!(
        stdout.contains("  exchange  carrel.local/exchange  size "),
        "{stdout}"
    );
    assert!(stderr.contains("no alarm"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // The monitor accepts a larger checkpoint of the provider with its consistency proof.
    let mut monitor = Command::new(carrel_exe())
        .args(["audit", "watch", "--node", &cluster.consumer.arg()])
        .args([
            "--log",
            "provider",
            "--rounds",
            "100",
            "--interval-ms",
            "200",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    let first = lines
        .next()
        .expect("the monitor printed no checkpoint")
        .unwrap();
    assert!(first.ends_with("first seen"), "{first}");
    let (success, response) = cluster.query(
        &agreement,
        "SELECT region, COUNT(*) FROM regions GROUP BY region",
        Some(0.2),
    );
    assert!(success, "{response}");
    let grown = lines
        .next()
        .expect("the monitor missed the grown log")
        .unwrap();
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    assert!(!grown.contains("ALARM"), "{grown}");
    assert!(grown.contains("consistent with size"), "{grown}");
}
