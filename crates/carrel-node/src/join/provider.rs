//! The provider's side: agreement and budget checks, then the value party's steps.

use std::sync::{Arc, Mutex};

use carrel_mpc::pjc::{Message1, Message3, ValueParty};
use carrel_mpc::transcript::Transcript;
use rusqlite::params as sql_params;
use serde_json::{Value, json};

use super::{
    Blob, CHUNK, Finish, Open, PROTOCOL, ProviderJoin, blocking, decode, encode, params,
    protocol_error, rule_of, terms_of,
};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::{self, NewJob};
use crate::node::Node;

/// Step 1: checks the agreement, charges the budget, reads the product's rows and
/// answers message 1.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that may not be used,
/// [`NodeError::BadRequest`] for a different identifier rule or an invalid message,
/// [`NodeError::BudgetExceeded`].
pub async fn open(node: Arc<Node>, signer: &str, open: Open) -> NodeResult<Value> {
    let message1 = decode(&open.message1)?;
    let (params, terms, path) =
        node.store
            .audited("join", signer, Some(&open.agreement), |tx, events| {
                let record = agreements::load_with_offer_totals(tx, &open.agreement)?;
                crate::query::check_agreement(&record, signer)?;
                let terms = terms_of(&record)?;
                let policy = &record.signed.agreement.policy;
                let own_rule = rule_of(&terms).statement();
                if open.rule != own_rule {
                    return Err(NodeError::BadRequest(format!(
                        "identifier rules differ: the consumer states {:?}, the provider applies \
                 {own_rule:?}; nothing was computed",
                        open.rule
                    )));
                }
                let params = params(&open.job, policy, &terms, open.epsilon);
                params
                    .validate()
                    .map_err(|e| NodeError::BadRequest(e.to_string()))?;
                crate::query::check_budget(&record, policy, params.epsilon, params.delta)?;
                tx.execute(
                    "UPDATE agreements SET queries_used = queries_used + 1,
             epsilon_spent = epsilon_spent + ?1, delta_spent = delta_spent + ?2 WHERE id = ?3",
                    sql_params![params.epsilon, params.delta, open.agreement],
                )?;
                let (_, path) = crate::query::dataset_of(tx, &record.signed.agreement.target)?;
                let new = NewJob {
                    id: &open.job,
                    kind: "join",
                    role: "provider",
                    agreement: Some(&open.agreement),
                    peers: &[signer.to_owned()],
                };
                let detail = json!({ "epsilon": params.epsilon, "delta": params.delta,
                             "rule": own_rule, "price": policy.price_per_query });
                jobs::insert(tx, events, signer, &new, detail)?;
                Ok((params, terms, path))
            })?;

    let header = json!({ "job": open.job, "agreement": open.agreement, "rule": open.rule,
                         "epsilon": open.epsilon });
    let run = Arc::new(Mutex::new(ProviderJoin {
        consumer: signer.to_owned(),
        agreement: open.agreement.clone(),
        responded: None,
        message2: None,
        transcript: None,
        failure: None,
    }));
    node.join.lock().insert(open.job.clone(), run.clone());
    jobs::progress(&node.store, &open.job, "preparing the answer", 0, 0)?;

    // Key generation and encryption take longer than one request may, so the answer is
    // prepared in the background and the consumer fetches it when it is ready.
    let (signer, job) = (signer.to_owned(), open.job.clone());
    tokio::spawn(async move {
        let answered = blocking(move || {
            let rule = rule_of(&terms);
            let mut rows: Vec<(String, f64)> = Vec::new();
            carrel_query::scan_id_values(
                &path,
                &terms.id_column,
                &terms.value_column,
                |id, value| {
                    if let (Some(id), Some(value)) = (rule.canonical(id), value) {
                        rows.push((id, value));
                    }
                    Ok::<(), NodeError>(())
                },
            )?;
            let message1 =
                Message1::from_bytes(&message1, params.max_set_size).map_err(protocol_error)?;
            let party = ValueParty::new(&params, &rows).map_err(protocol_error)?;
            let (responded, message2) = party.respond(&message1).map_err(protocol_error)?;
            Ok((message1.to_bytes(), responded, message2.to_bytes()))
        })
        .await;
        let outcome = match answered {
            Ok((message1, responded, message2)) => {
                let mut transcript = Transcript::new(PROTOCOL, &job);
                transcript.append(b"open", header.to_string().as_bytes());
                transcript.append(b"message1", &message1);
                transcript.append(b"message2", &message2);
                let mut run = run.lock().unwrap_or_else(|p| p.into_inner());
                run.responded = Some(responded);
                run.message2 = Some(message2);
                run.transcript = Some(transcript);
                jobs::progress(
                    &node.store,
                    &job,
                    "answered; waiting for the masked sums",
                    0,
                    0,
                )
            }
            Err(error) => {
                run.lock().unwrap_or_else(|p| p.into_inner()).failure = Some(error.to_string());
                jobs::fail(&node.store, &signer, &job, &error.to_string())
            }
        };
        if let Err(error) = outcome {
            tracing::error!(target: "carrel::join", %job, %error, "job state not recorded");
        }
    });
    Ok(json!(Blob {
        index: 0,
        chunks: 0,
        data: String::new()
    }))
}

fn run_of(node: &Node, signer: &str, job: &str) -> NodeResult<Arc<Mutex<ProviderJoin>>> {
    let run = node
        .join
        .lock()
        .get(job)
        .cloned()
        .ok_or_else(|| NodeError::NotFound {
            what: "running private join",
            id: job.to_owned(),
        })?;
    if run.lock().unwrap_or_else(|p| p.into_inner()).consumer != signer {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not the consumer of job {job}"
        )));
    }
    Ok(run)
}

/// Step 2: returns one chunk of message 2.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for a chunk number out of range.
pub fn message2(node: &Node, signer: &str, job: &str, request: Blob) -> NodeResult<Value> {
    let run = run_of(node, signer, job)?;
    let run = run.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(reason) = &run.failure {
        node.join.lock().remove(job);
        return Err(NodeError::JobFailed(reason.clone()));
    }
    let Some(message2) = &run.message2 else {
        // Not ready yet: no chunks.
        return Ok(json!(Blob::default()));
    };
    let chunks = message2.len().div_ceil(CHUNK);
    let start = request.index.saturating_mul(CHUNK);
    if request.index >= chunks {
        return Err(NodeError::BadRequest(format!(
            "chunk {} does not exist; message 2 has {chunks}",
            request.index
        )));
    }
    let end = (start + CHUNK).min(message2.len());
    Ok(json!(Blob {
        index: request.index,
        chunks,
        data: encode(&message2[start..end])
    }))
}

/// Step 3: decrypts the masked sums and adds the noise.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for an invalid message 3; the job ends.
pub async fn release(node: &Node, signer: &str, job: &str, request: Blob) -> NodeResult<Value> {
    let run = run_of(node, signer, job)?;
    let agreement = run
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .agreement
        .clone();
    let bytes = decode(&request.data);
    let in_force = agreements::check_in_force(&node.store, &agreement);
    let released = blocking(move || {
        in_force?;
        let bytes = bytes?;
        let mut run = run.lock().unwrap_or_else(|p| p.into_inner());
        let responded = run.responded.take().ok_or_else(|| {
            NodeError::Conflict("the sums of this run were released already".into())
        })?;
        let message3 =
            Message3::from_bytes(&bytes, responded.public_key()).map_err(protocol_error)?;
        let message4 = responded
            .release(&message3)
            .map_err(protocol_error)?
            .to_bytes();
        let transcript = run.transcript.as_mut().ok_or_else(|| {
            NodeError::Conflict(
                "message 2 is not ready yet: fetch it before sending message 3".into(),
            )
        })?;
        transcript.append(b"message3", &bytes);
        transcript.append(b"message4", &message4);
        Ok(message4)
    })
    .await;
    match released {
        Ok(message4) => Ok(json!(Blob {
            index: 0,
            chunks: 1,
            data: encode(&message4)
        })),
        Err(error) => {
            node.join.lock().remove(job);
            jobs::fail(&node.store, signer, job, &error.to_string())?;
            Err(error)
        }
    }
}

/// End of the run: compares transcript hashes and records the run.
///
/// # Errors
///
/// [`NodeError::JobFailed`] when the transcripts differ.
pub fn finish(node: &Node, signer: &str, job: &str, finish: Finish) -> NodeResult<Value> {
    let run = run_of(node, signer, job)?;
    node.join.lock().remove(job);
    let hash = run
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .transcript
        .as_ref()
        .map_or_else(String::new, |t| hex::encode(t.hash()));
    if hash != finish.transcript_sha256 {
        let error = NodeError::JobFailed(format!(
            "transcripts differ: the consumer saw {}, the provider {hash}",
            finish.transcript_sha256
        ));
        jobs::fail(&node.store, signer, job, &error.to_string())?;
        return Err(error);
    }
    jobs::succeed(
        &node.store,
        signer,
        job,
        &hash,
        json!({ "released_to": signer }),
    )?;
    Ok(json!(Finish {
        transcript_sha256: hash
    }))
}

/// Ends the run of `job` at the consumer's request.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a caller that is not a party to the job.
pub fn abort(node: &Node, signer: &str, job: &str, reason: &str) -> NodeResult<Value> {
    jobs::end_at_peer_request(&node.store, signer, job, reason, || {
        node.join.lock().remove(job);
    })
}
