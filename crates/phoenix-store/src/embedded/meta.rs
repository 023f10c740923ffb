//! The metadata state machine of the embedded store: tenants, API keys and leaderboards as the fold of
//! their change records. Sealed secrets stay sealed here; only the store's accessors unseal them.

use super::console::{Console, ConsoleSnapshot, parse_hash};
use crate::model::*;
use jiff::Timestamp;
use phoenix_core::ids::{LeaderboardId, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One durable change to the metadata. The journal is the list of these; state is their fold.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum MetaRecord {
    /// First record of a data dir: proves later starts use the same master key.
    Init {
        key_check: String,
    },
    /// Time has passed: raises the acceptance high-water mark to `at`, freezing every window that
    /// ended by then (written when a window ended while no event arrived to say so).
    Tick {
        at: Timestamp,
    },
    TenantCreated {
        tenant: Tenant,
        sealed_secret: String,
    },
    TenantSecretRotated {
        tenant_id: TenantId,
        sealed_secret: String,
        previous_valid_until: Timestamp,
    },
    /// The tenant's settings after a `PATCH` (the whole record, so replay needs no merging).
    TenantUpdated {
        tenant: Tenant,
    },
    ApiKeyCreated {
        key: ApiKey,
        key_hash: String,
        sealed_key: String,
    },
    ApiKeyRevoked {
        key_id: String,
        at: Timestamp,
    },
    LeaderboardCreated {
        uid: u64,
        leaderboard: Leaderboard,
    },
    LeaderboardUpdated {
        tenant_id: TenantId,
        leaderboard_id: LeaderboardId,
        name: String,
        description: Option<String>,
        status: LeaderboardStatus,
        version: u64,
        updated_at: Timestamp,
        /// The status before this change (absent in records written before it was kept): what a
        /// replay decides the board's pause or resumption by, whatever state it replays into.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_status: Option<LeaderboardStatus>,
    },
    LeaderboardDeleted {
        tenant_id: TenantId,
        leaderboard_id: LeaderboardId,
        at: Timestamp,
    },
    UserCreated {
        user: User,
        password_hash: String,
    },
    UserUpdated {
        username: String,
        role: Option<Role>,
        password_hash: Option<String>,
        at: Timestamp,
    },
    UserDeleted {
        username: String,
    },
    /// A login: a new session family with its first token pair (hashes, hex).
    SessionStarted {
        family_id: String,
        username: String,
        access_hash: String,
        access_expires_at: Timestamp,
        refresh_hash: String,
        refresh_expires_at: Timestamp,
        at: Timestamp,
    },
    /// A refresh: `spent` is used up and the new pair replaces the family's tokens.
    SessionRefreshed {
        family_id: String,
        spent: String,
        access_hash: String,
        access_expires_at: Timestamp,
        refresh_hash: String,
        refresh_expires_at: Timestamp,
        at: Timestamp,
    },
    SessionRevoked {
        family_id: String,
    },
}

pub(super) struct TenantEntry {
    pub(super) tenant: Tenant,
    pub(super) sealed_current: Vec<u8>,
    pub(super) sealed_previous: Option<(Vec<u8>, Timestamp)>,
    /// The secrets unsealed on first use (every tenant JWT needs them; unsealing each time showed in
    /// profiles). Memory only, never persisted; reset when the secret rotates.
    pub(super) unsealed: std::sync::OnceLock<TenantSecrets>,
}

pub(super) struct KeyEntry {
    pub(super) key: ApiKey,
    pub(super) sealed_key: Vec<u8>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) tenants: BTreeMap<TenantId, TenantEntry>,
    pub(super) keys: BTreeMap<String, KeyEntry>,
    pub(super) key_by_hash: HashMap<[u8; 32], String>,
    pub(super) leaderboards: BTreeMap<(TenantId, LeaderboardId), Leaderboard>,
    /// Deleted leaderboards by uid: their history stays addressable.
    pub(super) deleted: BTreeMap<u64, (Leaderboard, Timestamp)>,
    pub(super) next_uid: u64,
    pub(super) initialized: bool,
    /// The sealed known value of the `Init` record, kept so a snapshot can check the master key too.
    pub(super) key_check: Option<String>,
    /// Console users and their sessions.
    pub(super) console: Console,
}

impl State {
    pub(super) fn apply(&mut self, record: MetaRecord) -> Result<(), String> {
        match record {
            MetaRecord::Init { key_check } => {
                self.initialized = true;
                self.key_check = Some(key_check);
            }
            MetaRecord::Tick { .. } => {}
            MetaRecord::TenantCreated {
                tenant,
                sealed_secret,
            } => {
                let sealed_current = hex::decode(sealed_secret).map_err(|e| e.to_string())?;
                self.tenants.insert(
                    tenant.tenant_id.clone(),
                    TenantEntry {
                        tenant,
                        sealed_current,
                        sealed_previous: None,
                        unsealed: Default::default(),
                    },
                );
            }
            MetaRecord::TenantSecretRotated {
                tenant_id,
                sealed_secret,
                previous_valid_until,
            } => {
                let entry = self
                    .tenants
                    .get_mut(&tenant_id)
                    .ok_or("rotation for an unknown tenant")?;
                let new = hex::decode(sealed_secret).map_err(|e| e.to_string())?;
                let old = std::mem::replace(&mut entry.sealed_current, new);
                entry.sealed_previous = Some((old, previous_valid_until));
                entry.unsealed = Default::default();
            }
            MetaRecord::TenantUpdated { tenant } => {
                let entry = self
                    .tenants
                    .get_mut(&tenant.tenant_id)
                    .ok_or("update of an unknown tenant")?;
                entry.tenant = tenant;
                // The cached secrets carry the settings.
                entry.unsealed = Default::default();
            }
            MetaRecord::ApiKeyCreated {
                key,
                key_hash,
                sealed_key,
            } => {
                let hash: [u8; 32] = hex::decode(key_hash)
                    .map_err(|e| e.to_string())?
                    .try_into()
                    .map_err(|_| "key hash is not 32 bytes")?;
                let sealed_key = hex::decode(sealed_key).map_err(|e| e.to_string())?;
                self.key_by_hash.insert(hash, key.key_id.clone());
                self.keys
                    .insert(key.key_id.clone(), KeyEntry { key, sealed_key });
            }
            MetaRecord::ApiKeyRevoked { key_id, at } => {
                let entry = self.keys.get_mut(&key_id).ok_or("revoke of unknown key")?;
                entry.key.revoked_at.get_or_insert(at);
            }
            MetaRecord::LeaderboardCreated {
                uid,
                mut leaderboard,
            } => {
                leaderboard.uid = uid;
                self.next_uid = self.next_uid.max(uid + 1);
                self.leaderboards.insert(
                    (
                        leaderboard.tenant_id.clone(),
                        leaderboard.leaderboard_id.clone(),
                    ),
                    leaderboard,
                );
            }
            MetaRecord::LeaderboardUpdated {
                tenant_id,
                leaderboard_id,
                name,
                description,
                status,
                version,
                updated_at,
                previous_status: _,
            } => {
                let lb = self
                    .leaderboards
                    .get_mut(&(tenant_id, leaderboard_id))
                    .ok_or("update of unknown leaderboard")?;
                lb.name = name;
                lb.description = description;
                lb.status = status;
                lb.version = version;
                lb.updated_at = updated_at;
            }
            MetaRecord::LeaderboardDeleted {
                tenant_id,
                leaderboard_id,
                at,
            } => {
                let lb = self
                    .leaderboards
                    .remove(&(tenant_id, leaderboard_id))
                    .ok_or("delete of unknown leaderboard")?;
                self.deleted.insert(lb.uid, (lb, at));
            }
            MetaRecord::UserCreated {
                user,
                password_hash,
            } => self.console.create_user(user, password_hash),
            MetaRecord::UserUpdated {
                username,
                role,
                password_hash,
                at,
            } => self
                .console
                .update_user(&username, role, password_hash, at)?,
            MetaRecord::UserDeleted { username } => self.console.delete_user(&username)?,
            MetaRecord::SessionStarted {
                family_id,
                username,
                access_hash,
                access_expires_at,
                refresh_hash,
                refresh_expires_at,
                at,
            } => {
                let tokens = session_tokens(
                    &family_id,
                    &access_hash,
                    access_expires_at,
                    &refresh_hash,
                    refresh_expires_at,
                )?;
                self.console.start_session(family_id, username, &tokens, at);
            }
            MetaRecord::SessionRefreshed {
                family_id,
                spent,
                access_hash,
                access_expires_at,
                refresh_hash,
                refresh_expires_at,
                at,
            } => {
                let tokens = session_tokens(
                    &family_id,
                    &access_hash,
                    access_expires_at,
                    &refresh_hash,
                    refresh_expires_at,
                )?;
                self.console
                    .refresh_session(family_id, parse_hash(&spent)?, &tokens, at);
            }
            MetaRecord::SessionRevoked { family_id } => self.console.revoke_family(&family_id),
        }
        Ok(())
    }

    /// The uids of every leaderboard that had this id, deleted or live, in creation order: the
    /// `n`-th is incarnation `n` (whose window ids carry `~n`, see `WindowId::for_incarnation`). Every
    /// incarnation's history stays readable.
    pub(super) fn incarnations(&self, tenant_id: &str, leaderboard_id: &str) -> Vec<u64> {
        let mut uids: Vec<u64> = self
            .deleted
            .iter()
            .filter(|(_, (lb, _))| {
                lb.tenant_id.as_str() == tenant_id && lb.leaderboard_id.as_str() == leaderboard_id
            })
            .map(|(uid, _)| *uid)
            .collect();
        if let Some(lb) = self.leaderboard(tenant_id, leaderboard_id) {
            uids.push(lb.uid);
        }
        // Uids are handed out in creation order, and `deleted` iterates by uid.
        uids.sort_unstable();
        uids
    }

    pub(super) fn leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> Option<&Leaderboard> {
        let key = (
            TenantId::parse(tenant_id).ok()?,
            LeaderboardId::parse(leaderboard_id).ok()?,
        );
        self.leaderboards.get(&key)
    }
}

/// A token pair as a session record carries it (hashes in hex).
fn session_tokens(
    family_id: &str,
    access_hash: &str,
    access_expires_at: Timestamp,
    refresh_hash: &str,
    refresh_expires_at: Timestamp,
) -> Result<SessionTokens, String> {
    Ok(SessionTokens {
        family_id: family_id.to_owned(),
        access_hash: parse_hash(access_hash)?,
        access_expires_at,
        refresh_hash: parse_hash(refresh_hash)?,
        refresh_expires_at,
    })
}

/// A tenant entry as snapshot data (sealed blobs hex-encoded, as in the log).
#[derive(Serialize, Deserialize)]
struct TenantSnap {
    tenant: Tenant,
    sealed_current: String,
    sealed_previous: Option<(String, Timestamp)>,
}

#[derive(Serialize, Deserialize)]
struct KeySnap {
    key: ApiKey,
    key_hash: String,
    sealed_key: String,
}

/// The metadata state as snapshot data.
#[derive(Serialize, Deserialize)]
pub(super) struct MetaSnapshot {
    tenants: Vec<TenantSnap>,
    keys: Vec<KeySnap>,
    /// `(uid, record)`: the uid is not part of the record's wire form.
    leaderboards: Vec<(u64, Leaderboard)>,
    deleted: Vec<(u64, Leaderboard, Timestamp)>,
    next_uid: u64,
    initialized: bool,
    key_check: Option<String>,
    /// Absent in snapshots written before console users existed.
    #[serde(default)]
    console: ConsoleSnapshot,
}

impl State {
    pub(super) fn snapshot(&self) -> MetaSnapshot {
        let hash_of: HashMap<&str, &[u8; 32]> = self
            .key_by_hash
            .iter()
            .map(|(hash, id)| (id.as_str(), hash))
            .collect();
        MetaSnapshot {
            tenants: self
                .tenants
                .values()
                .map(|e| TenantSnap {
                    tenant: e.tenant.clone(),
                    sealed_current: hex::encode(&e.sealed_current),
                    sealed_previous: e
                        .sealed_previous
                        .as_ref()
                        .map(|(s, until)| (hex::encode(s), *until)),
                })
                .collect(),
            keys: self
                .keys
                .values()
                .map(|e| KeySnap {
                    key: e.key.clone(),
                    key_hash: hash_of
                        .get(e.key.key_id.as_str())
                        .map(hex::encode)
                        .unwrap_or_default(),
                    sealed_key: hex::encode(&e.sealed_key),
                })
                .collect(),
            leaderboards: self
                .leaderboards
                .values()
                .map(|lb| (lb.uid, lb.clone()))
                .collect(),
            deleted: self
                .deleted
                .iter()
                .map(|(uid, (lb, at))| (*uid, lb.clone(), *at))
                .collect(),
            next_uid: self.next_uid,
            initialized: self.initialized,
            key_check: self.key_check.clone(),
            console: self.console.snapshot(),
        }
    }

    pub(super) fn restore(snap: MetaSnapshot) -> Result<State, String> {
        let unhex = |s: &str| hex::decode(s).map_err(|e| e.to_string());
        let mut state = State {
            next_uid: snap.next_uid,
            initialized: snap.initialized,
            key_check: snap.key_check,
            console: Console::restore(snap.console)?,
            ..State::default()
        };
        for t in snap.tenants {
            let sealed_previous = match t.sealed_previous {
                Some((s, until)) => Some((unhex(&s)?, until)),
                None => None,
            };
            state.tenants.insert(
                t.tenant.tenant_id.clone(),
                TenantEntry {
                    sealed_current: unhex(&t.sealed_current)?,
                    sealed_previous,
                    tenant: t.tenant,
                    unsealed: Default::default(),
                },
            );
        }
        for k in snap.keys {
            let hash: [u8; 32] = unhex(&k.key_hash)?
                .try_into()
                .map_err(|_| "key hash is not 32 bytes")?;
            state.key_by_hash.insert(hash, k.key.key_id.clone());
            state.keys.insert(
                k.key.key_id.clone(),
                KeyEntry {
                    sealed_key: unhex(&k.sealed_key)?,
                    key: k.key,
                },
            );
        }
        for (uid, mut lb) in snap.leaderboards {
            lb.uid = uid;
            state
                .leaderboards
                .insert((lb.tenant_id.clone(), lb.leaderboard_id.clone()), lb);
        }
        for (uid, mut lb, at) in snap.deleted {
            lb.uid = uid;
            state.deleted.insert(uid, (lb, at));
        }
        Ok(state)
    }
}
