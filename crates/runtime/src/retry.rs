//! The one retry policy for passing trouble (the log or Redis briefly unreachable):
//! exponential backoff with jitter, from `backon`.
//!
//! The first wait is 100-200 ms; each failure doubles it, up to 2.5-5 s; progress starts
//! it over ([`Backoff::reset`]). The jitter, a random extra of up to the delay itself,
//! keeps instances that failed together (a Redis restart) from retrying in step.
//!
//! Loops that run until stopped and reset after progress hold a [`Backoff`]; a one-off
//! operation retried until a budget runs out uses [`policy`] with backon's `Retryable`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The first delay before jitter.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay before jitter: with it, no wait is longer than twice this.
pub const MAX_DELAY: Duration = Duration::from_millis(2_500);

/// The policy: [`FIRST_DELAY`], doubling, capped at [`MAX_DELAY`], with jitter, never
/// giving up by itself (bound it with `with_total_delay` or `with_max_times`).
pub const fn policy() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// The delays of a loop that retries until it is stopped.
#[derive(Debug)]
pub struct Backoff {
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self {
            delays: policy().build(),
        }
    }

    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // The policy never runs out; should it, the longest wait.
        self.delays.next().unwrap_or(MAX_DELAY * 2)
    }

    /// Progress was made: the next wait is a first one again.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_with_jitter_up_to_the_cap_and_start_over_after_a_reset() {
        for _ in 0..50 {
            let mut b = Backoff::new();
            let mut base = FIRST_DELAY;
            for _ in 0..12 {
                let d = b.next_delay();
                assert!(base <= d && d < base * 2, "{d:?} for a base of {base:?}");
                base = (base * 2).min(MAX_DELAY);
            }
            let d = b.next_delay();
            assert!(ms(2_500) <= d && d < ms(5_000), "capped: {d:?}");
            b.reset();
            let d = b.next_delay();
            assert!(ms(100) <= d && d < ms(200), "after a reset: {d:?}");
        }
    }

    #[test]
    fn the_jitter_spreads_the_waits() {
        let firsts: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| Backoff::new().next_delay()).collect();
        assert!(
            firsts.len() > 1,
            "twenty instances waited alike: {firsts:?}"
        );
    }

    #[tokio::test]
    async fn the_policy_retries_an_operation_until_it_succeeds() {
        use backon::Retryable;
        let mut attempts = 0;
        let answer = (|| {
            attempts += 1;
            let n = attempts;
            async move { if n < 3 { Err("not yet") } else { Ok(n) } }
        })
        .retry(policy().with_total_delay(Some(Duration::from_secs(5))))
        .await;
        assert_eq!(answer, Ok(3));
    }
}
