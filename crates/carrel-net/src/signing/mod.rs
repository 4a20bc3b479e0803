//! Signed requests and responses between nodes.
//!
//! A request signature binds the method, path and query, a SHA-256 hash of the body, the
//! signing time, a random nonce, the signer and the recipient, under a domain prefix that
//! no response signature shares. A response signature binds the status, the nonce of the
//! request it responds to, the body hash, the time and the responder.
//!
//! Threat model: any registered participant, or anyone who captured traffic, may replay,
//! re-target or alter signed messages. Verification rejects a changed field, another
//! recipient, a time more than [`MAX_CLOCK_SKEW_SECS`] from the verifier's clock, and a
//! nonce seen before within that window. A response cannot be passed off as the response
//! to another request, because it signs the request's nonce. Out of scope: a stolen node
//! key, headers other than the `carrel-*` ones, and clocks that drift beyond the window.

mod nonce;
mod request;
mod response;

pub use nonce::{MemoryNonceStore, NonceStore, NonceStoreError};
pub use request::{KeyDirectory, RequestRejection, RequestVerifier, SignedRequest, VerifiedSigner};
pub use response::{ResponseRejection, sign_response, verify_response};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signature;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use sha2::{Digest as _, Sha256};

/// Header naming the participant that signed the message.
pub const SIGNER_HEADER: &str = "carrel-signer";
/// Header naming the node a request is addressed to.
pub const RECIPIENT_HEADER: &str = "carrel-recipient";
/// Header with the signing time in unix seconds.
pub const TIME_HEADER: &str = "carrel-time";
/// Header with the request nonce: 128 random bits as 32 lowercase hex digits.
pub const NONCE_HEADER: &str = "carrel-nonce";
/// Header with the base64 Ed25519 signature.
pub const SIGNATURE_HEADER: &str = "carrel-signature";

/// The largest difference, in seconds, between a message's time and the verifier's clock.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

const REQUEST_DOMAIN: &str = "carrel-request/v1";
const RESPONSE_DOMAIN: &str = "carrel-response/v1";
const NONCE_HEX_LEN: usize = 32;

/// Builds the string a request signature covers.
pub fn canonical_request(
    method: &Method,
    path_and_query: &str,
    body: &[u8],
    time: u64,
    nonce: &str,
    signer: &str,
    recipient: &str,
) -> String {
    let body_hash = body_sha256_hex(body);
    format!(
        "{REQUEST_DOMAIN}\n{method}\n{path_and_query}\n{body_hash}\n{time}\n{nonce}\n{signer}\n\
         {recipient}"
    )
}

/// Builds the string a response signature covers.
pub fn canonical_response(
    status: StatusCode,
    request_nonce: &str,
    body: &[u8],
    time: u64,
    signer: &str,
) -> String {
    let status = status.as_u16();
    let body_hash = body_sha256_hex(body);
    format!("{RESPONSE_DOMAIN}\n{status}\n{request_nonce}\n{body_hash}\n{time}\n{signer}")
}

/// Draws a fresh request nonce: 128 random bits as lowercase hex.
///
/// # Errors
///
/// The operating system's random number generator failed.
pub fn new_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; NONCE_HEX_LEN / 2];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn signature_header_value(signature: &Signature) -> HeaderValue {
    let text = BASE64.encode(signature.to_bytes());
    // Base64 text is visible ASCII, which every header value accepts.
    HeaderValue::from_str(&text).expect("base64 is a valid header value")
}

/// The reason a signature header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderProblem {
    Missing(&'static str),
    Invalid(&'static str, &'static str),
}

/// Reads a header that must appear exactly once, as visible ASCII.
fn single_header<'h>(
    headers: &'h HeaderMap,
    header: &'static str,
) -> Result<&'h str, HeaderProblem> {
    let mut values = headers.get_all(header).iter();
    let Some(value) = values.next() else {
        return Err(HeaderProblem::Missing(header));
    };
    if values.next().is_some() {
        return Err(HeaderProblem::Invalid(header, "appears more than once"));
    }
    let text = value
        .to_str()
        .map_err(|_| HeaderProblem::Invalid(header, "is not visible ASCII"))?;
    if text.is_empty() {
        return Err(HeaderProblem::Invalid(header, "is empty"));
    }
    Ok(text)
}

fn parse_time(text: &str) -> Result<u64, HeaderProblem> {
    let invalid = HeaderProblem::Invalid(TIME_HEADER, "is not unix seconds in decimal digits");
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid);
    }
    text.parse().map_err(|_| invalid)
}

pub(crate) fn is_valid_nonce(text: &str) -> bool {
    let lower_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
    text.len() == NONCE_HEX_LEN && text.bytes().all(lower_hex)
}

fn parse_nonce(text: &str) -> Result<&str, HeaderProblem> {
    if !is_valid_nonce(text) {
        return Err(HeaderProblem::Invalid(
            NONCE_HEADER,
            "is not 32 lowercase hex digits",
        ));
    }
    Ok(text)
}

fn parse_signature(text: &str) -> Result<Signature, HeaderProblem> {
    let invalid = HeaderProblem::Invalid(SIGNATURE_HEADER, "is not a base64 Ed25519 signature");
    let bytes = BASE64.decode(text).map_err(|_| invalid)?;
    Signature::from_slice(&bytes).map_err(|_| invalid)
}

/// Returns `time - now` in seconds if it exceeds the window, positive when `time` is later.
fn skew_beyond_window(time: u64, now: u64) -> Option<i128> {
    let skew = i128::from(time) - i128::from(now);
    (skew.unsigned_abs() > u128::from(MAX_CLOCK_SKEW_SECS)).then_some(skew)
}

/// Describes a clock skew for error messages.
fn describe_skew(skew: &i128) -> String {
    if *skew < 0 {
        format!("{} s behind", skew.unsigned_abs())
    } else {
        format!("{skew} s ahead of")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_request_has_fields_in_order() {
        let text = canonical_request(&Method::POST, "/jobs?x=1", b"", 7, "ab", "bank", "lab");
        let empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

        let expected =
            format!("carrel-request/v1\nPOST\n/jobs?x=1\n{empty_sha256}\n7\nab\nbank\nlab");
        assert_eq!(text, expected);
    }

    #[test]
    fn canonical_response_has_fields_in_order() {
        let text = canonical_response(StatusCode::CREATED, "ab", b"", 9, "lab");
        let empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

        assert_eq!(
            text,
            format!("carrel-response/v1\n201\nab\n{empty_sha256}\n9\nlab")
        );
    }

    #[test]
    fn new_nonce_is_32_lowercase_hex_digits() {
        let nonce = new_nonce().expect("operating system randomness");
        assert!(is_valid_nonce(&nonce), "{nonce}");
        assert_ne!(nonce, new_nonce().expect("operating system randomness"));
    }

    #[test]
    fn time_header_rejects_sign_and_spaces() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert!(parse_time("+1700000000").is_err());
        assert!(parse_time(" 1700000000").is_err());
        assert!(parse_time("99999999999999999999999").is_err());
    }

    #[test]
    fn duplicated_header_is_invalid() {
        let mut headers = HeaderMap::new();
        headers.append(NONCE_HEADER, "a".parse().expect("ASCII header value"));
        headers.append(NONCE_HEADER, "b".parse().expect("ASCII header value"));

        let problem = single_header(&headers, NONCE_HEADER).expect_err("two values");
        assert_eq!(
            problem,
            HeaderProblem::Invalid(NONCE_HEADER, "appears more than once")
        );
    }

    #[test]
    fn skew_window_is_inclusive() {
        assert_eq!(skew_beyond_window(1000, 1300), None);
        assert_eq!(skew_beyond_window(1000, 1301), Some(-301));
        assert_eq!(skew_beyond_window(1301, 1000), Some(301));
    }
}
