//! The idempotency index: which `(tenant, event_id)` pairs have been accepted, for as long as an event
//! with that id could still be accepted (its `occurred_at` within the dedupe horizon). Entries are
//! 128-bit SipHash-1-3 digests under a secret random key, so memory per event is fixed whatever the id's
//! length and ids cannot be chosen to collide; the key is kept in snapshots so a restored index matches.
//! Entries older than the horizon are dropped, which bounds the index by the horizon times the event rate.

use jiff::{SignedDuration, Timestamp};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::collections::HashMap;
use std::hash::Hasher;

pub(super) struct Dedupe {
    /// Digest → `occurred_at` in Unix seconds.
    seen: HashMap<u128, i64>,
    key: [u64; 2],
    horizon: SignedDuration,
    last_prune: i64,
}

/// The index as plain data, for snapshots.
pub(super) struct DedupeSnapshot {
    pub key: [u64; 2],
    pub entries: Vec<(u128, i64)>,
}

impl Dedupe {
    pub(super) fn new(horizon: SignedDuration) -> Self {
        let bytes = crate::seal::random_bytes::<16>();
        let half = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        Dedupe {
            seen: HashMap::new(),
            key: [half(&bytes[..8]), half(&bytes[8..])],
            horizon,
            last_prune: 0,
        }
    }

    pub(super) fn key(&self, tenant_id: &str, event_id: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.key[0], self.key[1]);
        // Length-prefix the tenant so ("ab", "c") and ("a", "bc") differ.
        h.write(&(tenant_id.len() as u32).to_le_bytes());
        h.write(tenant_id.as_bytes());
        h.write(event_id.as_bytes());
        h.finish128().as_u128()
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

    pub(super) fn snapshot(&self) -> DedupeSnapshot {
        let mut entries: Vec<(u128, i64)> = self.seen.iter().map(|(k, v)| (*k, *v)).collect();
        entries.sort_unstable();
        DedupeSnapshot {
            key: self.key,
            entries,
        }
    }

    pub(super) fn restore(snapshot: DedupeSnapshot, horizon: SignedDuration) -> Self {
        Dedupe {
            seen: snapshot.entries.into_iter().collect(),
            key: snapshot.key,
            horizon,
            last_prune: 0,
        }
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

    #[test]
    fn a_restored_index_hashes_and_remembers_the_same() {
        let mut d = Dedupe::new(SignedDuration::from_hours(1));
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let k = d.key("t", "e1");
        assert!(d.claim(k, now));
        let r = Dedupe::restore(d.snapshot(), SignedDuration::from_hours(1));
        assert_eq!(r.key("t", "e1"), k);
        let mut r = r;
        assert!(!r.claim(k, now));
    }
}
