//! Window history for operators (the console's "past windows"): the same ended windows and frozen
//! standings players read under `/v1`, but addressed by tenant and readable whatever the leaderboard's
//! status, with `leaderboards:read`.

use crate::auth::AdminAuth;
use crate::error::{ApiError, ErrorEnvelope};
use crate::query::StandingsView;
use crate::query::windows::{WindowList, list_of, page_of};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use phoenix_core::access::Scope;
use std::collections::HashMap;

/// The ended windows of a leaderboard, newest first (also of an inactive or deleted one).
#[utoipa::path(get, path = "/tenants/{tenant_id}/leaderboards/{leaderboard_id}/windows",
    tag = "leaderboards",
    params(("tenant_id" = String, Path), ("leaderboard_id" = String, Path)),
    responses((status = 200, body = WindowList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, leaderboard_id)): Path<(String, String)>,
) -> Result<Json<WindowList>, ApiError> {
    auth.require_tenant(Scope::LeaderboardsRead, &tenant_id)?;
    list_of(&state, &tenant_id, &leaderboard_id).await.map(Json)
}

/// The frozen final standings of an ended window, `limit` (1–200, default 50) at a time.
#[utoipa::path(get,
    path = "/tenants/{tenant_id}/leaderboards/{leaderboard_id}/windows/{window_id}",
    tag = "leaderboards",
    params(("tenant_id" = String, Path), ("leaderboard_id" = String, Path),
           ("window_id" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "entries per page, default 50"),
           ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+$", description = "`next_cursor` of the previous page (only cursors this API returned are accepted)")),
    responses((status = 200, body = StandingsView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path((tenant_id, leaderboard_id, window_id)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<StandingsView>, ApiError> {
    auth.require_tenant(Scope::LeaderboardsRead, &tenant_id)?;
    page_of(&state, &tenant_id, leaderboard_id, &window_id, &params)
        .await
        .map(Json)
}
