//! Receipts of another node's audit entries: `carrel audit receipts` fetches a C2SP
//! tlog-proof file for each entry about an agreement, and `carrel audit verify-receipt`
//! checks one offline against a tlog-policy.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrel_ledger::{Hash, LedgerError, Policy, Receipt};
use serde_json::{Value, json};

use crate::output::Output;
use crate::trust::{AuditReader, build_policy, note_origin};

/// An entry listed by `GET /audit/entries`.
pub struct ListedEntry {
    /// Index of the entry in the log.
    pub index: u64,
    /// Kind of the entry, such as `query.released`.
    pub kind: String,
}

/// A receipt written to a file.
pub struct Written {
    /// The receipt's file.
    pub file: PathBuf,
    /// Index of the entry in the log.
    pub index: u64,
    /// Kind of the entry.
    pub kind: String,
}

/// Runs `carrel audit receipts`: writes `{peer}-{index}.tlog-proof` for each of `peer`'s
/// entries about `agreement` that its last final checkpoint contains, and `{peer}.policy`,
/// into `folder`.
pub async fn receipts(
    node: &Path,
    peer: &str,
    agreement: &str,
    folder: &Path,
    out: &Output,
) -> anyhow::Result<()> {
    let fetched = write_receipts(node, peer, agreement, folder).await?;
    print_receipts(
        out,
        peer,
        &fetched.policy_file,
        fetched.tree_size,
        &fetched.written,
        &fetched.pending,
    );
    Ok(())
}

/// The receipts that [`write_receipts`] wrote.
pub struct Fetched {
    /// The policy file written beside the receipts.
    pub policy_file: PathBuf,
    /// Size of the final checkpoint the receipts lead to.
    pub tree_size: u64,
    /// One receipt per entry that the final checkpoint contains.
    pub written: Vec<Written>,
    /// Entries newer than the final checkpoint, without a receipt yet.
    pub pending: Vec<ListedEntry>,
}

/// Writes `{peer}-{index}.tlog-proof` for each of `peer`'s entries about `agreement` that
/// its last final checkpoint contains, and `{peer}.policy`, into `folder`, after checking
/// each receipt under that policy.
pub async fn write_receipts(
    node: &Path,
    peer: &str,
    agreement: &str,
    folder: &Path,
) -> anyhow::Result<Fetched> {
    let reader = AuditReader::open(node)?;
    let listed = reader
        .fetch(
            peer,
            &format!(
                "/audit/entries?agreement={}",
                carrel_node::witnessing::query_value(agreement)
            ),
        )
        .await?;
    let entries = listed_entries(&listed)?;
    let built = build_policy(&reader, peer, &[], None).await?;
    // The newest checkpoint that the witnesses this node relies on have all cosigned: the
    // latest one, or else the latest the log calls final.
    let checkpoint = &built.log.checkpoint;
    let candidates = [checkpoint, &checkpoint["last_final"]];
    let chosen = candidates.iter().find_map(|candidate| {
        let size = candidate["tree_size"].as_u64()?;
        let note = candidate["note"].as_str()?;
        built
            .policy
            .verify_checkpoint(note)
            .ok()
            .filter(|cosigned| cosigned.checkpoint.tree_size() == size)
            .map(|_| (size, note.to_owned()))
    });
    let Some((size, note)) = chosen else {
        bail!(
            "no checkpoint of {peer} is cosigned by all of {} yet; run this command again once \
             they cosign one",
            built.witnesses.join(" and ")
        );
    };

    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create the folder {}", folder.display()))?;
    let policy_file = folder.join(format!("{peer}.policy"));
    std::fs::write(&policy_file, built.policy.to_string())
        .with_context(|| format!("cannot write {}", policy_file.display()))?;

    let (included, pending): (Vec<ListedEntry>, Vec<ListedEntry>) =
        entries.into_iter().partition(|entry| entry.index < size);
    let mut written = Vec::with_capacity(included.len());
    for entry in included {
        let receipt = fetch_receipt(&reader, peer, entry.index, size, &note).await?;
        let bytes = receipt.extra().unwrap_or_default();
        receipt.verify(bytes, &built.policy).with_context(|| {
            format!(
                "the receipt of entry {} of {peer} does not verify under the policy built from \
                 this node's keys; nothing more was written",
                entry.index
            )
        })?;
        let file = folder.join(format!("{peer}-{}.tlog-proof", entry.index));
        std::fs::write(&file, receipt.to_string())
            .with_context(|| format!("cannot write {}", file.display()))?;
        written.push(Written {
            file,
            index: entry.index,
            kind: entry.kind,
        });
    }
    Ok(Fetched {
        policy_file,
        tree_size: size,
        written,
        pending,
    })
}

/// Reads the `entries` list of `GET /audit/entries`.
fn listed_entries(listed: &Value) -> anyhow::Result<Vec<ListedEntry>> {
    let entries = listed["entries"]
        .as_array()
        .with_context(|| format!("the entry list has no entries array: {listed}"))?;
    entries
        .iter()
        .map(|entry| {
            let index = entry["index"]
                .as_u64()
                .with_context(|| format!("listed entry {entry} has no index"))?;
            let kind = entry["kind"].as_str().unwrap_or("unknown").to_owned();
            Ok(ListedEntry { index, kind })
        })
        .collect()
}

/// Fetches entry `index` with its inclusion proof in the tree of `size` entries and builds
/// its receipt on the cosigned checkpoint `note`, with the entry on the `extra` line.
async fn fetch_receipt(
    reader: &AuditReader,
    peer: &str,
    index: u64,
    size: u64,
    note: &str,
) -> anyhow::Result<Receipt> {
    let reply = reader
        .fetch(peer, &format!("/audit/inclusion?index={index}&size={size}"))
        .await?;
    let entry = reply["entry"]
        .as_str()
        .and_then(|text| STANDARD.decode(text).ok())
        .with_context(|| format!("entry {index} of {peer} is missing or not base64: {reply}"))?;
    let proof = reply["proof"]
        .as_array()
        .with_context(|| format!("the inclusion proof of entry {index} of {peer} is missing"))?
        .iter()
        .map(decode_hash)
        .collect::<anyhow::Result<Vec<Hash>>>()
        .with_context(|| format!("the inclusion proof of entry {index} of {peer} is invalid"))?;
    Ok(Receipt::new(index, proof, note.to_owned())?.with_extra(entry)?)
}

/// Decodes one base64 hash of a proof.
pub fn decode_hash(value: &Value) -> anyhow::Result<Hash> {
    let text = value
        .as_str()
        .with_context(|| format!("proof hash {value} is not a string"))?;
    let bytes = STANDARD
        .decode(text)
        .with_context(|| format!("proof hash {text:?} is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("proof hash {text:?} is not 32 bytes"))
}

fn print_receipts(
    out: &Output,
    peer: &str,
    policy_file: &Path,
    size: u64,
    written: &[Written],
    pending: &[ListedEntry],
) {
    if out.is_json() {
        let receipts: Vec<Value> = written
            .iter()
            .map(|w| json!({ "file": w.file, "index": w.index, "kind": w.kind }))
            .collect();
        let pending: Vec<Value> = pending
            .iter()
            .map(|p| json!({ "index": p.index, "kind": p.kind }))
            .collect();
        out.value(
            "receipts",
            &json!({ "log": peer, "policy": policy_file, "tree_size": size,
                     "receipts": receipts, "pending": pending }),
        );
        return;
    }
    println!("{}  tlog-policy of {peer}", policy_file.display());
    for receipt in written {
        println!("{}  {}", receipt.file.display(), receipt.kind);
    }
    if written.is_empty() && pending.is_empty() {
        println!("{peer} lists no entry about this agreement");
    }
    for entry in pending {
        println!(
            "pending: entry {} ({}) is not in the last final checkpoint of {peer} (size \
             {size}); no receipt was written, so run this command again once its witnesses \
             cosign a later checkpoint",
            entry.index, entry.kind
        );
    }
}

/// The facts that a verified receipt proves.
pub struct Verified {
    /// The log's origin.
    pub origin: String,
    /// Index of the entry.
    pub index: u64,
    /// Size of the cosigned checkpoint.
    pub tree_size: u64,
    /// Witnesses whose cosignatures verified.
    pub cosigned_by: Vec<String>,
    /// The entry's bytes.
    pub entry: Vec<u8>,
}

/// Runs `carrel audit verify-receipt`: checks the receipt in `file` under the policy in
/// `policy_file`, with nothing but the two files, and prints the entry.
pub fn verify_receipt(file: &Path, policy_file: &Path, out: &Output) -> anyhow::Result<()> {
    let verified = check_receipt(file, policy_file)
        .with_context(|| format!("receipt {} is invalid", file.display()))?;
    let entry: Value = serde_json::from_slice(&verified.entry)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&verified.entry).into()));
    if out.is_json() {
        out.value(
            "receipt",
            &json!({ "file": file, "origin": verified.origin, "index": verified.index,
                     "tree_size": verified.tree_size, "cosigned_by": verified.cosigned_by,
                     "entry": entry }),
        );
        return Ok(());
    }
    println!(
        "receipt {} verified: entry {} of log {} in the tree of size {}, cosigned by {}",
        file.display(),
        verified.index,
        verified.origin,
        verified.tree_size,
        verified.cosigned_by.join(", ")
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&entry).expect("JSON value serialises")
    );
    Ok(())
}

/// Checks the receipt in `file` under the policy in `policy_file`, with nothing but the
/// two files.
///
/// # Errors
///
/// A file that cannot be read or parsed, a checkpoint that fails the policy, or an entry
/// that is not in the checkpoint's tree.
pub fn check_receipt(file: &Path, policy_file: &Path) -> anyhow::Result<Verified> {
    let policy_text = std::fs::read_to_string(policy_file)
        .with_context(|| format!("cannot read the policy file {}", policy_file.display()))?;
    let policy: Policy = policy_text
        .parse()
        .with_context(|| format!("the policy file {} is invalid", policy_file.display()))?;
    let text = std::fs::read_to_string(file).context("cannot read the file")?;
    let receipt = Receipt::parse(&text).context("the file is not a tlog-proof receipt")?;
    let entry = receipt.extra().context(
        "the receipt has no extra line with the entry; make receipts with `carrel audit \
         receipts`, which writes the entry there",
    )?;
    let cosigned = policy
        .verify_checkpoint(receipt.checkpoint_note())
        .map_err(|error| checkpoint_failure(error, receipt.checkpoint_note(), policy_file))?;
    let checkpoint = &cosigned.checkpoint;
    receipt
        .check_inclusion(entry, checkpoint)
        .with_context(|| {
            format!(
                "entry {} is not in the tree of size {}: the entry does not match the \
                 checkpoint's root",
                receipt.index(),
                checkpoint.tree_size()
            )
        })?;
    Ok(Verified {
        origin: checkpoint.origin().to_owned(),
        index: receipt.index(),
        tree_size: checkpoint.tree_size(),
        cosigned_by: cosigned.cosignatures.into_iter().map(|c| c.name).collect(),
        entry: entry.to_vec(),
    })
}

/// Explains why a receipt's checkpoint failed under a policy.
fn checkpoint_failure(error: LedgerError, note: &str, policy_file: &Path) -> anyhow::Error {
    let origin = note_origin(note).unwrap_or_else(|_| "?".into());
    let policy = policy_file.display();
    match error {
        LedgerError::UnknownKey => anyhow!(
            "bad log signature: the checkpoint of {origin} has no valid signature by the log \
             key in {policy}"
        ),
        LedgerError::BadSignature { key_name } => {
            anyhow!(
                "bad signature: the signature by {key_name} on the checkpoint of {origin} does not verify"
            )
        }
        quorum @ LedgerError::QuorumNotMet { .. } => {
            anyhow!("quorum not met under {policy}: {quorum}")
        }
        other => anyhow!(other).context(format!(
            "the checkpoint of {origin} is rejected under {policy}"
        )),
    }
}
