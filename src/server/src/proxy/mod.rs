//! Running behind load balancers: who the client really is.
//!
//! Behind a balancer every TCP peer is the balancer. Two ways bring the
//! client's address through, both believed only from `trusted_proxies`:
//! the PROXY protocol header a balancer sends before the TLS handshake
//! ([`header`], `proxy_protocol`), and the `Forwarded`/`X-Forwarded-For`
//! headers an HTTP proxy adds to the upgrade request ([`forwarded`]). The
//! address found is the one every per-address limit and log line uses.

mod accept;
mod cidr;
mod forwarded;
mod header;

use std::net::IpAddr;

pub(crate) use accept::{Front, plain_stack, tls_stack};
pub use cidr::{IpCidr, IpCidrError};
pub(crate) use forwarded::client_address;
pub use header::ProxyHeaderError;

/// The address ranges whose PROXY headers and forwarded headers are
/// believed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies(Vec<IpCidr>);

impl TrustedProxies {
    pub fn new(ranges: Vec<IpCidr>) -> Self {
        TrustedProxies(ranges)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
