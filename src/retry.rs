//! The one retry loop: transient errors are retried with capped exponential backoff and jitter,
//! forever, until they succeed or the task is cancelled; permanent errors return at once.
//!
//! A streak of failures is logged once when it starts (warn) and once when it ends (info), not
//! at every attempt, so an outage of the secondary does not flood the log.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// An error that knows whether retrying can help.
pub trait Transient: std::fmt::Display {
    fn is_transient(&self) -> bool;
}

/// Why [`retry`] gave up.
#[derive(Debug)]
pub enum Gave<E> {
    /// A permanent error.
    Up(E),
    /// The cancellation token fired; no result.
    Cancelled,
}

/// First delay of a streak.
const MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// The backoff policy of every retry loop.
pub fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
}

/// Runs `op` until it succeeds, fails permanently, or `cancel` fires. `what` names the operation
/// in logs (e.g. `"append"`); `on_retry` is called for each transient failure (for metrics).
///
/// # Cancel safety
/// Cancel-safe between attempts; an attempt in flight when `cancel` fires is dropped, so `op`
/// must be idempotent (every write of the replicator is).
pub async fn retry<T, E, F, Fut>(
    what: &str,
    cancel: &CancellationToken,
    mut on_retry: impl FnMut(&E),
    mut op: F,
) -> Result<T, Gave<E>>
where
    E: Transient,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = policy().build();
    let mut failures: u32 = 0;
    loop {
        let attempt = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Gave::Cancelled),
            r = op() => r,
        };
        match attempt {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!(operation = what, failures, "recovered");
                }
                return Ok(v);
            }
            Err(e) if e.is_transient() => {
                on_retry(&e);
                failures += 1;
                if failures == 1 {
                    tracing::warn!(operation = what, error = %e, "transient failure; retrying with backoff until it succeeds");
                } else {
                    tracing::debug!(operation = what, failures, error = %e, "still failing");
                }
                let delay = delays.next().unwrap_or(MAX_DELAY);
                tokio::select! {
                    _ = cancel.cancelled() => return Err(Gave::Cancelled),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(Gave::Up(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(bool);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transient={}", self.0)
        }
    }
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success_with_growing_capped_delays() {
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let mut retried = 0;
        let got = retry(
            "op",
            &CancellationToken::new(),
            |_| retried += 1,
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 20 {
                        Err(E(true))
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert!(matches!(got, Ok(20)));
        assert_eq!(retried, 20);
        let waited = start.elapsed();
        // 20 delays, each at most MAX_DELAY (jitter adds up to one more delay's worth).
        assert!(waited >= MIN_DELAY * 20, "{waited:?}");
        assert!(waited <= MAX_DELAY * 2 * 20, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_return_at_once() {
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry(
            "op",
            &CancellationToken::new(),
            |_| {},
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(E(false)) }
            },
        )
        .await;
        assert!(matches!(got, Err(Gave::Up(E(false)))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_a_retry_streak() {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry(
            "op",
            &cancel,
            |_| {},
            || {
                if calls.fetch_add(1, Ordering::SeqCst) == 3 {
                    c2.cancel();
                }
                async { Err(E(true)) }
            },
        )
        .await;
        assert!(matches!(got, Err(Gave::Cancelled)));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
