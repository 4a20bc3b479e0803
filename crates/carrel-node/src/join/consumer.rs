//! The consumer's side: it reads its identifiers and group labels and drives the run.

use std::collections::BTreeMap;
use std::sync::Arc;

use carrel_model::JoinTerms;
use carrel_mpc::pjc::{IdParty, Message2, Message4, PjcOutput};
use carrel_mpc::transcript::Transcript;
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Blob, Finish, MAX_GROUPS, Open, PROTOCOL, StartJoin, blocking, decode, encode, params,
    protocol_error, rule_of, terms_of,
};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{PeerCalls, end_everywhere};
use crate::jobs::{self, NewJob};
use crate::node::Node;

/// Starts a run from the `carrel join` command and drives it in the background. Returns
/// the job id at once.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that does not permit the action,
/// [`NodeError::BadRequest`] for an unreadable file or an invalid epsilon.
pub fn start(node: Arc<Node>, request: StartJoin) -> NodeResult<Value> {
    let me = node.identity.name().to_owned();
    let record = node
        .store
        .read(|c| agreements::load(c, &request.agreement))?;
    let terms = terms_of(&record)
        .map_err(|e| node.store.reject("join", &me, Some(&request.agreement), e))?;
    let policy = record.signed.agreement.policy.clone();
    let epsilon = request.epsilon.unwrap_or(policy.query_epsilon);
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(NodeError::BadRequest(format!(
            "epsilon {epsilon} is invalid: give a finite number above 0"
        )));
    }
    // Providers read epsilon from JSON; use the number they will see.
    let epsilon: f64 = serde_json::from_value(json!(epsilon)).unwrap_or(epsilon);
    crate::psi::check_ids_file(&request.ids)?;
    let provider = record.signed.agreement.assigner.clone();
    let job = uuid::Uuid::new_v4().to_string();
    node.store
        .audited("join", &me, Some(&request.agreement), |tx, events| {
            let new = NewJob {
                id: &job,
                kind: "join",
                role: "consumer",
                agreement: Some(&request.agreement),
                peers: std::slice::from_ref(&provider),
            };
            let detail =
                json!({ "ids_file": request.ids.display().to_string(), "epsilon": epsilon });
            jobs::insert(tx, events, &me, &new, detail)
        })?;
    let run = Joiner {
        node: node.clone(),
        job: job.clone(),
        provider,
        terms,
        policy,
        request,
        epsilon,
        calls: PeerCalls::new(node.clone()),
    };
    tokio::spawn(run.drive());
    Ok(json!({ "job": job, "state": jobs::RUNNING }))
}

/// Longest wait for the provider's response to message 1. By the 100,000-row benchmark,
/// a million rows take about 17 minutes of encryption on two cores.
const PREPARE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3600);

struct Joiner {
    node: Arc<Node>,
    job: String,
    provider: String,
    terms: JoinTerms,
    policy: carrel_model::UsagePolicy,
    request: StartJoin,
    epsilon: f64,
    /// Calls to the provider, with their byte counts.
    calls: PeerCalls,
}

/// Identifiers with group numbers, and the group labels by number.
type Grouped = (Vec<(String, usize)>, Vec<String>);

impl Joiner {
    async fn drive(self) {
        if let Err(error) = self.run().await {
            end_everywhere(
                &self.node,
                &self.job,
                std::slice::from_ref(&self.provider),
                &error,
            )
            .await;
        }
    }

    async fn run(&self) -> NodeResult<()> {
        let store = &self.node.store;
        jobs::progress(store, &self.job, "reading identifiers", 0, 0)?;
        let (ids, labels) = self.read_ids().await?;
        let params = params(&self.job, &self.policy, &self.terms, self.epsilon);
        let group_count = labels.len().max(1);

        jobs::progress(
            store,
            &self.job,
            "blinding identifiers",
            0,
            ids.len() as u64,
        )?;
        let (party, message1) = blocking(move || {
            let (party, message1) =
                IdParty::start(&params, &ids, group_count).map_err(protocol_error)?;
            Ok((party, message1.to_bytes()))
        })
        .await?;
        let mut transcript = Transcript::new(PROTOCOL, &self.job);
        let open = Open {
            job: self.job.clone(),
            agreement: self.request.agreement.clone(),
            rule: rule_of(&self.terms).statement(),
            epsilon: self.epsilon,
            message1: encode(&message1),
        };
        let header = json!({ "job": open.job, "agreement": open.agreement, "rule": open.rule,
                             "epsilon": open.epsilon });
        transcript.append(b"open", header.to_string().as_bytes());
        transcript.append(b"message1", &message1);

        jobs::progress(store, &self.job, "waiting for the provider", 0, 0)?;
        self.call::<Blob>("/jobs/join", &open).await?;
        let path = format!("/jobs/{}/join/message2", self.job);
        // The provider prepares message 2 in the background; until it is ready it
        // answers with no chunks.
        let deadline = tokio::time::Instant::now() + PREPARE_DEADLINE;
        let first = loop {
            let chunk: Blob = self.call(&path, &Blob::default()).await?;
            if chunk.chunks > 0 {
                break chunk;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NodeError::JobFailed(format!(
                    "the provider did not prepare its response within {PREPARE_DEADLINE:?}; start the job again later"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        };
        let chunks = first.chunks;
        let mut message2 = decode(&first.data)?;
        for index in 1..chunks {
            let chunk: Blob = self
                .call(
                    &path,
                    &Blob {
                        index,
                        ..Blob::default()
                    },
                )
                .await?;
            message2.extend(decode(&chunk.data)?);
            jobs::progress(
                store,
                &self.job,
                "receiving the provider's rows",
                index as u64 + 1,
                chunks as u64,
            )?;
        }
        transcript.append(b"message2", &message2);

        jobs::progress(store, &self.job, "matching and summing", 0, 0)?;
        let (masked, message3) = blocking(move || {
            let message2 = Message2::from_bytes(&message2, party.max_message2_entries())
                .map_err(protocol_error)?;
            let (masked, message3) = party.mask(&message2).map_err(protocol_error)?;
            Ok((masked, message3.to_bytes()))
        })
        .await?;
        transcript.append(b"message3", &message3);
        let path = format!("/jobs/{}/join/release", self.job);
        let reply: Blob = self
            .call(
                &path,
                &Blob {
                    data: encode(&message3),
                    ..Blob::default()
                },
            )
            .await?;
        let message4 = decode(&reply.data)?;
        transcript.append(b"message4", &message4);
        let output = blocking(move || {
            let message4 =
                Message4::from_bytes(&message4, masked.public_key()).map_err(protocol_error)?;
            masked.finish(&message4).map_err(protocol_error)
        })
        .await?;

        let hash = hex::encode(transcript.hash());
        let path = format!("/jobs/{}/join/finish", self.job);
        let theirs: Finish = self
            .call(
                &path,
                &Finish {
                    transcript_sha256: hash.clone(),
                },
            )
            .await?;
        if theirs.transcript_sha256 != hash {
            return Err(NodeError::JobFailed(format!(
                "transcripts differ: this node saw {hash}, the provider {}",
                theirs.transcript_sha256
            )));
        }
        let result = self.result(&output, &labels);
        jobs::succeed(store, self.node.identity.name(), &self.job, &hash, result)
    }

    /// Reads the identifier column and the group column of the consumer's file.
    async fn read_ids(&self) -> NodeResult<Grouped> {
        let path = self.request.ids.clone();
        let id_column = self.request.id_column.clone();
        let group_column = self.request.group_column.clone();
        let rule = rule_of(&self.terms);
        blocking(move || {
            let fail = |e: &dyn std::fmt::Display| {
                NodeError::BadRequest(format!("identifier file {}: {e}", path.display()))
            };
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_path(&path)
                .map_err(|e| fail(&e))?;
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| fail(&e))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_owned())
                .collect();
            let position = |name: &str| {
                header
                    .iter()
                    .position(|h| h == name)
                    .ok_or_else(|| fail(&format!("no column {name:?} in the header {header:?}")))
            };
            let id_at = id_column
                .as_deref()
                .map(&position)
                .transpose()?
                .unwrap_or(0);
            let group_at = group_column.as_deref().map(&position).transpose()?;
            let mut groups: BTreeMap<String, usize> = BTreeMap::new();
            let mut rows = Vec::new();
            for record in reader.records() {
                let record = record.map_err(|e| fail(&e))?;
                let Some(id) = rule.canonical(record.get(id_at).unwrap_or("")) else {
                    continue;
                };
                let label = group_at
                    .map_or("all", |g| record.get(g).unwrap_or("").trim())
                    .to_owned();
                let next = groups.len();
                groups.entry(label.clone()).or_insert(next);
                rows.push((id, label));
            }
            if groups.len() > MAX_GROUPS {
                return Err(fail(&format!(
                    "{} groups found, at most {MAX_GROUPS} are allowed: merge groups",
                    groups.len()
                )));
            }
            // Number the groups in label order so the numbering does not depend on row order.
            let labels: Vec<String> = groups.keys().cloned().collect();
            let index: BTreeMap<&String, usize> =
                labels.iter().enumerate().map(|(i, l)| (l, i)).collect();
            let ids = rows
                .iter()
                .map(|(id, label)| (id.clone(), index[label]))
                .collect();
            Ok((ids, labels))
        })
        .await
    }

    fn result(&self, output: &PjcOutput, labels: &[String]) -> Value {
        let labels = if labels.is_empty() {
            vec!["all".to_owned()]
        } else {
            labels.to_vec()
        };
        let groups: serde_json::Map<String, Value> = labels
            .iter()
            .zip(&output.groups)
            .map(|(label, group)| {
                let value = match group {
                    Some(g) => json!({ "persons": g.persons, "rows": g.rows, "sum": g.sum }),
                    None => Value::Null,
                };
                (label.clone(), value)
            })
            .collect();
        json!({ "groups": groups, "threshold": output.threshold,
                "traffic": self.calls.traffic(),
                "epsilon": self.epsilon, "delta": self.policy.query_delta,
                "note": "noisy values; a group below the threshold releases nothing (null)" })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> NodeResult<T> {
        self.calls.call(&self.provider, path, body).await
    }
}
