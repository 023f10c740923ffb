//! The web console in real headless Chromium: this test starts the real server, makes a tenant, an
//! ADMIN and a VIEWER and a player token, then runs `console-tests/console.test.mjs` (playwright-core)
//! against it: login errors, sign-in, a leaderboard created after a validation error shown by field,
//! the live view moving as events are posted, a new tenant's secret and a new API key shown once (and
//! the key revoked), users managed, a past window's final standings, a reward rule created (after a
//! validation error shown by field) with its preview, a coupon campaign's personal codes generated and
//! one voided, a grant of a settled window voided, a webhook to a receiver the script runs (its secret
//! shown once), an achievement created (after a validation error shown by field) whose completion
//! counts move as a player wins, the webhook's deliveries log showing the signed delivery of that
//! completion, then a 410 disabling it (with the reason shown) and enabling it sending the waiting
//! message, and a VIEWER finding no write controls on any page.
//! Screenshots land in `target/console-screenshots/`.
//!
//! Needs Node.js, Chromium (`/usr/bin/chromium` or `$CHROMIUM`) and `npm ci --prefix console-tests`.
//! Without them the test says so and is skipped, except under `CI=true`, where it fails.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// What is missing to run the browser tests, if anything.
fn missing_tools(root: &Path, chromium: &Path) -> Option<String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("Node.js (`node`) is not installed".into());
    }
    if !chromium.exists() {
        return Some(format!(
            "Chromium is not at {} (apt-get install -y chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    if !root
        .join("console-tests/node_modules/playwright-core")
        .exists()
    {
        return Some("playwright-core is not installed (npm ci --prefix console-tests)".into());
    }
    None
}

/// Chromium's path, or `None` (after saying why) when the browser tests cannot run here.
fn browser_tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let root = repo_root();
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if let Some(missing) = missing_tools(&root, &chromium) {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!in_ci, "the browser tests cannot run in CI: {missing}");
        eprintln!("SKIPPED {test}: {missing}");
        return None;
    }
    Some((root, chromium))
}

/// Runs the browser script with `env`; returns its standard output, failing the test if it failed.
async fn run_script(root: &Path, chromium: &Path, env: &[(&str, &str)]) -> String {
    let screenshots = root.join("target/console-screenshots");
    let mut command = tokio::process::Command::new("node");
    command
        .arg("console.test.mjs")
        .current_dir(root.join("console-tests"))
        .env("SCREENSHOT_DIR", &screenshots)
        .env("CHROMIUM", chromium)
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the browser tests finish within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the browser tests failed (screenshots in {}):\n{stdout}\n{stderr}",
        screenshots.display()
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_skips_sign_in_in_development_mode() {
    let Some((root, chromium)) = browser_tools("the_console_skips_sign_in_in_development_mode")
    else {
        return;
    };
    let mut config = test_config();
    config.auth_enabled = false;
    let app = spawn_app_with(config).await;
    app.create_tenant("t-dev-browser").await;
    let stdout = run_script(
        &root,
        &chromium,
        &[
            ("DEV_MODE", "1"),
            ("PHOENIX_URL", &app.base),
            ("TENANT_ID", "t-dev-browser"),
        ],
    )
    .await;
    assert!(stdout.contains("ok - dev_mode_skips_sign_in"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_headless_chromium() {
    let Some((root, chromium)) = browser_tools("the_console_works_in_headless_chromium") else {
        return;
    };
    let mut config = test_config();
    // The webhook steps point a webhook at a receiver on 127.0.0.1, and wait for its retries.
    config.webhook_allow_private = true;
    config.webhook_retry_schedule = vec![Duration::from_millis(300); 3];
    let app = spawn_app_with(config).await;
    let secret = app.create_tenant("t-browser").await;
    let passwords =
        [("console-admin", "ADMIN"), ("console-viewer", "VIEWER")].map(|(username, role)| {
            let password = format!("{username}-password");
            (username, role, password)
        });
    for (username, role, password) in &passwords {
        app.admin_json(
            Method::POST,
            "/users",
            &json!({"username": username, "password": password, "role": role}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    let now = now_secs();
    let player_token = admin_jwt(
        &secret,
        &json!({"sub": "game-server", "sub_type": "tenant", "sub_id": "t-browser",
                "iat": now, "exp": now + 3600}),
    );
    // A leaderboard whose only window closes a few seconds from now, with two scores in it: by the time
    // the browser reaches its "past windows" step, the window has ended and its standings are final.
    let ends_at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    app.admin_json(
        Method::POST,
        "/tenants/t-browser/leaderboards",
        &json!({
            "leaderboard_id": "short-window",
            "name": "Short window",
            "config": {
                "timeframe": {"type": "custom",
                              "starts_at": (ends_at - jiff::SignedDuration::from_hours(1)).to_string(),
                              "ends_at": ends_at.to_string()},
                // Its own event type: the live-view step's events (posted while this window may
                // still be open) must not rank here.
                "scoring": {"rules": [{"event_type": "past.match", "points_expression": "attrs.score"}]}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    // A reward rule on it, made before the window ends: when it ends, ann and ben get grants (one to
    // void in the console).
    app.admin_json(
        Method::POST,
        "/tenants/t-browser/reward-rules",
        &json!({
            "rule_id": "short-podium", "leaderboard_id": "short-window", "name": "Short podium",
            "tiers": [
                {"rank_from": 1, "rank_to": 1,
                 "rewards": [{"type": "currency", "currency": "gems", "amount": 100}]},
                {"top_percent": 100, "rewards": [{"type": "badge", "badge": "finisher"}]}
            ]
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    for (user, score) in [("ann", 30), ("ben", 20)] {
        send(
            app.json(
                Method::POST,
                "/v1/events",
                &json!({"event_id": format!("past-{user}"), "type": "past.match",
                        "actor": {"user_id": user}, "occurred_at": jiff::Timestamp::now().to_string(),
                        "attrs": {"score": score}}),
            )
            .bearer_auth(&player_token),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    }
    // A leaderboard whose window stays open, with scores: the console makes a reward rule for it and
    // previews what its players would get.
    app.admin_json(
        Method::POST,
        "/tenants/t-browser/leaderboards",
        &json!({
            "leaderboard_id": "prize-board",
            "name": "Prize board",
            "config": {
                "timeframe": {"type": "daily"},
                "scoring": {"rules": [{"event_type": "prize.match", "points_expression": "attrs.score"}]}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    let events: Vec<_> = [("pia", 300), ("quinn", 200), ("rex", 100)]
        .iter()
        .map(|(user, score)| {
            json!({"event_id": format!("prize-{user}"), "type": "prize.match",
                   "actor": {"user_id": user}, "occurred_at": jiff::Timestamp::now().to_string(),
                   "attrs": {"score": score}})
        })
        .collect();
    send(
        app.json(Method::POST, "/v1/events/batch", &json!({"events": events}))
            .bearer_auth(&player_token),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    // The short window has ended and its rule settled it: there are grants to void.
    eventually("the short window is settled", || async {
        let reply = app
            .admin_get("/tenants/t-browser/reward-rules/short-podium/settlements")
            .await;
        reply.status == StatusCode::OK && reply.body["total"] == 1
    })
    .await;
    let stdout = run_script(
        &root,
        &chromium,
        &[
            ("PHOENIX_URL", &app.base),
            ("ADMIN_USER", passwords[0].0),
            ("ADMIN_PASSWORD", &passwords[0].2),
            ("VIEWER_USER", passwords[1].0),
            ("VIEWER_PASSWORD", &passwords[1].2),
            ("TENANT_ID", "t-browser"),
            ("PAST_LEADERBOARD", "short-window"),
            ("REWARD_LEADERBOARD", "prize-board"),
            ("GRANT_USER", "ann"),
            ("PLAYER_TOKEN", &player_token),
        ],
    )
    .await;
    for step in [
        "login_rejects_wrong_password",
        "admin_logs_in",
        "create_leaderboard_shows_field_error_first",
        "live_view_moves",
        "tenant_secret_shown_once",
        "api_key_shown_once_then_revoked",
        "admin_manages_users",
        "past_window_shows_final_standings",
        "admin_creates_a_reward_rule_and_sees_its_preview",
        "admin_generates_personal_codes_and_voids_one",
        "admin_voids_a_grant",
        "admin_creates_a_webhook_and_sees_its_secret_once",
        "admin_creates_an_achievement_and_sees_its_completions",
        "webhook_delivery_shows_in_its_log",
        "viewer_sees_no_write_controls",
        "no_script_errors",
    ] {
        assert!(
            stdout.contains(&format!("ok - {step}")),
            "step {step} did not pass:\n{stdout}"
        );
    }
}
