//! Durable memory of used request signatures (SPEC §3.5: an HMAC signature is accepted once), so a
//! replay is refused even across a restart or `kill -9`. A signature only needs remembering while its
//! timestamp is acceptable (±300 s), so records go into one journal file per 10-minute generation of
//! write time, and a whole file is deleted once everything in it has expired: the disk and memory this
//! takes are bounded by the signatures of the last two generations.

use crate::StoreError;
use crate::journal::Journal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Length of a generation in seconds. Must exceed the longest time a signature is remembered after it
/// is written (expiry is at most `now + 2 × 300 s`), so a file two generations old holds nothing live.
const GENERATION_SECS: i64 = 1200;
const PREFIX: &str = "signatures-";
const SUFFIX: &str = ".log";

struct State {
    /// Digest → Unix second after which it may be forgotten.
    seen: HashMap<[u8; 32], i64>,
    last_prune: i64,
    current: Option<(i64, Arc<Journal>)>,
}

pub(crate) struct SignatureLog {
    dir: PathBuf,
    state: Mutex<State>,
    /// Serializes opening a new generation's file, so no two journals ever share a file.
    rotate_gate: tokio::sync::Mutex<()>,
}

fn generation_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(GENERATION_SECS)
}

fn file_for(dir: &Path, generation: i64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}{SUFFIX}"))
}

fn generation_of_file(name: &str) -> Option<i64> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn encode(digest: &[u8; 32], expires_at: i64) -> [u8; 40] {
    let mut rec = [0u8; 40];
    rec[..32].copy_from_slice(digest);
    rec[32..].copy_from_slice(&expires_at.to_le_bytes());
    rec
}

fn decode(rec: &[u8]) -> Option<([u8; 32], i64)> {
    let digest: [u8; 32] = rec.get(..32)?.try_into().ok()?;
    let expires: [u8; 8] = rec.get(32..40)?.try_into().ok()?;
    Some((digest, i64::from_le_bytes(expires)))
}

/// Deletes generation files whose every record has expired.
fn delete_dead_files(dir: &Path, current_generation: i64) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(generation) = name.to_str().and_then(generation_of_file)
            && generation <= current_generation - 2
        {
            crate::journal::remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

impl SignatureLog {
    /// Loads the live signatures of `dir` (blocking file work: call from a blocking context).
    pub(crate) fn open(dir: &Path, now: i64) -> std::io::Result<SignatureLog> {
        let current_generation = generation_of(now);
        delete_dead_files(dir, current_generation)?;
        let mut seen = HashMap::new();
        let mut current = None;
        for generation in [current_generation - 1, current_generation] {
            let path = file_for(dir, generation);
            if !path.exists() {
                continue;
            }
            let journal = Journal::open(&path, |_, record| {
                if let Some((digest, expires)) = decode(record)
                    && expires >= now
                {
                    seen.insert(digest, expires);
                }
                Ok(())
            })?;
            if generation == current_generation {
                current = Some((generation, Arc::new(journal)));
            }
        }
        Ok(SignatureLog {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                seen,
                last_prune: now,
                current,
            }),
            rotate_gate: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The journal for `generation`, opening its file (off the async workers) if needed.
    async fn journal_for(&self, generation: i64) -> Result<Arc<Journal>, StoreError> {
        let matching = |state: &State| {
            state
                .current
                .as_ref()
                .filter(|(g, _)| *g == generation)
                .map(|(_, j)| j.clone())
        };
        if let Some(j) = matching(&self.lock()) {
            return Ok(j);
        }
        let _gate = self.rotate_gate.lock().await;
        if let Some(j) = matching(&self.lock()) {
            return Ok(j);
        }
        let dir = self.dir.clone();
        let journal = tokio::task::spawn_blocking(move || -> std::io::Result<Journal> {
            let journal = Journal::open(&file_for(&dir, generation), |_, _| Ok(()))?;
            delete_dead_files(&dir, generation)?;
            Ok(journal)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(|e| StoreError::Unavailable(format!("signature log: {e}")))?;
        let journal = Arc::new(journal);
        self.lock().current = Some((generation, journal.clone()));
        Ok(journal)
    }

    /// True the first time `digest` is presented (and then durably remembered until `expires_at`);
    /// false for a replay.
    pub(crate) async fn use_once(
        &self,
        digest: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        {
            let mut state = self.lock();
            if now - state.last_prune >= 10 {
                state.seen.retain(|_, exp| *exp >= now);
                state.last_prune = now;
            }
            if state.seen.get(&digest).is_some_and(|exp| *exp >= now) {
                return Ok(false);
            }
            // Claim it before the disk write so a concurrent replay is refused too.
            state.seen.insert(digest, expires_at);
        }
        let result = match self.journal_for(generation_of(now)).await {
            Ok(journal) => journal
                .append(&encode(&digest, expires_at))
                .await
                .map_err(StoreError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.lock().seen.remove(&digest);
            return Err(e);
        }
        Ok(true)
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.lock()
            .current
            .as_ref()
            .is_none_or(|(_, j)| j.is_healthy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signatures_are_remembered_across_reopen_and_forgotten_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000;
        {
            let log = SignatureLog::open(dir.path(), now).unwrap();
            assert!(log.use_once([1; 32], now + 300, now).await.unwrap());
            assert!(!log.use_once([1; 32], now + 300, now + 1).await.unwrap());
            assert!(log.use_once([2; 32], now + 5, now).await.unwrap());
        }
        let log = SignatureLog::open(dir.path(), now + 10).unwrap();
        assert!(!log.use_once([1; 32], now + 310, now + 10).await.unwrap());
        assert!(
            log.use_once([2; 32], now + 600, now + 10).await.unwrap(),
            "expired entries are forgotten"
        );
    }

    #[tokio::test]
    async fn old_generation_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000;
        {
            let log = SignatureLog::open(dir.path(), now).unwrap();
            assert!(log.use_once([1; 32], now + 300, now).await.unwrap());
        }
        assert!(file_for(dir.path(), generation_of(now)).exists());
        let later = now + 3 * GENERATION_SECS;
        let log = SignatureLog::open(dir.path(), later).unwrap();
        assert!(!file_for(dir.path(), generation_of(now)).exists());
        assert!(log.use_once([1; 32], later + 300, later).await.unwrap());
    }
}
