//! `phoenix bench ws`: live latency from an event's 202 to the WebSocket frame that shows it, with many
//! subscribers on one leaderboard while events are ingested at a fixed rate; and the server's memory
//! per idle subscriber.
//!
//! Event `i` gives the new player `u<i>` the score `i + 1`, so every event makes a new #1 and the frame
//! showing it carries a score of at least `i + 1` (the top entry). A sampled subscriber records, for
//! every event, the arrival of the first frame whose best score is `i + 1` or more: from then on its copy
//! of the top N includes event `i` (or already shows it pushed out by later ones).

use super::client::{
    LATENCY_MAX_MICROS, REQUEST_TIMEOUT, base_urls, create_bench_tenant, error_chain, one_line,
    push_event_for, run_id, tenant_jwt,
};
use super::report::latency_line;
use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Debug, Args)]
#[command(next_help_heading = "Load options")]
pub struct WsArgs {
    /// Base URL of the running server (http only; the sockets use ws:// on the same address). Two
    /// URLs separated by a comma (a cluster's nodes): events go to the first, sockets watch on the
    /// second, and the delay measured is the cross-node one.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Sockets kept open on the leaderboard.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subscribers: u32,
    /// Subscribers that time every frame (the others read and discard).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sample: u32,
    /// Events posted per second, one per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Seconds of ingestion.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// The server's process id, to report its resident memory per idle subscriber.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connect_concurrency: u32,
}

/// No frame showing an event this long after the last post means it was never shown.
const DRAIN: Duration = Duration::from_secs(3);
/// Time for the server to settle after the last socket opened, before memory is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for all sockets to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
const UNSET: u64 = u64::MAX;
/// Each subscriber's read buffer (frames are a few KiB at most).
const READ_BUFFER: usize = 8 * 1024;

pub async fn run(args: WsArgs, admin_secret: Option<String>) -> anyhow::Result<()> {
    // With two URLs (a cluster's nodes), events go to the first and the sockets watch on the last:
    // the delay measured is then a cross-node one.
    let bases = base_urls(&args.url)?;
    let base = bases[0].clone();
    let watch_base = bases[bases.len() - 1].clone();
    let Some(admin) = admin_secret.filter(|s| !s.trim().is_empty()) else {
        bail!("bench ws: give --admin-secret (or PHOENIX_ADMIN_SECRET) to create a bench tenant");
    };
    let run_id = run_id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;
    let target = create_bench_tenant(&client, &base, &admin, &run_id, None).await?;
    let total_events = u64::from(args.rate) * args.duration;
    let subscribers = args.subscribers as usize;
    let sample = (args.sample as usize).min(subscribers);
    println!(
        "phoenix bench ws: {subscribers} subscribers ({sample} timed), {} events/s for {} s, tenant {} at {base}",
        args.rate, args.duration, target.tenant
    );

    let ws_url = format!(
        "ws{}/v1/leaderboards/bench/ws",
        watch_base.strip_prefix("http").unwrap_or(&watch_base)
    );
    if watch_base != base {
        println!("events posted to {base}, sockets on {watch_base}");
    }
    // One player per subscriber, as in a game: the server caps sockets per player.
    let request_for = |index: usize| -> anyhow::Result<_> {
        let jwt = tenant_jwt(
            &target.tenant,
            &target.secret,
            &format!("ws-watcher-{index}"),
        )?;
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .with_context(|| format!("bench ws: '{ws_url}' is not a WebSocket URL"))?;
        request.headers_mut().insert(
            AUTHORIZATION,
            format!("Bearer {jwt}")
                .parse()
                .context("bench ws: the JWT is not a valid header value")?,
        );
        Ok(request)
    };

    let rss_before = args.server_pid.map(rss_kib).transpose()?;
    let t0 = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let connected = Arc::new(AtomicU64::new(0));
    let connect_failed = Arc::new(AtomicU64::new(0));
    let first_connect_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let mut tasks = Vec::with_capacity(subscribers);
    for index in 0..subscribers {
        let sub = Subscriber {
            request: request_for(index)?,
            timed: index < sample,
            total_events,
            t0,
            gate: Arc::clone(&gate),
            connected: Arc::clone(&connected),
            connect_failed: Arc::clone(&connect_failed),
            first_error: Arc::clone(&first_connect_error),
            stop: stop_rx.clone(),
        };
        tasks.push(tokio::spawn(sub.run()));
    }
    let connect_started = Instant::now();
    while connected.load(Ordering::Relaxed) + connect_failed.load(Ordering::Relaxed)
        < subscribers as u64
    {
        if connect_started.elapsed() > CONNECT_TIMEOUT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = connected.load(Ordering::Relaxed);
    println!(
        "connected     {opened} of {subscribers} in {:.1} s",
        connect_started.elapsed().as_secs_f64()
    );
    let failed_connects = subscribers as u64 - opened;
    if failed_connects > 0 {
        let _ = stop_tx.send(true);
        let first = first_connect_error
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_else(|| "timed out".into());
        bail!("bench ws: {failed_connects} subscribers did not connect; the first: {first}");
    }
    tokio::time::sleep(SETTLE).await;
    if let (Some(pid), Some(before)) = (args.server_pid, rss_before) {
        let after = rss_kib(pid)?;
        let per = (after as f64 - before as f64) * 1024.0 / subscribers as f64;
        println!(
            "server RSS    {:.1} MiB before, {:.1} MiB with {subscribers} idle subscribers: {per:.0} bytes per subscriber",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
    }

    // Ingest: event i at t0' + i / rate, each its own request; the 202 time is kept per event.
    let acked: Arc<Vec<AtomicU64>> =
        Arc::new((0..total_events).map(|_| AtomicU64::new(UNSET)).collect());
    let post_errors = Arc::new(AtomicU64::new(0));
    let first_post_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let endpoint =
        reqwest::Url::parse(&format!("{}/v1/events", target.base)).context("--url: not a URL")?;
    let ingest_jwt = tenant_jwt(&target.tenant, &target.secret, "phoenix-bench")?;
    let auth = HeaderValue::from_str(&format!("Bearer {ingest_jwt}"))
        .context("bench ws: the tenant JWT is not a valid header value")?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = Vec::with_capacity(total_events as usize);
    let ingest_started = Instant::now();
    for i in 0..total_events {
        ticker.tick().await;
        let mut body = String::with_capacity(200);
        push_event_for(
            &mut body,
            &format!("{run_id}-e"),
            i,
            &jiff::Timestamp::now().to_string(),
            i,
            i + 1,
        );
        let (client, endpoint, auth, acked, errors, first) = (
            client.clone(),
            endpoint.clone(),
            auth.clone(),
            Arc::clone(&acked),
            Arc::clone(&post_errors),
            Arc::clone(&first_post_error),
        );
        posts.push(tokio::spawn(async move {
            let sent = client
                .post(endpoint)
                .header(AUTHORIZATION, auth)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body)
                .send()
                .await;
            let problem = match sent {
                Ok(reply) if reply.status() == reqwest::StatusCode::ACCEPTED => {
                    acked[i as usize].store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                    let _ = reply.bytes().await;
                    None
                }
                Ok(reply) => {
                    let status = reply.status().as_u16();
                    let text = reply.text().await.unwrap_or_default();
                    Some(format!("HTTP {status}: {}", one_line(&text)))
                }
                Err(e) => Some(error_chain(&e)),
            };
            if let Some(problem) = problem {
                errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut slot) = first.lock() {
                    slot.get_or_insert(problem);
                }
            }
        }));
    }
    for post in posts {
        let _ = post.await;
    }
    let ingest_secs = ingest_started.elapsed().as_secs_f64();
    tokio::time::sleep(DRAIN).await;
    let _ = stop_tx.send(true);

    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
        .context("cannot create the latency histogram")?;
    let (mut pairs, mut missing, mut early, mut frames, mut closed_early) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for task in tasks {
        let outcome = task.await.context("a subscriber failed")?;
        frames += outcome.frames;
        if outcome.closed_early {
            closed_early += 1;
        }
        let Some(shown) = outcome.shown else { continue };
        for (i, at) in shown.iter().enumerate() {
            let acked_at = acked[i].load(Ordering::Relaxed);
            if acked_at == UNSET {
                continue;
            }
            pairs += 1;
            if *at == UNSET {
                missing += 1;
                continue;
            }
            if *at < acked_at {
                early += 1;
            }
            latency.saturating_record(at.saturating_sub(acked_at).max(1));
        }
    }
    let errors = post_errors.load(Ordering::Relaxed);
    println!(
        "events        {} posted in {ingest_secs:.2} s ({:.0}/s), {errors} errors",
        total_events - errors,
        (total_events - errors) as f64 / ingest_secs.max(1e-9)
    );
    println!("frames        {frames} received by all subscribers");
    println!(
        "pairs         {pairs} (timed subscriber, event); {missing} never shown, {early} shown before the 202"
    );
    println!("latency       {}", latency_line(&latency, "no event shown"));
    println!("closed early  {closed_early}");
    let errors_total = errors + missing + closed_early;
    println!("errors        {errors_total}");
    if errors_total > 0 {
        let first = first_post_error
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_else(|| "events not shown or sockets closed".into());
        bail!("bench ws: {errors_total} errors; the first: {first}");
    }
    Ok(())
}

/// `VmRSS` of the server, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    super::client::rss_kib(pid)
        .with_context(|| format!("--server-pid: no VmRSS in /proc/{pid}/status"))
}

struct Subscriber {
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    timed: bool,
    total_events: u64,
    t0: Instant,
    gate: Arc<Semaphore>,
    connected: Arc<AtomicU64>,
    connect_failed: Arc<AtomicU64>,
    first_error: Arc<std::sync::Mutex<Option<String>>>,
    stop: watch::Receiver<bool>,
}

#[derive(Default)]
struct SubscriberOutcome {
    frames: u64,
    closed_early: bool,
    /// For a timed subscriber: per event, micros since t0 of the first frame showing it.
    shown: Option<Vec<u64>>,
}

impl Subscriber {
    async fn run(mut self) -> SubscriberOutcome {
        let mut outcome = SubscriberOutcome::default();
        let opened = {
            let _permit = self.gate.acquire().await;
            // tungstenite zeroes its whole read buffer (128 KiB by default) before every read: with
            // thousands of sockets on two cores that memset dominated the client, so keep it small.
            let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
            match tokio_tungstenite::connect_async_with_config(
                self.request.clone(),
                Some(config),
                true,
            )
            .await
            {
                Ok((mut socket, _)) => match socket.next().await {
                    // The snapshot: the socket is live.
                    Some(Ok(Message::Text(_))) => Ok(socket),
                    other => Err(format!("no snapshot: {other:?}")),
                },
                Err(e) => Err(error_chain(&e)),
            }
        };
        let mut socket = match opened {
            Ok(socket) => socket,
            Err(e) => {
                if let Ok(mut slot) = self.first_error.lock() {
                    slot.get_or_insert(e);
                }
                self.connect_failed.fetch_add(1, Ordering::Relaxed);
                return outcome;
            }
        };
        self.connected.fetch_add(1, Ordering::Relaxed);
        let mut shown = self.timed.then(|| vec![UNSET; self.total_events as usize]);
        let mut watermark = 0u64;
        loop {
            tokio::select! {
                _ = self.stop.changed() => break,
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        outcome.frames += 1;
                        if let Some(shown) = shown.as_mut() {
                            let best = best_score(text.as_str().as_bytes()).min(self.total_events);
                            if best > watermark {
                                let now = self.t0.elapsed().as_micros() as u64;
                                for slot in &mut shown[watermark as usize..best as usize] {
                                    *slot = now;
                                }
                                watermark = best;
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => {
                        outcome.closed_early = !*self.stop.borrow();
                        break;
                    }
                },
            }
        }
        let _ = socket.close(None).await;
        outcome.shown = shown;
        outcome
    }
}

/// The largest whole `"score":` value in a frame (0 if none).
fn best_score(frame: &[u8]) -> u64 {
    const KEY: &[u8] = br#""score":"#;
    let mut best = 0;
    let mut rest = frame;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let value = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(0);
        best = best.max(value);
        rest = &rest[digits..];
    }
    best
}

#[cfg(test)]
mod tests {
    use super::best_score;

    #[test]
    fn the_best_score_of_a_frame_is_found() {
        let frame = br#"{"type":"update","seq":3,"entries":[{"rank":1,"user_id":"u41","score":42,"updated_at":"x"},{"rank":2,"user_id":"u40","score":41.0}],"removed":[],"me":null}"#;
        assert_eq!(best_score(frame), 42);
        assert_eq!(best_score(br#"{"type":"snapshot","entries":[]}"#), 0);
    }
}
