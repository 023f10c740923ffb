//! The `phoenix` binary: parses configuration once, sets up logging, opens the store, and runs the
//! server until SIGTERM or Ctrl-C; `phoenix bench` runs a load generator against a running server.
//! Thin by design: everything else lives in the library crates.

mod bench;
mod config;
mod demo;
mod users;

use anyhow::Context;
use clap::Parser;
use config::{Cli, Command, LogFormat, Resolved};
use phoenix_server::Application;
use phoenix_store::RunningStore;
use std::process::ExitCode;
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
    let demo_args = match command {
        // Clients of some server: the server settings (listeners, data dir, ...) are not their concern.
        Command::Bench(bench) => return block_on(bench::run(bench, settings.admin_secret)),
        Command::Users(users) => {
            // The Admin gateway's own listener when it has one, else the combined one.
            let listen = match settings.admin_listen.as_deref().map(str::trim) {
                Some(addr) if !addr.is_empty() && addr != "off" => addr.to_owned(),
                _ => settings.listen,
            };
            return block_on(users::run(users, listen, settings.admin_secret));
        }
        Command::Demo(args) => Some(args),
        Command::Serve => None,
    };
    let mut resolved = match settings.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("phoenix: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match demo_args {
        Some(args) => {
            // The demo shows sign-in for real, keeps its data apart, and logs only what goes wrong
            // (unless PHOENIX_LOG asks for more), so its banner stays readable.
            resolved.server.auth_enabled = true;
            if std::env::var_os("PHOENIX_LOG").is_none() {
                resolved.log = "warn".into();
            }
            init_logging(&resolved);
            block_on(run_demo(resolved, args))
        }
        None => {
            init_logging(&resolved);
            block_on(serve(resolved))
        }
    }
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

async fn serve(mut resolved: Resolved) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(on_shutdown_signal(shutdown.clone())?);
    let mut started = start(resolved.clone()).await?;
    loop {
        // A cluster node that fell behind the log's retained rows (cut off from PostgreSQL for
        // longer than they are kept for it) stops serving, opens the store again (from the newest
        // snapshot) and serves again on the same addresses.
        pin_addresses(&mut resolved.server, &started.app);
        let round = shutdown.child_token();
        let behind = started.store.fell_behind();
        let watcher = tokio::spawn({
            let round = round.clone();
            async move {
                tokio::select! {
                    () = behind => {
                        tracing::warn!("this node fell behind the cluster's log: serving again from the newest snapshot");
                        round.cancel();
                        true
                    }
                    () = round.cancelled() => false,
                }
            }
        });
        run(started, round).await?;
        if !watcher.await.unwrap_or(false) || shutdown.is_cancelled() {
            return Ok(());
        }
        // Tried for a minute (PostgreSQL or Redis may still be coming back); then the process ends
        // with the error, for its supervisor to start it again. (A SIGTERM during an attempt ends
        // it once the snapshot it is loading is in, or the attempt fails.)
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut attempts = 0;
        started = loop {
            attempts += 1;
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                attempt = start(resolved.clone()) => attempt,
            };
            match attempt {
                Ok(started) => break started,
                Err(e) if tokio::time::Instant::now() >= give_up => {
                    return Err(e.context("starting again after falling behind the cluster's log"));
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), attempts, "starting again failed; retrying in 5 s");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        };
    }
}

/// Makes the listeners' settings the addresses `app` bound (a port 0 becomes the port it got), so a
/// server started again listens where clients already connect.
fn pin_addresses(config: &mut phoenix_server::ServerConfig, app: &Application) {
    for (name, addr) in app.addrs() {
        match name {
            "combined" => config.listen = addr,
            "admin" => config.admin_listen = phoenix_server::GatewayListen::Own(addr),
            "ingestion" => config.ingestion_listen = phoenix_server::GatewayListen::Own(addr),
            "query" => config.query_listen = phoenix_server::GatewayListen::Own(addr),
            _ => {}
        }
    }
}

/// `phoenix demo`: a fresh store (removed at exit unless `--demo-dir`), seeded through the API, with
/// players simulated until Ctrl-C.
async fn run_demo(mut resolved: Resolved, args: demo::DemoArgs) -> anyhow::Result<()> {
    let (data_dir, temporary) = match &args.demo_dir {
        Some(dir) => {
            // The demo seeds a fresh store; a kept one is looked at with `phoenix serve --data-dir`.
            let used = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
            if used {
                anyhow::bail!(
                    "--demo-dir: {} is not empty; give a new directory (to look at a kept demo, run `phoenix --data-dir {} serve`)",
                    dir.display(),
                    dir.display()
                );
            }
            (dir.clone(), false)
        }
        None => (
            std::env::temp_dir().join(format!("phoenix-demo-{}", std::process::id())),
            true,
        ),
    };
    resolved.data_dir = data_dir.clone();
    let admin_secret = resolved
        .server
        .admin_secret
        .get_or_insert_with(|| format!("demo-{}", demo::random_password()))
        .clone();
    let started = match start(resolved).await {
        Ok(started) => started,
        Err(e) => {
            if temporary {
                let _ = std::fs::remove_dir_all(&data_dir);
            }
            return Err(e);
        }
    };
    // The console and the API on one origin: the Admin gateway's address (the combined listener
    // unless it has its own).
    let addr = started
        .app
        .addrs()
        .into_iter()
        .find(|(name, _)| *name == "admin")
        .map_or(started.app.addr(), |(_, addr)| addr);
    let base = format!("http://{addr}");
    let shutdown = CancellationToken::new();
    tokio::spawn(on_shutdown_signal(shutdown.clone())?);
    let stop = shutdown.clone();
    let sprint_seconds = args.sprint_seconds;
    let players = tokio::spawn(async move {
        let result = async {
            let access = demo::seed(&base, &admin_secret, sprint_seconds).await?;
            println!("{}", demo::banner(&access, addr)?);
            demo::simulate(&access, args.rate, args.players, stop.clone()).await
        }
        .await;
        if let Err(e) = &result {
            eprintln!("phoenix: {e:#}");
            stop.cancel();
        }
        result
    });
    run(started, shutdown).await?;
    let simulated = players.await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    simulated.context("the demo players stopped unexpectedly")?
}

/// An open store and a bound (not yet serving) server.
struct Started {
    store: RunningStore,
    app: Application,
    shutdown_timeout: Duration,
}

/// Opens the store and binds the listeners.
async fn start(resolved: Resolved) -> anyhow::Result<Started> {
    let config = resolved.server.clone();
    if !config.auth_enabled {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED (PHOENIX_AUTH_ENABLED=false): anyone who can reach this server has full access. Never run this way in production."
        );
    }
    let running = phoenix_store::backend::open(resolved.store_config()).await?;
    tracing::info!(store = running.description(), "store open");
    match serve_on(resolved, config, &running).await {
        Ok((app, shutdown_timeout)) => Ok(Started {
            store: running,
            app,
            shutdown_timeout,
        }),
        Err(e) => {
            // Its background work stopped and its files released (a cluster node's scratch copy),
            // so a start tried again does not leave one behind at each attempt.
            running.close().await;
            Err(e)
        }
    }
}

/// Builds the server on an open store and binds its listeners.
async fn serve_on(
    resolved: Resolved,
    config: phoenix_server::ServerConfig,
    running: &RunningStore,
) -> anyhow::Result<(Application, Duration)> {
    let store = running.store();
    if config.admin_secret.is_none()
        && config.auth_enabled
        && store.list_api_keys().await?.is_empty()
    {
        tracing::warn!(
            "no PHOENIX_ADMIN_SECRET and no API keys yet: set PHOENIX_ADMIN_SECRET to create the first tenant and key"
        );
    }
    let app = Application::build(config, store).await?;
    for (name, addr) in app.addrs() {
        tracing::info!(listener = name, %addr, "listening");
    }
    Ok((app, resolved.shutdown_timeout))
}

/// Serves until `shutdown`, then stops the store's background work (a last snapshot).
async fn run(started: Started, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Started {
        store,
        app,
        shutdown_timeout,
    } = started;
    app.run(shutdown, shutdown_timeout).await;
    store.close().await;
    tracing::info!("stopped; every acknowledged write is durable");
    Ok(())
}

/// Installs the SIGTERM and Ctrl-C handlers now (not when a task first polls them, which can be
/// after the server already answers), and returns the future that cancels `shutdown` on either.
fn on_shutdown_signal(
    shutdown: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
        shutdown.cancel();
    })
}
