//! Pairwise masks from X25519 key agreement, and the aggregator that sums masked vectors.

use std::fmt;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroize;

use super::{Modulus, Round, SecAggError};

/// Length of an encoded X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Domain label of the hash from a shared secret to a pairwise seed.
pub const SEED_DOMAIN: &[u8] = b"carrel-secagg-v1/pairwise-seed";

/// One provider's state for one round: its index and a fresh X25519 secret.
///
/// [`MaskingParty::mask`] consumes the party, so each secret masks exactly one vector.
pub struct MaskingParty {
    round: Round,
    index: usize,
    secret: StaticSecret,
    public_key: PublicKey,
}

impl fmt::Debug for MaskingParty {
    /// Formats the index and the public key, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskingParty")
            .field("session_id", &self.round.session_id())
            .field("index", &self.index)
            .field("public_key", &self.public_key.as_bytes())
            .finish_non_exhaustive()
    }
}

impl MaskingParty {
    /// Draws a fresh X25519 secret from the operating system for party `index` of `round`.
    ///
    /// Parties are numbered `0..parties` in the same order by every party, for example by
    /// sorting the participants' names.
    ///
    /// # Errors
    ///
    /// [`SecAggError::PartyOutOfRange`] unless `index < round.parties()`, and
    /// [`SecAggError::RandomSourceFailed`] when the operating system's random source fails.
    pub fn new(round: &Round, index: usize) -> Result<Self, SecAggError> {
        check_index(index, round.parties())?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| SecAggError::RandomSourceFailed {
            reason: error.to_string(),
        })?;
        let secret = StaticSecret::from(bytes);
        bytes.zeroize();
        let public_key = PublicKey::from(&secret);
        Ok(Self {
            round: round.clone(),
            index,
            secret,
            public_key,
        })
    }

    /// Replaces the round's bound and noise settings, known only after every party has
    /// published its key and its contribution bound.
    ///
    /// # Errors
    ///
    /// [`SecAggError::RoundChanged`] when `round` has another session, party count or
    /// vector length.
    pub fn settle(mut self, round: &Round) -> Result<Self, SecAggError> {
        let same = round.session_id() == self.round.session_id()
            && round.parties() == self.round.parties()
            && round.vector_len() == self.round.vector_len();
        if !same {
            return Err(SecAggError::RoundChanged {
                expected: self.round.session_id().to_owned(),
                found: round.session_id().to_owned(),
            });
        }
        self.round = round.clone();
        Ok(self)
    }

    /// Returns this party's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Returns the public key that this party publishes to the others.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public_key.to_bytes()
    }

    /// Masks an encoded vector with the pairwise masks shared with every other party.
    ///
    /// `public_keys[j]` is party j's published key, this party's own key included. Party i
    /// adds the mask shared with each j > i and subtracts the mask shared with each j < i,
    /// so the masks cancel in the sum over all parties.
    ///
    /// # Errors
    ///
    /// - [`SecAggError::InputLengthMismatch`] or [`SecAggError::EncodedValueOutOfRange`] for
    ///   an `encoded` vector that the round's encoders could not have produced.
    /// - [`SecAggError::PublicKeyCountMismatch`] unless there is one key per party.
    /// - [`SecAggError::OwnKeyMismatch`] when the key at this party's index is not its own.
    /// - [`SecAggError::NonContributoryKey`] naming a party whose key gives an all-zero
    ///   shared secret.
    pub fn mask(
        self,
        encoded: &[u64],
        public_keys: &[[u8; PUBLIC_KEY_LEN]],
    ) -> Result<Vec<u64>, SecAggError> {
        check_encoded(encoded, &self.round)?;
        self.check_public_keys(public_keys)?;

        // Derive every shared secret first, so that a rejected key stops the round before
        // any mask is applied.
        let mut shared_secrets = Vec::with_capacity(public_keys.len() - 1);
        for (peer, key) in public_keys.iter().enumerate() {
            if peer == self.index {
                continue;
            }
            let shared = self.secret.diffie_hellman(&PublicKey::from(*key));
            if !shared.was_contributory() {
                return Err(SecAggError::NonContributoryKey { party: peer });
            }
            shared_secrets.push((peer, shared));
        }

        // Add the masks shared with higher indices and subtract those shared with lower ones.
        let modulus = self.round.modulus();
        let mut masked = encoded.to_vec();
        for (peer, shared) in &shared_secrets {
            let (low, high) = (self.index.min(*peer), self.index.max(*peer));
            let mut seed = pairwise_seed(self.round.session_id(), low, high, shared);
            let sign = if *peer > self.index {
                MaskSign::Add
            } else {
                MaskSign::Subtract
            };
            apply_mask(&mut masked, &seed, modulus, sign);
            seed.zeroize();
        }
        Ok(masked)
    }

    fn check_public_keys(&self, public_keys: &[[u8; PUBLIC_KEY_LEN]]) -> Result<(), SecAggError> {
        if public_keys.len() != self.round.parties() {
            return Err(SecAggError::PublicKeyCountMismatch {
                expected: self.round.parties(),
                found: public_keys.len(),
            });
        }
        if public_keys[self.index] != self.public_key() {
            return Err(SecAggError::OwnKeyMismatch { index: self.index });
        }
        Ok(())
    }
}

/// Collects the masked vectors of one round on the coordinator and sums them.
///
/// The total is released only when every party's vector arrived. There is no recovery of a
/// dropped party's masks, so a missing vector aborts the round.
#[derive(Debug)]
pub struct Aggregator {
    parties: usize,
    vector_len: usize,
    modulus: Modulus,
    received: Vec<Option<Vec<u64>>>,
}

impl Aggregator {
    /// Creates an empty aggregator for `round`.
    pub fn new(round: &Round) -> Self {
        Self {
            parties: round.parties(),
            vector_len: round.vector_len(),
            modulus: round.modulus(),
            received: vec![None; round.parties()],
        }
    }

    /// Stores party `index`'s masked vector.
    ///
    /// # Errors
    ///
    /// [`SecAggError::PartyOutOfRange`], [`SecAggError::DuplicateParty`],
    /// [`SecAggError::MaskedLengthMismatch`] or [`SecAggError::MaskedValueOutOfRange`]. A
    /// rejected vector is not stored, and the vectors stored before stay.
    pub fn add(&mut self, index: usize, masked: Vec<u64>) -> Result<(), SecAggError> {
        check_index(index, self.parties)?;
        if self.received[index].is_some() {
            return Err(SecAggError::DuplicateParty { index });
        }
        if masked.len() != self.vector_len {
            return Err(SecAggError::MaskedLengthMismatch {
                index,
                expected: self.vector_len,
                found: masked.len(),
            });
        }
        if let Some(coordinate) = masked
            .iter()
            .position(|&value| !self.modulus.contains(value))
        {
            return Err(SecAggError::MaskedValueOutOfRange {
                index,
                coordinate,
                modulus_bits: self.modulus.bits(),
            });
        }
        self.received[index] = Some(masked);
        Ok(())
    }

    /// Returns the indices of the parties whose vectors have not arrived, in increasing order.
    pub fn missing(&self) -> Vec<usize> {
        let slots = self.received.iter().enumerate();
        slots
            .filter(|(_, vector)| vector.is_none())
            .map(|(index, _)| index)
            .collect()
    }

    /// Sums all masked vectors and returns the centred total of each coordinate.
    ///
    /// The centred representative lies in (-M/2, M/2], and equals the true total because the
    /// round's bound check kept every absolute total below M/2.
    ///
    /// # Errors
    ///
    /// [`SecAggError::MissingParties`] naming every party whose vector is missing. The
    /// aggregator is consumed, so the vectors received are dropped and nothing is released.
    pub fn finish(self) -> Result<Vec<i128>, SecAggError> {
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(SecAggError::MissingParties { missing });
        }

        let mut total = vec![0u64; self.vector_len];
        for vector in self.received.iter().flatten() {
            for (sum, &value) in total.iter_mut().zip(vector) {
                *sum = self.modulus.add(*sum, value);
            }
        }
        Ok(total
            .into_iter()
            .map(|sum| self.modulus.centre(sum))
            .collect())
    }
}

#[derive(Clone, Copy)]
enum MaskSign {
    Add,
    Subtract,
}

/// Hashes the domain label, the session id, both indices and the shared secret into the seed
/// of the mask between parties `low < high`.
fn pairwise_seed(session_id: &str, low: usize, high: usize, shared: &SharedSecret) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(SEED_DOMAIN);
    // The length prefix keeps the session id from running into the indices.
    hasher.update((session_id.len() as u64).to_be_bytes());
    hasher.update(session_id.as_bytes());
    hasher.update(party_index_bytes(low));
    hasher.update(party_index_bytes(high));
    hasher.update(shared.as_bytes());
    hasher.finalize().into()
}

fn party_index_bytes(index: usize) -> [u8; 4] {
    // Round::new rejects more than u32::MAX parties, so every index fits.
    u32::try_from(index)
        .expect("party indices fit in u32")
        .to_be_bytes()
}

/// Expands `seed` with ChaCha20 into one mask word per coordinate and applies it.
fn apply_mask(masked: &mut [u64], seed: &[u8; 32], modulus: Modulus, sign: MaskSign) {
    // NOTE: the ChaCha20 state is not wiped on drop, because the chacha20 crate is built
    // without its zeroize feature. The seed itself is wiped by the caller.
    let mut stream = ChaCha20Rng::from_seed(*seed);
    for value in masked.iter_mut() {
        // M is a power of two, so the low bits of a uniform word are uniform modulo M.
        let mask = modulus.reduce(i128::from(stream.next_u64()));
        *value = match sign {
            MaskSign::Add => modulus.add(*value, mask),
            MaskSign::Subtract => modulus.sub(*value, mask),
        };
    }
}

fn check_index(index: usize, parties: usize) -> Result<(), SecAggError> {
    if index >= parties {
        return Err(SecAggError::PartyOutOfRange { index, parties });
    }
    Ok(())
}

fn check_encoded(encoded: &[u64], round: &Round) -> Result<(), SecAggError> {
    if encoded.len() != round.vector_len() {
        return Err(SecAggError::InputLengthMismatch {
            expected: round.vector_len(),
            found: encoded.len(),
        });
    }
    let modulus = round.modulus();
    if let Some(coordinate) = encoded.iter().position(|&value| !modulus.contains(value)) {
        return Err(SecAggError::EncodedValueOutOfRange {
            coordinate,
            modulus_bits: modulus.bits(),
        });
    }
    Ok(())
}
