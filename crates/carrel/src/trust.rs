//! Other nodes' audit logs as the operator's node trusts them: their keys and latest
//! checkpoints, read through the node, and the C2SP tlog-policy built from them
//! (`carrel audit policy`).

use std::path::Path;

use anyhow::{Context, bail};
use carrel_ledger::note::Note;
use carrel_ledger::{Checkpoint, CosignatureVerifier, NoteVerifier, Policy, open_checkpoint};
use carrel_node::NodeDir;
use carrel_node::witnessing::witness_name;
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

use crate::admin::AdminClient;
use crate::output::Output;

/// Name of the policy group that contains every witness and that the quorum line names.
const WITNESS_GROUP: &str = "witnesses";

/// The operator's node, reading other nodes' audit logs through its admin API.
pub struct AuditReader {
    client: AdminClient,
    /// This node's participant name.
    name: String,
    /// This node's log origin, from its `node.json`.
    origin: String,
    /// The pinned exchange's name; none on the exchange.
    exchange: Option<String>,
}

/// Another node's log: the key the node trusts for it, and its latest checkpoint, whose
/// note opened with that key.
pub struct TrustedLog {
    /// The log's key, named by the origin on the first line of its checkpoint note.
    pub verifier: NoteVerifier,
    /// The Ed25519 key the node trusts for the log's node.
    pub key: VerifyingKey,
    /// The response of `GET /audit/checkpoint`.
    pub checkpoint: Value,
}

impl AuditReader {
    /// Opens the node folder `dir` of a running node.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let config = NodeDir::new(dir).load_config()?;
        Ok(Self {
            client: AdminClient::open(dir)?,
            exchange: config.exchange.as_ref().map(|e| e.name.clone()),
            name: config.name,
            origin: config.origin,
        })
    }

    /// Returns the witnesses this node relies on for another node's log: itself, which
    /// cosigns the logs of the parties it works with, and the exchange, which cosigns every
    /// participant's log. The log under audit does not choose them.
    pub fn default_witnesses(&self, log_name: &str) -> Vec<String> {
        [Some(self.name.clone()), self.exchange.clone()]
            .into_iter()
            .flatten()
            .filter(|name| name != log_name)
            .collect()
    }

    /// Returns this node's participant name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `GET {path}` to `peer`'s audit API through the node, which signs it.
    pub async fn fetch(&self, peer: &str, path: &str) -> anyhow::Result<Value> {
        if peer == self.name {
            bail!(
                "{peer} is this node; check its own log from its folder with \
                 `carrel audit verify`, or name another participant"
            );
        }
        self.client
            .post("/admin/audit/fetch", json!({ "peer": peer, "path": path }))
            .await
            .with_context(|| format!("cannot read {path} of {peer} through this node"))
    }

    /// Returns the Ed25519 key the node trusts for participant `name`: the pinned key for
    /// the exchange, the exchange's registry for the others.
    pub async fn public_key(&self, name: &str) -> anyhow::Result<VerifyingKey> {
        let reply = self
            .client
            .get(&format!("/admin/keys/{name}"))
            .await
            .with_context(|| format!("cannot get the public key of {name}"))?;
        let text = reply["public_key"]
            .as_str()
            .with_context(|| format!("the node returned no public key for {name}: {reply}"))?;
        let key = carrel_net::PublicKey::parse(text)
            .with_context(|| format!("the public key of {name} is invalid"))?;
        Ok(*key.verifying_key())
    }

    /// Reads `peer`'s latest checkpoint and accepts it only if its note opens with the key
    /// the node trusts for `peer`, under the origin on the note's first line.
    pub async fn log(&self, peer: &str) -> anyhow::Result<TrustedLog> {
        let key = self.public_key(peer).await?;
        let checkpoint = self.fetch(peer, "/audit/checkpoint").await?;
        let note = checkpoint["note"]
            .as_str()
            .with_context(|| format!("the checkpoint of {peer} has no note: {checkpoint}"))?;
        let origin = note_origin(note)
            .with_context(|| format!("the checkpoint note of {peer} is invalid"))?;
        let verifier = NoteVerifier::ed25519(&origin, key)
            .with_context(|| format!("origin {origin:?} of {peer} is not a valid key name"))?;
        open_checkpoint(note, &origin, &verifier).with_context(|| {
            format!(
                "the checkpoint of {peer} does not verify with the key this node trusts for {peer}"
            )
        })?;
        Ok(TrustedLog {
            verifier,
            key,
            checkpoint,
        })
    }

    /// Returns the cosignature key of participant `name` as a witness: its trusted key,
    /// named `{origin}/witness`. The origin of another node comes from its own checkpoint
    /// note, verified with its key, and this node's origin from its `node.json`.
    pub async fn witness(&self, name: &str) -> anyhow::Result<CosignatureVerifier> {
        let (origin, key) = if name == self.name {
            (self.origin.clone(), self.public_key(name).await?)
        } else {
            let log = self.log(name).await?;
            (log.verifier.name().to_owned(), log.key)
        };
        CosignatureVerifier::ed25519(&witness_name(&origin), key)
            .with_context(|| format!("origin {origin:?} of witness {name} is not a valid key name"))
    }
}

/// Returns the origin of a checkpoint note: the first line of its signed text. Nothing is
/// verified here.
pub fn note_origin(note: &str) -> anyhow::Result<String> {
    let parsed = Note::parse(note)?;
    Ok(Checkpoint::parse_body(parsed.text())?.origin().to_owned())
}

/// A tlog-policy for one log, with the log as read while building it.
pub struct LogPolicy {
    /// The policy.
    pub policy: Policy,
    /// The log, with the checkpoint read while building the policy.
    pub log: TrustedLog,
    /// Participant names of the witnesses, as the policy names them.
    pub witnesses: Vec<String>,
    /// How many witnesses must cosign.
    pub quorum: usize,
}

/// Builds a tlog-policy for `log_name`'s log from the keys the node trusts.
///
/// The witnesses are `witnesses`, or when it is empty this node and the exchange (see
/// [`AuditReader::default_witnesses`]), never the witnesses the log itself reports. The
/// policy names each witness by its participant name and requires `quorum` of them, or
/// all of them without a `quorum`.
pub async fn build_policy(
    reader: &AuditReader,
    log_name: &str,
    witnesses: &[String],
    quorum: Option<usize>,
) -> anyhow::Result<LogPolicy> {
    let log = reader.log(log_name).await?;
    let names: Vec<String> = if witnesses.is_empty() {
        reader.default_witnesses(log_name)
    } else {
        witnesses.to_vec()
    };
    let quorum = quorum.unwrap_or(names.len());
    check_witness_names(log_name, &names, quorum)?;
    let mut text = format!("log {}\n", log.verifier);
    for name in &names {
        let verifier = reader.witness(name).await?;
        text.push_str(&format!("witness {name} {verifier}\n"));
    }
    text.push_str(&format!(
        "group {WITNESS_GROUP} {quorum} {}\nquorum {WITNESS_GROUP}\n",
        names.join(" ")
    ));
    let policy: Policy = text
        .parse()
        .with_context(|| format!("the policy built for {log_name} is invalid"))?;
    Ok(LogPolicy {
        policy,
        log,
        witnesses: names,
        quorum,
    })
}

/// Checks the witnesses and the quorum of a policy before any key is fetched.
fn check_witness_names(log_name: &str, names: &[String], quorum: usize) -> anyhow::Result<()> {
    if names.is_empty() {
        bail!("no witness is named for the log of {log_name}; name them with --witness");
    }
    for (index, name) in names.iter().enumerate() {
        if name == log_name {
            bail!("{log_name} cannot witness its own log; name other participants with --witness");
        }
        if name == WITNESS_GROUP || name == "none" {
            bail!("witness name {name:?} is reserved in the policy this command writes");
        }
        if names[..index].contains(name) {
            bail!("witness {name} is named twice; give each witness once");
        }
    }
    if quorum == 0 || quorum > names.len() {
        bail!(
            "--quorum {quorum} is invalid: give 1 to {}, the number of witnesses",
            names.len()
        );
    }
    Ok(())
}

/// Runs `carrel audit policy`: prints the policy, or writes it to `file`.
pub async fn policy(
    node: &Path,
    log_name: &str,
    witnesses: &[String],
    quorum: Option<usize>,
    file: Option<&Path>,
    out: &Output,
) -> anyhow::Result<()> {
    let reader = AuditReader::open(node)?;
    let built = build_policy(&reader, log_name, witnesses, quorum).await?;
    let text = built.policy.to_string();
    if let Some(file) = file {
        std::fs::write(file, &text)
            .with_context(|| format!("cannot write the policy file {}", file.display()))?;
    }
    let origin = built.log.verifier.name();
    if out.is_json() {
        out.value(
            "policy",
            &json!({ "log": log_name, "origin": origin, "witnesses": built.witnesses,
                     "quorum": built.quorum, "file": file, "policy": text }),
        );
    } else if let Some(file) = file {
        println!(
            "wrote the policy for the log of {log_name} ({origin}) to {}: witnesses {}, {} \
             of them must cosign",
            file.display(),
            built.witnesses.join(", "),
            built.quorum
        );
    } else {
        print!("{text}");
    }
    Ok(())
}
