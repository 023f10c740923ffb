//! Identifier newtypes. Client input becomes one of these at the edge, so an invalid id cannot travel
//! inward: every constructor is a `parse` that checks the contract's format.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

fn is_slug_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses `^[A-Za-z0-9_-]{1,64}$`.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                if raw.is_empty() || raw.len() > 64 {
                    return Err(ValidationError::new(concat!(
                        $field,
                        " must be 1 to 64 characters long"
                    )));
                }
                if !raw.chars().all(is_slug_char) {
                    return Err(ValidationError::new(concat!(
                        $field,
                        " can only contain alphanumeric characters, hyphens, and underscores"
                    )));
                }
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

slug_id!(
    /// A tenant (one studio or game): `^[A-Za-z0-9_-]{1,64}$`.
    TenantId,
    "tenant_id"
);
slug_id!(
    /// A leaderboard, unique within its tenant: `^[A-Za-z0-9_-]{1,64}$`.
    LeaderboardId,
    "leaderboard_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaderboard_id_follows_the_contract() {
        assert!(LeaderboardId::parse("xp-weekly_global").is_ok());
        assert!(LeaderboardId::parse(&"a".repeat(64)).is_ok());
        assert!(LeaderboardId::parse(&"a".repeat(65)).is_err());
        assert!(LeaderboardId::parse("").is_err());
        let err = LeaderboardId::parse("bad id!").unwrap_err();
        assert_eq!(
            err.to_string(),
            "leaderboard_id can only contain alphanumeric characters, hyphens, and underscores"
        );
        assert!(TenantId::parse("tenant-prod-001").is_ok());
        assert!(TenantId::parse("é").is_err());
    }
}
