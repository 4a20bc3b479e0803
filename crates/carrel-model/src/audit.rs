//! Audit events: what each node appends to its log for every decision.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One decision recorded in a node's audit log. It names actors, agreement and
/// hashes, never data values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Time the node made the decision.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Kind of decision, such as `query.released` or `negotiation.agreed`.
    pub kind: String,
    /// Participant whose request led to the decision.
    pub actor: String,
    /// Agreement concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// Whether the request was accepted.
    pub accepted: bool,
    /// Kind-specific facts: epsilon spent, reasons, hashes of inputs and outputs.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// Builds an event stamped with the current time.
    pub fn now(kind: &str, actor: &str, accepted: bool, detail: serde_json::Value) -> Self {
        Self {
            time: OffsetDateTime::now_utc(),
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            agreement: None,
            accepted,
            detail,
        }
    }

    /// Sets the agreement the event concerns.
    pub fn with_agreement(mut self, agreement: &str) -> Self {
        self.agreement = Some(agreement.to_owned());
        self
    }

    /// Returns the bytes stored as the log entry.
    pub fn to_entry(&self) -> Vec<u8> {
        // Serialising a struct of plain fields and a JSON value cannot fail.
        serde_json::to_vec(self).expect("audit event serialises")
    }
}
