//! The rewards ledger of the embedded store (SPEC §7.1–7.4): reward rules, settlements, grants, coupon
//! campaigns, codes and redemptions, folded from the same write-ahead log as events, into a SQLite
//! database (`ledger.db`) instead of memory, because the ledger is history that changes (a grant is
//! claimed months after it was made) and grows without end.
//!
//! Exactly once by construction: every change is a [`LedgerRecord`] of the log, applied in log order
//! in one SQLite transaction that also records how far the ledger has applied the log (its
//! watermark). A crash loses at most transactions the log still holds: on start the log is replayed
//! from the watermark, and a record at or below it is skipped. A settlement is one small record
//! (the rule's tiers as they were, and the window); its grants are computed when it is applied, from
//! the window's frozen final standings, which the log's order has fixed for good, so every replay and
//! every node computes the same grants with the same ids, all in one transaction or none.
//!
//! Memory: SQLite's page cache (bounded, [`CACHE_KIB`]) and a few prepared statements; everything
//! else is on disk.

use crate::achievements::{Achievement, Webhook, WebhookStatus};
use crate::rewards::*;
use jiff::Timestamp;
use phoenix_core::reward::{
    GrantSource as IdSource, Reward, grant_id_of_key, grant_key, parse_grant_id, plan_slots,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) mod achieve;
pub(super) mod outbox;

pub(super) const LEDGER_FILE: &str = "ledger.db";
/// SQLite's page cache of the writing connection, in KiB.
const CACHE_KIB: i64 = 32 * 1024;
/// SQLite's page cache of each reading connection, in KiB.
const READER_CACHE_KIB: i64 = 4 * 1024;
/// Read connections: a fixed pool; a read waits for one.
const READERS: usize = 8;

/// One change to the ledger: a record of the write-ahead log (tag `L`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum LedgerRecord {
    RuleCreated {
        rule: RewardRule,
    },
    RuleUpdated {
        rule: RewardRule,
    },
    RuleDeleted {
        tenant_id: String,
        rule_id: String,
    },
    /// A rule settles a window. The grants are computed when this is applied, from the window's frozen
    /// standings and the tiers as they were when it was written.
    Settled {
        tenant_id: String,
        rule_id: String,
        rule_version: u64,
        leaderboard_id: String,
        /// The leaderboard incarnation the window belongs to.
        uid: u64,
        window: SettledWindow,
        tiers: serde_json::Value,
        min_participants: u32,
        settled_at: Timestamp,
        /// Made by the settler (not `settle`): moves the rule's automatic settlement on.
        automatic: bool,
    },
    GrantClaimed {
        tenant_id: String,
        grant_id: String,
        at: Timestamp,
    },
    GrantVoided {
        tenant_id: String,
        grant_id: String,
        reason: String,
        at: Timestamp,
    },
    CampaignCreated {
        campaign: Campaign,
    },
    CampaignUpdated {
        campaign: Campaign,
    },
    /// Personal codes (display forms), bound to `issued_to` or to whoever redeems first.
    CodesIssued {
        tenant_id: String,
        campaign_id: String,
        codes: Vec<String>,
        issued_to: Option<String>,
        at: Timestamp,
    },
    CodeVoided {
        tenant_id: String,
        /// Canonical form.
        code: String,
        reason: String,
        at: Timestamp,
    },
    /// A redemption, checked against the ledger (under the store's rewards gate) before it was written.
    Redeemed {
        tenant_id: String,
        redemption_id: String,
        /// Canonical form.
        code: String,
        campaign_id: String,
        user_id: String,
        at: Timestamp,
        idempotency_key: Option<String>,
    },
    AchievementCreated {
        achievement: Achievement,
    },
    AchievementUpdated {
        achievement: Achievement,
    },
    AchievementDeleted {
        tenant_id: String,
        achievement_id: String,
    },
    /// A webhook and its first secret (sealed with the master key, hex).
    WebhookCreated {
        webhook: Webhook,
        secret: String,
    },
    WebhookUpdated {
        webhook: Webhook,
    },
    /// A new secret (sealed, hex); the one it replaces keeps signing until `previous_until`.
    /// `webhook` is the record with its new `version` and `updated_at`.
    WebhookSecretRotated {
        webhook: Webhook,
        secret: String,
        previous_until: Timestamp,
    },
    WebhookDeleted {
        tenant_id: String,
        webhook_id: String,
    },
    /// A window of an active leaderboard ended: `window.closed` goes to the tenant's webhooks, with
    /// the window's final standings (computed when applied, from the frozen window).
    WindowClosed {
        tenant_id: String,
        leaderboard_id: String,
        uid: u64,
        window: SettledWindow,
        at: Timestamp,
    },
    /// A delivery attempt's outcome, in a cluster (where every node keeps the outbox and must know
    /// what was tried, by whichever node); one node records attempts in its ledger directly.
    DeliveryAttempted {
        tenant_id: String,
        webhook_id: String,
        message_id: String,
        attempt: u32,
        attempted_at: Timestamp,
        status_code: Option<u16>,
        error: Option<String>,
        duration_ms: u64,
        delivered: bool,
        next: Option<Timestamp>,
    },
    /// Not written: derived from a leaderboard's deletion record (its rules become inactive).
    #[serde(skip)]
    BoardDeleted {
        tenant_id: String,
        leaderboard_id: String,
        at: Timestamp,
    },
    /// Not written: derived from a leaderboard becoming active (windows that ended before stay unsettled).
    #[serde(skip)]
    BoardActivated {
        tenant_id: String,
        leaderboard_id: String,
        at: Timestamp,
    },
    /// Not written: derived from an active leaderboard becoming inactive or archived (windows that
    /// ended before are still settled; later ones are not).
    #[serde(skip)]
    BoardDeactivated {
        tenant_id: String,
        leaderboard_id: String,
        at: Timestamp,
    },
}

/// A window's final ranked standings: the number of ranked entries and `(rank, user_id, score)` in
/// rank order.
pub(super) type Standings = (u32, Vec<(u32, String, f64)>);

/// Finds a window's frozen final standings: `(tenant, leaderboard uid, window id)`; `None` when the
/// window has no standings.
pub(super) type FinalStandings<'a> =
    &'a dyn Fn(&str, u64, &str) -> Result<Option<Standings>, String>;

/// Live counters for `/metrics`.
#[derive(Default)]
pub(super) struct LedgerCounters {
    pub settlements: AtomicU64,
    /// Sum of (settled_at - ends_at) over automatic settlements, in milliseconds.
    pub settlement_lag_ms_sum: AtomicU64,
    pub automatic_settlements: AtomicU64,
    pub grants_rule: AtomicU64,
    pub grants_coupon: AtomicU64,
    pub grants_achievement: AtomicU64,
    pub claims: AtomicU64,
    pub voids: AtomicU64,
    pub redemptions: AtomicU64,
    pub completions: AtomicU64,
    pub webhook_messages: AtomicU64,
    pub deliveries_delivered: AtomicU64,
    /// Attempts that failed and will be tried again.
    pub deliveries_retried: AtomicU64,
    /// Messages that failed for good (their last attempt failed).
    pub deliveries_failed: AtomicU64,
    /// Sum over delivered messages of the time from their making to their delivery.
    pub delivery_lag_ms_sum: AtomicU64,
    /// Pending messages, as of the last maintenance round.
    pub outbox_depth: AtomicU64,
}

pub(super) struct Ledger {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Signalled when a read connection goes back to the pool.
    returned: std::sync::Condvar,
    /// One permit per read connection: async readers wait for one before taking a blocking thread.
    pub(super) read_permits: tokio::sync::Semaphore,
    /// Derives the personal codes reward rules issue (so replays issue the same codes).
    code_key: [u8; 32],
    applied: AtomicU64,
    /// False once applying a record failed: the ledger then applies nothing more (fail-stop), so its
    /// watermark stays before the failed record and the next start re-applies it from the log.
    healthy: std::sync::atomic::AtomicBool,
    /// The watermark, for writers waiting until their record is applied (woken on failure too).
    progress: tokio::sync::watch::Sender<u64>,
    /// The end of the last record handed to the ledger's thread.
    enqueued: AtomicU64,
    pub(super) counters: LedgerCounters,
    /// Achievements: progress not committed yet.
    hot: Mutex<achieve::Hot>,
    /// Active achievements by tenant (read on the ingest path, set in log order by the ledger's
    /// thread).
    defs: std::sync::RwLock<achieve::DefsByTenant>,
    /// Keys of the hash that places players in the cache (random for each process).
    player_keys: (u64, u64),
    /// Tenants whose events go to the ledger (see [`Ledger::wants_events`]).
    event_tenants: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Events handed to the ledger's thread and not applied yet (bounded: see `MAX_QUEUED_EVENTS`).
    pub(super) queued_events: AtomicU64,
    /// End of the last event record handed to the ledger's thread.
    events_enqueued: AtomicU64,
    /// End of the last event record the ledger's thread folded (committed or not).
    events_applied: AtomicU64,
    /// When the outbox's pending messages were last counted (Unix µs of the store's clock).
    depth_counted_us: std::sync::atomic::AtomicI64,
    /// The log position up to which players' achievement rows are written (every event before it
    /// is folded into the rows on disk).
    progress_applied: AtomicU64,
}

fn sql(e: rusqlite::Error) -> String {
    format!("ledger: {e}")
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn from_micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn opt_time(us: Option<i64>) -> Option<Timestamp> {
    us.map(from_micros)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rules(
  tenant TEXT NOT NULL, rule_id TEXT NOT NULL, leaderboard_id TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL,
  PRIMARY KEY(tenant, rule_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settlements(
  tenant TEXT NOT NULL, rule_id TEXT NOT NULL, window_id TEXT NOT NULL,
  ends_us INTEGER, automatic INTEGER NOT NULL, settled_us INTEGER NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY(tenant, rule_id, window_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grants(
  tenant TEXT NOT NULL, gid BLOB NOT NULL, user_id TEXT NOT NULL, created_us INTEGER NOT NULL,
  source_id TEXT NOT NULL, status INTEGER NOT NULL, claimed_us INTEGER, voided_us INTEGER,
  void_reason TEXT, template INTEGER NOT NULL, rank INTEGER, coupon_code TEXT,
  PRIMARY KEY(tenant, gid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grant_templates(
  id INTEGER PRIMARY KEY, reward TEXT NOT NULL, source TEXT NOT NULL, UNIQUE(reward, source));
CREATE INDEX IF NOT EXISTS grants_by_user ON grants(tenant, user_id, created_us DESC, gid);
CREATE INDEX IF NOT EXISTS grants_by_source ON grants(tenant, source_id, created_us DESC, gid);
CREATE INDEX IF NOT EXISTS grants_by_time ON grants(tenant, created_us DESC, gid);
CREATE TABLE IF NOT EXISTS counts(
  tenant TEXT NOT NULL, dim TEXT NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY(tenant, dim, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaigns(
  tenant TEXT NOT NULL, campaign_id TEXT NOT NULL, body TEXT NOT NULL,
  redemptions INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(tenant, campaign_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS codes(
  tenant TEXT NOT NULL, code TEXT NOT NULL, display TEXT NOT NULL, campaign_id TEXT NOT NULL,
  personal INTEGER NOT NULL, issued_to TEXT, redeemed_by TEXT, redeemed_us INTEGER,
  voided_us INTEGER, void_reason TEXT, created_us INTEGER NOT NULL,
  PRIMARY KEY(tenant, code)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS codes_by_campaign ON codes(tenant, campaign_id, created_us, code);
CREATE TABLE IF NOT EXISTS redemptions(
  tenant TEXT NOT NULL, redemption_id TEXT NOT NULL, code TEXT NOT NULL, display TEXT NOT NULL,
  campaign_id TEXT NOT NULL, user_id TEXT NOT NULL, redeemed_us INTEGER NOT NULL,
  grant_ids TEXT NOT NULL,
  PRIMARY KEY(tenant, redemption_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS redemptions_by_time ON redemptions(tenant, redeemed_us DESC, redemption_id);
CREATE INDEX IF NOT EXISTS redemptions_by_campaign
  ON redemptions(tenant, campaign_id, redeemed_us DESC, redemption_id);
CREATE INDEX IF NOT EXISTS redemptions_by_player ON redemptions(tenant, user_id, campaign_id, code);
CREATE INDEX IF NOT EXISTS redemptions_by_code ON redemptions(tenant, code, redeemed_us);
CREATE TABLE IF NOT EXISTS redeem_keys(
  tenant TEXT NOT NULL, user_id TEXT NOT NULL, key TEXT NOT NULL, redemption_id TEXT NOT NULL,
  at_us INTEGER NOT NULL,
  PRIMARY KEY(tenant, user_id, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS redeem_keys_by_time ON redeem_keys(at_us);
CREATE TABLE IF NOT EXISTS achievements(
  tenant TEXT NOT NULL, achievement_id TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL,
  PRIMARY KEY(tenant, achievement_id)) WITHOUT ROWID;
DROP TABLE IF EXISTS completed;
CREATE TABLE IF NOT EXISTS progress(
  k INTEGER PRIMARY KEY, tenant TEXT NOT NULL, user_id TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks(
  tenant TEXT NOT NULL, webhook_id TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  active INTEGER NOT NULL, body TEXT NOT NULL, secret TEXT NOT NULL, previous TEXT,
  previous_until_us INTEGER,
  PRIMARY KEY(tenant, webhook_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox(
  tenant TEXT NOT NULL, webhook_id TEXT NOT NULL, msg_id TEXT NOT NULL, type TEXT NOT NULL,
  payload TEXT NOT NULL, created_us INTEGER NOT NULL, state INTEGER NOT NULL,
  attempts INTEGER NOT NULL, next_us INTEGER NOT NULL,
  PRIMARY KEY(tenant, webhook_id, msg_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, tenant, webhook_id, next_us);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox(created_us);
CREATE INDEX IF NOT EXISTS outbox_untried ON outbox(tenant, webhook_id, attempts, created_us, msg_id);
CREATE TABLE IF NOT EXISTS attempts(
  tenant TEXT NOT NULL, webhook_id TEXT NOT NULL, msg_id TEXT NOT NULL, attempt INTEGER NOT NULL,
  at_us INTEGER NOT NULL, status_code INTEGER, error TEXT, duration_ms INTEGER, next_us INTEGER,
  PRIMARY KEY(tenant, webhook_id, msg_id, attempt)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts(tenant, webhook_id, at_us, msg_id, attempt);
CREATE TABLE IF NOT EXISTS closed_windows(
  tenant TEXT NOT NULL, leaderboard_id TEXT NOT NULL, uid INTEGER NOT NULL, last_end_us INTEGER NOT NULL,
  PRIMARY KEY(tenant, leaderboard_id, uid)) WITHOUT ROWID;
";

fn configure(conn: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The log is the durable record: a transaction lost to power failure is replayed from it (the
    // watermark rolls back with it). Checkpoints make the ledger durable before log segments go.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "foreign_keys", false)?;
    Ok(())
}

/// How long a redemption's `Idempotency-Key` is remembered.
pub(super) const REDEEM_KEY_HOURS: i64 = 24;

impl Ledger {
    /// Opens (creating) the ledger in `dir`. A new ledger starts at `fresh_watermark` (the log holds no
    /// ledger record before it: a data dir from before the ledger existed).
    pub(super) fn open(
        dir: &Path,
        code_key: [u8; 32],
        fresh_watermark: u64,
    ) -> Result<Ledger, String> {
        let path = dir.join(LEDGER_FILE);
        let open = |cache_kib| -> Result<Connection, String> {
            let conn = Connection::open(&path).map_err(sql)?;
            configure(&conn, cache_kib).map_err(sql)?;
            Ok(conn)
        };
        let writer = open(CACHE_KIB)?;
        writer.execute_batch(SCHEMA).map_err(sql)?;
        // A new ledger starts where the snapshot does (also one whose first start crashed between
        // creating the schema and writing this row: it has applied nothing); an existing one keeps
        // its watermark.
        writer
            .execute(
                "INSERT OR IGNORE INTO ledger_meta(k, v) VALUES('applied', ?1)",
                params![fresh_watermark as i64],
            )
            .map_err(sql)?;
        // Players' rows are written up to here (at most the ledger's watermark).
        writer
            .execute(
                "INSERT OR IGNORE INTO ledger_meta(k, v)
                 SELECT 'progress', v FROM ledger_meta WHERE k = 'applied'",
                [],
            )
            .map_err(sql)?;
        for file in [
            path.clone(),
            dir.join(format!("{LEDGER_FILE}-wal")),
            dir.join(format!("{LEDGER_FILE}-shm")),
        ] {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if file.exists() {
                    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
                }
            }
            #[cfg(not(unix))]
            let _ = file;
        }
        let applied: i64 = writer
            .query_row("SELECT v FROM ledger_meta WHERE k = 'applied'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)?
            .unwrap_or(0);
        let rows_applied: i64 = writer
            .query_row("SELECT v FROM ledger_meta WHERE k = 'progress'", [], |r| {
                r.get(0)
            })
            .map_err(sql)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open(READER_CACHE_KIB)?);
        }
        let (event_tenants, defs) = achieve::load_all(&writer)?;
        let mut keys = [0u8; 16];
        getrandom::fill(&mut keys).map_err(|e| format!("ledger: no randomness: {e}"))?;
        let player_keys = (
            u64::from_le_bytes(keys[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(keys[8..].try_into().unwrap_or_default()),
        );
        Ok(Ledger {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(readers),
            returned: std::sync::Condvar::new(),
            read_permits: tokio::sync::Semaphore::new(READERS),
            code_key,
            applied: AtomicU64::new(applied.max(0) as u64),
            healthy: std::sync::atomic::AtomicBool::new(true),
            progress: tokio::sync::watch::channel(applied.max(0) as u64).0,
            enqueued: AtomicU64::new(0),
            counters: LedgerCounters::default(),
            hot: Mutex::new(achieve::Hot::default()),
            defs: std::sync::RwLock::new(defs),
            player_keys,
            event_tenants: std::sync::RwLock::new(event_tenants),
            queued_events: AtomicU64::new(0),
            events_enqueued: AtomicU64::new(0),
            events_applied: AtomicU64::new(0),
            depth_counted_us: std::sync::atomic::AtomicI64::new(0),
            progress_applied: AtomicU64::new(rows_applied.max(0) as u64),
        })
    }

    /// False after a record could not be applied (see `healthy`).
    pub(super) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Notes that the record ending at `end` was handed to the ledger's thread.
    pub(super) fn enqueued(&self, end: u64) {
        self.enqueued.fetch_max(end, Ordering::AcqRel);
    }

    /// Waits until the record ending at `end` is applied; an error if the ledger stopped first.
    pub(super) async fn wait_applied(&self, end: u64) -> Result<(), String> {
        let mut rx = self.progress.subscribe();
        let _ = rx.wait_for(|w| *w >= end || !self.is_healthy()).await;
        if self.watermark() >= end {
            Ok(())
        } else {
            Err("the rewards ledger stopped after a failure; see the server log".into())
        }
    }

    /// Waits until every record handed to the ledger's thread so far is applied (an error if it
    /// stopped): a rewards writer does this after taking the rewards gate, so what it checks includes
    /// every earlier change, also those a leaderboard's metadata record implies.
    pub(super) async fn wait_drained(&self) -> Result<(), String> {
        let target = self.enqueued.load(Ordering::Acquire);
        self.wait_applied(target).await
    }

    /// Marks the ledger stopped after a record could not be applied (fail-stop).
    fn fail(&self, e: &str) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::error!(error = %e, path = %self.path.display(),
                "the rewards ledger could not apply a record; it stops taking changes until a restart re-applies the log");
        }
        self.progress.send_modify(|_| {});
    }

    /// Marks the ledger stopped (its thread could not take a record).
    pub(super) fn stop(&self, why: &str) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::error!(error = %why, "the rewards ledger stopped; a restart re-applies the log");
        }
        self.progress.send_modify(|_| {});
    }

    /// Blocks until every record handed to the ledger's thread so far is applied (or it stopped).
    /// Event records too: every one handed over is folded into the progress and committed.
    fn drain(&self) -> Result<(), String> {
        let target = self.enqueued.load(Ordering::Acquire);
        let events = self.events_enqueued.load(Ordering::Acquire);
        while self.watermark() < target || self.events_applied.load(Ordering::Acquire) < events {
            if !self.is_healthy() {
                return Err("the rewards ledger stopped after a failure".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.flush()
    }

    /// Notes that an event record ending at `end` with `count` events was handed to the thread.
    pub(super) fn events_enqueued(&self, end: u64, count: u64) {
        self.events_enqueued.fetch_max(end, Ordering::AcqRel);
        self.queued_events.fetch_add(count, Ordering::AcqRel);
    }

    /// Notes that the ledger's thread folded an event record (see `events_enqueued`).
    pub(super) fn events_folded(&self, end: u64) {
        self.events_applied.fetch_max(end, Ordering::AcqRel);
    }

    /// Notes that a folded event record's memory is released: it no longer counts toward the queue.
    pub(super) fn events_released(&self, count: u64) {
        self.queued_events.fetch_sub(count, Ordering::AcqRel);
    }

    /// The log offset up to which the ledger has applied every record.
    pub(super) fn watermark(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Makes every applied transaction durable and moves the watermark to `upto` (a log position the
    /// caller has applied every ledger record before). Called before a snapshot lets old log go.
    pub(super) fn checkpoint(&self, upto: u64, truncate_wal: bool) -> Result<(), String> {
        // Records before `upto` may still be queued for the ledger's thread.
        self.drain()?;
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if upto > self.watermark() || upto > self.progress_watermark() {
            // Every row is written (drain flushed them all): both watermarks move on.
            conn.execute(
                "UPDATE ledger_meta SET v = MAX(v, ?1) WHERE k IN ('applied', 'progress')",
                params![upto as i64],
            )
            .map_err(sql)?;
            self.applied.fetch_max(upto, Ordering::AcqRel);
            self.progress_applied.fetch_max(upto, Ordering::AcqRel);
            self.progress.send_replace(self.watermark());
        }
        if truncate_wal {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(sql)?;
        }
        Ok(())
    }

    /// Forgets redemption idempotency keys older than [`REDEEM_KEY_HOURS`], ages the outbox, and
    /// counts its pending messages.
    pub(super) fn prune(&self, now: Timestamp) -> Result<usize, String> {
        let cutoff = micros(now) - REDEEM_KEY_HOURS * 3_600_000_000;
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let keys = conn
            .execute("DELETE FROM redeem_keys WHERE at_us < ?1", params![cutoff])
            .map_err(sql)?;
        let aged = outbox::prune(&conn, now).map_err(sql)?;
        // Counting pending messages walks all of them: once a minute (the gauge's refresh).
        let counted = self.depth_counted_us.load(Ordering::Relaxed);
        if micros(now).saturating_sub(counted) >= 60_000_000 || counted == 0 {
            let depth = outbox::depth(&conn).map_err(sql)?;
            self.counters.outbox_depth.store(depth, Ordering::Relaxed);
            self.depth_counted_us
                .store(micros(now).max(1), Ordering::Relaxed);
        }
        Ok(keys + aged)
    }

    /// Records a delivery attempt (outside the log: an outcome of a side effect, not a change).
    pub(super) fn record_attempt(
        &self,
        due: &crate::achievements::DueDelivery,
        outcome: &crate::achievements::AttemptOutcome,
        next: Option<Timestamp>,
    ) -> Result<crate::achievements::DeliveryState, String> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        outbox::record_attempt(&mut conn, due, outcome, next).map_err(sql)
    }

    /// Copies the ledger's database, page for page, to a new file at `path`: one consistent read
    /// (the ledger's writer goes on meanwhile). Blocking.
    pub(super) fn copy_to(&self, path: &Path) -> Result<(), String> {
        // Readable by the owner only, like the ledger itself.
        drop(
            crate::journal::owner_only()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| e.to_string())?,
        );
        let mut copy = Connection::open(path).map_err(sql)?;
        let started = std::time::Instant::now();
        self.read(|source| {
            let backup = rusqlite::backup::Backup::new(source, &mut copy)?;
            // Every page in one step: a single read transaction, so the copy is one moment's.
            loop {
                match backup.step(-1)? {
                    rusqlite::backup::StepResult::Done => return Ok(()),
                    rusqlite::backup::StepResult::More => {}
                    _ if started.elapsed() > std::time::Duration::from_secs(30) => {
                        return Err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("the ledger stayed locked for 30 s".into()),
                        ));
                    }
                    _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        })
    }

    /// Runs `f` on a read connection (blocking: call off the async workers).
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, String> {
        // A fixed pool (its page caches bound the ledger's memory): a read waits for a connection.
        let conn = {
            let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(c) = pool.pop() {
                    break c;
                }
                pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        let out = f(&conn).map_err(sql);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        self.returned.notify_one();
        out
    }

    /// Applies one record that ends at log position `end`, unless the ledger has applied it already.
    /// `live` is false during replay (counters untouched).
    pub(super) fn apply(
        &self,
        end: u64,
        record: &LedgerRecord,
        standings: FinalStandings<'_>,
        live: bool,
    ) -> Result<(), String> {
        if end <= self.watermark() {
            return Ok(());
        }
        if !self.is_healthy() {
            return Err(
                "the rewards ledger stopped after an earlier failure; restart to re-apply it"
                    .into(),
            );
        }
        // Completions of earlier events go first: this record may depend on them (a void of a grant
        // an achievement made). Before a change to achievements, every player's row is written too,
        // so a replay never folds an event with definitions from after it.
        if matches!(
            record,
            LedgerRecord::AchievementCreated { .. }
                | LedgerRecord::AchievementUpdated { .. }
                | LedgerRecord::AchievementDeleted { .. }
        ) {
            self.flush()?;
        } else {
            self.flush_completions()?;
        }
        if !live {
            // On replay, changes to achievements take effect here, in log order (live, the log's
            // writer noted them as it handed them over).
            self.note_record(end, record);
        }
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = (|| {
            let tx = conn.transaction().map_err(sql)?;
            // The database's own watermark decides (another handle on this file, e.g. a store that
            // is closing while a new one opens, may have applied the record meanwhile).
            let stored: i64 = tx
                .query_row("SELECT v FROM ledger_meta WHERE k = 'applied'", [], |r| {
                    r.get(0)
                })
                .map_err(sql)?;
            if end <= stored.max(0) as u64 {
                return Ok((Effect::default(), false));
            }
            let effect = apply_in(&tx, record, standings, &self.code_key)?;
            let defs = matches!(
                record,
                LedgerRecord::AchievementCreated { .. }
                    | LedgerRecord::AchievementUpdated { .. }
                    | LedgerRecord::AchievementDeleted { .. }
            );
            tx.execute(
                "UPDATE ledger_meta SET v = ?1 WHERE k = 'applied'",
                params![end as i64],
            )
            .map_err(sql)?;
            if defs {
                // Every earlier event is folded and every row written (flushed above): the rows'
                // watermark moves past this change, so no replay folds an earlier event with it.
                tx.execute(
                    "UPDATE ledger_meta SET v = MAX(v, ?1) WHERE k = 'progress'",
                    params![end as i64],
                )
                .map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
            Ok::<_, String>((effect, defs))
        })();
        drop(conn);
        let effect = match applied {
            Ok((effect, defs)) => {
                if defs {
                    self.progress_applied.fetch_max(end, Ordering::AcqRel);
                }
                effect
            }
            Err(e) => {
                self.fail(&e);
                return Err(e);
            }
        };
        self.applied.fetch_max(end, Ordering::AcqRel);
        self.progress.send_replace(self.watermark());
        if live {
            let c = &self.counters;
            c.grants_rule
                .fetch_add(effect.rule_grants, Ordering::Relaxed);
            c.grants_coupon
                .fetch_add(effect.coupon_grants, Ordering::Relaxed);
            if effect.settled {
                c.settlements.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(lag) = effect.automatic_lag_ms {
                c.automatic_settlements.fetch_add(1, Ordering::Relaxed);
                c.settlement_lag_ms_sum.fetch_add(lag, Ordering::Relaxed);
            }
            c.claims
                .fetch_add(u64::from(effect.claimed), Ordering::Relaxed);
            c.voids
                .fetch_add(u64::from(effect.voided), Ordering::Relaxed);
            c.redemptions
                .fetch_add(u64::from(effect.redeemed), Ordering::Relaxed);
            c.webhook_messages
                .fetch_add(effect.messages, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// What applying a record did (for the counters).
#[derive(Default)]
struct Effect {
    settled: bool,
    automatic_lag_ms: Option<u64>,
    rule_grants: u64,
    coupon_grants: u64,
    claimed: bool,
    voided: bool,
    redeemed: bool,
    /// Webhook messages made.
    messages: u64,
}

fn json_text<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

fn add_count(
    tx: &Transaction<'_>,
    tenant: &str,
    dim: &str,
    key: &str,
    by: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO counts(tenant, dim, key, n) VALUES(?1, ?2, ?3, ?4)
         ON CONFLICT(tenant, dim, key) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![tenant, dim, key, by])?;
    Ok(())
}

/// Grant counters: by status in the tenant (`t`), and by status per source (`s`).
fn count_grant(
    tx: &Transaction<'_>,
    tenant: &str,
    source_id: &str,
    status: GrantStatus,
    by: i64,
) -> rusqlite::Result<()> {
    let s = status.as_str();
    add_count(tx, tenant, "t", s, by)?;
    add_count(tx, tenant, "s", &format!("{s}:{source_id}"), by)
}

struct NewGrant<'a> {
    tenant: &'a str,
    key: [u8; 16],
    user_id: &'a str,
    created_at: Timestamp,
    source_id: &'a str,
    /// The reward's and the source's JSON (without the per-grant `rank`), kept once in
    /// `grant_templates`: the same for every grant of one reward of a tier in a settlement.
    template: i64,
    rank: Option<u32>,
    coupon_code: Option<&'a str>,
}

/// Inserts a grant; false if it exists (exactly once: the id is the earning). The caller counts what
/// it inserted (see `count_grant`), once per record rather than once per grant.
fn insert_grant(tx: &Transaction<'_>, g: &NewGrant<'_>) -> Result<bool, String> {
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO grants(tenant, gid, user_id, created_us, source_id, status,
               template, rank, coupon_code) VALUES(?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            s.execute(params![
                g.tenant,
                &g.key[..],
                g.user_id,
                micros(g.created_at),
                g.source_id,
                g.template,
                g.rank,
                g.coupon_code,
            ])
        })
        .map_err(sql)?;
    Ok(inserted == 1)
}

/// The id of the template holding `reward` and `source` (made if new).
fn template_id(tx: &Transaction<'_>, reward: &str, source: &str) -> Result<i64, String> {
    tx.prepare_cached("INSERT OR IGNORE INTO grant_templates(reward, source) VALUES(?1, ?2)")
        .and_then(|mut s| s.execute(params![reward, source]))
        .map_err(sql)?;
    tx.prepare_cached("SELECT id FROM grant_templates WHERE reward = ?1 AND source = ?2")
        .and_then(|mut s| s.query_row(params![reward, source], |r| r.get(0)))
        .map_err(sql)
}

/// The personal code a rule's `coupon` reward issues for a grant: derived from the grant id under the
/// store's key, so every replay issues the same one; a (very unlikely) clash takes the next derivation.
fn derived_code(
    tx: &Transaction<'_>,
    key: &[u8; 32],
    tenant: &str,
    grant: &[u8; 16],
) -> Result<String, String> {
    use hmac::{Hmac, Mac};
    for attempt in 0u32.. {
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).map_err(|e| e.to_string())?;
        mac.update(tenant.as_bytes());
        mac.update(&[0]);
        mac.update(grant);
        mac.update(&attempt.to_le_bytes());
        let bytes = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        let display = phoenix_core::coupon::generated_code(u64::from_le_bytes(first));
        let canonical = phoenix_core::coupon::canonical(&display);
        let taken: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM codes WHERE tenant = ?1 AND code = ?2")
            .and_then(|mut s| {
                s.query_row(params![tenant, canonical], |r| r.get(0))
                    .optional()
            })
            .map_err(sql)?;
        if taken.is_none() {
            return Ok(display);
        }
    }
    unreachable!("the loop returns")
}

fn insert_code(
    tx: &Transaction<'_>,
    tenant: &str,
    display: &str,
    campaign_id: &str,
    personal: bool,
    issued_to: Option<&str>,
    at: Timestamp,
) -> Result<(), String> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO codes(tenant, code, display, campaign_id, personal, issued_to, created_us)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant,
            phoenix_core::coupon::canonical(display),
            display,
            campaign_id,
            personal,
            issued_to,
            micros(at)
        ])
    })
    .map_err(sql)?;
    Ok(())
}

fn apply_in(
    tx: &Transaction<'_>,
    record: &LedgerRecord,
    standings: FinalStandings<'_>,
    code_key: &[u8; 32],
) -> Result<Effect, String> {
    let mut effect = Effect::default();
    match record {
        LedgerRecord::RuleCreated { rule } | LedgerRecord::RuleUpdated { rule } => {
            tx.execute(
                "INSERT INTO rules(tenant, rule_id, leaderboard_id, deleted, body) VALUES(?1, ?2, ?3, 0, ?4)
                 ON CONFLICT(tenant, rule_id) DO UPDATE SET leaderboard_id = excluded.leaderboard_id,
                   body = excluded.body",
                params![rule.tenant_id, rule.rule_id, rule.leaderboard_id, json_text(rule)?],
            )
            .map_err(sql)?;
        }
        LedgerRecord::RuleDeleted { tenant_id, rule_id } => {
            tx.execute(
                "UPDATE rules SET deleted = 1 WHERE tenant = ?1 AND rule_id = ?2",
                params![tenant_id, rule_id],
            )
            .map_err(sql)?;
        }
        LedgerRecord::AchievementCreated { achievement }
        | LedgerRecord::AchievementUpdated { achievement } => {
            tx.execute(
                "INSERT INTO achievements(tenant, achievement_id, deleted, body) VALUES(?1, ?2, 0, ?3)
                 ON CONFLICT(tenant, achievement_id) DO UPDATE SET body = excluded.body",
                params![
                    achievement.tenant_id,
                    achievement.achievement_id,
                    json_text(achievement)?
                ],
            )
            .map_err(sql)?;
        }
        LedgerRecord::AchievementDeleted {
            tenant_id,
            achievement_id,
        } => {
            tx.execute(
                "UPDATE achievements SET deleted = 1 WHERE tenant = ?1 AND achievement_id = ?2",
                params![tenant_id, achievement_id],
            )
            .map_err(sql)?;
        }
        LedgerRecord::WebhookCreated { webhook, secret } => {
            tx.execute(
                "INSERT OR IGNORE INTO webhooks(tenant, webhook_id, deleted, active, body, secret)
                 VALUES(?1, ?2, 0, ?3, ?4, ?5)",
                params![
                    webhook.tenant_id,
                    webhook.webhook_id,
                    webhook.status == WebhookStatus::Active,
                    json_text(webhook)?,
                    secret
                ],
            )
            .map_err(sql)?;
        }
        LedgerRecord::WebhookUpdated { webhook } => {
            tx.execute(
                "UPDATE webhooks SET active = ?3, body = ?4 WHERE tenant = ?1 AND webhook_id = ?2",
                params![
                    webhook.tenant_id,
                    webhook.webhook_id,
                    webhook.status == WebhookStatus::Active,
                    json_text(webhook)?
                ],
            )
            .map_err(sql)?;
        }
        LedgerRecord::WebhookSecretRotated {
            webhook,
            secret,
            previous_until,
        } => {
            tx.execute(
                "UPDATE webhooks SET previous = secret, previous_until_us = ?4, secret = ?3, body = ?5
                 WHERE tenant = ?1 AND webhook_id = ?2",
                params![
                    webhook.tenant_id,
                    webhook.webhook_id,
                    secret,
                    micros(*previous_until),
                    json_text(webhook)?
                ],
            )
            .map_err(sql)?;
        }
        LedgerRecord::WebhookDeleted {
            tenant_id,
            webhook_id,
        } => {
            tx.execute(
                "UPDATE webhooks SET deleted = 1, active = 0 WHERE tenant = ?1 AND webhook_id = ?2",
                params![tenant_id, webhook_id],
            )
            .map_err(sql)?;
            // Nothing is sent to a deleted webhook: its messages and their attempts go.
            tx.execute(
                "DELETE FROM attempts WHERE tenant = ?1 AND webhook_id = ?2",
                params![tenant_id, webhook_id],
            )
            .map_err(sql)?;
            tx.execute(
                "DELETE FROM outbox WHERE tenant = ?1 AND webhook_id = ?2",
                params![tenant_id, webhook_id],
            )
            .map_err(sql)?;
        }
        LedgerRecord::DeliveryAttempted {
            tenant_id,
            webhook_id,
            message_id,
            attempt,
            attempted_at,
            status_code,
            error,
            duration_ms,
            delivered,
            next,
        } => {
            outbox::record_attempt_in(
                tx,
                (tenant_id, webhook_id, message_id, *attempt),
                &crate::achievements::AttemptOutcome {
                    attempted_at: *attempted_at,
                    status_code: *status_code,
                    error: error.clone(),
                    duration_ms: *duration_ms,
                    delivered: *delivered,
                    gone: false,
                },
                *next,
            )
            .map_err(sql)?;
        }
        LedgerRecord::WindowClosed {
            tenant_id,
            leaderboard_id,
            uid,
            window,
            at,
        } => {
            let end = window.ends_at.map(micros).unwrap_or(i64::MAX);
            let last = q::last_closed(tx, tenant_id, leaderboard_id, *uid).map_err(sql)?;
            if last.is_some_and(|l| l >= end) {
                return Ok(effect);
            }
            tx.execute(
                "INSERT INTO closed_windows(tenant, leaderboard_id, uid, last_end_us) VALUES(?1, ?2, ?3, ?4)
                 ON CONFLICT(tenant, leaderboard_id, uid) DO UPDATE SET last_end_us = excluded.last_end_us",
                params![tenant_id, leaderboard_id, *uid as i64, end],
            )
            .map_err(sql)?;
            let routes = outbox::routes(tx, tenant_id)?;
            if routes.wants("window.closed") {
                let (ranked, entries) = standings(tenant_id, *uid, &window.id)?.unwrap_or_default();
                let top: Vec<serde_json::Value> = entries
                    .iter()
                    .take(10)
                    .map(|(rank, user, score)| {
                        serde_json::json!({"rank": rank, "user_id": user, "score": score})
                    })
                    .collect();
                effect.messages += outbox::enqueue(
                    tx,
                    &routes,
                    tenant_id,
                    "window.closed",
                    &format!("{leaderboard_id}/{uid}/{}", window.id),
                    *at,
                    serde_json::json!({
                        "leaderboard_id": leaderboard_id,
                        "window": {
                            "id": window.id,
                            "starts_at": window.starts_at,
                            "ends_at": window.ends_at,
                            "status": "closed",
                        },
                        "ranked_entries": ranked,
                        "top": top,
                    }),
                )?;
            }
        }
        LedgerRecord::BoardDeleted {
            tenant_id,
            leaderboard_id,
            at,
        }
        | LedgerRecord::BoardActivated {
            tenant_id,
            leaderboard_id,
            at,
        }
        | LedgerRecord::BoardDeactivated {
            tenant_id,
            leaderboard_id,
            at,
        } => {
            let deleted = matches!(record, LedgerRecord::BoardDeleted { .. });
            let rules = rules_where(
                tx,
                "tenant = ?1 AND leaderboard_id = ?2 AND deleted = 0",
                params![tenant_id, leaderboard_id],
            )?;
            for mut rule in rules {
                if deleted {
                    if rule.status == Activity::Inactive {
                        continue;
                    }
                    rule.status = Activity::Inactive;
                    rule.version += 1;
                    rule.updated_at = (*at).max(rule.updated_at);
                } else if matches!(record, LedgerRecord::BoardActivated { .. }) {
                    // The pause ends; windows that ended during it stay unsettled.
                    if let Some(last) = rule.board_paused.last_mut()
                        && last.1.is_none()
                    {
                        last.1 = Some(*at);
                    }
                } else {
                    if rule.board_paused_since().is_none() {
                        rule.board_paused.push((*at, None));
                    }
                    let excess = rule.board_paused.len().saturating_sub(MAX_BOARD_PAUSES);
                    rule.board_paused.drain(..excess);
                }
                tx.execute(
                    "UPDATE rules SET body = ?3 WHERE tenant = ?1 AND rule_id = ?2",
                    params![tenant_id, rule.rule_id, json_text(&rule)?],
                )
                .map_err(sql)?;
            }
        }
        LedgerRecord::Settled {
            tenant_id,
            rule_id,
            rule_version,
            leaderboard_id,
            uid,
            window,
            tiers,
            min_participants,
            settled_at,
            automatic,
        } => {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM settlements WHERE tenant = ?1 AND rule_id = ?2 AND window_id = ?3",
                    params![tenant_id, rule_id, window.id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if exists.is_some() {
                return Ok(effect);
            }
            let (ranked, entries) = standings(tenant_id, *uid, &window.id)?.unwrap_or_default();
            let tiers = phoenix_core::reward::tiers_from_json(tiers)
                .map_err(|e| format!("settlement of a rule whose tiers no longer parse: {e}"))?;
            let mut planned = plan_slots(
                tenant_id,
                rule_id,
                &window.id,
                &tiers,
                *min_participants,
                ranked,
                entries.iter().map(|(rank, user, _)| (*rank, user.as_str())),
            );
            // Inserted in key order: each page of the primary key (and of the indexes that end in
            // the grant id) is visited once, not once per grant.
            planned.sort_unstable_by_key(|slot| slot.key);
            let mut granted = 0u64;
            // Every grant of a tier's reward carries the same reward text, and every grant of the
            // settlement the same source text: serialized once each, not once per grant.
            let source_text = json_text(&GrantSource {
                kind: "reward_rule".into(),
                id: rule_id.clone(),
                leaderboard_id: Some(leaderboard_id.clone()),
                window_id: Some(window.id.clone()),
                rank: None,
                step: None,
                threshold: None,
                code: None,
            })?;
            let templates: Vec<Vec<i64>> = tiers
                .iter()
                .map(|t| {
                    t.rewards
                        .iter()
                        .map(|r| template_id(tx, &json_text(&r.to_json())?, &source_text))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<_, _>>()?;
            let routes = outbox::routes(tx, tenant_id)?;
            let report = routes.wants("reward.granted");
            for slot in &planned {
                let (rank, user_id, _) = &entries[slot.entry as usize];
                let (tier, index) = (slot.tier as usize, slot.reward_index as usize);
                let coupon_code = match &tiers[tier].rewards[index] {
                    Reward::Coupon { campaign_id } => {
                        let code = derived_code(tx, code_key, tenant_id, &slot.key)?;
                        insert_code(
                            tx,
                            tenant_id,
                            &code,
                            campaign_id,
                            true,
                            Some(user_id),
                            *settled_at,
                        )?;
                        Some(code)
                    }
                    _ => None,
                };
                if insert_grant(
                    tx,
                    &NewGrant {
                        tenant: tenant_id,
                        key: slot.key,
                        user_id,
                        created_at: *settled_at,
                        source_id: rule_id,
                        template: templates[tier][index],
                        rank: Some(*rank),
                        coupon_code: coupon_code.as_deref(),
                    },
                )? {
                    granted += 1;
                    if report {
                        let grant_id = grant_id_of_key(slot.key);
                        let source = GrantSource {
                            kind: "reward_rule".into(),
                            id: rule_id.clone(),
                            leaderboard_id: Some(leaderboard_id.clone()),
                            window_id: Some(window.id.clone()),
                            rank: Some(*rank),
                            step: None,
                            threshold: None,
                            code: None,
                        };
                        effect.messages += outbox::enqueue(
                            tx,
                            &routes,
                            tenant_id,
                            "reward.granted",
                            &grant_id,
                            *settled_at,
                            grant_json(
                                &grant_id,
                                user_id,
                                tiers[tier].rewards[index].to_json(),
                                &source,
                                GrantStatus::Pending,
                                *settled_at,
                                (None, None, None),
                                coupon_code.as_deref(),
                            ),
                        )?;
                    }
                }
            }
            count_grant(tx, tenant_id, rule_id, GrantStatus::Pending, granted as i64)
                .map_err(sql)?;
            let settlement = Settlement {
                rule_id: rule_id.clone(),
                rule_version: *rule_version,
                leaderboard_id: leaderboard_id.clone(),
                window: window.clone(),
                settled_at: *settled_at,
                ranked_entries: ranked,
                grants: planned.len() as u64,
            };
            tx.execute(
                "INSERT INTO settlements(tenant, rule_id, window_id, ends_us, automatic, settled_us, body)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    tenant_id,
                    rule_id,
                    window.id,
                    window.ends_at.map(micros),
                    automatic,
                    micros(*settled_at),
                    json_text(&settlement)?
                ],
            )
            .map_err(sql)?;
            effect.settled = true;
            effect.rule_grants = granted;
            if *automatic && let Some(end) = window.ends_at {
                let lag = settled_at.duration_since(end).as_millis().max(0);
                effect.automatic_lag_ms = Some(u64::try_from(lag).unwrap_or(0));
            }
        }
        LedgerRecord::GrantClaimed {
            tenant_id,
            grant_id,
            at,
        } => {
            let key = parse_grant_id(grant_id).ok_or("claim of a malformed grant id")?;
            if let Some(source_id) = set_status(
                tx,
                tenant_id,
                &key,
                GrantStatus::Pending,
                GrantStatus::Claimed,
            )? {
                tx.execute(
                    "UPDATE grants SET claimed_us = ?3 WHERE tenant = ?1 AND gid = ?2",
                    params![tenant_id, &key[..], micros(*at)],
                )
                .map_err(sql)?;
                let _ = source_id;
                effect.claimed = true;
            }
        }
        LedgerRecord::GrantVoided {
            tenant_id,
            grant_id,
            reason,
            at,
        } => {
            let key = parse_grant_id(grant_id).ok_or("void of a malformed grant id")?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT status FROM grants WHERE tenant = ?1 AND gid = ?2",
                    params![tenant_id, &key[..]],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if let Some(code) = current {
                let from = GrantStatus::from_code(code);
                if from != GrantStatus::Voided {
                    set_status(tx, tenant_id, &key, from, GrantStatus::Voided)?;
                    tx.execute(
                        "UPDATE grants SET voided_us = ?3, void_reason = ?4 WHERE tenant = ?1 AND gid = ?2",
                        params![tenant_id, &key[..], micros(*at), reason],
                    )
                    .map_err(sql)?;
                    effect.voided = true;
                    let routes = outbox::routes(tx, tenant_id)?;
                    if routes.wants("grant.voided")
                        && let Some(grant) = q::grant(tx, tenant_id, grant_id).map_err(sql)?
                    {
                        effect.messages += outbox::enqueue(
                            tx,
                            &routes,
                            tenant_id,
                            "grant.voided",
                            grant_id,
                            *at,
                            grant.to_json(),
                        )?;
                    }
                }
            }
        }
        LedgerRecord::CampaignCreated { campaign } | LedgerRecord::CampaignUpdated { campaign } => {
            tx.execute(
                "INSERT INTO campaigns(tenant, campaign_id, body) VALUES(?1, ?2, ?3)
                 ON CONFLICT(tenant, campaign_id) DO UPDATE SET body = excluded.body",
                params![
                    campaign.tenant_id,
                    campaign.campaign_id,
                    json_text(campaign)?
                ],
            )
            .map_err(sql)?;
            if let (LedgerRecord::CampaignCreated { .. }, Some(code)) = (record, &campaign.code) {
                insert_code(
                    tx,
                    &campaign.tenant_id,
                    code,
                    &campaign.campaign_id,
                    false,
                    None,
                    campaign.created_at,
                )?;
            }
        }
        LedgerRecord::CodesIssued {
            tenant_id,
            campaign_id,
            codes,
            issued_to,
            at,
        } => {
            for code in codes {
                insert_code(
                    tx,
                    tenant_id,
                    code,
                    campaign_id,
                    true,
                    issued_to.as_deref(),
                    *at,
                )?;
            }
        }
        LedgerRecord::CodeVoided {
            tenant_id,
            code,
            reason,
            at,
        } => {
            tx.execute(
                "UPDATE codes SET voided_us = ?3, void_reason = ?4
                 WHERE tenant = ?1 AND code = ?2 AND voided_us IS NULL",
                params![tenant_id, code, micros(*at), reason],
            )
            .map_err(sql)?;
        }
        LedgerRecord::Redeemed {
            tenant_id,
            redemption_id,
            code,
            campaign_id,
            user_id,
            at,
            idempotency_key,
        } => {
            let Some(campaign) = campaign_in(tx, tenant_id, campaign_id)? else {
                return Err(format!("redemption of unknown campaign '{campaign_id}'"));
            };
            let display: String = tx
                .query_row(
                    "SELECT display FROM codes WHERE tenant = ?1 AND code = ?2",
                    params![tenant_id, code],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?
                .unwrap_or_else(|| code.clone());
            let rewards = campaign.rewards.as_array().cloned().unwrap_or_default();
            let source_text = json_text(&GrantSource {
                kind: "coupon".into(),
                id: campaign_id.clone(),
                leaderboard_id: None,
                window_id: None,
                rank: None,
                step: None,
                threshold: None,
                code: Some(display.clone()),
            })?;
            let routes = outbox::routes(tx, tenant_id)?;
            let source: GrantSource =
                serde_json::from_str(&source_text).map_err(|e| e.to_string())?;
            let mut grant_ids = Vec::with_capacity(rewards.len());
            for (index, reward) in rewards.iter().enumerate() {
                let key = grant_key(
                    tenant_id,
                    IdSource::Coupon {
                        campaign_id,
                        redemption_id,
                    },
                    user_id,
                    index,
                );
                let id = grant_id_of_key(key);
                if insert_grant(
                    tx,
                    &NewGrant {
                        tenant: tenant_id,
                        key,
                        user_id,
                        created_at: *at,
                        source_id: campaign_id,
                        template: template_id(tx, &json_text(reward)?, &source_text)?,
                        rank: None,
                        coupon_code: None,
                    },
                )? {
                    effect.coupon_grants += 1;
                    effect.messages += outbox::enqueue(
                        tx,
                        &routes,
                        tenant_id,
                        "reward.granted",
                        &id,
                        *at,
                        grant_json(
                            &id,
                            user_id,
                            reward.clone(),
                            &source,
                            GrantStatus::Pending,
                            *at,
                            (None, None, None),
                            None,
                        ),
                    )?;
                }
                grant_ids.push(id);
            }
            count_grant(
                tx,
                tenant_id,
                campaign_id,
                GrantStatus::Pending,
                effect.coupon_grants as i64,
            )
            .map_err(sql)?;
            tx.execute(
                "UPDATE codes SET redeemed_by = ?3, redeemed_us = ?4
                 WHERE tenant = ?1 AND code = ?2 AND personal = 1 AND redeemed_by IS NULL",
                params![tenant_id, code, user_id, micros(*at)],
            )
            .map_err(sql)?;
            tx.execute(
                "UPDATE campaigns SET redemptions = redemptions + 1 WHERE tenant = ?1 AND campaign_id = ?2",
                params![tenant_id, campaign_id],
            )
            .map_err(sql)?;
            tx.execute(
                "INSERT INTO redemptions(tenant, redemption_id, code, display, campaign_id, user_id,
                   redeemed_us, grant_ids) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    tenant_id,
                    redemption_id,
                    code,
                    display,
                    campaign_id,
                    user_id,
                    micros(*at),
                    json_text(&grant_ids)?
                ],
            )
            .map_err(sql)?;
            add_count(tx, tenant_id, "r", "", 1).map_err(sql)?;
            effect.messages += outbox::enqueue(
                tx,
                &routes,
                tenant_id,
                "coupon.redeemed",
                redemption_id,
                *at,
                Redemption {
                    redemption_id: redemption_id.clone(),
                    code: display.clone(),
                    campaign_id: campaign_id.clone(),
                    user_id: user_id.clone(),
                    redeemed_at: *at,
                    grant_ids: grant_ids.clone(),
                }
                .to_json(),
            )?;
            if let Some(key) = idempotency_key {
                tx.execute(
                    "INSERT OR REPLACE INTO redeem_keys(tenant, user_id, key, redemption_id, at_us)
                     VALUES(?1, ?2, ?3, ?4, ?5)",
                    params![tenant_id, user_id, key, redemption_id, micros(*at)],
                )
                .map_err(sql)?;
            }
            effect.redeemed = true;
        }
    }
    Ok(effect)
}

/// Moves a grant from `from` to `to` (keeping the counters); the grant's source id when it moved.
fn set_status(
    tx: &Transaction<'_>,
    tenant: &str,
    key: &[u8; 16],
    from: GrantStatus,
    to: GrantStatus,
) -> Result<Option<String>, String> {
    let source: Option<String> = tx
        .query_row(
            "UPDATE grants SET status = ?4 WHERE tenant = ?1 AND gid = ?2 AND status = ?3 RETURNING source_id",
            params![tenant, &key[..], from.code(), to.code()],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    if let Some(source_id) = &source {
        count_grant(tx, tenant, source_id, from, -1).map_err(sql)?;
        count_grant(tx, tenant, source_id, to, 1).map_err(sql)?;
    }
    Ok(source)
}

// ---- reads ----

fn rules_where(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RewardRule>, String> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT body FROM rules WHERE {filter} ORDER BY rule_id"
        ))
        .map_err(sql)?;
    let bodies: Vec<String> = stmt
        .query_map(params, |r| r.get(0))
        .map_err(sql)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql)?;
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).map_err(|e| format!("ledger: stored rule: {e}")))
        .collect()
}

fn campaign_in(
    conn: &Connection,
    tenant: &str,
    campaign_id: &str,
) -> Result<Option<Campaign>, String> {
    let row: Option<(String, i64)> = conn
        .query_row(
            "SELECT body, redemptions FROM campaigns WHERE tenant = ?1 AND campaign_id = ?2",
            params![tenant, campaign_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    row.map(|(body, n)| {
        let mut c: Campaign =
            serde_json::from_str(&body).map_err(|e| format!("ledger: stored campaign: {e}"))?;
        c.redemptions = n.max(0) as u64;
        Ok(c)
    })
    .transpose()
}

/// Reads, each on one connection (see [`Ledger::read`]). Errors are strings (the store maps them).
pub(super) mod q {
    use super::*;

    fn to_sql(e: String) -> rusqlite::Error {
        rusqlite::Error::ToSqlConversionFailure(e.into())
    }

    /// Live rules of a tenant (optionally of one leaderboard), and whether `rule_id` was ever taken.
    pub fn rules(
        conn: &Connection,
        tenant: &str,
        leaderboard_id: Option<&str>,
    ) -> rusqlite::Result<Vec<RewardRule>> {
        match leaderboard_id {
            Some(lb) => rules_where(
                conn,
                "tenant = ?1 AND leaderboard_id = ?2 AND deleted = 0",
                params![tenant, lb],
            ),
            None => rules_where(conn, "tenant = ?1 AND deleted = 0", params![tenant]),
        }
        .map_err(to_sql)
    }

    /// Every live, active rule of every tenant (the settler's list).
    pub fn active_rules(conn: &Connection) -> rusqlite::Result<Vec<RewardRule>> {
        let rules = rules_where(conn, "deleted = 0", []).map_err(to_sql)?;
        Ok(rules
            .into_iter()
            .filter(|r| r.status == Activity::Active)
            .collect())
    }

    /// A rule: `Some((rule, deleted))`.
    pub fn rule(
        conn: &Connection,
        tenant: &str,
        rule_id: &str,
    ) -> rusqlite::Result<Option<(RewardRule, bool)>> {
        let row: Option<(String, bool)> = conn
            .query_row(
                "SELECT body, deleted FROM rules WHERE tenant = ?1 AND rule_id = ?2",
                params![tenant, rule_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(body, deleted)| {
            serde_json::from_str(&body)
                .map(|rule| (rule, deleted))
                .map_err(|e| to_sql(e.to_string()))
        })
        .transpose()
    }

    pub fn settlement(
        conn: &Connection,
        tenant: &str,
        rule_id: &str,
        window_id: &str,
    ) -> rusqlite::Result<Option<Settlement>> {
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM settlements WHERE tenant = ?1 AND rule_id = ?2 AND window_id = ?3",
                params![tenant, rule_id, window_id],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| serde_json::from_str(&b).map_err(|e| to_sql(e.to_string())))
            .transpose()
    }

    /// A rule's settlements, newest window first.
    pub fn settlements(
        conn: &Connection,
        tenant: &str,
        rule_id: &str,
    ) -> rusqlite::Result<Vec<Settlement>> {
        let mut stmt = conn.prepare(
            "SELECT body FROM settlements WHERE tenant = ?1 AND rule_id = ?2
             ORDER BY ends_us DESC, settled_us DESC, window_id",
        )?;
        let bodies: Vec<String> = stmt
            .query_map(params![tenant, rule_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| to_sql(e.to_string())))
            .collect()
    }

    /// The newest `ends_at` (µs) among a rule's automatic settlements.
    pub fn last_automatic(
        conn: &Connection,
        tenant: &str,
        rule_id: &str,
    ) -> rusqlite::Result<Option<i64>> {
        conn.query_row(
            "SELECT MAX(ends_us) FROM settlements WHERE tenant = ?1 AND rule_id = ?2 AND automatic = 1",
            params![tenant, rule_id],
            |r| r.get(0),
        )
    }

    fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
        let key: Vec<u8> = r.get(0)?;
        let key: [u8; 16] = key
            .as_slice()
            .try_into()
            .map_err(|_| to_sql("a stored grant key is not 16 bytes".into()))?;
        let reward: String = r.get(6)?;
        let source: String = r.get(7)?;
        let mut source: GrantSource =
            serde_json::from_str(&source).map_err(|e| to_sql(e.to_string()))?;
        if let Some(rank) = r.get::<_, Option<u32>>(10)? {
            source.rank = Some(rank);
        }
        Ok(Grant {
            grant_id: grant_id_of_key(key),
            user_id: r.get(1)?,
            created_at: from_micros(r.get(2)?),
            status: GrantStatus::from_code(r.get(3)?),
            claimed_at: opt_time(r.get(4)?),
            voided_at: opt_time(r.get(5)?),
            reward: serde_json::from_str(&reward).map_err(|e| to_sql(e.to_string()))?,
            source,
            coupon_code: r.get(8)?,
            void_reason: r.get(9)?,
        })
    }

    const GRANT_COLUMNS: &str = "gid, user_id, created_us, status, claimed_us, voided_us, t.reward, t.source, coupon_code, void_reason, rank";

    pub fn grant(
        conn: &Connection,
        tenant: &str,
        grant_id: &str,
    ) -> rusqlite::Result<Option<Grant>> {
        let Some(key) = parse_grant_id(grant_id) else {
            return Ok(None);
        };
        conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants JOIN grant_templates t ON t.id = grants.template
             WHERE tenant = ?1 AND gid = ?2"
        ))?
        .query_row(params![tenant, &key[..]], grant_row)
        .optional()
    }

    pub fn grants_by_ids(
        conn: &Connection,
        tenant: &str,
        ids: &[String],
    ) -> rusqlite::Result<Vec<Grant>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(g) = grant(conn, tenant, id)? {
                out.push(g);
            }
        }
        Ok(out)
    }

    fn count(conn: &Connection, tenant: &str, dim: &str, key: &str) -> rusqlite::Result<u64> {
        let n: Option<i64> = conn
            .prepare_cached("SELECT n FROM counts WHERE tenant = ?1 AND dim = ?2 AND key = ?3")?
            .query_row(params![tenant, dim, key], |r| r.get(0))
            .optional()?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    const STATUSES: [GrantStatus; 3] = [
        GrantStatus::Pending,
        GrantStatus::Claimed,
        GrantStatus::Voided,
    ];

    /// A page of grants, newest first then by id, with the number of all that match.
    pub fn grants(
        conn: &Connection,
        tenant: &str,
        query: &GrantQuery,
    ) -> rusqlite::Result<Page<Grant>> {
        let mut filter = String::from("tenant = ?1");
        let mut args: Vec<rusqlite::types::Value> = vec![tenant.to_owned().into()];
        let mut push = |clause: &str, value: rusqlite::types::Value, filter: &mut String| {
            args.push(value);
            filter.push_str(&format!(" AND {clause} ?{}", args.len()));
        };
        if let Some(user) = &query.user_id {
            push("user_id =", user.clone().into(), &mut filter);
        }
        if let Some(source) = &query.source_id {
            push("source_id =", source.clone().into(), &mut filter);
        }
        if let Some(status) = query.status {
            push("status =", status.code().into(), &mut filter);
        }
        // The planner is told the index: a status filter must not lure it into scanning the whole
        // tenant when one player's rows are a short range of `grants_by_user`.
        let index = if query.user_id.is_some() {
            "grants_by_user"
        } else if query.source_id.is_some() {
            "grants_by_source"
        } else {
            "grants_by_time"
        };
        // The total: from the counters where they answer it, else counted (one player's grants).
        let total = match (&query.user_id, &query.source_id) {
            (None, None) => match query.status {
                Some(s) => count(conn, tenant, "t", s.as_str())?,
                None => STATUSES
                    .iter()
                    .map(|s| count(conn, tenant, "t", s.as_str()))
                    .sum::<rusqlite::Result<u64>>()?,
            },
            (None, Some(source)) => match query.status {
                Some(s) => count(conn, tenant, "s", &format!("{}:{source}", s.as_str()))?,
                None => STATUSES
                    .iter()
                    .map(|s| count(conn, tenant, "s", &format!("{}:{source}", s.as_str())))
                    .sum::<rusqlite::Result<u64>>()?,
            },
            _ => {
                let n: i64 = conn.query_row(
                    &format!("SELECT COUNT(*) FROM grants INDEXED BY {index} WHERE {filter}"),
                    rusqlite::params_from_iter(args.iter()),
                    |r| r.get(0),
                )?;
                n.max(0) as u64
            }
        };
        let mut page_filter = filter.clone();
        let mut page_args = args.clone();
        if let Some((at, id)) = &query.after {
            let key = parse_grant_id(id).map(|k| k.to_vec()).unwrap_or_default();
            page_args.push(micros(*at).into());
            let t = page_args.len();
            page_args.push(key.into());
            let k = page_args.len();
            page_filter.push_str(&format!(
                " AND (created_us < ?{t} OR (created_us = ?{t} AND gid > ?{k}))"
            ));
        }
        let limit = i64::from(query.limit) + 1;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants INDEXED BY {index}
             JOIN grant_templates t ON t.id = grants.template WHERE {page_filter}
             ORDER BY created_us DESC, gid LIMIT {limit}"
        ))?;
        let mut items: Vec<Grant> = stmt
            .query_map(rusqlite::params_from_iter(page_args.iter()), grant_row)?
            .collect::<rusqlite::Result<_>>()?;
        let more = items.len() > query.limit as usize;
        items.truncate(query.limit as usize);
        Ok(Page { total, items, more })
    }

    pub fn campaign(
        conn: &Connection,
        tenant: &str,
        campaign_id: &str,
    ) -> rusqlite::Result<Option<Campaign>> {
        campaign_in(conn, tenant, campaign_id).map_err(to_sql)
    }

    pub fn campaigns(conn: &Connection, tenant: &str) -> rusqlite::Result<Vec<Campaign>> {
        let mut stmt = conn.prepare(
            "SELECT body, redemptions FROM campaigns WHERE tenant = ?1 ORDER BY campaign_id",
        )?;
        let rows: Vec<(String, i64)> = stmt
            .query_map(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(body, n)| {
                let mut c: Campaign =
                    serde_json::from_str(&body).map_err(|e| to_sql(e.to_string()))?;
                c.redemptions = n.max(0) as u64;
                Ok(c)
            })
            .collect()
    }

    fn code_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CouponCode> {
        Ok(CouponCode {
            code: r.get(0)?,
            campaign_id: r.get(1)?,
            personal: r.get(2)?,
            issued_to: r.get(3)?,
            redeemed_by: r.get(4)?,
            redeemed_at: opt_time(r.get(5)?),
            voided_at: opt_time(r.get(6)?),
            void_reason: r.get(7)?,
            created_at: from_micros(r.get(8)?),
        })
    }

    const CODE_COLUMNS: &str = "display, campaign_id, personal, issued_to, redeemed_by, redeemed_us, voided_us, void_reason, created_us";

    /// A code by its canonical form.
    pub fn code(
        conn: &Connection,
        tenant: &str,
        canonical: &str,
    ) -> rusqlite::Result<Option<CouponCode>> {
        conn.prepare_cached(&format!(
            "SELECT {CODE_COLUMNS} FROM codes WHERE tenant = ?1 AND code = ?2"
        ))?
        .query_row(params![tenant, canonical], code_row)
        .optional()
    }

    pub fn code_taken(conn: &Connection, tenant: &str, canonical: &str) -> rusqlite::Result<bool> {
        Ok(code(conn, tenant, canonical)?.is_some())
    }

    /// A page of a campaign's personal codes in issue order, after the code `after` (canonical).
    pub fn codes(
        conn: &Connection,
        tenant: &str,
        campaign_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> rusqlite::Result<Page<CouponCode>> {
        let total: i64 = conn.query_row(
            "SELECT COUNT(*) FROM codes WHERE tenant = ?1 AND campaign_id = ?2 AND personal = 1",
            params![tenant, campaign_id],
            |r| r.get(0),
        )?;
        let after_row: Option<(i64, String)> = match after {
            Some(code) => conn
                .query_row(
                    "SELECT created_us, code FROM codes WHERE tenant = ?1 AND code = ?2",
                    params![tenant, code],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?,
            None => None,
        };
        let (after_us, after_code) = after_row.unwrap_or((i64::MIN, String::new()));
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CODE_COLUMNS} FROM codes WHERE tenant = ?1 AND campaign_id = ?2 AND personal = 1
               AND (created_us > ?3 OR (created_us = ?3 AND code > ?4))
             ORDER BY created_us, code LIMIT ?5"
        ))?;
        let mut items: Vec<CouponCode> = stmt
            .query_map(
                params![
                    tenant,
                    campaign_id,
                    after_us,
                    after_code,
                    i64::from(limit) + 1
                ],
                code_row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(Page {
            total: total.max(0) as u64,
            items,
            more,
        })
    }

    fn redemption_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Redemption> {
        let ids: String = r.get(5)?;
        Ok(Redemption {
            redemption_id: r.get(0)?,
            code: r.get(1)?,
            campaign_id: r.get(2)?,
            user_id: r.get(3)?,
            redeemed_at: from_micros(r.get(4)?),
            grant_ids: serde_json::from_str(&ids).map_err(|e| to_sql(e.to_string()))?,
        })
    }

    const REDEMPTION_COLUMNS: &str =
        "redemption_id, display, campaign_id, user_id, redeemed_us, grant_ids";

    pub fn redemption(
        conn: &Connection,
        tenant: &str,
        redemption_id: &str,
    ) -> rusqlite::Result<Option<Redemption>> {
        conn.prepare_cached(&format!(
            "SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE tenant = ?1 AND redemption_id = ?2"
        ))?
        .query_row(params![tenant, redemption_id], redemption_row)
        .optional()
    }

    /// Redemptions of a code (canonical), oldest first.
    pub fn redemptions_of_code(
        conn: &Connection,
        tenant: &str,
        canonical: &str,
        limit: u32,
    ) -> rusqlite::Result<Vec<Redemption>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE tenant = ?1 AND code = ?2
             ORDER BY redeemed_us, redemption_id LIMIT ?3"
        ))?;
        stmt.query_map(params![tenant, canonical, i64::from(limit)], redemption_row)?
            .collect()
    }

    /// A page of the audit trail, newest first, after `after` (a redemption id).
    pub fn redemptions(
        conn: &Connection,
        tenant: &str,
        campaign_id: Option<&str>,
        user_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> rusqlite::Result<Page<Redemption>> {
        let mut filter = String::from("tenant = ?1");
        let mut args: Vec<rusqlite::types::Value> = vec![tenant.to_owned().into()];
        if let Some(c) = campaign_id {
            args.push(c.to_owned().into());
            filter.push_str(&format!(" AND campaign_id = ?{}", args.len()));
        }
        if let Some(u) = user_id {
            args.push(u.to_owned().into());
            filter.push_str(&format!(" AND user_id = ?{}", args.len()));
        }
        let total: u64 = match (campaign_id, user_id) {
            (None, None) => count(conn, tenant, "r", "")?,
            (Some(c), None) => campaign_in(conn, tenant, c)
                .map_err(to_sql)?
                .map_or(0, |c| c.redemptions),
            _ => {
                let n: i64 = conn.query_row(
                    &format!("SELECT COUNT(*) FROM redemptions WHERE {filter}"),
                    rusqlite::params_from_iter(args.iter()),
                    |r| r.get(0),
                )?;
                n.max(0) as u64
            }
        };
        let after_row: Option<(i64, String)> = match after {
            Some(id) => conn
                .query_row(
                    "SELECT redeemed_us, redemption_id FROM redemptions WHERE tenant = ?1 AND redemption_id = ?2",
                    params![tenant, id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?,
            None => None,
        };
        let mut page_filter = filter;
        if let Some((us, id)) = after_row {
            args.push(us.into());
            let t = args.len();
            args.push(id.into());
            let k = args.len();
            page_filter.push_str(&format!(
                " AND (redeemed_us < ?{t} OR (redeemed_us = ?{t} AND redemption_id > ?{k}))"
            ));
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE {page_filter}
             ORDER BY redeemed_us DESC, redemption_id LIMIT {}",
            i64::from(limit) + 1
        ))?;
        let mut items: Vec<Redemption> = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), redemption_row)?
            .collect::<rusqlite::Result<_>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(Page { total, items, more })
    }

    /// How often `user` redeemed the campaign, and this very code.
    pub fn player_redemptions(
        conn: &Connection,
        tenant: &str,
        user: &str,
        campaign_id: &str,
        canonical: &str,
    ) -> rusqlite::Result<(u64, u64)> {
        conn.prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(code = ?4), 0) FROM redemptions
             WHERE tenant = ?1 AND user_id = ?2 AND campaign_id = ?3",
        )?
        .query_row(params![tenant, user, campaign_id, canonical], |r| {
            let a: i64 = r.get(0)?;
            let b: i64 = r.get(1)?;
            Ok((a.max(0) as u64, b.max(0) as u64))
        })
    }

    /// The redemption an `Idempotency-Key` of this player made.
    pub fn redemption_by_key(
        conn: &Connection,
        tenant: &str,
        user: &str,
        key: &str,
    ) -> rusqlite::Result<Option<String>> {
        conn.query_row(
            "SELECT redemption_id FROM redeem_keys WHERE tenant = ?1 AND user_id = ?2 AND key = ?3",
            params![tenant, user, key],
            |r| r.get(0),
        )
        .optional()
    }

    fn body_rows<T: serde::de::DeserializeOwned>(
        conn: &Connection,
        query: &str,
        args: impl rusqlite::Params,
    ) -> rusqlite::Result<Vec<T>> {
        let texts = conn
            .prepare_cached(query)?
            .query_map(args, |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(|e| to_sql(e.to_string())))
            .collect()
    }

    /// Live achievements of a tenant, by id.
    pub fn achievements(conn: &Connection, tenant: &str) -> rusqlite::Result<Vec<Achievement>> {
        body_rows(
            conn,
            "SELECT body FROM achievements WHERE tenant = ?1 AND deleted = 0 ORDER BY achievement_id",
            params![tenant],
        )
    }

    /// An achievement: `Some((achievement, deleted))`.
    pub fn achievement(
        conn: &Connection,
        tenant: &str,
        id: &str,
    ) -> rusqlite::Result<Option<(Achievement, bool)>> {
        let row: Option<(String, bool)> = conn
            .query_row(
                "SELECT body, deleted FROM achievements WHERE tenant = ?1 AND achievement_id = ?2",
                params![tenant, id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(body, deleted)| {
            serde_json::from_str(&body)
                .map(|a| (a, deleted))
                .map_err(|e| to_sql(e.to_string()))
        })
        .transpose()
    }

    /// How many players completed each of an achievement's `steps` steps.
    pub fn completions(
        conn: &Connection,
        tenant: &str,
        id: &str,
        steps: usize,
    ) -> rusqlite::Result<Vec<u64>> {
        let mut out = vec![0u64; steps];
        let rows = conn
            .prepare_cached(
                "SELECT key, n FROM counts WHERE tenant = ?1 AND dim = 'c' AND key > ?2 AND key < ?3",
            )?
            .query_map(params![tenant, format!("{id}/"), format!("{id}0")], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (key, n) in rows {
            if let Some(step) = key.rsplit('/').next().and_then(|s| s.parse::<usize>().ok())
                && step < steps
            {
                out[step] = n.max(0) as u64;
            }
        }
        Ok(out)
    }

    /// Live webhooks of a tenant, oldest first.
    pub fn webhooks(conn: &Connection, tenant: &str) -> rusqlite::Result<Vec<Webhook>> {
        let mut list: Vec<Webhook> = body_rows(
            conn,
            "SELECT body FROM webhooks WHERE tenant = ?1 AND deleted = 0",
            params![tenant],
        )?;
        list.sort_by(|a, b| (a.created_at, &a.webhook_id).cmp(&(b.created_at, &b.webhook_id)));
        Ok(list)
    }

    /// A live webhook.
    pub fn webhook(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<Webhook>> {
        Ok(body_rows(
            conn,
            "SELECT body FROM webhooks WHERE tenant = ?1 AND webhook_id = ?2 AND deleted = 0",
            params![tenant, id],
        )?
        .pop())
    }

    /// Live webhooks of every tenant that take `window.closed` and are active.
    pub fn window_hooks(conn: &Connection) -> rusqlite::Result<Vec<Webhook>> {
        let list: Vec<Webhook> = body_rows(
            conn,
            "SELECT body FROM webhooks WHERE deleted = 0 AND active = 1",
            [],
        )?;
        Ok(list
            .into_iter()
            .filter(|w| w.events.iter().any(|e| e == "window.closed"))
            .collect())
    }

    /// The end of the last window of a leaderboard (incarnation `uid`) reported closed (Unix µs).
    pub fn last_closed(
        conn: &Connection,
        tenant: &str,
        leaderboard_id: &str,
        uid: u64,
    ) -> rusqlite::Result<Option<i64>> {
        conn.query_row(
            "SELECT last_end_us FROM closed_windows
             WHERE tenant = ?1 AND leaderboard_id = ?2 AND uid = ?3",
            params![tenant, leaderboard_id, uid as i64],
            |r| r.get(0),
        )
        .optional()
    }
}
