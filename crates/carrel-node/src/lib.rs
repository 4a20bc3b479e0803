//! The Carrel node: one process per organisation, serving an HTTPS API (axum on
//! tokio) to its peers and to the `carrel` command.
//!
//! ```text
//!            ┌────────────── exchange ──────────────┐
//!            │ registry · listing review · catalog  │
//!            │ countersigning · audit log           │
//!            └──────▲─────────────────────▲─────────┘
//!     publish/review│                     │countersign
//!   ┌───────────────┴──┐  negotiation  ┌──┴──────────────┐
//!   │ provider         │◄─────────────►│ consumer        │
//!   │ datasets, policy │   queries     │ agreements      │
//!   │ DP queries, log  │◄─────────────►│ releases, log   │
//!   └──────────────────┘               └─────────────────┘
//! ```
//!
//! Every request between nodes is signed, and so is its response, over
//! TLS pinned to the peer's registered key ([`carrel_net`]). Every decision is
//! committed with its audit entry in one SQLite transaction ([`store::Store`]).

pub mod agreements;
pub mod api;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod consumer;
pub mod error;
pub mod exchange;
pub mod identity;
pub mod jobs;
pub mod join;
pub mod models;
pub mod negotiation;
pub mod node;
pub mod nonces;
pub mod provider;
pub mod psi;
pub mod query;
pub mod registration;
pub mod secagg;
pub mod signing;
pub mod store;
pub mod training;
pub mod transport;
pub mod witnessing;

use std::future::Future;
use std::sync::Arc;

use carrel_model::{Participant, Role};
use carrel_net::NodeIdentity;

pub use config::{NodeConfig, NodeDir, PinnedExchange};
pub use error::{NodeError, NodeResult};
pub use node::Node;

/// Tells the peers of each job that this node ended at start that it ended; a peer
/// that cannot be reached after a few tries keeps its side until its operator ends it.
async fn notify_interrupted(node: Arc<Node>, jobs: Vec<jobs::JobView>) {
    for job in jobs {
        let reason = "the peer node stopped during the job";
        jobs::wire::send_abort(&node, &job.id, &job.peers, reason).await;
    }
}

/// Creates a node folder: configuration, a new identity key, the database and an
/// empty audit log with its first signed checkpoint.
///
/// # Errors
///
/// [`NodeError::Io`] when the folder already contains a node or cannot be written.
pub fn init(dir: &NodeDir, config: &NodeConfig) -> NodeResult<String> {
    if dir.config().exists() {
        return Err(NodeError::Io(format!(
            "{} already contains a node: choose an empty folder",
            dir.path().display()
        )));
    }
    if (config.role == Role::Exchange) != config.exchange.is_none() {
        return Err(NodeError::BadRequest(
            "a participant node needs --exchange and --exchange-key; the exchange takes neither"
                .into(),
        ));
    }
    let io =
        |e: std::io::Error| NodeError::Io(format!("cannot write {}: {e}", dir.path().display()));
    std::fs::create_dir_all(dir.datasets()).map_err(io)?;
    let identity =
        NodeIdentity::generate(&config.name).map_err(|e| NodeError::BadRequest(e.to_string()))?;
    identity
        .save(dir.key())
        .map_err(|e| NodeError::Io(e.to_string()))?;
    let text =
        serde_json::to_string_pretty(config).map_err(|e| NodeError::Internal(e.to_string()))?;
    std::fs::write(dir.config(), text + "\n").map_err(io)?;
    let node = Node::open(dir.clone())?;
    Ok(node.identity.public_key_text())
}

/// Runs the node until `shutdown` completes: binds its address, writes its endpoint
/// file, registers with the exchange (participants) and serves.
///
/// # Errors
///
/// [`NodeError::Io`] when the address cannot be bound; a peer error when the
/// exchange rejects the registration.
pub async fn serve(
    dir: NodeDir,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> NodeResult<()> {
    let node = Arc::new(Node::open(dir.clone())?);
    let interrupted = jobs::fail_interrupted(&node.store, node.identity.name(), |job| {
        training::horizontal::resumes_after_restart(job)
            || training::vertical::resumes_after_restart(&node.store, job)
    })?;
    if !interrupted.is_empty() {
        tracing::warn!(target: "carrel::node", jobs = interrupted.len(), "jobs left running by the last process were ended");
    }
    let listener = tokio::net::TcpListener::bind(&node.config.listen)
        .await
        .map_err(|e| NodeError::Io(format!("cannot listen on {}: {e}", node.config.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| NodeError::Io(e.to_string()))?;
    let endpoint = format!("https://{address}");
    node.set_endpoint(endpoint.clone());

    let tls = carrel_net::tls::server_config(node.identity.node())
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    let router = api::router(node.clone())?;
    let server = tokio::spawn(carrel_net::serve_tls(listener, router, tls, shutdown));
    if !node.is_exchange() {
        register(&node).await?;
    }
    // Written to a temporary name and renamed, so a reader never sees a partial file.
    let partial = dir.path().join("endpoint.partial");
    std::fs::write(&partial, format!("{endpoint}\n"))
        .and_then(|()| std::fs::rename(&partial, dir.endpoint()))
        .map_err(|e| NodeError::Io(format!("cannot write {}: {e}", dir.endpoint().display())))?;
    tracing::info!(target: "carrel::node", name = node.identity.name(), %endpoint, "node ready");
    tokio::spawn(notify_interrupted(node.clone(), interrupted));
    // Trainings that this node drove continue from their checkpoints.
    tokio::spawn(training::horizontal::resume_running(node.clone()));
    tokio::spawn(training::vertical::resume_running(node.clone()));
    tokio::spawn(witnessing::submit_loop(node.clone()));
    let served = server.await;
    node.store.mark_stopping();
    served.map_err(|e| NodeError::Internal(format!("server task failed: {e}")))?;
    let _ = std::fs::remove_file(dir.endpoint());
    tracing::info!(target: "carrel::node", name = node.identity.name(), "node stopped");
    Ok(())
}

async fn register(node: &Node) -> NodeResult<()> {
    let me = Participant {
        name: node.identity.name().to_owned(),
        role: node.config.role,
        public_key: node.identity.public_key_text(),
        endpoint: node.endpoint(),
    };
    let exchange = node.exchange_name()?.to_owned();
    node.post(&exchange, "/participants", &me).await?;
    node.remember(&me)?;
    node.store.record(carrel_model::AuditEvent::now(
        "participant.registered",
        &me.name,
        true,
        serde_json::json!({ "exchange": exchange, "endpoint": me.endpoint }),
    ))
}
