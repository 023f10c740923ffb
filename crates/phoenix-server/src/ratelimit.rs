//! Rate limits (SPEC §8): per tenant, events/s (every event of a batch counts) and reads/s (every `/v1`
//! request other than ingestion, each WebSocket upgrade and each client message on a socket); per
//! player (a tenant JWT's `sub`), requests/s, so one player cannot use up the tenant's budget. Token
//! buckets hold one second's worth, or a full batch (1000 events) for events, so a full batch always
//! fits eventually; what does not fit now is refused whole with the time until it would.
//!
//! The defaults come from configuration, a tenant's own limits from its record (carried by its
//! credential, so a `PATCH` applies at the next request). A limit of 0 is no limit and costs nothing.
//! Taking from a bucket is a short uncontended lock, never held across an await. Player buckets are
//! keyed by a keyed hash and bounded in number: a full bucket is the same as none, so idle ones are
//! dropped first.

use crate::auth::TenantAuth;
use crate::error::ApiError;
use crate::ingest::MAX_BATCH;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The configured defaults (0 = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultRateLimits {
    pub events_per_second: u32,
    pub reads_per_second: u32,
    pub player_requests_per_second: u32,
}

/// Player buckets per shard; beyond it idle (full) buckets are dropped, then the least recently used.
const PLAYERS_PER_SHARD: usize = 8192;
const SHARDS: usize = 16;
/// Tenants tracked at once (only development mode can name tenants that do not exist).
const MAX_TENANTS: usize = 100_000;

/// One token bucket: `rate` tokens a second, holding at most `capacity`.
#[derive(Debug)]
struct Bucket {
    rate: u32,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, capacity: u32, now: Instant) -> Self {
        Bucket {
            rate,
            capacity: f64::from(capacity),
            tokens: f64::from(capacity),
            last: now,
        }
    }

    fn refill(&mut self, rate: u32, capacity: u32, now: Instant) {
        if self.rate != rate || self.capacity != f64::from(capacity) {
            // The limit changed: keep what is left, within the new capacity.
            self.rate = rate;
            self.capacity = f64::from(capacity);
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(self.capacity);
        self.last = now;
    }

    /// Takes `n` tokens, or says how long until they would be there.
    fn take(&mut self, n: u32, rate: u32, capacity: u32, now: Instant) -> Result<(), Duration> {
        self.refill(rate, capacity, now);
        let n = f64::from(n);
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        let missing = n - self.tokens;
        Err(Duration::from_secs_f64(missing / f64::from(rate.max(1))))
    }

    /// Takes `n` tokens another node of the cluster spent, whether they are there or not (the bucket
    /// may go below empty, down to minus its capacity: this node then refuses until it refills).
    fn drain(&mut self, n: u32, rate: u32, capacity: u32, now: Instant) {
        self.refill(rate, capacity, now);
        self.tokens = (self.tokens - f64::from(n)).max(-self.capacity);
    }

    /// Whether the bucket has refilled completely by `now` (then it is the same as a new one).
    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * f64::from(self.rate) >= self.capacity
    }
}

#[derive(Debug)]
struct TenantBuckets {
    events: Mutex<Option<Bucket>>,
    reads: Mutex<Option<Bucket>>,
}

/// What a limit applies to, for the refusal's message and the metric.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Events,
    Reads,
    Player,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Reads => "reads",
            Kind::Player => "player",
        }
    }
}

/// What this node spent of a limit, for the other nodes of a cluster (see [`crate::shared`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Spent {
    Events {
        tenant: String,
        n: u32,
        rate: u32,
    },
    Reads {
        tenant: String,
        n: u32,
        rate: u32,
    },
    Player {
        tenant: String,
        player: String,
        n: u32,
        rate: u32,
    },
}

/// Every bucket of the process.
pub struct RateLimiter {
    defaults: DefaultRateLimits,
    /// In a cluster: where this node's spending goes, to be shared with the other nodes.
    spent: std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::shared::Shared>>,
    tenants: RwLock<HashMap<String, Arc<TenantBuckets>>>,
    players: Vec<Mutex<HashMap<u64, Bucket>>>,
    keys: std::collections::hash_map::RandomState,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// 429 with `Retry-After` in whole seconds, at least 1.
fn refused(kind: Kind, rate: u32, wait: Duration, tenant: &str) -> ApiError {
    metrics::counter!("phoenix_rate_limited_total", "tenant" => tenant.to_owned(),
        "limit" => kind.label())
    .increment(1);
    let retry_after = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let what = match kind {
        Kind::Events => format!("the tenant's limit of {rate} events per second"),
        Kind::Reads => format!("the tenant's limit of {rate} reads per second"),
        Kind::Player => format!("the limit of {rate} requests per second per player"),
    };
    ApiError::RateLimited {
        message: format!("{what} is reached; retry in {retry_after} s"),
        retry_after,
    }
}

impl RateLimiter {
    pub fn new(defaults: DefaultRateLimits) -> Self {
        RateLimiter {
            defaults,
            spent: std::sync::OnceLock::new(),
            tenants: RwLock::default(),
            players: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keys: Default::default(),
        }
    }

    fn tenant(&self, tenant: &str) -> Arc<TenantBuckets> {
        if let Some(b) = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
        {
            return Arc::clone(b);
        }
        let mut all = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_TENANTS && !all.contains_key(tenant) {
            let now = Instant::now();
            all.retain(|_, b| {
                let busy = |m: &Mutex<Option<Bucket>>| {
                    lock(m).as_ref().is_some_and(|b| !b.is_full_at(now))
                };
                busy(&b.events) || busy(&b.reads)
            });
        }
        Arc::clone(all.entry(tenant.to_owned()).or_insert_with(|| {
            Arc::new(TenantBuckets {
                events: Mutex::new(None),
                reads: Mutex::new(None),
            })
        }))
    }

    fn take(
        slot: &Mutex<Option<Bucket>>,
        n: u32,
        rate: u32,
        capacity: u32,
    ) -> Result<(), Duration> {
        let now = Instant::now();
        let mut slot = lock(slot);
        slot.get_or_insert_with(|| Bucket::new(rate, capacity, now))
            .take(n, rate, capacity, now)
    }

    /// Sends this node's spending to `sink` from now on (a cluster node; see [`crate::shared`]).
    pub fn share_with(&self, sink: tokio::sync::mpsc::Sender<crate::shared::Shared>) {
        let _ = self.spent.set(sink);
    }

    fn report(&self, spent: Spent) {
        if let Some(sink) = self.spent.get() {
            // A full queue drops it: the other nodes then under-count for a moment, nothing worse.
            let _ = sink.try_send(crate::shared::Shared::Spent(spent));
        }
    }

    /// Spending another node reported: taken from this node's buckets too, so the cluster as a
    /// whole keeps the limit (within what is spent between two reports).
    pub fn spent_elsewhere(&self, spent: &Spent) {
        let now = Instant::now();
        match spent {
            Spent::Events { tenant, n, rate } => {
                let capacity = (*rate).max(MAX_BATCH as u32);
                let slot = &self.tenant(tenant).events;
                lock(slot)
                    .get_or_insert_with(|| Bucket::new(*rate, capacity, now))
                    .drain(*n, *rate, capacity, now);
            }
            Spent::Reads { tenant, n, rate } => {
                let slot = &self.tenant(tenant).reads;
                lock(slot)
                    .get_or_insert_with(|| Bucket::new(*rate, *rate, now))
                    .drain(*n, *rate, *rate, now);
            }
            Spent::Player {
                tenant,
                player,
                n,
                rate,
            } => {
                let key = self.keys.hash_one((tenant.as_str(), player.as_str()));
                let shard = &self.players[(key as usize) % SHARDS];
                let mut buckets = lock(shard);
                if buckets.len() >= PLAYERS_PER_SHARD && !buckets.contains_key(&key) {
                    // Others' players never push this node's own out.
                    return;
                }
                buckets
                    .entry(key)
                    .or_insert_with(|| Bucket::new(*rate, *rate, now))
                    .drain(*n, *rate, *rate, now);
            }
        }
    }

    /// The player a credential's requests are limited as: a tenant JWT's `sub`, unless the token is a
    /// game server's (scoped `events:write`, writing for every player).
    fn player_of(auth: &TenantAuth) -> Option<&str> {
        if auth.game_server {
            return None;
        }
        match auth.via {
            crate::auth::TenantVia::TenantJwt => auth.user_id.as_deref(),
            _ => None,
        }
    }

    fn check_player(&self, auth: &TenantAuth) -> Result<(), ApiError> {
        let rate = auth
            .rate_limits
            .player_requests_per_second
            .unwrap_or(self.defaults.player_requests_per_second);
        let Some(player) = Self::player_of(auth).filter(|_| rate > 0) else {
            return Ok(());
        };
        let key = self.keys.hash_one((auth.tenant_id.as_str(), player));
        let shard = &self.players[(key as usize) % SHARDS];
        let now = Instant::now();
        let mut buckets = lock(shard);
        if buckets.len() >= PLAYERS_PER_SHARD && !buckets.contains_key(&key) {
            buckets.retain(|_, b| !b.is_full_at(now));
            if buckets.len() >= PLAYERS_PER_SHARD {
                let oldest = buckets.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    buckets.remove(&oldest);
                }
            }
        }
        buckets
            .entry(key)
            .or_insert_with(|| Bucket::new(rate, rate, now))
            .take(1, rate, rate, now)
            .map_err(|wait| refused(Kind::Player, rate, wait, auth.tenant_id.as_str()))?;
        drop(buckets);
        self.report(Spent::Player {
            tenant: auth.tenant_id.as_str().to_owned(),
            player: player.to_owned(),
            n: 1,
            rate,
        });
        Ok(())
    }

    /// Charges one request to the player, then `events` events to the tenant. The player comes first:
    /// a player over their own limit must not spend the tenant's budget with refused requests. A batch
    /// larger than the largest one allowed is left to validation (400), not refused here.
    pub fn check_events(&self, auth: &TenantAuth, events: usize) -> Result<(), ApiError> {
        self.check_player(auth)?;
        let rate = auth
            .rate_limits
            .events_per_second
            .unwrap_or(self.defaults.events_per_second);
        if rate > 0 && events <= MAX_BATCH {
            let n = u32::try_from(events.max(1)).unwrap_or(u32::MAX);
            let capacity = rate.max(MAX_BATCH as u32);
            let tenant = auth.tenant_id.as_str();
            Self::take(&self.tenant(tenant).events, n, rate, capacity)
                .map_err(|wait| refused(Kind::Events, rate, wait, tenant))?;
            self.report(Spent::Events {
                tenant: tenant.to_owned(),
                n,
                rate,
            });
        }
        Ok(())
    }

    /// Charges one request to the player, then one read to the tenant.
    pub fn check_read(&self, auth: &TenantAuth) -> Result<(), ApiError> {
        self.check_player(auth)?;
        let rate = auth
            .rate_limits
            .reads_per_second
            .unwrap_or(self.defaults.reads_per_second);
        if rate > 0 {
            let tenant = auth.tenant_id.as_str();
            Self::take(&self.tenant(tenant).reads, 1, rate, rate)
                .map_err(|wait| refused(Kind::Reads, rate, wait, tenant))?;
            self.report(Spent::Reads {
                tenant: tenant.to_owned(),
                n: 1,
                rate,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_its_capacity_and_refills_at_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10, 10, start);
        for _ in 0..10 {
            assert!(bucket.take(1, 10, 10, start).is_ok());
        }
        let wait = bucket.take(1, 10, 10, start).expect_err("empty");
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        let later = start + Duration::from_millis(500);
        for _ in 0..5 {
            assert!(bucket.take(1, 10, 10, later).is_ok());
        }
        assert!(bucket.take(1, 10, 10, later).is_err());
        assert!(bucket.is_full_at(later + Duration::from_secs(1)));
    }

    #[test]
    fn a_batch_that_does_not_fit_is_refused_whole_with_the_time_until_it_would() {
        let start = Instant::now();
        let mut bucket = Bucket::new(100, 1000, start);
        assert!(bucket.take(1000, 100, 1000, start).is_ok());
        let wait = bucket.take(500, 100, 1000, start).expect_err("empty");
        assert_eq!(wait, Duration::from_secs(5));
        // Nothing was taken by the refusal.
        assert!(
            bucket
                .take(500, 100, 1000, start + Duration::from_secs(5))
                .is_ok()
        );
    }

    #[test]
    fn a_changed_limit_applies_at_once() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1000, 1000, start);
        assert!(bucket.take(1, 1, 1, start).is_ok());
        assert!(bucket.take(1, 1, 1, start).is_err());
    }
}
