//! The provider's side: the handshake checks and the answers to each step.

use carrel_model::Reveal;
use carrel_mpc::ids::IdCollector;
use carrel_mpc::psi::PsiParty;
use carrel_mpc::transcript::Transcript;
use serde_json::{Value, json};

use super::{
    Elements, Finish, Hello, HelloReply, MAX_BATCH, PROTOCOL, ProviderRun, blocking, decode,
    encode, hello_bytes, lock, member_lines, protocol_error, record_outcome, rule_of, terms_of,
    write_members,
};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::{self, NewJob};
use crate::node::Node;

/// Handles the consumer's handshake: checks the agreement, reads the product's
/// identifiers and opens the run.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that may not be used,
/// [`NodeError::BadRequest`] for a set above the limit or a different identifier rule.
pub async fn hello(node: &Node, signer: &str, hello: Hello) -> NodeResult<Value> {
    let batch = usize::try_from(hello.batch).unwrap_or(usize::MAX);
    if !(1..=MAX_BATCH).contains(&batch) {
        let error = NodeError::BadRequest(format!(
            "batch of {} elements is invalid: give 1 to {MAX_BATCH}",
            hello.batch
        ));
        return Err(node
            .store
            .reject("psi", signer, Some(&hello.agreement), error));
    }

    // The agreement check, the run count and the job start commit together.
    let (terms, path) = node.store.audited("psi", signer, Some(&hello.agreement), |tx, events| {
        let record = agreements::load_with_offer_totals(tx, &hello.agreement)?;
        crate::query::check_agreement(&record, signer)?;
        let terms = terms_of(&record)?;
        if hello.consumer_size > terms.max_set_size {
            return Err(NodeError::BadRequest(format!(
                "a set of {} identifiers exceeds the agreement's limit of {}: bring a smaller set",
                hello.consumer_size, terms.max_set_size
            )));
        }
        let own_rule = rule_of(&terms).statement();
        if hello.rule != own_rule {
            return Err(NodeError::BadRequest(format!(
                "identifier rules differ: the consumer states {:?}, the provider applies {own_rule:?}; \
                 no blinded element was sent",
                hello.rule
            )));
        }
        tx.execute(
            "UPDATE agreements SET queries_used = queries_used + 1 WHERE id = ?1",
            [&hello.agreement],
        )?;
        let (_, path) = crate::query::dataset_of(tx, &record.signed.agreement.target)?;
        let job = NewJob {
            id: &hello.job,
            kind: "psi",
            role: "provider",
            agreement: Some(&hello.agreement),
            peers: &[signer.to_owned()],
        };
        let detail = json!({ "consumer_size": hello.consumer_size, "rule": own_rule,
                             "consumer_learns": terms.consumer_learns,
                             "provider_learns": terms.provider_learns });
        jobs::insert(tx, events, signer, &job, detail)?;
        Ok((terms, path))
    })?;

    let rule = rule_of(&terms);
    let column = terms.id_column.clone();
    let read = blocking(move || {
        let mut collector = IdCollector::default();
        carrel_query::scan_text_column(&path, &column, |field| {
            collector
                .add(&rule, field)
                .map(|_| ())
                .map_err(|e| NodeError::Io(e.to_string()))
        })?;
        Ok(collector.finish())
    })
    .await;
    let (ids, report) = match read {
        Ok(read) => read,
        Err(error) => {
            jobs::fail(&node.store, signer, &hello.job, &error.to_string())?;
            return Err(error);
        }
    };

    let reply = HelloReply {
        rule: rule.statement(),
        provider_size: ids.len() as u64,
    };
    let mut transcript = Transcript::new(PROTOCOL, &hello.job);
    transcript.append(b"hello", &hello_bytes(&hello, &reply, &terms));
    let party = PsiParty::new(
        ids,
        terms.provider_learns,
        terms.consumer_learns,
        hello.consumer_size as usize,
    );
    node.psi.insert(
        &hello.job,
        ProviderRun {
            consumer: signer.to_owned(),
            agreement: hello.agreement.clone(),
            party,
            transcript,
            batch,
            consumer_learns: terms.consumer_learns,
            next_own: 0,
            shuffled: None,
            report,
        },
    );
    jobs::progress(
        &node.store,
        &hello.job,
        "consumer-elements",
        0,
        hello.consumer_size,
    )?;
    Ok(json!(reply))
}

/// Runs one provider step on the run of `job`; any error ends the job on this node.
async fn provider_step<T: Send + 'static>(
    node: &Node,
    signer: &str,
    job: &str,
    step: impl FnOnce(&mut ProviderRun) -> NodeResult<T> + Send + 'static,
) -> NodeResult<T> {
    let run = node.psi.get(job, signer)?;
    let agreement = lock(&run).agreement.clone();
    // A revocation or the end of validity stops a run already under way.
    let still_valid = agreements::check_in_force(&node.store, &agreement);
    let outcome = match still_valid {
        Ok(()) => blocking(move || step(&mut lock(&run))).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &outcome {
        node.psi.take(job);
        jobs::fail(
            &node.store,
            signer,
            job,
            &format!("the provider stopped the run: {error}"),
        )?;
    }
    outcome
}

/// Step 1: blinds a batch of the consumer's elements again.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for an invalid element or a batch out of order; the job
/// ends.
pub async fn consumer_elements(
    node: &Node,
    signer: &str,
    job: &str,
    batch: Elements,
) -> NodeResult<Value> {
    let (answer, seen) = provider_step(node, signer, job, move |run| {
        let bytes = decode(&batch.points)?;
        let answer = run
            .party
            .answer_peer(batch.start as usize, &bytes)
            .map_err(protocol_error)?;
        run.transcript.append(b"consumer-elements", &bytes);
        run.transcript.append(b"consumer-elements-doubled", &answer);
        Ok((answer, batch.start + (bytes.len() / 32) as u64))
    })
    .await?;
    jobs::progress(&node.store, job, "consumer-elements", seen, 0)?;
    Ok(json!(Elements {
        start: batch.start,
        points: encode(&answer)
    }))
}

/// Step 2: returns the next batch of the provider's own blinded elements.
///
/// # Errors
///
/// [`NodeError::BadRequest`] when `start` is not the next position; the job ends.
pub async fn provider_elements(
    node: &Node,
    signer: &str,
    job: &str,
    request: Elements,
) -> NodeResult<Value> {
    let points = provider_step(node, signer, job, move |run| {
        let start = request.start as usize;
        if start != run.next_own || (start >= run.party.len() && !run.party.is_empty()) {
            return Err(NodeError::BadRequest(format!(
                "provider elements from {start} were requested, but {} is next of {}",
                run.next_own,
                run.party.len()
            )));
        }
        let points = run.party.blind_own(start, run.batch);
        run.next_own += points.len() / 32;
        run.transcript.append(b"provider-elements", &points);
        Ok(points)
    })
    .await?;
    Ok(json!(Elements {
        start: request.start,
        points: encode(&points)
    }))
}

/// Step 3: takes the provider's elements blinded again by the consumer.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for an invalid element or too many; the job ends.
pub async fn provider_doubled(
    node: &Node,
    signer: &str,
    job: &str,
    batch: Elements,
) -> NodeResult<Value> {
    provider_step(node, signer, job, move |run| {
        let bytes = decode(&batch.points)?;
        run.party.take_own_doubled(&bytes).map_err(protocol_error)?;
        run.transcript.append(b"provider-doubled", &bytes);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// Step 4: returns chunk `start` of the consumer's doubly blinded elements, shuffled;
/// only when the consumer learns the size alone.
///
/// # Errors
///
/// [`NodeError::Forbidden`] when the consumer learns something else.
pub async fn consumer_doubled(
    node: &Node,
    signer: &str,
    job: &str,
    request: Elements,
) -> NodeResult<Value> {
    let (points, chunks) = provider_step(node, signer, job, move |run| {
        if run.consumer_learns != Reveal::Size {
            return Err(NodeError::Forbidden(
                "shuffled elements go only to a consumer that learns the size".into(),
            ));
        }
        if run.shuffled.is_none() {
            run.shuffled = Some(
                run.party
                    .shuffled_for_peer(run.batch)
                    .map_err(protocol_error)?,
            );
        }
        let chunks = run.shuffled.as_ref().map_or(0, Vec::len);
        if chunks == 0 {
            return Ok((Vec::new(), 0));
        }
        let chunk = run
            .shuffled
            .as_ref()
            .and_then(|s| s.get(request.start as usize))
            .cloned();
        let points = chunk.ok_or_else(|| {
            NodeError::BadRequest(format!(
                "chunk {} does not exist; there are {chunks}",
                request.start
            ))
        })?;
        run.transcript.append(b"consumer-doubled-shuffled", &points);
        Ok((points, chunks))
    })
    .await?;
    Ok(json!({ "start": request.start, "points": encode(&points), "chunks": chunks }))
}

/// End of the run: compares transcript hashes and records what the provider learned.
///
/// # Errors
///
/// [`NodeError::JobFailed`] when the transcripts differ or the run is incomplete; the
/// job ends.
pub async fn finish(node: &Node, signer: &str, job: &str, finish: Finish) -> NodeResult<Value> {
    let run = node.psi.get(job, signer)?;
    node.psi.take(job);
    let checked = blocking(move || {
        let run = lock(&run);
        let hash = hex::encode(run.transcript.hash());
        if hash != finish.transcript_sha256 {
            return Err(NodeError::JobFailed(format!(
                "transcripts differ: the consumer saw {}, the provider {hash}",
                finish.transcript_sha256
            )));
        }
        let outcome = run
            .party
            .finish()
            .map_err(|e| NodeError::JobFailed(e.to_string()))?;
        let members = outcome
            .members
            .as_ref()
            .map(|m| member_lines(run.party.ids(), m));
        Ok((hash, outcome, members, run.report, run.party.len()))
    })
    .await;
    let (hash, outcome, members, report, own) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            jobs::fail(&node.store, signer, job, &error.to_string())?;
            return Err(error);
        }
    };
    let members = match members
        .as_deref()
        .map(|lines| write_members(node, job, lines))
    {
        Some(Err(error)) => {
            jobs::fail(&node.store, signer, job, &error.to_string())?;
            return Err(error);
        }
        other => other.transpose()?,
    };
    let peer = jobs::show(&node.store, job)?.peers;
    let sizes = (own as u64, 0);
    record_outcome(
        node, signer, job, &hash, &outcome, members, report, sizes, &peer, None,
    )?;
    Ok(json!(Finish {
        transcript_sha256: hash
    }))
}

/// Ends the run of `job` at the consumer's request.
///
/// # Errors
///
/// A storage error.
pub fn abort(node: &Node, signer: &str, job: &str, reason: &str) -> NodeResult<Value> {
    jobs::end_at_peer_request(&node.store, signer, job, reason, || {
        node.psi.take(job);
    })
}
