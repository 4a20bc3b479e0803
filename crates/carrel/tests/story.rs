//! The whole story across three real node processes: register, publish, negotiate,
//! query with differential privacy, reject, and verify every audit log.

mod common;

use common::{Cluster, fails, ok, regions_csv, regions_description, regions_policy};
use serde_json::Value;

fn released_regions(response: &Value) -> Vec<String> {
    response["release"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap().to_owned())
        .collect()
}

fn audit_kinds(dir: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("node.db")).unwrap();
    let mut statement = conn
        .prepare("SELECT entry FROM audit_entries ORDER BY idx")
        .unwrap();
    statement
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|entry| {
            let event: Value = serde_json::from_slice(&entry.unwrap()).unwrap();
            event["kind"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn story_runs_end_to_end() {
    let cluster = Cluster::start();
    let agreement = cluster.agreement(
        &regions_csv(),
        &regions_description(),
        &regions_policy(10.0, 3600),
        "research",
    );

    // The agreement carries three valid signatures on the consumer's node.
    let shown = ok(&["agreement", "--node", &cluster.consumer.arg(), &agreement]);
    assert_eq!(shown["verification"].as_array().unwrap().len(), 3);

    // Only the large group is released.
    let (success, response) = cluster.query(
        &agreement,
        "SELECT region, COUNT(*) FROM regions GROUP BY region",
        Some(1.0),
    );
    assert!(success, "{response}");
    assert_eq!(released_regions(&response), ["north"]);
    assert_eq!(response["epsilon_spent"].as_f64(), Some(1.0));
    assert!(response["budget"]["epsilon_left"].as_f64().unwrap() < 9.0 + 1e-9);

    // A too-small filtered group releases nothing but is charged.
    let (success, response) = cluster.query(
        &agreement,
        "SELECT COUNT(*) FROM regions WHERE region = 'south'",
        Some(0.5),
    );
    assert!(success, "{response}");
    assert!(response["release"]["rows"].as_array().unwrap().is_empty());
    assert_eq!(response["epsilon_spent"].as_f64(), Some(0.5));

    // Plan rejections cost nothing.
    for sql in [
        "SELECT DISTINCT region FROM regions",
        "SELECT age, COUNT(*) FROM regions GROUP BY age",
        "SELECT COUNT(*) FROM regions WHERE id = 4",
        "SELECT id, spend FROM regions",
        "SELECT COUNT(*) FROM regions WHERE nowhere = 1",
        "SELEC COUNT(*) FROM regions",
        "SELECT COUNT(*) FROM regions WHERE region > 5",
        "SELECT COUNT(*) FROM regions WHERE region = 'north' OR CAST(region AS INT) = 1",
    ] {
        let (success, response) = cluster.query(&agreement, sql, Some(0.5));
        assert!(!success, "{sql} was answered: {response}");
    }
    let (_, response) = cluster.query(&agreement, "SELECT COUNT(*) FROM regions", Some(0.5));
    assert!(
        (response["budget"]["epsilon_spent"].as_f64().unwrap() - 2.0).abs() < 1e-9,
        "{response}"
    );

    // Every node's log verifies, and records the decisions.
    for node in [&cluster.exchange, &cluster.provider, &cluster.consumer] {
        let report = ok(&["audit", "verify", &node.arg()]);
        assert!(report["tree_size"].as_u64().unwrap() > 0, "{report}");
        let proof = ok(&["audit", "prove", &node.arg(), "0"]);
        assert_eq!(proof["index"], 0);
    }
    let provider = audit_kinds(&cluster.provider.dir);
    assert_eq!(
        provider.iter().filter(|k| *k == "query.released").count(),
        3
    );
    assert_eq!(
        provider.iter().filter(|k| *k == "query.rejected").count(),
        8
    );
    assert!(provider.contains(&"negotiation.finalized".to_owned()));
    let exchange = audit_kinds(&cluster.exchange.dir);
    assert!(exchange.contains(&"listing.listed".to_owned()));
    assert!(exchange.contains(&"agreement.countersigned".to_owned()));
    let consumer = audit_kinds(&cluster.consumer.dir);
    assert_eq!(
        consumer.iter().filter(|k| *k == "query.received").count(),
        3
    );
}

#[test]
fn revoked_agreement_rejects_every_query() {
    let cluster = Cluster::start();
    let agreement = cluster.agreement(
        &regions_csv(),
        &regions_description(),
        &regions_policy(10.0, 3600),
        "research",
    );
    ok(&[
        "revoke",
        "--node",
        &cluster.consumer.arg(),
        &agreement,
        "--reason",
        "study ended",
    ]);
    let (success, response) = cluster.query(&agreement, "SELECT COUNT(*) FROM regions", None);
    assert!(!success);
    assert!(response.to_string().contains("revoked"), "{response}");
}

#[test]
fn negotiation_with_wrong_purpose_is_terminated() {
    let cluster = Cluster::start();
    let file = cluster.write("regions.csv", &regions_csv());
    let description = cluster.write("d.json", &regions_description().to_string());
    let policy = cluster.write("p.json", &regions_policy(1.0, 3600).to_string());
    let provider = cluster.provider.arg();
    ok(&[
        "register",
        "--node",
        &provider,
        &file,
        "--description",
        &description,
    ]);
    let listed = ok(&[
        "publish",
        "--node",
        &provider,
        "--dataset",
        "regions",
        "--title",
        "t",
        "--policy",
        &policy,
    ]);
    let offer = listed["odrl:hasPolicy"][0]["@id"].as_str().unwrap();
    let message = fails(&[
        "negotiate",
        "--node",
        &cluster.consumer.arg(),
        "--offer",
        offer,
        "--purpose",
        "marketing",
    ]);
    assert!(message.contains("marketing"), "{message}");
    let provider_log = audit_kinds(&cluster.provider.dir);
    assert!(provider_log.contains(&"negotiation.request.rejected".to_owned()));
}

#[test]
fn listing_without_privacy_unit_is_rejected_with_reasons() {
    let cluster = Cluster::start();
    let mut description = regions_description();
    description["privacy_unit"] = Value::Null;
    let file = cluster.write("regions.csv", &regions_csv());
    let description = cluster.write("d.json", &description.to_string());
    let mut policy = regions_policy(1.0, 3600);
    policy["purposes"] = serde_json::json!([]);
    let policy = cluster.write("p.json", &policy.to_string());
    let provider = cluster.provider.arg();
    ok(&[
        "register",
        "--node",
        &provider,
        &file,
        "--description",
        &description,
    ]);
    let message = fails(&[
        "publish",
        "--node",
        &provider,
        "--dataset",
        "regions",
        "--title",
        "t",
        "--policy",
        &policy,
    ]);
    assert!(message.contains("missing_privacy_unit"), "{message}");
    assert!(message.contains("missing_purposes"), "{message}");
    let catalog = ok(&["catalog", "--node", &cluster.consumer.arg()]);
    assert!(catalog["dcat:dataset"].as_array().unwrap().is_empty());
}

#[test]
fn malformed_csv_is_rejected_with_its_row() {
    let cluster = Cluster::start();
    let file = cluster.write(
        "bad.csv",
        "id,region,age,spend\n1,north,30,2.5\n2,south,40\n",
    );
    let description = cluster.write("d.json", &regions_description().to_string());
    let message = fails(&[
        "register",
        "--node",
        &cluster.provider.arg(),
        &file,
        "--description",
        &description,
    ]);
    assert!(message.contains('3') || message.contains('2'), "{message}");
}

#[test]
fn audit_verify_detects_a_changed_entry() {
    let mut cluster = Cluster::start();
    cluster.agreement(
        &regions_csv(),
        &regions_description(),
        &regions_policy(10.0, 3600),
        "research",
    );
    cluster.provider.stop();
    let provider = cluster.provider.arg();
    ok(&["audit", "verify", &provider]);

    let conn = rusqlite::Connection::open(cluster.provider.dir.join("node.db")).unwrap();
    let entry: Vec<u8> = conn
        .query_row("SELECT entry FROM audit_entries WHERE idx = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let forged = String::from_utf8(entry)
        .unwrap()
        .replace("\"accepted\":true", "\"accepted\":false");
    conn.execute(
        "UPDATE audit_entries SET entry = ?1 WHERE idx = 1",
        [forged.as_bytes()],
    )
    .unwrap();
    drop(conn);

    let message = fails(&["audit", "verify", &provider]);
    assert!(message.contains("failed verification"), "{message}");
}
