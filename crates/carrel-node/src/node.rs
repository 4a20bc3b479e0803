//! The running node: its folder, identity, database and its calls to peers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use carrel_model::{Participant, Role};
use carrel_net::{KeyDirectory, PublicKey};
use serde::Serialize;

use crate::config::{NodeConfig, NodeDir};
use crate::error::{NodeError, NodeResult};
use crate::exchange::{load_participant, save_participant};
use crate::identity::{Identity, LogSigner};
use crate::store::Store;

/// A node: what every handler works with.
pub struct Node {
    /// The node's folder.
    pub dir: NodeDir,
    /// Its configuration.
    pub config: NodeConfig,
    /// Its key.
    pub identity: Identity,
    /// Its database and audit log.
    pub store: Store,
    /// Private set intersection runs this node serves as a provider, by job id.
    pub psi: crate::psi::Sessions,
    /// Secure aggregation rounds this node takes part in as a provider, by job id.
    pub secagg: crate::secagg::Sessions,
    /// Private join runs this node serves as a provider, by job id.
    pub join: crate::join::Sessions,
    /// This node's cosigner of other logs' checkpoints, named by
    /// [`crate::witnessing::witness_name`]; it uses the node's identity key, and the
    /// cosignature format keeps its signatures apart from checkpoint signatures.
    pub witness: carrel_ledger::Cosigner,
    keys: Arc<KeyCache>,
    endpoint: RwLock<String>,
}

impl Node {
    /// Opens the node in `dir`.
    ///
    /// # Errors
    ///
    /// [`NodeError::Io`] when the folder is not an initialised node.
    pub fn open(dir: NodeDir) -> NodeResult<Self> {
        let config = dir.load_config()?;
        let identity = Identity::load(&config.name, &dir.key())?;
        let signer = LogSigner::load(&config.origin, &dir.key())?;
        let witness = carrel_ledger::Cosigner::ed25519(
            &crate::witnessing::witness_name(&config.origin),
            crate::identity::load_signing_key(&dir.key())?,
        )?;
        let store = Store::open(&dir.database(), config.origin.clone(), signer)?;
        let keys = Arc::new(KeyCache::default());
        let known = store.read(|c| {
            let mut statement = c.prepare("SELECT name, public_key FROM participants")?;
            let rows = statement
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        for (name, key) in known {
            keys.insert(&name, parse_key(&key)?);
        }
        // The node's own key and the pinned exchange key are inserted last, so no
        // stored registry entry can replace them.
        keys.insert(identity.name(), identity.node().public_key());
        if let Some(exchange) = &config.exchange {
            keys.insert(&exchange.name, parse_key(&exchange.public_key)?);
        }
        Ok(Self {
            dir,
            config,
            identity,
            store,
            psi: crate::psi::Sessions::default(),
            secagg: crate::secagg::Sessions::default(),
            join: crate::join::Sessions::default(),
            witness,
            keys,
            endpoint: RwLock::new(String::new()),
        })
    }

    /// Returns the key directory that verifies incoming requests.
    pub fn key_directory(&self) -> Arc<KeyCache> {
        self.keys.clone()
    }

    /// Sets the URL this node is reachable at.
    pub fn set_endpoint(&self, url: String) {
        *self.endpoint.write().unwrap_or_else(|p| p.into_inner()) = url;
    }

    /// Returns the URL this node is reachable at.
    pub fn endpoint(&self) -> String {
        self.endpoint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Returns whether this node is the exchange.
    pub fn is_exchange(&self) -> bool {
        self.config.role == Role::Exchange
    }

    /// Returns the pinned exchange's name (this node's own name on the exchange).
    ///
    /// # Errors
    ///
    /// Never on a correctly initialised node.
    pub fn exchange_name(&self) -> NodeResult<&str> {
        match &self.config.exchange {
            Some(exchange) => Ok(&exchange.name),
            None if self.is_exchange() => Ok(self.identity.name()),
            None => Err(NodeError::Internal(
                "participant node without a pinned exchange".into(),
            )),
        }
    }

    /// Returns the pinned exchange's public key, base64.
    ///
    /// # Errors
    ///
    /// Never on a correctly initialised node.
    pub fn exchange_key(&self) -> NodeResult<String> {
        match &self.config.exchange {
            Some(exchange) => Ok(exchange.public_key.clone()),
            None if self.is_exchange() => Ok(self.identity.public_key_text()),
            None => Err(NodeError::Internal(
                "participant node without a pinned exchange".into(),
            )),
        }
    }

    /// Returns a participant's registry entry: from the local table, or fetched from
    /// the exchange (signed by its pinned key) and cached.
    ///
    /// # Errors
    ///
    /// [`NodeError::Forbidden`] for a name the exchange does not know.
    pub async fn participant(&self, name: &str) -> NodeResult<Participant> {
        if let Some(found) = self.store.read(|c| load_participant(c, name))? {
            return Ok(found);
        }
        if self.is_exchange() {
            return Err(NodeError::Forbidden(format!(
                "{name:?} is not a registered participant"
            )));
        }
        let exchange = self.exchange_name()?.to_owned();
        let entry = self
            .get(&exchange, &format!("/participants/{name}"))
            .await
            .map_err(|e| match e {
                NodeError::Peer { message, .. } => NodeError::Forbidden(format!(
                    "{name:?} is not a registered participant ({message})"
                )),
                other => other,
            })?;
        let participant: Participant =
            serde_json::from_value(entry).map_err(|e| NodeError::Peer {
                peer: exchange,
                message: format!("invalid participant entry: {e}"),
            })?;
        self.remember(&participant)?;
        Ok(participant)
    }

    /// Caches a participant's entry and key.
    ///
    /// # Errors
    ///
    /// A storage error, or an invalid key.
    pub fn remember(&self, participant: &Participant) -> NodeResult<()> {
        let pinned = self
            .config
            .exchange
            .as_ref()
            .is_some_and(|e| e.name == participant.name);
        if participant.name == self.identity.name()
            && participant.public_key != self.identity.public_key_text()
            || pinned
        {
            return Err(NodeError::Forbidden(format!(
                "the registry entry for {:?} may not replace this node's own or pinned key",
                participant.name
            )));
        }
        self.keys
            .insert(&participant.name, parse_key(&participant.public_key)?);
        self.store.read(|c| save_participant(c, participant))
    }

    /// Sends a signed GET to a peer and returns its verified JSON response.
    ///
    /// # Errors
    ///
    /// [`NodeError::Peer`] for transport failures and the peer's errors.
    pub async fn get(&self, peer: &str, path: &str) -> NodeResult<serde_json::Value> {
        self.call(peer, http::Method::GET, path, Vec::new()).await
    }

    /// Sends a signed POST with a JSON body to a peer and returns its verified response.
    ///
    /// # Errors
    ///
    /// [`NodeError::Peer`] for transport failures and the peer's errors.
    pub async fn post(
        &self,
        peer: &str,
        path: &str,
        body: &impl Serialize,
    ) -> NodeResult<serde_json::Value> {
        let bytes = serde_json::to_vec(body).map_err(|e| NodeError::Internal(e.to_string()))?;
        self.call(peer, http::Method::POST, path, bytes).await
    }

    async fn call(
        &self,
        peer: &str,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> NodeResult<serde_json::Value> {
        let (endpoint, key) = self.address(peer).await?;
        let node = self.identity.node();
        let first = crate::transport::call(
            node,
            peer,
            &endpoint,
            &key,
            method.clone(),
            path,
            body.clone(),
        )
        .await;
        if !matches!(first, Err(NodeError::Peer { .. }))
            || self.is_exchange()
            || peer == self.exchange_name()?
        {
            return first;
        }
        // The peer may have restarted on another port: refresh its registry entry
        // from the exchange and try once more.
        self.forget(peer)?;
        let (fresh, key) = self.address(peer).await?;
        if fresh == endpoint {
            return first;
        }
        crate::transport::call(node, peer, &fresh, &key, method, path, body).await
    }

    fn forget(&self, peer: &str) -> NodeResult<()> {
        self.store.read(|c| {
            c.execute("DELETE FROM participants WHERE name = ?1", [peer])?;
            Ok(())
        })
    }

    async fn address(&self, peer: &str) -> NodeResult<(String, PublicKey)> {
        if let Some(exchange) = &self.config.exchange
            && exchange.name == peer
        {
            return Ok((exchange.url.clone(), parse_key(&exchange.public_key)?));
        }
        // Boxed because fetching an entry from the exchange calls back into `call`.
        let participant = Box::pin(self.participant(peer)).await?;
        Ok((participant.endpoint, parse_key(&participant.public_key)?))
    }
}

fn parse_key(text: &str) -> NodeResult<PublicKey> {
    PublicKey::parse(text)
        .map_err(|e| NodeError::BadRequest(format!("public key {text:?} is invalid: {e}")))
}

/// Keys of known participants, shared with the request verifier.
#[derive(Default)]
pub struct KeyCache(RwLock<HashMap<String, PublicKey>>);

impl KeyCache {
    /// Adds or replaces a key.
    pub fn insert(&self, name: &str, key: PublicKey) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), key);
    }

    /// Returns whether `name` has a key.
    pub fn contains(&self, name: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }
}

impl KeyDirectory for KeyCache {
    fn public_key(&self, name: &str) -> Option<PublicKey> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }
}
