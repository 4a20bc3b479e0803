//! Party signatures over agreements and revocations.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrel_model::PartySignature;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::error::{NodeError, NodeResult};
use crate::identity::Identity;

/// Signs `bytes` as this node.
pub fn sign(identity: &Identity, bytes: &[u8]) -> PartySignature {
    PartySignature {
        signer: identity.name().to_owned(),
        signature: STANDARD.encode(identity.sign(bytes)),
    }
}

/// Checks that `signature` is `expected_signer`'s valid signature over `bytes`, made
/// with the base64 Ed25519 `public_key`.
///
/// # Errors
///
/// [`NodeError::Forbidden`] naming the signer when the name or signature is wrong.
pub fn verify(
    signature: &PartySignature,
    expected_signer: &str,
    public_key: &str,
    bytes: &[u8],
) -> NodeResult<()> {
    if signature.signer != expected_signer {
        return Err(NodeError::Forbidden(format!(
            "signature is by {:?}, expected {expected_signer:?}",
            signature.signer
        )));
    }
    let bad = |what: &str| {
        NodeError::Forbidden(format!(
            "{what} of {expected_signer:?} is invalid; the document was altered or signed with another key"
        ))
    };
    let key_bytes: [u8; 32] = STANDARD
        .decode(public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("public key"))?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad("public key"))?;
    let sig_bytes: [u8; 64] = STANDARD
        .decode(&signature.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("signature"))?;
    key.verify(bytes, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| bad("signature"))
}

/// Returns the hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
