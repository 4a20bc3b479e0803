//! Trains the vertical model on the ten splits of the breast and credit data and prints the
//! test AUC beside scikit-learn's pooled figure. Run with `--release`.

use std::collections::HashMap;
use std::time::Instant;

use carrel_learn::data::{LoadOptions, read_csv, read_test_ids};
use carrel_learn::metrics::auc;
use carrel_learn::vertical::{Plan, run_local};

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/fate");
    for name in ["breast", "default_credit"] {
        let guest = read_csv(
            format!("{root}/{name}_hetero_guest.csv"),
            &LoadOptions::new("id").with_label("y"),
        )
        .unwrap()
        .table;
        let host = read_csv(
            format!("{root}/{name}_hetero_host.csv"),
            &LoadOptions::new("id"),
        )
        .unwrap()
        .table;
        let host_index: HashMap<&str, usize> = host
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut aucs = Vec::new();
        for seed in 0..10 {
            let test_ids = read_test_ids(
                format!("{root}/splits/{name}_hetero_splits.csv"),
                &format!("seed{seed}"),
            )
            .unwrap();
            let (train, test) = guest.split_by_test_ids(&test_ids).unwrap();
            let aligned = |table: &carrel_learn::data::FeatureTable| -> Vec<f64> {
                table
                    .ids
                    .iter()
                    .flat_map(|id| host.row(host_index[id.as_str()]).to_vec())
                    .collect()
            };
            let host_train = aligned(&train);
            let host_test = aligned(&test);
            let plan = Plan::with_defaults(train.len(), train.features(), host.features());
            let start = Instant::now();
            let (g, h) = run_local(
                &plan,
                &train.rows,
                train.labels.as_ref().unwrap(),
                &host_train,
            )
            .unwrap();
            let elapsed = start.elapsed();
            let kg = train.features();
            let scores: Vec<f64> = (0..test.len())
                .map(|i| {
                    let xg = test.row(i);
                    let xh = &host_test[i * host.features()..(i + 1) * host.features()];
                    carrel_learn::logistic::dot(&g.weights[..kg], xg)
                        + g.weights[kg]
                        + carrel_learn::logistic::dot(&h.weights, xh)
                })
                .collect();
            let a = auc(&scores, test.labels.as_ref().unwrap()).unwrap();
            println!(
                "{name} seed{seed}: AUC {a:.4} in {:.2} s, losses {:?}",
                elapsed.as_secs_f64(),
                g.losses
                    .iter()
                    .map(|l| format!("{l:.4}"))
                    .collect::<Vec<_>>()
            );
            aucs.push(a);
        }
        println!("{name}: mean AUC {:.4}", aucs.iter().sum::<f64>() / 10.0);
    }
}
