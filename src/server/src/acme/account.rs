//! The ACME account: restored from the cache, or created once and cached.
//! Its key is a secret: it goes to a 0600 file and never to the log.

use std::future::Future;
use std::time::Duration;

use instant_acme::{Account, AccountCredentials, NewAccount};
use tracing::info;

use super::cache::AcmeCache;
use super::config::AcmeConfig;
use super::error::AcmeError;

/// Runs one call to the CA with `limit`, naming the `step` in its error.
pub(crate) async fn ca_call<T>(
    step: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, AcmeError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(AcmeError::ca(step, chain(&error))),
        Err(_) => Err(AcmeError::Timeout {
            step,
            seconds: limit.as_secs(),
        }),
    }
}

/// An error with its causes, `: `-separated, so a log line says why
/// (“connection refused”), not only what (“HTTP request failure”).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The account at the configured CA: the cached one, or a new one.
pub(crate) async fn account(config: &AcmeConfig, cache: &AcmeCache) -> Result<Account, AcmeError> {
    let limit = config.request_timeout;
    let builder = || match &config.ca_file {
        Some(path) => Account::builder_with_root(path).map_err(|e| AcmeError::CacheContent {
            path: path.clone(),
            reason: chain(&e),
        }),
        None => Account::builder().map_err(|e| AcmeError::ca("TLS roots", chain(&e))),
    };
    let path = cache.account_path();
    if let Some(bytes) = cache.read(&path)? {
        let credentials: AccountCredentials =
            serde_json::from_slice(&bytes).map_err(|e| AcmeError::CacheContent {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        return ca_call("directory", limit, builder()?.from_credentials(credentials)).await;
    }
    let contacts: Vec<&str> = config.contacts.iter().map(String::as_str).collect();
    let new_account = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = ca_call(
        "new account",
        limit,
        builder()?.create(&new_account, config.directory_url.clone(), None),
    )
    .await?;
    let json = serde_json::to_vec(&credentials).map_err(|e| AcmeError::CacheContent {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    cache.write(&path, &json)?;
    info!(account = %account.id(), "ACME account created at {}", config.directory_url);
    Ok(account)
}
