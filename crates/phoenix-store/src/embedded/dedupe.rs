//! The idempotency index: which `(tenant, event_id)` pairs have been accepted, for as long as an event
//! with that id could still be accepted (its `occurred_at` within the dedupe horizon). Entries are
//! 128-bit keyed hashes, so memory per event is fixed whatever the id's length; entries older than the
//! horizon are dropped, which bounds the index by the horizon times the event rate.

use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

pub(super) struct Dedupe {
    /// Key hash → `occurred_at` in Unix seconds.
    seen: HashMap<u128, i64>,
    keys: (
        std::collections::hash_map::RandomState,
        std::collections::hash_map::RandomState,
    ),
    horizon: SignedDuration,
    last_prune: i64,
}

impl Dedupe {
    pub(super) fn new(horizon: SignedDuration) -> Self {
        Dedupe {
            seen: HashMap::new(),
            keys: Default::default(),
            horizon,
            last_prune: 0,
        }
    }

    /// A 128-bit hash of the pair; the random keys are per process (the index is rebuilt from the log at
    /// start-up), so ids cannot be chosen to collide.
    pub(super) fn key(&self, tenant_id: &str, event_id: &str) -> u128 {
        let hash = |state: &std::collections::hash_map::RandomState| {
            let mut h = state.build_hasher();
            h.write(tenant_id.as_bytes());
            h.write_u8(0xff);
            h.write(event_id.as_bytes());
            h.finish()
        };
        (u128::from(hash(&self.keys.0)) << 64) | u128::from(hash(&self.keys.1))
    }

    /// Claims `key`: true the first time (the event is new), false for a duplicate.
    pub(super) fn claim(&mut self, key: u128, occurred_at: Timestamp) -> bool {
        match self.seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(occurred_at.as_second());
                true
            }
        }
    }

    /// Gives a claim back (its write failed, so the event was never accepted).
    pub(super) fn release(&mut self, key: u128) {
        self.seen.remove(&key);
    }

    /// Drops entries no event can collide with any more (older than the horizon); cheap to call often.
    pub(super) fn prune(&mut self, now: Timestamp) {
        let now_s = now.as_second();
        if now_s - self.last_prune < 60 {
            return;
        }
        self.last_prune = now_s;
        let oldest = now_s - self.horizon.as_secs();
        self.seen.retain(|_, occurred| *occurred >= oldest);
    }

    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_once_and_forgets_beyond_the_horizon() {
        let mut d = Dedupe::new(SignedDuration::from_hours(1));
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let k = d.key("t", "e1");
        assert_ne!(k, d.key("t2", "e1"));
        assert_ne!(d.key("t", "e"), d.key("te", ""));
        assert!(d.claim(k, now));
        assert!(!d.claim(k, now));
        d.release(k);
        assert!(d.claim(k, now));
        d.prune(now + SignedDuration::from_mins(59));
        assert_eq!(d.len(), 1);
        d.prune(now + SignedDuration::from_mins(121));
        assert_eq!(d.len(), 0);
    }
}
