//! Per-event scoring costs in the core: evaluating a compiled points expression and a filter set against
//! an event, and validating a whole leaderboard config (done once per create, not per event).

use criterion::{Criterion, criterion_group, criterion_main};
use phoenix_core::condition::Filters;
use phoenix_core::config::LeaderboardConfig;
use phoenix_core::expr::Expr;
use serde_json::json;
use std::hint::black_box;

fn event() -> serde_json::Value {
    json!({
        "type": "match.completed",
        "actor": {"user_id": "user-123", "metadata": {"region": "eu", "level": 17}},
        "attrs": {"score": 1250, "kills": 7, "victory": true, "duration": 412.5}
    })
}

fn expressions(c: &mut Criterion) {
    let ev = event();
    let simple = Expr::parse("attrs.score").unwrap();
    let complex =
        Expr::parse("max(0, attrs.score * 2 + attrs.kills * 50 - abs(attrs.duration - 300) / 10)")
            .unwrap();
    c.bench_function("expr_eval_field", |b| {
        b.iter(|| black_box(simple.eval(black_box(&ev))))
    });
    c.bench_function("expr_eval_complex", |b| {
        b.iter(|| black_box(complex.eval(black_box(&ev))))
    });
    c.bench_function("expr_parse_complex", |b| {
        b.iter(|| {
            Expr::parse(black_box(
                "max(0, attrs.score * 2 + attrs.kills * 50 - abs(attrs.duration - 300) / 10)",
            ))
        })
    });
}

fn filters(c: &mut Criterion) {
    let ev = event();
    let f = Filters::parse(
        "config.scope.filters",
        &json!({
            "actor.metadata.region": {"in": ["na", "eu"]},
            "attrs.victory": {"eq": true},
            "attrs.score": {"gte": 100}
        }),
    )
    .unwrap();
    c.bench_function("filters_match_3", |b| {
        b.iter(|| black_box(f.matches(black_box(&ev))))
    });
}

fn config(c: &mut Criterion) {
    let raw = json!({
        "scope": {"filters": {"actor.metadata.region": {"in": ["na", "eu"]}}},
        "timeframe": {"type": "weekly", "timezone": "Europe/Berlin", "reset_day": "monday", "reset_time": "04:00"},
        "scoring": {"rules": [{"event_type": "match.completed", "points_expression": "attrs.score",
                                "conditions": {"attrs.victory": {"eq": true}}}],
                    "aggregation": "sum"},
        "ranking": {"method": "score_desc", "size": 1000, "min_score": 0}
    });
    c.bench_function("config_validate_seed", |b| {
        b.iter(|| LeaderboardConfig::from_json(black_box(&raw)))
    });
}

/// One event applied to a tenant with two active leaderboards (an all-time sum and a daily count in a
/// real zone) and 100k players: filters, rules, window, aggregation and the rank index move.
fn engine_apply(c: &mut Criterion) {
    use phoenix_core::engine::Engine;
    use phoenix_core::event::{Event, EventRules};
    use phoenix_core::ids::LeaderboardId;
    let mut engine = Engine::new();
    for (uid, aggregation, timeframe) in [
        (1, "sum", json!({"type": "all_time"})),
        (
            2,
            "count",
            json!({"type": "daily", "timezone": "Europe/Berlin", "reset_time": "04:00"}),
        ),
    ] {
        let config = LeaderboardConfig::from_json(&json!({
            "scope": {"filters": {"actor.metadata.region": {"in": ["na", "eu"]}}},
            "timeframe": timeframe,
            "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score",
                                   "conditions": {"attrs.victory": {"eq": true}}}],
                        "aggregation": aggregation}
        }))
        .unwrap();
        engine.add_leaderboard(
            "t",
            uid,
            LeaderboardId::parse("lb").unwrap(),
            config,
            true,
            1,
        );
    }
    let now = jiff::Timestamp::now();
    let rules = EventRules {
        now,
        dedupe_horizon: jiff::SignedDuration::from_hours(24),
    };
    let events: Vec<Event> = (0..100_000u64)
        .map(|i| {
            Event::from_json(
                &json!({"event_id": format!("e{i}"), "type": "match.completed",
                        "actor": {"user_id": format!("user-{i:06}"), "metadata": {"region": "eu"}},
                        "occurred_at": now.to_string(), "attrs": {"score": i % 1000, "victory": true}}),
                rules,
            )
            .unwrap()
        })
        .collect();
    let mut seq = 0u64;
    for e in &events {
        seq += 1;
        engine.apply("t", e, seq, now);
    }
    let mut i = 0usize;
    c.bench_function("engine_apply_2_leaderboards_100k_players", |b| {
        b.iter(|| {
            i = (i + 7919) % events.len();
            seq += 1;
            black_box(engine.apply("t", &events[i], seq, now))
        })
    });
}

criterion_group!(benches, expressions, filters, config, engine_apply);
criterion_main!(benches);
