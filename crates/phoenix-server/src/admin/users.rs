//! Console users (SPEC §3.6), managed by console ADMINs or holders of the `admin` scope: create with a
//! password (stored as an argon2id hash only), list, read, change role or password (a new password ends
//! the user's sessions), delete (ends them too). The last ADMIN can be neither demoted nor deleted.

use crate::auth::AdminAuth;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorEnvelope};
use crate::session::hash_password;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use phoenix_store::model::{NewUser, Role, User, UserPatch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{username, role, created_at, updated_at}`; never the password or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub username: String,
    #[schema(example = "VIEWER")]
    pub role: &'static str,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            username: u.username,
            role: u.role.as_str(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub total: usize,
    pub users: Vec<UserView>,
}

/// Body of `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(example = "ops-alice", pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub username: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024, example = "correct horse battery")]
    pub password: String,
    #[schema(value_type = RoleDoc, example = "VIEWER")]
    pub role: String,
}

/// A console user's role.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Role)]
#[allow(dead_code)]
pub enum RoleDoc {
    #[serde(rename = "ADMIN")]
    Admin,
    #[serde(rename = "VIEWER")]
    Viewer,
}

/// Body of `PATCH /users/{username}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    /// 8 to 1024 characters; ends the user's sessions.
    #[schema(min_length = 8, max_length = 1024, nullable = false)]
    pub password: Option<String>,
    #[schema(value_type = Option<RoleDoc>, nullable = false)]
    pub role: Option<String>,
}

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

/// `username`: 1–64 of letters, digits, `_`, `-`, `.`, `@`.
pub fn check_username(username: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Validation(
            "username: must be 1-64 letters, digits, '_', '-', '.' or '@'".into(),
        ))
    }
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "password: must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )))
    }
}

fn parse_role(raw: &str) -> Result<Role, ApiError> {
    Role::parse(raw).ok_or_else(|| {
        ApiError::Validation(format!("role: must be 'ADMIN' or 'VIEWER' (got '{raw}')"))
    })
}

fn not_found(username: &str) -> ApiError {
    ApiError::NotFound(format!("user '{username}' not found"))
}

/// Lists console users.
#[utoipa::path(get, path = "/users", tag = "users",
    responses((status = 200, body = UserList), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope)))]
pub async fn list_users(
    State(state): State<AppState>,
    auth: AdminAuth,
) -> Result<Json<UserList>, ApiError> {
    auth.require_user_admin()?;
    let users: Vec<UserView> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(UserList {
        total: users.len(),
        users,
    }))
}

/// Creates a console user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
pub async fn create_user(
    State(state): State<AppState>,
    auth: AdminAuth,
    body: JsonBody,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    auth.require_user_admin()?;
    let req: CreateUser = body.parse()?;
    check_username(&req.username)?;
    check_password(&req.password)?;
    let role = parse_role(&req.role)?;
    if state.store.get_user(&req.username).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "user '{}' already exists",
            req.username
        )));
    }
    let password_hash = hash_password(req.password).await?;
    let user = state
        .store
        .create_user(NewUser {
            username: req.username,
            role,
            password_hash,
        })
        .await?;
    tracing::info!(username = %user.username, role = user.role.as_str(), "user created");
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Reads one console user.
#[utoipa::path(get, path = "/users/{username}", tag = "users",
    params(("username" = String, Path)),
    responses((status = 200, body = UserView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get_user(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(username): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    auth.require_user_admin()?;
    let user = state
        .store
        .get_user(&username)
        .await?
        .ok_or_else(|| not_found(&username))?;
    Ok(Json(user.into()))
}

/// Changes a user's `role` and/or `password`; a new password ends the user's sessions.
#[utoipa::path(patch, path = "/users/{username}", tag = "users",
    params(("username" = String, Path)), request_body = PatchUser,
    responses((status = 200, body = UserView), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn patch_user(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(username): Path<String>,
    body: JsonBody,
) -> Result<Json<UserView>, ApiError> {
    auth.require_user_admin()?;
    if state.store.get_user(&username).await?.is_none() {
        return Err(not_found(&username));
    }
    let req: PatchUser = body.parse()?;
    let role = req.role.as_deref().map(parse_role).transpose()?;
    // "An ADMIN always remains" is decided by the store, under its write gate (cluster-wide).
    let password_hash = match req.password {
        Some(password) => {
            check_password(&password)?;
            Some(hash_password(password).await?)
        }
        None => None,
    };
    let user = state
        .store
        .update_user(
            &username,
            UserPatch {
                role,
                password_hash,
            },
        )
        .await?
        .ok_or_else(|| not_found(&username))?;
    tracing::info!(username = %user.username, role = user.role.as_str(), "user updated");
    state.credentials_changed();
    Ok(Json(user.into()))
}

/// Deletes a user and ends their sessions.
#[utoipa::path(delete, path = "/users/{username}", tag = "users",
    params(("username" = String, Path)),
    responses((status = 200, body = UserView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope)))]
pub async fn delete_user(
    State(state): State<AppState>,
    auth: AdminAuth,
    Path(username): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    auth.require_user_admin()?;
    if state.store.get_user(&username).await?.is_none() {
        return Err(not_found(&username));
    }
    // The last ADMIN is refused by the store (409), under its write gate.
    let user = state
        .store
        .delete_user(&username)
        .await?
        .ok_or_else(|| not_found(&username))?;
    tracing::info!(username = %user.username, "user deleted");
    state.credentials_changed();
    Ok(Json(user.into()))
}
