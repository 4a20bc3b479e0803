//! The guest's evaluation on held-out rows and the report folder.

use std::path::Path;

use carrel_learn::metrics::{Evaluation, roc_curve};
use carrel_learn::plot::{loss_curve_svg, roc_svg};
use serde_json::{Value, json};

use crate::error::{NodeError, NodeResult};

/// File name of the report's summary.
const REPORT_FILE: &str = "report.json";
/// File name of the loss curve.
const LOSS_FILE: &str = "loss.svg";
/// File name of the ROC curve.
const ROC_FILE: &str = "roc.svg";

/// The model's scores on the held-out rows.
pub(super) struct Scored {
    pub evaluation: Evaluation,
    /// ROC points, (false positive rate, true positive rate).
    pub roc: Vec<(f64, f64)>,
}

/// Evaluates full logits against the guest's labels.
///
/// # Errors
///
/// The metrics' message, for example when the held-out rows have one class only.
pub(super) fn evaluate(logits: &[f64], labels: &[f64]) -> Result<Scored, String> {
    let evaluation = Evaluation::from_logits(logits, labels).map_err(|e| e.to_string())?;
    let roc = roc_curve(logits, labels).map_err(|e| e.to_string())?;
    Ok(Scored { evaluation, roc })
}

/// Writes `report.json` (`summary` with the names of the figures), `loss.svg` and, with an
/// evaluation, `roc.svg` into `dir`; returns the paths written.
///
/// # Errors
///
/// [`NodeError::Io`] naming the file that cannot be written.
pub(super) fn write(
    dir: &Path,
    summary: &Value,
    losses: &[f64],
    scored: Option<&Scored>,
) -> NodeResult<Vec<String>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| NodeError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    let mut save = |name: &str, text: &str| -> NodeResult<()> {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| NodeError::Io(format!("cannot write {}: {e}", path.display())))?;
        written.push(path.display().to_string());
        Ok(())
    };

    let points: Vec<(f64, f64)> = losses
        .iter()
        .enumerate()
        .map(|(i, loss)| ((i + 1) as f64, *loss))
        .collect();
    save(
        LOSS_FILE,
        &loss_curve_svg(
            "Vertical training loss",
            &[("training loss (data term)", &points)],
            "epoch",
            "mean log loss",
        ),
    )?;
    if let Some(scored) = scored {
        let curve = (
            "vertical model",
            scored.roc.as_slice(),
            scored.evaluation.auc,
        );
        save(ROC_FILE, &roc_svg("ROC on the held-out rows", &[curve]))?;
    }

    let mut report = summary.clone();
    report["figures"] = json!({
        "loss": LOSS_FILE,
        "roc": scored.map(|_| ROC_FILE),
    });
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| NodeError::Internal(format!("the report does not serialise: {e}")))?;
    save(REPORT_FILE, &(text + "\n"))?;
    Ok(written)
}
