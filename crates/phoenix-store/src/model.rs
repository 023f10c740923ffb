//! The records the store keeps: tenants, API keys and leaderboards, as every backend returns them.
//! Secrets never appear here in plaintext; they are asked for explicitly and only where auth needs them.

use jiff::Timestamp;
use phoenix_core::access::{Scopes, TenantAccess};
use phoenix_core::ids::{LeaderboardId, TenantId};
use serde::{Deserialize, Serialize};

/// A tenant as listed and read (SPEC §10: `{tenant_id, name, created_at, unscoped_tokens,
/// rate_limits}`). Records written before the settings existed read as the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub tenant_id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub unscoped_tokens: UnscopedTokens,
    #[serde(default)]
    pub rate_limits: RateLimits,
}

/// Whether tenant JWTs without a `scope` claim are accepted (SPEC §3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnscopedTokens {
    #[default]
    Allow,
    Deny,
}

impl UnscopedTokens {
    pub fn as_str(self) -> &'static str {
        match self {
            UnscopedTokens::Allow => "allow",
            UnscopedTokens::Deny => "deny",
        }
    }
}

/// A tenant's own rate limits (SPEC §8); `None` is the configured default, `Some(0)` unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    pub events_per_second: Option<u32>,
    pub reads_per_second: Option<u32>,
    pub player_requests_per_second: Option<u32>,
}

/// A change to a tenant's settings: `None` leaves a field as it is; for a rate limit, `Some(None)`
/// goes back to the configured default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub unscoped_tokens: Option<UnscopedTokens>,
    pub events_per_second: Option<Option<u32>>,
    pub reads_per_second: Option<Option<u32>>,
    pub player_requests_per_second: Option<Option<u32>>,
}

impl TenantPatch {
    /// `tenant` with this patch applied.
    pub fn apply_to(&self, tenant: &Tenant) -> Tenant {
        let mut next = tenant.clone();
        if let Some(name) = &self.name {
            next.name = name.clone();
        }
        if let Some(u) = self.unscoped_tokens {
            next.unscoped_tokens = u;
        }
        if let Some(v) = self.events_per_second {
            next.rate_limits.events_per_second = v;
        }
        if let Some(v) = self.reads_per_second {
            next.rate_limits.reads_per_second = v;
        }
        if let Some(v) = self.player_requests_per_second {
            next.rate_limits.player_requests_per_second = v;
        }
        next
    }
}

/// A tenant's usable HMAC secrets: the current one, and the previous one while its grace period runs.
#[derive(Clone)]
pub struct TenantSecrets {
    pub current: String,
    pub previous: Option<(String, Timestamp)>,
    /// How the tenant's tokens may be used, read with the secrets because every token check needs
    /// both.
    pub unscoped_tokens: UnscopedTokens,
    pub rate_limits: RateLimits,
}

impl std::fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantSecrets(<redacted>)")
    }
}

impl TenantSecrets {
    /// The secrets that verify a signature at `now`: current first.
    pub fn valid_at(&self, now: Timestamp) -> impl Iterator<Item = &str> {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(s, _)| s.as_str());
        std::iter::once(self.current.as_str()).chain(previous)
    }
}

/// An admin API key's public record (SPEC §10 key shape, plus the lookup hash kept internally).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub key_id: String,
    pub name: String,
    pub scopes: Scopes,
    pub tenant_ids: TenantAccess,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Usable at `now`: neither revoked nor expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|exp| now < exp)
    }
}

/// What creating an API key needs. `key_hash` is SHA-256 of the plaintext; the plaintext is sealed.
#[derive(Clone)]
pub struct NewApiKey {
    pub key_id: String,
    pub name: String,
    pub scopes: Scopes,
    pub tenant_ids: TenantAccess,
    pub expires_at: Option<Timestamp>,
    pub key_hash: [u8; 32],
    pub plaintext: String,
}

/// `active` leaderboards score events; the others are kept but silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderboardStatus {
    Active,
    Inactive,
    Archived,
}

impl LeaderboardStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }
}

/// A leaderboard record as the Admin API returns it. `uid` tells apart a re-created leaderboard from a
/// deleted one with the same id (their windows must not mix); it is internal and not serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaderboard {
    #[serde(skip)]
    pub uid: u64,
    pub leaderboard_id: LeaderboardId,
    pub tenant_id: TenantId,
    pub name: String,
    pub description: Option<String>,
    pub status: LeaderboardStatus,
    pub version: u64,
    /// The normalized config (defaults filled in), as produced by the core's config model.
    pub config: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What creating a leaderboard needs (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewLeaderboard {
    pub leaderboard_id: LeaderboardId,
    pub tenant_id: TenantId,
    pub name: String,
    pub description: Option<String>,
    pub status: LeaderboardStatus,
    pub config: serde_json::Value,
}

/// The metadata PATCH may change; `None` leaves a field as it is. `description: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct LeaderboardPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<LeaderboardStatus>,
}

/// A console user's role (SPEC §3.6): `ADMIN` may do everything, `VIEWER` only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ADMIN" => Some(Self::Admin),
            "VIEWER" => Some(Self::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Viewer => "VIEWER",
        }
    }
}

/// A console user as listed and read. The password hash is kept apart and never serialized here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What creating a user needs: the password already hashed (a PHC string, e.g. argon2id).
#[derive(Clone)]
pub struct NewUser {
    pub username: String,
    pub role: Role,
    pub password_hash: String,
}

/// A change to a user. A new password ends every session the user has.
#[derive(Clone, Default)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub password_hash: Option<String>,
}

/// One pair of console tokens, kept by their SHA-256 only. A login starts a family; each refresh
/// replaces the pair within the family.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    /// The session family the pair belongs to, chosen by the caller when a session starts (empty: the
    /// store picks one). Refresh tokens carry it, so a spent one is recognised however long ago it
    /// was spent, with nothing kept per spent token.
    pub family_id: String,
    pub access_hash: [u8; 32],
    pub access_expires_at: Timestamp,
    pub refresh_hash: [u8; 32],
    pub refresh_expires_at: Timestamp,
}

/// The session an access token belongs to, with the user as they are now (a role change applies at
/// once).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleSession {
    pub user: User,
    pub family_id: String,
    pub expires_at: Timestamp,
}

/// What became of a refresh.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// The old refresh token is spent and the new pair is live.
    Rotated(User),
    /// The token was already spent: its whole family is now revoked.
    Reused,
    /// Unknown, expired, or of a revoked family (or its user is gone).
    Invalid,
}
