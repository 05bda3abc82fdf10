//! The in-memory store's "settled" markers: one per settled lease, kept for
//! the store's settled-marker TTL so that a second settle of the lease
//! adjusts nothing.
//!
//! A busy gateway settles thousands of leases a second, so the markers are
//! most of what this store holds: each is a 128-bit keyed hash of its key
//! (a collision between two live markers is as likely as guessing a random
//! UUID), and they expire from a queue in the order they were written (one
//! TTL for all), never by sweeping the whole set under the store's lock.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher as _;

/// Below this many slots, emptied tables keep their room.
const MIN_SHRINK_CAPACITY: usize = 4096;

pub(super) struct SettledMarkers {
    ttl_us: u64,
    /// Two independent keys: the halves of a marker's 128-bit id.
    keys: (RandomState, RandomState),
    /// Marker id → expiry (µs).
    expiry: HashMap<u128, u64>,
    /// (expiry, id) in the order written, hence (one TTL) of expiry.
    queue: VecDeque<(u64, u128)>,
}

impl SettledMarkers {
    pub(super) fn new(ttl_us: u64) -> Self {
        SettledMarkers {
            ttl_us,
            keys: (RandomState::new(), RandomState::new()),
            expiry: HashMap::new(),
            queue: VecDeque::new(),
        }
    }

    /// Marks `marker` settled at `now`: true if it was not (this is the
    /// lease's first settle within the TTL).
    pub(super) fn mark(&mut self, marker: &str, now: u64) -> bool {
        self.expire(now);
        let id = u128::from(self.keys.0.hash_one(marker)) << 64
            | u128::from(self.keys.1.hash_one(marker));
        let expiry = now.saturating_add(self.ttl_us);
        match self.expiry.entry(id) {
            Entry::Occupied(entry) if *entry.get() > now => return false,
            Entry::Occupied(mut entry) => {
                entry.insert(expiry);
            }
            Entry::Vacant(entry) => {
                entry.insert(expiry);
            }
        }
        self.queue.push_back((expiry, id));
        true
    }

    /// Drops the markers expired at `now`. A clock that went back only
    /// keeps markers longer: the queue's front decides.
    fn expire(&mut self, now: u64) {
        while let Some(&(expiry, id)) = self.queue.front() {
            if expiry > now {
                break;
            }
            self.queue.pop_front();
            // Rewritten since (expired, then settled again): still live.
            if self.expiry.get(&id) == Some(&expiry) {
                self.expiry.remove(&id);
            }
        }
        // A burst's room is handed back once it has passed.
        if self.expiry.capacity() > MIN_SHRINK_CAPACITY
            && self.expiry.len() < self.expiry.capacity() / 4
        {
            self.expiry.shrink_to(self.expiry.len() * 2);
            self.queue.shrink_to(self.queue.len() * 2);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.expiry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_lives_for_its_ttl_then_can_be_written_again() {
        let mut markers = SettledMarkers::new(1_000);
        assert!(markers.mark("t:settled:a", 0));
        assert!(!markers.mark("t:settled:a", 999));
        assert!(markers.mark("t:settled:b", 500));
        // `a` expires at 1 000, `b` at 1 500.
        assert!(markers.mark("t:settled:a", 1_000));
        assert!(!markers.mark("t:settled:b", 1_200));
        assert_eq!(markers.len(), 2);
        // `b`'s expiry passes; `a`'s first queue entry (1 000) was
        // superseded by its rewrite (2 000), which still holds.
        assert!(!markers.mark("t:settled:a", 1_600));
        assert_eq!(markers.len(), 1);
    }

    #[test]
    fn expired_markers_are_dropped_and_their_room_returned() {
        let mut markers = SettledMarkers::new(10);
        for n in 0..100_000u64 {
            assert!(markers.mark(&format!("t:settled:{n}"), 0));
        }
        assert_eq!(markers.len(), 100_000);
        assert!(markers.mark("t:settled:last", 10));
        assert_eq!(markers.len(), 1);
        assert!(markers.expiry.capacity() < 100_000);
    }
}
