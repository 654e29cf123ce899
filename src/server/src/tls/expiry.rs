//! The server's certificate at start and while it runs: what is logged when
//! it loads, and the warnings while its end comes near.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::error::TlsConfigError;
use super::load::{CertificateInfo, LoadedTls, TlsOptions, load_server_tls, rfc3339};
use super::reload::TlsReloader;
use crate::config::ServerConfig;
use crate::error::ServerError;

/// Loads the TLS configuration `config` asks for (none when TLS is off) and
/// says in the log what is served and what is wrong with it.
pub(crate) fn load_tls(config: &ServerConfig) -> Result<Option<LoadedTls>, ServerError> {
    if !config.enable_tls {
        if config.tls_port.is_some() {
            return Err(ServerError::InvalidConfig(
                "tls_port is set but enable_tls is off".to_owned(),
            ));
        }
        return Ok(None);
    }
    if config.acme.is_some() {
        return Ok(None);
    }
    let (Some(cert_path), Some(key_path)) = (&config.cert_path, &config.key_path) else {
        return Err(TlsConfigError::ConfigurationError(
            "enable_tls needs both cert_path and key_path".to_owned(),
        )
        .into());
    };
    let loaded = load_server_tls(&TlsOptions {
        cert_path: cert_path.clone(),
        key_path: key_path.clone(),
        client_ca_path: config.client_ca_path.clone(),
        client_auth_required: config.client_auth_required,
        accept_invalid_certs: config.tls_accept_invalid_certs,
        ticket_key_file: config.tls_ticket_key_file.clone(),
    })?;
    let certificate = &loaded.certificate;
    info!(
        subject = %certificate.subject,
        serial = %certificate.serial,
        expires = %rfc3339(certificate.not_after),
        days_left = certificate.expires_in().as_secs() / 86_400,
        chain = certificate.chain_len,
        "TLS certificate loaded from {cert_path}"
    );
    warn_if_expiring(certificate);
    if let Some(problem) = &loaded.accepted_problem {
        warn!(
            "tls_accept_invalid_certs is set: serving {cert_path} although {problem}; clients that verify certificates will refuse it"
        );
    } else if config.tls_accept_invalid_certs {
        warn!(
            "tls_accept_invalid_certs is set: certificate problems would not stop this server from starting"
        );
    }
    if config.client_ca_path.is_some() {
        info!(
            required = config.client_auth_required,
            "client certificates are verified (mutual TLS)"
        );
    }
    Ok(Some(loaded))
}

/// Below this much validity left, the log warns every few hours: Let's
/// Encrypt lifetimes are shrinking toward 45 days, so renewals that silently
/// fail must be noticed early.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

pub(crate) fn warn_if_expiring(certificate: &CertificateInfo) {
    let left = certificate.expires_in();
    if left < EXPIRY_WARNING {
        warn!(
            subject = %certificate.subject,
            expires = %rfc3339(certificate.not_after),
            hours_left = left.as_secs() / 3600,
            "the TLS certificate expires soon: renew it and reload (SIGHUP or ServerHandle::reload_tls)"
        );
    }
}

pub(crate) async fn watch_certificate_expiry(
    reloader: Arc<TlsReloader>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(6 * 60 * 60));
    every.tick().await; // the first tick is immediate; start-up already warned
    loop {
        tokio::select! {
            _ = every.tick() => if let Some(certificate) = reloader.certificate() { warn_if_expiring(&certificate) },
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
        }
    }
}
