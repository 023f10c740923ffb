//! Ingestion over real HTTP (SPEC §3.2, §5, §10): tenant JWTs, validation messages, batch answers,
//! idempotency (also across a restart), and exact scoring read back through the store's library API.

use crate::support::*;
use futures_like::join_all;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod futures_like {
    /// Awaits every handle, in order.
    pub async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("task does not panic"));
        }
        out
    }
}

/// A tenant JWT signed with `secret`, for player `sub`.
fn tenant_jwt(secret: &str, tenant_id: &str, sub: &str, exp_offset: i64) -> String {
    let now = now_secs();
    admin_jwt(
        secret,
        &json!({"sub": sub, "sub_type": "tenant", "sub_id": tenant_id, "iat": now, "exp": now + exp_offset}),
    )
}

fn event(id: &str, user: &str, score: f64) -> Value {
    json!({
        "tenant_id": "placeholder",
        "event_id": id,
        "type": "match.completed",
        "actor": {"user_id": user, "metadata": {"region": "eu"}},
        "occurred_at": Timestamp::now().to_string(),
        "attrs": {"score": score, "victory": true}
    })
}

/// A tenant with an all-time `sum` leaderboard `lb` of `attrs.score` over `match.*` events; returns the
/// tenant's HMAC secret.
async fn tenant_with_board(app: &TestApp, tenant: &str, aggregation: &str) -> String {
    let secret = app.create_tenant(tenant).await;
    app.admin_json(
        Method::POST,
        &format!("/tenants/{tenant}/leaderboards"),
        &json!({
            "leaderboard_id": "lb",
            "name": "Board",
            "config": {
                "timeframe": {"type": "all_time"},
                "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}],
                            "aggregation": aggregation}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    secret
}

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> Reply {
    send(app.json(Method::POST, path, body).bearer_auth(token)).await
}

async fn score_of(app: &TestApp, tenant: &str, user: &str) -> Option<f64> {
    // The library API reads one node's state: every acknowledged write applied there first.
    app.settle().await;
    app.store()
        .standing_of(tenant, "lb", None, user)
        .await
        .expect("store answers")
        .map(|s| s.score)
}

#[tokio::test]
async fn a_tenant_jwt_ingests_and_the_event_is_scored() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-ing", "sum").await;
    let token = tenant_jwt(&secret, "t-ing", "game-server", 3600);
    let reply = post(&app, "/v1/events", &token, &event("e1", "alice", 50.0)).await;
    reply.expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body, json!({"event_id": "e1", "status": "accepted"}));
    post(&app, "/v1/events", &token, &event("e2", "alice", 25.5))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(score_of(&app, "t-ing", "alice").await, Some(75.5));
    let page = app
        .store()
        .standings("t-ing", "lb", None, phoenix_store::PageStart::Rank(1), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.total_entries, 1);
    assert_eq!(page.entries[0].user_id, "alice");
    assert_eq!(page.window.id.as_str(), "all");
}

#[tokio::test]
async fn tenant_jwt_failures_are_401() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-jwt", "sum").await;
    let body = event("e1", "bob", 1.0);
    let now = now_secs();
    let cases: Vec<(&str, String)> = vec![
        ("no credential", String::new()),
        ("expired", tenant_jwt(&secret, "t-jwt", "s", -120)),
        (
            "wrong secret",
            tenant_jwt("not-the-secret", "t-jwt", "s", 3600),
        ),
        ("unknown tenant", tenant_jwt(&secret, "t-nobody", "s", 3600)),
        (
            "sub_type admin",
            admin_jwt(
                &secret,
                &json!({"sub": "s", "sub_type": "admin", "sub_id": "t-jwt", "exp": now + 60}),
            ),
        ),
        (
            "no exp",
            admin_jwt(
                &secret,
                &json!({"sub": "s", "sub_type": "tenant", "sub_id": "t-jwt"}),
            ),
        ),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (what, token) in cases {
        let request = app.json(Method::POST, "/v1/events", &body);
        let request = if token.is_empty() {
            request
        } else {
            request.bearer_auth(&token)
        };
        let message = send(request).await.expect_unauthorized();
        assert!(!message.is_empty(), "{what}");
    }
    // alg: none is refused outright.
    use base64::Engine;
    let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        enc(&json!({"alg": "none", "typ": "JWT"})),
        enc(&json!({"sub": "s", "sub_type": "tenant", "sub_id": "t-jwt", "exp": now + 60}))
    );
    send(
        app.json(Method::POST, "/v1/events", &body)
            .bearer_auth(none),
    )
    .await
    .expect_unauthorized();
    assert_eq!(
        score_of(&app, "t-jwt", "bob").await,
        None,
        "nothing was counted"
    );
}

#[tokio::test]
async fn the_previous_secret_signs_during_the_grace_period_only() {
    let app = spawn_app().await;
    let old = tenant_with_board(&app, "t-rot", "sum").await;
    let reply = app
        .admin_json(Method::POST, "/tenants/t-rot/secret:rotate", &json!({}))
        .await;
    reply.expect(StatusCode::OK);
    let new = reply.body["hmac_secret"].as_str().unwrap().to_owned();
    for (i, secret) in [&old, &new].into_iter().enumerate() {
        let token = tenant_jwt(secret, "t-rot", "s", 60);
        post(
            &app,
            "/v1/events",
            &token,
            &event(&format!("g{i}"), "carol", 1.0),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    }
    app.admin_json(
        Method::POST,
        "/tenants/t-rot/secret:rotate",
        &json!({"grace_period_seconds": 0}),
    )
    .await
    .expect(StatusCode::OK);
    let token = tenant_jwt(&old, "t-rot", "s", 60);
    post(&app, "/v1/events", &token, &event("g9", "carol", 1.0))
        .await
        .expect_unauthorized();
}

/// Verified tokens are remembered per thread: the same token string must still be refused once the
/// secret that signed it is rotated out.
#[tokio::test]
async fn a_token_that_verified_is_refused_once_its_secret_is_rotated_out() {
    let app = spawn_app().await;
    let old = tenant_with_board(&app, "t-rot2", "sum").await;
    let token = tenant_jwt(&old, "t-rot2", "s", 60);
    for id in ["h1", "h2"] {
        post(&app, "/v1/events", &token, &event(id, "carol", 1.0))
            .await
            .expect(StatusCode::ACCEPTED);
    }
    app.admin_json(
        Method::POST,
        "/tenants/t-rot2/secret:rotate",
        &json!({"grace_period_seconds": 0}),
    )
    .await
    .expect(StatusCode::OK);
    post(&app, "/v1/events", &token, &event("h3", "carol", 1.0))
        .await
        .expect_unauthorized();
    assert_eq!(score_of(&app, "t-rot2", "carol").await, Some(2.0));
}

#[tokio::test]
async fn the_admin_secret_ingests_for_the_tenant_named_in_x_tenant_id() {
    let app = spawn_app().await;
    tenant_with_board(&app, "t-adm", "sum").await;
    let reply = send(
        app.json(Method::POST, "/v1/events", &event("a1", "dave", 7.0))
            .bearer_auth(ADMIN_SECRET)
            .header("x-tenant-id", "t-adm"),
    )
    .await;
    reply.expect(StatusCode::ACCEPTED);
    assert_eq!(score_of(&app, "t-adm", "dave").await, Some(7.0));
    send(
        app.json(Method::POST, "/v1/events", &event("a2", "dave", 7.0))
            .bearer_auth(ADMIN_SECRET),
    )
    .await
    .expect_unauthorized();
    send(
        app.json(Method::POST, "/v1/events", &event("a3", "dave", 7.0))
            .bearer_auth(ADMIN_SECRET)
            .header("x-tenant-id", "t-unknown"),
    )
    .await
    .expect_unauthorized();
}

#[tokio::test]
async fn every_event_field_is_validated_by_name() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-val", "sum").await;
    let token = tenant_jwt(&secret, "t-val", "s", 3600);
    let future = (Timestamp::now() + SignedDuration::from_mins(6)).to_string();
    let ancient = (Timestamp::now() - SignedDuration::from_hours(24 * 8)).to_string();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "x", "actor": {"user_id": "u"}, "occurred_at": Timestamp::now().to_string(), "attrs": {}}),
            "event_id: is required",
        ),
        (
            json!({"event_id": "bad id", "type": "x", "actor": {"user_id": "u"}, "occurred_at": Timestamp::now().to_string(), "attrs": {}}),
            "event_id: must be 1 to 128",
        ),
        (
            json!({"event_id": "e", "actor": {"user_id": "u"}, "occurred_at": Timestamp::now().to_string(), "attrs": {}}),
            "type: is required",
        ),
        (
            json!({"event_id": "e", "type": "x", "occurred_at": Timestamp::now().to_string(), "attrs": {}}),
            "actor: is required",
        ),
        (
            json!({"event_id": "e", "type": "x", "actor": {}, "occurred_at": Timestamp::now().to_string(), "attrs": {}}),
            "actor.user_id: is required",
        ),
        (
            json!({"event_id": "e", "type": "x", "actor": {"user_id": 5}, "occurred_at": Timestamp::now().to_string(), "attrs": {}}),
            "actor.user_id: expected a string",
        ),
        (
            json!({"event_id": "e", "type": "x", "actor": {"user_id": "u"}, "attrs": {}}),
            "occurred_at: is required",
        ),
        (
            json!({"event_id": "e", "type": "x", "actor": {"user_id": "u"}, "occurred_at": "soon", "attrs": {}}),
            "occurred_at: 'soon' is not an RFC 3339",
        ),
        (
            json!({"event_id": "e", "type": "x", "actor": {"user_id": "u"}, "occurred_at": future, "attrs": {}}),
            "occurred_at: is more than 5 minutes in the future",
        ),
        (
            json!({"event_id": "e", "type": "x", "actor": {"user_id": "u"}, "occurred_at": ancient, "attrs": {}}),
            "occurred_at: is older than the dedupe horizon",
        ),
        (
            json!({"event_id": "e", "type": "x", "actor": {"user_id": "u"}, "occurred_at": Timestamp::now().to_string()}),
            "attrs: is required",
        ),
        (
            json!({"event_id": "e", "type": "x", "actor": {"user_id": "u"}, "occurred_at": Timestamp::now().to_string(), "attrs": 3}),
            "attrs: expected an object",
        ),
    ];
    let mut failures = Vec::new();
    for (body, expected) in cases {
        let message = post(&app, "/v1/events", &token, &body)
            .await
            .expect_validation();
        if !message.starts_with(expected) {
            failures.push(format!("expected '{expected}', got '{message}'"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Transport-level problems are 400 too.
    let reply = send(
        app.request(Method::POST, "/v1/events")
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    reply.expect_validation();
    let reply = send(
        app.request(Method::POST, "/v1/events")
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(event("e", "u", 1.0).to_string()),
    )
    .await;
    assert!(reply.expect_validation().contains("Content-Type"));
}

#[tokio::test]
async fn a_batch_answers_per_event_and_one_bad_event_does_not_sink_the_others() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-batch", "sum").await;
    let token = tenant_jwt(&secret, "t-batch", "s", 3600);
    let mut bad = event("b2", "erin", 1.0);
    bad["occurred_at"] = json!("nope");
    let body = json!({"events": [
        event("b1", "erin", 10.0),
        bad,
        event("b3", "frank", 5.0),
        event("b1", "erin", 10.0),
    ]});
    for path in ["/v1/events/batch", "/v1/events/bulk"] {
        let reply = post(&app, path, &token, &body).await;
        reply.expect(StatusCode::ACCEPTED);
        let results = reply.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[1]["status"], "rejected");
        assert_eq!(results[1]["event_id"], "b2");
        assert_eq!(results[1]["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(results[1]["error"]["status"], 400);
        assert!(
            results[1]["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("events[1].occurred_at"),
            "{}",
            results[1]
        );
        if path.ends_with("batch") {
            assert_eq!(reply.body["accepted"], 2);
            assert_eq!(
                reply.body["duplicates"], 1,
                "the repeated id inside the batch"
            );
            assert_eq!(results[0]["status"], "accepted");
            assert_eq!(results[3]["status"], "duplicate");
        } else {
            // The same batch again: everything valid is a duplicate now.
            assert_eq!(reply.body["accepted"], 0);
            assert_eq!(reply.body["duplicates"], 3);
        }
        assert_eq!(reply.body["rejected"], 1);
    }
    assert_eq!(score_of(&app, "t-batch", "erin").await, Some(10.0));
    assert_eq!(score_of(&app, "t-batch", "frank").await, Some(5.0));
}

#[tokio::test]
async fn batch_envelope_limits() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-lim", "sum").await;
    let token = tenant_jwt(&secret, "t-lim", "s", 3600);
    let message = post(&app, "/v1/events/batch", &token, &json!({"events": []}))
        .await
        .expect_validation();
    assert!(message.starts_with("events"), "{message}");
    let too_many: Vec<Value> = (0..1001)
        .map(|i| event(&format!("x{i}"), "u", 1.0))
        .collect();
    let message = post(
        &app,
        "/v1/events/batch",
        &token,
        &json!({"events": too_many}),
    )
    .await
    .expect_validation();
    assert!(message.starts_with("events: at most 1000"), "{message}");
    let message = post(&app, "/v1/events/batch", &token, &json!({"nope": []}))
        .await
        .expect_validation();
    assert!(message.contains("events"), "{message}");
    // Every event rejected: still 202, with the per-event errors.
    let reply = post(
        &app,
        "/v1/events/batch",
        &token,
        &json!({"events": [{"event_id": "z"}]}),
    )
    .await;
    reply.expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body["rejected"], 1);
    // Over 1 MiB: 413.
    let big: Vec<Value> = (0..700)
        .map(|i| {
            let mut e = event(&format!("big{i}"), "u", 1.0);
            e["attrs"]["pad"] = json!("x".repeat(1600));
            e
        })
        .collect();
    let reply = post(&app, "/v1/events/batch", &token, &json!({"events": big})).await;
    reply.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn retries_are_duplicates_and_never_count_twice_also_across_a_restart() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-idem", "sum").await;
    let token = tenant_jwt(&secret, "t-idem", "s", 3600);
    let e = event("once", "gina", 3.0);
    post(&app, "/v1/events", &token, &e)
        .await
        .expect(StatusCode::ACCEPTED);
    let reply = post(&app, "/v1/events", &token, &e).await;
    reply.expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body["status"], "duplicate");
    let app = app.restart().await;
    let reply = post(&app, "/v1/events", &token, &e).await;
    assert_eq!(reply.body["status"], "duplicate");
    let batch = post(&app, "/v1/events/batch", &token, &json!({"events": [e]})).await;
    assert_eq!(batch.body["results"][0]["status"], "duplicate");
    assert_eq!(score_of(&app, "t-idem", "gina").await, Some(3.0));
    // The same event id in another tenant is another event.
    let other = tenant_with_board(&app, "t-idem2", "sum").await;
    let token2 = tenant_jwt(&other, "t-idem2", "s", 3600);
    let reply = post(&app, "/v1/events", &token2, &event("once", "gina", 3.0)).await;
    assert_eq!(reply.body["status"], "accepted");
}

#[tokio::test]
async fn the_body_tenant_id_is_ignored() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-mine", "sum").await;
    tenant_with_board(&app, "t-theirs", "sum").await;
    let token = tenant_jwt(&secret, "t-mine", "s", 3600);
    let mut e = event("tid", "hank", 2.0);
    e["tenant_id"] = json!("t-theirs");
    post(&app, "/v1/events", &token, &e)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(score_of(&app, "t-mine", "hank").await, Some(2.0));
    assert_eq!(score_of(&app, "t-theirs", "hank").await, None);
}

#[tokio::test]
async fn inactive_leaderboards_score_nothing_and_standings_survive_a_restart() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-act", "max").await;
    let token = tenant_jwt(&secret, "t-act", "s", 3600);
    post(&app, "/v1/events", &token, &event("m1", "ivy", 40.0))
        .await
        .expect(StatusCode::ACCEPTED);
    post(&app, "/v1/events", &token, &event("m2", "ivy", 30.0))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(score_of(&app, "t-act", "ivy").await, Some(40.0), "max");
    app.admin_json(
        Method::PATCH,
        "/tenants/t-act/leaderboards/lb",
        &json!({"status": "inactive"}),
    )
    .await
    .expect(StatusCode::OK);
    post(&app, "/v1/events", &token, &event("m3", "ivy", 90.0))
        .await
        .expect(StatusCode::ACCEPTED);
    post(&app, "/v1/events", &token, &event("m4", "jack", 90.0))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(score_of(&app, "t-act", "ivy").await, Some(40.0));
    assert_eq!(score_of(&app, "t-act", "jack").await, None);
    let app = app.restart().await;
    assert_eq!(score_of(&app, "t-act", "ivy").await, Some(40.0));
    assert_eq!(
        score_of(&app, "t-act", "jack").await,
        None,
        "replay keeps the interleaving"
    );
    app.admin_json(
        Method::PATCH,
        "/tenants/t-act/leaderboards/lb",
        &json!({"status": "active"}),
    )
    .await
    .expect(StatusCode::OK);
    post(&app, "/v1/events", &token, &event("m5", "ivy", 95.0))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(score_of(&app, "t-act", "ivy").await, Some(95.0));
}

#[tokio::test]
async fn an_event_for_a_closed_window_is_stored_not_scored_and_counted_late() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-late").await;
    app.admin_json(
        Method::POST,
        "/tenants/t-late/leaderboards",
        &json!({
            "leaderboard_id": "lb",
            "name": "Daily",
            "config": {
                "timeframe": {"type": "daily", "timezone": "UTC"},
                "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}]}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    let token = tenant_jwt(&secret, "t-late", "s", 3600);
    let mut old = event("late-1", "kim", 9.0);
    old["occurred_at"] = json!((Timestamp::now() - SignedDuration::from_hours(30)).to_string());
    let reply = post(&app, "/v1/events", &token, &old).await;
    reply.expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body["status"], "accepted", "stored");
    assert_eq!(score_of(&app, "t-late", "kim").await, None, "not scored");
    let reply = post(&app, "/v1/events", &token, &old).await;
    assert_eq!(reply.body["status"], "duplicate", "but remembered");
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let late = metrics
        .lines()
        .find(|l| l.starts_with("phoenix_events_late_total"))
        .unwrap_or_else(|| panic!("no late counter in {metrics}"));
    let n: f64 = late.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{late}");
    post(&app, "/v1/events", &token, &event("today", "kim", 1.0))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(score_of(&app, "t-late", "kim").await, Some(1.0));
}

#[tokio::test]
async fn concurrent_clients_give_exact_totals() {
    let app = spawn_app().await;
    let secret = tenant_with_board(&app, "t-conc", "sum").await;
    let token = tenant_jwt(&secret, "t-conc", "s", 3600);
    let clients = 16;
    let per_client = 40;
    let mut handles = Vec::new();
    for c in 0..clients {
        let client = app.client.clone();
        let url = app.url("/v1/events");
        let batch_url = app.url("/v1/events/batch");
        let token = token.clone();
        handles.push(tokio::spawn(async move {
            for k in 0..per_client {
                let user = format!("p{}", k % 5);
                let e = event(&format!("c{c}-{k}"), &user, 1.0);
                // Every event is sent twice, once alone and once in a batch: still counted once.
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&e)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let r = client
                    .post(&batch_url)
                    .bearer_auth(&token)
                    .json(&json!({"events": [e]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    join_all(handles).await;
    app.settle().await;
    let page = app
        .store()
        .standings("t-conc", "lb", None, phoenix_store::PageStart::Rank(1), 100)
        .await
        .unwrap()
        .unwrap();
    let total: f64 = page.entries.iter().map(|e| e.score).sum();
    assert_eq!(total, f64::from(clients * per_client));
    assert_eq!(page.total_entries, 5);
    for e in &page.entries {
        assert_eq!(e.score, f64::from(clients * per_client / 5), "{e:?}");
    }
    let ranks: Vec<u32> = page.entries.iter().map(|e| e.rank).collect();
    assert_eq!(ranks, vec![1, 2, 3, 4, 5]);
}
