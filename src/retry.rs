//! Retries for transient registry failures: exponential backoff with equal jitter (each delay uniform in
//! the upper half of its ceiling), bounded in attempts and in total time. Whether a failure is retried is
//! decided where it was seen and carried in the error as a [`FailureKind`](crate::error::FailureKind): only
//! `FailureKind::Transient` failures (5xx, 429, resets, refused connections, timeouts) are retried; a
//! refused credential or a missing repository fails at once.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::report::Reporter;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// No new attempt starts after this much time since the first.
    pub max_total: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            max_total: Duration::from_secs(300),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: uniform in [c/2, c) with c = min(max, base·2^attempt).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        ceiling.mul_f64(jitter())
    }
}

/// A number in [0.5, 1): half fixed, half random, so retries of concurrent runs spread out
/// without ever collapsing to zero.
fn jitter() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per process from the OS; enough randomness for spreading retries.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    0.5 + (hasher.finish() % 10_000) as f64 / 20_000.0
}

/// Run `operation` until it succeeds, fails for good, or the policy is spent.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    reporter: &Reporter,
    mut operation: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() => {
                attempt += 1;
                let delay = policy.delay(attempt - 1);
                if attempt >= policy.attempts.max(1) || started.elapsed() + delay > policy.max_total
                {
                    return Err(with_attempts(error, attempt));
                }
                reporter.warn(format!(
                    "{what}: attempt {attempt} of {} failed ({error}); retrying in {:.1} s",
                    policy.attempts,
                    delay.as_secs_f64()
                ));
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

fn with_attempts(error: Error, attempts: u32) -> Error {
    let gave_up = |detail: String| format!("{detail} (gave up after {attempts} attempts)");
    match error {
        Error::PushFailed {
            reference,
            detail,
            kind,
        } => Error::PushFailed {
            reference,
            detail: gave_up(detail),
            kind,
        },
        Error::VerifyFailed {
            reference,
            detail,
            kind,
        } => Error::VerifyFailed {
            reference,
            detail: gave_up(detail),
            kind,
        },
        Error::ExportFailed {
            target,
            detail,
            kind,
        } => Error::ExportFailed {
            target,
            detail: gave_up(detail),
            kind,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn push_failed(kind: FailureKind) -> Error {
        Error::PushFailed {
            reference: "r/a:t".into(),
            detail: "detail".into(),
            kind,
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            max_total: Duration::from_secs(5),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[test]
    fn delays_grow_and_stay_bounded() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            let d = p.delay(attempt);
            assert!(d <= p.max_delay, "{d:?}");
            assert!(d >= p.base_delay.mul_f64(0.5).min(p.max_delay.mul_f64(0.5)));
        }
        assert!(p.delay(6) > p.delay(0));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = retry(&fast(), "push", &Reporter::new(true), || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(push_failed(FailureKind::Transient))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry(&fast(), "push", &Reporter::new(true), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(push_failed(FailureKind::Permanent)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry(&fast(), "push", &Reporter::new(true), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(push_failed(FailureKind::Transient)) }
        })
        .await;
        assert!(result
            .unwrap_err()
            .to_string()
            .contains("gave up after 4 attempts"));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
