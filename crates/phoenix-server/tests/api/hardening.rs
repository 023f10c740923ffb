//! What no client may do to the server (SPEC §8): hold sockets with idle, half-sent or trickled
//! requests, fill the connection table, hold memory with unauthenticated bodies, or grow the metrics
//! with made-up methods. Raw TCP where a well-behaved client library would not misbehave.

use crate::support::*;
use phoenix_server::ServerConfig;
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn short_timeouts() -> ServerConfig {
    let mut config = test_config();
    config.header_timeout = Duration::from_secs(1);
    config.idle_timeout = Duration::from_secs(1);
    config.body_timeout = Duration::from_secs(1);
    config
}

async fn raw(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("a TCP connection")
}

/// A socket that has sent a `POST /tenants` declaring `declared` body bytes and then only `sent` of
/// them.
async fn stalled_upload(app: &TestApp, declared: usize, sent: usize) -> TcpStream {
    let mut socket = raw(app).await;
    let head = format!(
        "POST /tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("write");
    socket.write_all(&vec![b' '; sent]).await.expect("write");
    socket
}

/// Reads until the server closes the socket; returns what it sent. Fails after [`DEADLINE`].
async fn read_until_closed(socket: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the server closes the socket within the deadline");
    String::from_utf8_lossy(&all).into_owned()
}

/// Whether the server has closed `socket` (reads EOF or an error within a short wait).
async fn is_closed(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(Duration::from_millis(50), socket.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn livez_within(app: &TestApp, limit: Duration) -> Duration {
    let started = Instant::now();
    let reply = tokio::time::timeout(limit, send(app.get("/livez")))
        .await
        .expect("/livez answers in time");
    reply.expect(StatusCode::OK);
    started.elapsed()
}

#[tokio::test]
async fn a_socket_that_sends_nothing_or_half_a_header_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(short_timeouts()).await;
    let mut silent = raw(&app).await;
    let mut half = raw(&app).await;
    half.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    read_until_closed(&mut silent).await;
    read_until_closed(&mut half).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(short_timeouts()).await;
    let mut socket = raw(&app).await;
    socket
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_trickled_body_is_refused_when_its_time_is_up() {
    let app = spawn_app_with(short_timeouts()).await;
    let mut socket = raw(&app).await;
    socket
        .write_all(
            b"POST /tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"tenant",
        )
        .await
        .expect("write");
    let answer = read_until_closed(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("VALIDATION_ERROR"), "{answer}");
}

#[tokio::test]
async fn a_full_connection_table_sheds_the_oldest_idle_sockets_so_probes_get_in() {
    let mut config = test_config();
    config.max_connections = 16;
    let app = spawn_app_with(config).await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(raw(&app).await);
    }
    for _ in 0..5 {
        livez_within(&app, Duration::from_secs(1)).await;
    }
    // The first sockets made room for the later ones and for the probes.
    let mut closed = 0;
    for socket in idle.iter_mut().take(20) {
        if is_closed(socket).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 20,
        "only {closed} of the oldest idle sockets were shed"
    );
    let metrics = send(app.get("/metrics")).await;
    assert!(
        metrics
            .text
            .contains("phoenix_connections_shed_total{reason=\"full\"}"),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn unauthenticated_bodies_cannot_hold_more_than_the_budget() {
    let mut config = short_timeouts();
    config.max_body_bytes = 64 * 1024;
    config.body_buffer_bytes = 64 * 1024;
    config.body_timeout = Duration::from_secs(2);
    let app = spawn_app_with(config).await;
    // Two stalled uploads take the whole budget between them.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stalled_upload(&app, 30_000, 29_990).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = send(admin(app.json(
        Method::POST,
        "/tenants",
        &serde_json::json!({"tenant_id": "acme", "name": "x".repeat(20_000)}),
    )))
    .await;
    reply.expect_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Once the stalled uploads time out, the budget is back.
    for socket in &mut stalled {
        read_until_closed(socket).await;
    }
    let reply = send(admin(app.json(
        Method::POST,
        "/tenants",
        &serde_json::json!({"tenant_id": "acme", "name": "Acme"}),
    )))
    .await;
    reply.expect(StatusCode::CREATED);
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    for i in 0..50 {
        let method = Method::from_bytes(format!("M{i:04}X").as_bytes()).expect("a method");
        let reply = send(app.request(method, "/livez")).await;
        reply.expect_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    }
    let metrics = send(app.get("/metrics")).await;
    assert!(!metrics.text.contains("M0001X"), "{}", metrics.text);
    assert!(
        metrics.text.contains("method=\"other\""),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn websockets_beyond_their_cap_are_refused_before_the_upgrade() {
    let mut config = test_config();
    config.max_websockets = 1;
    let app = spawn_app_with(config).await;
    app.create_tenant("acme").await;
    app.create_leaderboard("acme", "daily").await;
    let url = format!(
        "{}/tenants/acme/leaderboards/daily/ws",
        app.base.replacen("http://", "ws://", 1)
    );
    let request = |url: &str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("a WebSocket request");
        request
            .headers_mut()
            .insert("x-api-key", ADMIN_SECRET.parse().expect("a header value"));
        request
    };
    let (first, _) = tokio_tungstenite::connect_async(request(&url))
        .await
        .expect("the first WebSocket opens");
    match tokio_tungstenite::connect_async(request(&url)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        other => panic!("expected 503, got {other:?}"),
    }
    drop(first);
    eventually("the closed WebSocket frees its place", || async {
        tokio_tungstenite::connect_async(request(&url))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn development_mode_answers_only_loopback_hosts_and_its_own_pages() {
    let mut config = test_config();
    config.auth_enabled = false;
    let app = spawn_app_with(config).await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let create = |host: &str, origin: Option<&str>| {
        let mut request = app
            .json(
                Method::POST,
                "/api-keys",
                &serde_json::json!({"name": "x", "scopes": ["admin"], "tenant_ids": ["*"]}),
            )
            .header("host", host);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        send(request)
    };
    // DNS rebinding: the browser sends the attacker's name as Host.
    create("rebind.attacker.example:80", None)
        .await
        .expect_forbidden();
    // Probes answer whatever the Host.
    send(app.get("/livez").header("host", "probe.internal"))
        .await
        .expect(StatusCode::OK);
    // A page elsewhere posting to 127.0.0.1.
    create(&host, Some("http://attacker.example"))
        .await
        .expect_forbidden();
    // Same host, other scheme: not the same origin.
    create(&host, Some(&format!("https://{host}")))
        .await
        .expect_forbidden();
    create(&host, Some(&format!("http://{host}")))
        .await
        .expect(StatusCode::CREATED);
    create(&host, None).await.expect(StatusCode::CREATED);
    let port = host.rsplit_once(':').map(|(_, p)| p).unwrap_or("80");
    create(&format!("localhost:{port}"), None)
        .await
        .expect(StatusCode::CREATED);

    // A cross-origin WebSocket without cookies is refused too.
    app.admin_json(
        Method::POST,
        "/tenants",
        &serde_json::json!({"tenant_id": "dev", "name": "Dev"}),
    )
    .await
    .expect(StatusCode::CREATED);
    app.create_leaderboard("dev", "daily").await;
    let url = format!("ws://{host}/v1/leaderboards/daily/ws");
    let request = |origin: &str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.as_str().into_client_request().expect("a request");
        request
            .headers_mut()
            .insert("x-tenant-id", "dev".parse().expect("a value"));
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("a value"));
        request
    };
    match tokio_tungstenite::connect_async(request("http://attacker.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403);
        }
        other => panic!("expected 403, got {other:?}"),
    }
    tokio_tungstenite::connect_async(request(&format!("http://{host}")))
        .await
        .expect("its own page may watch");
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_the_error_envelope() {
    let app = spawn_app().await;
    let long_header = format!(
        "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(128 * 1024)
    );
    for request in [
        "GARBAGE\r\n\r\n".to_owned(),
        "GET /livez HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(),
        long_header,
        long_uri,
    ] {
        let mut socket = raw(&app).await;
        // The server may answer before it has read everything: ignore a reset on our side.
        let _ = socket.write_all(request.as_bytes()).await;
        let answer = read_until_closed(&mut socket).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer:.200}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(value["error"]["code"], "VALIDATION_ERROR", "{body}");
        assert_eq!(value["error"]["status"], 400);
    }
    // The connection still serves normal requests afterwards.
    livez_within(&app, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_request_id_is_kept_only_when_short_and_plain() {
    let app = spawn_app().await;
    let id_of = |reply: Reply| {
        reply
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let kept = id_of(send(app.get("/livez").header("x-request-id", "abc-123.x:y_z")).await);
    assert_eq!(kept, "abc-123.x:y_z");
    for bad in [
        "a".repeat(65),
        "has space".to_owned(),
        "quote\"s".to_owned(),
    ] {
        let replaced = id_of(send(app.get("/livez").header("x-request-id", &bad)).await);
        assert_ne!(replaced, bad);
        assert!(!replaced.is_empty());
    }
}

#[tokio::test]
async fn responses_carrying_secrets_are_not_stored_by_caches() {
    let app = spawn_app().await;
    let reply = app
        .admin_json(
            Method::POST,
            "/tenants",
            &serde_json::json!({"tenant_id": "cache", "name": "Cache"}),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(
        reply
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let reply = app
        .admin_json(
            Method::POST,
            "/api-keys",
            &serde_json::json!({"name": "k", "scopes": ["admin"], "tenant_ids": ["*"]}),
        )
        .await;
    assert_eq!(
        reply
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

#[tokio::test]
async fn connections_trickling_their_bodies_are_shed_for_new_clients() {
    let mut config = test_config();
    config.max_connections = 8;
    let app = spawn_app_with(config).await;
    // Headers complete, bodies trickling: every connection is waiting on its client.
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(stalled_upload(&app, 1000, 5).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        livez_within(&app, Duration::from_secs(1)).await;
    }
    let mut closed = 0;
    for socket in &mut slow {
        if is_closed(socket).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no slow body was shed");
}
