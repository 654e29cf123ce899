//! What every connection of a server shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use circle_executor::Executor;
use tokio::sync::watch;

use crate::auth::ChallengeSettings;
use crate::config::ServerLimits;

/// The circle a server serves.
#[derive(Clone, Debug)]
pub(crate) struct CircleIdentity {
    pub name: String,
    pub public_key: String,
}

/// Shared by all sessions on all worker threads.
pub(crate) struct Shared {
    pub circle: CircleIdentity,
    pub enable_auth: bool,
    pub auth_domain: Option<String>,
    pub challenge: ChallengeSettings,
    pub limits: ServerLimits,
    pub executor: Arc<dyn Executor>,
    pub connections: ConnectionCounter,
    /// Flips to `true` when the server begins a graceful stop.
    pub shutdown: watch::Receiver<bool>,
}

/// Open WebSocket connections across all workers, with a cap.
#[derive(Debug)]
pub(crate) struct ConnectionCounter {
    open: Arc<AtomicUsize>,
    max: usize,
}

impl ConnectionCounter {
    pub fn new(max: usize) -> Self {
        ConnectionCounter {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Counts a new connection in, unless the server is full.
    pub fn try_open(&self) -> Option<ConnectionSlot> {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= self.max {
                return None;
            }
            match self.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ConnectionSlot(self.open.clone())),
                Err(actual) => open = actual,
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One open connection; counted out when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
