//! Waits between attempts: exponential backoff with jitter.

use std::time::Duration;

/// How often, and how patiently, something that failed is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all (at least one).
    pub attempts: u32,
    /// Wait after the first failure, before jitter.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after failure number `failure` (0 for the first): `base * 2^failure`, capped at
    /// `max`, then scaled into `[d/2, d]` by `jitter` in `[0, 1]`. Keeping half the wait keeps
    /// the growth; the random half spreads out files that failed together.
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
            for _ in 0..100 {
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
}
