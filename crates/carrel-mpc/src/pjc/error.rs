//! Errors of the join-and-compute protocol, with peer faults kept apart from local ones.

use std::fmt;

use super::MAX_GROUPS;
use super::paillier::{CiphertextFault, PaillierError};
use crate::group::PointError;

/// Failure of a protocol step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PjcError {
    /// A peer's group element is not canonical or is the identity.
    #[error("{position} is not a valid group element: {source}")]
    InvalidPoint {
        /// Position of the element.
        position: Position,
        /// The decoding failure.
        #[source]
        source: PointError,
    },
    /// A peer's ciphertext is outside `Z_{n^2}^*`.
    #[error("{position} is not a valid ciphertext: {fault}")]
    InvalidCiphertext {
        /// Position of the ciphertext.
        position: Position,
        /// The fault found.
        fault: CiphertextFault,
    },
    /// A peer's plaintext is not less than the Paillier modulus.
    #[error("{position} is not less than the Paillier modulus n")]
    InvalidPlaintext {
        /// Position of the plaintext.
        position: Position,
    },
    /// A peer's list repeats a group element, which an honest peer never sends.
    #[error("{position} repeats an earlier element of the message")]
    DuplicateElement {
        /// Position of the repeated element.
        position: Position,
    },
    /// A message declares no groups or more than [`MAX_GROUPS`].
    #[error("message {message} declares {found} groups; expected 1 to {MAX_GROUPS}")]
    InvalidGroupCount {
        /// Message number, 1 to 4.
        message: u8,
        /// Group count found.
        found: usize,
    },
    /// A message has a different number of groups than the run.
    #[error("message {message} has {found} groups, but this run has {expected}")]
    GroupCountMismatch {
        /// Message number, 1 to 4.
        message: u8,
        /// Group count of the run.
        expected: usize,
        /// Group count found.
        found: usize,
    },
    /// A list in a message is longer than the receiver accepts.
    #[error("message {message}, {list} has {found} entries, above the limit of {limit}")]
    TooManyEntries {
        /// Message number, 1 to 4.
        message: u8,
        /// Name of the list, for example "group 2".
        list: String,
        /// Entries found.
        found: usize,
        /// The receiver's limit.
        limit: usize,
    },
    /// A group list of message 2 does not have the group's ids plus the padding.
    #[error(
        "message 2, group {group} has {found} entries; expected {expected}, the group's ids \
         plus the agreed padding"
    )]
    WrongListLength {
        /// Group index.
        group: usize,
        /// Length expected.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// Two value entries of message 2 match the same element of a group list.
    #[error("message 2, value entry {index} matches an element of group {group} already matched")]
    DuplicateMatch {
        /// Position of the second value entry.
        index: usize,
        /// Group of the element.
        group: usize,
    },
    /// A message is cut short, has trailing bytes or the wrong header.
    #[error("message {message} is malformed: {reason}")]
    MalformedMessage {
        /// Message number, 1 to 4.
        message: u8,
        /// Description of the layout fault.
        reason: String,
    },
    /// The Paillier public key of message 2 is not an odd 2048-bit modulus.
    #[error("message 2 carries an invalid Paillier public key: {source}")]
    InvalidPublicKey {
        /// The key failure.
        #[source]
        source: PaillierError,
    },
    /// A group's unpacked sum or row count is beyond any value the protocol can produce,
    /// so message 4 does not belong to the masks of message 3.
    #[error("group {group} unpacks to a sum or row count out of range; message 4 is inconsistent")]
    ImplausibleResult {
        /// Group index.
        group: usize,
    },
    /// A protocol parameter is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Expected range and value found.
        reason: String,
    },
    /// A local input row is invalid.
    #[error("input row {row} is invalid: {reason}")]
    InvalidInput {
        /// Position of the row in the input.
        row: usize,
        /// Description of the fault.
        reason: String,
    },
    /// The local input has more distinct ids than the agreed maximum set size.
    #[error("the input has {found} distinct ids, above the maximum set size {limit}")]
    SetTooLarge {
        /// Distinct ids found.
        found: usize,
        /// The agreed limit.
        limit: usize,
    },
    /// OpenDP could not build, map or run a noise measurement.
    #[error("noise measurement failed: {0}")]
    Noise(String),
    /// A local Paillier operation failed (OpenSSL allocation or random source).
    #[error("Paillier operation failed: {0}")]
    Paillier(#[from] PaillierError),
    /// A broken invariant of this module.
    #[error("internal error: {0}; please report this as a bug")]
    Internal(&'static str),
}

impl PjcError {
    /// Returns `true` if the peer caused the error by sending an invalid or inconsistent
    /// message.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Self::InvalidPoint { .. }
                | Self::InvalidCiphertext { .. }
                | Self::InvalidPlaintext { .. }
                | Self::DuplicateElement { .. }
                | Self::InvalidGroupCount { .. }
                | Self::GroupCountMismatch { .. }
                | Self::TooManyEntries { .. }
                | Self::WrongListLength { .. }
                | Self::DuplicateMatch { .. }
                | Self::MalformedMessage { .. }
                | Self::InvalidPublicKey { .. }
                | Self::ImplausibleResult { .. }
        )
    }

    /// Maps a Paillier failure on a peer's value in `part` of `message` to a peer fault
    /// at the value's position, and any other Paillier failure to a local one.
    pub(crate) fn from_peer_value(error: PaillierError, message: u8, part: Part) -> Self {
        match error {
            PaillierError::InvalidCiphertext { index, fault } => Self::InvalidCiphertext {
                position: Position {
                    message,
                    part,
                    index,
                },
                fault,
            },
            PaillierError::PlaintextOutOfRange { index } => Self::InvalidPlaintext {
                position: Position {
                    message,
                    part,
                    index,
                },
            },
            other => Self::Paillier(other),
        }
    }
}

/// Position of a value in a protocol message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Message number, 1 to 4.
    pub message: u8,
    /// Part of the message.
    pub part: Part,
    /// Index within that part.
    pub index: usize,
}

/// A part of a protocol message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The blinded ids of one group (messages 1 and 2).
    Group(usize),
    /// The fake-match base `F = Q^a` (message 1).
    FakeMatchBase,
    /// The blinded id of a value entry (message 2).
    ValuePoint,
    /// The ciphertext of a value entry (message 2).
    ValueCiphertext,
    /// The masked sum ciphertexts, one per group (message 3).
    GroupCiphertext,
    /// The noisy masked plaintexts, one per group (message 4).
    GroupPlaintext,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (message, index) = (self.message, self.index);
        match self.part {
            Part::Group(group) => write!(f, "message {message}, group {group}, entry {index}"),
            Part::FakeMatchBase => write!(f, "message {message}, fake-match base"),
            Part::ValuePoint => write!(f, "message {message}, value entry {index}, point"),
            Part::ValueCiphertext => {
                write!(f, "message {message}, value entry {index}, ciphertext")
            }
            Part::GroupCiphertext => write!(f, "message {message}, ciphertext of group {index}"),
            Part::GroupPlaintext => write!(f, "message {message}, plaintext of group {index}"),
        }
    }
}
