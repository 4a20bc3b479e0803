//! Federated training jobs: horizontal across three or more providers, coordinated by the
//! consumer, and vertical between the consumer (labels and its own features) and one
//! provider, with the exchange as the dealer of correlated randomness.
//!
//! Both kinds run under agreements whose offers permit `federated_training`. The offer's
//! training terms fix the columns, the maximum number of rounds, who may operate the model
//! and the privacy a provider requires. The trained model is registered at every party as a
//! derived product with its lineage (see [`crate::models`]).

use std::path::PathBuf;
use std::sync::Arc;

use carrel_model::TrainingKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::NodeResult;
use crate::node::Node;

/// Stopping rule on the training loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingRequest {
    /// Rounds or epochs without enough improvement before training stops.
    pub patience: u32,
    /// Smallest relative fall of the loss that counts as improvement.
    pub min_relative_improvement: f64,
}

/// Differentially private training at every provider (horizontal only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivacyRequest {
    /// Gaussian noise standard deviation over the clipping norm.
    pub noise_multiplier: f64,
    /// Per-example L2 clipping norm of the gradient.
    pub clip_norm: f64,
    /// Delta at which the privacy loss is stated and charged.
    pub delta: f64,
}

/// A request of the `carrel train` command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartTraining {
    /// Horizontal or vertical.
    pub kind: TrainingKind,
    /// Horizontal: one agreement per provider, three or more. Vertical: the agreement with
    /// the one provider that has the other features.
    pub agreements: Vec<String>,
    /// Vertical: the consumer's CSV file with the ids, the labels and its own features.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Vertical: id column of `data`, or `id` when absent.
    #[serde(default)]
    pub id_column: Option<String>,
    /// Vertical: label column of `data`, or `y` when absent.
    #[serde(default)]
    pub label_column: Option<String>,
    /// Vertical: feature columns of `data`, or every other column when empty.
    #[serde(default)]
    pub feature_columns: Vec<String>,
    /// Horizontal: the consumer's own held-out CSV file (the providers' columns and the
    /// label), on which the model is evaluated.
    #[serde(default)]
    pub test_data: Option<PathBuf>,
    /// Vertical: a split file (`id,seed0,...` with `train`/`test` values) that marks the
    /// held-out rows, and the column to use.
    #[serde(default)]
    pub split_file: Option<PathBuf>,
    /// Column of `split_file`, such as `seed0`.
    #[serde(default)]
    pub split: Option<String>,
    /// Rounds (horizontal) or epochs (vertical), or the default of the kind when absent.
    #[serde(default)]
    pub rounds: Option<u32>,
    /// Step size.
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Rows per step.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Horizontal: passes over the local rows per round.
    #[serde(default)]
    pub local_epochs: Option<u32>,
    /// Optional early stopping.
    #[serde(default)]
    pub early_stopping: Option<EarlyStoppingRequest>,
    /// Horizontal: optional DP-SGD at every provider.
    #[serde(default)]
    pub privacy: Option<PrivacyRequest>,
    /// Training seed: the same seed on the same data gives the same model.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Folder for the report (`report.json`, `loss.svg`, `roc.svg`). No report is written when absent.
    #[serde(default)]
    pub report: Option<PathBuf>,
}

/// Starts a training job and runs it in the background. Returns the job id at once.
///
/// # Errors
///
/// The checks of the kind's start: agreements, files and settings.
pub fn start(node: Arc<Node>, request: StartTraining) -> NodeResult<Value> {
    match request.kind {
        TrainingKind::Horizontal => horizontal::start(node, request),
        TrainingKind::Vertical => vertical::start(node, request),
    }
}

pub mod dealer;
pub mod horizontal;
pub mod predict;
pub mod vertical;
