//! The live WebSocket over real sockets (SPEC §6.1, §10): refusal before the upgrade, the snapshot and
//! `me`, updates that keep an exact copy of the top N, client messages, admin watchers, close codes for
//! deactivation, deletion, slow clients and shutdown.

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use jiff::Timestamp;
use phoenix_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn jwt(secret: &str, tenant: &str, sub: &str) -> String {
    let now = now_secs();
    admin_jwt(
        secret,
        &json!({"sub": sub, "sub_type": "tenant", "sub_id": tenant, "iat": now, "exp": now + 3600}),
    )
}

fn fast_config() -> ServerConfig {
    let mut config = test_config();
    config.ws_coalesce = Duration::ZERO;
    config
}

/// A tenant with an active all-time `max` leaderboard `id`; returns its secret.
async fn board(app: &TestApp, tenant: &str, id: &str) -> String {
    let secret = match send(admin(app.get(&format!("/tenants/{tenant}"))))
        .await
        .status
    {
        StatusCode::OK => String::new(),
        _ => app.create_tenant(tenant).await,
    };
    app.admin_json(
        Method::POST,
        &format!("/tenants/{tenant}/leaderboards"),
        &json!({
            "leaderboard_id": id,
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

async fn post_scores(app: &TestApp, token: &str, scores: &[(&str, f64)], tag: &str) {
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
    assert_eq!(reply.body["rejected"], 0, "{}", reply.text);
}

fn ws_url(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.next_base().replacen("http://", "ws://", 1))
}

/// Opens a WebSocket at `path` with these extra headers, or returns the refusal's status.
async fn try_connect(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Socket, StatusCode> {
    let mut request = ws_url(app, path)
        .into_client_request()
        .expect("a WebSocket request");
    for (name, value) in headers {
        request.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
            Ok(socket)
        }
        Err(WsError::Http(response)) => {
            Err(StatusCode::from_u16(response.status().as_u16()).expect("a status"))
        }
        Err(e) => panic!("the WebSocket handshake failed unexpectedly: {e}"),
    }
}

async fn connect(app: &TestApp, path: &str, token: &str) -> Socket {
    let bearer = format!("Bearer {token}");
    try_connect(app, path, &[("authorization", &bearer)])
        .await
        .expect("the upgrade is accepted")
}

/// The next JSON message (skipping protocol pings and pongs).
async fn next_json(socket: &mut Socket) -> Value {
    let read = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str::<Value>(text.as_str()).expect("JSON text");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a message within the deadline")
}

/// Reads until the server's close frame; returns its code and reason.
async fn close_of(socket: &mut Socket) -> (u16, String) {
    let read = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.as_str().to_owned());
                }
                Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the socket failed before its close frame: {e}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a close frame within the deadline")
}

async fn send_json(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .expect("the message is sent");
}

/// A client's copy of the top N, kept from snapshots and updates.
#[derive(Default)]
struct Copy {
    entries: HashMap<String, Value>,
    last_seq: u64,
}

impl Copy {
    /// Applies one server message, checking that `seq` grows strictly.
    fn apply(&mut self, message: &Value) {
        if let Some(seq) = message["seq"].as_u64() {
            assert!(
                seq > self.last_seq,
                "seq must grow: {seq} after {}",
                self.last_seq
            );
            self.last_seq = seq;
        }
        match message["type"].as_str() {
            Some("snapshot") => {
                self.entries.clear();
                self.upsert(&message["entries"]);
            }
            Some("update") => {
                for user in message["removed"].as_array().expect("removed") {
                    self.entries.remove(user.as_str().expect("a user id"));
                }
                self.upsert(&message["entries"]);
            }
            other => panic!("unexpected message {other:?}: {message}"),
        }
    }

    fn upsert(&mut self, entries: &Value) {
        for entry in entries.as_array().expect("entries") {
            let user = entry["user_id"].as_str().expect("user_id").to_owned();
            self.entries.insert(user, entry.clone());
        }
    }

    fn sorted(&self) -> Vec<Value> {
        let mut all: Vec<Value> = self.entries.values().cloned().collect();
        all.sort_by_key(|e| e["rank"].as_u64());
        all
    }
}

async fn rest_top(app: &TestApp, token: &str, n: u32) -> Vec<Value> {
    let reply = send(
        app.get(&format!("/v1/leaderboards/lb?limit={n}"))
            .bearer_auth(token),
    )
    .await;
    reply.expect(StatusCode::OK);
    reply.body["entries"].as_array().expect("entries").clone()
}

#[tokio::test]
async fn bad_credentials_and_unknown_boards_are_refused_before_the_upgrade() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-auth", "lb").await;
    let token = jwt(&secret, "ws-auth", "ann");
    let (_, no_tenant_key) = app.create_key(&["leaderboards:read"], &["other"]).await;

    assert_eq!(
        try_connect(&app, "/v1/leaderboards/lb/ws", &[]).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        try_connect(
            &app,
            "/v1/leaderboards/lb/ws",
            &[("authorization", "Bearer nope")]
        )
        .await
        .err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        try_connect(&app, "/v1/leaderboards/lb/ws?access_token=nope", &[])
            .await
            .err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        try_connect(
            &app,
            "/v1/leaderboards/nope/ws",
            &[("authorization", &bearer)]
        )
        .await
        .err(),
        Some(StatusCode::NOT_FOUND)
    );
    assert_eq!(
        try_connect(
            &app,
            "/v1/leaderboards/lb/ws?tenant_id=ws-auth",
            &[("x-api-key", &no_tenant_key)]
        )
        .await
        .err(),
        Some(StatusCode::FORBIDDEN)
    );
    // The same refusals carry the error envelope.
    send(app.get("/v1/leaderboards/lb/ws"))
        .await
        .expect_unauthorized();
    send(app.get("/v1/leaderboards/nope/ws").bearer_auth(&token))
        .await
        .expect_not_found();
    send(with_key(
        app.get("/v1/leaderboards/lb/ws?tenant_id=ws-auth"),
        &no_tenant_key,
    ))
    .await
    .expect_forbidden();
    // Documented, with its refusals.
    let doc = send(app.get("/openapi.json")).await;
    let route = &doc.body["paths"]["/v1/leaderboards/{id}/ws"]["get"]["responses"];
    for status in ["101", "401", "403", "404"] {
        assert!(route[status].is_object(), "{status} in {route}");
    }
    // A plain GET with good credentials is not an upgrade.
    send(app.get("/v1/leaderboards/lb/ws").bearer_auth(&token))
        .await
        .expect_validation();
}

#[tokio::test]
async fn the_snapshot_holds_the_top_n_and_me() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-snap", "lb").await;
    let token = jwt(&secret, "ws-snap", "u03");
    let scores: Vec<(String, f64)> = (0..15)
        .map(|i| (format!("u{i:02}"), f64::from(100 - i)))
        .collect();
    let refs: Vec<(&str, f64)> = scores.iter().map(|(u, s)| (u.as_str(), *s)).collect();
    post_scores(&app, &token, &refs, "s").await;

    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["seq"], 1);
    assert_eq!(snapshot["window"]["status"], "open");
    assert!(snapshot["window"]["id"].is_string());
    assert_eq!(
        snapshot["entries"].as_array().map(Vec::len),
        Some(10),
        "default top 10"
    );
    assert_eq!(
        snapshot["entries"].as_array().cloned(),
        Some(rest_top(&app, &token, 10).await)
    );
    let me = send(app.get("/v1/leaderboards/lb/me").bearer_auth(&token)).await;
    assert_eq!(snapshot["me"], me.body);
    assert_eq!(snapshot["me"]["rank"], 4);

    // A player without a score has `me: null`; `?access_token=` works like the header.
    let newcomer = jwt(&secret, "ws-snap", "newcomer");
    let mut socket = try_connect(
        &app,
        &format!("/v1/leaderboards/lb/ws?access_token={newcomer}"),
        &[],
    )
    .await
    .expect("the query token is accepted");
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert!(snapshot["me"].is_null());
}

#[tokio::test]
async fn snapshot_plus_updates_is_an_exact_copy_of_the_top_n_after_a_burst() {
    let mut config = test_config();
    config.ws_coalesce = Duration::from_millis(20);
    let app = spawn_app_with(config).await;
    let secret = board(&app, "ws-burst", "lb").await;
    let token = jwt(&secret, "ws-burst", "p05");
    post_scores(&app, &token, &[("p00", 10.0), ("p01", 20.0)], "seed").await;

    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    let mut copy = Copy::default();
    copy.apply(&next_json(&mut socket).await);
    let mut me_seen = Value::Null;

    // Many batches: newcomers push others out of the top 10, scores rise, ranks shuffle.
    for round in 0..12u32 {
        let scores: Vec<(String, f64)> = (0..8u32)
            .map(|i| {
                let user = format!("p{:02}", (round * 3 + i * 5) % 30);
                (user, f64::from(round * 7 + i * 11 % 50))
            })
            .collect();
        let refs: Vec<(&str, f64)> = scores.iter().map(|(u, s)| (u.as_str(), *s)).collect();
        post_scores(&app, &token, &refs, &format!("r{round}")).await;
    }
    let expected = rest_top(&app, &token, 10).await;
    let expected_me = send(app.get("/v1/leaderboards/lb/me").bearer_auth(&token)).await;
    let started = std::time::Instant::now();
    while copy.sorted() != expected || me_seen != expected_me.body {
        assert!(
            started.elapsed() < DEADLINE,
            "the copy never matched: {:?} vs {expected:?}",
            copy.sorted()
        );
        let message = next_json(&mut socket).await;
        copy.apply(&message);
        if message["me"].is_object() {
            me_seen = message["me"].clone();
        }
    }
    assert!(copy.last_seq >= 2, "updates were sent");
}

/// Sockets of one board share the top read and the serialized diffs (`query/feed.rs`): clients that
/// watch different N, read at different paces, or re-subscribe mid-burst must each still end with an
/// exact copy of their own top N.
#[tokio::test]
async fn clients_with_different_n_and_pace_each_keep_an_exact_copy() {
    let mut config = test_config();
    config.ws_coalesce = Duration::from_millis(5);
    let app = spawn_app_with(config).await;
    let secret = board(&app, "ws-shared", "lb").await;
    let token = jwt(&secret, "ws-shared", "q07");
    post_scores(&app, &token, &[("q00", 5.0), ("q01", 6.0)], "seed").await;

    let path = "/v1/leaderboards/lb/ws";
    let mut clients = Vec::new();
    for top in [3u32, 10, 25, 10] {
        let mut socket = connect(&app, path, &token).await;
        let mut copy = Copy::default();
        copy.apply(&next_json(&mut socket).await);
        if top != 10 {
            send_json(&mut socket, json!({"type": "subscribe", "top": top})).await;
            copy.apply(&next_json(&mut socket).await);
        }
        clients.push((top, socket, copy));
    }
    for round in 0..10u32 {
        let scores: Vec<(String, f64)> = (0..6u32)
            .map(|i| {
                let user = format!("q{:02}", (round * 7 + i * 3) % 40);
                (user, f64::from((round * 13 + i * 29) % 97))
            })
            .collect();
        let refs: Vec<(&str, f64)> = scores.iter().map(|(u, s)| (u.as_str(), *s)).collect();
        post_scores(&app, &token, &refs, &format!("s{round}")).await;
        // The first three clients read as they go; the last one only at the end (it lags behind).
        for (_, socket, copy) in clients.iter_mut().take(3) {
            while let Ok(Some(Ok(Message::Text(text)))) =
                tokio::time::timeout(Duration::from_millis(30), socket.next()).await
            {
                copy.apply(&serde_json::from_str(text.as_str()).expect("JSON"));
            }
        }
        if round == 4 {
            // A re-subscription mid-burst starts the client over from a fresh snapshot.
            let (top, socket, copy) = &mut clients[1];
            *top = 7;
            send_json(socket, json!({"type": "subscribe", "top": 7})).await;
            loop {
                let message = next_json(socket).await;
                let snapshot = message["type"] == "snapshot";
                copy.apply(&message);
                if snapshot {
                    break;
                }
            }
        }
    }
    for (top, socket, copy) in &mut clients {
        let expected = rest_top(&app, &token, *top).await;
        let started = std::time::Instant::now();
        while copy.sorted() != expected {
            assert!(
                started.elapsed() < DEADLINE,
                "top {top}: the copy never matched: {:?} vs {expected:?}",
                copy.sorted()
            );
            copy.apply(&next_json(socket).await);
        }
    }
}

#[tokio::test]
async fn subscribe_pages_pings_and_malformed_messages() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-msg", "lb").await;
    let token = jwt(&secret, "ws-msg", "viewer");
    let scores: Vec<(String, f64)> = (0..12)
        .map(|i| (format!("m{i:02}"), f64::from(50 - i)))
        .collect();
    let refs: Vec<(&str, f64)> = scores.iter().map(|(u, s)| (u.as_str(), *s)).collect();
    post_scores(&app, &token, &refs, "m").await;

    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    let mut seq = next_json(&mut socket).await["seq"].as_u64().expect("seq");

    send_json(&mut socket, json!({"type": "subscribe", "top": 3})).await;
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["entries"].as_array().map(Vec::len), Some(3));
    assert!(snapshot["seq"].as_u64() > Some(seq));
    seq = snapshot["seq"].as_u64().expect("seq");

    send_json(
        &mut socket,
        json!({"type": "request_page", "page": 2, "page_size": 5}),
    )
    .await;
    let page = next_json(&mut socket).await;
    assert_eq!(page["type"], "page");
    assert_eq!(page["page"], 2);
    assert!(page["seq"].as_u64() > Some(seq));
    let ranks: Vec<u64> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["rank"].as_u64())
        .collect();
    assert_eq!(ranks, vec![6, 7, 8, 9, 10]);

    send_json(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut socket).await, json!({"type": "pong"}));

    for bad in [
        "not json".to_owned(),
        json!({"type": "dance"}).to_string(),
        json!({"type": "subscribe", "top": 101}).to_string(),
        json!({"type": "request_page", "page": 0, "page_size": 5}).to_string(),
        json!({"type": "request_page", "page": 1, "page_size": 500}).to_string(),
    ] {
        socket
            .send(Message::Text(bad.clone().into()))
            .await
            .expect("sent");
        let error = next_json(&mut socket).await;
        assert_eq!(error["type"], "error", "for {bad}");
        assert_eq!(error["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(error["error"]["status"], 400);
        assert!(error["error"]["message"].is_string());
    }
    // Still open and answering.
    send_json(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut socket).await, json!({"type": "pong"}));
    post_scores(&app, &token, &[("m11", 99.0)], "late").await;
    let update = next_json(&mut socket).await;
    assert_eq!(update["type"], "update");
    assert_eq!(update["entries"][0]["user_id"], "m11");
    assert_eq!(update["entries"][0]["rank"], 1);
}

#[tokio::test]
async fn admin_watchers_name_the_tenant_and_have_no_me() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-admin", "lb").await;
    let token = jwt(&secret, "ws-admin", "a");
    post_scores(&app, &token, &[("a", 5.0)], "a").await;
    let (_, key) = app.create_key(&["leaderboards:read"], &["ws-admin"]).await;

    let mut socket = try_connect(
        &app,
        "/v1/leaderboards/lb/ws?tenant_id=ws-admin",
        &[("x-api-key", &key)],
    )
    .await
    .expect("the key watches");
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["entries"][0]["user_id"], "a");
    assert!(snapshot["me"].is_null());

    let mut socket = try_connect(
        &app,
        &format!("/v1/leaderboards/lb/ws?tenant_id=ws-admin&access_token={key}"),
        &[],
    )
    .await
    .expect("the key works as access_token");
    assert!(next_json(&mut socket).await["me"].is_null());
    let (_, writer) = app.create_key(&["leaderboards:write"], &["ws-admin"]).await;
    assert_eq!(
        try_connect(
            &app,
            "/v1/leaderboards/lb/ws?tenant_id=ws-admin",
            &[("x-api-key", &writer)]
        )
        .await
        .err(),
        Some(StatusCode::FORBIDDEN)
    );
}

/// A console VIEWER signed in: their access token.
async fn console_login(app: &TestApp, username: &str) -> String {
    let password = format!("{username}-password");
    app.admin_json(
        Method::POST,
        "/users",
        &json!({"username": username, "password": password, "role": "VIEWER"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let login = send(app.json(
        Method::POST,
        "/auth/login",
        &json!({"username": username, "password": password}),
    ))
    .await;
    login.expect(StatusCode::OK);
    login.body["access_token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// A browser sends the session cookie on another site's page too: only this server's own page may use
/// it to watch `path`.
async fn cookie_watches_from_its_own_page_only(app: &TestApp, path: &str, cookie: &str) {
    // The page's origin is the server the socket goes to (a cluster's nodes sit behind one origin in
    // production; here each has its own).
    app.pin_to_one_node();
    let own = app.base.clone();
    let mut same_page = try_connect(app, path, &[("cookie", cookie), ("origin", &own)])
        .await
        .expect("the console's own page watches");
    assert_eq!(next_json(&mut same_page).await["type"], "snapshot");
    assert_eq!(
        try_connect(
            app,
            path,
            &[("cookie", cookie), ("origin", "http://evil.example")]
        )
        .await
        .err(),
        Some(StatusCode::FORBIDDEN)
    );
}

/// The console's live view: a console session watches by its cookie (what a browser sends on the
/// upgrade) or by `?access_token=`; after logout the upgrade is refused.
#[tokio::test]
async fn console_sessions_watch_as_admin_watchers() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-console", "lb").await;
    let token = jwt(&secret, "ws-console", "a");
    post_scores(&app, &token, &[("a", 7.0)], "a").await;
    let access = console_login(&app, "watcher").await;
    let cookie = format!("phoenix-access-token={access}");
    let path = "/v1/leaderboards/lb/ws?tenant_id=ws-console";

    let mut by_cookie = try_connect(&app, path, &[("cookie", &cookie)])
        .await
        .expect("the session cookie watches");
    let snapshot = next_json(&mut by_cookie).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["entries"][0]["user_id"], "a");
    assert!(snapshot["me"].is_null());
    let mut by_query = try_connect(&app, &format!("{path}&access_token={access}"), &[])
        .await
        .expect("the access token works as access_token");
    assert_eq!(next_json(&mut by_query).await["type"], "snapshot");

    cookie_watches_from_its_own_page_only(&app, path, &cookie).await;

    send(
        app.request(Method::POST, "/auth/logout")
            .bearer_auth(&access),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        try_connect(&app, path, &[("cookie", &cookie)]).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn deactivation_closes_with_4404_and_deletion_with_4410() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-end", "lb").await;
    board(&app, "ws-end", "gone").await;
    let token = jwt(&secret, "ws-end", "x");

    let mut deactivated = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    let mut deleted = connect(&app, "/v1/leaderboards/gone/ws", &token).await;
    next_json(&mut deactivated).await;
    next_json(&mut deleted).await;

    app.admin_json(
        Method::PATCH,
        "/tenants/ws-end/leaderboards/lb",
        &json!({"status": "inactive"}),
    )
    .await
    .expect(StatusCode::OK);
    let (code, reason) = close_of(&mut deactivated).await;
    assert_eq!(code, 4404);
    assert!(!reason.is_empty());

    send(admin(app.request(
        Method::DELETE,
        "/tenants/ws-end/leaderboards/gone",
    )))
    .await
    .expect(StatusCode::OK);
    let (code, reason) = close_of(&mut deleted).await;
    assert_eq!(code, 4410);
    assert!(!reason.is_empty());

    // An inactive board is refused before the upgrade.
    let bearer = format!("Bearer {token}");
    assert_eq!(
        try_connect(
            &app,
            "/v1/leaderboards/lb/ws",
            &[("authorization", &bearer)]
        )
        .await
        .err(),
        Some(StatusCode::NOT_FOUND)
    );
}

/// A socket waiting out a long coalescing interval still closes with 4404 when the board was deactivated
/// in the meantime, even if it is active again by the time the socket looks.
#[tokio::test]
async fn a_deactivation_undone_within_the_coalescing_interval_still_closes_the_socket() {
    let mut config = test_config();
    config.ws_coalesce = Duration::from_secs(2);
    let app = spawn_app_with(config).await;
    let secret = board(&app, "ws-flip", "lb").await;
    let token = jwt(&secret, "ws-flip", "x");
    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    post_scores(&app, &token, &[("x", 1.0)], "flip").await;
    for status in ["inactive", "active"] {
        app.admin_json(
            Method::PATCH,
            "/tenants/ws-flip/leaderboards/lb",
            &json!({ "status": status }),
        )
        .await
        .expect(StatusCode::OK);
    }
    let (code, _) = close_of(&mut socket).await;
    assert_eq!(code, 4404);
}

/// A leaderboard deleted and created again under the same id is a new board: a socket on it never sees
/// the old board's standings.
#[tokio::test]
async fn a_board_created_again_under_the_same_id_starts_empty_on_the_socket() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-again", "lb").await;
    let token = jwt(&secret, "ws-again", "x");
    post_scores(&app, &token, &[("old", 50.0)], "old").await;
    // A socket open on the old board while it goes away (the feed registry must not hand its state on;
    // `query::feed` unit tests pin the registry down when the old feed outlives the board).
    let _lingering = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    send(admin(app.request(
        Method::DELETE,
        "/tenants/ws-again/leaderboards/lb",
    )))
    .await
    .expect(StatusCode::OK);
    board(&app, "ws-again", "lb").await;
    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["entries"], json!([]), "{snapshot}");
}

async fn slow_closes(app: &TestApp) -> u64 {
    let reply = send(app.get("/metrics")).await;
    reply
        .text
        .lines()
        .find_map(|l| l.strip_prefix("phoenix_ws_slow_closed_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_1013_and_others_keep_receiving() {
    let mut config = fast_config();
    config.ws_send_timeout = Duration::from_millis(300);
    let app = spawn_app_with(config).await;
    let secret = board(&app, "ws-slow", "lb").await;
    let token = jwt(&secret, "ws-slow", "fast");
    // 100 entries with long ids: each page of 100 is well over 10 KB.
    let scores: Vec<(String, f64)> = (0..100)
        .map(|i| (format!("{i:03}-{}", "x".repeat(120)), f64::from(1000 - i)))
        .collect();
    let refs: Vec<(&str, f64)> = scores.iter().map(|(u, s)| (u.as_str(), *s)).collect();
    post_scores(&app, &token, &refs, "big").await;

    let mut fast = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    next_json(&mut fast).await;
    let mut slow = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    // Ask for far more than the socket buffers hold (~600 x 17 KB), and read none of it.
    let request = json!({"type": "request_page", "page": 1, "page_size": 100}).to_string();
    for _ in 0..600 {
        slow.feed(Message::Text(request.clone().into()))
            .await
            .expect("queued");
    }
    slow.flush().await.expect("the requests are sent");

    post_scores(&app, &token, &[("fast", 5000.0)], "f").await;
    let update = next_json(&mut fast).await;
    assert_eq!(update["type"], "update");
    assert_eq!(update["entries"][0]["user_id"], "fast");
    eventually("the slow client is given up", || async {
        slow_closes(&app).await > 0
    })
    .await;
    // Its backlog drains, then the close frame arrives.
    let (code, _) = close_of(&mut slow).await;
    assert_eq!(code, 1013);
    // The other client is unaffected.
    post_scores(&app, &token, &[("fast", 6000.0)], "g").await;
    let update = next_json(&mut fast).await;
    assert_eq!(update["entries"][0]["score"], 6000.0);
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let mut app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-stop", "lb").await;
    let token = jwt(&secret, "ws-stop", "x");
    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    next_json(&mut socket).await;
    app.stop().await;
    let (code, _) = close_of(&mut socket).await;
    assert_eq!(code, 1001);
}

#[tokio::test]
async fn a_window_that_ends_sends_window_closed_with_its_final_top_then_a_snapshot() {
    let app = spawn_app_with(fast_config()).await;
    let secret = app.create_tenant("ws-roll").await;
    let now = Timestamp::now();
    app.admin_json(
        Method::POST,
        "/tenants/ws-roll/leaderboards",
        &json!({
            "leaderboard_id": "sprint",
            "name": "Sprint",
            "config": {
                "timeframe": {"type": "custom",
                              "starts_at": (now - jiff::SignedDuration::from_hours(1)).to_string(),
                              "ends_at": (now + jiff::SignedDuration::from_millis(1500)).to_string()},
                "scoring": {"rules": [{"event_type": "*", "points_expression": "attrs.score"}],
                            "aggregation": "max"}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    let token = jwt(&secret, "ws-roll", "amy");
    let mut socket = connect(&app, "/v1/leaderboards/sprint/ws", &token).await;
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["window"]["status"], "open");
    post_scores(&app, &token, &[("amy", 3.0), ("ben", 8.0)], "r").await;
    // Updates until the window ends, then window_closed with the final standings, then a snapshot.
    let closed = loop {
        let message = next_json(&mut socket).await;
        match message["type"].as_str() {
            Some("update") => continue,
            Some("window_closed") => break message,
            other => panic!("unexpected {other:?}: {message}"),
        }
    };
    assert_eq!(closed["window"]["id"], "custom");
    assert_eq!(closed["window"]["status"], "closed");
    let users: Vec<&str> = closed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["ben", "amy"]);
    let after = next_json(&mut socket).await;
    assert_eq!(after["type"], "snapshot");
    assert_eq!(after["window"]["status"], "closed");
    assert!(after["seq"].as_u64() > closed["seq"].as_u64());
}

/// Operators (and the console) watch on the Admin gateway, with the tenant in the path: this works when
/// the Query gateway has a listener of its own.
#[tokio::test]
async fn operators_watch_on_the_admin_gateway_with_the_query_gateway_apart() {
    let mut config = fast_config();
    config.query_listen =
        phoenix_server::GatewayListen::Own("127.0.0.1:0".parse().expect("an address"));
    let app = spawn_app_with(config).await;
    let secret = board(&app, "ws-adm", "lb").await;
    post_scores(&app, &jwt(&secret, "ws-adm", "a"), &[("a", 9.0)], "a").await;
    let (_, reader) = app.create_key(&["leaderboards:read"], &["ws-adm"]).await;
    let (_, elsewhere) = app.create_key(&["leaderboards:read"], &["ws-other"]).await;
    let path = "/tenants/ws-adm/leaderboards/lb/ws";

    let mut socket = try_connect(&app, path, &[("x-api-key", &reader)])
        .await
        .expect("the key watches on the Admin gateway");
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["entries"][0]["user_id"], "a");
    assert!(snapshot["me"].is_null());
    let mut by_query = try_connect(&app, &format!("{path}?access_token={reader}"), &[])
        .await
        .expect("the key works as access_token");
    assert_eq!(next_json(&mut by_query).await["type"], "snapshot");

    assert_eq!(
        try_connect(&app, path, &[]).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        try_connect(&app, path, &[("x-api-key", &elsewhere)])
            .await
            .err(),
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        try_connect(
            &app,
            "/tenants/ws-adm/leaderboards/nope/ws",
            &[("x-api-key", &reader)]
        )
        .await
        .err(),
        Some(StatusCode::NOT_FOUND)
    );

    // The console's session cookie, from its own page only.
    let access = console_login(&app, "ops").await;
    cookie_watches_from_its_own_page_only(&app, path, &format!("phoenix-access-token={access}"))
        .await;
}

/// Reads the snapshot, then the close frame, which must come within `within`.
async fn closed_4401_within(socket: &mut Socket, within: Duration) -> String {
    let started = std::time::Instant::now();
    let (code, reason) = close_of(socket).await;
    assert_eq!(code, 4401, "{reason}");
    assert!(!reason.is_empty());
    assert!(
        started.elapsed() <= within,
        "closed after {:?}",
        started.elapsed()
    );
    reason
}

#[tokio::test]
async fn sockets_close_with_4401_when_their_credential_is_revoked() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-revoke", "lb").await;
    let path = "/v1/leaderboards/lb/ws?tenant_id=ws-revoke";
    let two_s = Duration::from_secs(2);

    // An API key, revoked.
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["ws-revoke"]).await;
    let mut socket = try_connect(&app, path, &[("x-api-key", &key)])
        .await
        .expect("the key watches");
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    send(admin(
        app.request(Method::DELETE, &format!("/api-keys/{key_id}")),
    ))
    .await
    .expect(StatusCode::OK);
    closed_4401_within(&mut socket, two_s).await;

    // A console session, logged out; another, whose user is deleted.
    let access = console_login(&app, "leaving").await;
    let mut socket = try_connect(&app, &format!("{path}&access_token={access}"), &[])
        .await
        .expect("the session watches");
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    send(
        app.request(Method::POST, "/auth/logout")
            .bearer_auth(&access),
    )
    .await
    .expect(StatusCode::OK);
    closed_4401_within(&mut socket, two_s).await;
    let access = console_login(&app, "deleted").await;
    let mut socket = try_connect(&app, &format!("{path}&access_token={access}"), &[])
        .await
        .expect("the session watches");
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    send(admin(app.request(Method::DELETE, "/users/deleted")))
        .await
        .expect(StatusCode::OK);
    closed_4401_within(&mut socket, two_s).await;

    // A tenant JWT whose secret is rotated with no grace period.
    let token = jwt(&secret, "ws-revoke", "p1");
    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    app.admin_json(
        Method::POST,
        "/tenants/ws-revoke/secret:rotate",
        &json!({"grace_period_seconds": 0}),
    )
    .await
    .expect(StatusCode::OK);
    closed_4401_within(&mut socket, two_s).await;
}

#[tokio::test]
async fn sockets_close_with_4401_when_their_credential_expires() {
    // The default clock leeway (30 s) accepts a token from a skewed issuer; it does not keep one alive.
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-expiry", "lb").await;
    // A tenant JWT that expires in two seconds.
    let now = now_secs();
    let token = admin_jwt(
        &secret,
        &json!({"sub": "p1", "sub_type": "tenant", "sub_id": "ws-expiry", "iat": now,
                "exp": now + 2}),
    );
    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    let reason = closed_4401_within(&mut socket, Duration::from_secs(5)).await;
    assert!(reason.contains("expired"), "{reason}");
    assert!(now_secs() >= now + 2, "closed before the token expired");

    // A rotated-out secret keeps its sockets for its grace period only.
    let token = jwt(&secret, "ws-expiry", "p2");
    let mut socket = connect(&app, "/v1/leaderboards/lb/ws", &token).await;
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    app.admin_json(
        Method::POST,
        "/tenants/ws-expiry/secret:rotate",
        &json!({"grace_period_seconds": 2}),
    )
    .await
    .expect(StatusCode::OK);
    let started = std::time::Instant::now();
    closed_4401_within(&mut socket, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn denying_unscoped_tokens_closes_their_sockets() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-unscoped", "lb").await;
    let unscoped = jwt(&secret, "ws-unscoped", "p1");
    let now = now_secs();
    let scoped = admin_jwt(
        &secret,
        &json!({"sub": "p2", "sub_type": "tenant", "sub_id": "ws-unscoped", "iat": now,
                "exp": now + 3600, "scope": "leaderboards:read"}),
    );
    let mut closing = connect(&app, "/v1/leaderboards/lb/ws", &unscoped).await;
    let mut staying = connect(&app, "/v1/leaderboards/lb/ws", &scoped).await;
    assert_eq!(next_json(&mut closing).await["type"], "snapshot");
    assert_eq!(next_json(&mut staying).await["type"], "snapshot");
    app.admin_json(
        Method::PATCH,
        "/tenants/ws-unscoped",
        &json!({"unscoped_tokens": "deny"}),
    )
    .await
    .expect(StatusCode::OK);
    closed_4401_within(&mut closing, Duration::from_secs(2)).await;
    send_json(&mut staying, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut staying).await["type"], "pong");
}

#[tokio::test]
async fn a_socket_opened_with_an_hmac_signature_closes_when_its_secret_is_rotated_out() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-hmac", "lb").await;
    let path = "/tenants/ws-hmac/leaderboards/lb/ws";
    let now = now_secs();
    let signature = hmac_signature(&secret, "GET", path, now, b"");
    let now_text = now.to_string();
    let mut socket = try_connect(
        &app,
        path,
        &[
            ("x-tenant-id", "ws-hmac"),
            ("x-timestamp", &now_text),
            ("x-signature", &signature),
        ],
    )
    .await
    .expect("the signature watches");
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    app.admin_json(
        Method::POST,
        "/tenants/ws-hmac/secret:rotate",
        &json!({"grace_period_seconds": 0}),
    )
    .await
    .expect(StatusCode::OK);
    closed_4401_within(&mut socket, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_socket_sees_what_another_node_ingests() {
    let app = spawn_app_with(fast_config()).await;
    let secret = board(&app, "ws-nodes", "lb").await;
    let server = jwt(&secret, "ws-nodes", "game-server");
    // In a cluster requests take turns: the socket is on one node, the events go to the other.
    let mut socket = connect(
        &app,
        "/v1/leaderboards/lb/ws",
        &jwt(&secret, "ws-nodes", "ann"),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    post_scores(&app, &server, &[("ann", 42.0)], "x").await;
    let update = next_json(&mut socket).await;
    assert_eq!(update["type"], "update", "{update}");
    assert_eq!(update["entries"][0]["user_id"], "ann", "{update}");
    assert_eq!(update["entries"][0]["score"], 42.0, "{update}");
}

#[tokio::test]
async fn one_player_cannot_take_every_socket() {
    let app = spawn_app_with(fast_config()).await;
    // The cap bounds one server's memory: each node of a cluster has its own.
    app.pin_to_one_node();
    let secret = board(&app, "ws-cap", "lb").await;
    let greedy = jwt(&secret, "ws-cap", "greedy");
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(connect(&app, "/v1/leaderboards/lb/ws", &greedy).await);
    }
    let bearer = format!("Bearer {greedy}");
    assert_eq!(
        try_connect(
            &app,
            "/v1/leaderboards/lb/ws",
            &[("authorization", &bearer)]
        )
        .await
        .err(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    // Another player still gets in; and a closed socket gives its place back.
    let other = jwt(&secret, "ws-cap", "other");
    connect(&app, "/v1/leaderboards/lb/ws", &other).await;
    drop(open.pop());
    eventually("the closed socket's place is free again", || async {
        try_connect(
            &app,
            "/v1/leaderboards/lb/ws",
            &[("authorization", &bearer)],
        )
        .await
        .is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_and_one_that_reads_stays() {
    let mut config = fast_config();
    config.ws_peer_timeout = Duration::from_millis(1500);
    let app = spawn_app_with(config).await;
    let secret = board(&app, "ws-peer", "lb").await;
    // A raw client: it upgrades, then never writes again (no pong, unlike a client library).
    let mut silent = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("a TCP connection");
    let upgrade = format!(
        "GET /v1/leaderboards/lb/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {}\r\n\r\n",
        jwt(&secret, "ws-peer", "a")
    );
    tokio::io::AsyncWriteExt::write_all(&mut silent, upgrade.as_bytes())
        .await
        .expect("write");
    let mut reader = connect(
        &app,
        "/v1/leaderboards/lb/ws",
        &jwt(&secret, "ws-peer", "b"),
    )
    .await;
    assert_eq!(next_json(&mut reader).await["type"], "snapshot");
    // The reader keeps reading (its client library answers the pings); the other does not.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(200), reader.next()).await {
            Ok(Some(Ok(_))) | Err(_) => {}
            other => panic!("the reading client's socket ended: {other:?}"),
        }
    }
    send_json(&mut reader, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut reader).await["type"], "pong");
    // Everything the server sent the silent client, up to its closing the connection, ends with a
    // close frame carrying 4408.
    let mut sent = Vec::new();
    tokio::time::timeout(
        DEADLINE,
        tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut sent),
    )
    .await
    .expect("the server closes the silent socket")
    .expect("a clean read");
    let code = 4408u16.to_be_bytes();
    assert!(
        sent.windows(4)
            .any(|w| w[0] == 0x88 && w[2] == code[0] && w[3] == code[1]),
        "no 4408 close frame in {} bytes",
        sent.len()
    );
}
