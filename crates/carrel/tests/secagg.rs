//! Secure aggregation across three provider node processes, coordinated by a consumer.

mod common;

use common::{Cluster, NodeProcess, carrel, ok};
use serde_json::{Value, json};

fn loans_description(holder: &str) -> Value {
    json!({
        "name": "loans",
        "title": "Loans",
        "columns": [
            { "name": "id", "type": "integer", "role": "identifier" },
            { "name": "defaulted", "type": "integer", "role": "sensitive", "bounds": { "lower": 0, "upper": 1 } },
            { "name": "amount", "type": "float", "role": "sensitive", "bounds": { "lower": 0, "upper": 100 } }
        ],
        "privacy_unit": "id",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": holder, "processors": [holder], "operators": [holder] }
    })
}

fn secagg_policy(max_rows: u64) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    json!({
        "action": "secure_aggregation",
        "purposes": ["risk"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap(),
        "valid_until": (now + time::Duration::hours(1)).format(format).unwrap(),
        "max_queries": 5,
        "budget": { "epsilon": 100000.0, "delta": 1e-6 },
        "query_epsilon": 1.0,
        "query_delta": 1e-9,
        "min_group_size": 10,
        "max_rows_per_unit": 1,
        "columns": { "aggregate": ["defaulted", "amount"] },
        "price_per_query": { "amount_minor": 100, "currency": "USD" },
        "usage_regions": ["US"],
        "secure_aggregation": { "max_rows": max_rows }
    })
}

/// Rows `first..first + count`, every `every`-th one defaulted, amounts 0.25 apart.
fn loans_csv(first: u64, count: u64, every: u64) -> String {
    let mut csv = String::from("id,defaulted,amount\n");
    for id in first..first + count {
        let defaulted = u64::from(id % every == 0);
        csv.push_str(&format!("{id},{defaulted},{}\n", (id % 400) as f64 * 0.25));
    }
    csv
}

fn agreement_with(cluster: &Cluster, provider: &NodeProcess, csv: &str, max_rows: u64) -> String {
    let name = &provider.name;
    let file = cluster.write(&format!("{name}.csv"), csv);
    let description = cluster.write(
        &format!("{name}.description.json"),
        &loans_description(name).to_string(),
    );
    let policy = cluster.write(
        &format!("{name}.policy.json"),
        &secagg_policy(max_rows).to_string(),
    );
    let node = provider.arg();
    ok(&[
        "register",
        "--node",
        &node,
        &file,
        "--description",
        &description,
    ]);
    let listed = ok(&[
        "publish",
        "--node",
        &node,
        "--dataset",
        "loans",
        "--title",
        name,
        "--policy",
        &policy,
    ]);
    let offer = listed["odrl:hasPolicy"][0]["@id"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed = ok(&[
        "negotiate",
        "--node",
        &cluster.consumer.arg(),
        "--offer",
        &offer,
        "--purpose",
        "risk",
    ]);
    signed["agreement"]["@id"].as_str().unwrap().to_owned()
}

fn aggregate(cluster: &Cluster, agreements: &[String], epsilon: &str) -> (bool, Value) {
    let consumer = cluster.consumer.arg();
    let mut args = vec![
        "aggregate",
        "--node",
        consumer.as_str(),
        "--column",
        "defaulted",
        "--column",
        "amount",
        "--epsilon",
        epsilon,
    ];
    for a in agreements {
        args.extend(["--agreement", a.as_str()]);
    }
    carrel(&args)
}

#[test]
fn three_lenders_learn_the_noisy_total_and_every_log_has_the_transcript() {
    let cluster = Cluster::start();
    let data = [(1, 300, 4), (1001, 500, 5), (5001, 200, 10)];
    let second = cluster.add_provider("lender-b");
    let third = cluster.add_provider("lender-c");
    let providers = [&cluster.provider, &second, &third];
    let agreements: Vec<String> = providers
        .iter()
        .zip(data)
        .map(|(p, (first, count, every))| {
            agreement_with(&cluster, p, &loans_csv(first, count, every), 10_000)
        })
        .collect();

    let (success, job) = aggregate(&cluster, &agreements, "50000");
    assert!(success, "{job}");
    let result = &job["result"];
    let rows = result["rows"].as_i64().unwrap();
    let defaulted = result["sums"]["defaulted"].as_i64().unwrap();
    let amount = result["sums"]["amount"].as_f64().unwrap();
    let plain_rows = 300 + 500 + 200;
    let plain_defaulted: i64 = data
        .iter()
        .map(|(first, count, every)| {
            (*first..first + count).filter(|id| id % every == 0).count() as i64
        })
        .sum();
    let plain_amount: f64 = data
        .iter()
        .flat_map(|(first, count, _)| *first..first + count)
        .map(|id| (id % 400) as f64 * 0.25)
        .sum();
    // Epsilon 50,000 split over three coordinates leaves the counts noise of scale 6e-5
    // and the amount noise of scale 6e-3, so 0.5 is over 80 scales.
    assert!((rows - plain_rows).abs() <= 1, "{rows}");
    assert!((defaulted - plain_defaulted).abs() <= 1, "{defaulted}");
    assert!(
        (amount - plain_amount).abs() <= 0.5,
        "{amount} vs {plain_amount}"
    );

    let id = job["id"].as_str().unwrap();
    let hash = job["transcript_sha256"].as_str().unwrap();
    for provider in providers {
        let theirs = ok(&["job", "status", "--node", &provider.arg(), id]);
        assert_eq!(theirs["state"], "succeeded", "{theirs}");
        assert_eq!(theirs["transcript_sha256"], hash);
    }
}

#[test]
fn a_failing_lender_ends_the_round_on_every_party() {
    let cluster = Cluster::start();
    let second = cluster.add_provider("lender-b");
    let third = cluster.add_provider("lender-c");
    let providers = [&cluster.provider, &second, &third];
    let agreements: Vec<String> = providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let max_rows = if i == 2 { 10 } else { 10_000 };
            agreement_with(
                &cluster,
                p,
                &loans_csv(1 + 1000 * i as u64, 50, 3),
                max_rows,
            )
        })
        .collect();

    // The third lender's offer allows 10 rows and its product has 50: it refuses.
    let (success, failed) = aggregate(&cluster, &agreements, "1");
    assert!(!success);
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("more than the 10"), "{message}");

    let jobs = ok(&["job", "status", "--node", &cluster.consumer.arg()]);
    let job = &jobs[0];
    assert_eq!(job["state"], "failed");
    assert!(job["result"].is_null());
    let id = job["id"].as_str().unwrap();
    // Parties go in name order: lender-b joined, lender-c refused, provider was never asked.
    for provider in [&second, &third] {
        let theirs = ok(&["job", "status", "--node", &provider.arg(), id]);
        assert_eq!(theirs["state"], "failed", "{theirs}");
    }
    let (found, _) = carrel(&["job", "status", "--node", &cluster.provider.arg(), id]);
    assert!(!found);

    // Two agreements are refused before any provider is asked.
    let (success, failed) = aggregate(&cluster, &agreements[..2], "1");
    assert!(!success);
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("at least 3 providers"), "{message}");
}
