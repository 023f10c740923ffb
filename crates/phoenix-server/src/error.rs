//! The server's one error type, mapped to the envelope of SPEC §2 in exactly one place. Handlers and
//! extractors return `ApiError`; a middleware also wraps any response that some layer produced without
//! the envelope (a framework rejection, a panic), so no client ever sees another error shape.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every failure a client can see.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// The detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
}

/// The envelope body: `{"error": {"code", "message", "status"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "VALIDATION_ERROR",
    "message": "events[3].actor.user_id: is required", "status": 400}}))]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One of the codes of SPEC §2, e.g. `VALIDATION_ERROR`.
    pub code: String,
    pub message: String,
    pub status: u16,
}

/// Marks a response that already carries the envelope, so the guard leaves it alone.
#[derive(Clone, Copy)]
pub(crate) struct Enveloped;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        code_for(self.status())
    }

    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code().to_owned(),
                message: self.to_string(),
                status: self.status().as_u16(),
            },
        }
    }
}

/// The SPEC §2 code for a status; statuses outside the table map to the nearest listed code.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        429 => "RATE_LIMITED",
        503 => "UNAVAILABLE",
        400..=499 => "VALIDATION_ERROR",
        _ => "INTERNAL_ERROR",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail = %detail, "internal error");
        }
        let mut response = (self.status(), Json(self.envelope())).into_response();
        if let ApiError::RateLimited { retry_after, .. } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        response.extensions_mut().insert(Enveloped);
        response
    }
}

impl From<phoenix_core::ValidationError> for ApiError {
    fn from(e: phoenix_core::ValidationError) -> Self {
        ApiError::Validation(e.to_string())
    }
}

impl From<phoenix_store::StoreError> for ApiError {
    fn from(e: phoenix_store::StoreError) -> Self {
        match e {
            phoenix_store::StoreError::Conflict(m) => ApiError::Conflict(m),
            phoenix_store::StoreError::Unavailable(m) => {
                tracing::error!(detail = %m, "store unavailable");
                ApiError::Unavailable("the store is unavailable; retry later".into())
            }
        }
    }
}

/// Middleware: replaces the body of any error response that lacks the envelope (framework rejections,
/// default 404/405/413 bodies) with the envelope for its status.
pub(crate) async fn envelope_guard(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Enveloped>().is_some()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Keep the framework's own wording where it is short text; it names the problem.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && !s.starts_with('{'));
    let message = match status {
        StatusCode::NOT_FOUND => "no such route".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_owned(),
        s if s.is_server_error() => "internal error".to_owned(),
        _ => text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
    };
    let envelope = ErrorEnvelope {
        error: ErrorBody {
            code: code_for(status).to_owned(),
            message,
            status: status.as_u16(),
        },
    };
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
