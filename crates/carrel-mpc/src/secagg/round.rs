//! The ring Z_M, the round configuration and the check that every total fits the ring.

use super::SecAggError;

/// Smallest number of parties of a round.
///
/// With two parties, the coordinator's total minus one party's own input is the other
/// party's input, so pairwise masks would hide nothing from either party.
pub const MIN_PARTIES: usize = 3;

/// The ring Z_M of integers modulo M = 2^bits, with `bits` from 8 to 64.
///
/// Elements are stored as `u64` values below M. Decoding maps an element to its centred
/// representative in (-M/2, M/2].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modulus {
    bits: u32,
}

impl Modulus {
    /// Smallest supported modulus size in bits.
    pub const MIN_BITS: u32 = 8;
    /// Largest supported modulus size in bits.
    pub const MAX_BITS: u32 = 64;

    /// Creates the ring of integers modulo 2^`bits`.
    ///
    /// # Errors
    ///
    /// [`SecAggError::InvalidModulusBits`] unless `bits` is from 8 to 64.
    pub fn new(bits: u32) -> Result<Self, SecAggError> {
        if !(Self::MIN_BITS..=Self::MAX_BITS).contains(&bits) {
            return Err(SecAggError::InvalidModulusBits { bits });
        }
        Ok(Self { bits })
    }

    /// Returns the modulus size in bits.
    pub fn bits(self) -> u32 {
        self.bits
    }

    /// Returns M/2, the bound that every absolute total must stay below.
    pub fn half(self) -> u128 {
        1u128 << (self.bits - 1)
    }

    /// Returns whether `value` is a ring element, that is below M.
    pub fn contains(self, value: u64) -> bool {
        value & !self.low_bits() == 0
    }

    /// Reduces a signed integer modulo M.
    pub fn reduce(self, value: i128) -> u64 {
        // Two's complement wraps modulo 2^128, and M divides 2^128, so keeping the low bits
        // gives the residue in [0, M). The result is below 2^64, so the cast keeps it whole.
        (value as u128 & u128::from(self.low_bits())) as u64
    }

    /// Adds two ring elements.
    pub fn add(self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b) & self.low_bits()
    }

    /// Subtracts ring element `b` from ring element `a`.
    pub fn sub(self, a: u64, b: u64) -> u64 {
        a.wrapping_sub(b) & self.low_bits()
    }

    /// Maps a ring element to its centred representative in (-M/2, M/2].
    pub fn centre(self, value: u64) -> i128 {
        let value = value & self.low_bits();
        if u128::from(value) > self.half() {
            i128::from(value) - (1i128 << self.bits)
        } else {
            i128::from(value)
        }
    }

    /// Returns M - 1, the mask that keeps the low `bits` bits.
    fn low_bits(self) -> u64 {
        u64::MAX >> (64 - self.bits)
    }
}

/// Settings of one aggregation round, which every party must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundConfig {
    /// Identifier of the round. It enters every pairwise seed, so it must be unique per round.
    pub session_id: String,
    /// Number of parties that send a masked vector, indexed `0..parties`.
    pub parties: usize,
    /// Number of coordinates of every vector.
    pub vector_len: usize,
    /// Size of the modulus in bits, from 8 to 64.
    pub modulus_bits: u32,
    /// Largest absolute value of one party's encoded contribution to one coordinate, before
    /// reduction: [`FixedPoint::max_contribution`] of the largest weight, or
    /// [`IntegerEncoding::max_contribution`].
    ///
    /// [`FixedPoint::max_contribution`]: super::FixedPoint::max_contribution
    /// [`IntegerEncoding::max_contribution`]: super::IntegerEncoding::max_contribution
    pub max_contribution: u128,
    /// Bound on the absolute noise added to each coordinate of the total:
    /// [`LaplaceNoise::margin`], or 0 without noise.
    ///
    /// [`LaplaceNoise::margin`]: super::LaplaceNoise::margin
    pub noise_margin: u64,
}

/// A round whose configuration passed every check, among them the bound check.
///
/// Masking and aggregation need a `Round`, so a round whose totals could wrap around the
/// modulus is rejected before any party masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    session_id: String,
    parties: usize,
    vector_len: usize,
    modulus: Modulus,
    max_contribution: u128,
    noise_margin: u64,
    max_total: u128,
}

impl Round {
    /// Checks a configuration and returns the round.
    ///
    /// The bound check computes the largest absolute total of a coordinate as
    /// `max_total = parties * max_contribution + noise_margin` and requires
    /// `max_total < M/2`, so that the centred representative of the total in the ring is the
    /// total itself.
    ///
    /// # Errors
    ///
    /// - [`SecAggError::TooFewParties`] below [`MIN_PARTIES`], and
    ///   [`SecAggError::TooManyParties`] above `u32::MAX` parties.
    /// - [`SecAggError::InvalidModulusBits`] unless `modulus_bits` is from 8 to 64.
    /// - [`SecAggError::ModulusTooSmall`] when the total may not fit, with the figures and the
    ///   smallest modulus size that fits, or [`SecAggError::TotalTooLarge`] when no supported
    ///   modulus fits.
    pub fn new(config: RoundConfig) -> Result<Self, SecAggError> {
        let parties = check_party_count(config.parties)?;
        let modulus = Modulus::new(config.modulus_bits)?;
        let max_total = max_total(parties, config.max_contribution, config.noise_margin);
        check_total_fits(max_total, config.noise_margin, modulus)?;
        Ok(Self {
            session_id: config.session_id,
            parties: config.parties,
            vector_len: config.vector_len,
            modulus,
            max_contribution: config.max_contribution,
            noise_margin: config.noise_margin,
            max_total,
        })
    }

    /// Returns the round identifier.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Returns the number of parties.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// Returns the number of coordinates of every vector.
    pub fn vector_len(&self) -> usize {
        self.vector_len
    }

    /// Returns the ring of the round.
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }

    /// Returns the largest absolute contribution of one party to one coordinate.
    pub fn max_contribution(&self) -> u128 {
        self.max_contribution
    }

    /// Returns the declared bound on the absolute noise of each coordinate.
    pub fn noise_margin(&self) -> u64 {
        self.noise_margin
    }

    /// Returns the largest absolute total of one coordinate, noise margin included.
    pub fn max_total(&self) -> u128 {
        self.max_total
    }
}

/// Computes `parties * max_contribution + noise_margin`, saturating at `u128::MAX`.
fn max_total(parties: u32, max_contribution: u128, noise_margin: u64) -> u128 {
    u128::from(parties)
        .saturating_mul(max_contribution)
        .saturating_add(u128::from(noise_margin))
}

/// Checks the number of parties and returns it as a `u32`, the type of a party index in the
/// pairwise seeds.
fn check_party_count(parties: usize) -> Result<u32, SecAggError> {
    if parties < MIN_PARTIES {
        return Err(SecAggError::TooFewParties { parties });
    }
    u32::try_from(parties).map_err(|_| SecAggError::TooManyParties {
        parties,
        max: usize::try_from(u32::MAX).unwrap_or(usize::MAX),
    })
}

fn check_total_fits(
    max_total: u128,
    noise_margin: u64,
    modulus: Modulus,
) -> Result<(), SecAggError> {
    if max_total < modulus.half() {
        return Ok(());
    }

    let max_total_bits = bit_length(max_total);
    // A total x fits when x < 2^(b - 1), that is when b is one more than the bit length of x.
    let required_bits = max_total_bits + 1;
    if required_bits > Modulus::MAX_BITS {
        return Err(SecAggError::TotalTooLarge {
            max_total,
            max_total_bits,
            noise_margin,
        });
    }
    Err(SecAggError::ModulusTooSmall {
        max_total,
        max_total_bits,
        noise_margin,
        modulus_bits: modulus.bits(),
        half_modulus: modulus.half(),
        required_bits,
    })
}

/// Returns the number of bits needed to write `value` in binary, 0 for 0.
fn bit_length(value: u128) -> u32 {
    u128::BITS - value.leading_zeros()
}
