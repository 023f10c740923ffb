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
use phoenix_store::seal::random_hex;
use serde::Deserialize;
use utoipa::ToSchema;

/// Body of `POST /tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(example = "tenant-prod-001")]
    pub tenant_id: String,
    #[schema(example = "Production")]
    pub name: String,
}

/// Optional body of a rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the current secret keeps working (default 86400 = 24 h; 0 ends it at once).
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
            tenant_id: tenant.tenant_id.to_string(),
            name: tenant.name,
            created_at: tenant.created_at,
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
    let req: RotateSecret = if body.is_empty() {
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
