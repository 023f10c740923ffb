//! Slowing down password guessing (SPEC §3.6). Every login attempt counts against two keys before its
//! password is checked: the (username, client address) pair and the client address alone; a success
//! takes its attempt back. Past a few free failures, each further one locks that key for a doubling
//! delay (capped), and a locked key is answered 429 with `Retry-After` without checking anything.
//!
//! Many addresses (an IPv6 /48 holds 65k /64s) get around both keys, so each account also has a
//! budget of failures across all addresses: past it, the account's logins from addresses it has not
//! signed in from are paced (one attempt per doubling interval, at most a minute), while its known
//! addresses go on as before: slowed, never locked out.
//!
//! Counting before checking means parallel guesses cannot all slip through while the first ones are
//! still being verified. Keying the user's count by address means nobody can lock a user out from
//! elsewhere by failing on purpose. In memory, per process, with a bounded number of keys: a restart
//! forgets the counts, which only gives a guesser back the free attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures one username may have from one address before it is slowed down.
const FREE_PER_USER: u32 = 5;
/// Failures one client address may have (over any usernames) before it is slowed down.
const FREE_PER_ADDRESS: u32 = 20;
/// The longest lock-out.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Counts are forgotten after this long without a failure.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// At most this many keys are tracked; beyond it the least recently failed ones are dropped.
const MAX_KEYS: usize = 100_000;
/// Failures one account may have from all addresses together before unknown addresses are paced.
const FREE_PER_ACCOUNT: u32 = 20;
/// The longest pause between two attempts on a paced account from unknown addresses.
const MAX_ACCOUNT_PACE: Duration = Duration::from_secs(60);
/// Addresses remembered per account as ones it signed in from.
const KNOWN_PER_ACCOUNT: usize = 8;
/// Accounts tracked at once; beyond it the least recently failed ones are dropped.
const MAX_ACCOUNTS: usize = 10_000;

struct Failures {
    count: u32,
    last: Instant,
    locked_until: Instant,
}

/// One account's failures across all addresses, and where it signed in from lately.
struct Account {
    failures: u32,
    last: Instant,
    /// When the next attempt from an unknown address may be made, once the account is paced.
    next_unknown: Instant,
    known: Vec<String>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Failures>,
    accounts: HashMap<String, Account>,
}

#[derive(Default)]
pub struct LoginThrottle {
    state: Mutex<State>,
    /// In a cluster: where this node's attempts go, to be applied by the other nodes too.
    shared: std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::shared::Shared>>,
}

fn user_key(username: &str, address: &str) -> String {
    format!("user:{username}\u{0}{address}")
}

fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an attempt for `username` from `address` (a client address, or a group of them): the
    /// time to wait if either key is locked, else the attempt is counted as a failure until
    /// [`LoginThrottle::succeeded`] takes it back.
    pub fn attempt(&self, username: &str, address: &str) -> Result<(), Duration> {
        self.count_attempt(username, address)?;
        self.report(crate::shared::Shared::LoginAttempt {
            username: username.to_owned(),
            address: address.to_owned(),
        });
        Ok(())
    }

    /// Sends this node's attempts to `sink` from now on (a cluster node; see [`crate::shared`]).
    pub fn share_with(&self, sink: tokio::sync::mpsc::Sender<crate::shared::Shared>) {
        let _ = self.shared.set(sink);
    }

    fn report(&self, what: crate::shared::Shared) {
        if let Some(sink) = self.shared.get() {
            let _ = sink.try_send(what);
        }
    }

    /// An attempt another node of the cluster counted: counted here too (the same rules, so every
    /// node locks the same keys).
    pub fn attempted_elsewhere(&self, username: &str, address: &str) {
        let _ = self.count_attempt(username, address);
    }

    /// A success another node saw.
    pub fn succeeded_elsewhere(&self, username: &str, address: &str) {
        self.take_back(username, address);
    }

    fn count_attempt(&self, username: &str, address: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        let State { keys, accounts } = &mut *state;
        let keys_of = [
            (user_key(username, address), FREE_PER_USER),
            (address_key(address), FREE_PER_ADDRESS),
        ];
        let wait = keys_of
            .iter()
            .filter_map(|(key, _)| keys.get(key))
            .filter(|f| now.duration_since(f.last) < FORGET_AFTER)
            .filter_map(|f| f.locked_until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        pace_account(accounts, username, address, now)?;
        if keys.len() + 2 > MAX_KEYS {
            make_room(keys, now);
        }
        for (key, free) in keys_of {
            let entry = keys.entry(key).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: now,
            });
            if now.duration_since(entry.last) >= FORGET_AFTER {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            if entry.count >= free {
                entry.locked_until = now + delay_after(entry.count - free);
            }
        }
        Ok(())
    }

    /// The attempt succeeded: the user's count from this address is cleared, and the address gets its
    /// attempt back (not more: one good account must not reset a guesser's budget).
    pub fn succeeded(&self, username: &str, address: &str) {
        self.take_back(username, address);
        self.report(crate::shared::Shared::LoginSucceeded {
            username: username.to_owned(),
            address: address.to_owned(),
        });
    }

    fn take_back(&self, username: &str, address: &str) {
        let now = Instant::now();
        let mut state = self.lock();
        let State { keys, accounts } = &mut *state;
        if let Some(account) = accounts.get_mut(username) {
            account.failures = account.failures.saturating_sub(1);
            if !account.known.iter().any(|a| a == address) {
                if account.known.len() >= KNOWN_PER_ACCOUNT {
                    account.known.remove(0);
                }
                account.known.push(address.to_owned());
            }
        }
        keys.remove(&user_key(username, address));
        if let Some(entry) = keys.get_mut(&address_key(address)) {
            entry.count = entry.count.saturating_sub(1);
            if entry.count < FREE_PER_ADDRESS {
                entry.locked_until = now;
            }
        }
    }
}

/// Counts an attempt against the account, refusing it (with the time to wait) when the account is
/// over its budget, the address is not one it signed in from, and the last such attempt was too
/// recent.
fn pace_account(
    accounts: &mut HashMap<String, Account>,
    username: &str,
    address: &str,
    now: Instant,
) -> Result<(), Duration> {
    if !accounts.contains_key(username) && accounts.len() >= MAX_ACCOUNTS {
        accounts.retain(|_, a| now.duration_since(a.last) < FORGET_AFTER || !a.known.is_empty());
        if accounts.len() >= MAX_ACCOUNTS {
            let oldest = accounts
                .iter()
                .min_by_key(|(_, a)| a.last)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                accounts.remove(&oldest);
            }
        }
    }
    let account = accounts.entry(username.to_owned()).or_insert(Account {
        failures: 0,
        last: now,
        next_unknown: now,
        known: Vec::new(),
    });
    if now.duration_since(account.last) >= FORGET_AFTER {
        account.failures = 0;
    }
    let known = account.known.iter().any(|a| a == address);
    if account.failures >= FREE_PER_ACCOUNT && !known {
        if let Some(wait) = account.next_unknown.checked_duration_since(now)
            && !wait.is_zero()
        {
            return Err(wait);
        }
        let pace = delay_after(account.failures - FREE_PER_ACCOUNT).min(MAX_ACCOUNT_PACE);
        account.next_unknown = now + pace;
    }
    account.failures = account.failures.saturating_add(1);
    account.last = now;
    Ok(())
}

/// Forgets idle keys and, if that is not enough, the least recently failed ones.
fn make_room(keys: &mut HashMap<String, Failures>, now: Instant) {
    keys.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
    if keys.len() + 2 > MAX_KEYS {
        let mut by_age: Vec<(Instant, String)> =
            keys.iter().map(|(k, f)| (f.last, k.clone())).collect();
        by_age.sort();
        for (_, key) in by_age.into_iter().take(MAX_KEYS / 10) {
            keys.remove(&key);
        }
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
    fn a_user_is_locked_from_one_address_after_its_free_failures() {
        let throttle = LoginThrottle::default();
        for _ in 0..FREE_PER_USER - 1 {
            assert!(throttle.attempt("alice", "10.0.0.1").is_ok());
        }
        assert!(throttle.attempt("alice", "10.0.0.1").is_ok());
        let wait = throttle.attempt("alice", "10.0.0.1").expect_err("locked");
        assert!(wait <= Duration::from_secs(2) && wait > Duration::from_secs(1));
        // Not from elsewhere: nobody can lock a user out by failing on purpose.
        assert!(throttle.attempt("alice", "10.0.0.2").is_ok());
        assert!(throttle.attempt("bob", "10.0.0.1").is_ok());
    }

    #[test]
    fn parallel_attempts_are_counted_before_they_are_checked() {
        let throttle = LoginThrottle::default();
        // Five attempts in flight, none finished: the sixth is refused already.
        for _ in 0..FREE_PER_USER {
            assert!(throttle.attempt("carol", "10.0.0.3").is_ok());
        }
        assert!(throttle.attempt("carol", "10.0.0.3").is_err());
    }

    #[test]
    fn a_success_takes_its_attempt_back() {
        let throttle = LoginThrottle::default();
        for _ in 0..FREE_PER_ADDRESS * 2 {
            assert!(throttle.attempt("dave", "10.0.0.4").is_ok());
            throttle.succeeded("dave", "10.0.0.4");
        }
        assert!(throttle.attempt("dave", "10.0.0.4").is_ok());
    }

    #[test]
    fn an_address_is_locked_across_usernames() {
        let throttle = LoginThrottle::default();
        for i in 0..FREE_PER_ADDRESS {
            assert!(throttle.attempt(&format!("user{i}"), "10.0.0.9").is_ok());
        }
        assert!(throttle.attempt("someone-new", "10.0.0.9").is_err());
        assert!(throttle.attempt("someone-new", "10.0.0.8").is_ok());
    }

    #[test]
    fn the_number_of_keys_stays_bounded() {
        let throttle = LoginThrottle::default();
        for i in 0..(MAX_KEYS / 2 + 10) {
            let _ = throttle.attempt("x", &format!("addr-{i}"));
        }
        assert!(throttle.lock().keys.len() <= MAX_KEYS);
        assert!(throttle.lock().accounts.len() <= MAX_ACCOUNTS);
    }

    #[test]
    fn many_addresses_are_paced_on_one_account_but_its_known_address_is_not() {
        let throttle = LoginThrottle::default();
        // The owner signed in from home once.
        assert!(throttle.attempt("erin", "home").is_ok());
        throttle.succeeded("erin", "home");
        // A guesser with many addresses, a few guesses from each (under the per-address limits).
        for i in 0..FREE_PER_ACCOUNT {
            assert!(throttle.attempt("erin", &format!("guesser-{i}")).is_ok());
        }
        // Now one attempt from an unknown address passes, and the next must wait.
        assert!(throttle.attempt("erin", "guesser-new-1").is_ok());
        let wait = throttle
            .attempt("erin", "guesser-new-2")
            .expect_err("paced");
        assert!(wait > Duration::ZERO && wait <= MAX_ACCOUNT_PACE);
        // Slowed, not locked: the owner's known address goes on.
        assert!(throttle.attempt("erin", "home").is_ok());
        throttle.succeeded("erin", "home");
        // Other accounts are not affected.
        assert!(throttle.attempt("frank", "guesser-new-2").is_ok());
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        assert_eq!(delay_after(0), Duration::from_secs(2));
        assert_eq!(delay_after(1), Duration::from_secs(4));
        assert_eq!(delay_after(20), MAX_DELAY);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }
}
