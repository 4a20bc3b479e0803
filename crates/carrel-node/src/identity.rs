//! The node's identity: one Ed25519 key for request signatures, agreement
//! signatures, the TLS certificate and audit-log checkpoints.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrel_ledger::NoteSigner;
use carrel_net::NodeIdentity;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;

use crate::error::{NodeError, NodeResult};

/// The node's key, loaded once.
pub struct Identity {
    node: Arc<NodeIdentity>,
}

impl Identity {
    /// Loads the key file of a node called `name`.
    ///
    /// # Errors
    ///
    /// [`NodeError::Io`] when the file is missing, readable by others or invalid.
    pub fn load(name: &str, path: &Path) -> NodeResult<Self> {
        let node = NodeIdentity::load(name, path).map_err(|e| NodeError::Io(e.to_string()))?;
        Ok(Self {
            node: Arc::new(node),
        })
    }

    /// Returns the transport identity.
    pub fn node(&self) -> &Arc<NodeIdentity> {
        &self.node
    }

    /// Returns the participant name.
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// Returns the public key as base64 text.
    pub fn public_key_text(&self) -> String {
        STANDARD.encode(self.node.public_key().to_bytes())
    }

    /// Signs `message`, returning the 64 signature bytes.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.node.sign(message).to_bytes()
    }
}

/// Loads the node's Ed25519 key from its PEM file.
///
/// # Errors
///
/// [`NodeError::Io`] when the file cannot be read or parsed.
pub fn load_signing_key(path: &Path) -> NodeResult<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| NodeError::Io(format!("cannot read {}: {e}", path.display())))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| NodeError::Io(format!("{} is not an Ed25519 key: {e}", path.display())))
}

/// Signer of the audit log's checkpoints, named by the log's origin.
pub struct LogSigner(NoteSigner);

impl LogSigner {
    /// Loads the node key from its PEM file as a checkpoint signer for `origin`.
    ///
    /// # Errors
    ///
    /// [`NodeError::Io`] when the file cannot be read or parsed.
    pub fn load(origin: &str, path: &Path) -> NodeResult<Self> {
        let signer = NoteSigner::ed25519(origin, load_signing_key(path)?)?;
        Ok(Self(signer))
    }

    /// Returns the checkpoint signer.
    pub fn note_signer(&self) -> &NoteSigner {
        &self.0
    }
}
