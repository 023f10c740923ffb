//! The core's one error type: a validation failure that carries the path of the offending field as
//! data (`events[3].actor.user_id`), so callers that nest values prefix the path instead of editing
//! message strings.

use std::fmt;

/// One step of a field path: a member name or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Field(String),
    Index(usize),
}

/// A client-facing validation failure: where (`config.scoring.rules[0].points_expression`) and what
/// (`unknown function 'sqrt' at position 4`). Displayed as `"{path}: {message}"`, or the message alone
/// when it is about the value as a whole (or already names its field in prose, as contract texts do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    path: Vec<PathSegment>,
    message: String,
}

impl ValidationError {
    /// A message about the value as a whole, or one that names its field in prose (for messages fixed
    /// by the contract, such as "reset_day is required when type is 'weekly'").
    pub fn new(message: impl Into<String>) -> Self {
        ValidationError {
            path: Vec::new(),
            message: message.into(),
        }
    }

    /// A failure at `field`, a path such as `actor.user_id` or `rules[2].event_type`.
    pub fn field(field: impl fmt::Display, message: impl fmt::Display) -> Self {
        ValidationError {
            path: parse_path(&field.to_string()),
            message: message.to_string(),
        }
    }

    /// The same failure seen from the value that holds this one under `parent` (a path itself).
    pub fn within(mut self, parent: &str) -> Self {
        let mut path = parse_path(parent);
        path.append(&mut self.path);
        self.path = path;
        self
    }

    /// The same failure seen from the array that holds this value at `index`.
    pub fn at_index(mut self, index: usize) -> Self {
        self.path.insert(0, PathSegment::Index(index));
        self
    }

    /// The field path, e.g. `events[3].actor.user_id` (empty for the value as a whole).
    pub fn path(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                PathSegment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                PathSegment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path(), self.message)
        }
    }
}

/// `a.b[3].c` as segments. A name is everything between dots and brackets.
fn parse_path(raw: &str) -> Vec<PathSegment> {
    let mut segments = Vec::new();
    for part in raw.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segments.push(PathSegment::Field(name.to_owned()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else {
                segments.push(PathSegment::Field(rest.to_owned()));
                break;
            };
            match inner[..end].parse::<usize>() {
                Ok(i) => segments.push(PathSegment::Index(i)),
                Err(_) => segments.push(PathSegment::Field(inner[..end].to_owned())),
            }
            rest = &inner[end + 1..];
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_data_and_nest_without_string_editing() {
        let e = ValidationError::field("actor.user_id", "is required");
        assert_eq!(e.to_string(), "actor.user_id: is required");
        let e = e.at_index(3).within("events");
        assert_eq!(e.path(), "events[3].actor.user_id");
        assert_eq!(e.message(), "is required");
        assert_eq!(e.to_string(), "events[3].actor.user_id: is required");
        let whole = ValidationError::new("expected a JSON object")
            .at_index(0)
            .within("events");
        assert_eq!(whole.to_string(), "events[0]: expected a JSON object");
        let nested =
            ValidationError::field("rules[2].conditions[0].op", "unknown").within("config.scoring");
        assert_eq!(nested.path(), "config.scoring.rules[2].conditions[0].op");
        assert_eq!(ValidationError::new("free text").to_string(), "free text");
    }
}
