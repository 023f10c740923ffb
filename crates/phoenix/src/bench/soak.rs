//! `phoenix bench soak`: a season in minutes. Drives the real embedded store (in this process, no HTTP)
//! through simulated days with a clock the bench moves, and reports what a studio would watch over a
//! season: the whole process's memory, the snapshot's size, the data dir's size, and how long a restart
//! takes, as the days pass. Memory should go flat after the first weeks (bounded by what is live), and
//! disk should be bounded by log retention plus the ended windows kept in cold storage.

use super::client::{SplitMix64, rss_kib, seed};
use anyhow::Context;
use clap::Args;
use jiff::SignedDuration;
use phoenix_core::event::{Event, EventRules};
use phoenix_core::ids::{LeaderboardId, TenantId};
use phoenix_store::embedded::{Clock, EmbeddedOptions};
use phoenix_store::model::{LeaderboardStatus, NewLeaderboard};
use phoenix_store::{EmbeddedStore, IngestStatus, MasterKey, Store};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
#[command(next_help_heading = "Soak options")]
pub struct SoakArgs {
    /// Simulated days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Events accepted per simulated day.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub events_per_day: u64,
    /// Distinct players who play on a given day (drawn from --players).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub players_per_day: u64,
    /// Distinct players over the whole season.
    #[arg(long, default_value_t = 500_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub players: u64,
    /// The boards' IANA time zone (daily, weekly and monthly boards reset at midnight there).
    #[arg(long, default_value = "Europe/Berlin")]
    pub timezone: String,
    /// Share of events sent twice (a retry of an event from up to six days earlier), in percent.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=50))]
    pub retry_percent: u64,
    /// Print a row every this many days.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub report_every: u32,
    /// Restart the store (drop without a final snapshot, as after `kill -9`, and open it again) every
    /// this many days, and time it.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub restart_every: u32,
    /// Log retention of the store, in simulated hours (0 keeps the whole log).
    #[arg(long, default_value_t = 24)]
    pub retention_hours: u64,
    /// Where the soaked store keeps its data (default: a fresh directory under the temp dir, removed
    /// at the end). Never the server's PHOENIX_DATA_DIR.
    #[arg(long = "soak-dir")]
    pub soak_dir: Option<PathBuf>,
    /// Write the chart (SVG) here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

/// One row of the report.
#[derive(Debug, Clone)]
struct Row {
    day: u32,
    events: u64,
    rss_mib: f64,
    snapshot_mib: f64,
    disk_mib: f64,
    /// Seconds to open the store, when it was restarted on this day.
    restart_s: Option<f64>,
    elapsed_s: f64,
}

const BATCH: u64 = 1000;
const HORIZON: SignedDuration = SignedDuration::from_hours(24 * 7);

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let zone = jiff::tz::TimeZone::get(&args.timezone)
        .with_context(|| format!("--timezone: unknown IANA zone '{}'", args.timezone))?;
    let (dir, remove_after) = match &args.soak_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("phoenix-soak-{}", std::process::id())),
            true,
        ),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!("--data-dir {} is not empty", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    // Midnight in the boards' zone, a Monday at the start of a month is not needed: any start works.
    let start = jiff::civil::date(2026, 1, 1)
        .at(0, 0, 0, 0)
        .to_zoned(zone.clone())?
        .timestamp();
    let clock = Clock::manual(start);
    let options = EmbeddedOptions {
        dedupe_horizon: HORIZON,
        log_retention: (args.retention_hours > 0)
            .then(|| Duration::from_secs(args.retention_hours * 3600)),
        clock: clock.clone(),
        ..EmbeddedOptions::default()
    };
    let master = MasterKey::from_hex(&"5a".repeat(32)).context("master key")?;
    let mut store = open(&dir, &master, &options).await?;
    let tenant = "soak";
    store
        .create_tenant(TenantId::parse(tenant)?, "Soak".into(), "s".repeat(32))
        .await?;
    for (id, kind) in [
        ("daily", "daily"),
        ("weekly", "weekly"),
        ("monthly", "monthly"),
    ] {
        // Validated and normalized as the server does before it stores a config.
        let mut timeframe = serde_json::json!({"type": kind, "timezone": args.timezone});
        if kind == "weekly" {
            timeframe["reset_day"] = "monday".into();
        }
        let config = phoenix_core::config::LeaderboardConfig::from_json(&serde_json::json!({
            "timeframe": timeframe,
            "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}]},
            "ranking": {"size": 100_000}
        }))
        .map_err(|e| anyhow::anyhow!("board {id}: {e}"))?;
        store
            .create_leaderboard(NewLeaderboard {
                leaderboard_id: LeaderboardId::parse(id)?,
                tenant_id: TenantId::parse(tenant)?,
                name: id.into(),
                description: None,
                status: LeaderboardStatus::Active,
                config: config.to_json(),
            })
            .await?;
    }

    println!(
        "soak: {} days of {} events ({} players a day of {}), boards daily/weekly/monthly in {}, retention {} h, data dir {}",
        args.days,
        args.events_per_day,
        args.players_per_day,
        args.players,
        args.timezone,
        args.retention_hours,
        dir.display()
    );
    println!("| day | events | RSS MiB | snapshot MiB | disk MiB | restart s | elapsed s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let began = Instant::now();
    let mut rng = SplitMix64(seed());
    let mut rows = Vec::new();
    let mut total = 0u64;
    let mut duplicates_caught = 0u64;
    let day = SignedDuration::from_hours(24);
    let batches = args.events_per_day.div_ceil(BATCH);
    let step = day / batches as i32;
    let mut restart_s = None;
    for d in 1..=args.days {
        let day_start = start + day * (d - 1) as i32;
        // The day's players: a window sliding through the season's population.
        let first_player = (u64::from(d - 1) * args.players_per_day / 2) % args.players;
        for b in 0..batches {
            clock.set(day_start + step * b as i32);
            let now = clock.now();
            let n = (args.events_per_day - b * BATCH).min(BATCH);
            let mut events = Vec::with_capacity(n as usize);
            for i in 0..n {
                let seq = u64::from(d) * 1_000_000_000 + b * BATCH + i;
                let retry = args.retry_percent > 0 && rng.next() % 100 < args.retry_percent;
                // A retry repeats an id from up to six days ago.
                let (id, occurred_at) = if retry && d > 1 {
                    let back = 1 + rng.next() % u64::from((d - 1).min(6));
                    let old_day = u64::from(d) - back;
                    (
                        old_day * 1_000_000_000 + rng.next() % (args.events_per_day.min(BATCH)),
                        now - SignedDuration::from_hours(24 * back as i64),
                    )
                } else {
                    (seq, now)
                };
                let player = (first_player + rng.next() % args.players_per_day) % args.players;
                let value = serde_json::json!({
                    "event_id": format!("e{id}"),
                    "type": "match.completed",
                    "actor": {"user_id": format!("player-{player}")},
                    "occurred_at": occurred_at.to_string(),
                    "attrs": {"score": 1 + rng.next() % 100},
                });
                let event = Event::from_json(
                    &value,
                    EventRules {
                        now,
                        dedupe_horizon: HORIZON,
                    },
                )
                .map_err(|e| anyhow::anyhow!("a generated event is invalid: {e}"))?;
                events.push(event);
            }
            let statuses = store.ingest(tenant, events).await?;
            duplicates_caught += statuses
                .iter()
                .filter(|s| **s == IngestStatus::Duplicate)
                .count() as u64;
            total += n;
            if b % 20 == 19 {
                store.maintain().await?;
            }
        }
        clock.set(day_start + day);
        store.maintain().await?;
        // About what PHOENIX_SNAPSHOT_INTERVAL does on a busy server: a snapshot a few times a day.
        store.checkpoint().await?;
        if d % args.restart_every == 0 {
            let (reopened, took) = restart(store, &dir, &master, &options).await?;
            store = reopened;
            restart_s = Some(took);
        }
        if d % args.report_every == 0 || d == args.days {
            let row = Row {
                day: d,
                events: total,
                rss_mib: rss_kib(std::process::id()).unwrap_or(0) as f64 / 1024.0,
                snapshot_mib: newest_snapshot_bytes(&dir) as f64 / (1 << 20) as f64,
                disk_mib: dir_bytes(&dir) as f64 / (1 << 20) as f64,
                restart_s: restart_s.take(),
                elapsed_s: began.elapsed().as_secs_f64(),
            };
            println!(
                "| {} | {} | {:.0} | {:.1} | {:.0} | {} | {:.0} |",
                row.day,
                row.events,
                row.rss_mib,
                row.snapshot_mib,
                row.disk_mib,
                row.restart_s.map_or("".into(), |s| format!("{s:.2}")),
                row.elapsed_s
            );
            rows.push(row);
        }
    }
    // The end: a restart from the last day's state, as after `kill -9` (no final snapshot).
    let (store, final_restart) = restart(store, &dir, &master, &options).await?;
    let stats = store.stats();
    println!(
        "after {} days: {} events ({} retries caught as duplicates), {} ended windows in cold storage, {} dedupe pieces; restart from the final state took {:.2} s",
        args.days,
        total,
        duplicates_caught,
        count_files(&dir.join("cold"), "win"),
        stats.dedupe_pieces,
        final_restart
    );
    drop(store);
    if let Some(path) = &args.chart {
        std::fs::write(path, chart(&rows, &args))
            .with_context(|| format!("--chart: cannot write {}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    if remove_after {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn open(
    dir: &Path,
    master: &MasterKey,
    options: &EmbeddedOptions,
) -> anyhow::Result<EmbeddedStore> {
    let (dir, master, options) = (dir.to_owned(), master.clone(), options.clone());
    let store =
        tokio::task::spawn_blocking(move || EmbeddedStore::open_with(&dir, master, options))
            .await??;
    store.initialize().await?;
    Ok(store)
}

/// Drops the store without a snapshot and opens it again; returns it and the seconds the open took.
async fn restart(
    store: EmbeddedStore,
    dir: &Path,
    master: &MasterKey,
    options: &EmbeddedOptions,
) -> anyhow::Result<(EmbeddedStore, f64)> {
    drop(store);
    let began = Instant::now();
    let store = open(dir, master, options).await?;
    Ok((store, began.elapsed().as_secs_f64()))
}

fn newest_snapshot_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot-"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .max()
        .map_or(0, |(_, len)| len)
}

/// Every file under `dir`, at any depth, with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) => found.push((entry.path(), meta.len())),
                Err(_) => {}
            }
        }
    }
    found
}

/// Files with extension `ext` under `dir`, at any depth.
fn count_files(dir: &Path, ext: &str) -> usize {
    files(dir)
        .iter()
        .filter(|(path, _)| path.extension().is_some_and(|e| e == ext))
        .count()
}

fn dir_bytes(dir: &Path) -> u64 {
    files(dir).iter().map(|(_, len)| len).sum()
}

/// An SVG line chart of memory and disk over the simulated days, restart times as labelled marks.
fn chart(rows: &[Row], args: &SoakArgs) -> String {
    const W: f64 = 760.0;
    const H: f64 = 360.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;
    let days = f64::from(args.days.max(1));
    let top = rows
        .iter()
        .map(|r| r.rss_mib.max(r.disk_mib))
        .fold(1.0, f64::max)
        * 1.1;
    let x = |day: u32| LEFT + f64::from(day) / days * (W - LEFT - RIGHT);
    let y = |mib: f64| H - BOTTOM - mib / top * (H - TOP - BOTTOM);
    let line = |pick: &dyn Fn(&Row) -> f64| {
        rows.iter()
            .map(|r| format!("{:.1},{:.1}", x(r.day), y(pick(r))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="14">phoenix bench soak: {} days × {} events/day, {} players/day ({})</text>"#,
        args.days, args.events_per_day, args.players_per_day, args.timezone
    );
    // Axes and grid.
    for i in 0..=4 {
        let mib = top * f64::from(i) / 4.0;
        let yy = y(mib);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{mib:.0}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    for i in 0..=4 {
        let day = (f64::from(args.days) * f64::from(i) / 4.0).round() as u32;
        let xx = x(day);
        let _ = writeln!(
            svg,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">day {day}</text>"#,
            H - BOTTOM + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">MiB</text>"#,
        H / 2.0,
        H / 2.0
    );
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"{}\"/>",
        line(&|r| r.rss_mib)
    );
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>",
        line(&|r| r.disk_mib)
    );
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"2\" stroke-dasharray=\"4 3\" points=\"{}\"/>",
        line(&|r| r.snapshot_mib)
    );
    for r in rows {
        if let Some(s) = r.restart_s {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#d62728\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{s:.1}s</text>",
                x(r.day),
                y(r.rss_mib),
                x(r.day),
                y(r.rss_mib) - 8.0
            );
        }
    }
    let legend = [
        ("#d62728", "process RSS (labels: restart time)"),
        ("#1f77b4", "data dir on disk"),
        ("#2ca02c", "newest snapshot"),
    ];
    for (i, (color, label)) in legend.iter().enumerate() {
        let lx = LEFT + 10.0 + i as f64 * 230.0;
        let ly = H - 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">{label}</text>"#,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0,
            lx + 26.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
