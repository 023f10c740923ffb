//! The embedded backend against the conformance suite, plus what only it promises: persistence across
//! reopen, the data-dir lock, and the master-key check.

use phoenix_store::embedded::OpenError;
use phoenix_store::{EmbeddedStore, MasterKey, Store, conformance};

fn key() -> MasterKey {
    MasterKey::from_hex(&"ab".repeat(32)).unwrap()
}

#[tokio::test]
async fn embedded_store_passes_conformance_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = EmbeddedStore::open_initialized(dir.path(), key())
            .await
            .unwrap();
        conformance::run_all(&store, "emb").await;
        (
            store.list_tenants().await.unwrap(),
            store.list_api_keys().await.unwrap(),
            store.list_leaderboards(None).await.unwrap(),
            store.list_users().await.unwrap(),
            store
                .standings(
                    "emb-score",
                    "points",
                    None,
                    phoenix_store::PageStart::Rank(1),
                    10,
                )
                .await
                .unwrap()
                .unwrap(),
            store
                .tenant_secrets("emb-t1")
                .await
                .unwrap()
                .unwrap()
                .current,
        )
    };
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    assert_eq!(store.list_tenants().await.unwrap(), before.0);
    assert_eq!(store.list_api_keys().await.unwrap(), before.1);
    let lbs = store.list_leaderboards(None).await.unwrap();
    assert_eq!(lbs, before.2);
    assert_eq!(lbs[0].uid, before.2[0].uid);
    assert_eq!(store.list_users().await.unwrap(), before.3);
    assert!(!before.3.is_empty());
    assert_eq!(
        store
            .tenant_secrets("emb-t1")
            .await
            .unwrap()
            .unwrap()
            .current,
        before.5
    );
    // Standings are rebuilt from the log exactly, and ids stay deduplicated.
    assert_eq!(
        store
            .standings(
                "emb-score",
                "points",
                None,
                phoenix_store::PageStart::Rank(1),
                10
            )
            .await
            .unwrap()
            .unwrap(),
        before.4
    );
    // Secrets are sealed: the plaintext never reaches the disk.
    let log: Vec<u8> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!log.is_empty());
    let needle = b"pk_emb_conformance_key";
    assert!(!log.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test]
async fn a_second_opener_is_refused_and_a_wrong_key_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    match EmbeddedStore::open(dir.path(), key()) {
        Err(OpenError::Locked(_)) => {}
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    drop(store);
    let other = MasterKey::from_hex(&"cd".repeat(32)).unwrap();
    match EmbeddedStore::open(dir.path(), other) {
        Err(OpenError::WrongMasterKey) => {}
        other => panic!("expected WrongMasterKey, got {:?}", other.err()),
    }
}

fn event(id: &str, user: &str, score: f64) -> phoenix_core::event::Event {
    let now = jiff::Timestamp::now();
    phoenix_core::event::Event::from_json(
        &serde_json::json!({
            "event_id": id, "type": "match.completed", "actor": {"user_id": user},
            "occurred_at": now.to_string(), "attrs": {"score": score}
        }),
        phoenix_core::event::EventRules {
            now,
            dedupe_horizon: jiff::SignedDuration::from_hours(24),
        },
    )
    .unwrap()
}

async fn top(store: &EmbeddedStore) -> Vec<(String, f64)> {
    top_of(store, "emb-score").await
}

async fn top_of(store: &EmbeddedStore, tenant: &str) -> Vec<(String, f64)> {
    store
        .standings(
            tenant,
            "points",
            None,
            phoenix_store::PageStart::Rank(1),
            100,
        )
        .await
        .unwrap()
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.user_id, e.score))
        .collect()
}

#[tokio::test]
async fn a_snapshot_plus_the_log_tail_recovers_everything() {
    use phoenix_store::IngestStatus::{Accepted, Duplicate};
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let store = EmbeddedStore::open_initialized(dir.path(), key())
            .await
            .unwrap();
        conformance::run_all(&store, "emb").await;
        store
            .ingest("emb-score", vec![event("s1", "cat", 7.0)])
            .await
            .unwrap();
        store.checkpoint().await.unwrap();
        assert_eq!(store.events_since_snapshot(), 0);
        // After the snapshot: more events and a metadata change, found in the log's tail.
        store
            .ingest(
                "emb-score",
                vec![event("s2", "cat", 1.0), event("s3", "dan", 50.0)],
            )
            .await
            .unwrap();
        store.revoke_api_key("emb-key-1").await.unwrap();
        (top(&store).await, store.list_api_keys().await.unwrap())
    };
    let snapshots: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot-"))
        .collect();
    assert_eq!(snapshots.len(), 1);
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    assert_eq!(top(&store).await, expected.0);
    assert_eq!(store.list_api_keys().await.unwrap(), expected.1);
    // Ids from before and after the snapshot are still remembered.
    let again = store
        .ingest(
            "emb-score",
            vec![
                event("s1", "cat", 7.0),
                event("s3", "dan", 50.0),
                event("s4", "cat", 1.0),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again, vec![Duplicate, Duplicate, Accepted]);
    drop(store);

    // A damaged snapshot is ignored: the full log gives the same answer.
    let path = snapshots[0].path();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    let mut with_s4 = expected.0.clone();
    with_s4.iter_mut().for_each(|(u, s)| {
        if u == "cat" {
            *s += 1.0;
        }
    });
    assert_eq!(top(&store).await, with_s4);
    store.checkpoint().await.unwrap();
    drop(store);
    // And a snapshot still refuses another master key.
    let other = MasterKey::from_hex(&"cd".repeat(32)).unwrap();
    assert!(matches!(
        EmbeddedStore::open(dir.path(), other),
        Err(OpenError::WrongMasterKey)
    ));
}

/// The data dir holds password and token hashes and sealed secrets: owner only, including what an
/// earlier version left readable by others.
#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_files_are_for_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = data.join("left-over.txt");
    std::fs::write(&old, b"x").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    {
        let store = EmbeddedStore::open_initialized(&data, key()).await.unwrap();
        conformance::run_all(&store, "perm").await;
        store.checkpoint().await.unwrap();
    }
    // SQLite's `-wal` and `-shm` files may vanish during the walk (the ledger's connections close on
    // its own threads as the store goes): a file that is gone has no mode to check.
    let mode = |p: &std::path::Path| match std::fs::metadata(p) {
        Ok(m) => Some(m.permissions().mode() & 0o777),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{}: {e}", p.display()),
    };
    assert_eq!(mode(&data), Some(0o700));
    let mut files = 0;
    let mut dirs = vec![data.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), Some(0o700), "{}", path.display());
                dirs.push(path);
            } else if let Some(m) = mode(&path) {
                assert_eq!(m, 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(files >= 3, "expected the log, a snapshot and the lock");
}

fn segments(dir: &std::path::Path) -> Vec<u64> {
    phoenix_store::journal::list_segments(&dir.join("wal"))
        .unwrap()
        .iter()
        .map(|s| s.start)
        .collect()
}

/// Opens and initializes the store in `dir` with `options`.
async fn open_with(
    dir: &std::path::Path,
    options: phoenix_store::embedded::EmbeddedOptions,
) -> EmbeddedStore {
    let store = EmbeddedStore::open_with(dir, key(), options).unwrap();
    store.initialize().await.unwrap();
    store
}

async fn ingest(store: &EmbeddedStore, from: usize) {
    let events: Vec<_> = (from..from + 20)
        .map(|i| event(&format!("r{i}"), &format!("p{}", i % 7), 1.0))
        .collect();
    store.ingest("ret-score", events).await.unwrap();
}

/// The log rolls over into segments; retention deletes only segments that every kept snapshot covers,
/// and the store reopens from what is left with nothing lost.
#[tokio::test]
async fn retention_deletes_only_segments_every_snapshot_covers() {
    use phoenix_store::embedded::EmbeddedOptions;
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        log_retention: Some(std::time::Duration::ZERO),
        segment_bytes: 2048,
        ..EmbeddedOptions::default()
    };
    let open = || open_with(dir.path(), options.clone());
    let store = open().await;
    conformance::run_all(&store, "ret").await;
    for round in 0..10 {
        ingest(&store, round * 20).await;
    }
    let before = segments(dir.path());
    assert!(before.len() > 3, "the log rolled over: {before:?}");
    assert_eq!(before[0], 0);

    // One snapshot: it is the only one, so everything before it may go.
    store.checkpoint().await.unwrap();
    let covered = |dir: &std::path::Path| -> Vec<u64> {
        let mut offsets: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_prefix("snapshot-")?
                    .strip_suffix(".bin")?
                    .parse()
                    .ok()
            })
            .collect();
        offsets.sort_unstable();
        offsets
    };
    let first_snapshot = covered(dir.path())[0];
    let after_one = segments(dir.path());
    assert!(
        after_one[0] > 0,
        "covered segments were deleted: {after_one:?}"
    );
    assert!(
        after_one[0] <= first_snapshot,
        "the segment holding the snapshot's offset stays"
    );
    // More events, a second snapshot: the first one still bounds what may be deleted.
    for round in 10..20 {
        ingest(&store, round * 20).await;
    }
    store.checkpoint().await.unwrap();
    let kept = covered(dir.path());
    assert_eq!(kept.len(), 2);
    let after_two = segments(dir.path());
    assert!(
        after_two[0] <= kept[0],
        "a segment the older snapshot needs was deleted: {after_two:?} vs {kept:?}"
    );
    let expected = top_of(&store, "ret-score").await;
    drop(store);

    // Reopens from the newest snapshot plus the tail, and from the older one if the newest is damaged.
    let store = open().await;
    assert_eq!(top_of(&store, "ret-score").await, expected);
    let again = store
        .ingest(
            "ret-score",
            vec![event("r0", "p0", 1.0), event("r399", "p0", 1.0)],
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![
            phoenix_store::IngestStatus::Duplicate,
            phoenix_store::IngestStatus::Duplicate
        ]
    );
    let expected = top_of(&store, "ret-score").await;
    drop(store);
    let newest = dir.path().join(format!("snapshot-{:020}.bin", kept[1]));
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&newest, bytes).unwrap();
    let store = open().await;
    assert_eq!(top_of(&store, "ret-score").await, expected);
}

/// A data dir from before segments (one `wal.log`) is moved into `wal/` and reads the same.
#[tokio::test]
async fn a_single_file_log_becomes_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let store = EmbeddedStore::open_initialized(dir.path(), key())
            .await
            .unwrap();
        conformance::run_all(&store, "old").await;
        top_of(&store, "old-score").await
    };
    let first = dir.path().join("wal").join(format!("{:020}.log", 0));
    std::fs::rename(&first, dir.path().join("wal.log")).unwrap();
    std::fs::remove_dir(dir.path().join("wal")).unwrap();
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    assert!(!dir.path().join("wal.log").exists());
    assert_eq!(segments(dir.path()), vec![0]);
    assert_eq!(top_of(&store, "old-score").await, expected);
}

/// Every page shape of one window's history, for byte-for-byte comparisons.
async fn history(store: &EmbeddedStore, tenant: &str, window: &str) -> Vec<String> {
    use phoenix_store::PageStart;
    let id = phoenix_core::window::WindowId::parse(window).unwrap();
    let mut pages = Vec::new();
    let mut starts = vec![
        PageStart::Rank(1),
        PageStart::Rank(3),
        PageStart::Rank(40),
        PageStart::Around {
            user_id: "p3".into(),
            radius: 2,
        },
        PageStart::Around {
            user_id: "nobody".into(),
            radius: 2,
        },
    ];
    let first = store
        .window_standings(tenant, "sprint", &id, PageStart::Rank(1), 4)
        .await
        .unwrap()
        .unwrap();
    let last = first.entries.last().unwrap();
    starts.push(PageStart::After {
        score: last.score,
        seq: last.seq,
        user_id: last.user_id.clone(),
    });
    for start in starts {
        let page = store
            .window_standings(tenant, "sprint", &id, start, 4)
            .await
            .unwrap();
        pages.push(format!("{page:?}"));
    }
    for user in ["p0", "p5", "nobody"] {
        let me = store
            .standing_of(tenant, "sprint", Some(&id), user)
            .await
            .unwrap();
        pages.push(format!("{me:?}"));
    }
    pages.push(format!(
        "{:?}",
        store.past_windows(tenant, "sprint").await.unwrap()
    ));
    pages
}

/// An ended window moves out of memory into a cold file and answers every history read exactly as
/// before: after the move, after a restart (with and without a snapshot), and after deletion; a
/// damaged cold file is refused, never served.
#[tokio::test]
async fn ended_windows_go_cold_and_read_the_same() {
    use phoenix_core::ids::{LeaderboardId, TenantId};
    use phoenix_store::model::{LeaderboardStatus, NewLeaderboard};
    let dir = tempfile::tempdir().unwrap();
    let tenant = "cold";
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    store
        .create_tenant(
            TenantId::parse(tenant).unwrap(),
            "Cold".into(),
            "s".repeat(32),
        )
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    let ends_at = now + jiff::SignedDuration::from_millis(400);
    store
        .create_leaderboard(NewLeaderboard {
            leaderboard_id: LeaderboardId::parse("sprint").unwrap(),
            tenant_id: TenantId::parse(tenant).unwrap(),
            name: "Sprint".into(),
            description: None,
            status: LeaderboardStatus::Active,
            config: serde_json::json!({
                "timeframe": {"type": "custom",
                              "starts_at": (now - jiff::SignedDuration::from_hours(1)).to_string(),
                              "ends_at": ends_at.to_string()},
                "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}]},
                "ranking": {"size": 8}
            }),
        })
        .await
        .unwrap();
    let events: Vec<_> = (0..30)
        .map(|i| event(&format!("c{i}"), &format!("p{}", i % 10), f64::from(i % 4)))
        .collect();
    store.ingest(tenant, events).await.unwrap();
    while jiff::Timestamp::now() < ends_at {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let hot = history(&store, tenant, "custom").await;
    assert!(hot[0].contains("total_entries: 8"), "{}", hot[0]);
    // No event arrived after the end: a tick record freezes it, then it moves.
    assert_eq!(store.move_ended_windows().await.unwrap(), 1);
    assert_eq!(store.move_ended_windows().await.unwrap(), 0);
    assert_eq!(store.stats().windows_moved_cold, 1);
    let cold_file = dir.path().join("cold");
    assert!(cold_file.exists());
    assert_eq!(
        history(&store, tenant, "custom").await,
        hot,
        "after the move"
    );
    // A late event changes nothing.
    store
        .ingest(tenant, vec![event("late", "p1", 100.0)])
        .await
        .unwrap();
    assert_eq!(
        history(&store, tenant, "custom").await,
        hot,
        "after a late event"
    );
    drop(store);

    // Restart without a snapshot: the log rebuilds the window, which moves again to the same bytes.
    let file = std::fs::read_dir(
        cold_file.join(
            std::fs::read_dir(&cold_file)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        ),
    )
    .unwrap()
    .map(|e| e.unwrap().path())
    .find(|p| p.extension().is_some_and(|e| e == "win"))
    .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    // As if the process was killed in the middle of writing a cold file: a torn temporary beside it.
    std::fs::write(file.with_extension("tmp"), &bytes[..bytes.len() / 3]).unwrap();
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    assert_eq!(history(&store, tenant, "custom").await, hot, "replayed");
    assert_eq!(store.move_ended_windows().await.unwrap(), 1);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "moved again to the same bytes"
    );
    store.checkpoint().await.unwrap();
    drop(store);

    // Restart from a snapshot that holds the window as cold: read from the file.
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    assert_eq!(store.move_ended_windows().await.unwrap(), 0);
    assert_eq!(
        history(&store, tenant, "custom").await,
        hot,
        "from the snapshot"
    );
    store.delete_leaderboard(tenant, "sprint").await.unwrap();
    // Player lookups are for live boards; every history page and the listing stay the same.
    let deleted = history(&store, tenant, "custom").await;
    assert_eq!(deleted[..6], hot[..6], "after deletion");
    assert_eq!(deleted.last(), hot.last(), "after deletion");
    drop(store);

    // A damaged file is refused with an error naming it.
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x20;
    std::fs::write(&file, damaged).unwrap();
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    let id = phoenix_core::window::WindowId::parse("custom").unwrap();
    let err = store
        .window_standings(tenant, "sprint", &id, phoenix_store::PageStart::Rank(1), 5)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
    // Listing still works: it needs no standings.
    assert_eq!(
        store
            .past_windows(tenant, "sprint")
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
}

fn event_at(
    id: &str,
    user: &str,
    occurred_at: jiff::Timestamp,
    now: jiff::Timestamp,
) -> phoenix_core::event::Event {
    phoenix_core::event::Event::from_json(
        &serde_json::json!({
            "event_id": id, "type": "match.completed", "actor": {"user_id": user},
            "occurred_at": occurred_at.to_string(), "attrs": {"score": 1}
        }),
        phoenix_core::event::EventRules {
            now,
            dedupe_horizon: jiff::SignedDuration::from_hours(24 * 7),
        },
    )
    .unwrap()
}

/// With a clock the test drives: an id accepted six days ago is still a duplicate after its key was
/// frozen to disk and the process restarted (also when the retry carries another `occurred_at`), new
/// ids never are, and ids past the horizon are forgotten whole pieces at a time.
#[tokio::test]
async fn a_duplicate_from_six_days_ago_is_caught_after_a_restart() {
    use phoenix_store::IngestStatus::{Accepted, Duplicate};
    use phoenix_store::embedded::{Clock, EmbeddedOptions};
    let dir = tempfile::tempdir().unwrap();
    let start: jiff::Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
    let clock = Clock::manual(start);
    let options = EmbeddedOptions {
        clock: clock.clone(),
        dedupe_hot_keys: 50,
        ..EmbeddedOptions::default()
    };
    let open = || open_with(dir.path(), options.clone());
    let store = open().await;
    store
        .create_tenant(
            phoenix_core::ids::TenantId::parse("six").unwrap(),
            "Six".into(),
            "s".repeat(32),
        )
        .await
        .unwrap();
    let day = jiff::SignedDuration::from_hours(24);
    // Six days of traffic, 120 ids a day, frozen along the way.
    for d in 0..6 {
        let now = clock.now();
        let events: Vec<_> = (0..120)
            .map(|i| event_at(&format!("d{d}-{i}"), "p", now, now))
            .collect();
        let statuses = store.ingest("six", events).await.unwrap();
        assert!(statuses.iter().all(|s| *s == Accepted));
        store.maintain().await.unwrap();
        clock.advance(day);
        store.maintain().await.unwrap();
    }
    assert!(store.stats().dedupe_pieces >= 6, "{:?}", store.stats());
    store.checkpoint().await.unwrap();
    drop(store);

    let store = open().await;
    let now = clock.now();
    let retries = vec![
        // Day 0's id, as first sent six days ago.
        event_at("d0-7", "p", start, now),
        // The same id with another occurred_at.
        event_at("d0-8", "p", now - jiff::SignedDuration::from_mins(3), now),
        event_at("d5-119", "p", now, now),
        event_at("brand-new", "p", now, now),
    ];
    assert_eq!(
        store.ingest("six", retries).await.unwrap(),
        vec![Duplicate, Duplicate, Duplicate, Accepted]
    );
    let fresh: Vec<_> = (0..500)
        .map(|i| event_at(&format!("fresh-{i}"), "p", now, now))
        .collect();
    let statuses = store.ingest("six", fresh).await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == Accepted),
        "a new id refused as a duplicate"
    );
    // Two more days: day 0's piece is past the horizon and goes whole.
    let remembered = store.stats().dedupe_entries;
    clock.advance(day * 2);
    store.maintain().await.unwrap();
    assert_eq!(
        store.stats().dedupe_entries,
        remembered - 120,
        "day 0's piece went whole: {:?}",
        store.stats()
    );
}

/// Retention ages every complete segment from when the store first saw it, so after the retention has
/// passed, every segment the snapshots cover goes in one pass, not one segment per retention period.
#[tokio::test]
async fn retention_deletes_every_covered_segment_once_it_is_old_enough() {
    use phoenix_store::embedded::{Clock, EmbeddedOptions};
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2026-03-01T10:00:00Z".parse().unwrap());
    let options = EmbeddedOptions {
        log_retention: Some(std::time::Duration::from_secs(3600)),
        segment_bytes: 2048,
        clock: clock.clone(),
        ..EmbeddedOptions::default()
    };
    let store = open_with(dir.path(), options).await;
    // (Not the conformance suite: it expects the system clock.)
    store
        .create_tenant(
            phoenix_core::ids::TenantId::parse("ret-score").unwrap(),
            "Ret".into(),
            "s".repeat(32),
        )
        .await
        .unwrap();
    for round in 0..10 {
        ingest(&store, round * 20).await;
    }
    store.checkpoint().await.unwrap();
    store.checkpoint().await.unwrap();
    let before = segments(dir.path());
    assert!(before.len() > 4, "{before:?}");
    assert_eq!(before, segments(dir.path()), "nothing is old enough yet");
    clock.advance(jiff::SignedDuration::from_hours(2));
    ingest(&store, 1000).await;
    store.checkpoint().await.unwrap();
    let older_snapshot = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("snapshot-")?
                .strip_suffix(".bin")?
                .parse::<u64>()
                .ok()
        })
        .min()
        .unwrap();
    let after = phoenix_store::journal::list_segments(&dir.path().join("wal")).unwrap();
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    assert!(
        after.iter().all(|s| s.start + s.len > older_snapshot),
        "every segment the snapshots cover went at once: {after:?}, older snapshot at {older_snapshot}"
    );
}

#[tokio::test]
async fn a_missing_ledger_is_refused_once_a_snapshot_relied_on_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open_initialized(dir.path(), key())
            .await
            .unwrap();
        store
            .create_tenant(
                phoenix_core::ids::TenantId::parse("t").unwrap(),
                "T".into(),
                "s".repeat(32),
            )
            .await
            .unwrap();
        store.checkpoint().await.unwrap();
    }
    for file in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }
    match EmbeddedStore::open(dir.path(), key()) {
        Err(OpenError::Corrupt { detail, .. }) => assert!(detail.contains("ledger.db"), "{detail}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a data dir without its ledger was opened"),
    }
}

/// Windows that ended while the process was down are settled when it is back, one settlement per
/// window (also the ones nobody scored in), and none twice across another restart.
#[tokio::test]
async fn windows_that_ended_while_down_are_settled_once_when_it_is_back() {
    use phoenix_store::embedded::{Clock, EmbeddedOptions};
    use phoenix_store::rewards::{Activity, NewRewardRule};
    let dir = tempfile::tempdir().unwrap();
    let start = jiff::Timestamp::now();
    let clock = Clock::manual(start);
    let options = EmbeddedOptions {
        clock: clock.clone(),
        ..EmbeddedOptions::default()
    };
    {
        let store = open_with(dir.path(), options.clone()).await;
        store
            .create_tenant(
                phoenix_core::ids::TenantId::parse("down").unwrap(),
                "Down".into(),
                "s".repeat(32),
            )
            .await
            .unwrap();
        let config = phoenix_core::config::LeaderboardConfig::from_json(&serde_json::json!({
            "timeframe": {"type": "daily", "timezone": "UTC"},
            "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}]}
        }))
        .unwrap();
        store
            .create_leaderboard(phoenix_store::model::NewLeaderboard {
                leaderboard_id: phoenix_core::ids::LeaderboardId::parse("daily").unwrap(),
                tenant_id: phoenix_core::ids::TenantId::parse("down").unwrap(),
                name: "Daily".into(),
                description: None,
                status: phoenix_store::model::LeaderboardStatus::Active,
                config: config.to_json(),
            })
            .await
            .unwrap();
        store
            .create_reward_rule(NewRewardRule {
                tenant_id: "down".into(),
                rule_id: "top".into(),
                leaderboard_id: "daily".into(),
                name: "Top".into(),
                status: Activity::Active,
                min_participants: 0,
                settle_delay_seconds: 0,
                tiers: serde_json::json!([{"rank_from": 1, "rank_to": 2, "rewards": [
                    {"type": "badge", "badge": "day"}]}]),
            })
            .await
            .unwrap();
        let events = (0..5)
            .map(|i| event(&format!("d{i}"), &format!("p{i}"), f64::from(i)))
            .collect();
        store.ingest("down", events).await.unwrap();
    }
    // Three days pass with the process stopped.
    clock.advance(jiff::SignedDuration::from_hours(72));
    let store = open_with(dir.path(), options.clone()).await;
    store.maintain().await.unwrap();
    let settled = store
        .list_settlements("down", "top")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.len(), 3, "{settled:?}");
    let grants: u64 = settled.iter().map(|s| s.grants).sum();
    assert_eq!(
        grants, 2,
        "the first day's top two, nothing for the empty days"
    );
    assert!(
        settled
            .iter()
            .all(|s| s.window.ends_at.unwrap() <= clock.now())
    );
    drop(store);
    let store = open_with(dir.path(), options).await;
    store.maintain().await.unwrap();
    assert_eq!(
        store
            .list_settlements("down", "top")
            .await
            .unwrap()
            .unwrap()
            .len(),
        3
    );
}

/// The outbox ages: a disabled webhook's pending messages fail after 3 days, and settled messages
/// (with their attempts) are removed 7 days after they were made.
#[tokio::test]
async fn the_outbox_ages_pending_messages_of_a_disabled_webhook_and_forgets_old_ones() {
    use phoenix_store::achievements::{DeliveryState, NewWebhook, WebhookPatch, WebhookStatus};
    use phoenix_store::embedded::{Clock, EmbeddedOptions};
    use phoenix_store::rewards::{Activity, NewCampaign, RedeemOutcome};
    let dir = tempfile::tempdir().unwrap();
    let start = jiff::Timestamp::now();
    let clock = Clock::manual(start);
    let options = EmbeddedOptions {
        clock: clock.clone(),
        ..EmbeddedOptions::default()
    };
    let store = open_with(dir.path(), options).await;
    store
        .create_tenant(
            phoenix_core::ids::TenantId::parse("age").unwrap(),
            "Age".into(),
            "s".repeat(32),
        )
        .await
        .unwrap();
    let (hook, secret) = store
        .create_webhook(NewWebhook {
            tenant_id: "age".into(),
            url: "https://example.com/hook".into(),
            events: vec!["coupon.redeemed".into()],
            status: WebhookStatus::Active,
            description: String::new(),
        })
        .await
        .unwrap();
    assert!(secret.starts_with("whsec_"));
    store
        .create_campaign(NewCampaign {
            tenant_id: "age".into(),
            campaign_id: "c".into(),
            name: "C".into(),
            rewards: serde_json::json!([{"type": "badge", "badge": "b"}]),
            code: Some("AGE-CODE".into()),
            max_redemptions: None,
            per_player_limit: 1,
            starts_at: None,
            expires_at: None,
            status: Activity::Active,
        })
        .await
        .unwrap();
    let redeem = |user: &'static str| {
        let store = &store;
        async move {
            match store.redeem("age", user, "AGE-CODE", None).await.unwrap() {
                RedeemOutcome::Redeemed { .. } => {}
                other => panic!("{other:?}"),
            }
        }
    };
    redeem("ann").await;
    let id = hook.webhook_id.clone();
    async fn log(store: &EmbeddedStore, id: &str) -> Vec<phoenix_store::achievements::DeliveryRow> {
        store
            .list_deliveries("age", id, None, 100)
            .await
            .unwrap()
            .unwrap()
            .items
    }
    let rows = log(&store, &id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, DeliveryState::Pending);
    assert_eq!(rows[0].attempt, 0);
    // Due now, by the webhook's own secret.
    let due = store.due_deliveries(start, 10, None).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].keys.len(), 1);
    assert_eq!(
        due[0].keys[0],
        phoenix_core::webhook::secret_key(&secret).unwrap()
    );
    // Disabled: nothing is due; after 3 days the message fails.
    store
        .update_webhook(
            "age",
            &id,
            WebhookPatch {
                status: Some(WebhookStatus::Disabled),
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .due_deliveries(start, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(jiff::SignedDuration::from_hours(71));
    store.maintain().await.unwrap();
    assert_eq!(log(&store, &id).await[0].state, DeliveryState::Pending);
    clock.advance(jiff::SignedDuration::from_hours(2));
    store.maintain().await.unwrap();
    assert_eq!(log(&store, &id).await[0].state, DeliveryState::Failed);
    // Seven days after it was made, it is gone.
    clock.advance(jiff::SignedDuration::from_hours(24 * 4));
    store.maintain().await.unwrap();
    assert!(log(&store, &id).await.is_empty());
    assert_eq!(store.stats().rewards.outbox_depth, 0);
}

/// An active achievement of tenant `ach` counting `match.completed` events, with one step.
fn count_achievement(id: &str, threshold: f64) -> phoenix_store::achievements::NewAchievement {
    phoenix_store::achievements::NewAchievement {
        tenant_id: "ach".into(),
        achievement_id: id.into(),
        name: id.into(),
        description: String::new(),
        status: phoenix_store::rewards::Activity::Active,
        hidden: false,
        metric: serde_json::json!({"event_type": "match.completed", "aggregation": "count"}),
        steps: serde_json::json!([{"threshold": threshold, "rewards": []}]),
    }
}

/// Events accepted before an achievement was made never count toward it, also after a restart that
/// replays the log (the rows' watermark moves past every change to achievements).
#[tokio::test]
async fn a_replay_never_counts_events_from_before_an_achievement() {
    let dir = tempfile::tempdir().unwrap();
    let new = |id: &str| count_achievement(id, 100.0);
    async fn value(store: &EmbeddedStore, id: &str) -> Option<f64> {
        store
            .player_achievements("ach", "ann")
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.achievement.achievement_id == id)
            .map(|p| p.value)
    }
    {
        let store = EmbeddedStore::open_initialized(dir.path(), key())
            .await
            .unwrap();
        store
            .create_tenant(
                phoenix_core::ids::TenantId::parse("ach").unwrap(),
                "Ach".into(),
                "s".repeat(32),
            )
            .await
            .unwrap();
        // Three events before any achievement, then one, then two more events.
        let events: Vec<_> = (0..3)
            .map(|i| event(&format!("a{i}"), "ann", 1.0))
            .collect();
        store.ingest("ach", events).await.unwrap();
        store.create_achievement(new("wins")).await.unwrap();
        let events: Vec<_> = (3..5)
            .map(|i| event(&format!("a{i}"), "ann", 1.0))
            .collect();
        store.ingest("ach", events).await.unwrap();
        let started = std::time::Instant::now();
        while value(&store, "wins").await != Some(2.0) {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // Reopened without a snapshot: the whole log is replayed.
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    assert_eq!(value(&store, "wins").await, Some(2.0));
}

/// Changes to achievements take effect in log order, for events evaluated on the ingest path before
/// the change as for those after it: a paused achievement keeps its progress and counts nothing
/// until resumed, one created while events are in flight counts exactly those after it, and a
/// replay of the whole log rebuilds the same values.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn achievement_changes_take_effect_in_log_order_live_and_on_replay() {
    use phoenix_store::achievements::AchievementPatch;
    use phoenix_store::rewards::Activity;
    let dir = tempfile::tempdir().unwrap();
    let new = |id: &str| count_achievement(id, 1000.0);
    let status = |s: Activity| AchievementPatch {
        name: None,
        description: None,
        status: Some(s),
        hidden: None,
        steps: None,
    };
    async fn values(store: &EmbeddedStore) -> Vec<(String, f64)> {
        store
            .player_achievements("ach", "ann")
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.achievement.achievement_id, p.value))
            .collect()
    }
    async fn settled(store: &EmbeddedStore, expect: impl Fn(&[(String, f64)]) -> bool) {
        let started = std::time::Instant::now();
        while !expect(&values(store).await) {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let live = {
        let store = std::sync::Arc::new(
            EmbeddedStore::open_initialized(dir.path(), key())
                .await
                .unwrap(),
        );
        store
            .create_tenant(
                phoenix_core::ids::TenantId::parse("ach").unwrap(),
                "Ach".into(),
                "s".repeat(32),
            )
            .await
            .unwrap();
        store.create_achievement(new("wins")).await.unwrap();
        store.create_achievement(new("plays")).await.unwrap();
        let ingest = |from: usize, n: usize| {
            let store = store.clone();
            async move {
                for i in from..from + n {
                    let e = event(&format!("e{i}"), "ann", 1.0);
                    store.ingest("ach", vec![e]).await.unwrap();
                }
            }
        };
        ingest(0, 5).await;
        settled(&store, |v| v.iter().any(|(a, x)| a == "wins" && *x == 5.0)).await;
        store
            .update_achievement("ach", "wins", status(Activity::Inactive))
            .await
            .unwrap();
        // Paused: counts nothing, and its progress stays. Meanwhile `kills` is created while
        // events are being ingested (and evaluated against `plays` on the ingest path): those
        // after it in the log count, none before.
        let racing: Vec<_> = (0..4)
            .map(|t| tokio::spawn(ingest(1000 * (t + 1), 50)))
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store.create_achievement(new("kills")).await.unwrap();
        for task in racing {
            task.await.unwrap();
        }
        store
            .update_achievement("ach", "wins", status(Activity::Active))
            .await
            .unwrap();
        ingest(205, 2).await;
        settled(&store, |v| {
            v.iter().any(|(a, x)| a == "wins" && *x == 7.0)
                && v.iter().any(|(a, x)| a == "kills" && *x >= 2.0)
        })
        .await;
        let live = values(&store).await;
        let kills = live.iter().find(|(a, _)| a == "kills").unwrap().1;
        assert!(kills <= 202.0, "{live:?}");
        assert!(
            live.iter().any(|(a, x)| a == "plays" && *x == 207.0),
            "{live:?}"
        );
        live
    };
    // Reopened without a snapshot: the whole log is replayed, to the same values.
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    let mut again = values(&store).await;
    let mut live = live;
    again.sort_by(|a, b| a.0.cmp(&b.0));
    live.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(again, live);
}

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    conformance::last_admin_remains(&store, "la").await;
}
