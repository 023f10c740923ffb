//! The per-event cost of achievement evaluation: one event against ten achievements (four counts
//! with conditions, three sums of expressions, three streaks in different zones), through the same
//! calls the ledger makes for each event: which ones it counts for, then each one's progress and the
//! steps it completes. Also the cost when none of the ten matches the event's type.
//!
//! `cargo bench -p phoenix-core --bench achievement`

use criterion::{Criterion, criterion_group, criterion_main};
use phoenix_core::achievement::{Metric, Progress, Step, newly_completed, steps_from_json};
use phoenix_core::event::{Event, EventRules};
use serde_json::json;
use std::hint::black_box;

fn ten(event_type: &str) -> Vec<(Metric, Vec<Step>)> {
    let steps = steps_from_json(&json!([{"threshold": 10}, {"threshold": 100},
        {"threshold": 1000, "rewards": [{"type": "badge", "badge": "b"}]}]))
    .unwrap();
    let metrics = [
        json!({"event_type": event_type, "aggregation": "count"}),
        json!({"event_type": event_type, "aggregation": "count",
               "conditions": {"attrs.victory": {"eq": true}}}),
        json!({"event_type": event_type, "aggregation": "count",
               "conditions": {"attrs.score": {"gte": 50}}}),
        json!({"event_type": event_type, "aggregation": "count",
               "scope": {"filters": {"actor.metadata.region": {"in": ["eu", "us"]}}}}),
        json!({"event_type": event_type, "aggregation": "sum", "points_expression": "attrs.score"}),
        json!({"event_type": event_type, "aggregation": "sum",
               "points_expression": "attrs.kills * 10 + attrs.assists"}),
        json!({"event_type": event_type, "aggregation": "sum",
               "points_expression": "max(attrs.score - 20, 0)"}),
        json!({"event_type": event_type, "aggregation": "streak"}),
        json!({"event_type": event_type, "aggregation": "streak", "timezone": "America/New_York"}),
        json!({"event_type": event_type, "aggregation": "streak", "timezone": "Asia/Tokyo"}),
    ];
    metrics
        .iter()
        .map(|m| (Metric::from_json(m).unwrap(), steps.clone()))
        .collect()
}

fn event() -> Event {
    let now = jiff::Timestamp::now();
    Event::from_json(
        &json!({"event_id": "e-1", "type": "match.completed", "occurred_at": now.to_string(),
                "actor": {"user_id": "user-123", "metadata": {"region": "eu"}},
                "attrs": {"victory": true, "score": 73, "kills": 4, "assists": 2}}),
        EventRules {
            now,
            dedupe_horizon: jiff::SignedDuration::from_hours(168),
        },
    )
    .unwrap()
}

fn evaluate(c: &mut Criterion) {
    let event = event();
    let matching = ten("match.completed");
    let other = ten("shop.purchase");
    // Progress that has run for a while: values past the first step, streaks with some history.
    let mut progress: Vec<Progress> = vec![Progress::default(); 10];
    let completed: Vec<Vec<bool>> = vec![vec![true, false, false]; 10];
    for (i, p) in progress.iter_mut().enumerate() {
        p.value = 50.0 + i as f64;
        if i >= 7 {
            p.runs = (0..20)
                .map(|d| (20_000 + d * 3, 20_000 + d * 3 + 1))
                .collect();
        }
    }
    c.bench_function("one event, 10 achievements that match it", |b| {
        b.iter(|| {
            let mut done = 0;
            for (i, (metric, steps)) in matching.iter().enumerate() {
                if let Some(contribution) = metric.contribution(black_box(&event)) {
                    let mut p = progress[i].clone();
                    let value = p.apply(contribution);
                    done += newly_completed(steps, &completed[i], value).len();
                }
            }
            black_box(done)
        })
    });
    c.bench_function("one event, 10 achievements of another type", |b| {
        b.iter(|| {
            let mut counted = 0;
            for (metric, _) in &other {
                counted += usize::from(metric.contribution(black_box(&event)).is_some());
            }
            black_box(counted)
        })
    });
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
