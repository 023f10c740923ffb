//! Query REST over real HTTP (SPEC §6, §10): the player's view of standings, keyset paging that stays
//! exact while scores change, `me`, `around` at the edges, one player's entry, and tenant isolation.

use crate::support::*;
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;

fn jwt(secret: &str, tenant: &str, sub: Option<&str>) -> String {
    let now = now_secs();
    let mut claims = json!({"sub_type": "tenant", "sub_id": tenant, "iat": now, "exp": now + 3600});
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    admin_jwt(secret, &claims)
}

/// A tenant with an active all-time `max` leaderboard `lb`; returns its secret.
async fn board(app: &TestApp, tenant: &str) -> String {
    let secret = app.create_tenant(tenant).await;
    app.admin_json(
        Method::POST,
        &format!("/tenants/{tenant}/leaderboards"),
        &json!({
            "leaderboard_id": "lb",
            "name": "Best score",
            "config": {
                "timeframe": {"type": "all_time"},
                "scoring": {"rules": [{"event_type": "*", "points_expression": "attrs.score"}],
                            "aggregation": "max"}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    secret
}

async fn post_scores(app: &TestApp, token: &str, scores: &[(String, f64)], tag: &str) {
    let events: Vec<Value> = scores
        .iter()
        .enumerate()
        .map(|(i, (user, score))| {
            json!({"event_id": format!("{tag}-{i}"), "type": "match", "actor": {"user_id": user},
                   "occurred_at": Timestamp::now().to_string(), "attrs": {"score": score}})
        })
        .collect();
    let reply = send(
        app.json(Method::POST, "/v1/events/batch", &json!({"events": events}))
            .bearer_auth(token),
    )
    .await;
    reply.expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body["rejected"], 0);
}

async fn get(app: &TestApp, path: &str, token: &str) -> Reply {
    send(app.get(path).bearer_auth(token)).await
}

#[tokio::test]
async fn paging_through_130_entries_has_no_duplicate_or_gap_while_scores_change() {
    let app = spawn_app().await;
    let secret = board(&app, "q-page").await;
    let token = jwt(&secret, "q-page", Some("viewer"));
    let scores: Vec<(String, f64)> = (0..130)
        .map(|i| (format!("p{i:03}"), f64::from(1000 - i)))
        .collect();
    post_scores(&app, &token, &scores, "a").await;

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/leaderboards/lb?limit=50&cursor={c}"),
            None => "/v1/leaderboards/lb?limit=50".to_owned(),
        };
        let reply = get(&app, &path, &token).await;
        reply.expect(StatusCode::OK);
        let body = &reply.body;
        assert_eq!(body["leaderboard_id"], "lb");
        assert_eq!(body["window"]["id"], "all");
        assert_eq!(body["window"]["status"], "open");
        assert_eq!(body["window"]["ends_at"], Value::Null);
        assert_eq!(body["total_entries"], 130);
        for e in body["entries"].as_array().unwrap() {
            seen.push(e["user_id"].as_str().unwrap().to_owned());
            assert!(e["score"].is_number() && e["updated_at"].is_string());
        }
        pages += 1;
        // Between pages, players already seen climb: the keyset cursor must not repeat or skip anyone.
        if pages == 1 {
            post_scores(
                &app,
                &token,
                &[("p010".into(), 5000.0), ("p049".into(), 4000.0)],
                "b",
            )
            .await;
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 130);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        130,
        "no duplicates"
    );
    // Ranks on a fresh read are 1..=n without gaps.
    let reply = get(&app, "/v1/leaderboards/lb?limit=200", &token).await;
    let ranks: Vec<u64> = reply.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, (1..=130).collect::<Vec<u64>>());
    assert_eq!(reply.body["entries"][0]["user_id"], "p010");
    assert_eq!(reply.body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn me_around_and_users() {
    let app = spawn_app().await;
    let secret = board(&app, "q-me").await;
    let alice = jwt(&secret, "q-me", Some("p000"));
    get(&app, "/v1/leaderboards/lb/me", &alice)
        .await
        .expect_not_found();
    let scores: Vec<(String, f64)> = (0..20)
        .map(|i| (format!("p{i:03}"), f64::from(100 - i)))
        .collect();
    post_scores(&app, &alice, &scores, "s").await;

    let me = get(&app, "/v1/leaderboards/lb/me", &alice).await;
    me.expect(StatusCode::OK);
    assert_eq!(me.body["rank"], 1);
    assert_eq!(me.body["user_id"], "p000");
    assert_eq!(me.body["score"], 100.0);

    // At the top edge the window is cut off, not shifted.
    let top = get(&app, "/v1/leaderboards/lb/around/me?radius=2", &alice).await;
    top.expect(StatusCode::OK);
    let users: Vec<&str> = top.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["p000", "p001", "p002"]);
    // In the middle: radius on both sides; default radius is 5.
    let mid = get(&app, "/v1/leaderboards/lb/around/p010", &alice).await;
    let ranks: Vec<u64> = mid.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, (6..=16).collect::<Vec<u64>>());
    // At the bottom edge.
    let bottom = get(&app, "/v1/leaderboards/lb/around/p019?radius=3", &alice).await;
    let ranks: Vec<u64> = bottom.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, vec![17, 18, 19, 20]);
    let zero = get(&app, "/v1/leaderboards/lb/around/p005?radius=0", &alice).await;
    assert_eq!(zero.body["entries"].as_array().unwrap().len(), 1);

    let one = get(&app, "/v1/leaderboards/lb/users/p007", &alice).await;
    one.expect(StatusCode::OK);
    assert_eq!(one.body["rank"], 8);
    get(&app, "/v1/leaderboards/lb/users/nobody", &alice)
        .await
        .expect_not_found();
    get(&app, "/v1/leaderboards/lb/around/nobody", &alice)
        .await
        .expect_not_found();
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let app = spawn_app().await;
    let secret = board(&app, "q-bad").await;
    let token = jwt(&secret, "q-bad", Some("u"));
    post_scores(&app, &token, &[("u".into(), 1.0)], "x").await;
    for (path, name) in [
        ("/v1/leaderboards/lb?limit=0", "limit"),
        ("/v1/leaderboards/lb?limit=201", "limit"),
        ("/v1/leaderboards/lb?limit=ten", "limit"),
        ("/v1/leaderboards/lb?cursor=not-a-cursor", "cursor"),
        ("/v1/leaderboards/lb/around/me?radius=51", "radius"),
        ("/v1/leaderboards/lb/around/me?radius=-1", "radius"),
    ] {
        let message = get(&app, path, &token).await.expect_validation();
        assert!(message.starts_with(name), "{path}: {message}");
    }
}

#[tokio::test]
async fn players_see_only_their_tenants_active_leaderboards() {
    let app = spawn_app().await;
    let mine = board(&app, "q-mine").await;
    board(&app, "q-theirs").await;
    app.admin_json(
        Method::POST,
        "/tenants/q-theirs/leaderboards",
        &json!({"leaderboard_id": "only-theirs", "name": "T", "config": {
            "timeframe": {"type": "all_time"},
            "scoring": {"rules": [{"event_type": "*", "points_expression": "1"}]}}}),
    )
    .await
    .expect(StatusCode::CREATED);
    let token = jwt(&mine, "q-mine", Some("u"));
    get(&app, "/v1/leaderboards/only-theirs", &token)
        .await
        .expect_not_found();
    get(&app, "/v1/leaderboards/only-theirs/me", &token)
        .await
        .expect_not_found();
    // Every player route, and the socket, answer 404 for another tenant's board: never leak existence.
    for path in [
        "/v1/leaderboards/only-theirs/around/me",
        "/v1/leaderboards/only-theirs/around/u",
        "/v1/leaderboards/only-theirs/users/u",
        "/v1/leaderboards/only-theirs/windows",
        "/v1/leaderboards/only-theirs/windows/all",
    ] {
        get(&app, path, &token).await.expect_not_found();
    }
    let ws = send(
        app.get("/v1/leaderboards/only-theirs/ws")
            .bearer_auth(&token)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    .await;
    ws.expect_not_found();
    let list = get(&app, "/v1/leaderboards", &token).await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["leaderboards"][0]["leaderboard_id"], "lb");
    assert_eq!(list.body["leaderboards"][0]["window"]["id"], "all");

    app.admin_json(
        Method::PATCH,
        "/tenants/q-mine/leaderboards/lb",
        &json!({"status": "inactive"}),
    )
    .await
    .expect(StatusCode::OK);
    get(&app, "/v1/leaderboards/lb", &token)
        .await
        .expect_not_found();
    let list = get(&app, "/v1/leaderboards", &token).await;
    assert_eq!(list.body["total"], 0);

    // Query routes need the player in `sub`, and a valid token at all.
    get(&app, "/v1/leaderboards", &jwt(&mine, "q-mine", None))
        .await
        .expect_unauthorized();
    send(app.get("/v1/leaderboards"))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn a_repeated_first_page_is_never_stale() {
    let app = spawn_app().await;
    let secret = board(&app, "q-cache").await;
    let token = jwt(&secret, "q-cache", Some("u"));
    post_scores(&app, &token, &[("a".into(), 1.0), ("b".into(), 2.0)], "c1").await;
    for round in 0..5 {
        let first = get(&app, "/v1/leaderboards/lb?limit=10", &token).await;
        let again = get(&app, "/v1/leaderboards/lb?limit=10", &token).await;
        assert_eq!(first.body, again.body, "nothing changed in between");
        let top = format!("new{round}");
        post_scores(
            &app,
            &token,
            &[(top.clone(), 100.0 + f64::from(round))],
            &format!("c2-{round}"),
        )
        .await;
        let after = get(&app, "/v1/leaderboards/lb?limit=10", &token).await;
        assert_eq!(
            after.body["entries"][0]["user_id"],
            top.as_str(),
            "round {round}"
        );
    }
    app.admin_json(
        Method::PATCH,
        "/tenants/q-cache/leaderboards/lb",
        &json!({"status": "inactive"}),
    )
    .await
    .expect(StatusCode::OK);
    get(&app, "/v1/leaderboards/lb?limit=10", &token)
        .await
        .expect_not_found();
    let other = jwt(&board(&app, "q-cache-2").await, "q-cache-2", Some("u"));
    let theirs = get(&app, "/v1/leaderboards/lb?limit=10", &other).await;
    theirs.expect(StatusCode::OK);
    assert_eq!(
        theirs.body["total_entries"], 0,
        "another tenant's cache entry is its own"
    );
}
