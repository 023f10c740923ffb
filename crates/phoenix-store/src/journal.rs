//! The durable append-only journal with group commit. One writer thread owns the file: appends from any
//! number of tasks queue up, the thread writes everything queued in one go, issues one `fdatasync`, and
//! only then answers each caller. Durability costs latency, not throughput, and no blocking file work
//! ever runs on the async runtime.
//!
//! Frame format: `len: u32 LE | crc32(payload): u32 LE | payload`. A crash can only tear the tail (we
//! append and sync in order), so replay stops at the first incomplete or corrupt frame and truncates it.
//!
//! A journal is one file ([`Journal::open`]) or a directory of *segments* ([`Journal::open_segmented`]):
//! files named by the log offset they start at (`00000000000000000000.log`), each one continuing the
//! last. Offsets are global byte positions across segments. The writer starts a new segment, at a group
//! boundary, once the current one holds `segment_bytes`; whole old segments can then be deleted once a
//! snapshot covers them ([`remove_segments_before`]), so the log's size is bounded by retention.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Bytes before each record's payload (length and checksum).
pub const HEADER: usize = 8;
/// A single record larger than this is refused (records are configs and events, all far smaller).
pub const MAX_RECORD: usize = 16 << 20;
/// Upper bound on bytes written per group, so one sync never waits behind an unbounded queue.
const MAX_GROUP_BYTES: usize = 8 << 20;

/// Why an append did not become durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("journal is unavailable: {0}")]
    Unavailable(String),
    #[error("record of {0} bytes exceeds the journal's limit")]
    TooLarge(usize),
}

/// Where the writer puts frames: one file forever, or segments that roll over.
struct Target {
    file: File,
    /// `Some` for a segmented journal: the directory, the size at which to roll, and the offset the
    /// current segment starts at.
    segments: Option<(PathBuf, u64, u64)>,
}

/// Default size of a log segment.
pub const SEGMENT_BYTES: u64 = 64 << 20;

const SEGMENT_SUFFIX: &str = ".log";

/// The path of the segment starting at `start`.
pub fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}{SEGMENT_SUFFIX}"))
}

/// One segment file of a segmented journal.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    /// The log offset of its first byte.
    pub start: u64,
    /// Its length in bytes (the next segment starts at `start + len`).
    pub len: u64,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

/// The segments in `dir`, in log order.
pub fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(start) = name.to_str().and_then(|n| {
            let digits = n.strip_suffix(SEGMENT_SUFFIX)?;
            (digits.len() == 20)
                .then(|| digits.parse::<u64>().ok())
                .flatten()
        }) else {
            continue;
        };
        let meta = entry.metadata()?;
        found.push(Segment {
            path: entry.path(),
            start,
            len: meta.len(),
            modified: meta.modified()?,
        });
    }
    found.sort_unstable_by_key(|s| s.start);
    Ok(found)
}

/// Deletes the segments of `dir` that end at or before `covered` (a snapshot holds everything before
/// that offset) and that `expired` says retention no longer keeps; never the newest segment (the
/// writer's), and never one after a segment that stays (no holes). Returns the deleted segments.
pub fn remove_segments_before(
    dir: &Path,
    covered: u64,
    mut expired: impl FnMut(&Segment) -> bool,
) -> io::Result<Vec<Segment>> {
    let segments = list_segments(dir)?;
    let mut removed = Vec::new();
    let Some((_, older)) = segments.split_last() else {
        return Ok(removed);
    };
    for segment in older {
        if segment.start + segment.len > covered || !expired(segment) {
            break;
        }
        remove_if_exists(&segment.path)?;
        removed.push(segment.clone());
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

struct Append {
    frame: Vec<u8>,
    attachment: Option<Attachment>,
    done: oneshot::Sender<Result<u64, JournalError>>,
}

/// Handle to a journal file; cheap to share behind an `Arc`.
pub struct Journal {
    tx: mpsc::Sender<Append>,
    healthy: Arc<AtomicBool>,
    path: PathBuf,
}

/// Syncs a directory so a newly created or renamed file in it survives a crash.
/// Options that create a file readable and writable by its owner only: the data dir holds password and
/// token hashes and sealed secrets.
pub fn owner_only() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Makes the data dir and the regular files directly in it (the store's own: the log, snapshots,
/// signature logs, the lock, `master.key`) accessible to their owner only, whatever an earlier version
/// or a loose umask left. Subdirectories (a volume's `lost+found`) are left alone. Returns what could
/// not be changed, for a warning: a mount the process does not own must not stop it from starting.
pub fn restrict_to_owner(dir: &Path) -> Vec<(std::path::PathBuf, io::Error)> {
    let mut failed = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = fs::set_permissions(dir, fs::Permissions::from_mode(0o700)) {
            failed.push((dir.to_path_buf(), e));
        }
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                failed.push((dir.to_path_buf(), e));
                return failed;
            }
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file())
                && let Err(e) = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600))
            {
                failed.push((entry.path(), e));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    failed
}

/// Creates `dir` (and missing parents) accessible to its owner only, and makes an existing one so. A
/// directory it creates is made durable (its parent is synced), so files in it can be relied on.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let existed = dir.is_dir();
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    builder.create(dir)?;
    if !existed && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Called by the writer thread, in log order, with each durable group of `(offset, payload)` records,
/// after the group's fsync and before any of its callers is answered. This is how a state machine built
/// on the journal stays exactly the fold of the durable log: live state and replayed state cannot differ.
pub type ApplyFn = Box<dyn FnMut(&mut [Durable<'_>]) -> Result<(), String> + Send>;

/// What the appender already knows about its record in decoded form (e.g. the parsed events), handed to
/// the [`ApplyFn`] so the live path need not decode what it just encoded. Replay decodes the bytes.
pub type Attachment = Box<dyn std::any::Any + Send>;

/// One durable record as the [`ApplyFn`] sees it. Positions are the log's: byte offsets in the file
/// journal, record numbers in the PostgreSQL log; either way `offset < end`, and the next record's
/// `offset` is this one's `end`.
pub struct Durable<'a> {
    /// The position before the record.
    pub offset: u64,
    /// The position after it (what a reader that applied it has applied up to).
    pub end: u64,
    /// The log's own time for the record (µs since the epoch), where the log keeps one (the
    /// PostgreSQL log does: the database's clock); `None` in the file journal, whose records carry
    /// the node's.
    pub at_us: Option<i64>,
    pub payload: &'a [u8],
    pub attachment: Option<Attachment>,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`, hands every intact record to `replay` in order
    /// with its offset, truncates a torn tail, and starts the writer thread. Offsets are byte positions,
    /// so they are unique and increase with log order.
    pub fn open(
        path: &Path,
        replay: impl FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<Journal> {
        Self::open_applying(path, 0, replay, None)
    }

    /// [`Journal::open`], replaying only the records from offset `start` on (the frames before it were
    /// covered by a snapshot), with `apply` called for every group written from now on (see
    /// [`ApplyFn`]). `start` must be a frame boundary at or before the end of the intact log.
    pub fn open_applying(
        path: &Path,
        start: u64,
        mut replay: impl FnMut(u64, &[u8]) -> io::Result<()>,
        apply: Option<ApplyFn>,
    ) -> io::Result<Journal> {
        let (file, good_len) = open_file(path, 0, start, &mut replay, true)?;
        Self::start_writer(
            path,
            Target {
                file,
                segments: None,
            },
            good_len,
            apply,
        )
    }

    /// A segmented journal in `dir` (see the module docs): replays every record from offset `start` on,
    /// across segments, then appends to the newest one, rolling over to a new segment after
    /// `segment_bytes`. The segment holding `start` must exist (a snapshot's offset is always a frame
    /// boundary at or before the end of the intact log), and segments must follow one another without
    /// gaps; a damaged record anywhere but at the very end stops the open with `InvalidData`.
    pub fn open_segmented(
        dir: &Path,
        start: u64,
        mut replay: impl FnMut(u64, &[u8]) -> io::Result<()>,
        apply: Option<ApplyFn>,
        segment_bytes: u64,
    ) -> io::Result<Journal> {
        create_private_dir(dir)?;
        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            if start > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the log is missing: a snapshot covers it up to offset {start}, but {} holds no segment",
                        dir.display()
                    ),
                ));
            }
            let path = segment_path(dir, 0);
            owner_only()
                .write(true)
                .create_new(true)
                .open(&path)?
                .sync_all()?;
            sync_dir(dir)?;
            segments = list_segments(dir)?;
        }
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
        // The segment that holds `start`: the last one starting at or before it.
        let first = segments
            .iter()
            .rposition(|s| s.start <= start)
            .ok_or_else(|| {
                invalid(format!(
                    "the log's oldest segment starts after offset {start}, where replay must begin; \
                     segments were deleted that no snapshot covers"
                ))
            })?;
        let last = segments.len() - 1;
        let mut tail = None;
        for (i, segment) in segments.iter().enumerate().skip(first) {
            if let Some(next) = segments.get(i + 1)
                && next.start != segment.start + segment.len
            {
                return Err(invalid(format!(
                    "log segment {} ends at {} but the next one starts at {}",
                    segment.path.display(),
                    segment.start + segment.len,
                    next.start
                )));
            }
            let from = start.saturating_sub(segment.start);
            if from > segment.len {
                return Err(invalid(format!(
                    "log ends at {}, before the snapshot's offset {start}",
                    segment.start + segment.len
                )));
            }
            let base = segment.start;
            let mut shifted = |offset: u64, payload: &[u8]| replay(base + offset, payload);
            let (file, good_len) = open_file(&segment.path, base, from, &mut shifted, i == last)?;
            if i == last {
                tail = Some((file, segment.start, good_len));
            } else if good_len < segment.len {
                return Err(invalid(format!(
                    "log segment {} is damaged at offset {}",
                    segment.path.display(),
                    segment.start + good_len
                )));
            }
        }
        let Some((file, segment_start, good_len)) = tail else {
            return Err(invalid("the log has no segments".into()));
        };
        Self::start_writer(
            &segment_path(dir, segment_start),
            Target {
                file,
                segments: Some((dir.to_owned(), segment_bytes.max(1), segment_start)),
            },
            segment_start + good_len,
            apply,
        )
    }

    fn start_writer(
        path: &Path,
        target: Target,
        file_len: u64,
        apply: Option<ApplyFn>,
    ) -> io::Result<Journal> {
        let (tx, rx) = mpsc::channel::<Append>();
        let healthy = Arc::new(AtomicBool::new(true));
        let thread_health = healthy.clone();
        let name = format!(
            "journal-{}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("log")
        );
        std::thread::Builder::new()
            .name(name)
            .spawn(move || writer_loop(target, file_len, rx, thread_health, apply))?;
        Ok(Journal {
            tx,
            healthy,
            path: path.to_owned(),
        })
    }

    /// Appends one record; resolves with its offset once it is on disk (fsync'd, and applied when the
    /// journal has an [`ApplyFn`]) together with whatever else was queued.
    pub async fn append(&self, payload: &[u8]) -> Result<u64, JournalError> {
        self.append_with(payload, None).await
    }

    /// [`Journal::append`], handing `attachment` to the [`ApplyFn`] with the record.
    pub async fn append_with(
        &self,
        payload: &[u8],
        attachment: Option<Attachment>,
    ) -> Result<u64, JournalError> {
        if payload.len() > MAX_RECORD {
            return Err(JournalError::TooLarge(payload.len()));
        }
        if !self.is_healthy() {
            return Err(JournalError::Unavailable(
                "an earlier write failed; restart required".into(),
            ));
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Append {
                frame: encode_frame(payload),
                attachment,
                done,
            })
            .map_err(|_| JournalError::Unavailable("journal writer has stopped".into()))?;
        wait.await
            .map_err(|_| JournalError::Unavailable("journal writer has stopped".into()))?
    }

    /// False once a write or sync has failed: the journal then refuses further appends (fail-stop), because
    /// after a failed fsync the file's contents can no longer be trusted.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating if needed) one journal file, replays its intact records from file position `from`
/// (offsets handed to `replay` are file positions), and returns it positioned at the end of the intact
/// prefix. With `truncate`, a torn tail is cut off; otherwise it is left for the caller to judge.
fn open_file(
    path: &Path,
    base: u64,
    from: u64,
    replay: &mut impl FnMut(u64, &[u8]) -> io::Result<()>,
    truncate: bool,
) -> io::Result<(File, u64)> {
    let existed = path.exists();
    let mut file = owner_only()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if !existed {
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    let total = file.metadata()?.len();
    if from > total {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "log ends at {}, before the snapshot's offset {}",
                base + total,
                base + from
            ),
        ));
    }
    let good_len = replay_frames(&mut file, from, replay)?;
    if good_len < total && truncate {
        tracing::warn!(
            path = %path.display(),
            dropped_bytes = total - good_len,
            "journal had a torn tail (interrupted write); truncating it"
        );
        file.set_len(good_len)?;
        file.sync_all()?;
    }
    file.seek(SeekFrom::Start(good_len))?;
    Ok((file, good_len))
}

fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Reads frames from the start of `file`, handing each intact payload to `replay`; returns the length
/// of the intact prefix (where a torn or corrupt tail begins).
fn replay_frames(
    file: &mut File,
    start: u64,
    replay: &mut impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    file.seek(SeekFrom::Start(start))?;
    let mut reader = io::BufReader::with_capacity(1 << 20, &mut *file);
    let mut payload = Vec::new();
    let mut pos: u64 = start;
    loop {
        let mut header = [0u8; HEADER];
        if !read_full(&mut reader, &mut header)? {
            return Ok(pos);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            return Ok(pos);
        }
        payload.resize(len, 0);
        if !read_full(&mut reader, &mut payload)? || crc32fast::hash(&payload) != crc {
            return Ok(pos);
        }
        replay(pos, &payload)?;
        pos += (HEADER + len) as u64;
    }
}

/// Fills `buf` completely; false when the file ends first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn writer_loop(
    mut target: Target,
    mut file_len: u64,
    rx: mpsc::Receiver<Append>,
    healthy: Arc<AtomicBool>,
    mut apply: Option<ApplyFn>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut waiters: Vec<(u64, oneshot::Sender<Result<u64, JournalError>>)> = Vec::new();
    let mut attachments: Vec<Option<Attachment>> = Vec::new();
    let take = |append: Append,
                buf: &mut Vec<u8>,
                waiters: &mut Vec<_>,
                attachments: &mut Vec<Option<Attachment>>,
                base: u64| {
        waiters.push((base + buf.len() as u64, append.done));
        attachments.push(append.attachment);
        buf.extend_from_slice(&append.frame);
    };
    // `recv` returns Err once every `Journal` handle is dropped: everything queued has been written.
    while let Ok(first) = rx.recv() {
        buf.clear();
        take(first, &mut buf, &mut waiters, &mut attachments, file_len);
        while buf.len() < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(next) => take(next, &mut buf, &mut waiters, &mut attachments, file_len),
                Err(_) => break,
            }
        }
        let result = if healthy.load(Ordering::Acquire) {
            let file = &mut target.file;
            file.write_all(&buf).and_then(|()| file.sync_data())
        } else {
            Err(io::Error::other("journal failed earlier"))
        };
        let outcome = match result {
            Ok(()) => {
                if let Some(apply) = apply.as_mut() {
                    let mut records: Vec<Durable<'_>> = waiters
                        .iter()
                        .zip(attachments.drain(..))
                        .map(|((offset, _), attachment)| {
                            let at = (offset - file_len) as usize;
                            let len = u32::from_le_bytes([
                                buf[at],
                                buf[at + 1],
                                buf[at + 2],
                                buf[at + 3],
                            ]) as usize;
                            Durable {
                                offset: *offset,
                                end: *offset + (HEADER + len) as u64,
                                at_us: None,
                                payload: &buf[at + HEADER..at + HEADER + len],
                                attachment,
                            }
                        })
                        .collect();
                    // A panic here would leave the state behind the log with every later write
                    // failing while the node looked healthy: it stops the journal instead (fail-stop,
                    // and `is_healthy` turns false, so `/readyz` says so).
                    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        apply(&mut records)
                    }));
                    match applied {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "a durable record could not be applied; refusing further writes (restart to replay the log)");
                            healthy.store(false, Ordering::Release);
                        }
                        Err(_) => {
                            tracing::error!(
                                "applying a durable record panicked; refusing further writes (restart to replay the log)"
                            );
                            healthy.store(false, Ordering::Release);
                        }
                    }
                }
                if !healthy.load(Ordering::Acquire) {
                    attachments.clear();
                    for (_, done) in waiters.drain(..) {
                        let _ = done.send(Err(JournalError::Unavailable(
                            "applying the log failed; restart required".into(),
                        )));
                    }
                    continue;
                }
                file_len += buf.len() as u64;
                match roll_if_full(&mut target, file_len) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // This group is durable; the next one is refused (fail-stop).
                        tracing::error!(error = %e, "could not start a new log segment; refusing further writes");
                        healthy.store(false, Ordering::Release);
                        Ok(())
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal write failed; refusing further writes");
                healthy.store(false, Ordering::Release);
                Err(JournalError::Unavailable(e.to_string()))
            }
        };
        attachments.clear();
        for (offset, done) in waiters.drain(..) {
            // The caller may have gone away (request cancelled); the record is durable regardless.
            let _ = done.send(outcome.clone().map(|()| offset));
        }
    }
}

/// Starts a new segment at `file_len` once the current one is full (segmented journals only). The new
/// file and its directory entry are synced before anything is written to it.
fn roll_if_full(target: &mut Target, file_len: u64) -> io::Result<()> {
    let Some((dir, max, start)) = target.segments.as_mut() else {
        return Ok(());
    };
    if file_len - *start < *max {
        return Ok(());
    }
    let file = owner_only()
        .read(true)
        .write(true)
        .create_new(true)
        .open(segment_path(dir, file_len))?;
    file.sync_all()?;
    sync_dir(dir)?;
    target.file = file;
    *start = file_len;
    Ok(())
}

/// Removes a file if it exists (used by tests and tools).
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path) -> (Journal, Vec<(u64, Vec<u8>)>) {
        let mut records = Vec::new();
        let j = Journal::open(path, |offset, payload| {
            records.push((offset, payload.to_vec()));
            Ok(())
        })
        .unwrap();
        (j, records)
    }

    #[tokio::test]
    async fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let mut offsets = Vec::new();
        {
            let (j, existing) = collect(&path);
            assert!(existing.is_empty());
            let j = Arc::new(j);
            let mut tasks = Vec::new();
            for i in 0..50u32 {
                let j = j.clone();
                tasks.push(tokio::spawn(async move {
                    j.append(format!("rec-{i}").as_bytes()).await
                }));
            }
            for t in tasks {
                offsets.push(t.await.unwrap().unwrap());
            }
        }
        // Simulate a crash in the middle of a write: half a frame at the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let torn = encode_frame(b"never acknowledged");
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let before = fs::metadata(&path).unwrap().len();
        let (j, records) = collect(&path);
        assert_eq!(records.len(), 50);
        offsets.sort_unstable();
        let replayed: Vec<u64> = records.iter().map(|(o, _)| *o).collect();
        assert_eq!(replayed, offsets, "append offsets are the replay offsets");
        assert!(fs::metadata(&path).unwrap().len() < before);
        let after = j.append(b"after").await.unwrap();
        drop(j);
        let (_j, records) = collect(&path);
        assert_eq!(records.len(), 51);
        assert_eq!(records[50], (after, b"after".to_vec()));
    }

    #[tokio::test]
    async fn a_corrupt_frame_ends_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let mut bytes = encode_frame(b"one");
        let mut second = encode_frame(b"two");
        let last = second.len() - 1;
        second[last] ^= 0xff;
        bytes.extend_from_slice(&second);
        fs::write(&path, &bytes).unwrap();
        let (_j, records) = collect(&path);
        assert_eq!(records, vec![(0, b"one".to_vec())]);
        assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER + 3) as u64);
    }

    #[tokio::test]
    async fn apply_sees_every_durable_record_in_log_order_before_the_ack() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<(u64, Vec<u8>)>::new()));
        let sink = seen.clone();
        let j = Arc::new(
            Journal::open_applying(
                &dir.path().join("a.log"),
                0,
                |_, _| Ok(()),
                Some(Box::new(move |group: &mut [Durable<'_>]| {
                    let mut seen = sink.lock().unwrap();
                    for record in group.iter() {
                        seen.push((record.offset, record.payload.to_vec()));
                    }
                    Ok(())
                })),
            )
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            let j = j.clone();
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                let payload = format!("r{i}");
                let offset = j.append(payload.as_bytes()).await.unwrap();
                // Applied before acknowledged.
                assert!(
                    seen.lock()
                        .unwrap()
                        .iter()
                        .any(|(o, p)| *o == offset && p == payload.as_bytes())
                );
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 100);
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "log order");
    }

    #[tokio::test]
    async fn a_panic_while_applying_stops_the_journal_instead_of_dying_silently() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_applying(
            &dir.path().join("a.log"),
            0,
            |_, _| Ok(()),
            Some(Box::new(|group: &mut [Durable<'_>]| {
                if group.iter().any(|r| r.payload == b"boom") {
                    panic!("a bug in the fold");
                }
                Ok(())
            })),
        )
        .unwrap();
        j.append(b"fine").await.unwrap();
        assert!(j.is_healthy());
        assert!(j.append(b"boom").await.is_err(), "not acknowledged");
        assert!(!j.is_healthy(), "the node says it is not ready");
        assert!(j.append(b"after").await.is_err(), "later writes refused");
    }

    fn collect_segmented(dir: &Path, start: u64, bytes: u64) -> io::Result<(Journal, Vec<u64>)> {
        let mut offsets = Vec::new();
        let j = Journal::open_segmented(
            dir,
            start,
            |offset, _| {
                offsets.push(offset);
                Ok(())
            },
            None,
            bytes,
        )?;
        Ok((j, offsets))
    }

    #[tokio::test]
    async fn segments_roll_over_and_replay_as_one_log() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let mut appended = Vec::new();
        {
            let (j, replayed) = collect_segmented(&wal, 0, 64).unwrap();
            assert!(replayed.is_empty());
            for i in 0..20u32 {
                appended.push(j.append(format!("record-{i:04}").as_bytes()).await.unwrap());
            }
        }
        let segments = list_segments(&wal).unwrap();
        assert!(segments.len() >= 5, "{segments:?}");
        for pair in segments.windows(2) {
            assert_eq!(pair[0].start + pair[0].len, pair[1].start);
        }
        let (_, replayed) = collect_segmented(&wal, 0, 64).unwrap();
        assert_eq!(replayed, appended);
        // From a later offset (a snapshot's), only what follows.
        let (_, tail) = collect_segmented(&wal, appended[7], 64).unwrap();
        assert_eq!(tail, appended[7..]);

        // Nothing newer than the cutoff, nor beyond what is covered, is deleted; never the newest.
        let removed = remove_segments_before(&wal, appended[7], |_| true).unwrap();
        assert!(!removed.is_empty());
        assert!(removed.iter().all(|s| s.start + s.len <= appended[7]));
        let none = remove_segments_before(&wal, u64::MAX, |_| false).unwrap();
        assert!(none.is_empty());
        let (_, tail) = collect_segmented(&wal, appended[7], 64).unwrap();
        assert_eq!(tail, appended[7..]);
        // Replay from before what is left fails loudly instead of skipping records.
        let err = collect_segmented(&wal, 0, 64).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_damaged_segment_before_the_last_stops_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        {
            let (j, _) = collect_segmented(&wal, 0, 64).unwrap();
            for i in 0..10u32 {
                j.append(format!("record-{i:04}").as_bytes()).await.unwrap();
            }
        }
        let first = &list_segments(&wal).unwrap()[0];
        let mut bytes = fs::read(&first.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&first.path, bytes).unwrap();
        let err = collect_segmented(&wal, 0, 64).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
