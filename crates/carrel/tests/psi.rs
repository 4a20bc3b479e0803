//! Private set intersection between real consumer and provider node processes.

mod common;

use common::{Cluster, carrel, ok};
use serde_json::{Value, json};

fn customers_description(name: &str) -> Value {
    json!({
        "name": name,
        "title": "Customers",
        "columns": [
            { "name": "id", "type": "text", "role": "identifier" },
            { "name": "spend", "type": "float", "role": "sensitive", "bounds": { "lower": 0, "upper": 1000 } }
        ],
        "privacy_unit": "id",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": "provider", "processors": ["provider"], "operators": ["provider"] }
    })
}

fn psi_policy(consumer_learns: &str, provider_learns: &str, max_set: u64, runs: u64) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    json!({
        "action": "private_set_intersection",
        "purposes": ["marketing"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap(),
        "valid_until": (now + time::Duration::hours(1)).format(format).unwrap(),
        "max_queries": runs,
        "budget": { "epsilon": 1.0, "delta": 1e-6 },
        "query_epsilon": 0.1,
        "query_delta": 1e-9,
        "min_group_size": 10,
        "max_rows_per_unit": 1,
        "columns": {},
        "price_per_query": { "amount_minor": 500, "currency": "USD" },
        "usage_regions": ["US"],
        "psi": { "consumer_learns": consumer_learns, "provider_learns": provider_learns,
                 "id_column": "id", "max_set_size": max_set }
    })
}

fn customers_csv(ids: &[&str]) -> String {
    let mut csv = String::from("id,spend\n");
    for (i, id) in ids.iter().enumerate() {
        csv.push_str(&format!("{id},{}.5\n", i * 10));
    }
    csv
}

fn psi(cluster: &Cluster, agreement: &str, ids_file: &str) -> (bool, Value) {
    carrel(&[
        "psi",
        "--node",
        &cluster.consumer.arg(),
        "--agreement",
        agreement,
        "--ids",
        ids_file,
    ])
}

fn completed_events(dir: &std::path::Path) -> Vec<Value> {
    let conn = rusqlite::Connection::open(dir.join("node.db")).unwrap();
    let mut statement = conn
        .prepare("SELECT entry FROM audit_entries ORDER BY idx")
        .unwrap();
    statement
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|entry| serde_json::from_slice::<Value>(&entry.unwrap()).unwrap())
        .filter(|event| event["kind"] == "psi.completed")
        .collect()
}

fn members(result: &Value) -> String {
    std::fs::read_to_string(result["members_file"].as_str().unwrap()).unwrap()
}

#[test]
fn both_sides_learn_one_member_and_log_the_same_transcript() {
    let cluster = Cluster::start();
    let agreement = cluster.agreement(
        &customers_csv(&["u1", "u1", "u1", "u4"]),
        &customers_description("customers"),
        &psi_policy("intersection", "intersection", 100, 5),
        "marketing",
    );
    let ids = cluster.write("mine.csv", "id\nu1\nu1\nu2\nu3\n");
    let (success, job) = psi(&cluster, &agreement, &ids);
    assert!(success, "{job}");
    let result = &job["result"];
    assert_eq!(result["size"], 1);
    assert_eq!(result["duplicates"], 1);
    assert_eq!(members(result), "id\nu1\n");

    let id = job["id"].as_str().unwrap();
    let theirs = ok(&["job", "status", "--node", &cluster.provider.arg(), id]);
    assert_eq!(theirs["state"], "succeeded");
    assert_eq!(theirs["result"]["size"], 1);
    assert_eq!(theirs["result"]["duplicates"], 2);
    assert_eq!(members(&theirs["result"]), "id\nu1\n");

    let mine = completed_events(&cluster.consumer.dir);
    let provider = completed_events(&cluster.provider.dir);
    assert_eq!(mine.len(), 1);
    assert_eq!(provider.len(), 1);
    let hash = &mine[0]["detail"]["transcript_sha256"];
    assert_eq!(hash.as_str().map(str::len), Some(64));
    assert_eq!(hash, &provider[0]["detail"]["transcript_sha256"]);
}

#[test]
fn empty_and_disjoint_sets_succeed_with_size_zero() {
    let cluster = Cluster::start();
    let agreement = cluster.agreement(
        &customers_csv(&["c"]),
        &customers_description("customers"),
        &psi_policy("intersection", "intersection", 100, 5),
        "marketing",
    );
    for (name, contents) in [("header.csv", "id\n"), ("other.csv", "id\na\nb\n")] {
        let ids = cluster.write(name, contents);
        let (success, job) = psi(&cluster, &agreement, &ids);
        assert!(success, "{job}");
        assert_eq!(job["result"]["size"], 0, "{name}");
        assert_eq!(members(&job["result"]), "id\n");
    }
    let logged = completed_events(&cluster.provider.dir);
    assert_eq!(logged.len(), 2);
    assert!(logged.iter().all(|e| e["detail"]["result"]["size"] == 0));
}

#[test]
fn size_only_terms_reveal_no_members() {
    let cluster = Cluster::start();
    let agreement = cluster.agreement(
        &customers_csv(&["1001", "1002", "1003"]),
        &customers_description("customers"),
        &psi_policy("size", "nothing", 100, 5),
        "marketing",
    );
    let ids = cluster.write("mine.csv", "\u{feff}id\r\n1001\r\n1002 \r\n\r\n");
    let (success, job) = psi(&cluster, &agreement, &ids);
    assert!(success, "{job}");
    assert_eq!(job["result"]["size"], 2);
    assert!(job["result"].get("members_file").is_none());

    let theirs = ok(&[
        "job",
        "status",
        "--node",
        &cluster.provider.arg(),
        job["id"].as_str().unwrap(),
    ]);
    assert_eq!(theirs["result"]["learned"], "nothing");
    assert!(theirs["result"].get("size").is_none());
}

#[test]
fn set_size_and_run_limits_are_enforced() {
    let cluster = Cluster::start();
    let agreement = cluster.agreement(
        &customers_csv(&["a", "b"]),
        &customers_description("customers"),
        &psi_policy("intersection", "nothing", 2, 1),
        "marketing",
    );
    let large = cluster.write("large.csv", "id\na\nb\nc\n");
    let (success, failed) = psi(&cluster, &agreement, &large);
    assert!(!success);
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2"),
        "{failed}"
    );

    let small = cluster.write("small.csv", "id\na\nz\n");
    let (success, job) = psi(&cluster, &agreement, &small);
    assert!(success, "{job}");
    assert_eq!(job["result"]["size"], 1);

    let (success, failed) = psi(&cluster, &agreement, &small);
    assert!(!success);
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("allows 1 queries"), "{message}");

    let jobs = ok(&["job", "status", "--node", &cluster.consumer.arg()]);
    let states: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "failed").count(),
        2,
        "{jobs}"
    );
}
