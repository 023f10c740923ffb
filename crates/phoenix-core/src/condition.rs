//! Conditions (`{"gte": 10, "lt": 20}`) and filters (`{field_path: condition}`): parsed and checked once
//! when a leaderboard is created, then matched against events without re-reading any JSON config.
//! Used by `scope.filters` and by each scoring rule's `conditions`.

use crate::ValidationError;
use crate::field::{FieldPath, FieldSource};
use serde_json::{Map, Number, Value};

/// Most values an `in` / `nin` list may hold, so matching stays cheap per event.
pub const MAX_SET_VALUES: usize = 1000;
/// Most fields one filter object may constrain.
pub const MAX_FILTERS: usize = 100;

const OPERATORS: &str = "eq, ne, in, nin, gt, gte, lt, lte, exists";

/// One operator of a condition with its checked operand.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Gt(Number),
    Gte(Number),
    Lt(Number),
    Lte(Number),
    Exists(bool),
}

impl Operator {
    fn name(&self) -> &'static str {
        match self {
            Operator::Eq(_) => "eq",
            Operator::Ne(_) => "ne",
            Operator::In(_) => "in",
            Operator::Nin(_) => "nin",
            Operator::Gt(_) => "gt",
            Operator::Gte(_) => "gte",
            Operator::Lt(_) => "lt",
            Operator::Lte(_) => "lte",
            Operator::Exists(_) => "exists",
        }
    }

    fn operand(&self) -> Value {
        match self {
            Operator::Eq(v) | Operator::Ne(v) => v.clone(),
            Operator::In(vs) | Operator::Nin(vs) => Value::Array(vs.clone()),
            Operator::Gt(n) | Operator::Gte(n) | Operator::Lt(n) | Operator::Lte(n) => {
                Value::Number(n.clone())
            }
            Operator::Exists(b) => Value::Bool(*b),
        }
    }

    fn holds(&self, value: Option<&Value>) -> bool {
        match self {
            Operator::Eq(expected) => value.is_some_and(|v| scalar_eq(v, expected)),
            Operator::Ne(expected) => !value.is_some_and(|v| scalar_eq(v, expected)),
            Operator::In(set) => value.is_some_and(|v| set.iter().any(|e| scalar_eq(v, e))),
            Operator::Nin(set) => !value.is_some_and(|v| set.iter().any(|e| scalar_eq(v, e))),
            Operator::Gt(bound) => compare(value, bound, |v, b| v > b),
            Operator::Gte(bound) => compare(value, bound, |v, b| v >= b),
            Operator::Lt(bound) => compare(value, bound, |v, b| v < b),
            Operator::Lte(bound) => compare(value, bound, |v, b| v <= b),
            Operator::Exists(wanted) => value.is_some() == *wanted,
        }
    }
}

/// Numbers compare by value (`1 == 1.0`); other scalars compare exactly. Arrays and objects in the event
/// never equal an operand, because operands are scalars.
fn scalar_eq(value: &Value, expected: &Value) -> bool {
    match (value, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

fn compare(value: Option<&Value>, bound: &Number, holds: fn(f64, f64) -> bool) -> bool {
    match (value.and_then(Value::as_f64), bound.as_f64()) {
        (Some(v), Some(b)) => holds(v, b),
        _ => false,
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// A set of operators that must all hold for one event value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    operators: Vec<Operator>,
}

impl Condition {
    /// Parses `{"operator": operand, ...}`. `path` is the full JSON path of the condition in the request
    /// body (e.g. `config.scope.filters.attrs.victory`) and starts every error message.
    pub fn parse(path: &str, value: &Value) -> Result<Condition, ValidationError> {
        let Value::Object(members) = value else {
            return Err(ValidationError::field(
                path,
                format!("expected an object of operators ({OPERATORS})"),
            ));
        };
        if members.is_empty() {
            return Err(ValidationError::field(
                path,
                format!("a condition needs at least one operator ({OPERATORS})"),
            ));
        }
        let mut operators = Vec::with_capacity(members.len());
        for (name, operand) in members {
            let at = || format!("{path}.{name}");
            let operator = match name.as_str() {
                "eq" => Operator::Eq(scalar(&at(), operand)?),
                "ne" => Operator::Ne(scalar(&at(), operand)?),
                "in" => Operator::In(scalar_set(&at(), operand)?),
                "nin" => Operator::Nin(scalar_set(&at(), operand)?),
                "gt" => Operator::Gt(number(&at(), operand)?),
                "gte" => Operator::Gte(number(&at(), operand)?),
                "lt" => Operator::Lt(number(&at(), operand)?),
                "lte" => Operator::Lte(number(&at(), operand)?),
                "exists" => match operand {
                    Value::Bool(b) => Operator::Exists(*b),
                    _ => return Err(ValidationError::field(at(), "expected a boolean")),
                },
                other => {
                    return Err(ValidationError::field(
                        path,
                        format!("unknown operator '{other}'; expected one of {OPERATORS}"),
                    ));
                }
            };
            operators.push(operator);
        }
        Ok(Condition { operators })
    }

    /// Whether every operator holds for `value` (`None` when the event lacks the field).
    pub fn matches(&self, value: Option<&Value>) -> bool {
        self.operators.iter().all(|op| op.holds(value))
    }

    /// The JSON form this condition was parsed from.
    pub fn to_json(&self) -> Value {
        let members: Map<String, Value> = self
            .operators
            .iter()
            .map(|op| (op.name().to_owned(), op.operand()))
            .collect();
        Value::Object(members)
    }
}

fn scalar(path: &str, operand: &Value) -> Result<Value, ValidationError> {
    if is_scalar(operand) {
        Ok(operand.clone())
    } else {
        Err(ValidationError::field(
            path,
            "expected a string, number, boolean or null",
        ))
    }
}

fn scalar_set(path: &str, operand: &Value) -> Result<Vec<Value>, ValidationError> {
    let Value::Array(values) = operand else {
        return Err(ValidationError::field(
            path,
            "expected a non-empty array of strings, numbers, booleans or nulls",
        ));
    };
    if values.is_empty() {
        return Err(ValidationError::field(path, "must not be empty"));
    }
    if values.len() > MAX_SET_VALUES {
        return Err(ValidationError::field(
            path,
            format!("at most {MAX_SET_VALUES} values are allowed"),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| scalar(&format!("{path}[{i}]"), v))
        .collect()
}

fn number(path: &str, operand: &Value) -> Result<Number, ValidationError> {
    match operand {
        Value::Number(n) => Ok(n.clone()),
        _ => Err(ValidationError::field(path, "expected a number")),
    }
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// `{field_path: condition}`: every condition must hold on its field for an event to pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(Vec<(FieldPath, Condition)>);

impl Filters {
    /// Parses `{field_path: condition, ...}`. `path` is the full JSON path of the object (e.g.
    /// `config.scope.filters`); messages name `path.<field_path>`.
    pub fn parse(path: &str, value: &Value) -> Result<Filters, ValidationError> {
        let Value::Object(members) = value else {
            return Err(ValidationError::field(
                path,
                "expected an object of {field_path: condition}",
            ));
        };
        if members.len() > MAX_FILTERS {
            return Err(ValidationError::field(
                path,
                format!("at most {MAX_FILTERS} fields may be constrained"),
            ));
        }
        let mut filters = Vec::with_capacity(members.len());
        for (raw, condition) in members {
            let at = format!("{path}.{raw}");
            let field = FieldPath::parse(raw).map_err(|msg| ValidationError::field(&at, msg))?;
            filters.push((field, Condition::parse(&at, condition)?));
        }
        Ok(Filters(filters))
    }

    /// Whether the event passes every condition (an empty filter passes everything).
    pub fn matches<S: FieldSource + ?Sized>(&self, event: &S) -> bool {
        self.0
            .iter()
            .all(|(field, condition)| condition.matches(event.field(field)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(FieldPath, Condition)> {
        self.0.iter()
    }

    /// The JSON form these filters were parsed from.
    pub fn to_json(&self) -> Value {
        let members: Map<String, Value> = self
            .0
            .iter()
            .map(|(field, condition)| (field.to_string(), condition.to_json()))
            .collect();
        Value::Object(members)
    }
}

impl serde::Serialize for Filters {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PATH: &str = "config.scope.filters.attrs.x";

    fn cond(value: Value) -> Condition {
        Condition::parse(PATH, &value).unwrap()
    }

    fn err(value: Value) -> String {
        Condition::parse(PATH, &value).unwrap_err().to_string()
    }

    #[test]
    fn eq_and_ne_compare_scalars_with_numbers_by_value() {
        let eq = cond(json!({"eq": 1}));
        assert!(eq.matches(Some(&json!(1))));
        assert!(eq.matches(Some(&json!(1.0))));
        assert!(!eq.matches(Some(&json!("1"))));
        assert!(!eq.matches(Some(&json!([1]))));
        assert!(!eq.matches(None));
        assert!(cond(json!({"eq": true})).matches(Some(&json!(true))));
        assert!(!cond(json!({"eq": true})).matches(Some(&json!(1))));
        assert!(cond(json!({"eq": null})).matches(Some(&json!(null))));
        assert!(!cond(json!({"eq": null})).matches(None));
        assert!(cond(json!({"eq": "eu"})).matches(Some(&json!("eu"))));

        let ne = cond(json!({"ne": "eu"}));
        assert!(ne.matches(Some(&json!("na"))));
        assert!(!ne.matches(Some(&json!("eu"))));
        assert!(ne.matches(None), "ne holds on a missing value");
        assert!(!cond(json!({"ne": 2.0})).matches(Some(&json!(2))));
    }

    #[test]
    fn in_and_nin_test_membership() {
        let within = cond(json!({"in": ["na", "eu", 3]}));
        assert!(within.matches(Some(&json!("eu"))));
        assert!(within.matches(Some(&json!(3.0))));
        assert!(!within.matches(Some(&json!("apac"))));
        assert!(!within.matches(None));

        let outside = cond(json!({"nin": ["na", "eu"]}));
        assert!(outside.matches(Some(&json!("apac"))));
        assert!(!outside.matches(Some(&json!("na"))));
        assert!(outside.matches(None), "nin holds on a missing value");
    }

    #[test]
    fn comparisons_need_a_numeric_value() {
        let range = cond(json!({"gte": 10, "lt": 20.5}));
        assert!(range.matches(Some(&json!(10))));
        assert!(range.matches(Some(&json!(20.4))));
        assert!(!range.matches(Some(&json!(20.5))));
        assert!(!range.matches(Some(&json!(9.99))));
        assert!(!range.matches(Some(&json!("15"))));
        assert!(!range.matches(None));
        assert!(cond(json!({"gt": -1})).matches(Some(&json!(0))));
        assert!(!cond(json!({"gt": 0})).matches(Some(&json!(0))));
        assert!(cond(json!({"lte": 0})).matches(Some(&json!(0))));
        assert!(!cond(json!({"lt": 0})).matches(Some(&json!(true))));
    }

    #[test]
    fn exists_checks_presence() {
        assert!(cond(json!({"exists": true})).matches(Some(&json!(null))));
        assert!(!cond(json!({"exists": true})).matches(None));
        assert!(cond(json!({"exists": false})).matches(None));
        assert!(!cond(json!({"exists": false})).matches(Some(&json!(0))));
    }

    #[test]
    fn all_operators_must_hold() {
        let both = cond(json!({"exists": true, "ne": 5, "gt": 1}));
        assert!(both.matches(Some(&json!(4))));
        assert!(!both.matches(Some(&json!(5))));
        assert!(!both.matches(Some(&json!(0))));
    }

    #[test]
    fn rejects_malformed_conditions_naming_the_operator() {
        assert_eq!(
            err(json!({})),
            format!("{PATH}: a condition needs at least one operator ({OPERATORS})")
        );
        assert!(err(json!(5)).starts_with(&format!("{PATH}: expected an object")));
        assert_eq!(
            err(json!({"like": "x"})),
            format!("{PATH}: unknown operator 'like'; expected one of {OPERATORS}")
        );
        assert_eq!(
            err(json!({"eq": [1]})),
            format!("{PATH}.eq: expected a string, number, boolean or null")
        );
        assert_eq!(
            err(json!({"ne": {}})),
            format!("{PATH}.ne: expected a string, number, boolean or null")
        );
        assert_eq!(
            err(json!({"in": []})),
            format!("{PATH}.in: must not be empty")
        );
        assert!(
            err(json!({"nin": "x"}))
                .starts_with(&format!("{PATH}.nin: expected a non-empty array"))
        );
        assert_eq!(
            err(json!({"in": [1, [2]]})),
            format!("{PATH}.in[1]: expected a string, number, boolean or null")
        );
        let too_many: Vec<u32> = (0..=MAX_SET_VALUES as u32).collect();
        assert_eq!(
            err(json!({ "in": too_many })),
            format!("{PATH}.in: at most 1000 values are allowed")
        );
        for op in ["gt", "gte", "lt", "lte"] {
            assert_eq!(
                err(json!({ op: "5" })),
                format!("{PATH}.{op}: expected a number")
            );
        }
        assert_eq!(
            err(json!({"exists": "yes"})),
            format!("{PATH}.exists: expected a boolean")
        );
    }

    #[test]
    fn serializes_back_to_the_parsed_form() {
        let raw = json!({"eq": 1, "ne": null, "in": ["a", 2.5, true], "nin": [0], "gt": -3,
                         "gte": 1.5, "lt": 100, "lte": 99, "exists": true});
        let parsed = cond(raw.clone());
        assert_eq!(parsed.to_json(), raw);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), raw);
    }

    #[test]
    fn filters_match_events_through_field_paths() {
        let filters = Filters::parse(
            "config.scope.filters",
            &json!({
                "actor.metadata.region": {"in": ["na", "eu"]},
                "attrs.victory": {"eq": true},
                "type": {"ne": "practice"}
            }),
        )
        .unwrap();
        assert_eq!(filters.len(), 3);
        let event = |region: &str, victory: bool| {
            json!({"type": "match", "actor": {"user_id": "u", "metadata": {"region": region}},
                   "attrs": {"victory": victory}})
        };
        assert!(filters.matches(&event("eu", true)));
        assert!(!filters.matches(&event("apac", true)));
        assert!(!filters.matches(&event("na", false)));
        assert!(!filters.matches(&json!({"type": "match"})));
        assert!(Filters::default().matches(&json!({})));
    }

    #[test]
    fn filters_reject_unknown_fields_and_round_trip() {
        let err = Filters::parse("config.scope.filters", &json!({"score": {"eq": 1}}))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config.scope.filters.score: unknown field path 'score'"),
            "{err}"
        );
        let err = Filters::parse(
            "config.scope.filters",
            &json!({"attrs.mode": {"like": "x"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("config.scope.filters.attrs.mode: unknown operator 'like'"),
            "{err}"
        );
        let err = Filters::parse("config.scope.filters", &json!([]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config.scope.filters: expected an object"));

        let raw = json!({"attrs.a.b": {"gte": 2}, "actor.user_id": {"nin": ["bot"]}});
        let filters = Filters::parse("config.scope.filters", &raw).unwrap();
        assert_eq!(filters.to_json(), raw);
        assert_eq!(Filters::parse("x", &filters.to_json()).unwrap(), filters);
    }
}
