//! The live standings of one (leaderboard, window): an exact order-statistic index over every user
//! with a score, answering "what is my rank", "who is at rank r" and "ranks r to r + k" in O(log n).
//!
//! Order: the better score first (`score_desc`: higher; `score_asc`: lower), then the smaller `seq`
//! (the server's acceptance sequence number of the event that gave the score: who reached it first),
//! then the smaller [`UserHandle`]. The last rule only makes the order total; it is never reached in
//! practice because `seq` is unique within an index. Ranks are 1, 2, 3, … without gaps.
//!
//! Ranked users are the first `size` of those whose score passes `min_score` (`score_desc`:
//! `score >= min_score`; `score_asc`: `score <= min_score`). Everyone else keeps their score here,
//! unranked, so that they move up when someone above them leaves or drops.
//!
//! Layout, for memory (about 23 bytes per user at a million, see `benches/rank.rs`): a counted B+tree
//! (`tree`) of 4-byte slot numbers in wide leaves, over per-user columns (`users`) of 16-byte
//! (encoded score, seq) rows found by handle.

mod tree;
mod users;

#[cfg(test)]
mod tests;

use crate::config::RankingMethod;
use crate::intern::UserHandle;
use std::cmp::Ordering;
use std::fmt;
use std::iter::FusedIterator;
use tree::CountedTree;
use users::{Row, Sparse, Users};

/// One ranked user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// 1-based.
    pub rank: u32,
    pub user: UserHandle,
    pub score: f64,
    /// The acceptance sequence number of the event that gave the user this score.
    pub seq: u64,
    /// The stamp given with the score ([`RankIndex::set_stamped`]).
    pub stamp: i64,
}

/// The standings of one (leaderboard, window). See the module documentation for the order.
#[derive(Clone)]
pub struct RankIndex {
    method: RankingMethod,
    size: u32,
    /// `min_score`, encoded: a user is eligible for a rank when their `order` is at most this
    /// (`u64::MAX` without a `min_score`).
    eligible_up_to: u64,
    /// Users whose score passes `min_score`; they sort before every other user.
    eligible: u32,
    users: Users,
    tree: CountedTree,
}

/// The sort key of a user: `order` is the score encoded so that better sorts lower (see [`encode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    order: u64,
    seq: u64,
    handle: u32,
}

impl Key {
    const ZERO: Key = Key {
        order: 0,
        seq: 0,
        handle: 0,
    };
}

/// How the tree reads the key of the user stored in a slot.
trait SlotKeys {
    fn key(&self, slot: u32) -> Key;
    /// Compares the key in `slot` with `key`; may avoid reading parts of the key that do not decide.
    fn cmp(&self, slot: u32, key: &Key) -> Ordering;
}

impl RankIndex {
    /// An empty index. `size` is how many users are ranked (`ranking.size`); a NaN `min_score` is
    /// treated as none (the config never produces one).
    pub fn new(method: RankingMethod, size: u32, min_score: Option<f64>) -> Self {
        Self::with_tree(method, size, min_score, CountedTree::new())
    }

    /// The same index with small tree nodes, so that tests reach every rebalancing case.
    #[cfg(test)]
    fn with_node_caps(
        method: RankingMethod,
        size: u32,
        min_score: Option<f64>,
        leaf_cap: usize,
        inner_cap: usize,
    ) -> Self {
        Self::with_tree(
            method,
            size,
            min_score,
            CountedTree::with_caps(leaf_cap, inner_cap),
        )
    }

    fn with_tree(
        method: RankingMethod,
        size: u32,
        min_score: Option<f64>,
        tree: CountedTree,
    ) -> Self {
        debug_assert!(min_score.is_none_or(|m| !m.is_nan()), "NaN min_score");
        RankIndex {
            method,
            size,
            eligible_up_to: min_score
                .filter(|m| !m.is_nan())
                .map_or(u64::MAX, |m| encode(m, method)),
            eligible: 0,
            users: Users::Sparse(Sparse::default()),
            tree,
        }
    }

    /// Gives `user` the score `score`, reached by the event accepted as `seq`, inserting the user or
    /// moving them. A `-0.0` score is stored as `0.0`.
    ///
    /// A NaN score is refused: it fails a debug assertion, and in release builds the call returns
    /// without changing anything. (Scoring never produces NaN; refusing keeps the order total.)
    pub fn set(&mut self, user: UserHandle, score: f64, seq: u64) {
        self.set_stamped(user, score, seq, 0);
    }

    /// [`RankIndex::set`], keeping `stamp` with the user's row (read back by [`RankIndex::stamp`] and in
    /// every [`Entry`]).
    pub fn set_stamped(&mut self, user: UserHandle, score: f64, seq: u64, stamp: i64) {
        debug_assert!(!score.is_nan(), "NaN score for {user:?}");
        if score.is_nan() {
            return;
        }
        let row = Row {
            order: encode(score, self.method),
            seq,
            stamp,
        };
        let key = Key {
            order: row.order,
            seq,
            handle: user.0,
        };
        match self.users.slot_of(user.0) {
            Some(slot) => {
                let old = self.users.key(slot);
                if old == key {
                    self.users.set_row(slot, row);
                    return;
                }
                let removed = self.tree.remove(old, slot, &self.users);
                debug_assert!(removed, "{user:?} was in the tree");
                self.users.set_row(slot, row);
                self.tree.insert(key, slot, &self.users);
                self.eligible -= u32::from(self.is_eligible(old.order));
            }
            None => {
                self.choose_layout(user.0, self.len() + 1);
                let slot = self.users.insert(user.0, row);
                self.tree.insert(key, slot, &self.users);
            }
        }
        self.eligible += u32::from(self.is_eligible(key.order));
    }

    /// Removes `user` and returns the (score, seq) they had, or None when they had no score.
    pub fn remove(&mut self, user: UserHandle) -> Option<(f64, u64)> {
        let slot = self.users.slot_of(user.0)?;
        let key = self.users.key(slot);
        let removed = self.tree.remove(key, slot, &self.users);
        debug_assert!(removed, "{user:?} was in the tree");
        self.users.remove(slot);
        self.eligible -= u32::from(self.is_eligible(key.order));
        self.choose_layout(user.0, self.len());
        Some((decode(key.order, self.method), key.seq))
    }

    /// The (score, seq) of `user`, ranked or not; None when they have no score.
    pub fn get(&self, user: UserHandle) -> Option<(f64, u64)> {
        let row = self.users.row(self.users.slot_of(user.0)?);
        Some((decode(row.order, self.method), row.seq))
    }

    /// The stamp kept with `user`'s score; None when they have no score.
    pub fn stamp(&self, user: UserHandle) -> Option<i64> {
        Some(self.users.row(self.users.slot_of(user.0)?).stamp)
    }

    /// The 1-based rank of `user`; None when they have no score or are not ranked (beyond `size` or
    /// worse than `min_score`).
    pub fn rank_of(&self, user: UserHandle) -> Option<u32> {
        let slot = self.users.slot_of(user.0)?;
        let key = self.users.key(slot);
        if !self.is_eligible(key.order) {
            return None;
        }
        let position = self.tree.position_of(key, slot)?;
        (position < self.ranked_len()).then_some(position + 1)
    }

    /// The entry at `rank` (1-based), if that rank is taken.
    pub fn nth(&self, rank: u32) -> Option<Entry> {
        if rank == 0 || rank > self.ranked_len() {
            return None;
        }
        let (leaf, offset) = self.tree.locate(rank - 1)?;
        Some(self.entry(rank, self.tree.leaf(leaf).0[offset]))
    }

    /// The ranked entries whose rank is in `from_rank .. from_rank + count`, best first. Ranks that do
    /// not exist (0, or beyond [`ranked_len`](Self::ranked_len)) are simply absent, so `around` with
    /// radius `r` is `range(rank.saturating_sub(r).max(1), …)` and is truncated, not shifted, at the
    /// edges. O(log n + count).
    pub fn range(&self, from_rank: u32, count: u32) -> RankRange<'_> {
        let start = from_rank.max(1);
        let end = u64::from(from_rank) + u64::from(count);
        let end = end.min(u64::from(self.ranked_len()) + 1) as u32;
        match self.tree.locate(start.saturating_sub(1)) {
            Some((leaf, offset)) if start < end => RankRange {
                index: self,
                leaf,
                offset,
                rank: start,
                end,
            },
            _ => RankRange {
                index: self,
                leaf: 0,
                offset: 0,
                rank: 0,
                end: 0,
            },
        }
    }

    /// Every user with a score, ranked or not, in ranking order (ranks past
    /// [`ranked_len`](Self::ranked_len) are positions, not ranks). For exporting the whole index.
    pub fn all(&self) -> RankRange<'_> {
        match self.tree.locate(0) {
            Some((leaf, offset)) => RankRange {
                index: self,
                leaf,
                offset,
                rank: 1,
                end: self.len().saturating_add(1),
            },
            None => RankRange {
                index: self,
                leaf: 0,
                offset: 0,
                rank: 0,
                end: 0,
            },
        }
    }

    /// How many users sort before the key (`score`, `seq`, `user`) or equal it: the 0-based position
    /// of the first user sorting strictly after it. A keyset cursor holding the last key of a page
    /// resumes at rank `position_after(..) + 1`, exactly after that key even if its user has moved
    /// or left since. Counts unranked users too; compare with [`ranked_len`](Self::ranked_len). A NaN
    /// score sorts after every user.
    pub fn position_after(&self, score: f64, seq: u64, user: UserHandle) -> u32 {
        if score.is_nan() {
            return self.len();
        }
        let key = Key {
            order: encode(score, self.method),
            seq,
            handle: user.0,
        };
        self.tree.count_up_to(key, &self.users)
    }

    /// How many users are ranked: `min(size, users passing min_score)`.
    pub fn ranked_len(&self) -> u32 {
        self.eligible.min(self.size)
    }

    /// How many users have a score, ranked or not.
    pub fn len(&self) -> u32 {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap memory held, in bytes: allocated capacities, not lengths. Excludes the interner.
    pub fn heap_bytes(&self) -> usize {
        self.tree.heap_bytes() + self.users.heap_bytes()
    }

    fn is_eligible(&self, order: u64) -> bool {
        order <= self.eligible_up_to
    }

    fn entry(&self, rank: u32, slot: u32) -> Entry {
        let row = self.users.row(slot);
        Entry {
            rank,
            user: UserHandle(self.users.handle(slot)),
            score: decode(row.order, self.method),
            seq: row.seq,
            stamp: row.stamp,
        }
    }

    /// Switches the columns' layout when `users` users, including `handle`, make the other one
    /// cheaper. Dense costs 24 bytes per handle below the largest one, sparse about 34 to 39 per
    /// user: dense is chosen when the handles are at most 1.5 times the users and left when they
    /// exceed 2.5 times, so a conversion (O(n)) is paid for by O(n) changes since the last one.
    fn choose_layout(&mut self, handle: u32, users: u32) {
        let bound = self.users.handle_bound().max(u64::from(handle) + 1);
        let users = u64::from(users);
        match &self.users {
            Users::Sparse(sparse) if 2 * bound <= 3 * users => {
                let mut rows = Vec::with_capacity(bound as usize);
                rows.resize(bound as usize, users::ABSENT);
                self.tree.relabel(|slot| {
                    let handle = sparse.handle(slot);
                    rows[handle as usize] = sparse.row(slot);
                    handle
                });
                self.users = Users::Dense(rows);
            }
            Users::Dense(rows) if 2 * bound > 5 * users => {
                let mut sparse = Sparse::with_capacity(users as usize);
                self.tree
                    .relabel(|handle| sparse.insert(handle, rows[handle as usize]));
                self.users = Users::Sparse(sparse);
            }
            _ => {}
        }
    }
}

/// An iterator over ranked entries, from [`RankIndex::range`].
pub struct RankRange<'a> {
    index: &'a RankIndex,
    leaf: u32,
    offset: usize,
    /// The rank of the next entry.
    rank: u32,
    /// One past the last rank to yield.
    end: u32,
}

impl Iterator for RankRange<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.rank >= self.end {
            return None;
        }
        let tree = &self.index.tree;
        let (mut slots, mut next) = tree.leaf(self.leaf);
        while self.offset >= slots.len() {
            self.leaf = next?;
            self.offset = 0;
            (slots, next) = tree.leaf(self.leaf);
        }
        let entry = self.index.entry(self.rank, slots[self.offset]);
        self.offset += 1;
        self.rank += 1;
        Some(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end.saturating_sub(self.rank) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for RankRange<'_> {}

impl FusedIterator for RankRange<'_> {}

impl fmt::Debug for RankIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RankIndex")
            .field("method", &self.method)
            .field("size", &self.size)
            .field("len", &self.len())
            .field("ranked_len", &self.ranked_len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// Maps a score to a `u64` that sorts better scores first under `method`, so the tree compares
/// integers. `-0.0` and `0.0` become the same value; no non-NaN score becomes `u64::MAX`.
/// The ranking order of a score as an integer: lower sorts first (better) under `method`. With `seq`
/// as the tie-break, `(sort_key(score), seq)` orders entries exactly as a [`RankIndex`] does.
pub fn sort_key(score: f64, method: RankingMethod) -> u64 {
    encode(score, method)
}

fn encode(score: f64, method: RankingMethod) -> u64 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    // IEEE 754 bits, made to sort like the numbers: flip negatives, lift positives above them.
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    match method {
        RankingMethod::ScoreAsc => ascending,
        RankingMethod::ScoreDesc => !ascending,
    }
}

fn decode(order: u64, method: RankingMethod) -> f64 {
    let ascending = match method {
        RankingMethod::ScoreAsc => order,
        RankingMethod::ScoreDesc => !order,
    };
    let bits = if ascending >> 63 == 1 {
        ascending & !(1 << 63)
    } else {
        !ascending
    };
    f64::from_bits(bits)
}
