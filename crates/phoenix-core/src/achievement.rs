//! Achievements (SPEC §7.5, §7.7), the pure part: an achievement's metric (which events count, and
//! how: `count`, `sum` of an expression, or a `streak` of days in a zone), its steps, and one player's
//! progress, which an event moves and whose crossings complete steps. No I/O: the store keeps the
//! progress and makes the completions records of its log.

use crate::condition::Filters;
use crate::config::{EventTypeMatcher, IanaTimeZone};
use crate::error::ValidationError;
use crate::event::Event;
use crate::expr::Expr;
use crate::reward::{MAX_REWARDS_PER_TIER, Reward};
use serde_json::{Map, Value, json};

/// Steps an achievement may have.
pub const MAX_STEPS: usize = 20;

/// Runs of days a streak remembers per player: the newest ones. An event older than all of them can
/// no longer join a run (it still counts as a streak of its own), so a player's progress stays small
/// after years of play.
pub const MAX_RUNS: usize = 64;

/// How matching events move a player's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregation {
    /// Each matching event adds 1.
    Count,
    /// Each matching event adds the expression's value (an event it cannot evaluate adds nothing).
    Sum(Expr),
    /// The value is the best run of consecutive days (in the zone) with at least one matching event.
    Streak(IanaTimeZone),
}

/// Which events count for an achievement, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub event_type: EventTypeMatcher,
    pub conditions: Filters,
    /// `scope.filters`, as on a leaderboard.
    pub filters: Filters,
    pub aggregation: Aggregation,
}

/// What one matching event does to a player's progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contribution {
    Add(f64),
    /// A day (days since 1970-01-01 in the metric's zone) with a matching event.
    Day(i32),
}

fn object<'a>(path: &str, value: &'a Value) -> Result<&'a Map<String, Value>, ValidationError> {
    value
        .as_object()
        .ok_or_else(|| ValidationError::field(path, "expected an object"))
}

fn reject_unknown(
    path: &str,
    members: &Map<String, Value>,
    known: &[&str],
) -> Result<(), ValidationError> {
    match members.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ValidationError::field(
            format!("{path}.{k}"),
            format!("unknown field (expected {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn string<'a>(
    path: &str,
    members: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ValidationError> {
    match members.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::field(
            format!("{path}.{key}"),
            "expected a string",
        )),
    }
}

impl Metric {
    /// Parses `metric`; error paths start with `metric.`.
    pub fn from_json(value: &Value) -> Result<Metric, ValidationError> {
        const PATH: &str = "metric";
        let members = object(PATH, value)?;
        reject_unknown(
            PATH,
            members,
            &[
                "event_type",
                "conditions",
                "scope",
                "aggregation",
                "points_expression",
                "timezone",
            ],
        )?;
        let raw_type = string(PATH, members, "event_type")?
            .ok_or_else(|| ValidationError::field("metric.event_type", "is required"))?;
        let event_type = EventTypeMatcher::parse(raw_type)
            .map_err(|msg| ValidationError::field("metric.event_type", msg))?;
        let conditions = match members.get("conditions") {
            None | Some(Value::Null) => Filters::default(),
            Some(raw) => Filters::parse("metric.conditions", raw)?,
        };
        let filters = match members.get("scope") {
            None | Some(Value::Null) => Filters::default(),
            Some(raw) => {
                let scope = object("metric.scope", raw)?;
                reject_unknown("metric.scope", scope, &["filters"])?;
                match scope.get("filters") {
                    None | Some(Value::Null) => Filters::default(),
                    Some(raw) => Filters::parse("metric.scope.filters", raw)?,
                }
            }
        };
        let expression = string(PATH, members, "points_expression")?;
        let zone = string(PATH, members, "timezone")?;
        let aggregation = match string(PATH, members, "aggregation")?.unwrap_or("count") {
            "count" => Aggregation::Count,
            "sum" => {
                let source = expression.ok_or_else(|| {
                    ValidationError::field(
                        "metric.points_expression",
                        "is required when aggregation is 'sum'",
                    )
                })?;
                Aggregation::Sum(
                    Expr::parse(source)
                        .map_err(|e| ValidationError::field("metric.points_expression", e))?,
                )
            }
            "streak" => Aggregation::Streak(match zone {
                Some(name) => IanaTimeZone::parse(name)
                    .map_err(|msg| ValidationError::field("metric.timezone", msg))?,
                None => IanaTimeZone::utc(),
            }),
            other => {
                return Err(ValidationError::field(
                    "metric.aggregation",
                    format!("unknown aggregation '{other}'; expected count, sum or streak"),
                ));
            }
        };
        if expression.is_some() && !matches!(aggregation, Aggregation::Sum(_)) {
            return Err(ValidationError::field(
                "metric.points_expression",
                "is only used when aggregation is 'sum'",
            ));
        }
        if zone.is_some() && !matches!(aggregation, Aggregation::Streak(_)) {
            return Err(ValidationError::field(
                "metric.timezone",
                "is only used when aggregation is 'streak'",
            ));
        }
        Ok(Metric {
            event_type,
            conditions,
            filters,
            aggregation,
        })
    }

    /// The metric as the API shows it (normalized: defaults filled in).
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "event_type": self.event_type.to_string(),
            "conditions": self.conditions.to_json(),
            "scope": {"filters": self.filters.to_json()},
        });
        match &self.aggregation {
            Aggregation::Count => out["aggregation"] = json!("count"),
            Aggregation::Sum(expr) => {
                out["aggregation"] = json!("sum");
                out["points_expression"] = json!(expr.source());
            }
            Aggregation::Streak(zone) => {
                out["aggregation"] = json!("streak");
                out["timezone"] = json!(zone.name());
            }
        }
        out
    }

    /// What `event` contributes, or `None` when it does not count (type, conditions, filters, or a
    /// `sum` expression that reads a missing or non-numeric field).
    pub fn contribution(&self, event: &Event) -> Option<Contribution> {
        self.contribution_of_type(event, event.event_type())
    }

    /// [`Metric::contribution`], with the event's type already at hand (looked up once for many
    /// metrics).
    pub fn contribution_of_type(&self, event: &Event, event_type: &str) -> Option<Contribution> {
        if !self.event_type.matches(event_type)
            || !self.filters.matches(event)
            || !self.conditions.matches(event)
        {
            return None;
        }
        match &self.aggregation {
            Aggregation::Count => Some(Contribution::Add(1.0)),
            Aggregation::Sum(expr) => expr
                .eval(event)
                .filter(|v| v.is_finite())
                .map(Contribution::Add),
            Aggregation::Streak(zone) => {
                // The local date's day number: the local time (instant plus the zone's offset then),
                // in whole days since 1970-01-01, without building a zoned date-time.
                let offset = zone.time_zone().to_offset(event.occurred_at);
                let local = event.occurred_at.as_second() + i64::from(offset.seconds());
                i32::try_from(local.div_euclid(86_400))
                    .ok()
                    .map(Contribution::Day)
            }
        }
    }
}

/// One step: completed when the value reaches `threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub threshold: f64,
    pub rewards: Vec<Reward>,
}

impl Step {
    pub fn to_json(&self) -> Value {
        json!({
            "threshold": self.threshold,
            "rewards": self.rewards.iter().map(Reward::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Parses `steps`: 1 to 20, thresholds positive and strictly increasing, 0 to 10 rewards each.
pub fn steps_from_json(value: &Value) -> Result<Vec<Step>, ValidationError> {
    let list = value
        .as_array()
        .ok_or_else(|| ValidationError::field("steps", "expected an array"))?;
    if !(1..=MAX_STEPS).contains(&list.len()) {
        return Err(ValidationError::field(
            "steps",
            format!("expected 1 to {MAX_STEPS} steps"),
        ));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let path = format!("steps[{i}]");
        let members = object(&path, raw)?;
        reject_unknown(&path, members, &["threshold", "rewards"])?;
        let threshold = members
            .get("threshold")
            .ok_or_else(|| ValidationError::field(format!("{path}.threshold"), "is required"))?
            .as_f64()
            .filter(|t| t.is_finite() && *t > 0.0)
            .ok_or_else(|| {
                ValidationError::field(format!("{path}.threshold"), "expected a positive number")
            })?;
        if let Some(previous) = steps.last()
            && threshold <= previous.threshold
        {
            return Err(ValidationError::field(
                format!("{path}.threshold"),
                format!("must be greater than steps[{}].threshold", i - 1),
            ));
        }
        let rewards = match members.get("rewards") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(raw)) => {
                if raw.len() > MAX_REWARDS_PER_TIER {
                    return Err(ValidationError::field(
                        format!("{path}.rewards"),
                        format!("expected at most {MAX_REWARDS_PER_TIER} rewards"),
                    ));
                }
                raw.iter()
                    .enumerate()
                    .map(|(j, r)| {
                        Reward::from_json(r)
                            .map_err(|e| e.at_index(j).within(&format!("{path}.rewards")))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => {
                return Err(ValidationError::field(
                    format!("{path}.rewards"),
                    "expected an array",
                ));
            }
        };
        steps.push(Step { threshold, rewards });
    }
    Ok(steps)
}

/// A PATCH of `steps` must repeat the existing steps' thresholds unchanged and may only add higher
/// ones (SPEC §7.7), so earlier completions keep their meaning.
pub fn check_steps_extend(old: &[Step], new: &[Step]) -> Result<(), ValidationError> {
    if new.len() < old.len() {
        return Err(ValidationError::field(
            "steps",
            format!(
                "must keep the existing {} steps (thresholds may only be added above the last)",
                old.len()
            ),
        ));
    }
    for (i, (before, after)) in old.iter().zip(new).enumerate() {
        if before.threshold != after.threshold {
            return Err(ValidationError::field(
                format!("steps[{i}].threshold"),
                format!(
                    "must stay {} (thresholds may only be added above the last)",
                    before.threshold
                ),
            ));
        }
    }
    Ok(())
}

/// One player's progress on one achievement: the value and, for a streak, the days played as sorted,
/// disjoint runs of consecutive days (an older event may fill a gap and join two runs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub value: f64,
    /// `(first, last)` day numbers, inclusive, sorted, never adjacent or overlapping.
    pub runs: Vec<(i32, i32)>,
}

impl Progress {
    /// Applies one contribution; returns the new value.
    pub fn apply(&mut self, contribution: Contribution) -> f64 {
        match contribution {
            // Kept finite: a total past f64's range stays at its edge.
            Contribution::Add(v) => self.value = (self.value + v).clamp(-f64::MAX, f64::MAX),
            Contribution::Day(day) => {
                let run = self.add_day(day);
                self.value = self.value.max(f64::from(run));
            }
        }
        self.value
    }

    /// Adds a day to the runs; returns the length of the run now holding it.
    fn add_day(&mut self, day: i32) -> i32 {
        // The first run that ends at or after the day before `day`.
        let i = self
            .runs
            .partition_point(|&(_, last)| last < day.saturating_sub(1));
        if let Some(&(first, last)) = self.runs.get(i)
            && first <= day.saturating_add(1)
        {
            // `day` touches or lies in run i: widen it, and join run i+1 if they now touch.
            let (mut first, mut last) = (first.min(day), last.max(day));
            if let Some(&(next_first, next_last)) = self.runs.get(i + 1)
                && next_first <= last.saturating_add(1)
            {
                last = last.max(next_last);
                first = first.min(next_first);
                self.runs.remove(i + 1);
            }
            self.runs[i] = (first, last);
            return last - first + 1;
        }
        self.runs.insert(i, (day, day));
        if self.runs.len() > MAX_RUNS {
            self.runs.remove(0);
        }
        1
    }
}

/// The steps completed by moving from `before` to `after`, of those not completed yet: every step
/// whose threshold lies in `(before, after]` (and, for steps added later, any threshold at or below
/// `after` that is not completed).
pub fn newly_completed(steps: &[Step], completed: &[bool], after: f64) -> Vec<usize> {
    steps
        .iter()
        .enumerate()
        .filter(|(i, step)| !completed.get(*i).copied().unwrap_or(false) && after >= step.threshold)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_and_name_the_field() {
        let ok = Metric::from_json(&json!({"event_type": "match.completed",
            "conditions": {"attrs.victory": {"eq": true}}, "aggregation": "count"}))
        .unwrap();
        assert_eq!(ok.aggregation, Aggregation::Count);
        let cases = [
            (json!({"aggregation": "count"}), "metric.event_type"),
            (
                json!({"event_type": "x", "aggregation": "sum"}),
                "metric.points_expression",
            ),
            (
                json!({"event_type": "x", "aggregation": "max"}),
                "metric.aggregation",
            ),
            (
                json!({"event_type": "x", "aggregation": "streak", "timezone": "Mars/Base"}),
                "metric.timezone",
            ),
            (
                json!({"event_type": "x", "points_expression": "1"}),
                "metric.points_expression",
            ),
            (json!({"event_type": "x", "extra": 1}), "metric.extra"),
        ];
        for (value, path) in cases {
            let e = Metric::from_json(&value).unwrap_err().to_string();
            assert!(e.starts_with(path), "{path}: {e}");
        }
    }

    #[test]
    fn steps_must_rise_and_patches_only_add_above() {
        let steps = steps_from_json(&json!([{"threshold": 10}, {"threshold": 100,
            "rewards": [{"type": "badge", "badge": "slayer"}]}]))
        .unwrap();
        assert_eq!(steps.len(), 2);
        let e = steps_from_json(&json!([{"threshold": 10}, {"threshold": 10}]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("steps[1].threshold"), "{e}");
        let e = steps_from_json(&json!([{"threshold": 0}]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("steps[0].threshold"), "{e}");
        let more =
            steps_from_json(&json!([{"threshold": 10}, {"threshold": 100}, {"threshold": 500}]))
                .unwrap();
        check_steps_extend(&steps, &more).unwrap();
        let changed = steps_from_json(&json!([{"threshold": 10}, {"threshold": 90}])).unwrap();
        assert!(
            check_steps_extend(&steps, &changed)
                .unwrap_err()
                .to_string()
                .starts_with("steps[1]")
        );
        assert!(check_steps_extend(&steps, &steps[..1]).is_err());
    }

    #[test]
    fn a_streak_is_the_best_run_and_an_older_day_can_join_two_runs() {
        let mut p = Progress::default();
        assert_eq!(p.apply(Contribution::Day(10)), 1.0);
        assert_eq!(p.apply(Contribution::Day(11)), 2.0);
        assert_eq!(p.apply(Contribution::Day(11)), 2.0);
        assert_eq!(p.apply(Contribution::Day(13)), 2.0);
        assert_eq!(p.apply(Contribution::Day(14)), 2.0);
        assert_eq!(p.runs, vec![(10, 11), (13, 14)]);
        // The gap is filled by an older event: one run of five.
        assert_eq!(p.apply(Contribution::Day(12)), 5.0);
        assert_eq!(p.runs, vec![(10, 14)]);
        // A missed day starts over; the best streak stays.
        assert_eq!(p.apply(Contribution::Day(20)), 5.0);
        assert_eq!(p.apply(Contribution::Day(8)), 5.0);
        assert_eq!(p.runs, vec![(8, 8), (10, 14), (20, 20)]);
        assert_eq!(p.apply(Contribution::Day(9)), 7.0);
        assert_eq!(p.runs, vec![(8, 14), (20, 20)]);
    }

    #[test]
    fn a_streak_day_is_the_local_date_in_its_zone() {
        for zone in [
            "UTC",
            "America/Los_Angeles",
            "Asia/Tokyo",
            "Australia/Lord_Howe",
            "Pacific/Kiritimati",
            "America/St_Johns",
        ] {
            let metric = Metric::from_json(
                &json!({"event_type": "x", "aggregation": "streak", "timezone": zone}),
            )
            .unwrap();
            let tz = jiff::tz::TimeZone::get(zone).unwrap();
            // Every 37 minutes over two years, across every change of offset.
            let start = jiff::Timestamp::from_second(1_700_000_000).unwrap();
            for i in 0..(2 * 365 * 24 * 60 / 37) {
                let at = start + jiff::SignedDuration::from_mins(37 * i);
                let event = Event::from_stored(json!({
                    "event_id": "e", "type": "x", "occurred_at": at.to_string(),
                    "actor": {"user_id": "u"}
                }))
                .unwrap();
                let expected = at
                    .to_zoned(tz.clone())
                    .date()
                    .since(jiff::civil::date(1970, 1, 1))
                    .unwrap()
                    .get_days();
                assert_eq!(
                    metric.contribution(&event),
                    Some(Contribution::Day(expected)),
                    "{zone} at {at}"
                );
            }
        }
    }

    #[test]
    fn a_sum_stays_finite() {
        let mut p = Progress::default();
        p.apply(Contribution::Add(1e308));
        assert_eq!(p.apply(Contribution::Add(1e308)), f64::MAX);
        assert_eq!(p.apply(Contribution::Add(-f64::MAX)), 0.0);
    }

    #[test]
    fn steps_complete_once_when_crossed() {
        let steps =
            steps_from_json(&json!([{"threshold": 2}, {"threshold": 3}, {"threshold": 10}]))
                .unwrap();
        assert!(newly_completed(&steps, &[false; 3], 1.0).is_empty());
        assert_eq!(newly_completed(&steps, &[false; 3], 3.0), vec![0, 1]);
        assert!(newly_completed(&steps, &[true, true, false], 3.0).is_empty());
        assert_eq!(newly_completed(&steps, &[true, true, false], 12.0), vec![2]);
    }
}
