//! Encodings of integer and real inputs as elements of the ring Z_M.

use super::{Round, SecAggError};

/// Encoding of integers with a declared bound `|v| <= max_abs`, as `v mod M`.
///
/// The centred total that [`Aggregator::finish`] returns is the exact integer total.
///
/// [`Aggregator::finish`]: super::Aggregator::finish
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegerEncoding {
    max_abs: u64,
}

impl IntegerEncoding {
    /// Creates the encoding of integers with absolute value at most `max_abs`.
    pub fn new(max_abs: u64) -> Self {
        Self { max_abs }
    }

    /// Returns the declared bound on absolute values.
    pub fn max_abs(&self) -> u64 {
        self.max_abs
    }

    /// Returns the largest absolute contribution of one party to one coordinate, which is
    /// `max_abs`. This is the figure for [`RoundConfig::max_contribution`].
    ///
    /// [`RoundConfig::max_contribution`]: super::RoundConfig::max_contribution
    pub fn max_contribution(&self) -> u128 {
        u128::from(self.max_abs)
    }

    /// Encodes one party's integer vector as ring elements.
    ///
    /// # Errors
    ///
    /// - [`SecAggError::InputLengthMismatch`] unless `values` has the round's vector length.
    /// - [`SecAggError::ValueOutOfRange`] naming the first coordinate with `|v| > max_abs`.
    /// - [`SecAggError::ContributionTooLarge`] when a value exceeds the round's declared
    ///   maximum contribution.
    pub fn encode(&self, values: &[i64], round: &Round) -> Result<Vec<u64>, SecAggError> {
        check_input_length(values.len(), round)?;
        let modulus = round.modulus();
        let mut encoded = Vec::with_capacity(values.len());
        for (coordinate, &value) in values.iter().enumerate() {
            if value.unsigned_abs() > self.max_abs {
                return Err(SecAggError::ValueOutOfRange {
                    coordinate,
                    max_abs: self.max_abs,
                });
            }
            check_contribution(u128::from(value.unsigned_abs()), coordinate, round)?;
            encoded.push(modulus.reduce(i128::from(value)));
        }
        Ok(encoded)
    }
}

/// Fixed-point encoding of reals clamped to `[-clip, clip]` on `levels` evenly spaced levels.
///
/// # Rounding rule
///
/// A value `v` is clamped to `[-clip, clip]`. With `step = 2 * clip / (levels - 1)`, its level
/// is `q = round_ties_even((v + clip) / step)`, an integer in `[0, levels - 1]`, so level `q`
/// encodes the real `q * step - clip`. A party with weight `W`, an integer number of
/// samples, contributes `W * q` to each coordinate. Infinite inputs clamp to `±clip` and NaN
/// is rejected.
///
/// # Error bound
///
/// Each level is within `step / 2` of the clamped value it encodes, so a weighted mean
/// decoded from the total is within `step / 2` of the weighted mean of the clamped inputs,
/// and a decoded sum within `total_weight * step / 2` of their weighted sum. Floating-point
/// arithmetic adds an error of order `1e-15 * clip`. Noise, when added, comes on top.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedPoint {
    clip: f64,
    levels: u32,
}

impl FixedPoint {
    /// Creates a fixed-point encoding with clipping bound `clip` and `levels` levels.
    ///
    /// # Errors
    ///
    /// [`SecAggError::InvalidClip`] unless `clip` is finite and above 0, and
    /// [`SecAggError::InvalidLevels`] when `levels` is below 2.
    pub fn new(clip: f64, levels: u32) -> Result<Self, SecAggError> {
        if !clip.is_finite() || clip <= 0.0 {
            return Err(SecAggError::InvalidClip { clip });
        }
        if levels < 2 {
            return Err(SecAggError::InvalidLevels { levels });
        }
        Ok(Self { clip, levels })
    }

    /// Returns the clipping bound.
    pub fn clip(&self) -> f64 {
        self.clip
    }

    /// Returns the number of levels.
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// Returns the distance between two neighbouring levels, `2 * clip / (levels - 1)`.
    pub fn step(&self) -> f64 {
        2.0 * self.clip / f64::from(self.levels - 1)
    }

    /// Returns `step / 2`, the bound on the error of a decoded weighted mean without noise.
    pub fn max_mean_error(&self) -> f64 {
        self.step() / 2.0
    }

    /// Returns the largest contribution of one party with weight at most `max_weight` to one
    /// coordinate, `max_weight * (levels - 1)`. This is the figure for
    /// [`RoundConfig::max_contribution`].
    ///
    /// [`RoundConfig::max_contribution`]: super::RoundConfig::max_contribution
    pub fn max_contribution(&self, max_weight: u64) -> u128 {
        u128::from(max_weight) * u128::from(self.levels - 1)
    }

    /// Encodes one party's real vector with weight `weight` as ring elements `weight * q`.
    ///
    /// # Errors
    ///
    /// - [`SecAggError::InputLengthMismatch`] unless `values` has the round's vector length.
    /// - [`SecAggError::NanValue`] naming the first NaN coordinate.
    /// - [`SecAggError::ContributionTooLarge`] when `weight * q` exceeds the round's declared
    ///   maximum contribution.
    pub fn encode(
        &self,
        values: &[f64],
        weight: u64,
        round: &Round,
    ) -> Result<Vec<u64>, SecAggError> {
        check_input_length(values.len(), round)?;
        let mut encoded = Vec::with_capacity(values.len());
        for (coordinate, &value) in values.iter().enumerate() {
            let level = self
                .level(value)
                .ok_or(SecAggError::NanValue { coordinate })?;
            let contribution = u128::from(weight) * u128::from(level);
            check_contribution(contribution, coordinate, round)?;
            // The round checked parties * max_contribution < M/2 <= 2^63, so the contribution
            // is already a ring element and the cast keeps it whole.
            encoded.push(contribution as u64);
        }
        Ok(encoded)
    }

    /// Decodes centred totals into the weighted means `T * step / total_weight - clip`.
    ///
    /// # Errors
    ///
    /// [`SecAggError::ZeroTotalWeight`] when `total_weight` is 0.
    pub fn decode_mean(&self, totals: &[i128], total_weight: u64) -> Result<Vec<f64>, SecAggError> {
        if total_weight == 0 {
            return Err(SecAggError::ZeroTotalWeight);
        }
        let step = self.step();
        let total_weight = total_weight as f64;
        let means = totals
            .iter()
            .map(|&total| total as f64 / total_weight * step - self.clip)
            .collect();
        Ok(means)
    }

    /// Decodes centred totals into the weighted sums `T * step - clip * total_weight`.
    pub fn decode_sum(&self, totals: &[i128], total_weight: u64) -> Vec<f64> {
        let step = self.step();
        let offset = self.clip * total_weight as f64;
        totals
            .iter()
            .map(|&total| total as f64 * step - offset)
            .collect()
    }

    /// Returns the level of `value` under the rounding rule, or `None` for NaN.
    fn level(&self, value: f64) -> Option<u32> {
        if value.is_nan() {
            return None;
        }
        let clamped = value.clamp(-self.clip, self.clip);
        let scaled = ((clamped + self.clip) / self.step()).round_ties_even();
        // `scaled` lies in [0, levels - 1] up to floating-point rounding, and the cast
        // saturates, so the minimum keeps the level in range.
        Some((scaled as u32).min(self.levels - 1))
    }
}

fn check_input_length(found: usize, round: &Round) -> Result<(), SecAggError> {
    if found != round.vector_len() {
        return Err(SecAggError::InputLengthMismatch {
            expected: round.vector_len(),
            found,
        });
    }
    Ok(())
}

fn check_contribution(
    contribution: u128,
    coordinate: usize,
    round: &Round,
) -> Result<(), SecAggError> {
    if contribution > round.max_contribution() {
        return Err(SecAggError::ContributionTooLarge {
            coordinate,
            max_contribution: round.max_contribution(),
        });
    }
    Ok(())
}
