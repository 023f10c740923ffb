//! The webhooks' outbox (SPEC §7.6): a message is made for each active webhook that subscribes to its
//! event type, in the same transaction as the change it reports (so it is enqueued exactly once, and
//! a replay makes the same message with the same id), and leaves only through the delivery task, which
//! records every attempt here. Delivery is at least once: a message stays `pending` until an attempt
//! succeeds, and a crash during one means it is sent again with the same `webhook-id`.
//!
//! On disk: a message row (~payload + 100 B) and a row per attempt (~120 B), both removed
//! [`RETENTION_DAYS`] after the message was made; a disabled webhook's pending messages fail after
//! [`DISABLED_PENDING_DAYS`].

use super::*;
use crate::achievements::{DeliveryRow, DeliveryState, DueDelivery};
use sha2::{Digest, Sha256};

/// How long delivered and failed messages, and their attempts, are kept.
pub(in crate::embedded) const RETENTION_DAYS: i64 = 7;
/// How long a disabled webhook's messages stay pending before they fail.
pub(in crate::embedded) const DISABLED_PENDING_DAYS: i64 = 3;

/// The tenant's webhooks and the event types each takes.
pub(super) struct Routes(Vec<(String, Vec<String>)>);

/// The live webhooks of a tenant (read once per record that reports something). A disabled one gets
/// its messages too: they wait, pending, until it is active again (for at most
/// [`DISABLED_PENDING_DAYS`]), so an outage at the receiver loses nothing.
pub(super) fn routes(tx: &Transaction<'_>, tenant: &str) -> Result<Routes, String> {
    let rows: Vec<String> = tx
        .prepare_cached("SELECT body FROM webhooks WHERE tenant = ?1 AND deleted = 0")
        .and_then(|mut s| {
            s.query_map(params![tenant], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql)?;
    let mut routes = Vec::with_capacity(rows.len());
    for body in rows {
        let hook: Webhook = serde_json::from_str(&body).map_err(|e| format!("webhook row: {e}"))?;
        routes.push((hook.webhook_id, hook.events));
    }
    Ok(Routes(routes))
}

impl Routes {
    pub(super) fn wants(&self, event_type: &str) -> bool {
        self.0
            .iter()
            .any(|(_, events)| events.iter().any(|e| e == event_type))
    }
}

/// The `webhook-id` of a message: the same for the same occurrence on every replay and every node.
pub(in crate::embedded) fn message_id(tenant: &str, event_type: &str, key: &str) -> String {
    // A grant's `reward.granted` message takes the grant's own key (already unique in the tenant and
    // the same on every replay): a settlement inserts its grants in key order, so its messages then
    // go into the outbox's indexes in order too, instead of at random places (for a large
    // settlement: 360 000 grants with their messages in 9.6 s instead of 22.6 s).
    if event_type == "reward.granted"
        && let Some(hex) = key.strip_prefix("g_")
        && phoenix_core::reward::parse_grant_id(key).is_some()
    {
        return format!("msg_{hex}");
    }
    let mut h = Sha256::new();
    for part in [tenant, event_type, key] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("msg_{}", hex::encode(&h.finalize()[..16]))
}

/// Makes the message for `event_type` (its occurrence named by `key`) for every route that takes it.
pub(super) fn enqueue(
    tx: &Transaction<'_>,
    routes: &Routes,
    tenant: &str,
    event_type: &str,
    key: &str,
    at: Timestamp,
    data: serde_json::Value,
) -> Result<u64, String> {
    if !routes.wants(event_type) {
        return Ok(0);
    }
    let id = message_id(tenant, event_type, key);
    let payload = json_text(&serde_json::json!({
        "id": id,
        "type": event_type,
        "timestamp": at,
        "tenant_id": tenant,
        "data": data,
    }))?;
    let mut made = 0;
    for (webhook_id, events) in &routes.0 {
        if !events.iter().any(|e| e == event_type) {
            continue;
        }
        made += tx
            .prepare_cached(
                "INSERT OR IGNORE INTO outbox(tenant, webhook_id, msg_id, type, payload, created_us,
                   state, attempts, next_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    tenant,
                    webhook_id,
                    id,
                    event_type,
                    payload,
                    micros(at)
                ])
            })
            .map_err(sql)? as u64;
    }
    Ok(made)
}

/// Messages due now, oldest due first: at most `limit` per active webhook (of `only` when given).
pub(in crate::embedded) fn due(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
    only: Option<&(String, String)>,
    unseal: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> rusqlite::Result<Vec<DueDelivery>> {
    let now_us = micros(now);
    let mut hooks = conn.prepare_cached(
        "SELECT tenant, webhook_id, body, secret, previous, previous_until_us FROM webhooks
         WHERE deleted = 0 AND active = 1",
    )?;
    #[allow(clippy::type_complexity)]
    let hooks: Vec<(String, String, String, String, Option<String>, Option<i64>)> = hooks
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (tenant, webhook_id, body, secret, previous, previous_until) in hooks {
        if only.is_some_and(|(t, w)| *t != tenant || *w != webhook_id) {
            continue;
        }
        let mut rows = conn.prepare_cached(
            "SELECT msg_id, type, payload, attempts, created_us FROM outbox INDEXED BY outbox_due
             WHERE state = 0 AND tenant = ?1 AND webhook_id = ?2 AND next_us <= ?3
             ORDER BY next_us LIMIT ?4",
        )?;
        let found = rows
            .query_map(params![tenant, webhook_id, now_us, limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if found.is_empty() {
            continue;
        }
        let url = serde_json::from_str::<Webhook>(&body)
            .map(|h| h.url)
            .unwrap_or_default();
        let mut keys = Vec::with_capacity(2);
        if let Some(k) = unseal(&secret) {
            keys.push(k);
        }
        if let (Some(p), Some(until)) = (previous, previous_until)
            && until > now_us
            && let Some(k) = unseal(&p)
        {
            keys.push(k);
        }
        for (msg_id, event_type, payload, attempts, created_us) in found {
            out.push(DueDelivery {
                tenant_id: tenant.clone(),
                webhook_id: webhook_id.clone(),
                message_id: msg_id,
                event_type,
                url: url.clone(),
                payload,
                attempt: (attempts.max(0) as u32) + 1,
                created_at: from_micros(created_us),
                keys: keys.clone(),
            });
        }
    }
    Ok(out)
}

/// Records an attempt and what happens to its message next: `next` is when it is tried again
/// (`None`: no more tries, so it is delivered or failed).
pub(in crate::embedded) fn record_attempt(
    conn: &mut Connection,
    d: &DueDelivery,
    outcome: &crate::achievements::AttemptOutcome,
    next: Option<Timestamp>,
) -> rusqlite::Result<DeliveryState> {
    let tx = conn.transaction()?;
    let state = record_attempt_in(
        &tx,
        (&d.tenant_id, &d.webhook_id, &d.message_id, d.attempt),
        outcome,
        next,
    )?;
    tx.commit()?;
    Ok(state)
}

/// [`record_attempt`] within a transaction of the caller's (a cluster's ledger applies it as a record
/// of the log). `message` is (tenant, webhook, message id, attempt).
pub(in crate::embedded) fn record_attempt_in(
    tx: &rusqlite::Transaction<'_>,
    message: (&str, &str, &str, u32),
    outcome: &crate::achievements::AttemptOutcome,
    next: Option<Timestamp>,
) -> rusqlite::Result<DeliveryState> {
    let (tenant, webhook_id, message_id, attempt) = message;
    let state = if outcome.delivered {
        DeliveryState::Delivered
    } else if next.is_some() {
        DeliveryState::Pending
    } else {
        DeliveryState::Failed
    };
    // A message that is gone (its webhook deleted) or already settled is left alone.
    let updated = tx.execute(
        "UPDATE outbox SET state = ?4, attempts = ?5, next_us = ?6
         WHERE tenant = ?1 AND webhook_id = ?2 AND msg_id = ?3 AND state = 0",
        params![
            tenant,
            webhook_id,
            message_id,
            state.code(),
            attempt,
            next.map(micros).unwrap_or(i64::MAX)
        ],
    )?;
    if updated == 1 {
        tx.execute(
            "INSERT OR REPLACE INTO attempts(tenant, webhook_id, msg_id, attempt, at_us, status_code,
               error, duration_ms, next_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                tenant,
                webhook_id,
                message_id,
                attempt,
                micros(outcome.attempted_at),
                outcome.status_code,
                outcome.error,
                outcome.duration_ms as i64,
                next.map(micros)
            ],
        )?;
    }
    Ok(state)
}

/// A page of a webhook's deliveries log, newest first, after `after` (a row position): its attempts,
/// and a row (attempt 0) for each message not tried yet. Each part is read in order from its own
/// index (`attempts_by_time`, `outbox_untried`), `limit + 1` rows at most, and the two are merged.
pub(in crate::embedded) fn deliveries(
    conn: &Connection,
    tenant: &str,
    webhook_id: &str,
    after: Option<(Timestamp, String, u32)>,
    limit: u32,
) -> rusqlite::Result<(u64, Vec<DeliveryRow>, bool)> {
    let total: i64 = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM attempts INDEXED BY attempts_by_time
                  WHERE tenant = ?1 AND webhook_id = ?2)
              + (SELECT COUNT(*) FROM outbox INDEXED BY outbox_untried
                  WHERE tenant = ?1 AND webhook_id = ?2 AND attempts = 0)",
        params![tenant, webhook_id],
        |r| r.get(0),
    )?;
    let (t, m, a) = after.map_or((i64::MAX, String::new(), u32::MAX), |(t, m, a)| {
        (micros(t), m, a)
    });
    let take = i64::from(limit) + 1;
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<DeliveryRow> {
        let t: i64 = r.get(0)?;
        let msg: String = r.get(1)?;
        let attempt: u32 = r.get(2)?;
        let state = DeliveryState::from_code(r.get(8)?);
        let next: Option<i64> = r.get(7)?;
        Ok(DeliveryRow {
            delivery_id: msg.clone(),
            event_type: r.get(3)?,
            attempt,
            attempted_at: (attempt > 0).then(|| from_micros(t)),
            status_code: r.get::<_, Option<u16>>(4)?,
            error: r.get(5)?,
            duration_ms: r.get::<_, Option<i64>>(6)?.map(|d| d.max(0) as u64),
            next_attempt_at: next
                .filter(|n| *n != i64::MAX && state == DeliveryState::Pending)
                .map(from_micros),
            state,
            position: (from_micros(t), msg, attempt),
        })
    };
    let mut rows: Vec<DeliveryRow> = conn
        .prepare_cached(
            "SELECT a.at_us, a.msg_id, a.attempt, o.type, a.status_code, a.error, a.duration_ms,
                    a.next_us, o.state
               FROM attempts a INDEXED BY attempts_by_time JOIN outbox o
                 ON o.tenant = a.tenant AND o.webhook_id = a.webhook_id AND o.msg_id = a.msg_id
              WHERE a.tenant = ?1 AND a.webhook_id = ?2 AND (a.at_us, a.msg_id, a.attempt) < (?3, ?4, ?5)
              ORDER BY a.at_us DESC, a.msg_id DESC, a.attempt DESC LIMIT ?6",
        )?
        .query_map(params![tenant, webhook_id, t, m, a, take], row)?
        .collect::<rusqlite::Result<_>>()?;
    let untried: Vec<DeliveryRow> = conn
        .prepare_cached(
            "SELECT created_us, msg_id, 0, type, NULL, NULL, NULL, next_us, state
               FROM outbox INDEXED BY outbox_untried
              WHERE tenant = ?1 AND webhook_id = ?2 AND attempts = 0
                AND (created_us, msg_id, 0) < (?3, ?4, ?5)
              ORDER BY created_us DESC, msg_id DESC LIMIT ?6",
        )?
        .query_map(params![tenant, webhook_id, t, m, a, take], row)?
        .collect::<rusqlite::Result<_>>()?;
    rows.extend(untried);
    rows.sort_by(|x, y| y.position.cmp(&x.position));
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((total.max(0) as u64, rows, more))
}

/// Pending messages, for `/metrics` (the outbox depth).
pub(in crate::embedded) fn depth(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM outbox INDEXED BY outbox_due WHERE state = 0",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

/// Settled messages removed per round (each with its attempts): a round takes milliseconds under
/// the writer's lock, and rounds run every second, so removal keeps up with ~2,000 messages a second
/// on average (bursts are removed over the following rounds).
const PRUNE_CHUNK: i64 = 2_000;

/// Ages the outbox: a disabled webhook's pending messages older than [`DISABLED_PENDING_DAYS`] fail;
/// settled messages and their attempts are removed [`RETENTION_DAYS`] after they were made, the oldest
/// first, at most [`PRUNE_CHUNK`] a round. Every query walks an index range, never the whole table.
/// Returns the rows changed.
pub(in crate::embedded) fn prune(conn: &Connection, now: Timestamp) -> rusqlite::Result<usize> {
    let now_us = micros(now);
    let day = 86_400_000_000i64;
    let disabled: Vec<(String, String)> = conn
        .prepare_cached("SELECT tenant, webhook_id FROM webhooks WHERE deleted = 0 AND active = 0")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut changed = 0;
    for (tenant, webhook_id) in disabled {
        changed += conn
            .prepare_cached(
                "UPDATE outbox INDEXED BY outbox_due SET state = 2, next_us = ?4
                 WHERE state = 0 AND tenant = ?1 AND webhook_id = ?2 AND created_us < ?3",
            )?
            .execute(params![
                tenant,
                webhook_id,
                now_us - DISABLED_PENDING_DAYS * day,
                i64::MAX
            ])?;
    }
    let old: Vec<(String, String, String)> = conn
        .prepare_cached(
            "SELECT tenant, webhook_id, msg_id FROM outbox INDEXED BY outbox_created
             WHERE created_us < ?1 AND state != 0 ORDER BY created_us LIMIT ?2",
        )?
        .query_map(params![now_us - RETENTION_DAYS * day, PRUNE_CHUNK], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (tenant, webhook_id, msg_id) in old {
        changed += conn
            .prepare_cached(
                "DELETE FROM attempts WHERE tenant = ?1 AND webhook_id = ?2 AND msg_id = ?3",
            )?
            .execute(params![tenant, webhook_id, msg_id])?;
        changed += conn
            .prepare_cached(
                "DELETE FROM outbox WHERE tenant = ?1 AND webhook_id = ?2 AND msg_id = ?3",
            )?
            .execute(params![tenant, webhook_id, msg_id])?;
    }
    Ok(changed)
}
