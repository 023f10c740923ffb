//! The embedded store's rewards (SPEC §7.1–7.4): each write is checked against the ledger under the
//! rewards gate, appended to the log as a [`LedgerRecord`], and applied (by the log's writer thread)
//! before it is answered; reads go to the ledger's SQLite database off the async workers.

use super::ledger::{LedgerRecord, q};
use super::meta::MetaRecord;
use super::{EmbeddedStore, wal};
use crate::model::LeaderboardStatus;
use crate::rewards::*;
use crate::{StoreError, StoreResult};
use jiff::{SignedDuration, Timestamp};
use phoenix_core::reward::{Tier, deepest_rank, plan_slots, tiers_from_json};
use phoenix_core::window::WindowId;
use std::sync::atomic::Ordering;

/// Most windows of one rule the settler settles in one round (it runs every second).
const MAX_WINDOWS_PER_ROUND: usize = 100;

/// Most personal codes made per request (SPEC §7.4).
pub const MAX_CODES_PER_REQUEST: u32 = 10_000;

fn unavailable(e: String) -> StoreError {
    StoreError::Unavailable(e)
}

fn settled_window(w: &phoenix_core::window::Window) -> SettledWindow {
    SettledWindow {
        id: w.id.as_str().to_owned(),
        starts_at: w.starts_at,
        ends_at: w.ends_at,
    }
}

impl EmbeddedStore {
    /// Runs a ledger read off the async workers.
    pub(super) async fn ledger_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        // Waits for one of the ledger's read connections here, not parked on a blocking thread.
        let _permit = self
            .ledger
            .read_permits
            .acquire()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || ledger.read(f))
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(unavailable)
    }

    /// Takes the rewards gate once the ledger has applied everything handed to it so far, so a check
    /// made under the gate sees every earlier change (a writer holds the gate until its own record is
    /// applied; the server runs rewards writes as tasks of their own, so a client that goes away does
    /// not end one between its append and its application).
    /// In a cluster the gate is the cluster's as well (see `meta_gate`).
    pub(super) async fn rewards_gate(&self) -> StoreResult<super::log::Gate<'_>> {
        let local = self.rewards_gate.lock().await;
        let cluster = self
            .log
            .cluster_gate(crate::pglog::FenceKind::Rewards)
            .await?;
        self.ledger.wait_drained().await.map_err(unavailable)?;
        Ok(super::log::Gate::new(local, cluster, &self.rewards_fence))
    }

    /// Appends a rewards record and waits until the ledger's thread has applied it.
    /// Call with the rewards gate held.
    pub(super) async fn commit_ledger(&self, record: &LedgerRecord) -> StoreResult<()> {
        if !self.ledger.is_healthy() {
            return Err(unavailable(
                "the rewards ledger stopped after a failure; see the server log".into(),
            ));
        }
        let payload = wal::encode_ledger(record).map_err(unavailable)?;
        let end = self.append_fenced(&payload, &self.rewards_fence).await?;
        self.ledger.wait_applied(end).await.map_err(unavailable)
    }

    /// Appends a rewards record that decides nothing (the fold ignores it when it repeats an earlier
    /// one, e.g. a window reported closed twice), without the gate, and waits until it is applied.
    pub(super) async fn commit_ledger_unfenced(&self, record: &LedgerRecord) -> StoreResult<()> {
        let payload = wal::encode_ledger(record).map_err(unavailable)?;
        let end = self.log.append(&payload, None, None).await?;
        self.ledger.wait_applied(end).await.map_err(unavailable)
    }

    pub(super) async fn rule_create(&self, new: NewRewardRule) -> StoreResult<RewardRule> {
        let _gate = self.rewards_gate().await?;
        let (tenant, id) = (new.tenant_id.clone(), new.rule_id.clone());
        if self
            .ledger_read(move |c| q::rule(c, &tenant, &id))
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "reward rule '{}' already exists (or existed) in tenant '{}'",
                new.rule_id, new.tenant_id
            )));
        }
        let at = self.now();
        // A rule made while its board is inactive starts paused: windows ending before the board is
        // active again are not settled by themselves.
        let board_active = self
            .read()
            .leaderboard(&new.tenant_id, &new.leaderboard_id)
            .is_some_and(|lb| lb.status == LeaderboardStatus::Active);
        let rule = RewardRule {
            tenant_id: new.tenant_id,
            rule_id: new.rule_id,
            leaderboard_id: new.leaderboard_id,
            name: new.name,
            status: new.status,
            min_participants: new.min_participants,
            settle_delay_seconds: new.settle_delay_seconds,
            tiers: new.tiers,
            version: 1,
            created_at: at,
            updated_at: at,
            active_since: at,
            board_paused: if board_active {
                Vec::new()
            } else {
                vec![(at, None)]
            },
        };
        self.commit_ledger(&LedgerRecord::RuleCreated { rule: rule.clone() })
            .await?;
        Ok(rule)
    }

    pub(super) async fn rules_list(
        &self,
        tenant_id: &str,
        leaderboard_id: Option<&str>,
    ) -> StoreResult<Vec<RewardRule>> {
        let (tenant, lb) = (tenant_id.to_owned(), leaderboard_id.map(str::to_owned));
        self.ledger_read(move |c| q::rules(c, &tenant, lb.as_deref()))
            .await
    }

    /// A live (not deleted) rule.
    pub(super) async fn rule_get(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<RewardRule>> {
        let (tenant, id) = (tenant_id.to_owned(), rule_id.to_owned());
        Ok(self
            .ledger_read(move |c| q::rule(c, &tenant, &id))
            .await?
            .and_then(|(rule, deleted)| (!deleted).then_some(rule)))
    }

    pub(super) async fn rule_update(
        &self,
        tenant_id: &str,
        rule_id: &str,
        patch: RewardRulePatch,
    ) -> StoreResult<Option<RewardRule>> {
        let _gate = self.rewards_gate().await?;
        let Some(mut rule) = self.rule_get(tenant_id, rule_id).await? else {
            return Ok(None);
        };
        let now = self.now();
        if let Some(name) = patch.name {
            rule.name = name;
        }
        if let Some(status) = patch.status {
            if status == Activity::Active && rule.status != Activity::Active {
                // Windows that ended while it was inactive are settled only by hand.
                rule.active_since = now.max(rule.active_since);
            }
            rule.status = status;
        }
        if let Some(n) = patch.min_participants {
            rule.min_participants = n;
        }
        if let Some(d) = patch.settle_delay_seconds {
            rule.settle_delay_seconds = d;
        }
        if let Some(tiers) = patch.tiers {
            rule.tiers = tiers;
        }
        rule.version += 1;
        rule.updated_at = now.max(rule.updated_at);
        self.commit_ledger(&LedgerRecord::RuleUpdated { rule: rule.clone() })
            .await?;
        Ok(Some(rule))
    }

    pub(super) async fn rule_delete(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<RewardRule>> {
        let _gate = self.rewards_gate().await?;
        let Some(rule) = self.rule_get(tenant_id, rule_id).await? else {
            return Ok(None);
        };
        self.commit_ledger(&LedgerRecord::RuleDeleted {
            tenant_id: tenant_id.to_owned(),
            rule_id: rule_id.to_owned(),
        })
        .await?;
        Ok(Some(rule))
    }

    /// The uid of the incarnation of `leaderboard_id` a window id belongs to.
    fn incarnation_uid(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        window: &WindowId,
    ) -> Option<u64> {
        self.read()
            .incarnations(tenant_id, leaderboard_id)
            .get((window.incarnation() as usize).checked_sub(1)?)
            .copied()
    }

    /// When the leaderboard incarnation `uid` was created and, if it was, deleted.
    fn lifetime_of(&self, uid: u64) -> Option<(Timestamp, Option<Timestamp>)> {
        let state = self.read();
        if let Some(lb) = state.leaderboards.values().find(|lb| lb.uid == uid) {
            return Some((lb.created_at, None));
        }
        state
            .deleted
            .get(&uid)
            .map(|(lb, deleted)| (lb.created_at, Some(*deleted)))
    }

    /// Makes sure the log has frozen every window that ended by `now` (a `Tick` when no record has
    /// passed its end yet), so a settlement record always follows its window's end in the log.
    async fn freeze_up_to(&self, end: Timestamp) -> StoreResult<()> {
        let high_water = self.folded.accepted_high_water.load(Ordering::Acquire);
        if high_water >= end.as_microsecond() {
            return Ok(());
        }
        let _gate = self.write_gate.lock().await;
        if self.folded.accepted_high_water.load(Ordering::Acquire) < end.as_microsecond() {
            self.commit(MetaRecord::Tick {
                at: self.now().max(end),
            })
            .await?;
        }
        // In a cluster the tick takes the log's time, which may not have reached the end yet (this
        // node's estimate of the database's clock ran a little ahead): then the window is not
        // frozen, and settling waits for a later round.
        if self.folded.accepted_high_water.load(Ordering::Acquire) < end.as_microsecond() {
            return Err(StoreError::Unavailable(
                "the window has not ended by the cluster's clock yet".into(),
            ));
        }
        Ok(())
    }

    /// Settles `rule` over an ended window (of leaderboard incarnation `uid`) unless it is settled.
    /// Call with the rewards gate held. `Ok(Err(existing))` when it was settled before.
    async fn settle_locked(
        &self,
        rule: &RewardRule,
        uid: u64,
        window: SettledWindow,
        automatic: bool,
    ) -> StoreResult<Result<Settlement, Settlement>> {
        let (tenant, id, wid) = (
            rule.tenant_id.clone(),
            rule.rule_id.clone(),
            window.id.clone(),
        );
        if let Some(existing) = self
            .ledger_read(move |c| q::settlement(c, &tenant, &id, &wid))
            .await?
        {
            return Ok(Err(existing));
        }
        if let Some(end) = window.ends_at {
            self.freeze_up_to(end).await?;
        }
        let record = LedgerRecord::Settled {
            tenant_id: rule.tenant_id.clone(),
            rule_id: rule.rule_id.clone(),
            rule_version: rule.version,
            leaderboard_id: rule.leaderboard_id.clone(),
            uid,
            window: window.clone(),
            tiers: rule.tiers.clone(),
            min_participants: rule.min_participants,
            settled_at: self.now(),
            automatic,
        };
        self.commit_ledger(&record).await?;
        let (tenant, id, wid) = (
            rule.tenant_id.clone(),
            rule.rule_id.clone(),
            window.id.clone(),
        );
        self.ledger_read(move |c| q::settlement(c, &tenant, &id, &wid))
            .await?
            .map(Ok)
            .ok_or_else(|| unavailable("a settlement was written but not applied".into()))
    }

    pub(super) async fn settle_now(
        &self,
        tenant_id: &str,
        rule_id: &str,
        window_id: &str,
    ) -> StoreResult<Option<SettleOutcome>> {
        let _gate = self.rewards_gate().await?;
        let Some(rule) = self.rule_get(tenant_id, rule_id).await? else {
            return Ok(None);
        };
        let Some(id) = WindowId::parse(window_id) else {
            return Ok(Some(SettleOutcome::UnknownWindow));
        };
        let Some(uid) = self.incarnation_uid(tenant_id, &rule.leaderboard_id, &id) else {
            return Ok(Some(SettleOutcome::UnknownWindow));
        };
        let now = self.now();
        let found = {
            let engine = self.folded.engine();
            let Some(lb) = engine.leaderboard_state(tenant_id, uid) else {
                return Ok(Some(SettleOutcome::UnknownWindow));
            };
            match lb
                .window(&id)
                .map(|w| w.window.clone())
                .or_else(|| lb.cold_window(&id).cloned())
            {
                Some(w) => Some(w),
                // A window without standings (nobody scored in it): known by its id from the
                // timeframe, so an upcoming one is 409 and an ended one settles with no grants.
                // Only windows the leaderboard lived in: ending after it was created.
                None => {
                    // Only windows the leaderboard lived in: ending after it was created, and
                    // starting before it was deleted.
                    let lifetime = self.lifetime_of(uid);
                    lb.config
                        .timeframe
                        .window_by_id(&id)
                        .filter(|w| {
                            lifetime.is_some_and(|(created, deleted)| {
                                w.ends_at.is_none_or(|end| end > created)
                                    && deleted.is_none_or(|d| w.starts_at.is_none_or(|s| s < d))
                            })
                        })
                        .map(|mut w| {
                            w.id = id.clone();
                            w
                        })
                }
            }
        };
        let Some(window) = found else {
            return Ok(Some(SettleOutcome::UnknownWindow));
        };
        if !window.is_closed_at(now) {
            return Ok(Some(SettleOutcome::NotEnded));
        }
        Ok(Some(
            match self
                .settle_locked(&rule, uid, settled_window(&window), false)
                .await?
            {
                Ok(made) => SettleOutcome::Created(made),
                Err(existing) => SettleOutcome::Existing(existing),
            },
        ))
    }

    pub(super) async fn settle_due_windows(&self) -> StoreResult<usize> {
        // Rules as of every change handed to the ledger so far (a leaderboard's reactivation moves
        // its rules' `active_since`).
        self.ledger.wait_drained().await.map_err(unavailable)?;
        let rules = self.ledger_read(q::active_rules).await?;
        let now = self.now();
        let mut made = 0;
        for rule in rules {
            let board = self
                .read()
                .leaderboard(&rule.tenant_id, &rule.leaderboard_id)
                .map(|lb| (lb.uid, lb.status));
            // An inactive board's rule still settles the windows that ended while it was active.
            let (uid, until) = match board {
                Some((uid, LeaderboardStatus::Active)) => (uid, None),
                Some((uid, _)) if rule.board_paused_since().is_some() => {
                    (uid, rule.board_paused_since())
                }
                _ => continue,
            };
            let (tenant, id) = (rule.tenant_id.clone(), rule.rule_id.clone());
            let last = self
                .ledger_read(move |c| q::last_automatic(c, &tenant, &id))
                .await?
                .and_then(|us| Timestamp::from_microsecond(us).ok());
            let delay = SignedDuration::from_secs(i64::from(rule.settle_delay_seconds));
            // Every window of the timeframe that ended after the rule (or its board) became active
            // and after the last automatic settlement, whether anyone scored in it or not; at most
            // `MAX_WINDOWS_PER_ROUND` a round, oldest first (a long downtime catches up over rounds).
            let due: Vec<phoenix_core::window::Window> = {
                let engine = self.folded.engine();
                let Some(lb) = engine.leaderboard_state(&rule.tenant_id, uid) else {
                    continue;
                };
                let timeframe = &lb.config.timeframe;
                let from = last.map_or(rule.active_since, |l| l.max(rule.active_since));
                let ended = |w: &phoenix_core::window::Window| {
                    w.ends_at.is_some_and(|end| {
                        end > from
                            && until.is_none_or(|until| end <= until)
                            && !rule.board_paused_at(end)
                            && end
                                .checked_add(delay)
                                .is_ok_and(|settle_at| settle_at <= now)
                    })
                };
                let mut due = Vec::new();
                // The window holding `from`, or (a custom board not begun then) its only window.
                let mut next = timeframe.window_for(from).or_else(|| {
                    let (w, _) = timeframe.current_window(from);
                    w.ends_at.map(|_| w)
                });
                while let Some(w) = next {
                    let past_until = until.is_some_and(|u| w.ends_at.is_none_or(|end| end > u));
                    if past_until
                        || due.len() >= MAX_WINDOWS_PER_ROUND
                        || w.ends_at.is_none_or(|end| {
                            end.checked_add(delay)
                                .is_ok_and(|settle_at| settle_at > now)
                        })
                    {
                        break;
                    }
                    next = timeframe.next_window(&w);
                    if ended(&w) {
                        let mut w = w;
                        w.id = w.id.for_incarnation(lb.incarnation);
                        due.push(w);
                    }
                }
                due
            };
            for window in due {
                let _gate = self.rewards_gate().await?;
                // The rule as it is at this moment (SPEC §7.2), still active.
                let Some(current) = self.rule_get(&rule.tenant_id, &rule.rule_id).await? else {
                    break;
                };
                if current.status != Activity::Active {
                    break;
                }
                // Checked again against the rule as the ledger has it now (a board paused or
                // resumed since the list was read).
                let ends_at = window.ends_at.unwrap_or(Timestamp::MAX);
                let board_active_now = self
                    .read()
                    .leaderboard(&rule.tenant_id, &rule.leaderboard_id)
                    .is_some_and(|lb| lb.uid == uid && lb.status == LeaderboardStatus::Active);
                let eligible = ends_at > current.active_since
                    && !current.board_paused_at(ends_at)
                    && (board_active_now
                        || current.board_paused_since().is_some_and(|p| ends_at <= p));
                if !eligible {
                    continue;
                }
                if self
                    .settle_locked(&current, uid, settled_window(&window), true)
                    .await?
                    .is_ok()
                {
                    made += 1;
                }
            }
        }
        Ok(made)
    }

    pub(super) async fn preview(
        &self,
        tenant_id: &str,
        rule_id: &str,
        from: u64,
        limit: u32,
    ) -> StoreResult<Option<Preview>> {
        let Some(rule) = self.rule_get(tenant_id, rule_id).await? else {
            return Ok(None);
        };
        let Some(uid) = self
            .read()
            .leaderboard(tenant_id, &rule.leaderboard_id)
            .map(|lb| lb.uid)
        else {
            return Ok(None);
        };
        let tiers: Vec<Tier> =
            tiers_from_json(&rule.tiers).map_err(|e| unavailable(format!("stored tiers: {e}")))?;
        let now = self.now();
        let (window, status, ranked, entries) = {
            let engine = self.folded.engine();
            let Some(lb) = engine.leaderboard_state(tenant_id, uid) else {
                return Ok(None);
            };
            let (window, status) = lb.current_window(now);
            let ranked = lb.window(&window.id).map_or(0, |w| w.ranked_len());
            let deepest = deepest_rank(&tiers, ranked);
            let entries = if ranked > 0 && deepest > 0 {
                engine
                    .page(tenant_id, uid, &window.id, 1, deepest)
                    .map(|(entries, _)| entries)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            (window, status, ranked, entries)
        };
        // The plan in its 24-byte form (hashing off the async workers); only the page is expanded.
        let (tenant, rule_key, window_key) = (
            tenant_id.to_owned(),
            rule_id.to_owned(),
            window.id.as_str().to_owned(),
        );
        let min_participants = rule.min_participants;
        let (slots, entries, tiers) = tokio::task::spawn_blocking(move || {
            let slots = plan_slots(
                &tenant,
                &rule_key,
                &window_key,
                &tiers,
                min_participants,
                ranked,
                entries.iter().map(|s| (s.rank, s.user_id.as_str())),
            );
            (slots, entries, tiers)
        })
        .await
        .map_err(|e| unavailable(e.to_string()))?;
        let total = slots.len() as u64;
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(slots.len());
        let end = start.saturating_add(limit as usize).min(slots.len());
        let grants = slots[start..end]
            .iter()
            .map(|slot| {
                let standing = &entries[slot.entry as usize];
                PreviewGrant {
                    grant_id: phoenix_core::reward::grant_id_of_key(slot.key),
                    user_id: standing.user_id.clone(),
                    rank: standing.rank,
                    reward: tiers[slot.tier as usize].rewards[slot.reward_index as usize].to_json(),
                }
            })
            .collect();
        Ok(Some(Preview {
            window: settled_window(&window),
            window_status: status.as_str(),
            ranked_entries: ranked,
            total,
            grants,
            next: (end < slots.len()).then_some(end as u64),
        }))
    }

    pub(super) async fn settlements_of(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<Vec<Settlement>>> {
        if self.rule_get(tenant_id, rule_id).await?.is_none() {
            return Ok(None);
        }
        let (tenant, id) = (tenant_id.to_owned(), rule_id.to_owned());
        self.ledger_read(move |c| q::settlements(c, &tenant, &id))
            .await
            .map(Some)
    }

    pub(super) async fn grants_page(
        &self,
        tenant_id: &str,
        query: GrantQuery,
    ) -> StoreResult<Page<Grant>> {
        let tenant = tenant_id.to_owned();
        self.ledger_read(move |c| q::grants(c, &tenant, &query))
            .await
    }

    pub(super) async fn grant_get(
        &self,
        tenant_id: &str,
        grant_id: &str,
    ) -> StoreResult<Option<Grant>> {
        let (tenant, id) = (tenant_id.to_owned(), grant_id.to_owned());
        self.ledger_read(move |c| q::grant(c, &tenant, &id)).await
    }

    pub(super) async fn grant_claim(
        &self,
        tenant_id: &str,
        user_id: &str,
        grant_id: &str,
    ) -> StoreResult<ClaimOutcome> {
        let _gate = self.rewards_gate().await?;
        let Some(grant) = self.grant_get(tenant_id, grant_id).await? else {
            return Ok(ClaimOutcome::NotFound);
        };
        if grant.user_id != user_id {
            return Ok(ClaimOutcome::NotFound);
        }
        match grant.status {
            GrantStatus::Voided => return Ok(ClaimOutcome::Voided(grant)),
            GrantStatus::Claimed => return Ok(ClaimOutcome::Claimed(grant)),
            GrantStatus::Pending => {}
        }
        self.commit_ledger(&LedgerRecord::GrantClaimed {
            tenant_id: tenant_id.to_owned(),
            grant_id: grant.grant_id.clone(),
            at: self.now(),
        })
        .await?;
        self.grant_get(tenant_id, grant_id)
            .await?
            .map(ClaimOutcome::Claimed)
            .ok_or_else(|| unavailable("a claimed grant vanished".into()))
    }

    pub(super) async fn grant_void(
        &self,
        tenant_id: &str,
        grant_id: &str,
        reason: String,
    ) -> StoreResult<Option<Grant>> {
        let _gate = self.rewards_gate().await?;
        let Some(grant) = self.grant_get(tenant_id, grant_id).await? else {
            return Ok(None);
        };
        if grant.status == GrantStatus::Voided {
            return Ok(Some(grant));
        }
        self.commit_ledger(&LedgerRecord::GrantVoided {
            tenant_id: tenant_id.to_owned(),
            grant_id: grant.grant_id.clone(),
            reason,
            at: self.now(),
        })
        .await?;
        self.grant_get(tenant_id, grant_id).await
    }

    pub(super) async fn campaign_create(&self, new: NewCampaign) -> StoreResult<Campaign> {
        let _gate = self.rewards_gate().await?;
        let (tenant, id) = (new.tenant_id.clone(), new.campaign_id.clone());
        if self
            .ledger_read(move |c| q::campaign(c, &tenant, &id))
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "campaign '{}' already exists in tenant '{}'",
                new.campaign_id, new.tenant_id
            )));
        }
        if let Some(code) = &new.code {
            let (tenant, canonical) =
                (new.tenant_id.clone(), phoenix_core::coupon::canonical(code));
            if self
                .ledger_read(move |c| q::code_taken(c, &tenant, &canonical))
                .await?
            {
                return Err(StoreError::Conflict(format!(
                    "code '{code}' clashes with an existing code in tenant '{}' (codes match without regard to case or dashes)",
                    new.tenant_id
                )));
            }
        }
        let at = self.now();
        let campaign = Campaign {
            tenant_id: new.tenant_id,
            campaign_id: new.campaign_id,
            name: new.name,
            rewards: new.rewards,
            code: new.code,
            max_redemptions: new.max_redemptions,
            per_player_limit: new.per_player_limit,
            starts_at: new.starts_at,
            expires_at: new.expires_at,
            status: new.status,
            redemptions: 0,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        self.commit_ledger(&LedgerRecord::CampaignCreated {
            campaign: campaign.clone(),
        })
        .await?;
        Ok(campaign)
    }

    pub(super) async fn campaigns_list(&self, tenant_id: &str) -> StoreResult<Vec<Campaign>> {
        let tenant = tenant_id.to_owned();
        self.ledger_read(move |c| q::campaigns(c, &tenant)).await
    }

    pub(super) async fn campaign_get(
        &self,
        tenant_id: &str,
        campaign_id: &str,
    ) -> StoreResult<Option<Campaign>> {
        let (tenant, id) = (tenant_id.to_owned(), campaign_id.to_owned());
        self.ledger_read(move |c| q::campaign(c, &tenant, &id))
            .await
    }

    pub(super) async fn campaign_update(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        patch: CampaignPatch,
    ) -> StoreResult<Option<Campaign>> {
        let _gate = self.rewards_gate().await?;
        let Some(mut campaign) = self.campaign_get(tenant_id, campaign_id).await? else {
            return Ok(None);
        };
        if let Some(name) = patch.name {
            campaign.name = name;
        }
        if let Some(status) = patch.status {
            campaign.status = status;
        }
        if let Some(expires_at) = patch.expires_at {
            campaign.expires_at = expires_at;
        }
        if let Some(max) = patch.max_redemptions {
            campaign.max_redemptions = max;
        }
        if let Some(limit) = patch.per_player_limit {
            campaign.per_player_limit = limit;
        }
        campaign.version += 1;
        campaign.updated_at = self.now().max(campaign.updated_at);
        self.commit_ledger(&LedgerRecord::CampaignUpdated {
            campaign: campaign.clone(),
        })
        .await?;
        self.campaign_get(tenant_id, campaign_id).await
    }

    pub(super) async fn codes_issue(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        count: u32,
        issued_to: Option<String>,
    ) -> StoreResult<Option<Vec<CouponCode>>> {
        let _gate = self.rewards_gate().await?;
        if self.campaign_get(tenant_id, campaign_id).await?.is_none() {
            return Ok(None);
        }
        let count = count.min(MAX_CODES_PER_REQUEST);
        // 60 random bits each; a clash with a code of the tenant (or of this batch) draws again.
        let tenant = tenant_id.to_owned();
        let codes = self
            .ledger_read(move |c| {
                let mut seen = std::collections::HashSet::new();
                let mut codes = Vec::with_capacity(count as usize);
                while codes.len() < count as usize {
                    let random = u64::from_le_bytes(crate::seal::random_bytes::<8>());
                    let display = phoenix_core::coupon::generated_code(random);
                    let canonical = phoenix_core::coupon::canonical(&display);
                    if seen.contains(&canonical) || q::code_taken(c, &tenant, &canonical)? {
                        continue;
                    }
                    seen.insert(canonical);
                    codes.push(display);
                }
                Ok(codes)
            })
            .await?;
        let at = self.now();
        self.commit_ledger(&LedgerRecord::CodesIssued {
            tenant_id: tenant_id.to_owned(),
            campaign_id: campaign_id.to_owned(),
            codes: codes.clone(),
            issued_to: issued_to.clone(),
            at,
        })
        .await?;
        Ok(Some(
            codes
                .into_iter()
                .map(|code| CouponCode {
                    code,
                    campaign_id: campaign_id.to_owned(),
                    personal: true,
                    issued_to: issued_to.clone(),
                    redeemed_by: None,
                    redeemed_at: None,
                    voided_at: None,
                    void_reason: None,
                    created_at: at,
                })
                .collect(),
        ))
    }

    pub(super) async fn codes_page(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Option<Page<CouponCode>>> {
        if self.campaign_get(tenant_id, campaign_id).await?.is_none() {
            return Ok(None);
        }
        let (tenant, id) = (tenant_id.to_owned(), campaign_id.to_owned());
        let after = after.map(phoenix_core::coupon::canonical);
        self.ledger_read(move |c| q::codes(c, &tenant, &id, after.as_deref(), limit))
            .await
            .map(Some)
    }

    pub(super) async fn code_get(
        &self,
        tenant_id: &str,
        code: &str,
        limit: u32,
    ) -> StoreResult<Option<(CouponCode, Vec<Redemption>)>> {
        let (tenant, canonical) = (tenant_id.to_owned(), phoenix_core::coupon::canonical(code));
        self.ledger_read(move |c| {
            let Some(found) = q::code(c, &tenant, &canonical)? else {
                return Ok(None);
            };
            let redemptions = q::redemptions_of_code(c, &tenant, &canonical, limit)?;
            Ok(Some((found, redemptions)))
        })
        .await
    }

    pub(super) async fn code_void(
        &self,
        tenant_id: &str,
        code: &str,
        reason: String,
    ) -> StoreResult<Option<CouponCode>> {
        let _gate = self.rewards_gate().await?;
        let canonical = phoenix_core::coupon::canonical(code);
        let Some((found, _)) = self.code_get(tenant_id, &canonical, 0).await? else {
            return Ok(None);
        };
        if found.voided_at.is_some() {
            return Ok(Some(found));
        }
        self.commit_ledger(&LedgerRecord::CodeVoided {
            tenant_id: tenant_id.to_owned(),
            code: canonical.clone(),
            reason,
            at: self.now(),
        })
        .await?;
        Ok(self
            .code_get(tenant_id, &canonical, 0)
            .await?
            .map(|(c, _)| c))
    }

    /// The redemption `redemption_id` with its grants.
    async fn redemption_with_grants(
        &self,
        tenant_id: &str,
        redemption_id: &str,
    ) -> StoreResult<Option<(Redemption, Vec<Grant>)>> {
        let (tenant, id) = (tenant_id.to_owned(), redemption_id.to_owned());
        self.ledger_read(move |c| {
            let Some(r) = q::redemption(c, &tenant, &id)? else {
                return Ok(None);
            };
            let grants = q::grants_by_ids(c, &tenant, &r.grant_ids)?;
            Ok(Some((r, grants)))
        })
        .await
    }

    pub(super) async fn redeem_code(
        &self,
        tenant_id: &str,
        user_id: &str,
        code: &str,
        idempotency_key: Option<String>,
    ) -> StoreResult<RedeemOutcome> {
        let _gate = self.rewards_gate().await?;
        let canonical = phoenix_core::coupon::canonical(code);
        let (tenant, canon) = (tenant_id.to_owned(), canonical.clone());
        let Some(found) = self
            .ledger_read(move |c| q::code(c, &tenant, &canon))
            .await?
        else {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::Unknown));
        };
        if let Some(key) = &idempotency_key {
            let (tenant, user, key) = (tenant_id.to_owned(), user_id.to_owned(), key.clone());
            let earlier = self
                .ledger_read(move |c| q::redemption_by_key(c, &tenant, &user, &key))
                .await?;
            if let Some(id) = earlier
                && let Some((redemption, grants)) =
                    self.redemption_with_grants(tenant_id, &id).await?
            {
                return Ok(RedeemOutcome::Redeemed {
                    redemption,
                    grants,
                    replayed: true,
                });
            }
        }
        if found.personal && found.issued_to.as_deref().is_some_and(|to| to != user_id) {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::OtherPlayer));
        }
        if found.voided_at.is_some() {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::Voided));
        }
        let Some(campaign) = self.campaign_get(tenant_id, &found.campaign_id).await? else {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::Unknown));
        };
        let now = self.now();
        if campaign.status != Activity::Active {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::Inactive));
        }
        if campaign.starts_at.is_some_and(|s| now < s) {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::NotStarted));
        }
        if campaign.expires_at.is_some_and(|e| now >= e) {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::Expired));
        }
        let (tenant, user, campaign_id, canon) = (
            tenant_id.to_owned(),
            user_id.to_owned(),
            campaign.campaign_id.clone(),
            canonical.clone(),
        );
        let (of_campaign, of_code) = self
            .ledger_read(move |c| q::player_redemptions(c, &tenant, &user, &campaign_id, &canon))
            .await?;
        let limit = u64::from(campaign.per_player_limit);
        let used = if found.personal {
            found.redeemed_by.is_some()
        } else {
            of_code >= limit
        };
        if used {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::AlreadyUsed));
        }
        if of_campaign >= limit {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::PerPlayerLimit));
        }
        if campaign
            .max_redemptions
            .is_some_and(|max| campaign.redemptions >= max)
        {
            return Ok(RedeemOutcome::Refused(RedeemRefusal::MaxRedemptions));
        }
        let redemption_id = format!("r_{}", crate::seal::random_hex::<12>());
        self.commit_ledger(&LedgerRecord::Redeemed {
            tenant_id: tenant_id.to_owned(),
            redemption_id: redemption_id.clone(),
            code: canonical,
            campaign_id: campaign.campaign_id.clone(),
            user_id: user_id.to_owned(),
            at: now,
            idempotency_key,
        })
        .await?;
        let (redemption, grants) = self
            .redemption_with_grants(tenant_id, &redemption_id)
            .await?
            .ok_or_else(|| unavailable("a redemption was written but not applied".into()))?;
        Ok(RedeemOutcome::Redeemed {
            redemption,
            grants,
            replayed: false,
        })
    }

    pub(super) async fn redemptions_page(
        &self,
        tenant_id: &str,
        campaign_id: Option<&str>,
        user_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<Redemption>> {
        let (tenant, campaign, user, after) = (
            tenant_id.to_owned(),
            campaign_id.map(str::to_owned),
            user_id.map(str::to_owned),
            after.map(str::to_owned),
        );
        self.ledger_read(move |c| {
            q::redemptions(
                c,
                &tenant,
                campaign.as_deref(),
                user.as_deref(),
                after.as_deref(),
                limit,
            )
        })
        .await
    }

    /// Forgets old redemption idempotency keys.
    pub(super) async fn prune_ledger(&self) -> StoreResult<()> {
        let ledger = self.ledger.clone();
        let now = self.now();
        tokio::task::spawn_blocking(move || ledger.prune(now))
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(unavailable)?;
        Ok(())
    }
}
