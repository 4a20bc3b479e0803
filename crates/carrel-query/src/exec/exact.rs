//! Exact, order-independent sums.
//!
//! Integers are summed in `i128`. Floats are summed without rounding: each finite `f64`
//! is `m × 2^e` with an integer `|m| < 2^53` and `e >= -1074`, so the accumulator adds
//! each `m` into an `i128` bucket for its `e` and combines the buckets into one big
//! integer at the end. Integer addition is associative, so the result does not depend on
//! row order: `2^53 + 1 + 1 + 1 + 1` and `1 + 1 + 1 + 1 + 2^53` are both exactly
//! `2^53 + 4`, where naive `f64` addition gives `2^53` for the first.

use std::collections::BTreeMap;
use std::fmt;

use dashu::base::UnsignedAbs;
use dashu::integer::{IBig, UBig};
use dashu::rational::RBig;
use serde::{Serialize, Serializer};

/// An exact sum of clamped values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExactSum {
    /// Sum of an Integer column.
    Integer(i128),
    /// Sum of a Float column.
    Float(ExactFloat),
}

impl ExactSum {
    /// Returns the nearest `f64` to the exact sum (`±inf` only beyond `f64::MAX`).
    pub fn to_f64(&self) -> f64 {
        match self {
            ExactSum::Integer(v) => *v as f64,
            ExactSum::Float(v) => v.to_f64(),
        }
    }

    /// Returns the sum as `(mantissa, exponent)`, meaning `mantissa × 2^exponent`.
    pub(crate) fn to_dyadic(&self) -> (IBig, i32) {
        match self {
            ExactSum::Integer(v) => (IBig::from(*v), 0),
            ExactSum::Float(v) => (v.mantissa.clone(), v.exponent),
        }
    }
}

impl fmt::Display for ExactSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExactSum::Integer(v) => write!(f, "{v}"),
            ExactSum::Float(v) => write!(f, "{v}"),
        }
    }
}

/// Serialized as the nearest `f64` for floats, which is what a JSON reader can hold;
/// integer sums keep all their digits.
impl Serialize for ExactSum {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ExactSum::Integer(v) => serializer.serialize_i128(*v),
            ExactSum::Float(v) => serializer.serialize_f64(v.to_f64()),
        }
    }
}

/// An exact binary fraction `mantissa × 2^exponent`, with an odd mantissa or zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactFloat {
    mantissa: IBig,
    exponent: i32,
}

impl ExactFloat {
    fn new(mantissa: IBig, exponent: i32) -> Self {
        match mantissa.trailing_zeros() {
            None => ExactFloat {
                mantissa,
                exponent: 0,
            },
            Some(zeros) => ExactFloat {
                mantissa: mantissa >> zeros,
                // Shifts come from exponents between -1074 and 971, so this stays small.
                exponent: exponent + zeros as i32,
            },
        }
    }

    /// Returns the nearest `f64`.
    pub fn to_f64(&self) -> f64 {
        self.to_rational().to_f64().value()
    }

    fn to_rational(&self) -> RBig {
        if self.exponent >= 0 {
            RBig::from(self.mantissa.clone() << self.exponent as usize)
        } else {
            RBig::from_parts(
                self.mantissa.clone(),
                UBig::ONE << self.exponent.unsigned_abs() as usize,
            )
        }
    }
}

/// Writes the exact decimal expansion, which is finite for a binary fraction.
impl fmt::Display for ExactFloat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exponent >= 0 {
            return write!(f, "{}", self.mantissa.clone() << self.exponent as usize);
        }
        // m / 2^n = m × 5^n / 10^n.
        let places = self.exponent.unsigned_abs() as usize;
        let scaled = self.mantissa.clone() * IBig::from(5u8).pow(places);
        let sign = if scaled < IBig::ZERO { "-" } else { "" };
        let digits = scaled.unsigned_abs().to_string();
        let padded = format!("{digits:0>width$}", width = places + 1);
        let (whole, fraction) = padded.split_at(padded.len() - places);
        write!(f, "{sign}{whole}.{}", fraction.trim_end_matches('0'))
    }
}

/// Adds finite `f64` values exactly.
#[derive(Debug, Clone, Default)]
pub(crate) struct FloatAccumulator {
    /// Sum of mantissas per binary exponent. Each mantissa is below 2^53 in magnitude,
    /// so a bucket stays below 2^117 for fewer than 2^64 additions.
    buckets: BTreeMap<i32, i128>,
}

impl FloatAccumulator {
    /// Adds `value`, which must be finite; non-finite values are ignored.
    pub(crate) fn add(&mut self, value: f64) {
        if let Some((mantissa, exponent)) = decompose(value) {
            *self.buckets.entry(exponent).or_insert(0) += i128::from(mantissa);
        }
    }

    pub(crate) fn finish(&self) -> ExactFloat {
        let Some(&lowest) = self.buckets.keys().next() else {
            return ExactFloat::new(IBig::ZERO, 0);
        };
        let mut total = IBig::ZERO;
        for (&exponent, &sum) in &self.buckets {
            total += IBig::from(sum) << (exponent - lowest) as usize;
        }
        ExactFloat::new(total, lowest)
    }
}

/// Splits a finite `f64` into `(m, e)` with `value = m × 2^e` and `m` odd (or zero).
fn decompose(value: f64) -> Option<(i64, i32)> {
    if !value.is_finite() {
        return None;
    }
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = (bits & ((1u64 << 52) - 1)) as i64;
    let (mut mantissa, mut exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1i64 << 52), biased - 1075)
    };
    if mantissa == 0 {
        return Some((0, 0));
    }
    let zeros = mantissa.trailing_zeros();
    mantissa >>= zeros;
    exponent += zeros as i32;
    if value < 0.0 {
        mantissa = -mantissa;
    }
    Some((mantissa, exponent))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn exact_sum(values: &[f64]) -> ExactFloat {
        let mut accumulator = FloatAccumulator::default();
        values.iter().for_each(|v| accumulator.add(*v));
        accumulator.finish()
    }

    #[test]
    fn float_sum_is_order_independent() {
        let big = 9007199254740992.0;
        let forward = exact_sum(&[big, 1.0, 1.0, 1.0, 1.0]);
        let backward = exact_sum(&[1.0, 1.0, 1.0, 1.0, big]);
        assert_eq!(forward, backward);
        assert_eq!(forward.to_f64(), 9007199254740996.0);
        // Naive addition loses the ones when the large value comes first.
        assert_eq!(big + 1.0 + 1.0 + 1.0 + 1.0, big);
    }

    #[test]
    fn subnormals_and_extremes_are_exact() {
        let tiny = f64::from_bits(1);
        let sum = exact_sum(&[tiny, tiny, f64::MAX, -f64::MAX]);
        assert_eq!(sum.to_f64(), 2.0 * tiny);
        assert_eq!(exact_sum(&[]).to_f64(), 0.0);
        assert_eq!(exact_sum(&[0.5, -0.5]).to_f64(), 0.0);
    }

    #[test]
    fn display_is_exact_decimal() {
        assert_eq!(exact_sum(&[0.5, 0.25]).to_string(), "0.75");
        assert_eq!(exact_sum(&[-0.125]).to_string(), "-0.125");
        assert_eq!(exact_sum(&[8.0, 4.0]).to_string(), "12");
        assert_eq!(
            exact_sum(&[0.1]).to_string(),
            "0.1000000000000000055511151231257827021181583404541015625"
        );
    }

    proptest! {
        #[test]
        fn float_sum_matches_any_order(
            values in prop::collection::vec(
                prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
                0..40,
            ),
            seed in any::<u64>(),
        ) {
            let mut shuffled = values.clone();
            // A deterministic permutation driven by the seed.
            let len = shuffled.len();
            for i in (1..len).rev() {
                let j = (seed.rotate_left(i as u32) % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            prop_assert_eq!(exact_sum(&values), exact_sum(&shuffled));
        }

        #[test]
        fn float_sum_equals_rational_sum(
            values in prop::collection::vec(-1e12f64..1e12, 0..20),
        ) {
            let expected = values
                .iter()
                .fold(RBig::ZERO, |acc, v| acc + RBig::try_from(*v).unwrap());
            prop_assert_eq!(exact_sum(&values).to_rational(), expected);
        }
    }
}
