//! Serving over TLS: fallbacks, caller addresses and graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use carrel_net::{MemoryNonceStore, PeerError};
use common::{Calls, LAB, Nodes, RunningServer};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

fn signed(nodes: &Nodes, routes: Router) -> Router {
    let registry =
        std::collections::HashMap::from([(common::BANK.to_owned(), nodes.bank.public_key())]);
    carrel_net::SignedRoutes::new(
        nodes.lab.clone(),
        Arc::new(registry),
        Arc::new(MemoryNonceStore::new()),
    )
    .wrap(routes)
}

#[tokio::test]
async fn unknown_path_gets_signed_not_found() {
    let nodes = Nodes::new();
    let router = nodes.signed_lab_router(Arc::new(MemoryNonceStore::new()), Calls::default());
    let lab = RunningServer::start(&nodes.lab, router).await;

    let result = nodes
        .bank_client()
        .get(&lab.peer(LAB, &nodes.lab), "/missing")
        .await;

    let Err(PeerError::Rejected { status, .. }) = result else {
        panic!("expected a signed 404, got {result:?}");
    };
    assert_eq!(status, StatusCode::NOT_FOUND);
    lab.stop().await;
}

#[tokio::test]
async fn handler_sees_caller_address() {
    let nodes = Nodes::new();
    let routes = Router::new().route(
        "/address",
        get(|ConnectInfo(remote): ConnectInfo<SocketAddr>| async move {
            axum::Json(json!({ "ip": remote.ip().to_string() }))
        }),
    );
    let lab = RunningServer::start(&nodes.lab, signed(&nodes, routes)).await;

    let response = nodes
        .bank_client()
        .get(&lab.peer(LAB, &nodes.lab), "/address")
        .await;

    let body = response.expect("signed request succeeds").body;
    assert_eq!(body["ip"], "127.0.0.1");
    lab.stop().await;
}

#[tokio::test]
async fn shutdown_lets_request_in_flight_finish() {
    let nodes = Nodes::new();
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (handler_entered, handler_release) = (entered.clone(), release.clone());
    let routes = Router::new().route(
        "/slow",
        get(move || async move {
            handler_entered.notify_one();
            handler_release.notified().await;
            axum::Json(json!({ "done": true }))
        }),
    );
    let lab = RunningServer::start(&nodes.lab, signed(&nodes, routes)).await;
    let peer = lab.peer(LAB, &nodes.lab);
    let client = nodes.bank_client();
    let (result_sender, result_receiver) = oneshot::channel();
    tokio::spawn(async move {
        let _ = result_sender.send(client.get(&peer, "/slow").await);
    });

    entered.notified().await;
    let address = lab.address;
    let stopping = tokio::spawn(lab.stop());
    let closed = wait_until_listener_closed(address).await;
    let waited_for_request = !stopping.is_finished();
    release.notify_one();
    let result = result_receiver.await.expect("request task reports");

    assert!(
        closed,
        "listener still accepts after shutdown was signalled"
    );
    assert!(
        waited_for_request,
        "server stopped before the request finished"
    );

    let body: Value = result.expect("request in flight completes").body;
    assert_eq!(body["done"], true);
    stopping.await.expect("server stops after the request");
}

/// Yields to the server until connecting to `address` is refused, at most 1000 times.
async fn wait_until_listener_closed(address: SocketAddr) -> bool {
    for _ in 0..1000 {
        tokio::task::yield_now().await;
        if tokio::net::TcpStream::connect(address).await.is_err() {
            return true;
        }
    }
    false
}
