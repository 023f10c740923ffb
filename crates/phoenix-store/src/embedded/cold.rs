//! Cold storage for ended windows. Once the log's acceptance high-water mark passes a window's end no
//! event can change it, so its final ranked standings are written to one immutable, checksummed file
//! (`cold/<uid>/<window id>.win`) and dropped from memory. Reads of it load the file through a cache
//! bounded in bytes (least recently used first out); a file that fails its checksum or does not parse
//! is reported, never served.
//!
//! File layout (all integers little-endian):
//! `"PHXCOLD1" | header_len u32 | header JSON | entries | crc32 u32` where the header names the window,
//! the ranking method and the entry count, and each entry, in rank order (ranks are 1, 2, 3, …), is
//! `user_len u32 | user_id | score f64 | seq u64 | updated_at i64 (Unix µs)`. The CRC covers every byte
//! before it. Files are written to a temporary name, synced, renamed and the directory synced, so a
//! crash leaves either no file or a whole one; writing the same window again writes the same bytes.
//!
//! Erasing a player (account deletion; the route comes later) is designed as a rewrite of the files of
//! their tenant's windows without them (ranks close up): each file is independent and small next to the
//! log, so nothing else needs rebuilding.

use jiff::Timestamp;
use phoenix_core::config::RankingMethod;
use phoenix_core::engine::{FrozenWindow, Standing};
use phoenix_core::rank::sort_key;
use phoenix_core::window::{Window, WindowId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"PHXCOLD1";
const SUFFIX: &str = ".win";

#[derive(Serialize, Deserialize)]
struct Header {
    id: String,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    /// `score_desc` or `score_asc`.
    method: String,
    entries: u64,
}

/// One ended window's final standings, loaded from its file.
pub(super) struct ColdWindow {
    method: RankingMethod,
    entries: Vec<Standing>,
    /// Entry positions sorted by user id, for lookups by player.
    by_user: Vec<u32>,
    /// Heap bytes held, for the cache's budget.
    bytes: usize,
}

impl ColdWindow {
    fn new(frozen: FrozenWindow) -> ColdWindow {
        let FrozenWindow {
            method, entries, ..
        } = frozen;
        let mut by_user: Vec<u32> = (0..entries.len() as u32).collect();
        by_user.sort_unstable_by(|a, b| {
            entries[*a as usize]
                .user_id
                .cmp(&entries[*b as usize].user_id)
        });
        let bytes = entries.capacity() * std::mem::size_of::<Standing>()
            + entries.iter().map(|e| e.user_id.capacity()).sum::<usize>()
            + by_user.capacity() * 4;
        ColdWindow {
            method,
            entries,
            by_user,
            bytes,
        }
    }

    /// Ranked entries in the window.
    pub(super) fn total(&self) -> u32 {
        self.entries.len() as u32
    }

    /// Entries `from_rank ..` (1-based), at most `count`.
    pub(super) fn page(&self, from_rank: u32, count: u32) -> Vec<Standing> {
        let from = (from_rank.max(1) - 1) as usize;
        self.entries
            .iter()
            .skip(from)
            .take(count as usize)
            .cloned()
            .collect()
    }

    /// How many entries sort before the key `(score, seq)` or equal it (see
    /// `RankIndex::position_after`): a page resuming after that key starts at this + 1.
    pub(super) fn position_after(&self, score: f64, seq: u64) -> u32 {
        if score.is_nan() {
            return self.total();
        }
        let key = (sort_key(score, self.method), seq);
        self.entries
            .partition_point(|e| (sort_key(e.score, self.method), e.seq) <= key) as u32
    }

    /// A player's entry.
    pub(super) fn standing_of(&self, user_id: &str) -> Option<&Standing> {
        let at = self
            .by_user
            .binary_search_by(|i| self.entries[*i as usize].user_id.as_str().cmp(user_id))
            .ok()?;
        self.entries.get(self.by_user[at] as usize)
    }
}

fn method_name(method: RankingMethod) -> &'static str {
    method.as_str()
}

fn method_of(name: &str) -> Option<RankingMethod> {
    [RankingMethod::ScoreDesc, RankingMethod::ScoreAsc]
        .into_iter()
        .find(|m| m.as_str() == name)
}

/// The file's bytes for a frozen window.
pub(super) fn encode(frozen: &FrozenWindow) -> Result<Vec<u8>, String> {
    let header = Header {
        id: frozen.window.id.as_str().to_owned(),
        starts_at: frozen.window.starts_at,
        ends_at: frozen.window.ends_at,
        method: method_name(frozen.method).to_owned(),
        entries: frozen.entries.len() as u64,
    };
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(16 + header.len() + frozen.entries.len() * 40);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    for e in &frozen.entries {
        out.extend_from_slice(&(e.user_id.len() as u32).to_le_bytes());
        out.extend_from_slice(e.user_id.as_bytes());
        out.extend_from_slice(&e.score.to_le_bytes());
        out.extend_from_slice(&e.seq.to_le_bytes());
        out.extend_from_slice(&e.updated_at.as_microsecond().to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads the bytes of a cold file back; an error for anything damaged.
fn decode(bytes: &[u8]) -> Result<FrozenWindow, String> {
    if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a cold window file".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| "truncated")?);
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let mut pos = MAGIC.len();
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = pos
            .checked_add(n)
            .filter(|end| *end <= body.len())
            .ok_or("truncated")?;
        let slice = &body[pos..end];
        pos = end;
        Ok(slice)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let header_len = u32_of(take(4)?) as usize;
    let header: Header =
        serde_json::from_slice(take(header_len)?).map_err(|e| format!("header: {e}"))?;
    let window = Window {
        id: WindowId::parse(&header.id).ok_or("bad window id")?,
        starts_at: header.starts_at,
        ends_at: header.ends_at,
    };
    let method = method_of(&header.method).ok_or("unknown ranking method")?;
    let count = usize::try_from(header.entries).map_err(|e| e.to_string())?;
    let mut entries = Vec::with_capacity(count.min(body.len() / 28));
    for rank in 1..=count {
        let len = u32_of(take(4)?) as usize;
        let user_id = String::from_utf8(take(len)?.to_vec()).map_err(|e| e.to_string())?;
        let score = f64::from_bits(u64_of(take(8)?));
        let seq = u64_of(take(8)?);
        let updated_at =
            Timestamp::from_microsecond(u64_of(take(8)?) as i64).map_err(|e| e.to_string())?;
        entries.push(Standing {
            rank: u32::try_from(rank).map_err(|e| e.to_string())?,
            user_id,
            score,
            updated_at,
            seq,
        });
    }
    if pos != body.len() {
        return Err("trailing bytes".into());
    }
    Ok(FrozenWindow {
        window,
        method,
        entries,
    })
}

/// A cold window's place: its leaderboard's uid and its id.
type WindowKey = (u64, WindowId);

/// The cold files of one data dir and the cache in front of them.
pub(super) struct ColdStore {
    dir: PathBuf,
    cache: Mutex<Cache>,
    /// One lock per window being loaded now, so concurrent misses of one window read its file once
    /// (entries leave when their load is done: bounded by the loads in flight).
    loading: Mutex<HashMap<WindowKey, Arc<Mutex<()>>>>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<(u64, WindowId), (Arc<ColdWindow>, u64)>,
    bytes: usize,
    max_bytes: usize,
    clock: u64,
}

impl Cache {
    fn get(&mut self, key: &(u64, WindowId)) -> Option<Arc<ColdWindow>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(w, used)| {
            *used = clock;
            w.clone()
        })
    }

    /// Caches `window`, evicting the least recently used until it fits. A window larger than the whole
    /// budget is still kept, alone, so the most read big window is not parsed again for every page: the
    /// cache holds at most the budget or one window, whichever is larger.
    fn insert(&mut self, key: (u64, WindowId), window: Arc<ColdWindow>) {
        if let Some((old, _)) = self.entries.remove(&key) {
            self.bytes -= old.bytes;
        }
        while !self.entries.is_empty() && self.bytes + window.bytes > self.max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((gone, _)) = self.entries.remove(&oldest) {
                self.bytes -= gone.bytes;
            }
        }
        self.clock += 1;
        self.bytes += window.bytes;
        self.entries.insert(key, (window, self.clock));
    }
}

impl ColdStore {
    pub(super) fn new(dir: PathBuf, max_bytes: usize) -> ColdStore {
        ColdStore {
            dir,
            cache: Mutex::new(Cache {
                max_bytes,
                ..Cache::default()
            }),
            loading: Mutex::default(),
        }
    }

    pub(super) fn path(&self, uid: u64, window: &WindowId) -> PathBuf {
        // Window ids are dates, `all`, `custom`, with an optional `~n`: safe as file names.
        self.dir
            .join(uid.to_string())
            .join(format!("{}{SUFFIX}", window.as_str()))
    }

    /// Writes a frozen window's file durably (blocking file work).
    pub(super) fn write(&self, uid: u64, frozen: &FrozenWindow) -> std::io::Result<()> {
        let bytes = encode(frozen).map_err(std::io::Error::other)?;
        let path = self.path(uid, &frozen.window.id);
        let parent = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.clone());
        let fresh_dir = !parent.exists();
        crate::journal::create_private_dir(&parent)?;
        if fresh_dir {
            crate::journal::sync_dir(&self.dir)?;
        }
        let tmp = parent.join(format!("{}.tmp", frozen.window.id.as_str()));
        let mut file = crate::journal::owner_only()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        crate::journal::sync_dir(&parent)
    }

    /// A cold window's standings, from the cache or its file (blocking file work on a miss).
    pub(super) fn load(&self, uid: u64, window: &WindowId) -> Result<Arc<ColdWindow>, String> {
        let key = (uid, window.clone());
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit);
        }
        // The first miss reads the file; the others wait for it and take the cached result.
        let gate = self
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _loading = gate.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.load_locked(&key);
        let mut loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if loading.get(&key).is_some_and(|g| Arc::ptr_eq(g, &gate)) {
            loading.remove(&key);
        }
        result
    }

    /// [`ColdStore::load`] with the window's load lock held.
    fn load_locked(&self, key: &(u64, WindowId)) -> Result<Arc<ColdWindow>, String> {
        if let Some(hit) = self.lock().get(key) {
            return Ok(hit);
        }
        let (uid, window) = (key.0, &key.1);
        let path = self.path(uid, window);
        let loaded = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| decode(&bytes))
            .and_then(|frozen| {
                if &frozen.window.id == window {
                    Ok(frozen)
                } else {
                    Err(format!("it holds window '{}'", frozen.window.id))
                }
            });
        match loaded {
            Ok(frozen) => {
                let cold = Arc::new(ColdWindow::new(frozen));
                self.lock().insert(key.clone(), cold.clone());
                Ok(cold)
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e,
                    "a cold window file is damaged or missing; its reads answer 503 until it is restored from a backup");
                Err(format!(
                    "cold window file {} is unreadable: {e}",
                    path.display()
                ))
            }
        }
    }

    /// Bytes the cache holds now.
    pub(super) fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frozen(n: u32) -> FrozenWindow {
        FrozenWindow {
            window: Window {
                id: WindowId::parse("2026-12-01~2").unwrap(),
                starts_at: Some("2026-12-01T00:00:00Z".parse().unwrap()),
                ends_at: Some("2026-12-02T00:00:00Z".parse().unwrap()),
            },
            method: RankingMethod::ScoreDesc,
            entries: (1..=n)
                .map(|rank| Standing {
                    rank,
                    user_id: format!("user-{}", n - rank),
                    score: f64::from(1000 - rank),
                    updated_at: Timestamp::from_second(1_700_000_000 + i64::from(rank)).unwrap(),
                    seq: u64::from(rank) * 10,
                })
                .collect(),
        }
    }

    #[test]
    fn a_window_round_trips_and_answers_like_the_index() {
        let original = frozen(50);
        let bytes = encode(&original).unwrap();
        assert_eq!(decode(&bytes).unwrap(), original);
        let cold = ColdWindow::new(original.clone());
        assert_eq!(cold.total(), 50);
        assert_eq!(cold.page(3, 2), original.entries[2..4].to_vec());
        assert_eq!(cold.page(49, 10).len(), 2);
        assert!(cold.page(51, 10).is_empty());
        let fifth = &original.entries[4];
        assert_eq!(cold.position_after(fifth.score, fifth.seq), 5);
        assert_eq!(cold.position_after(f64::NAN, 0), 50);
        assert_eq!(cold.standing_of("user-40").map(|s| s.rank), Some(10));
        assert!(cold.standing_of("nobody").is_none());
    }

    #[test]
    fn any_damage_is_detected() {
        let bytes = encode(&frozen(5)).unwrap();
        for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {at}");
        }
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn concurrent_misses_of_one_window_share_one_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ColdStore::new(dir.path().join("cold"), 1 << 20));
        store.write(7, &frozen(900)).unwrap();
        let id = WindowId::parse("2026-12-01~2").unwrap();
        let loads: Vec<Arc<ColdWindow>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| store.load(7, &id).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            loads.iter().all(|l| Arc::ptr_eq(l, &loads[0])),
            "one load, shared"
        );
        assert!(store.loading.lock().unwrap().is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let one = ColdWindow::new(frozen(100)).bytes;
        let store = ColdStore::new(dir.path().join("cold"), one * 2 + one / 2);
        for uid in 0..5 {
            store.write(uid, &frozen(100)).unwrap();
        }
        let id = WindowId::parse("2026-12-01~2").unwrap();
        for uid in 0..5 {
            assert_eq!(store.load(uid, &id).unwrap().total(), 100);
            assert!(store.cached_bytes() <= one * 2 + one / 2);
        }
        // A window bigger than the whole budget is kept alone.
        let small = ColdStore::new(dir.path().join("cold"), one / 2);
        assert_eq!(small.load(0, &id).unwrap().total(), 100);
        let alone = small.cached_bytes();
        assert!(alone > one / 2, "kept although over the budget");
        assert_eq!(small.load(1, &id).unwrap().total(), 100);
        assert_eq!(small.cached_bytes(), alone, "and only that one");
        assert!(store.load(9, &id).is_err(), "missing file");
    }
}
