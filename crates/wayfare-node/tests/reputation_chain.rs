//! Reputation abuse on a real chain (anvil): a seller opens 50 channels with an account it
//! controls, closes them and rates itself 5 each time. Scores come from the market's events,
//! folded as every node folds them. Without burns this buys nothing; with burns it buys only
//! what the burns weigh. A rating on a channel that is not closed is refused by the contract.

use alloy::{primitives::U256, signers::local::PrivateKeySigner};
use wayfare_chain::{
    ConnectOptions, MarketClient,
    devnet::{Devnet, DevnetOptions},
    keystore::{PasswordSource, load_keystore},
};
use wayfare_node::reputation::{Ledger, ScoreParams, from_log};
use wayfare_proto::{eip712, keys::SecretKey};

const ETH: u128 = 1_000_000_000_000_000_000;
const CHANNELS: u64 = 50;

async fn client(devnet: &Devnet, key: &PrivateKeySigner) -> MarketClient {
    MarketClient::connect(ConnectOptions {
        rpc_url: devnet.info.rpc_url.clone(),
        market: devnet.info.market,
        expected_chain_id: Some(devnet.info.chain_id),
        signer: Some(key.clone()),
    })
    .await
    .expect("connect")
}

/// Opens `CHANNELS` channels from `buyer` (the seller's own second account) with burns `burn`
/// each side, settles them at 0 and rates the seller 5 on each. Returns the folded ledger.
async fn self_dealing(
    devnet: &Devnet,
    seller_index: usize,
    burn: u128,
    first_nonce: u64,
) -> Ledger {
    let pw = PasswordSource::File(devnet.info.password_file.clone());
    let s = &devnet.info.sellers[seller_index];
    let seller = load_keystore(&s.account.keystore, &pw).unwrap();
    let signer = load_keystore(&s.signer.keystore, &pw).unwrap();
    let sock_puppet = load_keystore(&devnet.info.buyers[0].keystore, &pw).unwrap();
    let seller_c = client(devnet, &seller).await;
    let puppet_c = client(devnet, &sock_puppet).await;
    let domain = eip712::domain(devnet.info.chain_id, devnet.info.market);
    let key = SecretKey::from_bytes(&signer.to_bytes().0).unwrap();
    let (_, now) = seller_c.head().await.unwrap();
    for n in 0..CHANNELS {
        let offer = eip712::Offer {
            seller: seller.address(),
            buyer: sock_puppet.address(),
            service: 2,
            pricePerMiB: 0,
            pricePerSecond: 0,
            sellerBurn: burn,
            buyerBurn: burn,
            minDeposit: 0,
            paymentInterval: 15,
            nonce: first_nonce + n,
            expiry: now + 3600,
        };
        let sig = key.sign_digest(eip712::offer_digest(&offer, &domain));
        let (id, _) = puppet_c
            .open(&offer, &sig, sock_puppet.address(), U256::from(burn + 1))
            .await
            .expect("open");
        if n == 0 {
            // A rating before the channel closed is refused by the contract.
            let e = puppet_c.rate(id, 5).await.unwrap_err();
            assert!(e.revert().is_some(), "rating an open channel: {e}");
        }
        seller_c.settle(id, U256::ZERO, &[]).await.expect("settle");
        puppet_c.rate(id, 5).await.expect("rate");
    }
    let (head, _) = seller_c.head().await.unwrap();
    let mut ledger = Ledger::new();
    for l in seller_c
        .events_between(devnet.info.deploy_block, head)
        .await
        .unwrap()
    {
        if let Some(ev) = from_log(&l) {
            ledger.apply_at(l.block, &ev);
        }
    }
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_rating_through_50_self_opened_channels_buys_only_what_its_burns_weigh() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DevnetOptions::new(dir.path().join("devnet"));
    opts.sellers = 2;
    opts.buyers = 1;
    let devnet = Devnet::start(opts, &mut |_| {}).await.expect("devnet");
    let p = ScoreParams::default();
    let newcomer = Ledger::new().seller_score(&devnet.info.sellers[0].account.address, &p);

    // Seller 1: 50 self-opened channels without burns, 50 self-ratings of 5.
    let free = self_dealing(&devnet, 0, 0, 1).await;
    let s1 = devnet.info.sellers[0].account.address;
    assert_eq!(
        free.seller_stats(&s1).ratings,
        CHANNELS as u32,
        "the ratings are on chain"
    );
    assert_eq!(
        free.seller_score(&s1, &p),
        newcomer,
        "50 free self-ratings moved the score"
    );

    // Seller 2: the same with 0.0001 ETH burnt per side per channel (0.01 ETH in all).
    let burn = ETH / 10_000;
    let paid = self_dealing(&devnet, 1, burn, 1_000).await;
    let s2 = devnet.info.sellers[1].account.address;
    let score = paid.seller_score(&s2, &p);
    let gain = score - newcomer;
    assert!(gain > 0.0, "burns bought nothing");
    // What the burns weigh: the rating term is a burn-weighted mean with a 0.001 ETH prior,
    // and the experience term saturates in burns: recompute it from the burns alone (and the
    // age of its first burned close, a few blocks here).
    let w = (CHANNELS as f64) * burn as f64 / 1e18; // rating weight (the raters' burns)
    let b = 2.0 * w; // both burns of the closed channels
    // Volume: each settle paid 0. Age: blocks since the first burned close.
    let st = paid.seller_stats(&s2);
    assert_eq!(st.paid_backed, 0.0);
    let age = (paid.head() - st.since_block.expect("a burned close")) as f64;
    let expected = 0.5 * ((w + p.prior_weight * 0.5) / (w + p.prior_weight))
        + 0.2 * ((b + p.prior_weight * 0.5) / (b + p.prior_weight))
        + 0.1 * (1.0 - (-b / p.experience_burns).exp())
        + 0.1 * (1.0 - (-age / p.age_blocks).exp());
    assert!(
        (score - expected).abs() < 1e-9,
        "score {score} is not what the burns weigh ({expected})"
    );
    drop(devnet);
}
