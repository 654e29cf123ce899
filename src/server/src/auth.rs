//! Sign-in for one connection: the challenge it was given and who it proved
//! to be.
//!
//! A nonce lives in the state of the connection that fetched it, so it is
//! bound to that connection by construction: a signature over another
//! connection's challenge simply does not match this one's. Each challenge
//! is consumed by the first `authenticate` that tries it, successful or not.

use std::time::{SystemTime, UNIX_EPOCH};

use circle_protocol::{
    Address, AuthenticateParams, AuthenticateResult, FetchNonceParams, FetchNonceResult, PublicKey,
    RpcError, SignInChallenge, Signature, codes, recover_personal_signer,
};
use rand::Rng;
use rand::distr::Alphanumeric;

/// Length of generated nonces: 24 alphanumerics carry about 143 bits.
const NONCE_LEN: usize = 24;

/// Who a caller claims to be in `fetch_nonce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claimed {
    PublicKey(PublicKey),
    Address(Address),
}

impl Claimed {
    fn from_params(pubkey: Option<&str>, address: Option<&str>) -> Result<Option<Claimed>, String> {
        match (pubkey, address) {
            (Some(_), Some(_)) => Err("give either pubkey or address, not both".to_owned()),
            (Some(pubkey), None) => PublicKey::from_hex(pubkey)
                .map(|key| Some(Claimed::PublicKey(key)))
                .map_err(|e| format!("invalid pubkey: {e}")),
            (None, Some(address)) => Address::from_hex(address)
                .map(|address| Some(Claimed::Address(address)))
                .map_err(|e| format!("invalid address: {e}")),
            (None, None) => Ok(None),
        }
    }

    fn address(&self) -> Address {
        match self {
            Claimed::PublicKey(key) => key.address(),
            Claimed::Address(address) => *address,
        }
    }

    fn is_signed_by(&self, signer: &PublicKey) -> bool {
        match self {
            Claimed::PublicKey(key) => key == signer,
            Claimed::Address(address) => signer.address() == *address,
        }
    }
}

/// The circle-wide facts every challenge carries.
#[derive(Clone, Debug)]
pub(crate) struct ChallengeSettings {
    pub circle_name: String,
    pub circle_public_key: String,
    pub nonce_ttl_secs: u64,
}

/// Where this connection's challenges point: taken from its upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChallengeOrigin {
    /// `domain` of the sign-in message.
    pub domain: String,
    /// `URI` of the sign-in message: this endpoint.
    pub uri: String,
}

#[derive(Debug)]
struct PendingChallenge {
    claimed: Claimed,
    message: String,
    expires_at: u64,
}

/// Authentication state of one connection.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// Boxed: it lives only between `fetch_nonce` and `authenticate`, and
    /// inline it would take 0.17 KB of every connection's task for good.
    pending: Option<Box<PendingChallenge>>,
    /// Whether `authenticate` succeeded. The caller's key is kept once, in
    /// the connection's script context, which `authenticate`'s answer
    /// builds: an idle signed-in connection holds no second copy.
    signed_in: bool,
    failed_attempts: u32,
}

impl AuthState {
    /// Whether the connection has signed in.
    pub fn is_signed_in(&self) -> bool {
        self.signed_in
    }

    /// Failed `authenticate` calls so far on this connection.
    pub fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// `fetch_nonce`: issues a fresh challenge, replacing any earlier one.
    pub fn issue_challenge(
        &mut self,
        params: &FetchNonceParams,
        settings: &ChallengeSettings,
        origin: &ChallengeOrigin,
    ) -> Result<FetchNonceResult, RpcError> {
        let claimed = Claimed::from_params(params.pubkey.as_deref(), params.address.as_deref())
            .map_err(RpcError::invalid_params)?
            .ok_or_else(|| RpcError::invalid_params("fetch_nonce needs a pubkey or an address"))?;
        let nonce: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(NONCE_LEN)
            .map(char::from)
            .collect();
        let issued_at = unix_now();
        let expires_at = issued_at.saturating_add(settings.nonce_ttl_secs);
        let challenge = SignInChallenge {
            domain: origin.domain.clone(),
            address: claimed.address().to_checksum_string(),
            circle_name: settings.circle_name.clone(),
            circle_public_key: settings.circle_public_key.clone(),
            uri: origin.uri.clone(),
            nonce: nonce.clone(),
            issued_at,
            expiration_time: expires_at,
        };
        // The domain comes from the client's own headers: refuse one that
        // would not read back as the same message.
        challenge.validate().map_err(|e| {
            RpcError::invalid_request(format!(
                "cannot build a sign-in challenge for this connection: {e}"
            ))
        })?;
        let message = challenge.to_message();
        self.pending = Some(Box::new(PendingChallenge {
            claimed,
            message: message.clone(),
            expires_at,
        }));
        Ok(FetchNonceResult {
            nonce,
            message,
            expires_at,
        })
    }

    /// `authenticate`: checks the signature over this connection's pending
    /// challenge. Every failure counts toward the connection's limit.
    pub fn authenticate(
        &mut self,
        params: &AuthenticateParams,
    ) -> Result<AuthenticateResult, RpcError> {
        let result = self.try_authenticate(params);
        if result.is_err() {
            self.count_failure();
        }
        result
    }

    /// Counts a failed `authenticate` that never reached the signature
    /// check (its params could not be read): every failed attempt counts.
    pub fn count_failure(&mut self) {
        self.failed_attempts = self.failed_attempts.saturating_add(1);
    }

    fn try_authenticate(
        &mut self,
        params: &AuthenticateParams,
    ) -> Result<AuthenticateResult, RpcError> {
        let failed = |message: String| RpcError::new(codes::AUTHENTICATION_FAILED, message);
        // Taking the challenge out makes it single-use whatever happens next.
        let pending = self.pending.take().ok_or_else(|| {
            failed("no sign-in challenge is pending on this connection: call fetch_nonce first (a nonce is single-use and bound to the connection that fetched it)".to_owned())
        })?;
        if unix_now() >= pending.expires_at {
            return Err(failed(
                "the nonce has expired: call fetch_nonce again".to_owned(),
            ));
        }
        let repeated = Claimed::from_params(params.pubkey.as_deref(), params.address.as_deref())
            .map_err(failed)?;
        if let Some(repeated) = repeated {
            let same = match (repeated, pending.claimed) {
                (Claimed::PublicKey(a), Claimed::PublicKey(b)) => a == b,
                (Claimed::Address(a), claimed) => a == claimed.address(),
                (Claimed::PublicKey(key), Claimed::Address(address)) => key.address() == address,
            };
            if !same {
                return Err(failed(
                    "the key given to authenticate is not the one given to fetch_nonce".to_owned(),
                ));
            }
        }
        let signature = Signature::from_hex(&params.signature)
            .map_err(|e| failed(format!("invalid signature: {e}")))?;
        let signer = recover_personal_signer(&pending.message, &signature)
            .map_err(|e| failed(format!("invalid signature: {e}")))?;
        if !pending.claimed.is_signed_by(&signer) {
            return Err(failed(
                "the signature was not made by the key given to fetch_nonce".to_owned(),
            ));
        }
        let result = AuthenticateResult {
            authenticated: true,
            pubkey: signer.to_compressed_hex(),
            address: signer.address().to_checksum_string(),
        };
        self.signed_in = true;
        Ok(result)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
