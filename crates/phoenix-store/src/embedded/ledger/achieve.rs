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
//! Memory: the cache holds at most [`MAX_CACHED_PLAYERS`] players (clean ones are dropped after a
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
/// Players whose progress the cache holds before it is emptied after a commit.
const MAX_CACHED_PLAYERS: usize = 300_000;
/// Changed players that make a commit happen at once.
const MAX_DIRTY_PLAYERS: usize = 150_000;
/// Event records queued for the ledger's thread beyond which the log's writer waits (backpressure).
pub(in crate::embedded) const MAX_QUEUED_EVENTS: u64 = 100_000;

/// An active achievement, parsed.
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
}

/// Row format version (the first byte of a row).
const ROW_V1: u8 = 1;

/// A player's row: version, entry count (u16), then per entry the id (u8 length + bytes), the value
/// (f64), the steps (u8 count, then i64 each: the completion time, or `i64::MIN` for none) and the runs
/// (u16 count, then two i32 each), all little-endian. Compact and quick to read and write, since a row
/// is written whenever its player's progress changes.
fn encode_row(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + entries.len() * 32);
    out.push(ROW_V1);
    out.extend_from_slice(&(entries.len().min(u16::MAX as usize) as u16).to_le_bytes());
    for e in entries.iter().take(u16::MAX as usize) {
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
        entries.push(Entry { a, v, c, r: rs });
    }
    r.0.is_empty().then_some(entries)
}

struct Cached {
    /// The row's key in `progress`.
    key: i64,
    entries: Vec<Entry>,
    dirty: bool,
}

/// A step completed by an event, waiting for its commit.
struct Completion {
    tenant: String,
    achievement_id: String,
    user_id: String,
    step: u32,
    threshold: f64,
    at: Timestamp,
    rewards: Vec<Reward>,
}

/// The uncommitted state of achievements and the active definitions.
#[derive(Default)]
pub(super) struct Hot {
    /// Active achievements by tenant.
    defs: HashMap<String, Arc<TenantDefs>>,
    /// Players' rows by tenant, then player.
    cache: HashMap<String, HashMap<String, Cached>>,
    /// Players in `cache`.
    cached: usize,
    /// The players whose rows changed since the last commit.
    dirty: Vec<(String, String)>,
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

impl Hot {
    pub(super) fn set_defs(&mut self, tenant: &str, defs: TenantDefs) {
        if defs.active.is_empty() {
            self.defs.remove(tenant);
        } else {
            self.defs.insert(tenant.to_owned(), Arc::new(defs));
        }
    }
}

/// A tenant's achievements as the folding needs them.
pub(super) struct TenantDefs {
    /// The active ones, parsed (an unreadable one is logged and left out).
    pub active: Vec<Def>,
    /// Every live (not deleted) one: progress of the others is dropped from a row when it is next
    /// written.
    pub live: HashSet<String>,
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

/// Every tenant that has an achievement (deleted ones aside), and the active definitions.
pub(super) fn load_all(conn: &Connection) -> Result<(HashSet<String>, Hot), String> {
    let tenants: Vec<String> = conn
        .prepare("SELECT DISTINCT tenant FROM achievements WHERE deleted = 0")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql)?;
    let mut hot = Hot::default();
    for tenant in &tenants {
        let defs = load_defs(conn, tenant)?;
        hot.set_defs(tenant, defs);
    }
    Ok((tenants.into_iter().collect(), hot))
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

    /// Notes, in log order, that a tenant has achievements (before any later event is handed over).
    pub(in crate::embedded) fn note_record(&self, record: &LedgerRecord) {
        if let LedgerRecord::AchievementCreated { achievement }
        | LedgerRecord::AchievementUpdated { achievement } = record
        {
            let mut tenants = self
                .event_tenants
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if !tenants.contains(&achievement.tenant_id) {
                tenants.insert(achievement.tenant_id.clone());
            }
        }
    }

    /// Folds one event record (ending at log position `end`) into the players' progress. Its effects
    /// are committed by [`Ledger::flush`] (called here when the cache grows).
    pub(in crate::embedded) fn apply_events(
        &self,
        end: u64,
        tenant: &str,
        accepted_at: Timestamp,
        events: &[Event],
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
        self.fold_events(end, tenant, accepted_at, events)
            .inspect_err(|e| self.fail(e))
    }

    fn fold_events(
        &self,
        end: u64,
        tenant: &str,
        accepted_at: Timestamp,
        events: &[Event],
    ) -> Result<(), String> {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(defs) = hot.defs.get(tenant).cloned() else {
            return Ok(());
        };
        // The log keeps microseconds: the same instant live and on replay.
        let at_us = micros(accepted_at);
        let accepted_at = from_micros(at_us);
        let mut changed = false;
        let mut counted: Vec<(usize, phoenix_core::achievement::Contribution)> =
            Vec::with_capacity(defs.active.len());
        for event in events {
            counted.clear();
            counted.extend(
                defs.active
                    .iter()
                    .enumerate()
                    .filter_map(|(i, def)| def.metric.contribution(event).map(|c| (i, c))),
            );
            if counted.is_empty() {
                continue;
            }
            let user = event.user_id();
            let known = hot
                .cache
                .get(tenant)
                .is_some_and(|players| players.contains_key(user));
            if !known {
                let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                let (key, mut entries) = read_row(&conn, tenant, user)?;
                drop(conn);
                entries.retain(|e| defs.live.contains(&e.a));
                hot.cache.entry(tenant.to_owned()).or_default().insert(
                    user.to_owned(),
                    Cached {
                        key,
                        entries,
                        dirty: false,
                    },
                );
                hot.cached += 1;
            }
            let Hot {
                cache,
                dirty,
                completions,
                ..
            } = &mut *hot;
            let Some(cached) = cache.get_mut(tenant).and_then(|p| p.get_mut(user)) else {
                continue;
            };
            for &(i, contribution) in &counted {
                let def = &defs.active[i];
                let entry = match cached.entries.iter().position(|e| e.a == def.id) {
                    Some(i) => &mut cached.entries[i],
                    None => {
                        cached.entries.push(Entry {
                            a: def.id.clone(),
                            ..Entry::default()
                        });
                        let last = cached.entries.len() - 1;
                        &mut cached.entries[last]
                    }
                };
                let mut progress = Progress {
                    value: entry.v,
                    runs: std::mem::take(&mut entry.r),
                };
                let value = progress.apply(contribution);
                entry.v = value;
                entry.r = progress.runs;
                // Only when a threshold may have been crossed (the usual event crosses none).
                let next = def
                    .steps
                    .iter()
                    .enumerate()
                    .find(|(s, _)| entry.c.get(*s).copied().flatten().is_none())
                    .map(|(_, step)| step.threshold);
                if next.is_some_and(|t| value >= t) {
                    let done: Vec<bool> = entry.c.iter().map(Option::is_some).collect();
                    for step in newly_completed(&def.steps, &done, value) {
                        if entry.c.len() <= step {
                            entry.c.resize(step + 1, None);
                        }
                        entry.c[step] = Some(at_us);
                        completions.push(Completion {
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
            }
            if !cached.dirty {
                cached.dirty = true;
                dirty.push((tenant.to_owned(), user.to_owned()));
            }
            changed = true;
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
        let full = hot.dirty.len() >= MAX_DIRTY_PLAYERS;
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
                for (tenant, user) in &hot.dirty {
                    let Some(cached) = hot.cache.get(tenant).and_then(|p| p.get(user)) else {
                        continue;
                    };
                    let body = encode_row(&cached.entries);
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO progress(k, tenant, user_id, body) VALUES(?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| s.execute(params![cached.key, tenant, user, body]))
                    .map_err(sql)?;
                }
                tx.execute(
                    "UPDATE ledger_meta SET v = ?1 WHERE k = 'progress'",
                    params![rows_end as i64],
                )
                .map_err(sql)?;
            }
            let counts = write_completions(&tx, &hot.completions, &self.code_key)?;
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
                    let dirty = std::mem::take(&mut hot.dirty);
                    for (tenant, user) in &dirty {
                        if let Some(c) = hot.cache.get_mut(tenant).and_then(|p| p.get_mut(user)) {
                            c.dirty = false;
                        }
                    }
                    hot.rows_end = 0;
                    hot.rows_since = None;
                    // Only clean rows may go: every row is written now.
                    if hot.cached > MAX_CACHED_PLAYERS {
                        hot.cache = HashMap::new();
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
        let hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        hot.cache
            .get(tenant)
            .and_then(|p| p.get(user))
            .map(|c| c.entries.clone())
    }

    /// The log position up to which players' rows are written.
    pub(in crate::embedded) fn progress_watermark(&self) -> u64 {
        self.progress_applied.load(Ordering::Acquire)
    }

    /// Sets a tenant's active achievements (after a change to one was committed).
    pub(super) fn set_defs(&self, tenant: &str, defs: TenantDefs) {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        hot.set_defs(tenant, defs);
    }
}

/// Writes completed steps: their counts, their grants, and their webhook messages. Returns the
/// completions, the grants and the messages made.
fn write_completions(
    tx: &Transaction<'_>,
    completions: &[Completion],
    code_key: &[u8; 32],
) -> Result<(u64, u64, u64), String> {
    let mut granted = 0u64;
    let mut messages = 0u64;
    let mut completed = 0u64;
    // Counts are added once per key and commit, not once per completion.
    let mut step_counts: HashMap<(&str, String), i64> = HashMap::new();
    let mut grant_counts: HashMap<(&str, &str), i64> = HashMap::new();
    let mut routes: HashMap<&str, outbox::Routes> = HashMap::new();
    for c in completions {
        let tenant = c.tenant.as_str();
        // Recorded once: a replay that folds the event again (its player's row was not written
        // before a crash) completes the step again, and that is not a second completion.
        let first = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO completed(tenant, achievement_id, step, user_id)
                 VALUES(?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![tenant, c.achievement_id, c.step, c.user_id]))
            .map_err(sql)?;
        if first == 0 {
            continue;
        }
        completed += 1;
        if !routes.contains_key(tenant) {
            routes.insert(tenant, outbox::routes(tx, tenant)?);
        }
        let route = &routes[tenant];
        *step_counts
            .entry((tenant, format!("{}/{}", c.achievement_id, c.step)))
            .or_default() += 1;
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
                    template: template_id(tx, &json_text(&reward_json)?, &source_text)?,
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
    for ((tenant, key), n) in step_counts {
        add_count(tx, tenant, "c", &key, n).map_err(sql)?;
    }
    for ((tenant, achievement_id), n) in grant_counts {
        count_grant(tx, tenant, achievement_id, GrantStatus::Pending, n).map_err(sql)?;
    }
    Ok((completed, granted, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_damage_is_detected() {
        let entries = vec![
            Entry {
                a: "slayer".into(),
                v: 12.5,
                c: vec![Some(1_700_000_000_000_000), None, Some(-5)],
                r: vec![],
            },
            Entry {
                a: "daily".into(),
                v: 4.0,
                c: vec![],
                r: vec![(19_000, 19_003), (19_010, 19_010)],
            },
        ];
        let bytes = encode_row(&entries);
        assert_eq!(decode_row(&bytes), Some(entries));
        assert_eq!(decode_row(&encode_row(&[])), Some(vec![]));
        assert_eq!(decode_row(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_row(&longer), None);
        assert_eq!(decode_row(&[]), None);
    }
}
