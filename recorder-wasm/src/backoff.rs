//! When to retry a failed request: exponential backoff with jitter.

/// Exponential backoff: the n-th consecutive failure waits about `base · 2ⁿ`, capped,
/// randomised between half and all of it so that many recorders coming back online after
/// the same outage do not hammer the server in lockstep.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    base_ms: f64,
    cap_ms: f64,
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `base_ms` and never waiting more than `cap_ms`.
    pub fn new(base_ms: f64, cap_ms: f64) -> Self {
        Self {
            base_ms: base_ms.max(0.0),
            cap_ms: cap_ms.max(0.0),
            failures: 0,
        }
    }

    /// The delay before the next attempt, given a uniform random number in `[0, 1)`.
    pub fn next_delay_ms(&mut self, random: f64) -> f64 {
        // 2^30 already exceeds any sane cap; clamping the exponent avoids overflow to inf.
        let exp = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let ceiling = (self.base_ms * f64::from(1u32 << exp)).min(self.cap_ms);
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        ceiling / 2.0 + random * ceiling / 2.0
    }

    /// How many failures in a row led here.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A request succeeded: the next failure starts from the base delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

impl Default for Backoff {
    /// 500 ms doubling up to 10 s.
    fn default() -> Self {
        Self::new(500.0, 10_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_between_half_and_full_ceiling() {
        let mut low = Backoff::new(500.0, 10_000.0);
        let mut high = low.clone();
        for ceiling in [500.0, 1_000.0, 2_000.0, 4_000.0, 8_000.0] {
            assert_eq!(low.next_delay_ms(0.0), ceiling / 2.0);
            assert_eq!(high.next_delay_ms(1.0), ceiling);
        }
    }

    #[test]
    fn delays_never_exceed_the_cap_even_after_many_failures() {
        let mut backoff = Backoff::default();
        for i in 0..10_000 {
            let delay = backoff.next_delay_ms(f64::from(i % 97) / 97.0);
            assert!((0.0..=10_000.0).contains(&delay), "attempt {i}: {delay}");
        }
        assert_eq!(
            backoff.next_delay_ms(0.0),
            5_000.0,
            "capped ceiling, low jitter"
        );
        assert_eq!(backoff.failures(), 10_001);
    }

    #[test]
    fn bad_random_input_still_gives_a_bounded_delay() {
        let mut backoff = Backoff::default();
        for random in [f64::NAN, f64::INFINITY, -3.0, 7.0] {
            let delay = backoff.next_delay_ms(random);
            assert!(delay.is_finite() && delay <= 10_000.0);
        }
    }

    #[test]
    fn a_success_resets_the_schedule() {
        let mut backoff = Backoff::default();
        backoff.next_delay_ms(1.0);
        backoff.next_delay_ms(1.0);
        backoff.reset();
        assert_eq!(backoff.next_delay_ms(1.0), 500.0);
    }
}
