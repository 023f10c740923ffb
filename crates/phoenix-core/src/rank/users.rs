//! The per-user columns of one rank index: each scored user's (order, seq), found by handle. The
//! tree stores slot numbers into these columns, never the values themselves.
//!
//! Two layouts, chosen by the index from how densely its users cover the tenant's handles:
//! - dense: one row per handle `0..bound`, the slot *is* the handle, no map (24 bytes per handle);
//! - sparse: rows by slot, a `handles` column, and a hash table from handle to slot (about 34 to 39
//!   bytes per user), for indexes that hold a small part of a large tenant (a day's players).

use super::{Key, SlotKeys};
use crate::intern::reserve_gently;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::cmp::Ordering;
use std::hash::BuildHasher;

/// The first two parts of a user's [`Key`]: the encoded score and the acceptance sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) order: u64,
    pub(super) seq: u64,
    /// The caller's timestamp of the row (the engine's `updated_at`, Unix µs): kept beside the key so
    /// a window needs no second per-player map.
    pub(super) stamp: i64,
}

/// Marks a row with no user. No score encodes to `u64::MAX` (only a NaN would), see `encode`.
pub(super) const ABSENT: Row = Row {
    order: u64::MAX,
    seq: 0,
    stamp: 0,
};

impl Row {
    fn is_absent(&self) -> bool {
        self.order == u64::MAX
    }
}

#[derive(Clone)]
pub(super) enum Users {
    /// Indexed by handle.
    Dense(Vec<Row>),
    Sparse(Sparse),
}

#[derive(Clone, Default)]
pub(super) struct Sparse {
    /// Slots, found by the hash of their user's handle.
    slots: HashTable<u32>,
    hasher: DefaultHashBuilder,
    rows: Vec<Row>,
    handles: Vec<u32>,
    /// Slots of removed users, reused first.
    free: Vec<u32>,
    /// One more than the largest handle ever stored (not lowered by removals).
    handle_bound: u64,
}

impl Sparse {
    pub(super) fn with_capacity(users: usize) -> Self {
        Sparse {
            slots: HashTable::with_capacity(users),
            rows: Vec::with_capacity(users),
            handles: Vec::with_capacity(users),
            ..Sparse::default()
        }
    }

    /// Stores a user that is not stored yet and returns its slot.
    pub(super) fn insert(&mut self, handle: u32, row: Row) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.rows[slot as usize] = row;
                self.handles[slot as usize] = handle;
                slot
            }
            None => {
                reserve_gently(&mut self.rows, 1);
                reserve_gently(&mut self.handles, 1);
                self.rows.push(row);
                self.handles.push(handle);
                (self.rows.len() - 1) as u32
            }
        };
        let Sparse {
            slots,
            hasher,
            handles,
            ..
        } = self;
        slots.insert_unique(hasher.hash_one(handle), slot, |&s| {
            hasher.hash_one(handles[s as usize])
        });
        self.handle_bound = self.handle_bound.max(u64::from(handle) + 1);
        slot
    }

    fn slot_of(&self, handle: u32) -> Option<u32> {
        self.slots
            .find(self.hasher.hash_one(handle), |&s| {
                self.handles[s as usize] == handle
            })
            .copied()
    }

    fn remove(&mut self, slot: u32) {
        let handle = self.handles[slot as usize];
        if let Ok(entry) = self
            .slots
            .find_entry(self.hasher.hash_one(handle), |&s| s == slot)
        {
            entry.remove();
        }
        self.rows[slot as usize] = ABSENT;
        reserve_gently(&mut self.free, 1);
        self.free.push(slot);
    }

    pub(super) fn handle(&self, slot: u32) -> u32 {
        self.handles[slot as usize]
    }

    pub(super) fn row(&self, slot: u32) -> Row {
        self.rows[slot as usize]
    }
}

impl Users {
    pub(super) fn slot_of(&self, handle: u32) -> Option<u32> {
        match self {
            Users::Dense(rows) => rows
                .get(handle as usize)
                .filter(|row| !row.is_absent())
                .map(|_| handle),
            Users::Sparse(sparse) => sparse.slot_of(handle),
        }
    }

    pub(super) fn row(&self, slot: u32) -> Row {
        match self {
            Users::Dense(rows) => rows[slot as usize],
            Users::Sparse(sparse) => sparse.rows[slot as usize],
        }
    }

    pub(super) fn handle(&self, slot: u32) -> u32 {
        match self {
            Users::Dense(_) => slot,
            Users::Sparse(sparse) => sparse.handles[slot as usize],
        }
    }

    /// One more than the largest handle the current layout has room for or has seen.
    pub(super) fn handle_bound(&self) -> u64 {
        match self {
            Users::Dense(rows) => rows.len() as u64,
            Users::Sparse(sparse) => sparse.handle_bound,
        }
    }

    /// Stores a user that is not stored yet and returns its slot.
    pub(super) fn insert(&mut self, handle: u32, row: Row) -> u32 {
        match self {
            Users::Dense(rows) => {
                let needed = handle as usize + 1;
                if needed > rows.len() {
                    reserve_gently(rows, needed - rows.len());
                    rows.resize(needed, ABSENT);
                }
                rows[handle as usize] = row;
                handle
            }
            Users::Sparse(sparse) => sparse.insert(handle, row),
        }
    }

    pub(super) fn set_row(&mut self, slot: u32, row: Row) {
        match self {
            Users::Dense(rows) => rows[slot as usize] = row,
            Users::Sparse(sparse) => sparse.rows[slot as usize] = row,
        }
    }

    pub(super) fn remove(&mut self, slot: u32) {
        match self {
            Users::Dense(rows) => rows[slot as usize] = ABSENT,
            Users::Sparse(sparse) => sparse.remove(slot),
        }
    }

    /// Heap memory held, in bytes (capacities).
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Users::Dense(rows) => rows.capacity() * size_of::<Row>(),
            Users::Sparse(sparse) => {
                sparse.slots.allocation_size()
                    + sparse.rows.capacity() * size_of::<Row>()
                    + (sparse.handles.capacity() + sparse.free.capacity()) * size_of::<u32>()
            }
        }
    }
}

impl SlotKeys for Users {
    fn key(&self, slot: u32) -> Key {
        let row = self.row(slot);
        Key {
            order: row.order,
            seq: row.seq,
            handle: self.handle(slot),
        }
    }

    fn cmp(&self, slot: u32, key: &Key) -> Ordering {
        let row = self.row(slot);
        // The handle column is read only on a tie, which a unique `seq` rules out in practice.
        (row.order, row.seq)
            .cmp(&(key.order, key.seq))
            .then_with(|| self.handle(slot).cmp(&key.handle))
    }
}
