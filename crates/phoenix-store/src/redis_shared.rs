//! What a cluster's nodes share in Redis (SPEC §9): short-lived, hot state only, never anything durable.
//! Today: HMAC signature replay (`SET NX` with the signature's own expiry), and the channel on which
//! nodes share their login attempts and rate-limit spending (`publish`/`listen`, used by the server).
//!
//! **Fail closed.** When Redis cannot be reached, a signature cannot be known to be fresh, so the
//! signed request is refused (503); so are logins (their throttle is shared here).
//!
//! **A Redis that lost its data** (restarted without persistence, flushed) has forgotten which
//! signatures were used. Redis holds an *epoch* (`phoenix:epoch`) whose value PostgreSQL also keeps
//! (table `phoenix_cluster`). A node that finds Redis's epoch missing where PostgreSQL has one knows
//! Redis lost its data: it writes a new epoch with the time of the discovery, and every node refuses
//! signed requests until the replay window has passed since then, so no signature can be replayed.
//! A brand-new cluster (no epoch in PostgreSQL yet) just writes its first one.
//!
//! **A Redis that went back in time** (restored from an older dump, a failover to a lagging replica)
//! has forgotten the signatures used since. Every epoch check also increments a counter in Redis
//! (`phoenix:{id}:counter`, in the same round trip, after a signature's `SET NX`); each node remembers the highest value it has
//! seen, and PostgreSQL the highest any node saw (written every few seconds). A counter that answers
//! less than that went back in time: it is handled as a loss (a new epoch, signed requests refused
//! for the replay window).

use crate::{StoreError, StoreResult};
use jiff::Timestamp;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::sync::Mutex;
use std::time::Duration;

/// Keys live under `phoenix:{cluster id}:` (the id is made once and kept in PostgreSQL), so clusters
/// sharing one Redis never read each other's.
const EPOCH_KEY: &str = "epoch";
const COUNTER_KEY: &str = "counter";
/// How often a node writes the highest counter it has seen to PostgreSQL.
const COUNTER_PERSIST: Duration = Duration::from_secs(5);
const SIG_PREFIX: &str = "sig:";
/// How long signed requests are refused after Redis lost its data: the longest a signature is
/// accepted for (SPEC §3.3: timestamps within five minutes).
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// The epoch as PostgreSQL has it: its value and since when (µs) it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Epoch {
    value: String,
    since_us: i64,
    /// Whether it replaced one Redis lost (then signed requests wait out the replay window).
    after_loss: bool,
}

impl Epoch {
    fn parse(raw: &str) -> Option<Epoch> {
        let mut parts = raw.splitn(3, '|');
        let value = parts.next()?.to_owned();
        let since_us = parts.next()?.parse().ok()?;
        let after_loss = parts.next()? == "loss";
        Some(Epoch {
            value,
            since_us,
            after_loss,
        })
    }

    fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            self.value,
            self.since_us,
            if self.after_loss { "loss" } else { "new" }
        )
    }
}

/// A connection to the cluster's Redis (reconnecting by itself) and the epoch check.
pub struct RedisShared {
    client: redis::Client,
    conn: ConnectionManager,
    pool: PgPool,
    epoch: Mutex<Option<Epoch>>,
    /// `phoenix:{cluster id}:`.
    prefix: String,
    /// Redis's counter as this node knows it.
    counter: Mutex<Counter>,
}

/// The highest value of Redis's counter seen (here or, at start, by any node), which time-travel of
/// Redis it belongs to (bumped once a rewind is handled), and when it was last written to PostgreSQL.
#[derive(Debug, Default)]
struct Counter {
    highest: i64,
    generation: u64,
    persisted: Option<std::time::Instant>,
}

impl RedisShared {
    /// Connects to Redis (`url`) and to PostgreSQL (`pool`, for the epoch).
    pub async fn connect(url: &str, pool: PgPool) -> Result<RedisShared, String> {
        Self::connect_tls(url, None, pool).await
    }

    /// [`RedisShared::connect`], checking a `rediss://` Redis's certificate against `root_pem` (PEM
    /// certificates of a private CA) instead of the bundled Mozilla roots.
    pub async fn connect_tls(
        url: &str,
        root_pem: Option<Vec<u8>>,
        pool: PgPool,
    ) -> Result<RedisShared, String> {
        let client = match root_pem {
            None => redis::Client::open(url)
                .map_err(|_| "PHOENIX_REDIS_URL: not a valid Redis URL".to_owned())?,
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(|e| format!("PHOENIX_REDIS_URL with PHOENIX_REDIS_CA_FILE: {e}"))?,
        };
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        // (`phoenix_cluster` is made by the log's migrations: nodes starting at once would race on
        // a `CREATE TABLE IF NOT EXISTS` of their own.)
        sqlx::query(
            "INSERT INTO phoenix_cluster (key, value) VALUES ('cluster_id', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(crate::seal::random_hex::<8>())
        .execute(&pool)
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
        let cluster_id: String =
            sqlx::query_scalar("SELECT value FROM phoenix_cluster WHERE key = 'cluster_id'")
                .fetch_one(&pool)
                .await
                .map_err(|e| format!("PostgreSQL: {e}"))?;
        let highest: Option<String> =
            sqlx::query_scalar("SELECT value FROM phoenix_cluster WHERE key = 'redis_counter'")
                .fetch_optional(&pool)
                .await
                .map_err(|e| format!("PostgreSQL: {e}"))?;
        let highest = highest.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let shared = RedisShared {
            client,
            conn,
            pool,
            epoch: Mutex::new(None),
            prefix: format!("phoenix:{cluster_id}:"),
            counter: Mutex::new(Counter {
                highest,
                ..Counter::default()
            }),
        };
        // Learn (or start) the epoch now, so the first signed request does not pay for it.
        let _ = shared.current_epoch().await;
        Ok(shared)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    /// The epoch, checked against Redis's; after a loss of Redis's data, `Err` until the replay window
    /// has passed since it was found.
    async fn current_epoch(&self) -> StoreResult<Epoch> {
        Ok(self.checked(None).await?.0)
    }

    /// One round trip: the epoch, then (with `signature`: digest and time to live in ms) the
    /// signature's `SET NX`, then the counter's increment, in that order, so a Redis that went back
    /// to before the signature was set went back to before the increment too. Answers the epoch (an
    /// error after a loss, within the replay window) and whether the signature was new.
    async fn checked(&self, signature: Option<([u8; 32], u64)>) -> StoreResult<(Epoch, bool)> {
        // What this node has seen *before* its increment is sent: any value Redis answers now must be
        // above it (requests running at once may note theirs in any order).
        let (before, generation) = {
            let c = self.counter.lock().unwrap_or_else(|p| p.into_inner());
            (c.highest, c.generation)
        };
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.key(EPOCH_KEY));
        if let Some((digest, ttl_ms)) = signature {
            pipe.cmd("SET")
                .arg(self.key(&format!("{SIG_PREFIX}{}", hex::encode(digest))))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms);
        }
        pipe.cmd("INCR").arg(self.key(COUNTER_KEY));
        let (in_redis, new_signature, counter): (Option<String>, bool, i64) = match signature {
            Some(_) => {
                let (epoch, set, counter): (Option<String>, Option<String>, i64) = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| unavailable("Redis", e))?;
                (epoch, set.is_some(), counter)
            }
            None => {
                let (epoch, counter): (Option<String>, i64) = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| unavailable("Redis", e))?;
                (epoch, false, counter)
            }
        };
        let went_back = counter <= before;
        let cached = self.epoch.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let epoch = match (cached, in_redis) {
            (Some(c), Some(r)) if c.value == r && !went_back => c,
            (_, in_redis) if went_back => {
                tracing::warn!("Redis went back in time (its counter is below one seen before)");
                // Until this succeeds the highest seen stays as it was, so the next check finds the
                // rewind again (nothing is forgotten by a failure or a dropped request).
                self.settle_epoch_after_time_travel(in_redis).await?
            }
            (_, in_redis) => self.settle_epoch(in_redis).await?,
        };
        self.note_counter(counter, went_back.then_some(generation))
            .await;
        let ends = epoch.since_us + REPLAY_WINDOW.as_micros() as i64;
        if epoch.after_loss && Timestamp::now().as_microsecond() < ends {
            return Err(StoreError::Unavailable(
                "Redis lost its data: signed requests are refused until the replay window has passed"
                    .into(),
            ));
        }
        Ok((epoch, new_signature))
    }

    /// Takes Redis's counter as just incremented. After a rewind was handled (`rewound` holds the
    /// generation it was found in), the count starts again from where Redis is; otherwise the highest
    /// only grows. Writes the highest to PostgreSQL every few seconds (at once after a rewind); a
    /// failed write is tried again at the next check, never failing the request.
    async fn note_counter(&self, counter: i64, rewound: Option<u64>) {
        let (value, exact) = {
            let mut c = self.counter.lock().unwrap_or_else(|p| p.into_inner());
            let reset = rewound == Some(c.generation);
            if reset {
                c.highest = counter;
                c.generation += 1;
            } else {
                c.highest = c.highest.max(counter);
            }
            let due = reset || c.persisted.is_none_or(|at| at.elapsed() >= COUNTER_PERSIST);
            if !due {
                return;
            }
            c.persisted = Some(std::time::Instant::now());
            (c.highest, reset)
        };
        // The highest any node saw; after a rewind, where Redis is now (a node starting later must
        // not take the old highest for a new rewind).
        let query = if exact {
            "INSERT INTO phoenix_cluster (key, value) VALUES ('redis_counter', $1) \
             ON CONFLICT (key) DO UPDATE SET value = $1"
        } else {
            "INSERT INTO phoenix_cluster (key, value) VALUES ('redis_counter', $1) \
             ON CONFLICT (key) DO UPDATE SET value = CASE WHEN phoenix_cluster.value ~ '^[0-9]{1,18}$' \
                 THEN greatest(phoenix_cluster.value::bigint, $1::bigint)::text ELSE $1 END"
        };
        if let Err(e) = sqlx::query(query)
            .bind(value.to_string())
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "could not note Redis's counter in PostgreSQL; will retry");
            self.counter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .persisted = None;
        }
    }

    /// After Redis went back in time: a new epoch as after a loss, unless another node made one since
    /// (then this node takes it).
    async fn settle_epoch_after_time_travel(&self, in_redis: Option<String>) -> StoreResult<Epoch> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM phoenix_cluster WHERE key = 'redis_epoch'")
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| unavailable("PostgreSQL", e))?;
        let recent_loss = stored.as_deref().and_then(Epoch::parse).filter(|e| {
            e.after_loss
                && Timestamp::now().as_microsecond() - e.since_us < REPLAY_WINDOW.as_micros() as i64
        });
        match recent_loss {
            Some(e) if in_redis.as_deref() == Some(e.value.as_str()) => {
                *self.epoch.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Ok(e)
            }
            // The epoch Redis holds is made to look missing: the loss path writes a new one.
            _ => self.settle_epoch(None).await,
        }
    }

    /// Reconciles Redis's epoch with PostgreSQL's (see the module docs) and caches the result.
    async fn settle_epoch(&self, in_redis: Option<String>) -> StoreResult<Epoch> {
        let pg = |e: sqlx::Error| unavailable("PostgreSQL", e);
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM phoenix_cluster WHERE key = 'redis_epoch'")
                .fetch_optional(&self.pool)
                .await
                .map_err(pg)?;
        let stored = stored.as_deref().and_then(Epoch::parse);
        let epoch = match (stored, in_redis) {
            // Another node moved it on: take it.
            (Some(s), Some(r)) if s.value == r => s,
            (stored, _) => {
                let fresh = Epoch {
                    value: crate::seal::random_hex::<16>(),
                    since_us: Timestamp::now().as_microsecond(),
                    // Redis lost what it held if PostgreSQL knew an epoch Redis does not have.
                    after_loss: stored.is_some(),
                };
                // One node wins the race to replace it; the others read what it wrote.
                let expected = stored.as_ref().map(Epoch::encode);
                let won = sqlx::query(
                    "INSERT INTO phoenix_cluster (key, value) VALUES ('redis_epoch', $1) \
                     ON CONFLICT (key) DO UPDATE SET value = $1 \
                     WHERE phoenix_cluster.value IS NOT DISTINCT FROM $2",
                )
                .bind(fresh.encode())
                .bind(expected)
                .execute(&self.pool)
                .await
                .map_err(pg)?
                .rows_affected()
                    == 1;
                let epoch = if won {
                    fresh
                } else {
                    let now: Option<String> = sqlx::query_scalar(
                        "SELECT value FROM phoenix_cluster WHERE key = 'redis_epoch'",
                    )
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(pg)?;
                    now.as_deref().and_then(Epoch::parse).ok_or_else(|| {
                        StoreError::Unavailable("the cluster's Redis epoch is unreadable".into())
                    })?
                };
                let mut conn = self.conn.clone();
                redis::cmd("SET")
                    .arg(self.key(EPOCH_KEY))
                    .arg(&epoch.value)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| unavailable("Redis", e))?;
                if epoch.after_loss {
                    tracing::warn!(
                        "Redis lost its data: signed requests are refused for the replay window"
                    );
                }
                epoch
            }
        };
        *self.epoch.lock().unwrap_or_else(|p| p.into_inner()) = Some(epoch.clone());
        Ok(epoch)
    }

    /// True the first time `digest` is used in the cluster, false for a replay; remembered until
    /// `expires_at`. Fails (503) when Redis is unreachable or lost its data within the replay window.
    pub async fn use_signature_once(
        &self,
        digest: [u8; 32],
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let ttl_ms = expires_at
            .duration_since(Timestamp::now())
            .as_millis()
            .clamp(1, REPLAY_WINDOW.as_millis() as i128 * 2) as u64;
        // (Refused after a loss although the key was set: the signature's time ends within the
        // replay window anyway.)
        Ok(self.checked(Some((digest, ttl_ms))).await?.1)
    }

    /// Publishes `payload` to the cluster's nodes on `channel` (at most once: a node that is not
    /// listening misses it).
    pub async fn publish(&self, channel: &str, payload: String) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(self.key(channel))
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| unavailable("Redis", e))?;
        Ok(())
    }

    /// Listens on `channel` until the connection is lost (then the stream ends: listen again).
    pub async fn listen(
        &self,
        channel: &str,
    ) -> StoreResult<impl futures_util::Stream<Item = Vec<u8>> + Send + use<>> {
        use futures_util::StreamExt;
        let mut pubsub =
            tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
                .await
                .map_err(|e| unavailable("Redis", e))?
                .map_err(|e| unavailable("Redis", e))?;
        pubsub
            .subscribe(self.key(channel))
            .await
            .map_err(|e| unavailable("Redis", e))?;
        Ok(pubsub
            .into_on_message()
            .map(|msg| msg.get_payload_bytes().to_vec()))
    }

    /// `key` under this cluster's prefix.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}
