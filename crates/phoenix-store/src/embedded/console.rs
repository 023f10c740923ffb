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
    /// When the login happened (orders a user's sessions when the oldest must go).
    started_at: Timestamp,
    /// When the newest refresh token expires: after that nothing of the family can work.
    expires_at: Timestamp,
    /// The family's access tokens (normally one: a refresh replaces it).
    access: Vec<String>,
    /// The family's refresh tokens still remembered: the live one and the last spent one (enough to
    /// detect the replay of a stolen token, and constant in size however often the family refreshes).
    refresh: Vec<String>,
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
/// Sessions one user may have at once; a login beyond that ends the user's oldest session.
pub(super) const SESSIONS_PER_USER: usize = 32;

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

    /// A login at `at` (the record's own time, so replaying the journal later gives the same state).
    pub(super) fn start_session(
        &mut self,
        family_id: String,
        username: String,
        tokens: &SessionTokens,
        at: Timestamp,
    ) {
        self.end_oldest_sessions(&username);
        self.families.insert(
            family_id.clone(),
            Family {
                username,
                revoked: false,
                started_at: at,
                expires_at: tokens.refresh_expires_at,
                access: vec![hash_hex(&tokens.access_hash)],
                refresh: vec![hash_hex(&tokens.refresh_hash)],
            },
        );
        self.insert_tokens(family_id, tokens);
        self.maybe_sweep(at);
    }

    /// Makes room for one more session of `username` by removing their oldest ones.
    fn end_oldest_sessions(&mut self, username: &str) {
        let mut live: Vec<(Timestamp, String)> = self
            .families
            .iter()
            .filter(|(_, f)| f.username == username && !f.revoked)
            .map(|(id, f)| (f.started_at, id.clone()))
            .collect();
        if live.len() < SESSIONS_PER_USER {
            return;
        }
        live.sort();
        let excess = live.len() + 1 - SESSIONS_PER_USER;
        for (_, family_id) in live.into_iter().take(excess) {
            self.remove_family(&family_id);
        }
    }

    fn remove_family(&mut self, family_id: &str) {
        if let Some(family) = self.families.remove(family_id) {
            for hash in family.access.iter().chain(&family.refresh) {
                if let Ok(hash) = unhex_hash(hash) {
                    self.access.remove(&hash);
                    self.refresh.remove(&hash);
                }
            }
        }
    }

    /// A refresh at `at`: `spent` is used up and the new pair replaces the family's tokens. A family
    /// that is gone (it can only have expired) makes this a no-op rather than an unreadable journal.
    pub(super) fn refresh_session(
        &mut self,
        family_id: String,
        spent: [u8; 32],
        tokens: &SessionTokens,
        at: Timestamp,
    ) {
        let Some(family) = self.families.get_mut(&family_id) else {
            return;
        };
        let spent_hex = hash_hex(&spent);
        // The new pair replaces the old one: the previous access token stops working too, and of the
        // refresh tokens only the one just spent is remembered (for reuse detection).
        let old_access = std::mem::take(&mut family.access);
        let old_refresh = std::mem::take(&mut family.refresh);
        family.access.push(hash_hex(&tokens.access_hash));
        family.refresh = vec![spent_hex.clone(), hash_hex(&tokens.refresh_hash)];
        family.expires_at = tokens.refresh_expires_at;
        for old in old_access {
            if let Ok(hash) = unhex_hash(&old) {
                self.access.remove(&hash);
            }
        }
        for old in old_refresh.into_iter().filter(|h| *h != spent_hex) {
            if let Ok(hash) = unhex_hash(&old) {
                self.refresh.remove(&hash);
            }
        }
        if let Some(token) = self.refresh.get_mut(&spent) {
            token.spent = true;
        }
        self.insert_tokens(family_id, tokens);
        self.maybe_sweep(at);
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

    /// Sweeps now and then, at the time of the record being applied (never the wall clock: a replay of
    /// the journal must end in the same state whenever it runs).
    fn maybe_sweep(&mut self, at: Timestamp) {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.sweep(at);
        }
    }

    /// Drops what can no longer work at `now`: expired tokens and expired families. Anything a later
    /// record refers to was still valid when that record was written, so it is never swept first.
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

    /// Whether `family_id` names a family that can still work at `now` (not revoked, not expired).
    pub(super) fn family_is_live(&self, family_id: &str, now: Timestamp) -> bool {
        self.families
            .get(family_id)
            .is_some_and(|f| !f.revoked && f.expires_at > now)
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

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn tokens(seed: u8, at: Timestamp) -> SessionTokens {
        SessionTokens {
            family_id: String::new(),
            access_hash: [seed; 32],
            access_expires_at: at + SignedDuration::from_mins(15),
            refresh_hash: [seed.wrapping_add(128); 32],
            refresh_expires_at: at + SignedDuration::from_hours(24 * 7),
        }
    }

    fn user(name: &str) -> User {
        let at = Timestamp::UNIX_EPOCH;
        User {
            username: name.into(),
            role: Role::Admin,
            created_at: at,
            updated_at: at,
        }
    }

    /// Sweeps use each record's own time, so a journal replayed long after it was written (here: in
    /// 2026, of records from 2020) ends in the state it had when it was written.
    #[test]
    fn a_late_replay_keeps_a_session_that_was_live_when_its_records_were_written() {
        let t0: Timestamp = "2020-01-03T00:00:00Z".parse().unwrap();
        let mut console = Console::default();
        console.create_user(user("alice"), "hash".into());
        console.create_user(user("bob"), "hash".into());
        console.start_session("f".into(), "alice".into(), &tokens(1, t0), t0);
        // Enough other sessions a day later to trigger sweeps in between.
        let t1 = t0 + SignedDuration::from_hours(24);
        for i in 0..(SWEEP_EVERY * 2) {
            let seed = (i % 100) as u8 + 2;
            console.start_session(format!("other-{i}"), "bob".into(), &tokens(seed, t1), t1);
        }
        let t6 = t0 + SignedDuration::from_hours(24 * 6);
        console.refresh_session("f".into(), [129; 32], &tokens(110, t6), t6);
        let session = console
            .session_by_access(&[110; 32], t6)
            .expect("still live");
        assert_eq!(session.user.username, "alice");
        assert!(matches!(
            console.lookup_refresh(&[129; 32], t6),
            RefreshLookup::Spent { .. }
        ));
    }

    #[test]
    fn a_refresh_of_a_family_that_is_gone_is_a_no_op() {
        let at = Timestamp::UNIX_EPOCH;
        let mut console = Console::default();
        console.refresh_session("missing".into(), [1; 32], &tokens(2, at), at);
        assert!(console.session_by_access(&[2; 32], at).is_none());
    }

    #[test]
    fn a_family_remembers_a_constant_number_of_tokens_however_often_it_refreshes() {
        let at: Timestamp = "2020-01-03T00:00:00Z".parse().unwrap();
        let mut console = Console::default();
        console.create_user(user("carol"), "hash".into());
        console.start_session("f".into(), "carol".into(), &tokens(0, at), at);
        let mut spent = tokens(0, at).refresh_hash;
        for i in 1..=100u8 {
            let next = tokens(i, at);
            console.refresh_session("f".into(), spent, &next, at);
            spent = next.refresh_hash;
        }
        assert_eq!(console.access.len(), 1);
        assert_eq!(console.refresh.len(), 2);
    }

    #[test]
    fn a_user_keeps_at_most_so_many_sessions_and_loses_the_oldest() {
        let t0: Timestamp = "2020-01-03T00:00:00Z".parse().unwrap();
        let mut console = Console::default();
        console.create_user(user("dave"), "hash".into());
        for i in 0..(SESSIONS_PER_USER as u8 + 8) {
            let at = t0 + SignedDuration::from_secs(i64::from(i));
            console.start_session(format!("f{i}"), "dave".into(), &tokens(i, at), at);
        }
        assert_eq!(console.families.len(), SESSIONS_PER_USER);
        let late = t0 + SignedDuration::from_secs(60);
        assert!(console.session_by_access(&[0; 32], late).is_none());
        let newest = SESSIONS_PER_USER as u8 + 7;
        assert!(console.session_by_access(&[newest; 32], late).is_some());
    }
}
