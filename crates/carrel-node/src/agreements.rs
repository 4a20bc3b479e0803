//! Stored agreements: showing, verifying and revoking them.

use carrel_model::{AuditEvent, PartySignature, Revocation, SignedAgreement};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::signing;
use crate::store::{found, from_json};

/// An agreement with its use so far, as this node records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgreementRecord {
    /// The agreement and its signatures.
    pub signed: SignedAgreement,
    /// Whether it has been revoked.
    pub revoked: bool,
    /// Releases made under it.
    pub queries_used: u64,
    /// Epsilon spent.
    pub epsilon_spent: f64,
    /// Delta spent.
    pub delta_spent: f64,
}

/// Loads an agreement record.
pub fn load(conn: &rusqlite::Connection, id: &str) -> NodeResult<AgreementRecord> {
    let (body, revoked, queries_used, epsilon_spent, delta_spent): (String, bool, i64, f64, f64) = found(
        conn.query_row(
            "SELECT body, revoked, queries_used, epsilon_spent, delta_spent FROM agreements WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        ),
        "agreement",
        id,
    )?;
    Ok(AgreementRecord {
        signed: from_json(&body)?,
        revoked,
        queries_used: u64::try_from(queries_used).unwrap_or(0),
        epsilon_spent,
        delta_spent,
    })
}

/// Loads an agreement with its use summed over every agreement between the same
/// consumer and offer, because an offer's budget and query limit bound what one
/// consumer learns from it, however many agreements it negotiates.
pub fn load_with_offer_totals(
    conn: &rusqlite::Connection,
    id: &str,
) -> NodeResult<AgreementRecord> {
    let record = load(conn, id)?;
    let a = &record.signed.agreement;
    let (queries_used, epsilon_spent, delta_spent): (i64, f64, f64) = conn.query_row(
        "SELECT COALESCE(SUM(queries_used), 0), COALESCE(SUM(epsilon_spent), 0.0),
                COALESCE(SUM(delta_spent), 0.0)
         FROM agreements
         WHERE json_extract(body, '$.agreement.assignee') = ?1
           AND json_extract(body, '$.agreement.offer_id') = ?2",
        params![a.assignee, a.offer_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(AgreementRecord {
        queries_used: u64::try_from(queries_used).unwrap_or(0),
        epsilon_spent,
        delta_spent,
        ..record
    })
}

/// Checks the provider's, the consumer's and the exchange's signatures on `signed`
/// against the registry, and returns one line per signature.
///
/// # Errors
///
/// [`NodeError::Forbidden`] naming the first missing or invalid signature.
pub async fn verify(node: &Node, signed: &SignedAgreement) -> NodeResult<Vec<String>> {
    let a = &signed.agreement;
    let bytes = a.signing_bytes();
    let provider = node.participant(&a.assigner).await?;
    let consumer = node.participant(&a.assignee).await?;
    signing::verify(
        &signed.provider_signature,
        &a.assigner,
        &provider.public_key,
        &bytes,
    )?;
    let missing =
        |who: &str| NodeError::Forbidden(format!("agreement {} lacks the {who}'s signature", a.id));
    let consumer_signature = signed
        .consumer_signature
        .as_ref()
        .ok_or_else(|| missing("consumer"))?;
    signing::verify(
        consumer_signature,
        &a.assignee,
        &consumer.public_key,
        &bytes,
    )?;
    let exchange_signature = signed
        .exchange_signature
        .as_ref()
        .ok_or_else(|| missing("exchange"))?;
    let exchange = node.exchange_name()?.to_owned();
    signing::verify(exchange_signature, &exchange, &node.exchange_key()?, &bytes)?;
    Ok(vec![
        format!("provider {} signature valid", a.assigner),
        format!("consumer {} signature valid", a.assignee),
        format!("exchange {exchange} countersignature valid"),
    ])
}

/// A revocation with its signature, as sent to the other parties.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedRevocation {
    /// The act.
    pub revocation: Revocation,
    /// Signature of the revoking party.
    pub signature: PartySignature,
}

/// Revokes a finalized agreement this node is party to, and notifies the other party
/// and the exchange.
///
/// # Errors
///
/// [`NodeError::Conflict`] when it is already revoked.
pub async fn revoke(node: &Node, id: &str, reason: String) -> NodeResult<SignedRevocation> {
    let me = node.identity.name().to_owned();
    let revocation = Revocation {
        agreement_id: id.to_owned(),
        revoked_by: me.clone(),
        reason,
        time: OffsetDateTime::now_utc(),
    };
    let signed = SignedRevocation {
        signature: signing::sign(&node.identity, &revocation.signing_bytes()),
        revocation,
    };
    let record = apply_revocation(node, &me, &signed)?;
    let a = &record.signed.agreement;
    let other = if a.assigner == me {
        &a.assignee
    } else {
        &a.assigner
    };
    let path = format!("/agreements/{id}/revocation");
    for peer in [other.as_str(), node.exchange_name()?] {
        if let Err(error) = node.post(peer, &path, &signed).await {
            tracing::warn!(target: "carrel::agreement", agreement = id, peer, %error, "revocation not delivered");
        }
    }
    Ok(signed)
}

/// Applies a revocation signed by a party of the agreement.
///
/// # Errors
///
/// [`NodeError::Forbidden`] when the signer is not a party or the signature fails.
pub fn apply_revocation(
    node: &Node,
    signer: &str,
    signed: &SignedRevocation,
) -> NodeResult<AgreementRecord> {
    let id = signed.revocation.agreement_id.clone();
    let key = node
        .store
        .read(|c| crate::exchange::load_participant(c, signer))?
        .map(|p| p.public_key);
    let key = if signer == node.identity.name() {
        Some(node.identity.public_key_text())
    } else {
        key
    };
    node.store.audited("agreement.revoke", signer, Some(&id), |tx, events| {
        let record = load(tx, &id)?;
        let a = &record.signed.agreement;
        if signer != a.assigner && signer != a.assignee || signed.revocation.revoked_by != signer {
            return Err(NodeError::Forbidden(format!("{signer:?} is not a party to agreement {id}")));
        }
        let key = key.ok_or_else(|| NodeError::Forbidden(format!("no key known for {signer:?}")))?;
        signing::verify(&signed.signature, signer, &key, &signed.revocation.signing_bytes())?;
        if record.revoked {
            return Err(NodeError::Conflict(format!("agreement {id} is already revoked")));
        }
        tx.execute("UPDATE agreements SET revoked = 1 WHERE id = ?1", params![id])?;
        events.push(
            AuditEvent::now(
                "agreement.revoked",
                signer,
                true,
                json!({ "reason": signed.revocation.reason, "time": signed.revocation.time.to_string() }),
            )
            .with_agreement(&id),
        );
        Ok(AgreementRecord { revoked: true, ..record })
    })
}

/// Checks that an agreement is still in force during a job it started: not revoked and
/// inside its validity window.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a revoked agreement, the validity error otherwise.
pub fn check_in_force(store: &crate::store::Store, id: &str) -> NodeResult<()> {
    let record = store.read(|c| load(c, id))?;
    if record.revoked {
        return Err(NodeError::Forbidden(format!(
            "agreement {id} was revoked during the job"
        )));
    }
    let policy = &record.signed.agreement.policy;
    carrel_policy::check_validity(id, policy, time::OffsetDateTime::now_utc())?;
    Ok(())
}
