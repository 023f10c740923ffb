//! The core's one error type: a validation failure whose message names the offending field.

/// A client-facing validation failure. The message always names the field it is about, e.g.
/// `config.scoring.rules[0].points_expression: unknown function 'sqrt' at position 4`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

impl ValidationError {
    /// A message that already names its field (for messages fixed by the contract).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// `"{field}: {message}"`.
    pub fn field(field: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Self(format!("{field}: {message}"))
    }
}
