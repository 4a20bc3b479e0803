//! The `carrel` command: run a node, publish datasets, negotiate agreements, run
//! differentially private queries and private set intersections, follow jobs, check
//! audit logs, and run the demo.

/// Prints to standard output like `std::println!`, but a closed pipe (as in
/// `carrel --json catalog | head`) ends the output quietly instead of panicking.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints to standard output like `std::print!`, ignoring a closed pipe.
macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod admin;
mod audit;
mod bench;
mod bench_audit;
mod bench_joint;
mod bench_learn;
mod cluster;
mod demo;
mod demo_joint;
mod demo_learn;
mod exact;
mod output;
mod receipts;
mod trust;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use carrel_model::Role;
use carrel_node::{NodeConfig, NodeDir, PinnedExchange};
use clap::{Parser, Subcommand, ValueEnum};

use crate::output::Output;

/// Carrel: a trusted data space. Data stays with its holder; only results that a
/// signed agreement permits leave, and every decision is in a verifiable audit log.
#[derive(Parser)]
#[command(name = "carrel", version)]
struct Cli {
    /// Print results as JSON, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Exchange,
    Provider,
    Consumer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Exchange => Role::Exchange,
            RoleArg::Provider => Role::Provider,
            RoleArg::Consumer => Role::Consumer,
        }
    }
}

/// Node folder option shared by the commands that talk to a running node.
#[derive(clap::Args)]
struct NodeArg {
    /// Node folder of the running node to act as.
    #[arg(long, env = "CARREL_NODE", default_value = ".")]
    node: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node folder: identity key, database, empty audit log.
    Init {
        /// Folder to create.
        dir: PathBuf,
        /// Participant name, unique in the data space (letters, digits, '-', '_', '.').
        #[arg(long)]
        name: String,
        /// Role of the node.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// HTTPS URL of the exchange (participants only).
        #[arg(long)]
        exchange: Option<String>,
        /// Base64 Ed25519 public key of the exchange, pinned now (participants only).
        #[arg(long)]
        exchange_key: Option<String>,
        /// Participant name of the exchange.
        #[arg(long, default_value = "exchange")]
        exchange_name: String,
        /// Address to listen on; port 0 picks a free port at each start.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Run a node's HTTPS API until SIGINT or SIGTERM.
    Serve {
        /// Node folder.
        dir: PathBuf,
    },
    /// Register a dataset from a CSV or Parquet file (provider).
    Register {
        #[command(flatten)]
        node: NodeArg,
        /// CSV or Parquet file on this machine.
        file: PathBuf,
        /// JSON file describing the dataset: columns, roles, bounds, privacy unit,
        /// classification and rights.
        #[arg(long)]
        description: PathBuf,
    },
    /// Publish a data product with its offer; the exchange reviews it (provider).
    Publish {
        #[command(flatten)]
        node: NodeArg,
        /// Registered dataset name or id.
        #[arg(long)]
        dataset: String,
        /// Catalog title.
        #[arg(long)]
        title: String,
        /// JSON file with the usage policy of the offer.
        #[arg(long)]
        policy: PathBuf,
    },
    /// Show the exchange's catalog.
    Catalog {
        #[command(flatten)]
        node: NodeArg,
    },
    /// Negotiate an agreement for an offer and wait until it is finalized (consumer).
    Negotiate {
        #[command(flatten)]
        node: NodeArg,
        /// Offer id from the catalog.
        #[arg(long)]
        offer: String,
        /// Purpose declared to the provider; must be one the offer allows.
        #[arg(long)]
        purpose: String,
    },
    /// Show an agreement and verify its three signatures.
    Agreement {
        #[command(flatten)]
        node: NodeArg,
        /// Agreement id.
        id: String,
    },
    /// Revoke a finalized agreement; every later use is rejected.
    Revoke {
        #[command(flatten)]
        node: NodeArg,
        /// Agreement id.
        id: String,
        /// Reason recorded in the audit logs.
        #[arg(long, default_value = "revoked by a party")]
        reason: String,
    },
    /// Run a differentially private aggregate query under an agreement (consumer).
    Query {
        #[command(flatten)]
        node: NodeArg,
        /// Agreement id.
        #[arg(long)]
        agreement: String,
        /// Epsilon to spend; the offer's default when absent.
        #[arg(long, value_parser = parse_epsilon, allow_hyphen_values = true)]
        epsilon: Option<f64>,
        /// SQL text: SELECT with COUNT, SUM or AVG over permitted columns.
        sql: String,
    },
    /// Intersect a file of identifiers with a provider's product without revealing
    /// the other identifiers (consumer); shows progress and waits for the result.
    Psi {
        #[command(flatten)]
        node: NodeArg,
        /// Agreement id; its offer must permit private set intersection.
        #[arg(long)]
        agreement: String,
        /// CSV file of identifiers with a header line.
        #[arg(long)]
        ids: PathBuf,
        /// Column holding the identifiers; the first when absent.
        #[arg(long)]
        column: Option<String>,
        /// Elements per message, 1 to 65536.
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Join a file of identifiers, each with a group label, with a provider's product and
    /// learn per group only noisy counts and sums of its values (consumer).
    Join {
        #[command(flatten)]
        node: NodeArg,
        /// Agreement id; its offer must permit private join-and-compute.
        #[arg(long)]
        agreement: String,
        /// CSV file of identifiers with a header line.
        #[arg(long)]
        ids: PathBuf,
        /// Column holding the identifiers; the first when absent.
        #[arg(long)]
        id_column: Option<String>,
        /// Column holding each identifier's group label; one group when absent.
        #[arg(long)]
        group_column: Option<String>,
        /// Epsilon to spend; the offer's default when absent.
        #[arg(long, value_parser = parse_epsilon, allow_hyphen_values = true)]
        epsilon: Option<f64>,
    },
    /// Sum the row count and columns of three or more providers' products so that only
    /// the noisy total is learned (consumer); waits for the result.
    Aggregate {
        #[command(flatten)]
        node: NodeArg,
        /// One agreement per provider, each permitting secure aggregation; repeat it.
        #[arg(long = "agreement", required = true)]
        agreements: Vec<String>,
        /// Column to sum beside the row count; repeat it.
        #[arg(long = "column", required = true)]
        columns: Vec<String>,
        /// Epsilon each provider spends; the offers' default when absent.
        #[arg(long, value_parser = parse_epsilon, allow_hyphen_values = true)]
        epsilon: Option<f64>,
    },
    /// Train a logistic-regression model across parties (consumer); waits for the
    /// model, showing progress per round or epoch.
    Train(Box<TrainArgs>),
    /// Score the rows of a CSV file with a trained model, as a job under the training
    /// agreement (the model's operator); waits for the result.
    Predict {
        #[command(flatten)]
        node: NodeArg,
        /// Model id, such as model-<training job id>.
        #[arg(long)]
        model: String,
        /// CSV file with the ids and this node's feature columns of the model.
        #[arg(long)]
        data: PathBuf,
        /// Id column of the data file.
        #[arg(long, default_value = "id")]
        id_column: String,
        /// CSV file to write, with the columns id, logit and probability.
        #[arg(long, default_value = "predictions.csv")]
        output: PathBuf,
    },
    /// Show the trained models of which this node has a part.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Show multi-party jobs.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Check a node's audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run the whole story on real census data with three node processes.
    Demo {
        /// Keep the nodes' folders here instead of a temporary folder.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Run a benchmark on generated data.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// Kind of federated training, as the command line names it.
#[derive(Clone, Copy, clap::ValueEnum)]
enum TrainKind {
    /// Same columns, different rows: three or more providers.
    Horizontal,
    /// Same persons, different columns: this node's labels and features with one provider's.
    Vertical,
}

/// Arguments of `carrel train`.
#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    node: NodeArg,
    /// Horizontal or vertical.
    #[arg(long)]
    kind: TrainKind,
    /// Agreement with a provider, permitting federated training; repeat it for each
    /// provider of a horizontal training.
    #[arg(long = "agreement", required = true)]
    agreements: Vec<String>,
    /// Vertical: this node's CSV file with ids, labels and its own features.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Vertical: id column of the data file (default `id`).
    #[arg(long)]
    id_column: Option<String>,
    /// Vertical: label column of the data file (default `y`).
    #[arg(long)]
    label_column: Option<String>,
    /// Vertical: a feature column of the data file; repeat it (default: every other column).
    #[arg(long = "feature")]
    features: Vec<String>,
    /// Horizontal: this node's held-out CSV file to evaluate the model on.
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Vertical: split file marking each id `train` or `test`.
    #[arg(long)]
    split_file: Option<PathBuf>,
    /// Vertical: column of the split file to use, such as `seed0`.
    #[arg(long)]
    split: Option<String>,
    /// Rounds (horizontal) or epochs (vertical).
    #[arg(long)]
    rounds: Option<u32>,
    /// Step size of the gradient steps.
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Rows per gradient step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Horizontal: passes over each provider's rows per round.
    #[arg(long)]
    local_epochs: Option<u32>,
    /// Stop after this many rounds or epochs without enough fall of the loss.
    #[arg(long)]
    patience: Option<u32>,
    /// Smallest relative fall of the loss that counts, with --patience (default 0.001).
    #[arg(long)]
    min_improvement: Option<f64>,
    /// Horizontal: DP-SGD noise multiplier at every provider.
    #[arg(long)]
    noise_multiplier: Option<f64>,
    /// Horizontal: DP-SGD per-example clipping norm (default 1.0).
    #[arg(long)]
    clip_norm: Option<f64>,
    /// Horizontal: delta of the DP-SGD privacy loss (default 1e-6).
    #[arg(long)]
    delta: Option<f64>,
    /// Training seed; the same seed on the same data gives the same model.
    #[arg(long)]
    seed: Option<u64>,
    /// Folder for the report: report.json, loss.svg and roc.svg.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// List the models, or show one.
    Show {
        #[command(flatten)]
        node: NodeArg,
        /// Model id; every model when absent.
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// Show one job's state, phase, progress and result, or every job.
    Status {
        #[command(flatten)]
        node: NodeArg,
        /// Job id; every job when absent.
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the whole log against its latest signed checkpoint.
    Verify {
        /// Node folder.
        dir: PathBuf,
    },
    /// Print the inclusion proof of one entry against the latest checkpoint.
    Prove {
        /// Node folder.
        dir: PathBuf,
        /// Entry index, from 0.
        index: u64,
    },
    /// Write a C2SP tlog-policy for another node's log from the keys this node trusts.
    Policy {
        #[command(flatten)]
        node: NodeArg,
        /// Participant whose log the policy trusts.
        #[arg(long)]
        log: String,
        /// Participant trusted as a witness; repeat it (default: this node and the
        /// exchange, which witness the logs of the parties they work with).
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// How many of the witnesses must cosign a checkpoint (default: all of them).
        #[arg(long)]
        quorum: Option<usize>,
        /// File to write the policy to; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fetch a receipt (C2SP tlog-proof) for each of another node's audit entries about an
    /// agreement, with the entry and the log's policy, into a folder.
    Receipts {
        #[command(flatten)]
        node: NodeArg,
        /// Participant whose log contains the entries.
        #[arg(long)]
        from: String,
        /// Agreement id.
        #[arg(long)]
        agreement: String,
        /// Folder for the files `{PEER}-{INDEX}.tlog-proof` and `{PEER}.policy`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a receipt offline against a tlog-policy and print its entry.
    VerifyReceipt {
        /// Receipt file (C2SP tlog-proof) with the entry on its extra line.
        file: PathBuf,
        /// Policy file (C2SP tlog-policy).
        #[arg(long)]
        policy: PathBuf,
    },
    /// Follow other nodes' checkpoints and raise an alarm on a fork or a rollback.
    Watch {
        #[command(flatten)]
        node: NodeArg,
        /// Participant whose log to watch; repeat it.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
        /// Time between two rounds, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Stop after this many rounds and exit non-zero if any alarm was raised; no
        /// limit when absent.
        #[arg(long)]
        rounds: Option<u64>,
    },
}

/// Parses an epsilon: a finite number above 0.
fn parse_epsilon(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!(
            "epsilon {text:?} is invalid: give a finite number above 0, such as 0.5"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            out.error(&error);
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, out: &Output) -> anyhow::Result<()> {
    match command {
        Command::Init {
            dir,
            name,
            role,
            exchange,
            exchange_key,
            exchange_name,
            listen,
        } => {
            let exchange = match (exchange, exchange_key) {
                (Some(url), Some(public_key)) => Some(PinnedExchange {
                    name: exchange_name,
                    url,
                    public_key,
                }),
                (None, None) => None,
                _ => anyhow::bail!("give both --exchange and --exchange-key, or neither"),
            };
            let config = NodeConfig {
                origin: format!("carrel.local/{name}"),
                name,
                role: role.into(),
                listen,
                exchange,
                witness_quorum: carrel_node::config::default_witness_quorum(),
            };
            let key = carrel_node::init(&NodeDir::new(&dir), &config)?;
            out.init(&dir, &config, &key);
            Ok(())
        }
        Command::Serve { dir } => serve(dir).await,
        Command::Audit {
            command: AuditCommand::Verify { dir },
        } => audit::verify(&dir, out),
        Command::Audit {
            command: AuditCommand::Prove { dir, index },
        } => audit::prove(&dir, index, out),
        Command::Audit {
            command:
                AuditCommand::Policy {
                    node,
                    log,
                    witnesses,
                    quorum,
                    out: file,
                },
        } => trust::policy(&node.node, &log, &witnesses, quorum, file.as_deref(), out).await,
        Command::Audit {
            command:
                AuditCommand::Receipts {
                    node,
                    from,
                    agreement,
                    out: folder,
                },
        } => receipts::receipts(&node.node, &from, &agreement, &folder, out).await,
        Command::Audit {
            command: AuditCommand::VerifyReceipt { file, policy },
        } => receipts::verify_receipt(&file, &policy, out),
        Command::Audit {
            command:
                AuditCommand::Watch {
                    node,
                    logs,
                    interval_ms,
                    rounds,
                },
        } => {
            let options = watch::WatchOptions {
                logs,
                interval: std::time::Duration::from_millis(interval_ms),
                rounds,
            };
            watch::watch(&node.node, options, out).await
        }
        Command::Demo { keep } => demo::run(keep, out).await,
        Command::Bench { command } => bench::run(command, out).await,
        other => admin::run(other, out).await,
    }
}

async fn serve(dir: PathBuf) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,carrel=debug".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    carrel_node::serve(NodeDir::new(&dir), shutdown_signal())
        .await
        .with_context(|| format!("node in {} stopped with an error", dir.display()))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; stop the node with SIGINT");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}
