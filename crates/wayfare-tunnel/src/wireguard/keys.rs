//! X25519 keys in WireGuard's base64 text form.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use gotatun::x25519::{PublicKey, StaticSecret};

use crate::TunnelError;

/// A WireGuard private key (32 bytes, clamped by X25519 on use).
#[derive(Clone)]
pub struct PrivateKey(pub(crate) [u8; 32]);

/// A WireGuard public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WgPublicKey(pub(crate) [u8; 32]);

fn decode32(s: &str) -> Result<[u8; 32], TunnelError> {
    let v = STANDARD
        .decode(s.trim())
        .map_err(|e| TunnelError::BadConfig(format!("key is not base64: {e}")))?;
    v.try_into()
        .map_err(|_| TunnelError::BadConfig("a WireGuard key is 32 bytes".into()))
}

impl PrivateKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// Parse the base64 form (as `wg genkey` prints it).
    pub fn from_base64(s: &str) -> Result<Self, TunnelError> {
        decode32(s).map(Self)
    }

    /// The base64 form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The matching public key.
    pub fn public_key(&self) -> WgPublicKey {
        WgPublicKey(PublicKey::from(&self.secret()).to_bytes())
    }

    pub(crate) fn secret(&self) -> StaticSecret {
        StaticSecret::from(self.0)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl WgPublicKey {
    /// Parse the base64 form (as `wg pubkey` prints it).
    pub fn from_base64(s: &str) -> Result<Self, TunnelError> {
        decode32(s).map(Self)
    }

    /// The base64 form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// From the 32 raw bytes (as protocol messages carry it).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    pub(crate) fn x25519(&self) -> PublicKey {
        PublicKey::from(self.0)
    }
}

impl fmt::Debug for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgPublicKey({})", self.to_base64())
    }
}

impl fmt::Display for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_base64() {
        let k = PrivateKey::generate();
        let k2 = PrivateKey::from_base64(&k.to_base64()).expect("parse");
        assert_eq!(k.public_key(), k2.public_key());
        let p = WgPublicKey::from_base64(&k.public_key().to_base64()).expect("parse");
        assert_eq!(p, k.public_key());
        assert!(PrivateKey::from_base64("c2hvcnQ=").is_err());
    }
}
