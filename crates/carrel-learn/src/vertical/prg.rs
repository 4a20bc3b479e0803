//! Seeded streams of correlated randomness.
//!
//! Every random value a party draws comes from a ChaCha20 stream keyed by
//! `SHA-256(domain ‖ seed ‖ step ‖ label)`. The dealer has both parties' seeds and opens
//! the same streams, so it reproduces each party's draws without any message. A draw does
//! not depend on the order in which other draws were made.

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// Domain separation string of the streams.
pub const STREAM_DOMAIN: &[u8] = b"carrel-vertical-lr/1 stream";

/// A 32-byte secret seed shared between one party and the dealer.
pub type Seed = [u8; 32];

/// Draws a fresh seed from the operating system.
pub fn fresh_seed() -> Seed {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system provides randomness");
    seed
}

/// One labelled stream.
pub struct Stream(ChaCha20Rng);

impl Stream {
    /// Opens the stream `label` of `step` under `seed`.
    pub fn open(seed: &Seed, step: u64, label: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(STREAM_DOMAIN);
        hash.update(seed);
        hash.update(step.to_be_bytes());
        hash.update((label.len() as u64).to_be_bytes());
        hash.update(label.as_bytes());
        Self(ChaCha20Rng::from_seed(hash.finalize().into()))
    }

    /// Draws `count` uniform 128-bit elements.
    pub fn u128s(&mut self, count: usize) -> Vec<u128> {
        (0..count)
            .map(|_| u128::from(self.0.next_u64()) | (u128::from(self.0.next_u64()) << 64))
            .collect()
    }

    /// Draws `count` uniform 64-bit words.
    pub fn u64s(&mut self, count: usize) -> Vec<u64> {
        (0..count).map(|_| self.0.next_u64()).collect()
    }
}
