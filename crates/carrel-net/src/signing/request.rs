//! Signing requests and verifying them on arrival.

use std::collections::HashMap;
use std::sync::Arc;

use ed25519_dalek::Signature;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tracing::debug;

use super::nonce::{NonceStore, NonceStoreError};
use super::{
    HeaderProblem, MAX_CLOCK_SKEW_SECS, NONCE_HEADER, RECIPIENT_HEADER, SIGNATURE_HEADER,
    SIGNER_HEADER, TIME_HEADER, canonical_request, describe_skew, new_nonce, parse_nonce,
    parse_signature, parse_time, signature_header_value, single_header, skew_beyond_window,
};
use crate::clock::{Clock, SystemClock};
use crate::identity::{IdentityError, NodeIdentity, PublicKey, validate_name};

/// A request with its signature headers, ready to send.
///
/// The fields are public so that tools and tests can send exactly the bytes they want,
/// including altered ones.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The HTTP method.
    pub method: Method,
    /// The path and query, starting with `/`, as sent on the request line.
    pub path_and_query: String,
    /// The `carrel-*` signature headers, plus any others the caller adds.
    pub headers: HeaderMap,
    /// The body bytes the signature covers.
    pub body: Vec<u8>,
    /// The nonce that the response signature has to cover.
    pub nonce: String,
}

impl SignedRequest {
    /// Signs a request from `identity` to the node called `recipient`, dated `time`
    /// (unix seconds), with a fresh nonce.
    ///
    /// # Errors
    ///
    /// [`IdentityError::InvalidName`] when `recipient` is not a valid participant name,
    /// and [`IdentityError::RandomnessUnavailable`] when no nonce can be drawn.
    pub fn sign(
        identity: &NodeIdentity,
        recipient: &str,
        method: Method,
        path_and_query: impl Into<String>,
        body: Vec<u8>,
        time: u64,
    ) -> Result<Self, IdentityError> {
        validate_name(recipient)?;
        let nonce = new_nonce().map_err(IdentityError::RandomnessUnavailable)?;
        let path_and_query = path_and_query.into();
        let signer = identity.name();
        let text = canonical_request(
            &method,
            &path_and_query,
            &body,
            time,
            &nonce,
            signer,
            recipient,
        );
        let signature = identity.sign(text.as_bytes());

        let mut headers = HeaderMap::new();
        insert_text(&mut headers, SIGNER_HEADER, signer);
        insert_text(&mut headers, RECIPIENT_HEADER, recipient);
        insert_text(&mut headers, TIME_HEADER, &time.to_string());
        insert_text(&mut headers, NONCE_HEADER, &nonce);
        headers.insert(SIGNATURE_HEADER, signature_header_value(&signature));

        Ok(Self {
            method,
            path_and_query,
            headers,
            body,
            nonce,
        })
    }
}

/// Inserts a header whose value is known to be visible ASCII.
pub(super) fn insert_text(headers: &mut HeaderMap, name: &'static str, value: &str) {
    // Names pass `validate_name` (visible ASCII), and times and nonces are digits and hex.
    let value = HeaderValue::from_str(value).expect("visible ASCII is a valid header value");
    headers.insert(HeaderName::from_static(name), value);
}

/// Reasons an incoming request is rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestRejection {
    /// A signature header is missing, so the request is unsigned.
    #[error("request is not signed: header `{header}` is missing; sign it with the node key")]
    Unsigned {
        /// The first missing header.
        header: &'static str,
    },

    /// A signature header is present but malformed.
    #[error("signature header `{header}` {problem}")]
    InvalidHeader {
        /// The header.
        header: &'static str,
        /// The problem found in it.
        problem: &'static str,
    },

    /// The signer is not a registered participant.
    #[error(
        "signer `{signer}` is not a registered participant; register its public key before \
         it calls this node"
    )]
    UnknownSigner {
        /// The name in `carrel-signer`.
        signer: String,
    },

    /// The signature does not verify over the request as received.
    #[error(
        "signature of `{signer}` does not verify over this method, path, body, time, nonce \
         and recipient; sign the request exactly as it is sent"
    )]
    BadSignature {
        /// The name in `carrel-signer`.
        signer: String,
    },

    /// The request was signed for another node.
    #[error("request is addressed to `{recipient}`, but this node is `{expected}`")]
    WrongRecipient {
        /// The name in `carrel-recipient`.
        recipient: String,
        /// This node's name.
        expected: String,
    },

    /// The signing time is too far from this node's clock.
    #[error(
        "request time {time} is {} this node's clock ({now}), beyond the {MAX_CLOCK_SKEW_SECS} s \
         limit; check both clocks and send a freshly signed request",
        describe_skew(skew)
    )]
    OutsideTimeWindow {
        /// The time in `carrel-time`.
        time: u64,
        /// This node's clock.
        now: u64,
        /// `time - now` in seconds.
        skew: i128,
    },

    /// The signer already used this nonce: the request is a replay.
    #[error("nonce {nonce} of `{signer}` was already used; sign every request with a fresh nonce")]
    Replayed {
        /// The name in `carrel-signer`.
        signer: String,
        /// The reused nonce.
        nonce: String,
    },

    /// The body is larger than the limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// The body could not be read from the connection.
    #[error("failed to read the request body: {reason}")]
    UnreadableBody {
        /// The transport's error message.
        reason: String,
    },

    /// The nonce store failed. This is a fault of this node, not of the caller.
    #[error("failed to record the request nonce: {source}")]
    NonceStoreFailed {
        /// The store's error.
        source: NonceStoreError,
    },
}

impl RequestRejection {
    /// Returns the stable error code sent to the caller.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsigned { .. } => "unsigned_request",
            Self::InvalidHeader { .. } => "invalid_signature_header",
            Self::UnknownSigner { .. } => "unknown_signer",
            Self::BadSignature { .. } => "bad_signature",
            Self::WrongRecipient { .. } => "wrong_recipient",
            Self::OutsideTimeWindow { .. } => "request_time_outside_window",
            Self::Replayed { .. } => "replayed_request",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::UnreadableBody { .. } => "unreadable_body",
            Self::NonceStoreFailed { .. } => "internal_error",
        }
    }

    /// Returns the HTTP status sent to the caller.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody { .. } => StatusCode::BAD_REQUEST,
            Self::NonceStoreFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl From<HeaderProblem> for RequestRejection {
    fn from(problem: HeaderProblem) -> Self {
        match problem {
            HeaderProblem::Missing(header) => Self::Unsigned { header },
            HeaderProblem::Invalid(header, problem) => Self::InvalidHeader { header, problem },
        }
    }
}

/// The participant whose signature a request carried, after verification.
///
/// Handlers behind [`crate::SignedRoutes`] take it as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSigner {
    name: String,
    nonce: String,
    time: u64,
}

impl VerifiedSigner {
    /// Returns the signer's participant name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the request nonce, for audit records.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Returns the signing time in unix seconds.
    pub fn time(&self) -> u64 {
        self.time
    }
}

/// Looks up the public key registered for a participant.
pub trait KeyDirectory: Send + Sync + 'static {
    /// Looks up the key registered for `name`, returning `None` for an unknown participant.
    fn public_key(&self, name: &str) -> Option<PublicKey>;
}

impl KeyDirectory for HashMap<String, PublicKey> {
    fn public_key(&self, name: &str) -> Option<PublicKey> {
        self.get(name).copied()
    }
}

/// The signature headers of a request, parsed but not yet verified.
struct RequestHeaders<'h> {
    signer: &'h str,
    recipient: &'h str,
    time: u64,
    nonce: &'h str,
    signature: Signature,
}

impl<'h> RequestHeaders<'h> {
    fn parse(headers: &'h HeaderMap) -> Result<Self, HeaderProblem> {
        Ok(Self {
            signer: single_header(headers, SIGNER_HEADER)?,
            recipient: single_header(headers, RECIPIENT_HEADER)?,
            time: parse_time(single_header(headers, TIME_HEADER)?)?,
            nonce: parse_nonce(single_header(headers, NONCE_HEADER)?)?,
            signature: parse_signature(single_header(headers, SIGNATURE_HEADER)?)?,
        })
    }
}

/// Verifies signed requests addressed to one node.
#[derive(Clone)]
pub struct RequestVerifier {
    recipient: String,
    keys: Arc<dyn KeyDirectory>,
    nonces: Arc<dyn NonceStore>,
    clock: Arc<dyn Clock>,
}

impl RequestVerifier {
    /// Creates a verifier for requests to the node called `recipient`, on the system clock.
    pub fn new(
        recipient: impl Into<String>,
        keys: Arc<dyn KeyDirectory>,
        nonces: Arc<dyn NonceStore>,
    ) -> Self {
        Self {
            recipient: recipient.into(),
            keys,
            nonces,
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the clock that request times are checked against.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Returns the name of the node this verifier accepts requests for.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }

    /// Verifies a request and records its nonce.
    ///
    /// The checks run in this order: headers present and well formed, signer known,
    /// signature valid, recipient is this node, time within the window, nonce fresh.
    /// Only a request that passes the checks before the last one reaches the nonce store.
    ///
    /// # Errors
    ///
    /// The [`RequestRejection`] for the first check that fails.
    pub fn verify(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<VerifiedSigner, RequestRejection> {
        let parsed = RequestHeaders::parse(headers)?;
        let signer = parsed.signer;
        let key = self
            .keys
            .public_key(signer)
            .ok_or_else(|| RequestRejection::UnknownSigner {
                signer: signer.to_owned(),
            })?;

        let text = canonical_request(
            method,
            path_and_query,
            body,
            parsed.time,
            parsed.nonce,
            signer,
            parsed.recipient,
        );
        if key.verify(text.as_bytes(), &parsed.signature).is_err() {
            return Err(RequestRejection::BadSignature {
                signer: signer.to_owned(),
            });
        }

        self.check_recipient(parsed.recipient)?;
        self.check_time(parsed.time)?;
        self.check_nonce(signer, parsed.nonce, parsed.time)?;
        let path = path_and_query;
        debug!(target: "carrel_net::request", signer, %method, path, "request verified");
        Ok(VerifiedSigner {
            name: signer.to_owned(),
            nonce: parsed.nonce.to_owned(),
            time: parsed.time,
        })
    }

    fn check_recipient(&self, recipient: &str) -> Result<(), RequestRejection> {
        if recipient != self.recipient {
            return Err(RequestRejection::WrongRecipient {
                recipient: recipient.to_owned(),
                expected: self.recipient.clone(),
            });
        }
        Ok(())
    }

    fn check_time(&self, time: u64) -> Result<(), RequestRejection> {
        let now = self.clock.unix_time();
        match skew_beyond_window(time, now) {
            Some(skew) => Err(RequestRejection::OutsideTimeWindow { time, now, skew }),
            None => Ok(()),
        }
    }

    fn check_nonce(&self, signer: &str, nonce: &str, time: u64) -> Result<(), RequestRejection> {
        let fresh = self
            .nonces
            .remember(signer, nonce, time)
            .map_err(|source| RequestRejection::NonceStoreFailed { source })?;
        if !fresh {
            return Err(RequestRejection::Replayed {
                signer: signer.to_owned(),
                nonce: nonce.to_owned(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for RequestVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestVerifier")
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::signing::MemoryNonceStore;

    const NOW: u64 = 1_700_000_000;

    struct Fixture {
        bank: NodeIdentity,
        nonces: Arc<MemoryNonceStore>,
        verifier: RequestVerifier,
    }

    fn fixture() -> Fixture {
        let bank = NodeIdentity::generate("bank").expect("key");
        let keys = HashMap::from([("bank".to_owned(), bank.public_key())]);
        let nonces = Arc::new(MemoryNonceStore::new());
        let verifier = RequestVerifier::new("lab", Arc::new(keys), nonces.clone())
            .with_clock(Arc::new(ManualClock::new(NOW)));
        Fixture {
            bank,
            nonces,
            verifier,
        }
    }

    fn verify(
        fixture: &Fixture,
        request: &SignedRequest,
    ) -> Result<VerifiedSigner, RequestRejection> {
        let path = &request.path_and_query;
        fixture
            .verifier
            .verify(&request.method, path, &request.headers, &request.body)
    }

    fn sign(fixture: &Fixture, recipient: &str, time: u64) -> SignedRequest {
        SignedRequest::sign(
            &fixture.bank,
            recipient,
            Method::POST,
            "/jobs",
            b"{}".to_vec(),
            time,
        )
        .expect("signing")
    }

    #[test]
    fn valid_request_yields_signer_nonce_and_time() {
        let fixture = fixture();
        let request = sign(&fixture, "lab", NOW);

        let signer = verify(&fixture, &request).expect("valid request");

        assert_eq!(signer.name(), "bank");
        assert_eq!(signer.nonce(), request.nonce);
        assert_eq!(signer.time(), NOW);
    }

    #[test]
    fn window_edges_are_accepted() {
        let fixture = fixture();

        let late = verify(&fixture, &sign(&fixture, "lab", NOW - MAX_CLOCK_SKEW_SECS));
        let early = verify(&fixture, &sign(&fixture, "lab", NOW + MAX_CLOCK_SKEW_SECS));

        assert!(late.is_ok(), "{late:?}");
        assert!(early.is_ok(), "{early:?}");
    }

    #[test]
    fn rejected_requests_leave_nonce_store_empty() {
        let fixture = fixture();
        let mut altered = sign(&fixture, "lab", NOW);
        altered.body = b"[]".to_vec();

        let bad_signature = verify(&fixture, &altered);
        let wrong_recipient = verify(&fixture, &sign(&fixture, "hospital", NOW));
        let stale = verify(
            &fixture,
            &sign(&fixture, "lab", NOW - MAX_CLOCK_SKEW_SECS - 1),
        );

        assert!(matches!(
            bad_signature,
            Err(RequestRejection::BadSignature { .. })
        ));
        assert!(matches!(
            wrong_recipient,
            Err(RequestRejection::WrongRecipient { .. })
        ));
        assert!(matches!(
            stale,
            Err(RequestRejection::OutsideTimeWindow { skew: -301, .. })
        ));
        assert!(fixture.nonces.is_empty());
    }

    #[test]
    fn malformed_nonce_header_is_invalid() {
        let fixture = fixture();
        let mut request = sign(&fixture, "lab", NOW);
        request
            .headers
            .insert(NONCE_HEADER, HeaderValue::from_static("ABC"));

        let result = verify(&fixture, &request);

        assert!(matches!(
            result,
            Err(RequestRejection::InvalidHeader {
                header: NONCE_HEADER,
                ..
            })
        ));
    }

    #[test]
    fn missing_signature_is_unsigned() {
        let fixture = fixture();
        let mut request = sign(&fixture, "lab", NOW);
        request.headers.remove(SIGNATURE_HEADER);

        let result = verify(&fixture, &request);

        assert!(matches!(
            result,
            Err(RequestRejection::Unsigned {
                header: SIGNATURE_HEADER
            })
        ));
    }
}
