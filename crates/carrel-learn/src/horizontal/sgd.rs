//! Local minibatch SGD of one provider in one round, with optional DP-SGD.
//!
//! The provider minimises `(1/n) Σ row_loss + (λ/2) |w|²` over its own `n` rows, with
//! `λ = l2_per_row(C, N)` for the total row count `N`. Each epoch shuffles the rows with
//! ChaCha20 seeded from the training seed, the round and the provider index, and cuts the
//! shuffled order into batches, so the same inputs give the same model bit for bit.

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::privacy::{gradient_noise, loss_noise, opendp_failed};
use super::{DpConfig, PartyData, TrainingError};
use crate::logistic::{Model, dot, row_loss, sigmoid};

/// Domain label of the hash from the training seed to a shuffle seed.
const SHUFFLE_DOMAIN: &[u8] = b"carrel-learn-v1/horizontal/shuffle";

/// Settings of one provider's local training in one round.
pub(super) struct LocalSgd<'a> {
    pub data: &'a PartyData,
    pub epochs: u32,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// L2 strength per row, `1 / (C N)`.
    pub lambda: f64,
    pub dp: Option<&'a DpConfig>,
}

impl LocalSgd<'_> {
    /// Trains from `start` and returns the local model. Under DP, each batch's summed
    /// gradient is clipped per row and noised before the step.
    pub fn train(
        &self,
        start: &Model,
        seed: u64,
        round: u32,
        party: usize,
    ) -> Result<Model, TrainingError> {
        let noise = self.dp.map(gradient_noise).transpose()?;
        let clip_norm = self.dp.map(|dp| dp.clip_norm);
        let mut rng = ChaCha20Rng::from_seed(shuffle_seed(seed, round, party));
        let mut model = start.clone();
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        let features = self.data.features();
        let mut gradient = vec![0.0; features + 1];

        for _ in 0..self.epochs {
            shuffle(&mut order, &mut rng);
            for batch in order.chunks(self.batch_size) {
                self.sum_gradients(&model, batch, clip_norm, &mut gradient);
                if let Some(noise) = &noise {
                    gradient = noise
                        .invoke(&gradient)
                        .map_err(|error| opendp_failed("sample gradient noise", &error))?;
                }
                self.step(&mut model, &gradient, batch.len());
            }
        }
        Ok(model)
    }

    /// Writes the sum over `batch` of each row's gradient of `row_loss`, weights first and
    /// the intercept last, each clipped to L2 norm `clip_norm` when given.
    fn sum_gradients(
        &self,
        model: &Model,
        batch: &[usize],
        clip_norm: Option<f64>,
        gradient: &mut [f64],
    ) {
        gradient.fill(0.0);
        let (weights, intercept) = gradient.split_at_mut(self.data.features());
        for &index in batch {
            let row = self.data.row(index);
            let mut residual = sigmoid(model.logit(row)) - self.data.labels()[index];
            if let Some(clip_norm) = clip_norm {
                // The row's gradient is residual · (x, 1), of norm |residual| · √(|x|² + 1).
                let norm = residual.abs() * (dot(row, row) + 1.0).sqrt();
                if norm > clip_norm {
                    residual *= clip_norm / norm;
                }
            }
            for (g, x) in weights.iter_mut().zip(row) {
                *g += residual * x;
            }
            intercept[0] += residual;
        }
    }

    /// Takes one step along the batch mean of `gradient` plus the L2 penalty's gradient.
    fn step(&self, model: &mut Model, gradient: &[f64], batch_len: usize) {
        let scale = 1.0 / batch_len as f64;
        let rate = self.learning_rate;
        let (weights, intercept) = gradient.split_at(self.data.features());
        for (w, g) in model.weights.iter_mut().zip(weights) {
            *w -= rate * (g * scale + self.lambda * *w);
        }
        model.intercept -= rate * intercept[0] * scale;
    }
}

/// Returns the provider's mean loss of `model` over its rows, 0 without rows, or NaN when a
/// row's loss is NaN, for the caller to reject before anything is released.
///
/// Under DP, each row's loss is clipped to `[0, loss_clip]` and the sum is noised before the
/// mean is taken. The loss uses the stable `row_loss`, so a logit of 800 gives a finite loss.
pub(super) fn mean_loss(
    model: &Model,
    data: &PartyData,
    dp: Option<&DpConfig>,
) -> Result<f64, TrainingError> {
    if data.is_empty() {
        return Ok(0.0);
    }
    let mut sum = 0.0;
    for (z, &y) in model.logits(data.rows()).into_iter().zip(data.labels()) {
        let loss = row_loss(z, y);
        // NaN arises from an infinite logit. `f64::min` would turn it into the clip, so it
        // is caught here.
        if loss.is_nan() {
            return Ok(f64::NAN);
        }
        sum += match dp {
            Some(dp) => loss.min(dp.loss_clip),
            None => loss,
        };
    }

    if let Some(dp) = dp {
        sum = loss_noise(dp)?
            .invoke(&sum)
            .map_err(|error| opendp_failed("sample loss noise", &error))?;
    }
    Ok(sum / data.len() as f64)
}

/// Hashes the domain label, the training seed, the round and the provider index into the
/// seed of the provider's shuffle for that round.
fn shuffle_seed(seed: u64, round: u32, party: usize) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(SHUFFLE_DOMAIN);
    hasher.update(seed.to_be_bytes());
    hasher.update(round.to_be_bytes());
    hasher.update((party as u64).to_be_bytes());
    hasher.finalize().into()
}

/// Shuffles `order` uniformly with the Fisher-Yates algorithm.
fn shuffle(order: &mut [usize], rng: &mut ChaCha20Rng) {
    for last in (1..order.len()).rev() {
        let pick = uniform_below(rng, last as u64 + 1) as usize;
        order.swap(last, pick);
    }
}

/// Draws an integer uniformly from `0..bound` by rejecting the words above the largest
/// multiple of `bound`.
fn uniform_below(rng: &mut ChaCha20Rng, bound: u64) -> u64 {
    let zone = u64::MAX - u64::MAX % bound;
    loop {
        let word = rng.next_u64();
        if word < zone {
            return word % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_fixed_by_its_seed() {
        let mut first: Vec<usize> = (0..50).collect();
        let mut second = first.clone();
        shuffle(
            &mut first,
            &mut ChaCha20Rng::from_seed(shuffle_seed(7, 1, 0)),
        );
        shuffle(
            &mut second,
            &mut ChaCha20Rng::from_seed(shuffle_seed(7, 1, 0)),
        );
        assert_eq!(first, second);

        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(first, sorted);
    }

    #[test]
    fn shuffle_seed_differs_by_round_and_party() {
        let base = shuffle_seed(7, 1, 0);
        assert_ne!(base, shuffle_seed(8, 1, 0));
        assert_ne!(base, shuffle_seed(7, 2, 0));
        assert_ne!(base, shuffle_seed(7, 1, 1));
    }

    #[test]
    fn full_batch_step_matches_logistic_gradient() {
        let rows = vec![0.5, -1.0, 2.0, 0.1, -0.7, 0.3];
        let labels = vec![1.0, 0.0, 1.0];
        let data = PartyData::new(2, rows.clone(), labels.clone()).unwrap();
        let start = Model {
            weights: vec![0.2, -0.4],
            intercept: 0.1,
        };
        let sgd = LocalSgd {
            data: &data,
            epochs: 1,
            batch_size: 3,
            learning_rate: 0.5,
            lambda: 0.05,
            dp: None,
        };
        let trained = sgd.train(&start, 0, 1, 0).unwrap();

        let (grad, grad_b) = crate::logistic::gradient(&start, &rows, &labels, 0.05);
        for ((found, initial), g) in trained.weights.iter().zip(&start.weights).zip(&grad) {
            let expected = initial - 0.5 * g;
            assert!((found - expected).abs() < 1e-15, "{found} vs {expected}");
        }
        assert!((trained.intercept - (start.intercept - 0.5 * grad_b)).abs() < 1e-15);
    }

    #[test]
    fn clipping_bounds_each_row_gradient() {
        let data = PartyData::new(1, vec![100.0, -3.0], vec![1.0, 0.0]).unwrap();
        let sgd = LocalSgd {
            data: &data,
            epochs: 1,
            batch_size: 2,
            learning_rate: 1.0,
            lambda: 0.0,
            dp: None,
        };
        let mut gradient = vec![0.0; 2];
        sgd.sum_gradients(&Model::zeros(1), &[0], Some(1.0), &mut gradient);
        let norm = dot(&gradient, &gradient).sqrt();
        assert!((norm - 1.0).abs() < 1e-12, "norm {norm}");

        sgd.sum_gradients(&Model::zeros(1), &[1], Some(10.0), &mut gradient);
        assert_eq!(gradient, vec![-1.5, 0.5]);
    }

    #[test]
    fn mean_loss_is_finite_at_logit_800() {
        let data = PartyData::new(1, vec![800.0, 800.0, 0.0], vec![0.0, 1.0, 1.0]).unwrap();
        let model = Model {
            weights: vec![1.0],
            intercept: 0.0,
        };
        let loss = mean_loss(&model, &data, None).unwrap();
        let expected = (800.0 + 0.0 + std::f64::consts::LN_2) / 3.0;
        assert!(loss.is_finite());
        assert!((loss - expected).abs() < 1e-12, "loss {loss}");
    }
}
