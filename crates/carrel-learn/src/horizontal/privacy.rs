//! Privacy accounting and Gaussian noise of DP-SGD, through OpenDP.
//!
//! Privacy unit: one row of one provider. Neighbouring datasets differ in one row's features
//! and label, with the same row counts. Measure: ρ-zero-concentrated DP, converted to
//! (ε, δ)-DP. With σ = `noise_multiplier`, one round costs
//!
//! ```text
//!   ρ_round = local_epochs · ρ_step + ρ_loss,   ρ_step ≈ 2 / σ²,   ρ_loss ≈ 1 / (2 σ²)
//! ```
//!
//! and `rounds` rounds cost `rounds · ρ_round`. OpenDP's privacy maps compute ρ_step and
//! ρ_loss, rounded up, and OpenDP's conversion gives ε at the configured δ.

use opendp::combinators::{CompositionMeasure, ConcentratedMeasure};
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::{AbsoluteDistance, L2Distance};

use super::{DpConfig, TrainingConfig, TrainingError};

/// Gaussian noise on a vector of reals, with L2 sensitivity.
type VectorGaussian = Measurement<
    VectorDomain<AtomDomain<f64>>,
    L2Distance<f64>,
    ZeroConcentratedDivergence,
    Vec<f64>,
>;

/// Gaussian noise on one real, with absolute sensitivity.
type ScalarGaussian =
    Measurement<AtomDomain<f64>, AbsoluteDistance<f64>, ZeroConcentratedDivergence, f64>;

/// Privacy loss of a training run, per row of a provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacyLoss {
    /// ρ of zero-concentrated DP; infinite without DP.
    pub rho: f64,
    /// ε at `delta`; infinite without DP.
    pub epsilon: f64,
    /// δ of the conversion: the configured `dp.delta`, or 0 without DP.
    pub delta: f64,
}

impl PrivacyLoss {
    /// Returns the loss of a run without noise: ρ and ε infinite, δ 0.
    pub fn unbounded() -> Self {
        Self {
            rho: f64::INFINITY,
            epsilon: f64::INFINITY,
            delta: 0.0,
        }
    }
}

/// Computes the privacy loss of `rounds` rounds of training under `config`, so that a node
/// can charge the agreement's budget before training starts.
///
/// Each row enters one batch per local epoch, because the batches of an epoch partition the
/// provider's rows, so an epoch costs one step's ρ. The released loss of each round costs
/// ρ_loss. Rounds and epochs compose by adding ρ, and no amplification by subsampling is
/// claimed. Without DP the loss is unbounded, so a budget check rejects the run.
///
/// # Errors
///
/// [`TrainingError::InvalidConfig`] for invalid settings, and [`TrainingError::OpenDpFailed`]
/// when OpenDP rejects a scale or the conversion.
pub fn privacy_loss(config: &TrainingConfig, rounds: u32) -> Result<PrivacyLoss, TrainingError> {
    config.validate()?;
    let Some(dp) = &config.dp else {
        return Ok(PrivacyLoss::unbounded());
    };
    let rho = rho_of_rounds(dp, config.local_epochs, rounds)?;
    privacy_loss_of_rho(dp, rho)
}

/// Converts ρ to (ε, δ) at the configured δ with OpenDP's zCDP-to-approximate-DP conversion.
pub(super) fn privacy_loss_of_rho(dp: &DpConfig, rho: f64) -> Result<PrivacyLoss, TrainingError> {
    let profile = <ZeroConcentratedDivergence as ConcentratedMeasure>::convert(rho)
        .map_err(|error| opendp_failed("convert zCDP to approximate DP", &error))?;
    let epsilon = profile
        .epsilon(dp.delta)
        .map_err(|error| opendp_failed("convert zCDP to approximate DP", &error))?;
    Ok(PrivacyLoss {
        rho,
        epsilon,
        delta: dp.delta,
    })
}

/// Returns ρ of `rounds` rounds of `local_epochs` epochs each.
pub(super) fn rho_of_rounds(
    dp: &DpConfig,
    local_epochs: u32,
    rounds: u32,
) -> Result<f64, TrainingError> {
    let per_round = rho_per_round(dp, local_epochs)?;
    compose(vec![per_round; rounds as usize])
}

/// Returns ρ of one round: one step per epoch and one loss release.
pub(super) fn rho_per_round(dp: &DpConfig, local_epochs: u32) -> Result<f64, TrainingError> {
    // Replacing a row changes a batch's sum of clipped gradients by at most 2 · clip_norm
    // in L2, and its clipped loss, in [0, loss_clip], by at most loss_clip.
    let step = gradient_noise(dp)?
        .map(&(2.0 * dp.clip_norm))
        .map_err(|error| opendp_failed("compute the privacy loss of a step", &error))?;
    let loss = loss_noise(dp)?
        .map(&dp.loss_clip)
        .map_err(|error| opendp_failed("compute the privacy loss of the loss", &error))?;

    let mut losses = vec![step; local_epochs as usize];
    losses.push(loss);
    compose(losses)
}

/// Noise of a batch's summed clipped gradient: N(0, (noise_multiplier · clip_norm)²) on each
/// coordinate.
pub(super) fn gradient_noise(dp: &DpConfig) -> Result<VectorGaussian, TrainingError> {
    let scale = dp.noise_multiplier * dp.clip_norm;
    let domain = VectorDomain::new(AtomDomain::<f64>::new_non_nan());
    make_gaussian(domain, L2Distance::default(), scale, None)
        .map_err(|error| opendp_failed("build the Gaussian mechanism", &error))
}

/// Noise of a provider's summed clipped loss: N(0, (noise_multiplier · loss_clip)²).
pub(super) fn loss_noise(dp: &DpConfig) -> Result<ScalarGaussian, TrainingError> {
    let scale = dp.noise_multiplier * dp.loss_clip;
    make_gaussian(
        AtomDomain::<f64>::new_non_nan(),
        AbsoluteDistance::default(),
        scale,
        None,
    )
    .map_err(|error| opendp_failed("build the Gaussian mechanism", &error))
}

fn compose(rhos: Vec<f64>) -> Result<f64, TrainingError> {
    ZeroConcentratedDivergence
        .compose(rhos)
        .map_err(|error| opendp_failed("compose privacy losses", &error))
}

pub(super) fn opendp_failed(action: &'static str, error: &opendp::error::Error) -> TrainingError {
    let detail = error.message.as_deref().unwrap_or_default();
    TrainingError::OpenDpFailed {
        action,
        reason: format!("{} {detail}", error.variant),
    }
}
