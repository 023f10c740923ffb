//! Slowing down password guessing (SPEC §3.6): failed logins are counted per username and per client
//! address; past a few free failures each further one locks that key for a doubling delay (capped), and
//! a locked key is answered 429 with `Retry-After` before any password is checked. In memory, per
//! process: a restart forgets the counts, which only helps a guesser by the free failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures a username may have before it is slowed down.
const FREE_PER_USER: u32 = 5;
/// Failures one client address may have (over any usernames) before it is slowed down.
const FREE_PER_ADDRESS: u32 = 20;
/// The longest lock-out.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Counts are forgotten after this long without a failure.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// Above this many tracked keys, forgotten ones are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

struct Failures {
    count: u32,
    last: Instant,
    locked_until: Instant,
}

#[derive(Default)]
pub struct LoginThrottle {
    keys: Mutex<HashMap<String, Failures>>,
}

fn user_key(username: &str) -> String {
    format!("user:{username}")
}

fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the caller must wait before trying this username from this address, if at all.
    pub fn wait(&self, username: &str, address: Option<&str>) -> Option<Duration> {
        let now = Instant::now();
        let keys = self.lock();
        let remaining = |key: String| {
            keys.get(&key)
                .and_then(|f| f.locked_until.checked_duration_since(now))
                .filter(|d| !d.is_zero())
        };
        let by_user = remaining(user_key(username));
        let by_address = address.and_then(|a| remaining(address_key(a)));
        by_user.max(by_address)
    }

    /// Counts a failed login.
    pub fn failed(&self, username: &str, address: Option<&str>) {
        let now = Instant::now();
        let mut keys = self.lock();
        if keys.len() > SWEEP_ABOVE {
            keys.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        }
        let mut count = |key: String, free: u32| {
            let entry = keys.entry(key).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: now,
            });
            if now.duration_since(entry.last) >= FORGET_AFTER {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
            if entry.count >= free {
                entry.locked_until = now + delay_after(entry.count - free);
            }
        };
        count(user_key(username), FREE_PER_USER);
        if let Some(a) = address {
            count(address_key(a), FREE_PER_ADDRESS);
        }
    }

    /// A successful login clears the username's count (not the address's: one good account must not
    /// reset a guesser's budget).
    pub fn succeeded(&self, username: &str) {
        self.lock().remove(&user_key(username));
    }
}

/// 2 s after the last free failure, doubling with each further one, at most [`MAX_DELAY`].
fn delay_after(extra_failures: u32) -> Duration {
    let secs = 2u64.saturating_pow(extra_failures.saturating_add(1));
    Duration::from_secs(secs).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_username_is_locked_after_its_free_failures_with_a_doubling_delay() {
        let throttle = LoginThrottle::default();
        for _ in 0..FREE_PER_USER - 1 {
            throttle.failed("alice", Some("10.0.0.1"));
            assert_eq!(throttle.wait("alice", Some("10.0.0.1")), None);
        }
        throttle.failed("alice", Some("10.0.0.1"));
        let wait = throttle.wait("alice", Some("10.0.0.2")).expect("locked");
        assert!(wait <= Duration::from_secs(2) && wait > Duration::from_secs(1));
        assert_eq!(throttle.wait("bob", Some("10.0.0.1")), None);
        throttle.succeeded("alice");
        assert_eq!(throttle.wait("alice", None), None);
    }

    #[test]
    fn an_address_is_locked_across_usernames() {
        let throttle = LoginThrottle::default();
        for i in 0..FREE_PER_ADDRESS {
            throttle.failed(&format!("user{i}"), Some("10.0.0.9"));
        }
        assert!(throttle.wait("someone-new", Some("10.0.0.9")).is_some());
        assert_eq!(throttle.wait("someone-new", Some("10.0.0.8")), None);
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        assert_eq!(delay_after(0), Duration::from_secs(2));
        assert_eq!(delay_after(1), Duration::from_secs(4));
        assert_eq!(delay_after(20), MAX_DELAY);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }
}
