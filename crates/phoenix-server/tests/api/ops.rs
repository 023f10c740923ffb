//! Operations (SPEC §1, §8, §10): probes, metrics, the OpenAPI document, request ids, restart
//! persistence and per-gateway listeners.

use crate::support::*;
use phoenix_server::GatewayListen;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn livez_and_readyz_answer_without_credentials() {
    let app = spawn_app().await;
    let live = send(app.get("/livez")).await;
    live.expect(StatusCode::OK);
    assert_eq!(live.body, json!({"status": "ok"}));
    let ready = send(app.get("/readyz")).await;
    ready.expect(StatusCode::OK);
    assert_eq!(ready.body, json!({"status": "ready"}));
}

#[tokio::test]
async fn metrics_count_requests_by_route_with_a_latency_histogram() {
    let app = spawn_app().await;
    send(app.get("/livez")).await.expect(StatusCode::OK);
    send(app.get("/health")).await.expect_unauthorized();
    send(admin(app.get("/tenants/t-metrics-raw/leaderboards")))
        .await
        .expect_not_found();
    send(app.get("/no-such-route")).await.expect_not_found();
    let reply = send(app.get("/metrics")).await;
    reply.expect(StatusCode::OK);
    let content_type = reply.headers["content-type"].to_str().unwrap_or("");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = &reply.text;
    let counted = |route: &str, status: &str| {
        text.lines().any(|line| {
            line.starts_with("phoenix_http_requests_total{")
                && line.contains(&format!("route=\"{route}\""))
                && line.contains(&format!("status=\"{status}\""))
        })
    };
    assert!(counted("/livez", "200"), "no /livez counter in:\n{text}");
    assert!(counted("/health", "401"), "no /health counter in:\n{text}");
    // Routes are labelled by their template, never by the raw path (bounded cardinality).
    assert!(
        counted("/tenants/{tenant_id}/leaderboards", "404"),
        "no templated route label in:\n{text}"
    );
    assert!(
        !text.contains("t-metrics-raw"),
        "a raw path leaked into a label"
    );
    assert!(
        !text.contains("no-such-route"),
        "a raw path leaked into a label"
    );
    assert!(
        text.lines().any(
            |line| line.starts_with("phoenix_http_request_duration_seconds_bucket{")
                && line.contains("le=")
        ),
        "no latency buckets in:\n{text}"
    );
}

#[tokio::test]
async fn openapi_documents_every_route_as_openapi_3_1() {
    let app = spawn_app().await;
    let reply = send(app.get("/openapi.json")).await;
    reply.expect(StatusCode::OK);
    let version = reply.body["openapi"].as_str().unwrap_or("");
    assert!(version.starts_with("3.1"), "openapi version {version}");
    let paths = reply.body["paths"].as_object().expect("paths");
    let expected = [
        ("/health", vec!["get"]),
        ("/tenants", vec!["get", "post"]),
        ("/tenants/{tenant_id}", vec!["get", "patch"]),
        ("/tenants/{tenant_id}/secret:rotate", vec!["post"]),
        ("/api-keys", vec!["get", "post"]),
        ("/api-keys/{key_id}", vec!["delete"]),
        ("/leaderboards", vec!["get"]),
        ("/tenants/{tenant_id}/leaderboards", vec!["get", "post"]),
        (
            "/tenants/{tenant_id}/leaderboards/{leaderboard_id}",
            vec!["get", "patch", "delete"],
        ),
        ("/livez", vec!["get"]),
        ("/readyz", vec!["get"]),
        ("/metrics", vec!["get"]),
        ("/openapi.json", vec!["get"]),
        ("/console", vec!["get"]),
        ("/console/js/{file}", vec!["get"]),
        ("/console/app.css", vec!["get"]),
    ];
    let mut missing = Vec::new();
    for (path, methods) in expected {
        for method in methods {
            if paths.get(path).and_then(|p| p.get(method)).is_none() {
                missing.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missing from /openapi.json: {missing:?}; has {:?}",
        paths.keys().collect::<Vec<_>>()
    );

    // The constraints the server enforces are stated, so generated clients refuse what it refuses.
    let doc = &reply.body;
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    assert_eq!(schema("BatchIn")["properties"]["events"]["minItems"], 1);
    assert_eq!(schema("BatchIn")["properties"]["events"]["maxItems"], 1000);
    assert_eq!(
        schema("EventIn")["properties"]["event_id"]["pattern"],
        "^[A-Za-z0-9_.:-]{1,128}$"
    );
    assert_eq!(schema("ActorIn")["required"], json!(["user_id"]));
    assert_eq!(
        schema("CreateUser")["properties"]["password"]["minLength"],
        8
    );
    assert_eq!(schema("PatchTenant")["additionalProperties"], false);
    assert_eq!(
        schema("AuthConfig")["required"],
        json!(["authentication_enabled", "scopes"])
    );
    assert_eq!(schema("ScopeLabel")["required"], json!(["scope", "label"]));
    let limit = doc["paths"]["/v1/leaderboards/{id}"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit")["schema"]
        .clone();
    assert_eq!(
        (limit["minimum"].clone(), limit["maximum"].clone()),
        (json!(1), json!(200))
    );
    // How each route authenticates, and what only the server can check.
    assert!(doc["components"]["securitySchemes"]["tenant_jwt"].is_object());
    assert_eq!(doc["paths"]["/livez"]["get"]["security"], json!([]));
    assert_eq!(
        doc["paths"]["/v1/events"]["post"]["security"],
        json!([{"tenant_jwt": []}])
    );
    assert!(doc["paths"]["/v1/events"]["post"]["x-server-checked"].is_string());
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let (_, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let requests = [
        app.get("/livez"),
        app.get("/readyz"),
        app.get("/metrics"),
        app.get("/openapi.json"),
        app.get("/health"),
        admin(app.get("/health")),
        with_key(app.get("/tenants"), &key),
        admin(app.get("/tenants/nope")),
        app.get("/no-such-route"),
        app.request(Method::PUT, "/health"),
        admin(app.request(Method::POST, "/tenants").body("{")),
    ];
    let mut ids = Vec::new();
    for request in requests {
        let reply = send(request).await;
        let id = reply
            .headers
            .get("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id on a {} response", reply.status))
            .to_str()
            .expect("a text request id")
            .to_owned();
        assert!(!id.is_empty());
        ids.push(id);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "request ids repeat: {ids:?}");
    // A client's own request id is kept.
    let reply = send(app.get("/livez").header("x-request-id", "client-chosen-42")).await;
    assert_eq!(reply.headers["x-request-id"], "client-chosen-42");
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let app = spawn_app().await;
    let secret = app.create_tenant("t-keep").await;
    let (key_id, key) = app
        .create_key(&["leaderboards:read", "leaderboards:write"], &["t-keep"])
        .await;
    app.create_leaderboard("t-keep", "kept").await;
    // A revoked key and a rotated secret (the old one still in its grace period) must survive too.
    let (revoked_id, revoked) = app.create_key(&["leaderboards:read"], &["*"]).await;
    send(admin(
        app.request(Method::DELETE, &format!("/api-keys/{revoked_id}")),
    ))
    .await
    .expect(StatusCode::OK);
    let rotated = app.create_tenant("t-rotated").await;
    let rotation = send(admin(
        app.request(Method::POST, "/tenants/t-rotated/secret:rotate"),
    ))
    .await;
    rotation.expect(StatusCode::OK);
    let rotated_new = rotation.body["hmac_secret"]
        .as_str()
        .expect("hmac_secret")
        .to_owned();
    let patched = send(with_key(
        app.json(
            Method::PATCH,
            "/tenants/t-keep/leaderboards/kept",
            &json!({"name": "Renamed", "status": "inactive"}),
        ),
        &key,
    ))
    .await;
    patched.expect(StatusCode::OK);
    assert_eq!(patched.body["version"], 2);
    let tenants = app.admin_get("/tenants").await.body;
    let keys = app.admin_get("/api-keys").await.body;

    let app = app.restart().await;

    assert_eq!(app.admin_get("/tenants").await.body, tenants);
    assert_eq!(app.admin_get("/api-keys").await.body, keys);
    let read = send(with_key(app.get("/tenants/t-keep/leaderboards/kept"), &key)).await;
    read.expect(StatusCode::OK);
    assert_eq!(read.body, patched.body);
    assert_eq!(read.body["name"], "Renamed");
    assert_eq!(read.body["version"], 2);
    // The key still authenticates (also as a JWT, which needs its sealed plaintext) and the tenant
    // secret still signs.
    send(with_key(app.get("/health"), &key))
        .await
        .expect(StatusCode::OK);
    let token = admin_jwt(&key, &admin_claims(&key_id));
    send(app.get("/health").bearer_auth(&token))
        .await
        .expect(StatusCode::OK);
    send(signed(
        &app,
        Method::GET,
        "/health?after=restart",
        None,
        "t-keep",
        &secret,
    ))
    .await
    .expect(StatusCode::OK);
    send(with_key(app.get("/health"), &revoked))
        .await
        .expect_unauthorized();
    for (query, secret) in [("?with=old", &rotated), ("?with=new", &rotated_new)] {
        let path = format!("/health{query}");
        send(signed(&app, Method::GET, &path, None, "t-rotated", secret))
            .await
            .expect(StatusCode::OK);
    }
    // The next PATCH continues the version sequence.
    let again = send(with_key(
        app.json(
            Method::PATCH,
            "/tenants/t-keep/leaderboards/kept",
            &json!({"status": "active"}),
        ),
        &key,
    ))
    .await;
    again.expect(StatusCode::OK);
    assert_eq!(again.body["version"], 3);
}

#[tokio::test]
async fn an_admin_gateway_with_its_own_listener_leaves_the_combined_one() {
    let mut config = test_config();
    config.admin_listen = GatewayListen::Own("127.0.0.1:0".parse().expect("an address"));
    let app = spawn_app_with(config).await;
    let names: Vec<&str> = app.addrs.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["combined", "admin"]);
    let admin_base = app.base_of("admin");
    assert_ne!(admin_base, app.base_of("combined"));

    let on = |base: &str, path: &str| admin(app.client.get(format!("{base}{path}")));
    let reply = send(on(&admin_base, "/health")).await;
    reply.expect(StatusCode::OK);
    let created = send(
        admin(app.client.post(format!("{admin_base}/tenants")))
            .header("content-type", "application/json")
            .body(json!({"tenant_id": "t-own", "name": "Own"}).to_string()),
    )
    .await;
    created.expect(StatusCode::CREATED);
    send(on(&admin_base, "/tenants/t-own"))
        .await
        .expect(StatusCode::OK);

    for path in ["/health", "/tenants", "/leaderboards", "/api-keys"] {
        send(on(&app.base, path)).await.expect_not_found();
    }
    // Operations endpoints answer on every listener.
    for base in [&app.base, &admin_base] {
        send(app.client.get(format!("{base}/livez")))
            .await
            .expect(StatusCode::OK);
    }
}

#[tokio::test]
async fn an_admin_gateway_switched_off_answers_nowhere() {
    let mut config = test_config();
    config.admin_listen = GatewayListen::Off;
    let app = spawn_app_with(config).await;
    let names: Vec<&str> = app.addrs.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["combined"]);
    for path in ["/health", "/tenants", "/leaderboards", "/api-keys"] {
        send(admin(app.get(path))).await.expect_not_found();
    }
    send(app.get("/livez")).await.expect(StatusCode::OK);
    let doc = send(app.get("/openapi.json")).await;
    doc.expect(StatusCode::OK);
}
