//! The API suite of `tests/api` (the same modules, compiled again: one parametrised harness, not a
//! copy) against a two-node cluster on the real PostgreSQL and Redis (`PHOENIX_TEST_DATABASE_URL`,
//! `PHOENIX_TEST_REDIS_URL`; `.ci/run` points them at the machine's). Requests alternate between the
//! nodes (see `support::Backend::Cluster`).

const BACKEND: support::Backend = support::Backend::Cluster;

#[path = "../api/achievements.rs"]
mod achievements;
#[path = "../api/auth.rs"]
mod auth;
#[path = "../api/browser.rs"]
mod browser;
#[path = "../api/console.rs"]
mod console;
#[path = "../api/hardening.rs"]
mod hardening;
#[path = "../api/ingest.rs"]
mod ingest;
#[path = "../api/keys.rs"]
mod keys;
#[path = "../api/leaderboards.rs"]
mod leaderboards;
#[path = "../api/ops.rs"]
mod ops;
#[path = "../api/order.rs"]
mod order;
#[path = "../api/query.rs"]
mod query;
#[path = "../api/ratelimits.rs"]
mod ratelimits;
#[path = "../api/rewards.rs"]
mod rewards;
#[path = "../api/scopes.rs"]
mod scopes;
#[path = "../api/support.rs"]
mod support;
#[path = "../api/tenants.rs"]
mod tenants;
#[path = "../api/validation.rs"]
mod validation;
#[path = "../api/webhooks.rs"]
mod webhooks;
#[path = "../api/windows.rs"]
mod windows;
#[path = "../api/ws.rs"]
mod ws;

/// What only a cluster promises.
mod cluster;
