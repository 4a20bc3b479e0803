//! Guards that must hold between real node processes: concurrent budget charges,
//! replayed and altered requests, and the end of an agreement's validity.

mod common;

use std::sync::Arc;

use carrel_net::signing::SignedRequest;
use carrel_net::{NodeIdentity, Peer, PeerClient, PeerError};
use common::{Cluster, regions_csv, regions_description, regions_policy};
use http::Method;

fn releases(cluster: &Cluster) -> i64 {
    let conn = rusqlite::Connection::open(cluster.provider.dir.join("node.db")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM releases", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn concurrent_queries_never_overspend() {
    let cluster = Arc::new(Cluster::start());
    let agreement = cluster.agreement(
        &regions_csv(),
        &regions_description(),
        &regions_policy(1.0, 3600),
        "research",
    );
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let cluster = cluster.clone();
            let agreement = agreement.clone();
            std::thread::spawn(move || {
                cluster.query(
                    &agreement,
                    "SELECT region, COUNT(*) FROM regions GROUP BY region",
                    Some(0.2),
                )
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let succeeded = outcomes.iter().filter(|(success, _)| *success).count();
    assert_eq!(succeeded, 5, "{outcomes:?}");
    for (success, response) in &outcomes {
        if !success {
            assert!(
                response.to_string().contains("budget") || response.to_string().contains("left"),
                "{response}"
            );
        }
    }
    assert_eq!(releases(&cluster), 5);
}

fn consumer_identity(cluster: &Cluster) -> Arc<NodeIdentity> {
    Arc::new(NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap())
}

fn provider_peer(cluster: &Cluster) -> Peer {
    let provider =
        NodeIdentity::load("provider", cluster.provider.dir.join("identity.key")).unwrap();
    Peer::new(
        "provider",
        &cluster.provider.endpoint(),
        provider.public_key(),
    )
    .unwrap()
}

fn rejected(outcome: Result<carrel_net::PeerResponse, PeerError>) -> String {
    match outcome {
        Err(PeerError::Rejected { status, code, .. }) => {
            assert!(status.is_client_error(), "status {status}");
            code
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn replayed_and_altered_requests_are_rejected() {
    let mut cluster = Cluster::start();
    let agreement = cluster.agreement(
        &regions_csv(),
        &regions_description(),
        &regions_policy(10.0, 3600),
        "research",
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = PeerClient::new(consumer_identity(&cluster));
    let body = serde_json::json!({ "agreement": agreement, "sql": "SELECT COUNT(*) FROM regions", "epsilon": 0.2 });
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let sign = |time: u64| {
        let mut request = SignedRequest::sign(
            &NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap(),
            "provider",
            Method::POST,
            "/queries",
            body.to_string().into_bytes(),
            time,
        )
        .unwrap();
        request.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        request
    };

    let original = sign(now);
    let peer = provider_peer(&cluster);
    runtime
        .block_on(client.send(&peer, &original))
        .expect("first use is answered");
    assert_eq!(releases(&cluster), 1);

    assert_eq!(
        rejected(runtime.block_on(client.send(&peer, &original))),
        "replayed_request"
    );

    let mut rewritten = sign(now);
    rewritten
        .headers
        .insert("carrel-time", http::HeaderValue::from(now - 10));
    assert_eq!(
        rejected(runtime.block_on(client.send(&peer, &rewritten))),
        "bad_signature"
    );

    let late = sign(now - 360);
    assert_eq!(
        rejected(runtime.block_on(client.send(&peer, &late))),
        "request_time_outside_window"
    );

    let mut altered = sign(now);
    altered.body = body.to_string().replace("0.2", "0.1").into_bytes();
    assert_eq!(
        rejected(runtime.block_on(client.send(&peer, &altered))),
        "bad_signature"
    );

    let mut moved = sign(now);
    moved.path_and_query = "/negotiations/request".into();
    assert_eq!(
        rejected(runtime.block_on(client.send(&peer, &moved))),
        "bad_signature"
    );

    cluster.provider.restart();
    let peer = provider_peer(&cluster);
    assert_eq!(
        rejected(runtime.block_on(client.send(&peer, &original))),
        "replayed_request"
    );
    assert_eq!(
        releases(&cluster),
        1,
        "a rejected request charged the budget"
    );
}

#[test]
fn agreement_is_rejected_after_validity_ends() {
    let cluster = Cluster::start();
    let valid_secs = 8;
    let policy = regions_policy(10.0, valid_secs);
    let valid_until = time::OffsetDateTime::parse(
        policy["valid_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let agreement = cluster.agreement(&regions_csv(), &regions_description(), &policy, "research");
    let (success, response) = cluster.query(&agreement, "SELECT COUNT(*) FROM regions", None);
    assert!(success, "{response}");

    // Wait until one second after the end of validity: the deadline is fixed, so
    // the wait cannot race the check.
    let after = valid_until + time::Duration::seconds(1);
    let wait = after - time::OffsetDateTime::now_utc();
    if wait.is_positive() {
        std::thread::sleep(wait.unsigned_abs());
    }
    let (success, response) = cluster.query(&agreement, "SELECT COUNT(*) FROM regions", None);
    assert!(!success);
    assert!(response.to_string().contains("expired"), "{response}");
    assert_eq!(releases(&cluster), 1);
}

fn exchange_peer(cluster: &Cluster) -> Peer {
    let exchange =
        NodeIdentity::load("exchange", cluster.exchange.dir.join("identity.key")).unwrap();
    Peer::new(
        "exchange",
        &cluster.exchange.endpoint(),
        exchange.public_key(),
    )
    .unwrap()
}

#[test]
fn exchange_name_cannot_be_registered() {
    let cluster = Cluster::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let impostor = Arc::new(NodeIdentity::generate("exchange").unwrap());
    let entry = serde_json::json!({
        "name": "exchange", "role": "consumer",
        "public_key": impostor.public_key().to_string(), "endpoint": "https://127.0.0.1:9"
    });
    let outcome = runtime.block_on(PeerClient::new(impostor).post_json(
        &exchange_peer(&cluster),
        "/participants",
        &entry,
    ));
    assert_eq!(rejected(outcome), "forbidden");

    // The operator's own view of the exchange still works.
    common::ok(&["catalog", "--node", &cluster.consumer.arg()]);
}

#[test]
fn consumer_cannot_obtain_a_countersignature() {
    let cluster = Cluster::start();
    let agreement = cluster.agreement(
        &regions_csv(),
        &regions_description(),
        &regions_policy(10.0, 3600),
        "research",
    );
    let shown = common::ok(&["agreement", "--node", &cluster.consumer.arg(), &agreement]);
    let mut signed = shown["agreement"]["signed"].clone();
    signed["agreement"]["assigner"] = "consumer".into();
    signed["agreement"]["@id"] = "agr-forged".into();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = PeerClient::new(consumer_identity(&cluster));
    let outcome = runtime.block_on(client.post_json(
        &exchange_peer(&cluster),
        "/agreements/countersign",
        &signed,
    ));
    assert_eq!(rejected(outcome), "forbidden");
}

#[test]
fn new_agreement_does_not_renew_the_budget() {
    let cluster = Cluster::start();
    let first = cluster.agreement(
        &regions_csv(),
        &regions_description(),
        &regions_policy(1.0, 3600),
        "research",
    );
    let (success, response) = cluster.query(&first, "SELECT COUNT(*) FROM regions", Some(1.0));
    assert!(success, "{response}");

    let catalog = common::ok(&["catalog", "--node", &cluster.consumer.arg()]);
    let offer = catalog["dcat:dataset"][0]["odrl:hasPolicy"][0]["@id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = common::ok(&[
        "negotiate",
        "--node",
        &cluster.consumer.arg(),
        "--offer",
        &offer,
        "--purpose",
        "research",
    ]);
    let second = second["agreement"]["@id"].as_str().unwrap().to_owned();
    let (success, response) = cluster.query(&second, "SELECT COUNT(*) FROM regions", Some(0.2));
    assert!(
        !success,
        "a second agreement renewed the budget: {response}"
    );
    assert!(response.to_string().contains("left"), "{response}");
    assert_eq!(releases(&cluster), 1);
}

#[test]
fn non_finite_epsilon_is_rejected_locally() {
    for epsilon in ["NaN", "inf", "-1", "0", "abc"] {
        let (success, value) = common::carrel(&[
            "query",
            "--node",
            "/nonexistent",
            "--agreement",
            "a",
            "--epsilon",
            epsilon,
            "SELECT 1",
        ]);
        assert!(!success, "{epsilon}");
        assert!(value.to_string().contains("epsilon"), "{value}");
    }
}
