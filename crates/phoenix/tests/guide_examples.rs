//! The rewards guide's programs (docs/guides/rewards.md) run against a live server: the JavaScript
//! example (Node's own `crypto` and `fetch`) and the Python one (PyJWT and requests, from the venv
//! that `.ci/run` makes) each sign a player JWT, redeem a coupon code and claim what it granted; the
//! webhook receivers (Python and Node, each verifying with the `standardwebhooks` package, an
//! implementation independent of ours) get every message, drop the retry of one they answered 500
//! to, and refuse a forged one. Without `node`, the venv or the npm packages they say so and are
//! skipped; under `CI=true` that is a failure.

mod common;

use common::{SECRET, Server};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guides/examples")
}

/// The interpreter, or `None` (skip) when it is missing outside CI.
fn interpreter(program: PathBuf, what: &str) -> Option<PathBuf> {
    let works = Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(program);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is needed for this test under CI ({})",
        program.display()
    );
    eprintln!("skipped: {what} not found at {}", program.display());
    None
}

/// A server (with `env`) with tenant `guide` and a campaign whose shared code any player may redeem
/// once; answers the tenant's secret too.
async fn server_with_campaign(dir: &Path, env: &[(&str, &str)]) -> (Server, String) {
    let server = Server::start_with(dir, env);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let tenant: Value = http
        .post(server.url("/tenants"))
        .bearer_auth(SECRET)
        .json(&json!({"tenant_id": "guide", "name": "Guide"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = tenant["hmac_secret"].as_str().unwrap().to_owned();
    let r = http
        .post(server.url("/tenants/guide/coupon-campaigns"))
        .bearer_auth(SECRET)
        .json(
            &json!({"campaign_id": "launch", "name": "Launch", "code": "LAUNCH-2026",
                      "rewards": [{"type": "currency", "currency": "gems", "amount": 100},
                                  {"type": "item", "item": "launch_hat", "quantity": 1}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    (server, secret)
}

fn run(mut command: Command, server: &Server, secret: &str, user: &str) -> Value {
    let out = command
        .env("PHOENIX_URL", format!("http://{}", server.addr))
        .env("TENANT_ID", "guide")
        .env("TENANT_SECRET", secret)
        .env("USER_ID", user)
        .env("COUPON_CODE", "launch-2026")
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("redeemed LAUNCH-2026: 2 grant(s)"),
        "{stdout}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON summary")
}

#[tokio::test]
async fn the_javascript_example_redeems_a_code_and_claims_its_grants() {
    let Some(node) = interpreter(PathBuf::from("node"), "node (Node.js 18+)") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (server, secret) = server_with_campaign(dir.path(), &[]).await;
    let mut command = Command::new(node);
    command.arg(examples().join("redeem.mjs"));
    let summary = run(command, &server, &secret, "node-player");
    assert_eq!(summary, json!({"redeemed": 2, "pending": 0, "total": 2}));
    // The same player again: the code is used (409), and the example says so and fails.
    let mut again = Command::new("node");
    again.arg(examples().join("redeem.mjs"));
    let out = again
        .env("PHOENIX_URL", format!("http://{}", server.addr))
        .env("TENANT_ID", "guide")
        .env("TENANT_SECRET", &secret)
        .env("USER_ID", "node-player")
        .env("COUPON_CODE", "LAUNCH2026")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused (409)"));
}

#[tokio::test]
async fn the_python_example_redeems_a_code_and_claims_its_grants() {
    let venv = std::env::var("PHOENIX_GUIDE_VENV")
        .unwrap_or_else(|_| "/var/tmp/phoenix-guide-venv".to_owned());
    let Some(python) = interpreter(
        Path::new(&venv).join("bin/python"),
        "a Python venv with PyJWT and requests (made by .ci/run)",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (server, secret) = server_with_campaign(dir.path(), &[]).await;
    let mut command = Command::new(python);
    command.arg(examples().join("redeem.py"));
    let summary = run(command, &server, &secret, "py-player");
    assert_eq!(summary, json!({"redeemed": 2, "pending": 0, "total": 2}));
}

/// Reads a child's stdout lines in the background.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Kills the receiver when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a receiver (`command`, which reads WEBHOOK_SECRET, PORT and FAIL_FIRST) against a live server
/// whose webhook points at it, redeems a code, and checks what the receiver printed.
async fn receiver_gets_each_message_once(mut command: Command) {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server_with_campaign(
        dir.path(),
        &[
            ("PHOENIX_WEBHOOK_ALLOW_PRIVATE", "true"),
            (
                "PHOENIX_WEBHOOK_RETRY_SCHEDULE",
                "300ms,300ms,300ms,300ms,300ms",
            ),
        ],
    )
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook: Value = http
        .post(server.url("/tenants/guide/webhooks"))
        .bearer_auth(SECRET)
        .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"),
                      "events": ["coupon.redeemed", "reward.granted"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = hook["secret"].as_str().expect("the secret").to_owned();
    let mut child = Child(
        command
            .env("WEBHOOK_SECRET", &secret)
            .env("PORT", port.to_string())
            .env("FAIL_FIRST", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the receiver starts"),
    );
    let lines = lines_of(&mut child.0);
    let next = |what: &str| -> Value {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the receiver printed no {what}"));
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    };
    assert_eq!(next("start")["listening"], port);
    let redeemed = http
        .post(server.url("/v1/coupons/LAUNCH-2026/redeem"))
        .bearer_auth(SECRET)
        .header("X-Tenant-Id", "guide")
        .header("X-User-Id", "hooked-player")
        .send()
        .await
        .unwrap();
    assert_eq!(redeemed.status(), 200);
    // Three messages (the redemption and its two grants), each handled once, and one repeat: the
    // retry of the message the receiver answered 500 to.
    let (mut new, mut repeats) = (Vec::new(), Vec::new());
    while new.len() < 3 || repeats.is_empty() {
        let line = next("message");
        if let Some(t) = line["new"].as_str() {
            new.push((t.to_owned(), line["id"].as_str().unwrap().to_owned()));
        } else if let Some(id) = line["repeat"].as_str() {
            repeats.push(id.to_owned());
        } else {
            panic!("unexpected: {line}");
        }
    }
    let mut types: Vec<&str> = new.iter().map(|(t, _)| t.as_str()).collect();
    types.sort_unstable();
    assert_eq!(
        types,
        ["coupon.redeemed", "reward.granted", "reward.granted"]
    );
    assert_eq!(repeats.len(), 1);
    assert!(new.iter().any(|(_, id)| *id == repeats[0]));
    // A forged delivery is refused.
    let forged = http
        .post(format!("http://127.0.0.1:{port}/hook"))
        .header("webhook-id", "msg_forged")
        .header(
            "webhook-timestamp",
            jiff::Timestamp::now().as_second().to_string(),
        )
        .header(
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body(r#"{"type":"reward.granted"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    assert!(next("rejection")["rejected"].is_string());
}

#[tokio::test]
async fn the_python_receiver_verifies_signatures_and_drops_repeats() {
    let venv = std::env::var("PHOENIX_GUIDE_VENV")
        .unwrap_or_else(|_| "/var/tmp/phoenix-guide-venv".to_owned());
    let Some(python) = interpreter(
        Path::new(&venv).join("bin/python"),
        "a Python venv with standardwebhooks (made by .ci/run)",
    ) else {
        return;
    };
    let mut command = Command::new(python);
    command.arg(examples().join("receiver.py"));
    receiver_gets_each_message_once(command).await;
}

#[tokio::test]
async fn the_node_receiver_verifies_signatures_and_drops_repeats() {
    let Some(node) = interpreter(PathBuf::from("node"), "node (Node.js 18+)") else {
        return;
    };
    if !examples().join("node_modules/standardwebhooks").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "run `npm ci --prefix docs/guides/examples` (.ci/run does)"
        );
        eprintln!(
            "skipped: docs/guides/examples/node_modules is missing (npm ci --prefix docs/guides/examples)"
        );
        return;
    }
    let mut command = Command::new(node);
    command.arg(examples().join("receiver.mjs"));
    receiver_gets_each_message_once(command).await;
}
