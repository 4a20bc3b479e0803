//! `carrel bench learn`: federated training on the shipped FATE data, in one process, timed
//! beside the pooled Newton trainer, with the test AUC of every split.
//!
//! The vertical runs train the guest's and the host's parties on two threads with the dealer
//! called in process, so the figures are the protocol's own cost without the network. The
//! horizontal run drives the coordinator and three providers with real masks. The benchmark
//! script `scripts/bench/learn-compare.sh` runs scikit-learn on the same rows in the same
//! run, for the ratio.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use carrel_learn::data::{FeatureTable, LoadOptions, read_csv, read_test_ids};
use carrel_learn::horizontal::{PartyData, TrainingConfig};
use carrel_learn::logistic::{Model, dot};
use carrel_learn::metrics::auc;
use carrel_learn::pooled::{NewtonOptions, train};
use carrel_learn::vertical::{Plan, run_local};
use serde_json::{Value, json};

use crate::output::Output;

/// The vertical data sets, by file prefix.
const VERTICAL: [&str; 2] = ["breast", "default_credit"];

/// Runs every vertical split and the horizontal credit training; prints one JSON value.
pub fn learn(data: &Path, splits: usize, out: &Output) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for name in VERTICAL {
        let (guest, host) = load_vertical(data, name)?;
        for seed in 0..splits {
            let run = vertical_split(data, name, seed, &guest, &host)?;
            out.progress(&format!(
                "{name} seed{seed}: vertical AUC {:.4} in {:.3} s, pooled AUC {:.4} in {:.3} s",
                run["vertical"]["auc"].as_f64().unwrap_or(f64::NAN),
                run["vertical"]["seconds"].as_f64().unwrap_or(f64::NAN),
                run["pooled"]["auc"].as_f64().unwrap_or(f64::NAN),
                run["pooled"]["seconds"].as_f64().unwrap_or(f64::NAN),
            ));
            runs.push(run);
        }
    }
    let horizontal = horizontal_credit(data)?;
    out.progress(&format!(
        "default_credit_homo: horizontal AUC {:.4} in {:.3} s",
        horizontal["horizontal"]["auc"].as_f64().unwrap_or(f64::NAN),
        horizontal["horizontal"]["seconds"]
            .as_f64()
            .unwrap_or(f64::NAN),
    ));
    out.value(
        "federated training",
        &json!({ "vertical": runs, "horizontal": horizontal }),
    );
    Ok(())
}

fn path(data: &Path, name: &str) -> PathBuf {
    data.join(name)
}

fn load_vertical(data: &Path, name: &str) -> anyhow::Result<(FeatureTable, FeatureTable)> {
    let guest = read_csv(
        path(data, &format!("{name}_hetero_guest.csv")),
        &LoadOptions::new("id").with_label("y"),
    )?
    .table;
    let host = read_csv(
        path(data, &format!("{name}_hetero_host.csv")),
        &LoadOptions::new("id"),
    )?
    .table;
    Ok((guest, host))
}

/// Trains one split vertically and pooled; returns both AUCs and times.
fn vertical_split(
    data: &Path,
    name: &str,
    seed: usize,
    guest: &FeatureTable,
    host: &FeatureTable,
) -> anyhow::Result<Value> {
    let split = path(data, &format!("splits/{name}_hetero_splits.csv"));
    let test_ids = read_test_ids(&split, &format!("seed{seed}"))?;
    let (train_rows, test_rows) = guest.split_by_test_ids(&test_ids)?;
    let host_index: HashMap<&str, usize> = host
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let aligned = |table: &FeatureTable| -> anyhow::Result<Vec<f64>> {
        let mut rows = Vec::with_capacity(table.len() * host.features());
        for id in &table.ids {
            let at = host_index
                .get(id.as_str())
                .with_context(|| format!("id {id} of the guest file is not in the host file"))?;
            rows.extend_from_slice(host.row(*at));
        }
        Ok(rows)
    };
    let host_train = aligned(&train_rows)?;
    let host_test = aligned(&test_rows)?;
    let train_labels = train_rows.require_labels()?;
    let test_labels = test_rows.require_labels()?;
    let kg = guest.features();
    let kh = host.features();

    let plan = Plan::with_defaults(train_rows.len(), kg, kh);
    let start = Instant::now();
    let (g, h) = run_local(&plan, &train_rows.rows, train_labels, &host_train)?;
    let vertical_seconds = start.elapsed().as_secs_f64();
    let scores: Vec<f64> = (0..test_rows.len())
        .map(|i| {
            dot(&g.weights[..kg], test_rows.row(i))
                + g.weights[kg]
                + dot(&h.weights, &host_test[i * kh..(i + 1) * kh])
        })
        .collect();
    let vertical_auc = auc(&scores, test_labels)?;

    // The same rows pooled, for Newton's method.
    let pooled_rows: Vec<f64> = (0..train_rows.len())
        .flat_map(|i| {
            let mut row = train_rows.row(i).to_vec();
            row.extend_from_slice(&host_train[i * kh..(i + 1) * kh]);
            row
        })
        .collect();
    let start = Instant::now();
    let fit = train(
        &pooled_rows,
        train_labels,
        kg + kh,
        &NewtonOptions::default(),
    )?;
    let pooled_seconds = start.elapsed().as_secs_f64();
    let pooled_scores: Vec<f64> = (0..test_rows.len())
        .map(|i| {
            let mut row = test_rows.row(i).to_vec();
            row.extend_from_slice(&host_test[i * kh..(i + 1) * kh]);
            fit.model.logit(&row)
        })
        .collect();
    let pooled_auc = auc(&pooled_scores, test_labels)?;
    Ok(json!({
        "data": name, "seed": seed, "train_rows": train_rows.len(), "test_rows": test_rows.len(),
        "guest_features": kg, "host_features": kh,
        "vertical": { "auc": vertical_auc, "seconds": vertical_seconds, "epochs": g.epochs,
                      "final_loss": g.losses.last() },
        "pooled": { "auc": pooled_auc, "seconds": pooled_seconds, "iterations": fit.iterations },
    }))
}

/// Trains across the three horizontal credit files and scores the held-out file.
fn horizontal_credit(data: &Path) -> anyhow::Result<Value> {
    let options = LoadOptions::new("id").with_label("y");
    let mut parties = Vec::new();
    for part in ["guest", "host_1", "host_2"] {
        let table = read_csv(
            path(data, &format!("default_credit_homo_{part}.csv")),
            &options,
        )?
        .table;
        let labels = table.require_labels()?.to_vec();
        parties.push(PartyData::new(
            table.features(),
            table.rows.clone(),
            labels,
        )?);
    }
    let test = read_csv(path(data, "default_credit_homo_test.csv"), &options)?.table;
    let config = TrainingConfig::default();
    let start = Instant::now();
    let outcome = carrel_learn::horizontal::run_local(&parties, &config)?;
    let seconds = start.elapsed().as_secs_f64();
    let score =
        |model: &Model| -> Vec<f64> { (0..test.len()).map(|i| model.logit(test.row(i))).collect() };
    let horizontal_auc = auc(&score(&outcome.model), test.require_labels()?)?;

    let features = test.features();
    let rows: Vec<f64> = parties.iter().flat_map(|p| p.rows().to_vec()).collect();
    let labels: Vec<f64> = parties.iter().flat_map(|p| p.labels().to_vec()).collect();
    let start = Instant::now();
    let fit = train(&rows, &labels, features, &NewtonOptions::default())?;
    let pooled_seconds = start.elapsed().as_secs_f64();
    let pooled_auc = auc(&score(&fit.model), test.require_labels()?)?;
    Ok(json!({
        "data": "default_credit_homo", "parties": parties.len(), "train_rows": labels.len(),
        "test_rows": test.len(),
        "horizontal": { "auc": horizontal_auc, "seconds": seconds, "rounds": outcome.rounds,
                        "stopped_early": outcome.stopped_early },
        "pooled": { "auc": pooled_auc, "seconds": pooled_seconds, "iterations": fit.iterations },
    }))
}
