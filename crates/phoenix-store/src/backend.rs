//! Choosing, opening and running a backend from the configuration. The binary hands over a
//! [`StoreConfig`] and gets a [`RunningStore`]: the [`Store`] the server serves from, with the
//! backend's own background work (snapshots today; log tailing in a cluster) running until
//! [`RunningStore::close`]. Nothing outside this crate names a backend.

use crate::embedded::{EmbeddedOptions, EmbeddedStore, OpenError};
use crate::seal::{MasterKey, MasterKeyError};
use crate::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Which backend, with what it needs. `Debug` leaves the URLs out (they may hold passwords).
#[derive(Clone)]
pub enum BackendConfig {
    /// One process; its whole state in `data_dir`. Without a `master_key`, the key is read from (or
    /// created in) the data dir.
    Embedded {
        data_dir: PathBuf,
        master_key: Option<MasterKey>,
        options: EmbeddedOptions,
    },
    /// A node of a cluster (SPEC §9): the log and everything durable in PostgreSQL, the shared hot
    /// state in Redis. The node keeps on local disk only what it derives from the log (in a
    /// temporary directory removed when it closes).
    Cluster {
        database_url: String,
        redis_url: String,
        /// PEM certificates Redis's TLS certificate is checked against (else the bundled roots).
        redis_ca: Option<Vec<u8>>,
        master_key: MasterKey,
        options: EmbeddedOptions,
    },
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendConfig::Embedded { data_dir, .. } => f
                .debug_struct("Embedded")
                .field("data_dir", data_dir)
                .finish_non_exhaustive(),
            BackendConfig::Cluster { .. } => f.debug_struct("Cluster").finish_non_exhaustive(),
        }
    }
}

/// What [`open`] needs.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: BackendConfig,
    /// How often the state is snapshotted when anything changed (it is also snapshotted after every
    /// [`EVENTS_PER_SNAPSHOT`] events).
    pub snapshot_interval: Duration,
}

/// Events after which a snapshot is taken whatever the interval.
pub const EVENTS_PER_SNAPSHOT: u64 = 1_000_000;

/// Why a store could not be started (one line each, naming what to fix).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("PHOENIX_DATA_DIR: cannot create {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("PHOENIX_MASTER_KEY: {0}")]
    MasterKey(#[from] MasterKeyError),
    #[error("{0}")]
    Open(#[from] OpenError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the store could not be opened: {0}")]
    Task(String),
    #[error("{0}")]
    Cluster(String),
}

/// An open store and the background work it runs.
pub struct RunningStore {
    store: Arc<dyn Store>,
    description: String,
    stop: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
    closer: Closer,
}

/// What [`RunningStore::close`] finishes with, per backend.
enum Closer {
    Embedded(Arc<EmbeddedStore>),
    /// The node's scratch directory, removed once the store is gone.
    Cluster(Arc<EmbeddedStore>, PathBuf),
}

impl RunningStore {
    /// The store to serve from.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// One line saying which backend this is and where its state lives, for the start-up log.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Resolves once a cluster node has fallen behind the log's retained rows (it was away, e.g. cut
    /// off from PostgreSQL, for longer than rows are kept for it) and can only come back by opening the
    /// store again, which loads the newest snapshot; never on one node. Holds no reference that keeps
    /// the store open.
    pub fn fell_behind(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let store = match &self.closer {
            Closer::Cluster(store, _) => Some(Arc::downgrade(store)),
            Closer::Embedded(_) => None,
        };
        async move {
            let Some(store) = store else {
                return std::future::pending().await;
            };
            loop {
                match store.upgrade() {
                    Some(store) if store.fell_behind() => return,
                    Some(_) => {}
                    None => return std::future::pending().await,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Stops the background work and leaves the state so the next start is quick (a last
    /// snapshot). Correctness never depends on it: every acknowledged write is already durable.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.background {
            let _ = task.await;
        }
        match self.closer {
            Closer::Embedded(store) => {
                if store.events_since_snapshot() > 0
                    && let Err(e) = store.checkpoint().await
                {
                    tracing::warn!(error = %e, "final snapshot failed; the next start replays more of the log");
                }
            }
            Closer::Cluster(store, scratch) => {
                // The last handles (the server's tasks have stopped): the log's tasks end with it
                // (joining its threads, off the async workers).
                drop(self.store);
                store.leave_cluster().await;
                let gone = Arc::downgrade(&store);
                let _ = tokio::task::spawn_blocking(move || drop(store)).await;
                let remove = move || {
                    let _ = std::fs::remove_dir_all(scratch);
                };
                if gone.strong_count() == 0 {
                    let _ = tokio::task::spawn_blocking(remove).await;
                } else {
                    // A request that outlived the drain still holds it: its files go once it lets go
                    // (or, if the process ends first, at the next start's sweep).
                    tracing::warn!(
                        "a request still holds this node's store; its files are removed when it ends"
                    );
                    tokio::spawn(async move {
                        while gone.strong_count() > 0 {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        let _ = tokio::task::spawn_blocking(remove).await;
                    });
                }
            }
        }
    }
}

/// Opens the configured backend (replaying its log) and starts its background work.
pub async fn open(config: StoreConfig) -> Result<RunningStore, StartError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    match config.backend {
        BackendConfig::Cluster {
            database_url,
            redis_url,
            redis_ca,
            master_key,
            options,
        } => {
            open_cluster(
                database_url,
                (redis_url, redis_ca),
                master_key,
                options,
                config.snapshot_interval,
                stop,
            )
            .await
        }
        BackendConfig::Embedded {
            data_dir,
            master_key,
            options,
        } => {
            let dir = data_dir.clone();
            // Opening replays the log: blocking file work, kept off the async workers.
            let store =
                tokio::task::spawn_blocking(move || -> Result<EmbeddedStore, StartError> {
                    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                    let key = match master_key {
                        Some(k) => k,
                        None => MasterKey::load_or_create(&dir)?,
                    };
                    Ok(EmbeddedStore::open_with(&dir, key, options)?)
                })
                .await
                .map_err(|e| StartError::Task(e.to_string()))??;
            store.initialize().await?;
            let store = Arc::new(store);
            let snapshots = tokio::spawn(take_snapshots(
                store.clone(),
                config.snapshot_interval,
                stopped,
            ));
            Ok(RunningStore {
                store: store.clone(),
                description: format!("embedded store in {}", data_dir.display()),
                stop,
                background: vec![snapshots],
                closer: Closer::Embedded(store),
            })
        }
    }
}

/// Opens a cluster node: Redis and PostgreSQL reachable, the schema migrated, the log replayed.
async fn open_cluster(
    database_url: String,
    (redis_url, redis_ca): (String, Option<Vec<u8>>),
    master_key: MasterKey,
    options: EmbeddedOptions,
    snapshot_interval: Duration,
    stop: tokio::sync::watch::Sender<bool>,
) -> Result<RunningStore, StartError> {
    tokio::task::spawn_blocking(remove_stale_scratch)
        .await
        .map_err(|e| StartError::Task(e.to_string()))?;
    let scratch = std::env::temp_dir().join(format!(
        "phoenix-node-{}-{}",
        std::process::id(),
        crate::seal::random_hex::<4>()
    ));
    let opened = open_cluster_in(
        scratch.clone(),
        database_url,
        (redis_url, redis_ca),
        master_key,
        options,
    )
    .await;
    let store = match opened {
        Ok(store) => Arc::new(store),
        Err(e) => {
            // Nothing in it is needed, and a process that starts again (after falling behind) must
            // not leave a snapshot's copy behind at every attempt.
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(scratch)).await;
            return Err(e);
        }
    };
    let snapshots = tokio::spawn(take_cluster_snapshots(
        store.clone(),
        snapshot_interval,
        stop.subscribe(),
    ));
    Ok(RunningStore {
        store: store.clone(),
        description: "cluster node (PostgreSQL log, Redis shared state)".into(),
        stop,
        background: vec![snapshots],
        closer: Closer::Cluster(store, scratch),
    })
}

/// The store of a cluster node in `scratch` (its files are all there).
async fn open_cluster_in(
    scratch: PathBuf,
    database_url: String,
    (redis_url, redis_ca): (String, Option<Vec<u8>>),
    master_key: MasterKey,
    options: EmbeddedOptions,
) -> Result<EmbeddedStore, StartError> {
    let dir = scratch;
    let log = crate::pglog::PgLogOptions {
        url: database_url,
        connections: 8,
    };
    let store = tokio::task::spawn_blocking(move || {
        crate::journal::create_private_dir(&dir).map_err(|source| StartError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        EmbeddedStore::open_cluster(&dir.join("node"), master_key, options, log)
            .map_err(|e| StartError::Cluster(e.to_string()))
    })
    .await
    .map_err(|e| StartError::Task(e.to_string()))??;
    let pool = store
        .cluster_pool()
        .ok_or_else(|| StartError::Cluster("the cluster log has no pool".into()))?;
    let shared = crate::redis_shared::RedisShared::connect_tls(&redis_url, redis_ca, pool)
        .await
        .map_err(StartError::Cluster)?;
    let store = store.with_shared(Arc::new(shared));
    store.initialize().await?;
    Ok(store)
}

/// Removes the scratch directories of nodes that are gone (killed before they could remove their
/// own): those whose store's lock file nobody holds. They hold nothing anyone needs.
fn remove_stale_scratch() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.starts_with("phoenix-node-"))
        {
            continue;
        }
        // A node that is still running (its process id is in the name) is never stale, whatever
        // its directory holds yet (it may be loading a snapshot before it takes its lock). This
        // process's own (an earlier start that failed, or a node killed in a container that is pid 1
        // again) are judged by their lock: it opens one store at a time.
        let own = std::process::id().to_string();
        let running = name
            .to_str()
            .and_then(|n| n.strip_prefix("phoenix-node-"))
            .and_then(|rest| rest.split('-').next())
            .is_some_and(|pid| {
                pid != own && Path::new("/proc").is_dir() && Path::new("/proc").join(pid).exists()
            });
        if running {
            continue;
        }
        let lock = entry.path().join("node").join("LOCK");
        let stale = match std::fs::OpenOptions::new().write(true).open(&lock) {
            Ok(file) => file.try_lock().is_ok(),
            // Never got as far as opening a store (or is just about to: give it a minute).
            Err(e) => {
                e.kind() == std::io::ErrorKind::NotFound
                    && entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(60))
            }
        };
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Snapshots the store every `interval` when anything changed, and after every
/// [`EVENTS_PER_SNAPSHOT`] events, until `stopped` turns true.
async fn take_snapshots(
    store: Arc<EmbeddedStore>,
    interval: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let tick = Duration::from_secs(5).min(interval);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = tokio::time::sleep(tick) => {}
        }
        let pending = store.events_since_snapshot();
        if pending >= EVENTS_PER_SNAPSHOT || (pending > 0 && last.elapsed() >= interval) {
            if let Err(e) = store.checkpoint().await {
                tracing::warn!(error = %e, "snapshot failed; will retry");
            }
            last = tokio::time::Instant::now();
        }
    }
}

/// Log positions after the cluster's newest snapshot beyond which a node stores a new one (a batch
/// of events is one position): what a starting node replays stays around a few seconds' work.
pub const RECORDS_PER_SNAPSHOT: u64 = 100_000;

/// A cluster node's part in the cluster's snapshots: every few seconds it looks whether the newest
/// is due (see [`EmbeddedStore::checkpoint_cluster`]); the node holding the lease stores one.
async fn take_cluster_snapshots(
    store: Arc<EmbeddedStore>,
    interval: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let tick = Duration::from_secs(5)
        .min(interval)
        .max(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = tokio::time::sleep(tick) => {}
        }
        if let Err(e) = store
            .checkpoint_cluster(RECORDS_PER_SNAPSHOT, interval)
            .await
        {
            tracing::warn!(error = %e, "cluster snapshot failed; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_processs_own_scratch_dirs_are_judged_by_their_lock() {
        let dir = |tag: &str| {
            std::env::temp_dir().join(format!(
                "phoenix-node-{}-test{tag}{}",
                std::process::id(),
                crate::seal::random_hex::<4>()
            ))
        };
        // Left by an earlier start of this process (or a killed node that was pid 1 too): no one
        // holds its lock.
        let left = dir("left");
        std::fs::create_dir_all(left.join("node")).unwrap();
        std::fs::write(left.join("node").join("LOCK"), b"").unwrap();
        // A store this process has open: its lock is held.
        let open = dir("open");
        std::fs::create_dir_all(open.join("node")).unwrap();
        let held = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(open.join("node").join("LOCK"))
            .unwrap();
        held.try_lock().unwrap();
        remove_stale_scratch();
        assert!(!left.exists(), "a directory nobody's lock holds is removed");
        assert!(open.exists(), "a locked one stays");
        drop(held);
        std::fs::remove_dir_all(open).unwrap();
    }
}
