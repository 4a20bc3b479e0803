//! The demo's second story: computations across parties on the UCI default-of-credit
//! data as split by the FATE project (see data/fate/NOTICE.md).
//!
//! A bank holds the guest half of the vertical split (customer id and whether the
//! customer defaulted); an e-commerce platform holds the host half (customer id and
//! shop-side features). Each keeps a seeded subset so that their customers only partly
//! overlap:
//!
//! - the bank keeps customer `id` when `unit(BANK_SEED, id) < 0.10`;
//! - the shop keeps it when the bank keeps it and `unit(OVERLAP_SEED, id) < 0.5`, or
//!   when `unit(SHOP_SEED, id) < 0.05`;
//!
//! where `unit` maps a seed and an id to [0, 1) with the SplitMix64 finaliser. The bank
//! learns how many customers they share (private set intersection) and, per default
//! status, the noisy mean of the shop's feature `x0` over shared customers (private
//! join-and-compute). Then three lenders, each holding one of the horizontal credit
//! files, give a risk consortium their joint default rate by secure aggregation.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use carrel_model::Role;
use carrel_node::PinnedExchange;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::admin::{AdminClient, follow_job, negotiate};
use crate::cluster::{self, Nodes};
use crate::demo::Report;

const CREDIT_GUEST: &str = include_str!("../../../data/fate/default_credit_hetero_guest.csv");
const CREDIT_HOST: &str = include_str!("../../../data/fate/default_credit_hetero_host.csv");
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

const BANK: &str = "bank";
const SHOP: &str = "shop";
const CONSORTIUM: &str = "risk-consortium";

const BANK_SEED: u64 = 0xB44E_0001;
const SHOP_SEED: u64 = 0x540F_0002;
const OVERLAP_SEED: u64 = 0x0E41_0003;

/// Bound the lenders declare for each standardised feature: the largest absolute value in
/// their files is 72.8, so nothing is clipped.
pub const LENDER_BOUND: f64 = 80.0;

/// Bounds the shop declares for its standardised feature `x0`.
const X0_BOUNDS: (f64, f64) = (-3.0, 7.0);

/// Maps `(seed, id)` to [0, 1) with the SplitMix64 finaliser.
fn unit(seed: u64, id: u64) -> f64 {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn bank_keeps(id: u64) -> bool {
    unit(BANK_SEED, id) < 0.10
}

fn shop_keeps(id: u64) -> bool {
    (bank_keeps(id) && unit(OVERLAP_SEED, id) < 0.5) || unit(SHOP_SEED, id) < 0.05
}

/// Rows of a CSV text as (id, fields), after its header.
fn rows(text: &str) -> impl Iterator<Item = (u64, Vec<&str>)> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            Some((fields.first()?.trim().parse().ok()?, fields))
        })
}

/// Runs the story; returns the node folders whose logs the demo verifies.
pub async fn story(
    base: &Path,
    pin: &PinnedExchange,
    nodes: &mut Nodes,
    report: &mut Report<'_>,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    report.section("Second story: a bank and an e-commerce platform combine what they know");
    let bank_dir = base.join(BANK);
    let shop_dir = base.join(SHOP);
    cluster::start_participant(&bank_dir, BANK, Role::Consumer, pin, nodes).await?;
    cluster::start_participant(&shop_dir, SHOP, Role::Provider, pin, nodes).await?;
    report.line("bank and shop nodes started and registered with the exchange");

    // The two seeded subsets.
    let mut bank_csv = String::from("id,defaulted\n");
    let mut bank_status = BTreeMap::new();
    for (id, fields) in rows(CREDIT_GUEST).filter(|(id, _)| bank_keeps(*id)) {
        bank_csv.push_str(&format!("{id},{}\n", fields[1]));
        bank_status.insert(id, fields[1].trim() == "1");
    }
    let mut shop_csv = String::from("id,x0\n");
    let mut shop_x0 = BTreeMap::new();
    for (id, fields) in rows(CREDIT_HOST).filter(|(id, _)| shop_keeps(*id)) {
        shop_csv.push_str(&format!("{id},{}\n", fields[1]));
        shop_x0.insert(id, fields[1].trim().parse::<f64>()?);
    }
    let shared: HashSet<u64> = bank_status
        .keys()
        .filter(|id| shop_x0.contains_key(id))
        .copied()
        .collect();
    report.line(&format!(
        "bank keeps {} customers, shop {}; they share {} (known only to this demo's narrator)",
        bank_status.len(),
        shop_x0.len(),
        shared.len()
    ));
    let bank_file = base.join("bank_customers.csv");
    let shop_file = base.join("shop_customers.csv");
    std::fs::write(&bank_file, &bank_csv)?;
    std::fs::write(&shop_file, &shop_csv)?;

    let shop = AdminClient::open(&shop_dir)?;
    let bank = AdminClient::open(&bank_dir)?;
    shop.post(
        "/admin/datasets",
        json!({ "source": shop_file, "description": shop_description() }),
    )
    .await?;
    let psi_offer = publish(
        &shop,
        "Shop customers: private set intersection",
        psi_policy(),
    )
    .await?;
    let join_offer = publish(&shop, "Shop customers: private join on x0", join_policy()).await?;
    let psi_agreement =
        agreement_id(&negotiate(&bank, &psi_offer, "credit-risk", report.out).await?)?;
    let join_agreement =
        agreement_id(&negotiate(&bank, &join_offer, "credit-risk", report.out).await?)?;
    report.line(&format!(
        "bank holds agreements {psi_agreement} and {join_agreement}"
    ));

    report.section("How many customers do the bank and the shop share? (private set intersection)");
    let body = json!({ "agreement": psi_agreement, "ids": bank_file });
    let done = run_job(&bank, "/admin/jobs/psi", body, report).await?;
    let size = done["result"]["size"].as_u64().unwrap_or_default();
    report.line(&format!(
        "bank learned: {size} shared customers (exact: {}); the shop learned nothing but the \
         bank's set size; transcript {}",
        shared.len(),
        done["transcript_sha256"].as_str().unwrap_or("?")
    ));
    report.record("psi", done);
    if size != shared.len() as u64 {
        bail!(
            "the intersection has {size} customers but the subsets share {}",
            shared.len()
        );
    }

    report.section("Shop feature x0 of shared customers, by default status (private join)");
    let body = json!({ "agreement": join_agreement, "ids": bank_file,
                       "group_column": "defaulted", "epsilon": 1.0 });
    let done = run_job(&bank, "/admin/jobs/join", body, report).await?;
    for (label, defaulted) in [("0", false), ("1", true)] {
        let members: Vec<f64> = shared
            .iter()
            .filter(|id| bank_status[id] == defaulted)
            .map(|id| shop_x0[id].clamp(X0_BOUNDS.0, X0_BOUNDS.1))
            .collect();
        let exact_mean = members.iter().sum::<f64>() / members.len().max(1) as f64;
        let group = &done["result"]["groups"][label];
        let released = match (group["sum"].as_f64(), group["persons"].as_f64()) {
            (Some(sum), Some(persons)) if persons > 0.0 => {
                format!("{} persons, mean x0 {:.3}", group["persons"], sum / persons)
            }
            _ => "suppressed".to_owned(),
        };
        report.line(&format!(
            "defaulted={label}: released {released}; exact {} persons, mean x0 {exact_mean:.3}",
            members.len()
        ));
    }
    report.record("join", done);

    report.section("Three lenders learn their joint default rate (secure aggregation)");
    let consortium_dir = base.join(CONSORTIUM);
    cluster::start_participant(&consortium_dir, CONSORTIUM, Role::Consumer, pin, nodes).await?;
    let consortium = AdminClient::open(&consortium_dir)?;
    let mut dirs = vec![(BANK.to_owned(), bank_dir), (SHOP.to_owned(), shop_dir)];
    let mut agreements = Vec::new();
    let (mut rows_exact, mut defaults_exact) = (0u64, 0u64);
    for (name, text) in LENDER_FILES {
        let dir = base.join(name);
        cluster::start_participant(&dir, name, Role::Provider, pin, nodes).await?;
        let file = base.join(format!("{name}.csv"));
        std::fs::write(&file, text)?;
        for (_, fields) in rows(text) {
            rows_exact += 1;
            defaults_exact += u64::from(fields[1].trim() == "1");
        }
        let lender = AdminClient::open(&dir)?;
        let header = text.lines().next().context("a lender file is empty")?;
        lender
            .post(
                "/admin/datasets",
                json!({ "source": file, "description": lender_description(name, header) }),
            )
            .await?;
        let offer = publish(
            &lender,
            &format!("{name}: loans for secure aggregation"),
            secagg_policy(),
        )
        .await?;
        agreements.push(agreement_id(
            &negotiate(&consortium, &offer, "credit-risk", report.out).await?,
        )?);
        dirs.push((name.to_owned(), dir));
    }
    report.line(&format!(
        "consortium holds one agreement with each lender: {}",
        agreements.join(", ")
    ));
    let body = json!({ "agreements": agreements, "columns": ["y"], "epsilon": 1.0 });
    let done = run_job(&consortium, "/admin/jobs/secagg", body, report).await?;
    let rows = done["result"]["rows"].as_f64().unwrap_or_default();
    let defaults = done["result"]["sums"]["y"].as_f64().unwrap_or_default();
    report.line(&format!(
        "released: {rows} loans, {defaults} defaults, default rate {:.4}; exact: {rows_exact} \
         loans, {defaults_exact} defaults, rate {:.4}",
        defaults / rows.max(1.0),
        defaults_exact as f64 / rows_exact.max(1) as f64
    ));
    report.record("secure_aggregation", done);

    let two = json!({ "agreements": &agreements[..2], "columns": ["y"], "epsilon": 1.0 });
    match consortium.post("/admin/jobs/secagg", two).await {
        Ok(_) => bail!("a secure aggregation with two lenders was accepted"),
        Err(error) => report.line(&format!(
            "refused as it must be, with two lenders: {error:#}"
        )),
    }
    dirs.push((CONSORTIUM.to_owned(), consortium_dir));
    Ok(dirs)
}

pub(crate) async fn run_job(
    client: &AdminClient,
    path: &str,
    body: Value,
    report: &Report<'_>,
) -> anyhow::Result<Value> {
    let started = client.post(path, body).await?;
    let job = started["job"]
        .as_str()
        .context("the node returned no job id")?;
    follow_job(client, job, report.out).await
}

pub(crate) async fn publish(
    client: &AdminClient,
    title: &str,
    policy: Value,
) -> anyhow::Result<String> {
    let dataset = policy["dataset"].as_str().unwrap_or_default().to_owned();
    let mut policy = policy;
    if let Some(map) = policy.as_object_mut() {
        map.remove("dataset");
    }
    let listed = client
        .post(
            "/admin/products",
            json!({ "dataset": dataset, "title": title, "policy": policy }),
        )
        .await?;
    Ok(listed["odrl:hasPolicy"][0]["@id"]
        .as_str()
        .context("the listing has no offer id")?
        .to_owned())
}

pub(crate) fn agreement_id(signed: &Value) -> anyhow::Result<String> {
    Ok(signed["agreement"]["@id"]
        .as_str()
        .context("the agreement has no id")?
        .to_owned())
}

pub(crate) fn classification() -> Value {
    json!({ "level": "general", "personal_information": true,
            "sensitive_personal_information": false, "region": "TW" })
}

fn shop_description() -> Value {
    json!({
        "name": "shop_customers",
        "title": "Shop customers with a standardised shop-side feature",
        "columns": [
            { "name": "id", "type": "integer", "role": "identifier" },
            { "name": "x0", "type": "float", "role": "sensitive",
              "bounds": { "lower": X0_BOUNDS.0, "upper": X0_BOUNDS.1 } }
        ],
        "privacy_unit": "id",
        "classification": classification(),
        "rights": { "holder": SHOP, "processors": [SHOP], "operators": [SHOP] }
    })
}

fn lender_description(name: &str, header: &str) -> Value {
    let columns: Vec<Value> = header
        .split(',')
        .map(|c| match c.trim() {
            "id" => json!({ "name": "id", "type": "integer", "role": "identifier" }),
            "y" => json!({ "name": "y", "type": "integer", "role": "sensitive",
                           "bounds": { "lower": 0, "upper": 1 } }),
            other => json!({ "name": other, "type": "float", "role": "attribute",
                             "bounds": { "lower": -LENDER_BOUND, "upper": LENDER_BOUND } }),
        })
        .collect();
    json!({
        "name": "loans",
        "title": format!("Loans of {name}"),
        "columns": columns,
        "privacy_unit": "id",
        "classification": classification(),
        "rights": { "holder": name, "processors": [name], "operators": [name] }
    })
}

pub(crate) fn base_policy(action: &str) -> Value {
    let now = OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    json!({
        "action": action,
        "purposes": ["credit-risk"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap_or_default(),
        "valid_until": (now + time::Duration::days(30)).format(format).unwrap_or_default(),
        "max_queries": 10,
        "budget": { "epsilon": 5.0, "delta": 1e-6 },
        "query_epsilon": 1.0,
        "query_delta": 1e-9,
        "min_group_size": 10,
        "max_rows_per_unit": 1,
        "columns": {},
        "price_per_query": { "amount_minor": 2000, "currency": "TWD" },
        "usage_regions": ["TW"]
    })
}

fn psi_policy() -> Value {
    let mut policy = base_policy("private_set_intersection");
    policy["dataset"] = json!("shop_customers");
    policy["psi"] = json!({ "consumer_learns": "size", "provider_learns": "nothing",
                            "id_column": "id", "max_set_size": 10_000 });
    policy
}

fn join_policy() -> Value {
    let mut policy = base_policy("private_join");
    policy["dataset"] = json!("shop_customers");
    policy["join"] = json!({ "id_column": "id", "value_column": "x0",
                             "value_lower": X0_BOUNDS.0, "value_upper": X0_BOUNDS.1,
                             "max_set_size": 10_000 });
    policy
}

fn secagg_policy() -> Value {
    let mut policy = base_policy("secure_aggregation");
    policy["dataset"] = json!("loans");
    policy["columns"] = json!({ "aggregate": ["y"] });
    policy["secure_aggregation"] = json!({ "max_rows": 10_000 });
    policy
}
