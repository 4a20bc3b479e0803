//! The called side: verifying requests and signing responses in an axum router, and
//! serving it over TLS.
//!
//! Every request to a router wrapped by [`SignedRoutes`] is verified before any handler
//! runs, and every response it returns, rejections included, carries a response
//! signature over the request's nonce. Handlers see the verified signer through the
//! [`VerifiedSigner`] extractor.

mod serve;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tracing::{error, info};

pub use serve::serve_tls;

use crate::clock::{Clock, SystemClock};
use crate::error_body::ErrorBody;
use crate::identity::NodeIdentity;
use crate::signing::{
    KeyDirectory, NONCE_HEADER, NonceStore, RequestRejection, RequestVerifier, VerifiedSigner,
    is_valid_nonce, sign_response,
};

/// The default limit on a request body: 16 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Wraps axum routes so that each request is verified and each response signed.
#[derive(Clone)]
pub struct SignedRoutes {
    identity: Arc<NodeIdentity>,
    keys: Arc<dyn KeyDirectory>,
    nonces: Arc<dyn NonceStore>,
    clock: Arc<dyn Clock>,
    body_limit: usize,
}

/// Shared state of the middleware.
struct Exchange {
    identity: Arc<NodeIdentity>,
    verifier: RequestVerifier,
    clock: Arc<dyn Clock>,
    body_limit: usize,
}

impl SignedRoutes {
    /// Accepts requests addressed to `identity`, from signers in `keys`, recording
    /// nonces in `nonces`, on the system clock.
    pub fn new(
        identity: Arc<NodeIdentity>,
        keys: Arc<dyn KeyDirectory>,
        nonces: Arc<dyn NonceStore>,
    ) -> Self {
        Self {
            identity,
            keys,
            nonces,
            clock: Arc::new(SystemClock),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Replaces the clock used to check request times and date responses.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the largest request body accepted, in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Adds the verifying and signing middleware to `router`, covering its routes and
    /// its fallback.
    ///
    /// Responses are buffered whole to be signed, so streaming responses lose their
    /// streaming.
    pub fn wrap<S>(self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let verifier = RequestVerifier::new(self.identity.name(), self.keys, self.nonces)
            .with_clock(Arc::clone(&self.clock));
        let exchange = Arc::new(Exchange {
            identity: self.identity,
            verifier,
            clock: self.clock,
            body_limit: self.body_limit,
        });
        router.layer(middleware::from_fn_with_state(exchange, signed_exchange))
    }
}

impl std::fmt::Debug for SignedRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRoutes")
            .field("identity", &self.identity)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

async fn signed_exchange(
    State(exchange): State<Arc<Exchange>>,
    request: Request,
    next: Next,
) -> Response {
    let nonce = response_nonce(request.headers());
    let response = verify_then_handle(&exchange, request, next).await;
    exchange.sign(response, &nonce).await
}

/// Picks the nonce to sign the response over: the request's if well formed, else empty.
fn response_nonce(headers: &HeaderMap) -> String {
    let nonce = headers
        .get(NONCE_HEADER)
        .and_then(|value| value.to_str().ok());
    match nonce {
        Some(nonce) if is_valid_nonce(nonce) => nonce.to_owned(),
        _ => String::new(),
    }
}

async fn verify_then_handle(exchange: &Exchange, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let body = match read_body(body, exchange.body_limit).await {
        Ok(body) => body,
        Err(rejection) => return reject(&parts, rejection),
    };

    // Behind `Router::nest` the URI has lost its prefix, but the caller signed the full path.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let path_and_query = uri.path_and_query().map_or("/", |path| path.as_str());

    match exchange
        .verifier
        .verify(&parts.method, path_and_query, &parts.headers, &body)
    {
        Ok(signer) => {
            parts.extensions.insert(signer);
            next.run(Request::from_parts(parts, Body::from(body))).await
        }
        Err(rejection) => reject(&parts, rejection),
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, RequestRejection> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(RequestRejection::BodyTooLarge { limit })
        }
        Err(error) => Err(RequestRejection::UnreadableBody {
            reason: error.to_string(),
        }),
    }
}

fn reject(parts: &Parts, rejection: RequestRejection) -> Response {
    let code = rejection.code();
    let method = &parts.method;
    let path = parts.uri.path();
    if rejection.status().is_server_error() {
        error!(target: "carrel_net::request", code, %method, path, "request failed: {rejection}");
    } else {
        info!(target: "carrel_net::request", code, %method, path, "request rejected: {rejection}");
    }
    rejection.into_response()
}

impl Exchange {
    /// Buffers the response body and adds the response signature headers.
    async fn sign(&self, response: Response, nonce: &str) -> Response {
        let (parts, body) = response.into_parts();
        let (mut parts, body) = match body.collect().await {
            Ok(collected) => (parts, collected.to_bytes()),
            Err(failure) => {
                error!(target: "carrel_net::request", "handler response body failed: {failure}");
                internal_error()
            }
        };

        let time = self.clock.unix_time();
        sign_response(
            &self.identity,
            parts.status,
            nonce,
            &body,
            time,
            &mut parts.headers,
        );
        Response::from_parts(parts, Body::from(body))
    }
}

/// Builds a 500 response with an [`ErrorBody`], split into parts and buffered body.
fn internal_error() -> (http::response::Parts, Bytes) {
    let body = ErrorBody::new(
        "internal_error",
        "the handler's response body failed; see this node's log",
    );
    // Serializing a struct of two strings cannot fail.
    let json = serde_json::to_vec(&body).expect("an error body always serializes");

    let mut response = Response::new(());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (parts, ()) = response.into_parts();
    (parts, Bytes::from(json))
}

impl IntoResponse for RequestRejection {
    fn into_response(self) -> Response {
        ErrorBody::new(self.code(), self.to_string()).into_response_with(self.status())
    }
}

/// Rejection of the [`VerifiedSigner`] extractor on a route outside [`SignedRoutes`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("route has no verified signer because it is not wrapped by `SignedRoutes`; this is a bug")]
pub struct MissingVerifiedSigner;

impl IntoResponse for MissingVerifiedSigner {
    fn into_response(self) -> Response {
        error!(target: "carrel_net::request", "{self}");
        ErrorBody::new("internal_error", self.to_string())
            .into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedSigner {
    type Rejection = MissingVerifiedSigner;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedSigner>()
            .cloned()
            .ok_or(MissingVerifiedSigner)
    }
}
