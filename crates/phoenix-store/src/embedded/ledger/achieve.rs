//! Achievements in the ledger (SPEC §7.5): the events of tenants with achievements are folded into
//! each player's progress, in log order, on the ledger's thread (and on replay, from the ledger's
//! watermark), so a duplicate event (never in the log) counts nothing and a replay completes the same
//! steps at the same events.
//!
//! Progress lives in the `progress` table, one row per player with every achievement of the tenant.
//! Events are applied to a write-back cache of those rows and committed together with the
//! completions they caused (grants, counts, webhook messages) and the watermark, in one transaction
//! at most [`FLUSH_INTERVAL`] after the first uncommitted change (or sooner when the cache grows or any
//! other ledger record arrives). A crash loses only uncommitted work, which the log replays.
//!
//! Memory: the cache holds at most [`MAX_CACHED_ENTRIES`] entries (clean ones are dropped after a
//! commit when it is over), and a definition per active achievement.

use super::outbox;
use super::*;
use phoenix_core::achievement::{Metric, Progress, Step, newly_completed};
use phoenix_core::event::Event;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Longest time an applied event's effect waits before it is committed (and visible to reads).
pub(in crate::embedded) const FLUSH_INTERVAL: std::time::Duration =
    std::time::Duration::from_millis(500);
/// Longest time a changed player's row waits to be written (until then, a crash folds its events
/// again from the log; reads see the cache).
const ROWS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Entries (players × the tenant's active achievements, ~120 bytes each) the cache holds before it is
/// emptied after a commit: 300 000 players with ten achievements.
const MAX_CACHED_ENTRIES: usize = 3_000_000;
/// Changed players that make a commit happen at once.
const MAX_DIRTY_PLAYERS: usize = 150_000;
/// Counted events queued for the ledger's thread beyond which the log's writer waits (backpressure).
/// A queued event is its evaluation only (~130 bytes with four achievements counting it), so the
/// queue holds at most ~35 MB; enough to ride out a commit of many completions at full speed.
pub(in crate::embedded) const MAX_QUEUED_EVENTS: u64 = 250_000;

/// An active achievement, parsed.
#[derive(Clone)]
pub(super) struct Def {
    pub id: String,
    pub metric: Metric,
    pub steps: Vec<Step>,
}

impl Def {
    pub(super) fn parse(a: &Achievement) -> Result<Def, String> {
        Ok(Def {
            id: a.achievement_id.clone(),
            metric: Metric::from_json(&a.metric).map_err(|e| e.to_string())?,
            steps: phoenix_core::achievement::steps_from_json(&a.steps)
                .map_err(|e| e.to_string())?,
        })
    }
}

/// One achievement's progress in a player's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::embedded) struct Entry {
    /// The achievement.
    pub a: String,
    /// The value (count, sum, best streak).
    pub v: f64,
    /// Per step, the completion time (Unix microseconds), `None` while not completed.
    pub c: Vec<Option<i64>>,
    /// A streak's runs of days.
    pub r: Vec<(i32, i32)>,
    /// Not stored: no step can be completed while the value is below it (the threshold of the first
    /// step not completed, once known; 0 until then, which only means "look at the steps").
    pub next: f64,
}

impl Entry {
    fn empty(a: &str) -> Entry {
        Entry {
            a: a.to_owned(),
            ..Entry::default()
        }
    }

    /// No progress at all (the same as no entry).
    fn is_empty(&self) -> bool {
        self.v == 0.0 && self.c.iter().all(Option::is_none) && self.r.is_empty()
    }
}

/// Row format version (the first byte of a row).
const ROW_V1: u8 = 1;

/// A player's row: version, entry count (u16), then per entry the id (u8 length + bytes), the value
/// (f64), the steps (u8 count, then i64 each: the completion time, or `i64::MIN` for none) and the runs
/// (u16 count, then two i32 each), all little-endian. Compact and quick to read and write, since a row
/// is written whenever its player's progress changes. Entries without progress are left out.
fn encode_row<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<u8> {
    let kept: Vec<&Entry> = entries
        .filter(|e| !e.is_empty())
        .take(u16::MAX as usize)
        .collect();
    let mut out = Vec::with_capacity(3 + kept.len() * 32);
    out.push(ROW_V1);
    out.extend_from_slice(&(kept.len() as u16).to_le_bytes());
    for e in kept {
        let id = &e.a.as_bytes()[..e.a.len().min(255)];
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&e.v.to_le_bytes());
        out.push(e.c.len().min(255) as u8);
        for c in e.c.iter().take(255) {
            out.extend_from_slice(&c.unwrap_or(i64::MIN).to_le_bytes());
        }
        out.extend_from_slice(&(e.r.len().min(u16::MAX as usize) as u16).to_le_bytes());
        for (a, b) in e.r.iter().take(u16::MAX as usize) {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
    }
    out
}

fn decode_row(bytes: &[u8]) -> Option<Vec<Entry>> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }
        fn u8(&mut self) -> Option<u8> {
            self.take(1).map(|b| b[0])
        }
        fn u16(&mut self) -> Option<u16> {
            self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
        }
        fn arr8(&mut self) -> Option<[u8; 8]> {
            self.take(8).and_then(|b| b.try_into().ok())
        }
        fn i32(&mut self) -> Option<i32> {
            self.take(4)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_le_bytes)
        }
    }
    let mut r = Reader(bytes);
    if r.u8()? != ROW_V1 {
        return None;
    }
    let count = r.u16()? as usize;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u8()? as usize;
        let a = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        let v = f64::from_le_bytes(r.arr8()?);
        let steps = r.u8()? as usize;
        let mut c = Vec::with_capacity(steps);
        for _ in 0..steps {
            let t = i64::from_le_bytes(r.arr8()?);
            c.push((t != i64::MIN).then_some(t));
        }
        let runs = r.u16()? as usize;
        let mut rs = Vec::with_capacity(runs);
        for _ in 0..runs {
            rs.push((r.i32()?, r.i32()?));
        }
        entries.push(Entry {
            a,
            v,
            c,
            r: rs,
            next: 0.0,
        });
    }
    r.0.is_empty().then_some(entries)
}

/// A player's progress in the cache.
struct Cached {
    /// [`Ledger::player_hash`] of the player.
    hash: u64,
    user: Box<str>,
    /// The row's key in `progress`.
    key: i64,
    /// Per active achievement of the tenant, in the order of [`TenantDefs::active`], its entry.
    entries: Vec<Entry>,
    /// Entries of live achievements that are not active (kept as they are).
    others: Vec<Entry>,
    dirty: bool,
}

impl Cached {
    /// Lays out a row's entries along the tenant's active achievements; progress on achievements no
    /// longer live is dropped.
    fn align(&mut self, defs: &TenantDefs) {
        let mut all: Vec<Entry> = std::mem::take(&mut self.entries);
        all.append(&mut self.others);
        self.entries = defs
            .active
            .iter()
            .map(|def| match all.iter().position(|e| e.a == def.id) {
                // Its steps may have changed: `next` is found again.
                Some(i) => Entry {
                    next: 0.0,
                    ..all.swap_remove(i)
                },
                None => Entry::empty(&def.id),
            })
            .collect();
        all.retain(|e| defs.live.contains(&e.a) && !e.is_empty());
        self.others = all;
    }

    fn all(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().chain(&self.others)
    }
}

/// A tenant's players in the cache, found by their [`Ledger::player_hash`].
struct TenantCache {
    /// The achievements the players' entries are laid out along.
    defs: Arc<TenantDefs>,
    players: hashbrown::HashTable<Cached>,
}

/// A step completed by an event, waiting for its commit.
struct Completion {
    /// End of the event's record in the log.
    end: u64,
    tenant: String,
    achievement_id: String,
    user_id: String,
    step: u32,
    threshold: f64,
    at: Timestamp,
    rewards: Vec<Reward>,
}

/// The uncommitted state of achievements.
#[derive(Default)]
pub(super) struct Hot {
    /// Players' rows by tenant.
    cache: HashMap<String, TenantCache>,
    /// Entries (players × active achievements) in `cache`.
    cached: usize,
    /// The row keys of the players in `cache` (two new players whose keys clash must not get the
    /// same one before either row is written).
    keys: HashSet<i64>,
    /// Players in `cache` whose rows changed since they were last written.
    dirty: usize,
    completions: Vec<Completion>,
    /// End of the last event record folded since the last commit of completions (0: none).
    pending_end: u64,
    /// When the first change since that commit was made.
    pending_since: Option<std::time::Instant>,
    /// End of the last event record folded into rows not written yet (0: every row is written).
    rows_end: u64,
    /// When the first row change since the rows were last written was made.
    rows_since: Option<std::time::Instant>,
}

/// A tenant's achievements as the folding needs them.
pub(super) struct TenantDefs {
    /// The active ones, parsed (an unreadable one is logged and left out).
    pub active: Vec<Def>,
    /// Every live (not deleted) one: progress of the others is dropped from a row when it is next
    /// written.
    pub live: HashSet<String>,
}

/// The events of one record evaluated against a tenant's achievements: on the ingest path (where the
/// events were just parsed, off the ledger's thread), or on the ledger's thread when the definitions
/// changed in between (or on replay). Only what the fold needs, laid out flat.
pub(in crate::embedded) struct Prepared {
    tenant: String,
    /// When the batch was accepted (Unix µs).
    accepted_at: i64,
    /// The definitions it was evaluated with (the fold uses it only if they are still current).
    defs: Arc<TenantDefs>,
    /// Per event that counts for an achievement, in order: its player.
    players: Vec<Counted>,
    /// The players' ids, one after the other.
    users: String,
    /// Per such event, what it adds: the index of the achievement in `defs.active`, and how much.
    contributions: Vec<(u16, phoenix_core::achievement::Contribution)>,
}

impl Prepared {
    /// The events that count for an achievement.
    pub(in crate::embedded) fn counted(&self) -> u64 {
        self.players.len() as u64
    }
}

struct Counted {
    hash: u64,
    /// End of the player's id in `users` (it starts where the previous one ends).
    user_end: usize,
    /// End of the event's contributions (they start where the previous event's end).
    contributions_end: usize,
}

pub(super) fn load_defs(conn: &Connection, tenant: &str) -> Result<TenantDefs, String> {
    let list = q::achievements(conn, tenant).map_err(sql)?;
    let live = list.iter().map(|a| a.achievement_id.clone()).collect();
    let active = list
        .into_iter()
        .filter(|a| a.status == Activity::Active)
        .filter_map(|a| match Def::parse(&a) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(achievement = %a.achievement_id, error = %e, "an achievement no longer parses; it is not scored");
                None
            }
        })
        .collect();
    Ok(TenantDefs { active, live })
}

/// Definitions by tenant (tenants without a live achievement are left out).
pub(super) type DefsByTenant = HashMap<String, Arc<TenantDefs>>;

/// Every tenant that has an achievement (deleted ones aside), and the active definitions.
pub(super) fn load_all(conn: &Connection) -> Result<(HashSet<String>, DefsByTenant), String> {
    let tenants: Vec<String> = conn
        .prepare("SELECT DISTINCT tenant FROM achievements WHERE deleted = 0")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql)?;
    let mut defs = DefsByTenant::new();
    for tenant in &tenants {
        let d = load_defs(conn, tenant)?;
        if !d.live.is_empty() {
            defs.insert(tenant.clone(), Arc::new(d));
        }
    }
    Ok((tenants.into_iter().collect(), defs))
}

/// Where a player's row lives: an integer key (a rowid, cheaper to find and write than two text
/// columns) from a keyed SipHash of tenant and player, the next free one on a clash.
fn row_key(tenant: &str, user: &str) -> i64 {
    use std::hash::Hasher;
    let mut h =
        siphasher::sip::SipHasher13::new_with_keys(0x7068_6f65_6e69_7870, 0x726f_6772_6573_7321);
    h.write(&(tenant.len() as u64).to_le_bytes());
    h.write(tenant.as_bytes());
    h.write(user.as_bytes());
    h.finish() as i64
}

/// A player's row: its key (found, or where it goes) and its entries.
fn read_row(conn: &Connection, tenant: &str, user: &str) -> Result<(i64, Vec<Entry>), String> {
    read_row_avoiding(conn, tenant, user, |_| false)
}

/// [`read_row`], where a key `taken` (by a cached player whose row is not written yet) is not free.
fn read_row_avoiding(
    conn: &Connection,
    tenant: &str,
    user: &str,
    taken: impl Fn(i64) -> bool,
) -> Result<(i64, Vec<Entry>), String> {
    let mut key = row_key(tenant, user);
    loop {
        let row: Option<(String, String, Vec<u8>)> = conn
            .prepare_cached("SELECT tenant, user_id, body FROM progress WHERE k = ?1")
            .and_then(|mut s| {
                s.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(sql)?;
        match row {
            // Free on disk, but given to a new player not written yet: the next key.
            None if taken(key) => key = key.wrapping_add(1),
            None => return Ok((key, Vec::new())),
            Some((t, u, bytes)) if t == tenant && u == user => {
                let entries = decode_row(&bytes)
                    .ok_or_else(|| format!("the progress row of player '{user}' is unreadable"))?;
                return Ok((key, entries));
            }
            // Another player's row: the next key.
            Some(_) => key = key.wrapping_add(1),
        }
    }
}

/// A player's progress as committed (reads).
pub(in crate::embedded) fn player_progress(
    conn: &Connection,
    tenant: &str,
    user: &str,
) -> rusqlite::Result<Vec<Entry>> {
    read_row(conn, tenant, user).map(|(_, e)| e).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

impl Ledger {
    /// Whether events of `tenant` may matter to achievements (a superset: every tenant that has had an
    /// achievement since the start). Asked by the log's writer, in log order.
    pub(in crate::embedded) fn wants_events(&self, tenant: &str) -> bool {
        let tenants = self.event_tenants.read().unwrap_or_else(|p| p.into_inner());
        !tenants.is_empty() && tenants.contains(tenant)
    }

    /// Notes a record in log order, before any later event is handed over: a change to an
    /// achievement takes effect for the events after it (live, from the log's writer; on replay,
    /// from the replay). A record the ledger applied already is part of what was loaded at start.
    pub(in crate::embedded) fn note_record(&self, end: u64, record: &LedgerRecord) {
        if end <= self.watermark() {
            return;
        }
        match record {
            LedgerRecord::AchievementCreated { achievement }
            | LedgerRecord::AchievementUpdated { achievement } => {
                {
                    let mut tenants = self
                        .event_tenants
                        .write()
                        .unwrap_or_else(|p| p.into_inner());
                    if !tenants.contains(&achievement.tenant_id) {
                        tenants.insert(achievement.tenant_id.clone());
                    }
                }
                let def = if achievement.status == Activity::Active {
                    match Def::parse(achievement) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            tracing::error!(achievement = %achievement.achievement_id, error = %e, "an achievement no longer parses; it is not scored");
                            None
                        }
                    }
                } else {
                    None
                };
                self.change_defs(&achievement.tenant_id, |defs| {
                    let id = &achievement.achievement_id;
                    defs.live.insert(id.clone());
                    match (defs.active.iter().position(|d| d.id == *id), def) {
                        (Some(i), Some(def)) => defs.active[i] = def,
                        (Some(i), None) => {
                            defs.active.remove(i);
                        }
                        (None, Some(def)) => defs.active.push(def),
                        (None, None) => {}
                    }
                });
            }
            LedgerRecord::AchievementDeleted {
                tenant_id,
                achievement_id,
            } => self.change_defs(tenant_id, |defs| {
                defs.live.remove(achievement_id);
                defs.active.retain(|d| d.id != *achievement_id);
            }),
            _ => {}
        }
    }

    /// Replaces a tenant's definitions by changed ones (events already evaluated with the old ones
    /// are evaluated again: see [`Prepared`]).
    fn change_defs(&self, tenant: &str, change: impl FnOnce(&mut TenantDefs)) {
        let mut all = self.defs.write().unwrap_or_else(|p| p.into_inner());
        let mut next = match all.get(tenant) {
            Some(d) => TenantDefs {
                active: d.active.clone(),
                live: d.live.clone(),
            },
            None => TenantDefs {
                active: Vec::new(),
                live: HashSet::new(),
            },
        };
        change(&mut next);
        if next.live.is_empty() {
            all.remove(tenant);
        } else {
            all.insert(tenant.to_owned(), Arc::new(next));
        }
    }

    /// A player's place in the cache: a SipHash with keys of this process (a client cannot make
    /// players collide on purpose).
    fn player_hash(&self, user: &str) -> u64 {
        use std::hash::Hasher;
        let mut h =
            siphasher::sip::SipHasher13::new_with_keys(self.player_keys.0, self.player_keys.1);
        h.write(user.as_bytes());
        h.finish()
    }

    /// The tenant's active achievements (`None`: it has none).
    fn defs_of(&self, tenant: &str) -> Option<Arc<TenantDefs>> {
        let defs = self.defs.read().unwrap_or_else(|p| p.into_inner());
        if defs.is_empty() {
            return None;
        }
        defs.get(tenant).filter(|d| !d.active.is_empty()).cloned()
    }

    /// Evaluates a batch of events against the tenant's achievements as they are now (`None`: it has
    /// none). Called on the ingest path, where the events are at hand, and checked again by
    /// [`Ledger::prepared_at_log`] once the batch has its place in the log.
    pub(in crate::embedded) fn prepare(
        &self,
        tenant: &str,
        accepted_at: Timestamp,
        events: &[Event],
    ) -> Option<Prepared> {
        let defs = self.defs_of(tenant)?;
        Some(self.prepare_with(defs, tenant, accepted_at, events))
    }

    /// The evaluation of a batch with the achievements in force at its place in the log: the one
    /// made on the ingest path if they have not changed since, else a new one. Called in log order.
    pub(in crate::embedded) fn prepared_at_log(
        &self,
        earlier: Option<Prepared>,
        tenant: &str,
        accepted_at: Timestamp,
        events: &[Event],
    ) -> Option<Prepared> {
        let defs = self.defs_of(tenant)?;
        match earlier {
            Some(p) if Arc::ptr_eq(&p.defs, &defs) => Some(p),
            _ => Some(self.prepare_with(defs, tenant, accepted_at, events)),
        }
    }

    fn prepare_with(
        &self,
        defs: Arc<TenantDefs>,
        tenant: &str,
        accepted_at: Timestamp,
        events: &[Event],
    ) -> Prepared {
        let mut prepared = Prepared {
            tenant: tenant.to_owned(),
            // The log keeps microseconds: the same instant live and on replay.
            accepted_at: micros(accepted_at),
            players: Vec::new(),
            users: String::new(),
            contributions: Vec::new(),
            defs,
        };
        for event in events {
            let start = prepared.contributions.len();
            let event_type = event.event_type();
            prepared
                .contributions
                .extend(
                    prepared
                        .defs
                        .active
                        .iter()
                        .enumerate()
                        .filter_map(|(i, def)| {
                            def.metric
                                .contribution_of_type(event, event_type)
                                .map(|c| (i as u16, c))
                        }),
                );
            if prepared.contributions.len() == start {
                continue;
            }
            let user = event.user_id();
            prepared.users.push_str(user);
            prepared.players.push(Counted {
                hash: self.player_hash(user),
                user_end: prepared.users.len(),
                contributions_end: prepared.contributions.len(),
            });
        }
        // It may wait in the queue: no spare capacity.
        prepared.players.shrink_to_fit();
        prepared.users.shrink_to_fit();
        prepared.contributions.shrink_to_fit();
        prepared
    }

    /// Folds one event record (ending at log position `end`) into the players' progress, with its
    /// evaluation from the ingest path when there is one. Its effects are committed by
    /// [`Ledger::flush`] (called here when many players changed).
    pub(in crate::embedded) fn apply_events(
        &self,
        end: u64,
        prepared: &Prepared,
    ) -> Result<(), String> {
        // Folded already when the rows written include it (on replay, events between the rows'
        // watermark and the ledger's are folded again; their completions are recorded once).
        if end <= self.progress_watermark() {
            return Ok(());
        }
        if !self.is_healthy() {
            return Err("the rewards ledger stopped after an earlier failure".into());
        }
        // Fail-stop: a record folded in part must never be committed (the watermark would be wrong
        // for it); the next start folds it again from the log.
        self.fold_events(end, prepared)
            .inspect_err(|e| self.fail(e))
    }

    fn fold_events(&self, end: u64, prepared: &Prepared) -> Result<(), String> {
        let (tenant, defs) = (prepared.tenant.as_str(), &prepared.defs);
        let at_us = prepared.accepted_at;
        let accepted_at = from_micros(at_us);
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        let changed = !prepared.players.is_empty();
        if changed {
            let Hot {
                cache,
                cached: cached_count,
                keys,
                dirty: dirty_count,
                completions,
                ..
            } = &mut *hot;
            if !cache.contains_key(tenant) {
                cache.insert(
                    tenant.to_owned(),
                    TenantCache {
                        defs: defs.clone(),
                        players: hashbrown::HashTable::new(),
                    },
                );
            }
            let Some(tenant_cache) = cache.get_mut(tenant) else {
                return Ok(());
            };
            if !Arc::ptr_eq(&tenant_cache.defs, defs) {
                let old = &tenant_cache.defs;
                let same_layout = old.live == defs.live
                    && old
                        .active
                        .iter()
                        .map(|d| &d.id)
                        .eq(defs.active.iter().map(|d| &d.id));
                if same_layout {
                    // Same achievements (a name, a flag or added steps changed): only the next
                    // thresholds are found again.
                    for c in tenant_cache.players.iter_mut() {
                        c.entries.iter_mut().for_each(|e| e.next = 0.0);
                    }
                } else {
                    // The achievements changed: lay the players' progress out along the new ones.
                    tenant_cache.players.iter_mut().for_each(|c| c.align(defs));
                }
                tenant_cache.defs = defs.clone();
            }
            let players = &mut tenant_cache.players;
            let (mut user_start, mut contributions_start) = (0, 0);
            for counted in &prepared.players {
                let user = prepared
                    .users
                    .get(user_start..counted.user_end)
                    .ok_or("a prepared batch is inconsistent")?;
                let contributions = prepared
                    .contributions
                    .get(contributions_start..counted.contributions_end)
                    .ok_or("a prepared batch is inconsistent")?;
                user_start = counted.user_end;
                contributions_start = counted.contributions_end;
                let hash = counted.hash;
                let cached =
                    match players.entry(hash, |c| c.hash == hash && *c.user == *user, |c| c.hash) {
                        hashbrown::hash_table::Entry::Occupied(o) => o.into_mut(),
                        hashbrown::hash_table::Entry::Vacant(v) => {
                            let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                            let (key, entries) =
                                read_row_avoiding(&conn, tenant, user, |k| keys.contains(&k))?;
                            keys.insert(key);
                            drop(conn);
                            let mut row = Cached {
                                hash,
                                user: user.into(),
                                key,
                                entries,
                                others: Vec::new(),
                                dirty: false,
                            };
                            row.align(defs);
                            *cached_count += row.entries.len().max(1);
                            v.insert(row).into_mut()
                        }
                    };
                for &(i, contribution) in contributions {
                    let i = usize::from(i);
                    let (Some(def), Some(entry)) = (defs.active.get(i), cached.entries.get_mut(i))
                    else {
                        return Err("a player's progress does not match the achievements".into());
                    };
                    let mut progress = Progress {
                        value: entry.v,
                        runs: std::mem::take(&mut entry.r),
                    };
                    let value = progress.apply(contribution);
                    entry.v = value;
                    entry.r = progress.runs;
                    // Only when a threshold may have been crossed (the usual event crosses none,
                    // and is told so by `next` without looking at the steps).
                    if value < entry.next {
                        continue;
                    }
                    let first_open = |c: &[Option<i64>]| {
                        def.steps
                            .iter()
                            .enumerate()
                            .find(|(s, _)| c.get(*s).copied().flatten().is_none())
                            .map_or(f64::INFINITY, |(_, step)| step.threshold)
                    };
                    if value >= first_open(&entry.c) {
                        let done: Vec<bool> = entry.c.iter().map(Option::is_some).collect();
                        for step in newly_completed(&def.steps, &done, value) {
                            if entry.c.len() <= step {
                                entry.c.resize(step + 1, None);
                            }
                            entry.c[step] = Some(at_us);
                            completions.push(Completion {
                                end,
                                tenant: tenant.to_owned(),
                                achievement_id: def.id.clone(),
                                user_id: user.to_owned(),
                                step: step as u32,
                                threshold: def.steps[step].threshold,
                                at: accepted_at,
                                rewards: def.steps[step].rewards.clone(),
                            });
                        }
                    }
                    entry.next = first_open(&entry.c);
                }
                if !cached.dirty {
                    cached.dirty = true;
                    *dirty_count += 1;
                }
            }
        }
        if changed || hot.pending_end > 0 {
            hot.pending_end = end;
            hot.pending_since
                .get_or_insert_with(std::time::Instant::now);
        }
        if changed || hot.rows_end > 0 {
            hot.rows_end = end;
            hot.rows_since.get_or_insert_with(std::time::Instant::now);
        }
        let full = hot.dirty >= MAX_DIRTY_PLAYERS;
        drop(hot);
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// When something must be committed at the latest (`None`: nothing waits): completions within
    /// [`FLUSH_INTERVAL`], players' rows within [`ROWS_INTERVAL`].
    pub(in crate::embedded) fn flush_due(&self) -> Option<std::time::Instant> {
        if !self.is_healthy() {
            // Nothing commits any more: do not wake for it.
            return None;
        }
        let hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        let quick = hot.pending_since.map(|since| since + FLUSH_INTERVAL);
        let rows = hot.rows_since.map(|since| since + ROWS_INTERVAL);
        match (quick, rows) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Commits what is due (see [`Ledger::flush_due`]).
    pub(in crate::embedded) fn flush_when_due(&self) -> Result<(), String> {
        let rows_due = {
            let hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
            hot.rows_since
                .is_some_and(|since| since + ROWS_INTERVAL <= std::time::Instant::now())
        };
        self.commit(rows_due)
    }

    /// Commits everything folded: players' rows, completions and both watermarks.
    pub(in crate::embedded) fn flush(&self) -> Result<(), String> {
        self.commit(true)
    }

    /// Commits the completions of folded events (their grants, counts and messages) and the ledger's
    /// watermark; players' rows wait (they are rebuilt from the log after a crash).
    pub(in crate::embedded) fn flush_completions(&self) -> Result<(), String> {
        self.commit(false)
    }

    /// One transaction: with `rows`, every changed player's row and the rows' watermark; always, the
    /// completions folded so far and the ledger's watermark.
    fn commit(&self, rows: bool) -> Result<(), String> {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        let quick_end = hot.pending_end;
        let rows_end = if rows { hot.rows_end } else { 0 };
        if quick_end == 0 && rows_end == 0 {
            return Ok(());
        }
        if !self.is_healthy() {
            // What the cache holds may be a record folded in part: never commit it.
            return Err("the rewards ledger stopped after an earlier failure".into());
        }
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            let tx = conn.transaction().map_err(sql)?;
            let meta = |k: &str| -> Result<u64, String> {
                tx.query_row("SELECT v FROM ledger_meta WHERE k = ?1", params![k], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|v| v.max(0) as u64)
                .map_err(sql)
            };
            let (stored_applied, stored_rows) = (meta("applied")?, meta("progress")?);
            let write_rows = rows_end > stored_rows;
            if write_rows {
                // In key order: neighbouring rows share the file's pages.
                let mut rows: Vec<(&str, &Cached)> = Vec::with_capacity(hot.dirty);
                for (tenant, players) in &hot.cache {
                    rows.extend(
                        players
                            .players
                            .iter()
                            .filter(|c| c.dirty)
                            .map(|c| (tenant.as_str(), c)),
                    );
                }
                rows.sort_unstable_by_key(|(_, c)| c.key);
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO progress(k, tenant, user_id, body) VALUES(?1, ?2, ?3, ?4)",
                    )
                    .map_err(sql)?;
                for (tenant, cached) in rows {
                    let body = encode_row(cached.all());
                    insert
                        .execute(params![cached.key, tenant, &*cached.user, body])
                        .map_err(sql)?;
                }
                drop(insert);
                tx.execute(
                    "UPDATE ledger_meta SET v = ?1 WHERE k = 'progress'",
                    params![rows_end as i64],
                )
                .map_err(sql)?;
            }
            let counts = write_completions(&tx, &hot.completions, &self.code_key, stored_applied)?;
            if quick_end > stored_applied {
                tx.execute(
                    "UPDATE ledger_meta SET v = ?1 WHERE k = 'applied'",
                    params![quick_end as i64],
                )
                .map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
            Ok::<_, String>((counts, write_rows))
        })();
        drop(conn);
        match result {
            Ok(((completed, granted, messages), _wrote_rows)) => {
                // Written now, or already on disk (the rows' watermark on disk was past them):
                // either way the file holds them, and the cached rows are clean.
                if rows {
                    if hot.dirty > 0 {
                        for players in hot.cache.values_mut() {
                            players.players.iter_mut().for_each(|c| c.dirty = false);
                        }
                        hot.dirty = 0;
                    }
                    hot.rows_end = 0;
                    hot.rows_since = None;
                    // Only clean rows may go: every row is written now.
                    if hot.cached > MAX_CACHED_ENTRIES {
                        hot.cache = HashMap::new();
                        hot.keys = HashSet::new();
                        hot.cached = 0;
                    }
                }
                hot.completions.clear();
                hot.pending_end = 0;
                hot.pending_since = None;
                drop(hot);
                if rows && rows_end > 0 {
                    self.progress_applied.fetch_max(rows_end, Ordering::AcqRel);
                }
                if quick_end > 0 {
                    self.applied.fetch_max(quick_end, Ordering::AcqRel);
                    self.progress.send_replace(self.watermark());
                }
                self.counters
                    .completions
                    .fetch_add(completed, Ordering::Relaxed);
                self.counters
                    .grants_achievement
                    .fetch_add(granted, Ordering::Relaxed);
                self.counters
                    .webhook_messages
                    .fetch_add(messages, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                drop(hot);
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// A player's progress as folded so far, written or not (`None` when the cache does not hold
    /// the player: the written row is current then).
    pub(in crate::embedded) fn cached_progress(
        &self,
        tenant: &str,
        user: &str,
    ) -> Option<Vec<Entry>> {
        let hash = self.player_hash(user);
        let hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        hot.cache
            .get(tenant)
            .and_then(|p| p.players.find(hash, |c| c.hash == hash && *c.user == *user))
            .map(|c| c.all().filter(|e| !e.is_empty()).cloned().collect())
    }

    /// The log position up to which players' rows are written.
    pub(in crate::embedded) fn progress_watermark(&self) -> u64 {
        self.progress_applied.load(Ordering::Acquire)
    }
}

/// Writes completed steps: their counts, their grants, and their webhook messages. Returns the
/// completions, the grants and the messages made.
fn write_completions(
    tx: &Transaction<'_>,
    completions: &[Completion],
    code_key: &[u8; 32],
    applied: u64,
) -> Result<(u64, u64, u64), String> {
    let mut granted = 0u64;
    let mut messages = 0u64;
    let mut completed = 0u64;
    // Counts are added once per key and commit, not once per completion.
    let mut step_counts: HashMap<(&str, &str, u32), i64> = HashMap::new();
    let mut templates: HashMap<(String, String), i64> = HashMap::new();
    let mut grant_counts: HashMap<(&str, &str), i64> = HashMap::new();
    let mut routes: HashMap<&str, outbox::Routes> = HashMap::new();
    for c in completions {
        let tenant = c.tenant.as_str();
        // Recorded once: a replay that folds the event again (its player's row was not written
        // before a crash) completes the step again; if the event is at or before the ledger's
        // watermark, this completion was committed with it (completions commit with the watermark
        // past their events), so it is not a second one.
        if c.end <= applied {
            continue;
        }
        completed += 1;
        if !routes.contains_key(tenant) {
            routes.insert(tenant, outbox::routes(tx, tenant)?);
        }
        let route = &routes[tenant];
        *step_counts
            .entry((tenant, c.achievement_id.as_str(), c.step))
            .or_default() += 1;
        if c.rewards.is_empty() && !route.wants("achievement.completed") {
            // Nothing to grant and nobody to tell: the count is all.
            continue;
        }
        let source = GrantSource {
            kind: "achievement".into(),
            id: c.achievement_id.clone(),
            leaderboard_id: None,
            window_id: None,
            rank: None,
            step: Some(c.step),
            threshold: Some(c.threshold),
            code: None,
        };
        let source_text = json_text(&source)?;
        let mut grant_ids = Vec::with_capacity(c.rewards.len());
        let mut new_grants = 0i64;
        for (index, reward) in c.rewards.iter().enumerate() {
            let key = grant_key(
                tenant,
                IdSource::Achievement {
                    achievement_id: &c.achievement_id,
                    step: c.step,
                },
                &c.user_id,
                index,
            );
            let grant_id = grant_id_of_key(key);
            let coupon_code = match reward {
                Reward::Coupon { campaign_id } => {
                    let code = derived_code(tx, code_key, tenant, &key)?;
                    insert_code(tx, tenant, &code, campaign_id, true, Some(&c.user_id), c.at)?;
                    Some(code)
                }
                _ => None,
            };
            let reward_json = reward.to_json();
            if insert_grant(
                tx,
                &NewGrant {
                    tenant,
                    key,
                    user_id: &c.user_id,
                    created_at: c.at,
                    source_id: &c.achievement_id,
                    template: {
                        let reward_text = json_text(&reward_json)?;
                        // The same few (reward, step) pairs over and over: looked up once a commit.
                        match templates.get(&(reward_text.clone(), source_text.clone())) {
                            Some(id) => *id,
                            None => {
                                let id = template_id(tx, &reward_text, &source_text)?;
                                templates.insert((reward_text, source_text.clone()), id);
                                id
                            }
                        }
                    },
                    rank: None,
                    coupon_code: coupon_code.as_deref(),
                },
            )? {
                new_grants += 1;
                messages += outbox::enqueue(
                    tx,
                    route,
                    tenant,
                    "reward.granted",
                    &grant_id,
                    c.at,
                    grant_json(
                        &grant_id,
                        &c.user_id,
                        reward_json,
                        &source,
                        GrantStatus::Pending,
                        c.at,
                        (None, None, None),
                        coupon_code.as_deref(),
                    ),
                )?;
            }
            grant_ids.push(grant_id);
        }
        if new_grants > 0 {
            *grant_counts
                .entry((tenant, c.achievement_id.as_str()))
                .or_default() += new_grants;
        }
        granted += new_grants as u64;
        messages += outbox::enqueue(
            tx,
            route,
            tenant,
            "achievement.completed",
            &format!("{}/{}/{}", c.achievement_id, c.user_id, c.step),
            c.at,
            serde_json::json!({
                "achievement_id": c.achievement_id,
                "user_id": c.user_id,
                "step": c.step,
                "threshold": c.threshold,
                "grant_ids": grant_ids,
            }),
        )?;
    }
    for ((tenant, achievement_id, step), n) in step_counts {
        add_count(tx, tenant, "c", &format!("{achievement_id}/{step}"), n).map_err(sql)?;
    }
    for ((tenant, achievement_id), n) in grant_counts {
        count_grant(tx, tenant, achievement_id, GrantStatus::Pending, n).map_err(sql)?;
    }
    Ok((completed, granted, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn achievement(id: &str, status: Activity) -> Achievement {
        Achievement {
            tenant_id: "t".into(),
            achievement_id: id.into(),
            name: id.into(),
            description: String::new(),
            status,
            hidden: false,
            metric: serde_json::json!({"event_type": "match.completed", "aggregation": "count"}),
            steps: serde_json::json!([{"threshold": 10.0, "rewards": []}]),
            version: 1,
            created_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
        }
    }

    /// An evaluation made on the ingest path before a change to the tenant's achievements is made
    /// again once the batch's place in the log is after that change; one made after it is kept.
    #[test]
    fn an_evaluation_older_than_a_change_is_made_again_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), [7; 32], 0).unwrap();
        let now = Timestamp::now();
        let events = vec![
            Event::from_stored(serde_json::json!({
                "event_id": "e1", "type": "match.completed", "occurred_at": now.to_string(),
                "actor": {"user_id": "ann"}
            }))
            .unwrap(),
        ];
        assert!(ledger.prepare("t", now, &events).is_none());
        ledger.note_record(
            10,
            &LedgerRecord::AchievementCreated {
                achievement: achievement("wins", Activity::Active),
            },
        );
        assert!(ledger.wants_events("t"));
        let early = ledger.prepare("t", now, &events).unwrap();
        assert_eq!(early.contributions.len(), 1);
        let kept = ledger
            .prepared_at_log(Some(early), "t", now, &events)
            .unwrap();
        let early_defs = kept.defs.clone();
        assert_eq!(kept.contributions.len(), 1);
        // A second achievement, noted (in log order) after the batch was evaluated.
        ledger.note_record(
            20,
            &LedgerRecord::AchievementCreated {
                achievement: achievement("kills", Activity::Active),
            },
        );
        let again = ledger
            .prepared_at_log(Some(kept), "t", now, &events)
            .unwrap();
        assert!(!Arc::ptr_eq(&again.defs, &early_defs));
        assert_eq!(again.contributions.len(), 2);
        assert_eq!(again.counted(), 1);
        // Paused, then deleted: it stays live (its progress is kept) until deleted.
        ledger.note_record(
            30,
            &LedgerRecord::AchievementUpdated {
                achievement: achievement("wins", Activity::Inactive),
            },
        );
        let defs = ledger.defs_of("t").unwrap();
        assert_eq!(defs.active.len(), 1);
        assert!(defs.live.contains("wins"));
        ledger.note_record(
            40,
            &LedgerRecord::AchievementDeleted {
                tenant_id: "t".into(),
                achievement_id: "wins".into(),
            },
        );
        let defs = ledger.defs_of("t").unwrap();
        assert!(!defs.live.contains("wins"));
        assert_eq!(defs.active[0].id, "kills");
    }

    /// A key given to a cached player whose row is not written yet is not free for another one (two
    /// new players whose keys clash within one rows window get different rows).
    #[test]
    fn a_key_taken_in_the_cache_is_not_given_twice() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), [7; 32], 0).unwrap();
        let conn = ledger.writer.lock().unwrap();
        let k = row_key("t", "ann");
        assert_eq!(read_row(&conn, "t", "ann").unwrap().0, k);
        let (key, entries) = read_row_avoiding(&conn, "t", "ann", |x| x == k).unwrap();
        assert_eq!(key, k.wrapping_add(1));
        assert!(entries.is_empty());
    }

    #[test]
    fn rows_round_trip_and_damage_is_detected() {
        let entries = vec![
            Entry {
                a: "slayer".into(),
                v: 12.5,
                c: vec![Some(1_700_000_000_000_000), None, Some(-5)],
                r: vec![],
                next: 0.0,
            },
            Entry {
                a: "daily".into(),
                v: 4.0,
                c: vec![],
                r: vec![(19_000, 19_003), (19_010, 19_010)],
                next: 0.0,
            },
        ];
        let bytes = encode_row(entries.iter().chain([&Entry::empty("untouched")]));
        assert_eq!(decode_row(&bytes), Some(entries));
        assert_eq!(decode_row(&encode_row([].iter())), Some(vec![]));
        assert_eq!(decode_row(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_row(&longer), None);
        assert_eq!(decode_row(&[]), None);
    }
}
