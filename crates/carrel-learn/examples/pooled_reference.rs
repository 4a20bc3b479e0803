//! Trains the pooled reference model on every FATE hetero split and prints the test AUC
//! beside scikit-learn's figure.
//!
//! The reference AUCs come from `data/fate/NOTICE.md`: scikit-learn's
//! `LogisticRegression(C=1.0, max_iter=5000)` trained on the same training rows, with guest
//! and host features joined on `id`.
//!
//! ```text
//! cargo run --release -p carrel-learn --example pooled_reference [DATA_DIR [ROC_SVG]]
//! ```
//!
//! `DATA_DIR` defaults to `data/fate` of this repository. When `ROC_SVG` is given, the ROC
//! curves of seed 0 of both data sets are written there as SVG.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use carrel_learn::data::{FeatureTable, LoadOptions, read_csv, read_test_ids};
use carrel_learn::metrics::{auc, roc_curve};
use carrel_learn::plot::roc_svg;
use carrel_learn::pooled::{NewtonOptions, train_table};

/// Test AUCs of scikit-learn for seeds 0 to 9, copied from `data/fate/NOTICE.md`.
const BREAST_REFERENCE: [f64; 10] = [
    1.0000, 0.9980, 0.9980, 0.9970, 0.9944, 0.9993, 0.9987, 0.9993, 0.9864, 0.9788,
];
const CREDIT_REFERENCE: [f64; 10] = [
    0.7149, 0.7205, 0.7285, 0.7264, 0.7294, 0.7276, 0.7048, 0.7328, 0.7202, 0.7152,
];

/// Test scores of one split: logits and labels of the test rows.
struct TestScores {
    logits: Vec<f64>,
    labels: Vec<f64>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let dir = match args.next() {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fate"),
    };
    let roc_path = args.next().map(PathBuf::from);

    let breast = compare(&dir, "breast", &BREAST_REFERENCE)?;
    let credit = compare(&dir, "default_credit", &CREDIT_REFERENCE)?;

    if let Some(path) = roc_path {
        let breast_curve = roc_curve(&breast.logits, &breast.labels)?;
        let credit_curve = roc_curve(&credit.logits, &credit.labels)?;
        let svg = roc_svg(
            "Pooled logistic regression, test rows of seed 0",
            &[
                (
                    "breast",
                    &breast_curve,
                    auc(&breast.logits, &breast.labels)?,
                ),
                (
                    "default_credit",
                    &credit_curve,
                    auc(&credit.logits, &credit.labels)?,
                ),
            ],
        );
        std::fs::write(&path, svg)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Trains and evaluates every seed of one data set, prints a table and returns the test
/// scores of seed 0.
fn compare(dir: &Path, name: &str, reference: &[f64; 10]) -> Result<TestScores, Box<dyn Error>> {
    let guest_options = LoadOptions::new("id").with_label("y");
    let guest = read_csv(dir.join(format!("{name}_hetero_guest.csv")), &guest_options)?.table;
    let host_path = dir.join(format!("{name}_hetero_host.csv"));
    let host = read_csv(host_path, &LoadOptions::new("id"))?
        .table
        .with_column_prefix("host_");
    let joined = guest.join(&host)?;
    let splits = dir.join(format!("splits/{name}_hetero_splits.csv"));

    println!(
        "{name}: {} rows, {} features",
        joined.len(),
        joined.features()
    );
    println!("seed   AUC       scikit-learn  difference  iterations  time");
    let mut found_sum = 0.0;
    let mut max_difference: f64 = 0.0;
    let mut seed0 = None;
    for (seed, expected) in reference.iter().enumerate() {
        let started = Instant::now();
        let test_ids = read_test_ids(&splits, &format!("seed{seed}"))?;
        let (train_rows, test_rows) = joined.split_by_test_ids(&test_ids)?;
        let (scores, iterations) = train_and_score(&train_rows, &test_rows)?;
        let found = auc(&scores.logits, &scores.labels)?;
        let difference = found - expected;
        println!(
            "seed{seed}  {found:.6}  {expected:.4}        {difference:+.4}     {iterations:>3}  \
             {:>12.2?}",
            started.elapsed()
        );
        found_sum += found;
        max_difference = max_difference.max(difference.abs());
        seed0.get_or_insert(scores);
    }
    let reference_mean = reference.iter().sum::<f64>() / 10.0;
    println!(
        "mean   {:.6}  {reference_mean:.4}, max |difference| {max_difference:.4}\n",
        found_sum / 10.0
    );
    Ok(seed0.ok_or("no seeds")?)
}

/// Trains on `train_rows` and returns the test logits and labels and the Newton steps taken.
fn train_and_score(
    train_rows: &FeatureTable,
    test_rows: &FeatureTable,
) -> Result<(TestScores, usize), Box<dyn Error>> {
    let fit = train_table(train_rows, &NewtonOptions::default())?;
    if !fit.converged {
        return Err(format!("Newton's method did not converge: {fit:?}").into());
    }
    let scores = TestScores {
        logits: fit.model.logits(&test_rows.rows),
        labels: test_rows.require_labels()?.to_vec(),
    };
    Ok((scores, fit.iterations))
}
