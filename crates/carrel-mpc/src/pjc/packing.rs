//! Packing of a signed fixed-point sum and a row count into one Paillier plaintext.
//!
//! The pair `(sum, rows)` becomes `x = sum + rows × 2^K mod n` with `K =`
//! [`PACKING_BITS`]. Adding plaintexts adds both parts, and unpacking recovers them as
//! long as the summed `|sum|` stays below `2^(K-1)` and the whole value below `n / 2`.
//! Validated parameters keep sums below `2^104` and the noise below `2^63`.

use openssl::bn::{BigNum, BigNumContext, BigNumRef};

use super::paillier::PaillierError;

/// Bits below the row count in a packed plaintext.
pub const PACKING_BITS: i32 = 128;

/// Packs `sum + rows × 2^K`, reduced into `[0, n)`.
pub(crate) fn pack(
    sum: i128,
    rows: i128,
    modulus: &BigNumRef,
    ctx: &mut BigNumContext,
) -> Result<BigNum, PaillierError> {
    let mut rows = bignum_from_i128(rows)?;
    let mut sum = bignum_from_i128(sum)?;
    let mut shifted = BigNum::new()?;
    shifted.lshift(&rows, PACKING_BITS)?;
    let mut value = BigNum::new()?;
    value.checked_add(&shifted, &sum)?;
    let mut reduced = BigNum::new()?;
    reduced.nnmod(&value, modulus, ctx)?;
    for part in [&mut value, &mut shifted, &mut rows, &mut sum] {
        part.clear();
    }
    Ok(reduced)
}

/// Unpacks a plaintext in `[0, n)`: centres it into `(-n/2, n/2]`, takes the sum as the
/// signed residue mod `2^K` in `[-2^(K-1), 2^(K-1))` and the rows as the rest.
///
/// Returns `Ok(None)` if the row count does not fit `i128`, which no honest run produces.
pub(crate) fn unpack(
    value: &BigNumRef,
    modulus: &BigNumRef,
    ctx: &mut BigNumContext,
) -> Result<Option<(i128, i128)>, PaillierError> {
    let mut half = BigNum::new()?;
    half.rshift1(modulus)?;
    let mut centred = value.to_owned()?;
    if centred > half {
        let mut negative = BigNum::new()?;
        negative.checked_sub(&centred, modulus)?;
        centred = negative;
    }

    let one = BigNum::from_u32(1)?;
    let mut radix = BigNum::new()?;
    radix.lshift(&one, PACKING_BITS)?;
    let mut low = BigNum::new()?;
    low.nnmod(&centred, &radix, ctx)?;
    let mut half_radix = BigNum::new()?;
    half_radix.rshift1(&radix)?;
    if low >= half_radix {
        let mut negative = BigNum::new()?;
        negative.checked_sub(&low, &radix)?;
        low = negative;
    }

    let mut high = BigNum::new()?;
    high.checked_sub(&centred, &low)?;
    let mut rows = BigNum::new()?;
    rows.checked_div(&high, &radix, ctx)?;
    let sum = i128_from_bignum(&low);
    let rows = i128_from_bignum(&rows);
    centred.clear();
    Ok(sum.zip(rows))
}

fn bignum_from_i128(value: i128) -> Result<BigNum, PaillierError> {
    let mut number = BigNum::from_slice(&value.unsigned_abs().to_be_bytes())?;
    number.set_negative(value < 0);
    Ok(number)
}

fn i128_from_bignum(number: &BigNumRef) -> Option<i128> {
    if number.num_bits() > 127 {
        return None;
    }
    let magnitude = number.to_vec();
    let mut bytes = [0u8; 16];
    bytes[16 - magnitude.len()..].copy_from_slice(&magnitude);
    let value = i128::from_be_bytes(bytes);
    Some(if number.is_negative() { -value } else { value })
}
