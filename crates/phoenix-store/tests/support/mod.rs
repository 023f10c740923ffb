//! What the PostgreSQL-backed tests share.
#![allow(dead_code)]

/// A URL whose connections work in a new, empty schema; `None` when there is no PostgreSQL here
/// (outside CI).
pub async fn fresh_schema(app: &str) -> Option<String> {
    let base = std::env::var("PHOENIX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = match sqlx::PgPool::connect(&base).await {
        Ok(pool) => pool,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL at {base} is required under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no PostgreSQL at {base} ({e}); CI runs these tests");
            return None;
        }
    };
    // Named by the time it was made, so schemas that earlier runs left behind (a failed test keeps
    // its own for a look) are dropped an hour later.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'phx\\_test\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for name in old {
        let made = name.split('_').nth(2).and_then(|t| t.parse::<u64>().ok());
        if made.is_some_and(|t| t + 3600 < now) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE"
            )))
            .execute(&pool)
            .await;
        }
    }
    let schema = format!("phx_test_{now}_{}", phoenix_store::seal::random_hex::<6>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{sep}options[search_path]={schema}&application_name={app}"
    ))
}
