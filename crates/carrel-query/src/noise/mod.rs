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
//! noisy count of distinct persons per group. The exception is `max_rows_per_unit` (k)
//! of 1 with COUNT(*) in the query. Rows and persons then coincide, so the noisy COUNT(*)
//! is the thresholded count. L1 sensitivity over the whole grouped result is `k` for counts
//! and `k × max(|lower|, |upper|)` for sums.
//!
//! # Suppression
//!
//! A group is released only if its noisy distinct-person count is at least
//! `τ = (max(m, 2) - 1) + ceil(b × ln(k / δ))` for minimum group size `m` and count noise
//! scale `b`. A group below the minimum, or one that exists only because of the one
//! person who differs, is released with probability below `δ / k`. A person touches at
//! most `k` groups, so the total is below `δ`. A query without GROUP BY has one group and
//! is thresholded the same way. The release never reports how many groups were dropped.
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
mod release;
mod threshold;

use std::sync::Arc;

use dashu::rational::RBig;

use crate::plan::spec::{AggregateFunction, Primitive, QuerySpec, Source};
use crate::plan::{CheckedQuery, separate_threshold};
use crate::release::AggregateNoise;
use crate::{QueryError, QueryRejection};
use grid::{avg_grid_exponent, exp2};
use measure::{CountNoise, SumNoise};
use release::Mechanisms;
use threshold::{ci95_steps, release_threshold};

/// Noise parameters of one query at one epsilon. It contains no data and no OpenDP
/// state, so it can cross an `await`.
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
                .ok_or_else(|| invalid(bug("COUNT(*) is missing from the measurements")))?;
            let PrimitiveNoise::Count(noise) = &primitives[index] else {
                return Err(invalid(bug("COUNT(*) has no count noise")));
            };
            (GroupSize::CountRows(index), noise.scale)
        };
        check_total(&losses, epsilon).map_err(invalid)?;

        let threshold = release_threshold(privacy.min_group_size, k, privacy.delta, size_scale)
            .ok_or_else(|| {
                invalid(format!(
                    "the noise scale {size_scale} makes the release threshold exceed 2^63, so \
                     no group could be released; choose a larger epsilon"
                ))
            })?;
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
        Mechanisms::new(self)
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

/// Returns `epsilon / parts`, rounded down until its `parts`-fold sum, computed exactly,
/// is at most `epsilon`.
fn equal_share(epsilon: f64, parts: usize) -> f64 {
    let parts = parts.max(1);
    let mut share = epsilon / parts as f64;
    let total = exact(epsilon);
    while exact(share) * RBig::from(parts) > total {
        share = share.next_down();
    }
    share
}

/// Checks that the measured losses add up, exactly, to at most `epsilon`.
fn check_total(losses: &[f64], epsilon: f64) -> Result<(), String> {
    if losses.iter().any(|loss| !loss.is_finite()) {
        return Err(bug("a measurement has an infinite privacy loss"));
    }
    let total = losses.iter().fold(RBig::ZERO, |total, l| total + exact(*l));
    if total <= exact(epsilon) {
        return Ok(());
    }
    Err(bug(&format!(
        "the measured losses add up to {}, more than epsilon",
        total.to_f64().value()
    )))
}

fn bug(message: &str) -> String {
    format!("{message}; this is a bug in carrel-query, please report it")
}

/// Converts a finite `f64` to its exact rational value. Non-finite values map to zero,
/// and callers reject them earlier.
fn exact(value: f64) -> RBig {
    RBig::try_from(value).unwrap_or(RBig::ZERO)
}

#[cfg(test)]
mod test;
