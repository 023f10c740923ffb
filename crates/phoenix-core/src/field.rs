//! Field paths into an event (`type`, `actor.user_id`, `actor.metadata.<key...>`, `attrs.<key...>`) and
//! the [`FieldSource`] lookup that filters, conditions and expressions read events through, so none of
//! them depends on how an event is stored.

use serde_json::Value;
use std::fmt;

/// Longest field path accepted, so a hostile config cannot make every lookup walk a huge key list.
pub const MAX_FIELD_PATH_CHARS: usize = 256;

const EXPECTED_PATHS: &str = "expected type, actor.user_id, actor.metadata.<key> or attrs.<key>";

/// A parsed reference to one value of an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldPath {
    /// `type`: the event type.
    Type,
    /// `actor.user_id`.
    ActorUserId,
    /// `actor.metadata.<key>[.<key>...]`: the keys below `actor.metadata` (never empty).
    ActorMetadata(Vec<String>),
    /// `attrs.<key>[.<key>...]`: the keys below `attrs` (never empty).
    Attrs(Vec<String>),
}

impl FieldPath {
    /// Parses the dotted form. The error text does not name the config field it came from: the caller
    /// prefixes it with the JSON path it knows.
    pub fn parse(raw: &str) -> Result<FieldPath, String> {
        if raw.chars().count() > MAX_FIELD_PATH_CHARS {
            return Err(format!(
                "field path is longer than {MAX_FIELD_PATH_CHARS} characters"
            ));
        }
        match raw {
            "type" => return Ok(FieldPath::Type),
            "actor.user_id" => return Ok(FieldPath::ActorUserId),
            "attrs" | "actor.metadata" => {
                return Err(format!(
                    "field path '{raw}' needs a key, e.g. '{raw}.score'"
                ));
            }
            _ => {}
        }
        let (keys, build): (&str, fn(Vec<String>) -> FieldPath) =
            if let Some(rest) = raw.strip_prefix("attrs.") {
                (rest, FieldPath::Attrs)
            } else if let Some(rest) = raw.strip_prefix("actor.metadata.") {
                (rest, FieldPath::ActorMetadata)
            } else {
                return Err(format!("unknown field path '{raw}'; {EXPECTED_PATHS}"));
            };
        let mut parsed = Vec::new();
        for key in keys.split('.') {
            if key.is_empty() {
                return Err(format!("field path '{raw}' has an empty key"));
            }
            if !key.chars().all(is_key_char) {
                return Err(format!(
                    "field path '{raw}' has an invalid key '{key}'; keys use A-Z, a-z, 0-9, '_' and '-'"
                ));
            }
            parsed.push(key.to_owned());
        }
        Ok(build(parsed))
    }
}

/// Characters allowed in one key of a field path.
pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl std::str::FromStr for FieldPath {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        FieldPath::parse(raw)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (root, keys) = match self {
            FieldPath::Type => return f.write_str("type"),
            FieldPath::ActorUserId => return f.write_str("actor.user_id"),
            FieldPath::ActorMetadata(keys) => ("actor.metadata", keys),
            FieldPath::Attrs(keys) => ("attrs", keys),
        };
        f.write_str(root)?;
        for key in keys {
            write!(f, ".{key}")?;
        }
        Ok(())
    }
}

/// Anything a [`FieldPath`] can be looked up in. Scoring implements it for its own event type; the
/// JSON implementation below serves tests and ad-hoc evaluation.
pub trait FieldSource {
    /// The value at `path`, or `None` when the event does not have it.
    fn field(&self, path: &FieldPath) -> Option<&Value>;
}

impl<T: FieldSource + ?Sized> FieldSource for &T {
    fn field(&self, path: &FieldPath) -> Option<&Value> {
        (**self).field(path)
    }
}

/// A JSON event shaped like `{"type": .., "actor": {"user_id": .., "metadata": {..}}, "attrs": {..}}`.
impl FieldSource for Value {
    fn field(&self, path: &FieldPath) -> Option<&Value> {
        match path {
            FieldPath::Type => self.get("type"),
            FieldPath::ActorUserId => self.get("actor")?.get("user_id"),
            FieldPath::ActorMetadata(keys) => descend(self.get("actor")?.get("metadata")?, keys),
            FieldPath::Attrs(keys) => descend(self.get("attrs")?, keys),
        }
    }
}

/// Follows `keys` through nested JSON objects, e.g. `metadata` and `["guild", "id"]`.
pub fn descend<'a>(root: &'a Value, keys: &[String]) -> Option<&'a Value> {
    keys.iter()
        .try_fold(root, |value, key| value.as_object()?.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_root() {
        assert_eq!(FieldPath::parse("type"), Ok(FieldPath::Type));
        assert_eq!(
            FieldPath::parse("actor.user_id"),
            Ok(FieldPath::ActorUserId)
        );
        assert_eq!(
            FieldPath::parse("actor.metadata.region"),
            Ok(FieldPath::ActorMetadata(vec!["region".into()]))
        );
        assert_eq!(
            FieldPath::parse("attrs.stats.kill-count_2"),
            Ok(FieldPath::Attrs(vec![
                "stats".into(),
                "kill-count_2".into()
            ]))
        );
    }

    #[test]
    fn display_gives_back_the_dotted_form() {
        for raw in [
            "type",
            "actor.user_id",
            "actor.metadata.a.b",
            "attrs.score",
            "attrs.x.y-z.0",
        ] {
            assert_eq!(
                FieldPath::parse(raw).map(|p| p.to_string()),
                Ok(raw.to_owned())
            );
        }
    }

    #[test]
    fn rejects_bad_paths_with_a_reason() {
        let err = |raw: &str| FieldPath::parse(raw).unwrap_err();
        assert_eq!(
            err("score"),
            "unknown field path 'score'; expected type, actor.user_id, actor.metadata.<key> or attrs.<key>"
        );
        assert!(err("actor").starts_with("unknown field path 'actor'"));
        assert!(err("actor.name").starts_with("unknown field path"));
        assert!(err("type.x").starts_with("unknown field path"));
        assert!(err("").starts_with("unknown field path ''"));
        assert_eq!(
            err("attrs"),
            "field path 'attrs' needs a key, e.g. 'attrs.score'"
        );
        assert!(err("actor.metadata").contains("needs a key"));
        assert_eq!(err("attrs."), "field path 'attrs.' has an empty key");
        assert_eq!(
            err("attrs.a..b"),
            "field path 'attrs.a..b' has an empty key"
        );
        assert!(err("attrs.a b").contains("invalid key 'a b'"));
        assert!(err("attrs.é").contains("invalid key"));
        assert!(err(&format!("attrs.{}", "a".repeat(300))).contains("longer than 256"));
    }

    #[test]
    fn looks_up_values_in_a_json_event() {
        let event = json!({
            "type": "match.completed",
            "actor": {"user_id": "u1", "metadata": {"region": "eu", "guild": {"id": 7}}},
            "attrs": {"score": 10, "nested": {"deep": true}}
        });
        let get = |raw: &str| event.field(&FieldPath::parse(raw).unwrap()).cloned();
        assert_eq!(get("type"), Some(json!("match.completed")));
        assert_eq!(get("actor.user_id"), Some(json!("u1")));
        assert_eq!(get("actor.metadata.region"), Some(json!("eu")));
        assert_eq!(get("actor.metadata.guild.id"), Some(json!(7)));
        assert_eq!(get("attrs.score"), Some(json!(10)));
        assert_eq!(get("attrs.nested.deep"), Some(json!(true)));
        assert_eq!(get("attrs.missing"), None);
        assert_eq!(get("attrs.score.below_a_number"), None);
        assert_eq!(json!({}).field(&FieldPath::ActorUserId), None);
    }
}
