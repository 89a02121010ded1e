//! Hostile peers in the end-to-end lab: a real libp2p node built from `wayfare-p2p`, on a fourth
//! host linked to both the buyer and the seller, attacks a live session between real daemons on
//! a real anvil. Every attack must change nothing: the honest session stays up, is paid and
//! settled, the buyer still rates the seller 5, and each attack shows in the victims' `/metrics`.
//!
//! The replays are messages signed with the parties' own keys exactly as the parties once sent
//! them (what an attacker that captured them would hold): an old voucher, the pause of an earlier
//! run and the resume of the current one, the seller's usage report of an earlier run and its
//! consent outside a close.
//!
//! `cargo test hostile_` runs them all; they need root (the namespace lab).

mod lab;

use std::time::{Duration, Instant};

use alloy_primitives::{B256, U256};
use lab::attacker::*;
use lab::*;
use wayfare_node::{config::ServiceName, labnet::Daemon};
use wayfare_proto::messages::{CloseReason, Message, RefusalReason, SignedVoucher};

/// The buyer's live session as `wayfare status` shows it, if it is serving.
fn serving(w: &World) -> Option<serde_json::Value> {
    let st = w.net.cli_json(&w.buyer, &["status"]).ok()?;
    st["sessions"]
        .as_array()?
        .iter()
        .find(|s| s["phase"] == "connected")
        .cloned()
}

/// Ends the honest session and checks it ended as if no attacker had been there: closed on
/// chain with the deposit conserved, settled at the seller's meter within tolerance, and rated 5.
fn close_and_check_unharmed(w: &World, id: B256) {
    w.net
        .cli(&w.buyer, &["disconnect", "--close"])
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let (to_seller, to_buyer) = w.wait_closed(id, Duration::from_secs(60));
    assert_eq!(
        to_seller + to_buyer,
        U256::from(DEPOSIT),
        "deposit conserved"
    );
    let s = w.seller_session(id);
    w.assert_settled_at_meter(to_seller, u256(&s["owed_wei"]));
    let (stars, _) = w.wait_rating("the buyer's rating", |e, buyer| e.rater == buyer);
    assert_eq!(
        stars,
        5,
        "the attacks changed the buyer's rating\n{}",
        w.logs()
    );
}

fn refused(w: &World, d: &Daemon, reason: &str) -> f64 {
    w.metric(
        d,
        &format!("wayfare_messages_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// Closing, pausing, forging and replaying against a live session, from a peer that is not its
/// party: each is refused with its reason, counted, and the session goes on unharmed.
#[test]
fn hostile_peer_cannot_end_pause_or_fool_a_live_session() {
    if !lab_available("hostile_peer_cannot_end_pause_or_fool_a_live_session") {
        return;
    }
    let mut w = World::new(true, spec(vec![ServiceName::Shadowsocks]));
    // A first run, paused, then a second: the replays below are of the first run.
    let id = channel_id(&w.connect("shadowsocks"));
    w.net.download(Some(w.buyer.service_port), 4 * MIB).unwrap();
    let first_run_paid = w.wait_seller_voucher(id);
    w.net.cli(&w.buyer, &["disconnect"]).unwrap();
    w.net
        .wait_for("the session to pause", Duration::from_secs(20), || {
            let st = w.net.cli_json(&w.buyer, &["status"]).ok()?;
            st["sessions"]
                .as_array()?
                .iter()
                .any(|s| s["phase"] == "paused")
                .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(channel_id(&w.connect("shadowsocks")), id);
    w.net.download(Some(w.buyer.service_port), 4 * MIB).unwrap();
    let paid = w.wait_seller_voucher_above(id, first_run_paid, Duration::from_secs(20));

    let keys = PartyKeys::read(&w, id);
    let evil = Attacker::new(&mut w);
    let d = evil.domain.clone();
    let m = mallory();
    let (seller, buyer) = (&w.sellers[0], &w.buyer);
    let before = |reason| (refused(&w, seller, reason), refused(&w, buyer, reason));
    let (sig0, replay0) = (before("bad_signature"), before("replayed"));
    let node = evil.node();
    use RefusalReason::{BadRequest, BadSignature, Replayed};
    use To::{Buyer, Seller};

    // To the seller: end or pause a channel it does not own; replay the buyer's old messages.
    let done = close(&d, id, 1, CloseReason::BuyerDone, &m);
    evil.expect_refused(&node, "a close it signed", Seller, done, BadSignature);
    let pause = close(&d, id, 1, CloseReason::Pause, &m);
    evil.expect_refused(&node, "a pause it signed", Seller, pause, BadSignature);
    let old = voucher(&d, id, first_run_paid, &keys.voucher);
    evil.expect_refused(&node, "an old voucher", Seller, old, Replayed);
    let old_pause = close(&d, id, 0, CloseReason::Pause, &keys.voucher);
    evil.expect_refused(&node, "the first run's pause", Seller, old_pause, Replayed);
    let again = resume(&d, id, 1, &keys.voucher);
    evil.expect_refused(&node, "the current run's resume", Seller, again, Replayed);
    // To the buyer: a seller that over-metered, a cut, a consent — forged or replayed.
    let huge = usage(&d, id, 1, 10 << 30, &m);
    evil.expect_refused(&node, "a forged usage report", Buyer, huge, BadSignature);
    let old_usage = usage(&d, id, 0, 10 << 30, &keys.seller);
    evil.expect_refused(&node, "the first run's usage", Buyer, old_usage, Replayed);
    let cut = close(&d, id, 1, CloseReason::PaymentProblem, &m);
    evil.expect_refused(&node, "a forged cut", Buyer, cut, BadSignature);
    let forged = consent(&d, id, paid, &m);
    evil.expect_refused(&node, "a forged consent", Buyer, forged, BadSignature);
    let unasked = consent(&d, id, first_run_paid, &keys.seller);
    evil.expect_refused(&node, "a consent outside a close", Buyer, unasked, Replayed);
    // Malformed bytes, from an identity of their own (the p2p layer strikes the sender).
    let junk = evil.node();
    for (to, bytes) in [
        (Seller, vec![0xff; 64]),
        (Buyer, vec![0x02, 0x01]),
        (
            Seller,
            Message::Voucher(SignedVoucher {
                channel_id: id,
                amount: U256::MAX,
                signature: [0; 65],
            })
            .encode()[..40]
                .to_vec(),
        ),
    ] {
        match evil.send(&junk, to, bytes) {
            Ok(Some(Message::Refusal(r))) if r.reason == BadRequest => {}
            other => panic!("malformed bytes to the {to:?}: expected BadRequest, got {other:?}"),
        }
    }

    // Each attack is counted where it landed.
    let (sig1, replay1) = (before("bad_signature"), before("replayed"));
    assert!(
        sig1.0 - sig0.0 >= 2.0,
        "seller bad_signature {sig0:?} -> {sig1:?}"
    );
    assert!(
        replay1.0 - replay0.0 >= 3.0,
        "seller replayed {replay0:?} -> {replay1:?}"
    );
    assert!(
        sig1.1 - sig0.1 >= 3.0,
        "buyer bad_signature {sig0:?} -> {sig1:?}"
    );
    assert!(
        replay1.1 - replay0.1 >= 2.0,
        "buyer replayed {replay0:?} -> {replay1:?}"
    );
    let malformed = "wayfare_p2p_requests_refused_total{reason=\"malformed\"}";
    assert!(w.metric(seller, malformed) >= 2.0, "{}", w.metrics(seller));
    assert!(w.metric(buyer, malformed) >= 1.0, "{}", w.metrics(buyer));

    // A restarted seller keeps the session bound to its buyer: the stranger's `Opened` (taken
    // only from the session's own peer) is still not its to send, and the buyer goes on.
    let mut w = w;
    w.net
        .restart(&mut w.sellers[0])
        .unwrap_or_else(|e| panic!("restart the seller: {e}"));
    let opened = Message::Opened(wayfare_proto::messages::Opened {
        channel_id: id,
        tx_hash: B256::repeat_byte(1),
    });
    // The restarted process counts afresh: `not_your_session`, not `unknown_session` (the wire
    // reason is the same for both), shows the session came back bound to its buyer.
    let retry = Instant::now();
    loop {
        let reply = evil.send(&node, Seller, opened.encode());
        let seller = &w.sellers[0];
        if refused(&w, seller, "not_your_session") >= 1.0 {
            assert_eq!(refused(&w, seller, "unknown_session"), 0.0, "{reply:?}");
            break;
        }
        assert!(
            retry.elapsed() < Duration::from_secs(20),
            "after a restart the stranger's Opened got {reply:?}\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Nothing changed: still serving, still carrying traffic, still paid, then settled.
    let live = serving(&w).unwrap_or_else(|| panic!("the session stopped serving\n{}", w.logs()));
    assert_eq!(channel_id(&live), id);
    w.net.download(Some(w.buyer.service_port), 4 * MIB).unwrap();
    w.wait_seller_voucher_above(id, paid, Duration::from_secs(20));
    close_and_check_unharmed(&w, id);
}

/// Quote requests flooded from 50 peer ids for 60 s while a buyer pays: the seller refuses what
/// is over its caps, the buyer's vouchers keep being taken within their grace, and the session
/// ends as if nothing happened.
#[test]
fn hostile_quote_flood_does_not_starve_a_paying_buyer() {
    if !lab_available("hostile_quote_flood_does_not_starve_a_paying_buyer") {
        return;
    }
    let mut w = World::new(true, spec(vec![ServiceName::Shadowsocks]));
    let id = channel_id(&w.connect("shadowsocks"));
    w.net.download(Some(w.buyer.service_port), MIB).unwrap();
    let mut paid = w.wait_seller_voucher(id);
    let evil = Attacker::new(&mut w);
    let flood = Duration::from_secs(60);
    let running = evil.flood_quotes(50, flood);

    // Meanwhile the honest buyer downloads and pays; its session must never stop serving.
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < flood {
        assert!(
            serving(&w).is_some(),
            "the session stopped serving during the flood ({:?} in)\n{}",
            start.elapsed(),
            w.logs()
        );
        w.net
            .download(Some(w.buyer.service_port), MIB)
            .unwrap_or_else(|e| panic!("download during the flood: {e}\n{}", w.logs()));
        // The buyer pays every 2 s, the seller allows 1 s + 4 s of grace: a voucher within 6 s.
        paid = w.wait_seller_voucher_above(id, paid, Duration::from_secs(6));
        rounds += 1;
    }
    let FloodTally {
        quotes,
        refusals,
        failures,
    } = running.wait(&evil.rt);
    eprintln!(
        "flood: {quotes} quotes, {refusals} refusals, {failures} failed requests; honest rounds {rounds}"
    );
    assert!(
        quotes + refusals > 1000,
        "the flood hardly ran: {quotes} + {refusals}"
    );
    let seller = &w.sellers[0];
    let too_many = refused(&w, seller, "too_many_pending");
    assert!(
        too_many > 0.0,
        "no quote was refused over the caps\n{}",
        w.metrics(seller)
    );
    // 4 waiting quotes per peer; a quote waits for its channel until the offer expires (5 min),
    // so none made room during the minute.
    assert!(
        quotes <= 50 * 4,
        "the seller kept quoting past its per-peer cap: {quotes}"
    );
    close_and_check_unharmed(&w, id);
}

/// What a stranger joining at the relay collects about the seller — identify, the DHT, gossiped
/// announcements, its connections, and the answer to a quote — in Debug form, with that answer.
fn observe(w: &mut World) -> (String, Result<Option<Message>, wayfare_p2p::P2pError>) {
    let evil = Attacker::new(w);
    let relay = w.net.relay_addr().parse().expect("relay multiaddr");
    let (node, heard) = evil.observer(w, relay);
    let seller = evil.seller.0;
    let heard_offer = || {
        heard
            .all()
            .iter()
            .any(|e| e.starts_with("Announcement") && e.contains(&format!("{seller}")))
    };
    w.net
        .wait_for(
            "the seller's announcement at the observer",
            Duration::from_secs(60),
            || heard_offer().then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{:#?}", heard.all()));
    let quote = Message::QuoteRequest(wayfare_proto::messages::QuoteRequest {
        buyer: alloy_primitives::Address::repeat_byte(0x42),
        service: wayfare_proto::types::Service::Shadowsocks,
        wanted: None,
        buyer_key: [9; 32],
        wireguard_key: None,
    });
    let (answer, closest, kad, circuits, conns) = evil.rt.block_on(async move {
        let answer = node.request(seller, &quote).await;
        (
            answer,
            node.closest_peers(seller).await.unwrap_or_default(),
            node.kad_addresses().await.unwrap_or_default(),
            node.find_circuit_addrs(seller).await.unwrap_or_default(),
            node.connection_addrs(seller).await.unwrap_or_default(),
        )
    });
    let everything = format!(
        "answer {answer:?}\nclosest {closest:?}\nkad {kad:?}\ncircuits {circuits:?}\nconnections {conns:?}\nevents {:#?}",
        heard.all()
    );
    (everything, answer)
}

/// The seller host's addresses, as `/ip4/…/` prefixes in what an observer collected.
fn seller_addresses_in(everything: &str) -> Vec<std::net::Ipv4Addr> {
    [
        wayfare_tunnel::lab::SELLER_IP,
        wayfare_tunnel::lab::SELLER_UPLINK_IP,
        wayfare_tunnel::lab::SELLER_FROM_ATTACKER_IP,
        std::net::Ipv4Addr::new(198, 18, 5, 1), // its link to the relay
    ]
    .into_iter()
    .filter(|ip| everything.contains(&format!("/ip4/{ip}/")))
    .collect()
}

/// A stranger that collects everything the network tells it — identify, the DHT, gossiped
/// announcements, a quote — learns no address of the seller's host: the seller advertises only
/// through the relay (its default). Only a buyer that opened a channel gets the endpoint, in the
/// sealed reveal. The control: the same seller restarted with `advertise = "direct"` is found
/// by the same observation, so the observation can see an address when one is published.
#[test]
fn leak_observer_learns_no_seller_address_before_paying() {
    if !lab_available("leak_observer_learns_no_seller_address_before_paying") {
        return;
    }
    let mut w = World::new(true, spec(vec![ServiceName::Shadowsocks]));
    let st = w.net.cli_json(&w.sellers[0], &["status"]).unwrap();
    assert_eq!(st["advertise"], "relay", "the seller's default: {st}");
    let st = w.net.cli_json(&w.buyer, &["status"]).unwrap();
    let relay_ip = wayfare_tunnel::lab::RELAY_IP.to_string();
    assert!(
        st["outside_tunnel"]
            .as_array()
            .is_some_and(|a| a.iter().any(|h| h == relay_ip.as_str())),
        "the buyer's status names the relay among the hosts outside the tunnel: {st}"
    );
    let (everything, answer) = observe(&mut w);
    assert!(
        matches!(answer, Ok(Some(Message::Quote(_)))),
        "no quote through the relay: {answer:?}"
    );
    assert!(
        everything.contains("/p2p-circuit"),
        "the observer did not reach the seller through the relay:\n{everything}"
    );
    let found = seller_addresses_in(&everything);
    assert!(
        found.is_empty(),
        "the observer learned the seller's addresses {found:?}:\n{everything}"
    );
    // A buyer that pays learns the endpoint, from the reveal.
    let session = w.connect("shadowsocks");
    assert_eq!(session["live"], true, "{session}");
    let log = std::fs::read_to_string(&w.buyer.log).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("tunnel up")
                && l.contains(&wayfare_tunnel::lab::SELLER_IP.to_string())),
        "the buyer's tunnel did not come up at the revealed endpoint\n{}",
        w.logs()
    );

    // Control: advertising directly publishes the host's addresses to the same observer.
    w.net.cli(&w.buyer, &["disconnect", "--close"]).unwrap();
    let mut seller = w.sellers.pop().unwrap();
    let text = std::fs::read_to_string(&seller.config).unwrap();
    let direct = text.replacen("[p2p]\n", "[p2p]\nadvertise = \"direct\"\n", 1);
    assert_ne!(direct, text, "no [p2p] section in the seller's config");
    std::fs::write(&seller.config, direct).unwrap();
    seller.stop(Duration::from_secs(20));
    w.net
        .restart(&mut seller)
        .expect("restart the seller advertising directly");
    w.sellers.push(seller);
    let st = w.net.cli_json(&w.sellers[0], &["status"]).unwrap();
    assert_eq!(st["advertise"], "direct", "{st}");
    let (everything, _) = observe(&mut w);
    assert!(
        !seller_addresses_in(&everything).is_empty(),
        "the control observer found no address of a seller advertising directly:\n{everything}"
    );
}
