//! Recovery time: how long `EmbeddedStore::open` takes to rebuild exact standings (and the dedupe index)
//! after N events, from a snapshot plus the log's tail, and by replaying the whole log. The events are
//! written through the store's own ingest path (durable, group-committed batches of 1000), not HTTP.
//!
//! `cargo bench -p phoenix-store --bench recovery` (PHOENIX_BENCH_EVENTS, default 10,000,000;
//! PHOENIX_BENCH_USERS, default 100,000; PHOENIX_BENCH_FULL_REPLAY=0 skips the full-log replay).

use jiff::{SignedDuration, Timestamp};
use phoenix_core::event::{Event, EventRules};
use phoenix_core::ids::{LeaderboardId, TenantId};
use phoenix_store::model::{LeaderboardStatus, NewLeaderboard};
use phoenix_store::{EmbeddedStore, MasterKey, Store};
use std::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn key() -> MasterKey {
    MasterKey::from_hex(&"ab".repeat(32)).unwrap()
}

fn dir_size(dir: &std::path::Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

async fn standings(store: &EmbeddedStore) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for lb in ["xp", "matches"] {
        let page = store
            .standings("bench", lb, None, phoenix_store::PageStart::Rank(1), 100)
            .await
            .unwrap()
            .unwrap();
        out.extend(page.entries.into_iter().map(|e| (e.user_id, e.score)));
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let events = env_u64("PHOENIX_BENCH_EVENTS", 10_000_000);
    let users = env_u64("PHOENIX_BENCH_USERS", 100_000).max(1);
    let full_replay = env_u64("PHOENIX_BENCH_FULL_REPLAY", 1) != 0;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();

    let (expected, ingest_secs) = runtime.block_on(async {
        let store = EmbeddedStore::open_initialized(path, key()).await.unwrap();
        store
            .create_tenant(TenantId::parse("bench").unwrap(), "Bench".into(), "s".into())
            .await
            .unwrap();
        for (id, aggregation, timeframe) in [
            ("xp", "sum", serde_json::json!({"type": "all_time"})),
            (
                "matches",
                "count",
                serde_json::json!({"type": "daily", "timezone": "Europe/Berlin"}),
            ),
        ] {
            store
                .create_leaderboard(NewLeaderboard {
                    leaderboard_id: LeaderboardId::parse(id).unwrap(),
                    tenant_id: TenantId::parse("bench").unwrap(),
                    name: id.into(),
                    description: None,
                    status: LeaderboardStatus::Active,
                    config: serde_json::json!({
                        "timeframe": timeframe,
                        "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}],
                                    "aggregation": aggregation}
                    }),
                })
                .await
                .unwrap();
        }
        let started = Instant::now();
        let now = Timestamp::now();
        let rules = EventRules {
            now: now + SignedDuration::from_secs(1),
            dedupe_horizon: SignedDuration::from_hours(24),
        };
        let occurred = now.to_string();
        let mut sent = 0u64;
        while sent < events {
            let n = (events - sent).min(1000);
            let batch: Vec<Event> = (sent..sent + n)
                .map(|i| {
                    let body = serde_json::json!({
                        "event_id": format!("e{i}"),
                        "type": "match.completed",
                        "actor": {"user_id": format!("user-{:010}", (i * 7919) % users)},
                        "occurred_at": occurred,
                        "attrs": {"score": (i % 97) as f64}
                    });
                    Event::from_json(&body, rules).unwrap()
                })
                .collect();
            store.ingest("bench", batch).await.unwrap();
            sent += n;
        }
        let ingest_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        store.checkpoint().await.unwrap();
        println!(
            "snapshot written in {:.2} s ({:.0} MB)",
            started.elapsed().as_secs_f64(),
            dir_size(path, "snapshot-") as f64 / 1e6
        );
        (standings(&store).await, ingest_secs)
    });
    println!(
        "{events} events for {users} users through the store's ingest path in {ingest_secs:.1} s ({:.0} events/s); log {:.0} MB",
        events as f64 / ingest_secs,
        dir_size(&path.join("wal"), "") as f64 / 1e6
    );

    let started = Instant::now();
    let store = EmbeddedStore::open(path, key()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(runtime.block_on(standings(&store)), expected);
    drop(store);
    println!(
        "recovery from snapshot + log tail: {secs:.2} s for {events} events (target: under 10 s)"
    );

    if full_replay {
        for entry in std::fs::read_dir(path).unwrap().filter_map(|e| e.ok()) {
            if entry.file_name().to_string_lossy().starts_with("snapshot-") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        let started = Instant::now();
        let store = EmbeddedStore::open(path, key()).unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(runtime.block_on(standings(&store)), expected);
        println!(
            "recovery by replaying the whole log: {secs:.2} s ({:.0} events/s)",
            events as f64 / secs
        );
    }
}
