//! Time windows from the outside: each timeframe type in UTC with its boundaries, daylight-saving
//! changes (whole-hour and Lord Howe's half hour, gaps and folds), non-hour offsets, custom windows,
//! window ids, the ends of jiff's range, and property tests of the window invariants over random
//! configurations and instants.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::AmbiguousOffset;
use jiff::{SignedDuration, Timestamp};
use phoenix_core::config::{IanaTimeZone, Timeframe};
use phoenix_core::window::{Window, WindowId, WindowStatus};
use proptest::prelude::*;

const NS: SignedDuration = SignedDuration::from_nanos(1);

fn ts(raw: &str) -> Timestamp {
    raw.parse().unwrap()
}

fn zone(name: &str) -> IanaTimeZone {
    IanaTimeZone::parse(name).unwrap()
}

fn time(raw: &str) -> Time {
    raw.parse().unwrap()
}

fn daily(zone_name: &str, reset: &str) -> Timeframe {
    Timeframe::Daily {
        zone: zone(zone_name),
        reset_time: time(reset),
    }
}

fn weekly(zone_name: &str, day: Weekday, reset: &str) -> Timeframe {
    Timeframe::Weekly {
        zone: zone(zone_name),
        reset_day: day,
        reset_time: time(reset),
    }
}

fn monthly(zone_name: &str, day: u8, reset: &str) -> Timeframe {
    Timeframe::Monthly {
        zone: zone(zone_name),
        reset_day_of_month: day,
        reset_time: time(reset),
    }
}

fn custom(starts_at: &str, ends_at: &str) -> Timeframe {
    Timeframe::Custom {
        zone: zone("UTC"),
        starts_at: ts(starts_at),
        ends_at: ts(ends_at),
    }
}

fn window(id: &str, starts_at: &str, ends_at: &str) -> Window {
    Window {
        id: WindowId::parse(id).unwrap(),
        starts_at: Some(ts(starts_at)),
        ends_at: Some(ts(ends_at)),
    }
}

/// Asserts that `expected` is the window for its start, for the last nanosecond before its end and for
/// `inside`; that the nanosecond before its start and its end belong to the neighbouring windows; and
/// that `next_window` continues at its end.
fn assert_window(timeframe: &Timeframe, inside: &str, expected: &Window) {
    let start = expected.starts_at.unwrap();
    let end = expected.ends_at.unwrap();
    assert_eq!(
        timeframe.window_for(ts(inside)).as_ref(),
        Some(expected),
        "at {inside}"
    );
    assert_eq!(
        timeframe.window_for(start).as_ref(),
        Some(expected),
        "at start {start}"
    );
    assert_eq!(
        timeframe.window_for(end - NS).as_ref(),
        Some(expected),
        "just before end {end}"
    );
    let before = timeframe.window_for(start - NS).unwrap();
    assert_eq!(
        before.ends_at,
        Some(start),
        "the previous window ends at {start}"
    );
    assert!(before.id < expected.id);
    let after = timeframe.window_for(end).unwrap();
    assert_eq!(
        after.starts_at,
        Some(end),
        "the next window starts at {end}"
    );
    assert!(after.id > expected.id);
    assert_eq!(timeframe.next_window(expected), Some(after));
    assert!(expected.contains(start) && expected.contains(end - NS));
    assert!(!expected.contains(start - NS) && !expected.contains(end));
    assert!(!expected.is_closed_at(end - NS) && expected.is_closed_at(end));
    assert_eq!(
        timeframe.current_window(start),
        (expected.clone(), WindowStatus::Open)
    );
}

fn hours(window: &Window) -> f64 {
    let length = window
        .ends_at
        .unwrap()
        .duration_since(window.starts_at.unwrap());
    length.as_secs_f64() / 3600.0
}

// ---- UTC ----

#[test]
fn daily_utc_at_several_reset_times() {
    let timeframe = daily("UTC", "00:00");
    let expected = window("2025-06-15", "2025-06-15T00:00:00Z", "2025-06-16T00:00:00Z");
    assert_window(&timeframe, "2025-06-15T12:34:56.789Z", &expected);

    let timeframe = daily("UTC", "06:30");
    let expected = window("2025-06-15", "2025-06-15T06:30:00Z", "2025-06-16T06:30:00Z");
    assert_window(&timeframe, "2025-06-16T06:29:59Z", &expected);
    assert_eq!(
        timeframe
            .window_for(ts("2025-06-15T06:29:59Z"))
            .unwrap()
            .id
            .as_str(),
        "2025-06-14"
    );

    let timeframe = daily("UTC", "23:59");
    let expected = window("2024-12-31", "2024-12-31T23:59:00Z", "2025-01-01T23:59:00Z");
    assert_window(&timeframe, "2025-01-01T00:00:00Z", &expected);
}

#[test]
fn weekly_utc_on_several_days() {
    // Monday 2025-11-17 is the window's local start date, hence its id.
    let timeframe = weekly("UTC", Weekday::Monday, "00:00");
    let expected = window("2025-11-17", "2025-11-17T00:00:00Z", "2025-11-24T00:00:00Z");
    assert_window(&timeframe, "2025-11-20T10:00:00Z", &expected);
    assert_window(&timeframe, "2025-11-23T23:59:59.999999999Z", &expected);

    let timeframe = weekly("UTC", Weekday::Sunday, "23:30");
    let expected = window("2025-11-16", "2025-11-16T23:30:00Z", "2025-11-23T23:30:00Z");
    assert_window(&timeframe, "2025-11-17T00:00:00Z", &expected);

    let timeframe = weekly("UTC", Weekday::Wednesday, "12:00");
    let expected = window("2025-12-31", "2025-12-31T12:00:00Z", "2026-01-07T12:00:00Z");
    assert_window(&timeframe, "2026-01-01T00:00:00Z", &expected);
    assert_eq!(
        timeframe
            .window_for(ts("2025-12-31T11:59:59Z"))
            .unwrap()
            .id
            .as_str(),
        "2025-12-24"
    );
}

#[test]
fn monthly_utc_on_several_days() {
    let timeframe = monthly("UTC", 1, "00:00");
    let expected = window("2025-02-01", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z");
    assert_window(&timeframe, "2025-02-14T08:00:00Z", &expected);

    let timeframe = monthly("UTC", 15, "08:00");
    let expected = window("2024-12-15", "2024-12-15T08:00:00Z", "2025-01-15T08:00:00Z");
    assert_window(&timeframe, "2025-01-01T00:00:00Z", &expected);
    assert_eq!(
        timeframe
            .window_for(ts("2025-01-15T07:59:59Z"))
            .unwrap()
            .id
            .as_str(),
        "2024-12-15"
    );

    // Day 28 exists in every month, February of a leap year included.
    let timeframe = monthly("UTC", 28, "23:59");
    let expected = window("2024-02-28", "2024-02-28T23:59:00Z", "2024-03-28T23:59:00Z");
    assert_window(&timeframe, "2024-02-29T12:00:00Z", &expected);
}

#[test]
fn all_time_is_one_unbounded_window() {
    let timeframe = Timeframe::AllTime { zone: zone("UTC") };
    let all = Window {
        id: WindowId::parse("all").unwrap(),
        starts_at: None,
        ends_at: None,
    };
    for at in [Timestamp::MIN, ts("2025-01-01T00:00:00Z"), Timestamp::MAX] {
        assert_eq!(timeframe.window_for(at).as_ref(), Some(&all));
        assert!(all.contains(at));
        assert!(!all.is_closed_at(at));
        assert_eq!(
            timeframe.current_window(at),
            (all.clone(), WindowStatus::Open)
        );
    }
    assert_eq!(timeframe.next_window(&all), None);
}

// ---- custom ----

#[test]
fn custom_before_inside_and_after() {
    let timeframe = custom("2025-06-01T00:00:00Z", "2025-06-08T00:00:00Z");
    let expected = window("custom", "2025-06-01T00:00:00Z", "2025-06-08T00:00:00Z");
    let start = ts("2025-06-01T00:00:00Z");
    let end = ts("2025-06-08T00:00:00Z");

    assert_eq!(timeframe.window_for(start - NS), None);
    assert_eq!(
        timeframe.current_window(start - NS),
        (expected.clone(), WindowStatus::Upcoming)
    );
    for at in [start, ts("2025-06-04T12:00:00Z"), end - NS] {
        assert_eq!(timeframe.window_for(at).as_ref(), Some(&expected));
        assert_eq!(
            timeframe.current_window(at),
            (expected.clone(), WindowStatus::Open)
        );
    }
    assert_eq!(timeframe.window_for(end), None);
    assert_eq!(
        timeframe.current_window(end),
        (expected.clone(), WindowStatus::Closed)
    );
    assert!(expected.is_closed_at(end) && !expected.is_closed_at(end - NS));
    assert_eq!(timeframe.next_window(&expected), None);
}

#[test]
fn status_names() {
    assert_eq!(WindowStatus::Open.as_str(), "open");
    assert_eq!(WindowStatus::Closed.as_str(), "closed");
    assert_eq!(WindowStatus::Upcoming.to_string(), "upcoming");
}

// ---- daylight saving: America/New_York ----

#[test]
fn new_york_daily_windows_are_23_and_25_hours_on_dst_days() {
    let timeframe = daily("America/New_York", "00:00");
    let spring = window("2025-03-09", "2025-03-09T05:00:00Z", "2025-03-10T04:00:00Z");
    assert_window(&timeframe, "2025-03-09T12:00:00Z", &spring);
    assert_eq!(hours(&spring), 23.0);
    let fall = window("2025-11-02", "2025-11-02T04:00:00Z", "2025-11-03T05:00:00Z");
    assert_window(&timeframe, "2025-11-02T12:00:00Z", &fall);
    assert_eq!(hours(&fall), 25.0);
}

#[test]
fn new_york_reset_time_in_the_gap_starts_when_the_gap_ends() {
    let timeframe = daily("America/New_York", "02:30");
    // 02:30 does not exist on 2025-03-09: the window starts at 03:00 EDT, not jiff's shifted 03:30.
    let gap_day = window("2025-03-09", "2025-03-09T07:00:00Z", "2025-03-10T06:30:00Z");
    assert_window(&timeframe, "2025-03-09T07:15:00Z", &gap_day);
    let before = window("2025-03-08", "2025-03-08T07:30:00Z", "2025-03-09T07:00:00Z");
    assert_window(&timeframe, "2025-03-09T06:59:59.999999999Z", &before);
    assert_eq!(hours(&before), 23.5);
    assert_eq!(hours(&gap_day), 23.5);
}

#[test]
fn new_york_reset_time_in_the_fold_starts_at_the_earlier_instant() {
    let timeframe = daily("America/New_York", "01:30");
    // 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST); the first one counts.
    let fold_day = window("2025-11-02", "2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z");
    assert_window(&timeframe, "2025-11-02T06:30:00Z", &fold_day);
    assert_eq!(hours(&fold_day), 25.0);
    let before = window("2025-11-01", "2025-11-01T05:30:00Z", "2025-11-02T05:30:00Z");
    assert_window(&timeframe, "2025-11-02T05:29:00Z", &before);
    assert_eq!(hours(&before), 24.0);
}

#[test]
fn new_york_weekly_and_monthly_across_dst() {
    // Sunday resets at 02:30: the week of 2025-03-09 begins at the end of the gap.
    let timeframe = weekly("America/New_York", Weekday::Sunday, "02:30");
    let spring = window("2025-03-02", "2025-03-02T07:30:00Z", "2025-03-09T07:00:00Z");
    assert_window(&timeframe, "2025-03-05T00:00:00Z", &spring);
    let after = window("2025-03-09", "2025-03-09T07:00:00Z", "2025-03-16T06:30:00Z");
    assert_window(&timeframe, "2025-03-10T00:00:00Z", &after);

    let timeframe = weekly("America/New_York", Weekday::Monday, "00:00");
    let fall = window("2025-10-27", "2025-10-27T04:00:00Z", "2025-11-03T05:00:00Z");
    assert_window(&timeframe, "2025-11-02T06:00:00Z", &fall);
    assert_eq!(hours(&fall), 7.0 * 24.0 + 1.0);

    let timeframe = monthly("America/New_York", 1, "00:00");
    let march = window("2025-03-01", "2025-03-01T05:00:00Z", "2025-04-01T04:00:00Z");
    assert_window(&timeframe, "2025-03-20T00:00:00Z", &march);
    let november = window("2025-11-01", "2025-11-01T04:00:00Z", "2025-12-01T05:00:00Z");
    assert_window(&timeframe, "2025-11-20T00:00:00Z", &november);

    let timeframe = monthly("America/New_York", 9, "02:30");
    let gap = window("2025-03-09", "2025-03-09T07:00:00Z", "2025-04-09T06:30:00Z");
    assert_window(&timeframe, "2025-03-20T00:00:00Z", &gap);
}

// ---- daylight saving: Europe/Berlin ----

#[test]
fn berlin_dst_days() {
    let timeframe = daily("Europe/Berlin", "00:00");
    let spring = window("2025-03-30", "2025-03-29T23:00:00Z", "2025-03-30T22:00:00Z");
    assert_window(&timeframe, "2025-03-30T12:00:00Z", &spring);
    assert_eq!(hours(&spring), 23.0);
    let fall = window("2025-10-26", "2025-10-25T22:00:00Z", "2025-10-26T23:00:00Z");
    assert_window(&timeframe, "2025-10-26T12:00:00Z", &fall);
    assert_eq!(hours(&fall), 25.0);

    // 02:15 is skipped on 2025-03-30 (02:00 CET -> 03:00 CEST at 01:00Z).
    let timeframe = daily("Europe/Berlin", "02:15");
    let gap = window("2025-03-30", "2025-03-30T01:00:00Z", "2025-03-31T00:15:00Z");
    assert_window(&timeframe, "2025-03-30T01:00:00Z", &gap);
    // 02:30 is shown twice on 2025-10-26 (00:30Z CEST, 01:30Z CET).
    let timeframe = daily("Europe/Berlin", "02:30");
    let fold = window("2025-10-26", "2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z");
    assert_window(&timeframe, "2025-10-26T01:30:00Z", &fold);
    assert_eq!(hours(&fold), 25.0);

    let timeframe = weekly("Europe/Berlin", Weekday::Monday, "00:00");
    let week = window("2025-03-24", "2025-03-23T23:00:00Z", "2025-03-30T22:00:00Z");
    assert_window(&timeframe, "2025-03-30T00:00:00Z", &week);
    assert_eq!(hours(&week), 7.0 * 24.0 - 1.0);

    let timeframe = monthly("Europe/Berlin", 1, "00:00");
    let october = window("2025-10-01", "2025-09-30T22:00:00Z", "2025-10-31T23:00:00Z");
    assert_window(&timeframe, "2025-10-26T01:30:00Z", &october);
}

// ---- daylight saving: Australia/Lord_Howe (half-hour shift) ----

#[test]
fn lord_howe_half_hour_dst() {
    // +11 in summer, +10:30 in winter: 02:00 -> 01:30 on 2025-04-06, 02:00 -> 02:30 on 2025-10-05.
    let timeframe = daily("Australia/Lord_Howe", "00:00");
    let fall = window("2025-04-06", "2025-04-05T13:00:00Z", "2025-04-06T13:30:00Z");
    assert_window(&timeframe, "2025-04-06T00:00:00Z", &fall);
    assert_eq!(hours(&fall), 24.5);
    let spring = window("2025-10-05", "2025-10-04T13:30:00Z", "2025-10-05T13:00:00Z");
    assert_window(&timeframe, "2025-10-05T00:00:00Z", &spring);
    assert_eq!(hours(&spring), 23.5);

    // 02:15 is skipped on 2025-10-05: start at 02:30 local (+11) = 15:30Z the day before.
    let timeframe = daily("Australia/Lord_Howe", "02:15");
    let gap = window("2025-10-05", "2025-10-04T15:30:00Z", "2025-10-05T15:15:00Z");
    assert_window(&timeframe, "2025-10-04T16:00:00Z", &gap);
    // 01:45 is shown twice on 2025-04-06: 14:45Z (+11) first, 15:15Z (+10:30) second.
    let timeframe = daily("Australia/Lord_Howe", "01:45");
    let fold = window("2025-04-06", "2025-04-05T14:45:00Z", "2025-04-06T15:15:00Z");
    assert_window(&timeframe, "2025-04-05T15:15:00Z", &fold);
    assert_eq!(hours(&fold), 24.5);

    let timeframe = weekly("Australia/Lord_Howe", Weekday::Sunday, "02:15");
    let week = window("2025-10-05", "2025-10-04T15:30:00Z", "2025-10-11T15:15:00Z");
    assert_window(&timeframe, "2025-10-08T00:00:00Z", &week);

    let timeframe = monthly("Australia/Lord_Howe", 1, "00:00");
    let april = window("2025-04-01", "2025-03-31T13:00:00Z", "2025-04-30T13:30:00Z");
    assert_window(&timeframe, "2025-04-10T00:00:00Z", &april);
}

// ---- non-hour offsets ----

#[test]
fn kolkata_and_kathmandu() {
    let timeframe = daily("Asia/Kolkata", "00:00");
    let day = window("2025-06-15", "2025-06-14T18:30:00Z", "2025-06-15T18:30:00Z");
    assert_window(&timeframe, "2025-06-14T18:30:00Z", &day);

    let timeframe = daily("Asia/Kathmandu", "06:00");
    let day = window("2025-06-15", "2025-06-15T00:15:00Z", "2025-06-16T00:15:00Z");
    assert_window(&timeframe, "2025-06-15T10:00:00Z", &day);

    let timeframe = weekly("Asia/Kathmandu", Weekday::Monday, "00:00");
    let week = window("2025-11-17", "2025-11-16T18:15:00Z", "2025-11-23T18:15:00Z");
    assert_window(&timeframe, "2025-11-16T18:15:00Z", &week);

    let timeframe = monthly("Asia/Kolkata", 28, "12:00");
    let month = window("2025-02-28", "2025-02-28T06:30:00Z", "2025-03-28T06:30:00Z");
    assert_window(&timeframe, "2025-03-01T00:00:00Z", &month);
}

// ---- a gap that swallows a whole day ----

#[test]
fn samoa_skipped_day_has_no_window_of_its_own() {
    // Pacific/Apia skipped 2011-12-30 entirely: 23:59:59 on the 29th (-10) was followed by 00:00 on
    // the 31st (+14), at 2011-12-30T10:00:00Z.
    let timeframe = daily("Pacific/Apia", "00:00");
    let before = window("2011-12-29", "2011-12-29T10:00:00Z", "2011-12-30T10:00:00Z");
    assert_window(&timeframe, "2011-12-30T09:00:00Z", &before);
    let after = window("2011-12-31", "2011-12-30T10:00:00Z", "2011-12-31T10:00:00Z");
    assert_eq!(timeframe.next_window(&before), Some(after));

    // At noon the 30th's reset falls at the end of the gap, before the 31st's noon: its window
    // keeps its nominal date as id, so ids stay unique.
    let timeframe = daily("Pacific/Apia", "12:00");
    let skipped = window("2011-12-30", "2011-12-30T10:00:00Z", "2011-12-30T22:00:00Z");
    assert_window(&timeframe, "2011-12-30T12:00:00Z", &skipped);
}

// ---- ids ----

#[test]
fn window_id_parse_accepts_exactly_the_produced_forms() {
    for good in [
        "all",
        "custom",
        "2025-11-17",
        "2024-02-29",
        "0000-01-01",
        "-0001-12-31",
        "9999-12-31",
    ] {
        let id = WindowId::parse(good).unwrap();
        assert_eq!(id.as_str(), good);
        assert_eq!(id.to_string(), good);
    }
    for bad in [
        "",
        "ALL",
        "All",
        "custom ",
        " all",
        "2025-1-17",
        "2025-11-7",
        "25-11-17",
        "2025/11/17",
        "2025-02-29",
        "2025-13-01",
        "2025-00-10",
        "2025-11-00",
        "2025-11-31",
        "+2025-11-17",
        "-0000-01-01",
        "12025-11-17",
        "2025-11-17T00:00",
        "2025-11-1a",
        "-10000-01-01",
    ] {
        assert_eq!(WindowId::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn window_ids_sort_chronologically() {
    let mut ids: Vec<WindowId> = [
        "2025-11-17",
        "-0002-01-01",
        "2024-12-31",
        "-0001-06-30",
        "0999-01-01",
    ]
    .into_iter()
    .map(|raw| WindowId::parse(raw).unwrap())
    .collect();
    ids.sort();
    let sorted: Vec<&str> = ids.iter().map(WindowId::as_str).collect();
    assert_eq!(
        sorted,
        [
            "-0002-01-01",
            "-0001-06-30",
            "0999-01-01",
            "2024-12-31",
            "2025-11-17"
        ]
    );
}

// ---- the ends of time ----

#[test]
fn extremes_never_panic_and_stay_consistent() {
    let timeframes = [
        daily("UTC", "00:00"),
        daily("UTC", "23:59"),
        daily("Pacific/Kiritimati", "12:00"),
        daily("Pacific/Pago_Pago", "00:00"),
        weekly("America/New_York", Weekday::Sunday, "02:30"),
        weekly("UTC", Weekday::Thursday, "00:00"),
        monthly("Australia/Lord_Howe", 28, "23:59"),
        monthly("UTC", 1, "00:00"),
        Timeframe::AllTime { zone: zone("UTC") },
        Timeframe::Custom {
            zone: zone("UTC"),
            starts_at: Timestamp::MIN,
            ends_at: Timestamp::MAX,
        },
    ];
    let min_plus = Timestamp::MIN + SignedDuration::from_hours(24 * 40);
    let max_minus = Timestamp::MAX - SignedDuration::from_hours(24 * 40);
    for timeframe in &timeframes {
        for at in [
            Timestamp::MIN,
            min_plus,
            max_minus,
            Timestamp::MAX - NS,
            Timestamp::MAX,
        ] {
            let (current, _) = timeframe.current_window(at);
            let Some(found) = timeframe.window_for(at) else {
                assert_eq!(at, Timestamp::MAX, "custom excludes only its end");
                continue;
            };
            assert_eq!(found, current);
            assert!(found.contains(at), "{timeframe:?} at {at}: {found:?}");
            assert!(WindowId::parse(found.id.as_str()).is_some());
        }
        // Walking forward from near the end reaches the last window, which never ends.
        if let Some(mut current) = timeframe.window_for(max_minus) {
            let mut steps = 0;
            while let Some(next) = timeframe.next_window(&current) {
                assert_eq!(next.starts_at, current.ends_at);
                assert!(next.id > current.id);
                current = next;
                steps += 1;
                assert!(steps < 100);
            }
        }
    }
    let first = daily("UTC", "00:00").window_for(Timestamp::MIN).unwrap();
    assert_eq!(first.starts_at, None);
    let last = daily("UTC", "00:00").window_for(Timestamp::MAX).unwrap();
    assert_eq!(last.ends_at, None);
    assert!(!last.is_closed_at(Timestamp::MAX));
}

// ---- properties ----

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/Sao_Paulo",
    "America/Havana",
    "America/St_Johns",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Africa/Casablanca",
    "Europe/Dublin",
    "Asia/Gaza",
    "Asia/Tehran",
];

fn recurring() -> impl Strategy<Value = Timeframe> {
    let zone = proptest::sample::select(ZONES).prop_map(zone);
    let reset_time = (0i8..24, 0i8..60).prop_map(|(h, m)| Time::new(h, m, 0, 0).unwrap());
    let weekday = (0i8..7).prop_map(|d| Weekday::from_monday_zero_offset(d).unwrap());
    prop_oneof![
        (zone.clone(), reset_time.clone())
            .prop_map(|(zone, reset_time)| Timeframe::Daily { zone, reset_time }),
        (zone.clone(), weekday, reset_time.clone()).prop_map(|(zone, reset_day, reset_time)| {
            Timeframe::Weekly {
                zone,
                reset_day,
                reset_time,
            }
        }),
        (zone, 1u8..=28, reset_time).prop_map(|(zone, reset_day_of_month, reset_time)| {
            Timeframe::Monthly {
                zone,
                reset_day_of_month,
                reset_time,
            }
        }),
    ]
}

/// Instants from 2009 to 2031, to the nanosecond.
fn instant() -> impl Strategy<Value = Timestamp> {
    let from = ts("2009-01-01T00:00:00Z").as_second();
    let to = ts("2031-01-01T00:00:00Z").as_second();
    (from..to, 0i32..1_000_000_000)
        .prop_map(|(second, nanos)| Timestamp::new(second, nanos).unwrap())
}

/// Whether the wall clock skips `reset_time` on `day` in the timeframe's zone.
fn in_gap(timeframe: &Timeframe, day: Date, reset_time: Time) -> bool {
    let local = day.to_datetime(reset_time);
    matches!(
        timeframe
            .zone()
            .time_zone()
            .to_ambiguous_timestamp(local)
            .offset(),
        AmbiguousOffset::Gap { .. }
    )
}

/// Zones with daylight-saving or other offset changes between 2009 and 2031.
const CHANGING_ZONES: &[&str] = &[
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "America/Havana",
    "America/St_Johns",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Africa/Casablanca",
    "Europe/Dublin",
    "Asia/Gaza",
    "Asia/Tehran",
];

/// A recurring timeframe whose reset falls within two hours (wall clock) of one of its zone's offset
/// changes, on the day of that change (weekly on its weekday, monthly on its day when that is at most
/// 28), and an instant within three days of the change: gaps and folds come up in most cases.
fn near_transition() -> impl Strategy<Value = (Timeframe, Timestamp)> {
    (
        proptest::sample::select(CHANGING_ZONES),
        any::<proptest::sample::Index>(),
        -120i64..=120,
        -3 * 86_400i64..=3 * 86_400,
        0u8..3,
        1u8..=28,
    )
        .prop_map(|(name, pick, minutes, seconds, kind, fallback_day)| {
            let tz = zone(name);
            let from = ts("2009-01-01T00:00:00Z");
            let to = ts("2031-01-01T00:00:00Z");
            let transitions: Vec<Timestamp> = tz
                .time_zone()
                .following(from)
                .map(|transition| transition.timestamp())
                .take_while(|at| *at < to)
                .collect();
            let transition = transitions[pick.index(transitions.len())];
            // The wall clock just before the change, as the reset time to aim near.
            let wall = tz.time_zone().to_datetime(transition - NS) + NS;
            let minute_of_day = i64::from(wall.hour()) * 60 + i64::from(wall.minute()) + minutes;
            let minute_of_day = minute_of_day.rem_euclid(24 * 60);
            let reset_time =
                Time::new((minute_of_day / 60) as i8, (minute_of_day % 60) as i8, 0, 0).unwrap();
            let day = wall.date();
            let timeframe = match kind {
                0 => Timeframe::Daily {
                    zone: tz,
                    reset_time,
                },
                1 => Timeframe::Weekly {
                    zone: tz,
                    reset_day: day.weekday(),
                    reset_time,
                },
                _ => Timeframe::Monthly {
                    zone: tz,
                    reset_day_of_month: if day.day() <= 28 {
                        day.day() as u8
                    } else {
                        fallback_day
                    },
                    reset_time,
                },
            };
            (timeframe, transition + SignedDuration::from_secs(seconds))
        })
}

/// The invariants every window of a recurring timeframe keeps, checked for the window containing `at`.
fn check_window(timeframe: &Timeframe, at: Timestamp) -> Result<(), TestCaseError> {
    let window = timeframe.window_for(at).unwrap();
    let start = window.starts_at.unwrap();
    let end = window.ends_at.unwrap();
    prop_assert!(window.contains(at));
    prop_assert!(start <= at && at < end);
    prop_assert_eq!(
        timeframe.current_window(at),
        (window.clone(), WindowStatus::Open)
    );
    prop_assert_eq!(timeframe.window_for(start), Some(window.clone()));
    prop_assert_eq!(timeframe.window_for(end - NS), Some(window.clone()));
    prop_assert_eq!(WindowId::parse(window.id.as_str()), Some(window.id.clone()));

    let next = timeframe.next_window(&window).unwrap();
    prop_assert_eq!(next.starts_at, window.ends_at);
    prop_assert!(next.id > window.id);
    prop_assert!(
        next.id.as_str() > window.id.as_str(),
        "ids also sort as text in 0000-9999"
    );
    let previous = timeframe.window_for(start - NS).unwrap();
    prop_assert_eq!(previous.ends_at, window.starts_at);
    prop_assert!(previous.id < window.id);

    // Starts follow the wall clock: the nominal date at reset_time, unless that is in a gap.
    let zone = timeframe.zone().time_zone();
    let nominal: Date = window.id.as_str().parse().unwrap();
    let local_start = zone.to_datetime(start);
    let (reset_time, date_ok) = match timeframe {
        Timeframe::Daily { reset_time, .. } => (*reset_time, true),
        Timeframe::Weekly {
            reset_time,
            reset_day,
            ..
        } => (*reset_time, nominal.weekday() == *reset_day),
        Timeframe::Monthly {
            reset_time,
            reset_day_of_month,
            ..
        } => (*reset_time, nominal.day() as u8 == *reset_day_of_month),
        _ => unreachable!(),
    };
    prop_assert!(date_ok, "{} is not a reset date", nominal);
    if in_gap(timeframe, nominal, reset_time) {
        // The first instant after the gap: a transition, and later on the wall clock than the reset.
        prop_assert!(local_start > nominal.to_datetime(reset_time));
        prop_assert_eq!(
            zone.preceding(start + NS).next().map(|t| t.timestamp()),
            Some(start)
        );
    } else {
        prop_assert_eq!(local_start, nominal.to_datetime(reset_time));
        // In a fold, the earlier of the two instants.
        let earlier = zone
            .to_ambiguous_timestamp(nominal.to_datetime(reset_time))
            .earlier()
            .unwrap();
        prop_assert_eq!(start, earlier);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn window_invariants(timeframe in recurring(), at in instant()) {
        check_window(&timeframe, at)?;
    }

    #[test]
    fn window_invariants_around_transitions((timeframe, at) in near_transition()) {
        check_window(&timeframe, at)?;
        let window = timeframe.window_for(at).unwrap();
        let mut current = timeframe.window_for(window.starts_at.unwrap() - NS).unwrap();
        for _ in 0..3 {
            check_window(&timeframe, current.starts_at.unwrap())?;
            current = timeframe.next_window(&current).unwrap();
        }
    }

    #[test]
    fn ids_increase_along_next_window(timeframe in recurring(), at in instant()) {
        let mut window = timeframe.window_for(at).unwrap();
        for _ in 0..40 {
            let next = timeframe.next_window(&window).unwrap();
            prop_assert_eq!(next.starts_at, window.ends_at);
            prop_assert!(next.id > window.id);
            prop_assert!(next.starts_at > window.starts_at);
            window = next;
        }
    }

    #[test]
    fn any_instant_is_contained(timeframe in recurring(), second in Timestamp::MIN.as_second()..=Timestamp::MAX.as_second()) {
        let at = Timestamp::new(second, 0).unwrap();
        let window = timeframe.window_for(at).unwrap();
        prop_assert!(window.contains(at));
        if let Some(end) = window.ends_at {
            prop_assert_eq!(timeframe.next_window(&window).and_then(|next| next.starts_at), Some(end));
        }
    }

    #[test]
    fn custom_membership(start in 0i64..1_000_000, length in 1i64..1_000_000, probe in -10i64..2_000_010) {
        let starts_at = Timestamp::new(1_700_000_000 + start, 0).unwrap();
        let ends_at = Timestamp::new(1_700_000_000 + start + length, 0).unwrap();
        let at = Timestamp::new(1_700_000_000 + probe, 0).unwrap();
        let timeframe = Timeframe::Custom { zone: zone("UTC"), starts_at, ends_at };
        let (window, status) = timeframe.current_window(at);
        prop_assert_eq!((window.starts_at, window.ends_at), (Some(starts_at), Some(ends_at)));
        let expected = if at < starts_at {
            WindowStatus::Upcoming
        } else if at >= ends_at {
            WindowStatus::Closed
        } else {
            WindowStatus::Open
        };
        prop_assert_eq!(status, expected);
        prop_assert_eq!(timeframe.window_for(at).is_some(), expected == WindowStatus::Open);
        prop_assert_eq!(window.contains(at), expected == WindowStatus::Open);
    }
}

#[test]
fn a_window_is_found_by_its_id() {
    use phoenix_core::config::LeaderboardConfig;
    use phoenix_core::window::WindowId;
    let timeframe = |tf: serde_json::Value| {
        LeaderboardConfig::from_json(&serde_json::json!({
            "timeframe": tf,
            "scoring": {"rules": [{"event_type": "x", "points_expression": "1"}]}
        }))
        .unwrap()
        .timeframe
    };
    for tf in [
        serde_json::json!({"type": "daily", "timezone": "America/New_York", "reset_time": "06:00"}),
        serde_json::json!({"type": "weekly", "timezone": "Asia/Tokyo", "reset_day": "wednesday"}),
        serde_json::json!({"type": "monthly", "timezone": "Europe/Berlin"}),
    ] {
        let tf = timeframe(tf);
        let at: jiff::Timestamp = "2026-03-29T01:30:00Z".parse().unwrap();
        let window = tf.window_for(at).unwrap();
        let found = tf.window_by_id(&window.id).unwrap();
        assert_eq!(found, window, "{tf:?}");
        let next = tf.next_window(&window).unwrap();
        assert_eq!(tf.window_by_id(&next.id).unwrap(), next);
        // A date that starts no window of this timeframe names none (except daily, where every
        // date does).
        let other = WindowId::parse("2026-03-31").unwrap();
        if let Some(w) = tf.window_by_id(&other) {
            assert_eq!(w.id, other);
        }
    }
    assert!(
        timeframe(serde_json::json!({"type": "all_time"}))
            .window_by_id(&WindowId::parse("2026-01-01").unwrap())
            .is_none()
    );
}
