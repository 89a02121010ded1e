//! Wayfare's peer-to-peer layer on libp2p: signed announcements (gossipsub), discovery
//! (Kademlia), negotiation and session messages (request-response) and relays.
//!
//! Not built yet: see the discovery and negotiation issue. This crate exists so the
//! workspace has its final layout and dependency direction (proto <- p2p <- node).
