//! Signing responses and verifying them at the caller.

use http::{HeaderMap, StatusCode};

use super::request::insert_text;
use super::{
    HeaderProblem, MAX_CLOCK_SKEW_SECS, SIGNATURE_HEADER, SIGNER_HEADER, TIME_HEADER,
    canonical_response, describe_skew, parse_signature, parse_time, signature_header_value,
    single_header, skew_beyond_window,
};
use crate::identity::{NodeIdentity, PublicKey};

/// Adds the response signature headers for a response to the request with `request_nonce`.
///
/// Pass an empty nonce when the request carried none. No caller accepts that response
/// as the response to its own request, because every caller sends a nonce.
pub fn sign_response(
    identity: &NodeIdentity,
    status: StatusCode,
    request_nonce: &str,
    body: &[u8],
    time: u64,
    headers: &mut HeaderMap,
) {
    let signer = identity.name();
    let text = canonical_response(status, request_nonce, body, time, signer);
    let signature = identity.sign(text.as_bytes());

    insert_text(headers, SIGNER_HEADER, signer);
    insert_text(headers, TIME_HEADER, &time.to_string());
    headers.insert(SIGNATURE_HEADER, signature_header_value(&signature));
}

/// Reasons a response fails verification at the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseRejection {
    /// A signature header is missing.
    #[error("response is not signed: header `{header}` is missing")]
    Unsigned {
        /// The first missing header.
        header: &'static str,
    },

    /// A signature header is present but malformed.
    #[error("response header `{header}` {problem}")]
    InvalidHeader {
        /// The header.
        header: &'static str,
        /// The problem found in it.
        problem: &'static str,
    },

    /// Another participant signed the response.
    #[error("response is signed by `{found}`, but the request went to `{expected}`")]
    UnexpectedSigner {
        /// The peer the request was sent to.
        expected: String,
        /// The name in `carrel-signer`.
        found: String,
    },

    /// The signature does not verify with the pinned key over this status, body and nonce.
    #[error(
        "response signature does not verify with the pinned key of `{signer}` over this \
         status, body and request nonce"
    )]
    BadSignature {
        /// The peer the request was sent to.
        signer: String,
    },

    /// The response time is too far from the caller's clock.
    #[error(
        "response time {time} is {} this node's clock ({now}), beyond the \
         {MAX_CLOCK_SKEW_SECS} s limit; check both clocks",
        describe_skew(skew)
    )]
    OutsideTimeWindow {
        /// The time in `carrel-time`.
        time: u64,
        /// The caller's clock.
        now: u64,
        /// `time - now` in seconds.
        skew: i128,
    },
}

impl From<HeaderProblem> for ResponseRejection {
    fn from(problem: HeaderProblem) -> Self {
        match problem {
            HeaderProblem::Missing(header) => Self::Unsigned { header },
            HeaderProblem::Invalid(header, problem) => Self::InvalidHeader { header, problem },
        }
    }
}

/// Verifies that `expected_signer`, holding `key`, signed this response to the request
/// with `request_nonce`, within the clock window around `now`.
///
/// # Errors
///
/// The [`ResponseRejection`] for the first check that fails.
pub fn verify_response(
    expected_signer: &str,
    key: &PublicKey,
    request_nonce: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<(), ResponseRejection> {
    let signer = single_header(headers, SIGNER_HEADER)?;
    let time = parse_time(single_header(headers, TIME_HEADER)?)?;
    let signature = parse_signature(single_header(headers, SIGNATURE_HEADER)?)?;
    if signer != expected_signer {
        return Err(ResponseRejection::UnexpectedSigner {
            expected: expected_signer.to_owned(),
            found: signer.to_owned(),
        });
    }

    let text = canonical_response(status, request_nonce, body, time, signer);
    if key.verify(text.as_bytes(), &signature).is_err() {
        return Err(ResponseRejection::BadSignature {
            signer: signer.to_owned(),
        });
    }
    if let Some(skew) = skew_beyond_window(time, now) {
        return Err(ResponseRejection::OutsideTimeWindow { time, now, skew });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    fn signed(identity: &NodeIdentity, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        sign_response(identity, StatusCode::OK, NONCE, body, 1000, &mut headers);
        headers
    }

    #[test]
    fn response_verifies_for_its_request() {
        let lab = NodeIdentity::generate("lab").expect("key");
        let headers = signed(&lab, b"{}");

        let result = verify_response(
            "lab",
            &lab.public_key(),
            NONCE,
            StatusCode::OK,
            &headers,
            b"{}",
            1000,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn response_fails_for_another_request_nonce() {
        let lab = NodeIdentity::generate("lab").expect("key");
        let headers = signed(&lab, b"{}");
        let other_nonce = "ffeeddccbbaa99887766554433221100";

        let result = verify_response(
            "lab",
            &lab.public_key(),
            other_nonce,
            StatusCode::OK,
            &headers,
            b"{}",
            1000,
        );
        assert!(matches!(
            result,
            Err(ResponseRejection::BadSignature { .. })
        ));
    }

    #[test]
    fn response_fails_with_changed_status_or_body() {
        let lab = NodeIdentity::generate("lab").expect("key");
        let headers = signed(&lab, b"{}");
        let key = lab.public_key();

        let status = verify_response(
            "lab",
            &key,
            NONCE,
            StatusCode::CREATED,
            &headers,
            b"{}",
            1000,
        );
        let body = verify_response("lab", &key, NONCE, StatusCode::OK, &headers, b"[]", 1000);
        assert!(matches!(
            status,
            Err(ResponseRejection::BadSignature { .. })
        ));
        assert!(matches!(body, Err(ResponseRejection::BadSignature { .. })));
    }

    #[test]
    fn response_from_unexpected_signer_is_rejected() {
        let lab = NodeIdentity::generate("lab").expect("key");
        let headers = signed(&lab, b"{}");

        let result = verify_response(
            "bank",
            &lab.public_key(),
            NONCE,
            StatusCode::OK,
            &headers,
            b"{}",
            1000,
        );
        assert!(matches!(
            result,
            Err(ResponseRejection::UnexpectedSigner { .. })
        ));
    }

    #[test]
    fn stale_response_is_rejected() {
        let lab = NodeIdentity::generate("lab").expect("key");
        let headers = signed(&lab, b"{}");
        let now = 1000 + MAX_CLOCK_SKEW_SECS + 1;

        let result = verify_response(
            "lab",
            &lab.public_key(),
            NONCE,
            StatusCode::OK,
            &headers,
            b"{}",
            now,
        );
        assert!(matches!(
            result,
            Err(ResponseRejection::OutsideTimeWindow { skew: -301, .. })
        ));
    }
}
