//! The provider's side: agreement and budget checks, local exact totals, masking.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrel_model::ColumnType;
use carrel_mpc::secagg::{
    IntegerEncoding, LaplaceNoise, MIN_PARTIES, MaskingParty, Round, RoundConfig,
};
use carrel_query::{ExactCell, ExactSum};
use rusqlite::params;
use serde_json::{Value, json};

use super::{
    FinishRound, Join, Joined, MODULUS_BITS, MaskRequest, ProviderRound, REAL_FRACTION_BITS,
    check_column, noise_scales, terms_of, transcript_hash,
};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::{self, NewJob};
use crate::node::Node;
use crate::signing::sha256_hex;

/// Joins a round: checks the agreement, charges the budget, computes the local totals
/// and draws this round's X25519 key.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that may not be used,
/// [`NodeError::BadRequest`] for a round with fewer than three providers or without
/// this node, [`NodeError::BudgetExceeded`].
pub async fn join(node: &Node, signer: &str, join: Join) -> NodeResult<Value> {
    let index = check_join(node, &join).map_err(|e| {
        node.store
            .reject("secagg", signer, Some(&join.agreement), e)
    })?;

    let (terms, policy, dataset, path) =
        node.store
            .audited("secagg", signer, Some(&join.agreement), |tx, events| {
                let record = agreements::load_with_offer_totals(tx, &join.agreement)?;
                crate::query::check_agreement(&record, signer)?;
                let terms = terms_of(&record)?;
                let policy = record.signed.agreement.policy.clone();
                crate::query::check_budget(&record, &policy, join.epsilon, 0.0)?;
                tx.execute(
                    "UPDATE agreements SET queries_used = queries_used + 1,
                 epsilon_spent = epsilon_spent + ?1 WHERE id = ?2",
                    params![join.epsilon, join.agreement],
                )?;
                let (dataset, path) =
                    crate::query::dataset_of(tx, &record.signed.agreement.target)?;
                let mut peers = vec![signer.to_owned()];
                peers.extend(
                    join.parties
                        .iter()
                        .filter(|p| *p != node.identity.name())
                        .cloned(),
                );
                let new = NewJob {
                    id: &join.job,
                    kind: "secagg",
                    role: "provider",
                    agreement: Some(&join.agreement),
                    peers: &peers,
                };
                let detail = json!({ "columns": join.columns, "epsilon": join.epsilon,
                                 "index": index, "parties": join.parties });
                jobs::insert(tx, events, signer, &new, detail)?;
                Ok((terms, policy, dataset, path))
            })?;

    let local = local_totals(&join, &dataset, path, &policy, terms.max_rows).await;
    let (totals, sensitivities, max_contribution, fraction_bits) = match local {
        Ok(local) => local,
        Err(error) => {
            jobs::fail(&node.store, signer, &join.job, &error.to_string())?;
            return Err(error);
        }
    };
    let provisional = Round::new(RoundConfig {
        session_id: join.job.clone(),
        parties: join.parties.len(),
        vector_len: totals.len(),
        modulus_bits: MODULUS_BITS,
        max_contribution: 1,
        noise_margin: 0,
    })
    .and_then(|round| MaskingParty::new(&round, index));
    let masking = match provisional {
        Ok(masking) => masking,
        Err(error) => {
            let error = NodeError::BadRequest(error.to_string());
            jobs::fail(&node.store, signer, &join.job, &error.to_string())?;
            return Err(error);
        }
    };

    let reply = Joined {
        public_key: STANDARD.encode(masking.public_key()),
        sensitivities: sensitivities.clone(),
        max_contribution,
        fraction_bits,
    };
    let round = ProviderRound {
        consumer: signer.to_owned(),
        join: join.clone(),
        index,
        totals,
        sensitivities,
        max_contribution,
        masking: Some(masking),
        request: None,
        masked_sha256: None,
    };
    node.secagg
        .lock()
        .insert(join.job.clone(), Arc::new(Mutex::new(round)));
    jobs::progress(&node.store, &join.job, "waiting for every key", 0, 0)?;
    Ok(serde_json::json!(reply))
}

fn check_join(node: &Node, join: &Join) -> NodeResult<usize> {
    if join.parties.len() < MIN_PARTIES {
        return Err(NodeError::BadRequest(format!(
            "a secure aggregation needs at least {MIN_PARTIES} providers, but {} were named; \
             with two, each could subtract its own input from the total",
            join.parties.len()
        )));
    }
    let mut sorted = join.parties.clone();
    sorted.sort();
    sorted.dedup();
    if sorted != join.parties {
        return Err(NodeError::BadRequest(
            "parties must be distinct and in name order".into(),
        ));
    }
    let me = node.identity.name();
    let index = join.parties.iter().position(|p| p == me).ok_or_else(|| {
        NodeError::BadRequest(format!(
            "the parties {:?} do not include {me:?}",
            join.parties
        ))
    })?;
    if join.columns.is_empty() {
        return Err(NodeError::BadRequest(
            "name at least one column to sum".into(),
        ));
    }
    join.columns.iter().try_for_each(|c| check_column(c))?;
    if !(join.epsilon.is_finite() && join.epsilon > 0.0) {
        return Err(NodeError::BadRequest(format!(
            "epsilon {} is invalid: give a finite number above 0",
            join.epsilon
        )));
    }
    Ok(index)
}

type Local = (Vec<i64>, Vec<u64>, u64, Vec<i32>);

/// Runs `SELECT COUNT(*), SUM(c)... ` exactly on the product, and returns the encoded
/// totals, each coordinate's sensitivity and the contribution bound.
async fn local_totals(
    join: &Join,
    dataset: &carrel_model::Dataset,
    path: std::path::PathBuf,
    policy: &carrel_model::UsagePolicy,
    max_rows: u64,
) -> NodeResult<Local> {
    let description = &dataset.description;
    let sums: Vec<String> = join.columns.iter().map(|c| format!("SUM({c})")).collect();
    let sql = format!(
        "SELECT COUNT(*), {} FROM {}",
        sums.join(", "),
        description.name
    );
    let table = carrel_query::RegisteredTable::new(description.clone(), path);
    let checked = carrel_query::check_query(&sql, &table, policy)
        .await
        .map_err(|e| NodeError::QueryRejected(e.to_string()))?;
    let exact = carrel_query::execute_without_noise_insecure(&checked).await.map_err(|e| {
        tracing::error!(target: "carrel::secagg", job = %join.job, error = ?e, "local totals failed");
        NodeError::QueryFailed("computing the local totals failed; the provider's log has the details".into())
    })?;

    let per_unit = u64::from(policy.max_rows_per_unit);
    let cells = exact
        .groups
        .first()
        .map(|g| g.cells.clone())
        .unwrap_or_default();
    let rows = match cells.first() {
        Some(ExactCell::Count(n)) => *n,
        _ => 0,
    };
    if rows > max_rows {
        return Err(NodeError::Forbidden(format!(
            "the product has {rows} rows, more than the {max_rows} its offer declares"
        )));
    }
    let mut totals = vec![i64::try_from(rows).unwrap_or(i64::MAX)];
    let mut sensitivities = vec![per_unit];
    let mut bound = max_rows;
    let mut fraction_bits = vec![0];
    for (i, column) in join.columns.iter().enumerate() {
        let spec = description.column(column).ok_or_else(|| {
            NodeError::BadRequest(format!("the product has no column {column:?}"))
        })?;
        let (lower, upper) = spec
            .bounds
            .map(|b| (b.lower, b.upper))
            .unwrap_or((0.0, 0.0));
        let real = spec.column_type == ColumnType::Float;
        let bits = if real { REAL_FRACTION_BITS } else { 0 };
        fraction_bits.push(bits);
        let scale = 2f64.powi(bits);
        let magnitude = lower.abs().max(upper.abs()) * scale;
        sensitivities.push((magnitude * per_unit as f64).ceil() as u64);
        bound = bound.max((magnitude * max_rows as f64).ceil() as u64);
        let value = match cells.get(i + 1) {
            Some(ExactCell::Sum(ExactSum::Integer(v))) => i64::try_from(*v).unwrap_or(i64::MAX),
            Some(ExactCell::Sum(sum)) => (sum.to_f64() * scale).round_ties_even() as i64,
            _ => 0,
        };
        totals.push(value);
    }
    Ok((totals, sensitivities, bound, fraction_bits))
}

fn round_of(node: &Node, signer: &str, job: &str) -> NodeResult<Arc<Mutex<ProviderRound>>> {
    let round = node
        .secagg
        .lock()
        .get(job)
        .cloned()
        .ok_or_else(|| NodeError::NotFound {
            what: "running secure aggregation",
            id: job.to_owned(),
        })?;
    if round.lock().unwrap_or_else(|p| p.into_inner()).consumer != signer {
        return Err(NodeError::Forbidden(format!(
            "{signer:?} is not the consumer of job {job}"
        )));
    }
    Ok(round)
}

/// Masks this provider's totals once every key and the round's settings are known.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for settings this provider cannot accept: a noise scale
/// below its own need, a bound below its own contribution, an invalid key. The job
/// ends on this node.
pub async fn mask(node: &Node, signer: &str, job: &str, request: MaskRequest) -> NodeResult<Value> {
    let round = round_of(node, signer, job)?;
    let agreement = round
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .join
        .agreement
        .clone();
    let masked = match agreements::check_in_force(&node.store, &agreement) {
        Ok(()) => {
            let mut round = round.lock().unwrap_or_else(|p| p.into_inner());
            mask_round(&mut round, request)
        }
        Err(error) => Err(error),
    };
    match masked {
        Ok(masked) => {
            jobs::progress(&node.store, job, "masked; waiting for the total", 0, 0)?;
            Ok(json!({ "masked": masked }))
        }
        Err(error) => {
            node.secagg.lock().remove(job);
            jobs::fail(&node.store, signer, job, &error.to_string())?;
            Err(error)
        }
    }
}

fn mask_round(round: &mut ProviderRound, request: MaskRequest) -> NodeResult<Vec<u64>> {
    let len = round.totals.len();
    if request.noise_sensitivities.len() != len
        || request.public_keys.len() != round.join.parties.len()
    {
        return Err(NodeError::BadRequest(format!(
            "the round needs {len} noise scales and {} keys",
            round.join.parties.len()
        )));
    }
    if request.max_contribution < round.max_contribution {
        return Err(NodeError::BadRequest(format!(
            "the round's bound {} is below this provider's contribution bound {}",
            request.max_contribution, round.max_contribution
        )));
    }
    // The noise must protect this provider's data at least as its own agreement requires.
    for (j, (&named, &own)) in request
        .noise_sensitivities
        .iter()
        .zip(&round.sensitivities)
        .enumerate()
    {
        if named < own {
            return Err(NodeError::BadRequest(format!(
                "the round's sensitivity {named} of coordinate {j} is below this provider's {own}"
            )));
        }
    }
    let noises = noise_scales(&request.noise_sensitivities, round.join.epsilon)
        .iter()
        .map(|&s| LaplaceNoise::new(s.max(f64::MIN_POSITIVE)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NodeError::BadRequest(e.to_string()))?;
    let margin = noises.iter().map(LaplaceNoise::margin).max().unwrap_or(0);
    let keys = request
        .public_keys
        .iter()
        .map(|k| {
            let bytes = STANDARD.decode(k).ok()?;
            <[u8; 32]>::try_from(bytes.as_slice()).ok()
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| NodeError::BadRequest("a public key is not 32 bytes of base64".into()))?;

    let bad = |e: carrel_mpc::secagg::SecAggError| NodeError::BadRequest(e.to_string());
    let settled = Round::new(RoundConfig {
        session_id: round.join.job.clone(),
        parties: round.join.parties.len(),
        vector_len: len,
        modulus_bits: MODULUS_BITS,
        max_contribution: u128::from(request.max_contribution),
        noise_margin: margin,
    })
    .map_err(bad)?;
    let encoding = IntegerEncoding::new(request.max_contribution);
    let mut encoded = encoding.encode(&round.totals, &settled).map_err(bad)?;
    if round.index == 0 {
        // Each coordinate has its own scale, so each takes its own draw.
        let modulus = settled.modulus();
        for (j, noise) in noises.iter().enumerate() {
            let mut draw = vec![0u64; len];
            noise.add_to(&mut draw, &settled).map_err(bad)?;
            encoded[j] = modulus.add(encoded[j], draw[j]);
        }
    }
    let masking = round.masking.take().ok_or_else(|| {
        NodeError::Conflict(format!(
            "job {} has masked its totals already",
            round.join.job
        ))
    })?;
    let masked = masking
        .settle(&settled)
        .and_then(|m| m.mask(&encoded, &keys))
        .map_err(bad)?;
    round.masked_sha256 = Some(sha256_hex(&masked_bytes(&masked)));
    round.request = Some(request);
    Ok(masked)
}

/// The bytes a masked vector's digest is taken over: each value as 8 big-endian bytes.
pub(super) fn masked_bytes(masked: &[u64]) -> Vec<u8> {
    masked.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Ends the round: checks the consumer's account of it and records the transcript hash.
///
/// # Errors
///
/// [`NodeError::JobFailed`] when this provider's digest or the transcript differs.
pub async fn finish(
    node: &Node,
    signer: &str,
    job: &str,
    finish: FinishRound,
) -> NodeResult<Value> {
    let round = round_of(node, signer, job)?;
    node.secagg.lock().remove(job);
    let checked = {
        let round = round.lock().unwrap_or_else(|p| p.into_inner());
        check_finish(&round, &finish)
    };
    match checked {
        Ok(hash) => {
            let result = json!({ "contributed": true, "index": index_of(&round) });
            jobs::succeed(&node.store, signer, job, &hash, result)?;
            Ok(json!({ "transcript_sha256": hash }))
        }
        Err(error) => {
            jobs::fail(&node.store, signer, job, &error.to_string())?;
            Err(error)
        }
    }
}

fn index_of(round: &Mutex<ProviderRound>) -> usize {
    round.lock().unwrap_or_else(|p| p.into_inner()).index
}

fn check_finish(round: &ProviderRound, finish: &FinishRound) -> NodeResult<String> {
    let (Some(request), Some(own)) = (&round.request, &round.masked_sha256) else {
        return Err(NodeError::JobFailed(
            "the round ended before this provider masked".into(),
        ));
    };
    if finish.masked_sha256.get(round.index) != Some(own) {
        return Err(NodeError::JobFailed(format!(
            "the consumer's digest of this provider's masked vector differs from {own}"
        )));
    }
    let hash = transcript_hash(&round.join, request, &finish.masked_sha256);
    if hash != finish.transcript_sha256 {
        return Err(NodeError::JobFailed(format!(
            "transcripts differ: the consumer saw {}, this provider {hash}",
            finish.transcript_sha256
        )));
    }
    Ok(hash)
}

/// Ends the round of `job` at the consumer's request.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a caller that is not a party to the job.
pub fn abort(node: &Node, signer: &str, job: &str, reason: &str) -> NodeResult<Value> {
    jobs::end_at_peer_request(&node.store, signer, job, reason, || {
        node.secagg.lock().remove(job);
    })
}
