//! Differentially private queries under an agreement: the provider's checks and
//! budget charge, and the consumer's forwarding.
//!
//! Order of the provider's checks, so that only a release costs budget:
//! 1. the agreement: requester, revocation, validity window, query count;
//! 2. the plan alone (no data read): a rejection is logged and costs nothing;
//! 3. the budget, before reading data, to spare the work of a hopeless query;
//! 4. execution: bounding, clamping, noisy aggregates, suppression;
//! 5. one transaction that checks the agreement and budget again, charges them,
//!    records the release and appends its audit entry. Concurrent queries serialise
//!    here, so they can never overspend. A query that loses the race is rejected, and
//!    its computed result is dropped without leaving the node.

use carrel_model::{AuditEvent, UsagePolicy};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::agreements::{self, AgreementRecord};
use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::provider::load_dataset;
use crate::signing::sha256_hex;

/// Slack allowed when comparing summed epsilons with the budget, so that five
/// charges of 0.2 fit a budget of 1.0 despite rounding in the sum.
const BUDGET_SLACK: f64 = 1e-9;

/// A query sent under an agreement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryRequest {
    /// Agreement id.
    pub agreement: String,
    /// SQL text.
    pub sql: String,
    /// Epsilon to spend; the offer's default when absent.
    #[serde(default)]
    pub epsilon: Option<f64>,
}

/// Runs a consumer's query on the provider's data and returns the release.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for an agreement that may not be used,
/// [`NodeError::QueryRejected`] from the plan, [`NodeError::BudgetExceeded`].
pub async fn run(
    node: &Node,
    signer: &str,
    request: QueryRequest,
) -> NodeResult<serde_json::Value> {
    let agreement_id = request.agreement.clone();

    // 1-3: checks that read no data; each failure is logged and charges nothing.
    let (checked, epsilon, eps, delta) =
        prepare(node, signer, &request).await.map_err(|error| {
            node.store
                .reject("query", signer, Some(&agreement_id), error)
        })?;

    // 4: execution reads the data; nothing leaves until the charge commits. An
    // execution error is charged too, because the query read data, and its text stays
    // in the provider's log, because it may quote values.
    let result = match carrel_query::execute(&checked, epsilon).await {
        Ok(release) => {
            Some(serde_json::to_value(&release).map_err(|e| NodeError::Internal(e.to_string()))?)
        }
        Err(error) => {
            tracing::error!(target: "carrel::query", agreement = %agreement_id, error = ?error, "query execution failed");
            None
        }
    };

    // 5: charge and record atomically.
    let response = node
        .store
        .audited("query", signer, Some(&agreement_id), |tx, events| {
            let record = agreements::load_with_offer_totals(tx, &agreement_id)?;
            check_agreement(&record, signer)?;
            let policy = &record.signed.agreement.policy;
            check_budget(&record, policy, eps, delta)?;
            tx.execute(
                "UPDATE agreements SET queries_used = queries_used + 1,
             epsilon_spent = epsilon_spent + ?1, delta_spent = delta_spent + ?2 WHERE id = ?3",
                params![eps, delta, agreement_id],
            )?;
            let sql_sha256 = sha256_hex(request.sql.as_bytes());
            let Some(result) = &result else {
                events.push(
                    AuditEvent::now(
                        "query.failed",
                        signer,
                        false,
                        json!({ "epsilon": eps, "delta": delta, "sql_sha256": sql_sha256 }),
                    )
                    .with_agreement(&agreement_id),
                );
                return Ok(None);
            };
            let result_sha256 = sha256_hex(result.to_string().as_bytes());
            tx.execute(
                "INSERT INTO releases (agreement_id, time, epsilon, delta, sql_sha256, result_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    agreement_id,
                    OffsetDateTime::now_utc().to_string(),
                    eps,
                    delta,
                    sql_sha256,
                    result_sha256
                ],
            )?;
            events.push(
                AuditEvent::now(
                    "query.released",
                    signer,
                    true,
                    json!({ "epsilon": eps, "delta": delta, "sql_sha256": sql_sha256,
                            "result_sha256": result_sha256, "price": policy.price_per_query }),
                )
                .with_agreement(&agreement_id),
            );
            let spent = (record.epsilon_spent + eps, record.delta_spent + delta);
            Ok(Some(json!({
                "agreement": agreement_id,
                "release": result,
                "epsilon_spent": eps,
                "delta_spent": delta,
                "budget": {
                    "epsilon_spent": spent.0, "delta_spent": spent.1,
                    "epsilon_left": (policy.budget.epsilon - spent.0).max(0.0),
                    "delta_left": (policy.budget.delta - spent.1).max(0.0),
                    "queries_used": record.queries_used + 1,
                    "queries_left": policy.max_queries.saturating_sub(record.queries_used + 1),
                },
            })))
        })?;
    response.ok_or_else(|| {
        NodeError::QueryFailed(format!(
            "the query on agreement {agreement_id} failed while reading data; it was charged \
             epsilon {eps} because it read data, and the provider's log has the details"
        ))
    })
}

type Prepared = (carrel_query::CheckedQuery, f64, f64, f64);

async fn prepare(node: &Node, signer: &str, request: &QueryRequest) -> NodeResult<Prepared> {
    let record = node
        .store
        .read(|c| agreements::load_with_offer_totals(c, &request.agreement))?;
    check_agreement(&record, signer)?;
    let policy = &record.signed.agreement.policy;
    let epsilon = request.epsilon.unwrap_or(policy.query_epsilon);
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(NodeError::BadRequest(format!(
            "epsilon {epsilon} is invalid: give a finite number above 0"
        )));
    }
    let product_id = &record.signed.agreement.target;
    let (dataset, path) = node.store.read(|c| dataset_of(c, product_id))?;
    let table = carrel_query::RegisteredTable::new(dataset.description, path);
    let checked = carrel_query::check_query(&request.sql, &table, policy)
        .await
        .map_err(|e| NodeError::QueryRejected(e.to_string()))?;
    checked
        .check_epsilon(epsilon)
        .map_err(|e| NodeError::BadRequest(e.to_string()))?;
    let (eps, delta) = checked.cost(epsilon);
    check_budget(&record, policy, eps, delta)?;
    Ok((checked, epsilon, eps, delta))
}

pub(crate) fn check_agreement(record: &AgreementRecord, signer: &str) -> NodeResult<()> {
    carrel_policy::check_use(
        &record.signed.agreement,
        signer,
        record.revoked,
        record.queries_used,
        OffsetDateTime::now_utc(),
    )?;
    Ok(())
}

pub(crate) fn check_budget(
    record: &AgreementRecord,
    policy: &UsagePolicy,
    eps: f64,
    delta: f64,
) -> NodeResult<()> {
    let budget = policy.budget;
    let eps_after = record.epsilon_spent + eps;
    let delta_after = record.delta_spent + delta;
    if eps_after > budget.epsilon + BUDGET_SLACK
        || delta_after > budget.delta * (1.0 + BUDGET_SLACK)
    {
        return Err(NodeError::BudgetExceeded(format!(
            "the query needs epsilon {eps} and delta {delta:e}, but agreement {} (with the consumer's other agreements on the same offer) has only epsilon {} \
             and delta {:e} left; ask with a smaller --epsilon; the offer's budget covers every agreement between this consumer and the offer",
            record.signed.agreement.id,
            (budget.epsilon - record.epsilon_spent).max(0.0),
            (budget.delta - record.delta_spent).max(0.0)
        )));
    }
    Ok(())
}

pub(crate) fn dataset_of(
    conn: &rusqlite::Connection,
    product_id: &str,
) -> NodeResult<(carrel_model::Dataset, std::path::PathBuf)> {
    let dataset_id: String = crate::store::found(
        conn.query_row(
            "SELECT json_extract(body, '$.dataset_id') FROM products WHERE id = ?1",
            [product_id],
            |r| r.get(0),
        ),
        "product",
        product_id,
    )?;
    load_dataset(conn, &dataset_id)
}

/// Sends a query to the agreement's provider and records the release received.
///
/// # Errors
///
/// The provider's rejection, passed on.
pub async fn forward(node: &Node, request: QueryRequest) -> NodeResult<serde_json::Value> {
    let me = node.identity.name().to_owned();
    let record = node
        .store
        .read(|c| agreements::load(c, &request.agreement))?;
    let provider = record.signed.agreement.assigner.clone();
    let outcome = node.post(&provider, "/queries", &request).await;
    node.store
        .audited("query.send", &me, Some(&request.agreement), |_, events| {
            let response = outcome?;
            events.push(
                AuditEvent::now(
                    "query.received",
                    &me,
                    true,
                    json!({ "provider": provider, "epsilon": response["epsilon_spent"],
                        "delta": response["delta_spent"],
                        "sql_sha256": sha256_hex(request.sql.as_bytes()),
                        "result_sha256": sha256_hex(response["release"].to_string().as_bytes()) }),
                )
                .with_agreement(&request.agreement),
            );
            Ok(response)
        })
}
