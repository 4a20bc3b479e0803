//! The witness side of C2SP `tlog-witness` `add-checkpoint`, without networking.
//!
//! A log sends `POST <prefix>/add-checkpoint` with the body
//!
//! ```text
//! old <size the witness last cosigned>
//! <0 to 63 consistency proof hashes, base64, one per line>
//!
//! <signed checkpoint note>
//! ```
//!
//! [`check_add_checkpoint`] decides the reply from what the witness stored for the origin:
//! a cosignature line (200), or an [`AddCheckpointRejection`] with the HTTP status of the
//! protocol. A log's first request starts from `old 0` with no proof lines.
//!
//! # Security
//!
//! A witness cosigns only checkpoints that extend, by a verified consistency proof, the last
//! checkpoint it cosigned for that origin. Two witnessed checkpoints of a log are therefore
//! consistent unless the witness's key or state is compromised. The caller must make the
//! check and the update of the stored tree head one atomic compare-and-swap on the stored
//! size, and must store the new head before replying. Otherwise two concurrent requests
//! can roll the stored state back, and the witness would then cosign an older tree.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::Checkpoint;
use crate::cosign::{Cosigner, MAX_TIMESTAMP};
use crate::error::{LedgerError, Result};
use crate::merkle::{EMPTY_ROOT, Hash, verify_consistency};
use crate::note::{Note, NoteVerifier, verify_note};
use crate::syntax::{parse_decimal, split_hash_lines, write_hash_lines};

/// The largest number of consistency proof lines a request may carry.
pub const MAX_CONSISTENCY_PROOF_LINES: usize = 63;

/// The content type of a 409 Conflict body, which contains the stored size and a newline.
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The body of an `add-checkpoint` request, parsed but not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    old_size: u64,
    proof: Vec<Hash>,
    note: String,
    checkpoint: Checkpoint,
}

impl AddCheckpointRequest {
    /// Creates a request to extend the witness's view from `old_size` to the checkpoint in
    /// `note`, with the consistency proof between the two sizes.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidWitnessRequest`] if the proof has more than
    /// [`MAX_CONSISTENCY_PROOF_LINES`] hashes or `note` is not a signed checkpoint note.
    pub fn new(old_size: u64, proof: Vec<Hash>, note: String) -> Result<Self> {
        if proof.len() > MAX_CONSISTENCY_PROOF_LINES {
            return Err(invalid_request(format!(
                "the consistency proof has {} hashes, more than the {MAX_CONSISTENCY_PROOF_LINES} \
                 allowed",
                proof.len()
            )));
        }
        let checkpoint = parse_checkpoint_note(&note)?;
        Ok(Self {
            old_size,
            proof,
            note,
            checkpoint,
        })
    }

    /// Parses a request body. A witness replies 400 Bad Request to a body that fails here.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InvalidWitnessRequest`] naming the malformed line.
    pub fn parse(body: &str) -> Result<Self> {
        let Some((old_line, rest)) = body.split_once('\n') else {
            return Err(invalid_request(
                "the body has no \"old <size>\" line".into(),
            ));
        };
        let old_size = old_line
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or_else(|| {
                invalid_request(format!(
                    "first line {old_line:?} is not \"old <size>\" with a decimal size"
                ))
            })?;
        let (proof, note) =
            split_hash_lines(rest, MAX_CONSISTENCY_PROOF_LINES).map_err(invalid_request)?;
        Self::new(old_size, proof, note.to_owned())
    }

    /// Returns the size of the checkpoint the log believes the witness last cosigned.
    pub fn old_size(&self) -> u64 {
        self.old_size
    }

    /// Returns the consistency proof from the old size to the checkpoint's size.
    pub fn proof(&self) -> &[Hash] {
        &self.proof
    }

    /// Returns the checkpoint note as sent.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Returns the checkpoint's origin, not yet verified, for looking up the log.
    pub fn origin(&self) -> &str {
        self.checkpoint.origin()
    }
}

impl fmt::Display for AddCheckpointRequest {
    /// Writes the request body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut proof = String::new();
        write_hash_lines(&mut proof, &self.proof);
        write!(f, "old {}\n{proof}\n{}", self.old_size, self.note)
    }
}

/// A tree size and root: what a witness stores per log after cosigning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    /// The tree size.
    pub size: u64,
    /// The root hash at that size.
    pub root: Hash,
}

/// A log the witness trusts, with the last tree head it cosigned for it.
#[derive(Clone, Copy, Debug)]
pub struct KnownLog<'a> {
    /// The log's keys. Several allow key rotation.
    pub verifiers: &'a [NoteVerifier],
    /// The last tree head cosigned for the log, or `None` if the witness never cosigned
    /// one.
    pub latest: Option<TreeHead>,
}

/// A checkpoint the witness cosigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// The cosignature line, ending in a newline: the body of the 200 reply.
    pub cosignature: String,
    /// The timestamp in the cosignature.
    pub timestamp: u64,
}

impl Accepted {
    /// Returns the tree head to store for the origin before replying.
    pub fn tree_head(&self) -> TreeHead {
        TreeHead {
            size: self.checkpoint.tree_size(),
            root: *self.checkpoint.root_hash(),
        }
    }
}

/// Why a witness rejects an `add-checkpoint` request; [`Self::status`] gives the HTTP
/// status of the reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddCheckpointRejection {
    /// The witness trusts no log with this origin (404).
    #[error("no trusted log has origin {origin:?}; configure the log's key on the witness")]
    UnknownOrigin {
        /// The origin line of the checkpoint.
        origin: String,
    },

    /// No trusted log key signed the checkpoint, or a trusted key's signature fails (403).
    #[error("checkpoint signature rejected: {source}")]
    Unauthenticated {
        /// The reason the note did not verify.
        #[source]
        source: Box<LedgerError>,
    },

    /// The checkpoint's size is above 2^63 - 1, which no log reaches and which a witness
    /// storing sizes as signed 64-bit integers could not keep exactly (400).
    #[error("tree size {size} is above 2^63 - 1; no log is that large")]
    SizeTooLarge {
        /// The tree size of the checkpoint.
        size: u64,
    },

    /// The old size is above the checkpoint's size (400).
    #[error(
        "old size {old_size} is larger than the checkpoint's size {new_size}; send the size \
         the witness last cosigned"
    )]
    OldSizeExceedsNew {
        /// The old size of the request.
        old_size: u64,
        /// The tree size of the checkpoint.
        new_size: u64,
    },

    /// The old size is not the size the witness last cosigned (409). The reply body is
    /// `stored_size` in decimal and a newline, of type [`TLOG_SIZE_CONTENT_TYPE`].
    #[error(
        "old size {old_size} differs from the size {stored_size} the witness last cosigned; \
         resend with a proof from size {stored_size}"
    )]
    SizeConflict {
        /// The old size of the request.
        old_size: u64,
        /// The size the witness last cosigned, 0 if none.
        stored_size: u64,
    },

    /// The old size is 0 but the request carries proof lines (422).
    #[error("a request from old size 0 must have no proof lines, but it has {lines}")]
    ProofFromEmptyTree {
        /// The number of proof lines sent.
        lines: usize,
    },

    /// The checkpoint has size 0 but its root is not the empty tree's root (422).
    #[error("checkpoint of size 0 has root {root}, which is not the empty tree's root")]
    InvalidEmptyRoot {
        /// The root of the checkpoint, in base64.
        root: String,
    },

    /// The checkpoint has the stored size but another root: the log forked (422).
    ///
    /// NOTE: some revisions of the C2SP `tlog-witness` text reply to this case with 409
    /// Conflict instead. Check the revision the logs follow.
    #[error(
        "checkpoint of size {size} has root {found}, but the witness cosigned root {stored} \
         at that size"
    )]
    RootMismatch {
        /// The common tree size.
        size: u64,
        /// The root the witness stored, in base64.
        stored: String,
        /// The root of the checkpoint, in base64.
        found: String,
    },

    /// The consistency proof from the stored tree head does not verify (422).
    #[error("consistency proof from size {old_size} to size {new_size} does not verify")]
    InconsistentProof {
        /// The stored size.
        old_size: u64,
        /// The tree size of the checkpoint.
        new_size: u64,
    },

    /// The caller passed a timestamp above 2^63 - 1, a fault of the witness (500).
    #[error("cosignature timestamp {timestamp} exceeds 2^63 - 1; check the witness's clock")]
    InvalidTimestamp {
        /// The timestamp passed in.
        timestamp: u64,
    },
}

impl AddCheckpointRejection {
    /// Returns the HTTP status code of the reply.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownOrigin { .. } => 404,
            Self::Unauthenticated { .. } => 403,
            Self::OldSizeExceedsNew { .. } | Self::SizeTooLarge { .. } => 400,
            Self::SizeConflict { .. } => 409,
            Self::ProofFromEmptyTree { .. }
            | Self::InvalidEmptyRoot { .. }
            | Self::RootMismatch { .. }
            | Self::InconsistentProof { .. } => 422,
            Self::InvalidTimestamp { .. } => 500,
        }
    }

    /// Returns the body of a 409 reply, the stored size and a newline, to be sent with
    /// content type [`TLOG_SIZE_CONTENT_TYPE`]. Other rejections return `None`.
    pub fn size_body(&self) -> Option<String> {
        match self {
            Self::SizeConflict { stored_size, .. } => Some(format!("{stored_size}\n")),
            _ => None,
        }
    }
}

/// Checks an `add-checkpoint` request and, if it passes, cosigns the checkpoint at
/// `timestamp` (POSIX seconds).
///
/// `log` is what the witness holds for [`AddCheckpointRequest::origin`], or `None` if it
/// trusts no log with that origin. The checks run in the order of the protocol: origin,
/// signature, old size against the new size, old size against the stored size, then the
/// proof and roots. On success the caller stores [`Accepted::tree_head`] (see the module
/// documentation) and replies with [`Accepted::cosignature`].
///
/// # Errors
///
/// An [`AddCheckpointRejection`] whose [`status`](AddCheckpointRejection::status) is the
/// reply's HTTP status.
pub fn check_add_checkpoint(
    request: &AddCheckpointRequest,
    log: Option<&KnownLog<'_>>,
    cosigner: &Cosigner,
    timestamp: u64,
) -> Result<Accepted, AddCheckpointRejection> {
    let checkpoint = &request.checkpoint;
    let Some(log) = log else {
        return Err(AddCheckpointRejection::UnknownOrigin {
            origin: checkpoint.origin().to_owned(),
        });
    };
    let body = verify_note(&request.note, log.verifiers).map_err(|error| {
        AddCheckpointRejection::Unauthenticated {
            source: Box::new(error),
        }
    })?;

    let (old_size, new_size) = (request.old_size, checkpoint.tree_size());
    if new_size > i64::MAX as u64 {
        return Err(AddCheckpointRejection::SizeTooLarge { size: new_size });
    }
    if old_size > new_size {
        return Err(AddCheckpointRejection::OldSizeExceedsNew { old_size, new_size });
    }
    let stored = log.latest.unwrap_or(TreeHead {
        size: 0,
        root: EMPTY_ROOT,
    });
    if old_size != stored.size {
        return Err(AddCheckpointRejection::SizeConflict {
            old_size,
            stored_size: stored.size,
        });
    }
    if old_size == 0 && !request.proof.is_empty() {
        return Err(AddCheckpointRejection::ProofFromEmptyTree {
            lines: request.proof.len(),
        });
    }
    if new_size == 0 && *checkpoint.root_hash() != EMPTY_ROOT {
        return Err(AddCheckpointRejection::InvalidEmptyRoot {
            root: BASE64.encode(checkpoint.root_hash()),
        });
    }
    if new_size == stored.size && *checkpoint.root_hash() != stored.root {
        return Err(AddCheckpointRejection::RootMismatch {
            size: new_size,
            stored: BASE64.encode(stored.root),
            found: BASE64.encode(checkpoint.root_hash()),
        });
    }
    verify_consistency(
        stored.size,
        new_size,
        &stored.root,
        checkpoint.root_hash(),
        &request.proof,
    )
    .map_err(|_| AddCheckpointRejection::InconsistentProof { old_size, new_size })?;

    if timestamp > MAX_TIMESTAMP {
        return Err(AddCheckpointRejection::InvalidTimestamp { timestamp });
    }
    // `AddCheckpointRequest::new` parsed the body as a checkpoint, `Note::parse` rejected
    // control characters and the timestamp was checked above, so cosigning cannot fail.
    let cosignature = cosigner
        .cosign(body, timestamp)
        .expect("a verified checkpoint body and a valid timestamp");
    Ok(Accepted {
        checkpoint: checkpoint.clone(),
        cosignature,
        timestamp,
    })
}

/// A sign that a log showed two views that cannot both be true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehavior {
    /// A checkpoint of the stored size with another root, or a larger checkpoint whose
    /// consistency proof from the stored tree head fails.
    Fork,
    /// A checkpoint smaller than the stored tree head.
    Rollback,
}

/// Compares a checkpoint whose log signature verified with the tree head stored for the
/// log, so that the caller can raise an alarm and keep the note as evidence.
///
/// `proof` is a consistency proof from `stored.size` to the checkpoint's size; it is read
/// only when the checkpoint is larger.
///
/// NOTE: a failing proof shows that this proof is wrong, not that the log forked, because
/// the party that relayed the checkpoint could have sent a bad proof for a good one. Before
/// calling a log forked on that ground, fetch the proof from the log itself.
pub fn detect_misbehavior(
    stored: &TreeHead,
    checkpoint: &Checkpoint,
    proof: &[Hash],
) -> Option<Misbehavior> {
    let size = checkpoint.tree_size();
    if size < stored.size {
        return Some(Misbehavior::Rollback);
    }
    if size == stored.size {
        return (*checkpoint.root_hash() != stored.root).then_some(Misbehavior::Fork);
    }
    verify_consistency(
        stored.size,
        size,
        &stored.root,
        checkpoint.root_hash(),
        proof,
    )
    .is_err()
    .then_some(Misbehavior::Fork)
}

fn parse_checkpoint_note(note: &str) -> Result<Checkpoint> {
    let parsed = Note::parse(note).map_err(|error| {
        invalid_request(format!("the checkpoint is not a signed note: {error}"))
    })?;
    Checkpoint::parse_body(parsed.text())
        .map_err(|error| invalid_request(format!("the note is not a checkpoint: {error}")))
}

fn invalid_request(reason: String) -> LedgerError {
    LedgerError::InvalidWitnessRequest(reason)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::cosign::CosignatureVerifier;
    use crate::merkle::{consistency_proof, leaf_hash, root};
    use crate::note::NoteSigner;

    const ORIGIN: &str = "example.com/log";

    struct Fixture {
        log: NoteSigner,
        verifiers: Vec<NoteVerifier>,
        cosigner: Cosigner,
        leaves: Vec<Hash>,
    }

    impl Fixture {
        fn new() -> Self {
            let log = NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap();
            let verifiers = vec![log.verifier()];
            let cosigner =
                Cosigner::ed25519("witness.example", SigningKey::from_bytes(&[2; 32])).unwrap();
            let leaves = (0..10u8).map(|i| leaf_hash(&[i])).collect();
            Self {
                log,
                verifiers,
                cosigner,
                leaves,
            }
        }

        fn head(&self, size: u64) -> TreeHead {
            TreeHead {
                size,
                root: root(&self.leaves[..size as usize]),
            }
        }

        fn note(&self, size: u64) -> String {
            Checkpoint::new(ORIGIN, size, self.head(size).root)
                .unwrap()
                .sign(&self.log)
        }

        fn request(&self, old: u64, new: u64) -> AddCheckpointRequest {
            let proof = consistency_proof(&self.leaves, old, new).unwrap();
            AddCheckpointRequest::new(old, proof, self.note(new)).unwrap()
        }

        fn check(
            &self,
            request: &AddCheckpointRequest,
            latest: Option<TreeHead>,
        ) -> Result<Accepted, AddCheckpointRejection> {
            let log = KnownLog {
                verifiers: &self.verifiers,
                latest,
            };
            check_add_checkpoint(request, Some(&log), &self.cosigner, 1_700_000_000)
        }
    }

    #[test]
    fn request_body_round_trips() {
        let fixture = Fixture::new();
        let request = fixture.request(3, 7);
        let body = request.to_string();
        assert!(body.starts_with("old 3\n"));
        assert_eq!(AddCheckpointRequest::parse(&body).unwrap(), request);
    }

    #[test]
    fn malformed_request_bodies_are_rejected() {
        let fixture = Fixture::new();
        let note = fixture.note(4);
        let hash = BASE64.encode([0; 32]);
        let too_many = format!("old 1\n{}\n{note}", format!("{hash}\n").repeat(64));
        for body in [
            String::new(),
            format!("old 01\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("new 1\n\n{note}"),
            format!("old 1\n{note}"),
            format!("old 1\nAAAA\n\n{note}"),
            "old 1\n\nnot a note\n".to_owned(),
            too_many,
        ] {
            let result = AddCheckpointRequest::parse(&body);
            assert!(
                matches!(result, Err(LedgerError::InvalidWitnessRequest(_))),
                "{body:?}: {result:?}"
            );
        }
        let sixty_three = format!("old 1\n{}\n{note}", format!("{hash}\n").repeat(63));
        assert!(AddCheckpointRequest::parse(&sixty_three).is_ok());
    }

    #[test]
    fn first_checkpoint_is_cosigned_from_size_zero() {
        let fixture = Fixture::new();
        let request =
            AddCheckpointRequest::parse(&format!("old 0\n\n{}", fixture.note(5))).unwrap();
        let accepted = fixture.check(&request, None).unwrap();
        assert_eq!(accepted.tree_head(), fixture.head(5));
        let body = accepted.checkpoint.body();
        let verifier: CosignatureVerifier = fixture.cosigner.verifier();
        assert_eq!(
            verifier.verify_line(&body, &accepted.cosignature).unwrap(),
            1_700_000_000
        );
    }

    #[test]
    fn size_above_signed_range_is_400() {
        let fixture = Fixture::new();
        let huge = Checkpoint::new(ORIGIN, u64::MAX, [7; 32])
            .unwrap()
            .sign(&fixture.log);
        let request = AddCheckpointRequest::parse(&format!("old 0\n\n{huge}")).unwrap();
        let rejection = fixture.check(&request, None).unwrap_err();
        assert!(matches!(
            rejection,
            AddCheckpointRejection::SizeTooLarge { .. }
        ));
        assert_eq!(rejection.status(), 400);
    }

    #[test]
    fn consistent_extension_is_cosigned() {
        let fixture = Fixture::new();
        let accepted = fixture
            .check(&fixture.request(3, 8), Some(fixture.head(3)))
            .unwrap();
        assert_eq!(accepted.tree_head(), fixture.head(8));
        // The same checkpoint again is cosigned again.
        assert!(
            fixture
                .check(&fixture.request(8, 8), Some(fixture.head(8)))
                .is_ok()
        );
    }

    #[test]
    fn unknown_origin_is_404() {
        let fixture = Fixture::new();
        let request = fixture.request(0, 3);
        let rejection = check_add_checkpoint(&request, None, &fixture.cosigner, 1).unwrap_err();
        assert_eq!(rejection.status(), 404);
    }

    #[test]
    fn unsigned_or_badly_signed_checkpoint_is_403() {
        let fixture = Fixture::new();
        let stranger = NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[9; 32])).unwrap();
        let note = Checkpoint::new(ORIGIN, 3, fixture.head(3).root)
            .unwrap()
            .sign(&stranger);
        let request = AddCheckpointRequest::new(0, vec![], note).unwrap();
        assert_eq!(fixture.check(&request, None).unwrap_err().status(), 403);

        // A failing line from the trusted key rejects the note even next to a valid one.
        let good = fixture.note(3);
        let other = fixture.note(4);
        let bad_line = other.rsplit_once("\n\n").unwrap().1;
        let request = AddCheckpointRequest::new(0, vec![], format!("{good}{bad_line}")).unwrap();
        let rejection = fixture.check(&request, None).unwrap_err();
        assert_eq!(rejection.status(), 403);
        assert!(matches!(
            rejection,
            AddCheckpointRejection::Unauthenticated { ref source }
                if matches!(**source, LedgerError::BadSignature { .. })
        ));
    }

    #[test]
    fn old_size_above_new_is_400() {
        let fixture = Fixture::new();
        let request = AddCheckpointRequest::new(6, vec![], fixture.note(4)).unwrap();
        let rejection = fixture.check(&request, Some(fixture.head(6))).unwrap_err();
        assert_eq!(rejection.status(), 400);
    }

    #[test]
    fn old_size_not_stored_size_is_409() {
        let fixture = Fixture::new();
        let rejection = fixture
            .check(&fixture.request(3, 8), Some(fixture.head(5)))
            .unwrap_err();
        assert_eq!(rejection.status(), 409);
        assert_eq!(rejection.size_body().as_deref(), Some("5\n"));

        let rejection = fixture.check(&fixture.request(3, 8), None).unwrap_err();
        assert_eq!(rejection.size_body().as_deref(), Some("0\n"));
    }

    #[test]
    fn bad_consistency_proof_is_422() {
        let fixture = Fixture::new();
        let mut proof = consistency_proof(&fixture.leaves, 3, 8).unwrap();
        proof[0][0] ^= 1;
        let request = AddCheckpointRequest::new(3, proof, fixture.note(8)).unwrap();
        let rejection = fixture.check(&request, Some(fixture.head(3))).unwrap_err();
        assert_eq!(rejection.status(), 422);
        assert!(matches!(
            rejection,
            AddCheckpointRejection::InconsistentProof { .. }
        ));
    }

    #[test]
    fn proof_from_size_zero_is_422() {
        let fixture = Fixture::new();
        let request = AddCheckpointRequest::new(0, vec![[0; 32]], fixture.note(3)).unwrap();
        let rejection = fixture.check(&request, None).unwrap_err();
        assert_eq!(rejection.status(), 422);
        assert!(matches!(
            rejection,
            AddCheckpointRejection::ProofFromEmptyTree { lines: 1 }
        ));
    }

    #[test]
    fn same_size_other_root_is_422() {
        let fixture = Fixture::new();
        let stored = TreeHead {
            size: 4,
            root: [7; 32],
        };
        let rejection = fixture
            .check(&fixture.request(4, 4), Some(stored))
            .unwrap_err();
        assert_eq!(rejection.status(), 422);
        assert!(matches!(
            rejection,
            AddCheckpointRejection::RootMismatch { .. }
        ));
    }

    #[test]
    fn empty_checkpoint_with_wrong_root_is_422() {
        let fixture = Fixture::new();
        let note = Checkpoint::new(ORIGIN, 0, [3; 32])
            .unwrap()
            .sign(&fixture.log);
        let request = AddCheckpointRequest::new(0, vec![], note).unwrap();
        let rejection = fixture.check(&request, None).unwrap_err();
        assert_eq!(rejection.status(), 422);
        assert!(matches!(
            rejection,
            AddCheckpointRejection::InvalidEmptyRoot { .. }
        ));

        let empty = Checkpoint::new(ORIGIN, 0, EMPTY_ROOT)
            .unwrap()
            .sign(&fixture.log);
        let request = AddCheckpointRequest::new(0, vec![], empty).unwrap();
        assert!(fixture.check(&request, None).is_ok());
    }

    #[test]
    fn timestamp_above_max_is_500() {
        let fixture = Fixture::new();
        let log = KnownLog {
            verifiers: &fixture.verifiers,
            latest: None,
        };
        let request = fixture.request(0, 2);
        let rejection =
            check_add_checkpoint(&request, Some(&log), &fixture.cosigner, MAX_TIMESTAMP + 1)
                .unwrap_err();
        assert_eq!(rejection.status(), 500);
    }

    #[test]
    fn rejection_converts_to_ledger_error() {
        let error: LedgerError =
            AddCheckpointRejection::UnknownOrigin { origin: "x".into() }.into();
        assert!(error.to_string().contains("\"x\""));
    }

    #[test]
    fn misbehavior_tells_fork_from_rollback() {
        let fixture = Fixture::new();
        let stored = fixture.head(5);
        let checkpoint = |size: u64, root: Hash| Checkpoint::new(ORIGIN, size, root).unwrap();

        let smaller = checkpoint(3, fixture.head(3).root);
        assert_eq!(
            detect_misbehavior(&stored, &smaller, &[]),
            Some(Misbehavior::Rollback)
        );

        let same_other_root = checkpoint(5, [1; 32]);
        assert_eq!(
            detect_misbehavior(&stored, &same_other_root, &[]),
            Some(Misbehavior::Fork)
        );

        let larger = checkpoint(9, fixture.head(9).root);
        let proof = consistency_proof(&fixture.leaves, 5, 9).unwrap();
        assert_eq!(detect_misbehavior(&stored, &larger, &proof), None);
        let forked = checkpoint(9, [2; 32]);
        assert_eq!(
            detect_misbehavior(&stored, &forked, &proof),
            Some(Misbehavior::Fork)
        );

        let same = checkpoint(5, stored.root);
        assert_eq!(detect_misbehavior(&stored, &same, &[]), None);
    }
}
