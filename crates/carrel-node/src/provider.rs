//! The provider's side: datasets, products, negotiation decisions and queries.

use std::path::PathBuf;

use carrel_model::{
    AuditEvent, Dataset, DatasetDescription, Product, SignedAgreement, UsagePolicy,
};
use carrel_policy::negotiation::{Message, Side, transition};
use rusqlite::params;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::error::{NodeError, NodeResult};
use crate::negotiation::{self, AgreementMessage, ContractRequest, Negotiation};
use crate::node::Node;
use crate::signing;
use crate::store::{found, from_json, to_json};

/// Request to register a dataset from a file on the provider's machine.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct RegisterDataset {
    /// CSV or Parquet file to read.
    pub source: PathBuf,
    /// Description of the dataset.
    pub description: DatasetDescription,
}

/// Registers a dataset: reads and checks the file, stores it as Parquet and records
/// the registration report.
///
/// # Errors
///
/// [`NodeError::BadRequest`] naming the row, column or value that is wrong.
pub async fn register_dataset(
    node: &Node,
    request: RegisterDataset,
) -> NodeResult<serde_json::Value> {
    let me = node.identity.name().to_owned();
    let id = format!("ds-{}", uuid::Uuid::new_v4());
    let dest = node.dir.datasets().join(format!("{id}.parquet"));
    let description = request.description.clone();
    let source = request.source.clone();
    let registration = tokio::task::spawn_blocking(move || {
        description
            .validate()
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        std::fs::create_dir_all(dest.parent().unwrap_or(&dest))
            .map_err(|e| NodeError::Io(format!("cannot create the datasets folder: {e}")))?;
        carrel_query::register_dataset(&source, &description, &dest)
            .map_err(|e| NodeError::BadRequest(e.to_string()))
            .map(|report| (report, dest))
    })
    .await
    .map_err(|e| NodeError::Internal(format!("registration task failed: {e}")))?;
    node.store
        .audited("dataset.register", &me, None, |tx, events| {
            let (report, dest) = registration?;
            let dataset = Dataset {
                id: id.clone(),
                description: request.description,
                content_sha256: report.sha256.clone(),
                rows: report.rows_kept,
            };
            tx.execute(
                "INSERT INTO datasets (id, name, body, path, report) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id,
                    dataset.description.name,
                    to_json(&dataset),
                    dest.to_string_lossy(),
                    to_json(&report)
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(..) => NodeError::Conflict(format!(
                    "a dataset named {:?} is already registered: choose another name",
                    dataset.description.name
                )),
                other => other.into(),
            })?;
            events.push(AuditEvent::now(
                "dataset.registered",
                &me,
                true,
                json!({ "dataset": id, "name": dataset.description.name, "sha256": report.sha256,
                    "rows_read": report.rows_read, "rows_kept": report.rows_kept }),
            ));
            Ok(json!({ "dataset": dataset, "report": report }))
        })
}

/// Loads a registered dataset and the path of its table.
pub fn load_dataset(conn: &rusqlite::Connection, id: &str) -> NodeResult<(Dataset, PathBuf)> {
    let (body, path): (String, String) = found(
        conn.query_row(
            "SELECT body, path FROM datasets WHERE id = ?1 OR name = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ),
        "dataset",
        id,
    )?;
    Ok((from_json(&body)?, PathBuf::from(path)))
}

/// Request to publish a product.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct PublishProduct {
    /// Registered dataset id or name.
    pub dataset: String,
    /// Catalog title.
    pub title: String,
    /// Usage policy of the offer.
    pub policy: UsagePolicy,
}

/// Publishes a product: the exchange reviews it and lists it or rejects it.
///
/// # Errors
///
/// [`NodeError::ListingRejected`] with the exchange's reasons.
pub async fn publish(node: &Node, request: PublishProduct) -> NodeResult<serde_json::Value> {
    let me = node.identity.name().to_owned();
    let (dataset, _) = node.store.read(|c| load_dataset(c, &request.dataset))?;
    let product = Product {
        id: format!("prd-{}", uuid::Uuid::new_v4()),
        offer_id: format!("off-{}", uuid::Uuid::new_v4()),
        provider: me.clone(),
        dataset_id: dataset.id.clone(),
        dataset_sha256: dataset.content_sha256.clone(),
        title: request.title,
        dataset: dataset.description,
        policy: request.policy,
    };
    let exchange = node.exchange_name()?.to_owned();
    let outcome = node.post(&exchange, "/listings", &product).await;
    node.store.audited("product.publish", &me, None, |tx, events| {
        let entry = outcome?;
        tx.execute(
            "INSERT INTO products (id, offer_id, body, status) VALUES (?1, ?2, ?3, 'listed')",
            params![product.id, product.offer_id, to_json(&product)],
        )?;
        events.push(AuditEvent::now(
            "product.listed",
            &me,
            true,
            json!({ "product": product.id, "offer": product.offer_id, "dataset": product.dataset_id }),
        ));
        Ok(entry)
    })
}

fn listed_product(conn: &rusqlite::Connection, offer_id: &str) -> NodeResult<Product> {
    let body: String = found(
        conn.query_row(
            "SELECT body FROM products WHERE offer_id = ?1 AND status = 'listed'",
            [offer_id],
            |r| r.get(0),
        ),
        "offer",
        offer_id,
    )?;
    from_json(&body)
}

/// Handles a consumer's `ContractRequestMessage`: decides from the offer's policy and,
/// when the request passes, acknowledges it as REQUESTED and goes on to send a signed agreement.
///
/// # Errors
///
/// [`NodeError::Forbidden`] or [`NodeError::NotFound`] when the request fails the
/// offer's policy; nothing is stored but the rejection's log line.
pub async fn contract_request(
    node: &std::sync::Arc<Node>,
    signer: &str,
    request: ContractRequest,
) -> NodeResult<serde_json::Value> {
    let consumer = node.participant(signer).await;
    let n = node
        .store
        .audited("negotiation.request", signer, None, |tx, events| {
            let consumer = consumer?;
            if consumer.role != carrel_model::Role::Consumer {
                return Err(NodeError::Forbidden(format!(
                    "{signer:?} is not registered as a consumer"
                )));
            }
            let product = listed_product(tx, &request.offer.id)?;
            if product.id != request.offer.target {
                return Err(NodeError::BadRequest(format!(
                    "offer {} targets {}, not {}",
                    request.offer.id, product.id, request.offer.target
                )));
            }
            carrel_policy::check_purpose(&product.policy, &request.purpose)?;
            carrel_policy::check_validity(
                &product.offer_id,
                &product.policy,
                OffsetDateTime::now_utc(),
            )?;
            let state = transition(None, Side::Consumer, Message::Request)?;
            let n = Negotiation {
                id: format!("neg-{}", uuid::Uuid::new_v4()),
                peer_pid: Some(request.consumer_pid.clone()),
                side: Side::Provider,
                peer: signer.to_owned(),
                offer_id: product.offer_id.clone(),
                purpose: request.purpose.clone(),
                state,
                terms: product,
                signed: None,
                reason: None,
            };
            negotiation::save(tx, &n)?;
            events.push(AuditEvent::now(
                "negotiation.requested",
                signer,
                true,
                json!({ "negotiation": n.id, "peer_pid": n.peer_pid, "offer": n.offer_id,
                    "purpose": n.purpose }),
            ));
            Ok(n)
        })?;
    let ack = ack(&n);
    let node = node.clone();
    tokio::spawn(async move {
        if let Err(error) = send_agreement(&node, n.id.clone()).await {
            tracing::warn!(target: "carrel::negotiation", negotiation = %n.id, %error, "agreement not delivered");
        }
    });
    Ok(ack)
}

fn ack(n: &Negotiation) -> serde_json::Value {
    let (provider_pid, consumer_pid) = match n.side {
        Side::Provider => (Some(n.id.clone()), n.peer_pid.clone()),
        Side::Consumer => (n.peer_pid.clone(), Some(n.id.clone())),
    };
    json!({ "@type": "ContractNegotiation", "providerPid": provider_pid,
            "consumerPid": consumer_pid, "state": n.state.as_str() })
}

async fn send_agreement(node: &Node, id: String) -> NodeResult<()> {
    let me = node.identity.name().to_owned();
    let n = node
        .store
        .audited("negotiation.agree", &me, None, |tx, events| {
            let mut n = negotiation::load(tx, &id)?;
            let agreement = negotiation::draw_up(&n, &me);
            let signature = signing::sign(&node.identity, &agreement.signing_bytes());
            n.signed = Some(SignedAgreement {
                agreement,
                provider_signature: signature,
                consumer_signature: None,
                exchange_signature: None,
            });
            negotiation::step(tx, events, &mut n, Side::Provider, Message::Agreement, &me)?;
            Ok(n)
        })?;
    let message = AgreementMessage {
        provider_pid: n.id.clone(),
        consumer_pid: n.peer_pid.clone().unwrap_or_default(),
        event_type: None,
        agreement: n
            .signed
            .clone()
            .ok_or_else(|| NodeError::Internal("agreement missing".into()))?,
    };
    let path = format!("/callback/negotiations/{}/agreement", message.consumer_pid);
    node.post(&n.peer, &path, &message).await.map(drop)
}

/// Handles the consumer's `ContractAgreementVerificationMessage`, then has the
/// exchange countersign and finalizes.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a wrong signer or signature, [`NodeError::Conflict`]
/// when the negotiation is not AGREED.
pub async fn verification(
    node: &std::sync::Arc<Node>,
    signer: &str,
    provider_pid: &str,
    message: AgreementMessage,
) -> NodeResult<serde_json::Value> {
    let consumer = node.participant(signer).await;
    let n = node
        .store
        .audited("negotiation.verification", signer, None, |tx, events| {
            let consumer = consumer?;
            let mut n = negotiation::load(tx, provider_pid)?;
            negotiation::check_peer(&n, signer)?;
            let ours = n.signed.clone().ok_or_else(|| {
                NodeError::Conflict(format!("negotiation {provider_pid} has no agreement yet"))
            })?;
            if ours.agreement != message.agreement.agreement {
                return Err(NodeError::Conflict(
                    "the verified agreement differs from the one sent".into(),
                ));
            }
            let signature = message
                .agreement
                .consumer_signature
                .clone()
                .ok_or_else(|| {
                    NodeError::BadRequest("verification lacks the consumer's signature".into())
                })?;
            signing::verify(
                &signature,
                signer,
                &consumer.public_key,
                &ours.agreement.signing_bytes(),
            )?;
            n.signed = Some(SignedAgreement {
                consumer_signature: Some(signature),
                ..ours
            });
            negotiation::step(
                tx,
                events,
                &mut n,
                Side::Consumer,
                Message::Verification,
                signer,
            )?;
            Ok(n)
        })?;
    let ack = ack(&n);
    let node = node.clone();
    tokio::spawn(async move {
        if let Err(error) = finalize(&node, n).await {
            tracing::warn!(target: "carrel::negotiation", %error, "finalization failed");
        }
    });
    Ok(ack)
}

async fn finalize(node: &Node, n: Negotiation) -> NodeResult<()> {
    let me = node.identity.name().to_owned();
    let exchange = node.exchange_name()?.to_owned();
    let signed = n
        .signed
        .clone()
        .ok_or_else(|| NodeError::Internal("agreement missing".into()))?;
    let countersigned = node
        .post(&exchange, "/agreements/countersign", &signed)
        .await;
    let exchange_key = node.exchange_key()?;
    let n = node.store.audited(
        "negotiation.finalize",
        &me,
        Some(&signed.agreement.id),
        |tx, events| {
            let countersigned: SignedAgreement =
                serde_json::from_value(countersigned?).map_err(|e| NodeError::Peer {
                    peer: exchange.clone(),
                    message: format!("invalid countersignature: {e}"),
                })?;
            let signature =
                countersigned
                    .exchange_signature
                    .clone()
                    .ok_or_else(|| NodeError::Peer {
                        peer: exchange.clone(),
                        message: "the exchange returned no countersignature".into(),
                    })?;
            signing::verify(
                &signature,
                &exchange,
                &exchange_key,
                &signed.agreement.signing_bytes(),
            )?;
            let mut n = negotiation::load(tx, &n.id)?;
            n.signed = Some(SignedAgreement {
                exchange_signature: Some(signature),
                ..signed.clone()
            });
            tx.execute(
                "INSERT INTO agreements (id, body) VALUES (?1, ?2)",
                params![signed.agreement.id, to_json(&n.signed)],
            )?;
            negotiation::step(tx, events, &mut n, Side::Provider, Message::Finalized, &me)?;
            Ok(n)
        },
    )?;
    let message = AgreementMessage {
        provider_pid: n.id.clone(),
        consumer_pid: n.peer_pid.clone().unwrap_or_default(),
        event_type: Some("FINALIZED".into()),
        agreement: n
            .signed
            .clone()
            .ok_or_else(|| NodeError::Internal("agreement missing".into()))?,
    };
    let path = format!("/callback/negotiations/{}/events", message.consumer_pid);
    node.post(&n.peer, &path, &message).await.map(drop)
}

/// Returns a negotiation to its peer.
///
/// # Errors
///
/// [`NodeError::NotFound`] or [`NodeError::Forbidden`].
pub fn negotiation_state(node: &Node, signer: &str, id: &str) -> NodeResult<serde_json::Value> {
    let n = node.store.read(|c| negotiation::load(c, id))?;
    negotiation::check_peer(&n, signer)?;
    Ok(ack(&n))
}

/// Handles a termination message from the consumer.
///
/// # Errors
///
/// [`NodeError::Conflict`] when the state does not allow the consumer to terminate.
pub fn termination(
    node: &Node,
    signer: &str,
    id: &str,
    reason: String,
) -> NodeResult<serde_json::Value> {
    node.store
        .audited("negotiation.termination", signer, None, |tx, events| {
            let mut n = negotiation::load(tx, id)?;
            negotiation::check_peer(&n, signer)?;
            n.reason = Some(reason);
            negotiation::step(
                tx,
                events,
                &mut n,
                Side::Consumer,
                Message::Termination,
                signer,
            )?;
            Ok(ack(&n))
        })
}

/// Returns the consumer-facing acknowledgement of a negotiation.
pub fn negotiation_ack(n: &Negotiation) -> serde_json::Value {
    ack(n)
}
