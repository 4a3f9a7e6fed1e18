//! Token verification (`access::token::TokenVerifier::verify`) with a fixed HS256 secret.
//!
//! The first byte picks the mode:
//! - even: the rest is the token as presented (header, query or first message), any bytes;
//! - odd: the rest is `header JSON` NUL `claims JSON`, signed here with the secret, so the
//!   fuzzer reaches the claim and time checks behind the signature (random bytes never carry
//!   a valid HMAC).
//!
//! Checks beyond "no panic": an accepted token has a non-empty `sub` and `event`, is not
//! expired and not issued in the future at the verification time (with the leeway), and its
//! header says HS256.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use radiogate::access::token::{KeyMaterial, TokenVerifier};
use std::sync::OnceLock;

const SECRET: &[u8] = b"radiogate-fuzz-secret-0123456789abcdef";
/// The verification time, seconds since the Unix epoch (the seeds' `exp` and `iat` are near).
const NOW: u64 = 1_800_000_000;
const LEEWAY: u64 = 30;

fn verifier() -> &'static TokenVerifier {
    static V: OnceLock<TokenVerifier> = OnceLock::new();
    V.get_or_init(|| {
        TokenVerifier::new(
            &KeyMaterial::Hs256 {
                secret: SECRET.to_vec(),
            },
            LEEWAY,
        )
        .expect("fixed secret")
    })
}

fn key() -> &'static EncodingKey {
    static K: OnceLock<EncodingKey> = OnceLock::new();
    K.get_or_init(|| EncodingKey::from_secret(SECRET).expect("fixed secret"))
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key(), Algorithm::HS256)
        .expect("HMAC signing");
    format!("{signing_input}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    } else {
        let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let (header, claims) = rest.split_at(split);
        sign(header, claims.get(1..).unwrap_or_default())
    };
    let Ok(claims) = verifier().verify(&token, NOW) else {
        return;
    };
    assert!(!claims.sub.trim().is_empty(), "empty sub accepted");
    assert!(!claims.event.trim().is_empty(), "empty event accepted");
    assert!(
        NOW < claims.exp.saturating_add(LEEWAY),
        "expired token accepted"
    );
    assert!(claims.iat <= NOW + LEEWAY, "token from the future accepted");
    let header_b64 = token.trim().split('.').next().expect("three parts");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).expect("base64 header"))
            .expect("JSON header");
    assert_eq!(header["alg"], "HS256");
});
