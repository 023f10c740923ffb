//! The Query gateway's REST reads (SPEC §6), under the tenant and player of the caller's token: the
//! tenant's active leaderboards, a window's standings with a keyset cursor that stays exact while scores
//! change, the caller's own entry, the entries around a player, and one player's entry.

use crate::auth::TenantAuth;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jiff::Timestamp;
use phoenix_core::engine::Standing;
use phoenix_core::window::{Window, WindowId, WindowStatus};
use phoenix_store::model::LeaderboardStatus;
use phoenix_store::{PageStart, StandingsPage};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod achievements;
pub mod cache;
pub mod feed;
pub mod rewards;
pub mod windows;
pub mod ws;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(standings))
        .routes(routes!(me))
        .routes(routes!(around))
        .routes(routes!(user))
        .routes(routes!(windows::list))
        .routes(routes!(windows::get))
        .routes(routes!(ws::watch))
        .routes(routes!(rewards::list))
        .routes(routes!(rewards::claim))
        .routes(routes!(rewards::redeem))
        .routes(routes!(achievements::list))
        .routes(routes!(achievements::get))
}

/// A `/v1` caller for reads: a tenant JWT must name the player in `sub` (SPEC §3.2).
pub struct Player(pub TenantAuth);

impl FromRequestParts<AppState> for Player {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = TenantAuth::from_request_parts(parts, state).await?;
        if auth.via == crate::auth::TenantVia::TenantJwt && auth.user_id.is_none() {
            return Err(ApiError::Unauthorized(
                "the token must name the player in 'sub' on Query routes".into(),
            ));
        }
        auth.require(crate::auth::TokenScope::LeaderboardsRead)?;
        state.rate_limiter.check_read(&auth)?;
        Ok(Player(auth))
    }
}

impl Player {
    fn tenant(&self) -> &str {
        self.0.tenant_id.as_str()
    }

    /// The caller's player id, for `me` routes.
    fn me(&self) -> Result<&str, ApiError> {
        self.0.user_id.as_deref().ok_or_else(|| {
            ApiError::Validation("X-User-Id: is required to name the player for 'me'".into())
        })
    }
}

/// `{id, starts_at, ends_at, status}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowView {
    #[schema(example = "2026-11-28")]
    pub id: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Timestamp>,
    /// `open`, `closed` or `upcoming`.
    pub status: &'static str,
}

fn window_view(window: &Window, status: WindowStatus) -> WindowView {
    WindowView {
        id: window.id.as_str().to_owned(),
        starts_at: window.starts_at,
        ends_at: window.ends_at,
        status: status.as_str(),
    }
}

/// `{rank, user_id, score, updated_at}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    pub rank: u32,
    pub user_id: String,
    pub score: f64,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<Standing> for EntryView {
    fn from(s: Standing) -> Self {
        EntryView {
            rank: s.rank,
            user_id: s.user_id,
            score: s.score,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerLeaderboard {
    pub leaderboard_id: String,
    pub name: String,
    pub description: Option<String>,
    pub window: WindowView,
    pub total_entries: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerLeaderboardList {
    pub total: usize,
    pub leaderboards: Vec<PlayerLeaderboard>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StandingsView {
    pub leaderboard_id: String,
    pub window: WindowView,
    pub total_entries: u32,
    pub entries: Vec<EntryView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AroundView {
    pub leaderboard_id: String,
    pub window: WindowView,
    pub entries: Vec<EntryView>,
}

/// The opaque cursor: the window and the key of the last entry served.
#[derive(Serialize, Deserialize)]
struct Cursor {
    w: String,
    s: f64,
    q: u64,
    u: String,
}

fn encode_cursor(window: &WindowId, last: &Standing) -> String {
    let json = serde_json::to_vec(&Cursor {
        w: window.as_str().to_owned(),
        s: last.score,
        q: last.seq,
        u: last.user_id.clone(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_cursor(raw: &str) -> Result<(WindowId, PageStart), ApiError> {
    let bad = || ApiError::Validation("cursor: is not a cursor returned by this API".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let window = WindowId::parse(&c.w).ok_or_else(bad)?;
    if !c.s.is_finite() {
        return Err(bad());
    }
    Ok((
        window,
        PageStart::After {
            score: c.s,
            seq: c.q,
            user_id: c.u,
        },
    ))
}

fn int_param(
    params: &HashMap<String, String>,
    name: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::Validation(format!(
                    "{name}: must be a whole number between {min} and {max} (got '{raw}')"
                ))
            }),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("leaderboard '{id}' not found"))
}

/// The leaderboard if the tenant has it and it is active (players see nothing else).
async fn active(state: &AppState, tenant: &str, id: &str) -> Result<(), ApiError> {
    match state.store.leaderboard_status(tenant, id).await? {
        Some(LeaderboardStatus::Active) => Ok(()),
        _ => Err(not_found(id)),
    }
}

async fn page(
    state: &AppState,
    tenant: &str,
    id: &str,
    window: Option<&WindowId>,
    start: PageStart,
    count: u32,
) -> Result<StandingsPage, ApiError> {
    state
        .store
        .standings(tenant, id, window, start, count)
        .await?
        .ok_or_else(|| not_found(id))
}

/// The tenant's active leaderboards with their current window.
#[utoipa::path(get, path = "/v1/leaderboards", tag = "query",
    responses((status = 200, body = PlayerLeaderboardList), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    player: Player,
) -> Result<Json<PlayerLeaderboardList>, ApiError> {
    let mut leaderboards = Vec::new();
    for lb in state.store.list_leaderboards(Some(player.tenant())).await? {
        if lb.status != LeaderboardStatus::Active {
            continue;
        }
        let id = lb.leaderboard_id.to_string();
        let current = page(&state, player.tenant(), &id, None, PageStart::Rank(1), 0).await?;
        leaderboards.push(PlayerLeaderboard {
            leaderboard_id: id,
            name: lb.name,
            description: lb.description,
            window: window_view(&current.window, current.status),
            total_entries: current.total_entries,
        });
    }
    Ok(Json(PlayerLeaderboardList {
        total: leaderboards.len(),
        leaderboards,
    }))
}

/// The current window's standings, `limit` (1–200, default 50) at a time; follow `next_cursor`.
#[utoipa::path(get, path = "/v1/leaderboards/{id}", tag = "query",
    params(("id" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "entries per page, default 50"), ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+$", description = "`next_cursor` of the previous page (only cursors this API returned are accepted)")),
    responses((status = 200, body = StandingsView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn standings(
    State(state): State<AppState>,
    player: Player,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = int_param(&params, "limit", 50, 1, 200);
    let cursor = params.get("cursor");
    // A first page without a cursor may come from the cache (it is exact: see `cache`).
    if let (Ok(limit), None) = (&limit, cursor)
        && let Some(body) = state.query_cache.get(player.tenant(), &id, *limit)
    {
        return Ok(json_bytes(body));
    }
    active(&state, player.tenant(), &id).await?;
    let limit = limit?;
    let (window, start) = match cursor {
        Some(raw) => {
            let (window, start) = decode_cursor(raw)?;
            (Some(window), start)
        }
        None => (None, PageStart::Rank(1)),
    };
    // Read the board's signal before the page, so a change while building invalidates the entry.
    let signal = match cursor {
        None => state
            .store
            .watch_leaderboard(player.tenant(), &id)
            .map(|mut rx| {
                rx.borrow_and_update();
                rx
            }),
        Some(_) => None,
    };
    let p = page(&state, player.tenant(), &id, window.as_ref(), start, limit).await?;
    let next_cursor = match p.entries.last() {
        Some(last) if p.entries.len() as u32 == limit && last.rank < p.total_entries => {
            Some(encode_cursor(&p.window.id, last))
        }
        _ => None,
    };
    let valid_until = match p.status {
        WindowStatus::Open => p.window.ends_at,
        WindowStatus::Upcoming => p.window.starts_at,
        WindowStatus::Closed => None,
    };
    let view = StandingsView {
        leaderboard_id: id,
        window: window_view(&p.window, p.status),
        total_entries: p.total_entries,
        entries: p.entries.into_iter().map(Into::into).collect(),
        next_cursor,
    };
    let body =
        Bytes::from(serde_json::to_vec(&view).map_err(|e| ApiError::Internal(e.to_string()))?);
    if let Some(signal) = signal {
        state.query_cache.put(
            player.tenant(),
            &view.leaderboard_id,
            limit,
            signal,
            valid_until,
            body.clone(),
        );
    }
    Ok(json_bytes(body))
}

fn json_bytes(body: Bytes) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A player's entry in the current window of a leaderboard already checked with [`active`].
async fn entry_of(
    state: &AppState,
    tenant: &str,
    id: &str,
    user: &str,
) -> Result<EntryView, ApiError> {
    state
        .store
        .standing_of(tenant, id, None, user)
        .await?
        .map(Into::into)
        .ok_or_else(|| no_rank(user, id))
}

fn no_rank(user: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("'{user}' has no rank on leaderboard '{id}'"))
}

/// The caller's entry in the current window, or 404.
#[utoipa::path(get, path = "/v1/leaderboards/{id}/me", tag = "query", params(("id" = String, Path)),
    responses((status = 200, body = EntryView), (status = 401, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn me(
    State(state): State<AppState>,
    player: Player,
    Path(id): Path<String>,
) -> Result<Json<EntryView>, ApiError> {
    active(&state, player.tenant(), &id).await?;
    let me = player.me()?.to_owned();
    Ok(Json(entry_of(&state, player.tenant(), &id, &me).await?))
}

/// One player's entry in the current window, or 404.
#[utoipa::path(get, path = "/v1/leaderboards/{id}/users/{user_id}", tag = "query",
    params(("id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = EntryView), (status = 401, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn user(
    State(state): State<AppState>,
    player: Player,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Json<EntryView>, ApiError> {
    active(&state, player.tenant(), &id).await?;
    Ok(Json(
        entry_of(&state, player.tenant(), &id, &user_id).await?,
    ))
}

/// The entries within `radius` (0–50, default 5) ranks of a player (`me` for the caller), cut off
/// at the edges.
#[utoipa::path(get, path = "/v1/leaderboards/{id}/around/{user_id}", tag = "query",
    params(("id" = String, Path), ("user_id" = String, Path, description = "a player id, or `me`"),
           ("radius" = Option<u32>, Query, minimum = 0, maximum = 50, description = "ranks on each side, default 5")),
    responses((status = 200, body = AroundView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn around(
    State(state): State<AppState>,
    player: Player,
    Path((id, user_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<AroundView>, ApiError> {
    active(&state, player.tenant(), &id).await?;
    let radius = int_param(&params, "radius", 5, 0, 50)?;
    let user_id = if user_id == "me" {
        player.me()?.to_owned()
    } else {
        user_id
    };
    let p = page(
        &state,
        player.tenant(),
        &id,
        None,
        PageStart::Around {
            user_id: user_id.clone(),
            radius,
        },
        radius * 2 + 1,
    )
    .await?;
    if p.entries.is_empty() {
        return Err(no_rank(&user_id, &id));
    }
    Ok(Json(AroundView {
        leaderboard_id: id,
        window: window_view(&p.window, p.status),
        entries: p.entries.into_iter().map(Into::into).collect(),
    }))
}
