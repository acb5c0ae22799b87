//! Refused logins are remembered per set of credentials, so that a wrong
//! password in one Secret costs the identity service one request per
//! backoff step, however many objects and clients use it.
//!
//! A refusal (a login answered 401 or 403, or an SCP signature answered
//! 401) starts a backoff for those credentials: `base`, then doubling, up to
//! `max` (5 s and 10 min by default, [`LoginBackoff`]). Until it ends, every
//! login with the same credentials fails at once, without a request, with
//! the last refusal's message and the remaining wait as `retry_after`. When
//! it ends, one caller tries again (a probe) while the others keep failing
//! fast; a success forgets the refusals. Credentials are told apart by a
//! hash of their whole content, so corrected credentials try at once. The
//! hash is kept only in memory and never logged; the secret itself is
//! never kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::cloud::credentials::CloudCredentials;
use crate::cloud::error::CloudError;

/// How long refused credentials wait before they are tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginBackoff {
    /// Wait after the first refusal; doubles with each further refusal.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for LoginBackoff {
    fn default() -> Self {
        LoginBackoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(10 * 60),
        }
    }
}

impl LoginBackoff {
    /// The wait after `refusals` refusals in a row (1 for the first).
    pub fn wait(&self, refusals: u32) -> Duration {
        let doublings = refusals.saturating_sub(1).min(31);
        self.base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max)
    }
}

/// Where the login backoff reads the time; replaceable so that tests can
/// move time by hand.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Identifies one set of credentials by a hash of their content (who, where,
/// and a fingerprint of the secret). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct CredentialsKey([u8; 32]);

impl CredentialsKey {
    pub(crate) fn of(creds: &CloudCredentials) -> Self {
        CredentialsKey(Sha256::digest(creds.token_cache_key().as_bytes()).into())
    }
}

impl std::fmt::Debug for CredentialsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialsKey(..)")
    }
}

struct Refusal {
    /// Refusals in a row.
    count: u32,
    /// No attempt before this.
    until: Instant,
    /// The identity service's words, for the errors of fast failures.
    message: String,
    /// One caller is trying again after the wait.
    probing: bool,
}

/// The remembered refusals of every set of credentials (one per process).
pub(crate) struct LoginGate {
    backoff: LoginBackoff,
    clock: Clock,
    refusals: Mutex<HashMap<CredentialsKey, Refusal>>,
}

impl LoginGate {
    pub(crate) fn new(backoff: LoginBackoff, clock: Clock) -> Self {
        LoginGate {
            backoff,
            clock,
            refusals: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn system(backoff: LoginBackoff) -> Self {
        Self::new(backoff, Arc::new(Instant::now))
    }

    pub(crate) fn backoff(&self) -> &LoginBackoff {
        &self.backoff
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CredentialsKey, Refusal>> {
        self.refusals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a login with these credentials go out now? `Err` is the
    /// remembered refusal, with the remaining wait as `retry_after`.
    pub(crate) fn admit(
        self: &Arc<Self>,
        key: &CredentialsKey,
    ) -> Result<LoginAttempt, CloudError> {
        let now = (self.clock)();
        let mut refusals = self.lock();
        let seen = match refusals.get_mut(key) {
            None => 0,
            Some(r) if now < r.until => {
                return Err(fast_failure(r, r.until.saturating_duration_since(now)));
            }
            // Another caller is already trying again: its answer decides.
            Some(r) if r.probing => return Err(fast_failure(r, self.backoff.base)),
            Some(r) => {
                r.probing = true;
                r.count
            }
        };
        Ok(LoginAttempt {
            gate: self.clone(),
            key: key.clone(),
            seen,
            settled: false,
        })
    }
}

fn fast_failure(r: &Refusal, remaining: Duration) -> CloudError {
    CloudError::InvalidCredentials {
        message: format!(
            "{} (refused {} time(s) in a row; cloudvol tries these credentials again in {}s, and changed credentials at once)",
            r.message,
            r.count,
            remaining.as_secs_f64().ceil()
        ),
        retry_after: Some(remaining),
    }
}

/// One admitted login. Settle it with [`LoginAttempt::refused`] or
/// [`LoginAttempt::accepted`]; dropped unsettled (an outage, a timeout, a
/// cancelled call), it decides nothing and lets the next caller try.
pub(crate) struct LoginAttempt {
    gate: Arc<LoginGate>,
    key: CredentialsKey,
    /// Refusals remembered when this attempt was admitted.
    seen: u32,
    settled: bool,
}

impl LoginAttempt {
    /// The identity service refused the credentials: start (or lengthen)
    /// their backoff. Returns `err` with the wait as `retry_after`.
    pub(crate) fn refused(mut self, err: CloudError) -> CloudError {
        self.settled = true;
        let now = (self.gate.clock)();
        let mut refusals = self.gate.lock();
        let entry = refusals.entry(self.key.clone()).or_insert(Refusal {
            count: 0,
            until: now,
            message: String::new(),
            probing: false,
        });
        // Concurrent attempts refused in the same step count once.
        if entry.count == self.seen {
            entry.count = entry.count.saturating_add(1);
            let wait = self.gate.backoff.wait(entry.count);
            entry.until = now.checked_add(wait).unwrap_or(now);
            entry.message = err.message().to_string();
            tracing::info!(
                refusals = entry.count,
                wait_s = wait.as_secs_f64(),
                "the identity service refused the credentials; waiting before trying them again"
            );
        }
        entry.probing = false;
        let remaining = entry.until.saturating_duration_since(now);
        err.or_retry_after(Some(remaining))
    }

    /// The credentials worked: forget their refusals.
    pub(crate) fn accepted(mut self) {
        self.settled = true;
        self.gate.lock().remove(&self.key);
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if !self.settled
            && let Some(r) = self.gate.lock().get_mut(&self.key)
        {
            r.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock moved by hand, in milliseconds.
    fn manual_clock() -> (Clock, Arc<AtomicU64>) {
        let start = Instant::now();
        let offset = Arc::new(AtomicU64::new(0));
        let at = offset.clone();
        let clock: Clock =
            Arc::new(move || start + Duration::from_millis(at.load(Ordering::SeqCst)));
        (clock, offset)
    }

    fn gate() -> (Arc<LoginGate>, Arc<AtomicU64>) {
        let (clock, offset) = manual_clock();
        (
            Arc::new(LoginGate::new(LoginBackoff::default(), clock)),
            offset,
        )
    }

    fn key(n: u8) -> CredentialsKey {
        CredentialsKey([n; 32])
    }

    fn refusal() -> CloudError {
        CloudError::InvalidCredentials {
            message: "the identity service answered 401: no".into(),
            retry_after: None,
        }
    }

    #[test]
    fn the_wait_doubles_from_five_seconds_to_ten_minutes() {
        let b = LoginBackoff::default();
        let secs: Vec<u64> = (1..=10).map(|n| b.wait(n).as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(b.wait(u32::MAX), Duration::from_secs(600));
        assert_eq!(b.wait(0), Duration::from_secs(5));
    }

    #[test]
    fn refused_credentials_fail_fast_until_the_wait_ends() {
        let (gate, clock) = gate();
        let err = gate.admit(&key(1)).unwrap().refused(refusal());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
        assert_eq!(err.reason(), "InvalidCredentials");

        clock.store(2_000, Ordering::SeqCst);
        let fast = gate.admit(&key(1)).err().expect("fails fast");
        assert_eq!(fast.retry_after(), Some(Duration::from_secs(3)));
        assert!(fast.message().contains("answered 401: no"), "{fast}");
        assert!(fast.message().contains("1 time(s)"), "{fast}");
        // Other credentials are not held back.
        gate.admit(&key(2)).unwrap().accepted();

        // After the wait, one probe; refused again, the wait doubles.
        clock.store(5_000, Ordering::SeqCst);
        let probe = gate.admit(&key(1)).unwrap();
        let meanwhile = gate.admit(&key(1)).err().expect("one probe at a time");
        assert!(meanwhile.retry_after().is_some());
        let err = probe.refused(refusal());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
        clock.store(14_999, Ordering::SeqCst);
        assert!(gate.admit(&key(1)).is_err());

        // Then a success forgets everything.
        clock.store(15_000, Ordering::SeqCst);
        gate.admit(&key(1)).unwrap().accepted();
        let err = gate.admit(&key(1)).unwrap().refused(refusal());
        assert_eq!(
            err.retry_after(),
            Some(Duration::from_secs(5)),
            "step 1 again"
        );
    }

    #[test]
    fn an_inconclusive_probe_lets_the_next_caller_try() {
        let (gate, clock) = gate();
        gate.admit(&key(1)).unwrap().refused(refusal());
        clock.store(5_000, Ordering::SeqCst);
        drop(gate.admit(&key(1)).unwrap()); // an outage, a cancelled call
        let err = gate.admit(&key(1)).unwrap().refused(refusal());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn concurrent_refusals_in_one_step_count_once() {
        let (gate, _) = gate();
        // SCP signs every request: many may be in flight when the first 401 comes.
        let attempts: Vec<_> = (0..50).map(|_| gate.admit(&key(1)).unwrap()).collect();
        for a in attempts {
            let err = a.refused(refusal());
            assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
        }
    }

    #[test]
    fn the_key_hides_the_secret() {
        let yaml = "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: hunter2-secret\n      project_id: p\n";
        let a = CloudCredentials::from_clouds_yaml(yaml.as_bytes(), "c", None).unwrap();
        let b = CloudCredentials::from_clouds_yaml(
            yaml.replace("hunter2-secret", "other").as_bytes(),
            "c",
            None,
        )
        .unwrap();
        assert_ne!(CredentialsKey::of(&a), CredentialsKey::of(&b));
        assert_eq!(CredentialsKey::of(&a), CredentialsKey::of(&a.clone()));
        assert_eq!(
            format!("{:?}", CredentialsKey::of(&a)),
            "CredentialsKey(..)"
        );
    }
}
