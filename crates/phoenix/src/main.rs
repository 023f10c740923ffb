//! The `phoenix` binary: parses configuration once, sets up logging, opens the store, and runs the
//! server until SIGTERM or Ctrl-C; `phoenix bench` runs a load generator against a running server.
//! Thin by design: everything else lives in the library crates.

mod bench;
mod config;

use anyhow::Context;
use clap::Parser;
use config::{Cli, Command, LogFormat, Resolved};
use phoenix_server::Application;
use phoenix_store::embedded::EmbeddedOptions;
use phoenix_store::{EmbeddedStore, MasterKey};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// mimalloc rather than the system allocator: the ingest path allocates many small, short-lived JSON
/// nodes, and measured throughput rose by about 40% with it (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `.env` fills in what the environment does not set; the real environment wins.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("phoenix: invalid configuration: .env: {e}");
        return ExitCode::from(2);
    }
    let Cli { settings, command } = Cli::parse();
    if let Command::Bench(bench) = command {
        // A client of some server: the server settings (listeners, data dir, ...) are not its concern.
        return block_on(bench::run(bench, settings.admin_secret));
    }
    let resolved = match settings.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("phoenix: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&resolved);
    block_on(serve(resolved))
}

/// Runs `task` on a multi-threaded runtime; an error becomes one line on stderr and exit status 1.
fn block_on(task: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("phoenix: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phoenix: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(resolved: &Resolved) {
    let filter = tracing_subscriber::EnvFilter::try_new(&resolved.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match resolved.log_format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

async fn serve(resolved: Resolved) -> anyhow::Result<()> {
    let config = resolved.server.clone();
    if !config.auth_enabled {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED (PHOENIX_AUTH_ENABLED=false): anyone who can reach this server has full access. Never run this way in production."
        );
    }
    let data_dir = resolved.data_dir.clone();
    let master_key = resolved.master_key.clone();
    let horizon = config.dedupe_horizon;
    // Opening replays the journal: blocking file work, kept off the async workers.
    let store = tokio::task::spawn_blocking(move || -> anyhow::Result<EmbeddedStore> {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("PHOENIX_DATA_DIR: cannot create {}", data_dir.display()))?;
        let key = match master_key {
            Some(k) => k,
            None => MasterKey::load_or_create(&data_dir).context("PHOENIX_MASTER_KEY")?,
        };
        Ok(EmbeddedStore::open_with(
            &data_dir,
            key,
            EmbeddedOptions {
                dedupe_horizon: horizon,
            },
        )?)
    })
    .await
    .context("opening the store")??;
    store.initialize().await?;
    let store = Arc::new(store);
    tracing::info!(data_dir = %resolved.data_dir.display(), "embedded store open");
    if config.admin_secret.is_none() && config.auth_enabled {
        use phoenix_store::Store;
        if store.list_api_keys().await?.is_empty() {
            tracing::warn!(
                "no PHOENIX_ADMIN_SECRET and no API keys yet: set PHOENIX_ADMIN_SECRET to create the first tenant and key"
            );
        }
    }
    let app = Application::build(config, store.clone()).await?;
    for (name, addr) in app.addrs() {
        tracing::info!(listener = name, %addr, "listening");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let snapshots = tokio::spawn(take_snapshots(
        store.clone(),
        resolved.snapshot_interval,
        shutdown.clone(),
    ));
    app.run(shutdown, resolved.shutdown_timeout).await;
    let _ = snapshots.await;
    // A last snapshot makes the next start quick; correctness never depends on it.
    if store.events_since_snapshot() > 0
        && let Err(e) = store.checkpoint().await
    {
        tracing::warn!(error = %e, "final snapshot failed; the next start replays more of the log");
    }
    tracing::info!("stopped; every acknowledged write is on disk");
    Ok(())
}

/// Snapshots the store every `interval` when anything changed, and after every million events.
async fn take_snapshots(
    store: Arc<EmbeddedStore>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    const EVENTS_PER_SNAPSHOT: u64 = 1_000_000;
    let tick = Duration::from_secs(5).min(interval);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        let pending = store.events_since_snapshot();
        if pending >= EVENTS_PER_SNAPSHOT || (pending > 0 && last.elapsed() >= interval) {
            if let Err(e) = store.checkpoint().await {
                tracing::warn!(error = %e, "snapshot failed; will retry");
            }
            last = tokio::time::Instant::now();
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
