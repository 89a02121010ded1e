//! `ChainError`: everything that can go wrong talking to the market, each saying what happened
//! and what to do. Contract reverts are decoded from the ABI's custom errors.

use alloy::primitives::{Address, Bytes, TxHash, U256};

use crate::{
    bindings::WayfareMarket::WayfareMarketErrors,
    keystore::KeyError,
    toolchain::ToolNotFound,
    units::{format_eth, format_utc},
};

/// A failed chain operation.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC URL doesn't parse.
    #[error(
        "`{url}` is not a JSON-RPC URL ({why}): use http://host:port, https://…, ws://… or wss://…"
    )]
    BadRpcUrl {
        /// The URL given.
        url: String,
        /// Why it was rejected.
        why: String,
    },
    /// The node can't be reached or answered nonsense.
    #[error(
        "can't reach the Ethereum node at {url} ({why}): check --rpc-url and that the node is running"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport's complaint.
        why: String,
    },
    /// The node is on another chain than expected.
    #[error(
        "the node at {url} is on chain {actual}, not chain {expected}: point --rpc-url at the right chain or fix --chain-id"
    )]
    ChainIdMismatch {
        /// The URL.
        url: String,
        /// The chain id asked for.
        expected: u64,
        /// The node's chain id.
        actual: u64,
    },
    /// No code at the market address.
    #[error(
        "there is no contract at {market} on chain {chain_id}: check --market (a devnet prints it at start)"
    )]
    NoContract {
        /// The address given.
        market: Address,
        /// The chain.
        chain_id: u64,
    },
    /// A transaction was attempted without an account.
    #[error(
        "{what} sends a transaction: choose the sending account with --keystore (or --as on a devnet)"
    )]
    NoSigner {
        /// The call.
        what: String,
    },
    /// The contract refused the call; nothing changed on chain.
    #[error("{what} refused: {message}")]
    Reverted {
        /// The call.
        what: String,
        /// The decoded reason, with the remedy.
        message: String,
        /// The decoded error.
        error: Box<WayfareMarketErrors>,
    },
    /// The contract reverted with data that isn't one of its errors.
    #[error(
        "{what} reverted with unknown data {data}: is --market really a WayfareMarket of this version?"
    )]
    RevertedUnknown {
        /// The call.
        what: String,
        /// The raw revert data.
        data: Bytes,
    },
    /// A mined transaction failed.
    #[error("{what}: transaction {hash} was mined but failed; nothing changed on chain")]
    TxFailed {
        /// The call.
        what: String,
        /// The transaction.
        hash: TxHash,
    },
    /// The node refused the request (e.g. too little ETH for gas).
    #[error("{what}: the node refused it: {why}")]
    Rpc {
        /// The call.
        what: String,
        /// The node's message, with advice where known.
        why: String,
    },
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A missing tool.
    #[error(transparent)]
    Tool(#[from] ToolNotFound),
}

impl ChainError {
    /// A transport failure.
    pub fn unreachable(url: &str, why: &str) -> Self {
        Self::Unreachable {
            url: url.to_string(),
            why: first_line(why),
        }
    }

    /// The decoded contract error, if this is a revert.
    pub fn revert(&self) -> Option<&WayfareMarketErrors> {
        match self {
            Self::Reverted { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).chars().take(300).collect()
}

/// Turns an alloy contract error into a [`ChainError`], decoding the market's custom errors.
pub fn describe_contract_error(what: &str, err: alloy::contract::Error) -> ChainError {
    if let Some(decoded) = err.as_decoded_interface_error::<WayfareMarketErrors>() {
        return ChainError::Reverted {
            what: what.to_string(),
            message: explain(&decoded),
            error: Box::new(decoded),
        };
    }
    if let Some(data) = err.as_revert_data() {
        return ChainError::RevertedUnknown {
            what: what.to_string(),
            data,
        };
    }
    match err {
        alloy::contract::Error::TransportError(t) => {
            if let Some(resp) = t.as_error_resp() {
                let msg = resp.message.to_string();
                let advice = if msg.contains("insufficient funds") {
                    ": the sending account has too little ETH for the value and gas; fund it and retry"
                } else if msg.contains("nonce") {
                    ": another transaction from this account is in flight; wait for it and retry"
                } else {
                    ""
                };
                ChainError::Rpc {
                    what: what.to_string(),
                    why: format!("{}{advice}", first_line(&msg)),
                }
            } else {
                ChainError::Unreachable {
                    url: "the node".into(),
                    why: first_line(&t.to_string()),
                }
            }
        }
        other => ChainError::Rpc {
            what: what.to_string(),
            why: first_line(&other.to_string()),
        },
    }
}

/// One sentence per custom error: what happened and what to do.
pub fn explain(e: &WayfareMarketErrors) -> String {
    use WayfareMarketErrors as E;
    match e {
        E::ChallengePeriodTooShort(x) => format!(
            "challenge period {} s is below the minimum of 60 s: deploy with a longer one",
            x.challengePeriod
        ),
        E::ChallengePeriodTooLong(x) => format!(
            "challenge period {} s is above the maximum of 365 days: deploy with a shorter one",
            x.challengePeriod
        ),
        E::BurnSinkIsMarket(_) => {
            "the burn sink can't be the market itself: pick another address".into()
        }
        E::AlreadyRegistered(x) => format!(
            "{} is already a registered seller: use `wayfare chain seller update` to change its record",
            x.seller
        ),
        E::SellerNotRegistered(x) => format!(
            "{} is not a registered seller: register it with `wayfare chain seller register` (or pick a seller from the registry)",
            x.seller
        ),
        E::SellerInactive(x) => format!(
            "seller {} is deactivated and takes no new channels: choose another seller (its owner can undo it with `wayfare chain seller reactivate`)",
            x.seller
        ),
        E::SellerActive(x) => format!("seller {} is already active", x.seller),
        E::ZeroSigner(_) => "the signer can't be the zero address: pass --signer".into(),
        E::ZeroPayout(_) => "the payout can't be the zero address: pass --payout".into(),
        E::SignerRetired(x) => format!(
            "signer {} was rotated out of this seller and can't come back: use a fresh signer key",
            x.signer
        ),
        E::MetadataTooLong(x) => format!(
            "metadata is {} bytes, more than the {} allowed: shorten it",
            x.length, x.max
        ),
        E::ZeroAmount(_) => "the amount is zero: pass an amount above 0".into(),
        E::AmountTooLarge(x) => format!(
            "amount {} is above the market's limit of {}: use a smaller amount",
            format_eth(x.amount),
            format_eth(x.max)
        ),
        E::InsufficientSellerFunds(x) => format!(
            "seller funds {} < seller burn {}: fund the seller with `wayfare chain seller fund`",
            format_eth(x.funds),
            format_eth(U256::from(x.sellerBurn))
        ),
        E::WithdrawalExceedsFunds(x) => format!(
            "seller funds are {}, less than the {} asked: withdraw at most the funds",
            format_eth(x.funds),
            format_eth(x.amount)
        ),
        E::NotBuyer(x) => format!(
            "{} is not the channel's buyer ({}): send it from the buyer's account",
            x.caller, x.buyer
        ),
        E::NotSeller(x) => format!(
            "{} is neither the seller {} nor its signer: send it from the seller's account or signer",
            x.caller, x.seller
        ),
        E::NotParty(x) => format!("{} is not a party to this channel", x.caller),
        E::OfferExpired(x) => format!(
            "offer expired at {} (chain time {}): ask the seller for a new quote",
            format_utc(x.expiry),
            format_utc(x.nowTs.saturating_to::<u64>())
        ),
        E::BadService(x) => format!(
            "service {} is unknown (1 = WireGuard, 2 = shadowsocks): ask for an offer with a known service",
            x.service
        ),
        E::ZeroInterval(_) => {
            "the offer's payment interval is 0: ask for an offer with an interval".into()
        }
        E::ZeroVoucherSigner(_) => "the voucher signer can't be the zero address".into(),
        E::BuyerIsSeller(x) => format!("{} can't buy from itself", x.account),
        E::OfferUsed(x) => format!(
            "this offer already opened channel {}: an offer opens one channel; ask for a new quote",
            x.id
        ),
        E::DepositTooLow(x) => format!(
            "sent {}, but the offer needs at least {} (buyer burn + minimum deposit): send more",
            format_eth(x.sent),
            format_eth(x.required)
        ),
        E::BadSignature(_) => {
            "the signature is malformed or malleable (65 bytes, low s, v 27/28 expected)".into()
        }
        E::WrongSigner(x) => format!(
            "the signature is by {}, not by {} who must sign it",
            x.recovered, x.expected
        ),
        E::WrongState(x) => format!(
            "channel {} is {}, which doesn't allow this",
            x.id,
            state_name(x.state)
        ),
        E::DeadlinePassed(x) => format!(
            "the challenge period ended at {}: finalize the channel instead",
            format_utc(x.closesAt)
        ),
        E::DeadlineNotReached(x) => format!(
            "the challenge period runs until {}: finalize after that",
            format_utc(x.closesAt)
        ),
        E::AlreadyRated(x) => format!(
            "{} has already rated channel {}: one rating per side",
            x.rater, x.id
        ),
        E::BadScore(x) => format!("score {} is out of range: rate 1 to 5", x.score),
        E::NothingToWithdraw(_) => "nothing to withdraw for this account".into(),
        E::NothingToSweep(_) => "there are no unswept burns".into(),
        E::TransferFailed(x) => format!(
            "sending {} to {} failed: the receiver rejects ETH; nothing was lost, retry from an account that accepts it",
            format_eth(x.amount),
            x.to
        ),
        E::ReentrancyGuardReentrantCall(_) => "re-entrant call refused".into(),
        E::InvalidShortString(_) | E::StringTooLong(_) => {
            "the contract's EIP-712 name is malformed (a deployment bug)".into()
        }
    }
}

/// A channel state's name.
pub fn state_name(state: u8) -> &'static str {
    match state {
        0 => "not opened",
        1 => "open",
        2 => "closing",
        3 => "closed",
        _ => "in an unknown state",
    }
}
