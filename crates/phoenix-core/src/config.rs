//! The leaderboard configuration model (SPEC §4.1): typed scope, timeframe, scoring and ranking, parsed
//! from the request's `config` member with a message naming the offending field, and written back in a
//! normalized form with every default filled in (what the API returns and what is stored).

use crate::ValidationError;
use crate::condition::Filters;
use crate::expr::Expr;
use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};
use std::fmt;

/// Most scoring rules one leaderboard may have.
pub const MAX_RULES: usize = 100;
/// Longest `event_type` pattern, in characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 128;
/// Bounds of `ranking.size`.
pub const MIN_RANKING_SIZE: u32 = 1;
pub const MAX_RANKING_SIZE: u32 = 100_000;
pub const DEFAULT_RANKING_SIZE: u32 = 1000;
/// The contract's fixed message for a weekly timeframe without `reset_day`.
pub const WEEKLY_NEEDS_RESET_DAY: &str = "reset_day is required when type is 'weekly'";

/// A validated leaderboard configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderboardConfig {
    pub scope: Scope,
    pub timeframe: Timeframe,
    pub scoring: Scoring,
    pub ranking: Ranking,
}

/// Which events a leaderboard considers at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub filters: Filters,
}

/// An IANA time zone, kept with the name it was configured by so it serializes back unchanged.
#[derive(Debug, Clone)]
pub struct IanaTimeZone {
    name: String,
    zone: TimeZone,
}

impl IanaTimeZone {
    /// Looks `name` up in the time zone database. The error text does not name the config field.
    pub fn parse(name: &str) -> Result<IanaTimeZone, String> {
        let unknown = || format!("unknown IANA time zone '{name}'");
        // Only names shaped like IANA identifiers reach the database lookup, which may read files.
        let plausible = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '/'))
            && !name.starts_with('/');
        if !plausible {
            return Err(unknown());
        }
        let zone = TimeZone::get(name).map_err(|_| unknown())?;
        let name = zone.iana_name().unwrap_or(name).to_owned();
        Ok(IanaTimeZone { name, zone })
    }

    pub fn utc() -> IanaTimeZone {
        IanaTimeZone {
            name: "UTC".to_owned(),
            zone: TimeZone::UTC,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.zone
    }
}

impl PartialEq for IanaTimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// When scores reset. Every variant carries the zone whose wall clock the windows follow.
#[derive(Debug, Clone, PartialEq)]
pub enum Timeframe {
    AllTime {
        zone: IanaTimeZone,
    },
    Daily {
        zone: IanaTimeZone,
        reset_time: Time,
    },
    Weekly {
        zone: IanaTimeZone,
        reset_day: Weekday,
        reset_time: Time,
    },
    Monthly {
        zone: IanaTimeZone,
        /// 1 to 28, so every month has the day.
        reset_day_of_month: u8,
        reset_time: Time,
    },
    Custom {
        zone: IanaTimeZone,
        starts_at: Timestamp,
        /// Strictly after `starts_at`.
        ends_at: Timestamp,
    },
}

impl Timeframe {
    pub fn zone(&self) -> &IanaTimeZone {
        match self {
            Timeframe::AllTime { zone }
            | Timeframe::Daily { zone, .. }
            | Timeframe::Weekly { zone, .. }
            | Timeframe::Monthly { zone, .. }
            | Timeframe::Custom { zone, .. } => zone,
        }
    }

    /// The `type` member: `all_time`, `daily`, `weekly`, `monthly` or `custom`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Timeframe::AllTime { .. } => "all_time",
            Timeframe::Daily { .. } => "daily",
            Timeframe::Weekly { .. } => "weekly",
            Timeframe::Monthly { .. } => "monthly",
            Timeframe::Custom { .. } => "custom",
        }
    }
}

/// Which event types a rule applies to: an exact type, or a prefix written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTypeMatcher {
    Exact(String),
    Prefix(String),
}

impl EventTypeMatcher {
    /// Parses `match.completed` or `match.*`. The error text does not name the config field.
    pub fn parse(raw: &str) -> Result<EventTypeMatcher, String> {
        if raw.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if raw.chars().count() > MAX_EVENT_TYPE_CHARS {
            return Err(format!("must be at most {MAX_EVENT_TYPE_CHARS} characters"));
        }
        let (body, matcher): (&str, fn(String) -> EventTypeMatcher) = match raw.strip_suffix('*') {
            Some(prefix) => (prefix, EventTypeMatcher::Prefix),
            None => (raw, EventTypeMatcher::Exact),
        };
        if body.contains('*') {
            return Err("'*' is only allowed once, as the last character".to_owned());
        }
        Ok(matcher(body.to_owned()))
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            EventTypeMatcher::Exact(exact) => event_type == exact,
            EventTypeMatcher::Prefix(prefix) => event_type.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for EventTypeMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventTypeMatcher::Exact(exact) => f.write_str(exact),
            EventTypeMatcher::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// One scoring rule: every rule whose type and conditions match an event contributes its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub event_type: EventTypeMatcher,
    pub points: Expr,
    pub conditions: Filters,
}

impl Rule {
    pub fn matches_type(&self, event_type: &str) -> bool {
        self.event_type.matches(event_type)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregation {
    Sum,
    Max,
    Min,
    /// Each matching event adds 1.
    Count,
    /// The value from the event with the latest `occurred_at`.
    Latest,
}

impl Aggregation {
    const ALL: [Aggregation; 5] = [
        Aggregation::Sum,
        Aggregation::Max,
        Aggregation::Min,
        Aggregation::Count,
        Aggregation::Latest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Max => "max",
            Aggregation::Min => "min",
            Aggregation::Count => "count",
            Aggregation::Latest => "latest",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    /// 1 to [`MAX_RULES`] rules.
    pub rules: Vec<Rule>,
    pub aggregation: Aggregation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RankingMethod {
    /// Highest score ranks first.
    #[default]
    ScoreDesc,
    /// Lowest score ranks first.
    ScoreAsc,
}

impl RankingMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            RankingMethod::ScoreDesc => "score_desc",
            RankingMethod::ScoreAsc => "score_asc",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub method: RankingMethod,
    /// How many entries are ranked and served: [`MIN_RANKING_SIZE`] to [`MAX_RANKING_SIZE`].
    pub size: u32,
    /// Entries worse than this (per `method`) are not ranked.
    pub min_score: Option<f64>,
}

impl Default for Ranking {
    fn default() -> Self {
        Ranking {
            method: RankingMethod::ScoreDesc,
            size: DEFAULT_RANKING_SIZE,
            min_score: None,
        }
    }
}

impl LeaderboardConfig {
    /// Parses and validates the request body's `config` member; every message starts with `config.`.
    pub fn from_json(value: &Value) -> Result<LeaderboardConfig, ValidationError> {
        let members = object("config", value)?;
        reject_unknown(
            "config",
            members,
            &["scope", "timeframe", "scoring", "ranking"],
        )?;
        let scope = match present(members, "scope") {
            Some(scope) => parse_scope(scope)?,
            None => Scope::default(),
        };
        let timeframe = parse_timeframe(
            present(members, "timeframe")
                .ok_or_else(|| ValidationError::field("config.timeframe", "is required"))?,
        )?;
        let scoring = parse_scoring(
            present(members, "scoring")
                .ok_or_else(|| ValidationError::field("config.scoring", "is required"))?,
        )?;
        let ranking = match present(members, "ranking") {
            Some(ranking) => parse_ranking(ranking)?,
            None => Ranking::default(),
        };
        Ok(LeaderboardConfig {
            scope,
            timeframe,
            scoring,
            ranking,
        })
    }

    /// The normalized JSON form, with every default written out. `from_json` accepts it unchanged.
    pub fn to_json(&self) -> Value {
        json!({
            "scope": {"filters": self.scope.filters.to_json()},
            "timeframe": timeframe_to_json(&self.timeframe),
            "scoring": {
                "rules": self.scoring.rules.iter().map(|rule| json!({
                    "event_type": rule.event_type.to_string(),
                    "points_expression": rule.points.source(),
                    "conditions": rule.conditions.to_json(),
                })).collect::<Vec<_>>(),
                "aggregation": self.scoring.aggregation.as_str(),
            },
            "ranking": {
                "method": self.ranking.method.as_str(),
                "size": self.ranking.size,
                "min_score": self.ranking.min_score.map(number_to_json),
            },
        })
    }
}

impl serde::Serialize for LeaderboardConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for LeaderboardConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        LeaderboardConfig::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// Whole numbers are written without a fraction so `"min_score": 0` comes back as `0`, not `0.0`.
fn number_to_json(value: f64) -> Value {
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGERS {
        json!(value as i64)
    } else {
        json!(value)
    }
}

fn timeframe_to_json(timeframe: &Timeframe) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!(timeframe.type_name()));
    out.insert("timezone".into(), json!(timeframe.zone().name()));
    match timeframe {
        Timeframe::AllTime { .. } => {}
        Timeframe::Daily { reset_time, .. } => {
            out.insert("reset_time".into(), json!(format_reset_time(*reset_time)));
        }
        Timeframe::Weekly {
            reset_day,
            reset_time,
            ..
        } => {
            out.insert("reset_day".into(), json!(weekday_name(*reset_day)));
            out.insert("reset_time".into(), json!(format_reset_time(*reset_time)));
        }
        Timeframe::Monthly {
            reset_day_of_month,
            reset_time,
            ..
        } => {
            out.insert("reset_day_of_month".into(), json!(reset_day_of_month));
            out.insert("reset_time".into(), json!(format_reset_time(*reset_time)));
        }
        Timeframe::Custom {
            starts_at, ends_at, ..
        } => {
            out.insert("starts_at".into(), json!(starts_at.to_string()));
            out.insert("ends_at".into(), json!(ends_at.to_string()));
        }
    }
    Value::Object(out)
}

fn object<'a>(path: &str, value: &'a Value) -> Result<&'a Map<String, Value>, ValidationError> {
    value
        .as_object()
        .ok_or_else(|| ValidationError::field(path, "expected an object"))
}

/// A member's value, with `null` read as absent: clients often send `null` for "not set".
fn present<'a>(members: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    members.get(key).filter(|value| !value.is_null())
}

fn reject_unknown(
    path: &str,
    members: &Map<String, Value>,
    known: &[&str],
) -> Result<(), ValidationError> {
    match members.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(ValidationError::field(
            format!("{path}.{key}"),
            "unknown field",
        )),
        None => Ok(()),
    }
}

fn string<'a>(path: &str, value: &'a Value) -> Result<&'a str, ValidationError> {
    value
        .as_str()
        .ok_or_else(|| ValidationError::field(path, "expected a string"))
}

/// An integer within `min..=max`; a fractional or non-numeric value is a type error.
fn integer_in(path: &str, value: &Value, min: u64, max: u64) -> Result<u64, ValidationError> {
    let out_of_range = || ValidationError::field(path, format!("must be between {min} and {max}"));
    match value {
        Value::Number(n) if n.is_u64() => n
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(out_of_range),
        Value::Number(n) if n.is_i64() => Err(out_of_range()),
        _ => Err(ValidationError::field(path, "expected an integer")),
    }
}

fn parse_scope(value: &Value) -> Result<Scope, ValidationError> {
    let members = object("config.scope", value)?;
    reject_unknown("config.scope", members, &["filters"])?;
    let filters = match present(members, "filters") {
        Some(filters) => Filters::parse("config.scope.filters", filters)?,
        None => Filters::default(),
    };
    Ok(Scope { filters })
}

const TIMEFRAME_TYPES: &str = "all_time, daily, weekly, monthly, custom";

fn parse_timeframe(value: &Value) -> Result<Timeframe, ValidationError> {
    const PATH: &str = "config.timeframe";
    let members = object(PATH, value)?;
    reject_unknown(
        PATH,
        members,
        &[
            "type",
            "timezone",
            "reset_time",
            "reset_day",
            "reset_day_of_month",
            "starts_at",
            "ends_at",
        ],
    )?;
    let at = |key: &str| format!("{PATH}.{key}");
    let kind = string(
        &at("type"),
        present(members, "type")
            .ok_or_else(|| ValidationError::field(at("type"), "is required"))?,
    )?;
    if !["all_time", "daily", "weekly", "monthly", "custom"].contains(&kind) {
        return Err(ValidationError::field(
            at("type"),
            format!("unknown type '{kind}'; expected one of {TIMEFRAME_TYPES}"),
        ));
    }
    let zone = match present(members, "timezone") {
        Some(name) => IanaTimeZone::parse(string(&at("timezone"), name)?)
            .map_err(|msg| ValidationError::field(at("timezone"), msg))?,
        None => IanaTimeZone::utc(),
    };

    // Members that only make sense for some types: a stray one usually means a mistaken `type`.
    let applies: [(&str, &[&str], &str); 5] = [
        (
            "reset_time",
            &["daily", "weekly", "monthly"],
            "'daily', 'weekly' or 'monthly'",
        ),
        ("reset_day", &["weekly"], "'weekly'"),
        ("reset_day_of_month", &["monthly"], "'monthly'"),
        ("starts_at", &["custom"], "'custom'"),
        ("ends_at", &["custom"], "'custom'"),
    ];
    for (key, types, described) in applies {
        if present(members, key).is_some() && !types.contains(&kind) {
            return Err(ValidationError::field(
                at(key),
                format!("only allowed when type is {described}"),
            ));
        }
    }

    let reset_time = || match present(members, "reset_time") {
        Some(raw) => parse_reset_time(string(&at("reset_time"), raw)?).ok_or_else(|| {
            ValidationError::field(at("reset_time"), "expected HH:MM between 00:00 and 23:59")
        }),
        None => Ok(Time::midnight()),
    };
    Ok(match kind {
        "all_time" => Timeframe::AllTime { zone },
        "daily" => Timeframe::Daily {
            zone,
            reset_time: reset_time()?,
        },
        "weekly" => {
            let raw = present(members, "reset_day")
                .ok_or_else(|| ValidationError::new(WEEKLY_NEEDS_RESET_DAY))?;
            let reset_day = parse_weekday(string(&at("reset_day"), raw)?).ok_or_else(|| {
                ValidationError::field(
                    at("reset_day"),
                    "expected one of monday, tuesday, wednesday, thursday, friday, saturday, sunday",
                )
            })?;
            Timeframe::Weekly {
                zone,
                reset_day,
                reset_time: reset_time()?,
            }
        }
        "monthly" => {
            let reset_day_of_month = match present(members, "reset_day_of_month") {
                // The range check makes the narrowing exact.
                Some(raw) => integer_in(&at("reset_day_of_month"), raw, 1, 28)? as u8,
                None => 1,
            };
            Timeframe::Monthly {
                zone,
                reset_day_of_month,
                reset_time: reset_time()?,
            }
        }
        _ => {
            let timestamp = |key: &str| -> Result<Timestamp, ValidationError> {
                let raw = present(members, key).ok_or_else(|| {
                    ValidationError::field(at(key), "is required when type is 'custom'")
                })?;
                string(&at(key), raw)?.parse::<Timestamp>().map_err(|_| {
                    ValidationError::field(
                        at(key),
                        "expected an RFC 3339 timestamp such as 2025-01-01T00:00:00Z",
                    )
                })
            };
            let starts_at = timestamp("starts_at")?;
            let ends_at = timestamp("ends_at")?;
            if starts_at >= ends_at {
                return Err(ValidationError::field(
                    at("ends_at"),
                    "must be after starts_at",
                ));
            }
            Timeframe::Custom {
                zone,
                starts_at,
                ends_at,
            }
        }
    })
}

/// Strict `HH:MM`, 00:00 to 23:59.
fn parse_reset_time(raw: &str) -> Option<Time> {
    let (hours, minutes) = raw.split_once(':')?;
    let two_digits = |s: &str| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i8>().ok())
            .flatten()
    };
    Time::new(two_digits(hours)?, two_digits(minutes)?, 0, 0).ok()
}

fn format_reset_time(time: Time) -> String {
    format!("{:02}:{:02}", time.hour(), time.minute())
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

fn parse_weekday(raw: &str) -> Option<Weekday> {
    WEEKDAYS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(raw))
        .map(|(_, day)| *day)
}

fn weekday_name(day: Weekday) -> &'static str {
    WEEKDAYS
        .iter()
        .find(|(_, d)| *d == day)
        .map_or("monday", |(name, _)| name)
}

fn parse_scoring(value: &Value) -> Result<Scoring, ValidationError> {
    const PATH: &str = "config.scoring";
    let members = object(PATH, value)?;
    reject_unknown(PATH, members, &["rules", "aggregation"])?;
    // Aggregation first: whether `points_expression` may be omitted depends on it.
    let aggregation = match present(members, "aggregation") {
        Some(raw) => {
            let name = string("config.scoring.aggregation", raw)?;
            Aggregation::ALL
                .into_iter()
                .find(|a| a.as_str() == name)
                .ok_or_else(|| {
                    ValidationError::field(
                        "config.scoring.aggregation",
                        format!(
                            "unknown aggregation '{name}'; expected one of sum, max, min, count, latest"
                        ),
                    )
                })?
        }
        None => Aggregation::Sum,
    };
    let no_rules =
        || ValidationError::field("config.scoring.rules", "at least one rule is required");
    let raw_rules = present(members, "rules")
        .ok_or_else(no_rules)?
        .as_array()
        .ok_or_else(|| ValidationError::field("config.scoring.rules", "expected an array"))?;
    if raw_rules.is_empty() {
        return Err(no_rules());
    }
    if raw_rules.len() > MAX_RULES {
        return Err(ValidationError::field(
            "config.scoring.rules",
            format!("at most {MAX_RULES} rules are allowed"),
        ));
    }
    let rules = raw_rules
        .iter()
        .enumerate()
        .map(|(i, rule)| parse_rule(&format!("config.scoring.rules[{i}]"), rule, aggregation))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Scoring { rules, aggregation })
}

fn parse_rule(
    path: &str,
    value: &Value,
    aggregation: Aggregation,
) -> Result<Rule, ValidationError> {
    let members = object(path, value)?;
    reject_unknown(
        path,
        members,
        &["event_type", "points_expression", "conditions"],
    )?;
    let at = |key: &str| format!("{path}.{key}");
    let raw_type = present(members, "event_type")
        .ok_or_else(|| ValidationError::field(at("event_type"), "is required"))?;
    let event_type = EventTypeMatcher::parse(string(&at("event_type"), raw_type)?)
        .map_err(|msg| ValidationError::field(at("event_type"), msg))?;
    let source = match present(members, "points_expression") {
        Some(raw) => string(&at("points_expression"), raw)?,
        // A count adds 1 per matching event, so the points are implied.
        None if aggregation == Aggregation::Count => "1",
        None => {
            return Err(ValidationError::field(
                at("points_expression"),
                "is required unless aggregation is 'count'",
            ));
        }
    };
    let points =
        Expr::parse(source).map_err(|err| ValidationError::field(at("points_expression"), err))?;
    let conditions = match present(members, "conditions") {
        Some(raw) => Filters::parse(&at("conditions"), raw)?,
        None => Filters::default(),
    };
    Ok(Rule {
        event_type,
        points,
        conditions,
    })
}

fn parse_ranking(value: &Value) -> Result<Ranking, ValidationError> {
    const PATH: &str = "config.ranking";
    let members = object(PATH, value)?;
    reject_unknown(PATH, members, &["method", "size", "min_score"])?;
    let method = match present(members, "method") {
        Some(raw) => match string("config.ranking.method", raw)? {
            "score_desc" => RankingMethod::ScoreDesc,
            "score_asc" => RankingMethod::ScoreAsc,
            other => {
                return Err(ValidationError::field(
                    "config.ranking.method",
                    format!("unknown method '{other}'; expected score_desc or score_asc"),
                ));
            }
        },
        None => RankingMethod::ScoreDesc,
    };
    let size = match present(members, "size") {
        // The range check makes the narrowing exact.
        Some(raw) => integer_in(
            "config.ranking.size",
            raw,
            MIN_RANKING_SIZE.into(),
            MAX_RANKING_SIZE.into(),
        )? as u32,
        None => DEFAULT_RANKING_SIZE,
    };
    let min_score = match present(members, "min_score") {
        Some(raw) => Some(raw.as_f64().ok_or_else(|| {
            ValidationError::field("config.ranking.min_score", "expected a number")
        })?),
        None => None,
    };
    Ok(Ranking {
        method,
        size,
        min_score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guide's example config.
    fn example() -> Value {
        json!({
            "scope": {"filters": {"actor.metadata.region": {"in": ["na", "eu"]}}},
            "timeframe": {"type": "weekly", "timezone": "UTC", "reset_day": "monday", "reset_time": "00:00"},
            "scoring": {
                "rules": [{
                    "event_type": "match.completed",
                    "points_expression": "attrs.score",
                    "conditions": {"attrs.victory": {"eq": true}}
                }],
                "aggregation": "sum"
            },
            "ranking": {"method": "score_desc", "size": 1000, "min_score": 0}
        })
    }

    fn minimal() -> Value {
        json!({
            "timeframe": {"type": "all_time"},
            "scoring": {"rules": [{"event_type": "kill", "points_expression": "1"}]}
        })
    }

    /// `minimal()` with `pointer` (a JSON pointer) set to `value`.
    fn with(mut config: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() {
            &mut config
        } else {
            config.pointer_mut(parent).unwrap()
        };
        target
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value);
        config
    }

    fn err(config: &Value) -> String {
        LeaderboardConfig::from_json(config)
            .unwrap_err()
            .to_string()
    }

    fn timeframe_err(timeframe: Value) -> String {
        err(&with(minimal(), "/timeframe", timeframe))
    }

    #[test]
    fn parses_the_guide_example() {
        let config = LeaderboardConfig::from_json(&example()).unwrap();
        assert_eq!(
            config.timeframe,
            Timeframe::Weekly {
                zone: IanaTimeZone::utc(),
                reset_day: Weekday::Monday,
                reset_time: Time::midnight(),
            }
        );
        assert_eq!(config.scope.filters.len(), 1);
        assert_eq!(config.scoring.aggregation, Aggregation::Sum);
        assert_eq!(config.scoring.rules[0].points.source(), "attrs.score");
        assert_eq!(config.ranking.min_score, Some(0.0));
        // The example spells out every member already, so normalizing changes nothing.
        let normalized = config.to_json();
        assert_eq!(normalized, example());
        assert_eq!(LeaderboardConfig::from_json(&normalized).unwrap(), config);
    }

    #[test]
    fn fills_in_every_default() {
        let config = LeaderboardConfig::from_json(&minimal()).unwrap();
        assert_eq!(
            config.to_json(),
            json!({
                "scope": {"filters": {}},
                "timeframe": {"type": "all_time", "timezone": "UTC"},
                "scoring": {
                    "rules": [{"event_type": "kill", "points_expression": "1", "conditions": {}}],
                    "aggregation": "sum"
                },
                "ranking": {"method": "score_desc", "size": 1000, "min_score": null}
            })
        );
        let daily =
            LeaderboardConfig::from_json(&with(minimal(), "/timeframe", json!({"type": "daily"})))
                .unwrap();
        assert_eq!(
            daily.to_json()["timeframe"],
            json!({"type": "daily", "timezone": "UTC", "reset_time": "00:00"})
        );
        let monthly = LeaderboardConfig::from_json(&with(
            minimal(),
            "/timeframe",
            json!({"type": "monthly"}),
        ))
        .unwrap();
        assert_eq!(
            monthly.to_json()["timeframe"],
            json!({"type": "monthly", "timezone": "UTC", "reset_day_of_month": 1, "reset_time": "00:00"})
        );
    }

    #[test]
    fn null_members_read_as_absent() {
        let config = json!({
            "scope": null,
            "timeframe": {"type": "daily", "reset_day": null, "timezone": null},
            "scoring": {"rules": [{"event_type": "x", "points_expression": "2", "conditions": null}],
                        "aggregation": null},
            "ranking": {"min_score": null, "size": null}
        });
        assert!(LeaderboardConfig::from_json(&config).is_ok());
    }

    #[test]
    fn config_and_sections_must_be_objects_and_present() {
        assert_eq!(err(&json!(null)), "config: expected an object");
        assert_eq!(
            err(&json!({"scoring": minimal()["scoring"]})),
            "config.timeframe: is required"
        );
        assert_eq!(
            err(&json!({"timeframe": {"type": "all_time"}})),
            "config.scoring: is required"
        );
        assert_eq!(
            err(&with(minimal(), "/scope", json!([]))),
            "config.scope: expected an object"
        );
        assert_eq!(
            err(&with(minimal(), "/timeframe", json!("daily"))),
            "config.timeframe: expected an object"
        );
        assert_eq!(
            err(&with(minimal(), "/ranking", json!(5))),
            "config.ranking: expected an object"
        );
    }

    #[test]
    fn unknown_members_are_named_at_every_level() {
        assert_eq!(
            err(&with(minimal(), "/extra", json!(1))),
            "config.extra: unknown field"
        );
        assert_eq!(
            err(&with(minimal(), "/scope", json!({"filter": {}}))),
            "config.scope.filter: unknown field"
        );
        assert_eq!(
            err(&with(minimal(), "/scoring/agregation", json!("sum"))),
            "config.scoring.agregation: unknown field"
        );
        assert_eq!(
            err(&with(minimal(), "/timeframe/zone", json!("UTC"))),
            "config.timeframe.zone: unknown field"
        );
        assert_eq!(
            err(&with(minimal(), "/ranking", json!({"limit": 5}))),
            "config.ranking.limit: unknown field"
        );
        let rule = json!({"event_type": "x", "points_expression": "1", "weight": 2});
        assert_eq!(
            err(&with(minimal(), "/scoring/rules", json!([rule]))),
            "config.scoring.rules[0].weight: unknown field"
        );
    }

    #[test]
    fn scope_filters_are_validated_with_their_path() {
        let config = with(
            minimal(),
            "/scope",
            json!({"filters": {"attrs.mode": {"like": "x"}}}),
        );
        assert!(
            err(&config).starts_with("config.scope.filters.attrs.mode: unknown operator 'like'"),
            "{}",
            err(&config)
        );
        let config = with(
            minimal(),
            "/scope",
            json!({"filters": {"attrs.victory": {"eq": [1]}}}),
        );
        assert_eq!(
            err(&config),
            "config.scope.filters.attrs.victory.eq: expected a string, number, boolean or null"
        );
        let config = with(
            minimal(),
            "/scope",
            json!({"filters": {"player": {"eq": 1}}}),
        );
        assert!(
            err(&config).starts_with("config.scope.filters.player: unknown field path 'player'")
        );
    }

    #[test]
    fn timeframe_type_is_required_and_known() {
        assert_eq!(
            timeframe_err(json!({})),
            "config.timeframe.type: is required"
        );
        assert_eq!(
            timeframe_err(json!({"type": 1})),
            "config.timeframe.type: expected a string"
        );
        assert_eq!(
            timeframe_err(json!({"type": "yearly"})),
            "config.timeframe.type: unknown type 'yearly'; expected one of all_time, daily, weekly, monthly, custom"
        );
    }

    #[test]
    fn timezone_must_be_a_known_iana_name() {
        assert_eq!(
            timeframe_err(json!({"type": "daily", "timezone": "Mars/Base"})),
            "config.timeframe.timezone: unknown IANA time zone 'Mars/Base'"
        );
        assert_eq!(
            timeframe_err(json!({"type": "daily", "timezone": "../../etc/passwd"})),
            "config.timeframe.timezone: unknown IANA time zone '../../etc/passwd'"
        );
        assert_eq!(
            timeframe_err(json!({"type": "daily", "timezone": ""})),
            "config.timeframe.timezone: unknown IANA time zone ''"
        );
        assert_eq!(
            timeframe_err(json!({"type": "daily", "timezone": 5})),
            "config.timeframe.timezone: expected a string"
        );
        let config = with(
            minimal(),
            "/timeframe",
            json!({"type": "daily", "timezone": "Europe/Berlin", "reset_time": "04:30"}),
        );
        let parsed = LeaderboardConfig::from_json(&config).unwrap();
        let Timeframe::Daily { zone, reset_time } = &parsed.timeframe else {
            panic!("expected daily, got {:?}", parsed.timeframe);
        };
        assert_eq!(zone.name(), "Europe/Berlin");
        assert_eq!(zone.time_zone().iana_name(), Some("Europe/Berlin"));
        assert_eq!(*reset_time, Time::new(4, 30, 0, 0).unwrap());
        assert_eq!(parsed.to_json()["timeframe"]["reset_time"], "04:30");
    }

    #[test]
    fn zone_names_are_canonical() {
        for (raw, canonical) in [
            ("UTC", "UTC"),
            ("Etc/UTC", "Etc/UTC"),
            ("utc", "UTC"),
            ("europe/berlin", "Europe/Berlin"),
        ] {
            assert_eq!(
                IanaTimeZone::parse(raw).map(|z| z.name().to_owned()),
                Ok(canonical.to_owned()),
                "{raw}"
            );
        }
    }

    #[test]
    fn reset_time_is_strict_hh_mm() {
        for bad in [
            "24:00", "23:60", "7:00", "07:5", "0700", "07:00:00", "aa:bb", "-1:00", "+1:00", "",
        ] {
            assert_eq!(
                timeframe_err(json!({"type": "daily", "reset_time": bad})),
                "config.timeframe.reset_time: expected HH:MM between 00:00 and 23:59",
                "{bad}"
            );
        }
        assert_eq!(
            timeframe_err(json!({"type": "daily", "reset_time": 700})),
            "config.timeframe.reset_time: expected a string"
        );
        for good in ["00:00", "23:59", "12:05"] {
            let config = with(
                minimal(),
                "/timeframe",
                json!({"type": "weekly", "reset_day": "friday", "reset_time": good}),
            );
            let parsed = LeaderboardConfig::from_json(&config).unwrap();
            assert_eq!(parsed.to_json()["timeframe"]["reset_time"], good);
        }
    }

    #[test]
    fn weekly_needs_a_valid_reset_day() {
        assert_eq!(
            timeframe_err(json!({"type": "weekly"})),
            "reset_day is required when type is 'weekly'"
        );
        assert_eq!(
            timeframe_err(json!({"type": "weekly", "reset_day": "funday"})),
            "config.timeframe.reset_day: expected one of monday, tuesday, wednesday, thursday, friday, saturday, sunday"
        );
        assert_eq!(
            timeframe_err(json!({"type": "weekly", "reset_day": 1})),
            "config.timeframe.reset_day: expected a string"
        );
        let config = with(
            minimal(),
            "/timeframe",
            json!({"type": "weekly", "reset_day": "Sunday"}),
        );
        let parsed = LeaderboardConfig::from_json(&config).unwrap();
        assert!(matches!(
            parsed.timeframe,
            Timeframe::Weekly {
                reset_day: Weekday::Sunday,
                ..
            }
        ));
        assert_eq!(parsed.to_json()["timeframe"]["reset_day"], "sunday");
    }

    #[test]
    fn monthly_reset_day_is_between_1_and_28() {
        for bad in [json!(0), json!(29), json!(-1)] {
            assert_eq!(
                timeframe_err(json!({"type": "monthly", "reset_day_of_month": bad})),
                "config.timeframe.reset_day_of_month: must be between 1 and 28"
            );
        }
        for bad in [json!(1.5), json!("1"), json!(true)] {
            assert_eq!(
                timeframe_err(json!({"type": "monthly", "reset_day_of_month": bad})),
                "config.timeframe.reset_day_of_month: expected an integer"
            );
        }
        let config = with(
            minimal(),
            "/timeframe",
            json!({"type": "monthly", "reset_day_of_month": 28}),
        );
        let parsed = LeaderboardConfig::from_json(&config).unwrap();
        assert!(matches!(
            parsed.timeframe,
            Timeframe::Monthly {
                reset_day_of_month: 28,
                ..
            }
        ));
    }

    #[test]
    fn custom_needs_an_ordered_pair_of_timestamps() {
        assert_eq!(
            timeframe_err(json!({"type": "custom", "ends_at": "2025-01-02T00:00:00Z"})),
            "config.timeframe.starts_at: is required when type is 'custom'"
        );
        assert_eq!(
            timeframe_err(json!({"type": "custom", "starts_at": "2025-01-02T00:00:00Z"})),
            "config.timeframe.ends_at: is required when type is 'custom'"
        );
        assert_eq!(
            timeframe_err(
                json!({"type": "custom", "starts_at": "yesterday", "ends_at": "2025-01-02T00:00:00Z"})
            ),
            "config.timeframe.starts_at: expected an RFC 3339 timestamp such as 2025-01-01T00:00:00Z"
        );
        assert_eq!(
            timeframe_err(
                json!({"type": "custom", "starts_at": "2025-01-02T00:00:00Z", "ends_at": "2025-01-02T00:00:00Z"})
            ),
            "config.timeframe.ends_at: must be after starts_at"
        );
        assert_eq!(
            timeframe_err(
                json!({"type": "custom", "starts_at": "2025-01-02T00:00:00Z", "ends_at": "2025-01-01T00:00:00Z"})
            ),
            "config.timeframe.ends_at: must be after starts_at"
        );
        let config = with(
            minimal(),
            "/timeframe",
            json!({"type": "custom", "timezone": "Asia/Tokyo", "starts_at": "2025-01-01T09:00:00+09:00", "ends_at": "2025-02-01T00:00:00Z"}),
        );
        let parsed = LeaderboardConfig::from_json(&config).unwrap();
        assert_eq!(
            parsed.to_json()["timeframe"],
            json!({"type": "custom", "timezone": "Asia/Tokyo", "starts_at": "2025-01-01T00:00:00Z", "ends_at": "2025-02-01T00:00:00Z"})
        );
    }

    #[test]
    fn members_that_do_not_apply_to_the_type_are_rejected() {
        let cases = [
            (
                json!({"type": "daily", "reset_day": "monday"}),
                "config.timeframe.reset_day: only allowed when type is 'weekly'",
            ),
            (
                json!({"type": "weekly", "reset_day": "monday", "reset_day_of_month": 3}),
                "config.timeframe.reset_day_of_month: only allowed when type is 'monthly'",
            ),
            (
                json!({"type": "all_time", "reset_time": "01:00"}),
                "config.timeframe.reset_time: only allowed when type is 'daily', 'weekly' or 'monthly'",
            ),
            (
                json!({"type": "custom", "reset_time": "01:00"}),
                "config.timeframe.reset_time: only allowed when type is 'daily', 'weekly' or 'monthly'",
            ),
            (
                json!({"type": "monthly", "starts_at": "2025-01-01T00:00:00Z"}),
                "config.timeframe.starts_at: only allowed when type is 'custom'",
            ),
            (
                json!({"type": "daily", "ends_at": "2025-01-01T00:00:00Z"}),
                "config.timeframe.ends_at: only allowed when type is 'custom'",
            ),
        ];
        for (timeframe, message) in cases {
            assert_eq!(timeframe_err(timeframe), message);
        }
    }

    fn rules_err(rules: Value) -> String {
        err(&with(minimal(), "/scoring/rules", rules))
    }

    #[test]
    fn scoring_needs_between_1_and_100_rules() {
        assert_eq!(
            rules_err(json!([])),
            "config.scoring.rules: at least one rule is required"
        );
        assert_eq!(
            err(&with(minimal(), "/scoring", json!({"aggregation": "sum"}))),
            "config.scoring.rules: at least one rule is required"
        );
        assert_eq!(
            rules_err(json!({})),
            "config.scoring.rules: expected an array"
        );
        let rule = json!({"event_type": "x", "points_expression": "1"});
        assert_eq!(
            rules_err(Value::Array(vec![rule.clone(); 101])),
            "config.scoring.rules: at most 100 rules are allowed"
        );
        let mut config = with(minimal(), "/scoring/rules", Value::Array(vec![rule; 100]));
        assert_eq!(
            LeaderboardConfig::from_json(&config)
                .unwrap()
                .scoring
                .rules
                .len(),
            100
        );
        config["scoring"]["rules"][1] = json!("x");
        assert_eq!(err(&config), "config.scoring.rules[1]: expected an object");
    }

    #[test]
    fn event_type_is_exact_or_a_trailing_prefix() {
        let rule =
            |event_type: Value| json!([{"event_type": event_type, "points_expression": "1"}]);
        assert_eq!(
            rules_err(rule(json!(""))),
            "config.scoring.rules[0].event_type: must not be empty"
        );
        assert_eq!(
            rules_err(rule(json!(7))),
            "config.scoring.rules[0].event_type: expected a string"
        );
        assert_eq!(
            rules_err(json!([{"points_expression": "1"}])),
            "config.scoring.rules[0].event_type: is required"
        );
        assert_eq!(
            rules_err(rule(json!("a".repeat(129)))),
            "config.scoring.rules[0].event_type: must be at most 128 characters"
        );
        for bad in ["*.completed", "match*.x", "match.**"] {
            assert_eq!(
                rules_err(rule(json!(bad))),
                "config.scoring.rules[0].event_type: '*' is only allowed once, as the last character"
            );
        }
        let exact = EventTypeMatcher::parse("match.completed").unwrap();
        assert!(exact.matches("match.completed"));
        assert!(!exact.matches("match.completed.2"));
        let prefix = EventTypeMatcher::parse("match.*").unwrap();
        assert_eq!(prefix, EventTypeMatcher::Prefix("match.".into()));
        assert!(prefix.matches("match.completed"));
        assert!(prefix.matches("match."));
        assert!(!prefix.matches("match"));
        assert_eq!(prefix.to_string(), "match.*");
        assert!(EventTypeMatcher::parse("*").unwrap().matches("anything"));
        assert!(EventTypeMatcher::parse(&"a".repeat(128)).is_ok());

        let config = LeaderboardConfig::from_json(&example()).unwrap();
        assert!(config.scoring.rules[0].matches_type("match.completed"));
        assert!(!config.scoring.rules[0].matches_type("match.started"));
    }

    #[test]
    fn points_expression_errors_carry_the_expression_position() {
        let rule = |expr: Value| json!([{"event_type": "x", "points_expression": expr}]);
        assert_eq!(
            rules_err(rule(json!("1 + sqrt(2)"))),
            "config.scoring.rules[0].points_expression: unknown function 'sqrt' at position 4"
        );
        assert_eq!(
            rules_err(rule(json!(""))),
            "config.scoring.rules[0].points_expression: empty expression at position 0"
        );
        assert_eq!(
            rules_err(rule(json!(10))),
            "config.scoring.rules[0].points_expression: expected a string"
        );
        assert_eq!(
            rules_err(json!([{"event_type": "x"}])),
            "config.scoring.rules[0].points_expression: is required unless aggregation is 'count'"
        );
        let second = json!([{"event_type": "x", "points_expression": "1"},
                            {"event_type": "y", "points_expression": "attrs.a +"}]);
        assert_eq!(
            rules_err(second),
            "config.scoring.rules[1].points_expression: unexpected end of expression at position 9"
        );
    }

    #[test]
    fn count_implies_one_point_per_event() {
        let config = json!({
            "timeframe": {"type": "all_time"},
            "scoring": {"rules": [{"event_type": "login"}], "aggregation": "count"}
        });
        let parsed = LeaderboardConfig::from_json(&config).unwrap();
        assert_eq!(parsed.scoring.aggregation, Aggregation::Count);
        assert_eq!(parsed.scoring.rules[0].points.source(), "1");
        assert_eq!(
            parsed.to_json()["scoring"]["rules"][0]["points_expression"],
            "1"
        );
    }

    #[test]
    fn rule_conditions_are_validated_with_their_path() {
        let rules = json!([{"event_type": "x", "points_expression": "1",
                            "conditions": {"attrs.victory": {"eq": true, "gt": "a"}}}]);
        assert_eq!(
            rules_err(rules),
            "config.scoring.rules[0].conditions.attrs.victory.gt: expected a number"
        );
        let rules = json!([{"event_type": "x", "points_expression": "1", "conditions": [1]}]);
        assert!(
            rules_err(rules).starts_with("config.scoring.rules[0].conditions: expected an object")
        );
    }

    #[test]
    fn aggregation_is_one_of_five() {
        for name in ["sum", "max", "min", "count", "latest"] {
            let config = with(minimal(), "/scoring/aggregation", json!(name));
            let parsed = LeaderboardConfig::from_json(&config).unwrap();
            assert_eq!(parsed.scoring.aggregation.as_str(), name);
        }
        assert_eq!(
            err(&with(minimal(), "/scoring/aggregation", json!("avg"))),
            "config.scoring.aggregation: unknown aggregation 'avg'; expected one of sum, max, min, count, latest"
        );
        assert_eq!(
            err(&with(minimal(), "/scoring/aggregation", json!(["sum"]))),
            "config.scoring.aggregation: expected a string"
        );
    }

    #[test]
    fn ranking_is_validated() {
        let ranking = |value: Value| err(&with(minimal(), "/ranking", value));
        for size in [json!(0), json!(100_001), json!(-5), json!(u64::MAX)] {
            assert_eq!(
                ranking(json!({ "size": size })),
                "config.ranking.size: must be between 1 and 100000"
            );
        }
        for size in [json!(10.5), json!("10"), json!(1e3)] {
            assert_eq!(
                ranking(json!({ "size": size })),
                "config.ranking.size: expected an integer"
            );
        }
        assert_eq!(
            ranking(json!({"method": "random"})),
            "config.ranking.method: unknown method 'random'; expected score_desc or score_asc"
        );
        assert_eq!(
            ranking(json!({"min_score": "0"})),
            "config.ranking.min_score: expected a number"
        );

        let config = with(
            minimal(),
            "/ranking",
            json!({"method": "score_asc", "size": 100000, "min_score": -2.5}),
        );
        let parsed = LeaderboardConfig::from_json(&config).unwrap();
        assert_eq!(
            parsed.ranking,
            Ranking {
                method: RankingMethod::ScoreAsc,
                size: 100_000,
                min_score: Some(-2.5)
            }
        );
        assert_eq!(
            parsed.to_json()["ranking"],
            json!({"method": "score_asc", "size": 100000, "min_score": -2.5})
        );
        let config = with(minimal(), "/ranking", json!({"size": 1, "min_score": 10}));
        assert_eq!(
            LeaderboardConfig::from_json(&config).unwrap().to_json()["ranking"],
            json!({"method": "score_desc", "size": 1, "min_score": 10})
        );
    }

    #[test]
    fn serde_goes_through_the_same_validation() {
        let config: LeaderboardConfig = serde_json::from_value(example()).unwrap();
        assert_eq!(serde_json::to_value(&config).unwrap(), config.to_json());
        let bad =
            serde_json::from_value::<LeaderboardConfig>(json!({"timeframe": {"type": "weekly"}}));
        assert!(bad.is_err());
    }
}
