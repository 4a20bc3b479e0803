//! Evaluation of scores against 0/1 labels: AUC, KS, accuracy, log loss and ROC points.
//!
//! These run where the labels are, on plain scores. AUC and KS depend only on the order of
//! the scores, so logits give the same values as probabilities, except where the sigmoid
//! rounds distinct large logits (above about 37) to the same probability. Equal scores form
//! one threshold group, which makes every result independent of the input order: a positive
//! and a negative with the same score count 1/2 towards the AUC.
//!
//! Every function validates its input and returns a [`MetricsError`] instead of panicking:
//! scores must be finite, labels must be 0 or 1, and AUC, KS and the ROC curve need at
//! least one positive and one negative.

use serde::{Deserialize, Serialize};

use crate::logistic::{row_loss, sigmoid};

/// Probability above which [`Evaluation`] predicts class 1.
///
/// A row with probability exactly 0.5 is predicted 0, as scikit-learn's `predict` does for
/// a decision value of 0.
pub const DECISION_THRESHOLD: f64 = 0.5;

/// Metrics of a model's logits on labelled rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Number of rows evaluated.
    pub rows: usize,
    /// Number of rows with label 1.
    pub positives: usize,
    /// Area under the ROC curve, ties counted 1/2.
    pub auc: f64,
    /// Kolmogorov–Smirnov statistic between the scores of positives and negatives.
    pub ks: f64,
    /// Share of rows whose prediction at [`DECISION_THRESHOLD`] equals the label.
    pub accuracy: f64,
    /// Mean cross-entropy `softplus(z) - y z` over the rows, in nats.
    pub log_loss: f64,
}

impl Evaluation {
    /// Evaluates `logits` against `labels`.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Empty`], [`MetricsError::LengthMismatch`],
    /// [`MetricsError::NonFiniteScore`] for a NaN or infinite logit,
    /// [`MetricsError::InvalidLabel`], and [`MetricsError::SingleClass`] because the AUC
    /// needs both classes.
    pub fn from_logits(logits: &[f64], labels: &[f64]) -> Result<Self, MetricsError> {
        let groups = ScoreGroups::new(logits, labels)?;
        let probabilities: Vec<f64> = logits.iter().map(|&z| sigmoid(z)).collect();
        let loss: f64 = logits
            .iter()
            .zip(labels)
            .map(|(&z, &y)| row_loss(z, y))
            .sum();
        Ok(Self {
            rows: labels.len(),
            positives: groups.positives as usize,
            auc: groups.auc()?,
            ks: groups.ks()?,
            accuracy: accuracy(&probabilities, labels, DECISION_THRESHOLD)?,
            log_loss: loss / labels.len() as f64,
        })
    }
}

/// Returns the exact area under the ROC curve of `scores` against `labels`.
///
/// This is the Mann–Whitney statistic: the share of (positive, negative) pairs in which
/// the positive scores higher, with ties counted 1/2. Sorting makes it O(n log n), and the
/// pair counts are summed as integers, so the only rounding is the final division.
///
/// # Errors
///
/// [`MetricsError::Empty`], [`MetricsError::LengthMismatch`],
/// [`MetricsError::NonFiniteScore`], [`MetricsError::InvalidLabel`], and
/// [`MetricsError::SingleClass`] when the labels lack positives or negatives.
pub fn auc(scores: &[f64], labels: &[f64]) -> Result<f64, MetricsError> {
    ScoreGroups::new(scores, labels)?.auc()
}

/// Returns the Kolmogorov–Smirnov statistic: the maximum over thresholds of
/// `|F_pos(t) - F_neg(t)|`, where `F` is the share of a class with score at most `t`.
///
/// Thresholds are the distinct scores, so rows with equal scores move together.
///
/// # Errors
///
/// The same as [`auc`].
pub fn ks(scores: &[f64], labels: &[f64]) -> Result<f64, MetricsError> {
    ScoreGroups::new(scores, labels)?.ks()
}

/// Returns the ROC curve as `(false positive rate, true positive rate)` points.
///
/// The curve starts at (0, 0) and adds one point per distinct score, from the highest
/// down, so it ends at (1, 1).
///
/// # Errors
///
/// The same as [`auc`].
pub fn roc_curve(scores: &[f64], labels: &[f64]) -> Result<Vec<(f64, f64)>, MetricsError> {
    ScoreGroups::new(scores, labels)?.roc_curve()
}

/// Returns the share of rows where `probability > threshold` agrees with a label of 1.
///
/// # Errors
///
/// [`MetricsError::Empty`], [`MetricsError::LengthMismatch`],
/// [`MetricsError::InvalidThreshold`] unless `threshold` is in [0, 1],
/// [`MetricsError::ProbabilityOutOfRange`] for a probability that is not in [0, 1] (NaN
/// included), and [`MetricsError::InvalidLabel`].
pub fn accuracy(
    probabilities: &[f64],
    labels: &[f64],
    threshold: f64,
) -> Result<f64, MetricsError> {
    check_lengths(probabilities.len(), labels.len())?;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(MetricsError::InvalidThreshold { threshold });
    }
    if let Some(index) = probabilities.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(MetricsError::ProbabilityOutOfRange {
            index,
            value: probabilities[index],
        });
    }
    check_labels(labels)?;

    let correct = probabilities
        .iter()
        .zip(labels)
        .filter(|&(&p, &y)| (p > threshold) == (y == 1.0))
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

/// Error of an evaluation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// There are no rows to evaluate.
    #[error("no rows to evaluate; pass at least one score and label")]
    Empty,
    /// Scores and labels have different lengths.
    #[error("{scores} scores but {labels} labels; pass one score per label")]
    LengthMismatch {
        /// Number of scores.
        scores: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A score is NaN or infinite.
    #[error("score {index} is {value}; expected a finite number, check the model's weights")]
    NonFiniteScore {
        /// Position of the score.
        index: usize,
        /// The score.
        value: f64,
    },
    /// A probability is outside [0, 1] or NaN.
    #[error("probability {index} is {value}; expected a number from 0 to 1")]
    ProbabilityOutOfRange {
        /// Position of the probability.
        index: usize,
        /// The probability.
        value: f64,
    },
    /// The decision threshold is outside [0, 1] or NaN.
    #[error("threshold {threshold} is invalid; expected a number from 0 to 1")]
    InvalidThreshold {
        /// The threshold.
        threshold: f64,
    },
    /// A label is not 0 or 1.
    #[error("label {index} is {value}; expected 0 or 1")]
    InvalidLabel {
        /// Position of the label.
        index: usize,
        /// The label.
        value: f64,
    },
    /// The labels hold only one class, so AUC, KS and ROC are undefined.
    #[error(
        "AUC, KS and ROC are undefined for labels with {positives} positives and \
         {negatives} negatives; evaluate on rows that contain both classes"
    )]
    SingleClass {
        /// Number of labels equal to 1.
        positives: u64,
        /// Number of labels equal to 0.
        negatives: u64,
    },
}

/// Counts of positives and negatives in one group of equal scores.
#[derive(Debug, Clone, Copy)]
struct Group {
    positives: u64,
    negatives: u64,
}

/// Validated scores grouped by value, in increasing order of score.
struct ScoreGroups {
    groups: Vec<Group>,
    positives: u64,
    negatives: u64,
}

impl ScoreGroups {
    fn new(scores: &[f64], labels: &[f64]) -> Result<Self, MetricsError> {
        check_lengths(scores.len(), labels.len())?;
        if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
            return Err(MetricsError::NonFiniteScore {
                index,
                value: scores[index],
            });
        }
        check_labels(labels)?;

        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));

        // `total_cmp` puts -0.0 just before 0.0, and `==` joins them into one group.
        let mut groups: Vec<Group> = Vec::new();
        let mut previous = None;
        for &i in &order {
            let positive = labels[i] == 1.0;
            if previous != Some(scores[i]) {
                groups.push(Group {
                    positives: 0,
                    negatives: 0,
                });
                previous = Some(scores[i]);
            }
            // A group was pushed above on the first row, so `last_mut` is `Some`.
            if let Some(group) = groups.last_mut() {
                group.positives += u64::from(positive);
                group.negatives += u64::from(!positive);
            }
        }
        let positives = groups.iter().map(|g| g.positives).sum();
        let negatives = groups.iter().map(|g| g.negatives).sum();
        Ok(Self {
            groups,
            positives,
            negatives,
        })
    }

    fn require_both_classes(&self) -> Result<(), MetricsError> {
        if self.positives == 0 || self.negatives == 0 {
            return Err(MetricsError::SingleClass {
                positives: self.positives,
                negatives: self.negatives,
            });
        }
        Ok(())
    }

    fn auc(&self) -> Result<f64, MetricsError> {
        self.require_both_classes()?;
        // Twice the Mann–Whitney U: each positive counts 2 per negative below it and 1 per
        // negative with the same score.
        let mut negatives_below: u128 = 0;
        let mut twice_u: u128 = 0;
        for group in &self.groups {
            let positives = u128::from(group.positives);
            let negatives = u128::from(group.negatives);
            twice_u += positives * (2 * negatives_below + negatives);
            negatives_below += negatives;
        }
        let pairs = u128::from(self.positives) * u128::from(self.negatives);
        Ok(twice_u as f64 / (2 * pairs) as f64)
    }

    fn ks(&self) -> Result<f64, MetricsError> {
        self.require_both_classes()?;
        let mut positives_at_most = 0;
        let mut negatives_at_most = 0;
        let mut max_gap: f64 = 0.0;
        for group in &self.groups {
            positives_at_most += group.positives;
            negatives_at_most += group.negatives;
            let gap = positives_at_most as f64 / self.positives as f64
                - negatives_at_most as f64 / self.negatives as f64;
            max_gap = max_gap.max(gap.abs());
        }
        Ok(max_gap)
    }

    fn roc_curve(&self) -> Result<Vec<(f64, f64)>, MetricsError> {
        self.require_both_classes()?;
        let mut points = Vec::with_capacity(self.groups.len() + 1);
        points.push((0.0, 0.0));
        let mut true_positives = 0;
        let mut false_positives = 0;
        for group in self.groups.iter().rev() {
            true_positives += group.positives;
            false_positives += group.negatives;
            points.push((
                false_positives as f64 / self.negatives as f64,
                true_positives as f64 / self.positives as f64,
            ));
        }
        Ok(points)
    }
}

fn check_lengths(scores: usize, labels: usize) -> Result<(), MetricsError> {
    if scores != labels {
        return Err(MetricsError::LengthMismatch { scores, labels });
    }
    if labels == 0 {
        return Err(MetricsError::Empty);
    }
    Ok(())
}

fn check_labels(labels: &[f64]) -> Result<(), MetricsError> {
    match labels.iter().position(|&y| y != 0.0 && y != 1.0) {
        Some(index) => Err(MetricsError::InvalidLabel {
            index,
            value: labels[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the AUC by comparing every pair, the definition the sorted version must match.
    fn auc_by_pairs(scores: &[f64], labels: &[f64]) -> f64 {
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for (i, &yi) in labels.iter().enumerate() {
            for (j, &yj) in labels.iter().enumerate() {
                if yi == 1.0 && yj == 0.0 {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        wins / pairs
    }

    /// Returns a fixed pseudo-random sequence in [0, 1) with many repeated values.
    fn coarse_sequence(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                ((state >> 33) % 17) as f64 / 17.0
            })
            .collect()
    }

    #[test]
    fn auc_of_perfect_and_reversed_order() {
        let labels = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(auc(&[0.1, 0.2, 0.3, 0.4], &labels), Ok(1.0));
        assert_eq!(auc(&[0.4, 0.3, 0.2, 0.1], &labels), Ok(0.0));
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(auc(&[0.5, 0.5], &[0.0, 1.0]), Ok(0.5));
        // Pairs (positive, negative): (0.5, 0.2) win, (0.5, 0.5) tie, (0.9, 0.2) win,
        // (0.9, 0.5) win, so U = 3.5 of 4.
        assert_eq!(auc(&[0.2, 0.5, 0.5, 0.9], &[0.0, 0.0, 1.0, 1.0]), Ok(0.875));
    }

    #[test]
    fn auc_matches_pairwise_definition() {
        for seed in 1..20 {
            let scores = coarse_sequence(60, seed);
            let labels: Vec<f64> = coarse_sequence(60, seed + 100)
                .iter()
                .map(|&u| f64::from(u8::from(u > 0.4)))
                .collect();
            let expected = auc_by_pairs(&scores, &labels);
            let found = auc(&scores, &labels).unwrap();
            assert!((found - expected).abs() < 1e-15, "seed {seed}");
        }
    }

    #[test]
    fn auc_ignores_input_order() {
        let scores = [0.3, 0.1, 0.3, 0.7, 0.1, 0.9];
        let labels = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let forward = auc(&scores, &labels).unwrap();
        let mut reversed_scores = scores;
        let mut reversed_labels = labels;
        reversed_scores.reverse();
        reversed_labels.reverse();
        assert_eq!(auc(&reversed_scores, &reversed_labels).unwrap(), forward);
    }

    #[test]
    fn signed_zeros_form_one_group() {
        assert_eq!(auc(&[-0.0, 0.0], &[1.0, 0.0]), Ok(0.5));
        assert_eq!(roc_curve(&[-0.0, 0.0], &[1.0, 0.0]).unwrap().len(), 2);
    }

    #[test]
    fn ks_of_separated_and_mixed_scores() {
        assert_eq!(ks(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]), Ok(1.0));
        // At threshold 0.2 both negatives and one of two positives are at or below it.
        assert_eq!(ks(&[0.1, 0.2, 0.15, 0.9], &[0.0, 0.0, 1.0, 1.0]), Ok(0.5));
        // Equal scores move together, so no threshold separates these rows.
        assert_eq!(ks(&[0.5, 0.5, 0.5, 0.5], &[0.0, 0.0, 1.0, 1.0]), Ok(0.0));
    }

    #[test]
    fn ks_equals_max_tpr_minus_fpr_gap() {
        for seed in 1..10 {
            let scores = coarse_sequence(80, seed);
            let labels: Vec<f64> = coarse_sequence(80, seed + 50)
                .iter()
                .map(|&u| f64::from(u8::from(u > 0.5)))
                .collect();
            let curve = roc_curve(&scores, &labels).unwrap();
            let expected = curve.iter().map(|(f, t)| (t - f).abs()).fold(0.0, f64::max);
            let found = ks(&scores, &labels).unwrap();
            assert!((found - expected).abs() < 1e-15, "seed {seed}");
        }
    }

    #[test]
    fn roc_has_one_point_per_distinct_score() {
        let curve = roc_curve(&[0.9, 0.5, 0.5, 0.1], &[1.0, 1.0, 0.0, 0.0]).unwrap();
        assert_eq!(curve, [(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
    }

    #[test]
    fn roc_area_equals_auc() {
        let scores = coarse_sequence(200, 7);
        let labels: Vec<f64> = coarse_sequence(200, 8)
            .iter()
            .map(|&u| f64::from(u8::from(u > 0.3)))
            .collect();
        let curve = roc_curve(&scores, &labels).unwrap();
        let trapezoids: f64 = curve
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        let expected = auc(&scores, &labels).unwrap();
        assert!((trapezoids - expected).abs() < 1e-12);
        assert_eq!(curve.first(), Some(&(0.0, 0.0)));
        assert_eq!(curve.last(), Some(&(1.0, 1.0)));
    }

    #[test]
    fn accuracy_uses_strict_threshold() {
        let probabilities = [0.2, 0.5, 0.51, 0.9];
        let labels = [0.0, 1.0, 1.0, 1.0];
        // Probability 0.5 predicts 0, so the row labelled 1 at 0.5 counts as wrong.
        assert_eq!(accuracy(&probabilities, &labels, 0.5), Ok(0.75));
        assert_eq!(accuracy(&probabilities, &labels, 0.95), Ok(0.25));
    }

    #[test]
    fn accuracy_rejects_bad_probabilities_and_thresholds() {
        let labels = [0.0, 1.0];
        assert_eq!(
            accuracy(&[0.2, 1.5], &labels, 0.5),
            Err(MetricsError::ProbabilityOutOfRange {
                index: 1,
                value: 1.5
            })
        );
        assert!(matches!(
            accuracy(&[f64::NAN, 0.5], &labels, 0.5),
            Err(MetricsError::ProbabilityOutOfRange { index: 0, .. })
        ));
        assert!(matches!(
            accuracy(&[0.2, 0.5], &labels, f64::NAN),
            Err(MetricsError::InvalidThreshold { .. })
        ));
    }

    #[test]
    fn accuracy_accepts_single_class() {
        assert_eq!(accuracy(&[0.1, 0.2], &[0.0, 0.0], 0.5), Ok(1.0));
    }

    #[test]
    fn empty_and_mismatched_input_rejected() {
        assert_eq!(auc(&[], &[]), Err(MetricsError::Empty));
        assert_eq!(accuracy(&[], &[], 0.5), Err(MetricsError::Empty));
        assert_eq!(
            ks(&[0.1], &[0.0, 1.0]),
            Err(MetricsError::LengthMismatch {
                scores: 1,
                labels: 2
            })
        );
    }

    #[test]
    fn non_finite_score_rejected_naming_index() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let error = auc(&[0.1, 0.2, value], &[0.0, 1.0, 1.0]).unwrap_err();
            assert!(
                matches!(error, MetricsError::NonFiniteScore { index: 2, .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("score 2"));
        }
    }

    #[test]
    fn labels_other_than_zero_or_one_rejected() {
        assert_eq!(
            roc_curve(&[0.1, 0.2], &[0.0, 2.0]),
            Err(MetricsError::InvalidLabel {
                index: 1,
                value: 2.0
            })
        );
    }

    #[test]
    fn single_class_rejected_as_undefined() {
        let error = auc(&[0.1, 0.2], &[1.0, 1.0]).unwrap_err();
        assert_eq!(
            error,
            MetricsError::SingleClass {
                positives: 2,
                negatives: 0
            }
        );
        assert!(error.to_string().contains("undefined"));
        assert!(ks(&[0.1, 0.2], &[0.0, 0.0]).is_err());
        assert!(Evaluation::from_logits(&[0.1], &[0.0]).is_err());
    }

    #[test]
    fn evaluation_from_logits() {
        let logits = [-2.0, -0.5, 0.0, 1.0, 3.0];
        let labels = [0.0, 1.0, 0.0, 1.0, 1.0];
        let evaluation = Evaluation::from_logits(&logits, &labels).unwrap();
        assert_eq!(evaluation.rows, 5);
        assert_eq!(evaluation.positives, 3);
        assert_eq!(evaluation.auc, auc(&logits, &labels).unwrap());
        assert_eq!(evaluation.ks, ks(&logits, &labels).unwrap());
        // Logit 0 gives probability 0.5, which predicts 0.
        assert_eq!(evaluation.accuracy, 0.8);
        let expected_loss = logits
            .iter()
            .zip(&labels)
            .map(|(&z, &y)| {
                let p = 1.0 / (1.0 + f64::exp(-z));
                -y * p.ln() - (1.0 - y) * (1.0 - p).ln()
            })
            .sum::<f64>()
            / 5.0;
        assert!((evaluation.log_loss - expected_loss).abs() < 1e-12);
    }

    #[test]
    fn evaluation_log_loss_finite_at_large_logits() {
        let evaluation = Evaluation::from_logits(&[-800.0, 800.0], &[1.0, 0.0]).unwrap();
        assert_eq!(evaluation.log_loss, 800.0);
        assert_eq!(evaluation.auc, 0.0);
    }

    #[test]
    fn evaluation_serialises_to_json() {
        let evaluation = Evaluation::from_logits(&[-1.0, 1.0], &[0.0, 1.0]).unwrap();
        let json = serde_json::to_string(&evaluation).unwrap();
        assert!(json.contains("\"auc\":1.0"), "{json}");
        let back: Evaluation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, evaluation);
    }
}
