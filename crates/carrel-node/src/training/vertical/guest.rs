//! The guest's side: it checks the request, reads its data, and drives the alignment, the
//! dealer session, the training, the evaluation and the registration.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use carrel_learn::logistic::dot;
use carrel_learn::vertical::{
    Checkpoint, EarlyStopping, EpochReport, GuestCorrelation, Outcome, Party, Plan, Seed,
};
use carrel_model::{Reveal, TrainingKind, TrainingTerms};
use carrel_mpc::ids::IdRule;
use carrel_mpc::psi::{DEFAULT_BATCH, PsiParty};
use carrel_mpc::transcript::Transcript;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::runtime::Handle;

use super::super::StartTraining;
use super::data::{GuestTable, read_guest_table};
use super::link::{self, GuestLink, SharedTranscript};
use super::report::{self, Scored};
use super::resume::{self, Resume, Resumed};
use super::{
    Align, Aligned, Finish, Finished, Hello, HelloReply, KIND, PROTOCOL, Predict, Predicted,
    align_bytes, check_plan, hello_bytes, logit_bytes, model_id, operator_of, vertical_terms,
};
use crate::agreements::{self, AgreementRecord};
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{PeerCalls, blocking, decode, encode, end_everywhere};
use crate::jobs::{self, JobView, NewJob};
use crate::models::{self, DatasetRef, ModelPart, ModelRecord};
use crate::node::Node;
use crate::psi::Elements;
use crate::store::Store;
use crate::training::dealer::{DealerOpened, OpenDealer, decode_seed};

/// Starts a vertical training from the `carrel train` command: checks the agreement, the
/// files and the settings, then drives the job in the background. Returns the job id at
/// once.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that does not permit vertical training by
/// this node, [`NodeError::BadRequest`] for a missing file or an invalid setting.
pub fn start(node: Arc<Node>, request: StartTraining) -> NodeResult<Value> {
    let me = node.identity.name().to_owned();
    check_options(&request)?;
    let agreement = request.agreements[0].clone();
    let record = node.store.read(|c| agreements::load(c, &agreement))?;
    let terms =
        guest_terms(&record, &me).map_err(|e| node.store.reject(KIND, &me, Some(&agreement), e))?;
    agreements::check_in_force(&node.store, &agreement)?;
    let settings = Settings::from_request(&request, &terms)?;
    if let Some(data) = &request.data {
        check_file(data, "data file")?;
    }
    if let Some(split) = &request.split_file {
        check_file(split, "split file")?;
    }

    let host = record.signed.agreement.assigner.clone();
    let exchange = node.exchange_name()?.to_owned();
    let job = uuid::Uuid::new_v4().to_string();
    node.store
        .audited(KIND, &me, Some(&agreement), |tx, events| {
            let new = NewJob {
                id: &job,
                kind: KIND,
                role: "guest",
                agreement: Some(&agreement),
                peers: &[host.clone(), exchange.clone()],
            };
            let detail = json!({ "data_file": request.data, "split_file": request.split_file,
                                 "split": request.split, "epochs": settings.epochs });
            jobs::insert(tx, events, &me, &new, detail)
        })?;

    tracing::info!(target: "carrel::training", %job, %agreement, "vertical training started");
    let run = GuestRun::new(
        node,
        job.clone(),
        request,
        &record,
        terms,
        settings,
        exchange,
    );
    tokio::spawn(run.drive(None));
    Ok(json!({ "job": job, "state": jobs::RUNNING }))
}

/// Continues, after a restart, every vertical training that this node drove as the guest,
/// and marks the trainings it hosts as waiting for their guest.
pub async fn resume_running(node: Arc<Node>) {
    for job in jobs::running_at_start(&node.store, KIND) {
        match job.role.as_str() {
            "guest" => {
                if let Err(error) = resume_guest(&node, &job) {
                    end_everywhere(&node, &job.id, &job.peers, &error).await;
                }
            }
            "host" => {
                let phase = "interrupted: waiting for the guest to resume";
                if let Err(error) = jobs::progress(&node.store, &job.id, phase, 0, 0) {
                    tracing::warn!(target: "carrel::training", job = %job.id, %error,
                        "progress not recorded");
                }
            }
            _ => {}
        }
    }
}

/// Starts driving a guest's job again from its saved setup.
fn resume_guest(node: &Arc<Node>, job: &JobView) -> NodeResult<()> {
    let saved = resume::load::<GuestSetup>(&node.store, &job.id)?.ok_or_else(|| {
        NodeError::Internal(format!("job {} has no saved setup to resume from", job.id))
    })?;
    let agreement = job
        .agreement
        .clone()
        .ok_or_else(|| NodeError::Internal(format!("vertical job {} has no agreement", job.id)))?;
    let record = node.store.read(|c| agreements::load(c, &agreement))?;
    let terms = guest_terms(&record, node.identity.name())?;
    let request = saved.setup.request.clone();
    let settings = Settings::from_request(&request, &terms)?;
    let exchange = node.exchange_name()?.to_owned();
    let run = GuestRun::new(
        node.clone(),
        job.id.clone(),
        request,
        &record,
        terms,
        settings,
        exchange,
    );
    run.contacted.store(true, Ordering::SeqCst);
    tracing::info!(target: "carrel::training", job = %job.id, "resuming vertical training");
    tokio::spawn(run.drive(Some(saved.setup)));
    Ok(())
}

/// Rejects requests that do not fit a vertical training.
fn check_options(request: &StartTraining) -> NodeResult<()> {
    let bad = |text: &str| Err(NodeError::BadRequest(text.to_owned()));
    if request.agreements.len() != 1 {
        return bad("a vertical training runs under exactly one agreement, with the host");
    }
    if request.data.is_none() {
        return bad(
            "a vertical training needs a data file with the ids, the labels and this \
             node's features",
        );
    }
    if request.test_data.is_some() {
        return bad(
            "a test data file applies to horizontal training only; a vertical \
             training holds out the rows that the split file marks test",
        );
    }
    if request.local_epochs.is_some() || request.privacy.is_some() {
        return bad("local epochs and DP-SGD apply to horizontal training only");
    }
    if request.split_file.is_some() != request.split.is_some() {
        return bad(
            "give the split file and the split column together, such as \
             --split-file splits.csv --split seed0",
        );
    }
    Ok(())
}

/// Returns the terms of an agreement that this node may use as the guest.
fn guest_terms(record: &AgreementRecord, me: &str) -> NodeResult<TrainingTerms> {
    let agreement = &record.signed.agreement;
    if agreement.assignee != me {
        return Err(NodeError::Forbidden(format!(
            "this node {me:?} is not the consumer of agreement {}; the guest of a vertical \
             training is the agreement's consumer",
            agreement.id
        )));
    }
    vertical_terms(record)
}

/// Checks that a file named in the request can be read, before the job starts.
fn check_file(path: &Path, what: &str) -> NodeResult<()> {
    let problem = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => match std::fs::File::open(path) {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        },
        Ok(_) => "it is not a regular file".to_owned(),
        Err(e) => e.to_string(),
    };
    Err(NodeError::BadRequest(format!(
        "{what} {} cannot be read: {problem}; give a readable CSV file with a header line",
        path.display()
    )))
}

/// The training settings of the request, checked before any data is read.
struct Settings {
    epochs: u32,
    learning_rate: Option<f64>,
    batch_size: Option<usize>,
    early_stopping: Option<EarlyStopping>,
    schedule_seed: u64,
}

impl Settings {
    fn from_request(request: &StartTraining, terms: &TrainingTerms) -> NodeResult<Self> {
        let default_epochs = Plan::with_defaults(1, 0, 1).epochs;
        let epochs = request
            .rounds
            .unwrap_or_else(|| default_epochs.min(terms.max_rounds));
        let settings = Self {
            epochs,
            learning_rate: request.learning_rate,
            batch_size: request.batch_size,
            early_stopping: request.early_stopping.map(|rule| EarlyStopping {
                patience: rule.patience,
                min_relative_improvement: rule.min_relative_improvement,
            }),
            schedule_seed: request.seed.unwrap_or(0),
        };
        // The sizes are not known yet, so the check uses the minimum number of rows and no
        // guest feature in their place.
        let probe = settings.plan(
            super::MIN_TRAINING_ROWS,
            0,
            terms.feature_columns.len().max(1),
        );
        check_plan(&probe, terms).map_err(|e| match e {
            NodeError::BadRequest(text) => {
                NodeError::BadRequest(format!("invalid training settings: {text}"))
            }
            other => other,
        })?;
        Ok(settings)
    }

    fn plan(&self, rows: usize, guest_features: usize, host_features: usize) -> Plan {
        let mut plan = Plan::with_defaults(rows, guest_features, host_features);
        plan.epochs = self.epochs;
        if let Some(rate) = self.learning_rate {
            plan.learning_rate = rate;
        }
        if let Some(size) = self.batch_size {
            plan.batch_size = size;
        }
        plan.early_stopping = self.early_stopping;
        plan.schedule_seed = self.schedule_seed;
        plan
    }
}

/// How long the guest keeps trying to resume a training with the host and the dealer.
const RESUME_WAIT: Duration = Duration::from_secs(120);

/// First pause between two attempts to resume; it doubles up to [`RESUME_RETRY_MAX`].
const RESUME_RETRY: Duration = Duration::from_millis(250);

/// Maximum pause between two attempts to resume.
const RESUME_RETRY_MAX: Duration = Duration::from_secs(4);

/// Returns whether a failed attempt to resume may succeed later: the host or the exchange
/// cannot be reached, or the host cannot resume yet.
fn may_come_back(error: &NodeError) -> bool {
    match error {
        NodeError::Peer { .. } => true,
        NodeError::Remote { code, .. } => code == "unavailable",
        _ => false,
    }
}

/// The guest's saved setup, written when the rows are aligned, from which it resumes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GuestSetup {
    request: StartTraining,
    plan: Plan,
    /// SHA-256 of the data file, hex, which must not change before the training ends.
    data_sha256: String,
    host_dataset_sha256: String,
    alignment: Alignment,
}

/// The rows after the alignment, as positions in the guest's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Alignment {
    intersection: usize,
    train: Vec<usize>,
    test: Vec<usize>,
    test_ids: Vec<String>,
    /// Test ids of the split file that are not in the intersection.
    test_ids_outside: usize,
}

struct GuestRun {
    node: Arc<Node>,
    job: String,
    host: String,
    exchange: String,
    agreement: String,
    terms: TrainingTerms,
    operator: String,
    request: StartTraining,
    settings: Settings,
    /// Calls to the host, with their byte counts.
    calls: Arc<PeerCalls>,
    /// Calls to the exchange, with their byte counts.
    dealer_calls: PeerCalls,
    /// Whether a peer has heard of the job, so that a failure must be sent to it.
    contacted: AtomicBool,
    /// Seconds per phase.
    seconds: std::sync::Mutex<Map<String, Value>>,
}

impl GuestRun {
    fn new(
        node: Arc<Node>,
        job: String,
        request: StartTraining,
        record: &AgreementRecord,
        terms: TrainingTerms,
        settings: Settings,
        exchange: String,
    ) -> Self {
        Self {
            calls: Arc::new(PeerCalls::new(node.clone())),
            dealer_calls: PeerCalls::new(node.clone()),
            node,
            job,
            host: record.signed.agreement.assigner.clone(),
            exchange,
            agreement: record.signed.agreement.id.clone(),
            operator: operator_of(record, &terms),
            terms,
            request,
            settings,
            contacted: AtomicBool::new(false),
            seconds: std::sync::Mutex::new(Map::new()),
        }
    }

    /// Runs the job, from the start or, with a saved setup, from the latest common epoch,
    /// and ends it on every party on any error.
    async fn drive(self, saved: Option<GuestSetup>) {
        let result = match saved {
            None => self.run().await,
            Some(setup) => self.run_resumed(setup).await,
        };
        let Err(error) = result else {
            return;
        };
        if self.contacted.load(Ordering::SeqCst) {
            let peers = [self.host.clone(), self.exchange.clone()];
            end_everywhere(&self.node, &self.job, &peers, &error).await;
        } else if let Err(e) = jobs::fail(
            &self.node.store,
            self.node.identity.name(),
            &self.job,
            &error.to_string(),
        ) {
            tracing::error!(target: "carrel::training", job = %self.job, error = %e,
                "failure not recorded");
        }
    }

    async fn run(&self) -> NodeResult<()> {
        let rule = IdRule::default();
        self.phase("reading data")?;
        let clock = Instant::now();
        let data = {
            let request = self.request.clone();
            blocking(move || read_guest_table(&request, &rule)).await?
        };
        self.time("read", clock);

        let clock = Instant::now();
        let (mut transcript, reply, alignment) = self.align_sets(&data, &rule).await?;
        let plan = self.settings.plan(
            alignment.train.len(),
            data.table.features(),
            self.terms.feature_columns.len(),
        );
        check_plan(&plan, &self.terms)?;
        self.time("alignment", clock);

        let clock = Instant::now();
        let seed = self.open_dealer(&plan, false).await?;
        let align = Align {
            psi_transcript_sha256: hex::encode(transcript.hash()),
            intersection: alignment.intersection as u64,
            test_ids: alignment.test_ids.clone(),
            plan: plan.clone(),
        };
        transcript.append(b"align", &align_bytes(&align));
        let aligned: Aligned = self
            .call(&format!("/jobs/{}/vertical/align", self.job), &align)
            .await?;
        if aligned.train_rows != alignment.train.len() as u64
            || aligned.test_rows != alignment.test.len() as u64
        {
            return Err(NodeError::JobFailed(format!(
                "the alignments differ: the guest has {} training and {} test rows, the host \
                 {} and {}",
                alignment.train.len(),
                alignment.test.len(),
                aligned.train_rows,
                aligned.test_rows
            )));
        }
        self.time("dealer_setup", clock);

        let setup = GuestSetup {
            request: self.request.clone(),
            plan,
            data_sha256: data.sha256.clone(),
            host_dataset_sha256: reply.dataset_sha256,
            alignment,
        };
        resume::save_setup(
            &self.node.store,
            &self.job,
            "guest",
            &setup,
            transcript.hash(),
        )?;
        self.complete(&data, &setup, Some((seed, transcript))).await
    }

    /// Continues a training after this node restarted, from its saved setup.
    async fn run_resumed(&self, setup: GuestSetup) -> NodeResult<()> {
        self.phase("reading data")?;
        let data = {
            let request = self.request.clone();
            blocking(move || read_guest_table(&request, &IdRule::default())).await?
        };
        if data.sha256 != setup.data_sha256 {
            return Err(NodeError::JobFailed(format!(
                "data file {} changed since the training started, so the training cannot                  resume; start a new one",
                self.request
                    .data
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
        self.complete(&data, &setup, None).await
    }

    /// Trains, resuming whenever the host or the dealer is lost, then evaluates the model
    /// and registers the guest's part. `start` contains the seed and the transcript of a
    /// training that starts at its first epoch.
    async fn complete(
        &self,
        data: &GuestTable,
        setup: &GuestSetup,
        mut start: Option<(Seed, Transcript)>,
    ) -> NodeResult<()> {
        let clock = Instant::now();
        loop {
            let (seed, checkpoint, transcript) = match start.take() {
                Some((seed, transcript)) => (seed, None, transcript),
                None => self.rejoin(&setup.plan).await?,
            };
            let rows = &setup.alignment.train;
            // The evaluation and the end need the host's run too, so a host lost then also
            // resumes: from the last epoch, the parties only open their weights again.
            let ended = async {
                let (outcome, mut transcript) = self
                    .train(&setup.plan, seed, checkpoint, data, rows, transcript)
                    .await?;
                self.time("training", clock);
                let clock = Instant::now();
                let scored = self
                    .evaluate(data, &setup.alignment, &outcome, &mut transcript)
                    .await?;
                self.time("evaluation", clock);
                self.finish(data, setup, &outcome, scored, transcript).await
            };
            match ended.await {
                Ok(()) => break,
                Err(error) if link::lost_peer(&error) => {
                    tracing::warn!(target: "carrel::training", job = %self.job, %error,
                        "vertical training interrupted; resuming it");
                }
                Err(error) => return Err(error),
            }
        }
        self.close_dealer().await;
        Ok(())
    }

    /// Agrees with the host on the epoch to continue from, in a fresh dealer session:
    /// returns the guest's new seed, its shares at that epoch and the transcript of the
    /// resumed training. Waits for a host or an exchange that cannot be reached yet.
    async fn rejoin(&self, plan: &Plan) -> NodeResult<(Seed, Option<Checkpoint>, Transcript)> {
        self.phase("resuming: waiting for the host and the dealer")?;
        let saved = resume::load::<GuestSetup>(&self.node.store, &self.job)?.ok_or_else(|| {
            NodeError::Internal(format!("job {} saved no setup to resume from", self.job))
        })?;
        resume::check_resumes(&saved, &self.job)?;
        let request = Resume {
            marks: resume::offers(&saved.marks),
        };
        let deadline = Instant::now() + RESUME_WAIT;
        let path = format!("/jobs/{}/vertical/resume", self.job);
        let mut pause = RESUME_RETRY;
        let mut seed = None;
        let resumed = loop {
            let attempt = async {
                if seed.is_none() {
                    seed = Some(self.open_dealer(plan, true).await?);
                }
                self.call::<Resumed>(&path, &request).await
            }
            .await;
            let error = match attempt {
                Ok(resumed) => break resumed,
                Err(error) if may_come_back(&error) => error,
                Err(error) => return Err(error),
            };
            if Instant::now() >= deadline {
                return Err(NodeError::JobFailed(format!(
                    "the training could not resume within {} s: {error}",
                    RESUME_WAIT.as_secs()
                )));
            }
            // A host that responds has lost the dealer, so the next attempt opens a fresh
            // session. A host that cannot be reached has not used this one.
            if matches!(error, NodeError::Remote { .. }) {
                seed = None;
            }
            tracing::debug!(target: "carrel::training", job = %self.job, %error,
                "not resumed yet");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RESUME_RETRY_MAX);
        };
        let seed = seed.ok_or_else(|| NodeError::Internal("resumed without a seed".into()))?;
        let mark = saved
            .marks
            .iter()
            .find(|mark| mark.epoch == resumed.epoch)
            .ok_or_else(|| {
                NodeError::JobFailed(format!(
                    "the host resumes from epoch {}, which this node did not offer",
                    resumed.epoch
                ))
            })?;
        let resumes = resume::rewind(&self.node.store, &self.job, mark.epoch)?;
        let checkpoint = mark.checkpoint()?;
        let me = self.node.identity.name().to_owned();
        self.node.store.audited(
            "vertical.resume",
            &me,
            Some(&self.agreement),
            |_, events| {
                let detail = json!({ "job": self.job, "epoch": mark.epoch, "host": self.host,
                                     "resumes": resumes });
                events.push(
                    carrel_model::AuditEvent::now("vertical.resumed", &me, true, detail)
                        .with_agreement(&self.agreement),
                );
                Ok(())
            },
        )?;
        tracing::info!(target: "carrel::training", job = %self.job, epoch = mark.epoch,
            "vertical training resumed");
        Ok((
            seed,
            checkpoint,
            resume::resumed_transcript(&self.job, mark),
        ))
    }

    /// Runs the set intersection with the host and splits the aligned rows.
    async fn align_sets(
        &self,
        data: &GuestTable,
        rule: &IdRule,
    ) -> NodeResult<(Transcript, HelloReply, Alignment)> {
        self.phase("set intersection")?;
        let hello = Hello {
            job: self.job.clone(),
            agreement: self.agreement.clone(),
            rule: rule.statement(),
            guest_size: data.ids.len() as u64,
            batch: DEFAULT_BATCH as u64,
        };
        self.contacted.store(true, Ordering::SeqCst);
        let reply: HelloReply = self.call("/jobs/vertical", &hello).await?;
        if reply.rule != hello.rule {
            return Err(NodeError::JobFailed(format!(
                "identifier rules differ: this node applies {:?}, the host {:?}",
                hello.rule, reply.rule
            )));
        }
        let mut transcript = Transcript::new(PROTOCOL, &self.job);
        transcript.append(b"hello", &hello_bytes(&hello, &reply));
        let party = PsiParty::new(
            data.ids.clone(),
            Reveal::Intersection,
            Reveal::Intersection,
            reply.host_size as usize,
        );
        let party = Arc::new(std::sync::Mutex::new(party));
        self.send_own(&party, &mut transcript, data.ids.len())
            .await?;
        self.answer_host(&party, &mut transcript, reply.host_size as usize)
            .await?;

        let members = {
            let party = party.lock().unwrap_or_else(|p| p.into_inner());
            let outcome = party
                .finish()
                .map_err(|e| NodeError::JobFailed(e.to_string()))?;
            outcome.members.unwrap_or_default()
        };
        let alignment = split_rows(data, members)?;
        if alignment.train.is_empty() {
            return Err(NodeError::JobFailed(format!(
                "the intersection of {} identifiers leaves no training row; bring more \
                 identifiers or hold out fewer",
                alignment.intersection
            )));
        }
        if alignment.test.len() as u64 > self.terms.max_prediction_rows {
            return Err(NodeError::Forbidden(format!(
                "the split holds out {} aligned rows, but the agreement allows predictions on \
                 at most {} rows; hold out fewer",
                alignment.test.len(),
                self.terms.max_prediction_rows
            )));
        }
        Ok((transcript, reply, alignment))
    }

    async fn send_own(
        &self,
        party: &Arc<std::sync::Mutex<PsiParty>>,
        transcript: &mut Transcript,
        own: usize,
    ) -> NodeResult<()> {
        let path = format!("/jobs/{}/vertical/guest-elements", self.job);
        for start in (0..own).step_by(DEFAULT_BATCH) {
            let points = with_party(party, move |p| Ok(p.blind_own(start, DEFAULT_BATCH))).await?;
            let request = Elements {
                start: start as u64,
                points: encode(&points),
            };
            let answer: Elements = self.call(&path, &request).await?;
            let answer = decode(&answer.points)?;
            transcript.append(b"guest-elements", &points);
            transcript.append(b"guest-elements-doubled", &answer);
            with_party(party, move |p| {
                p.take_own_doubled(&answer)
                    .map_err(|e| NodeError::JobFailed(e.to_string()))
            })
            .await?;
        }
        Ok(())
    }

    async fn answer_host(
        &self,
        party: &Arc<std::sync::Mutex<PsiParty>>,
        transcript: &mut Transcript,
        peer: usize,
    ) -> NodeResult<()> {
        let pull = format!("/jobs/{}/vertical/host-elements", self.job);
        let push = format!("/jobs/{}/vertical/host-doubled", self.job);
        let mut start = 0;
        while start < peer {
            let request = Elements {
                start: start as u64,
                points: String::new(),
            };
            let batch: Elements = self.call(&pull, &request).await?;
            let points = decode(&batch.points)?;
            if points.is_empty() {
                return Err(NodeError::JobFailed(format!(
                    "the host sent no identifiers at {start}"
                )));
            }
            transcript.append(b"host-elements", &points);
            let count = points.len() / 32;
            let doubled = with_party(party, move |p| {
                p.answer_peer(start, &points)
                    .map_err(|e| NodeError::JobFailed(e.to_string()))
            })
            .await?;
            let request = Elements {
                start: start as u64,
                points: encode(&doubled),
            };
            self.call::<Value>(&push, &request).await?;
            transcript.append(b"host-doubled", &doubled);
            start += count;
        }
        Ok(())
    }

    /// Requests the exchange to open the dealer session, or to open it again with fresh
    /// seeds when `resume` holds, and returns the guest's seed.
    async fn open_dealer(&self, plan: &Plan, resume: bool) -> NodeResult<Seed> {
        if !resume {
            self.phase("opening the dealer session")?;
        }
        let request = OpenDealer {
            job: self.job.clone(),
            agreement: self.agreement.clone(),
            guest: self.node.identity.name().to_owned(),
            host: self.host.clone(),
            plan: plan.clone(),
            resume,
        };
        let opened: DealerOpened = self
            .dealer_calls
            .call(&self.exchange, "/jobs/dealer", &request)
            .await?;
        decode_seed(&opened.guest_seed)
    }

    /// Closes the dealer session after the last epoch. A failure is only logged, because
    /// the exchange also ends the session when the job ends.
    async fn close_dealer(&self) {
        let path = format!("/jobs/{}/dealer/close", self.job);
        let closed = self
            .dealer_calls
            .call::<Value>(&self.exchange, &path, &json!({}))
            .await;
        if let Err(error) = closed {
            tracing::warn!(target: "carrel::training", job = %self.job, %error,
                "the dealer session was not closed");
        }
    }

    /// Trains on the guest's party in a blocking thread, each exchange a call to the host,
    /// from the first epoch or from a checkpoint.
    async fn train(
        &self,
        plan: &Plan,
        seed: Seed,
        checkpoint: Option<Checkpoint>,
        data: &GuestTable,
        rows: &[usize],
        transcript: Transcript,
    ) -> NodeResult<(Outcome, Transcript)> {
        let done = checkpoint.as_ref().map_or(0, |c| c.epochs_done);
        let phase = format!("epoch {done} of {}", plan.epochs);
        jobs::progress(
            &self.node.store,
            &self.job,
            &phase,
            u64::from(done),
            u64::from(plan.epochs),
        )?;
        let labels = data
            .table
            .require_labels()
            .map_err(|e| NodeError::Internal(format!("the guest's table lost its labels: {e}")))?;
        let mut features = Vec::with_capacity(rows.len() * data.table.features());
        let mut train_labels = Vec::with_capacity(rows.len());
        for &row in rows {
            features.extend_from_slice(data.table.row(row));
            train_labels.push(labels[row]);
        }
        let transcript = SharedTranscript::new(transcript);
        let mut link = GuestLink {
            handle: Handle::current(),
            node: self.node.clone(),
            calls: self.calls.clone(),
            host: self.host.clone(),
            job: self.job.clone(),
            agreement: self.agreement.clone(),
            seq: 0,
            transcript: transcript.clone(),
            failure: None,
        };
        let (node, job, plan) = (self.node.clone(), self.job.clone(), plan.clone());
        blocking(move || {
            let mut party = Party::guest(plan.clone(), seed, &features, &train_labels)
                .map_err(|e| NodeError::BadRequest(e.to_string()))?;
            if let Some(checkpoint) = checkpoint {
                party
                    .resume(checkpoint)
                    .map_err(|e| NodeError::JobFailed(e.to_string()))?;
            }
            let mut correlation = GuestCorrelation::new(plan.clone(), seed);
            let mut progress = |report: EpochReport, checkpoint: &Checkpoint| {
                epoch_done(&node.store, &job, report, checkpoint, transcript.hash());
            };
            match party.train(&mut link, &mut correlation, &mut progress) {
                Ok(outcome) => Ok((outcome, transcript.snapshot())),
                Err(error) => Err(link
                    .failure
                    .take()
                    .unwrap_or_else(|| NodeError::JobFailed(format!("training failed: {error}")))),
            }
        })
        .await
    }

    /// Scores the held-out rows: the host's partial logits plus the guest's part.
    async fn evaluate(
        &self,
        data: &GuestTable,
        alignment: &Alignment,
        outcome: &Outcome,
        transcript: &mut Transcript,
    ) -> NodeResult<Option<Result<Scored, String>>> {
        if alignment.test.is_empty() {
            return Ok(None);
        }
        self.phase("evaluating on the held-out rows")?;
        let request = Predict {
            ids: alignment.test_ids.clone(),
        };
        let predicted: Predicted = self
            .call(&format!("/jobs/{}/vertical/predict", self.job), &request)
            .await?;
        if predicted.logits.len() != alignment.test.len() {
            return Err(NodeError::JobFailed(format!(
                "the host returned {} partial logits for {} rows",
                predicted.logits.len(),
                alignment.test.len()
            )));
        }
        let ids =
            serde_json::to_vec(&request.ids).map_err(|e| NodeError::Internal(e.to_string()))?;
        transcript.append(b"predict", &ids);
        transcript.append(b"predicted", &logit_bytes(&predicted.logits));

        let k = data.table.features();
        let labels = data
            .table
            .require_labels()
            .map_err(|e| NodeError::Internal(format!("the guest's table lost its labels: {e}")))?;
        let (weights, intercept) = (&outcome.weights[..k], outcome.weights[k]);
        let logits: Vec<f64> = alignment
            .test
            .iter()
            .zip(&predicted.logits)
            .map(|(&row, host)| dot(weights, data.table.row(row)) + intercept + host)
            .collect();
        let test_labels: Vec<f64> = alignment.test.iter().map(|&row| labels[row]).collect();
        Ok(Some(report::evaluate(&logits, &test_labels)))
    }

    /// Ends the job with the host, writes the report and registers the guest's part.
    async fn finish(
        &self,
        data: &GuestTable,
        setup: &GuestSetup,
        outcome: &Outcome,
        scored: Option<Result<Scored, String>>,
        transcript: Transcript,
    ) -> NodeResult<()> {
        let resumes =
            resume::load::<Value>(&self.node.store, &self.job)?.map_or(0, |saved| saved.resumes);
        let (alignment, plan) = (&setup.alignment, &setup.plan);
        self.phase("registering the model")?;
        let clock = Instant::now();
        let me = self.node.identity.name().to_owned();
        let hash = hex::encode(transcript.hash());
        let rows = alignment.train.len() as u64;
        let guest_dataset = DatasetRef {
            holder: me.clone(),
            sha256: data.sha256.clone(),
            rows,
        };
        let host_dataset = DatasetRef {
            holder: self.host.clone(),
            sha256: setup.host_dataset_sha256.clone(),
            rows,
        };
        let finish = Finish {
            transcript_sha256: hash.clone(),
            guest_dataset: guest_dataset.clone(),
        };
        let theirs: Finished = self
            .call(&format!("/jobs/{}/vertical/finish", self.job), &finish)
            .await?;
        if theirs.transcript_sha256 != hash {
            return Err(NodeError::JobFailed(format!(
                "transcripts differ: this node saw {hash}, the host {}",
                theirs.transcript_sha256
            )));
        }

        let (evaluation, note) = match &scored {
            Some(Ok(scored)) => (Some(json!(scored.evaluation)), None),
            Some(Err(error)) => (None, Some(format!("the model was not evaluated: {error}"))),
            None if self.request.split_file.is_none() => (
                None,
                Some(
                    "no split file was given, so no row was held out and the model was not \
                     evaluated"
                        .to_owned(),
                ),
            ),
            None => (
                None,
                Some(
                    "the split marks no aligned row as test, so the model was not evaluated"
                        .to_owned(),
                ),
            ),
        };
        let k = data.table.features();
        let mut parties = vec![me.clone(), self.host.clone()];
        parties.sort();
        let record = ModelRecord {
            id: model_id(&self.job),
            job: self.job.clone(),
            kind: TrainingKind::Vertical,
            role: "guest".into(),
            operator: self.operator.clone(),
            parties,
            agreements: vec![self.agreement.clone()],
            datasets: vec![guest_dataset, host_dataset],
            rounds: outcome.epochs,
            epsilon: 0.0,
            delta: 0.0,
            part: ModelPart {
                columns: data.table.columns.clone(),
                weights: outcome.weights[..k].to_vec(),
                intercept: Some(outcome.weights[k]),
            },
            evaluation: evaluation.clone(),
        };

        let mut result = json!({
            "model": record.id,
            "host_model": theirs.model,
            "rows": { "guest": data.ids.len(), "intersection": alignment.intersection,
                      "train": rows, "test": alignment.test.len(),
                      "test_ids_outside_intersection": alignment.test_ids_outside },
            "evaluation": evaluation,
            "epochs": outcome.epochs,
            "planned_epochs": plan.epochs,
            "stopped_early": outcome.stopped_early,
            "losses": outcome.losses,
            "plan": plan,
            "part_sha256": record.part.sha256(),
            "resumes": resumes,
        });
        if let Some(note) = note {
            result["evaluation_note"] = json!(note);
        }
        if let Some(dir) = &self.request.report {
            let summary = json!({ "job": self.job, "model": record.id,
                "agreement": self.agreement, "host": self.host, "rows": result["rows"],
                "evaluation": result["evaluation"], "epochs": outcome.epochs,
                "stopped_early": outcome.stopped_early, "losses": outcome.losses,
                "plan": plan });
            let scored = scored.as_ref().and_then(|s| s.as_ref().ok());
            let files = report::write(dir, &summary, &outcome.losses, scored)?;
            result["report"] = json!({ "folder": dir, "files": files });
        }
        result["traffic"] = json!({ "host": self.calls.traffic(),
                                    "exchange": self.dealer_calls.traffic() });
        self.time("finish", clock);
        result["seconds"] = Value::Object(self.seconds_so_far());

        let agreement = Some(self.agreement.as_str());
        self.node
            .store
            .audited("model.register", &me, agreement, |tx, events| {
                models::register(tx, events, &me, &record)
            })?;
        jobs::succeed(&self.node.store, &me, &self.job, &hash, result)?;
        tracing::info!(target: "carrel::training", job = %self.job, model = %record.id,
            epochs = outcome.epochs, "vertical training completed");
        Ok(())
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> NodeResult<T> {
        self.calls.call(&self.host, path, body).await
    }

    fn phase(&self, phase: &str) -> NodeResult<()> {
        jobs::progress(&self.node.store, &self.job, phase, 0, 0)
    }

    fn time(&self, phase: &str, since: Instant) {
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        seconds.insert(phase.to_owned(), json!(since.elapsed().as_secs_f64()));
    }

    fn seconds_so_far(&self) -> Map<String, Value> {
        self.seconds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Splits the intersection, sorted by canonical id, into training and test rows.
fn split_rows(data: &GuestTable, mut members: Vec<usize>) -> NodeResult<Alignment> {
    let ids = &data.ids;
    members.sort_by(|a, b| ids.text(*a).cmp(ids.text(*b)));
    let intersection = members.len();
    let empty = HashSet::new();
    let held = data.test_ids.as_ref().unwrap_or(&empty);
    let (test, train): (Vec<usize>, Vec<usize>) = members
        .into_iter()
        .partition(|&row| held.contains(ids.text(row)));
    let test_ids: Vec<String> = test.iter().map(|&row| ids.text(row).to_owned()).collect();
    Ok(Alignment {
        intersection,
        test_ids_outside: held.len() - test.len(),
        train,
        test,
        test_ids,
    })
}

/// Records an epoch's progress and checkpoint. A failure is logged, not fatal.
fn epoch_done(
    store: &Store,
    job: &str,
    report: EpochReport,
    checkpoint: &Checkpoint,
    transcript: [u8; 32],
) {
    let phase = match report.loss {
        Some(loss) => format!(
            "epoch {} of {}, loss {loss:.4}",
            report.epoch, report.epochs
        ),
        None => format!("epoch {} of {}", report.epoch, report.epochs),
    };
    let progress = jobs::progress(
        store,
        job,
        &phase,
        u64::from(report.epoch),
        u64::from(report.epochs),
    );
    let saved = resume::record_epoch(store, job, transcript, checkpoint);
    for error in [progress.err(), saved.err()].into_iter().flatten() {
        tracing::warn!(target: "carrel::training", %job, epoch = report.epoch, %error,
            "epoch progress not recorded");
    }
}

/// Runs `f` on the set intersection party on a blocking thread.
async fn with_party<T: Send + 'static>(
    party: &Arc<std::sync::Mutex<PsiParty>>,
    f: impl FnOnce(&mut PsiParty) -> NodeResult<T> + Send + 'static,
) -> NodeResult<T> {
    let party = party.clone();
    blocking(move || f(&mut party.lock().unwrap_or_else(|e| e.into_inner()))).await
}

#[cfg(test)]
mod tests {
    use carrel_learn::data::FeatureTable;
    use carrel_mpc::ids::IdCollector;

    use super::*;

    fn table(ids: &[&str], test: &[&str]) -> GuestTable {
        let rule = IdRule::default();
        let mut collector = IdCollector::default();
        for id in ids {
            collector.add(&rule, id).unwrap();
        }
        let rows = ids.len();
        let table = FeatureTable::new(
            ids.iter().map(|id| (*id).to_owned()).collect(),
            vec!["x".into()],
            vec![0.0; rows],
            Some(vec![0.0; rows]),
        )
        .unwrap();
        GuestTable {
            table,
            ids: collector.finish().0,
            sha256: String::new(),
            test_ids: Some(test.iter().map(|id| (*id).to_owned()).collect()),
        }
    }

    #[test]
    fn aligned_rows_are_sorted_by_canonical_id() {
        let data = table(&["b", "10", "a", "2", "c"], &["a", "zz"]);
        // Members are positions in the guest's table: "b", "10", "a" and "2".
        let alignment = split_rows(&data, vec![0, 1, 2, 3]).unwrap();
        assert_eq!(alignment.intersection, 4);
        assert_eq!(alignment.train, vec![1, 3, 0]);
        assert_eq!(alignment.test, vec![2]);
        assert_eq!(alignment.test_ids, vec!["a".to_owned()]);
        assert_eq!(alignment.test_ids_outside, 1);
    }
}
