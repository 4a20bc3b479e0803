//! `carrel demo`: the whole story on real census microdata and real credit data, with
//! the exchange and each participant running as its own `carrel serve` process on a
//! free loopback port.
//!
//! A statistics office registers the PUMS sample (several rows per person) and
//! publishes it; the exchange reviews the listing (and rejects an incomplete one); a
//! research institute negotiates an agreement and runs differentially private
//! queries, with the exact results shown beside the released ones; a row-level
//! query, a too-small group and an over-budget query show the guards. A second story
//! on credit data follows (see [`crate::demo_joint`]): a private set intersection, a
//! private join and a secure aggregation. Finally every node's audit log is verified.

use carrel_node::{NodeDir, PinnedExchange};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carrel_model::{
    Action, Classification, ColumnRole, ColumnRules, ColumnSpec, ColumnType, DataLevel,
    DatasetDescription, Price, PrivacyBudget, Rights, Role, UsagePolicy,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::admin::{AdminClient, negotiate};
use crate::cluster::{self, Nodes};
use crate::output::{Output, format_release};

/// The census sample, shipped in the project's data folder (see its NOTICE.md).
const PUMS_DUP_CSV: &str = include_str!("../../../data/pums/PUMS_dup.csv");

const EXCHANGE: &str = "exchange";
const PROVIDER: &str = "stats-office";
const CONSUMER: &str = "research-institute";
const PURPOSE: &str = "public-health-research";

/// One query of the story: its title, SQL and epsilon.
struct Question {
    title: &'static str,
    sql: &'static str,
    epsilon: f64,
}

const QUESTIONS: [Question; 3] = [
    Question {
        title: "people by marital status",
        sql: "SELECT married, COUNT(*) AS people FROM pums GROUP BY married",
        epsilon: 0.5,
    },
    Question {
        title: "mean income by education level",
        sql: "SELECT educ, AVG(income) AS mean_income FROM pums GROUP BY educ",
        epsilon: 1.0,
    },
    Question {
        title: "mean income by age band",
        sql: "SELECT age_band, AVG(income) AS mean_income FROM pums GROUP BY age_band",
        epsilon: 1.0,
    },
];

/// Runs the demo, keeping the node folders in `keep` when given.
pub async fn run(keep: Option<PathBuf>, out: &Output) -> anyhow::Result<()> {
    let temporary;
    let kept = keep.is_some();
    let base = match keep {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            if std::fs::read_dir(&dir)?.next().is_some() {
                bail!(
                    "{} is not empty: give --keep an empty or new folder",
                    dir.display()
                );
            }
            dir
        }
        None => {
            temporary = tempfile::tempdir().context("cannot create a temporary folder")?;
            temporary.path().to_owned()
        }
    };

    let mut report = Report::new(out);
    let mut nodes = Nodes::default();
    let (dirs, pin) = start_nodes(&base, &mut nodes, &mut report).await?;
    let story = story(&base, &dirs, &mut report).await;
    let joint = match story {
        Ok(()) => crate::demo_joint::story(&base, &pin, &mut nodes, &mut report).await,
        Err(error) => Err(error),
    };
    let joint = match joint {
        Ok(dirs) => crate::demo_learn::story(&base, &dirs, &mut report)
            .await
            .map(|()| dirs),
        Err(error) => Err(error),
    };

    // The nodes stop before their logs are verified, so the databases are at rest.
    for name in nodes.stop_all() {
        report.line(&format!("stopped {name}"));
    }
    let joint = joint?;

    report.section("Audit verification");
    let first = [
        (EXCHANGE.to_owned(), dirs.exchange.clone()),
        (PROVIDER.to_owned(), dirs.provider.clone()),
        (CONSUMER.to_owned(), dirs.consumer.clone()),
    ];
    for (name, dir) in first.iter().chain(&joint) {
        let verified = crate::audit::verify_report(dir)?;
        report.line(&format!(
            "{name}: {} entries verified against its signed checkpoint ({} checkpoints consistent)",
            verified["tree_size"], verified["checkpoints"]
        ));
        report.record(&format!("audit_{name}"), verified);
    }

    if kept {
        report.line(&format!("node folders kept in {}", base.display()));
    } else {
        report.line("node folders were temporary and are removed; keep them with --keep DIR");
    }
    report.finish();
    Ok(())
}

struct Dirs {
    exchange: PathBuf,
    provider: PathBuf,
    consumer: PathBuf,
}

async fn start_nodes(
    base: &Path,
    nodes: &mut Nodes,
    report: &mut Report<'_>,
) -> anyhow::Result<(Dirs, PinnedExchange)> {
    report.section("Starting three nodes");
    let dirs = Dirs {
        exchange: base.join(EXCHANGE),
        provider: base.join(PROVIDER),
        consumer: base.join(CONSUMER),
    };
    let pin = cluster::start_exchange(&dirs.exchange, EXCHANGE, nodes).await?;
    report.line(&format!("{EXCHANGE} serving at {}", pin.url));
    for (dir, name, role) in [
        (&dirs.provider, PROVIDER, Role::Provider),
        (&dirs.consumer, CONSUMER, Role::Consumer),
    ] {
        let url = cluster::start_participant(dir, name, role, &pin, nodes).await?;
        report.line(&format!(
            "{name} serving at {url}, registered with the exchange"
        ));
    }
    Ok((dirs, pin))
}

async fn story(base: &Path, dirs: &Dirs, report: &mut Report<'_>) -> anyhow::Result<()> {
    let provider = AdminClient::open(&dirs.provider)?;
    let consumer = AdminClient::open(&dirs.consumer)?;

    report.section("The statistics office registers and publishes the census sample");
    let source = prepare_source(base)?;
    let registered = provider
        .post(
            "/admin/datasets",
            json!({ "source": source, "description": description() }),
        )
        .await?;
    let dataset_report = &registered["report"];
    report.line(&format!(
        "registered {} rows (1 to 4 per person) from {} (sha256 {})",
        dataset_report["rows_kept"],
        source.display(),
        dataset_report["sha256"].as_str().unwrap_or("?")
    ));
    report.record("registration", dataset_report.clone());

    let mut incomplete = policy();
    incomplete.purposes.clear();
    incomplete.min_group_size = 1;
    let rejected = provider
        .post("/admin/products", json!({ "dataset": "pums", "title": "Census sample, unreviewed", "policy": incomplete }))
        .await;
    match rejected {
        Ok(_) => bail!("the exchange listed an offer without purposes; its review is broken"),
        Err(error) => report.line(&format!(
            "exchange rejected an incomplete listing: {error:#}"
        )),
    }
    let listed = provider
        .post("/admin/products", json!({ "dataset": "pums", "title": "California census sample (PUMS)", "policy": policy() }))
        .await?;
    let offer = listed["odrl:hasPolicy"][0]["@id"]
        .as_str()
        .context("the listing has no offer id")?
        .to_owned();
    report.line(&format!("exchange reviewed and listed offer {offer}"));

    report.section("The research institute negotiates an agreement");
    let catalog = consumer.get("/admin/catalog").await?;
    report.line(&format!(
        "catalog lists {} product(s)",
        catalog["dcat:dataset"].as_array().map_or(0, Vec::len)
    ));
    let signed = negotiate(&consumer, &offer, PURPOSE, report.out).await?;
    let agreement = signed["agreement"]["@id"]
        .as_str()
        .context("no agreement id")?
        .to_owned();
    let shown = consumer
        .get(&format!("/admin/agreements/{agreement}"))
        .await?;
    for check in shown["verification"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        report.line(&format!(
            "agreement {agreement}: {}",
            check.as_str().unwrap_or("?")
        ));
    }

    report.section("Differentially private questions (exact pre-noise answers beside them)");
    let exact_source = NodeDir::new(&dirs.provider);
    for question in &QUESTIONS {
        let response = ask(&consumer, &agreement, question.sql, question.epsilon).await?;
        let exact = crate::exact::answer(&exact_source, question.sql).await?;
        report.question(question.title, question.sql, &response, &exact);
    }

    report.section("Guards");
    let row_level = ask(&consumer, &agreement, "SELECT pid, income FROM pums", 0.5).await;
    report.guard("row-level query", row_level, false)?;
    let small = ask(
        &consumer,
        &agreement,
        "SELECT COUNT(*) AS people FROM pums WHERE age >= 90",
        0.5,
    )
    .await;
    report.guard(
        "group of fewer than 10 persons (people aged 90 or more)",
        small,
        true,
    )?;
    let over = ask(&consumer, &agreement, QUESTIONS[0].sql, 1.0).await;
    report.guard("query beyond the remaining budget", over, false)?;

    report.section("The research institute keeps receipts of the office's log");
    receipts(base, dirs, &agreement, report).await
}

/// How long the demo waits for the office's witnesses to cosign its last entries.
const RECEIPT_DEADLINE: Duration = Duration::from_secs(30);

/// Fetches a receipt of every entry the office logged about the agreement, once its
/// witnesses have cosigned a checkpoint that contains them all. Each receipt is checked
/// with nothing but itself and the policy built from the keys the institute trusts.
async fn receipts(
    base: &Path,
    dirs: &Dirs,
    agreement: &str,
    report: &mut Report<'_>,
) -> anyhow::Result<()> {
    let folder = base.join("receipts");
    let deadline = Instant::now() + RECEIPT_DEADLINE;
    let fetched = loop {
        let fetched =
            crate::receipts::write_receipts(&dirs.consumer, PROVIDER, agreement, &folder).await;
        match fetched {
            Ok(fetched) if fetched.pending.is_empty() && !fetched.written.is_empty() => {
                break fetched;
            }
            _ if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(fetched) => bail!(
                "{} entries of {PROVIDER} about the agreement were not cosigned within {} s",
                fetched.pending.len(),
                RECEIPT_DEADLINE.as_secs()
            ),
            Err(error) => return Err(error),
        }
    };
    let mut checked = Vec::with_capacity(fetched.written.len());
    for written in &fetched.written {
        let verified = crate::receipts::check_receipt(&written.file, &fetched.policy_file)?;
        report.line(&format!(
            "entry {} ({}) in {}'s tree of size {}: verified offline, cosigned by {}",
            verified.index,
            written.kind,
            PROVIDER,
            verified.tree_size,
            verified.cosigned_by.join(" and ")
        ));
        checked.push(json!({ "index": verified.index, "kind": written.kind,
                             "tree_size": verified.tree_size,
                             "cosigned_by": verified.cosigned_by }));
    }
    report.record("receipts", json!({ "log": PROVIDER, "receipts": checked }));
    Ok(())
}

async fn ask(
    client: &AdminClient,
    agreement: &str,
    sql: &str,
    epsilon: f64,
) -> anyhow::Result<Value> {
    client
        .post(
            "/admin/queries",
            json!({ "agreement": agreement, "sql": sql, "epsilon": epsilon }),
        )
        .await
}

/// Writes the provider's prepared copy of the sample: the shipped rows with an
/// `age_band` column derived from `age`, so that bands can be grouped.
fn prepare_source(base: &Path) -> anyhow::Result<PathBuf> {
    let path = base.join("pums_prepared.csv");
    let mut text = String::new();
    for (i, line) in PUMS_DUP_CSV.lines().enumerate() {
        if i == 0 {
            text.push_str(&format!("{line},age_band\n"));
            continue;
        }
        let age: u32 = line
            .split(',')
            .next()
            .and_then(|a| a.parse().ok())
            .context("shipped sample has a row without age")?;
        let band = match age {
            0..=29 => "under 30",
            30..=44 => "30-44",
            45..=64 => "45-64",
            _ => "65 and over",
        };
        text.push_str(&format!("{line},{band}\n"));
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn description() -> DatasetDescription {
    use ColumnRole::{Attribute, Identifier, QuasiIdentifier, Sensitive};
    use ColumnType::{Integer, Text};
    DatasetDescription {
        name: "pums".into(),
        title: "California census sample (PUMS), several rows per person".into(),
        description: "1,000 persons from the US Census Bureau's Public Use Microdata Sample".into(),
        columns: vec![
            ColumnSpec::new("age", Integer, QuasiIdentifier, Some((0.0, 100.0))),
            ColumnSpec::new("sex", Integer, QuasiIdentifier, None),
            ColumnSpec::new("educ", Integer, QuasiIdentifier, None),
            ColumnSpec::new("race", Integer, QuasiIdentifier, None),
            // The provider declares 200,000 as the upper bound: 19 of 1,000 persons
            // earn more and are clamped to it, in exchange for less noise.
            ColumnSpec::new("income", Integer, Sensitive, Some((0.0, 200_000.0))),
            ColumnSpec::new("married", Integer, Attribute, None),
            ColumnSpec::new("pid", Integer, Identifier, None),
            ColumnSpec::new("age_band", Text, QuasiIdentifier, None),
        ],
        privacy_unit: Some("pid".into()),
        classification: Classification {
            level: DataLevel::General,
            personal_information: true,
            sensitive_personal_information: false,
            region: "US-CA".into(),
        },
        rights: Rights {
            holder: PROVIDER.into(),
            processors: vec![PROVIDER.into()],
            operators: vec![PROVIDER.into()],
        },
    }
}

fn policy() -> UsagePolicy {
    let now = OffsetDateTime::now_utc();
    let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    UsagePolicy {
        action: Action::AggregateQuery,
        purposes: names(&[PURPOSE]),
        valid_from: now - time::Duration::minutes(1),
        valid_until: now + time::Duration::days(30),
        max_queries: 20,
        budget: PrivacyBudget {
            epsilon: 3.5,
            delta: 1e-6,
        },
        query_epsilon: 0.5,
        query_delta: 1e-8,
        min_group_size: 10,
        max_rows_per_unit: 1,
        columns: ColumnRules {
            group_by: names(&["married", "educ", "sex", "race", "age_band"]),
            aggregate: names(&["income", "age"]),
            filter: names(&["age", "sex", "married", "educ", "race", "age_band"]),
        },
        price_per_query: Price {
            amount_minor: 250,
            currency: "USD".into(),
        },
        usage_regions: names(&["US-CA"]),
        psi: None,
        secure_aggregation: None,
        join: None,
        training: None,
    }
}

/// The demo's printed report, and its JSON form with `--json`.
pub(crate) struct Report<'o> {
    pub(crate) out: &'o Output,
    json: serde_json::Map<String, Value>,
}

impl<'o> Report<'o> {
    fn new(out: &'o Output) -> Self {
        Self {
            out,
            json: serde_json::Map::new(),
        }
    }

    pub(crate) fn section(&self, title: &str) {
        if !self.out.is_json() {
            println!("\n== {title}");
        }
    }

    pub(crate) fn line(&self, text: &str) {
        if self.out.is_json() {
            self.out.progress(text);
        } else {
            println!("  {text}");
        }
    }

    pub(crate) fn record(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_owned(), value);
    }

    fn question(&mut self, title: &str, sql: &str, response: &Value, exact: &Value) {
        if !self.out.is_json() {
            println!("\n  {title}\n  {sql}");
            print!("{}", format_release(response));
            println!(
                "  exact, before noise and suppression: {}",
                crate::exact::format(exact)
            );
        }
        let entries = self.json.entry("questions").or_insert_with(|| json!([]));
        if let Value::Array(list) = entries {
            list.push(json!({ "title": title, "sql": sql, "response": response, "exact": exact }));
        }
    }

    /// Shows a guarded query's outcome; `releases` is true when it should succeed
    /// with nothing released (a suppressed group) or be rejected.
    fn guard(
        &mut self,
        title: &str,
        outcome: anyhow::Result<Value>,
        releases: bool,
    ) -> anyhow::Result<()> {
        let text = match (outcome, releases) {
            (Ok(response), true) => {
                let rows = response["release"]["rows"].as_array().map_or(0, Vec::len);
                if rows != 0 {
                    bail!("{title}: the group was released but is below the minimum size");
                }
                format!(
                    "{title}: nothing released, and charged epsilon {} (probing group sizes is never free)",
                    response["epsilon_spent"]
                )
            }
            (Err(error), false) => format!("{title}: rejected: {error:#}"),
            (Ok(_), false) => bail!("{title}: the query returned a result but must be rejected"),
            (Err(error), true) => return Err(error.context(title.to_owned())),
        };
        self.line(&text);
        let entries = self.json.entry("guards").or_insert_with(|| json!([]));
        if let Value::Array(list) = entries {
            list.push(json!({ "guard": title, "outcome": text }));
        }
        Ok(())
    }

    fn finish(self) {
        if self.out.is_json() {
            self.out.value("demo", &Value::Object(self.json));
        } else {
            println!(
                "\nDemo finished: only results that an agreement permits left a node: noisy aggregates, the size of an intersection, each party's own part of a trained model and the scores it was evaluated on."
            );
        }
    }
}
