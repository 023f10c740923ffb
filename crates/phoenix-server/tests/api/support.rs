//! The test harness: `spawn_app()` starts the real server on `127.0.0.1:0` over an embedded store in a
//! temporary data dir, or two servers over one cluster (see [`Backend`]: the same suite runs against
//! both), and can restart them on the same state. Helpers build credentials (API keys, admin
//! JWTs, tenant HMAC signatures) and check the error envelope of SPEC §2.

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use phoenix_server::{Application, ServerConfig};
use phoenix_store::{EmbeddedStore, MasterKey, Store};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The system admin secret every test server is configured with.
pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

/// How long tests wait for something that should happen "at once" before failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

fn master_key() -> MasterKey {
    MasterKey::from_hex(&"5a".repeat(32)).expect("a valid master key")
}

/// The configuration every test starts from: combined listener on an ephemeral port, the admin secret
/// set, auth on.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("an address"));
    config.admin_secret = Some(ADMIN_SECRET.to_owned());
    config
}

/// Which store the suite runs against; each test binary's `main.rs` names one (`crate::BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each test binary names one
pub enum Backend {
    /// One server over an embedded store in a temporary data dir.
    Embedded,
    /// Two servers over one cluster (the real PostgreSQL and Redis; a fresh schema per test). Requests
    /// alternate between the nodes, so every test also checks that a write on one node is seen on the
    /// other; the nodes run with consistent reads, so a client reads its own writes on either.
    Cluster,
}

/// One running server.
struct Node {
    base: String,
    addrs: Vec<(&'static str, SocketAddr)>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
    /// The server's store, for reading standings through the library API. Dropped on stop so the data
    /// dir's lock is released.
    store: Option<Arc<dyn Store>>,
    /// A cluster node's store, to take the cluster's snapshot before a restart.
    node: Option<Arc<EmbeddedStore>>,
}

/// Where the state of a test's servers lives across a restart.
enum Backing {
    Dir(TempDir),
    Cluster { url: String, scratch: TempDir },
}

/// A running server (or cluster) and a client for it.
pub struct TestApp {
    /// The (first) server's combined listener's base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// Every listener of the (first) server by name (`combined`, `admin`, ...).
    pub addrs: Vec<(&'static str, SocketAddr)>,
    pub client: reqwest::Client,
    config: ServerConfig,
    /// `None` only while being moved to a restarted server.
    backing: Option<Backing>,
    nodes: Vec<Node>,
    /// Which node the next request goes to.
    next: std::sync::atomic::AtomicUsize,
    /// Every request goes to the first node (see [`TestApp::pin_to_one_node`]).
    pinned: std::sync::atomic::AtomicBool,
}

/// Starts a server with the default test configuration on a fresh data dir.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

/// Starts a server (or a two-node cluster, see [`Backend`]) with `config` on fresh state.
pub async fn spawn_app_with(config: ServerConfig) -> TestApp {
    let backing = match crate::BACKEND {
        Backend::Cluster if cluster_services().await => Backing::Cluster {
            url: phoenix_store::conformance::test_database("phx_api")
                .await
                .expect("PostgreSQL answered a moment ago"),
            scratch: tempfile::tempdir().expect("a temporary scratch dir"),
        },
        _ => Backing::Dir(tempfile::tempdir().expect("a temporary data dir")),
    };
    start(config, backing).await
}

/// Whether PostgreSQL and Redis answer (checked once). Under `CI=true` they must; elsewhere the
/// cluster suite says once that it runs on the embedded store instead.
async fn cluster_services() -> bool {
    static UP: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    *UP.get_or_init(|| async {
        let db = std::env::var("PHOENIX_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let redis = std::env::var("PHOENIX_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let pg = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(3))
            .connect(&db)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let rd = match redis::Client::open(redis.as_str()) {
            Ok(client) => client
                .get_multiplexed_async_connection()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match (pg, rd) {
            (Ok(()), Ok(())) => true,
            (pg, rd) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "the cluster suite needs PostgreSQL ({db}: {pg:?}) and Redis ({redis}: {rd:?}) under CI=true"
            ),
            (pg, rd) => {
                eprintln!(
                    "SKIPPED cluster: no PostgreSQL ({pg:?}) or Redis ({rd:?}); the cluster suite runs on the embedded store instead (CI runs it on a cluster)"
                );
                false
            }
        }
    })
    .await
}

async fn open_store(dir: &TempDir) -> EmbeddedStore {
    // The previous server may still be letting go of the data-dir lock: retry until the deadline.
    let started = std::time::Instant::now();
    loop {
        match EmbeddedStore::open_initialized(dir.path(), master_key()).await {
            Ok(store) => return store,
            Err(_) if started.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot open the store in {}: {e}", dir.path().display()),
        }
    }
}

/// A cluster node's store on the schema `url` (its scratch dir under `scratch`).
async fn open_node(url: &str, scratch: &std::path::Path) -> EmbeddedStore {
    let redis =
        std::env::var("PHOENIX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let dir = scratch.join(phoenix_store::seal::random_hex::<4>());
    let log = phoenix_store::pglog::PgLogOptions {
        url: url.to_owned(),
        connections: 4,
    };
    let store = tokio::task::spawn_blocking(move || {
        EmbeddedStore::open_cluster(
            &dir,
            master_key(),
            phoenix_store::embedded::EmbeddedOptions::default(),
            log,
        )
    })
    .await
    .expect("the open task")
    .expect("a cluster node opens");
    let pool = store.cluster_pool().expect("a cluster node has a pool");
    let shared = phoenix_store::redis_shared::RedisShared::connect(&redis, pool)
        .await
        .unwrap_or_else(|e| panic!("the cluster suite needs Redis at {redis}: {e}"));
    let store = store.with_shared(Arc::new(shared));
    store.initialize().await.expect("the node initializes");
    store
}

async fn start_node(
    config: &ServerConfig,
    store: Arc<dyn Store>,
    node: Option<Arc<EmbeddedStore>>,
) -> Node {
    let app = Application::build(config.clone(), store)
        .await
        .expect("the server binds 127.0.0.1:0");
    let addrs = app.addrs();
    let store = app.state().store.clone();
    let base = format!("http://{}", app.addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone(), Duration::from_secs(5)));
    Node {
        base,
        addrs,
        shutdown,
        server: Some(server),
        store: Some(store),
        node,
    }
}

async fn start(config: ServerConfig, backing: Backing) -> TestApp {
    let mut nodes = Vec::new();
    let mut node_config = config.clone();
    match &backing {
        Backing::Dir(dir) => {
            let store = open_store(dir).await;
            nodes.push(start_node(&node_config, Arc::new(store), None).await);
        }
        Backing::Cluster { url, scratch } => {
            node_config.consistent_reads = true;
            for _ in 0..2 {
                let store = Arc::new(open_node(url, scratch.path()).await);
                nodes.push(start_node(&node_config, store.clone(), Some(store)).await);
            }
        }
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    TestApp {
        base: nodes[0].base.clone(),
        addrs: nodes[0].addrs.clone(),
        client,
        config,
        backing: Some(backing),
        nodes,
        next: std::sync::atomic::AtomicUsize::new(0),
        pinned: std::sync::atomic::AtomicBool::new(false),
    }
}

impl TestApp {
    /// Stops the server(s) and waits until they have finished (and released the store).
    pub async fn stop(&mut self) {
        for node in &mut self.nodes {
            node.store = None;
            node.node = None;
            node.shutdown.cancel();
        }
        for node in &mut self.nodes {
            if let Some(server) = node.server.take() {
                tokio::time::timeout(DEADLINE, server)
                    .await
                    .expect("the server stops within the deadline")
                    .expect("the server task does not panic");
            }
        }
    }

    /// Shuts the server(s) down and starts new ones (new stores, same data dir or cluster, same
    /// master key).
    pub async fn restart(mut self) -> TestApp {
        // Close pooled connections first so graceful shutdown has nothing to wait for.
        self.client = reqwest::Client::new();
        // A cluster's nodes start again from its newest snapshot (the log after it is replayed), so
        // every test that restarts goes through one.
        if let Some(node) = self.nodes.first().and_then(|n| n.node.clone()) {
            node.checkpoint_cluster(1, Duration::ZERO)
                .await
                .expect("the cluster's snapshot is stored");
        }
        self.stop().await;
        let backing = self.backing.take().expect("the state");
        start(self.config.clone(), backing).await
    }

    /// The (first) running server's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.nodes[0].store.as_ref().expect("the server is running")
    }

    /// Waits until every node has applied what was acknowledged so far (nothing on one node).
    pub async fn settle(&self) {
        for node in &self.nodes {
            if let Some(store) = &node.store {
                store.barrier().await.expect("the node catches up");
            }
        }
    }

    /// The base URL of the node the next request goes to (they take turns in a cluster).
    pub fn next_base(&self) -> &str {
        if self.pinned.load(std::sync::atomic::Ordering::Relaxed) {
            return &self.nodes[0].base;
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.nodes.len();
        &self.nodes[i].base
    }

    /// How many servers there are (1, or 2 for a cluster).
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// A store counter summed over the nodes (in a cluster each node counts what it did; the
    /// nodes of a test share one process, and so one metrics registry, so `/metrics` cannot tell
    /// them apart here).
    pub fn stat_total(&self, counter: impl Fn(&phoenix_store::StoreStats) -> u64) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.store.as_ref())
            .map(|s| counter(&s.stats()))
            .sum()
    }

    /// The base URL of node `i` (0 on one node; 0 or 1 in a cluster).
    #[allow(dead_code)]
    pub fn node_base(&self, i: usize) -> &str {
        &self.nodes[i].base
    }

    /// From now on every request goes to one node: for what a node bounds on its own (its sockets,
    /// its share of a limit), checked exactly per request.
    pub fn pin_to_one_node(&self) {
        self.pinned
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The base URL of the listener called `name`.
    pub fn base_of(&self, name: &str) -> String {
        let addr = self
            .addrs
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no listener named {name}: {:?}", self.addrs))
            .1;
        format!("http://{addr}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.next_base())
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A JSON request (body and `Content-Type: application/json`), without credentials.
    pub fn json(&self, method: Method, path: &str, body: &Value) -> RequestBuilder {
        self.request(method, path)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    /// `GET` with the admin secret.
    pub async fn admin_get(&self, path: &str) -> Reply {
        send(admin(self.get(path))).await
    }

    /// A JSON request with the admin secret.
    pub async fn admin_json(&self, method: Method, path: &str, body: &Value) -> Reply {
        send(admin(self.json(method, path, body))).await
    }

    /// Creates a tenant with the admin secret; returns its HMAC secret.
    pub async fn create_tenant(&self, tenant_id: &str) -> String {
        let reply = self
            .admin_json(
                Method::POST,
                "/tenants",
                &json!({"tenant_id": tenant_id, "name": format!("Tenant {tenant_id}")}),
            )
            .await;
        reply.expect(StatusCode::CREATED);
        reply.body["hmac_secret"]
            .as_str()
            .expect("hmac_secret in the creation response")
            .to_owned()
    }

    /// Creates an API key with the admin secret; returns `(key_id, plaintext key)`.
    pub async fn create_key(&self, scopes: &[&str], tenant_ids: &[&str]) -> (String, String) {
        let reply = self
            .admin_json(
                Method::POST,
                "/api-keys",
                &json!({"name": "test key", "scopes": scopes, "tenant_ids": tenant_ids}),
            )
            .await;
        reply.expect(StatusCode::CREATED);
        (
            reply.body["key_id"].as_str().expect("key_id").to_owned(),
            reply.body["key"].as_str().expect("key").to_owned(),
        )
    }

    /// Creates a leaderboard with the admin secret from [`leaderboard_body`]; returns the record.
    pub async fn create_leaderboard(&self, tenant_id: &str, leaderboard_id: &str) -> Value {
        let reply = self
            .admin_json(
                Method::POST,
                &format!("/tenants/{tenant_id}/leaderboards"),
                &leaderboard_body(tenant_id, leaderboard_id),
            )
            .await;
        reply.expect(StatusCode::CREATED);
        reply.body
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.shutdown.cancel();
        }
    }
}

/// Adds the admin secret as a Bearer token.
pub fn admin(request: RequestBuilder) -> RequestBuilder {
    request.bearer_auth(ADMIN_SECRET)
}

/// Adds an API key as `X-API-Key`.
pub fn with_key(request: RequestBuilder, key: &str) -> RequestBuilder {
    request.header("x-api-key", key)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a readable body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        body,
    }
}

impl Reply {
    /// Asserts the status, showing the body on failure.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts the SPEC §2 envelope with `status` and `code`; returns the message.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> String {
        self.expect(status);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "error code; body: {}", self.text);
        assert_eq!(
            error["status"],
            status.as_u16(),
            "error status; body: {}",
            self.text
        );
        let object = self.body.as_object().expect("an object body");
        assert_eq!(object.len(), 1, "only `error` at the top: {}", self.text);
        assert_eq!(error.as_object().map(|e| e.len()), Some(3), "{}", self.text);
        error["message"]
            .as_str()
            .expect("a string message")
            .to_owned()
    }

    #[track_caller]
    pub fn expect_unauthorized(&self) -> String {
        self.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    }

    #[track_caller]
    pub fn expect_forbidden(&self) -> String {
        self.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN")
    }

    #[track_caller]
    pub fn expect_not_found(&self) -> String {
        self.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND")
    }

    #[track_caller]
    pub fn expect_validation(&self) -> String {
        self.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR")
    }
}

/// The seed's example leaderboard ("creating leaderboards", section 3) with another id and tenant.
pub fn leaderboard_body(tenant_id: &str, leaderboard_id: &str) -> Value {
    json!({
        "leaderboard_id": leaderboard_id,
        "tenant_id": tenant_id,
        "name": "Global Weekly XP",
        "description": "Weekly XP race across all regions",
        "config": {
            "scope": {
                "filters": {
                    "actor.metadata.region": { "in": ["na", "eu"] }
                }
            },
            "timeframe": {
                "type": "weekly",
                "timezone": "UTC",
                "reset_day": "monday",
                "reset_time": "00:00"
            },
            "scoring": {
                "rules": [
                    {
                        "event_type": "match.completed",
                        "points_expression": "attrs.score",
                        "conditions": {
                            "attrs.victory": { "eq": true }
                        }
                    }
                ],
                "aggregation": "sum"
            },
            "ranking": {
                "method": "score_desc",
                "size": 1000,
                "min_score": 0
            }
        }
    })
}

pub fn now_secs() -> i64 {
    Timestamp::now().as_second()
}

/// Lowercase hex HMAC-SHA256 over `METHOD\nPATH_WITH_QUERY\nTIMESTAMP\nBODY` (SPEC §3.5).
pub fn hmac_signature(
    secret: &str,
    method: &str,
    path_with_query: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{method}\n{path_with_query}\n{timestamp}\n").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A request signed by `tenant_id` with `secret` at `timestamp`; a body, when given, is sent as JSON
/// exactly as signed.
pub fn signed_at(
    app: &TestApp,
    method: Method,
    path_with_query: &str,
    body: Option<&str>,
    tenant_id: &str,
    secret: &str,
    timestamp: i64,
) -> RequestBuilder {
    let bytes = body.unwrap_or("").as_bytes();
    let signature = hmac_signature(secret, method.as_str(), path_with_query, timestamp, bytes);
    let mut request = app
        .request(method, path_with_query)
        .header("x-tenant-id", tenant_id)
        .header("x-timestamp", timestamp.to_string())
        .header("x-signature", signature);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    request
}

/// [`signed_at`] with the current time.
pub fn signed(
    app: &TestApp,
    method: Method,
    path_with_query: &str,
    body: Option<&str>,
    tenant_id: &str,
    secret: &str,
) -> RequestBuilder {
    signed_at(
        app,
        method,
        path_with_query,
        body,
        tenant_id,
        secret,
        now_secs(),
    )
}

/// A tenant JWT for player `sub` (if any) with `scope` (if any), valid for an hour (SPEC §3.2).
pub fn tenant_token(secret: &str, tenant: &str, sub: Option<&str>, scope: Option<&str>) -> String {
    let now = now_secs();
    let mut claims =
        serde_json::json!({"sub_type": "tenant", "sub_id": tenant, "iat": now, "exp": now + 3600});
    if let Some(sub) = sub {
        claims["sub"] = serde_json::json!(sub);
    }
    if let Some(scope) = scope {
        claims["scope"] = serde_json::json!(scope);
    }
    admin_jwt(secret, &claims)
}

/// An HS256 admin JWT signed with the plaintext API key (SPEC §3.4).
pub fn admin_jwt(key: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("an encodable token")
}

/// Standard admin claims for `key_id`, valid for an hour.
pub fn admin_claims(key_id: &str) -> Value {
    let now = now_secs();
    json!({"sub": "admin_user", "sub_type": "admin", "sub_id": key_id, "iat": now, "exp": now + 3600})
}

/// Polls `check` until it returns `true`, failing after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
