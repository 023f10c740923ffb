//! `phoenix bench ingest`: a load generator for a running server's Ingestion gateway. Workers post
//! real events with real HS256 tenant JWTs, one per request or in batches, at a chosen concurrency, and
//! the run ends by itself at a time or event limit with a report of events/s and latency percentiles.
//! It only ever talks to the `--url` it is given.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::client::*;
use super::report::*;

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
    /// Base URL of the running server (http only); a cluster's nodes separated by commas spread the
    /// connections over them (the bench tenant is made on the first).
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
    /// Give every event a player never seen before (`u<N>`, counting up from --first-user) instead of
    /// picking one of --users: for measuring memory per player.
    #[arg(long)]
    pub new_player_per_event: bool,
    /// The first player number with --new-player-per-event (to continue an earlier run).
    #[arg(long, default_value_t = 0)]
    pub first_user: u64,
    /// Seconds of load before measuring (opens connections, warms caches); not in the report.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub warmup: u64,
}

/// When only --events is given, the run still ends after this long.
pub(super) const EVENTS_ONLY_TIME_CAP: Duration = Duration::from_secs(600);

pub async fn run(args: IngestArgs, admin_secret: Option<String>) -> anyhow::Result<()> {
    let bases = base_urls(&args.url)?;
    let base = bases[0].clone();
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

    let path = match args.mode {
        Mode::Single => "/v1/events",
        Mode::Batch => "/v1/events/batch",
    };
    // With --tenant the target's base is the first URL; the others are the same cluster's nodes.
    let mut nodes = vec![target.base.clone()];
    nodes.extend(bases.iter().skip(1).cloned());
    // Parsed once: workers clone it instead of parsing a string per request.
    let endpoints = nodes
        .iter()
        .map(|base| {
            let endpoint = format!("{base}{path}");
            reqwest::Url::parse(&endpoint)
                .with_context(|| format!("--url: '{endpoint}' is not a URL"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let token = tenant_jwt(&target.tenant, &target.secret, "phoenix-bench")?;
    let spec = Arc::new(WorkerSpec {
        client,
        endpoints,
        auth: HeaderValue::from_str(&format!("Bearer {token}"))
            .context("bench ingest: the tenant JWT is not a valid header value")?,
        batch_size,
        users: args.users,
        next_player: args
            .new_player_per_event
            .then(|| AtomicU64::new(args.first_user)),
    });

    println!(
        "phoenix bench ingest: {} mode, {concurrency} connections, tenant {} at {}",
        mode_name(args.mode),
        target.tenant,
        spec.endpoints
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
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

/// What every worker shares.
pub(super) struct WorkerSpec {
    pub(super) client: reqwest::Client,
    /// Where to post (a cluster's nodes: worker `i` posts to `endpoints[i % len]`).
    pub(super) endpoints: Vec<reqwest::Url>,
    pub(super) auth: HeaderValue,
    pub(super) batch_size: u64,
    pub(super) users: u64,
    /// With --new-player-per-event: the next player number, shared by every worker.
    pub(super) next_player: Option<AtomicU64>,
}

/// Events the measured phase may still send, shared by its workers.
pub(super) struct EventBudget {
    pub(super) total: u64,
    pub(super) claimed: AtomicU64,
}

impl EventBudget {
    /// Claims up to `want` events; 0 once the budget is spent.
    pub(super) fn claim(&self, want: u64) -> u64 {
        let start = self.claimed.fetch_add(want, Ordering::Relaxed);
        self.total.saturating_sub(start).min(want)
    }
}

/// One phase of a run: warm-up or measured.
pub(super) struct Phase {
    pub(super) deadline: Instant,
    pub(super) budget: Option<EventBudget>,
    pub(super) id_prefix: String,
}

pub(super) struct PhaseOutcome {
    pub(super) tally: Tally,
    pub(super) budget_spent: bool,
}

pub(super) async fn run_phase(
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

/// Posts requests until the phase's deadline or budget ends.
pub(super) async fn run_worker(
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
                spec.next_player.as_ref(),
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
                    spec.next_player.as_ref(),
                );
                seq += 1;
            }
            body.push_str("]}");
        }

        let request = spec
            .client
            .post(spec.endpoints[index % spec.endpoints.len()].clone())
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
pub(super) fn push_event(
    body: &mut String,
    id_prefix: &str,
    seq: u64,
    occurred_at: &str,
    rng: &mut SplitMix64,
    users: u64,
    next_player: Option<&AtomicU64>,
) {
    let user = match next_player {
        Some(next) => next.fetch_add(1, Ordering::Relaxed),
        None => rng.next() % users,
    };
    let score = 1 + rng.next() % 100;
    push_event_for(body, id_prefix, seq, occurred_at, user, score);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn an_event_is_valid_json_with_the_expected_fields() {
        let mut body = String::new();
        let mut rng = SplitMix64(7);
        push_event(
            &mut body,
            "run-m3",
            42,
            "2026-11-28T00:00:00Z",
            &mut rng,
            10,
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["event_id"], "run-m3-42");
        assert_eq!(v["type"], "match.completed");
        let user = v["actor"]["user_id"].as_str().expect("a user id");
        assert!(user.len() <= 16 && user.starts_with('u'));
        let score = v["attrs"]["score"].as_u64().expect("a score");
        assert!((1..=100).contains(&score));
    }

    #[test]
    pub(super) fn counts_are_read_from_a_batch_answer() {
        let answer = br#"{"accepted":998,"duplicates":2,"rejected":0,"results":[]}"#;
        assert_eq!(count_after(answer, br#""accepted":"#), Some(998));
        assert_eq!(count_after(answer, br#""duplicates":"#), Some(2));
        assert_eq!(count_after(answer, br#""rejected":"#), Some(0));
        assert_eq!(count_after(answer, br#""missing":"#), None);
    }

    #[test]
    pub(super) fn the_budget_hands_out_exactly_the_total() {
        let budget = EventBudget {
            total: 2500,
            claimed: AtomicU64::new(0),
        };
        let claims: Vec<u64> = (0..5).map(|_| budget.claim(1000)).collect();
        assert_eq!(claims, vec![1000, 1000, 500, 0, 0]);
    }

    #[test]
    pub(super) fn only_http_urls_are_taken() {
        assert_eq!(
            base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(base_url("https://example.com").is_err());
        assert!(base_url("not a url").is_err());
    }
}
