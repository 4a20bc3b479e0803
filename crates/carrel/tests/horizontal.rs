//! Horizontal federated training between real node processes: three lenders hold 8,000
//! rows each of the credit-default data with the same 23 features, and the consortium
//! coordinates the training and evaluates the model on its 6,000 held-out rows.

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use carrel_learn::data::{LoadOptions, read_csv};
use carrel_learn::horizontal::{DpConfig, PartyData, TrainingConfig, privacy_loss, run_local};
use common::{
    Cluster, NodeProcess, audit_log_events, carrel, carrel_exe, fails, ok, stored_job_state,
    wait_for_end, wait_for_phase,
};
use serde_json::{Value, json};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/fate");

/// Test AUC of scikit-learn's `LogisticRegression(C=1.0)` on the three files pooled.
const REFERENCE_AUC: f64 = 0.7297;

/// Each lender and the file of its rows, in name order, which is the protocol's order.
const LENDERS: [(&str, &str); 3] = [
    ("lender-a", "default_credit_homo_guest.csv"),
    ("lender-b", "default_credit_homo_host_1.csv"),
    ("lender-c", "default_credit_homo_host_2.csv"),
];

/// Budget epsilon of every training offer.
const BUDGET_EPSILON: f64 = 60.0;

fn data_file(name: &str) -> String {
    format!("{DATA}/{name}")
}

fn features() -> Vec<String> {
    (0..23).map(|i| format!("x{i}")).collect()
}

/// Returns the description of the lenders' table: `id`, the 0/1 label `y` and `x0`..`x22`,
/// declared within ±`bound`.
fn description(holder: &str, bound: f64) -> Value {
    let mut columns = vec![
        json!({ "name": "id", "type": "integer", "role": "identifier" }),
        json!({ "name": "y", "type": "integer", "role": "sensitive",
                "bounds": { "lower": 0, "upper": 1 } }),
    ];
    for name in features() {
        columns.push(json!({ "name": name, "type": "float", "role": "attribute",
                             "bounds": { "lower": -bound, "upper": bound } }));
    }
    json!({
        "name": "credit",
        "title": "Card clients",
        "columns": columns,
        "privacy_unit": "id",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": holder, "processors": [holder], "operators": [holder] }
    })
}

fn policy(action: &str, training: Option<Value>) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    let mut policy = json!({
        "action": action,
        "purposes": ["credit_scoring"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap(),
        "valid_until": (now + time::Duration::hours(1)).format(format).unwrap(),
        "max_queries": 10,
        "budget": { "epsilon": BUDGET_EPSILON, "delta": 1e-5 },
        "query_epsilon": 0.1,
        "query_delta": 1e-9,
        "min_group_size": 10,
        "max_rows_per_unit": 1,
        "columns": { "aggregate": ["x0"] },
        "price_per_query": { "amount_minor": 100, "currency": "USD" },
        "usage_regions": ["US"]
    });
    if let Some(training) = training {
        policy["training"] = training;
    }
    policy
}

fn training_policy(features: &[String], privacy: Option<Value>) -> Value {
    let mut terms = json!({ "kind": "horizontal", "feature_columns": features,
                            "label_column": "y", "max_rounds": 40,
                            "model_operator": "consumer", "max_prediction_rows": 1000 });
    if let Some(privacy) = privacy {
        terms["privacy"] = privacy;
    }
    policy("federated_training", Some(terms))
}

/// Starts the exchange, the consortium and the three lenders, and registers each lender's
/// file as its dataset `credit` with features declared within ±`bound`.
fn start_lenders(bound: f64) -> (Cluster, NodeProcess, NodeProcess) {
    let cluster = Cluster::start_with_names(LENDERS[0].0, "consortium");
    let second = cluster.add_provider(LENDERS[1].0);
    let third = cluster.add_provider(LENDERS[2].0);
    for (node, (name, file)) in [&cluster.provider, &second, &third]
        .into_iter()
        .zip(LENDERS)
    {
        let description = cluster.write(
            &format!("{name}.description.json"),
            &description(name, bound).to_string(),
        );
        ok(&[
            "register",
            "--node",
            &node.arg(),
            &data_file(file),
            "--description",
            &description,
        ]);
    }
    (cluster, second, third)
}

/// Publishes the lender's dataset under `policy` and returns the consortium's agreement.
fn agree(cluster: &Cluster, lender: &NodeProcess, policy: &Value) -> String {
    let file = cluster.write(
        &format!("{}-{}.policy.json", lender.name, next_suffix()),
        &policy.to_string(),
    );
    let listed = ok(&[
        "publish",
        "--node",
        &lender.arg(),
        "--dataset",
        "credit",
        "--title",
        &lender.name,
        "--policy",
        &file,
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
        "credit_scoring",
    ]);
    signed["agreement"]["@id"].as_str().unwrap().to_owned()
}

/// Returns a number that differs on every call, to name the policy files apart.
fn next_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

fn train_args(cluster: &Cluster, agreements: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--node",
        &cluster.consumer.arg(),
        "--kind",
        "horizontal",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for agreement in agreements {
        args.extend(["--agreement".to_owned(), (*agreement).to_owned()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn train(cluster: &Cluster, agreements: &[&str], extra: &[&str]) -> (bool, Value) {
    let args = train_args(cluster, agreements, extra);
    carrel(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn model(node: &NodeProcess, id: &str) -> Value {
    ok(&["model", "show", "--node", &node.arg(), id])
}

/// Returns the bits of the weights and of the intercept, when there is one.
fn bits(model: &Value) -> (Vec<u64>, Option<u64>) {
    let part = &model["part"];
    let weights = part["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap().to_bits())
        .collect();
    (weights, part["intercept"].as_f64().map(f64::to_bits))
}

fn jobs(node: &NodeProcess) -> Vec<Value> {
    ok(&["job", "status", "--node", &node.arg()])
        .as_array()
        .unwrap()
        .clone()
}

fn assert_none_running(nodes: &[&NodeProcess]) {
    for node in nodes {
        for job in jobs(node) {
            assert_ne!(job["state"], "running", "{}: {job}", node.name);
        }
    }
}

/// Trains in the background, so that a node can be killed meanwhile.
fn train_in_background(
    cluster: &Cluster,
    agreements: &[&str],
    extra: &[&str],
) -> std::process::Child {
    Command::new(carrel_exe())
        .arg("--json")
        .args(train_args(cluster, agreements, extra))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Trains the same model in this process with `carrel_learn::horizontal::run_local`.
fn train_locally(config: &TrainingConfig) -> carrel_learn::logistic::Model {
    let parties: Vec<PartyData> = LENDERS
        .iter()
        .map(|(_, file)| {
            let options = LoadOptions::new("id")
                .with_label("y")
                .with_features(features());
            let table = read_csv(data_file(file), &options).unwrap().table;
            let labels = table.require_labels().unwrap().to_vec();
            PartyData::new(table.features(), table.rows, labels).unwrap()
        })
        .collect();
    run_local(&parties, config).unwrap().model
}

#[test]
fn lenders_reach_pooled_auc_repeatably() {
    let (cluster, second, third) = start_lenders(80.0);
    let lenders = [&cluster.provider, &second, &third];
    let plain = training_policy(&features(), None);
    let agreements: Vec<String> = lenders.iter().map(|l| agree(&cluster, l, &plain)).collect();
    let agreements: Vec<&str> = agreements.iter().map(String::as_str).collect();
    let test_data = data_file("default_credit_homo_test.csv");
    let report = cluster.root.path().join("report");
    let report_arg = report.to_string_lossy().into_owned();

    let clock = Instant::now();
    let extra = ["--test-data", test_data.as_str(), "--seed", "3"];
    let mut with_report = extra.to_vec();
    with_report.extend(["--report", report_arg.as_str()]);
    let (success, first) = train(&cluster, &agreements, &with_report);
    assert!(success, "{first}");
    eprintln!(
        "first run: {:.1} s end to end, {} rounds, test AUC {}, phases {}",
        clock.elapsed().as_secs_f64(),
        first["result"]["rounds"],
        first["result"]["evaluation"]["auc"],
        first["result"]["seconds"]
    );

    let result = &first["result"];
    let auc = result["evaluation"]["auc"].as_f64().unwrap();
    assert!(
        (auc - REFERENCE_AUC).abs() <= 0.005,
        "test AUC {auc}, scikit-learn pooled {REFERENCE_AUC}: {result}"
    );
    assert_eq!(result["total_rows"], 24_000);
    assert_eq!(result["evaluation"]["rows"], 6_000);
    let rounds = result["rounds"].as_u64().unwrap();
    assert!((1..=10).contains(&rounds), "{result}");
    assert_eq!(result["losses"].as_array().unwrap().len() as u64, rounds);
    assert_eq!(result["privacy"]["differential_privacy"], false);
    assert!(result["privacy"]["epsilon"].is_null());
    assert!(result["traffic"]["request_bytes"].as_u64().unwrap() > 0);
    assert!(result["traffic"]["response_bytes"].as_u64().unwrap() > 0);
    for phase in ["join", "census", "training", "evaluation", "finish"] {
        assert!(result["seconds"][phase].is_number(), "{phase}: {result}");
    }
    assert_eq!(result["restarts"], 0);

    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(written["files"]["loss_curve"], "loss.svg");
    assert_eq!(written["files"]["roc_curve"], "roc.svg");
    assert_eq!(written["evaluation"], result["evaluation"]);
    for file in ["loss.svg", "roc.svg"] {
        let svg = std::fs::read_to_string(report.join(file)).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{file}"
        );
    }

    // Every party keeps the global model, and the coordinator also keeps the intercept.
    let model_id = result["model"].as_str().unwrap();
    let coordinator = model(&cluster.consumer, model_id);
    assert_eq!(coordinator["role"], "coordinator");
    assert_eq!(coordinator["operator"], "consortium");
    assert_eq!(coordinator["evaluation"], result["evaluation"]);
    let (weights, intercept) = bits(&coordinator);
    assert_eq!(weights.len(), 23);
    assert!(intercept.is_some());
    let hash = first["transcript_sha256"].as_str().unwrap();
    for lender in lenders {
        let part = model(lender, model_id);
        assert_eq!(part["role"], "provider", "{part}");
        assert_eq!(bits(&part), (weights.clone(), None), "{}", lender.name);
        assert_eq!(part["datasets"][0]["holder"], lender.name.as_str());
        assert_eq!(part["datasets"][0]["rows"], 8_000);
        let job = ok(&[
            "job",
            "status",
            "--node",
            &lender.arg(),
            first["id"].as_str().unwrap(),
        ]);
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["transcript_sha256"], hash);
        assert_eq!(job["result"]["clipped"], json!({}));
    }

    // Without DP the lineage states no privacy loss.
    let registered = audit_log_events(&cluster.consumer.dir, "model.registered");
    let lineage = &registered.last().unwrap()["detail"];
    assert_eq!(lineage["differential_privacy"], false);
    assert!(lineage["epsilon"].is_null(), "{lineage}");
    assert!(lineage["datasets"][0]["rows"].is_null(), "{lineage}");

    // The nodes compute what the in-process run computes, to the last bit.
    let local = train_locally(&TrainingConfig {
        seed: 3,
        ..TrainingConfig::default()
    });
    let local_bits: Vec<u64> = local.weights.iter().map(|w| w.to_bits()).collect();
    assert_eq!(weights, local_bits);
    assert_eq!(intercept, Some(local.intercept.to_bits()));

    // The same seed again gives the same model to the last bit.
    let (success, second_run) = train(&cluster, &agreements, &extra);
    assert!(success, "{second_run}");
    let again = model(
        &cluster.consumer,
        second_run["result"]["model"].as_str().unwrap(),
    );
    assert_eq!(bits(&again), (weights, intercept));

    // The operator scores new rows locally with the whole model; a lender may not.
    let rows: String = std::fs::read_to_string(&test_data)
        .unwrap()
        .lines()
        .take(501)
        .map(|line| format!("{line}\n"))
        .collect();
    let rows_file = cluster.write("new_rows.csv", &rows);
    let output = cluster.root.path().join("predictions.csv");
    let predict_args = |node: &NodeProcess| {
        vec![
            "predict".to_owned(),
            "--node".to_owned(),
            node.arg(),
            "--model".to_owned(),
            model_id.to_owned(),
            "--data".to_owned(),
            rows_file.clone(),
            "--output".to_owned(),
            output.to_string_lossy().into_owned(),
        ]
    };
    let args = predict_args(&cluster.consumer);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let predicted = ok(&args);
    assert_eq!(predicted["result"]["scored"], 500, "{predicted}");
    assert_eq!(predicted["peers"], json!([]));
    let text = std::fs::read_to_string(&output).unwrap();
    for (line, row) in text.lines().skip(1).zip(rows.lines().skip(1)) {
        let values: Vec<f64> = row.split(',').skip(2).map(|v| v.parse().unwrap()).collect();
        let expected: f64 = local
            .weights
            .iter()
            .zip(&values)
            .map(|(w, x)| w * x)
            .sum::<f64>()
            + local.intercept;
        let logit: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!(
            (logit - expected).abs() < 1e-9,
            "{line}: expected {expected}"
        );
    }
    let completed = audit_log_events(&cluster.consumer.dir, "predict.completed");
    assert!(
        completed
            .iter()
            .any(|e| e["detail"]["job"] == predicted["id"])
    );
    let args = predict_args(&cluster.provider);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let message = fails(&args);
    assert!(message.contains("not the operator"), "{message}");
    assert_none_running(&[&cluster.consumer, &cluster.provider, &second, &third]);
}

#[test]
fn killed_node_resumes_to_same_model() {
    let (mut cluster, mut second, third) = start_lenders(80.0);
    let plain = training_policy(&features(), None);
    let agreements: Vec<String> = [&cluster.provider, &second, &third]
        .iter()
        .map(|l| agree(&cluster, l, &plain))
        .collect();
    let agreements: Vec<&str> = agreements.iter().map(String::as_str).collect();
    // No early stopping within the 40 rounds, so that every run has rounds to interrupt.
    let extra = ["--rounds", "40", "--patience", "100", "--seed", "5"];

    let (success, reference) = train(&cluster, &agreements, &extra);
    assert!(success, "{reference}");
    assert_eq!(reference["result"]["rounds"], 40);
    let expected = bits(&model(
        &cluster.consumer,
        reference["result"]["model"].as_str().unwrap(),
    ));

    // The coordinator is killed during round 3 or later and started again.
    let mut command = train_in_background(&cluster, &agreements, &extra);
    let job = wait_for_phase(&cluster.consumer, "round ", 3);
    cluster.consumer.kill();
    let _ = command.wait();
    let stored = stored_job_state(&cluster.consumer.dir, &job);
    assert_eq!(stored.as_deref(), Some("running"));
    cluster.consumer.start_again();
    let done = wait_for_end(&cluster.consumer, &job);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["restarts"], 1);
    assert_eq!(done["result"]["rounds"], 40);
    let resumed = model(&cluster.consumer, done["result"]["model"].as_str().unwrap());
    assert_eq!(bits(&resumed), expected);
    for lender in [&cluster.provider, &second, &third] {
        let theirs = ok(&["job", "status", "--node", &lender.arg(), &job]);
        assert_eq!(theirs["state"], "succeeded", "{}: {theirs}", lender.name);
        assert_eq!(theirs["transcript_sha256"], done["transcript_sha256"]);
    }

    // A lender is killed during round 3 or later and started again: the coordinator runs
    // the round it missed again.
    let mut command = train_in_background(&cluster, &agreements, &extra);
    let job = wait_for_phase(&cluster.consumer, "round ", 3);
    second.kill();
    second.start_again();
    let status = command.wait().unwrap();
    assert!(status.success());
    let done = ok(&["job", "status", "--node", &cluster.consumer.arg(), &job]);
    assert_eq!(done["state"], "succeeded", "{done}");
    let retries = done["result"]["round_retries"].as_u64().unwrap();
    assert!(retries >= 1, "{done}");
    let resumed = model(&cluster.consumer, done["result"]["model"].as_str().unwrap());
    assert_eq!(bits(&resumed), expected);
    let theirs = ok(&["job", "status", "--node", &second.arg(), &job]);
    assert_eq!(theirs["state"], "succeeded", "{theirs}");
    assert_none_running(&[&cluster.consumer, &cluster.provider, &second, &third]);
}

#[test]
fn rejections_and_dp_budget_charges() {
    // Features declared within ±20 clip a few values of every lender.
    let (cluster, second, third) = start_lenders(20.0);
    let first = &cluster.provider;
    let features = features();
    let plain = training_policy(&features, None);
    let a = agree(&cluster, first, &plain);
    let b = agree(&cluster, &second, &plain);
    let c = agree(&cluster, &third, &plain);
    let private = json!({ "min_noise_multiplier": 1.0, "max_clip_norm": 1.0 });
    let b_private = agree(
        &cluster,
        &second,
        &training_policy(&features, Some(private)),
    );
    let mut reversed = features.clone();
    reversed.reverse();
    let c_reversed = agree(&cluster, &third, &training_policy(&reversed, None));
    let a_query = agree(&cluster, first, &policy("aggregate_query", None));
    let train_fails = |agreements: &[&str], extra: &[&str]| {
        let args = train_args(&cluster, agreements, extra);
        fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let message = train_fails(&[&a, &b], &[]);
    assert!(message.contains("at least 3 providers"), "{message}");
    let message = train_fails(&[&a, &b, &c_reversed], &[]);
    assert!(message.contains("different feature columns"), "{message}");
    let message = train_fails(&[&a_query, &b, &c], &[]);
    assert!(
        message.contains("permits aggregate_query, not federated_training"),
        "{message}"
    );
    let message = train_fails(&[&a, &b_private, &c], &["--noise-multiplier", "0.5"]);
    assert!(
        message.contains("noise multiplier of at least 1"),
        "{message}"
    );
    assert!(message.contains("the noise multiplier is 0.5"), "{message}");
    let message = train_fails(&[&a, &b_private, &c], &[]);
    assert!(message.contains("the training has no DP"), "{message}");
    let message = train_fails(&[&a, &b, &c], &["--rounds", "41"]);
    assert!(message.contains("allows at most 40"), "{message}");
    // None of these started a job anywhere.
    for node in [&cluster.consumer, first, &second, &third] {
        assert!(jobs(node).is_empty(), "{}", node.name);
    }

    // A step size of 1e300 overflows the first provider's update: the job ends everywhere
    // and the error names that provider.
    let message = train_fails(&[&a, &b, &c], &["--learning-rate", "1e300"]);
    assert!(
        message.contains("provider lender-a failed at round 1"),
        "{message}"
    );
    assert!(message.contains("party 0"), "{message}");
    let failed = jobs(&cluster.consumer)[0].clone();
    for node in [first, &second, &third] {
        let theirs = ok(&[
            "job",
            "status",
            "--node",
            &node.arg(),
            failed["id"].as_str().unwrap(),
        ]);
        assert_eq!(theirs["state"], "failed", "{}: {theirs}", node.name);
    }

    // With DP every provider charges the privacy loss of the planned rounds.
    let dp = [
        "--noise-multiplier",
        "1",
        "--clip-norm",
        "1",
        "--rounds",
        "2",
        "--seed",
        "1",
    ];
    let (success, trained) = train(&cluster, &[&a, &b_private, &c], &dp);
    assert!(success, "{trained}");
    let config = |rounds| TrainingConfig {
        rounds,
        dp: Some(DpConfig {
            noise_multiplier: 1.0,
            clip_norm: 1.0,
            ..DpConfig::default()
        }),
        ..TrainingConfig::default()
    };
    let charged = privacy_loss(&config(2), 2).unwrap();
    let result = &trained["result"];
    assert_eq!(
        result["privacy"]["charged"]["epsilon"].as_f64(),
        Some(charged.epsilon)
    );
    let spent = result["privacy"]["spent"]["epsilon"].as_f64().unwrap();
    assert!(spent <= charged.epsilon, "{result}");
    // The plain agreements of lender-a and lender-c also served the failed run above.
    for (node, agreement, uses) in [(first, &a, 2), (&second, &b_private, 1), (&third, &c, 2)] {
        let record = ok(&["agreement", "--node", &node.arg(), agreement]);
        let epsilon = record["agreement"]["epsilon_spent"].as_f64().unwrap();
        assert!(
            (epsilon - charged.epsilon).abs() < 1e-9,
            "{}: {record}",
            node.name
        );
        assert_eq!(record["agreement"]["queries_used"], uses, "{}", node.name);
    }
    let lineage = &audit_log_events(&second.dir, "model.registered")[0]["detail"];
    assert_eq!(lineage["differential_privacy"], true);
    assert_eq!(lineage["epsilon"].as_f64(), Some(charged.epsilon));
    let job = trained["id"].as_str().unwrap();
    let theirs = ok(&["job", "status", "--node", &first.arg(), job]);
    assert!(
        theirs["result"]["clipped"]
            .as_object()
            .is_some_and(|c| !c.is_empty()),
        "{theirs}"
    );

    // Eight rounds would fit in a fresh budget but not in what is left of it.
    let more = privacy_loss(&config(8), 8).unwrap();
    assert!(more.epsilon < BUDGET_EPSILON);
    assert!(charged.epsilon + more.epsilon > BUDGET_EPSILON);
    let eight = [
        "--noise-multiplier",
        "1",
        "--clip-norm",
        "1",
        "--rounds",
        "8",
    ];
    let message = train_fails(&[&a, &b_private, &c], &eight);
    assert!(message.contains("need epsilon"), "{message}");
    assert_none_running(&[&cluster.consumer, first, &second, &third]);
}
