//! `phoenix bench webhooks`: the outbox and the delivery task, in this process (the real embedded
//! store, the real server with its delivery task, and a receiver on loopback). A settlement makes
//! --messages `reward.granted` messages (the default, 360 000, is an hour of a busy game's grants at
//! 100 a second) while the receiver is down: the messages wait on disk, attempts fail and are
//! rescheduled, and the process's memory is reported. Then the receiver comes up and the bench times
//! how long it takes to deliver every message (deliveries per second), sampling memory meanwhile.

use super::rewards::{SECRET, TENANT, board, dir_mib, rss_mib, rule, score_players, settle};
use anyhow::Context;
use clap::Args;
use jiff::{SignedDuration, Timestamp};
use phoenix_core::ids::TenantId;
use phoenix_store::achievements::{NewWebhook, WebhookStatus};
use phoenix_store::embedded::{Clock, EmbeddedOptions};
use phoenix_store::{EmbeddedStore, MasterKey, Store};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Args)]
#[command(next_help_heading = "Webhooks bench options")]
pub struct WebhooksArgs {
    /// Messages made while the receiver is down (one `reward.granted` per grant of a settlement: four
    /// rewards for each of a quarter as many players; rounded up to a multiple of 4).
    #[arg(long, default_value_t = 360_000, value_parser = clap::value_parser!(u32).range(40..=400_000))]
    pub messages: u32,
    /// Seconds the receiver stays down after the messages are made (attempts fail meanwhile).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub down_seconds: u64,
    /// Data dir (default: a fresh temp dir, removed after).
    #[arg(long)]
    pub bench_dir: Option<PathBuf>,
}

/// A minimal HTTP/1.1 receiver (keep-alive): answers 204 to every request and counts them.
async fn receive(listener: tokio::net::TcpListener, count: Arc<AtomicU64>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let count = count.clone();
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(8192);
            let mut chunk = [0u8; 8192];
            loop {
                // One request: headers, then the body by its Content-Length.
                let (head_end, length) = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                while buf.len() < head_end + length {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..head_end + length);
                count.fetch_add(1, Ordering::Relaxed);
                if socket
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

pub async fn run(args: WebhooksArgs) -> anyhow::Result<()> {
    let (dir, remove_after) = match &args.bench_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("phoenix-webhooks-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    // The window ran from three hours ago to an hour ago; the clock is moved to now before settling,
    // so the messages are due at once by the delivery task's (system) clock.
    let now = Timestamp::from_second(Timestamp::now().as_second())?;
    let at = now - SignedDuration::from_hours(2);
    let clock = Clock::manual(at);
    let options = EmbeddedOptions {
        clock: clock.clone(),
        ..EmbeddedOptions::default()
    };
    let master = MasterKey::from_hex(&"7c".repeat(32)).context("master key")?;
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
            "Webhooks bench".into(),
            SECRET.into(),
        )
        .await?;
    // Four rewards for each of a quarter as many players (a board ranks at most 100 000).
    let players = args.messages.div_ceil(4);
    board(&store, "hour", "t", at, players).await?;
    score_players(&store, "t", players, at).await?;
    let rewards: Vec<serde_json::Value> = (0..4)
        .map(|i| json!({"type": "currency", "currency": format!("c{i}"), "amount": i + 1}))
        .collect();
    rule(
        &store,
        "every-player",
        "hour",
        json!([{"top_percent": 100, "rewards": rewards}]),
    )
    .await?;
    clock.set(Timestamp::now());

    // The receiver's address, not listening yet: attempts are refused until it is.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    store
        .create_webhook(NewWebhook {
            tenant_id: TENANT.into(),
            url: format!("http://127.0.0.1:{port}/hook"),
            events: vec!["reward.granted".into()],
            status: WebhookStatus::Active,
            description: "bench".into(),
        })
        .await?;
    let mut config = phoenix_server::state::ServerConfig::new("127.0.0.1:0".parse()?);
    config.admin_secret = Some("webhooks-bench-admin-secret".into());
    config.webhook_allow_private = true;
    config.webhook_retry_schedule = vec![Duration::from_secs(1); 20];
    let app = phoenix_server::Application::build(config, store.clone()).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone(), Duration::from_secs(5)));
    println!(
        "bench webhooks: {} messages, receiver down for {} s, data dir {}",
        args.messages,
        args.down_seconds,
        dir.display()
    );
    let rss_before = rss_mib();
    let (took, grants) = settle(&store, "every-player").await?;
    println!(
        "settled: {grants} grants and as many messages in {:.2} s; RSS {rss_before:.0} → {:.0} MiB",
        took.as_secs_f64(),
        rss_mib()
    );
    let down = Instant::now();
    let mut peak_down = 0f64;
    while down.elapsed() < Duration::from_secs(args.down_seconds) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak_down = peak_down.max(rss_mib());
    }
    let stats = store.stats().rewards;
    println!(
        "receiver down {} s: {} messages pending, {} attempts failed and rescheduled; RSS {:.0} MiB (peak {:.0}); ledger.db {:.0} MiB",
        args.down_seconds,
        stats.outbox_depth,
        stats.deliveries_retried,
        rss_mib(),
        peak_down,
        dir_mib(&dir)
    );

    // The receiver comes up: every message is delivered.
    let count = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(receive(listener, count.clone()));
    let up = Instant::now();
    let mut peak_up = 0f64;
    let target = u64::from(players) * 4;
    let mut last_report = Instant::now();
    while store.stats().rewards.deliveries_delivered < target {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak_up = peak_up.max(rss_mib());
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "  {} delivered after {:.0} s",
                store.stats().rewards.deliveries_delivered,
                up.elapsed().as_secs_f64()
            );
        }
        if up.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("not every message was delivered within an hour");
        }
    }
    let secs = up.elapsed().as_secs_f64();
    let r = store.stats().rewards;
    println!(
        "delivered {} messages in {secs:.1} s: {:.0} deliveries/s (the receiver counted {} requests); mean lag from making to delivery {:.0} s; RSS peak {peak_up:.0} MiB, now {:.0} MiB",
        r.deliveries_delivered,
        r.deliveries_delivered as f64 / secs,
        count.load(Ordering::Relaxed),
        r.delivery_lag_ms_sum as f64 / 1000.0 / r.deliveries_delivered.max(1) as f64,
        rss_mib()
    );
    shutdown.cancel();
    let _ = server.await;
    drop(store);
    if remove_after {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
