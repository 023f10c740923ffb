//! Rewards over real HTTP (SPEC §7.1–7.4, §7.7): a reward rule settles a short custom window when it
//! ends, exactly once (across repeated `settle` calls and a restart), players list and claim their
//! grants, admins void them; coupon campaigns with shared and personal codes, every refusal of §7.7 in
//! its order, the `Idempotency-Key` retry, and limits that hold under concurrent redemptions.

use crate::support::*;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn event(id: &str, user: &str, score: f64) -> Value {
    json!({"event_id": id, "type": "match", "actor": {"user_id": user},
           "occurred_at": Timestamp::now().to_string(), "attrs": {"score": score}})
}

/// A custom leaderboard `board` that ends `ends_in` from now.
async fn short_board(app: &TestApp, tenant: &str, board: &str, ends_in: SignedDuration) {
    let now = Timestamp::now();
    app.admin_json(
        Method::POST,
        &format!("/tenants/{tenant}/leaderboards"),
        &json!({
            "leaderboard_id": board,
            "name": "Sprint",
            "config": {
                "timeframe": {"type": "custom",
                              "starts_at": (now - SignedDuration::from_hours(1)).to_string(),
                              "ends_at": (now + ends_in).to_string()},
                "scoring": {"rules": [{"event_type": "match", "points_expression": "attrs.score"}]}
            }
        }),
    )
    .await
    .expect(StatusCode::CREATED);
}

async fn post_events(app: &TestApp, secret: &str, tenant: &str, scores: &[(&str, f64)]) {
    let token = tenant_token(secret, tenant, None, None);
    let events: Vec<Value> = scores
        .iter()
        .enumerate()
        .map(|(i, (user, score))| event(&format!("ev-{i}-{user}"), user, *score))
        .collect();
    send(
        app.json(Method::POST, "/v1/events/batch", &json!({"events": events}))
            .bearer_auth(token),
    )
    .await
    .expect(StatusCode::ACCEPTED);
}

async fn settlements(app: &TestApp, tenant: &str, rule: &str) -> Value {
    app.admin_get(&format!(
        "/tenants/{tenant}/reward-rules/{rule}/settlements"
    ))
    .await
    .body
}

async fn all_grants(app: &TestApp, tenant: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/tenants/{tenant}/grants?limit=2");
    loop {
        let r = app.admin_get(&path).await;
        r.expect(StatusCode::OK);
        out.extend(r.body["grants"].as_array().cloned().unwrap_or_default());
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/tenants/{tenant}/grants?limit=2&cursor={c}"),
            None => return out,
        }
    }
}

#[tokio::test]
async fn a_rule_settles_its_window_once_and_players_claim_what_they_earned() {
    let app = spawn_app().await;
    let secret = app.create_tenant("rw").await;
    short_board(&app, "rw", "sprint", SignedDuration::from_millis(2500)).await;
    app.admin_json(
        Method::POST,
        "/tenants/rw/coupon-campaigns",
        &json!({"campaign_id": "vip", "name": "VIP",
                "rewards": [{"type": "item", "item": "vip_pass", "quantity": 1}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    let rule = app
        .admin_json(
            Method::POST,
            "/tenants/rw/reward-rules",
            &json!({"rule_id": "podium", "leaderboard_id": "sprint", "name": "Podium",
                    "tiers": [
                        {"rank_from": 1, "rank_to": 1, "rewards": [
                            {"type": "currency", "currency": "gems", "amount": 500},
                            {"type": "badge", "badge": "champion"}]},
                        {"top_percent": 40, "rewards": [{"type": "coupon", "campaign_id": "vip"}]}]}),
        )
        .await;
    rule.expect(StatusCode::CREATED);
    assert_eq!(rule.body["status"], "active");
    assert_eq!(rule.body["version"], 1);
    post_events(
        &app,
        &secret,
        "rw",
        &[
            ("ann", 50.0),
            ("bob", 40.0),
            ("cat", 30.0),
            ("dan", 20.0),
            ("eve", 10.0),
        ],
    )
    .await;

    // The preview: ann gets two rewards (rank 1), bob the coupon (top 40% of 5 = 2 ranks).
    let preview = app
        .admin_get("/tenants/rw/reward-rules/podium/preview?limit=2")
        .await;
    preview.expect(StatusCode::OK);
    assert_eq!(preview.body["ranked_entries"], 5);
    assert_eq!(preview.body["total"], 3);
    assert_eq!(preview.body["window"]["status"], "open");
    let mut previewed: Vec<Value> = preview.body["grants"].as_array().cloned().unwrap();
    let cursor = preview.body["next_cursor"].as_str().expect("a second page");
    let rest = app
        .admin_get(&format!(
            "/tenants/rw/reward-rules/podium/preview?limit=2&cursor={cursor}"
        ))
        .await;
    rest.expect(StatusCode::OK);
    assert!(rest.body["next_cursor"].is_null());
    previewed.extend(rest.body["grants"].as_array().cloned().unwrap());
    let users: Vec<&str> = previewed
        .iter()
        .map(|g| g["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["ann", "ann", "bob"]);

    // An open window cannot be settled by hand.
    app.admin_json(
        Method::POST,
        "/tenants/rw/reward-rules/podium/settle",
        &json!({"window_id": "custom"}),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "CONFLICT");

    // The window ends; the settler settles it within seconds.
    eventually("the window is settled", || async {
        settlements(&app, "rw", "podium").await["total"] == 1
    })
    .await;
    let listed = settlements(&app, "rw", "podium").await;
    let s = &listed["settlements"][0];
    assert_eq!(s["grants"], 3);
    assert_eq!(s["ranked_entries"], 5);
    assert_eq!(s["rule_version"], 1);
    assert_eq!(s["window"]["id"], "custom");
    assert_eq!(s["window"]["status"], "closed");

    let grants = all_grants(&app, "rw").await;
    assert_eq!(grants.len(), 3);
    let ids: BTreeSet<&str> = grants
        .iter()
        .map(|g| g["grant_id"].as_str().unwrap())
        .collect();
    let planned: BTreeSet<&str> = previewed
        .iter()
        .map(|g| g["grant_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids, planned,
        "the preview named the ids the settlement used"
    );
    let bob = grants.iter().find(|g| g["user_id"] == "bob").unwrap();
    let code = bob["coupon_code"]
        .as_str()
        .expect("a coupon reward issues a code");
    assert_eq!(code.len(), 14, "{code}");
    assert_eq!(bob["source"]["kind"], "reward_rule");
    assert_eq!(bob["source"]["rank"], 2);
    assert_eq!(bob["source"]["window_id"], "custom");

    // Settling again by hand changes nothing: 200 with the existing settlement.
    let again = app
        .admin_json(
            Method::POST,
            "/tenants/rw/reward-rules/podium/settle",
            &json!({"window_id": "custom"}),
        )
        .await;
    again.expect(StatusCode::OK);
    assert_eq!(again.body["settled_at"], s["settled_at"]);
    app.admin_json(
        Method::POST,
        "/tenants/rw/reward-rules/podium/settle",
        &json!({"window_id": "2020-01-01"}),
    )
    .await
    .expect_validation();

    // The player sees and claims their grants.
    let ann = tenant_token(&secret, "rw", Some("ann"), Some("rewards:redeem"));
    let mine = send(app.get("/v1/rewards").bearer_auth(&ann)).await;
    mine.expect(StatusCode::OK);
    assert_eq!(mine.body["total"], 2);
    let first = mine.body["rewards"][0]["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let claimed = send(
        app.request(Method::POST, &format!("/v1/rewards/{first}/claim"))
            .bearer_auth(&ann),
    )
    .await;
    claimed.expect(StatusCode::OK);
    assert_eq!(claimed.body["status"], "claimed");
    let twice = send(
        app.request(Method::POST, &format!("/v1/rewards/{first}/claim"))
            .bearer_auth(&ann),
    )
    .await;
    twice.expect(StatusCode::OK);
    assert_eq!(twice.body["claimed_at"], claimed.body["claimed_at"]);
    let pending = send(app.get("/v1/rewards?status=pending").bearer_auth(&ann)).await;
    assert_eq!(pending.body["total"], 1);
    // Someone else's grant is 404 to this player.
    let bob_grant = bob["grant_id"].as_str().unwrap();
    send(
        app.request(Method::POST, &format!("/v1/rewards/{bob_grant}/claim"))
            .bearer_auth(&ann),
    )
    .await
    .expect_not_found();
    // A voided grant cannot be claimed; voiding again answers it unchanged.
    let voided = app
        .admin_json(
            Method::POST,
            &format!("/tenants/rw/grants/{bob_grant}/void"),
            &json!({"reason": "cheating"}),
        )
        .await;
    voided.expect(StatusCode::OK);
    assert_eq!(voided.body["status"], "voided");
    assert_eq!(voided.body["void_reason"], "cheating");
    let bob_token = tenant_token(&secret, "rw", Some("bob"), None);
    send(
        app.request(Method::POST, &format!("/v1/rewards/{bob_grant}/claim"))
            .bearer_auth(&bob_token),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "CONFLICT");
    // A token scoped for reading leaderboards only cannot see rewards.
    let reader = tenant_token(&secret, "rw", Some("ann"), Some("leaderboards:read"));
    send(app.get("/v1/rewards").bearer_auth(&reader))
        .await
        .expect_forbidden();

    // The settlement, its lag and the grants show in the metrics.
    let metrics = send(app.get("/metrics")).await.text;
    for name in [
        "phoenix_settlements_total 1",
        "phoenix_settlements_automatic_total 1",
        "phoenix_grants_total{source=\"reward_rule\"} 3",
        "phoenix_grant_claims_total 1",
        "phoenix_grant_voids_total 1",
    ] {
        assert!(metrics.contains(name), "{name} not in {metrics}");
    }

    // After a restart, the same grants, and no second settlement.
    let app = app.restart().await;
    let after = all_grants(&app, "rw").await;
    assert_eq!(after.len(), 3);
    assert_eq!(settlements(&app, "rw", "podium").await["total"], 1);
    let statuses: BTreeSet<String> = after
        .iter()
        .map(|g| format!("{}:{}", g["grant_id"], g["status"]))
        .collect();
    assert!(statuses.contains(&format!("\"{first}\":\"claimed\"")));
    assert!(statuses.contains(&format!("\"{bob_grant}\":\"voided\"")));
}

#[tokio::test]
async fn rules_are_validated_naming_the_field() {
    let app = spawn_app().await;
    app.create_tenant("rv").await;
    short_board(&app, "rv", "sprint", SignedDuration::from_hours(1)).await;
    app.admin_json(
        Method::POST,
        "/tenants/rv/leaderboards",
        &json!({"leaderboard_id": "forever", "name": "Forever", "config": {
            "timeframe": {"type": "all_time"},
            "scoring": {"rules": [{"event_type": "match", "points_expression": "1"}]}}}),
    )
    .await
    .expect(StatusCode::CREATED);
    let base = |tiers: Value| json!({"rule_id": "r1", "leaderboard_id": "sprint", "name": "R", "tiers": tiers});
    let cases = [
        (
            base(
                json!([{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]},
                         {"rank_from": 5, "rank_to": 2, "rewards": [{"type": "badge", "badge": "b"}]}]),
            ),
            "tiers[1].rank_to",
        ),
        (
            base(json!([{"top_percent": 5.555, "rewards": [{"type": "badge", "badge": "a"}]}])),
            "tiers[0].top_percent",
        ),
        (
            base(
                json!([{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "coupon", "campaign_id": "nope"}]}]),
            ),
            "tiers[0].rewards[0].campaign_id",
        ),
        (
            json!({"rule_id": "r1", "leaderboard_id": "forever", "name": "R",
                   "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
            "leaderboard_id",
        ),
        (
            json!({"rule_id": "r1", "leaderboard_id": "missing", "name": "R",
                   "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
            "leaderboard_id",
        ),
        (
            json!({"rule_id": "bad id!", "leaderboard_id": "sprint", "name": "R",
                   "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
            "rule_id",
        ),
        (
            json!({"rule_id": "r1", "leaderboard_id": "sprint", "name": "R", "settle_delay_seconds": 86401,
                   "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
            "settle_delay_seconds",
        ),
    ];
    for (body, field) in cases {
        let message = app
            .admin_json(Method::POST, "/tenants/rv/reward-rules", &body)
            .await
            .expect_validation();
        assert!(message.starts_with(field), "{field}: {message}");
    }
    let good =
        base(json!([{"rank_from": 1, "rank_to": 3, "rewards": [{"type": "badge", "badge": "a"}]}]));
    app.admin_json(Method::POST, "/tenants/rv/reward-rules", &good)
        .await
        .expect(StatusCode::CREATED);
    app.admin_json(Method::POST, "/tenants/rv/reward-rules", &good)
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    let patched = app
        .admin_json(
            Method::PATCH,
            "/tenants/rv/reward-rules/r1",
            &json!({"status": "inactive", "min_participants": 3}),
        )
        .await;
    patched.expect(StatusCode::OK);
    assert_eq!(patched.body["version"], 2);
    assert_eq!(patched.body["status"], "inactive");
    app.admin_json(Method::DELETE, "/tenants/rv/reward-rules/r1", &json!({}))
        .await
        .expect(StatusCode::OK);
    // A deleted rule's id stays taken, so a grant id can never repeat.
    app.admin_json(Method::POST, "/tenants/rv/reward-rules", &good)
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    app.admin_get("/tenants/rv/reward-rules/r1")
        .await
        .expect_not_found();
}

async fn redeem(app: &TestApp, secret: &str, user: &str, code: &str) -> Reply {
    let token = tenant_token(secret, "cp", Some(user), None);
    send(
        app.request(Method::POST, &format!("/v1/coupons/{code}/redeem"))
            .bearer_auth(token),
    )
    .await
}

#[tokio::test]
async fn thirty_concurrent_redemptions_of_a_campaign_capped_at_five_give_exactly_five() {
    let app = spawn_app().await;
    let secret = app.create_tenant("cp").await;
    app.admin_json(
        Method::POST,
        "/tenants/cp/coupon-campaigns",
        &json!({"campaign_id": "launch", "name": "Launch", "code": "LAUNCH-2026",
                "max_redemptions": 5,
                "rewards": [{"type": "currency", "currency": "gems", "amount": 50}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    let redemptions = (0..30).map(|i| {
        let (app, secret) = (&app, &secret);
        async move {
            redeem(app, secret, &format!("p{i}"), "launch2026")
                .await
                .status
        }
    });
    let statuses = futures_util::future::join_all(redemptions).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((ok, refused), (5, 25), "{statuses:?}");
    let campaign = app.admin_get("/tenants/cp/coupon-campaigns/launch").await;
    assert_eq!(campaign.body["redemptions"], 5);
    let trail = app
        .admin_get("/tenants/cp/coupon-redemptions?campaign_id=launch")
        .await;
    assert_eq!(trail.body["total"], 5);
    assert_eq!(trail.body["redemptions"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn every_refusal_of_a_redemption_comes_in_the_specified_order() {
    let app = spawn_app().await;
    let secret = app.create_tenant("cp").await;
    let create = |body: Value| {
        let app = &app;
        async move {
            app.admin_json(Method::POST, "/tenants/cp/coupon-campaigns", &body)
                .await
        }
    };
    let gems = json!([{"type": "currency", "currency": "gems", "amount": 5}]);
    create(json!({"campaign_id": "personal", "name": "P", "rewards": gems, "per_player_limit": 1}))
        .await
        .expect(StatusCode::CREATED);
    // Shared codes clash without regard to case or dashes.
    create(
        json!({"campaign_id": "shared", "name": "S", "rewards": gems, "code": "Spring-Sale",
                  "per_player_limit": 2, "max_redemptions": 3}),
    )
    .await
    .expect(StatusCode::CREATED);
    create(json!({"campaign_id": "clash", "name": "C", "rewards": gems, "code": "SPRINGSALE"}))
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    // Bad campaigns are refused naming the field.
    let msg = create(json!({"campaign_id": "x", "name": "X", "rewards": [{"type": "coupon", "campaign_id": "personal"}]}))
        .await
        .expect_validation();
    assert!(msg.starts_with("rewards[0].type"), "{msg}");
    let msg = create(json!({"campaign_id": "x", "name": "X", "rewards": gems,
                            "expires_at": "2020-01-01T00:00:00Z"}))
    .await
    .expect_validation();
    assert!(msg.starts_with("expires_at"), "{msg}");

    let issued = app
        .admin_json(
            Method::POST,
            "/tenants/cp/coupon-campaigns/personal/codes",
            &json!({"count": 3, "user_id": "ann"}),
        )
        .await;
    issued.expect(StatusCode::CREATED);
    assert_eq!(issued.body["total"], 3);
    let codes: Vec<String> = issued.body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 14 && c.as_bytes()[4] == b'-')
    );
    let open = app
        .admin_json(
            Method::POST,
            "/tenants/cp/coupon-campaigns/personal/codes",
            &json!({"count": 1}),
        )
        .await;
    let unbound = open.body["codes"][0]["code"].as_str().unwrap().to_owned();

    // Unknown 404, bound to another player 403.
    redeem(&app, &secret, "ann", "NOPE-NOPE-NOPE")
        .await
        .expect_not_found();
    redeem(&app, &secret, "bob", &codes[0])
        .await
        .expect_forbidden();
    // Redeemed in any case, dashes or not; a retry with the same Idempotency-Key answers it again.
    let lower = codes[0].replace('-', "").to_lowercase();
    let token = tenant_token(&secret, "cp", Some("ann"), Some("rewards:redeem"));
    let with_key = |code: String| {
        app.request(Method::POST, &format!("/v1/coupons/{code}/redeem"))
            .bearer_auth(&token)
            .header("idempotency-key", "k-1")
    };
    let first = send(with_key(lower.clone())).await;
    first.expect(StatusCode::OK);
    assert_eq!(first.body["code"], codes[0]);
    assert_eq!(first.body["grants"].as_array().unwrap().len(), 1);
    let retry = send(with_key(lower)).await;
    retry.expect(StatusCode::OK);
    assert_eq!(retry.body["redemption_id"], first.body["redemption_id"]);
    // Without the key: already used.
    let used = redeem(&app, &secret, "ann", &codes[0]).await;
    used.expect_error(StatusCode::CONFLICT, "CONFLICT");
    assert!(used.text.contains("already been used"), "{}", used.text);
    // Per-player limit across codes of the campaign.
    let limit = redeem(&app, &secret, "ann", &codes[1]).await;
    limit.expect_error(StatusCode::CONFLICT, "CONFLICT");
    assert!(limit.text.contains("per-player limit"), "{}", limit.text);
    // An unbound code binds to the first redeemer; the next player gets 409.
    redeem(&app, &secret, "cat", &unbound)
        .await
        .expect(StatusCode::OK);
    let taken = redeem(&app, &secret, "dan", &unbound).await;
    taken.expect_error(StatusCode::CONFLICT, "CONFLICT");
    assert!(taken.text.contains("already been used"), "{}", taken.text);

    // Voided comes before inactive, inactive before the dates, and so on.
    app.admin_json(
        Method::POST,
        &format!("/tenants/cp/coupons/{}/void", codes[2]),
        &json!({"reason": "leaked"}),
    )
    .await
    .expect(StatusCode::OK);
    app.admin_json(
        Method::PATCH,
        "/tenants/cp/coupon-campaigns/personal",
        &json!({"status": "inactive"}),
    )
    .await
    .expect(StatusCode::OK);
    let voided = redeem(&app, &secret, "ann", &codes[2]).await;
    assert!(voided.text.contains("voided"), "{}", voided.text);
    let inactive = redeem(&app, &secret, "eve", "spring-sale").await;
    inactive.expect(StatusCode::OK);
    app.admin_json(
        Method::PATCH,
        "/tenants/cp/coupon-campaigns/shared",
        &json!({"status": "inactive"}),
    )
    .await
    .expect(StatusCode::OK);
    let inactive = redeem(&app, &secret, "eve", "spring-sale").await;
    assert!(inactive.text.contains("inactive"), "{}", inactive.text);
    app.admin_json(
        Method::PATCH,
        "/tenants/cp/coupon-campaigns/shared",
        &json!({"status": "active"}),
    )
    .await
    .expect(StatusCode::OK);
    // A shared code: the same player up to per_player_limit (2), everyone up to max_redemptions (3).
    redeem(&app, &secret, "eve", "SPRINGSALE")
        .await
        .expect(StatusCode::OK);
    let again = redeem(&app, &secret, "eve", "SPRINGSALE").await;
    assert!(again.text.contains("already been used"), "{}", again.text);
    redeem(&app, &secret, "fay", "SPRINGSALE")
        .await
        .expect(StatusCode::OK);
    let full = redeem(&app, &secret, "gus", "SPRINGSALE").await;
    full.expect_error(StatusCode::CONFLICT, "CONFLICT");
    assert!(full.text.contains("redemption limit"), "{}", full.text);

    // Not started and expired.
    let start = Timestamp::now() + SignedDuration::from_hours(1);
    create(
        json!({"campaign_id": "later", "name": "L", "rewards": gems, "code": "LATER",
                  "starts_at": start.to_string()}),
    )
    .await
    .expect(StatusCode::CREATED);
    let later = redeem(&app, &secret, "ann", "later").await;
    assert!(later.text.contains("not started"), "{}", later.text);
    let soon = Timestamp::now() + SignedDuration::from_millis(800);
    create(
        json!({"campaign_id": "soon", "name": "S", "rewards": gems, "code": "SOON",
                  "expires_at": soon.to_string()}),
    )
    .await
    .expect(StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let expired = redeem(&app, &secret, "ann", "soon").await;
    assert!(expired.text.contains("expired"), "{}", expired.text);

    // The admin view of a code, and the codes list with paging.
    let coupon = app
        .admin_get(&format!("/tenants/cp/coupons/{}", codes[0].to_lowercase()))
        .await;
    coupon.expect(StatusCode::OK);
    assert_eq!(coupon.body["kind"], "personal");
    assert_eq!(coupon.body["issued_to"], "ann");
    assert_eq!(coupon.body["redemptions"].as_array().unwrap().len(), 1);
    let page = app
        .admin_get("/tenants/cp/coupon-campaigns/personal/codes?limit=3")
        .await;
    assert_eq!(page.body["total"], 4);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = app
        .admin_get(&format!(
            "/tenants/cp/coupon-campaigns/personal/codes?limit=3&cursor={cursor}"
        ))
        .await;
    assert_eq!(next.body["codes"].as_array().unwrap().len(), 1);
    assert!(next.body["next_cursor"].is_null());
}

#[tokio::test]
async fn deleting_a_leaderboard_makes_its_rules_inactive_before_it_answers() {
    let app = spawn_app().await;
    app.create_tenant("rd").await;
    short_board(&app, "rd", "sprint", SignedDuration::from_hours(1)).await;
    app.admin_json(
        Method::POST,
        "/tenants/rd/reward-rules",
        &json!({"rule_id": "r", "leaderboard_id": "sprint", "name": "R",
                "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    app.admin_json(
        Method::DELETE,
        "/tenants/rd/leaderboards/sprint",
        &json!({}),
    )
    .await
    .expect(StatusCode::OK);
    let rule = app.admin_get("/tenants/rd/reward-rules/r").await;
    rule.expect(StatusCode::OK);
    assert_eq!(rule.body["status"], "inactive", "{}", rule.body);
    assert_eq!(rule.body["version"], 2);
    // A PATCH right after works on the rule as the deletion left it.
    let patched = app
        .admin_json(
            Method::PATCH,
            "/tenants/rd/reward-rules/r",
            &json!({"name": "Renamed"}),
        )
        .await;
    patched.expect(StatusCode::OK);
    assert_eq!(patched.body["status"], "inactive");
    assert_eq!(patched.body["version"], 3);
}

#[tokio::test]
async fn an_ended_window_nobody_scored_in_settles_with_no_grants_and_an_upcoming_one_is_409() {
    let app = spawn_app().await;
    app.create_tenant("re").await;
    // A daily board: yesterday's window ended (nobody played), tomorrow's has not begun.
    app.admin_json(
        Method::POST,
        "/tenants/re/leaderboards",
        &json!({"leaderboard_id": "daily", "name": "Daily", "config": {
            "timeframe": {"type": "daily", "timezone": "UTC"},
            "scoring": {"rules": [{"event_type": "match", "points_expression": "1"}]}}}),
    )
    .await
    .expect(StatusCode::CREATED);
    app.admin_json(
        Method::POST,
        "/tenants/re/reward-rules",
        &json!({"rule_id": "r", "leaderboard_id": "daily", "name": "R",
                "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    let today = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let tomorrow = today.tomorrow().unwrap().to_string();
    let settle = |window: String| {
        let app = &app;
        async move {
            app.admin_json(
                Method::POST,
                "/tenants/re/reward-rules/r/settle",
                &json!({"window_id": window}),
            )
            .await
        }
    };
    settle(tomorrow)
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    settle(today.to_string())
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    // Before the leaderboard existed there was no window.
    settle("2020-01-01".into()).await.expect_validation();

    // A custom window that ended with nobody in it settles with no grants.
    short_board(&app, "re", "empty", SignedDuration::from_millis(300)).await;
    app.admin_json(
        Method::POST,
        "/tenants/re/reward-rules",
        &json!({"rule_id": "e", "leaderboard_id": "empty", "name": "E", "status": "inactive",
                "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let empty = app
        .admin_json(
            Method::POST,
            "/tenants/re/reward-rules/e/settle",
            &json!({"window_id": "custom"}),
        )
        .await;
    empty.expect(StatusCode::CREATED);
    assert_eq!(empty.body["ranked_entries"], 0);
    assert_eq!(empty.body["grants"], 0);
}

#[tokio::test]
async fn the_settler_settles_a_window_nobody_scored_in_with_no_grants() {
    let app = spawn_app().await;
    app.create_tenant("rq").await;
    short_board(&app, "rq", "quiet", SignedDuration::from_millis(800)).await;
    app.admin_json(
        Method::POST,
        "/tenants/rq/reward-rules",
        &json!({"rule_id": "q", "leaderboard_id": "quiet", "name": "Q",
                "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    eventually("the quiet window is settled", || async {
        settlements(&app, "rq", "q").await["total"] == 1
    })
    .await;
    let listed = settlements(&app, "rq", "q").await;
    assert_eq!(listed["settlements"][0]["ranked_entries"], 0);
    assert_eq!(listed["settlements"][0]["grants"], 0);
}

#[tokio::test]
async fn a_window_that_ended_while_its_board_was_active_is_settled_after_a_later_deactivation() {
    let app = spawn_app().await;
    let secret = app.create_tenant("rz").await;
    let patch = |board: &'static str, status: &'static str| {
        let app = &app;
        async move {
            app.admin_json(
                Method::PATCH,
                &format!("/tenants/rz/leaderboards/{board}"),
                &json!({"status": status}),
            )
            .await
            .expect(StatusCode::OK);
        }
    };
    for (board, ends_in) in [("early", 700), ("paused", 700), ("late", 60_000)] {
        short_board(&app, "rz", board, SignedDuration::from_millis(ends_in)).await;
        app.admin_json(
            Method::POST,
            "/tenants/rz/reward-rules",
            &json!({"rule_id": board, "leaderboard_id": board, "name": board,
                    "settle_delay_seconds": 2,
                    "tiers": [{"rank_from": 1, "rank_to": 1, "rewards": [{"type": "badge", "badge": "a"}]}]}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    post_events(&app, &secret, "rz", &[("ann", 5.0)]).await;
    // `paused` is inactive when its window ends (and active again after): not settled by itself.
    patch("paused", "inactive").await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    patch("paused", "active").await;
    // `early` ended while active; it is deactivated and activated again before its delay has passed,
    // `late` deactivated for good before its window ends.
    patch("early", "inactive").await;
    patch("early", "active").await;
    patch("early", "inactive").await;
    patch("late", "inactive").await;
    eventually("the early window is settled after its delay", || async {
        settlements(&app, "rz", "early").await["total"] == 1
    })
    .await;
    assert_eq!(
        settlements(&app, "rz", "early").await["settlements"][0]["grants"],
        1
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(settlements(&app, "rz", "late").await["total"], 0);
    assert_eq!(settlements(&app, "rz", "paused").await["total"], 0);
}
