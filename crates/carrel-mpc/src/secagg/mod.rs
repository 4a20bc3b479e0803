//! Secure aggregation of three or more providers' vectors by pairwise masks.
//!
//! Each provider encodes its vector in the ring Z_M with M = 2^bits and adds one mask per
//! other provider. Two providers derive the same mask from their X25519 shared secret, and one
//! adds it while the other subtracts it, so the masks cancel in the sum. The coordinator
//! learns the element-wise total and, against honest-but-curious parties, nothing else about
//! any single provider's vector. `NOTES.md` gives the construction, the threat model and the
//! collusion limits.
//!
//! ```text
//!   every party:  Round::new(RoundConfig)        at least 3 parties, bound check
//!   provider i:   FixedPoint::encode or IntegerEncoding::encode
//!                 LaplaceNoise::add_to           designated provider only
//!                 MaskingParty::new ─► public key to every provider
//!                 MaskingParty::mask(encoded, all keys) ─► masked vector to the coordinator
//!   coordinator:  Aggregator::add for each party ─► Aggregator::finish ─► centred totals
//!                 FixedPoint::decode_mean or decode_sum
//! ```
//!
//! # Dropouts
//!
//! This design has no dropout recovery: when a provider's masked vector is missing,
//! [`Aggregator::finish`] returns [`SecAggError::MissingParties`] and releases nothing,
//! because the missing party's masks do not cancel. The caller starts a new round with the
//! remaining providers, with fresh keys and a new session id.
//!
//! # Threat model
//!
//! All parties are honest-but-curious: they follow the protocol and try to learn more from
//! what they see. Parties are numbered `0..n` in the same order everywhere, and public keys
//! reach every provider unaltered, for example over the node's signed requests. A malicious
//! party that sends wrong keys or wrong vectors can spoil the total, and the protocol does not
//! detect it.

mod encoding;
mod error;
mod mask;
mod noise;
mod round;

#[cfg(test)]
mod test;

pub use encoding::{FixedPoint, IntegerEncoding};
pub use error::SecAggError;
pub use mask::{Aggregator, MaskingParty, PUBLIC_KEY_LEN, SEED_DOMAIN};
pub use noise::{LaplaceNoise, MARGIN_FAILURE_LOG2};
pub use round::{MIN_PARTIES, Modulus, Round, RoundConfig};
