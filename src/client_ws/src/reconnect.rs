//! [`ReconnectPolicy`]: when a client that lost its connection dials again.
//! The builder takes one, the client's supervisor follows it.

use std::time::Duration;

use crate::rt;

/// Automatic reconnection: when the connection is lost, the client dials
/// again after `initial_delay`, doubling the delay after each failure up to
/// `max_delay`, each wait randomised between half and all of it (so that
/// many clients dropped at once by a restarting server do not all come back
/// in the same millisecond). If the client had authenticated, it
/// authenticates again before it reports itself connected.
///
/// Requests made while the client reconnects wait for the new connection
/// within their own timeout. Requests that were in flight when the
/// connection was lost fail with
/// [`ConnectionLost`](crate::CircleWsClientError::ConnectionLost): the client
/// cannot know whether the server ran them, so it never resends them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Wait before the first attempt.
    pub initial_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before attempt number `attempt` (0-based), before jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// A random wait between half and all of `delay` ("equal jitter").
pub(crate) fn with_jitter(delay: Duration) -> Duration {
    let full = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
    let half = full / 2;
    Duration::from_micros(rt::random_between(half, full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: None,
        };
        assert_eq!(policy.delay_before(0), Duration::from_millis(100));
        assert_eq!(policy.delay_before(1), Duration::from_millis(200));
        assert_eq!(policy.delay_before(3), Duration::from_millis(800));
        assert_eq!(policy.delay_before(4), Duration::from_secs(1));
        assert_eq!(policy.delay_before(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let delay = with_jitter(Duration::from_millis(100));
            assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100));
        }
        assert_eq!(with_jitter(Duration::ZERO), Duration::ZERO);
    }
}
