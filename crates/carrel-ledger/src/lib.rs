//! Append-only RFC 6962 Merkle audit log with C2SP signed checkpoints.
//!
//! Each Carrel node records what it does (agreements, rule changes, queries, budget
//! debits) as entries of an audit log in its own SQLite database. The entries are the
//! leaves of an RFC 6962 Merkle tree. The node signs checkpoints of the tree in the C2SP
//! `tlog-checkpoint` format. Anyone with a checkpoint can request an inclusion proof of an
//! entry or a consistency proof to a later checkpoint.
//!
//! ```text
//!   state change + entry bytes
//!            │ same transaction
//!            ▼
//!   store::AuditLog ── append ──► audit_entries, audit_frontier, audit_tiles   (SQLite)
//!            │ sign_checkpoint            │ inclusion_proof, consistency_proof, verify
//!            ▼                            ▼
//!   checkpoint::Checkpoint ◄──── merkle: leaf_hash, root, proofs  (pure)
//!            │ sign / open_checkpoint
//!            ▼
//!   note: signed notes, NoteSigner, NoteVerifier (vkeys)
//! ```
//!
//! [`merkle`] is pure hashing and proof code; [`note`] reads and writes C2SP signed notes
//! and keys; [`checkpoint`] gives a note its checkpoint body; [`store`] keeps the log in
//! SQLite, with hash tiles that serve proofs in O(log n) reads, and audits it; [`commit`]
//! appends entries from many threads with one sync per batch. The witness side follows:
//! [`cosign`] makes and checks timestamped cosignatures, [`witness`] checks a log's
//! `add-checkpoint` request, [`policy`] reads trust policies with their quorum, and
//! [`receipt`] writes and verifies offline proofs of one entry. `NOTES.md` beside this
//! file explains the construction and why its guarantees hold.
//!
//! ```
//! use carrel_ledger::{AuditLog, NoteSigner, merkle};
//! use ed25519_dalek::SigningKey;
//! use rusqlite::Connection;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let origin = "carrel.example/node-a/audit";
//! let signer = NoteSigner::ed25519(origin, SigningKey::from_bytes(&[7; 32]))?;
//! let mut conn = Connection::open_in_memory()?;
//! AuditLog::create_schema(&conn)?;
//!
//! let tx = conn.transaction()?;
//! let index = AuditLog::append(&tx, b"contract 42 agreed")?;
//! let signed = AuditLog::sign_checkpoint(&tx, origin, &signer)?;
//! tx.commit()?;
//!
//! let checkpoint = &signed.checkpoint;
//! let proof = AuditLog::inclusion_proof(&conn, index, checkpoint.tree_size())?;
//! let leaf = merkle::leaf_hash(b"contract 42 agreed");
//! merkle::verify_inclusion(&leaf, index, checkpoint.tree_size(), &proof, checkpoint.root_hash())?;
//! AuditLog::verify(&conn, origin, &signer.verifier())?;
//! # Ok(())
//! # }
//! ```

pub mod checkpoint;
pub mod commit;
pub mod cosign;
mod error;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod receipt;
pub mod store;
mod syntax;
mod tiles;
pub mod witness;

pub use checkpoint::{Checkpoint, open_checkpoint};
pub use commit::{CommitError, CommitStats, GroupCommitter, PendingAppend};
pub use cosign::{CosignatureVerifier, CosignedCheckpoint, Cosigner, open_cosigned};
pub use error::{LedgerError, Result};
pub use merkle::Hash;
pub use note::{NoteSigner, NoteVerifier};
pub use policy::Policy;
pub use receipt::Receipt;
pub use store::{AuditLog, SignedCheckpoint, VerifyReport};
