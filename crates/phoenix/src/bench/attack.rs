//! `phoenix bench attack`: an unauthenticated client doing its worst to a running server, while a probe
//! checks that `/livez` keeps answering within a second (SPEC §8, issue: "no client can take Phoenix
//! down"). Stalled sockets of three kinds (silent, half-sent headers trickled a byte at a time, bodies
//! declared at 1 MiB and trickled), requests with made-up methods, and oversized bodies, all at once
//! for --duration seconds. Reports the probe's latency, the server's memory (with --server-pid) and
//! the size of its `/metrics`; exits non-zero if a probe failed or took a second or more.
//!
//! Only for servers on this machine: every socket goes to --url, which must be a loopback address.

use super::client::rss_kib;
use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Args)]
pub struct AttackArgs {
    /// Base URL of the running server (http, loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Stalled sockets held at once (raise `ulimit -n` above this).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sockets: u32,
    /// How long the attack lasts, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Requests with made-up methods per second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub methods_per_second: u32,
    /// Oversized-body requests per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub oversized_per_second: u32,
    /// The server's process id, to report its memory (RSS) before, at peak and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

fn loopback(url: &str) -> anyhow::Result<SocketAddr> {
    let host = url
        .strip_prefix("http://")
        .context("--url must start with http://")?
        .trim_end_matches('/');
    let host = match host.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => host.to_owned(),
    };
    let addr: SocketAddr = host
        .parse()
        .context("--url must be http://<ip>:<port> or http://localhost:<port>")?;
    if !addr.ip().is_loopback() {
        bail!("--url must be a loopback address: this tool only attacks servers on this machine");
    }
    Ok(addr)
}

/// Counters shared by the attackers.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    closed_by_server: AtomicU64,
    refused: AtomicU64,
    methods: AtomicU64,
    oversized: AtomicU64,
}

/// One stalled socket, reopened whenever the server closes it, until `until`.
async fn stall(addr: SocketAddr, kind: u32, until: Instant, tally: Arc<Tally>) {
    while Instant::now() < until {
        let Ok(mut socket) = TcpStream::connect(addr).await else {
            tally.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tally.opened.fetch_add(1, Ordering::Relaxed);
        let opening: &[u8] = match kind {
            0 => b"",
            1 => b"GET /livez HTTP/1.1\r\nHost: attack\r\nX-Slow: ",
            _ => b"POST /tenants HTTP/1.1\r\nHost: attack\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n",
        };
        if socket.write_all(opening).await.is_err() {
            continue;
        }
        if kind == 2 {
            // Most of a megabyte at once, then a byte now and then.
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..15 {
                if socket.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        }
        let (mut reader, mut writer) = socket.into_split();
        let mut buf = [0u8; 512];
        let mut next_byte = tokio::time::interval(Duration::from_secs(1));
        next_byte.tick().await;
        loop {
            if Instant::now() >= until {
                return;
            }
            // A byte a second; whatever the server says is read and dropped.
            tokio::select! {
                _ = next_byte.tick() => {
                    if kind != 0 && writer.write_all(b"x").await.is_err() {
                        break;
                    }
                }
                read = reader.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
            }
        }
        tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }
}

/// `per_second` one-shot requests, the `n`th made by `request(n)`, until `until`.
async fn every(
    addr: SocketAddr,
    per_second: u32,
    until: Instant,
    tally: Arc<Tally>,
    oversized: bool,
    request: impl Fn(u64) -> Vec<u8>,
) {
    if per_second == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_second)));
    let mut n: u64 = 0;
    while Instant::now() < until {
        tick.tick().await;
        n += 1;
        tokio::spawn(one_shot(addr, request(n), Arc::clone(&tally), oversized));
    }
}

/// A request with a fresh made-up method.
fn made_up_method(n: u64) -> Vec<u8> {
    format!("M{n:08X}X /livez HTTP/1.1\r\nHost: attack\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A body over the limit: a declared 2 MiB, or (every other one) a chunked body that keeps going.
fn oversized_body(n: u64) -> Vec<u8> {
    if n.is_multiple_of(2) {
        return b"POST /v1/events HTTP/1.1\r\nHost: attack\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n".to_vec();
    }
    let mut request = b"POST /tenants HTTP/1.1\r\nHost: attack\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        request.extend_from_slice(b"8000\r\n");
        request.extend_from_slice(&[b' '; 0x8000]);
        request.extend_from_slice(b"\r\n");
    }
    request
}

async fn one_shot(addr: SocketAddr, request: Vec<u8>, tally: Arc<Tally>, oversized: bool) {
    let Ok(mut socket) = TcpStream::connect(addr).await else {
        tally.refused.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = socket.write_all(&request).await;
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await;
    let counter = if oversized {
        &tally.oversized
    } else {
        &tally.methods
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// `GET /livez` on a fresh connection every 100 ms; the time to the whole answer, or `None`.
async fn probe_once(addr: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let attempt = async {
        let mut socket = TcpStream::connect(addr).await.ok()?;
        socket
            .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.ok()?;
        answer.starts_with(b"HTTP/1.1 200").then_some(())
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Some(())) => Some(started.elapsed()),
        _ => None,
    }
}

async fn metrics_bytes(addr: SocketAddr) -> Option<usize> {
    let mut socket = TcpStream::connect(addr).await.ok()?;
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some(answer.len())
}

pub async fn run(args: AttackArgs) -> anyhow::Result<()> {
    let addr = loopback(&args.url)?;
    let rss_before = args.server_pid.and_then(rss_kib);
    let metrics_before = metrics_bytes(addr).await;
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let tally = Arc::new(Tally::default());
    let mut attackers = Vec::new();
    for i in 0..args.sockets {
        attackers.push(tokio::spawn(stall(addr, i % 3, until, Arc::clone(&tally))));
    }
    attackers.push(tokio::spawn(every(
        addr,
        args.methods_per_second,
        until,
        Arc::clone(&tally),
        false,
        made_up_method,
    )));
    attackers.push(tokio::spawn(every(
        addr,
        args.oversized_per_second,
        until,
        Arc::clone(&tally),
        true,
        oversized_body,
    )));

    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("a latency histogram")?;
    let mut failed = 0u64;
    let mut peak_rss = rss_before.unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < until {
        tick.tick().await;
        match probe_once(addr).await {
            Some(took) => {
                let _ = latency.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            None => failed += 1,
        }
        if let Some(rss) = args.server_pid.and_then(rss_kib) {
            peak_rss = peak_rss.max(rss);
        }
    }
    for attacker in attackers {
        attacker.abort();
    }
    // Let the server notice the attackers are gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = args.server_pid.and_then(rss_kib);
    let metrics_after = metrics_bytes(addr).await;

    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "attack        {} stalled sockets (silent, trickled headers, trickled 1 MiB bodies), {}/s made-up methods, {}/s oversized bodies, {} s",
        args.sockets, args.methods_per_second, args.oversized_per_second, args.duration
    );
    println!(
        "sockets       {} opened, {} closed by the server, {} connects refused",
        tally.opened.load(Ordering::Relaxed),
        tally.closed_by_server.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed)
    );
    println!(
        "requests      {} made-up methods, {} oversized bodies answered or closed",
        tally.methods.load(Ordering::Relaxed),
        tally.oversized.load(Ordering::Relaxed)
    );
    println!(
        "livez         {} probes, {} failed; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latency.len() + failed,
        failed,
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "memory        RSS {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after",
            before as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            after as f64 / 1024.0
        );
    }
    if let (Some(before), Some(after)) = (metrics_before, metrics_after) {
        println!("metrics       /metrics {before} bytes before, {after} bytes after");
    }
    if failed > 0 || latency.max() >= 1_000_000 {
        bail!("/livez did not always answer within 1 s");
    }
    Ok(())
}
