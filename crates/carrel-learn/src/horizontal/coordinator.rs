//! The coordinator's side: round requests, key relay, aggregation and the model update.

use carrel_mpc::secagg::{Aggregator, FixedPoint, PUBLIC_KEY_LEN, Round};

use super::encoding::{count_index, decode_count, loss_index, secagg_round, training_len};
use super::privacy::{PrivacyLoss, privacy_loss_of_rho, rho_of_rounds};
use super::state::{RoundLoss, TrainingState};
use super::{
    MaskedUpdate, PublicKeyMessage, PublicKeys, RoundRequest, RoundTask, TrainingConfig,
    TrainingError,
};
use crate::logistic::{Model, dot, l2_per_row};

/// Outcome of one finished round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundSummary {
    /// Round number: 0 for the census, training rounds from 1.
    pub round: u32,
    /// Total row count over all providers.
    pub total_rows: u64,
    /// Training loss of the model the round started from; `None` for the census.
    pub loss: Option<f64>,
    /// Whether this round triggered early stopping.
    pub stopped_early: bool,
    /// Whether training is finished.
    pub finished: bool,
}

/// The coordinator of a run: it opens rounds, relays keys, sums the masked vectors and
/// applies the weighted mean update.
///
/// The state between rounds is a [`TrainingState`]. The round in progress is not saved, so a
/// restarted node starts a new round.
#[derive(Debug)]
pub struct Coordinator {
    state: TrainingState,
    open: Option<OpenRound>,
}

/// The round in progress.
#[derive(Debug)]
struct OpenRound {
    session_id: String,
    round: u32,
    encoding: FixedPoint,
    aggregator: Aggregator,
    keys: Vec<Option<[u8; PUBLIC_KEY_LEN]>>,
}

impl Coordinator {
    /// Creates the coordinator of run `job_id` over `parties` providers with `features`
    /// features, starting from the all-zero model.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidConfig`] for invalid settings or no features, and
    /// [`TrainingError::TooFewParties`] below 3 providers.
    pub fn new(
        job_id: impl Into<String>,
        config: TrainingConfig,
        parties: usize,
        features: usize,
    ) -> Result<Self, TrainingError> {
        config.validate()?;
        check_parties(parties)?;
        if features == 0 {
            return Err(TrainingError::InvalidConfig {
                field: "features",
                reason: "is 0; train on at least one feature column".to_owned(),
            });
        }
        // Check the encoding for this party count before any round opens.
        config.encoding.levels_for(parties)?;
        let rho_spent = config.dp.as_ref().map(|_| 0.0);
        let state = TrainingState {
            job_id: job_id.into(),
            config,
            parties,
            features,
            model: Model::zeros(features),
            total_rows: None,
            sessions_opened: 0,
            rounds_started: 0,
            loss_history: Vec::new(),
            best_loss: None,
            rounds_without_improvement: 0,
            stopped_early: false,
            rho_spent,
        };
        Ok(Self { state, open: None })
    }

    /// Continues a run from a saved state.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidState`] or [`TrainingError::InvalidConfig`] when the state is
    /// inconsistent.
    pub fn resume(state: TrainingState) -> Result<Self, TrainingError> {
        state.validate()?;
        Ok(Self { state, open: None })
    }

    /// Returns the state to save between rounds.
    pub fn state(&self) -> &TrainingState {
        &self.state
    }

    /// Returns the global model.
    pub fn model(&self) -> &Model {
        &self.state.model
    }

    /// Returns whether training is finished: every round started and none open, or early
    /// stopping triggered.
    pub fn is_finished(&self) -> bool {
        let all_started = self.state.rounds_started >= self.state.config.rounds;
        self.state.stopped_early || (all_started && self.open.is_none())
    }

    /// Returns the privacy loss of the rounds started so far.
    ///
    /// # Errors
    ///
    /// [`TrainingError::OpenDpFailed`] when OpenDP rejects the conversion.
    pub fn privacy_spent(&self) -> Result<PrivacyLoss, TrainingError> {
        match (&self.state.config.dp, self.state.rho_spent) {
            (Some(dp), Some(rho)) => privacy_loss_of_rho(dp, rho),
            _ => Ok(PrivacyLoss::unbounded()),
        }
    }

    /// Opens the next round and returns message 1 for every provider: the census while the
    /// total row count is unknown, then training rounds.
    ///
    /// A training round counts as started, and its privacy loss as spent, from here on,
    /// even if it later fails.
    ///
    /// # Errors
    ///
    /// [`TrainingError::RoundStillOpen`] while a round is open,
    /// [`TrainingError::TrainingFinished`] after the last round, and
    /// [`TrainingError::OpenDpFailed`] when the privacy loss cannot be computed.
    pub fn start_round(&mut self) -> Result<RoundRequest, TrainingError> {
        if let Some(open) = &self.open {
            return Err(TrainingError::RoundStillOpen { round: open.round });
        }
        if self.is_finished() {
            return Err(TrainingError::TrainingFinished {
                rounds: self.state.rounds_started,
            });
        }

        let state = &self.state;
        let (round, task, vector_len) = match state.total_rows {
            None => (0, RoundTask::Census, 1),
            Some(total_rows) => {
                let task = RoundTask::Train {
                    model: state.model.clone(),
                    total_rows,
                };
                (state.rounds_started + 1, task, training_len(state.features))
            }
        };
        let session_id = format!("{}/horizontal/{}", state.job_id, state.sessions_opened);
        let (encoding, secagg) =
            secagg_round(&state.config, &session_id, state.parties, vector_len)?;
        let rho_spent = match (&state.config.dp, round) {
            (Some(dp), 1..) => Some(rho_of_rounds(dp, state.config.local_epochs, round)?),
            _ => state.rho_spent,
        };

        // Every fallible step is done, so the state changes from here on.
        self.state.sessions_opened += 1;
        if round > 0 {
            self.state.rounds_started = round;
            self.state.rho_spent = rho_spent;
        }
        self.open = Some(OpenRound::new(session_id.clone(), round, encoding, &secagg));
        Ok(RoundRequest {
            session_id,
            round,
            parties: self.state.parties,
            settings_digest: self.state.config.digest(),
            task,
        })
    }

    /// Stores message 2 from a provider.
    ///
    /// # Errors
    ///
    /// [`TrainingError::NoOpenRound`], [`TrainingError::WrongSession`],
    /// [`TrainingError::PartyOutOfRange`] or [`TrainingError::DuplicateKey`].
    pub fn add_public_key(&mut self, message: PublicKeyMessage) -> Result<(), TrainingError> {
        let open = self.open_round(&message.session_id, message.party)?;
        let slot = &mut open.keys[message.party];
        if slot.is_some() {
            return Err(TrainingError::DuplicateKey {
                party: message.party,
            });
        }
        *slot = Some(message.public_key);
        Ok(())
    }

    /// Returns message 3, every provider's key in party order.
    ///
    /// # Errors
    ///
    /// [`TrainingError::NoOpenRound`], or [`TrainingError::MissingKeys`] naming the
    /// providers whose key has not arrived.
    pub fn public_keys(&self) -> Result<PublicKeys, TrainingError> {
        let open = self.open.as_ref().ok_or(TrainingError::NoOpenRound)?;
        let missing: Vec<usize> = (0..open.keys.len())
            .filter(|&party| open.keys[party].is_none())
            .collect();
        if !missing.is_empty() {
            return Err(TrainingError::MissingKeys { missing });
        }
        Ok(PublicKeys {
            session_id: open.session_id.clone(),
            keys: open.keys.iter().flatten().copied().collect(),
        })
    }

    /// Stores message 4 from a provider.
    ///
    /// # Errors
    ///
    /// [`TrainingError::NoOpenRound`], [`TrainingError::WrongSession`],
    /// [`TrainingError::PartyOutOfRange`], or [`TrainingError::SecAgg`] for a duplicate or
    /// malformed vector. A rejected vector is not stored and the round stays open.
    pub fn add_masked(&mut self, message: MaskedUpdate) -> Result<(), TrainingError> {
        let open = self.open_round(&message.session_id, message.party)?;
        open.aggregator.add(message.party, message.masked)?;
        Ok(())
    }

    /// Discards the open round, for example when a provider does not answer. A training
    /// round stays counted as started. Returns the number of the discarded round, if any.
    pub fn abort_round(&mut self) -> Option<u32> {
        self.open.take().map(|open| open.round)
    }

    /// Sums the masked vectors, decodes them and, in a training round, applies the weighted
    /// mean update to the global model. The round is closed whether or not it succeeds.
    ///
    /// # Errors
    ///
    /// - [`TrainingError::NoOpenRound`] when no round is open.
    /// - [`TrainingError::SecAgg`] when a provider's vector is missing.
    /// - [`TrainingError::NoSamples`] when every provider has 0 rows.
    /// - [`TrainingError::RowCountChanged`] or [`TrainingError::CorruptCount`] for a total
    ///   that disagrees with the census.
    /// - [`TrainingError::NonFiniteModel`] when the new model would not be finite.
    ///
    /// On every error the model and the loss history are unchanged.
    pub fn finish_round(&mut self) -> Result<RoundSummary, TrainingError> {
        let open = self.open.take().ok_or(TrainingError::NoOpenRound)?;
        let totals = open.aggregator.finish()?;
        match self.state.total_rows {
            None => self.finish_census(&totals, &open.encoding),
            Some(expected) => self.finish_training(&totals, &open.encoding, open.round, expected),
        }
    }

    fn finish_census(
        &mut self,
        totals: &[i128],
        encoding: &FixedPoint,
    ) -> Result<RoundSummary, TrainingError> {
        let total_rows = decode_count(totals[0], encoding, 0)?;
        if total_rows == 0 {
            return Err(TrainingError::NoSamples { round: 0 });
        }
        self.state.total_rows = Some(total_rows);
        Ok(RoundSummary {
            round: 0,
            total_rows,
            loss: None,
            stopped_early: false,
            finished: self.is_finished(),
        })
    }

    fn finish_training(
        &mut self,
        totals: &[i128],
        encoding: &FixedPoint,
        round: u32,
        expected_rows: u64,
    ) -> Result<RoundSummary, TrainingError> {
        let features = self.state.features;
        let total_rows = decode_count(totals[count_index(features)], encoding, round)?;
        if total_rows == 0 {
            return Err(TrainingError::NoSamples { round });
        }
        if total_rows != expected_rows {
            return Err(TrainingError::RowCountChanged {
                round,
                expected: expected_rows,
                found: total_rows,
            });
        }

        // Weighted means of the update coordinates and of the loss.
        let means = encoding.decode_mean(&totals[..count_index(features)], total_rows)?;
        let model = next_model(&self.state.model, &means[..=features], round)?;
        let lambda = l2_per_row(self.state.config.c, total_rows as usize);
        let weights = &self.state.model.weights;
        let loss = means[loss_index(features)] + 0.5 * lambda * dot(weights, weights);
        if !loss.is_finite() {
            return Err(TrainingError::NonFiniteModel { round });
        }

        self.state.model = model;
        let stopped_early = self.record_loss(round, loss);
        Ok(RoundSummary {
            round,
            total_rows,
            loss: Some(loss),
            stopped_early,
            finished: self.is_finished(),
        })
    }

    /// Appends the loss and updates early stopping; returns whether it triggered now.
    fn record_loss(&mut self, round: u32, loss: f64) -> bool {
        let state = &mut self.state;
        state.loss_history.push(RoundLoss { round, loss });
        let Some(early_stopping) = &state.config.early_stopping else {
            return false;
        };
        let improved = match state.best_loss {
            None => true,
            Some(best) => loss < best - early_stopping.min_relative_improvement * best.abs(),
        };
        if improved {
            state.best_loss = Some(loss);
            state.rounds_without_improvement = 0;
            return false;
        }
        state.rounds_without_improvement += 1;
        if state.rounds_without_improvement >= early_stopping.patience {
            state.stopped_early = true;
        }
        state.stopped_early
    }

    /// Returns the open round after checking that a message from `party` belongs to it.
    fn open_round(
        &mut self,
        session_id: &str,
        party: usize,
    ) -> Result<&mut OpenRound, TrainingError> {
        let parties = self.state.parties;
        let open = self.open.as_mut().ok_or(TrainingError::NoOpenRound)?;
        if session_id != open.session_id {
            return Err(TrainingError::WrongSession {
                expected: open.session_id.clone(),
                found: session_id.to_owned(),
            });
        }
        if party >= parties {
            return Err(TrainingError::PartyOutOfRange { party, parties });
        }
        Ok(open)
    }
}

impl OpenRound {
    fn new(session_id: String, round: u32, encoding: FixedPoint, secagg: &Round) -> Self {
        Self {
            session_id,
            round,
            encoding,
            aggregator: Aggregator::new(secagg),
            keys: vec![None; secagg.parties()],
        }
    }
}

/// Returns `model + update`, with the intercept's update last, unless a coordinate of the
/// result is NaN or infinite.
pub(super) fn next_model(
    model: &Model,
    update: &[f64],
    round: u32,
) -> Result<Model, TrainingError> {
    let (weights, intercept) = update.split_at(model.weights.len());
    let next = Model {
        weights: model
            .weights
            .iter()
            .zip(weights)
            .map(|(w, u)| w + u)
            .collect(),
        intercept: model.intercept + intercept[0],
    };
    if !next.is_finite() {
        return Err(TrainingError::NonFiniteModel { round });
    }
    Ok(next)
}

pub(super) fn check_parties(parties: usize) -> Result<(), TrainingError> {
    if parties < carrel_mpc::secagg::MIN_PARTIES {
        return Err(TrainingError::TooFewParties { parties });
    }
    Ok(())
}
