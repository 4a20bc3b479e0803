//! Signed notes and checkpoints under the C2SP verifier rules.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use carrel_ledger::note::{MAX_SIGNATURES, Note, verify_note};
use carrel_ledger::{Checkpoint, LedgerError, NoteSigner, NoteVerifier, open_checkpoint};
use ed25519_dalek::SigningKey;

const ORIGIN: &str = "example.com/log";

fn signer(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::ed25519(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
}

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint::new(ORIGIN, size, [size as u8; 32]).unwrap()
}

/// Signs `text` and returns only the signature line, newline included.
fn line(signer: &NoteSigner, text: &str) -> String {
    let note = signer.sign(text).unwrap();
    note.strip_prefix(text)
        .unwrap()
        .strip_prefix('\n')
        .unwrap()
        .to_owned()
}

/// Joins a note from its text and signature lines.
fn note(text: &str, lines: &[String]) -> String {
    format!("{text}\n{}", lines.concat())
}

/// `line` with one bit of its signature flipped.
fn corrupt(line: &str) -> String {
    let (head, payload) = line.trim_end().rsplit_once(' ').unwrap();
    let mut bytes = BASE64.decode(payload).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    format!("{head} {}\n", BASE64.encode(bytes))
}

#[test]
fn note_matches_an_independently_computed_vector() {
    // Computed for this test with Python's `cryptography` and `hashlib`: the Ed25519 key
    // with seed [7; 32] signing a checkpoint of the 8-leaf RFC 6962 test tree.
    let vkey = "example.com/log+702f3c70+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";
    let expected = "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\
        \u{2014} example.com/log cC88cKVY3G4xWFuDF/jreM1GINjrj6hgFtenw+FkyRG18SMYLKJmjKGwTaiy\
        1oJEcMTYxJwrIxK0dpvvGKCN0tlViww=\n";
    let signer = signer(ORIGIN, 7);
    assert_eq!(signer.verifier().to_string(), vkey);

    let root = BASE64
        .decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")
        .unwrap();
    let checkpoint = Checkpoint::new(ORIGIN, 8, root.try_into().unwrap()).unwrap();
    assert_eq!(checkpoint.sign(&signer), expected);
    let verifier: NoteVerifier = vkey.parse().unwrap();
    assert_eq!(
        open_checkpoint(expected, ORIGIN, &verifier).unwrap(),
        checkpoint
    );
}

#[test]
fn signed_checkpoint_opens() {
    let signer = signer(ORIGIN, 1);
    let opened = open_checkpoint(&checkpoint(5).sign(&signer), ORIGIN, &signer.verifier());
    assert_eq!(opened.unwrap(), checkpoint(5));
}

#[test]
fn validly_signed_checkpoint_of_another_origin_is_rejected() {
    let (log, witness) = (signer("other.example/log", 1), signer("witness.example", 2));
    let body = Checkpoint::new("other.example/log", 3, [3; 32])
        .unwrap()
        .body();
    let note = note(&body, &[line(&log, &body), line(&witness, &body)]);
    let err = open_checkpoint(&note, ORIGIN, &log.verifier()).unwrap_err();
    assert!(matches!(err, LedgerError::OriginMismatch { .. }), "{err}");
}

#[test]
fn edited_origin_line_is_rejected() {
    let (log, other) = (signer(ORIGIN, 1), signer("other.example", 2));
    let signed_body = checkpoint(3).body();
    let edited = signed_body.replacen(ORIGIN, "evil.example/log", 1);
    // The log's line covers the original body; the other key signed the edited one.
    let note = note(&edited, &[line(&log, &signed_body), line(&other, &edited)]);
    let err = open_checkpoint(&note, ORIGIN, &log.verifier()).unwrap_err();
    assert!(matches!(err, LedgerError::BadSignature { ref key_name } if key_name == ORIGIN));
}

#[test]
fn corrupted_log_signature_is_rejected() {
    let (log, other) = (signer(ORIGIN, 1), signer("witness.example", 2));
    let body = checkpoint(4).body();
    let bad = corrupt(&line(&log, &body));
    let good = line(&other, &body);

    for lines in [[bad.clone(), good.clone()], [good.clone(), bad.clone()]] {
        // With the other key unknown, as in `open_checkpoint`.
        let note = note(&body, &lines);
        let err = open_checkpoint(&note, ORIGIN, &log.verifier()).unwrap_err();
        assert!(matches!(err, LedgerError::BadSignature { .. }), "{err}");
        // With the other key known, as for a verifier of log and witness keys.
        let err = verify_note(&note, &[log.verifier(), other.verifier()]).unwrap_err();
        assert!(matches!(err, LedgerError::BadSignature { ref key_name } if key_name == ORIGIN));
    }
}

#[test]
fn valid_note_with_extra_unknown_lines_is_accepted() {
    let (log, other) = (signer(ORIGIN, 1), signer("witness.example", 2));
    let body = checkpoint(6).body();
    // A line shaped like a timestamped cosignature (type 0x04): key ID, time, signature.
    let cosignature = format!(
        "\u{2014} witness2.example {}\n",
        BASE64.encode([9u8; 4 + 8 + 64])
    );
    let lines = [line(&other, &body), line(&log, &body), cosignature];
    let opened = open_checkpoint(&note(&body, &lines), ORIGIN, &log.verifier()).unwrap();
    assert_eq!(opened, checkpoint(6));
}

#[test]
fn note_without_a_trusted_signature_is_rejected() {
    let (log, other) = (signer(ORIGIN, 1), signer("witness.example", 2));
    let body = checkpoint(2).body();
    let err = open_checkpoint(
        &note(&body, &[line(&other, &body)]),
        ORIGIN,
        &log.verifier(),
    );
    assert!(matches!(err, Err(LedgerError::UnknownKey)));

    // The right key ID under another name is another key.
    let renamed = line(&log, &body).replacen(ORIGIN, "example.com/log2", 1);
    let err = open_checkpoint(&note(&body, &[renamed]), ORIGIN, &log.verifier());
    assert!(matches!(err, Err(LedgerError::UnknownKey)));
}

#[test]
fn too_many_signature_lines_are_rejected() {
    let (log, other) = (signer(ORIGIN, 1), signer("witness.example", 2));
    let body = checkpoint(7).body();
    let mut lines = vec![line(&log, &body)];
    lines.extend(std::iter::repeat_n(line(&other, &body), MAX_SIGNATURES - 1));
    assert!(open_checkpoint(&note(&body, &lines), ORIGIN, &log.verifier()).is_ok());

    lines.push(line(&other, &body));
    let err = open_checkpoint(&note(&body, &lines), ORIGIN, &log.verifier()).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::TooManySignatures {
            limit: MAX_SIGNATURES
        }
    ));
}

#[test]
fn signed_but_malformed_bodies_are_rejected() {
    let log = signer(ORIGIN, 1);
    let root = BASE64.encode([1u8; 32]);
    let bodies = [
        format!("{ORIGIN}\n01\n{root}\n"),
        format!("{ORIGIN}\n+1\n{root}\n"),
        format!("{ORIGIN}\n1\n{}\n", BASE64.encode([1u8; 31])),
        format!("{ORIGIN}\n1\n{}\n", root.trim_end_matches('=')),
        format!("{ORIGIN}\n1\n"),
        format!("\n1\n{root}\n"),
        format!("{ORIGIN}\n1\n{root}\n\nextension after an empty line\n"),
    ];
    for body in bodies {
        let err = open_checkpoint(&log.sign(&body).unwrap(), ORIGIN, &log.verifier()).unwrap_err();
        assert!(
            matches!(err, LedgerError::InvalidNote(_)),
            "{body:?}: {err}"
        );
    }
}

#[test]
fn malformed_notes_are_rejected() {
    let log = signer(ORIGIN, 1);
    let body = checkpoint(1).body();
    let good = line(&log, &body);
    let (name_and_space, payload) = good.split_at(good.rfind(' ').unwrap() + 1);
    let notes = [
        note(&body, std::slice::from_ref(&good))
            .trim_end()
            .to_owned(),
        format!("{body}{good}"),
        format!("{body}\n"),
        format!("{body}\n\n"),
        note(&body, &[good.replace('\u{2014}', "-")]),
        note(&body, &[good.replacen(' ', "  ", 1)]),
        note(&body, &[format!("{name_and_space}!{payload}")]),
        note(
            &body,
            &[format!("{name_and_space}{}\n", BASE64.encode([1u8; 4]))],
        ),
        note(&body, &[format!("{name_and_space}\n")]),
        note(&body.replace('\n', "\r\n"), std::slice::from_ref(&good)),
        note(&body, &[good.replace('\n', "\r\n")]),
    ];
    for note in notes {
        let err = open_checkpoint(&note, ORIGIN, &log.verifier()).unwrap_err();
        assert!(
            matches!(err, LedgerError::InvalidNote(_)),
            "{note:?}: {err}"
        );
    }
}

#[test]
fn last_blank_line_separates_text_from_signatures() {
    let log = signer("notes.example", 1);
    let text = "first\n\nsecond after an empty line\n";
    let signed = log.sign(text).unwrap();
    assert_eq!(Note::parse(&signed).unwrap().text(), text);
    assert_eq!(verify_note(&signed, &[log.verifier()]).unwrap(), text);
}

#[test]
fn empty_tree_checkpoint_opens() {
    let log = signer(ORIGIN, 1);
    let empty = Checkpoint::new(ORIGIN, 0, carrel_ledger::merkle::EMPTY_ROOT).unwrap();
    assert_eq!(
        open_checkpoint(&empty.sign(&log), ORIGIN, &log.verifier()).unwrap(),
        empty
    );
}
