//! `wayfare proxy serve` and `wayfare proxy connect` on loopback: a SOCKS5 client reaches an
//! echo server through both, the seller's meters count the bytes, the exit policy refuses
//! loopback unless allowed, and a bad URI is one clear line.

mod common;

use common::Running;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const WAYFARE: &str = env!("CARGO_BIN_EXE_wayfare");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SOCKS5 CONNECT to `target` through `socks`; returns the stream or the reply code.
fn socks_connect(socks: u16, target: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, socks))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&[5, 1, 0])?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r)?;
    assert_eq!(r, [5, 0], "no-auth accepted");
    let SocketAddr::V4(t) = target else {
        panic!("v4 only")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req)?;
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep)?;
    if rep[1] != 0 {
        return Err(std::io::Error::other(format!("socks reply {}", rep[1])));
    }
    Ok(s)
}

fn echo_round_trip(s: &mut TcpStream, len: usize) -> std::io::Result<Vec<u8>> {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    s.write_all(&data)?;
    let mut back = vec![0u8; len];
    s.read_exact(&mut back)?;
    assert_eq!(back, data, "echo came back intact");
    Ok(back)
}

fn serve(allow_loopback: bool) -> (Running, String, BufReader<std::process::ChildStdout>) {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "proxy",
        "serve",
        "--listen",
        &listen,
        "--json",
        "--meter-every",
        "0",
    ];
    if allow_loopback {
        args.extend(["--allow", "127.0.0.0/8"]);
    }
    let mut child = Command::new(WAYFARE)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("sessions JSON");
    let uri = v["sessions"][0]["uri"].as_str().expect("uri").to_string();
    assert!(uri.starts_with("ss://"), "{uri}");
    (Running(child), uri, out)
}

fn connect(uri: &str) -> (Running, u16) {
    let socks = free_port();
    let child = Command::new(WAYFARE)
        .args([
            "proxy",
            "connect",
            "--uri",
            uri,
            "--listen",
            &format!("127.0.0.1:{socks}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(socks);
    (Running(child), socks)
}

#[test]
fn socks_through_serve_and_connect_is_metered() {
    let echo = echo_server();
    let (mut seller, uri, mut out) = serve(true);
    let (_buyer, socks) = connect(&uri);
    let mut s = socks_connect(socks, echo).expect("connect through the proxy");
    let len = 256 * 1024;
    echo_round_trip(&mut s, len).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));

    seller.terminate();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("meters JSON");
    let m = &v["meters"][0];
    let (up, down) = (
        m["up_bytes"].as_u64().unwrap(),
        m["down_bytes"].as_u64().unwrap(),
    );
    assert!(
        up >= len as u64 && up < len as u64 + 4096,
        "seller counted up {up}"
    );
    assert!(
        down >= len as u64 && down < len as u64 + 4096,
        "seller counted down {down}"
    );
    assert!(seller.0.wait().unwrap().success());
}

#[test]
fn loopback_is_refused_unless_allowed() {
    let echo = echo_server();
    let (_seller, uri, _out) = serve(false);
    let (_buyer, socks) = connect(&uri);
    // The proxy can't report a refusal (shadowsocks has no connect result): the stream closes.
    let result = socks_connect(socks, echo).and_then(|mut s| echo_round_trip(&mut s, 1024));
    assert!(result.is_err(), "the exit must not reach its own loopback");
}

#[test]
fn bad_uri_is_one_clear_line() {
    let out = Command::new(WAYFARE)
        .args([
            "proxy",
            "connect",
            "--uri",
            "ss://not-base64!!@",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );
    assert!(err.to_lowercase().contains("uri"), "{err}");
}
