//! Discrete Laplace noise, added once by a designated party before masking.

use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;

use super::{Round, SecAggError};

/// Base-2 logarithm of the probability β that the noise of one coordinate exceeds
/// [`LaplaceNoise::margin`] in absolute value.
pub const MARGIN_FAILURE_LOG2: i32 = -40;

type NoiseMeasurement =
    Measurement<VectorDomain<AtomDomain<i64>>, L1Distance<i64>, MaxDivergence, Vec<i64>>;

/// Discrete Laplace noise with a scale in encoded units, sampled by OpenDP.
///
/// A sample X takes the integer value k with probability proportional to
/// `exp(-|k| / scale)`. Exactly one party, picked by the caller, adds noise to its encoded
/// vector before masking, so the total carries one noise sample per coordinate.
///
/// # Privacy
///
/// The privacy unit and the neighbouring relation are the caller's: the caller bounds by
/// `Δ₁` the L1 change, summed over coordinates and in encoded units, that one unit can make
/// to the total. The released total then satisfies ε-DP (pure DP, OpenDP's
/// `MaxDivergence`) towards the coordinator with `ε = Δ₁ / scale`, as
/// [`LaplaceNoise::privacy_loss`] computes. The noising party can subtract its own noise, so this
/// guarantee does not hold against the coordinator colluding with that party.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaplaceNoise {
    scale: f64,
}

impl LaplaceNoise {
    /// Creates noise with scale `scale`, in encoded units. A scale of 0 adds no noise.
    ///
    /// # Errors
    ///
    /// [`SecAggError::InvalidNoiseScale`] unless `scale` is finite and at least 0.
    pub fn new(scale: f64) -> Result<Self, SecAggError> {
        if !scale.is_finite() || scale < 0.0 {
            return Err(SecAggError::InvalidNoiseScale { scale });
        }
        Ok(Self { scale })
    }

    /// Returns the scale in encoded units.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Returns the tail bound `ceil(scale * ln(2 / β))` with β = 2^-40, about
    /// `28.42 * scale`, for [`RoundConfig::noise_margin`].
    ///
    /// For an integer t >= 1, `P(|X| >= t) = 2 p^t / (1 + p) <= 2 p^t` with
    /// `p = exp(-1 / scale)`, so a sample exceeds the margin in absolute value with
    /// probability at most β. Over a vector of d coordinates the probability is at most d·β.
    ///
    /// [`RoundConfig::noise_margin`]: super::RoundConfig::noise_margin
    pub fn margin(&self) -> u64 {
        let log_two_over_beta = f64::from(1 - MARGIN_FAILURE_LOG2) * std::f64::consts::LN_2;
        // The cast saturates at u64::MAX for scales too large for any modulus.
        (self.scale * log_two_over_beta).ceil() as u64
    }

    /// Computes ε, the privacy loss of one noised total for an L1 sensitivity `l1_sensitivity`
    /// in encoded units, through OpenDP's privacy map.
    ///
    /// # Errors
    ///
    /// [`SecAggError::OpenDpFailed`] when the sensitivity exceeds `i64::MAX` or OpenDP
    /// rejects the scale.
    pub fn privacy_loss(&self, l1_sensitivity: u64) -> Result<f64, SecAggError> {
        let sensitivity = i64::try_from(l1_sensitivity).map_err(|_| SecAggError::OpenDpFailed {
            action: "compute the privacy loss",
            reason: format!("sensitivity {l1_sensitivity} exceeds i64::MAX"),
        })?;
        let measurement = self.measurement()?;
        measurement
            .map(&sensitivity)
            .map_err(|error| SecAggError::OpenDpFailed {
                action: "compute the privacy loss",
                reason: error.to_string(),
            })
    }

    /// Adds one noise sample to each coordinate of an encoded vector, modulo M.
    ///
    /// Call this on the designated party's encoded vector only, before [`MaskingParty::mask`].
    ///
    /// NOTE: the noise is not truncated to the margin, which keeps OpenDP's pure-DP guarantee.
    /// With probability at most β = 2^-40 per coordinate, a sample exceeds the margin and the
    /// centred total of that coordinate may wrap around the modulus.
    ///
    /// # Errors
    ///
    /// - [`SecAggError::NoiseMarginTooSmall`] when the round declared a smaller margin than
    ///   [`LaplaceNoise::margin`].
    /// - [`SecAggError::InputLengthMismatch`] unless `encoded` has the round's vector length.
    /// - [`SecAggError::OpenDpFailed`] when OpenDP rejects the scale or fails to sample.
    ///
    /// [`MaskingParty::mask`]: super::MaskingParty::mask
    pub fn add_to(&self, encoded: &mut [u64], round: &Round) -> Result<(), SecAggError> {
        if self.margin() > round.noise_margin() {
            return Err(SecAggError::NoiseMarginTooSmall {
                declared: round.noise_margin(),
                required: self.margin(),
            });
        }
        if encoded.len() != round.vector_len() {
            return Err(SecAggError::InputLengthMismatch {
                expected: round.vector_len(),
                found: encoded.len(),
            });
        }

        // OpenDP adds noise to a zero vector, which gives the noise samples themselves.
        let samples = self
            .measurement()?
            .invoke(&vec![0i64; encoded.len()])
            .map_err(|error| SecAggError::OpenDpFailed {
                action: "sample noise",
                reason: error.to_string(),
            })?;

        let modulus = round.modulus();
        for (value, sample) in encoded.iter_mut().zip(samples) {
            *value = modulus.add(*value, modulus.reduce(i128::from(sample)));
        }
        Ok(())
    }

    fn measurement(&self) -> Result<NoiseMeasurement, SecAggError> {
        let domain = VectorDomain::new(AtomDomain::<i64>::default());
        make_laplace(domain, L1Distance::<i64>::default(), self.scale, None).map_err(|error| {
            SecAggError::OpenDpFailed {
                action: "build the Laplace mechanism",
                reason: error.to_string(),
            }
        })
    }
}
