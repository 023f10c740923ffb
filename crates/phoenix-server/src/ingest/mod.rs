//! The Ingestion gateway (SPEC §5): `POST /v1/events` and `POST /v1/events/batch` (alias
//! `/v1/events/bulk`). Events are validated field by field, then handed to the store, which answers only
//! once they are durable; the answer says whether each was new or a duplicate.

use crate::auth::{EventWriter, TenantAuth};
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody, ErrorEnvelope};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::Timestamp;
use phoenix_core::event::{Event, EventRules};
use phoenix_store::IngestStatus;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most events in one batch.
pub const MAX_BATCH: usize = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest_one))
        .routes(routes!(ingest_batch))
        .routes(routes!(ingest_bulk))
}

/// The answer for one event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventResult {
    pub event_id: Option<String>,
    /// `accepted`, `duplicate` or (in a batch) `rejected`.
    #[schema(example = "accepted")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The answer for a batch: counts and per-event results in request order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"accepted": 1, "duplicates": 1, "rejected": 1, "results": [
    {"event_id": "evt_1", "status": "accepted"},
    {"event_id": "evt_2", "status": "duplicate"},
    {"event_id": "evt_3", "status": "rejected", "error": {"code": "VALIDATION_ERROR",
        "message": "events[2].occurred_at: is more than 5 minutes in the future", "status": 400}}
]}))]
pub struct BatchResult {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<EventResult>,
}

/// An event as posted (documentation only; the handler validates field by field). `occurred_at` must
/// also lie within the dedupe horizon and at most 5 minutes ahead of the server's clock (checked by the
/// server); a body `tenant_id` is ignored.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct EventIn {
    #[schema(example = "evt_123", pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    event_id: String,
    #[schema(
        rename = "type",
        example = "match.completed",
        min_length = 1,
        max_length = 128
    )]
    event_type: String,
    actor: ActorIn,
    #[schema(example = "2026-01-01T12:00:00Z", format = DateTime)]
    occurred_at: String,
    #[schema(value_type = Object, example = json!({"score": 50}))]
    attrs: Value,
}

/// Who the event is about.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ActorIn {
    #[schema(example = "user-123", min_length = 1, max_length = 128)]
    user_id: String,
    #[schema(value_type = Option<Object>, example = json!({"region": "eu"}))]
    metadata: Option<Value>,
}

/// `{"events": [...]}` (documentation only): 1 to 1000 events. Each is validated on its own, like
/// `POST /v1/events`; one that is not valid is `rejected` in `results` and the others still count.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BatchIn {
    /// (Its constraints are stated in `apidoc`.)
    events: Vec<Value>,
}

impl EventWriter {
    /// 403 for an event this writer may not write; an `events:write:self` event is deduplicated per
    /// player (SPEC §3.2).
    fn admit(&self, event: &mut Event) -> Result<(), ApiError> {
        match self {
            EventWriter::Anyone => Ok(()),
            EventWriter::OnlySelf(sub) if event.user_id() == sub => {
                event.dedupe_per_player();
                Ok(())
            }
            EventWriter::OnlySelf(_) => Err(ApiError::Forbidden(
                "actor.user_id: an 'events:write:self' token writes only events of its own 'sub'"
                    .into(),
            )),
        }
    }
}

fn rules(state: &AppState) -> EventRules {
    EventRules {
        now: Timestamp::now(),
        dedupe_horizon: state.config.dedupe_horizon,
    }
}

fn status_str(status: IngestStatus) -> &'static str {
    match status {
        IngestStatus::Accepted => "accepted",
        IngestStatus::Duplicate => "duplicate",
    }
}

/// Ingests one event: 202 once it is durable, `accepted` or `duplicate`.
#[utoipa::path(post, path = "/v1/events", tag = "ingestion", request_body = EventIn,
    responses((status = 202, body = EventResult), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub async fn ingest_one(
    State(state): State<AppState>,
    auth: TenantAuth,
    body: JsonBody,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let writer = auth.event_writer()?;
    state.rate_limiter.check_events(&auth, 1)?;
    let mut event = Event::from_value(body.value()?, rules(&state))?;
    let event_id = event.event_id.clone();
    writer.admit(&mut event)?;
    let statuses = state
        .store
        .ingest(auth.tenant_id.as_str(), vec![event])
        .await?;
    let status = statuses
        .first()
        .copied()
        .ok_or_else(|| ApiError::Internal("the store answered no status".into()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(EventResult {
            event_id: Some(event_id),
            status: status_str(status),
            error: None,
        }),
    ))
}

/// Ingests up to 1000 events (1 MiB); one bad event does not sink the others.
#[utoipa::path(post, path = "/v1/events/batch", tag = "ingestion", request_body = BatchIn,
    responses((status = 202, body = BatchResult), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub async fn ingest_batch(
    State(state): State<AppState>,
    auth: TenantAuth,
    body: JsonBody,
) -> Result<(StatusCode, Json<BatchResult>), ApiError> {
    batch(state, auth, body).await
}

/// The same as `/v1/events/batch`, under the name existing clients use.
#[utoipa::path(post, path = "/v1/events/bulk", tag = "ingestion", request_body = BatchIn,
    responses((status = 202, body = BatchResult), (status = 400, body = ErrorEnvelope),
              (status = 401, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub async fn ingest_bulk(
    State(state): State<AppState>,
    auth: TenantAuth,
    body: JsonBody,
) -> Result<(StatusCode, Json<BatchResult>), ApiError> {
    batch(state, auth, body).await
}

async fn batch(
    state: AppState,
    auth: TenantAuth,
    body: JsonBody,
) -> Result<(StatusCode, Json<BatchResult>), ApiError> {
    let writer = auth.event_writer()?;
    // Every event of the batch counts, before any is validated (SPEC §8, §10).
    let parsed = body.value();
    let count = parsed
        .as_ref()
        .ok()
        .and_then(|v| v.get("events"))
        .and_then(Value::as_array)
        .map_or(1, Vec::len);
    state.rate_limiter.check_events(&auth, count)?;
    let mut value = parsed?;
    let items = match value.as_object_mut().map(|o| o.remove("events")) {
        None => {
            return Err(ApiError::Validation(
                "body must be a JSON object with an 'events' array".into(),
            ));
        }
        Some(None | Some(Value::Null)) => {
            return Err(ApiError::Validation("events: is required".into()));
        }
        Some(Some(Value::Array(items))) => items,
        Some(Some(_)) => return Err(ApiError::Validation("events: expected an array".into())),
    };
    if items.is_empty() {
        return Err(ApiError::Validation("events: must not be empty".into()));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::Validation(format!(
            "events: at most {MAX_BATCH} events per batch (got {})",
            items.len()
        )));
    }
    let rules = rules(&state);
    let mut results: Vec<EventResult> = Vec::with_capacity(items.len());
    let mut valid: Vec<Event> = Vec::with_capacity(items.len());
    // Which result each valid event answers.
    let mut slots: Vec<usize> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let event_id = item
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let admitted = Event::from_value(item, rules)
            .map_err(|e| ApiError::from(e.at_index(i).within("events")))
            .and_then(|mut event| writer.admit(&mut event).map(|()| event));
        match admitted {
            Ok(event) => {
                slots.push(i);
                valid.push(event);
                results.push(EventResult {
                    event_id,
                    status: "accepted",
                    error: None,
                });
            }
            Err(e) => {
                let error = e.envelope().error;
                results.push(EventResult {
                    event_id,
                    status: "rejected",
                    error: Some(error),
                });
            }
        }
    }
    let rejected = results.len() - valid.len();
    let accepted_or_duplicate = valid.len();
    let mut duplicates = 0;
    if !valid.is_empty() {
        let statuses = state.store.ingest(auth.tenant_id.as_str(), valid).await?;
        for (slot, status) in slots.iter().zip(statuses) {
            results[*slot].status = status_str(status);
            if status == IngestStatus::Duplicate {
                duplicates += 1;
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchResult {
            accepted: accepted_or_duplicate - duplicates,
            duplicates,
            rejected,
            results,
        }),
    ))
}
