//! Deploying `WayfareMarket` from the committed artifact to any EVM JSON-RPC node, checked
//! before (chain id, the deployer's ETH, the constructor's limits) and after (code at the
//! address).

use alloy::{
    primitives::{Address, TxHash, U256},
    providers::Provider,
    signers::local::PrivateKeySigner,
};

use crate::{
    error::ChainError,
    market::{MarketClient, connect_provider},
    units::format_eth,
};

/// The constructor's shortest challenge period, in seconds.
pub const MIN_CHALLENGE_PERIOD: u64 = 60;
/// The constructor's longest challenge period, in seconds (365 days).
pub const MAX_CHALLENGE_PERIOD: u64 = 365 * 24 * 3600;

/// What to deploy, and where.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// Refuse unless the node is on this chain.
    pub expected_chain_id: Option<u64>,
    /// Where burns are swept to.
    pub burn_sink: Address,
    /// Seconds between a unilateral close and its finalization.
    pub challenge_period: u64,
}

/// A deployed market.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deployment {
    /// The contract.
    pub market: Address,
    /// The chain.
    pub chain_id: u64,
    /// The block of the deployment (the indexer's `start_block`).
    pub deploy_block: u64,
    /// The transaction.
    pub tx: TxHash,
    /// The deploying account.
    pub deployer: Address,
    /// Its burn sink.
    pub burn_sink: Address,
    /// Its challenge period, seconds.
    pub challenge_period: u64,
    /// Gas the deployment used.
    pub gas_used: u64,
}

fn refuse(why: String) -> ChainError {
    ChainError::Rpc {
        what: "deploy".into(),
        why,
    }
}

/// Deploys a market signed by `signer`; waits for the receipt and checks the code.
pub async fn deploy_market(
    opts: &DeployOptions,
    signer: PrivateKeySigner,
) -> Result<Deployment, ChainError> {
    if !(MIN_CHALLENGE_PERIOD..=MAX_CHALLENGE_PERIOD).contains(&opts.challenge_period) {
        return Err(refuse(format!(
            "--challenge-period {} s is out of range: the market accepts {MIN_CHALLENGE_PERIOD} s to 365 days (3600 is a common choice)",
            opts.challenge_period
        )));
    }
    let deployer = signer.address();
    let provider = connect_provider(&opts.rpc_url, Some(signer)).await?;
    let unreachable = |e: alloy::transports::TransportError| {
        ChainError::unreachable(&opts.rpc_url, &e.to_string())
    };
    let chain_id = provider.get_chain_id().await.map_err(unreachable)?;
    if let Some(expected) = opts.expected_chain_id
        && expected != chain_id
    {
        return Err(ChainError::ChainIdMismatch {
            url: opts.rpc_url.clone(),
            expected,
            actual: chain_id,
        });
    }
    let balance = provider.get_balance(deployer).await.map_err(unreachable)?;
    let gas_price = provider.get_gas_price().await.map_err(unreachable)?;
    // The deployment takes about 3.5 M gas; ask for that much ETH before sending anything.
    let needed = U256::from(gas_price) * U256::from(3_500_000u64);
    if balance.is_zero() || balance < needed {
        return Err(refuse(format!(
            "the deployer {deployer} has {} on chain {chain_id}, about {} is needed for gas: send it ETH and re-run",
            format_eth(balance),
            format_eth(needed)
        )));
    }
    let (client, outcome) = MarketClient::deploy(
        provider.clone(),
        &opts.rpc_url,
        deployer,
        opts.burn_sink,
        opts.challenge_period,
    )
    .await?;
    let code = provider
        .get_code_at(client.address())
        .await
        .map_err(unreachable)?;
    if code.is_empty() {
        return Err(refuse(format!(
            "transaction {} was mined but there is no code at {}: the node may be misconfigured; check it with `cast code`",
            outcome.hash,
            client.address()
        )));
    }
    Ok(Deployment {
        market: client.address(),
        chain_id,
        deploy_block: outcome.block,
        tx: outcome.hash,
        deployer,
        burn_sink: opts.burn_sink,
        challenge_period: opts.challenge_period,
        gas_used: outcome.gas_used,
    })
}
