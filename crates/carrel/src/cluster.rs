//! Node processes started by the demo and the benchmarks: each one a `carrel serve` on a
//! free loopback port, stopped with SIGTERM when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use carrel_model::Role;
use carrel_node::{NodeConfig, NodeDir, PinnedExchange};

/// How long a node may take to start.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Running node processes by participant name.
#[derive(Default)]
pub struct Nodes(Vec<(String, Child)>);

impl Nodes {
    /// Stops every node and returns their names, in start order.
    pub fn stop_all(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for (name, mut child) in self.0.drain(..) {
            stop(&mut child);
            names.push(name);
        }
        names
    }

    /// Returns the process id of the node `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, child)| child.id())
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let terminated = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .is_ok_and(|s| s.success());
    if !terminated {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Creates and starts the exchange in `dir`; returns what participants pin.
///
/// # Errors
///
/// When the folder cannot be created or the node does not start.
pub async fn start_exchange(
    dir: &Path,
    name: &str,
    nodes: &mut Nodes,
) -> anyhow::Result<PinnedExchange> {
    let public_key = init(dir, name, Role::Exchange, None)?;
    let url = spawn(dir, name, nodes).await?;
    Ok(PinnedExchange {
        name: name.into(),
        url,
        public_key,
    })
}

/// Creates and starts a participant in `dir`, pinned to the exchange; returns its URL.
///
/// # Errors
///
/// When the folder cannot be created or the node does not start.
pub async fn start_participant(
    dir: &Path,
    name: &str,
    role: Role,
    exchange: &PinnedExchange,
    nodes: &mut Nodes,
) -> anyhow::Result<String> {
    init(dir, name, role, Some(exchange.clone()))?;
    spawn(dir, name, nodes).await
}

fn init(
    dir: &Path,
    name: &str,
    role: Role,
    exchange: Option<PinnedExchange>,
) -> anyhow::Result<String> {
    let config = NodeConfig {
        name: name.into(),
        role,
        origin: format!("carrel.local/{name}"),
        listen: "127.0.0.1:0".into(),
        exchange,
        witness_quorum: carrel_node::config::default_witness_quorum(),
    };
    Ok(carrel_node::init(&NodeDir::new(dir), &config)?)
}

/// Starts `carrel serve DIR` and waits until it has written its endpoint.
async fn spawn(dir: &Path, name: &str, nodes: &mut Nodes) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the carrel executable")?;
    let log = std::fs::File::create(dir.join("node.log"))?;
    let child = Command::new(exe)
        .arg("serve")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start node {name}"))?;
    nodes.0.push((name.to_owned(), child));
    let node_dir = NodeDir::new(dir);
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        if let Ok(url) = node_dir.load_endpoint() {
            return Ok(url);
        }
        let exited = match nodes.0.last_mut() {
            Some((_, child)) => child.try_wait()?,
            None => None,
        };
        if let Some(status) = exited {
            bail!(
                "node {name} exited with {status}; see {}",
                dir.join("node.log").display()
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "node {name} did not start within {START_DEADLINE:?}; see {}",
                dir.join("node.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
