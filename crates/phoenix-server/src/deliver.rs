//! Webhook delivery (SPEC §7.6): the only way a message leaves the outbox. A loop asks the store for
//! due messages about four times a second, sends each as a task of its own, and records every attempt.
//!
//! - Signed with the Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`: both secrets' signatures during a rotation's grace period, newest first).
//! - A 2xx answer within the timeout (10 s) is delivered; anything else (redirects are not followed)
//!   is tried again after the retry schedule's next wait, then the message fails. A 410 answer
//!   disables the webhook (its messages stay pending until it is active again).
//! - The private-address guard runs at every attempt: the URL again, and every address its host
//!   resolves to (so DNS cannot point a webhook inside), unless `PHOENIX_WEBHOOK_ALLOW_PRIVATE`.
//! - One slow receiver never delays another: each webhook has its own worker with at most
//!   [`PER_WEBHOOK`] attempts in flight, each bounded by the timeout; at most [`WORKERS`] webhooks
//!   are served at once.

use crate::state::AppState;
use jiff::Timestamp;
use phoenix_core::webhook::{check_url, is_private, signature_header};
use phoenix_store::achievements::{AttemptOutcome, DueDelivery};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Attempts in flight per webhook.
pub const PER_WEBHOOK: usize = 4;
/// Webhooks being sent to at once (so at most `WORKERS * PER_WEBHOOK` attempts are in flight).
pub const WORKERS: usize = 32;
/// Messages a worker takes from the outbox at a time.
const BATCH: usize = 64;
/// How often the outbox is asked for due messages.
const POLL: Duration = Duration::from_millis(250);
/// The most of an error text kept in the deliveries log.
const MAX_ERROR_CHARS: usize = 300;

/// Resolves a receiver's host, refusing it when any address it resolves to is private.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Which address is not said: the deliveries log must not map a tenant's way into the
            // internal network.
            if !allow_private && addrs.iter().any(|a| is_private(a.ip())) {
                return Err(format!(
                    "{host} resolves to a loopback, private or link-local address"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client deliveries use.
fn client(state: &AppState) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        // A proxy from the environment would resolve the receiver's name itself, past the guard.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(state.config.webhook_timeout)
        .connect_timeout(state.config.webhook_timeout)
        .pool_max_idle_per_host(PER_WEBHOOK)
        .user_agent(concat!("Phoenix-Webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: state.config.webhook_allow_private,
        }))
        .build()
}

/// Runs until `shutdown`. About four times a second it looks for webhooks with due messages and
/// starts a worker for each that has none (at most [`WORKERS`] at once); a worker sends its webhook's
/// due messages, [`PER_WEBHOOK`] at a time, batch after batch, until none is due. A message being sent
/// when the process stops stays pending and is sent again (with the same `webhook-id`) after the
/// restart.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let client = match client(&state) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries cannot start: no HTTP client");
            return;
        }
    };
    let workers: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    // Set when a webhook with due messages found every worker taken: workers then give their slot
    // up after their current batch, so webhooks take turns.
    let contended = Arc::new(AtomicBool::new(false));
    let mut failing = false;
    let mut turn = 0usize;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let mut due = match state.store.due_deliveries(Timestamp::now(), 1, None).await {
            Ok(due) => {
                failing = false;
                due
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "webhook outbox unreadable; retrying");
                }
                failing = true;
                continue;
            }
        };
        // Start each round at another webhook, so none is always last.
        if !due.is_empty() {
            turn = turn.wrapping_add(1);
            let at = turn % due.len();
            due.rotate_left(at);
        }
        let mut waiting = false;
        for d in due {
            let key = (d.tenant_id, d.webhook_id);
            {
                let mut running = workers.lock().unwrap_or_else(|p| p.into_inner());
                if running.contains(&key) {
                    continue;
                }
                if running.len() >= WORKERS {
                    waiting = true;
                    continue;
                }
                running.insert(key.clone());
            }
            let (state, client, workers, shutdown, contended) = (
                state.clone(),
                client.clone(),
                workers.clone(),
                shutdown.clone(),
                contended.clone(),
            );
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = work(&state, &client, key.clone(), &contended) => {}
                }
                workers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            });
        }
        contended.store(waiting, Ordering::Release);
    }
}

/// Sends one webhook's due messages, batch after batch, until none is due, another webhook waits for
/// a worker, the receiver answers 410 (the webhook is disabled), or recording an attempt fails.
async fn work(
    state: &AppState,
    client: &reqwest::Client,
    key: (String, String),
    contended: &AtomicBool,
) {
    loop {
        let batch = match state
            .store
            .due_deliveries(Timestamp::now(), BATCH, Some(key.clone()))
            .await
        {
            Ok(batch) if !batch.is_empty() => batch,
            _ => return,
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(PER_WEBHOOK));
        let stop = Arc::new(AtomicBool::new(false));
        let mut sending = tokio::task::JoinSet::new();
        for d in batch {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            if stop.load(Ordering::Acquire) {
                break;
            }
            let (state, client, stop) = (state.clone(), client.clone(), stop.clone());
            sending.spawn(async move {
                let _permit = permit;
                let (recorded, gone) = attempt(&state, &client, d).await;
                if !recorded || gone {
                    stop.store(true, Ordering::Release);
                }
            });
        }
        while sending.join_next().await.is_some() {}
        if stop.load(Ordering::Acquire) || contended.load(Ordering::Acquire) {
            return;
        }
    }
}

fn clip(text: String) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        text
    } else {
        text.chars().take(MAX_ERROR_CHARS).collect::<String>() + "…"
    }
}

/// The text of a transport error, with its causes (reqwest's own is only the outermost).
fn error_text(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    clip(text)
}

/// Sends one message once and records how it went: whether it was recorded, and whether the
/// receiver answered 410 (the webhook is now disabled).
async fn attempt(state: &AppState, client: &reqwest::Client, d: DueDelivery) -> (bool, bool) {
    let attempted_at = Timestamp::now();
    let started = Instant::now();
    let outcome = send(state, client, &d, attempted_at).await;
    let (status_code, error) = match outcome {
        Ok(code) => (Some(code), None),
        Err(e) => (None, Some(e)),
    };
    let delivered = status_code.is_some_and(|c| (200..300).contains(&c));
    let gone = status_code == Some(410);
    let outcome = AttemptOutcome {
        attempted_at,
        status_code,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
        delivered,
        gone,
    };
    let next = if delivered {
        None
    } else {
        state
            .config
            .webhook_retry_schedule
            .get(d.attempt.saturating_sub(1) as usize)
            .and_then(|wait| jiff::SignedDuration::try_from(*wait).ok())
            .and_then(|wait| Timestamp::now().checked_add(wait).ok())
    };
    let result = if delivered { "delivered" } else { "failed" };
    metrics::counter!("phoenix_webhook_attempts_total", "result" => result).increment(1);
    match state.store.record_delivery(d, outcome, next).await {
        Ok(_) => (true, gone),
        Err(e) => {
            tracing::error!(error = %e, "a webhook attempt could not be recorded; it will be sent again");
            (false, gone)
        }
    }
}

/// One POST; the status code, or why there was none.
async fn send(
    state: &AppState,
    client: &reqwest::Client,
    d: &DueDelivery,
    at: Timestamp,
) -> Result<u16, String> {
    // The URL is checked again (literal addresses; names are checked as they resolve), also as the
    // HTTP client itself reads it: an address it parses from the host is connected to unresolved.
    let allow_private = state.config.webhook_allow_private;
    check_url(&d.url, allow_private).map_err(|e| format!("url refused: {e}"))?;
    let url = reqwest::Url::parse(&d.url).map_err(|e| format!("url refused: {e}"))?;
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if !allow_private && literal.is_some_and(is_private) {
        return Err("url refused: a loopback, private or link-local address".into());
    }
    if d.keys.is_empty() {
        return Err("the webhook's secret cannot be read (was the master key changed?)".into());
    }
    let timestamp = at.as_second();
    let keys: Vec<&[u8]> = d.keys.iter().map(Vec::as_slice).collect();
    let signature = signature_header(&keys, &d.message_id, timestamp, d.payload.as_bytes());
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    Ok(response.status().as_u16())
}
