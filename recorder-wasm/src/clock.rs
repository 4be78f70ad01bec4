//! The recording's duration, measured from MediaRecorder's own events.
//!
//! Timestamps are fed in explicitly (milliseconds on one monotonic clock, e.g. `Event.timeStamp`
//! or `performance.now()`), so the accounting is testable without a browser.

/// Accumulates recorded time, excluding paused spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationClock {
    started_at: Option<f64>,
    paused_at: Option<f64>,
    stopped_at: Option<f64>,
    paused_total: f64,
}

impl DurationClock {
    /// A clock that has not started.
    pub fn new() -> Self {
        Self::default()
    }

    /// MediaRecorder fired `start`. A second start is ignored.
    pub fn start(&mut self, at: f64) {
        if self.started_at.is_none() {
            self.started_at = Some(at);
        }
    }

    /// MediaRecorder fired `pause`. Ignored unless running.
    pub fn pause(&mut self, at: f64) {
        if self.is_running() {
            self.paused_at = Some(at);
        }
    }

    /// MediaRecorder fired `resume`. Ignored unless paused.
    pub fn resume(&mut self, at: f64) {
        if self.stopped_at.is_none() {
            if let Some(paused_at) = self.paused_at.take() {
                self.paused_total += (at - paused_at).max(0.0);
            }
        }
    }

    /// MediaRecorder fired `stop`. A stop while paused ends the pause there.
    pub fn stop(&mut self, at: f64) {
        if self.started_at.is_none() || self.stopped_at.is_some() {
            return;
        }
        self.resume(at);
        self.stopped_at = Some(at);
    }

    /// True once `start` has been seen.
    pub fn has_started(&self) -> bool {
        self.started_at.is_some()
    }

    /// True between start and stop, outside pauses.
    pub fn is_running(&self) -> bool {
        self.started_at.is_some() && self.paused_at.is_none() && self.stopped_at.is_none()
    }

    /// Recorded milliseconds as of `now` (frozen while paused and after stop).
    pub fn elapsed_ms(&self, now: f64) -> f64 {
        let Some(started_at) = self.started_at else {
            return 0.0;
        };
        let end = self.stopped_at.or(self.paused_at).unwrap_or(now);
        (end - started_at - self.paused_total).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unstarted_clock_reads_zero() {
        assert_eq!(DurationClock::new().elapsed_ms(5_000.0), 0.0);
    }

    #[test]
    fn a_running_clock_follows_now() {
        let mut clock = DurationClock::new();
        assert!(!clock.has_started());
        clock.start(1_000.0);
        assert!(clock.has_started() && clock.is_running());
        assert_eq!(clock.elapsed_ms(3_500.0), 2_500.0);
    }

    #[test]
    fn paused_time_is_excluded() {
        let mut clock = DurationClock::new();
        clock.start(0.0);
        clock.pause(1_000.0);
        assert_eq!(clock.elapsed_ms(1_800.0), 1_000.0, "frozen while paused");
        clock.resume(2_000.0);
        clock.pause(2_500.0);
        clock.resume(4_500.0);
        clock.stop(5_000.0);
        assert_eq!(clock.elapsed_ms(99_000.0), 2_000.0);
    }

    #[test]
    fn a_stop_while_paused_ends_the_pause() {
        let mut clock = DurationClock::new();
        clock.start(0.0);
        clock.pause(1_000.0);
        clock.stop(3_000.0);
        assert_eq!(clock.elapsed_ms(10_000.0), 1_000.0);
    }

    #[test]
    fn repeated_or_out_of_order_events_are_ignored() {
        let mut clock = DurationClock::new();
        clock.resume(10.0);
        clock.pause(20.0);
        clock.stop(30.0);
        assert_eq!(clock.elapsed_ms(40.0), 0.0, "nothing counts before start");
        clock.start(100.0);
        clock.start(500.0);
        clock.pause(200.0);
        clock.pause(300.0);
        clock.resume(400.0);
        clock.resume(450.0);
        clock.stop(600.0);
        clock.stop(900.0);
        assert_eq!(clock.elapsed_ms(1_000.0), 300.0);
    }
}
