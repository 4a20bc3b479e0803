//! Private set intersection of two parties by ECDH over Ristretto255.
//!
//! Each party hashes its canonical identifiers to the group and blinds them with a
//! secret scalar; the other party blinds them again. Blinding commutes, so an identifier
//! both hold ends as the same doubly blinded element on both sides, and nothing else
//! matches. What each party learns is fixed by the agreement as a [`Reveal`] per side:
//! nothing, the size of the intersection, or the intersection itself. See `NOTES.md` for
//! the construction, the threat model and what leaks.
//!
//! A [`PsiParty`] holds one side's state; the caller carries its messages in batches.
//! Every element received from the peer goes through [`decode_peer_points`] before it
//! meets the secret scalar.
//!
//! [`decode_peer_points`]: crate::group::decode_peer_points

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use curve25519_dalek::ristretto::RistrettoPoint;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::group::{POINT_LEN, PointError, SecretScalar, decode_peer_points, hash_to_group};
use crate::ids::{IdList, PrefixHasher};

/// Domain label of the hash from identifiers to the group.
pub const HASH_DOMAIN: &[u8] = b"carrel-psi-v1/hash-to-ristretto255";

/// Default number of elements per message.
pub const DEFAULT_BATCH: usize = 1 << 15;

pub use carrel_model::Reveal;

/// Error of a protocol step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PsiError {
    /// The peer sent an element that may not be used.
    #[error("peer message refused: {0}")]
    Peer(#[from] PointError),
    /// The peer sent more elements than the handshake announced.
    #[error("peer sent element {index} but announced only {announced}")]
    TooManyElements {
        /// Position of the first excess element.
        index: usize,
        /// Number announced in the handshake.
        announced: usize,
    },
    /// A batch arrived out of order.
    #[error("batch starting at element {found} arrived where element {expected} was due")]
    OutOfOrder {
        /// The position expected next.
        expected: usize,
        /// The position the batch starts at.
        found: usize,
    },
    /// The run finished before every expected element arrived.
    #[error("{what}: received {received} of {expected} elements")]
    Incomplete {
        /// Which stream is short.
        what: &'static str,
        /// Elements received.
        received: usize,
        /// Elements expected.
        expected: usize,
    },
}

/// The result one party takes from a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsiOutcome {
    /// The reveal this party was entitled to.
    pub reveal: Reveal,
    /// Size of the intersection, when this party learns it.
    pub size: Option<u64>,
    /// Positions in this party's own [`IdList`] of the identifiers both hold, when this
    /// party learns the intersection.
    pub members: Option<Vec<usize>>,
}

type DigestSet = HashSet<u128, BuildHasherDefault<PrefixHasher>>;

/// One side of a private set intersection run.
pub struct PsiParty {
    secret: SecretScalar,
    ids: IdList,
    learns: Reveal,
    peer_learns: Reveal,
    peer_len: usize,
    /// Doubly blinded peer elements, as digests, when this party learns anything.
    peer_set: DigestSet,
    peer_seen: usize,
    /// Doubly blinded own elements as returned by the peer.
    own_double: Vec<u128>,
    /// Doubly blinded peer elements held back to be shuffled, when the peer learns the
    /// size only.
    held_for_peer: Vec<[u8; POINT_LEN]>,
}

impl PsiParty {
    /// Starts a run over `ids` against a peer holding `peer_len` identifiers.
    pub fn new(ids: IdList, learns: Reveal, peer_learns: Reveal, peer_len: usize) -> Self {
        Self {
            secret: SecretScalar::random(),
            ids,
            learns,
            peer_learns,
            peer_len,
            peer_set: DigestSet::default(),
            peer_seen: 0,
            own_double: Vec::new(),
            held_for_peer: Vec::new(),
        }
    }

    /// Number of own identifiers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether this party holds no identifiers.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The own identifiers.
    pub fn ids(&self) -> &IdList {
        &self.ids
    }

    /// Hashes and blinds own identifiers `start..start + count` into one message.
    pub fn blind_own(&self, start: usize, count: usize) -> Vec<u8> {
        let end = (start + count).min(self.ids.len());
        let points: Vec<RistrettoPoint> = (start..end)
            .into_par_iter()
            .map(|i| hash_to_group(HASH_DOMAIN, self.ids.get(i)))
            .collect();
        self.secret.blind_compressed(&points).concat()
    }

    /// Blinds a batch of the peer's blinded elements a second time.
    ///
    /// The batch must start at element `start`, right after the previous one. Returns the
    /// doubly blinded batch in the peer's order when the peer learns the intersection;
    /// otherwise returns nothing now (see [`PsiParty::shuffled_for_peer`]).
    ///
    /// # Errors
    ///
    /// [`PsiError::Peer`] for an invalid element, before any is multiplied; order and
    /// count errors.
    pub fn answer_peer(&mut self, start: usize, message: &[u8]) -> Result<Vec<u8>, PsiError> {
        if start != self.peer_seen {
            return Err(PsiError::OutOfOrder {
                expected: self.peer_seen,
                found: start,
            });
        }
        let points = decode_peer_points(message, start)?;
        if start + points.len() > self.peer_len {
            return Err(PsiError::TooManyElements {
                index: self.peer_len,
                announced: self.peer_len,
            });
        }
        self.peer_seen += points.len();

        let doubled = self.secret.blind_compressed(&points);
        if self.learns != Reveal::Nothing {
            self.peer_set.extend(doubled.iter().map(digest));
        }
        match self.peer_learns {
            Reveal::Intersection => Ok(doubled.concat()),
            Reveal::Size => {
                self.held_for_peer.extend(doubled);
                Ok(Vec::new())
            }
            Reveal::Nothing => Ok(Vec::new()),
        }
    }

    /// Shuffles the held-back doubly blinded peer elements and returns them in messages
    /// of at most `batch` elements; used when the peer learns the size only.
    ///
    /// # Errors
    ///
    /// [`PsiError::Incomplete`] if not every peer element has been answered.
    pub fn shuffled_for_peer(&mut self, batch: usize) -> Result<Vec<Vec<u8>>, PsiError> {
        self.expect_peer_complete()?;
        let mut held = std::mem::take(&mut self.held_for_peer);
        shuffle(&mut held);
        Ok(held
            .chunks(batch.max(1))
            .map(<[[u8; POINT_LEN]]>::concat)
            .collect())
    }

    /// Takes a batch of own elements, doubly blinded by the peer, in the order the peer
    /// returned them: own order when this party learns the intersection, shuffled when it
    /// learns the size only.
    ///
    /// # Errors
    ///
    /// [`PsiError::Peer`] for an invalid element; count errors.
    pub fn take_own_doubled(&mut self, message: &[u8]) -> Result<(), PsiError> {
        // These elements meet no secret scalar and are only compared, so a full decoding
        // is not needed; the identity encoding is still rejected.
        let start = self.own_double.len();
        if !message.len().is_multiple_of(POINT_LEN) {
            return Err(PointError::RaggedMessage { len: message.len() }.into());
        }
        let count = message.len() / POINT_LEN;
        if start + count > self.ids.len() {
            return Err(PsiError::TooManyElements {
                index: self.ids.len(),
                announced: self.ids.len(),
            });
        }
        for (i, chunk) in message.chunks_exact(POINT_LEN).enumerate() {
            let bytes: &[u8; POINT_LEN] = chunk.try_into().expect("chunks are exact");
            if *bytes == [0u8; POINT_LEN] {
                return Err(PointError::Identity { index: start + i }.into());
            }
            self.own_double.push(digest(bytes));
        }
        Ok(())
    }

    /// Ends the run and returns what this party learns.
    ///
    /// # Errors
    ///
    /// [`PsiError::Incomplete`] if a stream this party needs is short.
    pub fn finish(&self) -> Result<PsiOutcome, PsiError> {
        if self.learns == Reveal::Nothing {
            return Ok(PsiOutcome {
                reveal: Reveal::Nothing,
                size: None,
                members: None,
            });
        }
        self.expect_peer_complete()?;
        if self.own_double.len() != self.ids.len() {
            return Err(PsiError::Incomplete {
                what: "own elements blinded by the peer",
                received: self.own_double.len(),
                expected: self.ids.len(),
            });
        }
        let members: Vec<usize> = self
            .own_double
            .iter()
            .enumerate()
            .filter(|(_, d)| self.peer_set.contains(d))
            .map(|(i, _)| i)
            .collect();
        let size = Some(members.len() as u64);
        let members = (self.learns == Reveal::Intersection).then_some(members);
        Ok(PsiOutcome {
            reveal: self.learns,
            size,
            members,
        })
    }

    fn expect_peer_complete(&self) -> Result<(), PsiError> {
        if self.peer_seen == self.peer_len {
            return Ok(());
        }
        Err(PsiError::Incomplete {
            what: "peer elements",
            received: self.peer_seen,
            expected: self.peer_len,
        })
    }
}

fn digest(point: &[u8; POINT_LEN]) -> u128 {
    u128::from_le_bytes(point[..16].try_into().expect("points have 32 bytes"))
}

/// Fisher-Yates shuffle driven by the operating system's random source.
fn shuffle<T>(items: &mut [T]) {
    let mut words = [0u64; 256];
    let mut used = words.len();
    for i in (1..items.len()).rev() {
        if used == words.len() {
            let mut bytes = [0u8; 256 * 8];
            getrandom::fill(&mut bytes).expect("the operating system's random source failed");
            for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
                *word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            }
            used = 0;
        }
        // Lemire's multiply-shift maps a 64-bit word to 0..=i; its bias is below
        // i / 2^64, negligible for any list that fits in memory.
        let j = ((u128::from(words[used]) * (i as u128 + 1)) >> 64) as usize;
        used += 1;
        items.swap(i, j);
    }
}

/// Runs both sides in one process; used by tests and the local benchmark.
pub fn run_local(
    a_ids: IdList,
    a_learns: Reveal,
    b_ids: IdList,
    b_learns: Reveal,
    batch: usize,
) -> Result<(PsiOutcome, PsiOutcome), PsiError> {
    let (a_len, b_len) = (a_ids.len(), b_ids.len());
    let mut a = PsiParty::new(a_ids, a_learns, b_learns, b_len);
    let mut b = PsiParty::new(b_ids, b_learns, a_learns, a_len);
    exchange(&mut a, &mut b, batch)?;
    exchange(&mut b, &mut a, batch)?;
    for message in a.shuffled_for_peer(batch)? {
        b.take_own_doubled(&message)?;
    }
    for message in b.shuffled_for_peer(batch)? {
        a.take_own_doubled(&message)?;
    }
    Ok((a.finish()?, b.finish()?))
}

/// Sends all of `from`'s blinded elements to `to` and carries back in-order answers.
fn exchange(from: &mut PsiParty, to: &mut PsiParty, batch: usize) -> Result<(), PsiError> {
    let mut start = 0;
    while start < from.len() {
        let message = from.blind_own(start, batch);
        let answer = to.answer_peer(start, &message)?;
        if !answer.is_empty() {
            from.take_own_doubled(&answer)?;
        }
        start += batch;
    }
    Ok(())
}

#[cfg(test)]
mod test;
