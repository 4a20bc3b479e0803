//! The coordinator's side: it requests every provider to join, runs the rounds, saves its
//! state after each step, and ends with the evaluation and the model at every party.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carrel_learn::horizontal::{
    Coordinator, MaskedUpdate, PublicKeyMessage, RoundRequest, RoundSummary, TrainingError,
    TrainingState,
};
use carrel_model::TrainingKind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::report::{self, Evaluated};
use super::start::Setup;
use super::{
    FinishTraining, Finished, JoinTraining, Joined, KIND, ROUND_ATTEMPTS, RoundRecord,
    masked_sha256, model_id, register_model, transcript_hash,
};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs;
use crate::jobs::wire::{PeerCalls, blocking, encode, end_everywhere};
use crate::models::{self, DatasetRef, ModelPart, ModelRecord};
use crate::node::Node;

/// Wait before the first repeat of a round; it doubles with every further attempt.
const FIRST_RETRY_WAIT: Duration = Duration::from_secs(1);

/// Stage of the training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Phase {
    /// The providers are joining.
    Joining,
    /// Rounds are running.
    Training,
    /// Training ended, and the model is being evaluated and registered.
    Finishing,
}

/// Counters that outlive a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Totals {
    /// Milliseconds spent per phase: `join`, `census`, `training`, `evaluation`, `finish`.
    pub milliseconds: BTreeMap<String, u64>,
    /// Bytes of request bodies sent to the providers.
    pub request_bytes: u64,
    /// Bytes of response bodies received from the providers.
    pub response_bytes: u64,
    /// Times the node restarted during the job.
    pub restarts: u32,
    /// Rounds run again after a provider could not be reached or lost the round.
    pub round_retries: u32,
}

/// The coordinator's saved progress, written after opening and after finishing each round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    /// The checked request.
    pub setup: Setup,
    /// Stage of the training.
    pub phase: Phase,
    /// The state after the last opening or finish of a round.
    pub state: TrainingState,
    /// The state after the last finished round, from which a round that was open at a
    /// restart runs again when there is no DP.
    pub finished: TrainingState,
    /// The round opened last, until it finishes.
    pub open_round: Option<u32>,
    /// Every finished round, in order, for the transcript.
    pub records: Vec<RoundRecord>,
    /// Counters.
    pub totals: Totals,
}

impl Checkpoint {
    /// Returns the checkpoint of a job that has not contacted any provider yet.
    pub fn new(setup: Setup, state: TrainingState) -> Self {
        Self {
            setup,
            phase: Phase::Joining,
            finished: state.clone(),
            state,
            open_round: None,
            records: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// Saves the checkpoint, replacing the previous one.
    pub fn save(&self, store: &crate::store::Store, job: &str) -> NodeResult<()> {
        let value = serde_json::to_value(self)
            .map_err(|e| NodeError::Internal(format!("checkpoint of job {job}: {e}")))?;
        models::save_checkpoint(store, job, &value)
    }

    fn load(store: &crate::store::Store, job: &str) -> NodeResult<Self> {
        let value = models::load_checkpoint(store, job)?.ok_or_else(|| {
            NodeError::JobFailed(format!(
                "job {job} has no saved state to continue from; start a new training"
            ))
        })?;
        serde_json::from_value(value).map_err(|e| {
            NodeError::JobFailed(format!(
                "the saved state of job {job} is invalid ({e}); start a new training"
            ))
        })
    }
}

/// Continues every horizontal training that this node coordinated when it stopped.
pub async fn resume_running(node: Arc<Node>) {
    let coordinated = jobs::running_at_start(&node.store, KIND)
        .into_iter()
        .filter(|job| job.role == "consumer");
    for job in coordinated {
        match Checkpoint::load(&node.store, &job.id) {
            Ok(mut checkpoint) => {
                checkpoint.totals.restarts += 1;
                tracing::info!(target: "carrel::training", job_id = %job.id,
                               phase = ?checkpoint.phase, "resuming horizontal training");
                tokio::spawn(drive(node.clone(), job.id, checkpoint));
            }
            Err(error) => end_everywhere(&node, &job.id, &job.peers, &error).await,
        }
    }
}

/// Runs the job from its checkpoint to the end, and ends it on every party on any error.
pub(super) async fn drive(node: Arc<Node>, job: String, checkpoint: Checkpoint) {
    let span = tracing::info_span!(target: "carrel::training", "horizontal", job_id = %job);
    let mut driver = Driver::new(node, job, checkpoint);
    let outcome = driver.run().instrument(span).await;
    if let Err(error) = outcome {
        let names = driver.checkpoint.setup.names();
        end_everywhere(&driver.node, &driver.job, &names, &error).await;
    }
}

/// A provider's failure in one step, kept apart so that the driver can decide to repeat
/// the round.
struct ProviderFailure {
    provider: String,
    error: NodeError,
}

impl ProviderFailure {
    /// Returns whether running the round again may succeed: the provider could not be
    /// reached, or it lost the open round because its node restarted.
    fn retryable(&self) -> bool {
        match &self.error {
            NodeError::Peer { .. } => true,
            NodeError::Remote { code, .. } => code == "conflict",
            _ => false,
        }
    }

    fn into_error(self, step: &str) -> NodeError {
        let detail = match self.error {
            NodeError::Remote { message, .. } => message,
            other => other.to_string(),
        };
        NodeError::JobFailed(format!(
            "provider {} failed at {step}: {detail}",
            self.provider
        ))
    }
}

enum RoundFailure {
    Provider(ProviderFailure),
    Node(NodeError),
}

impl From<NodeError> for RoundFailure {
    fn from(error: NodeError) -> Self {
        Self::Node(error)
    }
}

fn learn_error(error: TrainingError) -> NodeError {
    NodeError::JobFailed(error.to_string())
}

struct Driver {
    node: Arc<Node>,
    job: String,
    checkpoint: Checkpoint,
    calls: Arc<PeerCalls>,
    /// Traffic counted by earlier processes of this node.
    earlier_traffic: (u64, u64),
}

impl Driver {
    fn new(node: Arc<Node>, job: String, checkpoint: Checkpoint) -> Self {
        let earlier_traffic = (
            checkpoint.totals.request_bytes,
            checkpoint.totals.response_bytes,
        );
        Self {
            calls: Arc::new(PeerCalls::new(node.clone())),
            node,
            job,
            checkpoint,
            earlier_traffic,
        }
    }

    async fn run(&mut self) -> NodeResult<()> {
        if self.checkpoint.phase == Phase::Joining {
            if self.checkpoint.totals.restarts > 0 {
                return Err(NodeError::JobFailed(
                    "the coordinator stopped before every provider had joined; start a new \
                     training"
                        .into(),
                ));
            }
            self.join_all().await?;
        }
        if self.checkpoint.phase == Phase::Training {
            self.train().await?;
        }
        self.finish().await
    }

    /// Requests every provider to join. Each checks its agreement, charges its budget and
    /// reads its rows.
    async fn join_all(&mut self) -> NodeResult<()> {
        let started = Instant::now();
        let setup = &self.checkpoint.setup;
        let bodies: Vec<JoinTraining> = setup
            .providers
            .iter()
            .map(|provider| JoinTraining {
                agreement: provider.agreement.clone(),
                providers: setup.names(),
                features: setup.features.clone(),
                config: self.checkpoint.state.config().clone(),
            })
            .collect();
        let replies: Vec<Joined> = self
            .call_all("join", bodies)
            .await
            .map_err(|f| f.into_error("join"))?;

        let charged = self.checkpoint.setup.charged;
        for (index, (reply, provider)) in replies
            .into_iter()
            .zip(&mut self.checkpoint.setup.providers)
            .enumerate()
        {
            if reply.index != index || reply.charged != charged {
                return Err(NodeError::JobFailed(format!(
                    "provider {} joined as party {} charging {:?}, but is party {index} and \
                     should charge {charged:?}",
                    provider.name, reply.index, reply.charged
                )));
            }
            provider.dataset_sha256 = Some(reply.dataset_sha256);
        }
        let providers = self.checkpoint.setup.providers.len() as u64;
        tracing::info!(target: "carrel::training", providers, "every provider joined");
        jobs::progress(
            &self.node.store,
            &self.job,
            "providers joined",
            providers,
            providers,
        )?;
        self.checkpoint.phase = Phase::Training;
        self.add_time("join", started);
        self.save()
    }

    /// Runs rounds until the coordinator is finished, saving the state after each opening
    /// and each finish.
    async fn train(&mut self) -> NodeResult<()> {
        let dp = self.checkpoint.state.config().dp.is_some();
        let mut coordinator = self.restore()?;
        let mut attempts = 0;
        while !coordinator.is_finished() {
            self.check_agreements()?;
            let started = Instant::now();
            let request = coordinator.start_round().map_err(learn_error)?;
            let round = request.round;
            self.checkpoint.state = coordinator.state().clone();
            self.checkpoint.open_round = Some(round);
            self.save()?;

            let outcome = self.run_round(&mut coordinator, &request).await;
            self.add_time(if round == 0 { "census" } else { "training" }, started);
            let failure = match outcome {
                Ok((summary, record)) => {
                    attempts = 0;
                    self.checkpoint.records.push(record);
                    self.checkpoint.state = coordinator.state().clone();
                    self.checkpoint.finished = coordinator.state().clone();
                    self.checkpoint.open_round = None;
                    self.save()?;
                    self.report_progress(&summary)?;
                    continue;
                }
                Err(RoundFailure::Node(error)) => return Err(error),
                Err(RoundFailure::Provider(failure)) => failure,
            };

            attempts += 1;
            if !failure.retryable() || attempts >= ROUND_ATTEMPTS {
                return Err(failure.into_error(&format!("round {round}")));
            }
            coordinator.abort_round();
            self.checkpoint.totals.round_retries += 1;
            tracing::warn!(target: "carrel::training", round, attempts, provider = %failure.provider,
                           error = %failure.error, "round failed at a provider; running it again");
            if dp {
                // The round's noise may have been drawn, so it stays counted and spent.
                self.checkpoint.state = coordinator.state().clone();
            } else {
                coordinator =
                    Coordinator::resume(self.checkpoint.finished.clone()).map_err(learn_error)?;
                self.checkpoint.state = self.checkpoint.finished.clone();
            }
            self.checkpoint.open_round = None;
            self.save()?;
            let phase = format!(
                "round {round} failed at provider {}; running it again",
                failure.provider
            );
            jobs::progress(&self.node.store, &self.job, &phase, 0, 0)?;
            tokio::time::sleep(FIRST_RETRY_WAIT * 2u32.pow(attempts - 1)).await;
        }
        self.checkpoint.phase = Phase::Finishing;
        self.save()
    }

    /// Returns the coordinator of the saved state. Without DP, a round that was open when
    /// the node stopped runs again from the state before it. With DP, it stays counted.
    fn restore(&mut self) -> NodeResult<Coordinator> {
        let dp = self.checkpoint.state.config().dp.is_some();
        if let Some(round) = self.checkpoint.open_round.take() {
            if dp {
                tracing::warn!(target: "carrel::training", round,
                               "round was open when the node stopped; its privacy loss stays \
                                spent and training goes on with the next round");
            } else {
                tracing::info!(target: "carrel::training", round,
                               "round was open when the node stopped; running it again");
                self.checkpoint.state = self.checkpoint.finished.clone();
            }
        }
        Coordinator::resume(self.checkpoint.state.clone()).map_err(learn_error)
    }

    /// Runs one round: keys from every provider, every key to every provider, the masked
    /// vectors back, and their sum.
    async fn run_round(
        &self,
        coordinator: &mut Coordinator,
        request: &RoundRequest,
    ) -> Result<(RoundSummary, RoundRecord), RoundFailure> {
        let providers = self.checkpoint.setup.names();
        let keys: Vec<PublicKeyMessage> = self
            .call_all("round", vec![request.clone(); providers.len()])
            .await
            .map_err(RoundFailure::Provider)?;
        let mut public_keys = Vec::with_capacity(keys.len());
        for (index, message) in keys.into_iter().enumerate() {
            check_party(&providers[index], index, message.party)?;
            public_keys.push(encode(&message.public_key));
            coordinator.add_public_key(message).map_err(learn_error)?;
        }
        let keys = coordinator.public_keys().map_err(learn_error)?;

        let masked: Vec<MaskedUpdate> = self
            .call_all("mask", vec![keys; providers.len()])
            .await
            .map_err(RoundFailure::Provider)?;
        let mut digests = Vec::with_capacity(masked.len());
        for (index, message) in masked.into_iter().enumerate() {
            check_party(&providers[index], index, message.party)?;
            digests.push(masked_sha256(&message.masked));
            coordinator.add_masked(message).map_err(learn_error)?;
        }
        let summary = coordinator.finish_round().map_err(learn_error)?;
        let record = RoundRecord {
            session_id: request.session_id.clone(),
            round: request.round,
            public_keys,
            masked_sha256: digests,
        };
        Ok((summary, record))
    }

    fn report_progress(&self, summary: &RoundSummary) -> NodeResult<()> {
        let planned = self.checkpoint.state.config().rounds;
        let phase = match summary.loss {
            None => "census done".to_owned(),
            Some(loss) => format!("round {} of {planned}, loss {loss:.6}", summary.round),
        };
        tracing::debug!(target: "carrel::training", round = summary.round, "round finished");
        jobs::progress(
            &self.node.store,
            &self.job,
            &phase,
            u64::from(summary.round),
            u64::from(planned),
        )
    }

    /// Evaluates the model, writes the report, has every provider check the transcript and
    /// register the model, registers it here and ends the job.
    async fn finish(&mut self) -> NodeResult<()> {
        self.check_agreements()?;
        let state = self.checkpoint.state.clone();
        let setup = self.checkpoint.setup.clone();
        let model = state.model().clone();
        jobs::progress(&self.node.store, &self.job, "evaluating the model", 0, 0)?;

        let started = Instant::now();
        let evaluated = match &setup.test_data {
            Some(path) => {
                let (path, features, model) = (path.clone(), setup.features.clone(), model.clone());
                Some(blocking(move || report::evaluate(&path, &features, &model)).await?)
            }
            None => None,
        };
        self.add_time("evaluation", started);

        let started = Instant::now();
        jobs::progress(&self.node.store, &self.job, "registering the model", 0, 0)?;
        let transcript = transcript_hash(
            &self.job,
            &setup.names(),
            &setup.features,
            state.config(),
            &self.checkpoint.records,
            &model,
        );
        let finish = FinishTraining {
            rounds: self.checkpoint.records.clone(),
            model: model.clone(),
            rounds_run: state.rounds_started(),
            stopped_early: state.stopped_early(),
            transcript_sha256: transcript.clone(),
        };
        let replies: Vec<Finished> = self
            .call_all("finish", vec![finish; setup.providers.len()])
            .await
            .map_err(|f| f.into_error("finish"))?;
        for (provider, reply) in setup.providers.iter().zip(&replies) {
            if reply.transcript_sha256 != transcript {
                return Err(NodeError::JobFailed(format!(
                    "transcripts differ: this node has {transcript}, provider {} has {}",
                    provider.name, reply.transcript_sha256
                )));
            }
        }
        self.register(&state, evaluated.as_ref())?;
        self.add_time("finish", started);

        let result = self.result(&state, evaluated.as_ref())?;
        if let Some(dir) = &setup.report {
            let (dir, losses, result) =
                (dir.clone(), state.loss_history().to_vec(), result.clone());
            let evaluated = evaluated.clone();
            blocking(move || report::write(&dir, &losses, evaluated.as_ref(), &result)).await?;
        }
        jobs::succeed(
            &self.node.store,
            self.node.identity.name(),
            &self.job,
            &transcript,
            result,
        )?;
        tracing::info!(target: "carrel::training", rounds = state.rounds_started(),
                       "horizontal training completed");
        Ok(())
    }

    /// Registers the full model at this node, unless an earlier process did.
    fn register(&self, state: &TrainingState, evaluated: Option<&Evaluated>) -> NodeResult<()> {
        let setup = &self.checkpoint.setup;
        let me = self.node.identity.name().to_owned();
        let mut parties = setup.names();
        parties.push(me.clone());
        parties.sort();
        let model = state.model();
        let record = ModelRecord {
            id: model_id(&self.job),
            job: self.job.clone(),
            kind: TrainingKind::Horizontal,
            role: "coordinator".into(),
            operator: setup.operator.clone(),
            parties,
            agreements: setup
                .providers
                .iter()
                .map(|p| p.agreement.clone())
                .collect(),
            // NOTE: the coordinator learns only the total row count, so each provider's
            // dataset is given with 0 rows here and null rows in the audit log.
            datasets: setup
                .providers
                .iter()
                .map(|p| DatasetRef {
                    holder: p.name.clone(),
                    sha256: p.dataset_sha256.clone().unwrap_or_default(),
                    rows: 0,
                })
                .collect(),
            rounds: state.rounds_started(),
            epsilon: setup.charged.map_or(0.0, |c| c.epsilon),
            delta: setup.charged.map_or(0.0, |c| c.delta),
            part: ModelPart {
                columns: setup.features.clone(),
                weights: model.weights.clone(),
                intercept: Some(model.intercept),
            },
            evaluation: evaluated.map(|e| json!(e.evaluation)),
        };
        let dp = setup.charged.is_some();
        self.node.store.audited("model", &me, None, |tx, events| {
            if models::load(tx, &record.id).is_ok() {
                return Ok(());
            }
            register_model(tx, events, &me, &record, dp, false)
        })
    }

    /// Returns the job's result: the evaluation, rounds, privacy, traffic and times.
    fn result(&self, state: &TrainingState, evaluated: Option<&Evaluated>) -> NodeResult<Value> {
        let setup = &self.checkpoint.setup;
        let privacy = match setup.charged {
            Some(charged) => {
                let spent = Coordinator::resume(state.clone())
                    .and_then(|c| c.privacy_spent())
                    .map_err(learn_error)?;
                json!({ "differential_privacy": true,
                        "charged": { "epsilon": charged.epsilon, "delta": charged.delta },
                        "spent": { "rho": spent.rho, "epsilon": spent.epsilon,
                                   "delta": spent.delta } })
            }
            None => json!({ "differential_privacy": false, "epsilon": null, "delta": null }),
        };
        let totals = &self.checkpoint.totals;
        let (request_bytes, response_bytes) = self.traffic();
        let seconds: BTreeMap<&String, f64> = totals
            .milliseconds
            .iter()
            .map(|(phase, ms)| (phase, *ms as f64 / 1000.0))
            .collect();
        let losses: Vec<Value> = state
            .loss_history()
            .iter()
            .map(|entry| json!({ "round": entry.round, "loss": entry.loss }))
            .collect();
        Ok(json!({
            "model": model_id(&self.job),
            "providers": setup.names(),
            "features": setup.features,
            "total_rows": state.total_rows(),
            "rounds": state.rounds_started(),
            "planned_rounds": state.config().rounds,
            "stopped_early": state.stopped_early(),
            "losses": losses,
            "evaluation": evaluated.map(|e| json!(e.evaluation)),
            "privacy": privacy,
            "traffic": { "request_bytes": request_bytes, "response_bytes": response_bytes },
            "seconds": seconds,
            "restarts": totals.restarts,
            "round_retries": totals.round_retries,
            "report": setup.report,
        }))
    }

    /// Checks before each step that every agreement is still in force.
    fn check_agreements(&self) -> NodeResult<()> {
        for provider in &self.checkpoint.setup.providers {
            agreements::check_in_force(&self.node.store, &provider.agreement)?;
        }
        Ok(())
    }

    /// Posts one body to each provider's `step` at once and returns the responses in
    /// provider order, or the failure of the first provider in that order.
    async fn call_all<B, T>(&self, step: &str, bodies: Vec<B>) -> Result<Vec<T>, ProviderFailure>
    where
        B: Serialize + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        let providers = self.checkpoint.setup.names();
        let path = format!("/jobs/{}/train/{step}", self.job);
        let mut tasks = JoinSet::new();
        for (index, body) in bodies.into_iter().enumerate() {
            let (calls, peer, path) = (self.calls.clone(), providers[index].clone(), path.clone());
            tasks.spawn(async move { (index, calls.call::<T>(&peer, &path, &body).await) });
        }
        let mut results: Vec<Option<NodeResult<T>>> = providers.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, result)) => results[index] = Some(result),
                Err(error) => {
                    return Err(ProviderFailure {
                        provider: "a call task".into(),
                        error: NodeError::Internal(format!("a call to a provider failed: {error}")),
                    });
                }
            }
        }
        let mut values = Vec::with_capacity(results.len());
        for (provider, result) in providers.into_iter().zip(results) {
            match result {
                Some(Ok(value)) => values.push(value),
                Some(Err(error)) => return Err(ProviderFailure { provider, error }),
                None => {
                    return Err(ProviderFailure {
                        provider,
                        error: NodeError::Internal("a call to a provider returned nothing".into()),
                    });
                }
            }
        }
        Ok(values)
    }

    /// Returns the bytes sent and received over the whole job, restarts included.
    fn traffic(&self) -> (u64, u64) {
        let now = self.calls.traffic();
        let count = |field: &str| now[field].as_u64().unwrap_or(0);
        (
            self.earlier_traffic.0 + count("request_bytes"),
            self.earlier_traffic.1 + count("response_bytes"),
        )
    }

    fn add_time(&mut self, phase: &str, started: Instant) {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        *self
            .checkpoint
            .totals
            .milliseconds
            .entry(phase.to_owned())
            .or_default() += ms;
    }

    fn save(&mut self) -> NodeResult<()> {
        let (sent, received) = self.traffic();
        self.checkpoint.totals.request_bytes = sent;
        self.checkpoint.totals.response_bytes = received;
        self.checkpoint.save(&self.node.store, &self.job)
    }
}

/// Checks that a provider's message names its own index.
fn check_party(provider: &str, index: usize, party: usize) -> NodeResult<()> {
    if party == index {
        return Ok(());
    }
    Err(NodeError::JobFailed(format!(
        "provider {provider} sent a message as party {party}, but it is party {index}"
    )))
}
