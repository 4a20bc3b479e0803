//! Signed requests over real TLS: what reaches a handler and what is rejected.

mod common;

use std::sync::Arc;

use axum::Router;
use carrel_net::signing::{
    NONCE_HEADER, RECIPIENT_HEADER, SIGNATURE_HEADER, SIGNER_HEADER, TIME_HEADER,
};
use carrel_net::{
    Clock, MemoryNonceStore, NodeIdentity, PeerError, SignedRequest, SignedRoutes, SystemClock,
};
use common::{BANK, Calls, LAB, Nodes, RunningServer, lab_routes, start_lab};
use http::{HeaderValue, Method, StatusCode};
use serde_json::json;

const SIX_MINUTES: u64 = 6 * 60;

fn now() -> u64 {
    SystemClock.unix_time()
}

fn echo_request(signer: &NodeIdentity, recipient: &str, time: u64) -> SignedRequest {
    let body = br#"{"query":"count"}"#.to_vec();
    let mut request =
        SignedRequest::sign(signer, recipient, Method::POST, "/echo", body, time).expect("signing");
    request.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    request
}

/// Asserts that the lab rejected the request with 401 and `expected_code`.
#[track_caller]
fn assert_rejected(result: Result<carrel_net::PeerResponse, PeerError>, expected_code: &str) {
    match result {
        Err(PeerError::Rejected { status, code, .. }) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "status for {code}");
            assert_eq!(code, expected_code);
        }
        other => panic!("expected rejection `{expected_code}`, got {other:?}"),
    }
}

#[tokio::test]
async fn signed_request_reaches_handler_and_response_verifies() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);

    let response = nodes
        .bank_client()
        .post_json(&peer, "/echo", &json!({ "query": "count" }))
        .await
        .expect("signed request succeeds");

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["signer"], BANK);
    assert_eq!(response.body["body"]["query"], "count");
    assert_eq!(calls.count(), 1);
    lab.stop().await;
}

#[tokio::test]
async fn signed_get_with_query_reaches_handler() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);

    let response = nodes
        .bank_client()
        .get(&peer, "/status?verbose=1")
        .await
        .expect("GET succeeds");

    assert_eq!(response.body["signer"], BANK);
    assert_eq!(calls.count(), 1);
    lab.stop().await;
}

#[tokio::test]
async fn unsigned_request_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let mut request = echo_request(&nodes.bank, LAB, now());
    for header in [
        SIGNER_HEADER,
        RECIPIENT_HEADER,
        TIME_HEADER,
        NONCE_HEADER,
        SIGNATURE_HEADER,
    ] {
        request.headers.remove(header);
    }
    // No nonce was sent, so the lab signs its response over an empty nonce.
    request.nonce.clear();

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "unsigned_request");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn request_with_changed_body_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let mut request = echo_request(&nodes.bank, LAB, now());
    request.body = br#"{"query":"rows"}"#.to_vec();

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "bad_signature");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn request_with_rewritten_time_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let signed_at = now();
    let mut request = echo_request(&nodes.bank, LAB, signed_at);
    let rewritten = HeaderValue::from(signed_at + 1);
    request.headers.insert(TIME_HEADER, rewritten);

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "bad_signature");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn request_six_minutes_late_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let request = echo_request(&nodes.bank, LAB, now() - SIX_MINUTES);

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "request_time_outside_window");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn request_six_minutes_early_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let request = echo_request(&nodes.bank, LAB, now() + SIX_MINUTES);

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "request_time_outside_window");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn signature_replayed_to_another_path_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let mut request = SignedRequest::sign(&nodes.bank, LAB, Method::GET, "/status", vec![], now())
        .expect("signing");
    request.path_and_query = "/status?verbose=1".to_owned();

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "bad_signature");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn signature_replayed_with_another_method_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let mut request = echo_request(&nodes.bank, LAB, now());
    request.method = Method::PUT;

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "bad_signature");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn request_resent_byte_for_byte_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let request = echo_request(&nodes.bank, LAB, now());
    let client = nodes.bank_client();

    let first = client.send(&peer, &request).await;
    let replay = client.send(&peer, &request).await;

    assert!(first.is_ok(), "first delivery: {first:?}");
    assert_rejected(replay, "replayed_request");
    assert_eq!(calls.count(), 1);
    lab.stop().await;
}

#[tokio::test]
async fn replay_after_restart_is_rejected() {
    let nodes = Nodes::new();
    let nonces = Arc::new(MemoryNonceStore::new());
    let calls = Calls::default();
    let request = echo_request(&nodes.bank, LAB, now());
    let client = nodes.bank_client();

    let before = RunningServer::start(
        &nodes.lab,
        nodes.signed_lab_router(nonces.clone(), calls.clone()),
    )
    .await;
    let first = client.send(&before.peer(LAB, &nodes.lab), &request).await;
    before.stop().await;
    let after = RunningServer::start(
        &nodes.lab,
        nodes.signed_lab_router(nonces.clone(), calls.clone()),
    )
    .await;
    let replay = client.send(&after.peer(LAB, &nodes.lab), &request).await;

    assert!(first.is_ok(), "first delivery: {first:?}");
    assert_rejected(replay, "replayed_request");
    assert_eq!(calls.count(), 1);
    after.stop().await;
}

#[tokio::test]
async fn request_signed_for_another_node_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let request = echo_request(&nodes.bank, "hospital", now());

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "wrong_recipient");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn recipient_rewritten_to_this_node_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let mut request = echo_request(&nodes.bank, "hospital", now());
    request
        .headers
        .insert(RECIPIENT_HEADER, HeaderValue::from_static(LAB));

    let result = nodes.bank_client().send(&peer, &request).await;

    assert_rejected(result, "bad_signature");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn request_from_unregistered_signer_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let stranger = Arc::new(NodeIdentity::generate("stranger").expect("key"));

    let result = carrel_net::PeerClient::new(stranger)
        .get(&peer, "/status")
        .await;

    assert_rejected(result, "unknown_signer");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn impostor_key_for_known_name_is_rejected() {
    let nodes = Nodes::new();
    let (lab, calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let impostor = Arc::new(NodeIdentity::generate(BANK).expect("key"));

    let result = carrel_net::PeerClient::new(impostor)
        .get(&peer, "/status")
        .await;

    assert_rejected(result, "bad_signature");
    assert_eq!(calls.count(), 0);
    lab.stop().await;
}

#[tokio::test]
async fn rejection_body_is_json_error_envelope() {
    let nodes = Nodes::new();
    let (lab, _calls) = start_lab(&nodes).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let request = echo_request(&nodes.bank, LAB, now() - SIX_MINUTES);

    let result = nodes.bank_client().send(&peer, &request).await;

    let Err(PeerError::Rejected { message, .. }) = result else {
        panic!("expected a rejection, got {result:?}");
    };
    assert!(message.contains("360 s behind"), "message: {message}");
    lab.stop().await;
}

#[tokio::test]
async fn body_over_limit_is_rejected_with_413() {
    let nodes = Nodes::new();
    let registry = std::collections::HashMap::from([(BANK.to_owned(), nodes.bank.public_key())]);
    let router = SignedRoutes::new(
        nodes.lab.clone(),
        Arc::new(registry),
        Arc::new(MemoryNonceStore::new()),
    )
    .with_body_limit(16)
    .wrap(lab_routes(Calls::default()));
    let lab = RunningServer::start(&nodes.lab, router).await;
    let peer = lab.peer(LAB, &nodes.lab);

    let result = nodes
        .bank_client()
        .post_json(&peer, "/echo", &json!({ "padding": "x".repeat(64) }))
        .await;

    let Err(PeerError::Rejected { status, code, .. }) = result else {
        panic!("expected a rejection, got {result:?}");
    };
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code, "body_too_large");
    lab.stop().await;
}

#[tokio::test]
async fn nested_router_verifies_full_path() {
    let nodes = Nodes::new();
    let signed = nodes.signed_lab_router(Arc::new(MemoryNonceStore::new()), Calls::default());
    let lab = RunningServer::start(&nodes.lab, Router::new().nest("/peer", signed)).await;
    let peer = lab.peer(LAB, &nodes.lab);

    let response = nodes.bank_client().get(&peer, "/peer/status").await;

    assert!(response.is_ok(), "nested route: {response:?}");
    lab.stop().await;
}
