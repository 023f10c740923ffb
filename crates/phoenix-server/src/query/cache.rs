//! A cache of serialized first pages of the current window (`GET /v1/leaderboards/{id}?limit=N`), the
//! read games make most. An entry stays valid until the store's watch signal for the board says the
//! standings changed (or the board left `Active`), or the window's status is due to change; so a hit
//! is exact, never stale, and costs a buffer copy instead of a rebuild and a re-serialization.

use axum::body::Bytes;
use jiff::Timestamp;
use phoenix_store::{BoardSignal, BoardState};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// Most entries kept; beyond it the cache starts over (boards × page sizes in use is small).
const MAX_ENTRIES: usize = 4096;

type Key = (String, String, u32);

struct Entry {
    /// Read before the page was built: any change since makes `has_changed` true.
    signal: watch::Receiver<BoardSignal>,
    /// When the window's status changes without a signal (an open window ends, an upcoming one opens).
    valid_until: Option<Timestamp>,
    body: Bytes,
}

#[derive(Default)]
pub struct PageCache {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl PageCache {
    /// The cached body for `(tenant, leaderboard, limit)` if it is still exact.
    pub fn get(&self, tenant: &str, leaderboard: &str, limit: u32) -> Option<Bytes> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_owned(), leaderboard.to_owned(), limit);
        let entry = entries.get(&key)?;
        let fresh = matches!(entry.signal.has_changed(), Ok(false))
            && entry.signal.borrow().state == BoardState::Active
            && entry.valid_until.is_none_or(|t| Timestamp::now() < t);
        if fresh {
            Some(entry.body.clone())
        } else {
            entries.remove(&key);
            None
        }
    }

    /// Keeps `body`, built after `signal` was last read (so a change during the build invalidates it).
    pub fn put(
        &self,
        tenant: &str,
        leaderboard: &str,
        limit: u32,
        signal: watch::Receiver<BoardSignal>,
        valid_until: Option<Timestamp>,
        body: Bytes,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            (tenant.to_owned(), leaderboard.to_owned(), limit),
            Entry {
                signal,
                valid_until,
                body,
            },
        );
    }
}
