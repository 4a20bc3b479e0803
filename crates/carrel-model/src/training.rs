//! Terms of federated training on a provider's product, and of predictions with the model.

use serde::{Deserialize, Serialize};

/// Split of the parties' data between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingKind {
    /// Same columns, different rows: federated averaging over secure aggregation across
    /// three or more providers.
    Horizontal,
    /// Same rows, different columns: the consumer has the labels, and the provider has other
    /// features of the same persons. Rows are aligned by private set intersection.
    Vertical,
}

/// Differential privacy that a horizontal training must apply at this provider.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainingPrivacy {
    /// Smallest Gaussian noise multiplier (noise standard deviation over the clipping norm)
    /// the provider accepts.
    pub min_noise_multiplier: f64,
    /// Largest per-example clipping norm the provider accepts.
    pub max_clip_norm: f64,
}

/// Terms of federated training of a logistic-regression model on the product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingTerms {
    /// Horizontal or vertical.
    pub kind: TrainingKind,
    /// Feature columns of the product that enter the model, in model order. Each must be a
    /// numeric column with declared bounds; values beyond them are clipped.
    pub feature_columns: Vec<String>,
    /// Label column (0 or 1) of the product; horizontal only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// Column of person identifiers the rows are aligned on; vertical only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_column: Option<String>,
    /// Maximum rounds (horizontal) or epochs (vertical) of one training.
    pub max_rounds: u32,
    /// Participant that has the operating right of the trained model: the only one
    /// that may run predictions with the provider's part of it.
    pub model_operator: String,
    /// Maximum rows one prediction job may score.
    pub max_prediction_rows: u64,
    /// Differential privacy the provider requires of a horizontal training. `None` means
    /// the consumer chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<TrainingPrivacy>,
}
