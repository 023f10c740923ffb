//! Phoenix storage: the [`Store`] trait every backend implements, the records it keeps, secret sealing,
//! the durable journal, and the embedded zero-setup backend. The server only ever names the trait.
#![forbid(unsafe_code)]

pub mod conformance;
pub mod embedded;
pub mod journal;
pub mod model;
pub mod seal;
mod signatures;

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
}

/// Wall-clock time for record timestamps, at microsecond precision so it round-trips through any backend.
pub fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}
