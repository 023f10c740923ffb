//! `phoenix bench ingest`: a load generator for a running server's Ingestion gateway. Workers post
//! real events with real HS256 tenant JWTs, one per request or in batches, at a chosen concurrency, and
//! the run ends by itself at a time or event limit with a report of events/s and latency percentiles.
//! It only ever talks to the `--url` it is given.

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Load generators for a running server (figures and commands: docs/benchmarks.md).
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Post events to /v1/events (single) or /v1/events/batch (batch) and report events/s and latency.
    ///
    /// With --admin-secret (or PHOENIX_ADMIN_SECRET) it first creates a fresh tenant `bench-<run>` with
    /// one all-time `sum` leaderboard; with --tenant and --tenant-secret it posts to that tenant instead.
    /// Events are `match.completed` with a random `attrs.score` for one of --users players, each with a
    /// unique `event_id`. The run stops by itself after --duration seconds or --events events. Requests
    /// that fail (not 202, or a transport error) and rejected events count as errors; the exit status is
    /// non-zero if there was any.
    #[command(verbatim_doc_comment)]
    Ingest(IngestArgs),
    /// Read top-100 pages and around-me windows over authenticated HTTP and report reads/s and latency.
    ///
    /// With --admin-secret it creates a fresh tenant with one all-time leaderboard (ranking.size
    /// --ranked, default 100000) and loads --players players (`u0`, `u1`, ...; player `uK` scores
    /// players - K, so `uK` has rank K+1) through /v1/events/batch; with --tenant and --tenant-secret it
    /// reuses a board loaded that way earlier (--leaderboard, --players, --ranked must match). Then, for
    /// each --read kind, --concurrency connections read for --duration seconds with player JWTs whose
    /// `sub` is a random ranked player. Any answer other than 200 is an error (non-zero exit).
    #[command(verbatim_doc_comment)]
    Query(query::QueryArgs),
    /// Measure the delay from an event's 202 to the WebSocket frame that shows it.
    ///
    /// Creates a fresh tenant and all-time leaderboard (needs --admin-secret), opens --subscribers
    /// sockets to its /ws (the default top 10; raise the open-file limit first, e.g. `ulimit -n 20000`),
    /// reports the server's memory per idle subscriber when --server-pid is given, then posts --rate
    /// events/s for --duration seconds, one per request, each giving a new player a new top score that
    /// encodes the event's index. --sample subscribers time every frame; the rest read and discard.
    #[command(verbatim_doc_comment)]
    Ws(ws::WsArgs),
    /// Measure one small write to each of many loopback TCP sockets: the floor under `bench ws`.
    ///
    /// Needs no server. Opens --sockets connected pairs on 127.0.0.1, then writes --bytes to every
    /// socket, --rounds times, from one thread, and reports the median and best round.
    #[command(verbatim_doc_comment)]
    SendFloor(floor::FloorArgs),
    /// Attack a running server on this machine as an unauthenticated client and check it stays up.
    ///
    /// Holds --sockets stalled sockets (silent, headers trickled a byte a second, 1 MiB bodies
    /// trickled), sends requests with made-up methods and oversized bodies, for --duration seconds,
    /// while probing `GET /livez` every 100 ms on a fresh connection. Reports the probe's latency, the
    /// server's memory with --server-pid, and the size of /metrics before and after; exits non-zero
    /// if a probe failed or took 1 s or more. Raise `ulimit -n` above --sockets first.
    #[command(verbatim_doc_comment)]
    Attack(attack::AttackArgs),
}

mod attack;
mod floor;
mod query;
mod ws;

/// One event per request, or batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// `POST /v1/events`, one event per request.
    Single,
    /// `POST /v1/events/batch`, --batch-size events per request.
    Batch,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Load options")]
pub struct IngestArgs {
    /// Base URL of the running server (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Post to this existing tenant (with --tenant-secret) instead of creating one with --admin-secret.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The HMAC secret of --tenant, which signs the tenant JWTs.
    #[arg(long, env = "PHOENIX_BENCH_TENANT_SECRET", hide_env_values = true)]
    pub tenant_secret: Option<String>,
    /// One event per request or batches.
    #[arg(long, value_enum, default_value_t = Mode::Single)]
    pub mode: Mode,
    /// Requests in flight at once, one connection each [default: 64 single, 4 batch].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: Option<u32>,
    /// Events per batch request (batch mode).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch_size: u32,
    /// Seconds to measure [default: 10, or at most 600 when --events is given].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1800))]
    pub duration: Option<u64>,
    /// Stop once this many events have been sent (not counting the warm-up).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub events: Option<u64>,
    /// Distinct player ids (`u0`, `u1`, ...); each event picks one at random.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub users: u64,
    /// Seconds of load before measuring (opens connections, warms caches); not in the report.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub warmup: u64,
}

/// When only --events is given, the run still ends after this long.
const EVENTS_ONLY_TIME_CAP: Duration = Duration::from_secs(600);
/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Latencies are recorded in microseconds up to this (the request timeout fits).
const LATENCY_MAX_MICROS: u64 = 60_000_000;

/// Runs one bench subcommand; `admin_secret` is the global `--admin-secret` / `PHOENIX_ADMIN_SECRET`.
pub async fn run(command: BenchCommand, admin_secret: Option<String>) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest(args, admin_secret).await,
        BenchCommand::Query(args) => query::run(args, admin_secret).await,
        BenchCommand::Ws(args) => ws::run(args, admin_secret).await,
        BenchCommand::SendFloor(args) => floor::run(args).await,
        BenchCommand::Attack(args) => attack::run(args).await,
    }
}

/// Where and as whom the workers post.
struct Target {
    base: String,
    tenant: String,
    secret: String,
}

async fn ingest(args: IngestArgs, admin_secret: Option<String>) -> anyhow::Result<()> {
    let base = base_url(&args.url)?;
    let concurrency = args.concurrency.unwrap_or(match args.mode {
        Mode::Single => 64,
        Mode::Batch => 4,
    }) as usize;
    let batch_size = match args.mode {
        Mode::Single => 1,
        Mode::Batch => u64::from(args.batch_size),
    };
    let run_id = run_id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;

    let blank = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
    let target = match (&args.tenant, &args.tenant_secret) {
        (Some(tenant), Some(secret)) if !tenant.is_empty() && !secret.is_empty() => Target {
            base: base.clone(),
            tenant: tenant.clone(),
            secret: secret.clone(),
        },
        (Some(tenant), _) if tenant.trim().is_empty() => bail!("--tenant: must not be empty"),
        (Some(_), _) => {
            bail!("bench ingest: --tenant needs --tenant-secret (or PHOENIX_BENCH_TENANT_SECRET)")
        }
        (None, _) if blank(&admin_secret) => bail!(
            "bench ingest: give --admin-secret (or PHOENIX_ADMIN_SECRET) to create a bench tenant, or --tenant and --tenant-secret"
        ),
        (None, _) => {
            let admin = admin_secret.unwrap_or_default();
            create_bench_tenant(&client, &base, &admin, &run_id, None).await?
        }
    };

    let endpoint = match args.mode {
        Mode::Single => format!("{}/v1/events", target.base),
        Mode::Batch => format!("{}/v1/events/batch", target.base),
    };
    // Parsed once: workers clone it instead of parsing a string per request.
    let endpoint = reqwest::Url::parse(&endpoint)
        .with_context(|| format!("--url: '{endpoint}' is not a URL"))?;
    let token = tenant_jwt(&target.tenant, &target.secret, "phoenix-bench")?;
    let spec = Arc::new(WorkerSpec {
        client,
        endpoint,
        auth: HeaderValue::from_str(&format!("Bearer {token}"))
            .context("bench ingest: the tenant JWT is not a valid header value")?,
        batch_size,
        users: args.users,
    });

    println!(
        "phoenix bench ingest: {} mode, {concurrency} connections, tenant {} at {}",
        mode_name(args.mode),
        target.tenant,
        spec.endpoint
    );
    if args.warmup > 0 {
        let warmup = Phase {
            deadline: Instant::now() + Duration::from_secs(args.warmup),
            budget: None,
            id_prefix: format!("{run_id}-w"),
        };
        run_phase(&spec, warmup, concurrency).await?;
    }
    let limit = match (args.duration, args.events) {
        (Some(secs), _) => Duration::from_secs(secs),
        (None, Some(_)) => EVENTS_ONLY_TIME_CAP,
        (None, None) => Duration::from_secs(10),
    };
    let measured = Phase {
        deadline: Instant::now() + limit,
        budget: args.events.map(|total| EventBudget {
            total,
            claimed: AtomicU64::new(0),
        }),
        id_prefix: format!("{run_id}-m"),
    };
    let started = Instant::now();
    let outcome = run_phase(&spec, measured, concurrency).await?;
    let elapsed = started.elapsed();

    let report = Report {
        mode: args.mode,
        concurrency,
        batch_size,
        warmup: args.warmup,
        elapsed,
        stopped_by_count: outcome.budget_spent,
        tally: &outcome.tally,
    };
    print!("{report}");
    let errors = outcome.tally.errors();
    if errors > 0 {
        bail!(
            "bench ingest: {errors} errors; the first: {}",
            outcome.tally.first_error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(())
}

/// Sends `request`, counts it, and records its latency when it answers `expect`; any other outcome is
/// counted as a failure (with the first error kept) and gives `None`.
async fn timed_exchange(
    tally: &mut Tally,
    request: reqwest::RequestBuilder,
    expect: reqwest::StatusCode,
) -> Option<impl AsRef<[u8]> + use<>> {
    let started = Instant::now();
    let sent = request.send().await;
    tally.requests += 1;
    let failed = |tally: &mut Tally, message: String| {
        tally.failed_requests += 1;
        tally.fail(|| message);
    };
    let reply = match sent {
        Ok(reply) => reply,
        Err(e) => {
            failed(tally, error_chain(&e));
            return None;
        }
    };
    let status = reply.status();
    let answer = match reply.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => {
            failed(tally, error_chain(&e));
            return None;
        }
    };
    let micros = started.elapsed().as_micros() as u64;
    if status != expect {
        let text = format!(
            "HTTP {}: {}",
            status.as_u16(),
            one_line(&String::from_utf8_lossy(&answer))
        );
        failed(tally, text);
        return None;
    }
    tally.latency.saturating_record(micros.max(1));
    Some(answer)
}

/// `p50 …, p90 …, p99 …, max …` in milliseconds, or `empty` when nothing was recorded.
fn latency_line(latency: &Histogram<u64>, empty: &str) -> String {
    if latency.is_empty() {
        return empty.to_owned();
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    format!(
        "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.90)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    )
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Single => "single",
        Mode::Batch => "batch",
    }
}

/// Checks `--url` and strips a trailing slash.
fn base_url(raw: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("--url: '{raw}' is not a URL ({e})"))?;
    match url.scheme() {
        "http" => Ok(url.as_str().trim_end_matches('/').to_owned()),
        "https" => bail!("--url: https is not built into the load generator; use http://"),
        other => bail!("--url: '{other}' is not http"),
    }
}

/// A short id that keeps this run's tenant and event ids apart from earlier runs'.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    format!("{:x}", nanos ^ (u64::from(std::process::id()) << 40))
}

/// Creates tenant `bench-<run>` and its all-time `sum` leaderboard `bench` (ranking `size`
/// `ranking_size`, or the default); returns where to post as it.
async fn create_bench_tenant(
    client: &reqwest::Client,
    base: &str,
    admin_secret: &str,
    run_id: &str,
    ranking_size: Option<u32>,
) -> anyhow::Result<Target> {
    let tenant = format!("bench-{run_id}");
    let created = admin_post(
        client,
        &format!("{base}/tenants"),
        admin_secret,
        &json!({"tenant_id": tenant, "name": "Ingestion benchmark"}),
        "creating the bench tenant",
    )
    .await?;
    let secret = created["hmac_secret"]
        .as_str()
        .context("bench ingest: the tenant creation answer has no hmac_secret")?
        .to_owned();
    let mut config = json!({
        "timeframe": {"type": "all_time"},
        "scoring": {
            "rules": [{"event_type": "match.*", "points_expression": "attrs.score"}],
            "aggregation": "sum"
        }
    });
    if let Some(size) = ranking_size {
        config["ranking"] = json!({"method": "score_desc", "size": size});
    }
    admin_post(
        client,
        &format!("{base}/tenants/{tenant}/leaderboards"),
        admin_secret,
        &json!({
            "leaderboard_id": "bench",
            "name": "Benchmark score",
            "config": config,
        }),
        "creating the bench leaderboard",
    )
    .await?;
    Ok(Target {
        base: base.to_owned(),
        tenant,
        secret,
    })
}

/// POSTs an Admin request that must answer 201; returns its JSON body.
async fn admin_post(
    client: &reqwest::Client,
    url: &str,
    admin_secret: &str,
    body: &Value,
    what: &str,
) -> anyhow::Result<Value> {
    let reply = client
        .post(url)
        .bearer_auth(admin_secret)
        .json(body)
        .send()
        .await
        .with_context(|| format!("bench ingest: {what}: cannot reach {url}"))?;
    let status = reply.status();
    let text = reply
        .text()
        .await
        .with_context(|| format!("bench ingest: {what}: reading the answer"))?;
    if status != reqwest::StatusCode::CREATED {
        bail!(
            "bench ingest: {what}: HTTP {}: {}",
            status.as_u16(),
            one_line(&text)
        );
    }
    serde_json::from_str(&text)
        .with_context(|| format!("bench ingest: {what}: the answer is not JSON"))
}

/// An HS256 tenant JWT for caller `sub`, valid for an hour (the longest run plus warm-up fits).
fn tenant_jwt(tenant: &str, secret: &str, sub: &str) -> anyhow::Result<String> {
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({
        "sub": sub,
        "sub_type": "tenant",
        "sub_id": tenant,
        "iat": now,
        "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("bench ingest: cannot sign the tenant JWT")
}

/// What every worker shares.
struct WorkerSpec {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    auth: HeaderValue,
    batch_size: u64,
    users: u64,
}

/// Events the measured phase may still send, shared by its workers.
struct EventBudget {
    total: u64,
    claimed: AtomicU64,
}

impl EventBudget {
    /// Claims up to `want` events; 0 once the budget is spent.
    fn claim(&self, want: u64) -> u64 {
        let start = self.claimed.fetch_add(want, Ordering::Relaxed);
        self.total.saturating_sub(start).min(want)
    }
}

/// One phase of a run: warm-up or measured.
struct Phase {
    deadline: Instant,
    budget: Option<EventBudget>,
    id_prefix: String,
}

struct PhaseOutcome {
    tally: Tally,
    budget_spent: bool,
}

async fn run_phase(
    spec: &Arc<WorkerSpec>,
    phase: Phase,
    concurrency: usize,
) -> anyhow::Result<PhaseOutcome> {
    let phase = Arc::new(phase);
    let mut workers = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        workers.push(tokio::spawn(run_worker(
            Arc::clone(spec),
            Arc::clone(&phase),
            index,
        )));
    }
    let mut total = Tally::new()?;
    for worker in workers {
        let tally = worker.await.context("a bench worker failed")??;
        total.merge(tally)?;
    }
    let budget_spent = phase
        .budget
        .as_ref()
        .is_some_and(|b| b.claimed.load(Ordering::Relaxed) >= b.total);
    Ok(PhaseOutcome {
        tally: total,
        budget_spent,
    })
}

/// What one worker (or all of them, merged) saw.
struct Tally {
    requests: u64,
    failed_requests: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    first_error: Option<String>,
    /// Latency of answered (202) requests, in microseconds.
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            requests: 0,
            failed_requests: 0,
            accepted: 0,
            duplicates: 0,
            rejected: 0,
            first_error: None,
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
                .context("cannot create the latency histogram")?,
        })
    }

    fn errors(&self) -> u64 {
        self.failed_requests + self.rejected
    }

    fn fail(&mut self, message: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.requests += other.requests;
        self.failed_requests += other.failed_requests;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency
            .add(&other.latency)
            .context("cannot merge latency histograms")
    }
}

/// Posts requests until the phase's deadline or budget ends.
async fn run_worker(
    spec: Arc<WorkerSpec>,
    phase: Arc<Phase>,
    index: usize,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let json_type = HeaderValue::from_static("application/json");
    let id_prefix = format!("{}{index}", phase.id_prefix);
    let mut rng = SplitMix64(
        0x9e37_79b9_7f4a_7c15 ^ (index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ seed(),
    );
    // A body is about 170 bytes per event; one allocation per request, none per event.
    let body_capacity = 32 + 192 * spec.batch_size as usize;
    let mut seq: u64 = 0;
    while Instant::now() < phase.deadline {
        let events = match &phase.budget {
            Some(budget) => budget.claim(spec.batch_size),
            None => spec.batch_size,
        };
        if events == 0 {
            break;
        }
        let occurred_at = jiff::Timestamp::now().to_string();
        let mut body = String::with_capacity(body_capacity);
        if spec.batch_size == 1 {
            push_event(
                &mut body,
                &id_prefix,
                seq,
                &occurred_at,
                &mut rng,
                spec.users,
            );
            seq += 1;
        } else {
            body.push_str(r#"{"events":["#);
            for k in 0..events {
                if k > 0 {
                    body.push(',');
                }
                push_event(
                    &mut body,
                    &id_prefix,
                    seq,
                    &occurred_at,
                    &mut rng,
                    spec.users,
                );
                seq += 1;
            }
            body.push_str("]}");
        }

        let request = spec
            .client
            .post(spec.endpoint.clone())
            .header(AUTHORIZATION, spec.auth.clone())
            .header(CONTENT_TYPE, json_type.clone())
            .body(body);
        let Some(answer) = timed_exchange(&mut tally, request, reqwest::StatusCode::ACCEPTED).await
        else {
            continue;
        };
        let answer = answer.as_ref();
        if spec.batch_size == 1 {
            if contains(answer, br#""status":"duplicate""#) {
                tally.duplicates += 1;
            } else {
                tally.accepted += 1;
            }
        } else {
            let count = |key: &[u8]| count_after(answer, key).unwrap_or(0);
            tally.accepted += count(br#""accepted":"#);
            tally.duplicates += count(br#""duplicates":"#);
            let rejected = count(br#""rejected":"#);
            if rejected > 0 {
                tally.rejected += rejected;
                tally.fail(|| {
                    format!(
                        "{rejected} events of a batch rejected: {}",
                        one_line(&String::from_utf8_lossy(answer))
                    )
                });
            }
        }
    }
    Ok(tally)
}

/// Appends one event as JSON. Ids and numbers need no escaping, so plain formatting is exact.
fn push_event(
    body: &mut String,
    id_prefix: &str,
    seq: u64,
    occurred_at: &str,
    rng: &mut SplitMix64,
    users: u64,
) {
    let user = rng.next() % users;
    let score = 1 + rng.next() % 100;
    push_event_for(body, id_prefix, seq, occurred_at, user, score);
}

/// Appends the event `<id_prefix>-<seq>` giving player `u<user>` `score` points.
fn push_event_for(
    body: &mut String,
    id_prefix: &str,
    seq: u64,
    occurred_at: &str,
    user: u64,
    score: u64,
) {
    // Writing to a String cannot fail.
    let _ = write!(
        body,
        r#"{{"event_id":"{id_prefix}-{seq}","type":"match.completed","actor":{{"user_id":"u{user}"}},"occurred_at":"{occurred_at}","attrs":{{"score":{score}}}}}"#
    );
}

/// A tiny, fast generator for picking players and scores (not for anything secret).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The number right after the first `key` in a JSON answer (`"accepted":1000` → 1000).
fn count_after(haystack: &[u8], key: &[u8]) -> Option<u64> {
    let at = haystack.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = haystack[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&haystack[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// An error and its causes on one line (reqwest hides the useful part, e.g. "connection refused", in
/// the source chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}

/// At most 300 characters of `text`, on one line.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    flat.trim().to_owned()
}

struct Report<'a> {
    mode: Mode,
    concurrency: usize,
    batch_size: u64,
    warmup: u64,
    elapsed: Duration,
    stopped_by_count: bool,
    tally: &'a Tally,
}

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tally;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let answered_events = t.accepted + t.duplicates;
        let answered_requests = t.requests - t.failed_requests;
        let stopped_by = if self.stopped_by_count {
            "the event count"
        } else {
            "the time limit"
        };
        writeln!(f, "mode          {}", mode_name(self.mode))?;
        writeln!(f, "concurrency   {}", self.concurrency)?;
        writeln!(f, "batch size    {}", self.batch_size)?;
        let warmup = match self.warmup {
            0 => "no warm-up".to_owned(),
            w => format!("a {w} s warm-up"),
        };
        writeln!(
            f,
            "measured      {secs:.2} s after {warmup}; stopped by {stopped_by}"
        )?;
        writeln!(
            f,
            "requests      {} ({answered_requests} answered 202)",
            t.requests
        )?;
        writeln!(
            f,
            "events        {answered_events} ({} accepted, {} duplicates, {} rejected)",
            t.accepted, t.duplicates, t.rejected
        )?;
        writeln!(f, "errors        {}", t.errors())?;
        if let Some(first) = &t.first_error {
            writeln!(f, "first error   {first}")?;
        }
        writeln!(f, "events/s      {:.0}", answered_events as f64 / secs)?;
        writeln!(f, "requests/s    {:.0}", answered_requests as f64 / secs)?;
        writeln!(
            f,
            "latency       {}",
            latency_line(&t.latency, "no request answered")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_valid_json_with_the_expected_fields() {
        let mut body = String::new();
        let mut rng = SplitMix64(7);
        push_event(
            &mut body,
            "run-m3",
            42,
            "2026-11-28T00:00:00Z",
            &mut rng,
            10,
        );
        let v: Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["event_id"], "run-m3-42");
        assert_eq!(v["type"], "match.completed");
        let user = v["actor"]["user_id"].as_str().expect("a user id");
        assert!(user.len() <= 16 && user.starts_with('u'));
        let score = v["attrs"]["score"].as_u64().expect("a score");
        assert!((1..=100).contains(&score));
    }

    #[test]
    fn counts_are_read_from_a_batch_answer() {
        let answer = br#"{"accepted":998,"duplicates":2,"rejected":0,"results":[]}"#;
        assert_eq!(count_after(answer, br#""accepted":"#), Some(998));
        assert_eq!(count_after(answer, br#""duplicates":"#), Some(2));
        assert_eq!(count_after(answer, br#""rejected":"#), Some(0));
        assert_eq!(count_after(answer, br#""missing":"#), None);
    }

    #[test]
    fn the_budget_hands_out_exactly_the_total() {
        let budget = EventBudget {
            total: 2500,
            claimed: AtomicU64::new(0),
        };
        let claims: Vec<u64> = (0..5).map(|_| budget.claim(1000)).collect();
        assert_eq!(claims, vec![1000, 1000, 500, 0, 0]);
    }

    #[test]
    fn only_http_urls_are_taken() {
        assert_eq!(
            base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(base_url("https://example.com").is_err());
        assert!(base_url("not a url").is_err());
    }
}
