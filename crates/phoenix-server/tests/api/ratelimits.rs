//! Rate limits (SPEC §8, §10): per-tenant events and reads, per-player requests, 429 `RATE_LIMITED`
//! with `Retry-After`, checked after permission and before existence; WebSocket messages too.

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn events(tag: &str, n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"event_id": format!("{tag}-{i}"), "type": "match", "actor": {"user_id": "p"},
                   "occurred_at": Timestamp::now().to_string(), "attrs": {"score": 1}})
        })
        .collect();
    json!({ "events": events })
}

async fn limit(app: &TestApp, tenant: &str, limits: Value) {
    app.admin_json(
        Method::PATCH,
        &format!("/tenants/{tenant}"),
        &json!({ "rate_limits": limits }),
    )
    .await
    .expect(StatusCode::OK);
}

#[track_caller]
fn assert_limited(reply: &Reply) {
    reply.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a whole-second Retry-After");
    assert!(retry >= 1);
}

#[tokio::test]
async fn events_per_second_count_every_event_and_a_full_batch_always_fits() {
    let app = spawn_app().await;
    // Exact per request on one node; a cluster shares spending within a flush (api_cluster's
    // cluster.rs checks that).
    app.pin_to_one_node();
    let secret = app.create_tenant("rl-events").await;
    limit(&app, "rl-events", json!({"events_per_second": 10})).await;
    let server = tenant_token(&secret, "rl-events", None, Some("events:write"));
    let post = |body: Value| {
        send(
            app.json(Method::POST, "/v1/events/batch", &body)
                .bearer_auth(&server),
        )
    };
    // The bucket holds a full batch even at 10/s.
    post(events("a", 1000)).await.expect(StatusCode::ACCEPTED);
    let refused = post(events("b", 5)).await;
    assert_limited(&refused);
    // Too large a batch is a validation error, not a rate limit.
    post(events("c", 1001)).await.expect_validation();
    // Unlimited again: the change applies at the next request.
    limit(&app, "rl-events", json!({"events_per_second": 0})).await;
    post(events("d", 5)).await.expect(StatusCode::ACCEPTED);
    let metrics = send(app.get("/metrics")).await;
    assert!(
        metrics
            .text
            .contains("phoenix_rate_limited_total{tenant=\"rl-events\""),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn reads_per_second_are_checked_after_permission_and_before_existence() {
    let app = spawn_app().await;
    // Exact per request on one node; a cluster shares spending within a flush (api_cluster's
    // cluster.rs checks that).
    app.pin_to_one_node();
    let secret = app.create_tenant("rl-reads").await;
    limit(&app, "rl-reads", json!({"reads_per_second": 2})).await;
    let reader = tenant_token(&secret, "rl-reads", Some("p1"), Some("leaderboards:read"));
    let writer_only = tenant_token(&secret, "rl-reads", Some("p1"), Some("events:write"));
    let get = |path: &str, token: &str| send(app.get(path).bearer_auth(token));
    get("/v1/leaderboards", &reader)
        .await
        .expect(StatusCode::OK);
    get("/v1/leaderboards/none", &reader)
        .await
        .expect_not_found();
    // Over the limit: 429 even for a leaderboard that does not exist...
    assert_limited(&get("/v1/leaderboards/none", &reader).await);
    // ... but a token without the scope is 403 first.
    get("/v1/leaderboards", &writer_only)
        .await
        .expect_forbidden();
}

#[tokio::test]
async fn one_player_cannot_use_up_the_tenants_budget() {
    let mut config = test_config();
    config.rate_limits.player_requests_per_second = 2;
    let app = spawn_app_with(config).await;
    // Exact per request on one node; a cluster shares spending within a flush (api_cluster's
    // cluster.rs checks that).
    app.pin_to_one_node();
    let secret = app.create_tenant("rl-players").await;
    let alice = tenant_token(
        &secret,
        "rl-players",
        Some("alice"),
        Some("leaderboards:read"),
    );
    let bob = tenant_token(
        &secret,
        "rl-players",
        Some("bob"),
        Some("leaderboards:read"),
    );
    let server = tenant_token(&secret, "rl-players", Some("gs-1"), Some("events:write"));
    let get = |token: &str| send(app.get("/v1/leaderboards").bearer_auth(token));
    get(&alice).await.expect(StatusCode::OK);
    get(&alice).await.expect(StatusCode::OK);
    assert_limited(&get(&alice).await);
    get(&bob).await.expect(StatusCode::OK);
    // A game server's token is not a player.
    for i in 0..5 {
        send(
            app.json(
                Method::POST,
                "/v1/events/batch",
                &events(&format!("gs{i}"), 1),
            )
            .bearer_auth(&server),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    }
    // A tenant's own setting overrides the default.
    limit(&app, "rl-players", json!({"player_requests_per_second": 0})).await;
    get(&alice).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn websocket_messages_count_as_reads_and_get_an_error_frame_when_over() {
    let app = spawn_app().await;
    let secret = app.create_tenant("rl-ws").await;
    app.create_leaderboard("rl-ws", "daily").await;
    limit(&app, "rl-ws", json!({"reads_per_second": 3})).await;
    let player = tenant_token(&secret, "rl-ws", Some("p1"), Some("leaderboards:read"));
    let url = format!(
        "{}/v1/leaderboards/daily/ws?access_token={player}",
        app.base.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade (one read)");
    loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            let first: Value = serde_json::from_str(text.as_str()).expect("JSON");
            assert_eq!(first["type"], "snapshot");
            break;
        }
    }
    let mut replies = Vec::new();
    for _ in 0..4 {
        socket
            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await
            .expect("sent");
    }
    for _ in 0..4 {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            replies.push(serde_json::from_str::<Value>(text.as_str()).expect("JSON"));
        }
    }
    let pongs = replies.iter().filter(|r| r["type"] == "pong").count();
    let limited: Vec<&Value> = replies.iter().filter(|r| r["type"] == "error").collect();
    assert_eq!(pongs, 2, "{replies:?}");
    assert_eq!(limited.len(), 2, "{replies:?}");
    assert_eq!(limited[0]["error"]["code"], "RATE_LIMITED");
    // The socket stays open.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    socket
        .send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .expect("sent");
    let message = tokio::time::timeout(DEADLINE, socket.next())
        .await
        .expect("a message")
        .expect("open")
        .expect("a frame");
    assert!(message.to_text().unwrap_or_default().contains("pong"));
}

#[tokio::test]
async fn a_player_over_their_limit_does_not_spend_the_tenants_budget() {
    let mut config = test_config();
    config.rate_limits.player_requests_per_second = 2;
    let app = spawn_app_with(config).await;
    // Exact per request on one node; a cluster shares spending within a flush (api_cluster's
    // cluster.rs checks that).
    app.pin_to_one_node();
    let secret = app.create_tenant("rl-share").await;
    limit(&app, "rl-share", json!({"reads_per_second": 5})).await;
    let greedy = tenant_token(
        &secret,
        "rl-share",
        Some("greedy"),
        Some("leaderboards:read"),
    );
    let polite = tenant_token(
        &secret,
        "rl-share",
        Some("polite"),
        Some("leaderboards:read"),
    );
    let get = |token: &str| send(app.get("/v1/leaderboards").bearer_auth(token));
    get(&greedy).await.expect(StatusCode::OK);
    get(&greedy).await.expect(StatusCode::OK);
    for _ in 0..20 {
        assert_limited(&get(&greedy).await);
    }
    // The tenant had 5 reads: the greedy player spent 2 of them, not 22.
    get(&polite).await.expect(StatusCode::OK);
    get(&polite).await.expect(StatusCode::OK);
}
