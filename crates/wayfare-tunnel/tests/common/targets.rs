//! Real services behind the addresses an exit must refuse: a TCP banner and a UDP echo on
//! the seller's loopback, LAN and public addresses, on 169.254.169.254 (an interface of its own in
//! the seller namespace) and on a NAT64-mapped private address (64:ff9b::a00:1, routed to
//! the internet namespace), plus an allowed control on the internet host.
#![allow(dead_code)]

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};
use wayfare_tunnel::lab::{INTERNET_IP, Lab, NsRuntime, SELLER_IP, SELLER_UPLINK_IP};

pub const TARGET_PORT: u16 = 2600;
pub const TARGET_BANNER: &[u8] = b"seller-side service\r\n";
/// A private LAN address of the seller (on a dummy interface; the buyer has no route to it
/// except through the tunnel).
pub const SELLER_LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// 64:ff9b::10.0.0.1, on the internet host, reachable from the seller over IPv6.
pub const NAT64_PRIVATE: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0x0a00, 0x0001);

/// A denied address with a live service, and what it stands for.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub ip: IpAddr,
    pub what: &'static str,
}

fn ip_ok(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dev_with(ns: &str, addr: Ipv4Addr) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "-4", "addr", "show"])
        .output()
        .expect("ip addr");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let needle = format!("inet {addr}/");
    text.lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("device with address")
        .to_owned()
}

async fn banner(l: TcpListener) {
    while let Ok((mut s, _)) = l.accept().await {
        tokio::spawn(async move {
            let _ = s.write_all(TARGET_BANNER).await;
            let _ = s.shutdown().await;
        });
    }
}

async fn echo(u: UdpSocket) {
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = u.recv_from(&mut buf).await {
        let _ = u.send_to(&buf[..n], from).await;
    }
}

fn serve(rt: &NsRuntime, ip: IpAddr) {
    let (l, u) = rt.block_on(async move {
        let sa = SocketAddr::new(ip, TARGET_PORT);
        (
            TcpListener::bind(sa).await.expect("bind target tcp"),
            UdpSocket::bind(sa).await.expect("bind target udp"),
        )
    });
    rt.spawn(banner(l));
    rt.spawn(echo(u));
}

/// Plant the addresses and services; returns the denied targets (the internet host's
/// control on INTERNET_IP:TARGET_PORT is served too).
pub fn plant(lab: &Lab, seller_rt: &NsRuntime, inet_rt: &NsRuntime) -> Vec<Target> {
    let (s, i) = (lab.seller.name(), lab.internet.name());
    let sfx = &s[s.len() - 8..];
    let (meta, lan) = (format!("wfm{sfx}"), format!("wfl{sfx}"));
    for (dev, addr) in [
        (&meta, format!("{METADATA_IP}/32")),
        (&lan, format!("{SELLER_LAN_IP}/24")),
    ] {
        // This kernel may lack the `dummy` module: a veth pair with both ends in the seller
        // namespace serves as one, the address on one end.
        let peer = format!("{dev}p");
        ip_ok(&[
            "-n", s, "link", "add", dev, "type", "veth", "peer", "name", &peer,
        ]);
        ip_ok(&["-n", s, "addr", "add", &addr, "dev", dev]);
        ip_ok(&["-n", s, "link", "set", dev, "up"]);
        ip_ok(&["-n", s, "link", "set", &peer, "up"]);
    }
    let (up, inet_dev) = (dev_with(s, SELLER_UPLINK_IP), dev_with(i, INTERNET_IP));
    ip_ok(&[
        "-n",
        s,
        "addr",
        "add",
        "2001:2:0:2::1/64",
        "dev",
        &up,
        "nodad",
    ]);
    ip_ok(&[
        "-n",
        i,
        "addr",
        "add",
        "2001:2:0:2::2/64",
        "dev",
        &inet_dev,
        "nodad",
    ]);
    ip_ok(&[
        "-n",
        i,
        "addr",
        "add",
        &format!("{NAT64_PRIVATE}/128"),
        "dev",
        &inet_dev,
        "nodad",
    ]);
    ip_ok(&[
        "-n",
        s,
        "-6",
        "route",
        "add",
        "64:ff9b::/96",
        "via",
        "2001:2:0:2::2",
    ]);
    for ip in [
        Ipv4Addr::LOCALHOST,
        SELLER_IP,
        SELLER_UPLINK_IP,
        SELLER_LAN_IP,
        METADATA_IP,
    ] {
        serve(seller_rt, ip.into());
    }
    serve(inet_rt, NAT64_PRIVATE.into());
    serve(inet_rt, INTERNET_IP.into());
    vec![
        Target {
            ip: Ipv4Addr::LOCALHOST.into(),
            what: "the seller's loopback",
        },
        Target {
            ip: SELLER_IP.into(),
            what: "the seller's address buyers dial",
        },
        Target {
            ip: SELLER_LAN_IP.into(),
            what: "the seller's LAN address",
        },
        Target {
            ip: SELLER_UPLINK_IP.into(),
            what: "the seller's public (uplink) address",
        },
        Target {
            ip: METADATA_IP.into(),
            what: "the metadata address",
        },
        Target {
            ip: NAT64_PRIVATE.into(),
            what: "a NAT64-mapped private address",
        },
    ]
}

/// Direct TCP: the banner, or `None`.
pub async fn tcp_banner(dst: SocketAddr) -> Option<Vec<u8>> {
    let go = async {
        let mut s = TcpStream::connect(dst).await.ok()?;
        let mut v = Vec::new();
        s.read_to_end(&mut v).await.ok()?;
        Some(v)
    };
    tokio::time::timeout(Duration::from_secs(2), go)
        .await
        .ok()
        .flatten()
}

/// Direct UDP: whether `dst` echoes a datagram (three tries).
pub async fn udp_echoes(dst: SocketAddr) -> bool {
    let bind: SocketAddr = if dst.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(u) = UdpSocket::bind(bind).await else {
        return false;
    };
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        if u.send_to(b"ping", dst).await.is_err() {
            return false;
        }
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(500), u.recv_from(&mut buf)).await
        {
            return &buf[..n] == b"ping";
        }
    }
    false
}

fn socks_addr(dst: SocketAddr) -> Vec<u8> {
    let mut v = Vec::new();
    match dst.ip() {
        IpAddr::V4(a) => {
            v.push(1);
            v.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            v.push(4);
            v.extend_from_slice(&a.octets());
        }
    }
    v.extend_from_slice(&dst.port().to_be_bytes());
    v
}

async fn socks(
    proxy: SocketAddr,
    cmd: u8,
    dst: SocketAddr,
) -> std::io::Result<(TcpStream, u8, SocketAddr)> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(&[5, 1, 0]).await?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await?;
    let mut req = vec![5, cmd, 0];
    req.extend_from_slice(&socks_addr(dst));
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    let bound = if head[3] == 4 {
        let mut a = [0u8; 18];
        s.read_exact(&mut a).await?;
        let ip: [u8; 16] = a[..16].try_into().expect("16");
        SocketAddr::from((Ipv6Addr::from(ip), u16::from_be_bytes([a[16], a[17]])))
    } else {
        let mut a = [0u8; 6];
        s.read_exact(&mut a).await?;
        SocketAddr::from((
            Ipv4Addr::new(a[0], a[1], a[2], a[3]),
            u16::from_be_bytes([a[4], a[5]]),
        ))
    };
    Ok((s, head[1], bound))
}

/// SOCKS5 CONNECT and read to the end: the bytes the target sent (empty when refused).
pub async fn socks_banner(proxy: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let go = async {
        let (mut s, code, _) = socks(proxy, 1, dst).await.ok()?;
        if code != 0 {
            return None;
        }
        let mut v = Vec::new();
        let _ = s.read_to_end(&mut v).await;
        Some(v)
    };
    tokio::time::timeout(Duration::from_secs(5), go)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// SOCKS5 UDP ASSOCIATE: whether `dst` echoes a datagram (three tries).
pub async fn socks_udp_echoes(proxy: SocketAddr, dst: SocketAddr) -> bool {
    let Ok((_control, 0, bound)) = socks(proxy, 3, (Ipv4Addr::UNSPECIFIED, 0).into()).await else {
        return false;
    };
    let Ok(u) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await else {
        return false;
    };
    let mut pkt = vec![0, 0, 0];
    pkt.extend_from_slice(&socks_addr(dst));
    let head = pkt.len();
    pkt.extend_from_slice(b"ping");
    let mut buf = [0u8; 256];
    for _ in 0..3 {
        if u.send_to(&pkt, bound).await.is_err() {
            return false;
        }
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(700), u.recv(&mut buf)).await
        {
            return n >= head && &buf[head..n] == b"ping";
        }
    }
    false
}

/// An address in the lab's allowed range added to the seller after its exit started: only
/// the refreshed own-address set refuses it.
pub const LATE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 1);

/// Add [`LATE_IP`] (with its services) to the seller's LAN interface planted by [`plant`] and
/// wait until the exit's refresh (every second) has surely seen it.
pub fn plant_late(lab: &Lab, seller_rt: &NsRuntime) -> Target {
    let s = lab.seller.name();
    let lan = format!("wfl{}", &s[s.len() - 8..]);
    ip_ok(&[
        "-n",
        s,
        "addr",
        "add",
        &format!("{LATE_IP}/32"),
        "dev",
        &lan,
    ]);
    serve(seller_rt, LATE_IP.into());
    std::thread::sleep(Duration::from_millis(2500));
    Target {
        ip: LATE_IP.into(),
        what: "an own address added after the exit started",
    }
}
