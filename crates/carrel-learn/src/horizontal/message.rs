//! Messages between the coordinator and the providers, in the order a round sends them.

use carrel_mpc::secagg::PUBLIC_KEY_LEN;
use serde::{Deserialize, Serialize};

use crate::logistic::Model;

/// Message 1, coordinator to every provider: opens a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRequest {
    /// Identifier of this round's secure aggregation, unique per round of a run.
    pub session_id: String,
    /// Round number: 0 for the census, training rounds from 1.
    pub round: u32,
    /// Number of providers, indexed `0..parties` in the same order by every party.
    pub parties: usize,
    /// [`TrainingConfig::digest`] of the coordinator's settings.
    ///
    /// [`TrainingConfig::digest`]: super::TrainingConfig::digest
    pub settings_digest: String,
    /// Work of the providers in this round.
    pub task: RoundTask,
}

/// The work of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoundTask {
    /// Aggregate the row counts, so that every provider can weight the L2 penalty by the
    /// total.
    Census,
    /// Train from `model` and aggregate the weighted mean update, loss and row count.
    Train {
        /// The global model at the start of the round.
        model: Model,
        /// Total row count learnt in the census.
        total_rows: u64,
    },
}

/// Message 2, provider to coordinator: the provider's fresh X25519 key for this round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyMessage {
    /// Session of the round.
    pub session_id: String,
    /// Index of the sending provider.
    pub party: usize,
    /// X25519 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
}

/// Message 3, coordinator to every provider: all public keys, in party order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    /// Session of the round.
    pub session_id: String,
    /// Key of party `j` at position `j`.
    pub keys: Vec<[u8; PUBLIC_KEY_LEN]>,
}

/// Message 4, provider to coordinator: the encoded vector with the pairwise masks added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedUpdate {
    /// Session of the round.
    pub session_id: String,
    /// Index of the sending provider.
    pub party: usize,
    /// Masked ring elements, one per coordinate of the round's vector.
    pub masked: Vec<u64>,
}
