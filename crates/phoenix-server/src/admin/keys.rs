//! Admin API keys (SPEC §3.3): create (plaintext `pk_...` returned once), list, revoke (effective at
//! once). A key can only grant scopes and tenants its creator holds. Keys are found by a SHA-256 hash;
//! the plaintext is kept sealed because admin JWTs are signed with it.

use super::views::{KeyCreated, KeyList, KeyView};
use crate::auth::AdminAuth;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use phoenix_core::access::{Scope, Scopes, TenantAccess};
use phoenix_store::model::NewApiKey;
use phoenix_store::seal::{random_bytes, random_hex};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// Body of `POST /api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Not blank.
    #[schema(
        example = "ci-deployer",
        min_length = 1,
        max_length = 200,
        pattern = "\\S"
    )]
    pub name: String,
    /// At least one; a key can grant only scopes its creator holds.
    #[schema(example = json!(["leaderboards:read", "leaderboards:write"]),
        schema_with = scopes_schema)]
    pub scopes: Vec<String>,
    /// Tenant ids, or `["*"]` (alone) for every tenant; a key can grant only tenants its creator holds.
    #[schema(example = json!(["tenant-prod-001"]), schema_with = tenant_ids_schema)]
    pub tenant_ids: Vec<String>,
    /// RFC 3339, in the future and no later than the creator's own expiry (the default). Checked by
    /// the server against its clock.
    #[schema(value_type = Option<String>, format = DateTime, nullable = false)]
    pub expires_at: Option<String>,
}

/// One or more of the scopes of SPEC §3.3 (from the one list the server checks against).
fn scopes_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names)),
        )
        .min_items(Some(1))
        .into()
}

/// `["*"]`, or one or more tenant ids.
fn tenant_ids_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let every = ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["*"])),
        )
        .min_items(Some(1))
        .max_items(Some(1));
    let some = ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9_-]{1,64}$")),
        )
        .min_items(Some(1))
        .unique_items(true);
    utoipa::openapi::schema::Schema::OneOf(OneOfBuilder::new().item(every).item(some).build())
}

/// A UUID (version 4) for the key's public id.
fn new_key_id() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Whether the caller may see (and so revoke) `key`: it must hold every scope and tenant of the key
/// (SPEC §3.3), so a key cannot list or revoke one that holds more than it does.
fn covered(auth: &AdminAuth, key: &phoenix_store::model::ApiKey) -> bool {
    auth.tenants.covers(&key.tenant_ids) && auth.scopes.covers(&key.scopes)
}

/// Lists the keys the caller can see (never their plaintext).
#[utoipa::path(get, path = "/api-keys", tag = "api-keys",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope)))]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: AdminAuth,
) -> Result<Json<KeyList>, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let keys: Vec<KeyView> = state
        .store
        .list_api_keys()
        .await?
        .into_iter()
        .filter(|k| covered(&auth, k))
        .map(Into::into)
        .collect();
    Ok(Json(KeyList {
        total: keys.len(),
        keys,
    }))
}

/// Creates a key; the response's `key` is the plaintext, shown this once only.
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = CreateKey,
    responses((status = 201, body = KeyCreated), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn create_key(
    State(state): State<AppState>,
    auth: AdminAuth,
    body: JsonBody,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
    auth.require(Scope::KeysWrite)?;
    let req: CreateKey = body.parse()?;
    super::tenants::check_name("name", &req.name, 200)?;
    let scopes = Scopes::parse("scopes", &req.scopes)?;
    let tenant_ids = TenantAccess::parse("tenant_ids", &req.tenant_ids)?;
    let expires_at = match &req.expires_at {
        None => None,
        Some(raw) => {
            let at: Timestamp = raw.parse().map_err(|_| {
                ApiError::Validation(format!("expires_at: '{raw}' is not an RFC 3339 timestamp"))
            })?;
            if at <= Timestamp::now() {
                return Err(ApiError::Validation(
                    "expires_at: must be in the future".into(),
                ));
            }
            Some(at)
        }
    };
    if !auth.scopes.covers(&scopes) {
        return Err(ApiError::Forbidden(
            "a key can only grant scopes its creator holds".into(),
        ));
    }
    if !auth.tenants.covers(&tenant_ids) {
        return Err(ApiError::Forbidden(
            "a key can only grant tenants its creator holds".into(),
        ));
    }
    // A key that expires cannot outlive its creator: no later than the creator's expiry, and that
    // expiry when none is asked for.
    let expires_at = match (expires_at, auth.grant_expires_at) {
        (Some(at), Some(limit)) if at > limit => {
            return Err(ApiError::Forbidden(format!(
                "a key can only expire no later than its creator, which expires at {limit}"
            )));
        }
        (None, limit) => limit,
        (at, _) => at,
    };
    let plaintext = format!("pk_{}", random_hex::<24>());
    let key = state
        .store
        .create_api_key(NewApiKey {
            key_id: new_key_id(),
            name: req.name,
            scopes,
            tenant_ids,
            expires_at,
            key_hash: Sha256::digest(plaintext.as_bytes()).into(),
            plaintext: plaintext.clone(),
        })
        .await?;
    tracing::info!(key_id = %key.key_id, "api key created");
    Ok((
        StatusCode::CREATED,
        Json(KeyCreated {
            record: key.into(),
            key: plaintext,
        }),
    ))
}

/// Revokes a key, effective at once; returns the revoked record.
#[utoipa::path(delete, path = "/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = String, Path)),
    responses((status = 200, body = KeyView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let not_found = || ApiError::NotFound(format!("api key '{key_id}' not found"));
    let key = state
        .store
        .get_api_key(&key_id)
        .await?
        .ok_or_else(not_found)?;
    if !covered(&auth, &key) {
        return Err(ApiError::Forbidden(
            "a key can only revoke keys whose scopes and tenants it holds".into(),
        ));
    }
    let revoked = state
        .store
        .revoke_api_key(&key.key_id)
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(key_id = %revoked.key_id, "api key revoked");
    state.credentials_changed();
    Ok(Json(revoked.into()))
}
