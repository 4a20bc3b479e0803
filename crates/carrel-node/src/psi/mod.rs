//! Private set intersection between a consumer's node and a provider's node.
//!
//! The consumer's node drives the run; the provider's node answers, enforcing its
//! agreement with the consumer at the handshake: the action, the requester, revocation,
//! validity, the run count (one run counts as one use) and the largest set the
//! consumer may bring. Both nodes state their identifier rule in the handshake, and a
//! mismatch ends the run before any blinded element is sent.
//!
//! | step | request (consumer to provider) | response |
//! | --- | --- | --- |
//! | handshake | `POST /jobs/psi` with the rule and set size | the provider's rule and set size |
//! | 1 | `POST /jobs/{id}/psi/consumer-elements`: a batch of the consumer's blinded elements | the batch blinded again, when the consumer learns the intersection |
//! | 2 | `POST /jobs/{id}/psi/provider-elements`: the next batch position | a batch of the provider's blinded elements |
//! | 3 | `POST /jobs/{id}/psi/provider-doubled`: the provider's elements blinded again | - |
//! | 4 | `POST /jobs/{id}/psi/consumer-doubled`: a chunk number | the consumer's elements blinded again, shuffled, when it learns the size only |
//! | end | `POST /jobs/{id}/psi/finish` with the consumer's transcript hash | the provider's transcript hash |
//!
//! Either side ends the job on any error; the consumer also sends `POST /jobs/{id}/abort`
//! so the provider ends it too. Both logs hold the same transcript hash for a completed
//! run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use carrel_model::{Action, PsiTerms, Reveal};
use carrel_mpc::ids::{IdList, IdReport, IdRule};
use carrel_mpc::psi::{PsiOutcome, PsiParty};
use carrel_mpc::transcript::Transcript;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs;
use crate::jobs::wire::{blocking, decode, encode};
use crate::node::Node;
use crate::signing::sha256_hex;

/// Largest batch a consumer may ask for, in elements (2 MiB of elements).
const MAX_BATCH: usize = 1 << 16;

/// Label of the protocol in transcripts.
const PROTOCOL: &str = "carrel-psi-v1";

/// A request of the `carrel psi` command to start a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartPsi {
    /// Agreement with the provider, permitting private set intersection.
    pub agreement: String,
    /// CSV file of the consumer's identifiers, with a header line.
    pub ids: PathBuf,
    /// Column of the file holding the identifiers; the first when absent.
    #[serde(default)]
    pub column: Option<String>,
    /// Elements per message.
    #[serde(default)]
    pub batch: Option<usize>,
}

/// The consumer's handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Job id chosen by the consumer.
    pub job: String,
    /// Agreement the run is under.
    pub agreement: String,
    /// The consumer's identifier rule statement.
    pub rule: String,
    /// Distinct identifiers the consumer brings.
    pub consumer_size: u64,
    /// Elements per message.
    pub batch: u64,
}

/// The provider's answer to the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloReply {
    /// The provider's identifier rule statement.
    pub rule: String,
    /// Distinct identifiers the provider brings.
    pub provider_size: u64,
}

/// A batch of encoded group elements.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Elements {
    /// Position of the first element in its stream.
    #[serde(default)]
    pub start: u64,
    /// Concatenated 32-byte encodings, base64.
    #[serde(default)]
    pub points: String,
}

/// The end of a run: the sender's transcript hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    /// SHA-256 of the sender's transcript, hex.
    pub transcript_sha256: String,
}

/// Provider-side state of the runs in progress, by job id.
#[derive(Default)]
pub struct Sessions {
    runs: Mutex<HashMap<String, Arc<Mutex<ProviderRun>>>>,
}

/// The provider's side of one run.
pub struct ProviderRun {
    consumer: String,
    agreement: String,
    party: PsiParty,
    transcript: Transcript,
    batch: usize,
    consumer_learns: Reveal,
    next_own: usize,
    shuffled: Option<Vec<Vec<u8>>>,
    report: IdReport,
}

impl Sessions {
    fn insert(&self, job: &str, run: ProviderRun) {
        self.lock()
            .insert(job.to_owned(), Arc::new(Mutex::new(run)));
    }

    fn take(&self, job: &str) -> Option<Arc<Mutex<ProviderRun>>> {
        self.lock().remove(job)
    }

    fn get(&self, job: &str, signer: &str) -> NodeResult<Arc<Mutex<ProviderRun>>> {
        let run = self
            .lock()
            .get(job)
            .cloned()
            .ok_or_else(|| NodeError::NotFound {
                what: "running private set intersection",
                id: job.to_owned(),
            })?;
        if lock(&run).consumer != signer {
            return Err(NodeError::Forbidden(format!(
                "{signer:?} is not the consumer of job {job}"
            )));
        }
        Ok(run)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<ProviderRun>>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn lock(run: &Mutex<ProviderRun>) -> std::sync::MutexGuard<'_, ProviderRun> {
    run.lock().unwrap_or_else(|p| p.into_inner())
}

fn hello_bytes(hello: &Hello, reply: &HelloReply, terms: &PsiTerms) -> Vec<u8> {
    json!({ "job": hello.job, "agreement": hello.agreement, "rule": hello.rule,
            "consumer_size": hello.consumer_size, "provider_size": reply.provider_size,
            "batch": hello.batch, "consumer_learns": terms.consumer_learns,
            "provider_learns": terms.provider_learns })
    .to_string()
    .into_bytes()
}

fn rule_of(terms: &PsiTerms) -> IdRule {
    IdRule {
        case: terms.id_case,
    }
}

fn terms_of(record: &agreements::AgreementRecord) -> NodeResult<PsiTerms> {
    let policy = &record.signed.agreement.policy;
    if policy.action != Action::PrivateSetIntersection {
        return Err(NodeError::Forbidden(format!(
            "agreement {} permits {:?}, not private set intersection",
            record.signed.agreement.id, policy.action
        )));
    }
    policy.psi.clone().ok_or_else(|| {
        NodeError::Internal(format!(
            "agreement {} has no psi terms",
            record.signed.agreement.id
        ))
    })
}

fn protocol_error(error: carrel_mpc::psi::PsiError) -> NodeError {
    NodeError::BadRequest(error.to_string())
}

/// Writes the identifiers at `members` as a one-column CSV, in their stored order.
fn member_lines(ids: &IdList, members: &[usize]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let written = std::iter::once("id")
        .chain(members.iter().map(|&i| ids.text(i)))
        .try_for_each(|id| writer.write_record([id]));
    // Writing to a vector cannot fail.
    written.expect("CSV into memory");
    writer.into_inner().expect("CSV into memory")
}

/// Checks that a consumer's identifier file is a readable file, before any job starts.
///
/// # Errors
///
/// [`NodeError::BadRequest`] naming the path and what to give instead.
pub(crate) fn check_ids_file(path: &std::path::Path) -> NodeResult<()> {
    let problem = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => match std::fs::File::open(path) {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        },
        Ok(meta) if meta.is_dir() => "it is a directory".to_owned(),
        Ok(_) => "it is not a regular file".to_owned(),
        Err(e) => e.to_string(),
    };
    Err(NodeError::BadRequest(format!(
        "identifier file {} cannot be read: {problem}; give a readable CSV file with a header line",
        path.display()
    )))
}

/// Writes the members of the intersection to `results/{job}.csv` in the node's folder;
/// returns the file's path and SHA-256.
fn write_members(node: &Node, job: &str, lines: &[u8]) -> NodeResult<(String, String)> {
    let folder = node.dir.path().join("results");
    std::fs::create_dir_all(&folder)
        .map_err(|e| NodeError::Io(format!("cannot create {}: {e}", folder.display())))?;
    let file = folder.join(format!("{job}.csv"));
    std::fs::write(&file, lines)
        .map_err(|e| NodeError::Io(format!("cannot write {}: {e}", file.display())))?;
    Ok((file.display().to_string(), sha256_hex(lines)))
}

/// Writes what this node learned into the job and the audit log.
#[allow(clippy::too_many_arguments)]
fn record_outcome(
    node: &Node,
    actor: &str,
    job: &str,
    transcript_sha256: &str,
    outcome: &PsiOutcome,
    members: Option<(String, String)>,
    report: IdReport,
    (own, peer): (u64, u64),
    peers: &[String],
    traffic: Option<Value>,
) -> NodeResult<Value> {
    let mut result = json!({ "learned": outcome.reveal, "own_set": own,
                             "duplicates": report.duplicates, "blank": report.blank,
                             "peers": peers });
    if peer > 0 {
        result["peer_set"] = json!(peer);
    }
    if let Some(size) = outcome.size {
        result["size"] = json!(size);
    }
    if let Some(traffic) = traffic {
        result["traffic"] = traffic;
    }
    if let Some((file, sha256)) = members {
        result["members_file"] = json!(file);
        result["members_sha256"] = json!(sha256);
    }
    jobs::succeed(&node.store, actor, job, transcript_sha256, result.clone())?;
    Ok(result)
}

mod consumer;
mod provider;

pub use consumer::start;
pub use provider::{
    abort, consumer_doubled, consumer_elements, finish, hello, provider_doubled, provider_elements,
};
