//! The transport between Carrel nodes: node identities, TLS bound to each node's
//! Ed25519 key, and signed requests and responses.
//!
//! ```text
//!   calling node                                          called node
//!  ┌──────────────────────┐    TLS 1.3, server key     ┌──────────────────────────────┐
//!  │ PeerClient           │    pinned by the caller    │ serve_tls                    │
//!  │  sign request ───────┼───────────────────────────▶│  SignedRoutes middleware     │
//!  │                      │                            │   verify: KeyDirectory,      │
//!  │                      │                            │   NonceStore, Clock          │
//!  │                      │                            │   handler(VerifiedSigner, ..)│
//!  │  verify response ◀───┼────────────────────────────┼── sign response              │
//!  └──────────────────────┘                            └──────────────────────────────┘
//! ```
//!
//! One Ed25519 key per node does three jobs: it is the key in the node's TLS
//! certificate, it signs the node's requests, and it signs its responses. Peers learn
//! each other's keys from the exchange's participant registry, never from the network.
//!
//! Guarantees, given honest registry keys and clocks within
//! [`MAX_CLOCK_SKEW_SECS`](signing::MAX_CLOCK_SKEW_SECS) of each other:
//! - a caller talks only to the node whose key it pinned ([`tls`]);
//! - a handler runs only for a request that its signer made for this node, with this
//!   method, path, query and body, at most once ([`signing`], [`SignedRoutes`]);
//! - a caller accepts only a response that the peer made for this very request
//!   ([`PeerClient`]).
//!
//! Out of scope: stolen keys and their revocation, hiding who talks to whom, and
//! denial of service beyond the body, handshake and header timeouts.
//!
//! # Example
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::sync::Arc;
//!
//! use axum::{Json, Router, routing::post};
//! use carrel_net::{
//!     MemoryNonceStore, NodeIdentity, Peer, PeerClient, SignedRoutes, VerifiedSigner,
//!     serve_tls, tls,
//! };
//! use serde_json::{Value, json};
//!
//! async fn echo(signer: VerifiedSigner, Json(body): Json<Value>) -> Json<Value> {
//!     Json(json!({ "from": signer.name(), "body": body }))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let lab = Arc::new(NodeIdentity::generate("lab")?);
//! let bank = Arc::new(NodeIdentity::generate("bank")?);
//! let registry = HashMap::from([("bank".to_owned(), bank.public_key())]);
//!
//! // The called node: verify requests, sign responses, serve over TLS.
//! let nonces = Arc::new(MemoryNonceStore::new());
//! let routes = SignedRoutes::new(lab.clone(), Arc::new(registry), nonces);
//! let router = routes.wrap(Router::new().route("/echo", post(echo)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let address = listener.local_addr()?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! tokio::spawn(serve_tls(listener, router, tls::server_config(&lab)?, shutdown));
//!
//! // The calling node: pin the peer's registered key and send a signed request.
//! let peer = Peer::new("lab", &format!("https://{address}"), lab.public_key())?;
//! let client = PeerClient::new(bank);
//! let response = client.post_json(&peer, "/echo", &json!({ "n": 1 })).await?;
//! assert_eq!(response.body["from"], "bank");
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod clock;
pub mod error_body;
pub mod identity;
pub mod server;
pub mod signing;
pub mod tls;

pub use client::{Peer, PeerClient, PeerError, PeerResponse};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error_body::{ErrorBody, ErrorDetail};
pub use identity::{IdentityError, NodeIdentity, PublicKey};
pub use server::{SignedRoutes, serve_tls};
pub use signing::{
    KeyDirectory, MemoryNonceStore, NonceStore, NonceStoreError, RequestRejection, RequestVerifier,
    ResponseRejection, SignedRequest, VerifiedSigner,
};
pub use tls::{NodeCertificate, PinnedKeyMismatch, TlsConfigError};
