//! What `/openapi.json` says beyond what the handlers' annotations generate: how each route
//! authenticates (security schemes, so generated clients and checkers know), and, for the few rules a
//! schema cannot state, a note on the operation (`x-server-checked`) saying what only the server can
//! check (rules relative to its clock, to the caller's own credential, or to the meaning of a config).

use serde_json::{Value, json};
use utoipa::openapi::OpenApi;

/// Operations with rules beyond their schema, and what those rules are.
const SERVER_CHECKED: &[(&str, &str, &str)] = &[
    (
        "post",
        "/tenants/{tenant_id}/leaderboards",
        "the config's meaning: field paths, scoring expressions, which timeframe needs which fields, conditions; a body tenant_id must equal the path's",
    ),
    (
        "post",
        "/api-keys",
        "expires_at must be in the future and no later than the creator's own expiry; scopes and tenants must be ones the creator holds (403)",
    ),
    (
        "post",
        "/v1/events",
        "occurred_at must lie within the dedupe horizon (PHOENIX_DEDUPE_HORIZON, default 7 days) and at most 5 minutes ahead of the server's clock",
    ),
    (
        "get",
        "/v1/leaderboards/{id}",
        "cursor must be a next_cursor this API returned for the same window",
    ),
    (
        "get",
        "/v1/leaderboards/{id}/windows/{window_id}",
        "cursor must be a next_cursor this API returned for the same window",
    ),
    (
        "get",
        "/tenants/{tenant_id}/leaderboards/{leaderboard_id}/windows/{window_id}",
        "cursor must be a next_cursor this API returned for the same window",
    ),
    (
        "post",
        "/tenants/{tenant_id}/reward-rules",
        "leaderboard_id must name a leaderboard of the tenant that is not all_time; a coupon reward's campaign_id must name a campaign of the tenant; top_percent has at most two decimals",
    ),
    (
        "patch",
        "/tenants/{tenant_id}/reward-rules/{rule_id}",
        "a coupon reward's campaign_id must name a campaign of the tenant; top_percent has at most two decimals",
    ),
    (
        "post",
        "/tenants/{tenant_id}/reward-rules/{rule_id}/settle",
        "window_id must name an ended window of the rule's leaderboard (409 while it has not ended)",
    ),
    (
        "get",
        "/tenants/{tenant_id}/reward-rules/{rule_id}/preview",
        "cursor must be a next_cursor this API returned for the same window",
    ),
    (
        "get",
        "/tenants/{tenant_id}/grants",
        "cursor must be a next_cursor this API returned",
    ),
    (
        "post",
        "/tenants/{tenant_id}/coupon-campaigns",
        "expires_at must be in the future and after starts_at; a shared code must be unique in the tenant without regard to case or dashes (409); rewards may not hold a coupon reward",
    ),
    (
        "patch",
        "/tenants/{tenant_id}/coupon-campaigns/{campaign_id}",
        "expires_at must be in the future and after the campaign's starts_at",
    ),
    (
        "get",
        "/tenants/{tenant_id}/coupon-campaigns/{campaign_id}/codes",
        "cursor must be a next_cursor this API returned",
    ),
    (
        "get",
        "/tenants/{tenant_id}/coupon-redemptions",
        "cursor must be a next_cursor this API returned",
    ),
    (
        "get",
        "/v1/rewards",
        "cursor must be a next_cursor this API returned",
    ),
    (
        "post",
        "/tenants/{tenant_id}/achievements",
        "metric must be a valid metric (an expression of the scoring language for sum, an IANA zone for streak); step thresholds must increase; a coupon reward's campaign_id must name a campaign of the tenant",
    ),
    (
        "patch",
        "/tenants/{tenant_id}/achievements/{achievement_id}",
        "steps must repeat the existing thresholds unchanged and may only add higher ones, increasing; a coupon reward's campaign_id must name a campaign of the tenant",
    ),
    (
        "post",
        "/tenants/{tenant_id}/webhooks",
        "url must have a host and no credentials, and must not name a loopback, private or link-local address or localhost unless the server allows it",
    ),
    (
        "patch",
        "/tenants/{tenant_id}/webhooks/{webhook_id}",
        "url must have a host and no credentials, and must not name a loopback, private or link-local address or localhost unless the server allows it",
    ),
    (
        "get",
        "/tenants/{tenant_id}/webhooks/{webhook_id}/deliveries",
        "cursor must be a next_cursor this API returned",
    ),
];

/// Routes that need no credential.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/livez" | "/readyz" | "/metrics" | "/openapi.json" | "/auth/config" | "/auth/login"
    ) || path == "/auth/refresh"
        || path.starts_with("/console")
}

/// The finished document, as JSON (refined after generation, since some of it, such as `minItems` on
/// an array of any items, does not survive a round trip through the generator's types).
pub fn refine(doc: &OpenApi) -> Value {
    let Ok(mut value) = serde_json::to_value(doc) else {
        return json!({});
    };
    add_security(&mut value);
    for (method, path, rule) in SERVER_CHECKED {
        if let Some(op) = value.pointer_mut(&format!(
            "/paths/{}/{method}",
            path.replace('~', "~0").replace('/', "~1")
        )) && let Some(op) = op.as_object_mut()
        {
            op.insert("x-server-checked".into(), json!(rule));
            let note = format!("\n\nChecked by the server only: {rule}.");
            match op.get_mut("description") {
                Some(Value::String(d)) => d.push_str(&note),
                _ => {
                    op.insert("description".into(), json!(note.trim_start()));
                }
            }
        }
    }
    // A batch: 1 to 1000 items of any shape; each is validated on its own and answered in `results`.
    if let Some(events) = value.pointer_mut("/components/schemas/BatchIn/properties/events") {
        *events = json!({
            "type": "array", "minItems": 1, "maxItems": 1000, "items": {},
            "description": "Each item is validated like the body of POST /v1/events (schema EventIn); one that is not valid is `rejected` in `results` with its error, and the others still count."
        });
    }
    // A webhook's event types are distinct.
    for schema in ["CreateWebhook", "PatchWebhook"] {
        if let Some(events) =
            value.pointer_mut(&format!("/components/schemas/{schema}/properties/events"))
            && let Some(events) = events.as_object_mut()
        {
            events.insert("uniqueItems".into(), json!(true));
        }
    }
    // PATCH must change something.
    if let Some(patch) = value.pointer_mut("/components/schemas/PatchLeaderboard")
        && let Some(patch) = patch.as_object_mut()
    {
        patch.insert("minProperties".into(), json!(1));
    }
    value
}

fn add_security(doc: &mut Value) {
    let schemes = json!({
        "admin_bearer": {
            "type": "http", "scheme": "bearer",
            "description": "An Admin credential: an API key (pk_...), an admin JWT signed with a key, a console access token (phx_at_...), or the admin secret"
        },
        "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                    "description": "An API key or the admin secret"},
        "console_cookie": {"type": "apiKey", "in": "cookie", "name": "phoenix-access-token",
                           "description": "The console's session; writes also need X-CSRF-Token"},
        "tenant_hmac": {"type": "apiKey", "in": "header", "name": "X-Signature",
                        "description": "A tenant HMAC signature, with X-Tenant-Id and X-Timestamp (SPEC §3.5)"},
        "tenant_jwt": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "A tenant JWT (HS256 with the tenant's secret; scope limits it), or the admin secret with X-Tenant-Id"
        }
    });
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        components.insert("securitySchemes".into(), schemes);
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let security = if is_public(path) {
            json!([])
        } else if path.starts_with("/v1/") {
            json!([{"tenant_jwt": []}])
        } else {
            json!([{"admin_bearer": []}, {"api_key": []}, {"console_cookie": []}, {"tenant_hmac": []}])
        };
        if let Some(item) = item.as_object_mut() {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                op.insert("security".into(), security.clone());
            }
        }
    }
}
