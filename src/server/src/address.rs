//! Which clients count as one for per-address limits.
//!
//! One host rarely has one address. An IPv6 host is handed a whole /64 by
//! its network (SLAAC and privacy extensions pick a new address in it at
//! will), so counting IPv6 clients address by address would give one host
//! 2^64 budgets. Per-address limits therefore count *prefixes*: by default
//! every IPv4 address alone (`/32`) and every IPv6 `/64` as one client.
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
//! socket reports for an IPv4 peer) counts as the IPv4 address it carries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How many leading bits of a client's address name the client, per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPrefixes {
    /// Leading bits of an IPv4 address that identify a client (0–32;
    /// larger values are read as 32).
    pub ipv4: u8,
    /// Leading bits of an IPv6 address that identify a client (0–128;
    /// larger values are read as 128).
    pub ipv6: u8,
}

impl Default for AddressPrefixes {
    /// `/32` for IPv4, `/64` for IPv6: one address, one IPv6 subnet.
    fn default() -> Self {
        AddressPrefixes { ipv4: 32, ipv6: 64 }
    }
}

impl AddressPrefixes {
    /// The key `ip` is counted under: its network prefix, host bits zeroed.
    pub fn client_key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(v4, self.ipv4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(mask_v4(v4, self.ipv4)),
                None => IpAddr::V6(mask_v6(v6, self.ipv6)),
            },
        }
    }
}

pub(crate) fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(prefix.min(32));
    // `checked_shl` because a shift by the full width is an overflow.
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

pub(crate) fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let bits = u32::from(prefix.min(128));
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    Ipv6Addr::from(u128::from(ip) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefixes: AddressPrefixes, ip: &str) -> String {
        prefixes.client_key(ip.parse().unwrap()).to_string()
    }

    #[test]
    fn ipv6_hosts_of_one_64_share_a_key() {
        let default = AddressPrefixes::default();
        assert_eq!(key(default, "2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(
            key(default, "2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::"
        );
        assert_eq!(key(default, "2001:db8:1:3::1"), "2001:db8:1:3::");
    }

    #[test]
    fn ipv4_addresses_count_alone_by_default() {
        let default = AddressPrefixes::default();
        assert_eq!(key(default, "192.0.2.7"), "192.0.2.7");
        assert_eq!(key(default, "::ffff:192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn prefixes_are_configurable_and_clamped() {
        let wide = AddressPrefixes { ipv4: 24, ipv6: 48 };
        assert_eq!(key(wide, "192.0.2.7"), "192.0.2.0");
        assert_eq!(key(wide, "2001:db8:1:2::1"), "2001:db8:1::");
        let none = AddressPrefixes { ipv4: 0, ipv6: 0 };
        assert_eq!(key(none, "192.0.2.7"), "0.0.0.0");
        assert_eq!(key(none, "2001:db8::1"), "::");
        let oversized = AddressPrefixes {
            ipv4: 99,
            ipv6: 200,
        };
        assert_eq!(key(oversized, "192.0.2.7"), "192.0.2.7");
        assert_eq!(key(oversized, "2001:db8::1"), "2001:db8::1");
    }
}
