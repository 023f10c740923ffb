//! The PostgreSQL log against the real PostgreSQL this machine runs (`PHOENIX_TEST_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`). Each test works in a schema of its own. Under
//! `CI=true` a missing PostgreSQL fails the tests; elsewhere they say so and pass.

use phoenix_store::journal::{ApplyFn, Durable};
use phoenix_store::pglog::{Fence, FenceKind, PgLog, PgLogOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;
use support::fresh_schema;

type Seen = Arc<Mutex<Vec<(u64, i64, Vec<u8>)>>>;

fn collector() -> (Seen, ApplyFn) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let apply: ApplyFn = Box::new(move |group: &mut [Durable<'_>]| {
        let mut seen = sink.lock().unwrap();
        for r in group.iter() {
            assert_eq!(r.offset + 1, r.end);
            seen.push((r.end, r.at_us.unwrap(), r.payload.to_vec()));
        }
        Ok(())
    });
    (seen, apply)
}

fn open(url: &str, start: u64) -> (PgLog, Seen) {
    let (seen, apply) = collector();
    let replayed = seen.clone();
    let log = PgLog::open(
        &PgLogOptions {
            url: url.to_owned(),
            connections: 4,
        },
        start,
        |r: &mut Durable<'_>| {
            replayed
                .lock()
                .unwrap()
                .push((r.end, r.at_us.unwrap(), r.payload.to_vec()));
            Ok(())
        },
        apply,
    )
    .unwrap();
    (log, seen)
}

async fn open_async(url: &str, start: u64) -> (PgLog, Seen) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || open(&url, start))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_fold_one_order_without_holes_and_one_clock() {
    let Some(url) = fresh_schema("phx_order").await else {
        return;
    };
    let (a, seen_a) = open_async(&url, 0).await;
    let (b, seen_b) = open_async(&url, 0).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for (name, log, seen) in [
        ("a", a.clone(), seen_a.clone()),
        ("b", b.clone(), seen_b.clone()),
    ] {
        for t in 0..4 {
            let log = log.clone();
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..150 {
                    let payload = format!("{name}-{t}-{i}").into_bytes();
                    let pos = log.append_with(&payload, None, None).await.unwrap();
                    // Applied on this node before it is acknowledged.
                    assert!(
                        seen.lock()
                            .unwrap()
                            .iter()
                            .any(|(p, _, b)| *p == pos && *b == payload),
                        "own write visible at once"
                    );
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let head = a.head().await.unwrap().pos;
    assert_eq!(head, 1200);
    assert!(a.wait_applied(head, Duration::from_secs(10)).await);
    assert!(b.wait_applied(head, Duration::from_secs(10)).await);
    let (sa, sb) = (
        seen_a.lock().unwrap().clone(),
        seen_b.lock().unwrap().clone(),
    );
    assert_eq!(sa, sb, "both nodes fold the same records in the same order");
    let positions: Vec<u64> = sa.iter().map(|r| r.0).collect();
    assert_eq!(positions, (1..=1200).collect::<Vec<_>>(), "dense positions");
    assert!(
        sa.windows(2).all(|w| w[0].1 <= w[1].1),
        "the log's time never goes back"
    );
    let mut payloads: Vec<&Vec<u8>> = sa.iter().map(|r| &r.2).collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), 1200, "every append exactly once");
    let stats = a.stats();
    assert_eq!(stats.applied, 1200);
    assert!(stats.appends > 0);
    assert!(a.is_ready() && b.is_ready());

    // A node started later replays everything, or only what follows its snapshot's position.
    let (c, seen_c) = open_async(&url, 0).await;
    assert_eq!(*seen_c.lock().unwrap(), sa);
    assert!(c.is_ready());
    let (_d, seen_d) = open_async(&url, 1000).await;
    assert_eq!(seen_d.lock().unwrap().as_slice(), &sa[1000..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_refuses_a_decision_made_on_stale_state() {
    let Some(url) = fresh_schema("phx_fence").await else {
        return;
    };
    let (a, _) = open_async(&url, 0).await;
    let (b, _) = open_async(&url, 0).await;
    let head = a.head().await.unwrap();
    let seen = head.fence(FenceKind::Meta);
    let fence = Fence {
        kind: FenceKind::Meta,
        seen,
    };
    let first = a.append_with(b"create x", None, Some(fence)).await.unwrap();
    // Node b decided from the same state: refused, not appended.
    assert!(b.append_with(b"create x", None, Some(fence)).await.is_err());
    // Unfenced records and the other gate's records are not affected.
    b.append_with(b"event", None, None).await.unwrap();
    b.append_with(
        b"grant",
        None,
        Some(Fence {
            kind: FenceKind::Rewards,
            seen: 0,
        }),
    )
    .await
    .unwrap();
    let head = b.head().await.unwrap();
    assert_eq!(head.fence(FenceKind::Meta), first);
    assert_eq!(head.pos, 3);
    b.append_with(
        b"create y",
        None,
        Some(Fence {
            kind: FenceKind::Meta,
            seen: first,
        }),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_newer_than_the_node_stops_its_fold_and_it_says_so() {
    let Some(url) = fresh_schema("phx_version").await else {
        return;
    };
    let (a, seen) = open_async(&url, 0).await;
    a.append_with(b"one", None, None).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "WITH h AS (UPDATE phoenix_log_head SET pos = pos + 1 RETURNING pos, at_us) \
         INSERT INTO phoenix_log (pos, at_us, version, origin, origin_seq, payload) \
         SELECT pos, at_us, 99, 0, 0, '\\x00'::bytea FROM h",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('phoenix_log', '2')")
        .execute(&pool)
        .await
        .unwrap();
    for _ in 0..100 {
        if !a.is_healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !a.is_healthy(),
        "a node that cannot fold the log is not ready"
    );
    assert!(a.stop_reason().unwrap().contains("version 99"));
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the newer record was not folded"
    );
    assert!(a.append_with(b"two", None, None).await.is_err());
    // A node started now refuses to start rather than fold it.
    let url2 = url.clone();
    let opened = tokio::task::spawn_blocking(move || {
        PgLog::open(
            &PgLogOptions {
                url: url2,
                connections: 2,
            },
            0,
            |_| Ok(()),
            Box::new(|_| Ok(())),
        )
        .map(|_| ())
    })
    .await
    .unwrap();
    assert!(opened.unwrap_err().to_string().contains("version 99"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_connections_die_answers_errors_then_recovers_by_itself() {
    let Some(url) = fresh_schema("phx_recover").await else {
        return;
    };
    let (a, seen) = open_async(&url, 0).await;
    a.append_with(b"before", None, None).await.unwrap();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let kill = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                WHERE application_name = 'phx_recover' AND pid <> pg_backend_pid()";
    let killed: i64 = sqlx::query_scalar(kill).fetch_one(&admin).await.unwrap();
    assert!(killed > 0);
    // The pool reconnects: appends work again without a restart.
    let mut ok = false;
    for _ in 0..50 {
        if a.append_with(b"after", None, None).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "appends recover");
    assert!(a.is_healthy());
    let payloads: Vec<Vec<u8>> = seen.lock().unwrap().iter().map(|r| r.2.clone()).collect();
    assert_eq!(payloads.first().unwrap(), b"before");
    assert!(payloads.iter().any(|p| p == b"after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_fold_cannot_apply_stops_the_node_instead_of_skipping_it() {
    let Some(url) = fresh_schema("phx_failstop").await else {
        return;
    };
    let url2 = url.clone();
    let a = tokio::task::spawn_blocking(move || {
        PgLog::open(
            &PgLogOptions {
                url: url2,
                connections: 2,
            },
            0,
            |_| Ok(()),
            Box::new(|group: &mut [Durable<'_>]| {
                if group.iter().any(|r| r.payload == b"unreadable here") {
                    return Err("this node cannot apply it".into());
                }
                Ok(())
            }),
        )
        .unwrap()
    })
    .await
    .unwrap();
    a.append_with(b"fine", None, None).await.unwrap();
    assert!(a.is_healthy());
    let refused = a.append_with(b"unreadable here", None, None).await;
    assert!(refused.is_err(), "not acknowledged as applied: {refused:?}");
    assert!(!a.is_healthy(), "the node says it is not ready");
    assert!(a.stop_reason().unwrap().contains("cannot apply it"));
    assert!(a.append_with(b"after", None, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_asking_for_tls_gets_an_encrypted_connection_or_a_clear_refusal() {
    let Some(url) = fresh_schema("phx_tls").await else {
        return;
    };
    let plain = sqlx::PgPool::connect(&url).await.unwrap();
    let server_has_tls: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&plain)
        .await
        .unwrap();
    let with = |mode: &str| format!("{url}&sslmode={mode}");
    let open = |url: String| {
        tokio::task::spawn_blocking(move || {
            PgLog::open(
                &PgLogOptions {
                    url,
                    connections: 2,
                },
                0,
                |_| Ok(()),
                Box::new(|_| Ok(())),
            )
        })
    };
    let required = open(with("require")).await.unwrap();
    if server_has_tls == "on" {
        // The log's own connections are encrypted.
        let log = required.unwrap();
        let encrypted: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(log.pool())
                .await
                .unwrap();
        assert!(encrypted);
        // And a certificate no root vouches for is refused when asked to verify it.
        let verified = open(with("verify-full")).await.unwrap();
        let e = verified
            .err()
            .expect("an unverifiable certificate is refused")
            .to_string();
        assert!(!e.contains("without TLS"), "{e}");
    } else {
        let e = required.err().expect("no TLS, no connection").to_string();
        assert!(!e.contains("without TLS"), "TLS is built in: {e}");
    }
}
