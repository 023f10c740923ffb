//! `phoenix demo`: the server on a fresh embedded store, seeded through its own API with a demo tenant,
//! four leaderboards (a daily one in New York time, a weekly and an all-time one, and a 90-second
//! sprint whose reward rule pays out when it ends), a coupon campaign with a shared code, an ADMIN and
//! a VIEWER console login, and simulated players posting matches at a steady rate. It prints the
//! console address, the logins, a player JWT, a code to redeem and commands to paste, then runs until
//! Ctrl-C.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated events per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub rate: u32,
    /// Simulated players.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub players: u32,
    /// How long the sprint leaderboard lasts; its reward rule pays out when it ends.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(10..=86_400))]
    pub sprint_seconds: u32,
    /// Keep the demo's data in this directory (default: a fresh temporary one, removed at exit).
    #[arg(long)]
    pub demo_dir: Option<PathBuf>,
}

pub const TENANT: &str = "demo-studio";
/// The shared code of the demo's coupon campaign.
pub const COUPON_CODE: &str = "WELCOME-DEMO";

/// Where the demo runs and how to get in.
pub struct DemoAccess {
    pub base: String,
    pub admin_secret: String,
    pub admin_password: String,
    pub viewer_password: String,
    pub tenant_secret: String,
    pub sprint_seconds: u32,
}

/// A tiny xorshift generator: the simulation needs variety, not cryptographic randomness.
struct Dice(u64);

impl Dice {
    fn seeded() -> Dice {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Dice(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A random password of 20 URL-safe characters.
pub fn random_password() -> String {
    phoenix_store::seal::random_hex::<10>()
}

fn leaderboards() -> [Value; 3] {
    let rule =
        |points: &str| json!([{"event_type": "match.completed", "points_expression": points}]);
    [
        json!({
            "leaderboard_id": "daily-arena",
            "name": "Daily Arena",
            "description": "Points from today's matches (New York time); resets at midnight",
            "config": {
                "timeframe": {"type": "daily", "timezone": "America/New_York", "reset_time": "00:00"},
                "scoring": {"rules": rule("attrs.score"), "aggregation": "sum"},
                "ranking": {"method": "score_desc", "size": 100}
            }
        }),
        json!({
            "leaderboard_id": "weekly-kills",
            "name": "Weekly Kills",
            "description": "Kills this week (UTC), resets on Monday",
            "config": {
                "timeframe": {"type": "weekly", "timezone": "UTC", "reset_day": "monday"},
                "scoring": {"rules": rule("attrs.kills"), "aggregation": "sum"},
                "ranking": {"method": "score_desc", "size": 100}
            }
        }),
        json!({
            "leaderboard_id": "all-time-best",
            "name": "All-time Best Match",
            "description": "Each player's best single match, ever",
            "config": {
                "timeframe": {"type": "all_time"},
                "scoring": {"rules": rule("attrs.score"), "aggregation": "max"},
                "ranking": {"method": "score_desc", "size": 1000}
            }
        }),
    ]
}

async fn call(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let reply = request
        .send()
        .await
        .with_context(|| format!("demo: {what}"))?;
    let status = reply.status();
    let text = reply.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("demo: {what}: HTTP {}: {text}", status.as_u16());
    }
    serde_json::from_str(&text).with_context(|| format!("demo: {what}: answer is not JSON"))
}

/// Creates the demo tenant, its leaderboards and the two console users through the API.
pub async fn seed(
    base: &str,
    admin_secret: &str,
    sprint_seconds: u32,
) -> anyhow::Result<DemoAccess> {
    let client = reqwest::Client::new();
    let tenant = call(
        client
            .post(format!("{base}/tenants"))
            .bearer_auth(admin_secret)
            .json(&json!({"tenant_id": TENANT, "name": "Demo Studio"})),
        "creating the demo tenant",
    )
    .await?;
    let tenant_secret = tenant["hmac_secret"]
        .as_str()
        .context("demo: the tenant answer has no hmac_secret")?
        .to_owned();
    let now = jiff::Timestamp::now();
    let sprint = json!({
        "leaderboard_id": "sprint",
        "name": format!("{sprint_seconds}-second Sprint"),
        "description": format!("Points from matches in the demo's first {sprint_seconds} seconds; its top players are paid when it ends"),
        "config": {
            "timeframe": {"type": "custom",
                          "starts_at": now.to_string(),
                          "ends_at": (now + jiff::SignedDuration::from_secs(i64::from(sprint_seconds))).to_string()},
            "scoring": {"rules": [{"event_type": "match.completed", "points_expression": "attrs.score"}],
                        "aggregation": "sum"},
            "ranking": {"method": "score_desc", "size": 100}
        }
    });
    for board in leaderboards().into_iter().chain([sprint]) {
        call(
            client
                .post(format!("{base}/tenants/{TENANT}/leaderboards"))
                .bearer_auth(admin_secret)
                .json(&board),
            "creating a demo leaderboard",
        )
        .await?;
    }
    for (path, body, what) in [
        (
            "coupon-campaigns",
            json!({"campaign_id": "sprint-vip", "name": "Sprint VIP pass",
                   "rewards": [{"type": "item", "item": "vip_pass", "quantity": 1}]}),
            "creating the sprint's coupon campaign",
        ),
        (
            "coupon-campaigns",
            json!({"campaign_id": "welcome", "name": "Welcome gift", "code": COUPON_CODE,
                   "per_player_limit": 1,
                   "rewards": [{"type": "currency", "currency": "gems", "amount": 100},
                               {"type": "badge", "badge": "early-bird"}]}),
            "creating the welcome coupon campaign",
        ),
        (
            "reward-rules",
            json!({"rule_id": "sprint-prizes", "leaderboard_id": "sprint", "name": "Sprint prizes",
                   "tiers": [
                       {"rank_from": 1, "rank_to": 1, "rewards": [
                           {"type": "currency", "currency": "gems", "amount": 1000},
                           {"type": "badge", "badge": "sprint-champion"}]},
                       {"rank_from": 2, "rank_to": 3, "rewards": [
                           {"type": "item", "item": "chest_gold", "quantity": 1}]},
                       {"top_percent": 50, "rewards": [{"type": "coupon", "campaign_id": "sprint-vip"}]}]}),
            "creating the sprint's reward rule",
        ),
        (
            "achievements",
            json!({"achievement_id": "veteran", "name": "Veteran", "description": "Play matches",
                   "metric": {"event_type": "match.completed", "aggregation": "count"},
                   "steps": [{"threshold": 5},
                             {"threshold": 25, "rewards": [{"type": "badge", "badge": "veteran"}]},
                             {"threshold": 100, "rewards": [{"type": "currency", "currency": "gems", "amount": 250}]}]}),
            "creating the veteran achievement",
        ),
        (
            "achievements",
            json!({"achievement_id": "sharpshooter", "name": "Sharpshooter", "description": "Score kills",
                   "metric": {"event_type": "match.completed", "aggregation": "sum",
                              "points_expression": "attrs.kills"},
                   "steps": [{"threshold": 50}, {"threshold": 250,
                             "rewards": [{"type": "item", "item": "scope_gold", "quantity": 1}]}]}),
            "creating the sharpshooter achievement",
        ),
    ] {
        call(
            client
                .post(format!("{base}/tenants/{TENANT}/{path}"))
                .bearer_auth(admin_secret)
                .json(&body),
            what,
        )
        .await?;
    }
    let admin_password = random_password();
    let viewer_password = random_password();
    for (username, password, role) in [
        ("admin", &admin_password, "ADMIN"),
        ("viewer", &viewer_password, "VIEWER"),
    ] {
        call(
            client
                .post(format!("{base}/users"))
                .bearer_auth(admin_secret)
                .json(&json!({"username": username, "password": password, "role": role})),
            "creating a console user",
        )
        .await?;
    }
    Ok(DemoAccess {
        base: base.to_owned(),
        admin_secret: admin_secret.to_owned(),
        admin_password,
        viewer_password,
        tenant_secret,
        sprint_seconds,
    })
}

/// An HS256 tenant JWT for `sub` with `scope`, valid for `hours` (SPEC §3.2: game servers get
/// `events:write`, game clients `leaderboards:read rewards:redeem`).
pub fn tenant_jwt(secret: &str, sub: &str, scope: &str, hours: i64) -> anyhow::Result<String> {
    let now = jiff::Timestamp::now().as_second();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "sub_type": "tenant", "sub_id": TENANT, "iat": now,
                "exp": now + hours * 3600, "scope": scope}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("demo: cannot sign a tenant JWT")
}

/// Players post matches at `rate` events per second (in small batches every 250 ms) until `stop`.
pub async fn simulate(
    access: &DemoAccess,
    rate: u32,
    players: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/events/batch", access.base);
    let mut token = tenant_jwt(&access.tenant_secret, "demo-simulator", "events:write", 24)?;
    let mut token_made = tokio::time::Instant::now();
    let mut dice = Dice::seeded();
    // Each player has a skill, so the standings have a shape rather than noise.
    let skill: Vec<u64> = (0..players).map(|_| 20 + dice.below(80)).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut carry = 0.0f64;
    let mut serial: u64 = 0;
    let run = jiff::Timestamp::now().as_second();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        if token_made.elapsed() > Duration::from_secs(12 * 3600) {
            token = tenant_jwt(&access.tenant_secret, "demo-simulator", "events:write", 24)?;
            token_made = tokio::time::Instant::now();
        }
        carry += f64::from(rate) / 4.0;
        let count = carry.floor() as u64;
        carry -= count as f64;
        if count == 0 {
            continue;
        }
        let now = jiff::Timestamp::now().to_string();
        let events: Vec<Value> = (0..count)
            .map(|_| {
                serial += 1;
                let p = dice.below(u64::from(players)) as usize;
                let score = skill[p] / 2 + dice.below(skill[p]);
                json!({
                    "event_id": format!("demo-{run}-{serial}"),
                    "type": "match.completed",
                    "actor": {"user_id": format!("player-{:03}", p + 1)},
                    "occurred_at": now,
                    "attrs": {"score": score, "kills": dice.below(skill[p] / 10 + 2)}
                })
            })
            .collect();
        let sent = client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({ "events": events }))
            .send()
            .await;
        match sent {
            Ok(reply) if reply.status().as_u16() == 202 => {}
            Ok(reply) => tracing::warn!(status = reply.status().as_u16(), "demo events refused"),
            Err(e) => tracing::warn!(error = %e, "demo events not sent"),
        }
    }
}

/// What the demo prints once it is ready.
pub fn banner(access: &DemoAccess, addr: SocketAddr) -> anyhow::Result<String> {
    let base = &access.base;
    let player = tenant_jwt(
        &access.tenant_secret,
        "player-001",
        "leaderboards:read rewards:redeem",
        24,
    )?;
    let server = tenant_jwt(&access.tenant_secret, "game-server", "events:write", 24)?;
    let ws = base.replacen("http://", "ws://", 1);
    Ok(format!(
        r#"
Phoenix demo is running on {addr} (embedded store). Ctrl-C stops it.

  Web console     {base}/console
    ADMIN login   admin / {admin_password}
    VIEWER login  viewer / {viewer_password}
  Admin secret    {admin_secret}
  Tenant          {TENANT}  (HMAC secret: {tenant_secret})
  Leaderboards    daily-arena (daily, America/New_York), weekly-kills (weekly, UTC), all-time-best (all time, max),
                  sprint (the first {sprint} seconds: reward rule "sprint-prizes" pays its top players when it ends)
  Coupon code     {coupon}  (campaign "welcome": 100 gems and a badge, once per player)
  Achievements    veteran (5, 25, 100 matches), sharpshooter (50, 250 kills): the simulated players complete them
  Player JWT      {player}
                  (player-001, scope "leaderboards:read rewards:redeem": reads, never writes scores; valid 24 h)
  Server JWT      {server}
                  (a game server's, scope "events:write": posts events for any player; valid 24 h)

Paste these into another shell:

  export PHOENIX={base} PLAYER_TOKEN={player} SERVER_TOKEN={server}

  # the top of today's arena, as a game client reads it
  curl -s "$PHOENIX/v1/leaderboards/daily-arena?limit=10" -H "Authorization: Bearer $PLAYER_TOKEN"

  # the game server posts a match for player-001; the player sees where it ranks
  curl -s -X POST "$PHOENIX/v1/events" -H "Authorization: Bearer $SERVER_TOKEN" -H 'Content-Type: application/json' \
    -d '{{"event_id":"my-first-match","type":"match.completed","actor":{{"user_id":"player-001"}},"occurred_at":"'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"'","attrs":{{"score":500,"kills":9}}}}'
  curl -s "$PHOENIX/v1/leaderboards/daily-arena/me" -H "Authorization: Bearer $PLAYER_TOKEN"

  # redeem the coupon as player-001, then see (and claim) what the player has earned; once the sprint
  # has ended, its prizes are there too (the console's Rewards page shows the settlement)
  curl -s -X POST "$PHOENIX/v1/coupons/{coupon}/redeem" -H "Authorization: Bearer $PLAYER_TOKEN"
  curl -s "$PHOENIX/v1/rewards" -H "Authorization: Bearer $PLAYER_TOKEN"

  # player-001's achievements: progress, completed steps, the next threshold
  curl -s "$PHOENIX/v1/achievements" -H "Authorization: Bearer $PLAYER_TOKEN"

  # watch ranks move live (any WebSocket client, e.g. websocat)
  websocat "{ws}/v1/leaderboards/daily-arena/ws?access_token=$PLAYER_TOKEN"

phoenix demo ready: {base}/console
"#,
        admin_password = access.admin_password,
        viewer_password = access.viewer_password,
        admin_secret = access.admin_secret,
        tenant_secret = access.tenant_secret,
        coupon = COUPON_CODE,
        sprint = access.sprint_seconds,
    ))
}
