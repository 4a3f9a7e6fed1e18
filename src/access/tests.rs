//! Unit tests for roles, token verification/minting and TTL parsing.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::*;

const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/keys/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/keys/rsa_public.pem");
const ED_PRIVATE: &str = include_str!("../../tests/fixtures/keys/ed25519_private.pem");
const ED_PUBLIC: &str = include_str!("../../tests/fixtures/keys/ed25519_public.pem");
/// A second Ed25519 private key, not matching `ED_PUBLIC`.
const ED_OTHER_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINbPjly/N9aMNFWNj/+Lt3lD0YCFLQMfR4emHghBlsIB
-----END PRIVATE KEY-----
";

const SECRET: &[u8] = b"an-hs256-test-secret-of-32-bytes!";
const NOW: u64 = 1_770_000_000; // early 2026
const LEEWAY: u64 = 30;

fn hs256() -> KeyMaterial {
    KeyMaterial::Hs256 {
        secret: SECRET.to_vec(),
    }
}

fn rs256() -> KeyMaterial {
    KeyMaterial::Rs256 {
        public_pem: RSA_PUBLIC.into(),
        private_pem: Some(RSA_PRIVATE.into()),
    }
}

fn rs256_public_only() -> KeyMaterial {
    KeyMaterial::Rs256 {
        public_pem: RSA_PUBLIC.into(),
        private_pem: None,
    }
}

fn eddsa() -> KeyMaterial {
    KeyMaterial::EdDsa {
        public_pem: ED_PUBLIC.into(),
        private_pem: Some(ED_PRIVATE.into()),
    }
}

fn claims() -> Claims {
    Claims {
        sub: "user-42".into(),
        name: "Alice".into(),
        event: "festival-2026".into(),
        role: Role::Dispatch,
        channels: vec!["main".into(), "security".into()],
        device: None,
        link: None,
        iat: NOW - 60,
        exp: NOW + 3600,
    }
}

fn verifier(key: &KeyMaterial) -> TokenVerifier {
    TokenVerifier::new(key, LEEWAY).expect("verifier")
}

fn mint(key: &KeyMaterial, c: &Claims) -> String {
    TokenMinter::new(key)
        .expect("minter")
        .mint(c)
        .expect("mint")
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn b64_json(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

/// Signs arbitrary JSON claims with the test HS256 secret (bypassing `mint`'s checks).
fn hs256_raw(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .expect("encode")
}

fn claims_json() -> Value {
    serde_json::to_value(claims()).expect("to_value")
}

// ---------------------------------------------------------------- roles

#[test]
fn role_from_str_is_case_insensitive() {
    assert_eq!("ADMIN".parse::<Role>(), Ok(Role::Admin));
    assert_eq!("dispatch".parse::<Role>(), Ok(Role::Dispatch));
    assert_eq!(" General ".parse::<Role>(), Ok(Role::General));
    let err = "boss".parse::<Role>().unwrap_err();
    assert_eq!(err.input, "boss");
    assert!(err.to_string().contains("unknown role"));
    assert!("".parse::<Role>().is_err());
}

#[test]
fn role_display_and_serde_use_upper_case() {
    for r in Role::ALL {
        assert_eq!(r.to_string(), r.as_str());
        assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
        assert_eq!(
            serde_json::from_value::<Role>(json!(r.as_str())).unwrap(),
            r
        );
    }
    assert_eq!(Role::Dispatch.to_string(), "DISPATCH");
    assert!(serde_json::from_value::<Role>(json!("admin")).is_err());
}

// ---------------------------------------------------------------- round trips

#[test]
fn hs256_round_trip() {
    let c = claims();
    let token = mint(&hs256(), &c);
    assert_eq!(verifier(&hs256()).verify(&token, NOW), Ok(c));
}

#[test]
fn rs256_round_trip_with_public_only_verifier() {
    let mut c = claims();
    c.device = Some("console-1".into());
    c.role = Role::Admin;
    let token = mint(&rs256(), &c);
    assert_eq!(verifier(&rs256_public_only()).verify(&token, NOW), Ok(c));
}

#[test]
fn eddsa_round_trip() {
    let mut c = claims();
    c.role = Role::General;
    c.channels.clear();
    let token = mint(&eddsa(), &c);
    let public_only = KeyMaterial::EdDsa {
        public_pem: ED_PUBLIC.into(),
        private_pem: None,
    };
    assert_eq!(verifier(&public_only).verify(&token, NOW), Ok(c));
}

#[test]
fn minted_json_uses_agreed_claim_names() {
    let token = mint(&hs256(), &claims());
    let payload = token.split('.').nth(1).unwrap();
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["channels", "event", "exp", "iat", "name", "role", "sub"]
    );
    assert_eq!(v["role"], "DISPATCH");
    let header = token.split('.').next().unwrap();
    let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(h["alg"], "HS256");
    assert_eq!(h["typ"], "JWT");
}

#[test]
fn optional_claims_default_and_extra_claims_are_ignored() {
    let token = hs256_raw(&json!({
        "sub": "u1", "name": "Bob", "event": "e1", "role": "GENERAL", "exp": NOW + 10,
        "iss": "control-plane", "aud": "radiogate", "globalRole": "GENERAL"
    }));
    let c = verifier(&hs256()).verify(&token, NOW).unwrap();
    assert!(c.channels.is_empty());
    assert_eq!(c.device, None);
    assert_eq!(c.iat, 0);
    assert_eq!(c.role, Role::General);
}

#[test]
fn surrounding_whitespace_is_ignored() {
    let token = mint(&hs256(), &claims());
    assert!(verifier(&hs256())
        .verify(&format!("  {token}\n"), NOW)
        .is_ok());
}

// ---------------------------------------------------------------- missing / malformed

#[test]
fn empty_token_is_missing() {
    assert_eq!(verifier(&hs256()).verify("", NOW), Err(TokenError::Missing));
    assert_eq!(
        verifier(&hs256()).verify("  ", NOW),
        Err(TokenError::Missing)
    );
}

#[test]
fn malformed_tokens() {
    let v = verifier(&hs256());
    let good = mint(&hs256(), &claims());
    let mut parts = good.split('.');
    let (h, c, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let cases = [
        "abc".to_owned(),
        "a.b".to_owned(),
        "..".to_owned(),
        "a.b.c.d".to_owned(),
        format!("{good}.{s}"),
        "!!!.@@@.###".to_owned(),
        "eyJ.eyJ.sig".to_owned(),
        // valid header, claims not base64
        format!("{h}.%%%.{s}"),
        // valid header, claims base64 of non-JSON
        format!("{h}.{}.{s}", b64(b"not json at all")),
        // valid header, claims JSON but not an object
        format!("{h}.{}.{s}", b64(b"[1,2,3]")),
        // header JSON but not an object / without alg / alg not a string
        format!("{}.{c}.{s}", b64(b"\"HS256\"")),
        format!("{}.{c}.{s}", b64_json(&json!({"typ": "JWT"}))),
        format!("{}.{c}.{s}", b64_json(&json!({"alg": 256}))),
        // padded base64 is not base64url-without-padding
        format!("{h}=.{c}.{s}"),
        // signature not base64url
        format!("{h}.{c}.{}", "*".repeat(43)),
        // too long
        format!("{h}.{}.{s}", "A".repeat(MAX_TOKEN_LEN)),
    ];
    for t in &cases {
        assert_eq!(v.verify(t, NOW), Err(TokenError::Malformed), "token {t:?}");
    }
}

#[test]
fn crit_header_is_refused() {
    let header = b64_json(&json!({"alg": "HS256", "typ": "JWT", "crit": ["exp"], "exp": 1}));
    let payload = b64_json(&claims_json());
    // Sign it properly so only the crit header is at fault.
    let msg = format!("{header}.{payload}");
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        verifier(&hs256()).verify(&format!("{msg}.{sig}"), NOW),
        Err(TokenError::Malformed)
    );
}

// ---------------------------------------------------------------- alg none / wrong alg

#[test]
fn alg_none_is_refused_by_every_verifier() {
    let payload = b64_json(&claims_json());
    let tokens = [
        format!(
            "{}.{payload}.",
            b64_json(&json!({"alg": "none", "typ": "JWT"}))
        ),
        format!("{}.{payload}.", b64_json(&json!({"alg": "None"}))),
        format!("{}.{payload}.c2ln", b64_json(&json!({"alg": "NONE"}))),
    ];
    for key in [hs256(), rs256_public_only(), eddsa()] {
        let v = verifier(&key);
        for t in &tokens {
            assert_eq!(v.verify(t, NOW), Err(TokenError::AlgNone));
        }
    }
}

#[test]
fn hs256_token_to_rs256_verifier_is_wrong_algorithm() {
    // Includes the classic key-confusion attack: HMAC keyed with the RSA public PEM.
    let confused = KeyMaterial::Hs256 {
        secret: RSA_PUBLIC.as_bytes().to_vec(),
    };
    for key in [hs256(), confused] {
        let token = mint(&key, &claims());
        assert_eq!(
            verifier(&rs256_public_only()).verify(&token, NOW),
            Err(TokenError::WrongAlgorithm {
                expected: "RS256".into(),
                got: "HS256".into()
            })
        );
    }
}

#[test]
fn rs256_token_to_hs256_verifier_is_wrong_algorithm() {
    let token = mint(&rs256(), &claims());
    assert_eq!(
        verifier(&hs256()).verify(&token, NOW),
        Err(TokenError::WrongAlgorithm {
            expected: "HS256".into(),
            got: "RS256".into()
        })
    );
}

#[test]
fn other_algorithms_are_wrong_algorithm() {
    let eddsa_token = mint(&eddsa(), &claims());
    let err = verifier(&rs256_public_only())
        .verify(&eddsa_token, NOW)
        .unwrap_err();
    assert_eq!(
        err,
        TokenError::WrongAlgorithm {
            expected: "RS256".into(),
            got: "EdDSA".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "wrong token algorithm: expected RS256, got EdDSA"
    );

    let payload = b64_json(&claims_json());
    for alg in ["HS512", "PS256", "rs256", "XYZ"] {
        let t = format!("{}.{payload}.c2ln", b64_json(&json!({ "alg": alg })));
        assert!(
            matches!(
                verifier(&rs256_public_only()).verify(&t, NOW),
                Err(TokenError::WrongAlgorithm { ref got, .. }) if got == alg
            ),
            "alg {alg}"
        );
    }
    let long = "X".repeat(1000);
    let t = format!("{}.{payload}.c2ln", b64_json(&json!({ "alg": long })));
    assert_eq!(
        verifier(&hs256()).verify(&t, NOW),
        Err(TokenError::WrongAlgorithm {
            expected: "HS256".into(),
            got: "X".repeat(32)
        })
    );
}

// ---------------------------------------------------------------- signatures

#[test]
fn forged_hs256_token_is_bad_signature() {
    let other = KeyMaterial::Hs256 {
        secret: b"some-other-secret-some-other-secret".to_vec(),
    };
    let token = mint(&other, &claims());
    assert_eq!(
        verifier(&hs256()).verify(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn tampered_claims_are_bad_signature() {
    for key in [hs256(), rs256(), eddsa()] {
        let token = mint(&key, &claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut escalated = claims_json();
        escalated["role"] = json!("ADMIN");
        let forged_payload = b64_json(&escalated);
        parts[1] = &forged_payload;
        let forged = parts.join(".");
        assert_eq!(
            verifier(&key).verify(&forged, NOW),
            Err(TokenError::BadSignature),
            "{}",
            key.algorithm_name()
        );
    }
}

#[test]
fn empty_truncated_or_flipped_signature_is_bad_signature() {
    for key in [hs256(), rs256(), eddsa()] {
        let token = mint(&key, &claims());
        let (msg, sig) = token.rsplit_once('.').unwrap();
        let v = verifier(&key);
        assert_eq!(
            v.verify(&format!("{msg}."), NOW),
            Err(TokenError::BadSignature)
        );
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw.truncate(raw.len() - 3);
        assert_eq!(
            v.verify(&format!("{msg}.{}", b64(&raw)), NOW),
            Err(TokenError::BadSignature)
        );
        let mut flipped = URL_SAFE_NO_PAD.decode(sig).unwrap();
        flipped[0] ^= 1;
        assert_eq!(
            v.verify(&format!("{msg}.{}", b64(&flipped)), NOW),
            Err(TokenError::BadSignature)
        );
    }
}

#[test]
fn eddsa_token_from_another_key_is_bad_signature() {
    let other = KeyMaterial::EdDsa {
        public_pem: String::new(),
        private_pem: Some(ED_OTHER_PRIVATE.into()),
    };
    // The minter refuses this pairing (bad public key), so sign directly.
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims(),
        &jsonwebtoken::EncodingKey::from_ed_pem(ED_OTHER_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(TokenMinter::new(&other), Err(TokenError::Key(_))));
    assert_eq!(
        verifier(&eddsa()).verify(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

// ---------------------------------------------------------------- time

#[test]
fn expired_token() {
    let token = mint(&hs256(), &claims());
    let v = verifier(&hs256());
    assert_eq!(v.verify(&token, u64::MAX), Err(TokenError::Expired));
    assert_eq!(
        v.verify(&token, NOW + 10 * 86_400),
        Err(TokenError::Expired)
    );
}

#[test]
fn expiry_boundary_respects_leeway() {
    let c = claims();
    let token = mint(&hs256(), &c);
    let v = verifier(&hs256());
    assert!(v.verify(&token, c.exp).is_ok());
    assert!(v.verify(&token, c.exp + LEEWAY - 1).is_ok());
    assert_eq!(v.verify(&token, c.exp + LEEWAY), Err(TokenError::Expired));
    let strict = TokenVerifier::new(&hs256(), 0).unwrap();
    assert!(strict.verify(&token, c.exp - 1).is_ok());
    assert_eq!(strict.verify(&token, c.exp), Err(TokenError::Expired));
}

#[test]
fn future_iat_or_nbf_is_not_yet_valid() {
    let c = claims();
    let token = mint(&hs256(), &c);
    let v = verifier(&hs256());
    assert!(v.verify(&token, c.iat - LEEWAY).is_ok());
    assert_eq!(
        v.verify(&token, c.iat - LEEWAY - 1),
        Err(TokenError::NotYetValid)
    );

    let mut raw = claims_json();
    raw["nbf"] = json!(NOW + 600);
    let token = hs256_raw(&raw);
    assert_eq!(v.verify(&token, NOW), Err(TokenError::NotYetValid));
    assert!(v.verify(&token, NOW + 600).is_ok());
    raw["nbf"] = json!("soon");
    assert!(matches!(
        v.verify(&hs256_raw(&raw), NOW),
        Err(TokenError::InvalidClaims(_))
    ));
}

// ---------------------------------------------------------------- claims

#[test]
fn invalid_claims() {
    let v = verifier(&hs256());
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut bad_role = claims_json();
    bad_role["role"] = json!("SUPERUSER");
    cases.push(("unknown role", bad_role));
    let mut lower_role = claims_json();
    lower_role["role"] = json!("admin");
    cases.push(("lower-case role", lower_role));
    for field in ["sub", "name", "event", "role", "exp"] {
        let mut missing = claims_json();
        missing.as_object_mut().unwrap().remove(field);
        cases.push((field, missing));
    }
    let mut empty_sub = claims_json();
    empty_sub["sub"] = json!("");
    cases.push(("empty sub", empty_sub));
    let mut blank_event = claims_json();
    blank_event["event"] = json!("  ");
    cases.push(("blank event", blank_event));
    let mut exp_string = claims_json();
    exp_string["exp"] = json!("tomorrow");
    cases.push(("exp string", exp_string));
    let mut channels_string = claims_json();
    channels_string["channels"] = json!("main");
    cases.push(("channels string", channels_string));
    let mut negative_exp = claims_json();
    negative_exp["exp"] = json!(-1);
    cases.push(("negative exp", negative_exp));

    for (what, raw) in cases {
        let got = v.verify(&hs256_raw(&raw), NOW);
        assert!(
            matches!(got, Err(TokenError::InvalidClaims(_))),
            "{what}: {got:?}"
        );
    }

    let mut bad_role = claims_json();
    bad_role["role"] = json!("SUPERUSER");
    let msg = v
        .verify(&hs256_raw(&bad_role), NOW)
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("invalid token claims:"), "{msg}");
    assert!(msg.contains("SUPERUSER"), "{msg}");
}

#[test]
fn mint_refuses_claims_that_could_never_verify() {
    let m = TokenMinter::new(&hs256()).unwrap();
    let mut c = claims();
    c.sub.clear();
    assert!(matches!(m.mint(&c), Err(TokenError::InvalidClaims(_))));
    let mut c = claims();
    c.event = " ".into();
    assert!(matches!(m.mint(&c), Err(TokenError::InvalidClaims(_))));
    let mut c = claims();
    c.exp = c.iat;
    assert!(matches!(m.mint(&c), Err(TokenError::InvalidClaims(_))));
}

// ---------------------------------------------------------------- keys

#[test]
fn bad_key_material_is_key_error() {
    let bad = [
        KeyMaterial::Hs256 { secret: Vec::new() },
        KeyMaterial::Rs256 {
            public_pem: "not a pem".into(),
            private_pem: None,
        },
        KeyMaterial::Rs256 {
            public_pem: ED_PUBLIC.into(),
            private_pem: None,
        },
        KeyMaterial::Rs256 {
            public_pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into(),
            private_pem: None,
        },
        KeyMaterial::EdDsa {
            public_pem: RSA_PUBLIC.into(),
            private_pem: None,
        },
        KeyMaterial::EdDsa {
            public_pem: ED_PRIVATE.into(),
            private_pem: None,
        },
        KeyMaterial::EdDsa {
            public_pem: String::new(),
            private_pem: None,
        },
    ];
    for key in &bad {
        assert!(
            matches!(TokenVerifier::new(key, 0), Err(TokenError::Key(_))),
            "{key:?}"
        );
    }
}

#[test]
fn minter_key_errors() {
    assert_eq!(
        TokenMinter::new(&rs256_public_only()).unwrap_err(),
        TokenError::NoSigningKey
    );
    assert_eq!(
        TokenMinter::new(&KeyMaterial::EdDsa {
            public_pem: ED_PUBLIC.into(),
            private_pem: None
        })
        .unwrap_err(),
        TokenError::NoSigningKey
    );
    let bad = [
        KeyMaterial::Hs256 { secret: Vec::new() },
        KeyMaterial::Rs256 {
            public_pem: RSA_PUBLIC.into(),
            private_pem: Some("garbage".into()),
        },
        KeyMaterial::Rs256 {
            public_pem: RSA_PUBLIC.into(),
            private_pem: Some(ED_PRIVATE.into()),
        },
        // mismatched pair
        KeyMaterial::EdDsa {
            public_pem: ED_PUBLIC.into(),
            private_pem: Some(ED_OTHER_PRIVATE.into()),
        },
        // good private key, unusable public key
        KeyMaterial::Rs256 {
            public_pem: "nope".into(),
            private_pem: Some(RSA_PRIVATE.into()),
        },
    ];
    for key in &bad {
        assert!(
            matches!(TokenMinter::new(key), Err(TokenError::Key(_))),
            "{key:?}"
        );
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let s = format!("{:?} {:?} {:?}", hs256(), rs256(), eddsa());
    assert!(!s.contains("an-hs256-test-secret"), "{s}");
    assert!(!s.contains("PRIVATE KEY"), "{s}");
    assert!(s.contains("[redacted"), "{s}");
    let v = format!("{:?}", verifier(&hs256()));
    assert!(v.contains("HS256"), "{v}");
}

#[test]
fn algorithm_names() {
    assert_eq!(hs256().algorithm_name(), "HS256");
    assert_eq!(verifier(&rs256()).algorithm_name(), "RS256");
    assert_eq!(
        TokenMinter::new(&eddsa()).unwrap().algorithm_name(),
        "EdDSA"
    );
    assert_eq!(verifier(&rs256()).leeway_secs(), LEEWAY);
}

#[test]
fn error_display_and_codes() {
    let all = [
        (TokenError::Missing, "no token", "missing"),
        (TokenError::Malformed, "malformed token", "malformed"),
        (
            TokenError::AlgNone,
            "unsigned token (alg none) refused",
            "alg_none",
        ),
        (
            TokenError::BadSignature,
            "bad token signature",
            "bad_signature",
        ),
        (TokenError::Expired, "token expired", "expired"),
        (
            TokenError::NotYetValid,
            "token not yet valid",
            "not_yet_valid",
        ),
        (
            TokenError::NoSigningKey,
            "no signing key configured",
            "no_signing_key",
        ),
    ];
    for (e, display, code) in all {
        assert_eq!(e.to_string(), display);
        assert_eq!(e.code(), code);
    }
}

#[test]
fn now_is_plausible() {
    assert!(crate::clock::unix_secs() > NOW - 365 * 86_400);
}

// ---------------------------------------------------------------- TTL

#[test]
fn parse_ttl_accepts_units_and_plain_seconds() {
    let ok = [
        ("8h", 8 * 3600),
        ("30m", 30 * 60),
        ("90s", 90),
        ("2d", 2 * 86_400),
        ("3600", 3600),
        ("1", 1),
        (" 12H ", 12 * 3600),
        ("007m", 7 * 60),
    ];
    for (s, secs) in ok {
        assert_eq!(parse_ttl(s), Ok(Duration::from_secs(secs)), "{s:?}");
    }
}

#[test]
fn parse_ttl_rejects_nonsense() {
    for s in [
        "",
        " ",
        "h",
        "0",
        "0h",
        "-5m",
        "+5m",
        "1.5h",
        "5w",
        "5 h",
        "1h30m",
        "ten",
        "99999999999999999999",
        "999999999999999999d",
    ] {
        let err = parse_ttl(s).unwrap_err();
        assert_eq!(err.input, s);
        assert!(err.to_string().starts_with("invalid TTL"), "{err}");
    }
}
