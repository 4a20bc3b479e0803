//! The consumer's side: it reads its identifiers and drives the run.

use std::sync::{Arc, Mutex};

use carrel_model::{PsiTerms, Reveal};
use carrel_mpc::ids::read_ids;
use carrel_mpc::psi::{DEFAULT_BATCH, PsiParty};
use carrel_mpc::transcript::Transcript;
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Elements, Finish, Hello, HelloReply, MAX_BATCH, PROTOCOL, StartPsi, blocking, decode, encode,
    hello_bytes, member_lines, protocol_error, record_outcome, rule_of, terms_of, write_members,
};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{PeerCalls, end_everywhere};
use crate::jobs::{self, NewJob};
use crate::node::Node;

/// Starts a run from the `carrel psi` command: checks the agreement and the file, then
/// drives the run in the background. Returns the job id at once.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that does not permit the action,
/// [`NodeError::BadRequest`] for an unreadable file or a bad batch size.
pub fn start(node: Arc<Node>, request: StartPsi) -> NodeResult<Value> {
    let me = node.identity.name().to_owned();
    let record = node
        .store
        .read(|c| agreements::load(c, &request.agreement))?;
    let terms = terms_of(&record)
        .map_err(|e| node.store.reject("psi", &me, Some(&request.agreement), e))?;
    let batch = request.batch.unwrap_or(DEFAULT_BATCH);
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(NodeError::BadRequest(format!(
            "batch of {batch} elements is invalid: give 1 to {MAX_BATCH}"
        )));
    }
    super::check_ids_file(&request.ids)?;
    let provider = record.signed.agreement.assigner.clone();
    let job = uuid::Uuid::new_v4().to_string();
    node.store
        .audited("psi", &me, Some(&request.agreement), |tx, events| {
            let new = NewJob {
                id: &job,
                kind: "psi",
                role: "consumer",
                agreement: Some(&request.agreement),
                peers: std::slice::from_ref(&provider),
            };
            let detail = json!({ "ids_file": request.ids.display().to_string(),
                             "consumer_learns": terms.consumer_learns,
                             "provider_learns": terms.provider_learns });
            jobs::insert(tx, events, &me, &new, detail)
        })?;

    let run = ConsumerRun {
        node: node.clone(),
        job: job.clone(),
        provider,
        terms,
        request,
        batch,
        calls: PeerCalls::new(node.clone()),
    };
    tokio::spawn(run.drive());
    Ok(json!({ "job": job, "state": jobs::RUNNING }))
}

struct ConsumerRun {
    node: Arc<Node>,
    job: String,
    provider: String,
    terms: PsiTerms,
    request: StartPsi,
    batch: usize,
    /// Calls to the provider, with their byte counts.
    calls: PeerCalls,
}

impl ConsumerRun {
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
        let node = &self.node;
        let me = node.identity.name().to_owned();
        let rule = rule_of(&self.terms);

        jobs::progress(&node.store, &self.job, "reading identifiers", 0, 0)?;
        let (path, column, limit) = (
            self.request.ids.clone(),
            self.request.column.clone(),
            self.terms.max_set_size,
        );
        let (ids, report) = blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| {
                NodeError::BadRequest(format!(
                    "identifier file {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            read_ids(
                std::io::BufReader::new(file),
                column.as_deref(),
                &rule,
                limit,
            )
            .map_err(|e| NodeError::BadRequest(format!("identifier file {}: {e}", path.display())))
        })
        .await?;

        let hello = Hello {
            job: self.job.clone(),
            agreement: self.request.agreement.clone(),
            rule: rule.statement(),
            consumer_size: ids.len() as u64,
            batch: self.batch as u64,
        };
        let reply: HelloReply = self.call("/jobs/psi", &hello).await?;
        if reply.rule != hello.rule {
            return Err(NodeError::JobFailed(format!(
                "identifier rules differ: this node applies {:?}, the provider {:?}; no blinded \
                 element was sent",
                hello.rule, reply.rule
            )));
        }
        let mut transcript = Transcript::new(PROTOCOL, &self.job);
        transcript.append(b"hello", &hello_bytes(&hello, &reply, &self.terms));
        let own = ids.len();
        let peer = reply.provider_size as usize;
        let party = PsiParty::new(
            ids,
            self.terms.consumer_learns,
            self.terms.provider_learns,
            peer,
        );
        let party = Arc::new(Mutex::new(party));

        self.send_own(&party, &mut transcript, own).await?;
        self.answer_provider(&party, &mut transcript, peer).await?;
        if self.terms.consumer_learns == Reveal::Size {
            self.fetch_shuffled(&party, &mut transcript).await?;
        }

        let hash = hex::encode(transcript.hash());
        let outcome = {
            let party = party.lock().unwrap_or_else(|p| p.into_inner());
            let outcome = party
                .finish()
                .map_err(|e| NodeError::JobFailed(e.to_string()))?;
            let members = outcome
                .members
                .as_ref()
                .map(|m| member_lines(party.ids(), m));
            (outcome, members)
        };
        // The members file is written before the provider commits the run, so a failure
        // to write it still ends the run on both sides.
        let members = outcome
            .1
            .as_deref()
            .map(|lines| write_members(node, &self.job, lines))
            .transpose()?;
        jobs::progress(&node.store, &self.job, "finishing", 0, 0)?;
        let theirs: Finish = self
            .call(
                &format!("/jobs/{}/psi/finish", self.job),
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
        let peers = [self.provider.clone()];
        let sizes = (own as u64, peer as u64);
        let traffic = self.calls.traffic();
        record_outcome(
            node,
            &me,
            &self.job,
            &hash,
            &outcome.0,
            members,
            report,
            sizes,
            &peers,
            Some(traffic),
        )?;
        Ok(())
    }

    async fn send_own(
        &self,
        party: &Arc<Mutex<PsiParty>>,
        transcript: &mut Transcript,
        own: usize,
    ) -> NodeResult<()> {
        let path = format!("/jobs/{}/psi/consumer-elements", self.job);
        for start in (0..own).step_by(self.batch) {
            let batch = self.batch;
            let points = with_party(party, move |p| Ok(p.blind_own(start, batch))).await?;
            let answer: Elements = self
                .call(
                    &path,
                    &Elements {
                        start: start as u64,
                        points: encode(&points),
                    },
                )
                .await?;
            let answer = decode(&answer.points)?;
            transcript.append(b"consumer-elements", &points);
            transcript.append(b"consumer-elements-doubled", &answer);
            if !answer.is_empty() {
                with_party(party, move |p| {
                    p.take_own_doubled(&answer).map_err(protocol_error)
                })
                .await?;
            }
            let done = (start + self.batch).min(own) as u64;
            jobs::progress(
                &self.node.store,
                &self.job,
                "sending own elements",
                done,
                own as u64,
            )?;
        }
        Ok(())
    }

    async fn answer_provider(
        &self,
        party: &Arc<Mutex<PsiParty>>,
        transcript: &mut Transcript,
        peer: usize,
    ) -> NodeResult<()> {
        let pull = format!("/jobs/{}/psi/provider-elements", self.job);
        let push = format!("/jobs/{}/psi/provider-doubled", self.job);
        let mut start = 0;
        while start < peer {
            let batch: Elements = self
                .call(
                    &pull,
                    &Elements {
                        start: start as u64,
                        points: String::new(),
                    },
                )
                .await?;
            let points = decode(&batch.points)?;
            if points.is_empty() {
                return Err(NodeError::JobFailed(format!(
                    "the provider sent no elements at {start}"
                )));
            }
            transcript.append(b"provider-elements", &points);
            let count = points.len() / 32;
            let doubled = with_party(party, move |p| {
                p.answer_peer(start, &points).map_err(protocol_error)
            })
            .await?;
            if !doubled.is_empty() {
                self.call::<Value>(
                    &push,
                    &Elements {
                        start: start as u64,
                        points: encode(&doubled),
                    },
                )
                .await?;
                transcript.append(b"provider-doubled", &doubled);
            }
            start += count;
            jobs::progress(
                &self.node.store,
                &self.job,
                "blinding provider elements",
                start as u64,
                peer as u64,
            )?;
        }
        if self.terms.provider_learns == Reveal::Size {
            let batch = self.batch;
            let chunks = with_party(party, move |p| {
                p.shuffled_for_peer(batch).map_err(protocol_error)
            })
            .await?;
            for chunk in chunks {
                self.call::<Value>(
                    &push,
                    &Elements {
                        start: 0,
                        points: encode(&chunk),
                    },
                )
                .await?;
                transcript.append(b"provider-doubled", &chunk);
            }
        }
        Ok(())
    }

    async fn fetch_shuffled(
        &self,
        party: &Arc<Mutex<PsiParty>>,
        transcript: &mut Transcript,
    ) -> NodeResult<()> {
        let path = format!("/jobs/{}/psi/consumer-doubled", self.job);
        let mut index = 0u64;
        loop {
            let reply: Value = self
                .call(
                    &path,
                    &Elements {
                        start: index,
                        points: String::new(),
                    },
                )
                .await?;
            let chunks = reply["chunks"].as_u64().unwrap_or(0);
            if chunks == 0 {
                return Ok(());
            }
            let points = decode(reply["points"].as_str().unwrap_or(""))?;
            transcript.append(b"consumer-doubled-shuffled", &points);
            with_party(party, move |p| {
                p.take_own_doubled(&points).map_err(protocol_error)
            })
            .await?;
            index += 1;
            if index >= chunks {
                return Ok(());
            }
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> NodeResult<T> {
        self.calls.call(&self.provider, path, body).await
    }
}

/// Runs `f` on the party on a blocking thread.
async fn with_party<T: Send + 'static>(
    party: &Arc<Mutex<PsiParty>>,
    f: impl FnOnce(&mut PsiParty) -> NodeResult<T> + Send + 'static,
) -> NodeResult<T> {
    let party = party.clone();
    blocking(move || f(&mut party.lock().unwrap_or_else(|e| e.into_inner()))).await
}
