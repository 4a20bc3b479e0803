//! The four protocol messages and their binary layout.
//!
//! Every message starts with the version byte [`VERSION`] and its number (1 to 4).
//! Integers are big-endian, and a list is a `u32` count followed by its entries. A group
//! element takes 32 bytes (compressed Ristretto255), a ciphertext 512 bytes, a plaintext
//! or modulus 256 bytes.
//!
//! ```text
//! message 1: 01 01 | k: u8 | k × (count: u32 | count × point) | F: point
//! message 2: 01 02 | n: 256 bytes | k: u8 | k × (count: u32 | count × point)
//!                  | count: u32 | count × (point | ciphertext)
//! message 3: 01 03 | k: u8 | k × ciphertext
//! message 4: 01 04 | k: u8 | k × plaintext
//! ```
//!
//! Decoding checks every count against the receiver's limit before it allocates, every
//! point with [`decode_peer_point`], every ciphertext for `0 < c < n^2` and
//! `gcd(c, n) = 1`, every plaintext for `< n`, and rejects repeated points and trailing
//! bytes. Errors name the position of the first fault.

use std::collections::HashSet;

use curve25519_dalek::ristretto::RistrettoPoint;
use openssl::bn::{BigNum, BigNumContext};
use rayon::prelude::*;

use super::paillier::PaillierError;
use super::paillier::{CIPHERTEXT_BYTES, Ciphertext, MODULUS_BYTES, PaillierPublicKey};
use super::{MAX_GROUPS, Part, PjcError, Position};
use crate::group::{POINT_LEN, decode_peer_point};

/// Version byte of the layout.
pub const VERSION: u8 = 1;

/// Message 1, IdParty to ValueParty: the blinded ids `H(u)^a` of each group, shuffled,
/// and the fake-match base `F = Q^a`.
#[derive(Debug)]
pub struct Message1 {
    /// Blinded ids per group.
    pub groups: Vec<Vec<RistrettoPoint>>,
    /// `F = Q^a`.
    pub fake_match_base: RistrettoPoint,
}

/// Message 2, ValueParty to IdParty.
#[derive(Debug)]
pub struct Message2 {
    /// The ValueParty's Paillier public key.
    pub public_key: PaillierPublicKey,
    /// Per group, shuffled: the IdParty's blinded ids raised to `b`, the fake matches
    /// `F^t` and random padding.
    pub groups: Vec<Vec<RistrettoPoint>>,
    /// Shuffled value entries: real ids, fake matches and unmatched padding.
    pub values: Vec<ValueEntry>,
}

/// One entry of the value list of message 2.
#[derive(Debug)]
pub struct ValueEntry {
    /// `H(w)^b` for a real id, `Q^t` for a fake match, a random element for padding.
    pub point: RistrettoPoint,
    /// The encrypted packed value; an encryption of 0 for fakes and padding.
    pub ciphertext: Ciphertext,
}

/// Message 3, IdParty to ValueParty: per group, the masked sum `Enc(x_g + r_g)`.
#[derive(Debug)]
pub struct Message3 {
    /// One ciphertext per group.
    pub ciphertexts: Vec<Ciphertext>,
}

/// Message 4, ValueParty to IdParty: per group, the noisy masked plaintext.
#[derive(Debug)]
pub struct Message4 {
    /// One plaintext in `[0, n)` per group.
    pub plaintexts: Vec<BigNum>,
}

impl Message1 {
    /// Encodes the message.
    ///
    /// # Panics
    ///
    /// Panics if there are more than 255 groups or a group has more than `u32::MAX`
    /// entries; [`IdParty::start`](super::IdParty::start) builds neither.
    pub fn to_bytes(&self) -> Vec<u8> {
        let points: usize = self.groups.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(3 + 4 * self.groups.len() + POINT_LEN * (points + 1));
        out.extend_from_slice(&[VERSION, 1, group_count_byte(self.groups.len())]);
        for group in &self.groups {
            write_points(&mut out, group);
        }
        out.extend_from_slice(self.fake_match_base.compress().as_bytes());
        out
    }

    /// Decodes and checks a message 1, accepting at most `max_set_size` ids in total.
    ///
    /// # Errors
    ///
    /// A peer-fault [`PjcError`] naming the first invalid part.
    pub fn from_bytes(bytes: &[u8], max_set_size: usize) -> Result<Self, PjcError> {
        let mut reader = Reader::new(bytes, 1)?;
        let group_count = reader.group_count()?;
        let mut seen = HashSet::new();
        let mut groups = Vec::with_capacity(group_count);
        let mut total = 0usize;
        for group in 0..group_count {
            let count = reader.count(&format!("group {group}"), max_set_size)?;
            total += count;
            if total > max_set_size {
                return Err(PjcError::TooManyEntries {
                    message: 1,
                    list: "all groups together".to_owned(),
                    found: total,
                    limit: max_set_size,
                });
            }
            groups.push(reader.points(count, Part::Group(group), &mut seen)?);
        }
        let base = reader.points(1, Part::FakeMatchBase, &mut seen)?;
        reader.finish()?;
        Ok(Self {
            groups,
            fake_match_base: base[0],
        })
    }
}

impl Message2 {
    /// Encodes the message.
    ///
    /// # Panics
    ///
    /// Panics if there are more than 255 groups or a list has more than `u32::MAX`
    /// entries; [`ValueParty::respond`](super::ValueParty::respond) builds neither.
    pub fn to_bytes(&self) -> Vec<u8> {
        let points: usize = self.groups.iter().map(Vec::len).sum();
        let capacity = 3
            + MODULUS_BYTES
            + 4 * (self.groups.len() + 1)
            + POINT_LEN * points
            + (POINT_LEN + CIPHERTEXT_BYTES) * self.values.len();
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(&[VERSION, 2]);
        out.extend_from_slice(&self.public_key.to_bytes());
        out.push(group_count_byte(self.groups.len()));
        for group in &self.groups {
            write_points(&mut out, group);
        }
        out.extend_from_slice(&count_bytes(self.values.len()));
        for entry in &self.values {
            out.extend_from_slice(entry.point.compress().as_bytes());
            out.extend_from_slice(&entry.ciphertext.to_bytes());
        }
        out
    }

    /// Decodes and checks a message 2, accepting at most `max_entries` entries in any
    /// list (see [`IdParty::max_message2_entries`](super::IdParty::max_message2_entries)).
    ///
    /// # Errors
    ///
    /// A peer-fault [`PjcError`] naming the first invalid part.
    pub fn from_bytes(bytes: &[u8], max_entries: usize) -> Result<Self, PjcError> {
        let mut reader = Reader::new(bytes, 2)?;
        let public_key = PaillierPublicKey::from_bytes(reader.take(MODULUS_BYTES, "the key")?)
            .map_err(|source| PjcError::InvalidPublicKey { source })?;
        let group_count = reader.group_count()?;
        let mut seen = HashSet::new();
        let mut groups = Vec::with_capacity(group_count);
        for group in 0..group_count {
            let count = reader.count(&format!("group {group}"), max_entries)?;
            groups.push(reader.points(count, Part::Group(group), &mut seen)?);
        }

        let count = reader.count("the value list", max_entries)?;
        let entry_len = POINT_LEN + CIPHERTEXT_BYTES;
        let body = reader.take(count * entry_len, "the value list")?;
        reader.finish()?;
        let entries: Vec<&[u8]> = body.chunks_exact(entry_len).collect();

        let point_bytes: Vec<&[u8]> = entries.iter().map(|e| &e[..POINT_LEN]).collect();
        let points = decode_points(&point_bytes, 2, Part::ValuePoint, &mut seen)?;
        let ciphertext_bytes: Vec<&[u8]> = entries.iter().map(|e| &e[POINT_LEN..]).collect();
        let ciphertexts = public_key
            .ciphertexts_from_bytes(&ciphertext_bytes)
            .map_err(|error| PjcError::from_peer_value(error, 2, Part::ValueCiphertext))?;
        let values = points
            .into_iter()
            .zip(ciphertexts)
            .map(|(point, ciphertext)| ValueEntry { point, ciphertext })
            .collect();
        Ok(Self {
            public_key,
            groups,
            values,
        })
    }
}

impl Message3 {
    /// Encodes the message.
    ///
    /// # Panics
    ///
    /// Panics if there are more than 255 ciphertexts.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + CIPHERTEXT_BYTES * self.ciphertexts.len());
        out.extend_from_slice(&[VERSION, 3, group_count_byte(self.ciphertexts.len())]);
        for ciphertext in &self.ciphertexts {
            out.extend_from_slice(&ciphertext.to_bytes());
        }
        out
    }

    /// Decodes and checks a message 3 against the receiver's own public key.
    ///
    /// # Errors
    ///
    /// A peer-fault [`PjcError`] naming the first invalid part.
    pub fn from_bytes(bytes: &[u8], public_key: &PaillierPublicKey) -> Result<Self, PjcError> {
        let mut reader = Reader::new(bytes, 3)?;
        let group_count = reader.group_count()?;
        let mut ctx = BigNumContext::new().map_err(PaillierError::from)?;
        let mut ciphertexts = Vec::with_capacity(group_count);
        for index in 0..group_count {
            let encoded = reader.take(CIPHERTEXT_BYTES, "a ciphertext")?;
            let ciphertext = public_key
                .ciphertext_from_bytes(encoded, index, &mut ctx)
                .map_err(|error| PjcError::from_peer_value(error, 3, Part::GroupCiphertext))?;
            ciphertexts.push(ciphertext);
        }
        reader.finish()?;
        Ok(Self { ciphertexts })
    }
}

impl Message4 {
    /// Encodes the message.
    ///
    /// # Panics
    ///
    /// Panics if there are more than 255 plaintexts or one is not below `2^2048`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + MODULUS_BYTES * self.plaintexts.len());
        out.extend_from_slice(&[VERSION, 4, group_count_byte(self.plaintexts.len())]);
        for plaintext in &self.plaintexts {
            let encoded = plaintext
                .to_vec_padded(MODULUS_BYTES as i32)
                .expect("a plaintext must be below 2^2048");
            out.extend_from_slice(&encoded);
        }
        out
    }

    /// Decodes and checks a message 4 against the public key received in message 2.
    ///
    /// # Errors
    ///
    /// A peer-fault [`PjcError`] naming the first invalid part.
    pub fn from_bytes(bytes: &[u8], public_key: &PaillierPublicKey) -> Result<Self, PjcError> {
        let mut reader = Reader::new(bytes, 4)?;
        let group_count = reader.group_count()?;
        let mut plaintexts = Vec::with_capacity(group_count);
        for index in 0..group_count {
            let encoded = reader.take(MODULUS_BYTES, "a plaintext")?;
            let plaintext = public_key
                .plaintext_from_bytes(encoded, index)
                .map_err(|error| PjcError::from_peer_value(error, 4, Part::GroupPlaintext))?;
            plaintexts.push(plaintext);
        }
        reader.finish()?;
        Ok(Self { plaintexts })
    }
}

/// Sequential reader over one message, with errors naming the message.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    message: u8,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], message: u8) -> Result<Self, PjcError> {
        let mut reader = Self {
            bytes,
            offset: 0,
            message,
        };
        let header = reader.take(2, "the header")?;
        if header != [VERSION, message] {
            return Err(reader.malformed(format!(
                "the header is {header:02x?}, expected [{VERSION:02x}, {message:02x}]"
            )));
        }
        Ok(reader)
    }

    fn malformed(&self, reason: String) -> PjcError {
        PjcError::MalformedMessage {
            message: self.message,
            reason,
        }
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], PjcError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.malformed(format!(
                "it ends after {} bytes, inside {what}",
                self.bytes.len()
            )));
        };
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn group_count(&mut self) -> Result<usize, PjcError> {
        let found = usize::from(self.take(1, "the group count")?[0]);
        if !(1..=MAX_GROUPS).contains(&found) {
            return Err(PjcError::InvalidGroupCount {
                message: self.message,
                found,
            });
        }
        Ok(found)
    }

    fn count(&mut self, list: &str, limit: usize) -> Result<usize, PjcError> {
        let bytes: [u8; 4] = self
            .take(4, list)?
            .try_into()
            .expect("take returned 4 bytes");
        let found = u32::from_be_bytes(bytes) as usize;
        if found > limit {
            return Err(PjcError::TooManyEntries {
                message: self.message,
                list: list.to_owned(),
                found,
                limit,
            });
        }
        Ok(found)
    }

    fn points(
        &mut self,
        count: usize,
        part: Part,
        seen: &mut HashSet<[u8; POINT_LEN]>,
    ) -> Result<Vec<RistrettoPoint>, PjcError> {
        let what = match part {
            Part::Group(group) => format!("group {group}"),
            _ => "the fake-match base".to_owned(),
        };
        let body = self.take(count * POINT_LEN, &what)?;
        let encoded: Vec<&[u8]> = body.chunks_exact(POINT_LEN).collect();
        decode_points(&encoded, self.message, part, seen)
    }

    fn finish(self) -> Result<(), PjcError> {
        let trailing = self.bytes.len() - self.offset;
        if trailing > 0 {
            return Err(self.malformed(format!("{trailing} bytes follow its end")));
        }
        Ok(())
    }
}

/// Decodes points in parallel, reporting the first invalid one, then rejects any point
/// already in `seen`. Canonical encodings are unique, so equal points have equal bytes.
fn decode_points(
    encoded: &[&[u8]],
    message: u8,
    part: Part,
    seen: &mut HashSet<[u8; POINT_LEN]>,
) -> Result<Vec<RistrettoPoint>, PjcError> {
    let position = |index| Position {
        message,
        part,
        index,
    };
    let decoded: Vec<Result<RistrettoPoint, _>> = encoded
        .par_iter()
        .enumerate()
        .map(|(index, bytes)| {
            let bytes: &[u8; POINT_LEN] = (*bytes).try_into().expect("chunks are exact");
            decode_peer_point(bytes, index)
        })
        .collect();

    let mut points = Vec::with_capacity(decoded.len());
    for (index, result) in decoded.into_iter().enumerate() {
        let point = result.map_err(|source| PjcError::InvalidPoint {
            position: position(index),
            source,
        })?;
        let bytes: [u8; POINT_LEN] = encoded[index].try_into().expect("chunks are exact");
        if !seen.insert(bytes) {
            return Err(PjcError::DuplicateElement {
                position: position(index),
            });
        }
        points.push(point);
    }
    Ok(points)
}

fn write_points(out: &mut Vec<u8>, points: &[RistrettoPoint]) {
    out.extend_from_slice(&count_bytes(points.len()));
    for point in points {
        out.extend_from_slice(point.compress().as_bytes());
    }
}

fn count_bytes(len: usize) -> [u8; 4] {
    u32::try_from(len)
        .expect("a list must have at most u32::MAX entries")
        .to_be_bytes()
}

fn group_count_byte(len: usize) -> u8 {
    u8::try_from(len).expect("a message must have at most 255 groups")
}
