//! Admin authentication as an extractor (SPEC §3.3–3.6): API keys (`X-API-Key` or Bearer), admin JWTs
//! signed with a key, tenant HMAC request signatures, and the system admin secret. Handlers receive an
//! [`AdminAuth`] and ask it for permission; they never look at headers. Secrets are compared in
//! constant time and never logged.

use crate::body::RawBody;
use crate::error::ApiError;
use crate::session;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, header, request::Parts};
use base64::Engine;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use phoenix_core::access::{Scope, Scopes, TenantAccess};
use phoenix_core::ids::TenantId;
use phoenix_store::model::Role;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// Who is calling, for logs and audit (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    AdminSecret,
    ApiKey {
        key_id: String,
    },
    AdminJwt {
        key_id: String,
        subject: Option<String>,
    },
    TenantHmac {
        tenant_id: String,
    },
    /// A console user's session (access token as Bearer or cookie).
    ConsoleUser {
        username: String,
        role: Role,
    },
    /// `PHOENIX_AUTH_ENABLED=false`: nobody was checked.
    Unauthenticated,
}

impl Principal {
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::AdminSecret => "admin_secret",
            Principal::ApiKey { .. } => "api_key",
            Principal::AdminJwt { .. } => "admin_jwt",
            Principal::TenantHmac { .. } => "tenant_hmac",
            Principal::ConsoleUser { .. } => "console_user",
            Principal::Unauthenticated => "unauthenticated",
        }
    }
}

/// An authenticated Admin caller with what it may do.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    pub principal: Principal,
    pub scopes: Scopes,
    pub tenants: TenantAccess,
    /// A console VIEWER: reads everything, writes nothing (every write is 403).
    pub read_only: bool,
    /// When this credential stops working by itself (a token's `exp`, a key's `expires_at`), so a
    /// WebSocket it opened closes then.
    pub expires_at: Option<Timestamp>,
    /// When the authority behind the credential ends (the API key's own `expires_at`): the latest
    /// expiry it may give a key it creates (SPEC §3.3).
    pub grant_expires_at: Option<Timestamp>,
    /// For a tenant HMAC signature: a keyed hash of the secret that verified it, so a WebSocket it
    /// opened can tell when that secret stops working.
    signed_with: Option<u64>,
}

impl AdminAuth {
    fn full(principal: Principal) -> Self {
        AdminAuth {
            principal,
            scopes: Scopes::all(),
            tenants: TenantAccess::All,
            read_only: false,
            expires_at: None,
            grant_expires_at: None,
            signed_with: None,
        }
    }

    /// What a console user's role grants: an ADMIN everything; a VIEWER every read.
    fn console(username: String, role: Role, expires_at: Timestamp) -> Self {
        AdminAuth {
            read_only: role == Role::Viewer,
            expires_at: Some(expires_at),
            ..AdminAuth::full(Principal::ConsoleUser { username, role })
        }
    }

    /// 403 unless the caller may manage console users (SPEC §10: a console ADMIN or the `admin` scope).
    /// A console ADMIN reaches every tenant, so a credential limited to some tenants may not make one
    /// (nor change anyone's password): only an `admin` credential for all tenants may.
    pub fn require_user_admin(&self) -> Result<(), ApiError> {
        if self.read_only {
            return Err(ApiError::Forbidden(
                "managing users needs the ADMIN role".into(),
            ));
        }
        self.require(Scope::Admin)?;
        if self.tenants != TenantAccess::All {
            return Err(ApiError::Forbidden(
                "managing users needs access to every tenant ('*')".into(),
            ));
        }
        Ok(())
    }

    /// 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this credential lacks the '{scope}' scope"
            )))
        }
    }

    /// 403 unless the caller holds `scope` and may act on `tenant`.
    pub fn require_tenant(&self, scope: Scope, tenant: &str) -> Result<(), ApiError> {
        self.require(scope)?;
        if self.tenants.allows(tenant) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this credential has no access to tenant '{tenant}'"
            )))
        }
    }

    /// Whether `tenant` is visible to this caller (for filtering lists).
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.tenants.allows(tenant)
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !state.config.auth_enabled {
            return Ok(AdminAuth::full(Principal::Unauthenticated));
        }
        let auth = authenticate(parts, state, None).await?;
        tracing::debug!(principal = auth.principal.kind(), "authenticated");
        if auth.read_only && !session::is_read(&parts.method) {
            return Err(ApiError::Forbidden("the VIEWER role is read-only".into()));
        }
        Ok(auth)
    }
}

/// The credential a request carries, found in one place for every route and the WebSocket upgrade:
/// an HMAC signature, then `X-API-Key`, then `Authorization`, then (upgrades only, as browsers cannot
/// set headers there) `?access_token=`, then the console's session cookie.
enum Presented<'a> {
    Hmac,
    Token { token: &'a str, bearer: bool },
    Cookie(&'a str),
    Nothing,
}

fn presented<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Result<Presented<'a>, ApiError> {
    if headers.contains_key("x-signature") {
        return Ok(Presented::Hmac);
    }
    if let Some(key) = header_str(headers, "x-api-key")? {
        return Ok(Presented::Token {
            token: key.trim(),
            bearer: false,
        });
    }
    if let Some(value) = header_str(headers, header::AUTHORIZATION.as_str())? {
        return Ok(Presented::Token {
            token: bearer_token(value)?,
            bearer: true,
        });
    }
    if let Some(token) = query_token {
        return Ok(Presented::Token {
            token,
            bearer: true,
        });
    }
    match session::cookie(headers, session::ACCESS_COOKIE) {
        Some(token) => Ok(Presented::Cookie(token)),
        None => Ok(Presented::Nothing),
    }
}

/// An Admin caller from the request (and, for a WebSocket upgrade, its `?access_token=`).
async fn authenticate(
    parts: &Parts,
    state: &AppState,
    query_token: Option<&str>,
) -> Result<AdminAuth, ApiError> {
    let headers = &parts.headers;
    match presented(headers, query_token)? {
        Presented::Hmac => hmac_auth(parts, state).await,
        Presented::Token { token, bearer } => token_auth(token, state, bearer).await,
        // A console session by cookie: a browser sends it on its own, so writes must prove they come
        // from the console's page (double-submit CSRF token).
        Presented::Cookie(token) => {
            let session = console_session(token, state).await?;
            if !session::is_read(&parts.method) {
                session::check_csrf(headers, &session.family_id)?;
            }
            Ok(AdminAuth::console(
                session.user.username,
                session.user.role,
                session.expires_at,
            ))
        }
        Presented::Nothing => Err(ApiError::Unauthorized(
            "missing credentials: send X-API-Key, Authorization: Bearer, or an HMAC signature"
                .into(),
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer_token(value: &str) -> Result<&str, ApiError> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("Authorization header must be 'Bearer <token>'".into())
        })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::Unauthorized(format!("{name} header is not valid text"))),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Constant-time equality of two secrets of any length (compares their digests).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    sha256(a.as_bytes()).ct_eq(&sha256(b.as_bytes())).into()
}

/// A token from `X-API-Key` or `Authorization: Bearer`: the admin secret, an API key, or an admin JWT.
pub(crate) async fn token_auth(
    token: &str,
    state: &AppState,
    bearer: bool,
) -> Result<AdminAuth, ApiError> {
    if let Some(secret) = &state.config.admin_secret
        && secrets_equal(token, secret)
    {
        return Ok(AdminAuth::full(Principal::AdminSecret));
    }
    if token.starts_with("pk_") {
        return api_key_auth(token, state).await;
    }
    if token.starts_with(session::ACCESS_PREFIX) {
        return console_auth(token, state).await;
    }
    if bearer && token.split('.').count() == 3 {
        return admin_jwt_auth(token, state).await;
    }
    Err(ApiError::Unauthorized("invalid credentials".into()))
}

/// The live session of a console access token.
async fn console_session(
    token: &str,
    state: &AppState,
) -> Result<phoenix_store::model::ConsoleSession, ApiError> {
    let found = state
        .store
        .session_by_access(&session::token_hash(token))
        .await?;
    found.ok_or_else(|| {
        ApiError::Unauthorized("the session has expired or was ended; log in again".into())
    })
}

/// A console access token: its session must be live; the user's current role applies.
async fn console_auth(token: &str, state: &AppState) -> Result<AdminAuth, ApiError> {
    let session = console_session(token, state).await?;
    Ok(AdminAuth::console(
        session.user.username,
        session.user.role,
        session.expires_at,
    ))
}

async fn api_key_auth(key: &str, state: &AppState) -> Result<AdminAuth, ApiError> {
    let found = state
        .store
        .find_api_key_by_hash(&sha256(key.as_bytes()))
        .await?;
    let key = found.ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
    check_key_active(&key)?;
    Ok(AdminAuth {
        principal: Principal::ApiKey { key_id: key.key_id },
        scopes: key.scopes,
        tenants: key.tenant_ids,
        read_only: false,
        expires_at: key.expires_at,
        grant_expires_at: key.expires_at,
        signed_with: None,
    })
}

fn check_key_active(key: &phoenix_store::model::ApiKey) -> Result<(), ApiError> {
    if key.revoked_at.is_some() {
        return Err(ApiError::Unauthorized("API key has been revoked".into()));
    }
    if !key.is_active(Timestamp::now()) {
        return Err(ApiError::Unauthorized("API key has expired".into()));
    }
    Ok(())
}

#[derive(Deserialize)]
struct AdminClaims {
    sub: Option<String>,
    sub_type: String,
    sub_id: String,
    /// NumericDates: RFC 7519 allows fractions (validation has already checked `exp`).
    exp: f64,
    iat: Option<f64>,
}

/// 401 when `iat` lies in the future beyond the clock leeway (SPEC §3.2).
fn check_issued_at(iat: Option<f64>, leeway: u64, now: Timestamp) -> Result<(), ApiError> {
    let limit = now
        .as_second()
        .saturating_add(i64::try_from(leeway).unwrap_or(i64::MAX));
    match iat {
        Some(iat) if !iat.is_finite() || iat > limit as f64 => Err(ApiError::Unauthorized(
            "token 'iat' lies in the future".into(),
        )),
        _ => Ok(()),
    }
}

/// When a token expires, for what it keeps open (a WebSocket closes then): its `exp` itself. The
/// clock leeway is for accepting a token from an issuer whose clock is a little off, not for keeping
/// one alive past the time it names.
fn token_end(exp: f64) -> Option<Timestamp> {
    Timestamp::from_second(exp.floor() as i64).ok()
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    sub_id: Option<String>,
}

/// Reads `sub_id` before verification: it names the key whose plaintext verifies the signature.
fn unverified_sub_id(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<UnverifiedClaims>(&bytes)
        .ok()?
        .sub_id
}

async fn admin_jwt_auth(token: &str, state: &AppState) -> Result<AdminAuth, ApiError> {
    let bad = || ApiError::Unauthorized("invalid token".into());
    // The header must name HS256 exactly; `none` and every other algorithm are refused.
    let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
    if header.alg != jsonwebtoken::Algorithm::HS256 {
        return Err(ApiError::Unauthorized(
            "token algorithm must be HS256".into(),
        ));
    }
    let key_id = unverified_sub_id(token).ok_or_else(bad)?;
    let key = state.store.get_api_key(&key_id).await?.ok_or_else(bad)?;
    let secret = state.store.api_key_secret(&key_id).await?.ok_or_else(bad)?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = state.config.jwt_leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<AdminClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
            ApiError::Unauthorized("token has expired".into())
        }
        jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => {
            ApiError::Unauthorized(format!("token lacks the required '{c}' claim"))
        }
        _ => bad(),
    })?;
    let claims = data.claims;
    // Only now, with the signature verified, may a refusal say more than "invalid token".
    check_key_active(&key)?;
    check_issued_at(claims.iat, validation.leeway, Timestamp::now())?;
    if claims.sub_type != "admin" {
        return Err(ApiError::Unauthorized(
            "token sub_type must be 'admin' on Admin routes".into(),
        ));
    }
    if claims.sub_id != key.key_id {
        return Err(bad());
    }
    Ok(AdminAuth {
        principal: Principal::AdminJwt {
            key_id: key.key_id,
            subject: claims.sub,
        },
        scopes: key.scopes,
        tenants: key.tenant_ids,
        read_only: false,
        expires_at: earliest(token_end(claims.exp), key.expires_at),
        grant_expires_at: key.expires_at,
        signed_with: None,
    })
}

/// What a tenant HMAC signature grants: that tenant's configuration routes, never the creation of
/// tenants or keys.
fn hmac_scopes() -> Scopes {
    Scope::ALL
        .into_iter()
        .filter(|s| !matches!(s, Scope::TenantsWrite | Scope::KeysWrite | Scope::Admin))
        .collect()
}

async fn hmac_auth(parts: &Parts, state: &AppState) -> Result<AdminAuth, ApiError> {
    let headers = &parts.headers;
    let tenant = header_str(headers, "x-tenant-id")?
        .ok_or_else(|| ApiError::Unauthorized("X-Signature requires X-Tenant-Id".into()))?;
    let timestamp = header_str(headers, "x-timestamp")?
        .ok_or_else(|| ApiError::Unauthorized("X-Signature requires X-Timestamp".into()))?;
    let signature = header_str(headers, "x-signature")?.unwrap_or_default();
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| ApiError::Unauthorized("X-Timestamp must be Unix seconds".into()))?;
    let now = Timestamp::now().as_second();
    if (now - ts).abs() > state.config.hmac_window_secs {
        return Err(ApiError::Unauthorized(format!(
            "X-Timestamp is more than {} seconds from the server's clock",
            state.config.hmac_window_secs
        )));
    }
    let sig = hex::decode(signature.trim())
        .map_err(|_| ApiError::Unauthorized("X-Signature must be hex".into()))?;
    let tenant_id =
        TenantId::parse(tenant).map_err(|_| ApiError::Unauthorized("invalid signature".into()))?;
    let secrets = state
        .store
        .tenant_secrets(tenant_id.as_str())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid signature".into()))?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let body = parts
        .extensions
        .get::<RawBody>()
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let now = Timestamp::now();
    let verified = secrets.valid_at(now).find(|secret| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(parts.method.as_str().as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(timestamp.as_bytes());
        mac.update(b"\n");
        mac.update(&body);
        mac.verify_slice(&sig).is_ok()
    });
    let Some(verified) = verified else {
        return Err(ApiError::Unauthorized("invalid signature".into()));
    };
    let signed_with = secret_hash(verified);
    let secret_until = secret_valid_until(&secrets, signed_with, now).flatten();
    // Accepted once: the digest is remembered (durably, by the store) until the timestamp expires.
    let expires_at = Timestamp::from_second(ts + state.config.hmac_window_secs)
        .map_err(|_| ApiError::Unauthorized("X-Timestamp is out of range".into()))?;
    if !state
        .store
        .use_signature_once(sha256(&sig), expires_at)
        .await?
    {
        return Err(ApiError::Unauthorized(
            "this signature was already used; sign each request anew".into(),
        ));
    }
    Ok(AdminAuth {
        principal: Principal::TenantHmac {
            tenant_id: tenant_id.to_string(),
        },
        scopes: hmac_scopes(),
        tenants: TenantAccess::one(tenant_id),
        read_only: false,
        expires_at: secret_until,
        grant_expires_at: None,
        signed_with: Some(signed_with),
    })
}

/// One of the things a tenant JWT's `scope` claim can grant (SPEC §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// Ingest events for any actor (game servers).
    EventsWrite,
    /// Ingest only events whose `actor.user_id` is the token's `sub`.
    EventsWriteSelf,
    /// `/v1/leaderboards...` and the WebSocket.
    LeaderboardsRead,
    /// `/v1/rewards...`, `/v1/coupons/...`, `/v1/achievements...`.
    RewardsRedeem,
}

impl TokenScope {
    const ALL: [TokenScope; 4] = [
        TokenScope::EventsWrite,
        TokenScope::EventsWriteSelf,
        TokenScope::LeaderboardsRead,
        TokenScope::RewardsRedeem,
    ];

    fn bit(self) -> u8 {
        match self {
            TokenScope::EventsWrite => 1,
            TokenScope::EventsWriteSelf => 2,
            TokenScope::LeaderboardsRead => 4,
            TokenScope::RewardsRedeem => 8,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::EventsWrite => "events:write",
            TokenScope::EventsWriteSelf => "events:write:self",
            TokenScope::LeaderboardsRead => "leaderboards:read",
            TokenScope::RewardsRedeem => "rewards:redeem",
        }
    }
}

/// What a `/v1` credential may do: a tenant JWT's `scope` claim (unknown values ignored, empty grants
/// nothing), or everything for a token without one, the admin secret and development mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenScopes(u8);

impl TokenScopes {
    pub const ALL: TokenScopes = TokenScopes(15);

    /// The scopes of a space-separated `scope` claim.
    pub fn parse(claim: &str) -> Self {
        let bits = claim
            .split_ascii_whitespace()
            .filter_map(|word| TokenScope::ALL.into_iter().find(|s| s.as_str() == word))
            .fold(0, |bits, s| bits | s.bit());
        TokenScopes(bits)
    }

    pub fn allows(self, scope: TokenScope) -> bool {
        self.0 & scope.bit() != 0
    }
}

/// Whose events a `/v1` credential may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventWriter {
    /// Any actor (`events:write`).
    Anyone,
    /// Only this player's own events, deduplicated per player (`events:write:self`).
    OnlySelf(String),
}

/// The caller of a `/v1` route (SPEC §3.2): a tenant, and the player when one is named.
#[derive(Debug, Clone)]
pub struct TenantAuth {
    pub tenant_id: TenantId,
    /// The JWT's `sub`, or `X-User-Id` with the admin secret (or in development mode).
    pub user_id: Option<String>,
    pub via: TenantVia,
    /// When the credential stops working by itself: the token's `exp` (plus leeway), or the end of a
    /// rotated-out secret's grace period if that is what verified it.
    pub expires_at: Option<Timestamp>,
    pub scopes: TokenScopes,
    /// The tenant's own rate limits (the configured defaults apply where they are `None`).
    pub rate_limits: phoenix_store::model::RateLimits,
    /// A token scoped `events:write`: a game server writing for every player, not limited as one.
    pub game_server: bool,
}

impl TenantAuth {
    /// 403 unless the credential holds `scope`.
    pub fn require(&self, scope: TokenScope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token lacks the '{}' scope",
                scope.as_str()
            )))
        }
    }

    /// Whose events the credential may write; 403 when none.
    pub fn event_writer(&self) -> Result<EventWriter, ApiError> {
        if self.scopes.allows(TokenScope::EventsWrite) {
            return Ok(EventWriter::Anyone);
        }
        if self.scopes.allows(TokenScope::EventsWriteSelf) {
            return match &self.user_id {
                Some(sub) => Ok(EventWriter::OnlySelf(sub.clone())),
                None => Err(ApiError::Forbidden(
                    "an 'events:write:self' token without 'sub' writes nothing".into(),
                )),
            };
        }
        Err(ApiError::Forbidden(
            "this token lacks the 'events:write' scope".into(),
        ))
    }
}

/// 403 for a token without `scope` when its tenant refuses those (SPEC §3.2).
fn check_unscoped(
    scoped: bool,
    policy: phoenix_store::model::UnscopedTokens,
) -> Result<(), ApiError> {
    if !scoped && policy == phoenix_store::model::UnscopedTokens::Deny {
        return Err(ApiError::Forbidden(
            "this tenant accepts only tokens with a 'scope' claim".into(),
        ));
    }
    Ok(())
}

/// How a `/v1` caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantVia {
    TenantJwt,
    AdminSecret,
    Unauthenticated,
}

#[derive(Deserialize)]
struct TenantClaims {
    sub: Option<String>,
    sub_type: String,
    sub_id: String,
    /// A NumericDate: RFC 7519 allows fractions (validation has already checked it).
    exp: f64,
    iat: Option<f64>,
    scope: Option<String>,
}

/// Tenant JWTs verified recently on this worker thread, so a client that sends the same token on every
/// request (every game client does) pays for parsing and the HMAC once. A hit is re-checked against
/// the clock (`exp`) and against the tenant's secrets (the one that verified it must still be valid),
/// so expiry and secret rotation work exactly as without the cache.
struct VerifiedToken {
    tenant_id: TenantId,
    user_id: Option<String>,
    /// `None`: the token has no `scope` claim.
    scopes: Option<TokenScopes>,
    exp: i64,
    /// A keyed hash of the secret that verified the token (not the secret itself).
    secret: u64,
}

/// Tokens kept per thread; the cache starts over when full.
const VERIFIED_TOKENS: usize = 4096;

thread_local! {
    static VERIFIED: std::cell::RefCell<HashMap<Box<str>, VerifiedToken>> =
        std::cell::RefCell::new(HashMap::new());
}

/// One key for the whole process: a request that moves to another worker thread between looking a token
/// up and checking its secret must compute the same hash.
static SECRET_HASH: std::sync::OnceLock<std::collections::hash_map::RandomState> =
    std::sync::OnceLock::new();

fn secret_hash(secret: &str) -> u64 {
    use std::hash::BuildHasher;
    SECRET_HASH.get_or_init(Default::default).hash_one(secret)
}

/// Whether the secret with this keyed hash is still one of the tenant's at `now`, and until when:
/// `Some(None)` for the current secret, `Some(Some(t))` for a rotated-out one in its grace period.
fn secret_valid_until(
    secrets: &phoenix_store::model::TenantSecrets,
    hash: u64,
    now: Timestamp,
) -> Option<Option<Timestamp>> {
    if secret_hash(&secrets.current) == hash {
        return Some(None);
    }
    match &secrets.previous {
        Some((secret, until)) if now < *until && secret_hash(secret) == hash => Some(Some(*until)),
        _ => None,
    }
}

/// Whether `exp` (seconds) has not passed at `now`, with `leeway` seconds of clock skew.
fn not_expired(exp: i64, leeway: u64, now: Timestamp) -> bool {
    now.as_second() <= exp.saturating_add(i64::try_from(leeway).unwrap_or(i64::MAX))
}

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        let named_tenant = || -> Result<TenantId, ApiError> {
            let raw = header_str(headers, "x-tenant-id")?.ok_or_else(|| {
                ApiError::Unauthorized("X-Tenant-Id is required to act for a tenant".into())
            })?;
            TenantId::parse(raw.trim()).map_err(|e| ApiError::Unauthorized(e.to_string()))
        };
        let named_user = || -> Result<Option<String>, ApiError> {
            Ok(header_str(headers, "x-user-id")?.map(|u| u.trim().to_owned()))
        };
        if !state.config.auth_enabled {
            // Development mode: X-Tenant-Id, or else (for events) the body's `tenant_id`.
            let tenant_id = match (header_str(headers, "x-tenant-id")?, body_tenant(parts)) {
                (None, Some(raw)) => TenantId::parse(raw.trim())
                    .map_err(|e| ApiError::Unauthorized(format!("tenant_id: {e}")))?,
                _ => named_tenant()?,
            };
            // Rate limits hold in development mode too, for tenants that exist (any other name a
            // client makes up must not become a bucket or a metric label).
            let unlimited = phoenix_store::model::RateLimits {
                events_per_second: Some(0),
                reads_per_second: Some(0),
                player_requests_per_second: Some(0),
            };
            let rate_limits = state
                .store
                .get_tenant(tenant_id.as_str())
                .await?
                .map_or(unlimited, |t| t.rate_limits);
            return Ok(TenantAuth {
                tenant_id,
                user_id: named_user()?,
                via: TenantVia::Unauthenticated,
                expires_at: None,
                scopes: TokenScopes::ALL,
                rate_limits,
                game_server: false,
            });
        }
        let token = tenant_token(headers, None)?;
        tenant_by_token(token, headers, state).await
    }
}

/// The token of a `/v1` request: `Authorization: Bearer`, else `X-API-Key`, else (WebSocket upgrades
/// only) `?access_token=`.
fn tenant_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Result<&'a str, ApiError> {
    match (
        header_str(headers, header::AUTHORIZATION.as_str())?,
        header_str(headers, "x-api-key")?,
        query_token,
    ) {
        (Some(value), _, _) => bearer_token(value),
        (None, Some(key), _) => Ok(key.trim()),
        (None, None, Some(token)) => Ok(token),
        (None, None, None) => Err(ApiError::Unauthorized(
            "missing credentials: send Authorization: Bearer <tenant JWT>".into(),
        )),
    }
}

/// A `/v1` caller by its token: a tenant JWT, or the admin secret naming the tenant in `X-Tenant-Id`.
async fn tenant_by_token(
    token: &str,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<TenantAuth, ApiError> {
    // A tenant JWT this thread verified recently: no need to compare it with the admin secret.
    if let Some(auth) = remembered_tenant_jwt(token, state).await? {
        return Ok(auth);
    }
    if let Some(secret) = &state.config.admin_secret
        && secrets_equal(token, secret)
    {
        let tenant_id = {
            let raw = header_str(headers, "x-tenant-id")?.ok_or_else(|| {
                ApiError::Unauthorized("X-Tenant-Id is required to act for a tenant".into())
            })?;
            TenantId::parse(raw.trim()).map_err(|e| ApiError::Unauthorized(e.to_string()))?
        };
        let Some(tenant) = state.store.get_tenant(tenant_id.as_str()).await? else {
            return Err(ApiError::Unauthorized(format!(
                "unknown tenant '{tenant_id}'"
            )));
        };
        return Ok(TenantAuth {
            tenant_id,
            user_id: header_str(headers, "x-user-id")?.map(|u| u.trim().to_owned()),
            via: TenantVia::AdminSecret,
            expires_at: None,
            scopes: TokenScopes::ALL,
            rate_limits: tenant.rate_limits,
            game_server: false,
        });
    }
    tenant_jwt_auth(token, state).await
}

/// In development mode, the tenant an event body names: its `tenant_id`, or for a batch the top-level
/// `tenant_id` or else the first event's (the whole batch goes to that tenant).
fn body_tenant(parts: &Parts) -> Option<String> {
    if !parts.uri.path().starts_with("/v1/events") {
        return None;
    }
    let body = parts.extensions.get::<RawBody>()?;
    let value: serde_json::Value = serde_json::from_slice(&body.0).ok()?;
    let named = |v: &serde_json::Value| v.get("tenant_id")?.as_str().map(str::to_owned);
    named(&value).or_else(|| named(value.get("events")?.get(0)?))
}

/// The tenant JWT if this thread verified exactly this token before and it still holds: not expired,
/// and the secret that verified it is still one of the tenant's valid secrets.
async fn remembered_tenant_jwt(
    token: &str,
    state: &AppState,
) -> Result<Option<TenantAuth>, ApiError> {
    let leeway = state.config.jwt_leeway_secs.min(60);
    let now = Timestamp::now();
    let known = VERIFIED.with_borrow(|cache| {
        cache
            .get(token)
            .filter(|v| not_expired(v.exp, leeway, now))
            .map(|v| {
                (
                    v.tenant_id.clone(),
                    v.user_id.clone(),
                    v.secret,
                    v.exp,
                    v.scopes,
                )
            })
    });
    let Some((tenant_id, user_id, secret, exp, scopes)) = known else {
        return Ok(None);
    };
    let secrets = state.store.tenant_secrets(tenant_id.as_str()).await?;
    if let Some(secrets) = secrets
        && let Some(until) = secret_valid_until(&secrets, secret, now)
    {
        check_unscoped(scopes.is_some(), secrets.unscoped_tokens)?;
        return Ok(Some(TenantAuth {
            tenant_id,
            user_id,
            via: TenantVia::TenantJwt,
            expires_at: earliest(token_end(exp as f64), until),
            scopes: scopes.unwrap_or(TokenScopes::ALL),
            rate_limits: secrets.rate_limits,
            game_server: scopes.is_some_and(|s| s.allows(TokenScope::EventsWrite)),
        }));
    }
    VERIFIED.with_borrow_mut(|cache| cache.remove(token));
    Ok(None)
}

pub(crate) async fn tenant_jwt_auth(token: &str, state: &AppState) -> Result<TenantAuth, ApiError> {
    if let Some(auth) = remembered_tenant_jwt(token, state).await? {
        return Ok(auth);
    }
    let bad = || ApiError::Unauthorized("invalid token".into());
    let leeway = state.config.jwt_leeway_secs.min(60);
    if token.split('.').count() != 3 {
        return Err(bad());
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
    if header.alg != jsonwebtoken::Algorithm::HS256 {
        return Err(ApiError::Unauthorized(
            "token algorithm must be HS256".into(),
        ));
    }
    let tenant = unverified_sub_id(token).ok_or_else(bad)?;
    // An unknown tenant is the same "invalid token" as a bad signature (SPEC §10).
    let secrets = state.store.tenant_secrets(&tenant).await?.ok_or_else(bad)?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = leeway;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let mut last_error = bad();
    let now = Timestamp::now();
    // The current secret, then (during a rotation's grace period) the previous one.
    for secret in secrets.valid_at(now) {
        match jsonwebtoken::decode::<TenantClaims>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        ) {
            Ok(data) => {
                let claims = data.claims;
                check_issued_at(claims.iat, leeway, now)?;
                if claims.sub_type != "tenant" {
                    return Err(ApiError::Unauthorized(
                        "token sub_type must be 'tenant' on /v1 routes".into(),
                    ));
                }
                let tenant_id = TenantId::parse(&claims.sub_id).map_err(|_| bad())?;
                let user_id = claims.sub.filter(|s| !s.is_empty());
                let until = secret_valid_until(&secrets, secret_hash(secret), now).flatten();
                let expires_at = earliest(token_end(claims.exp), until);
                let scopes = claims.scope.as_deref().map(TokenScopes::parse);
                check_unscoped(scopes.is_some(), secrets.unscoped_tokens)?;
                let verified = VerifiedToken {
                    tenant_id: tenant_id.clone(),
                    user_id: user_id.clone(),
                    scopes,
                    // Rounded down: the remembered token never outlives the real `exp`.
                    exp: claims.exp.floor() as i64,
                    secret: secret_hash(secret),
                };
                VERIFIED.with_borrow_mut(|cache| {
                    if cache.len() >= VERIFIED_TOKENS {
                        cache.clear();
                    }
                    cache.insert(token.into(), verified);
                });
                return Ok(TenantAuth {
                    tenant_id,
                    user_id,
                    via: TenantVia::TenantJwt,
                    expires_at,
                    scopes: scopes.unwrap_or(TokenScopes::ALL),
                    rate_limits: secrets.rate_limits,
                    game_server: scopes.is_some_and(|s| s.allows(TokenScope::EventsWrite)),
                });
            }
            Err(e) => {
                last_error = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        ApiError::Unauthorized("token has expired".into())
                    }
                    jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => {
                        ApiError::Unauthorized(format!("token lacks the required '{c}' claim"))
                    }
                    _ => bad(),
                };
            }
        }
    }
    Err(last_error)
}

/// What a WebSocket keeps to go on checking the credential that opened it (SPEC §10: a credential that
/// expires or is revoked closes its sockets with 4401): the credential itself, held in memory for the
/// socket's life only, and when it ends by itself.
pub struct SocketCredential {
    recheck: Recheck,
    /// When the credential stops working by itself.
    pub expires_at: Option<Timestamp>,
}

enum Recheck {
    /// The admin secret, or development mode: nothing that can be revoked.
    Never,
    /// An Admin token (API key, admin JWT, console session) watching `tenant`.
    Admin { token: String, tenant: String },
    /// An HMAC signature is good once; what it stood for is the secret that signed it, which works
    /// until it is rotated out and its grace period ends.
    Hmac { tenant: String, secret: u64 },
    /// A tenant JWT.
    Tenant { token: String },
}

impl SocketCredential {
    fn never() -> Self {
        SocketCredential {
            recheck: Recheck::Never,
            expires_at: None,
        }
    }

    /// Checks the credential again, exactly as a new request would be: `Err` (401/403) once it no
    /// longer holds; updates `expires_at` (a secret rotation can bring it forward). A tenant JWT's
    /// fresh check comes back, so the socket also picks up its tenant's current rate limits.
    pub async fn recheck(&mut self, state: &AppState) -> Result<Option<TenantAuth>, ApiError> {
        let mut fresh = None;
        self.expires_at = match &self.recheck {
            Recheck::Never => None,
            Recheck::Admin { token, tenant } => {
                let auth = token_auth(token, state, true).await?;
                auth.require_tenant(Scope::LeaderboardsRead, tenant)?;
                auth.expires_at
            }
            Recheck::Hmac { tenant, secret } => {
                let secrets = state
                    .store
                    .tenant_secrets(tenant)
                    .await?
                    .ok_or_else(|| ApiError::Unauthorized("the tenant is gone".into()))?;
                secret_valid_until(&secrets, *secret, Timestamp::now()).ok_or_else(|| {
                    ApiError::Unauthorized("the signing secret was rotated out".into())
                })?
            }
            Recheck::Tenant { token } => {
                let auth = tenant_jwt_auth(token, state).await?;
                let expires_at = auth.expires_at;
                fresh = Some(auth);
                expires_at
            }
        };
        Ok(fresh)
    }
}

/// Whether a browser's `Origin` is this server's own page: no `Origin` (not a browser), or one whose
/// scheme and host (with port) are the request's own. The request's scheme is `https` when a proxy in
/// front says so (`X-Forwarded-Proto`) or the server is configured to sit behind TLS.
pub fn same_origin(headers: &HeaderMap, state: &AppState) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let https = state.config.force_secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    let Some((origin_scheme, origin_host)) = origin.to_str().ok().and_then(|o| o.split_once("://"))
    else {
        return false;
    };
    origin_scheme.eq_ignore_ascii_case(scheme)
        && origin_host.trim_end_matches('/').eq_ignore_ascii_case(host)
}

/// An admin watcher of `tenant` on a WebSocket upgrade (SPEC §6.1): any Admin credential with
/// `leaderboards:read` on it, from the headers, `?access_token=`, or the console's session cookie. A
/// browser sends that cookie on any page's upgrade, so with the cookie as the credential the page must
/// be this server's own.
pub async fn admin_socket(
    parts: &mut Parts,
    state: &AppState,
    tenant: &str,
    query_token: Option<&str>,
) -> Result<(AdminAuth, SocketCredential), ApiError> {
    if !state.config.auth_enabled {
        let auth = AdminAuth::from_request_parts(parts, state).await?;
        return Ok((auth, SocketCredential::never()));
    }
    let (auth, recheck) = match presented(&parts.headers, query_token)? {
        Presented::Hmac => {
            let auth = hmac_auth(parts, state).await?;
            let recheck = Recheck::Hmac {
                tenant: tenant.to_owned(),
                secret: auth.signed_with.unwrap_or_default(),
            };
            (auth, recheck)
        }
        Presented::Token { token, bearer } => (
            token_auth(token, state, bearer).await?,
            Recheck::Admin {
                token: token.to_owned(),
                tenant: tenant.to_owned(),
            },
        ),
        Presented::Cookie(token) => {
            let auth = console_auth(token, state).await?;
            if !same_origin(&parts.headers, state) {
                return Err(ApiError::Forbidden(
                    "a WebSocket authenticated by cookie must come from this server's own page (Origin)"
                        .into(),
                ));
            }
            let recheck = Recheck::Admin {
                token: token.to_owned(),
                tenant: tenant.to_owned(),
            };
            (auth, recheck)
        }
        Presented::Nothing => {
            return Err(ApiError::Unauthorized(
                "missing credentials: send X-API-Key, Authorization: Bearer, ?access_token= or the console's session cookie".into(),
            ));
        }
    };
    auth.require_tenant(Scope::LeaderboardsRead, tenant)?;
    let recheck = match auth.principal {
        Principal::AdminSecret => Recheck::Never,
        _ => recheck,
    };
    let expires_at = auth.expires_at;
    Ok((
        auth,
        SocketCredential {
            recheck,
            expires_at,
        },
    ))
}

/// A player watching on a WebSocket upgrade (SPEC §6.1): a tenant JWT as `Authorization: Bearer` or
/// `?access_token=`, or the admin secret naming the tenant (and player) in headers.
pub async fn tenant_socket(
    parts: &mut Parts,
    state: &AppState,
    query_token: Option<&str>,
) -> Result<(TenantAuth, SocketCredential), ApiError> {
    if !state.config.auth_enabled {
        let auth = TenantAuth::from_request_parts(parts, state).await?;
        return Ok((auth, SocketCredential::never()));
    }
    let token = tenant_token(&parts.headers, query_token)?;
    let auth = tenant_by_token(token, &parts.headers, state).await?;
    let recheck = match auth.via {
        TenantVia::TenantJwt => Recheck::Tenant {
            token: token.to_owned(),
        },
        TenantVia::AdminSecret | TenantVia::Unauthenticated => Recheck::Never,
    };
    let expires_at = auth.expires_at;
    Ok((
        auth,
        SocketCredential {
            recheck,
            expires_at,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_token_expires_with_its_exp_and_leeway() {
        let now = Timestamp::from_second(1_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        assert!(not_expired(1_000_000, 0, now));
        assert!(!not_expired(999_999, 0, now));
        assert!(not_expired(999_970, 30, now));
        assert!(!not_expired(999_969, 30, now));
        assert!(not_expired(i64::MAX, u64::MAX, now));
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
