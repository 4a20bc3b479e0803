//! C2SP `tlog-cosignature` Ed25519 cosignatures (signature type `0x04`) and opening a
//! checkpoint that carries them.
//!
//! A witness cosignature states that, at the given POSIX time, the checkpoint was the
//! largest tree the witness had seen for that origin that is consistent with every earlier
//! one it saw. The signed message is
//!
//! ```text
//! cosignature/v1
//! time <timestamp>
//! <checkpoint body, extension lines included>
//! ```
//!
//! and the signature line is `— <name> base64(key ID ‖ u64 timestamp ‖ Ed25519 signature)`,
//! with the key ID `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[..4]` and the timestamp
//! big-endian.
//!
//! # Security
//!
//! The message does not contain the witness's name, so one Ed25519 key must serve one
//! witness identity only. A cosignature makes no statement about checkpoint extension lines
//! beyond the fact that the witness saw them. Timestamps are not compared with the clock here.
//! Callers that want to reject cosignatures from the future, or stale ones, compare
//! [`WitnessCosignature::timestamp`] with their own clock.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::checkpoint::Checkpoint;
use crate::error::{LedgerError, Result};
use crate::merkle::EMPTY_ROOT;
use crate::note::{Note, NoteSignature, NoteVerifier, key_id, verify_note};
use crate::syntax::{is_key_name, split_vkey};

/// The signature type byte of timestamped Ed25519 cosignatures.
pub const SIGNATURE_TYPE_COSIGNATURE_ED25519: u8 = 0x04;

/// The largest timestamp a cosignature may carry: 2^63 - 1.
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The first line of every cosigned message, which keeps cosignatures apart from other
/// uses of the same key.
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// The prefix of every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Length of a cosignature payload after the key ID: the timestamp and the signature.
const PAYLOAD_LEN: usize = 8 + Signature::BYTE_SIZE;

/// A witness's Ed25519 private key under a name, able to cosign checkpoints.
pub struct Cosigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl Cosigner {
    /// Creates a cosigner that signs with `key` under `name`, conventionally a schema-less
    /// URL that identifies the witness.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidKey`] if `name` is empty or contains whitespace or `+`.
    pub fn ed25519(name: &str, key: SigningKey) -> Result<Self> {
        check_key_name(name)?;
        let key_id = cosignature_key_id(name, &key.verifying_key());
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

    /// Returns the verifier for this cosigner's cosignatures.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Cosigns a checkpoint body at `timestamp` (POSIX seconds) and returns the signature
    /// line, ending in a newline.
    ///
    /// `body` is the signed text of the checkpoint note, extension lines included; use
    /// [`Checkpoint::body`] for a checkpoint without them. Appending the line to the note
    /// gives the cosigned note.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidNote`] if `body` is not a checkpoint body, and
    /// [`LedgerError::InvalidCosignature`] if `timestamp` exceeds [`MAX_TIMESTAMP`].
    pub fn cosign(&self, body: &str, timestamp: u64) -> Result<String> {
        check_body(body)?;
        if timestamp > MAX_TIMESTAMP {
            return Err(LedgerError::InvalidCosignature {
                key_name: self.name.clone(),
                reason: format!("timestamp {timestamp} exceeds 2^63 - 1"),
            });
        }
        let signature = self.key.sign(&cosigned_message(body, timestamp)).to_bytes();
        let mut payload = Vec::with_capacity(4 + PAYLOAD_LEN);
        payload.extend_from_slice(&self.key_id.to_be_bytes());
        payload.extend_from_slice(&timestamp.to_be_bytes());
        payload.extend_from_slice(&signature);
        Ok(format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(payload)
        ))
    }
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// A trusted witness public key under a name, able to check its cosignatures.
///
/// Its text form (a vkey) is `name+hex(key ID)+base64(0x04 ‖ public key)`, read with
/// [`str::parse`] and written with `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Creates a verifier for cosignatures made under `name` with `key`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidKey`] if `name` is empty or contains whitespace or `+`.
    pub fn ed25519(name: &str, key: VerifyingKey) -> Result<Self> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: cosignature_key_id(name, &key),
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

    /// Returns the Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Verifies one signature line, such as a witness's `add-checkpoint` response, as this
    /// key's cosignature on a checkpoint body and returns its timestamp.
    ///
    /// # Errors
    ///
    /// - [`LedgerError::InvalidNote`] if `line` is not a signature line.
    /// - [`LedgerError::UnknownKey`] if its name or key ID is not this key's.
    /// - [`LedgerError::InvalidCosignature`] if it is malformed.
    /// - [`LedgerError::BadSignature`] if the signature does not verify.
    pub fn verify_line(&self, body: &str, line: &str) -> Result<u64> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let (name, payload) = line
            .strip_prefix(SIGNATURE_PREFIX)
            .and_then(|rest| rest.split_once(' '))
            .ok_or_else(|| {
                LedgerError::InvalidNote(format!(
                    "{line:?} is not a signature line \"— <name> <base64>\""
                ))
            })?;
        let payload = BASE64.decode(payload).map_err(|_| {
            LedgerError::InvalidNote(format!("signature of {name:?} is not canonical base64"))
        })?;
        if name != self.name || payload.len() < 4 || payload[..4] != self.key_id.to_be_bytes() {
            return Err(LedgerError::UnknownKey);
        }
        self.verify_payload(body, &payload[4..])
    }

    /// Checks a cosignature payload (the bytes after the key ID) on `body`.
    fn verify_payload(&self, body: &str, payload: &[u8]) -> Result<u64> {
        let malformed = |reason: String| LedgerError::InvalidCosignature {
            key_name: self.name.clone(),
            reason,
        };
        let Ok(payload) = <&[u8; PAYLOAD_LEN]>::try_from(payload) else {
            return Err(malformed(format!(
                "payload after the key ID is {} bytes, expected {PAYLOAD_LEN}",
                payload.len()
            )));
        };
        let (timestamp, signature) = payload.split_at(8);
        let timestamp = u64::from_be_bytes(timestamp.try_into().expect("8 bytes"));
        if timestamp > MAX_TIMESTAMP {
            return Err(malformed(format!("timestamp {timestamp} exceeds 2^63 - 1")));
        }
        let signature = Signature::from_slice(signature).expect("64 bytes");
        self.key
            .verify_strict(&cosigned_message(body, timestamp), &signature)
            .map_err(|_| LedgerError::BadSignature {
                key_name: self.name.clone(),
            })?;
        Ok(timestamp)
    }

    fn matches(&self, line: &NoteSignature<'_>) -> bool {
        self.name == line.name && self.key_id == line.key_id
    }
}

impl FromStr for CosignatureVerifier {
    type Err = LedgerError;

    /// Parses `name+hex(key ID)+base64(0x04 ‖ public key)`.
    fn from_str(vkey: &str) -> Result<Self> {
        let invalid = |reason: &str| LedgerError::InvalidKey(format!("vkey {vkey:?}: {reason}"));
        let parts = split_vkey(vkey).map_err(invalid)?;
        if parts.key_type != SIGNATURE_TYPE_COSIGNATURE_ED25519 {
            return Err(invalid(&format!(
                "signature type 0x{:02x} is not a cosignature key; witness vkeys have type \
                 0x04 (timestamped Ed25519), while 0x01 is a log's key",
                parts.key_type
            )));
        }
        let public: &[u8; 32] = parts
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| invalid("the Ed25519 public key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(public)
            .map_err(|_| invalid("the Ed25519 public key is not a valid point"))?;
        let verifier = Self::ed25519(parts.name, key)?;
        if verifier.key_id != parts.key_id {
            return Err(invalid(&format!(
                "key ID {:08x} does not match the name and key, which give {:08x}",
                parts.key_id, verifier.key_id
            )));
        }
        Ok(verifier)
    }
}

impl fmt::Display for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut type_and_key = [0; 33];
        type_and_key[0] = SIGNATURE_TYPE_COSIGNATURE_ED25519;
        type_and_key[1..].copy_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64.encode(type_and_key)
        )
    }
}

/// A cosignature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessCosignature {
    /// The witness: its key name for [`open_cosigned`], its name in the policy for
    /// [`crate::Policy::verify_checkpoint`].
    pub name: String,
    /// When the witness cosigned, in POSIX seconds.
    pub timestamp: u64,
}

/// A checkpoint whose log signature verified, with the witnesses whose cosignatures on it
/// verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignedCheckpoint {
    /// The checkpoint, without extension lines.
    pub checkpoint: Checkpoint,
    /// One entry per witness that cosigned, in the order of the witnesses given. A witness
    /// with several valid lines appears once, with its latest timestamp.
    pub cosignatures: Vec<WitnessCosignature>,
}

/// Opens a checkpoint note with the log's key and a set of trusted witness keys.
///
/// The note is accepted if the log's key signed it, every line from a trusted log or
/// witness key verifies, its origin is `expected_origin`, and a size-0 checkpoint has the
/// empty tree's root. Lines from unknown keys are ignored. Whether enough witnesses
/// cosigned is the caller's decision, made from [`CosignedCheckpoint::cosignatures`], or
/// that of a [`crate::Policy`].
///
/// # Errors
///
/// - [`LedgerError::TooManySignatures`] beyond [`crate::note::MAX_SIGNATURES`] lines.
/// - [`LedgerError::InvalidNote`] if the note is malformed.
/// - [`LedgerError::UnknownKey`] if the log did not sign it.
/// - [`LedgerError::BadSignature`] or [`LedgerError::InvalidCosignature`] if a trusted
///   key's line fails.
/// - [`LedgerError::OriginMismatch`] if the checkpoint is for another log.
/// - [`LedgerError::InvalidEmptyRoot`] for a size-0 checkpoint with a non-empty root.
pub fn open_cosigned(
    note: &str,
    expected_origin: &str,
    log_verifier: &NoteVerifier,
    witnesses: &[CosignatureVerifier],
) -> Result<CosignedCheckpoint> {
    let text = verify_note(note, std::slice::from_ref(log_verifier))?;
    let parsed = Note::parse(note)?;
    let cosignatures = verify_cosignatures(&parsed, witnesses)?
        .into_iter()
        .map(|(index, timestamp)| WitnessCosignature {
            name: witnesses[index].name.clone(),
            timestamp,
        })
        .collect();
    let checkpoint = Checkpoint::parse_body(text)?;
    if checkpoint.origin() != expected_origin {
        return Err(LedgerError::OriginMismatch {
            expected: expected_origin.to_owned(),
            found: checkpoint.origin().to_owned(),
        });
    }
    check_empty_root(&checkpoint)?;
    Ok(CosignedCheckpoint {
        checkpoint,
        cosignatures,
    })
}

/// Verifies every line of `note` from one of `witnesses` and returns, for each witness with
/// a valid line, its index in `witnesses` and its latest timestamp, in witness order.
///
/// Lines from other keys are skipped; any failing line from a witness key is an error.
pub(crate) fn verify_cosignatures(
    note: &Note<'_>,
    witnesses: &[CosignatureVerifier],
) -> Result<Vec<(usize, u64)>> {
    let mut latest: Vec<Option<u64>> = vec![None; witnesses.len()];
    for line in note.signatures() {
        for (index, witness) in witnesses.iter().enumerate() {
            if !witness.matches(line) {
                continue;
            }
            let timestamp = witness.verify_payload(note.text(), &line.signature)?;
            latest[index] = latest[index].max(Some(timestamp));
        }
    }
    Ok(latest
        .into_iter()
        .enumerate()
        .filter_map(|(index, timestamp)| Some((index, timestamp?)))
        .collect())
}

/// Rejects a size-0 checkpoint whose root is not the empty tree's root. No consistency or
/// inclusion proof involves such a root, so a log that signs one is broken or lying.
pub(crate) fn check_empty_root(checkpoint: &Checkpoint) -> Result<()> {
    if checkpoint.tree_size() == 0 && *checkpoint.root_hash() != EMPTY_ROOT {
        return Err(LedgerError::InvalidEmptyRoot {
            root: BASE64.encode(checkpoint.root_hash()),
        });
    }
    Ok(())
}

/// Builds the message an Ed25519 cosignature signs.
fn cosigned_message(body: &str, timestamp: u64) -> Vec<u8> {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{body}").into_bytes()
}

/// Computes the key ID of an Ed25519 cosigner: SHA-256(name ‖ 0x0A ‖ 0x04 ‖ key)[..4].
fn cosignature_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut type_and_key = [0; 33];
    type_and_key[0] = SIGNATURE_TYPE_COSIGNATURE_ED25519;
    type_and_key[1..].copy_from_slice(key.as_bytes());
    key_id(name, &type_and_key)
}

/// Checks that `body` is a checkpoint body and valid note text.
fn check_body(body: &str) -> Result<()> {
    Checkpoint::parse_body(body)?;
    if body.chars().any(|c| c.is_control() && c != '\n') {
        return Err(LedgerError::InvalidNote(
            "checkpoint body contains a control character other than newline".into(),
        ));
    }
    Ok(())
}

fn check_key_name(name: &str) -> Result<()> {
    if !is_key_name(name) {
        return Err(LedgerError::InvalidKey(format!(
            "key name {name:?} is empty or contains whitespace, a control character or '+'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::merkle::{leaf_hash, root};
    use crate::note::{MAX_SIGNATURES, NoteSigner};

    const ORIGIN: &str = "example.com/log";

    fn log_signer() -> NoteSigner {
        NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap()
    }

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::ed25519(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        let leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")];
        Checkpoint::new(ORIGIN, 3, root(&leaves)).unwrap()
    }

    /// Splits a note into its text part (with the blank line) and its signature lines.
    fn split_note(note: &str) -> (&str, Vec<&str>) {
        let split = note.rfind("\n\n").unwrap() + 2;
        (
            &note[..split],
            note[split..].split_inclusive('\n').collect(),
        )
    }

    #[test]
    fn key_id_follows_formula() {
        let cosigner = cosigner("witness.example/w1", 2);
        let public = cosigner.verifier().public_key().to_bytes();
        let mut hasher = Sha256::new();
        hasher.update(b"witness.example/w1");
        hasher.update([0x0a, 0x04]);
        hasher.update(public);
        let digest = hasher.finalize();
        let expected = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        assert_eq!(cosigner.key_id(), expected);
    }

    #[test]
    fn cosignature_payload_matches_spec_layout() {
        // Recomputes the line from the spec's description with ed25519-dalek directly.
        let seed = [3; 32];
        let cosigner = cosigner("w", 3);
        let body = checkpoint().body();
        let line = cosigner.cosign(&body, 1_679_315_147).unwrap();

        let message = format!("cosignature/v1\ntime 1679315147\n{body}");
        let signature = SigningKey::from_bytes(&seed).sign(message.as_bytes());
        let mut payload = cosigner.key_id().to_be_bytes().to_vec();
        payload.extend_from_slice(&1_679_315_147_u64.to_be_bytes());
        payload.extend_from_slice(&signature.to_bytes());
        assert_eq!(line, format!("\u{2014} w {}\n", BASE64.encode(payload)));
    }

    #[test]
    fn cosignature_line_verifies_and_returns_timestamp() {
        let cosigner = cosigner("w", 4);
        let body = checkpoint().body();
        let line = cosigner.cosign(&body, 42).unwrap();
        assert_eq!(cosigner.verifier().verify_line(&body, &line).unwrap(), 42);

        let other_body = Checkpoint::new(ORIGIN, 4, [0; 32]).unwrap().body();
        assert!(matches!(
            cosigner.verifier().verify_line(&other_body, &line),
            Err(LedgerError::BadSignature { .. })
        ));
        let stranger = self::cosigner("w", 5).verifier();
        assert!(matches!(
            stranger.verify_line(&body, &line),
            Err(LedgerError::UnknownKey)
        ));
    }

    #[test]
    fn timestamp_above_max_is_rejected() {
        let cosigner = cosigner("w", 6);
        let body = checkpoint().body();
        assert!(cosigner.cosign(&body, MAX_TIMESTAMP).is_ok());
        assert!(matches!(
            cosigner.cosign(&body, MAX_TIMESTAMP + 1),
            Err(LedgerError::InvalidCosignature { .. })
        ));

        // A payload with the top bit set is rejected before the signature is checked.
        let timestamp = MAX_TIMESTAMP + 1;
        let message = format!("cosignature/v1\ntime {timestamp}\n{body}");
        let signature = SigningKey::from_bytes(&[6; 32]).sign(message.as_bytes());
        let mut payload = cosigner.key_id().to_be_bytes().to_vec();
        payload.extend_from_slice(&timestamp.to_be_bytes());
        payload.extend_from_slice(&signature.to_bytes());
        let line = format!("\u{2014} w {}\n", BASE64.encode(payload));
        assert!(matches!(
            cosigner.verifier().verify_line(&body, &line),
            Err(LedgerError::InvalidCosignature { .. })
        ));
    }

    #[test]
    fn vkey_round_trips() {
        let verifier = cosigner("witness.example/w1", 7).verifier();
        let text = verifier.to_string();
        let (_, key) = text.rsplit_once('+').unwrap();
        assert_eq!(BASE64.decode(key).unwrap()[0], 0x04);
        assert_eq!(text.parse::<CosignatureVerifier>().unwrap(), verifier);
    }

    #[test]
    fn vkey_of_other_type_is_rejected() {
        let log_vkey = log_signer().verifier().to_string();
        let error = log_vkey.parse::<CosignatureVerifier>().unwrap_err();
        assert!(error.to_string().contains("type 0x01"), "{error}");

        let text = cosigner("w", 8).verifier().to_string();
        let forged = format!("w+00000000+{}", text.rsplit_once('+').unwrap().1);
        assert!(forged.parse::<CosignatureVerifier>().is_err());
        for bad in [
            "",
            "w",
            "w+1234+AQ==",
            "w+zzzzzzzz+AQ==",
            "a b+00000000+BA==",
        ] {
            assert!(bad.parse::<CosignatureVerifier>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_and_witness_lines_open_in_either_order() {
        let log = log_signer();
        let witness = cosigner("w", 9);
        let checkpoint = checkpoint();
        let note = checkpoint.sign(&log);
        let cosignature = witness.cosign(&checkpoint.body(), 100).unwrap();
        let (text, log_lines) = split_note(&note);
        let log_first = format!("{note}{cosignature}");
        let witness_first = format!("{text}{cosignature}{}", log_lines[0]);

        for note in [log_first, witness_first] {
            let opened =
                open_cosigned(&note, ORIGIN, &log.verifier(), &[witness.verifier()]).unwrap();
            assert_eq!(opened.checkpoint, checkpoint);
            let expected = WitnessCosignature {
                name: "w".into(),
                timestamp: 100,
            };
            assert_eq!(opened.cosignatures, vec![expected]);
        }
    }

    #[test]
    fn witness_line_without_log_line_is_rejected() {
        let checkpoint = checkpoint();
        let witness = cosigner("w", 10);
        let text = format!("{}\n", checkpoint.body());
        let note = format!("{text}{}", witness.cosign(&checkpoint.body(), 1).unwrap());
        let result = open_cosigned(
            &note,
            ORIGIN,
            &log_signer().verifier(),
            &[witness.verifier()],
        );
        assert!(matches!(result, Err(LedgerError::UnknownKey)));

        // The same holds when the only line comes from an untrusted key.
        let result = open_cosigned(&note, ORIGIN, &log_signer().verifier(), &[]);
        assert!(matches!(result, Err(LedgerError::UnknownKey)));
    }

    #[test]
    fn corrupted_log_signature_is_rejected() {
        let log = log_signer();
        let witness = cosigner("w", 11);
        let checkpoint = checkpoint();
        let note = checkpoint.sign(&log);
        let (text, log_lines) = split_note(&note);
        let (name, payload) = log_lines[0].trim_end().rsplit_once(' ').unwrap();
        let mut bytes = BASE64.decode(payload).unwrap();
        bytes[10] ^= 1;
        let corrupted = format!("{name} {}\n", BASE64.encode(bytes));
        let cosignature = witness.cosign(&checkpoint.body(), 1).unwrap();
        let note = format!("{text}{corrupted}{cosignature}");
        let result = open_cosigned(&note, ORIGIN, &log.verifier(), &[witness.verifier()]);
        assert!(matches!(result, Err(LedgerError::BadSignature { .. })));
    }

    #[test]
    fn failing_witness_signature_rejects_note() {
        let log = log_signer();
        let witness = cosigner("w", 12);
        let checkpoint = checkpoint();
        let other_body = Checkpoint::new(ORIGIN, 9, [5; 32]).unwrap().body();
        let wrong = witness.cosign(&other_body, 1).unwrap();
        let note = format!("{}{wrong}", checkpoint.sign(&log));
        let result = open_cosigned(&note, ORIGIN, &log.verifier(), &[witness.verifier()]);
        assert!(
            matches!(result, Err(LedgerError::BadSignature { ref key_name }) if key_name == "w")
        );
    }

    #[test]
    fn wrong_origin_is_rejected() {
        let log = log_signer();
        let note = checkpoint().sign(&log);
        let result = open_cosigned(&note, "example.com/other", &log.verifier(), &[]);
        assert!(matches!(result, Err(LedgerError::OriginMismatch { .. })));
    }

    #[test]
    fn too_many_signature_lines_are_rejected() {
        let log = log_signer();
        let checkpoint = checkpoint();
        let mut note = checkpoint.sign(&log);
        let stranger = cosigner("stranger", 13);
        for timestamp in 0..MAX_SIGNATURES as u64 {
            note.push_str(&stranger.cosign(&checkpoint.body(), timestamp).unwrap());
        }
        let result = open_cosigned(&note, ORIGIN, &log.verifier(), &[]);
        assert!(matches!(
            result,
            Err(LedgerError::TooManySignatures { limit: 100 })
        ));
    }

    #[test]
    fn unknown_key_lines_are_ignored() {
        let log = log_signer();
        let known = cosigner("known", 14);
        let unknown = cosigner("unknown", 15);
        let checkpoint = checkpoint();
        let body = checkpoint.body();
        let garbage = format!("\u{2014} unknown {}\n", BASE64.encode([0xaa; 40]));
        let note = format!(
            "{}{}{garbage}{}",
            checkpoint.sign(&log),
            unknown.cosign(&body, 5).unwrap(),
            known.cosign(&body, 6).unwrap()
        );
        let opened = open_cosigned(&note, ORIGIN, &log.verifier(), &[known.verifier()]).unwrap();
        assert_eq!(opened.cosignatures.len(), 1);
        assert_eq!(opened.cosignatures[0].name, "known");
    }

    #[test]
    fn repeated_witness_reports_latest_timestamp() {
        let log = log_signer();
        let witness = cosigner("w", 16);
        let checkpoint = checkpoint();
        let body = checkpoint.body();
        let note = format!(
            "{}{}{}",
            checkpoint.sign(&log),
            witness.cosign(&body, 9).unwrap(),
            witness.cosign(&body, 3).unwrap()
        );
        let opened = open_cosigned(&note, ORIGIN, &log.verifier(), &[witness.verifier()]).unwrap();
        assert_eq!(opened.cosignatures.len(), 1);
        assert_eq!(opened.cosignatures[0].timestamp, 9);
    }

    #[test]
    fn empty_checkpoint_with_wrong_root_is_rejected() {
        let log = log_signer();
        let bad = Checkpoint::new(ORIGIN, 0, [0; 32]).unwrap().sign(&log);
        let result = open_cosigned(&bad, ORIGIN, &log.verifier(), &[]);
        assert!(matches!(result, Err(LedgerError::InvalidEmptyRoot { .. })));

        let good = Checkpoint::new(ORIGIN, 0, EMPTY_ROOT).unwrap().sign(&log);
        assert!(open_cosigned(&good, ORIGIN, &log.verifier(), &[]).is_ok());
    }

    #[test]
    fn debug_of_cosigner_hides_the_key() {
        let debug = format!("{:?}", cosigner("w", 17));
        assert!(debug.contains("Cosigner"));
        assert!(!debug.contains("SigningKey"));
    }
}
