//! Leaderboards (SPEC §4, §10 and the seed "creating leaderboards"): the whole lifecycle with the seed's
//! example body, listing filtered by what the caller may see, PATCH rules, delete and re-create.

use crate::support::*;
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn timestamp(value: &Value) -> Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp string, got {value}"))
        .parse()
        .unwrap_or_else(|e| panic!("an RFC 3339 timestamp, got {value}: {e}"))
}

/// The seed example's config as the server normalizes it (every default written out).
fn normalized_seed_config() -> Value {
    json!({
        "scope": {"filters": {"actor.metadata.region": {"in": ["na", "eu"]}}},
        "timeframe": {"type": "weekly", "timezone": "UTC", "reset_day": "monday", "reset_time": "00:00"},
        "scoring": {
            "rules": [{
                "event_type": "match.completed",
                "points_expression": "attrs.score",
                "conditions": {"attrs.victory": {"eq": true}}
            }],
            "aggregation": "sum"
        },
        "ranking": {"method": "score_desc", "size": 1000, "min_score": 0}
    })
}

#[tokio::test]
async fn the_seed_example_goes_through_its_whole_lifecycle() {
    let app = spawn_app().await;
    app.create_tenant("tenant-prod-001").await;
    let path = "/tenants/tenant-prod-001/leaderboards";
    let one = format!("{path}/xp-weekly-global");
    let body = leaderboard_body("tenant-prod-001", "xp-weekly-global");

    // Create: 201 with the persisted record.
    let created = app.admin_json(Method::POST, path, &body).await;
    created.expect(StatusCode::CREATED);
    let record = &created.body;
    assert_eq!(record["leaderboard_id"], "xp-weekly-global");
    assert_eq!(record["tenant_id"], "tenant-prod-001");
    assert_eq!(record["name"], "Global Weekly XP");
    assert_eq!(record["description"], "Weekly XP race across all regions");
    assert_eq!(record["status"], "active");
    assert_eq!(record["version"], 1);
    assert_eq!(record["config"], normalized_seed_config());
    let created_at = timestamp(&record["created_at"]);
    assert_eq!(timestamp(&record["updated_at"]), created_at);

    // Read it back: the same shape as the creation response.
    let read = app.admin_get(&one).await;
    read.expect(StatusCode::OK);
    assert_eq!(&read.body, record);

    // Lists.
    let all = app.admin_get("/leaderboards").await;
    all.expect(StatusCode::OK);
    assert_eq!(all.body["total"], 1);
    assert_eq!(&all.body["leaderboards"][0], record);
    let of_tenant = app.admin_get(path).await;
    of_tenant.expect(StatusCode::OK);
    assert_eq!(
        of_tenant.body,
        json!({"total": 1, "leaderboards": [record]})
    );

    // A duplicate id is 409.
    app.admin_json(Method::POST, path, &body)
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");

    // PATCH name, description and status: version 2, updated_at moves forward.
    let patched = app
        .admin_json(
            Method::PATCH,
            &one,
            &json!({"name": "Updated Display Name", "description": "New marketing copy",
                    "status": "inactive"}),
        )
        .await;
    patched.expect(StatusCode::OK);
    assert_eq!(patched.body["name"], "Updated Display Name");
    assert_eq!(patched.body["description"], "New marketing copy");
    assert_eq!(patched.body["status"], "inactive");
    assert_eq!(patched.body["version"], 2);
    assert_eq!(patched.body["config"], normalized_seed_config());
    assert_eq!(timestamp(&patched.body["created_at"]), created_at);
    assert!(timestamp(&patched.body["updated_at"]) >= created_at);
    assert_eq!(app.admin_get(&one).await.body, patched.body);

    // Any status may change to any other, one field at a time.
    for (n, status) in ["archived", "active"].into_iter().enumerate() {
        let reply = app
            .admin_json(Method::PATCH, &one, &json!({ "status": status }))
            .await;
        reply.expect(StatusCode::OK);
        assert_eq!(reply.body["status"], status);
        assert_eq!(reply.body["version"], 3 + n);
    }

    // PATCH with config or an unknown field: 400 naming it; nothing changes.
    let message = app
        .admin_json(
            Method::PATCH,
            &one,
            &json!({"config": normalized_seed_config()}),
        )
        .await
        .expect_validation();
    assert!(message.contains("config"), "{message}");
    let message = app
        .admin_json(Method::PATCH, &one, &json!({"colour": "red"}))
        .await
        .expect_validation();
    assert!(message.contains("colour"), "{message}");
    let message = app
        .admin_json(Method::PATCH, &one, &json!({"status": "paused"}))
        .await
        .expect_validation();
    assert!(message.contains("status"), "{message}");
    assert_eq!(app.admin_get(&one).await.body["version"], 4);

    // DELETE returns the removed record; then it is gone.
    let before_delete = app.admin_get(&one).await.body;
    let deleted = send(admin(app.request(Method::DELETE, &one))).await;
    deleted.expect(StatusCode::OK);
    assert_eq!(deleted.body, before_delete);
    app.admin_get(&one).await.expect_not_found();
    send(admin(app.request(Method::DELETE, &one)))
        .await
        .expect_not_found();
    app.admin_json(Method::PATCH, &one, &json!({"name": "x"}))
        .await
        .expect_not_found();
    assert_eq!(app.admin_get(path).await.body["total"], 0);

    // Re-creating the id starts again at version 1.
    let again = app.admin_json(Method::POST, path, &body).await;
    again.expect(StatusCode::CREATED);
    assert_eq!(again.body["version"], 1);
    assert_eq!(again.body["name"], "Global Weekly XP");
    assert!(timestamp(&again.body["created_at"]) >= created_at);
}

#[tokio::test]
async fn defaults_are_filled_in_and_the_body_tenant_may_be_omitted() {
    let app = spawn_app().await;
    app.create_tenant("t-min").await;
    let reply = app
        .admin_json(
            Method::POST,
            "/tenants/t-min/leaderboards",
            &json!({
                "leaderboard_id": "logins",
                "name": "Logins",
                "config": {
                    "timeframe": {"type": "daily"},
                    "scoring": {"rules": [{"event_type": "login"}], "aggregation": "count"}
                }
            }),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["tenant_id"], "t-min");
    assert_eq!(reply.body["status"], "active");
    assert_eq!(reply.body["version"], 1);
    assert_eq!(
        reply.body["config"],
        json!({
            "scope": {"filters": {}},
            "timeframe": {"type": "daily", "timezone": "UTC", "reset_time": "00:00"},
            "scoring": {
                "rules": [{"event_type": "login", "points_expression": "1", "conditions": {}}],
                "aggregation": "count"
            },
            "ranking": {"method": "score_desc", "size": 1000, "min_score": null}
        })
    );
}

#[tokio::test]
async fn lists_show_only_what_the_caller_may_see() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    app.create_tenant("t-b").await;
    app.create_leaderboard("t-a", "a-one").await;
    app.create_leaderboard("t-a", "a-two").await;
    app.create_leaderboard("t-b", "b-one").await;
    let (_, key_a) = app.create_key(&["leaderboards:read"], &["t-a"]).await;

    let ids = |reply: &Reply| -> Vec<String> {
        let mut ids: Vec<String> = reply.body["leaderboards"]
            .as_array()
            .expect("leaderboards")
            .iter()
            .map(|lb| {
                format!(
                    "{}/{}",
                    lb["tenant_id"].as_str().unwrap_or("?"),
                    lb["leaderboard_id"].as_str().unwrap_or("?")
                )
            })
            .collect();
        ids.sort();
        ids
    };

    let everything = app.admin_get("/leaderboards").await;
    everything.expect(StatusCode::OK);
    assert_eq!(everything.body["total"], 3);
    assert_eq!(ids(&everything), ["t-a/a-one", "t-a/a-two", "t-b/b-one"]);

    let mine = send(with_key(app.get("/leaderboards"), &key_a)).await;
    mine.expect(StatusCode::OK);
    assert_eq!(mine.body["total"], 2);
    assert_eq!(ids(&mine), ["t-a/a-one", "t-a/a-two"]);

    let tenant_b = app.admin_get("/tenants/t-b/leaderboards").await;
    tenant_b.expect(StatusCode::OK);
    assert_eq!(tenant_b.body["total"], 1);
    assert_eq!(ids(&tenant_b), ["t-b/b-one"]);

    let own = send(with_key(app.get("/tenants/t-a/leaderboards"), &key_a)).await;
    own.expect(StatusCode::OK);
    assert_eq!(ids(&own), ["t-a/a-one", "t-a/a-two"]);
    send(with_key(app.get("/tenants/t-b/leaderboards/b-one"), &key_a))
        .await
        .expect_forbidden();

    // The same id in two tenants is two leaderboards.
    app.create_leaderboard("t-b", "a-one").await;
    assert_eq!(app.admin_get("/leaderboards").await.body["total"], 4);
    assert_eq!(
        app.admin_get("/tenants/t-b/leaderboards/a-one").await.body["tenant_id"],
        "t-b"
    );

    // Unknown tenants and leaderboards are 404.
    app.admin_get("/tenants/nope/leaderboards")
        .await
        .expect_not_found();
    app.admin_get("/tenants/t-a/leaderboards/nope")
        .await
        .expect_not_found();
}
