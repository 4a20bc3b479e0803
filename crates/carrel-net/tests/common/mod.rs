//! A test node served over real TLS on 127.0.0.1, and a caller registered with it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use carrel_net::{
    MemoryNonceStore, NodeIdentity, NonceStore, Peer, PeerClient, SignedRoutes, VerifiedSigner,
    serve_tls, tls,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The called node's name.
pub const LAB: &str = "lab";
/// The calling node's name.
pub const BANK: &str = "bank";

/// Counts handler runs, to show that rejected requests never reach a handler.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

async fn echo(
    State(calls): State<Calls>,
    signer: VerifiedSigner,
    Json(body): Json<Value>,
) -> Json<Value> {
    calls.0.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "signer": signer.name(), "body": body }))
}

async fn status(State(calls): State<Calls>, signer: VerifiedSigner) -> Json<Value> {
    calls.0.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "signer": signer.name() }))
}

/// Builds the lab's routes: `POST /echo` and `GET /status`.
pub fn lab_routes(calls: Calls) -> Router {
    Router::new()
        .route("/echo", post(echo))
        .route("/status", get(status))
        .with_state(calls)
}

/// The two nodes' identities.
pub struct Nodes {
    pub lab: Arc<NodeIdentity>,
    pub bank: Arc<NodeIdentity>,
}

impl Nodes {
    pub fn new() -> Self {
        Self {
            lab: Arc::new(NodeIdentity::generate(LAB).expect("lab key")),
            bank: Arc::new(NodeIdentity::generate(BANK).expect("bank key")),
        }
    }

    /// Builds the lab's signed router, which accepts requests from the bank only.
    pub fn signed_lab_router(&self, nonces: Arc<dyn NonceStore>, calls: Calls) -> Router {
        let registry = HashMap::from([(BANK.to_owned(), self.bank.public_key())]);
        SignedRoutes::new(Arc::clone(&self.lab), Arc::new(registry), nonces).wrap(lab_routes(calls))
    }

    /// Creates a client that signs as the bank.
    pub fn bank_client(&self) -> PeerClient {
        PeerClient::new(Arc::clone(&self.bank))
    }
}

/// A server running on a port-0 listener until stopped.
pub struct RunningServer {
    pub address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningServer {
    pub async fn start(identity: &NodeIdentity, router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("listener address");
        let config = tls::server_config(identity).expect("server TLS config");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve_tls(listener, router, config, shutdown));
        Self {
            address,
            stop,
            task,
        }
    }

    /// Describes this server as the peer `name`, pinned to `identity`'s key.
    pub fn peer(&self, name: &str, identity: &NodeIdentity) -> Peer {
        let base_url = format!("https://{}", self.address);
        Peer::new(name, &base_url, identity.public_key()).expect("valid peer")
    }

    /// Signals shutdown and waits until the server has stopped.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task ends without panicking");
    }
}

/// Starts the lab with a fresh nonce store.
pub async fn start_lab(nodes: &Nodes) -> (RunningServer, Calls) {
    let calls = Calls::default();
    let router = nodes.signed_lab_router(Arc::new(MemoryNonceStore::new()), calls.clone());
    (RunningServer::start(&nodes.lab, router).await, calls)
}
