//! The Admin gateway (SPEC §3–4): health, tenants, API keys and leaderboards. Routes carry no `/v1`
//! prefix. Every handler takes an [`AdminAuth`](crate::auth::AdminAuth) and checks, in this order,
//! permission (403), existence (404), then the body (400).

pub mod health;
pub mod keys;
pub mod leaderboards;
pub mod tenants;
pub mod views;

use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The Admin gateway's routes, documented for `/openapi.json`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(tenants::get_tenant))
        .routes(routes!(tenants::rotate_secret))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(leaderboards::list_all))
        .routes(routes!(leaderboards::list_for_tenant, leaderboards::create))
        .routes(routes!(
            leaderboards::get_one,
            leaderboards::patch,
            leaderboards::delete
        ))
}
