//! Session keys and the `ss://` (SIP002) form of a session's client configuration.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;
use shadowsocks::{ServerAddr, ServerConfig, crypto::CipherKind};

use crate::TunnelError;

/// Multi-user cipher of the shared seller port.
pub const CIPHER_2022: &str = "2022-blake3-aes-256-gcm";
/// Cipher of legacy one-port-per-session mode.
pub const CIPHER_LEGACY: &str = "chacha20-ietf-poly1305";

/// A 32-byte key (an AEAD-2022 iPSK or uPSK). Never printed in full.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        Self(k)
    }

    /// Parse standard base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, TunnelError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|e| TunnelError::BadKey(format!("not base64: {e}")))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| TunnelError::BadKey(format!("{} bytes instead of 32", bytes.len())))?;
        Ok(Self(arr))
    }

    /// Standard base64.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// What a buyer needs to reach a seller for one session: address, cipher and password
/// (`"iPSK:uPSK"` for AEAD-2022).
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) inner: ServerConfig,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server", &self.inner.addr().to_string())
            .field("method", &self.inner.method().to_string())
            .finish_non_exhaustive()
    }
}

pub(crate) fn parse_method(method: &str) -> Result<CipherKind, TunnelError> {
    match method {
        CIPHER_2022 => Ok(CipherKind::AEAD2022_BLAKE3_AES_256_GCM),
        CIPHER_LEGACY => Ok(CipherKind::CHACHA20_POLY1305),
        other => Err(TunnelError::UnsupportedCipher(other.to_owned())),
    }
}

impl ClientConfig {
    /// Build from parts. `server` is `HOST:PORT`.
    pub fn new(server: &str, method: &str, password: &str) -> Result<Self, TunnelError> {
        let kind = parse_method(method)?;
        let addr: ServerAddr = server.parse().map_err(|_| {
            TunnelError::BadUri(format!("server address {server:?} is not HOST:PORT"))
        })?;
        let inner = ServerConfig::new(addr, password, kind)
            .map_err(|e| TunnelError::BadKey(e.to_string()))?;
        Ok(Self { inner })
    }

    /// Parse an `ss://` URI (SIP002). Only Wayfare's two ciphers are accepted.
    pub fn from_uri(uri: &str) -> Result<Self, TunnelError> {
        let uri = uri.trim();
        if !uri.starts_with("ss://") {
            return Err(TunnelError::BadUri("does not start with ss://".into()));
        }
        let inner = ServerConfig::from_url(uri).map_err(|e| {
            let msg = format!("{e:?}");
            if msg.contains("Method") || msg.contains("Cipher") {
                TunnelError::UnsupportedCipher(msg)
            } else {
                TunnelError::BadUri(msg)
            }
        })?;
        parse_method(&inner.method().to_string())?;
        Ok(Self { inner })
    }

    /// The `ss://` URI for clients (SIP002; AEAD-2022 userinfo is percent-encoded).
    pub fn to_uri(&self) -> String {
        self.inner.to_url()
    }

    /// `HOST:PORT` of the seller.
    pub fn server(&self) -> String {
        self.inner.addr().to_string()
    }

    /// Cipher name.
    pub fn method(&self) -> String {
        self.inner.method().to_string()
    }

    /// Password as a client config file wants it (`iPSK:uPSK` for AEAD-2022).
    pub fn password(&self) -> String {
        self.inner.export_password()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip_2022_and_legacy() {
        let pw = format!(
            "{}:{}",
            SessionKey::generate().to_base64(),
            SessionKey::generate().to_base64()
        );
        let c = ClientConfig::new("198.18.1.1:8388", CIPHER_2022, &pw).expect("config");
        let back = ClientConfig::from_uri(&c.to_uri()).expect("parse");
        assert_eq!(back.password(), pw);
        assert_eq!(back.server(), "198.18.1.1:8388");
        assert_eq!(back.method(), CIPHER_2022);

        let l = ClientConfig::new("198.18.1.1:9000", CIPHER_LEGACY, "s3cret").expect("config");
        let back = ClientConfig::from_uri(&l.to_uri()).expect("parse");
        assert_eq!(back.password(), "s3cret");
        assert_eq!(back.method(), CIPHER_LEGACY);
    }

    #[test]
    fn bad_uri_key_and_cipher_are_clear_errors() {
        let e = ClientConfig::from_uri("http://x").expect_err("scheme");
        assert!(e.to_string().starts_with("invalid ss:// URI"), "{e}");
        let e = ClientConfig::from_uri("ss://%%%@").expect_err("garbage");
        assert!(matches!(e, TunnelError::BadUri(_)), "{e}");
        let e = ClientConfig::new("1.2.3.4:1", "rc4-md5", "x").expect_err("cipher");
        assert!(e.to_string().contains("unsupported cipher"), "{e}");
        let e = ClientConfig::new("1.2.3.4:1", CIPHER_2022, "short").expect_err("key");
        assert!(matches!(e, TunnelError::BadKey(_)), "{e}");
        let e = SessionKey::from_base64("AAAA").expect_err("len");
        assert!(e.to_string().contains("3 bytes instead of 32"), "{e}");
        let e = SessionKey::from_base64("!!").expect_err("b64");
        assert!(e.to_string().contains("not base64"), "{e}");
        let uri = ClientConfig::new("1.2.3.4:1", CIPHER_LEGACY, "x")
            .expect("config")
            .to_uri();
        assert!(uri.starts_with("ss://"));
    }
}
