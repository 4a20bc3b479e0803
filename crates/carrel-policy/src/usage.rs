//! Checks a provider's node makes on every use of an agreement.
//!
//! Validity boundary rule: an agreement is in force from `valid_from` inclusive to
//! `valid_until` exclusive. At `valid_until` itself, and one second later, every use
//! is rejected; at `valid_from` itself it is allowed.

use carrel_model::{Agreement, UsagePolicy};
use time::OffsetDateTime;

/// Reason an agreement may not be used now.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UseError {
    /// The validity window has not begun.
    #[error("agreement {agreement} is not valid before {valid_from}; retry after that time")]
    NotYetValid {
        /// Agreement id.
        agreement: String,
        /// Start of validity.
        valid_from: OffsetDateTime,
    },
    /// The validity window has ended.
    #[error("agreement {agreement} expired at {valid_until}; negotiate a new agreement")]
    Expired {
        /// Agreement id.
        agreement: String,
        /// End of validity.
        valid_until: OffsetDateTime,
    },
    /// The agreement was revoked.
    #[error("agreement {agreement} was revoked; negotiate a new agreement")]
    Revoked {
        /// Agreement id.
        agreement: String,
    },
    /// Every permitted use has been made.
    #[error(
        "agreement {agreement} allows {max_queries} queries per consumer and offer, and all \
         are used"
    )]
    QueryLimitReached {
        /// Agreement id.
        agreement: String,
        /// Limit from the offer.
        max_queries: u64,
    },
    /// The declared purpose is not one the offer allows.
    #[error("purpose {purpose:?} is not allowed; the offer allows {allowed:?}")]
    PurposeNotAllowed {
        /// Purpose declared.
        purpose: String,
        /// Purposes the offer allows.
        allowed: Vec<String>,
    },
    /// The requester is not the agreement's consumer.
    #[error("{requester:?} is not the consumer of agreement {agreement}")]
    NotAssignee {
        /// Agreement id.
        agreement: String,
        /// Participant that sent the request.
        requester: String,
    },
}

/// Checks that `now` lies in the policy's validity window `[valid_from, valid_until)`.
///
/// # Errors
///
/// [`UseError::NotYetValid`] or [`UseError::Expired`].
pub fn check_validity(id: &str, policy: &UsagePolicy, now: OffsetDateTime) -> Result<(), UseError> {
    if now < policy.valid_from {
        return Err(UseError::NotYetValid {
            agreement: id.to_owned(),
            valid_from: policy.valid_from,
        });
    }
    if now >= policy.valid_until {
        return Err(UseError::Expired {
            agreement: id.to_owned(),
            valid_until: policy.valid_until,
        });
    }
    Ok(())
}

/// Checks that `purpose` is one of the offer's purposes, compared exactly.
///
/// # Errors
///
/// [`UseError::PurposeNotAllowed`].
pub fn check_purpose(policy: &UsagePolicy, purpose: &str) -> Result<(), UseError> {
    if policy.purposes.iter().any(|p| p == purpose) {
        return Ok(());
    }
    Err(UseError::PurposeNotAllowed {
        purpose: purpose.to_owned(),
        allowed: policy.purposes.clone(),
    })
}

/// Checks one use of an agreement by `requester` at `now`, after `queries_used` releases.
///
/// # Errors
///
/// The first failed check, in the order: requester, revocation, validity, query count.
pub fn check_use(
    agreement: &Agreement,
    requester: &str,
    revoked: bool,
    queries_used: u64,
    now: OffsetDateTime,
) -> Result<(), UseError> {
    let id = &agreement.id;
    if agreement.assignee != requester {
        return Err(UseError::NotAssignee {
            agreement: id.clone(),
            requester: requester.to_owned(),
        });
    }
    if revoked {
        return Err(UseError::Revoked {
            agreement: id.clone(),
        });
    }
    check_validity(id, &agreement.policy, now)?;
    if queries_used >= agreement.policy.max_queries {
        return Err(UseError::QueryLimitReached {
            agreement: id.clone(),
            max_queries: agreement.policy.max_queries,
        });
    }
    Ok(())
}
