//! Request bodies: one middleware buffers every body up to the configured limit (413 beyond it), within a
//! time limit and a process-wide memory budget (bodies arrive before authentication), and keeps the
//! bytes for the HMAC signature check; handlers parse JSON only after auth and permission checks, so
//! the order of checks of SPEC §10 holds and messages name the offending field.

use crate::error::ApiError;
use crate::listener::ConnPhase;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The buffered request body, available to extractors (the HMAC check) and handlers.
#[derive(Clone, Debug, Default)]
pub struct RawBody(pub Bytes);

/// What one request body may cost: its size, how long it may take to arrive, and a share of the
/// memory that all bodies being received together may hold.
#[derive(Clone)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Bytes of bodies held at once, process-wide: bodies arrive before authentication, so without a
    /// budget many slow unauthenticated uploads could fill memory.
    pub budget: Arc<Semaphore>,
}

impl BodyLimits {
    pub fn new(max_bytes: usize, timeout: Duration, budget_bytes: usize) -> Self {
        BodyLimits {
            max_bytes,
            timeout,
            budget: Arc::new(Semaphore::new(
                budget_bytes.clamp(max_bytes, Semaphore::MAX_PERMITS),
            )),
        }
    }
}

/// How long a body waits for room in a full budget before the request is refused with 503.
const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Why a body could not be read.
enum BodyError {
    TooLarge,
    TimedOut,
    /// The memory budget stayed full until the deadline.
    Busy,
    /// The client went away or sent a malformed body.
    Broken,
}

/// Reads the whole body within the limits, holding budget for every byte of memory it takes until the
/// request is served. Chunks are copied into one buffer as they come, so a body of many tiny chunks
/// costs what it weighs, and the budget is charged for the buffer's capacity, not only its contents.
async fn read_body(
    limits: &BodyLimits,
    declared: Option<usize>,
    mut body: Body,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut charged = 0usize;
    // The first chunk as it came (most bodies are one chunk: no copy), then a buffer.
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyError::TimedOut),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        total += data.len();
        if total > limits.max_bytes {
            return Err(BodyError::TooLarge);
        }
        // What memory holds after this chunk: the chunk alone, or the buffer at its new capacity,
        // doubling from what has arrived (never more than the declared length or the limit), so a
        // client is charged for what it sent, not for what it announced.
        let needed = if first.is_none() && buffer.is_empty() {
            data.len()
        } else if buffer.capacity() >= total {
            buffer.capacity()
        } else {
            let cap = declared.unwrap_or(limits.max_bytes).min(limits.max_bytes);
            (buffer.capacity() * 2).max(total * 2).min(cap).max(total)
        };
        if needed > charged {
            let more = u32::try_from(needed - charged).map_err(|_| BodyError::TooLarge)?;
            // A full budget is a burst or an attack: wait a little, not the whole body time.
            let wait_until = deadline.min(tokio::time::Instant::now() + BUDGET_WAIT);
            let permit = match tokio::time::timeout_at(
                wait_until,
                Arc::clone(&limits.budget).acquire_many_owned(more),
            )
            .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) | Err(_) => return Err(BodyError::Busy),
            };
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            charged = needed;
        }
        if first.is_none() && buffer.is_empty() {
            first = Some(data);
        } else {
            if buffer.capacity() < total {
                // Exactly the capacity charged (`reserve` may take more than it is asked for).
                let mut bigger = BytesMut::with_capacity(needed);
                if let Some(head) = first.take() {
                    bigger.extend_from_slice(&head);
                }
                bigger.extend_from_slice(&buffer);
                buffer = bigger;
            }
            buffer.extend_from_slice(&data);
        }
    }
    let bytes = match first {
        Some(only) => only,
        None => buffer.freeze(),
    };
    Ok((bytes, held))
}

/// Middleware: buffers the body within the limits (413 beyond the size; 400 when it does not arrive in
/// time; 503 while the servers' body budget is spent).
pub(crate) async fn buffer_body(limits: BodyLimits, req: Request, next: Next) -> Response {
    let limit = limits.max_bytes;
    let too_large =
        || ApiError::PayloadTooLarge(format!("request body exceeds {limit} bytes")).into_response();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return close_after(too_large());
    }
    let (mut parts, body) = req.into_parts();
    let phase = parts.extensions.get::<ConnPhase>().cloned();
    // A WebSocket upgrade or a body-less GET reads nothing here.
    let declared = declared.and_then(|n| usize::try_from(n).ok());
    let read = read_body(&limits, declared, body).await;
    if let Some(phase) = phase {
        phase.body_received();
    }
    let (bytes, budget) = match read {
        Ok(read) => read,
        Err(BodyError::TooLarge) => return close_after(too_large()),
        Err(BodyError::TimedOut) => {
            return close_after(
                ApiError::Validation(format!(
                    "the request body did not arrive within {} s",
                    limits.timeout.as_secs()
                ))
                .into_response(),
            );
        }
        Err(BodyError::Busy) => {
            metrics::counter!("phoenix_body_budget_refused_total").increment(1);
            let mut response =
                ApiError::Unavailable("the server is busy receiving other requests; retry".into())
                    .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return close_after(response);
        }
        Err(BodyError::Broken) => {
            return close_after(
                ApiError::Validation("the request body could not be read".into()).into_response(),
            );
        }
    };
    parts.extensions.insert(RawBody(bytes.clone()));
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    drop(budget);
    response
}

/// A refused body may still be on its way: close the connection rather than read the rest.
fn close_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
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

    /// For routes that take no body: none, or `{}` (whatever the content type).
    pub fn require_none(&self) -> Result<(), ApiError> {
        if self.is_empty() {
            return Ok(());
        }
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&self.bytes) {
            Ok(map) if map.is_empty() => Ok(()),
            Ok(map) => Err(ApiError::Validation(format!(
                "{}: unknown field (this route takes no body, or {{}})",
                map.keys().next().map_or("", String::as_str)
            ))),
            Err(_) => Err(ApiError::Validation(
                "this route takes no body, or {}".into(),
            )),
        }
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
