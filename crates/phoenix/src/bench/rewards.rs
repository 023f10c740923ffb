//! `phoenix bench rewards`: the rewards ledger under load, in this process (the real embedded store,
//! and the real HTTP server in front of it for the player's routes). It measures what issue "Rewards
//! and coupons" asks for: settling a window of --players ranked players with a three-tier rule (goal:
//! every grant durable in under 2 s), a window that makes --players × --rewards grants (1M by default)
//! and how long events written meanwhile wait, `GET /v1/rewards` with --windows such windows (10M grants)
//! in the tenant, and coupon redemptions per second.

use super::client::{SplitMix64, rss_kib, seed, tenant_jwt};
use super::report::latency_line;
use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use jiff::{SignedDuration, Timestamp};
use phoenix_core::event::{Event, EventRules};
use phoenix_core::ids::{LeaderboardId, TenantId};
use phoenix_store::embedded::{Clock, EmbeddedOptions};
use phoenix_store::model::{LeaderboardStatus, NewLeaderboard};
use phoenix_store::rewards::{Activity, NewCampaign, NewRewardRule, SettleOutcome};
use phoenix_store::{EmbeddedStore, MasterKey, Store};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
#[command(next_help_heading = "Rewards bench options")]
pub struct RewardsArgs {
    /// Ranked players in each window.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub players: u32,
    /// Rewards each player of a large window gets (its grants: --players × --rewards).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rewards: u32,
    /// Large windows settled: the tenant ends with --windows × --players × --rewards grants.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub windows: u32,
    /// `GET /v1/rewards` requests per kind.
    #[arg(long, default_value_t = 2_000)]
    pub reads: u32,
    /// Coupon redemptions (each by a different player).
    #[arg(long, default_value_t = 20_000)]
    pub redemptions: u32,
    /// Concurrent HTTP clients for reads and redemptions.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Data dir (default: a fresh temp dir, removed after).
    #[arg(long)]
    pub bench_dir: Option<PathBuf>,
}

pub(super) const TENANT: &str = "rb";
pub(super) const SECRET: &str = "rewards-bench-tenant-secret-0123456789";

pub(super) fn rss_mib() -> f64 {
    rss_kib(std::process::id()).map_or(0.0, |k| k as f64 / 1024.0)
}

pub(super) fn dir_mib(path: &std::path::Path) -> f64 {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ledger.db"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum::<u64>() as f64
        / (1024.0 * 1024.0)
}

/// A custom board scoring events of `event_type`, open around `at`, with room for `size` ranks.
pub(super) async fn board(
    store: &EmbeddedStore,
    id: &str,
    event_type: &str,
    at: Timestamp,
    size: u32,
) -> anyhow::Result<()> {
    let config = phoenix_core::config::LeaderboardConfig::from_json(&json!({
        "timeframe": {"type": "custom",
                      "starts_at": (at - SignedDuration::from_hours(1)).to_string(),
                      "ends_at": (at + SignedDuration::from_hours(1)).to_string()},
        "scoring": {"rules": [{"event_type": event_type, "points_expression": "attrs.score"}]},
        "ranking": {"size": size}
    }))
    .map_err(|e| anyhow::anyhow!("board {id}: {e}"))?;
    store
        .create_leaderboard(NewLeaderboard {
            leaderboard_id: LeaderboardId::parse(id)?,
            tenant_id: TenantId::parse(TENANT)?,
            name: id.into(),
            description: None,
            status: LeaderboardStatus::Active,
            config: config.to_json(),
        })
        .await?;
    Ok(())
}

/// One event per player `p0..`, all distinct scores, in batches of 1000.
pub(super) async fn score_players(
    store: &EmbeddedStore,
    event_type: &str,
    players: u32,
    at: Timestamp,
) -> anyhow::Result<()> {
    let rules = EventRules {
        now: at,
        dedupe_horizon: SignedDuration::from_hours(7 * 24),
    };
    for start in (0..players).step_by(1000) {
        let events = (start..(start + 1000).min(players))
            .map(|p| {
                Event::from_json(
                    &json!({"event_id": format!("{event_type}-{p}"), "type": event_type,
                            "actor": {"user_id": format!("p{p}")}, "occurred_at": at.to_string(),
                            "attrs": {"score": players - p}}),
                    rules,
                )
                .map_err(|e| anyhow::anyhow!("a bench event is invalid: {e}"))
            })
            .collect::<anyhow::Result<Vec<Event>>>()?;
        store.ingest(TENANT, events).await?;
    }
    Ok(())
}

/// An inactive rule (settled only by hand here, so the timing is the bench's).
pub(super) async fn rule(
    store: &EmbeddedStore,
    id: &str,
    board: &str,
    tiers: Value,
) -> anyhow::Result<()> {
    store
        .create_reward_rule(NewRewardRule {
            tenant_id: TENANT.into(),
            rule_id: id.into(),
            leaderboard_id: board.into(),
            name: id.into(),
            status: Activity::Inactive,
            min_participants: 0,
            settle_delay_seconds: 0,
            tiers,
        })
        .await?;
    Ok(())
}

pub(super) async fn settle(store: &EmbeddedStore, rule: &str) -> anyhow::Result<(Duration, u64)> {
    let began = Instant::now();
    match store.settle(TENANT, rule, "custom").await? {
        Some(SettleOutcome::Created(s)) => Ok((began.elapsed(), s.grants)),
        other => anyhow::bail!("settling {rule}: {other:?}"),
    }
}

pub async fn run(args: RewardsArgs) -> anyhow::Result<()> {
    let (dir, remove_after) = match &args.bench_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("phoenix-rewards-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let start = Timestamp::from_second(Timestamp::now().as_second())?;
    let clock = Clock::manual(start);
    let options = EmbeddedOptions {
        clock: clock.clone(),
        ..EmbeddedOptions::default()
    };
    let master = MasterKey::from_hex(&"7b".repeat(32)).context("master key")?;
    let store = {
        let (dir, master, options) = (dir.clone(), master.clone(), options.clone());
        tokio::task::spawn_blocking(move || EmbeddedStore::open_with(&dir, master, options))
            .await??
    };
    store.initialize().await?;
    let store = Arc::new(store);
    store
        .create_tenant(
            TenantId::parse(TENANT)?,
            "Rewards bench".into(),
            SECRET.into(),
        )
        .await?;
    println!(
        "bench rewards: {} players a window, {} rewards each in the large windows, {} large windows, data dir {}",
        args.players,
        args.rewards,
        args.windows,
        dir.display()
    );

    // 1. A three-tier rule over a window of --players ranked players.
    board(&store, "three-tier", "t", start, args.players).await?;
    let loading = Instant::now();
    score_players(&store, "t", args.players, start).await?;
    rule(
        &store,
        "three-tier",
        "three-tier",
        json!([
            {"rank_from": 1, "rank_to": 1, "rewards": [
                {"type": "currency", "currency": "gems", "amount": 5000},
                {"type": "badge", "badge": "champion"},
                {"type": "item", "item": "crown", "quantity": 1}]},
            {"rank_from": 2, "rank_to": 10, "rewards": [
                {"type": "currency", "currency": "gems", "amount": 1000},
                {"type": "item", "item": "chest_gold", "quantity": 1}]},
            {"top_percent": 10, "rewards": [{"type": "currency", "currency": "gems", "amount": 100}]}
        ]),
    )
    .await?;
    // 2. The large windows, each of its own board, all players in each.
    let big: Vec<Value> = (0..args.rewards)
        .map(|i| json!({"type": "currency", "currency": format!("coin{i}"), "amount": i + 1}))
        .collect();
    for w in 0..args.windows {
        let id = format!("large-{w}");
        board(&store, &id, &format!("m{w}"), start, args.players).await?;
        score_players(&store, &format!("m{w}"), args.players, start).await?;
        rule(
            &store,
            &id,
            &id,
            json!([{"top_percent": 100, "rewards": big.clone()}]),
        )
        .await?;
    }
    board(
        &store,
        "probe",
        "probe",
        start + SignedDuration::from_hours(2),
        10,
    )
    .await?;
    println!(
        "loaded {} events in {:.1} s; RSS {:.0} MiB",
        u64::from(args.players) * (1 + u64::from(args.windows)),
        loading.elapsed().as_secs_f64(),
        rss_mib()
    );
    // Every window ends.
    clock.set(start + SignedDuration::from_hours(1) + SignedDuration::from_secs(1));

    let (took, grants) = settle(&store, "three-tier").await?;
    println!(
        "three-tier rule over {} ranked players: {grants} grants durable in {:.3} s",
        args.players,
        took.as_secs_f64()
    );

    // The first large window, with events written meanwhile: how long they wait for their 202.
    let probe_store = store.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let probe_stop = stop.clone();
    let probing = tokio::spawn(async move {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        let mut n = 0u64;
        while !probe_stop.is_cancelled() {
            let at = probe_store.now();
            let event = Event::from_json(
                &json!({"event_id": format!("probe-{n}"), "type": "probe",
                        "actor": {"user_id": "prober"}, "occurred_at": at.to_string(),
                        "attrs": {"score": 1}}),
                EventRules {
                    now: at,
                    dedupe_horizon: SignedDuration::from_hours(24),
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let began = Instant::now();
            probe_store.ingest(TENANT, vec![event]).await?;
            latency.record(began.elapsed().as_micros() as u64)?;
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(latency)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut large = Vec::new();
    let (took, grants) = settle(&store, "large-0").await?;
    stop.cancel();
    let probe = probing.await??;
    large.push(took);
    println!(
        "one window of {} players × {} rewards: {grants} grants durable in {:.2} s ({:.0} grants/s); events written meanwhile waited {}",
        args.players,
        args.rewards,
        took.as_secs_f64(),
        grants as f64 / took.as_secs_f64(),
        latency_line(&probe, "no event")
    );
    for w in 1..args.windows {
        let (took, _) = settle(&store, &format!("large-{w}")).await?;
        large.push(took);
    }
    let total = store
        .list_grants(
            TENANT,
            phoenix_store::rewards::GrantQuery {
                limit: 1,
                ..Default::default()
            },
        )
        .await?
        .total;
    large.sort();
    println!(
        "{} large windows settled (median {:.2} s, slowest {:.2} s): {total} grants in the tenant; ledger.db {:.0} MiB ({:.0} B a grant); RSS {:.0} MiB",
        args.windows,
        large[large.len() / 2].as_secs_f64(),
        large.last().map_or(0.0, Duration::as_secs_f64),
        dir_mib(&dir),
        dir_mib(&dir) * 1024.0 * 1024.0 / total.max(1) as f64,
        rss_mib()
    );

    // 3. The player's routes over HTTP, with the real server in front of the same store.
    let mut config = phoenix_server::state::ServerConfig::new("127.0.0.1:0".parse()?);
    config.admin_secret = Some("rewards-bench-admin-secret".into());
    let app = phoenix_server::Application::build(config, store.clone()).await?;
    let base = format!("http://{}", app.addr());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone(), Duration::from_secs(5)));
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .build()?;
    let players = args.players;
    for (label, query, pages) in [
        ("first page (50 newest)", "", 1),
        ("pending only", "?status=pending", 1),
        ("second page (cursor)", "", 2),
    ] {
        let (client, base) = (client.clone(), base.clone());
        let read = move |i: u32| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let mut rng = SplitMix64(seed() ^ u64::from(i));
                let player = format!("p{}", rng.next() % u64::from(players));
                let token = tenant_jwt(TENANT, SECRET, &player)?;
                let mut url = format!("{base}/v1/rewards{query}");
                let mut took = Duration::ZERO;
                for _ in 0..pages {
                    let began = Instant::now();
                    let reply = client.get(&url).bearer_auth(&token).send().await?;
                    anyhow::ensure!(reply.status() == 200, "GET /v1/rewards: {}", reply.status());
                    let body: Value = reply.json().await?;
                    took = began.elapsed();
                    if let Some(c) = body["next_cursor"].as_str() {
                        url = format!("{base}/v1/rewards?cursor={c}");
                    }
                }
                Ok(took)
            }
        };
        // A warm-up (a quarter as many reads, not counted), then the measured run.
        concurrently(args.concurrency, args.reads / 4, read.clone()).await?;
        let (latency, per_second) = concurrently(args.concurrency, args.reads, read).await?;
        println!(
            "GET /v1/rewards, {label}, {total} grants in the tenant (~{} a player): {} ({per_second:.0} reads/s at {} clients)",
            total / u64::from(players).max(1),
            latency_line(&latency, "none"),
            args.concurrency
        );
    }

    // 4. Redemptions: a shared code, each redemption by a new player.
    store
        .create_campaign(NewCampaign {
            tenant_id: TENANT.into(),
            campaign_id: "bench".into(),
            name: "Bench".into(),
            rewards: json!([{"type": "currency", "currency": "gems", "amount": 10},
                            {"type": "badge", "badge": "bench"}]),
            code: Some("BENCH-CODE".into()),
            max_redemptions: None,
            per_player_limit: 1,
            starts_at: None,
            expires_at: None,
            status: Activity::Active,
        })
        .await?;
    let (latency, per_second) = concurrently(args.concurrency, args.redemptions, move |i| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let token = tenant_jwt(TENANT, SECRET, &format!("redeemer-{i}"))?;
            let began = Instant::now();
            let reply = client
                .post(format!("{base}/v1/coupons/bench-code/redeem"))
                .bearer_auth(&token)
                .send()
                .await?;
            anyhow::ensure!(reply.status() == 200, "redeem: {}", reply.status());
            Ok(began.elapsed())
        }
    })
    .await?;
    println!(
        "coupon redemptions (shared code, 2 rewards, a new player each): {per_second:.0}/s at {} clients, {}",
        args.concurrency,
        latency_line(&latency, "none")
    );
    println!(
        "RSS at the end {:.0} MiB; ledger.db {:.0} MiB",
        rss_mib(),
        dir_mib(&dir)
    );
    shutdown.cancel();
    let _ = server.await;
    drop(store);
    if remove_after {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Runs `count` calls of `one(i)` on `clients` concurrent workers; their latencies and calls a second.
async fn concurrently<F, Fut>(
    clients: u32,
    count: u32,
    one: F,
) -> anyhow::Result<(Histogram<u64>, f64)>
where
    F: Fn(u32) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Duration>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (next, one) = (next.clone(), one.clone());
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(latency);
                }
                let took = one(i).await?;
                latency.record(took.as_micros() as u64)?;
            }
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for w in workers {
        all.add(w.await??)?;
    }
    let seconds = began.elapsed().as_secs_f64();
    Ok((all, f64::from(count) / seconds))
}
