//! The rank index at a million users: memory per entry (printed first) and the cost of a score
//! change, a rank look-up, the top 100 and an `around` window.
//!
//! `cargo bench -p phoenix-core --bench rank`

use criterion::{Criterion, criterion_group, criterion_main};
use phoenix_core::config::RankingMethod;
use phoenix_core::intern::{UserHandle, UserInterner};
use phoenix_core::rank::{Entry, RankIndex};
use std::hint::black_box;

const USERS: u32 = 1_000_000;
/// Scores from 0 to 10⁷ − 1: a million users share about 5% of them, so ties happen.
const SCORE_RANGE: u64 = 10_000_000;

/// A small deterministic generator, so runs compare.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn user(&mut self) -> UserHandle {
        UserHandle((self.next() % u64::from(USERS)) as u32)
    }

    fn score(&mut self) -> f64 {
        (self.next() % SCORE_RANGE) as f64
    }
}

/// Resident memory of this process in KiB, where /proc is available.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A million users with random scores, set in the order they were first seen.
fn build(rng: &mut SplitMix) -> (UserInterner, RankIndex) {
    let mut interner = UserInterner::new();
    let mut index = RankIndex::new(RankingMethod::ScoreDesc, u32::MAX, None);
    for (seq, i) in (0..USERS).enumerate() {
        let handle = interner.intern(&format!("user-{i:010}"));
        index.set(handle, rng.score(), seq as u64);
    }
    (interner, index)
}

fn report(label: &str, interner: &UserInterner, index: &RankIndex, rss: Option<(u64, u64)>) {
    let entries = index.ranked_len();
    let per_entry = |bytes: usize| bytes as f64 / f64::from(entries);
    let rss = match rss {
        Some((before, after)) => format!(
            ", RSS +{:.1} bytes/entry",
            (after - before) as f64 * 1024.0 / f64::from(entries)
        ),
        None => String::new(),
    };
    println!(
        "rank index{label}: {entries} entries, {:.1} bytes/entry (tree+columns {:.1}, interner {:.1}){rss}",
        per_entry(index.heap_bytes() + interner.heap_bytes()),
        per_entry(index.heap_bytes()),
        per_entry(interner.heap_bytes()),
    );
}

fn rank(c: &mut Criterion) {
    let mut rng = SplitMix(42);
    let before = rss_kib();
    let (interner, mut index) = build(&mut rng);
    let after = rss_kib();
    report("", &interner, &index, before.zip(after));
    let mut sparse = {
        // Only every fourth user of the tenant has a score (a daily window of a large tenant): the
        // index keeps its columns in the sparse layout. The interner is shared by all windows.
        let mut rng = SplitMix(43);
        let mut sparse = RankIndex::new(RankingMethod::ScoreDesc, u32::MAX, None);
        for (seq, handle) in (0..USERS).step_by(4).enumerate() {
            sparse.set(UserHandle(handle), rng.score(), seq as u64);
        }
        let entries = sparse.ranked_len();
        println!(
            "rank index (sparse, every 4th user): {entries} entries, tree+columns {:.1} bytes/entry",
            sparse.heap_bytes() as f64 / f64::from(entries)
        );
        sparse
    };

    let mut group = c.benchmark_group("rank_1m");
    let mut seq = u64::from(USERS);
    group.bench_function("set", |b| {
        b.iter(|| {
            seq += 1;
            index.set(rng.user(), rng.score(), seq);
        })
    });
    group.bench_function("rank_of", |b| {
        b.iter(|| black_box(index.rank_of(rng.user())))
    });
    group.bench_function("top_100", |b| {
        b.iter(|| black_box(index.range(1, 100).collect::<Vec<Entry>>()))
    });
    group.bench_function("around", |b| {
        b.iter(|| {
            let rank = index.rank_of(rng.user()).unwrap_or(1);
            black_box(
                index
                    .range(rank.saturating_sub(5), 11)
                    .collect::<Vec<Entry>>(),
            )
        })
    });
    group.bench_function("intern_get", |b| {
        let ids: Vec<String> = (0..1024)
            .map(|_| format!("user-{:010}", rng.user().0))
            .collect();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(interner.get(&ids[i]))
        })
    });
    group.bench_function("sparse_set", |b| {
        b.iter(|| {
            seq += 1;
            sparse.set(UserHandle(rng.user().0 & !3), rng.score(), seq);
        })
    });
    group.bench_function("sparse_rank_of", |b| {
        b.iter(|| black_box(sparse.rank_of(UserHandle(rng.user().0 & !3))))
    });
    group.finish();
    report(" after the runs", &interner, &index, None);
}

criterion_group!(benches, rank);
criterion_main!(benches);
