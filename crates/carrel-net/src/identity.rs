//! Node identities: a participant name and the Ed25519 key that signs for it.
//!
//! The same key signs requests and responses and is the key in the node's TLS
//! certificate, so a peer that pins it authenticates the node at both layers.
//! The key file is PKCS#8 PEM, written with mode 0600 on unix; loading rejects
//! a file that other users can read.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// Errors from creating, saving and loading node identities and parsing public keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The operating system's random number generator failed.
    #[error("failed to draw random bytes from the operating system: {0}")]
    RandomnessUnavailable(getrandom::Error),

    /// Reading or writing the key file failed.
    #[error("failed to {action} key file {}: {source}", path.display())]
    KeyFileIo {
        /// The failed operation: "read", "create" or "write".
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// Saving would overwrite an existing key file.
    #[error(
        "key file {} already exists; move it away first if you mean to replace the node key",
        path.display()
    )]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
    },

    /// The key file can be read by users other than its owner.
    #[error(
        "key file {} has mode {mode:o}, readable by other users; run `chmod 600` on it",
        path.display()
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The key file is not a PKCS#8 PEM Ed25519 private key.
    #[error("key file {} is not a PKCS#8 PEM Ed25519 private key: {reason}", path.display())]
    InvalidKeyFile {
        /// The key file.
        path: PathBuf,
        /// The decoder's error message.
        reason: String,
    },

    /// The text is not a base64 Ed25519 public key.
    #[error("invalid public key {text:?}: {reason}; expected 32 bytes in standard base64")]
    InvalidPublicKey {
        /// The text as given, truncated to 64 characters.
        text: String,
        /// The problem found in it.
        reason: &'static str,
    },

    /// A participant name is empty, too long or not visible ASCII.
    #[error(
        "invalid participant name {name:?}: use 1 to {MAX_NAME_LEN} visible ASCII characters \
         without spaces"
    )]
    InvalidName {
        /// The name as given, truncated to 64 characters.
        name: String,
    },

    /// Encoding the key as PKCS#8 failed.
    #[error("failed to encode the node key as PKCS#8: {0}; please report this as a bug")]
    Encoding(String),
}

/// The maximum length of a participant name in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Checks that `name` can be a participant name: 1 to [`MAX_NAME_LEN`] visible ASCII
/// characters, so it fits an HTTP header and cannot split a signed line.
///
/// # Errors
///
/// [`IdentityError::InvalidName`] otherwise.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let visible = name.bytes().all(|byte| byte.is_ascii_graphic());
    if name.is_empty() || name.len() > MAX_NAME_LEN || !visible {
        return Err(IdentityError::InvalidName {
            name: name.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// A node's name and signing key.
///
/// `Debug` shows the name and public key only.
pub struct NodeIdentity {
    name: String,
    key: SigningKey,
}

impl NodeIdentity {
    /// Creates an identity with a fresh key drawn from the operating system's generator.
    ///
    /// # Errors
    ///
    /// [`IdentityError::InvalidName`] for a name that [`validate_name`] rejects, and
    /// [`IdentityError::RandomnessUnavailable`] when the generator fails.
    pub fn generate(name: impl Into<String>) -> Result<Self, IdentityError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut()).map_err(IdentityError::RandomnessUnavailable)?;
        Self::from_signing_key(name, SigningKey::from_bytes(&secret))
    }

    /// Wraps an existing signing key.
    ///
    /// # Errors
    ///
    /// [`IdentityError::InvalidName`] for a name that [`validate_name`] rejects.
    pub fn from_signing_key(
        name: impl Into<String>,
        key: SigningKey,
    ) -> Result<Self, IdentityError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(Self { name, key })
    }

    /// Loads the key of the node called `name` from a PKCS#8 PEM file.
    ///
    /// The file holds only the key; the name comes from the node's configuration.
    ///
    /// # Errors
    ///
    /// [`IdentityError::InvalidName`] for a name that [`validate_name`] rejects,
    /// [`IdentityError::KeyFileIo`] when the file cannot be read,
    /// [`IdentityError::InsecureKeyFile`] when other users may read it (unix), and
    /// [`IdentityError::InvalidKeyFile`] when it is not an Ed25519 PKCS#8 PEM key.
    pub fn load(name: impl Into<String>, path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        let name = name.into();
        validate_name(&name)?;
        let path = path.as_ref();
        let io_error = |source| IdentityError::KeyFileIo {
            action: "read",
            path: path.to_owned(),
            source,
        };
        let metadata = fs::metadata(path).map_err(io_error)?;
        check_owner_only(path, &metadata)?;

        let pem = Zeroizing::new(fs::read_to_string(path).map_err(io_error)?);
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| IdentityError::InvalidKeyFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self { name, key })
    }

    /// Saves the key as a PKCS#8 PEM file that only its owner can read (mode 0600 on unix).
    ///
    /// # Errors
    ///
    /// [`IdentityError::KeyFileExists`] when `path` exists, because replacing a node
    /// key breaks every peer that pinned it, and [`IdentityError::KeyFileIo`] when
    /// the file cannot be created or written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IdentityError> {
        let path = path.as_ref();
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| IdentityError::Encoding(e.to_string()))?;

        let mut file = create_owner_only(path)?;
        let written = file
            .write_all(pem.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            drop(file);
            // Best effort: a half-written key file is worse than none.
            let _ = fs::remove_file(path);
            return Err(IdentityError::KeyFileIo {
                action: "write",
                path: path.to_owned(),
                source,
            });
        }
        Ok(())
    }

    /// Returns the participant name this node signs as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the public half of the node key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs `message` with the node key.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }

    /// Encodes the key as unencrypted PKCS#8 DER, for the TLS stack.
    pub(crate) fn pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        let document = self
            .key
            .to_pkcs8_der()
            .map_err(|e| IdentityError::Encoding(e.to_string()))?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("name", &self.name)
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key, written as 44 characters of standard base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses the base64 text form.
    ///
    /// # Errors
    ///
    /// [`IdentityError::InvalidPublicKey`] when the text is not base64, not 32 bytes,
    /// or not a point on the curve.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let invalid = |reason| IdentityError::InvalidPublicKey {
            text: text.chars().take(64).collect(),
            reason,
        };
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| invalid("not standard base64"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| invalid("wrong length"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("not a curve point"))?;
        Ok(Self(key))
    }

    /// Reads the 32-byte encoding of a key.
    ///
    /// # Errors
    ///
    /// [`IdentityError::InvalidPublicKey`] when the bytes are not a point on the curve.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| IdentityError::InvalidPublicKey {
            text: BASE64.encode(bytes),
            reason: "not a curve point",
        })?;
        Ok(Self(key))
    }

    /// Wraps a verifying key.
    pub fn from_verifying_key(key: VerifyingKey) -> Self {
        Self(key)
    }

    /// Returns the 32-byte encoding of the key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Returns the verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// Checks `signature` over `message`, rejecting malleable and small-order encodings.
    ///
    /// # Errors
    ///
    /// [`ed25519_dalek::SignatureError`] when the signature does not verify.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), ed25519_dalek::SignatureError> {
        self.0.verify_strict(message, signature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(unix)]
fn create_owner_only(path: &Path) -> Result<fs::File, IdentityError> {
    use std::os::unix::fs::OpenOptionsExt;

    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| create_error(path, source))
}

#[cfg(not(unix))]
fn create_owner_only(path: &Path) -> Result<fs::File, IdentityError> {
    // NOTE: outside unix the file gets the directory's default permissions.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| create_error(path, source))
}

fn create_error(path: &Path, source: io::Error) -> IdentityError {
    if source.kind() == io::ErrorKind::AlreadyExists {
        return IdentityError::KeyFileExists {
            path: path.to_owned(),
        };
    }
    IdentityError::KeyFileIo {
        action: "create",
        path: path.to_owned(),
        source,
    }
}

#[cfg(unix)]
fn check_owner_only(path: &Path, metadata: &fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;

    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::InsecureKeyFile {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path, _metadata: &fs::Metadata) -> Result<(), IdentityError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_key_loads_back_with_same_public_key() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("node.key");
        let identity = NodeIdentity::generate("hospital").expect("key generation");

        identity.save(&path).expect("save");
        let loaded = NodeIdentity::load("hospital", &path).expect("load");

        assert_eq!(loaded.public_key(), identity.public_key());
        assert_eq!(loaded.name(), "hospital");
    }

    #[cfg(unix)]
    #[test]
    fn saved_key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("node.key");
        NodeIdentity::generate("bank")
            .expect("key")
            .save(&path)
            .expect("save");

        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn load_rejects_group_readable_key_file() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("node.key");
        NodeIdentity::generate("bank")
            .expect("key")
            .save(&path)
            .expect("save");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");

        let error = NodeIdentity::load("bank", &path).expect_err("mode 0640 must be rejected");
        assert!(matches!(
            error,
            IdentityError::InsecureKeyFile { mode: 0o640, .. }
        ));
    }

    #[test]
    fn save_refuses_to_overwrite_existing_key() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("node.key");
        NodeIdentity::generate("bank")
            .expect("key")
            .save(&path)
            .expect("first save");

        let error = NodeIdentity::generate("bank")
            .expect("key")
            .save(&path)
            .expect_err("second save must not overwrite");
        assert!(matches!(error, IdentityError::KeyFileExists { .. }));
    }

    #[test]
    fn identity_rejects_name_with_space() {
        let error = NodeIdentity::generate("city hospital").expect_err("space is not allowed");
        assert!(matches!(error, IdentityError::InvalidName { .. }));
    }

    #[test]
    fn public_key_text_round_trips() {
        let key = NodeIdentity::generate("telecom").expect("key").public_key();

        let text = key.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(PublicKey::parse(&text).expect("parse"), key);
    }

    #[test]
    fn public_key_parse_rejects_wrong_length() {
        let error = PublicKey::parse("AAAA").expect_err("3 bytes is not a key");
        assert!(matches!(
            error,
            IdentityError::InvalidPublicKey {
                reason: "wrong length",
                ..
            }
        ));
    }

    #[test]
    fn signature_verifies_only_for_signed_message() {
        let identity = NodeIdentity::generate("bank").expect("key");
        let signature = identity.sign(b"message");

        assert!(identity.public_key().verify(b"message", &signature).is_ok());
        assert!(
            identity
                .public_key()
                .verify(b"massage", &signature)
                .is_err()
        );
    }
}
