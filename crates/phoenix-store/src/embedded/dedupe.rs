//! The idempotency index: which `(tenant, event_id)` pairs were accepted, and when, for as long as a
//! retry of them could still arrive inside the dedupe horizon. Keys are SipHash-1-3 digests under a
//! secret random key (kept in snapshots), so memory per key is fixed whatever the id's length and ids
//! cannot be chosen to collide. An entry is 16 bytes: 96 bits of digest and the second the key was
//! accepted (32 bits, counted from 2020).
//!
//! **Whether an id is a duplicate is a function of the id's acceptance time and the time of the request
//! asking, nothing else**: a key counts while `accepted ≥ at − (horizon + slack)`, where `at` is the
//! asking record's time (in a cluster, the log's time). Where a key happens to be kept (hot, in which
//! piece, merged or not, restored from which snapshot) and when a node's maintenance ran never changes
//! the answer; so every node of a cluster, and every replay, decides alike.
//!
//! Memory is bounded by the recent part only:
//! - **Hot**: the keys accepted most recently, in a hash set, up to [`DedupeOptions::hot_keys`] (or for at
//!   most an eighth of the horizon). Snapshots hold these (and nothing else of the index).
//! - **Pieces**: [`Dedupe::freeze`] turns the hot keys into an immutable file under `dedupe/` (sorted keys
//!   in checksummed 4 KiB blocks), of which memory keeps a blocked Bloom filter (12 bits a key) and the
//!   first key of every block: about 1.6 bytes a key. A lookup probes one cache line per piece and reads
//!   one block from disk only on a filter hit (about 1% of new keys per piece).
//! - **Expiry** drops whole pieces: a piece goes once its newest key no longer counts at the time given
//!   to [`Dedupe::prune`] (a cluster node gives its fold's time, never ahead of the log), whatever
//!   `occurred_at` its events (or their retries) carry. Keys that no longer count but whose piece is still
//!   there answer "new" all the same.
//!
//! Pieces are durable on their own (temp file, fsync, rename, fsync dir) before the hot keys they hold
//! are dropped, and are found by listing the directory at start-up; so log retention never forgets an id
//! inside the horizon: every accepted id is in a snapshot's hot keys, in a piece, or in the log after the
//! snapshot. A piece holding keys that are also in a snapshot or in the log is harmless (a superset).

use jiff::{SignedDuration, Timestamp};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::collections::HashSet;
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Pieces of 128-bit keys without times (read: every key has the piece's newest time).
const MAGIC_V1: &[u8; 8] = b"PHXDDUP1";
/// Pieces of entries (96-bit key, acceptance second).
const MAGIC: &[u8; 8] = b"PHXDDUP2";
const SUFFIX: &str = ".keys";
const KEY_FILE: &str = "hash.key";
/// Pieces merged at once.
const MERGE_FANIN: usize = 4;
/// Keys per on-disk block (4 KiB).
const BLOCK_KEYS: usize = 256;
/// Bloom filter bits per key.
const BITS_PER_KEY: usize = 12;
/// The key part of an entry (its top 96 bits); the low 32 bits hold the acceptance second.
const KEY_MASK: u128 = !(u32::MAX as u128);
/// Acceptance seconds count from 2020-01-01T00:00:00Z (32 bits last until 2156).
const TIME_EPOCH_S: i64 = 1_577_836_800;

/// The entry's 96-bit key.
fn key_of(entry: u128) -> u128 {
    entry & KEY_MASK
}

/// The entry's acceptance second.
fn second_of(entry: u128) -> u32 {
    entry as u32
}

/// The acceptance second of a time (Unix µs), clamped to what 32 bits from 2020 hold.
fn to_second(at_us: i64) -> u32 {
    (at_us.div_euclid(1_000_000) - TIME_EPOCH_S).clamp(0, i64::from(u32::MAX)) as u32
}

/// The keys are already uniform random bits: hash them by 64 of their key bits.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A hot entry: equal to, and hashed like, any entry with the same key (whatever its time).
#[derive(Clone, Copy, Debug)]
struct Entry(u128);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        key_of(self.0) == key_of(other.0)
    }
}

impl Eq for Entry {}

impl std::hash::Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64((self.0 >> 32) as u64);
    }
}

type KeySet = HashSet<Entry, BuildHasherDefault<KeyHasher>>;

/// Settings of the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DedupeOptions {
    pub horizon: SignedDuration,
    /// How much longer than the horizon a key counts (events stamped ahead of the clock, clocks apart).
    pub slack: SignedDuration,
    /// Hot keys before they are frozen into a piece.
    pub hot_keys: usize,
}

/// One frozen piece: its filter and block index in memory, its keys on disk.
pub(super) struct Piece {
    path: PathBuf,
    count: u64,
    /// The newest acceptance time of its keys (Unix µs).
    newest: i64,
    /// A piece written before entries carried their time (`PHXDDUP1`): every key has this second (the
    /// piece's newest), and its filter was built over the whole 128-bit digest.
    legacy: Option<u32>,
    bloom: Vec<u64>,
    /// The first entry and the CRC32 of every block (the entries start the file).
    blocks: Vec<(u128, u32)>,
}

impl Piece {
    /// `digest` is the full digest ([`Dedupe::key`]).
    fn may_contain(&self, digest: u128) -> bool {
        match self.legacy {
            Some(_) => bloom_check(&self.bloom, digest),
            None => bloom_check(&self.bloom, key_of(digest)),
        }
    }

    /// An entry as stored, as an entry of the current form.
    fn entry(&self, raw: u128) -> u128 {
        match self.legacy {
            Some(second) => key_of(raw) | u128::from(second),
            None => raw,
        }
    }

    /// The newest second of its entries.
    fn newest_second(&self) -> u32 {
        to_second(self.newest)
    }

    /// Reads the one block that could hold `key` and gives its acceptance second. An error when the
    /// file cannot be read or the block fails its checksum: the answer is unknown, never guessed.
    fn contains(&self, digest: u128) -> Result<Option<u32>, String> {
        let key = key_of(digest);
        let block = self
            .blocks
            .partition_point(|(first, _)| key_of(*first) <= key);
        if block == 0 {
            return Ok(None);
        }
        let block = block - 1;
        let start = block * BLOCK_KEYS;
        let n = (self.count as usize - start).min(BLOCK_KEYS);
        let mut bytes = vec![0u8; n * 16];
        fs::File::open(&self.path)
            .and_then(|file| read_exact_at(&file, &mut bytes, (start * 16) as u64))
            .map_err(|e| format!("dedupe piece {}: {e}", self.path.display()))?;
        if crc32fast::hash(&bytes) != self.blocks[block].1 {
            return Err(format!(
                "dedupe piece {} is damaged (block {block})",
                self.path.display()
            ));
        }
        let entries: Vec<u128> = bytes
            .chunks_exact(16)
            .map(|c| self.entry(u128::from_le_bytes(c.try_into().unwrap_or([0; 16]))))
            .collect();
        Ok(entries
            .binary_search_by(|e| key_of(*e).cmp(&key))
            .ok()
            .map(|i| second_of(entries[i])))
    }

    fn heap_bytes(&self) -> usize {
        self.bloom.capacity() * 8 + self.blocks.capacity() * 32
    }
}

#[cfg(unix)]
fn read_exact_at(file: &fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(not(unix))]
fn read_exact_at(file: &fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(buf)
}

fn bloom_words(count: usize) -> usize {
    // Whole 512-bit blocks.
    (count * BITS_PER_KEY).div_ceil(512).max(1) * 8
}

/// The 512-bit block of `key` and its seven bit positions in it.
fn bloom_bits(words: usize, key: u128) -> (usize, [u32; 7]) {
    let blocks = (words / 8) as u128;
    let block = (((key as u64) as u128 * blocks) >> 64) as usize;
    let high = (key >> 64) as u64;
    let mut bits = [0u32; 7];
    for (i, bit) in bits.iter_mut().enumerate() {
        *bit = ((high >> (i * 9)) & 511) as u32;
    }
    (block * 8, bits)
}

fn bloom_add(bloom: &mut [u64], key: u128) {
    let (base, bits) = bloom_bits(bloom.len(), key);
    for bit in bits {
        bloom[base + (bit / 64) as usize] |= 1 << (bit % 64);
    }
}

fn bloom_check(bloom: &[u64], key: u128) -> bool {
    let (base, bits) = bloom_bits(bloom.len(), key);
    bits.iter()
        .all(|bit| bloom[base + (bit / 64) as usize] & (1 << (bit % 64)) != 0)
}

/// Writes a piece file from entries handed over in ascending order, without holding them all: entries
/// go to the file block by block, the filter (over their keys) and block index stay in memory. Layout
/// (little-endian): `entries (16 bytes each: acceptance second in the low 32 bits, key above; in 4 KiB
/// blocks) | filter | block index (first entry, CRC32 of the block) | "PHXDDUP2" | count u64 | newest
/// i64 | filter words u64 | blocks u64 | CRC32 of everything after the entries`. The footer is written
/// last, so a piece is complete only once it is renamed into place.
struct PieceWriter {
    tmp: PathBuf,
    file: std::io::BufWriter<fs::File>,
    /// Keys not yet written (at most a block).
    block: Vec<u128>,
    blocks: Vec<(u128, u32)>,
    bloom: Vec<u64>,
    count: u64,
    last: Option<u128>,
}

impl PieceWriter {
    /// A writer for at most `capacity` keys (the filter is sized for it).
    fn new(dir: &Path, capacity: usize) -> std::io::Result<PieceWriter> {
        crate::journal::create_private_dir(dir)?;
        let tmp = dir.join(format!("piece-{}.tmp", crate::seal::random_hex::<8>()));
        let file = crate::journal::owner_only()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        Ok(PieceWriter {
            tmp,
            file: std::io::BufWriter::with_capacity(1 << 16, file),
            block: Vec::with_capacity(BLOCK_KEYS),
            blocks: Vec::new(),
            bloom: vec![0u64; bloom_words(capacity)],
            count: 0,
            last: None,
        })
    }

    /// Adds the next entry (keys strictly ascending: a merge gives each key once, with its newest time).
    fn push(&mut self, entry: u128) -> std::io::Result<()> {
        if self.last.is_some_and(|last| key_of(last) >= key_of(entry)) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "dedupe piece entries out of order",
            ));
        }
        self.last = Some(entry);
        bloom_add(&mut self.bloom, key_of(entry));
        self.block.push(entry);
        self.count += 1;
        if self.block.len() == BLOCK_KEYS {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        let Some(first) = self.block.first().copied() else {
            return Ok(());
        };
        let mut bytes = Vec::with_capacity(self.block.len() * 16);
        for key in &self.block {
            bytes.extend_from_slice(&key.to_le_bytes());
        }
        self.blocks.push((first, crc32fast::hash(&bytes)));
        self.file.write_all(&bytes)?;
        self.block.clear();
        Ok(())
    }

    /// Writes the filter, index and footer, syncs, and renames the file into place.
    fn finish(mut self, dir: &Path, newest: i64) -> std::io::Result<Piece> {
        self.flush_block()?;
        let mut tail = Vec::with_capacity(self.bloom.len() * 8 + self.blocks.len() * 20 + 44);
        for word in &self.bloom {
            tail.extend_from_slice(&word.to_le_bytes());
        }
        for (first, crc) in &self.blocks {
            tail.extend_from_slice(&first.to_le_bytes());
            tail.extend_from_slice(&crc.to_le_bytes());
        }
        tail.extend_from_slice(MAGIC);
        tail.extend_from_slice(&self.count.to_le_bytes());
        tail.extend_from_slice(&newest.to_le_bytes());
        tail.extend_from_slice(&(self.bloom.len() as u64).to_le_bytes());
        tail.extend_from_slice(&(self.blocks.len() as u64).to_le_bytes());
        let crc = crc32fast::hash(&tail);
        tail.extend_from_slice(&crc.to_le_bytes());
        self.file.write_all(&tail)?;
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        // Named by the newest acceptance time (sorted by age) and a random part: never the name of a
        // piece it was merged from.
        let path = dir.join(format!(
            "{:020}-{}{SUFFIX}",
            newest.max(0),
            crate::seal::random_hex::<8>()
        ));
        fs::rename(&self.tmp, &path)?;
        crate::journal::sync_dir(dir)?;
        Ok(Piece {
            path,
            count: self.count,
            newest,
            legacy: None,
            bloom: self.bloom,
            blocks: self.blocks,
        })
    }
}

/// Writes `entries` (sorted, one per key) as a piece file in `dir`; returns the piece (blocking file
/// work).
fn write_piece(dir: &Path, entries: &[u128], newest: i64) -> std::io::Result<Piece> {
    let mut writer = PieceWriter::new(dir, entries.len())?;
    for entry in entries {
        writer.push(*entry)?;
    }
    writer.finish(dir, newest)
}

/// Merges pieces into one (their entries in order; a key in several keeps its newest time; the
/// newest time of them all). Every input block is checked against its CRC: a damaged piece stops the
/// merge instead of being rewritten with fresh checksums over wrong keys.
fn merge_pieces(dir: &Path, inputs: &[(PathBuf, u64, i64)]) -> std::io::Result<Piece> {
    struct Input {
        piece: Piece,
        reader: std::io::BufReader<fs::File>,
        /// The next block to read, and the keys of the current one (reversed, to pop in order).
        next_block: usize,
        keys: Vec<u128>,
    }
    impl Input {
        fn head(&mut self) -> std::io::Result<Option<u128>> {
            if self.keys.is_empty() && self.next_block < self.piece.blocks.len() {
                let start = self.next_block * BLOCK_KEYS;
                let n = (self.piece.count as usize - start).min(BLOCK_KEYS);
                let mut bytes = vec![0u8; n * 16];
                std::io::Read::read_exact(&mut self.reader, &mut bytes)?;
                if crc32fast::hash(&bytes) != self.piece.blocks[self.next_block].1 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "dedupe piece {} is damaged (block {})",
                            self.piece.path.display(),
                            self.next_block
                        ),
                    ));
                }
                self.keys = bytes
                    .chunks_exact(16)
                    .rev()
                    .map(|c| {
                        self.piece
                            .entry(u128::from_le_bytes(c.try_into().unwrap_or([0; 16])))
                    })
                    .collect();
                self.next_block += 1;
            }
            Ok(self.keys.last().copied())
        }
    }
    let newest = inputs
        .iter()
        .map(|(_, _, newest)| *newest)
        .max()
        .unwrap_or(0);
    let mut readers = Vec::with_capacity(inputs.len());
    let mut capacity = 0u64;
    for (path, _, _) in inputs {
        let piece = read_piece(path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        capacity += piece.count;
        readers.push(Input {
            reader: std::io::BufReader::with_capacity(1 << 16, fs::File::open(path)?),
            piece,
            next_block: 0,
            keys: Vec::new(),
        });
    }
    let mut writer = PieceWriter::new(dir, capacity as usize)?;
    loop {
        // Few inputs (four): a linear scan for the smallest key beats a heap.
        let mut smallest: Option<u128> = None;
        for input in readers.iter_mut() {
            if let Some(entry) = input.head()?
                && smallest.is_none_or(|k| key_of(entry) < k)
            {
                smallest = Some(key_of(entry));
            }
        }
        let Some(key) = smallest else {
            break;
        };
        // Every input holding the key gives it up; the newest of its times is kept.
        let mut second = 0u32;
        for input in readers.iter_mut() {
            if let Some(entry) = input.head()?
                && key_of(entry) == key
            {
                second = second.max(second_of(entry));
                input.keys.pop();
            }
        }
        writer.push(key | u128::from(second))?;
    }
    writer.finish(dir, newest)
}

/// Reads a piece's footer, filter and block index (not its keys).
fn read_piece(path: &Path) -> Result<Piece, String> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < 44 {
        return Err("truncated".into());
    }
    let mut fixed = [0u8; 44];
    read_exact_at(&file, &mut fixed, len - 44).map_err(|e| e.to_string())?;
    let legacy = match &fixed[..8] {
        m if m == MAGIC => false,
        m if m == MAGIC_V1 => true,
        _ => return Err("not a dedupe piece".into()),
    };
    let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().unwrap_or([0; 8]));
    let (count, newest, words, nblocks) = (u64_at(8), u64_at(16) as i64, u64_at(24), u64_at(32));
    let tail_len = words
        .checked_mul(8)
        .and_then(|n| n.checked_add(nblocks.checked_mul(20)?))
        .and_then(|n| n.checked_add(44))
        .ok_or("bad footer")?;
    let keys_len = count.checked_mul(16).ok_or("bad footer")?;
    if count.div_ceil(BLOCK_KEYS as u64) != nblocks
        || keys_len.checked_add(tail_len) != Some(len)
        || words == 0
        || words % 8 != 0
    {
        return Err("its sizes do not add up".into());
    }
    let mut tail = vec![0u8; tail_len as usize];
    read_exact_at(&file, &mut tail, keys_len).map_err(|e| e.to_string())?;
    let (body, crc) = tail.split_at(tail.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap_or([0; 4])) {
        return Err("checksum mismatch".into());
    }
    let mut at = 0;
    let mut bloom = Vec::with_capacity(words as usize);
    for _ in 0..words {
        bloom.push(u64::from_le_bytes(
            body[at..at + 8].try_into().unwrap_or([0; 8]),
        ));
        at += 8;
    }
    let mut blocks = Vec::with_capacity(nblocks as usize);
    for _ in 0..nblocks {
        let first = u128::from_le_bytes(body[at..at + 16].try_into().unwrap_or([0; 16]));
        let crc = u32::from_le_bytes(body[at + 16..at + 20].try_into().unwrap_or([0; 4]));
        blocks.push((first, crc));
        at += 20;
    }
    Ok(Piece {
        path: path.to_owned(),
        count,
        newest,
        legacy: legacy.then(|| to_second(newest)),
        bloom,
        blocks,
    })
}

pub(super) struct Dedupe {
    hot: KeySet,
    /// Oldest and newest acceptance time of the hot keys (Unix µs).
    hot_span: Option<(i64, i64)>,
    /// Entries being written to a piece (and their newest acceptance time): still answered from
    /// memory until the piece is in place.
    freezing: Option<(Arc<KeySet>, i64)>,
    pieces: Vec<Piece>,
    key: [u64; 2],
    options: DedupeOptions,
    dir: PathBuf,
    last_prune: i64,
}

/// The hot keys as plain data, for snapshots.
pub(super) struct DedupeSnapshot {
    pub key: [u64; 2],
    /// Hot keys with their acceptance time (Unix µs, to the second). Snapshots written before keys
    /// carried their time hold one time for all, or `occurred_at` in seconds: see `per_key_times`.
    pub entries: Vec<(u128, i64)>,
    /// Whether `entries` carry each key's own acceptance time.
    pub per_key_times: bool,
}

/// Hot keys taken out to be written as a piece (see [`Dedupe::take_hot`]).
pub(super) struct Freezing {
    keys: Arc<KeySet>,
    newest: i64,
}

impl Dedupe {
    /// The index in `dir`: its pieces, and the hash key kept beside them (`hash.key`), created on first
    /// use from `snapshot_key` (a data dir from before pieces kept it only in snapshots) or at random.
    pub(super) fn open(
        dir: &Path,
        snapshot_key: Option<[u64; 2]>,
        options: DedupeOptions,
    ) -> Result<Self, String> {
        let key = Self::hash_key(dir, snapshot_key)
            .map_err(|e| format!("dedupe key in {}: {e}", dir.display()))?;
        if snapshot_key.is_some_and(|k| k != key) {
            return Err(format!(
                "{} does not match the snapshot's dedupe key",
                dir.join(KEY_FILE).display()
            ));
        }
        let mut pieces = Vec::new();
        let entries = fs::read_dir(dir).map_err(|e| e.to_string())?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("keys") => {
                    let piece = read_piece(&path)
                        .map_err(|e| format!("dedupe piece {}: {e}", path.display()))?;
                    pieces.push(piece);
                }
                // A piece whose write was interrupted: its keys are still hot elsewhere.
                Some("tmp") => {
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        pieces.sort_by_key(|p| p.newest);
        Ok(Dedupe {
            hot: KeySet::default(),
            hot_span: None,
            freezing: None,
            pieces,
            key,
            options,
            dir: dir.to_owned(),
            last_prune: 0,
        })
    }

    fn hash_key(dir: &Path, snapshot_key: Option<[u64; 2]>) -> std::io::Result<[u64; 2]> {
        crate::journal::create_private_dir(dir)?;
        let path = dir.join(KEY_FILE);
        let half = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        match fs::read(&path) {
            Ok(bytes) if bytes.len() == 16 => return Ok([half(&bytes[..8]), half(&bytes[8..])]),
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "hash.key is not 16 bytes",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let key = snapshot_key.unwrap_or_else(|| {
            let bytes = crate::seal::random_bytes::<16>();
            [half(&bytes[..8]), half(&bytes[8..])]
        });
        let tmp = dir.join("hash.key.tmp");
        let mut file = crate::journal::owner_only()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(&key[0].to_le_bytes())?;
        file.write_all(&key[1].to_le_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        crate::journal::sync_dir(dir)?;
        Ok(key)
    }

    /// The digest of an id (128 bits; entries keep its top 96, old pieces' filters all of it).
    pub(super) fn key(&self, tenant_id: &str, event_id: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.key[0], self.key[1]);
        // Length-prefix the tenant so ("ab", "c") and ("a", "bc") differ.
        h.write(&(tenant_id.len() as u32).to_le_bytes());
        h.write(tenant_id.as_bytes());
        h.write(event_id.as_bytes());
        h.finish128().as_u128()
    }

    /// The oldest acceptance second that still counts at `at`: a key counts while it was accepted no
    /// longer than the horizon plus the slack before `at`.
    fn cutoff(&self, at: Timestamp) -> u32 {
        let keep = (self.options.horizon + self.options.slack).as_micros();
        let oldest = i128::from(at.as_microsecond()) - keep;
        to_second(oldest.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// Whether `digest` was accepted no longer than the horizon (plus slack) before `at`.
    pub(super) fn was_seen(&self, digest: u128, at: Timestamp) -> Result<bool, String> {
        self.seen(digest, self.cutoff(at))
    }

    /// Whether `digest` was accepted at or after second `cutoff`. Every place a key may be is asked
    /// (a key accepted again after its time ran out is kept twice until the older copy's piece goes).
    fn seen(&self, digest: u128, cutoff: u32) -> Result<bool, String> {
        let probe = Entry(key_of(digest));
        if self
            .hot
            .get(&probe)
            .is_some_and(|e| second_of(e.0) >= cutoff)
        {
            return Ok(true);
        }
        if let Some((freezing, _)) = &self.freezing
            && freezing
                .get(&probe)
                .is_some_and(|e| second_of(e.0) >= cutoff)
        {
            return Ok(true);
        }
        for piece in self.pieces.iter().rev() {
            if piece.newest_second() < cutoff {
                // Sorted by their newest key: this one and every older one count for nothing.
                break;
            }
            if piece.may_contain(digest)
                && piece
                    .contains(digest)?
                    .is_some_and(|second| second >= cutoff)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Claims `digest`, accepted at `accepted_at`: true the first time (the event is new), false for a
    /// duplicate; an error when a piece that might hold it cannot be read.
    pub(super) fn claim(&mut self, digest: u128, accepted_at: Timestamp) -> Result<bool, String> {
        if self.seen(digest, self.cutoff(accepted_at))? {
            return Ok(false);
        }
        self.remember(digest, accepted_at);
        Ok(true)
    }

    /// Keeps `digest` as accepted at `at` in the hot set (replacing an older time of it).
    fn remember(&mut self, digest: u128, at: Timestamp) {
        let at = at.as_microsecond();
        self.hot
            .replace(Entry(key_of(digest) | u128::from(to_second(at))));
        self.widen_span(at);
    }

    /// Takes acceptance time `at` (Unix µs) into the hot keys' oldest..newest span.
    fn widen_span(&mut self, at: i64) {
        self.hot_span = Some(match self.hot_span {
            None => (at, at),
            Some((oldest, newest)) => (oldest.min(at), newest.max(at)),
        });
    }

    /// Claims `digest` during replay: what the log says was accepted is remembered (a piece that
    /// cannot be read is not trusted to hold it).
    pub(super) fn replay(&mut self, digest: u128, accepted_at: Timestamp) {
        if self.claim(digest, accepted_at).is_err() {
            self.remember(digest, accepted_at);
        }
    }

    /// Gives a claim back (its write failed, so the event was never accepted).
    pub(super) fn release(&mut self, digest: u128) {
        self.hot.remove(&Entry(key_of(digest)));
    }

    /// Whether the hot keys should become a piece now: there are enough of them, or the oldest has
    /// been hot for an eighth of the horizon.
    pub(super) fn should_freeze(&self, now: Timestamp) -> bool {
        if self.freezing.is_some() {
            return false;
        }
        let span = self.options.horizon.as_micros() as i64 / 8;
        self.hot.len() >= self.options.hot_keys
            || self
                .hot_span
                .is_some_and(|(oldest, _)| now.as_microsecond() - oldest >= span)
    }

    /// Takes the hot keys out to be written as a piece; they keep answering from memory until
    /// [`Dedupe::install`]. Call only while no claim is waiting for its write (a claim that fails after
    /// this could not be given back).
    ///
    /// Cheap: the set itself moves out (a fresh one of the same capacity takes its place; its pages are
    /// touched only as keys arrive), and the keys are sorted by [`Dedupe::write`], off every lock.
    pub(super) fn take_hot(&mut self) -> Option<Freezing> {
        let (_, newest) = self.hot_span.take()?;
        let fresh = KeySet::with_capacity_and_hasher(self.hot.capacity(), Default::default());
        let keys = Arc::new(std::mem::replace(&mut self.hot, fresh));
        self.freezing = Some((keys.clone(), newest));
        Some(Freezing { keys, newest })
    }

    /// Writes taken keys as a piece file (blocking file work; no lock needed).
    pub(super) fn write(dir: &Path, freezing: &Freezing) -> std::io::Result<Piece> {
        let mut entries: Vec<u128> = freezing.keys.iter().map(|e| e.0).collect();
        // One entry per key, so ordering entries orders keys.
        entries.sort_unstable();
        write_piece(dir, &entries, freezing.newest)
    }

    /// Puts a written piece in place of the keys it was made from; on `None` (the write failed) the
    /// keys go back to the hot set (where a key accepted again meanwhile keeps its newer time).
    pub(super) fn install(&mut self, piece: Option<Piece>) {
        let Some((keys, newest)) = self.freezing.take() else {
            return;
        };
        match piece {
            Some(piece) => {
                self.pieces.push(piece);
                self.pieces.sort_by_key(|p| p.newest);
            }
            None => {
                for entry in keys.iter() {
                    if self
                        .hot
                        .get(entry)
                        .is_none_or(|e| second_of(e.0) < second_of(entry.0))
                    {
                        self.hot.replace(*entry);
                    }
                }
                self.widen_span(newest);
            }
        }
    }

    /// Pieces worth merging: four or more of the same size class whose newest keys fall in the same
    /// quarter of the horizon (so a merged piece outlives its oldest key by at most that quarter).
    /// Merging keeps the pieces a lookup probes to a few per size class however long the horizon.
    pub(super) fn merge_candidates(&self) -> Option<Vec<(PathBuf, u64, i64)>> {
        let quarter = (self.options.horizon.as_micros() as i64 / 4).max(1);
        let level = |count: u64| (count / self.options.hot_keys as u64).max(1).ilog(4);
        let mut groups: std::collections::BTreeMap<(i64, u32), Vec<&Piece>> = Default::default();
        for piece in &self.pieces {
            groups
                .entry((piece.newest.div_euclid(quarter), level(piece.count)))
                .or_default()
                .push(piece);
        }
        groups
            .into_values()
            .find(|group| group.len() >= MERGE_FANIN)
            .map(|group| {
                group
                    .iter()
                    .take(MERGE_FANIN)
                    .map(|p| (p.path.clone(), p.count, p.newest))
                    .collect()
            })
    }

    /// Merges pieces (blocking file work; no lock needed).
    pub(super) fn merge(dir: &Path, inputs: &[(PathBuf, u64, i64)]) -> std::io::Result<Piece> {
        merge_pieces(dir, inputs)
    }

    /// Puts a merged piece in place of its inputs and deletes their files.
    pub(super) fn install_merged(&mut self, merged: Piece, inputs: &[(PathBuf, u64, i64)]) {
        self.pieces
            .retain(|p| !inputs.iter().any(|(path, _, _)| *path == p.path));
        self.pieces.push(merged);
        self.pieces.sort_by_key(|p| p.newest);
        for (path, _, _) in inputs {
            if let Err(e) = crate::journal::remove_if_exists(path) {
                tracing::warn!(path = %path.display(), error = %e, "could not delete a merged dedupe piece");
            }
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes the pieces none of whose keys counts at `at` (their newest key accepted longer ago than
    /// the horizon plus the slack): whole files, nothing scanned. Cheap to call often. `at` must be no
    /// later than the time of any claim still to come (a cluster node gives its fold's time), or a key
    /// that would still count for it could be gone.
    pub(super) fn prune(&mut self, at: Timestamp) {
        let at_s = at.as_second();
        if (at_s - self.last_prune).abs() < 60 {
            return;
        }
        self.last_prune = at_s;
        let cutoff = self.cutoff(at);
        self.pieces.retain(|p| {
            if p.newest_second() >= cutoff {
                return true;
            }
            if let Err(e) = crate::journal::remove_if_exists(&p.path) {
                tracing::warn!(path = %p.path.display(), error = %e, "could not delete an expired dedupe piece");
            }
            false
        });
    }

    /// Keys remembered (hot, being frozen, and in pieces).
    pub(super) fn len(&self) -> usize {
        self.hot.len()
            + self.freezing.as_ref().map_or(0, |(f, _)| f.len())
            + self.pieces.iter().map(|p| p.count as usize).sum::<usize>()
    }

    /// Pieces on disk.
    pub(super) fn pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Heap bytes held by the pieces' filters and block indexes.
    pub(super) fn piece_bytes(&self) -> usize {
        self.pieces.iter().map(Piece::heap_bytes).sum()
    }

    /// The hot keys (and those being frozen), each with its acceptance time, for a snapshot.
    pub(super) fn snapshot(&self) -> DedupeSnapshot {
        let mut entries: Vec<(u128, i64)> = self
            .hot
            .iter()
            .chain(self.freezing.iter().flat_map(|(f, _)| f.iter()))
            .map(|e| {
                let second = i64::from(second_of(e.0)) + TIME_EPOCH_S;
                (key_of(e.0), second * 1_000_000)
            })
            .collect();
        entries.sort_unstable();
        DedupeSnapshot {
            key: self.key,
            entries,
            per_key_times: true,
        }
    }

    /// The index a snapshot saw: its hash key and hot keys (with their acceptance times), with the
    /// pieces in `dir`. Keys of a snapshot from before they carried their time are taken as accepted
    /// at `undated` (no earlier than any of them was: kept longer, never shorter).
    pub(super) fn restore(
        snapshot: DedupeSnapshot,
        dir: &Path,
        options: DedupeOptions,
        undated: Timestamp,
    ) -> Result<Self, String> {
        let mut dedupe = Self::open(dir, Some(snapshot.key), options)?;
        for (digest, at) in snapshot.entries {
            let at = match snapshot.per_key_times {
                true => Timestamp::from_microsecond(at).unwrap_or(undated),
                false => undated,
            };
            // A key both hot and being frozen (accepted again after its time ran out) keeps its newer
            // time.
            if dedupe
                .hot
                .get(&Entry(key_of(digest)))
                .is_none_or(|e| second_of(e.0) < to_second(at.as_microsecond()))
            {
                dedupe.remember(digest, at);
            }
        }
        Ok(dedupe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DedupeOptions {
        DedupeOptions {
            horizon: SignedDuration::from_hours(1),
            slack: SignedDuration::from_mins(6),
            hot_keys: 100,
        }
    }

    #[test]
    fn claims_once_across_hot_keys_and_pieces_and_forgets_whole_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dedupe::open(dir.path(), None, options()).unwrap();
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let k = d.key("t", "e1");
        assert_ne!(k, d.key("t2", "e1"));
        assert_ne!(d.key("t", "e"), d.key("te", ""));
        assert!(d.claim(k, now).unwrap());
        assert!(!d.claim(k, now).unwrap());
        d.release(k);
        assert!(d.claim(k, now).unwrap());
        let keys: Vec<u128> = (0..1000).map(|i| d.key("t", &format!("id-{i}"))).collect();
        for (i, key) in keys.iter().enumerate() {
            let at = now + SignedDuration::from_secs(i as i64);
            assert!(d.claim(*key, at).unwrap());
            if d.should_freeze(at) {
                let f = d.take_hot().unwrap();
                let piece = Dedupe::write(d.dir(), &f).unwrap();
                d.install(Some(piece));
            }
        }
        assert!(d.pieces() >= 9, "{}", d.pieces());
        assert_eq!(d.len(), 1001);
        for key in &keys {
            assert!(!d.claim(*key, now).unwrap(), "remembered");
        }
        // New keys are never refused (the filter's false positives are checked on disk).
        for i in 0..5000 {
            let key = d.key("t", &format!("new-{i}"));
            assert!(!d.was_seen(key, now).unwrap());
        }
        // Reopened from the directory (as after a restart), the pieces answer the same.
        if let Some(f) = d.take_hot() {
            let piece = Dedupe::write(d.dir(), &f).unwrap();
            d.install(Some(piece));
        }
        let again = Dedupe::open(dir.path(), None, options()).unwrap();
        assert_eq!(again.key, d.key, "the hash key is kept with the pieces");
        assert_eq!(again.pieces(), d.pieces());
        assert!(keys.iter().all(|k| again.was_seen(*k, now).unwrap()));
        // Past the horizon (plus skew) from their newest key, pieces go whole.
        let before = d.pieces();
        d.prune(now + SignedDuration::from_mins(61));
        assert_eq!(d.pieces(), before);
        d.last_prune = 0;
        d.prune(now + SignedDuration::from_hours(3));
        assert_eq!(d.pieces(), 0);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only hash.key is left"
        );
    }

    #[test]
    fn a_damaged_piece_is_an_error_not_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dedupe::open(dir.path(), None, options()).unwrap();
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let keys: Vec<u128> = (0..600).map(|i| d.key("t", &format!("id-{i}"))).collect();
        for key in &keys {
            d.claim(*key, now).unwrap();
        }
        let f = d.take_hot().unwrap();
        let piece = Dedupe::write(d.dir(), &f).unwrap();
        let path = piece.path.clone();
        d.install(Some(piece));
        let mut bytes = fs::read(&path).unwrap();
        // The last key's bytes (keys come first in the file).
        let last = 599 * 16 + 3;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        // The last block is damaged: a lookup that needs it fails instead of guessing.
        let in_last_block = f.keys.iter().map(|e| e.0).max().unwrap();
        assert!(d.claim(in_last_block, now).is_err());
        // A damaged footer is refused at open.
        let footer = bytes.len() - 20;
        bytes[footer] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(Dedupe::open(dir.path(), None, options()).is_err());
    }

    #[test]
    fn small_pieces_merge_and_still_answer_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dedupe::open(dir.path(), None, options()).unwrap();
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let keys: Vec<u128> = (0..1000).map(|i| d.key("t", &format!("id-{i}"))).collect();
        for chunk in keys.chunks(100) {
            for key in chunk {
                assert!(d.claim(*key, now).unwrap());
            }
            let f = d.take_hot().unwrap();
            let piece = Dedupe::write(d.dir(), &f).unwrap();
            d.install(Some(piece));
        }
        assert_eq!(d.pieces(), 10);
        while let Some(inputs) = d.merge_candidates() {
            let merged = Dedupe::merge(d.dir(), &inputs).unwrap();
            d.install_merged(merged, &inputs);
        }
        assert!(d.pieces() < 10, "{} pieces", d.pieces());
        assert_eq!(d.len(), 1000);
        assert!(keys.iter().all(|k| d.was_seen(*k, now).unwrap()));
        for i in 0..2000 {
            assert!(!d.was_seen(d.key("t", &format!("new-{i}")), now).unwrap());
        }
        let files = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "keys")
            })
            .count();
        assert_eq!(files, d.pieces(), "merged inputs are deleted");
    }

    #[test]
    fn a_restored_index_hashes_and_remembers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dedupe::open(dir.path(), None, options()).unwrap();
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let k = d.key("t", "e1");
        assert!(d.claim(k, now).unwrap());
        let mut r = Dedupe::restore(d.snapshot(), dir.path(), options(), now).unwrap();
        assert_eq!(r.key("t", "e1"), k);
        assert!(!r.claim(k, now).unwrap());
    }

    /// Freezes whatever is hot into a piece.
    fn freeze(d: &mut Dedupe) {
        if let Some(f) = d.take_hot() {
            let piece = Dedupe::write(d.dir(), &f).unwrap();
            d.install(Some(piece));
        }
    }

    #[test]
    fn an_id_counts_for_the_horizon_plus_slack_after_its_acceptance_wherever_it_is_kept() {
        let t0: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        // Horizon 1 h, slack 6 min.
        let keep = SignedDuration::from_mins(66);
        let before_end = t0 + keep - SignedDuration::from_secs(1);
        let after_end = t0 + keep + SignedDuration::from_secs(2);
        for place in ["hot", "piece", "merged", "restored"] {
            let dir = tempfile::tempdir().unwrap();
            let restored_dir = tempfile::tempdir().unwrap();
            let mut d = Dedupe::open(dir.path(), None, options()).unwrap();
            let k = d.key("t", "retried");
            assert!(d.claim(k, t0).unwrap());
            match place {
                "hot" => {}
                "piece" => freeze(&mut d),
                "merged" => {
                    freeze(&mut d);
                    for i in 0..3 {
                        let other = d.key("t", &format!("other-{i}"));
                        assert!(d.claim(other, t0 + SignedDuration::from_secs(i)).unwrap());
                        freeze(&mut d);
                    }
                    let inputs = d.merge_candidates().expect("four small pieces merge");
                    let merged = Dedupe::merge(d.dir(), &inputs).unwrap();
                    d.install_merged(merged, &inputs);
                    assert_eq!(d.pieces(), 1);
                }
                _ => {
                    // Restored long after (a snapshot loaded by a node started later).
                    let snap = d.snapshot();
                    d = Dedupe::restore(snap, restored_dir.path(), options(), after_end).unwrap();
                }
            }
            // Whatever the time of a maintenance pass, pruning by the time of the asking claims
            // keeps what they need.
            d.prune(before_end);
            assert!(
                !d.claim(k, before_end).unwrap(),
                "{place}: a duplicate until the end"
            );
            assert!(d.claim(k, after_end).unwrap(), "{place}: new after it");
            assert!(
                !d.claim(k, after_end).unwrap(),
                "{place}: and remembered anew"
            );
            // The new acceptance counts from its own time, wherever the older copy still is.
            freeze(&mut d);
            let again_end = after_end + keep;
            assert!(
                d.was_seen(k, again_end - SignedDuration::from_secs(1))
                    .unwrap()
            );
            assert!(
                !d.was_seen(k, again_end + SignedDuration::from_secs(2))
                    .unwrap()
            );
        }
    }

    #[test]
    fn two_indexes_decide_alike_however_their_keys_are_kept() {
        // The same claims, in the same order at the same times (as every node folds the log), into an
        // index that freezes, merges and prunes at odd moments and one that keeps everything hot and
        // is restored from its own snapshot halfway: every answer is the same.
        let t0: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let (dir_a, dir_b, dir_c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let mut a = Dedupe::open(dir_a.path(), None, options()).unwrap();
        let b_options = DedupeOptions {
            hot_keys: usize::MAX,
            ..options()
        };
        let mut b = Dedupe::open(dir_b.path(), Some(a.key), b_options).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut at = t0;
        let (mut new, mut duplicates) = (0, 0);
        for step in 0..20_000 {
            // About 4 hours in all (horizon 1 h), ids drawn from a small pool so they come back
            // before, near and after their end.
            at += SignedDuration::from_millis((next() % 1_500) as i64);
            let id = format!("id-{}", next() % 3_000);
            let k = a.key("t", &id);
            let (x, y) = (a.claim(k, at).unwrap(), b.claim(k, at).unwrap());
            assert_eq!(x, y, "step {step}: {id} at {at}");
            if x {
                new += 1
            } else {
                duplicates += 1
            }
            match next() % 100 {
                0..=2 => freeze(&mut a),
                3 => {
                    if let Some(inputs) = a.merge_candidates() {
                        let merged = Dedupe::merge(a.dir(), &inputs).unwrap();
                        a.install_merged(merged, &inputs);
                    }
                }
                4 => a.prune(at),
                _ => {}
            }
            if step == 10_000 {
                b = Dedupe::restore(b.snapshot(), dir_c.path(), b_options, at).unwrap();
            }
        }
        assert!(
            new > 3_000 && duplicates > 3_000,
            "{new} new, {duplicates} duplicates"
        );
        assert!(a.pieces() > 1, "the first one kept pieces");
    }

    #[test]
    fn a_merge_keeps_the_newest_time_of_a_key_found_in_several_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dedupe::open(dir.path(), None, options()).unwrap();
        let t0: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let k = d.key("t", "twice");
        assert!(d.claim(k, t0).unwrap());
        freeze(&mut d);
        // Accepted again after its time ran out, and kept in a second piece.
        let t1 = t0 + SignedDuration::from_mins(70);
        assert!(d.claim(k, t1).unwrap());
        freeze(&mut d);
        for i in 0..2 {
            assert!(d.claim(d.key("t", &format!("x{i}")), t1).unwrap());
            freeze(&mut d);
        }
        let mut inputs = d.merge_candidates();
        if inputs.is_none() {
            // The first piece is in an older quarter of the horizon: merge the four by hand.
            inputs = Some(
                d.pieces
                    .iter()
                    .map(|p| (p.path.clone(), p.count, p.newest))
                    .collect(),
            );
        }
        let inputs = inputs.unwrap();
        let merged = Dedupe::merge(d.dir(), &inputs).unwrap();
        assert_eq!(merged.count, 3, "the key once");
        d.install_merged(merged, &inputs);
        assert!(d.was_seen(k, t1 + SignedDuration::from_mins(65)).unwrap());
        assert!(!d.was_seen(k, t1 + SignedDuration::from_mins(67)).unwrap());
    }

    #[test]
    fn pieces_written_before_keys_carried_their_time_are_read_with_their_newest() {
        // A `PHXDDUP1` piece as the earlier code wrote it: whole 128-bit digests, the filter over
        // them, no times.
        let dir = tempfile::tempdir().unwrap();
        let d = Dedupe::open(dir.path(), None, options()).unwrap();
        let newest: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let mut keys: Vec<u128> = (0..700).map(|i| d.key("t", &format!("old-{i}"))).collect();
        keys.sort_unstable();
        let mut bloom = vec![0u64; bloom_words(keys.len())];
        let mut body = Vec::new();
        let mut blocks = Vec::new();
        for chunk in keys.chunks(BLOCK_KEYS) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|k| k.to_le_bytes()).collect();
            blocks.push((chunk[0], crc32fast::hash(&bytes)));
            body.extend_from_slice(&bytes);
        }
        let mut tail = Vec::new();
        for k in &keys {
            bloom_add(&mut bloom, *k);
        }
        for w in &bloom {
            tail.extend_from_slice(&w.to_le_bytes());
        }
        for (first, crc) in &blocks {
            tail.extend_from_slice(&first.to_le_bytes());
            tail.extend_from_slice(&crc.to_le_bytes());
        }
        tail.extend_from_slice(MAGIC_V1);
        tail.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        tail.extend_from_slice(&newest.as_microsecond().to_le_bytes());
        tail.extend_from_slice(&(bloom.len() as u64).to_le_bytes());
        tail.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
        let crc = crc32fast::hash(&tail);
        tail.extend_from_slice(&crc.to_le_bytes());
        body.extend_from_slice(&tail);
        fs::write(
            dir.path().join(format!("00000000000000000001-old{SUFFIX}")),
            &body,
        )
        .unwrap();
        let mut d = Dedupe::open(dir.path(), None, options()).unwrap();
        assert_eq!(d.pieces(), 1);
        let within = newest + SignedDuration::from_mins(65);
        assert!(keys.iter().all(|k| d.was_seen(*k, within).unwrap()));
        assert!(!d.was_seen(d.key("t", "never"), within).unwrap());
        let after = newest + SignedDuration::from_mins(67);
        assert!(keys.iter().all(|k| !d.was_seen(*k, after).unwrap()));
        // Merged with new pieces, its keys keep that time.
        for i in 0..3 {
            assert!(d.claim(d.key("t", &format!("new-{i}")), newest).unwrap());
            freeze(&mut d);
        }
        // (Of another size class than the small ones: merged by hand.)
        let inputs: Vec<_> = d
            .pieces
            .iter()
            .map(|p| (p.path.clone(), p.count, p.newest))
            .collect();
        let merged = Dedupe::merge(d.dir(), &inputs).unwrap();
        d.install_merged(merged, &inputs);
        assert_eq!(d.pieces(), 1);
        assert!(d.pieces[0].legacy.is_none(), "written in the current form");
        assert!(keys.iter().all(|k| d.was_seen(*k, within).unwrap()));
        assert!(keys.iter().all(|k| !d.was_seen(*k, after).unwrap()));
    }

    #[test]
    fn keys_of_a_snapshot_without_their_times_count_from_the_time_given() {
        let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let d = Dedupe::open(dir.path(), None, options()).unwrap();
        let k = d.key("t", "old");
        let undated: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        // (Older snapshots held `occurred_at` in seconds here, or one time for all.)
        let snapshot = DedupeSnapshot {
            key: d.key,
            entries: vec![(k, 1_700_000_000)],
            per_key_times: false,
        };
        let r = Dedupe::restore(snapshot, other.path(), options(), undated).unwrap();
        assert!(
            r.was_seen(k, undated + SignedDuration::from_mins(65))
                .unwrap()
        );
        assert!(
            !r.was_seen(k, undated + SignedDuration::from_mins(67))
                .unwrap()
        );
    }
}
