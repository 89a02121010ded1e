//! Every policy of both sides, in one struct, with protocol.md's defaults.

use core::time::Duration;

use alloy_primitives::U256;

use crate::billing::{self, MIB};
use crate::negotiation::{BuyerLimits, CounterOfferBounds};
use crate::types::Terms;

/// Policies of a seller or buyer session. [`SessionConfig::default`] holds the protocol defaults;
/// the seller reads the seller fields, the buyer the buyer fields, both the shared ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    // --- shared ---
    /// Payment interval a seller lists and a buyer proposes (default 15 s).
    pub payment_interval: Duration,
    /// Extra time after an interval before a missing voucher ends the session (default 10 s).
    pub grace: Duration,
    /// How far the meters may disagree, in basis points (default 200 = 2 %).
    pub tolerance_bps: u32,
    /// The slack on top of the tolerance is one interval at the agreed price for a flow of this
    /// many bytes per second (default 1 MiB/s).
    pub slack_flow: u64,
    /// How often an unanswered request (quote request, opened, voucher, close request) is resent
    /// (default 3 s).
    pub retransmit: Duration,

    // --- seller ---
    /// The seller stops when unpaid usage exceeds what a flow of this many bytes per second
    /// costs over one interval plus grace at the agreed price (default 32 MiB/s, about
    /// 270 Mbit/s: an honest buyer faster than that would be cut, so raise it with capacity).
    pub max_debt_flow: u64,
    /// How long a seller keeps a paused channel (the buyer sent `CloseRequest { Pause }`) waiting
    /// for a `Resume` before it settles its best voucher and ends (default 1 hour).
    pub pause_timeout: Duration,
    /// A fixed max debt in wei, used instead of `max_debt_flow` when set.
    pub max_debt_wei: Option<U256>,
    /// How far the seller moves from its list terms on a counter-offer.
    pub counter_offer: CounterOfferBounds,
    /// How long an offer stays valid (its `expiry` is now + this; default 5 min).
    pub offer_ttl: Duration,
    /// After the offer expires, how long the seller waits for the channel to appear on chain
    /// (default 10 min, several blocks of confirmations).
    pub open_wait: Duration,

    // --- buyer ---
    /// What the buyer accepts (max prices, burns, deposit, interval, offer lifetime).
    pub limits: BuyerLimits,
    /// The deposit the buyer opens with (never less than the offer's minimum deposit).
    pub deposit: U256,
    /// The buyer tops up (or leaves) when the remaining deposit covers fewer than this many
    /// intervals at the recent rate (default 4).
    pub deposit_margin_intervals: u32,
    /// Top-up policy; `None` means leave instead.
    pub top_up: Option<TopUpPolicy>,
    /// How long the buyer waits for a quote (default 30 s).
    pub quote_timeout: Duration,
    /// How long the buyer waits for the reveal once the channel is open (default 2 min).
    pub reveal_timeout: Duration,
    /// How long the buyer waits for the seller's close consent before closing alone (default 30 s).
    pub close_timeout: Duration,
}

/// When and how much a buyer tops up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUpPolicy {
    /// Wei added per top-up.
    pub amount: U256,
    /// Never let the deposit grow past this.
    pub max_total_deposit: U256,
}

impl Default for SessionConfig {
    fn default() -> Self {
        let limits = BuyerLimits::default();
        Self {
            payment_interval: Duration::from_secs(15),
            grace: Duration::from_secs(10),
            tolerance_bps: 200,
            slack_flow: MIB,
            retransmit: Duration::from_secs(3),
            max_debt_flow: 32 * MIB,
            pause_timeout: Duration::from_secs(3600),
            max_debt_wei: None,
            counter_offer: CounterOfferBounds {
                min_price_per_mib: 0,
                min_price_per_second: 0,
                max_seller_burn: 0,
                min_buyer_burn: 0,
                min_deposit: 0,
                min_interval: 5,
                max_interval: 60,
            },
            offer_ttl: Duration::from_secs(300),
            open_wait: Duration::from_secs(600),
            limits,
            deposit: U256::from(10_000_000_000_000_000u128), // 0.01 ETH
            deposit_margin_intervals: 4,
            top_up: None,
            quote_timeout: Duration::from_secs(30),
            reveal_timeout: Duration::from_secs(120),
            close_timeout: Duration::from_secs(30),
        }
    }
}

impl SessionConfig {
    /// The slack for `terms`: one interval at the agreed price for a `slack_flow` flow.
    pub fn slack(&self, terms: &Terms) -> U256 {
        let secs = u64::from(terms.payment_interval);
        flow_cost(self.slack_flow, secs, terms)
    }

    /// The seller's max debt for `terms`.
    pub fn max_debt(&self, terms: &Terms) -> U256 {
        if let Some(wei) = self.max_debt_wei {
            return wei;
        }
        let secs = u64::from(terms.payment_interval).saturating_add(self.grace.as_secs());
        flow_cost(self.max_debt_flow, secs, terms)
    }

    /// The slack in bytes: `slack_flow` over one interval.
    pub fn slack_bytes(&self, terms: &Terms) -> u64 {
        self.slack_flow
            .saturating_mul(u64::from(terms.payment_interval))
    }
}

/// What a flow of `bytes_per_sec` costs over `secs` at `terms`.
fn flow_cost(bytes_per_sec: u64, secs: u64, terms: &Terms) -> U256 {
    billing::owed(
        bytes_per_sec.saturating_mul(secs),
        secs,
        terms.price_per_mib,
        terms.price_per_second,
    )
    .unwrap_or(U256::MAX)
}
