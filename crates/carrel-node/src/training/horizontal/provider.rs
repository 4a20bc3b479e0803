//! A provider's side: it checks its agreement and charges its budget when it joins, trains
//! and masks each round, and checks the coordinator's account of the run at the end.
//!
//! Between rounds a provider keeps only its settings, its rows and the digests of what it
//! sent. The digests are saved, so that a restarted node can take part in the next round
//! and still check the transcript at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use carrel_learn::horizontal::Provider;
use carrel_learn::horizontal::{
    LocalUpdate, PublicKeys, RoundRequest, RoundTask, TrainingConfig, privacy_loss,
};
use carrel_model::{TrainingKind, TrainingTerms};
use carrel_mpc::secagg::MIN_PARTIES;
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::data::read_rows;
use super::{
    Charged, FinishTraining, Finished, JoinTraining, Joined, KIND, check_privacy, masked_sha256,
    model_id, operator_of, register_model, terms_of, transcript_hash,
};
use crate::agreements::{self, AgreementRecord};
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{blocking, encode};
use crate::jobs::{self, NewJob};
use crate::models::{self, DatasetRef, ModelPart, ModelRecord};
use crate::node::Node;

/// Relative slack of the budget check, for rounding in the sums of spent epsilon.
const BUDGET_SLACK: f64 = 1e-9;

/// A provider's record of one round it masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MaskedRound {
    /// Round number.
    round: u32,
    /// Every provider's public key as this provider received them, base64.
    public_keys: Vec<String>,
    /// SHA-256 of this provider's masked vector, hex.
    masked_sha256: String,
}

/// A provider's saved state of a training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ProviderCheckpoint {
    /// The coordinator.
    consumer: String,
    /// The coordinator's join request.
    join: JoinTraining,
    /// This provider's index.
    index: usize,
    /// Registered dataset the rows come from.
    dataset: String,
    /// SHA-256 of its table, hex.
    dataset_sha256: String,
    /// Rows that entered training.
    rows: u64,
    /// Values clipped to the declared bounds, per feature column.
    clipped: BTreeMap<String, u64>,
    /// Privacy loss charged to the agreement.
    charged: Option<Charged>,
    /// Holder of the operating right under this provider's terms.
    operator: String,
    /// The last training round this provider responded to.
    last_round: Option<u32>,
    /// Rounds masked, by session id.
    masked: BTreeMap<String, MaskedRound>,
}

/// A training in progress at this provider.
struct ProviderRun {
    checkpoint: ProviderCheckpoint,
    provider: Arc<Provider>,
    /// The round responded to last, until its masked vector is sent.
    open: Option<(u32, LocalUpdate)>,
}

type Runs = BTreeMap<(String, String), Arc<Mutex<ProviderRun>>>;

/// Trainings in progress, by node name and job id.
static RUNS: Mutex<Runs> = Mutex::new(BTreeMap::new());

fn runs() -> MutexGuard<'static, Runs> {
    RUNS.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock(run: &Mutex<ProviderRun>) -> MutexGuard<'_, ProviderRun> {
    run.lock().unwrap_or_else(|p| p.into_inner())
}

/// Joins a training: checks the agreement and the settings, reads the rows, then counts
/// the use and charges the privacy loss of the planned rounds in the transaction that
/// starts the job.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that may not be used or settings outside its
/// terms, [`NodeError::BadRequest`] for invalid settings or rows that fail their checks
/// (naming the column and row), [`NodeError::BudgetExceeded`] when the budget cannot pay.
pub async fn join(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    request: JoinTraining,
) -> NodeResult<Value> {
    jobs::check_id(job)?;
    let agreement = request.agreement.clone();
    let reject = |e| node.store.reject(KIND, signer, Some(&agreement), e);
    let index = check_providers(node.identity.name(), &request).map_err(reject)?;
    let prepared = prepare(&node, signer, &request, index)
        .await
        .map_err(reject)?;
    let charged = charge_of(&request.config).map_err(reject)?;
    let checkpoint = ProviderCheckpoint {
        consumer: signer.to_owned(),
        join: request.clone(),
        index,
        dataset: prepared.dataset,
        dataset_sha256: prepared.dataset_sha256,
        rows: prepared.provider_rows,
        clipped: prepared.clipped,
        charged,
        operator: prepared.operator,
        last_round: None,
        masked: BTreeMap::new(),
    };

    node.store
        .audited(KIND, signer, Some(&agreement), |tx, events| {
            let record = agreements::load_with_offer_totals(tx, &agreement)?;
            crate::query::check_agreement(&record, signer)?;
            let terms = terms_of(&record)?;
            check_terms(&record, &terms, &request)?;
            let (epsilon, delta) = charged.map_or((0.0, 0.0), |c| (c.epsilon, c.delta));
            check_budget(&record, epsilon, delta, request.config.rounds)?;
            tx.execute(
                "UPDATE agreements SET queries_used = queries_used + 1,
             epsilon_spent = epsilon_spent + ?1, delta_spent = delta_spent + ?2 WHERE id = ?3",
                params![epsilon, delta, agreement],
            )?;
            let mut peers = vec![signer.to_owned()];
            peers.extend(
                request
                    .providers
                    .iter()
                    .filter(|p| *p != node.identity.name())
                    .cloned(),
            );
            let new = NewJob {
                id: job,
                kind: KIND,
                role: "provider",
                agreement: Some(&agreement),
                peers: &peers,
            };
            let detail = json!({ "index": index, "providers": request.providers,
                             "features": request.features, "rounds": request.config.rounds,
                             "differential_privacy": request.config.dp.is_some(),
                             "charged": charged, "dataset_sha256": checkpoint.dataset_sha256 });
            jobs::insert(tx, events, signer, &new, detail)
        })?;
    tracing::debug!(target: "carrel::training", job_id = job, index, charged = ?charged,
                    "joined horizontal training");

    save(&node, job, &checkpoint)?;
    let reply = Joined {
        index,
        dataset_sha256: checkpoint.dataset_sha256.clone(),
        charged,
    };
    let run = ProviderRun {
        checkpoint,
        provider: prepared.provider,
        open: None,
    };
    runs().insert(key(&node, job), Arc::new(Mutex::new(run)));
    jobs::progress(&node.store, job, "joined; waiting for the census", 0, 0)?;
    Ok(json!(reply))
}

/// Returns this provider's index after checking the list of providers.
fn check_providers(me: &str, request: &JoinTraining) -> NodeResult<usize> {
    let providers = &request.providers;
    if providers.len() < MIN_PARTIES {
        return Err(NodeError::BadRequest(format!(
            "horizontal training needs at least {MIN_PARTIES} providers, but {} were named; with \
             two, each could subtract its own update from the mean and learn the other's",
            providers.len()
        )));
    }
    if providers.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(NodeError::BadRequest(
            "providers must be distinct and in name order".into(),
        ));
    }
    providers.iter().position(|p| p == me).ok_or_else(|| {
        NodeError::BadRequest(format!("the providers {providers:?} do not include {me:?}"))
    })
}

/// Checks the request against the terms of this provider's agreement.
fn check_terms(
    record: &AgreementRecord,
    terms: &TrainingTerms,
    request: &JoinTraining,
) -> NodeResult<()> {
    let id = &record.signed.agreement.id;
    if request.features != terms.feature_columns {
        return Err(NodeError::Forbidden(format!(
            "the training's feature columns {:?} differ from {:?}, which agreement {id} names",
            request.features, terms.feature_columns
        )));
    }
    let config = &request.config;
    config
        .validate()
        .map_err(|e| NodeError::BadRequest(e.to_string()))?;
    if config.rounds > terms.max_rounds {
        return Err(NodeError::Forbidden(format!(
            "the training plans {} rounds, but agreement {id} allows at most {}",
            config.rounds, terms.max_rounds
        )));
    }
    check_privacy(record, terms, config.dp.as_ref())
}

/// Returns the privacy loss of the planned rounds, which the provider charges; none
/// without DP.
fn charge_of(config: &TrainingConfig) -> NodeResult<Option<Charged>> {
    if config.dp.is_none() {
        return Ok(None);
    }
    let loss =
        privacy_loss(config, config.rounds).map_err(|e| NodeError::BadRequest(e.to_string()))?;
    Ok(Some(Charged {
        epsilon: loss.epsilon,
        delta: loss.delta,
    }))
}

fn check_budget(record: &AgreementRecord, epsilon: f64, delta: f64, rounds: u32) -> NodeResult<()> {
    let budget = record.signed.agreement.policy.budget;
    let epsilon_left = budget.epsilon - record.epsilon_spent;
    let delta_left = budget.delta - record.delta_spent;
    if epsilon <= epsilon_left + BUDGET_SLACK * budget.epsilon
        && delta <= delta_left + BUDGET_SLACK * budget.delta
    {
        return Ok(());
    }
    Err(NodeError::BudgetExceeded(format!(
        "{rounds} rounds of DP-SGD need epsilon {epsilon} and delta {delta:e}, but agreement {} \
         (with the consumer's other agreements on the same offer) has only epsilon {} and \
         delta {:e} left; train fewer rounds or with a larger --noise-multiplier",
        record.signed.agreement.id,
        epsilon_left.max(0.0),
        delta_left.max(0.0)
    )))
}

/// The checked agreement and the rows read, before anything is charged.
struct Prepared {
    dataset: String,
    dataset_sha256: String,
    provider_rows: u64,
    clipped: BTreeMap<String, u64>,
    operator: String,
    provider: Arc<Provider>,
}

/// Checks the agreement and reads the rows, before anything is charged.
async fn prepare(
    node: &Node,
    signer: &str,
    request: &JoinTraining,
    index: usize,
) -> NodeResult<Prepared> {
    let record = node
        .store
        .read(|c| agreements::load_with_offer_totals(c, &request.agreement))?;
    crate::query::check_agreement(&record, signer)?;
    let terms = terms_of(&record)?;
    check_terms(&record, &terms, request)?;

    let (dataset, path) = node
        .store
        .read(|c| crate::query::dataset_of(c, &record.signed.agreement.target))?;
    let operator = operator_of(&record, &terms);
    let description = dataset.description.clone();
    let config = request.config.clone();
    let (provider_rows, clipped, provider) = blocking(move || {
        let rows = read_rows(&path, &description, &terms)?;
        let count = rows.data.len() as u64;
        let provider = Provider::new(index, rows.data, config)
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        Ok((count, rows.clipped, provider))
    })
    .await?;

    if !clipped.is_empty() {
        tracing::info!(target: "carrel::training", dataset = %dataset.id, ?clipped,
                       "feature values clipped to the declared bounds");
    }
    Ok(Prepared {
        dataset: dataset.id,
        dataset_sha256: dataset.content_sha256,
        provider_rows,
        clipped,
        operator,
        provider: Arc::new(provider),
    })
}

/// Responds to a round: trains from the request's model on this provider's rows and
/// returns a fresh public key, keeping the encoded update until the keys arrive.
///
/// # Errors
///
/// [`NodeError::JobFailed`] naming this provider when its update or loss is not finite or
/// out of range, and [`NodeError::Forbidden`] when the agreement is no longer in force. The
/// job then ends here. Under DP, a training round that this provider responded to already
/// is rejected, because its noise would be drawn twice.
pub async fn round(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    request: RoundRequest,
) -> NodeResult<Value> {
    let run = run_of(&node, signer, job).await?;
    let answered = answer_round(&node, job, &run, request).await;
    answered.or_else(|error| end_here(&node, signer, job, error))
}

async fn answer_round(
    node: &Node,
    job: &str,
    run: &Arc<Mutex<ProviderRun>>,
    request: RoundRequest,
) -> NodeResult<Value> {
    let training = matches!(request.task, RoundTask::Train { .. });
    // The round is checked and reserved under one lock, so two concurrent requests for the
    // same round cannot both pass the check and both draw noise.
    let (agreement, provider, reserved) = {
        let mut run = lock(run);
        let providers = run.checkpoint.join.providers.len();
        if request.parties != providers {
            return Err(NodeError::BadRequest(format!(
                "round {} names {} parties, but {providers} providers joined this job",
                request.round, request.parties
            )));
        }
        let dp = run.checkpoint.join.config.dp.is_some();
        if training && let Some(last) = run.checkpoint.last_round {
            check_round_order(request.round, last, dp)?;
        }
        if training {
            run.checkpoint.last_round = Some(request.round);
        }
        (
            run.checkpoint.join.agreement.clone(),
            run.provider.clone(),
            run.checkpoint.clone(),
        )
    };
    if training {
        save(node, job, &reserved)?;
    }
    agreements::check_in_force(&node.store, &agreement)?;

    let me = node.identity.name().to_owned();
    let number = request.round;
    let update = blocking(move || {
        provider
            .respond(&request)
            .map_err(|e| NodeError::JobFailed(format!("provider {me}: {e}")))
    })
    .await?;
    let message = update.public_key_message();
    let checkpoint = {
        let mut run = lock(run);
        run.open = Some((number, update));
        run.checkpoint.clone()
    };
    save(node, job, &checkpoint)?;
    jobs::progress(&node.store, job, &format!("round {number}: key sent"), 0, 0)?;
    Ok(json!(message))
}

/// Checks that training round `round` may follow round `last`, the last one this provider
/// responded to. Rounds never go back, so a coordinator cannot collect more updates than
/// the planned rounds give. Only a round that did not finish runs again, and with DP not
/// even that, because its noise would be drawn twice.
fn check_round_order(round: u32, last: u32, dp: bool) -> NodeResult<()> {
    if round > last || (round == last && !dp) {
        return Ok(());
    }
    let rule = if dp {
        "with DP a provider responds to each round once, because its noise would be drawn again"
    } else {
        "rounds may repeat but not go back"
    };
    Err(NodeError::BadRequest(format!(
        "round {round} was requested after this provider responded to round {last}; {rule}"
    )))
}

/// Masks the open round's update with every provider's key and returns it.
///
/// # Errors
///
/// [`NodeError::Conflict`] when no round is open here, for example after this node
/// restarted. The job then stays running, so that the coordinator can run the round again.
/// [`NodeError::BadRequest`] for keys of another round or a malformed key list, and
/// [`NodeError::Forbidden`] when the agreement is no longer in force. The job then ends
/// here.
pub async fn mask(node: Arc<Node>, signer: &str, job: &str, keys: PublicKeys) -> NodeResult<Value> {
    let run = run_of(&node, signer, job).await?;
    let open = lock(&run).open.take();
    let Some((number, update)) = open else {
        return Err(NodeError::Conflict(format!(
            "provider {} has no open round in job {job}, for example because its node \
             restarted; run the round again",
            node.identity.name()
        )));
    };
    mask_round(&node, job, &run, number, update, keys)
        .or_else(|error| end_here(&node, signer, job, error))
}

fn mask_round(
    node: &Node,
    job: &str,
    run: &Mutex<ProviderRun>,
    number: u32,
    update: LocalUpdate,
    keys: PublicKeys,
) -> NodeResult<Value> {
    let agreement = lock(run).checkpoint.join.agreement.clone();
    agreements::check_in_force(&node.store, &agreement)?;
    let public_keys: Vec<String> = keys.keys.iter().map(|key| encode(key)).collect();
    let session = keys.session_id.clone();
    let masked = update
        .mask(&keys)
        .map_err(|e| NodeError::BadRequest(e.to_string()))?;
    let record = MaskedRound {
        round: number,
        public_keys,
        masked_sha256: masked_sha256(&masked.masked),
    };
    let checkpoint = {
        let mut run = lock(run);
        run.checkpoint.masked.insert(session, record);
        run.checkpoint.clone()
    };
    save(node, job, &checkpoint)?;
    let phase = format!("round {number}: masked update sent");
    jobs::progress(&node.store, job, &phase, 0, 0)?;
    Ok(json!(masked))
}

/// Ends the training: checks the coordinator's account of every round against what this
/// provider sent, registers the global model with this provider's lineage and records the
/// transcript hash. A repeated finish of a training that ended well returns the same hash.
///
/// # Errors
///
/// [`NodeError::JobFailed`] when a round's keys or this provider's digest differ, when a
/// round is listed that this provider did not mask, or when the transcripts differ. The
/// job then ends here.
pub async fn finish(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    finish: FinishTraining,
) -> NodeResult<Value> {
    if let Some(done) = finished_already(&node, signer, job, &finish)? {
        return Ok(done);
    }
    let run = run_of(&node, signer, job).await?;
    let finished = finish_run(&node, signer, job, &run, &finish);
    runs().remove(&key(&node, job));
    finished.or_else(|error| end_here(&node, signer, job, error))
}

fn finished_already(
    node: &Node,
    signer: &str,
    job: &str,
    finish: &FinishTraining,
) -> NodeResult<Option<Value>> {
    let view = jobs::show(&node.store, job)?;
    let same = view.kind == KIND
        && view.role == "provider"
        && view.state == jobs::SUCCEEDED
        && view
            .peers
            .first()
            .is_some_and(|consumer| consumer == signer)
        && view.transcript_sha256.as_deref() == Some(finish.transcript_sha256.as_str());
    Ok(same.then(|| {
        json!(Finished {
            transcript_sha256: finish.transcript_sha256.clone()
        })
    }))
}

fn finish_run(
    node: &Node,
    signer: &str,
    job: &str,
    run: &Mutex<ProviderRun>,
    finish: &FinishTraining,
) -> NodeResult<Value> {
    let checkpoint = lock(run).checkpoint.clone();
    let agreement = checkpoint.join.agreement.clone();
    agreements::check_in_force(&node.store, &agreement)?;
    let hash = check_finish(job, &checkpoint, finish)?;

    let me = node.identity.name().to_owned();
    let mut parties = checkpoint.join.providers.clone();
    parties.push(signer.to_owned());
    parties.sort();
    let record = ModelRecord {
        id: model_id(job),
        job: job.to_owned(),
        kind: TrainingKind::Horizontal,
        role: "provider".into(),
        operator: checkpoint.operator.clone(),
        parties,
        agreements: vec![agreement.clone()],
        datasets: vec![DatasetRef {
            holder: me,
            sha256: checkpoint.dataset_sha256.clone(),
            rows: checkpoint.rows,
        }],
        rounds: finish.rounds_run,
        epsilon: checkpoint.charged.map_or(0.0, |c| c.epsilon),
        delta: checkpoint.charged.map_or(0.0, |c| c.delta),
        part: ModelPart {
            columns: checkpoint.join.features.clone(),
            weights: finish.model.weights.clone(),
            intercept: None,
        },
        evaluation: None,
    };
    let dp = checkpoint.charged.is_some();
    node.store
        .audited(KIND, signer, Some(&agreement), |tx, events| {
            if models::load(tx, &record.id).is_ok() {
                return Ok(());
            }
            register_model(tx, events, signer, &record, dp, true)
        })?;
    let result = json!({ "model": record.id, "index": checkpoint.index, "rows": checkpoint.rows,
                         "clipped": checkpoint.clipped, "rounds": finish.rounds_run,
                         "stopped_early": finish.stopped_early, "charged": checkpoint.charged });
    jobs::succeed(&node.store, signer, job, &hash, result)?;
    Ok(json!(Finished {
        transcript_sha256: hash
    }))
}

/// Checks every finished round against what this provider sent and returns the transcript
/// hash.
fn check_finish(
    job: &str,
    checkpoint: &ProviderCheckpoint,
    finish: &FinishTraining,
) -> NodeResult<String> {
    let join = &checkpoint.join;
    let failed = |reason: String| Err(NodeError::JobFailed(reason));
    if finish.rounds_run > join.config.rounds {
        return failed(format!(
            "the coordinator reports {} rounds, more than the {} planned",
            finish.rounds_run, join.config.rounds
        ));
    }
    if finish.model.weights.len() != join.features.len() || !finish.model.is_finite() {
        return failed("the final model is not finite or has the wrong number of weights".into());
    }
    for record in &finish.rounds {
        let Some(own) = checkpoint.masked.get(&record.session_id) else {
            return failed(format!(
                "the coordinator lists round {} (session {}), which this provider did not mask",
                record.round, record.session_id
            ));
        };
        if own.round != record.round || own.public_keys != record.public_keys {
            return failed(format!(
                "the public keys of round {} differ from those this provider received",
                record.round
            ));
        }
        if record.masked_sha256.len() != join.providers.len()
            || record.masked_sha256[checkpoint.index] != own.masked_sha256
        {
            return failed(format!(
                "the coordinator's digest of this provider's masked vector in round {} differs \
                 from {}",
                record.round, own.masked_sha256
            ));
        }
    }
    let hash = transcript_hash(
        job,
        &join.providers,
        &join.features,
        &join.config,
        &finish.rounds,
        &finish.model,
    );
    if hash != finish.transcript_sha256 {
        return failed(format!(
            "transcripts differ: the coordinator has {}, this provider {hash}",
            finish.transcript_sha256
        ));
    }
    Ok(hash)
}

/// Ends the training at the coordinator's request.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a caller that is not a party to the job.
pub fn abort(node: &Node, signer: &str, job: &str, reason: &str) -> NodeResult<Value> {
    jobs::end_at_peer_request(&node.store, signer, job, reason, || {
        runs().remove(&key(node, job));
    })
}

/// Returns the training `job` of consumer `signer`, reloading it after a restart.
async fn run_of(node: &Node, signer: &str, job: &str) -> NodeResult<Arc<Mutex<ProviderRun>>> {
    let found = runs().get(&key(node, job)).cloned();
    let run = match found {
        Some(run) => run,
        None => reload(node, signer, job).await?,
    };
    if lock(&run).checkpoint.consumer != signer {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not the consumer of job {job}"
        )));
    }
    Ok(run)
}

/// Rebuilds a training that was running when this node stopped, from its saved state and
/// its registered rows. A rebuild that fails ends the job here.
async fn reload(node: &Node, signer: &str, job: &str) -> NodeResult<Arc<Mutex<ProviderRun>>> {
    let not_running = || NodeError::NotFound {
        what: "running horizontal training",
        id: job.to_owned(),
    };
    let view = jobs::show(&node.store, job)?;
    if view.kind != KIND || view.role != "provider" || view.state != jobs::RUNNING {
        return Err(not_running());
    }
    let saved = models::load_checkpoint(&node.store, job)?.ok_or_else(not_running)?;
    let checkpoint: ProviderCheckpoint = serde_json::from_value(saved).map_err(|e| {
        NodeError::Internal(format!("the saved state of job {job} is invalid: {e}"))
    })?;
    if checkpoint.consumer != signer {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not the consumer of job {job}"
        )));
    }
    let provider = match rebuild(node, &checkpoint).await {
        Ok(provider) => provider,
        Err(error) => {
            jobs::fail(&node.store, signer, job, &error.to_string())?;
            return Err(error);
        }
    };
    tracing::info!(target: "carrel::training", job_id = job, "horizontal training reloaded");
    let run = Arc::new(Mutex::new(ProviderRun {
        checkpoint,
        provider: Arc::new(provider),
        open: None,
    }));
    // A request that reloaded the run meanwhile wins, so that one run serves the job.
    Ok(runs().entry(key(node, job)).or_insert(run).clone())
}

async fn rebuild(node: &Node, checkpoint: &ProviderCheckpoint) -> NodeResult<Provider> {
    let (dataset, path) = node
        .store
        .read(|c| crate::provider::load_dataset(c, &checkpoint.dataset))?;
    if dataset.content_sha256 != checkpoint.dataset_sha256 {
        return Err(NodeError::JobFailed(format!(
            "dataset {} changed during the training",
            checkpoint.dataset
        )));
    }
    let record = node
        .store
        .read(|c| agreements::load(c, &checkpoint.join.agreement))?;
    let terms = terms_of(&record)?;
    let (config, index, rows) = (
        checkpoint.join.config.clone(),
        checkpoint.index,
        checkpoint.rows,
    );
    blocking(move || {
        let read = read_rows(&path, &dataset.description, &terms)?;
        if read.data.len() as u64 != rows {
            return Err(NodeError::JobFailed(format!(
                "dataset {} has {} rows now and had {rows} when the training started",
                dataset.id,
                read.data.len()
            )));
        }
        Provider::new(index, read.data, config).map_err(|e| NodeError::BadRequest(e.to_string()))
    })
    .await
}

/// Ends the job here after a failed step and returns the error.
fn end_here(node: &Node, signer: &str, job: &str, error: NodeError) -> NodeResult<Value> {
    runs().remove(&key(node, job));
    jobs::fail(&node.store, signer, job, &error.to_string())?;
    Err(error)
}

fn save(node: &Node, job: &str, checkpoint: &ProviderCheckpoint) -> NodeResult<()> {
    let value = serde_json::to_value(checkpoint)
        .map_err(|e| NodeError::Internal(format!("the state of job {job}: {e}")))?;
    models::save_checkpoint(&node.store, job, &value)
}

fn key(node: &Node, job: &str) -> (String, String) {
    (node.identity.name().to_owned(), job.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::horizontal::RoundRecord;

    #[test]
    fn rounds_may_repeat_without_dp_only() {
        assert!(check_round_order(4, 3, false).is_ok());
        assert!(check_round_order(4, 3, true).is_ok());
        assert!(check_round_order(3, 3, false).is_ok());
        let error = check_round_order(3, 3, true).unwrap_err().to_string();
        assert!(
            error.contains("with DP a provider responds to each round once"),
            "{error}"
        );
    }

    fn checkpoint() -> ProviderCheckpoint {
        let own = MaskedRound {
            round: 0,
            public_keys: vec!["k0".into(), "k1".into(), "k2".into()],
            masked_sha256: "own".into(),
        };
        ProviderCheckpoint {
            consumer: "consortium".into(),
            join: JoinTraining {
                agreement: "agr".into(),
                providers: vec!["a".into(), "b".into(), "c".into()],
                features: vec!["x0".into(), "x1".into()],
                config: TrainingConfig::default(),
            },
            index: 1,
            dataset: "credit".into(),
            dataset_sha256: "00".into(),
            rows: 10,
            clipped: BTreeMap::new(),
            charged: None,
            operator: "consortium".into(),
            last_round: None,
            masked: [("job/horizontal/0".to_owned(), own)].into(),
        }
    }

    fn finish_of(checkpoint: &ProviderCheckpoint, digests: [&str; 3]) -> FinishTraining {
        let rounds = vec![RoundRecord {
            session_id: "job/horizontal/0".into(),
            round: 0,
            public_keys: vec!["k0".into(), "k1".into(), "k2".into()],
            masked_sha256: digests.map(String::from).to_vec(),
        }];
        let model = carrel_learn::logistic::Model::zeros(2);
        let join = &checkpoint.join;
        let transcript_sha256 = transcript_hash(
            "job",
            &join.providers,
            &join.features,
            &join.config,
            &rounds,
            &model,
        );
        FinishTraining {
            rounds,
            model,
            rounds_run: 0,
            stopped_early: false,
            transcript_sha256,
        }
    }

    #[test]
    fn finish_accepts_matching_account() {
        let checkpoint = checkpoint();
        let finish = finish_of(&checkpoint, ["d0", "own", "d2"]);
        let hash = check_finish("job", &checkpoint, &finish).unwrap();
        assert_eq!(hash, finish.transcript_sha256);
    }

    #[test]
    fn finish_rejects_other_digest() {
        let checkpoint = checkpoint();
        let finish = finish_of(&checkpoint, ["d0", "other", "d2"]);
        let error = check_finish("job", &checkpoint, &finish)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("digest of this provider's masked vector"),
            "{error}"
        );
    }

    #[test]
    fn finish_rejects_unknown_round() {
        let mut checkpoint = checkpoint();
        let finish = finish_of(&checkpoint, ["d0", "own", "d2"]);
        checkpoint.masked.clear();
        let error = check_finish("job", &checkpoint, &finish)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("which this provider did not mask"),
            "{error}"
        );
    }

    #[test]
    fn finish_rejects_other_transcript() {
        let checkpoint = checkpoint();
        let mut finish = finish_of(&checkpoint, ["d0", "own", "d2"]);
        finish.model.intercept = 1.0;
        let error = check_finish("job", &checkpoint, &finish)
            .unwrap_err()
            .to_string();
        assert!(error.contains("transcripts differ"), "{error}");
    }

    #[test]
    fn rounds_never_go_back() {
        let error = check_round_order(2, 3, false).unwrap_err().to_string();
        assert!(error.contains("may repeat but not go back"), "{error}");
        assert!(check_round_order(2, 3, true).is_err());
    }
}
