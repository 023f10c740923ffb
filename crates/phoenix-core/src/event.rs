//! Gameplay events as Phoenix accepts them (SPEC §5): parsing with per-field messages, the rules on
//! `occurred_at` (at most 5 minutes ahead, not older than the dedupe horizon), and field look-ups for
//! filters, conditions and points expressions.

use crate::ValidationError;
use crate::field::{FieldPath, FieldSource};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

/// How far in the future an `occurred_at` may be (clock skew between game servers and Phoenix).
pub const MAX_FUTURE: SignedDuration = SignedDuration::from_secs(300);
/// Longest `event_id`, `type` and `actor.user_id`.
pub const MAX_ID_CHARS: usize = 128;

/// One validated event. `body` is the normalized JSON (`event_id`, `type`, `actor`, `occurred_at`,
/// `attrs`; anything else, such as a body `tenant_id`, is dropped), which is what gets stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub occurred_at: Timestamp,
    body: Value,
}

/// The limits an event is checked against at acceptance.
#[derive(Debug, Clone, Copy)]
pub struct EventRules {
    pub now: Timestamp,
    /// Events older than this are refused, so no retry can ever be counted twice.
    pub dedupe_horizon: SignedDuration,
}

/// The stored member holding a per-player dedupe key.
const DEDUPE_KEY: &str = "dedupe_key";

fn is_event_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// Takes a required member out of `obj`: missing or `null` is "is required".
fn take(obj: &mut Map<String, Value>, key: &str, path: &str) -> Result<Value, ValidationError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Err(ValidationError::field(path, "is required")),
        Some(v) => Ok(v),
    }
}

fn bounded_string(path: &str, value: Value) -> Result<String, ValidationError> {
    let Value::String(s) = value else {
        return Err(ValidationError::field(path, "expected a string"));
    };
    let n = s.chars().count();
    if n == 0 || n > MAX_ID_CHARS {
        return Err(ValidationError::field(
            path,
            format!("must be 1 to {MAX_ID_CHARS} characters long"),
        ));
    }
    Ok(s)
}

/// Formats a horizon for messages: whole days when it is, else seconds.
fn describe(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs % 86_400 == 0 {
        let days = secs / 86_400;
        format!("{days} day{}", if days == 1 { "" } else { "s" })
    } else {
        format!("{secs} seconds")
    }
}

impl Event {
    /// Parses one event. Every failure names its field: `occurred_at: is more than 5 minutes in the
    /// future`, `actor.user_id: is required`, ...
    pub fn from_json(value: &Value, rules: EventRules) -> Result<Event, ValidationError> {
        Self::from_value(value.clone(), rules)
    }

    /// [`Event::from_json`] taking the value by ownership: its maps move into the event, nothing is
    /// copied (the ingest hot path).
    pub fn from_value(value: Value, rules: EventRules) -> Result<Event, ValidationError> {
        let Value::Object(mut obj) = value else {
            return Err(ValidationError::new("an event must be a JSON object"));
        };

        let event_id = match take(&mut obj, "event_id", "event_id")? {
            Value::String(s) => s,
            _ => return Err(ValidationError::field("event_id", "expected a string")),
        };
        if event_id.is_empty()
            || event_id.len() > MAX_ID_CHARS
            || !event_id.chars().all(is_event_id_char)
        {
            return Err(ValidationError::field(
                "event_id",
                format!(
                    "must be 1 to {MAX_ID_CHARS} characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'"
                ),
            ));
        }
        let event_type = bounded_string("type", take(&mut obj, "type", "type")?)?;

        let Value::Object(mut actor) = take(&mut obj, "actor", "actor")? else {
            return Err(ValidationError::field("actor", "expected an object"));
        };
        let user_id = bounded_string(
            "actor.user_id",
            take(&mut actor, "user_id", "actor.user_id")?,
        )?;
        let metadata = match actor.remove("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                return Err(ValidationError::field(
                    "actor.metadata",
                    "expected an object",
                ));
            }
        };

        let Value::String(occurred_raw) = take(&mut obj, "occurred_at", "occurred_at")? else {
            return Err(ValidationError::field(
                "occurred_at",
                "expected an RFC 3339 timestamp string",
            ));
        };
        let occurred_at: Timestamp = occurred_raw.parse().map_err(|_| {
            ValidationError::field(
                "occurred_at",
                format!(
                    "'{occurred_raw}' is not an RFC 3339 timestamp (e.g. 2025-01-01T12:00:00Z)"
                ),
            )
        })?;
        if occurred_at
            > rules
                .now
                .saturating_add(MAX_FUTURE)
                .unwrap_or(Timestamp::MAX)
        {
            return Err(ValidationError::field(
                "occurred_at",
                "is more than 5 minutes in the future",
            ));
        }
        if occurred_at
            < rules
                .now
                .saturating_sub(rules.dedupe_horizon)
                .unwrap_or(Timestamp::MIN)
        {
            return Err(ValidationError::field(
                "occurred_at",
                format!(
                    "is older than the dedupe horizon of {}; such an event can no longer be accepted",
                    describe(rules.dedupe_horizon)
                ),
            ));
        }

        let attrs = match take(&mut obj, "attrs", "attrs")? {
            Value::Object(m) => m,
            _ => return Err(ValidationError::field("attrs", "expected an object")),
        };

        let mut actor_out = Map::new();
        actor_out.insert("user_id".into(), Value::String(user_id));
        if let Some(m) = metadata {
            actor_out.insert("metadata".into(), Value::Object(m));
        }
        let mut body = Map::new();
        body.insert("event_id".into(), Value::String(event_id.clone()));
        body.insert("type".into(), Value::String(event_type));
        body.insert("actor".into(), Value::Object(actor_out));
        body.insert("occurred_at".into(), Value::String(occurred_at.to_string()));
        body.insert("attrs".into(), Value::Object(attrs));
        Ok(Event {
            event_id,
            occurred_at,
            body: Value::Object(body),
        })
    }

    /// Deduplicates this event per player rather than per tenant (an event written with an
    /// `events:write:self` token, SPEC §3.2), so a player cannot take an id a game server will use: its
    /// key becomes `~{user_id}~{event_id}`. `~` never occurs in an event id, so no such key equals a
    /// game server's, and the user id ends at the last `~`. The key is stored with the event, so a
    /// replay of the log keys it the same way.
    pub fn dedupe_per_player(&mut self) {
        let key = format!("~{}~{}", self.user_id(), self.event_id);
        if let Value::Object(body) = &mut self.body {
            body.insert(DEDUPE_KEY.into(), Value::String(key.clone()));
        }
        self.event_id = key;
    }

    /// The key this event is deduplicated by: its `event_id`, or the per-player key of
    /// [`Event::dedupe_per_player`].
    pub fn dedupe_key_of(body: &Value) -> Option<&str> {
        body.get(DEDUPE_KEY)
            .or_else(|| body.get("event_id"))
            .and_then(Value::as_str)
    }

    /// Rebuilds an event from its stored (normalized) body, without the acceptance-time checks.
    pub fn from_stored(body: Value) -> Option<Event> {
        let event_id = Event::dedupe_key_of(&body)?.to_owned();
        let occurred_at = body.get("occurred_at")?.as_str()?.parse().ok()?;
        body.get("type")?.as_str()?;
        body.get("actor")?.get("user_id")?.as_str()?;
        Some(Event {
            event_id,
            occurred_at,
            body,
        })
    }

    pub fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    pub fn user_id(&self) -> &str {
        self.body["actor"]["user_id"].as_str().unwrap_or_default()
    }

    /// The normalized JSON, as stored.
    pub fn body(&self) -> &Value {
        &self.body
    }
}

impl FieldSource for Event {
    fn field(&self, path: &FieldPath) -> Option<&Value> {
        self.body.field(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> EventRules {
        EventRules {
            now: "2026-01-10T12:00:00Z".parse().unwrap(),
            dedupe_horizon: SignedDuration::from_hours(24 * 7),
        }
    }

    fn good() -> Value {
        json!({
            "tenant_id": "ignored",
            "event_id": "evt_1:a.b-c",
            "type": "match.completed",
            "actor": {"user_id": "user-1", "metadata": {"region": "eu"}},
            "occurred_at": "2026-01-10T11:59:00Z",
            "attrs": {"score": 50}
        })
    }

    fn error_for(mutate: impl FnOnce(&mut Value)) -> String {
        let mut v = good();
        mutate(&mut v);
        Event::from_json(&v, rules()).unwrap_err().to_string()
    }

    #[test]
    fn a_good_event_is_normalized() {
        let e = Event::from_json(&good(), rules()).unwrap();
        assert_eq!(e.event_id, "evt_1:a.b-c");
        assert_eq!(e.event_type(), "match.completed");
        assert_eq!(e.user_id(), "user-1");
        assert!(e.body().get("tenant_id").is_none());
        let path = FieldPath::parse("actor.metadata.region").unwrap();
        assert_eq!(e.field(&path), Some(&json!("eu")));
        assert_eq!(Event::from_stored(e.body().clone()), Some(e));
    }

    #[test]
    fn every_field_is_checked_by_name() {
        type Mutation = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|v| drop(v.as_object_mut().unwrap().remove("event_id"))),
                "event_id: is required",
            ),
            (
                Box::new(|v| v["event_id"] = json!(5)),
                "event_id: expected a string",
            ),
            (
                Box::new(|v| v["event_id"] = json!("a b")),
                "event_id: must be 1 to 128",
            ),
            (
                Box::new(|v| v["event_id"] = json!("x".repeat(129))),
                "event_id: must be 1 to 128",
            ),
            (
                Box::new(|v| v["type"] = json!("")),
                "type: must be 1 to 128",
            ),
            (
                Box::new(|v| drop(v.as_object_mut().unwrap().remove("type"))),
                "type: is required",
            ),
            (
                Box::new(|v| v["actor"] = json!("u")),
                "actor: expected an object",
            ),
            (
                Box::new(|v| v["actor"] = json!({})),
                "actor.user_id: is required",
            ),
            (
                Box::new(|v| v["actor"]["user_id"] = json!("u".repeat(129))),
                "actor.user_id: must be 1 to 128",
            ),
            (
                Box::new(|v| v["actor"]["metadata"] = json!([1])),
                "actor.metadata: expected an object",
            ),
            (
                Box::new(|v| v["occurred_at"] = json!("yesterday")),
                "occurred_at: 'yesterday' is not an RFC 3339",
            ),
            (
                Box::new(|v| v["occurred_at"] = json!(17)),
                "occurred_at: expected an RFC 3339",
            ),
            (
                Box::new(|v| v["occurred_at"] = json!("2026-01-10T12:05:01Z")),
                "occurred_at: is more than 5 minutes in the future",
            ),
            (
                Box::new(|v| v["occurred_at"] = json!("2026-01-03T11:59:59Z")),
                "occurred_at: is older than the dedupe horizon of 7 days",
            ),
            (
                Box::new(|v| drop(v.as_object_mut().unwrap().remove("attrs"))),
                "attrs: is required",
            ),
            (
                Box::new(|v| v["attrs"] = json!([])),
                "attrs: expected an object",
            ),
        ];
        for (mutate, expected) in cases {
            let got = error_for(mutate);
            assert!(
                got.starts_with(expected),
                "expected '{expected}', got '{got}'"
            );
        }
        assert!(Event::from_json(&json!([]), rules()).is_err());
        // Exactly five minutes ahead is still fine.
        let mut v = good();
        v["occurred_at"] = json!("2026-01-10T12:05:00Z");
        assert!(Event::from_json(&v, rules()).is_ok());
    }
}
