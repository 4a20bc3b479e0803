//! The public parameters of one vertical training, which both parties and the dealer have.

use serde::{Deserialize, Serialize};

use super::VerticalError;
use super::prg::Stream;

/// Breakpoints of the piecewise-linear sigmoid and softplus, in logit units.
///
/// With these seven points the linear interpolation of the sigmoid is within 0.03 of it
/// everywhere, and training with it reaches the test AUC of exact logistic regression on
/// the credit and breast data (see `NOTES.md`).
pub const BREAKPOINTS: [f64; 7] = [-6.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0];

/// Stopping rule on the training loss, which only the guest learns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs without enough improvement before training stops.
    pub patience: u32,
    /// Smallest relative fall of the epoch's loss that counts as improvement.
    pub min_relative_improvement: f64,
}

/// Public parameters of a vertical training: sizes, schedule and optimiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Aligned training rows, the same rows in the same order at both parties.
    pub rows: usize,
    /// Feature columns of the guest, without the intercept.
    pub guest_features: usize,
    /// Feature columns of the host.
    pub host_features: usize,
    /// Largest number of passes over the rows.
    pub epochs: u32,
    /// Rows per step. The last step of an epoch may be smaller.
    pub batch_size: usize,
    /// Step size of the gradient steps.
    pub learning_rate: f64,
    /// Nesterov momentum, from 0 (plain gradient steps) to below 1.
    pub momentum: f64,
    /// Inverse L2 strength, as scikit-learn's `C`. The intercept is not penalised.
    pub c: f64,
    /// Public seed of the order in which rows enter the steps.
    pub schedule_seed: u64,
    /// Optional stopping rule on the training loss.
    pub early_stopping: Option<EarlyStopping>,
}

impl Plan {
    /// Returns a plan with the default optimiser for `rows` aligned rows.
    ///
    /// The batch contains a sixteenth of the rows, between 32 and 2,048, so that one epoch has
    /// about sixteen steps on small and large data alike.
    pub fn with_defaults(rows: usize, guest_features: usize, host_features: usize) -> Self {
        Self {
            rows,
            guest_features,
            host_features,
            epochs: 10,
            batch_size: (rows / 8).clamp(32, 4096),
            learning_rate: 0.2,
            momentum: 0.9,
            c: 1.0,
            schedule_seed: 0,
            early_stopping: None,
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`VerticalError::InvalidPlan`] naming the field, its value and the accepted range.
    pub fn check(&self) -> Result<(), VerticalError> {
        let bad = |field: &'static str, value: String, expected: &'static str| {
            Err(VerticalError::InvalidPlan {
                field,
                value,
                expected,
            })
        };
        if self.rows == 0 {
            return bad("rows", "0".into(), "at least 1 aligned row");
        }
        if self.rows > 10_000_000 {
            return bad("rows", self.rows.to_string(), "at most 10,000,000");
        }
        if self.guest_features > 10_000 || self.host_features > 10_000 {
            return bad(
                "features",
                format!("{} + {}", self.guest_features, self.host_features),
                "at most 10,000 per party",
            );
        }
        if self.host_features == 0 {
            return bad("host_features", "0".into(), "at least 1");
        }
        if self.epochs == 0 || self.epochs > 10_000 {
            return bad("epochs", self.epochs.to_string(), "from 1 to 10,000");
        }
        if self.batch_size == 0 || self.batch_size > 1_000_000 {
            return bad(
                "batch_size",
                self.batch_size.to_string(),
                "from 1 to 1,000,000",
            );
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 10.0)
        {
            return bad(
                "learning_rate",
                self.learning_rate.to_string(),
                "above 0 and at most 10",
            );
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad("momentum", self.momentum.to_string(), "from 0 to below 1");
        }
        if !(self.c.is_finite() && self.c > 0.0) {
            return bad("c", self.c.to_string(), "a finite number above 0");
        }
        if let Some(stop) = self.early_stopping {
            if stop.patience == 0 {
                return bad("early_stopping.patience", "0".into(), "at least 1 epoch");
            }
            if !(stop.min_relative_improvement.is_finite()
                && (0.0..1.0).contains(&stop.min_relative_improvement))
            {
                return bad(
                    "early_stopping.min_relative_improvement",
                    stop.min_relative_improvement.to_string(),
                    "from 0 to below 1",
                );
            }
        }
        Ok(())
    }

    /// Columns of the guest's matrix: its features and the intercept's column of ones.
    pub fn guest_columns(&self) -> usize {
        self.guest_features + 1
    }

    /// Columns of `role`'s matrix.
    pub fn columns(&self, role: super::Role) -> usize {
        match role {
            super::Role::Guest => self.guest_columns(),
            super::Role::Host => self.host_features,
        }
    }

    /// L2 strength per row, `1 / (C * rows)`.
    pub fn lambda(&self) -> f64 {
        crate::logistic::l2_per_row(self.c, self.rows)
    }

    /// Steps in one epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.rows.div_ceil(self.batch_size)
    }

    /// Returns the rows of each step of `epoch`, in order: a permutation of all rows drawn
    /// from the schedule seed and the epoch, cut into batches.
    pub fn epoch_batches(&self, epoch: u32) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.rows).collect();
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.schedule_seed.to_be_bytes());
        let mut stream = Stream::open(&seed, u64::from(epoch), "schedule");
        for i in (1..order.len()).rev() {
            let j = (stream.u64s(1)[0] % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Global index of step `index` of `epoch`.
    pub fn step_number(&self, epoch: u32, index: usize) -> u64 {
        u64::from(epoch) * self.steps_per_epoch() as u64 + index as u64
    }
}

/// The piecewise-linear functions evaluated at [`BREAKPOINTS`]: a start value and the
/// change of slope at each breakpoint, so that `f(z) = start + Σ_j slope_change_j ReLU(z - t_j)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Piecewise {
    /// Value below the first breakpoint.
    pub start: f64,
    /// Change of slope at each breakpoint.
    pub slope_changes: Vec<f64>,
}

impl Piecewise {
    /// Interpolates `f` between the breakpoints, with slope `left` before the first and
    /// `right` after the last. The value left of the first breakpoint is `f(t_1)`.
    fn interpolate(f: impl Fn(f64) -> f64, right: f64) -> Self {
        let t = BREAKPOINTS;
        let mut slopes = Vec::with_capacity(t.len() + 1);
        slopes.push(0.0);
        for pair in t.windows(2) {
            slopes.push((f(pair[1]) - f(pair[0])) / (pair[1] - pair[0]));
        }
        slopes.push(right);
        Self {
            start: f(t[0]),
            slope_changes: slopes.windows(2).map(|s| s[1] - s[0]).collect(),
        }
    }

    /// Builds the sigmoid, flat outside the breakpoints.
    pub fn sigmoid() -> Self {
        Self::interpolate(crate::logistic::sigmoid, 0.0)
    }

    /// Builds the softplus `log(1 + e^z)`, flat on the left and with slope 1 on the right.
    pub fn softplus() -> Self {
        Self::interpolate(crate::logistic::softplus, 1.0)
    }

    /// Evaluates the function in floating point.
    pub fn eval(&self, z: f64) -> f64 {
        self.start
            + BREAKPOINTS
                .iter()
                .zip(&self.slope_changes)
                .map(|(t, s)| s * (z - t).max(0.0))
                .sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piecewise_sigmoid_is_close_and_bounded() {
        let sigmoid = Piecewise::sigmoid();
        for i in -400..=400 {
            let z = f64::from(i) / 20.0;
            let exact = crate::logistic::sigmoid(z);
            assert!((sigmoid.eval(z) - exact).abs() < 0.03, "z={z}");
        }
        assert!((sigmoid.eval(1e6) - crate::logistic::sigmoid(6.0)).abs() < 1e-9);
        assert!((sigmoid.eval(-1e6) - crate::logistic::sigmoid(-6.0)).abs() < 1e-9);
        let softplus = Piecewise::softplus();
        assert!((softplus.eval(100.0) - 100.0).abs() < 0.01);
    }

    #[test]
    fn batches_cover_every_row_once() {
        let plan = Plan::with_defaults(1000, 3, 4);
        let batches = plan.epoch_batches(3);
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(batches.len(), plan.steps_per_epoch());
        assert_ne!(plan.epoch_batches(3), plan.epoch_batches(4));
    }
}
