//! Authentication (SPEC §3.3–3.6): every accepted way on `GET /health`, every refusal as a 401 envelope,
//! and permission failures as 403.

use crate::support::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[track_caller]
fn assert_health(reply: &Reply, auth: &str) {
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["status"], "ok", "{}", reply.text);
    assert_eq!(reply.body["auth"], auth, "{}", reply.text);
}

#[tokio::test]
async fn health_accepts_an_api_key_as_x_api_key() {
    let app = spawn_app().await;
    let (_, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    assert!(key.starts_with("pk_"));
    assert_health(&send(with_key(app.get("/health"), &key)).await, "api_key");
}

#[tokio::test]
async fn health_accepts_an_api_key_as_bearer() {
    let app = spawn_app().await;
    let (_, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    assert_health(&send(app.get("/health").bearer_auth(&key)).await, "api_key");
}

#[tokio::test]
async fn health_accepts_an_admin_jwt_signed_with_the_key() {
    let app = spawn_app().await;
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let token = admin_jwt(&key, &admin_claims(&key_id));
    assert_health(
        &send(app.get("/health").bearer_auth(&token)).await,
        "admin_jwt",
    );
}

#[tokio::test]
async fn an_admin_jwt_carries_exactly_its_keys_permissions() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    app.create_tenant("t-b").await;
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["t-a"]).await;
    let token = admin_jwt(&key, &admin_claims(&key_id));
    send(app.get("/tenants/t-a/leaderboards").bearer_auth(&token))
        .await
        .expect(StatusCode::OK);
    send(app.get("/tenants/t-b/leaderboards").bearer_auth(&token))
        .await
        .expect_forbidden();
    let body = leaderboard_body("t-a", "lb");
    send(
        app.json(Method::POST, "/tenants/t-a/leaderboards", &body)
            .bearer_auth(&token),
    )
    .await
    .expect_forbidden();
}

#[tokio::test]
async fn health_accepts_a_tenant_hmac_signature() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-hmac").await;
    let reply = send(signed(
        &app,
        Method::GET,
        "/health",
        None,
        "t-hmac",
        &secret,
    ))
    .await;
    assert_health(&reply, "tenant_hmac");
}

#[tokio::test]
async fn health_accepts_the_admin_secret_as_bearer_and_as_x_api_key() {
    let app = spawn_app().await;
    assert_health(
        &send(app.get("/health").bearer_auth(ADMIN_SECRET)).await,
        "admin_secret",
    );
    assert_health(
        &send(with_key(app.get("/health"), ADMIN_SECRET)).await,
        "admin_secret",
    );
}

#[tokio::test]
async fn health_without_credentials_is_401() {
    let app = spawn_app().await;
    send(app.get("/health")).await.expect_unauthorized();
    send(
        app.get("/health")
            .header("authorization", "Basic Zm9vOmJhcg=="),
    )
    .await
    .expect_unauthorized();
    send(app.get("/health").bearer_auth("not-the-admin-secret"))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn an_unknown_api_key_is_401() {
    let app = spawn_app().await;
    let unknown = format!("pk_{}", "0".repeat(48));
    send(with_key(app.get("/health"), &unknown))
        .await
        .expect_unauthorized();
    send(app.get("/health").bearer_auth(&unknown))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_also_through_its_jwt() {
    let app = spawn_app().await;
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let token = admin_jwt(&key, &admin_claims(&key_id));
    send(with_key(app.get("/health"), &key))
        .await
        .expect(StatusCode::OK);
    send(admin(
        app.request(Method::DELETE, &format!("/api-keys/{key_id}")),
    ))
    .await
    .expect(StatusCode::OK);
    let message = send(with_key(app.get("/health"), &key))
        .await
        .expect_unauthorized();
    assert!(message.contains("revoked"), "{message}");
    send(app.get("/health").bearer_auth(&token))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = spawn_app().await;
    // Sub-second precision keeps the test short: the key lives for a second and a half.
    let expires_at = Timestamp::now() + SignedDuration::from_millis(1500);
    let reply = app
        .admin_json(
            Method::POST,
            "/api-keys",
            &json!({"name": "short-lived", "scopes": ["leaderboards:read"], "tenant_ids": ["*"],
                    "expires_at": expires_at.to_string()}),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    let key = reply.body["key"].as_str().expect("key").to_owned();
    let first = send(with_key(app.get("/health"), &key)).await;
    if Timestamp::now() < expires_at {
        first.expect(StatusCode::OK);
    }
    eventually("the expired key to be refused", || async {
        send(with_key(app.get("/health"), &key)).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(Timestamp::now() >= expires_at, "refused before it expired");
    let message = send(with_key(app.get("/health"), &key))
        .await
        .expect_unauthorized();
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn an_expired_admin_jwt_is_refused() {
    let app = spawn_app().await;
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let now = now_secs();
    // Two minutes past `exp`: well beyond the 30 s leeway.
    let claims = json!({"sub": "admin_user", "sub_type": "admin", "sub_id": key_id,
                        "iat": now - 3600, "exp": now - 120});
    let message = send(app.get("/health").bearer_auth(admin_jwt(&key, &claims)))
        .await
        .expect_unauthorized();
    assert!(message.contains("expired"), "{message}");
    // Within the small clock leeway it is still accepted.
    let claims = json!({"sub": "admin_user", "sub_type": "admin", "sub_id": key_id,
                        "iat": now - 3600, "exp": now - 5});
    send(app.get("/health").bearer_auth(admin_jwt(&key, &claims)))
        .await
        .expect(StatusCode::OK);
    // Without `exp` at all: refused too.
    let claims = json!({"sub": "admin_user", "sub_type": "admin", "sub_id": key_id, "iat": now});
    send(app.get("/health").bearer_auth(admin_jwt(&key, &claims)))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn an_unsigned_alg_none_jwt_is_refused() {
    let app = spawn_app().await;
    let (key_id, _) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(admin_claims(&key_id).to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.c2ln"),
    ] {
        send(app.get("/health").bearer_auth(&token))
            .await
            .expect_unauthorized();
    }
}

#[tokio::test]
async fn a_jwt_with_another_algorithm_is_refused() {
    let app = spawn_app().await;
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    for alg in [
        jsonwebtoken::Algorithm::HS384,
        jsonwebtoken::Algorithm::HS512,
    ] {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &admin_claims(&key_id),
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .expect("an encodable token");
        send(app.get("/health").bearer_auth(&token))
            .await
            .expect_unauthorized();
    }
}

#[tokio::test]
async fn a_jwt_signed_with_another_secret_is_refused() {
    let app = spawn_app().await;
    let (key_id, _) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let (_, other_key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let token = admin_jwt(&other_key, &admin_claims(&key_id));
    send(app.get("/health").bearer_auth(&token))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn a_tenant_jwt_is_refused_on_admin_routes() {
    let app = spawn_app().await;
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let mut claims = admin_claims(&key_id);
    claims["sub_type"] = json!("tenant");
    send(app.get("/health").bearer_auth(admin_jwt(&key, &claims)))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn an_hmac_request_with_a_bad_signature_is_refused() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-sig").await;
    let ts = now_secs();
    let wrong_secret = hmac_signature("not-the-secret", "GET", "/health", ts, b"");
    let wrong_path = hmac_signature(&secret, "GET", "/health?x=1", ts, b"");
    for signature in [wrong_secret, wrong_path, "zz-not-hex".to_owned()] {
        let request = app
            .get("/health")
            .header("x-tenant-id", "t-sig")
            .header("x-timestamp", ts.to_string())
            .header("x-signature", signature);
        send(request).await.expect_unauthorized();
    }
    // A valid signature for an unknown tenant, and a signature without its tenant.
    send(signed(
        &app,
        Method::GET,
        "/health",
        None,
        "t-nobody",
        &secret,
    ))
    .await
    .expect_unauthorized();
    let signature = hmac_signature(&secret, "GET", "/health", ts, b"");
    let request = app
        .get("/health")
        .header("x-timestamp", ts.to_string())
        .header("x-signature", signature);
    send(request).await.expect_unauthorized();
}

#[tokio::test]
async fn an_hmac_request_with_a_stale_timestamp_is_refused() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-stale").await;
    for ts in [now_secs() - 1000, now_secs() + 1000] {
        let message = send(signed_at(
            &app,
            Method::GET,
            "/health",
            None,
            "t-stale",
            &secret,
            ts,
        ))
        .await
        .expect_unauthorized();
        assert!(message.contains("X-Timestamp"), "{message}");
    }
    // Within the 300 s window either way is fine.
    for ts in [now_secs() - 290, now_secs() + 290] {
        send(signed_at(
            &app,
            Method::GET,
            "/health",
            None,
            "t-stale",
            &secret,
            ts,
        ))
        .await
        .expect(StatusCode::OK);
    }
}

#[tokio::test]
async fn a_replayed_hmac_signature_is_refused() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-replay").await;
    let ts = now_secs();
    let request = || signed_at(&app, Method::GET, "/health", None, "t-replay", &secret, ts);
    send(request()).await.expect(StatusCode::OK);
    let message = send(request()).await.expect_unauthorized();
    assert!(message.contains("already used"), "{message}");
    // A request signed anew (another timestamp) is fine.
    send(signed_at(
        &app,
        Method::GET,
        "/health",
        None,
        "t-replay",
        &secret,
        ts - 1,
    ))
    .await
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_replayed_hmac_signature_is_refused_across_a_restart() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-replay-restart").await;
    let ts = now_secs();
    let sign = |app: &TestApp| {
        signed_at(
            app,
            Method::GET,
            "/health",
            None,
            "t-replay-restart",
            &secret,
            ts,
        )
    };
    send(sign(&app)).await.expect(StatusCode::OK);
    let app = app.restart().await;
    let message = send(sign(&app)).await.expect_unauthorized();
    assert!(message.contains("already used"), "{message}");
}

#[tokio::test]
async fn an_hmac_signed_body_creates_a_leaderboard() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-body").await;
    let body = leaderboard_body("t-body", "hmac-made").to_string();
    // The query string is part of what is signed, exactly as sent.
    let path = "/tenants/t-body/leaderboards?via=hmac&b=2";
    let reply = send(signed(
        &app,
        Method::POST,
        path,
        Some(&body),
        "t-body",
        &secret,
    ))
    .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["leaderboard_id"], "hmac-made");
    assert_eq!(reply.body["version"], 1);

    // The same signature over a different body does not verify.
    let ts = now_secs() - 2;
    let signature = hmac_signature(&secret, "POST", path, ts, body.as_bytes());
    let tampered = leaderboard_body("t-body", "tampered").to_string();
    let request = app
        .request(Method::POST, path)
        .header("x-tenant-id", "t-body")
        .header("x-timestamp", ts.to_string())
        .header("x-signature", signature)
        .header("content-type", "application/json")
        .body(tampered);
    send(request).await.expect_unauthorized();

    // And the tenant can read what it made.
    let read = send(signed(
        &app,
        Method::GET,
        "/tenants/t-body/leaderboards/hmac-made",
        None,
        "t-body",
        &secret,
    ))
    .await;
    read.expect(StatusCode::OK);
    assert_eq!(read.body["name"], "Global Weekly XP");
}

#[tokio::test]
async fn a_key_restricted_to_one_tenant_is_forbidden_on_another() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    app.create_tenant("t-b").await;
    let (_, key) = app
        .create_key(&["leaderboards:read", "leaderboards:write"], &["t-a"])
        .await;
    send(with_key(app.get("/tenants/t-a/leaderboards"), &key))
        .await
        .expect(StatusCode::OK);
    send(with_key(app.get("/tenants/t-b/leaderboards"), &key))
        .await
        .expect_forbidden();
    let body = leaderboard_body("t-b", "nope");
    send(with_key(
        app.json(Method::POST, "/tenants/t-b/leaderboards", &body),
        &key,
    ))
    .await
    .expect_forbidden();
}

#[tokio::test]
async fn a_key_without_leaderboards_write_cannot_create() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    let (_, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let body = leaderboard_body("t-a", "lb");
    let message = send(with_key(
        app.json(Method::POST, "/tenants/t-a/leaderboards", &body),
        &key,
    ))
    .await
    .expect_forbidden();
    assert!(message.contains("leaderboards:write"), "{message}");
}

#[tokio::test]
async fn a_key_without_keys_write_cannot_create_keys() {
    let app = spawn_app().await;
    let (_, key) = app
        .create_key(&["leaderboards:read", "leaderboards:write"], &["*"])
        .await;
    let body = json!({"name": "child", "scopes": ["leaderboards:read"], "tenant_ids": ["*"]});
    send(with_key(app.json(Method::POST, "/api-keys", &body), &key))
        .await
        .expect_forbidden();
    send(with_key(app.get("/api-keys"), &key))
        .await
        .expect_forbidden();
    let (other_id, _) = app.create_key(&["leaderboards:read"], &["*"]).await;
    send(with_key(
        app.request(Method::DELETE, &format!("/api-keys/{other_id}")),
        &key,
    ))
    .await
    .expect_forbidden();
}

#[tokio::test]
async fn a_key_cannot_grant_scopes_or_tenants_it_does_not_hold() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    app.create_tenant("t-b").await;
    let (_, key) = app
        .create_key(&["keys:write", "leaderboards:read"], &["t-a"])
        .await;
    let create = |scopes: serde_json::Value, tenants: serde_json::Value| {
        with_key(
            app.json(
                Method::POST,
                "/api-keys",
                &json!({"name": "child", "scopes": scopes, "tenant_ids": tenants}),
            ),
            &key,
        )
    };
    send(create(json!(["leaderboards:write"]), json!(["t-a"])))
        .await
        .expect_forbidden();
    send(create(json!(["admin"]), json!(["t-a"])))
        .await
        .expect_forbidden();
    send(create(json!(["leaderboards:read"]), json!(["t-b"])))
        .await
        .expect_forbidden();
    send(create(json!(["leaderboards:read"]), json!(["*"])))
        .await
        .expect_forbidden();
    // Within what it holds, it may.
    let reply = send(create(json!(["leaderboards:read"]), json!(["t-a"]))).await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["tenant_ids"], json!(["t-a"]));
}

#[tokio::test]
async fn a_tenant_signature_is_forbidden_on_another_tenants_routes() {
    let app = spawn_app().await;
    let secret_a = app.create_tenant("t-a").await;
    app.create_tenant("t-b").await;
    app.create_leaderboard("t-b", "theirs").await;
    send(signed(
        &app,
        Method::GET,
        "/tenants/t-a/leaderboards",
        None,
        "t-a",
        &secret_a,
    ))
    .await
    .expect(StatusCode::OK);
    for path in [
        "/tenants/t-b/leaderboards",
        "/tenants/t-b/leaderboards/theirs",
        "/tenants/t-b",
    ] {
        send(signed(&app, Method::GET, path, None, "t-a", &secret_a))
            .await
            .expect_forbidden();
    }
    let body = leaderboard_body("t-b", "mine").to_string();
    send(signed(
        &app,
        Method::POST,
        "/tenants/t-b/leaderboards",
        Some(&body),
        "t-a",
        &secret_a,
    ))
    .await
    .expect_forbidden();
    // The global list shows a tenant signature its own leaderboards only.
    app.create_leaderboard("t-a", "ours").await;
    let list = send(signed(
        &app,
        Method::GET,
        "/leaderboards",
        None,
        "t-a",
        &secret_a,
    ))
    .await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total"], 1, "{}", list.text);
    assert_eq!(list.body["leaderboards"][0]["leaderboard_id"], "ours");
    // A tenant signature is not an admin: it cannot create tenants or keys.
    let body = json!({"tenant_id": "t-c", "name": "C"}).to_string();
    send(signed(
        &app,
        Method::POST,
        "/tenants",
        Some(&body),
        "t-a",
        &secret_a,
    ))
    .await
    .expect_forbidden();
    let body = json!({"name": "k", "scopes": ["leaderboards:read"], "tenant_ids": ["t-a"]});
    send(signed(
        &app,
        Method::POST,
        "/api-keys",
        Some(&body.to_string()),
        "t-a",
        &secret_a,
    ))
    .await
    .expect_forbidden();
}

#[tokio::test]
async fn auth_disabled_lets_health_through_without_credentials() {
    let mut config = test_config();
    config.auth_enabled = false;
    config.admin_secret = None;
    let app = spawn_app_with(config).await;
    let reply = send(app.get("/health")).await;
    assert_health(&reply, "unauthenticated");
}

/// RFC 7519 NumericDates may carry fractions (JavaScript backends often sign `Date.now() / 1000 + 3600`).
#[tokio::test]
async fn a_tenant_jwt_with_a_fractional_exp_is_accepted_and_still_expires() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-frac").await;
    let now = now_secs() as f64;
    let token = |exp: f64| {
        admin_jwt(
            &secret,
            &json!({"sub": "p1", "sub_type": "tenant", "sub_id": "t-frac", "iat": now, "exp": exp}),
        )
    };
    for _ in 0..2 {
        send(
            app.get("/v1/leaderboards")
                .bearer_auth(token(now + 3600.25)),
        )
        .await
        .expect(StatusCode::OK);
    }
    send(app.get("/v1/leaderboards").bearer_auth(token(now - 3600.5)))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn before_the_signature_verifies_every_refusal_is_the_same() {
    let app = spawn_app().await;
    app.create_tenant("t-known").await;
    let (live_id, _) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let (revoked_id, _) = app.create_key(&["leaderboards:read"], &["*"]).await;
    send(admin(
        app.request(Method::DELETE, &format!("/api-keys/{revoked_id}")),
    ))
    .await
    .expect(StatusCode::OK);
    let forged = "pk_not-the-key-0123456789abcdef0123456789";
    // Admin JWTs signed with the wrong secret: a live key, a revoked key, no such key.
    let mut messages = Vec::new();
    for key_id in [live_id.as_str(), revoked_id.as_str(), "no-such-key"] {
        let token = admin_jwt(forged, &admin_claims(key_id));
        messages.push(
            send(app.get("/health").bearer_auth(token))
                .await
                .expect_unauthorized(),
        );
    }
    // Tenant JWTs signed with the wrong secret: a known tenant and an unknown one.
    for tenant in ["t-known", "t-unknown"] {
        let now = now_secs();
        let token = admin_jwt(
            "wrong-secret-wrong-secret",
            &json!({"sub": "p1", "sub_type": "tenant", "sub_id": tenant, "iat": now,
                    "exp": now + 600}),
        );
        messages.push(
            send(app.get("/v1/leaderboards").bearer_auth(token))
                .await
                .expect_unauthorized(),
        );
    }
    assert!(
        messages.iter().all(|m| m == &messages[0]),
        "refusals differ: {messages:?}"
    );
    assert!(!messages[0].contains("revoked") && !messages[0].contains("unknown"));
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-iat").await;
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let now = now_secs();
    let tenant = |iat: i64| {
        admin_jwt(
            &secret,
            &json!({"sub": "p1", "sub_type": "tenant", "sub_id": "t-iat", "iat": iat,
                    "exp": now + 7200}),
        )
    };
    let message = send(app.get("/v1/leaderboards").bearer_auth(tenant(now + 3600)))
        .await
        .expect_unauthorized();
    assert!(message.contains("iat"), "{message}");
    // Within the clock leeway it is fine.
    send(app.get("/v1/leaderboards").bearer_auth(tenant(now + 10)))
        .await
        .expect(StatusCode::OK);
    let admin = |iat: i64| {
        admin_jwt(
            &key,
            &json!({"sub": "ops", "sub_type": "admin", "sub_id": key_id, "iat": iat,
                    "exp": now + 7200}),
        )
    };
    send(app.get("/health").bearer_auth(admin(now + 3600)))
        .await
        .expect_unauthorized();
    send(app.get("/health").bearer_auth(admin(now + 10)))
        .await
        .expect(StatusCode::OK);
}
