//! The cluster's log: an append-only PostgreSQL table that every node reads in the same order.
//!
//! **Order without holes.** Positions are not taken from a sequence (sequences are handed out in
//! call order, not commit order, and leave holes on rollback). An appender locks the one row of
//! `phoenix_log_head` (`SELECT ... FOR UPDATE`), numbers its records right after the head, inserts them
//! and moves the head, all in one transaction. The row lock serializes appenders until commit, and a
//! transaction's rows are visible before its locks are released, so the committed positions are
//! always exactly `1..=head`: a reader that has applied up to `p` reads `pos > p` in order and never
//! skips a record nor waits on a gap (a rolled-back append numbered nothing that anyone kept).
//! Each node groups what its clients append meanwhile into one transaction (group commit), so one
//! row lock is taken per group, not per record.
//!
//! **Time.** Each group's time is taken inside that transaction from the database's clock
//! (`clock_timestamp()`), never a node's, and never goes backwards (`greatest` with the head's).
//!
//! **Fences.** A write whose answer depends on the state (a conflict on create, a limit) is checked by
//! a node holding a cluster-wide gate, against its replica caught up to the head. The record then
//! carries the gate's fence (the position of the last fenced record the node saw); the append refuses
//! it if another fenced record got in since, so even a gate lost to a network partition cannot let
//! two nodes append decisions made from the same state.
//!
//! **Upgrades.** Each row carries its record format's version; a node stops applying (and says it is
//! not ready) at a record newer than it understands instead of folding it another way.
//!
//! A node folds the log on one thread ([`ApplyFn`], as for the file journal): rows arrive from a
//! tailer that is woken by `LISTEN/NOTIFY` (and by its own node's appends), with a one-second poll as a
//! fallback for a lost notification. An append is answered once its record is applied locally, so a
//! node's own writes are visible to its next read.

use crate::journal::{ApplyFn, Attachment, Durable, JournalError};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot, watch};

/// The version of the record format this build writes and reads. A node refuses rows with a higher
/// one (see the module docs). 2: the same records, but whether an event id is a duplicate is decided
/// by each id's acceptance time in the log (horizon + 6 minutes), so a node of version 1 must not fold
/// what a node of version 2 appended.
pub const RECORD_VERSION: i16 = 2;
/// Upper bound on the bytes of one group (one transaction).
const MAX_GROUP_BYTES: usize = 8 << 20;
/// Upper bound on the records of one group.
const MAX_GROUP_RECORDS: usize = 5_000;
/// Rows read per fetch. A record is at most a request body (1 MiB; metadata far less), so a page holds
/// at most ~128 MiB however large the records, and usually a few MB.
const FETCH_ROWS: i64 = 128;
/// Appends waiting for a group, beyond which appenders wait (memory stays bounded).
const QUEUED_APPENDS: usize = 8_192;
/// Fetched pages waiting to be applied.
const QUEUED_BATCHES: usize = 2;
/// How often the tailer looks for new rows without a notification.
const POLL: Duration = Duration::from_secs(1);
const CHANNEL: &str = "phoenix_log";

const MIGRATION_1: &str = "
CREATE TABLE IF NOT EXISTS phoenix_log (
    pos BIGINT PRIMARY KEY,
    at_us BIGINT NOT NULL,
    version SMALLINT NOT NULL,
    origin BIGINT NOT NULL,
    origin_seq BIGINT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS phoenix_log_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
    fence_meta BIGINT NOT NULL,
    fence_rewards BIGINT NOT NULL
);
INSERT INTO phoenix_log_head (id, pos, at_us, fence_meta, fence_rewards)
    VALUES (1, 0, 0, 0, 0) ON CONFLICT (id) DO NOTHING;
";

const MIGRATION_2: &str = "
CREATE TABLE IF NOT EXISTS phoenix_delivery_claims (
    msg TEXT PRIMARY KEY,
    attempt INTEGER NOT NULL,
    node BIGINT NOT NULL,
    lease_until_us BIGINT NOT NULL,
    recorded BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS phoenix_delivery_claims_lease ON phoenix_delivery_claims (lease_until_us);
";

/// How long a claimed delivery attempt is a node's alone. A node claims a batch of a webhook's due
/// messages (64) and sends them 4 at a time, each within the receiver timeout (SPEC §7.6: 10 s), so
/// the last of a batch may go out 160 s after the claim: the lease is well beyond that, so only a
/// node that died mid-batch loses its claims (another node makes those attempts once it ends).
pub const DELIVERY_LEASE: Duration = Duration::from_secs(300);

/// Which gate a fenced record was decided under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FenceKind {
    /// Tenants, keys, leaderboards, users and sessions.
    Meta,
    /// Rewards, coupons, achievements and webhooks.
    Rewards,
}

/// A fenced record's expectation: no other record of this kind was appended after `seen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub kind: FenceKind,
    pub seen: u64,
}

/// What the log's head says: the newest position, its time, and the fences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub pos: u64,
    pub at_us: i64,
    pub fence_meta: u64,
    pub fence_rewards: u64,
}

impl Head {
    pub fn fence(&self, kind: FenceKind) -> u64 {
        match kind {
            FenceKind::Meta => self.fence_meta,
            FenceKind::Rewards => self.fence_rewards,
        }
    }
}

/// Why the PostgreSQL log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgLogError {
    #[error("PHOENIX_DATABASE_URL: {0}")]
    Url(String),
    #[error("PostgreSQL: {0}")]
    Database(String),
    #[error("schema migration: {0}")]
    Migrate(String),
    #[error("replaying the log: {0}")]
    Replay(String),
}

fn db_error(e: sqlx::Error) -> String {
    // Never the URL (it may hold a password): sqlx's errors name the failure, not the options.
    e.to_string()
}

/// Connection options for `url` with the timeouts every Phoenix connection runs with: a stalled
/// node's transaction cannot hold the log's head for long.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, PgLogError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| PgLogError::Url("not a valid PostgreSQL URL".into()))?;
    // The URL may name the application (operators tell nodes apart by it in pg_stat_activity).
    let options = match options.get_application_name() {
        Some(_) => options,
        None => options.application_name("phoenix"),
    };
    Ok(options.options([
        ("statement_timeout", "15s"),
        ("lock_timeout", "5s"),
        ("idle_in_transaction_session_timeout", "10s"),
    ]))
}

/// Runs the schema migrations (safe when several nodes start at once: the migrator holds an
/// advisory lock while it runs).
pub async fn migrate(pool: &PgPool) -> Result<(), PgLogError> {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let migrator = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "the log and its head".into(),
            MigrationType::Simple,
            MIGRATION_1.into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "webhook delivery claims".into(),
            MigrationType::Simple,
            MIGRATION_2.into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "snapshots, nodes, leases, the cluster id".into(),
            MigrationType::Simple,
            crate::pgsnap::MIGRATION_3.into_sql_str(),
            false,
        ),
    ]);
    migrator
        .run(pool)
        .await
        .map_err(|e| PgLogError::Migrate(e.to_string()))
}

/// Reads the head.
pub async fn read_head(db: impl sqlx::PgExecutor<'_>) -> Result<Head, sqlx::Error> {
    Ok(read_head_and_clock(db).await?.0)
}

/// Reads the head and the database's clock now (µs).
async fn read_head_and_clock(db: impl sqlx::PgExecutor<'_>) -> Result<(Head, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT pos, at_us, fence_meta, fence_rewards, \
         (extract(epoch from clock_timestamp()) * 1000000)::bigint FROM phoenix_log_head WHERE id = 1",
    )
    .fetch_one(db)
    .await?;
    Ok((
        Head {
            pos: row.try_get::<i64, _>(0)? as u64,
            at_us: row.try_get(1)?,
            fence_meta: row.try_get::<i64, _>(2)? as u64,
            fence_rewards: row.try_get::<i64, _>(3)? as u64,
        },
        row.try_get(4)?,
    ))
}

fn local_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// Reads the head and moves `offset` to the database clock's lead over this node's (taken at the
/// middle of the round trip).
async fn sync_clock(pool: &PgPool, offset: &AtomicI64) -> Result<Head, sqlx::Error> {
    let before = local_us();
    let (head, db_now) = read_head_and_clock(pool).await?;
    let after = local_us();
    offset.store(db_now - (before + after) / 2, Ordering::Release);
    Ok(head)
}

/// The advisory lock key of a gate ("PHNX" and the kind).
fn gate_key(kind: FenceKind) -> i64 {
    0x5048_4e58_0000
        + match kind {
            FenceKind::Meta => 1,
            FenceKind::Rewards => 2,
        }
}

/// A cluster-wide gate, held until dropped: a session advisory lock on a connection of its own, taken
/// with the head as it was then. Decisions made under it are appended with [`PgGate::fence`].
pub struct PgGate {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    key: i64,
    runtime: tokio::runtime::Handle,
    head: Head,
    pub fence: Fence,
}

impl PgGate {
    /// The head when the gate was taken (the node has applied at least up to it).
    pub fn head(&self) -> Head {
        self.head
    }
}

impl Drop for PgGate {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        self.runtime.spawn(async move {
            let released = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await
                .is_ok()
                && sqlx::query("RESET idle_session_timeout")
                    .execute(&mut *conn)
                    .await
                    .is_ok();
            if !released {
                // Never back into the pool with the lock: closing the session releases it.
                conn.close_on_drop();
            }
        });
    }
}

struct Append {
    payload: Vec<u8>,
    fence: Option<Fence>,
    attachment: Option<Attachment>,
    done: oneshot::Sender<Result<u64, JournalError>>,
}

/// A row as read back.
struct Row_ {
    pos: u64,
    at_us: i64,
    version: i16,
    origin: i64,
    origin_seq: u64,
    payload: Vec<u8>,
}

/// What an append waits for: its record's attachment, handed to the fold, and its answer.
struct Pending {
    attachment: Option<Attachment>,
    done: oneshot::Sender<Result<u64, JournalError>>,
}

/// State shared by the handle, the appender, the tailer and the applier.
struct Shared {
    /// The last round trip to PostgreSQL succeeded.
    reachable: AtomicBool,
    /// Applying stopped for good (a panic, or a record too new): a restart is needed.
    stopped: AtomicBool,
    /// Why it stopped.
    stop_reason: Mutex<Option<String>>,
    /// It stopped because the log's rows it needed next were removed (it was away longer than the
    /// log keeps rows for it): a fresh start from the newest snapshot is the way back.
    fell_behind: AtomicBool,
    /// The node is closing: it no longer reports its position (see [`PgLog::leave`]).
    leaving: AtomicBool,
    applied: watch::Sender<u64>,
    /// The time of the last applied record (µs).
    applied_at_us: AtomicI64,
    /// The newest position known to exist, and its time.
    head: AtomicU64,
    head_at_us: AtomicI64,
    /// The head when the log was opened: the node is caught up once it has applied that far.
    head_at_open: AtomicU64,
    origin: i64,
    next_seq: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Wakes the tailer after this node's own commit.
    poke: Notify,
    append_count: AtomicU64,
    append_us_sum: AtomicU64,
    /// The database clock's lead over this node's (µs), refreshed about once a second.
    clock_offset_us: Arc<AtomicI64>,
}

impl Shared {
    fn stop(&self, why: String) {
        tracing::error!(reason = %why, "the log's fold stopped; this node is not ready until it starts again");
        *self.stop_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.stopped.store(true, Ordering::Release);
        // Nobody waits for ever: appends not applied yet are answered now (their records may be in
        // the log; the other nodes fold them, and a retry is judged there).
        let waiting: Vec<Pending> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in waiting {
            let _ = p.done.send(Err(JournalError::Unavailable(
                "this node stopped applying the log; restart required".into(),
            )));
        }
    }
}

/// Lag and latency figures, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub applied: u64,
    pub head: u64,
    /// Seconds between the newest known record's time and the last applied one's.
    pub lag_us: i64,
    pub appends: u64,
    pub append_us_sum: u64,
}

/// The options of a PostgreSQL log. `Debug` leaves the URL out (it may hold a password).
#[derive(Clone)]
pub struct PgLogOptions {
    pub url: String,
    /// Connections for appends and gates (the tailer and its listener have their own).
    pub connections: u32,
}

impl std::fmt::Debug for PgLogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLogOptions")
            .field("url", &"<redacted>")
            .field("connections", &self.connections)
            .finish()
    }
}

/// A handle to the PostgreSQL log (see the module docs). Dropping it stops its tasks.
pub struct PgLog {
    appends: tokio::sync::mpsc::Sender<Append>,
    shared: Arc<Shared>,
    pool: PgPool,
    runtime: Option<tokio::runtime::Runtime>,
    applier: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PgLog {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        if let Some(applier) = self.applier.take() {
            // The applier ends when the tailer's channel closes (the runtime is gone).
            let _ = applier.join();
        }
    }
}

impl PgLog {
    /// Connects, migrates the schema, replays every record after position `start` through `replay`
    /// (on the calling thread, which must not be an async worker), and starts folding new records with
    /// `apply`, in order, from where the replay stopped.
    pub fn open(
        options: &PgLogOptions,
        start: u64,
        mut replay: impl FnMut(&mut Durable<'_>) -> Result<(), String>,
        apply: ApplyFn,
    ) -> Result<PgLog, PgLogError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("phoenix-pglog")
            .enable_all()
            .build()
            .map_err(|e| PgLogError::Database(e.to_string()))?;
        let connect = connect_options(&options.url)?;
        // Three pools, so no use of the log waits behind another for a connection: the appender's
        // own, the tailer's (its fetches, its listener, the clock), and the rest (gates, claims,
        // barriers, the store's other tables). A pool connects lazily and reconnects by itself.
        let (pool, append_pool, tail_pool) = runtime.block_on(async {
            let pool = PgPoolOptions::new()
                .max_connections(options.connections.max(2))
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(connect.clone())
                .await
                .map_err(|e| PgLogError::Database(db_error(e)))?;
            migrate(&pool).await?;
            let own = |n: u32| {
                PgPoolOptions::new()
                    .max_connections(n)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with(connect.clone())
            };
            Ok::<_, PgLogError>((pool, own(1), own(3)))
        })?;
        let clock_offset_us = Arc::new(AtomicI64::new(0));
        let head = runtime
            .block_on(sync_clock(&pool, &clock_offset_us))
            .map_err(|e| PgLogError::Database(db_error(e)))?;
        // The node says where it is before it replays, and as it goes: the log's rows it still needs
        // are not removed behind a snapshot (see `pgsnap::prune`).
        let origin = random_origin();
        let report = |at: u64| {
            runtime
                .block_on(crate::pgsnap::report_position(&pool, origin, at))
                .map_err(|e| PgLogError::Database(db_error(e)))
        };
        report(start)?;
        let mut reported = Instant::now();
        // Replay: fetch in pages, apply on this thread, until a page comes back short.
        let mut at = start;
        let mut last_at_us = 0;
        loop {
            if reported.elapsed() >= crate::pgsnap::REPORT_EVERY {
                report(at)?;
                reported = Instant::now();
            }
            let rows = runtime
                .block_on(fetch_after(&pool, at, FETCH_ROWS))
                .map_err(|e| PgLogError::Database(db_error(e)))?;
            let short = (rows.len() as i64) < FETCH_ROWS;
            for row in rows {
                if row.pos != at + 1 {
                    return Err(PgLogError::Replay(format!(
                        "the log has no record at position {} (rows before the oldest snapshot were removed?)",
                        at + 1
                    )));
                }
                check_version(&row)?;
                let mut durable = Durable {
                    offset: row.pos - 1,
                    end: row.pos,
                    at_us: Some(row.at_us),
                    payload: &row.payload,
                    attachment: None,
                };
                replay(&mut durable).map_err(PgLogError::Replay)?;
                at = row.pos;
                last_at_us = row.at_us;
            }
            if short {
                break;
            }
        }
        let (applied, _) = watch::channel(at);
        let shared = Arc::new(Shared {
            reachable: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            stop_reason: Mutex::new(None),
            fell_behind: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            applied,
            applied_at_us: AtomicI64::new(last_at_us),
            head: AtomicU64::new(head.pos.max(at)),
            head_at_us: AtomicI64::new(head.at_us),
            head_at_open: AtomicU64::new(head.pos),
            origin,
            next_seq: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            poke: Notify::new(),
            append_count: AtomicU64::new(0),
            append_us_sum: AtomicU64::new(0),
            clock_offset_us,
        });
        let (batches_tx, batches_rx) = std::sync::mpsc::sync_channel::<Vec<Row_>>(QUEUED_BATCHES);
        let applier = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("phoenix-log-apply".into())
                .spawn(move || applier_loop(batches_rx, shared, apply))
                .map_err(|e| PgLogError::Database(e.to_string()))?
        };
        let (appends, rx) = tokio::sync::mpsc::channel(QUEUED_APPENDS);
        runtime.spawn(appender_loop(append_pool, rx, shared.clone()));
        runtime.spawn(clock_loop(tail_pool.clone(), shared.clone()));
        runtime.spawn(tailer_loop(tail_pool, at, batches_tx, shared.clone()));
        Ok(PgLog {
            appends,
            shared,
            pool,
            runtime: Some(runtime),
            applier: Some(applier),
        })
    }

    /// Appends one record; resolves with its position once it is committed in PostgreSQL and applied
    /// by this node's fold. With a `fence`, the record is refused if another record of its kind was
    /// appended after `fence.seen`.
    pub async fn append_with(
        &self,
        payload: &[u8],
        attachment: Option<Attachment>,
        fence: Option<Fence>,
    ) -> Result<u64, JournalError> {
        if payload.len() > crate::journal::MAX_RECORD {
            return Err(JournalError::TooLarge(payload.len()));
        }
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(JournalError::Unavailable(
                "this node stopped applying the log; restart required".into(),
            ));
        }
        let (done, wait) = oneshot::channel();
        self.appends
            .send(Append {
                payload: payload.to_vec(),
                fence,
                attachment,
                done,
            })
            .await
            .map_err(|_| JournalError::Unavailable("the log has stopped".into()))?;
        wait.await
            .map_err(|_| JournalError::Unavailable("the log has stopped".into()))?
    }

    /// PostgreSQL answered the last round trip and the fold is running.
    pub fn is_healthy(&self) -> bool {
        self.shared.reachable.load(Ordering::Acquire)
            && !self.shared.stopped.load(Ordering::Acquire)
    }

    /// Healthy and caught up with the log as it was when the node started.
    pub fn is_ready(&self) -> bool {
        self.is_healthy() && self.applied() >= self.shared.head_at_open.load(Ordering::Acquire)
    }

    /// The position this node has applied up to.
    pub fn applied(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Waits until this node has applied up to `pos` (or `timeout` passes: false).
    pub async fn wait_applied(&self, pos: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= pos))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Reads the head (the newest committed position, its time, the fences).
    pub async fn head(&self) -> Result<Head, JournalError> {
        let pool = self.pool.clone();
        let read = self.spawn(async move { read_head(&pool).await }).await;
        match read {
            Ok(head) => {
                self.shared.reachable.store(true, Ordering::Release);
                self.shared.head.fetch_max(head.pos, Ordering::AcqRel);
                Ok(head)
            }
            Err(e) => {
                self.shared.reachable.store(false, Ordering::Release);
                Err(JournalError::Unavailable(e))
            }
        }
    }

    /// Takes the cluster-wide gate of `kind` (waiting at most the lock timeout for another node to
    /// let it go) once this node has applied the log up to the head: a check made under it sees every
    /// decision of its kind made before, on any node.
    pub async fn gate(&self, kind: FenceKind) -> Result<PgGate, JournalError> {
        let Some(rt) = self.runtime.as_ref() else {
            return Err(JournalError::Unavailable("the log has stopped".into()));
        };
        // Catch up first, so a node that is behind does not hold the cluster's gate while it does.
        let head = self.head().await?;
        if !self.wait_applied(head.pos, Duration::from_secs(10)).await {
            return Err(JournalError::Unavailable(
                "this node is catching up with the log; retry".into(),
            ));
        }
        let (pool, handle, key) = (self.pool.clone(), rt.handle().clone(), gate_key(kind));
        // Built inside the task, so a caller that goes away mid-way drops a gate (which unlocks),
        // never a bare connection still holding the lock.
        let taken = rt
            .spawn(async move {
                let mut conn = pool.acquire().await?;
                let mut gate = PgGate {
                    conn: None,
                    key,
                    runtime: handle,
                    head: Head::default(),
                    fence: Fence { kind, seen: 0 },
                };
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                // From here on the gate owns the connection: whatever happens, dropping it unlocks.
                let conn = gate.conn.insert(conn);
                // A node that stalls while holding the gate loses it (its session ends); the fence
                // keeps its late append out.
                sqlx::query("SET idle_session_timeout = '20s'")
                    .execute(&mut **conn)
                    .await?;
                gate.head = read_head(&mut **conn).await?;
                gate.fence.seen = gate.head.fence(kind);
                Ok::<_, sqlx::Error>(gate)
            })
            .await
            .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        let gate = match taken {
            Ok(gate) => gate,
            Err(e) => {
                return Err(JournalError::Unavailable(format!(
                    "the cluster's write gate: {}",
                    db_error(e)
                )));
            }
        };
        if !self
            .wait_applied(gate.head.pos, Duration::from_secs(10))
            .await
        {
            return Err(JournalError::Unavailable(
                "this node is catching up with the log; retry".into(),
            ));
        }
        Ok(gate)
    }

    /// Claims delivery attempts (`(message key, attempt)`) for this node for [`DELIVERY_LEASE`];
    /// answers the keys it got. An attempt is another node's while its lease runs (this node may
    /// take back one it claimed and did not make), and nobody's once its outcome is recorded (a node
    /// whose outbox lags cannot make it a second time).
    pub async fn claim_deliveries(
        &self,
        attempts: Vec<(String, i32)>,
    ) -> Result<Vec<String>, JournalError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let pool = self.pool.clone();
        let (keys, numbers): (Vec<String>, Vec<i32>) = attempts.into_iter().unzip();
        let lease = DELIVERY_LEASE.as_micros() as i64;
        let node = self.shared.origin;
        self.spawn(async move {
            sqlx::query_scalar(
                "INSERT INTO phoenix_delivery_claims (msg, attempt, node, lease_until_us) \
                 SELECT m, a, $4, (extract(epoch from clock_timestamp()) * 1000000)::bigint + $3 \
                 FROM unnest($1::text[], $2::int[]) AS t(m, a) \
                 ON CONFLICT (msg) DO UPDATE SET attempt = EXCLUDED.attempt, node = EXCLUDED.node, \
                   lease_until_us = EXCLUDED.lease_until_us, recorded = FALSE \
                 WHERE phoenix_delivery_claims.attempt < EXCLUDED.attempt \
                    OR (phoenix_delivery_claims.attempt = EXCLUDED.attempt \
                        AND NOT phoenix_delivery_claims.recorded \
                        AND (phoenix_delivery_claims.node = EXCLUDED.node \
                             OR phoenix_delivery_claims.lease_until_us \
                                < (extract(epoch from clock_timestamp()) * 1000000)::bigint)) \
                 RETURNING msg",
            )
            .bind(keys)
            .bind(numbers)
            .bind(lease)
            .bind(node)
            .fetch_all(&pool)
            .await
        })
        .await
        .map_err(JournalError::Unavailable)
    }

    /// Marks a claimed attempt's outcome recorded (in the log), so it is never claimed again; drops
    /// claims whose lease ended an hour ago (no node lags that far and is still ready).
    pub async fn delivery_recorded(&self, key: String, attempt: i32) -> Result<(), JournalError> {
        let pool = self.pool.clone();
        self.spawn(async move {
            sqlx::query(
                "UPDATE phoenix_delivery_claims SET recorded = TRUE WHERE msg = $1 AND attempt = $2",
            )
            .bind(key)
            .bind(attempt)
            .execute(&pool)
            .await?;
            sqlx::query(
                "DELETE FROM phoenix_delivery_claims WHERE lease_until_us \
                 < (extract(epoch from clock_timestamp()) * 1000000)::bigint - 3600000000",
            )
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
        .map_err(JournalError::Unavailable)
    }

    /// The database clock's lead over this node's clock (µs), shared with the store's clock.
    pub fn clock_offset(&self) -> Arc<AtomicI64> {
        self.shared.clock_offset_us.clone()
    }

    /// A node closing removes its place in the node registry, so the log's rows it needed are not
    /// kept for it another 5 minutes (it loads the newest snapshot when it starts again). Best effort:
    /// a node that cannot say so is forgotten after those 5 minutes.
    pub async fn leave(&self) {
        self.shared.leaving.store(true, Ordering::Release);
        let (pool, node) = (self.pool.clone(), self.shared.origin);
        let left = self.spawn(async move {
            sqlx::query("DELETE FROM phoenix_nodes WHERE node = $1")
                .bind(node)
                .execute(&pool)
                .await
        });
        if tokio::time::timeout(Duration::from_secs(2), left)
            .await
            .is_err()
        {
            tracing::warn!(
                "could not leave the node registry in time; the node is forgotten in 5 minutes"
            );
        }
    }

    /// Runs `task` on the log's own runtime (its connections live there).
    async fn spawn<T: Send + 'static>(
        &self,
        task: impl std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    ) -> Result<T, String> {
        let Some(rt) = self.runtime.as_ref() else {
            return Err("the log has stopped".into());
        };
        rt.spawn(task)
            .await
            .map_err(|e| e.to_string())?
            .map_err(db_error)
    }

    pub fn stats(&self) -> LogStats {
        let s = &self.shared;
        LogStats {
            applied: self.applied(),
            head: s.head.load(Ordering::Acquire),
            lag_us: (s.head_at_us.load(Ordering::Acquire)
                - s.applied_at_us.load(Ordering::Acquire))
            .max(0),
            appends: s.append_count.load(Ordering::Relaxed),
            append_us_sum: s.append_us_sum.load(Ordering::Relaxed),
        }
    }

    /// Whether the fold stopped because the rows it needed next were removed (see
    /// [`crate::backend::RunningStore::fell_behind`]).
    pub fn fell_behind(&self) -> bool {
        self.shared.fell_behind.load(Ordering::Acquire)
    }

    /// Why the fold stopped, if it did.
    pub fn stop_reason(&self) -> Option<String> {
        self.shared
            .stop_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The pool the log uses (for the store's other tables).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This node's identity in the log (random per start).
    pub fn node_id(&self) -> i64 {
        self.shared.origin
    }
}

fn random_origin() -> i64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Only distinguishes this process's rows from others'; the time is unique enough then.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = now.to_le_bytes();
    }
    (u64::from_le_bytes(bytes) >> 1) as i64
}

fn check_version(row: &Row_) -> Result<(), PgLogError> {
    if row.version > RECORD_VERSION {
        return Err(PgLogError::Replay(format!(
            "the record at position {} has format version {}, newer than this node's {}: upgrade this node (docs/operations.md, upgrades)",
            row.pos, row.version, RECORD_VERSION
        )));
    }
    Ok(())
}

async fn fetch_after(pool: &PgPool, after: u64, limit: i64) -> Result<Vec<Row_>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT pos, at_us, version, origin, origin_seq, payload FROM phoenix_log \
         WHERE pos > $1 ORDER BY pos LIMIT $2",
    )
    .bind(after as i64)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Row_ {
                pos: r.try_get::<i64, _>(0)? as u64,
                at_us: r.try_get(1)?,
                version: r.try_get(2)?,
                origin: r.try_get(3)?,
                origin_seq: r.try_get::<i64, _>(4)? as u64,
                payload: r.try_get(5)?,
            })
        })
        .collect()
}

/// Takes what is queued into groups and appends each in one transaction.
async fn appender_loop(
    pool: PgPool,
    mut rx: tokio::sync::mpsc::Receiver<Append>,
    shared: Arc<Shared>,
) {
    let mut group: Vec<(u64, Vec<u8>, Option<Fence>)> = Vec::new();
    while let Some(first) = rx.recv().await {
        if shared.stopped.load(Ordering::Acquire) {
            let _ = first.done.send(Err(JournalError::Unavailable(
                "this node stopped applying the log; restart required".into(),
            )));
            continue;
        }
        group.clear();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(append) = next.take() {
            let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
            bytes += append.payload.len();
            shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    seq,
                    Pending {
                        attachment: append.attachment,
                        done: append.done,
                    },
                );
            group.push((seq, append.payload, append.fence));
            if bytes < MAX_GROUP_BYTES && group.len() < MAX_GROUP_RECORDS {
                next = rx.try_recv().ok();
            }
        }
        let started = Instant::now();
        match append_group(&pool, shared.origin, &group).await {
            Ok(refused) => {
                shared.reachable.store(true, Ordering::Release);
                shared.append_count.fetch_add(1, Ordering::Relaxed);
                shared
                    .append_us_sum
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
                for seq in refused {
                    if let Some(p) = pending.remove(&seq) {
                        let _ = p.done.send(Err(JournalError::Unavailable(
                            "another node wrote a conflicting change at the same time; retry"
                                .into(),
                        )));
                    }
                }
                drop(pending);
                shared.poke.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %db_error(e), "appending to the log failed");
                shared.reachable.store(false, Ordering::Release);
                // Not committed, or not known to be: the callers are told it failed. Should the
                // commit have happened after all, the fold applies the records from their bytes.
                let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (seq, _, _) in &group {
                    if let Some(p) = pending.remove(seq) {
                        let _ = p.done.send(Err(JournalError::Unavailable(
                            "PostgreSQL did not take the write".into(),
                        )));
                    }
                }
            }
        }
    }
}

/// Appends one group in one transaction; answers the sequence numbers of fenced records it refused.
async fn append_group(
    pool: &PgPool,
    origin: i64,
    group: &[(u64, Vec<u8>, Option<Fence>)],
) -> Result<Vec<u64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let head = sqlx::query(
        "SELECT pos, greatest(at_us, (extract(epoch from clock_timestamp()) * 1000000)::bigint), \
         fence_meta, fence_rewards FROM phoenix_log_head WHERE id = 1 FOR UPDATE",
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut pos = head.try_get::<i64, _>(0)?;
    let at_us: i64 = head.try_get(1)?;
    let mut fence_meta = head.try_get::<i64, _>(2)?;
    let mut fence_rewards = head.try_get::<i64, _>(3)?;
    let mut refused = Vec::new();
    let (mut positions, mut seqs, mut payloads) = (
        Vec::with_capacity(group.len()),
        Vec::with_capacity(group.len()),
        Vec::with_capacity(group.len()),
    );
    for (seq, payload, fence) in group {
        if let Some(f) = fence {
            let current = match f.kind {
                FenceKind::Meta => &mut fence_meta,
                FenceKind::Rewards => &mut fence_rewards,
            };
            if *current as u64 != f.seen {
                refused.push(*seq);
                continue;
            }
            *current = pos + 1;
        }
        pos += 1;
        positions.push(pos);
        seqs.push(*seq as i64);
        payloads.push(payload.as_slice());
    }
    if !positions.is_empty() {
        sqlx::query(
            "INSERT INTO phoenix_log (pos, at_us, version, origin, origin_seq, payload) \
             SELECT p, $2, $3, $4, s, b FROM unnest($1::bigint[], $5::bigint[], $6::bytea[]) AS t(p, s, b)",
        )
        .bind(&positions)
        .bind(at_us)
        .bind(RECORD_VERSION)
        .bind(origin)
        .bind(&seqs)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE phoenix_log_head SET pos = $1, at_us = $2, fence_meta = $3, fence_rewards = $4 \
             WHERE id = 1",
        )
        .bind(pos)
        .bind(at_us)
        .bind(fence_meta)
        .bind(fence_rewards)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(pos.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(refused)
}

/// Turns notifications on the log's channel into wake-ups of the tailer (in a task of its own, so
/// the tailer only ever waits on a `Notify`), reconnecting when the connection is lost.
async fn listener_loop(pool: PgPool, news: Arc<Notify>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %db_error(e), "LISTEN failed; the tailer polls meanwhile");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::debug!(error = %db_error(e), "LISTEN failed; the tailer polls meanwhile");
            tokio::time::sleep(POLL).await;
            continue;
        }
        // Anything committed while there was no listener is found by the tailer's next look.
        news.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => news.notify_one(),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %db_error(e), "the log's listener failed; reconnecting");
                    tokio::time::sleep(POLL).await;
                    break;
                }
            }
        }
    }
}

/// Reads new rows in order and hands them to the applier; woken by notifications, by this node's own
/// commits, and by a poll.
async fn tailer_loop(
    pool: PgPool,
    mut fetched: u64,
    batches: std::sync::mpsc::SyncSender<Vec<Row_>>,
    shared: Arc<Shared>,
) {
    let news = Arc::new(Notify::new());
    let listener = tokio::spawn(listener_loop(pool.clone(), news.clone()));
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _listener = AbortOnDrop(listener);
    loop {
        match fetch_after(&pool, fetched, FETCH_ROWS).await {
            Ok(rows) => {
                shared.reachable.store(true, Ordering::Release);
                let full = rows.len() as i64 == FETCH_ROWS;
                if let Some(last) = rows.last() {
                    if rows.first().is_some_and(|r| r.pos != fetched + 1) {
                        shared.fell_behind.store(true, Ordering::Release);
                        shared.stop(format!(
                            "the log has no record at position {} any more (this node was away longer than the log keeps rows for it): it starts again from the newest snapshot",
                            fetched + 1
                        ));
                        return;
                    }
                    fetched = last.pos;
                    shared.head.fetch_max(last.pos, Ordering::AcqRel);
                    shared.head_at_us.fetch_max(last.at_us, Ordering::AcqRel);
                    // The applier may be busy: wait for room off the async worker.
                    let tx = batches.clone();
                    let sent = tokio::task::spawn_blocking(move || tx.send(rows)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return;
                    }
                }
                if full {
                    continue;
                }
            }
            Err(e) => {
                shared.reachable.store(false, Ordering::Release);
                tracing::warn!(error = %db_error(e), "reading the log failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        // Caught up: wait for news.
        tokio::select! {
            () = news.notified() => {}
            () = shared.poke.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Once a second, whatever else happens: the database clock's lead over this node's, and the head
/// (for the lag metrics and readiness).
async fn clock_loop(pool: PgPool, shared: Arc<Shared>) {
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // The connection first, so the round trip timed is the query's alone.
        let Ok(mut conn) = pool.acquire().await else {
            shared.reachable.store(false, Ordering::Release);
            continue;
        };
        let before = local_us();
        match read_head_and_clock(&mut *conn).await {
            Ok((head, db_now)) => {
                let after = local_us();
                shared
                    .clock_offset_us
                    .store(db_now - (before + after) / 2, Ordering::Release);
                shared.reachable.store(true, Ordering::Release);
                shared.head.fetch_max(head.pos, Ordering::AcqRel);
                shared.head_at_us.fetch_max(head.at_us, Ordering::AcqRel);
            }
            Err(_) => {
                shared.reachable.store(false, Ordering::Release);
                continue;
            }
        }
        // Where this node is, so the log's rows it still needs are kept (see `pgsnap::prune`); a node
        // that stopped folding, or is closing, needs none.
        if shared.stopped.load(Ordering::Acquire) || shared.leaving.load(Ordering::Acquire) {
            continue;
        }
        let applied = *shared.applied.borrow();
        let _ = crate::pgsnap::report_position(&mut *conn, shared.origin, applied).await;
    }
}

/// Applies fetched rows in order on its own thread and answers this node's appends.
fn applier_loop(
    batches: std::sync::mpsc::Receiver<Vec<Row_>>,
    shared: Arc<Shared>,
    mut apply: ApplyFn,
) {
    while let Ok(rows) = batches.recv() {
        if shared.stopped.load(Ordering::Acquire) {
            continue;
        }
        if let Some(row) = rows.iter().find(|r| r.version > RECORD_VERSION) {
            shared.stop(format!(
                "the record at position {} has format version {}, newer than this node's {}: upgrade this node",
                row.pos, row.version, RECORD_VERSION
            ));
            continue;
        }
        let mut answers = Vec::new();
        let mut records: Vec<Durable<'_>> = {
            let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            rows.iter()
                .map(|row| {
                    let mut attachment = None;
                    if row.origin == shared.origin
                        && let Some(p) = pending.remove(&row.origin_seq)
                    {
                        attachment = p.attachment;
                        answers.push((row.pos, p.done));
                    }
                    Durable {
                        offset: row.pos - 1,
                        end: row.pos,
                        at_us: Some(row.at_us),
                        payload: &row.payload,
                        attachment,
                    }
                })
                .collect()
        };
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(&mut records)));
        drop(records);
        let failed = match applied {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("a record of the log could not be applied: {e}")),
            Err(_) => Some("applying a record of the log panicked".to_owned()),
        };
        if let Some(why) = failed {
            shared.stop(why);
            for (_, done) in answers {
                let _ = done.send(Err(JournalError::Unavailable(
                    "applying the log failed; restart required".into(),
                )));
            }
            continue;
        }
        if let Some(last) = rows.last() {
            shared.applied_at_us.store(last.at_us, Ordering::Release);
            shared.applied.send_replace(last.pos);
        }
        for (pos, done) in answers {
            let _ = done.send(Ok(pos));
        }
    }
}
