//! Reward rules, their settlements and preview, and the grants ledger (SPEC §7.2, §7.3, §7.7), under
//! `/tenants/{tenant_id}`. Scopes: `rewards:read` for GET, `rewards:write` otherwise.

use super::tenants::check_name;
use crate::auth::AdminAuth;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use jiff::Timestamp;
use phoenix_core::access::Scope;
use phoenix_core::config::LeaderboardConfig;
use phoenix_core::config::Timeframe;
use phoenix_core::reward::{Reward, is_client_id, tiers_from_json};
use phoenix_store::rewards::*;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

// ---- shared helpers (also used by coupons and the player routes) ----

/// An opaque cursor: URL-safe base64 of a small JSON value.
pub(crate) fn encode_cursor<T: Serialize>(value: &T) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(value).unwrap_or_default())
}

pub(crate) fn decode_cursor<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let bad = || ApiError::Validation("cursor: is not a cursor returned by this API".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// `limit`: 1..=max, default `default`.
pub(crate) fn limit_param(
    params: &HashMap<String, String>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match params.get("limit") {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::Validation(format!(
                    "limit: must be a whole number between 1 and {max} (got '{raw}')"
                ))
            }),
    }
}

/// Query parameters that must not be empty when given.
pub(crate) fn text_param<'a>(
    params: &'a HashMap<String, String>,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > 256 => Err(ApiError::Validation(format!(
            "{name}: must be 1 to 256 characters"
        ))),
        Some(v) => Ok(Some(v.as_str())),
    }
}

/// Refuses query parameters a route does not know.
pub(crate) fn only_params(
    params: &HashMap<String, String>,
    known: &[&str],
) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::Validation(format!(
            "{k}: unknown query parameter (expected {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A JSON object body's members, with an empty body read as `{}` when `empty_ok`.
pub(crate) fn object_body(body: &JsonBody, empty_ok: bool) -> Result<Map<String, Value>, ApiError> {
    if empty_ok && body.is_empty() {
        return Ok(Map::new());
    }
    body.parse::<Map<String, Value>>()
}

/// A create body's members, refused (naming the field) when one is not in `allowed`.
pub(crate) fn create_fields(
    body: &JsonBody,
    allowed: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let fields = object_body(body, false)?;
    match fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(unknown_field(k, allowed)),
        None => Ok(fields),
    }
}

/// A member the body must have.
pub(crate) fn required_field<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Value, ApiError> {
    fields
        .get(key)
        .ok_or_else(|| ApiError::Validation(format!("{key}: is required")))
}

/// A required id chosen by the client (SPEC §7.7: `^[A-Za-z0-9_-]{1,64}$`).
pub(crate) fn client_id_field(fields: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    let id = string_field(key, required_field(fields, key)?)?;
    if !is_client_id(&id) {
        return Err(ApiError::Validation(format!(
            "{key}: must match ^[A-Za-z0-9_-]{{1,64}}$"
        )));
    }
    Ok(id)
}

pub(crate) fn unknown_field(key: &str, allowed: &[&str]) -> ApiError {
    ApiError::Validation(format!(
        "{key}: unknown field (expected {})",
        allowed.join(", ")
    ))
}

pub(crate) fn string_field(key: &str, value: &Value) -> Result<String, ApiError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Validation(format!("{key}: expected a string")))
}

pub(crate) fn uint_field(key: &str, value: &Value, max: u64) -> Result<u64, ApiError> {
    value.as_u64().filter(|n| *n <= max).ok_or_else(|| {
        ApiError::Validation(format!("{key}: expected a whole number from 0 to {max}"))
    })
}

pub(crate) fn activity_field(key: &str, value: &Value) -> Result<Activity, ApiError> {
    value
        .as_str()
        .and_then(Activity::parse)
        .ok_or_else(|| ApiError::Validation(format!("{key}: must be one of active, inactive")))
}

/// `{"reason"}`: a required, non-blank text of at most 500 characters.
pub(crate) fn reason_body(body: &JsonBody) -> Result<String, ApiError> {
    let fields = object_body(body, false)?;
    let mut reason = None;
    for (key, value) in &fields {
        match key.as_str() {
            "reason" => {
                let r = string_field("reason", value)?;
                check_name("reason", &r, 500)?;
                reason = Some(r);
            }
            _ => return Err(unknown_field(key, &["reason"])),
        }
    }
    reason.ok_or_else(|| ApiError::Validation("reason: is required".into()))
}

/// Rewards writes running or waiting for the rewards gate at once.
pub(crate) const MAX_DETACHED_WRITES: usize = 1024;

/// Runs a rewards write as a task of its own: a client that goes away (or a connection closed at
/// shutdown) does not end it between its durable append and its application, so the store's rewards
/// gate is only ever released by a finished write, and the next writer checks a ledger that has it.
///
/// At most [`MAX_DETACHED_WRITES`] run or wait at once (process-wide): a client that opens requests
/// and hangs up cannot pile up tasks behind the gate; beyond that a write answers 503 at once.
pub(crate) async fn detached<T, F, Fut>(state: &AppState, write: F) -> Result<T, ApiError>
where
    F: FnOnce(std::sync::Arc<dyn phoenix_store::Store>) -> Fut,
    Fut: std::future::Future<Output = phoenix_store::StoreResult<T>> + Send + 'static,
    T: Send + 'static,
{
    static IN_FLIGHT: tokio::sync::Semaphore =
        tokio::sync::Semaphore::const_new(MAX_DETACHED_WRITES);
    let permit = IN_FLIGHT.try_acquire().map_err(|_| {
        ApiError::Unavailable("too many rewards writes in progress; retry shortly".into())
    })?;
    let write = write(state.store.clone());
    tokio::spawn(async move {
        let _permit = permit;
        write.await
    })
    .await
    .map_err(|e| ApiError::Internal(format!("a rewards write failed: {e}")))?
    .map_err(ApiError::from)
}

// ---- views ----

/// A window as settlements and previews show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RewardWindowView {
    #[schema(example = "2026-11-30")]
    pub id: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Timestamp>,
    /// `open`, `closed` or `upcoming`.
    pub status: &'static str,
}

fn window_view(w: &SettledWindow, status: &'static str) -> RewardWindowView {
    RewardWindowView {
        id: w.id.clone(),
        starts_at: w.starts_at,
        ends_at: w.ends_at,
        status,
    }
}

/// A reward rule (SPEC §7.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    pub rule_id: String,
    pub tenant_id: String,
    pub leaderboard_id: String,
    pub name: String,
    /// `active` or `inactive`.
    pub status: &'static str,
    pub min_participants: u32,
    pub settle_delay_seconds: u32,
    #[schema(value_type = Vec<Object>)]
    pub tiers: Value,
    pub version: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<RewardRule> for RuleView {
    fn from(r: RewardRule) -> Self {
        RuleView {
            rule_id: r.rule_id,
            tenant_id: r.tenant_id,
            leaderboard_id: r.leaderboard_id,
            name: r.name,
            status: r.status.as_str(),
            min_participants: r.min_participants,
            settle_delay_seconds: r.settle_delay_seconds,
            tiers: r.tiers,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub total: usize,
    pub reward_rules: Vec<RuleView>,
}

/// One settlement (SPEC §7.7).
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementView {
    pub rule_id: String,
    pub rule_version: u64,
    pub leaderboard_id: String,
    pub window: RewardWindowView,
    #[schema(value_type = String, format = DateTime)]
    pub settled_at: Timestamp,
    pub ranked_entries: u32,
    /// How many grants it made.
    pub grants: u64,
}

impl From<Settlement> for SettlementView {
    fn from(s: Settlement) -> Self {
        SettlementView {
            window: window_view(&s.window, "closed"),
            rule_id: s.rule_id,
            rule_version: s.rule_version,
            leaderboard_id: s.leaderboard_id,
            settled_at: s.settled_at,
            ranked_entries: s.ranked_entries,
            grants: s.grants,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementList {
    pub total: usize,
    pub settlements: Vec<SettlementView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewGrantView {
    pub grant_id: String,
    pub user_id: String,
    pub rank: u32,
    #[schema(value_type = Object)]
    pub reward: Value,
}

/// What settling the current window would grant now (nothing is granted).
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    pub rule_id: String,
    pub window: RewardWindowView,
    pub ranked_entries: u32,
    /// Every grant the settlement would make (not only this page).
    pub total: u64,
    pub grants: Vec<PreviewGrantView>,
    pub next_cursor: Option<String>,
}

/// Where a grant came from: `reward_rule` (`leaderboard_id`, `window_id`, `rank`), `achievement`
/// (`step`, `threshold`) or `coupon` (`code`; `id` is the campaign).
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantSourceView {
    /// `reward_rule`, `achievement` or `coupon`.
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaderboard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A grant (SPEC §7.3).
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    #[schema(example = "g_3f1c0a9e5b7d4c2a8e6f0b1d3c5a7e9f")]
    pub grant_id: String,
    pub user_id: String,
    #[schema(value_type = Object)]
    pub reward: Value,
    pub source: GrantSourceView,
    /// `pending`, `claimed` or `voided`.
    pub status: &'static str,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub claimed_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub voided_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub void_reason: Option<String>,
    /// The personal code a `coupon` reward issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
}

impl From<Grant> for GrantView {
    fn from(g: Grant) -> Self {
        GrantView {
            grant_id: g.grant_id,
            user_id: g.user_id,
            reward: g.reward,
            source: GrantSourceView {
                kind: g.source.kind,
                id: g.source.id,
                leaderboard_id: g.source.leaderboard_id,
                window_id: g.source.window_id,
                rank: g.source.rank,
                step: g.source.step,
                threshold: g.source.threshold,
                code: g.source.code,
            },
            status: g.status.as_str(),
            created_at: g.created_at,
            claimed_at: g.claimed_at,
            voided_at: g.voided_at,
            void_reason: g.void_reason,
            coupon_code: g.coupon_code,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantList {
    /// Every grant that matches (not only this page).
    pub total: u64,
    pub grants: Vec<GrantView>,
    pub next_cursor: Option<String>,
}

/// The keyset position of a grants page.
#[derive(Serialize, Deserialize)]
struct GrantCursor {
    t: i64,
    g: String,
}

/// Grant query parameters shared by the admin and player lists.
pub(crate) fn grant_query(
    params: &HashMap<String, String>,
    user_id: Option<String>,
    source_id: Option<String>,
) -> Result<GrantQuery, ApiError> {
    let status = match params.get("status") {
        None => None,
        Some(raw) => Some(GrantStatus::parse(raw).ok_or_else(|| {
            ApiError::Validation(format!(
                "status: must be one of pending, claimed, voided (got '{raw}')"
            ))
        })?),
    };
    let after = match params.get("cursor") {
        None => None,
        Some(raw) => {
            let c: GrantCursor = decode_cursor(raw)?;
            let at = Timestamp::from_microsecond(c.t).map_err(|_| {
                ApiError::Validation("cursor: is not a cursor returned by this API".into())
            })?;
            Some((at, c.g))
        }
    };
    Ok(GrantQuery {
        user_id,
        source_id,
        status,
        limit: limit_param(params, 50, 200)?,
        after,
    })
}

pub(crate) fn grant_next_cursor(page: &Page<Grant>) -> Option<String> {
    match page.items.last() {
        Some(last) if page.more => Some(encode_cursor(&GrantCursor {
            t: last.created_at.as_microsecond(),
            g: last.grant_id.clone(),
        })),
        _ => None,
    }
}

// ---- request bodies (documented; parsed field by field so errors name the field) ----

/// Body of `POST /tenants/{tenant_id}/reward-rules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateRule {
    #[schema(example = "weekly-podium", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    rule_id: String,
    /// A leaderboard of the tenant whose windows end (not `all_time`).
    #[schema(example = "xp-weekly-global", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    leaderboard_id: String,
    #[schema(
        example = "Weekly podium",
        min_length = 1,
        max_length = 200,
        pattern = "\\S"
    )]
    name: String,
    /// Default `active`.
    #[schema(nullable = false, pattern = "^(active|inactive)$")]
    status: Option<String>,
    /// Default 0.
    #[schema(minimum = 0, maximum = 1000000000, nullable = false)]
    min_participants: Option<u32>,
    /// Settlement waits this long after the window ends. Default 0.
    #[schema(minimum = 0, maximum = 86400, nullable = false)]
    settle_delay_seconds: Option<u32>,
    /// 1–50 tiers: `{rank_from, rank_to, rewards}` or `{top_percent, rewards}` (0 < p ≤ 100, at most
    /// two decimals), 1–10 rewards each.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 50)]
    tiers: Value,
}

/// Body of `PATCH /tenants/{tenant_id}/reward-rules/{rule_id}`: at least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PatchRule {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", nullable = false)]
    name: Option<String>,
    #[schema(nullable = false, pattern = "^(active|inactive)$")]
    status: Option<String>,
    #[schema(minimum = 0, maximum = 1000000000, nullable = false)]
    min_participants: Option<u32>,
    #[schema(minimum = 0, maximum = 86400, nullable = false)]
    settle_delay_seconds: Option<u32>,
    #[schema(value_type = Option<Vec<Object>>, min_items = 1, max_items = 50, nullable = false)]
    tiers: Option<Value>,
}

/// Body of `POST .../settle`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SettleBody {
    /// An ended window of the rule's leaderboard (see its `windows`).
    #[schema(example = "2026-11-23", min_length = 1, max_length = 64)]
    window_id: String,
}

/// Body of `POST .../void`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct VoidBody {
    #[schema(
        example = "cheating",
        min_length = 1,
        max_length = 500,
        pattern = "\\S"
    )]
    reason: String,
}

const MAX_MIN_PARTICIPANTS: u64 = 1_000_000_000;
const MAX_SETTLE_DELAY: u64 = 86_400;

/// Validates tiers, checking that every `coupon` reward names a campaign of the tenant; returns the
/// canonical JSON.
async fn checked_tiers(
    state: &AppState,
    tenant_id: &str,
    value: &Value,
) -> Result<Value, ApiError> {
    let tiers = tiers_from_json(value)?;
    for (i, tier) in tiers.iter().enumerate() {
        for (j, reward) in tier.rewards.iter().enumerate() {
            if let Reward::Coupon { campaign_id } = reward
                && state
                    .store
                    .get_campaign(tenant_id, campaign_id)
                    .await?
                    .is_none()
            {
                return Err(ApiError::Validation(format!(
                    "tiers[{i}].rewards[{j}].campaign_id: campaign '{campaign_id}' does not exist in tenant '{tenant_id}'"
                )));
            }
        }
    }
    Ok(Value::Array(tiers.iter().map(|t| t.to_json()).collect()))
}

/// The leaderboard a rule may settle: in the tenant, and not `all_time`.
async fn checked_leaderboard(state: &AppState, tenant_id: &str, id: &str) -> Result<(), ApiError> {
    let Some(lb) = state.store.get_leaderboard(tenant_id, id).await? else {
        return Err(ApiError::Validation(format!(
            "leaderboard_id: leaderboard '{id}' does not exist in tenant '{tenant_id}'"
        )));
    };
    let all_time = LeaderboardConfig::from_json(&lb.config)
        .is_ok_and(|c| matches!(c.timeframe, Timeframe::AllTime { .. }));
    if all_time {
        return Err(ApiError::Validation(format!(
            "leaderboard_id: leaderboard '{id}' is all_time; its window never ends, so a rule cannot settle it"
        )));
    }
    Ok(())
}

/// 404 unless the tenant exists (after the caller's permission was checked).
pub(crate) async fn require_tenant(state: &AppState, tenant_id: &str) -> Result<(), ApiError> {
    match state.store.get_tenant(tenant_id).await? {
        Some(_) => Ok(()),
        None => Err(super::tenants::tenant_not_found(tenant_id)),
    }
}

fn rule_not_found(tenant_id: &str, rule_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "reward rule '{rule_id}' not found in tenant '{tenant_id}'"
    ))
}

fn grant_not_found(tenant_id: &str, grant_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "grant '{grant_id}' not found in tenant '{tenant_id}'"
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RuleListParams {
    /// Only the rules of this leaderboard.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    leaderboard_id: Option<String>,
}

/// The tenant's reward rules.
#[utoipa::path(get, path = "/tenants/{tenant_id}/reward-rules", tag = "rewards",
    params(("tenant_id" = String, Path), RuleListParams),
    responses((status = 200, body = RuleList), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn list_rules(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<RuleList>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    only_params(&params, &["leaderboard_id"])?;
    let lb = text_param(&params, "leaderboard_id")?;
    let rules: Vec<RuleView> = state
        .store
        .list_reward_rules(&tenant_id, lb)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(RuleList {
        total: rules.len(),
        reward_rules: rules,
    }))
}

/// Creates a reward rule: prizes for the final ranks of each window of a leaderboard.
#[utoipa::path(post, path = "/tenants/{tenant_id}/reward-rules", tag = "rewards",
    params(("tenant_id" = String, Path)), request_body = CreateRule,
    responses((status = 201, body = RuleView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_rule(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    const ALLOWED: [&str; 7] = [
        "rule_id",
        "leaderboard_id",
        "name",
        "status",
        "min_participants",
        "settle_delay_seconds",
        "tiers",
    ];
    let fields = create_fields(&body, &ALLOWED)?;
    let required = |key: &str| required_field(&fields, key);
    let rule_id = client_id_field(&fields, "rule_id")?;
    let leaderboard_id = string_field("leaderboard_id", required("leaderboard_id")?)?;
    let name = string_field("name", required("name")?)?;
    check_name("name", &name, 200)?;
    let status = match fields.get("status") {
        Some(v) => activity_field("status", v)?,
        None => Activity::Active,
    };
    let min_participants = match fields.get("min_participants") {
        Some(v) => uint_field("min_participants", v, MAX_MIN_PARTICIPANTS)? as u32,
        None => 0,
    };
    let settle_delay_seconds = match fields.get("settle_delay_seconds") {
        Some(v) => uint_field("settle_delay_seconds", v, MAX_SETTLE_DELAY)? as u32,
        None => 0,
    };
    let tiers_raw = required("tiers")?;
    tiers_from_json(tiers_raw)?;
    checked_leaderboard(&state, &tenant_id, &leaderboard_id).await?;
    let tiers = checked_tiers(&state, &tenant_id, tiers_raw).await?;
    let new = NewRewardRule {
        tenant_id: tenant_id.clone(),
        rule_id,
        leaderboard_id,
        name,
        status,
        min_participants,
        settle_delay_seconds,
        tiers,
    };
    let rule = detached(&state, move |store| async move {
        store.create_reward_rule(new).await
    })
    .await?;
    tracing::info!(tenant_id = %tenant_id, rule_id = %rule.rule_id, "reward rule created");
    Ok((StatusCode::CREATED, Json(rule.into())))
}

/// One reward rule.
#[utoipa::path(get, path = "/tenants/{tenant_id}/reward-rules/{rule_id}", tag = "rewards",
    params(("tenant_id" = String, Path), ("rule_id" = String, Path)),
    responses((status = 200, body = RuleView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get_rule(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, rule_id)): Path<(String, String)>,
) -> Result<Json<RuleView>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    let rule = state
        .store
        .get_reward_rule(&tenant_id, &rule_id)
        .await?
        .ok_or_else(|| rule_not_found(&tenant_id, &rule_id))?;
    Ok(Json(rule.into()))
}

/// Changes `name`, `status`, `min_participants`, `settle_delay_seconds` and/or `tiers`; `version`
/// grows. Settlements use the rule as it is when a window ends.
#[utoipa::path(patch, path = "/tenants/{tenant_id}/reward-rules/{rule_id}", tag = "rewards",
    params(("tenant_id" = String, Path), ("rule_id" = String, Path)), request_body = PatchRule,
    responses((status = 200, body = RuleView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn patch_rule(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, rule_id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<RuleView>, ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    if state
        .store
        .get_reward_rule(&tenant_id, &rule_id)
        .await?
        .is_none()
    {
        return Err(rule_not_found(&tenant_id, &rule_id));
    }
    let fields = object_body(&body, false)?;
    const ALLOWED: [&str; 5] = [
        "name",
        "status",
        "min_participants",
        "settle_delay_seconds",
        "tiers",
    ];
    if fields.is_empty() {
        return Err(ApiError::Validation(format!(
            "body must change at least one of {}",
            ALLOWED.join(", ")
        )));
    }
    let mut patch = RewardRulePatch::default();
    for (key, value) in &fields {
        match key.as_str() {
            "name" => {
                let name = string_field("name", value)?;
                check_name("name", &name, 200)?;
                patch.name = Some(name);
            }
            "status" => patch.status = Some(activity_field("status", value)?),
            "min_participants" => {
                patch.min_participants =
                    Some(uint_field("min_participants", value, MAX_MIN_PARTICIPANTS)? as u32)
            }
            "settle_delay_seconds" => {
                patch.settle_delay_seconds =
                    Some(uint_field("settle_delay_seconds", value, MAX_SETTLE_DELAY)? as u32)
            }
            "tiers" => patch.tiers = Some(checked_tiers(&state, &tenant_id, value).await?),
            "leaderboard_id" | "rule_id" => {
                return Err(ApiError::Validation(format!(
                    "{key}: cannot be changed; create a new rule"
                )));
            }
            _ => return Err(unknown_field(key, &ALLOWED)),
        }
    }
    let rule = detached(&state, {
        let (t, r) = (tenant_id.clone(), rule_id.clone());
        move |store| async move { store.update_reward_rule(&t, &r, patch).await }
    })
    .await?
    .ok_or_else(|| rule_not_found(&tenant_id, &rule_id))?;
    tracing::info!(tenant_id = %tenant_id, rule_id = %rule_id, version = rule.version, "reward rule updated");
    Ok(Json(rule.into()))
}

/// Deletes a rule; its settlements and grants stay, and its id stays taken.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/reward-rules/{rule_id}", tag = "rewards",
    params(("tenant_id" = String, Path), ("rule_id" = String, Path)),
    responses((status = 200, body = RuleView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, rule_id)): Path<(String, String)>,
) -> Result<Json<RuleView>, ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    let rule = detached(&state, {
        let (t, r) = (tenant_id.clone(), rule_id.clone());
        move |store| async move { store.delete_reward_rule(&t, &r).await }
    })
    .await?
    .ok_or_else(|| rule_not_found(&tenant_id, &rule_id))?;
    tracing::info!(tenant_id = %tenant_id, rule_id = %rule_id, "reward rule deleted");
    Ok(Json(rule.into()))
}

/// Settles an ended window now: 201 with the settlement, or 200 with the existing one; 409 while the
/// window has not ended.
#[utoipa::path(post, path = "/tenants/{tenant_id}/reward-rules/{rule_id}/settle", tag = "rewards",
    params(("tenant_id" = String, Path), ("rule_id" = String, Path)), request_body = SettleBody,
    responses((status = 201, body = SettlementView), (status = 200, body = SettlementView),
              (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
pub async fn settle(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, rule_id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<(StatusCode, Json<SettlementView>), ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    if state
        .store
        .get_reward_rule(&tenant_id, &rule_id)
        .await?
        .is_none()
    {
        return Err(rule_not_found(&tenant_id, &rule_id));
    }
    let fields = object_body(&body, false)?;
    if let Some(k) = fields.keys().find(|k| k.as_str() != "window_id") {
        return Err(unknown_field(k, &["window_id"]));
    }
    let window_id = string_field(
        "window_id",
        fields
            .get("window_id")
            .ok_or_else(|| ApiError::Validation("window_id: is required".into()))?,
    )?;
    let outcome = detached(&state, {
        let (t, r, w) = (tenant_id.clone(), rule_id.clone(), window_id.clone());
        move |store| async move { store.settle(&t, &r, &w).await }
    })
    .await?
    .ok_or_else(|| rule_not_found(&tenant_id, &rule_id))?;
    match outcome {
        SettleOutcome::Created(s) => {
            tracing::info!(tenant_id = %tenant_id, rule_id = %rule_id, window_id = %window_id,
                grants = s.grants, "window settled by hand");
            Ok((StatusCode::CREATED, Json(s.into())))
        }
        SettleOutcome::Existing(s) => Ok((StatusCode::OK, Json(s.into()))),
        SettleOutcome::NotEnded => Err(ApiError::Conflict(format!(
            "window '{window_id}' has not ended; it can be settled once it has"
        ))),
        SettleOutcome::UnknownWindow => Err(ApiError::Validation(format!(
            "window_id: the rule's leaderboard has no ended window '{window_id}'"
        ))),
    }
}

/// What settling the current window would grant right now, `limit` (1–1000, default 100) at a time;
/// nothing is granted.
#[utoipa::path(get, path = "/tenants/{tenant_id}/reward-rules/{rule_id}/preview", tag = "rewards",
    params(("tenant_id" = String, Path), ("rule_id" = String, Path),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000),
           ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+$")),
    responses((status = 200, body = PreviewView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn preview(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, rule_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<PreviewView>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    if state
        .store
        .get_reward_rule(&tenant_id, &rule_id)
        .await?
        .is_none()
    {
        return Err(rule_not_found(&tenant_id, &rule_id));
    }
    only_params(&params, &["limit", "cursor"])?;
    let limit = limit_param(&params, 100, 1000)?;
    #[derive(Serialize, Deserialize)]
    struct At {
        w: String,
        i: u64,
    }
    let cursor: Option<At> = params.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    let from = cursor.as_ref().map_or(0, |c| c.i);
    let p = state
        .store
        .preview_settlement(&tenant_id, &rule_id, from, limit)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "reward rule '{rule_id}' has no live leaderboard to preview"
            ))
        })?;
    if cursor.is_some_and(|c| c.w != p.window.id) {
        return Err(ApiError::Validation(
            "cursor: the window it was made for has ended; start again without a cursor".into(),
        ));
    }
    Ok(Json(PreviewView {
        rule_id,
        next_cursor: p.next.map(|i| {
            encode_cursor(&At {
                w: p.window.id.clone(),
                i,
            })
        }),
        window: window_view(&p.window, p.window_status),
        ranked_entries: p.ranked_entries,
        total: p.total,
        grants: p
            .grants
            .into_iter()
            .map(|g| PreviewGrantView {
                grant_id: g.grant_id,
                user_id: g.user_id,
                rank: g.rank,
                reward: g.reward,
            })
            .collect(),
    }))
}

/// A rule's settlements, newest window first.
#[utoipa::path(get, path = "/tenants/{tenant_id}/reward-rules/{rule_id}/settlements",
    tag = "rewards", params(("tenant_id" = String, Path), ("rule_id" = String, Path)),
    responses((status = 200, body = SettlementList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn settlements(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, rule_id)): Path<(String, String)>,
) -> Result<Json<SettlementList>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    let list: Vec<SettlementView> = state
        .store
        .list_settlements(&tenant_id, &rule_id)
        .await?
        .ok_or_else(|| rule_not_found(&tenant_id, &rule_id))?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(SettlementList {
        total: list.len(),
        settlements: list,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct GrantListParams {
    #[param(min_length = 1, max_length = 256)]
    user_id: Option<String>,
    /// The rule, achievement or campaign that made the grants.
    #[param(min_length = 1, max_length = 256)]
    source_id: Option<String>,
    #[param(pattern = "^(pending|claimed|voided)$")]
    status: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    #[param(pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// The tenant's grants, newest first (then by `grant_id`), filtered.
#[utoipa::path(get, path = "/tenants/{tenant_id}/grants", tag = "rewards",
    params(("tenant_id" = String, Path), GrantListParams),
    responses((status = 200, body = GrantList), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn list_grants(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<GrantList>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    only_params(
        &params,
        &["user_id", "source_id", "status", "limit", "cursor"],
    )?;
    let user = text_param(&params, "user_id")?.map(str::to_owned);
    let source = text_param(&params, "source_id")?.map(str::to_owned);
    let query = grant_query(&params, user, source)?;
    let page = state.store.list_grants(&tenant_id, query).await?;
    Ok(Json(GrantList {
        total: page.total,
        next_cursor: grant_next_cursor(&page),
        grants: page.items.into_iter().map(Into::into).collect(),
    }))
}

/// One grant.
#[utoipa::path(get, path = "/tenants/{tenant_id}/grants/{grant_id}", tag = "rewards",
    params(("tenant_id" = String, Path), ("grant_id" = String, Path)),
    responses((status = 200, body = GrantView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get_grant(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, grant_id)): Path<(String, String)>,
) -> Result<Json<GrantView>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    let grant = state
        .store
        .get_grant(&tenant_id, &grant_id)
        .await?
        .ok_or_else(|| grant_not_found(&tenant_id, &grant_id))?;
    Ok(Json(grant.into()))
}

/// Voids a grant (also a claimed one): recorded, not erased. Voiding again answers it unchanged.
#[utoipa::path(post, path = "/tenants/{tenant_id}/grants/{grant_id}/void", tag = "rewards",
    params(("tenant_id" = String, Path), ("grant_id" = String, Path)), request_body = VoidBody,
    responses((status = 200, body = GrantView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn void_grant(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, grant_id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<GrantView>, ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    if state
        .store
        .get_grant(&tenant_id, &grant_id)
        .await?
        .is_none()
    {
        return Err(grant_not_found(&tenant_id, &grant_id));
    }
    let reason = reason_body(&body)?;
    let grant = detached(&state, {
        let (t, g) = (tenant_id.clone(), grant_id.clone());
        move |store| async move { store.void_grant(&t, &g, reason).await }
    })
    .await?
    .ok_or_else(|| grant_not_found(&tenant_id, &grant_id))?;
    tracing::info!(tenant_id = %tenant_id, grant_id = %grant_id, "grant voided");
    Ok(Json(grant.into()))
}
