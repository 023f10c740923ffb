//! Window history for players (SPEC §6): the windows of a leaderboard that have ended, and the final
//! standings of one, paged like the live ones. A window's standings stop changing when it ends (an
//! event accepted after that is late and never scored), so what is served here is frozen; it stays
//! readable after the leaderboard is deactivated or deleted.

use super::{
    EntryView, Player, StandingsView, decode_cursor, encode_cursor, int_param, window_view,
};
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use phoenix_core::window::{WindowId, WindowStatus};
use phoenix_store::PageStart;
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct WindowList {
    pub total: usize,
    pub windows: Vec<super::WindowView>,
}

/// The ended windows of a leaderboard, newest first.
#[utoipa::path(get, path = "/v1/leaderboards/{id}/windows", tag = "query",
    params(("id" = String, Path)),
    responses((status = 200, body = WindowList), (status = 401, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    player: Player,
    Path(id): Path<String>,
) -> Result<Json<WindowList>, ApiError> {
    list_of(&state, player.tenant(), &id).await.map(Json)
}

/// The ended windows of a tenant's leaderboard (also used by the Admin gateway).
pub(crate) async fn list_of(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<WindowList, ApiError> {
    let windows = state
        .store
        .past_windows(tenant, id)
        .await?
        .ok_or_else(|| super::not_found(id))?;
    let windows: Vec<super::WindowView> = windows
        .iter()
        .map(|w| window_view(w, WindowStatus::Closed))
        .collect();
    Ok(WindowList {
        total: windows.len(),
        windows,
    })
}

/// The frozen final standings of an ended window, `limit` (1–200, default 50) at a time.
#[utoipa::path(get, path = "/v1/leaderboards/{id}/windows/{window_id}", tag = "query",
    params(("id" = String, Path), ("window_id" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "entries per page, default 50"),
           ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+$", description = "`next_cursor` of the previous page (only cursors this API returned are accepted)")),
    responses((status = 200, body = StandingsView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    player: Player,
    Path((id, window_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<StandingsView>, ApiError> {
    page_of(&state, player.tenant(), id, &window_id, &params)
        .await
        .map(Json)
}

/// A page of an ended window's final standings (also used by the Admin gateway).
pub(crate) async fn page_of(
    state: &AppState,
    tenant: &str,
    id: String,
    window_id: &str,
    params: &HashMap<String, String>,
) -> Result<StandingsView, ApiError> {
    let unknown = || {
        ApiError::NotFound(format!(
            "no ended window '{window_id}' on leaderboard '{id}'"
        ))
    };
    let window = WindowId::parse(window_id).ok_or_else(unknown)?;
    if state.store.past_windows(tenant, &id).await?.is_none() {
        return Err(super::not_found(&id));
    }
    let limit = int_param(params, "limit", 50, 1, 200)?;
    let start = match params.get("cursor") {
        Some(raw) => {
            let (cursor_window, start) = decode_cursor(raw)?;
            if cursor_window != window {
                return Err(ApiError::Validation(
                    "cursor: belongs to another window".into(),
                ));
            }
            start
        }
        None => PageStart::Rank(1),
    };
    let page = state
        .store
        .window_standings(tenant, &id, &window, start, limit)
        .await?
        .ok_or_else(unknown)?;
    let next_cursor = match page.entries.last() {
        Some(last) if page.entries.len() as u32 == limit && last.rank < page.total_entries => {
            Some(encode_cursor(&page.window.id, last))
        }
        _ => None,
    };
    Ok(StandingsView {
        leaderboard_id: id,
        window: window_view(&page.window, page.status),
        total_entries: page.total_entries,
        entries: page.entries.into_iter().map(EntryView::from).collect(),
        next_cursor,
    })
}
