//! Webhooks (SPEC §7.6, §7.7), under `/tenants/{tenant_id}`: CRUD with the secret shown once,
//! rotation with a grace period, and the deliveries log. Scopes: `rewards:read` for GET,
//! `rewards:write` otherwise.

use super::rewards::{
    create_fields, decode_cursor, detached, encode_cursor, limit_param, object_body, only_params,
    require_tenant, required_field, string_field, unknown_field,
};
use crate::auth::AdminAuth;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use phoenix_core::access::Scope;
use phoenix_core::webhook::{EVENT_TYPES, check_url};
use phoenix_store::achievements::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use utoipa::ToSchema;

/// Body of `POST /tenants/{tenant_id}/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateWebhook {
    /// `http(s)`; loopback, private and link-local addresses are refused unless the server allows
    /// them (`PHOENIX_WEBHOOK_ALLOW_PRIVATE`).
    #[schema(
        example = "https://backend.example.com/phoenix",
        min_length = 8,
        max_length = 2048,
        pattern = "^https?://[^\\s]+$"
    )]
    url: String,
    /// 1–5 distinct event types.
    #[schema(min_items = 1, max_items = 5,
        example = json!(["reward.granted", "coupon.redeemed"]))]
    events: Vec<WebhookEventType>,
    /// Default `active`.
    #[schema(nullable = false, pattern = "^(active|disabled)$")]
    status: Option<String>,
    /// Default empty.
    #[schema(max_length = 500, nullable = false)]
    description: Option<String>,
}

/// An event type a webhook may take.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub enum WebhookEventType {
    #[serde(rename = "window.closed")]
    #[schema(rename = "window.closed")]
    WindowClosed,
    #[serde(rename = "reward.granted")]
    #[schema(rename = "reward.granted")]
    RewardGranted,
    #[serde(rename = "achievement.completed")]
    #[schema(rename = "achievement.completed")]
    AchievementCompleted,
    #[serde(rename = "coupon.redeemed")]
    #[schema(rename = "coupon.redeemed")]
    CouponRedeemed,
    #[serde(rename = "grant.voided")]
    #[schema(rename = "grant.voided")]
    GrantVoided,
}

/// Body of `PATCH /tenants/{tenant_id}/webhooks/{webhook_id}`: at least one field. Setting `status`
/// back to `active` resumes pending deliveries.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PatchWebhook {
    #[schema(
        min_length = 8,
        max_length = 2048,
        pattern = "^https?://[^\\s]+$",
        nullable = false
    )]
    url: Option<String>,
    #[schema(min_items = 1, max_items = 5, nullable = false)]
    events: Option<Vec<WebhookEventType>>,
    #[schema(nullable = false, pattern = "^(active|disabled)$")]
    status: Option<String>,
    #[schema(max_length = 500, nullable = false)]
    description: Option<String>,
}

/// Body of `POST .../secret:rotate` (may be empty).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RotateWebhookSecret {
    /// How long the old secret keeps signing (both signatures are sent). Default 86400.
    #[schema(minimum = 0, maximum = 2592000, nullable = false)]
    grace_period_seconds: Option<u32>,
}

/// A webhook (SPEC §7.6). Its secret is shown only when made (create, rotation).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(example = "wh_3f1c0a9e5b7d4c2a")]
    pub webhook_id: String,
    pub tenant_id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `active` or `disabled`.
    pub status: &'static str,
    pub description: String,
    /// Why the server disabled it (a 410 answer), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub version: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        WebhookView {
            webhook_id: w.webhook_id,
            tenant_id: w.tenant_id,
            url: w.url,
            events: w.events,
            status: w.status.as_str(),
            description: w.description,
            disabled_reason: w.disabled_reason,
            version: w.version,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A webhook with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_` + base64 of 32 random bytes: keep it; it is not shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub total: usize,
    pub webhooks: Vec<WebhookView>,
}

/// One row of the deliveries log: an attempt, or a message not tried yet (`attempt` 0).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The message's `webhook-id` (the same on every attempt).
    pub delivery_id: String,
    pub event_type: String,
    pub attempt: u32,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub attempted_at: Option<Timestamp>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// The message's state: `pending`, `delivered` or `failed`.
    pub state: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub total: u64,
    pub deliveries: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct DeliveryCursor {
    t: i64,
    m: String,
    a: u32,
}

fn not_found(tenant_id: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("webhook '{id}' not found in tenant '{tenant_id}'"))
}

fn url_field(state: &AppState, value: &Value) -> Result<String, ApiError> {
    let url = string_field("url", value)?;
    check_url(&url, state.config.webhook_allow_private)
        .map_err(|e| ApiError::Validation(format!("url: {e}")))?;
    Ok(url)
}

fn events_field(value: &Value) -> Result<Vec<String>, ApiError> {
    let list = value
        .as_array()
        .filter(|l| !l.is_empty() && l.len() <= EVENT_TYPES.len())
        .ok_or_else(|| {
            ApiError::Validation(format!(
                "events: expected 1 to {} event types of {}",
                EVENT_TYPES.len(),
                EVENT_TYPES.join(", ")
            ))
        })?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let Some(t) = v.as_str().filter(|t| EVENT_TYPES.contains(t)) else {
            return Err(ApiError::Validation(format!(
                "events[{i}]: must be one of {}",
                EVENT_TYPES.join(", ")
            )));
        };
        if out.iter().any(|e| e == t) {
            return Err(ApiError::Validation(format!(
                "events[{i}]: '{t}' is listed twice"
            )));
        }
        out.push(t.to_owned());
    }
    Ok(out)
}

fn status_field(value: &Value) -> Result<WebhookStatus, ApiError> {
    value
        .as_str()
        .and_then(WebhookStatus::parse)
        .ok_or_else(|| ApiError::Validation("status: must be one of active, disabled".into()))
}

fn description_field(value: &Value) -> Result<String, ApiError> {
    let d = string_field("description", value)?;
    if d.chars().count() > 500 {
        return Err(ApiError::Validation(
            "description: must be at most 500 characters".into(),
        ));
    }
    Ok(d)
}

/// The tenant's webhooks (without secrets).
#[utoipa::path(get, path = "/tenants/{tenant_id}/webhooks", tag = "webhooks",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
) -> Result<Json<WebhookList>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    let webhooks: Vec<WebhookView> = state
        .store
        .list_webhooks(&tenant_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(WebhookList {
        total: webhooks.len(),
        webhooks,
    }))
}

/// Creates a webhook; the answer carries its `secret`, shown this once. A tenant has at most 20.
#[utoipa::path(post, path = "/tenants/{tenant_id}/webhooks", tag = "webhooks",
    params(("tenant_id" = String, Path)), request_body = CreateWebhook,
    responses((status = 201, body = WebhookWithSecret), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope),
              (status = 409, description = "the tenant has 20 webhooks, the most it may have", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    const ALLOWED: [&str; 4] = ["url", "events", "status", "description"];
    let fields = create_fields(&body, &ALLOWED)?;
    let required = |key: &str| required_field(&fields, key);
    let url = url_field(&state, required("url")?)?;
    let events = events_field(required("events")?)?;
    let status = match fields.get("status") {
        Some(v) => status_field(v)?,
        None => WebhookStatus::Active,
    };
    let description = match fields.get("description") {
        Some(v) => description_field(v)?,
        None => String::new(),
    };
    let new = NewWebhook {
        tenant_id: tenant_id.clone(),
        url,
        events,
        status,
        description,
    };
    let (webhook, secret) = detached(&state, move |store| async move {
        store.create_webhook(new).await
    })
    .await?;
    tracing::info!(tenant_id = %tenant_id, webhook_id = %webhook.webhook_id, "webhook created");
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecret {
            webhook: webhook.into(),
            secret,
        }),
    ))
}

/// One webhook (without its secret).
#[utoipa::path(get, path = "/tenants/{tenant_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("tenant_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<WebhookView>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    let w = state
        .store
        .get_webhook(&tenant_id, &id)
        .await?
        .ok_or_else(|| not_found(&tenant_id, &id))?;
    Ok(Json(w.into()))
}

/// Changes `url`, `events`, `status` and/or `description`. Back to `active`, a disabled webhook's
/// pending deliveries resume.
#[utoipa::path(patch, path = "/tenants/{tenant_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("tenant_id" = String, Path), ("webhook_id" = String, Path)), request_body = PatchWebhook,
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn patch(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<WebhookView>, ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    if state.store.get_webhook(&tenant_id, &id).await?.is_none() {
        return Err(not_found(&tenant_id, &id));
    }
    let fields = object_body(&body, false)?;
    const ALLOWED: [&str; 4] = ["url", "events", "status", "description"];
    if fields.is_empty() {
        return Err(ApiError::Validation(format!(
            "body must change at least one of {}",
            ALLOWED.join(", ")
        )));
    }
    let mut patch = WebhookPatch::default();
    for (key, value) in &fields {
        match key.as_str() {
            "url" => patch.url = Some(url_field(&state, value)?),
            "events" => patch.events = Some(events_field(value)?),
            "status" => patch.status = Some(status_field(value)?),
            "description" => patch.description = Some(description_field(value)?),
            _ => return Err(unknown_field(key, &ALLOWED)),
        }
    }
    let w = detached(&state, {
        let (t, i) = (tenant_id.clone(), id.clone());
        move |store| async move { store.update_webhook(&t, &i, patch).await }
    })
    .await?
    .ok_or_else(|| not_found(&tenant_id, &id))?;
    tracing::info!(tenant_id = %tenant_id, webhook_id = %id, version = w.version, "webhook updated");
    Ok(Json(w.into()))
}

/// Deletes a webhook; its pending deliveries are dropped.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("tenant_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<WebhookView>, ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    let w = detached(&state, {
        let (t, i) = (tenant_id.clone(), id.clone());
        move |store| async move { store.delete_webhook(&t, &i).await }
    })
    .await?
    .ok_or_else(|| not_found(&tenant_id, &id))?;
    tracing::info!(tenant_id = %tenant_id, webhook_id = %id, "webhook deleted");
    Ok(Json(w.into()))
}

/// A new secret, shown this once; during the grace period deliveries carry both signatures (the new
/// one first).
#[utoipa::path(post, path = "/tenants/{tenant_id}/webhooks/{webhook_id}/secret:rotate", tag = "webhooks",
    params(("tenant_id" = String, Path), ("webhook_id" = String, Path)),
    request_body(content = RotateWebhookSecret, description = "May be empty."),
    responses((status = 200, body = WebhookWithSecret), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn rotate(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    auth.require_tenant(Scope::RewardsWrite, &tenant_id)?;
    if state.store.get_webhook(&tenant_id, &id).await?.is_none() {
        return Err(not_found(&tenant_id, &id));
    }
    let fields = object_body(&body, true)?;
    let mut grace = SignedDuration::from_hours(24);
    for (key, value) in &fields {
        match key.as_str() {
            "grace_period_seconds" => {
                let secs = value.as_u64().filter(|s| *s <= 2_592_000).ok_or_else(|| {
                    ApiError::Validation(
                        "grace_period_seconds: expected a whole number from 0 to 2592000".into(),
                    )
                })?;
                grace = SignedDuration::from_secs(secs as i64);
            }
            _ => return Err(unknown_field(key, &["grace_period_seconds"])),
        }
    }
    let (w, secret) = detached(&state, {
        let (t, i) = (tenant_id.clone(), id.clone());
        move |store| async move { store.rotate_webhook_secret(&t, &i, grace).await }
    })
    .await?
    .ok_or_else(|| not_found(&tenant_id, &id))?;
    tracing::info!(tenant_id = %tenant_id, webhook_id = %id, "webhook secret rotated");
    Ok(Json(WebhookWithSecret {
        webhook: w.into(),
        secret,
    }))
}

/// The deliveries log: one row per attempt (and one per message not tried yet), newest first,
/// `limit` (1–200, default 50) at a time.
#[utoipa::path(get, path = "/tenants/{tenant_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("tenant_id" = String, Path), ("webhook_id" = String, Path),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200),
           ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+$")),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn deliveries(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<DeliveryList>, ApiError> {
    auth.require_tenant(Scope::RewardsRead, &tenant_id)?;
    if state.store.get_webhook(&tenant_id, &id).await?.is_none() {
        return Err(not_found(&tenant_id, &id));
    }
    only_params(&params, &["limit", "cursor"])?;
    let limit = limit_param(&params, 50, 200)?;
    let after = match params.get("cursor") {
        None => None,
        Some(raw) => {
            let c: DeliveryCursor = decode_cursor(raw)?;
            let t = Timestamp::from_microsecond(c.t).map_err(|_| {
                ApiError::Validation("cursor: is not a cursor returned by this API".into())
            })?;
            Some((t, c.m, c.a))
        }
    };
    let page = state
        .store
        .list_deliveries(&tenant_id, &id, after, limit)
        .await?
        .ok_or_else(|| not_found(&tenant_id, &id))?;
    let next_cursor = match page.items.last() {
        Some(last) if page.more => Some(encode_cursor(&DeliveryCursor {
            t: last.position.0.as_microsecond(),
            m: last.position.1.clone(),
            a: last.position.2,
        })),
        _ => None,
    };
    Ok(Json(DeliveryList {
        total: page.total,
        deliveries: page
            .items
            .into_iter()
            .map(|d| DeliveryView {
                delivery_id: d.delivery_id,
                event_type: d.event_type,
                attempt: d.attempt,
                attempted_at: d.attempted_at,
                status_code: d.status_code,
                error: d.error,
                duration_ms: d.duration_ms,
                next_attempt_at: d.next_attempt_at,
                state: d.state.as_str(),
            })
            .collect(),
        next_cursor,
    }))
}
