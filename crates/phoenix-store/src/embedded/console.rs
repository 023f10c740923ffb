//! Console users and their sessions in the embedded store: users with their password hashes, and login
//! sessions as refresh families whose tokens are kept by SHA-256 only. Part of the metadata fold: every
//! change is a journal record, and expired tokens are dropped as the fold goes.

use crate::model::{ConsoleSession, Role, SessionTokens, User};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A token hash as it appears in the journal and snapshots.
pub(super) fn hash_hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

fn unhex_hash(raw: &str) -> Result<[u8; 32], String> {
    hex::decode(raw)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "token hash is not 32 bytes".to_owned())
}

struct UserEntry {
    user: User,
    password_hash: String,
}

/// One login: the tokens it issued so far share it, and revoking it ends them all.
#[derive(Serialize, Deserialize, Clone)]
struct Family {
    username: String,
    revoked: bool,
    /// When the newest refresh token expires: after that nothing of the family can work.
    expires_at: Timestamp,
    /// The family's access tokens (normally one: a refresh replaces it).
    access: Vec<String>,
}

#[derive(Clone)]
struct Token {
    family_id: String,
    expires_at: Timestamp,
}

#[derive(Clone)]
struct RefreshToken {
    family_id: String,
    expires_at: Timestamp,
    /// Used once already: a second use revokes the family.
    spent: bool,
}

/// What a refresh token is, as the store decides what to do with it.
pub(super) enum RefreshLookup {
    Unknown,
    Spent { family_id: String },
    Live { family_id: String, user: User },
}

#[derive(Default)]
pub(super) struct Console {
    users: BTreeMap<String, UserEntry>,
    families: HashMap<String, Family>,
    access: HashMap<[u8; 32], Token>,
    refresh: HashMap<[u8; 32], RefreshToken>,
    /// Session records applied since the last sweep of expired tokens.
    since_sweep: u32,
}

/// Sweep expired tokens after this many session records (keeps memory bounded by live sessions).
const SWEEP_EVERY: u32 = 256;

impl Console {
    pub(super) fn user(&self, username: &str) -> Option<&User> {
        self.users.get(username).map(|e| &e.user)
    }

    pub(super) fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values().map(|e| &e.user)
    }

    pub(super) fn password_hash(&self, username: &str) -> Option<&str> {
        self.users.get(username).map(|e| e.password_hash.as_str())
    }

    pub(super) fn create_user(&mut self, user: User, password_hash: String) {
        self.users.insert(
            user.username.clone(),
            UserEntry {
                user,
                password_hash,
            },
        );
    }

    pub(super) fn update_user(
        &mut self,
        username: &str,
        role: Option<Role>,
        password_hash: Option<String>,
        at: Timestamp,
    ) -> Result<(), String> {
        let entry = self
            .users
            .get_mut(username)
            .ok_or("update of unknown user")?;
        if let Some(role) = role {
            entry.user.role = role;
        }
        let new_password = password_hash.is_some();
        if let Some(hash) = password_hash {
            entry.password_hash = hash;
        }
        entry.user.updated_at = at;
        if new_password {
            self.revoke_user_sessions(username);
        }
        Ok(())
    }

    pub(super) fn delete_user(&mut self, username: &str) -> Result<(), String> {
        self.users
            .remove(username)
            .ok_or("delete of unknown user")?;
        self.revoke_user_sessions(username);
        Ok(())
    }

    fn revoke_user_sessions(&mut self, username: &str) {
        for family in self.families.values_mut() {
            if family.username == username {
                family.revoked = true;
            }
        }
    }

    pub(super) fn start_session(
        &mut self,
        family_id: String,
        username: String,
        tokens: &SessionTokens,
    ) {
        self.families.insert(
            family_id.clone(),
            Family {
                username,
                revoked: false,
                expires_at: tokens.refresh_expires_at,
                access: vec![hash_hex(&tokens.access_hash)],
            },
        );
        self.insert_tokens(family_id, tokens);
        self.maybe_sweep();
    }

    pub(super) fn refresh_session(
        &mut self,
        family_id: String,
        spent: [u8; 32],
        tokens: &SessionTokens,
    ) -> Result<(), String> {
        let family = self
            .families
            .get_mut(&family_id)
            .ok_or("refresh of unknown session")?;
        // The new pair replaces the old one: the previous access token stops working too.
        for old in family.access.drain(..) {
            if let Ok(hash) = unhex_hash(&old) {
                self.access.remove(&hash);
            }
        }
        family.access.push(hash_hex(&tokens.access_hash));
        family.expires_at = tokens.refresh_expires_at;
        if let Some(token) = self.refresh.get_mut(&spent) {
            token.spent = true;
        }
        self.insert_tokens(family_id, tokens);
        self.maybe_sweep();
        Ok(())
    }

    pub(super) fn revoke_family(&mut self, family_id: &str) {
        if let Some(family) = self.families.get_mut(family_id) {
            family.revoked = true;
        }
    }

    fn insert_tokens(&mut self, family_id: String, tokens: &SessionTokens) {
        self.access.insert(
            tokens.access_hash,
            Token {
                family_id: family_id.clone(),
                expires_at: tokens.access_expires_at,
            },
        );
        self.refresh.insert(
            tokens.refresh_hash,
            RefreshToken {
                family_id,
                expires_at: tokens.refresh_expires_at,
                spent: false,
            },
        );
    }

    fn maybe_sweep(&mut self) {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.sweep(crate::now());
        }
    }

    /// Drops what can no longer work: expired tokens and expired families.
    fn sweep(&mut self, now: Timestamp) {
        self.access.retain(|_, t| t.expires_at > now);
        self.refresh.retain(|_, t| t.expires_at > now);
        self.families.retain(|_, f| f.expires_at > now);
    }

    /// The live session of an access token at `now`.
    pub(super) fn session_by_access(
        &self,
        access_hash: &[u8; 32],
        now: Timestamp,
    ) -> Option<ConsoleSession> {
        let token = self.access.get(access_hash)?;
        if token.expires_at <= now {
            return None;
        }
        let family = self.families.get(&token.family_id)?;
        if family.revoked {
            return None;
        }
        Some(ConsoleSession {
            user: self.user(&family.username)?.clone(),
            family_id: token.family_id.clone(),
            expires_at: token.expires_at,
        })
    }

    pub(super) fn lookup_refresh(&self, refresh_hash: &[u8; 32], now: Timestamp) -> RefreshLookup {
        let Some(token) = self.refresh.get(refresh_hash) else {
            return RefreshLookup::Unknown;
        };
        let Some(family) = self.families.get(&token.family_id) else {
            return RefreshLookup::Unknown;
        };
        if token.expires_at <= now || family.revoked {
            return RefreshLookup::Unknown;
        }
        if token.spent {
            return RefreshLookup::Spent {
                family_id: token.family_id.clone(),
            };
        }
        match self.user(&family.username) {
            Some(user) => RefreshLookup::Live {
                family_id: token.family_id.clone(),
                user: user.clone(),
            },
            None => RefreshLookup::Unknown,
        }
    }

    /// The live (not revoked) family of an access or refresh token.
    pub(super) fn live_family_of(&self, token_hash: &[u8; 32]) -> Option<String> {
        let family_id = self
            .access
            .get(token_hash)
            .map(|t| &t.family_id)
            .or_else(|| self.refresh.get(token_hash).map(|t| &t.family_id))?;
        let family = self.families.get(family_id)?;
        (!family.revoked).then(|| family_id.clone())
    }

    pub(super) fn snapshot(&self) -> ConsoleSnapshot {
        let now = crate::now();
        ConsoleSnapshot {
            users: self
                .users
                .values()
                .map(|e| (e.user.clone(), e.password_hash.clone()))
                .collect(),
            families: self
                .families
                .iter()
                .filter(|(_, f)| f.expires_at > now)
                .map(|(id, f)| (id.clone(), f.clone()))
                .collect(),
            access: self
                .access
                .iter()
                .filter(|(_, t)| t.expires_at > now)
                .map(|(h, t)| (hash_hex(h), t.family_id.clone(), t.expires_at))
                .collect(),
            refresh: self
                .refresh
                .iter()
                .filter(|(_, t)| t.expires_at > now)
                .map(|(h, t)| (hash_hex(h), t.family_id.clone(), t.expires_at, t.spent))
                .collect(),
        }
    }

    pub(super) fn restore(snap: ConsoleSnapshot) -> Result<Console, String> {
        let mut console = Console::default();
        for (user, password_hash) in snap.users {
            console.create_user(user, password_hash);
        }
        console.families = snap.families.into_iter().collect();
        for (hash, family_id, expires_at) in snap.access {
            console.access.insert(
                unhex_hash(&hash)?,
                Token {
                    family_id,
                    expires_at,
                },
            );
        }
        for (hash, family_id, expires_at, spent) in snap.refresh {
            console.refresh.insert(
                unhex_hash(&hash)?,
                RefreshToken {
                    family_id,
                    expires_at,
                    spent,
                },
            );
        }
        Ok(console)
    }
}

/// Console users and live sessions as snapshot data (token hashes hex-encoded, as in the log).
#[derive(Serialize, Deserialize, Default)]
pub(super) struct ConsoleSnapshot {
    users: Vec<(User, String)>,
    families: Vec<(String, Family)>,
    access: Vec<(String, String, Timestamp)>,
    refresh: Vec<(String, String, Timestamp, bool)>,
}

/// Parses a token hash of a journal record.
pub(super) fn parse_hash(raw: &str) -> Result<[u8; 32], String> {
    unhex_hash(raw)
}
