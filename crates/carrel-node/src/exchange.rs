//! The exchange's side: participant registry, listing review, catalog and
//! countersigning of agreements.

use carrel_model::{AuditEvent, Participant, Product, Role, SignedAgreement};
use rusqlite::{OptionalExtension, params};
use serde_json::json;
use time::OffsetDateTime;

use crate::catalog;
use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::signing;
use crate::store::{found, from_json, to_json};

/// Registers or updates `participant`, which must be the signer itself and may not
/// take over another participant's name with a new key.
///
/// # Errors
///
/// [`NodeError::Forbidden`] when the signer is not the participant or the name is
/// taken by another key; [`NodeError::BadRequest`] for an invalid entry.
pub fn register(node: &Node, signer: &str, participant: Participant) -> NodeResult<Participant> {
    node.store.audited("participant.register", signer, None, |tx, events| {
        if participant.name != signer {
            return Err(NodeError::Forbidden(format!(
                "{signer:?} may not register the participant {:?}: register under your own name",
                participant.name
            )));
        }
        if participant.name == node.identity.name() {
            return Err(NodeError::Forbidden(format!(
                "{:?} is the exchange's own name: register under another name",
                participant.name
            )));
        }
        if participant.role == Role::Exchange {
            return Err(NodeError::BadRequest("role \"exchange\" cannot be registered".into()));
        }
        if !participant.endpoint.starts_with("https://") {
            return Err(NodeError::BadRequest(format!(
                "endpoint {:?} must be an https URL",
                participant.endpoint
            )));
        }
        let existing: Option<String> = tx
            .query_row(
                "SELECT public_key FROM participants WHERE name = ?1",
                [&participant.name],
                |r| r.get(0),
            )
            .optional()?;
        if existing.as_ref().is_some_and(|key| *key != participant.public_key) {
            return Err(NodeError::Forbidden(format!(
                "participant name {:?} is registered with another key: choose another name",
                participant.name
            )));
        }
        save_participant(tx, &participant)?;
        events.push(AuditEvent::now(
            "participant.registered",
            signer,
            true,
            json!({ "name": participant.name, "role": participant.role,
                    "public_key": participant.public_key, "endpoint": participant.endpoint }),
        ));
        Ok(participant)
    })
}

/// Stores or replaces a participant entry.
pub(crate) fn save_participant(
    conn: &rusqlite::Connection,
    participant: &Participant,
) -> NodeResult<()> {
    conn.execute(
        "INSERT INTO participants (name, role, public_key, endpoint) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET role = ?2, public_key = ?3, endpoint = ?4",
        params![
            participant.name,
            to_json(&participant.role).trim_matches('"'),
            participant.public_key,
            participant.endpoint
        ],
    )?;
    Ok(())
}

/// Looks up a participant in the local table.
pub(crate) fn load_participant(
    conn: &rusqlite::Connection,
    name: &str,
) -> NodeResult<Option<Participant>> {
    let row = conn
        .query_row(
            "SELECT name, role, public_key, endpoint FROM participants WHERE name = ?1",
            [name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            },
        )
        .optional()?;
    row.map(|(name, role, public_key, endpoint)| {
        Ok(Participant {
            name,
            role: from_json(&format!("\"{role}\""))?,
            public_key,
            endpoint,
        })
    })
    .transpose()
}

/// Reviews a listing and lists it in the catalog, or rejects it with every reason.
///
/// # Errors
///
/// [`NodeError::ListingRejected`] with every reason; [`NodeError::Forbidden`] when the
/// signer is not the product's provider.
pub fn review(node: &Node, signer: &str, product: Product) -> NodeResult<serde_json::Value> {
    node.store
        .audited("listing.review", signer, None, |tx, events| {
            if product.provider != signer {
                return Err(NodeError::Forbidden(format!(
                    "{signer:?} may not list a product of {:?}",
                    product.provider
                )));
            }
            let provider = load_participant(tx, signer)?
                .filter(|p| p.role == Role::Provider)
                .ok_or_else(|| {
                    NodeError::Forbidden(format!("{signer:?} is not a registered provider"))
                })?;
            carrel_policy::review_listing(&product, OffsetDateTime::now_utc()).map_err(
                |reasons| {
                    NodeError::ListingRejected(
                        reasons
                            .into_iter()
                            .map(|r| format!("{}: {}", r.code, r.message))
                            .collect(),
                    )
                },
            )?;
            tx.execute(
                "INSERT INTO products (id, offer_id, body, status) VALUES (?1, ?2, ?3, 'listed')",
                params![product.id, product.offer_id, to_json(&product)],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(..) => NodeError::Conflict(format!(
                    "product {:?} or offer {:?} is already listed",
                    product.id, product.offer_id
                )),
                other => other.into(),
            })?;
            events.push(AuditEvent::now(
                "listing.listed",
                signer,
                true,
                json!({ "product": product.id, "offer": product.offer_id,
                    "dataset_sha256": product.dataset_sha256 }),
            ));
            Ok(catalog::dataset_entry(&product, &provider.endpoint))
        })
}

/// Returns the DCAT-style catalog of every listed product.
///
/// # Errors
///
/// A storage error.
pub fn catalog(node: &Node) -> NodeResult<serde_json::Value> {
    node.store.read(|conn| {
        let mut statement = conn.prepare(
            "SELECT p.body, q.endpoint FROM products p
             JOIN participants q ON q.name = json_extract(p.body, '$.provider')
             WHERE p.status = 'listed' ORDER BY p.rowid",
        )?;
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut entries = Vec::new();
        for (body, endpoint) in rows {
            let product: Product = from_json(&body)?;
            entries.push(catalog::dataset_entry(&product, &endpoint));
        }
        Ok(catalog::catalog(node.identity.name(), entries))
    })
}

/// Countersigns an agreement that the provider and the consumer have signed, after
/// checking both signatures and that its terms are the listed offer's.
///
/// # Errors
///
/// [`NodeError::Forbidden`] for a wrong signer or signature; [`NodeError::Conflict`]
/// when the terms differ from the listing.
pub fn countersign(
    node: &Node,
    signer: &str,
    mut signed: SignedAgreement,
) -> NodeResult<SignedAgreement> {
    let agreement_id = signed.agreement.id.clone();
    node.store.audited(
        "agreement.countersign",
        signer,
        Some(&agreement_id),
        |tx, events| {
            let agreement = &signed.agreement;
            if agreement.assigner != signer {
                return Err(NodeError::Forbidden(format!(
                    "{signer:?} is not the provider of agreement {agreement_id}"
                )));
            }
            let body: String = found(
                tx.query_row(
                    "SELECT body FROM products WHERE offer_id = ?1 AND status = 'listed'",
                    [&agreement.offer_id],
                    |r| r.get(0),
                ),
                "listed offer",
                &agreement.offer_id,
            )?;
            let product: Product = from_json(&body)?;
            if agreement.assigner != product.provider {
                return Err(NodeError::Forbidden(format!(
                    "{signer:?} is not the provider of offer {}; only {:?} may grant it",
                    agreement.offer_id, product.provider
                )));
            }
            carrel_policy::check_purpose(&product.policy, &agreement.purpose)?;
            let clock_skew = time::Duration::minutes(5);
            if agreement.timestamp > OffsetDateTime::now_utc() + clock_skew {
                return Err(NodeError::BadRequest(format!(
                    "agreement {agreement_id} is dated {} in the future: date it now",
                    agreement.timestamp
                )));
            }
            let consumer_entry = load_participant(tx, &agreement.assignee)?;
            if consumer_entry.is_none_or(|p| p.role != Role::Consumer) {
                return Err(NodeError::Forbidden(format!(
                    "{:?} is not a registered consumer",
                    agreement.assignee
                )));
            }
            if product.id != agreement.target || product.policy != agreement.policy {
                return Err(NodeError::Conflict(format!(
                    "agreement {agreement_id} does not carry the listed terms of offer {}",
                    agreement.offer_id
                )));
            }
            let bytes = agreement.signing_bytes();
            let provider = participant_key(tx, &agreement.assigner)?;
            signing::verify(
                &signed.provider_signature,
                &agreement.assigner,
                &provider,
                &bytes,
            )?;
            let consumer_signature = signed.consumer_signature.as_ref().ok_or_else(|| {
                NodeError::BadRequest(format!(
                    "agreement {agreement_id} lacks the consumer's signature"
                ))
            })?;
            let consumer = participant_key(tx, &agreement.assignee)?;
            signing::verify(consumer_signature, &agreement.assignee, &consumer, &bytes)?;
            signed.exchange_signature = Some(signing::sign(&node.identity, &bytes));
            tx.execute(
                "INSERT INTO agreements (id, body) VALUES (?1, ?2)",
                params![agreement_id, to_json(&signed)],
            )?;
            events.push(
                AuditEvent::now(
                    "agreement.countersigned",
                    signer,
                    true,
                    json!({ "provider": agreement.assigner, "consumer": agreement.assignee,
                        "offer": agreement.offer_id, "purpose": agreement.purpose,
                        "agreement_sha256": signing::sha256_hex(&bytes) }),
                )
                .with_agreement(&agreement_id),
            );
            Ok(signed.clone())
        },
    )
}

fn participant_key(conn: &rusqlite::Connection, name: &str) -> NodeResult<String> {
    load_participant(conn, name)?
        .map(|p| p.public_key)
        .ok_or_else(|| NodeError::Forbidden(format!("{name:?} is not a registered participant")))
}
