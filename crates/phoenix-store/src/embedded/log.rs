//! The log the embedded state machine folds: the file journal of one node, or the PostgreSQL log of a
//! cluster. Both hand the fold the same records in the same order with their positions; only how an
//! answer that depends on the log order is reached differs (see [`Gate`]).

use crate::journal::{Attachment, HEADER, Journal, JournalError};
use crate::pglog::{Fence, FenceKind, PgGate, PgLog};

pub(super) enum Log {
    File(Journal),
    Pg(PgLog),
}

impl Log {
    /// Appends a record; resolves with the position just past it once it is durable and applied by
    /// this node's fold. `fence` applies to the PostgreSQL log only (one node has nobody to race).
    pub(super) async fn append(
        &self,
        payload: &[u8],
        attachment: Option<Attachment>,
        fence: Option<Fence>,
    ) -> Result<u64, JournalError> {
        match self {
            Log::File(journal) => {
                let offset = journal.append_with(payload, attachment).await?;
                Ok(offset + (HEADER + payload.len()) as u64)
            }
            Log::Pg(log) => log.append_with(payload, attachment, fence).await,
        }
    }

    /// Takes writes (and, for a cluster node, has caught up with the log since it started).
    pub(super) fn is_ready(&self) -> bool {
        match self {
            Log::File(journal) => journal.is_healthy(),
            Log::Pg(log) => log.is_ready(),
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Log::Pg(_))
    }

    /// The cluster-wide gate of `kind` (`None` for one node, whose local gate is enough).
    pub(super) async fn cluster_gate(
        &self,
        kind: FenceKind,
    ) -> Result<Option<PgGate>, JournalError> {
        match self {
            Log::File(_) => Ok(None),
            Log::Pg(log) => log.gate(kind).await.map(Some),
        }
    }
}

/// Room for the events of one record in a cluster's sequence numbers (a batch holds at most 1000).
pub(super) const SEQ_SHIFT: u32 = 16;

/// A writer's gate: the node's own mutex, and in a cluster the cluster-wide one. Records committed
/// while it is held carry its fence, so a decision made under a gate another node took over meanwhile
/// is refused rather than appended.
pub(super) struct Gate<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    cluster: Option<PgGate>,
    slot: &'a std::sync::Mutex<Option<Fence>>,
}

impl<'a> Gate<'a> {
    pub(super) fn new(
        local: tokio::sync::MutexGuard<'a, ()>,
        cluster: Option<PgGate>,
        slot: &'a std::sync::Mutex<Option<Fence>>,
    ) -> Self {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = cluster.as_ref().map(|g| g.fence);
        Gate {
            _local: local,
            cluster,
            slot,
        }
    }

    /// After a fenced record of this gate was appended at `end`, later records under the same gate
    /// expect it.
    pub(super) fn fenced(slot: &std::sync::Mutex<Option<Fence>>, end: u64) {
        if let Some(f) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f.seen = end;
        }
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        drop(self.cluster.take());
    }
}
