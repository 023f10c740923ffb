//! The idempotency index: which `(tenant, event_id)` pairs were accepted, for as long as a retry of
//! them could still arrive inside the dedupe horizon. Keys are 128-bit SipHash-1-3 digests under a secret
//! random key (kept in snapshots), so memory per key is fixed whatever the id's length and ids cannot be
//! chosen to collide.
//!
//! Memory is bounded by the recent part only:
//! - **Hot**: the keys accepted most recently, in a hash set, up to [`DedupeOptions::hot_keys`] (or for at
//!   most an eighth of the horizon). Snapshots hold these (and nothing else of the index).
//! - **Pieces**: [`Dedupe::freeze`] turns the hot keys into an immutable file under `dedupe/` (sorted keys
//!   in checksummed 4 KiB blocks), of which memory keeps a blocked Bloom filter (12 bits a key) and the
//!   first key of every block: about 1.6 bytes a key. A lookup probes one cache line per piece and reads
//!   one block from disk only on a filter hit (about 1% of new keys per piece).
//! - **Expiry** drops whole pieces: a piece goes once its newest key was accepted longer ago than the
//!   horizon plus the allowed clock skew, whatever `occurred_at` its events (or their retries) carry.
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

const MAGIC: &[u8; 8] = b"PHXDDUP1";
const SUFFIX: &str = ".keys";
const KEY_FILE: &str = "hash.key";
/// Pieces merged at once.
const MERGE_FANIN: usize = 4;
/// Keys per on-disk block (4 KiB).
const BLOCK_KEYS: usize = 256;
/// Bloom filter bits per key.
const BITS_PER_KEY: usize = 12;
/// Events may be stamped this far ahead of the server's clock (SPEC §5), so a key is kept this much
/// longer than the horizon after its acceptance.
const FUTURE_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// The keys are already uniform random bits: hash them by their low 64 bits.
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
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type KeySet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// Settings of the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DedupeOptions {
    pub horizon: SignedDuration,
    /// Hot keys before they are frozen into a piece.
    pub hot_keys: usize,
}

/// One frozen piece: its filter and block index in memory, its keys on disk.
pub(super) struct Piece {
    path: PathBuf,
    count: u64,
    /// The newest acceptance time of its keys (Unix µs).
    newest: i64,
    bloom: Vec<u64>,
    /// The first key and the CRC32 of every block (the keys start the file).
    blocks: Vec<(u128, u32)>,
}

impl Piece {
    fn may_contain(&self, key: u128) -> bool {
        bloom_check(&self.bloom, key)
    }

    /// Reads the one block that could hold `key`. An error when the file cannot be read or the block
    /// fails its checksum: the answer is unknown, never guessed.
    fn contains(&self, key: u128) -> Result<bool, String> {
        let block = self.blocks.partition_point(|(first, _)| *first <= key);
        if block == 0 {
            return Ok(false);
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
        let keys: Vec<u128> = bytes
            .chunks_exact(16)
            .map(|c| u128::from_le_bytes(c.try_into().unwrap_or([0; 16])))
            .collect();
        Ok(keys.binary_search(&key).is_ok())
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

/// Writes a piece file from keys handed over in ascending order, without holding them all: keys go to
/// the file block by block, the filter and block index stay in memory. Layout (little-endian):
/// `keys (16 bytes each, in 4 KiB blocks) | filter | block index (first key, CRC32 of the block) |
/// "PHXDDUP1" | count u64 | newest i64 | filter words u64 | blocks u64 | CRC32 of everything after the
/// keys`. The footer is written last, so a piece is complete only once it is renamed into place.
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

    /// Adds the next key; a key equal to the previous one is skipped (merged pieces may overlap).
    fn push(&mut self, key: u128) -> std::io::Result<()> {
        if self.last == Some(key) {
            return Ok(());
        }
        self.last = Some(key);
        bloom_add(&mut self.bloom, key);
        self.block.push(key);
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
            bloom: self.bloom,
            blocks: self.blocks,
        })
    }
}

/// Writes `keys` (sorted) as a piece file in `dir`; returns the piece (blocking file work).
fn write_piece(dir: &Path, keys: &[u128], newest: i64) -> std::io::Result<Piece> {
    let mut writer = PieceWriter::new(dir, keys.len())?;
    for key in keys {
        writer.push(*key)?;
    }
    writer.finish(dir, newest)
}

/// Merges pieces into one (their keys in order, repeats dropped; the newest time of them all). Every
/// input block is checked against its CRC: a damaged piece stops the merge instead of being rewritten
/// with fresh checksums over wrong keys.
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
                    .map(|c| u128::from_le_bytes(c.try_into().unwrap_or([0; 16])))
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
        // Few inputs (four): a linear scan for the smallest head beats a heap.
        let mut smallest: Option<(usize, u128)> = None;
        for (i, input) in readers.iter_mut().enumerate() {
            if let Some(key) = input.head()?
                && smallest.is_none_or(|(_, k)| key < k)
            {
                smallest = Some((i, key));
            }
        }
        let Some((i, key)) = smallest else {
            break;
        };
        writer.push(key)?;
        readers[i].keys.pop();
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
    if &fixed[..8] != MAGIC {
        return Err("not a dedupe piece".into());
    }
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
        bloom,
        blocks,
    })
}

pub(super) struct Dedupe {
    hot: KeySet,
    /// Oldest and newest acceptance time of the hot keys (Unix µs).
    hot_span: Option<(i64, i64)>,
    /// Keys being written to a piece (and their newest acceptance time): still answered from memory
    /// until the piece is in place.
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
    /// Hot keys with their acceptance time (Unix µs; older snapshots hold `occurred_at` in seconds
    /// here, which only matters for when the key freezes).
    pub entries: Vec<(u128, i64)>,
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

    pub(super) fn key(&self, tenant_id: &str, event_id: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.key[0], self.key[1]);
        // Length-prefix the tenant so ("ab", "c") and ("a", "bc") differ.
        h.write(&(tenant_id.len() as u32).to_le_bytes());
        h.write(tenant_id.as_bytes());
        h.write(event_id.as_bytes());
        h.finish128().as_u128()
    }

    /// Whether `key` was accepted before (within what the index remembers).
    pub(super) fn was_seen(&self, key: u128) -> Result<bool, String> {
        self.seen(key)
    }

    fn seen(&self, key: u128) -> Result<bool, String> {
        if self.hot.contains(&key) {
            return Ok(true);
        }
        if let Some((freezing, _)) = &self.freezing
            && freezing.contains(&key)
        {
            return Ok(true);
        }
        for piece in self.pieces.iter().rev() {
            if piece.may_contain(key) && piece.contains(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Claims `key`, accepted at `accepted_at`: true the first time (the event is new), false for a
    /// duplicate; an error when a piece that might hold it cannot be read.
    pub(super) fn claim(&mut self, key: u128, accepted_at: Timestamp) -> Result<bool, String> {
        if self.seen(key)? {
            return Ok(false);
        }
        self.hot.insert(key);
        self.widen_span(accepted_at.as_microsecond());
        Ok(true)
    }

    /// Takes acceptance time `at` (Unix µs) into the hot keys' oldest..newest span.
    fn widen_span(&mut self, at: i64) {
        self.hot_span = Some(match self.hot_span {
            None => (at, at),
            Some((oldest, newest)) => (oldest.min(at), newest.max(at)),
        });
    }

    /// Claims `key` during replay: what the log says was accepted is remembered (a piece that cannot
    /// be read is not trusted to hold it).
    pub(super) fn replay(&mut self, key: u128, accepted_at: Timestamp) {
        if self.claim(key, accepted_at).is_err() {
            self.hot.insert(key);
            self.widen_span(accepted_at.as_microsecond());
        }
    }

    /// Gives a claim back (its write failed, so the event was never accepted).
    pub(super) fn release(&mut self, key: u128) {
        self.hot.remove(&key);
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
        let mut keys: Vec<u128> = freezing.keys.iter().copied().collect();
        keys.sort_unstable();
        write_piece(dir, &keys, freezing.newest)
    }

    /// Puts a written piece in place of the keys it was made from; on `None` (the write failed) the
    /// keys go back to the hot set.
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
                self.hot.extend(keys.iter().copied());
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

    /// Deletes the pieces no retry can reach any more (their newest key accepted longer ago than the
    /// horizon plus the clock skew): whole files, nothing scanned. Cheap to call often.
    pub(super) fn prune(&mut self, now: Timestamp) {
        let now_s = now.as_second();
        if now_s - self.last_prune < 60 {
            return;
        }
        self.last_prune = now_s;
        let oldest = (now - self.options.horizon - FUTURE_SKEW).as_microsecond();
        self.pieces.retain(|p| {
            if p.newest >= oldest {
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

    /// The hot keys (and those being frozen), for a snapshot.
    pub(super) fn snapshot(&self) -> DedupeSnapshot {
        let stamp = self.hot_span.map_or(0, |(_, newest)| newest);
        let mut entries: Vec<(u128, i64)> = self
            .hot
            .iter()
            .chain(self.freezing.iter().flat_map(|(f, _)| f.iter()))
            .map(|k| (*k, stamp))
            .collect();
        entries.sort_unstable();
        DedupeSnapshot {
            key: self.key,
            entries,
        }
    }

    /// The index a snapshot saw: its hash key and hot keys, with the pieces in `dir`.
    pub(super) fn restore(
        snapshot: DedupeSnapshot,
        dir: &Path,
        options: DedupeOptions,
        now: Timestamp,
    ) -> Result<Self, String> {
        let mut dedupe = Self::open(dir, Some(snapshot.key), options)?;
        let now = now.as_microsecond();
        for (key, _) in snapshot.entries {
            dedupe.hot.insert(key);
        }
        if !dedupe.hot.is_empty() {
            // When they were accepted is not kept per key: count from now, so they freeze within an
            // eighth of the horizon (their pieces then live a horizon from now: longer, never shorter).
            dedupe.hot_span = Some((now, now));
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
            assert!(!d.seen(key).unwrap());
        }
        // Reopened from the directory (as after a restart), the pieces answer the same.
        if let Some(f) = d.take_hot() {
            let piece = Dedupe::write(d.dir(), &f).unwrap();
            d.install(Some(piece));
        }
        let again = Dedupe::open(dir.path(), None, options()).unwrap();
        assert_eq!(again.key, d.key, "the hash key is kept with the pieces");
        assert_eq!(again.pieces(), d.pieces());
        assert!(keys.iter().all(|k| again.seen(*k).unwrap()));
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
        let in_last_block = *f.keys.iter().max().unwrap();
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
        assert!(keys.iter().all(|k| d.seen(*k).unwrap()));
        for i in 0..2000 {
            assert!(!d.seen(d.key("t", &format!("new-{i}"))).unwrap());
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
}
