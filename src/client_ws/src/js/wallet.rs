//! Signers backed by the page: a JavaScript callback
//! (`authenticateWith(address, sign)`), and an EIP-1193 provider such as a
//! browser wallet's `window.ethereum` (`authenticateWithWallet(provider)`).
//!
//! Both wait on JavaScript promises; the client puts its sign timeout
//! around every wait (`signTimeoutMs`), so a wallet prompt nobody answers
//! ends in a `Timeout`, not a promise that never settles. A provider's
//! error keeps its code: `4001` (the user rejected the request) becomes
//! [`SignerError::Rejected`], anything else [`SignerError::Failed`] with
//! the provider's code.

use std::time::Duration;

use circle_protocol::{Address, Signature};
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::error::USER_REJECTED;
use crate::rt;
use crate::{CircleWsClientError, SignFuture, Signer, SignerError};

/// Signs by calling a page's function `(message) => signature` (a string of
/// 130 hex digits, or a promise of one).
pub(crate) struct CallbackSigner {
    pub(crate) address: Address,
    pub(crate) sign: Function,
}

impl Signer for CallbackSigner {
    fn address(&self) -> Address {
        self.address
    }

    fn sign_message<'a>(&'a self, message: &'a str) -> SignFuture<'a> {
        Box::pin(async move {
            // A throwing callback is a rejected promise, like an async one.
            let answer = self
                .sign
                .call1(&JsValue::NULL, &JsValue::from_str(message))
                .map(|value| Promise::resolve(&value))
                .unwrap_or_else(|thrown| Promise::reject(&thrown));
            let value = JsFuture::from(answer).await.map_err(signer_error)?;
            signature_from(&value)
        })
    }
}

/// Signs through an EIP-1193 provider's `personal_sign`, with the message
/// hex-encoded (as wallets expect) and the account it gave.
pub(crate) struct WalletSigner {
    provider: Object,
    address: Address,
}

impl Signer for WalletSigner {
    fn address(&self) -> Address {
        self.address
    }

    fn sign_message<'a>(&'a self, message: &'a str) -> SignFuture<'a> {
        Box::pin(async move {
            let params = Array::of2(
                &JsValue::from_str(&format!("0x{}", hex_encode(message.as_bytes()))),
                &JsValue::from_str(&self.address.to_checksum_string()),
            );
            let value = request(&self.provider, "personal_sign", Some(params)).await?;
            signature_from(&value)
        })
    }
}

impl WalletSigner {
    /// Asks the provider for its account (`eth_requestAccounts`: a wallet
    /// asks its user to connect the page) within `timeout`, and makes a
    /// signer for the first one.
    pub(crate) async fn connect(
        provider: JsValue,
        timeout: Duration,
    ) -> Result<WalletSigner, CircleWsClientError> {
        let provider: Object = match provider.dyn_into::<Object>() {
            Ok(object) if has_request_function(&object) => object,
            _ => {
                return Err(SignerError::InvalidAnswer {
                    message: "the provider is not an EIP-1193 provider (it has no request \
                              function); pass window.ethereum"
                        .into(),
                }
                .into());
            }
        };
        let accounts = rt::timeout(timeout, request(&provider, "eth_requestAccounts", None))
            .await
            .map_err(|_| CircleWsClientError::Timeout {
                operation: "eth_requestAccounts".into(),
                after: timeout,
            })??;
        let first = Array::from(&accounts).get(0);
        let address = first
            .as_string()
            .ok_or_else(|| SignerError::InvalidAnswer {
                message: "eth_requestAccounts gave no account".into(),
            })
            .and_then(|text| {
                Address::from_hex(&text).map_err(|e| SignerError::InvalidAnswer {
                    message: format!("eth_requestAccounts gave {text:?}, not an address: {e}"),
                })
            })?;
        Ok(WalletSigner { provider, address })
    }
}

fn has_request_function(provider: &Object) -> bool {
    Reflect::get(provider, &JsValue::from_str("request")).is_ok_and(|value| value.is_function())
}

/// `provider.request({method, params})`, awaited.
async fn request(
    provider: &Object,
    method: &str,
    params: Option<Array>,
) -> Result<JsValue, SignerError> {
    let arguments = Object::new();
    let set = |name: &str, value: &JsValue| {
        Reflect::set(&arguments, &JsValue::from_str(name), value).map_err(signer_error)
    };
    set("method", &JsValue::from_str(method))?;
    if let Some(params) = params {
        set("params", &params)?;
    }
    let request: Function = Reflect::get(provider, &JsValue::from_str("request"))
        .map_err(signer_error)?
        .unchecked_into();
    let answer = request
        .call1(provider, &arguments)
        .map(|value| Promise::resolve(&value))
        .unwrap_or_else(|thrown| Promise::reject(&thrown));
    JsFuture::from(answer).await.map_err(signer_error)
}

/// A thrown value or rejection reason as a [`SignerError`]: EIP-1193 errors
/// are objects with a numeric `code` and a `message`.
fn signer_error(reason: JsValue) -> SignerError {
    let field = |name: &str| Reflect::get(&reason, &JsValue::from_str(name)).ok();
    let code = field("code")
        .and_then(|code| code.as_f64())
        .filter(|code| code.fract() == 0.0)
        .map(|code| code as i64);
    let message = field("message")
        .and_then(|message| message.as_string())
        .or_else(|| reason.as_string())
        .unwrap_or_else(|| "no explanation given".into());
    match code {
        Some(USER_REJECTED) => SignerError::Rejected { message },
        code => SignerError::Failed { code, message },
    }
}

fn signature_from(value: &JsValue) -> Result<Signature, SignerError> {
    let text = value
        .as_string()
        .ok_or_else(|| SignerError::InvalidAnswer {
            message: "the signature is not a string of hex digits".into(),
        })?;
    Signature::from_hex(&text).map_err(|e| SignerError::InvalidAnswer {
        message: format!("not a signature: {e}"),
    })
}

fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}
