//! What each party saves to resume a vertical training, and the choice of the epoch both
//! parties continue from.
//!
//! Each party saves its setup once, when the rows are aligned. The guest saves its request,
//! the plan and its aligned rows, and the host its aligned rows and its dataset's hash. After
//! every epoch it adds a mark: the epoch, its transcript hash at the end of that epoch and
//! its shares of the weights and momentum. Epoch 0 is the state right after the alignment,
//! with all shares zero.
//!
//! A training resumes when the guest's node restarts, or when the guest loses the host
//! (its node restarted or cannot be reached) or the host loses the dealer. The guest
//! requests a fresh dealer session with new seeds from the exchange and sends the host its
//! marks. The host picks the latest epoch for which both parties hold a mark with the same
//! transcript hash, fetches its new seed and continues from there. Both parties drop their
//! marks of later epochs and start a new transcript that opens with that epoch and its hash,
//! so the final hashes still match only when both histories did.
//!
//! The steps of the epoch after the mark run again with fresh correlated randomness and
//! the same shares, so every message of the repeated steps is masked afresh and no mask or
//! triple is used twice. The only values opened to a party again are the loss and the early
//! stopping decision. They are recomputed from the same shares, so they differ from the
//! first run's by the truncation error at most. A training resumes at most [`MAX_RESUMES`] times.

use carrel_learn::vertical::Checkpoint;
use carrel_mpc::transcript::Transcript;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{KIND, PROTOCOL};
use crate::error::{NodeError, NodeResult};
use crate::jobs::JobView;
use crate::models;
use crate::store::Store;

/// Resumes one training may take, counted by each party in its saved state. The host
/// refuses more, so that a guest cannot train again and again for one use of the
/// agreement.
pub(super) const MAX_RESUMES: u32 = 8;

/// Marks kept besides epoch 0. The parties' latest marks differ by one epoch at most when
/// a node stops, so three leave room for a mark that failed to save.
const MARKS_KEPT: usize = 3;

/// A party's saved state of one vertical training.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Saved<S> {
    /// `guest` or `host`.
    pub role: String,
    /// Setup from which the party rebuilds its rows.
    pub setup: S,
    /// Epoch marks in increasing order, epoch 0 first.
    pub marks: Vec<Mark>,
    /// Resumes so far.
    #[serde(default)]
    pub resumes: u32,
}

/// The state of one party after an epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Mark {
    /// Epochs completed.
    pub epoch: u32,
    /// The party's transcript hash at the end of the epoch, hex.
    pub transcript_sha256: String,
    /// The party's [`Checkpoint`] as JSON text, because its 128-bit shares do not fit JSON
    /// numbers; none at epoch 0.
    #[serde(default)]
    pub state: Option<String>,
}

impl Mark {
    /// Returns the checkpoint to resume from, none at epoch 0.
    pub fn checkpoint(&self) -> NodeResult<Option<Checkpoint>> {
        self.state
            .as_deref()
            .map(|text| {
                serde_json::from_str(text).map_err(|e| {
                    NodeError::Internal(format!(
                        "the checkpoint of epoch {} does not parse: {e}",
                        self.epoch
                    ))
                })
            })
            .transpose()
    }

    fn offer(&self) -> Offer {
        Offer {
            epoch: self.epoch,
            transcript_sha256: self.transcript_sha256.clone(),
        }
    }
}

/// The guest's request to resume: its marks without the shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resume {
    /// The epochs the guest can continue from, with its transcript hash at each.
    pub marks: Vec<Offer>,
}

/// One epoch the guest can continue from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Epochs completed.
    pub epoch: u32,
    /// The guest's transcript hash at the end of the epoch, hex.
    pub transcript_sha256: String,
}

/// The host's response to [`Resume`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resumed {
    /// The epoch both parties continue from.
    pub epoch: u32,
}

/// Saves a party's setup with the mark of epoch 0, replacing any saved state of the job.
pub(super) fn save_setup<S: Serialize>(
    store: &Store,
    job: &str,
    role: &str,
    setup: &S,
    aligned: [u8; 32],
) -> NodeResult<()> {
    let saved = Saved {
        role: role.to_owned(),
        setup,
        marks: vec![Mark {
            epoch: 0,
            transcript_sha256: hex::encode(aligned),
            state: None,
        }],
        resumes: 0,
    };
    models::save_checkpoint(store, job, &to_value(&saved)?)
}

/// Loads a party's saved state, none when it saved no setup.
pub(super) fn load<S: DeserializeOwned>(store: &Store, job: &str) -> NodeResult<Option<Saved<S>>> {
    let Some(value) = models::load_checkpoint(store, job)? else {
        return Ok(None);
    };
    if value.get("setup").is_none() {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some).map_err(|e| {
        NodeError::Internal(format!("the saved state of job {job} does not parse: {e}"))
    })
}

/// Adds the mark of an epoch just completed, keeping epoch 0 and the latest marks.
pub(super) fn record_epoch(
    store: &Store,
    job: &str,
    transcript: [u8; 32],
    checkpoint: &Checkpoint,
) -> NodeResult<()> {
    let mut saved = load::<Value>(store, job)?.ok_or_else(|| {
        NodeError::Internal(format!("job {job} saved no setup before its first epoch"))
    })?;
    let state = serde_json::to_string(checkpoint)
        .map_err(|e| NodeError::Internal(format!("the checkpoint does not serialise: {e}")))?;
    let epoch = checkpoint.epochs_done;
    saved.marks.retain(|mark| mark.epoch < epoch);
    saved.marks.push(Mark {
        epoch,
        transcript_sha256: hex::encode(transcript),
        state: Some(state),
    });
    let excess = saved.marks.len().saturating_sub(MARKS_KEPT + 1);
    saved.marks.drain(1..1 + excess);
    models::save_checkpoint(store, job, &to_value(&saved)?)
}

/// Records a resume from `epoch`: drops the marks after it, which belong to a history that
/// the resumed training replaces, and counts the resume. Returns the resumes so far.
pub(super) fn rewind(store: &Store, job: &str, epoch: u32) -> NodeResult<u32> {
    let Some(mut saved) = load::<Value>(store, job)? else {
        return Ok(0);
    };
    saved.marks.retain(|mark| mark.epoch <= epoch);
    saved.resumes += 1;
    models::save_checkpoint(store, job, &to_value(&saved)?)?;
    Ok(saved.resumes)
}

/// Checks that a training may resume once more.
///
/// # Errors
///
/// [`NodeError::Forbidden`] after [`MAX_RESUMES`] resumes.
pub(super) fn check_resumes<S>(saved: &Saved<S>, job: &str) -> NodeResult<()> {
    if saved.resumes >= MAX_RESUMES {
        return Err(NodeError::Forbidden(format!(
            "job {job} has resumed {MAX_RESUMES} times, the most one training may; start a              new training"
        )));
    }
    Ok(())
}

/// Returns the guest's offer: every epoch for which it saved a mark.
pub(super) fn offers(marks: &[Mark]) -> Vec<Offer> {
    marks.iter().map(Mark::offer).collect()
}

/// Returns the host's mark of the latest epoch that the guest offers with the same
/// transcript hash.
///
/// # Errors
///
/// [`NodeError::JobFailed`] when no epoch is common, not even epoch 0: the parties did not
/// align the same rows, and the training cannot continue.
pub(super) fn common_mark<'a>(own: &'a [Mark], offered: &[Offer]) -> NodeResult<&'a Mark> {
    own.iter()
        .rev()
        .find(|mark| offered.contains(&mark.offer()))
        .ok_or_else(|| {
            NodeError::JobFailed(
                "the guest's and the host's histories of the training share no epoch, not \
                 even the alignment; the training cannot resume, start a new one"
                    .into(),
            )
        })
}

/// Starts the transcript of a resumed training: it opens with the epoch and the hash that
/// both parties continue from.
pub(super) fn resumed_transcript(job: &str, mark: &Mark) -> Transcript {
    let mut transcript = Transcript::new(PROTOCOL, job);
    let marker = serde_json::json!({ "epoch": mark.epoch,
                                     "transcript_sha256": mark.transcript_sha256 });
    transcript.append(b"resume", marker.to_string().as_bytes());
    transcript
}

/// Returns whether a vertical job left running by a stopped process continues after a
/// restart: the dealer's session always (the guest opens it again), the guest's and the
/// host's when they saved their setup.
pub(crate) fn resumes_after_restart(store: &Store, job: &JobView) -> bool {
    if job.kind != KIND {
        return false;
    }
    match job.role.as_str() {
        "dealer" => true,
        "guest" | "host" => matches!(load::<Value>(store, &job.id), Ok(Some(_))),
        _ => false,
    }
}

fn to_value(value: &impl Serialize) -> NodeResult<Value> {
    serde_json::to_value(value)
        .map_err(|e| NodeError::Internal(format!("the saved state does not serialise: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(epoch: u32, hash: &str) -> Mark {
        Mark {
            epoch,
            transcript_sha256: hash.into(),
            state: None,
        }
    }

    fn offer(epoch: u32, hash: &str) -> Offer {
        Offer {
            epoch,
            transcript_sha256: hash.into(),
        }
    }

    #[test]
    fn latest_epoch_with_equal_hashes_is_chosen() {
        let host = [mark(0, "a"), mark(3, "d"), mark(4, "e"), mark(5, "f")];
        let guest = [offer(0, "a"), offer(3, "d"), offer(4, "e")];
        assert_eq!(common_mark(&host, &guest).unwrap().epoch, 4);
    }

    #[test]
    fn epoch_of_replaced_history_is_skipped() {
        // The host's epoch 5 comes from a history that a resume at epoch 4 replaced.
        let host = [mark(0, "a"), mark(4, "e"), mark(5, "old")];
        let guest = [offer(0, "a"), offer(4, "e"), offer(5, "new")];
        assert_eq!(common_mark(&host, &guest).unwrap().epoch, 4);
    }

    #[test]
    fn no_common_epoch_fails_the_job() {
        let host = [mark(0, "a")];
        let guest = [offer(0, "b")];
        let error = common_mark(&host, &guest).unwrap_err();
        assert!(matches!(error, NodeError::JobFailed(_)), "{error}");
    }

    #[test]
    fn resumes_beyond_the_limit_are_forbidden() {
        let mut saved = Saved {
            role: "host".into(),
            setup: (),
            marks: vec![mark(0, "a")],
            resumes: MAX_RESUMES - 1,
        };
        assert!(check_resumes(&saved, "job").is_ok());
        saved.resumes = MAX_RESUMES;
        let error = check_resumes(&saved, "job").unwrap_err();
        assert!(matches!(error, NodeError::Forbidden(_)), "{error}");
    }

    #[test]
    fn resumed_transcripts_depend_on_the_mark() {
        let a = resumed_transcript("job", &mark(3, "d")).hash();
        assert_eq!(a, resumed_transcript("job", &mark(3, "d")).hash());
        assert_ne!(a, resumed_transcript("job", &mark(3, "e")).hash());
        assert_ne!(a, resumed_transcript("job", &mark(2, "d")).hash());
    }
}
