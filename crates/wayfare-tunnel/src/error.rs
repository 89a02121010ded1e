//! Typed errors of the data plane; each message says what to do.

use std::{io, net::SocketAddr};

/// Errors returned by `wayfare-tunnel`.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The listen address is taken or not available.
    #[error(
        "cannot listen on {addr}: {source}; pick another port or stop the process that uses it"
    )]
    Bind {
        /// Address we tried to bind.
        addr: SocketAddr,
        /// Underlying error.
        source: io::Error,
    },
    /// An `ss://` URI could not be parsed.
    #[error(
        "invalid ss:// URI ({0}); expected ss://METHOD:PASSWORD@HOST:PORT as printed by the seller"
    )]
    BadUri(String),
    /// A session key is not valid for the cipher.
    #[error(
        "invalid session key ({0}); a 2022-blake3-aes-256-gcm key is 32 random bytes in standard base64"
    )]
    BadKey(String),
    /// The cipher is not one Wayfare speaks.
    #[error(
        "unsupported cipher {0:?}; use 2022-blake3-aes-256-gcm (shared port) or chacha20-ietf-poly1305 (legacy, one port per session)"
    )]
    UnsupportedCipher(String),
    /// A session with this id already exists.
    #[error("session {0:?} already exists; remove it first or use a new session id")]
    DuplicateSession(String),
    /// No session with this id.
    #[error("no session {0:?}; it was never added or has already been removed")]
    UnknownSession(String),
    /// An allow-list entry is not a CIDR.
    #[error("invalid CIDR {0:?}; expected ADDRESS/PREFIX such as 198.18.0.0/15")]
    BadCidr(String),
    /// A WireGuard config could not be parsed.
    #[error("invalid WireGuard config: {0}; expected a wg-quick file as exported by the seller")]
    BadConfig(String),
    /// The tunnel address pool is used up.
    #[error("no free tunnel address in {0}; remove old sessions or configure a larger pool")]
    PoolExhausted(String),
    /// The WireGuard device failed.
    #[error("WireGuard device: {0}")]
    Device(String),
    /// A system command (ip, nft, sysctl) failed.
    #[error("system network setup failed: {0}; run as root with iproute2 and nftables installed")]
    System(String),
    /// Network namespace lab setup failed.
    #[error("network namespace lab: {0}; run as root with iproute2 installed")]
    Lab(String),
    /// Other I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}
