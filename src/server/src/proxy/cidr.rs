//! Address ranges in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), the
//! unit of `--trusted-proxy`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::address::{mask_v4, mask_v6};

/// A range of IP addresses: a network address and a prefix length.
///
/// Parsed from `ADDRESS/BITS` or a bare address (a range of one). An
/// IPv4-mapped IPv6 address (what a dual-stack socket reports for an IPv4
/// peer) is matched as the IPv4 address it carries.
///
/// ```
/// use circle_server::IpCidr;
/// let balancers: IpCidr = "10.0.0.0/8".parse().unwrap();
/// assert!(balancers.contains("10.1.2.3".parse().unwrap()));
/// assert!(!balancers.contains("192.0.2.1".parse().unwrap()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpCidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not a CIDR range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpCidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("'{0}' is not an IP address (expected ADDRESS or ADDRESS/BITS, e.g. 10.0.0.0/8)")]
    Address(String),
    /// The part after `/` is not a number of bits the family has.
    #[error("'{0}' is not a prefix length (0-32 for IPv4, 0-128 for IPv6)")]
    Prefix(String),
    /// The address has bits set past the prefix (`10.0.0.1/8`): most
    /// likely a typo, so it is refused rather than silently widened.
    #[error("'{0}' has host bits set past its prefix; did you mean {1}?")]
    HostBits(String, IpCidr),
}

impl IpCidr {
    /// The range `network/prefix`; `None` if `prefix` is longer than the
    /// family's address or `network` has bits set past it.
    pub fn new(network: IpAddr, prefix: u8) -> Option<IpCidr> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max && mask(network, prefix) == network).then_some(IpCidr { network, prefix })
    }

    /// The first address of the range.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// Leading bits every address of the range shares.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(mask_v4(v4, prefix)),
        IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, prefix)),
    }
}

impl FromStr for IpCidr {
    type Err = IpCidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| IpCidrError::Address(text.to_owned()))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match bits {
            None => max,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|bits| *bits <= max)
                .ok_or_else(|| IpCidrError::Prefix(text.to_owned()))?,
        };
        IpCidr::new(network, prefix).ok_or_else(|| {
            IpCidrError::HostBits(
                text.to_owned(),
                IpCidr {
                    network: mask(network, prefix),
                    prefix,
                },
            )
        })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> IpCidr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let loopback = cidr("127.0.0.1/32");
        assert!(loopback.contains("127.0.0.1".parse().unwrap()));
        assert!(loopback.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("127.0.0.2".parse().unwrap()));
        let private = cidr("10.0.0.0/8");
        assert!(private.contains("10.255.0.1".parse().unwrap()));
        assert!(!private.contains("11.0.0.1".parse().unwrap()));
        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(cidr("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert_eq!(
            cidr("::1"),
            IpCidr::new("::1".parse().unwrap(), 128).unwrap()
        );
        assert_eq!(cidr("::ffff:10.0.0.0/8"), cidr("10.0.0.0/8"));
    }

    #[test]
    fn bad_ranges_are_refused_with_their_reason() {
        assert!(matches!(
            "nope/8".parse::<IpCidr>(),
            Err(IpCidrError::Address(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<IpCidr>(),
            Err(IpCidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<IpCidr>(),
            Err(IpCidrError::Prefix(_))
        ));
        let Err(IpCidrError::HostBits(_, fixed)) = "10.0.0.1/8".parse::<IpCidr>() else {
            panic!("host bits refused");
        };
        assert_eq!(fixed.to_string(), "10.0.0.0/8");
    }
}
