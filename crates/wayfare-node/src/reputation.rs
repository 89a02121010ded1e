//! Reputation from chain events, with no oracle: every node folds the market's events into a
//! [`Ledger`] and scores sellers and buyers from it. Pure: events and parameters in, scores out.
//!
//! Seller score, in [0, 1]:
//!
//! ```text
//! R = (Σ w·(s−1)/4 + W0·½) / (Σ w + W0)     ratings s ∈ 1..5 of the seller, each weighted by
//!                                            the rater's burn w in that channel; W0 a neutral
//!                                            prior weight (default 0.001 ETH)
//! D = (B − B_d + W0·½) / (B + W0)          share of closed channels without a buyer-started
//!                                            close (startClose → finalize), by burns: B the
//!                                            burns of its closed channels, B_d of the disputed
//! E = 1 − exp(−B / B0)                       channel count, by burns: B = both burns of its
//!                                            closed channels, B0 = 0.01 ETH (a count is free
//!                                            to fake with oneself; burns are not)
//! V = 1 − exp(−P / P0)                       volume paid: P = Σ over closed channels of what
//!                                            the seller was paid, each capped at 100× that
//!                                            channel's burns (volume with oneself is free);
//!                                            P0 = 0.1 ETH
//! A = 1 − exp(−age / T0)                     age: blocks since its first closed channel with
//!                                            burns, T0 = 216,000 blocks (30 days of 12 s)
//! score = 0.5·R + 0.2·D + 0.1·E + 0.1·V + 0.1·A   (a newcomer scores 0.35)
//! ```
//!
//! Buyer score: `0.7·R_b + 0.3·D_b` with the sellers' ratings of the buyer (weighted by the
//! seller's burn) and the burn-weighted share of its channels closed without a dispute.
//!
//! Every term moves only with burns: channels opened with oneself without burns change nothing.
//!
//! A rating needs a closed channel and weighs what the rater burnt in it, so a seller rating
//! itself through channels it opens with itself moves its score only as far as the burns it
//! paid move the weighted mean.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256};

/// A market fact reputation cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RepEvent {
    /// `ChannelOpened`.
    Opened {
        /// Channel.
        id: B256,
        /// Seller account.
        seller: Address,
        /// Buyer account.
        buyer: Address,
        /// Z.
        seller_burn: u128,
        /// W.
        buyer_burn: u128,
    },
    /// `CloseStarted` (the buyer closes alone: a dispute).
    CloseStarted {
        /// Channel.
        id: B256,
    },
    /// `ChannelClosed`.
    Closed {
        /// Channel.
        id: B256,
        /// Paid to the seller.
        to_seller: U256,
    },
    /// `Rated`.
    Rated {
        /// Channel.
        id: B256,
        /// Rater account.
        rater: Address,
        /// Rated account.
        ratee: Address,
        /// 1..5.
        score: u8,
        /// The rater's burn in the channel.
        weight: U256,
    },
}

#[derive(Debug, Clone, Copy)]
struct Channel {
    seller: Address,
    buyer: Address,
    burns: u128,
    disputed: bool,
    closed: bool,
}

/// What the ledger knows of one account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Σ weight of the ratings received, in ETH (f64 keeps the arithmetic simple and exact
    /// enough for a score).
    pub rating_weight: f64,
    /// Σ weight × (score − 1) / 4.
    pub rating_points: f64,
    /// Ratings received.
    pub ratings: u32,
    /// Channels opened (as this side).
    pub channels: u32,
    /// Channels closed.
    pub closed: u32,
    /// Closed channels that went through a buyer-started close.
    pub disputed: u32,
    /// Both burns of the closed channels, ETH.
    pub burns_closed: f64,
    /// Both burns of the closed channels that were disputed, ETH.
    pub burns_disputed: f64,
    /// Paid to the seller over its closed channels, wei.
    pub paid: U256,
    /// Paid to the seller over its closed channels, each capped at 100× its burns, ETH.
    pub paid_backed: f64,
    /// The block of its first closed channel with burns.
    pub since_block: Option<u64>,
}

/// Scoring parameters (defaults in the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreParams {
    /// W0 in ETH.
    pub prior_weight: f64,
    /// B0 in ETH.
    pub experience_burns: f64,
    /// P0 in ETH.
    pub volume: f64,
    /// T0 in blocks.
    pub age_blocks: f64,
}

/// How many times its burns a channel's payment may count in the volume term.
pub const VOLUME_PER_BURN: u128 = 100;

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            prior_weight: 0.001,
            experience_burns: 0.01,
            volume: 0.1,
            age_blocks: 216_000.0,
        }
    }
}

fn eth(wei: U256) -> f64 {
    // Exact enough: scores only compare.
    let wei: u128 = wei.try_into().unwrap_or(u128::MAX);
    wei as f64 / 1e18
}

/// Everything folded from the events so far.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    channels: BTreeMap<B256, Channel>,
    sellers: BTreeMap<Address, Stats>,
    buyers: BTreeMap<Address, Stats>,
    events: u64,
    head: u64,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events folded in.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// Whether no event was folded in.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The last block folded in (ages are counted to it).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The chain has reached `block` (ages grow even while no event comes).
    pub fn observe_head(&mut self, block: u64) {
        self.head = self.head.max(block);
    }

    /// Folds in one event mined in `block` (events must come in chain order).
    pub fn apply_at(&mut self, block: u64, ev: &RepEvent) {
        self.head = self.head.max(block);
        self.apply(ev);
    }

    /// Folds one event in, at the last block seen (events must come in chain order).
    pub fn apply(&mut self, ev: &RepEvent) {
        self.events += 1;
        match *ev {
            RepEvent::Opened {
                id,
                seller,
                buyer,
                seller_burn,
                buyer_burn,
            } => {
                if self.channels.contains_key(&id) {
                    return;
                }
                self.channels.insert(
                    id,
                    Channel {
                        seller,
                        buyer,
                        burns: seller_burn.saturating_add(buyer_burn),
                        disputed: false,
                        closed: false,
                    },
                );
                self.sellers.entry(seller).or_default().channels += 1;
                self.buyers.entry(buyer).or_default().channels += 1;
            }
            RepEvent::CloseStarted { id } => {
                if let Some(c) = self.channels.get_mut(&id) {
                    c.disputed = true;
                }
            }
            RepEvent::Closed { id, to_seller } => {
                let Some(c) = self.channels.get_mut(&id) else {
                    return;
                };
                if c.closed {
                    return;
                }
                c.closed = true;
                let c = *c;
                let burns = c.burns as f64 / 1e18;
                for stats in [
                    self.sellers.entry(c.seller).or_default(),
                    self.buyers.entry(c.buyer).or_default(),
                ] {
                    stats.closed += 1;
                    stats.disputed += u32::from(c.disputed);
                    stats.burns_closed += burns;
                    if c.disputed {
                        stats.burns_disputed += burns;
                    }
                }
                let head = self.head;
                let s = self.sellers.entry(c.seller).or_default();
                s.paid = s.paid.saturating_add(to_seller);
                let cap = U256::from(c.burns.saturating_mul(VOLUME_PER_BURN));
                s.paid_backed += eth(to_seller.min(cap));
                if c.burns > 0 && s.since_block.is_none() {
                    s.since_block = Some(head);
                }
            }
            RepEvent::Rated {
                id,
                ratee,
                score,
                weight,
                ..
            } => {
                let Some(c) = self.channels.get(&id).copied() else {
                    return;
                };
                let points = f64::from(score.clamp(1, 5) - 1) / 4.0;
                let w = eth(weight);
                let stats = if ratee == c.seller {
                    self.sellers.entry(ratee).or_default()
                } else if ratee == c.buyer {
                    self.buyers.entry(ratee).or_default()
                } else {
                    return;
                };
                stats.rating_weight += w;
                stats.rating_points += w * points;
                stats.ratings += 1;
            }
        }
    }

    /// A seller's stats (default when unknown).
    pub fn seller_stats(&self, seller: &Address) -> Stats {
        self.sellers.get(seller).cloned().unwrap_or_default()
    }

    /// A buyer's stats.
    pub fn buyer_stats(&self, buyer: &Address) -> Stats {
        self.buyers.get(buyer).cloned().unwrap_or_default()
    }

    /// The seller's score in [0, 1] (0.35 for a newcomer), ages counted to [`Self::head`].
    pub fn seller_score(&self, seller: &Address, p: &ScoreParams) -> f64 {
        seller_score(&self.seller_stats(seller), self.head, p)
    }

    /// The buyer's score in [0, 1].
    pub fn buyer_score(&self, buyer: &Address, p: &ScoreParams) -> f64 {
        buyer_score(&self.buyer_stats(buyer), p)
    }

    /// Every seller the ledger knows.
    pub fn sellers(&self) -> impl Iterator<Item = &Address> {
        self.sellers.keys()
    }
}

fn rating(s: &Stats, p: &ScoreParams) -> f64 {
    (s.rating_points + p.prior_weight * 0.5) / (s.rating_weight + p.prior_weight)
}

fn undisputed(s: &Stats, p: &ScoreParams) -> f64 {
    (s.burns_closed - s.burns_disputed + p.prior_weight * 0.5) / (s.burns_closed + p.prior_weight)
}

/// The seller formula of the module docs, its age counted to block `head`.
pub fn seller_score(s: &Stats, head: u64, p: &ScoreParams) -> f64 {
    let experience = 1.0 - (-s.burns_closed / p.experience_burns).exp();
    let volume = 1.0 - (-s.paid_backed / p.volume).exp();
    let age = s.since_block.map_or(0.0, |b| {
        1.0 - (-(head.saturating_sub(b) as f64) / p.age_blocks).exp()
    });
    0.5 * rating(s, p) + 0.2 * undisputed(s, p) + 0.1 * experience + 0.1 * volume + 0.1 * age
}

/// The buyer formula of the module docs.
pub fn buyer_score(s: &Stats, p: &ScoreParams) -> f64 {
    0.7 * rating(s, p) + 0.3 * undisputed(s, p)
}

/// How a buyer trades price against quality: `utility = score − price_weight × price / max`
/// where `price` is what a 1 MiB/s flow costs per second (X + Y) and `max` the dearest offer
/// considered. Higher is better.
pub fn utility(score: f64, price: u128, max_price: u128, price_weight: f64) -> f64 {
    let rel = if max_price == 0 {
        0.0
    } else {
        price as f64 / max_price as f64
    };
    score - price_weight * rel
}

/// The reputation fact in a market log, if it is one.
pub fn from_log(log: &wayfare_chain::MarketLog) -> Option<RepEvent> {
    use wayfare_chain::bindings::WayfareMarket::WayfareMarketEvents as E;
    Some(match &log.event {
        E::ChannelOpened(e) => RepEvent::Opened {
            id: e.id,
            seller: e.seller,
            buyer: e.buyer,
            seller_burn: e.sellerBurn,
            buyer_burn: e.buyerBurn,
        },
        E::CloseStarted(e) => RepEvent::CloseStarted { id: e.id },
        E::ChannelClosed(e) => RepEvent::Closed {
            id: e.id,
            to_seller: e.toSeller,
        },
        E::Rated(e) => RepEvent::Rated {
            id: e.id,
            rater: e.rater,
            ratee: e.ratee,
            score: e.score,
            weight: e.weight,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETH: u128 = 1_000_000_000_000_000_000;

    fn addr(n: u8) -> Address {
        Address::repeat_byte(n)
    }

    fn id(n: u32) -> B256 {
        B256::left_padding_from(&n.to_be_bytes())
    }

    /// A closed channel from `buyer` to `seller` with burns and a buyer rating of the seller.
    fn closed_rated(
        l: &mut Ledger,
        n: u32,
        seller: Address,
        buyer: Address,
        burn: u128,
        score: u8,
    ) {
        l.apply(&RepEvent::Opened {
            id: id(n),
            seller,
            buyer,
            seller_burn: burn,
            buyer_burn: burn,
        });
        l.apply(&RepEvent::Closed {
            id: id(n),
            to_seller: U256::from(1000u32),
        });
        l.apply(&RepEvent::Rated {
            id: id(n),
            rater: buyer,
            ratee: seller,
            score,
            weight: U256::from(burn),
        });
    }

    #[test]
    fn a_newcomer_is_neutral_and_good_ratings_raise_bad_ones_lower() {
        let p = ScoreParams::default();
        let l = Ledger::new();
        let new = l.seller_score(&addr(1), &p);
        assert!((new - 0.35).abs() < 1e-12, "{new}");
        let mut good = Ledger::new();
        let mut bad = Ledger::new();
        for n in 0..5 {
            closed_rated(&mut good, n, addr(1), addr(2), ETH / 100, 5);
            closed_rated(&mut bad, n, addr(1), addr(2), ETH / 100, 1);
        }
        let (g, b) = (
            good.seller_score(&addr(1), &p),
            bad.seller_score(&addr(1), &p),
        );
        assert!(g > new && b < new, "good {g}, new {new}, bad {b}");
    }

    #[test]
    fn volume_counts_only_as_far_as_burns_back_it() {
        let p = ScoreParams::default();
        let volume = |burn: u128, paid: u128| {
            let mut l = Ledger::new();
            l.apply(&RepEvent::Opened {
                id: id(1),
                seller: addr(1),
                buyer: addr(2),
                seller_burn: burn,
                buyer_burn: burn,
            });
            l.apply(&RepEvent::Closed {
                id: id(1),
                to_seller: U256::from(paid),
            });
            l.seller_stats(&addr(1)).paid_backed
        };
        // 10 ETH paid to oneself through a channel without burns: no volume.
        assert_eq!(volume(0, 10 * ETH), 0.0);
        // With 0.001 ETH a side, at most 100× the burns (0.2 ETH) counts.
        assert!((volume(ETH / 1000, 10 * ETH) - 0.2).abs() < 1e-12);
        assert!((volume(ETH / 1000, ETH / 20) - 0.05).abs() < 1e-12);
        let mut l = Ledger::new();
        closed_rated(&mut l, 1, addr(1), addr(2), ETH / 1000, 3);
        let low = l.seller_score(&addr(1), &p);
        let mut l = Ledger::new();
        l.apply(&RepEvent::Opened {
            id: id(1),
            seller: addr(1),
            buyer: addr(2),
            seller_burn: ETH / 1000,
            buyer_burn: ETH / 1000,
        });
        l.apply(&RepEvent::Closed {
            id: id(1),
            to_seller: U256::from(ETH / 10),
        });
        l.apply(&RepEvent::Rated {
            id: id(1),
            rater: addr(2),
            ratee: addr(1),
            score: 3,
            weight: U256::from(ETH / 1000),
        });
        assert!(
            l.seller_score(&addr(1), &p) > low,
            "volume paid counted nothing"
        );
    }

    #[test]
    fn age_grows_from_the_first_burned_close_and_takes_time_to_fake() {
        let p = ScoreParams::default();
        let mut l = Ledger::new();
        l.apply_at(
            100,
            &RepEvent::Opened {
                id: id(1),
                seller: addr(1),
                buyer: addr(2),
                seller_burn: ETH / 1000,
                buyer_burn: ETH / 1000,
            },
        );
        l.apply_at(
            200,
            &RepEvent::Closed {
                id: id(1),
                to_seller: U256::ZERO,
            },
        );
        assert_eq!(l.seller_stats(&addr(1)).since_block, Some(200));
        let young = l.seller_score(&addr(1), &p);
        // A month of blocks later (any event moves the head), the same record is older.
        l.apply_at(200 + 216_000, &RepEvent::CloseStarted { id: id(9) });
        let old = l.seller_score(&addr(1), &p);
        let expect = 0.1 * (1.0 - (-1.0f64).exp());
        assert!((old - young - expect).abs() < 1e-12, "{old} - {young}");
    }

    #[test]
    fn channels_without_burns_change_nothing() {
        let p = ScoreParams::default();
        let mut l = Ledger::new();
        let before = l.seller_score(&addr(1), &p);
        for n in 0..50 {
            closed_rated(&mut l, n, addr(1), addr(3), 0, 5);
        }
        assert_eq!(l.seller_score(&addr(1), &p), before);
    }

    #[test]
    fn ratings_without_a_burn_weigh_nothing() {
        let p = ScoreParams::default();
        let mut l = Ledger::new();
        for n in 0..50 {
            closed_rated(&mut l, n, addr(1), addr(1), 0, 5);
        }
        let s = l.seller_stats(&addr(1));
        assert_eq!(s.ratings, 50);
        assert_eq!(rating(&s, &p), 0.5, "free self-ratings moved the rating");
    }

    #[test]
    fn self_rating_gains_only_in_proportion_to_the_burns_paid() {
        // A seller with honest bad ratings worth 0.1 ETH of burns rates itself 5 through
        // self-opened channels. Its rating moves toward 5 only as its own burns outweigh them.
        let p = ScoreParams::default();
        let gain = |self_burn_total: u128| {
            let mut l = Ledger::new();
            for n in 0..10 {
                closed_rated(&mut l, n, addr(1), addr(2), ETH / 100, 1);
            }
            let before = rating(&l.seller_stats(&addr(1)), &p);
            for n in 0..50 {
                closed_rated(&mut l, 100 + n, addr(1), addr(3), self_burn_total / 100, 5);
            }
            rating(&l.seller_stats(&addr(1)), &p) - before
        };
        let (small, large) = (gain(ETH / 1000), gain(ETH / 10));
        assert!(small < 0.01, "0.001 ETH of self-burns bought {small}");
        assert!(large > 0.3, "0.1 ETH of self-burns moved only {large}");
        // Doubling the burns never more than doubles the gain (diminishing, never free).
        assert!(gain(ETH / 500) <= 2.0 * gain(ETH / 1000) + 1e-9);
    }

    #[test]
    fn a_rating_without_a_known_channel_or_from_a_stranger_is_ignored() {
        let p = ScoreParams::default();
        let mut l = Ledger::new();
        l.apply(&RepEvent::Rated {
            id: id(9),
            rater: addr(2),
            ratee: addr(1),
            score: 5,
            weight: U256::from(ETH),
        });
        closed_rated(&mut l, 1, addr(1), addr(2), ETH / 100, 3);
        l.apply(&RepEvent::Rated {
            id: id(1),
            rater: addr(7),
            ratee: addr(7),
            score: 5,
            weight: U256::from(ETH),
        });
        assert_eq!(l.seller_stats(&addr(1)).ratings, 1);
        assert_eq!(l.seller_stats(&addr(7)).ratings, 0);
        assert!(l.seller_score(&addr(1), &p) < 0.7);
    }

    #[test]
    fn disputes_lower_both_sides() {
        let p = ScoreParams::default();
        let mut l = Ledger::new();
        for n in 0..4 {
            l.apply(&RepEvent::Opened {
                id: id(n),
                seller: addr(1),
                buyer: addr(2),
                seller_burn: ETH / 1000,
                buyer_burn: ETH / 1000,
            });
            l.apply(&RepEvent::CloseStarted { id: id(n) });
            l.apply(&RepEvent::Closed {
                id: id(n),
                to_seller: U256::ZERO,
            });
        }
        let fresh = Ledger::new();
        assert!(l.seller_score(&addr(1), &p) < fresh.seller_score(&addr(1), &p));
        assert!(l.buyer_score(&addr(2), &p) < fresh.buyer_score(&addr(2), &p));
        assert_eq!(l.seller_stats(&addr(1)).disputed, 4);
    }

    #[test]
    fn a_short_paying_buyer_rated_low_by_sellers_scores_low() {
        let p = ScoreParams::default();
        let mut l = Ledger::new();
        for n in 0..3 {
            l.apply(&RepEvent::Opened {
                id: id(n),
                seller: addr(1),
                buyer: addr(2),
                seller_burn: ETH / 100,
                buyer_burn: 0,
            });
            l.apply(&RepEvent::Closed {
                id: id(n),
                to_seller: U256::ZERO,
            });
            l.apply(&RepEvent::Rated {
                id: id(n),
                rater: addr(1),
                ratee: addr(2),
                score: 1,
                weight: U256::from(ETH / 100),
            });
        }
        assert!(
            l.buyer_score(&addr(2), &p) < 0.35,
            "{}",
            l.buyer_score(&addr(2), &p)
        );
    }

    #[test]
    fn utility_trades_price_against_score() {
        // Same score: the cheaper wins; a much better score can beat a lower price.
        assert!(utility(0.6, 100, 200, 0.5) > utility(0.6, 200, 200, 0.5));
        assert!(utility(0.9, 200, 200, 0.2) > utility(0.5, 100, 200, 0.2));
    }
}
