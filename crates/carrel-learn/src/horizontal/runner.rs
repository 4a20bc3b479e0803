//! An in-process run of the coordinator and every provider, for tests and benchmarks.

use rayon::prelude::*;

use super::{
    Coordinator, LocalUpdate, PartyData, PrivacyLoss, Provider, RoundSummary, TrainingConfig,
    TrainingError,
};
use crate::logistic::Model;

/// Result of a finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingOutcome {
    /// The final global model.
    pub model: Model,
    /// Training loss of every finished round, in order: the pooled objective of the model
    /// that round started from.
    pub losses: Vec<f64>,
    /// Training rounds run.
    pub rounds: u32,
    /// Whether early stopping ended training before the configured number of rounds.
    pub stopped_early: bool,
    /// Total row count over all providers.
    pub total_rows: u64,
    /// Privacy loss of the run; unbounded without DP.
    pub privacy: PrivacyLoss,
}

/// Trains on `parties`, one provider each, with a real coordinator, real pairwise masks and
/// real aggregation in this process, and returns the final model.
///
/// Providers compute their local updates in parallel; the result does not depend on the
/// scheduling.
///
/// # Errors
///
/// [`TrainingError::FeatureCountMismatch`] when the parties' feature counts differ, and the
/// first error of any round, such as [`TrainingError::NoSamples`] or a provider's
/// [`TrainingError::NonFiniteUpdate`]. The run stops at the first failed round.
pub fn run_local(
    parties: &[PartyData],
    config: &TrainingConfig,
) -> Result<TrainingOutcome, TrainingError> {
    let mut run = LocalRun::new("local", parties, config)?;
    run.run_to_end()?;
    run.outcome()
}

/// A coordinator and its providers, driven round by round.
#[derive(Debug)]
pub(crate) struct LocalRun {
    pub coordinator: Coordinator,
    pub providers: Vec<Provider>,
}

impl LocalRun {
    /// Creates a fresh run over `parties`.
    pub fn new(
        job_id: &str,
        parties: &[PartyData],
        config: &TrainingConfig,
    ) -> Result<Self, TrainingError> {
        let features = parties.first().map_or(0, PartyData::features);
        let coordinator = Coordinator::new(job_id, config.clone(), parties.len(), features)?;
        Self::resume(coordinator, parties)
    }

    /// Creates a run that continues from `coordinator`'s state.
    pub fn resume(coordinator: Coordinator, parties: &[PartyData]) -> Result<Self, TrainingError> {
        let state = coordinator.state();
        let mut providers = Vec::with_capacity(parties.len());
        for (index, data) in parties.iter().enumerate() {
            if data.features() != state.features() {
                return Err(TrainingError::FeatureCountMismatch {
                    party: index,
                    expected: state.features(),
                    found: data.features(),
                });
            }
            providers.push(Provider::new(index, data.clone(), state.config().clone())?);
        }
        Ok(Self {
            coordinator,
            providers,
        })
    }

    /// Runs rounds until the coordinator is finished.
    pub fn run_to_end(&mut self) -> Result<(), TrainingError> {
        while !self.coordinator.is_finished() {
            self.run_round()?;
        }
        Ok(())
    }

    /// Runs one round; on failure the round is aborted and the model kept.
    pub fn run_round(&mut self) -> Result<RoundSummary, TrainingError> {
        let request = self.coordinator.start_round()?;
        let result = self.exchange(&request);
        if result.is_err() {
            self.coordinator.abort_round();
        }
        result
    }

    fn exchange(&mut self, request: &super::RoundRequest) -> Result<RoundSummary, TrainingError> {
        let results: Vec<Result<LocalUpdate, TrainingError>> = self
            .providers
            .par_iter()
            .map(|provider| provider.respond(request))
            .collect();
        // Report the failure of the lowest-numbered provider, whatever the scheduling.
        let updates: Vec<LocalUpdate> = results.into_iter().collect::<Result<_, _>>()?;
        for update in &updates {
            self.coordinator
                .add_public_key(update.public_key_message())?;
        }
        let keys = self.coordinator.public_keys()?;
        for update in updates {
            self.coordinator.add_masked(update.mask(&keys)?)?;
        }
        self.coordinator.finish_round()
    }

    /// Returns the outcome of the rounds run so far.
    pub fn outcome(&self) -> Result<TrainingOutcome, TrainingError> {
        let state = self.coordinator.state();
        let losses: Vec<f64> = state
            .loss_history()
            .iter()
            .map(|entry| entry.loss)
            .collect();
        Ok(TrainingOutcome {
            model: state.model().clone(),
            rounds: state.rounds_started(),
            losses,
            stopped_early: state.stopped_early(),
            total_rows: state.total_rows().unwrap_or(0),
            privacy: self.coordinator.privacy_spent()?,
        })
    }
}
