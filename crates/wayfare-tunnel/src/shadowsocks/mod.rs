//! The shadowsocks data plane.
//!
//! ```text
//!  app --SOCKS5--> Buyer (127.0.0.1) ==ss AEAD-2022 (iPSK:uPSK)==> Seller port --> internet
//!                     meter                                       meter + exit policy
//! ```
//! - [`Seller`]: one TCP+UDP port, `2022-blake3-aes-256-gcm`, one user key per session,
//!   sessions added and removed at runtime, live meters.
//! - [`LegacySeller`]: one port per session with `chacha20-ietf-poly1305`.
//! - [`Buyer`]: local SOCKS5 (CONNECT, UDP ASSOCIATE) and port forwards to a seller.

mod buyer;
mod credentials;
mod legacy;
mod replay;
mod seller;
mod server;
mod server_udp;
mod socks5;

pub use buyer::{Buyer, BuyerConfig};
pub use credentials::{CIPHER_2022, CIPHER_LEGACY, ClientConfig, SessionKey};
pub use legacy::LegacySeller;
pub use replay::{PacketWindow, WINDOW_BITS};
pub use seller::{Seller, SellerConfig};
pub use server::DEFAULT_UDP_ASSOC_CAP;
