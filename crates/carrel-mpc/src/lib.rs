//! Computation across parties without revealing rows.
//!
//! ```text
//!   ids ──canonical rule──► group (Ristretto255 hashing, blinding, checked decoding)
//!                              │
//!             ┌────────────────┴───────────────┐
//!             ▼                                ▼
//!           psi (ECDH set intersection)      pjc (DDH + Paillier join-and-compute)
//!
//!   secagg (pairwise X25519 masks over fixed-point values, three or more providers)
//!   transcript (one SHA-256 hash of every message of a run, for every party's log)
//! ```
//!
//! Each protocol is written as plain functions and state over byte messages, with no
//! network code: the node carries the messages over its signed HTTPS requests. Every
//! protocol assumes honest-but-curious parties; each folder's `NOTES.md` gives the
//! construction, what each party learns and what is out of scope.

pub mod group;
pub mod ids;
pub mod pjc;
pub mod psi;
pub mod secagg;
pub mod transcript;
