//! Retry delays: exponential backoff with jitter.

use std::time::Duration;

/// How often and how patiently a failed request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt (so `retries + 1` attempts in all).
    pub retries: u32,
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before the first retry of a part.
    pub const BASE: Duration = Duration::from_millis(200);
    /// Longest delay between two attempts.
    pub const MAX: Duration = Duration::from_secs(5);

    /// The default delays with `retries` retries.
    pub fn with_retries(retries: u32) -> Self {
        Self {
            retries,
            base: Self::BASE,
            max: Self::MAX,
        }
    }

    /// The delay before retry number `retry` (0 for the first retry): `base * 2^retry`, capped
    /// at `max`, then scaled into `[d/2, d]` by `jitter` in `[0, 1]`. Half the delay is kept so
    /// the backoff still grows; the random half spreads out parts that failed together.
    pub fn delay_with(&self, retry: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let full = self.base.saturating_mul(factor).min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        full / 2 + full.mul_f64(jitter) / 2
    }

    /// [`Self::delay_with`] with random jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy {
            retries: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let full: Vec<u128> = (0..6)
            .map(|r| policy.delay_with(r, 1.0).as_millis())
            .collect();
        assert_eq!(full, [100, 200, 400, 800, 1000, 1000]);
        let least: Vec<u128> = (0..6)
            .map(|r| policy.delay_with(r, 0.0).as_millis())
            .collect();
        assert_eq!(least, [50, 100, 200, 400, 500, 500]);
        assert_eq!(policy.delay_with(u32::MAX, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn random_delays_stay_in_their_band() {
        let policy = RetryPolicy::with_retries(3);
        for retry in 0..4 {
            let full = policy.delay_with(retry, 1.0);
            for _ in 0..200 {
                let d = policy.delay(retry);
                assert!(
                    d >= full / 2 && d <= full,
                    "{d:?} outside [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
    }
}
