//! The embedded backend: the zero-setup default. All state lives in memory as the fold of one
//! write-ahead log (`wal.log`, see [`wal`]) replayed at start-up. A write is checked against memory,
//! appended and fsync'd together with concurrent writes (group commit), applied by the log's writer
//! thread, and only then acknowledged, so readers never see a change that is not yet durable. The data
//! dir is locked so a second process cannot open it.

mod achievements;
mod cold;
mod console;
mod dedupe;
mod ledger;
mod log;
mod meta;
mod rewards;
mod snapshot;
mod wal;

use crate::achievements::*;
use crate::journal::Journal;
use crate::model::*;
use crate::pglog::{Fence, FenceKind, PgLog, PgLogOptions};
use crate::rewards::*;
use crate::seal::MasterKey;
use crate::signatures::SignatureLog;
use crate::{
    IngestStatus, PageStart, StandingsPage, Store, StoreError, StoreResult, StoreStats, now,
};
use async_trait::async_trait;
use dedupe::Dedupe;
use jiff::{SignedDuration, Timestamp};
use ledger::{Ledger, LedgerRecord, Standings};
use meta::MetaRecord;
use phoenix_core::engine::Standing;
use phoenix_core::event::Event;
use phoenix_core::ids::TenantId;
use phoenix_core::window::{Window, WindowId, WindowStatus};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wal::{Folded, WalRecord};

/// What a decoded record means to the ledger: a rewards record itself, or what a metadata record
/// implies (a deleted leaderboard's rules become inactive; a leaderboard that becomes active again
/// settles only windows that end from then on). Call before the fold applies the record.
fn ledger_part(folded: &Folded, record: &WalRecord<'_>) -> Option<LedgerRecord> {
    match record {
        WalRecord::Ledger(r) => Some(r.clone()),
        WalRecord::Meta(MetaRecord::LeaderboardDeleted {
            tenant_id,
            leaderboard_id,
            at,
        }) => Some(LedgerRecord::BoardDeleted {
            tenant_id: tenant_id.to_string(),
            leaderboard_id: leaderboard_id.to_string(),
            at: *at,
        }),
        WalRecord::Meta(MetaRecord::LeaderboardUpdated {
            tenant_id,
            leaderboard_id,
            status,
            updated_at,
            previous_status,
            ..
        }) => {
            // The record says what the status was; older records are judged by the fold.
            let was_active = match previous_status {
                Some(previous) => *previous == LeaderboardStatus::Active,
                None => folded
                    .meta()
                    .leaderboard(tenant_id.as_str(), leaderboard_id.as_str())
                    .is_some_and(|lb| lb.status == LeaderboardStatus::Active),
            };
            let (tenant_id, leaderboard_id, at) = (
                tenant_id.to_string(),
                leaderboard_id.to_string(),
                *updated_at,
            );
            match (was_active, *status == LeaderboardStatus::Active) {
                (false, true) => Some(LedgerRecord::BoardActivated {
                    tenant_id,
                    leaderboard_id,
                    at,
                }),
                (true, false) => Some(LedgerRecord::BoardDeactivated {
                    tenant_id,
                    leaderboard_id,
                    at,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Claims an event id in the fold (a cluster decides duplicates in log order): true when it is new.
/// An index piece that cannot be read is an error: every node must decide alike, so the node stops
/// folding (and a restart loads the cluster's snapshot) rather than count the event where the others
/// may not.
fn claim_at(dedupe: &mut Dedupe, key: u128, at_us: i64) -> Result<bool, String> {
    let at = Timestamp::from_microsecond(at_us).unwrap_or(Timestamp::UNIX_EPOCH);
    dedupe
        .claim(key, at)
        .map_err(|e| format!("an idempotency piece could not be read: {e}"))
}

/// Hard-links every file under `from` into the same place under `to` (a missing `from` is empty).
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let entries = match fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    crate::journal::create_private_dir(to)?;
    for entry in entries {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            link_tree(&source, &target)?;
        } else if !entry.file_name().to_string_lossy().ends_with(".tmp") {
            fs::hard_link(&source, &target)?;
        }
    }
    Ok(())
}

/// In a cluster the log's time (the database's) is the record's: events are accepted then, and a
/// tick cannot claim a later time than the log gives it (a node's clock never ends a window).
fn at_log_time(record: &mut WalRecord<'_>, at_us: Option<i64>) {
    let Some(at_us) = at_us else {
        return;
    };
    match record {
        WalRecord::Events(batch) => batch.accepted_at = at_us,
        WalRecord::Meta(MetaRecord::Tick { at }) => {
            if let Ok(log_at) = Timestamp::from_microsecond(at_us) {
                *at = (*at).min(log_at);
            }
        }
        _ => {}
    }
}

/// Applies a ledger record (on replay, in the replaying thread; live, on the ledger's own thread, so a
/// settlement of a million grants never holds up the log's writer and the events behind it).
fn apply_ledger(
    ledger: &Ledger,
    folded: &Folded,
    cold: &cold::ColdStore,
    end: u64,
    record: &LedgerRecord,
    live: bool,
) -> Result<(), String> {
    let standings =
        |tenant: &str, uid: u64, window: &str| final_standings(folded, cold, tenant, uid, window);
    ledger.apply(end, record, &standings, live)
}

/// Joins a thread when dropped.
struct JoinOnDrop(Option<std::thread::JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// What the ledger's thread is handed, in log order.
enum LedgerJob {
    Record(u64, Box<LedgerRecord>),
    /// An event record of a tenant with achievements, evaluated against them.
    Events(u64, Box<ledger::achieve::Prepared>),
}

/// Folds a replayed event record into achievement progress.
fn replay_events(ledger: &Ledger, end: u64, batch: &wal::EventBatch<'_>) -> Result<(), String> {
    let at = Timestamp::from_microsecond(batch.accepted_at)
        .map_err(|e| format!("event record time: {e}"))?;
    let events = batch
        .events
        .iter()
        .map(|body| {
            Event::from_stored(body.clone())
                .ok_or_else(|| "event record holds an unreadable event".to_owned())
        })
        .collect::<Result<Vec<Event>, String>>()?;
    match ledger.prepare(&batch.tenant_id, at, &events) {
        Some(prepared) => ledger.apply_events(end, &prepared),
        None => Ok(()),
    }
}

/// A window's frozen final standings, from memory or from its cold file; `None` when the leaderboard
/// has no such window.
fn final_standings(
    folded: &Folded,
    cold: &cold::ColdStore,
    tenant_id: &str,
    uid: u64,
    window: &str,
) -> Result<Option<Standings>, String> {
    let Some(id) = WindowId::parse(window) else {
        return Ok(None);
    };
    let hot = {
        let engine = folded.engine();
        match engine.leaderboard_state(tenant_id, uid) {
            Some(lb) if lb.window(&id).is_some() => engine.freeze(tenant_id, uid, &id),
            Some(lb) if lb.cold_window(&id).is_some() => None,
            _ => return Ok(None),
        }
    };
    let entries: Vec<(u32, String, f64)> = match hot {
        Some(frozen) => frozen
            .entries
            .into_iter()
            .map(|s| (s.rank, s.user_id, s.score))
            .collect(),
        None => {
            let loaded = cold.load(uid, &id)?;
            loaded
                .page(1, loaded.total())
                .into_iter()
                .map(|s| (s.rank, s.user_id, s.score))
                .collect()
        }
    };
    Ok(Some((entries.len() as u32, entries)))
}

/// The log's segments (see [`crate::journal::Journal::open_segmented`]).
const WAL_DIR: &str = "wal";
/// The idempotency index's pieces (see [`dedupe`]).
const DEDUPE_DIR: &str = "dedupe";
/// Ended windows' final standings (see [`cold`]).
const COLD_DIR: &str = "cold";
/// The single-file log of versions before segments: moved into `wal/` as its first segment.
const LEGACY_WAL: &str = "wal.log";
const LOCK_FILE: &str = "LOCK";
const KEY_CHECK: &[u8] = b"phoenix master key check";

/// Why the embedded store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "data dir {0} is in use by another phoenix process (its LOCK file is held); stop that process or choose another PHOENIX_DATA_DIR"
    )]
    Locked(String),
    #[error("data dir {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "PHOENIX_MASTER_KEY does not match the key this data dir was sealed with; set the original key"
    )]
    WrongMasterKey,
    #[error("data dir {path} holds a record this version cannot read: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("cluster log: {0}")]
    Cluster(String),
}

/// The 1-based rank a page starting at `start` begins with.
/// Where a page starts and how many entries it may hold; `None` when it is empty by definition (around
/// a player without a rank).
fn page_bounds(
    engine: &phoenix_core::engine::Engine,
    tenant_id: &str,
    uid: u64,
    window: &WindowId,
    start: PageStart,
    count: u32,
) -> Option<(u32, u32)> {
    match start {
        PageStart::Rank(rank) => Some((rank.max(1), count)),
        PageStart::After {
            score,
            seq,
            user_id,
        } => Some((
            engine
                .rank_after(tenant_id, uid, window, score, seq, &user_id)
                .unwrap_or(1),
            count,
        )),
        PageStart::Around { user_id, radius } => {
            let rank = engine.rank_of(tenant_id, uid, window, &user_id)?;
            Some(around(rank, radius, count))
        }
    }
}

/// The first rank and the length of the page `radius` ranks either side of `rank`, at most `count`
/// long, truncated (not shifted) at the top.
fn around(rank: u32, radius: u32, count: u32) -> (u32, u32) {
    let from = rank.saturating_sub(radius).max(1);
    let span = (rank - from).saturating_add(radius).saturating_add(1);
    (from, span.min(count))
}

/// Where the store reads the time: the system clock, the cluster's (the database's, as an offset
/// from the system clock that the log keeps measuring), or (for tests and `phoenix bench soak`) a
/// clock the caller moves by hand. There is no way to reach the manual clock from configuration or
/// over HTTP.
#[derive(Debug, Clone, Default)]
pub struct Clock(ClockKind);

#[derive(Debug, Clone, Default)]
enum ClockKind {
    #[default]
    System,
    Manual(Arc<std::sync::atomic::AtomicI64>),
    /// The system clock plus the database clock's lead over it (µs).
    Offset(Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(ClockKind::System)
    }

    /// A clock that stands at `start` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn manual(start: Timestamp) -> Clock {
        Clock(ClockKind::Manual(Arc::new(
            std::sync::atomic::AtomicI64::new(start.as_microsecond()),
        )))
    }

    /// The system clock moved by `offset_us` (kept up to date by whoever measures it).
    pub fn offset(offset_us: Arc<std::sync::atomic::AtomicI64>) -> Clock {
        Clock(ClockKind::Offset(offset_us))
    }

    /// The time now, at microsecond precision.
    pub fn now(&self) -> Timestamp {
        match &self.0 {
            ClockKind::System => now(),
            ClockKind::Manual(at) => Timestamp::from_microsecond(at.load(Ordering::Acquire))
                .unwrap_or(Timestamp::UNIX_EPOCH),
            ClockKind::Offset(offset) => {
                let t = now().as_microsecond() + offset.load(Ordering::Acquire);
                Timestamp::from_microsecond(t).unwrap_or(Timestamp::UNIX_EPOCH)
            }
        }
    }

    /// Moves a manual clock to `at` (never backwards); does nothing to the others.
    pub fn set(&self, at: Timestamp) {
        if let ClockKind::Manual(clock) = &self.0 {
            clock.fetch_max(at.as_microsecond(), Ordering::AcqRel);
        }
    }

    /// Moves a manual clock forward by `by`.
    pub fn advance(&self, by: SignedDuration) {
        self.set(self.now() + by);
    }
}

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How long an event id is remembered for idempotency (SPEC §5, default 7 days).
    pub dedupe_horizon: SignedDuration,
    /// How much longer than the horizon an id still counts as seen (default 6 minutes: events may be
    /// stamped 5 minutes ahead of the clock, SPEC §5, and a minute for clocks apart).
    pub dedupe_slack: SignedDuration,
    /// How long log segments are kept once a snapshot covers them (`None`: forever). Default 24 hours.
    pub log_retention: Option<std::time::Duration>,
    /// Size at which the log starts a new segment.
    pub segment_bytes: u64,
    /// Bytes of ended windows' standings kept in memory after a read (default 64 MiB).
    pub cold_cache_bytes: usize,
    /// Recently accepted event ids kept in memory before they are frozen into a piece on disk
    /// (default 1 Mi, about 40 MB at most).
    pub dedupe_hot_keys: usize,
    /// Where time comes from (the system clock unless a test drives it).
    pub clock: Clock,
}

impl EmbeddedOptions {
    fn dedupe(&self) -> dedupe::DedupeOptions {
        dedupe::DedupeOptions {
            horizon: self.dedupe_horizon,
            slack: self.dedupe_slack,
            hot_keys: self.dedupe_hot_keys.max(1),
        }
    }
}

fn corrupt(dir: &Path, detail: String) -> OpenError {
    OpenError::Corrupt {
        path: dir.display().to_string(),
        detail,
    }
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            dedupe_horizon: SignedDuration::from_hours(24 * 7),
            dedupe_slack: SignedDuration::from_mins(6),
            log_retention: Some(std::time::Duration::from_secs(24 * 3600)),
            segment_bytes: crate::journal::SEGMENT_BYTES,
            cold_cache_bytes: 64 << 20,
            dedupe_hot_keys: 1 << 20,
            clock: Clock::system(),
        }
    }
}

/// Moves a pre-segment `wal.log` into `wal/` as the segment starting at offset 0 (offsets are
/// unchanged, so existing snapshots still match).
fn migrate_legacy_log(dir: &Path) -> std::io::Result<()> {
    let legacy = dir.join(LEGACY_WAL);
    if !legacy.exists() {
        return Ok(());
    }
    let segments = dir.join(WAL_DIR);
    crate::journal::create_private_dir(&segments)?;
    let first = crate::journal::segment_path(&segments, 0);
    if first.exists() {
        return Err(std::io::Error::other(format!(
            "both {} and {} exist; keep the one you trust and remove the other",
            legacy.display(),
            first.display()
        )));
    }
    fs::rename(&legacy, &first)?;
    crate::journal::sync_dir(&segments)?;
    crate::journal::sync_dir(dir)?;
    tracing::info!(path = %first.display(), "moved the log into segments");
    Ok(())
}

/// How many snapshots are kept: the older one is the fallback if the newest is damaged, so the log
/// is kept from the older one's offset on.
const SNAPSHOTS_KEPT: usize = 2;

/// Deletes the log segments every kept snapshot covers and that are older than `retention`. A
/// segment's age counts from when the store first saw it complete (`closed`, in the store's clock, so a
/// driven clock ages the log as it ages everything else); after a restart, from the first snapshot.
fn remove_covered_segments(
    dir: &Path,
    retention: std::time::Duration,
    closed: &Mutex<std::collections::HashMap<u64, Timestamp>>,
    now: Timestamp,
) -> std::io::Result<()> {
    let snapshots = snapshot::list(dir)?;
    let Some(covered) = snapshots.iter().map(|(offset, _)| *offset).min() else {
        return Ok(());
    };
    let cutoff = now - SignedDuration::try_from(retention).unwrap_or(SignedDuration::MAX);
    let mut closed = closed.lock().unwrap_or_else(|p| p.into_inner());
    // Every complete segment is stamped when first seen, not only those the deletion reaches: each one
    // ages from then on, so a log writing many segments a day loses them all after the retention.
    let segments = crate::journal::list_segments(&dir.join(WAL_DIR))?;
    if let Some((_, complete)) = segments.split_last() {
        for segment in complete {
            closed.entry(segment.start).or_insert(now);
        }
    }
    closed.retain(|start, _| segments.iter().any(|s| s.start == *start));
    let removed = crate::journal::remove_segments_before(&dir.join(WAL_DIR), covered, |segment| {
        closed.get(&segment.start).is_some_and(|at| *at <= cutoff)
    })?;
    for segment in &removed {
        closed.remove(&segment.start);
    }
    if let Some(last) = removed.last() {
        tracing::info!(
            segments = removed.len(),
            upto = last.start + last.len,
            "deleted log segments that every snapshot covers and retention no longer keeps"
        );
    }
    Ok(())
}

/// Where the intact log ends, as far as file sizes tell (a torn tail is cut later, at open).
fn log_end(dir: &Path) -> u64 {
    crate::journal::list_segments(&dir.join(WAL_DIR))
        .ok()
        .and_then(|s| s.last().map(|l| l.start + l.len))
        .unwrap_or(0)
}

/// The embedded, single-process store in `PHOENIX_DATA_DIR`.
pub struct EmbeddedStore {
    dir: PathBuf,
    folded: Arc<Folded>,
    log: log::Log,
    /// The idempotency index. On one node, ingestion claims ids before appending; in a cluster the fold
    /// claims them in log order (two nodes may append the same id; the later one counts nothing).
    dedupe: Arc<Mutex<Dedupe>>,
    /// The fence of the cluster-wide gate held by the metadata (or rewards) writer now, if any.
    meta_fence: Mutex<Option<Fence>>,
    rewards_fence: Mutex<Option<Fence>>,
    /// A cluster's shared hot state in Redis (signature replay), when this is a cluster node.
    shared: Option<Arc<crate::redis_shared::RedisShared>>,
    /// Held shared by every ingestion from claim to durable append, and exclusively by a snapshot, so a
    /// snapshot never sees a dedupe claim whose event is not yet in the state it captures.
    ingest_gate: tokio::sync::RwLock<()>,
    /// `applied_events` when the last snapshot was taken (or at start).
    events_at_snapshot: AtomicU64,
    signatures: SignatureLog,
    /// Serializes metadata writers across check → durable append → apply. Metadata writes are rare; the
    /// gate is never held by readers or by ingestion, so neither waits on it.
    write_gate: tokio::sync::Mutex<()>,
    master: MasterKey,
    options: EmbeddedOptions,
    /// Ended windows' standings on disk (see [`cold`]).
    cold: Arc<cold::ColdStore>,
    /// Rewards, grants and coupons (see [`ledger`]).
    ledger: Arc<Ledger>,
    /// Serializes rewards writers across check → durable append → apply, so an answer that depends on
    /// the ledger (a limit, a conflict, 201 or 200) is the one the log's order gives.
    rewards_gate: tokio::sync::Mutex<()>,
    /// One mover of ended windows at a time.
    maintain_gate: tokio::sync::Mutex<()>,
    /// Held while the log's writer applies a group: a cluster snapshot copies the state between two
    /// groups (on one node the ingest and write gates do that).
    fold_lock: Arc<Mutex<()>>,
    /// When the cluster's newest snapshot was completed (the database's clock, µs; 0: none known).
    snapshot_completed_us: std::sync::atomic::AtomicI64,
    /// The immutable files this node's last cluster snapshot stored, and their chunks.
    snapshot_files: Mutex<crate::pgsnap::KnownFiles>,
    /// Windows moved to cold storage since start.
    moved_cold: AtomicU64,
    /// When each complete log segment was first seen (store time), for retention.
    segments_closed: Arc<Mutex<std::collections::HashMap<u64, Timestamp>>>,
    /// Joins the ledger's thread when the store goes (after the log, whose end ends it): its last
    /// writes are done before the data dir's lock below is let go, so a new store never opens the dir
    /// while the old one is still writing.
    _ledger_thread: JoinOnDrop,
    _lock: File,
}

impl EmbeddedStore {
    /// [`EmbeddedStore::open_with`] with default options.
    pub fn open(dir: &Path, master: MasterKey) -> Result<Self, OpenError> {
        Self::open_with(dir, master, EmbeddedOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`, sealing secrets with `master`, and replays its log.
    /// Refuses a data dir that another process holds, or that was sealed with a different master key.
    /// Blocking file work: call it off the async runtime's workers (e.g. in `spawn_blocking`).
    pub fn open_with(
        dir: &Path,
        master: MasterKey,
        options: EmbeddedOptions,
    ) -> Result<Self, OpenError> {
        Self::open_on(dir, master, options, None)
    }

    /// A cluster node: the same state machine folding the PostgreSQL log (see [`crate::pglog`]) from
    /// its start, with `scratch` (emptied first) for what the node derives from the log and keeps on
    /// disk (the idempotency index's frozen pieces, ended windows, the rewards ledger). Nothing in
    /// `scratch` is needed by another node or by a restart. Blocking: call it off the async workers.
    pub fn open_cluster(
        scratch: &Path,
        master: MasterKey,
        mut options: EmbeddedOptions,
        log: PgLogOptions,
    ) -> Result<Self, OpenError> {
        match fs::remove_dir_all(scratch) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(OpenError::Io {
                    path: scratch.display().to_string(),
                    source: e,
                });
            }
            _ => {}
        }
        // The log starts anew with every node; segments are never written.
        options.log_retention = None;
        // From the cluster's newest snapshot, when there is one: the log after it is replayed.
        crate::journal::create_private_dir(scratch).map_err(|source| OpenError::Io {
            path: scratch.display().to_string(),
            source,
        })?;
        if let Some(pos) = crate::pgsnap::load_newest(&log.url, scratch, options.dedupe_horizon)
            .map_err(OpenError::Cluster)?
        {
            tracing::info!(position = pos, "loaded the cluster's newest snapshot");
        }
        Self::open_on(scratch, master, options, Some(log))
    }

    fn open_on(
        dir: &Path,
        master: MasterKey,
        mut options: EmbeddedOptions,
        cluster: Option<PgLogOptions>,
    ) -> Result<Self, OpenError> {
        let io = |source| OpenError::Io {
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        for (path, e) in crate::journal::restrict_to_owner(dir) {
            tracing::warn!(path = %path.display(), error = %e,
                "cannot make this readable by its owner only; check the data dir's permissions");
        }
        let lock = crate::journal::owner_only()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }

        migrate_legacy_log(dir).map_err(io)?;
        // A cluster node's snapshot is the one it loaded from PostgreSQL into `dir` (the log's rows
        // after it are all there: rows are removed only behind the oldest snapshot kept).
        let log_len = match cluster {
            None => Some(log_end(dir)),
            Some(_) => None,
        };
        let restored = Self::restore_snapshot(dir, &master, &options, log_len)?;
        let (folded, mut dedupe, start, had_ledger) = match restored {
            Some(restored) => restored,
            None => (
                Arc::new(Folded::default()),
                Dedupe::open(&dir.join(DEDUPE_DIR), None, options.dedupe())
                    .map_err(|detail| corrupt(dir, detail))?,
                0,
                false,
            ),
        };
        if had_ledger && !dir.join(ledger::LEDGER_FILE).exists() {
            // An empty ledger would silently forget every grant, code and redemption before the
            // snapshot (the log before it may be gone).
            return Err(corrupt(
                dir,
                format!(
                    "{} is missing but the snapshot was taken with it: restore it from a backup (see docs/operations.md)",
                    ledger::LEDGER_FILE
                ),
            ));
        }
        let cold = Arc::new(cold::ColdStore::new(
            dir.join(COLD_DIR),
            options.cold_cache_bytes,
        ));
        // The ledger folds the same log with its own watermark: a new ledger starts where the
        // snapshot does (no rewards record can be older than the ledger itself).
        let ledger = Arc::new(
            Ledger::open(dir, master.derive("coupon-codes"), start)
                .map_err(|detail| corrupt(dir, detail))?,
        );
        let snapshot_start = start;
        let replay_from = start
            .min(ledger.watermark())
            .min(ledger.progress_watermark());
        let fold_dedupes = cluster.is_some();
        let shift = if fold_dedupes { log::SEQ_SHIFT } else { 0 };
        // A cluster node expires ids by its fold's time (the log's, never ahead of a record still to
        // come), so that the log after the snapshot is decided as every other node decided it.
        dedupe.prune(match fold_dedupes {
            true => Timestamp::from_microsecond(folded.accepted_high_water.load(Ordering::Acquire))
                .unwrap_or(Timestamp::UNIX_EPOCH),
            false => options.clock.now(),
        });
        let dedupe = Arc::new(Mutex::new(dedupe));
        let replay_dedupe = dedupe.clone();
        // Replay errors are kept aside: the journal's replay callback speaks io::Error.
        let mut failure: Option<OpenError> = None;
        let mut replay =
            |offset: u64, end: u64, at_us: Option<i64>, payload: &[u8]| -> std::io::Result<()> {
                let fail = |e: OpenError, failure: &mut Option<OpenError>| {
                    *failure = Some(e);
                    std::io::Error::other("replay stopped")
                };
                let record = match wal::decode(payload) {
                    Ok(r) => r,
                    Err(detail) => {
                        return Err(fail(corrupt(dir, detail), &mut failure));
                    }
                };
                let mut record = record;
                if fold_dedupes {
                    at_log_time(&mut record, at_us);
                    if let WalRecord::Events(batch) = &mut record {
                        let mut dedupe = replay_dedupe.lock().unwrap_or_else(|p| p.into_inner());
                        let mut unreadable = None;
                        batch.events.retain(|body| {
                            Event::dedupe_key_of(body).is_none_or(|id| {
                                let key = dedupe.key(&batch.tenant_id, id);
                                claim_at(&mut dedupe, key, batch.accepted_at).unwrap_or_else(|e| {
                                    unreadable.get_or_insert(e);
                                    true
                                })
                            })
                        });
                        if let Some(detail) = unreadable {
                            return Err(fail(corrupt(dir, detail), &mut failure));
                        }
                    }
                }
                let applied = match (ledger_part(&folded, &record), &record) {
                    (Some(l), _) => apply_ledger(&ledger, &folded, &cold, end, &l, false),
                    (None, WalRecord::Events(batch))
                        if end > ledger.progress_watermark()
                            && ledger.wants_events(&batch.tenant_id) =>
                    {
                        replay_events(&ledger, end, batch)
                    }
                    _ => Ok(()),
                };
                if let Err(detail) = applied {
                    return Err(fail(corrupt(dir, detail), &mut failure));
                }
                if offset < snapshot_start {
                    // Before the snapshot: only the ledger had not applied it.
                    return Ok(());
                }
                match &record {
                    WalRecord::Meta(MetaRecord::Init { key_check }) => {
                        let sealed = hex::decode(key_check).unwrap_or_default();
                        if master.unseal("key-check", &sealed).as_deref() != Some(KEY_CHECK) {
                            return Err(fail(OpenError::WrongMasterKey, &mut failure));
                        }
                    }
                    WalRecord::Events(_) if fold_dedupes => {}
                    WalRecord::Events(batch) => {
                        let at = Timestamp::from_microsecond(batch.accepted_at)
                            .unwrap_or(Timestamp::UNIX_EPOCH);
                        let mut dedupe = replay_dedupe.lock().unwrap_or_else(|p| p.into_inner());
                        for body in &batch.events {
                            if let Some(id) = Event::dedupe_key_of(body) {
                                let key = dedupe.key(&batch.tenant_id, id);
                                dedupe.replay(key, at);
                            }
                        }
                    }
                    WalRecord::Meta(_) | WalRecord::Ledger(_) => {}
                }
                folded
                    .apply(offset << shift, end, record, false)
                    .map_err(|detail| fail(corrupt(dir, detail), &mut failure))
            };
        let live = folded.clone();
        let live_ledger = ledger.clone();
        let live_dedupe = dedupe.clone();
        let fold_lock = Arc::new(Mutex::new(()));
        let folding = fold_lock.clone();
        let (to_ledger, ledger_jobs) = std::sync::mpsc::channel::<LedgerJob>();
        let apply: crate::journal::ApplyFn = Box::new(
            move |group: &mut [crate::journal::Durable<'_>]| {
                let _folding = folding.lock().unwrap_or_else(|p| p.into_inner());
                for record in group.iter_mut() {
                    let end = record.end;
                    let live_events = record
                        .attachment
                        .take()
                        .and_then(|a| a.downcast::<wal::LiveEvents>().ok());
                    // Events handed over by this node's ingestion, or (in a cluster) decoded from
                    // another node's record; anything else goes to the fold as decoded.
                    #[allow(clippy::type_complexity)]
                    let (events, other): (
                        Option<Result<wal::LiveEvents, String>>,
                        Option<Result<WalRecord<'_>, String>>,
                    ) = match live_events {
                        Some(batch) => (Some(Ok(*batch)), None),
                        None => match wal::decode(record.payload) {
                            Ok(WalRecord::Events(batch)) if fold_dedupes => {
                                (Some(wal::LiveEvents::decoded(batch)), None)
                            }
                            Ok(r) => (None, Some(Ok(r))),
                            Err(e) => (None, Some(Err(e))),
                        },
                    };
                    let outcome = match (events, other) {
                        (Some(Ok(mut batch)), _) => {
                            if fold_dedupes {
                                // The cluster's time, and its decision on duplicates, in log order.
                                let at = record
                                    .at_us
                                    .and_then(|us| Timestamp::from_microsecond(us).ok())
                                    .unwrap_or(batch.accepted_at);
                                let kept: Vec<bool> = {
                                    let mut dedupe =
                                        live_dedupe.lock().unwrap_or_else(|p| p.into_inner());
                                    batch
                                        .events
                                        .iter()
                                        .map(|e| {
                                            let key = dedupe.key(&batch.tenant_id, &e.event_id);
                                            claim_at(&mut dedupe, key, at.as_microsecond())
                                        })
                                        .collect::<Result<_, _>>()
                                        .map_err(|e| format!("position {end}: {e}"))?
                                };
                                if at != batch.accepted_at || kept.contains(&false) {
                                    // Evaluated again below with what the log decided.
                                    batch.achievements = None;
                                }
                                let mut keep = kept.iter();
                                batch
                                    .events
                                    .retain(|_| keep.next().copied().unwrap_or(true));
                                batch.accepted_at = at;
                                if let Some(slot) = &batch.outcome {
                                    let _ = slot.set(kept);
                                }
                            }
                            if live_ledger.wants_events(&batch.tenant_id) {
                                // Achievements: evaluated with the achievements in force at this
                                // place in the log (the ingest path's evaluation unless they changed
                                // since), and folded on the ledger's thread in log order, handed
                                // over before the fold moves past the record (so a snapshot taken
                                // after the fold waits for them). The queue is bounded: beyond it,
                                // the log's writer waits (and with it ingestion), rather than memory
                                // growing.
                                // A batch none of whose events counts has nothing to fold.
                                if let Some(prepared) = live_ledger
                                    .prepared_at_log(
                                        batch.achievements.take(),
                                        &batch.tenant_id,
                                        batch.accepted_at,
                                        &batch.events,
                                    )
                                    .filter(|p| p.counted() > 0)
                                {
                                    while live_ledger.queued_events.load(Ordering::Acquire)
                                        > ledger::achieve::MAX_QUEUED_EVENTS
                                        && live_ledger.is_healthy()
                                    {
                                        std::thread::sleep(std::time::Duration::from_millis(1));
                                    }
                                    live_ledger.events_enqueued(end, prepared.counted());
                                    if to_ledger
                                        .send(LedgerJob::Events(end, Box::new(prepared)))
                                        .is_err()
                                    {
                                        live_ledger.stop("the ledger's thread has stopped");
                                    }
                                }
                            }
                            live.apply_events(
                                record.offset << shift,
                                end,
                                &batch.tenant_id,
                                batch.accepted_at,
                                &batch.events,
                                true,
                            );
                            Ok(())
                        }
                        (Some(Err(e)), _) => Err(e),
                        (None, Some(decoded)) => decoded.and_then(|mut r| {
                            if fold_dedupes {
                                at_log_time(&mut r, record.at_us);
                            }
                            // Handed over in log order, before the fold moves past the record.
                            if let Some(l) = ledger_part(&live, &r) {
                                live_ledger.enqueued(end);
                                live_ledger.note_record(end, &l);
                                if to_ledger.send(LedgerJob::Record(end, Box::new(l))).is_err() {
                                    // The fold still applies the record; the ledger stops short of
                                    // it, and a restart re-applies it from the log.
                                    live_ledger.stop("the ledger's thread has stopped");
                                }
                            }
                            live.apply(record.offset << shift, end, r, true)
                        }),
                        (None, None) => Ok(()),
                    };
                    if let Err(e) = outcome {
                        if fold_dedupes {
                            // Another node applied it: going on without it would fold another
                            // state than theirs. The node stops folding (`/readyz` 503) instead.
                            return Err(format!("position {end}: {e}"));
                        }
                        // A record we just wrote ourselves cannot be unreadable: a bug, not input.
                        tracing::error!(offset = record.offset, error = %e, "could not apply a durable record");
                    }
                }
                Ok(())
            },
        );
        let log = match cluster {
            None => {
                let opened = Journal::open_segmented(
                    &dir.join(WAL_DIR),
                    replay_from,
                    |offset: u64, payload: &[u8]| {
                        let end = offset + (crate::journal::HEADER + payload.len()) as u64;
                        replay(offset, end, None, payload)
                    },
                    Some(apply),
                    options.segment_bytes,
                );
                if let Some(e) = failure {
                    return Err(e);
                }
                log::Log::File(opened.map_err(io)?)
            }
            Some(pg) => {
                let opened = PgLog::open(
                    &pg,
                    replay_from,
                    |r: &mut crate::journal::Durable<'_>| {
                        replay(r.offset, r.end, r.at_us, r.payload).map_err(|e| e.to_string())
                    },
                    apply,
                );
                if let Some(e) = failure {
                    return Err(e);
                }
                let log = opened.map_err(|e| OpenError::Cluster(e.to_string()))?;
                // The store's time is the database's from now on.
                options.clock = Clock::offset(log.clock_offset());
                log::Log::Pg(log)
            }
        };
        // Progress the replay folded is committed before anything new arrives.
        ledger.flush().map_err(|detail| corrupt(dir, detail))?;
        let ledger_thread;
        {
            let (ledger, folded, cold) = (ledger.clone(), folded.clone(), cold.clone());
            ledger_thread = std::thread::Builder::new()
                .name("phoenix-ledger".into())
                .spawn(move || {
                    // However the thread ends (the journal dropped, or a panic), nobody waits on it
                    // for ever: a panicking thread marks the ledger stopped.
                    struct StopOnPanic(Arc<Ledger>);
                    impl Drop for StopOnPanic {
                        fn drop(&mut self) {
                            if std::thread::panicking() {
                                self.0.stop("the ledger's thread panicked");
                            }
                        }
                    }
                    let _guard = StopOnPanic(ledger.clone());
                    // Ends when the journal (and with it the sender) is dropped.
                    loop {
                        // Progress from events is committed at most FLUSH_INTERVAL after it
                        // changed, or sooner (see `Ledger::flush`).
                        let job = match ledger.flush_due() {
                            None => match ledger_jobs.recv() {
                                Ok(job) => Some(job),
                                Err(_) => break,
                            },
                            // Due: commit before taking more (a queue that never empties must not
                            // put it off).
                            Some(due) if due <= std::time::Instant::now() => None,
                            Some(due) => {
                                let wait = due.saturating_duration_since(std::time::Instant::now());
                                match ledger_jobs.recv_timeout(wait) {
                                    Ok(job) => Some(job),
                                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                                }
                            }
                        };
                        let outcome = match job {
                            None => ledger.flush_when_due(),
                            Some(LedgerJob::Record(end, record)) => {
                                apply_ledger(&ledger, &folded, &cold, end, &record, true)
                            }
                            Some(LedgerJob::Events(end, prepared)) => {
                                let done = ledger.apply_events(end, &prepared);
                                ledger.events_folded(end);
                                ledger.events_released(prepared.counted());
                                done
                            }
                        };
                        if let Err(e) = outcome {
                            tracing::error!(error = %e, "a rewards record was not applied");
                        }
                    }
                    let _ = ledger.flush();
                })
                .map_err(io)?;
        }
        let ledger_thread = JoinOnDrop(Some(ledger_thread));
        let signatures = SignatureLog::open(dir, Timestamp::now().as_second()).map_err(io)?;
        let snapshot_at = AtomicU64::new(folded.applied_events.load(Ordering::Relaxed));
        Ok(EmbeddedStore {
            dir: dir.to_owned(),
            folded,
            log,
            dedupe,
            meta_fence: Mutex::new(None),
            rewards_fence: Mutex::new(None),
            shared: None,
            ingest_gate: tokio::sync::RwLock::new(()),
            events_at_snapshot: snapshot_at,
            signatures,
            write_gate: tokio::sync::Mutex::new(()),
            master,
            cold,
            ledger,
            rewards_gate: tokio::sync::Mutex::new(()),
            options,
            maintain_gate: tokio::sync::Mutex::new(()),
            fold_lock,
            snapshot_completed_us: std::sync::atomic::AtomicI64::new(0),
            snapshot_files: Mutex::default(),
            moved_cold: AtomicU64::new(0),
            segments_closed: Arc::default(),
            _ledger_thread: ledger_thread,
            _lock: lock,
        })
    }

    /// Loads the newest readable snapshot: the folded state, the dedupe index, and the log offset to
    /// replay from. A damaged snapshot is skipped (with a warning) for an older one or a full replay.
    #[allow(clippy::type_complexity)]
    fn restore_snapshot(
        dir: &Path,
        master: &MasterKey,
        options: &EmbeddedOptions,
        log_len: Option<u64>,
    ) -> Result<Option<(Arc<Folded>, Dedupe, u64, bool)>, OpenError> {
        let io = |source| OpenError::Io {
            path: dir.display().to_string(),
            source,
        };
        let wal_len = log_len.unwrap_or(u64::MAX);
        for (offset, path) in snapshot::list(dir).map_err(io)? {
            let decoded = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| snapshot::decode(&bytes))
                .and_then(|snap| {
                    if snap.wal_offset != offset || snap.wal_offset > wal_len {
                        return Err("its offset is beyond the end of the log".into());
                    }
                    let state = meta::State::restore(snap.meta)?;
                    let mut engine = phoenix_core::engine::Engine::restore(snap.engine)?;
                    engine.fill_incarnations(|tenant, uid, id| {
                        let uids = state.incarnations(tenant, id.as_str());
                        uids.iter()
                            .position(|u| *u == uid)
                            .map_or(1, |i| i as u32 + 1)
                    });
                    Ok((
                        state,
                        engine,
                        snap.dedupe,
                        snap.wal_offset,
                        snap.accepted_high_water,
                        snap.ledger,
                    ))
                });
            match decoded {
                Ok((state, engine, dedupe, offset, high_water, ledger)) => {
                    if let Some(check) = &state.key_check {
                        let sealed = hex::decode(check).unwrap_or_default();
                        if master.unseal("key-check", &sealed).as_deref() != Some(KEY_CHECK) {
                            return Err(OpenError::WrongMasterKey);
                        }
                    }
                    let folded = Folded::default();
                    *folded.meta.write().unwrap_or_else(|p| p.into_inner()) = state;
                    *folded.engine.write().unwrap_or_else(|p| p.into_inner()) = engine;
                    folded.applied_upto.store(offset, Ordering::Release);
                    folded
                        .accepted_high_water
                        .store(high_water, Ordering::Release);
                    tracing::info!(path = %path.display(), "restored snapshot; replaying the log after it");
                    // Keys of a snapshot from before they carried their time are taken as accepted
                    // at its time high-water mark (the same on every node that loads it; no key in
                    // it is younger), or now if it has none.
                    let undated = Timestamp::from_microsecond(high_water)
                        .ok()
                        .filter(|_| high_water > 0)
                        .unwrap_or_else(|| options.clock.now());
                    let dedupe =
                        Dedupe::restore(dedupe, &dir.join(DEDUPE_DIR), options.dedupe(), undated)
                            .map_err(|detail| corrupt(dir, detail))?;
                    return Ok(Some((Arc::new(folded), dedupe, offset, ledger)));
                }
                Err(e) if log_len.is_none() => {
                    // A cluster node's snapshot came with the files it refers to (pieces, cold
                    // windows, the ledger): replaying the log from its start over those would count
                    // what they hold twice. The node refuses to start instead.
                    return Err(corrupt(
                        dir,
                        format!("the cluster's snapshot cannot be read by this node: {e}"),
                    ));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable snapshot");
                }
            }
        }
        Ok(None)
    }

    /// Events applied since the last snapshot (or since start).
    pub fn events_since_snapshot(&self) -> u64 {
        self.folded
            .applied_events
            .load(Ordering::Relaxed)
            .saturating_sub(self.events_at_snapshot.load(Ordering::Relaxed))
    }

    /// Writes a snapshot of the whole state, so the next start replays only the log after it. Ingestion
    /// pauses while the state is copied (not while it is written).
    pub async fn checkpoint(&self) -> StoreResult<()> {
        let snap = {
            let _ingest = self.ingest_gate.write().await;
            let _meta_writes = self.write_gate.lock().await;
            let meta = self.folded.meta();
            let engine = self.folded.engine();
            let snap = snapshot::Snapshot {
                wal_offset: self.folded.applied_upto.load(Ordering::Acquire),
                meta: meta.snapshot(),
                engine: engine.snapshot(),
                dedupe: self.lock_dedupe().snapshot(),
                accepted_high_water: self.folded.accepted_high_water.load(Ordering::Acquire),
                ledger: true,
            };
            self.events_at_snapshot.store(
                self.folded.applied_events.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            snap
        };
        let dir = self.dir.clone();
        let wal_offset = snap.wal_offset;
        let retention = self.options.log_retention;
        let segments_closed = self.segments_closed.clone();
        let now = self.now();
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            // Every rewards record before the snapshot is applied and durable (and the ledger's
            // watermark at least the snapshot's offset) before the snapshot exists: a replay never
            // hands the ledger a record from before the snapshot, to be judged against later state.
            ledger.checkpoint(wal_offset, true)?;
            let bytes = snapshot::encode(snap)?;
            snapshot::write(&dir, wal_offset, &bytes, SNAPSHOTS_KEPT).map_err(|e| e.to_string())?;
            if let Some(retention) = retention {
                remove_covered_segments(&dir, retention, &segments_closed, now)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(|e| StoreError::Unavailable(format!("snapshot: {e}")))?;
        tracing::info!(wal_offset, "snapshot written");
        Ok(())
    }

    /// A cluster node's snapshot: when the cluster's newest is due (`records` log positions behind
    /// the head, or `interval` old with anything after it) and this node takes the snapshot lease, the
    /// state at the position it has applied is stored in PostgreSQL (see [`crate::pgsnap`]), and what
    /// the snapshot makes unnecessary (older snapshots, log rows) removed. Answers whether one was
    /// stored; does nothing on one node.
    pub async fn checkpoint_cluster(
        &self,
        records: u64,
        interval: std::time::Duration,
    ) -> StoreResult<bool> {
        let log::Log::Pg(log) = &self.log else {
            return Ok(false);
        };
        if !log.is_healthy() || !self.ledger.is_healthy() {
            // A node that stopped folding (a record it could not apply) holds a state the others
            // may not: it never offers it to them.
            return Ok(false);
        }
        let (pool, node) = (log.pool().clone(), log.node_id());
        let failed = |e: String| StoreError::Unavailable(format!("snapshot: {e}"));
        let newest = crate::pgsnap::newest(&pool)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let now_us = crate::pgsnap::db_now_us(&pool)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if let Some(n) = &newest {
            self.snapshot_completed_us
                .store(n.completed_us, Ordering::Relaxed);
        }
        let due = |newest: &Option<crate::pgsnap::Newest>, applied: u64| match newest {
            None => applied > 0,
            Some(n) => {
                applied >= n.pos.saturating_add(records)
                    || (applied > n.pos
                        && now_us.saturating_sub(n.completed_us) >= interval.as_micros() as i64)
            }
        };
        if !due(&newest, log.applied()) {
            return Ok(false);
        }
        if !crate::pgsnap::take_lease(
            &pool,
            crate::pgsnap::SNAPSHOT_LEASE,
            node,
            crate::pgsnap::LEASE,
        )
        .await
        .map_err(|e| failed(e.to_string()))?
        {
            return Ok(false);
        }
        // Another node may have stored one between the look and the lease.
        let newest = match crate::pgsnap::newest(&pool).await {
            Ok(newest) => newest,
            Err(e) => {
                let _ =
                    crate::pgsnap::release_lease(&pool, crate::pgsnap::SNAPSHOT_LEASE, node).await;
                return Err(failed(e.to_string()));
            }
        };
        if !due(&newest, log.applied()) {
            let _ = crate::pgsnap::release_lease(&pool, crate::pgsnap::SNAPSHOT_LEASE, node).await;
            return Ok(false);
        }
        let stored = self.store_cluster_snapshot(&pool, node).await;
        let _ = crate::pgsnap::release_lease(&pool, crate::pgsnap::SNAPSHOT_LEASE, node).await;
        stored.map_err(failed)?;
        if let Ok(Some(n)) = crate::pgsnap::newest(&pool).await {
            self.snapshot_completed_us
                .store(n.completed_us, Ordering::Relaxed);
        }
        Ok(true)
    }

    /// Copies the state at the position this node has applied (between two groups of the fold),
    /// packs it with the files it refers to, and stores it; then removes older snapshots and the log
    /// rows behind the oldest one kept. Answers the snapshot's position. Call with the lease held.
    async fn store_cluster_snapshot(&self, pool: &sqlx::PgPool, node: i64) -> Result<u64, String> {
        let staging = self.dir.join("snapshot-staging");
        let snap = {
            // No idempotency piece or cold window is written or removed while they are linked.
            let _one = self.maintain_gate.lock().await;
            let (fold_lock, folded, dedupe) = (
                self.fold_lock.clone(),
                self.folded.clone(),
                self.dedupe.clone(),
            );
            let (dir, staging) = (self.dir.clone(), staging.clone());
            // Off the async workers: the fold may hold its lock a while (ledger back-pressure), and
            // copying the state takes as long as the state is big.
            tokio::task::spawn_blocking(move || -> Result<snapshot::Snapshot, String> {
                let snap = {
                    let _fold = fold_lock.lock().unwrap_or_else(|p| p.into_inner());
                    let meta = folded.meta();
                    let engine = folded.engine();
                    let dedupe = dedupe.lock().unwrap_or_else(|p| p.into_inner()).snapshot();
                    snapshot::Snapshot {
                        wal_offset: folded.applied_upto.load(Ordering::Acquire),
                        meta: meta.snapshot(),
                        engine: engine.snapshot(),
                        dedupe,
                        accepted_high_water: folded.accepted_high_water.load(Ordering::Acquire),
                        ledger: true,
                    }
                };
                // Immutable files (written once, renamed into place): a hard link is a copy that a
                // later removal of the original does not touch.
                let linked = (|| -> std::io::Result<()> {
                    match fs::remove_dir_all(&staging) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                    crate::journal::create_private_dir(&staging)?;
                    for sub in [DEDUPE_DIR, COLD_DIR] {
                        link_tree(&dir.join(sub), &staging.join(sub))?;
                    }
                    Ok(())
                })();
                linked.map_err(|e| format!("linking the state's files: {e}"))?;
                Ok(snap)
            })
            .await
            .map_err(|e| e.to_string())??
        };
        let pos = snap.wal_offset;
        let ledger = self.ledger.clone();
        let staging_dir = staging.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            // The ledger has applied (and committed) everything up to the snapshot's position, so a
            // node loading it replays nothing before it; its copy is one consistent read.
            // (The copy reads through the ledger's WAL: no need to truncate it.)
            ledger.checkpoint(pos, false)?;
            ledger.copy_to(&staging_dir.join(ledger::LEDGER_FILE))?;
            let bytes = snapshot::encode(snap)?;
            snapshot::write(&staging_dir, pos, &bytes, 1).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let mut known = std::mem::take(
            &mut *self
                .snapshot_files
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let stored = crate::pgsnap::store(pool, node, pos, &staging, &mut known).await;
        *self
            .snapshot_files
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = known;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        let stored = stored?;
        // This node has applied at least that far (its next report says exactly where).
        crate::pgsnap::report_position(pool, node, pos)
            .await
            .map_err(|e| e.to_string())?;
        let removed = crate::pgsnap::prune(pool, node)
            .await
            .map_err(|e| format!("removing what the snapshot covers: {e}"))?;
        tracing::info!(
            position = pos,
            bytes = stored.bytes,
            new_bytes = stored.new_bytes,
            log_rows_removed = removed,
            "cluster snapshot stored"
        );
        Ok(pos)
    }

    /// An ADMIN always remains: refuses to demote or delete the last one. Decided under the metadata
    /// gate against the log's state (a cluster-wide decision in a cluster), never a process's lock.
    fn keep_an_admin(&self, username: &str) -> StoreResult<()> {
        let state = self.read();
        let admins = state
            .console
            .users()
            .filter(|u| u.role == Role::Admin)
            .count();
        let losing = state
            .console
            .user(username)
            .is_some_and(|u| u.role == Role::Admin);
        if losing && admins == 1 {
            return Err(StoreError::Conflict(format!(
                "'{username}' is the last ADMIN; make another user ADMIN first"
            )));
        }
        Ok(())
    }

    /// Makes this cluster node share its hot state through Redis (see [`crate::redis_shared`]).
    pub fn with_shared(mut self, shared: Arc<crate::redis_shared::RedisShared>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// A cluster node whose fold stopped because the log's rows it needed next were removed: it comes
    /// back by starting again from the newest snapshot.
    pub fn fell_behind(&self) -> bool {
        match &self.log {
            log::Log::Pg(log) => log.fell_behind(),
            log::Log::File(_) => false,
        }
    }

    /// A cluster node closing leaves the node registry (see [`crate::pglog::PgLog::leave`]).
    pub async fn leave_cluster(&self) {
        if let log::Log::Pg(log) = &self.log {
            log.leave().await;
        }
    }

    /// The PostgreSQL log's pool, when this is a cluster node.
    pub fn cluster_pool(&self) -> Option<sqlx::PgPool> {
        match &self.log {
            log::Log::Pg(log) => Some(log.pool().clone()),
            log::Log::File(_) => None,
        }
    }

    /// Writes the `Init` record on a new data dir. Separate from `open` because it awaits the journal.
    pub async fn initialize(&self) -> StoreResult<()> {
        // In a cluster, the first node to start writes it; the others see it under the gate.
        let _gate = self.meta_gate().await?;
        if self.read().initialized {
            // Written by another node (or folded live rather than replayed): this node's master key
            // must be the one it was sealed with, or it would seal what the others cannot read.
            let check = self.read().key_check.clone();
            if let Some(check) = check {
                let sealed = hex::decode(check).unwrap_or_default();
                if self.master.unseal("key-check", &sealed).as_deref() != Some(KEY_CHECK) {
                    return Err(StoreError::Unavailable(
                        "PHOENIX_MASTER_KEY does not match the key the cluster's data was sealed with"
                            .into(),
                    ));
                }
            }
            return Ok(());
        }
        let key_check = hex::encode(self.master.seal("key-check", KEY_CHECK));
        self.commit(MetaRecord::Init { key_check }).await
    }

    /// Opens and initializes in one call (for tests and tools).
    pub async fn open_initialized(dir: &Path, master: MasterKey) -> Result<Self, OpenError> {
        let store = Self::open(dir, master)?;
        store.initialize().await.map_err(|e| OpenError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(store)
    }

    /// The store's time (see [`Clock`]).
    pub fn now(&self) -> Timestamp {
        self.options.clock.now()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, meta::State> {
        self.folded.meta()
    }

    /// Makes `record` durable; the log's writer thread applies it before this returns. Call with the
    /// write gate held.
    async fn commit(&self, record: MetaRecord) -> StoreResult<()> {
        let payload = wal::encode_meta(&record).map_err(StoreError::Unavailable)?;
        self.append_fenced(&payload, &self.meta_fence).await?;
        Ok(())
    }

    /// Appends a record decided under a gate, with the gate's fence when a cluster-wide gate is held
    /// (see [`log::Gate`]); answers the position just past it.
    async fn append_fenced(&self, payload: &[u8], slot: &Mutex<Option<Fence>>) -> StoreResult<u64> {
        let fence = *slot.lock().unwrap_or_else(|p| p.into_inner());
        let end = self.log.append(payload, None, fence).await?;
        if fence.is_some() {
            log::Gate::fenced(slot, end);
        }
        Ok(end)
    }

    /// The metadata writers' gate: this node's, and in a cluster the cluster's (taken once this node
    /// has applied the log up to its head, so a check made under it sees every earlier decision).
    async fn meta_gate(&self) -> StoreResult<log::Gate<'_>> {
        let local = self.write_gate.lock().await;
        let cluster = self.log.cluster_gate(FenceKind::Meta).await?;
        Ok(log::Gate::new(local, cluster, &self.meta_fence))
    }

    /// Ingestion on a cluster node: ids this node knows are duplicates are answered at once; the rest
    /// are appended, and the fold decides in log order which are new (another node may have appended
    /// the same id meanwhile). Answered once this node has applied the record.
    async fn ingest_cluster(
        &self,
        tenant_id: &str,
        events: Vec<Event>,
    ) -> StoreResult<Vec<IngestStatus>> {
        let accepted_at = self.now();
        let total = events.len();
        let mut statuses: Vec<Option<IngestStatus>> = Vec::with_capacity(total);
        let mut sent = Vec::with_capacity(total);
        {
            let dedupe = self.lock_dedupe();
            for event in events {
                let key = dedupe.key(tenant_id, &event.event_id);
                // A duplicate here is a duplicate at the record's log time too (a minute ahead of
                // this clock, which follows the database's); anything else is for the fold to decide.
                if dedupe
                    .was_seen(key, accepted_at + SignedDuration::from_mins(1))
                    .map_err(StoreError::Unavailable)?
                {
                    statuses.push(Some(IngestStatus::Duplicate));
                } else {
                    statuses.push(None);
                    sent.push(event);
                }
            }
        }
        let counters = &self.folded.counters;
        if !sent.is_empty() {
            let bodies: Vec<&serde_json::Value> = sent.iter().map(Event::body).collect();
            let payload = wal::encode_events(tenant_id, accepted_at, &bodies)
                .map_err(StoreError::Unavailable)?;
            drop(bodies);
            let outcome = Arc::new(std::sync::OnceLock::new());
            let live = wal::LiveEvents {
                tenant_id: tenant_id.to_owned(),
                accepted_at,
                events: sent,
                // Not evaluated here: the log gives the record its own time (and may call some of
                // these duplicates), so the fold evaluates the achievements with what it decided.
                achievements: None,
                outcome: Some(outcome.clone()),
            };
            self.log
                .append(&payload, Some(Box::new(live)), None)
                .await?;
            let kept: &Vec<bool> = outcome.get().ok_or_else(|| {
                StoreError::Unavailable("the write's outcome is unknown; retry".into())
            })?;
            let mut kept = kept.iter();
            for status in statuses.iter_mut().filter(|s| s.is_none()) {
                *status = Some(if kept.next().copied().unwrap_or(false) {
                    IngestStatus::Accepted
                } else {
                    IngestStatus::Duplicate
                });
            }
        }
        let statuses: Vec<IngestStatus> = statuses
            .into_iter()
            .map(|s| s.unwrap_or(IngestStatus::Duplicate))
            .collect();
        let accepted = statuses
            .iter()
            .filter(|s| **s == IngestStatus::Accepted)
            .count() as u64;
        counters.accepted.fetch_add(accepted, Ordering::Relaxed);
        counters
            .duplicates
            .fetch_add(total as u64 - accepted, Ordering::Relaxed);
        Ok(statuses)
    }

    fn tenant_context(tenant_id: &str) -> String {
        format!("tenant:{tenant_id}")
    }

    fn key_context(key_id: &str) -> String {
        format!("api-key:{key_id}")
    }

    /// The internal uid of a live leaderboard.
    fn uid_of(&self, tenant_id: &str, leaderboard_id: &str) -> Option<u64> {
        self.read()
            .leaderboard(tenant_id, leaderboard_id)
            .map(|lb| lb.uid)
    }

    fn lock_dedupe(&self) -> std::sync::MutexGuard<'_, Dedupe> {
        self.dedupe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves every window the log has frozen to cold storage: its standings are written to a file
    /// (durably) and only then dropped from memory. A window that ended by the clock but that no record
    /// has passed yet (a quiet server) is first frozen by a `Tick` record, so the decision is the log's
    /// and a replay makes the same one. Returns how many windows moved. Safe to interrupt at any point:
    /// a window whose file was written but that a snapshot still holds in memory is moved again, to
    /// the same bytes.
    pub async fn move_ended_windows(&self) -> StoreResult<usize> {
        let _one = self.maintain_gate.lock().await;
        let now = self.now();
        let high_water = |folded: &Folded| {
            Timestamp::from_microsecond(folded.accepted_high_water.load(Ordering::Acquire))
                .unwrap_or(Timestamp::UNIX_EPOCH)
        };
        let behind = {
            let hw = high_water(&self.folded);
            self.folded
                .engine()
                .hot_windows_ending_by(now)
                .iter()
                .any(|(_, _, w)| w.ends_at.is_some_and(|end| end > hw))
        };
        if behind && self.may_tick().await {
            let _gate = self.write_gate.lock().await;
            self.commit(MetaRecord::Tick { at: now }).await?;
        }
        let frozen = self
            .folded
            .engine()
            .hot_windows_ending_by(high_water(&self.folded));
        let mut moved = 0;
        for (tenant_id, uid, window) in frozen {
            let Some(data) = self.folded.engine().freeze(&tenant_id, uid, &window.id) else {
                continue;
            };
            let cold = self.cold.clone();
            tokio::task::spawn_blocking(move || cold.write(uid, &data))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
                .map_err(|e| StoreError::Unavailable(format!("writing a cold window file: {e}")))?;
            let mut engine = self
                .folded
                .engine
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if engine.make_cold(&tenant_id, uid, &window.id) {
                moved += 1;
            }
        }
        if moved > 0 {
            self.moved_cold.fetch_add(moved as u64, Ordering::Relaxed);
            tracing::debug!(windows = moved, "moved ended windows to cold storage");
        }
        Ok(moved)
    }

    /// Whether this node appends window-end ticks: one node does, and in a cluster that is the node
    /// holding the tick lease (taken or renewed here; another node takes it over once it lapses). The
    /// fold would ignore a second node's ticks anyway (clamped to the log's time); the lease keeps the
    /// log from holding one per node.
    async fn may_tick(&self) -> bool {
        let log::Log::Pg(log) = &self.log else {
            return true;
        };
        crate::pgsnap::take_lease(
            log.pool(),
            crate::pgsnap::TICK_LEASE,
            log.node_id(),
            crate::pgsnap::TICK_LEASE_LENGTH,
        )
        .await
        .unwrap_or(false)
    }

    /// Freezes the hot part of the idempotency index into a piece on disk when it is big or old
    /// enough, and deletes pieces beyond the horizon. Returns whether a piece was written.
    pub async fn freeze_dedupe(&self) -> StoreResult<bool> {
        let _one = self.maintain_gate.lock().await;
        let now = self.now();
        let expire_at = self.dedupe_expiry_time();
        let taken = {
            let due = self.lock_dedupe().should_freeze(now);
            if !due {
                self.lock_dedupe().prune(expire_at);
                self.merge_dedupe_pieces().await?;
                return Ok(false);
            }
            // No claim may be waiting for its write while its key leaves the hot set.
            let _ingest = self.ingest_gate.write().await;
            self.lock_dedupe().take_hot()
        };
        let Some(taken) = taken else {
            return Ok(false);
        };
        let dir = self.lock_dedupe().dir().to_owned();
        let written = tokio::task::spawn_blocking(move || {
            dedupe::Dedupe::write(&dir, &taken).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        {
            let mut dedupe = self.lock_dedupe();
            match written {
                Ok(piece) => {
                    dedupe.install(Some(piece));
                    dedupe.prune(expire_at);
                }
                Err(e) => {
                    dedupe.install(None);
                    return Err(StoreError::Unavailable(format!(
                        "writing a dedupe piece: {e}"
                    )));
                }
            }
        }
        self.merge_dedupe_pieces().await?;
        Ok(true)
    }

    /// The time idempotency pieces are expired by: a cluster node's fold's time (the log's time of the
    /// last record it applied; every record still to come is at or after it), one node's clock.
    fn dedupe_expiry_time(&self) -> Timestamp {
        let now = self.now();
        if !self.log.is_cluster() {
            return now;
        }
        Timestamp::from_microsecond(self.folded.accepted_high_water.load(Ordering::Acquire))
            .map_or(Timestamp::UNIX_EPOCH, |folded| folded.min(now))
    }

    /// Merges one group of small dedupe pieces, if there is one (see `Dedupe::merge_candidates`).
    /// Call with the maintenance gate held.
    async fn merge_dedupe_pieces(&self) -> StoreResult<()> {
        let (inputs, dir) = {
            let dedupe = self.lock_dedupe();
            (dedupe.merge_candidates(), dedupe.dir().to_owned())
        };
        let Some(inputs) = inputs else {
            return Ok(());
        };
        let merged = {
            let inputs = inputs.clone();
            tokio::task::spawn_blocking(move || dedupe::Dedupe::merge(&dir, &inputs))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
                .map_err(|e| StoreError::Unavailable(format!("merging dedupe pieces: {e}")))?
        };
        self.lock_dedupe().install_merged(merged, &inputs);
        Ok(())
    }

    /// A cold window's standings (reading its file off the async workers on a cache miss).
    async fn load_cold(&self, uid: u64, window: &WindowId) -> StoreResult<Arc<cold::ColdWindow>> {
        let cold = self.cold.clone();
        let id = window.clone();
        tokio::task::spawn_blocking(move || cold.load(uid, &id))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(StoreError::Unavailable)
    }

    /// A page of a window's ranked entries and the number of ranked entries, from memory or from
    /// cold storage.
    async fn window_page(
        &self,
        tenant_id: &str,
        uid: u64,
        window: &WindowId,
        start: PageStart,
        count: u32,
    ) -> StoreResult<(Vec<Standing>, u32)> {
        {
            let engine = self.folded.engine();
            let cold = engine
                .leaderboard_state(tenant_id, uid)
                .is_some_and(|lb| lb.cold_window(window).is_some());
            if !cold {
                let (from_rank, count) =
                    page_bounds(&engine, tenant_id, uid, window, start, count).unwrap_or((1, 0));
                return Ok(engine
                    .page(tenant_id, uid, window, from_rank, count)
                    .unwrap_or_default());
            }
        }
        let cold = self.load_cold(uid, window).await?;
        let (from_rank, count) = match start {
            PageStart::Rank(rank) => (rank.max(1), count),
            PageStart::After { score, seq, .. } => {
                (cold.position_after(score, seq).saturating_add(1), count)
            }
            PageStart::Around { user_id, radius } => cold
                .standing_of(&user_id)
                .map_or((1, 0), |me| around(me.rank, radius, count)),
        };
        Ok((cold.page(from_rank, count), cold.total()))
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn is_ready(&self) -> bool {
        self.log.is_ready() && self.signatures.is_healthy() && self.ledger.is_healthy()
    }

    async fn maintain(&self) -> StoreResult<()> {
        // Each runs every round: a failure of one must not stop the others.
        let dedupe = self.freeze_dedupe().await;
        let windows = self.move_ended_windows().await;
        let settled = self.settle_due_windows().await;
        let closed = self.close_ended_windows().await;
        let pruned = self.prune_ledger().await;
        dedupe?;
        windows?;
        settled?;
        closed?;
        pruned
    }

    fn stats(&self) -> StoreStats {
        let c = &self.folded.counters;
        let (dedupe_entries, dedupe_pieces, dedupe_piece_bytes) = {
            let dedupe = self.lock_dedupe();
            (dedupe.len(), dedupe.pieces(), dedupe.piece_bytes())
        };
        StoreStats {
            events_accepted: c.accepted.load(Ordering::Relaxed),
            events_duplicate: c.duplicates.load(Ordering::Relaxed),
            events_scored: c.scored.load(Ordering::Relaxed),
            events_late: c.late.load(Ordering::Relaxed),
            dedupe_entries: dedupe_entries as u64,
            dedupe_pieces: dedupe_pieces as u64,
            dedupe_piece_bytes: dedupe_piece_bytes as u64,
            windows_moved_cold: self.moved_cold.load(Ordering::Relaxed),
            cold_cache_bytes: self.cold.cached_bytes() as u64,
            cluster: match &self.log {
                log::Log::Pg(log) => {
                    let s = log.stats();
                    Some(crate::ClusterStats {
                        applied: s.applied,
                        head: s.head.max(s.applied),
                        lag_ms: (s.lag_us / 1000) as u64,
                        appends: s.appends,
                        append_us_sum: s.append_us_sum,
                        snapshot_age_ms: match self.snapshot_completed_us.load(Ordering::Relaxed) {
                            0 => None,
                            at => Some(
                                (self.now().as_microsecond().saturating_sub(at) / 1000).max(0)
                                    as u64,
                            ),
                        },
                    })
                }
                log::Log::File(_) => None,
            },
            rewards: {
                let l = &self.ledger.counters;
                let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
                crate::RewardStats {
                    settlements: n(&l.settlements),
                    automatic_settlements: n(&l.automatic_settlements),
                    settlement_lag_ms_sum: n(&l.settlement_lag_ms_sum),
                    grants_reward_rule: n(&l.grants_rule),
                    grants_coupon: n(&l.grants_coupon),
                    grants_achievement: n(&l.grants_achievement),
                    claims: n(&l.claims),
                    voids: n(&l.voids),
                    redemptions: n(&l.redemptions),
                    completions: n(&l.completions),
                    webhook_messages: n(&l.webhook_messages),
                    deliveries_delivered: n(&l.deliveries_delivered),
                    deliveries_retried: n(&l.deliveries_retried),
                    deliveries_failed: n(&l.deliveries_failed),
                    delivery_lag_ms_sum: n(&l.delivery_lag_ms_sum),
                    outbox_depth: n(&l.outbox_depth),
                    achievement_queue: n(&self.ledger.queued_events),
                }
            },
        }
    }

    async fn ingest(&self, tenant_id: &str, events: Vec<Event>) -> StoreResult<Vec<IngestStatus>> {
        if self.log.is_cluster() {
            return self.ingest_cluster(tenant_id, events).await;
        }
        let _gate = self.ingest_gate.read().await;
        let accepted_at = self.now();
        let total = events.len();
        let mut statuses = Vec::with_capacity(total);
        let mut claimed = Vec::new();
        let mut accepted = Vec::with_capacity(total);
        {
            let mut dedupe = self.lock_dedupe();
            for event in events {
                let key = dedupe.key(tenant_id, &event.event_id);
                match dedupe.claim(key, accepted_at) {
                    Ok(true) => {
                        claimed.push(key);
                        accepted.push(event);
                        statuses.push(IngestStatus::Accepted);
                    }
                    Ok(false) => statuses.push(IngestStatus::Duplicate),
                    Err(e) => {
                        // Not knowing whether an id was seen is not a guess we make.
                        for key in claimed {
                            dedupe.release(key);
                        }
                        return Err(StoreError::Unavailable(e));
                    }
                }
            }
        }
        let counters = &self.folded.counters;
        counters
            .duplicates
            .fetch_add((total - accepted.len()) as u64, Ordering::Relaxed);
        if accepted.is_empty() {
            return Ok(statuses);
        }
        let n = accepted.len() as u64;
        let bodies: Vec<&serde_json::Value> = accepted.iter().map(Event::body).collect();
        let written = match wal::encode_events(tenant_id, accepted_at, &bodies) {
            Ok(payload) => {
                drop(bodies);
                // Achievements are evaluated here, where the events are at hand, rather than on
                // the ledger's one thread.
                let achievements = self.ledger.prepare(tenant_id, accepted_at, &accepted);
                let live = wal::LiveEvents {
                    tenant_id: tenant_id.to_owned(),
                    accepted_at,
                    events: accepted,
                    achievements,
                    outcome: None,
                };
                self.log
                    .append(&payload, Some(Box::new(live)), None)
                    .await
                    .map_err(StoreError::from)
            }
            Err(e) => Err(StoreError::Unavailable(e)),
        };
        if let Err(e) = written {
            // Never written, so never accepted: a retry must not be called a duplicate.
            let mut dedupe = self.lock_dedupe();
            for key in claimed {
                dedupe.release(key);
            }
            return Err(e);
        }
        counters.accepted.fetch_add(n, Ordering::Relaxed);
        Ok(statuses)
    }

    async fn standings(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        window: Option<&WindowId>,
        start: PageStart,
        count: u32,
    ) -> StoreResult<Option<StandingsPage>> {
        let Some(uid) = self.uid_of(tenant_id, leaderboard_id) else {
            return Ok(None);
        };
        let now = self.now();
        let (window, status) = {
            let engine = self.folded.engine();
            let Some(lb) = engine.leaderboard_state(tenant_id, uid) else {
                return Ok(None);
            };
            match window {
                None => lb.current_window(now),
                Some(id) => match lb.window(id).map(|w| &w.window).or(lb.cold_window(id)) {
                    Some(w) => {
                        let status = if w.is_closed_at(now) {
                            WindowStatus::Closed
                        } else {
                            WindowStatus::Open
                        };
                        (w.clone(), status)
                    }
                    None => return Ok(None),
                },
            }
        };
        let (entries, total_entries) = self
            .window_page(tenant_id, uid, &window.id, start, count)
            .await?;
        Ok(Some(StandingsPage {
            window,
            status,
            total_entries,
            entries,
        }))
    }

    async fn past_windows(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<Vec<Window>>> {
        let uids = self.read().incarnations(tenant_id, leaderboard_id);
        if uids.is_empty() {
            return Ok(None);
        }
        let now = self.now();
        let engine = self.folded.engine();
        let mut windows: Vec<Window> = uids
            .iter()
            .filter_map(|uid| engine.leaderboard_state(tenant_id, *uid))
            .flat_map(|lb| lb.all_windows())
            .filter(|w| w.is_closed_at(now))
            .cloned()
            .collect();
        windows.sort_by_key(|w| std::cmp::Reverse((w.starts_at, w.id.incarnation())));
        Ok(Some(windows))
    }

    async fn window_standings(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        window: &WindowId,
        start: PageStart,
        count: u32,
    ) -> StoreResult<Option<StandingsPage>> {
        let incarnation = window.incarnation() as usize;
        let Some(uid) = self
            .read()
            .incarnations(tenant_id, leaderboard_id)
            .get(incarnation - 1)
            .copied()
        else {
            return Ok(None);
        };
        let now = self.now();
        let found = {
            let engine = self.folded.engine();
            engine
                .leaderboard_state(tenant_id, uid)
                .and_then(|lb| {
                    lb.window(window)
                        .map(|w| &w.window)
                        .or(lb.cold_window(window))
                })
                .filter(|w| w.is_closed_at(now))
                .cloned()
        };
        let Some(found) = found else {
            return Ok(None);
        };
        let (entries, total_entries) = self
            .window_page(tenant_id, uid, window, start, count)
            .await?;
        Ok(Some(StandingsPage {
            window: found,
            status: WindowStatus::Closed,
            total_entries,
            entries,
        }))
    }

    fn watch_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> Option<tokio::sync::watch::Receiver<crate::BoardSignal>> {
        let (uid, active) = self
            .read()
            .leaderboard(tenant_id, leaderboard_id)
            .map(|lb| (lb.uid, lb.status == LeaderboardStatus::Active))?;
        Some(self.folded.watch(uid, active))
    }

    async fn standing_of(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        window: Option<&WindowId>,
        user_id: &str,
    ) -> StoreResult<Option<Standing>> {
        let Some(uid) = self.uid_of(tenant_id, leaderboard_id) else {
            return Ok(None);
        };
        let cold = {
            let engine = self.folded.engine();
            let lb = engine.leaderboard_state(tenant_id, uid);
            let window = match (window, lb) {
                (Some(id), _) => id.clone(),
                (None, Some(lb)) => lb.current_window(self.now()).0.id,
                (None, None) => return Ok(None),
            };
            if lb.is_none_or(|lb| lb.cold_window(&window).is_none()) {
                return Ok(engine.standing_of(tenant_id, uid, &window, user_id));
            }
            window
        };
        let cold = self.load_cold(uid, &cold).await?;
        Ok(cold.standing_of(user_id).cloned())
    }

    async fn use_signature_once(
        &self,
        digest: [u8; 32],
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        match &self.shared {
            // A cluster remembers signatures in Redis, for every node at once.
            Some(shared) => shared.use_signature_once(digest, expires_at).await,
            None => {
                self.signatures
                    .use_once(digest, expires_at.as_second(), Timestamp::now().as_second())
                    .await
            }
        }
    }

    async fn barrier(&self) -> StoreResult<()> {
        let log::Log::Pg(log) = &self.log else {
            return Ok(());
        };
        let head = log.head().await?;
        let behind =
            || StoreError::Unavailable("this node is behind the cluster's log; retry".into());
        if !log
            .wait_applied(head.pos, std::time::Duration::from_secs(5))
            .await
        {
            return Err(behind());
        }
        // The rewards ledger (achievements, rules, campaigns, grants, webhooks) applies the records
        // the fold handed it on its own thread: a read of it waits for those too.
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.ledger.wait_drained(),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(e)),
            Err(_) => Err(behind()),
        }
    }

    fn watch_credentials(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.log
            .is_cluster()
            .then(|| self.folded.meta_changes.0.subscribe())
    }

    fn shared(&self) -> Option<Arc<crate::redis_shared::RedisShared>> {
        self.shared.clone()
    }

    async fn create_tenant(
        &self,
        tenant_id: TenantId,
        name: String,
        hmac_secret: String,
    ) -> StoreResult<Tenant> {
        let _gate = self.meta_gate().await?;
        if self.read().tenants.contains_key(&tenant_id) {
            return Err(StoreError::Conflict(format!(
                "tenant '{tenant_id}' already exists"
            )));
        }
        let sealed = self.master.seal(
            &Self::tenant_context(tenant_id.as_str()),
            hmac_secret.as_bytes(),
        );
        let tenant = Tenant {
            tenant_id,
            name,
            created_at: self.now(),
            unscoped_tokens: UnscopedTokens::default(),
            rate_limits: RateLimits::default(),
        };
        self.commit(MetaRecord::TenantCreated {
            tenant: tenant.clone(),
            sealed_secret: hex::encode(sealed),
        })
        .await?;
        Ok(tenant)
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(self
            .read()
            .tenants
            .values()
            .map(|e| e.tenant.clone())
            .collect())
    }

    async fn get_tenant(&self, tenant_id: &str) -> StoreResult<Option<Tenant>> {
        Ok(self.read().tenants.get(tenant_id).map(|e| e.tenant.clone()))
    }

    async fn tenant_secrets(&self, tenant_id: &str) -> StoreResult<Option<TenantSecrets>> {
        let state = self.read();
        let Some(entry) = state.tenants.get(tenant_id) else {
            return Ok(None);
        };
        if let Some(secrets) = entry.unsealed.get() {
            return Ok(Some(secrets.clone()));
        }
        let ctx = Self::tenant_context(tenant_id);
        let open = |sealed: &[u8]| {
            self.master
                .unseal(&ctx, sealed)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    StoreError::Unavailable("a sealed tenant secret is unreadable".into())
                })
        };
        let current = open(&entry.sealed_current)?;
        let previous = match &entry.sealed_previous {
            Some((sealed, until)) => Some((open(sealed)?, *until)),
            None => None,
        };
        let secrets = TenantSecrets {
            current,
            previous,
            unscoped_tokens: entry.tenant.unscoped_tokens,
            rate_limits: entry.tenant.rate_limits,
        };
        let _ = entry.unsealed.set(secrets.clone());
        Ok(Some(secrets))
    }

    async fn update_tenant(
        &self,
        tenant_id: &str,
        patch: TenantPatch,
    ) -> StoreResult<Option<Tenant>> {
        let _gate = self.meta_gate().await?;
        let Some(tenant) = self.read().tenants.get(tenant_id).map(|e| e.tenant.clone()) else {
            return Ok(None);
        };
        let updated = patch.apply_to(&tenant);
        if updated != tenant {
            self.commit(MetaRecord::TenantUpdated {
                tenant: updated.clone(),
            })
            .await?;
        }
        Ok(Some(updated))
    }

    async fn rotate_tenant_secret(
        &self,
        tenant_id: &str,
        new_secret: String,
        previous_valid_until: Timestamp,
    ) -> StoreResult<Option<Tenant>> {
        let _gate = self.meta_gate().await?;
        let Some(tenant) = self.read().tenants.get(tenant_id).map(|e| e.tenant.clone()) else {
            return Ok(None);
        };
        let sealed = self
            .master
            .seal(&Self::tenant_context(tenant_id), new_secret.as_bytes());
        self.commit(MetaRecord::TenantSecretRotated {
            tenant_id: tenant.tenant_id.clone(),
            sealed_secret: hex::encode(sealed),
            previous_valid_until,
        })
        .await?;
        Ok(Some(tenant))
    }

    async fn create_api_key(&self, new: NewApiKey) -> StoreResult<ApiKey> {
        let _gate = self.meta_gate().await?;
        {
            let state = self.read();
            if state.keys.contains_key(&new.key_id) || state.key_by_hash.contains_key(&new.key_hash)
            {
                return Err(StoreError::Conflict(format!(
                    "api key '{}' already exists",
                    new.key_id
                )));
            }
        }
        let key = ApiKey {
            key_id: new.key_id,
            name: new.name,
            scopes: new.scopes,
            tenant_ids: new.tenant_ids,
            created_at: self.now(),
            expires_at: new.expires_at,
            revoked_at: None,
        };
        let sealed = self
            .master
            .seal(&Self::key_context(&key.key_id), new.plaintext.as_bytes());
        self.commit(MetaRecord::ApiKeyCreated {
            key: key.clone(),
            key_hash: hex::encode(new.key_hash),
            sealed_key: hex::encode(sealed),
        })
        .await?;
        Ok(key)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let mut keys: Vec<ApiKey> = self.read().keys.values().map(|e| e.key.clone()).collect();
        keys.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then(a.key_id.cmp(&b.key_id))
        });
        Ok(keys)
    }

    async fn get_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        Ok(self.read().keys.get(key_id).map(|e| e.key.clone()))
    }

    async fn find_api_key_by_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
        let state = self.read();
        Ok(state
            .key_by_hash
            .get(key_hash)
            .and_then(|id| state.keys.get(id))
            .map(|e| e.key.clone()))
    }

    async fn api_key_secret(&self, key_id: &str) -> StoreResult<Option<String>> {
        let state = self.read();
        let Some(entry) = state.keys.get(key_id) else {
            return Ok(None);
        };
        self.master
            .unseal(&Self::key_context(key_id), &entry.sealed_key)
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| StoreError::Unavailable("a sealed api key is unreadable".into()))
    }

    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        let _gate = self.meta_gate().await?;
        let Some(key) = self.read().keys.get(key_id).map(|e| e.key.clone()) else {
            return Ok(None);
        };
        if key.revoked_at.is_some() {
            return Ok(Some(key));
        }
        self.commit(MetaRecord::ApiKeyRevoked {
            key_id: key_id.to_owned(),
            at: self.now(),
        })
        .await?;
        Ok(self.read().keys.get(key_id).map(|e| e.key.clone()))
    }

    async fn create_leaderboard(&self, new: NewLeaderboard) -> StoreResult<Leaderboard> {
        let _gate = self.meta_gate().await?;
        let uid = {
            let state = self.read();
            if state
                .leaderboards
                .contains_key(&(new.tenant_id.clone(), new.leaderboard_id.clone()))
            {
                return Err(StoreError::Conflict(format!(
                    "leaderboard '{}' already exists in tenant '{}'",
                    new.leaderboard_id, new.tenant_id
                )));
            }
            state.next_uid.max(1)
        };
        let at = self.now();
        let leaderboard = Leaderboard {
            uid,
            leaderboard_id: new.leaderboard_id,
            tenant_id: new.tenant_id,
            name: new.name,
            description: new.description,
            status: new.status,
            version: 1,
            config: new.config,
            created_at: at,
            updated_at: at,
        };
        self.commit(MetaRecord::LeaderboardCreated {
            uid,
            leaderboard: leaderboard.clone(),
        })
        .await?;
        Ok(leaderboard)
    }

    async fn list_leaderboards(&self, tenant_id: Option<&str>) -> StoreResult<Vec<Leaderboard>> {
        let state = self.read();
        Ok(state
            .leaderboards
            .values()
            .filter(|lb| tenant_id.is_none_or(|t| lb.tenant_id.as_str() == t))
            .cloned()
            .collect())
    }

    async fn get_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<Leaderboard>> {
        Ok(self.read().leaderboard(tenant_id, leaderboard_id).cloned())
    }

    async fn leaderboard_status(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<LeaderboardStatus>> {
        Ok(self
            .read()
            .leaderboard(tenant_id, leaderboard_id)
            .map(|lb| lb.status))
    }

    async fn update_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        patch: LeaderboardPatch,
    ) -> StoreResult<Option<Leaderboard>> {
        // The rewards gate first (the order every path takes both in): what this change means for the
        // board's reward rules is applied before a rewards writer reads them again.
        let _rewards = self.rewards_gate().await?;
        let gate = self.meta_gate().await?;
        let Some(mut lb) = self.read().leaderboard(tenant_id, leaderboard_id).cloned() else {
            return Ok(None);
        };
        let previous_status = lb.status;
        if let Some(name) = patch.name {
            lb.name = name;
        }
        if let Some(description) = patch.description {
            lb.description = description;
        }
        if let Some(status) = patch.status {
            lb.status = status;
        }
        lb.version += 1;
        // updated_at never goes backwards, even if the wall clock does.
        lb.updated_at = self.now().max(lb.updated_at);
        self.commit(MetaRecord::LeaderboardUpdated {
            tenant_id: lb.tenant_id.clone(),
            leaderboard_id: lb.leaderboard_id.clone(),
            name: lb.name.clone(),
            description: lb.description.clone(),
            status: lb.status,
            version: lb.version,
            updated_at: lb.updated_at,
            previous_status: Some(previous_status),
        })
        .await?;
        drop(gate);
        // What it means for the leaderboard's reward rules is in the ledger before the answer (the
        // change itself is durable: a stopped ledger is logged, not answered with an error).
        if let Err(e) = self.ledger.wait_drained().await {
            tracing::error!(error = %e, "a leaderboard change is durable but the rewards ledger did not apply it");
        }
        Ok(Some(lb))
    }

    async fn delete_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<Leaderboard>> {
        let _rewards = self.rewards_gate().await?;
        let gate = self.meta_gate().await?;
        let Some(lb) = self.read().leaderboard(tenant_id, leaderboard_id).cloned() else {
            return Ok(None);
        };
        self.commit(MetaRecord::LeaderboardDeleted {
            tenant_id: lb.tenant_id.clone(),
            leaderboard_id: lb.leaderboard_id.clone(),
            at: self.now(),
        })
        .await?;
        drop(gate);
        // Its rules are inactive in the ledger before the answer.
        if let Err(e) = self.ledger.wait_drained().await {
            tracing::error!(error = %e, "a leaderboard deletion is durable but the rewards ledger did not apply it");
        }
        Ok(Some(lb))
    }

    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        let _gate = self.meta_gate().await?;
        if self.read().console.user(&new.username).is_some() {
            return Err(StoreError::Conflict(format!(
                "user '{}' already exists",
                new.username
            )));
        }
        let at = self.now();
        let user = User {
            username: new.username,
            role: new.role,
            created_at: at,
            updated_at: at,
        };
        self.commit(MetaRecord::UserCreated {
            user: user.clone(),
            password_hash: new.password_hash,
        })
        .await?;
        Ok(user)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        Ok(self.read().console.users().cloned().collect())
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<User>> {
        Ok(self.read().console.user(username).cloned())
    }

    async fn user_password_hash(&self, username: &str) -> StoreResult<Option<String>> {
        Ok(self
            .read()
            .console
            .password_hash(username)
            .map(str::to_owned))
    }

    async fn update_user(&self, username: &str, patch: UserPatch) -> StoreResult<Option<User>> {
        let _gate = self.meta_gate().await?;
        if self.read().console.user(username).is_none() {
            return Ok(None);
        }
        if patch.role.is_some_and(|r| r != Role::Admin) {
            self.keep_an_admin(username)?;
        }
        self.commit(MetaRecord::UserUpdated {
            username: username.to_owned(),
            role: patch.role,
            password_hash: patch.password_hash,
            at: self.now(),
        })
        .await?;
        Ok(self.read().console.user(username).cloned())
    }

    async fn delete_user(&self, username: &str) -> StoreResult<Option<User>> {
        let _gate = self.meta_gate().await?;
        let Some(user) = self.read().console.user(username).cloned() else {
            return Ok(None);
        };
        self.keep_an_admin(username)?;
        self.commit(MetaRecord::UserDeleted {
            username: username.to_owned(),
        })
        .await?;
        Ok(Some(user))
    }

    async fn start_session(
        &self,
        username: &str,
        tokens: SessionTokens,
    ) -> StoreResult<Option<ConsoleSession>> {
        let _gate = self.meta_gate().await?;
        let Some(user) = self.read().console.user(username).cloned() else {
            return Ok(None);
        };
        let family_id = if tokens.family_id.is_empty() {
            crate::seal::random_hex::<16>()
        } else {
            tokens.family_id.clone()
        };
        self.commit(MetaRecord::SessionStarted {
            family_id: family_id.clone(),
            username: username.to_owned(),
            access_hash: console::hash_hex(&tokens.access_hash),
            access_expires_at: tokens.access_expires_at,
            refresh_hash: console::hash_hex(&tokens.refresh_hash),
            refresh_expires_at: tokens.refresh_expires_at,
            at: self.now(),
        })
        .await?;
        Ok(Some(ConsoleSession {
            user,
            family_id,
            expires_at: tokens.access_expires_at,
        }))
    }

    async fn session_by_access(
        &self,
        access_hash: &[u8; 32],
    ) -> StoreResult<Option<ConsoleSession>> {
        Ok(self
            .read()
            .console
            .session_by_access(access_hash, self.now()))
    }

    async fn refresh_session(
        &self,
        refresh_hash: &[u8; 32],
        tokens: SessionTokens,
    ) -> StoreResult<RefreshOutcome> {
        // Under the write gate: two refreshes with the same token cannot both see it unspent.
        let _gate = self.meta_gate().await?;
        let at = self.now();
        let lookup = self.read().console.lookup_refresh(refresh_hash, at);
        match lookup {
            // Not a token the family still remembers, yet it names a live family: one of its spent
            // tokens (a token cannot name a family without having been issued in it).
            console::RefreshLookup::Unknown
                if !tokens.family_id.is_empty()
                    && self.read().console.family_is_live(&tokens.family_id, at) =>
            {
                self.commit(MetaRecord::SessionRevoked {
                    family_id: tokens.family_id,
                })
                .await?;
                Ok(RefreshOutcome::Reused)
            }
            console::RefreshLookup::Unknown => Ok(RefreshOutcome::Invalid),
            console::RefreshLookup::Spent { family_id } => {
                self.commit(MetaRecord::SessionRevoked { family_id })
                    .await?;
                Ok(RefreshOutcome::Reused)
            }
            console::RefreshLookup::Live { family_id, user } => {
                self.commit(MetaRecord::SessionRefreshed {
                    family_id,
                    spent: console::hash_hex(refresh_hash),
                    access_hash: console::hash_hex(&tokens.access_hash),
                    access_expires_at: tokens.access_expires_at,
                    refresh_hash: console::hash_hex(&tokens.refresh_hash),
                    refresh_expires_at: tokens.refresh_expires_at,
                    at,
                })
                .await?;
                Ok(RefreshOutcome::Rotated(user))
            }
        }
    }

    async fn refresh_token_known(
        &self,
        refresh_hash: &[u8; 32],
        family_id: &str,
    ) -> StoreResult<bool> {
        let at = self.now();
        let console = &self.read().console;
        let lookup = console.lookup_refresh(refresh_hash, at);
        Ok(!matches!(lookup, console::RefreshLookup::Unknown)
            || (!family_id.is_empty() && console.family_is_live(family_id, at)))
    }

    async fn revoke_family(&self, family_id: &str) -> StoreResult<bool> {
        let _gate = self.meta_gate().await?;
        if !self.read().console.family_is_live(family_id, self.now()) {
            return Ok(false);
        }
        self.commit(MetaRecord::SessionRevoked {
            family_id: family_id.to_owned(),
        })
        .await?;
        Ok(true)
    }

    async fn create_reward_rule(&self, new: NewRewardRule) -> StoreResult<RewardRule> {
        self.rule_create(new).await
    }

    async fn list_reward_rules(
        &self,
        tenant_id: &str,
        leaderboard_id: Option<&str>,
    ) -> StoreResult<Vec<RewardRule>> {
        self.rules_list(tenant_id, leaderboard_id).await
    }

    async fn get_reward_rule(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<RewardRule>> {
        self.rule_get(tenant_id, rule_id).await
    }

    async fn update_reward_rule(
        &self,
        tenant_id: &str,
        rule_id: &str,
        patch: RewardRulePatch,
    ) -> StoreResult<Option<RewardRule>> {
        self.rule_update(tenant_id, rule_id, patch).await
    }

    async fn delete_reward_rule(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<RewardRule>> {
        self.rule_delete(tenant_id, rule_id).await
    }

    async fn settle(
        &self,
        tenant_id: &str,
        rule_id: &str,
        window_id: &str,
    ) -> StoreResult<Option<SettleOutcome>> {
        self.settle_now(tenant_id, rule_id, window_id).await
    }

    async fn preview_settlement(
        &self,
        tenant_id: &str,
        rule_id: &str,
        from: u64,
        limit: u32,
    ) -> StoreResult<Option<Preview>> {
        self.preview(tenant_id, rule_id, from, limit).await
    }

    async fn list_settlements(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<Vec<Settlement>>> {
        self.settlements_of(tenant_id, rule_id).await
    }

    async fn list_grants(&self, tenant_id: &str, query: GrantQuery) -> StoreResult<Page<Grant>> {
        self.grants_page(tenant_id, query).await
    }

    async fn get_grant(&self, tenant_id: &str, grant_id: &str) -> StoreResult<Option<Grant>> {
        self.grant_get(tenant_id, grant_id).await
    }

    async fn claim_grant(
        &self,
        tenant_id: &str,
        user_id: &str,
        grant_id: &str,
    ) -> StoreResult<ClaimOutcome> {
        self.grant_claim(tenant_id, user_id, grant_id).await
    }

    async fn void_grant(
        &self,
        tenant_id: &str,
        grant_id: &str,
        reason: String,
    ) -> StoreResult<Option<Grant>> {
        self.grant_void(tenant_id, grant_id, reason).await
    }

    async fn create_campaign(&self, new: NewCampaign) -> StoreResult<Campaign> {
        self.campaign_create(new).await
    }

    async fn list_campaigns(&self, tenant_id: &str) -> StoreResult<Vec<Campaign>> {
        self.campaigns_list(tenant_id).await
    }

    async fn get_campaign(
        &self,
        tenant_id: &str,
        campaign_id: &str,
    ) -> StoreResult<Option<Campaign>> {
        self.campaign_get(tenant_id, campaign_id).await
    }

    async fn update_campaign(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        patch: CampaignPatch,
    ) -> StoreResult<Option<Campaign>> {
        self.campaign_update(tenant_id, campaign_id, patch).await
    }

    async fn issue_codes(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        count: u32,
        issued_to: Option<String>,
    ) -> StoreResult<Option<Vec<CouponCode>>> {
        self.codes_issue(tenant_id, campaign_id, count, issued_to)
            .await
    }

    async fn list_codes(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Option<Page<CouponCode>>> {
        self.codes_page(tenant_id, campaign_id, after, limit).await
    }

    async fn get_code(
        &self,
        tenant_id: &str,
        code: &str,
        limit: u32,
    ) -> StoreResult<Option<(CouponCode, Vec<Redemption>)>> {
        self.code_get(tenant_id, code, limit).await
    }

    async fn void_code(
        &self,
        tenant_id: &str,
        code: &str,
        reason: String,
    ) -> StoreResult<Option<CouponCode>> {
        self.code_void(tenant_id, code, reason).await
    }

    async fn redeem(
        &self,
        tenant_id: &str,
        user_id: &str,
        code: &str,
        idempotency_key: Option<String>,
    ) -> StoreResult<RedeemOutcome> {
        self.redeem_code(tenant_id, user_id, code, idempotency_key)
            .await
    }

    async fn list_redemptions(
        &self,
        tenant_id: &str,
        campaign_id: Option<&str>,
        user_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<Redemption>> {
        self.redemptions_page(tenant_id, campaign_id, user_id, after, limit)
            .await
    }

    async fn create_achievement(&self, new: NewAchievement) -> StoreResult<Achievement> {
        self.achievement_create(new).await
    }

    async fn list_achievements(
        &self,
        tenant_id: &str,
    ) -> StoreResult<Vec<AchievementWithCompletions>> {
        self.achievements_list(tenant_id).await
    }

    async fn get_achievement(
        &self,
        tenant_id: &str,
        achievement_id: &str,
    ) -> StoreResult<Option<AchievementWithCompletions>> {
        self.achievement_get(tenant_id, achievement_id).await
    }

    async fn update_achievement(
        &self,
        tenant_id: &str,
        achievement_id: &str,
        patch: AchievementPatch,
    ) -> StoreResult<Option<Achievement>> {
        self.achievement_update(tenant_id, achievement_id, patch)
            .await
    }

    async fn delete_achievement(
        &self,
        tenant_id: &str,
        achievement_id: &str,
    ) -> StoreResult<Option<Achievement>> {
        self.achievement_delete(tenant_id, achievement_id).await
    }

    async fn player_achievements(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<PlayerAchievement>> {
        self.player_achievements_of(tenant_id, user_id).await
    }

    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<(Webhook, String)> {
        self.webhook_create(new).await
    }

    async fn list_webhooks(&self, tenant_id: &str) -> StoreResult<Vec<Webhook>> {
        self.webhooks_list(tenant_id).await
    }

    async fn get_webhook(&self, tenant_id: &str, webhook_id: &str) -> StoreResult<Option<Webhook>> {
        self.webhook_get(tenant_id, webhook_id).await
    }

    async fn update_webhook(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        patch: WebhookPatch,
    ) -> StoreResult<Option<Webhook>> {
        self.webhook_update(tenant_id, webhook_id, patch, None)
            .await
    }

    async fn delete_webhook(
        &self,
        tenant_id: &str,
        webhook_id: &str,
    ) -> StoreResult<Option<Webhook>> {
        self.webhook_delete(tenant_id, webhook_id).await
    }

    async fn rotate_webhook_secret(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        grace: jiff::SignedDuration,
    ) -> StoreResult<Option<(Webhook, String)>> {
        self.webhook_rotate(tenant_id, webhook_id, grace).await
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        after: Option<(Timestamp, String, u32)>,
        limit: u32,
    ) -> StoreResult<Option<Page<DeliveryRow>>> {
        self.deliveries_page(tenant_id, webhook_id, after, limit)
            .await
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        only: Option<(String, String)>,
    ) -> StoreResult<Vec<DueDelivery>> {
        self.deliveries_due(now, limit, only).await
    }

    async fn record_delivery(
        &self,
        due: DueDelivery,
        outcome: AttemptOutcome,
        next: Option<Timestamp>,
    ) -> StoreResult<DeliveryState> {
        self.delivery_record(due, outcome, next).await
    }

    async fn revoke_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool> {
        let _gate = self.meta_gate().await?;
        let Some(family_id) = self.read().console.live_family_of(token_hash) else {
            return Ok(false);
        };
        self.commit(MetaRecord::SessionRevoked { family_id })
            .await?;
        Ok(true)
    }
}
