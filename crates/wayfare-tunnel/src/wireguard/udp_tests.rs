use std::{net::UdpSocket as StdUdp, time::Duration};

use super::*;

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

fn groups(b: &[(usize, SocketAddr)], gso: bool) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    plan(b, gso, &mut out);
    out.iter().map(|g| (g.start, g.end, g.seg)).collect()
}

#[test]
fn plan_groups_equal_runs_per_destination() {
    let (a, b) = (addr(1), addr(2));
    let batch = [
        (100, a),
        (100, a),
        (60, a),
        (100, a),
        (100, b),
        (120, b),
        (120, b),
    ];
    // A shorter packet closes its run; a new destination or a larger packet starts one.
    assert_eq!(
        groups(&batch, true),
        [(0, 3, 100), (3, 4, 100), (4, 5, 100), (5, 7, 120)]
    );
    let single: Vec<_> = (0..batch.len()).map(|i| (i, i + 1, batch[i].0)).collect();
    assert_eq!(groups(&batch, false), single);
}

#[test]
fn plan_respects_segment_and_byte_limits() {
    let a = addr(1);
    let many = vec![(100, a); MAX_SEGMENTS + 1];
    assert_eq!(
        groups(&many, true),
        [
            (0, MAX_SEGMENTS, 100),
            (MAX_SEGMENTS, MAX_SEGMENTS + 1, 100)
        ]
    );
    let big = vec![(30_000, a); 3];
    assert_eq!(groups(&big, true), [(0, 2, 30_000), (2, 3, 30_000)]);
    // An empty packet never joins a run (a zero segment size is invalid).
    assert_eq!(groups(&[(0, a), (0, a)], true), [(0, 1, 0), (1, 2, 0)]);
}

/// A receiving socket with UDP GRO on: a GSO message arrives as one datagram.
fn gro_receiver() -> StdUdp {
    let r = StdUdp::bind("127.0.0.1:0").expect("bind");
    setsockopt_int(r.as_raw_fd(), libc::SOL_UDP, 104, 1).expect("UDP_GRO");
    r.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    r
}

async fn bound(mode: UdpMode) -> (BatchSend, BatchRecv) {
    let params = UdpTransportFactoryParams {
        addr: Some([127, 0, 0, 1].into()),
        port: 0,
        fwmark: None,
    };
    BatchUdpFactory::new(mode)
        .bind(&params)
        .await
        .expect("bind")
}

fn batch(to: SocketAddr, sizes: &[usize], tag: u8) -> Vec<(Packet, SocketAddr)> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let body: Vec<u8> = (0..n).map(|j| tag ^ (i as u8) ^ (j as u8)).collect();
            (Packet::from_bytes(body.as_slice().into()), to)
        })
        .collect()
}

/// Read until `total` bytes came; returns the datagram sizes and the bytes.
fn drain(r: &StdUdp, total: usize) -> (Vec<usize>, Vec<u8>) {
    let mut buf = vec![0u8; 70_000];
    let (mut sizes, mut bytes) = (Vec::new(), Vec::new());
    while bytes.len() < total {
        let n = r.recv(&mut buf).expect("datagram");
        sizes.push(n);
        bytes.extend_from_slice(&buf[..n]);
    }
    (sizes, bytes)
}

fn concat(b: &[(Packet, SocketAddr)]) -> Vec<u8> {
    b.iter().flat_map(|(p, _)| p.iter().copied()).collect()
}

#[tokio::test]
async fn gso_sends_runs_as_one_message_and_every_peer_gets_its_own() {
    let (send, _recv) = bound(UdpMode::Batched).await;
    assert!(
        send.gso.load(Ordering::Relaxed),
        "GSO available on loopback"
    );
    let (r1, r2) = (gro_receiver(), gro_receiver());
    let (a1, a2) = (r1.local_addr().expect("a1"), r2.local_addr().expect("a2"));
    let mut packets = batch(a1, &[1200; 40], 1);
    packets.push(batch(a1, &[700], 2).remove(0));
    packets.extend(batch(a2, &[1300, 1300, 90], 3));
    let (want1, want2) = (concat(&packets[..41]), concat(&packets[41..]));
    send.send_many_to(&mut (), &mut packets)
        .await
        .expect("send");
    assert!(packets.is_empty());
    let (sizes1, got1) = drain(&r1, want1.len());
    let (sizes2, got2) = drain(&r2, want2.len());
    assert_eq!(got1, want1);
    assert_eq!(got2, want2);
    // One message per run: the GRO receiver sees it whole.
    assert_eq!(sizes1, [1200 * 40 + 700]);
    assert_eq!(sizes2, [1300 * 2 + 90]);
}

#[tokio::test]
async fn per_packet_mode_sends_one_datagram_each() {
    let (send, _recv) = bound(UdpMode::PerPacket).await;
    assert_eq!(send.max_number_of_packets_to_send(), 1);
    let r = gro_receiver();
    let mut packets = batch(r.local_addr().expect("a"), &[1200; 5], 4);
    let want = concat(&packets);
    send.send_many_to(&mut (), &mut packets)
        .await
        .expect("send");
    let (sizes, got) = drain(&r, want.len());
    assert_eq!(got, want);
    assert_eq!(sizes, [1200; 5]);
}

#[tokio::test]
async fn batched_receive_splits_gro_datagrams_into_packets() {
    let (send, _) = bound(UdpMode::Batched).await;
    let (_, mut recv) = bound(UdpMode::Batched).await;
    let to = recv.udp.local_addr().expect("addr");
    let mut packets = batch(to, &[1000, 1000, 1000, 400], 5);
    let want: Vec<Vec<u8>> = packets.iter().map(|(p, _)| p.to_vec()).collect();
    send.send_many_to(&mut (), &mut packets)
        .await
        .expect("send");
    let mut pool = PacketBufPool::new(16);
    let mut buf = LazyRecvBuf::default();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let mut out = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(2),
            recv.recv_many_from(&mut buf, &mut pool, &mut out),
        )
        .await
        .expect("in time")
        .expect("recv");
        got.extend(out.into_iter().map(|(p, _)| p.to_vec()));
    }
    assert_eq!(got, want);
}

#[test]
fn refusals_are_told_apart() {
    let e = io::Error::from_raw_os_error;
    assert_eq!(refusal(&e(libc::EIO)), Refusal::ForGood);
    assert_eq!(refusal(&e(libc::EINVAL)), Refusal::ForGood);
    assert_eq!(refusal(&e(libc::EMSGSIZE)), Refusal::ThisMessage);
    assert_eq!(refusal(&e(libc::ENETUNREACH)), Refusal::NotGso);
    assert_eq!(refusal(&e(libc::EPERM)), Refusal::NotGso);
}

/// A GSO message the kernel refuses (segments larger than the path MTU: EMSGSIZE) is resent
/// one datagram per packet, every packet arrives, and GSO stays on for the other peers.
#[test]
fn gso_too_large_for_its_path_is_resent_one_by_one() {
    let require = std::env::var("WAYFARE_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    if let Some(reason) = crate::lab::unavailable_reason() {
        assert!(!require, "WAYFARE_REQUIRE_NETNS=1 but {reason}");
        eprintln!("skipping gso_too_large_for_its_path_is_resent_one_by_one: {reason}");
        return;
    }
    let lab = crate::lab::Lab::new().expect("lab");
    let dev = String::from_utf8(
        lab.buyer
            .command("ip")
            .args(["-o", "link", "show", "type", "veth"])
            .output()
            .expect("ip")
            .stdout,
    )
    .expect("utf8");
    let dev = dev
        .split(": ")
        .nth(1)
        .and_then(|d| d.split('@').next())
        .expect("veth name")
        .to_string();
    let st = lab
        .buyer
        .command("ip")
        .args(["link", "set", &dev, "mtu", "1280"])
        .status()
        .expect("ip");
    assert!(st.success());
    let seller = lab.seller.runtime(1).expect("rt");
    let r = seller.block_on(async {
        let r = StdUdp::bind((crate::lab::SELLER_IP, 0)).expect("bind");
        r.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        r
    });
    let to = r.local_addr().expect("addr");
    let buyer = lab.buyer.runtime(1).expect("rt");
    let (gso_after, want) = buyer.block_on(async move {
        let (send, _recv) = bound_any(UdpMode::Batched).await;
        assert!(send.gso.load(Ordering::Relaxed));
        let mut packets = batch(to, &[1300; 6], 6);
        let want: Vec<Vec<u8>> = packets.iter().map(|(p, _)| p.to_vec()).collect();
        send.send_many_to(&mut (), &mut packets)
            .await
            .expect("send");
        (send.gso.load(Ordering::Relaxed), want)
    });
    assert!(
        gso_after,
        "a small path MTU does not turn GSO off for the device"
    );
    let mut buf = vec![0u8; 70_000];
    for w in want {
        let n = r.recv(&mut buf).expect("each packet arrives (fragmented)");
        assert_eq!(&buf[..n], &w[..]);
    }
}

async fn bound_any(mode: UdpMode) -> (BatchSend, BatchRecv) {
    let params = UdpTransportFactoryParams {
        addr: None,
        port: 0,
        fwmark: None,
    };
    BatchUdpFactory::new(mode)
        .bind(&params)
        .await
        .expect("bind")
}
