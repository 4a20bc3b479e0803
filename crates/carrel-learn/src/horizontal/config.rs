//! Training settings that the coordinator and every provider agree on before the first round.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::TrainingError;

/// Domain label of the settings digest.
const DIGEST_DOMAIN: &[u8] = b"carrel-learn-v1/horizontal/settings";

/// Largest number of rounds accepted.
pub const MAX_ROUNDS: u32 = 100_000;

/// Largest number of local epochs per round accepted.
pub const MAX_LOCAL_EPOCHS: u32 = 1_000;

/// Settings of one federated training run.
///
/// Every provider must hold the same settings as the coordinator, because the seeded shuffle,
/// the L2 strength, the fixed-point encoding and the privacy accounting all derive from them.
/// Missing fields take their [`Default`] values when deserialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Number of training rounds, from 1 to [`MAX_ROUNDS`]. A failed round counts too, so
    /// [`privacy_loss`](super::privacy_loss) of this number bounds every run.
    pub rounds: u32,
    /// Passes over its own rows that each provider makes per round, from 1 to
    /// [`MAX_LOCAL_EPOCHS`].
    pub local_epochs: u32,
    /// Rows per minibatch. The last batch of an epoch contains the remainder.
    pub batch_size: usize,
    /// Step size of local SGD in round 1.
    pub learning_rate: f64,
    /// Factor applied to the step size once per round: round `r` uses
    /// `learning_rate * learning_rate_decay^(r - 1)`. 1 means no decay.
    pub learning_rate_decay: f64,
    /// scikit-learn's `C`, the inverse L2 strength. Every provider uses the per-row penalty
    /// `1 / (C N)` with `N` the total row count. The intercept is not penalised.
    pub c: f64,
    /// Seed of every provider's shuffle, so the same inputs give the same model bit for bit.
    pub seed: u64,
    /// Fixed-point encoding of the values aggregated each round.
    pub encoding: EncodingConfig,
    /// Early stopping on the training loss. `None` runs every round.
    pub early_stopping: Option<EarlyStopping>,
    /// DP-SGD at each provider. `None` trains without noise.
    pub dp: Option<DpConfig>,
}

impl Default for TrainingConfig {
    /// Returns settings tuned on the three-lender credit-default data of
    /// `examples/horizontal_credit.rs`: there, early stopping ends training after 9 rounds at
    /// test AUC 0.7279, against 0.7297 for the pooled model. Other data may need another
    /// learning rate.
    fn default() -> Self {
        Self {
            rounds: 10,
            local_epochs: 1,
            batch_size: 64,
            learning_rate: 0.2,
            learning_rate_decay: 0.6,
            c: 1.0,
            seed: 0,
            encoding: EncodingConfig::default(),
            early_stopping: Some(EarlyStopping::default()),
            dp: None,
        }
    }
}

impl TrainingConfig {
    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidConfig`] naming the first invalid field, its value and the
    /// accepted range.
    pub fn validate(&self) -> Result<(), TrainingError> {
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(invalid(
                "rounds",
                format!("is {}; set it from 1 to {MAX_ROUNDS}", self.rounds),
            ));
        }
        if !(1..=MAX_LOCAL_EPOCHS).contains(&self.local_epochs) {
            return Err(invalid(
                "local_epochs",
                format!(
                    "is {}; set it from 1 to {MAX_LOCAL_EPOCHS}",
                    self.local_epochs
                ),
            ));
        }
        if self.batch_size == 0 {
            return Err(invalid(
                "batch_size",
                "is 0; set it to at least 1".to_owned(),
            ));
        }
        check_positive("learning_rate", self.learning_rate)?;
        let decay = self.learning_rate_decay;
        if !(decay > 0.0 && decay <= 1.0) {
            return Err(invalid(
                "learning_rate_decay",
                format!("is {decay}; set it above 0 and at most 1, where 1 means no decay"),
            ));
        }
        check_positive("c", self.c)?;
        self.encoding.validate()?;
        if let Some(early_stopping) = &self.early_stopping {
            early_stopping.validate()?;
        }
        if let Some(dp) = &self.dp {
            dp.validate()?;
        }
        Ok(())
    }

    /// Returns the hex SHA-256 digest of the settings' JSON form, which every round request
    /// carries so that a provider with other settings rejects the round.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(DIGEST_DOMAIN);
        // Serialising plain numbers, strings and options to JSON cannot fail.
        let json = serde_json::to_vec(self).expect("settings serialise to JSON");
        hasher.update(json);
        hex::encode(hasher.finalize())
    }

    /// Returns the step size of round `round`, counted from 1.
    pub fn learning_rate_at(&self, round: u32) -> f64 {
        let decays = i32::try_from(round.saturating_sub(1)).unwrap_or(i32::MAX);
        self.learning_rate * self.learning_rate_decay.powi(decays)
    }
}

/// Fixed-point encoding of the aggregated vector: secure aggregation's `FixedPoint` with
/// clipping bound `clip` and a number of levels fitted to the 64-bit ring.
///
/// Each provider weights its values by its row count, at most `max_party_rows`, so one
/// coordinate of the total reaches at most `parties * max_party_rows * (levels - 1)`, which
/// must stay below 2^63. With `levels` unset, the encoding takes the largest odd number of
/// levels that fits, at most `u32::MAX`. With the default `max_party_rows` of 2^24 that is
/// `u32::MAX` for up to 128 providers, and a decoded mean is then within
/// `clip / (u32::MAX - 1)`, about 7.5e-9 for the default `clip` of 32, of the exact mean.
/// An odd number of levels encodes 0 exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncodingConfig {
    /// Bound on every coordinate of a provider's model update and on its mean loss. A
    /// provider whose update exceeds it rejects the round instead of clamping.
    pub clip: f64,
    /// Number of fixed-point levels. `None` takes the largest that fits.
    pub levels: Option<u32>,
    /// Declared bound on the rows of one provider, public to every party.
    pub max_party_rows: u64,
}

impl Default for EncodingConfig {
    fn default() -> Self {
        Self {
            clip: 32.0,
            levels: None,
            max_party_rows: 1 << 24,
        }
    }
}

impl EncodingConfig {
    /// Checks the settings that do not depend on the number of providers.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidConfig`] for a clip that is not finite and above 0, fewer than
    /// 2 levels or a `max_party_rows` of 0.
    pub fn validate(&self) -> Result<(), TrainingError> {
        check_positive("encoding.clip", self.clip)?;
        if let Some(levels) = self.levels
            && levels < 2
        {
            return Err(invalid(
                "encoding.levels",
                format!("is {levels}; set at least 2 levels, or leave it unset"),
            ));
        }
        if self.max_party_rows == 0 {
            return Err(invalid(
                "encoding.max_party_rows",
                "is 0; set it to at least the row count of the largest provider".to_owned(),
            ));
        }
        Ok(())
    }

    /// Returns the number of levels for `parties` providers: the configured number, or the
    /// largest odd number that keeps every total below 2^63.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidConfig`] when the configured levels, or even 3 levels, would
    /// let a total reach 2^63.
    pub fn levels_for(&self, parties: usize) -> Result<u32, TrainingError> {
        let max_weight = (parties as u128).saturating_mul(u128::from(self.max_party_rows));
        let max_steps = (HALF_RING - 1) / max_weight.max(1);
        if let Some(levels) = self.levels {
            if u128::from(levels - 1) > max_steps {
                return Err(invalid(
                    "encoding.levels",
                    format!(
                        "is {levels}, but {parties} providers of up to {} rows each allow at \
                         most {} levels in a 64-bit ring; lower levels or max_party_rows",
                        self.max_party_rows,
                        max_steps.saturating_add(1)
                    ),
                ));
            }
            return Ok(levels);
        }

        let steps = max_steps.min(u128::from(u32::MAX - 1));
        // An even number of steps gives an odd number of levels, with 0 on the middle level.
        let steps = steps - steps % 2;
        if steps < 2 {
            return Err(invalid(
                "encoding.max_party_rows",
                format!(
                    "is {}, too large for {parties} providers in a 64-bit ring; lower it",
                    self.max_party_rows
                ),
            ));
        }
        // `steps` is at most u32::MAX - 1, so the level count fits in u32.
        Ok(steps as u32 + 1)
    }
}

/// Half the 64-bit ring, the bound that every absolute total stays below.
const HALF_RING: u128 = 1 << 63;

/// Early stopping on the training loss that the coordinator learns each round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStopping {
    /// Rounds in a row without improvement after which training stops, at least 1.
    pub patience: u32,
    /// Relative decrease below the best loss so far that counts as an improvement, from 0
    /// up to but excluding 1.
    pub min_relative_improvement: f64,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            patience: 2,
            min_relative_improvement: 1e-4,
        }
    }
}

impl EarlyStopping {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidConfig`] for a patience of 0 or an improvement outside [0, 1).
    pub fn validate(&self) -> Result<(), TrainingError> {
        if self.patience == 0 {
            return Err(invalid(
                "early_stopping.patience",
                "is 0; set it to at least 1 round, or disable early stopping".to_owned(),
            ));
        }
        let improvement = self.min_relative_improvement;
        if !(0.0..1.0).contains(&improvement) {
            return Err(invalid(
                "early_stopping.min_relative_improvement",
                format!("is {improvement}; set it from 0 up to but excluding 1"),
            ));
        }
        Ok(())
    }
}

/// DP-SGD at each provider, accounted in zero-concentrated DP.
///
/// Privacy unit: one training row of one provider. Neighbouring datasets differ in the
/// features and label of one row, with every row count unchanged (substitution), because
/// the coordinator learns the exact total row count. `NOTES.md` gives the accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpConfig {
    /// L2 bound to which each row's gradient, intercept included, is clipped.
    pub clip_norm: f64,
    /// Ratio of the Gaussian noise's standard deviation to the bound it protects:
    /// `clip_norm` for a batch's summed gradient, `loss_clip` for a provider's summed loss.
    pub noise_multiplier: f64,
    /// Bound to which each row's loss is clipped before the noised loss sum is released.
    pub loss_clip: f64,
    /// δ at which the zCDP guarantee is converted to (ε, δ)-DP: the agreement's δ.
    pub delta: f64,
}

impl Default for DpConfig {
    fn default() -> Self {
        Self {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            loss_clip: 5.0,
            delta: 1e-6,
        }
    }
}

impl DpConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`TrainingError::InvalidConfig`] for a bound or multiplier that is not finite and
    /// above 0, or a δ outside (0, 1).
    pub fn validate(&self) -> Result<(), TrainingError> {
        check_positive("dp.clip_norm", self.clip_norm)?;
        check_positive("dp.noise_multiplier", self.noise_multiplier)?;
        check_positive("dp.loss_clip", self.loss_clip)?;
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(invalid(
                "dp.delta",
                format!("is {}; set it above 0 and below 1", self.delta),
            ));
        }
        Ok(())
    }
}

fn check_positive(field: &'static str, value: f64) -> Result<(), TrainingError> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(invalid(
        field,
        format!("is {value}; set a finite number above 0"),
    ))
}

fn invalid(field: &'static str, reason: String) -> TrainingError {
    TrainingError::InvalidConfig { field, reason }
}
