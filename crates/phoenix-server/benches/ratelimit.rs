//! What a rate-limit check costs when limits are on but not reached (SPEC §8): one read (tenant
//! bucket and player bucket, 20 000 distinct players), one single event, and the check with limits off,
//! the peer it is compared with. An HTTP request costs tens of microseconds on this machine
//! (docs/benchmarks.md), so these figures say what share of a request the limiter takes.
//!
//! `cargo bench -p phoenix-server --bench ratelimit`

use criterion::{Criterion, criterion_group, criterion_main};
use phoenix_core::ids::TenantId;
use phoenix_server::auth::{TenantAuth, TenantVia, TokenScopes};
use phoenix_server::ratelimit::{DefaultRateLimits, RateLimiter};
use phoenix_store::model::RateLimits;
use std::hint::black_box;

const PLAYERS: usize = 20_000;

fn players() -> Vec<TenantAuth> {
    let tenant = TenantId::parse("bench-tenant").expect("a tenant id");
    (0..PLAYERS)
        .map(|i| TenantAuth {
            tenant_id: tenant.clone(),
            user_id: Some(format!("u{i}")),
            via: TenantVia::TenantJwt,
            expires_at: None,
            scopes: TokenScopes::ALL,
            rate_limits: RateLimits::default(),
            game_server: false,
        })
        .collect()
}

fn limits(on: bool) -> DefaultRateLimits {
    let rate = if on { 10_000_000 } else { 0 };
    DefaultRateLimits {
        events_per_second: rate,
        reads_per_second: rate,
        player_requests_per_second: rate,
    }
}

fn bench(c: &mut Criterion) {
    let players = players();
    for (name, on) in [("off", false), ("on, not reached", true)] {
        let limiter = RateLimiter::new(limits(on));
        let mut i = 0usize;
        c.bench_function(&format!("ratelimit/read, limits {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % PLAYERS;
                black_box(limiter.check_read(black_box(&players[i])).is_ok())
            })
        });
        c.bench_function(&format!("ratelimit/one event, limits {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % PLAYERS;
                black_box(limiter.check_events(black_box(&players[i]), 1).is_ok())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
