//! Operations endpoints, unauthenticated: `/livez`, `/readyz`, `/metrics` (Prometheus text: requests by
//! route and status, latency histogram) and `/openapi.json` (OpenAPI 3.1 generated from the handlers).

use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::Extension;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const REQUESTS: &str = "phoenix_http_requests_total";
const LATENCY: &str = "phoenix_http_request_duration_seconds";

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The rendered OpenAPI document, shared with the handler that serves it.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(livez))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/livez", tag = "operations", responses((status = 200, body = Status)))]
pub async fn livez() -> axum::Json<Status> {
    axum::Json(Status { status: "ok" })
}

/// Readiness: the store is reachable and the server is not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Status), (status = 503, body = ErrorEnvelope)))]
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Status>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::Unavailable("server is shutting down".into()));
    }
    if !state.store.is_ready() {
        return Err(ApiError::Unavailable("store is unavailable".into()));
    }
    Ok(axum::Json(Status { status: "ready" }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let stats = state.store.stats();
    metrics::counter!("phoenix_events_accepted_total").absolute(stats.events_accepted);
    metrics::counter!("phoenix_events_duplicate_total").absolute(stats.events_duplicate);
    metrics::counter!("phoenix_events_scored_total").absolute(stats.events_scored);
    metrics::counter!("phoenix_events_late_total").absolute(stats.events_late);
    metrics::gauge!("phoenix_dedupe_entries").set(stats.dedupe_entries as f64);
    metrics::gauge!("phoenix_dedupe_pieces").set(stats.dedupe_pieces as f64);
    metrics::gauge!("phoenix_dedupe_piece_bytes").set(stats.dedupe_piece_bytes as f64);
    metrics::counter!("phoenix_windows_moved_cold_total").absolute(stats.windows_moved_cold);
    metrics::gauge!("phoenix_cold_cache_bytes").set(stats.cold_cache_bytes as f64);
    let r = stats.rewards;
    metrics::counter!("phoenix_settlements_total").absolute(r.settlements);
    metrics::counter!("phoenix_settlements_automatic_total").absolute(r.automatic_settlements);
    // With the count above, the mean time from a window's end to its automatic settlement.
    metrics::counter!("phoenix_settlement_lag_seconds_sum")
        .absolute(r.settlement_lag_ms_sum / 1000);
    metrics::counter!("phoenix_grants_total", "source" => "reward_rule")
        .absolute(r.grants_reward_rule);
    metrics::counter!("phoenix_grants_total", "source" => "coupon").absolute(r.grants_coupon);
    metrics::counter!("phoenix_grants_total", "source" => "achievement")
        .absolute(r.grants_achievement);
    metrics::counter!("phoenix_grant_claims_total").absolute(r.claims);
    metrics::counter!("phoenix_grant_voids_total").absolute(r.voids);
    metrics::counter!("phoenix_coupon_redemptions_total").absolute(r.redemptions);
    metrics::counter!("phoenix_achievement_completions_total").absolute(r.completions);
    metrics::counter!("phoenix_webhook_messages_total").absolute(r.webhook_messages);
    metrics::counter!("phoenix_webhook_deliveries_total", "outcome" => "delivered")
        .absolute(r.deliveries_delivered);
    metrics::counter!("phoenix_webhook_deliveries_total", "outcome" => "retried")
        .absolute(r.deliveries_retried);
    metrics::counter!("phoenix_webhook_deliveries_total", "outcome" => "failed")
        .absolute(r.deliveries_failed);
    // With the delivered count above, the mean time from a message's making to its delivery.
    metrics::counter!("phoenix_webhook_delivery_lag_seconds_sum")
        .absolute(r.delivery_lag_ms_sum / 1000);
    metrics::gauge!("phoenix_webhook_outbox_pending").set(r.outbox_depth as f64);
    // Events waiting to be folded into achievement progress (bounded: beyond 100 000, ingestion waits).
    metrics::gauge!("phoenix_achievement_queue_events").set(r.achievement_queue as f64);
    if let Some(c) = stats.cluster {
        // A cluster node: how far behind the log's head it is (positions and seconds), and how long
        // its appends take (with the count, the mean).
        metrics::gauge!("phoenix_log_applied_position").set(c.applied as f64);
        metrics::gauge!("phoenix_log_head_position").set(c.head as f64);
        metrics::gauge!("phoenix_log_lag_positions").set(c.head.saturating_sub(c.applied) as f64);
        metrics::gauge!("phoenix_log_lag_seconds").set(c.lag_ms as f64 / 1000.0);
        metrics::counter!("phoenix_log_appends_total").absolute(c.appends);
        metrics::gauge!("phoenix_log_append_seconds_sum").set(c.append_us_sum as f64 / 1e6);
        // The cluster's newest snapshot (what a starting node loads): its age bounds the replay.
        if let Some(ms) = c.snapshot_age_ms {
            metrics::gauge!("phoenix_snapshot_age_seconds").set(ms as f64 / 1000.0);
        }
    }
    let mut response = prometheus().render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi(Extension(doc): Extension<OpenApiJson>) -> Response {
    let mut response = doc.0.as_str().to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(LATENCY.to_owned()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already global (e.g. an embedding program installed one): keep a
            // private one so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// The route template a request matched, carried on the response for the metrics middleware.
#[derive(Clone)]
struct RouteLabel(MatchedPath);

/// Route layer: records which route template matched.
pub(crate) async fn tag_route(req: Request, next: Next) -> Response {
    let label = req.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(req).await;
    if let Some(label) = label {
        response.extensions_mut().insert(RouteLabel(label));
    }
    response
}

/// The method as a metric label: one of a fixed set whatever the client sends, so labels cannot grow.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One route's metric handles for one method, by status.
struct RouteMetrics {
    method: &'static str,
    latency: Histogram,
    by_status: Vec<(u16, Counter)>,
}

thread_local! {
    /// Metric handles by route, per worker thread: registering labels costs allocations and a shared
    /// registry lookup, which every request would otherwise pay.
    static HANDLES: RefCell<HashMap<String, Vec<RouteMetrics>>> = RefCell::new(HashMap::new());
}

/// Outer middleware: counts every request by route and status and observes its latency.
pub(crate) async fn track_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let response = next.run(req).await;
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0.as_str());
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    HANDLES.with_borrow_mut(|handles| {
        if !handles.contains_key(route) {
            handles.insert(route.to_owned(), Vec::new());
        }
        let Some(by_method) = handles.get_mut(route) else {
            return;
        };
        let index = match by_method.iter().position(|m| m.method == method) {
            Some(i) => i,
            None => {
                by_method.push(RouteMetrics {
                    latency: metrics::histogram!(LATENCY, "method" => method,
                        "route" => route.to_owned()),
                    method,
                    by_status: Vec::new(),
                });
                by_method.len() - 1
            }
        };
        let m = &mut by_method[index];
        m.latency.record(elapsed);
        match m.by_status.iter().find(|(s, _)| *s == status) {
            Some((_, counter)) => counter.increment(1),
            None => {
                let counter = metrics::counter!(REQUESTS, "method" => method,
                    "route" => route.to_owned(), "status" => status.to_string());
                counter.increment(1);
                m.by_status.push((status, counter));
            }
        }
    });
    response
}

/// The longest client-given `X-Request-Id` kept.
const MAX_REQUEST_ID: usize = 64;

/// Middleware: a client's `X-Request-Id` is kept only if short and plain (letters, digits, `-_.:`);
/// anything else is dropped, so a fresh id is made, and logs and headers never carry what a client
/// smuggled in.
pub(crate) async fn plain_request_id(mut req: Request, next: Next) -> Response {
    let plain = req.headers().get("x-request-id").map(|v| {
        let bytes = v.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if plain == Some(false) || req.headers().get_all("x-request-id").iter().count() > 1 {
        req.headers_mut().remove("x-request-id");
    }
    next.run(req).await
}

/// Request ids for requests that come without one: a random per-process prefix and a counter. Unique,
/// and unlike a random UUID per request, no system call on every request.
#[derive(Clone)]
pub(crate) struct RequestIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        RequestIds {
            prefix: format!("{:016x}", h.finish()).into(),
            next: Arc::default(),
        }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}
