//! Negotiation: the seller's counter-offer policy and offer allocation, the buyer's limits and
//! acceptance.
//!
//! Nothing here draws randomness: an offer's nonce is derived from the request and the time
//! ([`offer_nonce`]), its expiry from the time and the configured lifetime.

use core::time::Duration;

use alloy_primitives::{Address, keccak256};
use thiserror::Error;

use crate::eip712::Offer;
use crate::messages::QuoteRequest;
use crate::types::{Service, Terms, Timestamp};

/// How far a seller moves from its list terms when a buyer proposes its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterOfferBounds {
    /// Lowest X (wei/MiB) the seller accepts.
    pub min_price_per_mib: u128,
    /// Lowest Y (wei/s) the seller accepts.
    pub min_price_per_second: u128,
    /// Highest seller burn Z the seller agrees to.
    pub max_seller_burn: u128,
    /// Lowest buyer burn W the seller accepts.
    pub min_buyer_burn: u128,
    /// Lowest minimum deposit the seller accepts.
    pub min_deposit: u128,
    /// Shortest payment interval (s) the seller accepts.
    pub min_interval: u32,
    /// Longest payment interval (s) the seller accepts.
    pub max_interval: u32,
}

impl CounterOfferBounds {
    /// Bounds that never move from `list` (no haggling).
    pub fn fixed(list: &Terms) -> Self {
        Self {
            min_price_per_mib: list.price_per_mib,
            min_price_per_second: list.price_per_second,
            max_seller_burn: list.seller_burn,
            min_buyer_burn: list.buyer_burn,
            min_deposit: list.min_deposit,
            min_interval: list.payment_interval,
            max_interval: list.payment_interval,
        }
    }
}

/// The terms a seller offers for a request: its list terms when the buyer proposes none,
/// otherwise the buyer's proposal with each field pulled back inside the seller's bounds (prices
/// between the floor and the list price, the seller burn at most its cap, the buyer burn and
/// minimum deposit at least their floors, the interval within its range).
///
/// ```
/// use wayfare_proto::{Terms, negotiation::{counter_offer, CounterOfferBounds}};
/// let list = Terms { price_per_mib: 100, price_per_second: 10, seller_burn: 5, buyer_burn: 5,
///                    min_deposit: 1000, payment_interval: 15 };
/// let bounds = CounterOfferBounds { min_price_per_mib: 80, min_price_per_second: 8,
///     max_seller_burn: 10, min_buyer_burn: 2, min_deposit: 500, min_interval: 5, max_interval: 30 };
/// let wanted = Terms { price_per_mib: 50, price_per_second: 9, seller_burn: 20, buyer_burn: 0,
///                      min_deposit: 100, payment_interval: 60 };
/// let got = counter_offer(&list, &bounds, Some(&wanted));
/// assert_eq!(got, Terms { price_per_mib: 80, price_per_second: 9, seller_burn: 10, buyer_burn: 2,
///                         min_deposit: 500, payment_interval: 30 });
/// assert_eq!(counter_offer(&list, &bounds, None), list);
/// ```
pub fn counter_offer(list: &Terms, bounds: &CounterOfferBounds, wanted: Option<&Terms>) -> Terms {
    let Some(w) = wanted else { return *list };
    let price =
        |want: u128, floor: u128, list: u128| want.max(floor.min(list)).min(list.max(floor));
    let min_interval = bounds.min_interval.max(1);
    Terms {
        price_per_mib: price(
            w.price_per_mib,
            bounds.min_price_per_mib,
            list.price_per_mib,
        ),
        price_per_second: price(
            w.price_per_second,
            bounds.min_price_per_second,
            list.price_per_second,
        ),
        seller_burn: w.seller_burn.min(bounds.max_seller_burn),
        buyer_burn: w.buyer_burn.max(bounds.min_buyer_burn),
        min_deposit: w.min_deposit.max(bounds.min_deposit),
        payment_interval: w
            .payment_interval
            .clamp(min_interval, bounds.max_interval.max(min_interval)),
    }
}

/// The offer nonce for a request at `now`: the first 8 bytes of
/// `keccak256(buyer ‖ buyer X25519 key ‖ now in ms)`. The buyer's key is fresh per negotiation,
/// so nonces don't repeat in practice; if one ever did, the contract refuses the second `open`
/// (the channel id exists), which costs nothing but a retry.
pub fn offer_nonce(buyer: Address, buyer_key: &[u8; 32], now: Timestamp) -> u64 {
    let mut buf = [0u8; 60];
    buf[..20].copy_from_slice(buyer.as_slice());
    buf[20..52].copy_from_slice(buyer_key);
    buf[52..].copy_from_slice(&now.as_millis().to_be_bytes());
    let h = keccak256(buf);
    let mut n = [0u8; 8];
    n.copy_from_slice(&h[..8]);
    u64::from_be_bytes(n)
}

/// Builds the offer a seller signs for `request` with `terms`, valid for `ttl` from `now`.
pub fn build_offer(
    seller: Address,
    request: &QuoteRequest,
    terms: &Terms,
    now: Timestamp,
    ttl: Duration,
) -> Offer {
    Offer {
        seller,
        buyer: request.buyer,
        service: request.service.code(),
        pricePerMiB: terms.price_per_mib,
        pricePerSecond: terms.price_per_second,
        sellerBurn: terms.seller_burn,
        buyerBurn: terms.buyer_burn,
        minDeposit: terms.min_deposit,
        paymentInterval: terms.payment_interval,
        nonce: offer_nonce(request.buyer, &request.buyer_key, now),
        expiry: now.saturating_add(ttl).as_secs(),
    }
}

/// The terms inside an offer.
pub fn offer_terms(offer: &Offer) -> Terms {
    Terms {
        price_per_mib: offer.pricePerMiB,
        price_per_second: offer.pricePerSecond,
        seller_burn: offer.sellerBurn,
        buyer_burn: offer.buyerBurn,
        min_deposit: offer.minDeposit,
        payment_interval: offer.paymentInterval,
    }
}

/// What a buyer accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuyerLimits {
    /// Highest X (wei/MiB).
    pub max_price_per_mib: u128,
    /// Highest Y (wei/s).
    pub max_price_per_second: u128,
    /// Highest buyer burn W.
    pub max_buyer_burn: u128,
    /// Lowest seller burn Z (the seller's skin in the game).
    pub min_seller_burn: u128,
    /// Highest minimum deposit.
    pub max_min_deposit: u128,
    /// Shortest payment interval (s).
    pub min_interval: u32,
    /// Longest payment interval (s).
    pub max_interval: u32,
    /// An offer must stay valid at least this long after it arrives (time to open on chain).
    pub min_offer_lifetime: Duration,
}

impl Default for BuyerLimits {
    fn default() -> Self {
        Self {
            max_price_per_mib: 1_000_000_000_000_000, // 0.001 ETH per MiB
            max_price_per_second: 1_000_000_000_000,  // 1e12 wei per second
            max_buyer_burn: 10_000_000_000_000_000,   // 0.01 ETH
            min_seller_burn: 0,
            max_min_deposit: 100_000_000_000_000_000, // 0.1 ETH
            min_interval: 5,
            max_interval: 60,
            min_offer_lifetime: Duration::from_secs(60),
        }
    }
}

/// Why a buyer turned an offer down.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OfferRejection {
    /// The offer is for another seller.
    #[error("offer names seller {got}, expected {expected}")]
    WrongSeller {
        /// Who we asked.
        expected: Address,
        /// Who the offer names.
        got: Address,
    },
    /// The offer is for another buyer.
    #[error("offer names buyer {got}, expected our account {expected}")]
    WrongBuyer {
        /// Our account.
        expected: Address,
        /// Who the offer names.
        got: Address,
    },
    /// The offer is for another service.
    #[error("offer is for service {got}, we asked for {expected:?}")]
    WrongService {
        /// What we asked for.
        expected: Service,
        /// The offer's code.
        got: u8,
    },
    /// A term is outside the buyer's limits.
    #[error(
        "offer's {field} is {offered}, our limit is {limit}: raise the limit or pick another seller"
    )]
    OutOfLimits {
        /// The term.
        field: &'static str,
        /// Its value.
        offered: u128,
        /// Our limit.
        limit: u128,
    },
    /// The offer expires too soon to open a channel with it.
    #[error("offer expires at {expiry} (unix s), too soon after now ({now}): ask again")]
    ExpiresTooSoon {
        /// Offer expiry.
        expiry: u64,
        /// Now.
        now: u64,
    },
    /// The seller's signature is wrong.
    #[error("offer signature: {0}")]
    Signature(#[from] crate::eip712::VerifyError),
}

/// Checks an offer's parties, service, terms and expiry against what the buyer asked and accepts.
pub fn check_offer(
    offer: &Offer,
    seller: Address,
    buyer: Address,
    service: Service,
    limits: &BuyerLimits,
    now: Timestamp,
) -> Result<(), OfferRejection> {
    if offer.seller != seller {
        return Err(OfferRejection::WrongSeller {
            expected: seller,
            got: offer.seller,
        });
    }
    if offer.buyer != buyer {
        return Err(OfferRejection::WrongBuyer {
            expected: buyer,
            got: offer.buyer,
        });
    }
    if offer.service != service.code() {
        return Err(OfferRejection::WrongService {
            expected: service,
            got: offer.service,
        });
    }
    let at_most = |field, offered: u128, limit: u128| {
        if offered > limit {
            Err(OfferRejection::OutOfLimits {
                field,
                offered,
                limit,
            })
        } else {
            Ok(())
        }
    };
    at_most("pricePerMiB", offer.pricePerMiB, limits.max_price_per_mib)?;
    at_most(
        "pricePerSecond",
        offer.pricePerSecond,
        limits.max_price_per_second,
    )?;
    at_most("buyerBurn", offer.buyerBurn, limits.max_buyer_burn)?;
    at_most("minDeposit", offer.minDeposit, limits.max_min_deposit)?;
    at_most(
        "paymentInterval",
        u128::from(offer.paymentInterval),
        u128::from(limits.max_interval),
    )?;
    if offer.sellerBurn < limits.min_seller_burn {
        return Err(OfferRejection::OutOfLimits {
            field: "sellerBurn (minimum)",
            offered: offer.sellerBurn,
            limit: limits.min_seller_burn,
        });
    }
    if offer.paymentInterval < limits.min_interval.max(1) {
        return Err(OfferRejection::OutOfLimits {
            field: "paymentInterval (minimum)",
            offered: u128::from(offer.paymentInterval),
            limit: u128::from(limits.min_interval),
        });
    }
    let must_last_until = now.saturating_add(limits.min_offer_lifetime).as_secs();
    if offer.expiry < must_last_until {
        return Err(OfferRejection::ExpiresTooSoon {
            expiry: offer.expiry,
            now: now.as_secs(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        Terms {
            price_per_mib: 100,
            price_per_second: 10,
            seller_burn: 5,
            buyer_burn: 5,
            min_deposit: 1000,
            payment_interval: 15,
        }
    }

    fn request() -> QuoteRequest {
        QuoteRequest {
            buyer: Address::repeat_byte(2),
            service: Service::Shadowsocks,
            wanted: None,
            buyer_key: [1; 32],
            wireguard_key: None,
        }
    }

    #[test]
    fn nonce_and_expiry_come_from_inputs_and_time() {
        let now = Timestamp::from_secs(1_800_000_000);
        let a = build_offer(
            Address::repeat_byte(1),
            &request(),
            &terms(),
            now,
            Duration::from_secs(300),
        );
        let b = build_offer(
            Address::repeat_byte(1),
            &request(),
            &terms(),
            now,
            Duration::from_secs(300),
        );
        assert_eq!(a, b, "deterministic");
        assert_eq!(a.expiry, 1_800_000_300);
        let later = build_offer(
            Address::repeat_byte(1),
            &request(),
            &terms(),
            Timestamp(now.0 + 1),
            Duration::from_secs(300),
        );
        assert_ne!(a.nonce, later.nonce);
        let mut other = request();
        other.buyer_key = [2; 32];
        assert_ne!(offer_nonce(other.buyer, &other.buyer_key, now), a.nonce);
    }

    #[test]
    fn fixed_bounds_never_move() {
        let list = terms();
        let wanted = Terms {
            price_per_mib: 1,
            price_per_second: 1,
            seller_burn: 100,
            buyer_burn: 0,
            min_deposit: 0,
            payment_interval: 60,
        };
        assert_eq!(
            counter_offer(&list, &CounterOfferBounds::fixed(&list), Some(&wanted)),
            list
        );
    }

    #[test]
    fn buyer_checks_parties_terms_and_expiry() {
        let now = Timestamp::from_secs(1_800_000_000);
        let seller = Address::repeat_byte(1);
        let req = request();
        let offer = build_offer(seller, &req, &terms(), now, Duration::from_secs(300));
        let limits = BuyerLimits::default();
        let check =
            |o: &Offer, l: &BuyerLimits| check_offer(o, seller, req.buyer, req.service, l, now);
        assert_eq!(check(&offer, &limits), Ok(()));
        assert!(matches!(
            check_offer(&offer, Address::ZERO, req.buyer, req.service, &limits, now),
            Err(OfferRejection::WrongSeller { .. })
        ));
        assert!(matches!(
            check_offer(&offer, seller, Address::ZERO, req.service, &limits, now),
            Err(OfferRejection::WrongBuyer { .. })
        ));
        assert!(matches!(
            check_offer(&offer, seller, req.buyer, Service::WireGuard, &limits, now),
            Err(OfferRejection::WrongService { .. })
        ));
        let tight = BuyerLimits {
            max_price_per_mib: 99,
            ..limits
        };
        assert!(matches!(
            check(&offer, &tight),
            Err(OfferRejection::OutOfLimits {
                field: "pricePerMiB",
                offered: 100,
                limit: 99
            })
        ));
        let picky = BuyerLimits {
            min_seller_burn: 6,
            ..limits
        };
        assert!(matches!(
            check(&offer, &picky),
            Err(OfferRejection::OutOfLimits { .. })
        ));
        let slow = BuyerLimits {
            min_offer_lifetime: Duration::from_secs(301),
            ..limits
        };
        assert!(matches!(
            check(&offer, &slow),
            Err(OfferRejection::ExpiresTooSoon { .. })
        ));
        let error = check(&offer, &tight).unwrap_err().to_string();
        assert!(error.contains("raise the limit"), "{error}");
    }
}
