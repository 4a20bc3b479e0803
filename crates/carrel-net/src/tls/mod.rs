//! TLS bound to node keys.
//!
//! Each node serves a self-signed certificate made from its own Ed25519 key, and a
//! caller accepts the server only if the certificate contains the key registered for the
//! peer it meant to reach. Both sides speak TLS 1.3 only, with the `ring` provider.
//!
//! Threat model: a network attacker who can intercept, redirect or impersonate
//! addresses cannot complete a handshake as a node without that node's secret key.
//! The server does not authenticate the client at the TLS layer; the request
//! signature does that. Out of scope: a stolen node key and key revocation, which
//! happen in the participant registry that supplies the pinned keys.

mod verifier;

use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ServerConfig};

pub use verifier::PinnedKeyMismatch;

use crate::identity::{IdentityError, NodeIdentity, PublicKey};
use verifier::PinnedKeyVerifier;

/// The ALPN protocol both sides offer; the server speaks HTTP/1.1 only.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Errors from building the TLS configuration of a node. All are local faults.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The node key could not be encoded for the TLS stack.
    #[error(transparent)]
    Key(#[from] IdentityError),

    /// rcgen could not build the certificate.
    #[error("failed to generate the node's TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),

    /// rustls rejected the configuration.
    #[error("failed to build the TLS configuration: {0}; please report this as a bug")]
    Rustls(#[from] rustls::Error),
}

/// A node's self-signed certificate, whose public key is the node key.
#[derive(Debug, Clone)]
pub struct NodeCertificate {
    der: CertificateDer<'static>,
    pem: String,
}

impl NodeCertificate {
    /// Generates a certificate for `identity`, with the node name as common name and
    /// `localhost` and `127.0.0.1` as subject alternative names.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError`] when the key cannot be loaded or the certificate not signed.
    pub fn generate(identity: &NodeIdentity) -> Result<Self, TlsConfigError> {
        let key_pair = rcgen_key_pair(identity)?;
        let subject_alt_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(subject_alt_names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, identity.name());

        let certificate = params.self_signed(&key_pair)?;
        Ok(Self {
            der: certificate.der().clone(),
            pem: certificate.pem(),
        })
    }

    /// Returns the certificate in DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// Returns the certificate in PEM, for tools such as `curl --cacert`.
    pub fn pem(&self) -> &str {
        &self.pem
    }
}

/// Builds the TLS server configuration of a node, with a fresh certificate of its key.
///
/// # Errors
///
/// [`TlsConfigError`] when the certificate cannot be made or rustls rejects it.
pub fn server_config(identity: &NodeIdentity) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let certificate = NodeCertificate::generate(identity)?;
    let mut der = identity.pkcs8_der()?;
    // Moves the bytes out without copying; the emptied wrapper has nothing left to zeroize.
    let key = PrivatePkcs8KeyDer::from(std::mem::take(&mut *der));

    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![certificate.der], PrivateKeyDer::Pkcs8(key))?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Builds a TLS client configuration that accepts only a server holding `peer_key`.
///
/// A server with another key fails the handshake with a [`PinnedKeyMismatch`] inside
/// [`rustls::CertificateError::Other`].
///
/// # Errors
///
/// [`TlsConfigError::Rustls`] if the `ring` provider lacks TLS 1.3, which would be a bug.
pub fn client_config(peer_key: &PublicKey) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = ring_provider();
    let algorithms = provider.signature_verification_algorithms;
    let verifier = PinnedKeyVerifier::new(*peer_key, algorithms);

    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Returns the `ring` provider. The configurations name it explicitly, so no other
/// provider compiled into the program is picked up as the process default.
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rcgen_key_pair(identity: &NodeIdentity) -> Result<KeyPair, TlsConfigError> {
    let der = identity.pkcs8_der()?;
    let pkcs8 = PrivatePkcs8KeyDer::from(der.as_slice());
    Ok(KeyPair::try_from(&pkcs8)?)
}

#[cfg(test)]
mod tests {
    use rustls::server::ParsedCertificate;

    use super::*;

    #[test]
    fn certificate_holds_node_key() {
        let identity = NodeIdentity::generate("lab").expect("key");
        let certificate = NodeCertificate::generate(&identity).expect("certificate");

        let parsed = ParsedCertificate::try_from(certificate.der()).expect("parse");
        let expected = verifier::ed25519_spki(&identity.public_key());
        assert_eq!(
            parsed.subject_public_key_info().as_ref(),
            expected.as_slice()
        );
        assert!(certificate.pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
