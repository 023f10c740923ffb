//! Tenants (SPEC §3.1): creation returns the HMAC secret once, reads never show it, duplicates conflict,
//! and rotation keeps the old secret working for the grace period.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn creating_a_tenant_returns_its_secret_once() {
    let app = spawn_app().await;
    let reply = app
        .admin_json(
            Method::POST,
            "/tenants",
            &json!({"tenant_id": "tenant-prod-001", "name": "Production"}),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["tenant_id"], "tenant-prod-001");
    assert_eq!(reply.body["name"], "Production");
    assert!(reply.body["created_at"].is_string(), "{}", reply.text);
    let secret = reply.body["hmac_secret"].as_str().expect("hmac_secret");
    assert!(secret.len() >= 32, "a long secret: {secret}");

    let list = app.admin_get("/tenants").await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    let tenant = &list.body["tenants"][0];
    assert_eq!(
        tenant,
        &json!({"tenant_id": "tenant-prod-001", "name": "Production",
                "created_at": reply.body["created_at"], "unscoped_tokens": "allow",
                "rate_limits": {"events_per_second": null, "reads_per_second": null,
                                "player_requests_per_second": null}})
    );
    assert!(!list.text.contains(secret), "GET /tenants leaks the secret");
    assert!(!list.text.contains("hmac_secret"), "{}", list.text);

    let one = app.admin_get("/tenants/tenant-prod-001").await;
    one.expect(StatusCode::OK);
    assert_eq!(&one.body, tenant);
    assert!(
        !one.text.contains(secret),
        "GET /tenants/{{id}} leaks the secret"
    );
}

#[tokio::test]
async fn a_duplicate_tenant_is_409_and_an_unknown_one_404() {
    let app = spawn_app().await;
    app.create_tenant("dup").await;
    let reply = app
        .admin_json(
            Method::POST,
            "/tenants",
            &json!({"tenant_id": "dup", "name": "Again"}),
        )
        .await;
    reply.expect_error(StatusCode::CONFLICT, "CONFLICT");
    app.admin_get("/tenants/nope").await.expect_not_found();
}

#[tokio::test]
async fn a_key_sees_only_its_tenants() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    app.create_tenant("t-b").await;
    let (_, key) = app.create_key(&["tenants:read"], &["t-a"]).await;
    let list = send(with_key(app.get("/tenants"), &key)).await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["tenants"][0]["tenant_id"], "t-a");
    send(with_key(app.get("/tenants/t-b"), &key))
        .await
        .expect_forbidden();
}

#[tokio::test]
async fn a_rotated_secret_keeps_the_old_one_working_for_the_grace_period() {
    let app = spawn_app().await;
    let old = app.create_tenant("t-rot").await;
    let reply = send(admin(
        app.request(Method::POST, "/tenants/t-rot/secret:rotate"),
    ))
    .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["tenant_id"], "t-rot");
    let new = reply.body["hmac_secret"]
        .as_str()
        .expect("hmac_secret")
        .to_owned();
    assert_ne!(new, old);
    let until: jiff::Timestamp = reply.body["previous_secret_expires_at"]
        .as_str()
        .expect("previous_secret_expires_at")
        .parse()
        .expect("an RFC 3339 timestamp");
    let default_grace = jiff::SignedDuration::from_hours(24);
    assert!(until > jiff::Timestamp::now() + default_grace - jiff::SignedDuration::from_mins(5));

    for (query, secret) in [("?with=old", &old), ("?with=new", &new)] {
        let path = format!("/health{query}");
        let reply = send(signed(&app, Method::GET, &path, None, "t-rot", secret)).await;
        reply.expect(StatusCode::OK);
    }
    // The new secret was not leaked into reads either.
    let read = app.admin_get("/tenants/t-rot").await;
    assert!(!read.text.contains(&new) && !read.text.contains(&old));
}

#[tokio::test]
async fn a_rotation_without_grace_ends_the_old_secret_at_once() {
    let app = spawn_app().await;
    let old = app.create_tenant("t-now").await;
    let reply = app
        .admin_json(
            Method::POST,
            "/tenants/t-now/secret:rotate",
            &json!({"grace_period_seconds": 0}),
        )
        .await;
    reply.expect(StatusCode::OK);
    let new = reply.body["hmac_secret"]
        .as_str()
        .expect("hmac_secret")
        .to_owned();
    send(signed(
        &app,
        Method::GET,
        "/health?with=old",
        None,
        "t-now",
        &old,
    ))
    .await
    .expect_unauthorized();
    send(signed(
        &app,
        Method::GET,
        "/health?with=new",
        None,
        "t-now",
        &new,
    ))
    .await
    .expect(StatusCode::OK);
    // Rotating an unknown tenant is 404; a bad grace is 400 naming it.
    send(admin(
        app.request(Method::POST, "/tenants/nope/secret:rotate"),
    ))
    .await
    .expect_not_found();
    let message = app
        .admin_json(
            Method::POST,
            "/tenants/t-now/secret:rotate",
            &json!({"grace_period_seconds": -1}),
        )
        .await
        .expect_validation();
    assert!(message.contains("grace_period_seconds"), "{message}");
}
