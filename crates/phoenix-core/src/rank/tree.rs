//! The counted B+tree under a rank index. Leaves hold slot numbers (four bytes per entry) in key
//! order; every inner node records, per child, a lower-bound key and how many entries the child's
//! subtree holds, so one descent finds an entry's position or the entry at a position.
//!
//! Keys are not stored in the leaves: they are read through [`SlotKeys`] from the index's columns.
//! Nodes live in two arenas addressed by `u32`. Rebalancing is top-down: a full child is relieved
//! (by sharing with a sibling, else by a split) before an insert descends into it, and a child at
//! its minimum is refilled (by borrowing, else by a merge) before a removal does. Sharing before
//! splitting keeps leaves about 80–90% full, which is most of the memory story.

use super::{Key, SlotKeys};
use crate::intern::reserve_gently;
use std::cmp::Ordering;

/// Entries per leaf in production: 256 bytes of slots, binary-searched through the columns.
pub(super) const LEAF_CAP: usize = 64;
/// Children per inner node in production.
pub(super) const INNER_CAP: usize = 32;
/// Bounds any path from the root. With at least a third of each node in use (and at least two
/// children per inner node, as the tests' smallest nodes have), 2³² entries need far fewer levels.
const MAX_HEIGHT: usize = 40;
const NO_LEAF: u32 = u32::MAX;

#[derive(Clone)]
struct Leaf {
    len: u32,
    /// The next leaf in key order, or [`NO_LEAF`].
    next: u32,
    slots: [u32; LEAF_CAP],
}

impl Leaf {
    const EMPTY: Leaf = Leaf {
        len: 0,
        next: NO_LEAF,
        slots: [0; LEAF_CAP],
    };
}

#[derive(Clone)]
struct Inner {
    len: u32,
    children: [u32; INNER_CAP],
    /// Entries in each child's subtree.
    counts: [u32; INNER_CAP],
    /// `keys[i]` (for `i >= 1`) is at most the smallest key under child `i` and greater than every key
    /// under child `i - 1`. `keys[0]` is never used: the parent's bound for this node stands for it.
    keys: [Key; INNER_CAP],
}

impl Inner {
    const EMPTY: Inner = Inner {
        len: 0,
        children: [0; INNER_CAP],
        counts: [0; INNER_CAP],
        keys: [Key::ZERO; INNER_CAP],
    };

    /// The child whose subtree holds (or would hold) `key`.
    fn child_for(&self, key: &Key) -> usize {
        self.keys[1..self.len as usize].partition_point(|k| k <= key)
    }

    fn count_before(&self, child: usize) -> u32 {
        self.counts[..child].iter().sum()
    }
}

#[derive(Clone)]
pub(super) struct CountedTree {
    leaves: Vec<Leaf>,
    inners: Vec<Inner>,
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
    root: u32,
    /// 0 when the root is a leaf.
    height: u32,
    len: u32,
    /// Usable entries per leaf and children per inner node: the production caps, or small ones in
    /// tests so that a few hundred entries exercise every split, share, borrow and merge.
    leaf_cap: usize,
    inner_cap: usize,
}

impl CountedTree {
    pub(super) fn new() -> Self {
        Self::with_caps(LEAF_CAP, INNER_CAP)
    }

    pub(super) fn with_caps(leaf_cap: usize, inner_cap: usize) -> Self {
        assert!((4..=LEAF_CAP).contains(&leaf_cap) && (6..=INNER_CAP).contains(&inner_cap));
        CountedTree {
            leaves: vec![Leaf::EMPTY],
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: 0,
            height: 0,
            len: 0,
            leaf_cap,
            inner_cap,
        }
    }

    pub(super) fn len(&self) -> u32 {
        self.len
    }

    /// Heap memory held, in bytes (capacities).
    pub(super) fn heap_bytes(&self) -> usize {
        self.leaves.capacity() * size_of::<Leaf>()
            + self.inners.capacity() * size_of::<Inner>()
            + (self.free_leaves.capacity() + self.free_inners.capacity()) * size_of::<u32>()
    }

    fn cap(&self, level: u32) -> usize {
        if level == 0 {
            self.leaf_cap
        } else {
            self.inner_cap
        }
    }

    /// The fewest entries a node other than the root may hold.
    fn min_len(&self, level: u32) -> usize {
        (self.cap(level) / 3).max(1)
    }

    /// A full node shares with a sibling holding at most this many, rather than splitting.
    fn share_limit(&self, level: u32) -> usize {
        let cap = self.cap(level);
        cap - (cap / 8).max(2)
    }

    fn node_len(&self, node: u32, level: u32) -> usize {
        if level == 0 {
            self.leaves[node as usize].len as usize
        } else {
            self.inners[node as usize].len as usize
        }
    }

    /// Inserts `slot`, whose key is `key`; the key must not be in the tree yet.
    pub(super) fn insert(&mut self, key: Key, slot: u32, keys: &impl SlotKeys) {
        if self.node_len(self.root, self.height) >= self.cap(self.height) {
            // A new root above the full one; the loop below splits the old root.
            let old_root = self.root;
            let root = self.alloc_inner();
            let inner = &mut self.inners[root as usize];
            inner.len = 1;
            inner.children[0] = old_root;
            inner.counts[0] = self.len;
            self.root = root;
            self.height += 1;
        }
        let mut node = self.root;
        let mut level = self.height;
        while level > 0 {
            let mut i = self.inners[node as usize].child_for(&key);
            let child = self.inners[node as usize].children[i];
            if self.node_len(child, level - 1) >= self.cap(level - 1) {
                self.make_room(node, i, level - 1, keys);
                i = self.inners[node as usize].child_for(&key);
            }
            let inner = &mut self.inners[node as usize];
            inner.counts[i] += 1;
            node = inner.children[i];
            level -= 1;
        }
        let leaf = &mut self.leaves[node as usize];
        let len = leaf.len as usize;
        let at = leaf.slots[..len].partition_point(|&s| keys.cmp(s, &key) == Ordering::Less);
        leaf.slots.copy_within(at..len, at + 1);
        leaf.slots[at] = slot;
        leaf.len += 1;
        self.len += 1;
    }

    /// Removes `slot`, whose key is `key`. Returns false (changing no entry) when it is not there.
    pub(super) fn remove(&mut self, key: Key, slot: u32, keys: &impl SlotKeys) -> bool {
        let mut path = [(0u32, 0usize); MAX_HEIGHT];
        let mut depth = 0;
        let mut node = self.root;
        let mut level = self.height;
        while level > 0 {
            let mut i = self.inners[node as usize].child_for(&key);
            let child = self.inners[node as usize].children[i];
            if self.node_len(child, level - 1) <= self.min_len(level - 1) {
                self.refill(node, i, level - 1, keys);
                i = self.inners[node as usize].child_for(&key);
            }
            path[depth] = (node, i);
            depth += 1;
            node = self.inners[node as usize].children[i];
            level -= 1;
        }
        let leaf = &mut self.leaves[node as usize];
        let len = leaf.len as usize;
        let found = leaf.slots[..len].iter().position(|&s| s == slot);
        if let Some(at) = found {
            leaf.slots.copy_within(at + 1..len, at);
            leaf.len -= 1;
            for &(inner, i) in &path[..depth] {
                self.inners[inner as usize].counts[i] -= 1;
            }
            self.len -= 1;
        }
        while self.height > 0 && self.inners[self.root as usize].len == 1 {
            let old_root = self.root;
            self.root = self.inners[old_root as usize].children[0];
            self.height -= 1;
            self.free_inner(old_root);
        }
        found.is_some()
    }

    /// The 0-based position of `slot`, whose key is `key`, or None when it is not in the tree.
    pub(super) fn position_of(&self, key: Key, slot: u32) -> Option<u32> {
        let mut before = 0;
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let i = inner.child_for(&key);
            before += inner.count_before(i);
            node = inner.children[i];
        }
        let leaf = &self.leaves[node as usize];
        let at = leaf.slots[..leaf.len as usize]
            .iter()
            .position(|&s| s == slot)?;
        Some(before + at as u32)
    }

    /// How many entries sort before `key` or equal it.
    pub(super) fn count_up_to(&self, key: Key, keys: &impl SlotKeys) -> u32 {
        let mut before = 0;
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let i = inner.child_for(&key);
            before += inner.count_before(i);
            node = inner.children[i];
        }
        let leaf = &self.leaves[node as usize];
        let at = leaf.slots[..leaf.len as usize]
            .partition_point(|&s| keys.cmp(s, &key) != Ordering::Greater);
        before + at as u32
    }

    /// The leaf and offset of the entry at 0-based `position`.
    pub(super) fn locate(&self, mut position: u32) -> Option<(u32, usize)> {
        if position >= self.len {
            return None;
        }
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let mut i = 0;
            while position >= inner.counts[i] {
                position -= inner.counts[i];
                i += 1;
            }
            node = inner.children[i];
        }
        Some((node, position as usize))
    }

    /// A leaf's slots and the next leaf in key order.
    pub(super) fn leaf(&self, leaf: u32) -> (&[u32], Option<u32>) {
        let leaf = &self.leaves[leaf as usize];
        let next = (leaf.next != NO_LEAF).then_some(leaf.next);
        (&leaf.slots[..leaf.len as usize], next)
    }

    /// Replaces every slot number by `relabel(slot)`, visiting entries in key order. The keys must
    /// not change: the index uses this when it moves its columns to another layout.
    pub(super) fn relabel(&mut self, mut relabel: impl FnMut(u32) -> u32) {
        let mut node = self.root;
        for _ in 0..self.height {
            node = self.inners[node as usize].children[0];
        }
        while node != NO_LEAF {
            let leaf = &mut self.leaves[node as usize];
            for slot in &mut leaf.slots[..leaf.len as usize] {
                *slot = relabel(*slot);
            }
            node = leaf.next;
        }
    }

    /// Makes child `i` of `parent` (at `level`, full) non-full.
    fn make_room(&mut self, parent: u32, i: usize, level: u32, keys: &impl SlotKeys) {
        let p = &self.inners[parent as usize];
        let left = (i > 0).then(|| self.node_len(p.children[i - 1], level));
        let right = (i + 1 < p.len as usize).then(|| self.node_len(p.children[i + 1], level));
        let limit = self.share_limit(level);
        match (left, right) {
            (Some(l), r) if l <= limit && r.is_none_or(|r| l <= r) => {
                self.balance(parent, i - 1, level, keys)
            }
            (_, Some(r)) if r <= limit => self.balance(parent, i, level, keys),
            _ => self.split(parent, i, level, keys),
        }
    }

    /// Brings child `i` of `parent` (at `level`, at its minimum) above its minimum.
    fn refill(&mut self, parent: u32, i: usize, level: u32, keys: &impl SlotKeys) {
        let p = &self.inners[parent as usize];
        let left = (i > 0).then(|| self.node_len(p.children[i - 1], level));
        let right = (i + 1 < p.len as usize).then(|| self.node_len(p.children[i + 1], level));
        let (pair, sibling) = match (left, right) {
            (Some(l), Some(r)) if l >= r => (i - 1, l),
            (Some(l), None) => (i - 1, l),
            (_, Some(r)) => (i, r),
            // Only the root can have a single child; it is collapsed after the removal.
            (None, None) => return,
        };
        if sibling > self.min_len(level) + 1 {
            self.balance(parent, pair, level, keys);
        } else {
            self.merge(parent, pair, level);
        }
    }

    /// Evens out children `j` and `j + 1` of `parent`, moving at least one entry.
    fn balance(&mut self, parent: u32, j: usize, level: u32, keys: &impl SlotKeys) {
        let p = &self.inners[parent as usize];
        let a = self.node_len(p.children[j], level);
        let b = self.node_len(p.children[j + 1], level);
        if a > b {
            self.move_right(parent, j, level, ((a - b) / 2).max(1), keys);
        } else if b > a {
            self.move_left(parent, j, level, ((b - a) / 2).max(1), keys);
        }
    }

    /// Moves the first `k` entries of child `j + 1` to the end of child `j`.
    fn move_left(&mut self, parent: u32, j: usize, level: u32, k: usize, keys: &impl SlotKeys) {
        let p = &self.inners[parent as usize];
        let (l, r) = (p.children[j] as usize, p.children[j + 1] as usize);
        let bound = p.keys[j + 1];
        let (moved, new_bound) = if level == 0 {
            let (left, right) = pair_mut(&mut self.leaves, l, r);
            let (a, b) = (left.len as usize, right.len as usize);
            left.slots[a..a + k].copy_from_slice(&right.slots[..k]);
            right.slots.copy_within(k..b, 0);
            left.len += k as u32;
            right.len -= k as u32;
            (k as u32, keys.key(right.slots[0]))
        } else {
            let (left, right) = pair_mut(&mut self.inners, l, r);
            let (a, b) = (left.len as usize, right.len as usize);
            let moved = right.counts[..k].iter().sum();
            left.children[a..a + k].copy_from_slice(&right.children[..k]);
            left.counts[a..a + k].copy_from_slice(&right.counts[..k]);
            left.keys[a] = bound;
            left.keys[a + 1..a + k].copy_from_slice(&right.keys[1..k]);
            right.children.copy_within(k..b, 0);
            right.counts.copy_within(k..b, 0);
            right.keys.copy_within(k..b, 0);
            left.len += k as u32;
            right.len -= k as u32;
            (moved, right.keys[0])
        };
        let p = &mut self.inners[parent as usize];
        p.counts[j] += moved;
        p.counts[j + 1] -= moved;
        p.keys[j + 1] = new_bound;
    }

    /// Moves the last `k` entries of child `j` to the front of child `j + 1`.
    fn move_right(&mut self, parent: u32, j: usize, level: u32, k: usize, keys: &impl SlotKeys) {
        let p = &self.inners[parent as usize];
        let (l, r) = (p.children[j] as usize, p.children[j + 1] as usize);
        let bound = p.keys[j + 1];
        let (moved, new_bound) = if level == 0 {
            let (left, right) = pair_mut(&mut self.leaves, l, r);
            let (a, b) = (left.len as usize, right.len as usize);
            right.slots.copy_within(0..b, k);
            right.slots[..k].copy_from_slice(&left.slots[a - k..a]);
            left.len -= k as u32;
            right.len += k as u32;
            (k as u32, keys.key(right.slots[0]))
        } else {
            let (left, right) = pair_mut(&mut self.inners, l, r);
            let (a, b) = (left.len as usize, right.len as usize);
            let moved = left.counts[a - k..a].iter().sum();
            right.children.copy_within(0..b, k);
            right.counts.copy_within(0..b, k);
            right.keys.copy_within(0..b, k);
            right.keys[k] = bound;
            right.children[..k].copy_from_slice(&left.children[a - k..a]);
            right.counts[..k].copy_from_slice(&left.counts[a - k..a]);
            right.keys[..k].copy_from_slice(&left.keys[a - k..a]);
            left.len -= k as u32;
            right.len += k as u32;
            (moved, right.keys[0])
        };
        let p = &mut self.inners[parent as usize];
        p.counts[j] -= moved;
        p.counts[j + 1] += moved;
        p.keys[j + 1] = new_bound;
    }

    /// Moves all of child `j + 1` into child `j` and drops it from `parent`.
    fn merge(&mut self, parent: u32, j: usize, level: u32) {
        let p = &self.inners[parent as usize];
        let (l, r) = (p.children[j] as usize, p.children[j + 1] as usize);
        let bound = p.keys[j + 1];
        if level == 0 {
            let (left, right) = pair_mut(&mut self.leaves, l, r);
            let (a, b) = (left.len as usize, right.len as usize);
            left.slots[a..a + b].copy_from_slice(&right.slots[..b]);
            left.len += b as u32;
            left.next = right.next;
            self.free_leaf(r as u32);
        } else {
            let (left, right) = pair_mut(&mut self.inners, l, r);
            let (a, b) = (left.len as usize, right.len as usize);
            left.children[a..a + b].copy_from_slice(&right.children[..b]);
            left.counts[a..a + b].copy_from_slice(&right.counts[..b]);
            left.keys[a] = bound;
            left.keys[a + 1..a + b].copy_from_slice(&right.keys[1..b]);
            left.len += b as u32;
            self.free_inner(r as u32);
        }
        let p = &mut self.inners[parent as usize];
        let len = p.len as usize;
        p.counts[j] += p.counts[j + 1];
        p.children.copy_within(j + 2..len, j + 1);
        p.counts.copy_within(j + 2..len, j + 1);
        p.keys.copy_within(j + 2..len, j + 1);
        p.len -= 1;
    }

    /// Splits child `i` of `parent` in two halves; `parent` must not be full.
    fn split(&mut self, parent: u32, i: usize, level: u32, keys: &impl SlotKeys) {
        let old = self.inners[parent as usize].children[i];
        let (new, moved, bound) = if level == 0 {
            let new = self.alloc_leaf();
            let (left, right) = pair_mut(&mut self.leaves, old as usize, new as usize);
            let len = left.len as usize;
            let half = len / 2;
            right.slots[..len - half].copy_from_slice(&left.slots[half..len]);
            right.len = (len - half) as u32;
            right.next = left.next;
            left.next = new;
            left.len = half as u32;
            (new, (len - half) as u32, keys.key(right.slots[0]))
        } else {
            let new = self.alloc_inner();
            let (left, right) = pair_mut(&mut self.inners, old as usize, new as usize);
            let len = left.len as usize;
            let half = len / 2;
            right.children[..len - half].copy_from_slice(&left.children[half..len]);
            right.counts[..len - half].copy_from_slice(&left.counts[half..len]);
            right.keys[..len - half].copy_from_slice(&left.keys[half..len]);
            right.len = (len - half) as u32;
            left.len = half as u32;
            let moved = right.counts[..len - half].iter().sum();
            (new, moved, right.keys[0])
        };
        let p = &mut self.inners[parent as usize];
        let len = p.len as usize;
        debug_assert!(len < self.inner_cap);
        p.children.copy_within(i + 1..len, i + 2);
        p.counts.copy_within(i + 1..len, i + 2);
        p.keys.copy_within(i + 1..len, i + 2);
        p.children[i + 1] = new;
        p.counts[i + 1] = moved;
        p.keys[i + 1] = bound;
        p.counts[i] -= moved;
        p.len += 1;
    }

    fn alloc_leaf(&mut self) -> u32 {
        if let Some(id) = self.free_leaves.pop() {
            self.leaves[id as usize] = Leaf::EMPTY;
            return id;
        }
        reserve_gently(&mut self.leaves, 1);
        self.leaves.push(Leaf::EMPTY);
        (self.leaves.len() - 1) as u32
    }

    fn alloc_inner(&mut self) -> u32 {
        if let Some(id) = self.free_inners.pop() {
            self.inners[id as usize] = Inner::EMPTY;
            return id;
        }
        reserve_gently(&mut self.inners, 1);
        self.inners.push(Inner::EMPTY);
        (self.inners.len() - 1) as u32
    }

    fn free_leaf(&mut self, id: u32) {
        reserve_gently(&mut self.free_leaves, 1);
        self.free_leaves.push(id);
    }

    fn free_inner(&mut self, id: u32) {
        reserve_gently(&mut self.free_inners, 1);
        self.free_inners.push(id);
    }

    /// Checks every structural invariant and returns the slots in key order.
    #[cfg(test)]
    pub(super) fn check(&self, keys: &impl SlotKeys) -> Vec<u32> {
        let mut slots = Vec::new();
        let count = self.check_node(self.root, self.height, None, None, true, keys, &mut slots);
        assert_eq!(count as u32, self.len, "len");
        assert_eq!(slots.len(), count);
        for pair in slots.windows(2) {
            assert!(
                keys.key(pair[0]) < keys.key(pair[1]),
                "keys strictly increase"
            );
        }
        let mut linked = Vec::new();
        let mut node = self.root;
        for _ in 0..self.height {
            node = self.inners[node as usize].children[0];
        }
        while node != NO_LEAF {
            let (leaf_slots, next) = self.leaf(node);
            linked.extend_from_slice(leaf_slots);
            node = next.unwrap_or(NO_LEAF);
        }
        assert_eq!(linked, slots, "leaf links follow key order");
        slots
    }

    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    fn check_node(
        &self,
        node: u32,
        level: u32,
        lower: Option<Key>,
        upper: Option<Key>,
        is_root: bool,
        keys: &impl SlotKeys,
        out: &mut Vec<u32>,
    ) -> usize {
        let len = self.node_len(node, level);
        assert!(len <= self.cap(level), "node over capacity");
        if !is_root {
            assert!(len >= self.min_len(level), "node below its minimum");
        } else if level > 0 {
            assert!(len >= 2, "an inner root has two children or more");
        }
        if level == 0 {
            for &slot in &self.leaves[node as usize].slots[..len] {
                let key = keys.key(slot);
                assert!(lower.is_none_or(|l| l <= key), "key below its bound");
                assert!(upper.is_none_or(|u| key < u), "key above its bound");
                out.push(slot);
            }
            return len;
        }
        let inner = &self.inners[node as usize];
        let mut total = 0;
        for i in 0..len {
            let lo = if i == 0 { lower } else { Some(inner.keys[i]) };
            let hi = if i + 1 < len {
                Some(inner.keys[i + 1])
            } else {
                upper
            };
            let count = self.check_node(inner.children[i], level - 1, lo, hi, false, keys, out);
            assert_eq!(inner.counts[i] as usize, count, "subtree count");
            total += count;
        }
        total
    }

    #[cfg(test)]
    pub(super) fn height(&self) -> u32 {
        self.height
    }
}

/// Two distinct elements of `items`, both mutable.
fn pair_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (head, tail) = items.split_at_mut(b);
        (&mut head[a], &mut tail[0])
    } else {
        let (head, tail) = items.split_at_mut(a);
        (&mut tail[0], &mut head[b])
    }
}
