//! Logistic regression: the model, a numerically stable loss and its gradient.
//!
//! The objective is scikit-learn's `LogisticRegression(C)` divided by `C * n`:
//!
//! ```text
//!   L(w, b) = (1/n) Σ_i [softplus(z_i) - y_i z_i] + (1 / (2 C n)) |w|²,   z_i = x_i·w + b
//! ```
//!
//! so the minimiser is the same as scikit-learn's, with the intercept `b` unpenalised.

use serde::{Deserialize, Serialize};

/// A logistic-regression model: one weight per feature and an intercept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Weights, in the order of the feature columns.
    pub weights: Vec<f64>,
    /// Intercept, not penalised.
    pub intercept: f64,
}

impl Model {
    /// Returns the all-zero model over `features` features.
    pub fn zeros(features: usize) -> Self {
        Self {
            weights: vec![0.0; features],
            intercept: 0.0,
        }
    }

    /// Returns the logit `x·w + b` of one row.
    pub fn logit(&self, row: &[f64]) -> f64 {
        dot(&self.weights, row) + self.intercept
    }

    /// Returns the logits of row-major `rows` with `self.weights.len()` columns.
    pub fn logits(&self, rows: &[f64]) -> Vec<f64> {
        let k = self.weights.len();
        if k == 0 {
            return Vec::new();
        }
        rows.chunks_exact(k).map(|row| self.logit(row)).collect()
    }

    /// Returns true when every weight and the intercept are finite.
    pub fn is_finite(&self) -> bool {
        self.intercept.is_finite() && self.weights.iter().all(|w| w.is_finite())
    }
}

/// Returns `Σ a_i b_i`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Returns `1 / (1 + e^-z)` without overflow for any finite or infinite `z`.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Returns `log(1 + e^z)`, finite for every finite `z` (a logit of 800 gives 800).
pub fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Returns `log σ(z) = -softplus(-z)`, the stable log-sigmoid.
pub fn log_sigmoid(z: f64) -> f64 {
    -softplus(-z)
}

/// Returns the loss of one row with label `y` in {0, 1} and logit `z`:
/// `softplus(z) - y z`, which equals `-y log σ(z) - (1 - y) log(1 - σ(z))`.
pub fn row_loss(z: f64, y: f64) -> f64 {
    softplus(z) - y * z
}

/// L2 penalty strength per row for scikit-learn's `C` on `n` training rows: `1 / (C n)`.
pub fn l2_per_row(c: f64, n: usize) -> f64 {
    if n == 0 { 0.0 } else { 1.0 / (c * n as f64) }
}

/// Returns the objective `L(w, b)` above over row-major `rows` and `labels`, with penalty
/// `lambda` per row (see [`l2_per_row`]).
pub fn objective(model: &Model, rows: &[f64], labels: &[f64], lambda: f64) -> f64 {
    let n = labels.len();
    if n == 0 {
        return 0.0;
    }
    let data: f64 = model
        .logits(rows)
        .iter()
        .zip(labels)
        .map(|(&z, &y)| row_loss(z, y))
        .sum();
    data / n as f64 + 0.5 * lambda * dot(&model.weights, &model.weights)
}

/// Returns the gradient of [`objective`]: weights first, then the intercept.
pub fn gradient(model: &Model, rows: &[f64], labels: &[f64], lambda: f64) -> (Vec<f64>, f64) {
    let k = model.weights.len();
    let n = labels.len();
    let mut grad = vec![0.0; k];
    let mut grad_b = 0.0;
    if n == 0 {
        return (grad, grad_b);
    }
    for (row, &y) in rows.chunks_exact(k.max(1)).zip(labels) {
        let residual = sigmoid(model.logit(row)) - y;
        for (g, x) in grad.iter_mut().zip(row) {
            *g += residual * x;
        }
        grad_b += residual;
    }
    let scale = 1.0 / n as f64;
    for (g, w) in grad.iter_mut().zip(&model.weights) {
        *g = *g * scale + lambda * w;
    }
    (grad, grad_b * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_finite_at_extreme_logits() {
        assert_eq!(row_loss(800.0, 1.0), 0.0);
        assert_eq!(row_loss(800.0, 0.0), 800.0);
        assert_eq!(row_loss(-800.0, 1.0), 800.0);
        assert!(log_sigmoid(-800.0).is_finite());
        assert_eq!(sigmoid(-800.0), 0.0);
        assert_eq!(sigmoid(800.0), 1.0);
    }

    #[test]
    fn loss_matches_the_textbook_formula_at_moderate_logits() {
        for z in [-5.0, -0.3, 0.0, 0.7, 4.0] {
            for y in [0.0, 1.0] {
                let p = 1.0 / (1.0 + f64::exp(-z));
                let textbook = -y * p.ln() - (1.0 - y) * (1.0 - p).ln();
                assert!((row_loss(z, y) - textbook).abs() < 1e-12, "z={z} y={y}");
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let rows = [0.5, -1.0, 2.0, 0.1, -0.7, 0.3];
        let labels = [1.0, 0.0, 1.0];
        let model = Model {
            weights: vec![0.2, -0.4],
            intercept: 0.1,
        };
        let lambda = 0.05;
        let (grad, grad_b) = gradient(&model, &rows, &labels, lambda);
        let h = 1e-6;
        for (j, analytic) in grad.iter().enumerate() {
            let mut up = model.clone();
            up.weights[j] += h;
            let mut down = model.clone();
            down.weights[j] -= h;
            let numeric = (objective(&up, &rows, &labels, lambda)
                - objective(&down, &rows, &labels, lambda))
                / (2.0 * h);
            assert!((numeric - analytic).abs() < 1e-8);
        }
        let mut up = model.clone();
        up.intercept += h;
        let mut down = model.clone();
        down.intercept -= h;
        let numeric = (objective(&up, &rows, &labels, lambda)
            - objective(&down, &rows, &labels, lambda))
            / (2.0 * h);
        assert!((numeric - grad_b).abs() < 1e-8);
    }
}
