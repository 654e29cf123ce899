//! What every connection of a server shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use circle_executor::{Executor, ScriptContext};
use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};

use crate::address::AddressPrefixes;
use crate::auth::ChallengeSettings;
use crate::circle::CircleIdentity;
use crate::config::{ServerConfig, ServerLimits};
use crate::metrics::Metrics;
use crate::proxy::TrustedProxies;
use crate::tls::TlsReloader;

/// What every session on every HTTP thread shares: one per server.
pub(crate) struct ServerState {
    pub circle: CircleIdentity,
    /// `circle` as `whoami` shows it, rendered once.
    pub circle_json: Box<RawValue>,
    /// What scripts of connections that have not signed in see: one for
    /// all of them (a signed-in connection gets its own).
    pub anonymous_script_context: Arc<ScriptContext>,
    pub enable_auth: bool,
    pub auth_domain: Option<String>,
    pub challenge: ChallengeSettings,
    pub limits: ServerLimits,
    pub executor: Arc<dyn Executor>,
    pub connections: ConnectionCounter,
    pub allowed_origins: Option<Vec<String>>,
    pub metrics: Arc<Metrics>,
    /// The TLS listener's certificate, when TLS is on.
    pub tls: Option<Arc<TlsReloader>>,
    /// Flips to `true` when the server begins a graceful stop.
    pub shutdown: watch::Receiver<bool>,
    /// Whose forwarded headers are believed.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// `true` from the start of a stop's drain period: `/health` answers
    /// 503 while everything else is still served.
    pub draining: AtomicBool,
    /// How long a stop drains before it closes connections.
    pub drain_period: std::time::Duration,
    /// The HTTP-01 tokens being answered (ACME), for the plain listener.
    pub acme_challenges: Option<Arc<crate::acme::Challenges>>,
}

impl ServerState {
    /// What the sessions of a server started with `config` share.
    pub fn new(
        config: &ServerConfig,
        circle: CircleIdentity,
        executor: Arc<dyn Executor>,
        tls: Option<Arc<TlsReloader>>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let limits = &config.limits;
        ServerState {
            challenge: ChallengeSettings {
                circle_name: circle.name.clone(),
                circle_public_key: circle.public_key.clone(),
                nonce_ttl_secs: limits.nonce_ttl.as_secs().max(1),
            },
            circle_json: circle.to_json(),
            anonymous_script_context: Arc::new(ScriptContext {
                circle_name: circle.name.clone(),
                circle_public_key: circle.public_key.clone(),
                caller_public_key: String::new(),
            }),
            circle,
            enable_auth: config.enable_auth,
            auth_domain: config.auth_domain.clone(),
            limits: limits.clone(),
            executor,
            connections: ConnectionCounter::new(
                limits.max_connections,
                limits.max_connections_per_ip,
                limits.client_address_prefixes,
            ),
            allowed_origins: config.allowed_origins.clone(),
            metrics: Arc::default(),
            tls,
            shutdown,
            trusted_proxies: Arc::new(TrustedProxies::new(config.trusted_proxies.clone())),
            draining: AtomicBool::new(false),
            drain_period: config.drain_period,
            acme_challenges: None,
        }
    }
}

/// Open WebSocket connections across all workers, with a cap in total and
/// one per client (an address prefix, see [`AddressPrefixes`]).
#[derive(Debug)]
pub(crate) struct ConnectionCounter {
    inner: Arc<CounterInner>,
}

#[derive(Debug)]
struct CounterInner {
    open: AtomicUsize,
    /// Woken when the last open connection closes.
    all_closed: Notify,
    max: usize,
    /// Open connections per client key ([`AddressPrefixes::client_key`]).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    prefixes: AddressPrefixes,
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ServerFull,
    TooManyFromAddress,
}

impl ConnectionCounter {
    pub fn new(max: usize, max_per_ip: usize, prefixes: AddressPrefixes) -> Self {
        ConnectionCounter {
            inner: Arc::new(CounterInner {
                open: AtomicUsize::new(0),
                all_closed: Notify::new(),
                max,
                per_ip: Mutex::new(HashMap::new()),
                max_per_ip,
                prefixes,
            }),
        }
    }

    /// Counts a new connection from `peer` in, unless a cap is reached.
    /// The per-client cap counts `peer`'s address prefix, not the address.
    pub fn try_open(&self, peer: Option<IpAddr>) -> Result<ConnectionSlot, Refusal> {
        let inner = &self.inner;
        let mut open = inner.open.load(Ordering::Relaxed);
        loop {
            if open >= inner.max {
                return Err(Refusal::ServerFull);
            }
            match inner.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => open = actual,
            }
        }
        // From here on the slot's Drop undoes the global count.
        let mut slot = ConnectionSlot {
            inner: inner.clone(),
            peer: None,
        };
        if let Some(ip) = peer.map(|ip| inner.prefixes.client_key(ip)) {
            let mut per_ip = inner
                .per_ip
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= inner.max_per_ip {
                return Err(Refusal::TooManyFromAddress);
            }
            *count += 1;
            slot.peer = Some(ip);
        }
        Ok(slot)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Returns once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let closed = self.inner.all_closed.notified();
            tokio::pin!(closed);
            // Registered before the check, so a close in between is not missed.
            closed.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// One open connection; counted out when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    inner: Arc<CounterInner>,
    peer: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if self.inner.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.all_closed.notify_waiters();
        }
        if let Some(ip) = self.peer {
            let mut per_ip = self
                .inner
                .per_ip
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(count) = per_ip.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}
