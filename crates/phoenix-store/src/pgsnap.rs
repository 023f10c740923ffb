//! A cluster's snapshots, kept in PostgreSQL, so a new or restarted node loads the state at a log
//! position and replays only the log after it, and the log's rows behind the oldest snapshot kept
//! can be removed. They are also where a cluster keeps its cold state (ended windows' standings,
//! the idempotency index's frozen pieces, the rewards ledger): a node's disk holds a copy, PostgreSQL
//! the original.
//!
//! A snapshot is one node's state files at position `pos`: the folded state (`snapshot-*.bin`), a
//! page-for-page copy of the rewards ledger, the idempotency pieces and the cold windows' files. Each
//! file is cut into chunks of [`CHUNK_BYTES`] (a PostgreSQL value may hold at most 1 GB) stored once
//! by their SHA-256 in `phoenix_chunks`; a snapshot is a manifest naming its files' chunks. What has
//! not changed since the last snapshot (every ended window, every piece, the ledger's untouched
//! pages) is not stored again, so a snapshot costs about what changed, not what the cluster holds.
//! Every chunk is checked against its hash when it is loaded.
//!
//! One node writes at a time, under the `snapshot` lease (a row of `phoenix_leases` with an expiry in
//! the database's clock): a node that dies while writing leaves an incomplete snapshot that nobody
//! loads and the next writer removes, and a writer whose lease ran out cannot mark its snapshot
//! complete. [`SNAPSHOTS_KEPT`] complete snapshots are kept; chunks no kept snapshot names are
//! removed, and log rows only behind the oldest snapshot kept, so a node loading either finds every
//! row after it.

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Bytes per stored chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Complete snapshots kept; the log is kept from the oldest of them.
pub const SNAPSHOTS_KEPT: i64 = 2;
/// How long a writer holds the snapshot lease: a snapshot must be stored within it.
pub const LEASE: Duration = Duration::from_secs(120);
/// The lease of the node that writes snapshots.
pub const SNAPSHOT_LEASE: &str = "snapshot";
/// The lease of the node that appends window-end ticks (renewed by its holder at every tick).
pub const TICK_LEASE: &str = "tick";
/// How long the tick lease lasts: a node that died holding it delays window ends by at most this.
pub const TICK_LEASE_LENGTH: Duration = Duration::from_secs(15);
/// The manifest format this build writes and reads.
const FORMAT: i16 = 1;
/// Log rows removed per statement (short transactions).
const DELETE_ROWS: i64 = 50_000;

pub(crate) const MIGRATION_3: &str = "
CREATE TABLE IF NOT EXISTS phoenix_snapshots (
    id BIGSERIAL PRIMARY KEY,
    pos BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
    format SMALLINT NOT NULL,
    node BIGINT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0,
    new_bytes BIGINT NOT NULL DEFAULT 0,
    manifest BYTEA,
    complete BOOLEAN NOT NULL DEFAULT FALSE,
    started_us BIGINT NOT NULL,
    completed_us BIGINT
);
CREATE TABLE IF NOT EXISTS phoenix_chunks (
    sha256 BYTEA PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS phoenix_snapshot_refs (
    snapshot BIGINT NOT NULL REFERENCES phoenix_snapshots (id) ON DELETE CASCADE,
    sha256 BYTEA NOT NULL,
    PRIMARY KEY (snapshot, sha256)
);
CREATE INDEX IF NOT EXISTS phoenix_snapshot_refs_sha256 ON phoenix_snapshot_refs (sha256);
CREATE TABLE IF NOT EXISTS phoenix_nodes (
    node BIGINT PRIMARY KEY,
    applied BIGINT NOT NULL,
    seen_us BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS phoenix_cluster (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS phoenix_leases (
    name TEXT PRIMARY KEY,
    node BIGINT NOT NULL,
    until_us BIGINT NOT NULL
);
";

/// How often a node reports the position it has applied (while it replays, and once a second after).
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// A node that has not reported for this long is gone: the log's rows it needed may be removed (if
/// it comes back, it finds a gap, stops folding and says so; a restart loads a snapshot).
pub const NODE_GONE: Duration = Duration::from_secs(300);

/// Records that `node` has applied the log up to `applied` (or is about to replay after it).
pub async fn report_position(
    db: impl sqlx::PgExecutor<'_>,
    node: i64,
    applied: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO phoenix_nodes (node, applied, seen_us)          VALUES ($1, $2, (extract(epoch from clock_timestamp()) * 1000000)::bigint)          ON CONFLICT (node) DO UPDATE SET applied = EXCLUDED.applied, seen_us = EXCLUDED.seen_us",
    )
    .bind(node)
    .bind(applied as i64)
    .execute(db)
    .await?;
    Ok(())
}

/// The newest complete snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Newest {
    pub id: i64,
    pub pos: u64,
    /// When it was completed (the database's clock, µs).
    pub completed_us: i64,
}

/// The newest complete snapshot, if any.
pub async fn newest(pool: &PgPool) -> Result<Option<Newest>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, pos, completed_us FROM phoenix_snapshots \
         WHERE complete ORDER BY pos DESC, id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Newest {
            id: r.try_get(0)?,
            pos: r.try_get::<i64, _>(1)? as u64,
            completed_us: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
        })
    })
    .transpose()
}

/// The database's clock now (µs).
pub async fn db_now_us(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint")
        .fetch_one(pool)
        .await
}

/// Takes (or renews) the lease `name` for `node` for `length`; false while another node holds it.
/// Leases: [`SNAPSHOT_LEASE`] (one snapshot writer), [`TICK_LEASE`] (one node appends window-end
/// ticks).
pub async fn take_lease(
    pool: &PgPool,
    name: &str,
    node: i64,
    length: Duration,
) -> Result<bool, sqlx::Error> {
    let taken: Option<i64> = sqlx::query_scalar(
        "INSERT INTO phoenix_leases (name, node, until_us) \
         VALUES ($1, $2, (extract(epoch from clock_timestamp()) * 1000000)::bigint + $3) \
         ON CONFLICT (name) DO UPDATE SET node = EXCLUDED.node, until_us = EXCLUDED.until_us \
         WHERE phoenix_leases.until_us < (extract(epoch from clock_timestamp()) * 1000000)::bigint \
            OR phoenix_leases.node = EXCLUDED.node \
         RETURNING node",
    )
    .bind(name)
    .bind(node)
    .bind(length.as_micros() as i64)
    .fetch_optional(pool)
    .await?;
    Ok(taken == Some(node))
}

/// Gives the lease `name` up (if `node` still holds it).
pub async fn release_lease(pool: &PgPool, name: &str, node: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM phoenix_leases WHERE name = $1 AND node = $2")
        .bind(name)
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

/// What storing a snapshot wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    /// The snapshot's files.
    pub bytes: u64,
    /// What was not stored already (chunks no earlier snapshot had).
    pub new_bytes: u64,
}

/// Stores every file under `dir` (named by its path below it) as the snapshot at log position
/// `pos`, under the lease `node` holds. The lease is checked when the snapshot is marked complete: a
/// writer that lost it leaves an incomplete snapshot.
pub async fn store(
    pool: &PgPool,
    node: i64,
    pos: u64,
    dir: &Path,
    known_files: &mut KnownFiles,
) -> Result<Stored, String> {
    let db = |e: sqlx::Error| e.to_string();
    // The log's time at the snapshot's position: its time high-water mark.
    let at_us: i64 = sqlx::query_scalar("SELECT at_us FROM phoenix_log WHERE pos = $1")
        .bind(pos as i64)
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .unwrap_or(0);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO phoenix_snapshots (pos, at_us, format, node, started_us) \
         VALUES ($1, $2, $3, $4, (extract(epoch from clock_timestamp()) * 1000000)::bigint) \
         RETURNING id",
    )
    .bind(pos as i64)
    .bind(at_us)
    .bind(FORMAT)
    .bind(node)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    let stored = async {
        let files = {
            let dir = dir.to_owned();
            tokio::task::spawn_blocking(move || {
                let mut files = Vec::new();
                list_files(&dir, &dir, &mut files).map(|()| files)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        };
        let mut manifest = Vec::new();
        let (mut bytes, mut new_bytes) = (0u64, 0u64);
        let mut renewed = std::time::Instant::now();
        let mut seen = KnownFiles::new();
        for name in files {
            let mut file = tokio::fs::File::open(dir.join(&name))
                .await
                .map_err(|e| e.to_string())?;
            let meta = file.metadata().await.map_err(|e| e.to_string())?;
            let identity = (meta.len(), meta.modified().ok());
            let mut shas = Vec::new();
            let mut size = 0u64;
            // An immutable file this node stored before (the same name, length and time): its
            // chunks are named again, not read, hashed and looked up again.
            let cached = known_files
                .get(&name)
                .filter(|(id, _)| *id == identity && is_immutable(&name))
                .map(|(_, shas)| shas.clone());
            if let Some(cached) = cached {
                sqlx::query(
                    "INSERT INTO phoenix_snapshot_refs (snapshot, sha256) \
                     SELECT $1, unnest($2::bytea[]) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(&cached)
                .execute(pool)
                .await
                .map_err(db)?;
                size = identity.0;
                shas = cached;
            }
            while shas.is_empty() || size < identity.0 {
                let chunk = read_chunk(&mut file).await?;
                if chunk.is_empty() {
                    break;
                }
                size += chunk.len() as u64;
                if renewed.elapsed() >= REPORT_EVERY {
                    // The lease is this writer's for as long as it keeps storing.
                    if !take_lease(pool, SNAPSHOT_LEASE, node, LEASE).await.map_err(db)? {
                        return Err("the snapshot lease was lost while storing".to_owned());
                    }
                    renewed = std::time::Instant::now();
                }
                let sha = Sha256::digest(&chunk).to_vec();
                // Named first: from then on no clean-up removes the chunk (see `prune`).
                sqlx::query(
                    "INSERT INTO phoenix_snapshot_refs (snapshot, sha256) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(&sha)
                .execute(pool)
                .await
                .map_err(db)?;
                let known: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM phoenix_chunks WHERE sha256 = $1")
                        .bind(&sha)
                        .fetch_optional(pool)
                        .await
                        .map_err(db)?;
                if known.is_none() {
                    new_bytes += chunk.len() as u64;
                    sqlx::query(
                        "INSERT INTO phoenix_chunks (sha256, data) VALUES ($1, $2) \
                         ON CONFLICT (sha256) DO NOTHING",
                    )
                    .bind(&sha)
                    .bind(chunk)
                    .execute(pool)
                    .await
                    .map_err(db)?;
                }
                shas.push(sha);
            }
            bytes += size;
            if is_immutable(&name) {
                seen.insert(name.clone(), (identity, shas.clone()));
            }
            let name = name.to_string_lossy();
            manifest.extend_from_slice(&(name.len() as u16).to_le_bytes());
            manifest.extend_from_slice(name.as_bytes());
            manifest.extend_from_slice(&size.to_le_bytes());
            manifest.extend_from_slice(&(shas.len() as u32).to_le_bytes());
            for sha in shas {
                manifest.extend_from_slice(&sha);
            }
        }
        manifest.extend_from_slice(&0u16.to_le_bytes());
        // Only what this snapshot holds is remembered (removed files are forgotten).
        *known_files = seen;
        let done = sqlx::query(
            "UPDATE phoenix_snapshots SET complete = TRUE, bytes = $2, new_bytes = $3, manifest = $4, \
             completed_us = (extract(epoch from clock_timestamp()) * 1000000)::bigint \
             WHERE id = $1 AND EXISTS (SELECT 1 FROM phoenix_leases WHERE name = $5 AND node = $6 \
                 AND until_us > (extract(epoch from clock_timestamp()) * 1000000)::bigint) \
             AND NOT EXISTS (SELECT 1 FROM phoenix_snapshot_refs r WHERE r.snapshot = $1 \
                 AND NOT EXISTS (SELECT 1 FROM phoenix_chunks c WHERE c.sha256 = r.sha256))",
        )
        .bind(id)
        .bind(bytes as i64)
        .bind(new_bytes as i64)
        .bind(manifest)
        .bind(SNAPSHOT_LEASE)
        .bind(node)
        .execute(pool)
        .await
        .map_err(db)?;
        if done.rows_affected() != 1 {
            return Err(
                "the snapshot lease ran out (or a chunk went missing) before the snapshot was stored"
                    .to_owned(),
            );
        }
        Ok(Stored {
            id,
            bytes,
            new_bytes,
        })
    }
    .await;
    if stored.is_err() {
        let _ = sqlx::query("DELETE FROM phoenix_snapshots WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await;
    }
    stored
}

/// What a snapshot writer knows of the immutable files it stored: by name, their identity (length,
/// modification time) and their chunks' hashes. Bounded by the files of one snapshot.
pub type KnownFiles =
    std::collections::HashMap<PathBuf, ((u64, Option<std::time::SystemTime>), Vec<Vec<u8>>)>;

/// Idempotency pieces and cold windows are written once (renamed into place) and never changed.
fn is_immutable(name: &Path) -> bool {
    name.starts_with("dedupe") && name.extension().is_some_and(|e| e == "keys")
        || name.starts_with("cold") && name.extension().is_some_and(|e| e == "win")
}

async fn read_chunk(file: &mut tokio::fs::File) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut filled = 0;
    while filled < chunk.len() {
        let read = file
            .read(&mut chunk[filled..])
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    chunk.truncate(filled);
    Ok(chunk)
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_owned());
        }
    }
    Ok(())
}

/// Removes what is no longer needed, under the lease: snapshots beyond the newest
/// [`SNAPSHOTS_KEPT`] complete ones (and incomplete ones of writers that are gone), the chunks no
/// snapshot names, then the log's rows up to the oldest snapshot kept. Answers the log rows removed.
pub async fn prune(pool: &PgPool, node: i64) -> Result<u64, sqlx::Error> {
    let kept: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, pos FROM phoenix_snapshots WHERE complete ORDER BY pos DESC, id DESC LIMIT $1",
    )
    .bind(SNAPSHOTS_KEPT)
    .fetch_all(pool)
    .await?;
    let Some(&(oldest_id, oldest_pos)) = kept.last() else {
        return Ok(0);
    };
    // Incomplete snapshots are being written under the lease (by this node, which is not writing
    // one now) or were abandoned by a writer that lost it.
    sqlx::query(
        "DELETE FROM phoenix_snapshots WHERE (complete AND (pos < $1 OR (pos = $1 AND id < $2))) \
         OR (NOT complete AND NOT EXISTS (SELECT 1 FROM phoenix_leases WHERE name = $3 AND node <> $4 \
             AND until_us > (extract(epoch from clock_timestamp()) * 1000000)::bigint))",
    )
    .bind(oldest_pos)
    .bind(oldest_id)
    .bind(SNAPSHOT_LEASE)
    .bind(node)
    .execute(pool)
    .await?;
    sqlx::query(
        "DELETE FROM phoenix_chunks c WHERE NOT EXISTS \
         (SELECT 1 FROM phoenix_snapshot_refs r WHERE r.sha256 = c.sha256)",
    )
    .execute(pool)
    .await?;
    if kept.len() < SNAPSHOTS_KEPT as usize {
        // One snapshot yet: a node that started replaying the log from its beginning before it
        // existed may still need every row.
        return Ok(0);
    }
    // Nor a row a node that is still there has not applied (one replaying, one loading a snapshot,
    // one that lags); nodes gone for long are forgotten.
    let now_us = db_now_us(pool).await?;
    sqlx::query("DELETE FROM phoenix_nodes WHERE seen_us < $1")
        .bind(now_us - 24 * 3_600_000_000)
        .execute(pool)
        .await?;
    let slowest: Option<i64> =
        sqlx::query_scalar("SELECT min(applied) FROM phoenix_nodes WHERE seen_us >= $1")
            .bind(now_us - NODE_GONE.as_micros() as i64)
            .fetch_one(pool)
            .await?;
    let upto = slowest.map_or(oldest_pos, |s| s.min(oldest_pos));
    let mut removed = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM phoenix_log WHERE pos IN \
             (SELECT pos FROM phoenix_log WHERE pos <= $1 ORDER BY pos LIMIT $2)",
        )
        .bind(upto)
        .bind(DELETE_ROWS)
        .execute(pool)
        .await?
        .rows_affected();
        removed += done;
        if done < DELETE_ROWS as u64 {
            return Ok(removed);
        }
    }
}

/// Loads the newest complete snapshot into `dest` (which must be empty); answers its position, or
/// `None` when the cluster has none yet. Runs its own runtime: call it off the async workers.
pub fn load_newest(
    url: &str,
    dest: &Path,
    dedupe_horizon: jiff::SignedDuration,
) -> Result<Option<u64>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let options = crate::pglog::connect_options(url).map_err(|e| e.to_string())?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| e.to_string())?;
        crate::pglog::migrate(&pool)
            .await
            .map_err(|e| e.to_string())?;
        agree_on_horizon(&pool, dedupe_horizon).await?;
        // The newest may be removed while it loads (two newer ones completed meanwhile): again,
        // from an empty directory.
        let mut last_error = String::new();
        for _ in 0..3 {
            let Some(newest) = newest(&pool).await.map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            // Registered as a node at the snapshot's position while it loads, so the log's rows after
            // it stay (the node's own registration takes over once its log opens).
            let loader = i64::from_le_bytes(crate::seal::random_bytes::<8>());
            report_position(&pool, loader, newest.pos)
                .await
                .map_err(|e| e.to_string())?;
            match fetch(&pool, newest.id, dest, loader, newest.pos).await {
                Ok(()) => return Ok(Some(newest.pos)),
                Err(e) => last_error = e,
            }
            let dest = dest.to_owned();
            tokio::task::spawn_blocking(move || empty_dir(&dest))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        Err(format!("loading the newest snapshot: {last_error}"))
    })
}

/// Every node must expire event ids after the same horizon (a retry near it would otherwise be a
/// duplicate on one node and new on another): the first node to start records its
/// `PHOENIX_DEDUPE_HORIZON`; a node with another one refuses to start.
async fn agree_on_horizon(pool: &PgPool, horizon: jiff::SignedDuration) -> Result<(), String> {
    let ours = horizon.as_micros().to_string();
    sqlx::query(
        "INSERT INTO phoenix_cluster (key, value) VALUES ('dedupe_horizon_us', $1) \
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(&ours)
    .execute(pool)
    .await
    .map_err(|e| e.to_string())?;
    let theirs: String =
        sqlx::query_scalar("SELECT value FROM phoenix_cluster WHERE key = 'dedupe_horizon_us'")
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?;
    if theirs == ours {
        return Ok(());
    }
    let shown = theirs
        .parse::<i64>()
        .map(|us| format!("{:#}", jiff::SignedDuration::from_micros(us)))
        .unwrap_or(theirs);
    Err(format!(
        "PHOENIX_DEDUPE_HORIZON is {horizon:#} on this node but {shown} in the cluster: every node must use the same (see docs/operations.md)"
    ))
}

fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// One file of a manifest.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    name: PathBuf,
    size: u64,
    chunks: Vec<[u8; 32]>,
}

/// Reads a manifest; a name that would leave the directory is refused.
fn parse_manifest(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let bad = |what: &str| format!("the snapshot's manifest is malformed: {what}");
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let part = bytes.get(at..at + n).ok_or_else(|| bad("truncated"))?;
        at += n;
        Ok(part)
    };
    let mut entries = Vec::new();
    loop {
        let name_len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| bad("length"))?) as usize;
        if name_len == 0 {
            return Ok(entries);
        }
        let name = std::str::from_utf8(take(name_len)?).map_err(|_| bad("a name is not UTF-8"))?;
        let name = PathBuf::from(name);
        if !name.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad("a name leaves the directory"));
        }
        let size = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad("size"))?);
        let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("count"))?) as usize;
        if (count as u64).saturating_mul(CHUNK_BYTES as u64) < size {
            return Err(bad("a file is larger than its chunks"));
        }
        let mut chunks = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            chunks.push(take(32)?.try_into().map_err(|_| bad("hash"))?);
        }
        entries.push(Entry { name, size, chunks });
    }
}

/// Writes a snapshot's files under `dest`, each chunk checked against its hash.
async fn fetch(pool: &PgPool, id: i64, dest: &Path, loader: i64, pos: u64) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let db = |e: sqlx::Error| e.to_string();
    let row =
        sqlx::query("SELECT format, manifest FROM phoenix_snapshots WHERE id = $1 AND complete")
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(db)?
            .ok_or("the snapshot was removed")?;
    let format: i16 = row.try_get(0).map_err(db)?;
    if format > FORMAT {
        return Err(format!(
            "the snapshot has format {format}, newer than this node's {FORMAT}: upgrade this node"
        ));
    }
    let manifest: Vec<u8> = row.try_get(1).map_err(db)?;
    let mut reported = std::time::Instant::now();
    for entry in parse_manifest(&manifest)? {
        let target = dest.join(&entry.name);
        if let Some(parent) = target.parent() {
            crate::journal::create_private_dir(parent).map_err(|e| e.to_string())?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .await
            .map_err(|e| format!("{}: {e}", entry.name.display()))?;
        let mut written = 0u64;
        for sha in &entry.chunks {
            if reported.elapsed() >= REPORT_EVERY {
                report_position(pool, loader, pos).await.map_err(db)?;
                reported = std::time::Instant::now();
            }
            let data: Vec<u8> =
                sqlx::query_scalar("SELECT data FROM phoenix_chunks WHERE sha256 = $1")
                    .bind(sha.as_slice())
                    .fetch_optional(pool)
                    .await
                    .map_err(db)?
                    .ok_or("a chunk of the snapshot was removed")?;
            if Sha256::digest(&data).as_slice() != sha.as_slice() {
                return Err(format!(
                    "a chunk of {} does not match its hash",
                    entry.name.display()
                ));
            }
            written += data.len() as u64;
            file.write_all(&data).await.map_err(|e| e.to_string())?;
        }
        if written != entry.size {
            return Err(format!("{} has the wrong length", entry.name.display()));
        }
        file.flush().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &[u8], size: u64, chunks: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(name.len() as u16).to_le_bytes());
        m.extend_from_slice(name);
        m.extend_from_slice(&size.to_le_bytes());
        m.extend_from_slice(&chunks.to_le_bytes());
        for _ in 0..chunks {
            m.extend_from_slice(&[7u8; 32]);
        }
        m.extend_from_slice(&0u16.to_le_bytes());
        m
    }

    #[test]
    fn a_manifest_reads_back_its_files() {
        let entries = parse_manifest(&manifest(b"cold/7/2026-12-01.win", 10, 1)).unwrap();
        assert_eq!(
            entries,
            vec![Entry {
                name: "cold/7/2026-12-01.win".into(),
                size: 10,
                chunks: vec![[7u8; 32]],
            }]
        );
    }

    #[test]
    fn a_manifest_naming_a_path_outside_or_lying_about_sizes_is_refused() {
        for bad in [&b"../escape"[..], b"/etc/passwd", b"a/../../b"] {
            let e = parse_manifest(&manifest(bad, 1, 1)).unwrap_err();
            assert!(e.contains("leaves the directory"), "{e}");
        }
        let e = parse_manifest(&manifest(b"big", CHUNK_BYTES as u64 + 1, 1)).unwrap_err();
        assert!(e.contains("larger"), "{e}");
        let mut cut = manifest(b"x", 1, 1);
        cut.truncate(cut.len() - 10);
        assert!(parse_manifest(&cut).unwrap_err().contains("truncated"));
    }
}
