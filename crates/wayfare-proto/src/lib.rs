//! Sans-IO core of Wayfare: messages and their codec, EIP-712 hashing, billing math and the
//! buyer and seller session state machines. No tokio, no sockets, no clock, no RNG inside.
//!
//! The shells (the node) feed inputs — messages from the peer, meter readings, chain events and
//! the current time — into [`session::SellerSession`] / [`session::BuyerSession`] and drain
//! outputs: bytes to send (`poll_transmit`), things to do (`poll_event`: start or stop the
//! service, settle, top up, leave, persist) and when to call back (`poll_timeout`).
//!
//! | module | holds |
//! |---|---|
//! | [`messages`] / [`codec`] | the protocol messages and their strict, versioned, size-capped encoding |
//! | [`eip712`] / [`keys`] | `Offer` / `Voucher` / `CloseConsent` digests, channel ids, signing and recovery |
//! | [`seal`] | the HPKE-sealed reveal |
//! | [`billing`] | `owed = ceil(X * bytes / 2^20) + Y * seconds` and the tolerance math |
//! | [`negotiation`] | the seller's counter-offer policy and the buyer's acceptance |
//! | [`session`] | the two state machines, their config, events and snapshots |

pub mod billing;
pub mod codec;
pub mod eip712;
pub mod keys;
pub mod messages;
pub mod negotiation;
pub mod seal;
pub mod session;
pub mod types;

pub use alloy_primitives::{Address, B256, U256};
pub use types::{Service, ServiceSet, Terms, Timestamp};
