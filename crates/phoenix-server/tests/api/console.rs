//! Console users and sessions over real HTTP (SPEC §3.6, §10): the first ADMIN made with the admin
//! secret, login and its cookies, refresh rotation with reuse detection, logout, VIEWERs refused on every
//! kind of write, cookie authentication with its CSRF check, slowed brute force, and development mode.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

async fn create_user(app: &TestApp, username: &str, role: &str) {
    app.admin_json(
        Method::POST,
        "/users",
        &json!({"username": username, "password": PASSWORD, "role": role}),
    )
    .await
    .expect(StatusCode::CREATED);
}

async fn login_as(app: &TestApp, username: &str, password: &str) -> Reply {
    send(app.json(
        Method::POST,
        "/auth/login",
        &json!({"username": username, "password": password}),
    ))
    .await
}

/// Logs in and returns the token pair's body.
async fn login(app: &TestApp, username: &str) -> Value {
    let reply = login_as(app, username, PASSWORD).await;
    reply.expect(StatusCode::OK);
    reply.body
}

fn token(body: &Value, name: &str) -> String {
    body[name].as_str().expect("a token").to_owned()
}

/// Every `Set-Cookie` of a reply, as `(name, whole header value)`.
fn set_cookies(reply: &Reply) -> Vec<(String, String)> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text").to_owned())
        .map(|v| (v.split('=').next().unwrap_or_default().to_owned(), v))
        .collect()
}

fn cookie_value(reply: &Reply, name: &str) -> String {
    let (_, header) = set_cookies(reply)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", reply.headers));
    header
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("a cookie value")
}

#[tokio::test]
async fn auth_config_says_whether_authentication_is_on() {
    let app = spawn_app().await;
    let reply = send(app.get("/auth/config")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["authentication_enabled"], true);
    // The scopes an API key can carry, each with a label, for the console's key form.
    let scopes = reply.body["scopes"].as_array().expect("scopes");
    let names: Vec<&str> = scopes.iter().filter_map(|s| s["scope"].as_str()).collect();
    assert_eq!(
        names,
        [
            "leaderboards:read",
            "leaderboards:write",
            "rewards:read",
            "rewards:write",
            "achievements:read",
            "achievements:write",
            "tenants:read",
            "tenants:write",
            "keys:write",
            "admin"
        ]
    );
    assert_eq!(
        scopes[0],
        json!({"scope": "leaderboards:read", "label": "Read leaderboards"})
    );
    assert!(
        scopes
            .iter()
            .all(|s| s["label"].as_str().is_some_and(|l| !l.is_empty()))
    );

    let mut config = test_config();
    config.auth_enabled = false;
    let dev = spawn_app_with(config).await;
    let reply = send(dev.get("/auth/config")).await;
    assert_eq!(reply.body["authentication_enabled"], false);
    assert_eq!(reply.body["scopes"], json!(scopes));
}

#[tokio::test]
async fn the_console_page_and_its_modules_are_served_with_a_strict_policy() {
    let app = spawn_app().await;
    let page = send(app.get("/console")).await;
    page.expect(StatusCode::OK);
    assert!(
        page.text
            .contains(r#"<script type="module" src="/console/js/main.js"></script>"#),
        "{}",
        page.text
    );
    for path in [
        "/console",
        "/console/js/main.js",
        "/console/js/ui.js",
        "/console/app.css",
    ] {
        let reply = send(app.get(path)).await;
        reply.expect(StatusCode::OK);
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            header("content-security-policy").contains("script-src 'self';"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        if path.ends_with(".js") {
            assert_eq!(
                header("content-type"),
                "text/javascript; charset=utf-8",
                "{path}"
            );
        }
    }
    // Only the listed modules: nothing else under the directory, and no way out of it.
    for path in [
        "/console/js/nope.js",
        "/console/js/..%2Fapp.css",
        "/console/js/%2E%2E%2Fmod.rs",
        "/console/app.js",
    ] {
        send(app.get(path)).await.expect_not_found();
    }
}

#[tokio::test]
async fn the_first_admin_is_made_with_the_admin_secret_and_logs_in_with_cookies() {
    let app = spawn_app().await;
    // Without credentials nobody may create users.
    send(app.json(
        Method::POST,
        "/users",
        &json!({"username": "root", "password": PASSWORD, "role": "ADMIN"}),
    ))
    .await
    .expect_unauthorized();
    create_user(&app, "root", "ADMIN").await;

    let reply = login_as(&app, "root", PASSWORD).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["role"], "ADMIN");
    assert_eq!(reply.body["expires_in"], 900);
    let access = token(&reply.body, "access_token");
    assert!(access.starts_with("phx_at_"), "{access}");
    assert!(token(&reply.body, "refresh_token").starts_with("phx_rt_"));

    let cookies = set_cookies(&reply);
    let names: Vec<&str> = cookies.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "phoenix-access-token",
            "phoenix-refresh-token",
            "phoenix-csrf-token"
        ]
    );
    for (name, header) in &cookies {
        assert!(header.contains("SameSite=Strict"), "{header}");
        // On loopback the cookies work over plain HTTP.
        assert!(!header.contains("Secure"), "{header}");
        assert_eq!(
            header.contains("HttpOnly"),
            name != "phoenix-csrf-token",
            "{header}"
        );
    }
    assert_eq!(cookie_value(&reply, "phoenix-access-token"), access);

    // The access token works on Admin routes as a Bearer token.
    let me = send(app.get("/auth/me").bearer_auth(&access)).await;
    me.expect(StatusCode::OK);
    assert_eq!(
        me.body,
        json!({"username": "root", "role": "ADMIN", "credential": "console_user"})
    );
    send(app.get("/tenants").bearer_auth(&access))
        .await
        .expect(StatusCode::OK);
    send(
        app.json(
            Method::POST,
            "/tenants",
            &json!({"tenant_id": "t-console", "name": "By console"}),
        )
        .bearer_auth(&access),
    )
    .await
    .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn cookies_are_secure_when_not_on_loopback() {
    let app = spawn_app().await;
    create_user(&app, "remote", "ADMIN").await;
    let reply = send(
        app.json(
            Method::POST,
            "/auth/login",
            &json!({"username": "remote", "password": PASSWORD}),
        )
        .header("host", "phoenix.example.com"),
    )
    .await;
    reply.expect(StatusCode::OK);
    for (_, header) in set_cookies(&reply) {
        assert!(header.contains("; Secure"), "{header}");
    }
}

#[tokio::test]
async fn cookies_can_be_forced_secure_behind_a_tls_proxy() {
    let mut config = test_config();
    config.force_secure_cookies = true;
    let app = spawn_app_with(config).await;
    create_user(&app, "proxied", "ADMIN").await;
    // On loopback, as a proxy on the same machine would connect.
    let reply = login_as(&app, "proxied", PASSWORD).await;
    reply.expect(StatusCode::OK);
    let cookies = set_cookies(&reply);
    assert_eq!(cookies.len(), 3);
    for (_, header) in cookies {
        assert!(header.contains("; Secure"), "{header}");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_the_same_401() {
    let app = spawn_app().await;
    create_user(&app, "alice", "VIEWER").await;
    let wrong = login_as(&app, "alice", "not the password").await;
    let unknown = login_as(&app, "nobody", PASSWORD).await;
    assert_eq!(wrong.expect_unauthorized(), unknown.expect_unauthorized());
    assert!(set_cookies(&wrong).is_empty());
    // A malformed body is 400 naming the field.
    let message = send(app.json(Method::POST, "/auth/login", &json!({"username": "alice"})))
        .await
        .expect_validation();
    assert!(message.contains("password"), "{message}");
}

#[tokio::test]
async fn users_are_validated_listed_patched_and_deleted() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"username": "bob", "password": PASSWORD, "role": "OWNER"}),
            "role",
        ),
        (
            json!({"username": "bob", "password": "short", "role": "ADMIN"}),
            "password",
        ),
        (
            json!({"username": "bad name!", "password": PASSWORD, "role": "ADMIN"}),
            "username",
        ),
        (
            json!({"username": "bob", "password": PASSWORD, "role": "ADMIN", "extra": 1}),
            "extra",
        ),
    ];
    for (body, field) in cases {
        let message = app
            .admin_json(Method::POST, "/users", &body)
            .await
            .expect_validation();
        assert!(message.contains(field), "{field}: {message}");
    }
    create_user(&app, "bob", "VIEWER").await;
    let dup = app
        .admin_json(
            Method::POST,
            "/users",
            &json!({"username": "bob", "password": PASSWORD, "role": "ADMIN"}),
        )
        .await;
    dup.expect_error(StatusCode::CONFLICT, "CONFLICT");

    let list = app.admin_get("/users").await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["users"][0]["username"], "bob");
    assert_eq!(list.body["users"][0]["role"], "VIEWER");
    assert!(
        !list.text.contains("argon2") && !list.text.contains("password"),
        "{}",
        list.text
    );

    let patched = app
        .admin_json(Method::PATCH, "/users/bob", &json!({"role": "ADMIN"}))
        .await;
    patched.expect(StatusCode::OK);
    assert_eq!(patched.body["role"], "ADMIN");
    app.admin_json(Method::PATCH, "/users/ghost", &json!({"role": "ADMIN"}))
        .await
        .expect_not_found();

    // A new password: the old one stops working and existing sessions end.
    let session = login(&app, "bob").await;
    app.admin_json(
        Method::PATCH,
        "/users/bob",
        &json!({"password": "a brand new password"}),
    )
    .await
    .expect(StatusCode::OK);
    login_as(&app, "bob", PASSWORD).await.expect_unauthorized();
    send(
        app.get("/auth/me")
            .bearer_auth(token(&session, "access_token")),
    )
    .await
    .expect_unauthorized();
    login_as(&app, "bob", "a brand new password")
        .await
        .expect(StatusCode::OK);

    // bob is the only ADMIN now: another one first, then bob may go.
    create_user(&app, "keeper", "ADMIN").await;
    let deleted = send(admin(app.request(Method::DELETE, "/users/bob"))).await;
    deleted.expect(StatusCode::OK);
    assert_eq!(deleted.body["username"], "bob");
    send(admin(app.request(Method::DELETE, "/users/bob")))
        .await
        .expect_not_found();
    login_as(&app, "bob", "a brand new password")
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn refresh_rotates_the_pair_and_reusing_a_spent_token_revokes_the_family() {
    let app = spawn_app().await;
    create_user(&app, "carol", "ADMIN").await;
    let first = login(&app, "carol").await;
    let refresh =
        |t: String| send(app.json(Method::POST, "/auth/refresh", &json!({"refresh_token": t})));
    let second = refresh(token(&first, "refresh_token")).await;
    second.expect(StatusCode::OK);
    assert_eq!(second.body["role"], "ADMIN");
    assert_eq!(set_cookies(&second).len(), 3);
    let second = second.body;
    assert_ne!(
        token(&second, "access_token"),
        token(&first, "access_token")
    );
    // The old access token was replaced; the new one works.
    send(
        app.get("/auth/me")
            .bearer_auth(token(&first, "access_token")),
    )
    .await
    .expect_unauthorized();
    send(
        app.get("/auth/me")
            .bearer_auth(token(&second, "access_token")),
    )
    .await
    .expect(StatusCode::OK);

    // The spent refresh token again: refused, and the whole family is revoked.
    let reused = refresh(token(&first, "refresh_token")).await;
    let message = reused.expect_unauthorized();
    assert!(message.contains("already used"), "{message}");
    send(
        app.get("/auth/me")
            .bearer_auth(token(&second, "access_token")),
    )
    .await
    .expect_unauthorized();
    refresh(token(&second, "refresh_token"))
        .await
        .expect_unauthorized();
    refresh("phx_rt_not-a-token".into())
        .await
        .expect_unauthorized();
    // Another login starts a new family.
    let again = login(&app, "carol").await;
    send(
        app.get("/auth/me")
            .bearer_auth(token(&again, "access_token")),
    )
    .await
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn any_spent_refresh_token_of_a_live_family_revokes_it() {
    let app = spawn_app().await;
    create_user(&app, "erin", "ADMIN").await;
    let refresh =
        |t: String| send(app.json(Method::POST, "/auth/refresh", &json!({"refresh_token": t})));
    // R1 → R2 → R3, then R1 (not the last one spent).
    let first = login(&app, "erin").await;
    let second = refresh(token(&first, "refresh_token")).await;
    second.expect(StatusCode::OK);
    let third = refresh(token(&second.body, "refresh_token")).await;
    third.expect(StatusCode::OK);
    let message = refresh(token(&first, "refresh_token"))
        .await
        .expect_unauthorized();
    assert!(message.contains("already used"), "{message}");
    send(
        app.get("/auth/me")
            .bearer_auth(token(&third.body, "access_token")),
    )
    .await
    .expect_unauthorized();
    refresh(token(&third.body, "refresh_token"))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn logout_with_a_spent_refresh_token_ends_its_session() {
    let app = spawn_app().await;
    create_user(&app, "gus", "ADMIN").await;
    let first = login(&app, "gus").await;
    let second = send(app.json(
        Method::POST,
        "/auth/refresh",
        &json!({"refresh_token": token(&first, "refresh_token")}),
    ))
    .await;
    second.expect(StatusCode::OK);
    send(app.json(
        Method::POST,
        "/auth/logout",
        &json!({"refresh_token": token(&first, "refresh_token")}),
    ))
    .await
    .expect(StatusCode::OK);
    send(
        app.get("/auth/me")
            .bearer_auth(token(&second.body, "access_token")),
    )
    .await
    .expect_unauthorized();
}

#[tokio::test]
async fn logout_ends_the_access_and_refresh_tokens_and_clears_the_cookies() {
    let app = spawn_app().await;
    create_user(&app, "dave", "ADMIN").await;
    let pair = login(&app, "dave").await;
    let out = send(
        app.request(Method::POST, "/auth/logout")
            .bearer_auth(token(&pair, "access_token")),
    )
    .await;
    out.expect(StatusCode::OK);
    assert_eq!(out.body["status"], "logged_out");
    for (_, header) in set_cookies(&out) {
        assert!(header.contains("Max-Age=0"), "{header}");
    }
    send(
        app.get("/auth/me")
            .bearer_auth(token(&pair, "access_token")),
    )
    .await
    .expect_unauthorized();
    send(app.json(
        Method::POST,
        "/auth/refresh",
        &json!({"refresh_token": token(&pair, "refresh_token")}),
    ))
    .await
    .expect_unauthorized();
    // Nothing to log out with: 401.
    send(app.request(Method::POST, "/auth/logout"))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let app = spawn_app().await;
    create_user(&app, "erin", "VIEWER").await;
    let pair = login(&app, "erin").await;
    let app = app.restart().await;
    let me = send(
        app.get("/auth/me")
            .bearer_auth(token(&pair, "access_token")),
    )
    .await;
    me.expect(StatusCode::OK);
    assert_eq!(me.body["role"], "VIEWER");
    send(app.json(
        Method::POST,
        "/auth/refresh",
        &json!({"refresh_token": token(&pair, "refresh_token")}),
    ))
    .await
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn an_access_token_expires_after_its_configured_lifetime() {
    let mut config = test_config();
    config.access_token_ttl = jiff::SignedDuration::from_secs(1);
    let app = spawn_app_with(config).await;
    create_user(&app, "fay", "ADMIN").await;
    let reply = login_as(&app, "fay", PASSWORD).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["expires_in"], 1);
    let access = token(&reply.body, "access_token");
    eventually("the access token expires", || {
        let request = app.get("/auth/me").bearer_auth(&access);
        async move { send(request).await.status == StatusCode::UNAUTHORIZED }
    })
    .await;
    // The refresh token still works and brings a fresh access token.
    send(app.json(
        Method::POST,
        "/auth/refresh",
        &json!({"refresh_token": token(&reply.body, "refresh_token")}),
    ))
    .await
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_viewer_reads_everything_and_gets_403_on_every_kind_of_write() {
    let app = spawn_app().await;
    app.create_tenant("t-view").await;
    app.create_leaderboard("t-view", "lb").await;
    let (key_id, _) = app.create_key(&["leaderboards:read"], &["t-view"]).await;
    create_user(&app, "viewer", "VIEWER").await;
    create_user(&app, "other", "VIEWER").await;
    let access = token(&login(&app, "viewer").await, "access_token");
    let as_viewer = |method: Method, path: &str, body: Option<Value>| {
        let request = match body {
            Some(body) => app.json(method, path, &body),
            None => app.request(method, path),
        };
        send(request.bearer_auth(&access))
    };
    for path in [
        "/tenants",
        "/tenants/t-view",
        "/api-keys",
        "/leaderboards",
        "/tenants/t-view/leaderboards",
        "/tenants/t-view/leaderboards/lb",
        "/tenants/t-view/leaderboards/lb/windows",
        "/health",
        "/auth/me",
    ] {
        as_viewer(Method::GET, path, None)
            .await
            .expect(StatusCode::OK);
    }
    let lb = leaderboard_body("t-view", "lb2");
    let writes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/tenants".into(),
            Some(json!({"tenant_id": "t-new", "name": "n"})),
        ),
        (Method::POST, "/tenants/t-view/secret:rotate".into(), None),
        (
            Method::POST,
            "/api-keys".into(),
            Some(json!({"name": "k", "scopes": ["leaderboards:read"], "tenant_ids": ["*"]})),
        ),
        (Method::DELETE, format!("/api-keys/{key_id}"), None),
        (
            Method::POST,
            "/tenants/t-view/leaderboards".into(),
            Some(lb),
        ),
        (
            Method::PATCH,
            "/tenants/t-view/leaderboards/lb".into(),
            Some(json!({"status": "inactive"})),
        ),
        (
            Method::DELETE,
            "/tenants/t-view/leaderboards/lb".into(),
            None,
        ),
        (
            Method::POST,
            "/users".into(),
            Some(json!({"username": "x", "password": PASSWORD, "role": "ADMIN"})),
        ),
        (
            Method::PATCH,
            "/users/other".into(),
            Some(json!({"role": "ADMIN"})),
        ),
        (Method::DELETE, "/users/other".into(), None),
    ];
    for (method, path, body) in writes {
        let message = as_viewer(method.clone(), &path, body)
            .await
            .expect_forbidden();
        assert!(!message.is_empty(), "{method} {path}");
    }
    // Users are for ADMINs only, reads included.
    as_viewer(Method::GET, "/users", None)
        .await
        .expect_forbidden();
    // Nothing was changed.
    let lb = app.admin_get("/tenants/t-view/leaderboards/lb").await;
    assert_eq!(lb.body["status"], "active");
    assert_eq!(app.admin_get("/users").await.body["total"], 2);
    // Logging out is not a write the role forbids.
    send(
        app.request(Method::POST, "/auth/logout")
            .bearer_auth(&access),
    )
    .await
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_role_change_applies_to_a_live_session() {
    let app = spawn_app().await;
    create_user(&app, "gil", "ADMIN").await;
    create_user(&app, "second-admin", "ADMIN").await;
    let access = token(&login(&app, "gil").await, "access_token");
    let create = |id: &str| {
        app.json(
            Method::POST,
            "/tenants",
            &json!({"tenant_id": id, "name": "n"}),
        )
        .bearer_auth(&access)
    };
    send(create("t-gil-1")).await.expect(StatusCode::CREATED);
    app.admin_json(Method::PATCH, "/users/gil", &json!({"role": "VIEWER"}))
        .await
        .expect(StatusCode::OK);
    send(create("t-gil-2")).await.expect_forbidden();
}

#[tokio::test]
async fn an_injected_csrf_cookie_pair_does_not_pass() {
    let app = spawn_app().await;
    create_user(&app, "ivy", "ADMIN").await;
    let reply = login_as(&app, "ivy", PASSWORD).await;
    reply.expect(StatusCode::OK);
    let access = cookie_value(&reply, "phoenix-access-token");
    let refresh = cookie_value(&reply, "phoenix-refresh-token");
    // An attacker who can set cookies (a sibling subdomain) sets a CSRF cookie and sends the header
    // to match: the pair is equal, but not the session's own token.
    let injected = "f".repeat(64);
    let cookies = format!("phoenix-access-token={access}; phoenix-csrf-token={injected}");
    let body = json!({"tenant_id": "t-injected", "name": "Injected"});
    send(
        app.json(Method::POST, "/tenants", &body)
            .header("cookie", &cookies)
            .header("x-csrf-token", &injected),
    )
    .await
    .expect_forbidden();
    let cookies = format!("phoenix-refresh-token={refresh}; phoenix-csrf-token={injected}");
    send(
        app.request(Method::POST, "/auth/refresh")
            .header("cookie", &cookies)
            .header("x-csrf-token", &injected),
    )
    .await
    .expect_forbidden();
    // The session's own token passes.
    let own = cookie_value(&reply, "phoenix-csrf-token");
    let cookies = format!("phoenix-access-token={access}; phoenix-csrf-token={own}");
    send(
        app.json(Method::POST, "/tenants", &body)
            .header("cookie", &cookies)
            .header("x-csrf-token", &own),
    )
    .await
    .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn cookie_authentication_works_and_cookie_writes_need_the_csrf_header() {
    let app = spawn_app().await;
    create_user(&app, "hal", "ADMIN").await;
    let reply = login_as(&app, "hal", PASSWORD).await;
    reply.expect(StatusCode::OK);
    let access = cookie_value(&reply, "phoenix-access-token");
    let csrf = cookie_value(&reply, "phoenix-csrf-token");
    let cookies = format!("phoenix-access-token={access}; phoenix-csrf-token={csrf}");

    // Reads by cookie alone.
    let me = send(app.get("/auth/me").header("cookie", &cookies)).await;
    me.expect(StatusCode::OK);
    assert_eq!(me.body["username"], "hal");
    let body = json!({"tenant_id": "t-cookie", "name": "Cookie"});
    // A write by cookie without, or with a wrong, X-CSRF-Token: 403.
    let message = send(
        app.json(Method::POST, "/tenants", &body)
            .header("cookie", &cookies),
    )
    .await
    .expect_forbidden();
    assert!(message.contains("X-CSRF-Token"), "{message}");
    send(
        app.json(Method::POST, "/tenants", &body)
            .header("cookie", &cookies)
            .header("x-csrf-token", "0".repeat(64)),
    )
    .await
    .expect_forbidden();
    // A cookie without the CSRF cookie cannot be helped by a header alone.
    send(
        app.json(Method::POST, "/tenants", &body)
            .header("cookie", format!("phoenix-access-token={access}"))
            .header("x-csrf-token", &csrf),
    )
    .await
    .expect_forbidden();
    send(
        app.json(Method::POST, "/tenants", &body)
            .header("cookie", &cookies)
            .header("x-csrf-token", &csrf),
    )
    .await
    .expect(StatusCode::CREATED);
    // A Bearer token is not a browser's ambient credential: no CSRF header needed.
    send(
        app.json(
            Method::POST,
            "/tenants",
            &json!({"tenant_id": "t-bearer", "name": "Bearer"}),
        )
        .bearer_auth(&access),
    )
    .await
    .expect(StatusCode::CREATED);

    // Refresh and logout by cookie need the header too.
    let refresh_cookie = cookie_value(&reply, "phoenix-refresh-token");
    let all = format!("{cookies}; phoenix-refresh-token={refresh_cookie}");
    send(
        app.request(Method::POST, "/auth/refresh")
            .header("cookie", &all),
    )
    .await
    .expect_forbidden();
    let refreshed = send(
        app.request(Method::POST, "/auth/refresh")
            .header("cookie", &all)
            .header("x-csrf-token", &csrf),
    )
    .await;
    refreshed.expect(StatusCode::OK);
    let new_access = cookie_value(&refreshed, "phoenix-access-token");
    let new_csrf = cookie_value(&refreshed, "phoenix-csrf-token");
    let new_cookies = format!("phoenix-access-token={new_access}; phoenix-csrf-token={new_csrf}");
    send(
        app.request(Method::POST, "/auth/logout")
            .header("cookie", &new_cookies),
    )
    .await
    .expect_forbidden();
    send(
        app.request(Method::POST, "/auth/logout")
            .header("cookie", &new_cookies)
            .header("x-csrf-token", &new_csrf),
    )
    .await
    .expect(StatusCode::OK);
    send(app.get("/auth/me").header("cookie", &new_cookies))
        .await
        .expect_unauthorized();
}

#[tokio::test]
async fn repeated_failed_logins_are_slowed_per_user_and_per_address() {
    let app = spawn_app().await;
    // Exact per attempt on one node; a cluster shares attempts within a flush (api_cluster's
    // cluster.rs checks that).
    app.pin_to_one_node();
    create_user(&app, "ivy", "ADMIN").await;
    create_user(&app, "jon", "ADMIN").await;
    for _ in 0..5 {
        login_as(&app, "ivy", "guess").await.expect_unauthorized();
    }
    // Locked: even the right password waits, with Retry-After.
    let locked = login_as(&app, "ivy", PASSWORD).await;
    locked.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry: u64 = locked
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    // Another user is not affected.
    login_as(&app, "jon", PASSWORD).await.expect(StatusCode::OK);
    // Once the delay has passed, the right password works again (refused attempts meanwhile are not
    // counted, so asking again and again does not extend the lock).
    let unlocked_by = std::time::Instant::now() + Duration::from_secs(retry + 5);
    loop {
        let reply = login_as(&app, "ivy", PASSWORD).await;
        if reply.status == StatusCode::OK {
            break;
        }
        reply.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
        assert!(std::time::Instant::now() < unlocked_by, "still locked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Guessing across many usernames from one address locks the address (its 20 free failures include
    // the 5 above).
    let mut refused_after = None;
    for i in 0..20 {
        let reply = login_as(&app, &format!("nobody-{i}"), "guess").await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            refused_after = Some(i);
            break;
        }
        reply.expect_unauthorized();
    }
    assert_eq!(refused_after, Some(15));
    login_as(&app, "jon", PASSWORD)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

#[tokio::test]
async fn development_mode_takes_the_tenant_from_the_header_or_the_event_body() {
    let mut config = test_config();
    config.auth_enabled = false;
    let app = spawn_app_with(config).await;
    // No credentials at all: Admin routes answer.
    send(app.json(
        Method::POST,
        "/tenants",
        &json!({"tenant_id": "t-dev", "name": "Dev"}),
    ))
    .await
    .expect(StatusCode::CREATED);
    send(app.json(
        Method::POST,
        "/tenants/t-dev/leaderboards",
        &json!({
            "leaderboard_id": "lb",
            "name": "Dev board",
            "config": {
                "timeframe": {"type": "all_time"},
                "scoring": {"rules": [{"event_type": "*", "points_expression": "attrs.score"}],
                            "aggregation": "sum"}
            }
        }),
    ))
    .await
    .expect(StatusCode::CREATED);
    let me = send(app.get("/auth/me")).await;
    assert_eq!(me.body["role"], "ADMIN");
    assert_eq!(me.body["credential"], "unauthenticated");

    let event = |id: &str, user: &str| {
        json!({"tenant_id": "t-dev", "event_id": id, "type": "match", "actor": {"user_id": user},
               "occurred_at": jiff::Timestamp::now().to_string(), "attrs": {"score": 5}})
    };
    // The event body names the tenant.
    send(app.json(Method::POST, "/v1/events", &event("e1", "p1")))
        .await
        .expect(StatusCode::ACCEPTED);
    let batch = send(app.json(
        Method::POST,
        "/v1/events/batch",
        &json!({"events": [event("e2", "p2"), event("e3", "p1")]}),
    ))
    .await;
    batch.expect(StatusCode::ACCEPTED);
    assert_eq!(batch.body["accepted"], 2);
    // X-Tenant-Id names it too, and X-User-Id is the player for `me`.
    let mut unnamed = event("e4", "p3");
    unnamed
        .as_object_mut()
        .expect("an object")
        .remove("tenant_id");
    send(
        app.json(Method::POST, "/v1/events", &unnamed)
            .header("x-tenant-id", "t-dev"),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    send(app.json(Method::POST, "/v1/events", &unnamed))
        .await
        .expect_unauthorized();
    eventually("the events are ranked", || {
        let request = app
            .get("/v1/leaderboards/lb/me")
            .header("x-tenant-id", "t-dev")
            .header("x-user-id", "p1");
        async move {
            let reply = send(request).await;
            reply.status == StatusCode::OK && reply.body["score"] == 10.0
        }
    })
    .await;
    let page = send(
        app.get("/v1/leaderboards/lb")
            .header("x-tenant-id", "t-dev"),
    )
    .await;
    page.expect(StatusCode::OK);
    assert_eq!(page.body["total_entries"], 3);
}

#[tokio::test]
async fn operators_read_window_history_on_the_admin_gateway() {
    let app = spawn_app().await;
    app.create_tenant("t-hist").await;
    app.create_leaderboard("t-hist", "lb").await;
    let list = app
        .admin_get("/tenants/t-hist/leaderboards/lb/windows")
        .await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body, json!({"total": 0, "windows": []}));
    app.admin_get("/tenants/t-hist/leaderboards/nope/windows")
        .await
        .expect_not_found();
    app.admin_get("/tenants/t-hist/leaderboards/lb/windows/w-unknown")
        .await
        .expect_not_found();
    // A key without the tenant: 403 before existence.
    let (_, key) = app.create_key(&["leaderboards:read"], &["t-other"]).await;
    send(with_key(
        app.get("/tenants/t-hist/leaderboards/lb/windows"),
        &key,
    ))
    .await
    .expect_forbidden();
}

#[tokio::test]
async fn only_a_credential_for_every_tenant_may_manage_users() {
    let app = spawn_app().await;
    app.create_tenant("t-one").await;
    create_user(&app, "boss", "ADMIN").await;
    // An `admin` key limited to one tenant must not mint a console ADMIN (who reaches every tenant) or
    // take over an account by changing its password.
    let (_, narrow) = app.create_key(&["admin"], &["t-one"]).await;
    let body = json!({"username": "mallory", "password": PASSWORD, "role": "ADMIN"});
    send(with_key(app.json(Method::POST, "/users", &body), &narrow))
        .await
        .expect_forbidden();
    send(with_key(
        app.json(
            Method::PATCH,
            "/users/boss",
            &json!({"password": "taken over!"}),
        ),
        &narrow,
    ))
    .await
    .expect_forbidden();
    send(with_key(app.get("/users"), &narrow))
        .await
        .expect_forbidden();
    let (_, wide) = app.create_key(&["admin"], &["*"]).await;
    send(with_key(app.json(Method::POST, "/users", &body), &wide))
        .await
        .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_deleted() {
    let app = spawn_app().await;
    create_user(&app, "only", "ADMIN").await;
    create_user(&app, "watcher", "VIEWER").await;
    let demote = app
        .admin_json(Method::PATCH, "/users/only", &json!({"role": "VIEWER"}))
        .await;
    let message = demote.expect_error(StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("last ADMIN"), "{message}");
    send(admin(app.request(Method::DELETE, "/users/only")))
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    // With a second ADMIN, the first may go.
    app.admin_json(Method::PATCH, "/users/watcher", &json!({"role": "ADMIN"}))
        .await
        .expect(StatusCode::OK);
    send(admin(app.request(Method::DELETE, "/users/only")))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_bad_session_cookie_is_401_before_any_csrf_check() {
    let app = spawn_app().await;
    let bogus = "phoenix-refresh-token=phx_rt_bogus; phoenix-access-token=phx_at_bogus; phoenix-csrf-token=c";
    send(
        app.request(Method::POST, "/auth/refresh")
            .header("cookie", bogus),
    )
    .await
    .expect_unauthorized();
    send(
        app.request(Method::POST, "/auth/logout")
            .header("cookie", bogus),
    )
    .await
    .expect_unauthorized();
    send(
        app.json(
            Method::POST,
            "/tenants",
            &json!({"tenant_id": "t-x", "name": "x"}),
        )
        .header("cookie", bogus),
    )
    .await
    .expect_unauthorized();
}
