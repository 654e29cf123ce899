//! Signing in before the load starts (`docs/PROTOCOL.md`: fetch_nonce, then
//! authenticate with an EIP-191 signature over the challenge).

use std::time::Duration;

use circle_protocol::{FetchNonceResult, SigningKey, keccak256};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::net::Ws;

/// A throwaway key for this run: derived from the clock and pid, good enough
/// to be distinct between runs (it guards nothing).
pub fn ephemeral_key() -> SigningKey {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut seed = format!("circle-bench {nanos} {}", std::process::id()).into_bytes();
    loop {
        let secret = keccak256(&seed);
        // All but a 2^-128 sliver of 32-byte strings are valid keys.
        if let Ok(key) = SigningKey::from_bytes(&secret) {
            return key;
        }
        seed.push(b'+');
    }
}

/// Signs in on `ws`. The error is a label for the error counts.
pub async fn sign_in(ws: &mut Ws, key: &SigningKey) -> Result<(), &'static str> {
    let pubkey = key.public_key().to_compressed_hex();
    let fetch = json!({"jsonrpc":"2.0","id":1,"method":"fetch_nonce","params":{"pubkey":pubkey}});
    let answer = call(ws, fetch.to_string()).await?;
    let challenge: FetchNonceResult =
        serde_json::from_value(answer.get("result").cloned().ok_or("auth_fetch_nonce_error")?)
            .map_err(|_| "auth_fetch_nonce_bad_result")?;
    let signature = key.sign_personal_message(&challenge.message).to_hex();
    let authenticate = json!({"jsonrpc":"2.0","id":2,"method":"authenticate","params":{"signature":signature}});
    let answer = call(ws, authenticate.to_string()).await?;
    if answer.pointer("/result/authenticated") == Some(&serde_json::Value::Bool(true)) {
        Ok(())
    } else {
        Err("auth_rejected")
    }
}

async fn call(ws: &mut Ws, request: String) -> Result<serde_json::Value, &'static str> {
    ws.send(Message::text(request)).await.map_err(|_| "auth_io")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "auth_timeout")?
            .ok_or("auth_closed")?
            .map_err(|_| "auth_io")?;
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).map_err(|_| "auth_unparseable"),
            Message::Close(_) => return Err("auth_closed"),
            // Pings are answered by tungstenite itself.
            _ => continue,
        }
    }
}
