//! Throttling of failures per key (a client's address): after `limit` failures within a
//! window, the key is refused for a while. Pure: the caller passes the moment, so tests move
//! time by hand. It must never count successes, never block a key it has not seen fail, and
//! never grow without bound, however many keys an attacker brings.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// How many failures are allowed in how long, and how long a key is refused after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Failures allowed within one window; the next one blocks the key.
    pub failures: u32,
    pub window_ms: i64,
    /// How long a blocked key is refused.
    pub block_ms: i64,
}

/// Failures of one key: when its window started and how many it holds, or until when it is
/// blocked.
#[derive(Debug, Clone, Copy)]
struct Record {
    window_start_ms: i64,
    failures: u32,
    blocked_until_ms: Option<i64>,
}

impl Record {
    /// Still worth keeping at `now_ms`: blocked, or inside its window.
    fn live(&self, limit: &Limit, now_ms: i64) -> bool {
        self.blocked_until_ms.is_some_and(|until| now_ms < until)
            || now_ms - self.window_start_ms < limit.window_ms
    }
}

/// Failure counts per key.
#[derive(Debug)]
pub struct Throttle<K> {
    limit: Limit,
    /// Most keys tracked at once; past it, the stalest record is forgotten.
    max_keys: usize,
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// A throttle tracking at most `max_keys` keys at once.
    pub fn new(limit: Limit, max_keys: usize) -> Throttle<K> {
        Throttle {
            limit,
            max_keys: max_keys.max(1),
            records: HashMap::new(),
        }
    }

    /// Milliseconds until `key` may try again, when it is blocked at `now_ms`.
    pub fn blocked(&self, key: &K, now_ms: i64) -> Option<i64> {
        let until = self.records.get(key)?.blocked_until_ms?;
        (now_ms < until).then_some(until - now_ms)
    }

    /// Counts a failure of `key` at `now_ms`; returns the milliseconds it is now blocked for,
    /// when this failure (or an earlier one) blocked it.
    pub fn fail(&mut self, key: &K, now_ms: i64) -> Option<i64> {
        if let Some(wait_ms) = self.blocked(key, now_ms) {
            return Some(wait_ms);
        }
        let limit = self.limit;
        if !self.records.contains_key(key) {
            self.make_room(now_ms);
        }
        let record = self.records.entry(key.clone()).or_insert(Record {
            window_start_ms: now_ms,
            failures: 0,
            blocked_until_ms: None,
        });
        if !record.live(&limit, now_ms) {
            *record = Record {
                window_start_ms: now_ms,
                failures: 0,
                blocked_until_ms: None,
            };
        }
        record.failures += 1;
        if record.failures > limit.failures {
            record.blocked_until_ms = Some(now_ms + limit.block_ms);
            return Some(limit.block_ms);
        }
        None
    }

    /// Keys tracked now (blocked or with failures in their window).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Before a new key is tracked at the cap: forgets records that are over, then, if still
    /// full, the one whose window started first.
    fn make_room(&mut self, now_ms: i64) {
        if self.records.len() < self.max_keys {
            return;
        }
        let limit = self.limit;
        self.records.retain(|_, record| record.live(&limit, now_ms));
        if self.records.len() < self.max_keys {
            return;
        }
        let stalest = self
            .records
            .iter()
            .min_by_key(|(_, record)| record.window_start_ms)
            .map(|(key, _)| key.clone());
        if let Some(key) = stalest {
            self.records.remove(&key);
        }
    }
}

/// The key a client's address is throttled under: an IPv4 address, or the /64 network of an
/// IPv6 address (one subscriber usually holds a whole /64, so its addresses are one client).
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(network.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        failures: 3,
        window_ms: 60_000,
        block_ms: 120_000,
    };

    /// Fails `key` at each moment of `at_ms`; returns what each failure answered.
    #[track_caller]
    fn check(
        throttle: &mut Throttle<&'static str>,
        key: &'static str,
        at_ms: &[i64],
    ) -> Vec<Option<i64>> {
        at_ms.iter().map(|&now| throttle.fail(&key, now)).collect()
    }

    #[test]
    fn a_key_is_blocked_after_the_limit_within_a_window() {
        let mut throttle = Throttle::new(LIMIT, 100);
        assert_eq!(
            check(&mut throttle, "a", &[0, 10, 20, 30]),
            vec![None, None, None, Some(120_000)]
        );
        assert_eq!(throttle.blocked(&"a", 1_030), Some(119_000));
        assert_eq!(throttle.blocked(&"b", 1_030), None, "other keys are free");
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_block() {
        let mut throttle = Throttle::new(LIMIT, 100);
        let moments: Vec<i64> = (0..100).map(|i| i * 21_000).collect();
        assert!(check(&mut throttle, "a", &moments)
            .iter()
            .all(Option::is_none));
    }

    #[test]
    fn a_block_ends_after_its_time_and_the_count_starts_again() {
        let mut throttle = Throttle::new(LIMIT, 100);
        check(&mut throttle, "a", &[0, 1, 2, 3]);
        assert_eq!(throttle.fail(&"a", 100_000), Some(20_003), "still blocked");
        assert_eq!(throttle.blocked(&"a", 123_003), None);
        assert_eq!(
            check(&mut throttle, "a", &[123_003, 123_004, 123_005, 123_006]),
            vec![None, None, None, Some(120_000)]
        );
    }

    #[test]
    fn the_throttle_forgets_finished_keys_and_the_stalest_at_its_cap() {
        let mut throttle = Throttle::new(LIMIT, 2);
        check(&mut throttle, "old", &[0, 1, 2, 3]);
        check(&mut throttle, "a", &[200_000]);
        check(&mut throttle, "b", &[200_001]);
        let mut tracked: Vec<&str> = throttle.records.keys().copied().collect();
        tracked.sort();
        assert_eq!(
            tracked,
            ["a", "b"],
            "the finished block of `old` was forgotten"
        );
        check(&mut throttle, "c", &[200_002]);
        let mut tracked: Vec<&str> = throttle.records.keys().copied().collect();
        tracked.sort();
        assert_eq!(tracked, ["b", "c"], "`a`, the stalest, made room");
    }

    #[test]
    fn ipv6_clients_are_throttled_by_their_64_bit_network() {
        let key = |text: &str| client_key(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }
}
