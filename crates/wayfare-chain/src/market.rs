//! `MarketClient`: one typed method per contract function and view, with reverts decoded into
//! [`ChainError`]s that say what happened and what to do.

use std::time::Duration;

use alloy::{
    contract::SolCallBuilder,
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, TxHash, U256},
    providers::{DynProvider, Provider, ProviderBuilder, WsConnect},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
    transports::http::reqwest::Url,
};
use wayfare_proto::eip712;

use crate::{
    bindings::WayfareMarket::{self, WayfareMarketInstance},
    error::{ChainError, describe_contract_error},
};

/// How to reach a market.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// JSON-RPC URL: `http(s)://` or `ws(s)://`.
    pub rpc_url: String,
    /// The market contract's address.
    pub market: Address,
    /// Fail unless the node is on this chain.
    pub expected_chain_id: Option<u64>,
    /// The account that signs transactions (none: views only).
    pub signer: Option<PrivateKeySigner>,
}

/// A mined transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TxOutcome {
    /// Its hash.
    pub hash: TxHash,
    /// The block it was mined in.
    pub block: u64,
    /// Gas it used.
    pub gas_used: u64,
}

/// A typed client for one deployed `WayfareMarket`.
#[derive(Clone)]
pub struct MarketClient {
    provider: DynProvider,
    market: WayfareMarketInstance<DynProvider>,
    chain_id: u64,
    from: Option<Address>,
    rpc_url: String,
}

impl std::fmt::Debug for MarketClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketClient")
            .field("rpc_url", &self.rpc_url)
            .field("market", self.market.address())
            .field("chain_id", &self.chain_id)
            .field("from", &self.from)
            .finish()
    }
}

/// Builds a provider for `rpc_url`, signing with `signer` when given.
pub async fn connect_provider(
    rpc_url: &str,
    signer: Option<PrivateKeySigner>,
) -> Result<DynProvider, ChainError> {
    let url: Url = rpc_url
        .parse()
        .map_err(|e: <Url as std::str::FromStr>::Err| ChainError::BadRpcUrl {
            url: rpc_url.to_string(),
            why: e.to_string(),
        })?;
    let builder = provider_builder();
    let unreachable =
        |e: alloy::transports::TransportError| ChainError::unreachable(rpc_url, &e.to_string());
    let provider = match (url.scheme(), signer) {
        ("http" | "https", Some(s)) => builder
            .wallet(EthereumWallet::from(s))
            .connect_http(url)
            .erased(),
        ("http" | "https", None) => builder.connect_http(url).erased(),
        ("ws" | "wss", Some(s)) => builder
            .wallet(EthereumWallet::from(s))
            .connect_ws(WsConnect::new(rpc_url))
            .await
            .map_err(unreachable)?
            .erased(),
        ("ws" | "wss", None) => builder
            .connect_ws(WsConnect::new(rpc_url))
            .await
            .map_err(unreachable)?
            .erased(),
        (other, _) => {
            return Err(ChainError::BadRpcUrl {
                url: rpc_url.to_string(),
                why: format!("scheme `{other}` is not http, https, ws or wss"),
            });
        }
    };
    Ok(provider)
}

/// The fillers of [`provider_builder`].
pub type Fillers = alloy::providers::fillers::JoinFill<
    alloy::providers::fillers::JoinFill<
        alloy::providers::fillers::JoinFill<
            alloy::providers::Identity,
            alloy::providers::fillers::GasFiller,
        >,
        alloy::providers::fillers::NonceFiller<alloy::providers::fillers::SimpleNonceManager>,
    >,
    alloy::providers::fillers::ChainIdFiller,
>;

/// A provider builder that fills gas, chain id and a nonce asked from the node for every
/// transaction. (A cached nonce would be consumed by a call the node refuses at gas
/// estimation, leaving a gap that keeps every later transaction from being mined.)
pub fn provider_builder() -> ProviderBuilder<alloy::providers::Identity, Fillers> {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
}

impl MarketClient {
    /// Connects, checks the chain id and that a contract is deployed at the market address.
    pub async fn connect(opts: ConnectOptions) -> Result<Self, ChainError> {
        let from = opts.signer.as_ref().map(|s| s.address());
        let provider = connect_provider(&opts.rpc_url, opts.signer).await?;
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::unreachable(&opts.rpc_url, &e.to_string()))?;
        if let Some(expected) = opts.expected_chain_id
            && expected != chain_id
        {
            return Err(ChainError::ChainIdMismatch {
                url: opts.rpc_url.clone(),
                expected,
                actual: chain_id,
            });
        }
        let code = provider
            .get_code_at(opts.market)
            .await
            .map_err(|e| ChainError::unreachable(&opts.rpc_url, &e.to_string()))?;
        if code.is_empty() {
            return Err(ChainError::NoContract {
                market: opts.market,
                chain_id,
            });
        }
        let market = WayfareMarket::new(opts.market, provider.clone());
        Ok(Self {
            provider,
            market,
            chain_id,
            from,
            rpc_url: opts.rpc_url,
        })
    }

    /// Deploys a new market (devnets and tests) and returns a client for it.
    pub async fn deploy(
        provider: DynProvider,
        rpc_url: &str,
        from: Address,
        burn_sink: Address,
        challenge_period: u64,
    ) -> Result<(Self, TxOutcome), ChainError> {
        let builder = WayfareMarket::deploy_builder(provider.clone(), burn_sink, challenge_period);
        let pending = builder
            .send()
            .await
            .map_err(|e| describe_contract_error("deploy", e))?;
        let receipt = wait_for_receipt(&provider, "deploy", *pending.tx_hash()).await?;
        let address = receipt.contract_address.ok_or_else(|| ChainError::Rpc {
            what: "deploy".into(),
            why: "the receipt has no contract address".into(),
        })?;
        let outcome = TxOutcome {
            hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
            gas_used: receipt.gas_used,
        };
        if !receipt.status() {
            return Err(ChainError::TxFailed {
                what: "deploy".into(),
                hash: outcome.hash,
            });
        }
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::unreachable(rpc_url, &e.to_string()))?;
        let from = Some(from);
        let market = WayfareMarket::new(address, provider.clone());
        Ok((
            Self {
                provider,
                market,
                chain_id,
                from,
                rpc_url: rpc_url.to_string(),
            },
            outcome,
        ))
    }

    /// The market's address.
    pub fn address(&self) -> Address {
        *self.market.address()
    }
    /// The chain id the node reported.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }
    /// The account transactions are sent from, if any.
    pub fn from(&self) -> Option<Address> {
        self.from
    }
    /// The RPC URL.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }
    /// The underlying provider (for raw RPC such as anvil's time travel).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }
    /// The generated contract instance, for anything not wrapped here.
    pub fn contract(&self) -> &WayfareMarketInstance<DynProvider> {
        &self.market
    }
    /// The EIP-712 domain of this market (computed locally, see [`eip712::domain`]).
    pub fn domain(&self) -> alloy::sol_types::Eip712Domain {
        eip712::domain(self.chain_id, self.address())
    }

    fn need_signer(&self, what: &str) -> Result<Address, ChainError> {
        self.from.ok_or_else(|| ChainError::NoSigner {
            what: what.to_string(),
        })
    }

    async fn send<C: SolCall>(
        &self,
        what: &str,
        call: SolCallBuilder<&DynProvider, C>,
    ) -> Result<TxOutcome, ChainError> {
        self.need_signer(what)?;
        let pending = call
            .send()
            .await
            .map_err(|e| describe_contract_error(what, e))?;
        let hash = *pending.tx_hash();
        let receipt = wait_for_receipt(&self.provider, what, hash).await?;
        if !receipt.status() {
            return Err(ChainError::TxFailed {
                what: what.to_string(),
                hash,
            });
        }
        Ok(TxOutcome {
            hash,
            block: receipt.block_number.unwrap_or_default(),
            gas_used: receipt.gas_used,
        })
    }

    async fn view<C: SolCall>(
        &self,
        what: &str,
        call: SolCallBuilder<&DynProvider, C>,
    ) -> Result<C::Return, ChainError> {
        call.call()
            .await
            .map_err(|e| describe_contract_error(what, e))
    }

    // --- registry -------------------------------------------------------------------------

    /// `registerSeller`: the sending account becomes a seller; `funds` pay its future burns.
    pub async fn register_seller(
        &self,
        signer: Address,
        payout: Address,
        encryption_key: B256,
        metadata: String,
        funds: U256,
    ) -> Result<TxOutcome, ChainError> {
        let call = self
            .market
            .registerSeller(signer, payout, encryption_key, metadata)
            .value(funds);
        self.send("registerSeller", call).await
    }

    /// `updateSeller`: rotating the signer voids unused offers signed by the old one.
    pub async fn update_seller(
        &self,
        signer: Address,
        payout: Address,
        encryption_key: B256,
        metadata: String,
    ) -> Result<TxOutcome, ChainError> {
        let call = self
            .market
            .updateSeller(signer, payout, encryption_key, metadata);
        self.send("updateSeller", call).await
    }

    /// `fundSeller`: adds to the sending seller's burn funds.
    pub async fn fund_seller(&self, amount: U256) -> Result<TxOutcome, ChainError> {
        self.send("fundSeller", self.market.fundSeller().value(amount))
            .await
    }

    /// `withdrawSellerFunds`.
    pub async fn withdraw_seller_funds(&self, amount: U256) -> Result<TxOutcome, ChainError> {
        self.send(
            "withdrawSellerFunds",
            self.market.withdrawSellerFunds(amount),
        )
        .await
    }

    /// `deactivateSeller`: no new channels; open ones run on.
    pub async fn deactivate_seller(&self) -> Result<TxOutcome, ChainError> {
        self.send("deactivateSeller", self.market.deactivateSeller())
            .await
    }

    /// `reactivateSeller`: takes new channels again after `deactivateSeller`.
    pub async fn reactivate_seller(&self) -> Result<TxOutcome, ChainError> {
        self.send("reactivateSeller", self.market.reactivateSeller())
            .await
    }

    // --- channels -------------------------------------------------------------------------

    /// `open`: opens a channel with a seller-signed offer; `value` = deposit + buyer burn.
    /// Returns the channel id and the transaction.
    pub async fn open(
        &self,
        offer: &eip712::Offer,
        seller_sig: &[u8],
        voucher_signer: Address,
        value: U256,
    ) -> Result<(B256, TxOutcome), ChainError> {
        let sol_offer = to_sol_offer(offer);
        let call = self
            .market
            .open(
                sol_offer,
                Bytes::copy_from_slice(seller_sig),
                voucher_signer,
            )
            .value(value);
        let outcome = self.send("open", call).await?;
        Ok((
            eip712::channel_id(self.chain_id, self.address(), offer.seller, offer.nonce),
            outcome,
        ))
    }

    /// `topUp`: adds to an open channel's deposit.
    pub async fn top_up(&self, id: B256, amount: U256) -> Result<TxOutcome, ChainError> {
        self.send("topUp", self.market.topUp(id).value(amount))
            .await
    }

    /// `settle` with a voucher; pass an empty signature to settle on the best stored voucher.
    pub async fn settle(
        &self,
        id: B256,
        amount: U256,
        voucher_sig: &[u8],
    ) -> Result<TxOutcome, ChainError> {
        let call = self
            .market
            .settle(id, amount, Bytes::copy_from_slice(voucher_sig));
        self.send("settle", call).await
    }

    /// `cooperativeClose`: voucher and seller consent for the same amount.
    pub async fn cooperative_close(
        &self,
        id: B256,
        amount: U256,
        voucher_sig: &[u8],
        consent_sig: &[u8],
    ) -> Result<TxOutcome, ChainError> {
        let call = self.market.cooperativeClose(
            id,
            amount,
            Bytes::copy_from_slice(voucher_sig),
            Bytes::copy_from_slice(consent_sig),
        );
        self.send("cooperativeClose", call).await
    }

    /// `startClose`: the buyer's unilateral close; the challenge period starts.
    pub async fn start_close(&self, id: B256) -> Result<TxOutcome, ChainError> {
        self.send("startClose", self.market.startClose(id)).await
    }

    /// `submitVoucher`: during a close, raises the channel's best voucher.
    pub async fn submit_voucher(
        &self,
        id: B256,
        amount: U256,
        voucher_sig: &[u8],
    ) -> Result<TxOutcome, ChainError> {
        let call = self
            .market
            .submitVoucher(id, amount, Bytes::copy_from_slice(voucher_sig));
        self.send("submitVoucher", call).await
    }

    /// `finalize`: ends a close after the challenge period.
    pub async fn finalize(&self, id: B256) -> Result<TxOutcome, ChainError> {
        self.send("finalize", self.market.finalize(id)).await
    }

    /// `withdraw`: pulls what closes credited to the sending account.
    pub async fn withdraw(&self) -> Result<TxOutcome, ChainError> {
        self.send("withdraw", self.market.withdraw()).await
    }

    /// `rate`: one score 1..5 per side after a channel closed.
    pub async fn rate(&self, id: B256, score: u8) -> Result<TxOutcome, ChainError> {
        self.send("rate", self.market.rate(id, score)).await
    }

    /// `sweepBurns`: sends accumulated burns to the sink.
    pub async fn sweep_burns(&self) -> Result<TxOutcome, ChainError> {
        self.send("sweepBurns", self.market.sweepBurns()).await
    }

    // --- views ----------------------------------------------------------------------------

    /// `seller(address)`.
    pub async fn seller(
        &self,
        account: Address,
    ) -> Result<<WayfareMarket::sellerCall as SolCall>::Return, ChainError> {
        self.view("seller", self.market.seller(account)).await
    }

    /// `channel(bytes32)`.
    pub async fn channel(
        &self,
        id: B256,
    ) -> Result<<WayfareMarket::channelCall as SolCall>::Return, ChainError> {
        self.view("channel", self.market.channel(id)).await
    }

    /// `channelId(seller, nonce)` as the contract computes it.
    pub async fn channel_id(&self, seller: Address, nonce: u64) -> Result<B256, ChainError> {
        self.view("channelId", self.market.channelId(seller, nonce))
            .await
    }

    /// `hashOffer`: the EIP-712 digest the seller signs.
    pub async fn hash_offer(&self, offer: &eip712::Offer) -> Result<B256, ChainError> {
        self.view("hashOffer", self.market.hashOffer(to_sol_offer(offer)))
            .await
    }

    /// `hashVoucher`.
    pub async fn hash_voucher(&self, id: B256, amount: U256) -> Result<B256, ChainError> {
        self.view("hashVoucher", self.market.hashVoucher(id, amount))
            .await
    }

    /// `hashCloseConsent`.
    pub async fn hash_close_consent(&self, id: B256, amount: U256) -> Result<B256, ChainError> {
        self.view("hashCloseConsent", self.market.hashCloseConsent(id, amount))
            .await
    }

    /// `domainSeparator`.
    pub async fn domain_separator(&self) -> Result<B256, ChainError> {
        self.view("domainSeparator", self.market.domainSeparator())
            .await
    }

    /// `withdrawable(account)`.
    pub async fn withdrawable(&self, account: Address) -> Result<U256, ChainError> {
        self.view("withdrawable", self.market.withdrawable(account))
            .await
    }

    /// `burnedUnswept`.
    pub async fn burned_unswept(&self) -> Result<U256, ChainError> {
        self.view("burnedUnswept", self.market.burnedUnswept())
            .await
    }

    /// `burnSink`.
    pub async fn burn_sink(&self) -> Result<Address, ChainError> {
        self.view("burnSink", self.market.burnSink()).await
    }

    /// `challengePeriod` in seconds.
    pub async fn challenge_period(&self) -> Result<u64, ChainError> {
        self.view("challengePeriod", self.market.challengePeriod())
            .await
    }

    /// The latest block's number and timestamp.
    pub async fn head(&self) -> Result<(u64, u64), ChainError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| ChainError::unreachable(&self.rpc_url, &e.to_string()))?
            .ok_or_else(|| ChainError::Rpc {
                what: "head".into(),
                why: "no latest block".into(),
            })?;
        Ok((block.header.number, block.header.timestamp))
    }

    /// An account's balance in wei.
    pub async fn balance(&self, account: Address) -> Result<U256, ChainError> {
        self.provider
            .get_balance(account)
            .await
            .map_err(|e| ChainError::unreachable(&self.rpc_url, &e.to_string()))
    }
}

/// The proto crate's EIP-712 `Offer` as the contract binding's `Offer`.
pub fn to_sol_offer(o: &eip712::Offer) -> WayfareMarket::Offer {
    WayfareMarket::Offer {
        seller: o.seller,
        buyer: o.buyer,
        service: o.service,
        pricePerMiB: o.pricePerMiB,
        pricePerSecond: o.pricePerSecond,
        sellerBurn: o.sellerBurn,
        buyerBurn: o.buyerBurn,
        minDeposit: o.minDeposit,
        paymentInterval: o.paymentInterval,
        nonce: o.nonce,
        expiry: o.expiry,
    }
}

/// How long a sent transaction may take to be mined before we give up waiting (it may still be
/// mined later; the error says so).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls `eth_getTransactionReceipt` until the transaction is mined (works the same on every
/// node, with or without new-block subscriptions).
pub async fn wait_for_receipt(
    provider: &DynProvider,
    what: &str,
    hash: TxHash,
) -> Result<alloy::rpc::types::TransactionReceipt, ChainError> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        match provider.get_transaction_receipt(hash).await {
            Ok(Some(receipt)) => return Ok(receipt),
            Ok(None) => {}
            Err(e) => {
                return Err(ChainError::Rpc {
                    what: what.to_string(),
                    why: format!(
                        "transaction {hash} was sent, but asking for its receipt failed: {e}"
                    ),
                });
            }
        }
        if started.elapsed() > RECEIPT_TIMEOUT {
            return Err(ChainError::Rpc {
                what: what.to_string(),
                why: format!(
                    "transaction {hash} was sent but not mined within {} s: check it later with a block explorer or `cast receipt`",
                    RECEIPT_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}
