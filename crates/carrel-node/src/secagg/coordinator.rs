//! The consumer's side: it gathers the keys, settles the round, sums the masked vectors
//! and decodes the noisy total.

use std::sync::Arc;

use carrel_mpc::secagg::{Aggregator, LaplaceNoise, Round, RoundConfig};
use serde::Serialize;
use serde_json::{Value, json};

use super::provider::masked_bytes;
use super::{
    FinishRound, Join, Joined, MODULUS_BITS, MaskRequest, StartSecAgg, check_column, noise_scales,
    terms_of, transcript_hash,
};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::wire::{PeerCalls, end_everywhere};
use crate::jobs::{self, NewJob};
use crate::node::Node;
use crate::signing::sha256_hex;

/// Starts a round from the `carrel aggregate` command and runs it in the background.
/// Returns the job id at once.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for fewer than three agreements, two with the same
/// provider, or an invalid column; [`NodeError::Forbidden`] for an agreement that does
/// not permit secure aggregation.
pub fn start(node: Arc<Node>, request: StartSecAgg) -> NodeResult<Value> {
    let me = node.identity.name().to_owned();
    let checked = check_start(&node, &request);
    let (providers, epsilon) = checked.map_err(|e| node.store.reject("secagg", &me, None, e))?;
    let job = uuid::Uuid::new_v4().to_string();
    let names: Vec<String> = providers.iter().map(|(name, _)| name.clone()).collect();
    node.store.audited("secagg", &me, None, |tx, events| {
        let new = NewJob {
            id: &job,
            kind: "secagg",
            role: "consumer",
            agreement: None,
            peers: &names,
        };
        let detail = json!({ "agreements": request.agreements, "columns": request.columns,
                             "epsilon": epsilon });
        jobs::insert(tx, events, &me, &new, detail)
    })?;
    let run = Coordinator {
        node: node.clone(),
        job: job.clone(),
        providers,
        columns: request.columns,
        epsilon,
        calls: PeerCalls::new(node.clone()),
    };
    tokio::spawn(run.drive());
    Ok(json!({ "job": job, "state": jobs::RUNNING }))
}

/// Returns `(provider, agreement)` pairs in provider name order, and the epsilon.
fn check_start(node: &Node, request: &StartSecAgg) -> NodeResult<(Vec<(String, String)>, f64)> {
    request.columns.iter().try_for_each(|c| check_column(c))?;
    let mut providers = Vec::new();
    let mut epsilon = request.epsilon;
    for id in &request.agreements {
        let record = node.store.read(|c| agreements::load(c, id))?;
        terms_of(&record)?;
        epsilon = epsilon.or(Some(record.signed.agreement.policy.query_epsilon));
        providers.push((record.signed.agreement.assigner.clone(), id.clone()));
    }
    providers.sort();
    let mut names: Vec<&String> = providers.iter().map(|(n, _)| n).collect();
    names.dedup();
    if names.len() != providers.len() {
        return Err(NodeError::BadRequest(
            "two agreements are with the same provider: give one agreement per provider".into(),
        ));
    }
    if providers.len() < carrel_mpc::secagg::MIN_PARTIES {
        return Err(NodeError::BadRequest(format!(
            "a secure aggregation needs agreements with at least {} providers, {} given; with \
             two, each could subtract its own input from the total",
            carrel_mpc::secagg::MIN_PARTIES,
            providers.len()
        )));
    }
    // Providers read epsilon from JSON; pass it through JSON here too, so that every
    // party computes the noise scales from the same number.
    let epsilon = epsilon.unwrap_or(0.0);
    let epsilon: f64 = serde_json::from_value(json!(epsilon)).unwrap_or(epsilon);
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(NodeError::BadRequest(format!(
            "epsilon {epsilon} is invalid: give a finite number above 0"
        )));
    }
    Ok((providers, epsilon))
}

struct Coordinator {
    node: Arc<Node>,
    job: String,
    providers: Vec<(String, String)>,
    columns: Vec<String>,
    epsilon: f64,
    /// Calls to the providers, with their byte counts.
    calls: PeerCalls,
}

impl Coordinator {
    async fn drive(self) {
        if let Err(error) = self.run().await {
            let peers: Vec<String> = self
                .providers
                .iter()
                .map(|(name, _)| name.clone())
                .collect();
            end_everywhere(&self.node, &self.job, &peers, &error).await;
        }
    }

    async fn run(&self) -> NodeResult<()> {
        let parties: Vec<String> = self.providers.iter().map(|(n, _)| n.clone()).collect();
        let n = parties.len();

        // Join: every provider checks its agreement and returns its key.
        let mut joined = Vec::with_capacity(n);
        for (i, (provider, agreement)) in self.providers.iter().enumerate() {
            let join = Join {
                job: self.job.clone(),
                agreement: agreement.clone(),
                parties: parties.clone(),
                columns: self.columns.clone(),
                epsilon: self.epsilon,
            };
            let reply: Joined = self.call(provider, "/jobs/secagg", &join).await?;
            joined.push(reply);
            jobs::progress(
                &self.node.store,
                &self.job,
                "providers joined",
                i as u64 + 1,
                n as u64,
            )?;
        }

        // Settle: the largest bound, and for each coordinate the largest sensitivity.
        let len = self.columns.len() + 1;
        if joined.iter().any(|j| j.sensitivities.len() != len) {
            return Err(NodeError::JobFailed(
                "a provider responded with another vector length".into(),
            ));
        }
        let fraction_bits = joined[0].fraction_bits.clone();
        if fraction_bits.len() != len || joined.iter().any(|j| j.fraction_bits != fraction_bits) {
            return Err(NodeError::JobFailed(
                "the providers' columns differ in type: a secure aggregation needs the same schema"
                    .into(),
            ));
        }
        let noise_sensitivities: Vec<u64> = (0..len)
            .map(|j| joined.iter().map(|p| p.sensitivities[j]).max().unwrap_or(0))
            .collect();
        let request = MaskRequest {
            public_keys: joined.iter().map(|j| j.public_key.clone()).collect(),
            max_contribution: joined.iter().map(|j| j.max_contribution).max().unwrap_or(0),
            noise_sensitivities,
        };
        let margin = noise_scales(&request.noise_sensitivities, self.epsilon)
            .iter()
            .map(|&s| LaplaceNoise::new(s.max(f64::MIN_POSITIVE)).map(|l| l.margin()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NodeError::JobFailed(e.to_string()))?
            .into_iter()
            .max()
            .unwrap_or(0);
        let round = Round::new(RoundConfig {
            session_id: self.job.clone(),
            parties: n,
            vector_len: len,
            modulus_bits: MODULUS_BITS,
            max_contribution: u128::from(request.max_contribution),
            noise_margin: margin,
        })
        .map_err(|e| NodeError::JobFailed(e.to_string()))?;

        // Mask: each provider returns its masked vector.
        let mut aggregator = Aggregator::new(&round);
        let mut digests = Vec::with_capacity(n);
        for (i, (provider, _)) in self.providers.iter().enumerate() {
            let path = format!("/jobs/{}/secagg/mask", self.job);
            let reply: Value = self.call(provider, &path, &request).await?;
            let masked: Vec<u64> =
                serde_json::from_value(reply["masked"].clone()).map_err(|e| {
                    NodeError::JobFailed(format!("{provider} sent a malformed vector: {e}"))
                })?;
            digests.push(sha256_hex(&masked_bytes(&masked)));
            aggregator
                .add(i, masked)
                .map_err(|e| NodeError::JobFailed(e.to_string()))?;
            jobs::progress(
                &self.node.store,
                &self.job,
                "masked vectors received",
                i as u64 + 1,
                n as u64,
            )?;
        }
        let totals = aggregator
            .finish()
            .map_err(|e| NodeError::JobFailed(e.to_string()))?;

        // Finish: every provider checks the transcript before the total is recorded.
        let header = Join {
            job: self.job.clone(),
            agreement: String::new(),
            parties: parties.clone(),
            columns: self.columns.clone(),
            epsilon: self.epsilon,
        };
        let hash = transcript_hash(&header, &request, &digests);
        let finish = FinishRound {
            masked_sha256: digests,
            transcript_sha256: hash.clone(),
        };
        for (provider, _) in &self.providers {
            let path = format!("/jobs/{}/secagg/finish", self.job);
            let reply: Value = self.call(provider, &path, &finish).await?;
            if reply["transcript_sha256"].as_str() != Some(hash.as_str()) {
                return Err(NodeError::JobFailed(format!(
                    "{provider} saw another transcript"
                )));
            }
        }
        let result = self.result(&totals, &fraction_bits);
        jobs::succeed(
            &self.node.store,
            self.node.identity.name(),
            &self.job,
            &hash,
            result,
        )?;
        Ok(())
    }

    /// Returns the released totals: the noisy row count and each column's noisy sum.
    fn result(&self, totals: &[i128], fraction_bits: &[i32]) -> Value {
        let sums: serde_json::Map<String, Value> = self
            .columns
            .iter()
            .zip(totals[1..].iter().zip(&fraction_bits[1..]))
            .map(|(column, (total, bits))| {
                let value = if *bits == 0 {
                    json!(total)
                } else {
                    json!(*total as f64 / 2f64.powi(*bits))
                };
                (column.clone(), value)
            })
            .collect();
        json!({ "rows": totals[0], "sums": sums,
                "traffic": self.calls.traffic(), "epsilon_per_provider": self.epsilon,
                "noise": "discrete Laplace, added once by the first provider",
                "providers": self.providers.iter().map(|(n, _)| n).collect::<Vec<_>>() })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        provider: &str,
        path: &str,
        body: &impl Serialize,
    ) -> NodeResult<T> {
        self.calls.call(provider, path, body).await
    }
}
