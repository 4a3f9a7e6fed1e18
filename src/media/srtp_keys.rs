//! Learns a peer connection's local SRTP master key and salt, so the media thread can protect
//! each listener's copy itself ([`Protector`](super::protect::Protector)) instead of pushing
//! it through `rtc`'s whole write pipeline (interceptors, a parameter copy and a track-id
//! string per packet: most of the 20-30 µs a copy cost, docs/BENCHMARKS.md "Fan-out").
//!
//! `rtc` 0.21 keeps the SRTP contexts it derives from the DTLS handshake (RFC 5764 §4.2) in
//! its internal pipeline. What it does expose is the crypto provider a peer connection uses
//! (`SettingEngineBuilder::with_crypto_provider`). [`KeyCapture`] is such a provider: it hands
//! every operation to `rtc`'s default provider unchanged and, on the way, records the AES key
//! and the first input block of `block_encrypt`. Nothing but the SRTP key derivation calls
//! `block_encrypt` in `rtc` (checked in the 0.21 sources: DTLS, STUN and ICE do not), and
//! `rtc` builds the local context before the remote one, each starting with the SRTP
//! encryption key (label 0). For a 128-bit master key the AES-CM PRF's input block (RFC 3711
//! §4.3.3, `aes_cm_key_derivation`) is the master salt, label XORed into octet 7, then the
//! block counter: so the first block seen under the first key is the local master salt.
//! Every later block under a key is checked against that reading (same salt, a label 0-5,
//! counter in the last two octets); anything else poisons the capture and the peer keeps
//! `rtc`'s own path. 256-bit keys (AES-256 profiles, another PRF) are not learned.
//!
//! PURE apart from the provider plumbing: no socket, no clock; unit-tested by deriving
//! contexts through it and comparing their output with contexts built from the learned keys.

use parking_lot::Mutex;
use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::srtp::protection_profile::ProtectionProfile;
use std::sync::Arc;

/// Octets of an AES-128 master key (the only length learned).
const KEY_LEN: usize = 16;
/// Master keys a peer connection derives: the local context's, then the remote's.
const MAX_KEYS: usize = 2;
/// Highest SRTP/SRTCP key-derivation label (RFC 3711 §4.3.1: 0x00-0x05).
const MAX_LABEL: u8 = 5;

/// Why no master key could be learned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No SRTP key was derived yet (DTLS not complete).
    #[error("no SRTP key derived yet")]
    NotYet,
    /// The negotiated profile (its RFC 5764 §4.1.2 number) is not one with a 128-bit key.
    #[error("SRTP profile {0:#06x} is not learned (128-bit keys only)")]
    Unsupported(u8),
    /// A key-derivation block did not read as RFC 3711's PRF input: the capture is not
    /// trusted.
    #[error("SRTP key derivation did not look as expected")]
    Unexpected,
}

/// A learned SRTP master key and salt (RFC 3711 §8.2), local direction.
#[derive(Clone)]
pub struct MasterKey {
    /// The master key, 16 octets.
    pub key: Vec<u8>,
    /// The master salt: 12 octets (AES-GCM, RFC 7714) or 14 (AES-CM, RFC 3711).
    pub salt: Vec<u8>,
    /// The profile the key belongs to.
    pub profile: ProtectionProfile,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// What was seen under one key.
struct Seen {
    key: [u8; KEY_LEN],
    first: [u8; KEY_LEN],
}

#[derive(Default)]
struct State {
    keys: Vec<Seen>,
    poisoned: bool,
}

/// A crypto provider that is `rtc`'s default one and records the SRTP key derivation (module
/// docs). One per peer connection.
pub struct KeyCapture {
    inner: Arc<dyn RTCCryptoProvider>,
    state: Mutex<State>,
}

impl std::fmt::Debug for KeyCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCapture").finish_non_exhaustive()
    }
}

impl KeyCapture {
    /// A capture over `inner` (normally `rtc::crypto::default_provider()`).
    pub fn new(inner: Arc<dyn RTCCryptoProvider>) -> Self {
        Self {
            inner,
            state: Mutex::new(State::default()),
        }
    }

    /// The provider that does the work (to build contexts that are not to be recorded).
    pub fn inner(&self) -> &Arc<dyn RTCCryptoProvider> {
        &self.inner
    }

    /// The local master key of `profile`, the first key derived through this provider.
    ///
    /// # Errors
    /// [`KeyError::NotYet`] before any derivation, [`KeyError::Unsupported`] for a profile
    /// whose key is not 128-bit, [`KeyError::Unexpected`] when a derivation block did not read
    /// as the PRF's input.
    pub fn local(&self, profile: ProtectionProfile) -> Result<MasterKey, KeyError> {
        if profile.key_len() != KEY_LEN {
            return Err(KeyError::Unsupported(profile as u8));
        }
        let st = self.state.lock();
        if st.poisoned {
            return Err(KeyError::Unexpected);
        }
        let seen = st.keys.first().ok_or(KeyError::NotYet)?;
        let salt_len = profile.salt_len();
        // Beyond the salt, up to the counter, the block is zero.
        if seen.first[salt_len..KEY_LEN - 2].iter().any(|b| *b != 0) {
            return Err(KeyError::Unexpected);
        }
        Ok(MasterKey {
            key: seen.key.to_vec(),
            salt: seen.first[..salt_len].to_vec(),
            profile,
        })
    }

    /// Records one `block_encrypt` input (before encryption).
    fn record(&self, algorithm: BlockCipherAlgorithm, key: &[u8], block: &[u8]) {
        let mut st = self.state.lock();
        if st.poisoned {
            return;
        }
        let (Ok(key), Ok(block)) = (
            <[u8; KEY_LEN]>::try_from(key),
            <[u8; KEY_LEN]>::try_from(block),
        ) else {
            // A 256-bit key (another PRF) or an odd block: nothing to learn from it.
            return;
        };
        if algorithm != BlockCipherAlgorithm::Aes128 {
            return;
        }
        match st.keys.iter().find(|s| s.key == key) {
            Some(s) => {
                if !consistent(&s.first, &block) {
                    st.poisoned = true;
                }
            }
            None if st.keys.len() < MAX_KEYS => st.keys.push(Seen { key, first: block }),
            None => st.poisoned = true,
        }
    }
}

/// Whether `block` reads as another PRF input of the master salt that made `first` (label 0,
/// counter 0): equal but for octet 7 (a label 0-5) and the counter (last two octets).
fn consistent(first: &[u8; KEY_LEN], block: &[u8; KEY_LEN]) -> bool {
    (0..KEY_LEN - 2).all(|i| i == 7 || first[i] == block[i]) && (first[7] ^ block[7]) <= MAX_LABEL
}

impl RTCCryptoProvider for KeyCapture {
    fn name(&self) -> &'static str {
        "radiogate-key-capture"
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for KeyCapture {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.record(algorithm, key, block);
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

/// The SRTP profile named by `rtc`'s transport statistics (`srtp_cipher`), if known.
pub fn profile_from_stats(name: &str) -> Option<ProtectionProfile> {
    match name {
        "SRTP_AEAD_AES_128_GCM" => Some(ProtectionProfile::AeadAes128Gcm),
        "SRTP_AEAD_AES_256_GCM" => Some(ProtectionProfile::AeadAes256Gcm),
        "SRTP_AES128_CM_HMAC_SHA1_80" => Some(ProtectionProfile::Aes128CmHmacSha1_80),
        "SRTP_AES128_CM_HMAC_SHA1_32" => Some(ProtectionProfile::Aes128CmHmacSha1_32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;

    fn provider() -> Arc<dyn RTCCryptoProvider> {
        rtc::crypto::default_provider().unwrap()
    }

    fn packet(seq: u16) -> (rtc::rtp::Header, Vec<u8>) {
        use rtc::shared::marshal::Marshal;
        let hdr = rtc::rtp::Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: 960 * seq as u32,
            ssrc: 0x1234_5678,
            ..Default::default()
        };
        let mut plain = hdr.marshal().unwrap().to_vec();
        plain.extend_from_slice(&[0xAB; 100]);
        (hdr, plain)
    }

    /// Derives the local then the remote context through a capture, as `rtc` does after the
    /// DTLS handshake; the learned local key must build a context whose output is the
    /// original's, byte for byte.
    fn learns(profile: ProtectionProfile) {
        let cap = KeyCapture::new(provider());
        let (lk, ls) = (
            vec![7u8; profile.key_len()],
            (0..profile.salt_len() as u8).collect::<Vec<_>>(),
        );
        let (rk, rs) = (vec![9u8; profile.key_len()], vec![3u8; profile.salt_len()]);
        let mut local = Context::new(&lk, &ls, profile, None, None, cap.crypto()).unwrap();
        let _remote = Context::new(&rk, &rs, profile, None, None, cap.crypto()).unwrap();
        let got = cap.local(profile).unwrap();
        assert_eq!((got.key.clone(), got.salt.clone()), (lk, ls));
        let mut ours = Context::new(
            &got.key,
            &got.salt,
            profile,
            None,
            None,
            provider().crypto(),
        )
        .unwrap();
        for seq in [1u16, 2, 65535, 0] {
            let (hdr, plain) = packet(seq);
            let a = local.encrypt_rtp_with_header(&plain, &hdr).unwrap();
            let b = ours.encrypt_rtp_with_header(&plain, &hdr).unwrap();
            assert_eq!(a, b, "seq {seq}");
        }
    }

    #[test]
    fn learns_the_local_aes_gcm_key() {
        learns(ProtectionProfile::AeadAes128Gcm);
    }

    #[test]
    fn learns_the_local_aes_cm_hmac_sha1_key() {
        learns(ProtectionProfile::Aes128CmHmacSha1_80);
        learns(ProtectionProfile::Aes128CmHmacSha1_32);
    }

    #[test]
    fn nothing_before_the_handshake_and_no_256_bit_keys() {
        let cap = KeyCapture::new(provider());
        assert_eq!(
            cap.local(ProtectionProfile::AeadAes128Gcm).err(),
            Some(KeyError::NotYet)
        );
        let p = ProtectionProfile::AeadAes256Gcm;
        let _ = Context::new(&[1; 32], &[2; 12], p, None, None, cap.crypto()).unwrap();
        assert_eq!(cap.local(p).err(), Some(KeyError::Unsupported(p as u8)));
    }

    #[test]
    fn an_unexpected_block_poisons_the_capture() {
        let cap = KeyCapture::new(provider());
        let mut b = [0u8; 16];
        cap.block_encrypt(BlockCipherAlgorithm::Aes128, &[1; 16], &mut b)
            .unwrap();
        // Same key, another salt octet: not a PRF input of the same salt.
        let mut b = [0u8; 16];
        b[3] = 1;
        cap.block_encrypt(BlockCipherAlgorithm::Aes128, &[1; 16], &mut b)
            .unwrap();
        assert_eq!(
            cap.local(ProtectionProfile::AeadAes128Gcm).err(),
            Some(KeyError::Unexpected)
        );
        // A third key: not a peer connection's derivation either.
        let cap = KeyCapture::new(provider());
        for k in 1..=3u8 {
            let mut b = [0u8; 16];
            cap.block_encrypt(BlockCipherAlgorithm::Aes128, &[k; 16], &mut b)
                .unwrap();
        }
        assert_eq!(
            cap.local(ProtectionProfile::AeadAes128Gcm).err(),
            Some(KeyError::Unexpected)
        );
    }

    #[test]
    fn reads_the_stats_cipher_names() {
        assert!(matches!(
            profile_from_stats("SRTP_AEAD_AES_128_GCM"),
            Some(ProtectionProfile::AeadAes128Gcm)
        ));
        assert!(profile_from_stats("nonsense").is_none());
    }
}
