//! Layout of the aggregated vector, and the secure-aggregation round that every party
//! builds from the same settings.
//!
//! A training round aggregates `features + 3` coordinates, each a provider's value encoded
//! with weight `n_i`, its row count:
//!
//! ```text
//!   0 .. features   update of the weights      local model minus global model
//!   features        update of the intercept
//!   features + 1    mean training loss         of the global model on the provider's rows
//!   features + 2    the constant +clip         decodes to the total row count
//! ```
//!
//! The census aggregates only the last coordinate. The constant `+clip` sits on the top
//! level `levels - 1`, so its total is exactly `N * (levels - 1)`.

use carrel_mpc::secagg::{FixedPoint, Modulus, Round, RoundConfig};

use super::{TrainingConfig, TrainingError};

/// Length of a training round's vector for `features` features.
pub(super) fn training_len(features: usize) -> usize {
    features + 3
}

/// Position of the mean loss in a training round's vector.
pub(super) fn loss_index(features: usize) -> usize {
    features + 1
}

/// Position of the row count in a training round's vector.
pub(super) fn count_index(features: usize) -> usize {
    features + 2
}

/// Returns the fixed-point encoding for `parties` providers and the secure-aggregation round
/// of `vector_len` coordinates in the 64-bit ring.
pub(super) fn secagg_round(
    config: &TrainingConfig,
    session_id: &str,
    parties: usize,
    vector_len: usize,
) -> Result<(FixedPoint, Round), TrainingError> {
    let levels = config.encoding.levels_for(parties)?;
    let encoding = FixedPoint::new(config.encoding.clip, levels)?;
    let round = Round::new(RoundConfig {
        session_id: session_id.to_owned(),
        parties,
        vector_len,
        modulus_bits: Modulus::MAX_BITS,
        max_contribution: encoding.max_contribution(config.encoding.max_party_rows),
        noise_margin: 0,
    })?;
    Ok((encoding, round))
}

/// Decodes the total row count from the centred total of the count coordinate.
pub(super) fn decode_count(
    total: i128,
    encoding: &FixedPoint,
    round: u32,
) -> Result<u64, TrainingError> {
    let top_level = i128::from(encoding.levels() - 1);
    if total < 0 || total % top_level != 0 {
        return Err(TrainingError::CorruptCount { round });
    }
    u64::try_from(total / top_level).map_err(|_| TrainingError::CorruptCount { round })
}
