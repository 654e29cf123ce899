//! Redis over TLS (`rediss://`): the certificate files and the client built
//! from them.
//!
//! TLS runs on rustls with the aws-lc-rs provider, the same stack and
//! provider as the circle server's own TLS. The server certificate is
//! verified against the system's roots or `ca_path`; there is no switch to
//! turn verification off.

use std::path::Path;

use ::redis::{Client, ClientTlsConfig, TlsCertificates};

use super::{RedisSetupError, redacted_url};
use crate::RedisTls;

/// Opens a client for `url` (no connection is made yet): plain for
/// `redis://`, TLS with `tls`'s files for `rediss://`.
pub(crate) fn open_client(url: &str, tls: &RedisTls) -> Result<Client, RedisSetupError> {
    let invalid = |reason: String| RedisSetupError::InvalidUrl {
        url: redacted_url(url),
        reason,
    };
    if !url.starts_with("rediss://") {
        if tls.is_set() {
            return Err(RedisSetupError::InvalidConfig(format!(
                "Redis certificate files are set but {} is not a rediss:// URL",
                redacted_url(url)
            )));
        }
        return Client::open(url).map_err(|err| invalid(err.to_string()));
    }
    if url.contains('#') {
        // The redis crate reads `#insecure` as "do not verify the certificate".
        return Err(invalid(
            "a rediss:// URL may not carry a #fragment: certificate verification stays on"
                .to_owned(),
        ));
    }
    // The redis crate builds its rustls configuration with the process's
    // default provider: make it the same aws-lc-rs provider the server
    // uses (a no-op when one is already installed).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client_tls = match (&tls.client_cert_path, &tls.client_key_path) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(RedisSetupError::InvalidConfig(
                "a Redis client certificate needs its key, and a key its certificate".to_owned(),
            ));
        }
    };
    let root_cert = tls.ca_path.as_deref().map(read).transpose()?;
    Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|err| invalid(err.to_string()))
}

fn read(path: &Path) -> Result<Vec<u8>, RedisSetupError> {
    let bytes = std::fs::read(path).map_err(|source| RedisSetupError::TlsFile {
        path: path.to_owned(),
        reason: source.to_string(),
    })?;
    if !bytes.windows(11).any(|window| window == b"-----BEGIN ") {
        return Err(RedisSetupError::TlsFile {
            path: path.to_owned(),
            reason: "no PEM block in it".to_owned(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_checked_before_any_connection() {
        let with_ca = RedisTls {
            ca_path: Some("/no/such/ca.pem".into()),
            ..RedisTls::default()
        };
        assert!(matches!(
            open_client("redis://127.0.0.1", &with_ca),
            Err(RedisSetupError::InvalidConfig(_))
        ));
        assert!(matches!(
            open_client("rediss://127.0.0.1", &with_ca),
            Err(RedisSetupError::TlsFile { .. })
        ));
        assert!(matches!(
            open_client("rediss://127.0.0.1/#insecure", &RedisTls::default()),
            Err(RedisSetupError::InvalidUrl { .. })
        ));
        let half = RedisTls {
            client_cert_path: Some("cert.pem".into()),
            ..RedisTls::default()
        };
        assert!(matches!(
            open_client("rediss://127.0.0.1", &half),
            Err(RedisSetupError::InvalidConfig(_))
        ));
        assert!(open_client("rediss://u:pw@127.0.0.1:6380", &RedisTls::default()).is_ok());
    }
}
