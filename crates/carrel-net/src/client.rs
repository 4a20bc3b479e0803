//! The calling side: signed requests to a peer over TLS pinned to the peer's key.
//!
//! [`PeerClient`] opens one TLS connection per request, accepts the server only if its
//! certificate contains the peer's registered key, and accepts the response only if the
//! peer signed it over the nonce of this request.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use crate::clock::{Clock, SystemClock};
use crate::error_body::ErrorBody;
use crate::identity::{IdentityError, NodeIdentity, PublicKey, validate_name};
use crate::signing::{ResponseRejection, SignedRequest, verify_response};
use crate::tls::{PinnedKeyMismatch, TlsConfigError, client_config};

/// The default time limit for one request, from connecting to the last body byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default limit on a response body: 16 MiB.
pub const DEFAULT_RESPONSE_LIMIT: usize = 16 * 1024 * 1024;

/// Errors from calling a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer's base URL is not `https://host:port`. A local fault.
    #[error("invalid address {address:?} for peer `{peer}`: {reason}")]
    InvalidPeerAddress {
        /// The peer.
        peer: String,
        /// The address as given.
        address: String,
        /// The problem found in it.
        reason: &'static str,
    },

    /// The request path is not an absolute path with an optional query. A local fault.
    #[error("invalid request path {path:?}: expected `/path` or `/path?query`")]
    InvalidPath {
        /// The path as given.
        path: String,
    },

    /// The request body could not be serialized to JSON. A local fault.
    #[error("failed to serialize the request body to JSON: {0}")]
    SerializeBody(#[source] serde_json::Error),

    /// Signing the request or building the TLS configuration failed. A local fault.
    #[error(transparent)]
    Local(#[from] TlsConfigError),

    /// The TCP connection could not be opened.
    #[error("failed to connect to peer `{peer}` at {address}: {source}")]
    Connect {
        /// The peer.
        peer: String,
        /// The `host:port` dialled.
        address: String,
        /// The socket error.
        source: io::Error,
    },

    /// The peer's TLS certificate contains another key than the one pinned for it.
    #[error(
        "peer `{peer}` failed TLS authentication: {mismatch}; check the key registered for \
         it, or whether another service listens at its address"
    )]
    KeyMismatch {
        /// The peer.
        peer: String,
        /// The pinned and the presented key.
        mismatch: Box<PinnedKeyMismatch>,
    },

    /// The TLS handshake failed for another reason.
    #[error("TLS handshake with peer `{peer}` failed: {source}")]
    Handshake {
        /// The peer.
        peer: String,
        /// The TLS error.
        source: io::Error,
    },

    /// The HTTP exchange failed after the handshake.
    #[error("HTTP exchange with peer `{peer}` failed: {source}")]
    Transport {
        /// The peer.
        peer: String,
        /// The HTTP or body error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The request did not complete in time.
    #[error("request to peer `{peer}` timed out after {timeout:?}")]
    TimedOut {
        /// The peer.
        peer: String,
        /// The time limit.
        timeout: Duration,
    },

    /// The response body exceeds the limit.
    #[error("response of peer `{peer}` exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The peer.
        peer: String,
        /// The limit in bytes.
        limit: usize,
    },

    /// The response signature is missing or does not verify.
    #[error("response of peer `{peer}` (status {status}) failed verification: {source}")]
    InvalidResponseSignature {
        /// The peer.
        peer: String,
        /// The response status, which is not authenticated.
        status: StatusCode,
        /// The reason the signature was rejected.
        source: ResponseRejection,
    },

    /// A successful, signed response has a body that is not JSON.
    #[error("response of peer `{peer}` (status {status}) is not JSON: {source}")]
    InvalidResponseBody {
        /// The peer.
        peer: String,
        /// The response status.
        status: StatusCode,
        /// The parse error.
        source: serde_json::Error,
    },

    /// The peer responded with an error status and a signed error body.
    #[error("peer `{peer}` rejected the request with {status} {code}: {message}")]
    Rejected {
        /// The peer.
        peer: String,
        /// The response status.
        status: StatusCode,
        /// The error code from the body, or `unknown` if the body has none.
        code: String,
        /// The message from the body, or the start of the body text.
        message: String,
    },
}

impl From<IdentityError> for PeerError {
    fn from(error: IdentityError) -> Self {
        Self::Local(TlsConfigError::Key(error))
    }
}

impl PeerError {
    /// Returns whether the request failed before any verified response came back: connection,
    /// TLS, HTTP or timeout, so that retrying later may succeed.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Handshake { .. }
                | Self::Transport { .. }
                | Self::TimedOut { .. }
        )
    }
}

/// A peer node: its participant name, base URL and pinned public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    name: String,
    authority: Authority,
    key: PublicKey,
}

impl Peer {
    /// Describes the peer `name` serving at `base_url` (`https://host:port`) with `key`.
    ///
    /// # Errors
    ///
    /// [`PeerError::InvalidPeerAddress`] when `base_url` is not an `https` URL with a
    /// host and no path, or `name` is not a valid participant name.
    pub fn new(name: impl Into<String>, base_url: &str, key: PublicKey) -> Result<Self, PeerError> {
        let name = name.into();
        let invalid = |reason| PeerError::InvalidPeerAddress {
            peer: name.clone(),
            address: base_url.to_owned(),
            reason,
        };
        validate_name(&name)
            .map_err(|_| invalid("the peer name is not a valid participant name"))?;

        let uri: Uri = base_url.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme() != Some(&Scheme::HTTPS) {
            return Err(invalid("the scheme must be https"));
        }
        if uri
            .path_and_query()
            .is_some_and(|path| path.as_str() != "/")
        {
            return Err(invalid("the URL must not have a path or query"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
        Ok(Self {
            name,
            authority,
            key,
        })
    }

    /// Returns the peer's participant name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key pinned for the peer.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    fn host(&self) -> &str {
        // `Authority::host` keeps the brackets around an IPv6 address.
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(443)
    }
}

/// A verified response: its status, headers and JSON body.
#[derive(Debug, Clone)]
pub struct PeerResponse {
    /// The HTTP status, always a success (2xx).
    pub status: StatusCode,
    /// The response headers, including the response signature.
    pub headers: HeaderMap,
    /// The body as JSON, or `null` for an empty body.
    pub body: serde_json::Value,
}

/// Sends signed requests to peers and verifies their signed responses.
#[derive(Clone)]
pub struct PeerClient {
    identity: Arc<NodeIdentity>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    response_limit: usize,
}

impl PeerClient {
    /// Creates a client that signs as `identity`, on the system clock.
    pub fn new(identity: Arc<NodeIdentity>) -> Self {
        Self {
            identity,
            clock: Arc::new(SystemClock),
            timeout: DEFAULT_TIMEOUT,
            response_limit: DEFAULT_RESPONSE_LIMIT,
        }
    }

    /// Replaces the clock used to date requests and check response times.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the time limit for one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest response body accepted, in bytes.
    pub fn with_response_limit(mut self, bytes: usize) -> Self {
        self.response_limit = bytes;
        self
    }

    /// Signs a request to `peer`, dated by this client's clock.
    ///
    /// # Errors
    ///
    /// [`PeerError::Local`] when no nonce can be drawn.
    pub fn sign(
        &self,
        peer: &Peer,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<SignedRequest, PeerError> {
        let time = self.clock.unix_time();
        let request = SignedRequest::sign(
            &self.identity,
            &peer.name,
            method,
            path_and_query,
            body,
            time,
        )?;
        Ok(request)
    }

    /// Sends `body` as JSON with `POST` to `path_and_query` on `peer`.
    ///
    /// # Errors
    ///
    /// See [`PeerClient::send`]; also [`PeerError::SerializeBody`].
    pub async fn post_json<T: Serialize + ?Sized>(
        &self,
        peer: &Peer,
        path_and_query: &str,
        body: &T,
    ) -> Result<PeerResponse, PeerError> {
        let json = serde_json::to_vec(body).map_err(PeerError::SerializeBody)?;
        let mut request = self.sign(peer, Method::POST, path_and_query, json)?;
        request
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.send(peer, &request).await
    }

    /// Sends a `GET` to `path_and_query` on `peer`.
    ///
    /// # Errors
    ///
    /// See [`PeerClient::send`].
    pub async fn get(&self, peer: &Peer, path_and_query: &str) -> Result<PeerResponse, PeerError> {
        let request = self.sign(peer, Method::GET, path_and_query, Vec::new())?;
        self.send(peer, &request).await
    }

    /// Sends a signed request to `peer` as it is, and verifies the response.
    ///
    /// # Errors
    ///
    /// Transport failures ([`PeerError::is_transport`]), [`PeerError::KeyMismatch`] when
    /// the server is not the pinned peer, [`PeerError::InvalidResponseSignature`],
    /// [`PeerError::Rejected`] for a signed error response, and the local faults
    /// [`PeerError::InvalidPath`] and [`PeerError::Local`].
    pub async fn send(
        &self,
        peer: &Peer,
        request: &SignedRequest,
    ) -> Result<PeerResponse, PeerError> {
        let path = parse_path(&request.path_and_query)?;
        let exchange = self.exchange(peer, request, path);
        let (status, headers, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| PeerError::TimedOut {
                peer: peer.name.clone(),
                timeout: self.timeout,
            })??;

        let now = self.clock.unix_time();
        verify_response(
            &peer.name,
            &peer.key,
            &request.nonce,
            status,
            &headers,
            &body,
            now,
        )
        .map_err(|source| PeerError::InvalidResponseSignature {
            peer: peer.name.clone(),
            status,
            source,
        })?;
        debug!(target: "carrel_net::client", peer = %peer.name, %status, "response verified");
        into_peer_response(peer, status, headers, &body)
    }

    /// Connects, sends the request and reads the whole response.
    async fn exchange(
        &self,
        peer: &Peer,
        request: &SignedRequest,
        path: PathAndQuery,
    ) -> Result<(StatusCode, HeaderMap, Bytes), PeerError> {
        // NOTE: every request opens a new TCP and TLS connection; there is no pool yet.
        let tls = connect(peer).await?;
        let transport = |source: hyper::Error| PeerError::Transport {
            peer: peer.name.clone(),
            source: Box::new(source),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(transport)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(target: "carrel_net::client", "connection ended with an error: {error}");
            }
        });

        let http_request = build_request(peer, request, path);
        let response = sender.send_request(http_request).await.map_err(transport)?;
        let (parts, body) = response.into_parts();
        let body = read_limited(peer, body, self.response_limit).await?;
        Ok((parts.status, parts.headers, body))
    }
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("identity", &self.identity)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn parse_path(path_and_query: &str) -> Result<PathAndQuery, PeerError> {
    let invalid = || PeerError::InvalidPath {
        path: path_and_query.to_owned(),
    };
    if !path_and_query.starts_with('/') {
        return Err(invalid());
    }
    let path: PathAndQuery = path_and_query.parse().map_err(|_| invalid())?;
    // The parser may normalise; the signature covers the text as given, so it must match.
    if path.as_str() != path_and_query {
        return Err(invalid());
    }
    Ok(path)
}

/// Opens TCP and TLS to `peer`, accepting only its pinned key.
async fn connect(peer: &Peer) -> Result<TlsStream<TcpStream>, PeerError> {
    let address = format!("{}:{}", peer.host(), peer.port());
    let tcp = TcpStream::connect((peer.host(), peer.port()))
        .await
        .map_err(|source| PeerError::Connect {
            peer: peer.name.clone(),
            address: address.clone(),
            source,
        })?;

    let server_name = ServerName::try_from(peer.host().to_owned()).map_err(|_| {
        PeerError::InvalidPeerAddress {
            peer: peer.name.clone(),
            address,
            reason: "the host is neither an IP address nor a DNS name",
        }
    })?;
    let connector = TlsConnector::from(client_config(&peer.key)?);
    connector
        .connect(server_name, tcp)
        .await
        .map_err(|source| handshake_error(peer, source))
}

/// Tells a pinned-key mismatch apart from other handshake failures.
fn handshake_error(peer: &Peer, source: io::Error) -> PeerError {
    let mismatch = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls_error| match tls_error {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.0.downcast_ref::<PinnedKeyMismatch>().cloned()
            }
            _ => None,
        });
    match mismatch {
        Some(mismatch) => PeerError::KeyMismatch {
            peer: peer.name.clone(),
            mismatch: Box::new(mismatch),
        },
        None => PeerError::Handshake {
            peer: peer.name.clone(),
            source,
        },
    }
}

fn build_request(peer: &Peer, request: &SignedRequest, path: PathAndQuery) -> Request<Full<Bytes>> {
    let mut http_request = Request::new(Full::new(Bytes::from(request.body.clone())));
    *http_request.method_mut() = request.method.clone();
    *http_request.uri_mut() = Uri::from(path);

    let headers = http_request.headers_mut();
    headers.extend(request.headers.clone());
    // An authority is visible ASCII, so it is always a valid header value.
    let host = HeaderValue::from_str(peer.authority.as_str()).expect("authority is a header value");
    headers.insert(HOST, host);
    http_request
}

async fn read_limited(
    peer: &Peer,
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, PeerError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(PeerError::ResponseTooLarge {
            peer: peer.name.clone(),
            limit,
        }),
        Err(source) => Err(PeerError::Transport {
            peer: peer.name.clone(),
            source,
        }),
    }
}

/// Turns a verified response into the result: the JSON body, or the peer's error.
fn into_peer_response(
    peer: &Peer,
    status: StatusCode,
    headers: HeaderMap,
    body: &[u8],
) -> Result<PeerResponse, PeerError> {
    if !status.is_success() {
        return Err(rejected(peer, status, body));
    }
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body).map_err(|source| PeerError::InvalidResponseBody {
            peer: peer.name.clone(),
            status,
            source,
        })?
    };
    Ok(PeerResponse {
        status,
        headers,
        body,
    })
}

fn rejected(peer: &Peer, status: StatusCode, body: &[u8]) -> PeerError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error_body) => (error_body.error.code, error_body.error.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            ("unknown".to_owned(), text.chars().take(200).collect())
        }
    };
    PeerError::Rejected {
        peer: peer.name.clone(),
        status,
        code,
        message,
    }
}
