//! Signing in the browser is byte-identical to native signing: the
//! ethers.js vectors (`src/protocol/tests/vectors/eip191.json`, which the
//! native tests check too) are embedded at compile time and every key signs
//! every message in headless Chromium (wasm-bindgen-test, run by
//! `bash .ci/browser-tests.sh`). RFC 6979 makes the signatures
//! deterministic, so equal bytes mean the same code computed the same thing.
//!
//! Natively this file compiles to nothing.

#![cfg(target_arch = "wasm32")]

use circle_client_ws::circle_protocol::{
    PublicKey, SignInChallenge, Signature, SigningKey, eip191_hash, recover_personal_signer,
};
use serde_json::Value;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const VECTORS: &str = include_str!("../../protocol/tests/vectors/eip191.json");

fn vectors() -> Vec<Value> {
    let json: Value = serde_json::from_str(VECTORS).expect("the vectors file is JSON");
    let vectors = json["vectors"].as_array().cloned().unwrap_or_default();
    assert!(vectors.len() >= 20, "expected the full vector set");
    vectors
}

fn field<'a>(vector: &'a Value, name: &str) -> &'a str {
    vector[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector lacks {name}"))
}

#[wasm_bindgen_test]
fn every_vector_signs_byte_for_byte_in_the_browser() {
    for (i, vector) in vectors().iter().enumerate() {
        let message = field(vector, "message");
        let context = format!("vector {i} ({message:?})");
        let key = SigningKey::from_hex(field(vector, "private_key")).expect("vector key");

        let expected = field(vector, "signature").to_ascii_lowercase();
        assert_eq!(
            key.sign_personal_message(message).to_hex(),
            expected,
            "{context}"
        );

        let public = key.public_key();
        let compressed = field(vector, "public_key_compressed");
        assert_eq!(
            public.to_compressed_hex(),
            compressed.trim_start_matches("0x"),
            "{context}"
        );
        assert_eq!(
            public.address().to_checksum_string(),
            field(vector, "address"),
            "{context}"
        );
        assert_eq!(
            format!("0x{}", hex_lower(&eip191_hash(message.as_bytes()))),
            field(vector, "eip191_hash"),
            "{context}"
        );

        // Verification, as the server does it, also works in the browser.
        let signature = Signature::from_hex(&expected).expect("vector signature");
        let signer = recover_personal_signer(message, &signature).expect("recoverable");
        assert_eq!(
            signer,
            PublicKey::from_hex(compressed).expect("vector key"),
            "{context}"
        );
    }
}

#[wasm_bindgen_test]
fn the_sign_in_challenge_vector_parses_and_names_its_signer() {
    let siwe = vectors()
        .into_iter()
        .find(|vector| field(vector, "message").contains("wants you to sign in"))
        .expect("a Sign-In with Ethereum vector");
    let challenge = SignInChallenge::parse(field(&siwe, "message")).expect("parses");
    assert_eq!(challenge.to_message(), field(&siwe, "message"));
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
