//! Sliding-window rate limiters: chat messages per user id, failed logins per name and per IP.
//!
//! Both live in memory: a restart forgets them, and several server processes would each
//! count on their own (Livekeep runs as one process on one SQLite file).

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// At most `max` events per `window` for each key.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window: Duration,
    recent: Mutex<HashMap<i64, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Above this many keys, keys without a recent event are forgotten.
    const PRUNE_ABOVE: usize = 4096;

    /// A limiter allowing `max` events per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an event for `key` if allowed; otherwise how long until the next one is.
    pub fn check(&self, key: i64) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: i64, now: Instant) -> Result<(), Duration> {
        // A poisoned map only means a thread panicked mid-update; the map is still valid.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() > Self::PRUNE_ABOVE {
            let window = self.window;
            recent.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
        }
        let times = recent.entry(key).or_default();
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
        if times.len() >= self.max {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now - oldest));
        }
        times.push_back(now);
        Ok(())
    }
}

/// Failed events per key in a sliding window; a key with `max` recent failures is blocked.
#[derive(Debug)]
struct Failures<K> {
    max: usize,
    window: Duration,
    recent: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Hash + Eq> Failures<K> {
    /// Above this many keys, keys without a recent failure are forgotten.
    const PRUNE_ABOVE: usize = 4096;

    fn new(max: usize, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` must still wait, if it is blocked.
    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let times = recent.get_mut(key)?;
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
        if times.len() < self.max {
            return None;
        }
        let oldest = times.front().copied().unwrap_or(now);
        Some(self.window.saturating_sub(now - oldest))
    }

    fn fail(&self, key: K, now: Instant) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() > Self::PRUNE_ABOVE {
            let window = self.window;
            recent.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
        }
        let times = recent.entry(key).or_default();
        times.push_back(now);
        // Only the last `max` failures matter to `blocked`.
        while times.len() > self.max {
            times.pop_front();
        }
    }

    fn reset(&self, key: &K) {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Failed logins per username (case-folded) and per client IP: at the limit of failures in
/// the window, further attempts are refused without checking the password.
#[derive(Debug)]
pub struct LoginLimiter {
    users: Failures<String>,
    ips: Failures<IpAddr>,
}

impl LoginLimiter {
    /// A limiter refusing a name after `per_user` failures within `window`, and an IP after
    /// `per_ip` (more: one address may be a household or an office behind NAT).
    pub fn new(per_user: usize, per_ip: usize, window: Duration) -> Self {
        Self {
            users: Failures::new(per_user, window),
            ips: Failures::new(per_ip, window),
        }
    }

    /// How long this attempt must wait, if the name or the IP is blocked.
    pub fn blocked(&self, username: &str, ip: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let user = self.users.blocked(&username.to_lowercase(), now);
        let ip = ip.and_then(|ip| self.ips.blocked(&ip, now));
        user.max(ip)
    }

    /// Counts a failed attempt against the name and the IP.
    pub fn fail(&self, username: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        self.users.fail(username.to_lowercase(), now);
        if let Some(ip) = ip {
            self.ips.fail(ip, now);
        }
    }

    /// Forgets the name's failures after a successful login (the IP's stay counted, so one
    /// known account cannot be used to reset an IP guessing others).
    pub fn succeed(&self, username: &str) {
        self.users.reset(&username.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_event_in_the_window_waits_until_the_first_leaves_it() {
        let limiter = RateLimiter::new(5, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(limiter.check_at(1, t0 + Duration::from_secs(i)).is_ok());
        }
        let wait = limiter
            .check_at(1, t0 + Duration::from_secs(6))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(4));
        assert!(
            limiter.check_at(2, t0 + Duration::from_secs(6)).is_ok(),
            "per key"
        );
        assert!(limiter.check_at(1, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn a_name_is_blocked_after_max_failures_until_the_first_leaves_the_window() {
        let failures = Failures::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(failures.blocked(&"ann", t0 + Duration::from_secs(i)), None);
            failures.fail("ann", t0 + Duration::from_secs(i));
        }
        assert_eq!(
            failures.blocked(&"ann", t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(failures.blocked(&"bob", t0 + Duration::from_secs(10)), None);
        assert_eq!(failures.blocked(&"ann", t0 + Duration::from_secs(60)), None);
        failures.reset(&"ann");
        assert_eq!(failures.blocked(&"ann", t0 + Duration::from_secs(10)), None);
    }
}
