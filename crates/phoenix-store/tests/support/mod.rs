//! What the PostgreSQL-backed tests share.

pub use phoenix_store::conformance::test_database as fresh_schema;

/// A pool on the schema `url` with the cluster's tables made.
#[allow(dead_code)]
pub async fn migrated_pool(url: &str) -> sqlx::PgPool {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap();
    phoenix_store::pglog::migrate(&pool).await.unwrap();
    pool
}

/// The machine's Redis (`PHOENIX_TEST_REDIS_URL`).
#[allow(dead_code)]
pub fn redis_url() -> String {
    std::env::var("PHOENIX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
