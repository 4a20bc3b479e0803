//! Private join-and-compute between a consumer's node and a provider's node.
//!
//! The consumer holds identifiers, each with a group label of its own; the provider
//! holds (identifier, value) rows. The consumer learns per group only noisy counts of
//! matched persons and rows and the noisy sum of their values; a group below the
//! minimum size releases nothing; neither side learns which rows matched. The provider
//! enforces its agreement, charges its budget before it sends anything that depends on
//! its data, and adds the noise (see `carrel_mpc::pjc`).
//!
//! | step | request (consumer to provider) | response |
//! | --- | --- | --- |
//! | 1 | `POST /jobs/join`: agreement, rule, epsilon, message 1 (blinded ids by group) | at once; message 2 is prepared in the background |
//! | 2 | `POST /jobs/{id}/join/message2`: a chunk number | that chunk of message 2 and the number of chunks, or no chunks while it is not ready |
//! | 3 | `POST /jobs/{id}/join/release`: message 3 (masked sums) | message 4 (noisy masked sums) |
//! | end | `POST /jobs/{id}/join/finish` with the consumer's transcript hash | the provider's |

mod consumer;
mod provider;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use carrel_model::{Action, JoinTerms, UsagePolicy};
use carrel_mpc::ids::IdRule;
use carrel_mpc::pjc::{NoiseMode, PjcParams};
use serde::{Deserialize, Serialize};

use crate::agreements::AgreementRecord;
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{blocking, decode, encode};

pub use consumer::start;
pub use provider::{abort, finish, message2, open, release};

/// Label of the protocol in transcripts.
const PROTOCOL: &str = "carrel-join-v1";

/// Bytes of message 2 per chunk.
const CHUNK: usize = 4 << 20;

/// Most groups a consumer may name.
const MAX_GROUPS: usize = 16;

/// A request of the `carrel join` command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartJoin {
    /// Agreement with the provider, permitting private join-and-compute.
    pub agreement: String,
    /// CSV file of identifiers with a header line.
    pub ids: std::path::PathBuf,
    /// Column holding the identifiers; the first when absent.
    #[serde(default)]
    pub id_column: Option<String>,
    /// Column holding each identifier's group label; one group when absent.
    #[serde(default)]
    pub group_column: Option<String>,
    /// Epsilon to spend; the offer's default when absent.
    #[serde(default)]
    pub epsilon: Option<f64>,
}

/// The consumer's first message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Open {
    /// Job id.
    pub job: String,
    /// Agreement the run is under.
    pub agreement: String,
    /// The consumer's identifier rule statement.
    pub rule: String,
    /// Epsilon the run spends.
    pub epsilon: f64,
    /// Message 1, base64.
    pub message1: String,
}

/// A message or a chunk of one, base64.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Blob {
    /// Chunk number, for chunked messages.
    #[serde(default)]
    pub index: usize,
    /// Number of chunks, in answers.
    #[serde(default)]
    pub chunks: usize,
    /// The bytes, base64.
    #[serde(default)]
    pub data: String,
}

/// The end of a run: the sender's transcript hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    /// SHA-256 of the sender's transcript, hex.
    pub transcript_sha256: String,
}

/// A provider's state of one run between steps.
pub(crate) struct ProviderJoin {
    consumer: String,
    agreement: String,
    responded: Option<carrel_mpc::pjc::ValuePartyResponded>,
    /// Message 2, once prepared.
    message2: Option<Vec<u8>>,
    transcript: Option<carrel_mpc::transcript::Transcript>,
    /// Why preparing message 2 failed.
    failure: Option<String>,
}

/// Provider-side runs in progress, by job id.
#[derive(Default)]
pub struct Sessions {
    runs: Mutex<HashMap<String, Arc<Mutex<ProviderJoin>>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<ProviderJoin>>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn terms_of(record: &AgreementRecord) -> NodeResult<JoinTerms> {
    let policy = &record.signed.agreement.policy;
    if policy.action != Action::PrivateJoin {
        return Err(NodeError::Forbidden(format!(
            "agreement {} permits {:?}, not private join-and-compute",
            record.signed.agreement.id, policy.action
        )));
    }
    policy.join.clone().ok_or_else(|| {
        NodeError::Internal(format!(
            "agreement {} has no join terms",
            record.signed.agreement.id
        ))
    })
}

/// Derives the parameters both sides use from the signed agreement, the job and epsilon.
fn params(job: &str, policy: &UsagePolicy, terms: &JoinTerms, epsilon: f64) -> PjcParams {
    PjcParams {
        session_id: job.as_bytes().to_vec(),
        epsilon,
        delta: policy.query_delta,
        max_rows_per_id: policy.max_rows_per_unit,
        lower: terms.value_lower,
        upper: terms.value_upper,
        min_group_size: policy.min_group_size,
        max_set_size: usize::try_from(terms.max_set_size).unwrap_or(usize::MAX),
        noise: NoiseMode::DiscreteLaplace,
    }
}

fn rule_of(terms: &JoinTerms) -> IdRule {
    IdRule {
        case: terms.id_case,
    }
}

fn protocol_error(error: carrel_mpc::pjc::PjcError) -> NodeError {
    NodeError::BadRequest(error.to_string())
}
