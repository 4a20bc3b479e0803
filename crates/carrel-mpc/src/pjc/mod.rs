//! Private join-and-compute: per-group person counts, row counts and sums over the
//! join of two parties' id sets, released with differential privacy.
//!
//! The IdParty has ids with group labels, and the ValueParty has `(id, value)` rows and
//! a Paillier key. The IdParty learns, per group, noisy counts of matched persons and
//! rows and a noisy sum of their values, and nothing about which of its ids matched. The
//! ValueParty learns the size of each of the IdParty's groups and nothing about the
//! matches. Both parties are assumed honest-but-curious.
//!
//! ```text
//!  IdParty (ids, groups; secret a)              ValueParty (rows, Paillier key; secret b)
//!  ───────────────────────────────              ──────────────────────────────────────────
//!  start ── message 1: H(u)^a per group, F=Q^a ─►
//!                                                privacy_loss() is charged, then respond:
//!        ◄─ message 2: per group X^b, F^t, padding; (H(w)^b, Enc(x_w)), (Q^t, Enc(0)), padding
//!  mask: match Y^a, multiply ciphertexts,
//!        add a uniform mask r_g
//!        ── message 3: Enc(x_g + r_g) per group ─►
//!                                                release: decrypt, add noise
//!        ◄─ message 4: x_g + r_g + noise per group ──
//!  finish: subtract r_g, unpack, threshold
//! ```
//!
//! # Threat model
//!
//! Two honest-but-curious parties, under DDH in Ristretto255 and the decisional
//! composite residuosity assumption for Paillier. The ValueParty learns the number of
//! distinct ids in each of the IdParty's groups. The IdParty learns the noisy per-group
//! values and the noisy number of the ValueParty's ids that match no group.
//! Out of scope: malicious parties (for example an IdParty that sends a wrong `F`),
//! timing and other side channels.
//!
//! # Privacy
//!
//! Privacy unit: one ValueParty id with all its rows; neighbouring inputs add or remove
//! one. The release is `(ε, δ)`-DP (up to a term below `e^-2000` from sample
//! saturation), with `ε` split equally over persons, rows and sums, and is charged to
//! the ValueParty's budget through [`ValueParty::privacy_loss`]. The IdParty's ids are
//! not protected by noise.
//!
//! NOTES.md beside this file gives the construction, its source, what each party
//! learns, the proof sketch and what is out of scope.

mod error;
mod id_party;
mod input;
mod message;
mod noise;
mod packing;
pub mod paillier;
mod random;
mod reference;
mod value_party;

#[cfg(test)]
mod test;

pub use error::{Part, PjcError, Position};
pub use id_party::{IdParty, IdPartyMasked};
pub use input::FIXED_POINT_BITS;
pub use message::{Message1, Message2, Message3, Message4, VERSION, ValueEntry};
pub use packing::PACKING_BITS;
pub use reference::{PlainGroup, plain_result};
pub use value_party::{ValueParty, ValuePartyResponded};

use curve25519_dalek::ristretto::RistrettoPoint;

use crate::group::hash_to_group;

/// Largest number of groups in one run.
pub const MAX_GROUPS: usize = 16;

/// Largest accepted `max_rows_per_id`.
pub const MAX_ROWS_PER_ID: u32 = 1 << 16;

/// Largest accepted magnitude of a clamping bound.
pub const MAX_VALUE_BOUND: f64 = (1u64 << 40) as f64;

/// Largest accepted `max_set_size`.
pub const MAX_SET_SIZE: usize = u32::MAX as usize;

/// Whether the released values carry noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseMode {
    /// Discrete Laplace noise and the release threshold: the protocol's guarantee.
    DiscreteLaplace,
    /// No noise and no threshold: exact results with no privacy, for tests only. Fake
    /// matches and padding still take part, each group getting exactly `s` fakes.
    InsecureNone,
}

/// Parameters both parties agree on before a run.
#[derive(Debug, Clone)]
pub struct PjcParams {
    /// Identifier of the run, bound into every hashed id and into `Q`.
    pub session_id: Vec<u8>,
    /// Total epsilon of the release, split equally over persons, rows and sums.
    pub epsilon: f64,
    /// Delta of the release, in `(0, 1)`.
    pub delta: f64,
    /// Rows kept per ValueParty id; further rows are dropped.
    pub max_rows_per_id: u32,
    /// Lower clamping bound of a value.
    pub lower: f64,
    /// Upper clamping bound of a value.
    pub upper: f64,
    /// Minimum group size in matched ids. A smaller group is released with probability
    /// below `delta`; values below 2 count as 2.
    pub min_group_size: u64,
    /// Largest number of distinct ids either party may send.
    pub max_set_size: usize,
    /// Noise mode; [`NoiseMode::InsecureNone`] is for tests only.
    pub noise: NoiseMode,
}

impl PjcParams {
    /// Checks every parameter's range.
    ///
    /// # Errors
    ///
    /// [`PjcError::InvalidParameter`] naming the first parameter out of range.
    pub fn validate(&self) -> Result<(), PjcError> {
        let invalid = |name, reason: String| Err(PjcError::InvalidParameter { name, reason });
        if self.session_id.is_empty() {
            return invalid("session_id", "it is empty".to_owned());
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return invalid(
                "epsilon",
                format!("{} is not a positive number", self.epsilon),
            );
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return invalid("delta", format!("{} is not in (0, 1)", self.delta));
        }
        if !(1..=MAX_ROWS_PER_ID).contains(&self.max_rows_per_id) {
            return invalid(
                "max_rows_per_id",
                format!("{} is not in 1..={MAX_ROWS_PER_ID}", self.max_rows_per_id),
            );
        }
        let bounded = |v: f64| v.is_finite() && v.abs() <= MAX_VALUE_BOUND;
        if !(bounded(self.lower) && bounded(self.upper) && self.lower <= self.upper) {
            return invalid(
                "lower",
                format!(
                    "[{}, {}] is not a range within ±2^40",
                    self.lower, self.upper
                ),
            );
        }
        if self.max_set_size > MAX_SET_SIZE {
            return invalid(
                "max_set_size",
                format!("{} is above {MAX_SET_SIZE}", self.max_set_size),
            );
        }
        Ok(())
    }
}

/// The privacy loss of one run, charged to the ValueParty's budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacyLoss {
    /// Epsilon; infinite when no noise is added.
    pub epsilon: f64,
    /// Delta.
    pub delta: f64,
}

/// The values released for one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupRelease {
    /// Noisy number of matched ids.
    pub persons: i64,
    /// Noisy number of their kept rows.
    pub rows: i64,
    /// Noisy sum of their clamped values.
    pub sum: f64,
}

/// Result the IdParty obtains at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PjcOutput {
    /// Per group, its noisy values, or `None` when its noisy person count is below the
    /// threshold.
    pub groups: Vec<Option<GroupRelease>>,
    /// Noisy number of matched ids over all groups, released whatever the threshold.
    pub total_persons: i64,
    /// Noisy person count a group needed; `None` when no noise was added.
    pub threshold: Option<i64>,
}

/// Hashes an id to the group under this run's session.
fn hash_id(session_id: &[u8], id: &[u8]) -> RistrettoPoint {
    let mut domain = b"carrel-pjc-v1/id/".to_vec();
    domain.extend_from_slice(session_id);
    hash_to_group(&domain, id)
}

/// `Q`, the base of the fake matches, fixed by the session.
fn fake_match_point(session_id: &[u8]) -> RistrettoPoint {
    hash_to_group(b"carrel-pjc-v1/fake-match", session_id)
}
