//! A cluster's snapshots, kept in PostgreSQL, so a new or restarted node loads the state at a log
//! position and replays only the log after it, and the log's rows behind the oldest snapshot kept
//! can be removed.
//!
//! A snapshot is one node's state files (the folded state at position `pos`, the rewards ledger, the
//! idempotency pieces and the cold windows' files), packed into one stream (a *bundle*) and stored in
//! rows of at most [`CHUNK_BYTES`] (a PostgreSQL value may hold at most 1 GB). It carries its log
//! position and the log's time there (the time high-water mark), and the SHA-256 of the whole bundle,
//! checked before anything is unpacked.
//!
//! One node writes at a time, under the `snapshot` lease (a row of `phoenix_leases` with an expiry in
//! the database's clock): a node that dies while writing leaves an incomplete snapshot that nobody
//! loads and the next writer removes, and a writer whose lease ran out cannot mark its snapshot
//! complete. [`SNAPSHOTS_KEPT`] complete snapshots are kept; log rows are removed only behind the
//! oldest of them, so a node loading either finds every row after it.

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Bytes per stored chunk.
pub const CHUNK_BYTES: usize = 4 << 20;
/// Complete snapshots kept; the log is kept from the oldest of them.
pub const SNAPSHOTS_KEPT: i64 = 2;
/// How long a writer holds the lease: a snapshot must be stored within it.
pub const LEASE: Duration = Duration::from_secs(600);
/// The bundle format this build writes and reads.
const FORMAT: i16 = 1;
/// Log rows removed per statement (short transactions).
const DELETE_ROWS: i64 = 50_000;
const LEASE_NAME: &str = "snapshot";

pub(crate) const MIGRATION_3: &str = "
CREATE TABLE IF NOT EXISTS phoenix_snapshots (
    id BIGSERIAL PRIMARY KEY,
    pos BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
    format SMALLINT NOT NULL,
    node BIGINT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    sha256 BYTEA,
    complete BOOLEAN NOT NULL DEFAULT FALSE,
    started_us BIGINT NOT NULL,
    completed_us BIGINT
);
CREATE TABLE IF NOT EXISTS phoenix_snapshot_chunks (
    snapshot BIGINT NOT NULL REFERENCES phoenix_snapshots (id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (snapshot, n)
);
CREATE TABLE IF NOT EXISTS phoenix_leases (
    name TEXT PRIMARY KEY,
    node BIGINT NOT NULL,
    until_us BIGINT NOT NULL
);
";

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

/// Takes (or renews) the snapshot lease for `node`; false while another node holds it.
pub async fn take_lease(pool: &PgPool, node: i64) -> Result<bool, sqlx::Error> {
    let taken: Option<i64> = sqlx::query_scalar(
        "INSERT INTO phoenix_leases (name, node, until_us) VALUES ($1, $2, (extract(epoch from clock_timestamp()) * 1000000)::bigint + $3) \
         ON CONFLICT (name) DO UPDATE SET node = EXCLUDED.node, until_us = EXCLUDED.until_us \
         WHERE phoenix_leases.until_us < (extract(epoch from clock_timestamp()) * 1000000)::bigint OR phoenix_leases.node = EXCLUDED.node \
         RETURNING node"
    )
    .bind(LEASE_NAME)
    .bind(node)
    .bind(LEASE.as_micros() as i64)
    .fetch_optional(pool)
    .await?;
    Ok(taken == Some(node))
}

/// Gives the lease up (if `node` still holds it).
pub async fn release_lease(pool: &PgPool, node: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM phoenix_leases WHERE name = $1 AND node = $2")
        .bind(LEASE_NAME)
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

/// Stores the bundle at `bundle` as the snapshot at log position `pos`, under the lease `node`
/// holds; answers the snapshot's id once it is complete. The lease is checked when the snapshot is
/// marked complete: a writer that lost it leaves an incomplete snapshot.
pub async fn store(pool: &PgPool, node: i64, pos: u64, bundle: &Path) -> Result<i64, String> {
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
         VALUES ($1, $2, $3, $4, (extract(epoch from clock_timestamp()) * 1000000)::bigint) RETURNING id"
    )
    .bind(pos as i64)
    .bind(at_us)
    .bind(FORMAT)
    .bind(node)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    let stored = async {
        let mut file = tokio::fs::File::open(bundle)
            .await
            .map_err(|e| e.to_string())?;
        let mut hash = Sha256::new();
        let (mut n, mut bytes) = (0i32, 0i64);
        loop {
            let chunk = read_chunk(&mut file).await?;
            if chunk.is_empty() {
                break;
            }
            hash.update(&chunk);
            bytes += chunk.len() as i64;
            sqlx::query("INSERT INTO phoenix_snapshot_chunks (snapshot, n, data) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(n)
                .bind(chunk)
                .execute(pool)
                .await
                .map_err(db)?;
            n += 1;
        }
        let sha = hash.finalize().to_vec();
        let done = sqlx::query(
            "UPDATE phoenix_snapshots SET complete = TRUE, bytes = $2, chunks = $3, sha256 = $4, \
             completed_us = (extract(epoch from clock_timestamp()) * 1000000)::bigint \
             WHERE id = $1 AND EXISTS (SELECT 1 FROM phoenix_leases \
                 WHERE name = $5 AND node = $6 AND until_us > (extract(epoch from clock_timestamp()) * 1000000)::bigint)"
        )
        .bind(id)
        .bind(bytes)
        .bind(n)
        .bind(sha)
        .bind(LEASE_NAME)
        .bind(node)
        .execute(pool)
        .await
        .map_err(db)?;
        if done.rows_affected() != 1 {
            return Err("the snapshot lease ran out before the snapshot was stored".to_owned());
        }
        Ok(())
    }
    .await;
    if let Err(e) = stored {
        let _ = sqlx::query("DELETE FROM phoenix_snapshots WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await;
        return Err(e);
    }
    Ok(id)
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

/// Removes what is no longer needed, under the lease: snapshots beyond the newest
/// [`SNAPSHOTS_KEPT`] complete ones (and incomplete ones of writers that are gone), then the log's
/// rows up to the oldest snapshot kept. Answers the log rows removed.
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
    // Incomplete snapshots are those being written (under the lease, by this node: not now) or
    // abandoned by a writer that lost it.
    sqlx::query(
        "DELETE FROM phoenix_snapshots WHERE (complete AND (pos < $1 OR (pos = $1 AND id < $2))) \
         OR (NOT complete AND NOT EXISTS (SELECT 1 FROM phoenix_leases WHERE name = $3 AND node <> $4 \
             AND until_us > (extract(epoch from clock_timestamp()) * 1000000)::bigint))",
    )
    .bind(oldest_pos)
    .bind(oldest_id)
    .bind(LEASE_NAME)
    .bind(node)
    .execute(pool)
    .await?;
    if kept.len() < SNAPSHOTS_KEPT as usize {
        // Only one snapshot yet: a node that started loading the log from its beginning may still
        // need every row.
        return Ok(0);
    }
    let mut removed = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM phoenix_log WHERE pos IN \
             (SELECT pos FROM phoenix_log WHERE pos <= $1 ORDER BY pos LIMIT $2)",
        )
        .bind(oldest_pos)
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
pub fn load_newest(url: &str, dest: &Path) -> Result<Option<u64>, String> {
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
        // The newest may be removed while it loads (two newer ones completed meanwhile): try again.
        let mut last_error = String::new();
        for _ in 0..3 {
            let Some(newest) = newest(&pool).await.map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            match fetch(&pool, newest.id, dest).await {
                Ok(()) => {
                    let dest = dest.to_owned();
                    tokio::task::spawn_blocking(move || unpack_bundle(&dest))
                        .await
                        .map_err(|e| e.to_string())??;
                    return Ok(Some(newest.pos));
                }
                Err(e) => last_error = e,
            }
        }
        Err(format!("loading the newest snapshot: {last_error}"))
    })
}

const BUNDLE_FILE: &str = "snapshot.bundle";

/// Fetches a snapshot's chunks into `dest/snapshot.bundle`, checking its length and hash.
async fn fetch(pool: &PgPool, id: i64, dest: &Path) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let db = |e: sqlx::Error| e.to_string();
    let row = sqlx::query(
        "SELECT format, bytes, chunks, sha256 FROM phoenix_snapshots WHERE id = $1 AND complete",
    )
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
    let (bytes, chunks): (i64, i32) = (row.try_get(1).map_err(db)?, row.try_get(2).map_err(db)?);
    let sha: Vec<u8> = row.try_get(3).map_err(db)?;
    let path = dest.join(BUNDLE_FILE);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .await
        .map_err(|e| e.to_string())?;
    let mut hash = Sha256::new();
    let mut total = 0i64;
    for n in 0..chunks {
        let data: Vec<u8> = sqlx::query_scalar(
            "SELECT data FROM phoenix_snapshot_chunks WHERE snapshot = $1 AND n = $2",
        )
        .bind(id)
        .bind(n)
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .ok_or("the snapshot was removed")?;
        hash.update(&data);
        total += data.len() as i64;
        file.write_all(&data).await.map_err(|e| e.to_string())?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    if total != bytes || hash.finalize().as_slice() != sha.as_slice() {
        return Err("the snapshot's chunks do not match its hash".into());
    }
    Ok(())
}

/// Packs every file under `dir` (named by its path below `dir`) into the bundle at `bundle`.
/// Blocking file work.
pub fn pack_bundle(dir: &Path, bundle: &Path) -> std::io::Result<u64> {
    let mut files = Vec::new();
    list_files(dir, dir, &mut files)?;
    files.sort();
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        crate::journal::owner_only()
            .write(true)
            .create(true)
            .truncate(true)
            .open(bundle)?,
    );
    let mut total = 0u64;
    for name in files {
        let mut file = std::fs::File::open(dir.join(&name))?;
        let len = file.metadata()?.len();
        let name = name.to_string_lossy();
        out.write_all(&(name.len() as u16).to_le_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        let copied = std::io::copy(&mut (&mut file).take(len), &mut out)?;
        if copied != len {
            return Err(std::io::Error::other(format!(
                "{name} changed while it was packed"
            )));
        }
        total += len;
    }
    out.write_all(&0u16.to_le_bytes())?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(total)
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_owned());
        }
    }
    Ok(())
}

/// Unpacks `dir/snapshot.bundle` into `dir` and removes it. A name that would leave `dir` is
/// refused. Blocking file work.
fn unpack_bundle(dir: &Path) -> Result<(), String> {
    let path = dir.join(BUNDLE_FILE);
    let mut input = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(&path).map_err(|e| e.to_string())?,
    );
    let bad = |what: &str| format!("the snapshot bundle is malformed: {what}");
    loop {
        let mut len = [0u8; 2];
        input.read_exact(&mut len).map_err(|_| bad("truncated"))?;
        let name_len = u16::from_le_bytes(len) as usize;
        if name_len == 0 {
            break;
        }
        let mut name = vec![0u8; name_len];
        input.read_exact(&mut name).map_err(|_| bad("truncated"))?;
        let name = String::from_utf8(name).map_err(|_| bad("a name is not UTF-8"))?;
        let relative = Path::new(&name);
        if name == BUNDLE_FILE
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(bad("a name leaves the directory"));
        }
        let mut size = [0u8; 8];
        input.read_exact(&mut size).map_err(|_| bad("truncated"))?;
        let size = u64::from_le_bytes(size);
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            crate::journal::create_private_dir(parent).map_err(|e| e.to_string())?;
        }
        let mut file = crate::journal::owner_only()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| format!("{name}: {e}"))?;
        let copied =
            std::io::copy(&mut (&mut input).take(size), &mut file).map_err(|e| e.to_string())?;
        if copied != size {
            return Err(bad("truncated"));
        }
    }
    std::fs::remove_file(&path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_unpacks_to_the_files_it_was_packed_from() {
        let from = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(from.path().join("cold/7")).unwrap();
        std::fs::write(from.path().join("ledger.db"), b"ledger").unwrap();
        std::fs::write(from.path().join("cold/7/2026-12-01.win"), vec![7u8; 10_000]).unwrap();
        std::fs::write(from.path().join("empty"), b"").unwrap();
        let to = tempfile::tempdir().unwrap();
        pack_bundle(from.path(), &to.path().join(BUNDLE_FILE)).unwrap();
        unpack_bundle(to.path()).unwrap();
        assert_eq!(
            std::fs::read(to.path().join("ledger.db")).unwrap(),
            b"ledger"
        );
        assert_eq!(
            std::fs::read(to.path().join("cold/7/2026-12-01.win")).unwrap(),
            vec![7u8; 10_000]
        );
        assert!(std::fs::read(to.path().join("empty")).unwrap().is_empty());
        assert!(!to.path().join(BUNDLE_FILE).exists());
    }

    #[test]
    fn a_bundle_naming_a_path_outside_is_refused() {
        let to = tempfile::tempdir().unwrap();
        let mut bundle = Vec::new();
        let name = b"../escape";
        bundle.extend_from_slice(&(name.len() as u16).to_le_bytes());
        bundle.extend_from_slice(name);
        bundle.extend_from_slice(&1u64.to_le_bytes());
        bundle.push(b'x');
        bundle.extend_from_slice(&0u16.to_le_bytes());
        std::fs::write(to.path().join(BUNDLE_FILE), bundle).unwrap();
        let e = unpack_bundle(to.path()).unwrap_err();
        assert!(e.contains("leaves the directory"), "{e}");
        assert!(!to.path().parent().unwrap().join("escape").exists());
    }
}
