//! `carrel audit`: checking a node's log offline, from its folder.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrel_ledger::{AuditLog, NoteVerifier};
use carrel_node::NodeDir;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use crate::output::Output;

fn open(dir: &Path) -> anyhow::Result<(Connection, String, NoteVerifier)> {
    let node = NodeDir::new(dir);
    let config = node.load_config()?;
    let pem = std::fs::read_to_string(node.key())
        .with_context(|| format!("cannot read {}", node.key().display()))?;
    let key = SigningKey::from_pkcs8_pem(&pem)
        .with_context(|| format!("{} is not an Ed25519 key", node.key().display()))?;
    let verifier = NoteVerifier::ed25519(&config.origin, key.verifying_key())?;
    let conn = Connection::open_with_flags(node.database(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", node.database().display()))?;
    Ok((conn, config.origin, verifier))
}

/// Verifies every entry of the node's log against its latest checkpoint.
pub fn verify(dir: &Path, out: &Output) -> anyhow::Result<()> {
    let report = verify_report(dir)?;
    if out.is_json() {
        out.value("audit", &report);
    } else {
        println!(
            "audit log of {} verified: {} entries, root {}, {} checkpoints consistent",
            report["origin"].as_str().unwrap_or("?"),
            report["tree_size"],
            report["root"].as_str().unwrap_or("?"),
            report["checkpoints"],
        );
    }
    Ok(())
}

/// Verifies a node's log and returns the report as JSON.
pub fn verify_report(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let (conn, origin, verifier) = open(dir)?;
    let report = AuditLog::verify(&conn, &origin, &verifier)
        .with_context(|| format!("audit log in {} failed verification", dir.display()))?;
    Ok(json!({
        "origin": origin,
        "tree_size": report.tree_size,
        "root": STANDARD.encode(report.root_hash),
        "checkpoints": report.checkpoints_checked,
    }))
}

/// Prints the inclusion proof of entry `index` against the latest checkpoint, after
/// checking it.
pub fn prove(dir: &Path, index: u64, out: &Output) -> anyhow::Result<()> {
    let (conn, _, _) = open(dir)?;
    let latest = AuditLog::latest_checkpoint(&conn)?.context("the log has no checkpoint yet")?;
    let size = latest.checkpoint.tree_size();
    let entry = AuditLog::entry(&conn, index)?;
    let proof = AuditLog::inclusion_proof(&conn, index, size)?;
    let leaf = carrel_ledger::merkle::leaf_hash(&entry);
    carrel_ledger::merkle::verify_inclusion(
        &leaf,
        index,
        size,
        &proof,
        latest.checkpoint.root_hash(),
    )?;
    let hashes: Vec<String> = proof.iter().map(|h| STANDARD.encode(h)).collect();
    let value = json!({
        "index": index,
        "tree_size": size,
        "entry": String::from_utf8_lossy(&entry),
        "leaf_hash": STANDARD.encode(leaf),
        "proof": hashes,
        "checkpoint": latest.note,
    });
    if out.is_json() {
        out.value("proof", &value);
        return Ok(());
    }
    println!(
        "entry {index} of {size}: {}",
        String::from_utf8_lossy(&entry)
    );
    println!("leaf hash {}", STANDARD.encode(leaf));
    println!(
        "inclusion proof ({} hashes, leaf's sibling first):",
        hashes.len()
    );
    for hash in &hashes {
        println!("  {hash}");
    }
    println!("checkpoint:\n{}", latest.note);
    println!("proof verified against the checkpoint's root");
    Ok(())
}
