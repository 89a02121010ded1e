//! The sealed reveal: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20Poly1305, with the channel id as associated data.
//!
//! The crate holds no RNG: [`seal`] takes the caller's `CryptoRng + RngCore`, and
//! [`seal_with_seed`] takes 32 bytes of caller randomness for the ephemeral key. Keys are derived
//! from 32-byte seeds with HPKE's `DeriveKeyPair`.
//!
//! ```
//! use std::net::SocketAddr;
//! use alloy_primitives::B256;
//! use wayfare_proto::seal::{self, Credentials, RevealPayload, RevealSecret, ShadowsocksMethod};
//!
//! let buyer = RevealSecret::from_seed(&[1u8; 32]);
//! let payload = RevealPayload {
//!     endpoint: "198.18.1.1:51820".parse::<SocketAddr>().unwrap(),
//!     session_id: [9u8; 16],
//!     credentials: Credentials::Shadowsocks {
//!         method: ShadowsocksMethod::Blake3Aes256Gcm,
//!         server_psk: vec![2u8; 32],
//!         user_psk: vec![3u8; 32],
//!     },
//! };
//! let channel = B256::repeat_byte(5);
//! let sealed = seal::seal_with_seed(&payload, channel, &buyer.public_key(), &[4u8; 32]).unwrap();
//! assert_eq!(seal::open(&sealed, channel, &buyer).unwrap(), payload);
//! // Bound to the channel: another channel id fails.
//! assert!(seal::open(&sealed, B256::ZERO, &buyer).is_err());
//! ```

use std::net::{IpAddr, SocketAddr};

use alloy_primitives::{B256, keccak256};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;

use crate::codec::{DecodeError, WireFormat};
use crate::messages::{SealedReveal, TunnelAddress};

/// HPKE `info` string, binding the use and version.
pub const HPKE_INFO: &[u8] = b"wayfare reveal v1";

type Kem = X25519HkdfSha256;

/// A Shadowsocks 2022 cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ShadowsocksMethod {
    /// `2022-blake3-aes-128-gcm` (16-byte keys).
    Blake3Aes128Gcm = 1,
    /// `2022-blake3-aes-256-gcm` (32-byte keys).
    Blake3Aes256Gcm = 2,
}

impl ShadowsocksMethod {
    /// Parses a wire code.
    pub const fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Self::Blake3Aes128Gcm),
            2 => Some(Self::Blake3Aes256Gcm),
            _ => None,
        }
    }

    /// Key length in bytes this cipher needs.
    pub const fn key_len(self) -> usize {
        match self {
            Self::Blake3Aes128Gcm => 16,
            Self::Blake3Aes256Gcm => 32,
        }
    }

    /// The method name shadowsocks uses.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Blake3Aes128Gcm => "2022-blake3-aes-128-gcm",
            Self::Blake3Aes256Gcm => "2022-blake3-aes-256-gcm",
        }
    }
}

/// How the buyer logs in to the service.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A WireGuard peer config.
    WireGuard {
        /// The seller's WireGuard public key.
        server_public_key: [u8; 32],
        /// The buyer's address inside the tunnel.
        tunnel: TunnelAddress,
        /// The resolver the seller serves inside the tunnel (its gateway address), if any.
        dns: Option<IpAddr>,
    },
    /// A Shadowsocks 2022 multi-user login (client password `"iPSK:uPSK"`).
    Shadowsocks {
        /// The cipher.
        method: ShadowsocksMethod,
        /// The server's identity PSK (length per method).
        server_psk: Vec<u8>,
        /// This user's PSK (length per method).
        user_psk: Vec<u8>,
    },
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::WireGuard { tunnel, .. } => f
                .debug_struct("WireGuard")
                .field("tunnel", tunnel)
                .finish_non_exhaustive(),
            Self::Shadowsocks { method, .. } => f
                .debug_struct("Shadowsocks")
                .field("method", method)
                .finish_non_exhaustive(),
        }
    }
}

/// What a reveal carries once opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevealPayload {
    /// The service endpoint.
    pub endpoint: SocketAddr,
    /// The seller's session id (names the session in logs and on reconnect).
    pub session_id: [u8; 16],
    /// How to log in.
    pub credentials: Credentials,
}

/// An X25519 secret key for opening reveals, derived from a 32-byte seed.
#[derive(Clone)]
pub struct RevealSecret {
    seed: [u8; 32],
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: <Kem as hpke::Kem>::PublicKey,
}

impl RevealSecret {
    /// Derives the key pair from `seed` (HPKE `DeriveKeyPair`); pass 32 bytes from a CSPRNG.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (secret, public) = Kem::derive_keypair(seed);
        Self {
            seed: *seed,
            secret,
            public,
        }
    }

    /// The seed (to persist the key).
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    /// The public key to put in a `QuoteRequest`.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.public.to_bytes());
        out
    }
}

impl core::fmt::Debug for RevealSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RevealSecret")
            .field("public", &alloy_primitives::hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SealError {
    /// The recipient's public key is not a valid X25519 point encoding.
    #[error("recipient X25519 key is invalid: ask the buyer for a fresh QuoteRequest")]
    BadPublicKey,
    /// HPKE failed to seal.
    #[error("HPKE seal failed: {0}")]
    Seal(String),
    /// Wrong key, wrong channel, or tampered ciphertext.
    #[error(
        "sealed reveal did not open (wrong key, wrong channel or tampered): ignore it and wait for a resend"
    )]
    Open,
    /// The sealed payload is too long for the wire.
    #[error("reveal payload of {0} bytes is too long to seal")]
    TooLong(usize),
    /// It opened, but the plaintext is not a valid payload.
    #[error("reveal opened but its payload is malformed: {0}")]
    Payload(#[from] DecodeError),
}

/// Seals `payload` for `recipient` (the buyer's X25519 key), bound to `channel_id`.
pub fn seal<R: CryptoRng + RngCore>(
    payload: &RevealPayload,
    channel_id: B256,
    recipient: &[u8; 32],
    rng: &mut R,
) -> Result<SealedReveal, SealError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| SealError::BadPublicKey)?;
    let plaintext = payload.to_wire();
    if plaintext.len() + crate::messages::AEAD_TAG_LEN > crate::messages::MAX_SEALED_LEN {
        return Err(SealError::TooLong(plaintext.len()));
    }
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &pk,
        HPKE_INFO,
        &plaintext,
        channel_id.as_slice(),
        rng,
    )
    .map_err(|e| SealError::Seal(e.to_string()))?;
    let mut encapped_key = [0u8; 32];
    encapped_key.copy_from_slice(&enc.to_bytes());
    Ok(SealedReveal {
        encapped_key,
        ciphertext,
    })
}

/// Like [`seal`], with the ephemeral key's randomness given as 32 bytes (deterministic).
pub fn seal_with_seed(
    payload: &RevealPayload,
    channel_id: B256,
    recipient: &[u8; 32],
    ephemeral_seed: &[u8; 32],
) -> Result<SealedReveal, SealError> {
    seal(
        payload,
        channel_id,
        recipient,
        &mut SeedStream::new(ephemeral_seed),
    )
}

/// Opens a sealed reveal with the buyer's secret, checking it is bound to `channel_id`.
pub fn open(
    sealed: &SealedReveal,
    channel_id: B256,
    secret: &RevealSecret,
) -> Result<RevealPayload, SealError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.encapped_key)
        .map_err(|_| SealError::Open)?;
    let plaintext = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &secret.secret,
        &enc,
        HPKE_INFO,
        &sealed.ciphertext,
        channel_id.as_slice(),
    )
    .map_err(|_| SealError::Open)?;
    Ok(RevealPayload::from_wire(&plaintext)?)
}

/// Expands caller-given randomness into a byte stream (keccak256 in counter mode). It is only as
/// random as the seed it is given; it never draws entropy itself.
struct SeedStream {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeedStream {
    fn new(seed: &[u8; 32]) -> Self {
        Self {
            seed: *seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl RngCore for SeedStream {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == self.block.len() {
                let mut input = [0u8; 40];
                input[..32].copy_from_slice(&self.seed);
                input[32..].copy_from_slice(&self.counter.to_le_bytes());
                self.block = keccak256(input).0;
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SeedStream {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::TunnelAddress;

    fn payload() -> RevealPayload {
        RevealPayload {
            endpoint: "[2001:db8::1]:443".parse().unwrap(),
            session_id: [1; 16],
            credentials: Credentials::WireGuard {
                server_public_key: [2; 32],
                tunnel: TunnelAddress {
                    address: "198.19.0.9".parse().unwrap(),
                    prefix_len: 32,
                },
                dns: None,
            },
        }
    }

    #[test]
    fn seals_to_the_buyer_only_and_binds_the_channel() {
        let buyer = RevealSecret::from_seed(&[7; 32]);
        let other = RevealSecret::from_seed(&[8; 32]);
        let id = B256::repeat_byte(3);
        let sealed = seal_with_seed(&payload(), id, &buyer.public_key(), &[9; 32]).unwrap();
        assert_eq!(open(&sealed, id, &buyer).unwrap(), payload());
        assert_eq!(open(&sealed, id, &other), Err(SealError::Open));
        assert_eq!(open(&sealed, B256::ZERO, &buyer), Err(SealError::Open));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(open(&tampered, id, &buyer), Err(SealError::Open));
        // Same seed, same output (deterministic); another seed, another ephemeral key.
        let again = seal_with_seed(&payload(), id, &buyer.public_key(), &[9; 32]).unwrap();
        assert_eq!(again, sealed);
        let fresh = seal_with_seed(&payload(), id, &buyer.public_key(), &[10; 32]).unwrap();
        assert_ne!(fresh.encapped_key, sealed.encapped_key);
    }

    #[test]
    fn seals_with_a_caller_rng() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let buyer = RevealSecret::from_seed(&[7; 32]);
        let id = B256::repeat_byte(3);
        let sealed = seal(&payload(), id, &buyer.public_key(), &mut rng).unwrap();
        assert_eq!(open(&sealed, id, &buyer).unwrap(), payload());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let buyer = RevealSecret::from_seed(&[0xab; 32]);
        assert!(!format!("{buyer:?}").contains("abab"));
        let c = Credentials::Shadowsocks {
            method: ShadowsocksMethod::Blake3Aes128Gcm,
            server_psk: vec![0xcd; 16],
            user_psk: vec![0xcd; 16],
        };
        assert!(!format!("{c:?}").contains("205"));
    }
}
