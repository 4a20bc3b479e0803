//! A provider's side of a round: local training, encoding and masking.

use carrel_mpc::secagg::MaskingParty;

use super::encoding::secagg_round;
use super::sgd::{LocalSgd, mean_loss};
use super::{
    MaskedUpdate, PublicKeyMessage, PublicKeys, RoundRequest, RoundTask, TrainingConfig,
    TrainingError,
};
use crate::logistic::{Model, l2_per_row};

/// One provider's training rows: row-major features and 0/1 labels.
#[derive(Debug, Clone, PartialEq)]
pub struct PartyData {
    features: usize,
    rows: Vec<f64>,
    labels: Vec<f64>,
}

impl PartyData {
    /// Creates the rows after checking their shape and values.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidPartyData`] for no feature columns, a `rows` length other than
    /// `labels.len() * features`, a NaN or infinite feature, or a label other than 0 or 1.
    /// The error names positions, never values.
    pub fn new(features: usize, rows: Vec<f64>, labels: Vec<f64>) -> Result<Self, TrainingError> {
        let invalid = |reason: String| TrainingError::InvalidPartyData { reason };
        if features == 0 {
            return Err(invalid("there are no feature columns".to_owned()));
        }
        if rows.len() != labels.len() * features {
            return Err(invalid(format!(
                "{} labels and {features} features need {} values but {} were given",
                labels.len(),
                labels.len() * features,
                rows.len()
            )));
        }
        if let Some(index) = rows.iter().position(|value| !value.is_finite()) {
            return Err(invalid(format!(
                "row {} column {} is NaN or infinite",
                index / features,
                index % features
            )));
        }
        if let Some(row) = labels.iter().position(|&y| y != 0.0 && y != 1.0) {
            return Err(invalid(format!("the label of row {row} is not 0 or 1")));
        }
        Ok(Self {
            features,
            rows,
            labels,
        })
    }

    /// Returns the number of feature columns.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Returns the number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns true when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Returns the features, row-major.
    pub fn rows(&self) -> &[f64] {
        &self.rows
    }

    /// Returns the labels.
    pub fn labels(&self) -> &[f64] {
        &self.labels
    }

    /// Returns the features of row `index`.
    ///
    /// # Panics
    ///
    /// Panics when `index` is not below [`PartyData::len`].
    pub fn row(&self, index: usize) -> &[f64] {
        &self.rows[index * self.features..(index + 1) * self.features]
    }
}

/// A provider: its index, its rows and the run's settings. It keeps no state between rounds.
#[derive(Debug, Clone)]
pub struct Provider {
    index: usize,
    data: PartyData,
    config: TrainingConfig,
}

impl Provider {
    /// Creates provider `index` over `data`.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidConfig`] for invalid settings, and [`TrainingError::TooManyRows`]
    /// when `data` has more rows than `encoding.max_party_rows`.
    pub fn new(
        index: usize,
        data: PartyData,
        config: TrainingConfig,
    ) -> Result<Self, TrainingError> {
        config.validate()?;
        if data.len() as u128 > u128::from(config.encoding.max_party_rows) {
            return Err(TrainingError::TooManyRows {
                party: index,
                rows: data.len(),
                max: config.encoding.max_party_rows,
            });
        }
        Ok(Self {
            index,
            data,
            config,
        })
    }

    /// Returns this provider's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Computes this provider's contribution to a round and draws its fresh masking key.
    ///
    /// In the census the contribution is the row count. In a training round the provider
    /// measures the loss of the request's model on its rows and trains from that model. It
    /// then contributes the update (local model minus request model), the mean loss and the
    /// row count, each encoded with its row count as weight. A provider without rows
    /// contributes zeros but must still take part, because its masks are part of every other
    /// vector.
    ///
    /// # Errors
    ///
    /// - [`TrainingError::RequestMismatch`] when the request's settings digest, party count,
    ///   round or model size does not fit this provider.
    /// - [`TrainingError::NonFiniteUpdate`], [`TrainingError::NonFiniteLoss`],
    ///   [`TrainingError::UpdateOutOfRange`] or [`TrainingError::LossOutOfRange`], naming this
    ///   provider; it then sends nothing, and the round cannot finish.
    /// - [`TrainingError::OpenDpFailed`] when DP noise cannot be sampled, and
    ///   [`TrainingError::SecAgg`] when the round or the key cannot be set up.
    pub fn respond(&self, request: &RoundRequest) -> Result<LocalUpdate, TrainingError> {
        self.check_request(request)?;
        let values = match &request.task {
            RoundTask::Census => Vec::new(),
            RoundTask::Train { model, total_rows } => {
                self.train(model, *total_rows, request.round)?
            }
        };
        self.encode_and_key(request, values)
    }

    /// Returns the update of the weights and the intercept followed by the mean loss of
    /// `model`, each checked to be finite and within the clip.
    fn train(&self, model: &Model, total_rows: u64, round: u32) -> Result<Vec<f64>, TrainingError> {
        let party = self.index;
        let dp = self.config.dp.as_ref();
        let clip = self.config.encoding.clip;
        let loss = mean_loss(model, &self.data, dp)?;
        if !loss.is_finite() {
            return Err(TrainingError::NonFiniteLoss { party, round });
        }
        if loss.abs() > clip {
            return Err(TrainingError::LossOutOfRange { party, round, clip });
        }

        let sgd = LocalSgd {
            data: &self.data,
            epochs: self.config.local_epochs,
            batch_size: self.config.batch_size,
            learning_rate: self.config.learning_rate_at(round),
            lambda: l2_per_row(self.config.c, total_rows as usize),
            dp,
        };
        let local = sgd.train(model, self.config.seed, round, party)?;

        let mut values: Vec<f64> = local
            .weights
            .iter()
            .zip(&model.weights)
            .map(|(local, global)| local - global)
            .collect();
        values.push(local.intercept - model.intercept);
        if values.iter().any(|value| !value.is_finite()) {
            return Err(TrainingError::NonFiniteUpdate { party, round });
        }
        if let Some(coordinate) = values.iter().position(|value| value.abs() > clip) {
            return Err(TrainingError::UpdateOutOfRange {
                party,
                round,
                coordinate,
                clip,
            });
        }
        values.push(loss);
        Ok(values)
    }

    /// Appends the row-count coordinate, encodes with the row count as weight and draws
    /// the masking key.
    fn encode_and_key(
        &self,
        request: &RoundRequest,
        mut values: Vec<f64>,
    ) -> Result<LocalUpdate, TrainingError> {
        // The constant +clip encodes to the top level, so its total counts the rows.
        values.push(self.config.encoding.clip);
        let (encoding, round) = secagg_round(
            &self.config,
            &request.session_id,
            request.parties,
            values.len(),
        )?;
        // Provider::new checked the row count against max_party_rows, a u64.
        let weight = self.data.len() as u64;
        let encoded = encoding.encode(&values, weight, &round)?;
        let masking = MaskingParty::new(&round, self.index)?;
        Ok(LocalUpdate {
            session_id: request.session_id.clone(),
            party: self.index,
            masking,
            encoded,
        })
    }

    fn check_request(&self, request: &RoundRequest) -> Result<(), TrainingError> {
        let mismatch = |reason: String| TrainingError::RequestMismatch {
            party: self.index,
            reason,
        };
        if request.settings_digest != self.config.digest() {
            return Err(mismatch(
                "its settings digest differs from this party's; give every party the same \
                 training settings"
                    .to_owned(),
            ));
        }
        if self.index >= request.parties {
            return Err(mismatch(format!(
                "the request has {} parties, so index {} is not among them",
                request.parties, self.index
            )));
        }
        let RoundTask::Train { model, total_rows } = &request.task else {
            return Ok(());
        };
        if request.round == 0 || request.round > self.config.rounds {
            return Err(mismatch(format!(
                "training round {} is outside 1 to {}",
                request.round, self.config.rounds
            )));
        }
        if model.weights.len() != self.data.features() {
            return Err(mismatch(format!(
                "the model has {} weights but this party has {} features",
                model.weights.len(),
                self.data.features()
            )));
        }
        if !model.is_finite() {
            return Err(mismatch("the model is not finite".to_owned()));
        }
        if (*total_rows as u128) < self.data.len() as u128 {
            return Err(mismatch(format!(
                "the total row count {total_rows} is below this party's own row count"
            )));
        }
        Ok(())
    }
}

/// A provider's encoded contribution to one round, with the key that will mask it.
#[derive(Debug)]
pub struct LocalUpdate {
    session_id: String,
    party: usize,
    masking: MaskingParty,
    encoded: Vec<u64>,
}

impl LocalUpdate {
    /// Returns message 2, this provider's public key for the round.
    pub fn public_key_message(&self) -> PublicKeyMessage {
        PublicKeyMessage {
            session_id: self.session_id.clone(),
            party: self.party,
            public_key: self.masking.public_key(),
        }
    }

    /// Masks the encoded vector with every other provider's key and returns message 4.
    /// The key is used once and dropped.
    ///
    /// # Errors
    ///
    /// [`TrainingError::WrongSession`] when `keys` belongs to another round, and
    /// [`TrainingError::SecAgg`] when the key list is malformed: a wrong count, this party's
    /// own key missing, or a low-order key.
    pub fn mask(self, keys: &PublicKeys) -> Result<MaskedUpdate, TrainingError> {
        if keys.session_id != self.session_id {
            return Err(TrainingError::WrongSession {
                expected: self.session_id,
                found: keys.session_id.clone(),
            });
        }
        let masked = self.masking.mask(&self.encoded, &keys.keys)?;
        Ok(MaskedUpdate {
            session_id: self.session_id,
            party: self.party,
            masked,
        })
    }

    /// Returns the encoded vector before masking, which must never leave the provider.
    #[cfg(test)]
    pub(crate) fn encoded(&self) -> &[u64] {
        &self.encoded
    }
}
