//! Vertical federated training between two nodes, with the exchange as the dealer of
//! correlated randomness. The consumer's node is the guest: it has the labels and its own
//! features in a local CSV file. One provider's node is the host: it has other features of
//! the same persons in the product's registered dataset.
//!
//! The guest drives the job. Both parties learn the private set intersection of their
//! identifiers, and the aligned rows are the intersection sorted by canonical identifier.
//! Rows that the guest's split file marks `test` are held out, and the guest sends the host
//! their identifiers. The model is trained on the other rows by
//! [`carrel_learn::vertical`]: every quantity is additively secret-shared, and each party
//! ends with its own weights in the clear. The host then returns its partial logits on
//! the test rows, so that the guest can evaluate the model with its own labels, and both
//! register their part with the lineage (see [`crate::models`]).
//!
//! | step | request | response |
//! | --- | --- | --- |
//! | handshake | guest to host: `POST /jobs/vertical` with the agreement, the identifier rule and the guest's set size | the host's rule, set size and dataset hash |
//! | 1 | guest to host: `POST /jobs/{id}/vertical/guest-elements`, a batch of the guest's blinded identifiers | the batch blinded again |
//! | 2 | guest to host: `POST /jobs/{id}/vertical/host-elements` with the next position | a batch of the host's blinded identifiers |
//! | 3 | guest to host: `POST /jobs/{id}/vertical/host-doubled`, the host's batch blinded again | - |
//! | dealer | guest to exchange: `POST /jobs/dealer` with the agreement, both parties and the plan | the guest's seed |
//! | align | guest to host: `POST /jobs/{id}/vertical/align` with the intersection size, the test identifiers and the plan | the host's row counts; the host first fetches its seed from the exchange with `POST /jobs/{id}/dealer/seed` |
//! | train | guest to host: `POST /jobs/{id}/vertical/exchange` per message of the protocol: sequence number, tag, part and base64 body | the host's message of the same exchange; parts after the first with `POST /jobs/{id}/vertical/reply` |
//! | corrections | host to exchange: `POST /jobs/{id}/dealer/corrections` before each step | the host's corrections for the step, base64 |
//! | close | guest to exchange: `POST /jobs/{id}/dealer/close` after the last epoch | - |
//! | evaluate | guest to host: `POST /jobs/{id}/vertical/predict` with the test identifiers | the host's partial logits `X_h w_h` on those rows |
//! | end | guest to host: `POST /jobs/{id}/vertical/finish` with the guest's transcript hash and dataset hash | the host's transcript hash |
//! | predict | guest to host, after training, as a job of kind `predict`: `POST /jobs/predict` with the job id, the model id, the agreement and the new rows' identifiers | the host's partial logits on those rows, null for an identifier it does not hold, and its transcript hash |
//! | resume | guest to exchange: `POST /jobs/dealer` with `resume: true`, then guest to host: `POST /jobs/{id}/vertical/resume` with the guest's saved epochs and transcript hashes | the guest's new seed; the epoch both continue from, after the host fetched its new seed |
//!
//! # Resuming
//!
//! Both parties save their aligned rows once and a mark after every epoch (see
//! `resume.rs`). The guest resumes the training when its node restarts, and when a call
//! to the host fails because the host cannot be reached, no longer has the run (its node
//! restarted) or lost the dealer (the exchange restarted). It retries for two minutes,
//! then fails the job. A host whose node restarted keeps its job running and waits for the
//! guest; the exchange keeps its dealer job running the same way. A resume is recorded as
//! `vertical.resumed` in both parties' logs, and the results count the resumes. Both
//! parties reject a ninth resume, so that a guest cannot train again and again for one
//! use of the agreement. A host run that a resumed run replaced can no longer end the job
//! or draw corrections, because its requests carry an older run number and an older
//! serving number of the dealer's seed.
//!
//! NOTE: a host or dealer job whose guest never returns stays running; the guest's abort
//! notice, sent four times, is what ends it.
//!
//! A message larger than 4 MiB travels in parts. The guest numbers the exchanges from 0,
//! and a wrong sequence number, part or tag ends the job. Either side ends the job on any
//! error, and the guest also sends `POST /jobs/{id}/abort` to the host and the exchange. Both
//! logs hold the same transcript hash for a completed run: it covers the handshake, the set
//! intersection, the alignment, every training message and the predictions. After a
//! resume it covers the epoch and the hash both parties continued from, then the messages
//! of the resumed run.
//!
//! # Agreement
//!
//! The host checks its agreement with the guest when the job starts (action
//! `federated_training` with kind `vertical`, the requester, revocation, validity and the
//! use count, which the training increments), and checks revocation and validity again at
//! every later step. The plan may not run more epochs than the terms' `max_rounds`. The
//! predictions count as another use of the agreement and may cover at most
//! `max_prediction_rows` rows. A later prediction job (see [`crate::training::predict`]) is
//! checked the same way: the model must be the host's part trained under that agreement,
//! the requester its operator and the agreement in force with a use left, which the job
//! takes; it covers at most `max_prediction_rows` rows. The exchange opens a dealer session only for an agreement
//! that it countersigned, between these two parties, permitting vertical training.
//!
//! # Threat model
//!
//! The guest, the host and the dealer are honest but curious: they follow the protocol and
//! try to learn more from what they see. The exchange does not collude with either party,
//! the same assumption FATE makes of its arbiter.
//!
//! - The host learns the sizes (the guest's set, the intersection, the training and test
//!   rows, the plan), the intersection itself, the test identifiers, its own weights and
//!   whether early stopping ended the training. It learns nothing else about the guest's
//!   features, labels, weights or loss.
//! - The guest learns the intersection, the training loss per epoch, its own weights and
//!   the host's partial logits on the test rows it evaluates. Each partial logit is a
//!   weighted sum of one person's host features, so it reveals one number about that
//!   person's host data; the agreement's `max_prediction_rows` bounds how many.
//! - A prediction job reveals the same to the model's operator: the host's partial logit
//!   of each requested row that the host holds, one number per person, and which requested
//!   identifiers the host does not hold. Each job covers at most `max_prediction_rows`
//!   rows and takes one use of the agreement, so the use count bounds the number of jobs.
//! - The dealer learns the plan's sizes and nothing of the data: it never receives a
//!   message that depends on data.
//! - A dealer that colludes with one party learns the other party's features, because
//!   the dealer knows both masks. This is out of scope, as is a malicious party, which can
//!   make the model wrong.
//!
//! The sizes and the timing of the messages are public. Error messages about the host's
//! rows stay in the host's log; the guest is told only that the host's data failed its
//! checks.

mod data;
mod guest;
mod host;
mod link;
mod predict;
mod report;
mod resume;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use carrel_learn::vertical::Plan;
use carrel_model::{Action, TrainingKind, TrainingTerms};
use serde::{Deserialize, Serialize};

use crate::agreements::AgreementRecord;
use crate::error::{NodeError, NodeResult};
use crate::models::DatasetRef;
use crate::node::Node;

pub use guest::{resume_running, start};
pub use host::{abort, align, exchange, finish, guest_elements, hello, host_doubled};
pub use host::{host_elements, predict, reply, resume};
pub use predict::{PredictionReply, PredictionRequest, serve_prediction, start_prediction};
pub(crate) use resume::resumes_after_restart;
pub use resume::{Offer, Resume, Resumed};

/// Kind of the job in every party's job table.
pub(crate) const KIND: &str = "vertical";

/// Label of the protocol in transcripts.
const PROTOCOL: &str = "carrel-vertical-v1";

/// Largest number of identifiers the guest may bring, and of aligned rows.
const MAX_ROWS: u64 = 10_000_000;

/// Largest feature matrix of one party, in elements (rows times columns).
///
/// NOTE: each party keeps its matrix, its mask and the peer's masked matrix as 16-byte
/// ring elements, and the dealer keeps both masks, so this bounds the memory of a job to a
/// few hundred MiB per node.
pub(crate) const MAX_MATRIX_ELEMENTS: usize = 1 << 23;

/// Largest batch of a training step, so that one step's dealer corrections (about 420
/// bytes per row, a third more in base64) fit in one response under the 16 MiB body limit.
pub(crate) const MAX_BATCH_ROWS: usize = 16_384;

/// Largest batch of blinded identifiers per message.
const MAX_PSI_BATCH: usize = 1 << 16;

/// The guest's handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Job id chosen by the guest.
    pub job: String,
    /// Agreement the training runs under.
    pub agreement: String,
    /// The guest's identifier rule statement.
    pub rule: String,
    /// Distinct identifiers the guest brings.
    pub guest_size: u64,
    /// Blinded identifiers per message.
    pub batch: u64,
}

/// The host's response to the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloReply {
    /// The host's identifier rule statement.
    pub rule: String,
    /// Distinct identifiers the host brings.
    pub host_size: u64,
    /// SHA-256 of the host's registered dataset, hex, for the model's lineage.
    pub dataset_sha256: String,
}

/// The guest's alignment: what the host needs to build the same training rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Align {
    /// SHA-256 of the transcript up to the end of the set intersection, hex.
    pub psi_transcript_sha256: String,
    /// Size of the intersection as the guest found it.
    pub intersection: u64,
    /// Canonical identifiers of the held-out rows, sorted, which form a subset of the intersection.
    pub test_ids: Vec<String>,
    /// Public parameters of the training.
    pub plan: Plan,
}

/// The host's row counts after the alignment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Aligned {
    /// Size of the intersection as the host found it.
    pub intersection: u64,
    /// Training rows.
    pub train_rows: u64,
    /// Held-out rows.
    pub test_rows: u64,
}

/// One part of the guest's message of a training exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangePart {
    /// Number of the exchange, from 0.
    pub seq: u64,
    /// Tag of the exchange, which both parties' protocol names.
    pub tag: String,
    /// Number of this part, from 0.
    pub part: u32,
    /// Parts of the guest's message.
    pub parts: u32,
    /// The part's bytes, base64.
    pub body: String,
}

/// The host's response to an [`ExchangePart`], or one part of it for a [`ReplyRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeReply {
    /// Number of the exchange.
    pub seq: u64,
    /// Number of parts of the host's message, or 0 in the acknowledgement of a part that is
    /// not the guest's last.
    pub parts: u32,
    /// The first part of the host's message (or the requested part), base64.
    pub body: String,
}

/// The guest's request for a further part of the host's message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyRequest {
    /// Number of the exchange.
    pub seq: u64,
    /// Part requested, from 1.
    pub part: u32,
}

/// The guest's request for the host's partial logits on held-out rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Predict {
    /// Canonical identifiers of the rows, each a test identifier of the alignment.
    pub ids: Vec<String>,
}

/// The host's partial logits `X_h w_h`, one per requested row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Predicted {
    /// Partial logits in the order of the request.
    pub logits: Vec<f64>,
}

/// The guest's end of the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    /// SHA-256 of the guest's transcript, hex.
    pub transcript_sha256: String,
    /// The guest's data file, for the model's lineage.
    pub guest_dataset: DatasetRef,
}

/// The host's end of the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finished {
    /// SHA-256 of the host's transcript, hex.
    pub transcript_sha256: String,
    /// Id of the model the host registered.
    pub model: String,
}

/// Returns the id of the model that job `job` trains.
pub(crate) fn model_id(job: &str) -> String {
    format!("model-{job}")
}

/// Returns the vertical training terms of an agreement.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that permits another action or horizontal
/// training.
pub(crate) fn vertical_terms(record: &AgreementRecord) -> NodeResult<TrainingTerms> {
    let agreement = &record.signed.agreement;
    let policy = &agreement.policy;
    if policy.action != Action::FederatedTraining {
        let action = serde_json::to_value(policy.action)
            .map_or_else(|_| format!("{:?}", policy.action), |v| v.to_string());
        return Err(NodeError::Forbidden(format!(
            "agreement {} permits {action}, not federated training; negotiate an offer whose \
             action is federated_training",
            agreement.id
        )));
    }
    let terms = policy.training.clone().ok_or_else(|| {
        NodeError::Forbidden(format!("agreement {} has no training terms", agreement.id))
    })?;
    if terms.kind != TrainingKind::Vertical {
        return Err(NodeError::Forbidden(format!(
            "agreement {} permits horizontal federated training, not vertical; negotiate an \
             offer whose training terms have kind vertical",
            agreement.id
        )));
    }
    if terms.id_column.is_none() {
        return Err(NodeError::Forbidden(format!(
            "agreement {} names no id_column to align rows on",
            agreement.id
        )));
    }
    Ok(terms)
}

/// Returns the participant that has the operating right of the model.
pub(crate) fn operator_of(record: &AgreementRecord, terms: &TrainingTerms) -> String {
    if terms.model_operator == carrel_policy::MODEL_OPERATOR_CONSUMER {
        record.signed.agreement.assignee.clone()
    } else {
        terms.model_operator.clone()
    }
}

/// Minimum number of aligned training rows a vertical training accepts.
pub(crate) const MIN_TRAINING_ROWS: usize = 100;

/// Checks a plan against the terms and the limits of this node.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for a field out of range or sizes beyond the limits,
/// [`NodeError::Forbidden`] for more epochs than the terms allow.
pub(crate) fn check_plan(plan: &Plan, terms: &TrainingTerms) -> NodeResult<()> {
    plan.check()
        .map_err(|e| NodeError::BadRequest(e.to_string()))?;
    if plan.rows < MIN_TRAINING_ROWS {
        return Err(NodeError::Forbidden(format!(
            "{} training rows are too few: a training needs at least {MIN_TRAINING_ROWS}, so \
             that the loss and the weights do not describe a handful of persons; hold out \
             fewer rows",
            plan.rows
        )));
    }
    if plan.epochs > terms.max_rounds {
        return Err(NodeError::Forbidden(format!(
            "{} epochs exceed the agreement's max_rounds of {}; ask for at most {}",
            plan.epochs, terms.max_rounds, terms.max_rounds
        )));
    }
    if plan.host_features != terms.feature_columns.len() {
        return Err(NodeError::BadRequest(format!(
            "the plan has {} host features, but the agreement names {} feature columns",
            plan.host_features,
            terms.feature_columns.len()
        )));
    }
    if plan.batch_size > MAX_BATCH_ROWS {
        return Err(NodeError::BadRequest(format!(
            "a batch of {} rows is too large: give at most {MAX_BATCH_ROWS}",
            plan.batch_size
        )));
    }
    let widest = plan.guest_columns().max(plan.host_features);
    if plan.rows.saturating_mul(widest) > MAX_MATRIX_ELEMENTS {
        return Err(NodeError::BadRequest(format!(
            "{} rows of {widest} columns exceed the limit of {MAX_MATRIX_ELEMENTS} matrix \
             elements per party; train on fewer rows or columns",
            plan.rows
        )));
    }
    Ok(())
}

/// Bytes of the handshake in the transcript.
fn hello_bytes(hello: &Hello, reply: &HelloReply) -> Vec<u8> {
    serde_json::json!({ "job": hello.job, "agreement": hello.agreement, "rule": hello.rule,
        "guest_size": hello.guest_size, "host_size": reply.host_size, "batch": hello.batch,
        "host_dataset_sha256": reply.dataset_sha256 })
    .to_string()
    .into_bytes()
}

/// Bytes of the alignment in the transcript.
fn align_bytes(align: &Align) -> Vec<u8> {
    serde_json::json!({ "intersection": align.intersection, "test_ids": align.test_ids,
        "plan": align.plan })
    .to_string()
    .into_bytes()
}

/// Bytes of the predictions in the transcript.
fn logit_bytes(logits: &[f64]) -> Vec<u8> {
    logits.iter().flat_map(|z| z.to_le_bytes()).collect()
}

/// State that a node keeps for running jobs, by node name and job id.
///
/// NOTE: kept per process rather than as a field of [`Node`], keyed by the node's name so
/// that nodes sharing a process do not see each other's runs.
pub(crate) struct Registry<T> {
    runs: Mutex<BTreeMap<(String, String), Arc<T>>>,
}

impl<T> Registry<T> {
    /// Creates an empty registry.
    pub(crate) const fn new() -> Self {
        Self {
            runs: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds the run of `job` on `node`.
    pub(crate) fn insert(&self, node: &Node, job: &str, run: T) -> Arc<T> {
        let run = Arc::new(run);
        self.lock().insert(key(node, job), run.clone());
        run
    }

    /// Adds the run of `job` on `node` unless one is there, and returns whether it did.
    pub(crate) fn insert_new(&self, node: &Node, job: &str, run: T) -> bool {
        let mut runs = self.lock();
        if runs.contains_key(&key(node, job)) {
            return false;
        }
        runs.insert(key(node, job), Arc::new(run));
        true
    }

    /// Returns the run of `job` on `node`.
    pub(crate) fn find(&self, node: &Node, job: &str) -> Option<Arc<T>> {
        self.lock().get(&key(node, job)).cloned()
    }

    /// Counts the runs on `node` for which `matches` holds.
    pub(crate) fn count(&self, node: &Node, matches: impl Fn(&T) -> bool) -> usize {
        let name = node.identity.name();
        self.lock()
            .iter()
            .filter(|((owner, _), run)| owner == name && matches(run))
            .count()
    }

    /// Removes the runs on `node` for which `keep` fails, and returns how many.
    pub(crate) fn retain(&self, node: &Node, keep: impl Fn(&T) -> bool) -> usize {
        let name = node.identity.name();
        let mut runs = self.lock();
        let before = runs.len();
        runs.retain(|(owner, _), run| owner != name || keep(run));
        before - runs.len()
    }

    /// Removes and returns the run of `job` on `node` when `current` holds for it.
    pub(crate) fn take_if(
        &self,
        node: &Node,
        job: &str,
        current: impl Fn(&T) -> bool,
    ) -> Option<Arc<T>> {
        let mut runs = self.lock();
        let key = key(node, job);
        if runs.get(&key).is_some_and(|run| current(run)) {
            runs.remove(&key)
        } else {
            None
        }
    }

    /// Removes and returns the run of `job` on `node`.
    pub(crate) fn take(&self, node: &Node, job: &str) -> Option<Arc<T>> {
        self.lock().remove(&key(node, job))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Arc<T>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(node: &Node, job: &str) -> (String, String) {
    (node.identity.name().to_owned(), job.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(max_rounds: u32, features: usize) -> TrainingTerms {
        TrainingTerms {
            kind: TrainingKind::Vertical,
            feature_columns: (0..features).map(|i| format!("x{i}")).collect(),
            label_column: None,
            id_column: Some("id".into()),
            max_rounds,
            model_operator: "consumer".into(),
            max_prediction_rows: 100,
            privacy: None,
        }
    }

    #[test]
    fn plan_within_terms_passes() {
        let plan = Plan::with_defaults(455, 10, 20);
        assert!(check_plan(&plan, &terms(10, 20)).is_ok());
    }

    #[test]
    fn plan_beyond_max_rounds_is_forbidden() {
        let mut plan = Plan::with_defaults(455, 10, 20);
        plan.epochs = 11;
        let error = check_plan(&plan, &terms(10, 20)).unwrap_err();
        assert!(matches!(error, NodeError::Forbidden(_)), "{error}");
        assert!(error.to_string().contains("max_rounds of 10"), "{error}");
    }

    #[test]
    fn plan_with_few_training_rows_is_forbidden() {
        let plan = Plan::with_defaults(MIN_TRAINING_ROWS - 1, 10, 20);
        let error = check_plan(&plan, &terms(10, 20)).unwrap_err();
        assert!(matches!(error, NodeError::Forbidden(_)), "{error}");
        assert!(
            check_plan(
                &Plan::with_defaults(MIN_TRAINING_ROWS, 10, 20),
                &terms(10, 20)
            )
            .is_ok()
        );
    }

    #[test]
    fn plan_with_other_host_width_is_rejected() {
        let plan = Plan::with_defaults(455, 10, 19);
        let error = check_plan(&plan, &terms(10, 20)).unwrap_err();
        assert!(error.to_string().contains("19 host features"), "{error}");
    }

    #[test]
    fn plan_beyond_size_limits_is_rejected() {
        let mut plan = Plan::with_defaults(455, 10, 20);
        plan.batch_size = MAX_BATCH_ROWS + 1;
        assert!(check_plan(&plan, &terms(10, 20)).is_err());

        let rows = MAX_MATRIX_ELEMENTS / 20 + 1;
        let plan = Plan::with_defaults(rows, 10, 20);
        let error = check_plan(&plan, &terms(10, 20)).unwrap_err();
        assert!(error.to_string().contains("matrix elements"), "{error}");
    }
}
