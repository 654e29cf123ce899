//! Clock conversion. Deadlines cross machines as Unix milliseconds (wall-clock time, which
//! servers and workers share through NTP); each process keeps them as monotonic
//! [`Instant`]s, which wall-clock steps do not move.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch now.
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Both clocks read once: this process's monotonic now and Unix milliseconds now, for
/// [`unix_ms_at`].
pub(crate) fn clocks_now() -> (Instant, u64) {
    (Instant::now(), unix_now_ms())
}

/// `deadline` (a monotonic instant of this process) as Unix milliseconds, for another
/// machine to read, by `clocks` ([`clocks_now`]; read once for a batch of deadlines).
pub(crate) fn unix_ms_at(deadline: Instant, clocks: (Instant, u64)) -> u64 {
    let (now, unix_now_ms) = clocks;
    let remaining = deadline.saturating_duration_since(now);
    let remaining_ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
    unix_now_ms.saturating_add(remaining_ms)
}

/// The instant of this process at Unix milliseconds `unix_ms` (now, if that has passed),
/// by `clocks` ([`clocks_now`]; read once for a batch of deadlines).
pub(crate) fn instant_at(unix_ms: u64, clocks: (Instant, u64)) -> Instant {
    let (now, unix_now_ms) = clocks;
    let remaining = Duration::from_millis(unix_ms.saturating_sub(unix_now_ms));
    now.checked_add(remaining)
        // Only a deadline centuries away overflows; a day is as good as forever here.
        .unwrap_or_else(|| now + Duration::from_secs(24 * 60 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_cross_as_wall_clock_time() {
        let in_two_seconds = Instant::now() + Duration::from_secs(2);
        let unix = unix_ms_at(in_two_seconds, clocks_now());
        let now = unix_now_ms();
        assert!(
            (now + 1_900..=now + 2_100).contains(&unix),
            "{unix} vs {now}"
        );
        let back = instant_at(unix, clocks_now());
        let diff = back
            .saturating_duration_since(in_two_seconds)
            .max(in_two_seconds.saturating_duration_since(back));
        assert!(diff < Duration::from_millis(50), "{diff:?}");
        assert!(instant_at(0, clocks_now()) <= Instant::now());
    }
}
