//! Configuration: every setting of SPEC §1 as a global flag, an environment variable and a `.env` entry,
//! parsed once into typed values. A bad value stops start-up with one line naming the variable.

use crate::bench::BenchCommand;
use clap::{Args, Parser, Subcommand};
use jiff::SignedDuration;
use phoenix_server::{GatewayListen, ServerConfig};
use phoenix_store::MasterKey;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Phoenix: real-time leaderboards and rewards for games.
#[derive(Debug, Parser)]
#[command(name = "phoenix", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Admin, Ingestion and Query gateways.
    Serve,
    /// Run a demo: the server on a fresh embedded store with a demo tenant, leaderboards, console
    /// logins and simulated players sending events; prints where to look and what to paste.
    Demo(crate::demo::DemoArgs),
    /// Manage console users on a running server (with the admin secret).
    #[command(subcommand)]
    Users(crate::users::UsersCommand),
    /// Load generators that drive a running server over HTTP.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Raw settings as given; `Settings::resolve` checks them.
#[derive(Debug, Args)]
pub struct Settings {
    /// Address of the combined listener.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// Give the Admin gateway its own listener (an address), or `off`.
    #[arg(long, global = true, env = "PHOENIX_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Give the Ingestion gateway its own listener (an address), or `off`.
    #[arg(long, global = true, env = "PHOENIX_INGESTION_LISTEN")]
    pub ingestion_listen: Option<String>,
    /// Give the Query gateway its own listener (an address), or `off`.
    #[arg(long, global = true, env = "PHOENIX_QUERY_LISTEN")]
    pub query_listen: Option<String>,
    /// Embedded store directory (the zero-setup default).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_DATA_DIR",
        default_value = "./phoenix-data"
    )]
    pub data_dir: PathBuf,
    /// postgres://... : cluster mode's system of record (with PHOENIX_REDIS_URL and PHOENIX_MASTER_KEY).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// redis://... : cluster mode's shared hot state (with PHOENIX_DATABASE_URL and PHOENIX_MASTER_KEY).
    #[arg(long, global = true, env = "PHOENIX_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// PEM file of the CA(s) a rediss:// Redis's certificate is checked against (instead of the
    /// bundled Mozilla roots): for a Redis behind a private CA.
    #[arg(long, global = true, env = "PHOENIX_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// System admin secret: full Admin access.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_ADMIN_SECRET",
        hide_env_values = true
    )]
    pub admin_secret: Option<String>,
    /// 64 hex characters sealing stored secrets [default: generated in the data dir on first start].
    #[arg(
        long,
        global = true,
        env = "PHOENIX_MASTER_KEY",
        hide_env_values = true
    )]
    pub master_key: Option<String>,
    /// `false` = unauthenticated development mode.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_AUTH_ENABLED",
        default_value = "true"
    )]
    pub auth_enabled: String,
    /// Allow development mode (`PHOENIX_AUTH_ENABLED=false`) on a non-loopback address.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_ALLOW_UNAUTHENTICATED_PUBLIC",
        default_value = "false"
    )]
    pub allow_unauthenticated_public: String,
    /// Let webhook URLs name loopback, private and link-local addresses (local development).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_WEBHOOK_ALLOW_PRIVATE",
        default_value = "false"
    )]
    pub webhook_allow_private: String,
    /// Waits between a webhook message's attempts, comma-separated (e.g. `1s,5s`); after the last
    /// one a message that still fails is `failed`.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_WEBHOOK_RETRY_SCHEDULE",
        default_value = "5s,30s,2m,10m,1h,6h,24h"
    )]
    pub webhook_retry_schedule: String,
    /// Lifetime of a console access token (e.g. `15m`, `1h`, or seconds).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_ACCESS_TOKEN_TTL",
        default_value = "15m"
    )]
    pub access_token_ttl: String,
    /// Lifetime of a console refresh token (e.g. `7d`, `12h`, or seconds).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_REFRESH_TOKEN_TTL",
        default_value = "7d"
    )]
    pub refresh_token_ttl: String,
    /// Log filter (e.g. `info`, `phoenix=debug,tower_http=info`).
    #[arg(long, global = true, env = "PHOENIX_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `pretty` or `json`.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: String,
    /// Largest accepted request body in bytes (larger is 413).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_MAX_BODY_BYTES",
        default_value = "1048576"
    )]
    pub max_body_bytes: String,
    /// How long a rotated-out tenant secret keeps working, in seconds.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_SECRET_GRACE_SECONDS",
        default_value = "86400"
    )]
    pub secret_grace_seconds: String,
    /// Events older than this are refused; within it, event ids are deduplicated (e.g. `7d`, `36h`, `3600`).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_DEDUPE_HORIZON",
        default_value = "7d"
    )]
    pub dedupe_horizon: String,
    /// How often the embedded store snapshots its state (when it changed), so a restart replays only the
    /// log after the snapshot; it also snapshots after every million events.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_SNAPSHOT_INTERVAL",
        default_value = "5m"
    )]
    pub snapshot_interval: String,
    /// How long log segments are kept after a snapshot covers them (e.g. `24h`, `7d`); `0` keeps the
    /// whole log. Disk for the log is about retention × event rate × ~115 bytes.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_LOG_RETENTION",
        default_value = "24h"
    )]
    pub log_retention: String,
    /// Bytes of ended windows' standings kept in memory after they are read from cold storage.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_COLD_CACHE_BYTES",
        default_value = "67108864"
    )]
    pub cold_cache_bytes: String,
    /// How long shutdown waits for in-flight requests, in seconds.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_SHUTDOWN_TIMEOUT_SECONDS",
        default_value = "30"
    )]
    pub shutdown_timeout_seconds: String,
    /// Least time between two WebSocket updates to one client, in milliseconds (0 = send each change
    /// as soon as it is scored).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_WS_COALESCE_MS",
        default_value = "100"
    )]
    pub ws_coalesce_ms: String,
    /// A WebSocket whose client sends nothing, not even a pong, for this long is closed (4408);
    /// quiet sockets are pinged at a third of it.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_WS_PEER_TIMEOUT",
        default_value = "90s"
    )]
    pub ws_peer_timeout: String,
    /// Time from accepting a connection (or the first byte of a later request) to its complete headers.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_HEADER_TIMEOUT",
        default_value = "10s"
    )]
    pub header_timeout: String,
    /// How long a kept-alive connection may wait for its next request.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_IDLE_TIMEOUT",
        default_value = "60s"
    )]
    pub idle_timeout: String,
    /// How long a request body may take to arrive.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_BODY_TIMEOUT",
        default_value = "30s"
    )]
    pub body_timeout: String,
    /// Open HTTP connections across listeners; when reached, the oldest one without a complete request
    /// is closed to make room.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_MAX_CONNECTIONS",
        default_value = "4096"
    )]
    pub max_connections: String,
    /// Open WebSockets; beyond it an upgrade is 503.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_MAX_WEBSOCKETS",
        default_value = "10000"
    )]
    pub max_websockets: String,
    /// Bytes of request bodies held in memory at once, process-wide (at least PHOENIX_MAX_BODY_BYTES).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_BODY_BUFFER_BYTES",
        default_value = "67108864"
    )]
    pub body_buffer_bytes: String,
    /// `true` behind a TLS-terminating proxy: console cookies are always `Secure` and browser origins
    /// are expected as `https://` (otherwise both follow `X-Forwarded-Proto` and loopback).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_SECURE_COOKIES",
        default_value = "false"
    )]
    pub secure_cookies: String,
    /// Cluster mode: every request first waits until this node has applied the cluster's log up to its
    /// head, so a client reads its own writes on any node (one PostgreSQL round trip per request).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_CONSISTENT_READS",
        default_value = "false"
    )]
    pub consistent_reads: String,
    /// Default events per second per tenant (every event of a batch counts); 0 = unlimited.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_TENANT_EVENTS_PER_SECOND",
        default_value = "0"
    )]
    pub tenant_events_per_second: String,
    /// Default reads per second per tenant (every /v1 read, WebSocket upgrade and client message);
    /// 0 = unlimited.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_TENANT_READS_PER_SECOND",
        default_value = "0"
    )]
    pub tenant_reads_per_second: String,
    /// Default requests per second per player (a tenant JWT's `sub`); 0 = unlimited.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_PLAYER_REQUESTS_PER_SECOND",
        default_value = "0"
    )]
    pub player_requests_per_second: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Checked settings.
#[derive(Clone)]
pub struct Resolved {
    pub server: ServerConfig,
    pub data_dir: PathBuf,
    pub master_key: Option<MasterKey>,
    pub log: String,
    pub log_format: LogFormat,
    pub shutdown_timeout: std::time::Duration,
    pub snapshot_interval: std::time::Duration,
    /// `None`: keep the whole log.
    pub log_retention: Option<std::time::Duration>,
    pub cold_cache_bytes: usize,
    /// Cluster mode (both URLs given).
    pub cluster: Option<ClusterUrls>,
}

/// Where a cluster node finds PostgreSQL and Redis. Never logged (the URLs may hold passwords).
#[derive(Clone)]
pub struct ClusterUrls {
    pub database_url: String,
    pub redis_url: String,
    /// The PEM of `PHOENIX_REDIS_CA_FILE`, read at start.
    pub redis_ca: Option<Vec<u8>>,
}

/// A configuration error: one line naming the variable.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::error::Error for ConfigError {}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(var: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{var}: {msg}"))
}

/// Reads `PHOENIX_REDIS_CA_FILE`: PEM certificates (checked again, fully, when Redis is reached).
fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    let var = "PHOENIX_REDIS_CA_FILE";
    let pem = std::fs::read(path).map_err(|e| bad(var, format!("{}: {e}", path.display())))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(bad(
            var,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(pem)
}

fn parse_addr(var: &str, raw: &str) -> Result<SocketAddr, ConfigError> {
    raw.trim().parse().map_err(|_| {
        bad(
            var,
            format!("'{raw}' is not a socket address (expected e.g. 127.0.0.1:8080)"),
        )
    })
}

fn parse_gateway(var: &str, raw: &Option<String>) -> Result<GatewayListen, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(GatewayListen::Combined),
        Some("off") => Ok(GatewayListen::Off),
        Some(addr) => parse_addr(var, addr).map(GatewayListen::Own),
    }
}

fn parse_bool(var: &str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(bad(var, format!("'{raw}' is not true or false"))),
    }
}

/// `<n>` seconds, or `<n>s`, `<n>m`, `<n>h`, `<n>d`.
fn parse_duration(var: &str, raw: &str) -> Result<SignedDuration, ConfigError> {
    let raw_trim = raw.trim();
    let (digits, unit) = match raw_trim.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&raw_trim[..i], c),
        _ => (raw_trim, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    match digits.parse::<i64>() {
        Ok(n) if scale > 0 && n > 0 && n <= 3650 * 86_400 / scale => {
            Ok(SignedDuration::from_secs(n * scale))
        }
        _ => Err(bad(
            var,
            format!("'{raw}' is not a duration (e.g. 7d, 36h, 90m or seconds)"),
        )),
    }
}

fn parse_u64(var: &str, raw: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match raw.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(
            var,
            format!("'{raw}' is not a whole number between {min} and {max}"),
        )),
    }
}

/// Development mode answers anyone without credentials, so it stays on this machine unless forced.
fn refuse_public_dev_mode(server: &ServerConfig) -> Result<(), ConfigError> {
    let own = [
        ("PHOENIX_ADMIN_LISTEN", server.admin_listen),
        ("PHOENIX_INGESTION_LISTEN", server.ingestion_listen),
        ("PHOENIX_QUERY_LISTEN", server.query_listen),
    ]
    .into_iter()
    .filter_map(|(var, g)| match g {
        GatewayListen::Own(addr) => Some((var, addr)),
        _ => None,
    });
    for (var, addr) in std::iter::once(("PHOENIX_LISTEN", server.listen)).chain(own) {
        if !addr.ip().is_loopback() {
            return Err(bad(
                "PHOENIX_AUTH_ENABLED",
                format!(
                    "development mode (false) serves without credentials, so it only listens on loopback, but {var} is {addr}; use 127.0.0.1, or set PHOENIX_ALLOW_UNAUTHENTICATED_PUBLIC=true to force it"
                ),
            ));
        }
    }
    Ok(())
}

impl Settings {
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let cluster = match (given(&self.database_url), given(&self.redis_url)) {
            (None, None) if self.redis_ca_file.is_none() => None,
            (Some(_), None) => {
                return Err(bad(
                    "PHOENIX_DATABASE_URL",
                    "cluster mode needs PHOENIX_REDIS_URL as well; set both (or neither, for the embedded store)",
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "PHOENIX_REDIS_URL",
                    "cluster mode needs PHOENIX_DATABASE_URL as well; set both (or neither, for the embedded store)",
                ));
            }
            (Some(db), Some(redis)) => {
                if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
                    return Err(bad("PHOENIX_DATABASE_URL", "must be a postgres:// URL"));
                }
                if !(redis.starts_with("redis://") || redis.starts_with("rediss://")) {
                    return Err(bad("PHOENIX_REDIS_URL", "must be a redis:// URL"));
                }
                let redis_ca = match &self.redis_ca_file {
                    None => None,
                    Some(_) if !redis.starts_with("rediss://") => {
                        return Err(bad(
                            "PHOENIX_REDIS_CA_FILE",
                            "needs a rediss:// PHOENIX_REDIS_URL (TLS)",
                        ));
                    }
                    Some(_) if redis.ends_with("#insecure") => {
                        return Err(bad(
                            "PHOENIX_REDIS_CA_FILE",
                            "a PHOENIX_REDIS_URL ending in #insecure checks no certificate: drop one of them",
                        ));
                    }
                    Some(path) => Some(read_pem(path)?),
                };
                Some(ClusterUrls {
                    database_url: db.to_owned(),
                    redis_url: redis.to_owned(),
                    redis_ca,
                })
            }
            (None, None) => {
                return Err(bad(
                    "PHOENIX_REDIS_CA_FILE",
                    "is for cluster mode: set PHOENIX_DATABASE_URL and a rediss:// PHOENIX_REDIS_URL too",
                ));
            }
        };
        let listen = parse_addr("PHOENIX_LISTEN", &self.listen)?;
        let mut server = ServerConfig::new(listen);
        server.admin_listen = parse_gateway("PHOENIX_ADMIN_LISTEN", &self.admin_listen)?;
        server.ingestion_listen =
            parse_gateway("PHOENIX_INGESTION_LISTEN", &self.ingestion_listen)?;
        server.query_listen = parse_gateway("PHOENIX_QUERY_LISTEN", &self.query_listen)?;
        server.admin_secret = match self.admin_secret.as_deref() {
            None | Some("") => None,
            Some(s) if s.len() < 16 => {
                return Err(bad(
                    "PHOENIX_ADMIN_SECRET",
                    "must be at least 16 characters long",
                ));
            }
            Some(s) => Some(s.to_owned()),
        };
        server.auth_enabled = parse_bool("PHOENIX_AUTH_ENABLED", &self.auth_enabled)?;
        let allow_public = parse_bool(
            "PHOENIX_ALLOW_UNAUTHENTICATED_PUBLIC",
            &self.allow_unauthenticated_public,
        )?;
        if !server.auth_enabled && !allow_public {
            refuse_public_dev_mode(&server)?;
        }
        server.allow_unauthenticated_public = allow_public;
        server.access_token_ttl =
            parse_duration("PHOENIX_ACCESS_TOKEN_TTL", &self.access_token_ttl)?;
        server.refresh_token_ttl =
            parse_duration("PHOENIX_REFRESH_TOKEN_TTL", &self.refresh_token_ttl)?;
        if server.refresh_token_ttl < server.access_token_ttl {
            return Err(bad(
                "PHOENIX_REFRESH_TOKEN_TTL",
                "must not be shorter than PHOENIX_ACCESS_TOKEN_TTL",
            ));
        }
        server.max_body_bytes = parse_u64(
            "PHOENIX_MAX_BODY_BYTES",
            &self.max_body_bytes,
            1024,
            64 << 20,
        )? as usize;
        server.secret_grace = SignedDuration::from_secs(parse_u64(
            "PHOENIX_SECRET_GRACE_SECONDS",
            &self.secret_grace_seconds,
            0,
            30 * 86_400,
        )? as i64);
        server.dedupe_horizon = parse_duration("PHOENIX_DEDUPE_HORIZON", &self.dedupe_horizon)?;
        let snapshot_interval =
            parse_duration("PHOENIX_SNAPSHOT_INTERVAL", &self.snapshot_interval)?.unsigned_abs();
        let cold_cache_bytes = parse_u64(
            "PHOENIX_COLD_CACHE_BYTES",
            &self.cold_cache_bytes,
            0,
            1 << 40,
        )? as usize;
        let log_retention = match self.log_retention.trim() {
            "0" => None,
            raw => Some(parse_duration("PHOENIX_LOG_RETENTION", raw)?.unsigned_abs()),
        };
        server.ws_coalesce = std::time::Duration::from_millis(parse_u64(
            "PHOENIX_WS_COALESCE_MS",
            &self.ws_coalesce_ms,
            0,
            60_000,
        )?);
        server.ws_peer_timeout =
            parse_duration("PHOENIX_WS_PEER_TIMEOUT", &self.ws_peer_timeout)?.unsigned_abs();
        server.header_timeout =
            parse_duration("PHOENIX_HEADER_TIMEOUT", &self.header_timeout)?.unsigned_abs();
        server.idle_timeout =
            parse_duration("PHOENIX_IDLE_TIMEOUT", &self.idle_timeout)?.unsigned_abs();
        server.body_timeout =
            parse_duration("PHOENIX_BODY_TIMEOUT", &self.body_timeout)?.unsigned_abs();
        server.max_connections = parse_u64(
            "PHOENIX_MAX_CONNECTIONS",
            &self.max_connections,
            1,
            1_000_000,
        )? as usize;
        server.max_websockets =
            parse_u64("PHOENIX_MAX_WEBSOCKETS", &self.max_websockets, 0, 1_000_000)? as usize;
        server.body_buffer_bytes = parse_u64(
            "PHOENIX_BODY_BUFFER_BYTES",
            &self.body_buffer_bytes,
            server.max_body_bytes as u64,
            1 << 40,
        )? as usize;
        server.force_secure_cookies = parse_bool("PHOENIX_SECURE_COOKIES", &self.secure_cookies)?;
        server.consistent_reads = parse_bool("PHOENIX_CONSISTENT_READS", &self.consistent_reads)?;
        server.webhook_allow_private =
            parse_bool("PHOENIX_WEBHOOK_ALLOW_PRIVATE", &self.webhook_allow_private)?;
        server.webhook_retry_schedule =
            phoenix_core::webhook::parse_retry_schedule(&self.webhook_retry_schedule)
                .map_err(|e| bad("PHOENIX_WEBHOOK_RETRY_SCHEDULE", &e))?;
        let rate = |var: &str, raw: &str| parse_u64(var, raw, 0, 10_000_000).map(|n| n as u32);
        server.rate_limits = phoenix_server::ratelimit::DefaultRateLimits {
            events_per_second: rate(
                "PHOENIX_TENANT_EVENTS_PER_SECOND",
                &self.tenant_events_per_second,
            )?,
            reads_per_second: rate(
                "PHOENIX_TENANT_READS_PER_SECOND",
                &self.tenant_reads_per_second,
            )?,
            player_requests_per_second: rate(
                "PHOENIX_PLAYER_REQUESTS_PER_SECOND",
                &self.player_requests_per_second,
            )?,
        };
        let shutdown_timeout = std::time::Duration::from_secs(parse_u64(
            "PHOENIX_SHUTDOWN_TIMEOUT_SECONDS",
            &self.shutdown_timeout_seconds,
            0,
            3600,
        )?);
        let master_key = match self.master_key.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(
                MasterKey::from_hex(raw)
                    .map_err(|_| bad("PHOENIX_MASTER_KEY", "must be 64 hex characters"))?,
            ),
        };
        if cluster.is_some() && master_key.is_none() {
            return Err(bad(
                "PHOENIX_MASTER_KEY",
                "required in cluster mode (there is no data dir to keep it in): 64 hex characters, the same on every node",
            ));
        }
        let log_format = match self.log_format.trim() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "PHOENIX_LOG_FORMAT",
                    format!("'{other}' is not pretty or json"),
                ));
            }
        };
        tracing_subscriber::EnvFilter::try_new(&self.log).map_err(|e| {
            bad(
                "PHOENIX_LOG",
                format!("'{}' is not a log filter: {e}", self.log),
            )
        })?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("PHOENIX_DATA_DIR", "must not be empty"));
        }
        Ok(Resolved {
            server,
            data_dir: self.data_dir.clone(),
            master_key,
            log: self.log.clone(),
            log_format,
            shutdown_timeout,
            snapshot_interval,
            log_retention,
            cold_cache_bytes,
            cluster,
        })
    }
}

impl Resolved {
    /// What the store crate needs to open the backend this configuration asks for.
    pub fn store_config(&self) -> phoenix_store::StoreConfig {
        let options = phoenix_store::embedded::EmbeddedOptions {
            dedupe_horizon: self.server.dedupe_horizon,
            log_retention: self.log_retention,
            cold_cache_bytes: self.cold_cache_bytes,
            ..phoenix_store::embedded::EmbeddedOptions::default()
        };
        let backend = match (&self.cluster, &self.master_key) {
            (Some(urls), Some(key)) => phoenix_store::BackendConfig::Cluster {
                database_url: urls.database_url.clone(),
                redis_url: urls.redis_url.clone(),
                redis_ca: urls.redis_ca.clone(),
                master_key: key.clone(),
                options,
            },
            _ => phoenix_store::BackendConfig::Embedded {
                data_dir: self.data_dir.clone(),
                master_key: self.master_key.clone(),
                options,
            },
        };
        phoenix_store::StoreConfig {
            backend,
            snapshot_interval: self.snapshot_interval,
        }
    }
}
