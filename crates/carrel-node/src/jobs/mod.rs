//! Multi-party jobs as each participating node records them: state, phase, progress
//! and outcome.
//!
//! A job starts and ends with an audit entry on every party: `job.started`, then either
//! `{kind}.completed` with the transcript hash of the run, so an auditor can compare
//! the parties' logs, or `job.failed` with the reason. Progress updates are plain
//! writes with no audit entry. A job ended once stays ended: a later failure report
//! for it changes nothing.

use carrel_model::AuditEvent;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::{NodeError, NodeResult};
use crate::store::{Store, from_json};

pub(crate) mod wire;

/// State of a running job.
pub const RUNNING: &str = "running";
/// The job ended with its result.
pub const SUCCEEDED: &str = "succeeded";
/// The job ended without a result.
pub const FAILED: &str = "failed";

/// A job as `carrel job status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// Job id, the same on every party.
    pub id: String,
    /// Kind of computation, such as `psi`.
    pub kind: String,
    /// This node's role in it, such as `consumer`.
    pub role: String,
    /// Agreement it runs under, when this node holds one.
    pub agreement: Option<String>,
    /// The other parties.
    pub peers: Vec<String>,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// Current phase of the protocol.
    pub phase: String,
    /// Work units done in the current phase.
    pub done: u64,
    /// Work units of the current phase.
    pub total: u64,
    /// SHA-256 of the run's transcript, once it succeeded.
    pub transcript_sha256: Option<String>,
    /// The result this node learned, once the job succeeded.
    pub result: Option<Value>,
    /// The reason the job failed.
    pub error: Option<String>,
    /// Start time.
    pub created: String,
    /// Time of the last change.
    pub updated: String,
}

/// Checks a job id chosen by a peer: 1 to 64 ASCII letters, digits and '-', so that it
/// is safe in paths and logs.
///
/// # Errors
///
/// [`NodeError::BadRequest`] naming the id.
pub fn check_id(id: &str) -> NodeResult<()> {
    let valid =
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        return Ok(());
    }
    let shown: String = id.chars().take(80).collect();
    Err(NodeError::BadRequest(format!(
        "job id {shown:?} is invalid: use 1 to 64 ASCII letters, digits and '-', such as a UUID"
    )))
}

/// Fields of a new job row.
pub struct NewJob<'a> {
    /// Job id.
    pub id: &'a str,
    /// Kind of computation.
    pub kind: &'a str,
    /// This node's role.
    pub role: &'a str,
    /// Agreement it runs under.
    pub agreement: Option<&'a str>,
    /// The other parties.
    pub peers: &'a [String],
}

/// Inserts a running job inside the caller's transaction and pushes its `job.started`
/// event.
///
/// # Errors
///
/// [`NodeError::Conflict`] when a job with this id exists.
pub fn insert(
    tx: &rusqlite::Transaction,
    events: &mut Vec<AuditEvent>,
    actor: &str,
    job: &NewJob<'_>,
    detail: Value,
) -> NodeResult<()> {
    check_id(job.id)?;
    let now = OffsetDateTime::now_utc().to_string();
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO jobs (id, kind, role, agreement_id, peers, state, phase, created, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'starting', ?7, ?7)",
        params![job.id, job.kind, job.role, job.agreement, json!(job.peers).to_string(), RUNNING, now],
    )?;
    if inserted == 0 {
        return Err(NodeError::Conflict(format!(
            "job {} exists already: start a new job with a new id",
            job.id
        )));
    }
    let mut detail = detail;
    detail["job"] = json!(job.id);
    detail["kind"] = json!(job.kind);
    detail["role"] = json!(job.role);
    detail["peers"] = json!(job.peers);
    let mut event = AuditEvent::now("job.started", actor, true, detail);
    event.agreement = job.agreement.map(str::to_owned);
    events.push(event);
    Ok(())
}

/// Records progress of a running job; no audit entry.
///
/// # Errors
///
/// A storage error.
pub fn progress(store: &Store, id: &str, phase: &str, done: u64, total: u64) -> NodeResult<()> {
    store.write(|c| {
        c.execute(
            "UPDATE jobs SET phase = ?2, done = ?3, total = ?4, updated = ?5
             WHERE id = ?1 AND state = 'running'",
            params![
                id,
                phase,
                done as i64,
                total as i64,
                OffsetDateTime::now_utc().to_string()
            ],
        )?;
        Ok(())
    })
}

/// Ends a running job with its result and writes `{kind}.completed` with the
/// transcript hash.
///
/// # Errors
///
/// [`NodeError::JobFailed`] when the job is no longer running, for example because a
/// peer ended it meanwhile; a storage error.
pub fn succeed(
    store: &Store,
    actor: &str,
    id: &str,
    transcript_sha256: &str,
    result: Value,
) -> NodeResult<()> {
    let view = show(store, id)?;
    store.audited(
        &format!("{}.completed", view.kind),
        actor,
        view.agreement.as_deref(),
        |tx, events| {
            let changed = tx.execute(
                "UPDATE jobs SET state = ?2, phase = 'done', transcript_sha256 = ?3, result = ?4,
             updated = ?5 WHERE id = ?1 AND state = 'running'",
                params![
                    id,
                    SUCCEEDED,
                    transcript_sha256,
                    result.to_string(),
                    OffsetDateTime::now_utc().to_string()
                ],
            )?;
            if changed == 0 {
                return Err(NodeError::JobFailed(format!(
                    "job {id} was ended before it could complete"
                )));
            }
            let detail = json!({ "job": id, "peers": view.peers,
                             "transcript_sha256": transcript_sha256, "result": result });
            let mut event =
                AuditEvent::now(&format!("{}.completed", view.kind), actor, true, detail);
            event.agreement = view.agreement.clone();
            events.push(event);
            Ok(())
        },
    )
}

/// Ends a running job as failed and writes `job.failed` with the reason. Does nothing
/// to a job that has already ended, or that this node never started.
///
/// # Errors
///
/// A storage error.
pub fn fail(store: &Store, actor: &str, id: &str, reason: &str) -> NodeResult<()> {
    // While the process stops, its worker tasks are cancelled and their jobs fail for that
    // reason alone. Such a job stays running, so that the next start resumes it or ends it
    // and notifies its peers.
    if store.stopping() {
        tracing::info!(target: "carrel::jobs", job = id, reason,
            "job left running because the node is stopping");
        return Ok(());
    }
    let Some(view) = find(store, id)? else {
        return Ok(());
    };
    store.audited("job.failed", actor, view.agreement.as_deref(), |tx, events| {
        let changed = tx.execute(
            "UPDATE jobs SET state = ?2, error = ?3, updated = ?4 WHERE id = ?1 AND state = 'running'",
            params![id, FAILED, reason, OffsetDateTime::now_utc().to_string()],
        )?;
        if changed == 0 {
            return Ok(());
        }
        tracing::warn!(target: "carrel::jobs", job = id, kind = %view.kind, reason, "job failed");
        let detail = json!({ "job": id, "kind": view.kind, "peers": view.peers,
                             "phase": view.phase, "reason": reason });
        let mut event = AuditEvent::now("job.failed", actor, false, detail);
        event.agreement = view.agreement.clone();
        events.push(event);
        Ok(())
    })
}

/// Ends every job still running when the node starts, because its in-memory state went
/// with the process that ran it. Jobs for which `resumes` returns true are left running,
/// because they continue from saved state. Returns the ended jobs, so that their peers
/// can be notified.
///
/// # Errors
///
/// A storage error.
pub fn fail_interrupted(
    store: &Store,
    actor: &str,
    resumes: impl Fn(&JobView) -> bool,
) -> NodeResult<Vec<JobView>> {
    let running: Vec<JobView> = list(store)?
        .into_iter()
        .filter(|job| job.state == RUNNING && !resumes(job))
        .collect();
    for job in &running {
        fail(
            store,
            actor,
            &job.id,
            "the node stopped during the job; start a new one",
        )?;
    }
    Ok(running)
}

/// Ends `job` at the request of `signer`, one of its peers, after `drop_state` has
/// dropped the protocol state this node keeps for it; returns the job's state, which
/// stays `succeeded` for a job that ended well before the request came.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a signer that is not a party to the job.
pub fn end_at_peer_request(
    store: &Store,
    signer: &str,
    job: &str,
    reason: &str,
    drop_state: impl FnOnce(),
) -> NodeResult<Value> {
    let view = show(store, job)?;
    if !view.peers.iter().any(|p| p == signer) {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not a party to job {job}"
        )));
    }
    drop_state();
    fail(
        store,
        signer,
        job,
        &format!("{signer} ended the job: {reason}"),
    )?;
    Ok(json!({ "job": job, "state": show(store, job)?.state }))
}

/// Returns one job.
///
/// # Errors
///
/// [`NodeError::NotFound`] for an unknown id.
pub fn show(store: &Store, id: &str) -> NodeResult<JobView> {
    find(store, id)?.ok_or_else(|| NodeError::NotFound {
        what: "job",
        id: id.to_owned(),
    })
}

/// Returns the running jobs of `kind` for a node that starts, or none after logging a
/// storage error.
pub fn running_at_start(store: &Store, kind: &str) -> Vec<JobView> {
    match list(store) {
        Ok(all) => all
            .into_iter()
            .filter(|job| job.kind == kind && job.state == RUNNING)
            .collect(),
        Err(error) => {
            tracing::error!(target: "carrel::training", %error, kind,
                "running jobs not resumed");
            Vec::new()
        }
    }
}

/// Returns every job, newest first.
///
/// # Errors
///
/// A storage error.
pub fn list(store: &Store) -> NodeResult<Vec<JobView>> {
    store.read(|c| {
        let mut statement = c.prepare(&format!("{SELECT} ORDER BY created DESC, id"))?;
        let rows = statement.query_map([], row)?;
        let views = rows.collect::<Result<Vec<_>, _>>()?;
        views.into_iter().map(finish_view).collect()
    })
}

fn find(store: &Store, id: &str) -> NodeResult<Option<JobView>> {
    store.read(|c| find_in(c, id))
}

/// Returns job `id` as read through the connection `conn`, inside its transaction.
///
/// # Errors
///
/// A storage error.
pub(crate) fn find_in(conn: &rusqlite::Connection, id: &str) -> NodeResult<Option<JobView>> {
    let view = conn
        .query_row(&format!("{SELECT} WHERE id = ?1"), [id], row)
        .optional()?;
    view.map(finish_view).transpose()
}

const SELECT: &str = "SELECT id, kind, role, agreement_id, peers, state, phase, done, total,
    transcript_sha256, result, error, created, updated FROM jobs";

type Row = (JobView, String, Option<String>);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let view = JobView {
        id: r.get(0)?,
        kind: r.get(1)?,
        role: r.get(2)?,
        agreement: r.get(3)?,
        peers: Vec::new(),
        state: r.get(5)?,
        phase: r.get(6)?,
        done: r.get::<_, i64>(7)? as u64,
        total: r.get::<_, i64>(8)? as u64,
        transcript_sha256: r.get(9)?,
        result: None,
        error: r.get(11)?,
        created: r.get(12)?,
        updated: r.get(13)?,
    };
    Ok((view, r.get(4)?, r.get(10)?))
}

fn finish_view((mut view, peers, result): Row) -> NodeResult<JobView> {
    view.peers = from_json(&peers)?;
    view.result = result.as_deref().map(from_json).transpose()?;
    Ok(view)
}
