//! The caller's side over real TLS: pinned server keys and verified responses.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use carrel_net::signing::SIGNATURE_HEADER;
use carrel_net::{MemoryNonceStore, NodeIdentity, Peer, PeerError, ResponseRejection};
use common::{Calls, LAB, Nodes, RunningServer, start_lab};
use http::HeaderValue;

#[tokio::test]
async fn client_pinned_to_another_key_fails_handshake() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let other = NodeIdentity::generate(LAB).expect("key");
    let peer = lab.peer(LAB, &other);

    let result = nodes.bank_client().get(&peer, "/status").await;

    let Err(PeerError::KeyMismatch { mismatch, .. }) = result else {
        panic!("expected a key mismatch, got {result:?}");
    };
    assert_eq!(mismatch.expected, other.public_key());
    assert_eq!(mismatch.found, Some(nodes.lab.public_key()));
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn key_mismatch_message_names_both_keys() {
    let nodes = Nodes::new();
    let (lab, _calls) = start_lab(&nodes).await;
    let other = NodeIdentity::generate(LAB).expect("key");

    let result = nodes
        .bank_client()
        .get(&lab.peer(LAB, &other), "/status")
        .await;

    let message = result.expect_err("handshake must fail").to_string();
    assert!(
        message.contains(&other.public_key().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&nodes.lab.public_key().to_string()),
        "{message}"
    );
    lab.stop().await;
}

/// Replaces the first character of the response signature, after it was signed.
async fn tamper_signature(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let signature = headers[SIGNATURE_HEADER]
        .to_str()
        .expect("ASCII signature")
        .to_owned();
    let first = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{first}{}", &signature[1..]);
    headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&tampered).expect("base64 header"),
    );
    response
}

/// Appends a space to the response body, after it was signed.
async fn tamper_body(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let mut bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("response body")
        .to_vec();
    bytes.push(b' ');
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

async fn start_tampering_lab(nodes: &Nodes, tamper: Router) -> RunningServer {
    RunningServer::start(&nodes.lab, tamper).await
}

#[tokio::test]
async fn tampered_response_signature_is_rejected() {
    let nodes = Nodes::new();
    let signed = nodes.signed_lab_router(Arc::new(MemoryNonceStore::new()), Calls::default());
    let lab =
        start_tampering_lab(&nodes, signed.layer(middleware::from_fn(tamper_signature))).await;

    let result = nodes
        .bank_client()
        .get(&lab.peer(LAB, &nodes.lab), "/status")
        .await;

    let Err(PeerError::InvalidResponseSignature { source, .. }) = result else {
        panic!("expected an invalid response signature, got {result:?}");
    };
    assert!(
        matches!(source, ResponseRejection::BadSignature { .. }),
        "{source:?}"
    );
    lab.stop().await;
}

#[tokio::test]
async fn tampered_response_body_is_rejected() {
    let nodes = Nodes::new();
    let signed = nodes.signed_lab_router(Arc::new(MemoryNonceStore::new()), Calls::default());
    let lab = start_tampering_lab(&nodes, signed.layer(middleware::from_fn(tamper_body))).await;

    let result = nodes
        .bank_client()
        .get(&lab.peer(LAB, &nodes.lab), "/status")
        .await;

    let Err(PeerError::InvalidResponseSignature { source, .. }) = result else {
        panic!("expected an invalid response signature, got {result:?}");
    };
    assert!(
        matches!(source, ResponseRejection::BadSignature { .. }),
        "{source:?}"
    );
    lab.stop().await;
}

#[tokio::test]
async fn unsigned_response_is_rejected() {
    let nodes = Nodes::new();
    let plain = Router::new().route("/status", axum::routing::get(|| async { "{}" }));
    let lab = RunningServer::start(&nodes.lab, plain).await;

    let result = nodes
        .bank_client()
        .get(&lab.peer(LAB, &nodes.lab), "/status")
        .await;

    let Err(PeerError::InvalidResponseSignature { source, .. }) = result else {
        panic!("expected an invalid response signature, got {result:?}");
    };
    assert!(
        matches!(source, ResponseRejection::Unsigned { .. }),
        "{source:?}"
    );
    lab.stop().await;
}

#[tokio::test]
async fn refused_connection_is_a_transport_failure() {
    let nodes = Nodes::new();
    // A bound socket that never listens refuses connections, and keeps the port from reuse.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let address = socket.local_addr().expect("bound address");
    let peer = Peer::new(LAB, &format!("https://{address}"), nodes.lab.public_key()).expect("peer");

    let result = nodes.bank_client().get(&peer, "/status").await;

    let error = result.expect_err("nothing listens");
    assert!(matches!(error, PeerError::Connect { .. }), "{error:?}");
    assert!(error.is_transport());
}
