//! The client address of a request that came through trusted proxies:
//! `Forwarded` (RFC 7239) or `X-Forwarded-For`, read from the right.
//!
//! Each proxy appends the address it received the request from, so the
//! list reads client, proxy 1, proxy 2, … and only the entries appended by
//! proxies we trust are true. Starting from the TCP peer, each hop that is
//! a trusted proxy hands over to the entry on its left; the first address
//! that is not a trusted proxy is the client. Entries further left were
//! written by the client itself and are never believed.

use std::net::{IpAddr, SocketAddr};

use actix_http::header::HeaderMap;
use actix_web::http::header::{FORWARDED, HeaderName};

use super::TrustedProxies;

/// `X-Forwarded-For`, not in the `http` crate's list of standard headers.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Entries looked at, at most: no honest chain of proxies is this long,
/// and a client may not make the server walk an arbitrarily long list.
const MAX_HOPS: usize = 32;

/// The address of the client behind `peer` (the TCP peer, or the PROXY
/// protocol source). `peer` itself unless it is a trusted proxy that
/// forwarded the request with a `Forwarded` header (preferred, the
/// standard) or else `X-Forwarded-For`.
pub(crate) fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> IpAddr {
    if !trusted.contains(peer) {
        return peer;
    }
    let forwarded = if headers.contains_key(FORWARDED) {
        hops(headers, &FORWARDED, forwarded_for)
    } else {
        hops(headers, &X_FORWARDED_FOR, |entry| Some(entry.trim()))
    };
    let mut client = peer;
    for hop in forwarded.into_iter().rev().take(MAX_HOPS) {
        // An entry that is not an address ("unknown", an obfuscated name,
        // garbage) ends the walk: the last address known good stands.
        let Some(address) = hop.and_then(parse_node) else {
            break;
        };
        client = address;
        if !trusted.contains(address) {
            break;
        }
    }
    client
}

/// The comma-separated entries of every `name` header, in order, each
/// mapped through `node` (`None`: an entry without a usable node).
fn hops<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    node: impl Fn(&'h str) -> Option<&'h str>,
) -> Vec<Option<&'h str>> {
    headers
        .get_all(name)
        .flat_map(|value| match value.to_str() {
            Ok(text) => text.split(',').map(&node).collect::<Vec<_>>(),
            // A header value that is not text: one unusable entry.
            Err(_) => vec![None],
        })
        .collect()
}

/// The `for=` parameter of one `Forwarded` element, unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use actix_http::header::HeaderValue;

    use super::*;

    fn trusted(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| r.parse().unwrap()).collect())
    }

    fn client(peer: &str, headers: &[(&'static str, &'static str)], trust: &[&str]) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        client_address(peer.parse().unwrap(), &map, &trusted(trust)).to_string()
    }

    #[test]
    fn untrusted_peers_cannot_forge_their_address() {
        let forged = [("x-forwarded-for", "203.0.113.9")];
        assert_eq!(client("192.0.2.1", &forged, &["127.0.0.1"]), "192.0.2.1");
        assert_eq!(client("192.0.2.1", &forged, &[]), "192.0.2.1");
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let trust = ["127.0.0.1", "10.0.0.0/8"];
        // The client prepended a lie; the first proxy appended the truth.
        let chain = [("x-forwarded-for", "1.1.1.1, 192.0.2.7, 10.0.0.5")];
        assert_eq!(client("127.0.0.1", &chain, &trust), "192.0.2.7");
        // Across several header lines, in order.
        let lines = [
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "192.0.2.7"),
        ];
        assert_eq!(client("127.0.0.1", &lines, &trust), "192.0.2.7");
        // Every hop trusted: the left-most one.
        let inside = [("x-forwarded-for", "10.0.0.9, 10.0.0.5")];
        assert_eq!(client("127.0.0.1", &inside, &trust), "10.0.0.9");
        // Nothing forwarded: the proxy itself.
        assert_eq!(client("127.0.0.1", &[], &trust), "127.0.0.1");
    }

    #[test]
    fn forwarded_is_preferred_and_parsed_per_rfc_7239() {
        let trust = ["127.0.0.1"];
        let both = [
            ("x-forwarded-for", "198.51.100.1"),
            (
                "forwarded",
                "for=192.0.2.60;proto=https;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\"",
            ),
        ];
        assert_eq!(client("127.0.0.1", &both, &trust), "2001:db8:cafe::17");
        let port = [("forwarded", "for=\"192.0.2.60:8080\"")];
        assert_eq!(client("127.0.0.1", &port, &trust), "192.0.2.60");
    }

    #[test]
    fn an_entry_that_is_no_address_ends_the_walk() {
        let trust = ["127.0.0.1", "10.0.0.0/8"];
        let hidden = [("forwarded", "for=unknown, for=10.0.0.5")];
        assert_eq!(client("127.0.0.1", &hidden, &trust), "10.0.0.5");
        let garbage = [("x-forwarded-for", "192.0.2.1, not-an-ip")];
        assert_eq!(client("127.0.0.1", &garbage, &trust), "127.0.0.1");
        let mapped = [("x-forwarded-for", "::ffff:192.0.2.1")];
        assert_eq!(client("127.0.0.1", &mapped, &trust), "192.0.2.1");
    }
}
