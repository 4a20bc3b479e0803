//! Calibration and sampling of the discrete Laplace noise, through OpenDP.
//!
//! Privacy unit: one id of the ValueParty with all its rows. Neighbouring inputs add or
//! remove one such id. Measure: approximate DP under max-divergence. The job's epsilon is
//! split in three equal shares, for persons, rows and sums.
//!
//! - Persons: the ValueParty adds `f = clamp(s + Z, 0, 2s)` fake matches to each group
//!   and the same number of unmatched entries for the ids that match no group, with
//!   `Z` discrete Laplace of scale `b` and shift `s = ceil(b ln(2/δ))`. One id changes
//!   one of these `k + 1` counts by 1.
//! - Rows: discrete Laplace of scale `max_rows_per_id / ε_share` on each group's rows.
//! - Sums: discrete Laplace of scale `max_rows_per_id × M / ε_share` on each group's
//!   fixed-point sum, with `M` the largest fixed-point magnitude of a clamped value.
//!
//! NOTES.md beside this file gives the proof sketch.

use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;

use super::input::fixed_bound;
use super::{NoiseMode, PjcError, PjcParams, PrivacyLoss};

/// Discrete Laplace noise on a vector of integers, L1 distance.
type IntegerNoise =
    Measurement<VectorDomain<AtomDomain<i64>>, L1Distance<i64>, MaxDivergence, Vec<i64>>;

/// Largest shift `s` accepted. Each group list carries `2s` padding entries, so a shift
/// beyond this (an epsilon near 0.001 or below) would make the messages very large.
pub(crate) const MAX_SHIFT: u64 = 1 << 16;

/// Largest noise scale accepted, in fixed-point units for sums. OpenDP casts each
/// sample to `i64`, saturating; below this scale a sample reaches `2^63` with
/// probability below `e^(-2048)`.
pub(crate) const MAX_SCALE: f64 = (1u64 << 52) as f64;

/// Scale growth per retry when OpenDP's privacy map rounds above the share.
const SCALE_STEP: f64 = 1.0 + 1.0 / (1u64 << 30) as f64;

/// The noise scales, shift and threshold that both parties derive from the parameters.
#[derive(Debug, Clone)]
pub(crate) struct NoisePlan {
    pub mode: NoiseMode,
    /// Scale of the noise on the number of fake matches.
    pub persons_scale: f64,
    /// `s`: the expected number of fake matches per group, subtracted from each count.
    pub shift: u64,
    pub rows_scale: f64,
    /// Scale of the sum noise in fixed-point units; 0 when every clamped value is 0.
    pub sum_scale: f64,
    /// Noisy person count a group needs to be released.
    pub threshold: i64,
    pub loss: PrivacyLoss,
}

impl NoisePlan {
    /// Derives the plan from validated parameters.
    pub(crate) fn new(params: &PjcParams) -> Result<Self, PjcError> {
        params.validate()?;
        let share = (params.epsilon / 3.0).next_down();
        let max_rows = i64::from(params.max_rows_per_id);

        let persons_scale = calibrate(1, share, "epsilon")?;
        let rows_scale = calibrate(max_rows, share, "epsilon")?;
        let row_bound = fixed_bound(params.lower, params.upper);
        let sum_scale = if row_bound == 0 {
            // Every clamped value is 0, so every sum is the public constant 0.
            0.0
        } else {
            let sensitivity = max_rows.checked_mul(row_bound).ok_or(PjcError::Internal(
                "validated bounds overflow the sum sensitivity",
            ))?;
            calibrate(sensitivity, share, "epsilon")?
        };

        let shift = ceil_count(persons_scale * (2.0 / params.delta).ln())
            .filter(|&shift| shift <= MAX_SHIFT as f64)
            .ok_or_else(|| PjcError::InvalidParameter {
                name: "epsilon",
                reason: format!(
                    "epsilon {} and delta {} need more than {MAX_SHIFT} fake matches per \
                     group; raise epsilon or delta",
                    params.epsilon, params.delta
                ),
            })? as u64;
        let threshold = release_threshold(params, persons_scale)?;

        let loss = match params.noise {
            NoiseMode::DiscreteLaplace => PrivacyLoss {
                epsilon: params.epsilon,
                delta: params.delta,
            },
            NoiseMode::InsecureNone => PrivacyLoss {
                epsilon: f64::INFINITY,
                delta: 0.0,
            },
        };
        Ok(Self {
            mode: params.noise,
            persons_scale,
            shift,
            rows_scale,
            sum_scale,
            threshold,
            loss,
        })
    }

    /// Number of padding entries in each group list of message 2: `2s`.
    pub(crate) fn padding(&self) -> usize {
        (2 * self.shift) as usize
    }

    /// Draws `cells` fake-match counts, each `clamp(s + Z, 0, 2s)`. With no noise each
    /// count is exactly `s`.
    pub(crate) fn fake_counts(&self, cells: usize) -> Result<Vec<usize>, PjcError> {
        let noise = self.draw(self.persons_scale, cells)?;
        let shift = self.shift as i64;
        Ok(noise
            .into_iter()
            .map(|z| shift.saturating_add(z).clamp(0, 2 * shift) as usize)
            .collect())
    }

    /// Draws the row-count noise of `groups` groups.
    pub(crate) fn rows_noise(&self, groups: usize) -> Result<Vec<i64>, PjcError> {
        self.draw(self.rows_scale, groups)
    }

    /// Draws the sum noise of `groups` groups, in fixed-point units.
    pub(crate) fn sum_noise(&self, groups: usize) -> Result<Vec<i64>, PjcError> {
        if self.sum_scale == 0.0 {
            return Ok(vec![0; groups]);
        }
        self.draw(self.sum_scale, groups)
    }

    fn draw(&self, scale: f64, len: usize) -> Result<Vec<i64>, PjcError> {
        match self.mode {
            NoiseMode::InsecureNone => Ok(vec![0; len]),
            NoiseMode::DiscreteLaplace => measurement(scale)
                .and_then(|m| m.invoke(&vec![0; len]))
                .map_err(|e| opendp_failure("sample", &e)),
        }
    }
}

fn measurement(scale: f64) -> opendp::error::Fallible<IntegerNoise> {
    make_laplace(
        VectorDomain::new(AtomDomain::default()),
        L1Distance::default(),
        scale,
        None,
    )
}

/// Finds the smallest scale tried whose loss at `sensitivity`, by OpenDP's own privacy
/// map, is within `share`.
fn calibrate(sensitivity: i64, share: f64, name: &'static str) -> Result<f64, PjcError> {
    let mut scale = (sensitivity as f64 / share).next_up();
    for _ in 0..64 {
        if !(scale.is_finite() && scale <= MAX_SCALE) {
            return Err(PjcError::InvalidParameter {
                name,
                reason: format!(
                    "a noise scale of {scale} would be needed for sensitivity {sensitivity} \
                     at an epsilon share of {share}, above the limit {MAX_SCALE}; raise \
                     epsilon, narrow the bounds or lower max_rows_per_id"
                ),
            });
        }
        let loss = measurement(scale)
            .and_then(|m| m.map(&sensitivity))
            .map_err(|e| opendp_failure("calibrate", &e))?;
        if loss <= share {
            return Ok(scale);
        }
        scale *= SCALE_STEP;
    }
    Err(PjcError::Internal(
        "no noise scale met the epsilon share after 64 steps",
    ))
}

/// `τ = (max(m, 2) - 1) + ceil(b ln(1/δ))`. A group of at most `m - 1` persons reaches it
/// with probability below `δ`, because `P[Z >= t] < e^(-t/b)` for discrete Laplace noise.
fn release_threshold(params: &PjcParams, persons_scale: f64) -> Result<i64, PjcError> {
    let base = i64::try_from(params.min_group_size.max(2) - 1).ok();
    let margin = ceil_count(persons_scale * (1.0 / params.delta).ln());
    match (base, margin) {
        (Some(base), Some(margin)) => base
            .checked_add(margin as i64)
            .ok_or_else(|| threshold_overflow(params)),
        _ => Err(threshold_overflow(params)),
    }
}

fn threshold_overflow(params: &PjcParams) -> PjcError {
    PjcError::InvalidParameter {
        name: "min_group_size",
        reason: format!(
            "the release threshold for min_group_size {} exceeds i64::MAX",
            params.min_group_size
        ),
    }
}

/// Rounds a positive count up, enlarged by a relative 1e-12 first so that rounding in
/// `ln` and the product cannot land it below the exact real value. Returns `None` above
/// `2^62`.
fn ceil_count(value: f64) -> Option<f64> {
    let rounded = (value * (1.0 + 1e-12)).next_up().ceil();
    (rounded.is_finite() && rounded < (1u64 << 62) as f64).then_some(rounded)
}

fn opendp_failure(action: &str, error: &opendp::error::Error) -> PjcError {
    let detail = error.message.as_deref().unwrap_or_default();
    PjcError::Noise(format!(
        "OpenDP could not {action} discrete Laplace noise: {} {detail}",
        error.variant
    ))
}
