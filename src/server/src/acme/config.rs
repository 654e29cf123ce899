//! What `ServerConfig::acme` holds: the names, the CA, the cache folder and
//! the timings of automatic certificates.

use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous rate
/// limits. Try a new deployment against it first.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Which challenge proves control of the domains to the CA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcmeChallenge {
    /// TLS-ALPN-01 (RFC 8737) where the CA offers it, answered on the TLS
    /// listener itself, else HTTP-01 when a plain listener runs.
    #[default]
    Auto,
    /// TLS-ALPN-01 only: the TLS listener must be reachable on port 443.
    TlsAlpn01,
    /// HTTP-01 only: the plain listener must run and be reachable on port 80.
    Http01,
}

/// Automatic certificates over ACME (RFC 8555). Exclusive with
/// `cert_path`/`key_path`; needs `enable_tls`.
#[derive(Clone, Debug)]
pub struct AcmeConfig {
    /// The names the certificate is for (at least one); each must resolve
    /// to this server.
    pub domains: Vec<String>,
    /// Contact URLs for the account, e.g. `mailto:ops@example.com`.
    pub contacts: Vec<String>,
    /// Folder of the account key and certificates (created 0700, files
    /// 0600). Servers may share it: a lock file serialises their orders.
    pub cache_dir: PathBuf,
    /// The CA's directory URL. Default: Let's Encrypt production.
    pub directory_url: String,
    /// A PEM file of the root the CA's own HTTPS endpoint chains to (test
    /// CAs such as Pebble). `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Which challenge to answer.
    pub challenge: AcmeChallenge,
    /// The first pause after a failed attempt; it doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// The longest pause between attempts.
    pub retry_max: Duration,
    /// The longest any one call to the CA may take.
    pub request_timeout: Duration,
    /// How long one whole order (challenges, finalize, download) may take.
    pub order_timeout: Duration,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            domains: Vec::new(),
            contacts: Vec::new(),
            cache_dir: PathBuf::from("acme"),
            directory_url: LETS_ENCRYPT_PRODUCTION.to_owned(),
            ca_file: None,
            challenge: AcmeChallenge::Auto,
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 60 * 60),
            request_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(5 * 60),
        }
    }
}

impl AcmeConfig {
    /// Checks what can be checked before start.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.domains.is_empty() {
            return Err("acme needs at least one domain".to_owned());
        }
        for domain in &self.domains {
            let valid = !domain.is_empty()
                && domain.len() <= 253
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !valid {
                return Err(format!("acme domain {domain:?} is not a DNS name"));
            }
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return Err("acme retry_initial must be above zero and at most retry_max".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_domains_and_retries() {
        let good = AcmeConfig {
            domains: vec!["circle.example.com".into()],
            ..AcmeConfig::default()
        };
        assert!(good.check().is_ok());
        assert!(AcmeConfig::default().check().is_err());
        let bad_name = AcmeConfig {
            domains: vec!["circle example".into()],
            ..AcmeConfig::default()
        };
        assert!(bad_name.check().unwrap_err().contains("not a DNS name"));
        let bad_retry = AcmeConfig {
            retry_initial: Duration::ZERO,
            ..good
        };
        assert!(bad_retry.check().is_err());
    }
}
