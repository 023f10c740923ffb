//! Snapshots of the folded state, so recovery reads a snapshot plus the log's tail instead of the whole
//! log. A snapshot records the log offset it covers; everything after it is replayed. Metadata and the
//! shape of the standings go in a JSON header; the bulk (user ids, per-player rows, dedupe digests) in
//! fixed-width binary sections. A CRC over the file catches a torn or damaged snapshot, which is then
//! ignored in favour of an older one or a full replay: a snapshot is only ever a shortcut.

use super::dedupe::DedupeSnapshot;
use super::meta::MetaSnapshot;
use jiff::Timestamp;
use phoenix_core::engine::{
    EngineSnapshot, LeaderboardSnapshot, PlayerSnapshot, TenantSnapshot, WindowSnapshot,
};
use phoenix_core::ids::LeaderboardId;
use phoenix_core::window::{Window, WindowId};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Snapshots whose idempotency entries are 96-bit keys with their acceptance time: a build that
/// knows only `PHXSNAP1` (whole 128-bit digests) refuses them rather than forget every hot id.
const MAGIC: &[u8; 8] = b"PHXSNAP2";
/// Snapshots written before (read as ever).
const MAGIC_V1: &[u8; 8] = b"PHXSNAP1";
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".bin";

/// Everything a snapshot holds.
pub(super) struct Snapshot {
    /// The log offset up to which the snapshot covers (the next record to replay starts here).
    pub wal_offset: u64,
    pub meta: MetaSnapshot,
    pub engine: EngineSnapshot,
    pub dedupe: DedupeSnapshot,
    /// The acceptance-time high-water mark (Unix µs) at `wal_offset`.
    pub accepted_high_water: i64,
    /// The data dir has a rewards ledger (`ledger.db`) that this snapshot's log position relies on:
    /// a start that finds it missing refuses rather than silently starting an empty one.
    pub ledger: bool,
}

#[derive(Serialize, Deserialize)]
struct WindowHeader {
    id: String,
    /// Unix µs (kept for snapshots written before `start`/`end`).
    starts_at: Option<i64>,
    ends_at: Option<i64>,
    /// The exact bounds (a custom window's may carry nanoseconds).
    #[serde(default)]
    start: Option<Timestamp>,
    #[serde(default)]
    end: Option<Timestamp>,
    players: u64,
}

impl WindowHeader {
    fn of(window: &Window, players: u64) -> WindowHeader {
        WindowHeader {
            id: window.id.as_str().to_owned(),
            starts_at: window.starts_at.map(|t| t.as_microsecond()),
            ends_at: window.ends_at.map(|t| t.as_microsecond()),
            start: window.starts_at,
            end: window.ends_at,
            players,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LeaderboardHeader {
    uid: u64,
    leaderboard_id: LeaderboardId,
    config: serde_json::Value,
    active: bool,
    /// Absent in snapshots written before window ids carried incarnations: then 0, and the store
    /// works it out from the metadata after loading (see `Engine::fill_incarnations`).
    #[serde(default)]
    incarnation: u32,
    windows: Vec<WindowHeader>,
    /// Windows in cold storage (no players here).
    #[serde(default)]
    cold: Vec<WindowHeader>,
}

#[derive(Serialize, Deserialize)]
struct TenantHeader {
    tenant_id: String,
    users: u64,
    leaderboards: Vec<LeaderboardHeader>,
    retired: Vec<LeaderboardHeader>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    meta: MetaSnapshot,
    tenants: Vec<TenantHeader>,
    dedupe_key: [u64; 2],
    dedupe_entries: u64,
    accepted_high_water: i64,
    /// Absent (false) in snapshots written before the ledger existed.
    #[serde(default)]
    ledger: bool,
    /// Whether the dedupe entries carry each key's own acceptance time (false in older snapshots).
    #[serde(default)]
    dedupe_times: bool,
}

fn lb_header(lb: &LeaderboardSnapshot) -> LeaderboardHeader {
    LeaderboardHeader {
        uid: lb.uid,
        leaderboard_id: lb.leaderboard_id.clone(),
        config: lb.config.clone(),
        active: lb.active,
        incarnation: lb.incarnation,
        cold: lb.cold.iter().map(|w| WindowHeader::of(w, 0)).collect(),
        windows: lb
            .windows
            .iter()
            .map(|w| WindowHeader::of(&w.window, w.players.len() as u64))
            .collect(),
    }
}

fn put_players(out: &mut Vec<u8>, lb: &LeaderboardSnapshot) {
    for w in &lb.windows {
        for p in &w.players {
            out.extend_from_slice(&p.user.to_le_bytes());
            out.extend_from_slice(&p.score.to_le_bytes());
            out.extend_from_slice(&p.seq.to_le_bytes());
            out.extend_from_slice(&p.updated_at.to_le_bytes());
            out.extend_from_slice(&p.latest_occurred_at.to_le_bytes());
        }
    }
}

/// Encodes a snapshot to bytes.
pub(super) fn encode(snapshot: Snapshot) -> Result<Vec<u8>, String> {
    let Snapshot {
        wal_offset,
        meta,
        engine,
        dedupe,
        accepted_high_water,
        ledger,
    } = snapshot;
    let header = Header {
        meta,
        tenants: engine
            .tenants
            .iter()
            .map(|t| TenantHeader {
                tenant_id: t.tenant_id.clone(),
                users: t.users.len() as u64,
                leaderboards: t.leaderboards.iter().map(lb_header).collect(),
                retired: t.retired.iter().map(lb_header).collect(),
            })
            .collect(),
        dedupe_key: dedupe.key,
        dedupe_entries: dedupe.entries.len() as u64,
        accepted_high_water,
        ledger,
        dedupe_times: dedupe.per_key_times,
    };
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(64 + header.len() + dedupe.entries.len() * 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&wal_offset.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for t in &engine.tenants {
        for user in &t.users {
            out.extend_from_slice(&(user.len() as u32).to_le_bytes());
            out.extend_from_slice(user.as_bytes());
        }
        for lb in t.leaderboards.iter().chain(&t.retired) {
            put_players(&mut out, lb);
        }
    }
    for (digest, occurred) in &dedupe.entries {
        out.extend_from_slice(&digest.to_le_bytes());
        out.extend_from_slice(&occurred.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// A cursor over the snapshot's bytes that fails instead of panicking on short input.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("snapshot is truncated")?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?
            .try_into()
            .map_err(|_| "snapshot is truncated".to_owned())
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

fn window_of(w: &WindowHeader) -> Result<Window, String> {
    let id = WindowId::parse(&w.id).ok_or_else(|| format!("bad window id '{}'", w.id))?;
    let time = |us: Option<i64>| -> Result<Option<Timestamp>, String> {
        us.map(|us| Timestamp::from_microsecond(us).map_err(|e| e.to_string()))
            .transpose()
    };
    Ok(Window {
        id,
        starts_at: w.start.map_or_else(|| time(w.starts_at), |t| Ok(Some(t)))?,
        ends_at: w.end.map_or_else(|| time(w.ends_at), |t| Ok(Some(t)))?,
    })
}

fn read_lb(r: &mut Reader<'_>, h: LeaderboardHeader) -> Result<LeaderboardSnapshot, String> {
    let mut windows = Vec::with_capacity(h.windows.len());
    for w in &h.windows {
        let window = window_of(w)?;
        let count = usize::try_from(w.players).map_err(|e| e.to_string())?;
        let mut players = Vec::with_capacity(count.min(r.bytes.len() / 36));
        for _ in 0..count {
            players.push(PlayerSnapshot {
                user: r.u32()?,
                score: f64::from_le_bytes(r.array()?),
                seq: r.u64()?,
                updated_at: r.i64()?,
                latest_occurred_at: r.i64()?,
            });
        }
        windows.push(WindowSnapshot { window, players });
    }
    Ok(LeaderboardSnapshot {
        uid: h.uid,
        leaderboard_id: h.leaderboard_id,
        config: h.config,
        active: h.active,
        incarnation: h.incarnation,
        windows,
        cold: h.cold.iter().map(window_of).collect::<Result<_, _>>()?,
    })
}

/// Decodes bytes made by [`encode`]; an error for anything damaged.
pub(super) fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    if bytes.len() < MAGIC.len() + 20
        || (&bytes[..MAGIC.len()] != MAGIC && &bytes[..MAGIC.len()] != MAGIC_V1)
    {
        return Err("not a snapshot".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| "short")?);
    if crc32fast::hash(body) != crc {
        return Err("snapshot checksum mismatch".into());
    }
    let mut r = Reader {
        bytes: body,
        pos: MAGIC.len(),
    };
    let wal_offset = r.u64()?;
    let header_len = usize::try_from(r.u64()?).map_err(|e| e.to_string())?;
    let header: Header =
        serde_json::from_slice(r.take(header_len)?).map_err(|e| format!("header: {e}"))?;
    let mut tenants = Vec::with_capacity(header.tenants.len());
    for t in header.tenants {
        let count = usize::try_from(t.users).map_err(|e| e.to_string())?;
        let mut users = Vec::with_capacity(count.min(body.len() / 4));
        for _ in 0..count {
            let len = r.u32()? as usize;
            let raw = r.take(len)?;
            users.push(String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())?);
        }
        let mut leaderboards = Vec::with_capacity(t.leaderboards.len());
        for lb in t.leaderboards {
            leaderboards.push(read_lb(&mut r, lb)?);
        }
        let mut retired = Vec::with_capacity(t.retired.len());
        for lb in t.retired {
            retired.push(read_lb(&mut r, lb)?);
        }
        tenants.push(TenantSnapshot {
            tenant_id: t.tenant_id,
            users,
            leaderboards,
            retired,
        });
    }
    let count = usize::try_from(header.dedupe_entries).map_err(|e| e.to_string())?;
    let mut entries = Vec::with_capacity(count.min(body.len() / 24));
    for _ in 0..count {
        let digest = u128::from_le_bytes(r.array()?);
        entries.push((digest, r.i64()?));
    }
    if r.pos != body.len() {
        return Err("snapshot has trailing bytes".into());
    }
    Ok(Snapshot {
        wal_offset,
        meta: header.meta,
        engine: EngineSnapshot { tenants },
        dedupe: DedupeSnapshot {
            key: header.dedupe_key,
            entries,
            per_key_times: header.dedupe_times,
        },
        accepted_high_water: header.accepted_high_water,
        ledger: header.ledger,
    })
}

fn path_for(dir: &Path, wal_offset: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{wal_offset:020}{SUFFIX}"))
}

/// Snapshot files in `dir`, newest (largest offset) first.
pub(super) fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(offset) = name.to_str().and_then(|n| {
            n.strip_prefix(PREFIX)?
                .strip_suffix(SUFFIX)?
                .parse::<u64>()
                .ok()
        }) {
            found.push((offset, entry.path()));
        }
    }
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

/// Writes `bytes` as the snapshot for `wal_offset` (temp file, fsync, rename, fsync dir) and keeps only
/// the newest `keep` snapshots.
pub(super) fn write(dir: &Path, wal_offset: u64, bytes: &[u8], keep: usize) -> std::io::Result<()> {
    let tmp = dir.join("snapshot.tmp");
    let mut file = crate::journal::owner_only()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path_for(dir, wal_offset))?;
    crate::journal::sync_dir(dir)?;
    for (_, old) in list(dir)?.into_iter().skip(keep) {
        crate::journal::remove_if_exists(&old)?;
    }
    Ok(())
}
