//! Shared types of Carrel: participants, datasets, products and their usage policies,
//! agreements and audit events. Plain serde types with no I/O, so every layer can use
//! them.
//!
//! ```text
//! DatasetDescription ──> Product { UsagePolicy } ──> Agreement ──> SignedAgreement
//!                                                         └──> Revocation
//! every decision ──> AuditEvent (an entry of a node's Merkle log)
//! ```

mod agreement;
mod audit;
mod dataset;
mod joint;
mod offer;
mod training;

pub use agreement::{
    AGREEMENT_SIGNING_CONTEXT, Agreement, NegotiationState, Participant, PartySignature,
    REVOCATION_SIGNING_CONTEXT, Revocation, Role, SignedAgreement,
};
pub use audit::AuditEvent;
pub use dataset::{
    Bounds, Classification, ColumnRole, ColumnSpec, ColumnType, DataLevel, Dataset,
    DatasetDescription, Rights, is_sql_name,
};
pub use joint::{IdCase, JoinTerms, PsiTerms, Reveal, SecAggTerms};
pub use offer::{Action, ColumnRules, Price, PrivacyBudget, Product, UsagePolicy};
pub use training::{TrainingKind, TrainingPrivacy, TrainingTerms};

/// Errors in model values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A dataset description is inconsistent; each entry names one problem and its fix.
    #[error("invalid dataset description: {}", .0.join("; "))]
    InvalidDescription(Vec<String>),
}
