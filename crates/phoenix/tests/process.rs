//! The `phoenix` binary as a user runs it: configuration errors, `--help`, the data-dir lock, graceful
//! shutdown on SIGTERM, durability across `kill -9` right after a 201, development mode's guard,
//! `phoenix users create`, and `phoenix demo`.

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
        "PHOENIX_REDIS_CA_FILE",
        "PHOENIX_ADMIN_SECRET",
        "PHOENIX_MASTER_KEY",
        "PHOENIX_AUTH_ENABLED",
        "PHOENIX_LOG",
        "PHOENIX_LOG_FORMAT",
        "PHOENIX_ALLOW_UNAUTHENTICATED_PUBLIC",
        "PHOENIX_ACCESS_TOKEN_TTL",
        "PHOENIX_REFRESH_TOKEN_TTL",
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
        ("PHOENIX_REDIS_CA_FILE", "/nonexistent/ca.pem"),
        ("PHOENIX_MAX_BODY_BYTES", "lots"),
        ("PHOENIX_ACCESS_TOKEN_TTL", "soon"),
        ("PHOENIX_REFRESH_TOKEN_TTL", "0"),
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
fn a_redis_ca_file_needs_a_tls_url_and_a_pem_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        ("redis://127.0.0.1:1", &not_pem, "needs a rediss://"),
        ("rediss://127.0.0.1:1", &not_pem, "holds no PEM certificate"),
        ("rediss://127.0.0.1:1", &missing, "missing.pem"),
        ("rediss://127.0.0.1:1/#insecure", &not_pem, "#insecure"),
    ];
    for (redis, file, said) in cases {
        let out = phoenix()
            .arg("serve")
            .env(
                "PHOENIX_DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/none",
            )
            .env("PHOENIX_REDIS_URL", redis)
            .env("PHOENIX_REDIS_CA_FILE", file)
            .env("PHOENIX_MASTER_KEY", "ab".repeat(32))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("PHOENIX_REDIS_CA_FILE") && stderr.contains(said),
            "{stderr}"
        );
    }
}

#[test]
fn cluster_mode_without_a_master_key_stops_start_up_with_one_line() {
    let out = phoenix()
        .arg("serve")
        .env(
            "PHOENIX_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .env("PHOENIX_REDIS_URL", "redis://127.0.0.1:1")
        .env_remove("PHOENIX_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr}");
    assert!(lines[0].contains("PHOENIX_MASTER_KEY"), "{stderr}");
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

/// The attack: more idle sockets than the process has descriptors. Accepting fails for want of
/// descriptors; the server sheds its oldest idle connections instead of spinning or going deaf.
#[tokio::test]
async fn idle_sockets_beyond_the_descriptor_limit_do_not_lock_out_probes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let pid = server.child.id().to_string();
    let limited = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=128:128"])
        .status()
        .unwrap();
    assert!(limited.success());
    let addr = server.addr.clone();
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(socket) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(socket);
        }
    }
    // A fresh client each time: no kept-alive connection to lean on.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            client().get(server.url("/livez")).send(),
        )
        .await
        .expect("/livez answers within 1 s")
        .unwrap();
        assert_eq!(r.status(), 200, "after {:?}", started.elapsed());
    }
    drop(idle);
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

#[test]
fn development_mode_stays_on_loopback_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    for listen in [
        ("PHOENIX_LISTEN", "0.0.0.0:0"),
        ("PHOENIX_QUERY_LISTEN", "0.0.0.0:0"),
    ] {
        let out = phoenix()
            .arg("serve")
            .env("PHOENIX_DATA_DIR", dir.path())
            .env("PHOENIX_AUTH_ENABLED", "false")
            .env(listen.0, listen.1)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{listen:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("PHOENIX_AUTH_ENABLED"), "{stderr}");
        assert!(stderr.contains(listen.0), "{stderr}");
        assert!(
            stderr.contains("PHOENIX_ALLOW_UNAUTHENTICATED_PUBLIC"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn development_mode_warns_loudly_and_answers_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("PHOENIX_AUTH_ENABLED", "false"),
            ("PHOENIX_LISTEN", "0.0.0.0:0"),
            ("PHOENIX_ALLOW_UNAUTHENTICATED_PUBLIC", "true"),
        ],
    );
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let reply = client()
        .get(format!("http://127.0.0.1:{port}/auth/config"))
        .send()
        .await
        .unwrap();
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["authentication_enabled"], false, "{body}");
    let health = client()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let log = &server.startup;
    assert!(
        log.iter()
            .any(|l| l.contains("WARN") && l.contains("AUTHENTICATION IS DISABLED")),
        "{log:?}"
    );
}

#[tokio::test]
async fn users_create_talks_to_the_running_server_with_the_admin_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let base = server.url("");
    let out = phoenix()
        .args([
            "users",
            "create",
            "--username",
            "ops",
            "--role",
            "ADMIN",
            "--server",
        ])
        .arg(&base)
        .env("PHOENIX_ADMIN_SECRET", SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created ops (ADMIN)"), "{stdout}");
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password")
        .to_owned();
    let login = client()
        .post(server.url("/auth/login"))
        .json(&json!({"username": "ops", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    // A password from standard input; a second user of the same name is refused with the reason.
    let mut child = phoenix()
        .args([
            "users",
            "create",
            "--username",
            "viewer",
            "--password-stdin",
            "--server",
        ])
        .arg(&base)
        .env("PHOENIX_ADMIN_SECRET", SECRET)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"viewer-password-1\n").unwrap();
    }
    assert!(child.wait_with_output().unwrap().status.success());
    let login = client()
        .post(server.url("/auth/login"))
        .json(&json!({"username": "viewer", "password": "viewer-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(login.json::<Value>().await.unwrap()["role"], "VIEWER");
    let again = phoenix()
        .args(["users", "create", "--username", "ops", "--server"])
        .arg(&base)
        .env("PHOENIX_ADMIN_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("409"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Without the admin secret the command says what it needs.
    let bare = phoenix()
        .args(["users", "create", "--username", "x", "--server"])
        .arg(&base)
        .output()
        .unwrap();
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("PHOENIX_ADMIN_SECRET"));
}

/// What `phoenix demo` printed, read from its standard output as it goes.
struct Demo {
    child: std::process::Child,
    lines: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Demo {
        use std::io::BufRead;
        let mut child = phoenix()
            .args([
                "--listen",
                "127.0.0.1:0",
                "demo",
                "--rate",
                "40",
                "--sprint-seconds",
                "10",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Owned by the guard from here on, so the process is killed and reaped whatever happens.
        let mut demo = Demo {
            child,
            lines: Vec::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the demo prints its banner within 60 s");
            let ready = line.starts_with("phoenix demo ready: ");
            demo.lines.push(line);
            if ready {
                return demo;
            }
        }
    }

    /// The value after `label` on the banner line that starts with it.
    fn value(&self, label: &str) -> String {
        self.lines
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .unwrap_or_else(|| panic!("no '{label}' in {:#?}", self.lines))
            .trim()
            .to_owned()
    }
}

#[tokio::test]
async fn demo_prints_working_credentials_and_the_rankings_move() {
    let demo = Demo::start();
    let console = demo.value("phoenix demo ready: ");
    let base = console.trim_end_matches("/console").to_owned();
    let page = client().get(&console).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));

    for (label, username) in [("ADMIN login", "admin"), ("VIEWER login", "viewer")] {
        let login = demo.value(label);
        let password = login
            .strip_prefix(&format!("{username} / "))
            .unwrap_or_else(|| panic!("{label}: {login}"));
        let reply = client()
            .post(format!("{base}/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{label}");
    }

    let player = demo.value("Player JWT");
    let read = || async {
        let reply = client()
            .get(format!("{base}/v1/leaderboards/daily-arena?limit=100"))
            .bearer_auth(&player)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        reply.json::<Value>().await.unwrap()
    };
    let first = read().await;
    assert_eq!(first["window"]["status"], "open");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = read().await;
        if now["total_entries"].as_u64() > Some(0) && now["entries"] != first["entries"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo's rankings did not change: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The player's token reads but does not write; the printed server token writes.
    let event = json!({"event_id": "demo-test-1", "type": "match.completed",
        "actor": {"user_id": "player-001"}, "occurred_at": jiff::Timestamp::now().to_string(),
        "attrs": {"score": 500, "kills": 9}});
    let post = |token: String| {
        let event = event.clone();
        let url = format!("{base}/v1/events");
        async move {
            client()
                .post(url)
                .bearer_auth(token)
                .json(&event)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post(player.clone()).await, 403);
    assert_eq!(post(demo.value("Server JWT")).await, 202);
    // Every demo leaderboard is there for the player.
    let boards: Value = client()
        .get(format!("{base}/v1/leaderboards"))
        .bearer_auth(&player)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(boards["total"], 4, "{boards}");

    // The printed coupon code works once for the player, and the sprint's rule pays out when the
    // (here 10-second) sprint ends: a settlement with grants, visible to the winners.
    let code = demo.value("Coupon code");
    let code = code.split_whitespace().next().unwrap().to_owned();
    let redeem = || async {
        client()
            .post(format!("{base}/v1/coupons/{code}/redeem"))
            .bearer_auth(&player)
            .send()
            .await
            .unwrap()
    };
    let first = redeem().await;
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["grants"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(redeem().await.status(), 409);
    let secret = demo.value("Admin secret");
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let settled = loop {
        let s: Value = client()
            .get(format!(
                "{base}/tenants/demo-studio/reward-rules/sprint-prizes/settlements"
            ))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["total"] == 1 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sprint was never settled: {s}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        settled["settlements"][0]["grants"].as_u64() > Some(0),
        "{settled}"
    );
    // The simulated players complete the first step of an achievement.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let a: Value = client()
            .get(format!("{base}/tenants/demo-studio/achievements/veteran"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if a["completions"][0]["players"].as_u64() > Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody completed a step: {a}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mine: Value = client()
        .get(format!("{base}/v1/achievements"))
        .bearer_auth(&player)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 2, "{mine}");
}
