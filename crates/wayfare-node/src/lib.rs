//! The Wayfare daemon: seller and buyer roles wiring `wayfare-proto` sessions to the chain,
//! the tunnels and the p2p network, with a crash-safe SQLite store, a REST API and metrics.
//!
//! Not built yet: see the node issue. This crate exists so the workspace has its final
//! layout and dependency direction (proto, chain, tunnel, p2p <- node <- cli).
