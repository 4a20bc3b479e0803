//! Newton's method on pooled rows: the reference every federated model is held to.
//!
//! [`train`] minimises [`logistic::objective`](crate::logistic::objective) with
//! `lambda = l2_per_row(C, n)`, whose minimiser is that of scikit-learn's
//! `LogisticRegression(C)`. Each iteration solves `H d = -g` by Cholesky, with
//!
//! ```text
//!   H = (1/n) X̃ᵀ W X̃ + lambda diag(1, ..., 1, 0),   X̃ = [X 1],   W = diag(σ(z_i) σ(-z_i))
//! ```
//!
//! so the intercept, the last coordinate, is not penalised. A backtracking line search on
//! the objective picks the step length, and the iteration stops once the largest absolute
//! gradient coordinate is below the tolerance (default 1e-10) or after the iteration limit
//! (default 100).
//!
//! With `lambda > 0` and both classes present the objective is strictly convex and has a
//! finite minimiser, so the result depends only on the rows and `C`. The arithmetic runs
//! in a fixed order on one thread, so equal inputs give bit-identical models on the same
//! build and platform.

use crate::data::FeatureTable;
use crate::logistic::{Model, gradient, l2_per_row, objective, sigmoid};

/// Settings of [`train`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewtonOptions {
    /// Inverse regularisation strength, as scikit-learn's `C`; finite and greater than 0.
    pub c: f64,
    /// Iteration stops when every gradient coordinate is below this in absolute value.
    pub tolerance: f64,
    /// Maximum number of Newton steps.
    pub max_iterations: usize,
}

impl Default for NewtonOptions {
    /// Returns `C = 1`, tolerance 1e-10 and at most 100 iterations.
    fn default() -> Self {
        Self {
            c: 1.0,
            tolerance: 1e-10,
            max_iterations: 100,
        }
    }
}

/// A model trained by [`train`] and how the iteration ended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewtonFit {
    /// The trained model.
    pub model: Model,
    /// Number of Newton steps taken.
    pub iterations: usize,
    /// Largest absolute gradient coordinate at `model`.
    pub gradient_max_norm: f64,
    /// Objective at `model`.
    pub objective: f64,
    /// True when `gradient_max_norm` is below the tolerance. False when the iteration
    /// limit was reached or no step along the Newton direction lowered the objective.
    pub converged: bool,
}

/// Trains a model on row-major `rows` with `features` columns and 0/1 `labels` by
/// Newton's method.
///
/// # Errors
///
/// [`PooledError::InvalidC`], [`PooledError::InvalidTolerance`],
/// [`PooledError::NoFeatures`], [`PooledError::NoRows`], [`PooledError::ShapeMismatch`],
/// [`PooledError::NonFiniteValue`], [`PooledError::InvalidLabel`] and
/// [`PooledError::SingleClass`] for invalid input, and
/// [`PooledError::HessianNotPositiveDefinite`] when the Hessian cannot be factorised even
/// after a diagonal shift.
pub fn train(
    rows: &[f64],
    labels: &[f64],
    features: usize,
    options: &NewtonOptions,
) -> Result<NewtonFit, PooledError> {
    validate(rows, labels, features, options)?;
    let lambda = l2_per_row(options.c, labels.len());
    let mut model = Model::zeros(features);
    let mut value = objective(&model, rows, labels, lambda);
    let mut iterations = 0;
    loop {
        let (grad_w, grad_b) = gradient(&model, rows, labels, lambda);
        let mut grad = grad_w;
        grad.push(grad_b);
        let gradient_max_norm = grad.iter().fold(0.0, |max, g| g.abs().max(max));
        let converged = gradient_max_norm < options.tolerance;
        if converged || iterations == options.max_iterations {
            return Ok(NewtonFit {
                model,
                iterations,
                gradient_max_norm,
                objective: value,
                converged,
            });
        }

        let hessian = hessian(&model, rows, lambda);
        let negative_grad: Vec<f64> = grad.iter().map(|g| -g).collect();
        let direction = solve_shifted(hessian, &negative_grad).ok_or(
            PooledError::HessianNotPositiveDefinite {
                iteration: iterations,
            },
        )?;

        let Some((next, next_value)) =
            line_search(&model, &direction, &grad, value, rows, labels, lambda)
        else {
            return Ok(NewtonFit {
                model,
                iterations,
                gradient_max_norm,
                objective: value,
                converged: false,
            });
        };
        model = next;
        value = next_value;
        iterations += 1;
    }
}

/// Trains a model on every row of `table` (see [`train`]).
///
/// # Errors
///
/// [`PooledError::MissingLabels`] when the table has no labels, and the errors of [`train`].
pub fn train_table(
    table: &FeatureTable,
    options: &NewtonOptions,
) -> Result<NewtonFit, PooledError> {
    let labels = table.labels.as_deref().ok_or(PooledError::MissingLabels)?;
    train(&table.rows, labels, table.features(), options)
}

/// Error of pooled training.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PooledError {
    /// `C` is zero, negative or not finite.
    #[error("C = {c} is invalid; expected a finite number greater than 0 (scikit-learn's C)")]
    InvalidC {
        /// The rejected value.
        c: f64,
    },
    /// The tolerance is negative or not finite.
    #[error("tolerance {tolerance} is invalid; expected a finite number of at least 0")]
    InvalidTolerance {
        /// The rejected value.
        tolerance: f64,
    },
    /// The model would have no feature.
    #[error("training needs at least one feature column")]
    NoFeatures,
    /// There are no rows.
    #[error("training needs at least one row")]
    NoRows,
    /// The number of values is not rows × features.
    #[error(
        "{values} values do not form {labels} rows of {features} features; pass one row per \
         label"
    )]
    ShapeMismatch {
        /// Number of feature values.
        values: usize,
        /// Number of labels.
        labels: usize,
        /// Number of features.
        features: usize,
    },
    /// A feature value is NaN or infinite.
    #[error("row {row}, feature {feature} is not finite; load the rows under declared bounds")]
    NonFiniteValue {
        /// Row index.
        row: usize,
        /// Feature index.
        feature: usize,
    },
    /// A label is not 0 or 1.
    #[error("label {index} is {value}; expected 0 or 1")]
    InvalidLabel {
        /// Row index.
        index: usize,
        /// The label.
        value: f64,
    },
    /// Every label is the same, so the intercept has no finite optimum.
    #[error(
        "the labels have {positives} positives and {negatives} negatives; training needs \
         both classes"
    )]
    SingleClass {
        /// Number of labels equal to 1.
        positives: usize,
        /// Number of labels equal to 0.
        negatives: usize,
    },
    /// The table has no labels.
    #[error("the table has no labels; load it with a label column")]
    MissingLabels,
    /// Cholesky factorisation failed even after shifting the diagonal.
    #[error(
        "the Hessian at iteration {iteration} is not positive definite even after a \
         diagonal shift; check the features for huge values or raise the penalty (lower C)"
    )]
    HessianNotPositiveDefinite {
        /// Newton step at which factorisation failed.
        iteration: usize,
    },
}

/// Sufficient-decrease constant of the Armijo condition.
const ARMIJO: f64 = 1e-4;

/// Maximum number of times the line search halves the step.
const MAX_HALVINGS: usize = 60;

/// Relative increase of the objective that the line search treats as rounding.
///
/// Close to the optimum, a Newton step lowers the objective by less than the rounding
/// error of its sum over all rows. A strict Armijo test would reject that step and stop
/// the iteration before the gradient is below the tolerance.
const OBJECTIVE_ROUNDING: f64 = 1e-12;

/// Number of diagonal shifts tried when the Hessian does not factorise.
const MAX_SHIFTS: usize = 8;

fn validate(
    rows: &[f64],
    labels: &[f64],
    features: usize,
    options: &NewtonOptions,
) -> Result<(), PooledError> {
    if !(options.c.is_finite() && options.c > 0.0) {
        return Err(PooledError::InvalidC { c: options.c });
    }
    if !(options.tolerance.is_finite() && options.tolerance >= 0.0) {
        return Err(PooledError::InvalidTolerance {
            tolerance: options.tolerance,
        });
    }
    if features == 0 {
        return Err(PooledError::NoFeatures);
    }
    if labels.is_empty() {
        return Err(PooledError::NoRows);
    }
    if rows.len() != labels.len() * features {
        return Err(PooledError::ShapeMismatch {
            values: rows.len(),
            labels: labels.len(),
            features,
        });
    }
    if let Some(index) = rows.iter().position(|x| !x.is_finite()) {
        return Err(PooledError::NonFiniteValue {
            row: index / features,
            feature: index % features,
        });
    }
    if let Some(index) = labels.iter().position(|&y| y != 0.0 && y != 1.0) {
        return Err(PooledError::InvalidLabel {
            index,
            value: labels[index],
        });
    }
    let positives = labels.iter().filter(|&&y| y == 1.0).count();
    if positives == 0 || positives == labels.len() {
        return Err(PooledError::SingleClass {
            positives,
            negatives: labels.len() - positives,
        });
    }
    Ok(())
}

/// Returns the Hessian of the objective as a dense row-major `(k + 1) × (k + 1)` matrix,
/// the intercept last.
fn hessian(model: &Model, rows: &[f64], lambda: f64) -> Vec<f64> {
    let k = model.weights.len();
    let d = k + 1;
    let mut h = vec![0.0; d * d];
    let mut n = 0usize;
    for row in rows.chunks_exact(k) {
        let z = model.logit(row);
        // σ(z) σ(-z) equals σ(z)(1 - σ(z)) without the cancellation of 1 - σ(z) at large z.
        let weight = sigmoid(z) * sigmoid(-z);
        for i in 0..d {
            let xi = if i < k { row[i] } else { 1.0 } * weight;
            for j in 0..=i {
                let xj = if j < k { row[j] } else { 1.0 };
                h[i * d + j] += xi * xj;
            }
        }
        n += 1;
    }

    let scale = 1.0 / n as f64;
    for i in 0..d {
        for j in 0..=i {
            h[i * d + j] *= scale;
            h[j * d + i] = h[i * d + j];
        }
    }
    for i in 0..k {
        h[i * d + i] += lambda;
    }
    h
}

/// Solves `(a + shift I) x = b` for symmetric `a`, with `shift = 0` when `a` factorises and
/// a growing multiple of its largest diagonal entry otherwise.
///
/// With the shift the solution is still a descent direction, only a shorter one.
fn solve_shifted(a: Vec<f64>, b: &[f64]) -> Option<Vec<f64>> {
    let d = b.len();
    let max_diagonal = (0..d)
        .map(|i| a[i * d + i].abs())
        .fold(f64::MIN_POSITIVE, f64::max);
    let mut shift = 0.0;
    for _ in 0..=MAX_SHIFTS {
        let mut shifted = a.clone();
        for i in 0..d {
            shifted[i * d + i] += shift;
        }
        if let Some(x) = cholesky_solve(shifted, b) {
            return Some(x);
        }
        shift = if shift == 0.0 {
            1e-10 * max_diagonal
        } else {
            shift * 100.0
        };
    }
    None
}

/// Solves `a x = b` for symmetric positive definite `a` (row-major, `d × d`) by Cholesky
/// factorisation `a = L Lᵀ`, or returns `None` when a pivot is not positive.
fn cholesky_solve(mut a: Vec<f64>, b: &[f64]) -> Option<Vec<f64>> {
    let d = b.len();

    // Overwrite the lower triangle of `a` with L, column by column.
    for j in 0..d {
        let pivot = a[j * d + j] - (0..j).map(|m| a[j * d + m] * a[j * d + m]).sum::<f64>();
        if !(pivot > 0.0 && pivot.is_finite()) {
            return None;
        }
        let diagonal = pivot.sqrt();
        a[j * d + j] = diagonal;
        for i in j + 1..d {
            let dot: f64 = (0..j).map(|m| a[i * d + m] * a[j * d + m]).sum();
            a[i * d + j] = (a[i * d + j] - dot) / diagonal;
        }
    }

    // Forward substitution L y = b, then back substitution Lᵀ x = y.
    let mut y = vec![0.0; d];
    for i in 0..d {
        let dot: f64 = (0..i).map(|m| a[i * d + m] * y[m]).sum();
        y[i] = (b[i] - dot) / a[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let dot: f64 = (i + 1..d).map(|m| a[m * d + i] * x[m]).sum();
        x[i] = (y[i] - dot) / a[i * d + i];
    }
    Some(x)
}

/// Halves the step along `direction` from 1 until the Armijo condition holds, and returns
/// the new model and its objective, or `None` when no step qualifies.
fn line_search(
    model: &Model,
    direction: &[f64],
    grad: &[f64],
    value: f64,
    rows: &[f64],
    labels: &[f64],
    lambda: f64,
) -> Option<(Model, f64)> {
    let slope: f64 = grad.iter().zip(direction).map(|(g, d)| g * d).sum();
    // A NaN or non-negative slope means `direction` does not descend.
    if slope.is_nan() || slope >= 0.0 {
        return None;
    }
    let slack = OBJECTIVE_ROUNDING * value.abs().max(1.0);
    let k = model.weights.len();
    let mut t = 1.0;
    for _ in 0..MAX_HALVINGS {
        let candidate = Model {
            weights: (0..k)
                .map(|j| model.weights[j] + t * direction[j])
                .collect(),
            intercept: model.intercept + t * direction[k],
        };
        let candidate_value = objective(&candidate, rows, labels, lambda);
        if candidate_value <= value + ARMIJO * t * slope + slack {
            return Some((candidate, candidate_value));
        }
        t *= 0.5;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::data::{LoadOptions, read_csv, read_test_ids};
    use crate::metrics::auc;

    fn max_abs_gradient(model: &Model, rows: &[f64], labels: &[f64], lambda: f64) -> f64 {
        let (grad_w, grad_b) = gradient(model, rows, labels, lambda);
        grad_w.iter().fold(grad_b.abs(), |max, g| g.abs().max(max))
    }

    /// Returns 40 rows of 3 features that no hyperplane separates, with labels that depend
    /// on the features.
    fn mixed_rows() -> (Vec<f64>, Vec<f64>) {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let t = f64::from(i);
            let x = [(t * 0.37).sin() * 2.0, (t * 0.11).cos(), (t % 7.0) - 3.0];
            rows.extend_from_slice(&x);
            let score = 1.5 * x[0] - x[1] + 0.3 * x[2] + (t * 1.7).sin() * 2.0;
            labels.push(f64::from(u8::from(score > 0.2)));
        }
        (rows, labels)
    }

    #[test]
    fn symmetric_data_matches_scalar_root() {
        // a rows (x = 1, y = 1), b rows (x = 1, y = 0), and the mirror image at x = -1.
        // By symmetry the intercept is 0, and the weight solves σ(w) - a/(a+b) + λw = 0.
        let (a, b) = (7, 3);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (x, ones, zeros) in [(1.0, a, b), (-1.0, b, a)] {
            for _ in 0..ones {
                rows.push(x);
                labels.push(1.0);
            }
            for _ in 0..zeros {
                rows.push(x);
                labels.push(0.0);
            }
        }
        let options = NewtonOptions {
            c: 0.5,
            ..NewtonOptions::default()
        };
        let fit = train(&rows, &labels, 1, &options).unwrap();

        let lambda = l2_per_row(0.5, labels.len());
        let share = f64::from(a) / f64::from(a + b);
        let (mut lo, mut hi) = (0.0, 10.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if sigmoid(mid) - share + lambda * mid > 0.0 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        assert!(fit.converged);
        assert!(
            (fit.model.weights[0] - lo).abs() < 1e-9,
            "{} vs {lo}",
            fit.model.weights[0]
        );
        assert!(fit.model.intercept.abs() < 1e-10, "{}", fit.model.intercept);
    }

    #[test]
    fn optimum_has_zero_gradient() {
        let (rows, labels) = mixed_rows();
        let fit = train(&rows, &labels, 3, &NewtonOptions::default()).unwrap();
        let lambda = l2_per_row(1.0, labels.len());
        assert!(fit.converged);
        assert!(fit.iterations < 20, "{} iterations", fit.iterations);
        assert!(fit.gradient_max_norm < 1e-10);
        assert!(max_abs_gradient(&fit.model, &rows, &labels, lambda) < 1e-10);
        assert_eq!(fit.objective, objective(&fit.model, &rows, &labels, lambda));
    }

    #[test]
    fn optimum_beats_nearby_models() {
        let (rows, labels) = mixed_rows();
        let fit = train(&rows, &labels, 3, &NewtonOptions::default()).unwrap();
        let lambda = l2_per_row(1.0, labels.len());
        for j in 0..4 {
            for delta in [-1e-3, 1e-3] {
                let mut nearby = fit.model.clone();
                if j < 3 {
                    nearby.weights[j] += delta;
                } else {
                    nearby.intercept += delta;
                }
                let value = objective(&nearby, &rows, &labels, lambda);
                assert!(value > fit.objective, "coordinate {j}, delta {delta}");
            }
        }
    }

    #[test]
    fn intercept_is_not_penalised() {
        // One feature that is 0 on every row: its weight stays 0 and the intercept alone
        // fits the base rate, log(3/1), whatever C is.
        let rows = [0.0; 8];
        let labels = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        for c in [1e-3, 1.0, 1e3] {
            let options = NewtonOptions {
                c,
                ..NewtonOptions::default()
            };
            let fit = train(&rows, &labels, 1, &options).unwrap();
            assert_eq!(fit.model.weights, [0.0]);
            assert!((fit.model.intercept - 3f64.ln()).abs() < 1e-10, "C = {c}");
        }
    }

    #[test]
    fn separable_data_gives_finite_model() {
        let rows = [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0];
        let labels = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let fit = train(&rows, &labels, 1, &NewtonOptions::default()).unwrap();
        assert!(fit.converged);
        assert!(fit.model.is_finite());
        assert!(fit.model.weights[0] > 0.0);
    }

    #[test]
    fn training_is_deterministic() {
        let (rows, labels) = mixed_rows();
        let first = train(&rows, &labels, 3, &NewtonOptions::default()).unwrap();
        let second = train(&rows, &labels, 3, &NewtonOptions::default()).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            first.model.weights[0].to_bits(),
            second.model.weights[0].to_bits()
        );
    }

    #[test]
    fn iteration_limit_reported_as_not_converged() {
        let (rows, labels) = mixed_rows();
        let options = NewtonOptions {
            max_iterations: 1,
            ..NewtonOptions::default()
        };
        let fit = train(&rows, &labels, 3, &options).unwrap();
        assert_eq!(fit.iterations, 1);
        assert!(!fit.converged);
        assert!(fit.gradient_max_norm >= options.tolerance);
    }

    #[test]
    fn invalid_input_rejected() {
        let options = NewtonOptions::default();
        let rows = [1.0, 2.0];
        let labels = [0.0, 1.0];
        assert_eq!(
            train(
                &rows,
                &labels,
                1,
                &NewtonOptions {
                    c: 0.0,
                    ..options.clone()
                }
            ),
            Err(PooledError::InvalidC { c: 0.0 })
        );
        assert!(matches!(
            train(
                &rows,
                &labels,
                1,
                &NewtonOptions {
                    tolerance: f64::NAN,
                    ..options.clone()
                }
            ),
            Err(PooledError::InvalidTolerance { .. })
        ));
        assert_eq!(
            train(&rows, &labels, 0, &options),
            Err(PooledError::NoFeatures)
        );
        assert_eq!(train(&[], &[], 1, &options), Err(PooledError::NoRows));
        assert!(matches!(
            train(&rows, &labels, 2, &options),
            Err(PooledError::ShapeMismatch { .. })
        ));
        assert_eq!(
            train(&[1.0, f64::INFINITY], &labels, 1, &options),
            Err(PooledError::NonFiniteValue { row: 1, feature: 0 })
        );
        assert_eq!(
            train(&rows, &[0.0, 0.5], 1, &options),
            Err(PooledError::InvalidLabel {
                index: 1,
                value: 0.5
            })
        );
        assert_eq!(
            train(&rows, &[1.0, 1.0], 1, &options),
            Err(PooledError::SingleClass {
                positives: 2,
                negatives: 0
            })
        );
    }

    #[test]
    fn cholesky_solves_and_rejects_indefinite() {
        let a = vec![4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(a, &[2.0, 1.0]).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-15, "{x:?}");
        assert!(x[1].abs() < 1e-15, "{x:?}");
        assert_eq!(cholesky_solve(vec![1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]), None);
        // A singular matrix factorises after a small diagonal shift.
        assert!(solve_shifted(vec![1.0, 1.0, 1.0, 1.0], &[1.0, 1.0]).is_some());
    }

    fn fate_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fate")
    }

    /// Trains on the training rows of breast hetero (guest and host joined on id) for one
    /// split seed and returns the AUC on the test rows.
    fn breast_test_auc(seed: &str) -> f64 {
        let dir = fate_dir();
        let guest = read_csv(
            dir.join("breast_hetero_guest.csv"),
            &LoadOptions::new("id").with_label("y"),
        )
        .unwrap()
        .table;
        let host = read_csv(dir.join("breast_hetero_host.csv"), &LoadOptions::new("id"))
            .unwrap()
            .table
            .with_column_prefix("host_");
        let joined = guest.join(&host).unwrap();
        assert_eq!(joined.features(), 30);

        let test_ids: BTreeSet<String> =
            read_test_ids(dir.join("splits/breast_hetero_splits.csv"), seed).unwrap();
        let (train_rows, test_rows) = joined.split_by_test_ids(&test_ids).unwrap();
        assert_eq!((train_rows.len(), test_rows.len()), (455, 114));

        let fit = train_table(&train_rows, &NewtonOptions::default()).unwrap();
        assert!(fit.converged, "{seed}: {fit:?}");
        let logits = fit.model.logits(&test_rows.rows);
        auc(&logits, test_rows.require_labels().unwrap()).unwrap()
    }

    #[test]
    fn breast_matches_scikit_learn_auc() {
        // Reference AUCs of scikit-learn's LogisticRegression(C=1.0) in data/fate/NOTICE.md.
        let seed0 = breast_test_auc("seed0");
        assert!((seed0 - 1.0).abs() < 1e-4, "seed0 AUC {seed0}");
        let seed8 = breast_test_auc("seed8");
        assert!((seed8 - 0.9864).abs() < 1e-3, "seed8 AUC {seed8}");
    }
}
