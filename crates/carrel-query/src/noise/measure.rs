//! OpenDP measurements for counts and sums, with scales chosen so that each one's
//! privacy loss, as OpenDP's own privacy map computes it, stays within its epsilon share.
//!
//! Guarantee, for tables that differ by one person's bounded rows (at most `k`), under
//! the max-divergence measure (pure DP). A count measurement of scale `b` over all groups
//! loses `ε_i = map(k) = k / b`. The per-group sum measurements of one column together
//! lose at most `ε_i = k × map(M + 2^j)`, with `M = max(|lower|, |upper|)` and grid `2^j`.

use carrel_model::ColumnType;
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::error::Fallible;
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::{AbsoluteDistance, L1Distance};

use super::grid::{exp2, sum_grid_exponent};
use crate::plan::spec::ValueColumn;

/// Discrete Laplace noise on a vector of per-group counts, L1 distance.
pub(crate) type CountMeasurement =
    Measurement<VectorDomain<AtomDomain<i64>>, L1Distance<i64>, MaxDivergence, Vec<i64>>;

/// Laplace noise on one group's sum, on the grid `2^j`, absolute distance.
pub(crate) type SumMeasurement =
    Measurement<AtomDomain<f64>, AbsoluteDistance<f64>, MaxDivergence, f64>;

/// Scale growth per retry when OpenDP's map rounds above the share.
const SCALE_STEP: f64 = 1.0 + 1.0 / (1u64 << 30) as f64;

/// Noise for a vector of counts whose L1 sensitivity is `sensitivity` (`k`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CountNoise {
    pub scale: f64,
    pub sensitivity: i64,
}

impl CountNoise {
    /// Chooses the smallest scale found whose loss at `sensitivity` is within `share`,
    /// and returns the noise and that loss.
    pub(crate) fn new(sensitivity: u32, share: f64) -> Result<(Self, f64), String> {
        let sensitivity = i64::from(sensitivity);
        let mut scale = (sensitivity as f64 / share).next_up();
        for _ in 0..64 {
            check_scale(scale, share)?;
            let noise = CountNoise { scale, sensitivity };
            let loss = noise
                .measurement()
                .and_then(|m| m.map(&sensitivity))
                .map_err(|e| opendp_rejection(share, &e))?;
            if loss <= share {
                return Ok((noise, loss));
            }
            scale *= SCALE_STEP;
        }
        Err(scale_not_found(share))
    }

    pub(crate) fn measurement(&self) -> Fallible<CountMeasurement> {
        make_laplace(
            VectorDomain::new(AtomDomain::default()),
            L1Distance::default(),
            self.scale,
            None,
        )
    }
}

/// Noise for the per-group sums of one column.
///
/// Each group's sum is released by its own scalar measurement. One person changes at
/// most `k` groups' sums, by at most `M = max(|lower|, |upper|)` per row and `k × M` in
/// total. After rounding to the grid, each changed input moves by less than its change
/// plus `2^j`. OpenDP's map is affine, `map(d) = (d + ρ) / b`, so the loss summed
/// over the changed groups is at most `k × map(M + 2^j)`, which is what [`SumNoise::new`]
/// keeps within the share.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SumNoise {
    pub scale: f64,
    pub grid_exponent: i32,
    /// `M`, the largest magnitude one row contributes. It is zero when the bounds are
    /// `[0, 0]`, and the sum is then always 0.
    pub row_bound: f64,
}

impl SumNoise {
    pub(crate) fn new(
        column: &ValueColumn,
        max_rows: u32,
        share: f64,
    ) -> Result<(Self, f64), String> {
        let bounds = column
            .bounds
            .ok_or_else(|| format!("column {:?} has no bounds to sum within", column.name))?;
        let row_bound = bounds.lower.abs().max(bounds.upper.abs());
        if row_bound == 0.0 {
            // Every clamped value is 0, so the sum is a public constant.
            return Ok((
                SumNoise {
                    scale: 0.0,
                    grid_exponent: 0,
                    row_bound,
                },
                0.0,
            ));
        }

        let rows = f64::from(max_rows);
        let integer = column.column_type == ColumnType::Integer;
        let grid_exponent = sum_grid_exponent(row_bound, integer);
        let step = exp2(grid_exponent);
        let distance = (row_bound + step).next_up();
        let mut scale = (rows * (row_bound + 2.0 * step) / share).next_up();
        for _ in 0..64 {
            check_scale(scale, share)?;
            let noise = SumNoise {
                scale,
                grid_exponent,
                row_bound,
            };
            let per_group = noise
                .measurement()
                .and_then(|m| m.map(&distance))
                .map_err(|e| opendp_rejection(share, &e))?;
            let loss = (rows * per_group).next_up();
            if loss <= share {
                return Ok((noise, loss));
            }
            scale *= SCALE_STEP;
        }
        Err(scale_not_found(share))
    }

    pub(crate) fn measurement(&self) -> Fallible<SumMeasurement> {
        make_laplace(
            AtomDomain::new_non_nan(),
            AbsoluteDistance::default(),
            self.scale,
            Some(self.grid_exponent),
        )
    }
}

/// Builds the reason of an
/// [`InvalidEpsilon`](crate::QueryRejection::InvalidEpsilon) rejection.
fn check_scale(scale: f64, share: f64) -> Result<(), String> {
    if scale.is_finite() && scale > 0.0 {
        return Ok(());
    }
    Err(format!(
        "with an epsilon share of {share} per measurement the noise scale would be {scale}; \
         choose an epsilon closer to 1, or ask the provider for narrower bounds"
    ))
}

fn opendp_rejection(share: f64, error: &opendp::error::Error) -> String {
    let detail = error.message.as_deref().unwrap_or_default();
    format!(
        "OpenDP cannot build the noise measurement for an epsilon share of {share}: {} {detail}",
        error.variant
    )
}

fn scale_not_found(share: f64) -> String {
    format!(
        "no noise scale keeps the privacy loss within the epsilon share {share}; choose an \
         epsilon closer to 1"
    )
}
