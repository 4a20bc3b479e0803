//! Secure aggregation across three or more providers, coordinated by the consumer.
//!
//! Each provider runs the same `SELECT COUNT(*), SUM(c1), ... FROM <its product>` under
//! its own agreement with the consumer, charges its own budget, and masks its exact
//! totals with pairwise X25519 masks, so the consumer learns only the element-wise sum.
//! The provider first in name order adds discrete Laplace noise once, at a scale that
//! every provider checks against its own sensitivity and epsilon before it masks.
//!
//! | step | request (consumer to each provider) | response |
//! | --- | --- | --- |
//! | join | `POST /jobs/secagg`: agreement, parties, columns, epsilon | its X25519 public key, sensitivities and contribution bound |
//! | mask | `POST /jobs/{id}/secagg/mask`: every public key and the round settings | its masked vector |
//! | end | `POST /jobs/{id}/secagg/finish`: the digests of every masked vector and the transcript hash | its transcript hash |
//!
//! Sums of integer columns are exact integers; sums of real columns are carried in
//! units of 2⁻¹⁶, rounded half to even. If any provider fails or drops out, the
//! consumer ends the job on every party and releases nothing: there is no recovery by
//! threshold secret sharing.

mod coordinator;
mod provider;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use carrel_model::{Action, SecAggTerms};
use carrel_mpc::transcript::Transcript;
use serde::{Deserialize, Serialize};

use crate::agreements::AgreementRecord;
use crate::error::{NodeError, NodeResult};

pub use coordinator::start;
pub use provider::{abort, finish, join, mask};

/// Label of the protocol in transcripts.
const PROTOCOL: &str = "carrel-secagg-v1";

/// Size of the ring the masked values live in, in bits.
const MODULUS_BITS: u32 = 64;

/// Fractional bits of a real-valued sum.
const REAL_FRACTION_BITS: i32 = 16;

/// A request of the `carrel aggregate` command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartSecAgg {
    /// One agreement per provider, each permitting secure aggregation.
    pub agreements: Vec<String>,
    /// Columns whose sums are computed beside the row count.
    pub columns: Vec<String>,
    /// Epsilon each provider spends; its offer's default when absent.
    #[serde(default)]
    pub epsilon: Option<f64>,
}

/// The consumer's request to join a round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Join {
    /// Job id.
    pub job: String,
    /// The agreement between this provider and the consumer.
    pub agreement: String,
    /// Every provider, in name order.
    pub parties: Vec<String>,
    /// Columns summed beside the row count.
    pub columns: Vec<String>,
    /// Epsilon each provider spends.
    pub epsilon: f64,
}

/// A provider's answer to [`Join`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joined {
    /// X25519 public key of this round, base64.
    pub public_key: String,
    /// Per coordinate: how much one person can change this provider's encoded value.
    pub sensitivities: Vec<u64>,
    /// Largest absolute encoded value this provider can contribute to a coordinate.
    pub max_contribution: u64,
    /// Per coordinate: fractional bits of the encoding, 0 for counts and integer sums.
    pub fraction_bits: Vec<i32>,
}

/// The round's settings and every party's key, sent to each provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaskRequest {
    /// Every party's X25519 public key, base64, by index.
    pub public_keys: Vec<String>,
    /// Largest contribution of any party.
    pub max_contribution: u64,
    /// Per coordinate: the largest sensitivity of any provider, in encoded units. The
    /// noise scale is this times the number of coordinates over epsilon.
    pub noise_sensitivities: Vec<u64>,
}

/// The end of a round: what the consumer saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishRound {
    /// SHA-256 of each masked vector, hex, by index.
    pub masked_sha256: Vec<String>,
    /// The consumer's transcript hash, hex.
    pub transcript_sha256: String,
}

/// A provider's state of one round between steps.
pub(crate) struct ProviderRound {
    consumer: String,
    join: Join,
    index: usize,
    totals: Vec<i64>,
    sensitivities: Vec<u64>,
    max_contribution: u64,
    masking: Option<carrel_mpc::secagg::MaskingParty>,
    request: Option<MaskRequest>,
    masked_sha256: Option<String>,
}

/// Provider-side rounds in progress, by job id.
#[derive(Default)]
pub struct Sessions {
    rounds: Mutex<HashMap<String, Arc<Mutex<ProviderRound>>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<ProviderRound>>>> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn terms_of(record: &AgreementRecord) -> NodeResult<SecAggTerms> {
    let policy = &record.signed.agreement.policy;
    if policy.action != Action::SecureAggregation {
        return Err(NodeError::Forbidden(format!(
            "agreement {} permits {:?}, not secure aggregation",
            record.signed.agreement.id, policy.action
        )));
    }
    policy.secure_aggregation.clone().ok_or_else(|| {
        NodeError::Internal(format!(
            "agreement {} has no secure_aggregation terms",
            record.signed.agreement.id
        ))
    })
}

/// Computes the transcript hash every party computes the same way: the round's header, every public
/// key, the settings and the digest of every masked vector.
fn transcript_hash(job: &Join, request: &MaskRequest, masked_sha256: &[String]) -> String {
    let mut transcript = Transcript::new(PROTOCOL, &job.job);
    let header = serde_json::json!({ "parties": job.parties, "columns": job.columns,
                                     "epsilon": job.epsilon });
    transcript.append(b"header", header.to_string().as_bytes());
    for key in &request.public_keys {
        transcript.append(b"public-key", key.as_bytes());
    }
    let settings = serde_json::json!({ "max_contribution": request.max_contribution,
                                       "noise_sensitivities": request.noise_sensitivities });
    transcript.append(b"settings", settings.to_string().as_bytes());
    for digest in masked_sha256 {
        transcript.append(b"masked-sha256", digest.as_bytes());
    }
    hex::encode(transcript.hash())
}

/// Returns the Laplace scale of each coordinate: its sensitivity over an equal share of epsilon.
fn noise_scales(sensitivities: &[u64], epsilon: f64) -> Vec<f64> {
    let share = epsilon / sensitivities.len() as f64;
    sensitivities.iter().map(|&s| s as f64 / share).collect()
}

/// Checks a column name before it goes into SQL text.
fn check_column(column: &str) -> NodeResult<()> {
    let valid = column
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        return Ok(());
    }
    Err(NodeError::BadRequest(format!(
        "column {column:?} is invalid: use lower case letters, digits and '_', starting with a letter"
    )))
}
