//! Shared helpers for the lab tests: skip rule, internet-side servers, SOCKS5 clients.
#![allow(dead_code)]

pub mod targets;

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};
use wayfare_tunnel::lab::{self, INTERNET_IP, Lab};

pub const HTTP_PORT: u16 = 8080;
pub const DNS_PORT: u16 = 5353;
pub const BANNER_PORT: u16 = 2525;
pub const BANNER: &[u8] = b"220 internet ready\r\n";

/// A server-first protocol: greets, then closes.
pub async fn banner_server(l: TcpListener) {
    loop {
        let (mut s, _) = l.accept().await.expect("accept");
        tokio::spawn(async move {
            let _ = s.write_all(BANNER).await;
            let _ = s.shutdown().await;
        });
    }
}
pub const ANSWER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// The lab, or `None` (with a one-line reason) when it cannot run here. With
/// `WAYFARE_REQUIRE_NETNS=1` a missing lab is a failure.
pub fn lab_or_skip(test: &str) -> Option<Lab> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "wayfare_tunnel=warn".into()),
        )
        .with_test_writer()
        .try_init();
    let require = std::env::var("WAYFARE_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    if let Some(reason) = lab::unavailable_reason() {
        assert!(!require, "{test}: WAYFARE_REQUIRE_NETNS=1 but {reason}");
        eprintln!("skipping {test}: {reason}");
        return None;
    }
    Some(Lab::new().expect("create namespace lab"))
}

/// Start the internet-side servers on `rt` and wait until they listen.
pub fn start_internet_servers(rt: &wayfare_tunnel::lab::NsRuntime) {
    let (l, u) = rt.block_on(async {
        let l = TcpListener::bind((INTERNET_IP, HTTP_PORT))
            .await
            .expect("bind http");
        let u = UdpSocket::bind((INTERNET_IP, DNS_PORT))
            .await
            .expect("bind dns");
        (l, u)
    });
    let banner = rt
        .block_on(async { TcpListener::bind((INTERNET_IP, BANNER_PORT)).await })
        .expect("bind banner");
    rt.spawn(banner_server(banner));
    rt.spawn(http_server(l));
    rt.spawn(dns_server(u));
}

/// Tiny HTTP server: `GET /bytes/N` sends N bytes; `GET /stream` sends forever.
pub async fn http_server(l: TcpListener) {
    loop {
        let (mut s, _) = l.accept().await.expect("accept");
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
            let chunk = vec![0x5au8; 64 * 1024];
            if let Some(n) = path.strip_prefix("/bytes/") {
                let mut left: usize = n.parse().expect("size");
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {left}\r\nConnection: close\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while left > 0 {
                    let k = left.min(chunk.len());
                    if s.write_all(&chunk[..k]).await.is_err() {
                        return;
                    }
                    left -= k;
                }
                let _ = s.shutdown().await;
            } else {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                loop {
                    if s.write_all(&chunk[..16 * 1024]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
    }
}

/// Answers every A query with `ANSWER_IP`.
pub async fn dns_server(sock: UdpSocket) {
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await.expect("recv");
        if n < 12 {
            continue;
        }
        let mut resp = buf[..n].to_vec();
        resp[2] = 0x81;
        resp[3] = 0x80;
        resp[6] = 0;
        resp[7] = 1; // ANCOUNT
        resp.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        resp.extend_from_slice(&ANSWER_IP.octets());
        let _ = sock.send_to(&resp, from).await;
    }
}

pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn socks_addr(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut v = vec![1];
    v.extend_from_slice(&ip.octets());
    v.extend_from_slice(&port.to_be_bytes());
    v
}

/// SOCKS5 request; returns the stream and the reply code and bound address.
pub async fn socks_request(
    proxy: SocketAddr,
    cmd: u8,
    ip: Ipv4Addr,
    port: u16,
) -> std::io::Result<(TcpStream, u8, SocketAddr)> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(&[5, 1, 0]).await?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await?;
    assert_eq!(r, [5, 0], "method selection");
    let mut req = vec![5, cmd, 0];
    req.extend_from_slice(&socks_addr(ip, port));
    s.write_all(&req).await?;
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await?;
    let bound = SocketAddr::from((
        Ipv4Addr::new(rep[4], rep[5], rep[6], rep[7]),
        u16::from_be_bytes([rep[8], rep[9]]),
    ));
    Ok((s, rep[1], bound))
}

/// CONNECT through SOCKS5 and send `GET path`.
pub async fn http_get_via(proxy: SocketAddr, path: &str) -> std::io::Result<TcpStream> {
    let (mut s, code, _) = socks_request(proxy, 1, INTERNET_IP, HTTP_PORT).await?;
    if code != 0 {
        return Err(std::io::Error::other(format!("SOCKS reply {code}")));
    }
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    Ok(s)
}

/// Read until EOF or error; returns the byte count.
pub async fn drain(s: &mut TcpStream) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

/// One DNS query over SOCKS5 UDP ASSOCIATE; returns the answer's A record.
pub async fn dns_via_socks(proxy: SocketAddr) -> std::io::Result<Ipv4Addr> {
    let (_control, code, bound) = socks_request(proxy, 3, Ipv4Addr::UNSPECIFIED, 0).await?;
    if code != 0 {
        return Err(std::io::Error::other(format!("SOCKS reply {code}")));
    }
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let mut pkt = vec![0, 0, 0];
    pkt.extend_from_slice(&socks_addr(INTERNET_IP, DNS_PORT));
    pkt.extend_from_slice(&dns_query(0x1234, "exit.wayfare.test"));
    let mut buf = [0u8; 1024];
    for _ in 0..5 {
        udp.send_to(&pkt, bound).await?;
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(1), udp.recv(&mut buf)).await {
            let n = r?;
            // SOCKS UDP header (10 bytes for IPv4) then the DNS answer; last 4 bytes = A.
            assert_eq!(&buf[..3], &[0, 0, 0]);
            assert_eq!(&buf[10..12], &[0x12, 0x34], "DNS id");
            return Ok(Ipv4Addr::new(
                buf[n - 4],
                buf[n - 3],
                buf[n - 2],
                buf[n - 1],
            ));
        }
    }
    Err(std::io::Error::other("no DNS answer"))
}

/// Poll until `f` is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
