//! Every signed message, checked by the session that receives it: a valid signature is taken; the
//! wrong key, a signature over another channel and one under another chain's domain each change
//! nothing and come back as `SessionError::Signature`.

mod sim;

use alloy_primitives::{B256, U256};
use sim::*;
use wayfare_proto::eip712::{self, Eip712Domain};
use wayfare_proto::keys::SecretKey;
use wayfare_proto::messages::{
    CloseReason, CloseRequest, Message, Quote, Resume, SignedCloseConsent, SignedVoucher, Usage,
};
use wayfare_proto::session::{EndReason, SessionError};

const OTHER_CHANNEL: B256 = B256::repeat_byte(0xee);

fn seller_key() -> SecretKey {
    SecretKey::from_bytes(&[0x11; 32]).expect("key")
}

fn voucher_key() -> SecretKey {
    SecretKey::from_bytes(&[0x22; 32]).expect("key")
}

fn mallory() -> SecretKey {
    SecretKey::from_bytes(&[0x99; 32]).expect("key")
}

fn our_domain() -> Eip712Domain {
    eip712::domain(CHAIN_ID, MARKET)
}

fn other_chain() -> Eip712Domain {
    eip712::domain(CHAIN_ID + 1, MARKET)
}

/// The three bad signers of every case: (what, key, domain, channel signed over).
fn forgeries(right: SecretKey) -> Vec<(&'static str, SecretKey, Eip712Domain, Option<B256>)> {
    vec![
        ("wrong key", mallory(), our_domain(), None),
        (
            "wrong channel",
            right.clone(),
            our_domain(),
            Some(OTHER_CHANNEL),
        ),
        ("wrong chain", right, other_chain(), None),
    ]
}

fn serving() -> World {
    let mut w = World::new(WorldConfig::default());
    assert!(
        w.run_until(MINUTE, |w| w.seller.is_serving() && w.buyer.is_serving()),
        "session never started"
    );
    w.run_for(MINUTE);
    w
}

fn assert_signature_error(what: &str, r: Result<(), SessionError>) {
    assert!(
        matches!(r, Err(SessionError::Signature(_))),
        "{what}: expected a signature error, got {r:?}"
    );
}

#[test]
fn voucher_to_the_seller() {
    let mut w = serving();
    let channel = w.seller.channel_id().unwrap();
    let best = w.seller.best_voucher().unwrap().amount;
    let amount = best + U256::from(1_000u64);
    let voucher = |key: &SecretKey, domain: &Eip712Domain, over: B256| SignedVoucher {
        channel_id: channel,
        amount,
        signature: key.sign_digest(eip712::voucher_digest(over, amount, domain)),
    };
    let before = w.seller.snapshot();
    for (what, key, domain, over) in forgeries(voucher_key()) {
        let v = voucher(&key, &domain, over.unwrap_or(channel));
        assert_signature_error(what, w.seller.handle_message(Message::Voucher(v), w.t()));
        assert_eq!(w.seller.snapshot(), before, "{what} changed the seller");
    }
    let v = voucher(&voucher_key(), &our_domain(), channel);
    w.seller
        .handle_message(Message::Voucher(v), w.t())
        .expect("valid voucher");
    assert_eq!(w.seller.best_voucher().map(|v| v.amount), Some(amount));
}

#[test]
fn buyer_close_and_pause_requests_to_the_seller() {
    let mut w = serving();
    let channel = w.seller.channel_id().unwrap();
    let request = |key: &SecretKey, domain: &Eip712Domain, over: B256, reason: CloseReason| {
        let digest = eip712::close_request_digest(over, 0, reason as u8, domain);
        CloseRequest {
            channel_id: channel,
            run: 0,
            reason,
            signature: key.sign_digest(digest),
        }
    };
    let before = w.seller.snapshot();
    for reason in [CloseReason::Pause, CloseReason::BuyerDone] {
        for (what, key, domain, over) in forgeries(voucher_key()) {
            let c = request(&key, &domain, over.unwrap_or(channel), reason);
            assert_signature_error(
                what,
                w.seller.handle_message(Message::CloseRequest(c), w.t()),
            );
            assert_eq!(
                w.seller.snapshot(),
                before,
                "{what} {reason:?} changed the seller"
            );
            assert!(w.seller.is_serving());
        }
        // Signed by the seller's own key (reflected back at it): refused too.
        let c = request(&seller_key(), &our_domain(), channel, reason);
        assert_signature_error(
            "the seller's key",
            w.seller.handle_message(Message::CloseRequest(c), w.t()),
        );
    }
    let c = request(&voucher_key(), &our_domain(), channel, CloseReason::Pause);
    w.seller
        .handle_message(Message::CloseRequest(c), w.t())
        .expect("valid pause");
    assert!(w.seller.is_paused());
}

#[test]
fn resume_to_the_seller() {
    let mut w = serving();
    w.buyer.pause(w.t());
    assert!(w.run_until(MINUTE, |w| w.seller.is_paused()));
    let channel = w.seller.channel_id().unwrap();
    let resume = |key: &SecretKey, domain: &Eip712Domain, over: B256| {
        let digest = eip712::resume_digest(over, 1, [0x77; 32], Some([0x78; 32]), domain);
        Resume {
            channel_id: channel,
            run: 1,
            buyer_key: [0x77; 32],
            wireguard_key: Some([0x78; 32]),
            signature: key.sign_digest(digest),
        }
    };
    let before = w.seller.snapshot();
    for (what, key, domain, over) in forgeries(voucher_key()) {
        let r = resume(&key, &domain, over.unwrap_or(channel));
        assert_signature_error(what, w.seller.handle_message(Message::Resume(r), w.t()));
        assert_eq!(w.seller.snapshot(), before, "{what} changed the seller");
    }
    let r = resume(&voucher_key(), &our_domain(), channel);
    w.seller
        .handle_message(Message::Resume(r), w.t())
        .expect("valid resume");
    assert!(!w.seller.is_paused());
    assert_eq!(w.seller.run(), 1);
    // The same resume again is a retransmission of run 1; a validly signed resume for an older
    // run is a replay and changes nothing.
    w.seller
        .handle_message(Message::Resume(r), w.t())
        .expect("retransmission");
    let digest = eip712::resume_digest(channel, 0, [0x77; 32], Some([0x78; 32]), &our_domain());
    let old = Resume {
        run: 0,
        signature: voucher_key().sign_digest(digest),
        ..r
    };
    assert!(matches!(
        w.seller.handle_message(Message::Resume(old), w.t()),
        Err(SessionError::StaleRun {
            got: 0,
            current: 1,
            ..
        })
    ));
}

#[test]
fn usage_to_the_buyer() {
    let mut w = serving();
    let channel = w.buyer.channel_id().unwrap();
    // A forged report of a huge meter would make the buyer leave for over-metering.
    let usage = |key: &SecretKey, domain: &Eip712Domain, over: B256| {
        let mut u = Usage {
            channel_id: over,
            run: 0,
            bytes: u64::MAX / 2,
            seconds: 60,
            paid: U256::ZERO,
            signature: [0; 65],
        };
        u.signature = key.sign_digest(eip712::usage_digest(&u, domain));
        u.channel_id = channel;
        u
    };
    let before = w.buyer.snapshot();
    for (what, key, domain, over) in forgeries(seller_key()) {
        let u = usage(&key, &domain, over.unwrap_or(channel));
        assert_signature_error(what, w.buyer.handle_message(Message::Usage(u), w.t()));
        assert_eq!(w.buyer.snapshot(), before, "{what} changed the buyer");
        assert!(w.buyer.is_serving());
    }
    // The buyer's own voucher key is not the seller's signer.
    let u = usage(&voucher_key(), &our_domain(), channel);
    assert_signature_error(
        "the buyer's key",
        w.buyer.handle_message(Message::Usage(u), w.t()),
    );
    // A report of an earlier run is stale even when signed.
    let mut stale = usage(&seller_key(), &our_domain(), channel);
    stale.run = 1;
    stale.signature = seller_key().sign_digest(eip712::usage_digest(&stale, &our_domain()));
    assert!(matches!(
        w.buyer.handle_message(Message::Usage(stale), w.t()),
        Err(SessionError::StaleRun { .. })
    ));
    assert!(w.buyer.is_serving());
    let u = usage(&seller_key(), &our_domain(), channel);
    w.buyer
        .handle_message(Message::Usage(u), w.t())
        .expect("valid usage");
    assert_eq!(w.buyer.end_reason(), Some(EndReason::MeterMismatch));
}

#[test]
fn seller_close_request_to_the_buyer() {
    let mut w = serving();
    let channel = w.buyer.channel_id().unwrap();
    let reason = CloseReason::PaymentProblem;
    let request = |key: &SecretKey, domain: &Eip712Domain, over: B256| {
        let digest = eip712::close_request_digest(over, 0, reason as u8, domain);
        CloseRequest {
            channel_id: channel,
            run: 0,
            reason,
            signature: key.sign_digest(digest),
        }
    };
    let before = w.buyer.snapshot();
    for (what, key, domain, over) in forgeries(seller_key()) {
        let c = request(&key, &domain, over.unwrap_or(channel));
        assert_signature_error(
            what,
            w.buyer.handle_message(Message::CloseRequest(c), w.t()),
        );
        assert_eq!(w.buyer.snapshot(), before, "{what} changed the buyer");
        assert!(w.buyer.is_serving());
    }
    let c = request(&seller_key(), &our_domain(), channel);
    w.buyer
        .handle_message(Message::CloseRequest(c), w.t())
        .expect("valid close request");
    assert!(!w.buyer.is_serving());
    assert_eq!(w.buyer.end_reason(), Some(EndReason::SellerClosed));
}

#[test]
fn close_consent_to_the_buyer() {
    let mut w = serving();
    // The seller's own consents never arrive: the test hands the buyer its consents itself.
    w.s2b_filter = Some(Box::new(|m, _| !matches!(m, Message::CloseConsent(_))));
    w.buyer.leave(w.t());
    w.run_for(5_000);
    assert!(
        !w.buyer.is_ended() && !w.buyer.is_serving(),
        "buyer is not closing"
    );
    let channel = w.buyer.channel_id().unwrap();
    let amount = w.buyer.last_voucher().unwrap().amount;
    let consent = |key: &SecretKey, domain: &Eip712Domain, over: B256| SignedCloseConsent {
        channel_id: channel,
        amount,
        signature: key.sign_digest(eip712::close_consent_digest(over, amount, domain)),
    };
    let before = w.buyer.snapshot();
    for (what, key, domain, over) in forgeries(seller_key()) {
        let c = consent(&key, &domain, over.unwrap_or(channel));
        assert_signature_error(
            what,
            w.buyer.handle_message(Message::CloseConsent(c), w.t()),
        );
        assert_eq!(w.buyer.snapshot(), before, "{what} changed the buyer");
    }
    let c = consent(&seller_key(), &our_domain(), channel);
    w.buyer
        .handle_message(Message::CloseConsent(c), w.t())
        .expect("valid consent");
    assert!(w.buyer.is_ended());
}

#[test]
fn quote_to_the_buyer() {
    let mut w = World::new(WorldConfig::default());
    // The seller's real quote, taken off the wire before the buyer sees it.
    let request = Message::decode(&w.buyer.poll_transmit().expect("quote request")).unwrap();
    w.seller.handle_message(request, w.t()).unwrap();
    while w.seller.poll_event().is_some() {} // the persist comes before the answer
    let Message::Quote(quote) = Message::decode(&w.seller.poll_transmit().unwrap()).unwrap() else {
        panic!("no quote");
    };
    let before = w.buyer.snapshot();
    let mut other_offer = quote.offer.clone();
    other_offer.nonce += 1;
    for (what, key, domain, offer) in [
        ("wrong key", mallory(), our_domain(), &quote.offer),
        ("another offer", seller_key(), our_domain(), &other_offer),
        ("wrong chain", seller_key(), other_chain(), &quote.offer),
    ] {
        let q = Quote {
            offer: quote.offer.clone(),
            signature: key.sign_digest(eip712::offer_digest(offer, &domain)),
        };
        assert_signature_error(what, w.buyer.handle_message(Message::Quote(q), w.t()));
        assert_eq!(w.buyer.snapshot(), before, "{what} changed the buyer");
    }
    w.buyer
        .handle_message(Message::Quote(quote), w.t())
        .expect("valid quote");
    assert!(w.buyer.snapshot().is_some());
}

#[test]
fn close_consent_outside_a_close_is_a_replay_and_a_forged_one_is_refused_as_such() {
    let mut w = serving();
    let channel = w.buyer.channel_id().unwrap();
    let amount = w.buyer.last_voucher().unwrap().amount;
    let consent = |key: &SecretKey| SignedCloseConsent {
        channel_id: channel,
        amount,
        signature: key.sign_digest(eip712::close_consent_digest(channel, amount, &our_domain())),
    };
    let before = w.buyer.snapshot();
    assert_signature_error(
        "a forged consent while serving",
        w.buyer
            .handle_message(Message::CloseConsent(consent(&mallory())), w.t()),
    );
    let r = w
        .buyer
        .handle_message(Message::CloseConsent(consent(&seller_key())), w.t());
    assert!(
        matches!(r, Err(SessionError::Replayed { .. })),
        "a genuine consent nobody asked for: {r:?}"
    );
    assert_eq!(w.buyer.snapshot(), before, "the consent changed the buyer");
    assert!(w.buyer.is_serving());
}
