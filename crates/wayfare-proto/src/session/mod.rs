//! The buyer and seller session state machines.
//!
//! Both are sans-IO: the shell calls `handle_message` (a decoded message from the peer),
//! `handle_meter` (bytes the data plane counted), `handle_chain_event` (what the chain client
//! saw) and `handle_timeout(now)` (when `poll_timeout` said), then drains `poll_event` first and
//! `poll_transmit` second. A `Persist` event must be stored before the shell polls again: the
//! transmits that acknowledge persisted state (the buyer's voucher, the seller's usage ack) are
//! held back until the `Persist` ahead of them has been polled.
//!
//! ```text
//!  buyer                                   seller
//!  QuoteRequest  ───────────────────────▶  counter-offer, sign Offer
//!                ◀───────────────────────  Quote (or Refusal)
//!  OpenChannel (event) ── chain ──▶ ChannelOpened (both see it)
//!  Opened        ───────────────────────▶  StartService (event) → shell provisions → reveal()
//!                ◀───────────────────────  Reveal (sealed)
//!  StartService (event)
//!  every interval: Persist, Voucher ─────▶  verify, Persist best, check tolerance
//!                ◀───────────────────────  Usage (meter + ack)
//!  CloseRequest  ───────────────────────▶  StopService, CloseConsent
//!                ◀───────────────────────  CloseConsent → Leave{Cooperative}
//! ```
//!
//! Pause and resume keep the channel across sessions, with no chain transaction:
//!
//! ```text
//!  pause(): StopService, Persist, Voucher, CloseRequest{Pause} ─▶  StopService{Paused}, Persist
//!  Paused (event)  ◀──────────────────────────────────────────  Usage (the ack; no consent)
//!        … the buyer is away; the seller settles after pause_timeout …
//!  BuyerSession::resume(snapshot): Persist, Resume (signed) ───▶  StartService → reveal()
//!                  ◀──────────────────────────────────────────  Reveal (sealed to the new key)
//!  StartService; vouchers go on from the last one
//! ```

mod buyer;
mod config;
mod error;
mod events;
mod outbox;
mod seller;
mod snapshot;

pub use buyer::{AcceptedBytes, BuyerParams, BuyerSession};
pub use config::{SessionConfig, TopUpPolicy};
pub use error::SessionError;
pub use events::{BuyerEvent, ChainEvent, ChannelOpened, CloseAction, EndReason, SellerEvent};
pub use seller::{SellerParams, SellerSession};
pub use snapshot::{
    BuyerPhase, BuyerSnapshot, ChannelState, SNAPSHOT_VERSION, Secret32, SellerPhase,
    SellerSnapshot,
};
