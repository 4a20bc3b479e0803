//! C2SP tlog checkpoints: a signed note whose text names a log, a tree size and a root.
//!
//! Guarantee: [`open_checkpoint`] returns a checkpoint only if the log's key signed it, no
//! other trusted key's signature on it fails, and it names the expected log. Whether two
//! checkpoints of one log agree is then a question for a consistency proof
//! ([`crate::merkle::verify_consistency`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::error::{LedgerError, Result};
use crate::merkle::Hash;
use crate::note::{NoteSigner, NoteVerifier, verify_note};

/// A log's statement of its tree size and root hash.
///
/// The body is `origin\nsize\nbase64(root)\n`. Optional extension lines, which C2SP allows
/// but discourages, are accepted when opening a checkpoint and then dropped; this type
/// never writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    tree_size: u64,
    root_hash: Hash,
}

impl Checkpoint {
    /// Creates a checkpoint for the log `origin`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidNote`] if `origin` is empty or contains a control
    /// character, newline included.
    pub fn new(origin: &str, tree_size: u64, root_hash: Hash) -> Result<Self> {
        if origin.is_empty() {
            return Err(invalid("origin line is empty"));
        }
        if origin.chars().any(char::is_control) {
            return Err(invalid("origin holds a control character"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            tree_size,
            root_hash,
        })
    }

    /// Returns the identity of the log, conventionally a schema-less URL.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Returns the number of leaves in the tree.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// Returns the RFC 6962 root of the tree.
    pub fn root_hash(&self) -> &Hash {
        &self.root_hash
    }

    /// Formats the note text that gets signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root_hash)
        )
    }

    /// Signs the checkpoint and returns the full note: the body, a blank line and the
    /// signer's signature line.
    pub fn sign(&self, signer: &NoteSigner) -> String {
        // `new` and `parse_body` keep the origin free of control characters, so the body is
        // valid note text.
        signer
            .sign(&self.body())
            .expect("a checkpoint body is valid note text")
    }

    /// Parses a checkpoint body. This checks the format only; nothing is verified.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidNote`] if a line is missing or malformed: the size must be
    /// decimal without leading zeros and the root canonical base64 of 32 bytes.
    pub fn parse_body(text: &str) -> Result<Self> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| invalid("body does not end in a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(invalid("checkpoint needs origin, size and root lines"));
        };
        if lines.any(str::is_empty) {
            return Err(invalid("checkpoint extension line is empty"));
        }
        Self::new(origin, parse_size(size)?, parse_root(root)?)
    }
}

/// Verifies a checkpoint note from the log `expected_origin` with the log's key.
///
/// Signature lines from other keys, such as witness cosignatures, are ignored.
///
/// # Errors
///
/// Those of [`verify_note`] and [`Checkpoint::parse_body`], and
/// [`LedgerError::OriginMismatch`] if the checkpoint is for another log.
pub fn open_checkpoint(
    note: &str,
    expected_origin: &str,
    log_verifier: &NoteVerifier,
) -> Result<Checkpoint> {
    let text = verify_note(note, std::slice::from_ref(log_verifier))?;
    let checkpoint = Checkpoint::parse_body(text)?;
    if checkpoint.origin != expected_origin {
        return Err(LedgerError::OriginMismatch {
            expected: expected_origin.to_owned(),
            found: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

/// Parses a tree size: ASCII digits, no sign, no leading zero unless it is `0`.
fn parse_size(line: &str) -> Result<u64> {
    let digits_only = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (line.len() > 1 && line.starts_with('0')) {
        return Err(invalid(
            "tree size is not a decimal number without leading zeros",
        ));
    }
    line.parse()
        .map_err(|_| invalid("tree size does not fit in 64 bits"))
}

fn parse_root(line: &str) -> Result<Hash> {
    let bytes = BASE64
        .decode(line)
        .map_err(|_| invalid("root hash is not canonical base64"))?;
    bytes
        .try_into()
        .map_err(|_| invalid("root hash is not 32 bytes"))
}

fn invalid(reason: &str) -> LedgerError {
    LedgerError::InvalidNote(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::EMPTY_ROOT;

    #[test]
    fn body_round_trips() {
        let checkpoint = Checkpoint::new("example.com/log", 7, [9; 32]).unwrap();
        assert_eq!(
            Checkpoint::parse_body(&checkpoint.body()).unwrap(),
            checkpoint
        );
    }

    #[test]
    fn empty_tree_body_is_canonical() {
        let body = Checkpoint::new("log", 0, EMPTY_ROOT).unwrap().body();
        assert_eq!(
            body,
            "log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
    }

    #[test]
    fn extension_lines_are_accepted_and_dropped() {
        let body = Checkpoint::new("log", 3, [1; 32]).unwrap().body();
        let parsed = Checkpoint::parse_body(&format!("{body}extension\n")).unwrap();
        assert_eq!(parsed.tree_size(), 3);
        assert!(Checkpoint::parse_body(&format!("{body}\n")).is_err());
    }

    #[test]
    fn malformed_sizes_are_rejected() {
        for size in [
            "",
            "01",
            "00",
            "+1",
            "-1",
            " 1",
            "1 ",
            "0x1",
            "18446744073709551616",
        ] {
            assert!(parse_size(size).is_err(), "{size:?}");
        }
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
    }

    #[test]
    fn malformed_roots_are_rejected() {
        let short = BASE64.encode([0; 31]);
        let unpadded = BASE64.encode([0; 32]).trim_end_matches('=').to_owned();
        for root in [short.as_str(), unpadded.as_str(), "", "not base64"] {
            assert!(parse_root(root).is_err(), "{root:?}");
        }
    }

    #[test]
    fn origins_with_control_characters_are_rejected() {
        assert!(Checkpoint::new("", 0, EMPTY_ROOT).is_err());
        assert!(Checkpoint::new("a\nb", 0, EMPTY_ROOT).is_err());
        assert!(Checkpoint::new("a\rb", 0, EMPTY_ROOT).is_err());
    }
}
