//! The scoring engine against hand-computed standings: every aggregation, filters and conditions, rule
//! matching, windows and lateness, ranking size and min_score, and replay determinism.

use jiff::{SignedDuration, Timestamp};
use phoenix_core::config::LeaderboardConfig;
use phoenix_core::engine::Engine;
use phoenix_core::event::{Event, EventRules};
use phoenix_core::ids::LeaderboardId;
use phoenix_core::window::WindowId;
use serde_json::{Value, json};

const T: &str = "tenant";

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn event(id: &str, user: &str, ty: &str, occurred_at: &str, attrs: Value) -> Event {
    let body = json!({
        "event_id": id, "type": ty, "actor": {"user_id": user, "metadata": {"region": "eu"}},
        "occurred_at": occurred_at, "attrs": attrs
    });
    Event::from_json(
        &body,
        EventRules {
            now: at(occurred_at) + SignedDuration::from_secs(1),
            dedupe_horizon: SignedDuration::from_hours(24 * 7),
        },
    )
    .unwrap()
}

fn engine_with(config: Value) -> Engine {
    let mut engine = Engine::new();
    engine.add_leaderboard(
        T,
        1,
        LeaderboardId::parse("lb").unwrap(),
        LeaderboardConfig::from_json(&config).unwrap(),
        true,
        1,
    );
    engine
}

fn all_time(aggregation: &str, expr: &str) -> Value {
    json!({
        "timeframe": {"type": "all_time"},
        "scoring": {"rules": [{"event_type": "*", "points_expression": expr}], "aggregation": aggregation}
    })
}

/// (user, score) in rank order.
fn table(engine: &Engine, window: &str) -> Vec<(String, f64)> {
    let (page, total) = engine
        .page(T, 1, &WindowId::parse(window).unwrap(), 1, 100)
        .unwrap();
    assert_eq!(page.len() as u32, total);
    page.into_iter().map(|s| (s.user_id, s.score)).collect()
}

fn rows(rows: &[(&str, f64)]) -> Vec<(String, f64)> {
    rows.iter().map(|(u, s)| (u.to_string(), *s)).collect()
}

const NOW: &str = "2026-03-01T12:00:00Z";

fn apply_all(engine: &mut Engine, events: &[Event]) {
    for (seq, e) in events.iter().enumerate() {
        engine.apply(
            T,
            e,
            seq as u64 + 1,
            e.occurred_at + SignedDuration::from_secs(1),
        );
    }
}

#[test]
fn each_aggregation() {
    let evs = |_: ()| {
        vec![
            event("1", "a", "match.won", NOW, json!({"s": 10})),
            event("2", "b", "match.won", NOW, json!({"s": 4})),
            event(
                "3",
                "a",
                "match.won",
                "2026-03-01T11:00:00Z",
                json!({"s": 3}),
            ),
            event("4", "b", "match.lost", NOW, json!({"s": 7})),
        ]
    };
    let cases = [
        ("sum", vec![("a", 13.0), ("b", 11.0)]),
        ("max", vec![("a", 10.0), ("b", 7.0)]),
        ("min", vec![("b", 4.0), ("a", 3.0)]),
        ("count", vec![("a", 2.0), ("b", 2.0)]),
        // a's latest by occurred_at is event 1 (event 3 happened earlier though it arrived later);
        // b's two events share occurred_at, so the later arrival (7) wins.
        ("latest", vec![("a", 10.0), ("b", 7.0)]),
    ];
    for (aggregation, expected) in cases {
        let mut engine = engine_with(all_time(aggregation, "attrs.s"));
        apply_all(&mut engine, &evs(()));
        assert_eq!(table(&engine, "all"), rows(&expected), "{aggregation}");
    }
}

#[test]
fn ties_go_to_whoever_reached_the_score_first() {
    let mut engine = engine_with(all_time("sum", "attrs.s"));
    apply_all(
        &mut engine,
        &[
            event("1", "zed", "match", NOW, json!({"s": 5})),
            event("2", "amy", "match", NOW, json!({"s": 5})),
            event("3", "bob", "match", NOW, json!({"s": 2})),
            event("4", "bob", "match", NOW, json!({"s": 3})),
        ],
    );
    assert_eq!(
        table(&engine, "all"),
        rows(&[("zed", 5.0), ("amy", 5.0), ("bob", 5.0)])
    );
}

#[test]
fn filters_conditions_and_rule_matching() {
    let config = json!({
        "scope": {"filters": {"actor.metadata.region": {"in": ["eu", "na"]}}},
        "timeframe": {"type": "all_time"},
        "scoring": {"rules": [
            {"event_type": "match.completed", "points_expression": "attrs.score",
             "conditions": {"attrs.victory": {"eq": true}}},
            {"event_type": "match.*", "points_expression": "attrs.kills * 2"},
            {"event_type": "quest.done", "points_expression": "100"}
        ]}
    });
    let mut engine = engine_with(config);
    // Same type and rule as d's quest, but from a region the filters leave out.
    let outsider = Event::from_json(
        &json!({"event_id": "5", "type": "quest.done",
                "actor": {"user_id": "out", "metadata": {"region": "apac"}},
                "occurred_at": NOW, "attrs": {}}),
        EventRules {
            now: at(NOW) + SignedDuration::from_secs(1),
            dedupe_horizon: SignedDuration::from_hours(1),
        },
    )
    .unwrap();
    apply_all(
        &mut engine,
        &[
            // Both match rules contribute: 50 + 2*3.
            event(
                "1",
                "a",
                "match.completed",
                NOW,
                json!({"score": 50, "victory": true, "kills": 3}),
            ),
            // The condition fails: only the kills rule.
            event(
                "2",
                "b",
                "match.completed",
                NOW,
                json!({"score": 50, "victory": false, "kills": 1}),
            ),
            // A missing field contributes nothing, the other rule still does.
            event("3", "c", "match.abandoned", NOW, json!({"kills": "many"})),
            event("4", "d", "quest.done", NOW, json!({})),
            outsider,
            // No rule matches this type.
            event("6", "e", "other", NOW, json!({})),
        ],
    );
    assert_eq!(
        table(&engine, "all"),
        rows(&[("d", 100.0), ("a", 56.0), ("b", 2.0)])
    );
}

#[test]
fn division_by_zero_contributes_nothing() {
    let mut engine = engine_with(all_time("sum", "attrs.s / attrs.d"));
    apply_all(
        &mut engine,
        &[
            event("1", "a", "match", NOW, json!({"s": 10, "d": 0})),
            event("2", "a", "match", NOW, json!({"s": 10, "d": 4})),
        ],
    );
    assert_eq!(table(&engine, "all"), rows(&[("a", 2.5)]));
}

#[test]
fn ranking_size_and_min_score() {
    let mut config = all_time("sum", "attrs.s");
    config["ranking"] = json!({"size": 2, "min_score": 5});
    let mut engine = engine_with(config);
    apply_all(
        &mut engine,
        &[
            event("1", "a", "m", NOW, json!({"s": 9})),
            event("2", "b", "m", NOW, json!({"s": 8})),
            event("3", "c", "m", NOW, json!({"s": 7})),
            event("4", "d", "m", NOW, json!({"s": 1})),
        ],
    );
    assert_eq!(table(&engine, "all"), rows(&[("a", 9.0), ("b", 8.0)]));
    let all = WindowId::parse("all").unwrap();
    assert!(engine.standing_of(T, 1, &all, "c").is_none(), "beyond size");
    // c climbs into the top 2; b's score is kept, only unranked.
    engine.apply(T, &event("5", "c", "m", NOW, json!({"s": 3})), 10, at(NOW));
    assert_eq!(table(&engine, "all"), rows(&[("c", 10.0), ("a", 9.0)]));
    engine.apply(T, &event("6", "d", "m", NOW, json!({"s": 20})), 11, at(NOW));
    assert_eq!(table(&engine, "all"), rows(&[("d", 21.0), ("c", 10.0)]));

    let mut asc = all_time("min", "attrs.s");
    asc["ranking"] = json!({"method": "score_asc", "min_score": 60});
    let mut engine = engine_with(asc);
    apply_all(
        &mut engine,
        &[
            event("1", "slow", "m", NOW, json!({"s": 90})),
            event("2", "fast", "m", NOW, json!({"s": 42})),
            event("3", "mid", "m", NOW, json!({"s": 55})),
        ],
    );
    assert_eq!(
        table(&engine, "all"),
        rows(&[("fast", 42.0), ("mid", 55.0)])
    );
}

#[test]
fn daily_windows_in_a_zone_and_late_events() {
    let config = json!({
        "timeframe": {"type": "daily", "timezone": "Europe/Berlin", "reset_time": "04:00"},
        "scoring": {"rules": [{"event_type": "m", "points_expression": "attrs.s"}]}
    });
    let mut engine = engine_with(config);
    // 2026-03-01 02:59Z is 03:59 in Berlin: still the window of 2026-02-28.
    let e1 = event("1", "a", "m", "2026-03-01T02:59:59Z", json!({"s": 1}));
    let e2 = event("2", "a", "m", "2026-03-01T03:00:00Z", json!({"s": 2}));
    let o1 = engine.apply(T, &e1, 1, at("2026-03-01T03:00:10Z"));
    let o2 = engine.apply(T, &e2, 2, at("2026-03-01T03:00:10Z"));
    // e1 arrived after its window closed: stored by the caller, not scored here.
    assert_eq!((o1.scored, o1.late), (0, 1));
    assert_eq!((o2.scored, o2.late), (1, 0));
    assert_eq!(table(&engine, "2026-03-01"), rows(&[("a", 2.0)]));
    let (page, total) = engine
        .page(T, 1, &WindowId::parse("2026-02-28").unwrap(), 1, 10)
        .unwrap();
    assert!(page.is_empty() && total == 0);
    // Accepted before the window closed, it counts in the earlier window.
    let e3 = event("3", "b", "m", "2026-03-01T02:30:00Z", json!({"s": 5}));
    let o3 = engine.apply(T, &e3, 3, at("2026-03-01T02:59:00Z"));
    assert_eq!(o3.scored, 1);
    assert_eq!(table(&engine, "2026-02-28"), rows(&[("b", 5.0)]));
}

#[test]
fn inactive_and_retired_leaderboards_score_nothing_but_stay_readable() {
    let mut engine = engine_with(all_time("sum", "attrs.s"));
    engine.apply(T, &event("1", "a", "m", NOW, json!({"s": 1})), 1, at(NOW));
    engine.set_active(T, 1, false);
    engine.apply(T, &event("2", "a", "m", NOW, json!({"s": 1})), 2, at(NOW));
    assert_eq!(table(&engine, "all"), rows(&[("a", 1.0)]));
    engine.set_active(T, 1, true);
    engine.apply(T, &event("3", "a", "m", NOW, json!({"s": 1})), 3, at(NOW));
    assert_eq!(table(&engine, "all"), rows(&[("a", 2.0)]));
    engine.retire_leaderboard(T, 1);
    engine.apply(T, &event("4", "a", "m", NOW, json!({"s": 1})), 4, at(NOW));
    assert_eq!(table(&engine, "all"), rows(&[("a", 2.0)]));
    // Other tenants never see it.
    assert!(
        engine
            .page("other", 1, &WindowId::parse("all").unwrap(), 1, 10)
            .is_none()
    );
}

#[test]
fn replaying_the_same_events_gives_the_same_standings() {
    let config = all_time("latest", "attrs.s");
    let events: Vec<Event> = (0..500)
        .map(|i| {
            let minute = (i * 7919) % 600;
            let occurred = at(NOW) - SignedDuration::from_mins(minute);
            event(
                &format!("e{i}"),
                &format!("u{}", i % 37),
                "m",
                &occurred.to_string(),
                json!({"s": (i * 31) % 101}),
            )
        })
        .collect();
    let mut first = engine_with(config.clone());
    let mut second = engine_with(config);
    apply_all(&mut first, &events);
    apply_all(&mut second, &events);
    assert_eq!(table(&first, "all"), table(&second, "all"));
    assert_eq!(table(&first, "all").len(), 37);
}

#[test]
fn a_restored_snapshot_answers_and_scores_like_the_original() {
    let config = json!({
        "timeframe": {"type": "daily", "timezone": "America/New_York"},
        "scoring": {"rules": [{"event_type": "*", "points_expression": "attrs.s"}], "aggregation": "latest"}
    });
    let mut original = engine_with(config.clone());
    original.add_leaderboard(
        T,
        2,
        LeaderboardId::parse("gone").unwrap(),
        LeaderboardConfig::from_json(&all_time("sum", "attrs.s")).unwrap(),
        true,
        2,
    );
    let events: Vec<Event> = (0..300)
        .map(|i| {
            let occurred = at(NOW) - SignedDuration::from_mins((i * 37) % 2000);
            event(
                &format!("e{i}"),
                &format!("u{}", i % 23),
                "m",
                &occurred.to_string(),
                json!({"s": (i * 13) % 50}),
            )
        })
        .collect();
    apply_all(&mut original, &events[..200]);
    original.retire_leaderboard(T, 2);
    let snapshot = original.snapshot();
    let mut restored = Engine::restore(snapshot.clone()).unwrap();
    assert_eq!(restored.snapshot(), snapshot);
    // Later events land identically in both.
    for (seq, e) in events[200..].iter().enumerate() {
        let seq = 1000 + seq as u64;
        let accepted = e.occurred_at + SignedDuration::from_secs(1);
        assert_eq!(
            original.apply(T, e, seq, accepted),
            restored.apply(T, e, seq, accepted)
        );
    }
    assert_eq!(restored.snapshot(), original.snapshot());
    let lb = original.leaderboard_state(T, 1).unwrap();
    for w in lb.all_windows() {
        let id = w.id.as_str();
        assert_eq!(table(&original, id), table(&restored, id), "window {id}");
    }
    let gone = WindowId::parse("all").unwrap();
    assert_eq!(
        original.page(T, 2, &gone, 1, 50),
        restored.page(T, 2, &gone, 1, 50)
    );
}

/// A snapshot from before window ids carried incarnations restores its boards with incarnation 0;
/// `fill_incarnations` gives them theirs and renames their windows as a full replay would have.
#[test]
fn boards_restored_without_an_incarnation_get_theirs_and_their_windows_renamed() {
    let mut engine = engine_with(all_time("sum", "attrs.s"));
    apply_all(&mut engine, &[event("a", "ann", "m", NOW, json!({"s": 5}))]);
    let mut snapshot = engine.snapshot();
    for t in &mut snapshot.tenants {
        for lb in &mut t.leaderboards {
            lb.incarnation = 0;
        }
    }
    let mut restored = Engine::restore(snapshot).unwrap();
    restored.fill_incarnations(|tenant, uid, id| {
        assert_eq!((tenant, uid, id.as_str()), (T, 1, "lb"));
        2
    });
    let lb = restored.leaderboard_state(T, 1).unwrap();
    assert_eq!(lb.incarnation, 2);
    let ids: Vec<&str> = lb.all_windows().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["all~2"]);
    assert_eq!(table(&restored, "all~2"), rows(&[("ann", 5.0)]));
    assert_eq!(
        lb.current_window(at(NOW)).0.id.as_str(),
        "all~2",
        "new events land in the renamed window"
    );
}
