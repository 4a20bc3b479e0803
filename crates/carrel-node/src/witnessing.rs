//! Witnessing: every node cosigns the checkpoints of the logs of the parties it works
//! with, and has its own checkpoints cosigned by them, with C2SP tlog-cosignature lines
//! (timestamped Ed25519) and the checks of C2SP tlog-witness. The request carries the C2SP
//! body inside Carrel's signed JSON requests rather than as a plain-text POST, so a
//! witness built for the C2SP wire protocol needs an adapter. The notes, cosignatures,
//! policies and receipts are the standard formats.
//!
//! | request | response |
//! | --- | --- |
//! | `POST /witness/add-checkpoint` from a log's node, `{ "request": text }` with the C2SP body: `old <size>`, the consistency proof lines, a blank line, the signed checkpoint | `{ "cosignature": line }`, or the status of C2SP's table: 404, 403, 400, 409, 422 |
//! | `GET /witness/logs?origin=O` from the log's own node | the size and root this witness last cosigned for origin O |
//!
//! As a witness, a node accepts checkpoints only from the parties it works with. It
//! trusts a log's checkpoint only when the key the exchange registered for the submitting
//! participant signed it, under an origin that ends with the participant's name. It
//! cosigns a larger checkpoint only with a consistency proof from the last one it
//! cosigned, and saves the new tree head in a compare-and-swap before it responds, so that
//! a crash cannot roll it back. A rollback is a smaller checkpoint that the log cannot
//! prove consistent with the stored one. A fork is the same size with another root, or a
//! larger tree that no proof from the log links to the stored head. Either raises an
//! alarm, at most 16 per log: an error in the node's log, a count in `GET /admin/status`,
//! a row in `witness_alarms` with the offending note as evidence, and a `witness.alarm`
//! entry in the witness's own audit log.
//!
//! As a log, a node submits its latest checkpoint to each of its witnesses every
//! [`SUBMIT_INTERVAL`]: the exchange and the other party of each of its agreements, and,
//! on the exchange, every registered participant. It keeps each witness's cosignature
//! line by tree size, once the line verifies with the witness's key. A checkpoint is final
//! when `witness_quorum` witnesses (in `node.json`, one by default) have cosigned it.
//!
//! Routine cosignatures are not audit entries, because each entry would produce a new
//! checkpoint for the peers to cosign in turn.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use carrel_ledger::witness::{AddCheckpointRequest, KnownLog, TreeHead, check_add_checkpoint};
use carrel_ledger::{AuditLog, Checkpoint, CosignatureVerifier, Hash, NoteVerifier, merkle, note};
use carrel_model::AuditEvent;
use ed25519_dalek::VerifyingKey;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::{NodeError, NodeResult};
use crate::node::Node;

/// Tables of witnessing, created with the node's database.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS witnessed_logs (
    origin TEXT PRIMARY KEY,
    log TEXT NOT NULL,
    tree_size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS witnessed_logs_by_log ON witnessed_logs (log);
CREATE TABLE IF NOT EXISTS witness_alarms (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    log TEXT NOT NULL,
    kind TEXT NOT NULL,
    stored_size INTEGER NOT NULL,
    note TEXT NOT NULL,
    time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_cosignatures (
    tree_size INTEGER NOT NULL,
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (tree_size, witness)
);
CREATE TABLE IF NOT EXISTS witness_progress (
    witness TEXT PRIMARY KEY,
    tree_size INTEGER NOT NULL
);
";

/// Alarms a witness records per log, so that a log that keeps misbehaving cannot fill the
/// table or the witness's own audit log.
const MAX_ALARMS_PER_LOG: i64 = 16;

/// How long a node waits for one witness's cosignature.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a node submits its latest checkpoint to its witnesses.
pub const SUBMIT_INTERVAL: Duration = Duration::from_millis(200);

/// Returns the key name under which the node with log `origin` cosigns as a witness.
pub fn witness_name(origin: &str) -> String {
    format!("{origin}/witness")
}

/// The body of `POST /witness/add-checkpoint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddCheckpoint {
    /// The C2SP tlog-witness request body.
    pub request: String,
}

/// The query of `GET /witness/logs`.
#[derive(Debug, Clone, Deserialize)]
pub struct LogQuery {
    /// The log's origin.
    pub origin: String,
}

/// The state a witness stored for one log.
struct Witnessed {
    log: String,
    head: TreeHead,
}

fn load_witnessed(conn: &rusqlite::Connection, origin: &str) -> NodeResult<Option<Witnessed>> {
    let row = conn
        .query_row(
            "SELECT log, tree_size, root FROM witnessed_logs WHERE origin = ?1",
            [origin],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            },
        )
        .optional()?;
    row.map(|(log, size, root)| {
        let root: Hash = root
            .try_into()
            .map_err(|_| NodeError::Internal(format!("stored root of {origin} is not 32 bytes")))?;
        Ok(Witnessed {
            log,
            head: TreeHead {
                size: u64::try_from(size).unwrap_or(0),
                root,
            },
        })
    })
    .transpose()
}

/// Handles a log's `add-checkpoint` request: checks it, cosigns and saves the new tree
/// head, or rejects it and raises an alarm on a fork or a rollback.
///
/// # Errors
///
/// [`NodeError::NotFound`], [`NodeError::Forbidden`], [`NodeError::BadRequest`],
/// [`NodeError::Conflict`] (with the stored size in the message) and
/// [`NodeError::Unprocessable`], as C2SP's 404, 403, 400, 409 and 422.
pub async fn add_checkpoint(node: &Node, signer: &str, body: AddCheckpoint) -> NodeResult<Value> {
    let request = AddCheckpointRequest::parse(&body.request)
        .map_err(|e| NodeError::BadRequest(format!("invalid add-checkpoint request: {e}")))?;
    let origin = request.origin().to_owned();
    // A node witnesses the logs of the parties it works with, one origin each.
    if !witnesses(node)?.contains(signer) {
        return Err(NodeError::NotFound {
            what: "log witnessed here",
            id: signer.to_owned(),
        });
    }
    let other_origin: Option<String> = node.store.read(|c| {
        Ok(c.query_row(
            "SELECT origin FROM witnessed_logs WHERE log = ?1 AND origin != ?2",
            [signer, origin.as_str()],
            |r| r.get(0),
        )
        .optional()?)
    })?;
    if let Some(other) = other_origin {
        return Err(NodeError::Forbidden(format!(
            "{signer} has its log under origin {other:?} at this witness, not {origin:?}"
        )));
    }
    // A log's origin ends with its participant's name, so that no participant can take
    // another's origin at a witness before it.
    if origin.rsplit('/').next() != Some(signer) {
        return Err(NodeError::Forbidden(format!(
            "origin {origin:?} does not end with /{signer}; a participant's log origin ends \
             with its own name"
        )));
    }
    let verifier = NoteVerifier::ed25519(&origin, trusted_key(node, signer).await?)?;

    let stored = node.store.read(|c| load_witnessed(c, &origin))?;
    if let Some(stored) = &stored
        && stored.log != signer
    {
        return Err(NodeError::Forbidden(format!(
            "origin {origin:?} is the log of {}, not of {signer}",
            stored.log
        )));
    }
    let latest = stored.as_ref().map(|s| s.head);
    let known = KnownLog {
        verifiers: std::slice::from_ref(&verifier),
        latest,
    };
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    match check_add_checkpoint(&request, Some(&known), &node.witness, now) {
        Ok(accepted) => {
            let head = accepted.tree_head();
            save_head(node, signer, &origin, latest, head, request.note())?;
            Ok(
                json!({ "cosignature": accepted.cosignature, "tree_size": head.size,
                       "witness": node.witness.name() }),
            )
        }
        Err(rejection) => {
            let kind = match latest {
                Some(stored) => misbehavior(node, signer, &request, &verifier, &stored).await,
                None => None,
            };
            if let (Some(stored), Some(kind)) = (latest, kind) {
                raise_alarm(node, signer, &origin, kind, &stored, request.note());
            }
            let message = rejection.to_string();
            Err(match rejection.status() {
                404 => NodeError::NotFound {
                    what: "witnessed log",
                    id: origin,
                },
                403 => NodeError::Forbidden(message),
                400 => NodeError::BadRequest(message),
                409 => NodeError::Conflict(format!(
                    "{message}; this witness last cosigned size {}",
                    latest.map_or(0, |h| h.size)
                )),
                422 => NodeError::Unprocessable(message),
                _ => NodeError::Internal(message),
            })
        }
    }
}

/// Returns the key this node trusts for participant `name`: the exchange's key pinned at
/// `init` (the exchange is not in its own registry), or the registry's.
async fn trusted_key(node: &Node, name: &str) -> NodeResult<VerifyingKey> {
    let pinned = node
        .config
        .exchange
        .as_ref()
        .is_some_and(|e| e.name == name);
    let text = if pinned {
        node.exchange_key()?
    } else {
        node.participant(name).await?.public_key
    };
    let key = carrel_net::PublicKey::parse(&text)
        .map_err(|e| NodeError::Internal(format!("registered key of {name}: {e}")))?;
    VerifyingKey::from_bytes(&key.to_bytes())
        .map_err(|e| NodeError::Internal(format!("registered key of {name}: {e}")))
}

/// Saves the tree head just cosigned, if the stored one is still `expected`.
fn save_head(
    node: &Node,
    log: &str,
    origin: &str,
    expected: Option<TreeHead>,
    head: TreeHead,
    note: &str,
) -> NodeResult<()> {
    let now = OffsetDateTime::now_utc().to_string();
    let size = i64::try_from(head.size).unwrap_or(i64::MAX);
    let changed = node.store.write(|c| {
        Ok(match expected {
            None => c.execute(
                "INSERT OR IGNORE INTO witnessed_logs (origin, log, tree_size, root, note, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![origin, log, size, head.root.to_vec(), note, now],
            )?,
            Some(old) => c.execute(
                "UPDATE witnessed_logs SET tree_size = ?2, root = ?3, note = ?4, updated = ?5
                 WHERE origin = ?1 AND tree_size = ?6 AND root = ?7",
                params![
                    origin,
                    size,
                    head.root.to_vec(),
                    note,
                    now,
                    i64::try_from(old.size).unwrap_or(i64::MAX),
                    old.root.to_vec()
                ],
            )?,
        })
    })?;
    if changed == 0 {
        return Err(NodeError::Conflict(format!(
            "another checkpoint of {origin} was cosigned meanwhile; submit again"
        )));
    }
    Ok(())
}

/// Returns whether a rejected checkpoint, signed by the log, contradicts the stored head.
/// A fork is the same size with another root, or a larger tree that the stored one is not
/// a prefix of. A rollback is a smaller tree that the log can no longer extend to the
/// stored one. A smaller or larger checkpoint is checked with a consistency proof that the log
/// itself serves, so a late request of an honest log raises nothing.
async fn misbehavior(
    node: &Node,
    log: &str,
    request: &AddCheckpointRequest,
    verifier: &NoteVerifier,
    stored: &TreeHead,
) -> Option<&'static str> {
    let text = note::verify_note(request.note(), std::slice::from_ref(verifier)).ok()?;
    let checkpoint = Checkpoint::parse_body(text).ok()?;
    let (size, root) = (checkpoint.tree_size(), *checkpoint.root_hash());
    if size == stored.size {
        return (root != stored.root).then_some("fork");
    }
    let kind = if size < stored.size {
        "rollback"
    } else {
        "fork"
    };
    let ((old, old_root), (new, new_root)) = if size < stored.size {
        ((size, root), (stored.size, stored.root))
    } else {
        ((stored.size, stored.root), (size, root))
    };
    let proof = if size > stored.size && request.old_size() == stored.size {
        request.proof().to_vec()
    } else {
        let path = format!("/audit/consistency?old={old}&new={new}");
        match node.get(log, &path).await {
            Ok(reply) => decode_proof(&reply)?,
            // The log cannot prove a size it no longer holds.
            Err(NodeError::Remote { code, .. }) if code == "bad_request" => return Some(kind),
            Err(error) => {
                tracing::warn!(target: "carrel::witness", log, %error,
                    "consistency proof not fetched; no alarm raised");
                return None;
            }
        }
    };
    merkle::verify_consistency(old, new, &old_root, &new_root, &proof)
        .is_err()
        .then_some(kind)
}

/// Reads the base64 hashes of a `GET /audit/consistency` response.
fn decode_proof(reply: &Value) -> Option<Vec<Hash>> {
    use base64::Engine;
    reply["proof"]
        .as_array()?
        .iter()
        .map(|hash| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(hash.as_str()?)
                .ok()?;
            Hash::try_from(bytes.as_slice()).ok()
        })
        .collect()
}

/// Records a log's misbehaviour once per offending note: an error line, a row with the
/// evidence and an entry in this node's audit log.
fn raise_alarm(node: &Node, log: &str, origin: &str, kind: &str, stored: &TreeHead, note: &str) {
    let now = OffsetDateTime::now_utc().to_string();
    let saved = node.store.write(|c| {
        Ok(c.execute(
            "INSERT INTO witness_alarms (origin, log, kind, stored_size, note, time)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS
                 (SELECT 1 FROM witness_alarms WHERE origin = ?1 AND note = ?5)
             AND (SELECT COUNT(*) FROM witness_alarms WHERE origin = ?1) < ?7",
            params![
                origin,
                log,
                kind,
                i64::try_from(stored.size).unwrap_or(i64::MAX),
                note,
                now,
                MAX_ALARMS_PER_LOG
            ],
        )?)
    });
    match saved {
        Ok(0) => return,
        Ok(_) => {}
        Err(error) => {
            tracing::error!(target: "carrel::witness", %error, "alarm not recorded");
            return;
        }
    }
    tracing::error!(target: "carrel::witness", log, origin, kind, stored_size = stored.size,
        "ALARM: the log contradicts a checkpoint this witness cosigned");
    let detail = json!({ "log": log, "origin": origin, "kind": kind,
                         "cosigned_size": stored.size, "note": note });
    let recorded = node
        .store
        .record(AuditEvent::now("witness.alarm", log, false, detail));
    if let Err(error) = recorded {
        tracing::error!(target: "carrel::witness", %error, "alarm not recorded");
    }
}

/// Returns the number of alarms this node raised as a witness.
///
/// # Errors
///
/// A storage error.
pub fn alarm_count(node: &Node) -> NodeResult<u64> {
    let count: i64 = node
        .store
        .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM witness_alarms", [], |r| r.get(0))?))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Returns the tree head this witness stored for a log, to the log's own node.
///
/// # Errors
///
/// [`NodeError::NotFound`] for an origin this witness never cosigned,
/// [`NodeError::Forbidden`] for another requester than the log.
pub fn stored_head(node: &Node, signer: &str, query: &LogQuery) -> NodeResult<Value> {
    let stored = node
        .store
        .read(|c| load_witnessed(c, &query.origin))?
        .ok_or_else(|| NodeError::NotFound {
            what: "witnessed log",
            id: query.origin.clone(),
        })?;
    if stored.log != signer {
        return Err(NodeError::Forbidden(format!(
            "origin {:?} is the log of {}; only it may read what this witness stored",
            query.origin, stored.log
        )));
    }
    Ok(
        json!({ "origin": query.origin, "tree_size": stored.head.size,
               "root": base64_of(&stored.head.root) }),
    )
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Returns the witnesses of this node's log, which are also the logs it witnesses. For a
/// participant these are the exchange and the other party of each agreement, and for the
/// exchange every registered participant.
fn witnesses(node: &Node) -> NodeResult<BTreeSet<String>> {
    let me = node.identity.name();
    if node.is_exchange() {
        return node.store.read(|c| {
            let mut statement = c.prepare("SELECT name FROM participants")?;
            let names = statement.query_map([], |r| r.get::<_, String>(0))?;
            let mut names: BTreeSet<String> = names.collect::<Result<_, _>>()?;
            names.remove(me);
            Ok(names)
        });
    }
    let mut names: BTreeSet<String> = node.store.read(|c| {
        let mut statement = c.prepare(
            "SELECT json_extract(body, '$.agreement.assigner'),
                    json_extract(body, '$.agreement.assignee') FROM agreements",
        )?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
            ))
        })?;
        let mut names = BTreeSet::new();
        for row in rows {
            let (assigner, assignee) = row?;
            names.extend(assigner.into_iter().chain(assignee));
        }
        Ok(names)
    })?;
    names.insert(node.exchange_name()?.to_owned());
    names.remove(me);
    Ok(names)
}

/// Returns the cosignatures of this node's checkpoint of `size`, by witness name.
pub(crate) fn cosignatures(
    conn: &rusqlite::Connection,
    size: u64,
) -> NodeResult<Vec<(String, String)>> {
    let mut statement = conn.prepare(
        "SELECT witness, line FROM audit_cosignatures WHERE tree_size = ?1 ORDER BY witness",
    )?;
    let rows = statement.query_map([i64::try_from(size).unwrap_or(i64::MAX)], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Returns the checkpoint note of `size` with its witnesses' cosignature lines appended.
pub(crate) fn cosigned_note(note: &str, lines: &[(String, String)]) -> String {
    let mut text = note.to_owned();
    for (_, line) in lines {
        text.push_str(line.trim_end_matches('\n'));
        text.push('\n');
    }
    text
}

/// Returns the latest checkpoint that enough witnesses cosigned, as a cosigned note,
/// with its size and witnesses.
///
/// # Errors
///
/// A storage error.
pub fn latest_final(node: &Node) -> NodeResult<Option<(u64, String, Vec<String>)>> {
    let quorum = node.config.witness_quorum;
    node.store.read(|c| {
        let sizes: Vec<i64> = {
            let mut statement = c.prepare(
                "SELECT tree_size FROM audit_cosignatures GROUP BY tree_size
                 HAVING COUNT(*) >= ?1 ORDER BY tree_size DESC LIMIT 1",
            )?;
            let rows = statement.query_map([quorum as i64], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let Some(size) = sizes.first().and_then(|s| u64::try_from(*s).ok()) else {
            return Ok(None);
        };
        let note: String = c.query_row(
            "SELECT note FROM audit_checkpoints WHERE tree_size = ?1",
            [size as i64],
            |r| r.get(0),
        )?;
        let lines = cosignatures(c, size)?;
        let names = lines.iter().map(|(w, _)| w.clone()).collect();
        Ok(Some((size, cosigned_note(&note, &lines), names)))
    })
}

/// Submits this node's latest checkpoint to each of its witnesses every
/// [`SUBMIT_INTERVAL`], until the process stops.
pub async fn submit_loop(node: Arc<Node>) {
    loop {
        tokio::time::sleep(SUBMIT_INTERVAL).await;
        if node.store.stopping() {
            return;
        }
        if let Err(error) = submit_once(&node).await {
            tracing::debug!(target: "carrel::witness", %error, "checkpoint not submitted");
        }
    }
}

/// Submits the latest checkpoint to every witness that has not cosigned it, all at once,
/// so that a witness that does not respond delays no other.
async fn submit_once(node: &Arc<Node>) -> NodeResult<()> {
    let Some(latest) = node.store.read(|c| Ok(AuditLog::latest_checkpoint(c)?))? else {
        return Ok(());
    };
    let size = latest.checkpoint.tree_size();
    let mut submissions = tokio::task::JoinSet::new();
    for witness in witnesses(node)? {
        let progress: Option<i64> = node.store.read(|c| {
            Ok(c.query_row(
                "SELECT tree_size FROM witness_progress WHERE witness = ?1",
                [&witness],
                |r| r.get(0),
            )
            .optional()?)
        })?;
        let old = progress.and_then(|p| u64::try_from(p).ok());
        if old == Some(size) {
            continue;
        }
        let (node, latest) = (node.clone(), latest.clone());
        submissions.spawn(async move {
            let submitted = tokio::time::timeout(
                SUBMIT_TIMEOUT,
                submit_to(&node, &witness, old.unwrap_or(0), &latest),
            )
            .await;
            let error = match submitted {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no response within {} s", SUBMIT_TIMEOUT.as_secs()),
            };
            tracing::debug!(target: "carrel::witness", %witness, %error,
                "checkpoint not cosigned");
        });
    }
    while submissions.join_next().await.is_some() {}
    Ok(())
}

/// Submits `latest` to `witness` with a consistency proof from `old`, and keeps the
/// cosignature once it verifies with the witness's key. On a 409 it learns the size the
/// witness stored.
async fn submit_to(
    node: &Node,
    witness: &str,
    old: u64,
    latest: &carrel_ledger::SignedCheckpoint,
) -> NodeResult<()> {
    let size = latest.checkpoint.tree_size();
    let old = old.min(size);
    let proof = if old == 0 {
        Vec::new()
    } else {
        node.store
            .read(|c| Ok(AuditLog::consistency_proof(c, old, size)?))?
    };
    let request = AddCheckpointRequest::new(old, proof, latest.note.clone())?;
    let body = AddCheckpoint {
        request: request.to_string(),
    };
    match node.post(witness, "/witness/add-checkpoint", &body).await {
        Ok(reply) => {
            let line = reply["cosignature"].as_str().unwrap_or_default();
            let line = check_cosignature(node, witness, &latest.checkpoint, line).await?;
            node.store.write(|c| {
                c.execute(
                    "INSERT OR REPLACE INTO audit_cosignatures (tree_size, witness, line)
                     VALUES (?1, ?2, ?3)",
                    params![size as i64, witness, line],
                )?;
                c.execute(
                    "INSERT OR REPLACE INTO witness_progress (witness, tree_size) VALUES (?1, ?2)",
                    params![witness, size as i64],
                )?;
                Ok(())
            })
        }
        Err(NodeError::Remote { code, .. }) if code == "conflict" || code == "not_found" => {
            let path = format!("/witness/logs?origin={}", query_value(&node.config.origin));
            let stored = match node.get(witness, &path).await {
                Ok(stored) => stored["tree_size"].as_i64(),
                Err(NodeError::Remote { code, .. }) if code == "not_found" => Some(0),
                Err(error) => return Err(error),
            };
            if let Some(stored) = stored {
                node.store.write(|c| {
                    c.execute(
                        "INSERT OR REPLACE INTO witness_progress (witness, tree_size) \
                         VALUES (?1, ?2)",
                        params![witness, stored],
                    )?;
                    Ok(())
                })?;
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Checks a witness's cosignature line on `checkpoint`: one line, under a key name that
/// ends with `/{witness}/witness`, verified with the key this node trusts for the
/// witness. Returns the line with its newline.
async fn check_cosignature(
    node: &Node,
    witness: &str,
    checkpoint: &Checkpoint,
    line: &str,
) -> NodeResult<String> {
    let invalid = |reason: &str| NodeError::Peer {
        peer: witness.to_owned(),
        message: format!("invalid cosignature: {reason}"),
    };
    let line = line.trim_end_matches('\n');
    if line.contains('\n') {
        return Err(invalid("more than one line"));
    }
    let name = line
        .strip_prefix("\u{2014} ")
        .and_then(|rest| rest.split(' ').next())
        .ok_or_else(|| invalid("not a signature line"))?;
    if !name.ends_with(&format!("/{witness}/witness")) {
        return Err(invalid(&format!(
            "key name {name:?} is not that of {witness}"
        )));
    }
    let verifier = CosignatureVerifier::ed25519(name, trusted_key(node, witness).await?)?;
    verifier
        .verify_line(&checkpoint.body(), line)
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(format!("{line}\n"))
}

/// Percent-encodes a query value, keeping only the unreserved characters of RFC 3986.
pub fn query_value(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
