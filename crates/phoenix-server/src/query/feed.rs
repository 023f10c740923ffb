//! What the live sockets of one leaderboard share (SPEC §6.1 fan-out): the board's top entries read once
//! per version of its standings, and each update's changed entries serialized once per (copy the client
//! holds, new copy, top N). With thousands of sockets on a board, a change then costs one store read and
//! a few serializations, and each socket only adds its sequence number, its `me` and one write.

use jiff::Timestamp;
use phoenix_core::engine::Standing;
#[cfg(test)]
use phoenix_core::window::WindowId;
use phoenix_core::window::{Window, WindowStatus};
use phoenix_store::BoardSignal;
use serde::Serialize;
use serde::ser::SerializeStruct;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::watch;

/// Serialized diffs kept per board; enough for every copy the board's sockets hold while they catch up.
const MAX_DIFFS: usize = 1024;

/// The boards with live sockets: each board's feed lives as long as one of its sockets does.
#[derive(Default)]
pub struct Feeds {
    boards: Mutex<HashMap<(String, String), Weak<BoardFeed>>>,
}

impl Feeds {
    /// The feed of a board, shared with every other socket watching the same board: the same signal
    /// channel (a leaderboard deleted and created again under the same id is another board).
    pub fn feed(
        &self,
        tenant: &str,
        leaderboard: &str,
        signal: &watch::Receiver<BoardSignal>,
    ) -> Arc<BoardFeed> {
        let mut boards = self.boards.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_owned(), leaderboard.to_owned());
        if let Some(feed) = boards.get(&key).and_then(Weak::upgrade)
            && feed.signal.same_channel(signal)
        {
            return feed;
        }
        // Forget boards nobody watches any more before adding one.
        boards.retain(|_, feed| feed.strong_count() > 0);
        let feed = Arc::new(BoardFeed::new(signal.clone()));
        boards.insert(key, Arc::downgrade(&feed));
        feed
    }
}

/// The current window's best entries as of one version of the board's standings.
pub struct TopFrame {
    /// Unique per feed: diffs between frames are keyed by it.
    pub id: u64,
    /// The board signal's version read before the standings were: the frame is at least this new.
    pub version: u64,
    pub window: Window,
    pub status: WindowStatus,
    /// The top `MAX_TOP` (fewer when fewer are ranked).
    pub entries: Vec<Standing>,
}

impl TopFrame {
    /// The top `n` as a client that subscribed to `n` holds them.
    pub fn top(&self, n: u32) -> &[Standing] {
        &self.entries[..self.entries.len().min(n as usize)]
    }

    /// Whether the frame's window status can still be trusted at `now` (its window may have opened or
    /// ended since, without any change to the standings).
    pub fn is_current(&self, now: Timestamp) -> bool {
        let due = match self.status {
            WindowStatus::Open => self.window.ends_at,
            WindowStatus::Upcoming => self.window.starts_at,
            WindowStatus::Closed => Some(now),
        };
        due.is_none_or(|at| now < at)
    }
}

type DiffKey = (u64, u64, u32);

#[derive(Default)]
struct Diffs {
    by_key: HashMap<DiffKey, Option<Arc<str>>>,
    order: VecDeque<DiffKey>,
}

/// One board's shared state for its live sockets.
pub struct BoardFeed {
    /// The board's signal: frame versions are versions of this channel.
    signal: watch::Receiver<BoardSignal>,
    latest: Mutex<Option<Arc<TopFrame>>>,
    diffs: Mutex<Diffs>,
    next_id: AtomicU64,
}

impl BoardFeed {
    pub fn new(signal: watch::Receiver<BoardSignal>) -> Self {
        BoardFeed {
            signal,
            latest: Mutex::default(),
            diffs: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The newest frame if it reflects at least `version` and its window is still current.
    pub fn latest(&self, version: u64) -> Option<Arc<TopFrame>> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest
            .as_ref()
            .filter(|f| f.version >= version && f.is_current(Timestamp::now()))
            .cloned()
    }

    /// Keeps a frame read at `version` (unless a newer one is already kept) and returns it.
    pub fn install(
        &self,
        version: u64,
        window: Window,
        status: WindowStatus,
        entries: Vec<Standing>,
    ) -> Arc<TopFrame> {
        let frame = Arc::new(TopFrame {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            version,
            window,
            status,
            entries,
        });
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.as_ref().is_none_or(|f| f.version <= version) {
            *latest = Some(Arc::clone(&frame));
        }
        frame
    }

    /// `"entries":[...],"removed":[...]` taking a client's copy of the top `n` from `from` to `to`,
    /// or `None` when that copy is unchanged. Computed once per (from, to, n) and shared.
    pub fn diff(&self, from: &TopFrame, to: &TopFrame, n: u32) -> Option<Arc<str>> {
        let key = (from.id, to.id, n);
        if let Some(known) = self
            .diffs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .get(&key)
        {
            return known.clone();
        }
        let made = diff_body(from.top(n), to.top(n)).map(Arc::from);
        let mut diffs = self.diffs.lock().unwrap_or_else(|p| p.into_inner());
        if !diffs.by_key.contains_key(&key) {
            if diffs.order.len() >= MAX_DIFFS
                && let Some(oldest) = diffs.order.pop_front()
            {
                diffs.by_key.remove(&oldest);
            }
            diffs.order.push_back(key);
            diffs.by_key.insert(key, made.clone());
        }
        made
    }
}

/// Same rank, score and time: the client's copy of the entry is current.
pub fn same(a: &Standing, b: &Standing) -> bool {
    a.rank == b.rank && a.score == b.score && a.updated_at == b.updated_at
}

/// The changed entries of `after` against `before`, and who left, as JSON members; `None` if none.
fn diff_body(before: &[Standing], after: &[Standing]) -> Option<String> {
    let old: HashMap<&str, &Standing> = before.iter().map(|s| (s.user_id.as_str(), s)).collect();
    let changed: Vec<EntryRef<'_>> = after
        .iter()
        .filter(|s| old.get(s.user_id.as_str()).is_none_or(|o| !same(o, s)))
        .map(EntryRef)
        .collect();
    let now: HashSet<&str> = after.iter().map(|s| s.user_id.as_str()).collect();
    let removed: Vec<&str> = before
        .iter()
        .map(|s| s.user_id.as_str())
        .filter(|u| !now.contains(u))
        .collect();
    if changed.is_empty() && removed.is_empty() {
        return None;
    }
    let mut body = String::with_capacity(64 + 96 * changed.len());
    body.push_str("\"entries\":");
    body.push_str(&serde_json::to_string(&changed).ok()?);
    body.push_str(",\"removed\":");
    body.push_str(&serde_json::to_string(&removed).ok()?);
    Some(body)
}

/// An entry serialized as `{rank, user_id, score, updated_at}` straight from the standing (the same
/// JSON as [`EntryView`], without copying the user id).
pub struct EntryRef<'a>(pub &'a Standing);

impl Serialize for EntryRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entry = serializer.serialize_struct("EntryView", 4)?;
        entry.serialize_field("rank", &self.0.rank)?;
        entry.serialize_field("user_id", &self.0.user_id)?;
        entry.serialize_field("score", &self.0.score)?;
        entry.serialize_field("updated_at", &self.0.updated_at)?;
        entry.end()
    }
}

/// `EntryRef` must write exactly what `EntryView` writes: clients see both.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::EntryView;

    fn standing(rank: u32, user: &str, score: f64) -> Standing {
        Standing {
            rank,
            user_id: user.into(),
            score,
            updated_at: "2026-01-02T03:04:05.678Z".parse().unwrap_or_default(),
            seq: u64::from(rank),
        }
    }

    #[test]
    fn entry_ref_writes_the_entry_view() {
        let s = standing(3, "user-\"q\"", 12.5);
        let by_ref = serde_json::to_string(&EntryRef(&s)).unwrap_or_default();
        let by_view = serde_json::to_string(&EntryView::from(s)).unwrap_or_default();
        assert_eq!(by_ref, by_view);
    }

    #[test]
    fn diffs_name_changed_entries_and_who_left() {
        let before = [standing(1, "a", 10.0), standing(2, "b", 5.0)];
        let after = [standing(1, "c", 20.0), standing(2, "a", 10.0)];
        let body = diff_body(&before, &after).unwrap_or_default();
        let value: serde_json::Value =
            serde_json::from_str(&format!("{{{body}}}")).unwrap_or_default();
        let users: Vec<&str> = value["entries"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["user_id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(users, ["c", "a"]);
        assert_eq!(value["removed"], serde_json::json!(["b"]));
        assert_eq!(diff_body(&after, &after), None);
    }

    fn channel() -> (watch::Sender<BoardSignal>, watch::Receiver<BoardSignal>) {
        watch::channel(BoardSignal {
            version: 0,
            state: phoenix_store::BoardState::Active,
            deactivations: 0,
        })
    }

    #[test]
    fn a_board_created_again_under_the_same_id_gets_a_new_feed() {
        let feeds = Feeds::default();
        let (_old_tx, old) = channel();
        let first = feeds.feed("t", "lb", &old);
        assert!(Arc::ptr_eq(&first, &feeds.feed("t", "lb", &old.clone())));
        // The old board's feed is still held (by a socket that is closing) when the id is reused.
        let (_new_tx, new) = channel();
        let second = feeds.feed("t", "lb", &new);
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&second, &feeds.feed("t", "lb", &new)));
    }

    #[test]
    fn a_diff_is_computed_once_and_shared() {
        let (_tx, rx) = channel();
        let feed = BoardFeed::new(rx);
        let window = Window {
            id: WindowId::parse("all").unwrap_or_else(|| unreachable!()),
            starts_at: None,
            ends_at: None,
        };
        let a = feed.install(
            1,
            window.clone(),
            WindowStatus::Open,
            vec![standing(1, "a", 1.0)],
        );
        let b = feed.install(2, window, WindowStatus::Open, vec![standing(1, "b", 2.0)]);
        let first = feed.diff(&a, &b, 10);
        let again = feed.diff(&a, &b, 10);
        assert!(first.is_some());
        assert!(matches!((&first, &again), (Some(x), Some(y)) if Arc::ptr_eq(x, y)));
        assert_eq!(feed.latest(2).map(|f| f.id), Some(b.id));
        assert!(feed.latest(3).is_none());
    }
}
