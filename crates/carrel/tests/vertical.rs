//! Vertical federated training between real node processes. The bank (consumer, guest)
//! has the labels and ten features of the breast data, the shop (provider, host) has the
//! other twenty, and the exchange deals the correlated randomness.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use carrel_learn::vertical::Plan;
use carrel_net::{NodeIdentity, Peer, PeerClient, PeerError};
use common::{Cluster, audit_log_events, carrel, fails, ok, wait_for_end, wait_for_phase};
use serde_json::{Value, json};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/fate");

fn data_file(name: &str) -> String {
    format!("{DATA}/{name}")
}

/// Returns the description of the shop's half of the breast data: `id` and `x0`..`x19`,
/// declared within [-10, 10], so that training clips the three values above 10 (two in
/// `x13`, one in `x16`).
fn host_description(name: &str) -> Value {
    let mut columns = vec![json!({ "name": "id", "type": "integer", "role": "identifier" })];
    for i in 0..20 {
        columns.push(
            json!({ "name": format!("x{i}"), "type": "float", "role": "attribute",
                             "bounds": { "lower": -10.0, "upper": 10.0 } }),
        );
    }
    json!({
        "name": name,
        "title": "Shop features",
        "columns": columns,
        "privacy_unit": "id",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": "shop", "processors": ["shop"], "operators": ["shop"] }
    })
}

fn policy(action: &str, joint: (&str, Value)) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    let mut policy = json!({
        "action": action,
        "purposes": ["credit_scoring"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap(),
        "valid_until": (now + time::Duration::hours(1)).format(format).unwrap(),
        "max_queries": 10,
        "budget": { "epsilon": 1.0, "delta": 1e-6 },
        "query_epsilon": 0.1,
        "query_delta": 1e-9,
        "min_group_size": 10,
        "max_rows_per_unit": 1,
        "columns": {},
        "price_per_query": { "amount_minor": 100, "currency": "USD" },
        "usage_regions": ["US"]
    });
    policy[joint.0] = joint.1;
    policy
}

fn vertical_policy() -> Value {
    let features: Vec<String> = (0..20).map(|i| format!("x{i}")).collect();
    policy(
        "federated_training",
        (
            "training",
            json!({ "kind": "vertical", "feature_columns": features, "id_column": "id",
                    "max_rounds": 20, "model_operator": "consumer",
                    "max_prediction_rows": 200 }),
        ),
    )
}

fn train(cluster: &Cluster, agreement: &str, data: &str, extra: &[&str]) -> (bool, Value) {
    let node = cluster.consumer.arg();
    let mut args = vec![
        "train",
        "--node",
        node.as_str(),
        "--kind",
        "vertical",
        "--agreement",
        agreement,
        "--data",
        data,
    ];
    args.extend_from_slice(extra);
    carrel(&args)
}

fn jobs(node: &common::NodeProcess) -> Vec<Value> {
    ok(&["job", "status", "--node", &node.arg()])
        .as_array()
        .unwrap()
        .clone()
}

fn assert_none_running(cluster: &Cluster) {
    for node in [&cluster.consumer, &cluster.provider, &cluster.exchange] {
        for job in jobs(node) {
            assert_ne!(job["state"], "running", "{}: {job}", node.name);
        }
    }
}

#[test]
fn breast_model_matches_pooled_auc() {
    let cluster = Cluster::start_with_names("shop", "bank");
    let host_csv = std::fs::read_to_string(data_file("breast_hetero_host.csv")).unwrap();
    let agreement = cluster.agreement(
        &host_csv,
        &host_description("breast_shop"),
        &vertical_policy(),
        "credit_scoring",
    );
    let guest = data_file("breast_hetero_guest.csv");
    let splits = data_file("splits/breast_hetero_splits.csv");
    let report = cluster.root.path().join("report");
    let report_arg = report.to_string_lossy().into_owned();
    let split_args = ["--split-file", splits.as_str(), "--split", "seed0"];

    let clock = Instant::now();
    let mut extra = split_args.to_vec();
    extra.extend(["--report", report_arg.as_str()]);
    let (success, first) = train(&cluster, &agreement, &guest, &extra);
    assert!(success, "{first}");
    eprintln!(
        "first run: {:.1} s end to end, test AUC {}, seconds per phase {}",
        clock.elapsed().as_secs_f64(),
        first["result"]["evaluation"]["auc"],
        first["result"]["seconds"]
    );

    // scikit-learn's pooled logistic regression reaches 1.0000 on seed0.
    let result = &first["result"];
    let auc = result["evaluation"]["auc"].as_f64().unwrap();
    assert!(auc >= 0.99, "test AUC {auc}: {result}");
    assert_eq!(result["rows"]["intersection"], 569);
    assert_eq!(result["rows"]["train"], 455);
    assert_eq!(result["rows"]["test"], 114);
    assert_eq!(result["evaluation"]["rows"], 114);
    assert!(result["evaluation"]["accuracy"].as_f64().unwrap() > 0.9);
    let losses = result["losses"].as_array().unwrap();
    assert_eq!(losses.len() as u64, result["epochs"].as_u64().unwrap());
    assert!(losses.last().unwrap().as_f64() < losses[0].as_f64());
    assert!(result["traffic"]["host"]["request_bytes"].as_u64().unwrap() > 0);

    // The report names its figures, which exist.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(summary["figures"]["loss"], "loss.svg");
    assert_eq!(summary["figures"]["roc"], "roc.svg");
    for figure in ["loss.svg", "roc.svg"] {
        let svg = std::fs::read_to_string(report.join(figure)).unwrap();
        assert!(svg.contains("<svg"), "{figure} is not SVG");
    }

    // The host ended with the same transcript and its own part of the model.
    let job = first["id"].as_str().unwrap();
    let model = format!("model-{job}");
    assert_eq!(result["model"], model.as_str());
    let host_job = ok(&["job", "status", "--node", &cluster.provider.arg(), job]);
    assert_eq!(host_job["state"], "succeeded", "{host_job}");
    assert_eq!(host_job["transcript_sha256"], first["transcript_sha256"]);
    assert_eq!(host_job["result"]["clipped"]["x13"], 2, "{host_job}");
    assert_eq!(host_job["result"]["clipped"]["x16"], 1, "{host_job}");
    assert_eq!(host_job["result"]["clipped"]["x0"], 0, "{host_job}");
    assert_eq!(host_job["result"]["predicted_rows"], 114);
    let dealer_job = ok(&["job", "status", "--node", &cluster.exchange.arg(), job]);
    assert_eq!(dealer_job["state"], "succeeded", "{dealer_job}");
    assert_eq!(dealer_job["role"], "dealer");

    let guest_part = ok(&["model", "show", "--node", &cluster.consumer.arg(), &model]);
    let host_part = ok(&["model", "show", "--node", &cluster.provider.arg(), &model]);
    assert_eq!(guest_part["role"], "guest");
    assert_eq!(host_part["role"], "host");
    assert_eq!(guest_part["operator"], "bank");
    assert_eq!(host_part["operator"], "bank");
    assert_eq!(guest_part["part"]["weights"].as_array().unwrap().len(), 10);
    assert!(guest_part["part"]["intercept"].is_number());
    assert_eq!(host_part["part"]["weights"].as_array().unwrap().len(), 20);
    assert!(host_part["part"]["intercept"].is_null());
    assert_eq!(guest_part["datasets"], host_part["datasets"]);
    assert_eq!(guest_part["parties"], json!(["bank", "shop"]));
    assert_eq!(guest_part["epsilon"], 0.0);

    // Both audit logs contain the lineage, and neither contains the weights.
    for node in [&cluster.consumer, &cluster.provider] {
        let registered = audit_log_events(&node.dir, "model.registered");
        let entry = registered
            .iter()
            .find(|e| e["detail"]["model"] == model.as_str())
            .unwrap_or_else(|| panic!("{}: no model.registered for {model}", node.name));
        assert_eq!(entry["detail"]["agreements"], json!([agreement]));
        assert_eq!(entry["detail"]["differential_privacy"], false);
        assert!(entry["detail"]["epsilon"].is_null(), "{entry}");
        assert_eq!(entry["detail"]["datasets"].as_array().unwrap().len(), 2);
        assert!(entry["detail"]["part_sha256"].is_string());
        assert!(entry["detail"].get("part").is_none());
        let completed = audit_log_events(&node.dir, "vertical.completed");
        assert!(
            completed
                .iter()
                .any(|e| e["detail"]["result"]["model"] == model.as_str()),
            "{}: no vertical.completed naming {model}",
            node.name
        );
    }

    // A second run on the same data and seed gives the same AUC to four decimals.
    let clock = Instant::now();
    let (success, second) = train(&cluster, &agreement, &guest, &split_args);
    assert!(success, "{second}");
    eprintln!(
        "second run: {:.1} s end to end",
        clock.elapsed().as_secs_f64()
    );
    let again = second["result"]["evaluation"]["auc"].as_f64().unwrap();
    assert_eq!(
        format!("{auc:.4}"),
        format!("{again:.4}"),
        "the AUC of two runs differs"
    );
    assert_none_running(&cluster);
}

#[test]
fn training_without_split_holds_out_nothing() {
    let cluster = Cluster::start_with_names("shop", "bank");
    let host_csv = std::fs::read_to_string(data_file("breast_hetero_host.csv")).unwrap();
    let agreement = cluster.agreement(
        &host_csv,
        &host_description("breast_shop"),
        &vertical_policy(),
        "credit_scoring",
    );
    let guest = data_file("breast_hetero_guest.csv");
    let (success, job) = train(&cluster, &agreement, &guest, &["--rounds", "2"]);
    assert!(success, "{job}");
    let result = &job["result"];
    assert_eq!(result["rows"]["train"], 569);
    assert_eq!(result["rows"]["test"], 0);
    assert!(result["evaluation"].is_null());
    let note = result["evaluation_note"].as_str().unwrap();
    assert!(note.contains("no split file"), "{note}");
    assert_eq!(result["epochs"], 2);
}

#[test]
fn invalid_requests_are_rejected_without_a_running_job() {
    let cluster = Cluster::start_with_names("shop", "bank");
    let guest = data_file("breast_hetero_guest.csv");

    // An agreement for another action.
    let ids_policy = policy(
        "private_set_intersection",
        (
            "psi",
            json!({ "consumer_learns": "intersection", "provider_learns": "nothing",
                    "id_column": "id", "max_set_size": 1000 }),
        ),
    );
    let small: String = std::fs::read_to_string(data_file("breast_hetero_host.csv"))
        .unwrap()
        .lines()
        .take(50)
        .map(|line| format!("{line}\n"))
        .collect();
    let psi_agreement = cluster.agreement(
        &small,
        &host_description("shop_ids"),
        &ids_policy,
        "credit_scoring",
    );
    let message = fails(&[
        "train",
        "--node",
        &cluster.consumer.arg(),
        "--kind",
        "vertical",
        "--agreement",
        &psi_agreement,
        "--data",
        &guest,
    ]);
    assert!(message.contains("not federated training"), "{message}");
    assert!(message.contains("private_set_intersection"), "{message}");

    // An agreement for horizontal training.
    let mut labelled = host_description("shop_labelled");
    labelled["columns"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "y", "type": "integer", "role": "attribute" }));
    let mut labelled_csv = String::new();
    for (i, line) in small.lines().enumerate() {
        let label = if i == 0 { "y" } else { "1" };
        labelled_csv.push_str(&format!("{line},{label}\n"));
    }
    let horizontal_policy = policy(
        "federated_training",
        (
            "training",
            json!({ "kind": "horizontal", "feature_columns": ["x0", "x1"], "label_column": "y",
                    "max_rounds": 20, "model_operator": "consumer",
                    "max_prediction_rows": 200 }),
        ),
    );
    let horizontal = cluster.agreement(
        &labelled_csv,
        &labelled,
        &horizontal_policy,
        "credit_scoring",
    );
    let (success, output) = train(&cluster, &horizontal, &guest, &[]);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("horizontal federated training, not vertical"),
        "{message}"
    );

    let agreement = cluster.agreement(
        &std::fs::read_to_string(data_file("breast_hetero_host.csv")).unwrap(),
        &host_description("breast_shop"),
        &vertical_policy(),
        "credit_scoring",
    );

    // A data file that does not exist.
    let missing = cluster.root.path().join("missing.csv");
    let (success, output) = train(&cluster, &agreement, &missing.to_string_lossy(), &[]);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("missing.csv"), "{message}");

    // A label other than 0 or 1: the error names the row and the value.
    let mut bad = String::new();
    for line in std::fs::read_to_string(&guest).unwrap().lines() {
        let mut fields: Vec<&str> = line.split(',').collect();
        if fields[0] == "273" {
            fields[1] = "2";
        }
        bad.push_str(&fields.join(","));
        bad.push('\n');
    }
    let bad_file = cluster.write("bad_labels.csv", &bad);
    let (success, output) = train(&cluster, &agreement, &bad_file, &[]);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"273\""), "{message}");
    assert!(message.contains("\"2\""), "{message}");
    assert!(message.contains("label"), "{message}");

    // More epochs than the agreement's max_rounds.
    let (success, output) = train(&cluster, &agreement, &guest, &["--rounds", "50"]);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_rounds of 20"), "{message}");

    assert_none_running(&cluster);
}

#[test]
fn missing_host_value_stays_in_host_log() {
    let cluster = Cluster::start_with_names("shop", "bank");
    let mut gap = String::new();
    for line in std::fs::read_to_string(data_file("breast_hetero_host.csv"))
        .unwrap()
        .lines()
    {
        let mut fields: Vec<&str> = line.split(',').collect();
        if fields[0] == "42" {
            fields[4] = "";
        }
        gap.push_str(&fields.join(","));
        gap.push('\n');
    }
    let agreement = cluster.agreement(
        &gap,
        &host_description("shop_gap"),
        &vertical_policy(),
        "credit_scoring",
    );
    let guest = data_file("breast_hetero_guest.csv");
    let (success, output) = train(&cluster, &agreement, &guest, &[]);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("failed its checks"), "{message}");
    assert!(
        !message.contains("\"42\""),
        "the guest sees no host row: {message}"
    );

    let host_jobs = jobs(&cluster.provider);
    let failed = host_jobs
        .iter()
        .find(|job| job["kind"] == "vertical")
        .unwrap();
    assert_eq!(failed["state"], "failed");
    let reason = failed["error"].as_str().unwrap();
    assert!(reason.contains("\"42\""), "{reason}");
    assert!(reason.contains("\"x3\""), "{reason}");
    assert_none_running(&cluster);
}

/// Writes `rows` rows of `columns` features (and labels for the guest) from a fixed
/// generator; the label depends on the first feature of each side.
fn wide_csv(rows: usize, columns: usize, labels: bool, salt: u64) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ salt;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
    };
    let mut header = vec!["id".to_owned()];
    if labels {
        header.push("y".into());
    }
    header.extend((0..columns).map(|j| format!("x{j}")));
    let mut csv = header.join(",") + "\n";
    for i in 0..rows {
        let values: Vec<f64> = (0..columns).map(|_| next()).collect();
        let mut fields = vec![i.to_string()];
        if labels {
            fields.push(if values[0] > 0.0 { "1" } else { "0" }.into());
        }
        fields.extend(values.iter().map(|v| format!("{v:.4}")));
        csv.push_str(&(fields.join(",") + "\n"));
    }
    csv
}

#[test]
fn messages_above_four_mib_travel_in_parts() {
    let cluster = Cluster::start_with_names("shop", "bank");
    let (rows, guest_columns, host_columns) = (2_000, 140, 150);
    let mut description = host_description("wide_shop");
    let columns: Vec<Value> = std::iter::once(json!({ "name": "id", "type": "integer",
                                                      "role": "identifier" }))
    .chain((0..host_columns).map(|j| {
        json!({ "name": format!("x{j}"), "type": "float", "role": "attribute",
                    "bounds": { "lower": -10.0, "upper": 10.0 } })
    }))
    .collect();
    description["columns"] = json!(columns);
    let mut policy = vertical_policy();
    let features: Vec<String> = (0..host_columns).map(|j| format!("x{j}")).collect();
    policy["training"]["feature_columns"] = json!(features);
    let agreement = cluster.agreement(
        &wide_csv(rows, host_columns, false, 1),
        &description,
        &policy,
        "credit_scoring",
    );
    let guest = cluster.write("wide_guest.csv", &wide_csv(rows, guest_columns, true, 2));

    let (success, job) = train(&cluster, &agreement, &guest, &["--rounds", "1"]);
    assert!(success, "{job}");
    let result = &job["result"];
    assert_eq!(result["rows"]["train"], rows);
    // Each side's masked features exceed 4 MiB: 2,000 rows of 141 and 150 elements of 16 bytes.
    let traffic = &result["traffic"]["host"];
    assert!(
        traffic["request_bytes"].as_u64().unwrap() > 6 << 20,
        "{traffic}"
    );
    assert!(
        traffic["response_bytes"].as_u64().unwrap() > 6 << 20,
        "{traffic}"
    );
    let host_job = ok(&[
        "job",
        "status",
        "--node",
        &cluster.provider.arg(),
        job["id"].as_str().unwrap(),
    ]);
    assert_eq!(host_job["state"], "succeeded", "{host_job}");
}

/// Sends signed requests to the exchange under one participant's own key.
struct ExchangeCaller {
    runtime: tokio::runtime::Runtime,
    client: PeerClient,
    exchange: Peer,
}

impl ExchangeCaller {
    fn new(cluster: &Cluster, node: &common::NodeProcess) -> Self {
        let identity = NodeIdentity::load(&node.name, node.dir.join("identity.key")).unwrap();
        let exchange_key =
            NodeIdentity::load("exchange", cluster.exchange.dir.join("identity.key"))
                .unwrap()
                .public_key();
        let exchange = Peer::new("exchange", &cluster.exchange.endpoint(), exchange_key).unwrap();
        Self {
            runtime: tokio::runtime::Runtime::new().unwrap(),
            client: PeerClient::new(Arc::new(identity)),
            exchange,
        }
    }

    /// Posts `body` and returns the response, or the status and message of the rejection.
    fn post(&self, path: &str, body: &Value) -> Result<Value, (u16, String)> {
        let outcome = self
            .runtime
            .block_on(self.client.post_json(&self.exchange, path, body));
        match outcome {
            Ok(response) => Ok(response.body),
            Err(PeerError::Rejected {
                status, message, ..
            }) => Err((status.as_u16(), message)),
            Err(other) => panic!("request to {path} failed in transport: {other}"),
        }
    }
}

#[test]
fn dealer_serves_only_the_host_in_order() {
    let cluster = Cluster::start_with_names("shop", "bank");
    let host_csv = std::fs::read_to_string(data_file("breast_hetero_host.csv")).unwrap();
    let agreement = cluster.agreement(
        &host_csv,
        &host_description("breast_shop"),
        &vertical_policy(),
        "credit_scoring",
    );
    let bank = ExchangeCaller::new(&cluster, &cluster.consumer);
    let shop = ExchangeCaller::new(&cluster, &cluster.provider);
    let mut plan = Plan::with_defaults(455, 10, 20);
    plan.epochs = 2;
    let open = |job: &str, agreement: &str, guest: &str, plan: &Plan| {
        json!({ "job": job, "agreement": agreement, "guest": guest, "host": "shop",
                "plan": plan })
    };

    // Opening checks the signer, the agreement and the plan.
    let (status, message) = shop
        .post("/jobs/dealer", &open("d-0", &agreement, "bank", &plan))
        .unwrap_err();
    assert_eq!(status, 403, "{message}");
    let (status, message) = bank
        .post("/jobs/dealer", &open("d-1", "agr-unknown", "bank", &plan))
        .unwrap_err();
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("did not countersign"), "{message}");
    let mut long = plan.clone();
    long.epochs = 21;
    let (status, message) = bank
        .post("/jobs/dealer", &open("d-2", &agreement, "bank", &long))
        .unwrap_err();
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("max_rounds"), "{message}");

    // Only the host receives its seed and corrections, and only in order.
    let opened = bank
        .post("/jobs/dealer", &open("d-3", &agreement, "bank", &plan))
        .unwrap();
    assert!(opened["guest_seed"].is_string());
    let seed = json!({ "plan": plan });
    let (status, _) = bank.post("/jobs/d-3/dealer/seed", &seed).unwrap_err();
    assert_eq!(status, 403);
    let (status, _) = bank
        .post("/jobs/d-3/dealer/corrections", &json!({ "step": 0 }))
        .unwrap_err();
    assert_eq!(status, 403);
    let (status, _) = shop.post("/jobs/d-3/dealer/close", &json!({})).unwrap_err();
    assert_eq!(status, 403);
    let host_seed = shop.post("/jobs/d-3/dealer/seed", &seed).unwrap();
    assert!(host_seed["host_seed"].is_string());
    assert_ne!(host_seed["host_seed"], opened["guest_seed"]);
    assert_eq!(host_seed["serving"], 1);

    // A host run that resumes fetches the seed again; the run it replaced is refused
    // without ending the session.
    let again = shop.post("/jobs/d-3/dealer/seed", &seed).unwrap();
    assert_eq!(again["host_seed"], host_seed["host_seed"]);
    assert_eq!(again["serving"], 2);
    let stale = json!({ "step": 0, "serving": 1 });
    let (status, message) = shop
        .post("/jobs/d-3/dealer/corrections", &stale)
        .unwrap_err();
    assert_eq!(status, 409, "{message}");
    shop.post(
        "/jobs/d-3/dealer/corrections",
        &json!({ "step": 0, "serving": 2 }),
    )
    .unwrap();
    bank.post("/jobs/d-3/dealer/close", &json!({})).unwrap();

    let opened = bank
        .post("/jobs/dealer", &open("d-4", &agreement, "bank", &plan))
        .unwrap();
    assert!(opened["guest_seed"].is_string());
    shop.post("/jobs/d-4/dealer/seed", &seed).unwrap();
    let step = shop
        .post(
            "/jobs/d-4/dealer/corrections",
            &json!({ "step": 0, "serving": 1 }),
        )
        .unwrap();
    assert_eq!(step["step"], 0);
    assert!(!step["corrections"].as_str().unwrap().is_empty());
    let (status, message) = shop
        .post(
            "/jobs/d-4/dealer/corrections",
            &json!({ "step": 5, "serving": 1 }),
        )
        .unwrap_err();
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("step 1 is next"), "{message}");
    let dealer_job = ok(&["job", "status", "--node", &cluster.exchange.arg(), "d-4"]);
    assert_eq!(dealer_job["state"], "failed", "{dealer_job}");

    // The guest closes a session, which records what was served.
    bank.post("/jobs/dealer", &open("d-5", &agreement, "bank", &plan))
        .unwrap();
    let closed = bank.post("/jobs/d-5/dealer/close", &json!({})).unwrap();
    assert_eq!(closed["steps_served"], 0);
    let dealer_job = ok(&["job", "status", "--node", &cluster.exchange.arg(), "d-5"]);
    assert_eq!(dealer_job["state"], "succeeded", "{dealer_job}");

    // The guest opens a running job's session again to resume it: fresh seeds, and the
    // host's first step starts an epoch.
    let first = bank
        .post("/jobs/dealer", &open("d-11", &agreement, "bank", &plan))
        .unwrap();
    shop.post("/jobs/d-11/dealer/seed", &seed).unwrap();
    shop.post(
        "/jobs/d-11/dealer/corrections",
        &json!({ "step": 0, "serving": 1 }),
    )
    .unwrap();
    let reopen = |job: &str, plan: &Plan| {
        let mut request = open(job, &agreement, "bank", plan);
        request["resume"] = json!(true);
        request
    };
    let (status, message) = shop
        .post("/jobs/dealer", &reopen("d-11", &plan))
        .unwrap_err();
    assert_eq!(status, 403, "{message}");
    let (status, message) = bank
        .post("/jobs/dealer", &reopen("d-unknown", &plan))
        .unwrap_err();
    assert_eq!(status, 404, "{message}");
    let mut other = plan.clone();
    other.epochs = 1;
    let (status, message) = bank
        .post("/jobs/dealer", &reopen("d-11", &other))
        .unwrap_err();
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("plan differs"), "{message}");
    let again = bank.post("/jobs/dealer", &reopen("d-11", &plan)).unwrap();
    assert_ne!(again["guest_seed"], first["guest_seed"]);
    let new_seed = shop.post("/jobs/d-11/dealer/seed", &seed).unwrap();
    assert_ne!(new_seed["host_seed"], host_seed["host_seed"]);
    let per_epoch = plan.steps_per_epoch() as u64;
    for step in [per_epoch, per_epoch + 1] {
        let served = shop
            .post(
                "/jobs/d-11/dealer/corrections",
                &json!({ "step": step, "serving": 1 }),
            )
            .unwrap();
        assert_eq!(served["step"], step);
    }
    let closed = bank.post("/jobs/d-11/dealer/close", &json!({})).unwrap();
    assert_eq!(closed["steps_served"], 2);
    let (status, message) = bank
        .post("/jobs/dealer", &reopen("d-11", &plan))
        .unwrap_err();
    assert_eq!(status, 409, "a closed session stays closed: {message}");

    // One guest may have at most four sessions open at once.
    let jobs = ["d-6", "d-7", "d-8", "d-9"];
    for job in jobs {
        bank.post("/jobs/dealer", &open(job, &agreement, "bank", &plan))
            .unwrap();
    }
    let (status, message) = bank
        .post("/jobs/dealer", &open("d-10", &agreement, "bank", &plan))
        .unwrap_err();
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("4 dealer sessions open"), "{message}");
    for job in jobs {
        bank.post(&format!("/jobs/{job}/dealer/close"), &json!({}))
            .unwrap();
    }
    assert_none_running(&cluster);
}

/// Lists the shop's twenty breast features and returns the bank's vertical training
/// agreement on them.
fn breast_agreement(cluster: &Cluster) -> String {
    let host_csv = std::fs::read_to_string(data_file("breast_hetero_host.csv")).unwrap();
    cluster.agreement(
        &host_csv,
        &host_description("breast_shop"),
        &vertical_policy(),
        "credit_scoring",
    )
}

/// Trains on the breast data with the seed0 split and returns the agreement and the
/// finished training job.
fn trained_breast_model(cluster: &Cluster, extra: &[&str]) -> (String, Value) {
    let agreement = breast_agreement(cluster);
    let guest = data_file("breast_hetero_guest.csv");
    let splits = data_file("splits/breast_hetero_splits.csv");
    let mut args = vec!["--split-file", splits.as_str(), "--split", "seed0"];
    args.extend_from_slice(extra);
    let (success, job) = train(cluster, &agreement, &guest, &args);
    assert!(success, "{job}");
    (agreement, job)
}

/// Returns the guest's rows whose ids `keep` accepts, with the header line.
fn guest_rows(keep: impl Fn(&str) -> bool) -> String {
    let text = std::fs::read_to_string(data_file("breast_hetero_guest.csv")).unwrap();
    let mut lines = text.lines();
    let mut csv = format!("{}\n", lines.next().unwrap());
    for line in lines.filter(|line| keep(line.split(',').next().unwrap())) {
        csv.push_str(line);
        csv.push('\n');
    }
    csv
}

/// Returns the ids that column seed0 of the breast split file marks `test`.
fn seed0_test_ids() -> std::collections::HashSet<String> {
    let text = std::fs::read_to_string(data_file("splits/breast_hetero_splits.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[1] == "test").then(|| fields[0].to_owned())
        })
        .collect()
}

fn predict(
    cluster: &Cluster,
    node: &common::NodeProcess,
    model: &str,
    data: &str,
) -> (bool, Value) {
    let output = cluster.root.path().join("predictions.csv");
    carrel(&[
        "predict",
        "--node",
        &node.arg(),
        "--model",
        model,
        "--data",
        data,
        "--output",
        output.to_str().unwrap(),
    ])
}

fn predict_jobs(node: &common::NodeProcess) -> usize {
    jobs(node)
        .iter()
        .filter(|job| job["kind"] == "predict")
        .count()
}

#[test]
fn prediction_reproduces_training_evaluation() {
    let cluster = Cluster::start_with_names("shop", "bank");
    let (agreement, trained) = trained_breast_model(&cluster, &[]);
    let uses = |record: Value| record.pointer("/agreement/queries_used").unwrap().as_u64();
    let before = uses(ok(&[
        "agreement",
        "--node",
        &cluster.provider.arg(),
        &agreement,
    ]));
    let evaluation = &trained["result"]["evaluation"];
    let model = trained["result"]["model"].as_str().unwrap().to_owned();

    // The held-out rows, and one id that the shop does not hold.
    let test_ids = seed0_test_ids();
    let mut csv = guest_rows(|id| test_ids.contains(id));
    let first_row = csv.lines().nth(1).unwrap().to_owned();
    let (_, rest) = first_row.split_once(',').unwrap();
    csv.push_str(&format!("unknown-7,{rest}\n"));
    let data = cluster.write("new_rows.csv", &csv);

    let clock = Instant::now();
    let (success, job) = predict(&cluster, &cluster.consumer, &model, &data);
    assert!(success, "{job}");
    eprintln!(
        "prediction: {:.2} s end to end",
        clock.elapsed().as_secs_f64()
    );
    let result = &job["result"];
    assert_eq!(job["kind"], "predict");
    assert_eq!(result["rows"], 115, "{result}");
    assert_eq!(result["scored"], 114, "{result}");
    assert_eq!(result["missing"], 1, "{result}");
    let after = uses(ok(&[
        "agreement",
        "--node",
        &cluster.provider.arg(),
        &agreement,
    ]));
    assert_eq!(
        after,
        before.map(|n| n + 1),
        "a prediction is one use of the agreement"
    );

    // The scores give the training's evaluation on the held-out rows.
    let output = cluster.root.path().join("predictions.csv");
    assert_eq!(result["output"], output.to_str().unwrap());
    let labels: std::collections::HashMap<String, f64> = csv
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[0].to_owned(), fields[1].parse().unwrap())
        })
        .collect();
    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,logit,probability"));
    let (mut logits, mut truth, mut blank) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        if fields[1].is_empty() {
            assert!(fields[2].is_empty(), "{line}");
            blank.push(fields[0].to_owned());
            continue;
        }
        let logit: f64 = fields[1].parse().unwrap();
        let probability: f64 = fields[2].parse().unwrap();
        assert!(
            (probability - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-12,
            "{line}"
        );
        logits.push(logit);
        truth.push(labels[fields[0]]);
    }
    assert_eq!(blank, vec!["unknown-7".to_owned()]);
    let scored = carrel_learn::metrics::Evaluation::from_logits(&logits, &truth).unwrap();
    for metric in ["auc", "log_loss", "accuracy", "ks"] {
        let reported = evaluation[metric].as_f64().unwrap();
        let value = serde_json::to_value(&scored).unwrap()[metric]
            .as_f64()
            .unwrap();
        assert!(
            (value - reported).abs() < 1e-9,
            "{metric}: {value} from the predictions, {reported} from training"
        );
    }

    // Both parties record the job with the same hashes and no values.
    let id = job["id"].as_str().unwrap();
    let host_job = ok(&["job", "status", "--node", &cluster.provider.arg(), id]);
    assert_eq!(host_job["state"], "succeeded", "{host_job}");
    assert_eq!(host_job["role"], "host");
    assert_eq!(host_job["result"]["missing"], 1, "{host_job}");
    assert_eq!(host_job["transcript_sha256"], job["transcript_sha256"]);
    for node in [&cluster.consumer, &cluster.provider] {
        let started = audit_log_events(&node.dir, "job.started");
        assert!(
            started
                .iter()
                .any(|e| e["detail"]["job"] == id && e["detail"]["kind"] == "predict"),
            "{}: no job.started for {id}",
            node.name
        );
        let completed = audit_log_events(&node.dir, "predict.completed");
        let entry = completed
            .iter()
            .find(|e| e["detail"]["job"] == id)
            .unwrap_or_else(|| panic!("{}: no predict.completed for {id}", node.name));
        let detail = &entry["detail"]["result"];
        assert_eq!(detail["model"], model.as_str());
        assert_eq!(detail["ids_sha256"], result["ids_sha256"]);
        assert_eq!(detail["host_logits_sha256"], result["host_logits_sha256"]);
        assert!(detail.get("logits").is_none());
        assert!(!entry.to_string().contains(&logits[0].to_string()));
    }
    assert_none_running(&cluster);
}

/// Sends signed requests to one node under another participant's own key.
fn post_as(
    caller: &common::NodeProcess,
    target: &common::NodeProcess,
    path: &str,
    body: &Value,
) -> Result<Value, (u16, String)> {
    let identity = NodeIdentity::load(&caller.name, caller.dir.join("identity.key")).unwrap();
    let target_key = NodeIdentity::load(&target.name, target.dir.join("identity.key"))
        .unwrap()
        .public_key();
    let peer = Peer::new(&target.name, &target.endpoint(), target_key).unwrap();
    let client = PeerClient::new(Arc::new(identity));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match runtime.block_on(client.post_json(&peer, path, body)) {
        Ok(response) => Ok(response.body),
        Err(PeerError::Rejected {
            status, message, ..
        }) => Err((status.as_u16(), message)),
        Err(other) => panic!("request to {path} failed in transport: {other}"),
    }
}

#[test]
fn prediction_rejections_change_nothing() {
    let cluster = Cluster::start_with_names("shop", "bank");
    let (agreement, trained) = trained_breast_model(&cluster, &["--rounds", "2"]);
    let model = trained["result"]["model"].as_str().unwrap().to_owned();
    let test_ids = seed0_test_ids();
    let new_rows = cluster.write("new_rows.csv", &guest_rows(|id| test_ids.contains(id)));
    let rejected = |node: &common::NodeProcess| audit_log_events(&node.dir, "predict.rejected");

    // An unknown model.
    let (success, output) = predict(&cluster, &cluster.consumer, "model-unknown", &new_rows);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"model-unknown\" not found"), "{message}");

    // The host's part: predictions are asked by the guest.
    let (success, output) = predict(&cluster, &cluster.provider, &model, &new_rows);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("as the host"), "{message}");

    // All 569 rows, above the agreement's max_prediction_rows of 200.
    let all_rows = data_file("breast_hetero_guest.csv");
    let (success, output) = predict(&cluster, &cluster.consumer, &model, &all_rows);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_prediction_rows of 200"), "{message}");
    assert_eq!(rejected(&cluster.consumer).len(), 2);
    assert_eq!(rejected(&cluster.provider).len(), 1);

    // Another participant, signing with its own key, is not the operator.
    let other = cluster.add_provider("other");
    let ids: Vec<&String> = test_ids.iter().take(5).collect();
    let request = json!({ "job": "p-1", "model": model, "agreement": agreement, "ids": ids });
    let (status, message) =
        post_as(&other, &cluster.provider, "/jobs/predict", &request).unwrap_err();
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("\"other\" is not the operator"),
        "{message}"
    );
    assert_eq!(rejected(&cluster.provider).len(), 2);
    let used = ok(&["agreement", "--node", &cluster.provider.arg(), &agreement]);

    // A revoked agreement.
    ok(&["revoke", "--node", &cluster.consumer.arg(), &agreement]);
    let (success, output) = predict(&cluster, &cluster.consumer, &model, &new_rows);
    assert!(!success, "{output}");
    let message = output["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("revoked"), "{message}");
    let (status, message) = post_as(
        &cluster.consumer,
        &cluster.provider,
        "/jobs/predict",
        &request,
    )
    .unwrap_err();
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("revoked"), "{message}");

    // No prediction job started, no use was counted and no output was written.
    for node in [&cluster.consumer, &cluster.provider] {
        assert_eq!(predict_jobs(node), 0, "{}", node.name);
    }
    assert!(!cluster.root.path().join("predictions.csv").exists());
    let after = ok(&["agreement", "--node", &cluster.provider.arg(), &agreement]);
    let count = |record: &Value| record.pointer("/agreement/queries_used").cloned();
    assert!(count(&used).is_some_and(|n| n.is_u64()), "{used}");
    assert_eq!(count(&after), count(&used), "{after}");
    assert_none_running(&cluster);
}

#[test]
fn killed_party_resumes_training() {
    let mut cluster = Cluster::start_with_names("shop", "bank");
    let agreement = breast_agreement(&cluster);
    let guest = data_file("breast_hetero_guest.csv");
    let splits = data_file("splits/breast_hetero_splits.csv");
    // Twelve epochs without early stopping, so that every run has epochs to interrupt.
    let extra = [
        "--split-file",
        splits.as_str(),
        "--split",
        "seed0",
        "--rounds",
        "12",
        "--patience",
        "100",
    ];
    let (success, reference) = train(&cluster, &agreement, &guest, &extra);
    assert!(success, "{reference}");
    assert_eq!(reference["result"]["resumes"], 0);
    let auc = reference["result"]["evaluation"]["auc"].as_f64().unwrap();

    // The exchange restarts on its port, which the other nodes have pinned.
    let config = cluster.exchange.dir.join("node.json");
    let mut settings: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let endpoint = cluster.exchange.endpoint();
    settings["listen"] = json!(endpoint.trim_start_matches("https://"));
    std::fs::write(&config, settings.to_string()).unwrap();

    // The guest is also stopped cleanly once: a job that fails only because its process
    // stops stays running, and the next start resumes it.
    for victim in ["host", "guest", "exchange", "stopped guest"] {
        let node = cluster.consumer.arg();
        let mut args = vec![
            "--json",
            "train",
            "--node",
            &node,
            "--kind",
            "vertical",
            "--agreement",
            &agreement,
            "--data",
            &guest,
        ];
        args.extend_from_slice(&extra);
        let mut command = Command::new(common::carrel_exe())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let job = wait_for_phase(&cluster.consumer, "epoch ", 3);
        match victim {
            "host" => cluster.provider.kill(),
            "guest" => cluster.consumer.kill(),
            "exchange" => cluster.exchange.kill(),
            _ => cluster.consumer.stop(),
        }
        match victim {
            "host" => cluster.provider.start_again(),
            "exchange" => cluster.exchange.start_again(),
            _ => cluster.consumer.start_again(),
        }
        let _ = command.wait();

        let done = wait_for_end(&cluster.consumer, &job);
        assert_eq!(done["state"], "succeeded", "{victim}: {done}");
        let result = &done["result"];
        assert!(result["resumes"].as_u64() >= Some(1), "{result}");
        assert_eq!(result["epochs"], 12, "{result}");
        assert_eq!(result["losses"].as_array().unwrap().len(), 12, "{result}");
        let again = result["evaluation"]["auc"].as_f64().unwrap();
        assert_eq!(
            format!("{auc:.4}"),
            format!("{again:.4}"),
            "{victim}: the AUC differs from the uninterrupted run"
        );
        let host_job = ok(&["job", "status", "--node", &cluster.provider.arg(), &job]);
        assert_eq!(host_job["state"], "succeeded", "{host_job}");
        assert_eq!(host_job["transcript_sha256"], done["transcript_sha256"]);
        let dealer_job = ok(&["job", "status", "--node", &cluster.exchange.arg(), &job]);
        assert_eq!(dealer_job["state"], "succeeded", "{dealer_job}");
        for node in [&cluster.consumer, &cluster.provider] {
            let resumed: Vec<Value> = audit_log_events(&node.dir, "vertical.resumed")
                .into_iter()
                .filter(|e| e["detail"]["job"] == job.as_str())
                .collect();
            assert!(
                !resumed.is_empty(),
                "{}: no vertical.resumed for {job}",
                node.name
            );
            // The training was killed after epoch 3, so it continues from epoch 3 or later.
            let epoch = resumed[0]["detail"]["epoch"].as_u64().unwrap();
            assert!(
                (3..12).contains(&epoch),
                "{}: resumed at {epoch}",
                node.name
            );
            eprintln!(
                "{victim}: {} resumed at epoch {epoch}, AUC {again:.4}",
                node.name
            );
        }
    }
    assert_none_running(&cluster);
}
