//! The host's side: the handshake checks, the set intersection, the training exchanges on
//! the party's own thread, the predictions and the registration of the host's part.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use carrel_learn::logistic::dot;
use carrel_learn::vertical::Plan;
use carrel_model::{AuditEvent, Reveal, TrainingKind, TrainingTerms};
use carrel_mpc::ids::IdRule;
use carrel_mpc::psi::PsiParty;
use carrel_mpc::transcript::Transcript;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::Mutex;

use super::data::read_host_table;
use super::link::{self, Bridge, MAX_MESSAGE_BYTES, PART_BYTES, PartyStart, SharedTranscript};
use super::resume::{self, Resume, Resumed};
use super::{
    Align, Aligned, ExchangePart, ExchangeReply, Finish, Finished, Hello, HelloReply, KIND,
    MAX_PSI_BATCH, MAX_ROWS, PROTOCOL, Predict, Predicted, Registry, ReplyRequest, align_bytes,
    check_plan, hello_bytes, logit_bytes, model_id, operator_of, vertical_terms,
};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{blocking, decode, encode};
use crate::jobs::{self, NewJob};
use crate::models::{self, DatasetRef, ModelPart, ModelRecord};
use crate::node::Node;
use crate::psi::Elements;
use crate::training::dealer::{SeedRequest, decode_seed};

/// Message the guest receives when the host's data fails its checks. The details stay in
/// the host's log because they quote the host's rows.
const DATA_REJECTED: &str = "the provider's dataset failed its checks for training; the \
    provider's job log names the row and column at fault";

/// Runs this node serves as a host, by node and job.
static HOSTS: Registry<HostRun> = Registry::new();

/// Jobs whose resume is under way on this node, so that a guest's retry does not start a
/// second one.
static RESUMING: Registry<()> = Registry::new();

/// Numbers the runs this process starts, so that a run replaced by a resumed one cannot
/// end its successor.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// One training this node serves as the host.
struct HostRun {
    /// Number of this run in the process.
    generation: u64,
    guest: String,
    agreement: String,
    exchange: String,
    state: Mutex<HostState>,
}

struct HostState {
    terms: TrainingTerms,
    operator: String,
    dataset_sha256: String,
    /// Features of the terms' columns, one row per identifier of the set intersection's
    /// own list.
    features: Vec<f64>,
    /// The set intersection, until the rows are aligned; none in a resumed run.
    psi: Option<PsiParty>,
    /// Identifiers the host brought.
    own_rows: u64,
    batch: usize,
    next_own: usize,
    transcript: SharedTranscript,
    clipped: Vec<(String, u64)>,
    blank_ids: u64,
    alignment: Option<Alignment>,
    bridge: Option<Bridge>,
    /// Number of the next exchange.
    seq: u64,
    incoming: Incoming,
    /// Parts of the host's message of the last exchange.
    outgoing: Vec<Vec<u8>>,
    predicted: Option<u64>,
    started: Instant,
    /// Resumes of the training so far.
    resumes: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Alignment {
    plan: Plan,
    intersection: u64,
    train_rows: u64,
    /// Position in the own identifier list of each test identifier.
    test: BTreeMap<String, usize>,
}

/// The host's saved setup, written when the rows are aligned, from which it resumes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HostSetup {
    alignment: Alignment,
    /// Position in the own identifier list of each training row, in training order.
    train: Vec<usize>,
    dataset_sha256: String,
    own_rows: u64,
    blank_ids: u64,
    clipped: Vec<(String, u64)>,
}

/// The parts of the guest's message of the current exchange received so far.
#[derive(Default)]
struct Incoming {
    tag: String,
    parts: u32,
    received: u32,
    bytes: Vec<u8>,
}

/// Handles the guest's handshake: checks the agreement, reads the product's rows and opens
/// the set intersection.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that may not be used for vertical training,
/// [`NodeError::BadRequest`] for a set above the limit or a different identifier rule,
/// [`NodeError::JobFailed`] when the dataset fails its checks.
pub async fn hello(node: Arc<Node>, signer: &str, hello: Hello) -> NodeResult<Value> {
    let batch = usize::try_from(hello.batch).unwrap_or(usize::MAX);
    if !(1..=MAX_PSI_BATCH).contains(&batch) || hello.guest_size > MAX_ROWS {
        let error = NodeError::BadRequest(format!(
            "a batch of {} identifiers and a set of {} are invalid: give 1 to {MAX_PSI_BATCH} \
             and at most {MAX_ROWS}",
            hello.batch, hello.guest_size
        ));
        return Err(node
            .store
            .reject(KIND, signer, Some(&hello.agreement), error));
    }
    let exchange = node.exchange_name()?.to_owned();
    let rule = IdRule::default();

    // The agreement check, the use count and the job start commit together.
    let (record, terms, dataset, path) =
        node.store
            .audited(KIND, signer, Some(&hello.agreement), |tx, events| {
                let record = agreements::load_with_offer_totals(tx, &hello.agreement)?;
                crate::query::check_agreement(&record, signer)?;
                let terms = vertical_terms(&record)?;
                if hello.rule != rule.statement() {
                    return Err(NodeError::BadRequest(format!(
                        "identifier rules differ: the guest states {:?}, the host applies {:?}",
                        hello.rule,
                        rule.statement()
                    )));
                }
                tx.execute(
                    "UPDATE agreements SET queries_used = queries_used + 1 WHERE id = ?1",
                    [&hello.agreement],
                )?;
                let (dataset, path) =
                    crate::query::dataset_of(tx, &record.signed.agreement.target)?;
                let job = NewJob {
                    id: &hello.job,
                    kind: KIND,
                    role: "host",
                    agreement: Some(&hello.agreement),
                    peers: &[signer.to_owned(), exchange.clone()],
                };
                let detail = json!({ "guest_size": hello.guest_size, "rule": rule.statement(),
                                     "dataset": dataset.id, "columns": terms.feature_columns });
                jobs::insert(tx, events, signer, &job, detail)?;
                Ok((record, terms, dataset, path))
            })?;

    jobs::progress(&node.store, &hello.job, "reading the dataset", 0, 0)?;
    let read = {
        let terms = terms.clone();
        let dataset = dataset.clone();
        blocking(move || read_host_table(&path, &dataset, &terms, &rule)).await
    };
    let table = match read {
        Ok(table) => table,
        Err(error) => {
            let reason = format!("the dataset cannot be used for training: {error}");
            jobs::fail(&node.store, signer, &hello.job, &reason)?;
            return Err(NodeError::JobFailed(DATA_REJECTED.into()));
        }
    };
    for (column, count) in table.clipped.iter().filter(|(_, n)| *n > 0) {
        tracing::info!(target: "carrel::training", job = %hello.job, column, clipped = count,
            "values beyond the declared bounds were clipped");
    }

    let reply = HelloReply {
        rule: rule.statement(),
        host_size: table.ids.len() as u64,
        dataset_sha256: dataset.content_sha256.clone(),
    };
    let transcript = SharedTranscript::new(Transcript::new(PROTOCOL, &hello.job));
    transcript.append(b"hello", &hello_bytes(&hello, &reply));
    let own_rows = table.ids.len() as u64;
    let psi = PsiParty::new(
        table.ids,
        Reveal::Intersection,
        Reveal::Intersection,
        hello.guest_size as usize,
    );
    let state = HostState {
        operator: operator_of(&record, &terms),
        terms,
        dataset_sha256: dataset.content_sha256,
        features: table.features,
        psi: Some(psi),
        own_rows,
        batch,
        next_own: 0,
        transcript,
        clipped: table.clipped,
        blank_ids: table.blank_ids,
        alignment: None,
        bridge: None,
        seq: 0,
        incoming: Incoming::default(),
        outgoing: Vec::new(),
        predicted: None,
        started: Instant::now(),
        resumes: 0,
    };
    let run = HostRun {
        generation: next_generation(),
        guest: signer.to_owned(),
        agreement: hello.agreement.clone(),
        exchange,
        state: Mutex::new(state),
    };
    HOSTS.insert(&node, &hello.job, run);
    tracing::info!(target: "carrel::training", job = %hello.job, guest = signer,
        "vertical training started as the host");
    jobs::progress(&node.store, &hello.job, "set intersection", 0, 0)?;
    Ok(json!(reply))
}

/// Returns the run of `job` after checking the signer and that the agreement is in force.
fn checked_run(node: &Arc<Node>, signer: &str, job: &str) -> NodeResult<Arc<HostRun>> {
    let run = HOSTS.find(node, job).ok_or_else(|| NodeError::NotFound {
        what: "running vertical training",
        id: job.to_owned(),
    })?;
    if run.guest != signer {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not the guest of job {job}"
        )));
    }
    // A revocation or the end of validity stops a training under way.
    if let Err(error) = agreements::check_in_force(&node.store, &run.agreement) {
        end_run(
            node,
            &Handle::current(),
            signer,
            job,
            run.generation,
            &error,
        );
        return Err(error);
    }
    Ok(run)
}

/// Ends the job on this node after a failed step of run `generation`, and sends an abort
/// notice to the exchange in the background so that it closes the dealer session. Does
/// nothing when the job ended already or another run replaced this one.
pub(super) fn end_run(
    node: &Arc<Node>,
    handle: &Handle,
    actor: &str,
    job: &str,
    generation: u64,
    error: &NodeError,
) {
    let Some(run) = HOSTS.take_if(node, job, |run| run.generation == generation) else {
        return;
    };
    let reason = format!("the host stopped the training: {error}");
    if let Err(e) = jobs::fail(&node.store, actor, job, &reason) {
        tracing::error!(target: "carrel::training", %job, error = %e, "failure not recorded");
    }
    let node = node.clone();
    let path = format!("/jobs/{job}/abort");
    handle.spawn(async move {
        let body = json!({ "reason": reason });
        if let Err(e) = node.post(&run.exchange, &path, &body).await {
            tracing::debug!(target: "carrel::training", %path, error = %e,
                "abort notice not delivered");
        }
    });
}

/// Ends run `generation` of `job` on this node without ending the job, after its party
/// lost the dealer: the job waits for the guest to resume it.
pub(super) fn interrupt_run(node: &Arc<Node>, job: &str, generation: u64, reason: &str) {
    if HOSTS
        .take_if(node, job, |run| run.generation == generation)
        .is_none()
    {
        return;
    }
    tracing::warn!(target: "carrel::training", %job, reason,
        "vertical training interrupted; waiting for the guest to resume it");
    let phase = "interrupted: waiting for the guest to resume";
    if let Err(error) = jobs::progress(&node.store, job, phase, 0, 0) {
        tracing::warn!(target: "carrel::training", %job, %error, "progress not recorded");
    }
}

/// Passes a step's result through, ending the job on this node when it failed, unless
/// the training is only interrupted.
fn step_result<T>(
    node: &Arc<Node>,
    run: &HostRun,
    signer: &str,
    job: &str,
    result: NodeResult<T>,
) -> NodeResult<T> {
    if let Err(error) = &result
        && !matches!(error, NodeError::Unavailable(_))
    {
        end_run(node, &Handle::current(), signer, job, run.generation, error);
    }
    result
}

/// Runs a step that needs no other await on the state of `job`'s run, and ends the job
/// when the step fails.
async fn locked_step<T>(
    node: &Arc<Node>,
    signer: &str,
    job: &str,
    step: impl FnOnce(&mut HostState) -> NodeResult<T>,
) -> NodeResult<T> {
    let run = checked_run(node, signer, job)?;
    let result = step(&mut *run.state.lock().await);
    step_result(node, &run, signer, job, result)
}

/// Returns the set intersection of a run that has not aligned its rows yet.
fn psi_of(state: &mut HostState) -> NodeResult<&mut PsiParty> {
    state.psi.as_mut().ok_or_else(|| {
        NodeError::BadRequest("the set intersection of this training has ended".into())
    })
}

/// Step 1: blinds a batch of the guest's identifiers again.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for an invalid element or a batch out of order. The job ends.
pub async fn guest_elements(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    batch: Elements,
) -> NodeResult<Value> {
    let answer = locked_step(&node, signer, job, |state| {
        let bytes = decode(&batch.points)?;
        let answer = psi_of(state)?
            .answer_peer(batch.start as usize, &bytes)
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        state.transcript.append(b"guest-elements", &bytes);
        state.transcript.append(b"guest-elements-doubled", &answer);
        Ok(answer)
    })
    .await?;
    Ok(json!(Elements {
        start: batch.start,
        points: encode(&answer)
    }))
}

/// Step 2: returns the next batch of the host's own blinded identifiers.
///
/// # Errors
///
/// [`NodeError::BadRequest`] when `start` is not the next position. The job ends.
pub async fn host_elements(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    request: Elements,
) -> NodeResult<Value> {
    let points = locked_step(&node, signer, job, |state| {
        let start = request.start as usize;
        let (next_own, batch) = (state.next_own, state.batch);
        let psi = psi_of(state)?;
        let len = psi.len();
        if start != next_own || (start >= len && len > 0) {
            return Err(NodeError::BadRequest(format!(
                "host identifiers from {start} were requested, but {next_own} is next of {len}"
            )));
        }
        let points = psi.blind_own(start, batch);
        state.next_own += points.len() / 32;
        state.transcript.append(b"host-elements", &points);
        Ok(points)
    })
    .await?;
    Ok(json!(Elements {
        start: request.start,
        points: encode(&points)
    }))
}

/// Step 3: takes the host's identifiers blinded again by the guest.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for an invalid element or too many. The job ends.
pub async fn host_doubled(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    batch: Elements,
) -> NodeResult<Value> {
    locked_step(&node, signer, job, |state| {
        let bytes = decode(&batch.points)?;
        psi_of(state)?
            .take_own_doubled(&bytes)
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        state.transcript.append(b"host-doubled", &bytes);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// Aligns the rows: ends the set intersection, checks the guest's test identifiers and
/// plan, fetches the host's seed from the exchange and starts the host's party.
///
/// # Errors
///
/// [`NodeError::JobFailed`] when the intersections differ, [`NodeError::BadRequest`] for a
/// test identifier outside the intersection or a plan that does not fit these rows,
/// [`NodeError::Forbidden`] for more epochs than the terms allow. The job ends on each
/// error.
pub async fn align(node: Arc<Node>, signer: &str, job: &str, align: Align) -> NodeResult<Value> {
    let run = checked_run(&node, signer, job)?;
    let result = async {
        let mut state = run.state.lock().await;
        align_rows(&node, &run, &mut state, job, align).await
    }
    .await;
    let aligned = step_result(&node, &run, signer, job, result)?;
    Ok(json!(aligned))
}

async fn align_rows(
    node: &Arc<Node>,
    run: &HostRun,
    state: &mut HostState,
    job: &str,
    align: Align,
) -> NodeResult<Aligned> {
    if state.alignment.is_some() {
        return Err(NodeError::Conflict(format!("job {job} is aligned already")));
    }
    let hash = hex::encode(state.transcript.hash());
    if hash != align.psi_transcript_sha256 {
        return Err(NodeError::JobFailed(format!(
            "the set intersections differ: the guest saw transcript {}, the host {hash}",
            align.psi_transcript_sha256
        )));
    }
    let psi = psi_of(state)?;
    let outcome = psi
        .finish()
        .map_err(|e| NodeError::JobFailed(e.to_string()))?;
    let mut members = outcome.members.unwrap_or_default();
    let ids = psi.ids();
    members.sort_by(|a, b| ids.text(*a).cmp(ids.text(*b)));
    if members.len() as u64 != align.intersection {
        return Err(NodeError::JobFailed(format!(
            "the intersections differ: the guest found {} identifiers, the host {}",
            align.intersection,
            members.len()
        )));
    }

    // Test identifiers: a subset of the intersection, each once.
    let positions: BTreeMap<&str, usize> = members.iter().map(|&i| (ids.text(i), i)).collect();
    let mut test = BTreeMap::new();
    for id in &align.test_ids {
        let position = positions.get(id.as_str()).ok_or_else(|| {
            NodeError::BadRequest(
                "a test identifier is not in the intersection; test rows must be aligned rows"
                    .into(),
            )
        })?;
        if test.insert(id.clone(), *position).is_some() {
            return Err(NodeError::BadRequest(
                "a test identifier appears twice".into(),
            ));
        }
    }
    let held: HashSet<usize> = test.values().copied().collect();
    let train: Vec<usize> = members.into_iter().filter(|i| !held.contains(i)).collect();
    check_plan(&align.plan, &state.terms)?;
    if align.plan.rows != train.len() {
        return Err(NodeError::BadRequest(format!(
            "the plan has {} rows, but the alignment leaves {} training rows",
            align.plan.rows,
            train.len()
        )));
    }
    state.transcript.append(b"align", &align_bytes(&align));

    // The seed comes from the exchange, which checks that the plan is the one it deals for.
    let path = format!("/jobs/{job}/dealer/seed");
    let request = SeedRequest {
        plan: align.plan.clone(),
    };
    let seeded = node.post(&run.exchange, &path, &request).await?;
    let seed = decode_seed(seeded["host_seed"].as_str().unwrap_or_default())?;
    let serving = seeded["serving"].as_u64().unwrap_or_default();

    let aligned = Aligned {
        intersection: align.intersection,
        train_rows: train.len() as u64,
        test_rows: test.len() as u64,
    };
    let setup = HostSetup {
        alignment: Alignment {
            plan: align.plan,
            intersection: aligned.intersection,
            train_rows: aligned.train_rows,
            test,
        },
        train,
        dataset_sha256: state.dataset_sha256.clone(),
        own_rows: state.own_rows,
        blank_ids: state.blank_ids,
        clipped: state.clipped.clone(),
    };
    resume::save_setup(&node.store, job, "host", &setup, state.transcript.hash())?;
    let start = PartyStart {
        plan: setup.alignment.plan.clone(),
        seed,
        features: train_features(&state.features, &setup),
        checkpoint: None,
        transcript: state.transcript.clone(),
        generation: run.generation,
        serving,
    };
    state.bridge = Some(link::start_party(node, &run.exchange, job, start).await?);
    state.psi = None;
    state.alignment = Some(setup.alignment);
    jobs::progress(&node.store, job, "training", 0, 0)?;
    Ok(aligned)
}

/// Returns the host's features of the training rows, in training order.
fn train_features(features: &[f64], setup: &HostSetup) -> Vec<f64> {
    let k = setup.alignment.plan.host_features;
    setup
        .train
        .iter()
        .flat_map(|&i| features[i * k..(i + 1) * k].iter().copied())
        .collect()
}

/// Resumes the training at the guest's request, from the latest epoch for which both
/// parties have the same history. The host rebuilds its rows from the dataset and the saved
/// alignment, fetches its new seed from the exchange and starts the party from its shares
/// at that epoch. A run this process still has is replaced.
///
/// # Errors
///
/// [`NodeError::NotFound`] for a job this node does not host, [`NodeError::Forbidden`]
/// for a signer other than its guest or an agreement no longer in force,
/// [`NodeError::Conflict`] for a job that ended. [`NodeError::JobFailed`] when the
/// histories share no epoch or the dataset changed; the job ends then.
/// [`NodeError::Unavailable`] when the exchange cannot be reached; the job waits.
pub async fn resume(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    request: Resume,
) -> NodeResult<Value> {
    let view = jobs::show(&node.store, job)?;
    if view.kind != KIND || view.role != "host" {
        return Err(NodeError::NotFound {
            what: "vertical training hosted here",
            id: job.to_owned(),
        });
    }
    if view.peers.first().map(String::as_str) != Some(signer) {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not the guest of job {job}"
        )));
    }
    if view.state != jobs::RUNNING {
        return Err(NodeError::Conflict(format!(
            "job {job} has ended ({}); start a new training",
            view.state
        )));
    }
    let agreement = view
        .agreement
        .clone()
        .ok_or_else(|| NodeError::Internal(format!("vertical job {job} has no agreement")))?;
    if !RESUMING.insert_new(&node, job, ()) {
        return Err(NodeError::Unavailable(format!(
            "a resume of job {job} is under way; try again when it ends"
        )));
    }
    let result = resume_run(&node, signer, job, &agreement, request).await;
    RESUMING.take(&node, job);
    match &result {
        Err(error @ (NodeError::JobFailed(_) | NodeError::Forbidden(_))) => {
            let reason = format!("the host could not resume the training: {error}");
            jobs::fail(&node.store, signer, job, &reason)?;
        }
        Err(error) => {
            tracing::warn!(target: "carrel::training", %job, %error, "training not resumed yet");
        }
        Ok(_) => {}
    }
    Ok(json!(result?))
}

async fn resume_run(
    node: &Arc<Node>,
    signer: &str,
    job: &str,
    agreement: &str,
    request: Resume,
) -> NodeResult<Resumed> {
    agreements::check_in_force(&node.store, agreement)?;
    let saved = resume::load::<HostSetup>(&node.store, job)?.ok_or_else(|| {
        NodeError::JobFailed(format!(
            "job {job} stopped before its rows were aligned, so it cannot resume"
        ))
    })?;
    resume::check_resumes(&saved, job)?;
    // A run this process still has waits for a guest that has restarted.
    HOSTS.take(node, job);
    let mark = resume::common_mark(&saved.marks, &request.marks)?.clone();
    let checkpoint = mark.checkpoint()?;
    let setup = saved.setup;

    let (record, dataset, path) = node.store.read(|c| {
        let record = agreements::load(c, agreement)?;
        let (dataset, path) = crate::query::dataset_of(c, &record.signed.agreement.target)?;
        Ok((record, dataset, path))
    })?;
    let terms = vertical_terms(&record)?;
    if dataset.content_sha256 != setup.dataset_sha256 {
        return Err(NodeError::JobFailed(
            "the product's dataset changed since the training started, so the training              cannot resume; start a new one"
                .into(),
        ));
    }
    let table = {
        let terms = terms.clone();
        blocking(move || read_host_table(&path, &dataset, &terms, &IdRule::default())).await
    }
    .map_err(|error| {
        tracing::error!(target: "carrel::training", %job, %error, "dataset not read to resume");
        NodeError::JobFailed(DATA_REJECTED.into())
    })?;
    if table.ids.len() as u64 != setup.own_rows {
        return Err(NodeError::JobFailed(DATA_REJECTED.into()));
    }

    let exchange = node.exchange_name()?.to_owned();
    let plan = setup.alignment.plan.clone();
    let seeded = node
        .post(
            &exchange,
            &format!("/jobs/{job}/dealer/seed"),
            &SeedRequest { plan: plan.clone() },
        )
        .await
        .map_err(|error| {
            if link::lost_peer(&error) {
                NodeError::Unavailable(format!("the dealer cannot serve the host's seed: {error}"))
            } else {
                error
            }
        })?;
    let seed = decode_seed(seeded["host_seed"].as_str().unwrap_or_default())?;
    let serving = seeded["serving"].as_u64().unwrap_or_default();
    let transcript = SharedTranscript::new(resume::resumed_transcript(job, &mark));
    let generation = next_generation();
    let start = PartyStart {
        plan: plan.clone(),
        seed,
        features: train_features(&table.features, &setup),
        checkpoint,
        transcript: transcript.clone(),
        generation,
        serving,
    };
    let bridge = link::start_party(node, &exchange, job, start).await?;
    let resumes = resume::rewind(&node.store, job, mark.epoch)?;

    let state = HostState {
        operator: operator_of(&record, &terms),
        terms,
        dataset_sha256: setup.dataset_sha256,
        features: table.features,
        psi: None,
        own_rows: setup.own_rows,
        batch: 0,
        next_own: 0,
        transcript,
        clipped: setup.clipped,
        blank_ids: setup.blank_ids,
        alignment: Some(setup.alignment),
        bridge: Some(bridge),
        seq: 0,
        incoming: Incoming::default(),
        outgoing: Vec::new(),
        predicted: None,
        started: Instant::now(),
        resumes,
    };
    let run = HostRun {
        generation,
        guest: signer.to_owned(),
        agreement: agreement.to_owned(),
        exchange,
        state: Mutex::new(state),
    };
    HOSTS.insert(node, job, run);
    let me = node.identity.name().to_owned();
    node.store
        .audited("vertical.resume", &me, Some(agreement), |_, events| {
            let detail = json!({ "job": job, "epoch": mark.epoch, "guest": signer,
                                 "resumes": resumes });
            events.push(
                AuditEvent::now("vertical.resumed", &me, true, detail).with_agreement(agreement),
            );
            Ok(())
        })?;
    tracing::info!(target: "carrel::training", %job, epoch = mark.epoch,
        "vertical training resumed as the host");
    jobs::progress(
        &node.store,
        job,
        &format!("epoch {} of {}", mark.epoch, plan.epochs),
        u64::from(mark.epoch),
        u64::from(plan.epochs),
    )?;
    Ok(Resumed { epoch: mark.epoch })
}

/// One training exchange: takes a part of the guest's message and, after the last part,
/// returns the host's message of the same exchange.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for a wrong sequence number, part or tag. The job ends.
pub async fn exchange(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    part: ExchangePart,
) -> NodeResult<Value> {
    let run = checked_run(&node, signer, job)?;
    let result = async {
        let mut state = run.state.lock().await;
        exchange_step(&mut state, part).await
    }
    .await;
    let reply = step_result(&node, &run, signer, job, result)?;
    Ok(json!(reply))
}

async fn exchange_step(state: &mut HostState, part: ExchangePart) -> NodeResult<ExchangeReply> {
    if state.bridge.is_none() {
        return Err(NodeError::BadRequest(
            "the training has not started: align the rows first".into(),
        ));
    }
    if part.seq != state.seq {
        return Err(NodeError::BadRequest(format!(
            "exchange {} arrived where exchange {} was due",
            part.seq, state.seq
        )));
    }
    let max_parts = (MAX_MESSAGE_BYTES / PART_BYTES) as u32;
    if part.parts == 0 || part.parts > max_parts {
        return Err(NodeError::BadRequest(format!(
            "a message of {} parts is invalid: give 1 to {max_parts}",
            part.parts
        )));
    }
    if part.part == 0 {
        state.incoming = Incoming {
            tag: part.tag.clone(),
            parts: part.parts,
            received: 0,
            bytes: Vec::new(),
        };
    }
    let incoming = &mut state.incoming;
    if part.part != incoming.received || part.parts != incoming.parts || part.tag != incoming.tag {
        return Err(NodeError::BadRequest(format!(
            "part {} of {} ({}) arrived where part {} of {} ({}) of exchange {} was due",
            part.part,
            part.parts,
            part.tag,
            incoming.received,
            incoming.parts,
            incoming.tag,
            part.seq
        )));
    }
    incoming.bytes.extend(decode(&part.body)?);
    incoming.received += 1;
    if incoming.bytes.len() > MAX_MESSAGE_BYTES {
        return Err(NodeError::BadRequest(format!(
            "the guest's {} message exceeds {MAX_MESSAGE_BYTES} bytes",
            incoming.tag
        )));
    }
    if incoming.received < incoming.parts {
        return Ok(ExchangeReply {
            seq: part.seq,
            parts: 0,
            body: String::new(),
        });
    }
    let guest_message = std::mem::take(&mut incoming.bytes);

    // The party's tag names the exchange its protocol is at, and the guest's must match it.
    let bridge = state.bridge.as_mut().expect("checked above");
    let (tag, host_message) = bridge.next_message().await?;
    if tag != part.tag {
        return Err(NodeError::BadRequest(format!(
            "the guest sent a {} message where the host's protocol is at {tag}",
            part.tag
        )));
    }
    state.transcript.append(tag.as_bytes(), &guest_message);
    state.transcript.append(tag.as_bytes(), &host_message);
    bridge.deliver(guest_message)?;
    state.seq += 1;

    let pieces = link::parts(&host_message);
    let parts = link::part_count(&pieces)?;
    let first = encode(pieces[0]);
    state.outgoing = pieces.iter().map(|p| p.to_vec()).collect();
    Ok(ExchangeReply {
        seq: part.seq,
        parts,
        body: first,
    })
}

/// Returns a further part of the host's message of the last exchange.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for another exchange or a part that does not exist. The job
/// ends.
pub async fn reply(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    request: ReplyRequest,
) -> NodeResult<Value> {
    let piece = locked_step(&node, signer, job, |state| {
        let last = state.seq.checked_sub(1);
        let piece = state.outgoing.get(request.part as usize);
        match (last, piece) {
            (Some(seq), Some(piece)) if seq == request.seq && request.part > 0 => {
                Ok(ExchangeReply {
                    seq,
                    parts: state.outgoing.len() as u32,
                    body: encode(piece),
                })
            }
            _ => Err(NodeError::BadRequest(format!(
                "part {} of exchange {} is not available",
                request.part, request.seq
            ))),
        }
    })
    .await?;
    Ok(json!(piece))
}

/// Returns the host's partial logits on test rows, once per job, as one use of the
/// agreement.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for an identifier that is not a test identifier of the
/// alignment, [`NodeError::Forbidden`] for more rows than the terms allow or an agreement
/// without uses left. The job ends on each error.
pub async fn predict(
    node: Arc<Node>,
    signer: &str,
    job: &str,
    request: Predict,
) -> NodeResult<Value> {
    let run = checked_run(&node, signer, job)?;
    let result = async {
        let mut state = run.state.lock().await;
        predict_rows(&node, &run, &mut state, signer, job, request).await
    }
    .await;
    let logits = step_result(&node, &run, signer, job, result)?;
    Ok(json!(Predicted { logits }))
}

async fn predict_rows(
    node: &Node,
    run: &HostRun,
    state: &mut HostState,
    signer: &str,
    job: &str,
    request: Predict,
) -> NodeResult<Vec<f64>> {
    if state.predicted.is_some() {
        return Err(NodeError::Conflict(format!(
            "the predictions of job {job} were returned already"
        )));
    }
    let alignment = state
        .alignment
        .as_ref()
        .ok_or_else(|| NodeError::BadRequest("the rows are not aligned yet".into()))?;
    let mut rows = Vec::with_capacity(request.ids.len());
    let mut seen = HashSet::new();
    for id in &request.ids {
        match alignment.test.get(id) {
            Some(&row) if seen.insert(row) => rows.push(row),
            _ => {
                return Err(NodeError::BadRequest(
                    "predictions are returned once for each test identifier of the alignment \
                     only"
                        .into(),
                ));
            }
        }
    }
    let weights = state
        .bridge
        .as_mut()
        .ok_or_else(|| NodeError::BadRequest("the training has not started".into()))?
        .outcome()
        .await?
        .weights
        .clone();

    // The predictions are a use of the agreement, within its row limit.
    let count = rows.len() as u64;
    node.store.audited(
        "vertical.predict",
        signer,
        Some(&run.agreement),
        |tx, events| {
            let record = agreements::load_with_offer_totals(tx, &run.agreement)?;
            crate::query::check_agreement(&record, signer)?;
            let terms = vertical_terms(&record)?;
            if count > terms.max_prediction_rows {
                return Err(NodeError::Forbidden(format!(
                    "predictions on {count} rows exceed the agreement's max_prediction_rows \
                     of {}",
                    terms.max_prediction_rows
                )));
            }
            tx.execute(
                "UPDATE agreements SET queries_used = queries_used + 1 WHERE id = ?1",
                [&run.agreement],
            )?;
            let detail = json!({ "job": job, "model": model_id(job), "rows": count });
            events.push(
                AuditEvent::now("vertical.predicted", signer, true, detail)
                    .with_agreement(&run.agreement),
            );
            Ok(())
        },
    )?;

    let k = state.terms.feature_columns.len();
    let logits: Vec<f64> = rows
        .iter()
        .map(|&i| dot(&state.features[i * k..(i + 1) * k], &weights))
        .collect();
    let ids = serde_json::to_vec(&request.ids).map_err(|e| NodeError::Internal(e.to_string()))?;
    state.transcript.append(b"predict", &ids);
    state.transcript.append(b"predicted", &logit_bytes(&logits));
    state.predicted = Some(count);
    jobs::progress(&node.store, job, "predictions returned", count, count)?;
    Ok(logits)
}

/// Ends the job: compares the transcript hashes and registers the host's part of the
/// model.
///
/// # Errors
///
/// [`NodeError::JobFailed`] when the transcripts differ or the training did not finish;
/// the job ends.
pub async fn finish(node: Arc<Node>, signer: &str, job: &str, finish: Finish) -> NodeResult<Value> {
    let run = checked_run(&node, signer, job)?;
    let result = async {
        let mut state = run.state.lock().await;
        register_part(&node, &run, &mut state, signer, job, finish).await
    }
    .await;
    let finished = step_result(&node, &run, signer, job, result)?;
    HOSTS.take_if(&node, job, |current| current.generation == run.generation);
    Ok(json!(finished))
}

async fn register_part(
    node: &Node,
    run: &HostRun,
    state: &mut HostState,
    signer: &str,
    job: &str,
    finish: Finish,
) -> NodeResult<Finished> {
    let hash = hex::encode(state.transcript.hash());
    if hash != finish.transcript_sha256 {
        return Err(NodeError::JobFailed(format!(
            "transcripts differ: the guest saw {}, the host {hash}",
            finish.transcript_sha256
        )));
    }
    if finish.guest_dataset.holder != run.guest {
        return Err(NodeError::BadRequest(format!(
            "the guest's dataset is held by {:?}, not by the guest {:?}",
            finish.guest_dataset.holder, run.guest
        )));
    }
    let outcome = state
        .bridge
        .as_mut()
        .ok_or_else(|| NodeError::BadRequest("the training has not started".into()))?
        .outcome()
        .await?
        .clone();
    let alignment = state
        .alignment
        .as_ref()
        .ok_or_else(|| NodeError::BadRequest("the rows are not aligned yet".into()))?;

    let me = node.identity.name().to_owned();
    let mut parties = vec![run.guest.clone(), me.clone()];
    parties.sort();
    let host_dataset = DatasetRef {
        holder: me.clone(),
        sha256: state.dataset_sha256.clone(),
        rows: alignment.train_rows,
    };
    let record = ModelRecord {
        id: model_id(job),
        job: job.to_owned(),
        kind: TrainingKind::Vertical,
        role: "host".into(),
        operator: state.operator.clone(),
        parties,
        agreements: vec![run.agreement.clone()],
        datasets: vec![finish.guest_dataset, host_dataset],
        rounds: outcome.epochs,
        epsilon: 0.0,
        delta: 0.0,
        part: ModelPart {
            columns: state.terms.feature_columns.clone(),
            weights: outcome.weights.clone(),
            intercept: None,
        },
        evaluation: None,
    };
    node.store
        .audited("model.register", &me, Some(&run.agreement), |tx, events| {
            models::register(tx, events, &me, &record)
        })?;

    let clipped: serde_json::Map<String, Value> = state
        .clipped
        .iter()
        .map(|(column, count)| (column.clone(), json!(count)))
        .collect();
    let result = json!({
        "model": record.id,
        "rows": { "own": state.own_rows, "intersection": alignment.intersection,
                  "train": alignment.train_rows, "test": alignment.test.len(),
                  "blank_ids": state.blank_ids },
        "clipped": clipped,
        "epochs": outcome.epochs,
        "planned_epochs": alignment.plan.epochs,
        "stopped_early": outcome.stopped_early,
        "predicted_rows": state.predicted.unwrap_or(0),
        "resumes": state.resumes,
        "part_sha256": record.part.sha256(),
        "seconds": state.started.elapsed().as_secs_f64(),
    });
    jobs::succeed(&node.store, signer, job, &hash, result)?;
    tracing::info!(target: "carrel::training", %job, model = %record.id,
        "the host's part of the model is registered");
    Ok(Finished {
        transcript_sha256: hash,
        model: record.id,
    })
}

/// Ends the vertical training `job` at a peer's request: the host's run or the dealer's
/// session, whichever this node keeps.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a signer that is not a party to the job.
pub fn abort(node: &Node, signer: &str, job: &str, reason: &str) -> NodeResult<Value> {
    jobs::end_at_peer_request(&node.store, signer, job, reason, || {
        HOSTS.take(node, job);
        crate::training::dealer::drop_session(node, job);
    })
}
