//! The scoring engine: the live state of every leaderboard, as the fold of accepted events. For each
//! event it finds the tenant's active leaderboards whose filters match, sums the points of every matching
//! rule, picks the window that contains `occurred_at`, aggregates into the player's score and moves the
//! player in that window's rank index. Pure and deterministic: applying the same events with the same
//! sequence numbers and acceptance times always gives the same standings, which is what recovery relies on.

use crate::config::{Aggregation, LeaderboardConfig};
use crate::event::Event;
use crate::ids::LeaderboardId;
use crate::intern::{UserHandle, UserInterner};
use crate::rank::RankIndex;
use crate::window::{Window, WindowId, WindowStatus};
use jiff::Timestamp;
use std::collections::{BTreeMap, HashMap};

/// What applying one event did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Leaderboards whose standings the event changed or entered.
    pub scored: u32,
    /// Leaderboards where the event matched but its window had already closed when it was accepted.
    pub late: u32,
}

/// One row of standings as readers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub rank: u32,
    pub user_id: String,
    pub score: f64,
    pub updated_at: Timestamp,
    /// When the player reached this score (acceptance order): with the score, the entry's unique key
    /// in the ranking, which paging cursors resume after.
    pub seq: u64,
}

/// One window of one leaderboard. A player's `updated_at` is kept in the rank index's row beside the
/// score (no second per-player map); `latest` boards also remember the `occurred_at` that set it.
pub struct WindowStandings {
    pub window: Window,
    index: RankIndex,
    /// For `latest` aggregation only: the `occurred_at` (Unix µs) of the event that set the score.
    /// Keyed by dense handles: a cheap hash instead of SipHash.
    latest: hashbrown::HashMap<UserHandle, i64>,
}

impl WindowStandings {
    fn new(window: Window, config: &LeaderboardConfig) -> Self {
        WindowStandings {
            window,
            index: RankIndex::new(
                config.ranking.method,
                config.ranking.size,
                config.ranking.min_score,
            ),
            latest: hashbrown::HashMap::new(),
        }
    }

    /// Ranked entries (those within `ranking.size` and passing `min_score`).
    pub fn ranked_len(&self) -> u32 {
        self.index.ranked_len()
    }

    /// Every player with a score, ranked or not.
    pub fn scored_len(&self) -> u32 {
        self.index.len()
    }

    pub fn index(&self) -> &RankIndex {
        &self.index
    }
}

/// A leaderboard's compiled config and its windows.
pub struct LeaderboardState {
    pub uid: u64,
    pub leaderboard_id: LeaderboardId,
    pub config: LeaderboardConfig,
    pub active: bool,
    /// Which leaderboard with this id it is (1 for the first; see [`WindowId::for_incarnation`]).
    pub incarnation: u32,
    /// Windows whose standings are in memory: open ones, and ended ones not yet moved to cold storage.
    windows: BTreeMap<WindowId, WindowStandings>,
    /// Ended windows whose final standings were moved out of memory ([`Engine::make_cold`]); storage
    /// keeps them and answers their reads.
    cold: BTreeMap<WindowId, Window>,
    /// The window the last scored event fell in: most events land in it, so `window_for` is skipped.
    recent: Option<WindowId>,
}

/// Where an event's window is.
enum Slot<'a> {
    Hot(&'a mut WindowStandings),
    /// Moved to cold storage: it ended before the log's acceptance high-water mark, so it is late.
    Cold,
}

/// An ended window's final ranked standings, in rank order: what cold storage keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenWindow {
    pub window: Window,
    pub method: crate::config::RankingMethod,
    pub entries: Vec<Standing>,
}

impl LeaderboardState {
    /// Every window that has standings, in memory or cold.
    pub fn all_windows(&self) -> impl Iterator<Item = &Window> {
        self.windows
            .values()
            .map(|w| &w.window)
            .chain(self.cold.values())
    }

    /// A window held in memory.
    pub fn window(&self, id: &WindowId) -> Option<&WindowStandings> {
        self.windows.get(id)
    }

    /// A window moved to cold storage.
    pub fn cold_window(&self, id: &WindowId) -> Option<&Window> {
        self.cold.get(id)
    }

    /// Makes this the `incarnation`-th board with its id, renaming the windows it holds to match.
    fn set_incarnation(&mut self, incarnation: u32) {
        self.incarnation = incarnation;
        self.recent = None;
        let windows = std::mem::take(&mut self.windows);
        for (_, mut standings) in windows {
            standings.window.id = standings.window.id.clone().for_incarnation(incarnation);
            self.windows.insert(standings.window.id.clone(), standings);
        }
        let cold = std::mem::take(&mut self.cold);
        for (_, mut window) in cold {
            window.id = window.id.clone().for_incarnation(incarnation);
            self.cold.insert(window.id.clone(), window);
        }
    }

    /// The window readers see at `now` (SPEC §6): the open one, or the upcoming or last closed one.
    pub fn current_window(&self, now: Timestamp) -> (Window, WindowStatus) {
        let (mut window, status) = self.config.timeframe.current_window(now);
        window.id = window.id.for_incarnation(self.incarnation);
        (window, status)
    }

    fn window_for(&mut self, at: Timestamp) -> Option<Slot<'_>> {
        let cached = self
            .recent
            .as_ref()
            .and_then(|id| self.windows.get(id))
            .is_some_and(|w| w.window.contains(at));
        if !cached {
            let mut window = self.config.timeframe.window_for(at)?;
            window.id = window.id.for_incarnation(self.incarnation);
            if self.cold.contains_key(&window.id) {
                return Some(Slot::Cold);
            }
            let id = window.id.clone();
            if !self.windows.contains_key(&id) {
                self.windows
                    .insert(id.clone(), WindowStandings::new(window, &self.config));
            }
            self.recent = Some(id);
        }
        let id = self.recent.as_ref()?;
        self.windows.get_mut(id).map(Slot::Hot)
    }
}

/// The points an event is worth to a leaderboard: `None` when no rule matches (or the filters do not),
/// or when every matching rule's expression read a missing or non-numeric field.
pub fn points_for(config: &LeaderboardConfig, event: &Event) -> Option<f64> {
    if !config.scope.filters.matches(event) {
        return None;
    }
    let event_type = event.event_type();
    let mut matched = false;
    let mut total: Option<f64> = None;
    for rule in &config.scoring.rules {
        if !rule.matches_type(event_type) || !rule.conditions.matches(event) {
            continue;
        }
        matched = true;
        if let Some(points) = rule.points.eval(event) {
            total = Some(total.unwrap_or(0.0) + points);
        }
    }
    match config.scoring.aggregation {
        // Each matching event counts once, whatever its expressions read.
        Aggregation::Count if matched => Some(1.0),
        _ => total.filter(|t| t.is_finite()),
    }
}

#[derive(Default)]
struct TenantState {
    users: UserInterner,
    /// Live leaderboards by uid.
    leaderboards: BTreeMap<u64, LeaderboardState>,
}

/// Every tenant's leaderboards and their standings.
#[derive(Default)]
pub struct Engine {
    tenants: HashMap<String, TenantState>,
    /// Deleted leaderboards by uid: their windows stay readable.
    retired: HashMap<u64, (String, LeaderboardState)>,
    /// Leaderboards whose standings changed since the last [`Engine::take_changed`]: live readers are
    /// told once per batch of changes, not once per event.
    changed: Vec<u64>,
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts scoring a new leaderboard (from the next event on), the `incarnation`-th with its id.
    pub fn add_leaderboard(
        &mut self,
        tenant_id: &str,
        uid: u64,
        leaderboard_id: LeaderboardId,
        config: LeaderboardConfig,
        active: bool,
        incarnation: u32,
    ) {
        let tenant = self.tenants.entry(tenant_id.to_owned()).or_default();
        tenant.leaderboards.insert(
            uid,
            LeaderboardState {
                uid,
                leaderboard_id,
                config,
                active,
                incarnation,
                windows: BTreeMap::new(),
                cold: BTreeMap::new(),
                recent: None,
            },
        );
    }

    /// Only active leaderboards score events.
    pub fn set_active(&mut self, tenant_id: &str, uid: u64, active: bool) {
        if let Some(lb) = self
            .tenants
            .get_mut(tenant_id)
            .and_then(|t| t.leaderboards.get_mut(&uid))
        {
            lb.active = active;
        }
    }

    /// Stops scoring a deleted leaderboard; its windows stay readable through [`Engine::retired`].
    pub fn retire_leaderboard(&mut self, tenant_id: &str, uid: u64) {
        if let Some(lb) = self
            .tenants
            .get_mut(tenant_id)
            .and_then(|t| t.leaderboards.remove(&uid))
        {
            self.retired.insert(uid, (tenant_id.to_owned(), lb));
        }
    }

    /// Applies one accepted event. `seq` is its place in the server's acceptance order (strictly
    /// increasing); `accepted_at` decides whether its window had already closed.
    pub fn apply(
        &mut self,
        tenant_id: &str,
        event: &Event,
        seq: u64,
        accepted_at: Timestamp,
    ) -> ApplyOutcome {
        let mut outcome = ApplyOutcome::default();
        let Some(tenant) = self.tenants.get_mut(tenant_id) else {
            return outcome;
        };
        let mut handle: Option<UserHandle> = None;
        for lb in tenant.leaderboards.values_mut() {
            if !lb.active {
                continue;
            }
            let Some(points) = points_for(&lb.config, event) else {
                continue;
            };
            let aggregation = lb.config.scoring.aggregation;
            let standings = match lb.window_for(event.occurred_at) {
                None => continue,
                Some(Slot::Cold) => {
                    outcome.late += 1;
                    continue;
                }
                Some(Slot::Hot(standings)) => standings,
            };
            if standings.window.is_closed_at(accepted_at) {
                outcome.late += 1;
                continue;
            }
            let user = *handle.get_or_insert_with(|| tenant.users.intern(event.user_id()));
            if update_player(
                standings,
                user,
                points,
                aggregation,
                event.occurred_at,
                seq,
                accepted_at,
            ) {
                outcome.scored += 1;
                if !self.changed.contains(&lb.uid) {
                    self.changed.push(lb.uid);
                }
            }
        }
        outcome
    }

    /// Windows held in memory that end at or before `by`, of live and deleted leaderboards alike:
    /// `(tenant, uid, window)`. With `by` at or before the acceptance high-water mark, no later event
    /// can change them: they are frozen and may move to cold storage.
    pub fn hot_windows_ending_by(&self, by: Timestamp) -> Vec<(String, u64, Window)> {
        let live = self
            .tenants
            .iter()
            .flat_map(|(tenant, t)| t.leaderboards.values().map(move |lb| (tenant.as_str(), lb)));
        let retired = self
            .retired
            .values()
            .map(|(tenant, lb)| (tenant.as_str(), lb));
        live.chain(retired)
            .flat_map(|(tenant, lb)| {
                lb.windows
                    .values()
                    .filter(|w| w.window.is_closed_at(by))
                    .map(move |w| (tenant.to_owned(), lb.uid, w.window.clone()))
            })
            .collect()
    }

    /// The final ranked standings of a window held in memory, for cold storage.
    pub fn freeze(&self, tenant_id: &str, uid: u64, window: &WindowId) -> Option<FrozenWindow> {
        let (users, lb) = self.leaderboard(tenant_id, uid)?;
        let standings = lb.windows.get(window)?;
        let entries = standings
            .index
            .range(1, standings.index.ranked_len())
            .map(|e| to_standing(users, e.rank, e.user, e.score, e.seq, e.stamp))
            .collect();
        Some(FrozenWindow {
            window: standings.window.clone(),
            method: lb.config.ranking.method,
            entries,
        })
    }

    /// Drops a window's standings from memory once cold storage holds them durably; reads of it are
    /// then storage's, and an event that falls in it is late. False if it was not in memory.
    pub fn make_cold(&mut self, tenant_id: &str, uid: u64, window: &WindowId) -> bool {
        let lb = match self
            .tenants
            .get_mut(tenant_id)
            .and_then(|t| t.leaderboards.get_mut(&uid))
        {
            Some(lb) => lb,
            None => match self.retired.get_mut(&uid) {
                Some((owner, lb)) if owner == tenant_id => lb,
                _ => return false,
            },
        };
        let Some(standings) = lb.windows.remove(window) else {
            return false;
        };
        if lb.recent.as_ref() == Some(window) {
            lb.recent = None;
        }
        lb.cold.insert(window.clone(), standings.window);
        true
    }

    /// The uids of the leaderboards whose standings changed since the last call.
    pub fn take_changed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.changed)
    }

    fn leaderboard(&self, tenant_id: &str, uid: u64) -> Option<(&UserInterner, &LeaderboardState)> {
        let tenant = self.tenants.get(tenant_id)?;
        if let Some(lb) = tenant.leaderboards.get(&uid) {
            return Some((&tenant.users, lb));
        }
        let (owner, lb) = self.retired.get(&uid)?;
        (owner == tenant_id).then_some((&tenant.users, lb))
    }

    /// A live or deleted leaderboard's state, by uid.
    pub fn leaderboard_state(&self, tenant_id: &str, uid: u64) -> Option<&LeaderboardState> {
        self.leaderboard(tenant_id, uid).map(|(_, lb)| lb)
    }

    /// Ranked entries `from_rank ..= from_rank + count - 1` of one window, and the number of ranked
    /// entries. `None` when the leaderboard is unknown; an empty page for a window with no scores yet.
    pub fn page(
        &self,
        tenant_id: &str,
        uid: u64,
        window: &WindowId,
        from_rank: u32,
        count: u32,
    ) -> Option<(Vec<Standing>, u32)> {
        let (users, lb) = self.leaderboard(tenant_id, uid)?;
        let Some(standings) = lb.windows.get(window) else {
            return Some((Vec::new(), 0));
        };
        let page = standings
            .index
            .range(from_rank, count)
            .map(|e| to_standing(users, e.rank, e.user, e.score, e.seq, e.stamp))
            .collect();
        Some((page, standings.index.ranked_len()))
    }

    /// The rank a page resumes at after the entry keyed `(score, seq, user_id)`: exact even if that
    /// player has moved since, because the ranking order is by that key. `None` for an unknown
    /// leaderboard.
    pub fn rank_after(
        &self,
        tenant_id: &str,
        uid: u64,
        window: &WindowId,
        score: f64,
        seq: u64,
        user_id: &str,
    ) -> Option<u32> {
        let (users, lb) = self.leaderboard(tenant_id, uid)?;
        let Some(standings) = lb.windows.get(window) else {
            return Some(1);
        };
        // (score, seq) is unique in a window, so the handle only matters for a key never seen.
        let user = users.get(user_id).unwrap_or(UserHandle(u32::MAX));
        Some(
            standings
                .index
                .position_after(score, seq, user)
                .saturating_add(1),
        )
    }

    /// One player's rank in a window; `None` when unranked or without a score.
    pub fn rank_of(
        &self,
        tenant_id: &str,
        uid: u64,
        window: &WindowId,
        user_id: &str,
    ) -> Option<u32> {
        let (users, lb) = self.leaderboard(tenant_id, uid)?;
        let standings = lb.windows.get(window)?;
        standings.index.rank_of(users.get(user_id)?)
    }

    /// One player's ranked entry in a window; `None` when unranked or without a score.
    pub fn standing_of(
        &self,
        tenant_id: &str,
        uid: u64,
        window: &WindowId,
        user_id: &str,
    ) -> Option<Standing> {
        let (users, lb) = self.leaderboard(tenant_id, uid)?;
        let standings = lb.windows.get(window)?;
        let user = users.get(user_id)?;
        let rank = standings.index.rank_of(user)?;
        let (score, seq) = standings.index.get(user)?;
        let stamp = standings.index.stamp(user)?;
        Some(to_standing(users, rank, user, score, seq, stamp))
    }
}

fn to_standing(
    users: &UserInterner,
    rank: u32,
    user: UserHandle,
    score: f64,
    seq: u64,
    stamp: i64,
) -> Standing {
    Standing {
        rank,
        seq,
        user_id: users.resolve(user).to_owned(),
        score,
        updated_at: from_micros(stamp),
    }
}

/// Folds `points` into the player's score by the leaderboard's aggregation; true when the standings
/// changed (a new player, or a new score).
fn update_player(
    standings: &mut WindowStandings,
    user: UserHandle,
    points: f64,
    aggregation: Aggregation,
    occurred_at: Timestamp,
    seq: u64,
    accepted_at: Timestamp,
) -> bool {
    let previous = standings.index.get(user).map(|(score, _)| score);
    let occurred = micros(occurred_at);
    let latest_seen = match aggregation {
        Aggregation::Latest => standings.latest.get(&user).copied(),
        _ => None,
    };
    let score = match (aggregation, previous) {
        (_, None) => points,
        (Aggregation::Sum | Aggregation::Count, Some(old)) => old + points,
        (Aggregation::Max, Some(old)) => old.max(points),
        (Aggregation::Min, Some(old)) => old.min(points),
        (Aggregation::Latest, Some(old)) => {
            // Latest by occurred_at; on equal times the later arrival wins.
            if latest_seen.is_none_or(|seen| occurred >= seen) {
                points
            } else {
                old
            }
        }
    };
    if !score.is_finite() {
        return false;
    }
    if aggregation == Aggregation::Latest {
        let latest = latest_seen.map_or(occurred, |seen| seen.max(occurred));
        standings.latest.insert(user, latest);
    }
    if previous == Some(score) {
        return false;
    }
    standings
        .index
        .set_stamped(user, score, seq, micros(accepted_at));
    true
}

/// A player's row in a snapshot: handle, score, seq, and the two timestamps in Unix microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayerSnapshot {
    pub user: u32,
    pub score: f64,
    pub seq: u64,
    pub updated_at: i64,
    pub latest_occurred_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowSnapshot {
    pub window: Window,
    pub players: Vec<PlayerSnapshot>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaderboardSnapshot {
    pub uid: u64,
    pub leaderboard_id: LeaderboardId,
    /// The normalized config, re-validated on restore.
    pub config: serde_json::Value,
    pub active: bool,
    pub incarnation: u32,
    pub windows: Vec<WindowSnapshot>,
    /// Windows in cold storage (their standings are not in the snapshot).
    pub cold: Vec<Window>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantSnapshot {
    pub tenant_id: String,
    /// User ids in handle order (handle `i` is `users[i]`).
    pub users: Vec<String>,
    pub leaderboards: Vec<LeaderboardSnapshot>,
    /// Deleted leaderboards whose windows stay readable.
    pub retired: Vec<LeaderboardSnapshot>,
}

/// The engine as plain data, for snapshots: restoring it gives an engine that answers every read the
/// same and scores every later event the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSnapshot {
    pub tenants: Vec<TenantSnapshot>,
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn from_micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn export_leaderboard(lb: &LeaderboardState) -> LeaderboardSnapshot {
    LeaderboardSnapshot {
        uid: lb.uid,
        leaderboard_id: lb.leaderboard_id.clone(),
        config: lb.config.to_json(),
        active: lb.active,
        incarnation: lb.incarnation,
        cold: lb.cold.values().cloned().collect(),
        windows: lb
            .windows
            .values()
            .map(|w| {
                let mut players: Vec<PlayerSnapshot> = w
                    .index
                    .all()
                    .map(|e| PlayerSnapshot {
                        user: e.user.0,
                        score: e.score,
                        seq: e.seq,
                        updated_at: e.stamp,
                        latest_occurred_at: w.latest.get(&e.user).copied().unwrap_or(e.stamp),
                    })
                    .collect();
                // Deterministic files: the same state always writes the same bytes.
                players.sort_unstable_by_key(|p| p.user);
                WindowSnapshot {
                    window: w.window.clone(),
                    players,
                }
            })
            .collect(),
    }
}

fn restore_leaderboard(snap: LeaderboardSnapshot) -> Result<LeaderboardState, String> {
    let config = LeaderboardConfig::from_json(&snap.config)
        .map_err(|e| format!("leaderboard {}: {e}", snap.leaderboard_id))?;
    let mut windows = BTreeMap::new();
    for w in snap.windows {
        let mut standings = WindowStandings::new(w.window, &config);
        for p in w.players {
            if !p.score.is_finite() {
                return Err(format!(
                    "leaderboard {}: a non-finite score",
                    snap.leaderboard_id
                ));
            }
            let user = UserHandle(p.user);
            standings
                .index
                .set_stamped(user, p.score, p.seq, p.updated_at);
            if config.scoring.aggregation == Aggregation::Latest {
                standings.latest.insert(user, p.latest_occurred_at);
            }
        }
        windows.insert(standings.window.id.clone(), standings);
    }
    Ok(LeaderboardState {
        uid: snap.uid,
        leaderboard_id: snap.leaderboard_id,
        config,
        active: snap.active,
        incarnation: snap.incarnation,
        windows,
        cold: snap.cold.into_iter().map(|w| (w.id.clone(), w)).collect(),
        recent: None,
    })
}

impl Engine {
    /// Gives every board restored without an incarnation (a snapshot from before window ids carried
    /// one) the one `of(tenant, uid, leaderboard id)` names, renaming its windows, so the state is what a
    /// replay of the whole log would have built.
    pub fn fill_incarnations(&mut self, mut of: impl FnMut(&str, u64, &LeaderboardId) -> u32) {
        for (tenant, t) in &mut self.tenants {
            for lb in t.leaderboards.values_mut() {
                if lb.incarnation == 0 {
                    lb.set_incarnation(of(tenant, lb.uid, &lb.leaderboard_id).max(1));
                }
            }
        }
        for (tenant, lb) in self.retired.values_mut() {
            if lb.incarnation == 0 {
                lb.set_incarnation(of(tenant, lb.uid, &lb.leaderboard_id).max(1));
            }
        }
    }

    /// Copies the whole state out as plain data.
    pub fn snapshot(&self) -> EngineSnapshot {
        let mut retired_by_tenant: HashMap<&str, Vec<LeaderboardSnapshot>> = HashMap::new();
        for (tenant, lb) in self.retired.values() {
            retired_by_tenant
                .entry(tenant.as_str())
                .or_default()
                .push(export_leaderboard(lb));
        }
        let mut tenants: Vec<TenantSnapshot> = self
            .tenants
            .iter()
            .map(|(tenant_id, t)| {
                let mut retired = retired_by_tenant
                    .remove(tenant_id.as_str())
                    .unwrap_or_default();
                retired.sort_unstable_by_key(|lb| lb.uid);
                TenantSnapshot {
                    tenant_id: tenant_id.clone(),
                    users: (0..t.users.len() as u32)
                        .map(|i| t.users.resolve(UserHandle(i)).to_owned())
                        .collect(),
                    leaderboards: t.leaderboards.values().map(export_leaderboard).collect(),
                    retired,
                }
            })
            .collect();
        tenants.sort_unstable_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        EngineSnapshot { tenants }
    }

    /// Rebuilds an engine from [`Engine::snapshot`]'s output.
    pub fn restore(snapshot: EngineSnapshot) -> Result<Engine, String> {
        let mut engine = Engine::new();
        for t in snapshot.tenants {
            let mut state = TenantState::default();
            for (i, user) in t.users.iter().enumerate() {
                if state.users.intern(user).0 as usize != i {
                    return Err(format!(
                        "tenant {}: duplicate user id in snapshot",
                        t.tenant_id
                    ));
                }
            }
            for lb in t.leaderboards {
                let lb = restore_leaderboard(lb)?;
                state.leaderboards.insert(lb.uid, lb);
            }
            for lb in t.retired {
                let lb = restore_leaderboard(lb)?;
                engine.retired.insert(lb.uid, (t.tenant_id.clone(), lb));
            }
            engine.tenants.insert(t.tenant_id, state);
        }
        Ok(engine)
    }
}
