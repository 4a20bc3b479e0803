//! C2SP signed notes: text followed by a blank line and signature lines.
//!
//! Guarantee: [`verify_note`] returns the text of a note only if at least one trusted key
//! signed exactly that text and no trusted key's signature on it fails. Signature lines
//! from keys we do not know are skipped, which is what lets a log rotate keys and lets
//! witnesses add cosignatures to a note without breaking older clients.
//!
//! # Security
//!
//! The note comes from a peer. Parsing is strict: UTF-8 without control characters other
//! than newline, canonical base64 and well-formed signature lines. At most
//! [`MAX_SIGNATURES`] signature lines are read, so a peer cannot make us run unbounded
//! signature checks. The caller still bounds the size of the note it reads. Ed25519
//! signatures are checked with `verify_strict`, which rejects small-order keys and
//! non-canonical encodings. Trust comes only from the [`NoteVerifier`]s the caller passes:
//! a key name on a signature line is a lookup hint, never an identity.
//!
//! Only Ed25519 (type `0x01`) keys exist today. A signature line is parsed as (name, key
//! ID, payload) without looking at the payload, and the key type decides how the payload is
//! checked, so a verifier for witness cosignatures (type `0x04`) can be added beside it.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{LedgerError, Result};

/// The maximum number of signature lines in a note. Notes with more are rejected unread.
///
/// C2SP requires verifiers to accept at least 16. A hundred leaves room for many witnesses.
pub const MAX_SIGNATURES: usize = 100;

/// The signature type byte of plain Ed25519 note signatures.
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;

/// The prefix of every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// One signature line of a note, not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature<'a> {
    /// The key name on the line.
    pub name: &'a str,
    /// The 4-byte key ID that starts the decoded payload.
    pub key_id: u32,
    /// The rest of the payload: the signature, in a form that depends on the key type.
    pub signature: Vec<u8>,
}

/// A note split into its signed text and its signature lines, with nothing verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note<'a> {
    text: &'a str,
    signatures: Vec<NoteSignature<'a>>,
}

impl<'a> Note<'a> {
    /// Splits a note at its last blank line and parses the signature lines.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidNote`] if the note is malformed, and
    /// [`LedgerError::TooManySignatures`] if it has more than [`MAX_SIGNATURES`] lines.
    pub fn parse(note: &'a str) -> Result<Self> {
        check_text(note)?;
        let Some(split) = note.rfind("\n\n") else {
            return Err(invalid_note("no blank line separates text and signatures"));
        };
        let (text, signature_lines) = (&note[..=split], &note[split + 2..]);
        if signature_lines.is_empty() {
            return Err(invalid_note("no signature lines"));
        }
        if signature_lines.matches('\n').count() > MAX_SIGNATURES {
            return Err(LedgerError::TooManySignatures {
                limit: MAX_SIGNATURES,
            });
        }

        // `check_text` made sure the note, and so the last line, ends in a newline.
        let signatures = signature_lines
            .split_terminator('\n')
            .map(parse_signature_line)
            .collect::<Result<_>>()?;
        Ok(Self { text, signatures })
    }

    /// Returns the signed text, ending in a newline.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Returns the signature lines in the order they appear.
    pub fn signatures(&self) -> &[NoteSignature<'a>] {
        &self.signatures
    }
}

/// Opens a note with a set of trusted keys, following the C2SP verifier rules, and
/// returns its signed text.
///
/// Signature lines whose (name, key ID) no verifier has are ignored.
///
/// # Errors
///
/// Those of [`Note::parse`]; [`LedgerError::BadSignature`] if a trusted key's signature
/// fails; [`LedgerError::UnknownKey`] if no trusted key signed the note.
pub fn verify_note<'a>(note: &'a str, verifiers: &[NoteVerifier]) -> Result<&'a str> {
    let note = Note::parse(note)?;
    let mut verified = false;
    for line in note.signatures() {
        let known = verifiers
            .iter()
            .find(|v| v.name == line.name && v.key_id == line.key_id);
        let Some(verifier) = known else {
            continue;
        };
        if !verifier.verifies(note.text().as_bytes(), &line.signature) {
            return Err(LedgerError::BadSignature {
                key_name: line.name.to_owned(),
            });
        }
        verified = true;
    }
    if !verified {
        return Err(LedgerError::UnknownKey);
    }
    Ok(note.text())
}

/// Computes the C2SP key ID: the first 4 bytes, big-endian, of
/// SHA-256(`name` ‖ `0x0A` ‖ `type_and_key`), where `type_and_key` is the signature type
/// byte followed by the public key.
pub fn key_id(name: &str, type_and_key: &[u8]) -> u32 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n'])
        .chain_update(type_and_key)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A trusted public key under a name, able to check note signatures.
///
/// Its text form (a "vkey") is `name+hex(key ID)+base64(type byte ‖ public key)`, read with
/// [`str::parse`] and written with `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifierKey,
}

/// The key types a verifier can hold.
#[derive(Clone, Debug, PartialEq, Eq)]
enum VerifierKey {
    Ed25519(VerifyingKey),
}

impl NoteVerifier {
    /// Creates a verifier for Ed25519 signatures made under `name`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidKey`] if `name` is empty or contains whitespace or `+`.
    pub fn ed25519(name: &str, key: VerifyingKey) -> Result<Self> {
        check_key_name(name)?;
        let key_id = key_id(name, &ed25519_type_and_key(&key));
        Ok(Self {
            name: name.to_owned(),
            key_id,
            key: VerifierKey::Ed25519(key),
        })
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Returns whether `signature` is this key's signature on `message`.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            VerifierKey::Ed25519(key) => Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify_strict(message, &signature).is_ok()),
        }
    }

    fn type_and_key(&self) -> Vec<u8> {
        match &self.key {
            VerifierKey::Ed25519(key) => ed25519_type_and_key(key).to_vec(),
        }
    }
}

impl FromStr for NoteVerifier {
    type Err = LedgerError;

    /// Parses `name+hex(key ID)+base64(type byte ‖ public key)`.
    fn from_str(vkey: &str) -> Result<Self> {
        let (name, rest) = vkey
            .split_once('+')
            .ok_or_else(|| invalid_key("vkey has no '+'"))?;
        let (id_hex, key_base64) = rest
            .split_once('+')
            .ok_or_else(|| invalid_key("vkey needs name, key ID and key joined by '+'"))?;
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid_key("vkey key ID is not 8 hex digits"));
        }
        // Eight hex digits always fit in a u32.
        let parsed_id = u32::from_str_radix(id_hex, 16).expect("8 hex digits");
        let type_and_key = BASE64
            .decode(key_base64)
            .map_err(|_| invalid_key("vkey key is not canonical base64"))?;

        let verifier = match type_and_key.split_first() {
            Some((&SIGNATURE_TYPE_ED25519, public)) => {
                let public: &[u8; 32] = public
                    .try_into()
                    .map_err(|_| invalid_key("Ed25519 public key is not 32 bytes"))?;
                let key = VerifyingKey::from_bytes(public)
                    .map_err(|_| invalid_key("Ed25519 public key is not a valid point"))?;
                Self::ed25519(name, key)?
            }
            Some((other, _)) => {
                return Err(invalid_key(format!(
                    "unsupported signature type 0x{other:02x}"
                )));
            }
            None => return Err(invalid_key("vkey key is empty")),
        };
        if verifier.key_id != parsed_id {
            return Err(invalid_key("vkey key ID does not match its name and key"));
        }
        Ok(verifier)
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = BASE64.encode(self.type_and_key());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, key)
    }
}

/// An Ed25519 private key under a name, able to sign notes.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl NoteSigner {
    /// Creates a signer that signs with `key` under `name`. C2SP recommends that a log's
    /// key name equal its origin.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidKey`] if `name` is empty or contains whitespace or `+`.
    pub fn ed25519(name: &str, key: SigningKey) -> Result<Self> {
        check_key_name(name)?;
        let key_id = key_id(name, &ed25519_type_and_key(&key.verifying_key()));
        Ok(Self {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Returns the verifier for this signer's signatures.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: VerifierKey::Ed25519(self.key.verifying_key()),
        }
    }

    /// Signs `text` and returns the whole note: the text, a blank line and one signature
    /// line.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidNote`] if `text` is empty, does not end in a newline or
    /// contains a control character other than newline.
    pub fn sign(&self, text: &str) -> Result<String> {
        check_text(text)?;
        Ok(format!("{text}\n{}", self.signature_line(text)))
    }

    /// Signs `text` and returns the signature line, ending in a newline.
    fn signature_line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes()).to_bytes();
        let mut payload = Vec::with_capacity(4 + signature.len());
        payload.extend_from_slice(&self.key_id.to_be_bytes());
        payload.extend_from_slice(&signature);
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(payload)
        )
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

fn parse_signature_line(line: &str) -> Result<NoteSignature<'_>> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or_else(|| invalid_note("signature line does not start with an em dash and space"))?;
    let (name, payload) = rest
        .split_once(' ')
        .ok_or_else(|| invalid_note("signature line has no space after the key name"))?;
    check_key_name(name).map_err(|_| invalid_note("signature line has an invalid key name"))?;
    let payload = BASE64
        .decode(payload)
        .map_err(|_| invalid_note("signature is not canonical base64"))?;
    if payload.len() < 5 {
        return Err(invalid_note(
            "signature is shorter than a key ID and one byte",
        ));
    }

    let (id, signature) = payload.split_at(4);
    Ok(NoteSignature {
        name,
        key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        signature: signature.to_vec(),
    })
}

/// Checks that `text` is non-empty, ends in a newline and contains no other control
/// character.
fn check_text(text: &str) -> Result<()> {
    if !text.ends_with('\n') {
        return Err(invalid_note("text does not end in a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid_note(
            "text holds a control character other than newline",
        ));
    }
    Ok(())
}

/// Key names are non-empty and hold no whitespace, `+` or control character.
fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid_key("key name is empty"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return Err(invalid_key(
            "key name holds whitespace, a control character or '+'",
        ));
    }
    Ok(())
}

fn ed25519_type_and_key(key: &VerifyingKey) -> [u8; 33] {
    let mut out = [0; 33];
    out[0] = SIGNATURE_TYPE_ED25519;
    out[1..].copy_from_slice(key.as_bytes());
    out
}

fn invalid_note(reason: &str) -> LedgerError {
    LedgerError::InvalidNote(reason.to_owned())
}

fn invalid_key(reason: impl Into<String>) -> LedgerError {
    LedgerError::InvalidKey(reason.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::ed25519(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    #[test]
    fn signed_note_opens_with_its_verifier() {
        let signer = signer("example.com/log", 1);
        let note = signer.sign("hello\n\nworld\n").unwrap();
        assert_eq!(
            verify_note(&note, &[signer.verifier()]).unwrap(),
            "hello\n\nworld\n"
        );
    }

    #[test]
    fn vkey_round_trips() {
        let verifier = signer("example.com/log", 2).verifier();
        let text = verifier.to_string();
        assert!(text.starts_with(&format!("example.com/log+{:08x}+", verifier.key_id())));
        assert_eq!(text.parse::<NoteVerifier>().unwrap(), verifier);
    }

    #[test]
    fn vkey_with_wrong_key_id_is_rejected() {
        let text = signer("example.com/log", 3).verifier().to_string();
        let (name, rest) = text.split_once('+').unwrap();
        let (_, key) = rest.split_once('+').unwrap();
        let forged = format!("{name}+00000000+{key}");
        assert!(matches!(
            forged.parse::<NoteVerifier>(),
            Err(LedgerError::InvalidKey(_))
        ));
    }

    #[test]
    fn vkey_with_bad_parts_is_rejected() {
        let good = signer("a", 4).verifier().to_string();
        let key = good.rsplit_once('+').unwrap().1;
        for bad in [
            "",
            "a",
            "a+1234",
            "a+123456789+AQ==",
            &format!("a+zzzzzzzz+{key}"),
        ] {
            assert!(bad.parse::<NoteVerifier>().is_err(), "{bad:?}");
        }
        let wrong_type = BASE64.encode([0x02; 33]);
        assert!(
            format!("a+00000000+{wrong_type}")
                .parse::<NoteVerifier>()
                .is_err()
        );
    }

    #[test]
    fn key_names_with_space_or_plus_are_rejected() {
        for name in ["", "a b", "a+b", "a\tb"] {
            let key = SigningKey::from_bytes(&[5; 32]);
            assert!(NoteSigner::ed25519(name, key).is_err(), "{name:?}");
        }
    }

    #[test]
    fn signing_rejects_text_without_final_newline() {
        assert!(signer("a", 6).sign("no newline").is_err());
        assert!(signer("a", 6).sign("carriage\r\n").is_err());
    }

    #[test]
    fn debug_of_signer_hides_the_key() {
        let debug = format!("{:?}", signer("a", 7));
        assert!(debug.contains("NoteSigner"));
        assert!(!debug.contains("SigningKey"));
    }
}
