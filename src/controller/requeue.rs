//! When to look at an object again: always explicit, always jittered. Short with per-object
//! exponential backoff while the cloud is transitional or failing, the resync period in steady
//! state. A success resets the backoff.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

/// The backoff schedule while an object waits on the cloud or on a transient error.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (0 for the first retry): base·2^attempt, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// Spreads `d` by ±10% so that objects created together do not poll together.
pub fn jitter(d: Duration) -> Duration {
    let spread = rand::rng().random_range(0.9..=1.1);
    d.mul_f64(spread)
}

/// Per-object attempt counters, keyed by kind/namespace/name.
#[derive(Default)]
pub struct Attempts {
    counts: Mutex<HashMap<String, u32>>,
}

impl Attempts {
    /// Counts one more attempt for `key` and returns how many came before it.
    pub fn next(&self, key: &str) -> u32 {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(key.to_string()).or_insert(0);
        let before = *count;
        *count = count.saturating_add(1);
        before
    }

    /// How many attempts `key` has made since its last success.
    pub fn current(&self, key: &str) -> u32 {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.get(key).copied().unwrap_or(0)
    }

    /// A success: the next wait starts from the base again.
    pub fn reset(&self, key: &str) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        };
        let waits: Vec<u64> = (0..6).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(100));
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
    }

    #[test]
    fn attempts_count_per_object_and_reset_on_success() {
        let attempts = Attempts::default();
        assert_eq!(attempts.next("Volume/a/x"), 0);
        assert_eq!(attempts.next("Volume/a/x"), 1);
        assert_eq!(attempts.next("Volume/a/y"), 0);
        assert_eq!(attempts.current("Volume/a/x"), 2);
        attempts.reset("Volume/a/x");
        assert_eq!(attempts.next("Volume/a/x"), 0);
    }
}
