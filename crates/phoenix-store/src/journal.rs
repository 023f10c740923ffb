//! The durable append-only journal with group commit. One writer thread owns the file: appends from any
//! number of tasks queue up, the thread writes everything queued in one go, issues one `fdatasync`, and
//! only then answers each caller. Durability costs latency, not throughput, and no blocking file work
//! ever runs on the async runtime.
//!
//! Frame format: `len: u32 LE | crc32(payload): u32 LE | payload`. A crash can only tear the tail (we
//! append and sync in order), so replay stops at the first incomplete or corrupt frame and truncates it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

const HEADER: usize = 8;
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

struct Append {
    frame: Vec<u8>,
    done: oneshot::Sender<Result<(), JournalError>>,
}

/// Handle to a journal file; cheap to share behind an `Arc`.
pub struct Journal {
    tx: mpsc::Sender<Append>,
    healthy: Arc<AtomicBool>,
    path: PathBuf,
}

/// Syncs a directory so a newly created or renamed file in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`, returns every intact record in order, truncates
    /// a torn tail, and starts the writer thread.
    pub fn open(path: &Path) -> io::Result<(Journal, Vec<Vec<u8>>)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
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
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, good_len) = decode_frames(&bytes);
        if good_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - good_len,
                "journal had a torn tail (interrupted write); truncating it"
            );
            file.set_len(good_len as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(good_len as u64))?;

        let (tx, rx) = mpsc::channel::<Append>();
        let healthy = Arc::new(AtomicBool::new(true));
        let thread_health = healthy.clone();
        let name = format!(
            "journal-{}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("log")
        );
        std::thread::Builder::new()
            .name(name)
            .spawn(move || writer_loop(file, rx, thread_health))?;
        Ok((
            Journal {
                tx,
                healthy,
                path: path.to_owned(),
            },
            records,
        ))
    }

    /// Appends one record; resolves once it is on disk (fsync'd) together with whatever else was queued.
    pub async fn append(&self, payload: &[u8]) -> Result<(), JournalError> {
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

fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Splits `bytes` into intact payloads; returns them and the length of the intact prefix.
fn decode_frames(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= HEADER {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let crc = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let start = pos + HEADER;
        if len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        pos = start + len;
    }
    (records, pos)
}

fn writer_loop(mut file: File, rx: mpsc::Receiver<Append>, healthy: Arc<AtomicBool>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut waiters: Vec<oneshot::Sender<Result<(), JournalError>>> = Vec::new();
    // `recv` returns Err once every `Journal` handle is dropped: everything queued has been written.
    while let Ok(first) = rx.recv() {
        buf.clear();
        buf.extend_from_slice(&first.frame);
        waiters.push(first.done);
        while buf.len() < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    buf.extend_from_slice(&next.frame);
                    waiters.push(next.done);
                }
                Err(_) => break,
            }
        }
        let result = if healthy.load(Ordering::Acquire) {
            file.write_all(&buf).and_then(|()| file.sync_data())
        } else {
            Err(io::Error::other("journal failed earlier"))
        };
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "journal write failed; refusing further writes");
                healthy.store(false, Ordering::Release);
                Err(JournalError::Unavailable(e.to_string()))
            }
        };
        for done in waiters.drain(..) {
            // The caller may have gone away (request cancelled); the record is durable regardless.
            let _ = done.send(outcome.clone());
        }
    }
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

    #[tokio::test]
    async fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        {
            let (j, existing) = Journal::open(&path).unwrap();
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
                t.await.unwrap().unwrap();
            }
        }
        // Simulate a crash in the middle of a write: half a frame at the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let torn = encode_frame(b"never acknowledged");
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let before = fs::metadata(&path).unwrap().len();
        let (j, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 50);
        assert!(fs::metadata(&path).unwrap().len() < before);
        j.append(b"after").await.unwrap();
        drop(j);
        let (_j, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 51);
        assert_eq!(records[50], b"after");
    }

    #[test]
    fn corrupt_frames_are_not_replayed() {
        let mut bytes = encode_frame(b"one");
        let mut second = encode_frame(b"two");
        let last = second.len() - 1;
        second[last] ^= 0xff;
        bytes.extend_from_slice(&second);
        let (records, good) = decode_frames(&bytes);
        assert_eq!(records, vec![b"one".to_vec()]);
        assert_eq!(good, HEADER + 3);
    }
}
