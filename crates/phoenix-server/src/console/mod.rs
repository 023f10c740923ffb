//! The web console (SPEC §8), served by the binary itself at `/console`: one page, a script and a
//! stylesheet, compiled in with `include_str!` so a plain `cargo build` carries it (no CDN, no network,
//! no front-end build step). The page talks to the Admin API with the session cookies and watches
//! leaderboards over the WebSocket.

use crate::state::AppState;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The page may load only its own script and style and talk only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(index_slash))
        .routes(routes!(script))
        .routes(routes!(stylesheet))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response()
}

/// The web console's page (no authentication: it signs in through `/auth/login`).
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 200, description = "the console's HTML page", content_type = "text/html")))]
pub async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// The same page under `/console/`.
#[utoipa::path(get, path = "/console/", tag = "console",
    responses((status = 200, description = "the console's HTML page", content_type = "text/html")))]
pub async fn index_slash() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// The console's script.
#[utoipa::path(get, path = "/console/app.js", tag = "console",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
pub async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// The console's stylesheet.
#[utoipa::path(get, path = "/console/app.css", tag = "console",
    responses((status = 200, description = "CSS", content_type = "text/css")))]
pub async fn stylesheet() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}
