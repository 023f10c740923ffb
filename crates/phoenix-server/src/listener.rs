//! Accepting connections so that no client can hold the server's sockets or memory (SPEC §8): the
//! server's own accept loop over hyper's HTTP/1.1 connections, a registry of every open connection and
//! what it is doing, time limits for headers and idle keep-alive, and a bound on open connections that,
//! when reached, sheds the oldest connections still without a complete request, so real clients and
//! probes still get in. Bodies have their own time limit and memory budget (`body`); upgraded
//! WebSockets leave the registry and are counted against a cap of their own (`AppState`).

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The time limits and bound of [`Connections`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From accepting a connection, or from the first byte of a later request, to its complete headers.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait, with nothing sent, for its next request.
    pub idle_timeout: Duration,
    /// Open HTTP connections across every listener (upgraded WebSockets are not counted here).
    pub max_connections: usize,
}

/// The largest request head (request line and headers) read; more is 431. Bounds what a connection
/// that has not sent its headers yet can make the server hold.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How often the reaper looks for connections past their time limits.
const REAP_EVERY: Duration = Duration::from_millis(250);
/// Pause after an accept error that is about the server (out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a connection is doing.
const AWAITING_HEAD: u8 = 0;
const IDLE: u8 = 1;
const BUSY: u8 = 2;
/// Headers are in, the body is still arriving (before authentication, which may need it): as
/// sheddable as a connection still sending headers.
const READING_BODY: u8 = 3;

fn pack(phase: u8, since_ms: u64) -> u64 {
    (since_ms << 8) | u64::from(phase)
}

fn unpack(state: u64) -> (u8, u64) {
    ((state & 0xff) as u8, state >> 8)
}

/// One open connection, as the accept loop, the reaper and the connection's own task see it.
struct Conn {
    /// What the connection is doing and since when, in one word so that both are always read and
    /// changed together: the phase in the low byte (`AWAITING_HEAD`: accepted, or bytes of a request
    /// arrived, the header clock runs; `READING_BODY`; `BUSY`: a request is being served; `IDLE`:
    /// kept alive between requests), the milliseconds since the registry's epoch above it.
    state: AtomicU64,
    in_flight: AtomicU32,
    /// Responses the service has been asked for and whose heads have not been written yet: a response
    /// head written when none is expected is hyper's own answer to a request it could not parse.
    expected_heads: AtomicU32,
    /// Told to drop the connection at once (shed or past a time limit).
    kill: Notify,
}

impl Conn {
    /// Moves from phase `from` to `to`, starting its clock now; nothing if it is in another phase.
    fn advance(&self, from: u8, to: u8, now_ms: impl FnOnce() -> u64) {
        let current = self.state.load(Ordering::Acquire);
        if unpack(current).0 == from {
            // Lost to a concurrent change (a request starting or ending): that change is newer.
            let _ = self.state.compare_exchange(
                current,
                pack(to, now_ms()),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}

/// Why a connection was closed by the server rather than by its client.
#[derive(Clone, Copy)]
enum Shed {
    /// The bound was reached and this was the oldest connection without a complete request.
    Full,
    HeaderTimeout,
    IdleTimeout,
    /// Accepting failed for want of descriptors.
    OutOfDescriptors,
}

impl Shed {
    fn label(self) -> &'static str {
        match self {
            Shed::Full => "full",
            Shed::HeaderTimeout => "header_timeout",
            Shed::IdleTimeout => "idle_timeout",
            Shed::OutOfDescriptors => "out_of_descriptors",
        }
    }
}

/// Every open HTTP connection of the process, oldest first.
pub struct Connections {
    limits: ConnectionLimits,
    epoch: Instant,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// The number of open connections, for waiting on room and on the last one at shutdown.
    count: watch::Sender<usize>,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        metrics::gauge!("phoenix_connections_limit").set(limits.max_connections as f64);
        Arc::new(Connections {
            limits,
            epoch: Instant::now(),
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            count: watch::channel(0).0,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // The map stays consistent whatever a panicking holder did: every change is one insert/remove.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            state: AtomicU64::new(pack(AWAITING_HEAD, self.now_ms())),
            in_flight: AtomicU32::new(0),
            expected_heads: AtomicU32::new(0),
            kill: Notify::new(),
        });
        let n = {
            let mut open = self.lock();
            open.insert(id, Arc::clone(&conn));
            open.len()
        };
        self.count.send_replace(n);
        metrics::gauge!("phoenix_connections_open").set(n as f64);
        Registered {
            connections: Arc::clone(self),
            id,
            conn,
        }
    }

    /// Closes the connection that has waited longest without a complete request (still sending its
    /// headers or its body), or else the longest idle one; false when every one is serving a request.
    fn shed_oldest(&self, why: Shed) -> bool {
        let open = self.lock();
        let oldest_in = |phases: &[u8]| {
            open.values()
                .map(|c| (c, unpack(c.state.load(Ordering::Acquire))))
                .filter(|(_, (phase, _))| phases.contains(phase))
                .min_by_key(|(_, (_, since))| *since)
                .map(|(c, _)| c)
        };
        let victim = oldest_in(&[AWAITING_HEAD, READING_BODY]).or_else(|| oldest_in(&[IDLE]));
        match victim {
            Some(conn) => {
                conn.kill.notify_one();
                metrics::counter!("phoenix_connections_shed_total", "reason" => why.label())
                    .increment(1);
                true
            }
            None => false,
        }
    }

    /// Closes connections past their header or idle time limit.
    fn reap(&self) {
        let now = self.now_ms();
        let header = u64::try_from(self.limits.header_timeout.as_millis()).unwrap_or(u64::MAX);
        let idle = u64::try_from(self.limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let open = self.lock();
        for conn in open.values() {
            let (phase, since) = unpack(conn.state.load(Ordering::Acquire));
            let age = now.saturating_sub(since);
            let why = match phase {
                AWAITING_HEAD if age > header => Shed::HeaderTimeout,
                IDLE if age > idle => Shed::IdleTimeout,
                _ => continue,
            };
            conn.kill.notify_one();
            metrics::counter!("phoenix_connections_shed_total", "reason" => why.label())
                .increment(1);
        }
    }

    /// Waits until fewer than the bound are open (or `shutdown` fires).
    async fn room(&self, shutdown: &CancellationToken) {
        let max = self.limits.max_connections;
        let mut count = self.count.subscribe();
        loop {
            if *count.borrow_and_update() < max {
                return;
            }
            if !self.shed_oldest(Shed::Full) {
                tracing::debug!("connection limit reached with every connection busy; waiting");
            }
            // A shed connection goes at once; a busy one when its request ends. Re-check now and then
            // in case a shed target turned busy just before it was told.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = count.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Resolves once every connection has closed.
    pub async fn all_closed(&self) {
        let mut count = self.count.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }

    /// Runs the reaper until `shutdown`.
    pub async fn reap_until(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(REAP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.reap(),
            }
        }
    }
}

/// A connection's place in the registry, given up when its task ends.
struct Registered {
    connections: Arc<Connections>,
    id: u64,
    conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let n = {
            let mut open = self.connections.lock();
            open.remove(&self.id);
            open.len()
        };
        self.connections.count.send_replace(n);
        metrics::gauge!("phoenix_connections_open").set(n as f64);
    }
}

/// The socket, noting when bytes of a new request start to arrive on a kept-alive connection (which
/// starts its header clock), and giving hyper's own answers to unparsable requests (bare 400, 414 and
/// 431 with no body) the error envelope of SPEC §2.
struct TrackedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
    connections: Arc<Connections>,
    /// An envelope response being written in place of hyper's bare one.
    replacement: Option<(Vec<u8>, usize)>,
    /// Upgraded to a WebSocket: no more HTTP heads to look at.
    upgraded: bool,
}

/// What a write starts with.
enum Head {
    Other,
    /// The head of a response the service was asked for.
    Expected {
        upgrade: bool,
    },
    /// hyper's own bare answer, and the envelope response to send instead.
    Own(Vec<u8>),
}

/// The envelope response that replaces hyper's bare answer with this status line, if it is one.
fn envelope_for(head: &[u8]) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let message = match status {
        b"400" => "the request is not valid HTTP",
        b"414" => "the request line is too long",
        b"431" => "the request headers are too large (at most 16 KiB)",
        _ => return None,
    };
    // SPEC §2 pairs every status with a code; these are all malformed requests.
    let body =
        format!(r#"{{"error":{{"code":"VALIDATION_ERROR","message":"{message}","status":400}}}}"#);
    Some(
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl TrackedIo {
    /// What the start of a write is. Only looks: the expected head is counted off once its first
    /// bytes are actually written (a write that is `Pending` comes back with the same bytes).
    fn classify(&self, first: &[u8]) -> Head {
        if self.upgraded || !first.starts_with(b"HTTP/1.") {
            return Head::Other;
        }
        // Informational heads (100 Continue) come while the service works on its answer.
        if first.get(9) == Some(&b'1') && !first.starts_with(b"HTTP/1.1 101") {
            return Head::Other;
        }
        if self.conn.expected_heads.load(Ordering::Acquire) > 0 {
            return Head::Expected {
                upgrade: first.starts_with(b"HTTP/1.1 101"),
            };
        }
        match envelope_for(first) {
            Some(bytes) => Head::Own(bytes),
            None => Head::Other,
        }
    }

    /// After a write of an expected head: once some of it is out, it is no longer expected.
    fn wrote(&mut self, head: &Head, written: &Poll<std::io::Result<usize>>) {
        if let (Head::Expected { upgrade }, Poll::Ready(Ok(n))) = (head, written)
            && *n > 0
        {
            let _ =
                self.conn
                    .expected_heads
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            if *upgrade {
                self.upgraded = true;
            }
        }
    }

    /// Writes out the replacement, if any; ready when it is all written.
    fn drive_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written >= bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn
                .advance(IDLE, AWAITING_HEAD, || this.connections.now_ms());
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.drive_replacement(cx))?;
        let head = this.classify(buf);
        if let Head::Own(bytes) = head {
            // hyper's bytes are taken as written; the envelope goes out in their place.
            this.replacement = Some((bytes, 0));
            let _ = this.drive_replacement(cx);
            return Poll::Ready(Ok(buf.len()));
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&head, &written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.drive_replacement(cx))?;
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        let head = this.classify(first);
        if let Head::Own(bytes) = head {
            this.replacement = Some((bytes, 0));
            let _ = this.drive_replacement(cx);
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&head, &written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.drive_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.drive_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Marks a connection busy for as long as one of its requests is being served.
struct Busy {
    conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl Busy {
    fn start(conn: &Arc<Conn>, connections: &Arc<Connections>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        // Until the body reader says the body is in.
        conn.state
            .store(pack(READING_BODY, connections.now_ms()), Ordering::Release);
        Busy {
            conn: Arc::clone(conn),
            connections: Arc::clone(connections),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn
                .state
                .store(pack(IDLE, self.connections.now_ms()), Ordering::Release);
        }
    }
}

/// The router as one connection's hyper service: the peer's address for handlers, and the busy mark.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    conn: Arc<Conn>,
    connections: Arc<Connections>,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

/// A request's handle on its connection, so the body reader can say when the body has arrived.
#[derive(Clone)]
pub(crate) struct ConnPhase {
    conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl ConnPhase {
    /// The body is in: from now on the connection is serving a request, not waiting on its client.
    pub(crate) fn body_received(&self) {
        self.conn
            .advance(READING_BODY, BUSY, || self.connections.now_ms());
    }
}

impl hyper::service::Service<axum::http::Request<Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: axum::http::Request<Incoming>) -> Self::Future {
        let busy = Busy::start(&self.conn, &self.connections);
        self.conn.expected_heads.fetch_add(1, Ordering::AcqRel);
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        req.extensions_mut().insert(ConnPhase {
            conn: Arc::clone(&self.conn),
            connections: Arc::clone(&self.connections),
        });
        let served = self.router.clone().oneshot(req);
        Box::pin(async move {
            let response = served.await;
            drop(busy);
            response
        })
    }
}

/// Whether an accept error is about one connection (go on at once) rather than about the server
/// (out of descriptors or memory: back off, and free a descriptor).
fn connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// Serves `router` on `listener` until `shutdown`, then lets open connections finish their requests.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(MAX_HEAD_BYTES.max(8192));
    let http = Arc::new(http);
    let mut last_complaint: Option<Instant> = None;
    loop {
        connections.room(&shutdown).await;
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if connection_error(&e) => continue,
            Err(e) => {
                metrics::counter!("phoenix_accept_errors_total").increment(1);
                if last_complaint.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(listener = name, error = %e,
                        "cannot accept connections; closing idle ones and backing off");
                    last_complaint = Some(Instant::now());
                }
                // Free a descriptor by closing the oldest idle connection and go on as soon as it has
                // closed; with nothing to close, back off.
                let mut count = connections.count.subscribe();
                count.borrow_and_update();
                if connections.shed_oldest(Shed::OutOfDescriptors) {
                    let _ = tokio::time::timeout(ACCEPT_BACKOFF, count.changed()).await;
                } else {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        // Small frames (WebSocket updates, 202s) must not wait behind Nagle and the peer's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let registered = connections.register();
        let io = TrackedIo {
            inner: stream,
            conn: Arc::clone(&registered.conn),
            connections: Arc::clone(&connections),
            replacement: None,
            upgraded: false,
        };
        let service = ConnService {
            router: router.clone(),
            peer,
            conn: Arc::clone(&registered.conn),
            connections: Arc::clone(&connections),
        };
        let http = Arc::clone(&http);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Owned by the task: the connection leaves the registry when the task ends.
            let registered = registered;
            let conn = http
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            let kill = registered.conn.kill.notified();
            tokio::pin!(kill);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = &mut kill => return,
                _ = shutdown.cancelled() => {}
            }
            // Draining: finish the request in progress, then close (an idle connection closes at once).
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = &mut kill => {}
            }
        });
    }
}
