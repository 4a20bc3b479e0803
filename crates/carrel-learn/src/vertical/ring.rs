//! Fixed-point numbers in the ring Z(2^128) and the local operations on their shares.
//!
//! A real `v` is the ring element `round(v * 2^FRAC_BITS) mod 2^128`. A secret `x` is stored as
//! two shares with `x = x_0 + x_1 mod 2^128`. Party 0 is the guest and party 1 the host.
//! Public constants are multiplied in at [`CONST_BITS`] bits of precision and truncated back.

use super::VerticalError;

/// Fractional bits of every shared fixed-point value.
pub const FRAC_BITS: u32 = 24;

/// Fractional bits of a public constant in [`mul_public`].
pub const CONST_BITS: u32 = 32;

/// Largest absolute real that [`encode`] accepts: `2^20`. The comparisons of the sigmoid
/// work on the low 64 bits of a logit, so they are right while `|z| < 2^39`. Features of
/// at most `2^20` leave room for the weights of any model that training reaches on
/// standardised or bounded data.
pub const MAX_ABS: f64 = (1u64 << 20) as f64;

/// The two parties of a vertical training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Party 0, which has the labels, its own features and the intercept.
    Guest,
    /// Party 1, which has the other features.
    Host,
}

impl Role {
    /// Returns 0 for the guest and 1 for the host.
    pub fn index(self) -> usize {
        match self {
            Role::Guest => 0,
            Role::Host => 1,
        }
    }

    /// Returns the other party.
    pub fn peer(self) -> Role {
        match self {
            Role::Guest => Role::Host,
            Role::Host => Role::Guest,
        }
    }
}

/// Encodes a real as a fixed-point ring element.
///
/// # Errors
///
/// [`VerticalError::ValueOutOfRange`] for NaN, infinite values and `|v| > MAX_ABS`.
pub fn encode(value: f64) -> Result<u128, VerticalError> {
    if !value.is_finite() || value.abs() > MAX_ABS {
        return Err(VerticalError::ValueOutOfRange { value });
    }
    let scaled = (value * f64::from(1u32 << FRAC_BITS)).round_ties_even() as i128;
    Ok(scaled as u128)
}

/// Decodes a fixed-point ring element, read as a signed 128-bit integer, into a real.
pub fn decode(element: u128) -> f64 {
    element as i128 as f64 / f64::from(1u32 << FRAC_BITS)
}

/// Encodes a public constant at [`CONST_BITS`] bits for [`mul_public`].
pub fn encode_constant(value: f64) -> u128 {
    (value * (1u64 << CONST_BITS) as f64).round_ties_even() as i128 as u128
}

/// Truncates one share by `bits` bits, so that the two truncated shares add up to the
/// shared value divided by `2^bits`, off by at most one unit in the last place.
///
/// Party 0 shifts its share right arithmetically; party 1 negates, shifts and negates back.
/// The result is wrong only when the signed shares wrap around, which for a shared value of
/// magnitude `2^k` happens with probability about `2^(k + 1 - 128)`.
pub fn truncate(share: u128, role: Role, bits: u32) -> u128 {
    match role {
        Role::Guest => ((share as i128) >> bits) as u128,
        Role::Host => (((share.wrapping_neg()) as i128) >> bits).wrapping_neg() as u128,
    }
}

/// Truncates every share of a vector by `bits` bits.
pub fn truncate_all(shares: &mut [u128], role: Role, bits: u32) {
    for share in shares {
        *share = truncate(*share, role, bits);
    }
}

/// Multiplies a share by a public constant encoded by [`encode_constant`] and truncates back.
pub fn mul_public(share: u128, constant: u128, role: Role) -> u128 {
    truncate(share.wrapping_mul(constant), role, CONST_BITS)
}

/// Returns this party's share of a public value: the value for the guest, 0 for the host.
pub fn public_share(value: u128, role: Role) -> u128 {
    match role {
        Role::Guest => value,
        Role::Host => 0,
    }
}

/// Appends the little-endian bytes of each element.
pub fn put_u128s(out: &mut Vec<u8>, values: &[u128]) {
    out.reserve(values.len() * 16);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Appends the little-endian bytes of each word.
pub fn put_u64s(out: &mut Vec<u8>, values: &[u64]) {
    out.reserve(values.len() * 8);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Reads a message back as the sequence of fields it was written with.
pub struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `bytes`, a message named `what` in errors.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], VerticalError> {
        if self.bytes.len() < len {
            return Err(VerticalError::MessageLength {
                what: self.what,
                expected: len,
                found: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    /// Reads `count` 128-bit elements.
    pub fn u128s(&mut self, count: usize) -> Result<Vec<u128>, VerticalError> {
        let bytes = self.take(count * 16)?;
        Ok(bytes
            .chunks_exact(16)
            .map(|chunk| u128::from_le_bytes(chunk.try_into().expect("16 bytes")))
            .collect())
    }

    /// Reads `count` 64-bit words.
    pub fn u64s(&mut self, count: usize) -> Result<Vec<u64>, VerticalError> {
        let bytes = self.take(count * 8)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8 bytes")))
            .collect())
    }

    /// Checks that the whole message was read.
    pub fn finish(self) -> Result<(), VerticalError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(VerticalError::TrailingBytes {
                what: self.what,
                extra: self.bytes.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_decode_round_trip() {
        for v in [0.0, 1.5, -2.25, 1e6, -1e6, 123.456] {
            let back = decode(encode(v).unwrap());
            assert!((back - v).abs() < 1e-7, "{v} -> {back}");
        }
        assert!(encode(f64::NAN).is_err());
        assert!(encode(f64::INFINITY).is_err());
        assert!(encode(1e308).is_err());
        assert!(encode(2e6).is_err());
    }

    #[test]
    fn truncation_of_shares_is_within_one_unit() {
        let mut seed = 7u128;
        for v in [3.75, -3.75, 0.0, 1000.5, -0.001] {
            for _ in 0..200 {
                seed = seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                    .wrapping_add(1);
                let x = encode(v).unwrap().wrapping_mul(1 << 10);
                let x0 = seed;
                let x1 = x.wrapping_sub(x0);
                let t = truncate(x0, Role::Guest, 10).wrapping_add(truncate(x1, Role::Host, 10));
                let diff = (t as i128 - encode(v).unwrap() as i128).abs();
                assert!(diff <= 1, "v={v} diff={diff}");
            }
        }
    }

    #[test]
    fn public_constants_multiply_within_precision() {
        let x = encode(12.5).unwrap();
        let c = encode_constant(-0.3);
        let y = mul_public(x, c, Role::Guest);
        assert!((decode(y) + 3.75).abs() < 1e-6);
    }
}
