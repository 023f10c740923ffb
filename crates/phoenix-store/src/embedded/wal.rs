//! The write-ahead log of the embedded store and the state it folds into. One journal holds every
//! change, metadata and events alike, so replaying it reproduces exactly the interleaving the live server
//! applied (an event accepted before a leaderboard was created never scores in it, after a restart too).
//! Records are applied by the journal's writer thread after their fsync and before they are
//! acknowledged: live state is always the fold of the durable log.

use super::ledger::LedgerRecord;
use super::meta::{MetaRecord, State};
use crate::model::LeaderboardStatus;
use crate::{BoardSignal, BoardState};
use jiff::Timestamp;
use phoenix_core::config::LeaderboardConfig;
use phoenix_core::engine::Engine;
use phoenix_core::event::Event;
use phoenix_core::ids::{LeaderboardId, TenantId};
use serde::{Deserialize, Serialize};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

const TAG_META: u8 = b'M';
const TAG_EVENTS: u8 = b'E';
const TAG_LEDGER: u8 = b'L';

/// The events of one request, accepted together.
#[derive(Serialize, Deserialize)]
pub(super) struct EventBatch<'a> {
    #[serde(rename = "t", borrow)]
    pub tenant_id: std::borrow::Cow<'a, str>,
    /// Acceptance time in Unix microseconds: decides lateness, identically on replay.
    #[serde(rename = "at")]
    pub accepted_at: i64,
    #[serde(rename = "e")]
    pub events: Vec<serde_json::Value>,
}

pub(super) fn encode_meta(record: &MetaRecord) -> Result<Vec<u8>, String> {
    let mut out = vec![TAG_META];
    serde_json::to_writer(&mut out, record).map_err(|e| e.to_string())?;
    Ok(out)
}

pub(super) fn encode_ledger(record: &LedgerRecord) -> Result<Vec<u8>, String> {
    let mut out = vec![TAG_LEDGER];
    serde_json::to_writer(&mut out, record).map_err(|e| e.to_string())?;
    Ok(out)
}

pub(super) fn encode_events(
    tenant_id: &str,
    accepted_at: Timestamp,
    events: &[&serde_json::Value],
) -> Result<Vec<u8>, String> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        t: &'a str,
        at: i64,
        e: &'a [&'a serde_json::Value],
    }
    let mut out = vec![TAG_EVENTS];
    serde_json::to_writer(
        &mut out,
        &Borrowed {
            t: tenant_id,
            at: accepted_at.as_microsecond(),
            e: events,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The accepted events of an ingest call, handed to the writer thread with their record so the live
/// path applies them without decoding the bytes it just encoded. They are exactly what the record holds.
pub(super) struct LiveEvents {
    pub tenant_id: String,
    pub accepted_at: Timestamp,
    pub events: Vec<Event>,
    /// The events evaluated against the tenant's achievements, when it has any.
    pub achievements: Option<super::ledger::achieve::Prepared>,
    /// In a cluster, where the fold decides duplicates: which of `events` it accepted (set once the
    /// record is applied, read by the ingestion that appended it).
    pub outcome: Option<std::sync::Arc<std::sync::OnceLock<Vec<bool>>>>,
}

impl LiveEvents {
    /// The events of a record read back from the log (another node's, in a cluster).
    pub(super) fn decoded(batch: EventBatch<'_>) -> Result<LiveEvents, String> {
        let accepted_at = Timestamp::from_microsecond(batch.accepted_at)
            .map_err(|e| format!("event record time: {e}"))?;
        let events = batch
            .events
            .into_iter()
            .map(|body| {
                Event::from_stored(body)
                    .ok_or_else(|| "event record holds an unreadable event".to_owned())
            })
            .collect::<Result<Vec<Event>, String>>()?;
        Ok(LiveEvents {
            tenant_id: batch.tenant_id.into_owned(),
            accepted_at,
            events,
            achievements: None,
            outcome: None,
        })
    }
}

/// A decoded record.
pub(super) enum WalRecord<'a> {
    Meta(MetaRecord),
    Events(EventBatch<'a>),
    Ledger(LedgerRecord),
}

pub(super) fn decode(payload: &[u8]) -> Result<WalRecord<'_>, String> {
    match payload.split_first() {
        Some((&TAG_META, rest)) => serde_json::from_slice(rest)
            .map(WalRecord::Meta)
            .map_err(|e| format!("metadata record: {e}")),
        Some((&TAG_EVENTS, rest)) => serde_json::from_slice(rest)
            .map(WalRecord::Events)
            .map_err(|e| format!("event record: {e}")),
        Some((&TAG_LEDGER, rest)) => serde_json::from_slice(rest)
            .map(WalRecord::Ledger)
            .map_err(|e| format!("rewards record: {e}")),
        _ => Err("record with an unknown tag".into()),
    }
}

/// Live counters for `/metrics` (only what the running process applied, not what it replayed).
#[derive(Default)]
pub(super) struct Counters {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub scored: AtomicU64,
    pub late: AtomicU64,
}

/// What the log folds into.
#[derive(Default)]
pub(super) struct Folded {
    pub meta: RwLock<State>,
    pub engine: RwLock<Engine>,
    pub counters: Counters,
    /// The log offset just past the last applied record: where a snapshot taken now ends.
    pub applied_upto: AtomicU64,
    /// Events and metadata records applied since start (replayed or live), to decide when a snapshot is
    /// worth taking (a deployment that mostly signs users in must snapshot too, or its log replays
    /// ever longer).
    pub applied_events: AtomicU64,
    /// The latest acceptance time applied so far (Unix µs). Acceptance times are clamped to it, so they
    /// never go backwards in log order: once any record accepted at or after a window's end has been
    /// applied, no later record can score in that window, and the window is frozen for good. Kept in
    /// snapshots, so replay clamps exactly as the live run did.
    pub accepted_high_water: std::sync::atomic::AtomicI64,
    /// Bumped by every metadata record but ticks (a key revoked, a session ended, a user changed, a
    /// secret rotated...): in a cluster, another node's change of a credential reaches this node's
    /// sockets through it.
    pub meta_changes: MetaChanges,
    /// Live watchers' signals by leaderboard uid (created when someone watches).
    pub signals:
        std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::watch::Sender<BoardSignal>>>,
}

/// See [`Folded::meta_changes`].
pub(super) struct MetaChanges(pub tokio::sync::watch::Sender<u64>);

impl Default for MetaChanges {
    fn default() -> Self {
        MetaChanges(tokio::sync::watch::Sender::new(0))
    }
}

impl Folded {
    pub(super) fn meta(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Records are applied whole under the lock and nothing panics mid-apply on valid records, so a
        // poisoned lock still guards consistent state.
        self.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn engine(&self) -> std::sync::RwLockReadGuard<'_, Engine> {
        self.engine.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one decoded record found at log `offset` and ending at `end`. `live` is false during
    /// replay (counters untouched).
    pub(super) fn apply(
        &self,
        offset: u64,
        end: u64,
        record: WalRecord<'_>,
        live: bool,
    ) -> Result<(), String> {
        match record {
            WalRecord::Meta(record) => self.apply_meta(record, end),
            // The ledger applies these itself (see `ledger`); the fold only moves past them.
            WalRecord::Ledger(_) => {
                self.applied_events.fetch_add(1, Ordering::Relaxed);
                self.applied_upto.store(end, Ordering::Release);
                Ok(())
            }
            WalRecord::Events(batch) => {
                let batch = LiveEvents::decoded(batch)?;
                self.apply_events(
                    offset,
                    end,
                    &batch.tenant_id,
                    batch.accepted_at,
                    &batch.events,
                    live,
                );
                Ok(())
            }
        }
    }

    /// Applies the events of one record (decoded, or handed over by the appender).
    pub(super) fn apply_events(
        &self,
        offset: u64,
        end: u64,
        tenant_id: &str,
        accepted_at: Timestamp,
        events: &[Event],
        live: bool,
    ) {
        let mut engine = self.engine.write().unwrap_or_else(|p| p.into_inner());
        let high_water = self
            .accepted_high_water
            .load(Ordering::Relaxed)
            .max(accepted_at.as_microsecond());
        self.accepted_high_water
            .store(high_water, Ordering::Relaxed);
        let accepted_at = Timestamp::from_microsecond(high_water).unwrap_or(accepted_at);
        let (mut scored, mut late) = (0u64, 0u64);
        for (i, event) in events.iter().enumerate() {
            // Offsets are byte positions and every event takes bytes, so offset + i is unique and
            // increases in acceptance order.
            let outcome = engine.apply(tenant_id, event, offset + i as u64, accepted_at);
            scored += u64::from(outcome.scored);
            late += u64::from(outcome.late);
        }
        if live {
            self.counters.scored.fetch_add(scored, Ordering::Relaxed);
            self.counters.late.fetch_add(late, Ordering::Relaxed);
        }
        self.applied_events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        // Set under the engine lock, so a snapshot reads an offset that matches its state.
        self.applied_upto.store(end, Ordering::Release);
        let changed = engine.take_changed();
        drop(engine);
        if live && !changed.is_empty() {
            self.signal(&changed, None);
        }
    }

    /// Tells the watchers of `uids` that their standings changed, or that the board left `Active`.
    pub(super) fn signal(&self, uids: &[u64], state: Option<BoardState>) {
        let signals = self.signals.lock().unwrap_or_else(|p| p.into_inner());
        for uid in uids {
            if let Some(tx) = signals.get(uid) {
                tx.send_modify(|s| {
                    s.version += 1;
                    if let Some(state) = state {
                        if state != BoardState::Active && s.state == BoardState::Active {
                            s.deactivations += 1;
                        }
                        s.state = state;
                    }
                });
            }
        }
    }

    /// A receiver for a live leaderboard's signal.
    pub(super) fn watch(
        &self,
        uid: u64,
        active: bool,
    ) -> tokio::sync::watch::Receiver<BoardSignal> {
        let mut signals = self.signals.lock().unwrap_or_else(|p| p.into_inner());
        signals.retain(|_, tx| tx.receiver_count() > 0);
        signals
            .entry(uid)
            .or_insert_with(|| {
                tokio::sync::watch::channel(BoardSignal {
                    version: 0,
                    state: if active {
                        BoardState::Active
                    } else {
                        BoardState::Inactive
                    },
                    deactivations: 0,
                })
                .0
            })
            .subscribe()
    }

    fn apply_meta(&self, record: MetaRecord, end: u64) -> Result<(), String> {
        self.applied_events.fetch_add(1, Ordering::Relaxed);
        if !matches!(record, MetaRecord::Tick { .. }) {
            self.meta_changes.0.send_modify(|n| *n = n.wrapping_add(1));
        }
        let mut state = self.meta.write().unwrap_or_else(|p| p.into_inner());
        let mut engine = self.engine.write().unwrap_or_else(|p| p.into_inner());
        match &record {
            MetaRecord::Tick { at } => {
                // Under the engine lock, like an event record's acceptance time.
                self.accepted_high_water
                    .fetch_max(at.as_microsecond(), Ordering::Relaxed);
            }
            MetaRecord::LeaderboardCreated { uid, leaderboard } => {
                // Applied before `state` records the new board, so it counts only those before it.
                let incarnation = state
                    .incarnations(
                        leaderboard.tenant_id.as_str(),
                        leaderboard.leaderboard_id.as_str(),
                    )
                    .len() as u32
                    + 1;
                // Configs are validated before they are written, so this only fails if a config that
                // was valid once is not any more; the record is still kept, the board just never scores.
                match LeaderboardConfig::from_json(&leaderboard.config) {
                    Ok(config) => engine.add_leaderboard(
                        leaderboard.tenant_id.as_str(),
                        *uid,
                        leaderboard.leaderboard_id.clone(),
                        config,
                        leaderboard.status == LeaderboardStatus::Active,
                        incarnation,
                    ),
                    Err(e) => tracing::error!(
                        leaderboard_id = %leaderboard.leaderboard_id,
                        error = %e,
                        "stored leaderboard config no longer validates; it will not score"
                    ),
                }
            }
            MetaRecord::LeaderboardUpdated {
                tenant_id,
                leaderboard_id,
                status,
                ..
            } => {
                if let Some(uid) = uid_of(&state, tenant_id, leaderboard_id) {
                    let active = *status == LeaderboardStatus::Active;
                    engine.set_active(tenant_id.as_str(), uid, active);
                    let board = if active {
                        BoardState::Active
                    } else {
                        BoardState::Inactive
                    };
                    self.signal(&[uid], Some(board));
                }
            }
            MetaRecord::LeaderboardDeleted {
                tenant_id,
                leaderboard_id,
                ..
            } => {
                if let Some(uid) = uid_of(&state, tenant_id, leaderboard_id) {
                    engine.retire_leaderboard(tenant_id.as_str(), uid);
                    self.signal(&[uid], Some(BoardState::Deleted));
                }
            }
            _ => {}
        }
        let applied = state.apply(record);
        self.applied_upto.store(end, Ordering::Release);
        applied
    }
}

fn uid_of(state: &State, tenant_id: &TenantId, leaderboard_id: &LeaderboardId) -> Option<u64> {
    state
        .leaderboard(tenant_id.as_str(), leaderboard_id.as_str())
        .map(|lb| lb.uid)
}
