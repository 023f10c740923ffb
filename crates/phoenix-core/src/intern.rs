//! A tenant's user ids as dense `u32` handles, so that every rank index of the tenant stores four
//! bytes per user instead of a string. Append-only: a handle, once given, names the same user for the
//! life of the interner.
//!
//! Memory is the point: all ids live back to back in one string, with one `u32` end offset per handle
//! and a hash table that holds only handles (the key is looked up through the arena), so an id of
//! `k` bytes costs about `k + 4` bytes plus the table's 5 bytes per bucket, not a heap allocation.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::fmt;
use std::hash::BuildHasher;

/// A user of one tenant, as handed out by that tenant's [`UserInterner`]. Handles are dense
/// (0, 1, 2, … in order of first sight) and mean nothing outside their interner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserHandle(pub u32);

/// Maps user id strings to [`UserHandle`]s and back.
#[derive(Clone, Default)]
pub struct UserInterner {
    /// Every id, back to back, in handle order.
    text: String,
    /// `ends[h]` is where id `h` ends in `text`; it starts where id `h - 1` ends (or at 0).
    ends: Vec<u32>,
    /// Handles, found by the hash of the id they name.
    table: HashTable<u32>,
    /// Randomly seeded per interner, so clients cannot choose ids that collide.
    hasher: DefaultHashBuilder,
}

impl UserInterner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle of `id`, giving it the next free handle the first time it is seen.
    ///
    /// # Panics
    /// When the tenant's ids would exceed 4 GiB of text or 2³² − 1 users, far beyond the sizes
    /// Phoenix serves from one process.
    pub fn intern(&mut self, id: &str) -> UserHandle {
        debug_assert!(!id.is_empty(), "user ids are 1 to 128 characters");
        let Self {
            text,
            ends,
            table,
            hasher,
        } = self;
        let hash = hasher.hash_one(id);
        if let Some(&handle) = table.find(hash, |&h| id_of(text, ends, h) == id) {
            return UserHandle(handle);
        }
        let handle = u32::try_from(ends.len())
            .ok()
            .filter(|&h| h < u32::MAX)
            .expect("a tenant has at most 2^32 - 1 users");
        if let Some(capacity) = gentle_capacity(text.capacity(), text.len() + id.len()) {
            text.reserve_exact(capacity - text.len());
        }
        text.push_str(id);
        let end = u32::try_from(text.len()).expect("a tenant's user ids fit in 4 GiB");
        reserve_gently(ends, 1);
        ends.push(end);
        table.insert_unique(hash, handle, |&h| hasher.hash_one(id_of(text, ends, h)));
        UserHandle(handle)
    }

    /// The handle of `id`, if it has been interned.
    pub fn get(&self, id: &str) -> Option<UserHandle> {
        let hash = self.hasher.hash_one(id);
        self.table
            .find(hash, |&h| id_of(&self.text, &self.ends, h) == id)
            .map(|&h| UserHandle(h))
    }

    /// The id that `handle` names.
    ///
    /// # Panics
    /// When `handle` was not handed out by this interner.
    pub fn resolve(&self, handle: UserHandle) -> &str {
        id_of(&self.text, &self.ends, handle.0)
    }

    /// How many distinct ids have been interned.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Heap memory held, in bytes: allocated capacities, not lengths.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.ends.capacity() * size_of::<u32>()
            + self.table.allocation_size()
    }
}

fn id_of<'a>(text: &'a str, ends: &[u32], handle: u32) -> &'a str {
    let h = handle as usize;
    let start = if h == 0 { 0 } else { ends[h - 1] as usize };
    &text[start..ends[h] as usize]
}

impl fmt::Debug for UserInterner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInterner")
            .field("len", &self.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// The capacity to grow to so that `needed` elements fit, or `None` when they already do.
///
/// Grows by an eighth instead of doubling: the big per-tenant and per-index arrays then waste at most
/// 12.5% (6% on average) instead of up to 50%, and the copies stay amortized O(1) per element (about
/// nine; large blocks are usually moved by remapping pages, not copying).
pub(crate) fn gentle_capacity(capacity: usize, needed: usize) -> Option<usize> {
    (needed > capacity).then(|| needed.max(capacity + (capacity / 8).max(4)))
}

/// Makes room for `additional` more elements in `v` with [`gentle_capacity`]'s growth.
pub(crate) fn reserve_gently<T>(v: &mut Vec<T>, additional: usize) {
    if let Some(capacity) = gentle_capacity(v.capacity(), v.len() + additional) {
        v.reserve_exact(capacity - v.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_each_id_once_with_dense_handles() {
        let mut users = UserInterner::new();
        assert!(users.is_empty());
        assert_eq!(users.intern("alice"), UserHandle(0));
        assert_eq!(users.intern("bob"), UserHandle(1));
        assert_eq!(users.intern("alice"), UserHandle(0));
        assert_eq!(users.intern("ålice-ü"), UserHandle(2));
        assert_eq!(users.len(), 3);
        assert_eq!(users.get("bob"), Some(UserHandle(1)));
        assert_eq!(users.get("carol"), None);
        assert_eq!(users.get("alic"), None);
        assert_eq!(users.resolve(UserHandle(0)), "alice");
        assert_eq!(users.resolve(UserHandle(1)), "bob");
        assert_eq!(users.resolve(UserHandle(2)), "ålice-ü");
    }

    #[test]
    fn ids_that_are_prefixes_of_each_other_stay_distinct() {
        let mut users = UserInterner::new();
        let ids = ["a", "aa", "aaa", "ab", "b", "ba"];
        let handles: Vec<_> = ids.iter().map(|id| users.intern(id)).collect();
        for (id, handle) in ids.iter().zip(&handles) {
            assert_eq!(users.get(id), Some(*handle));
            assert_eq!(users.resolve(*handle), *id);
        }
    }

    #[test]
    fn many_ids_survive_table_growth_and_stay_compact() {
        let mut users = UserInterner::new();
        let n = 100_000u32;
        for i in 0..n {
            assert_eq!(users.intern(&format!("user-{i:010}")), UserHandle(i));
        }
        for i in (0..n).step_by(7) {
            let id = format!("user-{i:010}");
            assert_eq!(users.get(&id), Some(UserHandle(i)));
            assert_eq!(users.resolve(UserHandle(i)), id);
            assert_eq!(users.intern(&id), UserHandle(i));
        }
        assert_eq!(users.len(), n as usize);
        // 15 bytes of text + 4 of offset + at most 10.5 of table, plus the gentle growth's slack.
        let per_id = users.heap_bytes() as f64 / f64::from(n);
        assert!(per_id < 34.0, "{per_id} bytes per id");
    }

    #[test]
    fn long_ids_are_kept_whole() {
        let mut users = UserInterner::new();
        let long = "x".repeat(128);
        let handle = users.intern(&long);
        assert_eq!(users.resolve(handle), long);
        assert_eq!(users.get(&long[..127]), None);
    }

    #[test]
    fn gentle_capacity_grows_by_an_eighth_at_least() {
        assert_eq!(gentle_capacity(0, 0), None);
        assert_eq!(gentle_capacity(0, 1), Some(4));
        assert_eq!(gentle_capacity(800, 801), Some(900));
        assert_eq!(gentle_capacity(800, 2000), Some(2000));
        assert_eq!(gentle_capacity(800, 800), None);
    }
}
