//! `carrel bench audit`: durable appends to the audit log through the group committer,
//! then proofs read from the stored tiles and a full verification, on a temporary database
//! file with `journal_mode = WAL` and `synchronous = FULL`.
//!
//! Writer threads submit entries and keep a window of them waiting for their reply, as
//! callers that pipeline their requests would. Proofs are timed on a new connection to the
//! same file, so SQLite's page cache starts empty, but the operating system's file cache is
//! warm.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use carrel_ledger::merkle::{self, Hash};
use carrel_ledger::{AuditLog, GroupCommitter, NoteSigner, PendingAppend};
use ed25519_dalek::SigningKey;
use rusqlite::Connection;
use serde::Serialize;

use crate::output::Output;

/// Origin line of the benchmark's log.
const ORIGIN: &str = "carrel.example/bench/audit";
/// Seed of the sample generator.
const SEED: u64 = 0x5EED_A0D1_7106_0001;
/// Timed runs of the reference proof, which reads every leaf hash.
const REFERENCE_RUNS: usize = 3;

/// Settings of `carrel bench audit`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Settings {
    /// Entries appended.
    pub entries: u64,
    /// Writer threads.
    pub writers: u64,
    /// Entries each writer keeps submitted without a reply.
    pub in_flight: u64,
    /// Maximum entries per transaction.
    pub max_batch: u64,
    /// Timed proofs of each kind.
    pub samples: u64,
}

/// Runs the benchmark and prints a table, or one JSON line with `--json`.
pub fn audit(settings: &Settings, out: &Output) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("carrel-bench-audit-")
        .tempdir()
        .context("failed to create a temporary folder for the database")?;
    let path = dir.path().join("audit.db");
    out.progress(&format!(
        "appending {} entries from {} writers, {} in flight each, into {}",
        settings.entries,
        settings.writers,
        settings.in_flight,
        path.display()
    ));
    let append = append(&path, settings, out)?;

    let conn = Connection::open(&path)?;
    let checkpoints = checkpoints(&conn)?;
    let latest = *checkpoints
        .last()
        .context("the log has no checkpoint after the appends")?;
    anyhow::ensure!(
        latest.0 == settings.entries,
        "the latest checkpoint covers {} entries, expected {}",
        latest.0,
        settings.entries
    );

    let mut rng = XorShift64Star(SEED);
    out.progress(&format!("timing {} inclusion proofs", settings.samples));
    let inclusion = time_inclusion(&conn, latest, settings.samples, &mut rng)?;
    out.progress(&format!("timing {} consistency proofs", settings.samples));
    let consistency = time_consistency(&conn, &checkpoints, settings.samples, &mut rng)?;
    out.progress("timing the reference proof, which reads every leaf hash");
    let reference_ms = time_reference(&conn, latest.0, &mut rng)?;
    out.progress("verifying the whole log");
    let started = Instant::now();
    let verifier = signer()?.verifier();
    let verified = AuditLog::verify(&conn, ORIGIN, &verifier)?;
    let verify_seconds = started.elapsed().as_secs_f64();

    let report = Report {
        benchmark: "audit",
        settings: *settings,
        available_threads: std::thread::available_parallelism().map_or(0, |n| n.get()),
        append,
        inclusion,
        consistency,
        reference_inclusion_ms: median(&reference_ms),
        verify: VerifyFigures {
            seconds: verify_seconds,
            entries: verified.tree_size,
            checkpoints: verified.checkpoints_checked,
        },
    };
    if out.is_json() {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

/// Creates the benchmark log's signer. The key is fixed because the log is deleted after
/// the run.
fn signer() -> anyhow::Result<NoteSigner> {
    Ok(NoteSigner::ed25519(
        ORIGIN,
        SigningKey::from_bytes(&[0xA7; 32]),
    )?)
}

/// Opens the database with the settings that make each commit durable.
fn open_durable(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    AuditLog::create_schema(&conn)?;
    Ok(conn)
}

/// Appends the entries through a group committer from `settings.writers` threads.
fn append(path: &Path, settings: &Settings, out: &Output) -> anyhow::Result<AppendFigures> {
    let max_batch = usize::try_from(settings.max_batch)?;
    let committer = GroupCommitter::start(open_durable(path)?, ORIGIN, signer()?, max_batch)?;
    let committed = AtomicU64::new(0);
    let step = (settings.entries / 10).max(1);

    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let writers: Vec<_> = (0..settings.writers)
            .map(|writer| {
                let (committer, committed) = (&committer, &committed);
                let count = settings.entries / settings.writers
                    + u64::from(writer < settings.entries % settings.writers);
                let progress = Progress {
                    committed,
                    step,
                    total: settings.entries,
                    out,
                };
                scope.spawn(move || write(committer, writer, count, settings.in_flight, &progress))
            })
            .collect();
        for writer in writers {
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        }
        Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();

    let stats = committer.stats();
    drop(committer.shutdown()?);
    let database_bytes = ["audit.db", "audit.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(path.with_file_name(name)).ok())
        .map(|metadata| metadata.len())
        .sum();
    Ok(AppendFigures {
        seconds,
        entries_per_second: stats.entries as f64 / seconds,
        batches: stats.batches,
        mean_batch: stats.entries as f64 / stats.batches.max(1) as f64,
        max_batch: stats.max_batch,
        mean_batch_ms: seconds * 1e3 / stats.batches.max(1) as f64,
        database_bytes,
    })
}

/// The count of committed entries, shared by the writers, which report every tenth.
struct Progress<'a> {
    committed: &'a AtomicU64,
    step: u64,
    total: u64,
    out: &'a Output,
}

impl Progress<'_> {
    fn count_reply(&self) {
        let done = self.committed.fetch_add(1, Ordering::Relaxed) + 1;
        if done.is_multiple_of(self.step) {
            self.out
                .progress(&format!("  {done} of {} entries committed", self.total));
        }
    }
}

/// Submits `count` entries of one writer, keeping at most `in_flight` of them waiting for
/// their reply, and waits for every reply.
fn write(
    committer: &GroupCommitter,
    writer: u64,
    count: u64,
    in_flight: u64,
    progress: &Progress<'_>,
) -> anyhow::Result<()> {
    let mut pending: VecDeque<PendingAppend> = VecDeque::new();
    for n in 0..count {
        pending.push_back(committer.submit(entry(writer, n)));
        if pending.len() as u64 >= in_flight
            && let Some(oldest) = pending.pop_front()
        {
            oldest.wait()?;
            progress.count_reply();
        }
    }
    for append in pending {
        append.wait()?;
        progress.count_reply();
    }
    Ok(())
}

/// Builds an entry shaped like the node's query events, about 80 bytes.
fn entry(writer: u64, n: u64) -> Vec<u8> {
    format!(r#"{{"kind":"query","actor":"consumer-{writer}","n":{n},"epsilon":0.5,"rows":1000}}"#)
        .into_bytes()
}

/// Reads every stored checkpoint's tree size and root, smallest first.
fn checkpoints(conn: &Connection) -> anyhow::Result<Vec<(u64, Hash)>> {
    let mut statement =
        conn.prepare("SELECT tree_size, root_hash FROM audit_checkpoints ORDER BY tree_size")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, Hash>(1)?))
    })?;
    let mut checkpoints = Vec::new();
    for row in rows {
        let (size, root) = row?;
        checkpoints.push((u64::try_from(size)?, root));
    }
    Ok(checkpoints)
}

/// Times inclusion proofs of random entries in the latest checkpoint, and their
/// verification against its root.
fn time_inclusion(
    conn: &Connection,
    (tree_size, root): (u64, Hash),
    samples: u64,
    rng: &mut XorShift64Star,
) -> anyhow::Result<ProofFigures> {
    let mut timings = Timings::default();
    for _ in 0..samples {
        let index = rng.below(tree_size);
        let leaf = merkle::leaf_hash(&AuditLog::entry(conn, index)?);
        let started = Instant::now();
        let proof = AuditLog::inclusion_proof(conn, index, tree_size)?;
        let generated = Instant::now();
        merkle::verify_inclusion(&leaf, index, tree_size, &proof, &root)?;
        timings.record(generated - started, generated.elapsed(), proof.len());
    }
    Ok(timings.figures())
}

/// Times consistency proofs between two random stored checkpoints, and their verification
/// against both roots.
fn time_consistency(
    conn: &Connection,
    checkpoints: &[(u64, Hash)],
    samples: u64,
    rng: &mut XorShift64Star,
) -> anyhow::Result<ProofFigures> {
    let count = checkpoints.len() as u64;
    let mut timings = Timings::default();
    for _ in 0..samples {
        let a = checkpoints[rng.below(count) as usize];
        let b = checkpoints[rng.below(count) as usize];
        let ((old_size, old_root), (new_size, new_root)) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        let started = Instant::now();
        let proof = AuditLog::consistency_proof(conn, old_size, new_size)?;
        let generated = Instant::now();
        merkle::verify_consistency(old_size, new_size, &old_root, &new_root, &proof)?;
        timings.record(generated - started, generated.elapsed(), proof.len());
    }
    Ok(timings.figures())
}

/// Times the in-memory reference: read every leaf hash, then build the inclusion proof
/// from them. Each result must equal the proof built from the tiles.
fn time_reference(
    conn: &Connection,
    tree_size: u64,
    rng: &mut XorShift64Star,
) -> anyhow::Result<Vec<f64>> {
    let mut runs = Vec::new();
    for _ in 0..REFERENCE_RUNS {
        let index = rng.below(tree_size);
        let started = Instant::now();
        let mut statement =
            conn.prepare_cached("SELECT leaf_hash FROM audit_entries WHERE idx < ?1 ORDER BY idx")?;
        let leaves = statement
            .query_map([i64::try_from(tree_size)?], |row| row.get::<_, Hash>(0))?
            .collect::<rusqlite::Result<Vec<Hash>>>()?;
        let reference = merkle::inclusion_proof(&leaves, index, tree_size)?;
        runs.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            reference == AuditLog::inclusion_proof(conn, index, tree_size)?,
            "the proof from the tiles differs from the reference proof for entry {index}"
        );
    }
    Ok(runs)
}

/// Durations of generating and verifying proofs, in microseconds.
#[derive(Default)]
struct Timings {
    generate_us: Vec<f64>,
    verify_us: Vec<f64>,
    hashes: usize,
}

impl Timings {
    fn record(&mut self, generate: Duration, verify: Duration, hashes: usize) {
        self.generate_us.push(generate.as_secs_f64() * 1e6);
        self.verify_us.push(verify.as_secs_f64() * 1e6);
        self.hashes += hashes;
    }

    fn figures(&self) -> ProofFigures {
        ProofFigures {
            samples: self.generate_us.len(),
            generate_median_us: median(&self.generate_us),
            generate_p99_us: percentile(&self.generate_us, 0.99),
            verify_median_us: median(&self.verify_us),
            mean_proof_hashes: self.hashes as f64 / self.generate_us.len().max(1) as f64,
        }
    }
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// Returns the value at rank `fraction` of the sorted values (nearest rank), or NaN for none.
fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).max(1);
    sorted.get(rank - 1).copied().unwrap_or(f64::NAN)
}

/// The xorshift64* generator: fast, seeded and not cryptographic.
struct XorShift64Star(u64);

impl XorShift64Star {
    /// Returns a value in `0..bound`. The modulo bias is at most `bound / 2^64`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    settings: Settings,
    available_threads: usize,
    append: AppendFigures,
    inclusion: ProofFigures,
    consistency: ProofFigures,
    /// Median time of reading every leaf hash and building one inclusion proof from them.
    reference_inclusion_ms: f64,
    verify: VerifyFigures,
}

/// Figures of the appends through the group committer.
#[derive(Serialize)]
struct AppendFigures {
    seconds: f64,
    /// Entries committed per second, each replied to only after its commit.
    entries_per_second: f64,
    /// Committed transactions, one signed checkpoint and one WAL sync each.
    batches: u64,
    mean_batch: f64,
    max_batch: u64,
    /// Wall time per transaction.
    mean_batch_ms: f64,
    /// Size of the database file and its write-ahead log after the appends.
    database_bytes: u64,
}

/// Figures of one kind of proof.
#[derive(Serialize)]
struct ProofFigures {
    samples: usize,
    generate_median_us: f64,
    generate_p99_us: f64,
    verify_median_us: f64,
    mean_proof_hashes: f64,
}

/// Figures of `AuditLog::verify` over the whole log.
#[derive(Serialize)]
struct VerifyFigures {
    seconds: f64,
    entries: u64,
    checkpoints: u64,
}

fn print_text(report: &Report) {
    let settings = &report.settings;
    let append = &report.append;
    println!(
        "bench audit: {} entries, {} writers with {} in flight each, at most {} per batch, \
         {} threads available",
        settings.entries,
        settings.writers,
        settings.in_flight,
        settings.max_batch,
        report.available_threads
    );
    println!("WAL, synchronous = FULL; each writer receives an index only after its batch commits");
    println!();
    println!(
        "  durable appends            {:>12.0} entries/s ({:.1} s)",
        append.entries_per_second, append.seconds
    );
    println!(
        "  batches                    {:>12} (mean {:.1} entries, max {}, {:.2} ms each)",
        append.batches, append.mean_batch, append.max_batch, append.mean_batch_ms
    );
    println!(
        "  database size              {:>12.1} MB",
        append.database_bytes as f64 / 1e6
    );
    println!();
    println!(
        "  {:<26} {:>12} {:>12} {:>12} {:>8}",
        "proof", "generate µs", "p99 µs", "verify µs", "hashes"
    );
    for (name, figures) in [
        ("inclusion", &report.inclusion),
        ("consistency", &report.consistency),
    ] {
        println!(
            "  {name:<26} {:>12.1} {:>12.1} {:>12.1} {:>8.1}",
            figures.generate_median_us,
            figures.generate_p99_us,
            figures.verify_median_us,
            figures.mean_proof_hashes
        );
    }
    println!(
        "  reference inclusion proof from all leaf hashes: {:.1} ms (median of {REFERENCE_RUNS})",
        report.reference_inclusion_ms
    );
    println!();
    println!(
        "  full verification          {:>12.2} s ({} entries, {} checkpoints)",
        report.verify.seconds, report.verify.entries, report.verify.checkpoints
    );
}
