//! The training's message links: the guest's [`Channel`] over signed HTTPS calls, and the
//! host's party on its own thread with the bridge to the host's request handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use carrel_learn::vertical::{
    Channel, Checkpoint, EpochReport, HostCorrelation, Outcome, Party, Plan, Seed, VerticalError,
};
use carrel_mpc::transcript::Transcript;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::{ExchangePart, ExchangeReply, ReplyRequest, resume};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs;
use crate::jobs::wire::{PeerCalls, blocking, decode, encode};
use crate::node::Node;
use crate::training::dealer::{CorrectionsRequest, StepCorrections};

/// A transcript that the request handlers and a party's thread share: the handlers append
/// the messages, and the party reads the hash at the end of each epoch.
#[derive(Clone)]
pub(super) struct SharedTranscript(Arc<std::sync::Mutex<Transcript>>);

impl SharedTranscript {
    pub(super) fn new(transcript: Transcript) -> Self {
        Self(Arc::new(std::sync::Mutex::new(transcript)))
    }

    pub(super) fn append(&self, label: &[u8], message: &[u8]) {
        self.lock().append(label, message);
    }

    pub(super) fn hash(&self) -> [u8; 32] {
        self.lock().hash()
    }

    /// Returns a copy of the transcript so far.
    pub(super) fn snapshot(&self) -> Transcript {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Transcript> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes of a message per request; a longer message travels in several parts.
pub(super) const PART_BYTES: usize = 4 << 20;

/// Largest message of one exchange that a party accepts, in bytes.
pub(super) const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// How long the host's party waits for the guest's next message before it ends the job.
const GUEST_IDLE: Duration = Duration::from_secs(600);

/// How long a request handler waits for the host's party to produce its message. It is
/// longer than a call's 30 s timeout, so that a party whose call to the dealer timed out
/// ends as interrupted, and the guest resumes, before the handler gives up.
const PARTY_WAIT: Duration = Duration::from_secs(40);

/// Splits a message into parts of at most [`PART_BYTES`]; an empty message is one part.
pub(super) fn parts(message: &[u8]) -> Vec<&[u8]> {
    if message.is_empty() {
        return vec![message];
    }
    message.chunks(PART_BYTES).collect()
}

/// Returns the number of parts as the wire carries it.
pub(super) fn part_count(parts: &[&[u8]]) -> NodeResult<u32> {
    u32::try_from(parts.len())
        .map_err(|_| NodeError::Internal("a message has more than 2^32 parts".into()))
}

/// The guest's end of the training: each exchange is one or more signed calls to the host.
pub(super) struct GuestLink {
    /// Runtime the calls run on, from the blocking thread of the guest's party.
    pub handle: Handle,
    pub node: Arc<Node>,
    pub calls: Arc<PeerCalls>,
    pub host: String,
    pub job: String,
    pub agreement: String,
    /// Number of the next exchange.
    pub seq: u64,
    pub transcript: SharedTranscript,
    /// The node error behind the last transport error the party saw.
    pub failure: Option<NodeError>,
}

impl GuestLink {
    fn send(&mut self, tag: &'static str, outgoing: &[u8]) -> NodeResult<Vec<u8>> {
        // A revocation or the end of validity stops a training under way.
        agreements::check_in_force(&self.node.store, &self.agreement)?;

        let path = format!("/jobs/{}/vertical/exchange", self.job);
        let pieces = parts(outgoing);
        let count = part_count(&pieces)?;
        let mut last = None;
        for (index, piece) in pieces.iter().enumerate() {
            let message = ExchangePart {
                seq: self.seq,
                tag: tag.to_owned(),
                part: index as u32,
                parts: count,
                body: encode(piece),
            };
            let reply: ExchangeReply = self
                .handle
                .block_on(self.calls.call(&self.host, &path, &message))?;
            last = Some(reply);
        }

        // `parts` returns at least one part, so the loop ran.
        let first = last.expect("one part at least");
        if first.seq != self.seq || first.parts == 0 {
            return Err(NodeError::JobFailed(format!(
                "the host returned exchange {} of {} parts for exchange {} ({tag})",
                first.seq, first.parts, self.seq
            )));
        }

        // The host's message may come in several parts; the first came with the last call.
        let mut incoming = decode(&first.body)?;
        let further = format!("/jobs/{}/vertical/reply", self.job);
        for part in 1..first.parts {
            let request = ReplyRequest {
                seq: self.seq,
                part,
            };
            let piece: ExchangeReply = self
                .handle
                .block_on(self.calls.call(&self.host, &further, &request))?;
            incoming.extend(decode(&piece.body)?);
            if incoming.len() > MAX_MESSAGE_BYTES {
                return Err(NodeError::JobFailed(format!(
                    "the host's {tag} message exceeds {MAX_MESSAGE_BYTES} bytes"
                )));
            }
        }

        self.transcript.append(tag.as_bytes(), outgoing);
        self.transcript.append(tag.as_bytes(), &incoming);
        tracing::trace!(target: "carrel::training", job = %self.job, seq = self.seq, tag,
            sent = outgoing.len(), received = incoming.len(), "exchange");
        self.seq += 1;
        Ok(incoming)
    }
}

impl Channel for GuestLink {
    fn exchange(&mut self, tag: &'static str, outgoing: Vec<u8>) -> Result<Vec<u8>, VerticalError> {
        self.send(tag, &outgoing).map_err(|error| {
            let text = error.to_string();
            self.failure = Some(error);
            VerticalError::Transport(text)
        })
    }
}

/// The host party's end of the bridge, on the party's own thread.
pub(super) struct PartyEnd {
    to_handler: mpsc::UnboundedSender<(&'static str, Vec<u8>)>,
    from_handler: std_mpsc::Receiver<Vec<u8>>,
    /// Set when the handlers dropped their end: the job ended, or a resumed run replaced
    /// this one.
    superseded: Arc<AtomicBool>,
}

impl Channel for PartyEnd {
    fn exchange(&mut self, tag: &'static str, outgoing: Vec<u8>) -> Result<Vec<u8>, VerticalError> {
        let closed =
            || VerticalError::Transport(format!("the job ended before the {tag} exchange"));
        self.to_handler
            .send((tag, outgoing))
            .map_err(|_| closed())?;
        match self.from_handler.recv_timeout(GUEST_IDLE) {
            Ok(message) => Ok(message),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(VerticalError::Transport(format!(
                "the guest sent no {tag} message for {} s",
                GUEST_IDLE.as_secs()
            ))),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(closed()),
        }
    }
}

/// The end of a host party that produced no outcome.
pub(super) struct Ended {
    message: String,
    /// True when the party lost the dealer and the guest may resume the training.
    interrupted: bool,
}

/// The request handlers' end of the bridge to the host's party.
pub(super) struct Bridge {
    from_party: mpsc::UnboundedReceiver<(&'static str, Vec<u8>)>,
    to_party: std_mpsc::Sender<Vec<u8>>,
    result: Option<oneshot::Receiver<Result<Outcome, Ended>>>,
    outcome: Option<Outcome>,
    superseded: Arc<AtomicBool>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.superseded.store(true, Ordering::SeqCst);
    }
}

/// Sends the party's result to the handlers when its thread ends.
pub(super) type ResultSender = oneshot::Sender<Result<Outcome, Ended>>;

/// Creates the two ends of a bridge and the sender of the party's result.
pub(super) fn bridge() -> (Bridge, PartyEnd, ResultSender) {
    let (to_handler, from_party) = mpsc::unbounded_channel();
    let (to_party, from_handler) = std_mpsc::channel();
    let (result_tx, result_rx) = oneshot::channel();
    let superseded = Arc::new(AtomicBool::new(false));
    let bridge = Bridge {
        from_party,
        to_party,
        result: Some(result_rx),
        outcome: None,
        superseded: superseded.clone(),
    };
    let end = PartyEnd {
        to_handler,
        from_handler,
        superseded,
    };
    (bridge, end, result_tx)
}

impl Bridge {
    /// Waits for the party's message of the next exchange.
    ///
    /// # Errors
    ///
    /// [`NodeError::JobFailed`] when the party ended (with its error) or took too long.
    pub(super) async fn next_message(&mut self) -> NodeResult<(&'static str, Vec<u8>)> {
        match tokio::time::timeout(PARTY_WAIT, self.from_party.recv()).await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => match self.outcome().await {
                Ok(_) => Err(NodeError::JobFailed(
                    "the host's training has ended; no further exchange is due".into(),
                )),
                Err(error) => Err(error),
            },
            Err(_) => Err(NodeError::JobFailed(format!(
                "the host's party produced no message within {} s",
                PARTY_WAIT.as_secs()
            ))),
        }
    }

    /// Passes the guest's message of the current exchange to the party.
    ///
    /// # Errors
    ///
    /// [`NodeError::JobFailed`] when the party has ended.
    pub(super) fn deliver(&self, message: Vec<u8>) -> NodeResult<()> {
        self.to_party
            .send(message)
            .map_err(|_| NodeError::JobFailed("the host's party has ended".into()))
    }

    /// Returns the party's outcome, waiting for its thread to end.
    ///
    /// # Errors
    ///
    /// [`NodeError::JobFailed`] with the party's error, or when it does not end in time;
    /// [`NodeError::Unavailable`] when the party lost the dealer, so that the guest resumes
    /// the training.
    pub(super) async fn outcome(&mut self) -> NodeResult<&Outcome> {
        if self.outcome.is_none() {
            let receiver = self.result.take().ok_or_else(|| {
                NodeError::JobFailed("the host's training ended without an outcome".into())
            })?;
            let result = tokio::time::timeout(PARTY_WAIT, receiver)
                .await
                .map_err(|_| NodeError::JobFailed("the host's training has not finished".into()))?
                .map_err(|_| NodeError::JobFailed("the host's party thread ended".into()))?;
            self.outcome = Some(result.map_err(|ended| {
                if ended.interrupted {
                    NodeError::Unavailable(format!(
                        "the host's training is interrupted: {}; resume it",
                        ended.message
                    ))
                } else {
                    NodeError::JobFailed(ended.message)
                }
            })?);
        }
        // Set just above when it was empty.
        Ok(self.outcome.as_ref().expect("outcome set"))
    }
}

/// The starting point of the host's party thread.
pub(super) struct PartyStart {
    pub plan: Plan,
    pub seed: Seed,
    /// The host's features of the training rows, row-major.
    pub features: Vec<f64>,
    /// The shares to continue from, none for a training from its first epoch.
    pub checkpoint: Option<Checkpoint>,
    pub transcript: SharedTranscript,
    /// Number of the run the party belongs to.
    pub generation: u64,
    /// The dealer's serving number of the seed.
    pub serving: u64,
}

/// Starts the host's party on its own thread and returns the handlers' end of its link.
pub(super) async fn start_party(
    node: &Arc<Node>,
    exchange: &str,
    job: &str,
    start: PartyStart,
) -> NodeResult<Bridge> {
    let PartyStart {
        plan,
        seed,
        features,
        checkpoint,
        transcript,
        generation,
        serving,
    } = start;
    let party = {
        let plan = plan.clone();
        blocking(move || {
            let mut party = Party::host(plan, seed, &features)
                .map_err(|e| NodeError::BadRequest(e.to_string()))?;
            if let Some(checkpoint) = checkpoint {
                party
                    .resume(checkpoint)
                    .map_err(|e| NodeError::JobFailed(e.to_string()))?;
            }
            Ok(party)
        })
        .await?
    };
    let (bridge, mut end, result) = bridge();
    let thread = PartyThread {
        node: node.clone(),
        handle: Handle::current(),
        job: job.to_owned(),
        exchange: exchange.to_owned(),
        plan,
        seed,
        transcript,
        generation,
        serving,
        dealer_lost: AtomicBool::new(false),
    };
    std::thread::Builder::new()
        .name("vertical-host".into())
        .spawn(move || {
            let mut party = party;
            let outcome = thread.train(&mut party, &mut end);
            drop(end);
            let _ = result.send(outcome);
        })
        .map_err(|e| NodeError::Internal(format!("cannot start the host's party thread: {e}")))?;
    Ok(bridge)
}

/// A request for one step's corrections, running on the runtime.
type CorrectionsCall =
    std::pin::Pin<Box<dyn std::future::Future<Output = NodeResult<serde_json::Value>> + Send>>;

/// Context of the host's party thread: the node, the runtime, the job, the dealer and the
/// plan.
struct PartyThread {
    node: Arc<Node>,
    handle: Handle,
    job: String,
    exchange: String,
    plan: Plan,
    seed: Seed,
    transcript: SharedTranscript,
    generation: u64,
    serving: u64,
    /// Set when the dealer could not be reached or no longer has the session.
    dealer_lost: AtomicBool,
}

impl PartyThread {
    fn train(&self, party: &mut Party, end: &mut PartyEnd) -> Result<Outcome, Ended> {
        // The next step's corrections are requested as soon as this step's arrive, so the
        // dealer's work and the round trip overlap the parties' exchanges.
        let steps = u64::from(self.plan.epochs) * self.plan.steps_per_epoch() as u64;
        let mut pending: Option<(u64, CorrectionsCall)> = None;
        let mut correlation = HostCorrelation::new(self.plan.clone(), self.seed, |step| {
            let reply = match pending.take() {
                Some((next, call)) if next == step => self.handle.block_on(call),
                _ => self.handle.block_on(self.request_corrections(step)),
            };
            if step + 1 < steps {
                pending = Some((step + 1, self.spawn_corrections(step + 1)));
            }
            self.decode_corrections(step, reply)
        });
        let mut progress = |report: EpochReport, checkpoint: &Checkpoint| {
            self.epoch_done(report, checkpoint);
        };
        let outcome = party.train(end, &mut correlation, &mut progress);
        outcome.map_err(|error| {
            let message = error.to_string();
            if end.superseded.load(Ordering::SeqCst) {
                // The job ended, or a resumed run took over: nothing to record here.
                return Ended {
                    message,
                    interrupted: false,
                };
            }
            if self.dealer_lost.load(Ordering::SeqCst) {
                super::host::interrupt_run(&self.node, &self.job, self.generation, &message);
                return Ended {
                    message,
                    interrupted: true,
                };
            }
            // Ends the job here unless a request handler ended it already.
            let me = self.node.identity.name();
            let failure = NodeError::JobFailed(message.clone());
            super::host::end_run(
                &self.node,
                &self.handle,
                me,
                &self.job,
                self.generation,
                &failure,
            );
            Ended {
                message,
                interrupted: false,
            }
        })
    }

    /// Starts the request for the corrections of `step` on the runtime.
    fn spawn_corrections(&self, step: u64) -> CorrectionsCall {
        let node = self.node.clone();
        let exchange = self.exchange.clone();
        let path = format!("/jobs/{}/dealer/corrections", self.job);
        let serving = self.serving;
        let call = self.handle.spawn(async move {
            node.post(&exchange, &path, &CorrectionsRequest { step, serving })
                .await
        });
        Box::pin(async move {
            call.await
                .map_err(|e| NodeError::Internal(format!("the request task failed: {e}")))?
        })
    }

    /// Requests the corrections of `step` now.
    fn request_corrections(&self, step: u64) -> CorrectionsCall {
        self.spawn_corrections(step)
    }

    fn decode_corrections(
        &self,
        step: u64,
        reply: NodeResult<serde_json::Value>,
    ) -> Result<Vec<u8>, VerticalError> {
        let failed = |e: String| {
            VerticalError::Transport(format!("the dealer's corrections of step {step}: {e}"))
        };
        let reply = reply.map_err(|error| {
            if lost_peer(&error) {
                self.dealer_lost.store(true, Ordering::SeqCst);
            }
            failed(error.to_string())
        })?;
        let reply: StepCorrections =
            serde_json::from_value(reply).map_err(|e| failed(e.to_string()))?;
        if reply.step != step {
            return Err(failed(format!("the dealer sent step {}", reply.step)));
        }
        decode(&reply.corrections).map_err(|e| failed(e.to_string()))
    }

    fn epoch_done(&self, report: EpochReport, checkpoint: &Checkpoint) {
        let phase = format!("epoch {} of {}", report.epoch, report.epochs);
        let progress = jobs::progress(
            &self.node.store,
            &self.job,
            &phase,
            u64::from(report.epoch),
            u64::from(report.epochs),
        );
        let saved = resume::record_epoch(
            &self.node.store,
            &self.job,
            self.transcript.hash(),
            checkpoint,
        );
        for error in [progress.err(), saved.err()].into_iter().flatten() {
            tracing::warn!(target: "carrel::training", job = %self.job, epoch = report.epoch,
                %error, "epoch progress not recorded");
        }
    }
}

/// Returns whether an error of a call to a peer means that the peer lost the job's run or
/// could not be reached, so that resuming the training may succeed.
pub(super) fn lost_peer(error: &NodeError) -> bool {
    match error {
        NodeError::Peer { .. } => true,
        NodeError::Remote { code, .. } => code == "not_found" || code == "unavailable",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_message_travels_in_parts_of_four_mib() {
        let message = vec![7u8; 2 * PART_BYTES + 5];
        let pieces = parts(&message);
        let sizes: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert_eq!(sizes, vec![PART_BYTES, PART_BYTES, 5]);
        assert_eq!(part_count(&pieces).unwrap(), 3);
    }

    #[test]
    fn empty_message_is_one_part() {
        let pieces = parts(&[]);
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].is_empty());
    }
}
