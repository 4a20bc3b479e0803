//! Benchmarks of the computations across parties, each between real node processes on
//! loopback: `carrel bench psi` (with the floor this machine's curve arithmetic sets
//! beside it), `carrel bench join` and `carrel bench secagg`.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, ensure};
use carrel_model::Reveal;
use carrel_model::Role;
use carrel_mpc::group::{SecretScalar, hash_to_group};
use carrel_mpc::ids::{IdList, IdRule, read_ids};
use carrel_mpc::psi::{DEFAULT_BATCH, run_local};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::admin::{AdminClient, follow_job, negotiate};
use crate::cluster::{self, Nodes};
use crate::output::Output;

const PROVIDER: &str = "bench-provider";
const CONSUMER: &str = "bench-consumer";

/// Operations timed to measure this machine's single-core curve rates.
const RATE_SAMPLES: u32 = 20_000;

/// Runs the benchmark with `ids` identifiers per side.
pub async fn psi(ids: u64, batch: Option<usize>, out: &Output) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("carrel-bench-psi-")
        .tempdir()
        .context("failed to create a temporary folder")?;
    let base = dir.path();
    out.progress(&format!(
        "{ids} identifiers per side, half overlapping; nodes in {}",
        base.display()
    ));

    let mut nodes = Nodes::default();
    let pin = cluster::start_exchange(&base.join("exchange"), "exchange", &mut nodes).await?;
    let (provider_dir, consumer_dir) = (base.join(PROVIDER), base.join(CONSUMER));
    cluster::start_participant(&provider_dir, PROVIDER, Role::Provider, &pin, &mut nodes).await?;
    cluster::start_participant(&consumer_dir, CONSUMER, Role::Consumer, &pin, &mut nodes).await?;

    let started = Instant::now();
    let provider_file = base.join("provider.csv");
    let consumer_file = base.join("consumer.csv");
    write_ids(&provider_file, ids / 2..ids / 2 + ids)?;
    write_ids(&consumer_file, 0..ids)?;
    out.progress(&format!(
        "identifier files written in {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    let started = Instant::now();
    let description = json!({
        "name": "bench_ids",
        "title": "Generated identifiers",
        "columns": [{ "name": "id", "type": "text", "role": "identifier" }],
        "privacy_unit": "id",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": PROVIDER, "processors": [PROVIDER], "operators": [PROVIDER] }
    });
    let mut policy = bench_policy("private_set_intersection");
    policy["psi"] = json!({ "consumer_learns": "intersection", "provider_learns": "nothing",
                            "id_column": "id", "max_set_size": ids });
    let agreement = agreement_for(
        &provider_dir,
        &consumer_dir,
        &provider_file,
        description,
        policy,
        out,
    )
    .await?;
    out.progress(&format!(
        "registered, published and negotiated in {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    let (hash_rate, mult_rate) = curve_rates();
    // Each party hashes its own set once and multiplies twice per element of a set.
    let floor = (2.0 * ids as f64 / hash_rate + 4.0 * ids as f64 / mult_rate) / 2.0;

    // The same protocol in this process, without the network, for comparison.
    let started = Instant::now();
    let local = in_process(&consumer_file, &provider_file, batch)?;
    let local_seconds = started.elapsed().as_secs_f64();
    ensure!(
        local == ids - ids / 2,
        "the in-process run found {local} identifiers in common"
    );
    out.progress(&format!(
        "in-process run without the network: {local_seconds:.1} s"
    ));

    let pids = [nodes.pid(PROVIDER), nodes.pid(CONSUMER)];
    reset_peaks(&pids);
    let consumer = AdminClient::open(&consumer_dir)?;
    let body = json!({ "agreement": agreement, "ids": consumer_file, "batch": batch });
    let started = Instant::now();
    let job = consumer.post("/admin/jobs/psi", body).await?;
    let job_id = job["job"].as_str().context("the node returned no job id")?;
    let done = follow_job(&consumer, job_id, out).await?;
    let wall = started.elapsed().as_secs_f64();
    let peaks: Vec<Option<u64>> = pids.iter().map(|pid| pid.and_then(peak_memory)).collect();

    let size = done["result"]["size"].as_u64().unwrap_or_default();
    ensure!(
        size == ids - ids / 2,
        "the intersection has {size} identifiers, expected {}",
        ids - ids / 2
    );
    let traffic = &done["result"]["traffic"];
    let report = json!({
        "benchmark": "psi",
        "date": OffsetDateTime::now_utc().date().to_string(),
        "ids_per_side": ids,
        "intersection": size,
        "wall_seconds": wall,
        "floor_seconds": floor,
        "in_process_seconds": local_seconds,
        "wall_over_floor": wall / floor,
        "hash_to_group_per_second": hash_rate,
        "scalar_mult_per_second": mult_rate,
        "provider_peak_bytes": peaks[0],
        "consumer_peak_bytes": peaks[1],
        "consumer_sent_bytes": traffic["request_bytes"],
        "provider_sent_bytes": traffic["response_bytes"],
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    print_report(&report, out);
    Ok(())
}

/// Runs a private join of `ids` consumer identifiers in four groups against as many
/// provider rows, half of them shared.
pub async fn join(ids: u64, out: &Output) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("carrel-bench-join-")
        .tempdir()?;
    let base = dir.path();
    out.progress(&format!(
        "{ids} identifiers per side, half shared; nodes in {}",
        base.display()
    ));
    let mut nodes = Nodes::default();
    let pin = cluster::start_exchange(&base.join("exchange"), "exchange", &mut nodes).await?;
    let (provider_dir, consumer_dir) = (base.join(PROVIDER), base.join(CONSUMER));
    cluster::start_participant(&provider_dir, PROVIDER, Role::Provider, &pin, &mut nodes).await?;
    cluster::start_participant(&consumer_dir, CONSUMER, Role::Consumer, &pin, &mut nodes).await?;

    let provider_file = base.join("provider.csv");
    let consumer_file = base.join("consumer.csv");
    let mut rows = String::from("id,amount\n");
    for k in ids / 2..ids / 2 + ids {
        rows.push_str(&format!("{k:012},{}\n", k % 100));
    }
    std::fs::write(&provider_file, rows)?;
    let mut mine = String::from("id,group\n");
    for k in 0..ids {
        mine.push_str(&format!("{k:012},g{}\n", k % 4));
    }
    std::fs::write(&consumer_file, mine)?;

    let description = json!({
        "name": "bench_rows",
        "title": "Generated rows",
        "columns": [{ "name": "id", "type": "text", "role": "identifier" },
                    { "name": "amount", "type": "float", "role": "sensitive",
                      "bounds": { "lower": 0, "upper": 100 } }],
        "privacy_unit": "id",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": PROVIDER, "processors": [PROVIDER], "operators": [PROVIDER] }
    });
    let mut policy = bench_policy("private_join");
    policy["join"] = json!({ "id_column": "id", "value_column": "amount", "value_lower": 0.0,
                             "value_upper": 100.0, "max_set_size": ids });
    let agreement = agreement_for(
        &provider_dir,
        &consumer_dir,
        &provider_file,
        description,
        policy,
        out,
    )
    .await?;

    let pids = [nodes.pid(PROVIDER), nodes.pid(CONSUMER)];
    reset_peaks(&pids);
    let consumer = AdminClient::open(&consumer_dir)?;
    let body = json!({ "agreement": agreement, "ids": consumer_file, "group_column": "group" });
    let started = Instant::now();
    let job = consumer.post("/admin/jobs/join", body).await?;
    let job_id = job["job"].as_str().context("the node returned no job id")?;
    let done = follow_job(&consumer, job_id, out).await?;
    let wall = started.elapsed().as_secs_f64();
    let peaks: Vec<Option<u64>> = pids.iter().map(|pid| pid.and_then(peak_memory)).collect();
    let traffic = &done["result"]["traffic"];
    let report = json!({
        "benchmark": "join",
        "date": OffsetDateTime::now_utc().date().to_string(),
        "ids_per_side": ids,
        "groups": done["result"]["groups"],
        "wall_seconds": wall,
        "rows_per_second": ids as f64 / wall,
        "provider_peak_bytes": peaks[0],
        "consumer_peak_bytes": peaks[1],
        "consumer_sent_bytes": traffic["request_bytes"],
        "provider_sent_bytes": traffic["response_bytes"],
    });
    print_simple(&report, out);
    Ok(())
}

/// Runs a secure aggregation of the row count and one sum over `providers` providers
/// with `rows` rows each.
pub async fn secagg(providers: usize, rows: u64, out: &Output) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("carrel-bench-secagg-")
        .tempdir()?;
    let base = dir.path();
    out.progress(&format!(
        "{providers} providers with {rows} rows each; nodes in {}",
        base.display()
    ));
    let mut nodes = Nodes::default();
    let pin = cluster::start_exchange(&base.join("exchange"), "exchange", &mut nodes).await?;
    let consumer_dir = base.join(CONSUMER);
    cluster::start_participant(&consumer_dir, CONSUMER, Role::Consumer, &pin, &mut nodes).await?;
    let mut agreements = Vec::new();
    for p in 0..providers {
        let name = format!("bench-provider-{p:02}");
        let dir = base.join(&name);
        cluster::start_participant(&dir, &name, Role::Provider, &pin, &mut nodes).await?;
        let file = base.join(format!("{name}.csv"));
        let mut text = String::from("id,y\n");
        for k in 0..rows {
            text.push_str(&format!("{k},{}\n", u64::from(k % 5 == 0)));
        }
        std::fs::write(&file, text)?;
        let description = json!({
            "name": "loans",
            "title": "Generated loans",
            "columns": [{ "name": "id", "type": "integer", "role": "identifier" },
                        { "name": "y", "type": "integer", "role": "sensitive",
                          "bounds": { "lower": 0, "upper": 1 } }],
            "privacy_unit": "id",
            "classification": { "level": "general", "personal_information": true,
                                "sensitive_personal_information": false, "region": "US" },
            "rights": { "holder": name, "processors": [name], "operators": [name] }
        });
        let mut policy = bench_policy("secure_aggregation");
        policy["columns"] = json!({ "aggregate": ["y"] });
        policy["secure_aggregation"] = json!({ "max_rows": rows });
        agreements.push(agreement_for(&dir, &consumer_dir, &file, description, policy, out).await?);
    }
    let consumer = AdminClient::open(&consumer_dir)?;
    let body = json!({ "agreements": agreements, "columns": ["y"], "epsilon": 1.0 });
    let started = Instant::now();
    let job = consumer.post("/admin/jobs/secagg", body).await?;
    let job_id = job["job"].as_str().context("the node returned no job id")?;
    let done = follow_job(&consumer, job_id, out).await?;
    let wall = started.elapsed().as_secs_f64();
    let report = json!({
        "benchmark": "secagg",
        "date": OffsetDateTime::now_utc().date().to_string(),
        "providers": providers,
        "rows_per_provider": rows,
        "released": done["result"],
        "wall_seconds": wall,
    });
    print_simple(&report, out);
    Ok(())
}

fn print_simple(report: &Value, out: &Output) {
    if out.is_json() {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("JSON value serialises")
        );
        return;
    }
    println!(
        "bench {}:",
        report["benchmark"].as_str().unwrap_or_default()
    );
    for (key, value) in report.as_object().into_iter().flatten() {
        if key != "benchmark" {
            println!("  {key}: {value}");
        }
    }
}

fn reset_peaks(pids: &[Option<u32>]) {
    for pid in pids.iter().flatten() {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
}

fn bench_policy(action: &str) -> Value {
    let now = OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    json!({
        "action": action,
        "purposes": ["benchmark"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap_or_default(),
        "valid_until": (now + time::Duration::days(1)).format(format).unwrap_or_default(),
        "max_queries": 10,
        "budget": { "epsilon": 10.0, "delta": 1e-6 },
        "query_epsilon": 1.0,
        "query_delta": 1e-9,
        "min_group_size": 10,
        "max_rows_per_unit": 1,
        "columns": {},
        "price_per_query": { "amount_minor": 0, "currency": "USD" },
        "usage_regions": ["US"]
    })
}

/// Registers `file` on the provider, publishes it with `policy` and negotiates an
/// agreement for the consumer; returns the agreement id.
async fn agreement_for(
    provider_dir: &Path,
    consumer_dir: &Path,
    file: &Path,
    description: Value,
    policy: Value,
    out: &Output,
) -> anyhow::Result<String> {
    let provider = AdminClient::open(provider_dir)?;
    let dataset = description["name"].clone();
    provider
        .post(
            "/admin/datasets",
            json!({ "source": file, "description": description }),
        )
        .await?;
    let listed = provider
        .post(
            "/admin/products",
            json!({ "dataset": dataset, "title": "Benchmark", "policy": policy }),
        )
        .await?;
    let offer = listed["odrl:hasPolicy"][0]["@id"]
        .as_str()
        .context("the listing has no offer id")?;
    let consumer = AdminClient::open(consumer_dir)?;
    let signed = negotiate(&consumer, offer, "benchmark", out).await?;
    Ok(signed["agreement"]["@id"]
        .as_str()
        .context("the agreement has no id")?
        .to_owned())
}

fn write_ids(path: &Path, range: std::ops::Range<u64>) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    writeln!(writer, "id")?;
    for k in range {
        writeln!(writer, "{k:012}")?;
    }
    writer.flush()?;
    Ok(())
}

/// Runs both parties in this process on the two files; returns the intersection size.
fn in_process(consumer: &Path, provider: &Path, batch: Option<usize>) -> anyhow::Result<u64> {
    let rule = IdRule::default();
    let read = |path: &Path| -> anyhow::Result<IdList> {
        let file = std::fs::File::open(path)?;
        Ok(read_ids(std::io::BufReader::new(file), None, &rule, u64::MAX)?.0)
    };
    let (a, b) = (read(consumer)?, read(provider)?);
    let batch = batch.unwrap_or(DEFAULT_BATCH);
    let (outcome, _) = run_local(a, Reveal::Intersection, b, Reveal::Nothing, batch)?;
    Ok(outcome.size.unwrap_or_default())
}

/// Single-core rates of hashing to Ristretto255 and of variable-base scalar
/// multiplication, measured now on this machine.
fn curve_rates() -> (f64, f64) {
    let started = Instant::now();
    let points: Vec<_> = (0..RATE_SAMPLES)
        .map(|i| hash_to_group(b"bench", &i.to_be_bytes()))
        .collect();
    let hash_rate = f64::from(RATE_SAMPLES) / started.elapsed().as_secs_f64();
    let secret = SecretScalar::random();
    let started = Instant::now();
    let blinded: Vec<_> = points.iter().map(|p| secret.blind(p)).collect();
    let mult_rate = f64::from(RATE_SAMPLES) / started.elapsed().as_secs_f64();
    std::hint::black_box(blinded);
    (hash_rate, mult_rate)
}

fn peak_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kibibytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kibibytes * 1024)
}

fn print_report(report: &Value, out: &Output) {
    if out.is_json() {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("JSON value serialises")
        );
        return;
    }
    let mb = |v: &Value| {
        v.as_u64()
            .map_or("n/a".to_owned(), |b| format!("{:.0} MB", b as f64 / 1e6))
    };
    println!(
        "bench psi: {} identifiers per side, {} in common",
        report["ids_per_side"], report["intersection"]
    );
    println!(
        "  wall time {:.1} s (in one process without the network: {:.1} s); floor {:.1} s from this machine's rates ({:.0} hashes/s, {:.0} \
         multiplications/s per core, {} cores); wall / floor {:.2}",
        report["wall_seconds"].as_f64().unwrap_or_default(),
        report["in_process_seconds"].as_f64().unwrap_or_default(),
        report["floor_seconds"].as_f64().unwrap_or_default(),
        report["hash_to_group_per_second"]
            .as_f64()
            .unwrap_or_default(),
        report["scalar_mult_per_second"]
            .as_f64()
            .unwrap_or_default(),
        report["cores"],
        report["wall_over_floor"].as_f64().unwrap_or_default(),
    );
    println!(
        "  peak memory: provider {}, consumer {}",
        mb(&report["provider_peak_bytes"]),
        mb(&report["consumer_peak_bytes"])
    );
    println!(
        "  bytes sent (HTTP bodies): consumer {}, provider {}",
        mb(&report["consumer_sent_bytes"]),
        mb(&report["provider_sent_bytes"])
    );
}
