//! The web console (SPEC §8), served by the binary itself at `/console`: one page, its ES modules and a
//! stylesheet, compiled in with `include_str!` so a plain `cargo build` carries it (no CDN, no network,
//! no front-end build step). The page talks to the Admin API with the session cookies and watches
//! leaderboards over the WebSocket.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_CSS: &str = include_str!("assets/app.css");

/// The console's modules by file name: the only scripts `/console/js/{file}` serves (a request never
/// names a path on disk).
const SCRIPTS: &[(&str, &str)] = &[
    ("main.js", include_str!("assets/js/main.js")),
    ("state.js", include_str!("assets/js/state.js")),
    ("router.js", include_str!("assets/js/router.js")),
    ("api.js", include_str!("assets/js/api.js")),
    ("ui.js", include_str!("assets/js/ui.js")),
    ("forms.js", include_str!("assets/js/forms.js")),
    ("login.js", include_str!("assets/js/login.js")),
    ("tenants.js", include_str!("assets/js/tenants.js")),
    ("keys.js", include_str!("assets/js/keys.js")),
    ("leaderboards.js", include_str!("assets/js/leaderboards.js")),
    (
        "leaderboard-form.js",
        include_str!("assets/js/leaderboard-form.js"),
    ),
    ("leaderboard.js", include_str!("assets/js/leaderboard.js")),
    ("live.js", include_str!("assets/js/live.js")),
    ("windows.js", include_str!("assets/js/windows.js")),
    ("users.js", include_str!("assets/js/users.js")),
    ("rewards.js", include_str!("assets/js/rewards.js")),
    ("rule.js", include_str!("assets/js/rule.js")),
    ("grants.js", include_str!("assets/js/grants.js")),
    ("coupons.js", include_str!("assets/js/coupons.js")),
    ("campaign.js", include_str!("assets/js/campaign.js")),
    ("achievements.js", include_str!("assets/js/achievements.js")),
    ("achievement.js", include_str!("assets/js/achievement.js")),
    ("webhooks.js", include_str!("assets/js/webhooks.js")),
    ("webhook.js", include_str!("assets/js/webhook.js")),
];

/// The page may load only its own scripts and style and talk only to this origin.
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

/// One of the console's JavaScript modules (`main.js` imports the others).
#[utoipa::path(get, path = "/console/js/{file}", tag = "console",
    params(("file" = String, Path, description = "a module of the console, e.g. `main.js`",
            pattern = "^[a-z-]+\\.js$")),
    responses((status = 200, description = "a JavaScript module", content_type = "text/javascript"),
              (status = 404, description = "no such module", body = crate::error::ErrorEnvelope)))]
pub async fn script(Path(file): Path<String>) -> Result<Response, ApiError> {
    SCRIPTS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, body)| asset(body, "text/javascript; charset=utf-8"))
        .ok_or_else(|| ApiError::NotFound(format!("the console has no script '{file}'")))
}

/// The console's stylesheet.
#[utoipa::path(get, path = "/console/app.css", tag = "console",
    responses((status = 200, description = "CSS", content_type = "text/css")))]
pub async fn stylesheet() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::SCRIPTS;

    /// Every module another module imports is served, so the page never asks for a 404.
    #[test]
    fn every_imported_module_is_in_the_allowlist() {
        for (name, body) in SCRIPTS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .split("from './")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or_else(|| {
                        panic!("{name}: an import not of the form from './x.js': {line}")
                    });
                assert!(
                    SCRIPTS.iter().any(|(n, _)| *n == target),
                    "{name} imports {target}, which is not served"
                );
            }
        }
    }
}
