//! Terms of the computations that combine a consumer's data with a provider's.

use serde::{Deserialize, Serialize};

/// What one party of a private set intersection learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reveal {
    /// Nothing beyond the other side's set size.
    #[default]
    Nothing,
    /// The number of identifiers both hold.
    Size,
    /// The identifiers both hold.
    Intersection,
}

/// Letter case in the canonical identifier rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdCase {
    /// Case is significant.
    #[default]
    Keep,
    /// Identifiers are mapped to lower case.
    Lower,
}

/// Terms of a private set intersection with the provider's product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsiTerms {
    /// What the consumer learns.
    pub consumer_learns: Reveal,
    /// What the provider learns.
    #[serde(default)]
    pub provider_learns: Reveal,
    /// Column of the provider's dataset holding the identifiers.
    pub id_column: String,
    /// Letter case rule applied to identifiers on both sides.
    #[serde(default)]
    pub id_case: IdCase,
    /// Largest number of distinct identifiers the consumer may bring to one run.
    pub max_set_size: u64,
}

/// Terms of a secure aggregation over the provider's product with other providers'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecAggTerms {
    /// Most rows the product may hold; it bounds the provider's contribution, which every
    /// party checks before the round.
    pub max_rows: u64,
}

/// Terms of a private join-and-compute: the consumer's identifiers, each with a group
/// label of its own, joined with the product's (identifier, value) rows; the consumer
/// learns per group only noisy counts and sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinTerms {
    /// Column of the provider's dataset holding the identifiers.
    pub id_column: String,
    /// Column of the provider's dataset holding the values summed.
    pub value_column: String,
    /// Letter case rule applied to identifiers on both sides.
    #[serde(default)]
    pub id_case: IdCase,
    /// Lower clamping bound of a value.
    pub value_lower: f64,
    /// Upper clamping bound of a value.
    pub value_upper: f64,
    /// Largest number of distinct identifiers the consumer may bring to one run.
    pub max_set_size: u64,
}
