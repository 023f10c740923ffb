//! The player's achievements (SPEC §7.5): progress and unlocks. Tenant JWT with the player in `sub`
//! and the `rewards:redeem` scope (or a token without scopes). Hidden achievements appear once a step
//! is completed.

use super::rewards::RewardsPlayer;
use crate::admin::rewards::only_params;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use jiff::Timestamp;
use phoenix_store::achievements::PlayerAchievement;
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

/// One step and when the caller completed it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerStepView {
    pub threshold: f64,
    /// The acceptance time of the event that crossed the threshold; null while not completed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<Timestamp>,
}

/// The caller's progress on one achievement.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerAchievementView {
    pub achievement_id: String,
    pub name: String,
    pub description: String,
    /// The count, the sum, or the best streak (days) so far.
    pub value: f64,
    pub steps: Vec<PlayerStepView>,
    /// Every step is completed.
    pub completed: bool,
    /// The lowest threshold not completed yet; null once every step is.
    pub next_threshold: Option<f64>,
}

impl From<PlayerAchievement> for PlayerAchievementView {
    fn from(p: PlayerAchievement) -> Self {
        let thresholds: Vec<f64> = p
            .achievement
            .steps
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|s| s["threshold"].as_f64().unwrap_or(0.0))
                    .collect()
            })
            .unwrap_or_default();
        let steps: Vec<PlayerStepView> = thresholds
            .iter()
            .enumerate()
            .map(|(i, t)| PlayerStepView {
                threshold: *t,
                completed_at: p.completed_at.get(i).copied().flatten(),
            })
            .collect();
        let next_threshold = steps
            .iter()
            .find(|s| s.completed_at.is_none())
            .map(|s| s.threshold);
        PlayerAchievementView {
            achievement_id: p.achievement.achievement_id,
            name: p.achievement.name,
            description: p.achievement.description,
            value: p.value,
            completed: next_threshold.is_none(),
            next_threshold,
            steps,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerAchievementList {
    pub total: usize,
    pub achievements: Vec<PlayerAchievementView>,
}

/// What the caller may see: hidden achievements only once a step is completed.
fn visible(p: &PlayerAchievement) -> bool {
    !p.achievement.hidden || p.completed_at.iter().any(Option::is_some)
}

/// The caller's progress on the tenant's active achievements, by id.
#[utoipa::path(get, path = "/v1/achievements", tag = "player rewards",
    responses((status = 200, body = PlayerAchievementList), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    player: RewardsPlayer,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<PlayerAchievementList>, ApiError> {
    only_params(&params, &[])?;
    let achievements: Vec<PlayerAchievementView> = state
        .store
        .player_achievements(player.tenant(), &player.user_id)
        .await?
        .into_iter()
        .filter(visible)
        .map(Into::into)
        .collect();
    Ok(Json(PlayerAchievementList {
        total: achievements.len(),
        achievements,
    }))
}

/// The caller's progress on one achievement (404 for a hidden one not completed in any step).
#[utoipa::path(get, path = "/v1/achievements/{achievement_id}", tag = "player rewards",
    params(("achievement_id" = String, Path)),
    responses((status = 200, body = PlayerAchievementView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    player: RewardsPlayer,
    Path(achievement_id): Path<String>,
) -> Result<Json<PlayerAchievementView>, ApiError> {
    state
        .store
        .player_achievements(player.tenant(), &player.user_id)
        .await?
        .into_iter()
        .find(|p| p.achievement.achievement_id == achievement_id && visible(p))
        .map(|p| Json(p.into()))
        .ok_or_else(|| ApiError::NotFound(format!("achievement '{achievement_id}' not found")))
}
