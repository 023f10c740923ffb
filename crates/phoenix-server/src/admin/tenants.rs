//! Tenants (SPEC §3.1): create (the HMAC secret is returned this once), list, read, rotate the secret
//! with a grace period during which the old one keeps working.

use super::views::{SecretRotated, TenantCreated, TenantList, TenantView};
use crate::auth::AdminAuth;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use phoenix_core::access::Scope;
use phoenix_core::ids::TenantId;
use phoenix_store::model::{TenantPatch, UnscopedTokens};
use phoenix_store::seal::random_hex;
use serde::Deserialize;
use utoipa::ToSchema;

/// Body of `POST /tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(example = "tenant-prod-001", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: String,
    /// Not blank.
    #[schema(
        example = "Production",
        min_length = 1,
        max_length = 200,
        pattern = "\\S"
    )]
    pub name: String,
}

/// Optional body of a rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the current secret keeps working (default 86400 = 24 h; 0 ends it at once).
    #[schema(minimum = 0, maximum = 2_592_000, example = 3600)]
    pub grace_period_seconds: Option<u64>,
}

/// A fresh tenant HMAC secret: 256 random bits, hex.
fn new_secret() -> String {
    random_hex::<32>()
}

pub(crate) fn check_name(field: &str, name: &str, max: usize) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::Validation(format!("{field}: must not be empty")));
    }
    if name.chars().count() > max {
        return Err(ApiError::Validation(format!(
            "{field}: must be at most {max} characters"
        )));
    }
    Ok(())
}

/// Lists the tenants the caller may see.
#[utoipa::path(get, path = "/tenants", tag = "tenants",
    responses((status = 200, body = TenantList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    auth: AdminAuth,
) -> Result<Json<TenantList>, ApiError> {
    auth.require(Scope::TenantsRead)?;
    let tenants: Vec<TenantView> = state
        .store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| auth.sees_tenant(t.tenant_id.as_str()))
        .map(Into::into)
        .collect();
    Ok(Json(TenantList {
        total: tenants.len(),
        tenants,
    }))
}

/// Creates a tenant; the response carries its HMAC secret this once only.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantCreated), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    auth: AdminAuth,
    body: JsonBody,
) -> Result<(StatusCode, Json<TenantCreated>), ApiError> {
    auth.require(Scope::TenantsWrite)?;
    let req: CreateTenant = body.parse()?;
    let tenant_id = TenantId::parse(&req.tenant_id)?;
    // A key limited to some tenants may only create one of those.
    auth.require_tenant(Scope::TenantsWrite, tenant_id.as_str())?;
    check_name("name", &req.name, 200)?;
    let secret = new_secret();
    let tenant = state
        .store
        .create_tenant(tenant_id, req.name, secret.clone())
        .await?;
    tracing::info!(tenant_id = %tenant.tenant_id, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            record: tenant.into(),
            hmac_secret: secret,
        }),
    ))
}

/// Reads one tenant (never its secret).
#[utoipa::path(get, path = "/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = TenantView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get_tenant(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    auth.require_tenant(Scope::TenantsRead, &tenant_id)?;
    let tenant = state
        .store
        .get_tenant(&tenant_id)
        .await?
        .ok_or_else(|| tenant_not_found(&tenant_id))?;
    Ok(Json(tenant.into()))
}

/// Body of `PATCH /tenants/{tenant_id}` (documentation; the handler reads it field by field so that a
/// rate limit can be left out, set, or set to null).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PatchTenant {
    /// Not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "\\S",
        nullable = false,
        example = "Production"
    )]
    name: Option<String>,
    #[schema(value_type = Option<UnscopedTokensDoc>, nullable = false)]
    unscoped_tokens: Option<String>,
    /// Changing these needs the `admin` scope. Each: a whole number (0 = unlimited) or null (the
    /// configured default); a field left out is unchanged.
    #[schema(nullable = false)]
    rate_limits: Option<PatchRateLimits>,
}

/// Whether tenant JWTs without a `scope` claim are accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = UnscopedTokens)]
#[allow(dead_code)]
pub enum UnscopedTokensDoc {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PatchRateLimits {
    #[schema(minimum = 0, maximum = 10_000_000)]
    events_per_second: Option<u32>,
    #[schema(minimum = 0, maximum = 10_000_000)]
    reads_per_second: Option<u32>,
    #[schema(minimum = 0, maximum = 10_000_000)]
    player_requests_per_second: Option<u32>,
}

/// The largest rate limit accepted.
const MAX_RATE: u64 = 10_000_000;

/// A patch from the body's JSON, naming the field at fault.
fn parse_patch(value: serde_json::Value) -> Result<TenantPatch, ApiError> {
    let serde_json::Value::Object(body) = value else {
        return Err(ApiError::Validation(
            "request body must be a JSON object".into(),
        ));
    };
    let mut patch = TenantPatch::default();
    for (key, value) in body {
        match key.as_str() {
            "name" => {
                let name = value
                    .as_str()
                    .ok_or_else(|| ApiError::Validation("name: must be a string".into()))?;
                check_name("name", name, 200)?;
                patch.name = Some(name.to_owned());
            }
            "unscoped_tokens" => {
                patch.unscoped_tokens = Some(match value.as_str() {
                    Some("allow") => UnscopedTokens::Allow,
                    Some("deny") => UnscopedTokens::Deny,
                    _ => {
                        return Err(ApiError::Validation(
                            "unscoped_tokens: must be 'allow' or 'deny'".into(),
                        ));
                    }
                });
            }
            "rate_limits" => {
                let serde_json::Value::Object(limits) = value else {
                    return Err(ApiError::Validation(
                        "rate_limits: must be an object".into(),
                    ));
                };
                for (name, value) in limits {
                    let rate = match value {
                        serde_json::Value::Null => None,
                        v => Some(
                            v.as_u64()
                                .filter(|n| *n <= MAX_RATE)
                                .and_then(|n| u32::try_from(n).ok())
                                .ok_or_else(|| {
                                    ApiError::Validation(format!(
                                        "rate_limits.{name}: must be a whole number from 0 (unlimited) to {MAX_RATE}, or null (the default)"
                                    ))
                                })?,
                        ),
                    };
                    match name.as_str() {
                        "events_per_second" => patch.events_per_second = Some(rate),
                        "reads_per_second" => patch.reads_per_second = Some(rate),
                        "player_requests_per_second" => {
                            patch.player_requests_per_second = Some(rate);
                        }
                        other => {
                            return Err(ApiError::Validation(format!(
                                "rate_limits.{other}: unknown field"
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(ApiError::Validation(format!("{other}: unknown field")));
            }
        }
    }
    Ok(patch)
}

/// Changes a tenant's name, whether it accepts unscoped tokens, and (with `admin`) its rate limits.
#[utoipa::path(patch, path = "/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path)), request_body = PatchTenant,
    responses((status = 200, body = TenantView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn patch_tenant(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<Json<TenantView>, ApiError> {
    auth.require_tenant(Scope::TenantsWrite, &tenant_id)?;
    // Permission before existence and validation: a tenant cannot raise its own limits.
    let value = body.value();
    if value.as_ref().is_ok_and(|v| v.get("rate_limits").is_some()) {
        auth.require(Scope::Admin)?;
    }
    if state.store.get_tenant(&tenant_id).await?.is_none() {
        return Err(tenant_not_found(&tenant_id));
    }
    let patch = parse_patch(value?)?;
    let tenant = state
        .store
        .update_tenant(&tenant_id, patch)
        .await?
        .ok_or_else(|| tenant_not_found(&tenant_id))?;
    tracing::info!(tenant_id = %tenant.tenant_id, "tenant updated");
    // Denying unscoped tokens closes their sockets.
    state.credentials_changed();
    Ok(Json(tenant.into()))
}

pub(crate) fn tenant_not_found(tenant_id: &str) -> ApiError {
    ApiError::NotFound(format!("tenant '{tenant_id}' not found"))
}

/// Issues a new HMAC secret; the old one keeps working for the grace period (default 24 h).
#[utoipa::path(post, path = "/tenants/{tenant_id}/secret:rotate", tag = "tenants",
    params(("tenant_id" = String, Path)), request_body(content = Option<RotateSecret>),
    responses((status = 200, body = SecretRotated), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<Json<SecretRotated>, ApiError> {
    auth.require_tenant(Scope::TenantsWrite, &tenant_id)?;
    if state.store.get_tenant(&tenant_id).await?.is_none() {
        return Err(tenant_not_found(&tenant_id));
    }
    // No body, or JSON `null`, is the default grace period.
    let req: RotateSecret = if body.is_empty() || body.value().is_ok_and(|v| v.is_null()) {
        RotateSecret::default()
    } else {
        body.parse()?
    };
    let grace = match req.grace_period_seconds {
        None => state.config.secret_grace,
        Some(s) if s <= 30 * 86_400 => SignedDuration::from_secs(s as i64),
        Some(_) => {
            return Err(ApiError::Validation(
                "grace_period_seconds: must be at most 2592000 (30 days)".into(),
            ));
        }
    };
    let until = Timestamp::now()
        .checked_add(grace)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let secret = new_secret();
    let tenant = state
        .store
        .rotate_tenant_secret(&tenant_id, secret.clone(), until)
        .await?
        .ok_or_else(|| tenant_not_found(&tenant_id))?;
    tracing::info!(tenant_id = %tenant.tenant_id, "tenant secret rotated");
    state.credentials_changed();
    Ok(Json(SecretRotated {
        tenant_id: tenant.tenant_id.to_string(),
        hmac_secret: secret,
        previous_secret_expires_at: until,
    }))
}
