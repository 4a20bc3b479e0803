//! Serving an axum router over TLS with graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower_service::Service as _;
use tracing::{debug, info, warn};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send the request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for requests in flight before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause after a failed `accept`, so that running out of file descriptors does not
/// turn into a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` over TLS on `listener` until `shutdown` completes.
///
/// HTTP/1.1 only. Handlers can read the caller's socket address with
/// `ConnectInfo<SocketAddr>`. When `shutdown` completes, the listener closes, idle
/// connections close, and requests in flight get up to 30 s to finish before this
/// function returns. Failed handshakes and connections are logged at debug level and
/// never stop the server.
pub async fn serve_tls<F>(
    listener: TcpListener,
    router: Router,
    tls: Arc<ServerConfig>,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    if let Ok(address) = listener.local_addr() {
        info!(target: "carrel_net::serve", %address, "serving over TLS");
    }

    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    pause_after_accept_error(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = serve_connection(
            stream,
            remote,
            acceptor.clone(),
            router.clone(),
            graceful.watcher(),
        );
        tokio::spawn(connection);
    }

    drop(listener);
    info!(target: "carrel_net::serve", open = graceful.count(), "shutting down");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            target: "carrel_net::serve",
            "requests still running after {DRAIN_TIMEOUT:?}; stopping without them"
        );
    }
}

async fn pause_after_accept_error(error: &io::Error) {
    warn!(target: "carrel_net::serve", "failed to accept a connection: {error}");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    watcher: Watcher,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            debug!(target: "carrel_net::serve", %remote, "TLS handshake failed: {error}");
            return;
        }
        Err(_) => {
            debug!(target: "carrel_net::serve", %remote, "TLS handshake timed out");
            return;
        }
    };

    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        router.clone().call(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service);

    if let Err(error) = watcher.watch(connection).await {
        debug!(target: "carrel_net::serve", %remote, "connection ended with an error: {error}");
    }
}
