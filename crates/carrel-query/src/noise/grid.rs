//! The grid that released sums and averages lie on.
//!
//! A sum is released as a multiple of `2^j`, where `j` depends only on the column's
//! declared bounds, which are public. The exact
//! sum is rounded to the nearest multiple of `2^j` before noise is added, and OpenDP's
//! Laplace measurement with the same `j` adds an integer multiple of `2^j`. No output
//! digit below `2^j` depends on the data, which closes the floating-point side channel
//! of naive Laplace sampling. Rounding adds less than `2^j` to the distance between two
//! neighbours' sums, which the sum measurement's accounting includes.

use dashu::integer::IBig;

use crate::exec::ExactSum;

/// How far below the per-row bound the grid step of sums lies, in powers of two. The
/// rounding error is then at most 1/8192 of one row's largest contribution, and a sum
/// saturates only beyond 2^53 steps, that is 2^40 rows at the bound or more.
const GRID_BITS_BELOW: i32 = 12;

/// How far below the per-row bound the grid of averages lies, in powers of two.
const AVG_GRID_BITS_BELOW: i32 = 24;

/// Grid exponents are kept where `2^j` is a normal `f64` and `2^53 × 2^j` is finite.
const MIN_EXPONENT: i32 = -1000;
const MAX_EXPONENT: i32 = 960;

/// Released sums saturate at this many grid steps.
const MAX_STEPS: i64 = 1 << 53;

/// `floor(log2(x))` for a finite `x > 0`.
pub(crate) fn floor_log2(x: f64) -> i32 {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: the value is fraction × 2^-1074.
        let fraction = bits & ((1u64 << 52) - 1);
        return -1074 + (63 - fraction.leading_zeros() as i32);
    }
    biased - 1023
}

/// `2^j` exactly, for `j` between the grid limits.
pub(crate) fn exp2(j: i32) -> f64 {
    let j = j.clamp(MIN_EXPONENT, MAX_EXPONENT);
    f64::from_bits(((j + 1023) as u64) << 52)
}

/// Returns the grid exponent of a sum whose rows contribute at most `row_bound > 0` in
/// magnitude. Sums of integers stay on whole numbers.
///
/// The grid does not shrink with the noise scale, because a finer grid would lower the
/// saturation point: at large epsilon, rounding rather than noise bounds the accuracy.
pub(crate) fn sum_grid_exponent(row_bound: f64, integer: bool) -> i32 {
    let j = floor_log2(row_bound) - GRID_BITS_BELOW;
    let j = if integer { j.max(0) } else { j };
    j.clamp(MIN_EXPONENT, MAX_EXPONENT)
}

/// Returns the grid exponent of averages of a column whose values are at most
/// `row_bound` in magnitude.
pub(crate) fn avg_grid_exponent(row_bound: f64) -> i32 {
    (floor_log2(row_bound) - AVG_GRID_BITS_BELOW).clamp(MIN_EXPONENT, MAX_EXPONENT)
}

/// Rounds `sum` to the nearest multiple of `2^j` (ties up) and returns it as an `f64`.
///
/// Rounding moves each sum by at most `2^(j-1)`, so two sums at distance `d` end at
/// distance below `d + 2^j`. The result is clamped to `±2^53` steps so that it is exact
/// in an `f64`; clamping never increases a distance.
// NOTE: a sum beyond 2^53 grid steps (2^40 rows or more at the per-row bound) saturates.
pub(crate) fn round_to_grid(sum: &ExactSum, j: i32) -> f64 {
    let (mantissa, exponent) = sum.to_dyadic();
    let steps = if exponent >= j {
        mantissa << (exponent - j) as usize
    } else {
        let shift = (j - exponent) as usize;
        // floor(x × 2) then halve, rounding x = mantissa / 2^shift half up.
        ((mantissa >> (shift - 1)) + IBig::ONE) >> 1
    };
    let limit = IBig::from(MAX_STEPS);
    let steps = steps.clamp(-limit.clone(), limit);
    // The clamp keeps the value within ±2^53, so the conversion cannot fail.
    let steps = i64::try_from(steps).unwrap_or(0);
    steps as f64 * exp2(j)
}

/// Rounds `value` to the nearest multiple of `2^j`, then clamps it to the multiples of
/// `2^j` within `[lower, upper]`.
pub(crate) fn round_into(value: f64, lower: f64, upper: f64, j: i32) -> f64 {
    let step = exp2(j);
    let low = (lower / step).ceil() * step;
    let high = (upper / step).floor() * step;
    let rounded = (value / step).round() * step;
    if low > high {
        // No multiple of the step lies within the bounds; use the one nearest the middle.
        return ((lower / 2.0 + upper / 2.0) / step).round() * step;
    }
    rounded.clamp(low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_log2_is_exact() {
        assert_eq!(floor_log2(1.0), 0);
        assert_eq!(floor_log2(1.9999), 0);
        assert_eq!(floor_log2(2.0), 1);
        assert_eq!(floor_log2(0.75), -1);
        assert_eq!(floor_log2(f64::from_bits(1)), -1074);
        assert_eq!(floor_log2(4611686018427387904.0), 62);
    }

    #[test]
    fn rounds_half_up_to_grid() {
        let sum = ExactSum::Integer(10);
        assert_eq!(round_to_grid(&sum, 2), 12.0);
        assert_eq!(round_to_grid(&ExactSum::Integer(9), 2), 8.0);
        assert_eq!(round_to_grid(&ExactSum::Integer(-10), 2), -8.0);
        assert_eq!(round_to_grid(&ExactSum::Integer(7), -3), 7.0);
    }

    #[test]
    fn saturates_huge_sums() {
        let huge = ExactSum::Integer(i128::MAX);
        assert_eq!(round_to_grid(&huge, 0), 9007199254740992.0);
    }

    #[test]
    fn integer_sums_use_whole_steps() {
        assert_eq!(sum_grid_exponent(10.0, true), 0);
        assert_eq!(sum_grid_exponent(10.0, false), 3 - 12);
        assert_eq!(sum_grid_exponent(1e6, true), 19 - 12);
    }

    #[test]
    fn averages_stay_within_bounds_on_grid() {
        let j = avg_grid_exponent(100.0);
        let v = round_into(123.456, 0.0, 100.0, j);
        assert_eq!(v, 100.0);
        let v = round_into(0.1, 0.0, 100.0, j);
        assert_eq!((v / exp2(j)).fract(), 0.0);
    }
}
