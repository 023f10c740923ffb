//! Window history over real HTTP (SPEC §6): an ended window's standings are frozen (later events are
//! late and change nothing), listed under `windows`, served with paging, and readable after the
//! leaderboard is deleted. A short custom window keeps the test fast; nothing sleeps a fixed time.

use crate::support::*;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn jwt(secret: &str, tenant: &str) -> String {
    let now = now_secs();
    admin_jwt(
        secret,
        &json!({"sub": "viewer", "sub_type": "tenant", "sub_id": tenant, "iat": now, "exp": now + 3600}),
    )
}

fn event(id: &str, user: &str, score: f64) -> Value {
    json!({"event_id": id, "type": "match", "actor": {"user_id": user},
           "occurred_at": Timestamp::now().to_string(), "attrs": {"score": score}})
}

/// The `windows` list of `sprint` once it has `count` ended windows (polling, with a deadline).
async fn ended_windows(app: &TestApp, token: &str, count: u64) -> Value {
    let started = std::time::Instant::now();
    loop {
        let r = send(
            app.get("/v1/leaderboards/sprint/windows")
                .bearer_auth(token),
        )
        .await;
        if r.body["total"] == count {
            return r.body;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "never {count} ended windows: {}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_ended_window_is_frozen_listed_and_readable_after_deletion() {
    let app = spawn_app().await;
    let secret = app.create_tenant("w-hist").await;
    let now = Timestamp::now();
    let ends_at = now + SignedDuration::from_millis(1500);
    app.admin_json(
        Method::POST,
        "/tenants/w-hist/leaderboards",
        &json!({
            "leaderboard_id": "sprint",
            "name": "Sprint",
            "config": {
                "timeframe": {"type": "custom",
                              "starts_at": (now - SignedDuration::from_hours(1)).to_string(),
                              "ends_at": ends_at.to_string()},
                "scoring": {"rules": [{"event_type": "*", "points_expression": "attrs.score"}]}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    let token = jwt(&secret, "w-hist");
    let post = |e: Value| {
        let token = token.clone();
        let request = app.json(Method::POST, "/v1/events", &e).bearer_auth(token);
        async move { send(request).await }
    };
    for (i, (user, score)) in [("ann", 5.0), ("bob", 9.0), ("cat", 7.0)]
        .iter()
        .enumerate()
    {
        post(event(&format!("e{i}"), user, *score))
            .await
            .expect(StatusCode::ACCEPTED);
    }
    let open = send(
        app.get("/v1/leaderboards/sprint/windows")
            .bearer_auth(&token),
    )
    .await;
    open.expect(StatusCode::OK);
    assert_eq!(open.body["total"], 0, "an open window is not history yet");
    send(
        app.get("/v1/leaderboards/sprint/windows/custom")
            .bearer_auth(&token),
    )
    .await
    .expect_not_found();

    // Wait (polling, with a deadline) until the window has ended.
    let listed = ended_windows(&app, &token, 1).await;
    assert_eq!(listed["windows"][0]["id"], "custom");
    assert_eq!(listed["windows"][0]["status"], "closed");

    // Late events change nothing.
    let late = post(event("late", "dan", 100.0)).await;
    late.expect(StatusCode::ACCEPTED);
    let frozen = send(
        app.get("/v1/leaderboards/sprint/windows/custom?limit=2")
            .bearer_auth(&token),
    )
    .await;
    frozen.expect(StatusCode::OK);
    assert_eq!(frozen.body["total_entries"], 3);
    let users: Vec<&str> = frozen.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bob", "cat"]);
    let cursor = frozen.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = send(
        app.get(&format!(
            "/v1/leaderboards/sprint/windows/custom?limit=2&cursor={cursor}"
        ))
        .bearer_auth(&token),
    )
    .await;
    assert_eq!(rest.body["entries"][0]["user_id"], "ann");
    assert_eq!(rest.body["entries"][0]["rank"], 3);
    assert_eq!(rest.body["next_cursor"], Value::Null);

    // The frozen window moves out of memory to cold storage; every history page stays byte-identical.
    let history_paths = [
        "/v1/leaderboards/sprint/windows".to_owned(),
        "/v1/leaderboards/sprint/windows/custom?limit=2".to_owned(),
        format!("/v1/leaderboards/sprint/windows/custom?limit=2&cursor={cursor}"),
        "/v1/leaderboards/sprint/windows/custom".to_owned(),
    ];
    let pages = |app: &TestApp| {
        let requests: Vec<_> = history_paths
            .iter()
            .map(|p| app.get(p).bearer_auth(&token))
            .collect();
        async move {
            let mut texts = Vec::new();
            for r in requests {
                let reply = send(r).await;
                reply.expect(StatusCode::OK);
                texts.push(reply.text);
            }
            texts
        }
    };
    let hot = pages(&app).await;
    let started = std::time::Instant::now();
    loop {
        let metrics = send(app.get("/metrics")).await.text;
        if metrics
            .lines()
            .any(|l| l.starts_with("phoenix_windows_moved_cold_total") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the window never moved to cold storage"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pages(&app).await, hot, "read from cold storage");
    let app = app.restart().await;
    assert_eq!(pages(&app).await, hot, "after a restart");
    // The current window of an ended custom timeframe is the closed one.
    let current = send(app.get("/v1/leaderboards/sprint").bearer_auth(&token)).await;
    assert_eq!(current.body["window"]["status"], "closed");

    // Deleted: gone for live reads, history still readable.
    app.admin_json(
        Method::DELETE,
        "/tenants/w-hist/leaderboards/sprint",
        &json!({}),
    )
    .await
    .expect(StatusCode::OK);
    send(app.get("/v1/leaderboards/sprint").bearer_auth(&token))
        .await
        .expect_not_found();
    let after = send(
        app.get("/v1/leaderboards/sprint/windows/custom")
            .bearer_auth(&token),
    )
    .await;
    after.expect(StatusCode::OK);
    assert_eq!(after.body["total_entries"], 3);
    let app = app.restart().await;
    let after = send(
        app.get("/v1/leaderboards/sprint/windows/custom")
            .bearer_auth(&token),
    )
    .await;
    after.expect(StatusCode::OK);
    assert_eq!(
        after.body["entries"][0]["user_id"], "bob",
        "history survives a restart"
    );

    // Created again under the same id: its window gets an id of its own, and both incarnations'
    // windows stay listed and readable.
    let now = Timestamp::now();
    app.admin_json(
        Method::POST,
        "/tenants/w-hist/leaderboards",
        &json!({
            "leaderboard_id": "sprint",
            "name": "Sprint again",
            "config": {
                "timeframe": {"type": "custom",
                              "starts_at": (now - SignedDuration::from_hours(1)).to_string(),
                              "ends_at": (now + SignedDuration::from_millis(1500)).to_string()},
                "scoring": {"rules": [{"event_type": "*", "points_expression": "attrs.score"}]}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    let live = send(app.get("/v1/leaderboards/sprint").bearer_auth(&token)).await;
    assert_eq!(live.body["window"]["id"], "custom~2");
    let request = app
        .json(Method::POST, "/v1/events", &event("again", "zed", 1.0))
        .bearer_auth(&token);
    send(request).await.expect(StatusCode::ACCEPTED);
    let listed = ended_windows(&app, &token, 2).await;
    let ids: Vec<&str> = listed["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["custom~2", "custom"], "newest first");
    let second = send(
        app.get("/v1/leaderboards/sprint/windows/custom~2")
            .bearer_auth(&token),
    )
    .await;
    second.expect(StatusCode::OK);
    assert_eq!(second.body["window"]["id"], "custom~2");
    assert_eq!(second.body["entries"][0]["user_id"], "zed");
    let first = send(
        app.get("/v1/leaderboards/sprint/windows/custom")
            .bearer_auth(&token),
    )
    .await;
    first.expect(StatusCode::OK);
    assert_eq!(first.body["entries"][0]["user_id"], "bob");
    assert_eq!(first.body["total_entries"], 3);
    send(
        app.get("/v1/leaderboards/sprint/windows/custom~3")
            .bearer_auth(&token),
    )
    .await
    .expect_not_found();
    send(
        app.get("/v1/leaderboards/sprint/windows/nope")
            .bearer_auth(&token),
    )
    .await
    .expect_not_found();
    send(
        app.get("/v1/leaderboards/never/windows")
            .bearer_auth(&token),
    )
    .await
    .expect_not_found();
}
