//! What only a cluster promises (SPEC §9), on the two nodes of `support::Backend::Cluster`, each
//! request sent to the node named (a socket on one node seeing events ingested on the other is
//! `ws::a_socket_sees_what_another_node_ingests`, which runs here too): a session
//! started on one node works on the other and a logout there ends it; a signature used on one node is
//! refused on the other; failed logins and a tenant's rate limit count on every node.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

/// Two nodes, or `None` (said once by the harness) where there is no PostgreSQL and Redis outside CI.
async fn cluster_app() -> Option<TestApp> {
    let app = spawn_app().await;
    (app.nodes() == 2).then_some(app)
}

fn on(app: &TestApp, node: usize, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, format!("{}{path}", app.node_base(node)))
}

fn on_json(
    app: &TestApp,
    node: usize,
    method: Method,
    path: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    on(app, node, method, path)
        .header("content-type", "application/json")
        .body(body.to_string())
}

#[tokio::test]
async fn a_session_started_on_one_node_works_on_the_other_and_a_logout_there_ends_it() {
    let Some(app) = cluster_app().await else {
        return;
    };
    send(admin(on_json(
        &app,
        0,
        Method::POST,
        "/users",
        &json!({"username": "kim", "password": PASSWORD, "role": "ADMIN"}),
    )))
    .await
    .expect(StatusCode::CREATED);
    let login = send(on_json(
        &app,
        0,
        Method::POST,
        "/auth/login",
        &json!({"username": "kim", "password": PASSWORD}),
    ))
    .await;
    login.expect(StatusCode::OK);
    let access = login.body["access_token"].as_str().unwrap().to_owned();
    send(on(&app, 1, Method::GET, "/auth/me").bearer_auth(&access))
        .await
        .expect(StatusCode::OK);
    send(on(&app, 1, Method::POST, "/auth/logout").bearer_auth(&access))
        .await
        .expect(StatusCode::OK);
    send(on(&app, 0, Method::GET, "/auth/me").bearer_auth(&access))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn a_signature_used_on_one_node_is_refused_on_the_other() {
    let Some(app) = cluster_app().await else {
        return;
    };
    let secret = app.create_tenant("x-sig").await;
    let now = now_secs();
    let signature = hmac_signature(&secret, "GET", "/health", now, b"");
    let signed = |node| {
        on(&app, node, Method::GET, "/health")
            .header("x-tenant-id", "x-sig")
            .header("x-timestamp", now.to_string())
            .header("x-signature", signature.clone())
    };
    send(signed(0)).await.expect(StatusCode::OK);
    let message = send(signed(1)).await.expect_unauthorized();
    assert!(message.contains("already used"), "{message}");
}

#[tokio::test]
async fn failed_logins_on_one_node_slow_the_user_down_on_the_other() {
    let Some(app) = cluster_app().await else {
        return;
    };
    send(admin(on_json(
        &app,
        0,
        Method::POST,
        "/users",
        &json!({"username": "lee", "password": PASSWORD, "role": "ADMIN"}),
    )))
    .await
    .expect(StatusCode::CREATED);
    for _ in 0..5 {
        send(on_json(
            &app,
            0,
            Method::POST,
            "/auth/login",
            &json!({"username": "lee", "password": "guess"}),
        ))
        .await
        .expect_unauthorized();
    }
    // The attempts reach the other node within a flush of the reports; a success there before
    // they arrive would clear the count (as on one node), so wait well past it.
    tokio::time::sleep(phoenix_server::shared::FLUSH * 10).await;
    let locked = send(on_json(
        &app,
        1,
        Method::POST,
        "/auth/login",
        &json!({"username": "lee", "password": PASSWORD}),
    ))
    .await;
    locked.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

#[tokio::test]
async fn a_tenants_rate_limit_holds_for_the_cluster_as_a_whole() {
    let Some(app) = cluster_app().await else {
        return;
    };
    let secret = app.create_tenant("x-rl").await;
    app.admin_json(
        Method::PATCH,
        "/tenants/x-rl",
        &json!({"rate_limits": {"reads_per_second": 20}}),
    )
    .await
    .expect(StatusCode::OK);
    let reader = tenant_token(&secret, "x-rl", Some("p1"), Some("leaderboards:read"));
    // Two seconds of reads at about twice the limit, alternating between the nodes: the cluster lets
    // through about the limit (the burst of 20, then 20 a second), not twice it.
    let started = std::time::Instant::now();
    let mut ok = 0;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let reply =
            send(on(&app, i % 2, Method::GET, "/v1/leaderboards").bearer_auth(&reader)).await;
        if reply.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(12)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 20.0 + 20.0 * elapsed;
    assert!(
        i as f64 > allowed * 1.3,
        "the test sent too little to tell ({i} requests)"
    );
    assert!(
        (ok as f64) < allowed * 1.25,
        "{ok} reads let through; the cluster's limit allows about {allowed:.0}"
    );
    assert!(
        (ok as f64) > allowed * 0.6,
        "{ok} reads let through of about {allowed:.0}"
    );
}

#[tokio::test]
async fn each_node_reports_its_replication_on_metrics() {
    let Some(app) = cluster_app().await else {
        return;
    };
    app.create_tenant("x-metrics").await;
    app.settle().await;
    for node in 0..2 {
        let text = send(on(&app, node, Method::GET, "/metrics")).await.text;
        for series in [
            "phoenix_log_applied_position",
            "phoenix_log_head_position",
            "phoenix_log_lag_positions",
            "phoenix_log_lag_seconds",
            "phoenix_log_appends_total",
            "phoenix_log_append_seconds_sum",
        ] {
            assert!(text.contains(series), "node {node} lacks {series}");
        }
    }
}
