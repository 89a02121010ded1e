//! secp256k1 signing keys (seller signer, buyer voucher signer).

use alloy_primitives::{Address, B256};
use k256::ecdsa::SigningKey;
use thiserror::Error;

/// A secp256k1 secret key. Its `Debug` shows only the address; the scalar is zeroized on drop.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

/// Why bytes are not a usable secret key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Zero, or not below the curve order.
    #[error("secret key is zero or not below the secp256k1 order: use a key from a keystore")]
    OutOfRange,
    /// Signing failed (happens with probability ~2^-256).
    #[error("signing failed; retry")]
    SigningFailed,
}

impl SecretKey {
    /// Parses 32 big-endian bytes.
    pub fn from_bytes(b: &[u8; 32]) -> Result<Self, KeyError> {
        SigningKey::from_bytes(b.into())
            .map(Self)
            .map_err(|_| KeyError::OutOfRange)
    }

    /// The 32 big-endian bytes (handle with care).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    /// The Ethereum address of the key.
    pub fn address(&self) -> Address {
        Address::from_private_key(&self.0)
    }

    /// Signs a 32-byte digest: 65 bytes `r ‖ s ‖ v`, low `s`, `v` = 27 or 28.
    pub fn try_sign_digest(&self, digest: B256) -> Result<[u8; 65], KeyError> {
        let (mut sig, mut recid) = self
            .0
            .sign_prehash_recoverable(digest.as_slice())
            .map_err(|_| KeyError::SigningFailed)?;
        if let Some(low) = sig.normalize_s() {
            sig = low;
            recid = k256::ecdsa::RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced());
        }
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + u8::from(recid.is_y_odd());
        Ok(out)
    }

    /// Signs a 32-byte digest, see [`Self::try_sign_digest`].
    ///
    /// # Panics
    /// Only if RFC 6979 yields an invalid nonce, which happens with probability about 2^-256
    /// (the same contract as the `signature` crate's infallible `sign`).
    #[allow(clippy::expect_used)]
    pub fn sign_digest(&self, digest: B256) -> [u8; 65] {
        self.try_sign_digest(digest)
            .expect("RFC 6979 signing of a 32-byte digest cannot fail in practice")
    }
}

impl core::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretKey")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.address() == other.address()
    }
}

impl Eq for SecretKey {}
