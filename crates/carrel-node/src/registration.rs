//! Joining the data space: a participant registers its key with the exchange, and
//! nodes learn the keys of signers they have not met from the exchange's registry.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carrel_model::Participant;
use carrel_net::signing::sign_response;
use carrel_net::{PublicKey, RequestVerifier};
use http::StatusCode;
use http_body_util::BodyExt as _;

use crate::error::NodeError;
use crate::node::Node;
use crate::nonces::SqliteNonces;

/// Largest registration body accepted.
const MAX_REGISTRATION_BYTES: usize = 64 * 1024;

/// Before a signed request is verified, fetches the signer's key from the exchange
/// when this node has not met the signer, so the verifier can check it.
pub async fn learn_signer(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let signer = request
        .headers()
        .get("carrel-signer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let unknown = signer.filter(|name| !node.key_directory().contains(name) && !node.is_exchange());
    if let Some(signer) = unknown
        && let Err(error) = node.participant(&signer).await
    {
        tracing::debug!(target: "carrel::node", %signer, %error, "signer not in the registry");
    }
    next.run(request).await
}

/// Handles `POST /participants` on the exchange: the request must be signed by the
/// key it registers, which proves the registrant has that private key.
pub async fn register(State(node): State<Arc<Node>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_REGISTRATION_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return NodeError::BadRequest(format!(
                "registration body is larger than {MAX_REGISTRATION_BYTES} bytes"
            ))
            .into_response();
        }
    };
    let participant: Participant = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            return NodeError::BadRequest(format!("invalid participant entry: {e}"))
                .into_response();
        }
    };
    let key = match PublicKey::parse(&participant.public_key) {
        Ok(key) => key,
        Err(e) => {
            return NodeError::BadRequest(format!(
                "public key {:?} is invalid: {e}",
                participant.public_key
            ))
            .into_response();
        }
    };
    let directory: HashMap<String, PublicKey> = HashMap::from([(participant.name.clone(), key)]);
    let nonces = match SqliteNonces::open(&node.dir.database()) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let verifier =
        RequestVerifier::new(node.identity.name(), Arc::new(directory), Arc::new(nonces));
    let path = parts
        .uri
        .path_and_query()
        .map_or("/participants", |p| p.as_str());
    let verified = match verifier.verify(&parts.method, path, &parts.headers, &bytes) {
        Ok(v) => v,
        Err(rejection) => return NodeError::Forbidden(rejection.to_string()).into_response(),
    };
    let result = crate::exchange::register(&node, verified.name(), participant.clone());
    let response = match result {
        Ok(p) => {
            let _ = node.remember(&p);
            axum::Json(serde_json::json!(p)).into_response()
        }
        Err(e) => e.into_response(),
    };
    signed(&node, verified.nonce(), response).await
}

async fn signed(node: &Node, nonce: &str, response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes: Bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let status: StatusCode = parts.status;
    sign_response(
        node.identity.node(),
        status,
        nonce,
        &bytes,
        now,
        &mut parts.headers,
    );
    Response::from_parts(parts, Body::from(bytes))
}
