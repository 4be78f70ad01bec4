//! A sliding-window rate limiter keyed by user id (chat messages).

use std::{
    collections::{HashMap, VecDeque},
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
}
