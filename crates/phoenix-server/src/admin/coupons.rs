//! Coupon campaigns, personal codes, voiding and the redemption audit trail (SPEC §7.4, §7.7), under
//! `/tenants/{tenant_id}`. Scopes: `rewards:read` for GET, `rewards:write` otherwise.

use super::rewards::{
    activity_field, client_id_field, create_fields, decode_cursor, detached, encode_cursor,
    limit_param, object_body, only_params, reason_body, require_tenant, required_field,
    string_field, text_param,
};
use super::tenants::check_name;
use crate::auth::AdminAuth;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use phoenix_core::access::Scope;
use phoenix_core::reward::{MAX_COUNT, MAX_REWARDS_PER_TIER, Reward};
use phoenix_store::rewards::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

/// A coupon campaign.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    pub campaign_id: String,
    pub tenant_id: String,
    pub name: String,
    #[schema(value_type = Vec<Object>)]
    pub rewards: Value,
    /// The shared code, as created (null for a campaign of personal codes only).
    pub code: Option<String>,
    pub max_redemptions: Option<u64>,
    pub per_player_limit: u32,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// `active` or `inactive`.
    pub status: &'static str,
    pub redemptions: u64,
    pub version: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<Campaign> for CampaignView {
    fn from(c: Campaign) -> Self {
        CampaignView {
            campaign_id: c.campaign_id,
            tenant_id: c.tenant_id,
            name: c.name,
            rewards: c.rewards,
            code: c.code,
            max_redemptions: c.max_redemptions,
            per_player_limit: c.per_player_limit,
            starts_at: c.starts_at,
            expires_at: c.expires_at,
            status: c.status.as_str(),
            redemptions: c.redemptions,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    pub total: usize,
    pub campaigns: Vec<CampaignView>,
}

/// A coupon code and its state.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeView {
    #[schema(example = "7K3Q-9XWD-M2PA")]
    pub code: String,
    pub campaign_id: String,
    /// `shared` or `personal`.
    pub kind: &'static str,
    pub issued_to: Option<String>,
    pub redeemed_by: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub redeemed_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub voided_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub void_reason: Option<String>,
}

impl From<CouponCode> for CodeView {
    fn from(c: CouponCode) -> Self {
        CodeView {
            code: c.code,
            campaign_id: c.campaign_id,
            kind: if c.personal { "personal" } else { "shared" },
            issued_to: c.issued_to,
            redeemed_by: c.redeemed_by,
            redeemed_at: c.redeemed_at,
            voided_at: c.voided_at,
            void_reason: c.void_reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeList {
    pub total: u64,
    pub codes: Vec<CodeView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCode {
    #[schema(example = "7K3Q-9XWD-M2PA")]
    pub code: String,
    pub issued_to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCodes {
    pub total: usize,
    pub codes: Vec<IssuedCode>,
}

/// One redemption (the audit trail).
#[derive(Debug, Serialize, ToSchema)]
pub struct RedemptionView {
    pub redemption_id: String,
    pub code: String,
    pub campaign_id: String,
    pub user_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub redeemed_at: Timestamp,
    pub grant_ids: Vec<String>,
}

impl From<Redemption> for RedemptionView {
    fn from(r: Redemption) -> Self {
        RedemptionView {
            redemption_id: r.redemption_id,
            code: r.code,
            campaign_id: r.campaign_id,
            user_id: r.user_id,
            redeemed_at: r.redeemed_at,
            grant_ids: r.grant_ids,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedemptionList {
    pub total: u64,
    pub redemptions: Vec<RedemptionView>,
    pub next_cursor: Option<String>,
}

/// A code with its state and redemptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct CouponView {
    #[serde(flatten)]
    pub code: CodeView,
    pub redemptions: Vec<RedemptionView>,
}

/// Body of `POST /tenants/{tenant_id}/coupon-campaigns`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateCampaign {
    #[schema(example = "vip-week", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    campaign_id: String,
    #[schema(
        example = "VIP week",
        min_length = 1,
        max_length = 200,
        pattern = "\\S"
    )]
    name: String,
    /// 1–10 rewards (SPEC §7.1), none of type `coupon`.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 10)]
    rewards: Value,
    /// A shared code: 4–32 of `[A-Za-z0-9-]`, unique in the tenant without regard to case or dashes.
    #[schema(
        example = "LAUNCH2026",
        pattern = "^[A-Za-z0-9-]{4,32}$",
        nullable = false
    )]
    code: Option<String>,
    /// Caps all redemptions of the campaign.
    #[schema(minimum = 1, maximum = 9007199254740991.0, nullable = false)]
    max_redemptions: Option<u64>,
    /// Default 1.
    #[schema(minimum = 1, maximum = 1000000, nullable = false)]
    per_player_limit: Option<u32>,
    #[schema(value_type = Option<String>, format = DateTime, nullable = false)]
    starts_at: Option<String>,
    /// In the future, and after `starts_at`.
    #[schema(value_type = Option<String>, format = DateTime, nullable = false)]
    expires_at: Option<String>,
    #[schema(nullable = false, pattern = "^(active|inactive)$")]
    status: Option<String>,
}

/// Body of `PATCH .../coupon-campaigns/{campaign_id}`: at least one field; null removes a limit or
/// the expiry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PatchCampaign {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", nullable = false)]
    name: Option<String>,
    #[schema(nullable = false, pattern = "^(active|inactive)$")]
    status: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<String>,
    #[schema(minimum = 1, maximum = 9007199254740991.0)]
    max_redemptions: Option<u64>,
    #[schema(minimum = 1, maximum = 1000000, nullable = false)]
    per_player_limit: Option<u32>,
}

/// Body of `POST .../codes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct IssueCodesBody {
    #[schema(minimum = 1, maximum = 10000)]
    count: u32,
    /// Binds every code to this player; without it a code binds to whoever redeems it first.
    #[schema(min_length = 1, max_length = 256, nullable = false)]
    user_id: Option<String>,
}

const MAX_PER_PLAYER: u64 = 1_000_000;

fn campaign_not_found(tenant_id: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("campaign '{id}' not found in tenant '{tenant_id}'"))
}

fn code_not_found(tenant_id: &str, code: &str) -> ApiError {
    ApiError::NotFound(format!("code '{code}' not found in tenant '{tenant_id}'"))
}

fn timestamp_field(key: &str, value: &Value) -> Result<Timestamp, ApiError> {
    value
        .as_str()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .ok_or_else(|| ApiError::Validation(format!("{key}: expected an RFC 3339 timestamp")))
}

fn limit_field(key: &str, value: &Value, max: u64) -> Result<u64, ApiError> {
    value
        .as_u64()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::Validation(format!("{key}: expected a whole number from 1 to {max}"))
        })
}

/// 1–10 rewards, none of them a coupon; canonical JSON.
fn campaign_rewards(value: &Value) -> Result<Value, ApiError> {
    let list = value
        .as_array()
        .ok_or_else(|| ApiError::Validation("rewards: expected an array".into()))?;
    if !(1..=MAX_REWARDS_PER_TIER).contains(&list.len()) {
        return Err(ApiError::Validation(format!(
            "rewards: expected 1 to {MAX_REWARDS_PER_TIER} rewards"
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let reward =
            Reward::from_json(raw).map_err(|e| ApiError::from(e.at_index(i).within("rewards")))?;
        if matches!(reward, Reward::Coupon { .. }) {
            return Err(ApiError::Validation(format!(
                "rewards[{i}].type: a campaign cannot hand out coupons"
            )));
        }
        out.push(reward.to_json());
    }
    Ok(Value::Array(out))
}

fn check_window(
    starts_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), ApiError> {
    if let Some(end) = expires_at {
        if end <= now {
            return Err(ApiError::Validation(
                "expires_at: must be in the future".into(),
            ));
        }
        if starts_at.is_some_and(|start| start >= end) {
            return Err(ApiError::Validation(
                "starts_at: must be before expires_at".into(),
            ));
        }
    }
    Ok(())
}

/// The tenant's campaigns.
#[utoipa::path(get, path = "/tenants/{tenant_id}/coupon-campaigns", tag = "coupons",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = CampaignList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_campaigns(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
) -> Result<Json<CampaignList>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    let campaigns: Vec<CampaignView> = state
        .store
        .list_campaigns(&tenant_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(CampaignList {
        total: campaigns.len(),
        campaigns,
    }))
}

/// Creates a coupon campaign: a shared code and/or personal codes made later.
#[utoipa::path(post, path = "/tenants/{tenant_id}/coupon-campaigns", tag = "coupons",
    params(("tenant_id" = String, Path)), request_body = CreateCampaign,
    responses((status = 201, body = CampaignView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_campaign(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    const ALLOWED: [&str; 9] = [
        "campaign_id",
        "name",
        "rewards",
        "code",
        "max_redemptions",
        "per_player_limit",
        "starts_at",
        "expires_at",
        "status",
    ];
    let fields = create_fields(&body, &ALLOWED)?;
    let required = |key: &str| required_field(&fields, key);
    let present = |key: &str| fields.get(key).filter(|v| !v.is_null());
    let campaign_id = client_id_field(&fields, "campaign_id")?;
    let name = string_field("name", required("name")?)?;
    check_name("name", &name, 200)?;
    let rewards = campaign_rewards(required("rewards")?)?;
    let code = match present("code") {
        Some(v) => {
            let code = string_field("code", v)?;
            phoenix_core::coupon::check_shared_code(&code)?;
            Some(code)
        }
        None => None,
    };
    let max_redemptions = present("max_redemptions")
        .map(|v| limit_field("max_redemptions", v, MAX_COUNT))
        .transpose()?;
    let per_player_limit = present("per_player_limit")
        .map(|v| limit_field("per_player_limit", v, MAX_PER_PLAYER))
        .transpose()?
        .unwrap_or(1) as u32;
    let starts_at = present("starts_at")
        .map(|v| timestamp_field("starts_at", v))
        .transpose()?;
    let expires_at = present("expires_at")
        .map(|v| timestamp_field("expires_at", v))
        .transpose()?;
    check_window(starts_at, expires_at, phoenix_store::now())?;
    let status = match present("status") {
        Some(v) => activity_field("status", v)?,
        None => Activity::Active,
    };
    let new = NewCampaign {
        tenant_id: tenant_id.clone(),
        campaign_id,
        name,
        rewards,
        code,
        max_redemptions,
        per_player_limit,
        starts_at,
        expires_at,
        status,
    };
    let campaign = detached(&state, move |store| async move {
        store.create_campaign(new).await
    })
    .await?;
    tracing::info!(tenant_id = %tenant_id, campaign_id = %campaign.campaign_id, "coupon campaign created");
    Ok((StatusCode::CREATED, Json(campaign.into())))
}

/// One campaign, with its redemption count.
#[utoipa::path(get, path = "/tenants/{tenant_id}/coupon-campaigns/{campaign_id}", tag = "coupons",
    params(("tenant_id" = String, Path), ("campaign_id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get_campaign(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, campaign_id)): Path<(String, String)>,
) -> Result<Json<CampaignView>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    let c = state
        .store
        .get_campaign(&tenant_id, &campaign_id)
        .await?
        .ok_or_else(|| campaign_not_found(&tenant_id, &campaign_id))?;
    Ok(Json(c.into()))
}

/// Changes `name`, `status`, `expires_at`, `max_redemptions` and/or `per_player_limit`.
#[utoipa::path(patch, path = "/tenants/{tenant_id}/coupon-campaigns/{campaign_id}",
    tag = "coupons", params(("tenant_id" = String, Path), ("campaign_id" = String, Path)),
    request_body = PatchCampaign,
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn patch_campaign(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, campaign_id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<CampaignView>, ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    let Some(current) = state.store.get_campaign(&tenant_id, &campaign_id).await? else {
        return Err(campaign_not_found(&tenant_id, &campaign_id));
    };
    let fields = object_body(&body, false)?;
    const ALLOWED: [&str; 5] = [
        "name",
        "status",
        "expires_at",
        "max_redemptions",
        "per_player_limit",
    ];
    if fields.is_empty() {
        return Err(ApiError::Validation(format!(
            "body must change at least one of {}",
            ALLOWED.join(", ")
        )));
    }
    let mut patch = CampaignPatch::default();
    for (key, value) in &fields {
        match (key.as_str(), value) {
            ("name", v) => {
                let name = string_field("name", v)?;
                check_name("name", &name, 200)?;
                patch.name = Some(name);
            }
            ("status", v) => patch.status = Some(activity_field("status", v)?),
            ("expires_at", Value::Null) => patch.expires_at = Some(None),
            ("expires_at", v) => {
                let end = timestamp_field("expires_at", v)?;
                check_window(current.starts_at, Some(end), phoenix_store::now())?;
                patch.expires_at = Some(Some(end));
            }
            ("max_redemptions", Value::Null) => patch.max_redemptions = Some(None),
            ("max_redemptions", v) => {
                patch.max_redemptions = Some(Some(limit_field("max_redemptions", v, MAX_COUNT)?))
            }
            ("per_player_limit", v) => {
                patch.per_player_limit =
                    Some(limit_field("per_player_limit", v, MAX_PER_PLAYER)? as u32)
            }
            _ => {
                return Err(ApiError::Validation(format!(
                    "{key}: cannot be changed by PATCH (it changes {})",
                    ALLOWED.join(", ")
                )));
            }
        }
    }
    let c = detached(&state, {
        let (t, c) = (tenant_id.clone(), campaign_id.clone());
        move |store| async move { store.update_campaign(&t, &c, patch).await }
    })
    .await?
    .ok_or_else(|| campaign_not_found(&tenant_id, &campaign_id))?;
    tracing::info!(tenant_id = %tenant_id, campaign_id = %campaign_id, version = c.version, "coupon campaign updated");
    Ok(Json(c.into()))
}

/// Issues `count` personal single-use codes (12 Crockford base32 characters, `XXXX-XXXX-XXXX`),
/// bound to `user_id` if given, else to whoever redeems first.
#[utoipa::path(post, path = "/tenants/{tenant_id}/coupon-campaigns/{campaign_id}/codes",
    tag = "coupons", params(("tenant_id" = String, Path), ("campaign_id" = String, Path)),
    request_body = IssueCodesBody,
    responses((status = 201, body = IssuedCodes), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn issue_codes(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, campaign_id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<(StatusCode, Json<IssuedCodes>), ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    if state
        .store
        .get_campaign(&tenant_id, &campaign_id)
        .await?
        .is_none()
    {
        return Err(campaign_not_found(&tenant_id, &campaign_id));
    }
    let fields = object_body(&body, false)?;
    let mut count = None;
    let mut user = None;
    for (key, value) in &fields {
        match key.as_str() {
            "count" => {
                count = Some(
                    value
                        .as_u64()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| {
                            ApiError::Validation(
                                "count: expected a whole number from 1 to 10000".into(),
                            )
                        })? as u32,
                )
            }
            "user_id" => {
                let u = string_field("user_id", value)?;
                if u.is_empty() || u.len() > 256 {
                    return Err(ApiError::Validation(
                        "user_id: must be 1 to 256 characters".into(),
                    ));
                }
                user = Some(u);
            }
            _ => {
                return Err(ApiError::Validation(format!(
                    "{key}: unknown field (expected count, user_id)"
                )));
            }
        }
    }
    let count = count.ok_or_else(|| ApiError::Validation("count: is required".into()))?;
    let codes = detached(&state, {
        let (t, c) = (tenant_id.clone(), campaign_id.clone());
        move |store| async move { store.issue_codes(&t, &c, count, user).await }
    })
    .await?
    .ok_or_else(|| campaign_not_found(&tenant_id, &campaign_id))?;
    tracing::info!(tenant_id = %tenant_id, campaign_id = %campaign_id, count, "personal codes issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedCodes {
            total: codes.len(),
            codes: codes
                .into_iter()
                .map(|c| IssuedCode {
                    code: c.code,
                    issued_to: c.issued_to,
                })
                .collect(),
        }),
    ))
}

#[derive(Serialize, Deserialize)]
struct After {
    a: String,
}

/// A campaign's personal codes, oldest first (by creation time, then code), `limit` (1–1000, default 100) at a time.
#[utoipa::path(get, path = "/tenants/{tenant_id}/coupon-campaigns/{campaign_id}/codes",
    tag = "coupons", params(("tenant_id" = String, Path), ("campaign_id" = String, Path),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+$")),
    responses((status = 200, body = CodeList), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn list_codes(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, campaign_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<CodeList>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    if state
        .store
        .get_campaign(&tenant_id, &campaign_id)
        .await?
        .is_none()
    {
        return Err(campaign_not_found(&tenant_id, &campaign_id));
    }
    only_params(&params, &["limit", "cursor"])?;
    let limit = limit_param(&params, 100, 1000)?;
    let after: Option<After> = params.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    let page = state
        .store
        .list_codes(
            &tenant_id,
            &campaign_id,
            after.as_ref().map(|a| a.a.as_str()),
            limit,
        )
        .await?
        .ok_or_else(|| campaign_not_found(&tenant_id, &campaign_id))?;
    let next_cursor = match page.items.last() {
        Some(last) if page.more => Some(encode_cursor(&After {
            a: last.code.clone(),
        })),
        _ => None,
    };
    Ok(Json(CodeList {
        total: page.total,
        next_cursor,
        codes: page.items.into_iter().map(Into::into).collect(),
    }))
}

/// A code's state and its redemptions (the first 1000), matched without regard to case or dashes.
#[utoipa::path(get, path = "/tenants/{tenant_id}/coupons/{code}", tag = "coupons",
    params(("tenant_id" = String, Path), ("code" = String, Path)),
    responses((status = 200, body = CouponView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get_coupon(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, code)): Path<(String, String)>,
) -> Result<Json<CouponView>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    let (found, redemptions) = state
        .store
        .get_code(&tenant_id, &code, 1000)
        .await?
        .ok_or_else(|| code_not_found(&tenant_id, &code))?;
    Ok(Json(CouponView {
        code: found.into(),
        redemptions: redemptions.into_iter().map(Into::into).collect(),
    }))
}

/// Voids a code: it can no longer be redeemed. Voiding again answers it unchanged.
#[utoipa::path(post, path = "/tenants/{tenant_id}/coupons/{code}/void", tag = "coupons",
    params(("tenant_id" = String, Path), ("code" = String, Path)),
    request_body = super::rewards::VoidBody,
    responses((status = 200, body = CodeView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn void_coupon(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, code)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<CodeView>, ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    if state.store.get_code(&tenant_id, &code, 0).await?.is_none() {
        return Err(code_not_found(&tenant_id, &code));
    }
    let reason = reason_body(&body)?;
    let voided = detached(&state, {
        let (t, c) = (tenant_id.clone(), code.clone());
        move |store| async move { store.void_code(&t, &c, reason).await }
    })
    .await?
    .ok_or_else(|| code_not_found(&tenant_id, &code))?;
    tracing::info!(tenant_id = %tenant_id, "coupon code voided");
    Ok(Json(voided.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RedemptionListParams {
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    campaign_id: Option<String>,
    #[param(min_length = 1, max_length = 256)]
    user_id: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    #[param(pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// The audit trail of redemptions, newest first.
#[utoipa::path(get, path = "/tenants/{tenant_id}/coupon-redemptions", tag = "coupons",
    params(("tenant_id" = String, Path), RedemptionListParams),
    responses((status = 200, body = RedemptionList), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn list_redemptions(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<RedemptionList>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    only_params(&params, &["campaign_id", "user_id", "limit", "cursor"])?;
    let campaign = text_param(&params, "campaign_id")?;
    let user = text_param(&params, "user_id")?;
    let limit = limit_param(&params, 50, 200)?;
    let after: Option<After> = params.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    let page = state
        .store
        .list_redemptions(
            &tenant_id,
            campaign,
            user,
            after.as_ref().map(|a| a.a.as_str()),
            limit,
        )
        .await?;
    let next_cursor = match page.items.last() {
        Some(last) if page.more => Some(encode_cursor(&After {
            a: last.redemption_id.clone(),
        })),
        _ => None,
    };
    Ok(Json(RedemptionList {
        total: page.total,
        next_cursor,
        redemptions: page.items.into_iter().map(Into::into).collect(),
    }))
}
