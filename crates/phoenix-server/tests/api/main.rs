//! Integration tests of the Admin gateway over real HTTP: each test starts the real server in-process on
//! `127.0.0.1:0` over an embedded store in a temporary data dir (see [`support::spawn_app`]) and talks to
//! it with `reqwest` only. One test binary, so everything is compiled and linked once.

/// The embedded store (the `api_cluster` binary runs the same modules against a cluster).
const BACKEND: support::Backend = support::Backend::Embedded;

mod achievements;
mod auth;
mod browser;
mod console;
mod hardening;
mod ingest;
mod keys;
mod leaderboards;
mod ops;
mod order;
mod query;
mod ratelimits;
mod rewards;
mod scopes;
mod support;
mod tenants;
mod validation;
mod webhooks;
mod windows;
mod ws;
