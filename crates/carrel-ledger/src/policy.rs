//! C2SP `tlog-policy` files: which logs and witnesses are trusted, and which witnesses must
//! cosign a checkpoint before a client believes it.
//!
//! ```text
//! log example.com/log+4a1f2b3c+AR...= https://example.com/log/
//! witness w1 w1.example+0badf00d+BA...=
//! witness w2 w2.example+12345678+BA...=
//! group both all w1 w2
//! quorum both
//! ```
//!
//! A checkpoint passes [`Policy::verify_checkpoint`] if a listed log whose key name is the
//! checkpoint's origin signed it and the witnesses with valid cosignatures meet the quorum.
//! A group is met when at least k of its members (witnesses or earlier groups) are met.
//!
//! # Security
//!
//! Witness quorums are what stop a log from showing different checkpoints to different
//! clients: a split view needs a quorum of witnesses to cosign two inconsistent trees.
//! Parsing enforces the rules that make a quorum meaningful. A group may name only earlier
//! definitions, so groups cannot be circular. A witness or group is a member of at most
//! one group in the whole file, and no two witnesses (or logs) share a public key, so one
//! key cannot count twice.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::checkpoint::Checkpoint;
use crate::cosign::{
    CosignatureVerifier, CosignedCheckpoint, WitnessCosignature, check_empty_root,
    verify_cosignatures,
};
use crate::error::{LedgerError, Result};
use crate::note::{Note, NoteVerifier, verify_note};
use crate::syntax::parse_decimal;

/// The predefined quorum name that requires no cosignatures.
const QUORUM_NONE: &str = "none";

/// A trusted log: its key, whose name must equal the log's origin, and an optional URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyLog {
    /// The log's signature key (type `0x01`).
    pub verifier: NoteVerifier,
    /// The log's URL, whose meaning is up to the application.
    pub url: Option<String>,
}

/// A trusted witness: its name within the policy, its cosignature key and an optional URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// The name that groups and the quorum use. It has no meaning outside the policy.
    pub name: String,
    /// The witness's cosignature key (type `0x04`).
    pub verifier: CosignatureVerifier,
    /// The witness's submission prefix, if the policy gives one.
    pub url: Option<String>,
}

/// How many members of a group must be met for the group to be met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// Every member (`all`).
    All,
    /// At least one member (`any`).
    Any,
    /// At least this many members, between 1 and the number of members.
    AtLeast(usize),
}

impl Threshold {
    /// Returns the number of members required out of `members`.
    fn required(self, members: usize) -> usize {
        match self {
            Self::All => members,
            Self::Any => 1,
            Self::AtLeast(k) => k,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Any => f.write_str("any"),
            Self::AtLeast(k) => write!(f, "{k}"),
        }
    }
}

/// A named group of witnesses and earlier groups with a threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessGroup {
    /// The group's name.
    pub name: String,
    /// How many members must be met.
    pub threshold: Threshold,
    /// The names of the members, in the order written.
    pub members: Vec<String>,
    /// The members resolved to witnesses and groups defined earlier.
    resolved: Vec<Member>,
}

/// A resolved name: the index of a witness or of a group in the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

/// A parsed `tlog-policy` file. Create it with [`str::parse`]; `Display` writes it back in
/// canonical form: logs, witnesses, groups in their order, then the quorum, without
/// comments or blank lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<WitnessGroup>,
    /// The quorum name as written, `none` included.
    quorum: String,
    /// The quorum resolved, or `None` for `quorum none`.
    quorum_member: Option<Member>,
}

impl Policy {
    /// Returns the trusted logs.
    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    /// Returns the trusted witnesses.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Returns the witness groups in the order defined.
    pub fn groups(&self) -> &[WitnessGroup] {
        &self.groups
    }

    /// Returns the name of the quorum rule: a witness, a group or `none`.
    pub fn quorum(&self) -> &str {
        &self.quorum
    }

    /// Returns whether the witnesses named in `cosigned` (policy names) meet the quorum.
    /// Names the policy does not define count for nothing.
    pub fn is_quorum_met<'a>(&self, cosigned: impl IntoIterator<Item = &'a str>) -> bool {
        let mut met = vec![false; self.witnesses.len()];
        for name in cosigned {
            if let Some(index) = self.witnesses.iter().position(|w| w.name == name) {
                met[index] = true;
            }
        }
        self.evaluate(&met)
    }

    /// Verifies a checkpoint note against the policy and returns the checkpoint with the
    /// witnesses whose cosignatures verified, named as in the policy.
    ///
    /// The note is accepted if a listed log whose key name equals the checkpoint's origin
    /// signed it, every line from a trusted key verifies, a size-0 checkpoint has the
    /// empty tree's root, and the cosigning witnesses meet the quorum.
    ///
    /// # Errors
    ///
    /// - Those of [`crate::open_cosigned`], except for the origin check.
    /// - [`LedgerError::UnknownLog`] if no listed log has the origin as its key name.
    /// - [`LedgerError::QuorumNotMet`] if too few witnesses cosigned.
    pub fn verify_checkpoint(&self, note: &str) -> Result<CosignedCheckpoint> {
        let parsed = Note::parse(note)?;
        let checkpoint = Checkpoint::parse_body(parsed.text())?;
        let logs: Vec<NoteVerifier> = self
            .logs
            .iter()
            .filter(|log| log.verifier.name() == checkpoint.origin())
            .map(|log| log.verifier.clone())
            .collect();
        if logs.is_empty() {
            return Err(LedgerError::UnknownLog {
                origin: checkpoint.origin().to_owned(),
            });
        }
        verify_note(note, &logs)?;
        check_empty_root(&checkpoint)?;

        let verifiers: Vec<CosignatureVerifier> =
            self.witnesses.iter().map(|w| w.verifier.clone()).collect();
        let mut met = vec![false; self.witnesses.len()];
        let mut cosignatures = Vec::new();
        for (index, timestamp) in verify_cosignatures(&parsed, &verifiers)? {
            met[index] = true;
            cosignatures.push(WitnessCosignature {
                name: self.witnesses[index].name.clone(),
                timestamp,
            });
        }
        if !self.evaluate(&met) {
            return Err(LedgerError::QuorumNotMet {
                quorum: self.quorum.clone(),
                cosigned: cosignatures.into_iter().map(|c| c.name).collect(),
            });
        }
        Ok(CosignedCheckpoint {
            checkpoint,
            cosignatures,
        })
    }

    /// Evaluates the quorum given which witnesses cosigned, indexed like `self.witnesses`.
    fn evaluate(&self, witness_met: &[bool]) -> bool {
        // Groups name only earlier groups, so one pass in order settles them all.
        let mut group_met = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let count = group
                .resolved
                .iter()
                .filter(|member| is_met(**member, witness_met, &group_met))
                .count();
            group_met.push(count >= group.threshold.required(group.resolved.len()));
        }
        self.quorum_member
            .is_none_or(|member| is_met(member, witness_met, &group_met))
    }
}

fn is_met(member: Member, witness_met: &[bool], group_met: &[bool]) -> bool {
    match member {
        Member::Witness(index) => witness_met[index],
        Member::Group(index) => group_met[index],
    }
}

impl FromStr for Policy {
    type Err = LedgerError;

    /// Parses a policy file.
    ///
    /// Items are separated by spaces or tabs; blank lines and lines starting with `#` are
    /// skipped; exactly one `quorum` line is required.
    fn from_str(text: &str) -> Result<Self> {
        let mut builder = Builder::default();
        for (index, line) in text.split('\n').enumerate() {
            let number = index + 1;
            builder
                .add_line(line)
                .map_err(|reason| LedgerError::InvalidPolicy(format!("line {number}: {reason}")))?;
        }
        builder.finish()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for log in &self.logs {
            write!(f, "log {}", log.verifier)?;
            write_url(f, log.url.as_deref())?;
        }
        for witness in &self.witnesses {
            write!(f, "witness {} {}", witness.name, witness.verifier)?;
            write_url(f, witness.url.as_deref())?;
        }
        for group in &self.groups {
            write!(f, "group {} {}", group.name, group.threshold)?;
            for member in &group.members {
                write!(f, " {member}")?;
            }
            writeln!(f)?;
        }
        writeln!(f, "quorum {}", self.quorum)
    }
}

fn write_url(f: &mut fmt::Formatter<'_>, url: Option<&str>) -> fmt::Result {
    match url {
        Some(url) => writeln!(f, " {url}"),
        None => writeln!(f),
    }
}

/// The policy as read so far, with the names defined on earlier lines.
#[derive(Default)]
struct Builder {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<WitnessGroup>,
    names: HashMap<String, Member>,
    /// Names already listed as a member of some group, each allowed in one group only.
    grouped: std::collections::HashSet<String>,
    quorum: Option<(String, Option<Member>)>,
}

impl Builder {
    fn add_line(&mut self, line: &str) -> Result<(), String> {
        if let Some(c) = line
            .chars()
            .find(|&c| c != '\t' && (c.is_ascii_control() || c == '\u{7f}'))
        {
            return Err(format!(
                "control character {c:?} is not allowed; only tab and newline are"
            ));
        }
        let mut items = line.split([' ', '\t']).filter(|item| !item.is_empty());
        let Some(keyword) = items.next() else {
            return Ok(());
        };
        if keyword.starts_with('#') {
            return Ok(());
        }
        let items: Vec<&str> = items.collect();
        match keyword {
            "log" => self.add_log(&items),
            "witness" => self.add_witness(&items),
            "group" => self.add_group(&items),
            "quorum" => self.set_quorum(&items),
            other => Err(format!(
                "unknown keyword {other:?}; expected log, witness, group or quorum"
            )),
        }
    }

    fn add_log(&mut self, items: &[&str]) -> Result<(), String> {
        let (vkey, url) = match items {
            [vkey] => (vkey, None),
            [vkey, url] => (vkey, Some(url.to_string())),
            _ => return Err("expected \"log <vkey> [<url>]\"".into()),
        };
        let verifier: NoteVerifier = vkey
            .parse()
            .map_err(|error| format!("log vkey {vkey:?} is invalid: {error}"))?;
        let vkey_text = verifier.to_string();
        let key = public_key_part(&vkey_text);
        if let Some(other) = self
            .logs
            .iter()
            .find(|log| public_key_part(&log.verifier.to_string()) == key)
        {
            return Err(format!(
                "log vkey {vkey:?} has the same public key as log {:?}",
                other.verifier.name()
            ));
        }
        self.logs.push(PolicyLog { verifier, url });
        Ok(())
    }

    fn add_witness(&mut self, items: &[&str]) -> Result<(), String> {
        let (name, vkey, url) = match items {
            [name, vkey] => (name, vkey, None),
            [name, vkey, url] => (name, vkey, Some(url.to_string())),
            _ => return Err("expected \"witness <name> <vkey> [<url>]\"".into()),
        };
        self.check_new_name(name)?;
        let verifier: CosignatureVerifier = vkey
            .parse()
            .map_err(|error| format!("witness {name:?} has an invalid vkey: {error}"))?;
        if let Some(other) = self
            .witnesses
            .iter()
            .find(|w| w.verifier.public_key() == verifier.public_key())
        {
            return Err(format!(
                "witness {name:?} has the same public key as witness {:?}",
                other.name
            ));
        }
        self.names
            .insert(name.to_string(), Member::Witness(self.witnesses.len()));
        self.witnesses.push(PolicyWitness {
            name: name.to_string(),
            verifier,
            url,
        });
        Ok(())
    }

    fn add_group(&mut self, items: &[&str]) -> Result<(), String> {
        let [name, threshold, members @ ..] = items else {
            return Err("expected \"group <name> <k|all|any> <member>...\"".into());
        };
        self.check_new_name(name)?;
        if members.is_empty() {
            return Err(format!("group {name:?} lists no members"));
        }
        let threshold = match *threshold {
            "all" => Threshold::All,
            "any" => Threshold::Any,
            k => match parse_decimal(k) {
                Some(k) if k >= 1 && k <= members.len() as u64 => Threshold::AtLeast(k as usize),
                _ => {
                    return Err(format!(
                        "group {name:?} has threshold {k:?}; use all, any or a decimal \
                         from 1 to its {} members",
                        members.len()
                    ));
                }
            },
        };
        let mut resolved = Vec::with_capacity(members.len());
        for member in members {
            let Some(&found) = self.names.get(*member) else {
                return Err(format!(
                    "group {name:?} names {member:?}, which no earlier line defines as a \
                     witness or group"
                ));
            };
            if resolved.contains(&found) {
                return Err(format!("group {name:?} lists {member:?} more than once"));
            }
            if self.grouped.contains(*member) {
                return Err(format!(
                    "group {name:?} lists {member:?}, which an earlier group lists already; \
                     a witness or group may be a member of one group only, so that it counts \
                     once"
                ));
            }
            resolved.push(found);
        }
        self.grouped
            .extend(members.iter().map(|member| member.to_string()));
        self.names
            .insert(name.to_string(), Member::Group(self.groups.len()));
        self.groups.push(WitnessGroup {
            name: name.to_string(),
            threshold,
            members: members.iter().map(|m| m.to_string()).collect(),
            resolved,
        });
        Ok(())
    }

    fn set_quorum(&mut self, items: &[&str]) -> Result<(), String> {
        let [name] = items else {
            return Err("expected \"quorum <name>\" or \"quorum none\"".into());
        };
        if let Some((first, _)) = &self.quorum {
            return Err(format!(
                "second quorum line; the quorum is already {first:?}"
            ));
        }
        let member = if *name == QUORUM_NONE {
            None
        } else {
            let Some(&found) = self.names.get(*name) else {
                return Err(format!(
                    "quorum {name:?} is not a witness or group defined on an earlier line"
                ));
            };
            Some(found)
        };
        self.quorum = Some((name.to_string(), member));
        Ok(())
    }

    fn check_new_name(&self, name: &str) -> Result<(), String> {
        if name == QUORUM_NONE {
            return Err("the name \"none\" is reserved for \"quorum none\"".into());
        }
        if self.names.contains_key(name) {
            return Err(format!("name {name:?} is already defined"));
        }
        Ok(())
    }

    fn finish(self) -> Result<Policy> {
        let Some((quorum, quorum_member)) = self.quorum else {
            return Err(LedgerError::InvalidPolicy(
                "no quorum line; add \"quorum <name>\", or \"quorum none\" to require no \
                 cosignatures"
                    .into(),
            ));
        };
        Ok(Policy {
            logs: self.logs,
            witnesses: self.witnesses,
            groups: self.groups,
            quorum,
            quorum_member,
        })
    }
}

/// Returns the `base64(type ‖ key)` part of a vkey, which identifies the public key.
fn public_key_part(vkey: &str) -> &str {
    vkey.rsplit_once('+').map_or(vkey, |(_, key)| key)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::cosign::Cosigner;
    use crate::merkle::EMPTY_ROOT;
    use crate::note::NoteSigner;

    const ORIGIN: &str = "example.com/log";

    fn log() -> NoteSigner {
        NoteSigner::ed25519(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap()
    }

    fn witness(seed: u8) -> Cosigner {
        let name = format!("w{seed}.example");
        Cosigner::ed25519(&name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    /// Builds a policy text with one log, witnesses w2 to w5 and then `tail`.
    fn policy_text(tail: &str) -> String {
        let mut text = format!(
            "# test policy\nlog {} https://example.com/log/\n\n",
            log().verifier()
        );
        for seed in 2..=5 {
            text.push_str(&format!("witness w{seed} {}\n", witness(seed).verifier()));
        }
        text.push_str(tail);
        text
    }

    fn cosigned_note(seeds: &[u8]) -> String {
        let checkpoint = Checkpoint::new(ORIGIN, 5, [8; 32]).unwrap();
        let mut note = checkpoint.sign(&log());
        for &seed in seeds {
            note.push_str(&witness(seed).cosign(&checkpoint.body(), 1000).unwrap());
        }
        note
    }

    fn invalid_policy(text: &str) -> String {
        match text.parse::<Policy>() {
            Err(LedgerError::InvalidPolicy(message)) => message,
            other => panic!("expected InvalidPolicy for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn policy_round_trips_through_text() {
        let text = policy_text("group g1 2 w2 w3 w4\n\t group  g2 all g1 w5 \nquorum g2\n");
        let policy: Policy = text.parse().unwrap();
        assert_eq!(policy.logs().len(), 1);
        assert_eq!(
            policy.logs()[0].url.as_deref(),
            Some("https://example.com/log/")
        );
        assert_eq!(policy.witnesses().len(), 4);
        assert_eq!(policy.groups()[0].threshold, Threshold::AtLeast(2));
        assert_eq!(policy.groups()[1].members, vec!["g1", "w5"]);
        assert_eq!(policy.quorum(), "g2");
        let formatted = policy.to_string();
        assert!(formatted.contains("group g2 all g1 w5\n"));
        assert_eq!(formatted.parse::<Policy>().unwrap(), policy);
    }

    #[test]
    fn nested_groups_evaluate_thresholds() {
        let policy: Policy = policy_text("group g1 2 w2 w3 w4\ngroup g2 all g1 w5\nquorum g2\n")
            .parse()
            .unwrap();
        assert!(policy.is_quorum_met(["w2", "w3", "w5"]));
        assert!(!policy.is_quorum_met(["w2", "w5"]));
        assert!(!policy.is_quorum_met(["w2", "w3", "w4"]));
        assert!(!policy.is_quorum_met(["w2", "g1", "w5"]));

        let any: Policy = policy_text("group g any w2 w3\nquorum g\n")
            .parse()
            .unwrap();
        assert!(any.is_quorum_met(["w3"]));
        assert!(!any.is_quorum_met(["w4"]));
    }

    #[test]
    fn checkpoint_meeting_quorum_is_accepted() {
        let policy: Policy = policy_text("group g 2 w2 w3 w4\nquorum g\n")
            .parse()
            .unwrap();
        let opened = policy.verify_checkpoint(&cosigned_note(&[4, 2])).unwrap();
        assert_eq!(opened.checkpoint.tree_size(), 5);
        let names: Vec<&str> = opened
            .cosignatures
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["w2", "w4"]);
        assert_eq!(opened.cosignatures[0].timestamp, 1000);
    }

    #[test]
    fn checkpoint_below_quorum_is_rejected() {
        let policy: Policy = policy_text("group g 2 w2 w3 w4\nquorum g\n")
            .parse()
            .unwrap();
        let result = policy.verify_checkpoint(&cosigned_note(&[2, 5]));
        match result {
            Err(LedgerError::QuorumNotMet { quorum, cosigned }) => {
                assert_eq!(quorum, "g");
                assert_eq!(cosigned, vec!["w2", "w5"]);
            }
            other => panic!("expected QuorumNotMet, got {other:?}"),
        }
    }

    #[test]
    fn quorum_none_needs_only_log() {
        let policy: Policy = policy_text("quorum none\n").parse().unwrap();
        let opened = policy.verify_checkpoint(&cosigned_note(&[])).unwrap();
        assert!(opened.cosignatures.is_empty());
    }

    #[test]
    fn checkpoint_of_unlisted_origin_is_rejected() {
        let policy: Policy = policy_text("quorum none\n").parse().unwrap();
        let other =
            NoteSigner::ed25519("example.com/other", SigningKey::from_bytes(&[1; 32])).unwrap();
        let note = Checkpoint::new("example.com/other", 1, [0; 32])
            .unwrap()
            .sign(&other);
        assert!(matches!(
            policy.verify_checkpoint(&note),
            Err(LedgerError::UnknownLog { .. })
        ));
    }

    #[test]
    fn checkpoint_without_log_signature_is_rejected() {
        let policy: Policy = policy_text("quorum w2\n").parse().unwrap();
        let checkpoint = Checkpoint::new(ORIGIN, 5, [8; 32]).unwrap();
        let body = checkpoint.body();
        let note = format!("{body}\n{}", witness(2).cosign(&body, 1).unwrap());
        assert!(matches!(
            policy.verify_checkpoint(&note),
            Err(LedgerError::UnknownKey)
        ));
    }

    #[test]
    fn failing_witness_line_is_rejected() {
        let policy: Policy = policy_text("quorum w2\n").parse().unwrap();
        let other_body = Checkpoint::new(ORIGIN, 6, [8; 32]).unwrap().body();
        let mut note = cosigned_note(&[2]);
        note.push_str(&witness(3).cosign(&other_body, 1).unwrap());
        assert!(matches!(
            policy.verify_checkpoint(&note),
            Err(LedgerError::BadSignature { .. })
        ));
    }

    #[test]
    fn empty_checkpoint_with_wrong_root_is_rejected() {
        let policy: Policy = policy_text("quorum none\n").parse().unwrap();
        let bad = Checkpoint::new(ORIGIN, 0, [1; 32]).unwrap().sign(&log());
        assert!(matches!(
            policy.verify_checkpoint(&bad),
            Err(LedgerError::InvalidEmptyRoot { .. })
        ));
        let good = Checkpoint::new(ORIGIN, 0, EMPTY_ROOT).unwrap().sign(&log());
        assert!(policy.verify_checkpoint(&good).is_ok());
    }

    #[test]
    fn malformed_lines_name_line_and_value() {
        let cases = [
            ("quorum w9\n", "line 8", "\"w9\""),
            ("group g 4 w2 w3 w4\nquorum g\n", "line 8", "\"4\""),
            ("group g 0 w2\nquorum g\n", "line 8", "\"0\""),
            ("group g 01 w2\nquorum g\n", "line 8", "\"01\""),
            ("group g any\nquorum g\n", "line 8", "no members"),
            ("group g any w2 w2\nquorum g\n", "line 8", "more than once"),
            ("group g any g\nquorum g\n", "line 8", "\"g\""),
            ("group w2 any w3\nquorum w2\n", "line 8", "already defined"),
            ("group none any w2\nquorum none\n", "line 8", "reserved"),
            ("quorum none\nquorum w2\n", "line 9", "second quorum"),
            ("quorum none extra\n", "line 8", "quorum"),
            ("frobnicate x\nquorum none\n", "line 8", "\"frobnicate\""),
            ("quorum none\r\n", "line 8", "control character"),
        ];
        for (tail, line, value) in cases {
            let message = invalid_policy(&policy_text(tail));
            assert!(message.contains(line), "{tail:?}: {message}");
            assert!(message.contains(value), "{tail:?}: {message}");
        }
        assert!(invalid_policy(&policy_text("")).contains("no quorum line"));
    }

    #[test]
    fn group_may_not_name_later_definition() {
        let text = format!(
            "group g any w9\nwitness w9 {}\nquorum g\n",
            witness(9).verifier()
        );
        let message = invalid_policy(&text);
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("earlier line"), "{message}");
    }

    #[test]
    fn member_of_two_groups_is_rejected() {
        // Otherwise w2 alone would meet "2 of w2 and g1" through g1 as well.
        let text = policy_text("group g1 any w2\ngroup q 2 w2 g1\nquorum q\n");
        let message = invalid_policy(&text);
        assert!(message.contains("member of one group only"), "{message}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let key = SigningKey::from_bytes(&[2; 32]);
        let alias = Cosigner::ed25519("alias.example", key).unwrap().verifier();
        let message = invalid_policy(&policy_text(&format!("witness w6 {alias}\nquorum none\n")));
        assert!(
            message.contains("same public key as witness \"w2\""),
            "{message}"
        );

        let log_alias = NoteSigner::ed25519("example.com/alias", SigningKey::from_bytes(&[1; 32]))
            .unwrap()
            .verifier();
        let message = invalid_policy(&policy_text(&format!("log {log_alias}\nquorum none\n")));
        assert!(message.contains("same public key as log"), "{message}");
    }

    #[test]
    fn key_types_are_checked() {
        let as_witness = format!("witness w9 {}\nquorum none\n", log().verifier());
        let message = invalid_policy(&policy_text(&as_witness));
        assert!(message.contains("0x01"), "{message}");
        let as_log = format!("log {}\nquorum none\n", witness(9).verifier());
        let message = invalid_policy(&policy_text(&as_log));
        assert!(message.contains("0x04"), "{message}");
    }
}
