//! Horizontal federated logistic regression: federated averaging over secure aggregation.
//!
//! Three or more providers hold different rows with the same feature columns. Each round,
//! every provider trains locally from the global model and the coordinator learns, through
//! pairwise-masked secure aggregation, only the row-weighted mean of the updates, the mean
//! training loss and the total row count. Against honest-but-curious parties it learns
//! nothing about a single provider's update, loss or row count. With [`DpConfig`], each
//! provider runs DP-SGD, and the models and losses released satisfy ρ-zCDP per training row
//! as [`privacy_loss`] computes. `NOTES.md` gives the construction, the leakage, the DP
//! accounting and the limits.
//!
//! ```text
//!   coordinator                                   provider i (of n >= 3)
//!   Coordinator::new ─ start_round ─► RoundRequest ─► Provider::respond
//!                                                    census: row count
//!                                                    training: loss of the model, local
//!                                                    SGD, update = local - global,
//!                                                    encode with weight n_i, fresh key
//!   add_public_key ◄──────────── PublicKeyMessage ◄─ LocalUpdate::public_key_message
//!   public_keys ─────────────────► PublicKeys ─────► LocalUpdate::mask
//!   add_masked ◄──────────────────── MaskedUpdate ◄─┘
//!   finish_round: sum, decode N, mean update and mean loss; model += mean update
//! ```
//!
//! Round 0 is a census of the row counts, because every provider needs the total `N` for
//! the L2 penalty `1 / (C N)` per row. Training rounds follow until `rounds` have started or
//! early stopping triggers. [`run_local`] drives all parties in one process.
//!
//! # Determinism
//!
//! Without DP, the same data and settings give the same model bit for bit. The masks come
//! from fresh operating-system randomness every round but cancel exactly in the ring, and
//! the shuffle is seeded from [`TrainingConfig::seed`], the round and the provider index.

mod config;
mod coordinator;
mod encoding;
mod error;
mod message;
mod privacy;
mod provider;
mod runner;
mod sgd;
mod state;

#[cfg(test)]
mod test;

pub use config::{
    DpConfig, EarlyStopping, EncodingConfig, MAX_LOCAL_EPOCHS, MAX_ROUNDS, TrainingConfig,
};
pub use coordinator::{Coordinator, RoundSummary};
pub use error::TrainingError;
pub use message::{MaskedUpdate, PublicKeyMessage, PublicKeys, RoundRequest, RoundTask};
pub use privacy::{PrivacyLoss, privacy_loss};
pub use provider::{LocalUpdate, PartyData, Provider};
pub use runner::{TrainingOutcome, run_local};
pub use state::{RoundLoss, TrainingState};
