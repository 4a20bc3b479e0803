//! Memory of request nonces, so a captured request cannot be accepted twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::MAX_CLOCK_SKEW_SECS;

/// The error a [`NonceStore`] reports when it cannot record a nonce.
pub type NonceStoreError = Box<dyn std::error::Error + Send + Sync>;

/// Records the nonces of accepted requests.
///
/// The verifier calls [`NonceStore::remember`] only for requests whose signature,
/// recipient and time are valid, so an attacker cannot fill the store with junk.
///
/// A store may forget an entry once its `time` is more than `2 * MAX_CLOCK_SKEW_SECS`
/// older than the newest time it has recorded. A replay of such a request is then
/// rejected by its time alone, provided the verifier's clock never runs backwards.
///
/// The verifier calls the store on the async task that serves the request, so an
/// implementation should return quickly (one SQLite insert is fine).
pub trait NonceStore: Send + Sync + 'static {
    /// Records that `signer` used `nonce` in a request signed at `time` (unix seconds).
    ///
    /// Returns `true` if the pair was new and is now recorded, and `false` if it was
    /// already recorded.
    ///
    /// # Errors
    ///
    /// Any failure to read or write the store. The request is then rejected as a
    /// local fault, because accepting it could let a replay through.
    fn remember(&self, signer: &str, nonce: &str, time: u64) -> Result<bool, NonceStoreError>;
}

/// A [`NonceStore`] in process memory, for tests and single-run tools.
///
/// Its contents are lost when the process exits. A node that restarts needs a persistent
/// store, because a replay sent right after the restart would otherwise be accepted.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    state: Mutex<NonceState>,
}

#[derive(Debug, Default)]
struct NonceState {
    seen: HashMap<(String, String), u64>,
    by_time: BTreeMap<u64, Vec<(String, String)>>,
    newest: u64,
}

impl MemoryNonceStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of nonces currently remembered.
    pub fn len(&self) -> usize {
        // A count read from a lock poisoned by a panic mid-update is still a usable estimate.
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.seen.len()
    }

    /// Returns whether the store remembers no nonce.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NonceStore for MemoryNonceStore {
    fn remember(&self, signer: &str, nonce: &str, time: u64) -> Result<bool, NonceStoreError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| "nonce store lock poisoned by a panicking thread")?;

        let key = (signer.to_owned(), nonce.to_owned());
        if state.seen.contains_key(&key) {
            return Ok(false);
        }
        state.seen.insert(key.clone(), time);
        state.by_time.entry(time).or_default().push(key);
        state.newest = state.newest.max(time);
        state.forget_expired();
        Ok(true)
    }
}

impl NonceState {
    fn forget_expired(&mut self) {
        let horizon = self.newest.saturating_sub(2 * MAX_CLOCK_SKEW_SECS);
        let retained = self.by_time.split_off(&horizon);
        let expired = std::mem::replace(&mut self.by_time, retained);
        for key in expired.into_values().flatten() {
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_of_nonce_is_not_fresh() {
        let store = MemoryNonceStore::new();

        assert!(store.remember("bank", "00ff", 1000).expect("store"));
        assert!(!store.remember("bank", "00ff", 1000).expect("store"));
    }

    #[test]
    fn same_nonce_from_another_signer_is_fresh() {
        let store = MemoryNonceStore::new();

        assert!(store.remember("bank", "00ff", 1000).expect("store"));
        assert!(store.remember("lab", "00ff", 1000).expect("store"));
    }

    #[test]
    fn nonces_older_than_two_windows_are_forgotten() {
        let store = MemoryNonceStore::new();
        store.remember("bank", "old", 1000).expect("store");
        store.remember("bank", "edge", 1400).expect("store");

        store
            .remember("bank", "new", 1000 + 2 * MAX_CLOCK_SKEW_SECS + 1)
            .expect("store");

        assert_eq!(store.len(), 2, "only `old` falls before the horizon");
        assert!(!store.remember("bank", "edge", 1400).expect("store"));
    }
}
