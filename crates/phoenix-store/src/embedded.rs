//! The embedded backend: the zero-setup default. Metadata lives in memory and in `meta.log`, a journal of
//! change records replayed at start-up. A write is checked against memory, appended and fsync'd, and only
//! then applied to memory, so readers never see a change that is not yet durable. The data dir is locked
//! so a second process cannot open it.

use crate::journal::Journal;
use crate::model::*;
use crate::seal::MasterKey;
use crate::signatures::SignatureLog;
use crate::{Store, StoreError, StoreResult, now};
use async_trait::async_trait;
use jiff::Timestamp;
use phoenix_core::ids::{LeaderboardId, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

const META_LOG: &str = "meta.log";
const LOCK_FILE: &str = "LOCK";
const KEY_CHECK: &[u8] = b"phoenix master key check";

/// Why the embedded store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "data dir {0} is in use by another phoenix process (its LOCK file is held); stop that process or choose another PHOENIX_DATA_DIR"
    )]
    Locked(String),
    #[error("data dir {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "PHOENIX_MASTER_KEY does not match the key this data dir was sealed with; set the original key"
    )]
    WrongMasterKey,
    #[error("data dir {path} holds a record this version cannot read: {detail}")]
    Corrupt { path: String, detail: String },
}

/// One durable change to the metadata. The journal is the list of these; state is their fold.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum MetaRecord {
    /// First record of a data dir: proves later starts use the same master key.
    Init {
        key_check: String,
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
    },
    LeaderboardDeleted {
        tenant_id: TenantId,
        leaderboard_id: LeaderboardId,
        at: Timestamp,
    },
}

struct TenantEntry {
    tenant: Tenant,
    sealed_current: Vec<u8>,
    sealed_previous: Option<(Vec<u8>, Timestamp)>,
}

struct KeyEntry {
    key: ApiKey,
    sealed_key: Vec<u8>,
}

#[derive(Default)]
struct State {
    tenants: BTreeMap<TenantId, TenantEntry>,
    keys: BTreeMap<String, KeyEntry>,
    key_by_hash: HashMap<[u8; 32], String>,
    leaderboards: BTreeMap<(TenantId, LeaderboardId), Leaderboard>,
    /// Deleted leaderboards by uid: their history stays addressable.
    deleted: BTreeMap<u64, (Leaderboard, Timestamp)>,
    next_uid: u64,
    initialized: bool,
}

impl State {
    fn apply(&mut self, record: MetaRecord) -> Result<(), String> {
        match record {
            MetaRecord::Init { .. } => self.initialized = true,
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
        }
        Ok(())
    }

    fn leaderboard(&self, tenant_id: &str, leaderboard_id: &str) -> Option<&Leaderboard> {
        let key = (
            TenantId::parse(tenant_id).ok()?,
            LeaderboardId::parse(leaderboard_id).ok()?,
        );
        self.leaderboards.get(&key)
    }
}

/// The embedded, single-process store in `PHOENIX_DATA_DIR`.
pub struct EmbeddedStore {
    dir: PathBuf,
    state: RwLock<State>,
    meta: Journal,
    signatures: SignatureLog,
    /// Serializes metadata writers across check → durable append → apply. Metadata writes are rare; the
    /// gate is never held by readers, so reads never wait on the disk.
    write_gate: tokio::sync::Mutex<()>,
    master: MasterKey,
    _lock: File,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, sealing secrets with `master`. Refuses a data dir
    /// that another process holds, or that was sealed with a different master key.
    pub fn open(dir: &Path, master: MasterKey) -> Result<Self, OpenError> {
        let io = |source| OpenError::Io {
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }

        let (meta, records) = Journal::open(&dir.join(META_LOG)).map_err(io)?;
        let mut state = State::default();
        let corrupt = |detail: String| OpenError::Corrupt {
            path: dir.display().to_string(),
            detail,
        };
        for raw in records {
            let record: MetaRecord =
                serde_json::from_slice(&raw).map_err(|e| corrupt(e.to_string()))?;
            if let MetaRecord::Init { key_check } = &record {
                let sealed = hex::decode(key_check).map_err(|e| corrupt(e.to_string()))?;
                if master.unseal("key-check", &sealed).as_deref() != Some(KEY_CHECK) {
                    return Err(OpenError::WrongMasterKey);
                }
            }
            state.apply(record).map_err(corrupt)?;
        }
        let signatures = SignatureLog::open(dir, Timestamp::now().as_second()).map_err(io)?;
        let store = EmbeddedStore {
            dir: dir.to_owned(),
            state: RwLock::new(state),
            meta,
            signatures,
            write_gate: tokio::sync::Mutex::new(()),
            master,
            _lock: lock,
        };
        Ok(store)
    }

    /// Writes the `Init` record on a new data dir. Separate from `open` because it awaits the journal.
    pub async fn initialize(&self) -> StoreResult<()> {
        let _gate = self.write_gate.lock().await;
        if self.read().initialized {
            return Ok(());
        }
        let key_check = hex::encode(self.master.seal("key-check", KEY_CHECK));
        self.commit(MetaRecord::Init { key_check }).await
    }

    /// Opens and initializes in one call (for tests and tools).
    pub async fn open_initialized(dir: &Path, master: MasterKey) -> Result<Self, OpenError> {
        let store = Self::open(dir, master)?;
        store.initialize().await.map_err(|e| OpenError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(store)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-applied in a way readers could observe
        // differently from a restart, so recover from poisoning instead of propagating it.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `record` durable, then applies it. Call with the write gate held.
    async fn commit(&self, record: MetaRecord) -> StoreResult<()> {
        let payload =
            serde_json::to_vec(&record).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.meta.append(&payload).await?;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state
            .apply(record)
            .map_err(|e| StoreError::Unavailable(format!("applying a committed record: {e}")))
    }

    fn tenant_context(tenant_id: &str) -> String {
        format!("tenant:{tenant_id}")
    }

    fn key_context(key_id: &str) -> String {
        format!("api-key:{key_id}")
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn is_ready(&self) -> bool {
        self.meta.is_healthy() && self.signatures.is_healthy()
    }

    async fn use_signature_once(
        &self,
        digest: [u8; 32],
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        self.signatures
            .use_once(digest, expires_at.as_second(), Timestamp::now().as_second())
            .await
    }

    async fn create_tenant(
        &self,
        tenant_id: TenantId,
        name: String,
        hmac_secret: String,
    ) -> StoreResult<Tenant> {
        let _gate = self.write_gate.lock().await;
        if self.read().tenants.contains_key(&tenant_id) {
            return Err(StoreError::Conflict(format!(
                "tenant '{tenant_id}' already exists"
            )));
        }
        let sealed = self.master.seal(
            &Self::tenant_context(tenant_id.as_str()),
            hmac_secret.as_bytes(),
        );
        let tenant = Tenant {
            tenant_id,
            name,
            created_at: now(),
        };
        self.commit(MetaRecord::TenantCreated {
            tenant: tenant.clone(),
            sealed_secret: hex::encode(sealed),
        })
        .await?;
        Ok(tenant)
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(self
            .read()
            .tenants
            .values()
            .map(|e| e.tenant.clone())
            .collect())
    }

    async fn get_tenant(&self, tenant_id: &str) -> StoreResult<Option<Tenant>> {
        Ok(self.read().tenants.get(tenant_id).map(|e| e.tenant.clone()))
    }

    async fn tenant_secrets(&self, tenant_id: &str) -> StoreResult<Option<TenantSecrets>> {
        let state = self.read();
        let Some(entry) = state.tenants.get(tenant_id) else {
            return Ok(None);
        };
        let ctx = Self::tenant_context(tenant_id);
        let open = |sealed: &[u8]| {
            self.master
                .unseal(&ctx, sealed)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    StoreError::Unavailable("a sealed tenant secret is unreadable".into())
                })
        };
        let current = open(&entry.sealed_current)?;
        let previous = match &entry.sealed_previous {
            Some((sealed, until)) => Some((open(sealed)?, *until)),
            None => None,
        };
        Ok(Some(TenantSecrets { current, previous }))
    }

    async fn rotate_tenant_secret(
        &self,
        tenant_id: &str,
        new_secret: String,
        previous_valid_until: Timestamp,
    ) -> StoreResult<Option<Tenant>> {
        let _gate = self.write_gate.lock().await;
        let Some(tenant) = self.read().tenants.get(tenant_id).map(|e| e.tenant.clone()) else {
            return Ok(None);
        };
        let sealed = self
            .master
            .seal(&Self::tenant_context(tenant_id), new_secret.as_bytes());
        self.commit(MetaRecord::TenantSecretRotated {
            tenant_id: tenant.tenant_id.clone(),
            sealed_secret: hex::encode(sealed),
            previous_valid_until,
        })
        .await?;
        Ok(Some(tenant))
    }

    async fn create_api_key(&self, new: NewApiKey) -> StoreResult<ApiKey> {
        let _gate = self.write_gate.lock().await;
        {
            let state = self.read();
            if state.keys.contains_key(&new.key_id) || state.key_by_hash.contains_key(&new.key_hash)
            {
                return Err(StoreError::Conflict(format!(
                    "api key '{}' already exists",
                    new.key_id
                )));
            }
        }
        let key = ApiKey {
            key_id: new.key_id,
            name: new.name,
            scopes: new.scopes,
            tenant_ids: new.tenant_ids,
            created_at: now(),
            expires_at: new.expires_at,
            revoked_at: None,
        };
        let sealed = self
            .master
            .seal(&Self::key_context(&key.key_id), new.plaintext.as_bytes());
        self.commit(MetaRecord::ApiKeyCreated {
            key: key.clone(),
            key_hash: hex::encode(new.key_hash),
            sealed_key: hex::encode(sealed),
        })
        .await?;
        Ok(key)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let mut keys: Vec<ApiKey> = self.read().keys.values().map(|e| e.key.clone()).collect();
        keys.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then(a.key_id.cmp(&b.key_id))
        });
        Ok(keys)
    }

    async fn get_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        Ok(self.read().keys.get(key_id).map(|e| e.key.clone()))
    }

    async fn find_api_key_by_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
        let state = self.read();
        Ok(state
            .key_by_hash
            .get(key_hash)
            .and_then(|id| state.keys.get(id))
            .map(|e| e.key.clone()))
    }

    async fn api_key_secret(&self, key_id: &str) -> StoreResult<Option<String>> {
        let state = self.read();
        let Some(entry) = state.keys.get(key_id) else {
            return Ok(None);
        };
        self.master
            .unseal(&Self::key_context(key_id), &entry.sealed_key)
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| StoreError::Unavailable("a sealed api key is unreadable".into()))
    }

    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        let _gate = self.write_gate.lock().await;
        let Some(key) = self.read().keys.get(key_id).map(|e| e.key.clone()) else {
            return Ok(None);
        };
        if key.revoked_at.is_some() {
            return Ok(Some(key));
        }
        self.commit(MetaRecord::ApiKeyRevoked {
            key_id: key_id.to_owned(),
            at: now(),
        })
        .await?;
        Ok(self.read().keys.get(key_id).map(|e| e.key.clone()))
    }

    async fn create_leaderboard(&self, new: NewLeaderboard) -> StoreResult<Leaderboard> {
        let _gate = self.write_gate.lock().await;
        let uid = {
            let state = self.read();
            if state
                .leaderboards
                .contains_key(&(new.tenant_id.clone(), new.leaderboard_id.clone()))
            {
                return Err(StoreError::Conflict(format!(
                    "leaderboard '{}' already exists in tenant '{}'",
                    new.leaderboard_id, new.tenant_id
                )));
            }
            state.next_uid.max(1)
        };
        let at = now();
        let leaderboard = Leaderboard {
            uid,
            leaderboard_id: new.leaderboard_id,
            tenant_id: new.tenant_id,
            name: new.name,
            description: new.description,
            status: new.status,
            version: 1,
            config: new.config,
            created_at: at,
            updated_at: at,
        };
        self.commit(MetaRecord::LeaderboardCreated {
            uid,
            leaderboard: leaderboard.clone(),
        })
        .await?;
        Ok(leaderboard)
    }

    async fn list_leaderboards(&self, tenant_id: Option<&str>) -> StoreResult<Vec<Leaderboard>> {
        let state = self.read();
        Ok(state
            .leaderboards
            .values()
            .filter(|lb| tenant_id.is_none_or(|t| lb.tenant_id.as_str() == t))
            .cloned()
            .collect())
    }

    async fn get_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<Leaderboard>> {
        Ok(self.read().leaderboard(tenant_id, leaderboard_id).cloned())
    }

    async fn update_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
        patch: LeaderboardPatch,
    ) -> StoreResult<Option<Leaderboard>> {
        let _gate = self.write_gate.lock().await;
        let Some(mut lb) = self.read().leaderboard(tenant_id, leaderboard_id).cloned() else {
            return Ok(None);
        };
        if let Some(name) = patch.name {
            lb.name = name;
        }
        if let Some(description) = patch.description {
            lb.description = description;
        }
        if let Some(status) = patch.status {
            lb.status = status;
        }
        lb.version += 1;
        // updated_at never goes backwards, even if the wall clock does.
        lb.updated_at = now().max(lb.updated_at);
        self.commit(MetaRecord::LeaderboardUpdated {
            tenant_id: lb.tenant_id.clone(),
            leaderboard_id: lb.leaderboard_id.clone(),
            name: lb.name.clone(),
            description: lb.description.clone(),
            status: lb.status,
            version: lb.version,
            updated_at: lb.updated_at,
        })
        .await?;
        Ok(Some(lb))
    }

    async fn delete_leaderboard(
        &self,
        tenant_id: &str,
        leaderboard_id: &str,
    ) -> StoreResult<Option<Leaderboard>> {
        let _gate = self.write_gate.lock().await;
        let Some(lb) = self.read().leaderboard(tenant_id, leaderboard_id).cloned() else {
            return Ok(None);
        };
        self.commit(MetaRecord::LeaderboardDeleted {
            tenant_id: lb.tenant_id.clone(),
            leaderboard_id: lb.leaderboard_id.clone(),
            at: now(),
        })
        .await?;
        Ok(Some(lb))
    }
}
