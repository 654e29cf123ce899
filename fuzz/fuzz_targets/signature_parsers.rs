//! Keys, addresses, signatures, sign-in challenges and timestamps from
//! arbitrary input: no panics, and whatever parses must round-trip.
#![no_main]

use circle_protocol::{
    Address, PublicKey, SignInChallenge, Signature, SigningKey, format_rfc3339_utc, parse_rfc3339_utc,
    recover_personal_signer,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bytes) = <[u8; 65]>::try_from(data) {
        if let Ok(signer) = recover_personal_signer("fuzz", &Signature(bytes)) {
            let again = PublicKey::from_hex(&signer.to_compressed_hex()).expect("own output parses");
            assert_eq!(again, signer);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(key) = PublicKey::from_hex(text) {
        assert_eq!(PublicKey::from_hex(&key.to_uncompressed_hex()).ok(), Some(key));
    }
    if let Ok(address) = Address::from_hex(text) {
        assert_eq!(Address::from_hex(&address.to_checksum_string()).ok(), Some(address));
    }
    if let Ok(signature) = Signature::from_hex(text) {
        assert_eq!(Signature::from_hex(&signature.to_hex()).ok(), Some(signature));
        let _ = recover_personal_signer(text, &signature);
    }
    if let Ok(key) = SigningKey::from_hex(text) {
        let signature = key.sign_personal_message(text);
        assert_eq!(recover_personal_signer(text, &signature).ok(), Some(key.public_key()));
    }
    if let Ok(challenge) = SignInChallenge::parse(text) {
        assert_eq!(challenge.to_message(), text, "a parsed challenge writes back byte for byte");
    }
    if let Ok(seconds) = parse_rfc3339_utc(text) {
        assert_eq!(parse_rfc3339_utc(&format_rfc3339_utc(seconds)).ok(), Some(seconds));
    }
});
