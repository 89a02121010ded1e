//! WireGuard mode: a seller exit serving many sessions on one UDP port and a buyer VPN
//! client, both on gotatun with a tun-rs TUN.
//!
//! ```text
//!  buyer apps -> TUN (filter + meter) -> gotatun ==UDP==> gotatun -> TUN (meter + exit policy)
//!                                                               -> kernel forward + nft masquerade
//! ```
//! Meters count IP packet bytes inside the tunnel on both sides.

mod buyer;
mod config;
mod conntrack;
mod keys;
mod offload;
mod pool;
mod resolved;
mod seller;
pub(crate) mod sys;
mod tun;
mod udp;

pub use buyer::{
    DEFAULT_STATE_DIR, RepairReport, Routing, WgBuyer, WgBuyerConfig, buyer_table_name, repair,
};
pub use config::{DEFAULT_MTU, WgClientConfig};
pub use keys::{PrivateKey, WgPublicKey};
pub use pool::DEFAULT_QUARANTINE;
pub use seller::{DEFAULT_POOL, WgSeller, WgSellerConfig, WgSessionGrant, exit_table_name};
