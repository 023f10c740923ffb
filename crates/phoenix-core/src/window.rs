//! Time windows (SPEC §4.1 `timeframe`): which window of a leaderboard's timeframe contains an instant,
//! following the configured IANA zone's wall clock exactly across daylight-saving changes, and the
//! stable, URL-safe ids windows are stored and queried under.
//!
//! A recurring timeframe (daily, weekly, monthly) has one *nominal* reset per period: a local date (every
//! day; every `reset_day`; every month on `reset_day_of_month`) at `reset_time`. Its window runs from that
//! reset to the next one, half-open, so a daily window on a daylight-saving day is 23 or 25 hours long.
//! A reset time that the clock skips (spring-forward gap) happens at the first instant after the gap;
//! one that the clock shows twice (fall-back fold) happens at the earlier instant.
//!
//! Near the ends of jiff's range (years -9999 and 9999) a bound that cannot be represented as a
//! `Timestamp` is `None`: the first window extends back to the beginning of time, the last one forward to
//! its end, and no window follows the last one. Nothing here panics for any `Timestamp`.

use crate::config::Timeframe;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};
use std::cmp::Ordering;
use std::fmt::{self, Write as _};

/// One window of a timeframe: the half-open interval `[starts_at, ends_at)`, where `None` means
/// unbounded (all_time has neither bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub id: WindowId,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
}

impl Window {
    /// Whether `at` falls in `[starts_at, ends_at)`. The cheap check a caller makes per event against
    /// the window it has cached, before asking [`Timeframe::window_for`] again.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.starts_at.is_none_or(|start| start <= at) && self.ends_at.is_none_or(|end| at < end)
    }

    /// Whether the window has ended by `now`: no event at or after `now` can belong to it any more.
    pub fn is_closed_at(&self, now: Timestamp) -> bool {
        self.ends_at.is_some_and(|end| end <= now)
    }

    fn all_time() -> Window {
        Window {
            id: WindowId(WindowId::ALL.to_owned()),
            starts_at: None,
            ends_at: None,
        }
    }

    fn custom(starts_at: Timestamp, ends_at: Timestamp) -> Window {
        Window {
            id: WindowId(WindowId::CUSTOM.to_owned()),
            starts_at: Some(starts_at),
            ends_at: Some(ends_at),
        }
    }
}

/// Where a window stands relative to the moment a reader asks (SPEC §6 `window.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowStatus {
    Open,
    Closed,
    Upcoming,
}

impl WindowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowStatus::Open => "open",
            WindowStatus::Closed => "closed",
            WindowStatus::Upcoming => "upcoming",
        }
    }
}

impl fmt::Display for WindowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A window's id, unique across every incarnation of its leaderboard id and stable forever: `all`,
/// `custom`, or for recurring timeframes the local date of the window's nominal reset as `YYYY-MM-DD`
/// (`-YYYY-MM-DD` before year 0); a leaderboard created again under a deleted one's id (its `n`-th
/// incarnation, `n` ≥ 2) suffixes its ids with `~n` (`custom~2`, `2026-12-01~3`), so the deleted one's
/// windows keep theirs. Clients treat ids as opaque strings (SPEC §10).
///
/// Ids order chronologically (dates by date, not by text, so negative years sort right too); `all` and
/// `custom` sort after every date; the incarnation breaks ties.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowId(String);

/// What a [`WindowId`] stands for, in the order ids sort by. Only dates are ever compared in practice:
/// one leaderboard's windows are either all dated or a single `all`/`custom` one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum IdKey {
    Date(Date),
    All,
    Custom,
}

impl WindowId {
    const ALL: &'static str = "all";
    const CUSTOM: &'static str = "custom";

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts exactly the ids this module produces: `all`, `custom`, or a real calendar date written as
    /// `YYYY-MM-DD` (or `-YYYY-MM-DD` for years before 0, never `-0000`).
    pub fn parse(raw: &str) -> Option<WindowId> {
        parse_full(raw).map(|_| WindowId(raw.to_owned()))
    }

    /// This id as the `incarnation`-th leaderboard with its id names it (unchanged for the first).
    pub fn for_incarnation(self, incarnation: u32) -> WindowId {
        if incarnation <= 1 {
            return self;
        }
        let mut id = self.0;
        let _ = write!(id, "~{incarnation}");
        WindowId(id)
    }

    /// The incarnation of the leaderboard id this window belongs to (1 without a suffix).
    pub fn incarnation(&self) -> u32 {
        parse_full(&self.0).map_or(1, |(_, n)| n)
    }

    fn from_date(date: Date) -> WindowId {
        let mut id = String::with_capacity(11);
        if date.year() < 0 {
            id.push('-');
        }
        // Writing into a String cannot fail.
        let _ = write!(
            id,
            "{:04}-{:02}-{:02}",
            date.year().unsigned_abs(),
            date.month(),
            date.day()
        );
        WindowId(id)
    }
}

/// An id's key and incarnation: `<base>` or `<base>~<n>` with `n` ≥ 2 written without leading zeros.
fn parse_full(raw: &str) -> Option<(IdKey, u32)> {
    match raw.split_once('~') {
        None => parse_id(raw).map(|key| (key, 1)),
        Some((base, n)) => {
            let digits_only =
                !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit());
            if !digits_only || n.starts_with('0') {
                return None;
            }
            let n: u32 = n.parse().ok()?;
            if n < 2 {
                return None;
            }
            parse_id(base).map(|key| (key, n))
        }
    }
}

fn parse_id(raw: &str) -> Option<IdKey> {
    match raw {
        WindowId::ALL => return Some(IdKey::All),
        WindowId::CUSTOM => return Some(IdKey::Custom),
        _ => {}
    }
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let bytes = digits.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shaped {
        return None;
    }
    // The shape check makes every field all digits and short enough for its integer type.
    let year: i16 = digits[0..4].parse().ok()?;
    let month: i8 = digits[5..7].parse().ok()?;
    let day: i8 = digits[8..10].parse().ok()?;
    if negative && year == 0 {
        return None;
    }
    let year = if negative { -year } else { year };
    Date::new(year, month, day).ok().map(IdKey::Date)
}

impl PartialOrd for WindowId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WindowId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (parse_full(&self.0), parse_full(&other.0)) {
            (Some(a), Some(b)) => a.cmp(&b),
            // Every WindowId is built from a valid form, so this only keeps the order total.
            _ => self.0.cmp(&other.0),
        }
    }
}

impl fmt::Display for WindowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Timeframe {
    /// The window containing `at`; None only for a custom timeframe when `at` is outside
    /// `[starts_at, ends_at)`.
    pub fn window_for(&self, at: Timestamp) -> Option<Window> {
        match self {
            Timeframe::AllTime { .. } => Some(Window::all_time()),
            Timeframe::Custom {
                starts_at, ends_at, ..
            } => (*starts_at <= at && at < *ends_at).then(|| Window::custom(*starts_at, *ends_at)),
            _ => Schedule::of(self).map(|schedule| schedule.window_containing(at)),
        }
    }

    /// The window with this id (incarnation suffix ignored: the caller names the incarnation), if the
    /// timeframe has one: `all` for all_time, `custom` for custom, and for a schedule the window that
    /// starts on the id's date in the timeframe's zone, found by walking forward from two days before.
    pub fn window_by_id(&self, id: &WindowId) -> Option<Window> {
        let (key, _) = parse_full(id.as_str())?;
        match (self, key) {
            (Timeframe::AllTime { .. }, IdKey::All) => Some(Window::all_time()),
            (
                Timeframe::Custom {
                    starts_at, ends_at, ..
                },
                IdKey::Custom,
            ) => Some(Window::custom(*starts_at, *ends_at)),
            (_, IdKey::Date(date)) => {
                let schedule = Schedule::of(self)?;
                let probe = date
                    .checked_sub(jiff::Span::new().days(2))
                    .ok()?
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .ok()?
                    .timestamp();
                let mut window = schedule.window_containing(probe);
                // A month is the longest window: a few steps always reach the date.
                for _ in 0..8 {
                    match parse_full(window.id.as_str())?.0.cmp(&key) {
                        Ordering::Equal => return Some(window),
                        Ordering::Greater => return None,
                        Ordering::Less => window = schedule.window_containing(window.ends_at?),
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// The window that follows `window` (None for all_time and custom, and after a window that lasts
    /// to the end of representable time).
    pub fn next_window(&self, window: &Window) -> Option<Window> {
        // A window ends where the next one starts, so the next one is the one containing that instant.
        Schedule::of(self).and_then(|schedule| Some(schedule.window_containing(window.ends_at?)))
    }

    /// The window a reader should see at `now` and its status: the open one, or for custom before
    /// start the upcoming one, after end the closed one.
    pub fn current_window(&self, now: Timestamp) -> (Window, WindowStatus) {
        match self {
            Timeframe::Custom {
                starts_at, ends_at, ..
            } => {
                let status = if now < *starts_at {
                    WindowStatus::Upcoming
                } else if now >= *ends_at {
                    WindowStatus::Closed
                } else {
                    WindowStatus::Open
                };
                (Window::custom(*starts_at, *ends_at), status)
            }
            Timeframe::AllTime { .. } => (Window::all_time(), WindowStatus::Open),
            _ => match Schedule::of(self) {
                Some(schedule) => (schedule.window_containing(now), WindowStatus::Open),
                // Every other variant is recurring; answering all-time keeps this total anyway.
                None => (Window::all_time(), WindowStatus::Open),
            },
        }
    }
}

/// How often a recurring timeframe resets.
#[derive(Debug, Clone, Copy)]
enum Period {
    Daily,
    Weekly(Weekday),
    /// Day of month, 1 to 28, so every month has it and month arithmetic never clamps.
    Monthly(i8),
}

/// A recurring timeframe's resets: one per period, at `reset_time` on the period's nominal date.
struct Schedule<'a> {
    zone: &'a TimeZone,
    period: Period,
    reset_time: Time,
}

/// Where a nominal reset falls. `Before`/`After` stand for instants outside jiff's timestamp range;
/// the derived order (variants first, then the timestamp) is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Boundary {
    Before,
    At(Timestamp),
    After,
}

impl Boundary {
    fn timestamp(self) -> Option<Timestamp> {
        match self {
            Boundary::At(at) => Some(at),
            Boundary::Before | Boundary::After => None,
        }
    }
}

impl<'a> Schedule<'a> {
    fn of(timeframe: &'a Timeframe) -> Option<Schedule<'a>> {
        let (zone, period, reset_time) = match timeframe {
            Timeframe::Daily { zone, reset_time } => (zone, Period::Daily, *reset_time),
            Timeframe::Weekly {
                zone,
                reset_day,
                reset_time,
            } => (zone, Period::Weekly(*reset_day), *reset_time),
            Timeframe::Monthly {
                zone,
                reset_day_of_month,
                reset_time,
            } => {
                // Validation guarantees 1..=28; the fields are public, so clamp rather than trust.
                let day = (*reset_day_of_month).clamp(1, 28) as i8;
                (zone, Period::Monthly(day), *reset_time)
            }
            Timeframe::AllTime { .. } | Timeframe::Custom { .. } => return None,
        };
        Some(Schedule {
            zone: zone.time_zone(),
            period,
            reset_time,
        })
    }

    /// The window of the latest nominal reset at or before `at`. Resets are non-decreasing in their
    /// nominal date, so it is found by stepping from the period of `at`'s local date: normally no step
    /// back and one look forward (for the end). Several resets may fall on one instant (a gap that
    /// swallows whole days); taking the latest skips the empty windows between them.
    fn window_containing(&self, at: Timestamp) -> Window {
        let target = Boundary::At(at);
        let mut date = self.period_of(self.zone.to_datetime(at).date());
        let mut start = self.start_of(date);
        while start > target {
            // The first nominal date starts at `Before`, so this stops there at the latest.
            let Some(previous) = self.previous(date) else {
                break;
            };
            date = previous;
            start = self.start_of(date);
        }
        let end = loop {
            let Some(next) = self.next(date) else {
                break Boundary::After;
            };
            let next_start = self.start_of(next);
            if next_start > target {
                break next_start;
            }
            date = next;
            start = next_start;
        };
        Window {
            id: WindowId::from_date(date),
            starts_at: start.timestamp(),
            ends_at: end.timestamp(),
        }
    }

    /// The nominal date of the last period beginning on or before the local date `local`, ignoring the
    /// time of day (the caller corrects for that). Falls back to the first nominal date when that
    /// period's date is before `Date::MIN`.
    fn period_of(&self, local: Date) -> Date {
        let found = match self.period {
            Period::Daily => Some(local),
            Period::Weekly(day) => local
                .checked_sub(i64::from(local.weekday().since(day)).days())
                .ok(),
            Period::Monthly(day) => {
                Date::new(local.year(), local.month(), day)
                    .ok()
                    .and_then(|this_month| {
                        if this_month <= local {
                            Some(this_month)
                        } else {
                            this_month.checked_sub(1.month()).ok()
                        }
                    })
            }
        };
        found.unwrap_or_else(|| self.first())
    }

    /// The earliest nominal date jiff can represent.
    fn first(&self) -> Date {
        let found = match self.period {
            Period::Daily => Some(Date::MIN),
            Period::Weekly(day) => Date::MIN
                .checked_add(i64::from(Date::MIN.weekday().until(day)).days())
                .ok(),
            Period::Monthly(day) => Date::new(Date::MIN.year(), Date::MIN.month(), day).ok(),
        };
        // Both fallbacks are unreachable: the first week and month of the range are whole.
        found.unwrap_or(Date::MIN)
    }

    fn previous(&self, date: Date) -> Option<Date> {
        match self.period {
            Period::Daily => date.yesterday().ok(),
            Period::Weekly(_) => date.checked_sub(1.week()).ok(),
            Period::Monthly(_) => date.checked_sub(1.month()).ok(),
        }
    }

    fn next(&self, date: Date) -> Option<Date> {
        match self.period {
            Period::Daily => date.tomorrow().ok(),
            Period::Weekly(_) => date.checked_add(1.week()).ok(),
            Period::Monthly(_) => date.checked_add(1.month()).ok(),
        }
    }

    /// When the period with nominal date `date` starts. The first representable period has no
    /// predecessor to end at its start, so it reaches back to the beginning of time.
    fn start_of(&self, date: Date) -> Boundary {
        if self.previous(date).is_none() {
            return Boundary::Before;
        }
        resolve(self.zone, date.to_datetime(self.reset_time))
    }
}

/// The instant at which the wall clock of `zone` reads `local`: in a gap, the first instant after it
/// (the transition itself, not jiff's "compatible" shift by the gap's length); in a fold, the earlier
/// reading.
fn resolve(zone: &TimeZone, local: DateTime) -> Boundary {
    let instant = match zone.to_ambiguous_timestamp(local).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(local),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(local),
        AmbiguousOffset::Gap { before, after } => {
            // Read with the offset after the gap, `local` names an instant before the transition; read
            // with the offset before it, an instant at or after it. The transition is the first one
            // following the former.
            let transition = after.to_timestamp(local).ok().and_then(|early| {
                zone.following(early)
                    .next()
                    .map(|transition| transition.timestamp())
            });
            match transition {
                Some(transition) => Ok(transition),
                // Only without transition data around the gap, which a gap implies exists.
                None => before.to_timestamp(local),
            }
        }
    };
    match instant {
        Ok(instant) => Boundary::At(instant),
        // Offsets are under a day, so only dates at the ends of the civil range fail to convert.
        Err(_) if local.year() < 0 => Boundary::Before,
        Err(_) => Boundary::After,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IanaTimeZone;

    fn daily(zone: &str, hour: i8, minute: i8) -> Timeframe {
        Timeframe::Daily {
            zone: IanaTimeZone::parse(zone).unwrap(),
            reset_time: Time::new(hour, minute, 0, 0).unwrap(),
        }
    }

    #[test]
    fn resolve_gap_is_the_transition_and_fold_the_earlier_reading() {
        let zone = TimeZone::get("America/New_York").unwrap();
        let gap = jiff::civil::date(2025, 3, 9).at(2, 30, 0, 0);
        assert_eq!(
            resolve(&zone, gap),
            Boundary::At("2025-03-09T07:00:00Z".parse().unwrap())
        );
        let fold = jiff::civil::date(2025, 11, 2).at(1, 30, 0, 0);
        assert_eq!(
            resolve(&zone, fold),
            Boundary::At("2025-11-02T05:30:00Z".parse().unwrap())
        );
    }

    #[test]
    fn resolve_out_of_range_is_before_or_after() {
        let utc = TimeZone::UTC;
        assert_eq!(resolve(&utc, DateTime::MAX), Boundary::After);
        assert_eq!(resolve(&utc, DateTime::MIN), Boundary::Before);
    }

    #[test]
    fn first_period_reaches_back_to_the_beginning_of_time() {
        let timeframe = daily("UTC", 3, 0);
        let window = timeframe.window_for(Timestamp::MIN).unwrap();
        assert_eq!(window.id.as_str(), "-9999-01-01");
        assert_eq!(window.starts_at, None);
        assert!(window.contains(Timestamp::MIN));
    }

    #[test]
    fn id_keys_order_chronologically_across_year_zero() {
        let ids = [
            "-9999-01-01",
            "-0001-12-31",
            "0000-01-01",
            "0001-01-01",
            "2025-11-17",
            "9999-12-31",
        ];
        for pair in ids.windows(2) {
            let a = WindowId::parse(pair[0]).unwrap();
            let b = WindowId::parse(pair[1]).unwrap();
            assert!(a < b, "{a} < {b}");
        }
    }

    #[test]
    fn later_incarnations_suffix_their_ids_and_parse_back() {
        let base = WindowId::parse("custom").unwrap();
        assert_eq!(base.clone().for_incarnation(1).as_str(), "custom");
        let second = base.clone().for_incarnation(2);
        assert_eq!(second.as_str(), "custom~2");
        assert_eq!(WindowId::parse("custom~2"), Some(second.clone()));
        assert_eq!(second.incarnation(), 2);
        assert_eq!(base.incarnation(), 1);
        for bad in [
            "custom~1",
            "custom~0",
            "custom~02",
            "custom~",
            "custom~x",
            "~2",
            "all~2~3",
        ] {
            assert_eq!(WindowId::parse(bad), None, "{bad}");
        }
        let day = WindowId::parse("2026-12-01~3").unwrap();
        assert!(WindowId::parse("2026-12-01").unwrap() < day);
        assert!(day < WindowId::parse("2026-12-02").unwrap());
    }
}
