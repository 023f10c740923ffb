//! `phoenix bench`: load generators for a running server and a soak of the store itself. One file
//! per bench; `client` holds what they share to talk to a server (tenants, JWTs, events, timings) and
//! `report` how they print results.

use clap::Subcommand;

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
    /// Run the embedded store through a simulated season and report memory, disk and restart time.
    ///
    /// Needs no server: opens a store in --soak-dir (default: a fresh temp dir, removed after) with a
    /// clock the bench moves, creates daily, weekly and monthly boards in --timezone, and feeds
    /// --events-per-day events a day for --days days (--players-per-day players a day drawn from
    /// --players, --retry-percent of them retries of ids from up to six days earlier), running the
    /// store's housekeeping and a snapshot each day. Prints a table every --report-every days (whole
    /// process RSS, newest snapshot, data dir size, restart time every --restart-every days) and the
    /// restart time from the final state; --chart writes the curves as SVG.
    #[command(verbatim_doc_comment)]
    Soak(soak::SoakArgs),
    /// Measure the rewards ledger: settlements, `GET /v1/rewards` with millions of grants, redemptions.
    ///
    /// Needs no server: opens a store in --bench-dir (default: a fresh temp dir, removed after) with a
    /// clock the bench moves, loads --players players into a window with a three-tier rule and into
    /// --windows windows whose rule gives every player --rewards rewards, ends them all, and settles
    /// each by hand, timing it (and, during the first large one, how long events written meanwhile
    /// wait). Then it serves the store over HTTP in this process and measures `GET /v1/rewards` for
    /// random players (--reads per kind, --concurrency clients) and --redemptions redemptions of a
    /// shared code by as many players. Prints the whole process's memory and the ledger's size.
    #[command(verbatim_doc_comment)]
    Rewards(rewards::RewardsArgs),
    /// Measure the webhook outbox and deliveries: messages waiting while a receiver is down, then
    /// deliveries per second to a local receiver.
    ///
    /// Needs no server: opens a store in --bench-dir (default: a fresh temp dir, removed after),
    /// settles a window whose rule grants each of --messages players one reward, with a webhook for
    /// `reward.granted` whose receiver is down for --down-seconds (attempts fail and are rescheduled),
    /// reporting the whole process's memory and the ledger's size; then starts the receiver on
    /// loopback and times the delivery of every message.
    #[command(verbatim_doc_comment)]
    Webhooks(webhooks::WebhooksArgs),
}

mod attack;
mod client;
mod floor;
mod ingest;
mod query;
mod report;
mod rewards;
mod soak;
mod webhooks;
mod ws;

pub use ingest::IngestArgs;

/// Runs one bench subcommand; `admin_secret` is the global `--admin-secret` / `PHOENIX_ADMIN_SECRET`.
pub async fn run(command: BenchCommand, admin_secret: Option<String>) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(args, admin_secret).await,
        BenchCommand::Query(args) => query::run(args, admin_secret).await,
        BenchCommand::Ws(args) => ws::run(args, admin_secret).await,
        BenchCommand::SendFloor(args) => floor::run(args).await,
        BenchCommand::Attack(args) => attack::run(args).await,
        BenchCommand::Soak(args) => soak::run(args).await,
        BenchCommand::Rewards(args) => rewards::run(args).await,
        BenchCommand::Webhooks(args) => webhooks::run(args).await,
    }
}
