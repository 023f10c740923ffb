//! What a cluster's nodes tell each other through Redis (SPEC §9): the login throttle's attempts and
//! the rate limits' spending. Each node keeps its own throttle and buckets (the same code as one
//! node) and also applies what the others report, so the rules hold for the cluster as a whole:
//! a guesser spreading attempts over nodes is counted on every node, and a tenant's limit is spent
//! on every node by what any node let through.
//!
//! Reports are batched every [`FLUSH`] and published on one channel; a node skips its own. So the
//! cluster may let through, beyond a limit, what the other nodes let through within one
//! [`FLUSH`] (about 5% of a second's budget per extra node). Redis pub/sub is at most once: a node
//! that is not listening (restarting, Redis away) misses reports, which only under-counts for a
//! moment. When Redis is away, each node keeps its limits on its own; logins are refused (503), as
//! the throttle cannot be shared (see the login handler).

use crate::ratelimit::Spent;
use crate::state::AppState;
use futures_util::StreamExt;
use phoenix_store::redis_shared::RedisShared;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How often a node publishes what it counted.
pub const FLUSH: Duration = Duration::from_millis(50);
/// Reports waiting to be published; beyond it they are dropped (under-counting, never blocking).
const QUEUED: usize = 65_536;
/// Reports in one published message.
const PER_MESSAGE: usize = 4_096;
const CHANNEL: &str = "shared";

/// One report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Shared {
    LoginAttempt { username: String, address: String },
    LoginSucceeded { username: String, address: String },
    Spent(Spent),
}

#[derive(Serialize, Deserialize)]
struct Message {
    /// The publishing node (a random id per process).
    from: u64,
    reports: Vec<Shared>,
}

/// Starts sharing `state`'s throttle and rate limits through `redis` until the server shuts down.
/// Listens first (waiting a moment for Redis), so the node hears the others before it serves.
pub async fn start(state: &AppState, redis: Arc<RedisShared>) {
    let node = {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    };
    let (sink, reports) = tokio::sync::mpsc::channel(QUEUED);
    state.rate_limiter.share_with(sink.clone());
    state.login_throttle.share_with(sink);
    let shutdown = state.shutdown_signal();
    tokio::spawn({
        let (redis, shutdown) = (redis.clone(), shutdown.clone());
        async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = publish(redis, node, reports) => {}
            }
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(2), redis.listen(CHANNEL))
        .await
        .ok()
        .and_then(Result::ok);
    let state = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = listen(state, redis, node, first) => {}
        }
    });
}

/// Publishes what this node counted, every [`FLUSH`], events of one tenant summed.
async fn publish(
    redis: Arc<RedisShared>,
    node: u64,
    mut reports: tokio::sync::mpsc::Receiver<Shared>,
) {
    let mut batch: Vec<Shared> = Vec::new();
    let mut failing = false;
    loop {
        let Some(first) = reports.recv().await else {
            return;
        };
        tokio::time::sleep(FLUSH).await;
        batch.clear();
        batch.push(first);
        while batch.len() < PER_MESSAGE {
            match reports.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        merge(&mut batch);
        let Ok(payload) = serde_json::to_string(&Message {
            from: node,
            reports: std::mem::take(&mut batch),
        }) else {
            continue;
        };
        match redis.publish(CHANNEL, payload).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot share login attempts and rate-limit use with the cluster; each node limits on its own meanwhile");
                }
                failing = true;
            }
        }
    }
}

/// Sums the spending of one key within a batch (one report per tenant, kind and rate, not per
/// request; a player's reports too), keeping the first report's place.
fn merge(batch: &mut Vec<Shared>) {
    use std::collections::HashMap;
    let mut merged: Vec<Shared> = Vec::with_capacity(batch.len());
    let mut at: HashMap<(u8, String, String, u32), usize> = HashMap::new();
    for report in batch.drain(..) {
        let key = match &report {
            Shared::Spent(Spent::Events { tenant, rate, .. }) => {
                Some((0, tenant.clone(), String::new(), *rate))
            }
            Shared::Spent(Spent::Reads { tenant, rate, .. }) => {
                Some((1, tenant.clone(), String::new(), *rate))
            }
            Shared::Spent(Spent::Player {
                tenant,
                player,
                rate,
                ..
            }) => Some((2, tenant.clone(), player.clone(), *rate)),
            _ => None,
        };
        let Some(key) = key else {
            merged.push(report);
            continue;
        };
        match at.get(&key) {
            Some(&i) => {
                if let (
                    Shared::Spent(
                        Spent::Events { n, .. } | Spent::Reads { n, .. } | Spent::Player { n, .. },
                    ),
                    Shared::Spent(
                        Spent::Events { n: more, .. }
                        | Spent::Reads { n: more, .. }
                        | Spent::Player { n: more, .. },
                    ),
                ) = (&mut merged[i], &report)
                {
                    *n = n.saturating_add(*more);
                }
            }
            None => {
                at.insert(key, merged.len());
                merged.push(report);
            }
        }
    }
    *batch = merged;
}

/// Applies the other nodes' reports (from `first`, a subscription already made, if any); listens
/// again (after a pause) when the connection is lost.
async fn listen(
    state: AppState,
    redis: Arc<RedisShared>,
    node: u64,
    mut first: Option<impl futures_util::Stream<Item = Vec<u8>> + Send>,
) {
    loop {
        let subscribed = match first.take() {
            Some(messages) => Ok(futures_util::future::Either::Left(messages)),
            None => redis
                .listen(CHANNEL)
                .await
                .map(futures_util::future::Either::Right),
        };
        match subscribed {
            Ok(messages) => {
                let mut messages = std::pin::pin!(messages);
                while let Some(payload) = messages.next().await {
                    let Ok(message) = serde_json::from_slice::<Message>(&payload) else {
                        continue;
                    };
                    if message.from == node {
                        continue;
                    }
                    for report in &message.reports {
                        apply(&state, report);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen to the cluster's reports; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn apply(state: &AppState, report: &Shared) {
    match report {
        Shared::LoginAttempt { username, address } => {
            state.login_throttle.attempted_elsewhere(username, address)
        }
        Shared::LoginSucceeded { username, address } => {
            state.login_throttle.succeeded_elsewhere(username, address)
        }
        Shared::Spent(spent) => state.rate_limiter.spent_elsewhere(spent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_of_one_key_is_summed_within_a_batch() {
        let events = |tenant: &str, n| {
            Shared::Spent(Spent::Events {
                tenant: tenant.into(),
                n,
                rate: 10,
            })
        };
        let mut batch = vec![
            events("a", 3),
            events("b", 1),
            events("a", 4),
            Shared::LoginAttempt {
                username: "u".into(),
                address: "x".into(),
            },
        ];
        merge(&mut batch);
        assert_eq!(batch.len(), 3);
        assert_eq!(batch[0], events("a", 7));
        assert_eq!(batch[1], events("b", 1));
    }
}
