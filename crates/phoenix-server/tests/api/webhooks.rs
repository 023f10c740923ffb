//! Webhooks over real HTTP (SPEC §7.6, §7.7), with a real receiver on a random port: the secret is
//! shown once; a delivery is signed (Standard Webhooks) and a receiver that answers 500 first gets the
//! retry with the same `webhook-id` and a valid signature; the deliveries log shows each attempt; a
//! 410 disables the webhook and its messages wait until it is active again; rotation sends both
//! signatures; private addresses are refused when set and at delivery (a name that resolves inside).

use crate::support::*;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use jiff::Timestamp;
use phoenix_core::webhook::{secret_key, sign};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// A receiver that answers the statuses in `script` in turn (then the last one for ever).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn answer(&self, script: &[u16]) {
        *self.script.lock().unwrap() = script.to_vec();
    }
}

async fn receive(AxState(r): AxState<Receiver>, headers: HeaderMap, body: String) -> AxStatus {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    r.got.lock().unwrap().push(Received {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body,
    });
    let code = {
        let mut script = r.script.lock().unwrap();
        if script.len() > 1 {
            script.remove(0)
        } else {
            script.first().copied().unwrap_or(200)
        }
    };
    AxStatus::from_u16(code).unwrap()
}

/// Starts a receiver on 127.0.0.1; answers it and its port.
async fn receiver(script: &[u16]) -> (Receiver, u16) {
    let r = Receiver::default();
    r.answer(script);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (r, port)
}

fn webhook_config() -> phoenix_server::ServerConfig {
    let mut config = test_config();
    config.webhook_allow_private = true;
    config.webhook_retry_schedule = vec![Duration::from_millis(300), Duration::from_millis(300)];
    config
}

/// Whether `signature` (a `webhook-signature` header) holds a valid v1 signature of `r` by `secret`.
fn signed_by(r: &Received, secret: &str) -> bool {
    let key = secret_key(secret).unwrap();
    let ts: i64 = r.timestamp.parse().unwrap();
    let expected = sign(&key, &r.id, ts, r.body.as_bytes());
    r.signature.split(' ').any(|s| s == expected)
}

async fn create_hook(app: &TestApp, tenant: &str, url: &str, events: &[&str]) -> Value {
    let r = app
        .admin_json(
            Method::POST,
            &format!("/tenants/{tenant}/webhooks"),
            &json!({"url": url, "events": events, "description": "backend"}),
        )
        .await;
    r.expect(StatusCode::CREATED);
    r.body
}

async fn campaign_and_redeem(app: &TestApp, secret: &str, tenant: &str, user: &str) -> Value {
    let code = format!("HOOK{}", user.to_uppercase());
    app.admin_json(
        Method::POST,
        &format!("/tenants/{tenant}/coupon-campaigns"),
        &json!({"campaign_id": format!("c-{user}"), "name": "Hook", "code": code,
                "rewards": [{"type": "currency", "currency": "gems", "amount": 5}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    let token = tenant_token(secret, tenant, Some(user), None);
    let r = send(
        app.request(Method::POST, &format!("/v1/coupons/{code}/redeem"))
            .bearer_auth(token),
    )
    .await;
    r.expect(StatusCode::OK);
    r.body
}

async fn deliveries(app: &TestApp, tenant: &str, id: &str) -> Vec<Value> {
    let r = app
        .admin_get(&format!(
            "/tenants/{tenant}/webhooks/{id}/deliveries?limit=200"
        ))
        .await;
    r.expect(StatusCode::OK);
    r.body["deliveries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_id_and_a_valid_signature() {
    let app = spawn_app_with(webhook_config()).await;
    let secret = app.create_tenant("wh").await;
    let (rx, port) = receiver(&[500, 200]).await;
    let hook = create_hook(
        &app,
        "wh",
        &format!("http://127.0.0.1:{port}/hook"),
        &["coupon.redeemed", "reward.granted"],
    )
    .await;
    let id = hook["webhook_id"].as_str().unwrap().to_owned();
    let whsec = hook["secret"].as_str().unwrap().to_owned();
    assert!(whsec.starts_with("whsec_"), "{hook}");
    assert_eq!(hook["status"], "active");
    // Shown once: never in reads.
    let read = app.admin_get(&format!("/tenants/wh/webhooks/{id}")).await;
    read.expect(StatusCode::OK);
    assert!(read.body.get("secret").is_none(), "{}", read.body);
    assert!(!read.text.contains(&whsec));
    let list = app.admin_get("/tenants/wh/webhooks").await;
    assert_eq!(list.body["total"], 1);
    assert!(!list.text.contains(&whsec));

    let redeemed = campaign_and_redeem(&app, &secret, "wh", "ann").await;
    // Two messages (the redemption and its grant); the first attempt of the first one gets 500.
    eventually("both messages delivered", || {
        let app = &app;
        let id = id.clone();
        async move {
            deliveries(app, "wh", &id)
                .await
                .iter()
                .filter(|d| d["state"] == "delivered" && d["attempt"].as_u64() >= Some(1))
                .count()
                >= 3
        }
    })
    .await;
    let got = rx.received();
    assert_eq!(got.len(), 3, "{got:?}");
    // The message that got the 500 (the first request) came again with the same id; the other once.
    let retried = got[0].id.clone();
    assert_eq!(got.iter().filter(|r| r.id == retried).count(), 2, "{got:?}");
    assert_eq!(got.iter().filter(|r| r.id != retried).count(), 1, "{got:?}");
    for r in &got {
        assert!(r.id.starts_with("msg_"), "{r:?}");
        assert!(signed_by(r, &whsec), "bad signature: {r:?}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["id"], r.id.as_str());
        assert_eq!(body["tenant_id"], "wh");
        assert!(body["timestamp"].is_string());
        let ts: i64 = r.timestamp.parse().unwrap();
        assert!((ts - Timestamp::now().as_second()).abs() < 60);
    }
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let redemption = bodies
        .iter()
        .find(|b| b["type"] == "coupon.redeemed")
        .expect("a coupon.redeemed message");
    assert_eq!(
        redemption["data"]["redemption_id"],
        redeemed["redemption"]["redemption_id"]
    );
    let granted = bodies
        .iter()
        .find(|b| b["type"] == "reward.granted")
        .expect("a reward.granted message");
    assert_eq!(granted["data"]["user_id"], "ann");
    assert_eq!(granted["data"]["source"]["kind"], "coupon");
    assert_eq!(granted["data"]["reward"]["amount"], 5);

    // The log: one row per attempt, newest first; the failed attempt has its status code.
    let log = deliveries(&app, "wh", &id).await;
    assert_eq!(log.len(), 3, "{log:?}");
    let first = log
        .iter()
        .find(|d| d["attempt"] == 1 && d["delivery_id"] == got[0].id.as_str())
        .expect("the first attempt");
    assert_eq!(first["status_code"], 500);
    assert_eq!(first["state"], "delivered");
    assert!(first["duration_ms"].is_u64());
    let second = log.iter().find(|d| d["attempt"] == 2).expect("the retry");
    assert_eq!(second["status_code"], 200);
    assert!(second["next_attempt_at"].is_null());

    // Metrics (counted by whichever node made each attempt).
    assert_eq!(app.stat_total(|s| s.rewards.deliveries_delivered), 2);
    assert_eq!(app.stat_total(|s| s.rewards.deliveries_retried), 1);
    if app.nodes() == 1 {
        let metrics = send(app.get("/metrics")).await.text;
        assert!(
            metrics.contains("phoenix_webhook_deliveries_total{outcome=\"delivered\"} 2"),
            "{metrics}"
        );
        assert!(metrics.contains("phoenix_webhook_deliveries_total{outcome=\"retried\"} 1"));
    }

    // Rotation: both signatures during the grace period, the new one first.
    let rotated = app
        .admin_json(
            Method::POST,
            &format!("/tenants/wh/webhooks/{id}/secret:rotate"),
            &json!({"grace_period_seconds": 3600}),
        )
        .await;
    rotated.expect(StatusCode::OK);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, whsec);
    campaign_and_redeem(&app, &secret, "wh", "bob").await;
    eventually("bob's messages", || async { rx.received().len() >= 5 }).await;
    let last = rx.received().pop().unwrap();
    let parts: Vec<&str> = last.signature.split(' ').collect();
    assert_eq!(parts.len(), 2, "{last:?}");
    let key = secret_key(&new_secret).unwrap();
    assert_eq!(
        parts[0],
        sign(
            &key,
            &last.id,
            last.timestamp.parse().unwrap(),
            last.body.as_bytes()
        )
    );
    assert!(signed_by(&last, &whsec));
}

#[tokio::test]
async fn a_410_disables_the_webhook_and_its_messages_wait_until_it_is_active_again() {
    let app = spawn_app_with(webhook_config()).await;
    let secret = app.create_tenant("gone").await;
    let (rx, port) = receiver(&[410, 200]).await;
    let hook = create_hook(
        &app,
        "gone",
        &format!("http://127.0.0.1:{port}/hook"),
        &["coupon.redeemed"],
    )
    .await;
    let id = hook["webhook_id"].as_str().unwrap().to_owned();
    campaign_and_redeem(&app, &secret, "gone", "ann").await;
    eventually("the webhook is disabled", || {
        let app = &app;
        let id = id.clone();
        async move {
            app.admin_get(&format!("/tenants/gone/webhooks/{id}"))
                .await
                .body["status"]
                == "disabled"
        }
    })
    .await;
    let w = app.admin_get(&format!("/tenants/gone/webhooks/{id}")).await;
    assert!(
        w.body["disabled_reason"].as_str().unwrap().contains("410"),
        "{}",
        w.body
    );
    // Disabled: a new message waits, nothing is sent.
    campaign_and_redeem(&app, &secret, "gone", "bob").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rx.received().len(), 1);
    let log = deliveries(&app, "gone", &id).await;
    assert!(log.iter().all(|d| d["state"] == "pending"), "{log:?}");
    assert_eq!(log.iter().filter(|d| d["status_code"] == 410).count(), 1);
    // Active again: both are delivered.
    app.admin_json(
        Method::PATCH,
        &format!("/tenants/gone/webhooks/{id}"),
        &json!({"status": "active"}),
    )
    .await
    .expect(StatusCode::OK);
    eventually("both delivered after re-enabling", || async {
        let log = deliveries(&app, "gone", &id).await;
        log.iter().filter(|d| d["state"] == "delivered").count() >= 2
            && log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
}

#[tokio::test]
async fn private_addresses_are_refused_when_set_and_when_a_name_resolves_inside() {
    let mut config = test_config();
    config.webhook_retry_schedule = vec![Duration::from_millis(200)];
    let app = spawn_app_with(config).await;
    let secret = app.create_tenant("priv").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest",
        "http://127.1/hook",
        "http://2130706433/hook",
        "http://0x7f.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "ftp://example.com/x",
    ] {
        let e = app
            .admin_json(
                Method::POST,
                "/tenants/priv/webhooks",
                &json!({"url": url, "events": ["coupon.redeemed"]}),
            )
            .await
            .expect_validation();
        assert!(e.starts_with("url"), "{url}: {e}");
    }
    // This machine's own name resolves inside (loopback or its private address): accepted when set
    // (it is a name), refused at delivery.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .unwrap()
        .collect();
    assert!(
        resolved
            .iter()
            .any(|a| phoenix_core::webhook::is_private(a.ip())),
        "{host} resolves to {resolved:?}, none of them private"
    );
    let (rx, port) = receiver(&[200]).await;
    let hook = create_hook(
        &app,
        "priv",
        &format!("http://{host}:{port}/hook"),
        &["coupon.redeemed"],
    )
    .await;
    let id = hook["webhook_id"].as_str().unwrap().to_owned();
    campaign_and_redeem(&app, &secret, "priv", "ann").await;
    eventually("the message fails", || {
        let app = &app;
        let id = id.clone();
        async move {
            deliveries(app, "priv", &id)
                .await
                .iter()
                .any(|d| d["state"] == "failed")
        }
    })
    .await;
    let log = deliveries(&app, "priv", &id).await;
    assert!(
        log.iter().all(|d| d["error"]
            .as_str()
            .is_some_and(|e| e.contains("private") || e.contains("loopback"))),
        "{log:?}"
    );
    assert!(rx.received().is_empty());
    // Bodies name the field.
    let e = app
        .admin_json(
            Method::POST,
            "/tenants/priv/webhooks",
            &json!({"url": "https://example.com/x", "events": ["reward.granted", "nope"]}),
        )
        .await
        .expect_validation();
    assert!(e.starts_with("events[1]"), "{e}");
}

#[tokio::test]
async fn completions_windows_and_voids_are_reported_once_each() {
    let app = spawn_app_with(webhook_config()).await;
    let secret = app.create_tenant("ev").await;
    let (rx, port) = receiver(&[200]).await;
    create_hook(
        &app,
        "ev",
        &format!("http://127.0.0.1:{port}/hook"),
        &[
            "achievement.completed",
            "window.closed",
            "grant.voided",
            "reward.granted",
        ],
    )
    .await;
    // A custom board that ends in two seconds, and an achievement with a reward.
    let now = Timestamp::now();
    app.admin_json(
        Method::POST,
        "/tenants/ev/leaderboards",
        &json!({"leaderboard_id": "sprint", "name": "Sprint",
                "config": {"timeframe": {"type": "custom",
                                         "starts_at": (now - jiff::SignedDuration::from_hours(1)).to_string(),
                                         "ends_at": (now + jiff::SignedDuration::from_secs(2)).to_string()},
                           "scoring": {"rules": [{"event_type": "match", "points_expression": "attrs.score"}]}}}),
    )
    .await
    .expect(StatusCode::CREATED);
    app.admin_json(
        Method::POST,
        "/tenants/ev/achievements",
        &json!({"achievement_id": "first", "name": "First match",
                "metric": {"event_type": "match", "aggregation": "count"},
                "steps": [{"threshold": 1, "rewards": [{"type": "badge", "badge": "rookie"}]}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    let token = tenant_token(&secret, "ev", None, None);
    let events: Vec<Value> = [("ann", 30), ("bob", 20), ("ann", 5)]
        .iter()
        .enumerate()
        .map(|(i, (u, s))| {
            json!({"event_id": format!("e{i}"), "type": "match", "actor": {"user_id": u},
                   "occurred_at": now.to_string(), "attrs": {"score": s}})
        })
        .collect();
    for _ in 0..2 {
        send(
            app.json(Method::POST, "/v1/events/batch", &json!({"events": events}))
                .bearer_auth(&token),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    }
    let by_type = |t: &str| -> Vec<Value> {
        rx.received()
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
            .filter(|b| b["type"] == t)
            .collect()
    };
    eventually(
        "two completions, their grants, and the closed window",
        || async {
            by_type("achievement.completed").len() >= 2
                && by_type("reward.granted").len() >= 2
                && !by_type("window.closed").is_empty()
        },
    )
    .await;
    // Nothing more comes (each occurrence once).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let completed = by_type("achievement.completed");
    assert_eq!(completed.len(), 2, "{completed:?}");
    let ann = completed
        .iter()
        .find(|b| b["data"]["user_id"] == "ann")
        .unwrap();
    assert_eq!(ann["data"]["achievement_id"], "first");
    assert_eq!(ann["data"]["step"], 0);
    assert_eq!(ann["data"]["threshold"], 1.0);
    assert_eq!(ann["data"]["grant_ids"].as_array().unwrap().len(), 1);
    let closed = by_type("window.closed");
    assert_eq!(closed.len(), 1, "{closed:?}");
    let data = &closed[0]["data"];
    assert_eq!(data["leaderboard_id"], "sprint");
    assert_eq!(data["ranked_entries"], 2);
    assert_eq!(data["top"][0]["user_id"], "ann");
    assert_eq!(data["top"][0]["score"], 35.0);
    assert_eq!(data["top"][1]["rank"], 2);
    assert!(data["window"]["ends_at"].is_string());
    // A void is reported with the grant.
    let grant_id = ann["data"]["grant_ids"][0].as_str().unwrap().to_owned();
    app.admin_json(
        Method::POST,
        &format!("/tenants/ev/grants/{grant_id}/void"),
        &json!({"reason": "test"}),
    )
    .await
    .expect(StatusCode::OK);
    eventually("the void", || async { !by_type("grant.voided").is_empty() }).await;
    let voided = by_type("grant.voided");
    assert_eq!(voided[0]["data"]["grant_id"], grant_id.as_str());
    assert_eq!(voided[0]["data"]["status"], "voided");
    assert_eq!(voided[0]["data"]["void_reason"], "test");
    // Every message arrived once: no id twice.
    let ids: std::collections::BTreeSet<String> = rx.received().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), rx.received().len());
}
