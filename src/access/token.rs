//! JWT verification and minting (role-aware tokens).
//!
//! A token is a compact JWS (`header.claims.signature`, base64url without
//! padding) whose claims are [`Claims`]. The gateway verifies tokens with a
//! [`TokenVerifier`]; the `radiogate token` CLI and tests mint them with a
//! [`TokenMinter`].
//!
//! Verification is pure: the current time is passed in as seconds since the
//! Unix epoch, so it can be tested with any clock. The checks run in this order,
//! and the first failure is returned:
//!
//! 1. shape: not empty ([`TokenError::Missing`]), at most [`MAX_TOKEN_LEN`]
//!    bytes, three base64url parts, header and claims are JSON objects
//!    ([`TokenError::Malformed`]);
//! 2. header `alg`: `"none"` in any case is [`TokenError::AlgNone`]; anything but
//!    the configured algorithm is [`TokenError::WrongAlgorithm`];
//! 3. signature ([`TokenError::BadSignature`]);
//! 4. claims: required fields and types, non-empty `sub` and `event`
//!    ([`TokenError::InvalidClaims`]);
//! 5. time: `exp` ([`TokenError::Expired`]), then `iat` and an optional `nbf`
//!    ([`TokenError::NotYetValid`]), each with the configured leeway.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::role::Role;

/// Longest token accepted by [`TokenVerifier::verify`], in bytes. Longer input
/// is refused as [`TokenError::Malformed`] before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// At most this many characters of a foreign `alg` are kept in
/// [`TokenError::WrongAlgorithm::got`].
const MAX_ALG_ECHO: usize = 32;

/// JWT claims of a radiogate access token.
///
/// JSON names: `sub`, `name`, `event`, `role`, `channels`, `device` (optional),
/// `iat`, `exp`. Unknown extra claims (for example `iss`, `aud`, `nbf`) are
/// ignored, except that a present `nbf` is honoured by [`TokenVerifier::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// Subject: the user id (or device id for a console/radio identity). Required, non-empty.
    pub sub: String,
    /// Display name, shown to other users (e.g. "Dispatch NAME has priority"). Required, may be empty.
    pub name: String,
    /// The event this token is valid for. Required, non-empty.
    pub event: String,
    /// The user's role in that event. Required; one of `"ADMIN"`, `"DISPATCH"`, `"GENERAL"`.
    pub role: Role,
    /// Channel ids the user may use at connect time. Optional in the JSON
    /// (missing means empty); the permission store stays authoritative.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Device id, when the token belongs to a device rather than a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Site name, when the token belongs to a linked site gateway (issue 16, README "Linked
    /// sites"): the session may call `link.hello` and request floors on behalf of the site's
    /// talkers (named `"NAME @ SITE"`), and is exempt from `limits.max_sessions_per_user` (a
    /// site opens one session per linked channel). Its role still applies: a site that relays
    /// Dispatch pre-emption needs a `DISPATCH` token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Issued-at time, in seconds since the Unix epoch (UTC). Optional in the
    /// JSON (missing means 0, i.e. no "issued in the future" check).
    #[serde(default)]
    pub iat: u64,
    /// Expiry time, in seconds since the Unix epoch (UTC). Required.
    pub exp: u64,
}

/// How tokens are verified and (optionally) signed.
///
/// PEM strings are the usual OpenSSL output: RSA keys as `PUBLIC KEY` (SPKI) or
/// `RSA PUBLIC KEY` (PKCS#1), `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY`
/// (PKCS#1); Ed25519 keys as `PUBLIC KEY` / `PRIVATE KEY` (PKCS#8).
/// `Debug` never prints secrets or private keys.
#[derive(Clone)]
pub enum KeyMaterial {
    /// HMAC-SHA256 with a shared secret: can verify and mint. The secret must not
    /// be empty; RFC 7518 asks for at least 32 bytes.
    Hs256 {
        /// The shared secret bytes.
        secret: Vec<u8>,
    },
    /// RSASSA-PKCS1-v1_5 with SHA-256: the control plane signs, the gateway verifies.
    /// Minting is possible only when `private_pem` is given.
    Rs256 {
        /// RSA public key, PEM.
        public_pem: String,
        /// Matching RSA private key, PEM, if this process may mint.
        private_pem: Option<String>,
    },
    /// EdDSA over Ed25519: like [`KeyMaterial::Rs256`] with Ed25519 keys.
    EdDsa {
        /// Ed25519 public key, PEM.
        public_pem: String,
        /// Matching Ed25519 private key, PEM, if this process may mint.
        private_pem: Option<String>,
    },
}

impl KeyMaterial {
    /// The JWS `alg` name this key material is used with: `"HS256"`, `"RS256"` or `"EdDSA"`.
    pub fn algorithm_name(&self) -> &'static str {
        alg_name(self.algorithm())
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            KeyMaterial::Hs256 { .. } => Algorithm::HS256,
            KeyMaterial::Rs256 { .. } => Algorithm::RS256,
            KeyMaterial::EdDsa { .. } => Algorithm::EdDSA,
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |p: &Option<String>| p.as_ref().map(|_| "[redacted]");
        match self {
            KeyMaterial::Hs256 { secret } => f
                .debug_struct("Hs256")
                .field(
                    "secret",
                    &format_args!("[redacted; {} bytes]", secret.len()),
                )
                .finish(),
            KeyMaterial::Rs256 {
                public_pem,
                private_pem,
            } => f
                .debug_struct("Rs256")
                .field("public_pem", public_pem)
                .field("private_pem", &redact(private_pem))
                .finish(),
            KeyMaterial::EdDsa {
                public_pem,
                private_pem,
            } => f
                .debug_struct("EdDsa")
                .field("public_pem", public_pem)
                .field("private_pem", &redact(private_pem))
                .finish(),
        }
    }
}

/// Typed refusal reasons.
///
/// `Display` gives a short human reason, safe to send in a 401 body (it never
/// contains key material). [`TokenError::code`] gives a stable machine-readable
/// code for logs and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented: callers use it when neither the header nor the
    /// query carries a token; `verify` returns it for an empty or all-whitespace string.
    #[error("no token")]
    Missing,
    /// Not three base64url parts, header or claims not a JSON object, header
    /// without a string `alg`, an unsupported `crit` header, a bad signature
    /// encoding, or longer than [`MAX_TOKEN_LEN`].
    #[error("malformed token")]
    Malformed,
    /// The header says `"alg": "none"` (an unsigned token).
    #[error("unsigned token (alg none) refused")]
    AlgNone,
    /// The header's `alg` is not the one this gateway is configured for.
    #[error("wrong token algorithm: expected {expected}, got {got}")]
    WrongAlgorithm {
        /// The configured algorithm, e.g. `"RS256"`.
        expected: String,
        /// The token's `alg` header, as sent (cut to its first 32 characters).
        got: String,
    },
    /// The signature does not verify with the configured key (forged or
    /// signed with another key), or is empty.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is at or before the current time minus the leeway.
    #[error("token expired")]
    Expired,
    /// `iat` (or `nbf`, when present) is later than the current time plus the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim is missing or has the wrong type, `sub` or `event` is
    /// empty, or `role` is unknown. The string says which.
    #[error("invalid token claims: {0}")]
    InvalidClaims(String),
    /// The configured key material is unusable (bad PEM, wrong key type,
    /// empty secret, private key not matching the public key, signing failure).
    #[error("token key error: {0}")]
    Key(String),
    /// Minting was requested but no private key is configured.
    #[error("no signing key configured")]
    NoSigningKey,
}

impl TokenError {
    /// A stable, machine-readable code for this refusal, e.g. `"expired"`.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::AlgNone => "alg_none",
            TokenError::WrongAlgorithm { .. } => "wrong_algorithm",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::InvalidClaims(_) => "invalid_claims",
            TokenError::Key(_) => "key",
            TokenError::NoSigningKey => "no_signing_key",
        }
    }
}

/// Verifies tokens against one configured algorithm and key.
///
/// Cheap to share (`&self` only); build it once at startup.
#[derive(Clone)]
pub struct TokenVerifier {
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
    leeway_secs: u64,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("alg", &alg_name(self.alg))
            .field("leeway_secs", &self.leeway_secs)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Builds a verifier for `key`, accepting only its algorithm
    /// (`HS256`, `RS256` or `EdDSA`).
    ///
    /// `leeway_secs` is the allowed clock skew, in seconds, applied to `exp`,
    /// `iat` and `nbf`.
    ///
    /// # Errors
    /// [`TokenError::Key`] if the public PEM does not parse as a key of the right
    /// type, or the HS256 secret is empty. Private keys are ignored here.
    pub fn new(key: &KeyMaterial, leeway_secs: u64) -> Result<Self, TokenError> {
        let alg = key.algorithm();
        let decoding = match key {
            KeyMaterial::Hs256 { secret } => {
                if secret.is_empty() {
                    return Err(TokenError::Key("HS256 secret is empty".into()));
                }
                DecodingKey::from_secret(secret).map_err(|e| key_error("HS256 secret", &e))?
            }
            KeyMaterial::Rs256 { public_pem, .. } => {
                let k = DecodingKey::from_rsa_pem(public_pem.as_bytes())
                    .map_err(|e| key_error("RSA public key", &e))?;
                // Parse the key fully now, so a bad key fails at startup, not per token.
                Jwk::from_decoding_key(&k, Some(alg))
                    .map_err(|e| key_error("RSA public key", &e))?;
                k
            }
            KeyMaterial::EdDsa { public_pem, .. } => {
                let k = DecodingKey::from_ed_pem(public_pem.as_bytes())
                    .map_err(|e| key_error("Ed25519 public key", &e))?;
                // Checks the length is 32 bytes (the verifier slices it unchecked)...
                Jwk::from_decoding_key(&k, Some(alg))
                    .map_err(|e| key_error("Ed25519 public key", &e))?;
                // ...and that it is a valid curve point (verifier construction fails otherwise).
                jsonwebtoken::crypto::verify("", b"", &k, alg)
                    .map_err(|e| key_error("Ed25519 public key", &e))?;
                k
            }
        };

        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        // Time and audience checks are done by `verify` with the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        validation.leeway = leeway_secs;

        Ok(TokenVerifier {
            alg,
            key: decoding,
            validation,
            leeway_secs,
        })
    }

    /// The only `alg` this verifier accepts: `"HS256"`, `"RS256"` or `"EdDSA"`.
    pub fn algorithm_name(&self) -> &'static str {
        alg_name(self.alg)
    }

    /// The allowed clock skew, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    /// Verifies `token` (the compact JWS, without any `Bearer ` prefix; surrounding
    /// whitespace is ignored) at time `now_unix_secs` (seconds since the Unix
    /// epoch, UTC) and returns its claims.
    ///
    /// A token is valid while `now_unix_secs < exp + leeway`, and once
    /// `iat <= now_unix_secs + leeway` (and `nbf`, if present, likewise).
    ///
    /// # Errors
    /// The first failed check, in the order given in the [module docs](self):
    /// `Missing`, `Malformed`, `AlgNone`, `WrongAlgorithm`, `BadSignature`,
    /// `InvalidClaims`, `Expired`, `NotYetValid`. `Key` only if the crypto
    /// backend rejects the configured key at use.
    pub fn verify(&self, token: &str, now_unix_secs: u64) -> Result<Claims, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (header_b64, claims_b64, signature_b64) =
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(h), Some(c), Some(s), None) => (h, c, s),
                _ => return Err(TokenError::Malformed),
            };

        // Parse the header ourselves, so `alg: none` and unknown algorithms get
        // their own errors instead of a generic parse failure.
        let header = decode_json_object(header_b64)?;
        let got = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenError::Malformed)?;
        if got.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        let expected = alg_name(self.alg);
        if got != expected {
            return Err(TokenError::WrongAlgorithm {
                expected: expected.to_owned(),
                // Attacker-controlled and echoed in the 401 body: keep it short.
                got: got.chars().take(MAX_ALG_ECHO).collect(),
            });
        }
        // RFC 7515 4.1.11: we understand no extensions, so any `crit` must be refused.
        if header.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        decode_json_object(claims_b64)?;
        if signature_b64.is_empty() {
            return Err(TokenError::BadSignature);
        }

        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|e| map_decode_error(e, expected, got))?;

        let claims: Claims = serde_json::from_value(data.claims.clone())
            .map_err(|e| TokenError::InvalidClaims(e.to_string()))?;
        check_identity(&claims)?;

        if now_unix_secs >= claims.exp.saturating_add(self.leeway_secs) {
            return Err(TokenError::Expired);
        }
        let latest_start = now_unix_secs.saturating_add(self.leeway_secs);
        if claims.iat > latest_start {
            return Err(TokenError::NotYetValid);
        }
        match data.claims.get("nbf") {
            None | Some(Value::Null) => {}
            Some(v) => {
                let nbf = v.as_u64().ok_or_else(|| {
                    TokenError::InvalidClaims("nbf is not a non-negative integer".into())
                })?;
                if nbf > latest_start {
                    return Err(TokenError::NotYetValid);
                }
            }
        }
        Ok(claims)
    }
}

/// Signs tokens with a private key (or the HS256 secret).
#[derive(Clone)]
pub struct TokenMinter {
    alg: Algorithm,
    key: EncodingKey,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("alg", &alg_name(self.alg))
            .finish_non_exhaustive()
    }
}

impl TokenMinter {
    /// Builds a minter for `key`. For RS256 and EdDSA it signs a probe message and
    /// checks it against the public key, so a mismatched key pair fails here.
    ///
    /// # Errors
    /// - [`TokenError::NoSigningKey`] for RS256/EdDSA without `private_pem`;
    /// - [`TokenError::Key`] for an empty secret, an unparsable or wrong-type
    ///   PEM (public or private), or a private key that does not match the public key.
    pub fn new(key: &KeyMaterial) -> Result<Self, TokenError> {
        let alg = key.algorithm();
        let encoding = match key {
            KeyMaterial::Hs256 { secret } => {
                if secret.is_empty() {
                    return Err(TokenError::Key("HS256 secret is empty".into()));
                }
                EncodingKey::from_secret(secret).map_err(|e| key_error("HS256 secret", &e))?
            }
            KeyMaterial::Rs256 { private_pem, .. } => {
                let pem = private_pem.as_ref().ok_or(TokenError::NoSigningKey)?;
                EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| key_error("RSA private key", &e))?
            }
            KeyMaterial::EdDsa { private_pem, .. } => {
                let pem = private_pem.as_ref().ok_or(TokenError::NoSigningKey)?;
                EncodingKey::from_ed_pem(pem.as_bytes())
                    .map_err(|e| key_error("Ed25519 private key", &e))?
            }
        };

        let verifier = TokenVerifier::new(key, 0)?;
        const PROBE: &[u8] = b"radiogate key probe";
        let signature = jsonwebtoken::crypto::sign(PROBE, &encoding, alg)
            .map_err(|e| key_error("private key", &e))?;
        let matches = jsonwebtoken::crypto::verify(&signature, PROBE, &verifier.key, alg)
            .map_err(|e| key_error("public key", &e))?;
        if !matches {
            return Err(TokenError::Key(
                "private key does not match public key".into(),
            ));
        }

        Ok(TokenMinter { alg, key: encoding })
    }

    /// The `alg` this minter writes in the header: `"HS256"`, `"RS256"` or `"EdDSA"`.
    pub fn algorithm_name(&self) -> &'static str {
        alg_name(self.alg)
    }

    /// Signs `claims` into a compact JWS with header `{"typ":"JWT","alg":...}`.
    ///
    /// # Errors
    /// - [`TokenError::InvalidClaims`] if `sub` or `event` is empty or `exp <= iat`
    ///   (a token that could never be valid);
    /// - [`TokenError::Key`] if signing fails.
    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        check_identity(claims)?;
        if claims.exp <= claims.iat {
            return Err(TokenError::InvalidClaims("exp must be after iat".into()));
        }
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.key)
            .map_err(|e| key_error("signing", &e))
    }
}

/// Error from [`parse_ttl`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid TTL {input:?}: {reason} (use e.g. 90s, 30m, 8h, 2d or plain seconds)")]
pub struct ParseTtlError {
    /// The rejected input, as given.
    pub input: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// Parses a token lifetime for `radiogate token --ttl`.
///
/// Accepts a positive whole number with an optional unit suffix: `s` (seconds),
/// `m` (minutes), `h` (hours), `d` (days); no suffix means seconds. Examples:
/// `"90s"`, `"30m"`, `"8h"`, `"2d"`, `"3600"`. Surrounding whitespace and the
/// case of the unit are ignored.
///
/// # Errors
/// [`ParseTtlError`] for an empty string, a sign, a fraction, an unknown unit,
/// zero, or a value whose seconds overflow `u64`.
pub fn parse_ttl(s: &str) -> Result<Duration, ParseTtlError> {
    let err = |reason| ParseTtlError {
        input: s.to_owned(),
        reason,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err("empty"));
    }
    let (digits, multiplier) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                _ => return Err(err("unknown unit")),
            };
            (&t[..i], m)
        }
        _ => (t, 1u64),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("expected a whole number"));
    }
    let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
    if n == 0 {
        return Err(err("must be positive"));
    }
    let secs = n
        .checked_mul(multiplier)
        .ok_or_else(|| err("number too large"))?;
    Ok(Duration::from_secs(secs))
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::EdDSA => "EdDSA",
        // Only the three above are ever configured.
        _ => "unsupported",
    }
}

fn key_error(what: &str, e: &jsonwebtoken::errors::Error) -> TokenError {
    TokenError::Key(format!("{what}: {e}"))
}

/// Decodes one base64url (no padding) part and parses it as a JSON object.
fn decode_json_object(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed),
    }
}

fn check_identity(claims: &Claims) -> Result<(), TokenError> {
    if claims.sub.trim().is_empty() {
        return Err(TokenError::InvalidClaims("sub is empty".into()));
    }
    if claims.event.trim().is_empty() {
        return Err(TokenError::InvalidClaims("event is empty".into()));
    }
    if let Some(site) = &claims.link {
        if !valid_site_name(site) {
            return Err(TokenError::InvalidClaims(
                "link must be 1..=64 characters without control characters or '@'".into(),
            ));
        }
    }
    Ok(())
}

/// Whether `name` can name a site (the `link` claim, `[site] name`): 1..=64 characters, none a
/// control character or `@` (talkers of other sites are shown as `"NAME @ SITE"`).
pub fn valid_site_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n)
        && !name.trim().is_empty()
        && !name.chars().any(|c| c.is_control() || c == '@')
}

fn map_decode_error(e: jsonwebtoken::errors::Error, expected: &str, got: &str) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::WrongAlgorithm {
            expected: expected.to_owned(),
            got: got.to_owned(),
        },
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::MissingRequiredClaim(c) => TokenError::InvalidClaims(format!("missing {c}")),
        ErrorKind::InvalidClaimFormat(c) => TokenError::InvalidClaims(format!("bad {c}")),
        ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::Provider(_) => key_error("verification key", &e),
        // InvalidToken, Base64, Json, Utf8 and anything added later.
        _ => TokenError::Malformed,
    }
}
