//! `carrel audit watch`: a monitor that follows other nodes' checkpoints through the
//! operator's node and raises an alarm when a log forks or rolls back.
//!
//! Each log's checkpoint must open with the key the node trusts for it, under the origin
//! seen in its first checkpoint. The monitor compares it with the last one accepted. The
//! same size with another root is a fork, and a smaller size is a rollback. A larger size
//! is accepted only with a consistency proof from the last one, because without it the
//! log may have rewritten its history, so a failing proof is a fork too.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrel_ledger::{Checkpoint, Hash, NoteVerifier, merkle, open_checkpoint};
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::output::Output;
use crate::receipts::decode_hash;
use crate::trust::{AuditReader, note_origin};

/// How long one log's round of requests may take before the log counts as unreachable.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `carrel audit watch`.
pub struct WatchOptions {
    /// Participant names of the logs to watch.
    pub logs: Vec<String>,
    /// Time between two rounds.
    pub interval: Duration,
    /// Rounds to run before stopping; no limit when absent.
    pub rounds: Option<u64>,
}

/// One watched log and what the monitor has accepted from it.
struct Watched {
    name: String,
    /// The key the node trusts for the log, fetched once.
    key: Option<VerifyingKey>,
    /// The origin of the first checkpoint that opened with the key.
    origin: Option<String>,
    /// The last checkpoint accepted, with its note.
    last: Option<(Checkpoint, String)>,
    /// Checkpoints already reported in an alarm, by size and root.
    alarmed: HashSet<(u64, Hash)>,
}

/// The outcome of one look at a log.
enum Observation {
    /// The same checkpoint as before, or one already reported in an alarm.
    Unchanged,
    /// A new checkpoint, consistent with the last one accepted (if any).
    New {
        checkpoint: Checkpoint,
        previous: Option<u64>,
    },
    /// A checkpoint that contradicts the last one accepted.
    Alarm {
        kind: &'static str,
        reason: String,
        checkpoint: Checkpoint,
        note: String,
    },
    /// The log or its key could not be read; it is tried again next round.
    Unreachable(anyhow::Error),
    /// The checkpoint did not open with the trusted key and pinned origin.
    Invalid(anyhow::Error),
}

/// Runs `carrel audit watch` until SIGINT, or for `options.rounds` rounds.
///
/// # Errors
///
/// After the last round, when any alarm was raised.
pub async fn watch(node: &Path, options: WatchOptions, out: &Output) -> anyhow::Result<()> {
    let reader = AuditReader::open(node)?;
    if let Some(own) = options.logs.iter().find(|name| *name == reader.name()) {
        bail!(
            "{own} is this node; watch other participants' logs, and check this node's own \
             log with `carrel audit verify`"
        );
    }
    let mut logs: Vec<Watched> = options
        .logs
        .iter()
        .map(|name| Watched {
            name: name.clone(),
            key: None,
            origin: None,
            last: None,
            alarmed: HashSet::new(),
        })
        .collect();
    let mut alarms = 0u64;
    let mut round = 0u64;
    loop {
        round += 1;
        for log in &mut logs {
            let observation = tokio::time::timeout(ROUND_TIMEOUT, observe(&reader, log))
                .await
                .unwrap_or_else(|_| {
                    Observation::Unreachable(anyhow!("no response within {ROUND_TIMEOUT:?}"))
                });
            if matches!(observation, Observation::Alarm { .. }) {
                alarms += 1;
            }
            report(out, log, observation, options.interval);
        }
        if options.rounds.is_some_and(|rounds| round >= rounds) {
            break;
        }
        tokio::time::sleep(options.interval).await;
    }
    if alarms > 0 {
        bail!("{alarms} alarm(s) raised in {round} round(s); keep the ALARM lines as evidence");
    }
    if !out.is_json() {
        eprintln!(
            "watched {} log(s) for {round} round(s): no alarm",
            logs.len()
        );
    }
    Ok(())
}

/// Reads a log's checkpoint and compares it with the last one accepted, which it replaces
/// when the new one is consistent with it.
async fn observe(reader: &AuditReader, log: &mut Watched) -> Observation {
    let key = match log.key {
        Some(key) => key,
        None => match reader.public_key(&log.name).await {
            Ok(key) => *log.key.insert(key),
            Err(error) => return Observation::Unreachable(error),
        },
    };
    let response = match reader.fetch(&log.name, "/audit/checkpoint").await {
        Ok(response) => response,
        Err(error) => return Observation::Unreachable(error),
    };
    let checkpoint = match open(log, key, &response) {
        Ok(checkpoint) => checkpoint,
        Err(error) => return Observation::Invalid(error),
    };
    let note = response["note"].as_str().unwrap_or_default().to_owned();
    let seen = (checkpoint.tree_size(), *checkpoint.root_hash());
    if log.alarmed.contains(&seen) {
        return Observation::Unchanged;
    }
    let Some((last, _)) = &log.last else {
        log.last = Some((checkpoint.clone(), note));
        return Observation::New {
            checkpoint,
            previous: None,
        };
    };
    let (old_size, new_size) = (last.tree_size(), checkpoint.tree_size());
    let alarm = |log: &mut Watched, kind, reason| {
        log.alarmed.insert(seen);
        Observation::Alarm {
            kind,
            reason,
            checkpoint: checkpoint.clone(),
            note: note.clone(),
        }
    };
    match compare(last, &checkpoint) {
        Comparison::Same => return Observation::Unchanged,
        Comparison::Contradicts { kind, reason } => return alarm(log, kind, reason),
        Comparison::Larger => {}
    }
    let path = format!("/audit/consistency?old={old_size}&new={new_size}");
    let proof = match reader.fetch(&log.name, &path).await {
        Ok(reply) => reply,
        Err(error) => return Observation::Unreachable(error),
    };
    let last_root = *last.root_hash();
    if let Err(error) = check_consistency(&proof, old_size, new_size, &last_root, &checkpoint) {
        let reason = format!(
            "size {new_size} is not consistent with size {old_size} seen before: {error:#}"
        );
        return alarm(log, "fork", reason);
    }
    log.last = Some((checkpoint.clone(), note));
    Observation::New {
        checkpoint,
        previous: Some(old_size),
    }
}

/// The relation of a checkpoint to the last one accepted from the same log, before any proof.
#[derive(Debug, PartialEq, Eq)]
enum Comparison {
    /// The same size and root.
    Same,
    /// A fork (the same size with another root) or a rollback (a smaller size).
    Contradicts { kind: &'static str, reason: String },
    /// A larger tree, accepted only with a consistency proof.
    Larger,
}

fn compare(last: &Checkpoint, new: &Checkpoint) -> Comparison {
    let (old_size, new_size) = (last.tree_size(), new.tree_size());
    if new_size > old_size {
        return Comparison::Larger;
    }
    if new_size < old_size {
        return Comparison::Contradicts {
            kind: "rollback",
            reason: format!("size {new_size} is smaller than size {old_size} seen before"),
        };
    }
    if new.root_hash() == last.root_hash() {
        return Comparison::Same;
    }
    Comparison::Contradicts {
        kind: "fork",
        reason: format!(
            "size {new_size} has root {}, but the checkpoint of that size seen before had root {}",
            STANDARD.encode(new.root_hash()),
            STANDARD.encode(last.root_hash())
        ),
    }
}

/// Opens a checkpoint response with the log's trusted key, pinning the origin of the first
/// checkpoint that opens.
fn open(log: &mut Watched, key: VerifyingKey, response: &Value) -> anyhow::Result<Checkpoint> {
    let note = response["note"]
        .as_str()
        .with_context(|| format!("the checkpoint response has no note: {response}"))?;
    let origin = match &log.origin {
        Some(origin) => origin.clone(),
        None => note_origin(note).context("the checkpoint note is invalid")?,
    };
    let verifier = NoteVerifier::ed25519(&origin, key)
        .with_context(|| format!("origin {origin:?} is not a valid key name"))?;
    let checkpoint = open_checkpoint(note, &origin, &verifier).with_context(|| {
        format!(
            "the checkpoint does not open with the key this node trusts for {} under origin \
             {origin:?}",
            log.name
        )
    })?;
    log.origin.get_or_insert(origin);
    Ok(checkpoint)
}

/// Verifies the consistency proof in a `GET /audit/consistency` response.
fn check_consistency(
    reply: &Value,
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    checkpoint: &Checkpoint,
) -> anyhow::Result<()> {
    let proof = reply["proof"]
        .as_array()
        .with_context(|| format!("the response has no proof: {reply}"))?
        .iter()
        .map(decode_hash)
        .collect::<anyhow::Result<Vec<Hash>>>()?;
    merkle::verify_consistency(old_size, new_size, old_root, checkpoint.root_hash(), &proof)?;
    Ok(())
}

/// Prints one observation: a line or a JSON object on standard output for a new
/// checkpoint or an alarm, and a retry notice for a log that failed this round.
fn report(out: &Output, log: &Watched, observation: Observation, interval: Duration) {
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let origin = log.origin.as_deref().unwrap_or("?");
    let name = &log.name;
    let line = match observation {
        Observation::Unchanged => return,
        Observation::New {
            checkpoint,
            previous,
        } => {
            let root = STANDARD.encode(checkpoint.root_hash());
            let size = checkpoint.tree_size();
            if out.is_json() {
                json!({ "time": now, "event": "checkpoint", "log": name, "origin": origin,
                        "tree_size": size, "root": root, "consistent_with": previous })
                .to_string()
            } else {
                let since = previous.map_or_else(
                    || "first seen".to_owned(),
                    |old| format!("consistent with size {old}"),
                );
                format!("{now}  {name}  {origin}  size {size}  root {root}  {since}")
            }
        }
        Observation::Alarm {
            kind,
            reason,
            checkpoint,
            note,
        } => {
            if out.is_json() {
                json!({ "time": now, "event": "alarm", "kind": kind, "log": name,
                        "origin": origin, "tree_size": checkpoint.tree_size(),
                        "reason": reason, "note": note,
                        "previous_note": log.last.as_ref().map(|(_, note)| note) })
                .to_string()
            } else {
                format!("{now}  ALARM {kind}: {name} ({origin}) {reason}")
            }
        }
        Observation::Unreachable(error) => {
            return retry(out, &now, name, "unreachable", &error, interval);
        }
        Observation::Invalid(error) => {
            return retry(out, &now, name, "invalid", &error, interval);
        }
    };
    println!("{line}");
}

/// Reports a log that failed this round and is tried again after `interval`: on standard
/// error as text, or as a JSON object on standard output.
fn retry(
    out: &Output,
    now: &str,
    name: &str,
    event: &str,
    error: &anyhow::Error,
    interval: Duration,
) {
    if out.is_json() {
        println!(
            "{}",
            json!({ "time": now, "event": event, "log": name, "error": format!("{error:#}") })
        );
    } else {
        eprintln!("{now}  {name} {event}: {error:#}; retrying in {interval:?}");
    }
}

#[cfg(test)]
mod tests {
    use carrel_ledger::merkle::{consistency_proof, leaf_hash, root};

    use super::*;

    const ORIGIN: &str = "carrel.local/provider";

    /// Returns the leaf hashes of `count` entries, the first `changed_from` of them as
    /// an honest log has them and the rest rewritten.
    fn leaves(count: u64, changed_from: u64) -> Vec<Hash> {
        (0..count)
            .map(|i| {
                let text = if i < changed_from {
                    format!("entry {i}")
                } else {
                    format!("rewritten entry {i}")
                };
                leaf_hash(text.as_bytes())
            })
            .collect()
    }

    fn checkpoint(leaves: &[Hash]) -> Checkpoint {
        Checkpoint::new(ORIGIN, leaves.len() as u64, root(leaves)).unwrap()
    }

    fn proof_reply(proof: &[Hash]) -> Value {
        let hashes: Vec<String> = proof.iter().map(|h| STANDARD.encode(h)).collect();
        json!({ "proof": hashes })
    }

    #[test]
    fn same_checkpoint_is_unchanged() {
        let honest = checkpoint(&leaves(5, 5));
        assert_eq!(compare(&honest, &honest.clone()), Comparison::Same);
    }

    #[test]
    fn same_size_other_root_is_fork() {
        let honest = checkpoint(&leaves(5, 5));
        let forked = checkpoint(&leaves(5, 3));
        let Comparison::Contradicts { kind, reason } = compare(&honest, &forked) else {
            panic!("a fork was not detected");
        };
        assert_eq!(kind, "fork");
        assert!(reason.contains("size 5"), "{reason}");
    }

    #[test]
    fn smaller_size_is_rollback() {
        let later = checkpoint(&leaves(7, 7));
        let earlier = checkpoint(&leaves(5, 5));
        let Comparison::Contradicts { kind, .. } = compare(&later, &earlier) else {
            panic!("a rollback was not detected");
        };
        assert_eq!(kind, "rollback");
        assert_eq!(compare(&earlier, &later), Comparison::Larger);
    }

    #[test]
    fn consistency_proof_accepts_honest_growth() {
        let old = leaves(5, 5);
        let new = leaves(9, 9);
        let proof = consistency_proof(&new, 5, 9).unwrap();
        let result = check_consistency(&proof_reply(&proof), 5, 9, &root(&old), &checkpoint(&new));
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn consistency_proof_rejects_rewritten_prefix() {
        let old = leaves(5, 5);
        let rewritten = leaves(9, 2);
        let proof = consistency_proof(&rewritten, 5, 9).unwrap();
        let reply = proof_reply(&proof);
        let result = check_consistency(&reply, 5, 9, &root(&old), &checkpoint(&rewritten));
        assert!(result.is_err());
    }

    #[test]
    fn malformed_proof_is_rejected() {
        let old = leaves(5, 5);
        let new = leaves(9, 9);
        let reply = json!({ "proof": ["not base64!"] });
        assert!(check_consistency(&reply, 5, 9, &root(&old), &checkpoint(&new)).is_err());
        assert!(check_consistency(&json!({}), 5, 9, &root(&old), &checkpoint(&new)).is_err());
    }
}
