//! Console sign-in (SPEC §3.6): `/auth/config`, `/auth/login` (slowed after failures), `/auth/refresh`
//! (rotates the pair; a spent refresh token revokes its family), `/auth/logout`, and `/auth/me`. Tokens
//! go back in the body and as cookies: HttpOnly access and refresh cookies (the refresh one only sent to
//! `/auth`), and a readable CSRF cookie the console echoes in `X-CSRF-Token` on writes.

use crate::auth::{AdminAuth, Principal};
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::session::{self, IssuedTokens};
use crate::state::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use phoenix_core::access::Scope;
use phoenix_store::model::{RefreshOutcome, User};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use utoipa::ToSchema;

/// What the console needs before anyone signs in.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthConfig {
    /// False in development mode: the console skips sign-in.
    pub authentication_enabled: bool,
    /// Every scope an API key can carry, in a stable order, with a label for people.
    pub scopes: Vec<ScopeLabel>,
}

/// An admin scope and what it allows, in a few words.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeLabel {
    #[schema(example = "leaderboards:read")]
    pub scope: &'static str,
    #[schema(example = "Read leaderboards")]
    pub label: &'static str,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token; when absent, the `phoenix-refresh-token` cookie.
    pub refresh_token: Option<String>,
}

/// A console token pair (also set as cookies).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// Send as `Authorization: Bearer` on Admin routes (or rely on the cookie).
    pub access_token: String,
    /// Works once, at `/auth/refresh`.
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
    #[schema(example = "ADMIN")]
    pub role: &'static str,
    pub username: String,
}

/// Who the caller is, for the console.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The console user; null for other credentials and in development mode.
    pub username: Option<String>,
    /// `ADMIN` or `VIEWER` for console users; `ADMIN` for the admin secret and development mode;
    /// null for API keys and HMAC signatures (their scopes decide).
    pub role: Option<&'static str>,
    /// How the caller authenticated, e.g. `console_user`, `api_key`.
    pub credential: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedOut {
    #[schema(example = "logged_out")]
    pub status: &'static str,
}

/// The client's address as login throttling sees it: IPv4 addresses one by one, IPv6 by /64 (one
/// host usually has a whole /64). `unknown` when the listener did not record the peer.
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical());
        Ok(ClientAddr(match ip {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            None => "unknown".into(),
        }))
    }
}

/// Whether the console signs in (false in development mode), and the admin scopes with their labels.
/// No authentication.
#[utoipa::path(get, path = "/auth/config", tag = "auth",
    responses((status = 200, body = AuthConfig)))]
pub async fn config(State(state): State<AppState>) -> Json<AuthConfig> {
    Json(AuthConfig {
        authentication_enabled: state.config.auth_enabled,
        scopes: Scope::ALL
            .into_iter()
            .map(|s| ScopeLabel {
                scope: s.as_str(),
                label: s.label(),
            })
            .collect(),
    })
}

/// The cookies of a new session.
fn session_cookies(
    state: &AppState,
    headers: &HeaderMap,
    tokens: &IssuedTokens,
) -> [(header::HeaderName, header::HeaderValue); 3] {
    let secure = state.config.force_secure_cookies || !session::on_loopback(headers);
    let access_age = state.config.access_token_ttl.as_secs();
    let refresh_age = state.config.refresh_token_ttl.as_secs();
    let csrf = session::csrf_for(&tokens.stored.family_id);
    [
        (
            header::SET_COOKIE,
            session::set_cookie(
                session::ACCESS_COOKIE,
                &tokens.access_token,
                "/",
                access_age,
                true,
                secure,
            ),
        ),
        (
            header::SET_COOKIE,
            session::set_cookie(
                session::REFRESH_COOKIE,
                &tokens.refresh_token,
                "/auth",
                refresh_age,
                true,
                secure,
            ),
        ),
        (
            header::SET_COOKIE,
            session::set_cookie(session::CSRF_COOKIE, &csrf, "/", refresh_age, false, secure),
        ),
    ]
}

/// Cookies that remove the session's cookies from the browser.
fn cleared_cookies(
    state: &AppState,
    headers: &HeaderMap,
) -> [(header::HeaderName, header::HeaderValue); 3] {
    let secure = state.config.force_secure_cookies || !session::on_loopback(headers);
    [
        (session::ACCESS_COOKIE, "/", true),
        (session::REFRESH_COOKIE, "/auth", true),
        (session::CSRF_COOKIE, "/", false),
    ]
    .map(|(name, path, http_only)| {
        (
            header::SET_COOKIE,
            session::set_cookie(name, "", path, 0, http_only, secure),
        )
    })
}

fn token_pair(state: &AppState, tokens: &IssuedTokens, user: &User) -> TokenPair {
    TokenPair {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        token_type: "Bearer",
        expires_in: state.config.access_token_ttl.as_secs(),
        refresh_expires_in: state.config.refresh_token_ttl.as_secs(),
        role: user.role.as_str(),
        username: user.username.clone(),
    }
}

fn rate_limited(wait: std::time::Duration) -> ApiError {
    let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::RateLimited {
        message: format!("too many failed logins; try again in {retry_after} s"),
        retry_after: retry_after.max(1),
    }
}

/// Signs a console user in: the token pair in the body and as cookies. Wrong credentials are 401;
/// after repeated failures (per username and per address) 429 with `Retry-After`.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenPair), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let req: LoginRequest = body.parse()?;
    // A name no user can have is checked like any other (same time, same answer), but never kept or
    // logged as it was sent.
    let valid_name = super::users::check_username(&req.username).is_ok();
    let name = if valid_name {
        req.username.as_str()
    } else {
        "<invalid>"
    };
    // A cluster shares the throttle through Redis: without it, a guesser could spread attempts over
    // the nodes unseen, so logins wait for it (fail closed).
    if let Some(redis) = state.store.shared()
        && !redis.ping().await
    {
        return Err(ApiError::Unavailable(
            "logins are paused while the cluster's Redis cannot be reached".into(),
        ));
    }
    let throttle = &state.login_throttle;
    if let Err(wait) = throttle.attempt(name, &addr) {
        tracing::warn!(username = %name, "login refused while throttled");
        return Err(rate_limited(wait));
    }
    let hash = if valid_name {
        state.store.user_password_hash(&req.username).await?
    } else {
        None
    };
    if !session::verify_password(req.password, hash).await? {
        tracing::warn!(username = %name, "failed login");
        return Err(ApiError::Unauthorized("wrong username or password".into()));
    }
    throttle.succeeded(name, &addr);
    let tokens = session::issue(
        state.config.access_token_ttl,
        state.config.refresh_token_ttl,
        None,
    );
    let started = state
        .store
        .start_session(&req.username, tokens.stored.clone())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("wrong username or password".into()))?;
    tracing::info!(username = %started.user.username, "console login");
    // A login beyond the user's session bound ends their oldest session.
    state.credentials_changed();
    let pair = token_pair(&state, &tokens, &started.user);
    Ok((
        AppendHeaders(session_cookies(&state, &headers, &tokens)),
        Json(pair),
    )
        .into_response())
}

/// Rotates the token pair: the refresh token (body or cookie) works once; presenting a spent one
/// revokes the whole session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let req: RefreshRequest = if body.is_empty() {
        RefreshRequest::default()
    } else {
        body.parse()?
    };
    let token = match req.refresh_token {
        Some(token) => token,
        None => {
            let token = session::cookie(&headers, session::REFRESH_COOKIE).ok_or_else(|| {
                ApiError::Unauthorized(
                    "send the refresh token in the body or the phoenix-refresh-token cookie".into(),
                )
            })?;
            // Authentication (401) before the CSRF check (403), as on every route. A token that
            // names no family (issued before families were named) is not accepted any more.
            let family = session::family_of(token);
            let known = !family.is_empty()
                && state
                    .store
                    .refresh_token_known(&session::token_hash(token), family)
                    .await?;
            if !known {
                return Ok((
                    AppendHeaders(cleared_cookies(&state, &headers)),
                    ApiError::Unauthorized(
                        "the refresh token is invalid or expired; log in again".into(),
                    ),
                )
                    .into_response());
            }
            session::check_csrf(&headers, session::family_of(token))?;
            token.to_owned()
        }
    };
    let family = session::family_of(&token);
    if family.is_empty() {
        // Not one of ours, or issued before refresh tokens named their family: its session cannot
        // get a CSRF token bound to it, so it ends here (one more sign-in after the upgrade).
        return Ok((
            AppendHeaders(cleared_cookies(&state, &headers)),
            ApiError::Unauthorized("the refresh token is invalid or expired; log in again".into()),
        )
            .into_response());
    }
    let tokens = session::issue(
        state.config.access_token_ttl,
        state.config.refresh_token_ttl,
        Some(family),
    );
    let outcome = state
        .store
        .refresh_session(&session::token_hash(&token), tokens.stored.clone())
        .await?;
    let refused = |message: &str| {
        (
            AppendHeaders(cleared_cookies(&state, &headers)),
            ApiError::Unauthorized(message.into()),
        )
            .into_response()
    };
    Ok(match outcome {
        RefreshOutcome::Rotated(user) => {
            let pair = token_pair(&state, &tokens, &user);
            (
                AppendHeaders(session_cookies(&state, &headers, &tokens)),
                Json(pair),
            )
                .into_response()
        }
        RefreshOutcome::Reused => {
            tracing::warn!("a spent refresh token was presented again; its session is revoked");
            state.credentials_changed();
            refused("this refresh token was already used; the session is revoked, log in again")
        }
        RefreshOutcome::Invalid => refused("the refresh token is invalid or expired; log in again"),
    })
}

/// Ends the session of the access token (Bearer or cookie) or refresh token (body or cookie): both
/// tokens stop working at once, and the cookies are cleared.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 200, body = LoggedOut), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope)))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let mut tokens: Vec<String> = Vec::new();
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
    {
        tokens.push(token.trim().to_owned());
    }
    if !body.is_empty() {
        let req: RefreshRequest = body.parse()?;
        tokens.extend(req.refresh_token);
    }
    let from_cookies: Vec<String> = [session::ACCESS_COOKIE, session::REFRESH_COOKIE]
        .into_iter()
        .filter_map(|name| session::cookie(&headers, name))
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() && !from_cookies.is_empty() {
        // Authentication (401) before the CSRF check (403): is any of the cookies a live session's?
        let mut live = false;
        let mut family = String::new();
        for token in &from_cookies {
            let hash = session::token_hash(token);
            if let Some(session) = state.store.session_by_access(&hash).await? {
                live = true;
                family = session.family_id;
            } else if state
                .store
                .refresh_token_known(&hash, session::family_of(token))
                .await?
            {
                live = true;
                family = session::family_of(token).to_owned();
            }
        }
        if !live {
            return Ok((
                AppendHeaders(cleared_cookies(&state, &headers)),
                ApiError::Unauthorized("no live session to log out of".into()),
            )
                .into_response());
        }
        session::check_csrf(&headers, &family)?;
        tokens = from_cookies;
    }
    if tokens.is_empty() {
        return Err(ApiError::Unauthorized(
            "send the access token (Bearer or cookie) or the refresh token to log out".into(),
        ));
    }
    let mut ended = false;
    for token in &tokens {
        let family = session::family_of(token);
        // A spent refresh token no longer leads to its family by hash, but it names it.
        let revoked = state
            .store
            .revoke_session(&session::token_hash(token))
            .await?
            || (!family.is_empty() && state.store.revoke_family(family).await?);
        if revoked {
            ended = true;
            tracing::info!("console logout");
        }
    }
    if !ended {
        // Not a live session's token: the same 401 as any other bad credential.
        return Ok((
            AppendHeaders(cleared_cookies(&state, &headers)),
            ApiError::Unauthorized("no live session to log out of".into()),
        )
            .into_response());
    }
    state.credentials_changed();
    Ok((
        AppendHeaders(cleared_cookies(&state, &headers)),
        Json(LoggedOut {
            status: "logged_out",
        }),
    )
        .into_response())
}

/// Who the caller is (the console asks on load).
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorEnvelope)))]
pub async fn me(auth: AdminAuth) -> Json<Me> {
    let credential = auth.principal.kind();
    Json(match auth.principal {
        Principal::ConsoleUser { username, role } => Me {
            username: Some(username),
            role: Some(role.as_str()),
            credential,
        },
        Principal::AdminSecret | Principal::Unauthenticated => Me {
            username: None,
            role: Some("ADMIN"),
            credential,
        },
        _ => Me {
            username: None,
            role: None,
            credential,
        },
    })
}
