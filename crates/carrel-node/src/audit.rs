//! The node's audit log as its peers read it: the latest signed checkpoint, consistency
//! proofs between two sizes, and the inclusion proof of one entry with the entry itself.
//!
//! | request | response |
//! | --- | --- |
//! | `GET /audit/checkpoint` | the latest checkpoint note with its witnesses' cosignatures, its size and root, whether it is final, and the latest final checkpoint |
//! | `GET /audit/consistency?old=M&new=N` | the RFC 6962 consistency proof from size M to size N, base64 |
//! | `GET /audit/inclusion?index=I&size=N` | the entry at index I, base64, and its inclusion proof in the tree of size N |
//! | `GET /audit/entries?agreement=A` | the index and kind of every entry about agreement A, to the agreement's parties |
//!
//! Checkpoints and consistency proofs reveal no entry, so every registered participant
//! may read them. An entry names an agreement and what happened under it, so only the
//! node itself, the entry's actor and the parties of the entry's agreement may read it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrel_ledger::{AuditLog, Hash};
use carrel_model::AuditEvent;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::witnessing;

/// Query of `GET /audit/consistency`.
#[derive(Debug, Deserialize)]
pub struct ConsistencyQuery {
    /// Size of the older checkpoint.
    pub old: u64,
    /// Size of the newer checkpoint.
    pub new: u64,
}

/// The `carrel audit` command's request to read another node's audit log through this
/// node, which signs the request.
#[derive(Debug, Deserialize)]
pub struct Fetch {
    /// The node to read from.
    pub peer: String,
    /// A path under `/audit/`, with its query.
    pub path: String,
}

/// Reads `GET {path}` from a peer's audit API, signed by this node.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for a path outside `/audit/`, and the peer's errors.
pub async fn fetch(node: &Node, request: &Fetch) -> NodeResult<Value> {
    if !request.path.starts_with("/audit/") || request.path.contains("..") {
        return Err(NodeError::BadRequest(format!(
            "path {:?} is not under /audit/; give a path such as /audit/checkpoint",
            request.path
        )));
    }
    if request.peer == node.identity.name() {
        return Err(NodeError::BadRequest(
            "this node's own log is read from its folder: use carrel audit verify or prove".into(),
        ));
    }
    node.get(&request.peer, &request.path).await
}

/// Returns the public key of a participant, the exchange or this node, as this node
/// trusts it: pinned at `init` for the exchange, from the exchange's registry otherwise.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a name the exchange does not know.
pub async fn key_of(node: &Node, name: &str) -> NodeResult<Value> {
    let key = if name == node.identity.name() {
        node.identity.public_key_text()
    } else if node
        .config
        .exchange
        .as_ref()
        .is_some_and(|e| e.name == name)
    {
        node.exchange_key()?
    } else {
        node.participant(name).await?.public_key
    };
    Ok(json!({ "name": name, "public_key": key }))
}

/// Index of the log's entries by the agreement they are about, for `GET /audit/entries`.
pub(crate) const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS audit_entries_by_agreement
    ON audit_entries (json_extract(CAST(entry AS TEXT), '$.agreement'));
";

/// Query of `GET /audit/entries`.
#[derive(Debug, Deserialize)]
pub struct EntriesQuery {
    /// The agreement the entries are about.
    pub agreement: String,
}

/// Returns the index, kind and time of every entry about an agreement, to a party of it, so
/// that it can fetch a receipt for each. The entries are found through [`INDEXES`].
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a reader that is not a party to the agreement.
pub fn entries(node: &Node, signer: &str, query: &EntriesQuery) -> NodeResult<Value> {
    let found = node.store.read(|c| {
        if signer != node.identity.name() {
            let record = agreements::load(c, &query.agreement).map_err(|_| {
                NodeError::Forbidden(format!(
                    "{signer:?} is not a party to agreement {}",
                    query.agreement
                ))
            })?;
            let agreement = &record.signed.agreement;
            if agreement.assignee != signer && agreement.assigner != signer {
                return Err(NodeError::Forbidden(format!(
                    "{signer:?} is not a party to agreement {}",
                    query.agreement
                )));
            }
        }
        let mut statement = c.prepare(
            "SELECT idx, json_extract(CAST(entry AS TEXT), '$.kind'),
                    json_extract(CAST(entry AS TEXT), '$.time')
             FROM audit_entries
             WHERE json_extract(CAST(entry AS TEXT), '$.agreement') = ?1 ORDER BY idx",
        )?;
        let rows = statement.query_map([&query.agreement], |r| {
            Ok(
                json!({ "index": r.get::<_, i64>(0)?, "kind": r.get::<_, Option<String>>(1)?,
                       "time": r.get::<_, Option<String>>(2)? }),
            )
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })?;
    Ok(json!({ "agreement": query.agreement, "entries": found }))
}

/// Query of `GET /audit/inclusion`.
#[derive(Debug, Deserialize)]
pub struct InclusionQuery {
    /// Index of the entry, from 0.
    pub index: u64,
    /// Size of the tree the proof leads to.
    pub size: u64,
}

/// Returns the latest signed checkpoint.
///
/// # Errors
///
/// A storage error.
pub fn checkpoint(node: &Node) -> NodeResult<Value> {
    let (latest, lines) = node.store.read(|c| {
        let latest = AuditLog::latest_checkpoint(c)?
            .ok_or_else(|| NodeError::Internal("the audit log has no checkpoint".into()))?;
        let lines = witnessing::cosignatures(c, latest.checkpoint.tree_size())?;
        Ok((latest, lines))
    })?;
    let cosigned_by: Vec<&str> = lines.iter().map(|(w, _)| w.as_str()).collect();
    let last_final = witnessing::latest_final(node)?.map(|(size, note, witnesses)| {
        json!({ "tree_size": size, "note": note, "cosigned_by": witnesses })
    });
    Ok(json!({
        "origin": latest.checkpoint.origin(),
        "tree_size": latest.checkpoint.tree_size(),
        "root": STANDARD.encode(latest.checkpoint.root_hash()),
        "note": witnessing::cosigned_note(&latest.note, &lines),
        "cosigned_by": cosigned_by,
        "final": lines.len() >= node.config.witness_quorum,
        "witness_quorum": node.config.witness_quorum,
        "last_final": last_final,
    }))
}

/// Returns the consistency proof from size `old` to size `new`.
///
/// # Errors
///
/// [`NodeError::BadRequest`] when `old` exceeds `new` or `new` exceeds the log's size.
pub fn consistency(node: &Node, query: &ConsistencyQuery) -> NodeResult<Value> {
    let proof = node.store.read(|c| {
        let size = AuditLog::tree_size(c)?;
        if query.old > query.new || query.new > size {
            return Err(NodeError::BadRequest(format!(
                "a consistency proof from size {} to size {} is invalid: give old <= new <= \
                 {size}, the log's size",
                query.old, query.new
            )));
        }
        Ok(AuditLog::consistency_proof(c, query.old, query.new)?)
    })?;
    Ok(json!({ "old": query.old, "new": query.new, "proof": encode_all(&proof) }))
}

/// Returns entry `index` and its inclusion proof in the tree of `size` entries, to a
/// reader that may see the entry.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for an index outside the tree or a size beyond the log's,
/// [`NodeError::Forbidden`] for a reader that is not a party to the entry.
pub fn inclusion(node: &Node, signer: &str, query: &InclusionQuery) -> NodeResult<Value> {
    let (entry, proof) = node.store.read(|c| {
        let size = AuditLog::tree_size(c)?;
        if query.index >= query.size || query.size > size {
            return Err(NodeError::BadRequest(format!(
                "entry {} of a tree of size {} does not exist: give index < size <= {size}, \
                 the log's size",
                query.index, query.size
            )));
        }
        let entry = AuditLog::entry(c, query.index)?;
        check_reader(c, node, signer, &entry, query.index)?;
        Ok((
            entry,
            AuditLog::inclusion_proof(c, query.index, query.size)?,
        ))
    })?;
    Ok(json!({ "index": query.index, "tree_size": query.size,
               "entry": STANDARD.encode(&entry), "proof": encode_all(&proof) }))
}

/// Checks that `signer` may read an entry: the node itself, the entry's actor, or a party
/// of the entry's agreement.
fn check_reader(
    conn: &rusqlite::Connection,
    node: &Node,
    signer: &str,
    entry: &[u8],
    index: u64,
) -> NodeResult<()> {
    if signer == node.identity.name() {
        return Ok(());
    }
    let event: Option<AuditEvent> = serde_json::from_slice(entry).ok();
    let allowed = event.is_some_and(|event| {
        event.actor == signer
            || event.agreement.is_some_and(|id| {
                agreements::load(conn, &id).is_ok_and(|record| {
                    let agreement = &record.signed.agreement;
                    agreement.assignee == signer || agreement.assigner == signer
                })
            })
    });
    if allowed {
        Ok(())
    } else {
        Err(NodeError::Forbidden(format!(
            "{signer:?} is not a party to audit entry {index}; only its actor and the parties \
             of its agreement may read it"
        )))
    }
}

fn encode_all(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}
