//! Sellers at home (`cargo test nat_`): a seller daemon behind a NAT router (nft masquerade)
//! with Debian's miniupnpd answering UPnP-IGD on its LAN, no `public_host`, no manual port
//! forward; the buyer reaches it only through the ports it mapped.

mod lab;

use std::{path::Path, time::Duration};

use alloy_primitives::U256;
use lab::{DEPOSIT, MIB, WAYFARE, lab_available, spec};
use wayfare_node::{config::ServiceName, labnet::LabNet};
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
        // A voucher for the download before leaving (the last interval's bytes are paid by the
        // next voucher, not by the close: see the note in node_e2e).
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
