//! Shuffles and random group elements from the operating system's random source.

use curve25519_dalek::ristretto::RistrettoPoint;

/// Random bytes from the operating system, drawn a block at a time.
pub(crate) struct OsRandom {
    block: [u8; 512],
    used: usize,
}

impl OsRandom {
    pub(crate) fn new() -> Self {
        Self {
            block: [0; 512],
            used: 512,
        }
    }

    fn next_u64(&mut self) -> u64 {
        if self.used + 8 > self.block.len() {
            fill_from_os(&mut self.block);
            self.used = 0;
        }
        let bytes: [u8; 8] = self.block[self.used..self.used + 8]
            .try_into()
            .expect("the slice has 8 bytes");
        self.used += 8;
        u64::from_le_bytes(bytes)
    }

    /// Draws uniformly from `[0, bound)` by rejection, so no value is favoured.
    ///
    /// # Panics
    ///
    /// Panics if `bound` is 0.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range has no element to draw");
        // 2^64 mod bound. The draws at or above it form a whole number of runs of `bound`
        // values, so each residue is equally likely among them.
        let rejected_below = bound.wrapping_neg() % bound;
        loop {
            let draw = self.next_u64();
            if draw >= rejected_below {
                return draw % bound;
            }
        }
    }

    /// Puts `items` in uniformly random order (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let pick = self.below(last as u64 + 1) as usize;
            items.swap(last, pick);
        }
    }
}

/// Draws a uniformly random group element.
pub(crate) fn random_point() -> RistrettoPoint {
    let mut wide = [0u8; 64];
    fill_from_os(&mut wide);
    RistrettoPoint::from_uniform_bytes(&wide)
}

/// Fills `bytes` from the operating system.
///
/// # Panics
///
/// Panics if the random source fails: no shuffle or padding may go on without it.
fn fill_from_os(bytes: &mut [u8]) {
    getrandom::fill(bytes).expect("the operating system's random source failed");
}
