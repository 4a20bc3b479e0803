//! The consumer's side: starting negotiations, handling the provider's callbacks,
//! and sending queries under finalized agreements.

use std::sync::Arc;

use carrel_model::{AuditEvent, NegotiationState, Product, SignedAgreement};
use carrel_policy::negotiation::{Message, Side};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{NodeError, NodeResult};
use crate::negotiation::{self, AgreementMessage, ContractRequest, Negotiation, OfferRef};
use crate::node::Node;
use crate::signing;
use crate::store::to_json;

/// Request to negotiate an agreement for an offer.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartNegotiation {
    /// Offer id from the catalog.
    pub offer: String,
    /// Purpose declared to the provider.
    pub purpose: String,
}

/// Starts a negotiation for a catalog offer and returns the consumer's process id.
///
/// # Errors
///
/// [`NodeError::NotFound`] when the offer is not in the catalog; a peer error when the
/// provider rejects the request.
pub async fn start(node: &Arc<Node>, request: StartNegotiation) -> NodeResult<serde_json::Value> {
    let me = node.identity.name().to_owned();
    let product = find_offer(node, &request.offer).await?;
    let mut n = Negotiation {
        id: format!("neg-{}", uuid::Uuid::new_v4()),
        peer_pid: None,
        side: Side::Consumer,
        peer: product.provider.clone(),
        offer_id: product.offer_id.clone(),
        purpose: request.purpose.clone(),
        state: NegotiationState::Requested,
        terms: product,
        signed: None,
        reason: None,
    };
    // The row exists before the request leaves, because the provider's callback may
    // arrive before its acknowledgement does.
    node.store.audited("negotiation.request", &me, None, |tx, events| {
        negotiation::save(tx, &n)?;
        events.push(AuditEvent::now(
            "negotiation.requested",
            &me,
            true,
            json!({ "negotiation": n.id, "provider": n.peer, "offer": n.offer_id, "purpose": n.purpose }),
        ));
        Ok(())
    })?;
    let message = ContractRequest {
        consumer_pid: n.id.clone(),
        offer: OfferRef {
            id: n.offer_id.clone(),
            target: n.terms.id.clone(),
        },
        purpose: n.purpose.clone(),
        callback_address: format!("{}/callback", node.endpoint()),
    };
    match node.post(&n.peer, "/negotiations/request", &message).await {
        Ok(ack) => {
            let provider_pid = ack["providerPid"].as_str().map(str::to_owned);
            node.store.read(|c| {
                c.execute(
                    "UPDATE negotiations SET peer_pid = ?1 WHERE id = ?2",
                    params![provider_pid, n.id],
                )?;
                Ok(())
            })?;
            Ok(json!({ "negotiation": n.id, "providerPid": provider_pid, "state": "REQUESTED" }))
        }
        Err(error) => {
            node.store
                .audited("negotiation.terminate", &me, None, |tx, events| {
                    n.reason = Some(error.to_string());
                    negotiation::step(
                        tx,
                        events,
                        &mut n,
                        Side::Consumer,
                        Message::Termination,
                        &me,
                    )
                })?;
            Err(error)
        }
    }
}

async fn find_offer(node: &Node, offer: &str) -> NodeResult<Product> {
    let catalog = node.get(node.exchange_name()?, "/catalog").await?;
    let entries = catalog["dcat:dataset"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for entry in entries {
        let product: Product =
            serde_json::from_value(entry["carrel:product"].clone()).map_err(|e| {
                NodeError::Peer {
                    peer: "exchange".into(),
                    message: format!("invalid catalog entry: {e}"),
                }
            })?;
        if product.offer_id == offer || product.id == offer {
            return Ok(product);
        }
    }
    Err(NodeError::NotFound {
        what: "offer in the catalog",
        id: offer.to_owned(),
    })
}

/// Handles the provider's `ContractAgreementMessage`: checks the terms against the
/// listed offer, signs and sends the verification.
///
/// # Errors
///
/// [`NodeError::Forbidden`] or [`NodeError::Conflict`] when the agreement is not the
/// one requested.
pub async fn agreement(
    node: &Arc<Node>,
    signer: &str,
    consumer_pid: &str,
    message: AgreementMessage,
) -> NodeResult<serde_json::Value> {
    let me = node.identity.name().to_owned();
    let provider = node.participant(signer).await;
    let agreement_id = message.agreement.agreement.id.clone();
    let n = node.store.audited(
        "negotiation.agreement",
        signer,
        Some(&agreement_id),
        |tx, events| {
            let provider = provider?;
            let mut n = negotiation::load(tx, consumer_pid)?;
            negotiation::check_peer(&n, signer)?;
            let signed = &message.agreement;
            let a = &signed.agreement;
            let terms = &n.terms;
            if a.assignee != me
                || a.assigner != signer
                || a.offer_id != n.offer_id
                || a.target != terms.id
                || a.purpose != n.purpose
                || a.policy != terms.policy
            {
                return Err(NodeError::Conflict(format!(
                    "agreement {} does not match the offer {} and purpose {:?} requested",
                    a.id, n.offer_id, n.purpose
                )));
            }
            signing::verify(
                &signed.provider_signature,
                signer,
                &provider.public_key,
                &a.signing_bytes(),
            )?;
            n.peer_pid = Some(message.provider_pid.clone());
            n.signed = Some(signed.clone());
            negotiation::step(
                tx,
                events,
                &mut n,
                Side::Provider,
                Message::Agreement,
                signer,
            )?;
            let consumer_signature = signing::sign(&node.identity, &a.signing_bytes());
            n.signed = Some(SignedAgreement {
                consumer_signature: Some(consumer_signature),
                ..signed.clone()
            });
            negotiation::step(
                tx,
                events,
                &mut n,
                Side::Consumer,
                Message::Verification,
                &me,
            )?;
            Ok(n)
        },
    )?;
    let ack = crate::provider::negotiation_ack(&n);
    let node = node.clone();
    tokio::spawn(async move {
        let message = AgreementMessage {
            provider_pid: n.peer_pid.clone().unwrap_or_default(),
            consumer_pid: n.id.clone(),
            event_type: None,
            agreement: n.signed.clone().expect("set just above"),
        };
        let path = format!(
            "/negotiations/{}/agreement/verification",
            message.provider_pid
        );
        if let Err(error) = node.post(&n.peer, &path, &message).await {
            tracing::warn!(target: "carrel::negotiation", negotiation = %n.id, %error, "verification not delivered");
        }
    });
    Ok(ack)
}

/// Handles the provider's FINALIZED event: checks all three signatures and stores
/// the agreement.
///
/// # Errors
///
/// [`NodeError::Forbidden`] when a signature is missing or invalid.
pub async fn event(
    node: &Arc<Node>,
    signer: &str,
    consumer_pid: &str,
    message: AgreementMessage,
) -> NodeResult<serde_json::Value> {
    let provider = node.participant(signer).await;
    let exchange = node.exchange_name()?.to_owned();
    let exchange_key = node.exchange_key()?;
    let agreement_id = message.agreement.agreement.id.clone();
    node.store.audited(
        "negotiation.event",
        signer,
        Some(&agreement_id),
        |tx, events| {
            let provider = provider?;
            if message.event_type.as_deref() != Some("FINALIZED") {
                return Err(NodeError::BadRequest(format!(
                    "eventType {:?} is not one a provider sends; expected \"FINALIZED\"",
                    message.event_type
                )));
            }
            let mut n = negotiation::load(tx, consumer_pid)?;
            negotiation::check_peer(&n, signer)?;
            let ours = n
                .signed
                .clone()
                .ok_or_else(|| NodeError::Conflict("no agreement to finalize".into()))?;
            let signed = message.agreement;
            if signed.agreement != ours.agreement
                || Some(&signed.provider_signature) != Some(&ours.provider_signature)
            {
                return Err(NodeError::Conflict(
                    "the finalized agreement differs from the one verified".into(),
                ));
            }
            let bytes = ours.agreement.signing_bytes();
            signing::verify(
                &signed.provider_signature,
                signer,
                &provider.public_key,
                &bytes,
            )?;
            let exchange_signature = signed.exchange_signature.clone().ok_or_else(|| {
                NodeError::Forbidden("the agreement lacks the exchange's countersignature".into())
            })?;
            signing::verify(&exchange_signature, &exchange, &exchange_key, &bytes)?;
            n.signed = Some(SignedAgreement {
                exchange_signature: Some(exchange_signature),
                ..ours
            });
            tx.execute(
                "INSERT INTO agreements (id, body) VALUES (?1, ?2)",
                params![agreement_id, to_json(&n.signed)],
            )?;
            negotiation::step(
                tx,
                events,
                &mut n,
                Side::Provider,
                Message::Finalized,
                signer,
            )?;
            Ok(crate::provider::negotiation_ack(&n))
        },
    )
}

/// Returns a negotiation by this node's process id, for the command line.
///
/// # Errors
///
/// [`NodeError::NotFound`].
pub fn show(node: &Node, id: &str) -> NodeResult<Negotiation> {
    node.store.read(|c| negotiation::load(c, id))
}
