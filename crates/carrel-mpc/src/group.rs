//! The Ristretto255 group as the blinding group of the DDH-based protocols.
//!
//! An identifier is hashed to a group element with SHA-512 under a domain separation
//! label, so it is never mapped from its integer value. A peer's element is accepted only
//! after [`decode_peer_point`] has checked that its encoding is canonical and that it is
//! not the identity; only then is it multiplied by a secret scalar.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

/// Length of an encoded group element.
pub const POINT_LEN: usize = 32;

/// Why a peer's encoded group element was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PointError {
    /// The bytes are not the canonical encoding of a Ristretto255 element.
    #[error("element {index} is not a canonical Ristretto255 encoding")]
    InvalidEncoding {
        /// Position of the element in its message.
        index: usize,
    },
    /// The element is the group identity, which would cancel any blinding.
    #[error("element {index} is the identity element")]
    Identity {
        /// Position of the element in its message.
        index: usize,
    },
    /// The message length is not a whole number of elements.
    #[error("message of {len} bytes is not a whole number of {POINT_LEN}-byte elements")]
    RaggedMessage {
        /// Length of the message in bytes.
        len: usize,
    },
}

/// Hashes a canonical identifier to a group element under a domain label.
pub fn hash_to_group(domain: &[u8], id: &[u8]) -> RistrettoPoint {
    let mut hasher = Sha512::new();
    hasher.update((domain.len() as u64).to_be_bytes());
    hasher.update(domain);
    hasher.update(id);
    let wide: [u8; 64] = hasher.finalize().into();
    RistrettoPoint::from_uniform_bytes(&wide)
}

/// Points per batch of [`SecretScalar::blind_compressed`]: one field inversion is
/// shared by this many points.
const COMPRESS_BATCH: usize = 256;

/// A secret blinding scalar, drawn from the operating system and wiped on drop.
///
/// It also keeps half of itself, so that a batch of blinded points can be encoded with
/// `double_and_compress_batch`, which shares one field inversion across the batch.
pub struct SecretScalar(Scalar, Scalar);

impl SecretScalar {
    /// Draws a uniformly random non-zero scalar from the operating system.
    ///
    /// # Panics
    ///
    /// Panics if the operating system's random source fails, which leaves no safe way on.
    pub fn random() -> Self {
        loop {
            let mut wide = [0u8; 64];
            getrandom::fill(&mut wide).expect("the operating system's random source failed");
            let scalar = Scalar::from_bytes_mod_order_wide(&wide);
            wide.zeroize();
            if scalar != Scalar::ZERO {
                let half = scalar * Scalar::from(2u8).invert();
                return Self(scalar, half);
            }
        }
    }

    /// Multiplies a group element by the secret scalar.
    pub fn blind(&self, point: &RistrettoPoint) -> RistrettoPoint {
        point * self.0
    }

    /// Blinds each point and returns the encodings, in order: `s·P` is computed as
    /// `2·((s/2)·P)` so that the doubling and encoding run batched. Uses every core.
    pub fn blind_compressed(&self, points: &[RistrettoPoint]) -> Vec<[u8; POINT_LEN]> {
        use rayon::prelude::*;
        points
            .par_chunks(COMPRESS_BATCH)
            .flat_map_iter(|chunk| {
                let halves: Vec<RistrettoPoint> = chunk.iter().map(|p| p * self.1).collect();
                RistrettoPoint::double_and_compress_batch(&halves)
                    .into_iter()
                    .map(|c| c.to_bytes())
            })
            .collect()
    }
}

impl Drop for SecretScalar {
    fn drop(&mut self) {
        self.0.zeroize();
        self.1.zeroize();
    }
}

/// Decodes one element received from a peer, refusing non-canonical encodings and the
/// identity before it can meet a secret scalar.
///
/// # Errors
///
/// [`PointError::InvalidEncoding`] or [`PointError::Identity`], naming `index`.
pub fn decode_peer_point(
    bytes: &[u8; POINT_LEN],
    index: usize,
) -> Result<RistrettoPoint, PointError> {
    let point = CompressedRistretto(*bytes)
        .decompress()
        .ok_or(PointError::InvalidEncoding { index })?;
    if point.is_identity() {
        return Err(PointError::Identity { index });
    }
    Ok(point)
}

/// Decodes a message of concatenated elements, checking every one.
///
/// # Errors
///
/// The first [`PointError`] met; `first_index` offsets the reported positions.
pub fn decode_peer_points(
    message: &[u8],
    first_index: usize,
) -> Result<Vec<RistrettoPoint>, PointError> {
    if !message.len().is_multiple_of(POINT_LEN) {
        return Err(PointError::RaggedMessage { len: message.len() });
    }
    message
        .chunks_exact(POINT_LEN)
        .enumerate()
        .map(|(i, chunk)| {
            let bytes: &[u8; POINT_LEN] = chunk.try_into().expect("chunks are exact");
            decode_peer_point(bytes, first_index + i)
        })
        .collect()
}

/// Encodes elements as concatenated 32-byte compressed encodings.
pub fn encode_points(points: &[RistrettoPoint]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * POINT_LEN);
    for point in points {
        out.extend_from_slice(point.compress().as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blinding_commutes() {
        let (a, b) = (SecretScalar::random(), SecretScalar::random());
        let h = hash_to_group(b"test", b"u1");
        assert_eq!(a.blind(&b.blind(&h)), b.blind(&a.blind(&h)));
    }

    #[test]
    fn batched_blinding_matches_single_blinding() {
        let secret = SecretScalar::random();
        let points: Vec<_> = (0..600u32)
            .map(|i| hash_to_group(b"t", &i.to_be_bytes()))
            .collect();
        let batched = secret.blind_compressed(&points);
        for (point, bytes) in points.iter().zip(&batched) {
            assert_eq!(secret.blind(point).compress().to_bytes(), *bytes);
        }
    }

    #[test]
    fn domains_separate_the_same_id() {
        assert_ne!(hash_to_group(b"one", b"u1"), hash_to_group(b"two", b"u1"));
    }

    #[test]
    fn identity_and_bad_encodings_are_refused() {
        let identity = RistrettoPoint::default().compress().to_bytes();
        assert_eq!(
            decode_peer_point(&identity, 3),
            Err(PointError::Identity { index: 3 })
        );
        let bad = [0xffu8; POINT_LEN];
        assert_eq!(
            decode_peer_point(&bad, 0),
            Err(PointError::InvalidEncoding { index: 0 })
        );
        assert_eq!(
            decode_peer_points(&[0u8; 33], 0),
            Err(PointError::RaggedMessage { len: 33 })
        );
    }

    #[test]
    fn points_round_trip_through_their_encoding() {
        let points: Vec<_> = (0..5u8).map(|i| hash_to_group(b"t", &[i])).collect();
        assert_eq!(
            decode_peer_points(&encode_points(&points), 0).unwrap(),
            points
        );
    }
}
