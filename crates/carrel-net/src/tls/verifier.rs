//! A server certificate verifier that pins one Ed25519 public key.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use crate::identity::PublicKey;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo: a SEQUENCE holding the algorithm
/// identifier 1.3.101.112 without parameters, then a BIT STRING with the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Encodes an Ed25519 key as a DER SubjectPublicKeyInfo.
pub(crate) fn ed25519_spki(key: &PublicKey) -> [u8; 44] {
    let mut spki = [0u8; 44];
    spki[..12].copy_from_slice(&ED25519_SPKI_PREFIX);
    spki[12..].copy_from_slice(&key.to_bytes());
    spki
}

/// Extracts the Ed25519 key from a DER SubjectPublicKeyInfo, if it contains one.
fn ed25519_key_in(spki: &[u8]) -> Option<PublicKey> {
    let key_bytes = spki.strip_prefix(ED25519_SPKI_PREFIX.as_slice())?;
    PublicKey::from_bytes(key_bytes.try_into().ok()?).ok()
}

/// The TLS handshake error raised when a peer's certificate contains another key than
/// the one pinned for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKeyMismatch {
    /// The key pinned for the peer.
    pub expected: PublicKey,
    /// The Ed25519 key in the peer's certificate, or `None` for another key type.
    pub found: Option<PublicKey>,
}

impl fmt::Display for PinnedKeyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.found {
            Some(found) => write!(
                f,
                "TLS certificate holds key {found}, but key {} is pinned for this peer",
                self.expected
            ),
            None => write!(
                f,
                "TLS certificate holds a non-Ed25519 key, but key {} is pinned for this peer",
                self.expected
            ),
        }
    }
}

impl std::error::Error for PinnedKeyMismatch {}

/// Accepts a server only if its certificate's key is exactly the pinned key.
///
/// No CA, name or validity period is checked: the pin replaces them all, and the
/// handshake signature proves that the server has the private key of the pinned key.
#[derive(Debug)]
pub(crate) struct PinnedKeyVerifier {
    expected: PublicKey,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedKeyVerifier {
    pub(crate) fn new(expected: PublicKey, algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self {
            expected,
            algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let certificate = ParsedCertificate::try_from(end_entity)?;
        let spki = certificate.subject_public_key_info();
        if spki.as_ref() == ed25519_spki(&self.expected).as_slice() {
            return Ok(ServerCertVerified::assertion());
        }

        let mismatch = PinnedKeyMismatch {
            expected: self.expected,
            found: ed25519_key_in(spki.as_ref()),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(mismatch)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // A pinned Ed25519 key can only produce Ed25519 handshake signatures.
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::EncodePublicKey;

    use super::*;
    use crate::identity::NodeIdentity;

    #[test]
    fn spki_matches_pkcs8_encoder() {
        let key = NodeIdentity::generate("lab").expect("key").public_key();
        let encoded = key
            .verifying_key()
            .to_public_key_der()
            .expect("SPKI encoding");

        assert_eq!(encoded.as_bytes(), ed25519_spki(&key).as_slice());
        assert_eq!(ed25519_key_in(encoded.as_bytes()), Some(key));
    }
}
