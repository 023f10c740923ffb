//! The rewards guide's programs (docs/guides/rewards.md) run against a live server: the JavaScript
//! example (Node's own `crypto` and `fetch`) and the Python one (PyJWT and requests, from the venv
//! that `.ci/run` makes) each sign a player JWT, redeem a coupon code and claim what it granted.
//! Without `node` or the venv they say so and are skipped; under `CI=true` that is a failure.

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

/// A server with tenant `guide` and a campaign whose shared code any player may redeem once.
async fn server_with_campaign(dir: &Path) -> (Server, String) {
    let server = Server::start(dir);
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
    let (server, secret) = server_with_campaign(dir.path()).await;
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
    let (server, secret) = server_with_campaign(dir.path()).await;
    let mut command = Command::new(python);
    command.arg(examples().join("redeem.py"));
    let summary = run(command, &server, &secret, "py-player");
    assert_eq!(summary, json!({"redeemed": 2, "pending": 0, "total": 2}));
}
