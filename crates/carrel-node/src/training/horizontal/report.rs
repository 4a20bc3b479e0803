//! The coordinator's evaluation on its held-out rows, and the report folder:
//! `report.json`, `loss.svg` (training loss per round) and `roc.svg`.

use std::path::Path;

use carrel_learn::horizontal::RoundLoss;
use carrel_learn::logistic::Model;
use carrel_learn::metrics::{Evaluation, roc_curve};
use carrel_learn::plot::{loss_curve_svg, roc_svg};
use serde_json::{Value, json};

use super::start::read_test_data;
use crate::error::{NodeError, NodeResult};

/// File of the loss curve in the report folder.
const LOSS_FILE: &str = "loss.svg";

/// File of the ROC curve in the report folder.
const ROC_FILE: &str = "roc.svg";

/// File of the summary in the report folder.
const REPORT_FILE: &str = "report.json";

/// The model's metrics on the held-out rows, with its ROC curve.
#[derive(Debug, Clone)]
pub(super) struct Evaluated {
    /// AUC, KS, accuracy and log loss.
    pub evaluation: Evaluation,
    /// Points `(false positive rate, true positive rate)`.
    pub roc: Vec<(f64, f64)>,
}

/// Evaluates `model` on the held-out CSV file at `path`.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for a file that cannot be read or lacks a column, and
/// [`NodeError::JobFailed`] when the metrics cannot be computed, for example because the
/// labels hold one class only.
pub(super) fn evaluate(path: &Path, features: &[String], model: &Model) -> NodeResult<Evaluated> {
    let table = read_test_data(path, features)?;
    let labels = table
        .require_labels()
        .map_err(|e| NodeError::BadRequest(e.to_string()))?;
    let logits = model.logits(&table.rows);
    let failed = |e: carrel_learn::metrics::MetricsError| {
        NodeError::JobFailed(format!(
            "the model cannot be evaluated on the held-out rows: {e}"
        ))
    };
    let evaluation = Evaluation::from_logits(&logits, labels).map_err(failed)?;
    let roc = roc_curve(&logits, labels).map_err(failed)?;
    Ok(Evaluated { evaluation, roc })
}

/// Writes `report.json`, `loss.svg` and, with an evaluation, `roc.svg` into `dir`.
///
/// # Errors
///
/// [`NodeError::Io`] naming the file that cannot be written.
pub(super) fn write(
    dir: &Path,
    losses: &[RoundLoss],
    evaluated: Option<&Evaluated>,
    result: &Value,
) -> NodeResult<()> {
    let points: Vec<(f64, f64)> = losses
        .iter()
        .map(|entry| (f64::from(entry.round), entry.loss))
        .collect();
    let loss = loss_curve_svg(
        "Training loss per round",
        &[("training loss", &points)],
        "round",
        "loss",
    );
    write_file(dir, LOSS_FILE, &loss)?;

    if let Some(evaluated) = evaluated {
        let curve = [(
            "horizontal model",
            evaluated.roc.as_slice(),
            evaluated.evaluation.auc,
        )];
        write_file(dir, ROC_FILE, &roc_svg("ROC on the held-out rows", &curve))?;
    }

    let mut report = result.clone();
    report["files"] = json!({ "loss_curve": LOSS_FILE,
                              "roc_curve": evaluated.map(|_| ROC_FILE) });
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| NodeError::Internal(format!("the report is not JSON: {e}")))?;
    write_file(dir, REPORT_FILE, &(text + "\n"))
}

fn write_file(dir: &Path, name: &str, contents: &str) -> NodeResult<()> {
    let path = dir.join(name);
    std::fs::write(&path, contents)
        .map_err(|e| NodeError::Io(format!("cannot write {}: {e}", path.display())))
}
