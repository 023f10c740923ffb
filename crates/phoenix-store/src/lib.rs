//! Phoenix storage: the [`Store`] trait every backend implements, the records it keeps, secret sealing,
//! the durable journal, and the embedded zero-setup backend. The server only ever names the trait.
#![forbid(unsafe_code)]

pub mod achievements;
pub mod backend;
/// The behaviour every backend must show, as one suite its tests run (not shipped in release builds:
/// enabled by the `conformance` feature, which this crate's own tests turn on).
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod embedded;
pub mod journal;
pub mod model;
pub mod pglog;
pub mod pgsnap;
pub mod redis_shared;
pub mod rewards;
pub mod seal;
mod signatures;

use achievements::{
    Achievement, AchievementPatch, AchievementWithCompletions, AttemptOutcome, DeliveryRow,
    DeliveryState, DueDelivery, NewAchievement, NewWebhook, PlayerAchievement, Webhook,
    WebhookPatch,
};
use async_trait::async_trait;
use jiff::Timestamp;
use model::{
    ApiKey, ConsoleSession, Leaderboard, LeaderboardPatch, LeaderboardStatus, NewApiKey,
    NewLeaderboard, NewUser, RefreshOutcome, SessionTokens, Tenant, TenantPatch, TenantSecrets,
    User, UserPatch,
};
use phoenix_core::engine::Standing;
use phoenix_core::event::Event;
use phoenix_core::ids::TenantId;
use phoenix_core::window::{Window, WindowId, WindowStatus};
use rewards::{
    Campaign, CampaignPatch, ClaimOutcome, CouponCode, Grant, GrantQuery, NewCampaign,
    NewRewardRule, Page, Preview, RedeemOutcome, Redemption, RewardRule, RewardRulePatch,
    SettleOutcome, Settlement,
};

pub use backend::{BackendConfig, RunningStore, StartError, StoreConfig};
pub use embedded::EmbeddedStore;
pub use seal::MasterKey;

/// The storage layer's one error type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record already exists (maps to 409).
    #[error("{0}")]
    Conflict(String),
    /// The store cannot take writes or reads right now (maps to 503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<journal::JournalError> for StoreError {
    fn from(e: journal::JournalError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What became of one ingested event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestStatus {
    /// New, durable, and applied to the standings.
    Accepted,
    /// Already accepted earlier (same tenant and `event_id`): not counted again.
    Duplicate,
}

/// Counters of the running process, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub events_accepted: u64,
    pub events_duplicate: u64,
    /// Leaderboard updates made by accepted events (one event can score in several leaderboards).
    pub events_scored: u64,
    /// Leaderboard matches refused because the event's window had already closed.
    pub events_late: u64,
    pub dedupe_entries: u64,
    /// Frozen pieces of the idempotency index on disk.
    pub dedupe_pieces: u64,
    /// Memory held by the pieces' filters and block indexes.
    pub dedupe_piece_bytes: u64,
    /// Ended windows moved from memory to cold storage since start.
    pub windows_moved_cold: u64,
    /// Bytes of cold windows' standings cached in memory.
    pub cold_cache_bytes: u64,
    pub rewards: RewardStats,
    /// A cluster node's log (`None` on one node).
    pub cluster: Option<ClusterStats>,
}

/// A cluster node's view of the log, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// The position this node has applied up to.
    pub applied: u64,
    /// The newest position this node knows of (read at least once a second).
    pub head: u64,
    /// The time between the newest known record and the last applied one (ms).
    pub lag_ms: u64,
    /// Groups this node appended, and the time they took (µs), for the mean append latency.
    pub appends: u64,
    pub append_us_sum: u64,
    /// The age of the cluster's newest snapshot (ms; `None` while there is none).
    pub snapshot_age_ms: Option<u64>,
}

/// Rewards counters since start (what this process applied, not what it replayed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewardStats {
    pub settlements: u64,
    /// Settlements made by the settler when a window ended (not by `settle`).
    pub automatic_settlements: u64,
    /// Sum over automatic settlements of the time from the window's `ends_at` to the settlement.
    pub settlement_lag_ms_sum: u64,
    pub grants_reward_rule: u64,
    pub grants_coupon: u64,
    pub grants_achievement: u64,
    pub claims: u64,
    pub voids: u64,
    pub redemptions: u64,
    /// Achievement steps completed.
    pub completions: u64,
    /// Webhook messages put in the outbox.
    pub webhook_messages: u64,
    /// Webhook messages delivered (a 2xx answer).
    pub deliveries_delivered: u64,
    /// Delivery attempts that failed and will be tried again.
    pub deliveries_retried: u64,
    /// Webhook messages that failed for good.
    pub deliveries_failed: u64,
    /// Sum over delivered messages of the time from their making to their delivery.
    pub delivery_lag_ms_sum: u64,
    /// Messages waiting in the outbox.
    pub outbox_depth: u64,
    /// Events handed to achievement progress and not folded in yet.
    pub achievement_queue: u64,
}

/// Whether a watched leaderboard still serves live standings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardState {
    Active,
    /// Deactivated or archived: live watchers should be closed (SPEC §10: 4404).
    Inactive,
    /// Deleted: live watchers should be closed (SPEC §10: 4410).
    Deleted,
}

/// What a leaderboard watcher is told: `version` grows whenever the standings changed (at most once per
/// durable group of writes, however many events it held), `state` when the leaderboard stops being live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardSignal {
    pub version: u64,
    pub state: BoardState,
    /// How many times the board left `Active` since the signal was created: a watcher that compares it
    /// with what it saw first notices a deactivation even if the board was active again by the time it
    /// looked.
    pub deactivations: u64,
}

/// Where a page of standings starts.
#[derive(Debug, Clone, PartialEq)]
pub enum PageStart {
    /// At this 1-based rank.
    Rank(u32),
    /// Right after the entry with this key (a keyset cursor: stays exact while scores change).
    After {
        score: f64,
        seq: u64,
        user_id: String,
    },
    /// Around this player: from `radius` ranks above to `radius` below (fewer at the edges), at most
    /// `count` entries. No entries when the player has no rank in the window.
    Around { user_id: String, radius: u32 },
}

/// A page of one window's ranked standings.
#[derive(Debug, Clone, PartialEq)]
pub struct StandingsPage {
    pub window: Window,
    pub status: WindowStatus,
    /// Ranked entries in the window (within `ranking.size`, passing `min_score`).
    pub total_entries: u32,
    pub entries: Vec<Standing>,
}

/// The system of record for tenants, API keys and leaderboards. Every method that returns `Ok` for a
/// write has made that write durable (it survives `kill -9` and power loss).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reachable and accepting writes (drives `/readyz`).
    fn is_ready(&self) -> bool;

    /// Counters for `/metrics`.
    fn stats(&self) -> StoreStats;

    /// Housekeeping, called about once a second by the server: freezes recent event ids into a piece
    /// on disk and drops expired pieces, and moves ended windows out of memory. The default does
    /// nothing.
    async fn maintain(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Makes `events` durable (one group-committed write) and applies them to every active leaderboard
    /// of the tenant, answering per event in order. Idempotent on `(tenant, event_id)`: an id seen before
    /// (within the dedupe horizon), or earlier in the same call, is `Duplicate` and counts nothing.
    async fn ingest(&self, tenant_id: &str, events: Vec<Event>) -> StoreResult<Vec<IngestStatus>>;

    /// At most `count` ranked entries of a window (the given one, or the one readers see now), from
    /// `start`. `None` when the leaderboard (or the given window) is unknown.
    async fn standings(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        window: Option<&WindowId>,
        start: PageStart,
        count: u32,
    ) -> StoreResult<Option<StandingsPage>>;

    /// The windows of a leaderboard that have ended, newest first: live, inactive, or deleted (then the
    /// most recently deleted one with this id). `None` when there never was such a leaderboard.
    async fn past_windows(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<Vec<Window>>>;

    /// The final standings of an ended window (see [`Store::past_windows`] for which leaderboard).
    /// `None` when the leaderboard or the window is unknown, or the window has not ended.
    async fn window_standings(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        window: &WindowId,
        start: PageStart,
        count: u32,
    ) -> StoreResult<Option<StandingsPage>>;

    /// Watches a live leaderboard for changes (see [`BoardSignal`]); `None` when the tenant has no such
    /// leaderboard. The cost of a change does not grow with the number of watchers: one signal is set,
    /// and each watcher reads the standings it needs when it wakes.
    fn watch_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> Option<tokio::sync::watch::Receiver<BoardSignal>>;

    /// One player's ranked entry in a window (the current one when `None`); `None` when the player has
    /// no rank there.
    async fn standing_of(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        window: Option<&WindowId>,
        user_id: &str,
    ) -> StoreResult<Option<Standing>>;

    /// Waits until this node has applied everything acknowledged anywhere before the call (a cluster
    /// node: the log up to its head); nothing on one node, whose reads always see every write.
    async fn barrier(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Fires after changes that may end credentials, when they can come from elsewhere (another
    /// node of a cluster): open WebSockets check theirs again. `None` on one node, where the server
    /// itself knows every change it makes.
    fn watch_credentials(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The hot state a cluster's nodes share (Redis), for the server's login throttle and rate limits;
    /// `None` on one node.
    fn shared(&self) -> Option<std::sync::Arc<redis_shared::RedisShared>> {
        None
    }

    /// Records that a request signature (a digest of it) was used: true the first time, false for a
    /// replay. Remembered durably until `expires_at`, so a replay is refused across restarts.
    async fn use_signature_once(
        &self,
        digest: [u8; 32],
        expires_at: Timestamp,
    ) -> StoreResult<bool>;

    /// Creates a tenant with its first HMAC secret (sealed at rest). Conflict if the id exists.
    async fn create_tenant(
        &self,
        tenant_id: TenantId,
        name: String,
        hmac_secret: String,
    ) -> StoreResult<Tenant>;
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    async fn get_tenant(&self, tenant_id: &str) -> StoreResult<Option<Tenant>>;
    /// Applies a change to a tenant's name and settings; `None` if there is no such tenant.
    async fn update_tenant(
        &self,
        tenant_id: &str,
        patch: TenantPatch,
    ) -> StoreResult<Option<Tenant>>;
    /// The tenant's secrets in plaintext, for verifying signatures only.
    async fn tenant_secrets(&self, tenant_id: &str) -> StoreResult<Option<TenantSecrets>>;
    /// Installs `new_secret`; the current one stays valid until `previous_valid_until`.
    async fn rotate_tenant_secret(
        &self,
        tenant_id: &str,
        new_secret: String,
        previous_valid_until: Timestamp,
    ) -> StoreResult<Option<Tenant>>;

    /// Creates an API key. Conflict if the id or hash exists.
    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKey>;
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    async fn get_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>>;
    /// Looks a key up by the SHA-256 of its plaintext.
    async fn find_api_key_by_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKey>>;
    /// The key's plaintext, which signs admin JWTs (SPEC §3.4).
    async fn api_key_secret(&self, key_id: &str) -> StoreResult<Option<String>>;
    /// Revokes a key (idempotent: a revoked key keeps its first `revoked_at`).
    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>>;

    /// Creates a leaderboard at version 1. Conflict if the tenant already has one with this id.
    async fn create_leaderboard(&self, new: NewLeaderboard) -> StoreResult<Leaderboard>;
    /// Live (not deleted) leaderboards, of one tenant or of all, ordered by tenant then id.
    async fn list_leaderboards(&self, tenant_id: Option<&str>) -> StoreResult<Vec<Leaderboard>>;
    async fn get_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<Leaderboard>>;
    /// A live leaderboard's status, without its record (the check every player read makes).
    async fn leaderboard_status(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<LeaderboardStatus>> {
        Ok(self
            .get_leaderboard(tenant_id, leaderboard_id)
            .await?
            .map(|lb| lb.status))
    }
    /// Applies a metadata patch, bumping `version` and `updated_at`.
    async fn update_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        patch: LeaderboardPatch,
    ) -> StoreResult<Option<Leaderboard>>;
    /// Deletes a leaderboard and returns the removed record; its history stays addressable by `uid`.
    async fn delete_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<Leaderboard>>;

    /// Creates a console user. Conflict if the username exists.
    async fn create_user(&self, new: NewUser) -> StoreResult<User>;
    /// Users ordered by username.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    async fn get_user(&self, username: &str) -> StoreResult<Option<User>>;
    /// The user's password hash (a PHC string), for verifying a login only.
    async fn user_password_hash(&self, username: &str) -> StoreResult<Option<String>>;
    /// Applies a patch, bumping `updated_at`. A new password revokes every session of the user.
    async fn update_user(&self, username: &str, patch: UserPatch) -> StoreResult<Option<User>>;
    /// Deletes a user and revokes every session of theirs; returns the removed record.
    async fn delete_user(&self, username: &str) -> StoreResult<Option<User>>;

    /// Starts a session family for `username` with its first token pair. `None` if the user is gone.
    async fn start_session(
        &self,
        username: &str,
        tokens: SessionTokens,
    ) -> StoreResult<Option<ConsoleSession>>;
    /// The live session an access token (by its hash) belongs to: not expired, family not revoked, user
    /// still there.
    async fn session_by_access(
        &self,
        access_hash: &[u8; 32],
    ) -> StoreResult<Option<ConsoleSession>>;
    /// Spends a refresh token (by its hash) and installs `tokens` in its family, exactly once: a
    /// second use of any token of the family (`tokens.family_id` names the family the presented token
    /// claims) revokes the family.
    async fn refresh_session(
        &self,
        refresh_hash: &[u8; 32],
        tokens: SessionTokens,
    ) -> StoreResult<RefreshOutcome>;
    /// Whether a refresh token (by hash, and the family it claims) belongs to a live session, spent or
    /// not, without using it.
    async fn refresh_token_known(
        &self,
        refresh_hash: &[u8; 32],
        family_id: &str,
    ) -> StoreResult<bool>;
    /// Revokes the family of an access or refresh token (by hash): its access and refresh tokens stop
    /// working at once. False when no live session had that token.
    async fn revoke_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool>;
    /// Revokes a session family by its id (a logout with one of its spent refresh tokens). False when
    /// no live family has that id.
    async fn revoke_family(&self, family_id: &str) -> StoreResult<bool>;

    // ---- Rewards (SPEC §7.1–7.4). Every write is a record of the log, applied in its order. ----

    /// Creates a reward rule at version 1. Conflict if the id was ever taken in the tenant.
    async fn create_reward_rule(&self, new: NewRewardRule) -> StoreResult<RewardRule>;
    /// Live rules of a tenant, optionally of one leaderboard, by id.
    async fn list_reward_rules(
        &self,
        tenant_id: &str,
        leaderboard_id: Option<&str>,
    ) -> StoreResult<Vec<RewardRule>>;
    async fn get_reward_rule(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<RewardRule>>;
    /// Applies a patch, bumping `version` and `updated_at`.
    async fn update_reward_rule(
        &self,
        tenant_id: &str,
        rule_id: &str,
        patch: RewardRulePatch,
    ) -> StoreResult<Option<RewardRule>>;
    /// Deletes a rule (its id stays taken; its settlements and grants stay).
    async fn delete_reward_rule(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<RewardRule>>;
    /// Settles an ended window of the rule's leaderboard now (any incarnation's window id). `None`
    /// when there is no such rule.
    async fn settle(
        &self,
        tenant_id: &str,
        rule_id: &str,
        window_id: &str,
    ) -> StoreResult<Option<SettleOutcome>>;
    /// What settling the rule's current window would grant now: grants `from..from+limit` of it.
    /// `None` when there is no such rule or its leaderboard is gone.
    async fn preview_settlement(
        &self,
        tenant_id: &str,
        rule_id: &str,
        from: u64,
        limit: u32,
    ) -> StoreResult<Option<Preview>>;
    /// A rule's settlements, newest window first. `None` when there is no such rule.
    async fn list_settlements(
        &self,
        tenant_id: &str,
        rule_id: &str,
    ) -> StoreResult<Option<Vec<Settlement>>>;
    async fn list_grants(&self, tenant_id: &str, query: GrantQuery) -> StoreResult<Page<Grant>>;
    async fn get_grant(&self, tenant_id: &str, grant_id: &str) -> StoreResult<Option<Grant>>;
    /// A player claims their grant.
    async fn claim_grant(
        &self,
        tenant_id: &str,
        user_id: &str,
        grant_id: &str,
    ) -> StoreResult<ClaimOutcome>;
    /// Voids a grant (a voided one is answered unchanged). `None` when there is no such grant.
    async fn void_grant(
        &self,
        tenant_id: &str,
        grant_id: &str,
        reason: String,
    ) -> StoreResult<Option<Grant>>;

    /// Creates a campaign. Conflict if the id was taken or the shared code clashes with a code.
    async fn create_campaign(&self, new: NewCampaign) -> StoreResult<Campaign>;
    async fn list_campaigns(&self, tenant_id: &str) -> StoreResult<Vec<Campaign>>;
    async fn get_campaign(
        &self,
        tenant_id: &str,
        campaign_id: &str,
    ) -> StoreResult<Option<Campaign>>;
    async fn update_campaign(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        patch: CampaignPatch,
    ) -> StoreResult<Option<Campaign>>;
    /// Issues `count` new personal codes of a campaign. `None` when there is no such campaign.
    async fn issue_codes(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        count: u32,
        issued_to: Option<String>,
    ) -> StoreResult<Option<Vec<CouponCode>>>;
    /// A page of a campaign's personal codes, after `after` (a code). `None` when no such campaign.
    async fn list_codes(
        &self,
        tenant_id: &str,
        campaign_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Option<Page<CouponCode>>>;
    /// A code (any form) with its first `limit` redemptions.
    async fn get_code(
        &self,
        tenant_id: &str,
        code: &str,
        limit: u32,
    ) -> StoreResult<Option<(CouponCode, Vec<Redemption>)>>;
    /// Voids a code (a voided one is answered unchanged).
    async fn void_code(
        &self,
        tenant_id: &str,
        code: &str,
        reason: String,
    ) -> StoreResult<Option<CouponCode>>;
    /// A player redeems a code (SPEC §7.4, §7.7). With an `idempotency_key` that this player used
    /// before, the first redemption is answered again.
    async fn redeem(
        &self,
        tenant_id: &str,
        user_id: &str,
        code: &str,
        idempotency_key: Option<String>,
    ) -> StoreResult<RedeemOutcome>;
    /// A page of the audit trail, newest first, after `after` (a redemption id).
    async fn list_redemptions(
        &self,
        tenant_id: &str,
        campaign_id: Option<&str>,
        user_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<Redemption>>;

    // ---- Achievements (SPEC §7.5). Changes are records of the log; progress is folded from it. ----

    /// Creates an achievement at version 1. Conflict if the id was ever taken in the tenant.
    async fn create_achievement(&self, new: NewAchievement) -> StoreResult<Achievement>;
    /// Live achievements of a tenant, by id, with their completion counts.
    async fn list_achievements(
        &self,
        tenant_id: &str,
    ) -> StoreResult<Vec<AchievementWithCompletions>>;
    async fn get_achievement(
        &self,
        tenant_id: &str,
        achievement_id: &str,
    ) -> StoreResult<Option<AchievementWithCompletions>>;
    /// Applies a patch, bumping `version` and `updated_at`.
    async fn update_achievement(
        &self,
        tenant_id: &str,
        achievement_id: &str,
        patch: AchievementPatch,
    ) -> StoreResult<Option<Achievement>>;
    /// Deletes an achievement (its id stays taken; its grants stay).
    async fn delete_achievement(
        &self,
        tenant_id: &str,
        achievement_id: &str,
    ) -> StoreResult<Option<Achievement>>;
    /// A player's progress on the tenant's active achievements (hidden ones included).
    async fn player_achievements(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<PlayerAchievement>>;

    // ---- Webhooks (SPEC §7.6). ----

    /// Creates a webhook; answers it with its secret (the only time the secret is shown).
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<(Webhook, String)>;
    async fn list_webhooks(&self, tenant_id: &str) -> StoreResult<Vec<Webhook>>;
    async fn get_webhook(&self, tenant_id: &str, webhook_id: &str) -> StoreResult<Option<Webhook>>;
    async fn update_webhook(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        patch: WebhookPatch,
    ) -> StoreResult<Option<Webhook>>;
    async fn delete_webhook(
        &self,
        tenant_id: &str,
        webhook_id: &str,
    ) -> StoreResult<Option<Webhook>>;
    /// A new secret; the old one keeps signing for `grace`. Answers the new secret.
    async fn rotate_webhook_secret(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        grace: jiff::SignedDuration,
    ) -> StoreResult<Option<(Webhook, String)>>;
    /// A page of a webhook's deliveries log, newest first, after a row position.
    async fn list_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        after: Option<(Timestamp, String, u32)>,
        limit: u32,
    ) -> StoreResult<Option<Page<DeliveryRow>>>;
    /// Messages due for delivery now, oldest due first: at most `limit` per active webhook, of one
    /// webhook (`(tenant, webhook_id)`) when `only` is given. With `only`, the messages are the
    /// caller's to attempt (a cluster claims each attempt for this node, so no other node makes it
    /// meanwhile); without, the answer is a survey of which webhooks have work.
    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        only: Option<(String, String)>,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt: `next` is when to try again (`None`: delivered, or failed for good).
    async fn record_delivery(
        &self,
        due: DueDelivery,
        outcome: AttemptOutcome,
        next: Option<Timestamp>,
    ) -> StoreResult<DeliveryState>;
}

/// Wall-clock time for record timestamps, at microsecond precision so it round-trips through any backend.
pub fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}
