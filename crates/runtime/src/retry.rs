//! Waits between attempts: exponential backoff with jitter, the one retry policy of every
//! daemon.
//!
//! "Attempts" always means attempts in all, the first one included: `attempts: 4` is one try
//! and up to three retries. Configuration keys that count retries (the downloader's
//! `s3ChunkRetries`) are translated where the daemon reads its settings.

use std::time::Duration;

/// How often, and how patiently, something that failed is tried again.
///
/// ```
/// # use std::time::Duration;
/// let backoff = singularity_runtime::Backoff {
///     attempts: 3,
///     base: Duration::from_millis(100),
///     max: Duration::from_secs(1),
/// };
/// assert!(!backoff.gives_up_after(2));
/// assert!(backoff.gives_up_after(3));
/// assert_eq!(backoff.delay_with(0, 1.0), Duration::from_millis(100));
/// assert_eq!(backoff.delay_with(1, 1.0), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first one included (0 counts as 1).
    pub attempts: u32,
    /// Wait after the first failure, before jitter.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Backoff {
    /// `retries` retries after the first attempt, i.e. `retries + 1` attempts: for keys that
    /// count retries.
    pub fn with_retries(retries: u32, base: Duration, max: Duration) -> Self {
        Self {
            attempts: retries.saturating_add(1),
            base,
            max,
        }
    }

    /// Whether, after `failures` failed attempts, there is no attempt left.
    pub fn gives_up_after(&self, failures: u32) -> bool {
        failures >= self.attempts.max(1)
    }

    /// The wait after failure number `failure` (0 for the first): `base * 2^failure`, capped at
    /// `max`, then scaled into `[d/2, d]` by `jitter` in `[0, 1]`. Keeping half the wait keeps
    /// the growth; the random half spreads out work that failed together.
    pub fn delay_with(&self, failure: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(failure.min(31));
        let full = self.base.saturating_mul(factor).min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        full / 2 + full.mul_f64(jitter) / 2
    }

    /// [`Self::delay_with`] with random jitter.
    pub fn delay(&self, failure: u32) -> Duration {
        self.delay_with(failure, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let backoff = Backoff {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let full: Vec<u128> = (0..6)
            .map(|n| backoff.delay_with(n, 1.0).as_millis())
            .collect();
        assert_eq!(full, [100, 200, 400, 800, 1000, 1000]);
        let least: Vec<u128> = (0..6)
            .map(|n| backoff.delay_with(n, 0.0).as_millis())
            .collect();
        assert_eq!(least, [50, 100, 200, 400, 500, 500]);
        assert_eq!(backoff.delay_with(u32::MAX, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay_with(3, 7.0), Duration::from_millis(800));
    }

    #[test]
    fn random_waits_stay_in_their_band() {
        let backoff = Backoff {
            attempts: 3,
            base: Duration::from_millis(40),
            max: Duration::from_secs(2),
        };
        for failure in 0..5 {
            let full = backoff.delay_with(failure, 1.0);
            for _ in 0..200 {
                let d = backoff.delay(failure);
                assert!(
                    d >= full / 2 && d <= full,
                    "{d:?} outside [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn a_zero_base_never_waits() {
        let backoff = Backoff {
            attempts: 2,
            base: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(backoff.delay(5), Duration::ZERO);
    }

    #[test]
    fn attempts_count_the_first_try() {
        let three = Backoff {
            attempts: 3,
            base: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert!(!three.gives_up_after(0));
        assert!(!three.gives_up_after(2));
        assert!(three.gives_up_after(3));
        let zero = Backoff {
            attempts: 0,
            ..three
        };
        assert!(zero.gives_up_after(1), "0 attempts still makes one");
        assert!(!zero.gives_up_after(0));
        let retries = Backoff::with_retries(3, Duration::ZERO, Duration::ZERO);
        assert_eq!(retries.attempts, 4);
        assert_eq!(
            Backoff::with_retries(u32::MAX, Duration::ZERO, Duration::ZERO).attempts,
            u32::MAX
        );
    }
}
