//! Prediction with a trained model on new rows, as a job of kind `predict` under the
//! training agreement.
//!
//! Only the model's operator runs predictions. A horizontal model is whole at its
//! operator, which scores the rows locally without a peer. A vertical model is split
//! between the guest and the host, so the guest requests the host's partial logits (see
//! [`super::vertical`]). Every prediction writes `job.started` and `predict.completed` to the
//! log of each party, with SHA-256 hashes of the ids and the scores but never the values.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use carrel_learn::data::{FeatureTable, LoadOptions, read_csv};
use carrel_learn::logistic::{dot, sigmoid};
use carrel_model::TrainingKind;
use carrel_mpc::transcript::Transcript;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::blocking;
use crate::jobs::{self, NewJob};
use crate::models::{self, ModelRecord};
use crate::node::Node;
use crate::signing::sha256_hex;

/// Kind of a prediction job in every party's job table.
pub const KIND: &str = "predict";

/// Label of the prediction protocol in transcripts.
pub(crate) const PROTOCOL: &str = "carrel-predict-v1";

/// Largest number of rows one prediction job scores, whatever the agreement allows, so
/// that the ids and the host's partial logits fit in one request and one response.
///
/// NOTE: sized for ids of up to about 100 bytes under the 16 MiB body limit. Longer ids
/// may need fewer rows per job.
pub(crate) const MAX_PREDICTION_IDS: usize = 100_000;

/// Default id column of the data file.
const DEFAULT_ID_COLUMN: &str = "id";

/// A request of the `carrel predict` command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartPrediction {
    /// Id of the model, such as `model-<training job id>`.
    pub model: String,
    /// CSV file with the ids and this node's feature columns of the model.
    pub data: PathBuf,
    /// Id column of `data`, or `id` when absent.
    #[serde(default)]
    pub id_column: Option<String>,
    /// CSV file to write, with the columns `id`, `logit` and `probability`.
    pub output: PathBuf,
}

/// The rows to score, read from the data file.
pub(crate) struct Rows {
    /// Ids and the model part's feature columns, as read.
    pub table: FeatureTable,
    /// SHA-256 of the data file, hex.
    pub sha256: String,
}

/// Starts a prediction job with a model of which this node has a part. Returns the job id;
/// a vertical prediction goes on in the background.
///
/// # Errors
///
/// [`NodeError::NotFound`] for an unknown model, [`NodeError::Forbidden`] for a node that
/// may not run predictions with it, [`NodeError::BadRequest`] for an unreadable data file
/// or more rows than the agreement allows. Each error is recorded as `predict.rejected`.
pub async fn start(node: Arc<Node>, request: StartPrediction) -> NodeResult<Value> {
    let me = node.identity.name().to_owned();
    let model = node
        .store
        .read(|c| models::load(c, &request.model))
        .map_err(|e| node.store.reject(KIND, &me, None, e))?;
    match model.kind {
        TrainingKind::Horizontal => predict_locally(&node, request, model).await,
        TrainingKind::Vertical => super::vertical::start_prediction(node, request, model).await,
    }
}

/// Reads the ids and the feature columns `columns` from the data file of `request`.
///
/// # Errors
///
/// [`NodeError::BadRequest`] naming the file, row, column or value at fault.
pub(crate) async fn read_rows(request: &StartPrediction, columns: &[String]) -> NodeResult<Rows> {
    let path = request.data.clone();
    let id_column = request
        .id_column
        .clone()
        .unwrap_or_else(|| DEFAULT_ID_COLUMN.to_owned());
    let columns = columns.to_vec();
    blocking(move || {
        let bytes = std::fs::read(&path).map_err(|e| {
            NodeError::BadRequest(format!("data file {} cannot be read: {e}", path.display()))
        })?;
        let sha256 = sha256_hex(&bytes);
        drop(bytes);
        let options = LoadOptions::new(id_column).with_features(columns);
        let loaded = read_csv(&path, &options).map_err(|e| NodeError::BadRequest(e.to_string()))?;
        if loaded.table.len() > MAX_PREDICTION_IDS {
            return Err(NodeError::BadRequest(format!(
                "data file {} has {} rows; one prediction job scores at most \
                 {MAX_PREDICTION_IDS}, so split the file",
                path.display(),
                loaded.table.len()
            )));
        }
        Ok(Rows {
            table: loaded.table,
            sha256,
        })
    })
    .await
}

/// Checks a row count against a limit of the agreement.
///
/// # Errors
///
/// [`NodeError::Forbidden`] when `rows` exceeds `limit`.
pub(crate) fn check_row_limit(rows: usize, limit: u64, agreement: &str) -> NodeResult<()> {
    if rows as u64 > limit {
        return Err(NodeError::Forbidden(format!(
            "a prediction on {rows} rows exceeds the max_prediction_rows of {limit} of \
             agreement {agreement}; score at most {limit} rows per job"
        )));
    }
    Ok(())
}

/// Returns the SHA-256 of a list of ids, hex.
pub(crate) fn ids_sha256(ids: &[String]) -> String {
    sha256_hex(&json_bytes(ids))
}

/// Returns the bytes of optional scores as the transcript and the hashes take them: per
/// row a flag byte (0 for a missing score), then the score as little-endian f64.
pub(crate) fn score_bytes(scores: &[Option<f64>]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(scores.len() * 9);
    for score in scores {
        match score {
            Some(value) => {
                bytes.push(1);
                bytes.extend(value.to_le_bytes());
            }
            None => bytes.extend([0; 9]),
        }
    }
    bytes
}

/// Returns the JSON bytes of a list of ids.
pub(crate) fn json_bytes(ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(ids).unwrap_or_default()
}

/// Returns the transcript of a prediction: the model, the ids and one party's scores.
pub(crate) fn transcript(job: &str, model: &str, ids: &[String], scores: &[Option<f64>]) -> String {
    let mut transcript = Transcript::new(PROTOCOL, job);
    transcript.append(b"model", model.as_bytes());
    transcript.append(b"ids", &json_bytes(ids));
    transcript.append(b"scores", &score_bytes(scores));
    hex::encode(transcript.hash())
}

/// Writes `id,logit,probability` per row. A missing logit leaves both fields empty.
///
/// # Errors
///
/// [`NodeError::Io`] naming the file that cannot be written.
pub(crate) fn write_predictions(
    path: &Path,
    ids: &[String],
    logits: &[Option<f64>],
) -> NodeResult<()> {
    let failed = |e: &dyn std::fmt::Display| {
        NodeError::Io(format!(
            "cannot write predictions to {}: {e}",
            path.display()
        ))
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| failed(&e))?;
    writer
        .write_record(["id", "logit", "probability"])
        .map_err(|e| failed(&e))?;
    for (id, logit) in ids.iter().zip(logits) {
        // Display of f64 prints the shortest text that parses back to the same value.
        let (logit, probability) = match logit {
            Some(z) => (z.to_string(), sigmoid(*z).to_string()),
            None => (String::new(), String::new()),
        };
        writer
            .write_record([id.as_str(), &logit, &probability])
            .map_err(|e| failed(&e))?;
    }
    writer.flush().map_err(|e| failed(&e))
}

/// Scores rows with a horizontal model at its operator, which has the whole model.
async fn predict_locally(
    node: &Arc<Node>,
    request: StartPrediction,
    model: ModelRecord,
) -> NodeResult<Value> {
    let me = node.identity.name().to_owned();
    let agreement = model.agreements.first().cloned();
    let reject = |error: NodeError| node.store.reject(KIND, &me, agreement.as_deref(), error);
    if model.operator != me {
        return Err(reject(NodeError::Forbidden(format!(
            "this node {me:?} is not the operator of model {}; only {:?} may run predictions \
             with it",
            model.id, model.operator
        ))));
    }
    let Some(intercept) = model.part.intercept else {
        return Err(reject(NodeError::BadRequest(format!(
            "this node's part of model {} has no intercept, so it cannot score rows alone",
            model.id
        ))));
    };
    let rows = read_rows(&request, &model.part.columns)
        .await
        .map_err(reject)?;
    for id in &model.agreements {
        let limits = agreements::check_in_force(&node.store, id).and_then(|()| {
            let record = node.store.read(|c| agreements::load(c, id))?;
            match &record.signed.agreement.policy.training {
                Some(terms) => check_row_limit(rows.table.len(), terms.max_prediction_rows, id),
                None => Ok(()),
            }
        });
        limits.map_err(reject)?;
    }

    let job = uuid::Uuid::new_v4().to_string();
    node.store
        .audited(KIND, &me, agreement.as_deref(), |tx, events| {
            let new = NewJob {
                id: &job,
                kind: KIND,
                role: "operator",
                agreement: agreement.as_deref(),
                peers: &[],
            };
            let detail = json!({ "model": model.id, "rows": rows.table.len(),
                             "data_sha256": rows.sha256 });
            jobs::insert(tx, events, &me, &new, detail)
        })?;

    let table = &rows.table;
    let logits: Vec<Option<f64>> = (0..table.len())
        .map(|i| Some(dot(&model.part.weights, table.row(i)) + intercept))
        .collect();
    let written = {
        let (path, ids, logits) = (request.output.clone(), table.ids.clone(), logits.clone());
        blocking(move || write_predictions(&path, &ids, &logits)).await
    };
    if let Err(error) = written {
        jobs::fail(&node.store, &me, &job, &error.to_string())?;
        return Err(error);
    }
    let hash = transcript(&job, &model.id, &table.ids, &logits);
    let result = json!({
        "model": model.id, "rows": table.len(), "scored": table.len(), "missing": 0,
        "output": request.output, "ids_sha256": ids_sha256(&table.ids),
        "scores_sha256": sha256_hex(&score_bytes(&logits)),
    });
    jobs::succeed(&node.store, &me, &job, &hash, result)?;
    tracing::info!(target: "carrel::training", %job, model = %model.id, rows = table.len(),
        "local prediction completed");
    Ok(json!({ "job": job, "state": jobs::SUCCEEDED }))
}
