//! Admin access model: the scopes an API key (or an admin JWT, a console user, a tenant HMAC signature)
//! carries, and which tenants it may act on. Pure data; the server's auth extractor decides with it.

use crate::ValidationError;
use crate::ids::TenantId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// One permission of SPEC §3.3. `Admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "leaderboards:read")]
    LeaderboardsRead,
    #[serde(rename = "leaderboards:write")]
    LeaderboardsWrite,
    #[serde(rename = "rewards:read")]
    RewardsRead,
    #[serde(rename = "rewards:write")]
    RewardsWrite,
    #[serde(rename = "achievements:read")]
    AchievementsRead,
    #[serde(rename = "achievements:write")]
    AchievementsWrite,
    #[serde(rename = "tenants:read")]
    TenantsRead,
    #[serde(rename = "tenants:write")]
    TenantsWrite,
    #[serde(rename = "keys:write")]
    KeysWrite,
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::LeaderboardsRead,
        Scope::LeaderboardsWrite,
        Scope::RewardsRead,
        Scope::RewardsWrite,
        Scope::AchievementsRead,
        Scope::AchievementsWrite,
        Scope::TenantsRead,
        Scope::TenantsWrite,
        Scope::KeysWrite,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LeaderboardsRead => "leaderboards:read",
            Scope::LeaderboardsWrite => "leaderboards:write",
            Scope::RewardsRead => "rewards:read",
            Scope::RewardsWrite => "rewards:write",
            Scope::AchievementsRead => "achievements:read",
            Scope::AchievementsWrite => "achievements:write",
            Scope::TenantsRead => "tenants:read",
            Scope::TenantsWrite => "tenants:write",
            Scope::KeysWrite => "keys:write",
            Scope::Admin => "admin",
        }
    }

    /// What the scope lets a credential do, in a few words for people choosing scopes (the console
    /// shows it next to each scope).
    pub fn label(self) -> &'static str {
        match self {
            Scope::LeaderboardsRead => "Read leaderboards",
            Scope::LeaderboardsWrite => "Create and change leaderboards",
            Scope::RewardsRead => "Read rewards",
            Scope::RewardsWrite => "Manage rewards",
            Scope::AchievementsRead => "Read achievements",
            Scope::AchievementsWrite => "Manage achievements",
            Scope::TenantsRead => "Read tenants",
            Scope::TenantsWrite => "Create tenants, rotate secrets",
            Scope::KeysWrite => "Manage API keys",
            Scope::Admin => "Everything",
        }
    }

    pub fn parse(raw: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, with `admin` standing for all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    pub fn all() -> Self {
        Scopes([Scope::Admin].into_iter().collect())
    }

    /// Parses the `scopes` member of an API-key request: a non-empty list of known scope names.
    pub fn parse(field: &str, raw: &[String]) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::field(
                field,
                "at least one scope is required",
            ));
        }
        let mut set = BTreeSet::new();
        for (i, name) in raw.iter().enumerate() {
            let scope = Scope::parse(name).ok_or_else(|| {
                ValidationError::field(format!("{field}[{i}]"), format!("unknown scope '{name}'"))
            })?;
            set.insert(scope);
        }
        Ok(Scopes(set))
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.0.contains(&Scope::Admin) || self.0.contains(&scope)
    }

    /// True when every scope of `other` is allowed by `self` (a key can only grant what it holds).
    pub fn covers(&self, other: &Scopes) -> bool {
        other.0.iter().all(|s| self.allows(*s))
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(scopes: I) -> Self {
        Scopes(scopes.into_iter().collect())
    }
}

/// Which tenants a credential may act on: every tenant (`["*"]`) or a fixed list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantAccess {
    All,
    Only(BTreeSet<TenantId>),
}

impl TenantAccess {
    pub fn one(tenant: TenantId) -> Self {
        TenantAccess::Only([tenant].into_iter().collect())
    }

    /// Parses the `tenant_ids` member: `["*"]` or a non-empty list of tenant ids.
    pub fn parse(field: &str, raw: &[String]) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::field(
                field,
                "at least one tenant id (or \"*\") is required",
            ));
        }
        if raw.iter().any(|t| t == "*") {
            if raw.len() != 1 {
                return Err(ValidationError::field(
                    field,
                    "\"*\" cannot be combined with other tenant ids",
                ));
            }
            return Ok(TenantAccess::All);
        }
        let mut set = BTreeSet::new();
        for (i, t) in raw.iter().enumerate() {
            let id = TenantId::parse(t)
                .map_err(|e| ValidationError::field(format!("{field}[{i}]"), e))?;
            set.insert(id);
        }
        Ok(TenantAccess::Only(set))
    }

    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            TenantAccess::All => true,
            TenantAccess::Only(set) => set.contains(tenant),
        }
    }

    /// True when every tenant of `other` is allowed by `self`.
    pub fn covers(&self, other: &TenantAccess) -> bool {
        match (self, other) {
            (TenantAccess::All, _) => true,
            (TenantAccess::Only(_), TenantAccess::All) => false,
            (TenantAccess::Only(mine), TenantAccess::Only(theirs)) => theirs.is_subset(mine),
        }
    }

    /// The wire form: `["*"]` or the list of ids.
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            TenantAccess::All => vec!["*".to_owned()],
            TenantAccess::Only(set) => set.iter().map(|t| t.to_string()).collect(),
        }
    }
}

impl Serialize for TenantAccess {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_strings().serialize(s)
    }
}

impl<'de> Deserialize<'de> for TenantAccess {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        TenantAccess::parse("tenant_ids", &raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_scope_allows_everything() {
        let s = Scopes::all();
        assert!(Scope::ALL.iter().all(|x| s.allows(*x)));
        let r = Scopes::from_iter([Scope::LeaderboardsRead]);
        assert!(!r.allows(Scope::LeaderboardsWrite));
        assert!(s.covers(&r));
        assert!(!r.covers(&s));
    }

    #[test]
    fn tenant_access_parses_and_covers() {
        let all = TenantAccess::parse("tenant_ids", &["*".into()]).unwrap();
        let one = TenantAccess::parse("tenant_ids", &["a".into()]).unwrap();
        assert!(all.covers(&one) && !one.covers(&all));
        assert!(one.allows("a") && !one.allows("b"));
        assert!(TenantAccess::parse("tenant_ids", &[]).is_err());
        assert!(TenantAccess::parse("tenant_ids", &["*".into(), "a".into()]).is_err());
        let e = TenantAccess::parse("tenant_ids", &["a b".into()]).unwrap_err();
        assert!(e.to_string().starts_with("tenant_ids[0]: "), "{e}");
        let e = Scopes::parse("scopes", &["nope".into()]).unwrap_err();
        assert_eq!(e.to_string(), "scopes[0]: unknown scope 'nope'");
    }
}
