//! Request bodies: one middleware buffers every body up to the configured limit (413 beyond it) and keeps
//! the bytes for the HMAC signature check; handlers parse JSON only after auth and permission checks, so
//! the order of checks of SPEC §10 holds and messages name the offending field.

use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// The buffered request body, available to extractors (the HMAC check) and handlers.
#[derive(Clone, Debug, Default)]
pub struct RawBody(pub Bytes);

/// Middleware: buffers the body within `limit` bytes.
pub(crate) async fn buffer_body(limit: usize, req: Request, next: Next) -> Response {
    let too_large =
        || ApiError::PayloadTooLarge(format!("request body exceeds {limit} bytes")).into_response();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    parts.extensions.insert(RawBody(bytes.clone()));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Extractor for a JSON body that is parsed on demand with [`JsonBody::parse`].
pub struct JsonBody {
    content_type: Option<String>,
    bytes: Bytes,
}

impl<S: Send + Sync> FromRequestParts<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBody {
            content_type: content_type(&parts.headers),
            bytes: parts
                .extensions
                .get::<RawBody>()
                .map(|b| b.0.clone())
                .unwrap_or_default(),
        })
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_ascii_lowercase())
}

impl JsonBody {
    /// Checks the content type and deserializes, naming the field on failure (400, never 415/422).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        self.check()?;
        let mut de = serde_json::Deserializer::from_slice(&self.bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(describe)?;
        de.end().map_err(|e| {
            ApiError::Validation(format!("invalid JSON: {}", strip_location(&e.to_string())))
        })?;
        Ok(value)
    }

    /// Parses the body as a JSON value (content type checked). No field paths are tracked, since a
    /// value can only fail on syntax; this is the ingest hot path.
    pub fn value(&self) -> Result<serde_json::Value, ApiError> {
        self.check()?;
        serde_json::from_slice(&self.bytes).map_err(|e| {
            ApiError::Validation(format!("invalid JSON: {}", strip_location(&e.to_string())))
        })
    }

    /// A JSON content type and a non-empty body.
    fn check(&self) -> Result<(), ApiError> {
        let is_json = self.content_type.as_deref().is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
        if !is_json {
            return Err(ApiError::Validation(
                "Content-Type must be application/json".into(),
            ));
        }
        if self.is_empty() {
            return Err(ApiError::Validation(
                "request body must be a JSON object".into(),
            ));
        }
        Ok(())
    }

    /// True when the request carried no body at all.
    pub fn is_empty(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }
}

fn strip_location(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

fn describe(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.inner();
    let msg = strip_location(&inner.to_string()).to_owned();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::Validation(format!("invalid JSON: {msg}"));
    }
    if path == "." || path.is_empty() {
        ApiError::Validation(msg)
    } else {
        ApiError::Validation(format!("{path}: {msg}"))
    }
}
