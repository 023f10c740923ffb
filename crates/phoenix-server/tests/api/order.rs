//! The order of checks (SPEC §10): route (404/405), authentication (401), permission (403), existence
//! (404), validation (400). Each test sends a request that fails several checks and expects the first.

use crate::support::*;
use reqwest::{Method, StatusCode};

const BAD_JSON: &str = r#"{"leaderboard_id": "#;

#[tokio::test]
async fn an_unknown_route_is_404_even_without_credentials() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/tenants/t/leaderboards/lb/extra",
        "/v1/nothing-here",
    ] {
        let reply = send(app.get(path)).await;
        reply.expect_not_found();
    }
    send(admin(app.get("/nope"))).await.expect_not_found();
}

#[tokio::test]
async fn a_wrong_method_is_405_without_credentials() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::PUT, "/health"),
        (Method::DELETE, "/tenants"),
        (Method::PUT, "/tenants/t/leaderboards/lb"),
        (Method::POST, "/leaderboards"),
        (Method::GET, "/tenants/t/secret:rotate"),
    ] {
        let reply = send(app.request(method.clone(), path)).await;
        reply.expect_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    }
}

#[tokio::test]
async fn no_credential_with_a_bad_body_is_401_not_400() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    for path in [
        "/tenants/t-a/leaderboards",
        "/tenants/nope/leaderboards",
        "/tenants",
    ] {
        let request = app
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(BAD_JSON);
        send(request).await.expect_unauthorized();
        // No Content-Type either.
        send(app.request(Method::POST, path).body("junk"))
            .await
            .expect_unauthorized();
    }
}

#[tokio::test]
async fn a_wrong_scope_with_a_bad_body_is_403_not_400() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    app.create_tenant("t-b").await;
    let (_, reader) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let (_, writer_a) = app.create_key(&["leaderboards:write"], &["t-a"]).await;
    for (key, path) in [
        (&reader, "/tenants/t-a/leaderboards"),
        (&writer_a, "/tenants/t-b/leaderboards"),
        (&reader, "/tenants"),
        (&reader, "/api-keys"),
    ] {
        let request = app
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(BAD_JSON);
        send(with_key(request, key)).await.expect_forbidden();
    }
}

#[tokio::test]
async fn an_unknown_tenant_or_leaderboard_is_404_before_body_validation() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    for (method, path) in [
        (Method::POST, "/tenants/nope/leaderboards"),
        (Method::PATCH, "/tenants/t-a/leaderboards/nope"),
        (Method::PATCH, "/tenants/nope/leaderboards/nope"),
        (Method::POST, "/tenants/nope/secret:rotate"),
    ] {
        let request = app
            .request(method, path)
            .header("content-type", "application/json")
            .body(BAD_JSON);
        send(admin(request)).await.expect_not_found();
    }
    // And a scoped key that lacks the tenant gets 403 before existence is checked.
    let (_, key) = app.create_key(&["leaderboards:write"], &["t-a"]).await;
    let request = app
        .request(Method::POST, "/tenants/nope/leaderboards")
        .header("content-type", "application/json")
        .body(BAD_JSON);
    send(with_key(request, &key)).await.expect_forbidden();
}
