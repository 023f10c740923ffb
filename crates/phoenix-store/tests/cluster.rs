//! The embedded state machine folding the PostgreSQL log: cluster nodes against the conformance suite
//! and what only a cluster promises (every node folds the same state; duplicates and conflicts are
//! decided in log order whichever node takes the request; a late node catches up). Against the real
//! PostgreSQL (see `support`).

mod support;

use phoenix_core::ids::{LeaderboardId, TenantId};
use phoenix_store::embedded::EmbeddedOptions;
use phoenix_store::model::{LeaderboardStatus, NewLeaderboard};
use phoenix_store::pglog::PgLogOptions;
use phoenix_store::{EmbeddedStore, IngestStatus, MasterKey, PageStart, Store, conformance};
use std::sync::Arc;

fn key() -> MasterKey {
    MasterKey::from_hex(&"cd".repeat(32)).unwrap()
}

struct Node {
    store: Arc<EmbeddedStore>,
    _scratch: tempfile::TempDir,
}

async fn node(url: &str) -> Node {
    node_with(url, EmbeddedOptions::default()).await
}

async fn node_with(url: &str, options: EmbeddedOptions) -> Node {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, url) = (scratch.path().join("node"), url.to_owned());
    let store = tokio::task::spawn_blocking(move || {
        EmbeddedStore::open_cluster(
            &dir,
            key(),
            options,
            PgLogOptions {
                url,
                connections: 4,
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    store.initialize().await.unwrap();
    Node {
        store: Arc::new(store),
        _scratch: scratch,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cluster_nodes_pass_conformance_side_by_side_and_a_late_node_catches_up() {
    let Some(url) = support::fresh_schema("phx_conf").await else {
        return;
    };
    let (a, b) = (node(&url).await, node(&url).await);
    assert!(a.store.is_ready() && b.store.is_ready());
    let (sa, sb) = (a.store.clone(), b.store.clone());
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { conformance::run_all(sa.as_ref(), "ca").await }),
        tokio::spawn(async move { conformance::run_all(sb.as_ref(), "cb").await }),
    );
    ra.unwrap();
    rb.unwrap();
    // Each node's writes are on the other (once it has applied the log that far).
    let c = node(&url).await;
    assert!(c.store.is_ready(), "a node that started is caught up");
    for n in [&a, &b, &c] {
        let tenants = n.store.list_tenants().await.unwrap();
        assert!(tenants.iter().any(|t| t.tenant_id.as_str() == "ca-score"));
        assert!(tenants.iter().any(|t| t.tenant_id.as_str() == "cb-score"));
    }
    let standings = |s: Arc<EmbeddedStore>| async move {
        s.standings("ca-score", "points", None, PageStart::Rank(1), 10)
            .await
            .unwrap()
            .unwrap()
            .entries
    };
    let on_a = standings(a.store.clone()).await;
    assert!(!on_a.is_empty());
    assert_eq!(on_a, standings(c.store.clone()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_events_sent_to_two_nodes_count_once_and_creates_conflict_across_nodes() {
    let Some(url) = support::fresh_schema("phx_once").await else {
        return;
    };
    let (a, b) = (node(&url).await, node(&url).await);
    let t = TenantId::parse("once").unwrap();
    a.store
        .create_tenant(t.clone(), "Once".into(), "s".into())
        .await
        .unwrap();
    // The same id created on the other node is a conflict: decided by the log, not a node's lock.
    let again = b
        .store
        .create_tenant(t.clone(), "Once".into(), "s".into())
        .await;
    assert!(
        matches!(again, Err(phoenix_store::StoreError::Conflict(_))),
        "{again:?}"
    );
    conformance::points_board(b.store.as_ref(), &t).await;
    // Four clients, two per node, send overlapping ids at the same time.
    let mut tasks = Vec::new();
    for (i, store) in [&a, &b, &a, &b].into_iter().enumerate() {
        let store = store.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for round in 0..50 {
                let batch: Vec<_> = (0..10)
                    .map(|k| {
                        let id = format!("e{}", (round * 10 + k + i * 3) % 300);
                        conformance::event(&id, &format!("p{}", k % 7), 1.0)
                    })
                    .collect();
                let statuses = store.ingest("once", batch).await.unwrap();
                accepted += statuses
                    .iter()
                    .filter(|s| **s == IngestStatus::Accepted)
                    .count();
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    assert_eq!(
        accepted, 300,
        "every id accepted exactly once across the nodes"
    );
    let total = |s: Arc<EmbeddedStore>| async move {
        let page = s
            .standings("once", "points", None, PageStart::Rank(1), 100)
            .await
            .unwrap()
            .unwrap();
        (
            page.entries.iter().map(|e| e.score).sum::<f64>(),
            page.entries,
        )
    };
    // B may still be applying A's last records.
    let mut same = false;
    for _ in 0..50 {
        let (sum_a, entries_a) = total(a.store.clone()).await;
        let (sum_b, entries_b) = total(b.store.clone()).await;
        assert!(sum_a <= 300.0 && sum_b <= 300.0);
        if sum_a == 300.0 && entries_a == entries_b {
            same = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(same, "both nodes fold the same standings, each event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_always_remains_when_two_nodes_demote_the_last_two_at_once() {
    let Some(url) = support::fresh_schema("phx_admin").await else {
        return;
    };
    let (a, b) = (node(&url).await, node(&url).await);
    conformance::last_admin_remains(a.store.as_ref(), "la").await;
    use phoenix_store::model::{NewUser, Role, UserPatch};
    // Two ADMINs left ("la-second" and a new one); each node demotes one at the same time: the log
    // decides, and exactly one demotion is refused.
    a.store
        .create_user(NewUser {
            username: "la-third".into(),
            role: Role::Admin,
            password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        })
        .await
        .unwrap();
    let demote = || UserPatch {
        role: Some(Role::Viewer),
        password_hash: None,
    };
    for _ in 0..3 {
        let (sa, sb) = (a.store.clone(), b.store.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { sa.update_user("la-second", demote()).await }),
            tokio::spawn(async move { sb.update_user("la-third", demote()).await }),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(
            ra.is_ok() != rb.is_ok(),
            "exactly one refused: {ra:?} {rb:?}"
        );
        let admins = a
            .store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .filter(|u| u.role == Role::Admin)
            .count();
        assert_eq!(admins, 1);
        // Both ADMIN again for the next round.
        for name in ["la-second", "la-third"] {
            b.store
                .update_user(
                    name,
                    UserPatch {
                        role: Some(Role::Admin),
                        password_hash: None,
                    },
                )
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_settles_exactly_once_while_two_nodes_race_for_it() {
    use phoenix_store::rewards::{Activity, NewRewardRule};
    let Some(url) = support::fresh_schema("phx_settle").await else {
        return;
    };
    let (a, b) = (node(&url).await, node(&url).await);
    let t = TenantId::parse("race").unwrap();
    a.store
        .create_tenant(t.clone(), "Race".into(), "s".into())
        .await
        .unwrap();
    // A window that ends two seconds from now, by the cluster's clock.
    let now = a.store.now();
    a.store
        .create_leaderboard(NewLeaderboard {
            leaderboard_id: LeaderboardId::parse("sprint").unwrap(),
            tenant_id: t.clone(),
            name: "Sprint".into(),
            description: None,
            status: LeaderboardStatus::Active,
            config: serde_json::json!({
                "timeframe": {"type": "custom",
                              "starts_at": (now - jiff::SignedDuration::from_secs(60)).to_string(),
                              "ends_at": (now + jiff::SignedDuration::from_secs(2)).to_string()},
                "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}]}
            }),
        })
        .await
        .unwrap();
    b.store
        .create_reward_rule(NewRewardRule {
            tenant_id: "race".into(),
            rule_id: "top".into(),
            leaderboard_id: "sprint".into(),
            name: "Top".into(),
            status: Activity::Active,
            min_participants: 0,
            settle_delay_seconds: 0,
            tiers: serde_json::json!([{"rank_from": 1, "rank_to": 3, "rewards": [
                {"type": "badge", "badge": "winner"}]}]),
        })
        .await
        .unwrap();
    let events = (0..5)
        .map(|i| conformance::event(&format!("r{i}"), &format!("p{i}"), f64::from(i)))
        .collect();
    a.store.ingest("race", events).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // Both nodes' housekeeping runs at once, several rounds (each node runs it every second).
    for _ in 0..3 {
        let (sa, sb) = (a.store.clone(), b.store.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { sa.maintain().await }),
            tokio::spawn(async move { sb.maintain().await }),
        );
        // A round may be refused while the other node holds the gate; the next round goes on.
        let _ = (ra.unwrap(), rb.unwrap());
    }
    for n in [&a, &b] {
        n.store.barrier().await.unwrap();
        let settled = n
            .store
            .list_settlements("race", "top")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(settled.len(), 1, "{settled:?}");
        assert_eq!(settled[0].grants, 3);
        let grants = n
            .store
            .list_grants("race", Default::default())
            .await
            .unwrap();
        assert_eq!(grants.total, 3, "each winner granted once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_master_key_is_refused() {
    let Some(url) = support::fresh_schema("phx_key").await else {
        return;
    };
    let _a = node(&url).await;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("node");
    let opened = tokio::task::spawn_blocking(move || {
        EmbeddedStore::open_cluster(
            &dir,
            MasterKey::from_hex(&"ef".repeat(32)).unwrap(),
            EmbeddedOptions::default(),
            PgLogOptions {
                url,
                connections: 2,
            },
        )
    })
    .await
    .unwrap();
    let refused = match opened {
        Err(e) => e.to_string(),
        Ok(store) => store.initialize().await.unwrap_err().to_string(),
    };
    assert!(refused.contains("PHOENIX_MASTER_KEY"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_starts_from_the_newest_snapshot_and_log_rows_behind_the_oldest_are_removed() {
    let Some(url) = support::fresh_schema("phx_snap").await else {
        return;
    };
    // Small idempotency pieces, so the snapshots carry some.
    let small = EmbeddedOptions {
        dedupe_hot_keys: 50,
        ..EmbeddedOptions::default()
    };
    let a = node_with(&url, small).await;
    // Every kind of state (metadata, windows, rewards, achievements, webhooks) goes into it.
    conformance::run_all(a.store.as_ref(), "sa").await;
    let t = TenantId::parse("snap").unwrap();
    a.store
        .create_tenant(t.clone(), "Snap".into(), "s".into())
        .await
        .unwrap();
    conformance::points_board(a.store.as_ref(), &t).await;
    let send = |store: Arc<EmbeddedStore>, from: usize, to: usize| async move {
        let mut statuses = Vec::new();
        for chunk in (from..to).collect::<Vec<_>>().chunks(20) {
            let batch = chunk
                .iter()
                .map(|i| conformance::event(&format!("e{i}"), &format!("p{}", i % 13), 1.0))
                .collect();
            statuses.extend(store.ingest("snap", batch).await.unwrap());
        }
        statuses
    };
    send(a.store.clone(), 0, 200).await;
    assert!(a.store.freeze_dedupe().await.unwrap(), "a piece is written");
    let pool = a.store.cluster_pool().unwrap();
    let no_wait = std::time::Duration::ZERO;
    assert!(a.store.checkpoint_cluster(1, no_wait).await.unwrap());
    let first: i64 = sqlx::query_scalar("SELECT max(pos) FROM phoenix_snapshots WHERE complete")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Nothing new: not due.
    assert!(!a.store.checkpoint_cluster(1, no_wait).await.unwrap());
    send(a.store.clone(), 200, 300).await;
    assert!(a.store.checkpoint_cluster(1, no_wait).await.unwrap());
    // Two kept: the log's rows up to the older one are gone, those after it remain.
    let oldest_row: i64 = sqlx::query_scalar("SELECT min(pos) FROM phoenix_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(oldest_row, first + 1);
    // A node that is still there but lags (or replays, or loads a snapshot) keeps the rows it has
    // not applied; once it is gone (no report for 5 minutes) they go.
    let second: i64 = sqlx::query_scalar("SELECT max(pos) FROM phoenix_snapshots WHERE complete")
        .fetch_one(&pool)
        .await
        .unwrap();
    phoenix_store::pgsnap::report_position(&pool, 777, second as u64 - 3)
        .await
        .unwrap();
    send(a.store.clone(), 300, 310).await;
    assert!(a.store.checkpoint_cluster(1, no_wait).await.unwrap());
    let oldest_row: i64 = sqlx::query_scalar("SELECT min(pos) FROM phoenix_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        oldest_row,
        second - 2,
        "the lagging node's next row is kept"
    );
    sqlx::query("UPDATE phoenix_nodes SET seen_us = seen_us - 600000000 WHERE node = 777")
        .execute(&pool)
        .await
        .unwrap();
    send(a.store.clone(), 310, 320).await;
    assert!(a.store.checkpoint_cluster(1, no_wait).await.unwrap());
    let oldest_row: i64 = sqlx::query_scalar("SELECT min(pos) FROM phoenix_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    let older_kept: i64 =
        sqlx::query_scalar("SELECT min(pos) FROM phoenix_snapshots WHERE complete")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        oldest_row,
        older_kept + 1,
        "a node gone for long holds nothing back"
    );
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM phoenix_snapshots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 2);
    // What did not change (most of the ledger's pages) is stored once, and only what a kept
    // snapshot names is kept.
    let (bytes, new_bytes): (i64, i64) = sqlx::query_as(
        "SELECT bytes, new_bytes FROM phoenix_snapshots WHERE complete ORDER BY pos DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        new_bytes < bytes,
        "{new_bytes} of {bytes} bytes stored again"
    );
    let has_piece: bool = sqlx::query_scalar(
        "SELECT position('.keys'::bytea in manifest) > 0 FROM phoenix_snapshots \
         WHERE complete ORDER BY pos DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(has_piece, "the idempotency piece is in the snapshot");
    let unnamed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM phoenix_chunks c WHERE NOT EXISTS \
         (SELECT 1 FROM phoenix_snapshot_refs r WHERE r.sha256 = c.sha256)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unnamed, 0);

    // A new node loads the newest and replays the rest: the same state, the same duplicates.
    send(a.store.clone(), 320, 340).await;
    let c = node(&url).await;
    assert!(c.store.is_ready());
    let standings = |s: Arc<EmbeddedStore>| async move {
        s.standings("snap", "points", None, PageStart::Rank(1), 100)
            .await
            .unwrap()
            .unwrap()
            .entries
    };
    assert_eq!(
        standings(a.store.clone()).await,
        standings(c.store.clone()).await
    );
    let ids = |s: Arc<EmbeddedStore>| async move {
        let mut ids: Vec<String> = s
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.tenant_id.as_str().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(a.store.clone()).await, ids(c.store.clone()).await);
    let again = send(c.store.clone(), 0, 340).await;
    assert!(
        again.iter().all(|s| *s == IngestStatus::Duplicate),
        "ids from before every snapshot are still known"
    );
    let fresh = send(c.store.clone(), 340, 345).await;
    assert!(fresh.iter().all(|s| *s == IngestStatus::Accepted));
    let total: f64 = standings(c.store.clone())
        .await
        .iter()
        .map(|e| e.score)
        .sum();
    assert_eq!(total, 345.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_one_nodes_until_it_lapses_and_its_holder_renews_it() {
    use phoenix_store::pgsnap::{release_lease, take_lease};
    let Some(url) = support::fresh_schema("phx_lease").await else {
        return;
    };
    let pool = support::migrated_pool(&url).await;
    let short = std::time::Duration::from_millis(600);
    assert!(take_lease(&pool, "tick", 1, short).await.unwrap());
    assert!(
        !take_lease(&pool, "tick", 2, short).await.unwrap(),
        "held by 1"
    );
    // Another lease is another name.
    assert!(take_lease(&pool, "snapshot", 2, short).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        take_lease(&pool, "tick", 1, short).await.unwrap(),
        "renewed"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        !take_lease(&pool, "tick", 2, short).await.unwrap(),
        "the renewal still runs"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        take_lease(&pool, "tick", 2, short).await.unwrap(),
        "lapsed: 2 takes it over"
    );
    assert!(!take_lease(&pool, "tick", 1, short).await.unwrap());
    release_lease(&pool, "tick", 2).await.unwrap();
    assert!(
        take_lease(&pool, "tick", 1, short).await.unwrap(),
        "given up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_speaks_tls() {
    let Some(url) = support::fresh_schema("phx_rediss").await else {
        return;
    };
    let pool = support::migrated_pool(&url).await;
    let redis = support::redis_url();
    // The machine's Redis speaks no TLS: a rediss:// URL to it is refused by the handshake (with TLS
    // built in; without, the URL itself would be refused).
    let tls = redis.replacen("redis://", "rediss://", 1);
    let e = phoenix_store::redis_shared::RedisShared::connect(&tls, pool)
        .await
        .err()
        .expect("no TLS on the other end, no connection");
    assert!(
        !e.contains("not a valid Redis URL") && !e.contains("not enabled"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_went_back_in_time_refuses_signatures_for_the_replay_window() {
    use phoenix_store::redis_shared::RedisShared;
    let Some(url) = support::fresh_schema("phx_timetravel").await else {
        return;
    };
    let pool = support::migrated_pool(&url).await;
    let redis_url = support::redis_url();
    let a = std::sync::Arc::new(
        RedisShared::connect(&redis_url, pool.clone())
            .await
            .unwrap(),
    );
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    // Many at once (their increments come back in any order): none is taken for a rewind.
    let at_once: Vec<_> = (0..200)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.use_signature_once(rand_digest(), expires).await })
        })
        .collect();
    for used in at_once {
        assert!(
            used.await.unwrap().unwrap(),
            "a fresh signature is accepted"
        );
    }
    let used = [7u8; 32];
    assert!(a.use_signature_once(used, expires).await.unwrap());
    assert!(
        !a.use_signature_once(used, expires).await.unwrap(),
        "a replay"
    );
    // Redis comes back from an older dump: the counter is behind, the signature's key is gone.
    let cluster: String =
        sqlx::query_scalar("SELECT value FROM phoenix_cluster WHERE key = 'cluster_id'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::pipe()
        .cmd("SET")
        .arg(format!("phoenix:{cluster}:counter"))
        .arg(2)
        .cmd("DEL")
        .arg(format!("phoenix:{cluster}:sig:{}", hex::encode(used)))
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let replayed = a.use_signature_once(used, expires).await;
    assert!(
        matches!(replayed, Err(phoenix_store::StoreError::Unavailable(_))),
        "the replay is refused: {replayed:?}"
    );
    // So is any signed request on any node, for the replay window.
    let b = RedisShared::connect(&redis_url, pool.clone())
        .await
        .unwrap();
    assert!(b.use_signature_once(rand_digest(), expires).await.is_err());
    assert!(a.use_signature_once(rand_digest(), expires).await.is_err());
}

fn rand_digest() -> [u8; 32] {
    phoenix_store::seal::random_bytes::<32>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_id_expires_by_the_logs_time_alike_on_every_node() {
    let Some(url) = support::fresh_schema("phx_expiry").await else {
        return;
    };
    // A horizon of 15 s (no slack), so the test can outwait it (and have its steps before it ends).
    let short = || EmbeddedOptions {
        dedupe_horizon: jiff::SignedDuration::from_secs(15),
        dedupe_slack: jiff::SignedDuration::ZERO,
        dedupe_hot_keys: 50,
        ..EmbeddedOptions::default()
    };
    let (a, b) = (
        node_with(&url, short()).await,
        node_with(&url, short()).await,
    );
    let t = TenantId::parse("expiry").unwrap();
    a.store
        .create_tenant(t.clone(), "Expiry".into(), "s".into())
        .await
        .unwrap();
    conformance::points_board(a.store.as_ref(), &t).await;
    let send = |n: &Node, id: &str| {
        let store = n.store.clone();
        let id = id.to_owned();
        async move {
            let statuses = store
                .ingest("expiry", vec![conformance::event(&id, "p1", 1.0)])
                .await
                .unwrap();
            statuses[0]
        }
    };
    assert_eq!(send(&a, "e1").await, IngestStatus::Accepted);
    let accepted = tokio::time::Instant::now();
    assert_eq!(send(&b, "e1").await, IngestStatus::Duplicate);
    // A keeps the id in a piece, and a node started from A's snapshot gets it (with its time) from
    // there; B keeps it hot.
    // (Due once the oldest hot key is an eighth of the horizon old.)
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    a.store.freeze_dedupe().await.unwrap();
    assert!(a.store.stats().dedupe_pieces >= 1);
    let other = b.store.clone();
    let filler = tokio::spawn(async move {
        // Enough records that the snapshot is due.
        for i in 0..3 {
            other
                .ingest(
                    "expiry",
                    vec![conformance::event(&format!("f{i}"), "p2", 1.0)],
                )
                .await
                .unwrap();
        }
    });
    filler.await.unwrap();
    a.store.barrier().await.unwrap();
    assert!(
        a.store
            .checkpoint_cluster(1, std::time::Duration::ZERO)
            .await
            .unwrap()
    );
    let c = node_with(&url, short()).await;
    assert_eq!(send(&c, "e1").await, IngestStatus::Duplicate);
    // Past the horizon (by the log's time), the id is new again: on whichever node, and every node
    // counts it.
    assert!(accepted.elapsed() < std::time::Duration::from_secs(14));
    tokio::time::sleep_until(accepted + std::time::Duration::from_millis(16_500)).await;
    for n in [&a, &b, &c] {
        n.store.maintain().await.ok();
    }
    assert_eq!(send(&c, "e1").await, IngestStatus::Accepted);
    assert_eq!(send(&a, "e1").await, IngestStatus::Duplicate);
    assert_eq!(send(&b, "e1").await, IngestStatus::Duplicate);
    for n in [&a, &b, &c] {
        n.store.barrier().await.unwrap();
        let page = n
            .store
            .standings("expiry", "points", None, PageStart::Rank(1), 10)
            .await
            .unwrap()
            .unwrap();
        let p1 = page.entries.iter().find(|e| e.user_id == "p1").unwrap();
        assert_eq!(
            p1.score, 2.0,
            "counted twice, once per acceptance, on every node"
        );
    }
    // A node whose horizon differs from the cluster's would decide otherwise: it does not start.
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("node");
    let refused = tokio::task::spawn_blocking(move || {
        EmbeddedStore::open_cluster(
            &dir,
            key(),
            EmbeddedOptions::default(),
            PgLogOptions {
                url,
                connections: 2,
            },
        )
        .map(|_| ())
    })
    .await
    .unwrap()
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("PHOENIX_DEDUPE_HORIZON is 168h on this node but 15s in the cluster"),
        "{refused}"
    );
}

/// Runs `program` with `args` in `dir`; false when it is not installed.
fn run_in(dir: &std::path::Path, program: &str, args: &[&str]) -> bool {
    match std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(status) => {
            assert!(status.success(), "{program} {args:?} failed");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("{program}: {e}"),
    }
}

/// A `redis-server` of the test's own, killed when dropped.
struct TlsRedis(std::process::Child);

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_behind_a_private_ca_is_trusted_with_its_ca_file_and_not_without() {
    let Some(url) = support::fresh_schema("phx_redis_ca").await else {
        return;
    };
    let pool = support::migrated_pool(&url).await;
    // A CA of the test's own, and a certificate it signed for 127.0.0.1, made by openssl.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ca.cnf"),
        "[req]\ndistinguished_name=dn\nx509_extensions=ca\nprompt=no\n[dn]\nCN=Phoenix test CA\n\
         [ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let made = run_in(
        dir.path(),
        "openssl",
        &[
            &["req", "-x509", "-config", "ca.cnf", "-days", "1"][..],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    if !made {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl is required under CI=true"
        );
        eprintln!("SKIPPED: no openssl");
        return;
    }
    run_in(
        dir.path(),
        "openssl",
        &[
            &["req", "-subj", "/CN=127.0.0.1"][..],
            &ec[..],
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    run_in(
        dir.path(),
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let spawned = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--tls-port",
            &port,
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.pem",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let _redis = match spawned {
        Ok(child) => TlsRedis(child),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is required under CI=true: {e}"
            );
            eprintln!("SKIPPED: no redis-server ({e})");
            return;
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the TLS Redis did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let tls = format!("rediss://127.0.0.1:{port}");
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let shared =
        phoenix_store::redis_shared::RedisShared::connect_tls(&tls, Some(ca), pool.clone())
            .await
            .expect("trusted with the CA file");
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5);
    let digest = rand_digest();
    assert!(shared.use_signature_once(digest, expires).await.unwrap());
    assert!(!shared.use_signature_once(digest, expires).await.unwrap());
    // Without it, the bundled public roots do not know the CA: no connection.
    let refused = phoenix_store::redis_shared::RedisShared::connect(&tls, pool)
        .await
        .err()
        .expect("an unknown CA is refused");
    assert!(refused.starts_with("Redis"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_node_leaves_the_node_registry_at_once() {
    let Some(url) = support::fresh_schema("phx_leave").await else {
        return;
    };
    let (a, b) = (node(&url).await, node(&url).await);
    let pool = a.store.cluster_pool().unwrap();
    let nodes = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM phoenix_nodes")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(nodes().await, 2, "each node reports where it is");
    b.store.leave_cluster().await;
    assert_eq!(
        nodes().await,
        1,
        "the closing node's rows are not kept for it"
    );
    // Its clock loop (still running until the store is dropped) does not put it back.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(nodes().await, 1);
}
