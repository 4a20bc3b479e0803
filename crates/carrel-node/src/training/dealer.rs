//! The exchange as the dealer of a vertical training: it draws one seed per party and
//! hands the host its corrections step by step, so that both parties hold correlated
//! randomness that no data went into.
//!
//! | step | request | response |
//! | --- | --- | --- |
//! | open | guest: `POST /jobs/dealer` with the job, agreement, both parties and the plan | the guest's seed |
//! | seed | host: `POST /jobs/{id}/dealer/seed` with the plan | the host's seed and a new serving number |
//! | corrections | host: `POST /jobs/{id}/dealer/corrections` with the serving number and the step number: the first at the start of an epoch, then in order | the step's corrections, base64 |
//! | reopen | guest: `POST /jobs/dealer` as for open, with `resume: true`, to resume the training | the guest's new seed |
//! | close | guest: `POST /jobs/{id}/dealer/close` | - |
//!
//! The exchange opens a session only for an agreement it countersigned, between the two
//! parties named, permitting vertical federated training, not revoked and valid now, and
//! for a plan within the terms. It checks the signer of every request: only the guest
//! opens and closes, only the host fetches its seed and corrections. The session and its
//! seeds end when the guest closes it, when either party ends the job (`POST
//! /jobs/{id}/abort`), or when a request of the host fails its checks. A session idle for
//! 15 minutes is dropped when a guest opens another. Its job stays running, so the guest
//! may open it again to resume.
//!
//! A training resumes with a new session of the same job: the guest opens it again, with
//! the same plan, and the exchange draws two fresh seeds, so that no correlated randomness
//! of the interrupted run is dealt twice. The job stays running at the exchange across a
//! restart of the exchange, which keeps the plan in the job's checkpoint. The seeds are
//! kept in memory only.
//!
//! # Security
//!
//! The dealer receives no data, only the plan's sizes and schedule. It draws both seeds,
//! so a dealer that colluded with one party would learn the other party's features. The
//! exchange is therefore trusted not to collude with either party.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carrel_learn::vertical::{Dealer, Plan, Seed, fresh_seed};
use carrel_model::AuditEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::vertical::{KIND, Registry, check_plan, vertical_terms};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{blocking, decode, encode};
use crate::jobs::{self, NewJob};
use crate::models;
use crate::node::Node;
use crate::signing::sha256_hex;

/// The guest's request to open a dealer session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenDealer {
    /// Job id chosen by the guest.
    pub job: String,
    /// Agreement between the host (provider) and the guest (consumer).
    pub agreement: String,
    /// The guest, which must be the signer.
    pub guest: String,
    /// The host.
    pub host: String,
    /// Public parameters of the training.
    pub plan: Plan,
    /// True to open the session of a running job again, with fresh seeds, to resume it.
    #[serde(default)]
    pub resume: bool,
}

/// The dealer's response to [`OpenDealer`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DealerOpened {
    /// The guest's seed, base64.
    pub guest_seed: String,
}

/// The host's request for its seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRequest {
    /// The plan as the host received it from the guest, which must equal the session's plan.
    pub plan: Plan,
}

/// The host's request for the corrections of one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorrectionsRequest {
    /// Global step number, from 0, in order.
    pub step: u64,
    /// The serving number of the seed the host's party started from.
    #[serde(default)]
    pub serving: u64,
}

/// The corrections of one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepCorrections {
    /// Global step number.
    pub step: u64,
    /// The host's corrections, base64.
    pub corrections: String,
}

/// Maximum number of dealer sessions one guest may have open at once. Each session keeps both parties'
/// matrix masks in memory, so the exchange bounds them per guest and in all.
const MAX_SESSIONS_PER_GUEST: usize = 4;

/// Times the guest may open a job's session again. The guest resumes a training eight
/// times at most and opens a session again only when the host could not use the last.
const MAX_REOPENS: u64 = 64;

/// Maximum number of dealer sessions open at the exchange at once.
const MAX_SESSIONS: usize = 32;

/// A session that served nothing for this long is dropped when a guest opens another. The
/// host's party waits ten minutes for the guest at most, and a guest that returns later
/// opens the session again to resume.
const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);

/// Sessions this node serves as the dealer, by node and job.
static SESSIONS: Registry<Session> = Registry::new();

struct Session {
    job: String,
    guest: String,
    host: String,
    agreement: String,
    plan: Plan,
    dealer: Arc<Dealer>,
    host_seed: Seed,
    served: Mutex<Served>,
}

impl Session {
    fn idle(&self) -> Duration {
        lock(&self.served).last_used.elapsed()
    }
}

struct Served {
    seed: bool,
    /// Number of the last time the host fetched its seed. A host run that resumes fetches
    /// it again, so requests of the run it replaced carry an older number.
    serving: u64,
    /// The step due next, none before the first request.
    next_step: Option<u64>,
    /// Steps served in this session.
    count: u64,
    /// When the session was opened or last served the host.
    last_used: Instant,
}

impl Served {
    fn new() -> Self {
        Self {
            seed: false,
            serving: 0,
            next_step: None,
            count: 0,
            last_used: Instant::now(),
        }
    }
}

/// Opens a dealer session for a vertical training and returns the guest's seed.
///
/// # Errors
///
/// [`NodeError::Forbidden`] when the signer is not the guest or the exchange did not
/// countersign the agreement. It is also returned when the agreement is between other
/// parties, permits another action or kind, is revoked or is out of its validity.
/// [`NodeError::BadRequest`] or [`NodeError::Forbidden`] for a plan outside the terms.
pub async fn open(node: Arc<Node>, signer: &str, request: OpenDealer) -> NodeResult<Value> {
    let dropped = SESSIONS.retain(&node, |s| s.idle() < SESSION_IDLE);
    if dropped > 0 {
        tracing::info!(target: "carrel::training", sessions = dropped,
            idle_seconds = SESSION_IDLE.as_secs(), "idle dealer sessions dropped");
    }
    node.store.audited(
        "dealer.open",
        signer,
        Some(&request.agreement),
        |tx, events| {
            if request.guest != signer {
                return Err(NodeError::Forbidden(format!(
                    "{signer:?} may not open a dealer session for the guest {:?}",
                    request.guest
                )));
            }
            let others = |s: &Session| s.job != request.job;
            if SESSIONS.count(&node, |s| others(s) && s.guest == signer) >= MAX_SESSIONS_PER_GUEST {
                return Err(NodeError::Conflict(format!(
                    "{signer} has {MAX_SESSIONS_PER_GUEST} dealer sessions open already: finish \
                     or abort one of its vertical trainings first"
                )));
            }
            if SESSIONS.count(&node, others) >= MAX_SESSIONS {
                return Err(NodeError::Conflict(format!(
                    "the exchange serves {MAX_SESSIONS} dealer sessions already: try again when \
                     a training has ended"
                )));
            }
            let record = agreements::load(tx, &request.agreement).map_err(|e| match e {
                NodeError::NotFound { .. } => NodeError::Forbidden(format!(
                    "the exchange did not countersign agreement {}",
                    request.agreement
                )),
                other => other,
            })?;
            let agreement = &record.signed.agreement;
            if agreement.assignee != request.guest || agreement.assigner != request.host {
                return Err(NodeError::Forbidden(format!(
                    "agreement {} is between {} and {}, not between the guest {} and the host {}",
                    agreement.id,
                    agreement.assigner,
                    agreement.assignee,
                    request.guest,
                    request.host
                )));
            }
            if record.revoked {
                return Err(NodeError::Forbidden(format!(
                    "agreement {} was revoked",
                    agreement.id
                )));
            }
            carrel_policy::check_validity(
                &agreement.id,
                &agreement.policy,
                time::OffsetDateTime::now_utc(),
            )?;
            let terms = vertical_terms(&record)?;
            check_plan(&request.plan, &terms)?;
            if request.resume {
                return check_reopen(tx, events, signer, &request);
            }
            let job = NewJob {
                id: &request.job,
                kind: KIND,
                role: "dealer",
                agreement: Some(&request.agreement),
                peers: &[request.guest.clone(), request.host.clone()],
            };
            let detail = json!({ "rows": request.plan.rows, "epochs": request.plan.epochs,
                "guest_features": request.plan.guest_features,
                "host_features": request.plan.host_features,
                "batch_size": request.plan.batch_size });
            jobs::insert(tx, events, signer, &job, detail)
        },
    )?;
    if !request.resume {
        let saved = json!({ "plan": request.plan });
        models::save_checkpoint(&node.store, &request.job, &saved)?;
    }

    let guest_seed = fresh_seed();
    let host_seed = fresh_seed();
    let plan = request.plan.clone();
    let dealer = blocking(move || Ok(Dealer::new(plan, guest_seed, host_seed))).await;
    let dealer = match dealer {
        Ok(dealer) => dealer,
        Err(error) => {
            jobs::fail(&node.store, signer, &request.job, &error.to_string())?;
            return Err(error);
        }
    };
    let total = total_steps(&request.plan);
    let session = Session {
        job: request.job.clone(),
        guest: request.guest,
        host: request.host,
        agreement: request.agreement,
        plan: request.plan,
        dealer: Arc::new(dealer),
        host_seed,
        served: Mutex::new(Served::new()),
    };
    SESSIONS.insert(&node, &request.job, session);
    tracing::info!(target: "carrel::training", job = %request.job, guest = signer,
        resume = request.resume, "dealer session opened");
    if !request.resume {
        jobs::progress(&node.store, &request.job, "dealing", 0, total)?;
    }
    Ok(json!(DealerOpened {
        guest_seed: encode(&guest_seed)
    }))
}

/// Checks the guest's request to open the session of a running job again, and records it.
fn check_reopen(
    tx: &rusqlite::Transaction,
    events: &mut Vec<AuditEvent>,
    signer: &str,
    request: &OpenDealer,
) -> NodeResult<()> {
    let view = jobs::find_in(tx, &request.job)?
        .filter(|view| view.kind == KIND && view.role == "dealer")
        .ok_or_else(|| NodeError::NotFound {
            what: "dealer session to resume",
            id: request.job.clone(),
        })?;
    let parties = [request.guest.clone(), request.host.clone()];
    if view.peers != parties || view.agreement.as_deref() != Some(request.agreement.as_str()) {
        return Err(NodeError::Forbidden(format!(
            "job {} was opened for other parties or another agreement",
            request.job
        )));
    }
    if view.state != jobs::RUNNING {
        return Err(NodeError::Conflict(format!(
            "the dealer's job {} has ended ({}); start a new training",
            request.job, view.state
        )));
    }

    let mut saved = models::load_checkpoint_in(tx, &request.job)?.unwrap_or_default();
    if saved["plan"] != json!(request.plan) {
        return Err(NodeError::BadRequest(format!(
            "the plan differs from the plan job {} was opened with",
            request.job
        )));
    }
    let reopens = saved["reopens"].as_u64().unwrap_or(0);
    if reopens >= MAX_REOPENS {
        return Err(NodeError::Forbidden(format!(
            "the session of job {} was opened again {MAX_REOPENS} times, the most a job may; \
             start a new training",
            request.job
        )));
    }
    saved["reopens"] = json!(reopens + 1);
    tx.execute(
        "UPDATE job_checkpoints SET body = ?2 WHERE job_id = ?1",
        rusqlite::params![request.job, saved.to_string()],
    )?;
    let detail = json!({ "job": request.job });
    events.push(
        AuditEvent::now("dealer.reopened", signer, true, detail).with_agreement(&request.agreement),
    );
    Ok(())
}

fn total_steps(plan: &Plan) -> u64 {
    plan.steps_per_epoch() as u64 * u64::from(plan.epochs)
}

/// Returns the session of `job` after checking that `signer` is its host.
fn host_session(node: &Node, signer: &str, job: &str) -> NodeResult<Arc<Session>> {
    let session = SESSIONS
        .find(node, job)
        .ok_or_else(|| NodeError::NotFound {
            what: "dealer session",
            id: job.to_owned(),
        })?;
    if session.host != signer {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not the host of job {job}; only the host receives its seed and \
             corrections"
        )));
    }
    Ok(session)
}

/// Returns the host's seed when the host states the session's plan, with a new serving
/// number: the host's party starts over from the start of an epoch, and requests that
/// carry an older number are refused without ending the session.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a signer other than the host, [`NodeError::BadRequest`]
/// for another plan. The job ends on each error.
pub fn seed(node: &Node, signer: &str, job: &str, request: SeedRequest) -> NodeResult<Value> {
    let session = host_session(node, signer, job)?;
    let result = (|| {
        if request.plan != session.plan {
            return Err(NodeError::BadRequest(
                "the host's plan differs from the plan the guest opened the session with".into(),
            ));
        }
        let mut served = lock(&session.served);
        served.seed = true;
        served.serving += 1;
        served.next_step = None;
        served.last_used = Instant::now();
        Ok(json!({ "host_seed": encode(&session.host_seed), "serving": served.serving }))
    })();
    end_on_error(node, signer, job, result)
}

/// Returns the host's corrections for the next step.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a signer other than the host or an agreement no longer in
/// force, [`NodeError::BadRequest`] for a step out of order or beyond the plan. The job
/// ends on each error.
pub async fn corrections(
    node: &Node,
    signer: &str,
    job: &str,
    request: CorrectionsRequest,
) -> NodeResult<Value> {
    let session = host_session(node, signer, job)?;
    let current = lock(&session.served).serving;
    if request.serving != current {
        // A host run that a resumed run replaced: refused, and the session goes on.
        return Err(NodeError::Conflict(format!(
            "corrections were requested for serving {} of job {job}, but serving {current}              is current; the requesting run was replaced",
            request.serving
        )));
    }
    let per_epoch = session.plan.steps_per_epoch() as u64;
    let checked = agreements::check_in_force(&node.store, &session.agreement).and_then(|()| {
        let mut served = lock(&session.served);
        // A session's first step starts an epoch: the first, or the one a resumed training
        // continues from.
        let due = match served.next_step {
            None if served.seed && request.step.is_multiple_of(per_epoch) => request.step,
            None => 0,
            Some(step) => step,
        };
        if !served.seed || request.step != due {
            return Err(NodeError::BadRequest(format!(
                "corrections of step {} were requested, but step {due} is next",
                request.step
            )));
        }
        served.next_step = Some(due + 1);
        served.count += 1;
        served.last_used = Instant::now();
        Ok(())
    });
    let result = match checked {
        Ok(()) => {
            let dealer = session.dealer.clone();
            let step = request.step;
            blocking(move || {
                dealer
                    .corrections_for_step(step)
                    .map_err(|e| NodeError::BadRequest(e.to_string()))
            })
            .await
        }
        Err(error) => Err(error),
    };
    let corrections = end_on_error(node, signer, job, result)?;
    if (request.step + 1).is_multiple_of(per_epoch) {
        let total = total_steps(&session.plan);
        jobs::progress(&node.store, job, "dealing", request.step + 1, total)?;
    }
    Ok(json!(StepCorrections {
        step: request.step,
        corrections: encode(&corrections),
    }))
}

/// Closes the session at the guest's request, after its training ended, and records what
/// the dealer served.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a signer other than the guest.
pub fn close(node: &Node, signer: &str, job: &str) -> NodeResult<Value> {
    let session = SESSIONS
        .find(node, job)
        .ok_or_else(|| NodeError::NotFound {
            what: "dealer session",
            id: job.to_owned(),
        })?;
    if session.guest != signer {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not the guest of job {job}; only the guest closes the session"
        )));
    }
    SESSIONS.take(node, job);
    let steps = lock(&session.served).count;
    let result = json!({ "steps_served": steps, "planned_steps": total_steps(&session.plan),
        "rows": session.plan.rows, "epochs": session.plan.epochs,
        "guest_features": session.plan.guest_features,
        "host_features": session.plan.host_features });
    // The dealer receives no protocol message, so its record hashes what it served.
    let record = json!({ "job": job, "agreement": session.agreement, "plan": session.plan,
                         "steps_served": steps });
    let digest = sha256_hex(record.to_string().as_bytes());
    jobs::succeed(&node.store, signer, job, &digest, result.clone())?;
    tracing::info!(target: "carrel::training", %job, steps, "dealer session closed");
    Ok(result)
}

/// Drops the session of `job`, if this node deals for it.
pub(crate) fn drop_session(node: &Node, job: &str) {
    SESSIONS.take(node, job);
}

/// Decodes a seed sent as base64.
///
/// # Errors
///
/// [`NodeError::JobFailed`] for text that is not 32 bytes of base64.
pub(crate) fn decode_seed(text: &str) -> NodeResult<Seed> {
    let bytes = decode(text)?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        NodeError::JobFailed(format!(
            "the dealer sent a seed of {} bytes; seeds have 32",
            bytes.len()
        ))
    })
}

/// Passes a result through, ending the job and the session on this node when it failed.
fn end_on_error<T>(node: &Node, signer: &str, job: &str, result: NodeResult<T>) -> NodeResult<T> {
    if let Err(error) = &result {
        SESSIONS.take(node, job);
        let reason = format!("the dealer stopped the session: {error}");
        if let Err(e) = jobs::fail(&node.store, signer, job, &reason) {
            tracing::error!(target: "carrel::training", %job, error = %e, "failure not recorded");
        }
    }
    result
}

fn lock(served: &Mutex<Served>) -> std::sync::MutexGuard<'_, Served> {
    served.lock().unwrap_or_else(|p| p.into_inner())
}
