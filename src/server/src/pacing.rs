//! When a connection may hand the router its next request.
//!
//! Protocol 1.1 answers a busy or fast client with backpressure, not with
//! errors: a connection that has its maximum of scripts running, or has
//! used up its request rate, is simply not read until it may go on. TCP
//! flow control then slows the client down, nothing it sent is lost, and
//! the server holds no queue of its own for it (the kernel's socket buffer
//! is the queue).

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Whether a connection may take its next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Yes.
    Open,
    /// No: it has its maximum of scripts running; wait for one to finish
    /// ([`InFlightCount::room`]).
    InFlightFull,
    /// No: it has used up its request rate; wait until this instant.
    RateUntil(Instant),
}

/// The scripts of one connection that are queued or running.
///
/// Single-threaded (`Rc` + `Cell`): a connection's session and its scripts'
/// answer futures all live on one task.
#[derive(Default)]
pub(crate) struct InFlightCount {
    count: Cell<usize>,
    /// The session, when it waits for a script to finish.
    waiting: Cell<Option<Waker>>,
}

impl InFlightCount {
    /// Scripts in flight now.
    pub fn get(&self) -> usize {
        self.count.get()
    }

    /// Counts one more script in; it is counted out when the guard drops.
    pub fn enter(self: &Rc<Self>) -> InFlight {
        self.count.set(self.count.get() + 1);
        InFlight(Rc::clone(self))
    }

    /// Resolves once fewer than `max` scripts are in flight.
    pub fn room(&self, max: usize) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.count.get() < max {
                Poll::Ready(())
            } else {
                self.waiting.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}

impl std::fmt::Debug for InFlightCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightCount")
            .field("count", &self.count.get())
            .finish_non_exhaustive()
    }
}

/// One script in flight; counted out (and the waiting session woken) on
/// drop, so a script whose answer is dropped does not count forever.
#[derive(Debug)]
pub(crate) struct InFlight(Rc<InFlightCount>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let count = &self.0;
        count.count.set(count.count.get().saturating_sub(1));
        if let Some(waker) = count.waiting.take() {
            waker.wake();
        }
    }
}

/// A token bucket: `rate` tokens a second, holding at most one second's
/// worth, so a client may burst but not sustain more than its rate.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Tokens a second; `0.0` turns the limit off.
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// A full bucket of `rate` tokens a second (`0`: no limit).
    pub fn per_second(rate: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            refilled: Instant::now(),
        }
    }

    /// `None` when a token is there now, else when the next one will be.
    pub fn next_token(&mut self) -> Option<Instant> {
        if self.rate == 0.0 {
            return None;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            None
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Some(now + Duration::from_secs_f64(wait))
        }
    }

    /// Spends one token; callers ask [`RateLimiter::next_token`] first, so
    /// the bucket never goes below empty by more than this one token.
    pub fn take(&mut self) {
        if self.rate != 0.0 {
            self.tokens -= 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures_util::FutureExt;

    #[test]
    fn room_waits_for_a_script_to_finish_and_is_woken() {
        let count = Rc::new(InFlightCount::default());
        let first = count.enter();
        let _second = count.enter();
        assert_eq!(count.get(), 2);
        let flag = Arc::new(WokenFlag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut room = Box::pin(count.room(2));
        assert!(room.as_mut().poll(&mut cx).is_pending());
        assert!(!flag.0.load(Ordering::SeqCst));
        drop(first);
        assert!(
            flag.0.load(Ordering::SeqCst),
            "a finished script wakes the session"
        );
        assert!(room.now_or_never().is_some());
        assert_eq!(count.get(), 1);
    }

    #[test]
    fn an_empty_bucket_says_when_the_next_token_comes() {
        let mut rate = RateLimiter::per_second(10);
        for _ in 0..10 {
            assert_eq!(rate.next_token(), None);
            rate.take();
        }
        let next = rate.next_token().expect("bucket is empty");
        let wait = next.duration_since(Instant::now());
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(wait >= Duration::from_millis(80), "{wait:?}");
    }

    #[test]
    fn a_zero_rate_never_waits() {
        let mut rate = RateLimiter::per_second(0);
        for _ in 0..1000 {
            assert_eq!(rate.next_token(), None);
            rate.take();
        }
    }

    /// A waker that records that it was woken.
    #[derive(Default)]
    struct WokenFlag(AtomicBool);

    impl std::task::Wake for WokenFlag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}
