//! The worked sign-in example of `docs/PROTOCOL.md`, checked against this
//! crate: the document's message, hash, signature, key, address and JSON
//! transcript must be exactly what the crate computes from the document's
//! own inputs.
//!
//! Each checked block of the document is a fenced code block directly after
//! an HTML comment `<!-- check:NAME -->`.

#![cfg(feature = "crypto")]

use circle_protocol::{
    AuthenticateParams, AuthenticateResult, FetchNonceParams, FetchNonceResult, Id, PlayParams,
    PlayResult, PublicKey, Request, Response, SignInChallenge, Signature, SigningKey, WhoamiResult,
    eip191_hash, method, parse_rfc3339_utc, recover_personal_signer,
};

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md");

fn document() -> String {
    std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("cannot read {DOC_PATH}: {e}"))
}

/// The text of the fenced block right after `<!-- check:NAME -->`, without
/// the newline that ends its last line.
fn block<'a>(doc: &'a str, name: &str) -> &'a str {
    let marker = format!("<!-- check:{name} -->");
    let mut found = doc.match_indices(&marker);
    let (at, _) = found
        .next()
        .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no {marker}"));
    assert!(found.next().is_none(), "{marker} appears twice");
    let after = &doc[at + marker.len()..];
    let after = after
        .strip_prefix('\n')
        .unwrap_or_else(|| panic!("{marker} must be followed by a new line"));
    let fence_end = after
        .find('\n')
        .unwrap_or_else(|| panic!("no block after {marker}"));
    let fence = &after[..fence_end];
    assert!(
        fence.starts_with("```"),
        "{marker} must be followed directly by a fenced block, found {fence:?}"
    );
    let body = &after[fence_end + 1..];
    let close = body
        .find("\n```\n")
        .unwrap_or_else(|| panic!("the block after {marker} is not closed"));
    &body[..close]
}

/// `key: value` lines of a block.
fn fields<'a>(doc: &'a str, name: &str) -> Vec<(&'a str, &'a str)> {
    block(doc, name)
        .lines()
        .map(|line| {
            let (key, value) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("line {line:?} of block {name} is not `key: value`"));
            (key.trim(), value.trim())
        })
        .collect()
}

fn field<'a>(fields: &[(&str, &'a str)], key: &str) -> &'a str {
    let mut values = fields.iter().filter(|(k, _)| *k == key);
    let (_, value) = values
        .next()
        .unwrap_or_else(|| panic!("no field {key:?} in {fields:?}"));
    assert!(values.next().is_none(), "field {key:?} appears twice");
    value
}

/// The document's inputs, as a challenge (address derived from the key).
fn challenge_from_inputs(doc: &str) -> (SigningKey, SignInChallenge) {
    let inputs = fields(doc, "inputs");
    let key = SigningKey::from_hex(field(&inputs, "private key")).unwrap();
    let time = |name| parse_rfc3339_utc(field(&inputs, name)).unwrap();
    let challenge = SignInChallenge {
        domain: field(&inputs, "domain").to_owned(),
        address: key.address().to_checksum_string(),
        circle_name: field(&inputs, "circle name").to_owned(),
        circle_public_key: field(&inputs, "circle public key").to_owned(),
        uri: field(&inputs, "uri").to_owned(),
        nonce: field(&inputs, "nonce").to_owned(),
        issued_at: time("issued at"),
        expiration_time: time("expiration time"),
    };
    challenge.validate().unwrap();
    (key, challenge)
}

fn request<'d>(doc: &'d str, name: &str) -> Request<'d> {
    Request::parse(block(doc, name)).unwrap_or_else(|e| panic!("block {name}: {e}"))
}

/// A request's id, read as the protocol's [`Id`].
fn id_of(request: &Request) -> Option<Id> {
    request
        .id
        .map(|id| serde_json::from_str(id.get()).expect("an id the protocol allows"))
}

/// A response block, checked to answer `request` by id, decoded as `T`.
fn response<T: serde::de::DeserializeOwned>(doc: &str, name: &str, request: &Request) -> T {
    let response: Response = serde_json::from_str(block(doc, name))
        .unwrap_or_else(|e| panic!("block {name} is not a JSON-RPC response: {e}"));
    assert_eq!(response.jsonrpc, "2.0", "{name}");
    assert_eq!(Some(&response.id), id_of(request).as_ref(), "{name}: id");
    response
        .into_result()
        .unwrap_or_else(|e| panic!("block {name}: {e}"))
}

#[test]
fn identity_is_derived_from_the_key() {
    let doc = document();
    let (key, _) = challenge_from_inputs(&doc);
    let identity = fields(&doc, "identity");
    assert_eq!(
        field(&identity, "public key"),
        key.public_key().to_compressed_hex()
    );
    assert_eq!(
        field(&identity, "address"),
        key.address().to_checksum_string()
    );
}

#[test]
fn message_is_built_from_the_inputs_byte_for_byte() {
    let doc = document();
    let (_, challenge) = challenge_from_inputs(&doc);
    let message = block(&doc, "message");
    assert_eq!(message, challenge.to_message());
    assert_eq!(SignInChallenge::parse(message).unwrap(), challenge);
}

#[test]
fn prehash_is_the_eip191_hash_of_the_message() {
    let doc = document();
    let message = block(&doc, "message");
    let prehash = fields(&doc, "prehash");
    let length: usize = field(&prehash, "length").parse().unwrap();
    assert_eq!(length, message.len());
    let prefix = format!("\x19Ethereum Signed Message:\n{}", message.len());
    assert_eq!(field(&prehash, "prefix"), hex::encode(prefix.as_bytes()));
    assert_eq!(
        field(&prehash, "keccak256"),
        format!("0x{}", hex::encode(eip191_hash(message.as_bytes())))
    );
}

#[test]
fn signature_is_made_by_the_key_and_recovers_its_address() {
    let doc = document();
    let (key, _) = challenge_from_inputs(&doc);
    let message = block(&doc, "message");
    let documented_fields = fields(&doc, "signature");
    let documented = field(&documented_fields, "signature");

    assert_eq!(key.sign_personal_message(message).to_hex(), documented);

    let signature = Signature::from_hex(documented).unwrap();
    let signer = recover_personal_signer(message, &signature).unwrap();
    let identity = fields(&doc, "identity");
    assert_eq!(
        signer,
        PublicKey::from_hex(field(&identity, "public key")).unwrap()
    );
    assert_eq!(
        signer.address().to_checksum_string(),
        field(&identity, "address")
    );

    // r ‖ s ‖ v, from the 130 hex digits after `0x`.
    let digits = &signature.to_hex()[2..];
    assert_eq!(
        field(&documented_fields, "r"),
        format!("0x{}", &digits[..64])
    );
    assert_eq!(
        field(&documented_fields, "s"),
        format!("0x{}", &digits[64..128])
    );
    assert_eq!(
        field(&documented_fields, "v"),
        format!("0x{}", &digits[128..])
    );
}

#[test]
fn json_transcript_fits_the_protocol_types_and_the_values_above() {
    let doc = document();
    let (key, challenge) = challenge_from_inputs(&doc);
    let message = block(&doc, "message");
    let signature = field(&fields(&doc, "signature"), "signature");
    let pubkey = key.public_key().to_compressed_hex();

    let fetch = request(&doc, "fetch_nonce.request");
    assert_eq!(fetch.method, method::FETCH_NONCE);
    let params: FetchNonceParams = fetch.parse_params().unwrap();
    assert_eq!(params.pubkey.as_deref(), Some(pubkey.as_str()));
    assert_eq!(params.address, None);
    let challenge_result: FetchNonceResult = response(&doc, "fetch_nonce.response", &fetch);
    assert_eq!(challenge_result.message, message);
    assert_eq!(challenge_result.nonce, challenge.nonce);
    assert_eq!(challenge_result.expires_at, challenge.expiration_time);

    let authenticate = request(&doc, "authenticate.request");
    assert_eq!(authenticate.method, method::AUTHENTICATE);
    let params: AuthenticateParams = authenticate.parse_params().unwrap();
    assert_eq!(params.signature, signature);
    let signed_in: AuthenticateResult = response(&doc, "authenticate.response", &authenticate);
    assert!(signed_in.authenticated);
    assert_eq!(signed_in.pubkey, pubkey);
    assert_eq!(signed_in.address, key.address().to_checksum_string());

    let whoami = request(&doc, "whoami.request");
    assert_eq!(whoami.method, method::WHOAMI);
    let me: WhoamiResult = response(&doc, "whoami.response", &whoami);
    assert!(me.authenticated);
    assert_eq!(me.pubkey.as_deref(), Some(pubkey.as_str()));
    assert_eq!(me.circle.name, challenge.circle_name);
    assert_eq!(me.circle.public_key, challenge.circle_public_key);

    let play = request(&doc, "play.request");
    assert_eq!(play.method, method::PLAY);
    let params: PlayParams = play.parse_params().unwrap();
    assert!(!params.script.is_empty());
    let output: PlayResult = response(&doc, "play.response", &play);
    assert!(!output.output.is_empty());

    // One request per step, each with its own id.
    let ids = [&fetch, &authenticate, &whoami, &play].map(|r| id_of(r).unwrap());
    for (i, id) in ids.iter().enumerate() {
        assert!(matches!(id, Id::Number(_)), "{id}");
        assert!(!ids[..i].contains(id), "id {id} is used twice");
    }
}
