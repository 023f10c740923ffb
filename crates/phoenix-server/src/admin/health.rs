//! `GET /health`: the seeds' Admin health check; any valid credential passes.

use crate::auth::AdminAuth;
use crate::error::ErrorEnvelope;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// How the caller authenticated: `api_key`, `admin_jwt`, `tenant_hmac`, `admin_secret`.
    pub auth: &'static str,
}

/// Admin health check: 200 when the credential is valid.
#[utoipa::path(get, path = "/health", tag = "admin",
    responses((status = 200, body = Health), (status = 401, body = ErrorEnvelope)))]
pub async fn health(auth: AdminAuth) -> Json<Health> {
    Json(Health {
        status: "ok",
        auth: auth.principal.kind(),
    })
}
