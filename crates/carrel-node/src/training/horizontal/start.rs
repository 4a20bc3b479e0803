//! The coordinator's checks of a `carrel train --kind horizontal` request, before any
//! request to a provider.

use std::path::PathBuf;
use std::sync::Arc;

use carrel_learn::data::{LoadOptions, read_csv};
use carrel_learn::horizontal::{
    Coordinator, DpConfig, EarlyStopping, TrainingConfig, privacy_loss,
};
use carrel_mpc::secagg::MIN_PARTIES;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::coordinator::{Checkpoint, drive};
use super::{Charged, KIND, check_privacy, operator_of, terms_of};
use crate::agreements;
use crate::error::{NodeError, NodeResult};
use crate::jobs::{self, NewJob};
use crate::node::Node;
use crate::training::StartTraining;

/// Id column of the held-out file.
const TEST_ID_COLUMN: &str = "id";

/// Label column of the held-out file.
const TEST_LABEL_COLUMN: &str = "y";

/// One provider as the coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ProviderEntry {
    /// Participant name.
    pub name: String,
    /// The agreement with it.
    pub agreement: String,
    /// SHA-256 of its registered table, once it joined.
    pub dataset_sha256: Option<String>,
}

/// A checked training request, kept in the checkpoint so that a restart continues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Setup {
    /// Providers in name order, which is the index order of the protocol.
    pub providers: Vec<ProviderEntry>,
    /// Feature columns, in model order.
    pub features: Vec<String>,
    /// Participant with the operating right of the model.
    pub operator: String,
    /// The held-out CSV file at this node.
    pub test_data: Option<PathBuf>,
    /// Folder of the report.
    pub report: Option<PathBuf>,
    /// Privacy loss of the planned rounds that each provider charges, or none without DP.
    pub charged: Option<Charged>,
}

impl Setup {
    /// Returns the providers' names in index order.
    pub fn names(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.name.clone()).collect()
    }
}

/// Starts a horizontal training from the `carrel train` command and runs it in the
/// background. Returns the job id at once.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for fewer than three providers, two agreements with the same
/// provider, terms that differ in feature columns or model operator, more rounds than a
/// provider's terms allow, invalid settings, or a held-out file that cannot be read.
/// [`NodeError::Forbidden`] for an agreement that permits another action or kind, is not
/// this node's, is revoked or out of its validity, or requires stronger DP.
pub fn start(node: Arc<Node>, request: StartTraining) -> NodeResult<Value> {
    let me = node.identity.name().to_owned();
    let (setup, config) =
        check_start(&node, &request).map_err(|e| node.store.reject(KIND, &me, None, e))?;

    let job = uuid::Uuid::new_v4().to_string();
    let coordinator = Coordinator::new(
        job.as_str(),
        config.clone(),
        setup.providers.len(),
        setup.features.len(),
    )
    .map_err(|e| NodeError::BadRequest(e.to_string()))?;
    let names = setup.names();
    node.store.audited(KIND, &me, None, |tx, events| {
        let new = NewJob {
            id: &job,
            kind: KIND,
            role: "consumer",
            agreement: None,
            peers: &names,
        };
        let detail = json!({ "agreements": request.agreements, "features": setup.features,
                             "rounds": config.rounds, "seed": config.seed,
                             "differential_privacy": config.dp.is_some(),
                             "charged": setup.charged });
        jobs::insert(tx, events, &me, &new, detail)
    })?;
    let checkpoint = Checkpoint::new(setup, coordinator.state().clone());
    checkpoint.save(&node.store, &job)?;
    tokio::spawn(drive(node, job.clone(), checkpoint));
    Ok(json!({ "job": job, "state": jobs::RUNNING }))
}

fn check_start(node: &Node, request: &StartTraining) -> NodeResult<(Setup, TrainingConfig)> {
    check_options(request)?;
    let config = config_of(request);
    config
        .validate()
        .map_err(|e| NodeError::BadRequest(e.to_string()))?;

    let me = node.identity.name();
    let mut checked = Vec::new();
    for id in &request.agreements {
        let record = node.store.read(|c| agreements::load(c, id))?;
        let terms = terms_of(&record)?;
        let agreement = &record.signed.agreement;
        if agreement.assignee != me {
            return Err(NodeError::Forbidden(format!(
                "agreement {id} is between {} and {}, not this node's",
                agreement.assigner, agreement.assignee
            )));
        }
        agreements::check_in_force(&node.store, id)?;
        check_privacy(&record, &terms, config.dp.as_ref())?;
        if config.rounds > terms.max_rounds {
            return Err(NodeError::BadRequest(format!(
                "{} rounds were requested, but agreement {id} with {} allows at most {}: give \
                 --rounds {} or fewer",
                config.rounds, agreement.assigner, terms.max_rounds, terms.max_rounds
            )));
        }
        checked.push((
            agreement.assigner.clone(),
            id.clone(),
            operator_of(&record, &terms),
            terms,
        ));
    }
    checked.sort_by(|a, b| a.0.cmp(&b.0));
    check_providers(&checked.iter().map(|c| c.0.as_str()).collect::<Vec<_>>())?;

    let (first_name, _, operator, first_terms) = &checked[0];
    for (name, _, other_operator, terms) in &checked[1..] {
        if terms.feature_columns != first_terms.feature_columns {
            let difference = column_difference(
                (first_name, &first_terms.feature_columns),
                (name, &terms.feature_columns),
            );
            return Err(NodeError::BadRequest(format!(
                "the providers' terms name different feature columns: {difference}; horizontal \
                 training needs the same columns in the same order at every provider"
            )));
        }
        if other_operator != operator {
            return Err(NodeError::BadRequest(format!(
                "the providers' terms give the model's operating right to different \
                 participants: {first_name} to {operator}, {name} to {other_operator}"
            )));
        }
    }
    let features = first_terms.feature_columns.clone();
    if let Some(path) = &request.test_data {
        check_test_data(path, &features)?;
    }
    if let Some(dir) = &request.report {
        std::fs::create_dir_all(dir).map_err(|e| {
            NodeError::BadRequest(format!(
                "report folder {} cannot be created: {e}",
                dir.display()
            ))
        })?;
    }
    let charged = match &config.dp {
        Some(_) => {
            let loss = privacy_loss(&config, config.rounds)
                .map_err(|e| NodeError::BadRequest(e.to_string()))?;
            Some(Charged {
                epsilon: loss.epsilon,
                delta: loss.delta,
            })
        }
        None => None,
    };

    let setup = Setup {
        operator: operator.clone(),
        providers: checked
            .into_iter()
            .map(|(name, agreement, _, _)| ProviderEntry {
                name,
                agreement,
                dataset_sha256: None,
            })
            .collect(),
        features,
        test_data: request.test_data.clone(),
        report: request.report.clone(),
        charged,
    };
    Ok((setup, config))
}

/// Describes the first difference between two providers' feature columns.
fn column_difference(first: (&str, &[String]), other: (&str, &[String])) -> String {
    let ((first_name, first), (other_name, other)) = (first, other);
    match first.iter().zip(other).position(|(a, b)| a != b) {
        Some(i) => format!(
            "column {} is {:?} at {first_name} and {:?} at {other_name}",
            i + 1,
            first[i],
            other[i]
        ),
        None => format!(
            "{first_name} names {} columns and {other_name} {}",
            first.len(),
            other.len()
        ),
    }
}

/// Rejects the options of vertical training.
fn check_options(request: &StartTraining) -> NodeResult<()> {
    let vertical_only = [
        ("--data", request.data.is_some()),
        ("--id-column", request.id_column.is_some()),
        ("--label-column", request.label_column.is_some()),
        ("--feature", !request.feature_columns.is_empty()),
        ("--split-file", request.split_file.is_some()),
        ("--split", request.split.is_some()),
    ];
    if let Some((option, _)) = vertical_only.iter().find(|(_, given)| *given) {
        return Err(NodeError::BadRequest(format!(
            "{option} applies to vertical training only: in horizontal training the providers' \
             terms name the columns, and --test-data gives the held-out rows"
        )));
    }
    Ok(())
}

/// Checks the providers, in name order: distinct and at least [`MIN_PARTIES`].
fn check_providers(names: &[&str]) -> NodeResult<()> {
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(NodeError::BadRequest(
            "two agreements are with the same provider: give one agreement per provider".into(),
        ));
    }
    if names.len() < MIN_PARTIES {
        return Err(NodeError::BadRequest(format!(
            "horizontal training needs agreements with at least {MIN_PARTIES} providers, {} \
             given; with two, each could subtract its own update from the mean and learn the \
             other's",
            names.len()
        )));
    }
    Ok(())
}

/// Builds the settings from the request, with [`TrainingConfig`]'s defaults where absent.
pub(super) fn config_of(request: &StartTraining) -> TrainingConfig {
    let defaults = TrainingConfig::default();
    let early_stopping = match request.early_stopping {
        Some(rule) => Some(EarlyStopping {
            patience: rule.patience,
            min_relative_improvement: rule.min_relative_improvement,
        }),
        None => defaults.early_stopping.clone(),
    };
    let dp = request.privacy.map(|privacy| DpConfig {
        noise_multiplier: privacy.noise_multiplier,
        clip_norm: privacy.clip_norm,
        delta: privacy.delta,
        ..DpConfig::default()
    });
    TrainingConfig {
        rounds: request.rounds.unwrap_or(defaults.rounds),
        local_epochs: request.local_epochs.unwrap_or(defaults.local_epochs),
        batch_size: request.batch_size.unwrap_or(defaults.batch_size),
        learning_rate: request.learning_rate.unwrap_or(defaults.learning_rate),
        seed: request.seed.unwrap_or(defaults.seed),
        early_stopping,
        dp,
        ..defaults
    }
}

/// Reads the held-out file once, so that a bad file fails the start rather than the end.
fn check_test_data(path: &std::path::Path, features: &[String]) -> NodeResult<()> {
    read_test_data(path, features).map(|_| ())
}

/// Reads the held-out file: id column `id`, label `y` and the feature columns, unclipped.
pub(super) fn read_test_data(
    path: &std::path::Path,
    features: &[String],
) -> NodeResult<carrel_learn::data::FeatureTable> {
    let options = LoadOptions::new(TEST_ID_COLUMN)
        .with_label(TEST_LABEL_COLUMN)
        .with_features(features.iter().cloned());
    let loaded = read_csv(path, &options)
        .map_err(|e| NodeError::BadRequest(format!("the held-out file is invalid: {e}")))?;
    Ok(loaded.table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_takes_defaults_where_request_is_silent() {
        let request: StartTraining =
            serde_json::from_value(json!({ "kind": "horizontal", "agreements": [] })).unwrap();
        assert_eq!(config_of(&request), TrainingConfig::default());
    }

    #[test]
    fn config_takes_request_settings() {
        let request: StartTraining = serde_json::from_value(json!({
            "kind": "horizontal", "agreements": [], "rounds": 7, "seed": 9,
            "early_stopping": { "patience": 4, "min_relative_improvement": 0.01 },
            "privacy": { "noise_multiplier": 2.0, "clip_norm": 0.5, "delta": 1e-7 }
        }))
        .unwrap();
        let config = config_of(&request);
        assert_eq!(config.rounds, 7);
        assert_eq!(config.seed, 9);
        assert_eq!(config.early_stopping.map(|e| e.patience), Some(4));
        let dp = config.dp.unwrap();
        assert_eq!(
            (dp.noise_multiplier, dp.clip_norm, dp.delta),
            (2.0, 0.5, 1e-7)
        );
        assert_eq!(dp.loss_clip, DpConfig::default().loss_clip);
    }

    #[test]
    fn column_difference_names_first_differing_column() {
        let a: Vec<String> = ["x0", "x1", "x2"].map(String::from).to_vec();
        let b: Vec<String> = ["x0", "x2", "x1"].map(String::from).to_vec();
        let text = column_difference(("p", &a), ("q", &b));
        assert_eq!(text, "column 2 is \"x1\" at p and \"x2\" at q");
        let text = column_difference(("p", &a), ("q", &a[..2]));
        assert_eq!(text, "p names 3 columns and q 2");
    }

    #[test]
    fn two_providers_are_rejected() {
        let error = check_providers(&["a", "b"]).unwrap_err().to_string();
        assert!(error.contains("at least 3 providers, 2 given"), "{error}");
        let error = check_providers(&["a", "a", "b"]).unwrap_err().to_string();
        assert!(error.contains("same provider"), "{error}");
        assert!(check_providers(&["a", "b", "c"]).is_ok());
    }
}
