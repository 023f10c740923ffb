//! Achievements over real HTTP (SPEC §7.5, §7.7): steps complete once, at the event that crossed
//! them, although the events are retried and the server restarts; their rewards are granted once; a
//! streak across days in a non-UTC zone, with a gap filled by an older event; hidden achievements;
//! PATCH that adds a step; completion counts; validation.

use crate::support::*;
use jiff::{SignedDuration, Timestamp, ToSpan};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn win(id: &str, user: &str, victory: bool, at: Timestamp) -> Value {
    json!({"event_id": id, "type": "match.completed", "actor": {"user_id": user},
           "occurred_at": at.to_string(), "attrs": {"victory": victory, "score": 10}})
}

async fn post(app: &TestApp, secret: &str, tenant: &str, events: &[Value]) {
    let token = tenant_token(secret, tenant, None, None);
    send(
        app.json(Method::POST, "/v1/events/batch", &json!({"events": events}))
            .bearer_auth(token),
    )
    .await
    .expect(StatusCode::ACCEPTED);
}

async fn player(app: &TestApp, secret: &str, tenant: &str, user: &str, path: &str) -> Reply {
    let token = tenant_token(secret, tenant, Some(user), None);
    send(app.get(path).bearer_auth(token)).await
}

/// Waits until the player's `value` on `id` is `value`, and answers the achievement.
async fn wait_value(
    app: &TestApp,
    secret: &str,
    tenant: &str,
    user: &str,
    id: &str,
    value: f64,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        let r = player(app, secret, tenant, user, "/v1/achievements").await;
        r.expect(StatusCode::OK);
        let found = r.body["achievements"]
            .as_array()
            .and_then(|l| l.iter().find(|a| a["achievement_id"] == id).cloned());
        if let Some(a) = found
            && a["value"].as_f64() == Some(value)
        {
            return a;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{user}'s {id} did not reach {value}: {}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Waits until the player has `total` grants, and answers them.
async fn wait_rewards(app: &TestApp, secret: &str, tenant: &str, user: &str, total: u64) -> Reply {
    let started = std::time::Instant::now();
    loop {
        let r = player(app, secret, tenant, user, "/v1/rewards").await;
        r.expect(StatusCode::OK);
        if r.body["total"].as_u64() == Some(total) {
            return r;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{user} did not reach {total} grants: {}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_step_completes_once_at_the_event_that_crossed_it_through_retries_and_restarts() {
    let app = spawn_app().await;
    let secret = app.create_tenant("ach").await;
    let created = app
        .admin_json(
            Method::POST,
            "/tenants/ach/achievements",
            &json!({"achievement_id": "slayer", "name": "Slayer", "description": "Win matches",
                    "metric": {"event_type": "match.completed",
                               "conditions": {"attrs.victory": {"eq": true}},
                               "aggregation": "count"},
                    "steps": [{"threshold": 2, "rewards": []},
                              {"threshold": 3, "rewards": [{"type": "badge", "badge": "slayer"},
                                                           {"type": "currency", "currency": "gems", "amount": 5}]}]}),
        )
        .await;
    created.expect(StatusCode::CREATED);
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["hidden"], false);
    assert_eq!(created.body["version"], 1);
    assert_eq!(
        created.body["completions"],
        json!([{"threshold": 2.0, "players": 0}, {"threshold": 3.0, "players": 0}])
    );
    // The same id again is 409, even after deletion (below).
    app.admin_json(
        Method::POST,
        "/tenants/ach/achievements",
        &json!({"achievement_id": "slayer", "name": "x",
                "metric": {"event_type": "x", "aggregation": "count"}, "steps": [{"threshold": 1}]}),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "CONFLICT");

    let now = Timestamp::now();
    let batch = [
        win("w1", "ann", true, now),
        win("w2", "ann", false, now),
        win("w3", "ann", true, now),
        win("w4", "bob", true, now),
    ];
    post(&app, &secret, "ach", &batch).await;
    // The same events again: duplicates count nothing.
    post(&app, &secret, "ach", &batch).await;
    let a = wait_value(&app, &secret, "ach", "ann", "slayer", 2.0).await;
    assert!(a["steps"][0]["completed_at"].is_string(), "{a}");
    assert!(a["steps"][1]["completed_at"].is_null(), "{a}");
    assert_eq!(a["completed"], false);
    assert_eq!(a["next_threshold"], 3.0);
    let first_completed_at = a["steps"][0]["completed_at"].clone();

    // The third win completes the last step and grants its two rewards, once.
    post(&app, &secret, "ach", &[win("w5", "ann", true, now)]).await;
    post(&app, &secret, "ach", &[win("w5", "ann", true, now)]).await;
    let a = wait_value(&app, &secret, "ach", "ann", "slayer", 3.0).await;
    assert_eq!(a["completed"], true);
    assert!(a["next_threshold"].is_null());
    assert_eq!(a["steps"][0]["completed_at"], first_completed_at);
    // The step's grants are committed within half a second of the event that completed it.
    let rewards = wait_rewards(&app, &secret, "ach", "ann", 2).await;
    for g in rewards.body["rewards"].as_array().unwrap() {
        assert_eq!(g["source"]["kind"], "achievement");
        assert_eq!(g["source"]["id"], "slayer");
        assert_eq!(g["source"]["step"], 1);
        assert_eq!(g["source"]["threshold"], 3.0);
        assert_eq!(g["status"], "pending");
    }
    let counts = app.admin_get("/tenants/ach/achievements/slayer").await;
    counts.expect(StatusCode::OK);
    assert_eq!(
        counts.body["completions"],
        json!([{"threshold": 2.0, "players": 1}, {"threshold": 3.0, "players": 1}])
    );

    // A restart replays nothing twice.
    let app = app.restart().await;
    post(&app, &secret, "ach", &batch).await;
    let a = wait_value(&app, &secret, "ach", "ann", "slayer", 3.0).await;
    assert_eq!(a["steps"][0]["completed_at"], first_completed_at);
    wait_rewards(&app, &secret, "ach", "ann", 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let rewards = player(&app, &secret, "ach", "ann", "/v1/rewards").await;
    assert_eq!(rewards.body["total"], 2, "{}", rewards.body);
    let counts = app.admin_get("/tenants/ach/achievements/slayer").await;
    assert_eq!(counts.body["completions"][0]["players"], 1);

    // PATCH adds a step above the last (the earlier ones must stay as they are): ann, already past
    // it, completes it at her next matching event.
    let patched = app
        .admin_json(
            Method::PATCH,
            "/tenants/ach/achievements/slayer",
            &json!({"steps": [{"threshold": 2}, {"threshold": 3, "rewards": [{"type": "badge", "badge": "slayer"},
                     {"type": "currency", "currency": "gems", "amount": 5}]}, {"threshold": 3.5}]}),
        )
        .await;
    patched.expect(StatusCode::OK);
    assert_eq!(patched.body["version"], 2);
    let e = app
        .admin_json(
            Method::PATCH,
            "/tenants/ach/achievements/slayer",
            &json!({"steps": [{"threshold": 2}, {"threshold": 4}]}),
        )
        .await
        .expect_validation();
    assert!(e.starts_with("steps"), "{e}");
    post(&app, &secret, "ach", &[win("w6", "ann", true, now)]).await;
    let a = wait_value(&app, &secret, "ach", "ann", "slayer", 4.0).await;
    assert!(a["steps"][2]["completed_at"].is_string(), "{a}");
    assert_eq!(a["completed"], true);

    // bob has one win: visible progress, nothing completed.
    let b = wait_value(&app, &secret, "ach", "bob", "slayer", 1.0).await;
    assert_eq!(b["next_threshold"], 2.0);

    // Deleted: gone from lists; the id stays taken; the grants stay.
    send(admin(
        app.request(Method::DELETE, "/tenants/ach/achievements/slayer"),
    ))
    .await
    .expect(StatusCode::OK);
    app.admin_get("/tenants/ach/achievements/slayer")
        .await
        .expect_not_found();
    let rewards = player(&app, &secret, "ach", "ann", "/v1/rewards").await;
    assert_eq!(rewards.body["total"], 2);
}

#[tokio::test]
async fn a_streak_counts_days_in_its_zone_and_an_older_event_can_fill_the_gap() {
    let app = spawn_app().await;
    let secret = app.create_tenant("stk").await;
    let zone = "America/Los_Angeles";
    app.admin_json(
        Method::POST,
        "/tenants/stk/achievements",
        &json!({"achievement_id": "daily", "name": "Daily",
                "metric": {"event_type": "match.completed", "aggregation": "streak", "timezone": zone},
                "steps": [{"threshold": 3}, {"threshold": 4, "rewards": [{"type": "badge", "badge": "regular"}]}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    // Four days ending yesterday (in the zone), at 23:30 local time: a UTC day would put each of them
    // on the next day, so only the zone's days make the runs below.
    let today = Timestamp::now().in_tz(zone).unwrap().date();
    let day = |back: i64| -> Timestamp {
        let d = today.checked_sub(back.days()).unwrap();
        d.at(23, 30, 0, 0).in_tz(zone).unwrap().timestamp()
    };
    // Days -5, -4 and -2: runs of 2 and 1.
    post(
        &app,
        &secret,
        "stk",
        &[
            win("s1", "ann", true, day(5)),
            win("s2", "ann", false, day(4)),
            win("s3", "ann", true, day(2)),
        ],
    )
    .await;
    let a = wait_value(&app, &secret, "stk", "ann", "daily", 2.0).await;
    assert!(a["steps"][0]["completed_at"].is_null());
    // Two events on day -2 (the same local day, different UTC days) still make one day.
    post(
        &app,
        &secret,
        "stk",
        &[win(
            "s4",
            "ann",
            true,
            day(2) - SignedDuration::from_hours(20),
        )],
    )
    .await;
    // An older event fills day -3: one run of four days completes both steps at that event.
    post(&app, &secret, "stk", &[win("s5", "ann", true, day(3))]).await;
    let a = wait_value(&app, &secret, "stk", "ann", "daily", 4.0).await;
    assert!(a["steps"][0]["completed_at"].is_string(), "{a}");
    assert_eq!(a["steps"][0]["completed_at"], a["steps"][1]["completed_at"]);
    assert_eq!(a["completed"], true);
    let rewards = wait_rewards(&app, &secret, "stk", "ann", 1).await;
    assert_eq!(rewards.body["rewards"][0]["reward"]["badge"], "regular");
}

#[tokio::test]
async fn hidden_achievements_show_once_a_step_is_completed_and_bodies_are_checked() {
    let app = spawn_app().await;
    let secret = app.create_tenant("hid").await;
    app.admin_json(
        Method::POST,
        "/tenants/hid/achievements",
        &json!({"achievement_id": "hoarder", "name": "Hoarder", "hidden": true,
                "metric": {"event_type": "match.completed", "aggregation": "sum",
                           "points_expression": "attrs.score * 2"},
                "steps": [{"threshold": 30}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    let now = Timestamp::now();
    post(&app, &secret, "hid", &[win("h1", "ann", true, now)]).await;
    // Progress is made but not shown.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let list = player(&app, &secret, "hid", "ann", "/v1/achievements").await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total"], 0, "{}", list.body);
    player(&app, &secret, "hid", "ann", "/v1/achievements/hoarder")
        .await
        .expect_not_found();
    post(
        &app,
        &secret,
        "hid",
        &[win("h2", "ann", true, now), win("h3", "ann", true, now)],
    )
    .await;
    let a = wait_value(&app, &secret, "hid", "ann", "hoarder", 60.0).await;
    assert_eq!(a["completed"], true);
    let one = player(&app, &secret, "hid", "ann", "/v1/achievements/hoarder").await;
    one.expect(StatusCode::OK);
    assert_eq!(one.body["value"], 60.0);
    // Someone else's token is not the player's: no sub, no achievements.
    let anon = send(
        app.get("/v1/achievements")
            .bearer_auth(tenant_token(&secret, "hid", None, None)),
    )
    .await;
    anon.expect_unauthorized();

    // Validation names the field.
    let cases = [
        (
            json!({"achievement_id": "a b", "name": "x", "metric": {"event_type": "x", "aggregation": "count"}, "steps": [{"threshold": 1}]}),
            "achievement_id",
        ),
        (
            json!({"achievement_id": "ok", "name": "x", "metric": {"event_type": "x", "aggregation": "avg"}, "steps": [{"threshold": 1}]}),
            "metric.aggregation",
        ),
        (
            json!({"achievement_id": "ok", "name": "x", "metric": {"event_type": "x", "aggregation": "count"}, "steps": [{"threshold": 2}, {"threshold": 1}]}),
            "steps[1].threshold",
        ),
        (
            json!({"achievement_id": "ok", "name": "x", "metric": {"event_type": "x", "aggregation": "count"},
                   "steps": [{"threshold": 1, "rewards": [{"type": "coupon", "campaign_id": "nope"}]}]}),
            "steps[0].rewards[0].campaign_id",
        ),
        (
            json!({"achievement_id": "ok", "name": "x", "metric": {"event_type": "x", "aggregation": "count"}, "steps": []}),
            "steps",
        ),
    ];
    for (body, field) in cases {
        let e = app
            .admin_json(Method::POST, "/tenants/hid/achievements", &body)
            .await
            .expect_validation();
        assert!(e.starts_with(field), "{field}: {e}");
    }
}
