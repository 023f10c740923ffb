//! Achievements and webhooks across `kill -9` (issue "Achievements and signed webhooks"): the real
//! binary is killed while events are retried and while webhook messages wait for a receiver that is
//! down; after a restart each step is completed once (one grant each), and every message that was
//! pending is delivered, with the ids it had before.

mod common;

use common::{SECRET, Server};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn admin(
    http: &reqwest::Client,
    server: &Server,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = http
        .request(method.parse().unwrap(), server.url(path))
        .bearer_auth(SECRET)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, server: &Server, path: &str) -> Value {
    http.get(server.url(path))
        .bearer_auth(SECRET)
        .header("X-Tenant-Id", "t")
        .header("X-User-Id", "p0")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Posts a batch of events as the admin secret for tenant `t`; true when it was acknowledged.
async fn post_events(http: &reqwest::Client, server: &Server, events: &[Value]) -> bool {
    http.post(server.url("/v1/events/batch"))
        .bearer_auth(SECRET)
        .header("X-Tenant-Id", "t")
        .json(&json!({"events": events}))
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 202)
}

/// A receiver on `port` that records each request's `webhook-id` (and answers 200), once started.
async fn receive(port: u16, got: Arc<Mutex<Vec<(String, String)>>>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let got = got.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then the body by its Content-Length.
            let (head_end, length) = loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, length);
                }
            };
            while buf.len() < head_end + length {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let id = head
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("webhook-id:")
                        .map(|v| v.trim().to_owned())
                })
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
            got.lock().unwrap().push((id, body));
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        });
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const ENV: [(&str, &str); 2] = [
    ("PHOENIX_WEBHOOK_ALLOW_PRIVATE", "true"),
    (
        "PHOENIX_WEBHOOK_RETRY_SCHEDULE",
        "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms",
    ),
];

#[tokio::test]
async fn steps_complete_once_and_pending_deliveries_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let port = free_port();
    let server = Server::start_with(dir.path(), &ENV);
    let (s, b) = admin(
        &http,
        &server,
        "POST",
        "/tenants",
        json!({"tenant_id": "t", "name": "T"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // Every tenth win of a player completes a step (ten steps), each with a reward.
    let steps: Vec<Value> = (1..=10)
        .map(|i| json!({"threshold": i * 10, "rewards": [{"type": "currency", "currency": "gems", "amount": i}]}))
        .collect();
    let (s, b) = admin(
        &http,
        &server,
        "POST",
        "/tenants/t/achievements",
        json!({"achievement_id": "wins", "name": "Wins",
               "metric": {"event_type": "match", "aggregation": "count"}, "steps": steps}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // The receiver is down: every message waits, retried every 300 ms.
    let (s, b) = admin(
        &http,
        &server,
        "POST",
        "/tenants/t/webhooks",
        json!({"url": format!("http://127.0.0.1:{port}/hook"),
               "events": ["achievement.completed", "reward.granted"]}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let webhook = b["webhook_id"].as_str().unwrap().to_owned();

    // 100 wins for each of 5 players, in batches of 10, each batch sent twice (a retry); the server
    // is killed after the first half.
    let now = Timestamp::now();
    let batches: Vec<Vec<Value>> = (0..50)
        .map(|b| {
            (0..10)
                .map(|i| {
                    let n = b * 10 + i;
                    json!({"event_id": format!("e{n}"), "type": "match",
                           "actor": {"user_id": format!("p{}", n % 5)},
                           "occurred_at": now.to_string(), "attrs": {}})
                })
                .collect()
        })
        .collect();
    for batch in &batches[..25] {
        assert!(post_events(&http, &server, batch).await);
        assert!(post_events(&http, &server, batch).await);
    }
    // Some attempts have failed (the messages are pending) before the kill.
    let mut waited = 0;
    loop {
        let log = http
            .get(server.url(&format!(
                "/tenants/t/webhooks/{webhook}/deliveries?limit=200"
            )))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        if log["deliveries"]
            .as_array()
            .is_some_and(|l| l.iter().any(|d| d["attempt"].as_u64() >= Some(1)))
        {
            break;
        }
        waited += 1;
        assert!(waited < 200, "no attempt was made: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();

    let server = Server::start_with(dir.path(), &ENV);
    // Everything again (the first half are duplicates now), and the second half twice.
    for batch in &batches {
        assert!(post_events(&http, &server, batch).await);
    }
    for batch in &batches[25..] {
        assert!(post_events(&http, &server, batch).await);
    }
    // Each player: 100 wins, all ten steps, ten grants (p0 is checked; the counts cover all five).
    let mut waited = 0;
    loop {
        let a = get(&http, &server, "/v1/achievements/wins").await;
        if a["value"] == 100.0 {
            assert_eq!(a["completed"], true, "{a}");
            break;
        }
        waited += 1;
        assert!(waited < 400, "p0's progress: {a}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The grants are committed within half a second of their completions; none more come.
    let mut waited = 0;
    loop {
        let grants = http
            .get(server.url("/tenants/t/grants?limit=200"))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        if grants["total"] == 50 {
            break;
        }
        waited += 1;
        assert!(
            waited < 400 && grants["total"].as_u64() < Some(50),
            "{grants}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let counts = http
        .get(server.url("/tenants/t/achievements/wins"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    for step in counts["completions"].as_array().unwrap() {
        assert_eq!(step["players"], 5, "{counts}");
    }

    // The receiver comes up: every message is delivered, each id at least once, and the set of ids
    // is exactly one per completion and one per grant.
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    tokio::spawn(receive(port, got.clone()));
    let mut waited = 0;
    loop {
        let ids: BTreeSet<String> = got
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        if ids.len() >= 100 {
            break;
        }
        waited += 1;
        assert!(waited < 600, "delivered {} of 100 messages", ids.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut by_type: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, body) in got.lock().unwrap().iter() {
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["id"], id.as_str());
        by_type
            .entry(v["type"].as_str().unwrap().to_owned())
            .or_default()
            .insert(id.clone());
    }
    assert_eq!(by_type["achievement.completed"].len(), 50);
    assert_eq!(by_type["reward.granted"].len(), 50);
}

/// Events accepted before an achievement was made never count toward it, also when the process is
/// killed before the players' rows are written and the log is folded again on restart.
#[tokio::test]
async fn events_from_before_an_achievement_never_count_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let server = Server::start(dir.path());
    let (s, b) = admin(
        &http,
        &server,
        "POST",
        "/tenants",
        json!({"tenant_id": "t", "name": "T"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let now = Timestamp::now();
    let events = |from: usize, to: usize| -> Vec<Value> {
        (from..to)
            .map(|n| {
                json!({"event_id": format!("b{n}"), "type": "match", "actor": {"user_id": "p0"},
                       "occurred_at": now.to_string(), "attrs": {}})
            })
            .collect()
    };
    assert!(post_events(&http, &server, &events(0, 3)).await);
    let (s, b) = admin(
        &http,
        &server,
        "POST",
        "/tenants/t/achievements",
        json!({"achievement_id": "wins", "name": "Wins",
               "metric": {"event_type": "match", "aggregation": "count"},
               "steps": [{"threshold": 100}]}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert!(post_events(&http, &server, &events(3, 5)).await);
    let mut waited = 0;
    loop {
        let a = get(&http, &server, "/v1/achievements/wins").await;
        if a["value"] == 2.0 {
            break;
        }
        waited += 1;
        assert!(waited < 400, "{a}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Killed at once: the rows are written every few seconds, so this one is not on disk yet.
    server.kill9();
    let server = Server::start(dir.path());
    let a = get(&http, &server, "/v1/achievements/wins").await;
    assert_eq!(a["value"], 2.0, "{a}");
}
