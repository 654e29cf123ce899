//! The circle a server serves: its name and public key, checked at start
//! (or a fresh key, for development, when none is configured).

use circle_protocol::{SigningKey, parse_circle_public_key};
use serde_json::value::RawValue;
use tracing::warn;

use crate::config::ServerConfig;
use crate::error::ServerError;

/// The circle a server serves.
#[derive(Clone, Debug)]
pub(crate) struct CircleIdentity {
    pub name: String,
    pub public_key: String,
}

impl CircleIdentity {
    /// The circle as JSON (`CircleInfo`), for `whoami`.
    pub fn to_json(&self) -> Box<RawValue> {
        let info = circle_protocol::CircleInfo {
            name: self.name.clone(),
            public_key: self.public_key.clone(),
        };
        // Two plain strings always serialize.
        serde_json::value::to_raw_value(&info).unwrap_or_else(|_| RawValue::NULL.to_owned())
    }

    /// The circle `config` names, with its key checked and compressed.
    pub fn from_config(config: &ServerConfig) -> Result<CircleIdentity, ServerError> {
        if config.circle_name.contains(['\n', '\r']) {
            return Err(ServerError::InvalidConfig(
                "circle_name must be a single line: it is part of the sign-in message".to_owned(),
            ));
        }
        let public_key = if config.circle_public_key.trim().is_empty() {
            let key = ephemeral_circle_key();
            warn!(public_key = %key, "no circle public key configured: using an ephemeral one for this run");
            key
        } else {
            parse_circle_public_key(&config.circle_public_key)
                .map_err(|e| ServerError::InvalidConfig(format!("circle_public_key: {e}")))?
        };
        Ok(CircleIdentity {
            name: config.circle_name.clone(),
            public_key,
        })
    }
}

/// A fresh random circle key, for servers started without one.
fn ephemeral_circle_key() -> String {
    loop {
        let secret: [u8; 32] = rand::random();
        // All but a 2^-128 sliver of 32-byte strings are valid keys.
        if let Ok(key) = SigningKey::from_bytes(&secret) {
            return key.public_key().to_compressed_hex();
        }
    }
}
