//! The Admin gateway (SPEC §3–4): health, tenants, API keys, leaderboards and their window history,
//! console users and sign-in, and the web console itself. Routes carry no `/v1` prefix. Every handler takes an [`AdminAuth`](crate::auth::AdminAuth) and checks, in this order,
//! permission (403), existence (404), then the body (400).

pub mod achievements;
pub mod coupons;
pub mod health;
pub mod keys;
pub mod leaderboards;
pub mod rewards;
pub mod sessions;
pub mod tenants;
pub mod users;
pub mod views;
pub mod webhooks;
pub mod windows;

use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The Admin gateway's routes, documented for `/openapi.json`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(tenants::get_tenant, tenants::patch_tenant))
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
        .routes(routes!(windows::list))
        .routes(routes!(windows::get))
        .routes(routes!(crate::query::ws::watch_tenant))
        .routes(routes!(rewards::list_rules, rewards::create_rule))
        .routes(routes!(
            rewards::get_rule,
            rewards::patch_rule,
            rewards::delete_rule
        ))
        .routes(routes!(rewards::settle))
        .routes(routes!(rewards::preview))
        .routes(routes!(rewards::settlements))
        .routes(routes!(rewards::list_grants))
        .routes(routes!(rewards::get_grant))
        .routes(routes!(rewards::void_grant))
        .routes(routes!(coupons::list_campaigns, coupons::create_campaign))
        .routes(routes!(coupons::get_campaign, coupons::patch_campaign))
        .routes(routes!(coupons::issue_codes, coupons::list_codes))
        .routes(routes!(coupons::get_coupon))
        .routes(routes!(coupons::void_coupon))
        .routes(routes!(coupons::list_redemptions))
        .routes(routes!(achievements::list, achievements::create))
        .routes(routes!(
            achievements::get,
            achievements::patch,
            achievements::delete
        ))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get, webhooks::patch, webhooks::delete))
        .routes(routes!(webhooks::rotate))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::get_user,
            users::patch_user,
            users::delete_user
        ))
        .routes(routes!(sessions::config))
        .routes(routes!(sessions::login))
        .routes(routes!(sessions::refresh))
        .routes(routes!(sessions::logout))
        .routes(routes!(sessions::me))
        .merge(crate::console::router())
}
