//! Release of one query result: noisy group sizes decide which groups survive, then each
//! surviving group gets its noisy aggregates, averages are post-processed, and rows are
//! ordered. Nothing here reports how many groups were dropped.

use std::cmp::Ordering;

use super::grid::{avg_grid_exponent, round_into, round_to_grid};
use super::measure::{CountMeasurement, SumMeasurement};
use super::{GroupSize, NoisePlan, PrimitiveNoise};
use crate::exec::{ExactGroup, ExactResult, Total};
use crate::plan::spec::{AggregateFunction, Primitive, SortKey, Source};
use crate::release::Release;
use crate::{QueryError, Value};

/// The OpenDP measurements of a [`NoisePlan`].
pub(crate) struct Mechanisms<'a> {
    plan: &'a NoisePlan,
    primitives: Vec<Mechanism>,
    persons: Option<CountMeasurement>,
}

enum Mechanism {
    Count(CountMeasurement),
    Sum(SumMeasurement),
    /// A sum over bounds `[0, 0]`, which is always exactly 0.
    ZeroSum,
}

impl<'a> Mechanisms<'a> {
    pub(crate) fn new(plan: &'a NoisePlan) -> Result<Self, QueryError> {
        let primitives = plan
            .primitives
            .iter()
            .map(|noise| match noise {
                PrimitiveNoise::Count(n) => n.measurement().map(Mechanism::Count),
                PrimitiveNoise::Sum(n) if n.row_bound == 0.0 => Ok(Mechanism::ZeroSum),
                PrimitiveNoise::Sum(n) => n.measurement().map(Mechanism::Sum),
            })
            .collect::<Result<_, _>>()?;
        let persons = match &plan.group_size {
            GroupSize::Persons(n) => Some(n.measurement()?),
            GroupSize::CountRows(_) => None,
        };
        Ok(Mechanisms {
            plan,
            primitives,
            persons,
        })
    }

    /// Adds noise to `exact`, drops groups below the threshold and orders the rest.
    pub(crate) fn release(&self, exact: &ExactResult) -> Result<Release, QueryError> {
        let plan = self.plan;
        let groups = &exact.groups;

        let sizes = self.noisy_group_sizes(groups)?;
        let kept: Vec<&ExactGroup> = groups
            .iter()
            .zip(&sizes)
            .filter(|(_, size)| **size >= plan.threshold)
            .map(|(group, _)| group)
            .collect();
        let kept_sizes: Vec<i64> = sizes
            .iter()
            .copied()
            .filter(|size| *size >= plan.threshold)
            .collect();

        let mut noisy: Vec<Vec<Noisy>> = Vec::with_capacity(self.primitives.len());
        for (index, mechanism) in self.primitives.iter().enumerate() {
            noisy.push(self.noisy_primitive(index, mechanism, &kept, &kept_sizes)?);
        }

        let mut rows: Vec<Vec<Value>> = (0..kept.len())
            .map(|g| self.row_values(kept[g], &noisy, g))
            .collect();
        sort_rows(&mut rows, &plan.spec.sort, plan.spec.group_columns.len());
        let rows = rows
            .into_iter()
            .map(|values| self.project(values))
            .collect();

        Ok(Release {
            columns: plan.spec.outputs.iter().map(|o| o.name.clone()).collect(),
            rows,
            aggregates: plan.accuracy(),
            epsilon: plan.epsilon,
            delta: plan.delta,
            measurements: plan.measurements,
            release_threshold: plan.threshold,
        })
    }

    fn noisy_group_sizes(&self, groups: &[ExactGroup]) -> Result<Vec<i64>, QueryError> {
        let exact: Vec<i64> = match &self.plan.group_size {
            GroupSize::Persons(_) => groups.iter().map(|g| to_i64(g.persons)).collect(),
            GroupSize::CountRows(index) => groups
                .iter()
                .map(|g| count_total(&g.totals[*index]))
                .collect(),
        };
        let measurement = match (&self.plan.group_size, &self.persons) {
            (GroupSize::Persons(_), Some(m)) => m,
            (GroupSize::CountRows(index), _) => match &self.primitives[*index] {
                Mechanism::Count(m) => m,
                _ => return Err(internal("COUNT(*) has no count measurement")),
            },
            _ => return Err(internal("missing group size measurement")),
        };
        Ok(measurement.invoke(&exact)?)
    }

    fn noisy_primitive(
        &self,
        index: usize,
        mechanism: &Mechanism,
        kept: &[&ExactGroup],
        kept_sizes: &[i64],
    ) -> Result<Vec<Noisy>, QueryError> {
        if let GroupSize::CountRows(size_index) = self.plan.group_size
            && size_index == index
        {
            // Its noisy values already decided suppression; release those same values.
            return Ok(kept_sizes.iter().map(|v| Noisy::Count(*v)).collect());
        }
        match mechanism {
            Mechanism::Count(m) => {
                let exact: Vec<i64> = kept.iter().map(|g| count_total(&g.totals[index])).collect();
                Ok(m.invoke(&exact)?.into_iter().map(Noisy::Count).collect())
            }
            Mechanism::Sum(m) => {
                let PrimitiveNoise::Sum(noise) = &self.plan.primitives[index] else {
                    return Err(internal("sum measurement without sum noise"));
                };
                kept.iter()
                    .map(|g| {
                        let Total::Sum(sum) = &g.totals[index] else {
                            return Err(internal("sum measurement over a count"));
                        };
                        let input = round_to_grid(sum, noise.grid_exponent);
                        Ok(Noisy::Sum(m.invoke(&input)?))
                    })
                    .collect()
            }
            Mechanism::ZeroSum => Ok(kept.iter().map(|_| Noisy::Sum(0.0)).collect()),
        }
    }

    /// Values of every source of one released group: group keys, then aggregates.
    fn row_values(&self, group: &ExactGroup, noisy: &[Vec<Noisy>], g: usize) -> Vec<Value> {
        let spec = &self.plan.spec;
        let mut values = group.keys.clone();
        for aggregate in &spec.aggregates {
            let first = noisy[aggregate.primitives[0]][g];
            let value = match (aggregate.function, first) {
                (AggregateFunction::Avg, Noisy::Sum(sum)) => {
                    let count = match noisy[aggregate.primitives[1]][g] {
                        Noisy::Count(c) => c,
                        Noisy::Sum(_) => 0,
                    };
                    self.average(aggregate.primitives[0], sum, count)
                }
                (_, Noisy::Count(count)) => Value::Integer(count.max(0)),
                (_, Noisy::Sum(sum)) => Value::float(sum),
            };
            values.push(value);
        }
        values
    }

    /// Post-processes a noisy sum and count into an average within the column's bounds,
    /// rounded to the column's average grid. A count below 1 gives the bounds' midpoint.
    fn average(&self, sum_primitive: usize, sum: f64, count: i64) -> Value {
        let spec = &self.plan.spec;
        let Primitive::Sum(column) = spec.primitives[sum_primitive] else {
            return Value::Null;
        };
        let Some(bounds) = spec.value_columns[column].bounds else {
            return Value::Null;
        };
        let row_bound = bounds.lower.abs().max(bounds.upper.abs());
        if row_bound == 0.0 {
            return Value::float(0.0);
        }
        let j = avg_grid_exponent(row_bound);
        let raw = if count >= 1 {
            sum / count as f64
        } else {
            bounds.lower / 2.0 + bounds.upper / 2.0
        };
        Value::float(round_into(raw, bounds.lower, bounds.upper, j))
    }

    fn project(&self, values: Vec<Value>) -> Vec<Value> {
        let groups = self.plan.spec.group_columns.len();
        self.plan
            .spec
            .outputs
            .iter()
            .map(|output| values[source_index(output.source, groups)].clone())
            .collect()
    }
}

/// A noisy primitive value of one group.
#[derive(Debug, Clone, Copy)]
enum Noisy {
    Count(i64),
    Sum(f64),
}

fn source_index(source: Source, groups: usize) -> usize {
    match source {
        Source::Group(i) => i,
        Source::Aggregate(a) => groups + a,
    }
}

/// Stable sort, so rows that tie on every key keep their group-key order.
fn sort_rows(rows: &mut [Vec<Value>], keys: &[SortKey], groups: usize) {
    rows.sort_by(|a, b| {
        for key in keys {
            let index = source_index(key.source, groups);
            let ordering = compare(&a[index], &b[index], key);
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    });
}

fn compare(a: &Value, b: &Value, key: &SortKey) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) if key.nulls_first => Ordering::Less,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) if key.nulls_first => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        _ if key.ascending => a.cmp(b),
        _ => b.cmp(a),
    }
}

fn count_total(total: &Total) -> i64 {
    match total {
        Total::Count(n) => to_i64(*n),
        Total::Sum(_) => 0,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn internal(message: &str) -> QueryError {
    QueryError::Internal {
        message: message.to_owned(),
    }
}
