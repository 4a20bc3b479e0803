//! One SHA-256 hash over every message of a protocol run.
//!
//! Each party feeds the messages in protocol order, each under a label and with its
//! length, so two parties that saw the same run end with the same 32 bytes. The hash goes
//! into every participant's audit log; an auditor compares them.

use sha2::{Digest, Sha256};

/// Running hash of one protocol run.
#[derive(Clone)]
pub struct Transcript {
    hasher: Sha256,
}

impl Transcript {
    /// Starts the transcript of the run `session` of protocol `protocol`.
    pub fn new(protocol: &str, session: &str) -> Self {
        let mut transcript = Self {
            hasher: Sha256::new(),
        };
        transcript.append(b"carrel-transcript-v1", protocol.as_bytes());
        transcript.append(b"session", session.as_bytes());
        transcript
    }

    /// Adds one message under `label`.
    pub fn append(&mut self, label: &[u8], message: &[u8]) {
        for part in [label, message] {
            self.hasher.update((part.len() as u64).to_be_bytes());
            self.hasher.update(part);
        }
    }

    /// The hash of everything appended so far.
    pub fn hash(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_messages_give_the_same_hash() {
        let mut a = Transcript::new("psi", "s1");
        let mut b = Transcript::new("psi", "s1");
        a.append(b"m", b"hello");
        b.append(b"m", b"hello");
        assert_eq!(a.hash(), b.hash());
    }

    #[test]
    fn message_boundaries_count() {
        let mut a = Transcript::new("psi", "s1");
        let mut b = Transcript::new("psi", "s1");
        a.append(b"m", b"ab");
        a.append(b"m", b"c");
        b.append(b"m", b"a");
        b.append(b"m", b"bc");
        assert_ne!(a.hash(), b.hash());
    }
}
