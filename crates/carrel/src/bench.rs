//! `carrel bench dp-query`: times Carrel's differentially private query path against
//! plain DataFusion on the same generated Parquet table, in one process and one run.
//!
//! Two tables are generated from a fixed seed. In the first, every person has one row.
//! In the second, persons have about four rows each, so the policy's bound of one row
//! per person drops about three rows in four, and the figures show the cost of bounding.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use carrel_model::{
    Action, Classification, ColumnRole, ColumnRules, ColumnSpec, ColumnType, DataLevel,
    DatasetDescription, Price, PrivacyBudget, Rights, UsagePolicy,
};
use carrel_query::{RegisteredTable, check_query, execute, execute_without_noise_insecure};
use clap::Subcommand;
use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::Serialize;
use time::OffsetDateTime;

use crate::output::Output;

/// The query both paths run.
const SQL: &str = "SELECT region, COUNT(*), SUM(spend) FROM t GROUP BY region";
/// Epsilon each DP run spends.
const EPSILON: f64 = 1.0;
/// Delta of the policy, spent on group suppression.
const DELTA: f64 = 1e-9;
/// The policy's bound on each person's rows.
const MAX_ROWS_PER_UNIT: u32 = 1;
/// Seed of the row generator. Each table layout XORs in its own number.
const SEED: u64 = 0xCA77_E1DA_7A5E_ED01;
/// Rows per Arrow batch handed to the Parquet writer.
const BATCH_ROWS: u64 = 65_536;

/// Subcommands of `carrel bench`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time a DP aggregate query against plain DataFusion on generated Parquet tables.
    ///
    /// Runs `SELECT region, COUNT(*), SUM(spend) FROM t GROUP BY region` on a table
    /// with one row per person and on one with about four rows per person.
    DpQuery {
        /// Number of rows in each generated table.
        #[arg(long, default_value_t = 10_000_000,
              value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
        rows: u64,
        /// Number of distinct regions, the GROUP BY keys.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        groups: u64,
        /// Number of timed runs of each path. The output gives their median and minimum.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
    },
    /// Time a private set intersection between two real node processes on loopback.
    ///
    /// The consumer holds ids 0..N and the provider ids N/2..3N/2, so half of each set
    /// overlaps; the consumer learns the intersection. Reports wall time, each node's
    /// peak memory, the bytes of the request and response bodies, and the floor set by
    /// this machine's curve25519-dalek rates.
    Psi {
        /// Identifiers per side.
        #[arg(long, default_value_t = 1_000_000,
              value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        ids: u64,
        /// Elements per message.
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Time a private join-and-compute between two real node processes on loopback.
    ///
    /// The consumer holds ids 0..N in four groups, the provider rows for ids N/2..3N/2
    /// with a value each. Reports wall time, rows per second, peak memory and bytes.
    Join {
        /// Identifiers per side.
        #[arg(long, default_value_t = 10_000,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        ids: u64,
    },
    /// Time a secure aggregation across provider node processes on loopback.
    Secagg {
        /// Number of providers, at least 3.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=50))]
        providers: u64,
        /// Rows of each provider's product.
        #[arg(long, default_value_t = 100_000,
              value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        rows: u64,
    },
    /// Train on the shipped FATE data: the vertical model on each split of the breast and
    /// credit data and the horizontal model on the three credit files, in one process,
    /// beside Newton's method on the pooled rows. Prints test AUCs and times.
    Learn {
        /// Folder of the FATE files and their splits.
        #[arg(long, default_value = "data/fate")]
        data: std::path::PathBuf,
        /// Splits per vertical data set, from seed0.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10))]
        splits: u64,
    },
    /// Append entries to an audit log through the group committer on a temporary database
    /// file (WAL, synchronous = FULL), then time inclusion and consistency proofs read from
    /// the stored tiles, their verification, and a full verification of the log.
    Audit {
        /// Number of entries to append.
        #[arg(long, default_value_t = 1_000_000,
              value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
        entries: u64,
        /// Number of writer threads that submit entries.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
        writers: u64,
        /// Entries each writer submits before it waits for the reply to its oldest one.
        #[arg(long, default_value_t = 256,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        in_flight: u64,
        /// Maximum number of entries in one transaction.
        #[arg(long, default_value_t = carrel_ledger::commit::DEFAULT_MAX_BATCH as u64,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        max_batch: u64,
        /// Number of timed proofs of each kind. The output gives their median.
        #[arg(long, default_value_t = 2000,
              value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        samples: u64,
    },
}

/// Runs a benchmark command.
pub async fn run(command: BenchCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        BenchCommand::DpQuery { rows, groups, runs } => {
            let settings = Settings { rows, groups, runs };
            dp_query(&settings, out).await
        }
        BenchCommand::Psi { ids, batch } => crate::bench_joint::psi(ids, batch, out).await,
        BenchCommand::Join { ids } => crate::bench_joint::join(ids, out).await,
        BenchCommand::Learn { data, splits } => {
            crate::bench_learn::learn(&data, splits as usize, out)
        }
        BenchCommand::Secagg { providers, rows } => {
            crate::bench_joint::secagg(providers as usize, rows, out).await
        }
        BenchCommand::Audit {
            entries,
            writers,
            in_flight,
            max_batch,
            samples,
        } => {
            let settings = crate::bench_audit::Settings {
                entries,
                writers,
                in_flight,
                max_batch,
                samples,
            };
            crate::bench_audit::audit(&settings, out)
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Settings {
    rows: u64,
    groups: u64,
    runs: u32,
}

/// Pattern of the ids in a generated table.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Row `i` has id `i`.
    OneRowPerPerson,
    /// Ids are drawn uniformly from `rows / 4` values.
    AboutFourRowsPerPerson,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::OneRowPerPerson => "one_row_per_person",
            Layout::AboutFourRowsPerPerson => "about_four_rows_per_person",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Layout::OneRowPerPerson => "one row per person",
            Layout::AboutFourRowsPerPerson => "about four rows per person",
        }
    }

    /// Number of distinct id values the generator draws from.
    fn id_range(self, rows: u64) -> u64 {
        match self {
            Layout::OneRowPerPerson => rows,
            Layout::AboutFourRowsPerPerson => (rows / 4).max(1),
        }
    }
}

async fn dp_query(settings: &Settings, out: &Output) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("carrel-bench-")
        .tempdir()
        .context("failed to create a temporary folder for the generated tables")?;
    out.progress(&format!(
        "{} rows per table, {} regions, {} runs per path; tables in {}",
        settings.rows,
        settings.groups,
        settings.runs,
        dir.path().display()
    ));

    let mut variants = Vec::new();
    for layout in [Layout::OneRowPerPerson, Layout::AboutFourRowsPerPerson] {
        let path = dir.path().join(format!("{}.parquet", layout.name()));
        let started = Instant::now();
        generate_table(&path, layout, settings, out)?;
        let generate_seconds = started.elapsed().as_secs_f64();
        let table = RegisteredTable::new(description(), &path);
        let measured = measure(&table, layout, settings.runs, out).await?;
        variants.push(VariantReport::new(
            layout,
            settings,
            &path,
            generate_seconds,
            measured,
        )?);
    }

    let report = Report {
        benchmark: "dp-query",
        sql: SQL,
        epsilon: EPSILON,
        delta: DELTA,
        max_rows_per_unit: MAX_ROWS_PER_UNIT,
        settings: *settings,
        variants,
    };
    if out.is_json() {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

/// The SplitMix64 generator: fast, seeded and not cryptographic.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a value in `0..bound`. The modulo bias is at most `bound / 2^64`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// Builds the Arrow schema that a registered table declares: every column nullable.
fn table_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("age", DataType::Int64, true),
        Field::new("spend", DataType::Float64, true),
    ]))
}

/// Writes `settings.rows` generated rows to a Parquet file at `path`, with the writer
/// settings that dataset registration uses (the `ArrowWriter` defaults).
fn generate_table(
    path: &Path,
    layout: Layout,
    settings: &Settings,
    out: &Output,
) -> anyhow::Result<()> {
    out.progress(&format!(
        "generating {} ({})",
        layout.title(),
        path.display()
    ));
    let file =
        File::create(path).with_context(|| format!("failed to create {}", path.display()))?;
    let schema = table_schema();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), None)?;
    let mut rng = SplitMix64(SEED ^ layout as u64);
    let regions: Vec<String> = (0..settings.groups)
        .map(|i| format!("region_{i}"))
        .collect();

    let step = (settings.rows / 10).max(1);
    let mut next_report = step;
    let mut written = 0;
    while written < settings.rows {
        let len = (settings.rows - written).min(BATCH_ROWS);
        let batch = generate_batch(
            &schema,
            &mut rng,
            layout,
            settings.rows,
            written,
            len,
            &regions,
        )?;
        writer.write(&batch)?;
        written += len;
        if written >= next_report {
            out.progress(&format!("  {written} of {} rows written", settings.rows));
            next_report += step;
        }
    }
    writer.close()?;
    Ok(())
}

/// Generates rows `first..first + len`: id by layout, uniform region, age 18 to 90, and
/// spend in whole cents from 0 to 1,199.99.
///
/// About one spend value in six is above the declared bound of 1,000, so the DP path
/// clamps it.
fn generate_batch(
    schema: &SchemaRef,
    rng: &mut SplitMix64,
    layout: Layout,
    rows: u64,
    first: u64,
    len: u64,
    regions: &[String],
) -> anyhow::Result<RecordBatch> {
    let id_range = layout.id_range(rows);
    let capacity = len as usize;
    let mut ids = Vec::with_capacity(capacity);
    let mut region_names = Vec::with_capacity(capacity);
    let mut ages = Vec::with_capacity(capacity);
    let mut spends = Vec::with_capacity(capacity);
    for row in first..first + len {
        let id = match layout {
            Layout::OneRowPerPerson => row,
            Layout::AboutFourRowsPerPerson => rng.below(id_range),
        };
        // `--rows` is at most i64::MAX, so every id fits.
        ids.push(id as i64);
        region_names.push(regions[rng.below(regions.len() as u64) as usize].as_str());
        ages.push(18 + rng.below(73) as i64);
        spends.push(rng.below(120_000) as f64 / 100.0);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(region_names)),
        Arc::new(Int64Array::from(ages)),
        Arc::new(Float64Array::from(spends)),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Describes table `t` (id, region, age, spend) with privacy unit `id` and spend
/// bounded to [0, 1000].
fn description() -> DatasetDescription {
    DatasetDescription {
        name: "t".into(),
        title: "Generated benchmark table".into(),
        description: String::new(),
        columns: vec![
            ColumnSpec::new("id", ColumnType::Integer, ColumnRole::Identifier, None),
            ColumnSpec::new(
                "region",
                ColumnType::Text,
                ColumnRole::QuasiIdentifier,
                None,
            ),
            ColumnSpec::new(
                "age",
                ColumnType::Integer,
                ColumnRole::QuasiIdentifier,
                Some((0.0, 120.0)),
            ),
            ColumnSpec::new(
                "spend",
                ColumnType::Float,
                ColumnRole::Sensitive,
                Some((0.0, 1000.0)),
            ),
        ],
        privacy_unit: Some("id".into()),
        classification: Classification {
            level: DataLevel::General,
            personal_information: true,
            sensitive_personal_information: false,
            region: "US-CA".into(),
        },
        rights: Rights {
            holder: "provider".into(),
            processors: vec!["provider".into()],
            operators: vec!["provider".into()],
        },
    }
}

/// Builds the offer's policy: group by and filter on region, aggregate spend, minimum
/// group 10, one row per person, delta 1e-9.
fn policy() -> UsagePolicy {
    let now = OffsetDateTime::now_utc();
    UsagePolicy {
        action: Action::AggregateQuery,
        purposes: vec!["benchmark".into()],
        valid_from: now - time::Duration::minutes(1),
        valid_until: now + time::Duration::days(1),
        max_queries: u64::MAX,
        budget: PrivacyBudget {
            epsilon: f64::MAX,
            delta: 0.5,
        },
        query_epsilon: EPSILON,
        query_delta: DELTA,
        min_group_size: 10,
        max_rows_per_unit: MAX_ROWS_PER_UNIT,
        columns: ColumnRules {
            group_by: vec!["region".into()],
            aggregate: vec!["spend".into()],
            filter: vec!["region".into()],
        },
        price_per_query: Price {
            amount_minor: 0,
            currency: "USD".into(),
        },
        usage_regions: vec!["US-CA".into()],
        psi: None,
        secure_aggregation: None,
        join: None,
        training: None,
    }
}

/// Durations of every run of each path on one table, and what the runs returned.
#[derive(Default)]
struct Measured {
    plain: Vec<Duration>,
    check: Vec<Duration>,
    execute: Vec<Duration>,
    dp: Vec<Duration>,
    exact: Vec<Duration>,
    /// Sum of COUNT(*) over the plain result's groups.
    plain_rows: u64,
    /// Rows kept after bounding, summed over the exact result's groups.
    bounded_rows: u64,
    /// Distinct persons, summed over the exact result's groups.
    persons: u64,
    released_groups: usize,
    peak_memory_bytes: Option<u64>,
}

/// Runs each path `runs` times, interleaved so that a slow spell of the machine falls
/// on all paths alike.
async fn measure(
    table: &RegisteredTable,
    layout: Layout,
    runs: u32,
    out: &Output,
) -> anyhow::Result<Measured> {
    let policy = policy();
    let mut measured = Measured::default();
    reset_peak_memory();
    for run in 1..=runs {
        let started = Instant::now();
        measured.plain_rows = run_plain(&table.parquet).await?;
        measured.plain.push(started.elapsed());

        // The DP path from SQL text to release: plan check, then bounding, exact
        // aggregation and noise.
        let started = Instant::now();
        let checked = check_query(SQL, table, &policy).await?;
        let checked_at = Instant::now();
        let release = execute(&checked, EPSILON).await?;
        let finished = Instant::now();
        measured.check.push(checked_at - started);
        measured.execute.push(finished - checked_at);
        measured.dp.push(finished - started);
        measured.released_groups = release.rows.len();

        // The same execution without noise, from a fresh check as the DP path had.
        let checked = check_query(SQL, table, &policy).await?;
        let started = Instant::now();
        let exact = execute_without_noise_insecure(&checked).await?;
        measured.exact.push(started.elapsed());
        measured.bounded_rows = exact.groups.iter().map(|g| g.rows).sum();
        measured.persons = exact.groups.iter().map(|g| g.persons).sum();

        out.progress(&format!(
            "{}, run {run} of {runs}: plain {:.3} s, DP {:.3} s, exact {:.3} s",
            layout.title(),
            seconds(measured.plain.last()),
            seconds(measured.dp.last()),
            seconds(measured.exact.last()),
        ));
    }
    measured.peak_memory_bytes = peak_memory_bytes();
    Ok(measured)
}

fn seconds(duration: Option<&Duration>) -> f64 {
    duration.map_or(f64::NAN, Duration::as_secs_f64)
}

/// Runs [`SQL`] with plain DataFusion and returns the total of its COUNT(*) column.
///
/// Each call starts a new session, as the DP path does for each query.
async fn run_plain(parquet: &Path) -> anyhow::Result<u64> {
    let ctx = SessionContext::new();
    let path = parquet
        .to_str()
        .context("the temporary folder's path is not UTF-8; set TMPDIR to a UTF-8 path")?;
    ctx.register_parquet("t", path, ParquetReadOptions::default())
        .await?;
    let batches = ctx.sql(SQL).await?.collect().await?;
    let mut total = 0;
    for batch in &batches {
        let counts = batch.column(1).as_primitive_opt::<Int64Type>().context(
            "plain DataFusion returned COUNT(*) with a type other than Int64; update the benchmark",
        )?;
        total += counts.iter().flatten().sum::<i64>();
    }
    Ok(u64::try_from(total)?)
}

/// Resets the process's peak resident memory through Linux `clear_refs`.
/// Elsewhere it does nothing.
fn reset_peak_memory() {
    // NOTE: if the reset fails, the reported peak covers the whole process so far.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Reads the process's peak resident memory since the last reset from
/// `/proc/self/status`. Returns `None` where that file does not exist.
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kibibytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kibibytes * 1024)
}

/// Median and minimum of a path's runs, in seconds.
#[derive(Serialize)]
struct Summary {
    median_seconds: f64,
    min_seconds: f64,
    runs_seconds: Vec<f64>,
}

impl Summary {
    fn of(durations: &[Duration]) -> Self {
        let runs: Vec<f64> = durations.iter().map(Duration::as_secs_f64).collect();
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Summary {
            median_seconds: median,
            min_seconds: sorted[0],
            runs_seconds: runs,
        }
    }
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    sql: &'static str,
    epsilon: f64,
    delta: f64,
    max_rows_per_unit: u32,
    settings: Settings,
    variants: Vec<VariantReport>,
}

/// Figures of one table layout.
#[derive(Serialize)]
struct VariantReport {
    variant: &'static str,
    rows: u64,
    persons: u64,
    rows_after_bounding: u64,
    released_groups: usize,
    parquet_bytes: u64,
    generate_seconds: f64,
    /// Plain DataFusion: new session, register the file, plan, run.
    plain: Summary,
    /// The DP path: `check_query` then `execute`.
    dp: Summary,
    /// `check_query` alone, timed within the DP runs.
    check: Summary,
    /// `execute` alone, timed within the DP runs.
    execute: Summary,
    /// `execute_without_noise_insecure`: scan, bounding, clamping, exact totals.
    exact: Summary,
    /// Estimate of the noise step: median of `execute` minus median of `exact`.
    noise_seconds_estimate: f64,
    /// Median of the DP path over median of plain DataFusion.
    ratio: f64,
    /// `(ratio - 1) × 100`.
    overhead_percent: f64,
    /// Peak resident memory of the process during this variant's runs.
    peak_memory_bytes: Option<u64>,
}

impl VariantReport {
    fn new(
        layout: Layout,
        settings: &Settings,
        path: &Path,
        generate_seconds: f64,
        measured: Measured,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            measured.plain_rows == settings.rows,
            "plain DataFusion counted {} rows in a table of {}; the generated file is wrong",
            measured.plain_rows,
            settings.rows
        );
        let plain = Summary::of(&measured.plain);
        let dp = Summary::of(&measured.dp);
        let execute = Summary::of(&measured.execute);
        let exact = Summary::of(&measured.exact);
        let ratio = dp.median_seconds / plain.median_seconds;
        Ok(VariantReport {
            variant: layout.name(),
            rows: settings.rows,
            persons: measured.persons,
            rows_after_bounding: measured.bounded_rows,
            released_groups: measured.released_groups,
            parquet_bytes: std::fs::metadata(path)?.len(),
            generate_seconds,
            check: Summary::of(&measured.check),
            noise_seconds_estimate: execute.median_seconds - exact.median_seconds,
            plain,
            dp,
            execute,
            exact,
            ratio,
            overhead_percent: (ratio - 1.0) * 100.0,
            peak_memory_bytes: measured.peak_memory_bytes,
        })
    }
}

fn print_text(report: &Report) {
    println!("bench dp-query: {}", report.sql);
    println!(
        "{} rows per table, {} regions, {} runs per path; epsilon {}, delta {:e}, at most {} \
         row per person",
        report.settings.rows,
        report.settings.groups,
        report.settings.runs,
        report.epsilon,
        report.delta,
        report.max_rows_per_unit
    );
    for variant in &report.variants {
        print_variant(variant);
    }
}

fn print_variant(v: &VariantReport) {
    println!();
    println!(
        "{}: {} rows, {} persons, {} rows after bounding, {:.1} MB Parquet generated in \
         {:.1} s",
        v.variant,
        v.rows,
        v.persons,
        v.rows_after_bounding,
        v.parquet_bytes as f64 / 1e6,
        v.generate_seconds
    );

    println!("  {:<44} {:>10} {:>10}", "", "median ms", "min ms");
    let line = |label: &str, s: &Summary| {
        println!(
            "  {label:<44} {:>10.1} {:>10.1}",
            s.median_seconds * 1e3,
            s.min_seconds * 1e3
        );
    };
    line("plain DataFusion", &v.plain);
    line("DP path (check_query + execute)", &v.dp);
    line("  check_query", &v.check);
    line("  execute", &v.execute);
    line("  exact aggregation (no noise)", &v.exact);
    println!(
        "  {:<44} {:>10.1}",
        "  noise (execute - exact, medians)",
        v.noise_seconds_estimate * 1e3
    );

    println!(
        "  DP / plain: {:.2}x, overhead {:+.1}%; {} groups released",
        v.ratio, v.overhead_percent, v.released_groups
    );
    if let Some(bytes) = v.peak_memory_bytes {
        println!(
            "  peak resident memory during these runs: {:.2} GB",
            bytes as f64 / 1e9
        );
    }
}
