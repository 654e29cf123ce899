//! The few things the client needs from an async runtime — spawning a task,
//! sleeping, a random number for jitter — for tokio (native) and for the
//! browser's event loop (wasm32).
//!
//! Everything else (the connection core, request matching, timeouts, the
//! reconnect supervisor) is written once on top of these, so the native and
//! the browser client cannot drift apart. Timeouts in particular are built
//! here from [`sleep`] rather than taken from tokio, because tokio's timer
//! needs its runtime, which does not exist in a browser.

use std::future::Future;
use std::time::Duration;

use futures_util::future::{Either, select};
use web_time::Instant;

/// `Send` natively, where the client's tasks may move between tokio's
/// threads; nothing in a browser, where everything runs on the page's one
/// thread and JavaScript handles (a WebSocket, a wallet) are not `Send`.
/// Implemented for every type that qualifies; a [`Signer`](crate::Signer)
/// needs it.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send` natively, where the client's tasks may move between tokio's
/// threads; nothing in a browser, where everything runs on the page's one
/// thread and JavaScript handles (a WebSocket, a wallet) are not `Send`.
/// Implemented for every type that qualifies; a [`Signer`](crate::Signer)
/// needs it.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` natively, where one client is shared between threads; nothing in
/// a browser (see [`MaybeSend`]).
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}

/// `Sync` natively, where one client is shared between threads; nothing in
/// a browser (see [`MaybeSend`]).
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// Runs `task` in the background: on the tokio runtime, or on the page's
/// event loop.
pub(crate) fn spawn<F>(task: F)
where
    F: Future<Output = ()> + MaybeSend + 'static,
{
    #[cfg(not(target_arch = "wasm32"))]
    drop(tokio::spawn(task));
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_futures::spawn_local(task);
}

/// Waits for `duration`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Waits for `duration`.
///
/// Browsers fire a `setTimeout` longer than 2^31 - 1 ms (about 24.8 days)
/// *at once* (the delay overflows a signed 32-bit integer), and gloo-timers
/// refuses delays that do not fit a `u32`; so long waits are cut into pieces
/// that each fit, until the full duration has passed.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn sleep(duration: Duration) {
    const LONGEST_TIMER: Duration = Duration::from_millis(i32::MAX as u64);
    let deadline = Instant::now().checked_add(duration);
    let mut remaining = duration;
    while !remaining.is_zero() {
        gloo_timers::future::sleep(remaining.min(LONGEST_TIMER)).await;
        remaining = match deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            // A duration past the clock's range: wait piece by piece forever.
            None => remaining,
        };
    }
}

/// `future` did not finish in time.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// Runs `future` for at most `duration`. Dropping it on timeout cancels it.
pub(crate) async fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    let future = std::pin::pin!(future);
    let timer = std::pin::pin!(sleep(duration));
    match select(future, timer).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right(((), _)) => Err(Elapsed),
    }
}

/// The instant `duration` from now; for a duration too long to represent
/// (such as `Duration::MAX`, "no timeout"), a point decades away rather than
/// a panic.
pub(crate) fn deadline_after(duration: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);
    let now = Instant::now();
    now.checked_add(duration)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// Runs `future` until `deadline` at the latest.
pub(crate) async fn timeout_at<F: Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, Elapsed> {
    timeout(deadline.saturating_duration_since(Instant::now()), future).await
}

/// A uniformly random number in `[low, high]` (`low` when `high < low`),
/// for reconnect jitter. Not for anything secret.
pub(crate) fn random_between(low: u64, high: u64) -> u64 {
    if high <= low {
        return low;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rand::Rng;
        rand::rng().random_range(low..=high)
    }
    #[cfg(target_arch = "wasm32")]
    {
        // Math.random() is in [0, 1): the product stays below the span + 1,
        // and the float-to-int cast saturates rather than wrapping.
        let span = (high - low) as f64 + 1.0;
        let offset = (js_sys::Math::random() * span) as u64;
        low + offset.min(high - low)
    }
}

// Runs on tokio; the browser side of this module is exercised by the
// wasm-bindgen tests (tests/browser_client.rs: request timeouts).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn random_numbers_stay_in_range() {
        for _ in 0..1000 {
            let n = random_between(10, 20);
            assert!((10..=20).contains(&n));
        }
        assert_eq!(random_between(5, 5), 5);
        assert_eq!(random_between(7, 3), 7);
        // The full range must not overflow or panic.
        let _ = random_between(0, u64::MAX);
    }

    #[tokio::test]
    async fn timeouts_cancel_slow_futures_only() {
        let fast = timeout(Duration::from_secs(5), async { 42 }).await;
        assert!(matches!(fast, Ok(42)));
        let slow = timeout(Duration::from_millis(10), sleep(Duration::from_secs(5))).await;
        assert!(slow.is_err());
        let past = timeout_at(Instant::now(), std::future::pending::<()>()).await;
        assert!(past.is_err());
        assert!(deadline_after(Duration::MAX) > Instant::now());
    }
}
