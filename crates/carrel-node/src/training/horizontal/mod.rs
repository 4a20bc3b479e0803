//! Horizontal federated training: the consumer's node coordinates three or more providers
//! that hold rows with the same columns, and trains a logistic regression by federated
//! averaging whose rounds are summed by secure aggregation ([`carrel_learn::horizontal`]).
//!
//! Each provider trains from the global model on its own rows and masks its row-weighted
//! update with pairwise X25519 masks, so the coordinator learns only the sum over all
//! providers. Every party ends with the same global model and registers it with its own
//! lineage (see [`crate::models`]).
//!
//! | step | request (coordinator to each provider) | response |
//! | --- | --- | --- |
//! | join | `POST /jobs/{id}/train/join`: agreement, providers in index order, feature columns, settings | the provider's index and dataset hash, and the privacy loss charged |
//! | round | `POST /jobs/{id}/train/round`: the round request (census, or the global model and the total row count) | the provider's fresh X25519 public key for the round |
//! | mask | `POST /jobs/{id}/train/mask`: every provider's public key | the masked update: weights, intercept, loss and row count, each weighted by the provider's row count |
//! | finish | `POST /jobs/{id}/train/finish`: every round's keys and masked-vector digests, the final model and the transcript hash | the provider's transcript hash |
//!
//! Round 0 is a census: the coordinator learns the total row count N, which every provider
//! needs for the L2 penalty. Training rounds follow until the planned rounds have started or
//! early stopping ends training. Before every round the coordinator checks that each
//! agreement is still in force, and each provider checks its own again at every step.
//!
//! # Agreements and budget
//!
//! Each agreement permits `federated_training` of kind `horizontal`, with this node as the
//! consumer. All providers' terms name the same feature columns in the same order, the
//! rounds stay within every terms' `max_rounds`, and a provider whose terms require privacy
//! gets DP-SGD with at least its noise multiplier and at most its clipping norm. A provider
//! counts the training as one use of its agreement when it joins. With DP it also charges
//! `privacy_loss(config, rounds)` of the planned rounds, as (ε, δ), to the agreement's budget,
//! and rejects the join if the budget cannot pay. Without DP nothing is charged, and the
//! lineage in the audit log gives ε and δ as null: the model carries no DP guarantee.
//!
//! # Threat model
//!
//! Parties are honest but curious, and public keys reach every provider unaltered.
//!
//! - The coordinator learns the total row count N, and each round the row-weighted mean
//!   update and the mean training loss. It learns nothing about a single provider's update,
//!   loss or row count, because any n - 1 masked vectors look uniformly random. It also
//!   learns each provider's dataset hash, which the catalog lists anyway.
//! - A provider learns the global model of every round and N, and so the summed row count
//!   of the other providers. A rejection of its own rows (a missing value, a label other
//!   than 0 or 1) names the column and row, but never a value.
//! - The coordinator with k colluding providers learns the sum of the other providers'
//!   contributions; with n - 1 colluders it learns the last one's. Malicious parties are
//!   out of scope: a provider can bias the model.
//! - There is no dropout recovery: a round finishes only when every provider has masked.
//!
//! # Restarts
//!
//! The coordinator saves its [`TrainingState`] after opening and after finishing each
//! round. A restarted coordinator node continues a running horizontal training from there,
//! and a restarted provider node reloads its rows when the next round arrives. Without DP,
//! a round that was open at the restart runs again from the model it started with. The
//! providers' shuffles are seeded, so they compute the same updates again, and the model
//! ends bit for bit as in an uninterrupted run. With DP that round stays counted, because
//! its noise was drawn and its privacy spent, and training goes on with the next round. The coordinator also runs
//! a round again, the same way, when a provider cannot be reached or has lost the round
//! while restarting, for up to [`ROUND_ATTEMPTS`] attempts.
//!
//! [`TrainingState`]: carrel_learn::horizontal::TrainingState

mod coordinator;
mod data;
mod provider;
mod report;
mod start;

use carrel_learn::horizontal::{DpConfig, TrainingConfig};
use carrel_learn::logistic::Model;
use carrel_model::{Action, AuditEvent, TrainingKind, TrainingTerms};
use carrel_mpc::transcript::Transcript;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agreements::AgreementRecord;
use crate::error::{NodeError, NodeResult};
use crate::jobs::JobView;
use crate::models::{self, ModelRecord};

pub use coordinator::resume_running;
pub use provider::{abort, finish, join, mask, round};
pub use start::start;

/// Kind of the job in every party's job table.
pub const KIND: &str = "horizontal";

/// Label of the protocol in transcripts.
const PROTOCOL: &str = "carrel-horizontal-v1";

/// Attempts of one round before a provider that cannot be reached ends the job.
pub const ROUND_ATTEMPTS: u32 = 6;

/// The coordinator's request to take part, `POST /jobs/{id}/train/join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinTraining {
    /// The agreement between this provider and the coordinator.
    pub agreement: String,
    /// Every provider, in name order, which is the index order of the protocol.
    pub providers: Vec<String>,
    /// Feature columns, in model order.
    pub features: Vec<String>,
    /// Settings every party holds.
    pub config: TrainingConfig,
}

/// A provider's response to [`JoinTraining`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    /// The provider's index.
    pub index: usize,
    /// SHA-256 of the provider's registered table, hex.
    pub dataset_sha256: String,
    /// Privacy loss charged to the agreement; none without DP.
    pub charged: Option<Charged>,
}

/// Privacy loss charged to an agreement's budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Charged {
    /// Epsilon.
    pub epsilon: f64,
    /// Delta.
    pub delta: f64,
}

/// The coordinator's record of one finished round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// Session id of the round's secure aggregation.
    pub session_id: String,
    /// Round number, 0 for the census.
    pub round: u32,
    /// Every provider's public key, base64, by index.
    pub public_keys: Vec<String>,
    /// SHA-256 of every masked vector, hex, by index.
    pub masked_sha256: Vec<String>,
}

/// The end of a training, `POST /jobs/{id}/train/finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishTraining {
    /// Every finished round, in order.
    pub rounds: Vec<RoundRecord>,
    /// The final global model.
    pub model: Model,
    /// Training rounds started, failed ones included.
    pub rounds_run: u32,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// The coordinator's transcript hash, hex.
    pub transcript_sha256: String,
}

/// A provider's response to [`FinishTraining`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// The provider's transcript hash, hex.
    pub transcript_sha256: String,
}

/// Returns whether a job left running by a stopped process continues after a restart
/// instead of failing: the horizontal trainings, on the coordinator and on the providers.
pub fn resumes_after_restart(job: &JobView) -> bool {
    job.kind == KIND
}

/// Returns the horizontal training terms of an agreement.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that permits another action or kind.
fn terms_of(record: &AgreementRecord) -> NodeResult<TrainingTerms> {
    let agreement = &record.signed.agreement;
    let policy = &agreement.policy;
    if policy.action != Action::FederatedTraining {
        return Err(NodeError::Forbidden(format!(
            "agreement {} permits {}, not federated_training: negotiate an offer for \
             horizontal training",
            agreement.id,
            action_name(policy.action)
        )));
    }
    let terms = policy.training.clone().ok_or_else(|| {
        NodeError::Forbidden(format!(
            "agreement {} permits federated training but has no training terms",
            agreement.id
        ))
    })?;
    if terms.kind != TrainingKind::Horizontal {
        return Err(NodeError::Forbidden(format!(
            "agreement {} permits vertical training, not horizontal",
            agreement.id
        )));
    }
    if terms.label_column.is_none() {
        return Err(NodeError::Forbidden(format!(
            "agreement {} names no label column for horizontal training",
            agreement.id
        )));
    }
    Ok(terms)
}

/// Returns the action's name as offers spell it, such as `aggregate_query`.
fn action_name(action: Action) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{action:?}"))
}

/// Checks the DP settings against the privacy a provider's terms require.
///
/// # Errors
///
/// [`NodeError::Forbidden`] naming the agreement, the requirement and the setting to change.
fn check_privacy(
    record: &AgreementRecord,
    terms: &TrainingTerms,
    dp: Option<&DpConfig>,
) -> NodeResult<()> {
    let Some(required) = terms.privacy else {
        return Ok(());
    };
    let agreement = &record.signed.agreement;
    let requirement = format!(
        "agreement {} with {} requires DP-SGD with a noise multiplier of at least {} and a \
         clipping norm of at most {}",
        agreement.id, agreement.assigner, required.min_noise_multiplier, required.max_clip_norm
    );
    let Some(dp) = dp else {
        return Err(NodeError::Forbidden(format!(
            "{requirement}, but the training has no DP: give --noise-multiplier {} or more",
            required.min_noise_multiplier
        )));
    };
    if dp.noise_multiplier < required.min_noise_multiplier {
        return Err(NodeError::Forbidden(format!(
            "{requirement}, but the noise multiplier is {}: give --noise-multiplier {} or more",
            dp.noise_multiplier, required.min_noise_multiplier
        )));
    }
    if dp.clip_norm > required.max_clip_norm {
        return Err(NodeError::Forbidden(format!(
            "{requirement}, but the clipping norm is {}: give --clip-norm {} or less",
            dp.clip_norm, required.max_clip_norm
        )));
    }
    Ok(())
}

/// Returns the participant that the terms give the operating right: the agreement's
/// consumer for `consumer`, or the named participant.
fn operator_of(record: &AgreementRecord, terms: &TrainingTerms) -> String {
    if terms.model_operator == carrel_policy::MODEL_OPERATOR_CONSUMER {
        return record.signed.agreement.assignee.clone();
    }
    terms.model_operator.clone()
}

/// Returns the model id of a training job.
fn model_id(job: &str) -> String {
    format!("model-{job}")
}

/// Computes the transcript hash that every party computes the same way: the header, then
/// per finished round its session, every public key and every masked vector's digest,
/// and the final model.
fn transcript_hash(
    job: &str,
    providers: &[String],
    features: &[String],
    config: &TrainingConfig,
    rounds: &[RoundRecord],
    model: &Model,
) -> String {
    let mut transcript = Transcript::new(PROTOCOL, job);
    let header = json!({ "providers": providers, "features": features,
                         "settings_sha256": config.digest() });
    transcript.append(b"header", header.to_string().as_bytes());
    for record in rounds {
        let round = json!({ "session_id": record.session_id, "round": record.round });
        transcript.append(b"round", round.to_string().as_bytes());
        for key in &record.public_keys {
            transcript.append(b"public-key", key.as_bytes());
        }
        for digest in &record.masked_sha256 {
            transcript.append(b"masked-sha256", digest.as_bytes());
        }
    }
    // serde_json writes each real in the shortest form that reads back to the same bits.
    let model = serde_json::to_string(model).unwrap_or_default();
    transcript.append(b"model", model.as_bytes());
    hex::encode(transcript.hash())
}

/// Returns the SHA-256 of a masked vector, hex: over each value as 8 big-endian bytes.
fn masked_sha256(masked: &[u64]) -> String {
    let bytes: Vec<u8> = masked.iter().flat_map(|v| v.to_be_bytes()).collect();
    crate::signing::sha256_hex(&bytes)
}

/// Registers a model inside the caller's transaction. Without DP, the lineage in the audit
/// log gives epsilon and delta as null, because the record's 0 would read as perfect
/// privacy. The coordinator, which learns only the total row count, gives each provider's
/// row count as null too.
fn register_model(
    tx: &rusqlite::Transaction,
    events: &mut Vec<AuditEvent>,
    actor: &str,
    record: &ModelRecord,
    dp: bool,
    rows_known: bool,
) -> NodeResult<()> {
    models::register(tx, events, actor, record)?;
    // `models::register` pushes the `model.registered` event last.
    let Some(event) = events.last_mut() else {
        return Ok(());
    };
    let detail = &mut event.detail;
    detail["differential_privacy"] = json!(dp);
    if !dp {
        detail["epsilon"] = Value::Null;
        detail["delta"] = Value::Null;
    }
    if !rows_known && let Some(datasets) = detail["datasets"].as_array_mut() {
        for dataset in datasets {
            dataset["rows"] = Value::Null;
        }
    }
    Ok(())
}
