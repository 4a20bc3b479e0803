//! The demo's third story: federated training on the credit data of the second story.
//!
//! The bank trains a credit-default model with the e-commerce platform. The bank has the
//! labels and its 13 features of the 30,000 customers of the vertical split, and the shop
//! has the other 10 features of the same customers. Rows are aligned by private set intersection,
//! and the exchange deals the correlated randomness of the secret-shared training. Then the
//! risk consortium trains across the three lenders' files by federated averaging and
//! scores its own held-out file.
//!
//! Beside each federated figure the narrator, who has every file, trains the same model on
//! the pooled rows with Newton's method, the reference that federation must reach.

use std::path::{Path, PathBuf};

use anyhow::Context;
use carrel_learn::data::{FeatureTable, LoadOptions, read_csv, read_test_ids};
use carrel_learn::metrics::auc;
use carrel_learn::pooled::{NewtonOptions, train_table};
use serde_json::{Value, json};

use crate::admin::{AdminClient, negotiate};
use crate::demo::Report;
use crate::demo_joint::{agreement_id, base_policy, classification, publish, run_job};

const CREDIT_GUEST: &str = include_str!("../../../data/fate/default_credit_hetero_guest.csv");
const CREDIT_HOST: &str = include_str!("../../../data/fate/default_credit_hetero_host.csv");
const CREDIT_SPLITS: &str =
    include_str!("../../../data/fate/splits/default_credit_hetero_splits.csv");
const LENDER_FILES: [(&str, &str); 3] = [
    (
        "lender-guest",
        include_str!("../../../data/fate/default_credit_homo_guest.csv"),
    ),
    (
        "lender-host-1",
        include_str!("../../../data/fate/default_credit_homo_host_1.csv"),
    ),
    (
        "lender-host-2",
        include_str!("../../../data/fate/default_credit_homo_host_2.csv"),
    ),
];
const LENDER_TEST: &str = include_str!("../../../data/fate/default_credit_homo_test.csv");

/// Split of the vertical data the bank evaluates on.
const SPLIT: &str = "seed0";

/// Bound the shop declares for each of its standardised features; the largest absolute
/// value in its file is 7.3, so nothing is clipped.
const SHOP_BOUND: f64 = 10.0;

/// Runs the story on the nodes of the second story, given by name and folder.
pub async fn story(
    base: &Path,
    dirs: &[(String, PathBuf)],
    report: &mut Report<'_>,
) -> anyhow::Result<()> {
    let dir = |name: &str| -> anyhow::Result<&PathBuf> {
        dirs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .with_context(|| format!("the second story started no node {name}"))
    };
    report.section("Third story: a credit-default model trained where the data lives");
    vertical(
        base,
        &AdminClient::open(dir("bank")?)?,
        &AdminClient::open(dir("shop")?)?,
        report,
    )
    .await?;
    let lenders = LENDER_FILES
        .iter()
        .map(|(name, _)| Ok(((*name).to_owned(), AdminClient::open(dir(name)?)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    horizontal(
        base,
        &AdminClient::open(dir("risk-consortium")?)?,
        &lenders,
        report,
    )
    .await
}

async fn vertical(
    base: &Path,
    bank: &AdminClient,
    shop: &AdminClient,
    report: &mut Report<'_>,
) -> anyhow::Result<()> {
    let guest_file = base.join("bank_credit.csv");
    let host_file = base.join("shop_features.csv");
    let split_file = base.join("credit_splits.csv");
    std::fs::write(&guest_file, CREDIT_GUEST)?;
    std::fs::write(&host_file, CREDIT_HOST)?;
    std::fs::write(&split_file, CREDIT_SPLITS)?;
    let host_columns: Vec<String> = header_features(CREDIT_HOST);
    shop.post(
        "/admin/datasets",
        json!({ "source": host_file, "description": shop_features(&host_columns) }),
    )
    .await?;
    let mut policy = base_policy("federated_training");
    policy["dataset"] = json!("shop_features");
    policy["training"] = json!({
        "kind": "vertical", "feature_columns": host_columns, "id_column": "id",
        "max_rounds": 20, "model_operator": "consumer", "max_prediction_rows": 30_000 });
    let offer = publish(shop, "Shop features: vertical training", policy).await?;
    let agreement = agreement_id(&negotiate(bank, &offer, "credit-risk", report.out).await?)?;
    report.line(&format!(
        "bank holds agreement {agreement} to train with the shop's {} features",
        host_columns.len()
    ));

    report.section("Vertical training: bank (labels, 13 features) with shop (10 features)");
    let report_dir = base.join("bank-report");
    std::fs::create_dir_all(&report_dir)?;
    let body = json!({
        "kind": "vertical", "agreements": [agreement], "data": guest_file,
        "split_file": split_file, "split": SPLIT, "report": report_dir,
        "early_stopping": { "patience": 1, "min_relative_improvement": 0.001 } });
    let done = run_job(bank, "/admin/jobs/train", body, report).await?;
    let result = &done["result"];
    let federated = result["evaluation"]["auc"]
        .as_f64()
        .context("the vertical training reported no AUC")?;

    let (pooled, guest_only) = vertical_reference(&guest_file, &host_file, &split_file)?;
    report.line(&format!(
        "test AUC {federated:.4} on {} held-out customers after {} epochs; the same model on \
         pooled rows: {pooled:.4}; the bank's features alone: {guest_only:.4}",
        result["evaluation"]["rows"], result["epochs"]
    ));
    report.line(&format!(
        "each party keeps its own part of model {}; curves in {}",
        result["model"].as_str().unwrap_or("?"),
        report_dir.display()
    ));
    report.record("vertical_training", done);
    Ok(())
}

async fn horizontal(
    base: &Path,
    consortium: &AdminClient,
    lenders: &[(String, AdminClient)],
    report: &mut Report<'_>,
) -> anyhow::Result<()> {
    let features = header_features(LENDER_FILES[0].1);
    let mut agreements = Vec::new();
    for (name, lender) in lenders {
        let mut policy = base_policy("federated_training");
        policy["dataset"] = json!("loans");
        policy["training"] = json!({
            "kind": "horizontal", "feature_columns": features, "label_column": "y",
            "max_rounds": 50, "model_operator": "consumer", "max_prediction_rows": 10_000 });
        let offer = publish(
            lender,
            &format!("{name}: loans for federated training"),
            policy,
        )
        .await?;
        agreements.push(agreement_id(
            &negotiate(consortium, &offer, "credit-risk", report.out).await?,
        )?);
    }
    report.section("Horizontal training: three lenders, 24,000 loans, one model");
    let test_file = base.join("consortium_test.csv");
    std::fs::write(&test_file, LENDER_TEST)?;
    let report_dir = base.join("consortium-report");
    std::fs::create_dir_all(&report_dir)?;
    let body = json!({ "kind": "horizontal", "agreements": agreements,
                       "test_data": test_file, "report": report_dir });
    let done = run_job(consortium, "/admin/jobs/train", body, report).await?;
    let result = &done["result"];
    let federated = result["evaluation"]["auc"]
        .as_f64()
        .context("the horizontal training reported no AUC")?;
    let pooled = horizontal_reference(base, &test_file)?;
    report.line(&format!(
        "test AUC {federated:.4} on the consortium's {} held-out loans after {} rounds; the \
         same model on pooled rows: {pooled:.4}",
        result["evaluation"]["rows"], result["rounds"]
    ));
    report.record("horizontal_training", done);
    Ok(())
}

/// Feature columns of a CSV header: every column but `id` and `y`.
fn header_features(text: &str) -> Vec<String> {
    text.lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| *c != "id" && *c != "y")
        .map(str::to_owned)
        .collect()
}

fn shop_features(columns: &[String]) -> Value {
    let mut specs = vec![json!({ "name": "id", "type": "integer", "role": "identifier" })];
    specs.extend(columns.iter().map(|c| {
        json!({ "name": c, "type": "float", "role": "attribute",
                "bounds": { "lower": -SHOP_BOUND, "upper": SHOP_BOUND } })
    }));
    json!({
        "name": "shop_features",
        "title": "Shop-side features of credit customers, standardised",
        "columns": specs,
        "privacy_unit": "id",
        "classification": classification(),
        "rights": { "holder": "shop", "processors": ["shop"], "operators": ["shop"] }
    })
}

/// Test AUC of the pooled model on the split, with every feature and with the bank's only.
fn vertical_reference(guest: &Path, host: &Path, split: &Path) -> anyhow::Result<(f64, f64)> {
    let guest = read_csv(guest, &LoadOptions::new("id").with_label("y"))?.table;
    let host = read_csv(host, &LoadOptions::new("id"))?
        .table
        .with_column_prefix("host_");
    let joined = guest.join(&host)?;
    let test_ids = read_test_ids(split, SPLIT)?;
    let score = |table: &FeatureTable| -> anyhow::Result<f64> {
        let (train, test) = table.split_by_test_ids(&test_ids)?;
        let fit = train_table(&train, &NewtonOptions::default())?;
        let logits: Vec<f64> = (0..test.len())
            .map(|i| fit.model.logit(test.row(i)))
            .collect();
        Ok(auc(&logits, test.require_labels()?)?)
    };
    Ok((score(&joined)?, score(&guest)?))
}

/// Test AUC of the model trained on the three lenders' rows pooled.
fn horizontal_reference(base: &Path, test: &Path) -> anyhow::Result<f64> {
    let options = LoadOptions::new("id").with_label("y");
    let mut pooled: Option<FeatureTable> = None;
    for (name, text) in LENDER_FILES {
        let file = base.join(format!("{name}-pooled.csv"));
        std::fs::write(&file, text)?;
        let table = read_csv(&file, &options)?.table;
        std::fs::remove_file(&file)?;
        pooled = Some(match pooled {
            None => table,
            Some(mut all) => {
                all.ids.extend(table.ids);
                all.rows.extend(table.rows);
                if let (Some(a), Some(b)) = (all.labels.as_mut(), table.labels) {
                    a.extend(b);
                }
                all
            }
        });
    }
    let pooled = pooled.context("no lender file")?;
    let fit = train_table(&pooled, &NewtonOptions::default())?;
    let test = read_csv(test, &options)?.table;
    let logits: Vec<f64> = (0..test.len())
        .map(|i| fit.model.logit(test.row(i)))
        .collect();
    Ok(auc(&logits, test.require_labels()?)?)
}
