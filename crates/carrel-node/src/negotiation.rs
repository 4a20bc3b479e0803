//! Contract negotiation over the Dataspace Protocol's HTTPS binding, both sides.
//!
//! ```text
//! consumer                               provider                         exchange
//!  POST /negotiations/request ─────────>  REQUESTED (decides from the offer)
//!  AGREED <── POST /callback/negotiations/{cpid}/agreement (provider signed)
//!  VERIFIED ─ POST /negotiations/{ppid}/agreement/verification ─> VERIFIED
//!                                         POST /agreements/countersign ──> signs
//!  FINALIZED <─ POST /callback/negotiations/{cpid}/events ─ FINALIZED
//! ```
//!
//! Every transition is checked by [`carrel_policy::negotiation::transition`] and
//! recorded in the audit log of the node that makes it.

use carrel_model::{Agreement, AuditEvent, NegotiationState, Product, SignedAgreement};
use carrel_policy::negotiation::{Message, Side, transition};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::error::{NodeError, NodeResult};
use crate::store::{found, from_json, to_json};

/// A negotiation as one node stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Negotiation {
    /// This node's process id for the negotiation.
    pub id: String,
    /// The other side's process id, once known.
    pub peer_pid: Option<String>,
    /// This node's side.
    pub side: Side,
    /// The other party's name.
    pub peer: String,
    /// Offer negotiated.
    pub offer_id: String,
    /// Purpose declared by the consumer.
    pub purpose: String,
    /// Current state.
    pub state: NegotiationState,
    /// Product and terms offered, as listed.
    pub terms: Product,
    /// The agreement with the signatures gathered so far.
    pub signed: Option<SignedAgreement>,
    /// Reason the negotiation was terminated.
    pub reason: Option<String>,
}

/// `ContractRequestMessage` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContractRequest {
    /// Consumer's process id.
    #[serde(rename = "consumerPid")]
    pub consumer_pid: String,
    /// Offer requested.
    pub offer: OfferRef,
    /// Purpose declared.
    pub purpose: String,
    /// Consumer's callback address.
    #[serde(rename = "callbackAddress")]
    pub callback_address: String,
}

/// Reference to an offer and its target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferRef {
    /// Offer id.
    #[serde(rename = "@id")]
    pub id: String,
    /// Product id.
    pub target: String,
}

/// Body of the agreement, verification and event messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgreementMessage {
    /// Provider's process id.
    #[serde(rename = "providerPid")]
    pub provider_pid: String,
    /// Consumer's process id.
    #[serde(rename = "consumerPid")]
    pub consumer_pid: String,
    /// `FINALIZED` for the event message, absent otherwise.
    #[serde(rename = "eventType", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The agreement with its signatures.
    pub agreement: SignedAgreement,
}

/// Loads a negotiation by this node's process id.
pub fn load(conn: &rusqlite::Connection, id: &str) -> NodeResult<Negotiation> {
    let row = found(
        conn.query_row(
            "SELECT id, peer_pid, side, peer, offer_id, purpose, state, terms, signed, reason
             FROM negotiations WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            },
        ),
        "negotiation",
        id,
    )?;
    let (id, peer_pid, side, peer, offer_id, purpose, state, terms, signed, reason) = row;
    Ok(Negotiation {
        id,
        peer_pid,
        side: from_json(&side)?,
        peer,
        offer_id,
        purpose,
        state: from_json(&state)?,
        terms: from_json(&terms)?,
        signed: signed.as_deref().map(from_json).transpose()?,
        reason,
    })
}

/// Inserts or replaces a negotiation.
pub fn save(tx: &Transaction, n: &Negotiation) -> NodeResult<()> {
    tx.execute(
        "INSERT OR REPLACE INTO negotiations
         (id, peer_pid, side, peer, offer_id, purpose, state, terms, signed, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            n.id,
            n.peer_pid,
            to_json(&n.side),
            n.peer,
            n.offer_id,
            n.purpose,
            to_json(&n.state),
            to_json(&n.terms),
            n.signed.as_ref().map(to_json),
            n.reason
        ],
    )?;
    Ok(())
}

/// Moves `n` by `message` sent by `sender`, saves it and records the step.
pub fn step(
    tx: &Transaction,
    events: &mut Vec<AuditEvent>,
    n: &mut Negotiation,
    sender: Side,
    message: Message,
    actor: &str,
) -> NodeResult<()> {
    let before = n.state;
    n.state = transition(Some(n.state), sender, message)?;
    save(tx, n)?;
    let mut event = AuditEvent::now(
        &format!("negotiation.{}", n.state.as_str().to_lowercase()),
        actor,
        true,
        json!({ "negotiation": n.id, "peer_pid": n.peer_pid, "from": before.as_str(),
                "to": n.state.as_str(), "offer": n.offer_id, "purpose": n.purpose,
                "reason": n.reason }),
    );
    if let Some(signed) = &n.signed {
        event = event.with_agreement(&signed.agreement.id);
    }
    events.push(event);
    Ok(())
}

/// Draws up the agreement a provider offers for a negotiation.
pub fn draw_up(n: &Negotiation, provider: &str) -> Agreement {
    Agreement {
        id: format!("agr-{}", uuid::Uuid::new_v4()),
        timestamp: OffsetDateTime::now_utc(),
        assigner: provider.to_owned(),
        assignee: n.peer.clone(),
        target: n.terms.id.clone(),
        offer_id: n.offer_id.clone(),
        purpose: n.purpose.clone(),
        policy: n.terms.policy.clone(),
    }
}

/// Finds the negotiation whose peer process id is `peer_pid` and peer is `peer`.
pub fn by_peer_pid(
    conn: &rusqlite::Connection,
    peer: &str,
    peer_pid: &str,
) -> NodeResult<Option<Negotiation>> {
    let id: Option<String> = conn
        .query_row(
            "SELECT id FROM negotiations WHERE peer = ?1 AND peer_pid = ?2",
            params![peer, peer_pid],
            |r| r.get(0),
        )
        .optional()?;
    id.map(|id| load(conn, &id)).transpose()
}

/// Rejects a message whose sender is not the negotiation's peer.
pub fn check_peer(n: &Negotiation, signer: &str) -> NodeResult<()> {
    if n.peer == signer {
        return Ok(());
    }
    Err(NodeError::Forbidden(format!(
        "{signer:?} is not a party to negotiation {}",
        n.id
    )))
}
