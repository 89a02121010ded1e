//! The buyer's offer book: the live announcements it has accepted, one per seller, with filters
//! and a ranking hook (reputation plugs in there). Time is a parameter (Unix seconds).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use alloy_primitives::Address;
use wayfare_proto::Service;
use wayfare_proto::messages::Announcement;

/// What a buyer is looking for. `None` fields don't filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferFilter {
    /// The service wanted.
    pub service: Option<Service>,
    /// Highest X (wei per MiB).
    pub max_price_per_mib: Option<u128>,
    /// Highest Y (wei per second).
    pub max_price_per_second: Option<u128>,
    /// Highest W (the buyer's own burn at open).
    pub max_buyer_burn: Option<u128>,
    /// Lowest Z (the seller's burn: skin in the game).
    pub min_seller_burn: Option<u128>,
    /// Highest minimum deposit.
    pub max_min_deposit: Option<u128>,
    /// Region, matched exactly (ASCII case-insensitive).
    pub region: Option<String>,
}

impl OfferFilter {
    /// Whether `a` passes.
    pub fn matches(&self, a: &Announcement) -> bool {
        let le = |limit: Option<u128>, v: u128| limit.is_none_or(|l| v <= l);
        self.service.is_none_or(|s| a.services.contains(s))
            && le(self.max_price_per_mib, a.terms.price_per_mib)
            && le(self.max_price_per_second, a.terms.price_per_second)
            && le(self.max_buyer_burn, a.terms.buyer_burn)
            && le(self.max_min_deposit, a.terms.min_deposit)
            && self
                .min_seller_burn
                .is_none_or(|m| a.terms.seller_burn >= m)
            && self
                .region
                .as_ref()
                .is_none_or(|r| r.eq_ignore_ascii_case(&a.region))
    }
}

/// Orders offers, best first. Reputation plugs in here.
pub trait Ranker {
    /// Compares two offers: `Less` means `a` ranks before `b`.
    fn compare(&self, a: &Announcement, b: &Announcement) -> Ordering;
}

/// Cheapest first: by X, then Y, then the buyer's burn; ties by seller address.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheapestFirst;

impl Ranker for CheapestFirst {
    fn compare(&self, a: &Announcement, b: &Announcement) -> Ordering {
        (
            a.terms.price_per_mib,
            a.terms.price_per_second,
            a.terms.buyer_burn,
            a.seller,
        )
            .cmp(&(
                b.terms.price_per_mib,
                b.terms.price_per_second,
                b.terms.buyer_burn,
                b.seller,
            ))
    }
}

/// Live offers, one (the latest) per seller.
#[derive(Debug, Default, Clone)]
pub struct OfferBook {
    offers: BTreeMap<Address, Announcement>,
}

impl OfferBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a validated announcement unless it is stale at `now` or older than the one held for
    /// the same seller. Returns whether the book changed.
    pub fn insert(&mut self, a: Announcement, now: u64) -> bool {
        if a.valid_until <= now {
            return false;
        }
        match self.offers.get(&a.seller) {
            Some(held) if held.valid_until >= a.valid_until => false,
            _ => {
                self.offers.insert(a.seller, a);
                true
            }
        }
    }

    /// Drops a seller's offer (e.g. after it deregistered or refused us).
    pub fn remove(&mut self, seller: &Address) -> Option<Announcement> {
        self.offers.remove(seller)
    }

    /// Drops every offer stale at `now`.
    pub fn prune(&mut self, now: u64) {
        self.offers.retain(|_, a| a.valid_until > now);
    }

    /// Live offers held (stale ones included until [`Self::prune`]).
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// The offer held for `seller`, if live at `now`.
    pub fn get(&self, seller: &Address, now: u64) -> Option<&Announcement> {
        self.offers.get(seller).filter(|a| a.valid_until > now)
    }

    /// Live offers at `now` that pass `filter`, best first by `ranker`.
    pub fn query<'a>(
        &'a self,
        filter: &OfferFilter,
        now: u64,
        ranker: &impl Ranker,
    ) -> Vec<&'a Announcement> {
        let mut v: Vec<_> = self
            .offers
            .values()
            .filter(|a| a.valid_until > now && filter.matches(a))
            .collect();
        v.sort_by(|a, b| ranker.compare(a, b));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayfare_proto::{ServiceSet, Terms};

    fn ann(seller: u8, x: u128, services: &[Service], region: &str, until: u64) -> Announcement {
        Announcement {
            seller: Address::repeat_byte(seller),
            peer_id: vec![seller],
            services: ServiceSet::new(services),
            terms: Terms {
                price_per_mib: x,
                price_per_second: 1,
                seller_burn: u128::from(seller),
                buyer_burn: 5,
                min_deposit: 100,
                payment_interval: 30,
            },
            region: region.into(),
            capacity_bps: 1,
            exit_allow: Vec::new(),
            valid_until: until,
            signature: [0; 65],
        }
    }

    #[test]
    fn filters_ranks_and_expires() {
        let mut book = OfferBook::new();
        assert!(book.insert(ann(1, 30, &[Service::WireGuard], "eu-west", 100), 10));
        assert!(book.insert(ann(2, 10, &[Service::Shadowsocks], "us-east", 200), 10));
        assert!(book.insert(
            ann(
                3,
                20,
                &[Service::WireGuard, Service::Shadowsocks],
                "EU-WEST",
                50
            ),
            10
        ));
        assert!(
            !book.insert(ann(4, 1, &[Service::WireGuard], "eu-west", 5), 10),
            "stale"
        );
        assert!(
            !book.insert(ann(1, 1, &[Service::WireGuard], "eu-west", 90), 10),
            "older"
        );

        let all = book.query(&OfferFilter::default(), 10, &CheapestFirst);
        let xs: Vec<u128> = all.iter().map(|a| a.terms.price_per_mib).collect();
        assert_eq!(xs, vec![10, 20, 30]);

        let wg_eu = OfferFilter {
            service: Some(Service::WireGuard),
            region: Some("eu-west".into()),
            max_price_per_mib: Some(25),
            ..OfferFilter::default()
        };
        let got: Vec<u8> = book
            .query(&wg_eu, 10, &CheapestFirst)
            .iter()
            .map(|a| a.seller.0[0])
            .collect();
        assert_eq!(got, vec![3]);
        let burn = OfferFilter {
            min_seller_burn: Some(2),
            max_buyer_burn: Some(5),
            ..OfferFilter::default()
        };
        assert_eq!(book.query(&burn, 10, &CheapestFirst).len(), 2);
        assert!(
            book.query(
                &OfferFilter {
                    max_buyer_burn: Some(4),
                    ..OfferFilter::default()
                },
                10,
                &CheapestFirst
            )
            .is_empty()
        );

        // Seller 3 expires at 50.
        assert_eq!(
            book.query(&OfferFilter::default(), 60, &CheapestFirst)
                .len(),
            2
        );
        book.prune(60);
        assert_eq!(book.len(), 2);
        assert!(book.get(&Address::repeat_byte(3), 60).is_none());
    }
}
