//! Commands that act through a running node's admin API, signed with the node's own
//! key read from its folder.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use carrel_net::NodeIdentity;
use carrel_node::NodeDir;
use serde_json::{Value, json};

use crate::output::Output;
use crate::{Command, JobCommand, ModelCommand, TrainArgs, TrainKind};

/// How long `negotiate` waits for the agreement to be finalized.
const NEGOTIATION_DEADLINE: Duration = Duration::from_secs(60);

/// Interval between two looks at a running job.
const JOB_POLL: Duration = Duration::from_millis(250);

/// A signed connection to the node in a folder.
pub struct AdminClient {
    identity: Arc<NodeIdentity>,
    endpoint: String,
}

impl AdminClient {
    /// Opens the node folder `dir` and finds its running endpoint.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = NodeDir::new(dir);
        let config = dir.load_config()?;
        let identity = NodeIdentity::load(&config.name, dir.key())
            .with_context(|| format!("cannot load the key of node {}", config.name))?;
        let endpoint = dir.load_endpoint()?;
        Ok(Self {
            identity: Arc::new(identity),
            endpoint,
        })
    }

    /// Sends a signed request to the node's own API.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let name = self.identity.name().to_owned();
        let key = self.identity.public_key();
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let result = carrel_node::transport::call(
            &self.identity,
            &name,
            &self.endpoint,
            &key,
            method,
            path,
            bytes,
        )
        .await;
        match result {
            Ok(value) => Ok(value),
            // The node's own rejection, which already names the peer that decided.
            Err(carrel_node::NodeError::Remote { message, .. }) => Err(anyhow::anyhow!(message)),
            Err(other) => Err(other.into()),
        }
    }

    /// Sends a POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(http::Method::POST, path, Some(body)).await
    }

    /// Sends a GET.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(http::Method::GET, path, None).await
    }
}

/// Reads a JSON file as a `T`, so a wrong field is reported with the file's name
/// before anything is sent.
fn read_json<T>(path: &Path, what: &str) -> anyhow::Result<Value>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let value: T = serde_json::from_str(&text)
        .with_context(|| format!("the {what} file {} is invalid", path.display()))?;
    Ok(serde_json::to_value(value)?)
}

/// Runs one admin command.
pub async fn run(command: Command, out: &Output) -> anyhow::Result<()> {
    match command {
        Command::Register {
            node,
            file,
            description,
        } => {
            let client = AdminClient::open(&node.node)?;
            let source = std::fs::canonicalize(&file)
                .with_context(|| format!("cannot find {}", file.display()))?;
            let body = json!({ "source": source, "description": read_json::<carrel_model::DatasetDescription>(&description, "description")? });
            out.value(
                "dataset registered",
                &client.post("/admin/datasets", body).await?,
            );
        }
        Command::Publish {
            node,
            dataset,
            title,
            policy,
        } => {
            let client = AdminClient::open(&node.node)?;
            let body = json!({ "dataset": dataset, "title": title, "policy": read_json::<carrel_model::UsagePolicy>(&policy, "policy")? });
            let listed = client.post("/admin/products", body).await?;
            let offer = listed["odrl:hasPolicy"][0]["@id"].as_str().unwrap_or("?");
            out.value(&format!("product listed with offer {offer}"), &listed);
        }
        Command::Catalog { node } => {
            let client = AdminClient::open(&node.node)?;
            out.catalog(&client.get("/admin/catalog").await?);
        }
        Command::Negotiate {
            node,
            offer,
            purpose,
        } => {
            let client = AdminClient::open(&node.node)?;
            let agreement = negotiate(&client, &offer, &purpose, out).await?;
            let id = agreement["agreement"]["@id"].as_str().unwrap_or("?");
            out.value(&format!("agreement {id} finalized"), &agreement);
        }
        Command::Agreement { node, id } => {
            let client = AdminClient::open(&node.node)?;
            out.value(
                "agreement",
                &client.get(&format!("/admin/agreements/{id}")).await?,
            );
        }
        Command::Revoke { node, id, reason } => {
            let client = AdminClient::open(&node.node)?;
            let body = json!({ "reason": reason });
            out.value(
                "agreement revoked",
                &client
                    .post(&format!("/admin/agreements/{id}/revoke"), body)
                    .await?,
            );
        }
        Command::Query {
            node,
            agreement,
            epsilon,
            sql,
        } => {
            let client = AdminClient::open(&node.node)?;
            let body = json!({ "agreement": agreement, "sql": sql, "epsilon": epsilon });
            out.release(&client.post("/admin/queries", body).await?);
        }
        Command::Psi {
            node,
            agreement,
            ids,
            column,
            batch,
        } => {
            let client = AdminClient::open(&node.node)?;
            let ids = std::fs::canonicalize(&ids)
                .with_context(|| format!("cannot find the identifier file {}", ids.display()))?;
            let body =
                json!({ "agreement": agreement, "ids": ids, "column": column, "batch": batch });
            let started = client.post("/admin/jobs/psi", body).await?;
            let job = started["job"]
                .as_str()
                .context("the node returned no job id")?;
            out.progress(&format!("job {job} started"));
            let done = follow_job(&client, job, out).await?;
            out.value("private set intersection", &done);
        }
        Command::Join {
            node,
            agreement,
            ids,
            id_column,
            group_column,
            epsilon,
        } => {
            let client = AdminClient::open(&node.node)?;
            let ids = std::fs::canonicalize(&ids)
                .with_context(|| format!("cannot find the identifier file {}", ids.display()))?;
            let body = json!({ "agreement": agreement, "ids": ids, "id_column": id_column,
                               "group_column": group_column, "epsilon": epsilon });
            let started = client.post("/admin/jobs/join", body).await?;
            let job = started["job"]
                .as_str()
                .context("the node returned no job id")?;
            out.progress(&format!("job {job} started"));
            let done = follow_job(&client, job, out).await?;
            out.value("private join", &done);
        }
        Command::Aggregate {
            node,
            agreements,
            columns,
            epsilon,
        } => {
            let client = AdminClient::open(&node.node)?;
            let body = json!({ "agreements": agreements, "columns": columns, "epsilon": epsilon });
            let started = client.post("/admin/jobs/secagg", body).await?;
            let job = started["job"]
                .as_str()
                .context("the node returned no job id")?;
            out.progress(&format!("job {job} started"));
            let done = follow_job(&client, job, out).await?;
            out.value("secure aggregation", &done);
        }
        Command::Train(args) => {
            let client = AdminClient::open(&args.node.node)?;
            let body = train_request(&args)?;
            let started = client.post("/admin/jobs/train", body).await?;
            let job = started["job"]
                .as_str()
                .context("the node returned no job id")?;
            out.progress(&format!("job {job} started"));
            let done = follow_job(&client, job, out).await?;
            out.value("training", &done);
        }
        Command::Predict {
            node,
            model,
            data,
            id_column,
            output,
        } => {
            let client = AdminClient::open(&node.node)?;
            let data = std::fs::canonicalize(&data)
                .with_context(|| format!("cannot find the data file {}", data.display()))?;
            let output = std::path::absolute(&output)
                .with_context(|| format!("cannot resolve the output path {}", output.display()))?;
            let body = json!({ "model": model, "data": data, "id_column": id_column,
                               "output": output });
            let started = client.post("/admin/jobs/predict", body).await?;
            let job = started["job"]
                .as_str()
                .context("the node returned no job id")?;
            out.progress(&format!("job {job} started"));
            let done = follow_job(&client, job, out).await?;
            out.value("prediction", &done);
        }
        Command::Model {
            command: ModelCommand::Show { node, id },
        } => {
            let client = AdminClient::open(&node.node)?;
            match id {
                Some(id) => out.value("model", &client.get(&format!("/admin/models/{id}")).await?),
                None => out.value("models", &client.get("/admin/models").await?),
            }
        }
        Command::Job {
            command: JobCommand::Status { node, id },
        } => {
            let client = AdminClient::open(&node.node)?;
            match id {
                Some(id) => out.value("job", &client.get(&format!("/admin/jobs/{id}")).await?),
                None => out.jobs(&client.get("/admin/jobs").await?),
            }
        }
        _ => bail!("this command does not go through the admin API"),
    }
    Ok(())
}

/// Polls a job until it ends, printing its phase and progress; returns the job when
/// it succeeded.
pub async fn follow_job(client: &AdminClient, id: &str, out: &Output) -> anyhow::Result<Value> {
    let mut last = String::new();
    loop {
        let job = client.get(&format!("/admin/jobs/{id}")).await?;
        let line = progress_line(&job);
        if line != last {
            out.progress(&line);
            last = line;
        }
        match job["state"].as_str().unwrap_or_default() {
            "succeeded" => return Ok(job),
            "failed" => bail!(
                "job {id} failed: {}",
                job["error"].as_str().unwrap_or("no reason given")
            ),
            _ => tokio::time::sleep(JOB_POLL).await,
        }
    }
}

/// The job's phase with its progress as a percentage, when it has a total.
fn progress_line(job: &Value) -> String {
    let phase = job["phase"].as_str().unwrap_or_default();
    let (done, total) = (
        job["done"].as_u64().unwrap_or(0),
        job["total"].as_u64().unwrap_or(0),
    );
    if total == 0 {
        return phase.to_owned();
    }
    let percent = done.saturating_mul(100) / total;
    format!("{phase}: {done} of {total} ({percent}%)")
}

/// Starts a negotiation and waits until it is finalized or terminated, printing
/// each state it passes through.
pub async fn negotiate(
    client: &AdminClient,
    offer: &str,
    purpose: &str,
    out: &Output,
) -> anyhow::Result<Value> {
    let started = client
        .post(
            "/admin/negotiations",
            json!({ "offer": offer, "purpose": purpose }),
        )
        .await?;
    let id = started["negotiation"]
        .as_str()
        .context("the node returned no negotiation id")?
        .to_owned();
    let deadline = tokio::time::Instant::now() + NEGOTIATION_DEADLINE;
    let mut last = String::new();
    loop {
        let n = client.get(&format!("/admin/negotiations/{id}")).await?;
        let state = n["state"].as_str().unwrap_or_default().to_owned();
        if state != last {
            out.progress(&format!("negotiation {id}: {state}"));
            last.clone_from(&state);
        }
        match state.as_str() {
            "FINALIZED" => return Ok(n["signed"].clone()),
            "TERMINATED" => bail!(
                "negotiation {id} was terminated: {}",
                n["reason"].as_str().unwrap_or("no reason given")
            ),
            _ => {}
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "negotiation {id} is still {state} after {NEGOTIATION_DEADLINE:?}; check the provider's log"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Builds the node's training request from the command line, with absolute paths.
fn train_request(args: &TrainArgs) -> anyhow::Result<Value> {
    let absolute =
        |path: &Option<std::path::PathBuf>| -> anyhow::Result<Option<std::path::PathBuf>> {
            path.as_ref()
                .map(|p| {
                    std::fs::canonicalize(p).with_context(|| format!("cannot find {}", p.display()))
                })
                .transpose()
        };
    let report = match &args.report {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the report folder {}", dir.display()))?;
            Some(std::fs::canonicalize(dir)?)
        }
        None => None,
    };
    let kind = match args.kind {
        TrainKind::Horizontal => "horizontal",
        TrainKind::Vertical => "vertical",
    };
    let early_stopping = args.patience.map(|patience| {
        json!({ "patience": patience,
                "min_relative_improvement": args.min_improvement.unwrap_or(0.001) })
    });
    let privacy = args.noise_multiplier.map(|noise_multiplier| {
        json!({ "noise_multiplier": noise_multiplier,
                "clip_norm": args.clip_norm.unwrap_or(1.0),
                "delta": args.delta.unwrap_or(1e-6) })
    });
    Ok(json!({
        "kind": kind, "agreements": args.agreements, "data": absolute(&args.data)?,
        "id_column": args.id_column, "label_column": args.label_column,
        "feature_columns": args.features, "test_data": absolute(&args.test_data)?,
        "split_file": absolute(&args.split_file)?, "split": args.split, "rounds": args.rounds,
        "learning_rate": args.learning_rate, "batch_size": args.batch_size,
        "local_epochs": args.local_epochs, "early_stopping": early_stopping,
        "privacy": privacy, "seed": args.seed, "report": report,
    }))
}
