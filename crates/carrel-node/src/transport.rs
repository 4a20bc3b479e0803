//! Outgoing calls to peers: signed requests over TLS pinned to the peer's key, with
//! the signed response verified.

use std::sync::Arc;

use carrel_net::{NodeIdentity, Peer, PeerClient, PeerError, PublicKey};

use crate::error::{NodeError, NodeResult};

/// Sends a signed request to `peer` at `endpoint` and returns its JSON response body.
///
/// # Errors
///
/// [`NodeError::Remote`] carrying the peer's own status, code and message when it
/// rejects the request; [`NodeError::Peer`] when it cannot be reached or its response
/// fails verification.
pub async fn call(
    identity: &Arc<NodeIdentity>,
    peer: &str,
    endpoint: &str,
    key: &PublicKey,
    method: http::Method,
    path: &str,
    body: Vec<u8>,
) -> NodeResult<serde_json::Value> {
    let failed = |e: PeerError| NodeError::Peer {
        peer: peer.to_owned(),
        message: e.to_string(),
    };
    let target = Peer::new(peer, endpoint, *key).map_err(failed)?;
    let client = PeerClient::new(identity.clone());
    let result = if method == http::Method::GET {
        client.get(&target, path).await
    } else {
        let mut request = client.sign(&target, method, path, body).map_err(failed)?;
        request.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        client.send(&target, &request).await
    };
    match result {
        Ok(response) => Ok(response.body),
        Err(PeerError::Rejected {
            status,
            code,
            message,
            ..
        }) => Err(NodeError::Remote {
            peer: peer.to_owned(),
            status: status.as_u16(),
            code,
            message,
        }),
        Err(other) => Err(failed(other)),
    }
}
