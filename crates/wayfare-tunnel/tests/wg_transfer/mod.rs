//! A large transfer both ways through one WireGuard session, with the seller's and buyer's
//! meters checked against the bytes moved; shared by the offload and the fallback test.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use wayfare_tunnel::{
    ExitPolicy,
    lab::{INTERNET_IP, SELLER_IP},
    wireguard::{WgBuyer, WgBuyerConfig, WgClientConfig, WgSeller, WgSellerConfig},
};

const WG_PORT: u16 = 51820;
const SINK_PORT: u16 = 9099;

fn within_1pct(a: u64, b: u64) -> bool {
    let (hi, lo) = (a.max(b), a.min(b));
    (hi - lo) as f64 <= hi as f64 * 0.01
}

/// Accept connections and read them to the end.
async fn sink(l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
}

/// Download `down` and upload `up` bytes through one session; both meters must count at
/// least the payload and agree within 1 %.
pub fn transfer_and_check_meters(test: &str, down: u64, up: u64) {
    let Some(lab) = lab_or_skip(test) else {
        return;
    };
    let inet = lab.internet.runtime(1).expect("internet rt");
    start_internet_servers(&inet);
    inet.block_on(async {
        let l = TcpListener::bind((INTERNET_IP, SINK_PORT))
            .await
            .expect("bind sink");
        tokio::spawn(sink(l));
    });
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    let seller = seller_rt
        .block_on(async {
            let mut cfg = WgSellerConfig::new(WG_PORT, SocketAddr::from((SELLER_IP, WG_PORT)));
            cfg.exit_policy = ExitPolicy::with_allowed(["198.18.0.0/15".parse().expect("cidr")]);
            WgSeller::start(cfg).await.map(Arc::new)
        })
        .expect("seller starts");
    let sl = seller.clone();
    let client = seller_rt
        .block_on(async move { sl.add_session_generated("s-big").await })
        .expect("session");
    let client = WgClientConfig::from_wg_quick(&client.to_wg_quick()).expect("wg-quick");
    let buyer = buyer_rt
        .block_on(async move {
            let mut cfg = WgBuyerConfig::new(client);
            cfg.kill_switch = false;
            cfg.resolv_conf = None;
            WgBuyer::connect(cfg).await
        })
        .expect("buyer connects");

    let t = Instant::now();
    let got = buyer_rt.block_on(async move {
        let mut s = TcpStream::connect((INTERNET_IP, HTTP_PORT))
            .await
            .expect("connect http");
        let req = format!("GET /bytes/{down} HTTP/1.1\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("request");
        drain(&mut s).await as u64
    });
    assert!(got > down, "downloaded {got} of {down} bytes (+ header)");
    let sent = buyer_rt.block_on(async move {
        let mut s = TcpStream::connect((INTERNET_IP, SINK_PORT))
            .await
            .expect("connect sink");
        let chunk = vec![0xa5u8; 256 * 1024];
        let mut left = up;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..k]).await.expect("upload");
            left -= k as u64;
        }
        s.shutdown().await.expect("shutdown");
        let mut b = [0u8; 1];
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await;
        up
    });
    eprintln!("{test}: {got} down, {sent} up in {:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    let s = seller.meter("s-big").expect("seller meter").snapshot();
    let b = buyer.meter().snapshot();
    eprintln!("{test}: meters seller {s:?} buyer {b:?}");
    assert!(
        b.down >= down && s.down >= down,
        "down counted: {s:?} {b:?}"
    );
    assert!(b.up >= up && s.up >= up, "up counted: {s:?} {b:?}");
    // Inner IP bytes: payload plus headers and ACKs, a few percent above the payload.
    let total = down + up;
    assert!(b.down + b.up < total + total / 10, "overcounted: {b:?}");
    assert!(
        within_1pct(s.down, b.down),
        "down: seller {s:?} buyer {b:?}"
    );
    assert!(within_1pct(s.up, b.up), "up: seller {s:?} buyer {b:?}");
    drop(buyer);
}
