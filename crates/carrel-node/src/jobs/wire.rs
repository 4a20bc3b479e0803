//! Helpers that the drivers of every job kind share: calls to peers with a count of the bytes
//! they carry, base64 elements, blocking work off the async threads, and ending a job
//! on every party.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{NodeError, NodeResult};
use crate::node::Node;

/// Signed calls from a job's driver to its peers, counting request and response bytes.
pub(crate) struct PeerCalls {
    node: Arc<Node>,
    traffic: Mutex<(u64, u64)>,
}

impl PeerCalls {
    /// Calls made as `node`.
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            traffic: Mutex::new((0, 0)),
        }
    }

    /// Posts `body` to `path` on `peer` and reads the response as `T`.
    ///
    /// # Errors
    ///
    /// The peer's rejection, or [`NodeError::JobFailed`] for a malformed response.
    pub(crate) async fn call<T: serde::de::DeserializeOwned>(
        &self,
        peer: &str,
        path: &str,
        body: &impl Serialize,
    ) -> NodeResult<T> {
        let sent = serde_json::to_vec(body).map_or(0, |b| b.len() as u64);
        let value = self.node.post(peer, path, body).await?;
        let received = value.to_string().len() as u64;
        {
            let mut traffic = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            traffic.0 += sent;
            traffic.1 += received;
        }
        serde_json::from_value(value).map_err(|e| {
            NodeError::JobFailed(format!("{peer}'s response to {path} is malformed: {e}"))
        })
    }

    /// Returns the bytes of request bodies sent and response bodies received so far, as JSON.
    pub(crate) fn traffic(&self) -> Value {
        let (sent, received) = *self.traffic.lock().unwrap_or_else(|p| p.into_inner());
        json!({ "request_bytes": sent, "response_bytes": received })
    }
}

/// Ends `job` on this node with `error` as the reason and tells every peer; a peer
/// that ended it already, or cannot be reached, changes nothing here.
pub(crate) async fn end_everywhere(node: &Node, job: &str, peers: &[String], error: &NodeError) {
    if node.store.stopping() {
        // The next start ends or resumes the job, and sends the peers the notice then.
        tracing::info!(target: "carrel::jobs", %job, %error,
            "job left running because the node is stopping");
        return;
    }
    let reason = error.to_string();
    if let Err(e) = super::fail(&node.store, node.identity.name(), job, &reason) {
        tracing::error!(target: "carrel::jobs", %job, error = %e, "failure not recorded");
    }
    send_abort(node, job, peers, &reason).await;
}

/// Times a node tries to tell a peer that a job has ended.
const ABORT_ATTEMPTS: u64 = 4;

/// Tells each peer that `job` has ended, trying a few times with growing pauses, because
/// a peer that is busy or restarting may miss the first notice. A peer that cannot be
/// reached keeps its side until its operator ends it.
pub(crate) async fn send_abort(node: &Node, job: &str, peers: &[String], reason: &str) {
    let path = format!("/jobs/{job}/abort");
    let body = json!({ "reason": reason });
    for peer in peers {
        for attempt in 1..=ABORT_ATTEMPTS {
            match node.post(peer, &path, &body).await {
                // A peer that responds, even with an error, has received the notice.
                Ok(_) | Err(NodeError::Remote { .. }) => break,
                Err(error) if attempt == ABORT_ATTEMPTS => {
                    tracing::warn!(target: "carrel::jobs", %job, %peer, %error,
                        "failed to tell the peer that the job ended");
                }
                Err(error) => {
                    tracing::debug!(target: "carrel::jobs", %job, %peer, %error, attempt,
                        "abort notice not delivered; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(attempt)).await;
                }
            }
        }
    }
}

/// Decodes base64 elements from a peer.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for text that is not base64.
pub(crate) fn decode(text: &str) -> NodeResult<Vec<u8>> {
    STANDARD
        .decode(text)
        .map_err(|e| NodeError::BadRequest(format!("the message is not valid base64: {e}")))
}

/// Encodes bytes as base64.
pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Runs CPU-heavy protocol work on a blocking thread.
///
/// # Errors
///
/// The work's error, or [`NodeError::Internal`] if its thread panicked.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> NodeResult<T> + Send + 'static,
) -> NodeResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Internal(format!("a worker thread failed: {e}")))?
}
