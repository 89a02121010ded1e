//! The Wayfare daemon: seller and buyer roles wiring `wayfare-proto` sessions to the chain,
//! the tunnels and the p2p network, with a crash-safe SQLite store, a REST API and metrics.
//!
//! ```text
//!  config_template  config-reference.toml (every key, its default) and `wayfare init`'s copies
//!  daemon      config, keys, chain, p2p, roles, API; runs the node actor
//!  node        the actor: owns every session; persist before acknowledging
//!  inbound     every peer message: route to a role, typed refusal, counted, logged once a peer
//!  seller      announce, quote, provision on ChannelOpened, check vouchers, settle, watchtower
//!  buyer       pick an offer, open, reveal -> tunnel, pay every interval, leave and close
//!  actions     durable one-shot chain actions (open, settle, closes, finalize, top-up)
//!  chain_watch market events -> the sessions
//!  indexer     the reputation index: stored events, re-read near the head for reorgs
//!  quality     the buyer's measurements of a run: first byte, peak throughput, loss
//!  reputation  scores of sellers and buyers folded from market events (no oracle)
//!  store       SQLite (WAL, synchronous=FULL), schema versions and migrations
//!  api         REST on 127.0.0.1 with a bearer token; openapi; metrics
//!  paths       where the config and the data dir live (root: /etc, /var/lib; users: XDG)
//!  labnet      a whole network on one machine (namespace lab or loopback): demo and e2e tests
//! ```

pub mod ack_latency;
pub mod actions;
pub mod api;
pub mod api_types;
pub mod buyer;
pub mod chain_watch;
pub mod config;
pub mod config_reload;
pub mod config_template;
pub mod daemon;
pub mod dashboard;
pub mod error;
pub mod inbound;
pub mod indexer;
pub mod labnet;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod paths;
pub mod quality;
pub mod registry;
pub mod reputation;
pub mod seller;
pub mod store;

pub use config::NodeConfig;
pub use error::NodeError;
