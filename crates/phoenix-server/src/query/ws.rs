//! The live view of one leaderboard over a WebSocket (SPEC §6.1): auth on the upgrade, a snapshot of the
//! top N, then coalesced diffs so the client holds an exact copy, window roll-overs, pages on request, and
//! closes with a reason. One task per socket; the scoring path only bumps the store's watch signal, and
//! each socket catches up when it wakes, so a slow client gets fewer, larger updates. What every socket
//! of a board would compute alike (the top entries, the serialized diff) is computed once (`feed`).

use super::feed::{BoardFeed, EntryRef, TopFrame, same};
use super::{EntryView, WindowView, active, not_found, window_view};
use crate::auth::{self, SocketCredential, TenantVia};
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use jiff::Timestamp;
use phoenix_core::engine::Standing;
use phoenix_core::window::{Window, WindowId, WindowStatus};
use phoenix_store::model::LeaderboardStatus;
use phoenix_store::{BoardSignal, BoardState, PageStart, StandingsPage};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Top N when the client has not subscribed (SPEC §10).
const DEFAULT_TOP: u32 = 10;
/// The largest `top` and `page_size` a client may ask for.
const MAX_TOP: u32 = 100;
/// Re-check the current window this often when its end is unknown or already passed.
const WINDOW_RECHECK: Duration = Duration::from_secs(1);
/// How long a closing frame may wait behind a slow client's backlog before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// The least time between two re-checks of one socket's credential.
const RECHECK_SPACING: Duration = Duration::from_millis(500);
/// The largest client message read.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Who watches: a tenant, the player for `me` (none for admin watchers), and the credential, which the
/// socket keeps checking.
pub struct Watcher {
    tenant: String,
    me: Option<String>,
    credential: SocketCredential,
    /// A player's (or game client's) credential, whose messages count against the tenant's reads and
    /// the player's requests (SPEC §8); `None` for operators.
    limited: Option<Box<auth::TenantAuth>>,
}

/// The query string's parameters, and its `access_token` when one is given.
fn query_of(parts: &Parts) -> (HashMap<String, String>, Option<String>) {
    let params: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|Query(p)| p)
        .unwrap_or_default();
    let token = params
        .get("access_token")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    (params, token)
}

/// The watcher of the Admin gateway's route: the tenant comes from the path.
pub struct TenantWatcher {
    watcher: Watcher,
    leaderboard: String,
}

impl FromRequestParts<AppState> for TenantWatcher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path((tenant, leaderboard)) =
            Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("no such route".into()))?;
        let (_, query_token) = query_of(parts);
        let (_, credential) =
            auth::admin_socket(parts, state, &tenant, query_token.as_deref()).await?;
        Ok(TenantWatcher {
            watcher: Watcher {
                tenant,
                me: None,
                credential,
                limited: None,
            },
            leaderboard,
        })
    }
}

impl FromRequestParts<AppState> for Watcher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (params, query_token) = query_of(parts);
        if let Some(tenant) = params.get("tenant_id") {
            let (_, credential) =
                auth::admin_socket(parts, state, tenant, query_token.as_deref()).await?;
            return Ok(Watcher {
                tenant: tenant.clone(),
                me: None,
                credential,
                limited: None,
            });
        }
        let (auth, credential) = auth::tenant_socket(parts, state, query_token.as_deref()).await?;
        if auth.via == TenantVia::TenantJwt && auth.user_id.is_none() {
            return Err(ApiError::Unauthorized(
                "the token must name the player in 'sub' on Query routes".into(),
            ));
        }
        auth.require(auth::TokenScope::LeaderboardsRead)?;
        state.rate_limiter.check_read(&auth)?;
        let me = auth.user_id.clone().filter(|u| !u.is_empty());
        Ok(Watcher {
            tenant: auth.tenant_id.to_string(),
            me,
            credential,
            limited: Some(Box::new(auth)),
        })
    }
}

/// Live updates of a leaderboard's current window (SPEC §6.1). Authenticate with `Authorization:
/// Bearer <tenant JWT>` or `?access_token=`; admin credentials with `leaderboards:read` watch with
/// `?tenant_id=` (and `me` is always null). Server messages: `snapshot`, `update`, `window_closed`,
/// `page`, `pong`, `error`; client messages: `subscribe`, `request_page`, `ping`.
#[utoipa::path(get, path = "/v1/leaderboards/{id}/ws", tag = "query",
    params(("id" = String, Path),
           ("access_token" = Option<String>, Query, description = "the token, for clients that cannot set headers"),
           ("tenant_id" = Option<String>, Query, description = "the tenant, for admin watchers")),
    responses((status = 101, description = "switched to the WebSocket protocol"),
              (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn watch(
    State(state): State<AppState>,
    watcher: Watcher,
    Path(id): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    open(state, watcher, id, upgrade).await
}

/// The same live view for operators, on the Admin gateway (the console uses it, so it works when the
/// Query gateway has a listener of its own): any admin credential with `leaderboards:read` on the
/// tenant, as headers, `?access_token=`, or the console's session cookie from its own page; `me` is
/// always null. Messages as on `/v1/leaderboards/{id}/ws`.
#[utoipa::path(get, path = "/tenants/{tenant_id}/leaderboards/{leaderboard_id}/ws",
    tag = "leaderboards",
    params(("tenant_id" = String, Path), ("leaderboard_id" = String, Path),
           ("access_token" = Option<String>, Query, description = "the credential, for clients that cannot set headers")),
    responses((status = 101, description = "switched to the WebSocket protocol"),
              (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn watch_tenant(
    State(state): State<AppState>,
    watcher: TenantWatcher,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    open(state, watcher.watcher, watcher.leaderboard, upgrade).await
}

/// Checks the leaderboard and upgrades to a live session.
async fn open(
    state: AppState,
    watcher: Watcher,
    id: String,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    active(&state, &watcher.tenant, &id).await?;
    let signal = state
        .store
        .watch_leaderboard(&watcher.tenant, &id)
        .ok_or_else(|| not_found(&id))?;
    let upgrade = upgrade
        .map_err(|e| ApiError::Validation(format!("this route needs a WebSocket upgrade: {e}")))?;
    let player = watcher
        .limited
        .as_ref()
        .and_then(|auth| Some((auth.tenant_id.as_str(), auth.user_id.as_deref()?)));
    let guard = state.socket_opened(player).ok_or_else(|| {
        metrics::counter!("phoenix_websockets_refused_total").increment(1);
        ApiError::Unavailable("too many open WebSockets; retry later".into())
    })?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        // The library's default 128 KiB read buffer is zeroed before every read and held by every
        // idle socket: a profile with 10k subscribers showed it as 31% of server CPU and ~130 KB per
        // socket. Client messages are small.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| async move {
            let feed = state.feeds.feed(&watcher.tenant, &id, &signal);
            let session = Session {
                socket,
                state,
                tenant: watcher.tenant,
                leaderboard: id,
                me: watcher.me,
                credential: watcher.credential,
                limited: watcher.limited,
                top: DEFAULT_TOP,
                seq: 0,
                board: signal.clone(),
                feed,
                last_sent: Instant::now(),
                sent: None,
                sent_me: None,
                window: None,
                window_epoch: 0,
                deactivations: 0,
            };
            session.run(signal).await;
            drop(guard);
        }))
}

/// What the server sends (SPEC §6.1); `update` is written by `send_update` from the board's shared diff.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage {
    Snapshot {
        seq: u64,
        window: WindowView,
        entries: Vec<EntryView>,
        me: Option<EntryView>,
    },
    WindowClosed {
        seq: u64,
        window: WindowView,
        entries: Vec<EntryView>,
    },
    Page {
        seq: u64,
        page: u32,
        entries: Vec<EntryView>,
    },
    Pong,
    Error {
        error: crate::error::ErrorBody,
    },
}

/// Why a session ends, and the close frame it gets.
enum Ending {
    /// The client closed or the connection broke: nothing more to send.
    Gone,
    Close(u16, &'static str),
    /// A send did not complete in time: the client is too slow (1013).
    TooSlow,
}

impl From<axum::Error> for Ending {
    fn from(_: axum::Error) -> Self {
        Ending::Gone
    }
}

impl From<ApiError> for Ending {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound(_) => Ending::Close(4404, "leaderboard is no longer active"),
            ApiError::Unavailable(_) => Ending::Close(1011, "the store is unavailable"),
            _ => Ending::Close(1011, "internal error"),
        }
    }
}

/// One socket's state: what the client was last sent, so updates are exact diffs.
struct Session {
    socket: WebSocket,
    state: AppState,
    tenant: String,
    leaderboard: String,
    me: Option<String>,
    /// Checked again whenever a credential anywhere is revoked; the socket closes (4401) when it no
    /// longer holds or when it expires.
    credential: SocketCredential,
    limited: Option<Box<auth::TenantAuth>>,
    top: u32,
    seq: u64,
    /// The board's signal, to read its version without waiting on it.
    board: watch::Receiver<BoardSignal>,
    /// What this board's sockets share.
    feed: Arc<BoardFeed>,
    /// When the last message of any kind went out, for the idle ping.
    last_sent: Instant,
    /// The frame the client's copy of the top N was taken from.
    sent: Option<Arc<TopFrame>>,
    sent_me: Option<Standing>,
    /// The window the client's copy belongs to.
    window: Option<(Window, WindowStatus)>,
    /// Bumped whenever `window` changes, to re-arm the window's deadline only then.
    window_epoch: u64,
    /// The board signal's deactivation count when the socket opened.
    deactivations: u64,
}

/// When `at` comes, as a timer deadline (far away for `None`).
fn until(at: Option<Timestamp>) -> Instant {
    let far = Duration::from_secs(86_400 * 365);
    let left = at.map_or(far, |at| {
        let secs = at.duration_since(Timestamp::now()).as_secs_f64();
        Duration::try_from_secs_f64(secs.max(0.0))
            .unwrap_or(far)
            .min(far)
    });
    Instant::now() + left
}

/// Waits for the board's next change; owns the receiver so the wait survives across `select!` rounds.
async fn next_change(
    mut signal: watch::Receiver<BoardSignal>,
) -> (Option<BoardSignal>, watch::Receiver<BoardSignal>) {
    let changed = signal
        .changed()
        .await
        .ok()
        .map(|_| *signal.borrow_and_update());
    (changed, signal)
}

impl Session {
    async fn run(mut self, signal: watch::Receiver<BoardSignal>) {
        let ending = self.serve(signal).await.err().unwrap_or(Ending::Gone);
        let frame = match ending {
            Ending::Gone => return,
            Ending::TooSlow => {
                tracing::info!(leaderboard = %self.leaderboard, "closing a WebSocket client that cannot keep up");
                metrics::counter!("phoenix_ws_slow_closed_total").increment(1);
                (1013, "client cannot keep up with updates")
            }
            Ending::Close(code, reason) => (code, reason),
        };
        let close = Message::Close(Some(CloseFrame {
            code: frame.0,
            reason: frame.1.into(),
        }));
        let _ = tokio::time::timeout(CLOSE_GRACE, self.socket.send(close)).await;
    }

    async fn serve(&mut self, mut signal: watch::Receiver<BoardSignal>) -> Result<(), Ending> {
        let shutdown = self.state.shutdown_signal().cancelled_owned();
        tokio::pin!(shutdown);
        let coalesce = self.state.config.ws_coalesce;
        let opened = *signal.borrow_and_update();
        self.deactivations = opened.deactivations;
        check_live(&opened, self.deactivations)?;
        self.send_snapshot().await?;
        // The waits below live across rounds of the loop: re-creating them every round would re-register
        // every socket of the board with the same notifier each time one of them wakes.
        let mut changes = Box::pin(next_change(signal));
        let mut last_update = Instant::now();
        // Armed while an update waits out the coalescing interval. Meanwhile the socket does not wake
        // for further changes (the update reads the latest state anyway): at 1000 changes/s and
        // thousands of sockets, those wake-ups alone would saturate the server.
        let mut update_pending = false;
        let coalescing = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(coalescing);
        // Every read has a time limit: a client that sends nothing, not even the pong a ping asks
        // for, is gone (or was never reading); idle sockets are pinged at a third of the limit.
        let peer_timeout = self.state.config.ws_peer_timeout;
        let ping_every = peer_timeout / 3;
        let mut last_heard = Instant::now();
        let idle = tokio::time::sleep(ping_every);
        tokio::pin!(idle);
        let window_check = tokio::time::sleep(self.window_deadline());
        tokio::pin!(window_check);
        let mut revocations = self.state.watch_credentials();
        let expiry = tokio::time::sleep_until(until(self.credential.expires_at));
        tokio::pin!(expiry);
        // Rechecks are spaced: a burst of credential changes (sign-ins evict old sessions) costs each
        // socket at most one check per RECHECK_SPACING, and a revocation still closes it within 2 s.
        let mut last_recheck = Instant::now();
        let mut recheck_pending = false;
        let recheck_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(recheck_timer);
        loop {
            let epoch_before = self.window_epoch;
            tokio::select! {
                _ = &mut shutdown => return Err(Ending::Close(1001, "server is shutting down")),
                _ = &mut expiry, if self.credential.expires_at.is_some() => {
                    return Err(Ending::Close(4401, "the credential has expired"));
                }
                changed = revocations.changed(), if !recheck_pending => {
                    if changed.is_err() {
                        return Err(Ending::Close(1001, "server is shutting down"));
                    }
                    let due = last_recheck + RECHECK_SPACING;
                    if Instant::now() >= due {
                        last_recheck = Instant::now();
                        self.recheck_credential().await?;
                        expiry.as_mut().reset(until(self.credential.expires_at));
                    } else {
                        recheck_pending = true;
                        recheck_timer.as_mut().reset(due);
                    }
                }
                _ = &mut recheck_timer, if recheck_pending => {
                    recheck_pending = false;
                    last_recheck = Instant::now();
                    self.recheck_credential().await?;
                    expiry.as_mut().reset(until(self.credential.expires_at));
                }
                (changed, signal) = &mut changes, if !update_pending => {
                    let Some(changed) = changed else {
                        return Err(self.board_gone().await);
                    };
                    check_live(&changed, self.deactivations)?;
                    changes.set(next_change(signal));
                    let due = last_update + coalesce;
                    let now = Instant::now();
                    if due <= now {
                        last_update = now;
                        self.send_update().await?;
                    } else {
                        update_pending = true;
                        coalescing.as_mut().reset(due);
                    }
                }
                _ = &mut coalescing, if update_pending => {
                    update_pending = false;
                    // What happened to the board while this socket was not listening.
                    if self.board.has_changed().is_err() {
                        return Err(self.board_gone().await);
                    }
                    check_live(&self.board.borrow(), self.deactivations)?;
                    last_update = Instant::now();
                    self.send_update().await?;
                }
                _ = &mut window_check => {
                    self.check_window().await?;
                }
                incoming = self.socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Err(Ending::Gone),
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        self.receive(message).await?;
                    }
                },
                _ = &mut idle => {
                    if last_heard.elapsed() >= peer_timeout {
                        return Err(Ending::Close(4408, "the client stopped answering pings"));
                    }
                    // A quiet socket gets a ping, and so does a client we have not heard from (it
                    // may only be receiving updates): its pong is how we know it is there.
                    if self.last_sent.elapsed() >= ping_every || last_heard.elapsed() >= ping_every {
                        self.send(Message::Ping(Default::default())).await?;
                    }
                    idle.as_mut()
                        .reset((Instant::now() + ping_every).min(last_heard + peer_timeout));
                }
            }
            // A new window (or status) re-arms its deadline; an elapsed check re-arms itself.
            if self.window_epoch != epoch_before {
                window_check
                    .as_mut()
                    .reset(Instant::now() + self.window_deadline());
            } else if window_check.is_elapsed() {
                window_check
                    .as_mut()
                    .reset(Instant::now() + self.window_deadline().max(WINDOW_RECHECK));
            }
        }
    }

    /// One frame from the client.
    async fn receive(&mut self, message: Message) -> Result<(), Ending> {
        match message {
            Message::Text(text) => self.answer(text.as_str()).await,
            Message::Binary(_) => self.send_error("messages must be JSON text".into()).await,
            // Pongs need no answer; pings are answered by the protocol layer.
            _ => Ok(()),
        }
    }

    /// Checks the socket's credential again: 4401 once it no longer holds. A fresh tenant credential
    /// brings the tenant's current rate limits along.
    async fn recheck_credential(&mut self) -> Result<(), Ending> {
        match self.credential.recheck(&self.state).await {
            Ok(fresh) => {
                if let (Some(fresh), Some(limited)) = (fresh, self.limited.as_mut()) {
                    **limited = fresh;
                }
                Ok(())
            }
            Err(ApiError::Unauthorized(_) | ApiError::Forbidden(_)) => {
                Err(Ending::Close(4401, "the credential was revoked"))
            }
            // The store could not answer: keep the socket; the next change checks again.
            Err(_) => Ok(()),
        }
    }

    /// Sends one message, giving a slow client at most `ws_send_timeout`.
    async fn send(&mut self, message: Message) -> Result<(), Ending> {
        self.last_sent = Instant::now();
        match tokio::time::timeout(self.state.config.ws_send_timeout, self.socket.send(message))
            .await
        {
            Ok(sent) => Ok(sent?),
            Err(_) => Err(Ending::TooSlow),
        }
    }

    async fn send_json(&mut self, message: &ServerMessage) -> Result<(), Ending> {
        let text =
            serde_json::to_string(message).map_err(|_| Ending::Close(1011, "internal error"))?;
        self.send(Message::Text(text.into())).await
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn set_window(&mut self, window: &Window, status: WindowStatus) {
        let same = matches!(&self.window, Some((w, s)) if w.id == window.id && *s == status);
        if !same {
            self.window = Some((window.clone(), status));
            self.window_epoch += 1;
        }
    }

    /// One page of the board's standings (the current window when `window` is `None`).
    async fn read_page(
        &mut self,
        window: Option<&WindowId>,
        start: PageStart,
        count: u32,
    ) -> Result<StandingsPage, Ending> {
        Ok(self
            .state
            .store
            .standings(&self.tenant, &self.leaderboard, window, start, count)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(&self.leaderboard))?)
    }

    async fn read_top(&mut self, window: Option<&WindowId>) -> Result<StandingsPage, Ending> {
        self.read_page(window, PageStart::Rank(1), self.top).await
    }

    /// The board's current top entries: shared with the other sockets when one of them already read
    /// them at the board's current version, otherwise read once and shared.
    async fn frame(&mut self) -> Result<Arc<TopFrame>, Ending> {
        let version = self.board.borrow().version;
        if let Some(frame) = self.feed.latest(version) {
            return Ok(frame);
        }
        let page = self.read_page(None, PageStart::Rank(1), MAX_TOP).await?;
        Ok(self
            .feed
            .install(version, page.window, page.status, page.entries))
    }

    async fn read_me(&mut self, window: Option<&WindowId>) -> Result<Option<Standing>, Ending> {
        match &self.me {
            None => Ok(None),
            Some(user) => Ok(self
                .state
                .store
                .standing_of(&self.tenant, &self.leaderboard, window, user)
                .await
                .map_err(ApiError::from)?),
        }
    }

    async fn send_snapshot(&mut self) -> Result<(), Ending> {
        let frame = self.frame().await?;
        let me = self.read_me(Some(&frame.window.id)).await?;
        let seq = self.next_seq();
        let message = ServerMessage::Snapshot {
            seq,
            window: window_view(&frame.window, frame.status),
            entries: frame
                .top(self.top)
                .iter()
                .cloned()
                .map(Into::into)
                .collect(),
            me: me.clone().map(Into::into),
        };
        self.sent_me = me;
        self.set_window(&frame.window, frame.status);
        self.sent = Some(frame);
        self.send_json(&message).await
    }

    /// The entries of the top N that changed since the client's copy, and who left it.
    async fn send_update(&mut self) -> Result<(), Ending> {
        let frame = self.frame().await?;
        let (Some(sent), Some((window, _))) = (&self.sent, &self.window) else {
            return self.send_snapshot().await;
        };
        if window.id != frame.window.id {
            return self.roll_over().await;
        }
        // Two reads at the same signal version may hold different states (a durable group is visible a
        // moment before its signal): never step back to the older one; the next version brings the rest.
        let frame = if frame.version == sent.version && frame.id != sent.id {
            Arc::clone(sent)
        } else {
            frame
        };
        let body = self.feed.diff(sent, &frame, self.top);
        let me = self.read_me(Some(&frame.window.id)).await?;
        let me_changed = match (&self.sent_me, &me) {
            (None, None) => false,
            (Some(a), Some(b)) => !same(a, b),
            _ => true,
        };
        self.set_window(&frame.window, frame.status);
        self.sent = Some(frame);
        if body.is_none() && !me_changed {
            return Ok(());
        }
        let seq = self.next_seq();
        let me_json = match &me {
            None => "null".to_owned(),
            Some(m) => serde_json::to_string(&EntryRef(m))
                .map_err(|_| Ending::Close(1011, "internal error"))?,
        };
        let body = body.as_deref().unwrap_or("\"entries\":[],\"removed\":[]");
        let mut text = String::with_capacity(body.len() + me_json.len() + 48);
        // `{"type":"update","seq":N,"entries":[...],"removed":[...],"me":...}`: the shared middle is
        // serialized once per board change (see `feed`).
        let _ = write!(text, "{{\"type\":\"update\",\"seq\":{seq},");
        text.push_str(body);
        text.push_str(",\"me\":");
        text.push_str(&me_json);
        text.push('}');
        self.sent_me = me;
        self.send(Message::Text(text.into())).await
    }

    /// When the current window is due to change: at its end (or start, while upcoming).
    fn window_deadline(&self) -> Duration {
        let at = match &self.window {
            Some((w, WindowStatus::Open)) => w.ends_at,
            Some((w, WindowStatus::Upcoming)) => w.starts_at,
            _ => None,
        };
        match at {
            // Windows without an end never roll over; check rarely in case the board is re-created.
            None => Duration::from_secs(3600),
            Some(at) => {
                let left = at.as_millisecond() - Timestamp::now().as_millisecond();
                Duration::from_millis(u64::try_from(left).unwrap_or(0)) + Duration::from_millis(10)
            }
        }
    }

    async fn check_window(&mut self) -> Result<(), Ending> {
        let page = self.read_top(None).await?;
        match &self.window {
            // A window that ends without a successor (a custom timeframe) closes in place.
            Some((w, WindowStatus::Open))
                if w.id == page.window.id && page.status == WindowStatus::Closed =>
            {
                self.roll_over().await
            }
            Some((w, status)) if w.id == page.window.id => {
                if *status != page.status {
                    // An upcoming window that opened: same id, nothing closed.
                    self.set_window(&page.window, page.status);
                }
                Ok(())
            }
            _ => self.roll_over().await,
        }
    }

    /// The window rolled over: the closed window's final top N, then a snapshot of the new one.
    async fn roll_over(&mut self) -> Result<(), Ending> {
        if let Some((closed, _)) = self.window.take() {
            let final_top = self.read_top(Some(&closed.id)).await?;
            let seq = self.next_seq();
            let message = ServerMessage::WindowClosed {
                seq,
                window: window_view(&closed, WindowStatus::Closed),
                entries: final_top.entries.into_iter().map(Into::into).collect(),
            };
            self.send_json(&message).await?;
        }
        self.send_snapshot().await
    }

    /// Why the store stopped signalling: the board was deleted, deactivated, or the store is closing.
    async fn board_gone(&mut self) -> Ending {
        match self
            .state
            .store
            .get_leaderboard(&self.tenant, &self.leaderboard)
            .await
        {
            Ok(None) => Ending::Close(4410, "leaderboard was deleted"),
            Ok(Some(lb)) if lb.status != LeaderboardStatus::Active => {
                Ending::Close(4404, "leaderboard was deactivated")
            }
            _ => Ending::Close(1001, "server is shutting down"),
        }
    }

    async fn send_error(&mut self, message: String) -> Result<(), Ending> {
        self.send_api_error(ApiError::Validation(message)).await
    }

    async fn send_api_error(&mut self, error: ApiError) -> Result<(), Ending> {
        let error = error.envelope().error;
        self.send_json(&ServerMessage::Error { error }).await
    }

    /// Answers one client message; a malformed one gets an `error` and the socket stays open, and so
    /// does one over the rate limit (a `RATE_LIMITED` error).
    async fn answer(&mut self, text: &str) -> Result<(), Ending> {
        if let Some(auth) = &self.limited
            && let Err(refused) = self.state.rate_limiter.check_read(auth)
        {
            return self.send_api_error(refused).await;
        }
        match parse_client_message(text) {
            Err(message) => self.send_error(message).await,
            Ok(ClientMessage::Ping) => self.send_json(&ServerMessage::Pong).await,
            Ok(ClientMessage::Subscribe { top }) => {
                self.top = top;
                self.send_snapshot().await
            }
            Ok(ClientMessage::RequestPage { page, page_size }) => {
                let Some(from) = (page - 1)
                    .checked_mul(page_size)
                    .and_then(|n| n.checked_add(1))
                else {
                    return self.send_error("page: is too large".into()).await;
                };
                let read = self
                    .read_page(None, PageStart::Rank(from), page_size)
                    .await?;
                let seq = self.next_seq();
                let message = ServerMessage::Page {
                    seq,
                    page,
                    entries: read.entries.into_iter().map(Into::into).collect(),
                };
                self.send_json(&message).await
            }
        }
    }
}

/// Whether the board is still live for a socket that saw `deactivations` when it opened: one that was
/// deactivated since, even if active again by now, closes the socket.
fn check_live(signal: &BoardSignal, deactivations: u64) -> Result<(), Ending> {
    match signal.state {
        BoardState::Deleted => Err(Ending::Close(4410, "leaderboard was deleted")),
        BoardState::Inactive => Err(Ending::Close(4404, "leaderboard was deactivated")),
        BoardState::Active if signal.deactivations != deactivations => {
            Err(Ending::Close(4404, "leaderboard was deactivated"))
        }
        BoardState::Active => Ok(()),
    }
}

#[derive(Debug, PartialEq)]
enum ClientMessage {
    Subscribe { top: u32 },
    RequestPage { page: u32, page_size: u32 },
    Ping,
}

/// A whole number in `min..=max`, `default` when absent; the error names the field.
fn field(
    object: &serde_json::Map<String, Value>,
    name: &str,
    default: Option<u32>,
    min: u32,
    max: u32,
) -> Result<u32, String> {
    let range = || format!("{name}: must be a whole number between {min} and {max}");
    match object.get(name) {
        None => default.ok_or_else(|| format!("{name}: is required")),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(range),
    }
}

fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "message is not valid JSON: {}",
            short_prefix(&e.to_string())
        )
    })?;
    let object = value
        .as_object()
        .ok_or_else(|| "message must be a JSON object".to_owned())?;
    let kind = object
        .get("type")
        .ok_or_else(|| "type: is required".to_owned())?
        .as_str()
        .ok_or_else(|| "type: must be a string".to_owned())?;
    match kind {
        "ping" => Ok(ClientMessage::Ping),
        "subscribe" => Ok(ClientMessage::Subscribe {
            top: field(object, "top", Some(DEFAULT_TOP), 1, MAX_TOP)?,
        }),
        "request_page" => Ok(ClientMessage::RequestPage {
            page: field(object, "page", None, 1, u32::MAX)?,
            page_size: field(object, "page_size", Some(DEFAULT_TOP), 1, MAX_TOP)?,
        }),
        other => Err(format!(
            "type: must be one of 'subscribe', 'request_page', 'ping' (got '{}')",
            short_prefix(other)
        )),
    }
}

/// At most the first 32 characters of what a client sent, for an error message: a message must not
/// echo a client's megabytes back (or carry them into logs).
fn short_prefix(input: &str) -> String {
    const SHOWN: usize = 32;
    match input.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_and_name_the_bad_field() {
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            parse_client_message(r#"{"type":"subscribe"}"#),
            Ok(ClientMessage::Subscribe { top: 10 })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"request_page","page":2,"page_size":5}"#),
            Ok(ClientMessage::RequestPage {
                page: 2,
                page_size: 5
            })
        );
        let err = |t: &str| parse_client_message(t).err().unwrap_or_default();
        assert!(err(r#"{"type":"subscribe","top":101}"#).starts_with("top:"));
        assert!(err(r#"{"type":"subscribe","top":0}"#).starts_with("top:"));
        assert!(err(r#"{"type":"request_page","page":0}"#).starts_with("page:"));
        assert!(err(r#"{"type":"request_page"}"#).starts_with("page:"));
        assert!(
            err(r#"{"type":"request_page","page":1,"page_size":-1}"#).starts_with("page_size:")
        );
        assert!(err(r#"{"type":"dance"}"#).starts_with("type:"));
        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
        assert!(err(&long).len() < 200, "{}", err(&long).len());
        assert!(err(r#"{"top":3}"#).starts_with("type:"));
        assert!(err("not json").contains("JSON"));
        assert!(err("[1]").contains("object"));
    }
}
