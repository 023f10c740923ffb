//! `AppState`: what every handler shares: the store, the server's settings, the draining flag raised at
//! shutdown, and the count of open WebSockets (which shutdown waits for).

use jiff::SignedDuration;
use phoenix_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where a gateway listens: on the combined listener, on its own address, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayListen {
    Combined,
    Own(SocketAddr),
    Off,
}

/// The server's settings, parsed once at start-up by the binary.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: GatewayListen,
    pub ingestion_listen: GatewayListen,
    pub query_listen: GatewayListen,
    pub admin_secret: Option<String>,
    pub auth_enabled: bool,
    pub max_body_bytes: usize,
    /// How long a rotated-out tenant secret keeps working.
    pub secret_grace: SignedDuration,
    /// Clock leeway for JWT `exp`/`iat`/`nbf` (at most 60 s).
    pub jwt_leeway_secs: u64,
    /// Accepted distance of an HMAC `X-Timestamp` from now.
    pub hmac_window_secs: i64,
    /// Events older than this are refused; within it, event ids are deduplicated (SPEC §5).
    pub dedupe_horizon: SignedDuration,
    /// Least time between two WebSocket updates to one client (SPEC §6.1: 100 ms); zero sends each change.
    pub ws_coalesce: Duration,
    /// How long one WebSocket send may wait for a slow client before it is closed with 1013.
    pub ws_send_timeout: Duration,
    /// A WebSocket whose client sends nothing (not even the pong every client answers a ping with)
    /// for this long is closed; idle sockets are pinged at a third of it.
    pub ws_peer_timeout: Duration,
    /// Lifetime of a console access token (SPEC §3.6: 15 min).
    pub access_token_ttl: SignedDuration,
    /// Lifetime of a console refresh token (SPEC §3.6: 7 days).
    pub refresh_token_ttl: SignedDuration,
    /// From accepting a connection (or the first byte of a later request) to its complete headers.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// Open HTTP connections, across listeners; when reached, the oldest without a request is shed.
    pub max_connections: usize,
    /// Open WebSockets; beyond it an upgrade is 503.
    pub max_websockets: usize,
    /// Bytes of request bodies held at once, process-wide.
    pub body_buffer_bytes: usize,
    /// Behind a TLS proxy: cookies are always `Secure` and the request's scheme is `https`.
    pub force_secure_cookies: bool,
    /// Default rate limits (SPEC §8); a tenant's own override them.
    pub rate_limits: crate::ratelimit::DefaultRateLimits,
    /// Development mode was forced onto a non-loopback address
    /// (`PHOENIX_ALLOW_UNAUTHENTICATED_PUBLIC`): any `Host` is answered (an `Origin` must still be
    /// the server's own).
    pub allow_unauthenticated_public: bool,
    /// Webhook URLs may name loopback, private and link-local addresses
    /// (`PHOENIX_WEBHOOK_ALLOW_PRIVATE`, for local development and tests).
    pub webhook_allow_private: bool,
    /// Waits between a webhook message's attempts (`PHOENIX_WEBHOOK_RETRY_SCHEDULE`); after the last,
    /// a failed message is `failed`.
    pub webhook_retry_schedule: Vec<Duration>,
    /// How long one delivery attempt may take (SPEC §7.6: 10 s).
    pub webhook_timeout: Duration,
    /// In a cluster, every request first waits until this node has applied the log up to its head
    /// (`PHOENIX_CONSISTENT_READS`): a client then reads its own acknowledged writes on any node, at
    /// the cost of one PostgreSQL round trip per request. Off, another node's writes show within
    /// the replication lag (SPEC §9: under one second). Nothing on one node.
    pub consistent_reads: bool,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("ingestion_listen", &self.ingestion_listen)
            .field("query_listen", &self.query_listen)
            .field("admin_secret", &self.admin_secret.as_ref().map(|_| "<set>"))
            .field("auth_enabled", &self.auth_enabled)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// Defaults of SPEC §1 with the given combined listener (tests use `127.0.0.1:0`).
    pub fn new(listen: SocketAddr) -> Self {
        ServerConfig {
            listen,
            admin_listen: GatewayListen::Combined,
            ingestion_listen: GatewayListen::Combined,
            query_listen: GatewayListen::Combined,
            admin_secret: None,
            auth_enabled: true,
            max_body_bytes: 1 << 20,
            secret_grace: SignedDuration::from_hours(24),
            jwt_leeway_secs: 30,
            hmac_window_secs: 300,
            dedupe_horizon: SignedDuration::from_hours(24 * 7),
            ws_coalesce: Duration::from_millis(100),
            ws_send_timeout: Duration::from_secs(5),
            ws_peer_timeout: Duration::from_secs(90),
            access_token_ttl: SignedDuration::from_mins(15),
            refresh_token_ttl: SignedDuration::from_hours(24 * 7),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_websockets: 10_000,
            body_buffer_bytes: 64 << 20,
            force_secure_cookies: false,
            rate_limits: Default::default(),
            allow_unauthenticated_public: false,
            webhook_allow_private: false,
            webhook_retry_schedule: phoenix_core::webhook::DEFAULT_RETRY_SCHEDULE.to_vec(),
            webhook_timeout: Duration::from_secs(10),
            consistent_reads: false,
        }
    }
}

/// Shared by every handler. One `Arc` around everything, so each request clones one reference count
/// (a profile of read-heavy runs showed per-field clones bouncing cache lines between cores).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub config: ServerConfig,
    draining: AtomicBool,
    /// Cancelled when draining starts: open WebSockets close with 1001.
    shutdown: CancellationToken,
    /// How many WebSockets are open (see [`AppState::socket_opened`]).
    sockets: Arc<tokio::sync::watch::Sender<usize>>,
    /// Serialized first pages of live standings (see `query::cache`).
    pub query_cache: crate::query::cache::PageCache,
    /// What the live sockets of each watched leaderboard share.
    pub feeds: crate::query::feed::Feeds,
    /// Failed console logins, per username and address.
    pub login_throttle: crate::throttle::LoginThrottle,
    /// Bumped whenever a credential may have stopped working (key revoked, logout, user changed or
    /// deleted, tenant secret rotated or tenant settings changed): open WebSockets check theirs again.
    credentials: tokio::sync::watch::Sender<u64>,
    /// Every rate-limit bucket.
    pub rate_limiter: crate::ratelimit::RateLimiter,
    /// Open WebSockets per player.
    player_sockets: PlayerSockets,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// WebSockets one player may have open at once, so one token cannot take the whole cap.
pub const SOCKETS_PER_PLAYER: u32 = 16;

/// Open sockets per player (a keyed hash of tenant and player): as many entries as players with an
/// open socket, never more than the socket cap.
#[derive(Default)]
pub struct PlayerSockets {
    counts: std::sync::Mutex<std::collections::HashMap<u64, u32>>,
    keys: std::collections::hash_map::RandomState,
}

/// Counts one open WebSocket (and its player's) until dropped.
pub struct SocketGuard {
    open: Arc<tokio::sync::watch::Sender<usize>>,
    player: Option<(u64, AppState)>,
}

impl PlayerSockets {
    fn release(&self, key: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&key);
            }
        }
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.open.send_modify(|n| *n = n.saturating_sub(1));
        metrics::gauge!("phoenix_websockets_open").decrement(1.0);
        if let Some((key, state)) = &self.player {
            state.player_sockets.release(*key);
        }
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Self {
        AppState(Arc::new(Shared {
            store,
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            sockets: Arc::new(tokio::sync::watch::channel(0).0),
            query_cache: Default::default(),
            feeds: Default::default(),
            login_throttle: Default::default(),
            credentials: tokio::sync::watch::channel(0).0,
            rate_limiter: crate::ratelimit::RateLimiter::new(config.rate_limits),
            player_sockets: Default::default(),
            config,
        }))
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.shutdown.cancel();
    }

    /// Fires when the server starts shutting down.
    pub fn shutdown_signal(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Registers an open WebSocket of `player` (tenant, player id; none for operators) for as long as
    /// the guard lives; `None` when the server's cap or the player's is reached.
    pub fn socket_opened(&self, player: Option<(&str, &str)>) -> Option<SocketGuard> {
        use std::hash::BuildHasher;
        let player = match player {
            None => None,
            Some(who) => {
                let key = self.player_sockets.keys.hash_one(who);
                let mut counts = self
                    .player_sockets
                    .counts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let n = counts.entry(key).or_insert(0);
                if *n >= SOCKETS_PER_PLAYER {
                    return None;
                }
                *n += 1;
                Some((key, self.clone()))
            }
        };
        let max = self.config.max_websockets;
        let mut admitted = false;
        self.sockets.send_if_modified(|n| {
            admitted = *n < max;
            if admitted {
                *n += 1;
            }
            admitted
        });
        if !admitted {
            if let Some((key, _)) = player {
                self.player_sockets.release(key);
            }
            return None;
        }
        metrics::gauge!("phoenix_websockets_open").increment(1.0);
        Some(SocketGuard {
            open: self.sockets.clone(),
            player,
        })
    }

    /// Resolves once no WebSocket is open.
    pub async fn sockets_closed(&self) {
        let mut open = self.sockets.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
    }

    /// Tells every open WebSocket to check its credential again.
    pub fn credentials_changed(&self) {
        self.credentials.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Fires after each [`AppState::credentials_changed`].
    pub fn watch_credentials(&self) -> tokio::sync::watch::Receiver<u64> {
        self.credentials.subscribe()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ready to serve: the store answers and we are not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.store.is_ready()
    }
}
