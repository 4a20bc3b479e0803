//! The released result of a query: noisy groups and what their noise was.

use serde::{Deserialize, Serialize};

use crate::{AggregateFunction, Value};

/// A differentially private query result, safe to send to the consumer.
///
/// Only groups whose noisy group size reached the threshold appear. The
/// release does not report how many groups were suppressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Release {
    /// Output column names, in SELECT order.
    pub columns: Vec<String>,
    /// Released groups: group keys and noisy aggregates, in the query's ORDER BY order
    /// (by group key where the query gives none).
    pub rows: Vec<Vec<Value>>,
    /// Noise of each aggregate column, in SELECT order.
    pub aggregates: Vec<AggregateNoise>,
    /// Epsilon spent.
    pub epsilon: f64,
    /// Delta spent, on group suppression.
    pub delta: f64,
    /// Noisy measurements that shared epsilon equally.
    pub measurements: usize,
    /// Noisy distinct-person count a group needed to be released.
    pub release_threshold: i64,
}

/// Noise and accuracy of one released aggregate column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AggregateNoise {
    /// The output column.
    pub column: String,
    /// The aggregate function.
    pub function: AggregateFunction,
    /// The aggregated table column; `None` for COUNT(*).
    pub source_column: Option<String>,
    /// Scale `b` of the Laplace noise: of the count for COUNT, of the sum for SUM and AVG.
    pub noise_scale: f64,
    /// For AVG, the noise scale of its count of values.
    pub count_noise_scale: Option<f64>,
    /// Half-width of a 95% confidence interval around the exact value, in the column's
    /// unit. Close to `noise_scale × ln 20` for large scales; for sums it includes the
    /// rounding to the grid. `None` for AVG, whose error depends on the group's count.
    pub ci95_half_width: Option<f64>,
    /// Every released value of the column is a multiple of this.
    pub grid: f64,
}
