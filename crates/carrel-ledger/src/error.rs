//! The error type of this crate.
//!
//! Variants fall in three groups: faults in data handed to us by a peer (a proof, a note, a
//! key), faults found in our own stored log ([`LedgerError::Tampered`] and its neighbours),
//! and failures of the database underneath.

/// Everything that can go wrong in the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A leaf index was not below the tree size it was asked about.
    #[error("leaf index {index} is out of range for a tree of size {tree_size}")]
    IndexOutOfRange {
        /// The index that was asked for.
        index: u64,
        /// The size of the tree it was asked about.
        tree_size: u64,
    },

    /// A tree size larger than the log (or the leaves supplied) was asked for.
    #[error("tree size {requested} is larger than the {available} leaves available")]
    TreeSizeOutOfRange {
        /// The tree size that was asked for.
        requested: u64,
        /// How many leaves there are.
        available: u64,
    },

    /// A consistency proof was asked for from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeExceedsNew {
        /// The size of the older tree.
        old_size: u64,
        /// The size of the newer tree.
        new_size: u64,
    },

    /// An inclusion or consistency proof did not verify.
    #[error("proof does not verify: {reason}")]
    InvalidProof {
        /// The check that failed, without hash values.
        reason: &'static str,
    },

    /// A signed note or checkpoint is malformed.
    #[error("malformed note: {0}")]
    InvalidNote(String),

    /// A key name, verifier key or signing key is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(String),

    /// No signature line of the note came from a trusted key, so nothing vouches for it.
    #[error("note has no signature from a trusted key")]
    UnknownKey,

    /// A signature line from a trusted key does not verify, so the whole note is rejected.
    #[error("signature by trusted key {key_name:?} does not verify")]
    BadSignature {
        /// The name on the failing signature line.
        key_name: String,
    },

    /// The checkpoint is for another log than the one expected.
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    OriginMismatch {
        /// The origin the caller expected.
        expected: String,
        /// The origin found in the checkpoint or the stored log.
        found: String,
    },

    /// The note carries more signature lines than we are willing to look at.
    #[error("note has more than {limit} signature lines")]
    TooManySignatures {
        /// The largest number of signature lines accepted.
        limit: usize,
    },

    /// A checkpoint of size 0 has a root other than the empty tree's root, SHA-256 of the
    /// empty string, so no tree can have produced it.
    #[error(
        "checkpoint of size 0 has root {root}, but an empty tree's root is SHA-256 of the \
         empty string; the log signed an invalid checkpoint"
    )]
    InvalidEmptyRoot {
        /// The root found, in base64.
        root: String,
    },

    /// A cosignature line from a trusted witness key is malformed, for example because
    /// its timestamp is above 2^63 - 1 or its payload has the wrong length.
    #[error("cosignature by witness key {key_name:?} is malformed: {reason}")]
    InvalidCosignature {
        /// The name on the malformed signature line.
        key_name: String,
        /// The reason it is malformed.
        reason: String,
    },

    /// A `tlog-policy` file is malformed. The message names the line and the value.
    #[error("invalid tlog policy: {0}")]
    InvalidPolicy(String),

    /// No log of the policy has a key named after the checkpoint's origin.
    #[error(
        "the policy lists no log for origin {origin:?}; add a `log` line with the vkey of \
         the log whose key name is that origin"
    )]
    UnknownLog {
        /// The origin line of the checkpoint.
        origin: String,
    },

    /// The valid cosignatures on a checkpoint do not meet the witness quorum.
    #[error(
        "witness quorum {quorum:?} is not met: valid cosignatures came from {cosigned:?}; \
         collect cosignatures from more witnesses of the policy"
    )]
    QuorumNotMet {
        /// The name of the quorum rule of the policy, or the required count.
        quorum: String,
        /// The names of the witnesses whose cosignatures verified.
        cosigned: Vec<String>,
    },

    /// A `tlog-proof` receipt is malformed, or cannot prove inclusion.
    #[error("invalid tlog-proof receipt: {0}")]
    InvalidReceipt(String),

    /// The body of a `tlog-witness` `add-checkpoint` request is malformed.
    #[error("malformed add-checkpoint request: {0}")]
    InvalidWitnessRequest(String),

    /// A witness rejected an `add-checkpoint` request; the rejection carries the HTTP
    /// status of the `tlog-witness` protocol.
    #[error(transparent)]
    AddCheckpointRejected(#[from] crate::witness::AddCheckpointRejection),

    /// The stored log has no checkpoint yet; call `AuditLog::sign_checkpoint` first.
    #[error("the audit log has no signed checkpoint yet")]
    MissingCheckpoint,

    /// The stored log does not match itself: an entry, a hash, the entry order or a
    /// checkpoint was changed behind the ledger's back.
    ///
    /// `index` is the entry index for faults in an entry and the checkpoint's tree size for
    /// faults in a checkpoint.
    #[error("audit log tampered at index {index}: {what}")]
    Tampered {
        /// The stored item that does not match.
        what: &'static str,
        /// The entry index, or the tree size of the checkpoint, where it was found.
        index: u64,
    },

    /// A stored checkpoint's note no longer opens with the log's key.
    #[error("stored checkpoint at tree size {tree_size} is rejected: {source}")]
    CheckpointRejected {
        /// The tree size of the stored checkpoint.
        tree_size: u64,
        /// Reason the note was rejected.
        #[source]
        source: Box<LedgerError>,
    },

    /// The database failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The result type of this crate.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
