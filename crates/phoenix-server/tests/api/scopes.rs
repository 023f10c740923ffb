//! What a tenant JWT may do (SPEC §3.2): the `scope` claim, `events:write:self` with per-player
//! deduplication, and the tenant's `unscoped_tokens` setting; `PATCH /tenants/{t}` (SPEC §3.1).

use crate::support::*;
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn event(id: &str, user: &str, score: f64) -> Value {
    json!({"event_id": id, "type": "match", "actor": {"user_id": user},
           "occurred_at": Timestamp::now().to_string(), "attrs": {"score": score}})
}

async fn post_event(app: &TestApp, token: &str, body: &Value) -> Reply {
    send(
        app.json(Method::POST, "/v1/events", body)
            .bearer_auth(token),
    )
    .await
}

async fn read(app: &TestApp, token: &str) -> Reply {
    send(app.get("/v1/leaderboards").bearer_auth(token)).await
}

#[tokio::test]
async fn the_scope_claim_limits_what_a_token_may_do() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-scope").await;
    let reader = tenant_token(
        &secret,
        "t-scope",
        Some("p1"),
        Some("leaderboards:read rewards:redeem"),
    );
    read(&app, &reader).await.expect(StatusCode::OK);
    let message = post_event(&app, &reader, &event("e1", "p1", 1.0))
        .await
        .expect_forbidden();
    assert!(message.contains("events:write"), "{message}");

    let writer = tenant_token(&secret, "t-scope", None, Some("events:write"));
    post_event(&app, &writer, &event("e2", "p9", 1.0))
        .await
        .expect(StatusCode::ACCEPTED);
    let with_sub = tenant_token(&secret, "t-scope", Some("server"), Some("events:write"));
    read(&app, &with_sub).await.expect_forbidden();

    // An empty scope grants nothing; unknown values are ignored.
    let empty = tenant_token(&secret, "t-scope", Some("p1"), Some(""));
    read(&app, &empty).await.expect_forbidden();
    post_event(&app, &empty, &event("e3", "p1", 1.0))
        .await
        .expect_forbidden();
    let odd = tenant_token(
        &secret,
        "t-scope",
        Some("p1"),
        Some("telepathy leaderboards:read"),
    );
    read(&app, &odd).await.expect(StatusCode::OK);

    // Without `scope`: everything, as in the seeds.
    let unscoped = tenant_token(&secret, "t-scope", Some("p1"), None);
    read(&app, &unscoped).await.expect(StatusCode::OK);
    post_event(&app, &unscoped, &event("e4", "p2", 1.0))
        .await
        .expect(StatusCode::ACCEPTED);

    // The WebSocket needs leaderboards:read too.
    app.create_leaderboard("t-scope", "daily").await;
    let url = format!(
        "{}/v1/leaderboards/daily/ws?access_token={}",
        app.base.replacen("http://", "ws://", 1),
        tenant_token(&secret, "t-scope", Some("p1"), Some("events:write"))
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403);
        }
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn a_player_token_writes_only_its_own_events_deduplicated_per_player() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-self").await;
    app.create_leaderboard("t-self", "daily").await;
    let player = tenant_token(&secret, "t-self", Some("alice"), Some("events:write:self"));
    let server = tenant_token(&secret, "t-self", None, Some("events:write"));

    // Its own event: accepted. Someone else's: 403, or rejected with a 403 in a batch.
    let own = post_event(&app, &player, &event("shared-id", "alice", 5.0)).await;
    own.expect(StatusCode::ACCEPTED);
    assert_eq!(own.body["status"], "accepted");
    assert_eq!(own.body["event_id"], "shared-id");
    post_event(&app, &player, &event("forged", "bob", 1000.0))
        .await
        .expect_forbidden();
    let batch = send(
        app.json(
            Method::POST,
            "/v1/events/batch",
            &json!({"events": [event("b1", "alice", 1.0), event("b2", "bob", 1.0)]}),
        )
        .bearer_auth(&player),
    )
    .await;
    batch.expect(StatusCode::ACCEPTED);
    assert_eq!(batch.body["accepted"], 1, "{}", batch.text);
    assert_eq!(batch.body["rejected"], 1);
    assert_eq!(batch.body["results"][1]["status"], "rejected");
    assert_eq!(batch.body["results"][1]["error"]["code"], "FORBIDDEN");
    assert_eq!(batch.body["results"][1]["error"]["status"], 403);

    // The player's id does not take the game server's: the same id from the server is new.
    let from_server = post_event(&app, &server, &event("shared-id", "carol", 1.0)).await;
    from_server.expect(StatusCode::ACCEPTED);
    assert_eq!(from_server.body["status"], "accepted");
    // And a retry by the player is a duplicate, also after a restart.
    let retry = post_event(&app, &player, &event("shared-id", "alice", 5.0)).await;
    assert_eq!(retry.body["status"], "duplicate");
    let app = app.restart().await;
    let retry = post_event(&app, &player, &event("shared-id", "alice", 5.0)).await;
    assert_eq!(retry.body["status"], "duplicate", "{}", retry.text);
    let again = post_event(&app, &server, &event("shared-id", "carol", 1.0)).await;
    assert_eq!(again.body["status"], "duplicate");

    // Without `sub` an events:write:self token writes nothing.
    let nobody = tenant_token(&secret, "t-self", None, Some("events:write:self"));
    post_event(&app, &nobody, &event("n1", "alice", 1.0))
        .await
        .expect_forbidden();
}

#[tokio::test]
async fn a_tenant_can_refuse_unscoped_tokens() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-deny").await;
    let unscoped = tenant_token(&secret, "t-deny", Some("p1"), None);
    let scoped = tenant_token(&secret, "t-deny", Some("p1"), Some("leaderboards:read"));
    read(&app, &unscoped).await.expect(StatusCode::OK);
    let patched = app
        .admin_json(
            Method::PATCH,
            "/tenants/t-deny",
            &json!({"unscoped_tokens": "deny"}),
        )
        .await;
    patched.expect(StatusCode::OK);
    assert_eq!(patched.body["unscoped_tokens"], "deny");
    let message = read(&app, &unscoped).await.expect_forbidden();
    assert!(message.contains("scope"), "{message}");
    read(&app, &scoped).await.expect(StatusCode::OK);
    app.admin_json(
        Method::PATCH,
        "/tenants/t-deny",
        &json!({"unscoped_tokens": "allow"}),
    )
    .await
    .expect(StatusCode::OK);
    read(&app, &unscoped).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn patching_a_tenant_changes_what_it_names_and_rate_limits_need_admin() {
    let app = spawn_app().await;
    app.create_tenant("t-patch").await;
    let created = app.admin_get("/tenants/t-patch").await;
    assert_eq!(created.body["unscoped_tokens"], "allow");
    assert_eq!(
        created.body["rate_limits"],
        json!({"events_per_second": null, "reads_per_second": null,
               "player_requests_per_second": null})
    );
    let renamed = app
        .admin_json(
            Method::PATCH,
            "/tenants/t-patch",
            &json!({"name": "Renamed"}),
        )
        .await;
    renamed.expect(StatusCode::OK);
    assert_eq!(renamed.body["name"], "Renamed");
    assert_eq!(renamed.body["unscoped_tokens"], "allow");

    let message = app
        .admin_json(Method::PATCH, "/tenants/t-patch", &json!({"colour": "red"}))
        .await
        .expect_validation();
    assert!(message.starts_with("colour"), "{message}");
    let message = app
        .admin_json(
            Method::PATCH,
            "/tenants/t-patch",
            &json!({"rate_limits": {"events_per_second": -1}}),
        )
        .await
        .expect_validation();
    assert!(
        message.starts_with("rate_limits.events_per_second"),
        "{message}"
    );
    app.admin_json(
        Method::PATCH,
        "/tenants/t-patch",
        &json!({"unscoped_tokens": "sometimes"}),
    )
    .await
    .expect_validation();
    app.admin_json(Method::PATCH, "/tenants/nope", &json!({"name": "x"}))
        .await
        .expect_not_found();

    // tenants:write may rename but not change its own rate limits.
    let (_, writer) = app.create_key(&["tenants:write"], &["t-patch"]).await;
    let patch = |body: Value| {
        send(with_key(
            app.json(Method::PATCH, "/tenants/t-patch", &body),
            &writer,
        ))
    };
    patch(json!({"name": "By key"}))
        .await
        .expect(StatusCode::OK);
    patch(json!({"rate_limits": {"events_per_second": 1000000}}))
        .await
        .expect_forbidden();
    let limited = app
        .admin_json(
            Method::PATCH,
            "/tenants/t-patch",
            &json!({"rate_limits": {"events_per_second": 100, "reads_per_second": 0}}),
        )
        .await;
    limited.expect(StatusCode::OK);
    assert_eq!(
        limited.body["rate_limits"],
        json!({"events_per_second": 100, "reads_per_second": 0,
               "player_requests_per_second": null})
    );
    // null goes back to the default; what is left out stays.
    let reset = app
        .admin_json(
            Method::PATCH,
            "/tenants/t-patch",
            &json!({"rate_limits": {"events_per_second": null}}),
        )
        .await;
    assert_eq!(reset.body["rate_limits"]["events_per_second"], Value::Null);
    assert_eq!(reset.body["rate_limits"]["reads_per_second"], 0);
    // A key for another tenant: 403.
    let (_, other) = app.create_key(&["tenants:write"], &["t-other"]).await;
    send(with_key(
        app.json(Method::PATCH, "/tenants/t-patch", &json!({"name": "x"})),
        &other,
    ))
    .await
    .expect_forbidden();
    // Survives a restart.
    let app = app.restart().await;
    let after = app.admin_get("/tenants/t-patch").await;
    assert_eq!(after.body["name"], "By key");
    assert_eq!(after.body["rate_limits"]["reads_per_second"], 0);
}
