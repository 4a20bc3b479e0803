//! A node's folder: configuration, identity key, database and registered datasets.
//!
//! ```text
//! DIR/node.json      name, role, audit-log origin, pinned exchange
//! DIR/identity.key   Ed25519 identity key (also the TLS key)
//! DIR/node.db        SQLite: state tables and the audit log
//! DIR/datasets/      registered tables, as Parquet
//! DIR/endpoint       https URL of the running node, written by `serve`
//! ```

use std::path::{Path, PathBuf};

use carrel_model::Role;
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};

/// The exchange a participant node trusts, pinned at init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedExchange {
    /// Exchange's participant name.
    pub name: String,
    /// Exchange's HTTPS URL.
    pub url: String,
    /// Exchange's Ed25519 public key, base64.
    pub public_key: String,
}

/// Contents of `node.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Participant name, unique in the data space.
    pub name: String,
    /// Role of the node.
    pub role: Role,
    /// Origin line of the node's audit-log checkpoints.
    pub origin: String,
    /// Address `serve` listens on; port 0 picks a free port.
    pub listen: String,
    /// The pinned exchange; `None` on the exchange itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<PinnedExchange>,
    /// Witnesses that must cosign a checkpoint of this node's log before it is final.
    #[serde(default = "default_witness_quorum")]
    pub witness_quorum: usize,
}

/// Returns the default quorum: one witness's cosignature makes a checkpoint final unless
/// `node.json` sets `witness_quorum`.
pub const fn default_witness_quorum() -> usize {
    1
}

/// Paths of a node folder.
#[derive(Debug, Clone)]
pub struct NodeDir(PathBuf);

impl NodeDir {
    /// Wraps a folder path.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// Returns the folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Returns the path of `node.json`.
    pub fn config(&self) -> PathBuf {
        self.0.join("node.json")
    }

    /// Returns the path of the identity key.
    pub fn key(&self) -> PathBuf {
        self.0.join("identity.key")
    }

    /// Returns the path of the database.
    pub fn database(&self) -> PathBuf {
        self.0.join("node.db")
    }

    /// Returns the folder of registered datasets.
    pub fn datasets(&self) -> PathBuf {
        self.0.join("datasets")
    }

    /// Returns the path of the endpoint file.
    pub fn endpoint(&self) -> PathBuf {
        self.0.join("endpoint")
    }

    /// Reads `node.json`.
    ///
    /// # Errors
    ///
    /// [`NodeError::Io`] naming the file when it is missing or invalid.
    pub fn load_config(&self) -> NodeResult<NodeConfig> {
        let path = self.config();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            // The `carrel` commands act on the current folder when --node is not given.
            let hint = if self.0.as_os_str() == "." {
                "give the node folder with --node DIR (or CARREL_NODE), or run `carrel init .` \
                 to make this folder a node"
                    .to_owned()
            } else {
                format!("run `carrel init {}` first", self.0.display())
            };
            NodeError::Io(format!("cannot read {}: {e}; {hint}", path.display()))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            NodeError::Io(format!(
                "{} is not a valid node config: {e}",
                path.display()
            ))
        })
    }

    /// Reads the endpoint URL of the running node.
    ///
    /// # Errors
    ///
    /// [`NodeError::Io`] when the node has not written its endpoint yet.
    pub fn load_endpoint(&self) -> NodeResult<String> {
        let path = self.endpoint();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            NodeError::Io(format!(
                "cannot read {}: {e}; start the node with `carrel serve {}`",
                path.display(),
                self.0.display()
            ))
        })?;
        match text.trim() {
            "" => Err(NodeError::Io(format!("{} is empty", path.display()))),
            url => Ok(url.to_owned()),
        }
    }
}
