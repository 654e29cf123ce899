//! Reading the PROXY protocol header (HAProxy's spec, versions 1 and 2)
//! that a load balancer sends before anything else on a connection.
//!
//! The header is read straight off the TCP socket, exactly to its last
//! byte, so the TLS handshake or the HTTP request that follows stays in the
//! socket untouched. Parsing and validation are the `ppp` crate's.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The fixed start of a version 2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2: signature, version/command, family/protocol, 2 length bytes.
const V2_FIXED_BYTES: usize = 16;
/// Longest version 2 address block and TLVs accepted. HAProxy sends a few
/// dozen bytes (more with its SSL TLVs); the spec's 64 KiB would let every
/// connection make the server buffer that much before TLS.
const V2_MAX_REST_BYTES: usize = 1024;
/// Longest version 1 line, CRLF included (the spec's own bound).
const V1_MAX_BYTES: usize = 107;

/// Why a connection's PROXY protocol header was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The TCP peer is not in `trusted_proxies`; only trusted balancers may
    /// say where a connection comes from.
    #[error("PROXY protocol from {0}, which is not a trusted proxy")]
    UntrustedPeer(IpAddr),
    /// The connection does not start with a PROXY protocol header (a client
    /// connecting directly, past the balancer).
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// A header that the spec does not allow.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// A version 2 header longer than the server accepts.
    #[error(
        "PROXY protocol v2 header of {0} bytes is longer than the {V2_MAX_REST_BYTES} accepted"
    )]
    TooLong(usize),
    /// No complete header within the handshake timeout.
    #[error("no complete PROXY protocol header within the handshake timeout")]
    Timeout,
    /// The connection failed or closed while the header was read.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the header at the start of `io` and returns the client's address
/// it names. A `LOCAL` (v2) or `UNKNOWN` (v1) header, which a balancer sends
/// for its own health checks, names no client: `None`, the TCP peer counts.
pub(crate) async fn read_proxy_header(
    io: &mut TcpStream,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut start = [0u8; 12];
    io.read_exact(&mut start).await?;
    if &start == V2_SIGNATURE {
        read_v2(io, &start).await
    } else if start.starts_with(b"PROXY ") {
        read_v1(io, &start).await
    } else {
        Err(ProxyHeaderError::Missing)
    }
}

async fn read_v2(
    io: &mut TcpStream,
    signature: &[u8; 12],
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut header = Vec::with_capacity(V2_FIXED_BYTES + 64);
    header.extend_from_slice(signature);
    header.resize(V2_FIXED_BYTES, 0);
    io.read_exact(&mut header[12..]).await?;
    let rest = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if rest > V2_MAX_REST_BYTES {
        return Err(ProxyHeaderError::TooLong(V2_FIXED_BYTES + rest));
    }
    header.resize(V2_FIXED_BYTES + rest, 0);
    io.read_exact(&mut header[V2_FIXED_BYTES..]).await?;
    let parsed = v2::Header::try_from(header.as_slice())
        .map_err(|error| ProxyHeaderError::Malformed(error.to_string()))?;
    if parsed.command == v2::Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        v2::Addresses::IPv4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        v2::Addresses::IPv6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        // A balancer listening on a UNIX socket: no client IP to count.
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    })
}

async fn read_v1(
    io: &mut TcpStream,
    start: &[u8; 12],
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut line = Vec::with_capacity(V1_MAX_BYTES);
    line.extend_from_slice(start);
    // Byte by byte: reading ahead would swallow the start of the TLS
    // handshake. Version 1 is at most 107 bytes and only for old balancers.
    while !line.ends_with(b"\r\n") {
        if line.len() == V1_MAX_BYTES {
            return Err(ProxyHeaderError::Malformed(
                "version 1 line longer than 107 bytes".to_owned(),
            ));
        }
        line.push(io.read_u8().await?);
    }
    let parsed = v1::Header::try_from(line.as_slice())
        .map_err(|error| ProxyHeaderError::Malformed(error.to_string()))?;
    Ok(match parsed.addresses {
        v1::Addresses::Tcp4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        v1::Addresses::Tcp6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        v1::Addresses::Unknown => None,
    })
}
