//! Node errors, each mapped to one HTTP status and a stable code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Errors of a node operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The request is malformed or names an invalid value.
    #[error("{0}")]
    BadRequest(String),
    /// A named object does not exist.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Identifier looked up.
        id: String,
    },
    /// The requester may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the current state (negotiation step, budget, limits).
    #[error("{0}")]
    Conflict(String),
    /// A query was rejected from its plan alone.
    #[error("query rejected: {0}")]
    QueryRejected(String),
    /// A query failed after reading data; it is charged and its details stay in the
    /// provider's log.
    #[error("{0}")]
    QueryFailed(String),
    /// The agreement's privacy budget cannot pay for the query.
    #[error("{0}")]
    BudgetExceeded(String),
    /// A multi-party job failed on one of its parties and was ended on all.
    #[error("{0}")]
    JobFailed(String),
    /// The listing failed the exchange's review.
    #[error("listing rejected: {}", .0.join("; "))]
    ListingRejected(Vec<String>),
    /// A peer node could not be reached or sent an invalid response.
    #[error("peer {peer}: {message}")]
    Peer {
        /// Peer's name or address.
        peer: String,
        /// Description of the failure.
        message: String,
    },
    /// A peer rejected the request with its own status and code.
    #[error("{peer}: {message}")]
    Remote {
        /// Peer's name.
        peer: String,
        /// HTTP status of the peer's response.
        status: u16,
        /// The peer's error code.
        code: String,
        /// The peer's message.
        message: String,
    },
    /// Storage failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The audit log failed.
    #[error("audit log error: {0}")]
    Ledger(#[from] carrel_ledger::LedgerError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The request is well formed but its content fails a check, such as a consistency
    /// proof that does not verify.
    #[error("{0}")]
    Unprocessable(String),
    /// The job is interrupted and waits to be resumed; the request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// A broken invariant: a bug in Carrel.
    #[error("internal error, please report this as a bug: {0}")]
    Internal(String),
}

impl NodeError {
    /// Returns the HTTP status and stable code of the error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::QueryRejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "query_rejected"),
            Self::BudgetExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "budget_exceeded"),
            Self::QueryFailed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "query_failed"),
            Self::JobFailed(_) => (StatusCode::CONFLICT, "job_failed"),
            Self::ListingRejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "listing_rejected"),
            Self::Peer { .. } => (StatusCode::BAD_GATEWAY, "peer_failed"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            Self::Remote { status, code, .. } => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                remote_code(code),
            ),
            Self::Database(_) | Self::Ledger(_) | Self::Io(_) | Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

/// Keeps a peer's error code when it is one of ours, so a rejection passes through
/// a node unchanged.
fn remote_code(code: &str) -> &'static str {
    const KNOWN: [&str; 13] = [
        "job_failed",
        "bad_request",
        "not_found",
        "forbidden",
        "conflict",
        "query_rejected",
        "budget_exceeded",
        "query_failed",
        "listing_rejected",
        "peer_failed",
        "unavailable",
        "unprocessable",
        "internal",
    ];
    KNOWN
        .into_iter()
        .find(|k| *k == code)
        .unwrap_or("peer_rejected")
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(target: "carrel::node", error = %self, "request failed");
        } else {
            tracing::debug!(target: "carrel::node", error = %self, code, "request rejected");
        }
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}

impl From<carrel_policy::UseError> for NodeError {
    fn from(error: carrel_policy::UseError) -> Self {
        Self::Forbidden(error.to_string())
    }
}

impl From<carrel_policy::negotiation::TransitionError> for NodeError {
    fn from(error: carrel_policy::negotiation::TransitionError) -> Self {
        Self::Conflict(error.to_string())
    }
}

/// Result of a node operation.
pub type NodeResult<T> = Result<T, NodeError>;

impl From<carrel_query::QueryError> for NodeError {
    fn from(error: carrel_query::QueryError) -> Self {
        Self::Io(error.to_string())
    }
}
