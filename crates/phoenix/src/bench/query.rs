//! `phoenix bench query`: loads a leaderboard with many players through the batch ingestion route, then
//! reads it over authenticated HTTP (top-100 pages and around-me windows) at a chosen concurrency and
//! reports reads/s and latency percentiles.

use super::client::{
    REQUEST_TIMEOUT, SplitMix64, Tally, Target, base_url, create_bench_tenant, error_chain,
    one_line, push_event_for, run_id, seed, tenant_jwt, timed_exchange,
};
use super::report::latency_line;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the readers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadKind {
    /// `GET /v1/leaderboards/{id}?limit=<limit>` (the top page).
    Top,
    /// `GET /v1/leaderboards/{id}/around/me?radius=<radius>` as a random ranked player.
    Around,
    /// `GET /livez`: no auth, no store, a tiny body; the HTTP floor the other reads stand on.
    Livez,
}

impl ReadKind {
    fn name(self) -> &'static str {
        match self {
            ReadKind::Top => "top",
            ReadKind::Around => "around",
            ReadKind::Livez => "livez",
        }
    }
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Load options")]
pub struct QueryArgs {
    /// Base URL of the running server (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Reuse this tenant (with --tenant-secret), loaded earlier, instead of creating and loading one.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The HMAC secret of --tenant, which signs the player JWTs.
    #[arg(long, env = "PHOENIX_BENCH_TENANT_SECRET", hide_env_values = true)]
    pub tenant_secret: Option<String>,
    /// The leaderboard read when --tenant is given (a created one is always `bench`).
    #[arg(long, default_value = "bench")]
    pub leaderboard: String,
    /// Players loaded (one event each; `uK` scores players - K).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub players: u64,
    /// The leaderboard's ranking.size: only the best this many are ranked.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub ranked: u32,
    /// Batch requests in flight while loading.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub load_concurrency: u32,
    /// What to read, one measured phase each, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ReadKind::Top, ReadKind::Around])]
    pub read: Vec<ReadKind>,
    /// Reads in flight at once, one connection each.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Seconds to measure each read kind.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1800))]
    pub duration: u64,
    /// Seconds of reads before each measured phase; not in the report.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub warmup: u64,
    /// Entries per top page (`limit`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: u32,
    /// Ranks either side for around-me (`radius`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=50))]
    pub radius: u32,
    /// Player JWTs signed up front, each for a random ranked player.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub jwt_pool: u32,
}

pub async fn run(args: QueryArgs, admin_secret: Option<String>) -> anyhow::Result<()> {
    let base = base_url(&args.url)?;
    let run_id = run_id();
    let pool = (args.concurrency.max(args.load_concurrency)) as usize;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;

    let (target, leaderboard, load) = match (&args.tenant, &args.tenant_secret) {
        (Some(tenant), _) if tenant.trim().is_empty() => bail!("--tenant: must not be empty"),
        (Some(tenant), Some(secret)) if !secret.is_empty() => (
            Target {
                base: base.clone(),
                tenant: tenant.clone(),
                secret: secret.clone(),
            },
            args.leaderboard.clone(),
            false,
        ),
        (Some(_), _) => {
            bail!("bench query: --tenant needs --tenant-secret (or PHOENIX_BENCH_TENANT_SECRET)")
        }
        (None, _) => {
            let Some(admin) = admin_secret.filter(|s| !s.trim().is_empty()) else {
                bail!(
                    "bench query: give --admin-secret (or PHOENIX_ADMIN_SECRET) to create and load a bench tenant, or --tenant and --tenant-secret"
                );
            };
            let target =
                create_bench_tenant(&client, &base, &admin, &run_id, Some(args.ranked)).await?;
            (target, "bench".to_owned(), true)
        }
    };
    if leaderboard.is_empty()
        || !leaderboard
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("--leaderboard: '{leaderboard}' is not a leaderboard id");
    }
    println!(
        "phoenix bench query: tenant {} (secret {}), leaderboard {leaderboard} at {base}",
        target.tenant, target.secret
    );

    if load {
        let started = Instant::now();
        load_players(
            &client,
            &target,
            &run_id,
            args.players,
            args.load_concurrency,
        )
        .await?;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        println!(
            "loaded        {} players in {secs:.1} s ({:.0} events/s)",
            args.players,
            args.players as f64 / secs
        );
    }

    let ranked = args.players.min(u64::from(args.ranked));
    let mut rng = SplitMix64(seed());
    let mut tokens = Vec::with_capacity(args.jwt_pool as usize);
    for _ in 0..args.jwt_pool {
        let sub = format!("u{}", rng.next() % ranked);
        let jwt = tenant_jwt(&target.tenant, &target.secret, &sub)?;
        tokens.push(
            HeaderValue::from_str(&format!("Bearer {jwt}"))
                .context("bench query: a player JWT is not a valid header value")?,
        );
    }
    let tokens = Arc::new(tokens);

    let board_url = format!("{}/v1/leaderboards/{leaderboard}", target.base);
    let total = total_entries(&client, &board_url, &tokens[0]).await?;
    println!("ranked        {total} entries (total_entries of the board)");

    let mut failed = 0;
    for kind in &args.read {
        let url = match kind {
            ReadKind::Top => format!("{board_url}?limit={}", args.limit),
            ReadKind::Around => format!("{board_url}/around/me?radius={}", args.radius),
            ReadKind::Livez => format!("{}/livez", target.base),
        };
        let url = reqwest::Url::parse(&url).with_context(|| format!("'{url}' is not a URL"))?;
        let spec = Arc::new(ReadSpec {
            client: client.clone(),
            url,
            tokens: Arc::clone(&tokens),
        });
        let concurrency = args.concurrency as usize;
        if args.warmup > 0 {
            read_phase(&spec, Duration::from_secs(args.warmup), concurrency).await?;
        }
        let started = Instant::now();
        let tally = read_phase(&spec, Duration::from_secs(args.duration), concurrency).await?;
        let report = ReadReport {
            kind: *kind,
            url: spec.url.as_str(),
            concurrency,
            elapsed: started.elapsed(),
            tally: &tally,
        };
        print!("{report}");
        if tally.errors() > 0 && failed == 0 {
            failed = tally.errors();
        }
        if tally.errors() > 0 {
            eprintln!(
                "bench query: {} errors reading {}; the first: {}",
                tally.errors(),
                kind.name(),
                tally.first_error.as_deref().unwrap_or("unknown")
            );
        }
    }
    if failed > 0 {
        bail!("bench query: there were errors");
    }
    Ok(())
}

/// Posts one event per player (`uK` scores `players - K`), 1000 per batch request.
async fn load_players(
    client: &reqwest::Client,
    target: &Target,
    run_id: &str,
    players: u64,
    concurrency: u32,
) -> anyhow::Result<()> {
    const BATCH: u64 = 1000;
    let endpoint = reqwest::Url::parse(&format!("{}/v1/events/batch", target.base))
        .context("--url: not a URL")?;
    let jwt = tenant_jwt(&target.tenant, &target.secret, "phoenix-bench")?;
    let auth = HeaderValue::from_str(&format!("Bearer {jwt}"))
        .context("bench query: the tenant JWT is not a valid header value")?;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, endpoint, auth, next) = (
            client.clone(),
            endpoint.clone(),
            auth.clone(),
            Arc::clone(&next),
        );
        let prefix = format!("{run_id}-l");
        workers.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(BATCH, Ordering::Relaxed);
                if start >= players {
                    return anyhow::Ok(());
                }
                let end = (start + BATCH).min(players);
                let occurred_at = jiff::Timestamp::now().to_string();
                let mut body = String::with_capacity(32 + 192 * (end - start) as usize);
                body.push_str(r#"{"events":["#);
                for user in start..end {
                    if user > start {
                        body.push(',');
                    }
                    push_event_for(&mut body, &prefix, user, &occurred_at, user, players - user);
                }
                body.push_str("]}");
                let reply = client
                    .post(endpoint.clone())
                    .header(AUTHORIZATION, auth.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("bench query: loading: {}", error_chain(&e)))?;
                let status = reply.status();
                let text = reply.text().await.unwrap_or_default();
                if status != reqwest::StatusCode::ACCEPTED {
                    bail!(
                        "bench query: loading: HTTP {}: {}",
                        status.as_u16(),
                        one_line(&text)
                    );
                }
                if !text.contains(r#""rejected":0"#) {
                    bail!("bench query: loading: events rejected: {}", one_line(&text));
                }
            }
        }));
    }
    for worker in workers {
        worker.await.context("a loading worker failed")??;
    }
    Ok(())
}

/// `total_entries` of the board's current window (one read, which also checks the credentials).
async fn total_entries(
    client: &reqwest::Client,
    board_url: &str,
    auth: &HeaderValue,
) -> anyhow::Result<u64> {
    let url = format!("{board_url}?limit=1");
    let reply = client
        .get(&url)
        .header(AUTHORIZATION, auth.clone())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("bench query: cannot read {url}: {}", error_chain(&e)))?;
    let status = reply.status();
    let text = reply.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::OK {
        bail!(
            "bench query: reading {url}: HTTP {}: {}",
            status.as_u16(),
            one_line(&text)
        );
    }
    let v: Value = serde_json::from_str(&text).context("bench query: the answer is not JSON")?;
    Ok(v["total_entries"].as_u64().unwrap_or(0))
}

struct ReadSpec {
    client: reqwest::Client,
    url: reqwest::Url,
    tokens: Arc<Vec<HeaderValue>>,
}

async fn read_phase(
    spec: &Arc<ReadSpec>,
    length: Duration,
    concurrency: usize,
) -> anyhow::Result<Tally> {
    let deadline = Instant::now() + length;
    let mut workers = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let spec = Arc::clone(spec);
        workers.push(tokio::spawn(async move {
            read_worker(spec, deadline, index as u64).await
        }));
    }
    let mut total = Tally::new()?;
    for worker in workers {
        total.merge(worker.await.context("a read worker failed")??)?;
    }
    Ok(total)
}

async fn read_worker(spec: Arc<ReadSpec>, deadline: Instant, index: u64) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut rng = SplitMix64(seed() ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    while Instant::now() < deadline {
        let token = &spec.tokens[(rng.next() % spec.tokens.len() as u64) as usize];
        let request = spec
            .client
            .get(spec.url.clone())
            .header(AUTHORIZATION, token.clone());
        if timed_exchange(&mut tally, request, reqwest::StatusCode::OK)
            .await
            .is_none()
        {
            continue;
        }
        tally.accepted += 1;
    }
    Ok(tally)
}

struct ReadReport<'a> {
    kind: ReadKind,
    url: &'a str,
    concurrency: usize,
    elapsed: Duration,
    tally: &'a Tally,
}

impl std::fmt::Display for ReadReport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tally;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(f, "read          {} ({})", self.kind.name(), self.url)?;
        writeln!(f, "concurrency   {}", self.concurrency)?;
        writeln!(f, "measured      {secs:.2} s")?;
        writeln!(
            f,
            "requests      {} ({} answered 200)",
            t.requests, t.accepted
        )?;
        writeln!(f, "errors        {}", t.errors())?;
        if let Some(first) = &t.first_error {
            writeln!(f, "first error   {first}")?;
        }
        writeln!(f, "reads/s       {:.0}", t.accepted as f64 / secs)?;
        writeln!(
            f,
            "latency       {}",
            latency_line(&t.latency, "no request answered")
        )
    }
}
