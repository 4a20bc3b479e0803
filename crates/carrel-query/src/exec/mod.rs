//! Execution of a checked query: DataFusion runs the scan and WHERE filter, then each
//! person's rows are bounded and every group's exact totals are computed here, so that
//! the noise layer receives values of known sensitivity.
//!
//! # Guarantee
//!
//! Privacy unit: the description's `privacy_unit` column. Neighbouring tables differ by
//! all rows of one person. After bounding, one person contributes at most
//! `k = max_rows_per_unit` rows, each in one group, with aggregated values clamped to
//! `[lower, upper]`. So over the whole grouped result (all groups together) the L1
//! distance between neighbours is at most `k` for COUNT(*), COUNT(column) and the number
//! of distinct persons per group, and at most `k × max(|lower|, |upper|)` for SUM.
//! [`execute`] releases only noisy values (see the noise module); the exact values are
//! available only through [`execute_without_noise_insecure`].

mod bound;
mod exact;
mod group;
mod rows;

use serde::{Serialize, Serializer};

use crate::noise::NoisePlan;
use crate::plan::CheckedQuery;
use crate::plan::spec::{AggregateFunction, QuerySpec, Source};
use crate::release::Release;
use crate::{QueryError, Value};
use bound::Bounder;
use group::Grouper;

pub use exact::{ExactFloat, ExactSum};
pub(crate) use group::Total;

/// Runs `checked` and releases its groups with differentially private noise, spending
/// [`CheckedQuery::cost`]`(epsilon)`.
///
/// The noise measurements are built before any data is read, so an invalid `epsilon` is
/// rejected without touching the table.
///
/// # Errors
///
/// [`QueryError::Rejected`] for an invalid `epsilon`; [`QueryError::Io`] if the table's
/// file is missing; [`QueryError::Execution`] if DataFusion fails to read it;
/// [`QueryError::Noise`] if OpenDP fails.
pub async fn execute(checked: &CheckedQuery, epsilon: f64) -> Result<Release, QueryError> {
    let plan = NoisePlan::new(checked, epsilon)?;
    let exact = aggregate(checked).await?;
    let release = plan.mechanisms()?.release(&exact)?;
    tracing::debug!(sql = %checked.sql, epsilon, rows = release.rows.len(), "query released");
    Ok(release)
}

/// Runs `checked` and returns every group's exact values, without noise or suppression.
///
/// # Security
///
/// The result is not differentially private: it shows exact counts and sums, groups of
/// any size and how many groups there are. Use it only for tests and for showing the data
/// holder the exact result beside a release. Never send it to a consumer.
///
/// # Errors
///
/// [`QueryError::Io`] if the table's file is missing; [`QueryError::Execution`] if
/// DataFusion fails to read it.
pub async fn execute_without_noise_insecure(
    checked: &CheckedQuery,
) -> Result<ExactResult, QueryError> {
    aggregate(checked).await
}

async fn aggregate(checked: &CheckedQuery) -> Result<ExactResult, QueryError> {
    // DataFusion lists a missing file as an empty table; fail instead of releasing nothing.
    std::fs::metadata(&checked.parquet).map_err(|source| QueryError::Io {
        action: "open",
        path: checked.parquet.clone(),
        source,
    })?;
    // NOTE: bounding and grouping run row by row on one thread and keep every kept row
    // in memory, hundreds of times slower than DataFusion's own GROUP BY at 10M rows.
    let mut bounder = Bounder::new(checked.privacy.max_rows_per_unit);
    rows::scan_rows(checked, |unit, row| bounder.push(unit, row)).await?;

    let mut grouper = Grouper::new(&checked.spec);
    for rows in bounder.into_persons() {
        grouper.add_person(rows);
    }
    let groups = grouper
        .finish()
        .into_iter()
        .map(|(keys, totals)| ExactGroup {
            cells: cells(&checked.spec, &keys, &totals.totals),
            keys,
            persons: totals.persons,
            rows: totals.rows,
            totals: totals.totals,
        })
        .collect();
    Ok(ExactResult {
        columns: checked
            .spec
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .collect(),
        groups,
    })
}

fn cells(spec: &QuerySpec, keys: &[Value], totals: &[Total]) -> Vec<ExactCell> {
    let count = |index: usize| match &totals[index] {
        Total::Count(n) => *n,
        Total::Sum(_) => 0,
    };
    let sum = |index: usize| match &totals[index] {
        Total::Sum(s) => s.clone(),
        Total::Count(n) => ExactSum::Integer(i128::from(*n)),
    };
    spec.outputs
        .iter()
        .map(|output| match output.source {
            Source::Group(i) => ExactCell::Key(keys[i].clone()),
            Source::Aggregate(a) => {
                let aggregate = &spec.aggregates[a];
                let p = &aggregate.primitives;
                match aggregate.function {
                    AggregateFunction::Count => ExactCell::Count(count(p[0])),
                    AggregateFunction::Sum => ExactCell::Sum(sum(p[0])),
                    AggregateFunction::Avg => ExactCell::Avg {
                        sum: sum(p[0]),
                        count: count(p[1]),
                    },
                }
            }
        })
        .collect()
}

/// Exact, un-noised per-group values of a query, from
/// [`execute_without_noise_insecure`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ExactResult {
    /// Output column names, in SELECT order.
    pub columns: Vec<String>,
    /// Every group with at least one bounded row, sorted by group key. A query without
    /// GROUP BY has exactly one group.
    pub groups: Vec<ExactGroup>,
}

/// Exact values of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ExactGroup {
    /// GROUP BY values, in GROUP BY order.
    pub keys: Vec<Value>,
    /// Distinct persons with a bounded row in the group.
    pub persons: u64,
    /// Bounded rows in the group.
    pub rows: u64,
    /// Output cells, in SELECT order.
    pub cells: Vec<ExactCell>,
    /// Exact total of each primitive measurement.
    #[serde(skip)]
    pub(crate) totals: Vec<Total>,
}

/// One exact output cell.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExactCell {
    /// A group key.
    Key(Value),
    /// COUNT(*) or COUNT(column) after bounding.
    Count(u64),
    /// SUM of clamped values after bounding.
    Sum(ExactSum),
    /// AVG as its exact sum and count of non-missing values.
    Avg {
        /// Sum of clamped values.
        sum: ExactSum,
        /// Number of non-missing values.
        count: u64,
    },
}

impl ExactCell {
    /// Converts the cell to a value: sums to the nearest `f64`, averages to the nearest
    /// `f64` to sum / count, or `Null` when nothing was averaged.
    pub fn to_value(&self) -> Value {
        match self {
            ExactCell::Key(v) => v.clone(),
            ExactCell::Count(n) => Value::Integer(i64::try_from(*n).unwrap_or(i64::MAX)),
            ExactCell::Sum(s) => Value::float(s.to_f64()),
            ExactCell::Avg { count: 0, .. } => Value::Null,
            ExactCell::Avg { sum, count } => Value::float(sum.to_f64() / *count as f64),
        }
    }
}

/// Serialized as [`ExactCell::to_value`], except that integer sums keep every digit.
impl Serialize for ExactCell {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ExactCell::Sum(sum) => sum.serialize(serializer),
            other => other.to_value().serialize(serializer),
        }
    }
}
