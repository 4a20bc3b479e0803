//! Prediction with a trained vertical model. The guest reads its rows and requests the
//! host's partial logits on their ids with `POST /jobs/predict`. The host computes them
//! within that request, as a job of its own under the training agreement.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use carrel_learn::logistic::dot;
use carrel_model::TrainingKind;
use carrel_mpc::ids::IdRule;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::data::{canonical_ids, read_host_table};
use super::{operator_of, vertical_terms};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{PeerCalls, blocking};
use crate::jobs::{self, NewJob};
use crate::models::{self, ModelRecord};
use crate::node::Node;
use crate::signing::sha256_hex;
use crate::training::predict::{
    KIND, MAX_PREDICTION_IDS, StartPrediction, check_row_limit, ids_sha256, read_rows, score_bytes,
    transcript, write_predictions,
};

/// Message the guest receives when the host's data fails its checks. The details stay in
/// the host's log because they quote the host's rows.
const DATA_REJECTED: &str = "the provider's dataset failed its checks for prediction; the \
    provider's job log names the row and column at fault";

/// The guest's request for the host's partial logits on new rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictionRequest {
    /// Job id chosen by the guest.
    pub job: String,
    /// Id of the model, which both parties registered after training.
    pub model: String,
    /// Agreement the model was trained under.
    pub agreement: String,
    /// Canonical identifiers of the rows, each once.
    pub ids: Vec<String>,
}

/// The host's partial logits `X_h w_h`, one per requested id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictionReply {
    /// Partial logits in the order of the request; null for an id the host does not hold.
    pub logits: Vec<Option<f64>>,
    /// SHA-256 of the host's transcript of the job, hex.
    pub transcript_sha256: String,
}

/// Checks the guest's request and starts the prediction job, which sends the ids to the
/// host in the background. Returns the job id.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a model held here as the host, a node that is not the
/// operator, an agreement no longer in force or more rows than `max_prediction_rows`;
/// [`NodeError::BadRequest`] for an unreadable data file. Each is recorded as
/// `predict.rejected`.
pub async fn start_prediction(
    node: Arc<Node>,
    request: StartPrediction,
    model: ModelRecord,
) -> NodeResult<Value> {
    let me = node.identity.name().to_owned();
    let agreement = model.agreements.first().cloned().unwrap_or_default();
    let checked = check_guest(&node, &me, &request, &model, &agreement).await;
    let (host, rows, ids) =
        checked.map_err(|e| node.store.reject(KIND, &me, Some(&agreement), e))?;

    let job = uuid::Uuid::new_v4().to_string();
    node.store
        .audited(KIND, &me, Some(&agreement), |tx, events| {
            let new = NewJob {
                id: &job,
                kind: KIND,
                role: "guest",
                agreement: Some(&agreement),
                peers: std::slice::from_ref(&host),
            };
            let detail = json!({ "model": model.id, "rows": ids.len(),
                             "data_sha256": rows.sha256, "output": request.output });
            jobs::insert(tx, events, &me, &new, detail)
        })?;
    let run = GuestPrediction {
        calls: PeerCalls::new(node.clone()),
        node,
        job: job.clone(),
        host,
        agreement,
        model,
        request,
        rows,
        ids,
    };
    tokio::spawn(run.drive());
    Ok(json!({ "job": job, "state": jobs::RUNNING }))
}

/// Checks the model, the agreement and the rows at the guest; returns the host, the rows
/// and their canonical ids.
async fn check_guest(
    node: &Node,
    me: &str,
    request: &StartPrediction,
    model: &ModelRecord,
    agreement: &str,
) -> NodeResult<(String, crate::training::predict::Rows, Vec<String>)> {
    if model.role != "guest" {
        return Err(NodeError::Forbidden(format!(
            "this node holds model {} as the {}; predictions with a vertical model are run \
             by the guest, which holds the intercept",
            model.id, model.role
        )));
    }
    if model.operator != me {
        return Err(NodeError::Forbidden(format!(
            "this node {me:?} is not the operator of model {}; only {:?} may run predictions \
             with it",
            model.id, model.operator
        )));
    }
    let host = model
        .parties
        .iter()
        .find(|party| *party != me)
        .cloned()
        .ok_or_else(|| NodeError::Internal(format!("model {} names no host", model.id)))?;
    let record = node.store.read(|c| agreements::load(c, agreement))?;
    let terms = vertical_terms(&record)?;
    agreements::check_in_force(&node.store, agreement)?;
    let rows = read_rows(request, &model.part.columns).await?;
    check_row_limit(rows.table.len(), terms.max_prediction_rows, agreement)?;
    let rule = IdRule::default();
    let list = canonical_ids(&rows.table, &rule, &request.data)?;
    let ids = (0..list.len()).map(|i| list.text(i).to_owned()).collect();
    Ok((host, rows, ids))
}

/// A prediction that this node runs as the guest.
struct GuestPrediction {
    node: Arc<Node>,
    calls: PeerCalls,
    job: String,
    host: String,
    agreement: String,
    model: ModelRecord,
    request: StartPrediction,
    rows: crate::training::predict::Rows,
    ids: Vec<String>,
}

impl GuestPrediction {
    async fn drive(self) {
        let Err(error) = self.run().await else {
            return;
        };
        // The host's job ends within its one request, so only this node's job is left.
        let me = self.node.identity.name();
        if let Err(e) = jobs::fail(&self.node.store, me, &self.job, &error.to_string()) {
            tracing::error!(target: "carrel::training", job = %self.job, error = %e,
                "failure not recorded");
        }
    }

    async fn run(&self) -> NodeResult<()> {
        let clock = Instant::now();
        let me = self.node.identity.name().to_owned();
        jobs::progress(&self.node.store, &self.job, "asking the host", 0, 0)?;
        let request = PredictionRequest {
            job: self.job.clone(),
            model: self.model.id.clone(),
            agreement: self.agreement.clone(),
            ids: self.ids.clone(),
        };
        let reply: PredictionReply = self
            .calls
            .call(&self.host, "/jobs/predict", &request)
            .await?;
        if reply.logits.len() != self.ids.len() {
            return Err(NodeError::JobFailed(format!(
                "the host returned {} partial logits for {} ids",
                reply.logits.len(),
                self.ids.len()
            )));
        }
        let hash = transcript(&self.job, &self.model.id, &self.ids, &reply.logits);
        if hash != reply.transcript_sha256 {
            return Err(NodeError::JobFailed(format!(
                "transcripts differ: this node saw {hash}, the host {}",
                reply.transcript_sha256
            )));
        }

        let part = &self.model.part;
        let intercept = part.intercept.ok_or_else(|| {
            NodeError::Internal(format!(
                "the guest's part of {} has no intercept",
                self.model.id
            ))
        })?;
        let table = &self.rows.table;
        let logits: Vec<Option<f64>> = reply
            .logits
            .iter()
            .enumerate()
            .map(|(i, host)| host.map(|h| dot(&part.weights, table.row(i)) + intercept + h))
            .collect();
        let missing = logits.iter().filter(|z| z.is_none()).count();
        {
            let (path, ids, logits) = (
                self.request.output.clone(),
                table.ids.clone(),
                logits.clone(),
            );
            blocking(move || write_predictions(&path, &ids, &logits)).await?;
        }

        let result = json!({
            "model": self.model.id, "host": self.host, "rows": self.ids.len(),
            "scored": self.ids.len() - missing, "missing": missing,
            "output": self.request.output, "ids_sha256": ids_sha256(&self.ids),
            "host_logits_sha256": sha256_hex(&score_bytes(&reply.logits)),
            "scores_sha256": sha256_hex(&score_bytes(&logits)),
            "traffic": self.calls.traffic(),
            "seconds": clock.elapsed().as_secs_f64(),
        });
        jobs::succeed(&self.node.store, &me, &self.job, &hash, result)?;
        tracing::info!(target: "carrel::training", job = %self.job, model = %self.model.id,
            rows = self.ids.len(), missing, "prediction completed");
        Ok(())
    }
}

/// Returns the host's partial logits on the guest's ids, as a job of kind `predict` and a
/// use of the agreement. Ids that the host's dataset does not hold get no logit and are
/// counted.
///
/// # Errors
///
/// [`NodeError::NotFound`] for a model unknown here, [`NodeError::Forbidden`] for a model
/// not held here as the host, another agreement, a signer that is not the operator, an
/// agreement no longer in force or without uses left, or more ids than
/// `max_prediction_rows`. [`NodeError::BadRequest`] for no ids or a repeated id. Each
/// rejection is recorded as `predict.rejected` and changes nothing else. [`NodeError::JobFailed`] when
/// the dataset fails its checks; the job ends.
pub async fn serve_prediction(
    node: Arc<Node>,
    signer: &str,
    request: PredictionRequest,
) -> NodeResult<Value> {
    let clock = Instant::now();
    let agreement = request.agreement.as_str();
    let me = node.identity.name().to_owned();

    // The checks, the use count and the job start commit together.
    let (model, terms, dataset, path) = node.store.audited(KIND, signer, Some(agreement), |tx, events| {
        check_ids(&request.ids)?;
        let model = models::load(tx, &request.model)?;
        if model.kind != TrainingKind::Vertical || model.role != "host" {
            return Err(NodeError::Forbidden(format!(
                "this node holds model {} as the {} of a {:?} training, not as the host of a \
                 vertical one",
                model.id, model.role, model.kind
            )));
        }
        if !model.agreements.iter().any(|a| a == agreement) {
            return Err(NodeError::Forbidden(format!(
                "model {} was not trained under agreement {agreement}",
                model.id
            )));
        }
        let record = agreements::load_with_offer_totals(tx, agreement)?;
        let mut terms = vertical_terms(&record)?;
        let operator = operator_of(&record, &terms);
        if signer != operator || signer != model.operator {
            return Err(NodeError::Forbidden(format!(
                "{signer:?} is not the operator of model {}; only {operator:?} may run \
                 predictions with it",
                model.id
            )));
        }
        crate::query::check_agreement(&record, signer)?;
        check_row_limit(request.ids.len(), terms.max_prediction_rows, agreement)?;
        let (dataset, path) = crate::query::dataset_of(tx, &record.signed.agreement.target)?;
        let trained_on = model.datasets.iter().find(|d| d.holder == me);
        if trained_on.is_some_and(|d| d.sha256 != dataset.content_sha256) {
            return Err(NodeError::Conflict(format!(
                "the product's dataset {} changed since model {} was trained; train a new model",
                dataset.id, model.id
            )));
        }
        tx.execute(
            "UPDATE agreements SET queries_used = queries_used + 1 WHERE id = ?1",
            [agreement],
        )?;
        let job = NewJob {
            id: &request.job,
            kind: KIND,
            role: "host",
            agreement: Some(agreement),
            peers: &[signer.to_owned()],
        };
        let detail = json!({ "model": model.id, "rows": request.ids.len(),
                             "ids_sha256": ids_sha256(&request.ids) });
        jobs::insert(tx, events, signer, &job, detail)?;
        // The host's rows are read with the model's columns, in weight order.
        terms.feature_columns = model.part.columns.clone();
        Ok((model, terms, dataset, path))
    })?;

    let rule = IdRule::default();
    let read = blocking(move || read_host_table(&path, &dataset, &terms, &rule)).await;
    let table = match read {
        Ok(table) => table,
        Err(error) => {
            let reason = format!("the dataset cannot be used for prediction: {error}");
            jobs::fail(&node.store, signer, &request.job, &reason)?;
            return Err(NodeError::JobFailed(DATA_REJECTED.into()));
        }
    };

    let rule = IdRule::default();
    let positions: HashMap<&str, usize> = (0..table.ids.len())
        .map(|i| (table.ids.text(i), i))
        .collect();
    let k = model.part.columns.len();
    let logits: Vec<Option<f64>> = request
        .ids
        .iter()
        .map(|id| {
            let row = rule
                .canonical(id)
                .and_then(|c| positions.get(c.as_str()).copied());
            row.map(|i| dot(&table.features[i * k..(i + 1) * k], &model.part.weights))
        })
        .collect();
    let missing = logits.iter().filter(|z| z.is_none()).count();
    let hash = transcript(&request.job, &model.id, &request.ids, &logits);
    let clipped: serde_json::Map<String, Value> = table
        .clipped
        .iter()
        .map(|(column, count)| (column.clone(), json!(count)))
        .collect();
    let result = json!({
        "model": model.id, "rows": request.ids.len(),
        "scored": request.ids.len() - missing, "missing": missing,
        "ids_sha256": ids_sha256(&request.ids),
        "host_logits_sha256": sha256_hex(&score_bytes(&logits)),
        "clipped": clipped, "seconds": clock.elapsed().as_secs_f64(),
    });
    jobs::succeed(&node.store, signer, &request.job, &hash, result)?;
    tracing::info!(target: "carrel::training", job = %request.job, model = %model.id,
        guest = signer, rows = request.ids.len(), missing, "partial logits returned");
    Ok(json!(PredictionReply {
        logits,
        transcript_sha256: hash
    }))
}

/// Checks the ids of a request: 1 to [`MAX_PREDICTION_IDS`], each once.
fn check_ids(ids: &[String]) -> NodeResult<()> {
    if ids.is_empty() || ids.len() > MAX_PREDICTION_IDS {
        return Err(NodeError::BadRequest(format!(
            "a prediction on {} ids is invalid: give 1 to {MAX_PREDICTION_IDS}",
            ids.len()
        )));
    }
    let mut seen = HashSet::with_capacity(ids.len());
    if let Some(repeated) = ids.iter().position(|id| !seen.insert(id.as_str())) {
        return Err(NodeError::BadRequest(format!(
            "id number {} of the request appears twice; give each id once",
            repeated + 1
        )));
    }
    Ok(())
}
