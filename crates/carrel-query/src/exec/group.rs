//! Per-group totals over the bounded rows: distinct persons, rows, and each primitive's
//! exact count or sum of values clamped to their declared bounds.
//!
//! Adding or removing one person, who has at most `k` bounded rows, changes the totals by
//! at most `k` in L1 over all groups for rows, counts and distinct persons, and by at most
//! `k × max(|lower|, |upper|)` for each sum.

use std::collections::HashMap;

use carrel_model::ColumnType;

use super::exact::{ExactSum, FloatAccumulator};
use super::rows::{Number, Row};
use crate::Value;
use crate::plan::spec::{Primitive, QuerySpec, ValueColumn};

/// Exact totals of one group.
#[derive(Debug, Clone)]
pub(crate) struct GroupTotals {
    pub persons: u64,
    pub rows: u64,
    pub totals: Vec<Total>,
}

/// An exact total of one primitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Total {
    Count(u64),
    Sum(ExactSum),
}

enum Accumulator {
    Count(u64),
    /// Fewer than 2^64 rows of at most 2^63 in magnitude stay below 2^127.
    IntegerSum(i128),
    FloatSum(FloatAccumulator),
}

struct GroupAccumulator {
    persons: u64,
    rows: u64,
    accumulators: Vec<Accumulator>,
}

/// Clamping limits of one value column.
#[derive(Clone, Copy)]
enum Clamp {
    Integer(i64, i64),
    Float(f64, f64),
    /// Counted only.
    None,
}

impl Clamp {
    fn of(column: &ValueColumn) -> Self {
        match (column.column_type, column.bounds) {
            // Integer bounds are whole numbers within ±2^63 (the description checks this),
            // and `as` saturates 2^63 to i64::MAX.
            (ColumnType::Integer, Some(b)) => Clamp::Integer(b.lower as i64, b.upper as i64),
            (ColumnType::Float, Some(b)) => Clamp::Float(b.lower, b.upper),
            _ => Clamp::None,
        }
    }
}

fn new_group(spec: &QuerySpec) -> GroupAccumulator {
    let accumulators = spec
        .primitives
        .iter()
        .map(|primitive| match primitive {
            Primitive::Sum(c) if spec.value_columns[*c].column_type == ColumnType::Float => {
                Accumulator::FloatSum(FloatAccumulator::default())
            }
            Primitive::Sum(_) => Accumulator::IntegerSum(0),
            Primitive::CountRows | Primitive::CountValues(_) => Accumulator::Count(0),
        })
        .collect();
    GroupAccumulator {
        persons: 0,
        rows: 0,
        accumulators,
    }
}

/// Sums and counts the bounded rows of every person into groups.
pub(crate) struct Grouper<'a> {
    spec: &'a QuerySpec,
    clamps: Vec<Clamp>,
    groups: HashMap<Vec<Value>, GroupAccumulator>,
}

impl<'a> Grouper<'a> {
    pub(crate) fn new(spec: &'a QuerySpec) -> Self {
        let mut grouper = Grouper {
            spec,
            clamps: spec.value_columns.iter().map(Clamp::of).collect(),
            groups: HashMap::new(),
        };
        if spec.group_columns.is_empty() {
            // Without GROUP BY the result has one group even when no row passes.
            grouper.group(Vec::new());
        }
        grouper
    }

    fn group(&mut self, keys: Vec<Value>) -> &mut GroupAccumulator {
        let spec = self.spec;
        self.groups.entry(keys).or_insert_with(|| new_group(spec))
    }

    /// Adds one person's bounded rows.
    pub(crate) fn add_person(&mut self, rows: Vec<Row>) {
        let mut touched: Vec<Vec<Value>> = Vec::new();
        for row in rows {
            if !touched.contains(&row.keys) {
                touched.push(row.keys.clone());
            }
            self.add_row(row);
        }
        for keys in touched {
            self.group(keys).persons += 1;
        }
    }

    fn add_row(&mut self, row: Row) {
        let spec = self.spec;
        let clamps = &self.clamps;
        let group = self
            .groups
            .entry(row.keys)
            .or_insert_with(|| new_group(spec));
        group.rows += 1;
        for (primitive, accumulator) in spec.primitives.iter().zip(&mut group.accumulators) {
            match (primitive, accumulator) {
                (Primitive::CountRows, Accumulator::Count(n)) => *n += 1,
                (Primitive::CountValues(c), Accumulator::Count(n)) => {
                    *n += u64::from(row.values[*c].is_some());
                }
                (Primitive::Sum(c), Accumulator::IntegerSum(sum)) => {
                    if let (Some(Number::Integer(v)), Clamp::Integer(lo, hi)) =
                        (row.values[*c], clamps[*c])
                    {
                        *sum += i128::from(v.clamp(lo, hi));
                    }
                }
                (Primitive::Sum(c), Accumulator::FloatSum(sum)) => {
                    if let (Some(Number::Float(v)), Clamp::Float(lo, hi)) =
                        (row.values[*c], clamps[*c])
                    {
                        sum.add(v.clamp(lo, hi));
                    }
                }
                // Accumulators are built from the same primitives, so kinds always match.
                _ => {}
            }
        }
    }

    /// Returns every group's totals, sorted by group key.
    pub(crate) fn finish(self) -> Vec<(Vec<Value>, GroupTotals)> {
        let mut groups: Vec<(Vec<Value>, GroupTotals)> = self
            .groups
            .into_iter()
            .map(|(keys, group)| {
                let totals = group
                    .accumulators
                    .into_iter()
                    .map(|a| match a {
                        Accumulator::Count(n) => Total::Count(n),
                        Accumulator::IntegerSum(s) => Total::Sum(ExactSum::Integer(s)),
                        Accumulator::FloatSum(s) => Total::Sum(ExactSum::Float(s.finish())),
                    })
                    .collect();
                let totals = GroupTotals {
                    persons: group.persons,
                    rows: group.rows,
                    totals,
                };
                (keys, totals)
            })
            .collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        groups
    }
}
