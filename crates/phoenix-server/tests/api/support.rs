//! The test harness: `spawn_app()` starts the real server on `127.0.0.1:0` over an embedded store in a
//! temporary data dir, and can restart it on the same dir. Helpers build credentials (API keys, admin
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

/// A running server and a client for it.
pub struct TestApp {
    /// The combined listener's base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// Every listener by name (`combined`, `admin`, ...).
    pub addrs: Vec<(&'static str, SocketAddr)>,
    pub client: reqwest::Client,
    config: ServerConfig,
    /// `None` only while being moved to a restarted server.
    dir: Option<TempDir>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
    /// The server's store, for reading standings through the library API. Dropped on stop so the data
    /// dir's lock is released.
    store: Option<Arc<dyn Store>>,
}

/// Starts a server with the default test configuration on a fresh data dir.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

/// Starts a server with `config` on a fresh data dir.
pub async fn spawn_app_with(config: ServerConfig) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary data dir");
    start(config, dir).await
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

async fn start(config: ServerConfig, dir: TempDir) -> TestApp {
    let store = open_store(&dir).await;
    let app = Application::build(config.clone(), Arc::new(store))
        .await
        .expect("the server binds 127.0.0.1:0");
    let addrs = app.addrs();
    let store = app.state().store.clone();
    let base = format!("http://{}", app.addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone(), Duration::from_secs(5)));
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    TestApp {
        base,
        addrs,
        client,
        config,
        dir: Some(dir),
        shutdown,
        server: Some(server),
        store: Some(store),
    }
}

impl TestApp {
    /// Stops the server and waits until it has finished (and released the store).
    pub async fn stop(&mut self) {
        self.store = None;
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(DEADLINE, server)
                .await
                .expect("the server stops within the deadline")
                .expect("the server task does not panic");
        }
    }

    /// Shuts this server down and starts a new one (new store, same data dir and master key).
    pub async fn restart(mut self) -> TestApp {
        // Close pooled connections first so graceful shutdown has nothing to wait for.
        self.client = reqwest::Client::new();
        self.stop().await;
        let dir = self.dir.take().expect("the data dir");
        start(self.config.clone(), dir).await
    }

    /// The running server's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.store.as_ref().expect("the server is running")
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
        format!("{}{path}", self.base)
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
        self.shutdown.cancel();
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
