//! The rank index against its rules, then against a naive model (a `Vec` sorted by the same rules,
//! written without the index's score encoding) under random operations.

use super::users::Users;
use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const DESC: RankingMethod = RankingMethod::ScoreDesc;
const ASC: RankingMethod = RankingMethod::ScoreAsc;

fn u(h: u32) -> UserHandle {
    UserHandle(h)
}

/// The ranked users, best first, as (handle, score).
fn standings(index: &RankIndex) -> Vec<(u32, f64)> {
    index
        .range(1, u32::MAX)
        .map(|e| (e.user.0, e.score))
        .collect()
}

#[test]
fn ties_go_to_whoever_reached_the_score_first() {
    let mut index = RankIndex::new(DESC, 10, None);
    index.set(u(1), 50.0, 30);
    index.set(u(2), 50.0, 10);
    index.set(u(3), 50.0, 20);
    index.set(u(4), 60.0, 40);
    assert_eq!(
        standings(&index),
        [(4, 60.0), (2, 50.0), (3, 50.0), (1, 50.0)]
    );
    assert_eq!(index.rank_of(u(2)), Some(2));
    assert_eq!(index.rank_of(u(1)), Some(4));
    // Reaching 50 again later (a new event) puts user 2 behind the others at 50.
    index.set(u(2), 50.0, 50);
    assert_eq!(
        standings(&index),
        [(4, 60.0), (3, 50.0), (1, 50.0), (2, 50.0)]
    );
}

#[test]
fn equal_score_and_seq_fall_back_to_the_smaller_handle() {
    let mut index = RankIndex::new(ASC, 10, None);
    index.set(u(9), 1.0, 7);
    index.set(u(3), 1.0, 7);
    index.set(u(5), 1.0, 7);
    assert_eq!(standings(&index), [(3, 1.0), (5, 1.0), (9, 1.0)]);
    assert_eq!(index.rank_of(u(9)), Some(3));
}

#[test]
fn score_desc_ranks_high_first_and_score_asc_low_first() {
    let scores = [
        3.5,
        -2.0,
        0.0,
        1e12,
        f64::NEG_INFINITY,
        f64::INFINITY,
        -1e-300,
    ];
    for (method, expected) in [(DESC, [5, 3, 0, 2, 6, 1, 4]), (ASC, [4, 1, 6, 2, 0, 3, 5])] {
        let mut index = RankIndex::new(method, 100, None);
        for (seq, (h, score)) in scores.iter().enumerate().map(|(h, s)| (h, (h, s))) {
            index.set(u(h as u32), *score, seq as u64);
        }
        let order: Vec<u32> = standings(&index).iter().map(|(h, _)| *h).collect();
        assert_eq!(order, expected, "{method:?}");
        for (rank, h) in expected.iter().enumerate() {
            assert_eq!(index.rank_of(u(*h)), Some(rank as u32 + 1));
            assert_eq!(index.get(u(*h)), Some((scores[*h as usize], *h as u64)));
        }
    }
}

#[test]
fn size_cuts_off_the_ranking_but_keeps_scores() {
    let mut index = RankIndex::new(DESC, 3, None);
    for h in 0..6 {
        index.set(u(h), f64::from(h), u64::from(h));
    }
    assert_eq!(index.len(), 6);
    assert_eq!(index.ranked_len(), 3);
    assert_eq!(standings(&index), [(5, 5.0), (4, 4.0), (3, 3.0)]);
    assert_eq!(index.rank_of(u(3)), Some(3));
    assert_eq!(index.rank_of(u(2)), None);
    assert_eq!(index.get(u(2)), Some((2.0, 2)));
    assert_eq!(index.nth(4), None);
    assert_eq!(index.rank_of(u(77)), None);
    assert_eq!(index.get(u(77)), None);
}

#[test]
fn min_score_in_score_desc_leaves_lower_scores_unranked() {
    let mut index = RankIndex::new(DESC, 10, Some(10.0));
    index.set(u(1), 9.5, 1);
    index.set(u(2), 10.0, 2);
    index.set(u(3), 25.0, 3);
    assert_eq!(index.ranked_len(), 2);
    assert_eq!(standings(&index), [(3, 25.0), (2, 10.0)]);
    assert_eq!(index.rank_of(u(1)), None);
    index.set(u(1), 11.0, 4);
    assert_eq!(index.rank_of(u(1)), Some(2));
    index.set(u(3), -5.0, 5);
    assert_eq!(standings(&index), [(1, 11.0), (2, 10.0)]);
    assert_eq!(index.rank_of(u(3)), None);
    assert_eq!(index.get(u(3)), Some((-5.0, 5)));
}

#[test]
fn min_score_in_score_asc_leaves_higher_scores_unranked() {
    let mut index = RankIndex::new(ASC, 10, Some(60.0));
    index.set(u(1), 61.0, 1);
    index.set(u(2), 60.0, 2);
    index.set(u(3), 42.0, 3);
    assert_eq!(standings(&index), [(3, 42.0), (2, 60.0)]);
    assert_eq!(index.rank_of(u(1)), None);
    assert_eq!(index.ranked_len(), 2);
    index.set(u(2), 60.5, 4);
    assert_eq!(standings(&index), [(3, 42.0)]);
}

#[test]
fn a_user_moves_up_and_down_across_the_size_boundary() {
    let mut index = RankIndex::new(DESC, 2, None);
    index.set(u(1), 30.0, 1);
    index.set(u(2), 20.0, 2);
    index.set(u(3), 10.0, 3);
    assert_eq!(index.rank_of(u(3)), None);
    index.set(u(3), 40.0, 4);
    assert_eq!(standings(&index), [(3, 40.0), (1, 30.0)]);
    assert_eq!(index.rank_of(u(2)), None);
    index.set(u(3), 5.0, 5);
    assert_eq!(standings(&index), [(1, 30.0), (2, 20.0)]);
    assert_eq!(index.rank_of(u(3)), None);
    index.set(u(1), 1.0, 6);
    assert_eq!(standings(&index), [(2, 20.0), (3, 5.0)]);
}

#[test]
fn removing_a_user_closes_the_gap_and_lets_the_next_one_in() {
    let mut index = RankIndex::new(DESC, 3, None);
    for h in 1..=5 {
        index.set(u(h), f64::from(10 * h), u64::from(h));
    }
    assert_eq!(index.remove(u(4)), Some((40.0, 4)));
    assert_eq!(index.remove(u(4)), None);
    assert_eq!(standings(&index), [(5, 50.0), (3, 30.0), (2, 20.0)]);
    let ranks: Vec<u32> = index.range(1, 10).map(|e| e.rank).collect();
    assert_eq!(ranks, [1, 2, 3]);
    assert_eq!(index.rank_of(u(2)), Some(3));
    assert_eq!(index.len(), 4);
    for h in [1, 2, 3, 5] {
        index.remove(u(h));
    }
    assert!(index.is_empty());
    assert_eq!(index.ranked_len(), 0);
    assert_eq!(index.nth(1), None);
    assert_eq!(index.range(1, 10).count(), 0);
}

#[test]
fn range_is_truncated_at_the_edges() {
    let mut index = RankIndex::new(DESC, 8, None);
    for h in 0..10 {
        index.set(u(h), f64::from(100 - h), u64::from(h));
    }
    let ranks = |from, count| -> Vec<u32> { index.range(from, count).map(|e| e.rank).collect() };
    assert_eq!(ranks(1, 3), [1, 2, 3]);
    assert_eq!(ranks(0, 3), [1, 2]);
    assert_eq!(ranks(6, 5), [6, 7, 8]);
    assert_eq!(ranks(8, 1), [8]);
    assert_eq!(ranks(9, 5), Vec::<u32>::new());
    assert_eq!(ranks(3, 0), Vec::<u32>::new());
    assert_eq!(ranks(u32::MAX, u32::MAX), Vec::<u32>::new());
    assert_eq!(index.range(2, 4).len(), 4);
    // `around` rank 2 with radius 5: ranks 1 to 7, not shifted.
    let rank = index.rank_of(u(1)).unwrap();
    let from = rank.saturating_sub(5).max(1);
    assert_eq!(ranks(from, rank + 5 - from + 1), [1, 2, 3, 4, 5, 6, 7]);
    let entry = index.nth(8).unwrap();
    assert_eq!(
        entry,
        Entry {
            rank: 8,
            user: u(7),
            score: 93.0,
            seq: 7,
            stamp: 0
        }
    );
    assert_eq!(index.nth(0), None);
    assert_eq!(index.nth(9), None);
}

#[test]
fn position_after_resumes_exactly_after_a_key_even_when_its_user_moved() {
    let mut index = RankIndex::new(DESC, 100, None);
    for h in 0..6 {
        index.set(u(h), f64::from(60 - 10 * h), u64::from(h));
    }
    // A page ended at user 2 (40, seq 2): the next one starts at rank 4.
    assert_eq!(index.position_after(40.0, 2, u(2)), 3);
    // User 2 moves away; the cursor still resumes after where they were.
    index.set(u(2), 5.0, 10);
    assert_eq!(index.position_after(40.0, 2, u(2)), 2);
    assert_eq!(index.nth(3).unwrap().user, u(3));
    assert_eq!(index.position_after(f64::INFINITY, 0, u(0)), 0);
    assert_eq!(index.position_after(f64::NEG_INFINITY, 0, u(0)), 6);
    assert_eq!(index.position_after(f64::NAN, 0, u(0)), 6);
    // Same score and seq as user 3: the handle decides.
    assert_eq!(index.position_after(30.0, 3, u(2)), 2);
    assert_eq!(index.position_after(30.0, 3, u(4)), 3);
}

#[test]
#[cfg_attr(debug_assertions, should_panic(expected = "NaN score"))]
fn a_nan_score_is_refused() {
    let mut index = RankIndex::new(DESC, 10, None);
    index.set(u(1), 1.0, 1);
    index.set(u(1), f64::NAN, 2);
    index.set(u(2), f64::NAN, 3);
    assert_eq!(index.get(u(1)), Some((1.0, 1)));
    assert_eq!(index.get(u(2)), None);
    assert_eq!(index.len(), 1);
}

#[test]
fn negative_zero_ties_with_zero() {
    let mut index = RankIndex::new(DESC, 10, Some(0.0));
    index.set(u(1), -0.0, 2);
    index.set(u(2), 0.0, 1);
    assert_eq!(standings(&index), [(2, 0.0), (1, 0.0)]);
    assert!(index.get(u(1)).unwrap().0.is_sign_positive());
}

#[test]
fn the_same_score_with_a_new_seq_moves_the_user() {
    let mut index = RankIndex::new(DESC, 10, None);
    index.set(u(1), 5.0, 1);
    index.set(u(2), 5.0, 2);
    index.set(u(1), 5.0, 3);
    assert_eq!(index.rank_of(u(1)), Some(2));
    assert_eq!(index.get(u(1)), Some((5.0, 3)));
}

#[test]
fn encoding_sorts_like_the_scores_and_round_trips() {
    let scores = [
        f64::NEG_INFINITY,
        f64::MIN,
        -1.5,
        -f64::MIN_POSITIVE,
        -1e-310,
        0.0,
        1e-310,
        f64::MIN_POSITIVE,
        2.0,
        f64::MAX,
        f64::INFINITY,
    ];
    for pair in scores.windows(2) {
        assert!(encode(pair[0], ASC) < encode(pair[1], ASC));
        assert!(encode(pair[0], DESC) > encode(pair[1], DESC));
    }
    for s in scores {
        for method in [ASC, DESC] {
            assert_eq!(decode(encode(s, method), method).to_bits(), s.to_bits());
            assert_ne!(encode(s, method), u64::MAX);
        }
    }
    assert_eq!(encode(-0.0, DESC), encode(0.0, DESC));
}

#[test]
fn columns_switch_between_dense_and_sparse_without_changing_answers() {
    let mut index = RankIndex::with_node_caps(DESC, 50, None, 4, 6);
    let is_dense = |index: &RankIndex| matches!(index.users, Users::Dense(_));
    for h in 0..40 {
        index.set(u(h), f64::from(h % 7), u64::from(h));
    }
    assert!(is_dense(&index));
    let before = standings(&index);
    // One far handle makes the dense rows mostly empty: back to sparse.
    index.set(u(1_000_000), 3.0, 100);
    assert!(!is_dense(&index));
    assert_eq!(index.rank_of(u(1_000_000)), Some(23));
    index.remove(u(1_000_000));
    assert_eq!(standings(&index), before);
    // A sparse index whose users come to cover the handles goes dense.
    let mut index = RankIndex::with_node_caps(ASC, 50, None, 4, 6);
    for h in (0..60).rev() {
        index.set(u(h * 2), f64::from(h), u64::from(h));
    }
    assert!(!is_dense(&index));
    for h in 0..60 {
        index.set(u(h * 2 + 1), f64::from(h), 100 + u64::from(h));
    }
    assert!(is_dense(&index));
    index.tree.check(&index.users);
    assert_eq!(index.rank_of(u(0)), Some(1));
    assert_eq!(index.rank_of(u(1)), Some(2));
    assert_eq!(index.nth(50).unwrap().user, u(49));
    // Removing most users goes back to sparse.
    for h in 0..100 {
        index.remove(u(h));
    }
    assert!(!is_dense(&index));
    index.tree.check(&index.users);
    assert_eq!(index.len(), 20);
    assert_eq!(index.rank_of(u(100)), Some(1));
}

#[test]
fn a_dense_index_stays_near_thirty_one_bytes_per_user() {
    let n = 100_000u32;
    let mut index = RankIndex::new(DESC, n, None);
    let mut rng = SplitMix(7);
    for h in 0..n {
        index.set(u(h), (rng.next() % 1_000_000) as f64, u64::from(h));
    }
    index.tree.check(&index.users);
    let per_entry = index.heap_bytes() as f64 / f64::from(n);
    // 24-byte rows (score, seq, updated_at) by handle and 4-byte slots in the tree's leaves.
    assert!(per_entry < 34.0, "{per_entry} bytes per entry");
}

/// A small deterministic generator for the randomized tests.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The naive model: each user's (score, seq), sorted on demand by the documented rules.
#[derive(Debug, Clone)]
struct Model {
    method: RankingMethod,
    size: u32,
    min_score: Option<f64>,
    rows: BTreeMap<u32, (f64, u64)>,
}

impl Model {
    fn new(method: RankingMethod, size: u32, min_score: Option<f64>) -> Self {
        Model {
            method,
            size,
            min_score,
            rows: BTreeMap::new(),
        }
    }

    fn set(&mut self, user: u32, score: f64, seq: u64) {
        self.rows.insert(user, (score, seq));
    }

    fn remove(&mut self, user: u32) {
        self.rows.remove(&user);
    }

    fn get(&self, user: u32) -> Option<(f64, u64)> {
        self.rows.get(&user).copied()
    }

    fn cmp(&self, a: &(u32, f64, u64), b: &(u32, f64, u64)) -> Ordering {
        let by_score = match self.method {
            RankingMethod::ScoreDesc => b.1.partial_cmp(&a.1),
            RankingMethod::ScoreAsc => a.1.partial_cmp(&b.1),
        };
        by_score.unwrap().then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0))
    }

    fn sorted(&self) -> Vec<(u32, f64, u64)> {
        let mut rows: Vec<_> = self.rows.iter().map(|(&u, &(s, q))| (u, s, q)).collect();
        rows.sort_by(|a, b| self.cmp(a, b));
        rows
    }

    fn passes(&self, score: f64) -> bool {
        match (self.min_score, self.method) {
            (None, _) => true,
            (Some(min), RankingMethod::ScoreDesc) => score >= min,
            (Some(min), RankingMethod::ScoreAsc) => score <= min,
        }
    }

    fn ranked(&self) -> Vec<Entry> {
        self.sorted()
            .into_iter()
            .take_while(|row| self.passes(row.1))
            .take(self.size as usize)
            .enumerate()
            .map(|(i, (user, score, seq))| Entry {
                rank: i as u32 + 1,
                user: u(user),
                score,
                seq,
                stamp: 0,
            })
            .collect()
    }
}

/// Checks every query of `index` against `model`, for the handles in `users` and the probe keys.
fn assert_agrees(index: &RankIndex, model: &Model, users: &[u32], probes: &[(f64, u64, u32)]) {
    let slots = index.tree.check(&index.users);
    assert_eq!(slots.len(), model.rows.len());
    assert_eq!(index.len() as usize, model.rows.len(), "len");
    let ranked = model.ranked();
    assert_eq!(index.ranked_len() as usize, ranked.len(), "ranked_len");
    assert_eq!(
        index.range(1, u32::MAX).collect::<Vec<_>>(),
        ranked,
        "range"
    );
    for entry in &ranked {
        assert_eq!(index.nth(entry.rank), Some(*entry), "nth");
        assert_eq!(index.rank_of(entry.user), Some(entry.rank), "rank_of");
    }
    assert_eq!(index.nth(0), None);
    assert_eq!(index.nth(ranked.len() as u32 + 1), None);
    for &user in users {
        assert_eq!(index.get(u(user)), model.get(user), "get {user}");
        if !ranked.iter().any(|e| e.user.0 == user) {
            assert_eq!(index.rank_of(u(user)), None, "unranked {user}");
        }
    }
    let n = ranked.len() as u32;
    for (from, count) in [(0, 3), (1, 1), (n / 2, 4), (n, 2), (n + 1, 2), (2, n)] {
        let expected: Vec<Entry> = ranked
            .iter()
            .filter(|e| e.rank >= from && u64::from(e.rank) < u64::from(from) + u64::from(count))
            .copied()
            .collect();
        assert_eq!(
            index.range(from, count).collect::<Vec<_>>(),
            expected,
            "range({from}, {count})"
        );
    }
    let sorted = model.sorted();
    for (i, row) in sorted.iter().enumerate() {
        assert_eq!(
            index.position_after(row.1, row.2, u(row.0)),
            i as u32 + 1,
            "position_after an entry"
        );
    }
    for probe in probes {
        let expected = sorted
            .iter()
            .filter(|row| model.cmp(row, &(probe.2, probe.0, probe.1)) != Ordering::Greater)
            .count();
        assert_eq!(
            index.position_after(probe.0, probe.1, u(probe.2)) as usize,
            expected,
            "position_after {probe:?}"
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `seq: None` takes the next unique sequence number; `Some` reuses a small one, so that
    /// equal (score, seq) pairs happen and the handle decides.
    Set {
        user: u32,
        score: f64,
        seq: Option<u64>,
    },
    Remove {
        user: u32,
    },
}

const SCORES: [f64; 9] = [
    0.0,
    -0.0,
    1.0,
    2.0,
    3.0,
    -1.5,
    1e9,
    f64::INFINITY,
    f64::NEG_INFINITY,
];

/// Mostly dense small handles, some far ones (to switch the column layout) and one huge one.
const USERS: [u32; 12] = [0, 1, 2, 3, 5, 8, 13, 21, 34, 500, 501, u32::MAX - 1];

fn user_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => 0u32..48,
        1 => prop::sample::select(&USERS[9..]),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (
            user_strategy(),
            prop::sample::select(&SCORES[..]),
            prop::option::weighted(0.2, 0u64..3),
        )
            .prop_map(|(user, score, seq)| Op::Set { user, score, seq }),
        1 => user_strategy().prop_map(|user| Op::Remove { user }),
    ]
}

fn all_users() -> Vec<u32> {
    let mut users: Vec<u32> = (0..48).collect();
    users.extend_from_slice(&USERS[9..]);
    users
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_index_agrees_with_a_sorted_vec(
        desc in any::<bool>(),
        size in prop_oneof![1u32..6, 6u32..40, Just(u32::MAX)],
        min_score in prop::option::of(prop::sample::select(&SCORES[..6])),
        caps in prop::sample::select(&[(4usize, 6usize), (5, 7), (8, 6), (64, 32)][..]),
        ops in prop::collection::vec(op_strategy(), 0..160),
    ) {
        let method = if desc { DESC } else { ASC };
        let mut index = RankIndex::with_node_caps(method, size, min_score, caps.0, caps.1);
        let mut model = Model::new(method, size, min_score);
        let users = all_users();
        let probes = [(1.0, 0, 3), (1.0, 1_000, 0), (-0.0, 1, 500), (f64::INFINITY, 2, 1)];
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Set { user, score, seq } => {
                    let seq = seq.unwrap_or(step as u64 + 10);
                    index.set(u(user), score, seq);
                    model.set(user, score, seq);
                }
                Op::Remove { user } => {
                    let expected = model.get(user);
                    prop_assert_eq!(index.remove(u(user)), expected);
                    model.remove(user);
                }
            }
            assert_agrees(&index, &model, &users, &probes);
        }
    }
}

/// Many operations against the model, checked in full every so often: exercises splits, shares,
/// borrows, merges and root changes at a realistic size.
fn randomized_run(caps: (usize, usize), ops: u32, users: u64, check_every: u32) {
    let mut rng = SplitMix(u64::from(ops) ^ caps.0 as u64);
    for (method, size, min_score) in [(DESC, 2_000, Some(20.0)), (ASC, 100_000, None)] {
        let mut index = RankIndex::with_node_caps(method, size, min_score, caps.0, caps.1);
        let mut model = Model::new(method, size, min_score);
        let mut max_height = 0;
        for step in 0..ops {
            let user = (rng.next() % users) as u32;
            // Bursts of removals shrink the tree; otherwise mostly moves and new users.
            let removing = (step / 5_000) % 4 == 3;
            if rng.next() % 10 < if removing { 8 } else { 1 } {
                assert_eq!(index.remove(u(user)), model.get(user));
                model.remove(user);
            } else {
                let score = (rng.next() % 300) as f64;
                index.set(u(user), score, u64::from(step));
                model.set(user, score, u64::from(step));
            }
            max_height = max_height.max(index.tree.height());
            if step % check_every == check_every - 1 {
                let sample: Vec<u32> = (0..users as u32).step_by(7).collect();
                assert_agrees(&index, &model, &sample, &[]);
            }
        }
        assert!(max_height >= 2, "the tree grew inner levels: {max_height}");
    }
}

#[test]
fn fifty_thousand_random_operations_with_production_nodes() {
    randomized_run((tree::LEAF_CAP, tree::INNER_CAP), 50_000, 6_000, 5_000);
}

#[test]
fn twenty_thousand_random_operations_with_tiny_nodes() {
    randomized_run((4, 6), 20_000, 1_500, 2_500);
}
