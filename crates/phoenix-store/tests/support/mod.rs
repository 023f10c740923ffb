//! What the PostgreSQL-backed tests share.

pub use phoenix_store::conformance::test_database as fresh_schema;
