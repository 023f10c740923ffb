//! What the load generators share to talk to a server: its URL, a fresh tenant and its JWTs, event
//! bodies, timed requests and counts of what came back.

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Longest a single request may take before it counts as an error.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Latencies are recorded in microseconds up to this (the request timeout fits).
pub(super) const LATENCY_MAX_MICROS: u64 = 60_000_000;

/// Where and as whom the workers post.
pub(super) struct Target {
    pub(super) base: String,
    pub(super) tenant: String,
    pub(super) secret: String,
}

/// Sends `request`, counts it, and records its latency when it answers `expect`; any other outcome is
/// counted as a failure (with the first error kept) and gives `None`.
pub(super) async fn timed_exchange(
    tally: &mut Tally,
    request: reqwest::RequestBuilder,
    expect: reqwest::StatusCode,
) -> Option<impl AsRef<[u8]> + use<>> {
    let started = Instant::now();
    let sent = request.send().await;
    tally.requests += 1;
    let failed = |tally: &mut Tally, message: String| {
        tally.failed_requests += 1;
        tally.fail(|| message);
    };
    let reply = match sent {
        Ok(reply) => reply,
        Err(e) => {
            failed(tally, error_chain(&e));
            return None;
        }
    };
    let status = reply.status();
    let answer = match reply.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => {
            failed(tally, error_chain(&e));
            return None;
        }
    };
    let micros = started.elapsed().as_micros() as u64;
    if status != expect {
        let text = format!(
            "HTTP {}: {}",
            status.as_u16(),
            one_line(&String::from_utf8_lossy(&answer))
        );
        failed(tally, text);
        return None;
    }
    tally.latency.saturating_record(micros.max(1));
    Some(answer)
}

/// Checks `--url` and strips a trailing slash.
pub(super) fn base_url(raw: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("--url: '{raw}' is not a URL ({e})"))?;
    match url.scheme() {
        "http" => Ok(url.as_str().trim_end_matches('/').to_owned()),
        "https" => bail!("--url: https is not built into the load generator; use http://"),
        other => bail!("--url: '{other}' is not http"),
    }
}

/// The base URLs of `--url`: one server, or a cluster's nodes separated by commas (the load is
/// spread over them; setup goes to the first).
pub(super) fn base_urls(raw: &str) -> anyhow::Result<Vec<String>> {
    let urls = raw
        .split(',')
        .filter(|u| !u.trim().is_empty())
        .map(base_url)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if urls.is_empty() {
        bail!("--url: give at least one http:// URL");
    }
    Ok(urls)
}

/// A short id that keeps this run's tenant and event ids apart from earlier runs'.
pub(super) fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    format!("{:x}", nanos ^ (u64::from(std::process::id()) << 40))
}

/// Creates tenant `bench-<run>` and its all-time `sum` leaderboard `bench` (ranking `size`
/// `ranking_size`, or the default); returns where to post as it.
pub(super) async fn create_bench_tenant(
    client: &reqwest::Client,
    base: &str,
    admin_secret: &str,
    run_id: &str,
    ranking_size: Option<u32>,
) -> anyhow::Result<Target> {
    let tenant = format!("bench-{run_id}");
    let created = admin_post(
        client,
        &format!("{base}/tenants"),
        admin_secret,
        &json!({"tenant_id": tenant, "name": "Ingestion benchmark"}),
        "creating the bench tenant",
    )
    .await?;
    let secret = created["hmac_secret"]
        .as_str()
        .context("bench ingest: the tenant creation answer has no hmac_secret")?
        .to_owned();
    let mut config = json!({
        "timeframe": {"type": "all_time"},
        "scoring": {
            "rules": [{"event_type": "match.*", "points_expression": "attrs.score"}],
            "aggregation": "sum"
        }
    });
    if let Some(size) = ranking_size {
        config["ranking"] = json!({"method": "score_desc", "size": size});
    }
    admin_post(
        client,
        &format!("{base}/tenants/{tenant}/leaderboards"),
        admin_secret,
        &json!({
            "leaderboard_id": "bench",
            "name": "Benchmark score",
            "config": config,
        }),
        "creating the bench leaderboard",
    )
    .await?;
    Ok(Target {
        base: base.to_owned(),
        tenant,
        secret,
    })
}

/// POSTs an Admin request that must answer 201; returns its JSON body.
pub(super) async fn admin_post(
    client: &reqwest::Client,
    url: &str,
    admin_secret: &str,
    body: &Value,
    what: &str,
) -> anyhow::Result<Value> {
    let reply = client
        .post(url)
        .bearer_auth(admin_secret)
        .json(body)
        .send()
        .await
        .with_context(|| format!("bench ingest: {what}: cannot reach {url}"))?;
    let status = reply.status();
    let text = reply
        .text()
        .await
        .with_context(|| format!("bench ingest: {what}: reading the answer"))?;
    if status != reqwest::StatusCode::CREATED {
        bail!(
            "bench ingest: {what}: HTTP {}: {}",
            status.as_u16(),
            one_line(&text)
        );
    }
    serde_json::from_str(&text)
        .with_context(|| format!("bench ingest: {what}: the answer is not JSON"))
}

/// An HS256 tenant JWT for caller `sub`, valid for an hour (the longest run plus warm-up fits).
pub(super) fn tenant_jwt(tenant: &str, secret: &str, sub: &str) -> anyhow::Result<String> {
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({
        "sub": sub,
        "sub_type": "tenant",
        "sub_id": tenant,
        "iat": now,
        "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("bench ingest: cannot sign the tenant JWT")
}

/// What one worker (or all of them, merged) saw.
pub(super) struct Tally {
    pub(super) requests: u64,
    pub(super) failed_requests: u64,
    pub(super) accepted: u64,
    pub(super) duplicates: u64,
    pub(super) rejected: u64,
    pub(super) first_error: Option<String>,
    /// Latency of answered (202) requests, in microseconds.
    pub(super) latency: Histogram<u64>,
}

impl Tally {
    pub(super) fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            requests: 0,
            failed_requests: 0,
            accepted: 0,
            duplicates: 0,
            rejected: 0,
            first_error: None,
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
                .context("cannot create the latency histogram")?,
        })
    }

    pub(super) fn errors(&self) -> u64 {
        self.failed_requests + self.rejected
    }

    pub(super) fn fail(&mut self, message: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    pub(super) fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.requests += other.requests;
        self.failed_requests += other.failed_requests;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency
            .add(&other.latency)
            .context("cannot merge latency histograms")
    }
}

/// Appends the event `<id_prefix>-<seq>` giving player `u<user>` `score` points.
pub(super) fn push_event_for(
    body: &mut String,
    id_prefix: &str,
    seq: u64,
    occurred_at: &str,
    user: u64,
    score: u64,
) {
    // Writing to a String cannot fail.
    let _ = write!(
        body,
        r#"{{"event_id":"{id_prefix}-{seq}","type":"match.completed","actor":{{"user_id":"u{user}"}},"occurred_at":"{occurred_at}","attrs":{{"score":{score}}}}}"#
    );
}

/// A tiny, fast generator for picking players and scores (not for anything secret).
pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

pub(super) fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The number right after the first `key` in a JSON answer (`"accepted":1000` → 1000).
pub(super) fn count_after(haystack: &[u8], key: &[u8]) -> Option<u64> {
    let at = haystack.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = haystack[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&haystack[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// An error and its causes on one line (reqwest hides the useful part, e.g. "connection refused", in
/// the source chain).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}

/// At most 300 characters of `text`, on one line.
pub(super) fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    flat.trim().to_owned()
}

/// The resident memory (`VmRSS`) of a process in KiB, from /proc; `None` where there is none.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
