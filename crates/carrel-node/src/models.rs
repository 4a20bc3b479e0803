//! Trained models as derived products: each party keeps its own part, with the lineage
//! that produced it, and a training job's checkpoint between rounds.
//!
//! A model's record names its operator, the participant that has the operating right
//! under the training agreement. Registering a model writes `model.registered` to the audit
//! log with the lineage (agreements, datasets by hash, rounds, privacy loss) and the SHA-256
//! of the part, never the weights themselves.

use carrel_model::{AuditEvent, TrainingKind};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::{NodeError, NodeResult};
use crate::signing::sha256_hex;
use crate::store::{Store, found, from_json, to_json};

/// A dataset that went into a model, named by its owner and content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// Participant that has the dataset.
    pub holder: String,
    /// SHA-256 of the rows used, hex: of the registered table at a provider, of the local
    /// file at the consumer.
    pub sha256: String,
    /// Rows that entered training.
    pub rows: u64,
}

/// This party's part of a model: the weights of its own columns, and the intercept where
/// this party has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPart {
    /// Feature columns, in weight order.
    pub columns: Vec<String>,
    /// One weight per column.
    pub weights: Vec<f64>,
    /// The intercept, held by the coordinator of a horizontal model and by the guest of a
    /// vertical one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intercept: Option<f64>,
}

impl ModelPart {
    /// Returns the SHA-256 of the part's JSON, hex.
    pub fn sha256(&self) -> String {
        sha256_hex(to_json(self).as_bytes())
    }
}

/// A trained model as this node keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Model id, shared by every party's part.
    pub id: String,
    /// Training job that produced it.
    pub job: String,
    /// Horizontal or vertical.
    pub kind: TrainingKind,
    /// This node's role in the training: `coordinator`, `provider`, `guest` or `host`.
    pub role: String,
    /// Participant that has the operating right: the only one that may run predictions.
    pub operator: String,
    /// Every party of the training, in name order.
    pub parties: Vec<String>,
    /// Agreements the training ran under.
    pub agreements: Vec<String>,
    /// Datasets by hash.
    pub datasets: Vec<DatasetRef>,
    /// Rounds (horizontal) or epochs (vertical) run.
    pub rounds: u32,
    /// Privacy loss of the training charged to each agreement, epsilon; 0 without noise.
    pub epsilon: f64,
    /// Privacy loss delta.
    pub delta: f64,
    /// This party's part.
    pub part: ModelPart,
    /// Evaluation on held-out rows, where this party computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Value>,
}

impl ModelRecord {
    /// Returns the lineage as the audit log records it: everything but the weights. A model
    /// trained without noise has `differential_privacy` false and null epsilon and delta,
    /// because an epsilon of 0 would read as perfect privacy.
    pub fn lineage(&self) -> Value {
        let dp = self.epsilon > 0.0;
        json!({
            "model": self.id, "job": self.job, "kind": self.kind, "role": self.role,
            "operator": self.operator, "parties": self.parties, "agreements": self.agreements,
            "datasets": self.datasets, "rounds": self.rounds, "differential_privacy": dp,
            "epsilon": dp.then_some(self.epsilon), "delta": dp.then_some(self.delta),
            "columns": self.part.columns, "part_sha256": self.part.sha256(),
        })
    }
}

/// Registers a model inside the caller's transaction and pushes `model.registered`.
///
/// # Errors
///
/// [`NodeError::Conflict`] when a model with this id exists here, or a storage error.
pub fn register(
    tx: &rusqlite::Transaction,
    events: &mut Vec<AuditEvent>,
    actor: &str,
    record: &ModelRecord,
) -> NodeResult<()> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO models (id, job_id, body, created) VALUES (?1, ?2, ?3, ?4)",
        params![
            record.id,
            record.job,
            to_json(record),
            OffsetDateTime::now_utc().to_string()
        ],
    )?;
    if inserted == 0 {
        return Err(NodeError::Conflict(format!(
            "model {} is registered already",
            record.id
        )));
    }
    let mut event = AuditEvent::now("model.registered", actor, true, record.lineage());
    event.agreement = record.agreements.first().cloned();
    events.push(event);
    Ok(())
}

/// Loads one model.
///
/// # Errors
///
/// [`NodeError::NotFound`] for an unknown id, or a storage error.
pub fn load(conn: &rusqlite::Connection, id: &str) -> NodeResult<ModelRecord> {
    let body: String = found(
        conn.query_row("SELECT body FROM models WHERE id = ?1", [id], |r| r.get(0)),
        "model",
        id,
    )?;
    from_json(&body)
}

/// Lists every model, newest first.
///
/// # Errors
///
/// A storage error.
pub fn list(conn: &rusqlite::Connection) -> NodeResult<Vec<ModelRecord>> {
    let mut statement = conn.prepare("SELECT body FROM models ORDER BY created DESC, id")?;
    let bodies = statement
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    bodies.iter().map(|b| from_json(b)).collect()
}

/// Saves a training job's checkpoint, replacing the previous one.
///
/// # Errors
///
/// A storage error.
pub fn save_checkpoint(store: &Store, job: &str, checkpoint: &Value) -> NodeResult<()> {
    store.write(|conn| {
        conn.execute(
            "INSERT INTO job_checkpoints (job_id, body, updated) VALUES (?1, ?2, ?3)
             ON CONFLICT (job_id) DO UPDATE SET body = excluded.body, updated = excluded.updated",
            params![
                job,
                checkpoint.to_string(),
                OffsetDateTime::now_utc().to_string()
            ],
        )?;
        Ok(())
    })
}

/// Loads a training job's last checkpoint, if it saved one.
///
/// # Errors
///
/// A storage error, or [`NodeError::Internal`] for a checkpoint that is not JSON.
pub fn load_checkpoint(store: &Store, job: &str) -> NodeResult<Option<Value>> {
    store.read(|conn| load_checkpoint_in(conn, job))
}

/// Loads a training job's last checkpoint through the connection `conn`.
///
/// # Errors
///
/// As [`load_checkpoint`].
pub fn load_checkpoint_in(conn: &rusqlite::Connection, job: &str) -> NodeResult<Option<Value>> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM job_checkpoints WHERE job_id = ?1",
            [job],
            |r| r.get(0),
        )
        .optional()?;
    body.map(|b| {
        serde_json::from_str(&b)
            .map_err(|e| NodeError::Internal(format!("checkpoint of job {job} is not JSON: {e}")))
    })
    .transpose()
}
