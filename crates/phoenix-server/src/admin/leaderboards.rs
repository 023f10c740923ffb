//! Leaderboards (SPEC §4 and the seed "creating leaderboards"): list, create (full config validation by
//! the core's config model, the same one scoring compiles), read, patch metadata (bumps `version` and
//! `updated_at`), delete (returns the removed record).

use super::tenants::{check_name, tenant_not_found};
use super::views::{LeaderboardList, LeaderboardView};
use crate::auth::AdminAuth;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use phoenix_core::access::Scope;
use phoenix_core::config::LeaderboardConfig;
use phoenix_core::ids::{LeaderboardId, TenantId};
use phoenix_store::model::{LeaderboardPatch, LeaderboardStatus, NewLeaderboard};
use serde::Deserialize;
use utoipa::ToSchema;

/// Body of `POST /tenants/{tenant_id}/leaderboards`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLeaderboard {
    #[schema(example = "xp-weekly-global", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub leaderboard_id: String,
    /// Optional; must equal the path's tenant when given (checked by the server).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", nullable = false)]
    pub tenant_id: Option<String>,
    /// Not blank.
    #[schema(
        example = "Global Weekly XP",
        min_length = 1,
        max_length = 200,
        pattern = "\\S"
    )]
    pub name: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// Default `active`.
    #[schema(value_type = Option<StatusDoc>, nullable = false)]
    pub status: Option<String>,
    /// scope, timeframe, scoring, ranking (SPEC §4.1). Its structure is below; its meaning (field
    /// paths, expressions, which timeframe needs which fields) is checked by the server, which names
    /// the field at fault.
    #[schema(value_type = ConfigDoc)]
    pub config: serde_json::Value,
}

/// A leaderboard's status.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = LeaderboardStatus)]
#[allow(dead_code)]
pub enum StatusDoc {
    Active,
    Inactive,
    Archived,
}

/// The config model (SPEC §4.1), as far as a schema can say.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = LeaderboardConfig, example = json!({
    "timeframe": {"type": "weekly", "reset_day": "monday", "reset_time": "00:00", "timezone": "UTC"},
    "scoring": {"rules": [{"event_type": "match.completed", "points_expression": "attrs.score"}],
                "aggregation": "sum"},
    "ranking": {"method": "score_desc", "size": 1000}
}))]
#[allow(dead_code)]
pub struct ConfigDoc {
    #[schema(value_type = Object)]
    timeframe: serde_json::Value,
    #[schema(value_type = Object)]
    scoring: serde_json::Value,
    #[schema(value_type = Option<Object>, nullable = false)]
    ranking: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>, nullable = false)]
    scope: Option<serde_json::Value>,
}

/// Body of PATCH: at least one of `name`, `description`, `status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchLeaderboard {
    /// Not blank.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", nullable = false)]
    pub name: Option<String>,
    /// null removes it.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(value_type = Option<StatusDoc>, nullable = false)]
    pub status: Option<String>,
}

fn parse_status(field: &str, raw: &str) -> Result<LeaderboardStatus, ApiError> {
    LeaderboardStatus::parse(raw).ok_or_else(|| {
        ApiError::Validation(format!(
            "{field}: must be one of active, inactive, archived (got '{raw}')"
        ))
    })
}

fn check_description(description: &str) -> Result<(), ApiError> {
    if description.chars().count() > 2000 {
        return Err(ApiError::Validation(
            "description: must be at most 2000 characters".into(),
        ));
    }
    Ok(())
}

fn not_found(tenant_id: &str, leaderboard_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "leaderboard '{leaderboard_id}' not found in tenant '{tenant_id}'"
    ))
}

async fn require_tenant_exists(state: &AppState, tenant_id: &str) -> Result<(), ApiError> {
    match state.store.get_tenant(tenant_id).await? {
        Some(_) => Ok(()),
        None => Err(tenant_not_found(tenant_id)),
    }
}

fn list(leaderboards: Vec<phoenix_store::model::Leaderboard>) -> Json<LeaderboardList> {
    let leaderboards: Vec<LeaderboardView> = leaderboards.into_iter().map(Into::into).collect();
    Json(LeaderboardList {
        total: leaderboards.len(),
        leaderboards,
    })
}

/// Every leaderboard the caller may see, across its tenants.
#[utoipa::path(get, path = "/leaderboards", tag = "leaderboards",
    responses((status = 200, body = LeaderboardList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope)))]
pub async fn list_all(
    State(state): State<AppState>,
    auth: AdminAuth,
) -> Result<Json<LeaderboardList>, ApiError> {
    auth.require(Scope::LeaderboardsRead)?;
    let mut all = state.store.list_leaderboards(None).await?;
    all.retain(|lb| auth.sees_tenant(lb.tenant_id.as_str()));
    Ok(list(all))
}

/// The leaderboards of one tenant.
#[utoipa::path(get, path = "/tenants/{tenant_id}/leaderboards", tag = "leaderboards",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = LeaderboardList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_for_tenant(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
) -> Result<Json<LeaderboardList>, ApiError> {
    auth.require_tenant(Scope::LeaderboardsRead, &tenant_id)?;
    require_tenant_exists(&state, &tenant_id).await?;
    Ok(list(state.store.list_leaderboards(Some(&tenant_id)).await?))
}

/// Creates a leaderboard after validating its whole config.
#[utoipa::path(post, path = "/tenants/{tenant_id}/leaderboards", tag = "leaderboards",
    params(("tenant_id" = String, Path)), request_body = CreateLeaderboard,
    responses((status = 201, body = LeaderboardView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<LeaderboardView>), ApiError> {
    auth.require_tenant(Scope::LeaderboardsWrite, &tenant_id)?;
    require_tenant_exists(&state, &tenant_id).await?;
    let req: CreateLeaderboard = body.parse()?;
    let leaderboard_id = LeaderboardId::parse(&req.leaderboard_id)?;
    if req.tenant_id.as_deref().is_some_and(|t| t != tenant_id) {
        return Err(ApiError::Validation(
            "tenant_id in the body must match the tenant_id in the URL path".into(),
        ));
    }
    check_name("name", &req.name, 200)?;
    if let Some(d) = &req.description {
        check_description(d)?;
    }
    let status = match &req.status {
        Some(raw) => parse_status("status", raw)?,
        None => LeaderboardStatus::Active,
    };
    let config = LeaderboardConfig::from_json(&req.config)?;
    let created = state
        .store
        .create_leaderboard(NewLeaderboard {
            leaderboard_id,
            tenant_id: TenantId::parse(&tenant_id)?,
            name: req.name,
            description: req.description,
            status,
            config: config.to_json(),
        })
        .await?;
    tracing::info!(tenant_id = %created.tenant_id, leaderboard_id = %created.leaderboard_id,
        "leaderboard created");
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Reads one leaderboard (same shape as the creation response).
#[utoipa::path(get, path = "/tenants/{tenant_id}/leaderboards/{leaderboard_id}",
    tag = "leaderboards",
    params(("tenant_id" = String, Path), ("leaderboard_id" = String, Path)),
    responses((status = 200, body = LeaderboardView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get_one(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, leaderboard_id)): Path<(String, String)>,
) -> Result<Json<LeaderboardView>, ApiError> {
    auth.require_tenant(Scope::LeaderboardsRead, &tenant_id)?;
    let lb = state
        .store
        .get_leaderboard(&tenant_id, &leaderboard_id)
        .await?
        .ok_or_else(|| not_found(&tenant_id, &leaderboard_id))?;
    Ok(Json(lb.into()))
}

/// Changes `name`, `description` and/or `status`; bumps `version` and `updated_at`. The config cannot
/// change: create a new leaderboard for a structural change.
#[utoipa::path(patch, path = "/tenants/{tenant_id}/leaderboards/{leaderboard_id}",
    tag = "leaderboards",
    params(("tenant_id" = String, Path), ("leaderboard_id" = String, Path)),
    request_body = PatchLeaderboard,
    responses((status = 200, body = LeaderboardView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn patch(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, leaderboard_id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<LeaderboardView>, ApiError> {
    auth.require_tenant(Scope::LeaderboardsWrite, &tenant_id)?;
    if state
        .store
        .get_leaderboard(&tenant_id, &leaderboard_id)
        .await?
        .is_none()
    {
        return Err(not_found(&tenant_id, &leaderboard_id));
    }
    let fields: serde_json::Map<String, serde_json::Value> = body.parse()?;
    let patch = parse_patch(fields)?;
    let updated = state
        .store
        .update_leaderboard(&tenant_id, &leaderboard_id, patch)
        .await?
        .ok_or_else(|| not_found(&tenant_id, &leaderboard_id))?;
    tracing::info!(tenant_id = %updated.tenant_id, leaderboard_id = %updated.leaderboard_id,
        version = updated.version, "leaderboard updated");
    Ok(Json(updated.into()))
}

fn parse_patch(
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<LeaderboardPatch, ApiError> {
    use serde_json::Value;
    let mut patch = LeaderboardPatch::default();
    if fields.is_empty() {
        return Err(ApiError::Validation(
            "body must change at least one of name, description, status".into(),
        ));
    }
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("name", Value::String(name)) => {
                check_name("name", &name, 200)?;
                patch.name = Some(name);
            }
            ("description", Value::String(d)) => {
                check_description(&d)?;
                patch.description = Some(Some(d));
            }
            ("description", Value::Null) => patch.description = Some(None),
            ("status", Value::String(s)) => patch.status = Some(parse_status("status", &s)?),
            ("name" | "status", _) => {
                return Err(ApiError::Validation(format!("{key}: expected a string")));
            }
            ("description", _) => {
                return Err(ApiError::Validation(
                    "description: expected a string or null".into(),
                ));
            }
            ("config", _) => {
                return Err(ApiError::Validation(
                    "config: cannot be changed by PATCH; create a new leaderboard with the new config"
                        .into(),
                ));
            }
            _ => {
                return Err(ApiError::Validation(format!(
                    "{key}: unknown field (PATCH accepts name, description, status)"
                )));
            }
        }
    }
    Ok(patch)
}

/// Deletes a leaderboard and returns the removed record; its history stays queryable.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/leaderboards/{leaderboard_id}",
    tag = "leaderboards",
    params(("tenant_id" = String, Path), ("leaderboard_id" = String, Path)),
    responses((status = 200, body = LeaderboardView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, leaderboard_id)): Path<(String, String)>,
) -> Result<Json<LeaderboardView>, ApiError> {
    auth.require_tenant(Scope::LeaderboardsWrite, &tenant_id)?;
    let removed = state
        .store
        .delete_leaderboard(&tenant_id, &leaderboard_id)
        .await?
        .ok_or_else(|| not_found(&tenant_id, &leaderboard_id))?;
    tracing::info!(tenant_id = %removed.tenant_id, leaderboard_id = %removed.leaderboard_id,
        "leaderboard deleted");
    Ok(Json(removed.into()))
}
