//! The on-chain seller registry as the p2p layer's [`Registry`]: announcements are accepted
//! only when signed by the signer the market lists for an active seller.

use alloy_primitives::Address;
use wayfare_chain::MarketClient;
use wayfare_p2p::{Registry, RegistryError};

/// [`Registry`] backed by `WayfareMarket.seller(account)`.
#[derive(Debug, Clone)]
pub struct ChainRegistry {
    client: MarketClient,
}

impl ChainRegistry {
    /// Reads the registry through `client`.
    pub fn new(client: MarketClient) -> Self {
        Self { client }
    }
}

impl Registry for ChainRegistry {
    async fn signer_of(&self, seller: Address) -> Result<Option<Address>, RegistryError> {
        let info = self
            .client
            .seller(seller)
            .await
            .map_err(|e| RegistryError(e.to_string()))?;
        Ok((info.registered && info.active).then_some(info.signer))
    }
}
