//! Differentially private release of a query's groups, with noise from OpenDP.
//!
//! # Guarantee
//!
//! - Privacy unit: the dataset's `privacy_unit` column (a person).
//! - Neighbouring tables: one table has all rows of one person that the other lacks
//!   (add or remove one person).
//! - Measure: approximate differential privacy, `(ε, δ)` with `ε` the query's epsilon and
//!   `δ` the policy's `query_delta`; `CheckedQuery::cost` returns the pair.
//! - Loss bound: for neighbours `D, D'` and every set `S` of releases,
//!   `P[M(D) ∈ S] <= e^ε × P[M(D') ∈ S] + δ`, with
//!   `ε = Σ_i ε_i` over the query's `n` measurements, `ε_i = ε / n`.
//!
//! # Epsilon split
//!
//! The query's epsilon is split equally across its measurements. Each distinct COUNT or
//! SUM is one measurement; AVG is two (a noisy sum over a noisy count, shared with a SUM
//! or COUNT of the same column). Deciding which groups are large enough is one more: a
//! noisy count of distinct persons per group, unless `max_rows_per_unit` (k) is 1 and the
//! query has COUNT(*), in which case rows and persons coincide and the noisy COUNT(*) is
//! the thresholded count. L1 sensitivity over the whole grouped result is `k` for counts
//! and `k × max(|lower|, |upper|)` for sums.
//!
//! # Suppression
//!
//! A group is released only if its noisy distinct-person count is at least
//! `τ = (max(m, 2) - 1) + ceil(b × ln(k / δ))` for minimum group size `m` and count noise
//! scale `b`. A group below the minimum, or one that exists only because of the one
//! person who differs, is released with probability below `δ / k`; a person touches at
//! most `k` groups, so the total is below `δ`. A query without GROUP BY has one group and
//! is thresholded the same way. The release never says how many groups were dropped.
//! NOTES.md beside this file gives the derivation.
//!
//! # Noise
//!
//! Counts get discrete Laplace noise from OpenDP's `make_laplace` on a vector of `i64`.
//! Sums get OpenDP's `make_laplace` on an `f64` with an explicit grid exponent `j` chosen
//! from public parameters, so every released sum is a multiple of `2^j`; averages are a
//! noisy sum over a noisy count, clamped to the bounds and rounded to a public grid. Scales
//! are set so that OpenDP's own privacy map of each measurement stays within its share.
//!
//! # Threat model
//!
//! The consumer chooses the SQL and epsilon and sees the release; the node operator is
//! trusted. Randomness comes from OpenSSL's `RAND_priv_bytes`, which OpenDP uses when built
//! with its `use-openssl` feature (as this crate is). Out of scope: timing of query
//! execution, which depends on the data, and repeated queries, which the node's budget
//! limits.

mod grid;
mod measure;
mod threshold;

use std::cmp::Ordering;
use std::sync::Arc;

use dashu::rational::RBig;

use crate::exec::{ExactGroup, ExactResult, Total};
use crate::plan::spec::{AggregateFunction, Primitive, QuerySpec, SortKey, Source};
use crate::plan::{CheckedQuery, separate_threshold};
use crate::release::{AggregateNoise, Release};
use crate::{QueryError, QueryRejection, Value};
use grid::{avg_grid_exponent, exp2, round_into, round_to_grid};
use measure::{CountMeasurement, CountNoise, SumMeasurement, SumNoise};
use threshold::{ci95_steps, release_threshold};

/// Noise parameters of one query at one epsilon; holds no data and no OpenDP state, so it
/// can cross an `await`.
#[derive(Debug, Clone)]
pub(crate) struct NoisePlan {
    spec: Arc<QuerySpec>,
    epsilon: f64,
    delta: f64,
    measurements: usize,
    primitives: Vec<PrimitiveNoise>,
    group_size: GroupSize,
    threshold: i64,
}

#[derive(Debug, Clone)]
enum PrimitiveNoise {
    Count(CountNoise),
    Sum(SumNoise),
}

/// Which noisy count decides whether a group is released.
#[derive(Debug, Clone)]
enum GroupSize {
    /// A separate noisy count of distinct persons.
    Persons(CountNoise),
    /// The noisy COUNT(*) at this primitive index (when k = 1).
    CountRows(usize),
}

impl NoisePlan {
    /// Chooses every measurement's scale for `epsilon`, reading no data.
    pub(crate) fn new(checked: &CheckedQuery, epsilon: f64) -> Result<Self, QueryRejection> {
        let invalid = |reason: String| QueryRejection::InvalidEpsilon { epsilon, reason };
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(invalid("give a finite epsilon greater than 0".into()));
        }
        let spec = checked.spec.clone();
        let privacy = &checked.privacy;
        let k = privacy.max_rows_per_unit;
        let measurements = checked.measurement_count();
        let share = equal_share(epsilon, measurements);

        let mut losses = Vec::with_capacity(measurements);
        let mut primitives = Vec::with_capacity(spec.primitives.len());
        for primitive in &spec.primitives {
            let (noise, loss) = match primitive {
                Primitive::CountRows | Primitive::CountValues(_) => {
                    CountNoise::new(k, share).map(|(n, l)| (PrimitiveNoise::Count(n), l))
                }
                Primitive::Sum(c) => SumNoise::new(&spec.value_columns[*c], k, share)
                    .map(|(n, l)| (PrimitiveNoise::Sum(n), l)),
            }
            .map_err(invalid)?;
            primitives.push(noise);
            losses.push(loss);
        }

        let (group_size, size_scale) = if separate_threshold(&spec, privacy) {
            let (noise, loss) = CountNoise::new(k, share).map_err(invalid)?;
            losses.push(loss);
            let scale = noise.scale;
            (GroupSize::Persons(noise), scale)
        } else {
            let index = spec
                .primitives
                .iter()
                .position(|p| *p == Primitive::CountRows)
                .ok_or_else(|| invalid("internal: COUNT(*) missing".into()))?;
            let PrimitiveNoise::Count(noise) = &primitives[index] else {
                return Err(invalid("internal: COUNT(*) has no count noise".into()));
            };
            (GroupSize::CountRows(index), noise.scale)
        };
        check_total(&losses, epsilon).map_err(invalid)?;

        let threshold = release_threshold(privacy.min_group_size, k, privacy.delta, size_scale);
        Ok(NoisePlan {
            spec,
            epsilon,
            delta: privacy.delta,
            measurements,
            primitives,
            group_size,
            threshold,
        })
    }

    /// Builds the OpenDP measurements, which can then release any number of times.
    pub(crate) fn mechanisms(&self) -> Result<Mechanisms<'_>, QueryError> {
        let primitives = self
            .primitives
            .iter()
            .map(|noise| match noise {
                PrimitiveNoise::Count(n) => n.measurement().map(Mechanism::Count),
                PrimitiveNoise::Sum(n) if n.row_bound == 0.0 => Ok(Mechanism::ZeroSum),
                PrimitiveNoise::Sum(n) => n.measurement().map(Mechanism::Sum),
            })
            .collect::<Result<_, _>>()?;
        let persons = match &self.group_size {
            GroupSize::Persons(n) => Some(n.measurement()?),
            GroupSize::CountRows(_) => None,
        };
        Ok(Mechanisms {
            plan: self,
            primitives,
            persons,
        })
    }

    /// Accuracy of each aggregate output column.
    fn accuracy(&self) -> Vec<AggregateNoise> {
        let spec = &self.spec;
        let mut list = Vec::new();
        for output in &spec.outputs {
            let Source::Aggregate(a) = output.source else {
                continue;
            };
            let aggregate = &spec.aggregates[a];
            let first = &self.primitives[aggregate.primitives[0]];
            let (noise_scale, ci95_half_width, grid) = match first {
                PrimitiveNoise::Count(n) => (n.scale, Some(ci95_steps(n.scale)), 1.0),
                PrimitiveNoise::Sum(n) if n.row_bound == 0.0 => (0.0, Some(0.0), 1.0),
                PrimitiveNoise::Sum(n) => {
                    let step = exp2(n.grid_exponent);
                    let steps = ci95_steps(n.scale / step);
                    (n.scale, Some(steps * step + step / 2.0), step)
                }
            };
            let mut entry = AggregateNoise {
                column: output.name.clone(),
                function: aggregate.function,
                source_column: aggregate.column.clone(),
                noise_scale,
                count_noise_scale: None,
                ci95_half_width,
                grid,
            };
            if aggregate.function == AggregateFunction::Avg {
                if let PrimitiveNoise::Count(n) = &self.primitives[aggregate.primitives[1]] {
                    entry.count_noise_scale = Some(n.scale);
                }
                entry.ci95_half_width = None;
                entry.grid = self.avg_grid(aggregate.primitives[0]);
            }
            list.push(entry);
        }
        list
    }

    fn avg_grid(&self, sum_primitive: usize) -> f64 {
        match &self.primitives[sum_primitive] {
            PrimitiveNoise::Sum(n) if n.row_bound > 0.0 => exp2(avg_grid_exponent(n.row_bound)),
            _ => 1.0,
        }
    }
}

/// Returns the largest share whose `parts`-fold sum, computed exactly, is at most
/// `epsilon`.
fn equal_share(epsilon: f64, parts: usize) -> f64 {
    let parts = parts.max(1);
    let mut share = epsilon / parts as f64;
    let total = exact(epsilon);
    while exact(share) * RBig::from(parts) > total {
        share = share.next_down();
    }
    share
}

fn check_total(losses: &[f64], epsilon: f64) -> Result<(), String> {
    let total = losses.iter().fold(RBig::ZERO, |total, l| total + exact(*l));
    if total <= exact(epsilon) {
        return Ok(());
    }
    Err(format!(
        "internal: measured losses add up to more than epsilon ({})",
        total.to_f64().value()
    ))
}

/// The exact value of a finite `f64`; non-finite values map to zero and are rejected
/// before they get here.
fn exact(value: f64) -> RBig {
    RBig::try_from(value).unwrap_or(RBig::ZERO)
}

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

impl Mechanisms<'_> {
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

#[cfg(test)]
mod test;
