//! The player's rewards (SPEC §7.3, §7.4): their grants, claiming one, and redeeming a coupon code.
//! Tenant JWT with the player in `sub` and the `rewards:redeem` scope (or a token without scopes).

use crate::admin::coupons::RedemptionView;
use crate::admin::rewards::{GrantView, detached, grant_next_cursor, grant_query, only_params};
use crate::auth::{TenantAuth, TokenScope};
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use phoenix_store::rewards::{ClaimOutcome, RedeemOutcome, RedeemRefusal};
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

/// A `/v1/rewards` or `/v1/coupons` caller: a player (the token's `sub`) holding `rewards:redeem`.
pub struct RewardsPlayer {
    auth: TenantAuth,
    pub(crate) user_id: String,
}

impl FromRequestParts<AppState> for RewardsPlayer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = TenantAuth::from_request_parts(parts, state).await?;
        let Some(user_id) = auth.user_id.clone() else {
            return Err(ApiError::Unauthorized(
                "the token must name the player in 'sub' on rewards routes".into(),
            ));
        };
        auth.require(TokenScope::RewardsRedeem)?;
        state.rate_limiter.check_read(&auth)?;
        Ok(RewardsPlayer { auth, user_id })
    }
}

impl RewardsPlayer {
    pub(crate) fn tenant(&self) -> &str {
        self.auth.tenant_id.as_str()
    }
}

/// The player's grants, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerRewards {
    /// Every grant that matches (not only this page).
    pub total: u64,
    pub rewards: Vec<GrantView>,
    pub next_cursor: Option<String>,
}

/// What a redemption granted.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeemView {
    /// The code as shown (`XXXX-XXXX-XXXX` for generated codes, a shared code as created).
    pub code: String,
    pub campaign_id: String,
    pub redemption_id: String,
    pub grants: Vec<GrantView>,
    pub redemption: RedemptionView,
}

/// The caller's grants, newest first then by `grant_id`, `limit` (1–200, default 50) at a time.
#[utoipa::path(get, path = "/v1/rewards", tag = "player rewards",
    params(("status" = Option<String>, Query, pattern = "^(pending|claimed|voided)$"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200),
           ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+$")),
    responses((status = 200, body = PlayerRewards), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    player: RewardsPlayer,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<PlayerRewards>, ApiError> {
    only_params(&params, &["status", "limit", "cursor"])?;
    let query = grant_query(&params, Some(player.user_id.clone()), None)?;
    let page = state.store.list_grants(player.tenant(), query).await?;
    Ok(Json(PlayerRewards {
        total: page.total,
        next_cursor: grant_next_cursor(&page),
        rewards: page.items.into_iter().map(Into::into).collect(),
    }))
}

/// Claims one of the caller's grants once the game has applied the goods: 200 with the grant, now
/// `claimed` (a claimed one is answered unchanged); someone else's is 404, a voided one 409.
#[utoipa::path(post, path = "/v1/rewards/{grant_id}/claim", tag = "player rewards",
    params(("grant_id" = String, Path)),
    responses((status = 200, body = GrantView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn claim(
    State(state): State<AppState>,
    player: RewardsPlayer,
    Path(grant_id): Path<String>,
    body: JsonBody,
) -> Result<Json<GrantView>, ApiError> {
    body.require_none()?;
    let claimed = detached(&state, {
        let (t, u, g) = (
            player.tenant().to_owned(),
            player.user_id.clone(),
            grant_id.clone(),
        );
        move |store| async move { store.claim_grant(&t, &u, &g).await }
    })
    .await?;
    match claimed {
        ClaimOutcome::Claimed(g) => Ok(Json(g.into())),
        ClaimOutcome::Voided(_) => Err(ApiError::Conflict(format!(
            "grant '{grant_id}' was voided and cannot be claimed"
        ))),
        ClaimOutcome::NotFound => Err(ApiError::NotFound(format!("grant '{grant_id}' not found"))),
    }
}

fn refusal(code: &str, why: RedeemRefusal) -> ApiError {
    metrics::counter!("phoenix_coupon_refusals_total", "reason" => why.as_str()).increment(1);
    match why {
        RedeemRefusal::Unknown => ApiError::NotFound(format!("code '{code}' not found")),
        RedeemRefusal::OtherPlayer => {
            ApiError::Forbidden(format!("code '{code}' was issued to another player"))
        }
        RedeemRefusal::Voided => ApiError::Conflict(format!("code '{code}' was voided")),
        RedeemRefusal::Inactive => {
            ApiError::Conflict(format!("code '{code}': its campaign is inactive"))
        }
        RedeemRefusal::NotStarted => {
            ApiError::Conflict(format!("code '{code}': its campaign has not started yet"))
        }
        RedeemRefusal::Expired => {
            ApiError::Conflict(format!("code '{code}': its campaign has expired"))
        }
        RedeemRefusal::AlreadyUsed => {
            ApiError::Conflict(format!("code '{code}' has already been used"))
        }
        RedeemRefusal::PerPlayerLimit => ApiError::Conflict(format!(
            "code '{code}': you have reached this campaign's per-player limit"
        )),
        RedeemRefusal::MaxRedemptions => ApiError::Conflict(format!(
            "code '{code}': the campaign's redemption limit has been reached"
        )),
    }
}

/// Redeems a coupon code (matched without regard to case or dashes). With an `Idempotency-Key`
/// header (1–128 visible characters), a retry by the same player answers the first redemption again.
#[utoipa::path(post, path = "/v1/coupons/{code}/redeem", tag = "player rewards",
    params(("code" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128,
            pattern = "^[\\x21-\\x7E]+$")),
    responses((status = 200, body = RedeemView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn redeem(
    State(state): State<AppState>,
    player: RewardsPlayer,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<RedeemView>, ApiError> {
    body.require_none()?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let v = v.to_str().ok().filter(|v| {
                (1..=128).contains(&v.len()) && v.bytes().all(|b| (0x21..=0x7e).contains(&b))
            });
            Some(
                v.ok_or_else(|| {
                    ApiError::Validation(
                        "Idempotency-Key: must be 1 to 128 visible ASCII characters".into(),
                    )
                })?
                .to_owned(),
            )
        }
    };
    // Codes are at most 32 characters (shared) or 14 (generated): anything longer is unknown.
    if code.is_empty() || code.len() > 64 {
        return Err(refusal(
            &code.chars().take(32).collect::<String>(),
            RedeemRefusal::Unknown,
        ));
    }
    let redeemed = detached(&state, {
        let (t, u, c) = (
            player.tenant().to_owned(),
            player.user_id.clone(),
            code.clone(),
        );
        move |store| async move { store.redeem(&t, &u, &c, key).await }
    })
    .await?;
    match redeemed {
        RedeemOutcome::Redeemed {
            redemption,
            grants,
            replayed,
        } => {
            if !replayed {
                tracing::info!(tenant_id = %player.tenant(), campaign_id = %redemption.campaign_id,
                    redemption_id = %redemption.redemption_id, "coupon redeemed");
            }
            Ok(Json(RedeemView {
                code: redemption.code.clone(),
                campaign_id: redemption.campaign_id.clone(),
                redemption_id: redemption.redemption_id.clone(),
                grants: grants.into_iter().map(Into::into).collect(),
                redemption: redemption.into(),
            }))
        }
        RedeemOutcome::Refused(why) => Err(refusal(&code, why)),
    }
}
