//! The node's errors: each says what went wrong and what to do; the API maps them to HTTP
//! statuses in one place ([`NodeError::status`]).

use wayfare_chain::ChainError;

/// A failed node operation.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The chain failed or refused.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A tunnel could not be set up.
    #[error("tunnel: {0}")]
    Tunnel(#[from] wayfare_tunnel::TunnelError),
    /// The p2p node failed.
    #[error("p2p: {0}")]
    P2p(#[from] wayfare_p2p::P2pError),
    /// A key could not be loaded.
    #[error(transparent)]
    Key(#[from] wayfare_chain::keystore::KeyError),
    /// The config is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// This node does not have the role the request needs.
    #[error("this node has no {0} role: add a [{0}] section to the config and restart the daemon")]
    NoRole(&'static str),
    /// No offer fits.
    #[error("{0}")]
    NoOffers(String),
    /// No such session.
    #[error("no session {0}: `wayfare status` lists them")]
    NoSuchSession(String),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// Something else (startup).
    #[error("{0}")]
    Other(String),
}

impl NodeError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) | Self::Config(_) => 400,
            Self::NoSuchSession(_) => 404,
            Self::NoOffers(_) | Self::NoRole(_) => 409,
            Self::Chain(ChainError::Reverted { .. }) => 409,
            Self::Chain(_) | Self::P2p(_) => 502,
            _ => 500,
        }
    }
}
