//! Assembling and running the server: which gateway serves on which listener, the middleware stack
//! (request ids, tracing, metrics, body limit, error envelope, panic guard), and graceful shutdown
//! through one cancellation token.

use crate::error::ApiError;
use crate::listener::{self, ConnectionLimits, Connections};
use crate::ops::{self, OpenApiJson};
use crate::state::{AppState, GatewayListen, ServerConfig};
use crate::{admin, body, error, ingest, query};
use axum::Router;
use axum::extract::Request;
use axum::http::HeaderName;
use axum::middleware;
use phoenix_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// The three gateways of SPEC §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    Admin,
    Ingestion,
    Query,
}

impl Gateway {
    const ALL: [Gateway; 3] = [Gateway::Admin, Gateway::Ingestion, Gateway::Query];

    pub fn env_var(self) -> &'static str {
        match self {
            Gateway::Admin => "PHOENIX_ADMIN_LISTEN",
            Gateway::Ingestion => "PHOENIX_INGESTION_LISTEN",
            Gateway::Query => "PHOENIX_QUERY_LISTEN",
        }
    }

    fn setting(self, config: &ServerConfig) -> GatewayListen {
        match self {
            Gateway::Admin => config.admin_listen,
            Gateway::Ingestion => config.ingestion_listen,
            Gateway::Query => config.query_listen,
        }
    }

    /// The gateway's documented routes.
    fn routes(self) -> OpenApiRouter<AppState> {
        match self {
            Gateway::Admin => admin::router(),
            Gateway::Ingestion => ingest::router(),
            Gateway::Query => query::router(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Phoenix",
        description = "Real-time leaderboards and rewards for games."
    ),
    components(schemas(crate::error::ErrorEnvelope))
)]
struct ApiDoc;

/// The OpenAPI document of every route of every gateway, as served at `/openapi.json`.
pub fn openapi() -> serde_json::Value {
    let mut all = OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(ops::router());
    for gateway in Gateway::ALL {
        all = all.merge(gateway.routes());
    }
    let (_, doc) = all.split_for_parts();
    crate::apidoc::refine(&doc)
}

/// Builds the router for one listener serving `gateways` (plus the operations endpoints).
fn listener_router(
    state: &AppState,
    gateways: &[Gateway],
    doc: &OpenApiJson,
    body: &body::BodyLimits,
) -> Router {
    let mut routes = ops::router();
    for gateway in gateways {
        routes = routes.merge(gateway.routes());
    }
    let (router, _) = routes.split_for_parts();
    let limits = body.clone();
    let request_id = HeaderName::from_static("x-request-id");
    router
        .route_layer(middleware::from_fn(ops::tag_route))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::Extension(doc.clone()))
        .layer(middleware::from_fn(move |req, next| {
            body::buffer_body(limits.clone(), req, next)
        }))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_while_draining,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard_development_mode,
        ))
        .layer(middleware::from_fn(ops::track_metrics))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path only: query strings may carry tokens later (`?access_token=`).
                    tracing::info_span!("request", id = %id, method = %req.method(),
                        path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(request_id, ops::RequestIds::new()))
        .layer(middleware::from_fn(ops::plain_request_id))
        .layer(middleware::from_fn(no_store))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".into()).into_response_envelope()
        }))
        .layer(middleware::from_fn(error::envelope_guard))
        .with_state(state.clone())
}

/// Development mode answers without credentials, so it must not be reachable from a web page: a page
/// can make the browser send requests to 127.0.0.1, and with DNS rebinding even as a same-origin page
/// of its own name. Only a loopback `Host` and no `Origin` or this server's own pass (SPEC §3.6).
async fn guard_development_mode(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    let probe = matches!(path, "/livez" | "/readyz" | "/metrics");
    if !state.config.auth_enabled && !probe {
        let headers = req.headers();
        if !state.config.allow_unauthenticated_public && !crate::session::loopback_host(headers) {
            return axum::response::IntoResponse::into_response(ApiError::Forbidden(
                "development mode answers only requests addressed to a loopback Host".into(),
            ));
        }
        if !crate::auth::same_origin(headers, &state) {
            return axum::response::IntoResponse::into_response(ApiError::Forbidden(
                "development mode answers only its own pages (Origin)".into(),
            ));
        }
    }
    next.run(req).await
}

/// `Cache-Control: no-store` on every response that does not say otherwise: API answers carry secrets
/// and tokens (tenant secrets, keys, login), and none of them should sit in a shared or browser cache.
async fn no_store(req: Request, next: middleware::Next) -> axum::response::Response {
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    response
}

async fn refuse_while_draining(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    let probe = path == "/livez" || path == "/readyz" || path == "/metrics";
    if state.is_draining() && path != "/livez" && path != "/readyz" {
        return axum::response::IntoResponse::into_response(ApiError::Unavailable(
            "server is shutting down".into(),
        ));
    }
    if state.config.consistent_reads
        && !probe
        && let Err(e) = state.store.barrier().await
    {
        return axum::response::IntoResponse::into_response(ApiError::from(e));
    }
    next.run(req).await
}

impl ApiError {
    fn into_response_envelope(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

/// One bound listener and what it serves.
struct Bound {
    name: &'static str,
    listener: TcpListener,
    router: Router,
}

/// A built server: its listeners are bound (so tests can bind port 0 and read the address) but it is not
/// yet serving.
pub struct Application {
    bound: Vec<Bound>,
    state: AppState,
    connections: Arc<Connections>,
}

/// Why the server could not start; names the configuration variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: cannot listen on {addr}: {source}")]
pub struct BindError {
    pub variable: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Connections the kernel may queue before they are accepted. A burst of connects (a flood of idle
/// sockets, or many clients reconnecting at once) beyond the queue makes the kernel drop the SYNs of
/// the next ones, whose clients then retry only a second later: a probe would see a one-second answer.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(variable: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let fail = |source| BindError {
        variable,
        addr,
        source,
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(fail)?;
    // As std and tokio do: a restarted server can bind while old connections linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(LISTEN_BACKLOG).map_err(fail)
}

impl Application {
    pub async fn build(config: ServerConfig, store: Arc<dyn Store>) -> Result<Self, BindError> {
        // Install the metrics recorder before the first request is counted.
        ops::prometheus();
        let state = AppState::new(store, config);
        // A cluster's nodes share their login throttle and rate-limit spending through Redis.
        if let Some(redis) = state.store.shared() {
            crate::shared::start(&state, redis).await;
        }
        // Credentials another node changes reach this node's sockets through the store's log.
        if let Some(mut changes) = state.store.watch_credentials() {
            let (forward, shutdown) = (state.clone(), state.shutdown_signal());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        changed = changes.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            forward.credentials_changed();
                        }
                    }
                }
            });
        }
        let doc = OpenApiJson(Arc::new(
            serde_json::to_string(&openapi()).unwrap_or_else(|_| "{}".to_owned()),
        ));
        let config = state.config.clone();
        let body = body::BodyLimits::new(
            config.max_body_bytes,
            config.body_timeout,
            config.body_buffer_bytes,
        );
        let connections = Connections::new(ConnectionLimits {
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
        });
        let combined: Vec<Gateway> = Gateway::ALL
            .into_iter()
            .filter(|g| g.setting(&config) == GatewayListen::Combined)
            .collect();
        let mut bound = vec![Bound {
            name: "combined",
            listener: bind("PHOENIX_LISTEN", config.listen)?,
            router: listener_router(&state, &combined, &doc, &body),
        }];
        for gateway in Gateway::ALL {
            if let GatewayListen::Own(addr) = gateway.setting(&config) {
                bound.push(Bound {
                    name: match gateway {
                        Gateway::Admin => "admin",
                        Gateway::Ingestion => "ingestion",
                        Gateway::Query => "query",
                    },
                    listener: bind(gateway.env_var(), addr)?,
                    router: listener_router(&state, &[gateway], &doc, &body),
                });
            }
        }
        Ok(Application {
            bound,
            state,
            connections,
        })
    }

    /// The combined listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.bound[0]
            .listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    /// Every listener's name (`combined`, `admin`, `ingestion`, `query`) and address.
    pub fn addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        self.bound
            .iter()
            .filter_map(|b| b.listener.local_addr().ok().map(|a| (b.name, a)))
            .collect()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` fires, then stops accepting, lets in-flight requests finish (up to
    /// `drain_timeout`), and returns.
    pub async fn run(self, shutdown: CancellationToken, drain_timeout: Duration) {
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(
            Arc::clone(&self.connections).reap_until(shutdown.clone()),
        ));
        tasks.push(tokio::spawn(maintain_store(
            Arc::clone(&self.state.store),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(crate::deliver::run(
            self.state.clone(),
            shutdown.clone(),
        )));
        for bound in self.bound {
            tasks.push(tokio::spawn(listener::serve(
                bound.name,
                bound.listener,
                bound.router,
                Arc::clone(&self.connections),
                shutdown.clone(),
            )));
        }
        shutdown.cancelled().await;
        self.state.start_draining();
        tracing::info!("shutting down: finishing in-flight requests");
        // WebSockets are no longer the listeners' connections once upgraded: wait for their 1001 too.
        let all = async {
            futures_join(tasks).await;
            self.connections.all_closed().await;
            self.state.sockets_closed().await;
        };
        if tokio::time::timeout(drain_timeout, all).await.is_err() {
            tracing::warn!("in-flight requests did not finish in time; stopping anyway");
        }
    }
}

/// Runs the store's housekeeping (ended windows to cold storage) about once a second until shutdown.
async fn maintain_store(store: Arc<dyn Store>, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        match store.maintain().await {
            Ok(()) => failing = false,
            // Logged once per run of failures; the next round retries.
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %e, "store housekeeping failed; retrying");
            }
            Err(_) => {}
        }
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}
