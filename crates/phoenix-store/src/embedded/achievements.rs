//! The embedded store's achievements and webhooks (SPEC §7.5–7.7): every change is a record of the
//! log, checked under the rewards gate and applied by the ledger's thread before it is answered, like
//! the other rewards writes; the outbox is read and its attempts recorded by the delivery task.

use super::EmbeddedStore;
use super::ledger::achieve::player_progress;
use super::ledger::{LedgerRecord, outbox, q};
use crate::achievements::*;
use crate::model::LeaderboardStatus;
use crate::rewards::{Activity, Page, SettledWindow};
use crate::{StoreError, StoreResult};
use jiff::{SignedDuration, Timestamp};
use std::sync::atomic::Ordering;

/// Most windows per leaderboard reported closed in one round (the maintenance runs every second).
const MAX_CLOSED_PER_ROUND: usize = 100;
/// Live achievements a tenant may have: each active one costs every event of the tenant some work on
/// the ledger's one thread, which every tenant shares.
pub const MAX_ACHIEVEMENTS_PER_TENANT: usize = 100;
/// Live webhooks a tenant may have: each message is made once per webhook.
pub const MAX_WEBHOOKS_PER_TENANT: usize = 20;
/// Sealing context of webhook secrets.
const SECRET_CONTEXT: &str = "webhook-secret";

fn unavailable(e: String) -> StoreError {
    StoreError::Unavailable(e)
}

impl EmbeddedStore {
    fn seal_secret(&self, secret: &str) -> String {
        hex::encode(self.master.seal(SECRET_CONTEXT, secret.as_bytes()))
    }

    /// A new secret: its text (shown once) and its sealed form (kept).
    fn new_webhook_secret(&self) -> (String, String) {
        let secret = phoenix_core::webhook::new_secret(crate::seal::random_bytes::<32>());
        let sealed = self.seal_secret(&secret);
        (secret, sealed)
    }

    pub(super) async fn achievement_create(&self, new: NewAchievement) -> StoreResult<Achievement> {
        let _gate = self.rewards_gate().await?;
        let (tenant, id) = (new.tenant_id.clone(), new.achievement_id.clone());
        if self
            .ledger_read(move |c| q::achievement(c, &tenant, &id))
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "achievement '{}' already exists (or existed) in tenant '{}'",
                new.achievement_id, new.tenant_id
            )));
        }
        let tenant = new.tenant_id.clone();
        if self
            .ledger_read(move |c| q::achievements(c, &tenant))
            .await?
            .len()
            >= MAX_ACHIEVEMENTS_PER_TENANT
        {
            return Err(StoreError::Conflict(format!(
                "tenant '{}' has {MAX_ACHIEVEMENTS_PER_TENANT} achievements, the most it may have; delete one first",
                new.tenant_id
            )));
        }
        let at = self.now();
        let achievement = Achievement {
            tenant_id: new.tenant_id,
            achievement_id: new.achievement_id,
            name: new.name,
            description: new.description,
            status: new.status,
            hidden: new.hidden,
            metric: new.metric,
            steps: new.steps,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        self.commit_ledger(&LedgerRecord::AchievementCreated {
            achievement: achievement.clone(),
        })
        .await?;
        Ok(achievement)
    }

    async fn achievement_live(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<Achievement>> {
        let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
        Ok(self
            .ledger_read(move |c| q::achievement(c, &tenant, &id))
            .await?
            .and_then(|(a, deleted)| (!deleted).then_some(a)))
    }

    pub(super) async fn achievements_list(
        &self,
        tenant_id: &str,
    ) -> StoreResult<Vec<AchievementWithCompletions>> {
        let tenant = tenant_id.to_owned();
        self.ledger_read(move |c| {
            let list = q::achievements(c, &tenant)?;
            list.into_iter()
                .map(|a| {
                    let steps = a.steps.as_array().map_or(0, Vec::len);
                    let completions = q::completions(c, &tenant, &a.achievement_id, steps)?;
                    Ok(AchievementWithCompletions {
                        achievement: a,
                        completions,
                    })
                })
                .collect()
        })
        .await
    }

    pub(super) async fn achievement_get(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<AchievementWithCompletions>> {
        let Some(achievement) = self.achievement_live(tenant_id, id).await? else {
            return Ok(None);
        };
        let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
        let steps = achievement.steps.as_array().map_or(0, Vec::len);
        let completions = self
            .ledger_read(move |c| q::completions(c, &tenant, &id, steps))
            .await?;
        Ok(Some(AchievementWithCompletions {
            achievement,
            completions,
        }))
    }

    pub(super) async fn achievement_update(
        &self,
        tenant_id: &str,
        id: &str,
        patch: AchievementPatch,
    ) -> StoreResult<Option<Achievement>> {
        let _gate = self.rewards_gate().await?;
        let Some(mut a) = self.achievement_live(tenant_id, id).await? else {
            return Ok(None);
        };
        if let Some(name) = patch.name {
            a.name = name;
        }
        if let Some(description) = patch.description {
            a.description = description;
        }
        if let Some(status) = patch.status {
            a.status = status;
        }
        if let Some(hidden) = patch.hidden {
            a.hidden = hidden;
        }
        if let Some(steps) = patch.steps {
            // Checked again here, under the gate, against the steps as they are now (the caller
            // checked a copy read before; another PATCH may have added steps since).
            let parse = |v: &serde_json::Value| phoenix_core::achievement::steps_from_json(v);
            let extends = match (parse(&a.steps), parse(&steps)) {
                (Ok(old), Ok(new)) => phoenix_core::achievement::check_steps_extend(&old, &new),
                (_, Err(e)) | (Err(e), _) => Err(e),
            };
            if let Err(e) = extends {
                return Err(StoreError::Conflict(format!(
                    "the achievement's steps changed meanwhile: {e}"
                )));
            }
            a.steps = steps;
        }
        a.version += 1;
        a.updated_at = self.now().max(a.updated_at);
        self.commit_ledger(&LedgerRecord::AchievementUpdated {
            achievement: a.clone(),
        })
        .await?;
        Ok(Some(a))
    }

    pub(super) async fn achievement_delete(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<Achievement>> {
        let _gate = self.rewards_gate().await?;
        let Some(a) = self.achievement_live(tenant_id, id).await? else {
            return Ok(None);
        };
        self.commit_ledger(&LedgerRecord::AchievementDeleted {
            tenant_id: tenant_id.to_owned(),
            achievement_id: id.to_owned(),
        })
        .await?;
        Ok(Some(a))
    }

    /// A player's progress on every live, active achievement of the tenant (hidden ones included:
    /// the caller decides what to show).
    pub(super) async fn player_achievements_of(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<PlayerAchievement>> {
        let (tenant, user) = (tenant_id.to_owned(), user_id.to_owned());
        // Progress as folded so far (a changed row is written within seconds; until then the cache
        // holds the current one), else as written.
        let cached = self.ledger.cached_progress(tenant_id, user_id);
        self.ledger_read(move |c| {
            let list = q::achievements(c, &tenant)?;
            let progress = match cached {
                Some(entries) => entries,
                None => player_progress(c, &tenant, &user)?,
            };
            Ok(list
                .into_iter()
                .filter(|a| a.status == Activity::Active)
                .map(|a| {
                    let steps = a.steps.as_array().map_or(0, Vec::len);
                    let entry = progress.iter().find(|e| e.a == a.achievement_id);
                    let mut completed_at: Vec<Option<Timestamp>> = entry
                        .map(|e| {
                            e.c.iter()
                                .map(|c| c.and_then(|us| Timestamp::from_microsecond(us).ok()))
                                .collect()
                        })
                        .unwrap_or_default();
                    completed_at.resize(steps, None);
                    PlayerAchievement {
                        value: entry.map_or(0.0, |e| e.v),
                        completed_at,
                        achievement: a,
                    }
                })
                .collect())
        })
        .await
    }

    // ---- webhooks ----

    pub(super) async fn webhook_create(&self, new: NewWebhook) -> StoreResult<(Webhook, String)> {
        let _gate = self.rewards_gate().await?;
        if self.webhooks_list(&new.tenant_id).await?.len() >= MAX_WEBHOOKS_PER_TENANT {
            return Err(StoreError::Conflict(format!(
                "tenant '{}' has {MAX_WEBHOOKS_PER_TENANT} webhooks, the most it may have; delete one first",
                new.tenant_id
            )));
        }
        let at = self.now();
        let webhook = Webhook {
            tenant_id: new.tenant_id,
            webhook_id: format!("wh_{}", crate::seal::random_hex::<8>()),
            url: new.url,
            events: new.events,
            status: new.status,
            description: new.description,
            version: 1,
            created_at: at,
            updated_at: at,
            disabled_reason: None,
        };
        let (secret, sealed) = self.new_webhook_secret();
        self.commit_ledger(&LedgerRecord::WebhookCreated {
            webhook: webhook.clone(),
            secret: sealed,
        })
        .await?;
        Ok((webhook, secret))
    }

    pub(super) async fn webhooks_list(&self, tenant_id: &str) -> StoreResult<Vec<Webhook>> {
        let tenant = tenant_id.to_owned();
        self.ledger_read(move |c| q::webhooks(c, &tenant)).await
    }

    pub(super) async fn webhook_get(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<Webhook>> {
        let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
        self.ledger_read(move |c| q::webhook(c, &tenant, &id)).await
    }

    pub(super) async fn webhook_update(
        &self,
        tenant_id: &str,
        id: &str,
        patch: WebhookPatch,
        disabled_reason: Option<String>,
    ) -> StoreResult<Option<Webhook>> {
        let _gate = self.rewards_gate().await?;
        let Some(mut w) = self.webhook_get(tenant_id, id).await? else {
            return Ok(None);
        };
        if let Some(url) = patch.url {
            w.url = url;
        }
        if let Some(events) = patch.events {
            w.events = events;
        }
        if let Some(status) = patch.status {
            w.status = status;
            w.disabled_reason = match status {
                WebhookStatus::Active => None,
                WebhookStatus::Disabled => disabled_reason,
            };
        }
        if let Some(description) = patch.description {
            w.description = description;
        }
        w.version += 1;
        w.updated_at = self.now().max(w.updated_at);
        self.commit_ledger(&LedgerRecord::WebhookUpdated { webhook: w.clone() })
            .await?;
        Ok(Some(w))
    }

    pub(super) async fn webhook_delete(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<Webhook>> {
        let _gate = self.rewards_gate().await?;
        let Some(w) = self.webhook_get(tenant_id, id).await? else {
            return Ok(None);
        };
        self.commit_ledger(&LedgerRecord::WebhookDeleted {
            tenant_id: tenant_id.to_owned(),
            webhook_id: id.to_owned(),
        })
        .await?;
        Ok(Some(w))
    }

    pub(super) async fn webhook_rotate(
        &self,
        tenant_id: &str,
        id: &str,
        grace: SignedDuration,
    ) -> StoreResult<Option<(Webhook, String)>> {
        let _gate = self.rewards_gate().await?;
        let Some(mut w) = self.webhook_get(tenant_id, id).await? else {
            return Ok(None);
        };
        let now = self.now();
        let (secret, sealed) = self.new_webhook_secret();
        w.version += 1;
        w.updated_at = now.max(w.updated_at);
        self.commit_ledger(&LedgerRecord::WebhookSecretRotated {
            webhook: w.clone(),
            secret: sealed,
            previous_until: now.checked_add(grace).unwrap_or(now),
        })
        .await?;
        Ok(Some((w, secret)))
    }

    pub(super) async fn deliveries_page(
        &self,
        tenant_id: &str,
        id: &str,
        after: Option<(Timestamp, String, u32)>,
        limit: u32,
    ) -> StoreResult<Option<Page<DeliveryRow>>> {
        if self.webhook_get(tenant_id, id).await?.is_none() {
            return Ok(None);
        }
        let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
        let (total, items, more) = self
            .ledger_read(move |c| outbox::deliveries(c, &tenant, &id, after, limit))
            .await?;
        Ok(Some(Page { total, items, more }))
    }

    /// Messages due now: at most `limit` per webhook (of one webhook with `only`).
    pub(super) async fn deliveries_due(
        &self,
        now: Timestamp,
        limit: usize,
        only: Option<(String, String)>,
    ) -> StoreResult<Vec<DueDelivery>> {
        let master = self.master.clone();
        let only_asked = only.clone();
        let due = self
            .ledger_read(move |c| {
                let unseal = |hexed: &str| -> Option<Vec<u8>> {
                    let sealed = hex::decode(hexed).ok()?;
                    let secret = master.unseal(SECRET_CONTEXT, &sealed)?;
                    phoenix_core::webhook::secret_key(std::str::from_utf8(&secret).ok()?)
                };
                outbox::due(c, now, limit, only.as_ref(), &unseal)
            })
            .await?;
        // In a cluster every node's outbox holds every message: each attempt is claimed in
        // PostgreSQL first, so one node makes it. A survey (no `only`) claims nothing.
        let (super::log::Log::Pg(log), Some(_)) = (&self.log, &only_asked) else {
            return Ok(due);
        };
        let wanted = due
            .iter()
            .map(|d| (delivery_key(d), d.attempt as i32))
            .collect();
        let claimed: std::collections::HashSet<String> =
            log.claim_deliveries(wanted).await?.into_iter().collect();
        Ok(due
            .into_iter()
            .filter(|d| claimed.contains(&delivery_key(d)))
            .collect())
    }

    /// Records an attempt; a 410 answer disables the webhook (a record of the log).
    pub(super) async fn delivery_record(
        &self,
        due: DueDelivery,
        outcome: AttemptOutcome,
        next: Option<Timestamp>,
    ) -> StoreResult<DeliveryState> {
        let state = match &self.log {
            // A cluster records the outcome in the log, so every node's outbox and deliveries log
            // read the same, and the next attempt is due on every node alike.
            super::log::Log::Pg(log) => {
                let record = LedgerRecord::DeliveryAttempted {
                    tenant_id: due.tenant_id.clone(),
                    webhook_id: due.webhook_id.clone(),
                    message_id: due.message_id.clone(),
                    attempt: due.attempt,
                    attempted_at: outcome.attempted_at,
                    status_code: outcome.status_code,
                    error: outcome.error.clone(),
                    duration_ms: outcome.duration_ms,
                    delivered: outcome.delivered,
                    next,
                };
                let payload = super::wal::encode_ledger(&record).map_err(unavailable)?;
                let end = self.log.append(&payload, None, None).await?;
                self.ledger.wait_applied(end).await.map_err(unavailable)?;
                log.delivery_recorded(delivery_key(&due), due.attempt as i32)
                    .await?;
                if outcome.delivered {
                    DeliveryState::Delivered
                } else if next.is_some() {
                    DeliveryState::Pending
                } else {
                    DeliveryState::Failed
                }
            }
            super::log::Log::File(_) => {
                let ledger = self.ledger.clone();
                let (d, o) = (due.clone(), outcome.clone());
                tokio::task::spawn_blocking(move || ledger.record_attempt(&d, &o, next))
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
                    .map_err(unavailable)?
            }
        };
        let c = &self.ledger.counters;
        match state {
            DeliveryState::Delivered => {
                c.deliveries_delivered.fetch_add(1, Ordering::Relaxed);
                let lag = outcome
                    .attempted_at
                    .duration_since(due.created_at)
                    .as_millis()
                    .max(0);
                c.delivery_lag_ms_sum
                    .fetch_add(u64::try_from(lag).unwrap_or(0), Ordering::Relaxed);
            }
            DeliveryState::Pending => {
                c.deliveries_retried.fetch_add(1, Ordering::Relaxed);
            }
            DeliveryState::Failed => {
                c.deliveries_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if outcome.gone {
            let reason = format!("the receiver answered 410 Gone at {}", outcome.attempted_at);
            self.webhook_update(
                &due.tenant_id,
                &due.webhook_id,
                WebhookPatch {
                    status: Some(WebhookStatus::Disabled),
                    ..WebhookPatch::default()
                },
                Some(reason),
            )
            .await?;
        }
        Ok(state)
    }

    /// Reports the windows that ended (of active leaderboards) to tenants with a webhook that takes
    /// `window.closed`: a `WindowClosed` record each, once (the ledger keeps the last one reported).
    pub(super) async fn close_ended_windows(&self) -> StoreResult<usize> {
        let hooks = self.ledger_read(q::window_hooks).await?;
        if hooks.is_empty() {
            return Ok(0);
        }
        // Per tenant, from when its first such webhook was made.
        let mut tenants: std::collections::BTreeMap<String, Timestamp> = Default::default();
        for h in hooks {
            let at = tenants.entry(h.tenant_id.clone()).or_insert(h.created_at);
            *at = (*at).min(h.created_at);
        }
        let now = self.now();
        let mut made = 0;
        for (tenant, since) in tenants {
            let boards: Vec<(String, u64)> = self
                .read()
                .leaderboards
                .values()
                .filter(|lb| {
                    lb.tenant_id.as_str() == tenant && lb.status == LeaderboardStatus::Active
                })
                .map(|lb| (lb.leaderboard_id.to_string(), lb.uid))
                .collect();
            for (leaderboard_id, uid) in boards {
                let (t, l) = (tenant.clone(), leaderboard_id.clone());
                let last = self
                    .ledger_read(move |c| q::last_closed(c, &t, &l, uid))
                    .await?
                    .and_then(|us| Timestamp::from_microsecond(us).ok());
                let from = last.map_or(since, |l| l.max(since));
                let due: Vec<phoenix_core::window::Window> = {
                    let engine = self.folded.engine();
                    let Some(lb) = engine.leaderboard_state(&tenant, uid) else {
                        continue;
                    };
                    let timeframe = &lb.config.timeframe;
                    let mut due = Vec::new();
                    let mut next = timeframe.window_for(from).or_else(|| {
                        let (w, _) = timeframe.current_window(from);
                        w.ends_at.map(|_| w)
                    });
                    while let Some(w) = next {
                        let Some(end) = w.ends_at else { break };
                        if end > now || due.len() >= MAX_CLOSED_PER_ROUND {
                            break;
                        }
                        next = timeframe.next_window(&w);
                        if end > from {
                            let mut w = w;
                            w.id = w.id.for_incarnation(lb.incarnation);
                            due.push(w);
                        }
                    }
                    due
                };
                for w in due {
                    // No gate: a window reported twice (two nodes at once) is folded once.
                    self.commit_ledger_unfenced(&LedgerRecord::WindowClosed {
                        tenant_id: tenant.clone(),
                        leaderboard_id: leaderboard_id.clone(),
                        uid,
                        window: SettledWindow {
                            id: w.id.as_str().to_owned(),
                            starts_at: w.starts_at,
                            ends_at: w.ends_at,
                        },
                        at: w.ends_at.unwrap_or(now),
                    })
                    .await?;
                    made += 1;
                }
            }
        }
        Ok(made)
    }
}

/// A message's key among the cluster's delivery claims.
fn delivery_key(d: &DueDelivery) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}",
        d.tenant_id, d.webhook_id, d.message_id
    )
}
