//! The coordinator's state between rounds, and its exact serialisation.
//!
//! Every real computed during training (the model, the losses, ρ spent) is saved as a decimal
//! string in the shortest form that reads back to the same bits, and read back with the
//! correctly rounding `str::parse`. A resumed run then continues bit for bit in any serde
//! format. serde_json's default parser, by contrast, can read a 17-digit number one unit in
//! the last place off.
//!
//! NOTE: the settings inside the state stay JSON numbers. serde_json 1.0 without its
//! `float_roundtrip` feature reads a number exactly when it has at most 15 significant digits
//! and a decimal exponent within ±22, as settings written by hand do. A setting computed to
//! 17 digits may read back one unit off, and the settings digest then rejects the round.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::coordinator::check_parties;
use super::{TrainingConfig, TrainingError};
use crate::logistic::Model;

/// The coordinator's state between rounds, serialisable so that a restarted node continues
/// where it stopped.
///
/// Save it after [`Coordinator::start_round`](super::Coordinator::start_round) as well as
/// after [`Coordinator::finish_round`](super::Coordinator::finish_round).
/// A state saved only after the finish could let a restarted node run a round twice, and
/// with DP each run of a round spends privacy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingState {
    pub(super) job_id: String,
    pub(super) config: TrainingConfig,
    pub(super) parties: usize,
    pub(super) features: usize,
    #[serde(with = "exact_model")]
    pub(super) model: Model,
    pub(super) total_rows: Option<u64>,
    pub(super) sessions_opened: u64,
    pub(super) rounds_started: u32,
    pub(super) loss_history: Vec<RoundLoss>,
    #[serde(with = "exact_option")]
    pub(super) best_loss: Option<f64>,
    pub(super) rounds_without_improvement: u32,
    pub(super) stopped_early: bool,
    #[serde(with = "exact_option")]
    pub(super) rho_spent: Option<f64>,
}

/// The training loss learnt in one round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundLoss {
    /// Round number, from 1.
    pub round: u32,
    /// The pooled objective `L(w, b)` of the model the round started from: the mean row loss
    /// over all providers' rows plus `(1 / (2 C N)) |w|²`. Under DP the mean row loss is
    /// clipped per row and noised.
    #[serde(with = "exact_f64")]
    pub loss: f64,
}

impl TrainingState {
    /// Returns the run's identifier, which prefixes every session id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Returns the settings.
    pub fn config(&self) -> &TrainingConfig {
        &self.config
    }

    /// Returns the number of providers.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// Returns the number of features.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Returns the global model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Returns the total row count, once the census has finished.
    pub fn total_rows(&self) -> Option<u64> {
        self.total_rows
    }

    /// Returns the number of training rounds started, failed ones included.
    pub fn rounds_started(&self) -> u32 {
        self.rounds_started
    }

    /// Returns the training loss of every round that finished, in order.
    pub fn loss_history(&self) -> &[RoundLoss] {
        &self.loss_history
    }

    /// Returns whether early stopping ended training.
    pub fn stopped_early(&self) -> bool {
        self.stopped_early
    }

    /// Returns ρ spent by the rounds started so far, or `None` without DP.
    pub fn rho_spent(&self) -> Option<f64> {
        self.rho_spent
    }

    pub(super) fn validate(&self) -> Result<(), TrainingError> {
        self.config.validate()?;
        check_parties(self.parties)?;
        let model_fits = self.features > 0 && self.model.weights.len() == self.features;
        if !model_fits || !self.model.is_finite() {
            return Err(invalid_state(
                "the model is empty, the wrong size or not finite",
            ));
        }
        self.validate_progress()
    }

    fn validate_progress(&self) -> Result<(), TrainingError> {
        if self.rounds_started > self.config.rounds {
            return Err(invalid_state(
                "more rounds were started than the settings allow",
            ));
        }
        if self.rounds_started > 0 && self.total_rows.is_none() {
            return Err(invalid_state(
                "training rounds were started before the census",
            ));
        }
        if self.loss_history.len() > self.rounds_started as usize {
            return Err(invalid_state(
                "more losses are recorded than rounds were started",
            ));
        }

        let losses_finite = self.loss_history.iter().all(|entry| entry.loss.is_finite());
        if !losses_finite || self.best_loss.is_some_and(|loss| !loss.is_finite()) {
            return Err(invalid_state("a recorded loss is not finite"));
        }

        let rho_consistent = match (&self.config.dp, self.rho_spent) {
            (Some(_), Some(rho)) => rho.is_finite() && rho >= 0.0,
            (None, None) => true,
            _ => false,
        };
        if !rho_consistent {
            return Err(invalid_state(
                "the privacy spent does not match the DP settings",
            ));
        }
        Ok(())
    }
}

fn invalid_state(reason: &str) -> TrainingError {
    TrainingError::InvalidState {
        reason: reason.to_owned(),
    }
}

/// A real saved as its shortest round-trip decimal string.
#[derive(Debug, Clone, Copy)]
struct Exact(f64);

impl Serialize for Exact {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `Debug` prints the shortest decimal that parses back to the same bits.
        serializer.collect_str(&format_args!("{:?}", self.0))
    }
}

impl<'de> Deserialize<'de> for Exact {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map(Exact)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a decimal number")))
    }
}

mod exact_f64 {
    use super::*;

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        Exact(*value).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Exact::deserialize(deserializer).map(|exact| exact.0)
    }
}

mod exact_option {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        value.map(Exact).serialize(serializer)
    }

    pub fn deserialize<'de, D>(deserializer: D) -> Result<Option<f64>, D::Error>
    where
        D: Deserializer<'de>,
    {
        Option::<Exact>::deserialize(deserializer).map(|exact| exact.map(|exact| exact.0))
    }
}

mod exact_model {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct ExactModel {
        weights: Vec<Exact>,
        intercept: Exact,
    }

    pub fn serialize<S: Serializer>(model: &Model, serializer: S) -> Result<S::Ok, S::Error> {
        let exact = ExactModel {
            weights: model.weights.iter().copied().map(Exact).collect(),
            intercept: Exact(model.intercept),
        };
        exact.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Model, D::Error> {
        let exact = ExactModel::deserialize(deserializer)?;
        Ok(Model {
            weights: exact.weights.into_iter().map(|weight| weight.0).collect(),
            intercept: exact.intercept.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_reals_survive_json_bit_for_bit() {
        let values = [
            0.1 + 0.2,
            1.0 / 3.0,
            f64::from_bits(4594336569217737984),
            f64::MIN_POSITIVE,
            5e-324,
            -0.0,
            f64::MAX,
            0.6931471827873708,
        ];
        for value in values {
            let json = serde_json::to_string(&Exact(value)).unwrap();
            let back: Exact = serde_json::from_str(&json).unwrap();
            assert_eq!(back.0.to_bits(), value.to_bits(), "{json}");
        }
    }

    #[test]
    fn exact_real_rejects_text() {
        let error = serde_json::from_str::<Exact>(r#""abc""#).unwrap_err();
        assert!(
            error.to_string().contains("not a decimal number"),
            "{error}"
        );
    }
}
