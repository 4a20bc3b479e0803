//! C2SP `tlog-proof` receipts: an offline proof that an entry is in a log whose checkpoint
//! witnesses cosigned.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional, not authenticated)
//! index <n>
//! <inclusion proof hashes, base64, one per line, from the leaf's sibling up>
//!
//! <cosigned checkpoint note, verbatim>
//! ```
//!
//! Verifying a receipt checks, in order, the checkpoint's log signature, the witness quorum
//! and the inclusion of the entry's RFC 6962 leaf hash at `index`. A party that keeps the
//! receipt can later show that the log committed to the entry, and the witnesses make sure
//! that other parties were shown the same tree.
//!
//! # Security
//!
//! The `extra` data is not covered by any signature; treat it as a hint. Cosignature
//! timestamps are returned but not judged: an application that needs fresh checkpoints
//! compares them with its clock.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::Checkpoint;
use crate::cosign::{CosignatureVerifier, CosignedCheckpoint, open_cosigned};
use crate::error::{LedgerError, Result};
use crate::merkle::{Hash, leaf_hash, verify_inclusion};
use crate::note::{Note, NoteVerifier};
use crate::policy::Policy;
use crate::syntax::{parse_decimal, split_hash_lines, write_hash_lines};

/// The first line of every receipt.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The largest number of inclusion proof lines read: the depth of a tree of 2^64 leaves.
pub const MAX_INCLUSION_PROOF_LINES: usize = 64;

/// A parsed `tlog-proof` receipt, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    extra: Option<Vec<u8>>,
    index: u64,
    proof: Vec<Hash>,
    note: String,
}

impl Receipt {
    /// Creates a receipt for the entry at `index` with its inclusion proof in the tree of
    /// the (cosigned) checkpoint `note`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidReceipt`] if the proof has more than
    /// [`MAX_INCLUSION_PROOF_LINES`] hashes or `note` is not a signed checkpoint note.
    pub fn new(index: u64, proof: Vec<Hash>, note: String) -> Result<Self> {
        if proof.len() > MAX_INCLUSION_PROOF_LINES {
            return Err(invalid(format!(
                "the inclusion proof has {} hashes, more than the {MAX_INCLUSION_PROOF_LINES} \
                 of any tree",
                proof.len()
            )));
        }
        let parsed = Note::parse(&note)
            .map_err(|error| invalid(format!("the checkpoint is not a signed note: {error}")))?;
        Checkpoint::parse_body(parsed.text())
            .map_err(|error| invalid(format!("the note is not a checkpoint: {error}")))?;
        Ok(Self {
            extra: None,
            index,
            proof,
            note,
        })
    }

    /// Attaches opaque extra data, written on the `extra` line.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidReceipt`] if `extra` is empty; leave it out instead.
    pub fn with_extra(mut self, extra: Vec<u8>) -> Result<Self> {
        if extra.is_empty() {
            return Err(invalid(
                "extra data is empty; omit it rather than writing an empty extra line".into(),
            ));
        }
        self.extra = Some(extra);
        Ok(self)
    }

    /// Parses a receipt strictly: every line must be in its canonical form.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidReceipt`] naming the malformed line.
    pub fn parse(text: &str) -> Result<Self> {
        let (header, mut rest) = next_line(text)?;
        if header != TLOG_PROOF_HEADER {
            return Err(invalid(format!(
                "first line is {header:?}, expected {TLOG_PROOF_HEADER:?}"
            )));
        }

        let (mut line, after) = next_line(rest)?;
        rest = after;
        let mut extra = None;
        if let Some(encoded) = line.strip_prefix("extra ") {
            let data = BASE64.decode(encoded).ok().filter(|d| !d.is_empty());
            extra = Some(data.ok_or_else(|| {
                invalid(format!(
                    "extra line data {encoded:?} is not non-empty canonical base64"
                ))
            })?);
            (line, rest) = next_line(rest)?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| {
                invalid(format!(
                    "line {line:?} is not \"index <n>\" with a decimal index"
                ))
            })?;

        let (proof, note) = split_hash_lines(rest, MAX_INCLUSION_PROOF_LINES).map_err(invalid)?;
        let receipt = Self::new(index, proof, note.to_owned())?;
        Ok(Self { extra, ..receipt })
    }

    /// Returns the extra data, which no signature covers.
    pub fn extra(&self) -> Option<&[u8]> {
        self.extra.as_deref()
    }

    /// Returns the index of the entry in the log.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Returns the inclusion proof, from the leaf's sibling up.
    pub fn proof(&self) -> &[Hash] {
        &self.proof
    }

    /// Returns the cosigned checkpoint note.
    pub fn checkpoint_note(&self) -> &str {
        &self.note
    }

    /// Verifies the receipt for `entry` under a trust policy and returns the checkpoint
    /// with the witnesses that cosigned it.
    ///
    /// # Errors
    ///
    /// Those of [`Policy::verify_checkpoint`], and those of [`Self::check_inclusion`].
    pub fn verify(&self, entry: &[u8], policy: &Policy) -> Result<CosignedCheckpoint> {
        let cosigned = policy.verify_checkpoint(&self.note)?;
        self.check_inclusion(entry, &cosigned.checkpoint)?;
        Ok(cosigned)
    }

    /// Verifies the receipt for `entry` with one log key and a set of witness keys, of which
    /// at least `min_cosignatures` must have cosigned.
    ///
    /// # Errors
    ///
    /// Those of [`open_cosigned`]; [`LedgerError::QuorumNotMet`] if fewer witnesses
    /// cosigned; and those of [`Self::check_inclusion`].
    pub fn verify_with_keys(
        &self,
        entry: &[u8],
        origin: &str,
        log: &NoteVerifier,
        witnesses: &[CosignatureVerifier],
        min_cosignatures: usize,
    ) -> Result<CosignedCheckpoint> {
        let cosigned = open_cosigned(&self.note, origin, log, witnesses)?;
        if cosigned.cosignatures.len() < min_cosignatures {
            return Err(LedgerError::QuorumNotMet {
                quorum: format!("{min_cosignatures} of {} witnesses", witnesses.len()),
                cosigned: cosigned.cosignatures.into_iter().map(|c| c.name).collect(),
            });
        }
        self.check_inclusion(entry, &cosigned.checkpoint)?;
        Ok(cosigned)
    }

    /// Checks that `entry`'s leaf hash is at the receipt's index in the tree of a checkpoint
    /// that the caller has already verified.
    ///
    /// # Errors
    ///
    /// - [`LedgerError::InvalidReceipt`] if the checkpoint's tree is empty, because then the
    ///   receipt was made before the entry was logged.
    /// - [`LedgerError::IndexOutOfRange`] if the index is not below the tree size.
    /// - [`LedgerError::InvalidProof`] if the proof does not lead to the root.
    pub fn check_inclusion(&self, entry: &[u8], checkpoint: &Checkpoint) -> Result<()> {
        if checkpoint.tree_size() == 0 {
            return Err(invalid(format!(
                "the checkpoint is of an empty tree (size 0), which contains no entry, so \
                 index {} cannot be proven; make the receipt from a checkpoint signed after \
                 the entry was appended",
                self.index
            )));
        }
        verify_inclusion(
            &leaf_hash(entry),
            self.index,
            checkpoint.tree_size(),
            &self.proof,
            checkpoint.root_hash(),
        )
    }
}

impl fmt::Display for Receipt {
    /// Writes the receipt in `tlog-proof` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", BASE64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        write_hash_lines(&mut out, &self.proof);
        write!(f, "{out}\n{}", self.note)
    }
}

fn next_line(text: &str) -> Result<(&str, &str)> {
    text.split_once('\n')
        .ok_or_else(|| invalid("the receipt ends before its checkpoint".into()))
}

fn invalid(reason: String) -> LedgerError {
    LedgerError::InvalidReceipt(reason)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::cosign::Cosigner;
    use crate::merkle::{EMPTY_ROOT, inclusion_proof, root};
    use crate::note::NoteSigner;

    const ORIGIN: &str = "example.com/log";

    struct Fixture {
        log: NoteSigner,
        witnesses: Vec<Cosigner>,
        entries: Vec<Vec<u8>>,
    }

    impl Fixture {
        fn new() -> Self {
            let log = NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap();
            let witnesses = (2..5u8)
                .map(|seed| {
                    let name = format!("w{seed}.example");
                    Cosigner::ed25519(&name, SigningKey::from_bytes(&[seed; 32])).unwrap()
                })
                .collect();
            let entries = (0..7u8)
                .map(|i| format!("entry {i}").into_bytes())
                .collect();
            Self {
                log,
                witnesses,
                entries,
            }
        }

        fn leaves(&self) -> Vec<Hash> {
            self.entries.iter().map(|e| leaf_hash(e)).collect()
        }

        /// Builds a receipt for `index` whose checkpoint the first `cosigners` witnesses
        /// cosigned.
        fn receipt(&self, index: u64, cosigners: usize) -> Receipt {
            let leaves = self.leaves();
            let size = leaves.len() as u64;
            let checkpoint = Checkpoint::new(ORIGIN, size, root(&leaves)).unwrap();
            let mut note = checkpoint.sign(&self.log);
            for witness in &self.witnesses[..cosigners] {
                note.push_str(&witness.cosign(&checkpoint.body(), 1000).unwrap());
            }
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            Receipt::new(index, proof, note).unwrap()
        }

        fn policy(&self, quorum: &str) -> Policy {
            let mut text = format!("log {}\n", self.log.verifier());
            for (i, witness) in self.witnesses.iter().enumerate() {
                text.push_str(&format!("witness w{i} {}\n", witness.verifier()));
            }
            text.push_str(quorum);
            text.parse().unwrap()
        }
    }

    #[test]
    fn receipt_round_trips_through_text() {
        let fixture = Fixture::new();
        let receipt = fixture
            .receipt(3, 2)
            .with_extra(b"context".to_vec())
            .unwrap();
        let text = receipt.to_string();
        let expected_start = format!(
            "c2sp.org/tlog-proof@v1\nextra {}\nindex 3\n",
            BASE64.encode(b"context")
        );
        assert!(text.starts_with(&expected_start), "{text}");
        assert!(text.ends_with(receipt.checkpoint_note()));
        assert_eq!(Receipt::parse(&text).unwrap(), receipt);

        let plain = fixture.receipt(0, 0);
        assert_eq!(Receipt::parse(&plain.to_string()).unwrap(), plain);
    }

    #[test]
    fn receipt_layout_matches_independent_build() {
        // Builds the text line by line from the format description.
        let fixture = Fixture::new();
        let receipt = fixture.receipt(5, 1);
        let mut expected = String::from("c2sp.org/tlog-proof@v1\nindex 5\n");
        for hash in inclusion_proof(&fixture.leaves(), 5, 7).unwrap() {
            expected.push_str(&BASE64.encode(hash));
            expected.push('\n');
        }
        expected.push('\n');
        expected.push_str(receipt.checkpoint_note());
        assert_eq!(receipt.to_string(), expected);
    }

    #[test]
    fn receipt_verifies_under_policy() {
        let fixture = Fixture::new();
        let policy = fixture.policy("group g 2 w0 w1 w2\nquorum g\n");
        for index in 0..7 {
            let receipt = fixture.receipt(index, 2);
            let cosigned = receipt
                .verify(&fixture.entries[index as usize], &policy)
                .unwrap();
            assert_eq!(cosigned.checkpoint.tree_size(), 7);
            assert_eq!(cosigned.cosignatures.len(), 2);
        }
    }

    #[test]
    fn receipt_for_other_entry_is_rejected() {
        let fixture = Fixture::new();
        let policy = fixture.policy("quorum none\n");
        let receipt = fixture.receipt(2, 0);
        assert!(matches!(
            receipt.verify(b"entry 3", &policy),
            Err(LedgerError::InvalidProof { .. })
        ));
    }

    #[test]
    fn receipt_below_quorum_is_rejected() {
        let fixture = Fixture::new();
        let policy = fixture.policy("group g 2 w0 w1 w2\nquorum g\n");
        let receipt = fixture.receipt(1, 1);
        assert!(matches!(
            receipt.verify(&fixture.entries[1], &policy),
            Err(LedgerError::QuorumNotMet { .. })
        ));
    }

    #[test]
    fn receipt_verifies_with_keys() {
        let fixture = Fixture::new();
        let witnesses: Vec<_> = fixture.witnesses.iter().map(Cosigner::verifier).collect();
        let receipt = fixture.receipt(4, 2);
        let log = fixture.log.verifier();
        let entry = &fixture.entries[4];
        assert!(
            receipt
                .verify_with_keys(entry, ORIGIN, &log, &witnesses, 2)
                .is_ok()
        );
        assert!(matches!(
            receipt.verify_with_keys(entry, ORIGIN, &log, &witnesses, 3),
            Err(LedgerError::QuorumNotMet { .. })
        ));
        assert!(matches!(
            receipt.verify_with_keys(entry, "example.com/other", &log, &witnesses, 0),
            Err(LedgerError::OriginMismatch { .. })
        ));
    }

    #[test]
    fn index_zero_of_empty_tree_is_caller_error() {
        let fixture = Fixture::new();
        let note = Checkpoint::new(ORIGIN, 0, EMPTY_ROOT)
            .unwrap()
            .sign(&fixture.log);
        let receipt = Receipt::new(0, vec![], note).unwrap();
        let error = receipt
            .verify(b"entry 0", &fixture.policy("quorum none\n"))
            .unwrap_err();
        assert!(matches!(error, LedgerError::InvalidReceipt(_)), "{error:?}");
        assert!(error.to_string().contains("empty tree"), "{error}");
    }

    #[test]
    fn index_beyond_tree_is_rejected() {
        let fixture = Fixture::new();
        let good = fixture.receipt(6, 0);
        let receipt = Receipt::new(7, good.proof().to_vec(), good.note.clone()).unwrap();
        assert!(matches!(
            receipt.verify(b"entry 6", &fixture.policy("quorum none\n")),
            Err(LedgerError::IndexOutOfRange { .. })
        ));
    }

    #[test]
    fn malformed_receipts_are_rejected() {
        let fixture = Fixture::new();
        let text = fixture.receipt(3, 1).to_string();
        let body = text
            .strip_prefix("c2sp.org/tlog-proof@v1\nindex 3\n")
            .unwrap();
        let cases = [
            ("", "first line"),
            ("c2sp.org/tlog-proof@v2\nindex 3\n", "first line"),
            ("c2sp.org/tlog-proof@v1\nindex 03\n", "\"index 03\""),
            ("c2sp.org/tlog-proof@v1\nindex -3\n", "\"index -3\""),
            ("c2sp.org/tlog-proof@v1\nextra !!\nindex 3\n", "\"!!\""),
            ("c2sp.org/tlog-proof@v1\nextra \nindex 3\n", "extra line"),
            ("c2sp.org/tlog-proof@v1\nindex 3\nindex 3\n", "proof line"),
        ];
        for (head, expected) in cases {
            let text = format!("{head}{body}");
            match Receipt::parse(&text) {
                Err(LedgerError::InvalidReceipt(message)) => {
                    assert!(message.contains(expected), "{head:?}: {message}");
                }
                other => panic!("{head:?}: expected InvalidReceipt, got {other:?}"),
            }
        }
        assert!(matches!(
            Receipt::parse(""),
            Err(LedgerError::InvalidReceipt(message)) if message.contains("ends before")
        ));
        let without_note = text.split("\n\n").next().unwrap().to_owned() + "\n\n";
        assert!(Receipt::parse(&without_note).is_err());
        let bad_note = "c2sp.org/tlog-proof@v1\nindex 3\n\nnot a note\n";
        assert!(matches!(
            Receipt::parse(bad_note),
            Err(LedgerError::InvalidReceipt(_))
        ));
    }

    #[test]
    fn extra_must_not_be_empty() {
        let fixture = Fixture::new();
        assert!(fixture.receipt(0, 0).with_extra(Vec::new()).is_err());
    }
}
