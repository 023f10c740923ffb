//! Property tests for the parts of the core that take arbitrary client input: the expression parser
//! against its grammar and a reference evaluator, and the config model's normalize/re-parse round trip.

use phoenix_core::config::LeaderboardConfig;
use phoenix_core::expr::Expr;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A well-formed expression tree, rendered to source and evaluated independently of the parser.
#[derive(Debug, Clone)]
enum Node {
    Literal(String),
    Field(&'static str),
    Neg(Box<Node>),
    Binary(char, Box<Node>, Box<Node>),
    Call(&'static str, Vec<Node>),
}

/// The event every generated expression is evaluated against. `attrs.missing` is absent and
/// `attrs.text` is not a number, so expressions reading them evaluate to nothing.
fn event() -> Value {
    json!({
        "type": "t",
        "actor": {"user_id": "u", "metadata": {"level": 10, "nested": {"x": 0.5}}},
        "attrs": {"a": 2.5, "b": -4, "zero": 0, "text": "7"}
    })
}

const FIELDS: [&str; 7] = [
    "attrs.a",
    "attrs.b",
    "attrs.zero",
    "attrs.text",
    "attrs.missing",
    "actor.metadata.level",
    "actor.metadata.nested.x",
];

fn field_value(path: &str) -> Option<f64> {
    let event = event();
    let pointer = format!("/{}", path.replace('.', "/"));
    event.pointer(&pointer)?.as_f64()
}

fn precedence(node: &Node) -> u8 {
    match node {
        Node::Binary('+' | '-', ..) => 1,
        Node::Binary(..) => 2,
        Node::Neg(_) => 3,
        Node::Literal(_) | Node::Field(_) | Node::Call(..) => 4,
    }
}

/// Renders with the fewest parentheses the grammar needs, so precedence and associativity are exercised.
fn render(node: &Node) -> String {
    let wrap = |child: &Node, needs: bool| {
        if needs {
            format!("({})", render(child))
        } else {
            render(child)
        }
    };
    match node {
        Node::Literal(text) => text.clone(),
        Node::Field(path) => (*path).to_owned(),
        Node::Neg(inner) => format!("-{}", wrap(inner, precedence(inner) < 3)),
        Node::Binary(op, lhs, rhs) => {
            let own = precedence(node);
            format!(
                "{} {op} {}",
                wrap(lhs, precedence(lhs) < own),
                wrap(rhs, precedence(rhs) <= own)
            )
        }
        Node::Call(name, args) => {
            let args: Vec<String> = args.iter().map(render).collect();
            format!("{name}({})", args.join(", "))
        }
    }
}

/// What the expression must evaluate to: `None` for missing or non-numeric fields, division by zero
/// and non-finite intermediate results.
fn reference(node: &Node) -> Option<f64> {
    let finite = |v: f64| v.is_finite().then_some(v);
    match node {
        Node::Literal(text) => text.parse().ok(),
        Node::Field(path) => field_value(path),
        Node::Neg(inner) => Some(-reference(inner)?),
        Node::Binary(op, lhs, rhs) => {
            let (a, b) = (reference(lhs)?, reference(rhs)?);
            match op {
                '+' => finite(a + b),
                '-' => finite(a - b),
                '*' => finite(a * b),
                _ if b == 0.0 => None,
                _ => finite(a / b),
            }
        }
        Node::Call("abs", args) => Some(reference(args.first()?)?.abs()),
        Node::Call(name, args) => {
            let values = args.iter().map(reference).collect::<Option<Vec<_>>>()?;
            let pick = if *name == "min" { f64::min } else { f64::max };
            values.into_iter().reduce(pick)
        }
    }
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..1000).prop_map(|n| n.to_string()),
        (0u32..1000, 0u32..1000).prop_map(|(whole, frac)| format!("{whole}.{frac}")),
        Just("0".to_owned()),
    ]
}

fn tree() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        3 => literal().prop_map(Node::Literal),
        1 => proptest::sample::select(&FIELDS[..]).prop_map(Node::Field),
    ];
    leaf.prop_recursive(5, 64, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|n| Node::Neg(Box::new(n))),
            (
                proptest::sample::select(vec!['+', '-', '*', '/']),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, l, r)| Node::Binary(op, Box::new(l), Box::new(r))),
            inner.clone().prop_map(|n| Node::Call("abs", vec![n])),
            (
                proptest::sample::select(vec!["min", "max"]),
                proptest::collection::vec(inner, 1..4)
            )
                .prop_map(|(name, args)| Node::Call(name, args)),
        ]
    })
}

fn timeframe() -> impl Strategy<Value = Value> {
    let zone = proptest::option::of(proptest::sample::select(vec![
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
    ]));
    let reset_time =
        proptest::option::of((0u8..24, 0u8..60).prop_map(|(h, m)| format!("{h:02}:{m:02}")));
    let day = proptest::sample::select(vec![
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]);
    let kind = prop_oneof![
        Just(json!({"type": "all_time"})),
        reset_time.clone().prop_map(|t| with_opt(
            json!({"type": "daily"}),
            "reset_time",
            t.map(Value::from)
        )),
        (day, reset_time.clone()).prop_map(|(d, t)| with_opt(
            json!({"type": "weekly", "reset_day": d}),
            "reset_time",
            t.map(Value::from)
        )),
        (proptest::option::of(1u8..=28), reset_time).prop_map(|(d, t)| {
            let v = with_opt(json!({"type": "monthly"}), "reset_time", t.map(Value::from));
            with_opt(v, "reset_day_of_month", d.map(Value::from))
        }),
        (0i64..4_000_000_000, 1i64..100_000_000).prop_map(|(start, length)| {
            let at = |secs: i64| {
                jiff::Timestamp::from_second(secs)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            };
            json!({"type": "custom", "starts_at": at(start), "ends_at": at(start + length)})
        }),
    ];
    (kind, zone).prop_map(|(v, zone)| with_opt(v, "timezone", zone.map(Value::from)))
}

fn with_opt(mut object: Value, key: &str, value: Option<Value>) -> Value {
    if let (Some(members), Some(value)) = (object.as_object_mut(), value) {
        members.insert(key.to_owned(), value);
    }
    object
}

fn filters() -> impl Strategy<Value = Value> {
    let path = proptest::sample::select(vec![
        "type",
        "actor.user_id",
        "actor.metadata.region",
        "attrs.victory",
        "attrs.stats.kill-count",
    ]);
    let condition = proptest::sample::select(vec![
        json!({"eq": true}),
        json!({"ne": "bot"}),
        json!({"in": ["na", "eu", 1, 2.5, null]}),
        json!({"nin": [false]}),
        json!({"gt": 1, "lte": 99.5}),
        json!({"gte": -3, "lt": 0}),
        json!({"exists": false}),
    ]);
    proptest::collection::btree_map(path, condition, 0..4).prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

fn rule() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,8}(\\.[a-z_]{1,8})?\\*?",
        tree().prop_map(|n| render(&n)),
        proptest::option::of(filters()),
    )
        .prop_filter("expression within the length limit", |(_, e, _)| {
            e.len() <= 1024
        })
        .prop_map(|(event_type, expr, conditions)| {
            with_opt(
                json!({"event_type": event_type, "points_expression": expr}),
                "conditions",
                conditions,
            )
        })
}

fn config() -> impl Strategy<Value = Value> {
    let aggregation = proptest::option::of(proptest::sample::select(vec![
        "sum", "max", "min", "count", "latest",
    ]));
    let min_score = proptest::option::of(prop_oneof![
        (-1000i64..1000).prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
    ]);
    let ranking = proptest::option::of(
        (
            proptest::option::of(proptest::sample::select(vec!["score_desc", "score_asc"])),
            proptest::option::of(1u32..=100_000),
            min_score,
        )
            .prop_map(|(method, size, min)| {
                let v = with_opt(json!({}), "method", method.map(Value::from));
                let v = with_opt(v, "size", size.map(Value::from));
                with_opt(v, "min_score", min)
            }),
    );
    (
        proptest::option::of(filters()),
        timeframe(),
        proptest::collection::vec(rule(), 1..4),
        aggregation,
        ranking,
    )
        .prop_map(|(scope, timeframe, rules, aggregation, ranking)| {
            let scoring = with_opt(
                json!({"rules": rules}),
                "aggregation",
                aggregation.map(Value::from),
            );
            let v = json!({"timeframe": timeframe, "scoring": scoring});
            let v = with_opt(v, "scope", scope.map(|f| json!({"filters": f})));
            with_opt(v, "ranking", ranking)
        })
}

proptest! {
    #[test]
    fn parsing_arbitrary_text_never_panics(src in any::<String>()) {
        let _ = Expr::parse(&src);
    }

    #[test]
    fn parsing_expression_shaped_text_never_panics(src in "[0-9a-z_.()+*/, -]{0,300}") {
        if let Ok(expr) = Expr::parse(&src) {
            let _ = expr.eval(&event());
        }
    }

    #[test]
    fn errors_point_inside_the_source(src in "[0-9a-z_.()+*/, $-]{0,80}") {
        if let Err(err) = Expr::parse(&src) {
            prop_assert!(err.position <= src.chars().count(), "{err} for {src:?}");
        }
    }

    #[test]
    fn well_formed_expressions_evaluate_like_the_reference(node in tree()) {
        let src = render(&node);
        prop_assume!(src.chars().count() <= 1024);
        let expr = Expr::parse(&src).map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
        prop_assert_eq!(expr.eval(&event()), reference(&node), "{}", src);
        prop_assert_eq!(expr.source(), src.as_str());
    }

    #[test]
    fn configs_round_trip_through_their_normalized_form(raw in config()) {
        let parsed = LeaderboardConfig::from_json(&raw)
            .map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        let normalized = parsed.to_json();
        let reparsed = LeaderboardConfig::from_json(&normalized)
            .map_err(|e| TestCaseError::fail(format!("{normalized}: {e}")))?;
        prop_assert_eq!(&reparsed, &parsed);
        prop_assert_eq!(reparsed.to_json(), normalized);
    }
}

/// A tier as a test generates it: a rank range or a percentage in hundredths.
#[derive(Debug, Clone)]
enum TierSpec {
    Range(u32, u32),
    Percent(u32),
}

fn tier_spec() -> impl Strategy<Value = TierSpec> {
    prop_oneof![
        (1u32..40, 0u32..20).prop_map(|(from, len)| TierSpec::Range(from, from + len)),
        (1u32..=10_000).prop_map(TierSpec::Percent),
    ]
}

fn tier_json(spec: &TierSpec, index: usize) -> Value {
    let rewards = json!([{"type": "badge", "badge": format!("b{index}")},
                         {"type": "item", "item": "chest", "quantity": index + 1}]);
    match spec {
        TierSpec::Range(from, to) => json!({"rank_from": from, "rank_to": to, "rewards": rewards}),
        // Written as the client would: a decimal with at most two places.
        TierSpec::Percent(h) => {
            let text = format!("{}.{:02}", h / 100, h % 100);
            let number: serde_json::Number = serde_json::from_str(&text).unwrap();
            json!({"top_percent": number, "rewards": rewards})
        }
    }
}

proptest! {
    /// Settlement against a naive model: sort the players by final rank, cut the list into tiers
    /// (a percentage tier holds the smallest number of ranks k with k / ranked >= p%, found by
    /// counting up in integers), and give each player the rewards of the first tier holding them.
    #[test]
    fn settlement_matches_a_naive_model(
        specs in prop::collection::vec(tier_spec(), 1..6),
        ranked in 0u32..120,
        ties in prop::collection::vec(any::<bool>(), 120),
        min_participants in 0u32..10,
    ) {
        use phoenix_core::reward::{plan_settlement, tiers_from_json};
        let tiers_value = Value::Array(specs.iter().enumerate().map(|(i, s)| tier_json(s, i)).collect());
        let tiers = tiers_from_json(&tiers_value).expect("generated tiers are valid");
        // Competition ranking with ties: a tied player shares the rank of the one above.
        let mut standings: Vec<(u32, String)> = Vec::new();
        for i in 0..ranked {
            let rank = if i > 0 && ties[i as usize] { standings[i as usize - 1].0 } else { i + 1 };
            standings.push((rank, format!("p{i}")));
        }
        let planned = plan_settlement(
            "t", "rule", "w", &tiers, min_participants, ranked,
            standings.iter().map(|(r, u)| (*r, u.as_str())),
        );
        let mut naive: Vec<(String, u32, usize)> = Vec::new();
        if ranked >= min_participants {
            for (rank, user) in &standings {
                let holds = |spec: &TierSpec| match spec {
                    TierSpec::Range(from, to) => from <= rank && rank <= to,
                    TierSpec::Percent(h) => {
                        let mut k = 0u64;
                        while k * 10_000 < u64::from(*h) * u64::from(ranked) {
                            k += 1;
                        }
                        u64::from(*rank) <= k
                    }
                };
                if let Some(t) = specs.iter().position(holds) {
                    for reward in 0..2 {
                        naive.push((user.clone(), *rank, t * 10 + reward));
                    }
                }
            }
        }
        let got: Vec<(String, u32, usize)> = planned
            .iter()
            .map(|g| {
                let reward = g.reward.to_json();
                let t = match reward["badge"].as_str() {
                    Some(badge) => badge[1..].parse::<usize>().unwrap(),
                    None => (reward["quantity"].as_u64().unwrap() - 1) as usize,
                };
                (g.user_id.clone(), g.rank, t * 10 + g.reward_index)
            })
            .collect();
        prop_assert_eq!(got, naive);
        // Ids: one per (player, reward index), all distinct.
        let ids: std::collections::HashSet<&str> = planned.iter().map(|g| g.grant_id.as_str()).collect();
        prop_assert_eq!(ids.len(), planned.len());
    }
}

proptest! {
    /// A streak's value against a naive model: the longest run of consecutive days in the set of days
    /// seen so far, after every event, whatever the order the days arrive in (older events fill gaps).
    #[test]
    fn a_streak_is_the_longest_run_of_days_seen(days in prop::collection::vec(0i32..60, 1..120)) {
        use phoenix_core::achievement::{Contribution, Progress};
        let mut progress = Progress::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut best = 0;
        for day in days {
            seen.insert(day);
            let mut run = 0;
            let mut previous: Option<i32> = None;
            for d in &seen {
                run = if previous == Some(d - 1) { run + 1 } else { 1 };
                best = best.max(run);
                previous = Some(*d);
            }
            prop_assert_eq!(progress.apply(Contribution::Day(day)), f64::from(best));
            // The runs are sorted, disjoint and not adjacent.
            for pair in progress.runs.windows(2) {
                prop_assert!(pair[0].1 + 1 < pair[1].0, "{:?}", progress.runs);
            }
        }
    }
}
