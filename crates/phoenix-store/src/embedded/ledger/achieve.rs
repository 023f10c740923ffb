//! Achievements in the ledger (SPEC §7.5): the events of tenants with achievements are folded into
//! each player's progress, in log order, on the ledger's thread (and on replay, from the ledger's
//! watermark), so a duplicate event (never in the log) counts nothing and a replay completes the same
//! steps at the same events.
//!
//! Progress lives in the `progress` table, one row per player with every achievement of the tenant.
//! Events are applied to a write-back cache of those rows and committed together with the
//! completions they caused (grants, counts, webhook messages) and the watermark, in one transaction
//! at most [`FLUSH_INTERVAL`] after the first uncommitted change (or sooner when the cache grows or any
//! other ledger record arrives). A crash loses only uncommitted work, which the log replays.
//!
//! Memory: the cache holds at most [`MAX_CACHED_PLAYERS`] players (clean ones are dropped after a
//! commit when it is over), and a definition per active achievement.

use super::outbox;
use super::*;
use phoenix_core::achievement::{Metric, Progress, Step, newly_completed};
use phoenix_core::event::Event;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Longest time an applied event's effect waits before it is committed (and visible to reads).
pub(in crate::embedded) const FLUSH_INTERVAL: std::time::Duration =
    std::time::Duration::from_millis(200);
/// Players whose progress the cache holds before it is emptied after a commit.
const MAX_CACHED_PLAYERS: usize = 200_000;
/// Changed players that make a commit happen at once.
const MAX_DIRTY_PLAYERS: usize = 50_000;
/// Event records queued for the ledger's thread beyond which the log's writer waits (backpressure).
pub(in crate::embedded) const MAX_QUEUED_EVENTS: u64 = 200_000;

/// An active achievement, parsed.
pub(super) struct Def {
    pub id: String,
    pub metric: Metric,
    pub steps: Vec<Step>,
}

impl Def {
    pub(super) fn parse(a: &Achievement) -> Result<Def, String> {
        Ok(Def {
            id: a.achievement_id.clone(),
            metric: Metric::from_json(&a.metric).map_err(|e| e.to_string())?,
            steps: phoenix_core::achievement::steps_from_json(&a.steps)
                .map_err(|e| e.to_string())?,
        })
    }
}

/// One achievement's progress in a player's row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(in crate::embedded) struct Entry {
    /// The achievement.
    pub a: String,
    /// The value (count, sum, best streak).
    pub v: f64,
    /// Per step, the completion time (Unix microseconds), `None` while not completed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub c: Vec<Option<i64>>,
    /// A streak's runs of days.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r: Vec<(i32, i32)>,
}

struct Cached {
    entries: Vec<Entry>,
    dirty: bool,
}

/// A step completed by an event, waiting for its commit.
struct Completion {
    tenant: String,
    achievement_id: String,
    user_id: String,
    step: u32,
    threshold: f64,
    at: Timestamp,
    rewards: Vec<Reward>,
}

/// The uncommitted state of achievements and the active definitions.
#[derive(Default)]
pub(super) struct Hot {
    /// Active achievements by tenant.
    defs: HashMap<String, Vec<Arc<Def>>>,
    cache: HashMap<(String, String), Cached>,
    dirty: usize,
    completions: Vec<Completion>,
    /// End of the last event record applied but not committed (0: none).
    pending_end: u64,
    /// When the first uncommitted change was made.
    pending_since: Option<std::time::Instant>,
}

impl Hot {
    pub(super) fn set_defs(&mut self, tenant: &str, defs: Vec<Arc<Def>>) {
        if defs.is_empty() {
            self.defs.remove(tenant);
        } else {
            self.defs.insert(tenant.to_owned(), defs);
        }
    }
}

/// The active achievements of a tenant, parsed (an unreadable one is logged and left out).
pub(super) fn load_defs(conn: &Connection, tenant: &str) -> Result<Vec<Arc<Def>>, String> {
    let list = q::achievements(conn, tenant).map_err(sql)?;
    Ok(list
        .into_iter()
        .filter(|a| a.status == Activity::Active)
        .filter_map(|a| match Def::parse(&a) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::error!(achievement = %a.achievement_id, error = %e, "an achievement no longer parses; it is not scored");
                None
            }
        })
        .collect())
}

/// Every tenant that has an achievement (deleted ones aside), and the active definitions.
pub(super) fn load_all(conn: &Connection) -> Result<(HashSet<String>, Hot), String> {
    let tenants: Vec<String> = conn
        .prepare("SELECT DISTINCT tenant FROM achievements WHERE deleted = 0")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql)?;
    let mut hot = Hot::default();
    for tenant in &tenants {
        let defs = load_defs(conn, tenant)?;
        hot.set_defs(tenant, defs);
    }
    Ok((tenants.into_iter().collect(), hot))
}

fn read_row(conn: &Connection, tenant: &str, user: &str) -> Result<Vec<Entry>, String> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM progress WHERE tenant = ?1 AND user_id = ?2")
        .and_then(|mut s| s.query_row(params![tenant, user], |r| r.get(0)).optional())
        .map_err(sql)?;
    match body {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| format!("progress row: {e}")),
    }
}

/// A player's progress as committed (reads).
pub(in crate::embedded) fn player_progress(
    conn: &Connection,
    tenant: &str,
    user: &str,
) -> rusqlite::Result<Vec<Entry>> {
    read_row(conn, tenant, user).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

impl Ledger {
    /// Whether events of `tenant` may matter to achievements (a superset: every tenant that has had an
    /// achievement since the start). Asked by the log's writer, in log order.
    pub(in crate::embedded) fn wants_events(&self, tenant: &str) -> bool {
        let tenants = self.event_tenants.read().unwrap_or_else(|p| p.into_inner());
        !tenants.is_empty() && tenants.contains(tenant)
    }

    /// Notes, in log order, that a tenant has achievements (before any later event is handed over).
    pub(in crate::embedded) fn note_record(&self, record: &LedgerRecord) {
        if let LedgerRecord::AchievementCreated { achievement }
        | LedgerRecord::AchievementUpdated { achievement } = record
        {
            let mut tenants = self
                .event_tenants
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if !tenants.contains(&achievement.tenant_id) {
                tenants.insert(achievement.tenant_id.clone());
            }
        }
    }

    /// Folds one event record (ending at log position `end`) into the players' progress. Its effects
    /// are committed by [`Ledger::flush`] (called here when the cache grows).
    pub(in crate::embedded) fn apply_events(
        &self,
        end: u64,
        tenant: &str,
        accepted_at: Timestamp,
        events: &[Event],
    ) -> Result<(), String> {
        if end <= self.watermark() {
            return Ok(());
        }
        if !self.is_healthy() {
            return Err("the rewards ledger stopped after an earlier failure".into());
        }
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(defs) = hot.defs.get(tenant).cloned() else {
            return Ok(());
        };
        // The log keeps microseconds: the same instant live and on replay.
        let at_us = micros(accepted_at);
        let accepted_at = from_micros(at_us);
        let mut changed = false;
        for event in events {
            for def in &defs {
                let Some(contribution) = def.metric.contribution(event) else {
                    continue;
                };
                let user = event.user_id();
                let key = (tenant.to_owned(), user.to_owned());
                if !hot.cache.contains_key(&key) {
                    let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                    let entries = read_row(&conn, tenant, user)?;
                    drop(conn);
                    hot.cache.insert(
                        key.clone(),
                        Cached {
                            entries,
                            dirty: false,
                        },
                    );
                }
                let Hot {
                    cache,
                    dirty,
                    completions,
                    ..
                } = &mut *hot;
                let Some(cached) = cache.get_mut(&key) else {
                    continue;
                };
                let entry = match cached.entries.iter().position(|e| e.a == def.id) {
                    Some(i) => &mut cached.entries[i],
                    None => {
                        cached.entries.push(Entry {
                            a: def.id.clone(),
                            ..Entry::default()
                        });
                        let last = cached.entries.len() - 1;
                        &mut cached.entries[last]
                    }
                };
                let mut progress = Progress {
                    value: entry.v,
                    runs: std::mem::take(&mut entry.r),
                };
                let value = progress.apply(contribution);
                entry.v = value;
                entry.r = progress.runs;
                let done: Vec<bool> = entry.c.iter().map(Option::is_some).collect();
                for step in newly_completed(&def.steps, &done, value) {
                    if entry.c.len() <= step {
                        entry.c.resize(step + 1, None);
                    }
                    entry.c[step] = Some(at_us);
                    completions.push(Completion {
                        tenant: tenant.to_owned(),
                        achievement_id: def.id.clone(),
                        user_id: user.to_owned(),
                        step: step as u32,
                        threshold: def.steps[step].threshold,
                        at: accepted_at,
                        rewards: def.steps[step].rewards.clone(),
                    });
                }
                if !cached.dirty {
                    cached.dirty = true;
                    *dirty += 1;
                }
                changed = true;
            }
        }
        if changed || hot.pending_end > 0 {
            hot.pending_end = end;
            hot.pending_since
                .get_or_insert_with(std::time::Instant::now);
        }
        let full = hot.dirty >= MAX_DIRTY_PLAYERS;
        drop(hot);
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// When uncommitted progress must be committed at the latest (`None`: nothing waits).
    pub(in crate::embedded) fn flush_due(&self) -> Option<std::time::Instant> {
        let hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        hot.pending_since.map(|since| since + FLUSH_INTERVAL)
    }

    /// Commits the progress changed by applied events, the completions they caused and the watermark,
    /// in one transaction.
    pub(in crate::embedded) fn flush(&self) -> Result<(), String> {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        if hot.pending_end == 0 {
            return Ok(());
        }
        let end = hot.pending_end;
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            let tx = conn.transaction().map_err(sql)?;
            let stored: i64 = tx
                .query_row("SELECT v FROM ledger_meta WHERE k = 'applied'", [], |r| {
                    r.get(0)
                })
                .map_err(sql)?;
            if end <= stored.max(0) as u64 {
                return Ok((0, 0));
            }
            for ((tenant, user), cached) in hot.cache.iter().filter(|(_, c)| c.dirty) {
                let body = json_text(&cached.entries)?;
                tx.prepare_cached(
                    "INSERT INTO progress(tenant, user_id, body) VALUES(?1, ?2, ?3)
                     ON CONFLICT(tenant, user_id) DO UPDATE SET body = excluded.body",
                )
                .and_then(|mut s| s.execute(params![tenant, user, body]))
                .map_err(sql)?;
            }
            let (completed, granted) = write_completions(&tx, &hot.completions, &self.code_key)?;
            tx.execute(
                "UPDATE ledger_meta SET v = ?1 WHERE k = 'applied'",
                params![end as i64],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok::<_, String>((completed, granted))
        })();
        drop(conn);
        match result {
            Ok((completed, granted)) => {
                for cached in hot.cache.values_mut() {
                    cached.dirty = false;
                }
                hot.dirty = 0;
                hot.completions.clear();
                hot.pending_end = 0;
                hot.pending_since = None;
                if hot.cache.len() > MAX_CACHED_PLAYERS {
                    hot.cache = HashMap::new();
                }
                drop(hot);
                self.applied.fetch_max(end, Ordering::AcqRel);
                self.progress.send_replace(self.watermark());
                self.counters
                    .completions
                    .fetch_add(completed, Ordering::Relaxed);
                self.counters
                    .grants_achievement
                    .fetch_add(granted, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                drop(hot);
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// Sets a tenant's active achievements (after a change to one was committed).
    pub(super) fn set_defs(&self, tenant: &str, defs: Vec<Arc<Def>>) {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        hot.set_defs(tenant, defs);
    }
}

/// Writes completed steps: their counts, their grants, and their webhook messages. Returns the
/// completions and the grants made.
fn write_completions(
    tx: &Transaction<'_>,
    completions: &[Completion],
    code_key: &[u8; 32],
) -> Result<(u64, u64), String> {
    let mut granted = 0u64;
    let mut routes: HashMap<&str, outbox::Routes> = HashMap::new();
    for c in completions {
        let tenant = c.tenant.as_str();
        if !routes.contains_key(tenant) {
            routes.insert(tenant, outbox::routes(tx, tenant)?);
        }
        let route = &routes[tenant];
        add_count(
            tx,
            tenant,
            "c",
            &format!("{}/{}", c.achievement_id, c.step),
            1,
        )
        .map_err(sql)?;
        let source = GrantSource {
            kind: "achievement".into(),
            id: c.achievement_id.clone(),
            leaderboard_id: None,
            window_id: None,
            rank: None,
            step: Some(c.step),
            threshold: Some(c.threshold),
            code: None,
        };
        let source_text = json_text(&source)?;
        let mut grant_ids = Vec::with_capacity(c.rewards.len());
        let mut new_grants = 0i64;
        for (index, reward) in c.rewards.iter().enumerate() {
            let key = grant_key(
                tenant,
                IdSource::Achievement {
                    achievement_id: &c.achievement_id,
                    step: c.step,
                },
                &c.user_id,
                index,
            );
            let grant_id = grant_id_of_key(key);
            let coupon_code = match reward {
                Reward::Coupon { campaign_id } => {
                    let code = derived_code(tx, code_key, tenant, &key)?;
                    insert_code(tx, tenant, &code, campaign_id, true, Some(&c.user_id), c.at)?;
                    Some(code)
                }
                _ => None,
            };
            let reward_json = reward.to_json();
            if insert_grant(
                tx,
                &NewGrant {
                    tenant,
                    key,
                    user_id: &c.user_id,
                    created_at: c.at,
                    source_id: &c.achievement_id,
                    template: template_id(tx, &json_text(&reward_json)?, &source_text)?,
                    rank: None,
                    coupon_code: coupon_code.as_deref(),
                },
            )? {
                new_grants += 1;
                outbox::enqueue(
                    tx,
                    route,
                    tenant,
                    "reward.granted",
                    &grant_id,
                    c.at,
                    grant_json(
                        &grant_id,
                        &c.user_id,
                        reward_json,
                        &source,
                        GrantStatus::Pending,
                        c.at,
                        (None, None, None),
                        coupon_code.as_deref(),
                    ),
                )?;
            }
            grant_ids.push(grant_id);
        }
        count_grant(
            tx,
            tenant,
            &c.achievement_id,
            GrantStatus::Pending,
            new_grants,
        )
        .map_err(sql)?;
        granted += new_grants as u64;
        outbox::enqueue(
            tx,
            route,
            tenant,
            "achievement.completed",
            &format!("{}/{}/{}", c.achievement_id, c.user_id, c.step),
            c.at,
            serde_json::json!({
                "achievement_id": c.achievement_id,
                "user_id": c.user_id,
                "step": c.step,
                "threshold": c.threshold,
                "grant_ids": grant_ids,
            }),
        )?;
    }
    Ok((completions.len() as u64, granted))
}
