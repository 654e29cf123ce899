//! One order: identifiers, challenges answered, finalize with a fresh key,
//! the chain downloaded. The challenges are withdrawn whatever the outcome.

use std::sync::Arc;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls::crypto::CryptoProvider;
use tracing::info;

use super::account::ca_call;
use super::challenge::Challenges;
use super::config::{AcmeChallenge, AcmeConfig};
use super::error::AcmeError;

/// A new certificate: the PEM chain (leaf first) and the PEM key.
pub(crate) struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// What is being answered, withdrawn on drop.
struct Answering<'a> {
    challenges: &'a Challenges,
    http_tokens: Vec<String>,
    tls_domains: Vec<String>,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        for token in &self.http_tokens {
            self.challenges.remove_http(token);
        }
        for domain in &self.tls_domains {
            self.challenges.remove_tls_alpn(domain);
        }
    }
}

/// Orders a certificate for the configured domains.
pub(crate) async fn order_certificate(
    config: &AcmeConfig,
    account: &Account,
    challenges: &Arc<Challenges>,
    provider: &CryptoProvider,
    http_listener: bool,
) -> Result<Issued, AcmeError> {
    let limit = config.request_timeout;
    let identifiers: Vec<Identifier> = config
        .domains
        .iter()
        .map(|domain| Identifier::Dns(domain.clone()))
        .collect();
    let mut order = ca_call(
        "new order",
        limit,
        account.new_order(&NewOrder::new(&identifiers)),
    )
    .await?;
    info!(domains = ?config.domains, "ACME order placed");
    let mut answering = Answering {
        challenges,
        http_tokens: Vec::new(),
        tls_domains: Vec::new(),
    };
    {
        let mut authorizations = order.authorizations();
        loop {
            let next = tokio::time::timeout(limit, authorizations.next())
                .await
                .map_err(|_| AcmeError::Timeout {
                    step: "authorization",
                    seconds: limit.as_secs(),
                })?;
            let Some(authorization) = next else { break };
            let mut authorization = authorization.map_err(|e| AcmeError::ca("authorization", e))?;
            let domain = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError::ChallengeFailed {
                        domain,
                        message: format!("authorization is {other:?}"),
                    });
                }
            }
            let offers = |kind: &ChallengeType| {
                authorization
                    .challenges
                    .iter()
                    .any(|challenge| &challenge.r#type == kind)
            };
            let kind = match config.challenge {
                AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
                AcmeChallenge::Http01 => ChallengeType::Http01,
                _ if offers(&ChallengeType::TlsAlpn01) => ChallengeType::TlsAlpn01,
                _ => ChallengeType::Http01,
            };
            if kind == ChallengeType::Http01 && !http_listener {
                return Err(AcmeError::NoUsableChallenge { domain });
            }
            let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
                AcmeError::NoUsableChallenge {
                    domain: domain.clone(),
                }
            })?;
            let key_authorization = challenge.key_authorization();
            if kind == ChallengeType::TlsAlpn01 {
                challenges.add_tls_alpn(&domain, key_authorization.digest().as_ref(), provider)?;
                answering.tls_domains.push(domain.clone());
            } else {
                challenges.add_http(&challenge.token, key_authorization.as_str());
                answering.http_tokens.push(challenge.token.clone());
            }
            ca_call("challenge ready", limit, challenge.set_ready()).await?;
            info!(%domain, challenge = ?kind, "ACME challenge ready");
        }
    }
    let polling = RetryPolicy::new().timeout(config.order_timeout);
    let status = ca_call(
        "order validation",
        config.order_timeout + limit,
        order.poll_ready(&polling),
    )
    .await?;
    if status != OrderStatus::Ready {
        return Err(failed_challenge(&mut order, config).await);
    }
    drop(answering);

    let key = KeyPair::generate().map_err(|e| AcmeError::Crypto(e.to_string()))?;
    let mut params = CertificateParams::new(config.domains.clone())
        .map_err(|e| AcmeError::Crypto(e.to_string()))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Crypto(e.to_string()))?;
    ca_call("finalize", limit, order.finalize_csr(csr.der())).await?;
    let chain_pem = ca_call(
        "certificate download",
        config.order_timeout + limit,
        order.poll_certificate(&polling),
    )
    .await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The CA's reason for an invalid order: the first failed challenge's.
async fn failed_challenge(order: &mut instant_acme::Order, config: &AcmeConfig) -> AcmeError {
    let mut authorizations = order.authorizations();
    while let Ok(Some(Ok(authorization))) =
        tokio::time::timeout(config.request_timeout, authorizations.next()).await
    {
        for challenge in &authorization.challenges {
            if let Some(problem) = &challenge.error {
                return AcmeError::ChallengeFailed {
                    domain: authorization.identifier().to_string(),
                    message: problem.to_string(),
                };
            }
        }
    }
    AcmeError::ChallengeFailed {
        domain: config.domains.join(", "),
        message: "the CA marked the order invalid".to_owned(),
    }
}
