//! The `phoenix` binary as a user runs it: configuration errors, `--help`, the data-dir lock, graceful
//! shutdown on SIGTERM, and durability across `kill -9` right after a 201.

use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

mod common;

use common::{SECRET, Server, phoenix};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[test]
fn help_lists_every_configuration_variable() {
    let out = phoenix().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "PHOENIX_LISTEN",
        "PHOENIX_ADMIN_LISTEN",
        "PHOENIX_INGESTION_LISTEN",
        "PHOENIX_QUERY_LISTEN",
        "PHOENIX_DATA_DIR",
        "PHOENIX_DATABASE_URL",
        "PHOENIX_REDIS_URL",
        "PHOENIX_ADMIN_SECRET",
        "PHOENIX_MASTER_KEY",
        "PHOENIX_AUTH_ENABLED",
        "PHOENIX_LOG",
        "PHOENIX_LOG_FORMAT",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
}

#[test]
fn invalid_configuration_stops_start_up_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("PHOENIX_LISTEN", "not-an-address"),
        ("PHOENIX_ADMIN_LISTEN", "nowhere"),
        ("PHOENIX_MASTER_KEY", "1234"),
        ("PHOENIX_AUTH_ENABLED", "maybe"),
        ("PHOENIX_LOG_FORMAT", "xml"),
        ("PHOENIX_DATABASE_URL", "postgres://localhost/test"),
        ("PHOENIX_REDIS_URL", "redis://localhost"),
        ("PHOENIX_MAX_BODY_BYTES", "lots"),
    ];
    for (var, value) in cases {
        let out = phoenix()
            .arg("serve")
            .env("PHOENIX_DATA_DIR", dir.path())
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{var}: expected one line, got {stderr}");
        assert!(
            lines[0].contains(var),
            "{var}: line does not name it: {stderr}"
        );
    }
}

#[test]
fn settings_are_read_from_a_dot_env_file_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "PHOENIX_LISTEN=from-dot-env\nPHOENIX_DATA_DIR=./data\n",
    )
    .unwrap();
    let out = phoenix()
        .arg("serve")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PHOENIX_LISTEN") && stderr.contains("from-dot-env"),
        "{stderr}"
    );
    // A flag or an environment variable overrides the file.
    let out = phoenix()
        .args(["--listen", "also-bad", "serve"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("also-bad"), "{stderr}");
    let out = phoenix()
        .arg("serve")
        .env("PHOENIX_LISTEN", "env-bad")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("env-bad"), "{stderr}");
}

#[test]
fn a_secret_given_on_the_command_line_never_shows_in_help() {
    let out = phoenix()
        .arg("--help")
        .env("PHOENIX_ADMIN_SECRET", "super-secret-value-123")
        .env("PHOENIX_MASTER_KEY", "ab".repeat(32))
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(!help.contains("super-secret-value-123"));
    assert!(!help.contains(&"ab".repeat(32)));
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let out = phoenix()
        .arg("serve")
        .env("PHOENIX_LISTEN", "127.0.0.1:0")
        .env("PHOENIX_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another phoenix process"),
        "{stderr}"
    );
    // The first one is unharmed.
    let r = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn kill_9_right_after_a_201_keeps_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    for round in 0..3 {
        let server = Server::start(dir.path());
        let tenant = format!("tenant-{round}");
        let r = http
            .post(server.url("/tenants"))
            .bearer_auth(SECRET)
            .json(&json!({"tenant_id": tenant, "name": "Crash test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .post(server.url(&format!("/tenants/{tenant}/leaderboards")))
            .bearer_auth(SECRET)
            .json(&json!({
                "leaderboard_id": "daily",
                "name": "Daily",
                "config": {
                    "timeframe": {"type": "daily", "timezone": "Europe/Berlin"},
                    "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}]}
                }
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        // No graceful anything: the process dies the instant the 201 is in our hands.
        server.kill9();

        let server = Server::start(dir.path());
        for previous in 0..=round {
            let r = http
                .get(server.url(&format!("/tenants/tenant-{previous}/leaderboards/daily")))
                .bearer_auth(SECRET)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "round {round}: tenant-{previous} lost");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["config"]["timeframe"]["timezone"], "Europe/Berlin");
        }
        server.kill9();
    }
}

fn count_event(id: &str, user: &str) -> Value {
    json!({
        "event_id": id,
        "type": "match.completed",
        "actor": {"user_id": user},
        "occurred_at": jiff::Timestamp::now().to_string(),
        "attrs": {}
    })
}

#[tokio::test]
async fn kill_9_while_clients_post_loses_no_acknowledged_event_and_counts_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let server = Server::start(dir.path());
    let r = http
        .post(server.url("/tenants"))
        .bearer_auth(SECRET)
        .json(&json!({"tenant_id": "crash", "name": "Crash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(server.url("/tenants/crash/leaderboards"))
        .bearer_auth(SECRET)
        .json(&json!({
            "leaderboard_id": "lb",
            "name": "Matches played",
            "config": {
                "timeframe": {"type": "all_time"},
                "scoring": {"rules": [{"event_type": "match.*"}], "aggregation": "count"}
            }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Eight clients post as fast as they can; the server is killed while they do.
    let clients = 8;
    let url = server.url("/v1/events");
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sent, mut acked) = (Vec::new(), Vec::new());
            for k in 0.. {
                let id = format!("c{c}-{k}");
                sent.push(id.clone());
                let reply = http
                    .post(&url)
                    .bearer_auth(SECRET)
                    .header("x-tenant-id", "crash")
                    .json(&count_event(&id, &format!("user-{c}")))
                    .send()
                    .await;
                match reply {
                    Ok(r) if r.status() == 202 => acked.push(id),
                    _ => break,
                }
            }
            (sent, acked)
        }));
    }
    // Let them get going, then pull the plug.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = http
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let accepted = stats
            .lines()
            .find(|l| l.starts_with("phoenix_events_accepted_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if accepted >= 300.0 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let acked_total: usize = results.iter().map(|(_, a)| a.len()).sum();
    let sent_total: usize = results.iter().map(|(s, _)| s.len()).sum();
    eprintln!("crash test: {acked_total} events acknowledged, {sent_total} sent before kill -9");
    assert!(acked_total > 0, "no event was acknowledged before the kill");

    // After restart, retry everything that was sent: what was acknowledged must come back a duplicate.
    let server = Server::start(dir.path());
    for (c, (sent, acked)) in results.iter().enumerate() {
        for id in sent {
            let r = http
                .post(server.url("/v1/events"))
                .bearer_auth(SECRET)
                .header("x-tenant-id", "crash")
                .json(&count_event(id, &format!("user-{c}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.unwrap();
            if acked.contains(id) {
                assert_eq!(
                    body["status"], "duplicate",
                    "{id} was acknowledged before the crash"
                );
            }
        }
    }
    // Every event sent counts exactly once: read the standings through the library API.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut server = server;
    let exit = server.child.wait().unwrap();
    assert!(exit.success());
    let key = phoenix_store::MasterKey::load_or_create(dir.path()).unwrap();
    let store = phoenix_store::EmbeddedStore::open(dir.path(), key).unwrap();
    use phoenix_store::Store;
    for (c, (sent, _)) in results.iter().enumerate() {
        let standing = store
            .standing_of("crash", "lb", None, &format!("user-{c}"))
            .await
            .unwrap()
            .expect("every client's player has a rank");
        assert_eq!(standing.score, sent.len() as f64, "user-{c}");
    }
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let r = client().get(server.url("/livez")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
    let log: Vec<String> = server.log.iter().collect();
    assert!(
        log.iter().any(|l| l.contains("shutdown signal received")),
        "{log:?}"
    );
}
