//! The typed client against a real anvil: the whole channel life cycle, the buyer's
//! unilateral close with time travel, the event stream, and reverts explained in one line.

mod common;

use std::time::Duration;

use alloy::primitives::{B256, U256};
use common::{ETH, lab, secret, wei};
use futures::StreamExt;
use wayfare_chain::{
    ChainError, ConnectOptions, MarketClient, WayfareMarket::WayfareMarketEvents,
    devnet::increase_time,
};
use wayfare_proto::eip712;

const FAR_FUTURE: u64 = 4_000_000_000;

#[tokio::test]
async fn open_pay_settle_withdraw_and_events() {
    let lab = lab(1).await;
    let buyer = lab.client(&lab.buyer).await;
    let signer = lab.client(&lab.seller_signer).await;
    let seller = lab.client(&lab.seller).await;
    let voucher_key = alloy::signers::local::PrivateKeySigner::random();

    let (offer, sig) = lab.offer(1, FAR_FUTURE);
    let deposit = wei(ETH / 2);
    let value = deposit + U256::from(offer.buyerBurn);
    let (id, _) = buyer
        .open(&offer, &sig, voucher_key.address(), value)
        .await
        .expect("open");
    let ch = buyer.channel(id).await.unwrap();
    assert_eq!(ch.state, 1, "open");
    assert_eq!(ch.deposit, deposit);
    assert_eq!(ch.buyer, lab.buyer.address());
    let funds = seller.seller(lab.seller.address()).await.unwrap().funds;
    assert_eq!(
        funds,
        wei(ETH - ETH / 100),
        "seller burn taken from seller funds"
    );

    // The same offer can't open a second channel: the revert names the channel.
    let err = buyer
        .open(&offer, &sig, voucher_key.address(), value)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already opened channel"), "{err}");

    // The buyer pays 0.1 ETH by voucher; the seller's signer settles with it.
    let amount = wei(ETH / 10);
    let vsig = secret(&voucher_key).sign_digest(eip712::voucher_digest(id, amount, &lab.domain()));
    signer.settle(id, amount, &vsig).await.expect("settle");
    assert_eq!(buyer.channel(id).await.unwrap().state, 3, "closed");
    assert_eq!(
        buyer.withdrawable(lab.seller.address()).await.unwrap(),
        amount
    );
    assert_eq!(
        buyer.withdrawable(lab.buyer.address()).await.unwrap(),
        deposit - amount
    );

    // Settling again is refused with the state named.
    let err = signer.settle(id, amount, &vsig).await.unwrap_err();
    assert!(err.to_string().contains("is closed"), "{err}");

    let before = seller.balance(lab.seller.address()).await.unwrap();
    let tx = seller.withdraw().await.expect("withdraw");
    let after = seller.balance(lab.seller.address()).await.unwrap();
    assert!(
        after > before && after <= before + amount,
        "paid out, minus gas {}",
        tx.gas_used
    );
    assert_eq!(
        buyer.withdrawable(lab.seller.address()).await.unwrap(),
        U256::ZERO
    );

    // Ratings, then the burns reach the sink.
    buyer.rate(id, 5).await.expect("buyer rates");
    let err = buyer.rate(id, 4).await.unwrap_err();
    assert!(err.to_string().contains("already rated"), "{err}");
    let burns = U256::from(offer.sellerBurn) + U256::from(offer.buyerBurn);
    assert_eq!(buyer.burned_unswept().await.unwrap(), burns);
    let sink = buyer.burn_sink().await.unwrap();
    let sink_before = buyer.balance(sink).await.unwrap();
    buyer.sweep_burns().await.expect("sweep");
    assert_eq!(buyer.balance(sink).await.unwrap(), sink_before + burns);

    // The stream from the deployment block sees the whole story in order.
    let mut stream =
        std::pin::pin!(buyer.events_from(lab.devnet.info.deploy_block, Duration::from_millis(50)));
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(item) = stream.next().await {
            let log = item.expect("event");
            let last = matches!(log.event, WayfareMarketEvents::BurnsSwept(_));
            events.push(log);
            if last {
                break;
            }
        }
    })
    .await
    .expect("the stream delivers every event up to BurnsSwept");
    let names: Vec<&str> = events
        .iter()
        .map(|l| match &l.event {
            WayfareMarketEvents::SellerRegistered(_) => "SellerRegistered",
            WayfareMarketEvents::ChannelOpened(_) => "ChannelOpened",
            WayfareMarketEvents::ChannelClosed(_) => "ChannelClosed",
            WayfareMarketEvents::Withdrawn(_) => "Withdrawn",
            WayfareMarketEvents::Rated(_) => "Rated",
            WayfareMarketEvents::BurnsSwept(_) => "BurnsSwept",
            _ => "other",
        })
        .filter(|n| *n != "other")
        .collect();
    assert_eq!(
        names,
        [
            "SellerRegistered",
            "ChannelOpened",
            "ChannelClosed",
            "Withdrawn",
            "Rated",
            "BurnsSwept"
        ]
    );
    let opened = events.iter().find_map(|l| match &l.event {
        WayfareMarketEvents::ChannelOpened(e) => Some(e.clone()),
        _ => None,
    });
    let opened = opened.expect("ChannelOpened");
    assert_eq!(
        (opened.id, opened.deposit, opened.pricePerMiB),
        (id, deposit, offer.pricePerMiB)
    );
}

#[tokio::test]
async fn buyer_close_waits_for_the_challenge_period_and_watchtower_vouchers_count() {
    let lab = lab(1).await;
    let buyer = lab.client(&lab.buyer).await;
    let seller = lab.client(&lab.seller).await;
    let voucher_key = alloy::signers::local::PrivateKeySigner::random();
    let (offer, sig) = lab.offer(7, FAR_FUTURE);
    let deposit = wei(ETH / 5);
    let (id, _) = buyer
        .open(
            &offer,
            &sig,
            voucher_key.address(),
            deposit + U256::from(offer.buyerBurn),
        )
        .await
        .unwrap();

    buyer.start_close(id).await.expect("start close");
    let closes_at = buyer.channel(id).await.unwrap().closesAt;
    let err = buyer.finalize(id).await.unwrap_err();
    assert!(err.to_string().contains("finalize after"), "{err}");
    assert!(err.to_string().contains("UTC"), "{err}");

    // The seller (as its own watchtower) submits its best voucher before the deadline.
    let amount = wei(ETH / 20);
    let vsig = secret(&voucher_key).sign_digest(eip712::voucher_digest(id, amount, &lab.domain()));
    seller
        .submit_voucher(id, amount, &vsig)
        .await
        .expect("watchtower voucher");

    increase_time(buyer.provider(), lab.devnet.info.challenge_period + 1)
        .await
        .unwrap();
    let (_, now) = buyer.head().await.unwrap();
    assert!(now >= closes_at);
    // Too late for vouchers now.
    let err = seller.submit_voucher(id, amount, &vsig).await.unwrap_err();
    assert!(err.to_string().contains("challenge period ended"), "{err}");
    buyer.finalize(id).await.expect("finalize");
    assert_eq!(
        buyer.withdrawable(lab.buyer.address()).await.unwrap(),
        deposit - amount
    );
    assert_eq!(
        buyer.withdrawable(lab.seller.address()).await.unwrap(),
        amount
    );
}

#[tokio::test]
async fn reverts_are_explained_and_change_nothing() {
    let lab = lab(2).await;
    let buyer = lab.client(&lab.buyer).await;
    let seller = lab.client(&lab.seller).await;
    let vk = alloy::signers::local::PrivateKeySigner::random().address();

    // Expired offer: the time is named.
    let (offer, sig) = lab.offer(2, 1_000);
    let err = buyer.open(&offer, &sig, vk, wei(ETH)).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("offer expired at 1970-01-01 00:16:40 UTC"),
        "{msg}"
    );
    assert!(msg.contains("ask the seller for a new quote"), "{msg}");
    assert!(matches!(err, ChainError::Reverted { .. }));

    // Deposit too low: both amounts named.
    let (offer, sig) = lab.offer(3, FAR_FUTURE);
    let err = buyer.open(&offer, &sig, vk, wei(1)).await.unwrap_err();
    assert!(
        err.to_string().contains("sent 0.000000000000000001 ETH"),
        "{err}"
    );

    // Seller withdrew its funds: the open reverts, no burn is taken, and the hint says how to fix it.
    let funds = seller.seller(lab.seller.address()).await.unwrap().funds;
    seller
        .withdraw_seller_funds(funds)
        .await
        .expect("withdraw funds");
    let err = buyer.open(&offer, &sig, vk, wei(ETH)).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("seller funds 0 ETH < seller burn 0.01 ETH"),
        "{msg}"
    );
    assert!(msg.contains("wayfare chain seller fund"), "{msg}");
    assert_eq!(buyer.burned_unswept().await.unwrap(), U256::ZERO);
    let id = eip712::channel_id(buyer.chain_id(), buyer.address(), offer.seller, offer.nonce);
    assert_eq!(
        buyer.channel(id).await.unwrap().state,
        0,
        "nothing half-done"
    );

    // An offer signed by a stranger.
    let stranger = alloy::signers::local::PrivateKeySigner::random();
    let forged = secret(&stranger).sign_digest(eip712::offer_digest(&offer, &lab.domain()));
    seller.fund_seller(wei(ETH)).await.unwrap();
    let err = buyer.open(&offer, &forged, vk, wei(ETH)).await.unwrap_err();
    assert!(err.to_string().contains("signature is by"), "{err}");

    // Unregistered seller.
    let mut o = offer.clone();
    o.seller = stranger.address();
    let s = secret(&stranger).sign_digest(eip712::offer_digest(&o, &lab.domain()));
    let err = buyer.open(&o, &s, vk, wei(ETH)).await.unwrap_err();
    assert!(
        err.to_string().contains("is not a registered seller"),
        "{err}"
    );

    // Someone else's channel.
    let err = seller.start_close(B256::repeat_byte(1)).await.unwrap_err();
    assert!(err.to_string().contains("not opened"), "{err}");
}

#[tokio::test]
async fn connection_problems_are_one_clear_line() {
    let lab = lab(1).await;
    let opts = |url: &str, chain: Option<u64>, market| ConnectOptions {
        rpc_url: url.to_string(),
        market,
        expected_chain_id: chain,
        signer: None,
    };
    let market = lab.devnet.info.market;
    let err = MarketClient::connect(opts("http://127.0.0.1:9", None, market))
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::Unreachable { .. }), "{err}");
    let err = MarketClient::connect(opts("nonsense", None, market))
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::BadRpcUrl { .. }), "{err}");
    let err = MarketClient::connect(opts("ftp://x", None, market))
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::BadRpcUrl { .. }), "{err}");
    let url = &lab.devnet.info.rpc_url;
    let err = MarketClient::connect(opts(url, Some(1), market))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is on chain 31337, not chain 1"),
        "{err}"
    );
    let err = MarketClient::connect(opts(url, None, common::random_address()))
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::NoContract { .. }), "{err}");
    let ws = MarketClient::connect(opts(&lab.devnet.info.ws_url, Some(31337), market)).await;
    assert_eq!(
        ws.expect("websocket works")
            .challenge_period()
            .await
            .unwrap(),
        600
    );
    let view_only = MarketClient::connect(opts(url, None, market))
        .await
        .unwrap();
    let err = view_only.withdraw().await.unwrap_err();
    assert!(matches!(err, ChainError::NoSigner { .. }), "{err}");
}
