//! Private join-and-compute between real consumer and provider node processes.

mod common;

use common::{Cluster, carrel, ok};
use serde_json::{Value, json};

fn claims_description() -> Value {
    json!({
        "name": "claims",
        "title": "Claims",
        "columns": [
            { "name": "patient", "type": "text", "role": "identifier" },
            { "name": "amount", "type": "float", "role": "sensitive", "bounds": { "lower": 0, "upper": 1000 } }
        ],
        "privacy_unit": "patient",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": "provider", "processors": ["provider"], "operators": ["provider"] }
    })
}

fn join_policy(epsilon: f64) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    json!({
        "action": "private_join",
        "purposes": ["billing"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap(),
        "valid_until": (now + time::Duration::hours(1)).format(format).unwrap(),
        "max_queries": 5,
        "budget": { "epsilon": epsilon * 3.0, "delta": 1e-6 },
        "query_epsilon": epsilon,
        "query_delta": 1e-9,
        "min_group_size": 5,
        "max_rows_per_unit": 2,
        "columns": {},
        "price_per_query": { "amount_minor": 100, "currency": "USD" },
        "usage_regions": ["US"],
        "join": { "id_column": "patient", "value_column": "amount",
                  "value_lower": 0.0, "value_upper": 100.0, "max_set_size": 1000 }
    })
}

#[test]
fn hospital_learns_noisy_claim_sums_per_ward_and_small_wards_stay_hidden() {
    let cluster = Cluster::start();
    // The insurer holds claims for patients p0..p199, two claims each for even patients.
    let mut claims = String::from("patient,amount\n");
    for p in 0..200 {
        claims.push_str(&format!("p{p},{}.5\n", p % 50));
        if p % 2 == 0 {
            claims.push_str(&format!("p{p},10\n"));
        }
    }
    let agreement = cluster.agreement(
        &claims,
        &claims_description(),
        &join_policy(300.0),
        "billing",
    );

    // The hospital's patients p100..p299 in two wards and p150 alone in a third.
    let mut ids = String::from("patient,ward\n");
    for p in 100..300 {
        let ward = if p == 150 {
            "isolation"
        } else if p % 2 == 0 {
            "east"
        } else {
            "west"
        };
        ids.push_str(&format!("p{p},{ward}\n"));
    }
    let file = cluster.write("patients.csv", &ids);
    let consumer = cluster.consumer.arg();
    let (success, job) = carrel(&[
        "join",
        "--node",
        &consumer,
        "--agreement",
        &agreement,
        "--ids",
        &file,
        "--group-column",
        "ward",
    ]);
    assert!(success, "{job}");
    let groups = &job["result"]["groups"];

    // Matched: p100..p199. East: even, 50 persons with 2 rows each, minus p150 (isolation).
    let plain = |parity: u64| {
        let members: Vec<u64> = (100..200)
            .filter(|p| p % 2 == parity && *p != 150)
            .collect();
        let rows: u64 = members.iter().map(|p| if p % 2 == 0 { 2 } else { 1 }).sum();
        let sum: f64 = members
            .iter()
            .map(|p| (p % 50) as f64 + 0.5 + if p % 2 == 0 { 10.0 } else { 0.0 })
            .sum();
        (members.len() as i64, rows as i64, sum)
    };
    // Epsilon 300 gives the sum a third, 100; two rows of at most 100 per person make
    // the noise scale 2, so 40 is 20 scales: a miss has probability about 2e-9.
    for (ward, parity) in [("east", 0), ("west", 1)] {
        let (persons, rows, sum) = plain(parity);
        let got = &groups[ward];
        assert!(
            (got["persons"].as_i64().unwrap() - persons).abs() <= 1,
            "{ward}: {got}"
        );
        assert!(
            (got["rows"].as_i64().unwrap() - rows).abs() <= 1,
            "{ward}: {got}"
        );
        assert!(
            (got["sum"].as_f64().unwrap() - sum).abs() <= 40.0,
            "{ward}: {got} vs {sum}"
        );
    }
    assert!(
        groups["isolation"].is_null(),
        "a one-person ward releases nothing: {groups}"
    );

    let id = job["id"].as_str().unwrap();
    let theirs = ok(&["job", "status", "--node", &cluster.provider.arg(), id]);
    assert_eq!(theirs["state"], "succeeded");
    assert_eq!(theirs["transcript_sha256"], job["transcript_sha256"]);

    // The budget allows three runs at this epsilon; the offer charges each one.
    let (success, _) = carrel(&[
        "join",
        "--node",
        &consumer,
        "--agreement",
        &agreement,
        "--ids",
        &file,
        "--epsilon",
        "1000",
    ]);
    assert!(!success, "a run above the remaining budget is refused");
}
