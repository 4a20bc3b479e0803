//! The error type of secure aggregation.

use std::fmt;

/// Error of a secure-aggregation step.
///
/// Messages name indices, coordinates, counts and configured bounds. They never contain an
/// input value, a mask, a seed, a key or a masked vector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SecAggError {
    // Configuration of the round and of the encodings.
    /// Settled round settings name another session, party count or vector length.
    #[error(
        "the settled round has session {found:?}, which differs from the round the key was \
         drawn for ({expected:?}), or a different party count or vector length"
    )]
    RoundChanged {
        /// Session of the round the key was drawn for.
        expected: String,
        /// Session of the settled round.
        found: String,
    },
    /// The modulus size is outside the supported range.
    #[error("a modulus of {bits} bits is not supported; choose from 8 to 64 bits")]
    InvalidModulusBits {
        /// Requested number of bits.
        bits: u32,
    },
    /// The round has fewer than three parties.
    #[error(
        "a round needs at least 3 parties but {parties} were configured, because with 2 \
         parties each one could subtract its own input from the total and learn the other's"
    )]
    TooFewParties {
        /// Configured number of parties.
        parties: usize,
    },
    /// The round has more parties than a 32-bit party index can number.
    #[error("a round supports at most {max} parties but {parties} were configured")]
    TooManyParties {
        /// Configured number of parties.
        parties: usize,
        /// Largest supported number of parties.
        max: usize,
    },
    /// The clipping bound of a fixed-point encoding is zero, negative or not finite.
    #[error("clipping bound {clip} is invalid; expected a finite number greater than 0")]
    InvalidClip {
        /// Rejected clipping bound.
        clip: f64,
    },
    /// The fixed-point encoding has fewer than two levels.
    #[error("a fixed-point encoding with {levels} levels is invalid; expected at least 2 levels")]
    InvalidLevels {
        /// Rejected number of levels.
        levels: u32,
    },
    /// The noise scale is negative or not finite.
    #[error("noise scale {scale} is invalid; expected a finite number of at least 0")]
    InvalidNoiseScale {
        /// Rejected scale.
        scale: f64,
    },
    /// The largest possible total does not fit the configured modulus.
    #[error(
        "the total can reach {} ({max_total_bits} bits) with a noise margin of {}, but a \
         {modulus_bits}-bit modulus represents only totals below {}; use a modulus of at \
         least {required_bits} bits",
        Grouped(*.max_total),
        Grouped(u128::from(*.noise_margin)),
        Grouped(*.half_modulus)
    )]
    ModulusTooSmall {
        /// Largest possible absolute total, noise margin included.
        max_total: u128,
        /// Number of bits of `max_total`.
        max_total_bits: u32,
        /// Noise margin included in `max_total`.
        noise_margin: u64,
        /// Configured modulus size in bits.
        modulus_bits: u32,
        /// Half the modulus, which every absolute total must stay below.
        half_modulus: u128,
        /// Smallest modulus size in bits whose half exceeds `max_total`.
        required_bits: u32,
    },
    /// The largest possible total does not fit even a 64-bit modulus.
    #[error(
        "the total can reach {} ({max_total_bits} bits) with a noise margin of {}, which no \
         modulus of at most 64 bits can represent; lower the weights, the levels, the noise \
         scale or the number of parties",
        Grouped(*.max_total),
        Grouped(u128::from(*.noise_margin))
    )]
    TotalTooLarge {
        /// Largest possible absolute total, noise margin included.
        max_total: u128,
        /// Number of bits of `max_total`.
        max_total_bits: u32,
        /// Noise margin included in `max_total`.
        noise_margin: u64,
    },
    /// The noise needs a larger margin than the round declared.
    #[error(
        "the round declares a noise margin of {declared} but this noise needs {required}; \
         configure the round with the noise's margin"
    )]
    NoiseMarginTooSmall {
        /// Margin declared in the round configuration.
        declared: u64,
        /// Margin of the noise being added.
        required: u64,
    },

    // A party's own input.
    /// An input vector has the wrong number of coordinates.
    #[error("the input vector has {found} coordinates but the round expects {expected}")]
    InputLengthMismatch {
        /// Vector length of the round.
        expected: usize,
        /// Length of the input.
        found: usize,
    },
    /// A real input is NaN.
    #[error("coordinate {coordinate} is NaN; expected a number")]
    NanValue {
        /// Position of the NaN in the input vector.
        coordinate: usize,
    },
    /// An integer input is outside its declared bound.
    #[error(
        "coordinate {coordinate} is outside the declared bound of ±{max_abs}; raise the \
         bound for every party or fix the input"
    )]
    ValueOutOfRange {
        /// Position of the value in the input vector.
        coordinate: usize,
        /// Declared bound on absolute values.
        max_abs: u64,
    },
    /// An encoded contribution exceeds the bound the round was checked with.
    #[error(
        "coordinate {coordinate} contributes more than the round's declared maximum of {}; \
         configure the round with the largest weight any party uses",
        Grouped(*.max_contribution)
    )]
    ContributionTooLarge {
        /// Position of the contribution in the input vector.
        coordinate: usize,
        /// Maximum contribution declared in the round configuration.
        max_contribution: u128,
    },
    /// An encoded vector passed to masking contains a value outside the ring.
    #[error(
        "encoded coordinate {coordinate} is not below 2^{modulus_bits}; encode the input \
         with this round's encoders"
    )]
    EncodedValueOutOfRange {
        /// Position of the value in the encoded vector.
        coordinate: usize,
        /// Modulus size of the round in bits.
        modulus_bits: u32,
    },
    /// A weighted mean was requested with a total weight of zero.
    #[error("the total weight is 0; a weighted mean needs a total weight of at least 1")]
    ZeroTotalWeight,

    // Messages from other parties.
    /// The list of public keys does not have one key per party.
    #[error("expected {expected} public keys, one per party, but found {found}")]
    PublicKeyCountMismatch {
        /// Number of parties of the round.
        expected: usize,
        /// Number of keys received.
        found: usize,
    },
    /// The key at this party's own index is not this party's key.
    #[error(
        "the public key at index {index} is not this party's own key; check that every \
         party numbers the participants in the same order"
    )]
    OwnKeyMismatch {
        /// This party's index.
        index: usize,
    },
    /// A peer's public key gives an all-zero X25519 shared secret.
    #[error(
        "the public key of party {party} gives a non-contributory X25519 shared secret \
         (a low-order point); abort the round and exclude or re-key that party"
    )]
    NonContributoryKey {
        /// Index of the party whose key was rejected.
        party: usize,
    },
    /// A party index is not in `0..parties`.
    #[error("party index {index} is out of range; the round has parties 0 to {}", .parties - 1)]
    PartyOutOfRange {
        /// Rejected index.
        index: usize,
        /// Number of parties of the round.
        parties: usize,
    },
    /// A second masked vector arrived for the same party.
    #[error("a masked vector from party {index} was already received; each party sends one")]
    DuplicateParty {
        /// Index of the party.
        index: usize,
    },
    /// A masked vector has the wrong number of coordinates.
    #[error(
        "the masked vector from party {index} has {found} coordinates but the round \
         expects {expected}"
    )]
    MaskedLengthMismatch {
        /// Index of the sending party.
        index: usize,
        /// Vector length of the round.
        expected: usize,
        /// Length received.
        found: usize,
    },
    /// A masked vector contains a value outside the ring.
    #[error(
        "coordinate {coordinate} of the masked vector from party {index} is not below \
         2^{modulus_bits}"
    )]
    MaskedValueOutOfRange {
        /// Index of the sending party.
        index: usize,
        /// Position of the value.
        coordinate: usize,
        /// Modulus size of the round in bits.
        modulus_bits: u32,
    },
    /// Some parties sent no masked vector, so the round aborts and releases nothing.
    #[error(
        "no total released because parties {missing:?} sent no masked vector; this \
         protocol aborts on any dropout, so start a new round with the remaining parties"
    )]
    MissingParties {
        /// Indices of the parties whose vectors are missing, in increasing order.
        missing: Vec<usize>,
    },

    // Failures of the platform.
    /// The operating system's random source failed.
    #[error("the operating system's random source failed: {reason}")]
    RandomSourceFailed {
        /// Error reported by the random source.
        reason: String,
    },
    /// OpenDP rejected a request or failed while sampling.
    #[error("OpenDP failed to {action}: {reason}")]
    OpenDpFailed {
        /// Operation requested from OpenDP.
        action: &'static str,
        /// Error reported by OpenDP.
        reason: String,
    },
}

/// An unsigned integer displayed with commas between groups of three digits.
struct Grouped(u128);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (position, digit) in digits.chars().enumerate() {
            let remaining = digits.len() - position;
            if position > 0 && remaining.is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        f.write_str(&grouped)
    }
}
