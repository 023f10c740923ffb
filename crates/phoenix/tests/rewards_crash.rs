//! Settlement is exactly once across `kill -9` (SPEC §7.2, issue "Rewards and coupons"): the real
//! binary is killed right after a window ends and while a large settlement is being applied; after a
//! restart there is one settlement and exactly one grant per (rule, window, player, reward), also
//! after repeated `settle` calls.

mod common;

use common::{SECRET, Server};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn admin_post(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = http
        .post(server.url(path))
        .bearer_auth(SECRET)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin_get(http: &reqwest::Client, server: &Server, path: &str) -> Value {
    http.get(server.url(path))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A tenant with a custom board ending at `ends_at`, `players` scored players, and a rule granting
/// `rewards` rewards to the top `percent`% of them.
async fn setup(
    http: &reqwest::Client,
    server: &Server,
    ends_at: Timestamp,
    players: usize,
    percent: u32,
    rewards: usize,
) {
    let (s, _) = admin_post(
        http,
        server,
        "/tenants",
        json!({"tenant_id": "t", "name": "T"}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, b) = admin_post(
        http,
        server,
        "/tenants/t/leaderboards",
        json!({"leaderboard_id": "race", "name": "Race", "config": {
            "timeframe": {"type": "custom",
                          "starts_at": (ends_at - SignedDuration::from_hours(1)).to_string(),
                          "ends_at": ends_at.to_string()},
            "scoring": {"rules": [{"event_type": "match", "points_expression": "attrs.score"}]},
            "ranking": {"size": 10000}}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let list: Vec<Value> = (0..rewards)
        .map(|i| json!({"type": "currency", "currency": format!("c{i}"), "amount": i + 1}))
        .collect();
    let (s, b) = admin_post(
        http,
        server,
        "/tenants/t/reward-rules",
        json!({"rule_id": "prizes", "leaderboard_id": "race", "name": "Prizes",
               "tiers": [{"top_percent": percent, "rewards": list}]}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let now = Timestamp::now().to_string();
    for chunk in (0..players).collect::<Vec<_>>().chunks(1000) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"event_id": format!("e{i}"), "type": "match", "actor": {"user_id": format!("p{i}")},
                       "occurred_at": now, "attrs": {"score": i}})
            })
            .collect();
        let r = http
            .post(server.url("/v1/events/batch"))
            .bearer_auth(SECRET)
            .header("x-tenant-id", "t")
            .json(&json!({"events": events}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
}

/// Every grant of the tenant, paging through the admin list.
async fn grant_ids(http: &reqwest::Client, server: &Server) -> (u64, Vec<String>) {
    let mut ids = Vec::new();
    let mut path = "/tenants/t/grants?limit=200".to_owned();
    let mut total = 0;
    loop {
        let page = admin_get(http, server, &path).await;
        total = page["total"].as_u64().unwrap_or(total);
        for g in page["grants"].as_array().unwrap() {
            ids.push(g["grant_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/tenants/t/grants?limit=200&cursor={c}"),
            None => return (total, ids),
        }
    }
}

async fn settled(http: &reqwest::Client, server: &Server) -> Value {
    admin_get(http, server, "/tenants/t/reward-rules/prizes/settlements").await
}

async fn wait_settled(http: &reqwest::Client, server: &Server) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = settled(http, server).await;
        if s["total"] == 1 {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "never settled: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After a restart: one settlement, `expected` grants, all distinct; repeated settles change nothing.
async fn check_exactly_once(http: &reqwest::Client, server: &Server, expected: u64) {
    let s = wait_settled(http, server).await;
    assert_eq!(s["settlements"][0]["grants"], expected, "{s}");
    for _ in 0..3 {
        let (status, body) = admin_post(
            http,
            server,
            "/tenants/t/reward-rules/prizes/settle",
            json!({"window_id": "custom"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (total, ids) = grant_ids(http, server).await;
    assert_eq!(total, expected);
    assert_eq!(ids.len() as u64, expected);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len() as u64, expected);
}

#[tokio::test]
async fn kill_9_right_after_a_window_ends_settles_it_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let server = Server::start(dir.path());
    let ends_at = Timestamp::now() + SignedDuration::from_secs(3);
    setup(&http, &server, ends_at, 100, 10, 2).await;
    let wait = ends_at.duration_since(Timestamp::now()).unsigned_abs();
    tokio::time::sleep(wait).await;
    // Dead the instant the window ended: whether the settler got to it or not, nothing was answered.
    server.kill9();
    let server = Server::start(dir.path());
    check_exactly_once(&http, &server, 20).await;
    server.kill9();
    let server = Server::start(dir.path());
    check_exactly_once(&http, &server, 20).await;
}

#[tokio::test]
async fn kill_9_during_a_large_settlement_leaves_all_of_its_grants_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let server = Server::start(dir.path());
    let ends_at = Timestamp::now() + SignedDuration::from_secs(4);
    let (players, rewards) = (5_000u64, 10u64);
    setup(
        &http,
        &server,
        ends_at,
        players as usize,
        100,
        rewards as usize,
    )
    .await;
    let wait = ends_at.duration_since(Timestamp::now()).unsigned_abs();
    tokio::time::sleep(wait).await;
    // Kill while the settlement is being applied: it starts within a second of the end.
    let started = std::time::Instant::now();
    loop {
        let grants = admin_get(&http, &server, "/tenants/t/grants?limit=1").await;
        let seen = grants["total"].as_u64().unwrap_or(0);
        assert!(
            seen == 0 || seen == players * rewards,
            "a partial settlement was visible: {seen}"
        );
        if started.elapsed() > Duration::from_millis(700) || seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    let server = Server::start(dir.path());
    check_exactly_once(&http, &server, players * rewards).await;
}
