//! Typed client for the WayfareMarket contract (alloy), its events and reverts, Ethereum V3
//! keystores, and the local devnet (anvil from the npm toolchain, market deployed, accounts).
//!
//! ```text
//! bindings   sol!-generated types from artifacts/WayfareMarket.json
//! deploy     the market from the committed artifact to any JSON-RPC node, checked
//! market     MarketClient: one method per contract function and view
//! events     range reads and a polling stream of decoded events
//! error      ChainError: reverts decoded into "what happened, what to do"
//! keystore   V3 keystores, password from file / env / prompt
//! devnet     anvil + deploy + funded, registered accounts
//! units      amounts and times for people
//! ```

pub mod bindings;
pub mod deploy;
pub mod devnet;
pub mod error;
pub mod events;
pub mod keystore;
pub mod market;
pub mod toolchain;
pub mod units;

pub use bindings::WayfareMarket;
pub use error::ChainError;
pub use events::MarketLog;
pub use market::{ConnectOptions, MarketClient, TxOutcome};
