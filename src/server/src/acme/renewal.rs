//! The certificate's life: loaded from the cache at start, ordered when
//! missing, renewed when a third of its lifetime is left, retried with
//! exponential backoff, swapped in through the TLS reloader.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use super::account::account;
use super::cache::AcmeCache;
use super::challenge::Challenges;
use super::config::AcmeConfig;
use super::error::AcmeError;
use super::order::order_certificate;
use crate::metrics::Metrics;
use crate::tls::{
    CertificateInfo, TlsOptions, TlsReloader, load_certified_key, rfc3339, warn_if_expiring,
};

/// Everything the renewal task needs, shared with the server's handle.
pub(crate) struct AcmeManager {
    pub config: AcmeConfig,
    pub cache: AcmeCache,
    pub challenges: Arc<Challenges>,
    pub reloader: Arc<TlsReloader>,
    pub metrics: Arc<Metrics>,
    /// A plain listener runs: HTTP-01 can be answered.
    pub http_listener: bool,
    /// Renew now, whatever the certificate's age.
    pub renew_now: Notify,
}

/// When a certificate is renewed: a third of its lifetime before its end.
fn renewal_time(certificate: &CertificateInfo) -> SystemTime {
    let lifetime = certificate
        .not_after
        .duration_since(certificate.not_before)
        .unwrap_or_default();
    certificate.not_after - lifetime / 3
}

impl AcmeManager {
    /// Serves the cached certificate when there is a usable one, without
    /// contacting the CA. Returns whether it did.
    pub fn load_cached(&self) -> Result<bool, AcmeError> {
        let (certificate_path, key_path) = (self.cache.certificate_path(), self.cache.key_path());
        if !certificate_path.exists() || !key_path.exists() {
            return Ok(false);
        }
        let options = TlsOptions {
            cert_path: certificate_path.display().to_string(),
            key_path: key_path.display().to_string(),
            ..TlsOptions::default()
        };
        let (key, certificate, _) = load_certified_key(&options, self.reloader.provider())
            .map_err(|e| AcmeError::CacheContent {
                path: certificate_path.clone(),
                reason: e.to_string(),
            })?;
        info!(
            serial = %certificate.serial,
            expires = %rfc3339(certificate.not_after),
            "ACME certificate loaded from the cache {}",
            certificate_path.display()
        );
        warn_if_expiring(&certificate);
        self.reloader.install(key, certificate);
        Ok(true)
    }

    /// Orders a certificate, caches it and serves it. Unless `forced`, a
    /// certificate another server sharing the cache obtained meanwhile (not
    /// yet due) is served instead.
    async fn obtain(&self, forced: bool) -> Result<CertificateInfo, AcmeError> {
        let _lock = self.cache.lock(self.config.order_timeout).await?;
        if !forced
            && self.load_cached().unwrap_or(false)
            && let Some(certificate) = self.reloader.certificate()
            && renewal_time(&certificate) > SystemTime::now()
        {
            return Ok(certificate);
        }
        let account = account(&self.config, &self.cache).await?;
        self.metrics.acme_order();
        let issued = order_certificate(
            &self.config,
            &account,
            &self.challenges,
            self.reloader.provider(),
            self.http_listener,
        )
        .await?;
        self.cache
            .write(&self.cache.key_path(), issued.key_pem.as_bytes())?;
        self.cache
            .write(&self.cache.certificate_path(), issued.chain_pem.as_bytes())?;
        if !self.load_cached()? {
            return Err(AcmeError::CacheContent {
                path: self.cache.certificate_path(),
                reason: "written but not found again".to_owned(),
            });
        }
        self.reloader.certificate().ok_or(AcmeError::CacheContent {
            path: self.cache.certificate_path(),
            reason: "not served after loading".to_owned(),
        })
    }
}

/// The renewal task: runs until the server stops.
pub(crate) async fn run(manager: Arc<AcmeManager>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = manager.config.retry_initial;
    let mut forced = false;
    loop {
        let wait = match manager.reloader.certificate() {
            None => Duration::ZERO,
            Some(_) if forced => Duration::ZERO,
            Some(certificate) => renewal_time(&certificate)
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        };
        if !wait.is_zero() {
            // Long sleeps are cut in pieces so a changed clock is noticed.
            tokio::select! {
                _ = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => continue,
                _ = manager.renew_now.notified() => forced = true,
                changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
            }
            continue;
        }
        let started = std::time::Instant::now();
        match manager.obtain(forced).await {
            Ok(certificate) => {
                forced = false;
                backoff = manager.config.retry_initial;
                manager.metrics.acme_issued();
                info!(
                    subject = %certificate.subject,
                    serial = %certificate.serial,
                    expires = %rfc3339(certificate.not_after),
                    renews = %rfc3339(renewal_time(&certificate)),
                    took_ms = started.elapsed().as_millis() as u64,
                    "ACME certificate obtained and served"
                );
            }
            Err(error) => {
                manager.metrics.acme_failure();
                warn!(
                    %error,
                    directory = %manager.config.directory_url,
                    retry_in_ms = backoff.as_millis() as u64,
                    serving = manager.reloader.certificate().is_some(),
                    "ACME certificate order failed; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = manager.renew_now.notified() => {}
                    changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
                }
                backoff = (backoff * 2).min(manager.config.retry_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_when_a_third_of_the_lifetime_is_left() {
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let certificate = CertificateInfo {
            subject: String::new(),
            serial: String::new(),
            not_before,
            not_after: not_before + Duration::from_secs(90 * 86_400),
            chain_len: 2,
        };
        assert_eq!(
            renewal_time(&certificate),
            not_before + Duration::from_secs(60 * 86_400)
        );
    }
}
