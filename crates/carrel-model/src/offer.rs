//! Data products and the offers (usage policies) under which they are listed.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::DatasetDescription;

/// Action a consumer may take on a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Differentially private aggregate SQL on the provider's node.
    AggregateQuery,
    /// Private set intersection of the consumer's identifiers with the product's.
    PrivateSetIntersection,
    /// The product's counts and sums added to other providers' under pairwise masks, so
    /// that the consumer learns only the noisy total.
    SecureAggregation,
    /// Noisy per-group counts and sums of the product's values over the intersection with
    /// the consumer's identifiers, without either side learning which rows matched.
    PrivateJoin,
    /// Federated training of a model on the product, and predictions with the provider's
    /// part of the model by the operator the terms name.
    FederatedTraining,
}

/// A differential-privacy budget: the total privacy loss allowed, (epsilon, delta).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivacyBudget {
    /// Total epsilon.
    pub epsilon: f64,
    /// Total delta.
    pub delta: f64,
}

/// Column rules of a query. A column listed nowhere may not appear at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRules {
    /// Columns allowed in GROUP BY (and so in the SELECT list as group keys).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Columns allowed inside COUNT, SUM and AVG.
    #[serde(default)]
    pub aggregate: Vec<String>,
    /// Columns allowed in WHERE.
    #[serde(default)]
    pub filter: Vec<String>,
}

/// A price in minor units of a currency (cents, fen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Amount in minor units.
    pub amount_minor: u64,
    /// ISO 4217 currency code.
    pub currency: String,
}

/// The usage policy of an offer: everything a provider's node enforces on each use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsagePolicy {
    /// Permitted action.
    pub action: Action,
    /// Purposes a consumer may declare.
    pub purposes: Vec<String>,
    /// Start of validity, inclusive.
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    /// End of validity, exclusive: at this instant the offer and its agreements stop.
    #[serde(with = "time::serde::rfc3339")]
    pub valid_until: OffsetDateTime,
    /// Maximum number of releases under one agreement.
    pub max_queries: u64,
    /// Total privacy budget of one agreement.
    pub budget: PrivacyBudget,
    /// Epsilon a query spends when the consumer names none.
    pub query_epsilon: f64,
    /// Delta a query spends on deciding which groups are large enough to release.
    pub query_delta: f64,
    /// Minimum number of distinct persons (privacy units) in a released group.
    pub min_group_size: u64,
    /// Maximum rows one person contributes to a query; extra rows are dropped.
    pub max_rows_per_unit: u32,
    /// Column rules: where each column may appear.
    pub columns: ColumnRules,
    /// Price of one release.
    pub price_per_query: Price,
    /// Regions where the consumer may use the results, such as `US-CA`.
    pub usage_regions: Vec<String>,
    /// Terms of a private set intersection; required when the action is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<crate::PsiTerms>,
    /// Terms of a secure aggregation; required when the action is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_aggregation: Option<crate::SecAggTerms>,
    /// Terms of a private join-and-compute; required when the action is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<crate::JoinTerms>,
    /// Terms of federated training; required when the action is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<crate::TrainingTerms>,
}

/// A data product: a dataset offered under one usage policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Product identifier assigned by the provider's node.
    pub id: String,
    /// Offer identifier; one offer per product.
    pub offer_id: String,
    /// Participant name of the provider.
    pub provider: String,
    /// Registered dataset behind the product.
    pub dataset_id: String,
    /// SHA-256 of the dataset's stored table, hex.
    pub dataset_sha256: String,
    /// Title shown in the catalog.
    pub title: String,
    /// Description of the dataset, without any rows.
    pub dataset: DatasetDescription,
    /// Usage policy.
    pub policy: UsagePolicy,
}
