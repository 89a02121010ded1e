//! Sellers at home (`cargo test nat_`): a seller daemon behind a NAT router (nft masquerade)
//! with Debian's miniupnpd answering UPnP-IGD on its LAN, no `public_host`, no manual port
//! forward; the buyer reaches it only through the ports it mapped.

mod lab;

use std::{path::Path, time::Duration};

use alloy_primitives::U256;
use lab::{DEPOSIT, MIB, WAYFARE, lab_available, spec};
use wayfare_node::{config::ServiceName, labnet::LabNet};
use wayfare_p2p::{MemoryRegistry, Multiaddr, PeerId};
use wayfare_proto::messages::{Message, QuoteRequest, RefusalReason};
use wayfare_proto::types::Service;
use wayfare_tunnel::lab::ROUTER_WAN_IP;

/// (a) Behind the miniupnpd router: the seller maps its WireGuard and shadowsocks ports (they
/// show in miniupnpd's nft chain), reports itself reachable through the mapping, a buyer's
/// WireGuard and shadowsocks sessions reach the internet through it and are paid, and the
/// mappings are gone once the seller stops.
#[test]
fn nat_upnp_router_maps_the_ports_and_sessions_are_paid() {
    if !lab_available("nat_upnp_router_maps_the_ports_and_sessions_are_paid") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("wayfare-nat")
        .tempdir()
        .unwrap();
    let mut net = LabNet::start(Path::new(WAYFARE), tmp.path(), true, 1, 60, &mut |m| {
        eprintln!("· {m}")
    })
    .expect("start the lab network");
    net.add_home().expect("the home router");
    let mut s = spec(vec![ServiceName::Wireguard, ServiceName::Shadowsocks]);
    s.at_home = true;
    let mut seller = net.start_seller(&s).expect("start the seller at home");
    let logs =
        |d: &wayfare_node::labnet::Daemon| std::fs::read_to_string(&d.log).unwrap_or_default();

    let home = net.lab().unwrap().home.as_ref().unwrap();
    let mapped = home.mappings();
    let wg_port = 51820 + s.index as u16;
    let ss_port = seller.service_port;
    for port in [wg_port, ss_port] {
        assert!(
            mapped.contains(&format!("dport {port} "))
                || mapped.contains(&format!("dport {port}\n")),
            "miniupnpd maps port {port}:\n{mapped}\n{}",
            logs(&seller)
        );
    }
    let status = net.cli_json(&seller, &["seller", "status"]).unwrap();
    let reach = status["reachability"].as_str().unwrap_or("");
    assert!(
        reach.contains("mapped by UPnP") && reach.contains(&ROUTER_WAN_IP.to_string()),
        "{reach}"
    );

    let buyer = net
        .start_buyer(U256::from(DEPOSIT))
        .expect("start the buyer");
    net.wait_for("the home seller's offer", Duration::from_secs(60), || {
        net.cli_json(&buyer, &["offers"])
            .ok()
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    })
    .expect("offer");
    for service in ["wireguard", "shadowsocks"] {
        let c = net
            .cli_json(&buyer, &["connect", "--service", service])
            .unwrap_or_else(|e| {
                panic!(
                    "connect {service}: {e}\n{}\n{}",
                    logs(&seller),
                    logs(&buyer)
                )
            });
        let socks = (service == "shadowsocks").then(|| {
            c["socks"]
                .as_str()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
                .expect("SOCKS5 port")
        });
        let got = net
            .download(socks, 2 * MIB)
            .unwrap_or_else(|e| panic!("{service} download: {e}\n{}", logs(&seller)));
        assert_eq!(got, 2 * MIB);
        // A voucher for the download while the session serves (the close would pay it too:
        // `k_the_final_voucher_pays_for_the_last_bytes`), so the channel shows it paid.
        net.wait_for(
            "a voucher for the download",
            Duration::from_secs(20),
            || {
                let st = net.cli_json(&buyer, &["status"]).ok()?;
                st["sessions"]
                    .as_array()?
                    .iter()
                    .any(|s| {
                        s["role"] == "buyer"
                            && s["live"] == true
                            && s["paid_wei"]
                                .as_str()
                                .and_then(|p| p.parse::<u128>().ok())
                                .unwrap_or(0)
                                >= 2 * lab::X
                    })
                    .then_some(())
            },
        )
        .expect("paid");
        net.cli(&buyer, &["disconnect", "--close"])
            .expect("disconnect");
        net.wait_for("the session to end", Duration::from_secs(30), || {
            let st = net.cli_json(&buyer, &["status"]).ok()?;
            st["sessions"]
                .as_array()?
                .iter()
                .all(|s| s["role"] != "buyer" || s["phase"] == "ended")
                .then_some(())
        })
        .expect("ended");
    }
    // The buyer's "tunnel up" lines name the endpoint each reveal gave (the log is coloured).
    let plain: String = {
        let raw = logs(&buyer);
        let mut out = String::with_capacity(raw.len());
        let mut esc = false;
        for ch in raw.chars() {
            match (esc, ch) {
                (false, '\x1b') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    let ups = plain.lines().filter(|l| l.contains("tunnel up")).count();
    let mapped_ups = plain
        .lines()
        .filter(|l| l.contains("tunnel up") && l.contains(&format!("endpoint={ROUTER_WAN_IP}:")))
        .count();
    assert!(
        ups >= 2 && mapped_ups == ups,
        "every reveal named the mapped address ({mapped_ups} of {ups})"
    );
    // Both channels were paid what the seller metered.
    net.wait_for("both channels paid", Duration::from_secs(60), || {
        let chans = net.cli_json(&seller, &["channels"]).ok()?;
        let paid = chans
            .as_array()?
            .iter()
            .filter(|c| c["voucher_wei"].as_str().is_some_and(|v| v != "0"))
            .count();
        (paid == 2).then_some(())
    })
    .unwrap_or_else(|e| {
        let _ = std::fs::write("/tmp/nat-seller.log", logs(&seller));
        let _ = std::fs::write("/tmp/nat-buyer.log", logs(&buyer));
        panic!(
            "{e}: {}",
            net.cli_json(&seller, &["channels"])
                .map(|v| v.to_string())
                .unwrap_or_default()
        )
    });

    seller.stop(Duration::from_secs(20));
    let after = home.mappings();
    for port in [wg_port, ss_port] {
        assert!(
            !after.contains(&format!("dport {port}")),
            "mapping of {port} still there after the seller stopped:\n{after}"
        );
    }
}

/// (c) Behind a router with no mapping service and per-destination (symmetric) mapping, with
/// no `public_host`: the seller runs, says it is unreachable and what to forward, announces
/// nothing, and no buyer opens a channel to it; a reachable seller on the same network is
/// announced and seen (the control). Asked directly through its relay circuit, as by a buyer
/// holding an old announcement, the home seller refuses the quote; the reachable one quotes.
#[test]
fn nat_symmetric_router_seller_says_unreachable_and_no_buyer_pays() {
    if !lab_available("nat_symmetric_router_seller_says_unreachable_and_no_buyer_pays") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("wayfare-nat")
        .tempdir()
        .unwrap();
    let mut net = LabNet::start(Path::new(WAYFARE), tmp.path(), true, 2, 60, &mut |m| {
        eprintln!("· {m}")
    })
    .expect("start the lab network");
    net.add_home_with(wayfare_tunnel::lab::HomeRouter::Symmetric)
        .expect("the home router");
    let mut home = spec(vec![ServiceName::Wireguard, ServiceName::Shadowsocks]);
    home.at_home = true;
    let at_home = net.start_seller(&home).expect("the seller at home starts");
    let mut public = spec(vec![ServiceName::Shadowsocks]);
    public.index = 2;
    let reachable = net.start_seller(&public).expect("the public seller");
    let logs =
        |d: &wayfare_node::labnet::Daemon| std::fs::read_to_string(&d.log).unwrap_or_default();

    let status = net.cli_json(&at_home, &["seller", "status"]).unwrap();
    assert_eq!(status["reachable"], false, "{status}");
    let reach = status["reachability"].as_str().unwrap_or("");
    let wg_port = 51820 + home.index as u16;
    for must in [
        "unreachable",
        "no UPnP gateway answered",
        &format!("UDP {wg_port}"),
        "public_host",
    ] {
        assert!(reach.contains(must), "{reach:?} lacks {must:?}");
    }
    let text = net.cli(&at_home, &["seller", "status"]).unwrap();
    assert!(text.contains("unreachable: "), "{text}");
    let control = net.cli_json(&reachable, &["seller", "status"]).unwrap();
    assert_eq!(control["reachable"], true, "{control}");

    let buyer = net
        .start_buyer(U256::from(DEPOSIT))
        .expect("start the buyer");
    let home_account = net.info.sellers[0].account.address.to_string();
    let public_account = net.info.sellers[1].account.address.to_string();
    net.wait_for("the public seller's offer", Duration::from_secs(60), || {
        net.cli_json(&buyer, &["offers"]).ok().filter(|v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|o| o["seller"] == public_account.as_str()))
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&reachable)));
    // Several announcement rounds of the other seller later, still nothing from the home one.
    std::thread::sleep(Duration::from_secs(4));
    let offers = net.cli_json(&buyer, &["offers"]).unwrap();
    assert!(
        offers
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["seller"] != home_account.as_str()),
        "the unreachable seller announced itself: {offers}"
    );
    let e = net
        .cli(&buyer, &["connect", "--seller", &home_account])
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no live offer"), "{e}");
    let opened = net
        .chain(|c| async move {
            let head = c.head().await?.0;
            Ok(c.events_between(0, head)
                .await?
                .into_iter()
                .filter(|l| {
                    matches!(
                        &l.event,
                        wayfare_chain::bindings::WayfareMarket::WayfareMarketEvents::ChannelOpened(
                            _
                        )
                    )
                })
                .count())
        })
        .unwrap();
    assert_eq!(opened, 0, "a channel was opened");
    assert!(
        logs(&at_home).contains("so it announces nothing"),
        "the seller's log does not say it is unreachable"
    );

    // A buyer holding an old announcement (or the seller's peer id) asks it directly, through
    // its relay circuit: the seller refuses the quote, so no channel can be opened to it.
    let relay: Multiaddr = net.relay_addr().parse().expect("relay multiaddr");
    let rt = net.attacker_runtime(2).expect("a stranger's host");
    let domain = wayfare_proto::eip712::domain(net.info.chain_id, net.info.market);
    let (stranger, _) =
        lab::attacker::stranger_at_relay(&rt, domain, relay.clone(), MemoryRegistry::new());
    let quote = Message::QuoteRequest(QuoteRequest {
        buyer: alloy_primitives::Address::repeat_byte(0x42),
        service: Service::Shadowsocks,
        wanted: None,
        buyer_key: [9; 32],
        wireguard_key: None,
    });
    let ask = |d: &wayfare_node::labnet::Daemon| {
        let peer: PeerId = d.peer_id.parse().expect("peer id");
        let circuit: Multiaddr = format!("{relay}/p2p-circuit/p2p/{peer}")
            .parse()
            .expect("circuit multiaddr");
        net.wait_for(
            "a seller's answer through its circuit",
            Duration::from_secs(30),
            || {
                let (node, circuit, quote) = (stranger.clone(), circuit.clone(), quote.clone());
                rt.block_on(async move {
                    node.dial(circuit).await.ok()?;
                    node.request(peer, &quote).await.ok().flatten()
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(d)))
    };
    // The control: the same question to the reachable seller is answered with a quote.
    let control = ask(&reachable);
    assert!(matches!(control, Message::Quote(_)), "{control:?}");
    let answer = ask(&at_home);
    match answer {
        Message::Refusal(r) => {
            assert_eq!(r.reason, RefusalReason::Unavailable, "{r:?}");
            assert!(r.detail.contains("can't be reached"), "{r:?}");
        }
        other => panic!("the unreachable seller answered a quote request with {other:?}"),
    }
}
