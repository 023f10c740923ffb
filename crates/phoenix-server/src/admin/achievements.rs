//! Achievements (SPEC §7.5, §7.7), under `/tenants/{tenant_id}`. Scopes: `achievements:read` for
//! GET, `achievements:write` otherwise.

use super::rewards::{
    activity_field, client_id_field, create_fields, detached, object_body, require_tenant,
    required_field, string_field, unknown_field,
};
use super::tenants::check_name;
use crate::auth::AdminAuth;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use phoenix_core::access::Scope;
use phoenix_core::achievement::{Metric, Step, check_steps_extend, steps_from_json};
use phoenix_core::reward::Reward;
use phoenix_store::achievements::*;
use phoenix_store::rewards::Activity;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Body of `POST /tenants/{tenant_id}/achievements`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateAchievement {
    #[schema(example = "slayer", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    achievement_id: String,
    #[schema(example = "Slayer", min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// Default empty.
    #[schema(example = "Win matches", max_length = 2000, nullable = false)]
    description: Option<String>,
    /// Default `active`.
    #[schema(nullable = false, pattern = "^(active|inactive)$")]
    status: Option<String>,
    /// Shown to players only once they complete a step. Default false.
    #[schema(nullable = false)]
    hidden: Option<bool>,
    /// `{event_type, conditions?, scope?: {filters}, aggregation: count|sum|streak,
    /// points_expression? (sum), timezone? (streak, default UTC)}`.
    #[schema(value_type = Object)]
    metric: Value,
    /// 1–20 steps `{threshold, rewards?}` with strictly increasing positive thresholds, 0–10 rewards
    /// each.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 20)]
    steps: Value,
}

/// Body of `PATCH /tenants/{tenant_id}/achievements/{achievement_id}`: at least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PatchAchievement {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", nullable = false)]
    name: Option<String>,
    #[schema(max_length = 2000, nullable = false)]
    description: Option<String>,
    #[schema(nullable = false, pattern = "^(active|inactive)$")]
    status: Option<String>,
    #[schema(nullable = false)]
    hidden: Option<bool>,
    /// The existing steps with their thresholds unchanged, and any higher ones.
    #[schema(value_type = Option<Vec<Object>>, min_items = 1, max_items = 20, nullable = false)]
    steps: Option<Value>,
}

/// How many players completed a step.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionView {
    pub threshold: f64,
    pub players: u64,
}

/// An achievement (SPEC §7.5) with, per step, how many players completed it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AchievementView {
    pub achievement_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    /// `active` or `inactive`.
    pub status: &'static str,
    pub hidden: bool,
    #[schema(value_type = Object)]
    pub metric: Value,
    #[schema(value_type = Vec<Object>)]
    pub steps: Value,
    pub completions: Vec<CompletionView>,
    pub version: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

fn thresholds(steps: &Value) -> Vec<f64> {
    steps
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| s["threshold"].as_f64().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default()
}

impl AchievementView {
    fn new(a: Achievement, completions: &[u64]) -> Self {
        let completions = thresholds(&a.steps)
            .into_iter()
            .enumerate()
            .map(|(i, threshold)| CompletionView {
                threshold,
                players: completions.get(i).copied().unwrap_or(0),
            })
            .collect();
        AchievementView {
            achievement_id: a.achievement_id,
            tenant_id: a.tenant_id,
            name: a.name,
            description: a.description,
            status: a.status.as_str(),
            hidden: a.hidden,
            metric: a.metric,
            steps: a.steps,
            completions,
            version: a.version,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

impl From<AchievementWithCompletions> for AchievementView {
    fn from(a: AchievementWithCompletions) -> Self {
        AchievementView::new(a.achievement, &a.completions)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AchievementList {
    pub total: usize,
    pub achievements: Vec<AchievementView>,
}

fn not_found(tenant_id: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "achievement '{id}' not found in tenant '{tenant_id}'"
    ))
}

fn description_field(value: &Value) -> Result<String, ApiError> {
    let d = string_field("description", value)?;
    if d.chars().count() > 2000 {
        return Err(ApiError::Validation(
            "description: must be at most 2000 characters".into(),
        ));
    }
    Ok(d)
}

fn bool_field(key: &str, value: &Value) -> Result<bool, ApiError> {
    value
        .as_bool()
        .ok_or_else(|| ApiError::Validation(format!("{key}: expected true or false")))
}

/// Validates steps, checking that every `coupon` reward names a campaign of the tenant; returns them
/// with their canonical JSON.
async fn checked_steps(
    state: &AppState,
    tenant_id: &str,
    value: &Value,
) -> Result<(Vec<Step>, Value), ApiError> {
    let steps = steps_from_json(value)?;
    for (i, step) in steps.iter().enumerate() {
        for (j, reward) in step.rewards.iter().enumerate() {
            if let Reward::Coupon { campaign_id } = reward
                && state
                    .store
                    .get_campaign(tenant_id, campaign_id)
                    .await?
                    .is_none()
            {
                return Err(ApiError::Validation(format!(
                    "steps[{i}].rewards[{j}].campaign_id: campaign '{campaign_id}' does not exist in tenant '{tenant_id}'"
                )));
            }
        }
    }
    let json = Value::Array(steps.iter().map(Step::to_json).collect());
    Ok((steps, json))
}

/// The tenant's achievements, with completion counts.
#[utoipa::path(get, path = "/tenants/{tenant_id}/achievements", tag = "achievements",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = AchievementList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
) -> Result<Json<AchievementList>, ApiError> {
    auth.require_tenant(Scope::AchievementsRead, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    let achievements: Vec<AchievementView> = state
        .store
        .list_achievements(&tenant_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(AchievementList {
        total: achievements.len(),
        achievements,
    }))
}

/// Creates an achievement; events accepted from now on count toward it. A tenant has at most 100
/// (409 beyond).
#[utoipa::path(post, path = "/tenants/{tenant_id}/achievements", tag = "achievements",
    params(("tenant_id" = String, Path)), request_body = CreateAchievement,
    responses((status = 201, body = AchievementView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<AchievementView>), ApiError> {
    auth.require_tenant(Scope::AchievementsWrite, &tenant_id)?;
    require_tenant(&state, &tenant_id).await?;
    const ALLOWED: [&str; 7] = [
        "achievement_id",
        "name",
        "description",
        "status",
        "hidden",
        "metric",
        "steps",
    ];
    let fields = create_fields(&body, &ALLOWED)?;
    let required = |key: &str| required_field(&fields, key);
    let achievement_id = client_id_field(&fields, "achievement_id")?;
    let name = string_field("name", required("name")?)?;
    check_name("name", &name, 200)?;
    let description = match fields.get("description") {
        Some(v) => description_field(v)?,
        None => String::new(),
    };
    let status = match fields.get("status") {
        Some(v) => activity_field("status", v)?,
        None => Activity::Active,
    };
    let hidden = match fields.get("hidden") {
        Some(v) => bool_field("hidden", v)?,
        None => false,
    };
    let metric = Metric::from_json(required("metric")?)?.to_json();
    let steps_raw = required("steps")?;
    steps_from_json(steps_raw)?;
    let (_, steps) = checked_steps(&state, &tenant_id, steps_raw).await?;
    let new = NewAchievement {
        tenant_id: tenant_id.clone(),
        achievement_id,
        name,
        description,
        status,
        hidden,
        metric,
        steps,
    };
    let a = detached(&state, move |store| async move {
        store.create_achievement(new).await
    })
    .await?;
    tracing::info!(tenant_id = %tenant_id, achievement_id = %a.achievement_id, "achievement created");
    let steps = a.steps.as_array().map_or(0, Vec::len);
    Ok((
        StatusCode::CREATED,
        Json(AchievementView::new(a, &vec![0; steps])),
    ))
}

/// One achievement, with how many players completed each step.
#[utoipa::path(get, path = "/tenants/{tenant_id}/achievements/{achievement_id}", tag = "achievements",
    params(("tenant_id" = String, Path), ("achievement_id" = String, Path)),
    responses((status = 200, body = AchievementView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<AchievementView>, ApiError> {
    auth.require_tenant(Scope::AchievementsRead, &tenant_id)?;
    let a = state
        .store
        .get_achievement(&tenant_id, &id)
        .await?
        .ok_or_else(|| not_found(&tenant_id, &id))?;
    Ok(Json(a.into()))
}

/// Changes `name`, `description`, `status`, `hidden` and/or `steps` (the existing thresholds
/// unchanged, higher ones added; earlier completions stand). `version` grows.
#[utoipa::path(patch, path = "/tenants/{tenant_id}/achievements/{achievement_id}", tag = "achievements",
    params(("tenant_id" = String, Path), ("achievement_id" = String, Path)),
    request_body = PatchAchievement,
    responses((status = 200, body = AchievementView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope),
              (status = 409, description = "another change to the steps came first", body = ErrorEnvelope)))]
pub async fn patch(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<AchievementView>, ApiError> {
    auth.require_tenant(Scope::AchievementsWrite, &tenant_id)?;
    let Some(current) = state.store.get_achievement(&tenant_id, &id).await? else {
        return Err(not_found(&tenant_id, &id));
    };
    let fields = object_body(&body, false)?;
    const ALLOWED: [&str; 5] = ["name", "description", "status", "hidden", "steps"];
    if fields.is_empty() {
        return Err(ApiError::Validation(format!(
            "body must change at least one of {}",
            ALLOWED.join(", ")
        )));
    }
    let mut patch = AchievementPatch::default();
    for (key, value) in &fields {
        match key.as_str() {
            "name" => {
                let name = string_field("name", value)?;
                check_name("name", &name, 200)?;
                patch.name = Some(name);
            }
            "description" => patch.description = Some(description_field(value)?),
            "status" => patch.status = Some(activity_field("status", value)?),
            "hidden" => patch.hidden = Some(bool_field("hidden", value)?),
            "steps" => {
                let (new, json) = checked_steps(&state, &tenant_id, value).await?;
                let old = steps_from_json(&current.achievement.steps)?;
                check_steps_extend(&old, &new)?;
                patch.steps = Some(json);
            }
            "metric" | "achievement_id" => {
                return Err(ApiError::Validation(format!(
                    "{key}: cannot be changed; create a new achievement"
                )));
            }
            _ => return Err(unknown_field(key, &ALLOWED)),
        }
    }
    let a = detached(&state, {
        let (t, i) = (tenant_id.clone(), id.clone());
        move |store| async move { store.update_achievement(&t, &i, patch).await }
    })
    .await?
    .ok_or_else(|| not_found(&tenant_id, &id))?;
    tracing::info!(tenant_id = %tenant_id, achievement_id = %id, version = a.version, "achievement updated");
    let counts = state
        .store
        .get_achievement(&tenant_id, &id)
        .await?
        .map(|a| a.completions)
        .unwrap_or_default();
    Ok(Json(AchievementView::new(a, &counts)))
}

/// Deletes an achievement; its grants stay, and its id stays taken.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/achievements/{achievement_id}", tag = "achievements",
    params(("tenant_id" = String, Path), ("achievement_id" = String, Path)),
    responses((status = 200, body = AchievementView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<AchievementView>, ApiError> {
    auth.require_tenant(Scope::AchievementsWrite, &tenant_id)?;
    let counts = state
        .store
        .get_achievement(&tenant_id, &id)
        .await?
        .map(|a| a.completions)
        .unwrap_or_default();
    let a = detached(&state, {
        let (t, i) = (tenant_id.clone(), id.clone());
        move |store| async move { store.delete_achievement(&t, &i).await }
    })
    .await?
    .ok_or_else(|| not_found(&tenant_id, &id))?;
    tracing::info!(tenant_id = %tenant_id, achievement_id = %id, "achievement deleted");
    Ok(Json(AchievementView::new(a, &counts)))
}
