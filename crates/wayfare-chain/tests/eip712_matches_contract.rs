//! The Rust EIP-712 implementation (wayfare-proto) equals the deployed contract's
//! `hashOffer` / `hashVoucher` / `hashCloseConsent`, the domain separator and channel ids,
//! for random values.

mod common;

use alloy::primitives::{Address, B256, U256};
use proptest::prelude::*;
use wayfare_proto::eip712;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn arb_address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address::from)
}

fn arb_b256() -> impl Strategy<Value = B256> {
    any::<[u8; 32]>().prop_map(B256::from)
}

fn arb_u256() -> impl Strategy<Value = U256> {
    any::<[u8; 32]>().prop_map(U256::from_be_bytes)
}

prop_compose! {
    fn arb_offer()(
        seller in arb_address(), buyer in arb_address(), service in any::<u8>(),
        x in any::<u128>(), y in any::<u128>(), z in any::<u128>(), w in any::<u128>(),
        min in any::<u128>(), interval in any::<u32>(), nonce in any::<u64>(), expiry in any::<u64>(),
    ) -> eip712::Offer {
        eip712::Offer {
            seller, buyer, service, pricePerMiB: x, pricePerSecond: y, sellerBurn: z,
            buyerBurn: w, minDeposit: min, paymentInterval: interval, nonce, expiry,
        }
    }
}

#[test]
fn digests_match_the_deployed_contract() {
    let rt = runtime();
    let lab = rt.block_on(common::lab(1));
    let client = rt.block_on(lab.client(&lab.buyer));
    let domain = lab.domain();

    let on_chain = rt
        .block_on(client.domain_separator())
        .expect("domainSeparator");
    assert_eq!(on_chain, domain.separator(), "domain separator differs");

    let config = ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    };
    proptest!(config, |(offer in arb_offer(), id in arb_b256(), amount in arb_u256(),
                        seller in arb_address(), nonce in any::<u64>())| {
        let hash = rt.block_on(client.hash_offer(&offer)).expect("hashOffer");
        prop_assert_eq!(hash, eip712::offer_digest(&offer, &domain));
        let hash = rt.block_on(client.hash_voucher(id, amount)).expect("hashVoucher");
        prop_assert_eq!(hash, eip712::voucher_digest(id, amount, &domain));
        let hash = rt.block_on(client.hash_close_consent(id, amount)).expect("hashCloseConsent");
        prop_assert_eq!(hash, eip712::close_consent_digest(id, amount, &domain));
        let cid = rt.block_on(client.channel_id(seller, nonce)).expect("channelId");
        prop_assert_eq!(cid, eip712::channel_id(client.chain_id(), client.address(), seller, nonce));
    });
}
