//! Group commit: durable appends per second to the journal as the number of concurrent writers grows.
//! One writer pays one fsync per record; many writers share each fsync, so throughput should scale with
//! concurrency until the disk's bandwidth, not its sync latency, is the limit.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phoenix_store::journal::Journal;
use std::sync::Arc;

const RECORDS_PER_ITER: usize = 2048;
const RECORD: [u8; 200] = [7u8; 200];

fn group_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("journal_append_200B");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS_PER_ITER as u64));
    for writers in [1usize, 16, 256] {
        let journal = Journal::open(&dir.path().join(format!("bench-{writers}.log")), |_, _| {
            Ok(())
        })
        .unwrap();
        let journal = Arc::new(journal);
        group.bench_function(format!("{writers}_writers"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let per_writer = RECORDS_PER_ITER / writers;
                    let mut tasks = Vec::with_capacity(writers);
                    for _ in 0..writers {
                        let journal = journal.clone();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..per_writer {
                                journal.append(&RECORD).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
