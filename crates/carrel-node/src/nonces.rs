//! Request nonces remembered in the node's database, so a replay is rejected even
//! after the node restarts.

use std::path::Path;
use std::sync::Mutex;

use carrel_net::{NonceStore, NonceStoreError};
use rusqlite::{Connection, params};

use crate::error::NodeResult;

/// Seconds a nonce is kept: twice the five-minute window a request time may be off,
/// after which a replay is rejected by its time alone.
const KEEP_SECS: i64 = 600;

/// A [`NonceStore`] on its own connection to the node's database.
pub struct SqliteNonces(Mutex<Connection>);

impl SqliteNonces {
    /// Opens a connection to the database at `path`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn open(path: &Path) -> NodeResult<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Self(Mutex::new(conn)))
    }
}

impl NonceStore for SqliteNonces {
    fn remember(&self, signer: &str, nonce: &str, time: u64) -> Result<bool, NonceStoreError> {
        let conn = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let time = i64::try_from(time)?;
        conn.execute("DELETE FROM nonces WHERE time < ?1", [time - KEEP_SECS])?;
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO nonces (signer, nonce, time) VALUES (?1, ?2, ?3)",
            params![signer, nonce, time],
        )?;
        Ok(inserted == 1)
    }
}
