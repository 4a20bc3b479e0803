//! Participants, negotiations and signed agreements.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::UsagePolicy;

/// The part a participant plays in the data space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the catalog, reviews listings and countersigns agreements.
    Exchange,
    /// Holds data and publishes products.
    Provider,
    /// Agrees contracts and runs computations on products.
    Consumer,
}

/// A registered participant, as the exchange's registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Unique name, also the key name in signatures.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Ed25519 public key, base64.
    pub public_key: String,
    /// HTTPS endpoint, such as `https://127.0.0.1:7443`.
    pub endpoint: String,
}

/// Contract negotiation states of the Dataspace Protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NegotiationState {
    /// The consumer requested an agreement.
    Requested,
    /// The provider offered (or counter-offered).
    Offered,
    /// The consumer accepted the offer.
    Accepted,
    /// The provider sent a signed agreement.
    Agreed,
    /// The consumer verified and signed the agreement.
    Verified,
    /// The agreement is countersigned and in force.
    Finalized,
    /// The negotiation ended without an agreement.
    Terminated,
}

impl NegotiationState {
    /// Returns the protocol's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Offered => "OFFERED",
            Self::Accepted => "ACCEPTED",
            Self::Agreed => "AGREED",
            Self::Verified => "VERIFIED",
            Self::Finalized => "FINALIZED",
            Self::Terminated => "TERMINATED",
        }
    }

    /// Returns whether no further transition is possible.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finalized | Self::Terminated)
    }
}

/// The terms both parties sign: one data holder, one consumer, one product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Agreement identifier.
    #[serde(rename = "@id")]
    pub id: String,
    /// Time the provider drew up the agreement.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The data holder granting use (the provider).
    pub assigner: String,
    /// The consumer receiving use.
    pub assignee: String,
    /// Product the agreement covers.
    pub target: String,
    /// Offer the agreement was made from.
    pub offer_id: String,
    /// Purpose the consumer declared.
    pub purpose: String,
    /// Terms copied from the offer at the time of agreement.
    pub policy: UsagePolicy,
}

/// Domain prefix of the bytes signed for an agreement.
pub const AGREEMENT_SIGNING_CONTEXT: &str = "carrel-agreement/v1\n";

impl Agreement {
    /// Returns the exact bytes every party signs: a domain prefix and the agreement's JSON.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = AGREEMENT_SIGNING_CONTEXT.as_bytes().to_vec();
        // Serialising a struct of plain fields cannot fail.
        bytes.extend(serde_json::to_vec(self).expect("agreement serialises"));
        bytes
    }
}

/// One party's signature over an agreement or a revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartySignature {
    /// Participant name of the signer.
    pub signer: String,
    /// Ed25519 signature, base64.
    pub signature: String,
}

/// An agreement with the provider's, the consumer's and the exchange's signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedAgreement {
    /// The terms.
    pub agreement: Agreement,
    /// Provider's signature.
    pub provider_signature: PartySignature,
    /// Consumer's signature, present from VERIFIED on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_signature: Option<PartySignature>,
    /// Exchange's countersignature, present from FINALIZED on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_signature: Option<PartySignature>,
}

/// A signed act that ends every later use of a finalized agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    /// Agreement revoked.
    pub agreement_id: String,
    /// Participant revoking (the provider or the consumer of the agreement).
    pub revoked_by: String,
    /// Reason given.
    pub reason: String,
    /// Time of revocation.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// Domain prefix of the bytes signed for a revocation.
pub const REVOCATION_SIGNING_CONTEXT: &str = "carrel-revocation/v1\n";

impl Revocation {
    /// Returns the exact bytes the revoking party signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = REVOCATION_SIGNING_CONTEXT.as_bytes().to_vec();
        // Serialising a struct of plain fields cannot fail.
        bytes.extend(serde_json::to_vec(self).expect("revocation serialises"));
        bytes
    }
}
