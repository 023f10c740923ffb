//! Wire shapes of Admin records (SPEC §10), documented for OpenAPI. Store records convert into these, so
//! the store never decides what a client sees.

use jiff::Timestamp;
use phoenix_store::model::{ApiKey, Leaderboard, LeaderboardStatus, RateLimits, Tenant};
use serde::Serialize;
use utoipa::ToSchema;

/// A tenant's own rate limits (SPEC §8): null is the server's configured default, 0 unlimited.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitsView {
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub events_per_second: Option<u32>,
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub reads_per_second: Option<u32>,
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub player_requests_per_second: Option<u32>,
}

impl From<RateLimits> for RateLimitsView {
    fn from(r: RateLimits) -> Self {
        RateLimitsView {
            events_per_second: r.events_per_second,
            reads_per_second: r.reads_per_second,
            player_requests_per_second: r.player_requests_per_second,
        }
    }
}

/// `{tenant_id, name, created_at, unscoped_tokens, rate_limits}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    #[schema(example = "tenant-prod-001")]
    pub tenant_id: String,
    #[schema(example = "Production")]
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Whether tenant JWTs without a `scope` claim are accepted.
    #[schema(example = "allow", pattern = "^(allow|deny)$")]
    pub unscoped_tokens: &'static str,
    pub rate_limits: RateLimitsView,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            tenant_id: t.tenant_id.to_string(),
            name: t.name,
            created_at: t.created_at,
            unscoped_tokens: t.unscoped_tokens.as_str(),
            rate_limits: t.rate_limits.into(),
        }
    }
}

/// A tenant as created: the record plus its HMAC secret, shown this once only.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCreated {
    #[serde(flatten)]
    pub record: TenantView,
    /// Signs tenant JWTs and HMAC requests. Never shown again.
    pub hmac_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub total: usize,
    pub tenants: Vec<TenantView>,
}

/// The answer to a secret rotation: the new secret (shown once) and until when the old one works.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretRotated {
    pub tenant_id: String,
    pub hmac_secret: String,
    #[schema(value_type = String, format = DateTime)]
    pub previous_secret_expires_at: Timestamp,
}

/// `{key_id, name, scopes, tenant_ids, created_at, expires_at, revoked_at}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub key_id: String,
    pub name: String,
    #[schema(example = json!(["leaderboards:read"]))]
    pub scopes: Vec<String>,
    #[schema(example = json!(["tenant-prod-001"]))]
    pub tenant_ids: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            key_id: k.key_id,
            name: k.name,
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            tenant_ids: k.tenant_ids.to_strings(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key as created: the record plus the plaintext `key` (`pk_...`), shown this once only.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    #[serde(flatten)]
    pub record: KeyView,
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub total: usize,
    pub keys: Vec<KeyView>,
}

/// A leaderboard record as the seed shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderboardView {
    pub leaderboard_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(example = "active")]
    pub status: String,
    pub version: u64,
    /// The normalized config: scope, timeframe, scoring, ranking (defaults filled in).
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

pub fn status_str(status: LeaderboardStatus) -> &'static str {
    match status {
        LeaderboardStatus::Active => "active",
        LeaderboardStatus::Inactive => "inactive",
        LeaderboardStatus::Archived => "archived",
    }
}

impl From<Leaderboard> for LeaderboardView {
    fn from(lb: Leaderboard) -> Self {
        LeaderboardView {
            leaderboard_id: lb.leaderboard_id.to_string(),
            tenant_id: lb.tenant_id.to_string(),
            name: lb.name,
            description: lb.description,
            status: status_str(lb.status).to_owned(),
            version: lb.version,
            config: lb.config,
            created_at: lb.created_at,
            updated_at: lb.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderboardList {
    pub total: usize,
    pub leaderboards: Vec<LeaderboardView>,
}
