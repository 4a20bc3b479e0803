//! The data-independent description of what an accepted query computes.

use carrel_model::{Bounds, ColumnType};

/// An aggregate function as written in the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AggregateFunction {
    /// `COUNT(*)` or `COUNT(column)`.
    Count,
    /// `SUM(column)`.
    Sum,
    /// `AVG(column)`, released as a noisy sum over a noisy count.
    Avg,
}

/// A column read to compute aggregates, with its declared type and bounds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValueColumn {
    pub name: String,
    pub column_type: ColumnType,
    /// Declared bounds; present for every column that is summed or averaged.
    pub bounds: Option<Bounds>,
}

/// One noisy measurement over all groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Primitive {
    /// Rows in the group (`COUNT(*)`).
    CountRows,
    /// Non-missing values of a value column (`COUNT(column)`, the divisor of `AVG`).
    CountValues(usize),
    /// Sum of a value column's clamped values.
    Sum(usize),
}

/// How an aggregate of the query is computed from primitives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AggregateSpec {
    pub function: AggregateFunction,
    /// The aggregated column; `None` for `COUNT(*)`.
    pub column: Option<String>,
    /// For COUNT and SUM the one primitive; for AVG the sum, then the count.
    pub primitives: Vec<usize>,
}

/// Where an output column's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The i-th GROUP BY column.
    Group(usize),
    /// The i-th aggregate.
    Aggregate(usize),
}

/// One column of the released table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputColumn {
    pub name: String,
    pub source: Source,
}

/// One ORDER BY key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SortKey {
    pub source: Source,
    pub ascending: bool,
    pub nulls_first: bool,
}

/// What an accepted query computes; built from the plan alone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuerySpec {
    /// GROUP BY columns, in order.
    pub group_columns: Vec<String>,
    /// Columns read for aggregates, without duplicates.
    pub value_columns: Vec<ValueColumn>,
    /// Noisy measurements, without duplicates.
    pub primitives: Vec<Primitive>,
    /// Aggregates in the order of the plan's Aggregate node.
    pub aggregates: Vec<AggregateSpec>,
    /// Released columns, in SELECT order.
    pub outputs: Vec<OutputColumn>,
    /// ORDER BY keys, most significant first.
    pub sort: Vec<SortKey>,
}

impl QuerySpec {
    /// Returns the index of `primitive`, adding it if it is new.
    pub(crate) fn primitive(&mut self, primitive: Primitive) -> usize {
        if let Some(index) = self.primitives.iter().position(|p| *p == primitive) {
            return index;
        }
        self.primitives.push(primitive);
        self.primitives.len() - 1
    }

    /// Returns the index of value column `column`, adding it if it is new.
    pub(crate) fn value_column(&mut self, column: ValueColumn) -> usize {
        if let Some(index) = self
            .value_columns
            .iter()
            .position(|c| c.name == column.name)
        {
            return index;
        }
        self.value_columns.push(column);
        self.value_columns.len() - 1
    }
}
