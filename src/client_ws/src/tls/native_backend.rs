//! The native-tls backend (OpenSSL on Linux).
//!
//! native-tls reads the client identity only as a PKCS#8 key plus PEM
//! certificates, so PKCS#1 (RSA) and SEC1 (EC) keys are rewrapped as PKCS#8
//! here; everything else maps one to one onto `TlsConnectorBuilder`.

use rustls_pki_types::PrivateKeyDer;
use tokio::net::TcpStream;

use crate::error::{CertificateRejection, CircleWsClientError};
use crate::tls_config::TlsConfig;

/// Builds the connector for `config`.
pub(super) fn build_connector(
    config: &TlsConfig,
) -> Result<tokio_native_tls::TlsConnector, CircleWsClientError> {
    let mut builder = native_tls::TlsConnector::builder();
    builder
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .danger_accept_invalid_certs(config.accept_invalid_certs)
        .danger_accept_invalid_hostnames(config.accept_invalid_hostnames)
        // The WebSocket upgrade is HTTP/1.1 (see the rustls backend).
        .request_alpns(&["http/1.1"]);

    for (index, der) in config.extra_roots()?.iter().enumerate() {
        let certificate =
            native_tls::Certificate::from_der(der).map_err(|e| CircleWsClientError::TlsConfig {
                path: config.ca_cert_path.clone(),
                problem: format!("certificate #{} is not usable: {e}", index + 1),
            })?;
        builder.add_root_certificate(certificate);
    }

    if let Some((chain, key)) = config.client_identity()? {
        let key_path = config.client_key_path.clone();
        let pkcs8 = to_pkcs8(&key).map_err(|problem| CircleWsClientError::TlsConfig {
            path: key_path.clone(),
            problem,
        })?;
        let chain_pem: String = chain
            .iter()
            .map(|certificate| pem_encode("CERTIFICATE", certificate))
            .collect();
        let key_pem = pem_encode("PRIVATE KEY", &pkcs8);
        let identity = native_tls::Identity::from_pkcs8(chain_pem.as_bytes(), key_pem.as_bytes())
            .map_err(|e| CircleWsClientError::TlsConfig {
            path: key_path,
            problem: format!("the client certificate and key are not usable: {e}"),
        })?;
        builder.identity(identity);
    }

    let connector = builder
        .build()
        .map_err(|e| CircleWsClientError::TlsConfig {
            path: config.client_cert_path.clone(),
            problem: format!("the platform TLS library refused the configuration: {e}"),
        })?;
    Ok(tokio_native_tls::TlsConnector::from(connector))
}

/// The TLS handshake over `tcp`.
pub(super) async fn connect(
    connector: &tokio_native_tls::TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_native_tls::TlsStream<TcpStream>, CircleWsClientError> {
    connector
        .connect(host, tcp)
        .await
        .map_err(|e| classify_handshake_error(&e.to_string(), host))
}

/// The platform library reports errors as text only; these are the phrases
/// OpenSSL uses (1.1 and 3.x spellings).
fn rejection_reason(message: &str) -> Option<CertificateRejection> {
    let lower = message.to_ascii_lowercase();
    let has = |phrase: &str| lower.contains(phrase);
    if has("self-signed certificate")
        || has("self signed certificate")
        || has("unable to get local issuer certificate")
        || has("unable to get issuer certificate")
        || has("unable to verify the first certificate")
    {
        Some(CertificateRejection::UnknownIssuer)
    } else if has("hostname mismatch") || has("ip address mismatch") {
        Some(CertificateRejection::NameMismatch)
    } else if has("certificate has expired") {
        Some(CertificateRejection::Expired)
    } else if has("certificate is not yet valid") {
        Some(CertificateRejection::NotYetValid)
    } else if has("certificate verify failed") {
        Some(CertificateRejection::Other(message.to_owned()))
    } else {
        None
    }
}

fn classify_handshake_error(message: &str, host: &str) -> CircleWsClientError {
    if let Some(reason) = rejection_reason(message) {
        return CircleWsClientError::CertificateRejected {
            host: host.to_owned(),
            reason,
            detail: message.to_owned(),
        };
    }
    let lower = message.to_ascii_lowercase();
    let hint = if lower.contains("wrong version number")
        || lower.contains("packet length too long")
        || lower.contains("record layer failure")
        || lower.contains("http request")
    {
        " (the server did not answer with TLS: a plain ws:// listener? then use a ws:// URL)"
    } else if lower.contains("certificate required") || lower.contains("alert bad certificate") {
        " (the server refused or wants a client certificate: set client_cert_path and \
         client_key_path)"
    } else if lower.contains("unexpected eof") {
        " (the server closed the connection during the TLS handshake: it may not be a TLS \
         listener, then use a ws:// URL)"
    } else {
        ""
    };
    CircleWsClientError::TlsHandshake {
        host: host.to_owned(),
        detail: format!("{message}{hint}"),
    }
}

/// A TLS alert that arrived after the handshake: with TLS 1.3 the server
/// refuses a client certificate (or its absence) only then. OpenSSL reports
/// it as text inside an I/O error, e.g. "tlsv13 alert certificate required".
pub(super) fn classify_late_error(
    error: &std::io::Error,
    host: &str,
) -> Option<CircleWsClientError> {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    if !lower.contains("alert") {
        return None;
    }
    let hint = if lower.contains("certificate required") {
        "the server requires a client certificate (set client_cert_path and client_key_path)"
    } else if lower.contains("unknown ca")
        || lower.contains("bad certificate")
        || lower.contains("certificate unknown")
    {
        "the server refused the client certificate: is it signed by a CA the server trusts?"
    } else {
        "the server ended the TLS session with an alert"
    };
    Some(CircleWsClientError::TlsHandshake {
        host: host.to_owned(),
        detail: format!("{hint} ({text})"),
    })
}

/// The DER object identifiers and fixed encodings PKCS#8 needs.
mod der {
    /// `rsaEncryption` AlgorithmIdentifier: SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }.
    pub const RSA_ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    /// OID 1.2.840.10045.2.1 (`id-ecPublicKey`), tag and length included.
    pub const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// PKCS#8 version 0.
    pub const VERSION_0: &[u8] = &[0x02, 0x01, 0x00];

    /// A DER length.
    pub fn length(len: usize) -> Vec<u8> {
        if len < 0x80 {
            return vec![len as u8];
        }
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|byte| *byte == 0)
            .collect();
        let mut encoded = vec![0x80 | bytes.len() as u8];
        encoded.extend(bytes);
        encoded
    }

    /// A DER element with the given tag.
    pub fn element(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut encoded = vec![tag];
        encoded.extend(length(contents.len()));
        encoded.extend_from_slice(contents);
        encoded
    }

    /// Splits one element off `input`: (tag, contents, rest), or `None` when
    /// `input` does not start with a well-formed element.
    pub fn split(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let count = (first & 0x7f) as usize;
            if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(count);
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, byte| (acc << 8) | *byte as usize);
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        Some((tag, contents, rest))
    }
}

/// Rewraps a private key as PKCS#8 DER.
fn to_pkcs8(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, String> {
    let (algorithm, inner) = match key {
        PrivateKeyDer::Pkcs8(pkcs8) => return Ok(pkcs8.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(pkcs1) => (der::RSA_ALGORITHM.to_vec(), pkcs1.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(sec1) => {
            let curve = sec1_curve_oid(sec1.secret_sec1_der()).ok_or_else(|| {
                "this SEC1 (EC PRIVATE KEY) key does not name its curve: convert it with \
                 `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8`"
                    .to_owned()
            })?;
            let mut contents = der::EC_PUBLIC_KEY_OID.to_vec();
            contents.extend_from_slice(curve);
            (der::element(0x30, &contents), sec1.secret_sec1_der())
        }
        _ => return Err("unsupported private key format".to_owned()),
    };
    let mut contents = der::VERSION_0.to_vec();
    contents.extend(algorithm);
    contents.extend(der::element(0x04, inner));
    Ok(der::element(0x30, &contents))
}

/// The curve OID element (tag and length included) of a SEC1
/// `ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters OPTIONAL, [1] publicKey OPTIONAL }`.
fn sec1_curve_oid(sec1: &[u8]) -> Option<&[u8]> {
    let (0x30, mut fields, _) = der::split(sec1)? else {
        return None;
    };
    while !fields.is_empty() {
        let (tag, contents, rest) = der::split(fields)?;
        if tag == 0xa0 {
            let (0x06, _, _) = der::split(contents)? else {
                return None;
            };
            return Some(contents);
        }
        fields = rest;
    }
    None
}

/// PEM text of one DER object (RFC 7468: base64 in 64-character lines).
fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                base64.push(ALPHABET[((n >> shift) & 0x3f) as usize] as char);
            } else {
                base64.push('=');
            }
        }
    }
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        // The alphabet is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn openssl_messages_map_to_reasons() {
        let cases = [
            (
                "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:ssl/statem/statem_clnt.c:1889: (self-signed certificate)",
                CertificateRejection::UnknownIssuer,
            ),
            (
                "certificate verify failed: (unable to get local issuer certificate)",
                CertificateRejection::UnknownIssuer,
            ),
            (
                "certificate verify failed: (Hostname mismatch)",
                CertificateRejection::NameMismatch,
            ),
            (
                "certificate verify failed: (certificate has expired)",
                CertificateRejection::Expired,
            ),
            (
                "certificate verify failed: (certificate is not yet valid)",
                CertificateRejection::NotYetValid,
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(rejection_reason(message), Some(expected), "{message}");
        }
        assert!(matches!(
            classify_handshake_error("error:0A00010B:SSL routines::wrong version number", "h"),
            CircleWsClientError::TlsHandshake { detail, .. } if detail.contains("ws:// URL")
        ));
    }

    #[test]
    fn late_alerts_are_explained() {
        let error = std::io::Error::other(
            "error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required",
        );
        match classify_late_error(&error, "localhost") {
            Some(CircleWsClientError::TlsHandshake { detail, .. }) => {
                assert!(detail.contains("client_cert_path"), "{detail}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(classify_late_error(&std::io::Error::other("reset"), "h").is_none());
    }

    #[test]
    fn pem_encoding_round_trips() {
        for len in 0..70 {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let pem = pem_encode("CERTIFICATE", &der);
            if len == 0 {
                continue;
            }
            let decoded = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
                .expect("our PEM parses");
            assert_eq!(decoded.as_ref(), der.as_slice(), "length {len}");
        }
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der::length(5), vec![5]);
        assert_eq!(der::length(0x80), vec![0x81, 0x80]);
        assert_eq!(der::length(0x1234), vec![0x82, 0x12, 0x34]);
        let element = der::element(0x04, &[0u8; 300]);
        let (tag, contents, rest) = der::split(&element).unwrap();
        assert_eq!((tag, contents.len(), rest.len()), (0x04, 300, 0));
        assert!(der::split(&[0x04, 0x85, 1]).is_none());
    }

    fn assert_valid_pkcs8(pem_text: &str) {
        let key = PrivateKeyDer::from_pem_slice(pem_text.as_bytes()).expect("test key parses");
        let pkcs8 = to_pkcs8(&key).expect("rewraps");
        let rewrapped = PrivateKeyDer::Pkcs8(pkcs8.clone().into());
        // aws-lc parses the PKCS#8 structure strictly: it is the independent check.
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&rewrapped)
            .expect("aws-lc accepts the rewrapped key");
        // And OpenSSL, which is what this backend hands it to.
        let pem = pem_encode("PRIVATE KEY", &pkcs8);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }

    #[test]
    fn sec1_and_pkcs1_keys_become_pkcs8() {
        assert_valid_pkcs8(include_str!("testdata/sec1_p256_key.pem"));
        assert_valid_pkcs8(include_str!("testdata/pkcs1_rsa2048_key.pem"));
        let generated = rcgen::KeyPair::generate().unwrap().serialize_pem();
        assert_valid_pkcs8(&generated);
    }

    #[test]
    fn sec1_without_curve_is_refused() {
        // SEQUENCE { INTEGER 1, OCTET STRING (32 bytes) } and nothing else.
        let mut contents = vec![0x02, 0x01, 0x01];
        contents.extend(der::element(0x04, &[7u8; 32]));
        let sec1 = der::element(0x30, &contents);
        let key = PrivateKeyDer::Sec1(sec1.into());
        assert!(to_pkcs8(&key).unwrap_err().contains("openssl pkcs8"));
    }

    #[test]
    fn every_option_builds() {
        assert!(build_connector(&TlsConfig::default()).is_ok());
        assert!(
            build_connector(&TlsConfig {
                accept_invalid_certs: true,
                accept_invalid_hostnames: true,
                ..Default::default()
            })
            .is_ok()
        );
    }
}
